//! DOC: remembered unique-symbol tables: the one result of a plan that costs more than
//! reading headers ([`crate::ldso::glibc::unique`] reads every object's symbol table, about
//! 1.2 MiB for gdb, and C++ objects' relocations), kept from one run to the next.
//!
//! The tables are a pure function of the files of the load list, ld.so's place in it and
//! lazy binding. A run that computed them writes them to
//! `$XDG_CACHE_HOME/elfmap/unique-tables/DEV-INODE.json` (`~/.cache` without
//! `XDG_CACHE_HOME`; one file per program), with each object's identity: device, inode,
//! size, modification and change times (a file rewritten, replaced, touched or chmod-ed
//! changes one of them), and the identity of the elfmap executable that computed them (a
//! new build computes them afresh). A later run takes them only if all of that is equal
//! for every object of its own load list; otherwise it computes them and writes them again.
//! `ELFMAP_CACHE=off` neither reads nor writes. Nothing is written for a plan that fails
//! before the tables (bad input).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A file as it is now: what changes when it is rewritten, replaced or touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What is remembered of one load list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub lazy: bool,
    pub rtld: usize,
    /// The load list: a digest of each object's [`Stamp`] in order ([`digest`]).
    pub objects: (u64, u64),
    /// The unique-symbol tables.
    pub tables: Vec<u64>,
    /// Each object's `ndx_high` ([`crate::elf::versions::highest_version_index`]).
    pub ndx: Vec<Option<u32>>,
}

/// A digest of the objects of a load list (`None`: no file or no dynamic section): 128
/// bits of SipHash, so that a file holds a few numbers per load list, not its 60 stamps.
/// The hasher is std's and may change with the compiler: the file is only read by the
/// executable that wrote it.
pub(crate) fn digest(objects: &[Option<Stamp>]) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        objects.hash(&mut h);
        h.finish()
    };
    (half(0), half(1))
}

/// One program's file: the tables of its last few load lists.
#[derive(Debug, Serialize, Deserialize)]
struct MemoFile {
    elfmap: Stamp,
    entries: Vec<Entry>,
}

/// Load lists kept per program (environments that change the list: LD_LIBRARY_PATH,
/// LD_PRELOAD, lazy binding on and off).
const KEPT: usize = 4;

/// Where this process keeps its tables, if it does.
#[derive(Clone, Debug)]
pub(crate) struct Memo {
    dir: PathBuf,
    elfmap: Stamp,
}

impl Memo {
    /// From this process's environment: `None` with `ELFMAP_CACHE=off`, or without a cache
    /// directory, or if the elfmap executable cannot be looked at.
    pub(crate) fn from_process_env() -> Option<Memo> {
        if std::env::var_os("ELFMAP_CACHE").is_some_and(|v| v == "off" || v == "0") {
            return None;
        }
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => {
                PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache")
            }
        };
        if !base.is_absolute() {
            return None;
        }
        let exe = std::fs::metadata("/proc/self/exe").ok()?;
        Some(Memo {
            dir: base.join("elfmap").join("unique-tables"),
            elfmap: Stamp::of(&exe),
        })
    }

    fn file(&self, program: &Stamp) -> PathBuf {
        self.dir
            .join(format!("{}-{}.json", program.dev, program.ino))
    }

    fn read(&self, path: &Path) -> Option<MemoFile> {
        let bytes = std::fs::read(path).ok()?;
        let f: MemoFile = serde_json::from_slice(&bytes).ok()?;
        (f.elfmap == self.elfmap).then_some(f)
    }

    /// The entries remembered for `program` (the load list's first object).
    pub(crate) fn entries(&self, program: &Stamp) -> Vec<Entry> {
        self.read(&self.file(program))
            .map(|f| f.entries)
            .unwrap_or_default()
    }

    /// Remember `entry` for `program`; errors are ignored (a read-only home, a full disk:
    /// the next run computes it again).
    pub(crate) fn remember(&self, program: &Stamp, entry: Entry) {
        let path = self.file(program);
        let mut entries = self.read(&path).map(|f| f.entries).unwrap_or_default();
        entries
            .retain(|e| (e.lazy, e.rtld, &e.objects) != (entry.lazy, entry.rtld, &entry.objects));
        entries.insert(0, entry);
        entries.truncate(KEPT);
        let file = MemoFile {
            elfmap: self.elfmap,
            entries,
        };
        let Ok(json) = serde_json::to_vec(&file) else {
            return;
        };
        // Written whole under another name, then renamed: a reader sees the old file or
        // the new one, never part of one.
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", program.ino, std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::File::create(&tmp))
            .and_then(|mut f| f.write_all(&json))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
