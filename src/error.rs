//! Errors. Every variant names the file (or program) it is about, so that the CLI can print
//! one line `elfmap: <path>: <problem>` and exit with code 2.

use std::path::PathBuf;

/// Everything that can go wrong while planning or observing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or mapped.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF file, or its headers are malformed, so nothing can be planned.
    #[error("{}: {reason}", path.display())]
    BadElf { path: PathBuf, reason: String },
    /// The file is a well-formed ELF but the kernel's execve would fail on it.
    #[error("{}: the kernel would refuse to exec it: {reason} ({errno})", path.display())]
    ExecRefused {
        path: PathBuf,
        reason: String,
        /// The errno name execve would return (ENOEXEC, EINVAL, ELIBBAD, ...).
        errno: &'static str,
    },
    /// The kernel's execve gets past its point of no return (`begin_new_exec()`) and then
    /// fails: the process is killed (SIGSEGV) before the program's first instruction.
    #[error("{}: execve fails after the point of no return: the process is killed with {signal} ({step}: {reason}, {errno})", path.display())]
    ExecKilled {
        path: PathBuf,
        /// The signal the task dies of (`force_fatal_sig(SIGSEGV)` in `bprm_execve()`).
        signal: &'static str,
        /// The kernel function that failed (`elf_map`, `padzero`, `create_elf_tables` ...).
        step: &'static str,
        /// The errno the failed step returned (never seen by anyone: the task dies).
        errno: &'static str,
        reason: String,
    },
    /// The dynamic loader would fail (missing library, wrong class, ...).
    #[error("{}: the dynamic loader would fail: {reason}", path.display())]
    LoadFailed { path: PathBuf, reason: String },
    /// Observing the real process failed (ptrace, /proc, timeout).
    #[error("{}: {reason}", path.display())]
    Observe { path: PathBuf, reason: String },
    /// An input that is not what it should be (a host facts file, a maps file, ...).
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    /// A request that makes no sense (bad option combination, program not found in PATH, ...).
    #[error("{}: {reason}", path.display())]
    Usage { path: PathBuf, reason: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn bad_elf(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadElf {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn refused(
        path: impl Into<PathBuf>,
        errno: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Error::ExecRefused {
            path: path.into(),
            reason: reason.into(),
            errno,
        }
    }
    pub fn bad_input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn observe(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Observe {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn load_failed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::LoadFailed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
