//! DOC: the pipeline. A plan is made in one direction: the host's facts
//! ([`crate::host::Facts`]) and the ELF files go to the kernel's exec model
//! ([`crate::kernel`]: the exec stop), then, for a dynamic program, to its loader's model
//! ([`crate::ldso`]: the loaded stop, and the entry stop after it); the address space at
//! the stage asked for comes out, with what the models know about it.
//!
//! The speed machinery lives here and nowhere else, behind the one seam the models offer
//! ([`crate::ldso::Ahead`]): what earlier runs computed of the same files ([`memo`]: ld.so's
//! unique-symbol tables and version-array sizes, the one costly part of a plan), and a
//! second thread that works ahead of glibc's model when nothing was remembered
//! ([`helper`]).

mod helper;
mod memo;
mod prefetch;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::host::Facts;
use crate::kernel::binfmt_elf::{load_elf_binary, ExecImage, ExecRequest};
use crate::kernel::personality;
use crate::kernel::profile::Kernel;
use crate::kernel::random::{DrawKind, ExecRandom};
use crate::ldso::glibc::{self, Invocation, RtldOptions};
use crate::ldso::{musl, DepGraph, Flavor, LoaderEnv};
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

impl Target {
    /// Resolve `name` as a process whose root directory is `root` would (`None`: as
    /// [`Target::resolve`]): an absolute path is looked up inside `root` (a path on this
    /// machine that already lies inside `root` is taken as the file it names there), a
    /// name without '/' in the directories of `path_env` (`$PATH`) inside `root`. The
    /// execve path and `argv[0]` are the path inside `root`, as the process sees it.
    pub fn resolve_under(
        root: Option<&Path>,
        name: &OsStr,
        args: &[OsString],
        path_env: Option<&OsStr>,
    ) -> Result<Target> {
        let Some(root) = root else {
            return Target::resolve(name, args);
        };
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let not_found = |reason: &str| Error::Usage {
            path: name.into(),
            reason: format!("{reason} under --root {}", root.display()),
        };
        let (host, in_root): (PathBuf, PathBuf) = if name.as_bytes().contains(&b'/') {
            let p = Path::new(name);
            if p.is_absolute() && inside(p).exists() {
                (inside(p), p.to_path_buf())
            } else if let Some(r) = crate::host::fs::in_root_of(root, p) {
                (p.to_path_buf(), PathBuf::from(r))
            } else {
                return Err(not_found("no such file"));
            }
        } else {
            let path = path_env
                .map(OsStr::to_os_string)
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|cand| cand.is_absolute() && is_executable_file(&inside(cand)))
                .map(|cand| (inside(&cand), cand))
                .ok_or_else(|| not_found("command not found in PATH"))?
        };
        // The file as the process inside the root would open it (its links followed there).
        let host = match crate::host::fs::Fs::new(Some(root), Path::new("/"))
            .realpath(&in_root.to_string_lossy())
        {
            Ok(canon) => inside(Path::new(&canon)),
            Err(_) => host,
        };
        let mut argv = vec![in_root.clone().into_os_string()];
        argv.extend(args.iter().cloned());
        Ok(Target {
            program: host,
            filename: in_root.into_os_string(),
            argv,
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
    /// RLIMIT_AS for the program (`u64::MAX`: unlimited); `None`: our own.
    pub rlimit_as: Option<u64>,
    /// Seed for a randomized plan when ASLR is on.
    pub seed: Option<u64>,
    /// The kernel's random draws, given (recovered from a real sample): used instead of
    /// random ones when ASLR is on.
    pub draws: Option<Vec<(DrawKind, u64)>>,
    pub root: Option<PathBuf>,
    /// The environment given to the program; `None`: our own.
    pub env: Option<Vec<OsString>>,
    /// Keep what each of glibc's loader allocations is for (the ledger's labels): for
    /// explaining a layout and for comparing with the real ld.so under gdb; it costs the
    /// formatting of a few hundred labels.
    pub ledger: bool,
    /// The kernel to plan for (`--kernel`); `None`: the running kernel of the machine's
    /// facts ([`Kernel::running`]).
    pub kernel: Option<Arc<Kernel>>,
    /// Take ld.so's unique-symbol tables and version-array sizes from what an earlier run
    /// computed of the same files, and keep what this run computes, in the user's cache
    /// (the speed machinery's [`memo`]; `ELFMAP_CACHE=off` overrides). The command line
    /// does; a library caller opts in (it writes under `$XDG_CACHE_HOME`).
    pub remember: bool,
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
            rlimit_as: None,
            seed: None,
            draws: None,
            root: None,
            env: None,
            ledger: false,
            kernel: None,
            remember: false,
        }
    }

