//! The CPU facts glibc 2.36's loader derives from CPUID and uses for the library search:
//! the x86 ISA level (`cpu_features->isa_1`), the active glibc-hwcaps subdirectories, the
//! legacy `dl_hwcap`/`dl_platform` values and the subdirectory list `_dl_important_hwcaps`
//! builds from them (elf/dl-hwcaps.c, sysdeps/x86/cpu-features.c).
//!
//! N.B. the `glibc.cpu.hwcaps`, `glibc.cpu.hwcap_mask` and `glibc.cpu.x86_*` tunables
//! (GLIBC_TUNABLES, LD_HWCAP_MASK) can lower these values; they are not modelled.

use crate::elf::Abi;
use crate::host::cpu::CpuFacts;

/// `GNU_PROPERTY_X86_ISA_1_BASELINE` (elf.h).
pub const GNU_PROPERTY_X86_ISA_1_BASELINE: u32 = 1 << 0;
/// `GNU_PROPERTY_X86_ISA_1_V2`.
pub const GNU_PROPERTY_X86_ISA_1_V2: u32 = 1 << 1;
/// `GNU_PROPERTY_X86_ISA_1_V3`.
pub const GNU_PROPERTY_X86_ISA_1_V3: u32 = 1 << 2;
/// `GNU_PROPERTY_X86_ISA_1_V4`.
pub const GNU_PROPERTY_X86_ISA_1_V4: u32 = 1 << 3;

/// sysdeps/x86/dl-hwcap.h: `HWCAP_X86_SSE2`, `HWCAP_X86_64`, `HWCAP_X86_AVX512_1`.
pub const HWCAP_X86_SSE2: u64 = 1 << 0;
pub const HWCAP_X86_64: u64 = 1 << 1;
pub const HWCAP_X86_AVX512_1: u64 = 1 << 2;

/// sysdeps/x86/dl-procinfo.c: `_dl_x86_hwcap_flags`, indexed by hwcap bit.
const DL_X86_HWCAP_FLAGS: [&str; 3] = ["sse2", "x86_64", "avx512_1"];
/// sysdeps/x86/dl-procinfo.c: `_dl_x86_platforms`.
const DL_X86_PLATFORMS: [&str; 4] = ["i586", "i686", "haswell", "xeon_phi"];
/// sysdeps/x86_64/dl-hwcaps-subdirs.c: `_dl_hwcaps_subdirs`, best first.
const DL_HWCAPS_SUBDIRS_X86_64: [&str; 3] = ["x86-64-v4", "x86-64-v3", "x86-64-v2"];
/// elf/dl-hwcaps.h: `GLIBC_HWCAPS_PREFIX`.
pub const GLIBC_HWCAPS_PREFIX: &str = "glibc-hwcaps/";

/// Models sysdeps/x86/get-isa-level.h: `get_isa_level()`, the `GNU_PROPERTY_X86_ISA_1_*`
/// bits of `cpu_features->isa_1` (x86-64 psABI levels) of the CPU `cpu`. On x86-64 CMOV,
/// CX8, FPU, FXSR, MMX, SSE and SSE2 are architectural, so the baseline is always set.
pub fn get_isa_level(cpu: &CpuFacts) -> u32 {
    let all = |names: &[&str]| names.iter().all(|n| cpu.has(n));
    let mut isa = GNU_PROPERTY_X86_ISA_1_BASELINE;
    if !all(&[
        "cmpxchg16b",
        "lahf_lm",
        "popcnt",
        "sse3",
        "ssse3",
        "sse4.1",
        "sse4.2",
    ]) {
        return isa;
    }
    isa |= GNU_PROPERTY_X86_ISA_1_V2;
    if !all(&["avx", "avx2", "f16c", "fma", "lzcnt", "movbe"]) {
        return isa;
    }
    isa |= GNU_PROPERTY_X86_ISA_1_V3;
    if all(&["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]) {
        isa |= GNU_PROPERTY_X86_ISA_1_V4;
    }
    isa
}

/// What one loader (the x86-64 or the i386 one) computes at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderHwcaps {
    /// `cpu_features->isa_1`.
    pub isa_1: u32,
    /// Active glibc-hwcaps subdirectories, best first (`_dl_hwcaps_subdirs_active`).
    pub hwcaps_subdirs_active: Vec<&'static str>,
    /// `GLRO(dl_hwcap)`.
    pub dl_hwcap: u64,
    /// `GLRO(dl_hwcap_mask)` = `HWCAP_IMPORTANT` (tunable default).
    pub dl_hwcap_mask: u64,
    /// `GLRO(dl_platform)`: AT_PLATFORM ("x86_64"; the kernel says "i686" for compat tasks),
    /// replaced by "haswell"/"xeon_phi" on some Intel CPUs.
    pub dl_platform: &'static str,
}

