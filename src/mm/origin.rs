//! DOC: provenance. Every VMA knows what made it: each system call that maps memory says
//! why, in the kernel's or the loader's words (the function that made the call), and each
//! protection change says why too. The kernel's merging and splitting keep it: a VMA made
//! of several merged mappings lists each part with its own range; a split keeps, on each
//! side, the parts (clipped) that lie there.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use smallvec::SmallVec;

/// What role an object plays in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The program exec'd (or the program ld.so was asked to run).
    Program,
    /// The dynamic loader (PT_INTERP), or ld.so exec'd as a program.
    Interpreter,
    /// A shared library the loader mapped.
    Library,
}

/// An ELF object whose segments are mapped: its role and its file as maps shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Object {
    pub role: Role,
    pub path: PathBuf,
}

/// What made a mapping: the step of the kernel or of the loader that asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Maker {
    /// `fs/binfmt_elf.c: elf_map()`: the file pages of a PT_LOAD (`phdr` is its index in
    /// the program headers). The first segment of an ET_DYN is mapped over the object's
    /// whole span, and what lies past its own pages is unmapped again.
    ElfMap { object: Arc<Object>, phdr: usize },
    /// `fs/binfmt_elf.c: elf_load()`: the anonymous pages of a PT_LOAD's `.bss` past the
    /// last file page (`vm_brk_flags()`).
    ElfBss { object: Arc<Object>, phdr: usize },
    /// `fs/exec.c: setup_arg_pages()`: the initial stack (argv, envp, auxv at its top).
    Stack,
    /// `arch/x86/entry/vdso/vma.c: map_vdso()`: `[vvar]`, `[vvar_vclock]` or `[vdso]`.
    Vdso,
    /// `arch/x86/entry/vsyscall/vsyscall_64.c`: the `[vsyscall]` gate page.
    Vsyscall,
    /// `elf/dl-map-segments.h: _dl_map_segment()`: the anonymous PROT_NONE reservation that
    /// aligns an object whose `p_align` is larger than a page (its head and tail are
    /// unmapped again).
    DlReservation { object: Arc<Object> },
    /// `elf/dl-map-segments.h: _dl_map_segments()`: the file pages of a PT_LOAD; the
    /// first is mapped over the object's whole span (the later ones over it, MAP_FIXED).
    DlMapSegment { object: Arc<Object>, phdr: usize },
    /// `_dl_map_segments()`: the anonymous zero pages of a PT_LOAD's `.bss`.
    DlZeroFill { object: Arc<Object>, phdr: usize },
    /// `elf/dl-minimal-malloc.c: __minimal_malloc()`: chunk number `chunk` of ld.so's
    /// start-up allocator (link maps, search paths, scope arrays, the static TLS block
    /// and TCB, ...: the allocations in it are in the plan's ledger).
    DlMinimalMalloc { chunk: usize },
    /// `elf/dl-cache.c: _dl_load_cache_lookup()`: `/etc/ld.so.cache`, mapped whole at the
    /// first lookup (unmapped by `_dl_unload_cache()` before AT_ENTRY).
    DlCache,
    /// `elf/rtld.c: dl_main()`: `/etc/ld.so.preload`, mapped while its names are loaded.
    DlPreloadFile,
    /// musl `ldso/dynlink.c: map_library()`: the file pages of a PT_LOAD; the lowest is
    /// mapped over the whole span with its protection (the gaps keep it).
    MuslMapLibrary { object: Arc<Object>, phdr: usize },
    /// musl `map_library()`: the anonymous pages of a writable PT_LOAD's `.bss`.
    MuslZeroFill { object: Arc<Object>, phdr: usize },
    /// musl `src/malloc/mallocng`: `brk()` growth (the `[heap]`: metadata areas).
    MallocngBrk,
    /// musl `src/malloc/mallocng`: an `mmap()` (a group of slots or a large allocation).
    MallocngMmap,
}

/// What changed the protection of part of a mapping after it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// `_dl_map_segments()` (has_holes): the hole between two segments of the span made
    /// PROT_NONE (`---p`, still mapping the file).
    Hole { object: Arc<Object> },
    /// `elf/dl-reloc.c: _dl_protect_relro()` / musl `reloc_all()`: PT_GNU_RELRO made
    /// read-only after relocation.
    Relro { object: Arc<Object> },
    /// `_dl_relocate_object()`: DT_TEXTREL made the segment writable for relocation, and
    /// read-only again.
    TextRel { object: Arc<Object> },
    /// musl `map_library()`: DT_TEXTREL made the whole span `rwx`.
    TextRelRwx { object: Arc<Object> },
    /// `_dl_map_segments()`: the page holding a read-only segment's end made writable to
    /// zero it, and restored.
    ZeroPage { object: Arc<Object> },
    /// `sysdeps/unix/sysv/linux/dl-execstack.c: _dl_make_stack_executable()`: an object
    /// asked for an executable stack.
    ExecStack,
    /// musl mallocng: a metadata area's guard page made PROT_NONE, or the area made
    /// writable.
    Mallocng,
}

/// One part of a VMA: the range it covers, what made it, what changed it since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    #[serde(serialize_with = "crate::addr::hex")]
    pub start: u64,
    #[serde(serialize_with = "crate::addr::hex")]
    pub end: u64,
    #[serde(flatten)]
    pub made_by: Maker,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The kernel placed it on a 2 MiB boundary (`mm/huge_memory.c:
    /// __thp_get_unmapped_area()`), so that it can be mapped with huge pages.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub thp_aligned: bool,
}

/// Where a VMA came from: its parts, in address order, covering it (nearly always one:
/// kept inline, as every VMA has one and they are copied whenever the address space is).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin(pub SmallVec<[Part; 1]>);

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl Origin {
    /// A VMA made in one piece.
    pub fn new(start: u64, end: u64, made_by: Maker) -> Origin {
        Origin(smallvec::smallvec![Part {
            start,
            end,
            made_by,
            changes: Vec::new(),
            thp_aligned: false,
        }])
    }

    /// The parts (clipped) inside `[start, end)`: one side of a split.
    pub fn slice(&self, start: u64, end: u64) -> Origin {
        Origin(
            self.0
                .iter()
                .filter(|p| p.start < end && start < p.end)
                .map(|p| Part {
                    start: p.start.max(start),
                    end: p.end.min(end),
                    made_by: p.made_by.clone(),
                    changes: p.changes.clone(),
                    // The aligned start is the first part's; a later slice does not start
                    // there.
                    thp_aligned: p.thp_aligned && p.start >= start,
                })
                .collect(),
        )
    }

    /// The VMA ends at `end` now (its parts are cut there).
    pub fn truncate(&mut self, end: u64) {
        self.0.retain(|p| p.start < end);
        if let Some(last) = self.0.last_mut() {
            last.end = last.end.min(end);
        }
    }

    /// The next VMA merged into this one.
    pub fn append(&mut self, next: Origin) {
        self.0.extend(next.0);
    }

    /// Every part changed by `change`.
    pub fn changed(&mut self, change: &Change) {
        for p in &mut self.0 {
            p.changes.push(change.clone());
        }
    }
}
