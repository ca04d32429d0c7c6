//! DOC: how random each region is, computed from the model: the kernel's draws with their
//! ranges (kernel::random), and what alignment takes away. A region moved by a draw of
//! `count` values has `log2(count)` bits, less when the result is aligned: a PIE whose
//! p_align is 2 MiB keeps one base per 2 MiB of the draw's range (9 bits fewer); a library
//! in the mmap area moves with `mmap_base`, and where a 2 MiB-aligned mapping sits above it
//! (`__thp_get_unmapped_area()`, or its own p_align), its place depends only on some of
//! `mmap_base`'s bits. For those, the plan is made for each of the 512 page offsets of
//! `mmap_base` within 2 MiB (a shift by a whole 2 MiB moves everything by 2 MiB): the bits
//! are those of the 2 MiB steps plus log2 of the distinct page offsets the region shows.
//! Regions moved by one draw share it: one leaked address gives all of them.
//!
//! Measuring (N real runs to the exec stop) gives, per region, the distinct values and the
//! range seen; the bits are estimated from the range (a uniform draw's expected sample
//! range is (N-1)/(N+1) of the whole), in units of the spacing the values show.

use std::collections::BTreeMap;

use serde::Serialize;

use super::aslr::Sampler;
use crate::addr::{hex, PAGE_SIZE};
use crate::error::Result;
use crate::kernel::random::DrawKind;
use crate::maps::MapsLine;
use crate::mm::{Maker, Role};
use crate::plan::{plan, Plan};

/// 2 MiB: the alignment of THP-aligned mappings.
const PMD: u64 = 2 << 20;

/// One region's randomness, from the model.
#[derive(Clone, Debug, Serialize)]
pub struct RegionEntropy {
    pub region: String,
    /// The draw that moves it (regions with the same draw move together).
    pub draw: Option<DrawKind>,
    pub bits: f64,
    /// Its lowest and highest place.
    #[serde(serialize_with = "hex")]
    pub low: u64,
    #[serde(serialize_with = "hex")]
    pub high: u64,
    /// The step between its possible places.
    #[serde(serialize_with = "hex")]
    pub unit: u64,
    pub note: String,
}

/// What N real runs showed for a region.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub region: String,
    pub samples: usize,
    pub distinct: usize,
    #[serde(serialize_with = "hex")]
    pub low: u64,
    #[serde(serialize_with = "hex")]
    pub high: u64,
    /// The spacing of the values seen (the gcd of their differences).
    #[serde(serialize_with = "hex")]
    pub unit: u64,
    /// Bits estimated from the range seen.
    pub bits: f64,
    /// The model's bits for the region.
    pub model_bits: Option<f64>,
}

fn log2(x: f64) -> f64 {
    if x <= 1.0 {
        0.0
    } else {
        x.log2()
    }
}

/// The first line of each object (program, interpreter, library) and of the vDSO in `p`,
/// by maps name, with its role.
fn object_starts(p: &Plan) -> Vec<(String, Option<Role>, u64, bool)> {
    let lines = crate::render::maps::lines(&p.mm);
    let mut out: Vec<(String, Option<Role>, u64, bool)> = Vec::new();
    for (l, v) in lines.iter().zip(p.mm.vmas()) {
        let role = v.origin.0.iter().find_map(|part| match &part.made_by {
            Maker::ElfMap { object, .. }
            | Maker::DlMapSegment { object, .. }
            | Maker::MuslMapLibrary { object, .. } => Some(object.role),
            _ => None,
        });
        let named = role.is_some() || l.path == "[vdso]";
        if !named || out.iter().any(|(n, ..)| *n == l.path) {
            continue;
        }
        let thp = v.origin.0.first().is_some_and(|p| p.thp_aligned);
        out.push((l.path.clone(), role, l.start, thp));
    }
    out
}

