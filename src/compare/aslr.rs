//! DOC: comparing with ASLR on. A real sample (the maps of a run with PF_RANDOMIZE, live or
//! saved) is checked in three steps: the kernel's draws are recovered from the lines each
//! one moves (the stack's end, the vDSO below `mmap_base`, a PIE's first line, the
//! `[heap]`), each recovered value must be one the kernel can draw (in range, a multiple of
//! its unit), and the plan made with exactly those draws must equal the sample line for line
//! (at the entry stop, with memory made by initializers where the model allows it). A
//! library moved against the others, a changed offset, a stack above the highest top, a
//! misaligned PIE or a heap past brk's range then shows up as an impossible draw or a
//! differing line. The plan with every draw 0 is made once and shared by the samples.

use serde::Serialize;

use super::entry::{classify, EntryVerdict};
use super::Diff;
use crate::addr::{hex, PAGE_SIZE};
use crate::error::Result;
use crate::host::Facts;
use crate::kernel::random::{Draw, DrawKind};
use crate::maps::MapsLine;
use crate::mm::{Maker, Role};
use crate::plan::{plan, Config, Plan, Target};
use crate::stage::Stage;

/// One draw recovered from a sample.
#[derive(Clone, Debug, Serialize)]
pub struct Recovered {
    pub kind: DrawKind,
    /// The value used (0 when the sample does not show it).
    #[serde(serialize_with = "hex")]
    pub value: u64,
    /// Its range: `[0, max]` in steps of `unit`.
    #[serde(serialize_with = "hex")]
    pub max: u64,
    #[serde(serialize_with = "hex")]
    pub unit: u64,
    pub bits: f64,
    /// The sample shows it (else any value fits and 0 is used).
    pub observed: bool,
    /// A value the kernel can draw.
    pub possible: bool,
    /// Which line it was read from.
    pub from: String,
}

/// The verdict on one sample.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub draws: Vec<Recovered>,
    /// The plan made with the recovered draws against the sample.
    pub diff: Diff,
    /// At the entry stop: what initializers made.
    pub entry: Option<EntryVerdict>,
    /// Why the sample cannot be a real one (empty: consistent).
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks samples of one program run one way: the reference plan (every draw 0, with
/// PF_RANDOMIZE) is made once.
pub struct Sampler<'a> {
    target: &'a Target,
    config: Config,
    machine: &'a Facts,
    reference: Plan,
    ref_lines: Vec<MapsLine>,
    /// Compare device and inode numbers (a sample from this machine), or not
    /// ([`Sampler::ignoring_ids`]).
    ids: bool,
}

/// The first line whose path is `name`.
fn line_named<'l>(lines: &'l [MapsLine], name: &str) -> Option<&'l MapsLine> {
    lines.iter().find(|l| l.path == name)
}

/// The lowest start of a line named `name`.
fn lowest_named(lines: &[MapsLine], name: &str) -> Option<u64> {
    lines
        .iter()
        .filter(|l| l.path == name)
        .map(|l| l.start)
        .min()
}

/// Where the stack VMA ends: the end of `[stack]`, or of the anonymous lines right above
/// it (maps names only the VMA holding `mm->start_stack`: when ld.so made the lower part
/// executable, the top pages are a VMA of their own, unnamed).
fn stack_end(lines: &[MapsLine]) -> Option<u64> {
    let i = lines.iter().position(|l| l.path == "[stack]")?;
    let mut end = lines[i].end;
    for l in &lines[i + 1..] {
        if l.start != end || l.inode != 0 || !l.path.is_empty() {
            break;
        }
        end = l.end;
    }
    Some(end)
}

/// Record a recovered draw of `kind` (`None`: not visible, 0 used), with a problem if the
/// kernel cannot draw it.
fn record(
    ranges: &[Draw],
    draws: &mut Vec<Recovered>,
    kind: DrawKind,
    value: Option<u64>,
    from: &str,
    problems: &mut Vec<String>,
) {
    let Some(r) = ranges.iter().find(|d| d.kind == kind).copied() else {
        return;
    };
    let observed = value.is_some();
    let value = value.unwrap_or(0);
    let d = Draw { value, ..r };
    let possible = d.possible();
    if !possible {
        problems.push(format!(
            "{}: {value:#x} is not a value the kernel can draw (0..={:#x} in steps of {:#x}), from {from}",
            kind.describe(),
            d.max(),
            d.unit
        ));
    }
    draws.push(Recovered {
        kind,
        value,
        max: d.max(),
        unit: d.unit,
        bits: d.bits(),
        observed,
        possible,
        from: from.to_string(),
    });
}

