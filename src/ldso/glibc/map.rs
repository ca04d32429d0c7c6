//! DOC: mapping and protecting one object the way glibc 2.36's ld.so does it.
//!
//! * `elf/dl-load.c: _dl_map_object_from_fd()`: the program-header walk that builds the
//!   `struct loadcmd` list and records PT_DYNAMIC, PT_TLS, PT_GNU_STACK, PT_GNU_RELRO;
//! * `elf/dl-map-segments.h: _dl_map_segments()` and `_dl_map_segment()`: one mapping for
//!   the whole span (aligned to the largest p_align inside an anonymous PROT_NONE
//!   reservation when that is above the page size), PROT_NONE over the holes, the later
//!   segments MAP_FIXED, the .bss zero page and the anonymous zero-fill mapping;
//! * `elf/dl-reloc.c: _dl_relocate_object()` (the DT_TEXTREL mprotect pairs) and
//!   `_dl_protect_relro()`;
//! * `sysdeps/unix/sysv/linux/dl-execstack.c: _dl_make_stack_executable()`.
//!
//! Every system call goes through [`Task`], which applies the task's READ_IMPLIES_EXEC
//! personality the way `do_mmap()` and `do_mprotect_pkey()` do (i386 programs without
//! PT_GNU_STACK).

use std::path::Path;
use std::sync::Arc;

use goblin::elf::program_header::{PF_R, PF_W, PF_X};

use super::tls::TlsModule;
use crate::addr::{align_up, page_align, page_start, PAGE_SIZE};
use crate::elf::{ElfImage, PT_DYNAMIC, PT_GNU_RELRO, PT_GNU_STACK, PT_LOAD, PT_TLS};
use crate::error::{Error, Result};
use crate::mm::{Backing, Change, FileRef, Maker, MmError, Object, Placement, Prot, Task};

/// `DEFAULT_STACK_PERMS` on x86 (sysdeps/x86/stackinfo.h): PF_R|PF_W|PF_X, the stack
/// permissions an object without PT_GNU_STACK asks for.
pub const DEFAULT_STACK_PERMS: u32 = PF_R | PF_W | PF_X;

/// `struct loadcmd` (elf/dl-load.h), one per PT_LOAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoadCmd {
    pub mapstart: u64,
    pub mapend: u64,
    pub dataend: u64,
    pub allocend: u64,
    pub mapalign: u64,
    pub mapoff: u64,
    #[serde(skip)]
    pub prot: Prot,
    /// The index of its PT_LOAD in the program headers (provenance).
    #[serde(skip)]
    pub phdr: usize,
}

/// What `_dl_map_object_from_fd()` learns from the program headers before mapping.
#[derive(Clone, Debug)]
pub struct ObjectHeaders {
    pub loadcmds: Vec<LoadCmd>,
    pub has_holes: bool,
    /// `maplength = last.allocend - first.mapstart` (not page-rounded).
    pub maplength: u64,
    /// PT_GNU_STACK's `p_flags`, or `DEFAULT_STACK_PERMS` without one.
    pub stack_flags: u32,
    /// PT_GNU_RELRO (`p_vaddr`, `p_memsz`).
    pub relro: Option<(u64, u64)>,
    pub tls: Option<TlsModule>,
    /// The program headers lie inside a mapped segment (`l_phdr` needs no copy).
    pub phdr_mapped: bool,
}

/// Models `PF_TO_PROT` of elf/dl-load.h.
fn pf_to_prot(p_flags: u32) -> Prot {
    Prot::new(
        p_flags & PF_R != 0,
        p_flags & PF_W != 0,
        p_flags & PF_X != 0,
    )
}

