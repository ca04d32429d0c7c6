//! DOC: the mmap layout. Models arch/x86/mm/mmap.c: `mmap_is_legacy()`, `mmap_base()`,
//! `arch_pick_mmap_base()` and `arch_pick_mmap_layout()` (checked on 6.18).
//!
//! N.B. Since v4.13 an unlimited RLIMIT_STACK no longer selects the legacy layout on x86: it
//! only lowers `mmap_base` (the gap is clamped to 5/6 of the task size). gVisor and the
//! generic mm/util.c code still treat it as legacy; we follow the x86 kernel.

use super::personality;
use super::profile::{KernelProfile, SIZE_128M};
use crate::host::kernel::KernelFacts;
use crate::host::RLIM_INFINITY;
use crate::mm::MmapLayout;

/// Models `mmap_is_legacy()`: personality ADDR_COMPAT_LAYOUT or `vm.legacy_va_layout`.
pub fn mmap_is_legacy(pers: u32, legacy_va_layout: bool) -> bool {
    pers & personality::ADDR_COMPAT_LAYOUT != 0 || legacy_va_layout
}

/// `stack_maxrandom_size()`: the room the stack randomisation may take, in bytes.
pub fn stack_maxrandom_size(profile: &KernelProfile, pf_randomize: bool) -> u64 {
    if pf_randomize {
        profile.stack_rnd_mask << 12
    } else {
        0
    }
}

/// Models `mmap_base()`: `PAGE_ALIGN(task_size - gap - rnd)` with
/// `gap = rlimit + stack_maxrandom_size + stack_guard_gap` (the pad dropped if the sum
/// overflows, as for RLIM_INFINITY), clamped to `[SIZE_128M, task_size / 6 * 5]`.
pub fn mmap_base(rnd: u64, profile: &KernelProfile, rlimit_stack: u64, pad: u64) -> u64 {
    let mut gap = rlimit_stack;
    if let Some(g) = gap.checked_add(pad) {
        if g > gap {
            gap = g;
        }
    }
    let gap = gap.clamp(SIZE_128M, profile.max_gap());
    crate::addr::page_align(profile.task_size - gap - rnd).unwrap_or(profile.task_size)
}

/// Models `mmap_legacy_base()`: `__TASK_UNMAPPED_BASE(task_size) + rnd`.
pub fn mmap_legacy_base(rnd: u64, profile: &KernelProfile) -> u64 {
    profile.task_unmapped_base + rnd
}

/// What `arch_pick_mmap_layout()` decides for a task with ABI `profile`, personality `pers`,
/// and `rnd` = the `arch_rnd()` draw of its bitness (0 without PF_RANDOMIZE).
pub fn arch_pick_mmap_layout(
    profile: &KernelProfile,
    machine: &KernelFacts,
    pers: u32,
    rlimit_stack: u64,
    rnd: u64,
) -> MmapLayout {
    let pf_randomize = personality::pf_randomize(machine.randomize_va_space, pers);
    let pad = stack_maxrandom_size(profile, pf_randomize) + machine.stack_guard_gap;
    let _ = RLIM_INFINITY;
    MmapLayout {
        topdown: !mmap_is_legacy(pers, machine.legacy_va_layout),
        mmap_base: mmap_base(rnd, profile, rlimit_stack, pad),
        mmap_legacy_base: mmap_legacy_base(rnd, profile),
        task_size: profile.task_size,
        task_unmapped_base: profile.task_unmapped_base,
        mmap_min_addr: machine.mmap_min_addr.max(crate::addr::PAGE_SIZE),
        stack_guard_gap: machine.stack_guard_gap,
        compat: profile.abi == crate::elf::Abi::I386,
    }
}
