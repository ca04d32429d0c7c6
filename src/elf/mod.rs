//! ELF reading: the file's first bytes, goblin's header and program-header parsers, and
//! `pread` of the few further ranges placement needs (the dynamic section, its strings, the
//! version tables). A file costs one `open`, one `fstat` and a few small reads: small ranges
//! are not mapped, since a mapping's fault and `munmap` cost several times more than such a
//! read. Large ranges read densely (the hash and symbol tables of the unique-symbol model)
//! are mapped instead ([`ElfImage::map_upto`]): `pread` copies them slowly into fresh pages.

pub mod dynamic;
pub mod ident;
pub mod sections;
pub mod symbols;
pub mod versions;

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};

use crate::error::{Error, Result};

pub use goblin::elf::program_header::{
    PT_DYNAMIC, PT_GNU_RELRO, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_PHDR, PT_TLS,
};

/// `EM_486` (include/uapi/linux/elf-em.h: "Perhaps disused"), which goblin does not name.
pub const EM_486: u16 = 6;

/// ELF classes and machines we model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Abi {
    /// ELFCLASS64, EM_X86_64: a native x86_64 task.
    X86_64,
    /// ELFCLASS32, EM_386: an i386 task, run as a compat task on an x86_64 kernel.
    I386,
}

impl Abi {
    /// The ELF class of its files.
    pub fn class(self) -> ident::ElfClass {
        match self {
            Abi::X86_64 => ident::ElfClass::Elf64,
            Abi::I386 => ident::ElfClass::Elf32,
        }
    }

    /// `e_machine` of its files.
    pub fn e_machine(self) -> u16 {
        match self {
            Abi::X86_64 => header::EM_X86_64,
            Abi::I386 => header::EM_386,
        }
    }

    /// Pointer size in bytes.
    pub fn word(self) -> u64 {
        match self {
            Abi::X86_64 => 8,
            Abi::I386 => 4,
        }
    }
}

/// How many bytes of a file are read when it is opened: the ELF header and, nearly always,
/// the program headers (the rest of a file is read where needed). Read into the stack: a
/// kept buffer per file would be fresh memory, and each fresh page costs a fault.
const HEAD_BYTES: usize = 1024;

/// The size of the ELF header of a 64-bit file (the larger class).
const EHDR_BYTES: usize = 64;

/// An ELF file opened for planning: its first bytes, header and program headers, and the
/// open file for reading further ranges.
pub struct ElfImage {
    /// The path it was opened at.
    pub path: PathBuf,
    file: File,
    /// The file's length (from the `fstat` at open).
    len: u64,
    /// The file's first `min(len, 64)` bytes: the ELF header.
    ehdr: [u8; EHDR_BYTES],
    ehdr_len: usize,
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
    /// Open `path`, read its first bytes, parse the ELF header and the program headers.
    ///
    /// Everything is checked against the file length before it is read, so truncated or
    /// hostile files give an error, never a panic or a huge allocation.
    pub fn open(path: &Path) -> Result<ElfImage> {
        ElfImage::open_with(path, None)
    }

    /// Open `path` as the kernel's ELF handler for `class` reads it: the header and program
    /// headers laid out for `class` whatever `e_ident[EI_CLASS]` and `EI_DATA` say (the
    /// kernel never looks at them; see `kernel::verdict`), the header zero-filled past the
    /// end of a short file as `prepare_binprm()` leaves it. A file whose `e_ident` already
    /// says `class`, little-endian, is read exactly as [`ElfImage::open`] reads it.
    pub fn open_as(path: &Path, class: ident::ElfClass) -> Result<ElfImage> {
        ElfImage::open_with(path, Some(class))
    }

