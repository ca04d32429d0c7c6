//! The initial stack VMA. Models `fs/exec.c: __bprm_mm_init()`, `copy_strings()`,
//! `setup_arg_pages()` (mm/vma_exec.c from 6.16) and the stack growth done by
//! `fs/binfmt_elf.c: create_elf_tables()`.

use std::ffi::OsString;

use super::profile::{KernelProfile, STACK_EXPAND};
use super::random::{DrawKind, ExecRandom};
use crate::addr::{page_align, page_start, PAGE_SIZE};

/// What exec puts on the new stack: the strings and the vector sizes.
#[derive(Clone, Debug)]
pub struct StackStrings<'a> {
    /// `bprm->filename`, the path passed to execve (it becomes AT_EXECFN).
    pub filename: &'a OsString,
    pub argv: &'a [OsString],
    pub envp: &'a [OsString],
}

impl StackStrings<'_> {
    /// Bytes `copy_strings()` puts below the top of the temporary stack: the kernel pointer
    /// `__bprm_mm_init()` leaves (`kernel_pointer_size` bytes), then the filename, envp and
    /// argv strings with their NULs.
    pub fn size(&self, kernel_pointer_size: u64) -> u64 {
        let len = |s: &OsString| s.len() as u64 + 1;
        kernel_pointer_size
            + len(self.filename)
            + self.envp.iter().map(len).sum::<u64>()
            + self.argv.iter().map(len).sum::<u64>()
    }
}

/// The stack VMA and the addresses `mm_struct` records.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct StackLayout {
    pub vm_start: u64,
    pub vm_end: u64,
    /// The stack's start after `setup_arg_pages()` expanded it, before
    /// `create_elf_tables()` (which may extend it further down, to `vm_start`).
    pub expanded_start: u64,
    /// `mm->start_stack`: the initial stack pointer (argc).
    pub start_stack: u64,
    /// `mm->arg_start`: where the argv strings begin.
    pub arg_start: u64,
    /// `mm->env_start`: where the environment strings begin (after argv's).
    pub env_start: u64,
    /// AT_EXECFN: the filename string, above the environment strings.
    pub execfn: u64,
    /// `stack_top` after `randomize_stack_top()`.
    pub stack_top: u64,
    /// Where `create_elf_tables()` put things below the strings: the AT_PLATFORM string,
    /// the 16 AT_RANDOM bytes, the auxv pairs, and the argv and envp pointer arrays (argc
    /// is at `start_stack`).
    pub platform: u64,
    pub random_bytes: u64,
    pub auxv: u64,
    pub argv: u64,
    pub envp: u64,
}

/// Models `setup_arg_pages(bprm, randomize_stack_top(STACK_TOP), ...)` followed by the
/// stack-pointer arithmetic of `create_elf_tables()`:
///
/// * the temporary stack covered `page_up(size)` bytes below `STACK_TOP_MAX`;
/// * it is moved so that it ends at `PAGE_ALIGN(arch_align_stack(stack_top))`;
/// * it is expanded to `min(RLIMIT_STACK & PAGE_MASK, stack_size + 128 KiB)`;
/// * `create_elf_tables()` places AT_PLATFORM, the 16 AT_RANDOM bytes, the auxv pairs and the
///   argv/envp pointers below `arch_align_stack(p)`, and extends the VMA down to that point
///   (`find_extend_vma_locked()`).
pub fn setup_arg_pages(
    profile: &KernelProfile,
    strings: &StackStrings<'_>,
    rlimit_stack: u64,
    auxv_entries: u64,
    pf_randomize: bool,
    random: &mut ExecRandom,
) -> StackLayout {
    let size = strings.size(profile.kernel_pointer_size);
    let stack_size = page_align(size).unwrap_or(u64::MAX).max(PAGE_SIZE);
    let mut stack_top = page_align(profile.stack_top).unwrap_or(profile.stack_top);
    if pf_randomize {
        stack_top -= random.randomize_stack_top(profile.stack_rnd_mask);
    }
    let randomized_top = stack_top;
    // arch_align_stack(): subtract a random value below 8 KiB (only when randomising), & ~15.
    let align = |sp: u64, random: &mut ExecRandom, kind| {
        let r = if pf_randomize {
            random.arch_align_stack(kind)
        } else {
            0
        };
        (sp - r) & !15
    };
    let vm_end = page_align(align(stack_top, random, DrawKind::StackEnd)).unwrap_or(stack_top);
    let mut vm_start = vm_end.saturating_sub(stack_size);
    let p0 = vm_end - size;
    let rlim = rlimit_stack & !(PAGE_SIZE - 1);
    let expand = rlim.min(stack_size.saturating_add(STACK_EXPAND));
    vm_start = vm_start.min(vm_end.saturating_sub(expand));
    let expanded_start = vm_start;

    // create_elf_tables()
    let word = profile.abi.word();
    let mut p = align(p0, random, DrawKind::StackPointer);
    p -= profile.platform.len() as u64 + 1;
    let platform = p;
    p -= 16;
    let random_bytes = p;
    let mut sp = p - auxv_entries * 2 * word;
    let (argc, envc) = (strings.argv.len() as u64, strings.envp.len() as u64);
    let items = (argc + 1) + (envc + 1) + 1;
    sp = (sp - items * word) & !15;
    vm_start = vm_start.min(page_start(sp));
    let len = |v: &[OsString]| v.iter().map(|s| s.len() as u64 + 1).sum::<u64>();
    let env_start = p0 + len(strings.argv);
    StackLayout {
        vm_start,
        vm_end,
        expanded_start,
        start_stack: sp,
        arg_start: p0,
        env_start,
        execfn: env_start + len(strings.envp),
        stack_top: randomized_top,
        platform,
        random_bytes,
        argv: sp + word,
        envp: sp + word * (argc + 2),
        auxv: sp + word * (argc + 2 + envc + 1),
    }
}