impl LoaderHwcaps {
    /// Models sysdeps/x86/cpu-features.c: `init_cpu_features()` (the `dl_hwcap`/`dl_platform`
    /// part) and sysdeps/x86_64/dl-hwcaps-subdirs.c: `_dl_hwcaps_subdirs_active()` for the
    /// loader of `abi`, on the CPU `cpu`.
    pub fn for_abi(abi: Abi, cpu: &CpuFacts) -> LoaderHwcaps {
        let isa_1 = get_isa_level(cpu);
        match abi {
            Abi::X86_64 => {
                let (dl_hwcap, platform) = x86_64_hwcap_platform(cpu);
                // Test in reverse preference order: v2, v3, v4; the last `active` names of the
                // list are active.
                let levels = [
                    GNU_PROPERTY_X86_ISA_1_V2,
                    GNU_PROPERTY_X86_ISA_1_V3,
                    GNU_PROPERTY_X86_ISA_1_V4,
                ];
                let active = levels.iter().take_while(|&&l| isa_1 & l != 0).count();
                LoaderHwcaps {
                    isa_1,
                    hwcaps_subdirs_active: DL_HWCAPS_SUBDIRS_X86_64[3 - active..].to_vec(),
                    dl_hwcap,
                    dl_hwcap_mask: HWCAP_X86_64 | HWCAP_X86_AVX512_1,
                    dl_platform: platform,
                }
            }
            // elf/dl-hwcaps-subdirs.c (generic, empty list); SSE2 is always usable on a CPU
            // that runs x86-64; an i686-class CPU gives platform "i686".
            Abi::I386 => LoaderHwcaps {
                isa_1,
                hwcaps_subdirs_active: Vec::new(),
                dl_hwcap: HWCAP_X86_SSE2,
                dl_hwcap_mask: HWCAP_X86_SSE2,
                dl_platform: "i686",
            },
        }
    }

    /// `_dl_string_platform(GLRO(dl_platform))`: the platform's bit number in cache hwcap
    /// words (`_DL_FIRST_PLATFORM + i`), for the platforms this loader knows
    /// (x86-64: haswell, xeon_phi; i386: i586, i686).
    pub fn string_platform(&self, abi: Abi) -> Option<u32> {
        let range = match abi {
            Abi::X86_64 => 2..4,
            Abi::I386 => 0..2,
        };
        range
            .into_iter()
            .find(|&i| DL_X86_PLATFORMS[i] == self.dl_platform)
            .map(|i| super::ldcache::DL_FIRST_PLATFORM + i as u32)
    }

    /// Models elf/dl-hwcaps.c: `_dl_important_hwcaps()`: the subdirectory prefixes tried in
    /// every search directory, in order, each ending in '/' (the last one is "", the
    /// directory itself). First the active glibc-hwcaps names, then the legacy power set of
    /// the components (names of the set bits of `dl_hwcap & dl_hwcap_mask` in ascending bit
    /// order, the platform, "tls"): entry i holds the components whose bit is set in
    /// `2^n - 1 - i`, written last component first. Duplicates are kept, as ld.so keeps them
    /// (x86-64 here: `tls/x86_64/` appears twice, once for the platform, once for the hwcap).
    pub fn important_hwcaps(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .hwcaps_subdirs_active
            .iter()
            .map(|n| format!("{GLIBC_HWCAPS_PREFIX}{n}/"))
            .collect();
        let masked = self.dl_hwcap & self.dl_hwcap_mask;
        let mut comps: Vec<&str> = (0..64)
            .filter(|b| masked & (1u64 << b) != 0)
            .map(|b| DL_X86_HWCAP_FLAGS.get(b as usize).copied().unwrap_or("?"))
            .collect();
        comps.push(self.dl_platform);
        comps.push("tls");
        let n = comps.len();
        for i in 0..(1usize << n) {
            let mask = (1usize << n) - 1 - i;
            let mut s = String::new();
            for k in (0..n).rev() {
                if mask & (1 << k) != 0 {
                    s.push_str(comps[k]);
                    s.push('/');
                }
            }
            out.push(s);
        }
        out
    }
}

