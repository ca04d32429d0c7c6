//! The CPU as the dynamic loaders look at it: the vendor and which of the CPUID features
//! glibc's `init_cpu_features()` tests are usable (`is_x86_feature_detected!` includes the
//! OS's XCR0 checks, as glibc's "usable" bits do). What the loaders derive from them (ISA
//! level, `dl_hwcap`, `dl_platform`) is the loader model's business.

use serde::{Deserialize, Serialize};

/// The CPU facts a plan depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuFacts {
    /// CPUID leaf 0's vendor string ("GenuineIntel", "AuthenticAMD", ...).
    pub vendor: String,
    /// The usable features among those glibc's `init_cpu_features()` tests, by their
    /// `is_x86_feature_detected!` names (and "lahf_lm", "avx512er", "avx512pf" read from
    /// CPUID directly).
    pub features: Vec<String>,
}

impl CpuFacts {
    /// Whether feature `name` is usable.
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f == name)
    }

    pub fn is_intel(&self) -> bool {
        self.vendor == "GenuineIntel"
    }

    /// This CPU, as this process's C library found it at start-up: glibc's own
    /// `init_cpu_features()` (sysdeps/x86/cpu-features.c) has already run CPUID and
    /// checked the OS's XCR0 state, and `__x86_get_cpuid_feature_leaf()` (public since
    /// glibc 2.33, `<sys/platform/x86.h>`) hands out its "active" bits: the bits ld.so
    /// itself goes by. Asking again would cost a CPUID per leaf, each a trap to the
    /// hypervisor in a VM (~3.6 us here). Only the vendor string is read with CPUID.
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> CpuFacts {
        let (_, b, c, d) = {
            let r = core::arch::x86_64::__cpuid_count(0, 0);
            (r.eax, r.ebx, r.ecx, r.edx)
        };
        let vendor: Vec<u8> = [b, d, c].iter().flat_map(|r| r.to_le_bytes()).collect();
        let features = ACTIVE
            .iter()
            .filter(|(_, leaf, reg, bit)| glibc_active(*leaf, *reg, *bit))
            .map(|(name, ..)| name.to_string())
            .collect();
        CpuFacts {
            vendor: String::from_utf8_lossy(&vendor).into_owned(),
            features,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn detect() -> CpuFacts {
        CpuFacts::default()
    }
}

/// `struct cpuid_feature` of `<bits/platform/x86.h>`: one CPUID leaf's registers (EAX, EBX,
/// ECX, EDX) as the CPU reported them and as glibc made them "active".
#[cfg(target_arch = "x86_64")]
#[repr(C)]
struct CpuidFeature {
    cpuid: [u32; 4],
    active: [u32; 4],
}

#[cfg(target_arch = "x86_64")]
extern "C" {
    fn __x86_get_cpuid_feature_leaf(leaf: u32) -> *const CpuidFeature;
}

/// glibc's `CPUID_INDEX_*` numbering of the leaves it keeps, and the registers.
#[cfg(target_arch = "x86_64")]
const CPUID_INDEX_1: u32 = 0;
#[cfg(target_arch = "x86_64")]
const CPUID_INDEX_7: u32 = 1;
#[cfg(target_arch = "x86_64")]
const CPUID_INDEX_80000001: u32 = 2;
#[cfg(target_arch = "x86_64")]
const EBX: usize = 1;
#[cfg(target_arch = "x86_64")]
const ECX: usize = 2;

/// The features a plan asks about (by `is_x86_feature_detected!` name), with glibc's leaf
/// index, register and bit (`<bits/platform/x86.h>`: `x86_cpu_*`).
#[cfg(target_arch = "x86_64")]
const ACTIVE: [(&str, u32, usize, u32); 22] = [
    ("cmpxchg16b", CPUID_INDEX_1, ECX, 13),
    ("popcnt", CPUID_INDEX_1, ECX, 23),
    ("sse3", CPUID_INDEX_1, ECX, 0),
    ("ssse3", CPUID_INDEX_1, ECX, 9),
    ("sse4.1", CPUID_INDEX_1, ECX, 19),
    ("sse4.2", CPUID_INDEX_1, ECX, 20),
    ("avx", CPUID_INDEX_1, ECX, 28),
    ("avx2", CPUID_INDEX_7, EBX, 5),
    ("f16c", CPUID_INDEX_1, ECX, 29),
    ("fma", CPUID_INDEX_1, ECX, 12),
    ("lzcnt", CPUID_INDEX_80000001, ECX, 5),
    ("movbe", CPUID_INDEX_1, ECX, 22),
    ("bmi1", CPUID_INDEX_7, EBX, 3),
    ("bmi2", CPUID_INDEX_7, EBX, 8),
    ("avx512f", CPUID_INDEX_7, EBX, 16),
    ("avx512bw", CPUID_INDEX_7, EBX, 30),
    ("avx512cd", CPUID_INDEX_7, EBX, 28),
    ("avx512dq", CPUID_INDEX_7, EBX, 17),
    ("avx512vl", CPUID_INDEX_7, EBX, 31),
    ("lahf_lm", CPUID_INDEX_80000001, ECX, 0),
    ("avx512er", CPUID_INDEX_7, EBX, 27),
    ("avx512pf", CPUID_INDEX_7, EBX, 26),
];

/// glibc's `x86_cpu_active()`: whether the bit is set in the leaf's active registers.
#[cfg(target_arch = "x86_64")]
fn glibc_active(leaf: u32, reg: usize, bit: u32) -> bool {
    // SAFETY: a call into this process's C library, which returns a pointer to its
    // static, initialised-at-start-up feature table for a leaf index it knows (the three
    // used here exist since glibc 2.33), or to a zeroed one for an index it does not; the
    // table is never written after start-up.
    let leaf = unsafe { &*__x86_get_cpuid_feature_leaf(leaf) };
    leaf.active[reg] & (1 << bit) != 0
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// glibc's active bits, as read by `detect()`, agree with Rust's own CPU probing
    /// (`is_x86_feature_detected!`, which runs CPUID and XGETBV itself) on this CPU, for
    /// every feature both know.
    #[test]
    fn glibc_bits_agree_with_rust_probing() {
        let facts = CpuFacts::detect();
        macro_rules! rust_says {
            ($($f:tt),*) => {
                vec![$(($f, std::arch::is_x86_feature_detected!($f))),*]
            };
        }
        let probed = rust_says!(
            "cmpxchg16b",
            "popcnt",
            "sse3",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "avx",
            "avx2",
            "f16c",
            "fma",
            "lzcnt",
            "movbe",
            "bmi1",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512cd",
            "avx512dq",
            "avx512vl"
        );
        for (name, has) in probed {
            assert_eq!(facts.has(name), has, "{name}");
        }
        let ext = core::arch::x86_64::__cpuid_count(0x8000_0001, 0);
        assert_eq!(facts.has("lahf_lm"), ext.ecx & 1 != 0);
        let vendor = core::arch::x86_64::__cpuid_count(0, 0);
        assert_eq!(facts.vendor.as_bytes()[..4], vendor.ebx.to_le_bytes());
    }
}
