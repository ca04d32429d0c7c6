//! Address-space constants per ABI, each with the kernel file it comes from. These are the
//! only place such numbers live. Checked against kernel 6.18 x86_64 (4-level paging) and,
//! through the kernel profiles ([`Kernel`]: [`KernelRules`] + [`KernelFacts`]), against
//! Debian's 5.10, 6.1 (amd64 and 686-pae) and 6.12 kernels.

use super::rules::{self, BuiltIn, KernelArch, KernelRules};
use crate::elf::Abi;
use crate::error::{Error, Result};
use crate::host::kernel::{KernelFacts, Probes};
use crate::host::Facts;

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

/// The constants of one task on one kernel: its ABI (x86_64 native, i386 as a compat task on
/// an x86_64 kernel, or i386 on a native 32-bit kernel) under the kernel's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelProfile {
    pub abi: Abi,
    /// `TASK_SIZE` (arch/x86/include/asm/page_64_types.h: `TASK_SIZE_LOW`, the 47-bit window
    /// for 64-bit tasks; `IA32_PAGE_OFFSET` for compat tasks; arch/x86/include/asm/
    /// page_32_types.h: `PAGE_OFFSET` on a 32-bit kernel).
    pub task_size: u64,
    /// `STACK_TOP` (arch/x86/include/asm/page_64_types.h): `TASK_SIZE_LOW`.
    pub stack_top: u64,
    /// `TASK_UNMAPPED_BASE` = `__TASK_UNMAPPED_BASE(task_size)` = `PAGE_ALIGN(task_size / 3)`
    /// (arch/x86/include/asm/processor.h): the legacy (bottom-up) base before randomisation.
    pub task_unmapped_base: u64,
    /// `ELF_ET_DYN_BASE` (arch/x86/include/asm/elf.h): `DEFAULT_MAP_WINDOW / 3 * 2` for
    /// 64-bit; `COMPAT_ELF_ET_DYN_BASE` = `TASK_UNMAPPED_BASE + 0x1000000` for compat;
    /// `0x400000` on a 32-bit kernel (`mmap_is_ia32()`).
    pub elf_et_dyn_base: u64,
    /// `STACK_RND_MASK` in pages (arch/x86/include/asm/elf.h): 0x3fffff (64), 0x7ff (32).
    pub stack_rnd_mask: u64,
    /// The range of `arch_randomize_brk()` (arch/x86/kernel/process.c): by release for
    /// 64-bit tasks ([`KernelRules::brk_rnd_range_64`]), 32 MiB for 32-bit ones.
    pub brk_rnd_range: u64,
    /// `vm.mmap_rnd_bits` or `vm.mmap_rnd_compat_bits`: the bits of `arch_rnd()`
    /// (arch/x86/mm/mmap.c: `mmap64_rnd_bits` / `mmap32_rnd_bits`; a 32-bit kernel has only
    /// the first).
    pub mmap_rnd_bits: u32,
    /// `ELF_PLATFORM` / `COMPAT_ELF_PLATFORM` string copied to the stack (AT_PLATFORM).
    pub platform: &'static str,
    /// The auxv entries (AT_NULL included) `create_elf_tables()` writes for this ABI.
    pub auxv_entries: u64,
    /// Whether the task has the `[vsyscall]` gate area (`MM_CONTEXT_HAS_VSYSCALL`: 64-bit
    /// tasks on a 64-bit kernel only).
    pub has_vsyscall: bool,
    /// `sizeof(void *)` of the kernel: `__bprm_mm_init()` starts `bprm->p` this far below
    /// the top of the temporary stack (8 on an x86_64 kernel, for compat tasks too).
    pub kernel_pointer_size: u64,
    /// The `[vdso]` image size of this ABI.
    pub vdso_size: u64,
}