/// The randomness of each region of `sampler`'s program, from the model.
pub fn model(sampler: &Sampler) -> Result<Vec<RegionEntropy>> {
    let reference = sampler.reference();
    let e = &reference.exec;
    let mut out = Vec::new();
    if !e.pf_randomize {
        return Ok(out);
    }
    let draw = |k: DrawKind| e.draws.iter().find(|d| d.kind == k).copied();
    let topdown = e.mm.layout.topdown;
    let vdso_hinted = e.kernel.rules.vdso_hinted(e.abi);
    // The program.
    if let Some(d) = draw(DrawKind::LoadBias) {
        let align = crate::elf::maximum_alignment(&e.program_image.phdrs);
        let b = e.profile.elf_et_dyn_base;
        let lo = b & !(align - 1);
        let hi = (b + d.max()) & !(align - 1);
        out.push(RegionEntropy {
            region: "the program (load_bias)".into(),
            draw: Some(DrawKind::LoadBias),
            bits: log2(((hi - lo) / align + 1) as f64),
            low: lo,
            high: hi,
            unit: align,
            note: if align > PAGE_SIZE {
                format!(
                    "ELF_ET_DYN_BASE + arch_mmap_rnd(), aligned down to its p_align {align:#x}: {:.0} bits fewer than the draw",
                    log2((align / PAGE_SIZE) as f64)
                )
            } else {
                "ELF_ET_DYN_BASE + arch_mmap_rnd() (fs/binfmt_elf.c: load_elf_binary())".into()
            },
        });
    } else if e.e_type == goblin::elf::header::ET_EXEC {
        let at = e
            .program_image
            .loads()
            .next()
            .map_or(0, |p| crate::addr::page_start(p.p_vaddr));
        out.push(RegionEntropy {
            region: "the program (ET_EXEC)".into(),
            draw: None,
            bits: 0.0,
            low: at,
            high: at,
            unit: PAGE_SIZE,
            note: "linked for a fixed address: never randomised".into(),
        });
    }
    // mmap_base and everything placed from it, by the plan at each page offset of the
    // draw within 2 MiB.
    if let Some(d) = draw(DrawKind::MmapBase) {
        let base = if topdown {
            e.mm.layout.mmap_base
        } else {
            e.mm.layout.mmap_legacy_base
        };
        out.push(RegionEntropy {
            region: "mmap_base".into(),
            draw: Some(DrawKind::MmapBase),
            bits: d.bits(),
            low: if topdown { base - d.max() } else { base },
            high: if topdown { base } else { base + d.max() },
            unit: d.unit,
            note: "arch_pick_mmap_layout(): arch_mmap_rnd() pages (vm.mmap_rnd_bits, or vm.mmap_rnd_compat_bits for a 32-bit task)".into(),
        });
        let steps = (d.max() / PMD + 1) as f64;
        let starts = object_starts(reference);
        let aligned = starts.iter().any(|(.., thp)| *thp)
            || reference.mm.vmas().any(|v| {
                v.origin
                    .0
                    .iter()
                    .any(|p| matches!(p.made_by, Maker::DlReservation { .. }))
            });
        // Page offsets within 2 MiB each object shows, over the 512 offsets of the draw.
        let mut residues: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
        let mut extent: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let offsets: Vec<u64> = if aligned {
            (0..PMD / PAGE_SIZE)
                .map(|k| k * PAGE_SIZE)
                .filter(|v| *v <= d.max())
                .collect()
        } else {
            vec![0]
        };
        for v in &offsets {
            let p = sampler.plan_with(&[(DrawKind::MmapBase, *v)])?;
            for (name, role, start, _) in object_starts(&p) {
                // A PIE has its own draw, an ET_EXEC none: only a program that is its
                // own loader (static PIE, ld.so run as a program) moves with mmap_base.
                if role == Some(Role::Program)
                    && (draw(DrawKind::LoadBias).is_some()
                        || e.e_type == goblin::elf::header::ET_EXEC)
                {
                    continue;
                }
                // The vDSO moves with mmap_base unless vdso_addr() gives it a place of its
                // own above the stack (below).
                if role.is_none() && (name != "[vdso]" || vdso_hinted) {
                    continue;
                }
                residues
                    .entry(name.clone())
                    .or_default()
                    .insert(start % PMD);
                let x = extent.entry(name).or_insert((start, start));
                x.0 = x.0.min(start);
                x.1 = x.1.max(start);
            }
        }
        for (name, res) in residues {
            let (a, b) = extent[&name];
            let bits = if aligned {
                log2(steps) + log2(res.len() as f64)
            } else {
                d.bits()
            };
            let short = name.rsplit('/').next().unwrap_or(&name).to_string();
            // Over the offsets planned the object spans [a, b]; the whole 2 MiB steps of
            // the draw move it further.
            let whole = if aligned {
                d.max() - d.max() % PMD
            } else {
                d.max()
            };
            let (low, high) = if topdown {
                (a.saturating_sub(whole), b)
            } else {
                (a, b + whole)
            };
            out.push(RegionEntropy {
                region: short,
                draw: Some(DrawKind::MmapBase),
                bits,
                low,
                high,
                unit: if aligned && res.len() == 1 {
                    PMD
                } else {
                    d.unit
                },
                note: if res.len() == 1 && aligned {
                    "moves with mmap_base, 2 MiB-aligned: 9 bits fewer".into()
                } else {
                    "moves with mmap_base (the same draw)".into()
                },
            });
        }
    }
    // The stack.
    if let Some(t) = draw(DrawKind::StackTop) {
        let top = e.profile.stack_top;
        out.push(RegionEntropy {
            region: "the stack top".into(),
            draw: Some(DrawKind::StackTop),
            bits: log2((t.count + 2) as f64),
            low: top - t.max() - 2 * PAGE_SIZE,
            high: top,
            unit: PAGE_SIZE,
            note: "randomize_stack_top() pages (STACK_RND_MASK), then arch_align_stack() and PAGE_ALIGN in setup_arg_pages(): up to 2 pages more".into(),
        });
        let sp = e.stack.start_stack;
        let span = t.max() + 8192;
        out.push(RegionEntropy {
            region: "the stack pointer".into(),
            draw: Some(DrawKind::StackPointer),
            bits: log2((span / 16 + 1) as f64),
            low: sp - span,
            high: sp,
            unit: 16,
            note: "the stack top's pages and arch_align_stack()'s sub-page offset below 8 KiB, 16-byte aligned (create_elf_tables())".into(),
        });
    }
    // The vDSO of a 64-bit task up to v6.8: a random page of the 2 MiB above the argument
    // strings (vdso_addr()), which move with the stack top; its places overlap from one
    // stack page to the next, so it has about the stack top's bits, and a few more.
    if let (true, Some(t)) = (vdso_hinted, draw(DrawKind::StackTop)) {
        let len = e.kernel.facts.vvar_size + e.kernel.facts.vvar_vclock_size + e.profile.vdso_size;
        let start_hi = crate::addr::page_align(e.stack.arg_start).unwrap_or(e.stack.arg_start);
        let low = start_hi.saturating_sub(t.max() + 2 * PAGE_SIZE);
        let high = crate::kernel::profile::DEFAULT_MAP_WINDOW - len;
        out.push(RegionEntropy {
            region: "[vdso] (with [vvar] below it)".into(),
            draw: Some(DrawKind::VdsoAddr),
            bits: log2(((high - low) / PAGE_SIZE + 1) as f64),
            low,
            high,
            unit: PAGE_SIZE,
            note: "vdso_addr() (up to v6.8): a random page between the argument strings and the next 2 MiB boundary, above the stack top's draw".into(),
        });
    }
    if let Some(b) = draw(DrawKind::Brk) {
        let lo = reference.mm.start_brk;
        // Above the end of .bss, which moves with a PIE's load_bias: the two draws add.
        let lb = draw(DrawKind::LoadBias).map_or(0, |d| d.max());
        out.push(RegionEntropy {
            region: "start_brk (the heap)".into(),
            draw: Some(DrawKind::Brk),
            bits: log2(((b.max() + lb) / b.unit + 1) as f64),
            low: lo,
            high: lo + b.max() + lb,
            unit: b.unit,
            note: if draw(DrawKind::LoadBias).is_some() {
                format!("arch_randomize_brk(): {:.0} bits above the end of .bss, which moves with the program's load_bias too", b.bits())
            } else {
                "arch_randomize_brk() pages above the end of .bss".into()
            },
        });
    }
    Ok(out)
}

