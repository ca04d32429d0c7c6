//! glibc 2.36's library search: elf/dl-load.c (`_dl_map_object`, `open_path`, `open_verify`,
//! `_dl_init_paths`, `fillin_rpath`, `decompose_rpath`, `cache_rpath`, `_dl_dst_substitute`),
//! elf/dl-deps.c (`_dl_map_object_deps`) and the preload part of elf/rtld.c (`dl_main`,
//! `handle_preload_list`, `do_preload`). See spec/ldso.md section 2.
//!
//! The model keeps ld.so's data structures where they change the outcome: the global list of
//! search directories with a per-subdirectory "exists?" status shared by every list naming
//! the same directory, the lazily decomposed RPATH/RUNPATH of each object, the `l_loader`
//! chain, each object's name list (`l_libname`) and file identity. Differences are flagged
//! with "N.B.".

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::dynamic::{DF_1_NODEFLIB, DF_1_PIE};
use goblin::elf::header::{ET_DYN, ET_EXEC};

use super::hwcaps::LoaderHwcaps;
use super::ldcache::{CacheLoader, CacheQuery, LdCache};
use super::{
    origin_of, CacheUse, DepGraph, DepObject, FoundVia, Fs, LoaderEnv, Missing, PreloadFileUse,
};
use crate::elf::dynamic::{read_dynamic, DynamicInfo};
use crate::elf::{Abi, ElfImage, PT_LOAD};
use crate::error::{Error, Result};

// Build-time constants of Debian 12's libc6 / libc6-i386 2.36 loaders (`ld.so --help`,
// `ld.so --list-diagnostics`: path.system_dirs, dl_dst_lib).

/// x86-64 `SYSTEM_DIRS` (elf/dl-load.c: `system_dirs`), each with its trailing '/'.
pub const SYSTEM_DIRS_X86_64: [&str; 4] = [
    "/lib/x86_64-linux-gnu/",
    "/usr/lib/x86_64-linux-gnu/",
    "/lib/",
    "/usr/lib/",
];
/// i386 (biarch `libc6-i386`) `SYSTEM_DIRS`.
pub const SYSTEM_DIRS_I386: [&str; 4] = ["/lib32/", "/usr/lib32/", "/lib/", "/usr/lib/"];
/// `DL_DST_LIB` ($LIB) of the x86-64 loader (Debian multiarch).
pub const DL_DST_LIB_X86_64: &str = "lib/x86_64-linux-gnu";
/// `DL_DST_LIB` of the i386 loader.
pub const DL_DST_LIB_I386: &str = "lib32";
/// `LD_SO_CACHE`.
pub const LD_SO_CACHE: &str = "/etc/ld.so.cache";
/// rtld.c: `preload_file`.
pub const LD_SO_PRELOAD: &str = "/etc/ld.so.preload";
/// elf/dl-main.h: `SECURE_NAME_LIMIT` (NAME_MAX) and `SECURE_PATH_LIMIT` (PATH_MAX).
const SECURE_NAME_LIMIT: usize = 255;
const SECURE_PATH_LIMIT: usize = 4096;

/// The loader's system directories for `abi`.
pub fn system_dirs(abi: Abi) -> &'static [&'static str] {
    match abi {
        Abi::X86_64 => &SYSTEM_DIRS_X86_64,
        Abi::I386 => &SYSTEM_DIRS_I386,
    }
}

/// `enum r_dir_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirStatus {
    Unknown,
    Nonexisting,
    Existing,
}

/// `struct r_search_path_elem`: a directory (with trailing '/', or "" for the current
/// directory) and the status of each hwcaps subdirectory in it.
struct SearchDir {
    dirname: String,
    status: Vec<DirStatus>,
}

/// `l_rpath_dirs` / `l_runpath_dirs`: not decomposed yet, none (`(void *) -1`), or a list.
#[derive(Clone, Debug, Default)]
enum PathList {
    #[default]
    Unset,
    None,
    Dirs(Vec<usize>),
}

/// The parts of `struct link_map` the search uses.
struct Obj {
    dep: DepObject,
    /// `l_name` ("" for the main program).
    l_name: String,
    /// `l_libname`.
    libnames: Vec<String>,
    /// `l_file_id`: `None` for the main program and ld.so (glibc leaves both zero).
    file_id: Option<(u64, u64)>,
    /// `l_loader`.
    l_loader: Option<usize>,
    /// `l_origin`; `None` if it could not be determined (`(char *) -1`).
    origin: Option<String>,
    is_main: bool,
    rpath: PathList,
    runpath: PathList,
}

impl Obj {
    fn dynamic(&self) -> Option<&DynamicInfo> {
        self.dep.dynamic.as_deref()
    }
    fn flags_1(&self) -> u64 {
        self.dynamic().map_or(0, |d| d.flags_1)
    }
    fn has_runpath(&self) -> bool {
        self.dynamic().is_some_and(|d| d.runpath.is_some())
    }
    /// `_dl_name_match_p`.
    fn name_match(&self, name: &str) -> bool {
        self.l_name == name || self.libnames.iter().any(|n| n == name)
    }
}

/// Where `_dl_map_object` found (or did not find) a name.
enum Mapped {
    /// An object (already loaded, or loaded by this call), by index in the load list.
    Obj {
        idx: usize,
    },
    NotFound,
}

/// `open_verify`'s answer for one candidate.
enum Verdict {
    Ok(Box<ElfImage>),
    /// open(2) failed with this errno.
    Fail(i32),
    /// Wrong ELF class or machine: skipped silently (errno ENOENT).
    Other,
    /// `_dl_signal_error`: the load fails.
    Fatal(String),
}

/// ld.so's cache state (`cache`: NULL, `(void *) -1`, mapped).
enum CacheState {
    Unopened,
    Absent,
    Open(LdCache),
}

/// Where an `open_path` search stops.
enum Found {
    Yes {
        realname: String,
        img: Box<ElfImage>,
    },
    No,
}

