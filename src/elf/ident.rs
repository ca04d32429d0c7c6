//! The ELF header as raw fields, read from a file's first bytes without judging them. The
//! kernel and each loader check these fields themselves, each in its own order and with
//! its own verdicts (refuse, skip, fail), so the reading here accepts anything that is
//! long enough and leaves every decision to them.

use goblin::elf::header::{ELFCLASS32, ELFCLASS64, SIZEOF_IDENT};

/// ELF class (`e_ident[EI_CLASS]`): the size of addresses and of the header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

impl ElfClass {
    /// Bytes in one word (`Elf32_Addr` / `Elf64_Addr`).
    pub fn word_size(self) -> usize {
        match self {
            ElfClass::Elf32 => 4,
            ElfClass::Elf64 => 8,
        }
    }

    /// `sizeof (ElfW(Ehdr))`.
    pub fn ehdr_size(self) -> usize {
        match self {
            ElfClass::Elf32 => 52,
            ElfClass::Elf64 => 64,
        }
    }

    /// `sizeof (ElfW(Phdr))`.
    pub fn phdr_size(self) -> u16 {
        match self {
            ElfClass::Elf32 => 32,
            ElfClass::Elf64 => 56,
        }
    }

    /// `e_ident[EI_CLASS]`'s value for this class.
    pub fn ei_class(self) -> u8 {
        match self {
            ElfClass::Elf32 => ELFCLASS32,
            ElfClass::Elf64 => ELFCLASS64,
        }
    }

    /// From a file's first bytes (magic and `e_ident[EI_CLASS]`).
    pub fn from_ident(ident: &[u8]) -> Result<ElfClass, String> {
        if ident.len() < 5 || &ident[..4] != b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        match ident[4] {
            ELFCLASS32 => Ok(ElfClass::Elf32),
            ELFCLASS64 => Ok(ElfClass::Elf64),
            c => Err(format!("unknown ELF class {c}")),
        }
    }
}

/// The fields of an ELF header (little-endian), laid out as for `class`, whatever
/// `e_ident` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEhdr {
    pub ident: [u8; SIZEOF_IDENT],
    pub e_type: u16,
    pub e_machine: u16,
    pub e_version: u32,
    pub e_entry: u64,
    pub e_phoff: u64,
    pub e_flags: u32,
    pub e_ehsize: u16,
    pub e_phentsize: u16,
    pub e_phnum: u16,
}

/// Indices of `e_ident` (`EI_*`).
pub const EI_CLASS: usize = 4;
pub const EI_DATA: usize = 5;
pub const EI_VERSION: usize = 6;
pub const EI_OSABI: usize = 7;
pub const EI_ABIVERSION: usize = 8;
pub const EI_PAD: usize = 9;

impl RawEhdr {
    /// The header in `b` read with `class`'s layout; `None` if `b` is shorter than that
    /// class's header.
    pub fn read(b: &[u8], class: ElfClass) -> Option<RawEhdr> {
        if b.len() < class.ehdr_size() {
            return None;
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
        let ident = b[..SIZEOF_IDENT].try_into().ok()?;
        Some(match class {
            ElfClass::Elf64 => RawEhdr {
                ident,
                e_type: u16_at(16),
                e_machine: u16_at(18),
                e_version: u32_at(20),
                e_entry: u64_at(24),
                e_phoff: u64_at(32),
                e_flags: u32_at(48),
                e_ehsize: u16_at(52),
                e_phentsize: u16_at(54),
                e_phnum: u16_at(56),
            },
            ElfClass::Elf32 => RawEhdr {
                ident,
                e_type: u16_at(16),
                e_machine: u16_at(18),
                e_version: u32_at(20),
                e_entry: u64::from(u32_at(24)),
                e_phoff: u64::from(u32_at(28)),
                e_flags: u32_at(36),
                e_ehsize: u16_at(40),
                e_phentsize: u16_at(42),
                e_phnum: u16_at(44),
            },
        })
    }

    /// The magic `\x7fELF` is there.
    pub fn has_magic(&self) -> bool {
        &self.ident[..4] == b"\x7fELF"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_class_and_raw_header() {
        assert_eq!(
            ElfClass::from_ident(b"\x7fELF\x01").unwrap(),
            ElfClass::Elf32
        );
        assert_eq!(
            ElfClass::from_ident(b"\x7fELF\x02\x01").unwrap(),
            ElfClass::Elf64
        );
        assert!(ElfClass::from_ident(b"#!/bin/sh").is_err());
        assert!(ElfClass::from_ident(b"\x7fELF\x03").is_err());
        let Ok(b) = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        let h = RawEhdr::read(&b, ElfClass::Elf64).unwrap();
        let g = goblin::elf::Elf::parse_header(&b).unwrap();
        assert!(h.has_magic());
        assert_eq!(
            (
                h.e_type,
                h.e_machine,
                h.e_phoff,
                h.e_phnum,
                h.e_phentsize,
                h.e_entry
            ),
            (
                g.e_type,
                g.e_machine,
                g.e_phoff,
                g.e_phnum,
                g.e_phentsize,
                g.e_entry
            )
        );
        assert!(RawEhdr::read(&b[..63], ElfClass::Elf64).is_none());
    }
}
