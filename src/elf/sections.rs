//! Section headers and symbol tables, for explaining a layout (never for planning one: the
//! kernel and the loaders look at program headers only). Read on demand, bounded by the
//! file's length: a damaged table gives an error or fewer entries, never a panic.

use goblin::container::Ctx;
use goblin::elf::section_header::{SectionHeader, SHF_ALLOC, SHT_DYNSYM, SHT_NOBITS, SHT_SYMTAB};
use goblin::elf::sym::Sym;

use super::ElfImage;
use crate::error::{Error, Result};

/// One section header, with its name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    /// Its index in the section header table.
    pub index: usize,
    pub name: String,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u32,
    pub sh_entsize: u64,
}

impl Section {
    /// SHF_ALLOC: the section is part of the memory image.
    pub fn is_alloc(&self) -> bool {
        self.sh_flags & u64::from(SHF_ALLOC) != 0
    }

    /// SHT_NOBITS (`.bss`, `.tbss`): no bytes in the file.
    pub fn is_nobits(&self) -> bool {
        self.sh_type == SHT_NOBITS
    }

    /// TLS template (`.tdata`, `.tbss`): its addresses are a template, not where the
    /// threads' copies live.
    pub fn is_tls(&self) -> bool {
        self.sh_flags & u64::from(goblin::elf::section_header::SHF_TLS) != 0
    }
}

/// How many section headers are read at most (hostile counts).
const MAX_SECTIONS: u64 = 1 << 16;

/// The section headers of `img`, with their names (`e_shstrndx`); empty without any.
pub fn sections(img: &ElfImage) -> Result<Vec<Section>> {
    let h = &img.header;
    let ctx: Ctx = img.ctx;
    let entsize = SectionHeader::size(ctx) as u64;
    let count = u64::from(h.e_shnum);
    if h.e_shoff == 0 || count == 0 || u64::from(h.e_shentsize) != entsize {
        return Ok(Vec::new());
    }
    let bad = |what: &str| Error::bad_elf(&img.path, what.to_string());
    if count > MAX_SECTIONS {
        return Err(bad("too many section headers"));
    }
    let bytes = img
        .read(h.e_shoff, count * entsize)
        .ok_or_else(|| bad("the section headers lie past the end of the file"))?;
    let is64 = img.is_64();
    let mut out: Vec<(u32, Section)> = bytes
        .chunks_exact(entsize as usize)
        .enumerate()
        .map(|(index, e)| {
            let u32_at = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
            let word = |o: usize| {
                if is64 {
                    u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32
                } else {
                    u64::from(u32_at(o))
                }
            };
            // Elf64_Shdr / Elf32_Shdr: name, type, then flags, addr, offset, size (words),
            // link, info (u32), addralign, entsize (words).
            let w = if is64 { 8 } else { 4 };
            let sh_name = u32_at(0);
            let section = Section {
                index,
                name: String::new(),
                sh_type: u32_at(4),
                sh_flags: word(8),
                sh_addr: word(8 + w),
                sh_offset: word(8 + 2 * w),
                sh_size: word(8 + 3 * w),
                sh_link: u32_at(8 + 4 * w),
                sh_entsize: word(8 + 4 * w + 8 + w),
            };
            (sh_name, section)
        })
        .collect();
    let names = out
        .get(usize::from(h.e_shstrndx))
        .and_then(|(_, s)| img.read_upto(s.sh_offset, s.sh_size))
        .map(|b| b.into_owned())
        .unwrap_or_default();
    for (sh_name, s) in &mut out {
        s.name = cstr(&names, u64::from(*sh_name));
    }
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

/// The NUL-terminated string at `off` of a string table ("" outside it).
fn cstr(table: &[u8], off: u64) -> String {
    let Some(tail) = usize::try_from(off).ok().and_then(|o| table.get(o..)) else {
        return String::new();
    };
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

/// Which symbol table a list of symbols comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolTable {
    /// `.symtab`: every symbol the linker kept (absent from stripped files).
    Symtab,
    /// `.dynsym`: the dynamic symbols only.
    Dynsym,
}

/// One symbol.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Symbol {
    pub name: String,
    pub st_value: u64,
    pub st_size: u64,
    /// `STT_*` and `STB_*`.
    pub st_type: u8,
    pub st_bind: u8,
    /// The visibility (`STV_*`, low two bits).
    pub st_other: u8,
    pub st_shndx: usize,
}

/// How many symbols are read at most from one table.
const MAX_SYMBOLS: u64 = 1 << 22;

/// The symbols of `img`: `.symtab` when the file has one, else `.dynsym` (and which it
/// was); `None` without either.
pub fn symbols(img: &ElfImage, sections: &[Section]) -> Result<Option<(SymbolTable, Vec<Symbol>)>> {
    for which in [SymbolTable::Symtab, SymbolTable::Dynsym] {
        if let Some(syms) = table(img, sections, which)? {
            return Ok(Some((which, syms)));
        }
    }
    Ok(None)
}

