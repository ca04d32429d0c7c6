//! DOC: an object's own headers, read where the maps file names it (on this machine, or
//! under `--root DIR`): where its PT_LOADs, their `.bss` and its PT_GNU_RELRO must lie for
//! the base its first line gives, whether the lines agree (the same file, or another
//! version of it), and the allocated sections each line holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::elf::sections::{self, Section};
use crate::elf::{ElfImage, PT_LOAD};
use crate::maps::MapsLine;

/// The page size the layouts are computed for (x86: 4 KiB).
pub const PAGE: u64 = 4096;

fn page_start(a: u64) -> u64 {
    a & !(PAGE - 1)
}

fn page_align(a: u64) -> Option<u64> {
    a.checked_add(PAGE - 1).map(|x| x & !(PAGE - 1))
}

/// What was found for an object's file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Its headers agree with every line: its exact sections are used.
    Consistent,
    /// An ELF file is there, but its program headers do not give these lines: another
    /// version of the file (the lines are labelled from their shape alone).
    OtherVersion,
    /// Nothing (or no regular file) at that path.
    NotFound,
    /// A file is there but it is not an ELF file elfmap can read.
    NotElf,
}

/// The check of an object's file.
#[derive(Clone, Debug, Serialize)]
pub struct FileCheck {
    /// The file looked at (the name in the maps, under `--root` when given).
    pub path: PathBuf,
    pub status: FileStatus,
    /// The file's inode is the one the maps line shows (`None`: nothing to compare).
    pub same_inode: Option<bool>,
    /// What was found, in a few words.
    pub note: String,
}

/// One PT_LOAD where it lands for a base.
#[derive(Clone, Debug)]
pub struct Seg {
    /// Its index in the program headers.
    pub phdr: usize,
    /// `base + page_start(p_vaddr)`.
    pub start: u64,
    /// The end of its file pages: `base + page_align(p_vaddr + p_filesz)`.
    pub file_end: u64,
    /// The end of its memory: `base + page_align(p_vaddr + p_memsz)`.
    pub mem_end: u64,
    /// `page_start(p_offset)`: the offset maps shows for its first page.
    pub offset: u64,
    pub p_vaddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_flags: u32,
}

/// An object's layout at the base its lines give.
#[derive(Clone, Debug)]
pub struct Layout {
    pub image: Arc<ElfImage>,
    pub base: u64,
    pub segs: Vec<Seg>,
    /// PT_GNU_RELRO's pages: `[page_start(base + p_vaddr), page_start(base + p_vaddr +
    /// p_memsz))`, as `elf/dl-reloc.c: _dl_protect_relro()` rounds them.
    pub relro: Option<(u64, u64)>,
    pub sections: Vec<Section>,
}

/// What a piece of a file line is, by the headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The file pages of PT_LOAD `phdr` (in its PT_GNU_RELRO pages when `relro`).
    Segment { phdr: usize, relro: bool },
    /// Between two PT_LOADs: the loader mapped the whole span from the file.
    Hole,
}

