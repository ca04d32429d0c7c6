//! Observing the real process: spawn the target under ptrace, stop it at the requested
//! stage, read `/proc/PID/maps` (and auxv, stat), then kill and reap it.

pub mod auxv;
pub mod capture;
pub mod ptrace;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::stage::Stage;

/// What to run and how. Everything is allocated before the fork.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The file to exec (resolved: this exact path string goes to execve as `filename`).
    pub filename: OsString,
    /// argv, including `argv[0]`.
    pub argv: Vec<OsString>,
    /// The complete environment, `NAME=value` strings, passed as envp exactly.
    pub envp: Vec<OsString>,
    /// personality(2) value to set in the child before execve (e.g. ADDR_NO_RANDOMIZE).
    pub personality: u32,
    /// RLIMIT_STACK soft limit to set in the child before execve (`u64::MAX` = unlimited);
    /// `None` leaves it as inherited.
    pub rlimit_stack: Option<u64>,
    /// RLIMIT_AS soft limit to set in the child before execve (`u64::MAX` = unlimited);
    /// `None` leaves it as inherited.
    pub rlimit_as: Option<u64>,
    pub stage: Stage,
    /// Give up (kill, reap, error) after this long.
    pub timeout: Duration,
    /// Memory to read at the stop: `(address, length)`, each at most 64 KiB.
    pub peek: Vec<(u64, u64)>,
}

/// What was seen at the stop.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Observation {
    pub pid: i32,
    /// The full text of /proc/PID/maps at the stop.
    pub maps: String,
    /// (type, value) pairs of /proc/PID/auxv, AT_NULL excluded.
    #[serde(serialize_with = "auxv_hex")]
    pub auxv: Vec<(u64, u64)>,
    /// Fields of /proc/PID/stat: start_brk (field 47... see proc(5)), start_stack (28).
    #[serde(serialize_with = "crate::addr::hex")]
    pub start_brk: u64,
    #[serde(serialize_with = "crate::addr::hex")]
    pub start_stack: u64,
    pub stage: Stage,
    /// The executable's path as the kernel saw it (readlink /proc/PID/exe).
    pub exe: PathBuf,
    /// The bytes read for each [`RunRequest::peek`] (`None`: not readable).
    #[serde(skip)]
    pub memory: Vec<Option<Vec<u8>>>,
}

/// auxv as `[type, "0x..."]` pairs: values in hex, as every address in JSON output.
fn auxv_hex<S: serde::Serializer>(v: &[(u64, u64)], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|(t, x)| (t, format!("{x:#x}"))))
}

/// Run the target to `req.stage` and observe it. Always kills and reaps the child.
pub fn run(req: &RunRequest) -> Result<Observation> {
    ptrace::run(req)
}