/// Models the program-header loop of `_dl_map_object_from_fd()` (2.36): PT_LOAD gives a
/// load command (with the page-alignment checks that make the load fail), the largest
/// power-of-two p_align becomes every command's `mapalign` (BZ #28676), and the other
/// headers are recorded.
pub fn read_object_headers(img: &ElfImage) -> Result<ObjectHeaders> {
    let path = &img.path;
    let mut loadcmds: Vec<LoadCmd> = Vec::new();
    let mut has_holes = false;
    let mut p_align_max = 0u64;
    let mut stack_flags = DEFAULT_STACK_PERMS;
    let mut relro = None;
    let mut tls = None;
    let mut has_dynamic = false;
    for (phdr, ph) in img.phdrs.iter().enumerate() {
        match ph.p_type {
            PT_DYNAMIC => has_dynamic = ph.p_filesz != 0,
            PT_LOAD => {
                if ph.p_align & (PAGE_SIZE - 1) != 0 {
                    return Err(Error::load_failed(
                        path,
                        "ELF load command alignment not page-aligned",
                    ));
                }
                if ph.p_vaddr.wrapping_sub(ph.p_offset) & (PAGE_SIZE - 1) != 0 {
                    return Err(Error::load_failed(
                        path,
                        "ELF load command address/offset not page-aligned",
                    ));
                }
                let end_file = ph.p_vaddr.checked_add(ph.p_filesz);
                let end_mem = ph.p_vaddr.checked_add(ph.p_memsz);
                let (Some(ef), Some(em)) = (end_file, end_mem) else {
                    return Err(Error::load_failed(path, "PT_LOAD wraps around"));
                };
                let c = LoadCmd {
                    mapstart: page_start(ph.p_vaddr),
                    mapend: page_align(ef).unwrap_or(u64::MAX),
                    dataend: ef,
                    allocend: em,
                    mapalign: 0,
                    mapoff: page_start(ph.p_offset),
                    prot: pf_to_prot(ph.p_flags),
                    phdr,
                };
                if let Some(prev) = loadcmds.last() {
                    if prev.mapend != c.mapstart {
                        has_holes = true;
                    }
                }
                if ph.p_align.is_power_of_two() && ph.p_align > p_align_max {
                    p_align_max = ph.p_align;
                }
                loadcmds.push(c);
            }
            PT_TLS if ph.p_memsz > 0 => {
                tls = Some(TlsModule::from_phdr(ph.p_vaddr, ph.p_memsz, ph.p_align));
            }
            PT_GNU_STACK => stack_flags = ph.p_flags,
            PT_GNU_RELRO => relro = Some((ph.p_vaddr, ph.p_memsz)),
            _ => {}
        }
    }
    let (Some(first), Some(last)) = (loadcmds.first(), loadcmds.last()) else {
        return Err(Error::load_failed(
            path,
            "object file has no loadable segments",
        ));
    };
    if !has_dynamic {
        return Err(Error::load_failed(
            path,
            "object file has no dynamic section",
        ));
    }
    let maplength = last.allocend.wrapping_sub(first.mapstart);
    for c in &mut loadcmds {
        c.mapalign = p_align_max;
    }
    // _dl_postprocess_loadcmd(): l_phdr is found inside the file part of a segment.
    let phoff = img.header.e_phoff;
    let phsize = u64::from(img.header.e_phnum) * u64::from(img.header.e_phentsize);
    let phdr_mapped = loadcmds.iter().any(|c| {
        phoff >= c.mapoff && (c.mapend - c.mapstart + c.mapoff) >= phoff.saturating_add(phsize)
    });
    Ok(ObjectHeaders {
        loadcmds,
        has_holes,
        maplength,
        stack_flags,
        relro,
        tls,
        phdr_mapped,
    })
}

/// Where an object was mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    pub l_addr: u64,
    pub l_map_start: u64,
    pub l_map_end: u64,
    pub l_contiguous: bool,
}

fn map_err(path: &Path, what: &str, e: MmError) -> Error {
    Error::load_failed(path, format!("{what}: {e}"))
}

/// Models `_dl_map_segment()`: without a large alignment, one
/// `mmap(mappref, maplength, first.prot, MAP_PRIVATE, fd, first.mapoff)`; with
/// `mapalign > PAGE`, reserve `maplength + mapalign` (at least `2 * mapalign`) of
/// anonymous PROT_NONE, map the file MAP_FIXED at the first aligned address inside it and
/// unmap the head and the tail of the reservation.
fn dl_map_segment(
    task: &mut Task,
    c: &LoadCmd,
    mappref: u64,
    maplength: u64,
    file: &Arc<FileRef>,
    object: &Arc<Object>,
) -> std::result::Result<u64, MmError> {
    let segment = Maker::DlMapSegment {
        object: object.clone(),
        phdr: c.phdr,
    };
    if c.mapalign <= PAGE_SIZE {
        return task.mmap(
            mappref,
            maplength,
            c.prot,
            Placement::Hint,
            Some((file.clone(), c.mapoff)),
            segment,
        );
    }
    let maplen = if maplength >= c.mapalign {
        maplength
            .checked_add(c.mapalign)
            .ok_or(MmError::NoMemory { len: maplength })?
    } else {
        2 * c.mapalign
    };
    let reservation = Maker::DlReservation {
        object: object.clone(),
    };
    let map_start = task.mmap(
        mappref,
        maplen,
        Prot::NONE,
        Placement::Hint,
        None,
        reservation,
    )?;
    let aligned = align_up(map_start, c.mapalign).ok_or(MmError::NoMemory { len: maplen })?;
    let aligned = match task.mmap(
        aligned,
        maplength,
        c.prot,
        Placement::Fixed,
        Some((file.clone(), c.mapoff)),
        segment,
    ) {
        Ok(a) => a,
        Err(e) => {
            task.munmap(map_start, maplen);
            return Err(e);
        }
    };
    let delta = aligned - map_start;
    if delta != 0 {
        task.munmap(map_start, delta);
    }
    let map_end = page_align(aligned + maplength).unwrap_or(u64::MAX);
    let end = map_start + maplen;
    if end > map_end {
        task.munmap(map_end, end - map_end);
    }
    Ok(aligned)
}