impl KernelProfile {
    /// A native x86_64 task on this machine's kernel (6.18).
    pub const fn x86_64() -> KernelProfile {
        KernelProfile {
            abi: Abi::X86_64,
            task_size: DEFAULT_MAP_WINDOW,
            stack_top: DEFAULT_MAP_WINDOW,
            task_unmapped_base: task_unmapped_base(DEFAULT_MAP_WINDOW),
            elf_et_dyn_base: DEFAULT_MAP_WINDOW / 3 * 2,
            stack_rnd_mask: 0x3fffff,
            brk_rnd_range: 1 << 30,
            mmap_rnd_bits: 28,
            platform: "x86_64",
            auxv_entries: 23,
            has_vsyscall: true,
            kernel_pointer_size: KERNEL_POINTER_SIZE,
            vdso_size: 2 * 4096,
        }
    }

    /// An i386 program as a compat task on this machine's kernel (6.18); `addr_limit_3gb`
    /// is personality `ADDR_LIMIT_3GB`.
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
            mmap_rnd_bits: 8,
            platform: "i686",
            auxv_entries: 24,
            has_vsyscall: false,
            kernel_pointer_size: KERNEL_POINTER_SIZE,
            vdso_size: VDSO32_IMAGE_PAGES * 4096,
        }
    }

    /// The constants of a task of `abi` on `kernel`; `addr_limit_3gb` is personality
    /// `ADDR_LIMIT_3GB` (meaningless on a 32-bit kernel, whose tasks end at `PAGE_OFFSET`).
    pub fn for_task(kernel: &Kernel, abi: Abi, addr_limit_3gb: bool) -> KernelProfile {
        let f = &kernel.facts;
        match (kernel.rules.arch, abi) {
            (_, Abi::X86_64) => KernelProfile {
                brk_rnd_range: kernel.rules.brk_rnd_range_64,
                mmap_rnd_bits: f.mmap_rnd_bits,
                auxv_entries: f.auxv_entries_64,
                has_vsyscall: f.vsyscall.is_some(),
                vdso_size: f.vdso64_size,
                ..KernelProfile::x86_64()
            },
            (KernelArch::X86_64, Abi::I386) => KernelProfile {
                mmap_rnd_bits: f.mmap_rnd_compat_bits.unwrap_or(f.mmap_rnd_bits),
                auxv_entries: f.auxv_entries_32,
                vdso_size: f.vdso32_size,
                ..KernelProfile::ia32(addr_limit_3gb)
            },
            (KernelArch::I386, Abi::I386) => KernelProfile {
                task_size: PAGE_OFFSET_32,
                stack_top: PAGE_OFFSET_32,
                task_unmapped_base: task_unmapped_base(PAGE_OFFSET_32),
                // arch/x86/include/asm/elf.h: `mmap_is_ia32() ? 0x000400000UL : ...`.
                elf_et_dyn_base: 0x40_0000,
                mmap_rnd_bits: f.mmap_rnd_bits,
                auxv_entries: f.auxv_entries_32,
                kernel_pointer_size: KernelArch::I386.pointer_size(),
                vdso_size: f.vdso32_size,
                ..KernelProfile::ia32(false)
            },
        }
    }

    /// `mmap_base()`'s upper clamp of the gap (arch/x86/mm/mmap.c): `task_size / 6 * 5`.
    pub fn max_gap(&self) -> u64 {
        self.task_size / 6 * 5
    }
}

/// `PAGE_OFFSET` of a 32-bit kernel with `CONFIG_VMSPLIT_3G` (arch/x86/Kconfig
/// `PAGE_OFFSET`): its `TASK_SIZE`, `STACK_TOP` and `STACK_TOP_MAX`.
pub const PAGE_OFFSET_32: u64 = 0xC000_0000;

/// Where a kernel profile comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelSource {
    /// The kernel elfmap runs on: its release and facts detected (or read from `--facts`).
    Running,
    /// `--kernel RELEASE`: a built-in rule set with its distribution's default facts.
    BuiltIn,
    /// `--kernel FILE`: written by `elfmap kernel capture` on that machine.
    Captured(std::path::PathBuf),
}

