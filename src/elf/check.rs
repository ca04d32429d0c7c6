//! The kernel's accept/refuse checks for an ELF it is asked to exec, in the order
//! `fs/binfmt_elf.c: load_elf_binary()` makes them (and `load_elf_interp()` for the
//! interpreter). A failed check is `Error::ExecRefused` with the errno execve would return.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use goblin::elf::header::{ET_DYN, ET_EXEC};

use super::{Abi, ElfImage, PT_INTERP, PT_LOAD};
use crate::addr::{page_offset, PAGE_SIZE};
use crate::error::{Error, Result};

/// `PATH_MAX` (include/uapi/linux/limits.h).
const PATH_MAX: u64 = 4096;

/// Checks of `load_elf_binary()` before the point of no return, for the program itself:
/// ELF type, architecture (`elf_check_arch` / `compat_elf_check_arch`), and the
/// program-header table (`load_elf_phdrs()`).
pub fn check_program(img: &ElfImage) -> Result<Abi> {
    check_common(img, "ENOEXEC")
}

/// Checks of `load_elf_binary()` on the interpreter: the same tests, but failures are
/// ELIBBAD, and the interpreter must have the program's ABI.
pub fn check_interp(img: &ElfImage, abi: Abi) -> Result<()> {
    let got = check_common(img, "ELIBBAD")?;
    if got != abi {
        return Err(Error::refused(
            &img.path,
            "ELIBBAD",
            format!("interpreter is {got:?}, the program is {abi:?}"),
        ));
    }
    Ok(())
}

fn check_common(img: &ElfImage, errno: &'static str) -> Result<Abi> {
    let p = &img.path;
    let t = img.e_type();
    if t != ET_EXEC && t != ET_DYN {
        let what = match t {
            goblin::elf::header::ET_REL => "a relocatable object (ET_REL)".to_string(),
            goblin::elf::header::ET_CORE => "a core dump (ET_CORE)".to_string(),
            other => format!("of ELF type {other}"),
        };
        return Err(Error::refused(
            p,
            errno,
            format!("it is {what}, not an executable"),
        ));
    }
    let abi = img.abi().ok_or_else(|| {
        Error::refused(
            p,
            errno,
            format!(
                "wrong architecture: {}-bit e_machine {} (this kernel runs x86_64 and i386 programs)",
                if img.is_64() { 64 } else { 32 },
                img.header.e_machine
            ),
        )
    })?;
    let phentsize = goblin::elf::ProgramHeader::size(img.ctx) as u64;
    if img.header.e_phentsize as u64 != phentsize {
        return Err(Error::refused(
            p,
            errno,
            format!("e_phentsize is {}, not {phentsize}", img.header.e_phentsize),
        ));
    }
    let size = phentsize * img.header.e_phnum as u64;
    if size == 0 {
        return Err(Error::refused(p, errno, "no program headers"));
    }
    if size > PAGE_SIZE {
        return Err(Error::refused(
            p,
            errno,
            format!(
                "{} program headers do not fit in one page",
                img.header.e_phnum
            ),
        ));
    }
    Ok(abi)
}

/// The PT_INTERP path, with the kernel's checks: size between 2 and PATH_MAX, NUL-terminated
/// (`load_elf_binary()`: ENOEXEC otherwise). `None` if there is no PT_INTERP.
pub fn interp_path(img: &ElfImage) -> Result<Option<PathBuf>> {
    let Some(ph) = img.phdr(PT_INTERP) else {
        return Ok(None);
    };
    let p = &img.path;
    if ph.p_filesz > PATH_MAX || ph.p_filesz < 2 {
        return Err(Error::refused(
            p,
            "ENOEXEC",
            format!("PT_INTERP size {} is outside 2..{PATH_MAX}", ph.p_filesz),
        ));
    }
    let raw = img
        .read(ph.p_offset, ph.p_filesz)
        .ok_or_else(|| Error::refused(p, "EIO", "PT_INTERP lies past the end of the file"))?;
    if raw.last() != Some(&0) {
        return Err(Error::refused(
            p,
            "ENOEXEC",
            "PT_INTERP string is not NUL-terminated",
        ));
    }
    // The kernel uses the string up to its first NUL.
    let s = raw.split(|&b| b == 0).next().unwrap_or_default();
    Ok(Some(PathBuf::from(OsStr::from_bytes(s))))
}

/// Per-segment checks of the mapping loop in `load_elf_binary()` / `elf_load()`:
/// `p_filesz <= p_memsz`, the segment inside TASK_SIZE, `p_offset ≡ p_vaddr (mod PAGE)`
/// (vm_mmap() refuses an unaligned file offset), and ET_DYN with at least one PT_LOAD.
pub fn check_segments(img: &ElfImage, load_bias: u64, task_size: u64) -> Result<()> {
    let p = &img.path;
    if img.is_dyn() && img.loads().next().is_none() {
        return Err(Error::refused(
            p,
            "EINVAL",
            "ET_DYN without any PT_LOAD segment",
        ));
    }
    for (i, ph) in img
        .phdrs
        .iter()
        .enumerate()
        .filter(|(_, ph)| ph.p_type == PT_LOAD)
    {
        if ph.p_filesz > ph.p_memsz {
            return Err(Error::refused(
                p,
                "EINVAL",
                format!(
                    "PT_LOAD #{i}: p_filesz {:#x} > p_memsz {:#x}",
                    ph.p_filesz, ph.p_memsz
                ),
            ));
        }
        if page_offset(ph.p_offset) != page_offset(ph.p_vaddr) {
            return Err(Error::refused(
                p,
                "EINVAL",
                format!(
                    "PT_LOAD #{i}: p_offset {:#x} and p_vaddr {:#x} differ modulo the page size",
                    ph.p_offset, ph.p_vaddr
                ),
            ));
        }
        let k = load_bias.wrapping_add(ph.p_vaddr);
        let bad = k >= task_size || ph.p_memsz > task_size || task_size - ph.p_memsz < k;
        if bad {
            return Err(Error::refused(
                p,
                "EINVAL",
                format!(
                    "PT_LOAD #{i} at {k:#x} + {:#x} does not fit below TASK_SIZE {task_size:#x}",
                    ph.p_memsz
                ),
            ));
        }
    }
    Ok(())
}
