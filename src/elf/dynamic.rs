//! The dynamic section: DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_FLAGS, DT_FLAGS_1 and
//! the few other tags the loaded stage needs (loaded stage).
//!
//! Read by hand with one read of the section: PT_DYNAMIC gives the entries (`p_offset`,
//! `p_filesz`), DT_STRTAB's address is turned into a file offset through the PT_LOADs, and every
//! string is read on its own (a string table can be megabytes), with its bounds checked. Hostile input (offsets past the end of the file,
//! strings without a NUL, no DT_NULL) gives `Error::BadElf`, never a panic or a large
//! allocation: the number of entries is bounded by `p_filesz`, which was checked against the
//! file length first.

use goblin::elf::dynamic::{
    DF_1_NOW, DF_BIND_NOW, DF_TEXTREL, DT_BIND_NOW, DT_DEBUG, DT_FLAGS, DT_FLAGS_1, DT_GNU_HASH,
    DT_HASH, DT_JMPREL, DT_NEEDED, DT_NULL, DT_PLTREL, DT_PLTRELSZ, DT_REL, DT_RELA, DT_RELACOUNT,
    DT_RELASZ, DT_RELCOUNT, DT_RELSZ, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB,
    DT_SYMTAB, DT_TEXTREL, DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM,
};

use super::{ElfImage, PT_DYNAMIC};
use crate::error::{Error, Result};
use std::sync::Arc;

/// `DT_AUXILIARY` (Sun extension, glibc `DT_EXTRATAGIDX`): auxiliary filter object.
pub const DT_AUXILIARY: u64 = 0x7fff_fffd;
/// `DT_FILTER`: standard filter object.
pub const DT_FILTER: u64 = 0x7fff_ffff;

/// What the loaded stage needs from an object's dynamic section.
///
/// Tags that may appear more than once keep the *last* value, as glibc's
/// `elf/get-dynamic-info.h: elf_get_dynamic_info()` does (it overwrites `l_info[tag]`);
/// DT_NEEDED, DT_AUXILIARY and DT_FILTER keep all values in dynamic-section order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DynamicInfo {
    /// DT_NEEDED strings, in dynamic-section order (the order `_dl_map_object_deps` uses).
    pub needed: Vec<String>,
    /// DT_RPATH (colon-separated, DSTs not expanded).
    pub rpath: Option<String>,
    /// DT_RUNPATH (colon-separated, DSTs not expanded).
    pub runpath: Option<String>,
    /// DT_SONAME.
    pub soname: Option<String>,
    /// DT_AUXILIARY strings (not modelled by the resolver; reported as a warning).
    pub auxiliary: Vec<String>,
    /// DT_FILTER strings (not modelled by the resolver; reported as a warning).
    pub filter: Vec<String>,
    /// DT_FLAGS (`DF_*`), 0 if absent.
    pub flags: u64,
    /// DT_FLAGS_1 (`DF_1_*`), 0 if absent.
    pub flags_1: u64,
    /// DT_TEXTREL present or DF_TEXTREL set.
    pub textrel: bool,
    /// A DT_TEXTREL entry itself (before DT_NULL), whatever DT_FLAGS says.
    #[serde(skip)]
    pub dt_textrel: bool,
    /// DT_BIND_NOW present, DF_BIND_NOW or DF_1_NOW set.
    pub bind_now: bool,
    /// DT_DEBUG present (the `r_debug` slot a debugger reads).
    pub has_debug: bool,
    /// glibc's `l_ldnum`: `p_memsz / sizeof(ElfW(Dyn))` of PT_DYNAMIC (what
    /// `_dl_map_object_deps` sizes its scratch array with), not the number of used entries.
    pub n_entries: usize,
    /// Entries up to and including the DT_NULL terminator.
    pub n_used: usize,
    /// `p_vaddr` of PT_DYNAMIC.
    pub dyn_vaddr: u64,
    /// DT_STRTAB (a virtual address), 0 if absent.
    pub strtab: u64,
    /// DT_STRSZ, 0 if absent.
    pub strsz: u64,
    /// DT_VERDEF (virtual address) and DT_VERDEFNUM.
    pub verdef: Option<u64>,
    pub verdefnum: u64,
    /// DT_VERNEED (virtual address) and DT_VERNEEDNUM.
    pub verneed: Option<u64>,
    pub verneednum: u64,
    /// The symbol, hash and relocation tables (for the unique-symbol model).
    #[serde(skip)]
    pub tables: TableTags,
}