/// The symbols of one table of `img`; `None` if it has no such table.
pub fn table(
    img: &ElfImage,
    sections: &[Section],
    which: SymbolTable,
) -> Result<Option<Vec<Symbol>>> {
    let sh_type = match which {
        SymbolTable::Symtab => SHT_SYMTAB,
        SymbolTable::Dynsym => SHT_DYNSYM,
    };
    let Some(s) = sections.iter().find(|s| s.sh_type == sh_type) else {
        return Ok(None);
    };
    let bad = |what: &str| Error::bad_elf(&img.path, what.to_string());
    let entsize = Sym::size(img.ctx.container) as u64;
    let count = s.sh_size / entsize;
    if count > MAX_SYMBOLS {
        return Err(bad("too many symbols"));
    }
    let bytes = img
        .read(s.sh_offset, count * entsize)
        .ok_or_else(|| bad("the symbol table lies past the end of the file"))?;
    let names = sections
        .get(s.sh_link as usize)
        .and_then(|t| img.read_upto(t.sh_offset, t.sh_size))
        .map(|b| b.into_owned())
        .unwrap_or_default();
    let syms = Sym::parse(&bytes, 0, count as usize, img.ctx)
        .map_err(|e| bad(&format!("bad symbol table: {e}")))?;
    Ok(Some(
        syms.iter()
            .map(|y| Symbol {
                name: cstr(&names, y.st_name as u64),
                st_value: y.st_value,
                st_size: y.st_size,
                st_type: y.st_type(),
                st_bind: y.st_bind(),
                st_other: y.st_other,
                st_shndx: y.st_shndx,
            })
            .collect(),
    ))
}

/// The version of each `.dynsym` entry, from `.gnu.version` and `.gnu.version_d`: its
/// name, and whether it is hidden (`name@VERSION`, an old version kept for programs linked
/// against it) rather than the default (`name@@VERSION`, what a new link binds to). `None`
/// for an unversioned or undefined entry; empty without the tables.
pub fn dynsym_versions(img: &ElfImage, sections: &[Section]) -> Vec<Option<(String, bool)>> {
    use goblin::elf::section_header::{SHT_GNU_VERDEF, SHT_GNU_VERSYM};
    let (Some(versym), Some(verdef)) = (
        sections.iter().find(|s| s.sh_type == SHT_GNU_VERSYM),
        sections.iter().find(|s| s.sh_type == SHT_GNU_VERDEF),
    ) else {
        return Vec::new();
    };
    let (Some(sym), Some(def)) = (
        img.read_upto(versym.sh_offset, versym.sh_size.min(2 * MAX_SYMBOLS)),
        img.read_upto(verdef.sh_offset, verdef.sh_size.min(1 << 20)),
    ) else {
        return Vec::new();
    };
    let names = sections
        .get(verdef.sh_link as usize)
        .and_then(|t| img.read_upto(t.sh_offset, t.sh_size))
        .map(|b| b.into_owned())
        .unwrap_or_default();
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map(|x| u16::from_le_bytes([x[0], x[1]]));
    let u32_at = |b: &[u8], o: usize| {
        b.get(o..o + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
    };
    // Elf*_Verdef: vd_version u16, vd_flags u16, vd_ndx u16, vd_cnt u16, vd_hash u32,
    // vd_aux u32, vd_next u32; Elf*_Verdaux: vda_name u32, vda_next u32 (both classes).
    let mut by_index: Vec<(u16, String)> = Vec::new();
    let mut at = 0usize;
    for _ in 0..1 << 16 {
        let (Some(ndx), Some(aux), Some(next)) = (
            u16_at(&def, at + 4),
            u32_at(&def, at + 12),
            u32_at(&def, at + 16),
        ) else {
            break;
        };
        if let Some(name) = u32_at(&def, at + aux as usize) {
            by_index.push((ndx & 0x7fff, cstr(&names, u64::from(name))));
        }
        if next == 0 {
            break;
        }
        at += next as usize;
    }
    sym.chunks_exact(2)
        .map(|v| {
            let v = u16::from_le_bytes([v[0], v[1]]);
            let ndx = v & 0x7fff;
            if ndx < 2 {
                return None;
            }
            by_index
                .iter()
                .find(|(i, _)| *i == ndx)
                .map(|(_, n)| (n.clone(), v & 0x8000 != 0))
        })
        .collect()
}

/// The bytes of an allocated section with file contents (`None` for SHT_NOBITS or past
/// the end of the file).
pub fn contents<'a>(img: &'a ElfImage, s: &Section) -> Option<std::borrow::Cow<'a, [u8]>> {
    if s.is_nobits() || s.sh_type == goblin::elf::section_header::SHT_NULL {
        return None;
    }
    img.read(s.sh_offset, s.sh_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The section and symbol tables of libc, as readelf lists them.
    #[test]
    fn elf_sections_and_symbols_of_libc() {
        let Ok(img) = ElfImage::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")) else {
            return;
        };
        let secs = sections(&img).unwrap();
        let text = secs.iter().find(|s| s.name == ".text").expect(".text");
        assert!(text.is_alloc() && !text.is_nobits());
        assert!(secs.iter().any(|s| s.name == ".bss" && s.is_nobits()));
        let (which, syms) = symbols(&img, &secs).unwrap().unwrap();
        assert_eq!(which, SymbolTable::Dynsym, "Debian's libc is stripped");
        let printf = syms.iter().find(|y| y.name == "printf").expect("printf");
        assert!(printf.st_value >= text.sh_addr && printf.st_value < text.sh_addr + text.sh_size);
    }
}
