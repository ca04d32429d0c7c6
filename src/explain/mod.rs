//! DOC: explaining a plan. Everything here is read off what the models recorded (each
//! VMA's provenance, the kernel's random draws and stack layout, the loader's objects and
//! allocations) plus the objects' section headers and symbol tables: why each maps line is
//! there, where each section lands, where the regions of the classic picture are (kernel
//! space, stack, mmap area, heap, the program's bss/data/text, the unmapped bottom), and
//! where a symbol, a string or an address is.

pub mod annotate;
pub mod find;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::addr::{hex, opt_hex};
use crate::elf::sections::{self, Section, SymbolTable};
use crate::elf::ElfImage;
use crate::kernel::random::{Draw, DrawKind};
use crate::maps::MapsLine;
use crate::mm::{Change, Maker, Origin, Role, Vma};
use crate::plan::{LoaderRun, Plan};

/// The explanation of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub program: PathBuf,
    pub stage: crate::stage::Stage,
    /// 32 or 64.
    pub bits: u32,
    /// "PIE", "non-PIE (ET_EXEC)", "static PIE", "static non-PIE", "shared object".
    pub kind: String,
    /// The kernel randomises this exec (PF_RANDOMIZE): addresses hold for this draw only.
    pub aslr: bool,
    /// The seed of the draws (`--seed`), when they are reproducible.
    pub seed: Option<u64>,
    /// The mmap layout: top-down from `mmap_base` (flexible), or bottom-up (legacy).
    pub topdown: bool,
    /// The address space from the top down, as the classic picture names it.
    pub regions: Vec<Region>,
    /// Each maps line with what it is and why.
    pub lines: Vec<Line>,
    /// The program, the interpreter and each library: where each section landed.
    pub objects: Vec<ObjectView>,
    /// What `create_elf_tables()` put at the top of the stack.
    pub stack: StackView,
    /// The kernel's random draws for this exec.
    pub draws: Vec<Draw>,
    pub totals: Totals,
    /// Where the lines were read from when they were observed (a maps file given to
    /// `explain --maps`), not predicted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

/// One region of the picture.
#[derive(Clone, Debug, Serialize)]
pub struct Region {
    #[serde(serialize_with = "hex")]
    pub start: u64,
    #[serde(serialize_with = "hex")]
    pub end: u64,
    pub kind: RegionKind,
    /// Its name in the picture ("stack", "mmap area", ".text of ls" ...).
    pub name: String,
    /// Why it is where it is, with the rule's source.
    pub note: String,
    /// Where a random offset may put its boundary, when ASLR is on: `[low, high)`.
    pub random: Option<RandomBand>,
}

/// A range a random draw may move something within.
#[derive(Clone, Debug, Serialize)]
pub struct RandomBand {
    #[serde(serialize_with = "hex")]
    pub low: u64,
    #[serde(serialize_with = "hex")]
    pub high: u64,
    /// Random bits of the draw.
    pub bits: f64,
    /// What moves ("stack top", "mmap_base", "start_brk", "load_bias").
    pub what: String,
}

/// The kinds of region of the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// Above TASK_SIZE: the kernel's (or, for a compat task, nothing).
    KernelSpace,
    /// Addresses a 64-bit task cannot use (between the two canonical halves).
    NonCanonical,
    Stack,
    /// Free space between regions.
    Gap,
    /// Where `get_unmapped_area()` puts mappings: libraries, ld.so, the vDSO, anonymous memory.
    MmapArea,
    Heap,
    /// The program's sections: headers and read-only data, code, RELRO, data, bss.
    ProgramReadOnly,
    ProgramText,
    ProgramData,
    ProgramBss,
    /// Never mapped: below `vm.mmap_min_addr`.
    NullGuard,
}

/// One maps line explained.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    #[serde(flatten)]
    pub maps: MapsLine,
    /// A short label ("text", "RELRO", "bss tail", "ld.so's malloc" ...).
    pub label: String,
    /// Why it is there, each with the function that did it.
    pub reasons: Vec<Reason>,
    /// The object it belongs to (index in [`Explanation::objects`]).
    pub object: Option<usize>,
    /// The allocated sections (or parts) it holds.
    pub sections: Vec<String>,
    pub origin: Origin,
}

/// A reason, with the function that made it so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub text: String,
    pub source: String,
}

fn reason(text: impl Into<String>, source: impl Into<String>) -> Reason {
    Reason {
        text: text.into(),
        source: source.into(),
    }
}

