//! fork/exec under PTRACE_TRACEME, breakpoints: the observer's system calls, with the
//! crate's largest `unsafe` blocks (each with its SAFETY comment).
//!
//! The child is spawned with [`Command`]; in `pre_exec` it sets its personality and
//! RLIMIT_STACK, asks to be traced and calls execve(2) itself. The exec SIGTRAP stop is
//! the [`Stage::Exec`] observation. From there:
//!
//! * [`Stage::Entry`]: an int3 at AT_ENTRY, continue until it is hit.
//! * [`Stage::Loaded`]: an int3 at the loader's `_dl_debug_state`; glibc: continue until
//!   a hit sees `_r_debug.r_state == RT_CONSISTENT` with `r_map != 0` (glibc 2.36 here:
//!   RT_ADD then RT_CONSISTENT; ld.so run as a program: RT_ADD with `r_map == 0`, RT_ADD,
//!   RT_CONSISTENT); musl (no `_r_debug`): the first hit.
//!
//! Whatever happens, the `Tracee` guard kills (SIGKILL) and reaps the child.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::raw::{c_char, c_ulong};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::auxv::{self, auxv_get, ElfClass, AT_BASE, AT_ENTRY, AT_PAGESZ};
use super::{Observation, RunRequest};
use crate::error::{Error, Result};
use crate::maps::MapsLine;
use crate::stage::Stage;

/// Internal failures are sentences; [`run`] puts the file name in front.
type Fallible<T> = std::result::Result<T, String>;

/// `r_debug.r_state` once the link map is complete.
const RT_CONSISTENT: i32 = 0;
/// x86 `int3`.
const INT3: u8 = 0xcc;

/// Run the target to `req.stage` and observe it. Always kills and reaps the child.
pub fn run(req: &RunRequest) -> Result<Observation> {
    run_inner(req).map_err(|reason| Error::observe(Path::new(&req.filename), reason))
}

fn run_inner(req: &RunRequest) -> Fallible<Observation> {
    let deadline = Deadline::new(req.timeout);
    let mut tracee = spawn(req)?;
    let pid = tracee.pid;

    // The exec stop: execve has returned in the child, not one instruction of the program
    // has run.
    match tracee.wait(&deadline, Stage::Exec)? {
        Event::Signal(Signal::SIGTRAP) => {}
        // execve got past its point of no return (begin_new_exec(): our close-on-exec pipe
        // is closed, so spawn() saw success) and then failed: bprm_execve() forces a
        // SIGSEGV from the kernel (SI_KERNEL), which comes before any exec stop.
        Event::Signal(sig) if killed_in_execve(pid, sig) => {
            return Err(format!(
                "execve failed after the point of no return: the process was killed with {sig} \
                 (from the kernel, SI_KERNEL) before the program's first instruction"
            ))
        }
        Event::Killed(sig) => {
            return Err(format!(
                "execve failed after the point of no return: the process was killed with {sig} \
                 before the program's first instruction"
            ))
        }
        ev => {
            return Err(format!(
                "{} instead of stopping after execve",
                ev.describe()
            ))
        }
    }
    ptrace::setoptions(
        pid,
        ptrace::Options::PTRACE_O_EXITKILL | ptrace::Options::PTRACE_O_TRACEEXEC,
    )
    .map_err(|e| format!("PTRACE_SETOPTIONS: {e}"))?;

    let class = auxv::exe_class(pid.as_raw())?;
    let exec = observe(&tracee, class, req.stage)?;
    let mut seen = match req.stage {
        Stage::Exec => exec,
        Stage::Entry => to_entry(&mut tracee, class, exec, &deadline)?,
        Stage::Loaded => to_loaded(&mut tracee, class, exec, &deadline)?,
    };
    seen.memory = req
        .peek
        .iter()
        .map(|&(addr, len)| read_bytes(pid, addr, len.min(1 << 16)).ok())
        .collect();
    Ok(seen)
}

/// The first stop of a traced execve is `sig` sent by the kernel (`si_code == SI_KERNEL`):
/// `force_fatal_sig()` of a failed exec. (With a successful exec the first stop is the
/// exec SIGTRAP.)
fn killed_in_execve(pid: Pid, sig: Signal) -> bool {
    matches!(sig, Signal::SIGSEGV | Signal::SIGKILL)
        && ptrace::getsiginfo(pid).is_ok_and(|si| si.si_code == libc::SI_KERNEL)
}

/// `len` bytes of the stopped tracee's memory at `addr`, a word at a time.
fn read_bytes(pid: Pid, addr: u64, len: u64) -> Fallible<Vec<u8>> {
    let (mut word, skip) = word_of(addr);
    let want = skip + len as usize;
    let mut bytes = Vec::with_capacity(want + 8);
    while bytes.len() < want {
        bytes.extend_from_slice(&peek(pid, word)?);
        word += 8;
    }
    Ok(bytes[skip..want].to_vec())
}

