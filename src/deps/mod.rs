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

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::dynamic::DynamicInfo;
use crate::elf::{Abi, ElfImage};
use crate::error::Result;

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
}

impl LoaderEnv {
    /// Take LD_LIBRARY_PATH and LD_PRELOAD from `envp` (`NAME=value` strings): the last
    /// occurrence for glibc (`process_envvars` overwrites), the first for musl (`getenv`).
    /// `secure` starts false; `cwd` is this process's current directory (or "/").
    pub fn from_env(abi: Abi, flavor: Flavor, envp: &[OsString], root: Option<PathBuf>) -> Self {
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
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
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

/// File-system access under the optional root, with a cache of canonical directories so that
/// canonicalizing N libraries of one directory costs one `readlink` each.
pub(crate) struct Fs<'e> {
    env: &'e LoaderEnv,
    /// In-root directory string as written → its canonical in-root path.
    canon_dirs: HashMap<String, String>,
    cwd: String,
}

/// Maximum symlinks followed while canonicalizing (glibc realpath's MAXSYMLINKS is 40 too,
/// via `__eloop_threshold`).
const MAXSYMLINKS: usize = 40;

impl<'e> Fs<'e> {
    pub(crate) fn new(env: &'e LoaderEnv) -> Fs<'e> {
        let mut cwd = env.cwd.to_string_lossy().into_owned();
        if !cwd.starts_with('/') {
            cwd.insert(0, '/');
        }
        Fs {
            env,
            canon_dirs: HashMap::new(),
            cwd,
        }
    }

    /// The current directory (in-root), as `getcwd` gives it.
    pub(crate) fn cwd(&self) -> &str {
        &self.cwd
    }

    /// Where in-root path `p` is on this machine: under the root if absolute, against the
    /// current directory if relative.
    pub(crate) fn host<'a>(&self, p: &'a str) -> Cow<'a, Path> {
        match (&self.env.root, p.starts_with('/')) {
            (None, true) => Cow::Borrowed(Path::new(p)),
            (Some(r), true) => Cow::Owned(r.join(p.trim_start_matches('/'))),
            (None, false) => Cow::Owned(self.env.cwd.join(p)),
            (Some(r), false) => Cow::Owned(r.join(self.cwd.trim_start_matches('/')).join(p)),
        }
    }

    /// The canonical in-root path of in-root path `p` (realpath(3) semantics inside the
    /// root: symlinks resolved, absolute link targets taken relative to the root, ".." never
    /// leaving it).
    pub(crate) fn realpath(&mut self, p: &str) -> io::Result<String> {
        let abs: Cow<str> = if p.starts_with('/') {
            Cow::Borrowed(p)
        } else {
            Cow::Owned(format!("{}/{}", self.cwd.trim_end_matches('/'), p))
        };
        let cut = abs.rfind('/').unwrap_or(0);
        let (dir, base) = (&abs[..cut], &abs[cut + 1..]);
        let canon_dir = match self.canon_dirs.get(dir) {
            Some(c) => c.clone(),
            None => {
                let c = walk(self.env.root.as_deref(), "/".to_string(), dir, true)?;
                self.canon_dirs.insert(dir.to_string(), c.clone());
                c
            }
        };
        walk(self.env.root.as_deref(), canon_dir, base, false)
    }

    /// In-root canonical path of a file given by its *host* path (the program, which the
    /// caller opened): canonicalize on the host, then strip the root if the result is inside.
    pub(crate) fn realpath_of_host(&mut self, host: &Path) -> io::Result<(String, PathBuf)> {
        if self.env.root.is_none() {
            let r = self.realpath(&host.to_string_lossy())?;
            let h = PathBuf::from(&r);
            return Ok((r, h));
        }
        let canon = std::fs::canonicalize(host)?;
        let inside = match &self.env.root {
            None => None,
            Some(r) => std::fs::canonicalize(r).ok().and_then(|r| {
                canon
                    .strip_prefix(r)
                    .ok()
                    .map(|rest| format!("/{}", rest.to_string_lossy()))
            }),
        };
        let s = inside.unwrap_or_else(|| canon.to_string_lossy().into_owned());
        Ok((s, canon))
    }
}