/// An object and its sections at their run-time addresses.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectView {
    pub role: Role,
    pub path: PathBuf,
    /// What is added to its link-time addresses (`load_bias`, `l_addr`, musl's `base`).
    #[serde(serialize_with = "hex")]
    pub base: u64,
    pub sections: Vec<SectionView>,
    /// Which symbol table its symbols come from (`None`: neither).
    pub symbols: Option<SymbolTable>,
    /// Where ASLR may put its base (the random draw that moves it), when ASLR is on.
    pub random: Option<RandomBand>,
    /// Its place in the loader's global lookup scope (the namespace list: the program,
    /// then the libraries breadth-first, ld.so where libc names it); `None` when no
    /// loader has run (the exec stop) or it is not in the scope.
    pub scope: Option<usize>,
    /// The main thread's copy of its TLS block (thread pointer minus its TLS offset,
    /// x86's TLS variant II), when ld.so has placed the static TLS block.
    #[serde(serialize_with = "opt_hex")]
    pub tls_block: Option<u64>,
    #[serde(skip)]
    pub(crate) image: Option<Arc<ElfImage>>,
    #[serde(skip)]
    pub(crate) section_headers: Vec<Section>,
    #[serde(skip)]
    pub(crate) in_scope: bool,
}

/// A section at its run-time address.
#[derive(Clone, Debug, Serialize)]
pub struct SectionView {
    pub name: String,
    #[serde(serialize_with = "hex")]
    pub start: u64,
    #[serde(serialize_with = "hex")]
    pub end: u64,
    /// The maps line it starts in (index in [`Explanation::lines`]).
    pub line: Option<usize>,
    /// A TLS template (`.tdata`, `.tbss`): each thread's copy lives elsewhere.
    pub tls: bool,
}

/// The top of the initial stack.
#[derive(Clone, Debug, Serialize)]
pub struct StackView {
    #[serde(serialize_with = "hex")]
    pub top: u64,
    /// The initial stack pointer: `argc`.
    #[serde(serialize_with = "hex")]
    pub argc: u64,
    #[serde(serialize_with = "hex")]
    pub argv: u64,
    #[serde(serialize_with = "hex")]
    pub envp: u64,
    #[serde(serialize_with = "hex")]
    pub auxv: u64,
    /// AT_RANDOM: the 16 random bytes.
    #[serde(serialize_with = "hex")]
    pub random_bytes: u64,
    /// AT_PLATFORM: the platform string.
    #[serde(serialize_with = "hex")]
    pub platform: u64,
    /// The argv strings (`mm->arg_start`), the environment strings (`mm->env_start`),
    /// the filename (AT_EXECFN).
    #[serde(serialize_with = "hex")]
    pub arg_strings: u64,
    #[serde(serialize_with = "hex")]
    pub env_strings: u64,
    #[serde(serialize_with = "hex")]
    pub execfn: u64,
}

/// Totals, as `pmap` gives them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// All mappings (VSZ).
    pub total: u64,
    pub file_backed: u64,
    pub anonymous: u64,
    /// Per file: bytes mapped.
    pub per_object: Vec<(String, u64)>,
}

impl Totals {
    /// The totals of maps lines: file-backed are those with an inode. The sums saturate:
    /// lines pasted from elsewhere may overlap and add up past 2^64.
    pub fn of<'a>(lines: impl IntoIterator<Item = &'a crate::maps::MapsLine>) -> Totals {
        let mut t = Totals::default();
        for l in lines {
            let n = l.end.saturating_sub(l.start);
            t.total = t.total.saturating_add(n);
            if l.inode != 0 {
                t.file_backed = t.file_backed.saturating_add(n);
                match t.per_object.iter_mut().find(|(p, _)| *p == l.path) {
                    Some((_, x)) => *x = x.saturating_add(n),
                    None => t.per_object.push((l.path.clone(), n)),
                }
            } else {
                t.anonymous = t.anonymous.saturating_add(n);
            }
        }
        t
    }
}

/// The region of the classic picture a line of the program's is in, and its short name,
/// from the line's label and permissions (a plan's lines and a pasted file's alike).
pub(crate) fn program_region(label: &str, perms: &str) -> (RegionKind, &'static str) {
    match label {
        "text" => (RegionKind::ProgramText, "text"),
        "bss tail" => (RegionKind::ProgramBss, "bss"),
        "data" => (RegionKind::ProgramData, "data"),
        _ if perms.starts_with("rw") => (RegionKind::ProgramData, "data"),
        _ => (RegionKind::ProgramReadOnly, "read-only"),
    }
}

/// The label of the program's part of a maps line, from its permissions.
fn segment_label(perms: &str) -> &'static str {
    match &perms[..3] {
        "r-x" | "rwx" | "--x" => "text",
        "rw-" => "data",
        "r--" => "read-only data",
        "---" => "reserved (---p)",
        _ => "segment",
    }
}

impl Explanation {
    /// Whether the addresses are known: ASLR off, or the draws of a given seed.
    pub fn concrete(&self) -> bool {
        !self.aslr || self.seed.is_some()
    }