/// Read everything an [`Observation`] holds, now.
fn observe(t: &Tracee, class: ElfClass, stage: Stage) -> Fallible<Observation> {
    let pid = t.pid.as_raw();
    let maps = auxv::read_maps(pid)?;
    let auxv = auxv::read_auxv(pid, class)?;
    let stat = auxv::read_stat(pid)?;
    let exe = auxv::read_exe(pid)?;
    Ok(Observation {
        pid,
        maps,
        auxv,
        start_brk: stat.start_brk,
        start_stack: stat.start_stack,
        stage,
        exe,
        memory: Vec::new(),
    })
}

/// Breakpoint at AT_ENTRY, run to it.
fn to_entry(
    t: &mut Tracee,
    class: ElfClass,
    exec: Observation,
    deadline: &Deadline,
) -> Fallible<Observation> {
    let entry = auxv_get(&exec.auxv, AT_ENTRY).ok_or("no AT_ENTRY in the auxv")?;
    let lines = MapsLine::parse_all(&exec.maps)?;
    if !lines.iter().any(|l| l.start <= entry && entry < l.end) {
        return Err(format!(
            "AT_ENTRY {entry:#x} is not mapped at the exec stop"
        ));
    }
    let bp = Breakpoint::insert(t.pid, entry)?;
    continue_to(t, &bp, None, deadline, Stage::Entry)?;
    bp.remove(t.pid)?;
    observe(t, class, Stage::Entry)
}

/// Breakpoint at the loader's `_dl_debug_state`, run to the RT_CONSISTENT rendezvous.
fn to_loaded(
    t: &mut Tracee,
    class: ElfClass,
    exec: Observation,
    deadline: &Deadline,
) -> Fallible<Observation> {
    let lines = MapsLine::parse_all(&exec.maps)?;
    let page = auxv_get(&exec.auxv, AT_PAGESZ)
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    let at_base = auxv_get(&exec.auxv, AT_BASE).unwrap_or(0);
    // The loader: the interpreter at AT_BASE, or (no PT_INTERP) the executable itself,
    // which may be ld.so run as a program.
    let (line, is_exe) = if at_base != 0 {
        let line = lines
            .iter()
            .find(|l| l.start == at_base)
            .ok_or_else(|| format!("no mapping starts at AT_BASE {at_base:#x}"))?;
        (line, false)
    } else {
        let line = lines
            .iter()
            .filter(|l| Path::new(&l.path) == exec.exe)
            .min_by_key(|l| l.start)
            .ok_or_else(|| format!("no mapping of {} at the exec stop", exec.exe.display()))?;
        (line, true)
    };
    let loader = &line.path;
    let data = std::fs::read(loader).map_err(|e| format!("{loader}: {e}"))?;
    let elf = goblin::elf::Elf::parse(&data).map_err(|e| format!("{loader}: {e}"))?;
    let first_vaddr = elf
        .program_headers
        .iter()
        .find(|ph| ph.p_type == goblin::elf::program_header::PT_LOAD)
        .map(|ph| ph.p_vaddr)
        .ok_or_else(|| format!("{loader}: no PT_LOAD"))?;
    let bias = line.start.wrapping_sub(first_vaddr & !(page - 1));
    let symbol = |name: &str| {
        elf.dynsyms
            .iter()
            .find(|s| s.st_value != 0 && elf.dynstrtab.get_at(s.st_name) == Some(name))
            .map(|s| s.st_value.wrapping_add(bias))
    };

    let Some(debug_state) = symbol("_dl_debug_state") else {
        if is_exe {
            // A static program: nothing is loaded after the kernel's work.
            return Ok(Observation {
                stage: Stage::Loaded,
                ..exec
            });
        }
        return Err(format!(
            "the dynamic loader {loader} has no _dl_debug_state symbol"
        ));
    };
    let r_debug = symbol("_r_debug");

    let bp = Breakpoint::insert(t.pid, debug_state)?;
    continue_to(t, &bp, None, deadline, Stage::Loaded)?;
    // musl has no `_r_debug` and calls _dl_debug_state once, when all is loaded and
    // relocated: its first hit is the one. glibc calls it with RT_ADD before mapping the
    // libraries, then with RT_CONSISTENT.
    if let Some(r_debug) = r_debug {
        let (map_off, state_off) = match class {
            ElfClass::Elf64 => (8, 24),
            ElfClass::Elf32 => (4, 12),
        };
        loop {
            let state = i32::from_ne_bytes(read_mem::<4>(t.pid, r_debug + state_off)?);
            let r_map = match class {
                ElfClass::Elf64 => u64::from_ne_bytes(read_mem::<8>(t.pid, r_debug + map_off)?),
                ElfClass::Elf32 => {
                    u32::from_ne_bytes(read_mem::<4>(t.pid, r_debug + map_off)?) as u64
                }
            };
            if state == RT_CONSISTENT && r_map != 0 {
                break;
            }
            let pending = step_over(t, &bp, deadline, Stage::Loaded)?;
            continue_to(t, &bp, pending, deadline, Stage::Loaded)?;
        }
    }
    bp.remove(t.pid)?;
    observe(t, class, Stage::Loaded)
}

// ---------------------------------------------------------------------------------------
// Spawning.

