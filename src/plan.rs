//! Planning: from a program and a configuration to the predicted address space at a stage.
//! Pure apart from reading ELF headers (and, for the loaded stage, the loader's files).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::Facts;
use crate::kernel::binfmt_elf::{load_elf_binary, ExecImage, ExecRequest};
use crate::kernel::personality;
use crate::kernel::random::ExecRandom;
use crate::mm::AddressSpace;
pub use crate::stage::{Layout, Stage};

/// The program to run, resolved as a shell would.
#[derive(Clone, Debug)]
pub struct Target {
    /// The file.
    pub program: PathBuf,
    /// What goes to execve as its path (`bprm->filename`).
    pub filename: OsString,
    /// argv, `argv[0]` = the name as given.
    pub argv: Vec<OsString>,
}

impl Target {
    /// Resolve `name` like execvp(3): a name with '/' is used as is, otherwise the first
    /// executable file of that name in `$PATH`.
    pub fn resolve(name: &OsStr, args: &[OsString]) -> Result<Target> {
        let mut argv = vec![name.to_os_string()];
        argv.extend(args.iter().cloned());
        if name.as_bytes().contains(&b'/') {
            let p = PathBuf::from(name);
            return Ok(Target {
                program: p,
                filename: name.to_os_string(),
                argv,
            });
        }
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        for dir in std::env::split_paths(&path) {
            let cand = dir.join(name);
            if is_executable_file(&cand) {
                return Ok(Target {
                    filename: cand.clone().into_os_string(),
                    program: cand,
                    argv,
                });
            }
        }
        Err(Error::Usage {
            path: name.into(),
            reason: "command not found in PATH".into(),
        })
    }
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// How to plan (and, with the same values, how to run).
#[derive(Clone, Debug)]
pub struct Config {
    pub stage: Stage,
    /// `setarch -R`: personality ADDR_NO_RANDOMIZE.
    pub no_aslr: bool,
    /// `None`: this machine's default (vm.legacy_va_layout).
    pub layout: Option<Layout>,
    /// `setarch --3gb`: personality ADDR_LIMIT_3GB (32-bit programs).
    pub addr_limit_3gb: bool,
    /// RLIMIT_STACK for the program; `None`: our own.
    pub rlimit_stack: Option<u64>,
    /// Seed for a randomized plan when ASLR is on.
    pub seed: Option<u64>,
    pub root: Option<PathBuf>,
    /// The environment given to the program; `None`: our own.
    pub env: Option<Vec<OsString>>,
}

impl Config {
    /// This machine's defaults (layout, stack limit, environment) with ASLR off, at `stage`.
    pub fn no_aslr(stage: Stage) -> Config {
        Config {
            stage,
            no_aslr: true,
            layout: None,
            addr_limit_3gb: false,
            rlimit_stack: None,
            seed: None,
            root: None,
            env: None,
        }
    }

    /// The personality the program is exec'd with: ours, plus the requested flags.
    pub fn personality(&self, machine: &Facts) -> Result<u32> {
        let mut p = machine.personality;
        if self.no_aslr {
            p |= personality::ADDR_NO_RANDOMIZE;
        }
        match self.layout {
            Some(Layout::Legacy) => p |= personality::ADDR_COMPAT_LAYOUT,
            Some(Layout::Flexible) => {
                if machine.legacy_va_layout {
                    return Err(Error::Usage {
                        path: "vm.legacy_va_layout".into(),
                        reason: "is 1 on this machine: every program gets the legacy layout, \
                                 --layout flexible cannot be honoured"
                            .into(),
                    });
                }
                p &= !personality::ADDR_COMPAT_LAYOUT;
            }
            None => {}
        }
        if self.addr_limit_3gb {
            p |= personality::ADDR_LIMIT_3GB;
        }
        Ok(p)
    }

    pub fn rlimit_stack(&self, machine: &Facts) -> u64 {
        self.rlimit_stack.unwrap_or(machine.rlimit_stack)
    }

