//! The address space: the fields of `struct mm_struct` (include/linux/mm_types.h) that we
//! model, the VMA list, and the system calls that change it (`mmap`, `munmap`, `mprotect`,
//! `vm_brk_flags`), with the kernel's splitting and merging.

pub mod origin;
pub mod rules;
pub mod task;
pub mod unmapped_area;
pub mod vma;

use crate::addr::PAGE_SIZE;
use std::sync::Arc;

pub use origin::{Change, Maker, Object, Origin, Role};
pub use task::Task;
pub use unmapped_area::{MmapLayout, SearchRequest};
pub use vma::{Backing, FileRef, Prot, Vma};

/// Why a modelled system call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmError {
    #[error("no free range of {len:#x} bytes (ENOMEM)")]
    NoMemory { len: u64 },
    #[error("range {start:#x}-{end:#x} is already mapped (EEXIST)")]
    Exists { start: u64, end: u64 },
    #[error("invalid range {start:#x}+{len:#x} (EINVAL)")]
    Invalid { start: u64, len: u64 },
    #[error("{npages} more pages would take the address space from {total} pages past RLIMIT_AS ({limit} pages) (ENOMEM)")]
    AsLimit { total: u64, npages: u64, limit: u64 },
}

/// How a mapping is requested (the `flags` of mmap(2) that matter for placement).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// No MAP_FIXED: `addr` is only a hint (0 = none).
    #[default]
    Hint,
    /// MAP_FIXED: replace whatever is there.
    Fixed,
    /// MAP_FIXED_NOREPLACE: fail with EEXIST if anything is there.
    FixedNoReplace,
}

/// One mmap(2) call.
#[derive(Clone, Debug)]
pub struct MmapRequest {
    pub addr: u64,
    pub len: u64,
    pub prot: Prot,
    pub placement: Placement,
    pub shared: bool,
    /// The file and byte offset, or `None` for an anonymous mapping.
    pub file: Option<(Arc<FileRef>, u64)>,
    /// What asks for it.
    pub made_by: Maker,
}

/// The VMAs of an address space in address order ([`AddressSpace::vmas`]).
pub type Vmas<'a> = std::iter::Map<std::slice::Iter<'a, Box<Vma>>, fn(&Box<Vma>) -> &Vma>;

/// `struct mm_struct`, the fields we model.
#[derive(Clone, Debug)]
pub struct AddressSpace {
    /// The VMAs, sorted by start, non-overlapping (the maple tree). Boxed: splits and
    /// protection changes insert and remove in the middle of the list (RELRO, holes), and
    /// moving a pointer costs a sixteenth of moving a `Vma`.
    #[allow(clippy::vec_box)]
    vmas: Vec<Box<Vma>>,
    /// The layout the allocator uses (`mmap_base`, `MMF_TOPDOWN`, limits).
    pub layout: MmapLayout,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    /// The gate area (`get_gate_vma()`: `[vsyscall]`), outside the VMA list, if the task
    /// has one (64-bit tasks only).
    pub gate_vma: Option<Vma>,
    /// The rules of the kernel planned for that the address space follows (THP alignment,
    /// `[heap]` naming, the maps column).
    pub rules: rules::MmRules,
    /// The task's RLIMIT_AS in bytes (`u64::MAX`: RLIM_INFINITY), which `may_expand_vm()`
    /// holds mmap and brk to.
    pub rlimit_as: u64,
}

impl AddressSpace {
    pub fn new(layout: MmapLayout, rules: rules::MmRules) -> Self {
        AddressSpace {
            vmas: Vec::new(),
            rules,
            layout,
            start_brk: 0,
            brk: 0,
            start_stack: 0,
            gate_vma: None,
            rlimit_as: u64::MAX,
        }
    }

    /// `mm->total_vm`: the pages of every VMA (`vm_stat_account()` counts each mapping,
    /// the special ones too; the gate area is not a VMA).
    pub fn total_pages(&self) -> u64 {
        self.vmas
            .iter()
            .map(|v| (v.end - v.start) / PAGE_SIZE)
            .sum()
    }

