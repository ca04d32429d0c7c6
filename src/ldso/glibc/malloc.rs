//! DOC: ld.so's start-up allocator. Models glibc 2.36 `elf/dl-minimal-malloc.c`
//! (`__minimal_malloc`, `__minimal_calloc`, `__minimal_free`): a bump allocator that starts
//! in the unused tail of ld.so's last page and takes more memory with anonymous `mmap`s of
//! at least two pages, each placed by the kernel at the moment of the allocation. Nothing is
//! ever given back; only the most recent block can be freed (and is then reused).
//!
//! Every allocation is recorded in a ledger (size, purpose, address), which is what
//! `gdb -ex 'break __minimal_malloc'` on the real ld.so shows; keeping it lets a mismatch
//! be traced to one call in ld.so.

use crate::addr::{align_up, page_align, PAGE_SIZE};
use crate::mm::{Maker, MmError, Placement, Prot, Task};

/// `MALLOC_ALIGNMENT` of the minimal malloc: 16 on x86-64 and on i386 (since glibc 2.26,
/// sysdeps/i386/malloc-alignment.h).
pub const MALLOC_ALIGNMENT: u64 = 16;

/// One allocation, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Allocation {
    /// Requested size in bytes.
    pub size: u64,
    /// What glibc allocates it for (the calling function and object); empty unless the
    /// ledger keeps labels ([`MinimalMalloc::with_labels`], `RtldOptions::ledger`).
    pub what: String,
    /// The address returned.
    pub addr: u64,
    /// This allocation needed a new chunk (an `mmap`).
    pub new_chunk: bool,
    /// Freed again while it was the last block (its bytes were reused).
    pub reclaimed: bool,
}

/// An anonymous chunk mapped by the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Chunk {
    pub start: u64,
    pub end: u64,
}

/// The allocator's state: `alloc_ptr`, `alloc_end`, `alloc_last_block` of
/// dl-minimal-malloc.c, plus the ledger.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MinimalMalloc {
    alloc_ptr: u64,
    alloc_end: u64,
    alloc_last_block: u64,
    /// `alloc_last_block` is an index into `ledger` too (for `reclaimed`).
    last_index: Option<usize>,
    /// ld.so's `_end` (run-time address): where the first arena starts.
    rtld_end: u64,
    /// Whether the ledger keeps each allocation's purpose (`what`); without it the label
    /// is never formatted (the ledger is a debugging aid).
    labels: bool,
    pub ledger: Vec<Allocation>,
    pub chunks: Vec<Chunk>,
}

impl MinimalMalloc {
    /// The allocator before its first call; `rtld_end` is the run-time address of ld.so's
    /// `_end` symbol (end of its last PT_LOAD's memory image).
    pub fn new(rtld_end: u64) -> MinimalMalloc {
        MinimalMalloc {
            rtld_end,
            ..MinimalMalloc::default()
        }
    }

    /// Keep each allocation's purpose in the ledger (or not).
    pub fn with_labels(mut self, on: bool) -> MinimalMalloc {
        self.labels = on;
        self
    }