/// The kernel a plan is made for: its release, the rules of that release and
/// configuration ([`KernelRules`]), and its facts ([`KernelFacts`]: sysctls, vDSO sizes,
/// vsyscall mode, auxv entries, mounts). The exec model and the address space take it as a
/// value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Kernel {
    /// `uname -r` of that kernel.
    pub release: String,
    /// The built-in rule set used.
    pub built_in: &'static BuiltIn,
    /// Whether the rule set is the one for this release (`false`: only the nearest known).
    pub exact: bool,
    pub source: KernelSource,
    pub rules: KernelRules,
    pub facts: KernelFacts,
}

impl Kernel {
    /// The kernel of the machine `host` describes (this one, or a `--facts` file's): its
    /// release's rules and its own sysctls and vDSO sizes.
    pub fn running(host: &Facts) -> Kernel {
        let chosen = rules::for_release(&host.kernel_release);
        let facts = KernelFacts::of_host(host, default_facts(chosen.built_in).vdso32_size);
        Kernel {
            release: host.kernel_release.clone(),
            built_in: chosen.built_in,
            exact: chosen.exact,
            source: KernelSource::Running,
            rules: chosen.rules,
            facts,
        }
    }

    /// The built-in profile for `release` (what `uname -r` prints on that machine), with
    /// its distribution's defaults (sysctls, vDSO sizes, vsyscall mode).
    pub fn built_in(release: &str) -> Kernel {
        let chosen = rules::for_release(release);
        Kernel {
            release: release.to_string(),
            built_in: chosen.built_in,
            exact: chosen.exact,
            source: KernelSource::BuiltIn,
            facts: default_facts(chosen.built_in),
            rules: chosen.rules,
        }
    }

    /// The profile of a machine captured by `elfmap kernel capture` (`path` is the file):
    /// the rules of its release, with what the capture measured of them (the `[heap]`
    /// naming, THP alignment of anonymous memory and, per mount, of files) in their place.
    pub fn captured(cap: KernelCapture, path: &std::path::Path) -> Kernel {
        let chosen = rules::for_release(&cap.release);
        let mut rules = chosen.rules;
        rules.mm.mounts = cap
            .facts
            .mounts
            .as_ref()
            .map(|m| std::sync::Arc::from(m.clone().into_boxed_slice()));
        if let Some(inclusive) = cap.probes.heap_names_bss_tail {
            rules.mm.heap_exclusive = !inclusive;
        }
        if let Some(aligned) = cap.probes.thp_anon {
            rules.mm.thp_anon = if aligned {
                crate::mm::rules::ThpAnon::PmdMultipleNoHint
            } else {
                crate::mm::rules::ThpAnon::None
            };
        }
        if rules.arch == KernelArch::I386 || cap.machine.starts_with('i') {
            rules.arch = KernelArch::I386;
            rules.mm.name_pad = rules::NAME_PAD_32;
        }
        Kernel {
            release: cap.release,
            built_in: chosen.built_in,
            exact: chosen.exact,
            source: KernelSource::Captured(path.to_path_buf()),
            rules,
            facts: cap.facts,
        }
    }