/// The dynamic tags locating an object's symbol, hash and relocation tables (virtual
/// addresses and sizes; last value wins, as for the other tags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableTags {
    pub symtab: Option<u64>,
    pub hash: Option<u64>,
    pub gnu_hash: Option<u64>,
    pub rela: Option<u64>,
    pub relasz: Option<u64>,
    pub rel: Option<u64>,
    pub relsz: Option<u64>,
    pub pltrel: Option<u64>,
    pub jmprel: Option<u64>,
    pub pltrelsz: Option<u64>,
    pub relacount: Option<u64>,
    pub relcount: Option<u64>,
}

/// The file offset of virtual address `vaddr`, if a PT_LOAD maps it from the file
/// (`p_vaddr <= vaddr < p_vaddr + p_filesz`).
pub fn vaddr_to_offset(img: &ElfImage, vaddr: u64) -> Option<u64> {
    img.loads().find_map(|p| {
        let off = vaddr.checked_sub(p.p_vaddr)?;
        (off < p.p_filesz)
            .then(|| p.p_offset.checked_add(off))
            .flatten()
    })
}

/// Read the dynamic section of `img`.
///
/// `Ok(None)` when there is no PT_DYNAMIC, or its `p_filesz` is 0 (separate debug-info files;
/// glibc's `_dl_map_object_from_fd()` then says "object file has no dynamic section").
pub fn read_dynamic(img: &ElfImage) -> Result<Option<Arc<DynamicInfo>>> {
    let path = &img.path;
    let bad = |reason: String| Error::bad_elf(path, reason);
    let Some(ph) = img.phdr(PT_DYNAMIC) else {
        return Ok(None);
    };
    if ph.p_filesz == 0 {
        return Ok(None);
    }
    let bytes = img.read(ph.p_offset, ph.p_filesz).ok_or_else(|| {
        bad(format!(
            "PT_DYNAMIC [{:#x}, +{:#x}) lies past the end of the file ({} bytes)",
            ph.p_offset,
            ph.p_filesz,
            img.len()
        ))
    })?;
    let is_64 = img.is_64();
    let entsize: usize = if is_64 { 16 } else { 8 };

    let mut info = DynamicInfo {
        n_entries: usize::try_from(ph.p_memsz / entsize as u64).unwrap_or(usize::MAX),
        dyn_vaddr: ph.p_vaddr,
        ..DynamicInfo::default()
    };
    // String-valued entries are resolved after the walk, once DT_STRTAB/DT_STRSZ are known
    // (they may come after DT_NEEDED). Kept as (tag, offset) in a small vector: bounded by
    // the entry count, itself bounded by p_filesz.
    let mut strings: Vec<(u64, u64)> = Vec::new();
    let mut terminated = false;
    for (i, e) in bytes.chunks_exact(entsize).enumerate() {
        let (tag, val) = if is_64 {
            (
                u64::from_le_bytes(e[0..8].try_into().unwrap()),
                u64::from_le_bytes(e[8..16].try_into().unwrap()),
            )
        } else {
            (
                u64::from(u32::from_le_bytes(e[0..4].try_into().unwrap())),
                u64::from(u32::from_le_bytes(e[4..8].try_into().unwrap())),
            )
        };
        match tag {
            DT_NULL => {
                info.n_used = i + 1;
                terminated = true;
                break;
            }
            DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME | DT_AUXILIARY | DT_FILTER => {
                strings.push((tag, val))
            }
            DT_STRTAB => info.strtab = val,
            DT_STRSZ => info.strsz = val,
            DT_FLAGS => info.flags = val,
            DT_FLAGS_1 => info.flags_1 = val,
            DT_TEXTREL => {
                info.textrel = true;
                info.dt_textrel = true;
            }
            DT_BIND_NOW => info.bind_now = true,
            DT_DEBUG => info.has_debug = true,
            DT_VERDEF => info.verdef = Some(val),
            DT_VERDEFNUM => info.verdefnum = val,
            DT_VERNEED => info.verneed = Some(val),
            DT_VERNEEDNUM => info.verneednum = val,
            DT_SYMTAB => info.tables.symtab = Some(val),
            DT_HASH => info.tables.hash = Some(val),
            DT_GNU_HASH => info.tables.gnu_hash = Some(val),
            DT_RELA => info.tables.rela = Some(val),
            DT_RELASZ => info.tables.relasz = Some(val),
            DT_REL => info.tables.rel = Some(val),
            DT_RELSZ => info.tables.relsz = Some(val),
            DT_PLTREL => info.tables.pltrel = Some(val),
            DT_JMPREL => info.tables.jmprel = Some(val),
            DT_PLTRELSZ => info.tables.pltrelsz = Some(val),
            DT_RELACOUNT => info.tables.relacount = Some(val),
            DT_RELCOUNT => info.tables.relcount = Some(val),
            _ => {}
        }
    }
    if !terminated {
        return Err(bad(format!(
            "PT_DYNAMIC ({} bytes at {:#x}) has no DT_NULL terminator",
            ph.p_filesz, ph.p_offset
        )));
    }
    info.textrel |= info.flags & DF_TEXTREL != 0;
    info.bind_now |= info.flags & DF_BIND_NOW != 0 || info.flags_1 & DF_1_NOW != 0;

    if strings.is_empty() {
        return Ok(Some(Arc::new(info)));
    }
    let mut strtab = StrTab::new(img, &info)?;
    strtab.prefetch(strings.iter().map(|&(_, off)| off));
    for (tag, off) in strings {
        let s = strtab.get(off, tag)?;
        match tag {
            DT_NEEDED => info.needed.push(s),
            DT_RPATH => info.rpath = Some(s),
            DT_RUNPATH => info.runpath = Some(s),
            DT_SONAME => info.soname = Some(s),
            DT_AUXILIARY => info.auxiliary.push(s),
            _ => info.filter.push(s),
        }
    }
    Ok(Some(Arc::new(info)))
}

