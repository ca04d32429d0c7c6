//! Page arithmetic (the kernel's `ELF_PAGESTART`, `ELF_PAGEOFFSET`, `ELF_PAGEALIGN`,
//! `PAGE_ALIGN`). Addresses are plain `u64`; every helper that can overflow on hostile input
//! is checked and returns `Option`.

/// `PAGE_SIZE` on x86 (arch/x86/include/asm/page_types.h). Also `ELF_MIN_ALIGN`.
pub const PAGE_SIZE: u64 = 4096;

/// `ELF_PAGESTART(x)`: round down to a page.
pub const fn page_start(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// `ELF_PAGEOFFSET(x)`: offset within the page.
pub const fn page_offset(x: u64) -> u64 {
    x & (PAGE_SIZE - 1)
}

/// `ELF_PAGEALIGN(x)` / `PAGE_ALIGN(x)`: round up to a page; `None` on overflow.
pub fn page_align(x: u64) -> Option<u64> {
    x.checked_add(PAGE_SIZE - 1).map(page_start)
}

/// Round `x` up to a multiple of the power of two `a`; `None` on overflow.
pub fn align_up(x: u64, a: u64) -> Option<u64> {
    debug_assert!(a.is_power_of_two());
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

/// Round `x` down to a multiple of the power of two `a`.
pub const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// An address as all JSON output writes addresses: a hex string (`"0x555555554000"`).
pub fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

/// An optional address as a hex string, or null.
pub fn opt_hex<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => hex(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn rounding() {
        assert_eq!(page_start(0x1fff), 0x1000);
        assert_eq!(page_offset(0x1fff), 0xfff);
        assert_eq!(page_align(0x1001), Some(0x2000));
        assert_eq!(page_align(0x1000), Some(0x1000));
        assert_eq!(page_align(u64::MAX), None);
        assert_eq!(align_up(0x555555554aaa, 0x200000), Some(0x555555600000));
    }
}
