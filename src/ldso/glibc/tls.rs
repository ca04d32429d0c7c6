//! DOC: the static TLS block of the initial thread. Models glibc 2.36 `elf/rtld.c:
//! init_tls()`, `elf/dl-tls.c: _dl_determine_tlsoffset()` (the `TLS_TCB_AT_TP` variant,
//! x86), `_dl_tls_static_surplus_init()` and `_dl_allocate_tls_storage()` /
//! `allocate_dtv()`: which sizes the minimal malloc is asked for, and where the thread
//! pointer ends up.

/// `TCB_ALIGNMENT` (sysdeps/x86/nptl/tls.h... `sysdeps/nptl/dl-tls_init_tp.c`): 64.
pub const TCB_ALIGNMENT: u64 = 64;
/// `TLS_SLOTINFO_SURPLUS` (elf/dl-tls.c): spare slotinfo entries.
pub const TLS_SLOTINFO_SURPLUS: u64 = 62;
/// `DTV_SURPLUS` (elf/dl-tls.c): spare dtv entries.
pub const DTV_SURPLUS: u64 = 14;
/// `LIBC_IE_TLS` and `OTHER_IE_TLS` (elf/dl-tls.c): static TLS reserved per namespace.
pub const LIBC_IE_TLS: u64 = 192;
pub const OTHER_IE_TLS: u64 = 144;
/// Tunable defaults: `glibc.rtld.nns` = 4, `glibc.rtld.optional_static_tls` = 512.
pub const DEFAULT_NNS: u64 = 4;
pub const DEFAULT_OPTIONAL_STATIC_TLS: u64 = 512;

/// One module's PT_TLS, as `_dl_map_object_from_fd()` records it in the link map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsModule {
    /// `l_tls_blocksize` = p_memsz.
    pub blocksize: u64,
    /// `l_tls_align` = p_align (0 treated as 1).
    pub align: u64,
    /// `l_tls_firstbyte_offset` = p_vaddr & (p_align - 1).
    pub firstbyte_offset: u64,
}

impl TlsModule {
    pub fn from_phdr(p_vaddr: u64, p_memsz: u64, p_align: u64) -> TlsModule {
        let align = if p_align == 0 { 1 } else { p_align };
        TlsModule {
            blocksize: p_memsz,
            align,
            firstbyte_offset: if p_align == 0 {
                0
            } else {
                p_vaddr & (p_align.wrapping_sub(1))
            },
        }
    }
}

/// The outcome of `_dl_determine_tlsoffset()`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StaticTls {
    /// `l_tls_offset` of each module, in slot order (the block is at TP - offset).
    pub offsets: Vec<u64>,
    /// `GL(dl_tls_static_used)`.
    pub used: u64,
    /// `GLRO(dl_tls_static_size)`: blocks + surplus, aligned, + the TCB.
    pub static_size: u64,
    /// `GLRO(dl_tls_static_align)`.
    pub static_align: u64,
}

/// Models `_dl_tls_static_surplus_init(0)`: `(nns - 1) * LIBC_IE_TLS + nns * OTHER_IE_TLS +
/// optional_static_tls` with the tunable defaults (1664 bytes).
pub fn dl_tls_static_surplus_init(nns: u64, optional_static_tls: u64) -> u64 {
    nns.saturating_sub(1) * LIBC_IE_TLS + nns * OTHER_IE_TLS + optional_static_tls
}

/// `roundup()` of <sys/param.h> for any `a` > 0 (not only powers of two), in `size_t`
/// arithmetic: it wraps as the C does.
fn roundup(x: u64, a: u64) -> u64 {
    (x.wrapping_add(a - 1) / a).wrapping_mul(a)
}

