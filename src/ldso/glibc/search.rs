//! glibc 2.36's library search, as ld.so does it while it loads: elf/dl-load.c
//! (`_dl_map_object`, `open_path`, `open_verify`, `_dl_init_paths`, `fillin_rpath`,
//! `decompose_rpath`, `cache_rpath`, `expand_dynamic_string_token`, `_dl_dst_substitute`,
//! `_dl_map_object_from_fd` up to the mapping), elf/dl-deps.c (`_dl_map_object_deps`) and
//! the preload part of elf/rtld.c (`handle_preload_list`, `do_preload`).
//!
//! The model keeps ld.so's data structures where they change the outcome: the global list of
//! search directories with a per-subdirectory "exists?" status shared by every list naming
//! the same directory, the lazily decomposed RPATH/RUNPATH of each object, the `l_loader`
//! chain, each object's name list (`l_libname`) and file identity; and it makes the
//! allocations these steps make, in their order (nothing when only listing). Differences
//! are flagged with "N.B.".

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::dynamic::{DF_1_NODEFLIB, DF_1_PIE};
use goblin::elf::header::{ET_DYN, ET_EXEC};

use super::ldcache::LdCache;
use super::{Node, Obj, Rtld};
use crate::elf::dynamic::read_dynamic;
use crate::elf::{Abi, ElfImage, PT_LOAD};
use crate::error::{Error, Result};
use crate::ldso::{origin_of, CacheUse, DepObject, FoundVia, Missing, ObjectFound, PreloadFileUse};
use crate::mm::{Maker, Placement, Prot};

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

