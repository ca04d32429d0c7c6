//! musl 1.2.3's library search (ldso/dynlink.c: `load_library`, `path_open`, `fixup_rpath`,
//! `load_preload`, `load_direct_deps`/`load_deps`). See spec/ldso.md section 8.
//!
//! Differences from glibc that matter here: names of libc's parts ("libc.so", "libc.so.6",
//! "libpthread.so.0", ...) and the loader's own PT_INTERP name resolve to the loader (musl's
//! ld.so is libc.so); "already loaded" compares only the *shortname* (basename of a searched
//! path), never DT_SONAME; LD_LIBRARY_PATH comes first, then the RPATH (or RUNPATH, which
//! replaces it) of the requester and of every `needed_by` ancestor; only $ORIGIN is expanded
//! and a path with any other '$' is ignored; then the system path from
//! `<prefix>/etc/ld-musl-<arch>.path`, default "/lib:/usr/local/lib:/usr/lib". No cache, no
//! hwcaps subdirectories, no ELF class check while searching.
//!
//! N.B. not modelled: musl's check that replaces a glibc-like libc (defining both
//! `__libc_start_main` and `stdin`) by itself, which needs the symbol table.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{origin_of, DepGraph, DepObject, FoundVia, Fs, LoaderEnv, Missing};
use crate::elf::dynamic::read_dynamic;
use crate::elf::{Abi, ElfImage};
use crate::error::{Error, Result};

/// `NAME_MAX`.
const NAME_MAX: usize = 255;
/// `char buf[2*NAME_MAX+2]` of `load_library`: longer candidate paths are skipped.
const PATH_BUF: usize = 2 * NAME_MAX + 2;
/// `load_library`: the default system path.
const DEFAULT_SYS_PATH: &str = "/lib:/usr/local/lib:/usr/lib";
/// `load_library`: "c.pthread.rt.m.dl.util.xnet." — libc parts that musl provides itself.
const RESERVED: [&str; 7] = ["c.", "pthread.", "rt.", "m.", "dl.", "util.", "xnet."];

struct Dso {
    dep: DepObject,
    /// `p->name`: the path as opened.
    name: String,
    /// `p->shortname`: basename of a searched path.
    shortname: Option<String>,
    /// (st_dev, st_ino); `None` for the program and the loader.
    id: Option<(u64, u64)>,
    needed_by: Option<usize>,
    /// `fixup_rpath` result: `None` = not computed.
    rpath: Option<Option<String>>,
    kernel_mapped: bool,
}

struct Musl<'e> {
    env: &'e LoaderEnv,
    fs: Fs,
    dsos: Vec<Dso>,
    /// The loader (`ldso`), until a name resolves to it.
    ldso: Option<Dso>,
    ldso_idx: Option<usize>,
    /// `ldso.name`: the PT_INTERP string.
    ldso_name: String,
    env_path: Option<String>,
    sys_path: Option<String>,
    tried: Vec<String>,
    warnings: Vec<String>,
    missing: Vec<Missing>,
}

enum Load {
    Obj(usize),
    Fail,
}

