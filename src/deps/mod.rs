//! Dependency resolution as glibc 2.36's ld.so (and musl 1.2.3's) does it, for the loaded
//! stage: which files the loader opens, in which order, found how (spec/ldso.md sections 2
//! and 8).
//!
//! DOC: the result is a [`DepGraph`]: the objects in the loader's breadth-first load order
//! (`_dl_map_object_deps`; the program first, then the preloads, then every DT_NEEDED in
//! dynamic-section order, each new object appended once), with the exact string the loader
//! opened each one with, its canonical path and (dev, inode) as `/proc/PID/maps` will show
//! them, and the moment the loader first consulted `/etc/ld.so.cache` (it maps the cache
//! then). Missing libraries are listed, not fatal: the caller reports them. Only headers, the
//! dynamic section and the cache are read.
//!
//! * [`search`]: glibc's `_dl_map_object` / `open_path` / `_dl_init_paths` / `_dl_map_object_deps`.
//! * `musl`: musl's `load_library` / `path_open` / `load_deps`.
//! * [`ldcache`]: the `/etc/ld.so.cache` reader.
//! * [`hwcaps`]: CPU-dependent subdirectory lists (glibc-hwcaps, legacy hwcaps, platform).

pub mod hwcaps;
pub mod ldcache;
pub(crate) mod musl;
pub mod prefetch;
pub mod search;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::dynamic::DynamicInfo;
use crate::elf::{Abi, ElfImage};
use crate::error::Result;
pub use crate::host::fs::Fs;

/// Which dynamic loader the program names in PT_INTERP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Flavor {
    /// glibc's ld.so (ld-linux-x86-64.so.2, ld-linux.so.2), modelled as 2.36.
    Glibc,
    /// musl's ld-musl-x86_64.so.1 (libc.so itself), modelled as 1.2.3.
    Musl,
}

impl Flavor {
    /// musl if the interpreter's file name starts with `ld-musl-`, glibc otherwise.
    pub fn from_interp(interp: &Path) -> Flavor {
        match interp.file_name() {
            Some(n) if n.as_bytes().starts_with(b"ld-musl-") => Flavor::Musl,
            _ => Flavor::Glibc,
        }
    }
}

/// The environment the loader runs in: what it reads from the process environment, plus
/// the machine's view (an alternative root directory, secure mode, current directory).
#[derive(Clone, Debug)]
pub struct LoaderEnv {
    /// ABI of the program, which selects the loader (x86-64 or i386 ld.so).
    pub abi: Abi,
    pub flavor: Flavor,
    /// LD_LIBRARY_PATH (ignored in secure mode).
    pub ld_library_path: Option<String>,
    /// LD_PRELOAD.
    pub ld_preload: Option<String>,
    /// Look every absolute path (cache, default dirs, preload file, RPATH results, ...) up
    /// under this directory, as a loader running chrooted there would. Paths reported in
    /// [`DepObject::path`] and [`DepObject::realpath`] are inside the root;
    /// [`DepObject::host_path`] is where the file is on this machine.
    pub root: Option<PathBuf>,
    /// AT_SECURE (setuid/setgid/capabilities): spec/ldso.md 2.13.
    pub secure: bool,
    /// The current directory, against which relative names (LD_LIBRARY_PATH elements,
    /// DT_NEEDED with a relative '/' name) are opened. With `root`, it is inside the root.
    pub cwd: PathBuf,
    /// The CPU (which glibc-hwcaps and legacy hwcaps subdirectories are searched).
    pub cpu: crate::host::cpu::CpuFacts,
}

impl LoaderEnv {
    /// The file system as this loader sees it (under `root`, from `cwd`).
    pub fn fs(&self) -> Fs {
        Fs::new(self.root.as_deref(), &self.cwd)
    }
}