    /// Explain `plan`, made with the draws of `seed` (if given), whose maps lines are
    /// `lines_text` (`render::maps::lines()`: one per VMA, then the gate area's).
    pub fn of(plan: &Plan, lines_text: Vec<MapsLine>, seed: Option<u64>) -> Explanation {
        let e = &plan.exec;
        let vmas: Vec<&Vma> = plan.mm.vmas().chain(&plan.mm.gate_vma).collect();
        let mut objects = objects_of(plan);
        base_bands(plan, &mut objects);
        let mut lines: Vec<Line> = lines_text
            .into_iter()
            .zip(&vmas)
            .map(|(maps, v)| explain_line(plan, &objects, maps, v))
            .collect();
        for (k, o) in objects.iter_mut().enumerate() {
            for s in &mut o.sections {
                s.line = lines
                    .iter()
                    .position(|l| l.maps.start <= s.start && s.start < l.maps.end);
            }
            for (i, l) in lines.iter_mut().enumerate() {
                if l.object != Some(k) {
                    continue;
                }
                let _ = i;
                l.sections = o
                    .sections
                    .iter()
                    .filter(|s| s.start < l.maps.end && l.maps.start < s.end.max(s.start + 1))
                    .map(|s| s.name.clone())
                    .collect();
            }
        }
        let st = &e.stack;
        let stack = StackView {
            top: st.vm_end,
            argc: st.start_stack,
            argv: st.argv,
            envp: st.envp,
            auxv: st.auxv,
            random_bytes: st.random_bytes,
            platform: st.platform,
            arg_strings: st.arg_start,
            env_strings: st.env_start,
            execfn: st.execfn,
        };
        let totals = Totals::of(lines.iter().map(|l| &l.maps));
        let regions = regions(plan, &lines);
        Explanation {
            program: e.program_file.path.clone(),
            stage: plan.stage,
            bits: if e.abi.word() == 8 { 64 } else { 32 },
            kind: program_kind(plan),
            aslr: e.pf_randomize,
            seed: if e.pf_randomize { seed } else { None },
            topdown: e.mm.layout.topdown,
            regions,
            lines,
            objects,
            stack,
            draws: e.draws.clone(),
            totals,
            observed: None,
        }
    }
}

/// The objects of the plan: the program, the interpreter, the loader's libraries, each
/// with its base and its allocated sections at run time.
fn objects_of(plan: &Plan) -> Vec<ObjectView> {
    let e = &plan.exec;
    let mut out = Vec::new();
    let mut push = |role: Role,
                    path: PathBuf,
                    base: u64,
                    image: Option<Arc<ElfImage>>,
                    scope: Option<usize>,
                    tls_block: Option<u64>| {
        if let Some(o) = out.iter_mut().find(|o: &&mut ObjectView| o.path == path) {
            // Met again in the loader's list: its place in the scope.
            o.scope = o.scope.or(scope);
            o.in_scope = o.scope.is_some();
            o.tls_block = o.tls_block.or(tls_block);
            return;
        }
        let (section_headers, symbols) = match &image {
            Some(img) => {
                let secs = sections::sections(img).unwrap_or_default();
                let which = sections::symbols(img, &secs).ok().flatten().map(|(w, _)| w);
                (secs, which)
            }
            None => (Vec::new(), None),
        };
        let views = section_headers
            .iter()
            .filter(|s| s.is_alloc() && s.sh_size > 0)
            .map(|s| SectionView {
                name: s.name.clone(),
                start: base.wrapping_add(s.sh_addr),
                end: base.wrapping_add(s.sh_addr).wrapping_add(s.sh_size),
                line: None,
                tls: s.is_tls(),
            })
            .collect();
        out.push(ObjectView {
            role,
            path,
            base,
            sections: views,
            symbols,
            random: None,
            scope,
            tls_block,
            image,
            section_headers,
            in_scope: scope.is_some(),
        });
    };
    push(
        Role::Program,
        e.program_file.path.clone(),
        e.load_bias,
        Some(e.program_image.clone()),
        None,
        None,
    );
    if let (Some(i), Some(f)) = (&e.interp, &e.interp_file) {
        push(
            Role::Interpreter,
            f.path.clone(),
            i.load_addr,
            e.interp_image.clone(),
            None,
            None,
        );
    }
    let images = |path: &std::path::Path| -> Option<Arc<ElfImage>> {
        plan.deps.as_ref().and_then(|g| {
            g.objects
                .iter()
                .find(|o| o.host_path == path || o.realpath == path)
                .and_then(|o| o.image.clone())
        })
    };
    match &plan.loader {
        Some(LoaderRun::Glibc(l)) => {
            use crate::ldso::glibc::MapKind;
            let tp = l.tls.as_ref().map(|t| t.tp);
            for (n, m) in l.maps.iter().enumerate() {
                let Some(p) = &m.path else { continue };
                let role = match m.kind {
                    MapKind::Program => Role::Program,
                    MapKind::Library => Role::Library,
                    MapKind::Rtld => Role::Interpreter,
                    MapKind::Vdso => continue,
                };
                let tls = tp.zip(m.tls_offset).map(|(tp, off)| tp.wrapping_sub(off));
                push(role, p.clone(), m.l_addr, images(p), Some(n), tls);
            }
        }
        Some(LoaderRun::Musl(l)) => {
            use crate::ldso::musl::DsoKind;
            for (n, d) in l.dsos.iter().enumerate() {
                let Some(p) = &d.path else { continue };
                let role = match d.kind {
                    DsoKind::App => Role::Program,
                    DsoKind::Library => Role::Library,
                    DsoKind::Ldso => Role::Interpreter,
                    DsoKind::Vdso => continue,
                };
                push(role, p.clone(), d.base, images(p), Some(n), None);
            }
        }
        None => {}
    }
    out
}

