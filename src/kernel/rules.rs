//! DOC: kernel profiles as data. Every rule of the exec model that changed between the
//! kernels people run, or that depends on how the kernel was configured, is a field of
//! [`KernelRules`], documented with the release (and, where known, the commit) that
//! introduced it. The built-in rule sets ([`BUILT_IN`]) are keyed by what `uname -r`
//! prints on the machine: Debian's bullseye, bookworm (amd64 and 686-pae) and trixie /
//! bookworm-backports kernels, and the 6.18 kernel elfmap was developed on. Several rules
//! reached Debian's kernels by stable back-port, so within one Debian series they depend on
//! the ABI number (`6.1.0-37`) or the upstream sublevel (`6.12.30`).
//!
//! The rules here are statements from the kernel sources (read in Debian's `linux-source-*`
//! packages); each built-in set was checked against the real maps of that kernel under qemu
//! (the lab, `lab/`), and where the two disagreed the lab's maps won.

use serde::Serialize;

use crate::mm::rules::{MergeNew, MmRules, ThpAnon, ThpFile};

/// The kernel's own architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelArch {
    /// x86_64 (64-bit tasks, and i386 tasks as compat tasks with `CONFIG_IA32_EMULATION`).
    X86_64,
    /// A native 32-bit x86 kernel (`CONFIG_X86_32`, e.g. Debian's 686-pae): only i386 tasks,
    /// no compat layer, `TASK_SIZE` = `PAGE_OFFSET` (3G/1G with `CONFIG_VMSPLIT_3G`).
    I386,
}

impl KernelArch {
    /// `sizeof(void *)` in the kernel: the size of the pointers it puts on a new stack.
    pub fn pointer_size(self) -> u64 {
        match self {
            KernelArch::X86_64 => super::profile::KERNEL_POINTER_SIZE,
            KernelArch::I386 => 4,
        }
    }
}

/// Where the brk of a loader run as a program (ET_DYN without PT_INTERP: a static PIE,
/// `ld.so PROGRAM`) starts (fs/binfmt_elf.c: `load_elf_binary()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoaderBrk {
    /// Moved to `ELF_ET_DYN_BASE` only when randomising (`randomize_va_space > 1`):
    /// bbdc6076d2e5 "binfmt_elf: move brk out of mmap when doing direct loader exec" (v5.2).
    WhenRandomized,
    /// Moved always (`brk_moved`): 11854fe263eb "binfmt_elf: Move brk for static PIE even if
    /// ASLR disabled" (v6.15; Debian 6.1.0-37, 6.12.30).
    Always,
}

/// How exec maps the part of a PT_LOAD beyond its file bytes (`.bss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BssTail {
    /// One anonymous region after all segments, from the page after the highest file end to
    /// the page after the highest memory end (fs/binfmt_elf.c: `set_brk()` /
    /// `load_elf_interp()`'s `elf_bss`/`last_bss`), up to v6.6.
    SetBrk,
    /// Each segment's own, right after it (fs/binfmt_elf.c: `elf_load()`): 585a018627b4
    /// "binfmt_elf: Support segments with 0 filesz and misaligned starts" (v6.7) for the
    /// program, "binfmt_elf: Use elf_load() for interpreter" (v6.7) for the interpreter.
    ElfLoad,
}