pub(crate) struct Glibc<'e> {
    env: &'e LoaderEnv,
    /// The helper thread: where each object entered in the load list is reported, and the
    /// reports not sent yet (they go in batches, since waking the helper costs more than
    /// the report itself); it also opens libraries ahead of us.
    helper: Option<super::Helper>,
    /// How to start it, until it is.
    start: Option<super::HelperStart<'e>>,
    /// Whether objects are reported (kept in `unsent` until the helper runs).
    reports: bool,
    unsent: Vec<super::ObjectFound>,
    /// What the helper read of the file `try_candidate` just took from it (path, dynamic
    /// section, canonical path), for `dl_map_object_from_fd`.
    fetched: Option<(String, Arc<DynamicInfo>, Option<String>)>,
    abi: Abi,
    fs: Fs,
    hw: LoaderHwcaps,
    /// `capstr`: the subdirectory prefixes of `_dl_important_hwcaps`.
    capstr: Vec<String>,
    /// `GL(dl_all_dirs)`.
    dirs: Vec<SearchDir>,
    dir_ids: HashMap<String, usize>,
    /// `__rtld_search_dirs`.
    system: Vec<usize>,
    /// `__rtld_env_path_list`.
    env_path: PathList,
    /// The namespace: `objs` in load order; ld.so waits in `rtld` until a DT_NEEDED names it.
    objs: Vec<Obj>,
    rtld: Option<Obj>,
    rtld_idx: Option<usize>,
    cache: CacheState,
    /// What `cache_use` and the warnings become when the loader first consults the cache
    /// (the file may be opened earlier, for the helper).
    cache_opened: Option<(Option<CacheUse>, Option<String>)>,
    cache_use: Option<CacheUse>,
    cache_verified: bool,
    /// What `search_cache` needs to know about this loader and CPU.
    cache_query: CacheQuery,
    first_cache_use: Option<usize>,
    /// Candidates tried by the current `_dl_map_object`.
    tried: Vec<String>,
    /// `errno` as `open_path` sees it.
    errno: i32,
    found_other_class: bool,
    warnings: Vec<String>,
    missing: Vec<Missing>,
    preload_file: Option<PreloadFileUse>,
}