/// What kind of program this is.
fn program_kind(plan: &Plan) -> String {
    let e = &plan.exec;
    let dynamic = e.interp.is_some();
    match (e.e_type == goblin::elf::header::ET_DYN, dynamic) {
        (true, true) => "PIE".into(),
        (false, true) => "non-PIE (ET_EXEC)".into(),
        (true, false) => "static PIE".into(),
        (false, false) => "static non-PIE (ET_EXEC)".into(),
    }
}

/// Where the random draws may put each object's base: a PIE's `load_bias` moves with
/// `arch_mmap_rnd()` added to ELF_ET_DYN_BASE; the interpreter and the libraries move with
/// `mmap_base` (down from it, or up from the legacy base). Their place relative to it is
/// fixed, up to the 2 MiB alignment of large files, which the band does not include.
fn base_bands(plan: &Plan, objects: &mut [ObjectView]) {
    let e = &plan.exec;
    let l = &e.mm.layout;
    let draw = |k: DrawKind| e.draws.iter().find(|d| d.kind == k).copied();
    for o in objects.iter_mut() {
        o.random = match o.role {
            Role::Program if e.e_type == goblin::elf::header::ET_DYN && o.base == e.load_bias => {
                draw(DrawKind::LoadBias).map(|d| RandomBand {
                    low: o.base - d.value,
                    high: o.base - d.value + d.max(),
                    bits: d.bits(),
                    what: "load_bias (ELF_ET_DYN_BASE + arch_mmap_rnd())".into(),
                })
            }
            Role::Program => None,
            _ => draw(DrawKind::MmapBase).map(|d| {
                if l.topdown {
                    RandomBand {
                        low: (o.base + d.value).saturating_sub(d.max()),
                        high: o.base + d.value,
                        bits: d.bits(),
                        what: "moves with mmap_base (arch_mmap_rnd())".into(),
                    }
                } else {
                    RandomBand {
                        low: o.base - d.value,
                        high: o.base - d.value + d.max(),
                        bits: d.bits(),
                        what: "moves with the legacy mmap base (arch_mmap_rnd())".into(),
                    }
                }
            }),
        };
    }
}