impl<'a> Sampler<'a> {
    /// The reference plan of `target` under `config` (its `no_aslr`, `seed` and `draws`
    /// are ignored) on `machine`, whose `kernel.randomize_va_space` must not be 0.
    pub fn new(target: &'a Target, config: &Config, machine: &'a Facts) -> Result<Sampler<'a>> {
        let mut config = config.clone();
        config.no_aslr = false;
        config.seed = None;
        config.draws = Some(Vec::new());
        let reference = plan(target, &config, machine)?;
        let ref_lines = crate::render::maps::lines(&reference.mm);
        Ok(Sampler {
            target,
            config,
            machine,
            reference,
            ref_lines,
            ids: true,
        })
    }

    /// Leave device and inode numbers out of the comparison: samples from another machine
    /// (or this one after its files were replaced), which numbers its files otherwise.
    pub fn ignoring_ids(mut self) -> Self {
        self.ids = false;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn target(&self) -> &Target {
        self.target
    }

    pub fn machine(&self) -> &Facts {
        self.machine
    }

    /// The reference plan (every draw 0).
    pub fn reference(&self) -> &Plan {
        &self.reference
    }

    /// Whether the exec randomises at all (PF_RANDOMIZE).
    pub fn randomized(&self) -> bool {
        self.reference.exec.pf_randomize
    }

    /// The draws the plan makes, with their ranges (values 0).
    fn ranges(&self) -> &[Draw] {
        &self.reference.exec.draws
    }

    /// Recover the draws behind `sample` (maps text), plan with them, and compare.
    pub fn check(&self, sample: &str) -> Result<Verdict> {
        let lines = match MapsLine::parse_all(sample) {
            Ok(l) => l,
            Err(e) => {
                return Ok(Verdict {
                    draws: Vec::new(),
                    diff: Diff::new("", sample),
                    entry: None,
                    problems: vec![format!("not a maps file: {e}")],
                })
            }
        };
        let mut problems = Vec::new();
        let mut draws: Vec<Recovered> = Vec::new();
        let range = |k: DrawKind| self.ranges().iter().find(|d| d.kind == k).copied();
        let ranges = self.ranges();
        macro_rules! put {
            ($kind:expr, $value:expr, $from:expr, $problems:expr) => {
                record(ranges, &mut draws, $kind, $value, $from, $problems)
            };
        }
        let r = &self.ref_lines;
        // The stack: its end is STACK_TOP minus randomize_stack_top()'s pages minus what
        // arch_align_stack() took (below 8 KiB: 0, 1 or 2 pages once page-aligned).
        match (stack_end(r), stack_end(&lines)) {
            (Some(a), Some(b)) if b <= a => {
                let x = a - b;
                let top = range(DrawKind::StackTop).map_or(0, |d| d.max());
                let (t, e) = [
                    (x, 0),
                    (x.wrapping_sub(PAGE_SIZE), PAGE_SIZE),
                    (x.wrapping_sub(2 * PAGE_SIZE), 2 * PAGE_SIZE - 1),
                ]
                .into_iter()
                .find(|(t, _)| *t <= top)
                .unwrap_or((x, 0));
                put!(DrawKind::StackTop, Some(t), "[stack]'s end", &mut problems);
                put!(DrawKind::StackEnd, Some(e), "[stack]'s end", &mut problems);
            }
            (Some(a), Some(b)) => {
                problems.push(format!(
                    "the stack ends at {b:#x}, above the highest top the kernel uses ({a:#x})"
                ));
            }
            _ => {}
        }
        put!(DrawKind::StackPointer, None, "", &mut problems);
        // The vDSO's own draw (kernels up to v6.8, 64-bit tasks): vdso_addr() puts it a
        // random number of pages above the page after the argument strings, which the stack
        // draws place (and which decide the draw's range: none when the stack is at the
        // top); the vvar pages come first.
        let e = &self.reference.exec;
        if e.kernel.rules.vdso_hinted(e.abi) {
            let mut config = self.config.clone();
            config.draws = Some(draws.iter().map(|d| (d.kind, d.value)).collect());
            let q = plan(self.target, &config, self.machine)?;
            let start = crate::addr::page_align(q.exec.stack.arg_start).unwrap_or(u64::MAX);
            let low = ["[vvar]", "[vvar_vclock]", "[vdso]"]
                .iter()
                .filter_map(|n| line_named(&lines, n).map(|l| l.start))
                .min();
            let ranges = &q.exec.draws;
            match low {
                Some(b) if b >= start => record(
                    ranges,
                    &mut draws,
                    DrawKind::VdsoAddr,
                    Some(b - start),
                    "[vvar]/[vdso]",
                    &mut problems,
                ),
                // Below the hint: placed as if it had none (the hint was not free).
                _ => record(
                    ranges,
                    &mut draws,
                    DrawKind::VdsoAddr,
                    None,
                    "",
                    &mut problems,
                ),
            }
        }
        // mmap_base: the first mapping exec makes without an address (the interpreter, or
        // a program that is its own loader, else the vDSO) goes right below mmap_base, or
        // at the legacy base; the rest of the mmap area follows from it.
        let topdown = self.reference.exec.mm.layout.topdown;
        let anchor = self
            .first_unhinted()
            .and_then(|n| Some((n.clone(), lowest_named(r, &n)?, lowest_named(&lines, &n)?)));
        if let Some((name, a, b)) = anchor {
            let v = if topdown {
                a.checked_sub(b)
            } else {
                b.checked_sub(a)
            };
            match v {
                Some(v) => put!(DrawKind::MmapBase, Some(v), &name, &mut problems),
                None => problems.push(format!(
                    "{name} at {b:#x} is {} the place mmap_base can put it ({a:#x})",
                    if topdown {
                        "above the highest"
                    } else {
                        "below the lowest"
                    },
                )),
            }
        } else {
            put!(DrawKind::MmapBase, None, "", &mut problems);
        }
        // A PIE's load_bias: ELF_ET_DYN_BASE plus the draw, aligned down to its p_align.
        if range(DrawKind::LoadBias).is_some() {
            let first = self.reference.mm.vmas().find(|v| {
                v.origin.0.first().is_some_and(|p| {
                    matches!(&p.made_by, Maker::ElfMap { object, .. } if object.role == Role::Program)
                })
            });
            let name = first.and_then(|v| {
                self.ref_lines
                    .iter()
                    .find(|l| l.start == v.start)
                    .map(|l| l.path.clone())
            });
            match name.and_then(|n| Some((line_named(r, &n)?, line_named(&lines, &n)?))) {
                Some((a, b)) if b.start >= a.start => {
                    put!(
                        DrawKind::LoadBias,
                        Some(self.load_bias_draw(b.start - a.start)),
                        "the program's first line",
                        &mut problems
                    )
                }
                Some((a, b)) => problems.push(format!(
                    "the program starts at {:#x}, below ELF_ET_DYN_BASE's {:#x}",
                    b.start, a.start
                )),
                None => put!(DrawKind::LoadBias, None, "", &mut problems),
            }
        }
        // start_brk: where the [heap] starts, above the end of the bss as the other draws
        // put it (a PIE's brk moves with its load_bias): planned once without it first.
        let values = |draws: &[Recovered]| draws.iter().map(|d| (d.kind, d.value)).collect();
        let mut config = self.config.clone();
        config.draws = Some(values(&draws));
        let mut p = plan(self.target, &config, self.machine)?;
        if range(DrawKind::Brk).is_some() {
            let base = p.mm.start_brk;
            match line_named(&lines, "[heap]") {
                Some(h) if h.start >= base => {
                    put!(DrawKind::Brk, Some(h.start - base), "[heap]", &mut problems);
                    if h.start != base {
                        config.draws = Some(values(&draws));
                        p = plan(self.target, &config, self.machine)?;
                    }
                }
                Some(h) => problems.push(format!(
                    "the [heap] starts at {:#x}, below the lowest start_brk ({base:#x})",
                    h.start
                )),
                None => {
                    // Kernels that name a VMA reaching start_brk [heap] name the .bss so
                    // when brk did not move: a .bss line without the name shows a draw
                    // (any one; the smallest is held against the range).
                    let named = crate::render::maps::lines(&p.mm)
                        .iter()
                        .any(|l| l.path == "[heap]");
                    if named {
                        let unit = range(DrawKind::Brk).map_or(PAGE_SIZE, |d| d.unit);
                        put!(
                            DrawKind::Brk,
                            Some(unit),
                            "no line named [heap]: start_brk is above the .bss",
                            &mut problems
                        );
                        config.draws = Some(values(&draws));
                        p = plan(self.target, &config, self.machine)?;
                    } else {
                        put!(DrawKind::Brk, None, "", &mut problems)
                    }
                }
            }
        }
        let (mut diff, mut entry) = self.judge(&p, sample);
        if !self.matches(&diff, &entry) && problems.is_empty() {
            // Draws the maps show only through their effects: try the other values that
            // would change what the sample shows, and keep the first that explains it.
            for (kind, value) in self.alternatives(&p, &draws, &lines) {
                let mut v: Vec<(DrawKind, u64)> = values(&draws);
                v.retain(|(k, _)| *k != kind);
                v.push((kind, value));
                config.draws = Some(v);
                let q = plan(self.target, &config, self.machine)?;
                let (d, e) = self.judge(&q, sample);
                if self.matches(&d, &e) {
                    if let Some(r) = draws.iter_mut().find(|r| r.kind == kind) {
                        r.value = value;
                        r.observed = true;
                        r.from = match kind {
                            DrawKind::StackPointer => {
                                "where the stack's executable part ends".into()
                            }
                            _ => format!("{} (2 MiB-aligned mappings above it)", r.from),
                        };
                    }
                    (diff, entry) = (d, e);
                    break;
                }
            }
        }
        if !self.matches(&diff, &entry) {
            match &entry {
                Some(v) => {
                    for m in &v.mismatches {
                        problems.push(format!("a line the draws do not explain: {m}"));
                    }
                }
                None => {
                    let (po, oo) = diff.one_sided();
                    for m in oo.iter().take(3) {
                        problems.push(format!("a line the draws do not explain: {m}"));
                    }
                    for m in po.iter().take(3) {
                        problems.push(format!("a line the draws predict that is not there: {m}"));
                    }
                }
            }
        }
        Ok(Verdict {
            draws,
            diff,
            entry,
            problems,
        })
    }

    /// The maps name of the first mapping exec makes without an address: the
    /// interpreter, or a program that is its own loader (ET_DYN without PT_INTERP), else
    /// the vDSO's `[vvar]`.
    fn first_unhinted(&self) -> Option<String> {
        let e = &self.reference.exec;
        let role = if e.interp.is_some() {
            Some(Role::Interpreter)
        } else if e.e_type == goblin::elf::header::ET_DYN {
            Some(Role::Program)
        } else {
            None
        };
        let by_role = role.and_then(|role| {
            let v = self.reference.exec.mm.vmas().find(|v| {
                v.origin.0.iter().any(
                    |p| matches!(&p.made_by, Maker::ElfMap { object, .. } if object.role == role),
                )
            })?;
            crate::render::maps::lines(&self.reference.exec.mm)
                .into_iter()
                .find(|l| l.start == v.start)
                .map(|l| l.path)
        });
        // Where vdso_addr() gives the vDSO a hint of its own, it says nothing of mmap_base.
        let hinted = e.kernel.rules.vdso_hinted(e.abi);
        by_role.or_else(|| {
            if hinted {
                return None;
            }
            ["[vvar]", "[vdso]"]
                .iter()
                .find(|n| line_named(&self.ref_lines, n).is_some())
                .map(|n| n.to_string())
        })
    }

    /// The plan `p` against `sample`: the diff, and at the entry stop what initializers
    /// made.
    fn judge(&self, p: &Plan, sample: &str) -> (Diff, Option<EntryVerdict>) {
        let predicted = crate::render::maps::render(&p.mm);
        let diff = if self.ids {
            Diff::new(&predicted, sample)
        } else {
            super::diff_without_ids(&predicted, sample, p.mm.rules.name_pad)
        };
        let entry = (self.config.stage == Stage::Entry && !diff.identical()).then(|| {
            let (po, oo) = diff.one_sided();
            classify(&p.mm, &po, &oo)
        });
        (diff, entry)
    }

    fn matches(&self, diff: &Diff, entry: &Option<EntryVerdict>) -> bool {
        diff.identical() || entry.as_ref().is_some_and(|v| v.ok())
    }

    /// Other values of the draws a sample shows only through their effects, to try when
    /// the first guess does not explain it:
    /// - the stack pointer's `arch_align_stack()` decides where `__libc_stack_end` is, and
    ///   so where ld.so's `_dl_make_stack_executable()` stops (the page holding it and
    ///   everything below become executable): the values that move it one or two pages
    ///   down;
    /// - `mmap_base` read from the vDSO is ambiguous when a mapping above the vDSO was
    ///   2 MiB-aligned at exec (`__thp_get_unmapped_area()`: a static PIE or the loader run
    ///   as a program, of 2 MiB or more): every value up to 2 MiB either side.
    fn alternatives(
        &self,
        p: &Plan,
        draws: &[Recovered],
        lines: &[MapsLine],
    ) -> Vec<(DrawKind, u64)> {
        let mut out = Vec::new();
        let sp = p.exec.stack.start_stack;
        if draws.iter().any(|d| d.kind == DrawKind::StackPointer) {
            let first = (sp & (PAGE_SIZE - 1)) + 16;
            for e in [first, first + PAGE_SIZE] {
                if e < 8192 {
                    out.push((DrawKind::StackPointer, e));
                }
            }
        }
        let Some(m) = draws.iter().find(|d| d.kind == DrawKind::MmapBase) else {
            return out;
        };
        // The vDSO's own reading: right below mmap_base when the anchor above it was
        // aligned down and left room.
        let topdown = self.reference.exec.mm.layout.topdown;
        for n in ["[vvar]", "[vdso]"] {
            if let (Some(a), Some(b)) = (lowest_named(&self.ref_lines, n), lowest_named(lines, n)) {
                if let Some(v) = if topdown {
                    a.checked_sub(b)
                } else {
                    b.checked_sub(a)
                } {
                    if v != m.value && v <= m.max {
                        out.push((DrawKind::MmapBase, v));
                    }
                }
                break;
            }
        }
        // Aligned placements at exec: every value up to the alignment either side.
        let thp_at_exec = p
            .exec
            .mm
            .vmas()
            .any(|v| v.origin.0.iter().any(|part| part.thp_aligned));
        let e = &self.reference.exec;
        let max_align = |img: &crate::elf::ElfImage| crate::elf::maximum_alignment(&img.phdrs);
        let align = if e.interp.is_some() {
            e.interp_image.as_deref().map_or(0, max_align)
        } else {
            max_align(&e.program_image)
        };
        const PMD: u64 = 2 << 20;
        let window = if thp_at_exec {
            align.max(PMD)
        } else if align > PAGE_SIZE {
            align
        } else {
            0
        };
        for k in 1..=window.min(64 << 20) / PAGE_SIZE {
            let step = k * PAGE_SIZE;
            for v in [m.value.checked_add(step), m.value.checked_sub(step)]
                .into_iter()
                .flatten()
            {
                if v <= m.max {
                    out.push((DrawKind::MmapBase, v));
                }
            }
        }
        out
    }

    /// The smallest draw that moves the PIE `delta` above the reference. The kernel takes
    /// `(ELF_ET_DYN_BASE + draw) & ~(p_align - 1)` (fs/binfmt_elf.c: load_elf_binary()), so
    /// every draw in `[T - ELF_ET_DYN_BASE, T - ELF_ET_DYN_BASE + p_align)` gives the
    /// aligned base `T`; the smallest is the one to hold against the range.
    fn load_bias_draw(&self, delta: u64) -> u64 {
        let e = &self.reference.exec;
        let first_vaddr = e
            .program_image
            .loads()
            .next()
            .map_or(0, |p| crate::addr::page_start(p.p_vaddr));
        let target = e.load_bias.wrapping_add(first_vaddr).wrapping_add(delta);
        crate::addr::page_align(target.saturating_sub(e.profile.elf_et_dyn_base))
            .unwrap_or(u64::MAX)
    }
}