    pub fn envp(&self, machine: &Facts) -> Vec<OsString> {
        self.env.clone().unwrap_or_else(|| machine.env.clone())
    }
}

/// A prediction.
#[derive(Debug)]
pub struct Plan {
    pub stage: Stage,
    /// The kernel's work (the exec stop).
    pub exec: ExecImage,
    /// The address space at `stage`.
    pub mm: AddressSpace,
    /// The libraries the loader chose (loaded and entry stages of a dynamic program).
    pub deps: Option<crate::deps::DepGraph>,
}

/// Plan `target` under `config` on `machine`.
pub fn plan(target: &Target, config: &Config, machine: &Facts) -> Result<Plan> {
    let pers = config.personality(machine)?;
    let req = ExecRequest {
        program: target.program.clone(),
        filename: target.filename.clone(),
        argv: target.argv.clone(),
        envp: config.envp(machine),
        personality: pers,
        rlimit_stack: config.rlimit_stack(machine),
        root: config.root.clone(),
    };
    // Draws are taken only where the kernel would randomise (PF_RANDOMIZE, which exec may
    // force on for set-user-ID programs), so a seeded source is harmless when ASLR is off.
    let mut random = if machine.randomize_va_space != 0 {
        ExecRandom::lazily_seeded(config.seed)
    } else {
        ExecRandom::Zero
    };
    let exec = load_elf_binary(&req, machine, &mut random)?;
    let mut mm = exec.mm.clone();
    let mut deps = None;
    match config.stage {
        Stage::Exec => {}
        Stage::Loaded | Stage::Entry => {
            if let Some(interp) = &exec.interp {
                let flavor = crate::deps::Flavor::from_interp(&interp.requested);
                let mut env = crate::deps::LoaderEnv::from_env(
                    exec.abi,
                    flavor,
                    &req.envp,
                    config.root.clone(),
                    machine,
                );
                env.secure = crate::ldso::at_secure(&target.program);
                let program = exec.program_image.clone();
                if flavor == crate::deps::Flavor::Musl {
                    let graph = crate::deps::resolve(
                        &program,
                        Path::new(&target.filename),
                        &interp.requested,
                        &env,
                    )?;
                    // musl: nothing changes between `_dl_debug_state()` and AT_ENTRY
                    // (constructors run later, from __libc_start_main).
                    let loaded = crate::ldso::musl::dls3(&exec, &graph, &env)?;
                    mm = if config.stage == Stage::Loaded {
                        loaded.mm
                    } else {
                        loaded.at_entry()
                    };
                    deps = Some(graph);
                } else {
                    let opts = crate::ldso::RtldOptions::from_env(&req.envp);
                    // A second thread ([`helper`]) reads every object's symbol table for
                    // the unique-symbol model as the resolver reports the objects, and opens
                    // libraries ahead of the resolver. It owns what it reads and is not
                    // joined: it ends on its own once it has sent the tables (releasing its
                    // tables after that is no reason to wait).
                    let ndx = std::sync::Arc::new(crate::ldso::versions::NdxAhead::default());
                    let scan = crate::ldso::unique::UniqueScan::new(program.clone(), opts.lazy)
                        .with_versions(ndx.clone());
                    // Not started for a short load list: then ld.so's model computes the
                    // tables itself (the result channel is closed).
                    let (start, ahead_rx) = helper_start(&env, Some(scan));
                    let graph = crate::deps::resolve_reporting(
                        &program,
                        Path::new(&target.filename),
                        &interp.requested,
                        &env,
                        start,
                    )?;
                    let ahead = crate::ldso::Ahead {
                        unique: ahead_rx,
                        ndx,
                    };
                    let loaded = crate::ldso::dl_main(&exec, &graph, &env, opts, Some(ahead))?;
                    // Entry: ld.so unmaps the cache; library constructors may then add
                    // mappings (a [heap] most often) that are not predicted.
                    mm = if config.stage == Stage::Loaded {
                        loaded.mm
                    } else {
                        loaded.at_entry()
                    };
                    deps = Some(graph);
                }
            } else if let Some(name) = crate::ldso::rtld_is_main_program(&exec, &target.argv) {
                // glibc's ld.so run as a command: it maps the program itself.
                let program = crate::elf::ElfImage::open(Path::new(&name))?;
                let interp = crate::elf::check::interp_path(&program)?
                    .unwrap_or_else(|| exec.program_file.path.clone());
                let mut env = crate::deps::LoaderEnv::from_env(
                    exec.abi,
                    crate::deps::Flavor::Glibc,
                    &req.envp,
                    config.root.clone(),
                    machine,
                );
                env.secure = crate::ldso::at_secure(&target.program);
                let graph = crate::deps::resolve(&program, Path::new(&name), &interp, &env)?;
                let opts = crate::ldso::RtldOptions::from_env(&req.envp);
                let loaded = crate::ldso::dl_main_rtld_is_main(&exec, &graph, &env, opts, &name)?;
                mm = if config.stage == Stage::Loaded {
                    loaded.mm
                } else {
                    loaded.at_entry()
                };
                deps = Some(graph);
            }
        }
    }
    Ok(Plan {
        stage: config.stage,
        exec,
        mm,
        deps,
    })
}

/// The dependency graph of `target` as its dynamic loader would resolve it in the
/// environment of `config` (for `elfmap deps`). `Ok(None)` for a program without PT_INTERP.
pub fn dependencies(
    target: &Target,
    config: &Config,
    machine: &Facts,
) -> Result<Option<crate::deps::DepGraph>> {
    use crate::deps::{Flavor, LoaderEnv};
    let img = crate::elf::ElfImage::open(&target.program)?;
    let abi = crate::elf::check::check_program(&img)?;
    let Some(interp) = crate::elf::check::interp_path(&img)? else {
        return Ok(None);
    };
    let flavor = Flavor::from_interp(&interp);
    let env = LoaderEnv::from_env(
        abi,
        flavor,
        &config.envp(machine),
        config.root.clone(),
        machine,
    );
    let as_execed = Path::new(&target.filename);
    if flavor != Flavor::Glibc {
        return crate::deps::resolve(&img, as_execed, &interp, &env).map(Some);
    }
    // A helper thread opens libraries ahead of the resolver, as for a plan ([`helper`]).
    let (start, _) = helper_start(&env, None);
    crate::deps::resolve_reporting(&img, as_execed, &interp, &env, start).map(Some)
}

/// How the resolver starts its helper thread ([`helper`], pinned to another CPU), once the
/// load list will hold [`HELPER_AFTER`] objects ([`crate::deps::HelperStart`]). With
/// `scan` the objects are reported to it and the unique-symbol tables it computes come on
/// the receiver, which is closed if it never starts; without, it only reads libraries
/// ahead.
fn helper_start(
    env: &crate::deps::LoaderEnv,
    scan: Option<crate::ldso::unique::UniqueScan>,
) -> (
    crate::deps::HelperStart<'static>,
    std::sync::mpsc::Receiver<crate::ldso::unique::UniqueAhead>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ahead_tx, ahead_rx) = std::sync::mpsc::channel();
    let prefetch = std::sync::Arc::new(crate::deps::prefetch::Prefetch::default());
    let helper_env = env.clone();
    let helper_prefetch = prefetch.clone();
    let report = scan.is_some();
    let spawn = move || {
        let worker = std::thread::spawn(move || {
            if let Some((a, read)) = helper(rx, &helper_env, &helper_prefetch, scan) {
                let _ = ahead_tx.send(a);
                // Unmapped only now: the main thread need not wait for that.
                drop(read);
            }
        });
        on_another_cpu(&worker);
        crate::deps::Helper { tx, prefetch }
    };
    let start = crate::deps::HelperStart {
        spawn: Box::new(spawn),
        after: HELPER_AFTER,
        report,
    };
    (start, ahead_rx)
}

