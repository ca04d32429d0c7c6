//! `ExecRandom`: the kernel's random draws at exec, each named after the function that makes
//! it. ASLR-off planning is the same code with every draw zero; a seeded plan uses a
//! `StdRng`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which random choice of exec a draw is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DrawKind {
    /// `arch_mmap_rnd()` for `mmap_base` (or the legacy base): `arch_pick_mmap_layout()`.
    MmapBase,
    /// `arch_mmap_rnd()` added to `ELF_ET_DYN_BASE` for a PIE: `load_elf_binary()`.
    LoadBias,
    /// `randomize_stack_top()`: pages below `STACK_TOP`.
    StackTop,
    /// `arch_align_stack()` of the stack's end (`setup_arg_pages()`).
    StackEnd,
    /// `arch_align_stack()` of the stack pointer below the strings (`create_elf_tables()`).
    StackPointer,
    /// `arch_randomize_brk()`: pages above the end of `.bss`.
    Brk,
    /// `vdso_addr()` (up to v6.8): the page of the 64-bit vDSO's hint above the stack.
    VdsoAddr,
}

impl DrawKind {
    /// What it moves, and the function that draws it.
    pub fn describe(self) -> &'static str {
        match self {
            DrawKind::MmapBase => "mmap_base: arch_mmap_rnd()",
            DrawKind::LoadBias => "a PIE's load_bias: arch_mmap_rnd()",
            DrawKind::StackTop => "the stack top: randomize_stack_top()",
            DrawKind::StackEnd => "the stack's end: arch_align_stack()",
            DrawKind::StackPointer => "the stack pointer: arch_align_stack()",
            DrawKind::Brk => "start_brk: arch_randomize_brk()",
            DrawKind::VdsoAddr => "the vDSO's hint above the stack: vdso_addr()",
        }
    }
}

/// One random choice the kernel made at exec: its value, and how many values it could
/// take, each `unit` bytes apart (the value is a multiple of `unit`, below
/// `count * unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Draw {
    pub kind: DrawKind,
    pub value: u64,
    pub count: u64,
    pub unit: u64,
}

impl Draw {
    /// The number of random bits (log2 of the number of values).
    pub fn bits(&self) -> f64 {
        (self.count as f64).log2()
    }

    /// The largest value it could take.
    pub fn max(&self) -> u64 {
        self.count.saturating_sub(1).saturating_mul(self.unit)
    }

    /// Whether the kernel can draw this value: a multiple of `unit` below `count * unit`.
    pub fn possible(&self) -> bool {
        self.unit > 0 && self.value.is_multiple_of(self.unit) && self.value <= self.max()
    }
}

/// Where the draws come from, and the draws made (in order).
#[derive(Debug)]
pub struct ExecRandom {
    source: Source,
    pub draws: Vec<Draw>,
}

/// Where the draws come from.
#[derive(Debug)]
enum Source {
    /// No PF_RANDOMIZE (`setarch -R`, `randomize_va_space=0`): every draw is 0.
    Zero,
    /// Draws from `seed` (a random one if `None`), made at the first draw: an exec with
    /// PF_RANDOMIZE off draws nothing and never seeds.
    Unseeded(Option<u64>),
    /// Reproducible draws from a seed.
    Seeded(Box<StdRng>),
    /// Given values (recovered from a real sample), by kind; a kind not given draws 0.
    Fixed(Vec<(DrawKind, u64)>),
}

impl ExecRandom {
    /// Every draw is 0.
    pub fn zero() -> ExecRandom {
        ExecRandom {
            source: Source::Zero,
            draws: Vec::new(),
        }
    }

    pub fn seeded(seed: u64) -> ExecRandom {
        ExecRandom {
            source: Source::Seeded(Box::new(StdRng::seed_from_u64(seed))),
            draws: Vec::new(),
        }
    }

    /// The given values, by kind (the draws recovered from a real sample); 0 for a kind
    /// not given. A value is used as it is: checking it is a value the kernel can draw is
    /// the caller's ([`Draw::possible`]).
    pub fn fixed(values: Vec<(DrawKind, u64)>) -> ExecRandom {
        ExecRandom {
            source: Source::Fixed(values),
            draws: Vec::new(),
        }
    }

    /// Draws from `seed`, or from a random seed, seeded at the first draw.
    pub fn lazily_seeded(seed: Option<u64>) -> ExecRandom {
        ExecRandom {
            source: Source::Unseeded(seed),
            draws: Vec::new(),
        }
    }

    /// A draw of `kind` among `count` values `unit` bytes apart, recorded.
    fn draw(&mut self, kind: DrawKind, count: u64, unit: u64) -> u64 {
        if let Source::Unseeded(seed) = self.source {
            self.source = Source::Seeded(Box::new(StdRng::seed_from_u64(
                seed.unwrap_or_else(fresh_seed),
            )));
        }
        let value = match &mut self.source {
            Source::Seeded(r) if count > 0 => r.random_range(0..count) * unit,
            Source::Fixed(v) => v.iter().find(|(k, _)| *k == kind).map_or(0, |(_, x)| *x),
            _ => 0,
        };
        self.draws.push(Draw {
            kind,
            value,
            count,
            unit,
        });
        value
    }

    /// arch/x86/mm/mmap.c: `arch_rnd(bits)`: a page-aligned offset below `2^bits` pages.
    pub fn arch_rnd(&mut self, kind: DrawKind, bits: u32) -> u64 {
        self.draw(kind, 1u64 << bits, 4096)
    }

    /// fs/binfmt_elf.c: `randomize_stack_top()`: `(random & STACK_RND_MASK) << PAGE_SHIFT`.
    pub fn randomize_stack_top(&mut self, stack_rnd_mask: u64) -> u64 {
        self.draw(DrawKind::StackTop, stack_rnd_mask + 1, 4096)
    }

    /// arch/x86/kernel/process.c: `arch_align_stack()`: the value below 8192 subtracted.
    pub fn arch_align_stack(&mut self, kind: DrawKind) -> u64 {
        self.draw(kind, 8192, 1)
    }

    /// mm/util.c: `randomize_page(start, range)` as used by `arch_randomize_brk()`:
    /// a page offset in `[0, range)`.
    pub fn randomize_page(&mut self, range: u64) -> u64 {
        self.draw(DrawKind::Brk, range >> 12, 4096)
    }

    /// arch/x86/entry/vdso/vma.c: `vdso_addr()` (up to v6.8): `prandom_u32_max(pages)`
    /// pages above the stack.
    pub fn vdso_addr(&mut self, pages: u64) -> u64 {
        self.draw(DrawKind::VdsoAddr, pages, 4096)
    }
}

/// A seed from the kernel's random pool (`getrandom(2)`); a fixed one if that fails, which
/// a kernel since 3.17 does not.
fn fresh_seed() -> u64 {
    use rand::rand_core::TryRngCore;
    rand::rngs::OsRng.try_next_u64().unwrap_or(0x5eed)
}
