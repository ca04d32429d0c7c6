//! DOC: the dynamic loaders, one model each: glibc 2.36's `ld.so` ([`glibc`]) and musl
//! 1.2.3's (`libc.so`, [`musl`]). Each model is written once and does both jobs of the real
//! loader: it finds the libraries (which files it opens, in which order, found how) and it
//! replays what loading them does to the address space, from the exec stop to the
//! debugger's "loaded" stop. Listing the libraries alone (`elfmap deps`) is the same model
//! with the address space left out.
//!
//! The load list is a [`DepGraph`]: the objects in the loader's breadth-first load order
//! (the program first, then the preloads, then every DT_NEEDED in dynamic-section order,
//! each new object appended once), with the exact string the loader opened each one with,
//! its canonical path and (dev, inode) as `/proc/PID/maps` will show them, and the moment
//! glibc's loader first consulted `/etc/ld.so.cache` (it maps the cache then). Missing
//! libraries are listed, not fatal: the caller reports them.
//!
//! What a model can have done ahead of it (reading files, symbol tables) goes through one
//! seam, [`Ahead`]; the models never see threads.

pub mod glibc;
pub mod musl;

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
    /// AT_SECURE (setuid/setgid/capabilities): `__libc_enable_secure`, which turns off
    /// LD_LIBRARY_PATH and restricts LD_PRELOAD and DSTs (elf/dl-support.c, elf/rtld.c).
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

/// An object as a loader model enters it in the load list, for work that can start before
/// the whole list is known (the unique-symbol model reads every object's symbols).
#[derive(Clone, Debug)]
pub struct ObjectFound {
    /// Its index in [`DepGraph::objects`].
    pub index: usize,
    /// The file as opened.
    pub image: Option<Arc<ElfImage>>,
    pub dynamic: Option<Arc<DynamicInfo>>,
    /// Whether it is the dynamic loader.
    pub is_rtld: bool,
}

/// What a loader model reads of a library it opens: the image (ELF and program headers),
/// the dynamic section, and the canonical in-root path (`None` if canonicalizing failed).
pub struct Fetched {
    pub img: ElfImage,
    pub dynamic: Arc<DynamicInfo>,
    pub realpath: Option<String>,
}

/// Work a loader model can have done ahead of it, elsewhere: the seam between the models
/// and the speed machinery ([`crate::plan`] runs it on a second thread). Every method has
/// a default that does nothing, which is what a model gets when nothing works ahead
/// ([`NothingAhead`]); whatever comes back is checked by the model (the same file, the same
/// inputs) before it is used, and the model computes it itself otherwise, so the result
/// never depends on it.
pub trait Ahead {
    /// Object `found` entered the load list, which will hold at least `expected` objects
    /// (its length and what the new object names).
    fn object_found(&mut self, found: ObjectFound, expected: usize) {
        let _ = (found, expected);
    }
    /// Whether asking for files to be read ahead ([`Ahead::read_ahead`]) is worth it now.
    fn reads_ahead(&self) -> bool {
        false
    }
    /// The in-root path `path` will probably be opened soon.
    fn read_ahead(&mut self, path: &str) {
        let _ = path;
    }
    /// What was read of `path` ahead, if that is done.
    fn take(&mut self, path: &str) -> Option<Box<Fetched>> {
        let _ = path;
        None
    }
    /// The load list is complete.
    fn list_complete(&mut self) {}
    /// `ndx_high` of object `index` ([`crate::elf::versions::highest_version_index`]), if it
    /// was computed from this very image.
    fn version_ndx(&mut self, index: usize, img: &Arc<ElfImage>) -> Option<u32> {
        let _ = (index, img);
        None
    }
    /// The unique-symbol tables of the load list, with the objects they were computed from.
    fn unique_tables(&mut self) -> Option<glibc::unique::UniqueAhead> {
        None
    }
}

/// The load list of `program` (started as `exec_path`, whose PT_INTERP is `interp`) as
/// the loader of `env.flavor` finds it, nothing mapped and nothing done ahead.
pub fn list(
    program: &Arc<ElfImage>,
    exec_path: &Path,
    interp: &Path,
    env: &LoaderEnv,
) -> Result<DepGraph> {
    match env.flavor {
        Flavor::Glibc => glibc::list(program, exec_path, interp, env, &mut NothingAhead),
        Flavor::Musl => musl::list(program, exec_path, interp, env),
    }
}