impl LoaderEnv {
    /// Take LD_LIBRARY_PATH and LD_PRELOAD from `envp` (`NAME=value` strings): the last
    /// occurrence for glibc (`process_envvars` overwrites), the first for musl (`getenv`).
    /// `secure` starts false; the current directory and the CPU are the host's.
    pub fn from_env(
        abi: Abi,
        flavor: Flavor,
        envp: &[OsString],
        root: Option<PathBuf>,
        host: &crate::host::Facts,
    ) -> Self {
        let get = |name: &[u8]| -> Option<String> {
            let mut hits = envp.iter().filter_map(|e| {
                let b = e.as_bytes();
                let v = b.strip_prefix(name)?.strip_prefix(b"=")?;
                Some(String::from_utf8_lossy(v).into_owned())
            });
            match flavor {
                Flavor::Glibc => hits.next_back(),
                Flavor::Musl => hits.next(),
            }
        };
        LoaderEnv {
            abi,
            flavor,
            ld_library_path: get(b"LD_LIBRARY_PATH"),
            ld_preload: get(b"LD_PRELOAD"),
            root,
            secure: false,
            cwd: host.cwd(),
            cpu: host.cpu().clone(),
        }
    }
}

/// How the loader found an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FoundVia {
    /// The program itself (mapped by the kernel).
    Program,
    /// LD_PRELOAD or /etc/ld.so.preload.
    Preload,
    /// A name containing '/', opened as is (after DST expansion).
    SlashName,
    /// The DT_RPATH list of object `of` (the loader chain, or the program's).
    Rpath {
        of: usize,
    },
    LdLibraryPath,
    /// The DT_RUNPATH of object `of` (the direct loader).
    Runpath {
        of: usize,
    },
    /// /etc/ld.so.cache.
    Cache,
    /// The built-in system directories (glibc) or musl's system path.
    DefaultDir,
    /// The dynamic loader itself (glibc's ld.so; musl's libc.so), never mapped again.
    Loader,
}

/// One object of the load list.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DepObject {
    /// The name it was requested under the first time (the DT_NEEDED or LD_PRELOAD string,
    /// DSTs expanded, as stored in glibc's `l_libname`); the program: its path as exec'd.
    pub requested: String,
    /// The exact string the loader opened it with (glibc's `l_name`: directory + subdirectory
    /// + name, a cache value, a '/' name...). For ld.so: the PT_INTERP string.
    pub path: PathBuf,
    /// The canonical path (symlinks resolved), as maps shows it; inside `root` if set.
    pub realpath: PathBuf,
    /// `realpath` on this machine (differs from it only with a root).
    pub host_path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub soname: Option<String>,
    pub found_via: FoundVia,
    /// Index of the object whose DT_NEEDED brought it in (glibc's `l_loader`; musl's
    /// `needed_by`); the program for glibc preloads; `None` for the program (and musl
    /// preloads).
    pub loader: Option<usize>,
    /// Indices of the objects satisfying this object's DT_NEEDED entries, in order (missing
    /// ones left out).
    pub needed: Vec<usize>,
    pub dynamic: Option<Arc<DynamicInfo>>,
    /// The file as the resolver opened it (headers mapped, zero-copy), for the mapping
    /// model; `None` for the program (the caller has it) and if the loader could not be read.
    #[serde(skip)]
    pub image: Option<Arc<ElfImage>>,
}

/// A DT_NEEDED entry nothing was found for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Missing {
    pub name: String,
    /// Index of the object whose DT_NEEDED it is.
    pub needed_by: usize,
    /// Every file the loader tried to open, in order (glibc: as `LD_DEBUG=libs` prints
    /// "trying file=", including the cache's answer; directories already known not to
    /// exist are skipped, as ld.so skips them).
    pub tried: Vec<PathBuf>,
}

/// The loader's use of `/etc/ld.so.cache`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CacheUse {
    /// The path inside the root (`/etc/ld.so.cache`).
    pub path: PathBuf,
    pub host_path: PathBuf,
    /// `st_size` (ld.so maps this many bytes, r--p), dev and inode.
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    /// False if ld.so rejects the file (it maps it and unmaps it again: nothing remains).
    pub valid: bool,
}

/// `/etc/ld.so.preload` as ld.so used it (mapped rw-p private, then unmapped).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PreloadFileUse {
    pub path: PathBuf,
    pub size: u64,
}