/// The rules of one kernel release and configuration. Field by field, what changed and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelRules {
    /// The kernel's architecture ([`KernelArch`]).
    pub arch: KernelArch,
    /// The 64-bit vDSO is mapped with a hint just above the stack
    /// (arch/x86/entry/vdso/vma.c: `map_vdso_randomized()` with `vdso_addr()`), drawn even
    /// without PF_RANDOMIZE (then the hint is the stack's end, never free, and the vDSO goes
    /// where a hint-less mapping would). Gone with 3c6539b4c177 "x86/vdso: Move vDSO to mmap
    /// region" (v6.9).
    pub vdso_addr_hint: bool,
    /// The range of `arch_randomize_brk()` for 64-bit tasks (arch/x86/kernel/process.c):
    /// 32 MiB, 1 GiB since 44c76825d6ee "x86: Increase brk randomness entropy for 64-bit
    /// systems" (v6.9; Debian 5.10.0-33, 6.1.0-26/27 and from 6.1.0-29). 32-bit tasks: 32 MiB.
    pub brk_rnd_range_64: u64,
    /// With randomisation, `start_brk` is one page above the end of `.bss`: 2a5eb9995528
    /// "binfmt_elf: Leave a gap between .bss and brk" (v6.10; Debian 6.1.0-37).
    pub brk_gap: bool,
    /// Where a loader's brk goes ([`LoaderBrk`]).
    pub loader_brk: LoaderBrk,
    /// The program's `.bss` ([`BssTail`]).
    pub program_bss: BssTail,
    /// The interpreter's `.bss` ([`BssTail`]; Debian 6.1.0-37 took the program's part only).
    pub interp_bss: BssTail,
    /// A loader run as a program (static PIE, `ld.so PROGRAM`) is placed at its PT_LOADs'
    /// largest `p_align`: 3545deff0ec7 "binfmt_elf: Honor PT_LOAD alignment for static PIE"
    /// (v6.11; Debian 6.1.0-37). Before, only a PIE with PT_INTERP was (ce81bb256a22, v5.10).
    pub loader_p_align: bool,
    /// The memory-management rules (THP alignment, `[heap]` naming, accounting, the maps
    /// column width).
    pub mm: MmRules,
}

impl KernelRules {
    /// Whether a task of `abi` gets its vDSO at `vdso_addr()`'s hint above the stack
    /// ([`KernelRules::vdso_addr_hint`]: 64-bit tasks only; 32-bit ones map it with no hint,
    /// `load_vdso32()`).
    pub fn vdso_hinted(&self, abi: crate::elf::Abi) -> bool {
        self.vdso_addr_hint && abi == crate::elf::Abi::X86_64
    }

    /// The 6.18 rules with this machine's configuration (the newest of every rule).
    fn v6_18() -> KernelRules {
        KernelRules {
            arch: KernelArch::X86_64,
            vdso_addr_hint: false,
            brk_rnd_range_64: 1 << 30,
            brk_gap: true,
            loader_brk: LoaderBrk::Always,
            program_bss: BssTail::ElfLoad,
            interp_bss: BssTail::ElfLoad,
            loader_p_align: true,
            mm: MmRules {
                thp_file: ThpFile::AlignedTopdown,
                thp_filesystems: THP_FS_6_12,
                thp_32bit: false,
                thp_anon: ThpAnon::PmdMultipleNoHint,
                heap_exclusive: true,
                merge_new: MergeNew::PrevFirst,
                brk_merges_below: false,
                name_pad: NAME_PAD_64,
                mounts: None,
            },
        }
    }