    /// The pages of the VMAs within `[start, end)`: what a MAP_FIXED mapping there replaces
    /// (`count_vma_pages_range()`).
    fn pages_in(&self, start: u64, end: u64) -> u64 {
        self.vmas
            .iter()
            .filter(|v| v.start < end && start < v.end)
            .map(|v| (v.end.min(end) - v.start.max(start)) / PAGE_SIZE)
            .sum()
    }

    /// Models the RLIMIT_AS test of `mm/vma.c: may_expand_vm()` (mm/mmap.c before v6.12):
    /// `total_vm + npages > rlimit(RLIMIT_AS) >> PAGE_SHIFT` is ENOMEM. (RLIMIT_DATA, its
    /// second test, is not modelled.)
    pub fn may_expand_vm(&self, npages: u64) -> Result<(), MmError> {
        let limit = self.rlimit_as / PAGE_SIZE;
        let total = self.total_pages();
        if total.saturating_add(npages) > limit {
            return Err(MmError::AsLimit {
                total,
                npages,
                limit,
            });
        }
        Ok(())
    }

    /// The VMAs in address order.
    pub fn vmas(&self) -> Vmas<'_> {
        self.vmas.iter().map(|v| &**v)
    }

    /// The VMA containing `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.vmas().find(|v| v.start <= addr && addr < v.end)
    }

    /// Whether every page of `[start, end)` is mapped (no hole).
    pub fn all_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for v in self.vmas.iter().filter(|v| v.end > start && v.start < end) {
            if v.start > at {
                return false;
            }
            at = at.max(v.end);
        }
        at >= end
    }

    /// Whether any VMA overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.vmas.iter().any(|v| v.start < end && start < v.end)
    }

    /// Models `mm/mmap.c: do_mmap()` for the cases a loader uses: place the mapping with
    /// `get_unmapped_area()` (or at `addr` for MAP_FIXED*), replace what a MAP_FIXED mapping
    /// covers, set `VM_ACCOUNT` for private writable mappings (`accountable_mapping()`), and
    /// merge with the neighbours (`vma_merge_new_range()`).
    pub fn mmap(&mut self, req: &MmapRequest) -> Result<u64, MmError> {
        let len = crate::addr::page_align(req.len).ok_or(MmError::Invalid {
            start: req.addr,
            len: req.len,
        })?;
        if len == 0 {
            return Err(MmError::Invalid {
                start: req.addr,
                len: req.len,
            });
        }
        let fixed = req.placement != Placement::Hint;
        let offset = req.file.as_ref().map(|(_, o)| *o).unwrap_or(0);
        if req.file.is_some() && !file_mmap_ok(offset, len) {
            return Err(MmError::Invalid {
                start: req.addr,
                len: req.len,
            });
        }
        let (addr, search) = unmapped_area::get_unmapped_area_how(
            self,
            &SearchRequest {
                addr: req.addr,
                len,
                fixed,
                file_offset: req.file.as_ref().map(|_| offset),
                thp_capable_file: req
                    .file
                    .as_ref()
                    .is_some_and(|(f, _)| self.rules.thp_file_capable(&f.path, f.fs_magic)),
                shared: req.shared,
            },
        )?;
        let end = addr
            .checked_add(len)
            .ok_or(MmError::Invalid { start: addr, len })?;
        if req.placement == Placement::FixedNoReplace && self.overlaps(addr, end) {
            return Err(MmError::Exists { start: addr, end });
        }
        // mmap_region(): the pages a MAP_FIXED mapping replaces are not new.
        let replaced = if fixed { self.pages_in(addr, end) } else { 0 };
        self.may_expand_vm(len / PAGE_SIZE - replaced)?;
        let merge = !req.file.as_ref().is_some_and(|(f, _)| f.stacked);
        let backing = match &req.file {
            Some((f, off)) => Backing::File {
                file: f.clone(),
                offset: *off,
            },
            None => Backing::Anon,
        };
        let mut vma = Vma {
            start: addr,
            end,
            prot: req.prot,
            shared: req.shared,
            account: !req.shared && req.prot.write,
            growsdown: false,
            // The allocators write into their memory as soon as they have it.
            anon_vma: req.file.is_none()
                && matches!(
                    req.made_by,
                    Maker::DlMinimalMalloc { .. } | Maker::MallocngMmap
                ),
            backing,
            origin: Origin::new(addr, end, req.made_by.clone()),
        };
        if search == unmapped_area::Search::Thp {
            vma.origin.0[0].thp_aligned = true;
        }
        let pos = self.insert_vma(vma, false);
        if merge {
            self.merge_new(pos);
        }
        Ok(addr)
    }

    /// Models `mm/vma.c: do_brk_flags()` as called by `vm_brk_flags()`: an anonymous private
    /// mapping at a fixed address, `VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT`. It only ever
    /// expands the VMA that ends where it starts (`VMG_FLAG_JUST_EXPAND`), never merges
    /// with the one after it (a bss tail mapped below an earlier one stays apart).
    pub fn vm_brk_flags(
        &mut self,
        start: u64,
        end: u64,
        exec: bool,
        made_by: Maker,
    ) -> Result<(), MmError> {
        if end <= start {
            return Ok(());
        }
        self.may_expand_vm((end - start) / PAGE_SIZE)?;
        self.insert_vma(
            Vma {
                start,
                end,
                prot: Prot::new(true, true, exec),
                shared: false,
                account: true,
                growsdown: false,
                anon_vma: matches!(made_by, Maker::MallocngBrk),
                backing: Backing::Anon,
                origin: Origin::new(start, end, made_by),
            },
            false,
        );
        let pos = self.vmas.partition_point(|v| v.start < start);
        if pos > 0 && pos < self.vmas.len() && self.vmas[pos - 1].can_merge_with(&self.vmas[pos]) {
            self.join(pos - 1, pos);
        }
        Ok(())
    }

    /// Insert a VMA built by the caller (special mappings, the stack): unmap what it covers,
    /// then merge with its neighbours.
    pub fn insert(&mut self, vma: Vma) {
        self.insert_vma(vma, true);
    }

    /// Insert `vma` (unmapping what it covers), merge it with its neighbours if `merge`;
    /// returns its index before merging.
    fn insert_vma(&mut self, vma: Vma, merge: bool) -> usize {
        let mut pos = self.vmas.partition_point(|v| v.start < vma.start);
        // Most mappings land in a free range: then nothing is unmapped.
        let free = pos
            .checked_sub(1)
            .is_none_or(|p| self.vmas[p].end <= vma.start)
            && self.vmas.get(pos).is_none_or(|n| n.start >= vma.end);
        if free {
            self.vmas.insert(pos, Box::new(vma));
        } else {
            // unmap_range() then insert, with the new VMA written over the first one it
            // replaces (the list shifts once less).
            let inside = self.split_range(vma.start, vma.end);
            pos = inside.start;
            if inside.is_empty() {
                self.vmas.insert(pos, Box::new(vma));
            } else {
                *self.vmas[pos] = vma;
                self.vmas.drain(pos + 1..inside.end);
            }
        }
        if merge {
            self.merge_at(pos);
        }
        pos
    }

    /// A new mapping at `pos` merges with its neighbours as `mmap_region()` merges it:
    /// where both could merge but their `anon_vma`s are not compatible, the kernel's order
    /// ([`rules::MergeNew`]) decides which one it joins.
    fn merge_new(&mut self, pos: usize) {
        let left = pos > 0 && self.vmas[pos - 1].can_merge_with(&self.vmas[pos]);
        let right = pos + 1 < self.vmas.len() && self.vmas[pos].can_merge_with(&self.vmas[pos + 1]);
        if left && right {
            let (prev, next) = (self.vmas[pos - 1].anon_vma, self.vmas[pos + 1].anon_vma);
            let both = match self.rules.merge_new {
                // is_mergeable_anon_vma(prev->anon_vma, next->anon_vma, NULL): not both.
                rules::MergeNew::PrevFirst => !(prev && next),
                // With the next one's anon_vma, a previous VMA with an empty chain refuses,
                // one with its own anon_vma too.
                rules::MergeNew::NextFirst => !next,
            };
            if !both {
                let keep = match self.rules.merge_new {
                    rules::MergeNew::PrevFirst => pos - 1,
                    rules::MergeNew::NextFirst => pos + 1,
                };
                self.join(keep.min(pos), keep.max(pos));
                return;
            }
        }
        self.merge_at(pos);
    }

    /// Merge the adjacent VMAs at `lo` and `lo + 1 == hi` into one.
    fn join(&mut self, lo: usize, hi: usize) {
        debug_assert_eq!(lo + 1, hi);
        let v = self.vmas.remove(hi);
        let a = &mut self.vmas[lo];
        a.end = v.end;
        a.anon_vma |= v.anon_vma;
        a.origin.append(v.origin);
    }

    /// Models `mm/mmap.c: do_munmap()`: remove `[start, start+len)` (page-rounded), splitting
    /// VMAs at the edges. Never merges.
    pub fn munmap(&mut self, start: u64, len: u64) {
        if let Some(len) = crate::addr::page_align(len) {
            self.unmap_range(start, start.saturating_add(len));
        }
    }

    /// Models `mm/mprotect.c: mprotect_fixup()`: split at the edges, change the protection,
    /// add `VM_ACCOUNT` when a private mapping first becomes writable, drop it again for an
    /// anonymous one becoming read-only before it was ever touched, and merge. `why` is
    /// recorded in the changed VMAs' origin.
    pub fn mprotect(&mut self, start: u64, len: u64, prot: Prot, why: &Change) {
        let Some(len) = crate::addr::page_align(len) else {
            return;
        };
        let end = start.saturating_add(len);
        let inside = self.split_range(start, end);
        for v in &mut self.vmas[inside.clone()] {
            if prot.write && !v.prot.write && !v.shared {
                v.account = true;
            }
            v.prot = prot;
            v.origin.changed(why);
        }
        if !inside.is_empty() {
            // Merge from the last changed VMA down to the one before the first.
            let mut i = inside.end;
            while i > inside.start.saturating_sub(1) && i > 0 {
                i -= 1;
                self.merge_at(i);
            }
        }
    }

    /// Split at `start` and `end`; the index range of the VMAs then inside `[start, end)`
    /// (those starting in it).
    fn split_range(&mut self, start: u64, end: u64) -> std::ops::Range<usize> {
        self.split_at(start);
        self.split_at(end);
        let lo = self.vmas.partition_point(|v| v.start < start);
        let hi = self.vmas.partition_point(|v| v.start < end);
        lo..hi
    }

    /// Split the VMA containing `addr` (strictly inside) into two.
    fn split_at(&mut self, addr: u64) {
        let i = self.vmas.partition_point(|v| v.start < addr);
        if let Some(i) = i.checked_sub(1).filter(|&i| addr < self.vmas[i].end) {
            let right = self.vmas[i].slice(addr, self.vmas[i].end);
            self.vmas[i].end = addr;
            self.vmas[i].origin.truncate(addr);
            self.vmas.insert(i + 1, Box::new(right));
        }
    }

    fn unmap_range(&mut self, start: u64, end: u64) {
        let inside = self.split_range(start, end);
        self.vmas.drain(inside);
    }

    /// Merge the VMA at `pos` with its next and previous neighbour where the kernel would.
    fn merge_at(&mut self, pos: usize) {
        if pos + 1 < self.vmas.len() && self.vmas[pos].can_merge_with(&self.vmas[pos + 1]) {
            self.join(pos, pos + 1);
        }
        if pos > 0 && pos < self.vmas.len() && self.vmas[pos - 1].can_merge_with(&self.vmas[pos]) {
            self.join(pos - 1, pos);
        }
    }
}