/// Models musl 1.2.3 `__dls3`: the app, LD_PRELOAD (`load_preload`), then `load_deps`.
pub(crate) fn resolve_musl(
    program: &ElfImage,
    exec_path: &Path,
    interp: &Path,
    env: &LoaderEnv,
) -> Result<DepGraph> {
    let mut fs = env.fs();
    let dynamic = read_dynamic(program)?;
    let (realpath, host) = fs
        .realpath_of_host(&program.path)
        .map_err(|e| Error::io(&program.path, e))?;
    let app = Dso {
        dep: DepObject {
            requested: exec_path.to_string_lossy().into_owned(),
            path: exec_path.to_path_buf(),
            realpath: PathBuf::from(&realpath),
            host_path: host,
            dev: program.meta.dev(),
            ino: program.meta.ino(),
            soname: dynamic.as_ref().and_then(|d| d.soname.clone()),
            found_via: FoundVia::Program,
            loader: None,
            needed: Vec::new(),
            dynamic,
            image: None,
        },
        name: realpath,
        shortname: None,
        id: None,
        needed_by: None,
        rpath: None,
        kernel_mapped: true,
    };
    let ldso_name = interp.to_string_lossy().into_owned();
    let mut warnings = Vec::new();
    let (ld_dyn, dev, ino, ld_img) = match ElfImage::open(&fs.host(&ldso_name)) {
        Ok(img) => (
            read_dynamic(&img).ok().flatten(),
            img.meta.dev(),
            img.meta.ino(),
            Some(Arc::new(img)),
        ),
        Err(e) => {
            warnings.push(format!("cannot read the program interpreter: {e}"));
            (None, 0, 0, None)
        }
    };
    let (ld_real, ld_host) = match fs.realpath(&ldso_name) {
        Ok(r) => {
            let h = fs.host(&r).into_owned();
            (PathBuf::from(r), h)
        }
        Err(_) => (PathBuf::from(&ldso_name), fs.host(&ldso_name).into_owned()),
    };
    let ldso = Dso {
        dep: DepObject {
            requested: ldso_name.clone(),
            path: PathBuf::from(&ldso_name),
            realpath: ld_real,
            host_path: ld_host,
            dev,
            ino,
            soname: ld_dyn.as_ref().and_then(|d| d.soname.clone()),
            found_via: FoundVia::Loader,
            loader: None,
            needed: Vec::new(),
            dynamic: ld_dyn,
            image: ld_img,
        },
        name: ldso_name.clone(),
        shortname: Some("libc.so".into()),
        id: None,
        needed_by: None,
        rpath: Some(None),
        kernel_mapped: true,
    };
    let secure = env.secure;
    let mut m = Musl {
        env,
        fs,
        dsos: vec![app],
        ldso: Some(ldso),
        ldso_idx: None,
        ldso_name,
        env_path: if secure {
            None
        } else {
            env.ld_library_path.clone()
        },
        sys_path: None,
        tried: Vec::new(),
        warnings,
        missing: Vec::new(),
    };
    if !secure {
        if let Some(p) = env.ld_preload.clone() {
            m.load_preload(&p);
        }
    }
    m.load_deps();
    Ok(DepGraph {
        objects: m.dsos.into_iter().map(|d| d.dep).collect(),
        missing: m.missing,
        first_cache_use: None,
        cache: None,
        preload_file: None,
        interp_index: m.ldso_idx,
        warnings: m.warnings,
    })
}