/// The string table as a range of the file.
struct StrTab<'a> {
    img: &'a ElfImage,
    /// DT_STRTAB's file offset.
    start: u64,
    /// Bytes from there to the end of the table: DT_STRSZ if it fits in the file, else to
    /// the end of the file.
    len: u64,
    /// Bytes of the table read ahead: (offset in the table, bytes).
    ahead: Option<(u64, Vec<u8>)>,
}

impl<'a> StrTab<'a> {
    fn new(img: &'a ElfImage, info: &DynamicInfo) -> Result<StrTab<'a>> {
        let path = &img.path;
        if info.strtab == 0 {
            return Err(Error::bad_elf(
                path,
                "dynamic section has string entries but no DT_STRTAB",
            ));
        }
        let off = vaddr_to_offset(img, info.strtab).ok_or_else(|| {
            Error::bad_elf(
                path,
                format!(
                    "DT_STRTAB {:#x} is not inside the file part of any PT_LOAD",
                    info.strtab
                ),
            )
        })?;
        let Some(rest) = img.len().checked_sub(off) else {
            return Err(Error::bad_elf(
                path,
                format!("DT_STRTAB file offset {off:#x} is past the end of the file"),
            ));
        };
        let len = if info.strsz > 0 && info.strsz <= rest {
            info.strsz
        } else {
            rest
        };
        Ok(StrTab {
            img,
            start: off,
            len,
            ahead: None,
        })
    }

    /// Read the part of the table holding the strings at `offsets` at once, if they are
    /// close together (the usual case: a few names in a table of up to megabytes).
    fn prefetch(&mut self, offsets: impl Iterator<Item = u64>) {
        const MAX_SPAN: u64 = 16 * 1024;
        const TAIL: u64 = 256;
        let (lo, hi) = offsets.fold((u64::MAX, 0), |(lo, hi), o| (lo.min(o), hi.max(o)));
        if lo >= self.len || hi - lo > MAX_SPAN {
            return;
        }
        let end = hi.saturating_add(TAIL).min(self.len);
        if let Some(b) = self.img.read(self.start + lo, end - lo) {
            self.ahead = Some((lo, b.into_owned()));
        }
    }

    fn get(&self, off: u64, tag: u64) -> Result<String> {
        let path = &self.img.path;
        let name = tag_name(tag);
        let outside = || {
            Error::bad_elf(
                path,
                format!("{name} string offset {off:#x} is outside the string table"),
            )
        };
        if off >= self.len {
            return Err(outside());
        }
        let early = self.ahead.as_ref().and_then(|(lo, b)| {
            let tail = b.get(usize::try_from(off.checked_sub(*lo)?).ok()?..)?;
            let n = tail.iter().position(|&c| c == 0)?;
            Some(tail[..n].to_vec())
        });
        let bytes = match early {
            Some(b) => b,
            None => self
                .img
                .cstr_at(self.start + off, self.len - off)
                .map_err(|no_nul| {
                    if no_nul {
                        Error::bad_elf(
                            path,
                            format!("{name} string at offset {off:#x} has no terminating NUL"),
                        )
                    } else {
                        outside()
                    }
                })?,
        };
        String::from_utf8(bytes).map_err(|_| {
            Error::bad_elf(
                path,
                format!("{name} string at offset {off:#x} is not UTF-8"),
            )
        })
    }
}

fn tag_name(tag: u64) -> &'static str {
    match tag {
        DT_NEEDED => "DT_NEEDED",
        DT_RPATH => "DT_RPATH",
        DT_RUNPATH => "DT_RUNPATH",
        DT_SONAME => "DT_SONAME",
        DT_AUXILIARY => "DT_AUXILIARY",
        _ => "DT_FILTER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn open(p: &str) -> Option<ElfImage> {
        ElfImage::open(Path::new(p)).ok()
    }