    /// `--kernel ARG`: a file written by `elfmap kernel capture` if `ARG` names one, else a
    /// release. The release of the running kernel (`host`'s) is the running kernel.
    pub fn from_arg(arg: &str, host: &Facts) -> Result<Kernel> {
        let p = std::path::Path::new(arg);
        if arg.contains('/') || p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            let cap = KernelCapture::from_json(&text, p)?;
            return Ok(Kernel::captured(cap, p));
        }
        if arg == host.kernel_release {
            return Ok(Kernel::running(host));
        }
        Ok(Kernel::built_in(arg))
    }

    /// What a reader is told about the profile: `6.1.0-50-amd64 (built-in debian-6.1-amd64:
    /// Debian 12 bookworm)`.
    pub fn describe(&self) -> String {
        let how = match &self.source {
            KernelSource::Running => "the running kernel".to_string(),
            KernelSource::BuiltIn => "built-in".to_string(),
            KernelSource::Captured(p) => format!("captured in {}", p.display()),
        };
        format!(
            "{} ({how}; rules {}{}: {})",
            self.release,
            self.built_in.name,
            if self.exact {
                ""
            } else {
                ", the nearest known"
            },
            self.built_in.what
        )
    }

    /// The note for stderr when the rules are only the nearest known ones.
    pub fn note(&self) -> Option<String> {
        (!self.exact).then(|| {
            format!(
                "note: kernel {} has no built-in profile: planning with the nearest known rules, {} ({}, for {})",
                self.release, self.built_in.name, self.built_in.what, self.built_in.releases
            )
        })
    }
}

/// The facts of a built-in profile's machines by default: Debian's configuration
/// (`CONFIG_LEGACY_VSYSCALL_NONE=y`: no `[vsyscall]`; `vm.mmap_min_addr` 65536) and its
/// vDSO images (4 pages of `[vvar]`, 2 of `[vdso]`, no `[vvar_vclock]`, which came in
/// e93d2521b27f, v6.13); this machine's for the 6.18 rules.
pub fn default_facts(b: &BuiltIn) -> KernelFacts {
    let debian = KernelFacts {
        randomize_va_space: 2,
        mmap_rnd_bits: 28,
        mmap_rnd_compat_bits: Some(8),
        legacy_va_layout: false,
        mmap_min_addr: 65536,
        stack_guard_gap: 256 << 12,
        vvar_size: 4 << 12,
        vvar_vclock_size: 0,
        vdso64_size: 2 << 12,
        vdso32_size: 2 << 12,
        vsyscall: None,
        auxv_entries_64: 23,
        auxv_entries_32: 24,
        mounts: None,
    };
    match b.name {
        "debian-5.10-amd64" => KernelFacts {
            auxv_entries_64: 20,
            auxv_entries_32: 21,
            ..debian
        },
        "debian-6.1-amd64" => KernelFacts {
            auxv_entries_64: 21,
            auxv_entries_32: 22,
            ..debian
        },
        "debian-6.1-686-pae" => KernelFacts {
            mmap_rnd_bits: 8,
            mmap_rnd_compat_bits: None,
            vdso64_size: 0,
            auxv_entries_64: 0,
            auxv_entries_32: 22,
            ..debian
        },
        "debian-6.12-amd64" => debian,
        _ => KernelFacts {
            mmap_min_addr: 4096,
            vvar_vclock_size: 2 << 12,
            vsyscall: Some("--xp".into()),
            ..debian
        },
    }
}

/// What `elfmap kernel capture` writes: the release and architecture of a machine's kernel
/// and its [`KernelFacts`], measured there.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelCapture {
    /// `elfmap-kernel/1`.
    pub schema: String,
    /// `uname -r`.
    pub release: String,
    /// `uname -m`.
    pub machine: String,
    /// `/proc/version`.
    pub version: String,
    pub facts: KernelFacts,
    /// What the capture's probes measured of the rules themselves.
    #[serde(default)]
    pub probes: Probes,
}

impl KernelCapture {
    pub const SCHEMA: &'static str = "elfmap-kernel/1";

    /// A capture file's text.
    pub fn from_json(text: &str, origin: &std::path::Path) -> Result<KernelCapture> {
        let c: KernelCapture = serde_json::from_str(text).map_err(|e| {
            Error::bad_input(
                origin,
                format!("not a kernel capture (elfmap kernel capture): {e}"),
            )
        })?;
        if c.schema != Self::SCHEMA {
            return Err(Error::bad_input(
                origin,
                format!(
                    "kernel capture schema {:?}, expected {:?}",
                    c.schema,
                    Self::SCHEMA
                ),
            ));
        }
        Ok(c)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("capture serializes")
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