impl Layout {
    /// The layout of `img` for the object whose lowest line is `first`: the base is what
    /// puts the PT_LOAD whose file pages start at `first.offset` at `first.start`. `None`
    /// when no PT_LOAD starts there (another version of the file).
    pub fn new(img: Arc<ElfImage>, first: &MapsLine) -> Option<Layout> {
        let loads: Vec<(usize, &crate::elf::Phdr)> = img
            .phdrs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.p_type == PT_LOAD)
            .collect();
        let (_, anchor) = loads
            .iter()
            .find(|(_, p)| page_start(p.p_offset) == first.offset)?;
        let base = first.start.checked_sub(page_start(anchor.p_vaddr))?;
        if img.e_type() == goblin::elf::header::ET_EXEC && base != 0 {
            return None;
        }
        let mut segs = Vec::new();
        for (phdr, p) in &loads {
            let start = base.checked_add(page_start(p.p_vaddr))?;
            let file_end = base.checked_add(page_align(p.p_vaddr.checked_add(p.p_filesz)?)?)?;
            let mem_end = base.checked_add(page_align(p.p_vaddr.checked_add(p.p_memsz)?)?)?;
            segs.push(Seg {
                phdr: *phdr,
                start,
                file_end,
                mem_end,
                offset: page_start(p.p_offset),
                p_vaddr: p.p_vaddr,
                p_filesz: p.p_filesz,
                p_memsz: p.p_memsz,
                p_flags: p.p_flags,
            });
        }
        let relro = img
            .phdrs
            .iter()
            .find(|p| p.p_type == goblin::elf::program_header::PT_GNU_RELRO)
            .and_then(|p| {
                let s = page_start(base.checked_add(p.p_vaddr)?);
                let e = page_start(base.checked_add(p.p_vaddr)?.checked_add(p.p_memsz)?);
                (e > s).then_some((s, e))
            });
        let sections = sections::sections(&img).unwrap_or_default();
        Some(Layout {
            image: img,
            base,
            segs,
            relro,
            sections,
        })
    }

    /// The lowest and highest address of the object's span.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segs.iter().map(|s| s.start).min().unwrap_or(self.base);
        let hi = self
            .segs
            .iter()
            .map(|s| s.mem_end.max(s.file_end))
            .max()
            .unwrap_or(self.base);
        (lo, hi)
    }

    /// The pieces of a file line, or why the line cannot be this file's: each piece's
    /// range and what it is. A line's offset must be the file offset the headers put at
    /// each of its addresses (in a hole: the first segment's, continued, as the loaders map
    /// the whole span from it: `elf/dl-map-segments.h: _dl_map_segments()`, musl
    /// `map_library()`).
    pub fn pieces(&self, l: &MapsLine) -> Result<Vec<(u64, u64, Piece)>, String> {
        let mut out: Vec<(u64, u64, Piece)> = Vec::new();
        let first = self.segs.first().ok_or("the file has no PT_LOAD")?;
        let mut a = l.start;
        let off_at = |a: u64| l.offset.wrapping_add(a - l.start);
        while a < l.end {
            if let Some(s) = self.segs.iter().find(|s| s.start <= a && a < s.file_end) {
                let want = s.offset.wrapping_add(a - s.start);
                if off_at(a) != want {
                    return Err(format!(
                        "at {a:#x} the line maps file offset {:#x}, but the file's PT_LOAD #{} puts offset {want:#x} there",
                        off_at(a),
                        s.phdr
                    ));
                }
                let mut end = l.end.min(s.file_end);
                let relro = self.relro.is_some_and(|(rs, re)| rs <= a && a < re);
                // A RELRO boundary inside the piece splits it.
                if let Some((rs, re)) = self.relro {
                    if relro {
                        end = end.min(re);
                    } else if a < rs && rs < end {
                        end = rs;
                    }
                }
                out.push((
                    a,
                    end,
                    Piece::Segment {
                        phdr: s.phdr,
                        relro,
                    },
                ));
                a = end;
                continue;
            }
            let (lo, hi) = self.span();
            let next = self.segs.iter().map(|s| s.start).filter(|&st| st > a).min();
            let in_hole = lo <= a && a < hi && next.is_some();
            if !in_hole {
                return Err(format!(
                    "at {a:#x} the line lies outside the file pages of every PT_LOAD of the file (loaded at {:#x})",
                    self.base
                ));
            }
            let want = first.offset.wrapping_add(a.wrapping_sub(first.start));
            if off_at(a) != want {
                return Err(format!(
                    "at {a:#x}, between two PT_LOADs, the line maps file offset {:#x}, not {want:#x}",
                    off_at(a)
                ));
            }
            let end = l.end.min(next.unwrap_or(l.end));
            out.push((a, end, Piece::Hole));
            a = end;
        }
        Ok(out)
    }

    /// The segment whose `.bss` pages (past its file pages) hold `a`.
    pub fn bss_at(&self, a: u64) -> Option<&Seg> {
        self.segs.iter().find(|s| s.file_end <= a && a < s.mem_end)
    }

    /// The allocated sections (names) overlapping `[start, end)`, as `explain` lists them.
    pub fn sections_in(&self, start: u64, end: u64) -> Vec<String> {
        self.sections
            .iter()
            .filter(|s| s.is_alloc() && s.sh_size > 0)
            .filter(|s| {
                let ss = self.base.wrapping_add(s.sh_addr);
                let se = ss.wrapping_add(s.sh_size);
                ss < end && start < se.max(ss + 1)
            })
            .map(|s| s.name.clone())
            .collect()
    }

    /// PT_LOAD `phdr` in words.
    pub fn describe(&self, phdr: usize) -> String {
        match self.segs.iter().find(|s| s.phdr == phdr) {
            Some(s) => format!(
                "PT_LOAD #{phdr} (p_vaddr {:#x}, p_filesz {:#x}, p_memsz {:#x}, flags {})",
                s.p_vaddr,
                s.p_filesz,
                s.p_memsz,
                super::super::pflags(s.p_flags)
            ),
            None => format!("PT_LOAD #{phdr}"),
        }
    }
}

/// Where the file named `name` is looked at: the name itself, or under `root`.
pub fn host_path(root: Option<&Path>, name: &str) -> PathBuf {
    let raw = PathBuf::from(crate::maps::unescape_name(name));
    match root {
        Some(r) => r.join(raw.strip_prefix("/").unwrap_or(&raw)),
        None => raw,
    }
}

/// Open the file of an object and check it against its lines (`lines` in address order,
/// file lines only). Returns the check and, when the lines agree, the layout.
pub fn check(root: Option<&Path>, name: &str, lines: &[&MapsLine]) -> (FileCheck, Option<Layout>) {
    let path = host_path(root, name);
    let mut fc = FileCheck {
        path: path.clone(),
        status: FileStatus::NotFound,
        same_inode: None,
        note: String::new(),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            fc.note = "not a regular file here".into();
            return (fc, None);
        }
        Err(e) => {
            fc.note = format!("not here ({e})");
            return (fc, None);
        }
    };
    use std::os::unix::fs::MetadataExt;
    if let Some(l) = lines.first() {
        fc.same_inode = Some(meta.ino() == l.inode);
    }
    let img = match ElfImage::open(&path) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            fc.status = FileStatus::NotElf;
            fc.note = format!("not an ELF file elfmap reads: {e}");
            return (fc, None);
        }
    };
    let Some(first) = lines.first() else {
        return (fc, None);
    };
    let Some(layout) = Layout::new(img, first) else {
        fc.status = FileStatus::OtherVersion;
        fc.note = format!(
            "another version of the file: no PT_LOAD of it starts at file offset {:#x}, where its first line starts",
            first.offset
        );
        return (fc, None);
    };
    for l in lines {
        if let Err(why) = layout.pieces(l) {
            fc.status = FileStatus::OtherVersion;
            fc.note = format!("another version of the file: {why}");
            return (fc, None);
        }
    }
    fc.status = FileStatus::Consistent;
    fc.note = format!(
        "{}its program headers give these lines (base {:#x}){}",
        match fc.same_inode {
            Some(true) => "the same file (same inode); ",
            Some(false) => "a file of the same name (another inode); ",
            None => "",
        },
        layout.base,
        if layout.sections.is_empty() {
            "; no section headers"
        } else {
            ""
        }
    );
    (fc, Some(layout))
}
