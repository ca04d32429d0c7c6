//! The stops at which a process is planned or observed, and the mmap layouts: the
//! vocabulary shared by the models ([`crate::plan`]) and the observer ([`crate::observe`]).

/// The three stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// execve has returned: only the kernel's work, not one instruction of the program run.
    Exec,
    /// The loader's r_debug RT_CONSISTENT rendezvous: libraries mapped, relocated,
    /// RELRO-protected; no initializer run yet.
    Loaded,
    /// AT_ENTRY: after the libraries' initializers.
    Entry,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Exec => "exec",
            Stage::Loaded => "loaded",
            Stage::Entry => "entry",
        })
    }
}

/// Flexible (top-down) or legacy (bottom-up) mmap layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    Flexible,
    Legacy,
}