    #[test]
    fn deps_dynamic_of_ls() {
        let Some(img) = open("/usr/bin/ls") else {
            eprintln!("skipped: no /usr/bin/ls");
            return;
        };
        let d = read_dynamic(&img).unwrap().unwrap();
        assert!(d.needed.iter().any(|n| n == "libc.so.6"), "{:?}", d.needed);
        assert!(d.n_used <= d.n_entries && d.n_used > d.needed.len());
        assert!(d.strtab != 0 && d.strsz != 0);
    }

    #[test]
    fn deps_dynamic_soname_of_libc() {
        let Some(img) = open("/lib/x86_64-linux-gnu/libc.so.6") else {
            eprintln!("skipped: no libc.so.6");
            return;
        };
        let d = read_dynamic(&img).unwrap().unwrap();
        assert_eq!(d.soname.as_deref(), Some("libc.so.6"));
        assert_eq!(d.needed, vec!["ld-linux-x86-64.so.2".to_string()]);
    }

    /// Mutate a real library (goblin's test_oom style) and check that every damaged copy
    /// gives Ok or Err, never a panic, and that the specific damages are reported.
    #[test]
    fn deps_dynamic_hostile_copies() {
        let Some(img) = open("/lib/x86_64-linux-gnu/libc.so.6") else {
            eprintln!("skipped: no libc.so.6");
            return;
        };
        let orig = std::fs::read(&img.path).unwrap();
        let dynph = img.phdr(PT_DYNAMIC).unwrap().clone();
        let dir = std::env::temp_dir().join(format!("elfmap-dyn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        // 1. truncated just inside the dynamic section: PT_DYNAMIC past EOF.
        let cut = (dynph.p_offset + 8) as usize;
        let p = write("trunc.so", &orig[..cut]);
        if let Ok(img) = ElfImage::open(&p) {
            let e = read_dynamic(&img).unwrap_err().to_string();
            assert!(e.contains("past the end"), "{e}");
        }
        // 2. every DT_NEEDED offset pointing far away.
        let mut m = orig.clone();
        let base = dynph.p_offset as usize;
        for k in 0..(dynph.p_filesz as usize / 16) {
            let at = base + 16 * k;
            let tag = u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
            if tag == DT_NEEDED {
                m[at + 8..at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
            }
        }
        let p = write("farneed.so", &m);
        let e = read_dynamic(&ElfImage::open(&p).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the string table"), "{e}");
        // 3. no DT_NULL: overwrite all tags with DT_DEBUG.
        let mut m = orig.clone();
        for k in 0..(dynph.p_filesz as usize / 16) {
            let at = base + 16 * k;
            m[at..at + 8].copy_from_slice(&DT_DEBUG.to_le_bytes());
        }
        let p = write("nonull.so", &m);
        let e = read_dynamic(&ElfImage::open(&p).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("DT_NULL"), "{e}");
        // 4. string table without NUL: file cut in the middle of the string table, with
        //    DT_STRSZ made huge.
        let d = read_dynamic(&img).unwrap().unwrap();
        let stroff = vaddr_to_offset(&img, d.strtab).unwrap() as usize;
        let mut m = orig.clone();
        for k in 0..(dynph.p_filesz as usize / 16) {
            let at = base + 16 * k;
            let tag = u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
            if tag == DT_STRSZ {
                m[at + 8..at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
            }
        }
        for b in &mut m[stroff..] {
            if *b == 0 {
                *b = b'x';
            }
        }
        let p = write("nonul.so", &m);
        if let Ok(img2) = ElfImage::open(&p) {
            let _ = read_dynamic(&img2); // must not panic; strings may or may not be reached
        }
        // 5. random byte flips in the headers and dynamic section never panic.
        let mut seed = 0x1234_5678_9abc_def0u64;
        for i in 0..200 {
            let mut m = orig.clone();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let region = if seed & 1 == 0 {
                    0..4096
                } else {
                    base..base + dynph.p_filesz as usize
                };
                let at = region.start + (seed >> 8) as usize % region.len();
                m[at] = (seed >> 40) as u8;
            }
            let p = write(&format!("flip{}.so", i % 4), &m);
            if let Ok(img) = ElfImage::open(&p) {
                let _ = read_dynamic(&img);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