/// Models `_dl_determine_tlsoffset()` for `TLS_TCB_AT_TP`: modules in slot order, each
/// placed below the previous one (or in a padding gap left earlier), aligned so that its
/// first byte keeps its offset modulo the alignment.
pub fn dl_determine_tlsoffset(modules: &[TlsModule], surplus: u64, tcb_size: u64) -> StaticTls {
    let mut max_align = TCB_ALIGNMENT;
    let mut freetop: u64 = 0;
    let mut freebottom: u64 = 0;
    let mut offset: u64 = 0;
    let mut offsets = Vec::with_capacity(modules.len());
    for m in modules {
        let firstbyte = m.firstbyte_offset.wrapping_neg() & (m.align - 1);
        max_align = max_align.max(m.align);
        // size_t arithmetic throughout: a hostile PT_TLS makes the sums wrap in ld.so too
        // (found by fuzzing plan_library).
        if freebottom.wrapping_sub(freetop) >= m.blocksize {
            let off = roundup(
                freetop.wrapping_add(m.blocksize).wrapping_sub(firstbyte),
                m.align,
            )
            .wrapping_add(firstbyte);
            if off <= freebottom {
                freetop = off;
                offsets.push(off);
                continue;
            }
        }
        let off = roundup(
            offset.wrapping_add(m.blocksize).wrapping_sub(firstbyte),
            m.align,
        )
        .wrapping_add(firstbyte);
        if off
            > offset
                .wrapping_add(m.blocksize)
                .wrapping_add(freebottom.wrapping_sub(freetop))
        {
            freetop = offset;
            freebottom = off.wrapping_sub(m.blocksize);
        }
        offset = off;
        offsets.push(off);
    }
    StaticTls {
        offsets,
        used: offset,
        static_size: roundup(offset.wrapping_add(surplus), max_align).wrapping_add(tcb_size),
        static_align: max_align,
    }
}

/// Models `_dl_allocate_tls_storage()`'s request: `static_size + static_align + P` (room to
/// align the block, plus the pointer to free it with).
pub fn tls_storage_request(tls: &StaticTls, word: u64) -> u64 {
    // size_t arithmetic: wraps in C (a hostile PT_TLS; found by fuzzing plan_library).
    tls.static_size
        .wrapping_add(tls.static_align)
        .wrapping_add(word)
}

/// The thread pointer for a block returned at `allocated`: `roundup(allocated, align) +
/// static_size - TLS_TCB_SIZE`.
pub fn thread_pointer(tls: &StaticTls, allocated: u64, tcb_size: u64) -> u64 {
    roundup(allocated, tls.static_align)
        .wrapping_add(tls.static_size)
        .wrapping_sub(tcb_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldso_tls_surplus_default() {
        assert_eq!(
            dl_tls_static_surplus_init(DEFAULT_NNS, DEFAULT_OPTIONAL_STATIC_TLS),
            1664
        );
    }

    /// hello64 as ld.so laid it out (gdb): libc's PT_TLS (p_vaddr 0x1cf8d0, p_memsz 0x90, p_align
    /// 8) gives the 0x10c8 request seen in gdb, and the thread pointer chunk + 0x740.
    #[test]
    fn ldso_tls_hello64() {
        let libc = TlsModule::from_phdr(0x1cf8d0, 0x90, 8);
        let t = dl_determine_tlsoffset(&[libc], 1664, 2368);
        assert_eq!(tls_storage_request(&t, 8), 0x10c8);
        assert_eq!(thread_pointer(&t, 0x7ffff7dd1000, 2368), 0x7ffff7dd1740);
    }

    /// main-all64 as ld.so laid it out (gdb): libtls's 1 MiB `__thread` array (p_vaddr 0x3db0,
    /// p_memsz 0x100010, p_align 16) before libc's block: a 0x1010c8 request.
    #[test]
    fn ldso_tls_big_block() {
        let libtls = TlsModule::from_phdr(0x3db0, 0x100010, 16);
        let libc = TlsModule::from_phdr(0x1cf8d0, 0x90, 8);
        let t = dl_determine_tlsoffset(&[libtls, libc], 1664, 2368);
        assert_eq!(t.offsets, vec![0x100010, 0x1000a0]);
        assert_eq!(tls_storage_request(&t, 8), 0x1010c8);
    }
}