    /// The kernel the plan is for: `kernel`, or the running one of `machine`.
    pub fn kernel(&self, machine: &Facts) -> Arc<Kernel> {
        self.kernel
            .clone()
            .unwrap_or_else(|| Arc::new(Kernel::running(machine)))
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

    pub fn rlimit_as(&self, machine: &Facts) -> u64 {
        self.rlimit_as.unwrap_or(machine.rlimit_as)
    }

    pub fn envp(&self, machine: &Facts) -> Vec<OsString> {
        self.env.clone().unwrap_or_else(|| machine.env.clone())
    }
}

/// What the dynamic loader's model made of the program, besides the address space.
#[derive(Debug)]
pub enum LoaderRun {
    Glibc(glibc::Loaded),
    Musl(musl::MuslLoaded),
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
    pub deps: Option<DepGraph>,
    /// The loader's link maps, TLS and allocations (loaded and entry stages).
    pub loader: Option<LoaderRun>,
    /// What the plan was read through and no longer needs: released when the plan is
    /// dropped (or left to exit, as the command does).
    pub held: Held,
}

/// Input a plan no longer needs, held with it ([`Plan::held`]): the mappings of the symbol
/// tables the unique-symbol model read on the model's thread. Released with the plan: a
/// command that exits right after its output leaves them to exit, one pass over the
/// address space instead of a `munmap` each (14 for gdb).
#[derive(Default)]
pub struct Held(Option<crate::ldso::glibc::unique::TablesRead>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// Plan `target` under `config` on `machine`.
pub fn plan(target: &Target, config: &Config, machine: &Facts) -> Result<Plan> {
    let exec = exec(target, config, machine)?;
    let mut held = Held::default();
    let (mm, deps, loader) = match config.stage {
        Stage::Exec => (exec.mm.clone(), None, None),
        // A program without PT_INTERP starts at its own entry, AT_ENTRY: a loader run as a
        // command (`ld.so PROGRAM`, `ld-musl-x86_64.so.1 PROGRAM`) has done nothing yet there.
        Stage::Entry if exec.interp.is_none() => (exec.mm.clone(), None, None),
        Stage::Loaded | Stage::Entry => match load(&exec, target, config, machine, &mut held)? {
            None => (exec.mm.clone(), None, None),
            Some((mut mm, graph, run)) => {
                if config.stage == Stage::Entry {
                    // ld.so unmaps the cache; library constructors may then add mappings
                    // (a [heap] most often) that are not predicted.
                    if let LoaderRun::Glibc(l) = &run {
                        l.unload_cache(&mut mm);
                    }
                }
                (mm, Some(graph), Some(run))
            }
        },
    };
    Ok(Plan {
        stage: config.stage,
        exec,
        mm,
        deps,
        loader,
        held,
    })
}

/// What execve is asked: `target` under `config` on `machine`.
fn exec_request(
    target: &Target,
    config: &Config,
    machine: &Facts,
    kernel: &Kernel,
) -> Result<ExecRequest> {
    let req = ExecRequest {
        program: target.program.clone(),
        filename: target.filename.clone(),
        argv: target.argv.clone(),
        envp: config.envp(machine),
        personality: config.personality(machine)?,
        rlimit_stack: config.rlimit_stack(machine),
        rlimit_as: config.rlimit_as(machine),
        binfmt_misc: machine.binfmt_misc.clone(),
        root: config.root.clone(),
    };
    // The strings are copied before any file is looked at.
    crate::kernel::verdict::bprm_stack_limits(&req, kernel.rules.arch.pointer_size())?;
    Ok(req)
}

/// The kernel's exec of `target` under `config` on `machine`: the exec stop.
fn exec(target: &Target, config: &Config, machine: &Facts) -> Result<ExecImage> {
    // A script: its interpreter is exec'd instead (fs/binfmt_script.c).
    let kernel = config.kernel(machine);
    let req = crate::kernel::script::load_scripts(exec_request(target, config, machine, &kernel)?)?;
    // Draws are taken only where the kernel would randomise (PF_RANDOMIZE, which exec may
    // force on for set-user-ID programs), so a seeded source is harmless when ASLR is off.
    let mut random = if let (Some(d), true) = (&config.draws, kernel.facts.randomize_va_space != 0)
    {
        ExecRandom::fixed(d.clone())
    } else if kernel.facts.randomize_va_space != 0 {
        ExecRandom::lazily_seeded(config.seed)
    } else {
        ExecRandom::zero()
    };
    load_elf_binary(&req, machine, &kernel, &mut random)
}

/// Which loader model runs after the exec: the PT_INTERP's (glibc or musl), or glibc's
/// ld.so or musl's loader run as a command on a program. `None` for a program without a
/// loader.
fn loader_of(exec: &ExecImage, target: &Target) -> Option<(Flavor, Invocation)> {
    match &exec.interp {
        Some(interp) => Some((Flavor::from_interp(&interp.requested), Invocation::Kernel)),
        None => glibc::rtld_is_main_program(exec, &target.argv)
            .map(|program_name| (Flavor::Glibc, Invocation::RtldIsMain { program_name }))
            .or_else(|| {
                musl::ldso_is_main_program(exec, &target.argv)
                    .map(|program_name| (Flavor::Musl, Invocation::RtldIsMain { program_name }))
            }),
    }
}

/// The loader's run after `exec`: the address space at the loaded stop, the load list and
/// the rest of what the model knows. `None` for a program without a loader.
fn load(
    exec: &ExecImage,
    target: &Target,
    config: &Config,
    machine: &Facts,
    held: &mut Held,
) -> Result<Option<(AddressSpace, DepGraph, LoaderRun)>> {
    let Some((flavor, invocation)) = loader_of(exec, target) else {
        return Ok(None);
    };
    let envp = config.envp(machine);
    let mut env = LoaderEnv::from_env(exec.abi, flavor, &envp, config.root.clone(), machine);
    env.secure = exec.at_secure;
    Ok(Some(match flavor {
        Flavor::Glibc => {
            let opts = RtldOptions {
                ledger: config.ledger,
                ..RtldOptions::from_env(&envp)
            };
            // A second thread reads every object's symbol tables for the unique-symbol
            // model as the model reports the objects, and opens libraries ahead of it.
            let mut ahead = helper::Helper::new(&env, Some(opts.lazy), config.remember);
            let (mm, loaded, graph) = glibc::dl_main(exec, &env, opts, invocation, &mut ahead)?;
            held.0 = ahead.take_read();
            (mm, graph, LoaderRun::Glibc(loaded))
        }
        Flavor::Musl => {
            // musl: nothing changes between `_dl_debug_state()` and AT_ENTRY (constructors
            // run later, from __libc_start_main).
            let (mm, loaded, graph) = match &invocation {
                Invocation::Kernel => musl::dls3(exec, &env)?,
                Invocation::RtldIsMain { program_name } => {
                    musl::dls3_command(exec, &env, program_name)?
                }
            };
            (mm, graph, LoaderRun::Musl(loaded))
        }
    }))
}

/// The dependency graph of `target` as its dynamic loader would resolve it in the
/// environment of `config` (for `elfmap deps`). `Ok(None)` for a program without PT_INTERP.
pub fn dependencies(target: &Target, config: &Config, machine: &Facts) -> Result<Option<DepGraph>> {
    // The files as execve would take them (or its refusal).
    let kernel = config.kernel(machine);
    let req = crate::kernel::script::load_scripts(exec_request(target, config, machine, &kernel)?)?;
    let bin = crate::kernel::verdict::search_binary_handler(&req)?;
    let Some((interp, _)) = bin.interp else {
        return Ok(None);
    };
    let abi = bin.abi;
    let img = Arc::new(bin.program);
    let flavor = Flavor::from_interp(&interp);
    let env = LoaderEnv::from_env(
        abi,
        flavor,
        &config.envp(machine),
        config.root.clone(),
        machine,
    );
    let as_execed = Path::new(&target.filename);
    match flavor {
        Flavor::Musl => musl::list(&img, as_execed, &interp, &env).map(Some),
        Flavor::Glibc => {
            // A helper thread opens libraries ahead of the model, as for a plan.
            let mut ahead = helper::Helper::new(&env, None, false);
            glibc::list(&img, as_execed, &interp, &env, &mut ahead).map(Some)
        }
    }
}
