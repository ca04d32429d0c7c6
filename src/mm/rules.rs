//! DOC: the memory-management rules that differ between kernels. The kernel profile
//! ([`crate::kernel::profile::Kernel`]) decides them; the address space carries them as a
//! plain value, so that `get_unmapped_area()`, merging and the maps text follow the kernel
//! planned for and not the one elfmap runs on.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

pub use crate::host::kernel::MountThp;

/// Which file mappings `__thp_get_unmapped_area()` aligns to 2 MiB
/// (mm/huge_memory.c: `thp_get_unmapped_area()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThpFile {
    /// Only DAX files (`IS_DAX()`), so no ordinary file: up to v5.17.
    DaxOnly,
    /// Every file of a filesystem whose `get_unmapped_area` is `thp_get_unmapped_area`,
    /// the padded search taking the low end of the padded range even top-down: 1854bc6e2420
    /// "mm/readahead: Align file mappings for non-DAX" (v5.18), before the top-down fix.
    Aligned,
    /// As `Aligned`, but top-down, a padded result that is already aligned is moved up by
    /// 2 MiB (the top of the padded range): 96204e15310c "mm: thp_get_unmapped_area must
    /// honour topdown preference" (v6.8).
    AlignedTopdown,
}

/// Which anonymous mappings `__get_unmapped_area()` sends to the THP search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThpAnon {
    /// None (up to v6.6; the 6.1-rc version f35b5d7d676e was reverted before v6.1).
    None,
    /// Private, no hint, a length that is a multiple of 2 MiB: efa7df3e3bb5 (v6.7) narrowed by
    /// d4148aeab412 (v6.12) and 249608ee4713 "mm: respect mmap hint address when aligning
    /// for THP" (v6.13, 6.12.5).
    PmdMultipleNoHint,
}

/// The order in which a new mapping tries its neighbours, which decides what happens when
/// both could merge but their `anon_vma`s are not compatible (both written, or, on v6.1,
/// the next one written and the previous one not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeNew {
    /// The previous VMA first, then the next one if `is_mergeable_anon_vma(prev, next)`
    /// (mm/mmap.c: `vma_merge()` up to v6.0; mm/vma.c: `vma_merge_new_range()` with
    /// `can_vma_merge_right()`, v6.12+).
    PrevFirst,
    /// The next VMA first; then the previous one with the next one's `anon_vma`, which a
    /// previous VMA without one (its `anon_vma_chain` empty, not singular) refuses
    /// (mm/mmap.c: `__mmap_region()`, v6.1 with the maple tree).
    NextFirst,
}

/// The rules of the address space that depend on the kernel release or its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MmRules {
    /// File mappings and THP ([`ThpFile`]).
    pub thp_file: ThpFile,
    /// `statfs` magics of the filesystems whose `file_operations` have
    /// `.get_unmapped_area = thp_get_unmapped_area` in that release.
    pub thp_filesystems: &'static [i64],
    /// Whether 32-bit tasks' mappings are THP-aligned too. No since 4ef9ad19e176 "mm:
    /// huge_memory: don't force huge page alignment on 32 bit" (v6.8; Debian 6.1.0-19) for
    /// compat tasks, d9592025000b (v6.11; Debian 6.1.0-24) for a native 32-bit kernel.
    pub thp_32bit: bool,
    /// Anonymous mappings and THP ([`ThpAnon`]).
    pub thp_anon: ThpAnon,
    /// `[heap]` is an anonymous VMA overlapping `[start_brk, brk)` strictly (include/linux/mm.h:
    /// `vma_is_initial_heap()`, "mm: fix VMA heap bounds checking", v6.7); before, the test
    /// in fs/proc/task_mmu.c: `show_map_vma()` was inclusive (`vm_start <= brk && vm_end >=
    /// start_brk`), so a bss tail ending at `start_brk` was `[heap]` too.
    pub heap_exclusive: bool,
    /// How a new mapping merges with its neighbours ([`MergeNew`]).
    pub merge_new: MergeNew,
    /// `brk()` grows the VMA that ends at the old break even when it lies below
    /// `start_brk` (the anonymous tail of the program's `.bss`): mm/mmap.c: `do_brk_flags()`
    /// merged through `vma_merge()` with any neighbour up to v6.0; since v6.1 (the maple
    /// tree rework of `brk()`) only a VMA at or above `start_brk` (`mas_prev(&mas,
    /// mm->start_brk)`), so the heap is a line of its own.
    pub brk_merges_below: bool,
    /// The width `show_vma_header_prefix()` pads to before the name: `25 + 6 * sizeof(long)
    /// - 1`, 72 on a 64-bit kernel, 48 on a 32-bit one (fs/proc/task_mmu.c).
    pub name_pad: usize,
    /// The target machine's mounts with their measured THP behaviour (a captured profile);
    /// `None`: decide by the filesystem magic of the file as found here.
    pub mounts: Option<Arc<[MountThp]>>,
}

impl MmRules {
    /// Whether a hint-less private mapping of `file` goes through the THP search.
    pub fn thp_file_capable(&self, path: &Path, fs_magic: i64) -> bool {
        if self.thp_file == ThpFile::DaxOnly {
            return false;
        }
        match &self.mounts {
            Some(m) => m
                .iter()
                .filter(|x| path.starts_with(&x.mount_point))
                .max_by_key(|x| x.mount_point.as_os_str().len())
                .is_some_and(|x| x.thp_aligned),
            None => self.thp_filesystems.contains(&fs_magic),
        }
    }
}

/// The rules of this machine's kernel (6.18) for the address space's own unit tests.
#[cfg(test)]
pub(crate) fn test_rules() -> MmRules {
    MmRules {
        thp_file: ThpFile::AlignedTopdown,
        thp_filesystems: &[0xEF53],
        thp_32bit: false,
        thp_anon: ThpAnon::PmdMultipleNoHint,
        heap_exclusive: true,
        merge_new: MergeNew::PrevFirst,
        brk_merges_below: false,
        name_pad: 72,
        mounts: None,
    }
}