    /// The rules of release `release` under the built-in set `b` (the Debian back-ports by
    /// ABI number or sublevel are applied here).
    fn of(b: &BuiltIn, v: &Release) -> KernelRules {
        let mut r = KernelRules::v6_18();
        match b.name {
            "debian-5.10-amd64" => {
                r.vdso_addr_hint = true;
                // 5.10.226-1 (ABI 33) brought the 1 GiB brk range (stable 5.10.225).
                r.brk_rnd_range_64 = if v.abi.is_some_and(|a| a >= 33) {
                    1 << 30
                } else {
                    32 << 20
                };
                r.brk_gap = false;
                r.loader_brk = LoaderBrk::WhenRandomized;
                r.program_bss = BssTail::SetBrk;
                r.interp_bss = BssTail::SetBrk;
                r.loader_p_align = false;
                r.mm.thp_file = ThpFile::DaxOnly;
                r.mm.thp_filesystems = THP_FS_5_10;
                r.mm.thp_32bit = true;
                r.mm.thp_anon = ThpAnon::None;
                r.mm.heap_exclusive = false;
                r.mm.brk_merges_below = true;
            }
            "debian-6.1-amd64" | "debian-6.1-686-pae" => {
                let abi = v.abi.unwrap_or(0);
                r.vdso_addr_hint = b.arch == KernelArch::X86_64;
                // 1 GiB in 6.1.0-26/27 (stable 6.1.107), reverted by Debian in 6.1.0-28
                // (#1085762), again from 6.1.0-29 (6.1.123-1).
                r.brk_rnd_range_64 = if abi == 26 || abi == 27 || abi >= 29 {
                    1 << 30
                } else {
                    32 << 20
                };
                // 6.1.140-1 (ABI 37): the v6.7 elf_load() rework for the program, the brk
                // gap, the loader's brk and p_align.
                let new_exec = abi >= 37;
                r.brk_gap = new_exec;
                r.loader_brk = if new_exec {
                    LoaderBrk::Always
                } else {
                    LoaderBrk::WhenRandomized
                };
                r.program_bss = if new_exec {
                    BssTail::ElfLoad
                } else {
                    BssTail::SetBrk
                };
                r.interp_bss = BssTail::SetBrk;
                r.loader_p_align = new_exec;
                r.mm.thp_file = ThpFile::Aligned;
                r.mm.thp_filesystems = THP_FS_6_1;
                // 4ef9ad19e176 in 6.1.81 (ABI 19) for compat tasks; d9592025000b in 6.1.105
                // (ABI 24) for the native 32-bit kernel.
                r.mm.thp_32bit = match b.arch {
                    KernelArch::X86_64 => abi < 19,
                    KernelArch::I386 => abi < 24,
                };
                r.mm.thp_anon = ThpAnon::None;
                r.mm.heap_exclusive = false;
                r.mm.merge_new = MergeNew::NextFirst;
                if b.arch == KernelArch::I386 {
                    r.arch = KernelArch::I386;
                    r.mm.name_pad = NAME_PAD_32;
                }
            }
            // 11854fe263eb reached 6.12 in 6.12.30.
            "debian-6.12-amd64" if v.sublevel < 30 => {
                r.loader_brk = LoaderBrk::WhenRandomized;
            }
            _ => {}
        }
        r
    }
}

/// The maps name column on a 64-bit kernel: `25 + 6 * 8 - 1`.
pub const NAME_PAD_64: usize = 25 + 6 * 8 - 1;
/// The maps name column on a 32-bit kernel: `25 + 6 * 4 - 1`.
pub const NAME_PAD_32: usize = 25 + 6 * 4 - 1;

const EXT4: i64 = 0xEF53;
const XFS: i64 = 0x5846_5342;
const FUSE: i64 = 0x6573_5546;
const BTRFS: i64 = 0x9123_683E;
const EROFS: i64 = 0xE0F5_E1E2;
const BCACHEFS: i64 = 0xCA45_1A4E;

/// Filesystems with `.get_unmapped_area = thp_get_unmapped_area` in 5.10: ext2/4, xfs,
/// fuse (only DAX files were aligned then).
const THP_FS_5_10: &[i64] = &[EXT4, XFS, FUSE];
/// 6.1: and btrfs (stable 6.0.3), erofs (stable 6.1.82).
const THP_FS_6_1: &[i64] = &[EXT4, XFS, FUSE, BTRFS, EROFS];
/// 6.12 and 6.18: and bcachefs. (tmpfs has `shmem_get_unmapped_area()`, which aligns only
/// with `huge=`; overlayfs, 9p and nfs have none.)
const THP_FS_6_12: &[i64] = &[EXT4, XFS, FUSE, BTRFS, EROFS, BCACHEFS];

/// One built-in rule set, and the releases it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BuiltIn {
    /// Its name, as `plan --format table` and JSON show it.
    pub name: &'static str,
    /// The releases (`uname -r`) it is exact for.
    pub releases: &'static str,
    /// The distribution's name for them.
    pub what: &'static str,
    pub arch: KernelArch,
    /// The upstream version (major, minor) it follows.
    pub version: (u32, u32),
    /// A release string of this series the lab ran (the one the default facts are from).
    pub example: &'static str,
}