/// The helper thread starts when the load list will hold this many objects. Measured here:
/// a helper costs ls, bash, git and python3 (4-6 objects) 0.16-0.24 ms, and saves curl
/// (33) about 0.2 ms and gdb (58) about 1.2 ms.
const HELPER_AFTER: usize = 8;

/// Move `thread` off the CPU we run on, when we may run on another. A new thread is often
/// queued behind its creator, which here does not block until it needs the thread's
/// result: on a 2-vCPU VM the worker then started 1-3 ms late in about a third of the runs,
/// and pinning it elsewhere took 1.1 ms off the mean plan of gdb.
fn on_another_cpu<T>(thread: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: plain libc calls on a zeroed cpu_set_t and the live thread's pthread_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let cpu = libc::sched_getcpu();
        if cpu < 0 || libc::CPU_COUNT(&set) < 2 {
            return;
        }
        libc::CPU_CLR(cpu as usize, &mut set);
        libc::pthread_setaffinity_np(
            thread.as_pthread_t(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        );
    }
}

/// The helper thread of a glibc loaded-stage plan: it reads each object the resolver
/// reports for the unique-symbol model (`scan`; first, as its tables are wanted soon after
/// the list is complete, the receiver's sender dropped), and with the time left reads the
/// libraries the resolver asks for ahead of it.
pub fn helper(
    rx: std::sync::mpsc::Receiver<crate::deps::Work>,
    env: &crate::deps::LoaderEnv,
    prefetch: &crate::deps::prefetch::Prefetch,
    mut scan: Option<crate::ldso::unique::UniqueScan>,
) -> Option<(
    crate::ldso::unique::UniqueAhead,
    crate::ldso::unique::TablesRead,
)> {
    use crate::deps::{ObjectFound, Work};
    use std::collections::VecDeque;
    use std::sync::mpsc::TryRecvError;
    fn queue(w: Work, fetch: &mut Vec<String>, later: &mut VecDeque<ObjectFound>) {
        match w {
            Work::Fetch(path) => fetch.push(path),
            Work::Found(found) => later.push_back(*found),
        }
    }
    let mut fs = env.fs();
    let mut later = VecDeque::new();
    // Paths to read, the latest asked for on top: the resolver works from the oldest.
    let mut fetch: Vec<String> = Vec::new();
    loop {
        // Everything sent so far, then one piece of work: a report (the unique-symbol scan
        // must not fall behind: its tables are wanted soon after the list is complete),
        // else a path, with the time left.
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(w) => queue(w, &mut fetch, &mut later),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            break;
        }
        if let Some(found) = later.pop_front() {
            if let Some(scan) = &mut scan {
                scan.add(found);
            }
        } else if let Some(path) = fetch.pop() {
            prefetch.fetch(&mut fs, &path);
        } else {
            match rx.recv() {
                Ok(w) => queue(w, &mut fetch, &mut later),
                Err(_) => break,
            }
        }
    }
    let mut scan = scan?;
    for found in later {
        scan.add(found);
    }
    Some(scan.finish())
}
