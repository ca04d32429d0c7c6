//! The `elfmap` command: parse arguments, call the library, print. Errors are one line
//! `elfmap: <path>: <problem>` on stderr with exit code 2; a closed pipe exits 0.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(cli::CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(cli::CliError::Elfmap(e)) => {
            eprintln!("elfmap: {e}");
            ExitCode::from(2)
        }
    }
}