/// Nothing is done ahead: the model does all the work itself.
pub struct NothingAhead;

impl Ahead for NothingAhead {}

/// The program as a loader's load list starts with it: opened by the kernel (or by ld.so
/// run as a command) as `exec_path`; its canonical path inside the root is what
/// `/proc/self/exe` says.
pub(crate) fn program_object(
    fs: &mut Fs,
    program: &Arc<ElfImage>,
    exec_path: &Path,
) -> Result<DepObject> {
    use std::os::unix::fs::MetadataExt;
    let dynamic = crate::elf::dynamic::read_dynamic(program)?;
    let (realpath, host) = fs
        .realpath_of_host(&program.path)
        .map_err(|e| crate::error::Error::io(&program.path, e))?;
    Ok(DepObject {
        requested: exec_path.to_string_lossy().into_owned(),
        path: exec_path.to_path_buf(),
        realpath: PathBuf::from(realpath),
        host_path: host,
        dev: program.meta.dev(),
        ino: program.meta.ino(),
        soname: dynamic.as_ref().and_then(|d| d.soname.clone()),
        found_via: FoundVia::Program,
        loader: None,
        needed: Vec::new(),
        dynamic,
        image: Some(program.clone()),
    })
}

/// The loader itself as a load list names it: the PT_INTERP string `interp`, opened
/// inside the root (`opened` is the file as the kernel opened it, used when it is that
/// file). A loader that cannot be read is a warning (pushed to `warnings`), not an error:
/// the kernel would have refused the exec first.
pub(crate) fn loader_object(
    fs: &mut Fs,
    interp: &Path,
    opened: Option<&Arc<ElfImage>>,
    warnings: &mut Vec<String>,
) -> DepObject {
    use std::os::unix::fs::MetadataExt;
    let name = interp.to_string_lossy().into_owned();
    let host = fs.host(&name).into_owned();
    let img = match opened {
        Some(i) if i.path == host => Ok(i.clone()),
        _ => ElfImage::open(&host).map(Arc::new),
    };
    let (dynamic, dev, ino, image) = match img {
        Ok(img) => {
            let d = crate::elf::dynamic::read_dynamic(&img).unwrap_or_else(|e| {
                warnings.push(format!("{e}"));
                None
            });
            (d, img.meta.dev(), img.meta.ino(), Some(img))
        }
        Err(e) => {
            warnings.push(format!("cannot read the program interpreter: {e}"));
            (None, 0, 0, None)
        }
    };
    let (realpath, host_path) = match fs.realpath(&name) {
        Ok(r) => {
            let h = fs.host(&r).into_owned();
            (PathBuf::from(r), h)
        }
        Err(_) => (PathBuf::from(&name), host),
    };
    DepObject {
        requested: name.clone(),
        path: PathBuf::from(&name),
        realpath,
        host_path,
        dev,
        ino,
        soname: dynamic.as_ref().and_then(|d| d.soname.clone()),
        found_via: FoundVia::Loader,
        loader: None,
        needed: Vec::new(),
        dynamic,
        image,
    }
}

/// A new open (number `open_id`) of the file at host path `path`, as its mappings will
/// show it to a process whose root directory is `root`.
pub(crate) fn open_file(
    path: &Path,
    open_id: u32,
    root: Option<&Path>,
) -> Result<Arc<crate::mm::FileRef>> {
    let mut id = crate::host::fs::file_id(path).map_err(|e| crate::error::Error::io(path, e))?;
    id.path = crate::host::fs::as_seen_from(root, &id.path);
    Ok(crate::mm::FileRef::open(id, open_id))
}

/// `dirname` as ld.so's `_dl_new_object` keeps it for `l_origin`: everything before the
/// last '/', "/" for a file in the root directory.
pub(crate) fn origin_of(abs: &str) -> String {
    match abs.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => abs[..i].to_string(),
    }
}