/// Models `mm/mmap.c: file_mmap_ok()` for a regular file (`MAX_LFS_FILESIZE` =
/// `LLONG_MAX`): `do_mmap()` refuses with EOVERFLOW a file range (page-aligned `len`) that
/// ends beyond it.
fn file_mmap_ok(off: u64, len: u64) -> bool {
    const MAX_LFS_FILESIZE: u64 = i64::MAX as u64;
    len <= MAX_LFS_FILESIZE && off >> 12 <= (MAX_LFS_FILESIZE - len) >> 12
}

/// The layout of a 64-bit task with ASLR off, for tests of the address space's users.
#[cfg(test)]
pub(crate) fn test_layout() -> MmapLayout {
    MmapLayout {
        topdown: true,
        mmap_base: 0x7ffff7fff000,
        mmap_legacy_base: 0x2aaaaaaab000,
        task_size: 0x7ffffffff000,
        task_unmapped_base: 0x2aaaaaaab000,
        mmap_min_addr: 0x1000,
        stack_guard_gap: 0x100000,
        compat: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> MmapLayout {
        test_layout()
    }

    fn file(open_id: u32) -> Arc<FileRef> {
        Arc::new(FileRef {
            path: "/x".into(),
            dev_major: 0xfe,
            dev_minor: 0,
            ino: 1,
            open_id,
            fs_magic: 0xEF53,
            stacked: false,
        })
    }

    fn anon(addr: u64, len: u64, placement: Placement) -> MmapRequest {
        MmapRequest {
            addr,
            len,
            prot: Prot::RW,
            placement,
            shared: false,
            file: None,
            made_by: Maker::DlMinimalMalloc { chunk: 0 },
        }
    }

    #[test]
    fn topdown_places_below_base_and_merges_anon() {
        let mut mm = AddressSpace::new(layout(), rules::test_rules());
        let a = mm.mmap(&anon(0, 0x2000, Placement::Hint)).unwrap();
        assert_eq!(a, 0x7ffff7ffd000);
        let b = mm.mmap(&anon(0, 0x1000, Placement::Hint)).unwrap();
        assert_eq!(b, a - 0x1000);
        assert_eq!(mm.vmas().len(), 1, "adjacent anonymous rw mappings merge");
        // The merged VMA lists both parts, in address order.
        let parts: Vec<_> = mm
            .vmas()
            .next()
            .unwrap()
            .origin
            .0
            .iter()
            .map(|p| (p.start, p.end))
            .collect();
        assert_eq!(parts, vec![(b, a), (a, a + 0x2000)]);
    }

    #[test]
    fn relro_does_not_merge_with_readonly_neighbour() {
        let mut mm = AddressSpace::new(layout(), rules::test_rules());
        let f = file(1);
        let base = 0x10000000;
        let ro = MmapRequest {
            addr: base,
            len: 0x1000,
            prot: Prot::R,
            placement: Placement::Fixed,
            shared: false,
            file: Some((f.clone(), 0)),
            made_by: Maker::DlCache,
        };
        mm.mmap(&ro).unwrap();
        let rw = MmapRequest {
            addr: base + 0x1000,
            len: 0x2000,
            prot: Prot::RW,
            file: Some((f, 0x1000)),
            ..ro
        };
        mm.mmap(&rw).unwrap();
        mm.mprotect(base + 0x1000, 0x1000, Prot::R, &Change::ExecStack);
        let v: Vec<_> = mm.vmas().collect();
        assert_eq!(v.len(), 3);
        assert_eq!((v[1].start, v[1].prot), (base + 0x1000, Prot::R));
        assert_eq!(v[2].offset_at(v[2].start), 0x2000);
        // Each line keeps what made it; the changed one says what changed it.
        assert_eq!(v[1].origin.0.len(), 1);
        assert_eq!(v[1].origin.0[0].changes, vec![Change::ExecStack]);
        assert_eq!(
            (v[1].origin.0[0].start, v[1].origin.0[0].end),
            (base + 0x1000, base + 0x2000)
        );
        assert!(v[2].origin.0[0].changes.is_empty());
    }

    #[test]
    fn different_opens_do_not_merge() {
        let mut mm = AddressSpace::new(layout(), rules::test_rules());
        for (i, id) in [1, 2].into_iter().enumerate() {
            mm.mmap(&MmapRequest {
                addr: 0x10000000 + i as u64 * 0x1000,
                len: 0x1000,
                prot: Prot::R,
                placement: Placement::Fixed,
                shared: false,
                file: Some((file(id), i as u64 * 0x1000)),
                made_by: Maker::DlCache,
            })
            .unwrap();
        }
        assert_eq!(mm.vmas().len(), 2);
    }

    #[test]
    fn fixed_noreplace_refuses_overlap() {
        let mut mm = AddressSpace::new(layout(), rules::test_rules());
        mm.mmap(&anon(0x400000, 0x1000, Placement::Fixed)).unwrap();
        assert!(matches!(
            mm.mmap(&anon(0x400000, 0x1000, Placement::FixedNoReplace)),
            Err(MmError::Exists { .. })
        ));
    }
}