/// The built-in rule sets.
pub const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        name: "debian-5.10-amd64",
        releases: "5.10.0-*-amd64",
        what: "Debian 11 bullseye",
        arch: KernelArch::X86_64,
        version: (5, 10),
        example: "5.10.0-32-amd64",
    },
    BuiltIn {
        name: "debian-6.1-amd64",
        releases: "6.1.0-*-amd64",
        what: "Debian 12 bookworm",
        arch: KernelArch::X86_64,
        version: (6, 1),
        example: "6.1.0-50-amd64",
    },
    BuiltIn {
        name: "debian-6.1-686-pae",
        releases: "6.1.0-*-686-pae",
        what: "Debian 12 bookworm, i386 (native 32-bit, 3G/1G)",
        arch: KernelArch::I386,
        version: (6, 1),
        example: "6.1.0-50-686-pae",
    },
    BuiltIn {
        name: "debian-6.12-amd64",
        releases: "6.12.*+deb12-amd64, 6.12.*+deb13-amd64",
        what: "Debian 13 trixie, Debian 12 bookworm-backports",
        arch: KernelArch::X86_64,
        version: (6, 12),
        example: "6.12.117+deb13-amd64",
    },
    BuiltIn {
        name: "linux-6.18",
        releases: "6.18.*",
        what: "Linux 6.18 (the kernel elfmap was developed on: vsyscall=xonly, THP madvise)",
        arch: KernelArch::X86_64,
        version: (6, 18),
        example: "6.18.44-fc-v1300",
    },
];

/// What a release string says: `MAJOR.MINOR.SUBLEVEL`, and for Debian's kernels the ABI
/// number (`6.1.0-50-amd64`) and the flavour (`amd64`, `686-pae`, `cloud-amd64`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub sublevel: u32,
    /// Debian's ABI number (`5.10.0-32-amd64`: 32).
    pub abi: Option<u32>,
    /// The flavour after the ABI or the `+debNN` part.
    pub flavour: String,
    /// `+debNN` (Debian's 6.12 and later naming).
    pub debian_suffix: bool,
}

impl Release {
    /// Parse a `uname -r` string; `None` if it does not start with `MAJOR.MINOR`.
    pub fn parse(s: &str) -> Option<Release> {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let mut nums = s[..num_end].split('.').filter(|x| !x.is_empty());
        let major = nums.next()?.parse().ok()?;
        let minor = nums.next()?.parse().ok()?;
        let sublevel = nums.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let rest = &s[num_end..];
        let (abi, flavour, debian_suffix) = if let Some(r) = rest.strip_prefix('+') {
            // 6.12.95+deb12-amd64
            match r.split_once('-') {
                Some((deb, fl)) if deb.starts_with("deb") => (None, fl.to_string(), true),
                _ => (None, String::new(), false),
            }
        } else if let Some(r) = rest.strip_prefix('-') {
            // 6.1.0-50-amd64
            match r.split_once('-') {
                Some((n, fl)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                    (n.parse().ok(), fl.to_string(), false)
                }
                _ => (None, r.to_string(), false),
            }
        } else {
            (None, String::new(), false)
        };
        Some(Release {
            major,
            minor,
            sublevel,
            abi,
            flavour,
            debian_suffix,
        })
    }

    /// Whether the flavour is a 32-bit x86 one (`686`, `686-pae`, `i386`, ...).
    pub fn is_32bit(&self) -> bool {
        self.flavour.starts_with("686") || self.flavour.contains("i386")
    }

    fn is_debian_amd64(&self) -> bool {
        self.flavour == "amd64" || self.flavour.ends_with("-amd64")
    }
}

/// The rules chosen for a release: the built-in set, and whether it is exactly for that
/// release or only the nearest one known.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub built_in: &'static BuiltIn,
    pub rules: KernelRules,
    /// `false`: the release is not one the built-in set is for; its rules are the nearest.
    pub exact: bool,
}

