//! Where a new mapping goes: `mm/mmap.c: __get_unmapped_area()`, the x86 searches of
//! `arch/x86/kernel/sys_x86_64.c: arch_get_unmapped_area(_topdown)()` over
//! `mm/vma.c: unmapped_area(_topdown)()`, and `mm/huge_memory.c: __thp_get_unmapped_area()`.

use super::rules::{ThpAnon, ThpFile};
use super::{AddressSpace, MmError};

/// `OVERLAYFS_SUPER_MAGIC`: a stacking filesystem (see `FileRef::stacked`).
pub const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// 2 MiB: `PMD_SIZE` on x86_64 (the THP alignment).
pub const PMD_SIZE: u64 = 0x200000;

/// The allocator's view of the layout: what `arch_pick_mmap_layout()` decided, and the
/// limits the searches use. A plain value, so the allocator can be tested on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MmapLayout {
    /// `MMF_TOPDOWN`: flexible (top-down) layout; false = legacy (bottom-up).
    pub topdown: bool,
    /// `mm->mmap_base` (or `mmap_compat_base` for a 32-bit task): top of the top-down search.
    pub mmap_base: u64,
    /// `mm->mmap_legacy_base` (or the compat one): start of the bottom-up search.
    pub mmap_legacy_base: u64,
    /// `TASK_SIZE` of the task (`IA32_PAGE_OFFSET` for a compat task).
    pub task_size: u64,
    /// `TASK_UNMAPPED_BASE` without randomisation: start of the top-down fallback search.
    pub task_unmapped_base: u64,
    /// `vm.mmap_min_addr` (and at least one page): the lowest address a search returns.
    pub mmap_min_addr: u64,
    /// `stack_guard_gap` (mm/mmap.c): kept free below a `VM_GROWSDOWN` VMA.
    pub stack_guard_gap: u64,
    /// The task makes 32-bit system calls (`in_32bit_syscall()`): no THP alignment.
    pub compat: bool,
}

/// The arguments of `get_unmapped_area()` that matter here.
#[derive(Clone, Copy, Debug)]
pub struct SearchRequest {
    pub addr: u64,
    /// Page-aligned length.
    pub len: u64,
    /// MAP_FIXED or MAP_FIXED_NOREPLACE.
    pub fixed: bool,
    /// File offset in bytes for a file mapping; `None` for anonymous memory.
    pub file_offset: Option<u64>,
    /// The file's `f_op->get_unmapped_area` is `thp_get_unmapped_area`.
    pub thp_capable_file: bool,
    pub shared: bool,
}

/// `vm_start_gap()`: the start of a VMA including the guard gap below a stack.
fn vm_start_gap(mm: &AddressSpace, v: &super::Vma) -> u64 {
    if v.growsdown {
        v.start.saturating_sub(mm.layout.stack_guard_gap)
    } else {
        v.start
    }
}

// The free gaps are those between consecutive VMAs (sorted and disjoint), below each VMA's
// guard gap, clipped to `[low_limit, high_limit)`: from the end of one VMA (0 for the first
// gap) to `vm_start_gap()` of the next (`high_limit` for the last).

/// Models `mm/vma.c: unmapped_area_topdown()`: the highest gap below `high_limit` that fits
/// `len`, and the mapping at the top of it.
pub fn unmapped_area_topdown(
    mm: &AddressSpace,
    len: u64,
    low_limit: u64,
    high_limit: u64,
) -> Option<u64> {
    let fits = |lo: u64, hi: u64| hi > lo && hi - lo >= len;
    // Above the first VMA that ends at or above high_limit every gap is clipped to nothing.
    let top = mm.vmas.partition_point(|v| v.end < high_limit);
    let mut hi = mm
        .vmas
        .get(top)
        .map_or(high_limit, |v| vm_start_gap(mm, v).min(high_limit));
    for v in mm.vmas[..top].iter().rev() {
        let lo = v.end.max(low_limit);
        if fits(lo, hi) {
            return Some(hi - len);
        }
        hi = vm_start_gap(mm, v).min(high_limit);
    }
    fits(low_limit, hi).then(|| hi - len)
}

/// Models `mm/vma.c: unmapped_area()`: the lowest gap at or above `low_limit` that fits.
pub fn unmapped_area(mm: &AddressSpace, len: u64, low_limit: u64, high_limit: u64) -> Option<u64> {
    let fits = |lo: u64, hi: u64| hi > lo && hi - lo >= len;
    let mut prev_end = 0u64;
    for v in mm.vmas.iter() {
        let lo = prev_end.max(low_limit);
        if lo >= high_limit {
            return None;
        }
        if fits(lo, vm_start_gap(mm, v).min(high_limit)) {
            return Some(lo);
        }
        prev_end = v.end;
    }
    let lo = prev_end.max(low_limit);
    fits(lo, high_limit).then_some(lo)
}

/// Whether a hint can be used as is: `[addr, addr+len)` is inside the task and free,
/// guard gaps included (the `if (addr)` block of `arch_get_unmapped_area(_topdown)()`).
fn hint_fits(mm: &AddressSpace, addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    if addr < mm.layout.mmap_min_addr || end > mm.layout.task_size {
        return false;
    }
    mm.vmas()
        .all(|v| end <= vm_start_gap(mm, v) || addr >= v.end)
}

