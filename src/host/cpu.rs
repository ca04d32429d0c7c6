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

    /// This CPU.
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> CpuFacts {
        fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
            let r = core::arch::x86_64::__cpuid_count(leaf, sub);
            (r.eax, r.ebx, r.ecx, r.edx)
        }
        let (max, b, c, d) = cpuid(0, 0);
        let vendor: Vec<u8> = [b, d, c].iter().flat_map(|r| r.to_le_bytes()).collect();
        let ext_max = cpuid(0x8000_0000, 0).0;
        let ebx7 = if max >= 7 { cpuid(7, 0).1 } else { 0 };
        let mut features = Vec::new();
        macro_rules! probe {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) { features.push($f.to_string()); })*
            };
        }
        probe!(
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
        // LAHF/SAHF in 64-bit mode: CPUID 0x80000001 ECX bit 0.
        if ext_max >= 0x8000_0001 && cpuid(0x8000_0001, 0).2 & 1 != 0 {
            features.push("lahf_lm".into());
        }
        // AVX512ER / AVX512PF: CPUID 7.0 EBX bits 27 / 26, usable when AVX512F is.
        let avx512f = std::arch::is_x86_feature_detected!("avx512f");
        if avx512f && ebx7 & (1 << 27) != 0 {
            features.push("avx512er".into());
        }
        if avx512f && ebx7 & (1 << 26) != 0 {
            features.push("avx512pf".into());
        }
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
