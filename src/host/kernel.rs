//! DOC: what a kernel shows user space that a plan depends on: its sysctls, the sizes of the
//! vDSO and vvar mappings for 64- and 32-bit tasks, the `[vsyscall]` mode, how many auxv
//! entries it gives, and (captured on the machine) what each mounted filesystem does with a
//! large file mapping. [`KernelFacts`] is a plain value: this machine's come from
//! [`super::Facts`] (and `elfmap kernel capture` measures the rest); a built-in profile has
//! the defaults of its distribution.

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

/// The facts of one kernel (and its boot configuration) that change a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFacts {
    /// `kernel.randomize_va_space`.
    pub randomize_va_space: u32,
    /// `vm.mmap_rnd_bits` (a native 32-bit kernel uses it for its 32-bit tasks).
    pub mmap_rnd_bits: u32,
    /// `vm.mmap_rnd_compat_bits` (`None` where the kernel has none: a 32-bit kernel).
    pub mmap_rnd_compat_bits: Option<u32>,
    /// `vm.legacy_va_layout`.
    pub legacy_va_layout: bool,
    /// `vm.mmap_min_addr`.
    pub mmap_min_addr: u64,
    /// `stack_guard_gap` in bytes (boot parameter `stack_guard_gap=` pages, default 256).
    pub stack_guard_gap: u64,
    /// `[vvar]`, and `[vvar_vclock]` (0: no such line; it exists since v6.13).
    pub vvar_size: u64,
    pub vvar_vclock_size: u64,
    /// `[vdso]` of a 64-bit task (0 on a 32-bit kernel).
    pub vdso64_size: u64,
    /// `[vdso]` of a 32-bit task (`vdso_image_32.size`).
    pub vdso32_size: u64,
    /// `[vsyscall]` permissions as maps shows them in a 64-bit task (`--xp`: vsyscall=xonly,
    /// `r-xp`: emulate), `None`: no such line (vsyscall=none, Debian's default).
    pub vsyscall: Option<String>,
    /// auxv entries, AT_NULL included, the kernel gives a 64-bit and a 32-bit program
    /// (arch/x86/include/asm/elf.h `ARCH_DLINFO`, `ARCH_DLINFO_IA32`, fs/binfmt_elf.c:
    /// `create_elf_tables()`): 20/21 on 5.10, 21/22 on 6.1 (AT_MINSIGSTKSZ, v5.14), 23/24
    /// since v6.3 (AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN).
    pub auxv_entries_64: u64,
    pub auxv_entries_32: u64,
    /// The machine's mounts and whether each aligns large file mappings (a capture); `None`:
    /// decided by the file's filesystem as found where elfmap runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountThp>>,
}

impl KernelFacts {
    /// The kernel facts among this machine's (or a facts file's) host facts; the 32-bit
    /// vDSO size, which a 64-bit process cannot see, is `vdso32_size`.
    pub fn of_host(f: &super::Facts, vdso32_size: u64) -> KernelFacts {
        KernelFacts {
            randomize_va_space: f.randomize_va_space,
            mmap_rnd_bits: f.mmap_rnd_bits,
            mmap_rnd_compat_bits: Some(f.mmap_rnd_compat_bits),
            legacy_va_layout: f.legacy_va_layout,
            mmap_min_addr: f.mmap_min_addr,
            stack_guard_gap: f.stack_guard_gap,
            vvar_size: f.vvar_size,
            vvar_vclock_size: f.vvar_vclock_size,
            vdso64_size: f.vdso64_size,
            vdso32_size,
            vsyscall: f.vsyscall.clone(),
            auxv_entries_64: f.auxv_entries_64,
            // ARCH_DLINFO_IA32 adds AT_SYSINFO.
            auxv_entries_32: f.auxv_entries_64 + 1,
            mounts: None,
        }
    }
}

/// What the probes saw (each `None` when it could not be measured).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probes {
    /// The `.bss` tail of a program, ending at `start_brk`, is named `[heap]` at the exec
    /// stop (the inclusive test of fs/proc/task_mmu.c before v6.7).
    #[serde(default)]
    pub heap_names_bss_tail: Option<bool>,
    /// A hint-less private anonymous mapping of 4 MiB is 2 MiB-aligned (v6.7+).
    #[serde(default)]
    pub thp_anon: Option<bool>,
    /// What could not be measured, and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// What one mount of the target machine does with hint-less file mappings: from
/// `elfmap kernel capture` (the mount table and a probe mapping on each filesystem).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MountThp {
    /// Where it is mounted, as the captured process saw it.
    pub mount_point: PathBuf,
    /// The filesystem type (`ext4`, `tmpfs`, `9p`, ...).
    pub fs_type: String,
    /// Whether a file mapping covering a whole 2 MiB stretch of a file there is
    /// 2 MiB-aligned (the filesystem's `get_unmapped_area` is `thp_get_unmapped_area`).
    pub thp_aligned: bool,
    /// `thp_aligned` was measured (a file there mapped twice); `false`: no readable file
    /// was found, it is the release's rule for that filesystem type.
    #[serde(default)]
    pub measured: bool,
}