/// The x86-64 branch of `init_cpu_features()`: `dl_hwcap = HWCAP_X86_64`, and on Intel CPUs
/// `HWCAP_X86_AVX512_1` and the "haswell"/"xeon_phi" platform overrides.
fn x86_64_hwcap_platform(cpu: &CpuFacts) -> (u64, &'static str) {
    let mut hwcap = HWCAP_X86_64;
    if !cpu.is_intel() {
        return (hwcap, "x86_64");
    }
    let mut platform = None;
    if cpu.has("avx512cd") {
        if cpu.has("avx512er") {
            if cpu.has("avx512pf") {
                platform = Some("xeon_phi");
            }
        } else if cpu.has("avx512bw") && cpu.has("avx512dq") && cpu.has("avx512vl") {
            hwcap |= HWCAP_X86_AVX512_1;
        }
    }
    let haswell = ["avx2", "fma", "bmi1", "bmi2", "lzcnt", "movbe", "popcnt"];
    if platform.is_none() && haswell.iter().all(|n| cpu.has(n)) {
        platform = Some("haswell");
    }
    (hwcap, platform.unwrap_or("x86_64"))
}

/// The sizes `_dl_important_hwcaps()` allocates: the `compute_priorities()` array and the
/// result table, and `ncapstr` (the number of subdirectory strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwcapsSizes {
    pub priorities: u64,
    pub table: u64,
    pub ncapstr: u64,
}