/// The regions read from one real run at the exec stop.
pub fn regions_of(
    maps: &[MapsLine],
    program: &str,
    interp: Option<&str>,
    start_brk: u64,
    start_stack: u64,
) -> Vec<(String, u64)> {
    let first = |name: &str| {
        maps.iter()
            .filter(|l| l.path == name)
            .map(|l| l.start)
            .min()
    };
    let mut v = Vec::new();
    if let Some(a) = first(program) {
        v.push(("the program".to_string(), a));
    }
    if let Some(i) = interp {
        if let Some(a) = first(i) {
            v.push((i.rsplit('/').next().unwrap_or(i).to_string(), a));
        }
    }
    if let Some(a) = first("[vdso]") {
        v.push(("[vdso]".into(), a));
    }
    if let Some(s) = maps.iter().find(|l| l.path == "[stack]") {
        v.push(("the stack top".into(), s.end));
    }
    v.push(("the stack pointer".into(), start_stack));
    v.push(("start_brk (the heap)".into(), start_brk));
    v
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Summarise the values seen per region.
pub fn summarise(samples: &BTreeMap<String, Vec<u64>>, model: &[RegionEntropy]) -> Vec<Measured> {
    samples
        .iter()
        .map(|(region, vals)| {
            let lo = *vals.iter().min().unwrap_or(&0);
            let hi = *vals.iter().max().unwrap_or(&0);
            let unit = vals.iter().fold(0, |g, v| gcd(g, v - lo)).max(1);
            let mut d = vals.clone();
            d.sort_unstable();
            d.dedup();
            let n = vals.len() as f64;
            let spread = ((hi - lo) / unit) as f64;
            let bits = if d.len() <= 1 {
                0.0
            } else {
                log2(spread * (n + 1.0) / (n - 1.0) + 1.0)
            };
            let model_bits = model
                .iter()
                .find(|m| {
                    m.region == *region
                        || (region == "the program" && m.region.starts_with("the program"))
                })
                .map(|m| m.bits);
            Measured {
                region: region.clone(),
                samples: vals.len(),
                distinct: d.len(),
                low: lo,
                high: hi,
                unit,
                bits,
                model_bits,
            }
        })
        .collect()
}

impl Sampler<'_> {
    /// The plan with these draws (the others 0).
    pub fn plan_with(&self, draws: &[(DrawKind, u64)]) -> Result<Plan> {
        let mut c = self.config().clone();
        c.draws = Some(draws.to_vec());
        plan(self.target(), &c, self.machine())
    }
}
