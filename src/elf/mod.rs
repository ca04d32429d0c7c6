//! ELF reading: a memory map of the file (memmap2) and goblin's header and program-header
//! parsers. Only what placement needs is read; section and symbol tables never are, so a
//! large file costs one `mmap` and a few pages of reads.

pub mod check;
pub mod dynamic;

use std::fs::File;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use memmap2::Mmap;

use crate::error::{Error, Result};

pub use goblin::elf::program_header::{
    PT_DYNAMIC, PT_GNU_RELRO, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_PHDR, PT_TLS,
};

/// ELF classes and machines we model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Abi {
    /// ELFCLASS64, EM_X86_64: a native x86_64 task.
    X86_64,
    /// ELFCLASS32, EM_386: an i386 task, run as a compat task on an x86_64 kernel.
    I386,
}

impl Abi {
    /// Pointer size in bytes.
    pub fn word(self) -> u64 {
        match self {
            Abi::X86_64 => 8,
            Abi::I386 => 4,
        }
    }
}

/// An ELF file opened for planning: its mapped bytes, header and program headers.
pub struct ElfImage {
    /// The path it was opened at.
    pub path: PathBuf,
    map: Mmap,
    pub header: Header,
    pub phdrs: Vec<ProgramHeader>,
    pub ctx: Ctx,
    /// File metadata (dev, inode, size) of the opened file.
    pub meta: std::fs::Metadata,
}

impl std::fmt::Debug for ElfImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfImage")
            .field("path", &self.path)
            .finish()
    }
}

/// Errors of reading an ELF, before any kernel rule is applied.
fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::bad_elf(path, reason)
}

impl ElfImage {
    /// Open and map `path`, parse the ELF header and the program headers.
    ///
    /// Everything is checked against the file length before it is read, so truncated or
    /// hostile files give an error, never a panic or a huge allocation.
    pub fn open(path: &Path) -> Result<ElfImage> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(bad(path, "is a directory, not an ELF file"));
        }
        if !meta.is_file() {
            return Err(bad(path, "is not a regular file"));
        }
        // SAFETY-free: memmap2's `Mmap::map` is unsafe only because another process could
        // change the file under us; we treat the bytes as untrusted input anyway.
        // The length is known from the fstat above; telling memmap2 saves it a second one.
        let len = usize::try_from(meta.len()).map_err(|_| bad(path, "file too large"))?;
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file) }
            .map_err(|e| Error::io(path, e))?;
        Self::from_map(path, map, meta)
    }

    fn from_map(path: &Path, map: Mmap, meta: std::fs::Metadata) -> Result<ElfImage> {
        let bytes: &[u8] = &map;
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            return Err(bad(path, "not an ELF file (bad magic)"));
        }
        if bytes.len() < header::SIZEOF_IDENT {
            return Err(bad(path, "truncated ELF identification"));
        }
        let class = bytes[header::EI_CLASS];
        let hsize = match class {
            header::ELFCLASS32 => header::header32::SIZEOF_EHDR,
            header::ELFCLASS64 => header::header64::SIZEOF_EHDR,
            c => return Err(bad(path, format!("invalid ELF class {c}"))),
        };
        if bytes[header::EI_DATA] != header::ELFDATA2LSB {
            return Err(bad(path, "not a little-endian ELF file"));
        }
        if bytes.len() < hsize {
            return Err(bad(
                path,
                format!("truncated ELF header ({} of {hsize} bytes)", bytes.len()),
            ));
        }
        let header = goblin::elf::Elf::parse_header(bytes)
            .map_err(|e| bad(path, format!("bad ELF header: {e}")))?;
        let container = if class == header::ELFCLASS64 {
            Container::Big
        } else {
            Container::Little
        };
        let ctx = Ctx::new(container, Endian::Little);
        let phentsize = ProgramHeader::size(ctx) as u64;
        let phnum = header.e_phnum as u64;
        let phoff = header.e_phoff;
        // Only parse what is really there; the kernel's own limits are in check.rs.
        let phdrs = if header.e_phentsize as u64 == phentsize && phnum > 0 {
            let end = phoff
                .checked_add(phnum * phentsize)
                .filter(|&e| e <= bytes.len() as u64)
                .ok_or_else(|| {
                    bad(
                        path,
                        "truncated: the program headers lie past the end of the file",
                    )
                })?;
            let _ = end;
            ProgramHeader::parse(bytes, phoff as usize, phnum as usize, ctx)
                .map_err(|e| bad(path, format!("bad program headers: {e}")))?
        } else {
            Vec::new()
        };
        Ok(ElfImage {
            path: path.to_path_buf(),
            map,
            header,
            phdrs,
            ctx,
            meta,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn is_64(&self) -> bool {
        self.ctx.container == Container::Big
    }

    /// The ABI, if it is one we model.
    pub fn abi(&self) -> Option<Abi> {
        match (self.is_64(), self.header.e_machine) {
            (true, header::EM_X86_64) => Some(Abi::X86_64),
            (false, header::EM_386) => Some(Abi::I386),
            _ => None,
        }
    }

    pub fn e_type(&self) -> u16 {
        self.header.e_type
    }

    pub fn is_dyn(&self) -> bool {
        self.header.e_type == header::ET_DYN
    }

    /// The PT_LOAD program headers, in program-header order.
    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }

    /// The first program header of type `t`.
    pub fn phdr(&self, t: u32) -> Option<&ProgramHeader> {
        self.phdrs.iter().find(|p| p.p_type == t)
    }

    /// Bytes `[off, off+len)` of the file, if they are all there.
    pub fn slice(&self, off: u64, len: u64) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        self.map
            .get(usize::try_from(off).ok()?..usize::try_from(end).ok()?)
    }

    /// The PT_INTERP string (without its NUL), unchecked; see `check::interp_path`.
    pub fn interp_raw(&self) -> Option<&[u8]> {
        let p = self.phdr(PT_INTERP)?;
        self.slice(p.p_offset, p.p_filesz)
    }
}

/// Models `fs/binfmt_elf.c: total_mapping_size()`: from the page start of the first
/// PT_LOAD to the end of the last one's memory image. Saturates on hostile input.
pub fn total_mapping_size(phdrs: &[ProgramHeader]) -> u64 {
    let loads: Vec<_> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let (Some(first), Some(last)) = (loads.first(), loads.last()) else {
        return 0;
    };
    last.p_vaddr
        .saturating_add(last.p_memsz)
        .saturating_sub(crate::addr::page_start(first.p_vaddr))
}

/// Models `fs/binfmt_elf.c: maximum_alignment()`: the largest power-of-two `p_align` of
/// the PT_LOADs, at least `ELF_MIN_ALIGN` (a page); others are ignored.
pub fn maximum_alignment(phdrs: &[ProgramHeader]) -> u64 {
    phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_align.is_power_of_two())
        .map(|p| p.p_align)
        .fold(crate::addr::PAGE_SIZE, u64::max)
}

pub use program_header::ProgramHeader as Phdr;
