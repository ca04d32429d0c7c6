//! The file system as the models see it: paths inside an optional root directory (a
//! container image, a sysroot) and where they are on this machine, `realpath(3)` with the
//! directories' `readlink`s remembered, and the facts of an opened file that maps shows or
//! that change placement (canonical path, device, inode, the filesystem's `statfs` magic).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// File-system access under the optional root, with a cache of canonical directories so that
/// canonicalizing N libraries of one directory costs one `readlink` each.
#[derive(Clone, Debug)]
pub struct Fs {
    /// Every absolute path is looked up under this directory (a container root, a sysroot).
    root: Option<PathBuf>,
    /// The current directory (in-root) as a path on this machine's side of the root.
    cwd_path: PathBuf,
    /// In-root directory string as written → its canonical in-root path.
    canon_dirs: HashMap<String, String>,
    cwd: String,
}

/// Maximum symlinks followed while canonicalizing (glibc realpath's MAXSYMLINKS is 40 too,
/// via `__eloop_threshold`).
const MAXSYMLINKS: usize = 40;

impl Fs {
    /// The file system as a process sees it whose root directory is `root` (this
    /// machine's `/` if `None`) and whose current directory is `cwd` (inside the root).
    pub fn new(root: Option<&Path>, cwd: &Path) -> Fs {
        let mut cwd_s = cwd.to_string_lossy().into_owned();
        if !cwd_s.starts_with('/') {
            cwd_s.insert(0, '/');
        }
        Fs {
            root: root.map(Path::to_path_buf),
            cwd_path: cwd.to_path_buf(),
            canon_dirs: HashMap::new(),
            cwd: cwd_s,
        }
    }

    /// The root directory, if not this machine's `/`.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The current directory (in-root), as `getcwd` gives it.
    pub fn cwd(&self) -> &str {
        &self.cwd
    }

    /// Where in-root path `p` is on this machine: under the root if absolute, against the
    /// current directory if relative.
    pub fn host<'a>(&self, p: &'a str) -> Cow<'a, Path> {
        match (&self.root, p.starts_with('/')) {
            (None, true) => Cow::Borrowed(Path::new(p)),
            (Some(r), true) => Cow::Owned(r.join(p.trim_start_matches('/'))),
            (None, false) => Cow::Owned(self.cwd_path.join(p)),
            (Some(r), false) => Cow::Owned(r.join(self.cwd.trim_start_matches('/')).join(p)),
        }
    }

    /// The canonical in-root path of in-root path `p` (realpath(3) semantics inside the
    /// root: symlinks resolved, absolute link targets taken relative to the root, ".." never
    /// leaving it).
    pub fn realpath(&mut self, p: &str) -> io::Result<String> {
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
                let c = walk(self.root.as_deref(), "/".to_string(), dir, true)?;
                self.canon_dirs.insert(dir.to_string(), c.clone());
                c
            }
        };
        walk(self.root.as_deref(), canon_dir, base, false)
    }

    /// In-root canonical path of a file given by its *host* path (the program, which the
    /// caller opened): for a path inside the root, its in-root realpath (symbolic links
    /// resolved inside the root); otherwise canonicalize on the host, then strip the root
    /// if the result is inside.
    pub fn realpath_of_host(&mut self, host: &Path) -> io::Result<(String, PathBuf)> {
        let Some(root) = self.root.clone() else {
            let r = self.realpath(&host.to_string_lossy())?;
            let h = PathBuf::from(&r);
            return Ok((r, h));
        };
        if let Some(inside) = in_root_of(&root, host) {
            let r = self.realpath(&inside)?;
            let h = self.host(&r).into_owned();
            return Ok((r, h));
        }
        let canon = std::fs::canonicalize(host)?;
        let inside = match &self.root {
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

/// The path inside `root` of host path `host` (`/usr/bin/ls` for `ROOT/usr/bin/ls`), if
/// it lies inside: by its components as written, else after canonicalizing both.
pub fn in_root_of(root: &Path, host: &Path) -> Option<String> {
    let inside = |rel: &Path| Some(format!("/{}", rel.to_string_lossy()));
    if let Ok(rel) = host.strip_prefix(root) {
        return inside(rel);
    }
    // The directory canonicalized, the last component as it is (it may be a symbolic link
    // to be resolved inside the root).
    let croot = std::fs::canonicalize(root).ok()?;
    let dir = std::fs::canonicalize(host.parent().filter(|d| !d.as_os_str().is_empty())?).ok()?;
    let full = dir.join(host.file_name()?);
    inside(full.strip_prefix(&croot).ok()?)
}

/// The path a process whose root is `root` sees for the file at canonical host path
/// `canon` (what `d_path()` prints inside a chroot): `canon` without the canonical root,
/// or `canon` itself when it is not inside.
pub fn as_seen_from(root: Option<&Path>, canon: &Path) -> PathBuf {
    let Some(root) = root else {
        return canon.to_path_buf();
    };
    let croot = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    match canon.strip_prefix(&croot) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => canon.to_path_buf(),
    }
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
pub fn host_realpath(path: &Path) -> io::Result<PathBuf> {
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

/// What a mapping of a file shows or depends on: the canonical path `d_path()` prints, the
/// device and inode, and the `statfs` magic of its filesystem (which decides whether its
/// `get_unmapped_area` is `thp_get_unmapped_area`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileId {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub fs_magic: i64,
}

thread_local! {
    /// `statfs` magic per device.
    static FS_MAGIC: RefCell<HashMap<u64, i64>> = RefCell::new(HashMap::new());
}

/// The [`FileId`] of the file at host path `path` (canonicalized, stat'ed).
pub fn file_id(path: &Path) -> io::Result<FileId> {
    let canon = host_realpath(path)?;
    let meta = std::fs::metadata(&canon)?;
    Ok(file_id_known(&canon, meta.dev(), meta.ino()))
}

/// The [`FileId`] of a file whose canonical host path, device and inode are known (the
/// filesystem's magic is looked up once per device).
pub fn file_id_known(canon: &Path, dev: u64, ino: u64) -> FileId {
    let fs_magic = match FS_MAGIC.with(|m| m.borrow().get(&dev).copied()) {
        Some(m) => m,
        None => {
            let m = nix::sys::statfs::statfs(canon)
                .map(|s| s.filesystem_type().0)
                .unwrap_or(0);
            FS_MAGIC.with(|c| c.borrow_mut().insert(dev, m));
            m
        }
    };
    FileId {
        path: canon.to_path_buf(),
        dev,
        ino,
        fs_magic,
    }
}

/// `access(path, R_OK)`: whether we may read host path `path`.
pub fn readable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::R_OK).is_ok()
}

/// Whether the filesystem holding host path `path` is mounted `nosuid` (set-ID bits are
/// then ignored by exec).
pub fn mounted_nosuid(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
        .unwrap_or(false)
}