    fn open_with(path: &Path, class: Option<ident::ElfClass>) -> Result<ElfImage> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(bad(path, "is a directory, not an ELF file"));
        }
        if !meta.is_file() {
            return Err(bad(path, "is not a regular file"));
        }
        let len = meta.len();
        let mut buf = [0u8; HEAD_BYTES];
        let n = usize::try_from(len).map_or(HEAD_BYTES, |l| l.min(HEAD_BYTES));
        file.read_exact_at(&mut buf[..n], 0)
            .map_err(|e| Error::io(path, e))?;
        let head = &buf[..n];
        let (header, phdrs, ctx) = match class {
            Some(class) if !ident_says(head, class) => {
                // The kernel's reading: e_ident patched to say `class`, little-endian, in a
                // copy, the buffer zero past the file's end.
                let mut patched = buf;
                patched[header::EI_CLASS] = class.ei_class();
                patched[header::EI_DATA] = header::ELFDATA2LSB;
                let m = n.max(class.ehdr_size());
                parse_headers(path, &file, len, &patched[..m])?
            }
            _ => parse_headers(path, &file, len, head)?,
        };
        let mut ehdr = [0u8; EHDR_BYTES];
        let ehdr_len = n.min(EHDR_BYTES);
        ehdr[..ehdr_len].copy_from_slice(&head[..ehdr_len]);
        Ok(ElfImage {
            path: path.to_path_buf(),
            file,
            len,
            ehdr,
            ehdr_len,
            header,
            phdrs,
            ctx,
            meta,
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's first bytes, up to 64: the ELF header.
    pub fn head(&self) -> &[u8] {
        &self.ehdr[..self.ehdr_len]
    }

    /// Bytes `[off, off+len)` of the file, if they are all there. `None` past the end of
    /// the file or on a read error (both mean "not there" to a loader).
    pub fn read(&self, off: u64, len: u64) -> Option<Cow<'_, [u8]>> {
        off.checked_add(len).filter(|&e| e <= self.len)?;
        read_range(&self.file, off, len).ok().map(Cow::Owned)
    }

    /// Bytes `[off, off+len)` read into `buf` (reused across calls), cut at the end of the
    /// file; `None` past it or on a read error.
    pub fn read_into<'b>(&self, off: u64, len: u64, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        let len = len.min(self.len.checked_sub(off)?);
        let n = usize::try_from(len).ok()?;
        buf.clear();
        pread_append(&self.file, off, n, buf).ok()?;
        Some(&buf[..n])
    }

    /// Bytes from `off` up to `max` of them, fewer at the end of the file, as a read-only
    /// private mapping of the file (memmap2): for large tables read densely, where the
    /// page cache's pages are mapped instead of being copied into fresh memory that faults
    /// page by page. The mapping is populated (MAP_POPULATE) as it is made: the tables are
    /// read whole, and one call costs less here than a fault per 16 pages (curl's plan
    /// -0.13 ms, gdb's -0.02 to -0.04 ms, paired).
    pub fn map_upto(&self, off: u64, max: u64) -> Option<memmap2::Mmap> {
        let len = usize::try_from(max.min(self.len.checked_sub(off)?)).ok()?;
        // SAFETY: memmap2's map is unsafe because another process could change the file
        // while it is mapped; the bytes are treated as untrusted input, and a truncation
        // under us is the same risk every loader takes.
        unsafe {
            memmap2::MmapOptions::new()
                .offset(off)
                .len(len)
                .populate()
                .map(&self.file)
        }
        .ok()
    }

    /// Bytes from `off` up to `max` of them, fewer at the end of the file.
    pub fn read_upto(&self, off: u64, max: u64) -> Option<Cow<'_, [u8]>> {
        let avail = self.len.checked_sub(off)?;
        self.read(off, max.min(avail))
    }

    /// The NUL-terminated string at `off`, looking at no more than `limit` bytes: `Ok`
    /// without its NUL, `Err(true)` if no NUL comes within the limit, `Err(false)` if
    /// `off` is past the end of the file.
    pub fn cstr_at(&self, off: u64, limit: u64) -> std::result::Result<Vec<u8>, bool> {
        let mut want = 256u64.min(limit);
        loop {
            let chunk = self.read_upto(off, want).ok_or(false)?;
            if let Some(n) = chunk.iter().position(|&b| b == 0) {
                return Ok(chunk[..n].to_vec());
            }
            if (chunk.len() as u64) < want || want >= limit {
                return Err(true);
            }
            want = want.saturating_mul(8).min(limit);
        }
    }

    pub fn is_64(&self) -> bool {
        self.ctx.container == Container::Big
    }

    /// The ABI, if it is one we model.
    pub fn abi(&self) -> Option<Abi> {
        match (self.is_64(), self.header.e_machine) {
            (true, header::EM_X86_64) => Some(Abi::X86_64),
            // The compat handler takes EM_486 too (`compat_elf_check_arch()`).
            (false, header::EM_386 | EM_486) => Some(Abi::I386),
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

    /// The PT_INTERP string (with its NUL), unchecked (the kernel's checks:
    /// `kernel::verdict`).
    pub fn interp_raw(&self) -> Option<Cow<'_, [u8]>> {
        let p = self.phdr(PT_INTERP)?;
        self.read(p.p_offset, p.p_filesz)
    }

    /// The PT_INTERP string up to its first NUL, unchecked.
    pub fn interp_name(&self) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let raw = self.interp_raw()?;
        let s = raw.split(|&b| b == 0).next().unwrap_or_default();
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(s)))
    }
}

/// Random access to a part of a file whose extent is not known in advance (tables chained
/// by offsets, such as the version tables): a window of the file is read and moved when an
/// access falls outside it.
pub struct FileWindow<'a> {
    img: &'a ElfImage,
    start: u64,
    size: u64,
    buf: Cow<'a, [u8]>,
}