/// The resolved load list.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DepGraph {
    /// Load (BFS) order; `[0]` = the program. Includes the loader itself (never mapped)
    /// where a DT_NEEDED first names it.
    pub objects: Vec<DepObject>,
    pub missing: Vec<Missing>,
    /// `Some(k)`: the loader first consulted the cache while `objects[..k]` were loaded and
    /// before `objects[k]` was (k may be `objects.len()`): the cache is mapped at that moment.
    /// `None`: never consulted (musl never is).
    pub first_cache_use: Option<usize>,
    /// The cache file, if it was consulted and could be opened.
    pub cache: Option<CacheUse>,
    /// `/etc/ld.so.preload`, if ld.so read it (readable and not empty).
    pub preload_file: Option<PreloadFileUse>,
    /// Where the loader sits in `objects`, if some DT_NEEDED names it.
    pub interp_index: Option<usize>,
    pub warnings: Vec<String>,
}

impl DepGraph {
    /// True if nothing is missing.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Resolve the load list of `program`, started as `program_path_as_execed`, whose
/// PT_INTERP is `interp` (a path inside `env.root` if set), with the loader of `env.flavor`.
///
/// `Err` only for what makes the loader itself give up even when it just lists (ld.so's
/// `_dl_signal_error` outside a search: a candidate that is not a valid ELF of a loadable
/// type, an executable as a dependency, "DST not allowed in SUID/SGID programs"), or an
/// unreadable program.
pub fn resolve(
    program: &ElfImage,
    program_path_as_execed: &Path,
    interp: &Path,
    env: &LoaderEnv,
) -> Result<DepGraph> {
    match env.flavor {
        Flavor::Glibc => search::resolve_glibc(program, program_path_as_execed, interp, env, None),
        Flavor::Musl => musl::resolve_musl(program, program_path_as_execed, interp, env),
    }
}

/// An object as the resolver enters it in the load list (glibc), for work that can start
/// before the whole list is known (the unique-symbol model reads every object's symbols).
#[derive(Clone, Debug)]
pub struct ObjectFound {
    /// Its index in [`DepGraph::objects`].
    pub index: usize,
    /// The file as opened (`None` for the program, which the caller opened).
    pub image: Option<Arc<ElfImage>>,
    pub dynamic: Option<Arc<DynamicInfo>>,
    /// Whether it is the dynamic loader.
    pub is_rtld: bool,
}

/// What the glibc resolver hands a helper thread.
#[derive(Debug)]
pub enum Work {
    /// An object entered the load list.
    Found(Box<ObjectFound>),
    /// Read this in-root path ahead of the resolver (`prefetch::Prefetch::fetch`).
    Fetch(String),
}

/// A helper thread for the resolver: where its work goes, and the slots its readings of
/// libraries go to.
pub struct Helper {
    pub tx: std::sync::mpsc::Sender<Work>,
    pub prefetch: Arc<prefetch::Prefetch>,
}

/// How the resolver gets its helper: started only once the load list will hold at least
/// `after` objects, as far as it can tell (a thread costs about 0.1 ms here, more than it
/// saves on a short list): its length so far plus the DT_NEEDED entries of the object just
/// entered. Then it is told about every object so far if `report`.
pub struct HelperStart<'a> {
    pub spawn: Box<dyn FnOnce() -> Helper + 'a>,
    pub after: usize,
    /// Whether to report the objects ([`Work::Found`]), or only ask for paths.
    pub report: bool,
}

/// [`resolve`] for glibc programs with a helper thread (started when the list grows long
/// enough, never for a short one): each object is reported to it as it enters the load
/// list, and it opens likely libraries ahead of the resolver. The sender is dropped when
/// the list is complete.
pub fn resolve_reporting<'a>(
    program: &ElfImage,
    program_path_as_execed: &Path,
    interp: &Path,
    env: &'a LoaderEnv,
    helper: HelperStart<'a>,
) -> Result<DepGraph> {
    match env.flavor {
        Flavor::Glibc => {
            search::resolve_glibc(program, program_path_as_execed, interp, env, Some(helper))
        }
        Flavor::Musl => musl::resolve_musl(program, program_path_as_execed, interp, env),
    }
}

/// `dirname` as ld.so's `_dl_new_object` keeps it for `l_origin`: everything before the
/// last '/', "/" for a file in the root directory.
pub(crate) fn origin_of(abs: &str) -> String {
    match abs.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => abs[..i].to_string(),
    }
}