/// Models glibc 2.36 `dl_main`'s loading part for a program the kernel started: main map,
/// `_dl_init_paths`, LD_PRELOAD, /etc/ld.so.preload, `_dl_map_object_deps`.
pub(crate) fn resolve_glibc<'e>(
    program: &ElfImage,
    exec_path: &Path,
    interp: &Path,
    env: &'e LoaderEnv,
    helper: Option<super::HelperStart<'e>>,
) -> Result<DepGraph> {
    let mut g = Glibc::new(env);
    g.reports = helper.as_ref().is_some_and(|h| h.report);
    g.start = helper;
    g.setup_main(program, exec_path)?;
    g.setup_rtld(interp);
    g.dl_init_paths();
    g.preloads();
    g.request_prefetch(0);
    g.dl_map_object_deps()?;
    Ok(g.finish())
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn errno_str(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

impl<'e> Glibc<'e> {
    fn new(env: &'e LoaderEnv) -> Glibc<'e> {
        let hw = LoaderHwcaps::for_abi(env.abi, &env.cpu);
        let capstr = hw.important_hwcaps();
        let cache_query = CacheQuery {
            loader: match env.abi {
                Abi::X86_64 => CacheLoader::X86_64,
                Abi::I386 => CacheLoader::I386,
            },
            hwcap: hw.dl_hwcap,
            hwcap_mask: hw.dl_hwcap_mask,
            platform_bit: hw.string_platform(env.abi),
            isa_1: hw.isa_1,
            hwcaps_active: hw
                .hwcaps_subdirs_active
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        Glibc {
            env,
            helper: None,
            start: None,
            reports: false,
            unsent: Vec::new(),
            fetched: None,
            abi: env.abi,
            fs: env.fs(),
            hw,
            capstr,
            dirs: Vec::new(),
            dir_ids: HashMap::new(),
            system: Vec::new(),
            env_path: PathList::None,
            objs: Vec::new(),
            rtld: None,
            rtld_idx: None,
            cache: CacheState::Unopened,
            cache_opened: None,
            cache_use: None,
            cache_verified: false,
            cache_query,
            first_cache_use: None,
            tried: Vec::new(),
            errno: 0,
            found_other_class: false,
            warnings: Vec::new(),
            missing: Vec::new(),
            preload_file: None,
        }
    }

    /// The main map (`rtld_setup_main_map`): no name, its origin from `/proc/self/exe`
    /// (the canonical path of the executable, `_dl_get_origin`).
    fn setup_main(&mut self, program: &ElfImage, exec_path: &Path) -> Result<()> {
        let dynamic = read_dynamic(program)?;
        let (realpath, host) = self
            .fs
            .realpath_of_host(&program.path)
            .map_err(|e| Error::io(&program.path, e))?;
        let origin = Some(origin_of(&realpath));
        let soname = dynamic.as_ref().and_then(|d| d.soname.clone());
        self.objs.push(Obj {
            dep: DepObject {
                requested: exec_path.to_string_lossy().into_owned(),
                path: exec_path.to_path_buf(),
                realpath: PathBuf::from(realpath),
                host_path: host,
                dev: program.meta.dev(),
                ino: program.meta.ino(),
                soname,
                found_via: FoundVia::Program,
                loader: None,
                needed: Vec::new(),
                dynamic,
                image: None,
            },
            l_name: String::new(),
            libnames: vec![String::new()],
            file_id: None,
            l_loader: None,
            origin,
            is_main: true,
            rpath: PathList::Unset,
            runpath: PathList::Unset,
        });
        self.report(0);
        Ok(())
    }

    /// Tell the helper, if any, that object `i` entered the load list; start it when the
    /// list has grown long enough.
    fn report(&mut self, i: usize) {
        /// Reports per wake-up of the helper.
        const BATCH: usize = 16;
        if self.reports {
            let o = &self.objs[i].dep;
            self.unsent.push(super::ObjectFound {
                index: i,
                image: o.image.clone(),
                dynamic: o.dynamic.clone(),
                is_rtld: Some(i) == self.rtld_idx,
            });
        }
        // The list so far and what the new object names (some of them may be loaded
        // already): curl's list is known to be long once libcurl is in it.
        if let Some(after) = self.start.as_ref().map(|s| s.after) {
            let ahead = self.objs[i].dynamic().map_or(0, |d| d.needed.len());
            if self.objs.len() + ahead >= after {
                if let Some(start) = self.start.take() {
                    self.helper = Some((start.spawn)());
                }
            }
        }
        if self.unsent.len() >= BATCH {
            self.send_reports();
        }
    }

    fn send_reports(&mut self) {
        if let Some(h) = &self.helper {
            for f in self.unsent.drain(..) {
                let _ = h.tx.send(super::Work::Found(Box::new(f)));
            }
        }
    }

    /// Ask the helper to open, ahead of us, the cache's answers for the DT_NEEDED names of
    /// object `i` not loaded yet. Only while no path list comes before the cache
    /// (LD_LIBRARY_PATH, DT_RPATH, DT_RUNPATH): the guesses are then nearly always right,
    /// and a wrong one costs the helper's time only.
    fn request_prefetch(&mut self, i: usize) {
        if self.helper.is_none()
            || self.env.ld_library_path.is_some()
            || self.objs.iter().any(|o| {
                o.dynamic()
                    .is_some_and(|d| d.rpath.is_some() || d.runpath.is_some())
            })
        {
            return;
        }
        let needed: Vec<String> = match self.objs[i].dynamic() {
            Some(d) => d.needed.clone(),
            None => return,
        };
        self.open_cache();
        let CacheState::Open(cache) = &self.cache else {
            return;
        };
        let Some(helper) = &self.helper else { return };
        for name in needed {
            if name.contains('/') || name.contains('$') || self.loaded_match(&name).is_some() {
                continue;
            }
            if let Some(path) = cache.lookup(&name, &self.cache_query) {
                let path = String::from_utf8_lossy(path).into_owned();
                if helper.prefetch.request(&path) {
                    let _ = helper.tx.send(super::Work::Fetch(path));
                }
            }
        }
    }

    /// `GL(dl_rtld_map)`: named by the PT_INTERP string, plus its SONAME (dl_main adds it
    /// when it differs). Its file id stays zero, so it is never matched by (dev, inode).
    fn setup_rtld(&mut self, interp: &Path) {
        let name = interp.to_string_lossy().into_owned();
        let host = self.fs.host(&name).into_owned();
        let (dynamic, dev, ino, image) = match ElfImage::open(&host) {
            Ok(img) => {
                let d = read_dynamic(&img).unwrap_or_else(|e| {
                    self.warnings.push(format!("{e}"));
                    None
                });
                (d, img.meta.dev(), img.meta.ino(), Some(Arc::new(img)))
            }
            Err(e) => {
                self.warnings
                    .push(format!("cannot read the program interpreter: {e}"));
                (None, 0, 0, None)
            }
        };
        let soname = dynamic.as_ref().and_then(|d| d.soname.clone());
        let mut libnames = vec![name.clone()];
        if let Some(s) = &soname {
            if *s != name {
                libnames.push(s.clone());
            }
        }
        let (realpath, host_path) = match self.fs.realpath(&name) {
            Ok(r) => {
                let h = self.fs.host(&r).into_owned();
                (PathBuf::from(r), h)
            }
            Err(_) => (PathBuf::from(&name), host),
        };
        self.rtld = Some(Obj {
            dep: DepObject {
                requested: name.clone(),
                path: PathBuf::from(&name),
                realpath,
                host_path,
                dev,
                ino,
                soname,
                found_via: FoundVia::Loader,
                loader: None,
                needed: Vec::new(),
                dynamic,
                image,
            },
            l_name: name,
            libnames,
            file_id: None,
            l_loader: None,
            origin: None,
            is_main: false,
            rpath: PathList::None,
            runpath: PathList::None,
        });
    }

    /// Object `i` of the namespace (`usize::MAX` = the pending ld.so map).
    fn obj(&self, i: usize) -> &Obj {
        if i == usize::MAX {
            self.rtld.as_ref().unwrap()
        } else {
            &self.objs[i]
        }
    }

    /// Add a directory to `GL(dl_all_dirs)` (or find it): `fillin_rpath`'s lookup.
    fn dir_id(&mut self, dirname: &str) -> usize {
        if let Some(&i) = self.dir_ids.get(dirname) {
            return i;
        }
        // Relative directories are never marked nonexisting: the current directory may change.
        let init = if dirname.starts_with('/') {
            DirStatus::Unknown
        } else {
            DirStatus::Existing
        };
        self.dirs.push(SearchDir {
            dirname: dirname.to_string(),
            status: vec![init; self.capstr.len()],
        });
        self.dir_ids
            .insert(dirname.to_string(), self.dirs.len() - 1);
        self.dirs.len() - 1
    }

    /// Models elf/dl-load.c: `_dl_init_paths()`: the system directories, the main program's
    /// RUNPATH (then its RPATH is ignored) or RPATH, and LD_LIBRARY_PATH (not in secure mode;
    /// split on ':' and ';', DSTs expanded against the main program).
    fn dl_init_paths(&mut self) {
        for d in system_dirs(self.abi) {
            let id = self.dir_id(d);
            self.system.push(id);
        }
        let (runpath, rpath) = {
            let d = self.objs[0].dynamic();
            (
                d.and_then(|d| d.runpath.clone()),
                d.and_then(|d| d.rpath.clone()),
            )
        };
        if let Some(rp) = runpath {
            self.objs[0].runpath = self.decompose_rpath(&rp, 0);
            self.objs[0].rpath = PathList::None;
        } else {
            self.objs[0].runpath = PathList::None;
            self.objs[0].rpath = match rpath {
                Some(rp) => self.decompose_rpath(&rp, 0),
                None => PathList::None,
            };
        }
        let llp = if self.env.secure {
            None
        } else {
            self.env.ld_library_path.clone()
        };
        self.env_path = match llp {
            Some(llp) if !llp.is_empty() => {
                let v = self.fillin_rpath(&llp, &[':', ';'], 0);
                if v.is_empty() {
                    PathList::None
                } else {
                    PathList::Dirs(v)
                }
            }
            _ => PathList::None,
        };
    }

    /// Models elf/dl-load.c: `decompose_rpath()`: an empty string gives no list.
    fn decompose_rpath(&mut self, rpath: &str, l: usize) -> PathList {
        if rpath.is_empty() {
            return PathList::None;
        }
        let v = self.fillin_rpath(rpath, &[':'], l);
        if v.is_empty() {
            PathList::None
        } else {
            PathList::Dirs(v)
        }
    }

    /// Models elf/dl-load.c: `fillin_rpath()`: split with strsep semantics (an empty element
    /// is the current directory), expand DSTs (an element whose DST cannot be substituted is
    /// dropped), normalise to exactly one trailing '/', and share directories already known.
    fn fillin_rpath(&mut self, rpath: &str, sep: &[char], l: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for cp in rpath.split(sep) {
            let mut dir = String::new();
            if !cp.is_empty() {
                let Some(expanded) = self.expand_dynamic_string_token(l, cp) else {
                    continue;
                };
                if expanded.is_empty() {
                    continue;
                }
                let mut len = expanded.len();
                while len > 1 && expanded.as_bytes()[len - 1] == b'/' {
                    len -= 1;
                }
                dir.push_str(&expanded[..len]);
                if !dir.ends_with('/') {
                    dir.push('/');
                }
            }
            let id = self.dir_id(&dir);
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    /// Models elf/dl-load.c: `expand_dynamic_string_token()` → `_dl_dst_substitute()`.
    /// `None` (glibc: an empty string) if a known DST cannot be substituted.
    fn expand_dynamic_string_token(&self, l: usize, input: &str) -> Option<String> {
        if dst_count(input) == 0 {
            return Some(input.to_string());
        }
        self.dl_dst_substitute(l, input)
    }

    /// Models elf/dl-load.c: `_dl_dst_substitute()` for $ORIGIN, $PLATFORM, $LIB (also as
    /// `${NAME}`). In secure mode $ORIGIN is allowed only as the very start of the string,
    /// followed by '/' or the end, and for the executable the result must lie under a
    /// trusted (system) directory.
    fn dl_dst_substitute(&self, l: usize, input: &str) -> Option<String> {
        let obj = self.obj(l);
        let secure = self.env.secure;
        let b = input.as_bytes();
        let mut out = String::with_capacity(input.len() + 32);
        let mut check_for_trusted = false;
        let mut i = 0;
        let mut lit = 0; // start of the pending literal run
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            out.push_str(&input[lit..i]);
            let rest = &input[i + 1..];
            let (len, repl): (usize, Option<Option<&str>>) =
                if let Some(len) = is_dst(rest, "ORIGIN") {
                    let at_start = i == 0;
                    let next = rest.as_bytes().get(len).copied();
                    check_for_trusted = secure && obj.is_main;
                    if secure && !(at_start && matches!(next, None | Some(b'/'))) {
                        (len, Some(None))
                    } else {
                        (len, Some(obj.origin.as_deref()))
                    }
                } else if let Some(len) = is_dst(rest, "PLATFORM") {
                    (len, Some(Some(self.hw.dl_platform)))
                } else if let Some(len) = is_dst(rest, "LIB") {
                    (len, Some(Some(self.dst_lib())))
                } else {
                    (0, None)
                };
            match repl {
                Some(Some(r)) => {
                    out.push_str(r);
                    i += 1 + len;
                }
                Some(None) => return None,
                None => {
                    out.push('$');
                    i += 1;
                }
            }
            lit = i;
        }
        out.push_str(&input[lit..]);
        if check_for_trusted && !is_trusted_path_normalize(&out, system_dirs(self.abi)) {
            return None;
        }
        Some(out)
    }

    fn dst_lib(&self) -> &'static str {
        match self.abi {
            Abi::X86_64 => DL_DST_LIB_X86_64,
            Abi::I386 => DL_DST_LIB_I386,
        }
    }

    /// Models elf/dl-load.c: `cache_rpath()` (`rpath` = DT_RPATH, else DT_RUNPATH): decompose
    /// the object's list the first time a search needs it.
    fn cache_rpath(&mut self, l: usize, rpath: bool) -> Option<Vec<usize>> {
        let cur = if rpath {
            &self.objs[l].rpath
        } else {
            &self.objs[l].runpath
        };
        match cur {
            PathList::None => return None,
            PathList::Dirs(v) => return Some(v.clone()),
            PathList::Unset => {}
        }
        let s = self.objs[l].dynamic().and_then(|d| {
            if rpath {
                d.rpath.clone()
            } else {
                d.runpath.clone()
            }
        });
        let list = match s {
            None => PathList::None,
            Some(s) => self.decompose_rpath(&s, l),
        };
        let out = match &list {
            PathList::Dirs(v) => Some(v.clone()),
            _ => None,
        };
        if rpath {
            self.objs[l].rpath = list;
        } else {
            self.objs[l].runpath = list;
        }
        out
    }

    /// Models elf/dl-load.c: `open_verify()` (the header checks), given a path inside the root.
    fn open_verify(&mut self, path: &str) -> Verdict {
        let host = self.fs.host(path);
        // The helper's reading, if it has one: the same file, opened at the same path.
        let (opened, fetched) = match self.helper.as_ref().and_then(|h| h.prefetch.take(path)) {
            Some(f) => (Ok(f.img), Some((f.dynamic, f.realpath))),
            None => (ElfImage::open(&host), None),
        };
        match opened {
            Ok(img) => {
                let v = verify_header(img.head(), img.len(), self.abi);
                match v {
                    Check::Ok => {
                        if let Some((dynamic, realpath)) = fetched {
                            self.fetched = Some((path.to_string(), dynamic, realpath));
                        }
                        Verdict::Ok(Box::new(img))
                    }
                    Check::Other => Verdict::Other,
                    Check::Fatal(r) => Verdict::Fatal(r),
                }
            }
            Err(Error::Io { source, .. }) if is_open_errno(&source) => {
                Verdict::Fail(io_errno(&source))
            }
            Err(_) => {
                // ElfImage refused the file: find out which of glibc's checks refuses it
                // (some of them only skip it silently) from its first bytes.
                use std::io::Read;
                let mut f = match std::fs::File::open(&host) {
                    Ok(f) => f,
                    Err(e) => return Verdict::Fail(io_errno(&e)),
                };
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                let mut buf = [0u8; 64];
                let mut n = 0;
                while n < buf.len() {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if n == 0 => {
                            return Verdict::Fatal(format!("cannot read file data: {e}"))
                        }
                        Err(_) => break,
                    }
                }
                match verify_header(&buf[..n], len, self.abi) {
                    Check::Other => Verdict::Other,
                    Check::Fatal(r) => Verdict::Fatal(r),
                    Check::Ok => Verdict::Fatal("cannot read file data".to_string()),
                }
            }
        }
    }

    /// `open_verify` on a search candidate, with the bookkeeping `open_path` and the cache
    /// step share: the tried list, errno, found_other_class. `Err` = fatal.
    fn try_candidate(
        &mut self,
        path: &str,
        preload: bool,
    ) -> std::result::Result<Option<Box<ElfImage>>, Error> {
        self.tried.push(path.to_string());
        match self.open_verify(path) {
            Verdict::Ok(img) => {
                // open_path's extra check for preloads in secure mode: the set-user-ID bit.
                if preload && self.env.secure && img.meta.permissions().mode() & libc::S_ISUID == 0
                {
                    self.errno = libc::ENOENT;
                    self.fetched = None;
                    return Ok(None);
                }
                Ok(Some(img))
            }
            Verdict::Fail(e) => {
                self.errno = e;
                Ok(None)
            }
            Verdict::Other => {
                self.found_other_class = true;
                self.errno = libc::ENOENT;
                Ok(None)
            }
            Verdict::Fatal(r) => Err(Error::load_failed(path, r)),
        }
    }

    /// Models elf/dl-load.c: `open_path()`: every directory of the list with every hwcaps
    /// subdirectory in front of the name; a subdirectory found missing (by `stat` after a
    /// failed open) is skipped in all later searches. A failure other than ENOENT/EACCES in an
    /// existing directory ends this list's search.
    fn open_path(&mut self, name: &str, dirs: &[usize], preload: bool) -> Result<Found> {
        let mut buf = String::with_capacity(128);
        for &d in dirs {
            let mut here_any = false;
            for cnt in 0..self.capstr.len() {
                let status = self.dirs[d].status[cnt];
                if status == DirStatus::Nonexisting {
                    continue;
                }
                buf.clear();
                buf.push_str(&self.dirs[d].dirname);
                buf.push_str(&self.capstr[cnt]);
                let dir_len = buf.len();
                buf.push_str(name);
                let img = self.try_candidate(&buf, preload)?;
                if status == DirStatus::Unknown {
                    let new = if img.is_some() {
                        DirStatus::Existing
                    } else {
                        // "buf[buflen - namelen - 1] = '\0'": stat the directory itself.
                        let dir = &buf[..dir_len.saturating_sub(1)];
                        match std::fs::metadata(self.fs.host(dir)) {
                            Ok(m) if m.is_dir() => DirStatus::Existing,
                            Ok(_) => DirStatus::Nonexisting,
                            Err(e) => {
                                self.errno = io_errno(&e);
                                DirStatus::Nonexisting
                            }
                        }
                    };
                    self.dirs[d].status[cnt] = new;
                }
                here_any |= self.dirs[d].status[cnt] != DirStatus::Nonexisting;
                if let Some(img) = img {
                    return Ok(Found::Yes { realname: buf, img });
                }
            }
            if here_any && self.errno != libc::ENOENT && self.errno != libc::EACCES {
                self.warnings.push(format!(
                    "{}: {} (the loader stops searching this path list here)",
                    self.tried.last().map_or("?", |s| s.as_str()),
                    errno_str(self.errno)
                ));
                return Ok(Found::No);
            }
        }
        Ok(Found::No)
    }

    /// Open (map) `/etc/ld.so.cache` if not done yet; what the loader's first use of it
    /// will record waits in `cache_opened`.
    fn open_cache(&mut self) {
        if !matches!(self.cache, CacheState::Unopened) {
            return;
        }
        let host = self.fs.host(LD_SO_CACHE).into_owned();
        let used = |size, dev, ino, valid| CacheUse {
            path: PathBuf::from(LD_SO_CACHE),
            host_path: host.clone(),
            size,
            dev,
            ino,
            valid,
        };
        let (state, opened) = match LdCache::open(&host) {
            Ok(c) => {
                let u = used(c.size, c.dev, c.ino, true);
                (CacheState::Open(c), (Some(u), None))
            }
            Err(e) => match std::fs::metadata(&host) {
                Ok(m) => (
                    CacheState::Absent,
                    (
                        Some(used(m.len(), m.dev(), m.ino(), false)),
                        Some(format!("{e}: ld.so ignores the cache")),
                    ),
                ),
                Err(_) => (CacheState::Absent, (None, None)),
            },
        };
        self.cache = state;
        self.cache_opened = Some(opened);
    }

    /// The cache step of `_dl_map_object`: `_dl_load_cache_lookup()` (mapping the cache on
    /// first use), the DF_1_NODEFLIB filter, then `open_verify` of the answer.
    fn search_cache(&mut self, name: &str, loader: usize, preload: bool) -> Result<Found> {
        if self.first_cache_use.is_none() {
            self.first_cache_use = Some(self.objs.len());
        }
        self.open_cache();
        if let Some((used, warning)) = self.cache_opened.take() {
            self.cache_use = used;
            self.warnings.extend(warning);
        }
        let CacheState::Open(cache) = &self.cache else {
            return Ok(Found::No);
        };
        let Some(cached) = cache.lookup(name, &self.cache_query) else {
            // A miss may come from a damaged cache (ld.so's own checks are few): check the
            // whole file once, then.
            if !self.cache_verified {
                self.cache_verified = true;
                if let Err(e) = cache.verify() {
                    self.warnings
                        .push(format!("{e} (ld.so uses the cache anyway)"));
                }
            }
            return Ok(Found::No);
        };
        let cached = String::from_utf8_lossy(cached).into_owned();
        if self.obj(loader).flags_1() & DF_1_NODEFLIB != 0
            && system_dirs(self.abi).iter().any(|d| cached.starts_with(d))
        {
            return Ok(Found::No);
        }
        Ok(match self.try_candidate(&cached, preload)? {
            Some(img) => Found::Yes {
                realname: cached,
                img,
            },
            None => Found::No,
        })
    }

    /// Models elf/dl-load.c: `_dl_map_object()` with `loader` (an index into the load list;
    /// the program for its own needs and for preloads). Returns the object, or `NotFound`
    /// (with `self.tried` listing what was tried); `Err` for the loader's fatal errors.
    fn dl_map_object(&mut self, loader: usize, name: &str, preload: bool) -> Result<Mapped> {
        // Look for this name among those already loaded: main, ld.so, then load order.
        if let Some(idx) = self.find_loaded(name) {
            return Ok(Mapped::Obj { idx });
        }
        self.tried.clear();
        self.found_other_class = false;
        let mut result: Option<(String, Box<ElfImage>, FoundVia)> = None;
        if !name.contains('/') {
            if !self.objs[loader].has_runpath() {
                // DT_RPATH of the loader, then of its loader, and so on.
                let mut did_main = false;
                let mut l = Some(loader);
                while let Some(li) = l {
                    if let Some(dirs) = self.cache_rpath(li, true) {
                        if let Found::Yes { realname, img } =
                            self.open_path(name, &dirs, preload)?
                        {
                            result = Some((realname, img, FoundVia::Rpath { of: li }));
                            break;
                        }
                        did_main |= self.objs[li].is_main;
                    }
                    l = self.objs[li].l_loader;
                }
                // The executable's DT_RPATH if not tried yet.
                if result.is_none() && !did_main {
                    if let Some(dirs) = self.cache_rpath(0, true) {
                        if let Found::Yes { realname, img } =
                            self.open_path(name, &dirs, preload)?
                        {
                            result = Some((realname, img, FoundVia::Rpath { of: 0 }));
                        }
                    }
                }
            }
            if result.is_none() {
                if let PathList::Dirs(dirs) = self.env_path.clone() {
                    if let Found::Yes { realname, img } = self.open_path(name, &dirs, preload)? {
                        result = Some((realname, img, FoundVia::LdLibraryPath));
                    }
                }
            }
            if result.is_none() {
                if let Some(dirs) = self.cache_rpath(loader, false) {
                    if let Found::Yes { realname, img } = self.open_path(name, &dirs, preload)? {
                        result = Some((realname, img, FoundVia::Runpath { of: loader }));
                    }
                }
            }
            // The cache, unless this is a preload in secure mode (__RTLD_SECURE).
            if result.is_none() && !(preload && self.env.secure) {
                if let Found::Yes { realname, img } = self.search_cache(name, loader, preload)? {
                    result = Some((realname, img, FoundVia::Cache));
                }
            }
            if result.is_none() && self.objs[loader].flags_1() & DF_1_NODEFLIB == 0 {
                let dirs = self.system.clone();
                if let Found::Yes { realname, img } = self.open_path(name, &dirs, preload)? {
                    result = Some((realname, img, FoundVia::DefaultDir));
                }
            }
        } else {
            // The path may contain dynamic string tokens.
            let realname = self
                .expand_dynamic_string_token(loader, name)
                .unwrap_or_default();
            if let Some(img) = self.try_candidate(&realname, preload)? {
                result = Some((realname, img, FoundVia::SlashName));
            }
        }
        let Some((realname, img, via)) = result else {
            if self.found_other_class {
                let other = if self.abi == Abi::X86_64 {
                    "ELFCLASS32"
                } else {
                    "ELFCLASS64"
                };
                self.warnings
                    .push(format!("{name}: only a file of the wrong ELF class was found (wrong ELF class: {other})"));
            }
            return Ok(Mapped::NotFound);
        };
        self.dl_map_object_from_fd(loader, name, realname, img, via)
    }

    /// The "already loaded?" loop of `_dl_map_object`: name list and `l_name` first, then
    /// DT_SONAME (a SONAME hit adds the name). ld.so's map comes right after the program.
    fn find_loaded(&mut self, name: &str) -> Option<usize> {
        let (i, by_soname) = self.loaded_match(name)?;
        let idx = if i == usize::MAX {
            self.append_rtld()
        } else {
            i
        };
        if by_soname {
            self.objs[idx].libnames.push(name.to_string());
        }
        Some(idx)
    }

    /// `find_loaded`'s search alone: the object whose names or SONAME match `name` (index,
    /// `usize::MAX` for ld.so not yet in the list) and whether it was the SONAME.
    fn loaded_match(&self, name: &str) -> Option<(usize, bool)> {
        let rtld_slot = match (self.rtld_idx, &self.rtld) {
            (Some(i), _) => Some(i),
            (None, Some(_)) => Some(usize::MAX),
            (None, None) => None,
        };
        let order = std::iter::once(0)
            .chain(rtld_slot)
            .chain((1..self.objs.len()).filter(|&i| Some(i) != self.rtld_idx));
        for i in order {
            let o = self.obj(i);
            if o.name_match(name) {
                return Some((i, false));
            }
            if o.dep.soname.as_deref() == Some(name) {
                return Some((i, true));
            }
        }
        None
    }

    /// ld.so enters the load list where a DT_NEEDED first names it (it is already mapped).
    fn append_rtld(&mut self) -> usize {
        if let Some(i) = self.rtld_idx {
            return i;
        }
        let o = self.rtld.take().unwrap();
        self.objs.push(o);
        let i = self.objs.len() - 1;
        self.rtld_idx = Some(i);
        self.report(i);
        i
    }

    /// Models elf/dl-load.c: `_dl_map_object_from_fd()` up to the mapping: the (dev, inode)
    /// check against loaded objects (a hit adds the name and maps nothing), then the checks
    /// that make the load fail, then a new link map (`_dl_new_object`: `l_name` = realname,
    /// `l_libname` = name, `l_origin` = realname's directory made absolute).
    fn dl_map_object_from_fd(
        &mut self,
        loader: usize,
        name: &str,
        realname: String,
        img: Box<ElfImage>,
        via: FoundVia,
    ) -> Result<Mapped> {
        // What the helper read of this file, if it was the one `try_candidate` took.
        let fetched = self.fetched.take().filter(|(p, ..)| *p == realname);
        let id = (img.meta.dev(), img.meta.ino());
        if let Some(i) = self.objs.iter().position(|o| o.file_id == Some(id)) {
            let o = &mut self.objs[i];
            if !o.libnames.iter().any(|n| n == name) {
                o.libnames.push(name.to_string());
            }
            return Ok(Mapped::Obj { idx: i });
        }
        let fail = |reason: &str| Err(Error::load_failed(name, reason));
        if img
            .phdrs
            .iter()
            .any(|p| p.p_type == PT_LOAD && (p.p_vaddr.wrapping_sub(p.p_offset)) & 0xfff != 0)
        {
            return fail("ELF load command address/offset not page-aligned");
        }
        if img.loads().next().is_none() {
            return fail("object file has no loadable segments");
        }
        if img.e_type() != ET_DYN {
            return fail("cannot dynamically load executable");
        }
        let (dynamic, fetched_realpath) = match fetched {
            Some((_, d, r)) => (Some(d), r),
            None => (read_dynamic(&img)?, None),
        };
        let Some(dynamic) = dynamic else {
            return fail("object file has no dynamic section");
        };
        if dynamic.flags_1 & DF_1_PIE != 0 {
            return fail("cannot dynamically load position-independent executable");
        }
        let abs = if realname.starts_with('/') {
            realname.clone()
        } else {
            let cwd = self.fs.cwd();
            if cwd.ends_with('/') {
                format!("{cwd}{realname}")
            } else {
                format!("{cwd}/{realname}")
            }
        };
        let origin = Some(origin_of(&abs));
        let realpath = match fetched_realpath {
            Some(r) => Ok(r),
            None => self.fs.realpath(&realname),
        };
        let (realpath, host_path) = match realpath {
            Ok(r) => {
                let h = self.fs.host(&r).into_owned();
                (PathBuf::from(r), h)
            }
            Err(e) => {
                self.warnings
                    .push(format!("{realname}: cannot canonicalize: {e}"));
                (PathBuf::from(&abs), img.path.clone())
            }
        };
        let idx = self.objs.len();
        self.objs.push(Obj {
            dep: DepObject {
                requested: name.to_string(),
                path: PathBuf::from(&realname),
                realpath,
                host_path,
                dev: id.0,
                ino: id.1,
                soname: dynamic.soname.clone(),
                found_via: via,
                loader: Some(loader),
                needed: Vec::new(),
                dynamic: Some(dynamic),
                image: Some(Arc::from(img)),
            },
            l_name: realname,
            libnames: vec![name.to_string()],
            file_id: Some(id),
            l_loader: Some(loader),
            origin,
            is_main: false,
            rpath: PathList::Unset,
            runpath: PathList::Unset,
        });
        self.report(idx);
        self.request_prefetch(idx);
        Ok(Mapped::Obj { idx })
    }

    /// LD_PRELOAD (`handle_preload_list`: split on ' ' and ':') then /etc/ld.so.preload
    /// (if `access(R_OK)` succeeds: '#' comments blanked, split on whitespace and ':'). Each
    /// name is loaded with the program as loader; failures are reported and ignored
    /// (`do_preload`).
    fn preloads(&mut self) {
        if let Some(list) = self.env.ld_preload.clone() {
            for fname in list.split([' ', ':']) {
                if fname.len() >= SECURE_PATH_LIMIT || !self.dso_name_valid_for_suid(fname) {
                    continue;
                }
                self.do_preload(fname, "LD_PRELOAD");
            }
        }
        let host = self.fs.host(LD_SO_PRELOAD).into_owned();
        let readable = nix::unistd::access(&host, nix::unistd::AccessFlags::R_OK).is_ok();
        if !readable {
            return;
        }
        let Ok(content) = std::fs::read(&host) else {
            return;
        };
        if content.is_empty() {
            return;
        }
        self.preload_file = Some(PreloadFileUse {
            path: PathBuf::from(LD_SO_PRELOAD),
            size: content.len() as u64,
        });
        for name in parse_ld_so_preload(&content) {
            self.do_preload(&name, LD_SO_PRELOAD);
        }
    }

    /// rtld.c: `dso_name_valid_for_suid()`.
    fn dso_name_valid_for_suid(&self, p: &str) -> bool {
        if self.env.secure && (p.len() >= SECURE_NAME_LIMIT || p.contains('/')) {
            return false;
        }
        !p.is_empty()
    }

    /// rtld.c: `do_preload()`.
    fn do_preload(&mut self, fname: &str, where_: &str) {
        let before = self.objs.len();
        match self.dl_map_object(0, fname, true) {
            Ok(Mapped::Obj { idx }) => {
                if idx >= before {
                    self.objs[idx].dep.found_via = FoundVia::Preload;
                }
            }
            Ok(Mapped::NotFound) => self.warnings.push(format!(
                "ERROR: ld.so: object '{fname}' from {where_} cannot be preloaded (cannot open shared object file): ignored."
            )),
            Err(e) => self.warnings.push(format!(
                "ERROR: ld.so: object '{fname}' from {where_} cannot be preloaded ({e}): ignored."
            )),
        }
    }

    /// Models elf/dl-deps.c: `_dl_map_object_deps()`: walk the list front to back; for each
    /// object open every DT_NEEDED in order (DSTs expanded first; an entry whose DST cannot
    /// be substituted is skipped); new objects are appended; objects already in the list are
    /// not appended again. Not found: recorded as missing (as in ld.so's trace mode).
    fn dl_map_object_deps(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.objs.len() {
            let needed: Vec<String> = self.objs[i]
                .dynamic()
                .map(|d| d.needed.clone())
                .unwrap_or_default();
            if let Some(d) = self.objs[i].dynamic() {
                if !d.auxiliary.is_empty() || !d.filter.is_empty() {
                    self.warnings.push(format!(
                        "{}: DT_AUXILIARY/DT_FILTER objects are not modelled",
                        self.objs[i].dep.path.display()
                    ));
                }
            }
            for raw in needed {
                let name = if dst_count(&raw) == 0 {
                    raw
                } else {
                    if self.env.secure {
                        return Err(Error::load_failed(
                            &raw,
                            "DST not allowed in SUID/SGID programs",
                        ));
                    }
                    match self.dl_dst_substitute(i, &raw) {
                        Some(s) if !s.is_empty() => s,
                        _ => {
                            self.warnings.push(format!(
                                "{}: DT_NEEDED {raw}: empty dynamic string token substitution, skipped",
                                self.objs[i].dep.path.display()
                            ));
                            continue;
                        }
                    }
                };
                match self.dl_map_object(i, &name, false)? {
                    Mapped::Obj { idx } => self.objs[i].dep.needed.push(idx),
                    Mapped::NotFound => self.missing.push(Missing {
                        name,
                        needed_by: i,
                        tried: self.tried.drain(..).map(PathBuf::from).collect(),
                    }),
                }
            }
            i += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> DepGraph {
        self.send_reports();
        self.helper = None;
        self.start = None;
        DepGraph {
            objects: self.objs.into_iter().map(|o| o.dep).collect(),
            missing: self.missing,
            first_cache_use: self.first_cache_use,
            cache: self.cache_use,
            preload_file: self.preload_file,
            interp_index: self.rtld_idx,
            warnings: self.warnings,
        }
    }
}

/// errnos that can only come from open(2) itself (ElfImage::open's later steps, fstat and
/// mmap, do not produce them).
fn is_open_errno(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::ENOTDIR
                | libc::ELOOP
                | libc::EACCES
                | libc::ENAMETOOLONG
                | libc::EPERM
                | libc::ENXIO
                | libc::EMFILE
                | libc::ENFILE
                | libc::EOVERFLOW
                | libc::ETXTBSY
        )
    )
}

/// The outcome of glibc's header checks.
enum Check {
    Ok,
    /// Wrong class or machine: skipped.
    Other,
    Fatal(String),
}

/// The header checks of elf/dl-load.c: `open_verify()`, in its order, on the first bytes of
/// a candidate (`file_len` = its size, for the program-header read).
fn verify_header(b: &[u8], file_len: u64, abi: Abi) -> Check {
    use crate::elf::ident::*;
    use goblin::elf::header::{ELFDATA2LSB, ELFOSABI_GNU, ELFOSABI_SYSV, EV_CURRENT};
    /// `LIBC_ABI_MAX` (glibc 2.36, x86).
    const LIBC_ABI_MAX: u8 = 4;
    let class = abi.class();
    let Some(h) = RawEhdr::read(b, class) else {
        return Check::Fatal("file too short".into());
    };
    let id = &h.ident;
    let (osabi, abiver) = (id[EI_OSABI], id[EI_ABIVERSION]);
    let osabi_ok = osabi == ELFOSABI_SYSV || osabi == ELFOSABI_GNU;
    let head_ok = h.has_magic()
        && id[EI_CLASS] == class.ei_class()
        && id[EI_DATA] == ELFDATA2LSB
        && id[EI_VERSION] == EV_CURRENT
        && osabi_ok;
    let abiver_ok = abiver == 0 || (osabi == ELFOSABI_GNU && abiver < LIBC_ABI_MAX);
    let pad_ok = id[EI_PAD..].iter().all(|&x| x == 0);
    if !(head_ok && abiver_ok && pad_ok) {
        return if !h.has_magic() {
            Check::Fatal("invalid ELF header".into())
        } else if id[EI_CLASS] != class.ei_class() {
            Check::Other
        } else if id[EI_DATA] != ELFDATA2LSB {
            Check::Fatal("ELF file data encoding not little-endian".into())
        } else if id[EI_VERSION] != EV_CURRENT {
            Check::Fatal("ELF file version ident does not match current one".into())
        } else if !osabi_ok {
            Check::Fatal("ELF file OS ABI invalid".into())
        } else if !abiver_ok {
            Check::Fatal("ELF file ABI version invalid".into())
        } else {
            Check::Fatal("nonzero padding in e_ident".into())
        };
    }
    if h.e_version != u32::from(EV_CURRENT) {
        return Check::Fatal("ELF file version does not match current one".into());
    }
    if h.e_machine != abi.e_machine() {
        return Check::Other;
    }
    if h.e_type != ET_DYN && h.e_type != ET_EXEC {
        return Check::Fatal("only ET_DYN and ET_EXEC can be loaded".into());
    }
    if h.e_phentsize != class.phdr_size() {
        return Check::Fatal("ELF file's phentsize not the expected size".into());
    }
    let end = h
        .e_phoff
        .checked_add(u64::from(h.e_phnum) * u64::from(class.phdr_size()));
    if end.is_none_or(|e| e > file_len) {
        return Check::Fatal("cannot read file data".into());
    }
    Check::Ok
}

/// elf/dl-load.c: `is_dst()`: `input` follows a '$'; the length of the DST `name` (braces
/// included) if it is there and not followed by an identifier character.
fn is_dst(input: &str, name: &str) -> Option<usize> {
    let (curly, s) = match input.strip_prefix('{') {
        Some(s) => (true, s),
        None => (false, input),
    };
    let rest = s.strip_prefix(name)?;
    let next = rest.as_bytes().first().copied();
    if curly && next != Some(b'}') {
        return None;
    }
    if !curly && next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return None;
    }
    Some(if curly { name.len() + 2 } else { name.len() })
}

/// elf/dl-load.c: `_dl_dst_count()`.
fn dst_count(input: &str) -> usize {
    let mut n = 0;
    let mut rest = input;
    while let Some(p) = rest.find('$') {
        let after = &rest[p + 1..];
        let len = is_dst(after, "ORIGIN")
            .or_else(|| is_dst(after, "PLATFORM"))
            .or_else(|| is_dst(after, "LIB"));
        if len.is_some() {
            n += 1;
        }
        rest = &after[len.unwrap_or(0)..];
    }
    n
}

/// elf/dl-load.c: `is_trusted_path_normalize()`: collapse "/./", "/../" and "//", add a
/// trailing '/', and check that a system directory is a prefix.
fn is_trusted_path_normalize(path: &str, system: &[&str]) -> bool {
    if path.is_empty() {
        return false;
    }
    let p = path.as_bytes();
    let mut n: Vec<u8> = Vec::with_capacity(p.len() + 2);
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'/' {
            let at = |k: usize| p.get(i + k).copied();
            if at(1) == Some(b'.') {
                if at(2) == Some(b'.') && matches!(at(3), Some(b'/') | None) {
                    while let Some(c) = n.pop() {
                        if c == b'/' {
                            break;
                        }
                    }
                    i += 3;
                    continue;
                } else if matches!(at(2), Some(b'/') | None) {
                    i += 2;
                    continue;
                }
            }
            if n.last() == Some(&b'/') {
                i += 1;
                continue;
            }
        }
        n.push(p[i]);
        i += 1;
    }
    if n.last() != Some(&b'/') {
        n.push(b'/');
    }
    system.iter().any(|d| n.starts_with(d.as_bytes()))
}

/// rtld.c (dl_main): the names in /etc/ld.so.preload: '#' up to the end of the line is
/// blanked, names are separated by ' ', '\t', '\n' and ':' (the C code stops at a NUL byte).
pub fn parse_ld_so_preload(content: &[u8]) -> Vec<String> {
    let mut b = content.to_vec();
    let mut k = 0;
    while k < b.len() {
        if b[k] == b'#' {
            while k < b.len() && b[k] != b'\n' {
                b[k] = b' ';
                k += 1;
            }
        }
        k += 1;
    }
    if let Some(nul) = b.iter().position(|&c| c == 0) {
        b.truncate(nul);
    }
    b.split(|&c| matches!(c, b' ' | b'\t' | b'\n' | b':'))
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deps_dst_tokens() {
        assert_eq!(is_dst("ORIGIN/x", "ORIGIN"), Some(6));
        assert_eq!(is_dst("{ORIGIN}/x", "ORIGIN"), Some(8));
        assert_eq!(is_dst("ORIGINAL", "ORIGIN"), None);
        assert_eq!(is_dst("{ORIGIN", "ORIGIN"), None);
        assert_eq!(is_dst("LIB_x", "LIB"), None);
        assert_eq!(dst_count("$ORIGIN/../$LIB:$FOO:${PLATFORM}"), 3);
        assert_eq!(dst_count("no tokens"), 0);
    }

    #[test]
    fn deps_trusted_path() {
        let s = &SYSTEM_DIRS_X86_64;
        assert!(is_trusted_path_normalize("/usr/lib/foo", s));
        assert!(is_trusted_path_normalize(
            "/usr/./lib//x86_64-linux-gnu/../foo",
            s
        ));
        assert!(!is_trusted_path_normalize("/usr/lib/../../tmp", s));
        assert!(!is_trusted_path_normalize("/tmp/lib", s));
        assert!(is_trusted_path_normalize("/lib", s));
    }

    #[test]
    fn deps_preload_file_syntax() {
        let v = parse_ld_so_preload(b"# comment\nlibA.so libB.so:libC.so\t#x y\n/abs/libD.so");
        assert_eq!(v, ["libA.so", "libB.so", "libC.so", "/abs/libD.so"]);
        assert!(parse_ld_so_preload(b"#only\n").is_empty());
    }

    #[test]
    fn deps_verify_header_of_real_files() {
        let Ok(b) = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        assert!(matches!(
            verify_header(&b[..64], b.len() as u64, Abi::X86_64),
            Check::Ok
        ));
        assert!(matches!(
            verify_header(&b[..64], b.len() as u64, Abi::I386),
            Check::Other
        ));
        assert!(matches!(
            verify_header(&b[..10], 10, Abi::X86_64),
            Check::Fatal(_)
        ));
        let mut m = b[..64].to_vec();
        m[18] = 0xb7; // EM_AARCH64: skipped silently
        assert!(matches!(
            verify_header(&m, b.len() as u64, Abi::X86_64),
            Check::Other
        ));
        let mut m = b[..64].to_vec();
        m[0] = 0;
        assert!(
            matches!(verify_header(&m, b.len() as u64, Abi::X86_64), Check::Fatal(r) if r == "invalid ELF header")
        );
    }
}
