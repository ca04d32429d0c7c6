//! Address-space constants per ABI, each with the kernel file it comes from. These are the
//! only place such numbers live. Checked against kernel 6.18 x86_64 (4-level paging).

use crate::elf::Abi;

/// `SIZE_128M` (arch/x86/mm/mmap.c): the minimum gap between the stack top and `mmap_base`.
pub const SIZE_128M: u64 = 128 << 20;

/// `DEFAULT_MAP_WINDOW` (arch/x86/include/asm/page_64_types.h): `(1 << 47) - PAGE_SIZE`.
pub const DEFAULT_MAP_WINDOW: u64 = (1 << 47) - 4096;

/// `TASK_SIZE_MAX` with 4-level paging (arch/x86/include/asm/page_64_types.h); also
/// `STACK_TOP_MAX`, the top of the temporary stack of `fs/exec.c: __bprm_mm_init()`.
pub const TASK_SIZE_MAX: u64 = (1 << 47) - 4096;

/// `IA32_PAGE_OFFSET` (arch/x86/include/asm/processor.h): TASK_SIZE of a compat task.
pub const IA32_PAGE_OFFSET: u64 = 0xFFFF_E000;

/// `IA32_PAGE_OFFSET` with personality `ADDR_LIMIT_3GB` (`setarch --3gb`).
pub const IA32_PAGE_OFFSET_3GB: u64 = 0xC000_0000;

/// The start of the `[vsyscall]` page (arch/x86/entry/vsyscall/vsyscall_64.c, `VSYSCALL_ADDR`).
pub const VSYSCALL_ADDR: u64 = 0xffff_ffff_ff60_0000;

/// Pages of the 32-bit vDSO image on this kernel build (`vdso_image_32.size`). A 64-bit
/// process cannot see it in its own maps, so it is a measured constant (6.18: 2 pages).
pub const VDSO32_IMAGE_PAGES: u64 = 2;

/// The stack expansion `fs/exec.c: setup_arg_pages()` adds to the argument pages (128 KiB).
pub const STACK_EXPAND: u64 = 128 << 10;

/// `sizeof(void *)` of the kernel: `__bprm_mm_init()` starts `bprm->p` this far below the
/// top of the temporary stack (8 on an x86_64 kernel, for compat tasks too).
pub const KERNEL_POINTER_SIZE: u64 = 8;

/// Constants for one ABI (x86_64 native, or i386 as a compat task).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelProfile {
    pub abi: Abi,
    /// `TASK_SIZE` (arch/x86/include/asm/page_64_types.h: `TASK_SIZE_LOW`, the 47-bit window
    /// for 64-bit tasks; `IA32_PAGE_OFFSET` for compat tasks).
    pub task_size: u64,
    /// `STACK_TOP` (arch/x86/include/asm/page_64_types.h): `TASK_SIZE_LOW`.
    pub stack_top: u64,
    /// `TASK_UNMAPPED_BASE` = `__TASK_UNMAPPED_BASE(task_size)` = `PAGE_ALIGN(task_size / 3)`
    /// (arch/x86/include/asm/processor.h): the legacy (bottom-up) base before randomisation.
    pub task_unmapped_base: u64,
    /// `ELF_ET_DYN_BASE` (arch/x86/include/asm/elf.h): `DEFAULT_MAP_WINDOW / 3 * 2` for
    /// 64-bit; `COMPAT_ELF_ET_DYN_BASE` = `TASK_UNMAPPED_BASE + 0x1000000` for compat.
    pub elf_et_dyn_base: u64,
    /// `STACK_RND_MASK` in pages (arch/x86/include/asm/elf.h): 0x3fffff (64), 0x7ff (compat).
    pub stack_rnd_mask: u64,
    /// The range of `arch_randomize_brk()` (arch/x86/kernel/process.c): 1 GiB for 64-bit
    /// tasks (v6.9+), 32 MiB for compat tasks.
    pub brk_rnd_range: u64,
    /// `ELF_PLATFORM` / `COMPAT_ELF_PLATFORM` string copied to the stack (AT_PLATFORM).
    pub platform: &'static str,
    /// Extra auxv entries of this ABI over a 64-bit task's (`ARCH_DLINFO_IA32` adds AT_SYSINFO).
    pub extra_auxv: u64,
    /// Whether the task has the `[vsyscall]` gate area (`MM_CONTEXT_HAS_VSYSCALL`: 64-bit only).
    pub has_vsyscall: bool,
}

impl KernelProfile {
    /// A native x86_64 task.
    pub const fn x86_64() -> KernelProfile {
        KernelProfile {
            abi: Abi::X86_64,
            task_size: DEFAULT_MAP_WINDOW,
            stack_top: DEFAULT_MAP_WINDOW,
            task_unmapped_base: task_unmapped_base(DEFAULT_MAP_WINDOW),
            elf_et_dyn_base: DEFAULT_MAP_WINDOW / 3 * 2,
            stack_rnd_mask: 0x3fffff,
            brk_rnd_range: 1 << 30,
            platform: "x86_64",
            extra_auxv: 0,
            has_vsyscall: true,
        }
    }

    /// An i386 program as a compat task; `addr_limit_3gb` is personality `ADDR_LIMIT_3GB`.
    pub const fn ia32(addr_limit_3gb: bool) -> KernelProfile {
        let task_size = if addr_limit_3gb {
            IA32_PAGE_OFFSET_3GB
        } else {
            IA32_PAGE_OFFSET
        };
        KernelProfile {
            abi: Abi::I386,
            task_size,
            stack_top: task_size,
            task_unmapped_base: task_unmapped_base(task_size),
            elf_et_dyn_base: task_unmapped_base(task_size) + 0x100_0000,
            stack_rnd_mask: 0x7ff,
            brk_rnd_range: 32 << 20,
            platform: "i686",
            extra_auxv: 1,
            has_vsyscall: false,
        }
    }

    pub fn for_abi(abi: Abi, addr_limit_3gb: bool) -> KernelProfile {
        match abi {
            Abi::X86_64 => KernelProfile::x86_64(),
            Abi::I386 => KernelProfile::ia32(addr_limit_3gb),
        }
    }

    /// `mmap_base()`'s upper clamp of the gap (arch/x86/mm/mmap.c): `task_size / 6 * 5`.
    pub fn max_gap(&self) -> u64 {
        self.task_size / 6 * 5
    }
}

/// `__TASK_UNMAPPED_BASE(task_size)` (arch/x86/include/asm/processor.h).
pub const fn task_unmapped_base(task_size: u64) -> u64 {
    (task_size / 3 + 4095) & !4095
}

#[cfg(test)]
mod tests {
    use super::*;
    // The kernel's derived values, recomputed from their definitions.
    #[test]
    fn derived_constants() {
        let p = KernelProfile::x86_64();
        assert_eq!(p.elf_et_dyn_base & !0xfff, 0x5555_5555_4000);
        assert_eq!(p.task_unmapped_base, 0x2aaa_aaaa_b000);
        let c = KernelProfile::ia32(false);
        assert_eq!(c.task_unmapped_base, 0x5555_5000);
        assert_eq!(c.elf_et_dyn_base, 0x5655_5000);
        let c3 = KernelProfile::ia32(true);
        assert_eq!(
            (c3.task_unmapped_base, c3.elf_et_dyn_base),
            (0x4000_0000, 0x4100_0000)
        );
    }
}