/// Models `_dl_map_segments()` for an ET_DYN object (and, with `et_exec`, the segment-by-
/// segment branch for an ET_EXEC program that ld.so maps itself).
pub fn dl_map_segments(
    task: &mut Task,
    path: &Path,
    hdr: &ObjectHeaders,
    file: &Arc<FileRef>,
    object: &Arc<Object>,
    et_exec: bool,
) -> Result<Placed> {
    let cmds = &hdr.loadcmds;
    let first = cmds[0];
    let maplength = hdr.maplength;
    let (l_addr, l_map_start, l_contiguous, rest) = if !et_exec {
        // ELF_PREFERRED_ADDRESS: the first segment's own address is the hint (0 for
        // ordinary libraries; `-Ttext-segment` objects get theirs if it is free).
        let mappref = first.mapstart;
        let start = dl_map_segment(task, &first, mappref, maplength, file, object)
            .map_err(|e| map_err(path, "failed to map segment from shared object", e))?;
        let l_addr = start.wrapping_sub(first.mapstart);
        if hdr.has_holes {
            let last = cmds[cmds.len() - 1];
            if last.mapstart < first.mapend {
                return Err(Error::load_failed(
                    path,
                    "ELF load command address/offset not page-aligned",
                ));
            }
            task.mprotect(
                l_addr.wrapping_add(first.mapend),
                last.mapstart - first.mapend,
                Prot::NONE,
                &Change::Hole {
                    object: object.clone(),
                },
            );
        }
        // postmap for the first command, then the loop from the second.
        zero_fill(task, path, l_addr, &first, object)?;
        (l_addr, start, true, &cmds[1..])
    } else {
        (0, first.mapstart, !hdr.has_holes, &cmds[..])
    };
    for c in rest {
        if c.mapend > c.mapstart {
            task.mmap(
                l_addr.wrapping_add(c.mapstart),
                c.mapend - c.mapstart,
                c.prot,
                Placement::Fixed,
                Some((file.clone(), c.mapoff)),
                Maker::DlMapSegment {
                    object: object.clone(),
                    phdr: c.phdr,
                },
            )
            .map_err(|e| map_err(path, "failed to map segment from shared object", e))?;
        }
        zero_fill(task, path, l_addr, c, object)?;
    }
    Ok(Placed {
        l_addr,
        l_map_start,
        l_map_end: l_map_start.wrapping_add(maplength),
        l_contiguous,
    })
}

/// The .bss part of `_dl_map_segments()`: zero the rest of the last file page (for a
/// read-only segment by making the page writable and back, which leaves that page a VMA
/// of its own with VM_ACCOUNT), and map the remaining zero pages anonymously.
fn zero_fill(
    task: &mut Task,
    path: &Path,
    l_addr: u64,
    c: &LoadCmd,
    object: &Arc<Object>,
) -> Result<()> {
    if c.allocend <= c.dataend {
        return Ok(());
    }
    let zero = l_addr.wrapping_add(c.dataend);
    let zeroend = l_addr.wrapping_add(c.allocend);
    let mut zeropage = page_align(zero).unwrap_or(u64::MAX);
    if zeroend < zeropage {
        zeropage = zeroend;
    }
    if zeropage > zero && !c.prot.write {
        let page = page_start(zero);
        let w = Prot {
            write: true,
            ..c.prot
        };
        let why = Change::ZeroPage {
            object: object.clone(),
        };
        task.mprotect(page, PAGE_SIZE, w, &why);
        task.mprotect(page, PAGE_SIZE, c.prot, &why);
    }
    if zeroend > zeropage {
        let made_by = Maker::DlZeroFill {
            object: object.clone(),
            phdr: c.phdr,
        };
        task.mmap(
            zeropage,
            zeroend - zeropage,
            c.prot,
            Placement::Fixed,
            None,
            made_by,
        )
        .map_err(|e| map_err(path, "cannot map zero-fill pages", e))?;
    }
    Ok(())
}

