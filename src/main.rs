//! The `dialtone` binary: parses the command line and hands over to the library.

/// mimalloc instead of glibc malloc: the request path allocates on every core at once, and glibc's
/// arena locks and consolidation were about a fifth of a small TFTP transfer's CPU (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    match dialtone::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process and what it starts (its own PostgreSQL, when it
/// starts one), unless `MIMALLOC_ALLOW_THP` is set, which mimalloc then obeys. mimalloc asks for huge
/// pages by default, and then a page it hands back and later reuses comes back as a fresh 2 MB page to
/// zero: the fetch-event writer spent 15% of dialtone's CPU in a boot storm zeroing them, and a first
/// fault on new memory stalled the request path for up to ~20 ms on the benchmark VM. With 4 KB pages a
/// storm costs 10-25% less CPU and 10,000 phones take 103 MB instead of 166 MB (BENCHMARKS.md).
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: `PR_SET_THP_DISABLE` takes integers only and reads or writes no memory of this process.
    // A kernel without the option keeps its default; nothing depends on the outcome.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
