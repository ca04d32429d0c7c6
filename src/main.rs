//! The `elfmap` command: parse arguments, call the library, print. Errors are one line
//! `elfmap: <path>: <problem>` on stderr with exit code 2; a closed pipe exits 0.
//!
//! The process starts at the C `main` below, not through Rust's own start-up
//! (`std::rt::lang_start`). That start-up costs about 0.13 ms here (a static binary's whole
//! process is about 0.6 ms): it reads /proc/self/maps to find the main thread's stack
//! guard and sets up a signal stack, both only for the message a stack overflow would
//! print, and checks that fds 0-2 are open. What elfmap relies on is done here: SIGPIPE is
//! ignored, so that a closed pipe is an error the CLI handles, and the process ends through
//! `std::process::exit`, which flushes stdout. `std::env::args` works as usual (glibc hands
//! argv to Rust's initializer).
#![no_main]

mod cli;

#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: signal(2) with SIG_IGN installs no handler; it is what Rust's start-up does.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = match cli::run() {
        Ok(code) => code,
        Err(cli::CliError::BrokenPipe) => 0,
        Err(cli::CliError::Elfmap(e)) => {
            eprintln!("elfmap: {e}");
            2
        }
    };
    std::process::exit(code.into())
}