/// Which step of the child's setup failed: encoded above the errno in the error std's
/// `spawn` hands back (the errno travels from the child in a pipe as one i32).
const STEP_UNIT: i32 = 1 << 16;
const STEP_PERSONALITY: i32 = 1;
const STEP_RLIMIT: i32 = 2;
const STEP_TRACEME: i32 = 3;
const STEP_EXECVE: i32 = 4;
const STEP_PGID: i32 = 5;

/// The current errno, tagged with `step`. No allocation: an `io::Error` from a raw OS
/// error is a plain integer.
fn step_error(step: i32) -> io::Error {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    io::Error::from_raw_os_error(step * STEP_UNIT + errno)
}

/// Everything the child needs, allocated before the fork.
struct ChildSetup {
    filename: CString,
    /// Owners of the strings `argv_ptrs` / `envp_ptrs` point into.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    /// NULL-terminated.
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    personality: c_ulong,
    rlimit_stack: Option<libc::rlimit>,
    rlimit_as: Option<libc::rlimit>,
}

// SAFETY: the raw pointers point into the heap buffers of the CStrings owned by the same
// struct, which never move or change while it lives; nothing ever writes through them.
// The struct is moved into the pre_exec closure (which std requires to be Send + Sync)
// and only read, in the child.
unsafe impl Send for ChildSetup {}
unsafe impl Sync for ChildSetup {}

fn cstring(s: &OsStr, what: &str) -> Fallible<CString> {
    CString::new(s.as_bytes()).map_err(|_| format!("{what} {s:?} contains a NUL byte"))
}

impl ChildSetup {
    fn new(req: &RunRequest) -> Fallible<ChildSetup> {
        let filename = cstring(&req.filename, "the file name")?;
        let argv = req
            .argv
            .iter()
            .map(|a| cstring(a, "argument"))
            .collect::<Fallible<Vec<_>>>()?;
        let envp = req
            .envp
            .iter()
            .map(|e| cstring(e, "environment string"))
            .collect::<Fallible<Vec<_>>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        use nix::sys::resource::Resource;
        let rlimit_stack = soft_limit(Resource::RLIMIT_STACK, req.rlimit_stack)?;
        let rlimit_as = soft_limit(Resource::RLIMIT_AS, req.rlimit_as)?;
        Ok(ChildSetup {
            filename,
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            _argv: argv,
            _envp: envp,
            personality: req.personality as c_ulong,
            rlimit_stack,
            rlimit_as,
        })
    }
}

/// `NAME=value` → (`NAME`, `value`); `None` without '=' (or with an empty name).
fn split_env(e: &OsStr) -> Option<(&OsStr, &OsStr)> {
    let b = e.as_bytes();
    let i = b.iter().position(|&c| c == b'=').filter(|&i| i > 0)?;
    Some((OsStr::from_bytes(&b[..i]), OsStr::from_bytes(&b[i + 1..])))
}

fn spawn(req: &RunRequest) -> Fallible<Tracee> {
    let setup = ChildSetup::new(req)?;
    let mut cmd = Command::new(&req.filename);
    if let Some((arg0, rest)) = req.argv.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for (k, v) in req.envp.iter().filter_map(|e| split_env(e)) {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The closure execs the program itself, so std's own exec is never reached: std uses
    // execvp (a PATH search for a name without '/', and glibc's /bin/sh fallback on
    // ENOEXEC) and keeps the environment in a sorted map (reordered, duplicates merged),
    // while the program must get exactly `filename`, `argv` and `envp`. The Command's
    // program/args/env above say the same thing (modulo order and duplicates).
    //
    // SAFETY: std runs the closure in the child between fork and exec, after the stdio
    // redirections; there only async-signal-safe work is allowed (another thread of ours
    // may have held a lock, e.g. malloc's, at the fork). The closure only makes raw
    // system calls through libc — personality(2), setrlimit(2), setpgid(2), prctl(2),
    // ptrace(PTRACE_TRACEME),
    // execve(2) — reading data allocated before the fork, and builds io::Errors from raw
    // errno values (no allocation). The pointers given to execve are valid: NUL-terminated
    // strings owned by `setup` (moved into the closure), in arrays ending with a null.
    unsafe {
        cmd.pre_exec(move || {
            // Capture `setup` whole (not field by field): it is the Send + Sync unit.
            let setup = &setup;
            if libc::personality(setup.personality) == -1 {
                return Err(step_error(STEP_PERSONALITY));
            }
            if let Some(rl) = &setup.rlimit_stack {
                if libc::setrlimit(libc::RLIMIT_STACK, rl) != 0 {
                    return Err(step_error(STEP_RLIMIT));
                }
            }
            // Last before execve: nothing after it maps memory in the child.
            if let Some(rl) = &setup.rlimit_as {
                if libc::setrlimit(libc::RLIMIT_AS, rl) != 0 {
                    return Err(step_error(STEP_RLIMIT));
                }
            }
            // Its own process group, so that whatever it forks dies with it (the guard kills
            // the group), and SIGKILL if elfmap dies before PTRACE_O_EXITKILL is set.
            if libc::setpgid(0, 0) == -1 {
                return Err(step_error(STEP_PGID));
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(step_error(STEP_PGID));
            }
            let null = std::ptr::null_mut::<libc::c_void>();
            if libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) == -1 {
                return Err(step_error(STEP_TRACEME));
            }
            libc::execve(
                setup.filename.as_ptr(),
                setup.argv_ptrs.as_ptr(),
                setup.envp_ptrs.as_ptr(),
            );
            Err(step_error(STEP_EXECVE))
        });
    }
    let child = cmd.spawn().map_err(|e| spawn_error(req, e))?;
    // std's Child neither kills nor waits on drop; the Tracee guard owns the pid now.
    Ok(Tracee {
        pid: Pid::from_raw(child.id() as i32),
        reaped: false,
    })
}