/// `DL_DST_LIB`: what `$LIB` expands to for `abi`.
pub fn dl_dst_lib(abi: Abi) -> &'static str {
    match abi {
        Abi::X86_64 => DL_DST_LIB_X86_64,
        Abi::I386 => DL_DST_LIB_I386,
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
pub(super) struct SearchDir {
    dirname: String,
    status: Vec<DirStatus>,
}

/// `l_rpath_dirs` / `l_runpath_dirs`: not decomposed yet, none (`(void *) -1`), or a list.
#[derive(Clone, Debug, Default)]
pub(super) enum PathList {
    #[default]
    Unset,
    None,
    Dirs(Vec<usize>),
}

/// Where `_dl_map_object` found (or did not find) a name.
enum Mapped {
    /// An object (already loaded, or loaded by this call), by index in the load list.
    Obj {
        idx: usize,
    },
    /// The vDSO's link map (named by its DT_SONAME; not in the load list).
    Vdso,
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
pub(super) enum CacheState {
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

/// Where an element of a path list comes from (`r_search_path_elem.where`): the object's
/// `l_name` (its length + 1 is allocated with the element), or nothing (LD_LIBRARY_PATH).
#[derive(Clone, Copy, Debug)]
enum Where<'a> {
    Object(&'a str),
    Env,
}

impl Where<'_> {
    fn len(&self) -> u64 {
        match self {
            Where::Object(n) => n.len() as u64 + 1,
            Where::Env => 0,
        }
    }
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn errno_str(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

impl Rtld<'_> {
    /// The main map (`rtld_setup_main_map`): no name, its origin from `/proc/self/exe`
    /// (the canonical path of the executable, `_dl_get_origin`), computed when a DST first
    /// needs it; then its mapping facts ([`Rtld::setup_main_map`]).
    pub(super) fn setup_main(&mut self, program: &Arc<ElfImage>, exec_path: &Path) -> Result<()> {
        let dep = crate::ldso::program_object(&mut self.fs, program, exec_path)?;
        self.objs.push(Obj {
            dep,
            l_name: String::new(),
            libnames: vec![String::new()],
            soname_added: false,
            file_id: None,
            l_loader: None,
            origin: None,
            is_main: true,
            rpath: PathList::Unset,
            runpath: PathList::Unset,
            object: None,
            placed: None,
            relro: None,
            tls: None,
        });
        self.setup_main_map(program)?;
        // main -> ld.so -> vDSO -> preloads -> ...
        self.chain.push(Node::Obj(0));
        self.chain.push(Node::Rtld);
        self.report(0);
        Ok(())
    }

    /// Tell whoever works ahead of us that object `i` entered the load list, and how long
    /// the list will be at least (its length and what the new object names; some of those
    /// may be loaded already): curl's list is known to be long once libcurl is in it.
    fn report(&mut self, i: usize) {
        let o = &self.objs[i];
        let expected = self.objs.len() + o.dynamic().map_or(0, |d| d.needed.len());
        let found = ObjectFound {
            index: i,
            image: o.dep.image.clone(),
            dynamic: o.dep.dynamic.clone(),
            is_rtld: Some(i) == self.rtld_idx,
        };
        self.ahead.object_found(found, expected);
    }

    /// Ask for the cache's answers for the DT_NEEDED names of object `i` not loaded yet to
    /// be read ahead of us. Only while no path list comes before the cache
    /// (LD_LIBRARY_PATH, DT_RPATH, DT_RUNPATH): the guesses are then nearly always right,
    /// and a wrong one costs the reader's time only.
    pub(super) fn request_prefetch(&mut self, i: usize) {
        if !self.ahead.reads_ahead()
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
        for name in needed {
            if name.contains('/') || name.contains('$') || self.loaded_match(&name).is_some() {
                continue;
            }
            if let Some(path) = cache.lookup(&name, &self.cache_query) {
                self.ahead.read_ahead(&String::from_utf8_lossy(path));
            }
        }
    }

    /// `GL(dl_rtld_map)`: named by the PT_INTERP string, plus its SONAME (dl_main adds it
    /// when it differs). Its file id stays zero, so it is never matched by (dev, inode).
    /// `opened` is the interpreter as the kernel opened it, if it did.
    pub(super) fn setup_rtld(&mut self, interp: &Path, opened: Option<&Arc<ElfImage>>) {
        let dep = crate::ldso::loader_object(&mut self.fs, interp, opened, &mut self.warnings);
        let name = dep.requested.clone();
        let mut libnames = vec![name.clone()];
        if let Some(s) = &dep.soname {
            if *s != name {
                libnames.push(s.clone());
            }
        }
        self.rtld = Some(Obj {
            dep,
            l_name: name,
            libnames,
            soname_added: false,
            file_id: None,
            l_loader: None,
            origin: None,
            is_main: false,
            rpath: PathList::None,
            runpath: PathList::None,
            object: None,
            placed: None,
            relro: None,
            tls: None,
        });
    }

    /// Object `i` of the namespace (`usize::MAX` = the pending ld.so map).
    fn obj(&self, i: usize) -> &Obj {
        if i == usize::MAX {
            self.rtld.as_ref().expect("ld.so's link map")
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

    /// Models elf/dl-load.c: `_dl_init_paths()` (via `call_init_paths()`): the hwcaps
    /// tables (`_dl_important_hwcaps()`), the system directories, the main program's RUNPATH
    /// (then its RPATH is ignored) or RPATH, and LD_LIBRARY_PATH (not in secure mode;
    /// DSTs substituted in the whole string first, then split on ':' and ';').
    pub(super) fn dl_init_paths(&mut self) -> Result<()> {
        let s = self.sizes;
        let hws = super::hwcaps::dl_important_hwcaps_sizes(&self.hw, s.word);
        self.malloc(hws.priorities, "hwcaps priorities (compute_priorities)")?;
        self.malloc(hws.table, "_dl_important_hwcaps table")?;
        let sys = system_dirs(self.abi);
        let n_sys = sys.len() as u64;
        self.malloc((n_sys + 1) * s.word, "system search directory array")?;
        let round_size = (2 * s.search_path_elem - 1 + hws.ncapstr * 4) / s.search_path_elem;
        self.malloc(
            n_sys * round_size * s.search_path_elem,
            "system search directory elements",
        )?;
        for d in sys {
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
            self.objs[0].runpath = self.decompose_rpath(&rp, 0, "RUNPATH")?;
            self.objs[0].rpath = PathList::None;
        } else {
            self.objs[0].runpath = PathList::None;
            self.objs[0].rpath = match rpath {
                Some(rp) => self.decompose_rpath(&rp, 0, "RPATH")?,
                None => PathList::None,
            };
        }
        let llp = if self.env.secure {
            None
        } else {
            self.env.ld_library_path.clone()
        };
        self.env_path = match llp {
            Some(llp) if !llp.is_empty() => self.ld_library_path(&llp)?,
            _ => PathList::None,
        };
        Ok(())
    }

    /// The LD_LIBRARY_PATH part of `_dl_init_paths()`: DSTs substituted on the stack
    /// (`DL_DST_REQUIRED` may compute the program's origin), the array `(n + 1) * P` with
    /// n = 1 + the number of ':' and ';', then `fillin_rpath` without `where`.
    fn ld_library_path(&mut self, llp: &str) -> Result<PathList> {
        let mut llp = llp.to_string();
        if dst_count(&llp) > 0 {
            self.ensure_program_origin()?;
            llp = self.dl_dst_substitute(0, &llp).unwrap_or_default();
        }
        let n = 1 + llp.bytes().filter(|&b| b == b':' || b == b';').count() as u64;
        let array = self.malloc((n + 1) * self.sizes.word, "LD_LIBRARY_PATH array")?;
        let v = self.fillin_rpath(&llp, &[':', ';'], 0, Where::Env, "LD_LIBRARY_PATH")?;
        if v.is_empty() {
            self.free(array);
            return Ok(PathList::None);
        }
        Ok(PathList::Dirs(v))
    }

    /// Models elf/dl-load.c: `decompose_rpath(sps, rpath, l, what)`: an empty string gives
    /// no list; else `strdup` of the list, the result array `(colons + 2) * P`,
    /// `fillin_rpath`, then `free` of the copy (not the last block) and of the array if it
    /// stayed empty (it is the last block only if every element reused a directory).
    fn decompose_rpath(&mut self, rpath: &str, l: usize, what: &str) -> Result<PathList> {
        if rpath.is_empty() {
            return Ok(PathList::None);
        }
        let word = self.sizes.word;
        self.malloc(rpath.len() as u64 + 1, format_args!("{what} copy"))?;
        let copy = self.last_block();
        let colons = rpath.bytes().filter(|&b| b == b':').count() as u64;
        self.malloc((colons + 2) * word, format_args!("{what} array"))?;
        let array = self.last_block();
        let where_name = self.obj(l).l_name.clone();
        let v = self.fillin_rpath(rpath, &[':'], l, Where::Object(&where_name), what)?;
        self.free(copy);
        if v.is_empty() {
            self.free(array);
            return Ok(PathList::None);
        }
        Ok(PathList::Dirs(v))
    }

    /// Models elf/dl-load.c: `fillin_rpath()`: split with strsep semantics (an empty element
    /// is the current directory); per element: expand DSTs (allocates; an element whose
    /// DST cannot be substituted, or that expands to nothing, is dropped and its expansion
    /// freed), normalise to exactly one trailing '/', then either reuse the known directory
    /// (and the expansion, the last block, is freed for real) or allocate a new
    /// `r_search_path_elem` with its status words, `where` and name; then free the
    /// expansion (reclaimed only if nothing was allocated after it).
    fn fillin_rpath(
        &mut self,
        rpath: &str,
        sep: &[char],
        l: usize,
        where_: Where,
        what: &str,
    ) -> Result<Vec<usize>> {
        let mut out: Vec<usize> = Vec::new();
        for cp in rpath.split(sep) {
            let mut dir = String::new();
            if !cp.is_empty() {
                let expanded = self.expand_dynamic_string_token(l, cp, what)?;
                if expanded.is_empty() {
                    self.free_last();
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
            let known = self.dir_ids.get(&dir).copied();
            let id = match known {
                Some(id) => {
                    if !cp.is_empty() {
                        // free (to_free): the expansion is the last block.
                        self.free_last();
                    }
                    id
                }
                None => {
                    let n = self.sizes.search_path_elem
                        + self.capstr.len() as u64 * 4
                        + where_.len()
                        + dir.len() as u64
                        + 1;
                    let expansion = self.last_block();
                    self.malloc(n, format_args!("r_search_path_elem {dir} ({what})"))?;
                    // free (to_free) of the expansion: not the last block any more.
                    if !cp.is_empty() {
                        self.free(expansion);
                    }
                    self.dir_id(&dir)
                }
            };
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Models elf/dl-load.c: `expand_dynamic_string_token(l, input)`: `strdup` without
    /// tokens, else `malloc(DL_DST_REQUIRED + 1)` (the program's `l_origin` is computed
    /// first if needed) and `_dl_dst_substitute()`. "" when a DST cannot be substituted.
    fn expand_dynamic_string_token(&mut self, l: usize, input: &str, what: &str) -> Result<String> {
        if dst_count(input) == 0 {
            self.malloc(input.len() as u64 + 1, format_args!("strdup {what}"))?;
            return Ok(input.to_string());
        }
        if l == 0 {
            self.ensure_program_origin()?;
        }
        let total = self.dl_dst_required(l, input);
        self.malloc(total + 1, format_args!("DST expansion {what}"))?;
        Ok(self.dl_dst_substitute(l, input).unwrap_or_default())
    }

    /// `DL_DST_REQUIRED` for object `l` ([`dl_dst_required`]).
    fn dl_dst_required(&self, l: usize, s: &str) -> u64 {
        dl_dst_required(
            s,
            self.obj(l).origin.as_deref(),
            self.hw.dl_platform,
            dl_dst_lib(self.abi),
        )
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
                    (len, Some(Some(dl_dst_lib(self.abi))))
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

    /// Models elf/dl-load.c: `cache_rpath()` (`rpath` = DT_RPATH, else DT_RUNPATH): decompose
    /// the object's list the first time a search needs it.
    fn cache_rpath(&mut self, l: usize, rpath: bool) -> Result<Option<Vec<usize>>> {
        let cur = if rpath {
            &self.objs[l].rpath
        } else {
            &self.objs[l].runpath
        };
        match cur {
            PathList::None => return Ok(None),
            PathList::Dirs(v) => return Ok(Some(v.clone())),
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
            Some(s) => self.decompose_rpath(&s, l, if rpath { "RPATH" } else { "RUNPATH" })?,
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
        Ok(out)
    }

    /// Models elf/dl-load.c: `open_verify()` (the header checks), given a path inside the root.
    fn open_verify(&mut self, path: &str) -> Verdict {
        let host = self.fs.host(path).into_owned();
        // The helper's reading, if it has one: the same file, opened at the same path.
        let (opened, fetched) = match self.ahead.take(path) {
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
    /// first use, [`Rtld::map_cache`]), the DF_1_NODEFLIB filter, then `open_verify` of
    /// the answer.
    fn search_cache(&mut self, name: &str, loader: usize, preload: bool) -> Result<Found> {
        if self.first_cache_use.is_none() {
            self.first_cache_use = Some(self.objs.len());
        }
        self.open_cache();
        if let Some((used, warning)) = self.cache_opened.take() {
            self.cache_use = used;
            self.warnings.extend(warning);
            self.map_cache()?;
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

    /// Models `elf/dl-misc.c: _dl_sysdep_read_whole_file()` (mapping state only): the whole
    /// file at host path `host` (`size` bytes) mapped private with `prot`, wherever the
    /// kernel puts it. Returns its address.
    fn dl_sysdep_read_whole_file(
        &mut self,
        host: &Path,
        size: u64,
        prot: Prot,
        made_by: Maker,
    ) -> Result<u64> {
        let file = self.open_file(host)?;
        let m = self.map.as_mut().expect("mapping state");
        m.task
            .mmap(0, size, prot, Placement::Hint, Some((file, 0)), made_by)
            .map_err(|e| mm_err_at(host, e))
    }

    /// `_dl_load_cache_lookup()`'s first call: `_dl_sysdep_read_whole_file()` maps the whole
    /// `/etc/ld.so.cache` read-only (an invalid file is unmapped again at once).
    fn map_cache(&mut self) -> Result<()> {
        let Some(c) = &self.cache_use else {
            return Ok(());
        };
        let (host, size, valid) = (c.host_path.clone(), c.size, c.valid);
        if self.map.is_none() || size == 0 {
            return Ok(());
        }
        let addr = self.dl_sysdep_read_whole_file(&host, size, Prot::R, Maker::DlCache)?;
        let m = self.map.as_mut().expect("mapping state");
        if valid {
            m.cache = Some((addr, size));
        } else {
            m.task.munmap(addr, size);
        }
        Ok(())
    }

    /// Models elf/dl-load.c: `_dl_map_object()` with `loader` (an index into the load list;
    /// the program for its own needs and for preloads). Returns the object, or `NotFound`
    /// (with `self.tried` listing what was tried); `Err` for the loader's fatal errors.
    fn dl_map_object(&mut self, loader: usize, name: &str, preload: bool) -> Result<Mapped> {
        // Look for this name among those already loaded, in namespace order.
        if let Some(m) = self.find_loaded(name)? {
            return Ok(m);
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
                    if let Some(dirs) = self.cache_rpath(li, true)? {
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
                    if let Some(dirs) = self.cache_rpath(0, true)? {
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
                if let Some(dirs) = self.cache_rpath(loader, false)? {
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
            let realname = self.dl_dst_substitute(loader, name).unwrap_or_default();
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

    /// Models `_dl_name_match_p()` plus the SONAME branch of `_dl_map_object()`'s
    /// already-loaded check, over the namespace list: the first link map whose `l_name` or
    /// a `l_libname` entry is `name`, or (once per object) whose DT_SONAME is, in which case
    /// the name is added (`add_name_to_object`, a small malloc). ld.so's link map enters
    /// the load list where a name first finds it.
    fn find_loaded(&mut self, name: &str) -> Result<Option<Mapped>> {
        let Some((i, by_soname)) = self.loaded_match(name) else {
            return Ok(None);
        };
        if i == VDSO {
            return Ok(Some(Mapped::Vdso));
        }
        let idx = if i == usize::MAX {
            self.append_rtld()
        } else {
            i
        };
        if by_soname {
            self.add_name_to_object(idx, name)?;
            self.objs[idx].soname_added = true;
        }
        Ok(Some(Mapped::Obj { idx }))
    }

    /// `find_loaded`'s search alone: the link map whose names or SONAME match `name` (an
    /// index in the load list, `usize::MAX` for ld.so not yet in it, [`VDSO`]) and whether
    /// it was the SONAME.
    fn loaded_match(&self, name: &str) -> Option<(usize, bool)> {
        let vdso_name = super::vdso_facts(self.abi).0;
        for n in &self.chain {
            let i = match *n {
                Node::Vdso => {
                    if name == vdso_name {
                        return Some((VDSO, false));
                    }
                    continue;
                }
                Node::Rtld => self.rtld_idx.unwrap_or(usize::MAX),
                Node::Obj(i) => i,
            };
            let o = self.obj(i);
            if o.name_match(name) {
                return Some((i, false));
            }
            if !o.soname_added && o.dep.soname.as_deref() == Some(name) {
                return Some((i, true));
            }
        }
        None
    }

    /// Models `add_name_to_object()`: nothing if the name is known, else
    /// `malloc(sizeof (struct libname_list) + strlen (name) + 1)`.
    fn add_name_to_object(&mut self, i: usize, name: &str) -> Result<()> {
        if self.objs[i].libnames.iter().any(|l| l == name) {
            return Ok(());
        }
        self.malloc(
            self.sizes.libname_list + name.len() as u64 + 1,
            format_args!("libname {name}"),
        )?;
        self.objs[i].libnames.push(name.to_string());
        Ok(())
    }

    /// ld.so enters the load list where a DT_NEEDED first names it (it is already mapped).
    fn append_rtld(&mut self) -> usize {
        if let Some(i) = self.rtld_idx {
            return i;
        }
        let o = self.rtld.take().expect("ld.so's link map");
        self.objs.push(o);
        let i = self.objs.len() - 1;
        self.rtld_idx = Some(i);
        for n in &mut self.chain {
            if *n == Node::Rtld {
                *n = Node::Obj(i);
            }
        }
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
        // What was read ahead of this file, if it was the one `try_candidate` took.
        let fetched = self.fetched.take().filter(|(p, ..)| *p == realname);
        // open_path()'s `*realname = malloc (buflen)` (or the cache's, or strdup).
        let realname_block = self.malloc(
            realname.len() as u64 + 1,
            format_args!("realname {realname}"),
        )?;
        let id = (img.meta.dev(), img.meta.ino());
        if let Some(i) = self.objs.iter().position(|o| o.file_id == Some(id)) {
            // The same file as a loaded object: close, free (realname), add the name.
            self.free(realname_block);
            self.add_name_to_object(i, name)?;
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
        let origin = (self.map.is_none()).then(|| origin_of(&abs));
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
        let has_filters = !dynamic.auxiliary.is_empty() || !dynamic.filter.is_empty();
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
            l_name: realname.clone(),
            libnames: vec![name.to_string()],
            soname_added: false,
            file_id: Some(id),
            l_loader: Some(loader),
            origin,
            is_main: false,
            rpath: PathList::Unset,
            runpath: PathList::Unset,
            object: None,
            placed: None,
            relro: None,
            tls: None,
        });
        self.report(idx);
        self.request_prefetch(idx);
        if self.map.is_some() {
            self.map_object(idx, name, &realname)?;
            if let (true, Some(m)) = (has_filters, &mut self.map) {
                m.warnings.push(format!(
                    "ld.so model: {realname} has DT_AUXILIARY/DT_FILTER entries (not modelled)"
                ));
            }
        }
        self.chain.push(Node::Obj(idx));
        Ok(Mapped::Obj { idx })
    }

    /// LD_PRELOAD (`handle_preload_list`: split on ' ' and ':') then /etc/ld.so.preload
    /// (if `access(R_OK)` succeeds: mapped read-write private while its names are loaded,
    /// then unmapped; '#' comments blanked, split on whitespace and ':'). Each name is
    /// loaded with the program as loader; failures are reported and ignored
    /// (`do_preload`).
    pub(super) fn preloads(&mut self) -> Result<()> {
        if let Some(list) = self.env.ld_preload.clone() {
            for fname in list.split([' ', ':']) {
                if fname.len() >= SECURE_PATH_LIMIT || !self.dso_name_valid_for_suid(fname) {
                    continue;
                }
                self.do_preload(fname, "LD_PRELOAD")?;
            }
        }
        let host = self.fs.host(LD_SO_PRELOAD).into_owned();
        if !crate::host::fs::readable(&host) {
            return Ok(());
        }
        let Ok(content) = std::fs::read(&host) else {
            return Ok(());
        };
        if content.is_empty() {
            return Ok(());
        }
        self.preload_file = Some(PreloadFileUse {
            path: PathBuf::from(LD_SO_PRELOAD),
            size: content.len() as u64,
        });
        let size = content.len() as u64;
        let mapped = match self.map.is_some() {
            true => {
                let made_by = Maker::DlPreloadFile;
                Some((
                    self.dl_sysdep_read_whole_file(&host, size, Prot::RW, made_by)?,
                    size,
                ))
            }
            false => None,
        };
        for name in parse_ld_so_preload(&content) {
            self.do_preload(&name, LD_SO_PRELOAD)?;
        }
        if let (Some((addr, size)), Some(m)) = (mapped, self.map.as_mut()) {
            m.task.munmap(addr, size);
        }
        Ok(())
    }

    /// rtld.c: `dso_name_valid_for_suid()`.
    fn dso_name_valid_for_suid(&self, p: &str) -> bool {
        if self.env.secure && (p.len() >= SECURE_NAME_LIMIT || p.contains('/')) {
            return false;
        }
        !p.is_empty()
    }

    /// rtld.c: `do_preload()`.
    fn do_preload(&mut self, fname: &str, where_: &str) -> Result<()> {
        let before = self.objs.len();
        match self.dl_map_object(0, fname, true) {
            Ok(Mapped::Obj { idx }) => {
                if idx >= before {
                    self.objs[idx].dep.found_via = FoundVia::Preload;
                }
            }
            Ok(Mapped::Vdso) => {}
            Ok(Mapped::NotFound) => self.warnings.push(format!(
                "ERROR: ld.so: object '{fname}' from {where_} cannot be preloaded (cannot open shared object file): ignored."
            )),
            // Running out of memory in the model is not a failed preload.
            Err(e @ Error::LoadFailed { .. }) if e.to_string().contains("out of memory") => {
                return Err(e)
            }
            Err(e) => self.warnings.push(format!(
                "ERROR: ld.so: object '{fname}' from {where_} cannot be preloaded ({e}): ignored."
            )),
        }
        Ok(())
    }

    /// Models elf/dl-deps.c: `_dl_map_object_deps()`: walk the list front to back; for each
    /// object open every DT_NEEDED in order (DSTs expanded on the stack first; an entry
    /// whose DST cannot be substituted is skipped); new objects are appended, objects
    /// already in the list are not appended again; then the object's `l_initfini` array.
    /// The scratch buffer is allocated for objects with more than 1024 bytes of dynamic
    /// entries; finally the search list. Not found: recorded as missing (as in ld.so's
    /// trace mode; when mapping, the caller fails on it).
    pub(super) fn dl_map_object_deps(&mut self) -> Result<()> {
        let word = self.sizes.word;
        let mut i = 0;
        while i < self.objs.len() {
            let dynamic = self.objs[i].dep.dynamic.clone();
            let needed: Vec<String> = dynamic
                .as_ref()
                .map(|d| d.needed.clone())
                .unwrap_or_default();
            if let Some(d) = &dynamic {
                if !d.auxiliary.is_empty() || !d.filter.is_empty() {
                    self.warnings.push(format!(
                        "{}: DT_AUXILIARY/DT_FILTER objects are not modelled",
                        self.objs[i].dep.path.display()
                    ));
                }
            }
            let n_entries = dynamic.as_ref().map_or(0, |d| d.n_entries);
            let want_initfini = i != 0 && Some(i) != self.rtld_idx && n_entries > 0;
            if want_initfini && self.map.is_some() {
                let need = n_entries as u64 * word;
                let scratch = self.map.as_ref().and_then(|m| m.scratch);
                let cur = scratch.map_or(1024, |(_, len)| len);
                if need > cur {
                    if let Some((addr, _)) = scratch {
                        self.free(addr);
                    }
                    let addr = self.malloc(need, "dependency scratch buffer")?;
                    if let Some(m) = &mut self.map {
                        m.scratch = Some((addr, need));
                    }
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
                    if i == 0 {
                        self.ensure_program_origin()?;
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
                    Mapped::Vdso => {}
                    Mapped::NotFound => self.missing.push(Missing {
                        name,
                        needed_by: i,
                        tried: self.tried.drain(..).map(PathBuf::from).collect(),
                    }),
                }
            }
            if want_initfini {
                let nneeded = dynamic.as_ref().map_or(0, |d| d.needed.len()) as u64 + 1;
                let what = if self.opts.ledger {
                    format!("l_initfini of {}", self.objs[i].l_name)
                } else {
                    String::new()
                };
                self.malloc((2 * nneeded + 1) * word, what)?;
            }
            i += 1;
        }
        if let Some((addr, _)) = self.map.as_ref().and_then(|m| m.scratch) {
            self.free(addr);
        }
        let n = self.objs.len() as u64;
        self.malloc((2 * n + 1) * word, "search list of the program")?;
        Ok(())
    }
}

/// Where `find_loaded` puts the vDSO.
const VDSO: usize = usize::MAX - 1;

fn mm_err_at(path: &Path, e: crate::mm::MmError) -> Error {
    Error::load_failed(path, format!("out of memory in ld.so: {e}"))
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

/// Models `DL_DST_REQUIRED(l, name, len, cnt)`: `len + cnt * (M - 4)` with
/// `M = max(strlen(l_origin), strlen(platform), strlen(DL_DST_LIB))` if `M > 4`.
fn dl_dst_required(s: &str, origin: Option<&str>, platform: &str, lib: &str) -> u64 {
    let cnt = dst_count(s) as u64;
    let len = s.len() as u64;
    if cnt == 0 {
        return len;
    }
    let m = origin
        .map_or(0, str::len)
        .max(platform.len())
        .max(lib.len()) as u64;
    if m > 4 {
        len + cnt * (m - 4)
    } else {
        len
    }
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
        assert_eq!(dst_count("${ORIGIN}/$LIB"), 2);
        assert_eq!(dst_count("$ORIGINX/a"), 0);
        let (origin, platform, lib) = (
            "/work/main/testdata/build",
            "x86_64",
            "lib/x86_64-linux-gnu",
        );
        assert_eq!(
            dl_dst_required("$ORIGIN/r1", Some(origin), platform, lib),
            10 + 25 - 4
        );
        assert_eq!(dl_dst_required("no/tokens", Some(origin), platform, lib), 9);
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