/// Models `_dl_protect_relro(l)`: `[down(l_addr + p_vaddr), down(l_addr + p_vaddr +
/// p_memsz))` becomes PROT_READ; both ends round down.
pub fn dl_protect_relro(task: &mut Task, l_addr: u64, relro: (u64, u64), object: &Arc<Object>) {
    let (start, end) = relro_pages(l_addr, relro);
    if start < end {
        let why = Change::Relro {
            object: object.clone(),
        };
        task.mprotect(start, end - start, Prot::R, &why);
    }
}

/// The pages `_dl_protect_relro()` makes read-only for PT_GNU_RELRO `(p_vaddr, p_memsz)`
/// at `l_addr`: `[down(l_addr + vaddr), down(l_addr + vaddr + memsz))`, in `ElfW(Addr)`
/// arithmetic (wrapping: a hostile header's sums overflow; the range is then empty).
pub fn relro_pages(l_addr: u64, relro: (u64, u64)) -> (u64, u64) {
    let start = page_start(l_addr.wrapping_add(relro.0));
    let end = page_start(l_addr.wrapping_add(relro.0).wrapping_add(relro.1));
    (start, end)
}

/// Models the DT_TEXTREL part of `_dl_relocate_object()`: every non-writable PT_LOAD range
/// `[down(vaddr), up(vaddr + memsz))` made writable before relocating, then restored in
/// reverse order. The sums are `ElfW(Addr)` arithmetic (they wrap for a hostile header;
/// found by fuzzing); an `mprotect()` the kernel refuses (the range wraps, or is not all
/// mapped: ENOMEM) is ld.so's fatal "cannot make segment writable for relocation".
pub fn dl_relocate_textrel(
    task: &mut Task,
    img: &ElfImage,
    l_addr: u64,
    object: &Arc<Object>,
) -> std::result::Result<(), &'static str> {
    let why = Change::TextRel {
        object: object.clone(),
    };
    let mut textrels = Vec::new();
    for ph in img.loads() {
        if ph.p_flags & PF_W != 0 {
            continue;
        }
        let top = ph
            .p_vaddr
            .wrapping_add(ph.p_memsz)
            .wrapping_add(PAGE_SIZE - 1)
            & !(PAGE_SIZE - 1);
        let len = top.wrapping_sub(page_start(ph.p_vaddr));
        let start = l_addr.wrapping_add(page_start(ph.p_vaddr));
        let end = start.wrapping_add(len);
        // do_mprotect_pkey(): a range that wraps, or with a hole, is ENOMEM.
        if len > 0 && (end <= start || !task.mm.all_mapped(start, end)) {
            return Err("cannot make segment writable for relocation: Cannot allocate memory");
        }
        let prot = pf_to_prot(ph.p_flags);
        task.mprotect(
            start,
            len,
            Prot {
                write: true,
                ..prot
            },
            &why,
        );
        textrels.push((start, len, prot));
    }
    for (start, len, prot) in textrels.into_iter().rev() {
        task.mprotect(start, len, prot, &why);
    }
    Ok(())
}

/// Models `_dl_make_stack_executable(&__libc_stack_end)` on Linux: `mprotect(page of
/// __libc_stack_end, PAGE, RWX | PROT_GROWSDOWN)`. PROT_GROWSDOWN makes the kernel
/// (`do_mprotect_pkey()`) extend the range down to the start of the stack VMA, so
/// everything from there to the end of the page holding the initial stack pointer becomes
/// `rwx`; pages above it (if any) keep their protection.
pub fn dl_make_stack_executable(task: &mut Task, libc_stack_end: u64) {
    let page = page_start(libc_stack_end);
    let Some(vma) = task.mm.find(page) else {
        return;
    };
    if !vma.growsdown || !matches!(vma.backing, Backing::Anon) {
        return;
    }
    let start = vma.start;
    let end = page + PAGE_SIZE;
    // The stack keeps VM_GROWSDOWN; `AddressSpace::mprotect` keeps the other flags.
    task.mprotect(start, end - start, Prot::RWX, &Change::ExecStack);
}