impl Musl<'_> {
    /// `load_preload`: names separated by white space or ':'; loaded with no `needed_by`.
    fn load_preload(&mut self, s: &str) {
        for name in s
            .split(|c: char| c.is_ascii_whitespace() || c == ':')
            .filter(|n| !n.is_empty())
        {
            let before = self.dsos.len();
            match self.load_library(name, None) {
                Load::Obj(i) if i >= before && Some(i) != self.ldso_idx => {
                    self.dsos[i].dep.found_via = FoundVia::Preload;
                }
                Load::Obj(_) => {}
                Load::Fail => self
                    .warnings
                    .push(format!("LD_PRELOAD: {name}: cannot load (ignored)")),
            }
        }
    }

    /// `load_deps(&app)` → `load_direct_deps(p)` for every dso in list order (the loader's
    /// deps are `no_deps`).
    fn load_deps(&mut self) {
        let mut i = 0;
        while i < self.dsos.len() {
            if Some(i) == self.ldso_idx {
                i += 1;
                continue;
            }
            let needed: Vec<String> = self.dsos[i]
                .dep
                .dynamic
                .as_ref()
                .map(|d| d.needed.clone())
                .unwrap_or_default();
            for name in needed {
                self.tried.clear();
                match self.load_library(&name, Some(i)) {
                    Load::Obj(j) => self.dsos[i].dep.needed.push(j),
                    Load::Fail => self.missing.push(Missing {
                        name,
                        needed_by: i,
                        tried: self.tried.drain(..).map(PathBuf::from).collect(),
                    }),
                }
            }
            i += 1;
        }
    }

    fn append_ldso(&mut self, requested: &str, needed_by: Option<usize>) -> usize {
        if let Some(i) = self.ldso_idx {
            return i;
        }
        let mut d = self.ldso.take().unwrap();
        d.dep.requested = requested.to_string();
        d.dep.loader = needed_by;
        self.dsos.push(d);
        let i = self.dsos.len() - 1;
        self.ldso_idx = Some(i);
        i
    }

    /// Models ldso/dynlink.c: `load_library()` (musl 1.2.3).
    fn load_library(&mut self, name: &str, needed_by: Option<usize>) -> Load {
        if name.is_empty() {
            return Load::Fail;
        }
        let is_self = name
            .strip_prefix("lib")
            .is_some_and(|rest| RESERVED.iter().any(|r| rest.starts_with(r)))
            || name == self.ldso_name;
        if is_self {
            return Load::Obj(self.append_ldso(name, needed_by));
        }
        let (pathname, via, fd) = if name.contains('/') {
            self.tried.push(name.to_string());
            (name.to_string(), FoundVia::SlashName, self.open(name))
        } else {
            if let Some(i) =
                (1..self.dsos.len()).find(|&i| self.dsos[i].shortname.as_deref() == Some(name))
            {
                return Load::Obj(i);
            }
            if name.len() > NAME_MAX {
                return Load::Fail;
            }
            let mut r: Option<(String, Box<ElfImage>, FoundVia)> = None;
            let mut inhibit = false;
            if let Some(p) = self.env_path.clone() {
                match self.path_open(name, &p) {
                    Opened::Yes(s, img) => r = Some((s, img, FoundVia::LdLibraryPath)),
                    Opened::Inhibit => inhibit = true,
                    Opened::No => {}
                }
            }
            let mut p = needed_by;
            while let (None, false, Some(pi)) = (&r, inhibit, p) {
                if let Some(rp) = self.fixup_rpath(pi) {
                    let via = if self.dsos[pi]
                        .dep
                        .dynamic
                        .as_ref()
                        .is_some_and(|d| d.runpath.is_some())
                    {
                        FoundVia::Runpath { of: pi }
                    } else {
                        FoundVia::Rpath { of: pi }
                    };
                    match self.path_open(name, &rp) {
                        Opened::Yes(s, img) => r = Some((s, img, via)),
                        Opened::Inhibit => inhibit = true,
                        Opened::No => {}
                    }
                }
                p = self.dsos[pi].needed_by;
            }
            if r.is_none() && !inhibit {
                let sys = self.sys_path();
                if let Opened::Yes(s, img) = self.path_open(name, &sys) {
                    r = Some((s, img, FoundVia::DefaultDir));
                }
            }
            match r {
                Some((s, img, via)) => (s, via, Some(img)),
                None => return Load::Fail,
            }
        };
        let Some(img) = fd else {
            return Load::Fail;
        };
        let id = (img.meta.dev(), img.meta.ino());
        if let Some(i) = (1..self.dsos.len()).find(|&i| self.dsos[i].id == Some(id)) {
            // A search found an inode first loaded by pathname: it gets a shortname now.
            if self.dsos[i].shortname.is_none() && via != FoundVia::SlashName {
                let n = &self.dsos[i].name;
                self.dsos[i].shortname = Some(n.rsplit('/').next().unwrap_or(n).to_string());
            }
            return Load::Obj(i);
        }
        // map_library: reject what it cannot map (musl does not check the class while
        // searching; a wrong-class file makes the load fail).
        let abi_ok = img.abi() == Some(self.env.abi);
        if !abi_ok
            || !(img.is_dyn() || img.e_type() == goblin::elf::header::ET_EXEC)
            || img.loads().next().is_none()
        {
            self.warnings.push(format!(
                "{pathname}: not a loadable {:?} ELF object for musl",
                self.env.abi
            ));
            return Load::Fail;
        }
        let dynamic = match read_dynamic(&img) {
            Ok(d) => d,
            Err(e) => {
                self.warnings.push(e.to_string());
                return Load::Fail;
            }
        };
        let (realpath, host_path) = match self.fs.realpath(&pathname) {
            Ok(r) => {
                let h = self.fs.host(&r).into_owned();
                (PathBuf::from(r), h)
            }
            Err(e) => {
                self.warnings
                    .push(format!("{pathname}: cannot canonicalize: {e}"));
                (PathBuf::from(&pathname), img.path.clone())
            }
        };
        let shortname = (via != FoundVia::SlashName)
            .then(|| pathname.rsplit('/').next().unwrap_or(&pathname).to_string());
        self.dsos.push(Dso {
            dep: DepObject {
                requested: name.to_string(),
                path: PathBuf::from(&pathname),
                realpath,
                host_path,
                dev: id.0,
                ino: id.1,
                soname: dynamic.as_ref().and_then(|d| d.soname.clone()),
                found_via: via,
                loader: needed_by,
                needed: Vec::new(),
                dynamic,
                image: Some(Arc::from(img)),
            },
            name: pathname,
            shortname,
            id: Some(id),
            needed_by,
            rpath: None,
            kernel_mapped: false,
        });
        Load::Obj(self.dsos.len() - 1)
    }

    fn open(&mut self, path: &str) -> Option<Box<ElfImage>> {
        ElfImage::open(&self.fs.host(path)).ok().map(Box::new)
    }

    /// Models ldso/dynlink.c: `path_open()`: elements separated by ':' or '\n' (empty ones
    /// skipped), "%s/%s" (no '/' normalisation), ENOENT/ENOTDIR/EACCES/ENAMETOOLONG go on,
    /// any other error stops the whole search.
    fn path_open(&mut self, name: &str, s: &str) -> Opened {
        for dir in s.split([':', '\n']).filter(|d| !d.is_empty()) {
            let cand = format!("{dir}/{name}");
            if cand.len() >= PATH_BUF {
                continue;
            }
            self.tried.push(cand.clone());
            match ElfImage::open(&self.fs.host(&cand)) {
                Ok(img) => return Opened::Yes(cand, Box::new(img)),
                Err(Error::Io { source, .. }) => match source.raw_os_error() {
                    Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::ENAMETOOLONG) => {}
                    _ => return Opened::Inhibit,
                },
                // Opened, but not something ElfImage can read: musl's map_library fails on
                // it and the load of this name fails.
                Err(e) => {
                    self.warnings.push(e.to_string());
                    return Opened::Inhibit;
                }
            }
        }
        Opened::No
    }

    /// Models ldso/dynlink.c: `fixup_rpath()`: DT_RUNPATH replaces DT_RPATH (`decode_dyn`);
    /// only `$ORIGIN`/`${ORIGIN}` is expanded, any other '$' makes the whole path ignored.
    /// The program's origin is `/proc/self/exe`'s directory (not in secure mode); a library's
    /// is the directory of the path it was opened at.
    fn fixup_rpath(&mut self, i: usize) -> Option<String> {
        if let Some(r) = &self.dsos[i].rpath {
            return r.clone();
        }
        let d = &self.dsos[i];
        let orig = d
            .dep
            .dynamic
            .as_ref()
            .and_then(|d| d.runpath.clone().or_else(|| d.rpath.clone()));
        let r = match orig {
            None => None,
            Some(o) if !o.contains('$') => Some(o),
            Some(o) => {
                let mut ok = true;
                let mut rest = o.as_str();
                while let Some(p) = rest.find('$') {
                    let t = &rest[p..];
                    if !(t.starts_with("$ORIGIN") || t.starts_with("${ORIGIN}")) {
                        ok = false;
                        break;
                    }
                    rest = &t[1..];
                }
                let origin = if d.kernel_mapped {
                    if self.env.secure {
                        None
                    } else {
                        Some(origin_of(&d.name))
                    }
                } else {
                    Some(match d.name.rfind('/') {
                        Some(p) => d.name[..p].to_string(),
                        None => ".".to_string(),
                    })
                };
                match (ok, origin) {
                    (true, Some(origin)) if !self.env.secure || origin.starts_with('/') => {
                        // Every '$' starts "$ORIGIN" or "${ORIGIN}" (checked above).
                        Some(substitute_origin(&o, &origin))
                    }
                    _ => None,
                }
            }
        };
        self.dsos[i].rpath = Some(r.clone());
        r
    }

    /// The system path: `<prefix>/etc/ld-musl-<arch>.path` (prefix = the loader's path minus
    /// its last two components), read once; missing → the default; unreadable → empty.
    fn sys_path(&mut self) -> String {
        if let Some(s) = &self.sys_path {
            return s.clone();
        }
        let file = path_file(&self.ldso_name, self.env.abi);
        let s = match std::fs::read(self.fs.host(&file)) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_SYS_PATH.to_string(),
            Err(_) => String::new(),
        };
        self.sys_path = Some(s.clone());
        s
    }
}