/// Models the sizes of `elf/dl-hwcaps.c: _dl_important_hwcaps()` (2.36 branch, after "Fix
/// hwcaps string size overestimation"): `compute_priorities()` allocates one
/// `struct priority` (16 bytes on x86-64, 12 on i386) per active glibc-hwcaps name; the
/// table is `2P * (h + 2^c)` of `r_strlenpair`s, the glibc-hwcaps strings
/// ("glibc-hwcaps/NAME/") and the compressed legacy power set of the c components.
pub fn dl_important_hwcaps_sizes(hw: &LoaderHwcaps, word: u64) -> HwcapsSizes {
    let h = hw.hwcaps_subdirs_active.len() as u64;
    let priority = if word == 8 { 16 } else { 12 };
    let t1: u64 = hw
        .hwcaps_subdirs_active
        .iter()
        .map(|n| (GLIBC_HWCAPS_PREFIX.len() + n.len() + 1) as u64)
        .sum();
    let masked = hw.dl_hwcap & hw.dl_hwcap_mask;
    let mut lens: Vec<u64> = Vec::new();
    const NAMES: [&str; 3] = ["sse2", "x86_64", "avx512_1"];
    for b in 0..64u32 {
        if masked & (1u64 << b) != 0 {
            lens.push(NAMES.get(b as usize).map_or(0, |s| s.len() as u64));
        }
    }
    lens.push(hw.dl_platform.len() as u64);
    lens.push(3); // "tls"
    let cnt = lens.len();
    let total = if cnt == 1 {
        lens[0] + 1
    } else {
        let mut t = lens[0] + lens[cnt - 1] + 2;
        if cnt > 2 {
            t <<= 1;
            for l in &lens[1..cnt - 1] {
                t += l + 1;
            }
            if cnt > 3 {
                t <<= cnt - 3;
            }
        }
        t
    };
    let k = h + (1u64 << cnt);
    HwcapsSizes {
        priorities: priority * h,
        table: 2 * word * k + t1 + total,
        ncapstr: k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldso_hwcaps_sizes_of_this_kind_of_machine() {
        let hw = LoaderHwcaps {
            isa_1: 7,
            hwcaps_subdirs_active: vec!["x86-64-v3", "x86-64-v2"],
            dl_hwcap: HWCAP_X86_64,
            dl_hwcap_mask: HWCAP_X86_64 | HWCAP_X86_AVX512_1,
            dl_platform: "x86_64",
        };
        // As gdb showed them on `__minimal_malloc`: 0x20 and 0xeb, 10 strings.
        assert_eq!(
            dl_important_hwcaps_sizes(&hw, 8),
            HwcapsSizes {
                priorities: 0x20,
                table: 0xeb,
                ncapstr: 10
            }
        );
        let hw = LoaderHwcaps {
            isa_1: 7,
            hwcaps_subdirs_active: vec![],
            dl_hwcap: HWCAP_X86_SSE2,
            dl_hwcap_mask: HWCAP_X86_SSE2,
            dl_platform: "i686",
        };
        assert_eq!(dl_important_hwcaps_sizes(&hw, 4).table, 87);
        assert_eq!(dl_important_hwcaps_sizes(&hw, 4).ncapstr, 8);
    }

    use std::process::Command;

    fn diagnostics(ldso: &str) -> Option<String> {
        let out = Command::new(ldso).arg("--list-diagnostics").output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn deps_hwcaps_match_ld_so_diagnostics_x86_64() {
        let Some(text) = diagnostics("/lib64/ld-linux-x86-64.so.2") else {
            eprintln!("skipped: no x86-64 ld.so");
            return;
        };
        let h = LoaderHwcaps::for_abi(Abi::X86_64, &CpuFacts::detect());
        let active = u32::from_str_radix(
            field(&text, "dl_hwcaps_subdirs_active")
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        // Bit i of the mask = name i of "x86-64-v4:x86-64-v3:x86-64-v2".
        let want: Vec<&str> = (0..3)
            .filter(|i| active & (1 << i) != 0)
            .map(|i| DL_HWCAPS_SUBDIRS_X86_64[i])
            .collect();
        assert_eq!(h.hwcaps_subdirs_active, want);
        assert_eq!(
            format!("\"{}\"", h.dl_platform),
            field(&text, "dl_platform").unwrap()
        );
        assert_eq!(
            format!("{:#x}", h.dl_hwcap),
            field(&text, "dl_hwcap").unwrap()
        );
        assert_eq!(
            format!("{:#x}", h.dl_hwcap_mask),
            field(&text, "dl_hwcap_important").unwrap()
        );
        let sp = field(&text, "dl_string_platform").unwrap();
        let ours = h.string_platform(Abi::X86_64).map_or(u64::MAX, u64::from);
        assert_eq!(format!("{ours:#x}"), sp);
    }

    #[test]
    fn deps_hwcaps_match_ld_so_diagnostics_i386() {
        let Some(text) = diagnostics("/lib/ld-linux.so.2") else {
            eprintln!("skipped: no i386 ld.so");
            return;
        };
        let h = LoaderHwcaps::for_abi(Abi::I386, &CpuFacts::detect());
        assert_eq!(field(&text, "dl_hwcaps_subdirs_active"), Some("0x0"));
        assert_eq!(
            format!("\"{}\"", h.dl_platform),
            field(&text, "dl_platform").unwrap()
        );
        assert_eq!(
            format!("{:#x}", h.dl_hwcap),
            field(&text, "dl_hwcap").unwrap()
        );
        let ours = h.string_platform(Abi::I386).map_or(u64::MAX, u64::from);
        assert_eq!(
            format!("{ours:#x}"),
            field(&text, "dl_string_platform").unwrap()
        );
    }

    #[test]
    fn deps_hwcaps_subdir_lists() {
        let h = LoaderHwcaps {
            isa_1: 7,
            hwcaps_subdirs_active: vec!["x86-64-v3", "x86-64-v2"],
            dl_hwcap: HWCAP_X86_64,
            dl_hwcap_mask: HWCAP_X86_64 | HWCAP_X86_AVX512_1,
            dl_platform: "x86_64",
        };
        // As LD_DEBUG=libs prints it on this machine (spec 2.7).
        assert_eq!(
            h.important_hwcaps(),
            [
                "glibc-hwcaps/x86-64-v3/",
                "glibc-hwcaps/x86-64-v2/",
                "tls/x86_64/x86_64/",
                "tls/x86_64/",
                "tls/x86_64/",
                "tls/",
                "x86_64/x86_64/",
                "x86_64/",
                "x86_64/",
                ""
            ]
        );
        let h = LoaderHwcaps {
            isa_1: 7,
            hwcaps_subdirs_active: vec![],
            dl_hwcap: HWCAP_X86_SSE2,
            dl_hwcap_mask: HWCAP_X86_SSE2,
            dl_platform: "i686",
        };
        assert_eq!(
            h.important_hwcaps(),
            [
                "tls/i686/sse2/",
                "tls/i686/",
                "tls/sse2/",
                "tls/",
                "i686/sse2/",
                "i686/",
                "sse2/",
                ""
            ]
        );
    }
}