/// The limit to set for `resource` in the child: soft `v` (`u64::MAX`: unlimited), the hard
/// limit kept unless the soft one does not fit under it; `None` for none given.
fn soft_limit(
    resource: nix::sys::resource::Resource,
    v: Option<u64>,
) -> std::result::Result<Option<libc::rlimit>, String> {
    let Some(v) = v else { return Ok(None) };
    let (_, hard) = nix::sys::resource::getrlimit(resource)
        .map_err(|e| format!("getrlimit({resource:?}): {e}"))?;
    let soft = if v == u64::MAX {
        libc::RLIM_INFINITY
    } else {
        v as libc::rlim_t
    };
    Ok(Some(libc::rlimit {
        rlim_cur: soft,
        rlim_max: if soft > hard { soft } else { hard },
    }))
}

/// One line saying why the program did not start.
fn spawn_error(req: &RunRequest, e: io::Error) -> String {
    match e.raw_os_error() {
        Some(code) if code >= STEP_UNIT => {
            let errno = Errno::from_raw(code % STEP_UNIT);
            match code / STEP_UNIT {
                STEP_PERSONALITY => {
                    format!("personality({:#x}) failed: {errno}", req.personality)
                }
                STEP_RLIMIT => format!(
                    "setrlimit(RLIMIT_STACK {:?} / RLIMIT_AS {:?}) failed: {errno}",
                    req.rlimit_stack, req.rlimit_as
                ),
                STEP_TRACEME => format!("ptrace(PTRACE_TRACEME) failed: {errno}"),
                STEP_PGID => format!("setpgid/PR_SET_PDEATHSIG failed: {errno}"),
                _ => format!("execve failed: {errno}"),
            }
        }
        _ => format!("cannot start the program: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// The traced child.

/// The traced child. Dropping it kills (SIGKILL) and reaps it, unless it is already
/// reaped.
struct Tracee {
    pid: Pid,
    /// waitpid has returned its exit: the pid is no longer ours to signal.
    reaped: bool,
}

/// What a wait returned.
#[derive(Debug)]
enum Event {
    /// Stopped with a signal (signal-delivery-stop, or group-stop).
    Signal(Signal),
    /// A PTRACE_EVENT_* stop.
    Ptrace(i32),
    Exited(i32),
    Killed(Signal),
}

impl Event {
    fn describe(&self) -> String {
        match self {
            Event::Signal(s) => format!("the program stopped with {s}"),
            Event::Ptrace(e) if *e == libc::PTRACE_EVENT_EXEC => {
                "the program executed another program".to_string()
            }
            Event::Ptrace(e) => format!("the program stopped with ptrace event {e}"),
            Event::Exited(c) => format!("the program exited with status {c}"),
            Event::Killed(s) => format!("the program was killed by {s}"),
        }
    }
}

/// When to give up.
struct Deadline {
    at: Option<Instant>,
    timeout: Duration,
}

impl Deadline {
    fn new(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(timeout),
            timeout,
        }
    }
    fn expired(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }
}

impl Tracee {
    /// Wait for the next stop or exit, polling with WNOHANG until `deadline`.
    fn wait(&mut self, deadline: &Deadline, stage: Stage) -> Fallible<Event> {
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) => {
                    if deadline.expired() {
                        return Err(format!(
                            "timed out after {} s waiting for the {stage} stop",
                            deadline.timeout.as_secs_f64()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(WaitStatus::Stopped(_, sig)) => return Ok(Event::Signal(sig)),
                Ok(WaitStatus::PtraceEvent(_, _, ev)) => return Ok(Event::Ptrace(ev)),
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    return Ok(Event::Exited(code));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.reaped = true;
                    return Ok(Event::Killed(sig));
                }
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                // nix reports a stop by a signal it has no name for (a real-time one) as
                // EINVAL; the stop itself is consumed.
                Err(e) => return Err(format!("waitpid: {e} (waiting for the {stage} stop)")),
            }
        }
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        // What the program forked is in its process group, even once it is gone itself (the
        // group's id is not reused while a member lives).
        let _ = signal::killpg(self.pid, Signal::SIGKILL);
        if self.reaped {
            return;
        }
        // SIGKILL ends a ptrace-stopped tracee too; its process group holds what it forked.
        let _ = signal::kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => break,
                // A stop reported before the death (or one nix cannot name): wait again.
                Ok(_) | Err(Errno::EINTR) | Err(Errno::EINVAL) => {}
                Err(_) => break,
            }
        }
        self.reaped = true;
    }
}