impl<'a> FileWindow<'a> {
    /// A window of `size` bytes (at least the largest access), read at the first access.
    pub fn new(img: &'a ElfImage, size: u64) -> FileWindow<'a> {
        FileWindow {
            img,
            start: 0,
            size: size.max(8),
            buf: Cow::Borrowed(&[]),
        }
    }

    /// Start the window at `off` now (for tables known to lie close after it).
    pub fn prefetch(&mut self, off: u64) {
        if let Some(buf) = self.img.read_upto(off, self.size) {
            self.start = off;
            self.buf = buf;
        }
    }

    /// `N` bytes at file offset `off`, if they are in the file.
    pub fn bytes<const N: usize>(&mut self, off: u64) -> Option<[u8; N]> {
        let end = off.checked_add(N as u64)?;
        if off < self.start || end > self.start + self.buf.len() as u64 {
            let buf = self.img.read_upto(off, self.size.max(N as u64))?;
            self.start = off;
            self.buf = buf;
        }
        let at = (off - self.start) as usize;
        self.buf.get(at..at + N)?.try_into().ok()
    }

    pub fn u16_at(&mut self, off: u64) -> Option<u16> {
        self.bytes(off).map(u16::from_le_bytes)
    }

    pub fn u32_at(&mut self, off: u64) -> Option<u32> {
        self.bytes(off).map(u32::from_le_bytes)
    }
}

/// `head` (a file's first bytes) has the magic and says `class`, little-endian.
fn ident_says(head: &[u8], class: ident::ElfClass) -> bool {
    head.len() >= class.ehdr_size()
        && head[header::EI_CLASS] == class.ei_class()
        && head[header::EI_DATA] == header::ELFDATA2LSB
}

/// Parse the ELF header from a file's first bytes `bytes`, and its program headers.
fn parse_headers(
    path: &Path,
    file: &File,
    len: u64,
    bytes: &[u8],
) -> Result<(Header, Vec<ProgramHeader>, Ctx)> {
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
        let truncated = || {
            bad(
                path,
                "truncated: the program headers lie past the end of the file",
            )
        };
        let end = phoff
            .checked_add(phnum * phentsize)
            .filter(|&e| e <= len)
            .ok_or_else(truncated)?;
        let table: Cow<[u8]> = if end <= bytes.len() as u64 {
            Cow::Borrowed(&bytes[phoff as usize..end as usize])
        } else {
            Cow::Owned(read_range(file, phoff, phnum * phentsize).map_err(|e| Error::io(path, e))?)
        };
        ProgramHeader::parse(&table, 0, phnum as usize, ctx)
            .map_err(|e| bad(path, format!("bad program headers: {e}")))?
    } else {
        Vec::new()
    };
    Ok((header, phdrs, ctx))
}

/// `len` bytes of `file` from `off` (`pread`, repeated until done); the caller has checked
/// the range against the file's length.
fn read_range(file: &File, off: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let n = usize::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    let mut buf = Vec::new();
    pread_append(file, off, n, &mut buf)?;
    Ok(buf)
}

/// Append bytes `[off, off+n)` of `file` to `buf`, read into its unused capacity: zeroing
/// it first (as `read_exact_at` needs) would write every byte twice.
fn pread_append(file: &File, off: u64, n: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::fd::AsRawFd;
    buf.reserve(n);
    let (start, end) = (buf.len(), buf.len() + n);
    while buf.len() < end {
        let at = off
            .checked_add((buf.len() - start) as u64)
            .and_then(|a| libc::off_t::try_from(a).ok())
            .ok_or_else(|| Error::from_raw_os_error(libc::EFBIG))?;
        let want = end - buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: pread(2) writes at most `want` (<= `spare.len()`) bytes into the vector's
        // unused capacity, and the length grows by exactly the count it reports written.
        let got = unsafe {
            let r = libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), want, at);
            if r > 0 {
                buf.set_len(buf.len() + r as usize);
            }
            r
        };
        match got {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            r if r < 0 => {
                let e = Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Models `fs/binfmt_elf.c: total_mapping_size()` (v6.0+): from the lowest page start of a
/// PT_LOAD to the highest end of one's memory image, whatever their order; the C
/// arithmetic wraps (at 32 bits for a compat task's `Elf32_Addr`), and so does this.
pub fn total_mapping_size(phdrs: &[ProgramHeader]) -> u64 {
    total_mapping_size_class(phdrs, true)
}

/// [`total_mapping_size`] for a 64-bit (`is_64`) or a 32-bit file.
pub fn total_mapping_size_class(phdrs: &[ProgramHeader], is_64: bool) -> u64 {
    let mask = if is_64 { u64::MAX } else { u64::from(u32::MAX) };
    let mut loads = phdrs.iter().filter(|p| p.p_type == PT_LOAD).peekable();
    if loads.peek().is_none() {
        return 0;
    }
    let (mut min_addr, mut max_addr) = (u64::MAX, 0u64);
    for p in loads {
        min_addr = min_addr.min(crate::addr::page_start(p.p_vaddr));
        max_addr = max_addr.max(p.p_vaddr.wrapping_add(p.p_memsz) & mask);
    }
    max_addr.wrapping_sub(min_addr) & mask
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