/// Resolve the components of `rest` starting from the canonical directory `resolved`, both
/// in-root paths (realpath(3) semantics inside `root`: absolute link targets are taken
/// relative to it, ".." never leaves it). `rest_is_dir`: `rest` names a directory, so every
/// component's `readlink` is remembered ([`read_link_remembered`]); otherwise the last is
/// not (a library's own name is mostly looked at once).
///
/// One `readlink` per component: EINVAL means "exists, not a symlink" (a non-directory
/// in the middle then fails the next component's readlink with ENOTDIR; before "." or
/// ".." it is checked with a `stat`).
fn walk(
    root: Option<&Path>,
    mut resolved: String,
    rest: &str,
    rest_is_dir: bool,
) -> io::Result<String> {
    // Components still to walk, the next on top: `rest`'s borrowed, a link target's owned.
    let mut pending: Vec<Cow<str>> = rest.rsplit('/').map(Cow::Borrowed).collect();
    let mut links = 0;
    let mut unverified_dir = false;
    while let Some(comp) = pending.pop() {
        match &*comp {
            "" | "." | ".." => {
                // "." and "..", and a trailing '/' (of the path or of a link's target),
                // need what is resolved so far to be a directory (glibc's
                // `suffix_requires_dir_check`); an empty component elsewhere is "//".
                let needs_dir = !comp.is_empty() || pending.iter().all(|c| c.is_empty());
                if needs_dir && unverified_dir {
                    if !std::fs::metadata(in_root(root, &resolved))?.is_dir() {
                        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                    }
                    unverified_dir = false;
                }
                if comp == ".." {
                    let cut = resolved.rfind('/').unwrap_or(0);
                    resolved.truncate(cut.max(1));
                }
                continue;
            }
            _ => {}
        }
        // The candidate is built in place: `resolved` + "/" + `comp`.
        let parent = resolved.len();
        if resolved != "/" {
            resolved.push('/');
        }
        resolved.push_str(&comp);
        // Directories on the way are looked at again and again (/usr, the library
        // directory); the last component (a library's own name) mostly once.
        let host = in_root(root, &resolved);
        let link = if rest_is_dir || pending.iter().any(|c| !c.is_empty()) {
            read_link_remembered(&host)
        } else {
            read_link_uncached(&host)
        };
        match link {
            Ok(Some(target)) => {
                links += 1;
                if links > MAXSYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let Some(target) = target.to_str() else {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, NOT_UTF8_TARGET));
                };
                if target.starts_with('/') {
                    resolved.truncate(1);
                } else {
                    resolved.truncate(parent);
                }
                pending.extend(target.rsplit('/').map(|c| Cow::Owned(c.to_owned())));
            }
            Ok(None) => unverified_dir = true,
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// Where absolute in-root path `abs` is on this machine.
fn in_root<'a>(root: Option<&Path>, abs: &'a str) -> Cow<'a, Path> {
    match root {
        None => Cow::Borrowed(Path::new(abs)),
        Some(r) => Cow::Owned(r.join(abs.trim_start_matches('/'))),
    }
}

thread_local! {
    /// What `readlink` said of each host path so far: the link's target, or `None` for
    /// "exists and is not a symlink" (EINVAL). The kernel's model and the resolver walk the
    /// same directories (/usr, /lib64, the library directory) again and again; a plan
    /// assumes the files do not change under it. Failures are not kept.
    static READLINK: std::cell::RefCell<HashMap<PathBuf, Option<PathBuf>>> =
        std::cell::RefCell::new(HashMap::new());
}

/// `readlink(2)` of a host path, once per path and thread ([`READLINK`]): `Ok(None)` when
/// the path exists and is not a symbolic link. Only successes are remembered, so a regular
/// file used as a directory still fails its child's (uncached) `readlink` with ENOTDIR.
fn read_link_remembered(host: &Path) -> io::Result<Option<PathBuf>> {
    if let Some(known) = READLINK.with(|m| m.borrow().get(host).cloned()) {
        return Ok(known);
    }
    let r = read_link_uncached(host)?;
    READLINK.with(|m| m.borrow_mut().insert(host.to_path_buf(), r.clone()));
    Ok(r)
}

/// `readlink(2)` of a host path, not remembered: `Ok(None)` when the path exists and is
/// not a symbolic link.
fn read_link_uncached(host: &Path) -> io::Result<Option<PathBuf>> {
    match std::fs::read_link(host) {
        Ok(target) => Ok(Some(target)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `realpath(3)` of an absolute host path, by the same walk as [`Fs::realpath`] (a
/// `readlink` per component, the directories' remembered); relative paths and paths that
/// are not UTF-8 (or lead through a link whose target is not) go to the C library's
/// `realpath`.
pub(crate) fn host_realpath(path: &Path) -> io::Result<PathBuf> {
    match path.to_str() {
        Some(p) if p.starts_with('/') => match walk(None, "/".to_string(), p, false) {
            // The walk's one error that is not the system's ([`NOT_UTF8_TARGET`]).
            Err(e) if e.kind() == io::ErrorKind::InvalidData => std::fs::canonicalize(path),
            r => r.map(PathBuf::from),
        },
        _ => std::fs::canonicalize(path),
    }
}

/// [`walk`]'s error for a symlink whose target is not UTF-8 (in-root paths are strings).
const NOT_UTF8_TARGET: &str = "a symbolic link's target is not UTF-8";

/// `dirname` as ld.so's `_dl_new_object` keeps it for `l_origin`: everything before the
/// last '/', "/" for a file in the root directory.
pub(crate) fn origin_of(abs: &str) -> String {
    match abs.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => abs[..i].to_string(),
    }
}