    /// Models `__minimal_malloc(n)`: on the first call the arena is `[_end, up(_end))`;
    /// align the pointer to 16; if `ptr + n >= end` (note `>=`), `mmap(NULL, up(n) + PAGE,
    /// RW, MAP_ANON|MAP_PRIVATE)` and continue there (unless the new chunk starts exactly at
    /// the old end, which a bottom-up layout can give).
    pub fn malloc(
        &mut self,
        task: &mut Task,
        n: u64,
        what: impl std::fmt::Display,
    ) -> Result<u64, MmError> {
        if self.alloc_end == 0 {
            self.alloc_ptr = self.rtld_end;
            self.alloc_end = page_align(self.rtld_end).unwrap_or(self.rtld_end);
        }
        self.alloc_ptr = align_up(self.alloc_ptr, MALLOC_ALIGNMENT).unwrap_or(u64::MAX);
        let mut new_chunk = false;
        if self.alloc_ptr.saturating_add(n) >= self.alloc_end || n >= self.alloc_ptr.wrapping_neg()
        {
            let nup = page_align(n)
                .ok_or(MmError::NoMemory { len: n })?
                .checked_add(PAGE_SIZE)
                .ok_or(MmError::NoMemory { len: n })?;
            let made_by = Maker::DlMinimalMalloc {
                chunk: self.chunks.len(),
            };
            let page = task.mmap(0, nup, Prot::RW, Placement::Hint, None, made_by)?;
            if page != self.alloc_end {
                self.alloc_ptr = page;
            }
            self.alloc_end = page + nup;
            self.chunks.push(Chunk {
                start: page,
                end: page + nup,
            });
            new_chunk = true;
        }
        self.alloc_last_block = self.alloc_ptr;
        self.alloc_ptr += n;
        self.ledger.push(Allocation {
            size: n,
            what: if self.labels {
                what.to_string()
            } else {
                String::new()
            },
            addr: self.alloc_last_block,
            new_chunk,
            reclaimed: false,
        });
        self.last_index = Some(self.ledger.len() - 1);
        Ok(self.alloc_last_block)
    }

    /// Models `__minimal_calloc(nmemb, size)`: `malloc(nmemb * size)` (fresh memory is zero).
    pub fn calloc(
        &mut self,
        task: &mut Task,
        nmemb: u64,
        size: u64,
        what: impl std::fmt::Display,
    ) -> Result<u64, MmError> {
        let n = nmemb
            .checked_mul(size)
            .ok_or(MmError::NoMemory { len: u64::MAX })?;
        self.malloc(task, n, what)
    }

    /// Models `__minimal_free(ptr)`: only the most recent block can be freed; its bytes are
    /// then handed out again.
    pub fn free(&mut self, ptr: u64) {
        if ptr != 0 && ptr == self.alloc_last_block {
            self.alloc_ptr = self.alloc_last_block;
            if let Some(i) = self.last_index.take() {
                self.ledger[i].reclaimed = true;
            }
        }
    }

    /// Free the block returned by the most recent `malloc` (the common "allocate, use, free"
    /// pattern of the callers).
    pub fn free_last(&mut self) {
        let last = self.alloc_last_block;
        self.free(last);
    }

    /// The address the last allocation returned.
    pub fn last_block(&self) -> u64 {
        self.alloc_last_block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::AddressSpace;

    fn mm() -> Task {
        let mm = AddressSpace::new(crate::mm::test_layout(), crate::mm::rules::test_rules());
        Task {
            mm,
            read_implies_exec: false,
        }
    }

    /// The hello64 ledger as gdb showed it on `__minimal_malloc`: the tail of ld.so (`_end` = base + 0x342d8)
    /// holds the two link maps and the hwcaps tables; the 0x140 system-directory block
    /// opens the first 8 KiB chunk.
    #[test]
    fn ldso_malloc_hello64_first_chunk() {
        let mut mm = mm();
        let mut m = MinimalMalloc::new(0x7ffff7fca000 + 0x342d8);
        for n in [0x5c9, 0x5c9, 0x20, 0xeb, 0x28] {
            m.malloc(&mut mm, n, "x").unwrap();
        }
        assert!(m.chunks.is_empty());
        let a = m.malloc(&mut mm, 0x140, "x").unwrap();
        assert_eq!(m.chunks.len(), 1);
        assert_eq!(m.chunks[0].end - m.chunks[0].start, 0x2000);
        assert_eq!(a, m.chunks[0].start);
        // Free of the last block reuses it.
        let b = m.malloc(&mut mm, 0x20, "y").unwrap();
        m.free(b);
        assert_eq!(m.malloc(&mut mm, 0x10, "z").unwrap(), b);
    }

    #[test]
    fn ldso_malloc_exact_fit_needs_a_chunk() {
        let mut mm = mm();
        let mut m = MinimalMalloc::new(0x10000ff0);
        // 16 bytes left: a 16-byte request does not fit (`>=`).
        m.malloc(&mut mm, 16, "x").unwrap();
        assert_eq!(m.chunks.len(), 1);
    }
}