/// The short name of an object for a label.
fn short(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// What a maps line is, and why, from what made it.
fn explain_line(plan: &Plan, objects: &[ObjectView], maps: MapsLine, v: &Vma) -> Line {
    let mut reasons = Vec::new();
    let mut label = String::new();
    let mut object = None;
    let e = &plan.exec;
    for part in &v.origin.0 {
        let obj = match &part.made_by {
            Maker::ElfMap { object, .. }
            | Maker::ElfBss { object, .. }
            | Maker::DlMapSegment { object, .. }
            | Maker::DlZeroFill { object, .. }
            | Maker::DlReservation { object }
            | Maker::MuslMapLibrary { object, .. }
            | Maker::MuslZeroFill { object, .. } => Some(object.clone()),
            _ => None,
        };
        if let Some(o) = &obj {
            object = objects.iter().position(|x| x.path == o.path).or(object);
        }
        let phdr_of = |phdr: usize| -> String {
            let img = object.and_then(|k| objects[k].image.clone());
            match img.and_then(|i| i.phdrs.get(phdr).cloned()) {
                Some(ph) => format!(
                    "PT_LOAD #{phdr} (p_vaddr {:#x}, p_filesz {:#x}, p_memsz {:#x}, flags {})",
                    ph.p_vaddr,
                    ph.p_filesz,
                    ph.p_memsz,
                    pflags(ph.p_flags)
                ),
                None => format!("PT_LOAD #{phdr}"),
            }
        };
        let who = obj.as_ref().map(|o| short(&o.path)).unwrap_or_default();
        match &part.made_by {
            Maker::ElfMap { object: o, phdr } => {
                label = segment_label(&maps.perms).to_string();
                let first_ro = o.role == Role::Program
                    && maps.perms.starts_with("r--")
                    && part.start == v.start
                    && is_first_line(plan, &maps);
                reasons.push(reason(
                    format!(
                        "{who}'s {}, mapped from the file by the kernel at exec",
                        phdr_of(*phdr)
                    ),
                    "fs/binfmt_elf.c: elf_map()",
                ));
                if first_ro {
                    reasons.push(reason(
                        "the first segment holds the ELF and program headers and the read-only data before .text (ld -z separate-code puts code in a segment of its own), so the program's first line is r--p, not r-xp",
                        "ld: -z separate-code",
                    ));
                }
                if part.start == v.start && is_first_line(plan, &maps) {
                    reasons.push(placement_reason(plan, o.role, &who));
                }
            }
            Maker::ElfBss { phdr, .. } => {
                label = "bss tail".into();
                reasons.push(reason(
                    format!("the part of {who}'s .bss past its last file page: {} has p_memsz > p_filesz, and the rest is anonymous zero memory", phdr_of(*phdr)),
                    "fs/binfmt_elf.c: elf_load() -> vm_brk_flags()",
                ));
            }
            Maker::Stack => {
                label = "stack".into();
                reasons.push(reason(
                    format!(
                        "the initial stack: argv, envp and auxv at its top (argc at {:#x}), {} KiB reserved below the arguments; it grows down to RLIMIT_STACK",
                        e.stack.start_stack,
                        crate::kernel::profile::STACK_EXPAND >> 10
                    ),
                    "fs/exec.c: setup_arg_pages(), fs/binfmt_elf.c: create_elf_tables()",
                ));
            }
            Maker::Vdso => {
                label = maps.path.trim_matches(|c| c == '[' || c == ']').to_string();
                reasons.push(reason(
                    "the vDSO (kernel code run in user mode: clock_gettime, gettimeofday ...) and its data pages ([vvar]), mapped by the kernel at exec just below the interpreter",
                    "arch/x86/entry/vdso/vma.c: map_vdso()",
                ));
            }
            Maker::Vsyscall => {
                label = "vsyscall".into();
                reasons.push(reason(
                    "the legacy vsyscall page, at a fixed address above TASK_SIZE in every 64-bit process (execute-only: calls trap into the kernel)",
                    "arch/x86/entry/vsyscall/vsyscall_64.c",
                ));
            }
            Maker::DlMapSegment { phdr, .. } => {
                label = segment_label(&maps.perms).to_string();
                reasons.push(reason(
                    format!("{who}'s {}, mapped by the dynamic loader", phdr_of(*phdr)),
                    "elf/dl-map-segments.h: _dl_map_segments()",
                ));
            }
            Maker::DlReservation { .. } => {
                label = "alignment reservation".into();
                reasons.push(reason(
                    format!("part of the PROT_NONE reservation made to align {who} to its p_align"),
                    "elf/dl-map-segments.h: _dl_map_segment()",
                ));
            }
            Maker::DlZeroFill { phdr, .. } => {
                label = "bss tail".into();
                reasons.push(reason(
                    format!("the part of {who}'s .bss past its last file page ({}): anonymous zero pages", phdr_of(*phdr)),
                    "elf/dl-map-segments.h: _dl_map_segments()",
                ));
            }
            Maker::DlMinimalMalloc { chunk } => {
                label = "ld.so's malloc".into();
                let holds = ledger_in(plan, part.start, part.end);
                reasons.push(reason(
                    format!(
                        "memory of ld.so's start-up allocator (chunk {chunk}){}",
                        if holds.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", holds)
                        }
                    ),
                    "elf/dl-minimal-malloc.c: __minimal_malloc()",
                ));
            }
            Maker::DlCache => {
                label = "ld.so.cache".into();
                reasons.push(reason(
                    "the library cache, mapped whole at the first search; unmapped before the program starts",
                    "elf/dl-cache.c: _dl_load_cache_lookup()",
                ));
            }
            Maker::DlPreloadFile => {
                label = "ld.so.preload".into();
                reasons.push(reason(
                    "/etc/ld.so.preload, read by ld.so",
                    "elf/rtld.c: dl_main()",
                ));
            }
            Maker::MuslMapLibrary { phdr, .. } => {
                label = segment_label(&maps.perms).to_string();
                reasons.push(reason(
                    format!("{who}'s {}, mapped by musl's loader (the lowest segment over the whole span: gaps keep its protection)", phdr_of(*phdr)),
                    "musl ldso/dynlink.c: map_library()",
                ));
            }
            Maker::MuslZeroFill { phdr, .. } => {
                label = "bss tail".into();
                reasons.push(reason(
                    format!(
                        "the part of {who}'s .bss past its last file page ({})",
                        phdr_of(*phdr)
                    ),
                    "musl ldso/dynlink.c: map_library()",
                ));
            }
            Maker::MallocngBrk => {
                label = "musl's heap".into();
                reasons.push(reason(
                    "musl's mallocng: metadata areas from brk (its first page a guard)",
                    "musl src/malloc/mallocng/malloc.c: alloc_meta()",
                ));
            }
            Maker::MallocngMmap => {
                label = "musl's malloc".into();
                reasons.push(reason(
                    "musl's mallocng: a group of slots or a large allocation",
                    "musl src/malloc/mallocng/malloc.c",
                ));
            }
        }
        if part.thp_aligned && part.start == v.start {
            reasons.push(reason(
                if obj.is_some() {
                    format!("{who} starts on a 2 MiB boundary: the kernel gives a file mapping with at least 2 MiB past its offset, on a filesystem whose files can use huge pages (ext4, xfs, btrfs), a PMD-aligned address (since v5.18, 64-bit tasks); smaller objects then fill the gap it leaves below the previous mapping")
                } else {
                    "on a 2 MiB boundary: an anonymous mapping whose length is a multiple of 2 MiB is PMD-aligned (since v6.7, 64-bit tasks)".to_string()
                },
                "mm/huge_memory.c: __thp_get_unmapped_area()",
            ));
        }
        for c in &part.changes {
            let r = match c {
                Change::Relro { .. } => {
                    label = "RELRO".into();
                    reason(
                        format!("{who}'s PT_GNU_RELRO (.data.rel.ro, .dynamic, .got ...): written during relocation, then made read-only, so part of the writable segment shows r--p"),
                        if matches!(plan.loader, Some(LoaderRun::Musl(_))) {
                            "musl ldso/dynlink.c: reloc_all()"
                        } else {
                            "elf/dl-reloc.c: _dl_protect_relro()"
                        },
                    )
                }
                Change::Hole { .. } => {
                    label = "gap (---p)".into();
                    reason(
                        format!("the hole between two segments of {who}: the loader maps the whole span at once (so that the segments keep their relative places) and makes the hole PROT_NONE; it still maps the file"),
                        "elf/dl-map-segments.h: _dl_map_segments()",
                    )
                }
                Change::TextRel { .. } => reason(
                    format!("{who} has DT_TEXTREL: its code was made writable to relocate it, then read-only again"),
                    "elf/dl-reloc.c: _dl_relocate_object()",
                ),
                Change::TextRelRwx { .. } => reason(
                    format!("{who} has DT_TEXTREL: musl makes its whole span rwx"),
                    "musl ldso/dynlink.c: map_library()",
                ),
                Change::ZeroPage { .. } => reason(
                    "the page holding the end of a read-only segment's file image was made writable to zero its tail, and restored",
                    "elf/dl-map-segments.h: _dl_map_segments()",
                ),
                Change::ExecStack => reason(
                    "an object asked for an executable stack (PT_GNU_STACK with PF_X, or none)",
                    "sysdeps/unix/sysv/linux/dl-execstack.c: _dl_make_stack_executable()",
                ),
                Change::Mallocng => reason(
                    "mallocng changed the protection of a metadata page",
                    "musl src/malloc/mallocng/malloc.c: alloc_meta()",
                ),
            };
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
    }
    if maps.path == "[heap]" && label.is_empty() {
        label = "heap".into();
    }
    if v.origin.0.len() > 1 {
        reasons.push(reason(
            format!("{} mappings merged into one line: adjacent, same permissions and flags, and (for files) the same open file at contiguous offsets", v.origin.0.len()),
            "mm/vma.c: vma_merge_new_range()",
        ));
    }
    Line {
        maps,
        label,
        reasons,
        object,
        sections: Vec::new(),
        origin: v.origin.clone(),
    }
}

/// Why the kernel put the program (or the interpreter) where it is.
fn placement_reason(plan: &Plan, role: Role, who: &str) -> Reason {
    let e = &plan.exec;
    let p = &e.profile;
    let randomized = if e.pf_randomize {
        " plus a random offset (arch_mmap_rnd())"
    } else {
        ""
    };
    let is_dyn = e.e_type == goblin::elf::header::ET_DYN;
    let text = match role {
        Role::Interpreter => format!(
            "the interpreter is an ET_DYN mapped with no address asked: get_unmapped_area() puts it at the top of the mmap area (below mmap_base {:#x}){randomized}",
            e.mm.layout.mmap_base
        ),
        _ if is_dyn && e.interp.is_some() => format!(
            "a PIE is placed at ELF_ET_DYN_BASE {:#x} (2/3 of TASK_SIZE, out of the way of the stack, the mmap area and ET_EXEC programs' link addresses){randomized}: load_bias {:#x}",
            p.elf_et_dyn_base, e.load_bias
        ),
        _ if is_dyn => format!(
            "a static PIE (ET_DYN without PT_INTERP) is placed like an interpreter, where get_unmapped_area() finds room in the mmap area: load_bias {:#x}",
            e.load_bias
        ),
        _ => {
            let first = e.program_image.loads().next().map_or(0, |ph| ph.p_vaddr);
            let default = match (e.abi.word(), first) {
                (8, 0x400000) => " (GNU ld's default link address on x86-64)",
                (4, 0x08048000) => " (GNU ld's default link address on i386, from the System V i386 ABI: 128 MiB + 288 KiB)",
                _ => "",
            };
            format!("{who} is ET_EXEC: mapped at the addresses it was linked for, p_vaddr {first:#x}{default}; never randomised")
        }
    };
    reason(text, "fs/binfmt_elf.c: load_elf_binary()")
}

/// Whether `maps` is the lowest line of its file.
fn is_first_line(plan: &Plan, maps: &MapsLine) -> bool {
    plan.mm
        .vmas()
        .find(|v| matches!(&v.backing, crate::mm::Backing::File { file, .. } if file.ino == maps.inode && file.path.to_string_lossy() == maps.path))
        .is_some_and(|v| v.start == maps.start)
}

/// `PF_R|PF_W|PF_X` as `RWE`.
fn pflags(f: u32) -> String {
    let mut s = String::new();
    s.push(if f & 4 != 0 { 'R' } else { ' ' });
    s.push(if f & 2 != 0 { 'W' } else { ' ' });
    s.push(if f & 1 != 0 { 'E' } else { ' ' });
    s.trim_end().to_string()
}

/// What ld.so's minimal malloc put in `[start, end)`, in a few words.
fn ledger_in(plan: &Plan, start: u64, end: u64) -> String {
    let Some(LoaderRun::Glibc(l)) = &plan.loader else {
        return String::new();
    };
    let mut what: Vec<String> = Vec::new();
    for a in &l.malloc.ledger {
        if a.addr >= start && a.addr < end && !a.what.is_empty() {
            let w = a.what.split(" of ").next().unwrap_or(&a.what).to_string();
            let w = if w.starts_with("link_map") {
                "link maps".into()
            } else {
                w
            };
            if !what.contains(&w) {
                what.push(w);
            }
        }
    }
    if let Some(t) = &l.tls {
        if t.allocated >= start && t.allocated < end && !what.iter().any(|w| w.contains("TLS")) {
            what.push("the static TLS block and TCB".into());
        }
    }
    what.truncate(8);
    what.join(", ")
}

/// The regions of the classic picture, from the top down.
fn regions(plan: &Plan, lines: &[Line]) -> Vec<Region> {
    let e = &plan.exec;
    let l = &e.mm.layout;
    let p = &e.profile;
    let mut out = Vec::new();
    let word = e.abi.word();
    let draw = |k: DrawKind| e.draws.iter().find(|d| d.kind == k).copied();
    if word == 8 {
        out.push(Region {
            start: 0xffff_8000_0000_0000,
            end: u64::MAX,
            kind: RegionKind::KernelSpace,
            name: "kernel space".into(),
            note: "the upper canonical half belongs to the kernel; only the [vsyscall] page is visible in maps".into(),
            random: None,
        });
        out.push(Region {
            start: l.task_size,
            end: 0xffff_8000_0000_0000,
            kind: RegionKind::NonCanonical,
            name: "non-canonical".into(),
            note: format!("above TASK_SIZE {:#x} (one page below 2^47, kept unmapped), addresses whose bits 47-63 are not all equal cannot be used (4-level paging)", l.task_size),
            random: None,
        });
    } else if e.kernel.rules.arch == crate::kernel::rules::KernelArch::I386 {
        out.push(Region {
            start: l.task_size,
            end: 0x1_0000_0000,
            kind: RegionKind::KernelSpace,
            name: "kernel space (3G/1G)".into(),
            note: format!(
                "a 32-bit kernel ({}) keeps the top of every address space for itself: TASK_SIZE is PAGE_OFFSET {:#x} (CONFIG_VMSPLIT_3G), whatever the personality",
                e.kernel.release, l.task_size
            ),
            random: None,
        });
    } else if l.task_size < 0x1_0000_0000 {
        out.push(Region {
            start: l.task_size,
            end: 0x1_0000_0000,
            kind: RegionKind::KernelSpace,
            name: if l.task_size == crate::kernel::profile::IA32_PAGE_OFFSET_3GB {
                "not usable (3G/1G)".into()
            } else {
                "above TASK_SIZE".into()
            },
            note: if l.task_size == crate::kernel::profile::IA32_PAGE_OFFSET_3GB {
                "ADDR_LIMIT_3GB (setarch --3gb) limits the task to 3 GiB, as a 32-bit kernel's 3G/1G split does".into()
            } else {
                "a 32-bit program on a 64-bit kernel may use nearly all 4 GiB: the kernel is not in its address space".into()
            },
            random: None,
        });
    }
    // The stack.
    let stack = lines.iter().find(|x| x.maps.path == "[stack]");
    if let Some(s) = stack {
        let st = draw(DrawKind::StackTop);
        out.push(Region {
            start: s.maps.start,
            end: s.maps.end,
            kind: RegionKind::Stack,
            name: "stack".into(),
            note: format!(
                "grows down from STACK_TOP {:#x}{}; argv, envp and auxv at its top",
                p.stack_top,
                if st.is_some() {
                    " minus a random offset"
                } else {
                    ""
                }
            ),
            random: st.map(|d| RandomBand {
                low: p.stack_top - d.max(),
                high: p.stack_top,
                bits: d.bits(),
                what: "stack top (randomize_stack_top)".into(),
            }),
        });
    }
    // The mmap area: every line of files other than the program, and anonymous memory
    // that is neither the stack, the heap nor the program's bss.
    let program = e.program_file.path.to_string_lossy().into_owned();
    let is_program =
        |x: &Line| x.maps.path == program || x.label == "bss tail" && x.object == Some(0);
    let in_mmap: Vec<&Line> = lines
        .iter()
        .filter(|x| {
            x.maps.path != "[stack]"
                && x.maps.path != "[heap]"
                && x.maps.path != "[vsyscall]"
                && !is_program(x)
                && x.maps.end <= l.task_size
        })
        .collect();
    if let (Some(lo), Some(hi)) = (
        in_mmap.iter().map(|x| x.maps.start).min(),
        in_mmap.iter().map(|x| x.maps.end).max(),
    ) {
        let mr = draw(DrawKind::MmapBase);
        out.push(Region {
            start: lo,
            end: hi,
            kind: RegionKind::MmapArea,
            name: "mmap area".into(),
            note: if l.topdown {
                format!("libraries, ld.so, the vDSO and anonymous memory, placed top-down from mmap_base {:#x} (TASK_SIZE minus the stack's room: RLIMIT_STACK, the stack's random range and the guard gap)", l.mmap_base)
            } else {
                format!("the legacy layout: mappings placed bottom-up from TASK_UNMAPPED_BASE {:#x} (TASK_SIZE / 3), so libraries can lie below the program's text", l.mmap_legacy_base)
            },
            random: mr.map(|d| {
                let base = if l.topdown { l.mmap_base } else { l.mmap_legacy_base };
                let r = d.value;
                if l.topdown {
                    RandomBand { low: base + r - d.max(), high: base + r, bits: d.bits(), what: "mmap_base (arch_mmap_rnd)".into() }
                } else {
                    RandomBand { low: base - r, high: base - r + d.max(), bits: d.bits(), what: "mmap_legacy_base (arch_mmap_rnd)".into() }
                }
            }),
        });
    }
    // The heap.
    if let Some(h) = lines.iter().find(|x| x.maps.path == "[heap]") {
        out.push(Region {
            start: h.maps.start,
            end: h.maps.end,
            kind: RegionKind::Heap,
            name: "heap".into(),
            note: format!("grows up from start_brk {:#x} (brk)", plan.mm.start_brk),
            random: brk_band(plan),
        });
    } else {
        out.push(Region {
            start: plan.mm.start_brk,
            end: plan.mm.start_brk,
            kind: RegionKind::Heap,
            name: "heap (empty)".into(),
            note: format!(
                "start_brk {:#x}: the heap starts here when malloc first grows it with brk",
                plan.mm.start_brk
            ),
            random: brk_band(plan),
        });
    }
    // The program's lines.
    for x in lines.iter().filter(|x| is_program(x)) {
        let (kind, name) = program_region(&x.label, &x.maps.perms);
        out.push(Region {
            start: x.maps.start,
            end: x.maps.end,
            kind,
            name: format!("{name}: {}", x.sections.join(" ")),
            note: x
                .reasons
                .first()
                .map(|r| r.text.clone())
                .unwrap_or_default(),
            random: None,
        });
    }
    // The bottom: below an ET_EXEC program, its link address.
    if e.e_type == goblin::elf::header::ET_EXEC {
        if let Some(lo) = lines
            .iter()
            .filter(|x| is_program(x))
            .map(|x| x.maps.start)
            .min()
        {
            if lo > l.mmap_min_addr {
                out.push(Region {
                    start: l.mmap_min_addr,
                    end: lo,
                    kind: RegionKind::Gap,
                    name: "below the program's link address".into(),
                    note: format!("an ET_EXEC program is linked to run at {lo:#x}: nothing is placed below it unless mmap runs out of room above"),
                    random: None,
                });
            }
        }
    }
    // The bottom.
    out.push(Region {
        start: 0,
        end: l.mmap_min_addr,
        kind: RegionKind::NullGuard,
        name: "never mapped".into(),
        note: format!(
            "below vm.mmap_min_addr ({:#x}): a NULL pointer dereference faults",
            l.mmap_min_addr
        ),
        random: None,
    });
    out.sort_by(|a, b| b.start.cmp(&a.start).then(b.end.cmp(&a.end)));
    out
}

/// Where `arch_randomize_brk()` may put `start_brk`.
fn brk_band(plan: &Plan) -> Option<RandomBand> {
    let d = plan.exec.draws.iter().find(|d| d.kind == DrawKind::Brk)?;
    let low = plan.mm.start_brk - d.value;
    Some(RandomBand {
        low,
        high: low + d.max() + d.unit,
        bits: d.bits(),
        what: "start_brk (arch_randomize_brk)".into(),
    })
}

/// The objects in the loader's lookup order (its global scope), then those outside it.
pub(crate) fn lookup_order(x: &Explanation) -> Vec<usize> {
    let mut v: Vec<usize> = (0..x.objects.len()).collect();
    v.sort_by_key(|&i| (x.objects[i].scope.is_none(), x.objects[i].scope, i));
    v
}
