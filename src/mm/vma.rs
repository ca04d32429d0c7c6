//! `Vma`: the fields of `struct vm_area_struct` (include/linux/mm_types.h) that decide what
//! `/proc/PID/maps` shows and whether two neighbours merge.

use std::path::PathBuf;
use std::sync::Arc;

/// Protection bits of a mapping (`VM_READ`, `VM_WRITE`, `VM_EXEC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const NONE: Prot = Prot::new(false, false, false);
    pub const R: Prot = Prot::new(true, false, false);
    pub const RW: Prot = Prot::new(true, true, false);
    pub const RX: Prot = Prot::new(true, false, true);
    pub const RWX: Prot = Prot::new(true, true, true);

    pub const fn new(read: bool, write: bool, exec: bool) -> Prot {
        Prot { read, write, exec }
    }

    /// From ELF `p_flags` (PF_X = 1, PF_W = 2, PF_R = 4), as `make_prot()` in
    /// fs/binfmt_elf.c does before READ_IMPLIES_EXEC is applied.
    pub fn from_p_flags(p_flags: u32) -> Prot {
        Prot::new(p_flags & 4 != 0, p_flags & 2 != 0, p_flags & 1 != 0)
    }

    /// From the permission characters of a maps line (`r-xp`, `--x` ...).
    pub fn from_perms(perms: &str) -> Prot {
        let b = perms.as_bytes();
        Prot::new(
            b.first() == Some(&b'r'),
            b.get(1) == Some(&b'w'),
            b.get(2) == Some(&b'x'),
        )
    }

    /// The personality flag READ_IMPLIES_EXEC: every readable mapping also gets `VM_EXEC`
    /// (mm/mmap.c: do_mmap(), `if ((prot & PROT_READ) && (current->personality & READ_IMPLIES_EXEC))`).
    pub fn read_implies_exec(self, on: bool) -> Prot {
        Prot {
            exec: self.exec || (on && self.read),
            ..self
        }
    }
}

/// The file a mapping is backed by: what the maps line prints (dev, inode, canonical path),
/// plus `open_id`, which stands for the `struct file`: VMAs of two different opens of the
/// same file never merge (mm/vma.c: is_mergeable_vma() compares `vm_file`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileRef {
    /// As d_path() shows it: absolute, symlinks resolved.
    pub path: PathBuf,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    /// Which open of the file this is (one per `open()` in the modelled process).
    pub open_id: u32,
    /// The `statfs` magic of the file's filesystem here: whether its `get_unmapped_area`
    /// is `thp_get_unmapped_area` (ext4, xfs, btrfs, ...) decides the 2 MiB alignment of
    /// hint-less file mappings on 64-bit ([`super::rules::MmRules::thp_file_capable`]).
    pub fs_magic: i64,
    /// The file is on a stacking filesystem (overlayfs): its `f_op->mmap` swaps `vm_file`
    /// for the backing file, so a new mapping never merges with its neighbour at mmap time
    /// (the merge compares the caller's file with the neighbour's backing file). Observed on
    /// 6.18: READ_IMPLIES_EXEC segments stay separate lines on overlayfs, merge on ext4.
    pub stacked: bool,
}

impl FileRef {
    /// Open number `open_id` of the file `id`, as its mappings will show it: the
    /// filesystem's magic decides THP alignment (by the kernel's rules) and `stacked`
    /// (overlayfs).
    pub fn open(id: crate::host::fs::FileId, open_id: u32) -> Arc<FileRef> {
        Arc::new(FileRef {
            fs_magic: id.fs_magic,
            stacked: id.fs_magic == super::unmapped_area::OVERLAYFS_SUPER_MAGIC,
            dev_major: libc::major(id.dev),
            dev_minor: libc::minor(id.dev),
            ino: id.ino,
            path: id.path,
            open_id,
        })
    }
}

/// What a VMA maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A private or shared file mapping; `offset` is the byte offset of `start` in the file.
    File { file: Arc<FileRef>, offset: u64 },
    /// Anonymous memory (bss tails, brk, malloc chunks, the stack).
    Anon,
    /// A special mapping with a fixed name (`[vvar]`, `[vvar_vclock]`, `[vdso]`).
    Special(&'static str),
}

/// One `struct vm_area_struct`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    /// `VM_SHARED` (maps prints `s` instead of `p`).
    pub shared: bool,
    /// `VM_ACCOUNT`: set on private mappings that are, or once were made, writable; part of
    /// the flags compared for merging (why a RELRO `r--p` never merges with rodata).
    pub account: bool,
    /// `VM_GROWSDOWN` (the stack).
    pub growsdown: bool,
    /// The VMA has an `anon_vma`: anonymous memory of it was written (the stack, the
    /// loaders' allocators' memory). Not part of what merging compares, but what decides
    /// between neighbours that cannot all be merged ([`super::rules::MergeNew`]).
    pub anon_vma: bool,
    pub backing: Backing,
    /// What made it (not part of what the kernel compares for merging).
    pub origin: super::origin::Origin,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Byte offset in the file of address `addr` inside this VMA (0 for anonymous memory).
    pub fn offset_at(&self, addr: u64) -> u64 {
        match &self.backing {
            Backing::File { offset, .. } => offset.wrapping_add(addr - self.start),
            _ => 0,
        }
    }

    /// The part `[start, end)` of this VMA (which must lie inside it).
    pub fn slice(&self, start: u64, end: u64) -> Vma {
        let backing = match &self.backing {
            Backing::File { file, .. } => Backing::File {
                file: file.clone(),
                offset: self.offset_at(start),
            },
            b => b.clone(),
        };
        Vma {
            start,
            end,
            prot: self.prot,
            shared: self.shared,
            account: self.account,
            growsdown: self.growsdown,
            anon_vma: self.anon_vma,
            backing,
            origin: self.origin.slice(start, end),
        }
    }

    /// Whether `next`, starting where `self` ends, would be merged into one VMA by the kernel
    /// (mm/vma.c: is_mergeable_vma(), is_mergeable_anon_vma(), can_vma_merge_after()).
    /// Flags must be equal, files the same open with contiguous offsets, or both anonymous.
    /// Special mappings never merge.
    pub fn can_merge_with(&self, next: &Vma) -> bool {
        if self.end != next.start
            || self.prot != next.prot
            || self.shared != next.shared
            || self.account != next.account
            || self.growsdown != next.growsdown
        {
            return false;
        }
        match (&self.backing, &next.backing) {
            (Backing::Anon, Backing::Anon) => true,
            // On a stacking filesystem (overlayfs) file VMAs were never seen to merge, neither
            // at mmap nor at mprotect time (6.18: the RELRO part of a READ_IMPLIES_EXEC
            // segment stays a line of its own), so they never merge here.
            (Backing::File { file: a, .. }, _) if a.stacked => false,
            (
                Backing::File {
                    file: a,
                    offset: oa,
                },
                Backing::File {
                    file: b,
                    offset: ob,
                },
            ) => a.open_id == b.open_id && a.path == b.path && *ob == oa.wrapping_add(self.len()),
            _ => false,
        }
    }
}