/// Where `load_library()` looks for the system path: `<prefix>/etc/ld-musl-<arch>.path`,
/// prefix being the loader's name up to its second-to-last '/' (empty for a name without a
/// leading '/').
pub(crate) fn path_file(ldso_name: &str, abi: Abi) -> String {
    let arch = match abi {
        Abi::X86_64 => "x86_64",
        Abi::I386 => "i386",
    };
    let prefix = if ldso_name.starts_with('/') {
        let mut slashes = ldso_name.rmatch_indices('/').map(|(i, _)| i);
        slashes.nth(1).unwrap_or(0)
    } else {
        0
    };
    format!("{}/etc/ld-musl-{arch}.path", &ldso_name[..prefix])
}

enum Opened {
    Yes(String, Box<ElfImage>),
    No,
    /// `path_open` returned -2: stop searching.
    Inhibit,
}

/// The `$ORIGIN` / `${ORIGIN}` substitution of `ldso/dynlink.c: fixup_rpath()`, for a path
/// string whose every '$' starts one of the two tokens (the caller has checked).
pub(crate) fn substitute_origin(s: &str, origin: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2 * origin.len());
    let mut rest = s;
    while let Some(p) = rest.find('$') {
        out.push_str(&rest[..p]);
        out.push_str(origin);
        let skip = if rest[p..].starts_with("${") { 9 } else { 7 };
        rest = &rest[p + skip..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// musl's rule (`ldso/dynlink.c: load_library()`): the prefix ends at the name's
    /// second-to-last '/', or is empty.
    #[test]
    fn deps_musl_path_file() {
        assert_eq!(
            path_file("/lib/ld-musl-x86_64.so.1", Abi::X86_64),
            "/etc/ld-musl-x86_64.path"
        );
        assert_eq!(
            path_file("/usr/local/musl/lib/libc.so", Abi::I386),
            "/usr/local/musl/etc/ld-musl-i386.path"
        );
        assert_eq!(path_file("/ld.so", Abi::X86_64), "/etc/ld-musl-x86_64.path");
        assert_eq!(path_file("ld.so", Abi::X86_64), "/etc/ld-musl-x86_64.path");
        // Without a leading '/' there is no prefix, however many '/' follow.
        assert_eq!(
            path_file("lib/x/ld.so", Abi::X86_64),
            "/etc/ld-musl-x86_64.path"
        );
    }
}
