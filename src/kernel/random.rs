//! `ExecRandom`: the kernel's random draws at exec, each named after the function that makes
//! it. ASLR-off planning is the same code with every draw zero; a seeded plan uses a
//! `StdRng`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where the draws come from.
#[derive(Debug)]
pub enum ExecRandom {
    /// No PF_RANDOMIZE (`setarch -R`, `randomize_va_space=0`): every draw is 0.
    Zero,
    /// Draws from `seed` (a random one if `None`), made at the first draw: an exec with
    /// PF_RANDOMIZE off draws nothing and never seeds.
    Unseeded(Option<u64>),
    /// Reproducible draws from a seed.
    Seeded(Box<StdRng>),
}

impl ExecRandom {
    pub fn seeded(seed: u64) -> ExecRandom {
        ExecRandom::Seeded(Box::new(StdRng::seed_from_u64(seed)))
    }

    /// Draws from `seed`, or from a random seed, seeded at the first draw.
    pub fn lazily_seeded(seed: Option<u64>) -> ExecRandom {
        ExecRandom::Unseeded(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        if let ExecRandom::Unseeded(seed) = *self {
            *self = ExecRandom::seeded(seed.unwrap_or_else(rand::random));
        }
        match self {
            ExecRandom::Seeded(r) if n > 0 => r.random_range(0..n),
            _ => 0,
        }
    }

    /// arch/x86/mm/mmap.c: `arch_rnd(bits)`: a page-aligned offset below `2^bits` pages.
    pub fn arch_rnd(&mut self, bits: u32) -> u64 {
        self.below(1u64 << bits) << 12
    }

    /// fs/binfmt_elf.c: `randomize_stack_top()`: `(random & STACK_RND_MASK) << PAGE_SHIFT`.
    pub fn randomize_stack_top(&mut self, stack_rnd_mask: u64) -> u64 {
        self.below(stack_rnd_mask + 1) << 12
    }

    /// arch/x86/kernel/process.c: `arch_align_stack()`: the value below 8192 subtracted.
    pub fn arch_align_stack(&mut self) -> u64 {
        self.below(8192)
    }

    /// mm/util.c: `randomize_page(start, range)` as used by `arch_randomize_brk()`:
    /// a page offset in `[0, range)`.
    pub fn randomize_page(&mut self, range: u64) -> u64 {
        self.below(range >> 12) << 12
    }
}