// ---------------------------------------------------------------------------------------
// Breakpoints.

/// An int3 over one byte of the tracee's text.
struct Breakpoint {
    addr: u64,
    orig: u8,
}

/// The aligned word holding `addr` (an aligned word never crosses a page) and the
/// byte's index in it.
fn word_of(addr: u64) -> (u64, usize) {
    (addr & !7, (addr & 7) as usize)
}

fn peek(pid: Pid, addr: u64) -> Fallible<[u8; 8]> {
    ptrace::read(pid, addr as usize as ptrace::AddressType)
        .map(|w| w.to_ne_bytes())
        .map_err(|e| format!("PTRACE_PEEKDATA at {addr:#x}: {e}"))
}

fn poke(pid: Pid, addr: u64, bytes: [u8; 8]) -> Fallible<()> {
    ptrace::write(
        pid,
        addr as usize as ptrace::AddressType,
        libc::c_long::from_ne_bytes(bytes),
    )
    .map_err(|e| format!("PTRACE_POKEDATA at {addr:#x}: {e}"))
}

/// `N` bytes of the tracee's memory at `addr`.
fn read_mem<const N: usize>(pid: Pid, addr: u64) -> Fallible<[u8; N]> {
    let bytes = read_bytes(pid, addr, N as u64)?;
    Ok(bytes.try_into().unwrap())
}

impl Breakpoint {
    /// Write an int3 at `addr` (ptrace pokes work on read-only text: the kernel copies
    /// the private page on write, which does not change the maps).
    fn insert(pid: Pid, addr: u64) -> Fallible<Breakpoint> {
        let (word, i) = word_of(addr);
        let mut bytes = peek(pid, word)?;
        let orig = bytes[i];
        bytes[i] = INT3;
        poke(pid, word, bytes)?;
        Ok(Breakpoint { addr, orig })
    }

    /// Put the original byte back.
    fn remove(&self, pid: Pid) -> Fallible<()> {
        let (word, i) = word_of(self.addr);
        let mut bytes = peek(pid, word)?;
        bytes[i] = self.orig;
        poke(pid, word, bytes)
    }

    fn reinsert(&self, pid: Pid) -> Fallible<()> {
        let (word, i) = word_of(self.addr);
        let mut bytes = peek(pid, word)?;
        bytes[i] = INT3;
        poke(pid, word, bytes)
    }
}

/// The program counter. For a 32-bit (compat) tracee the registers are still the 64-bit
/// `user_regs_struct`; `rip` holds eip.
#[cfg(target_arch = "x86_64")]
fn get_pc(pid: Pid) -> Fallible<u64> {
    ptrace::getregs(pid)
        .map(|r| r.rip)
        .map_err(|e| format!("PTRACE_GETREGS: {e}"))
}

#[cfg(target_arch = "x86_64")]
fn set_pc(pid: Pid, pc: u64) -> Fallible<()> {
    let mut regs = ptrace::getregs(pid).map_err(|e| format!("PTRACE_GETREGS: {e}"))?;
    regs.rip = pc;
    ptrace::setregs(pid, regs).map_err(|e| format!("PTRACE_SETREGS: {e}"))
}

#[cfg(not(target_arch = "x86_64"))]
fn get_pc(_pid: Pid) -> Fallible<u64> {
    Err("breakpoints are only implemented on x86_64".into())
}

#[cfg(not(target_arch = "x86_64"))]
fn set_pc(_pid: Pid, _pc: u64) -> Fallible<()> {
    Err("breakpoints are only implemented on x86_64".into())
}

/// The tracee stopped in a way that ends the run.
fn fatal(ev: &Event, stage: Stage) -> String {
    format!("{} before reaching the {stage} stop", ev.describe())
}

/// Continue (delivering `sig` first) until the tracee traps on `bp`: SIGTRAP with the pc
/// just past the int3. Other signals are re-injected.
fn continue_to(
    t: &mut Tracee,
    bp: &Breakpoint,
    mut sig: Option<Signal>,
    deadline: &Deadline,
    stage: Stage,
) -> Fallible<()> {
    loop {
        ptrace::cont(t.pid, sig).map_err(|e| format!("PTRACE_CONT: {e}"))?;
        sig = None;
        match t.wait(deadline, stage)? {
            Event::Signal(Signal::SIGTRAP) => {
                if get_pc(t.pid)? == bp.addr + 1 {
                    return Ok(());
                }
                // Not ours: the program's own.
                sig = Some(Signal::SIGTRAP);
            }
            Event::Signal(s) => sig = Some(s),
            Event::Ptrace(e) if e != libc::PTRACE_EVENT_EXEC => {}
            ev => return Err(fatal(&ev, stage)),
        }
    }
}

