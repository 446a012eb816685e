//! The `dialtone` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    match dialtone::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
