//! The `dialtone` binary: parses the command line and hands over to the library.

/// mimalloc instead of glibc malloc: the request path allocates on every core at once, and glibc's
/// arena locks and consolidation were about a fifth of a small TFTP transfer's CPU (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match dialtone::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