/// The tracee is stopped on `bp`: execute the original instruction and put the int3
/// back. Returns a signal that arrived meanwhile, to deliver on the next continue.
fn step_over(
    t: &mut Tracee,
    bp: &Breakpoint,
    deadline: &Deadline,
    stage: Stage,
) -> Fallible<Option<Signal>> {
    bp.remove(t.pid)?;
    set_pc(t.pid, bp.addr)?;
    let mut pending = None;
    loop {
        ptrace::step(t.pid, None).map_err(|e| format!("PTRACE_SINGLESTEP: {e}"))?;
        match t.wait(deadline, stage)? {
            Event::Signal(Signal::SIGTRAP) => break,
            // Held back until the breakpoint is in place again.
            Event::Signal(s) => pending = Some(s),
            Event::Ptrace(e) if e != libc::PTRACE_EVENT_EXEC => {}
            ev => return Err(fatal(&ev, stage)),
        }
    }
    bp.reinsert(t.pid)?;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::PathBuf;

    const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
    const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

    fn req(filename: &str, argv: &[&str], stage: Stage) -> RunRequest {
        RunRequest {
            filename: filename.into(),
            argv: argv.iter().map(OsString::from).collect(),
            envp: vec!["PATH=/usr/bin:/bin".into(), "LC_ALL=C".into()],
            personality: ADDR_NO_RANDOMIZE,
            rlimit_stack: None,
            rlimit_as: None,
            stage,
            timeout: Duration::from_secs(30),
            peek: Vec::new(),
        }
    }

    /// Children of this thread (the tracer is the thread that forked).
    fn my_children() -> String {
        let path = format!(
            "/proc/self/task/{}/children",
            nix::unistd::gettid().as_raw()
        );
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    fn assert_no_child_left(pid: Option<i32>) {
        if let Some(pid) = pid {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} still exists"
            );
        }
        assert_eq!(my_children(), "", "children left behind");
    }

    fn observe_ok(r: &RunRequest) -> Observation {
        let obs = run(r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obs.stage, r.stage);
        assert_no_child_left(Some(obs.pid));
        obs
    }

    fn has_line_ending(maps: &str, suffix: &str) -> bool {
        maps.lines().any(|l| l.ends_with(suffix))
    }

    fn mentions(maps: &str, name: &str) -> bool {
        maps.lines().any(|l| l.contains(name))
    }

    fn start_of(maps: &str, suffix: &str) -> Option<u64> {
        MapsLine::parse_all(maps)
            .unwrap()
            .into_iter()
            .filter(|l| l.path.ends_with(suffix))
            .map(|l| l.start)
            .min()
    }

    /// A scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p =
                std::env::temp_dir().join(format!("elfmap-observe-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_string()
        }
        fn write(&self, name: &str, text: &str) -> String {
            let p = self.path(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Run a compiler; false (the test is skipped) if it is missing or fails.
    fn cc(compiler: &str, args: &[&str]) -> bool {
        Command::new(compiler)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    const HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n";

    /// A program linked against a library whose constructor (run by the loader, before
    /// AT_ENTRY) has the body `ctor`. None if gcc fails.
    fn with_ctor(dir: &TempDir, ctor: &str) -> Option<String> {
        let lib_c = dir.write(
            "lib.c",
            &format!(
                "#include <signal.h>\n#include <unistd.h>\n\
                 static volatile sig_atomic_t got;\n\
                 void handler(int s) {{ (void)s; got = 1; }}\n\
                 __attribute__((constructor)) static void ctor(void) {{ {ctor} }}\n\
                 int lib_fn(void) {{ return 0; }}\n"
            ),
        );
        let main_c = dir.write(
            "main.c",
            "int lib_fn(void);\nint main(void) { return lib_fn(); }\n",
        );
        let lib = dir.path("libctor.so");
        let prog = dir.path("prog");
        let rpath = format!("-Wl,-rpath,{}", dir.0.display());
        let libdir = format!("-L{}", dir.0.display());
        (cc("gcc", &["-shared", "-fPIC", "-o", &lib, &lib_c])
            && cc("gcc", &["-o", &prog, &main_c, &libdir, "-lctor", &rpath]))
        .then_some(prog)
    }

    #[test]
    fn exec_stage_true() {
        let obs = observe_ok(&req("/usr/bin/true", &["true"], Stage::Exec));
        assert!(has_line_ending(&obs.maps, "/usr/bin/true"), "{}", obs.maps);
        assert!(has_line_ending(&obs.maps, "[stack]"), "{}", obs.maps);
        // Only the kernel has worked: the program and its interpreter, no library.
        assert!(mentions(&obs.maps, "ld-linux-x86-64.so.2"), "{}", obs.maps);
        assert!(!mentions(&obs.maps, "libc.so.6"), "{}", obs.maps);
        assert!(!mentions(&obs.maps, "ld.so.cache"), "{}", obs.maps);
        assert_eq!(obs.exe, Path::new("/usr/bin/true"));
        // No randomization: the stack ends at the top of the 47-bit user space.
        let stack = MapsLine::parse_all(&obs.maps)
            .unwrap()
            .into_iter()
            .find(|l| l.path == "[stack]")
            .unwrap();
        assert_eq!(stack.end, 0x7fff_ffff_f000);
        assert!(stack.start <= obs.start_stack && obs.start_stack < stack.end);
        assert_ne!(obs.start_brk, 0);
        let entry = auxv_get(&obs.auxv, AT_ENTRY).unwrap();
        let base = auxv_get(&obs.auxv, AT_BASE).unwrap();
        assert_eq!(Some(base), start_of(&obs.maps, "ld-linux-x86-64.so.2"));
        assert!(
            entry > 0x5555_5555_4000 && entry < 0x5555_5600_0000,
            "{entry:#x}"
        );
    }

    #[test]
    fn exec_stage_is_deterministic_without_aslr() {
        let a = observe_ok(&req("/usr/bin/true", &["true"], Stage::Exec));
        let b = observe_ok(&req("/usr/bin/true", &["true"], Stage::Exec));
        assert_eq!(a.maps, b.maps);
        assert_eq!(a.auxv.len(), b.auxv.len());
        assert_eq!(a.start_stack, b.start_stack);
    }

    #[test]
    fn loaded_stage_true() {
        let obs = observe_ok(&req("/usr/bin/true", &["true"], Stage::Loaded));
        assert!(has_line_ending(&obs.maps, "/usr/bin/true"), "{}", obs.maps);
        assert!(mentions(&obs.maps, "libc.so.6"), "{}", obs.maps);
        // At the RT_CONSISTENT rendezvous glibc's ld.so still has the cache mapped.
        if Path::new("/etc/ld.so.cache").exists() {
            assert!(
                has_line_ending(&obs.maps, "/etc/ld.so.cache"),
                "{}",
                obs.maps
            );
        }
        // libc's RELRO is already read-only: libc has an r--p mapping past its text.
        let libc: Vec<_> = MapsLine::parse_all(&obs.maps)
            .unwrap()
            .into_iter()
            .filter(|l| l.path.ends_with("libc.so.6"))
            .collect();
        assert!(libc.len() >= 4, "{}", obs.maps);
    }

    #[test]
    fn entry_stage_true() {
        let obs = observe_ok(&req("/usr/bin/true", &["true"], Stage::Entry));
        assert!(has_line_ending(&obs.maps, "/usr/bin/true"), "{}", obs.maps);
        assert!(mentions(&obs.maps, "libc.so.6"), "{}", obs.maps);
        // ld.so unmaps the cache before jumping to the entry point.
        assert!(!mentions(&obs.maps, "ld.so.cache"), "{}", obs.maps);
    }

    #[test]
    fn ld_so_run_as_a_program() {
        if !Path::new(LD_SO).exists() {
            return;
        }
        let argv = [LD_SO, "/usr/bin/true"];
        let exec = observe_ok(&req(LD_SO, &argv, Stage::Exec));
        assert_eq!(auxv_get(&exec.auxv, AT_BASE), Some(0));
        assert!(!mentions(&exec.maps, "/usr/bin/true"), "{}", exec.maps);
        let loaded = observe_ok(&req(LD_SO, &argv, Stage::Loaded));
        assert!(
            has_line_ending(&loaded.maps, "/usr/bin/true"),
            "{}",
            loaded.maps
        );
        assert!(mentions(&loaded.maps, "libc.so.6"), "{}", loaded.maps);
        // AT_ENTRY is ld.so's own entry, the first instruction run: Entry == Exec.
        let entry = observe_ok(&req(LD_SO, &argv, Stage::Entry));
        assert_eq!(entry.maps, exec.maps);
    }

    #[test]
    fn static_program_loaded_is_exec() {
        let dir = TempDir::new("static");
        let src = dir.write("hello.c", HELLO);
        let prog = dir.path("hello-static");
        if !cc("gcc", &["-static", "-o", &prog, &src]) {
            eprintln!("skipped: gcc -static failed");
            return;
        }
        let exec = observe_ok(&req(&prog, &["hello"], Stage::Exec));
        let loaded = observe_ok(&req(&prog, &["hello"], Stage::Loaded));
        assert_eq!(auxv_get(&exec.auxv, AT_BASE), Some(0));
        assert_eq!(loaded.maps, exec.maps);
        let entry = observe_ok(&req(&prog, &["hello"], Stage::Entry));
        assert_eq!(entry.maps, exec.maps);
    }

    #[test]
    fn program_32bit() {
        if !Path::new("/usr/lib32/ld-linux.so.2").exists()
            && !Path::new("/lib/ld-linux.so.2").exists()
        {
            eprintln!("skipped: no 32-bit loader");
            return;
        }
        let dir = TempDir::new("m32");
        let src = dir.write("hello.c", HELLO);
        let prog = dir.path("hello32");
        if !cc("gcc", &["-m32", "-o", &prog, &src]) {
            eprintln!("skipped: gcc -m32 failed");
            return;
        }
        let exec = observe_ok(&req(&prog, &["hello32"], Stage::Exec));
        assert!(has_line_ending(&exec.maps, "/hello32"), "{}", exec.maps);
        assert!(mentions(&exec.maps, "ld-linux.so.2"), "{}", exec.maps);
        assert!(!mentions(&exec.maps, "libc.so.6"), "{}", exec.maps);
        let entry = auxv_get(&exec.auxv, AT_ENTRY).unwrap();
        assert!(entry != 0 && entry < 1 << 32, "{entry:#x}");
        assert_eq!(
            auxv_get(&exec.auxv, AT_BASE),
            start_of(&exec.maps, "ld-linux.so.2")
        );
        assert!(exec.start_stack < 1 << 32);

        let loaded = observe_ok(&req(&prog, &["hello32"], Stage::Loaded));
        assert!(mentions(&loaded.maps, "libc.so.6"), "{}", loaded.maps);
        let at_entry = observe_ok(&req(&prog, &["hello32"], Stage::Entry));
        assert!(mentions(&at_entry.maps, "libc.so.6"), "{}", at_entry.maps);
    }

    #[test]
    fn musl_program() {
        let dir = TempDir::new("musl");
        let src = dir.write("hello.c", HELLO);
        let prog = dir.path("hello-musl");
        if !cc("musl-gcc", &["-o", &prog, &src]) {
            eprintln!("skipped: musl-gcc failed");
            return;
        }
        let exec = observe_ok(&req(&prog, &["hello"], Stage::Exec));
        let loaded = observe_ok(&req(&prog, &["hello"], Stage::Loaded));
        let entry = observe_ok(&req(&prog, &["hello"], Stage::Entry));
        for o in [&exec, &loaded, &entry] {
            assert!(mentions(&o.maps, "musl"), "{}", o.maps);
            assert!(has_line_ending(&o.maps, "/hello-musl"), "{}", o.maps);
        }
        // The loader's relocation work shows as more (split) mappings than at exec.
        assert!(loaded.maps.lines().count() > exec.maps.lines().count());
    }

    #[test]
    fn nonexistent_file_is_an_error() {
        let e = run(&req("/nonexistent/elfmap-test", &["x"], Stage::Exec)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/elfmap-test"), "{msg}");
        assert!(msg.contains("ENOENT"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_no_child_left(None);
    }

    #[test]
    fn not_an_executable_format_is_enoexec() {
        // execvp would run this with /bin/sh; execve refuses it.
        let dir = TempDir::new("enoexec");
        let script = dir.write("script", "echo hi\n");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let msg = run(&req(&script, &["script"], Stage::Exec))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ENOEXEC"), "{msg}");
        assert_no_child_left(None);
    }

    #[test]
    fn exit_before_entry_is_an_error() {
        let dir = TempDir::new("exit");
        let Some(prog) = with_ctor(&dir, "_exit(3);") else {
            eprintln!("skipped: gcc failed");
            return;
        };
        let msg = run(&req(&prog, &["prog"], Stage::Entry))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("exited with status 3 before reaching the entry stop"),
            "{msg}"
        );
        assert_no_child_left(None);
        // The library is loaded before its constructor runs.
        let loaded = observe_ok(&req(&prog, &["prog"], Stage::Loaded));
        assert!(mentions(&loaded.maps, "libctor.so"), "{}", loaded.maps);
    }

    #[test]
    fn timeout_kills_and_reaps() {
        let dir = TempDir::new("timeout");
        let Some(prog) = with_ctor(&dir, "for (;;) pause();") else {
            eprintln!("skipped: gcc failed");
            return;
        };
        let mut r = req(&prog, &["prog"], Stage::Entry);
        r.timeout = Duration::from_secs(1);
        let t0 = Instant::now();
        let msg = run(&r).unwrap_err().to_string();
        assert!(
            msg.contains("timed out after 1 s waiting for the entry stop"),
            "{msg}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_no_child_left(None);
    }

    #[test]
    fn signals_are_reinjected() {
        // The constructor exits with 9 unless its SIGUSR1 handler ran.
        let dir = TempDir::new("signal");
        let Some(prog) = with_ctor(
            &dir,
            "signal(SIGUSR1, handler); raise(SIGUSR1); if (!got) _exit(9);",
        ) else {
            eprintln!("skipped: gcc failed");
            return;
        };
        let obs = observe_ok(&req(&prog, &["prog"], Stage::Entry));
        assert!(mentions(&obs.maps, "libctor.so"), "{}", obs.maps);
    }

    #[test]
    fn rlimit_stack_moves_mmap_base() {
        let default = observe_ok(&req("/usr/bin/true", &["true"], Stage::Exec));
        let mut r = req("/usr/bin/true", &["true"], Stage::Exec);
        r.rlimit_stack = Some(1 << 30);
        let big = observe_ok(&r);
        let ld = |o: &Observation| start_of(&o.maps, "ld-linux-x86-64.so.2").unwrap();
        // The top-down mmap base sits below the stack gap, which follows RLIMIT_STACK.
        assert!(
            ld(&big) < ld(&default) - (512 << 20),
            "{:#x} {:#x}",
            ld(&big),
            ld(&default)
        );
    }
}