/// Models `arch/x86/kernel/sys_x86_64.c: arch_get_unmapped_area_topdown()` and
/// `arch_get_unmapped_area()` (the bottom-up one), without the MAP_32BIT and
/// above-47-bit-hint branches, which exec and ld.so never use.
fn arch_get_unmapped_area(mm: &AddressSpace, addr: u64, len: u64) -> Result<u64, MmError> {
    let l = &mm.layout;
    if len > l.task_size {
        return Err(MmError::NoMemory { len });
    }
    if addr != 0 {
        let addr = crate::addr::page_start(addr);
        if hint_fits(mm, addr, len) {
            return Ok(addr);
        }
    }
    let low = l.mmap_min_addr.max(crate::addr::PAGE_SIZE);
    if l.topdown {
        if let Some(a) = unmapped_area_topdown(mm, len, low, l.mmap_base) {
            return Ok(a);
        }
        // "A failed mmap() very likely causes application failure, so fall back to the
        // bottom-up function here."
        unmapped_area(mm, len, l.task_unmapped_base, l.task_size).ok_or(MmError::NoMemory { len })
    } else {
        unmapped_area(mm, len, l.mmap_legacy_base.max(low), l.task_size)
            .ok_or(MmError::NoMemory { len })
    }
}

/// Models `mm/huge_memory.c: __thp_get_unmapped_area()` with `size = PMD_SIZE`: when the
/// mapping covers a whole 2 MiB-aligned stretch of the file, search for `len + 2 MiB` and
/// move the result up so that `addr ≡ off (mod 2 MiB)`. `None` means "not applicable", and
/// the caller falls back to the plain search. Not for 32-bit system calls since v6.8
/// ([`super::rules::MmRules::thp_32bit`]). Before v6.8 a top-down search took the low end
/// of the padded range ([`ThpFile::Aligned`]).
fn thp_get_unmapped_area(mm: &AddressSpace, addr: u64, len: u64, off: u64) -> Option<u64> {
    if mm.layout.compat && !mm.rules.thp_32bit {
        return None;
    }
    let off_end = off.checked_add(len)?;
    let off_align = crate::addr::align_up(off, PMD_SIZE)?;
    if off_end <= off_align || off_end - off_align < PMD_SIZE {
        return None;
    }
    let len_pad = len.checked_add(PMD_SIZE)?;
    off.checked_add(len_pad)?;
    let ret = arch_get_unmapped_area(mm, addr, len_pad).ok()?;
    if ret == addr {
        return Some(addr);
    }
    let off_sub = off.wrapping_sub(ret) & (PMD_SIZE - 1);
    if mm.layout.topdown && off_sub == 0 && mm.rules.thp_file == ThpFile::AlignedTopdown {
        return Some(ret + PMD_SIZE);
    }
    Some(ret + off_sub)
}

/// Models `mm/mmap.c: __get_unmapped_area()` (6.18): MAP_FIXED addresses are taken as
/// they are; file mappings on a THP-capable filesystem (v5.18+) and hint-less anonymous
/// private mappings whose length is a multiple of 2 MiB (v6.12+) go through the THP search;
/// everything else through the arch search.
pub fn get_unmapped_area(mm: &AddressSpace, req: &SearchRequest) -> Result<u64, MmError> {
    get_unmapped_area_how(mm, req).map(|(addr, _)| addr)
}

/// Which search `get_unmapped_area()` took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// MAP_FIXED: the address as given.
    Fixed,
    /// `__thp_get_unmapped_area()` found a PMD-aligned (2 MiB) place.
    Thp,
    /// The arch search (`arch_get_unmapped_area(_topdown)()`).
    Arch,
}

/// [`get_unmapped_area`], and which search found the address.
pub fn get_unmapped_area_how(
    mm: &AddressSpace,
    req: &SearchRequest,
) -> Result<(u64, Search), MmError> {
    let len = req.len;
    if len > mm.layout.task_size {
        return Err(MmError::NoMemory { len });
    }
    if req.fixed {
        let end = req.addr.checked_add(len).ok_or(MmError::Invalid {
            start: req.addr,
            len,
        })?;
        if crate::addr::page_offset(req.addr) != 0 || end > mm.layout.task_size {
            return Err(MmError::Invalid {
                start: req.addr,
                len,
            });
        }
        return Ok((req.addr, Search::Fixed));
    }
    let thp = match req.file_offset {
        Some(off) if req.thp_capable_file => thp_get_unmapped_area(mm, req.addr, len, off),
        None if mm.rules.thp_anon == ThpAnon::PmdMultipleNoHint
            && !req.shared
            && req.addr == 0
            && len.is_multiple_of(PMD_SIZE) =>
        {
            thp_get_unmapped_area(mm, req.addr, len, 0)
        }
        _ => None,
    };
    match thp {
        Some(a) => Ok((a, Search::Thp)),
        None => arch_get_unmapped_area(mm, req.addr, len).map(|a| (a, Search::Arch)),
    }
}