/// The rules for `release` (what `uname -r` prints there): the built-in set for it, or the
/// nearest one (same architecture, nearest version).
pub fn for_release(release: &str) -> Chosen {
    let parsed = Release::parse(release);
    let v = parsed.clone().unwrap_or(Release {
        major: 6,
        minor: 18,
        sublevel: 0,
        abi: None,
        flavour: String::new(),
        debian_suffix: false,
    });
    let exact = parsed.as_ref().and_then(|v| {
        let name = match (v.major, v.minor) {
            (5, 10) if v.abi.is_some() && v.is_debian_amd64() && v.sublevel == 0 => {
                "debian-5.10-amd64"
            }
            (6, 1) if v.abi.is_some() && v.sublevel == 0 && v.is_debian_amd64() => {
                "debian-6.1-amd64"
            }
            (6, 1) if v.abi.is_some() && v.sublevel == 0 && v.flavour == "686-pae" => {
                "debian-6.1-686-pae"
            }
            (6, 12) if v.debian_suffix && v.is_debian_amd64() => "debian-6.12-amd64",
            (6, 18) if !v.is_32bit() => "linux-6.18",
            _ => return None,
        };
        BUILT_IN.iter().find(|b| b.name == name)
    });
    let (built_in, is_exact) = match exact {
        Some(b) => (b, true),
        None => {
            let arch = if v.is_32bit() {
                KernelArch::I386
            } else {
                KernelArch::X86_64
            };
            let key = |b: &BuiltIn| {
                let d = (i64::from(b.version.0) * 100 + i64::from(b.version.1))
                    - (i64::from(v.major) * 100 + i64::from(v.minor));
                // Nearest version; on a tie the newer rules.
                (b.arch != arch, d.unsigned_abs(), d < 0)
            };
            (
                BUILT_IN.iter().min_by_key(|b| key(b)).expect("built-ins"),
                false,
            )
        }
    };
    Chosen {
        built_in,
        rules: KernelRules::of(built_in, &v),
        exact: is_exact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_as_uname_prints_them() {
        let r = Release::parse("6.1.0-50-686-pae").unwrap();
        assert_eq!((r.major, r.minor, r.sublevel, r.abi), (6, 1, 0, Some(50)));
        assert_eq!(r.flavour, "686-pae");
        assert!(r.is_32bit());
        let r = Release::parse("6.12.95+deb12-amd64").unwrap();
        assert_eq!((r.major, r.minor, r.sublevel, r.abi), (6, 12, 95, None));
        assert!(r.debian_suffix && r.is_debian_amd64());
        let r = Release::parse("6.18.44-fc-v1300").unwrap();
        assert_eq!((r.major, r.minor, r.sublevel), (6, 18, 44));
        assert!(Release::parse("x").is_none());
    }

    #[test]
    fn built_ins_are_chosen_by_release() {
        for b in BUILT_IN {
            let c = for_release(b.example);
            assert!(c.exact, "{}", b.example);
            assert_eq!(c.built_in.name, b.name);
        }
        // Debian's back-ports by ABI number.
        assert_eq!(
            for_release("5.10.0-32-amd64").rules.brk_rnd_range_64,
            32 << 20
        );
        assert_eq!(
            for_release("5.10.0-33-amd64").rules.brk_rnd_range_64,
            1 << 30
        );
        assert_eq!(
            for_release("6.1.0-28-amd64").rules.brk_rnd_range_64,
            32 << 20
        );
        assert!(!for_release("6.1.0-36-amd64").rules.brk_gap);
        assert!(for_release("6.1.0-37-amd64").rules.brk_gap);
        // Not built in: the nearest, same architecture.
        let c = for_release("5.15.0-91-generic");
        assert!(!c.exact);
        assert_eq!(c.built_in.name, "debian-5.10-amd64");
        let c = for_release("6.8.0-45-generic");
        assert_eq!(c.built_in.name, "debian-6.12-amd64");
        let c = for_release("5.10.0-30-686-pae");
        assert_eq!(c.built_in.name, "debian-6.1-686-pae");
        assert!(!c.exact);
    }
}
