//! The process as a dynamic loader's system calls see it: the address space and the
//! personality flag READ_IMPLIES_EXEC, which `do_mmap()`, `do_mprotect_pkey()` and
//! `do_brk_flags()` turn into PROT_EXEC for every readable mapping (i386 programs without
//! PT_GNU_STACK). Both loader models (glibc's and musl's) make their system calls here.

use std::sync::Arc;

use super::{AddressSpace, Change, FileRef, Maker, MmError, MmapRequest, Placement, Prot};
use crate::addr::{page_align, PAGE_SIZE};

/// A task's memory, for the system calls a loader makes.
#[derive(Clone, Debug)]
pub struct Task {
    pub mm: AddressSpace,
    /// READ_IMPLIES_EXEC: every PROT_READ mapping or protection change also gets PROT_EXEC.
    pub read_implies_exec: bool,
}

impl Task {
    fn prot(&self, prot: Prot) -> Prot {
        prot.read_implies_exec(self.read_implies_exec)
    }

    /// mmap(2), private, asked for by `made_by`.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        placement: Placement,
        file: Option<(Arc<FileRef>, u64)>,
        made_by: Maker,
    ) -> Result<u64, MmError> {
        let prot = self.prot(prot);
        self.mm.mmap(&MmapRequest {
            addr,
            len,
            prot,
            placement,
            shared: false,
            file,
            made_by,
        })
    }

    /// mprotect(2) without PROT_GROWSDOWN, for the reason `why`.
    pub fn mprotect(&mut self, start: u64, len: u64, prot: Prot, why: &Change) {
        let prot = self.prot(prot);
        self.mm.mprotect(start, len, prot, why);
    }

    /// munmap(2).
    pub fn munmap(&mut self, start: u64, len: u64) {
        self.mm.munmap(start, len);
    }

    /// Models `mm/mmap.c: SYSCALL_DEFINE1(brk)` (6.18) for a probe and for growing: below
    /// `start_brk` it only reports the current break; growing fails unless a page plus the
    /// stack guard gap stays free below the next VMA; then `do_brk_flags()` (anonymous,
    /// `VM_ACCOUNT`). Returns the new break, or the old one on failure. N.B. RLIMIT_DATA is
    /// not checked (unlimited by default). The one caller is musl's mallocng, whose heap it
    /// is.
    pub fn brk(&mut self, brk: u64) -> u64 {
        let mm = &mut self.mm;
        let origbrk = mm.brk;
        if brk < mm.start_brk {
            return origbrk;
        }
        let (Some(newbrk), Some(oldbrk)) = (page_align(brk), page_align(mm.brk)) else {
            return origbrk;
        };
        if oldbrk == newbrk {
            mm.brk = brk;
            return brk;
        }
        if brk <= mm.brk {
            mm.munmap(newbrk, oldbrk - newbrk);
            mm.brk = brk;
            return brk;
        }
        let gap = mm.layout.stack_guard_gap;
        if let Some(next) = mm.vmas().find(|v| v.end > oldbrk) {
            let start_gap = if next.growsdown {
                next.start.saturating_sub(gap)
            } else {
                next.start
            };
            if newbrk.saturating_add(PAGE_SIZE) > start_gap {
                return origbrk;
            }
        }
        if newbrk > mm.layout.task_size {
            return origbrk;
        }
        if mm
            .vm_brk_flags(oldbrk, newbrk, self.read_implies_exec, Maker::MallocngBrk)
            .is_err()
        {
            return origbrk;
        }
        mm.brk = brk;
        brk
    }
}
