//! Personality bits (include/uapi/linux/personality.h) and what exec does with them.

pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
pub const ADDR_COMPAT_LAYOUT: u32 = 0x0200000;
pub const READ_IMPLIES_EXEC: u32 = 0x0400000;
pub const ADDR_LIMIT_3GB: u32 = 0x8000000;
pub const MMAP_PAGE_ZERO: u32 = 0x0100000;
/// `PER_CLEAR_ON_SETID`: what exec of a set-user-ID program clears.
pub const PER_CLEAR_ON_SETID: u32 =
    READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE | ADDR_COMPAT_LAYOUT | MMAP_PAGE_ZERO;

/// `PF_RANDOMIZE` for a task exec'd with personality `pers` on a host whose
/// `kernel.randomize_va_space` is `randomize_va_space` (fs/binfmt_elf.c: load_elf_binary()):
/// `randomize_va_space != 0 && !(personality & ADDR_NO_RANDOMIZE)`.
pub fn pf_randomize(randomize_va_space: u32, pers: u32) -> bool {
    randomize_va_space != 0 && pers & ADDR_NO_RANDOMIZE == 0
}
