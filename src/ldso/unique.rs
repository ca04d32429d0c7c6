//! DOC: the `STB_GNU_UNIQUE` symbol table that relocating C++ objects makes ld.so build.
//! Models glibc 2.36 `elf/dl-lookup.c: do_lookup_x()` / `do_lookup_unique()` as far as the
//! allocations go: the first lookup that resolves to a unique definition `calloc`s a table
//! of 31 `struct unique_sym`; before an insert that would fill it beyond 3/4
//! (`size * 3 <= n * 4`) a table of `_dl_higher_prime_number(size + 1)` entries replaces it.
//! n is the number of distinct names, among the symbols referenced by the relocations
//! processed at start-up (`elf/do-rel.h`: all of DT_RELA/DT_REL, DT_JMPREL too unless the
//! object is relocated lazily), whose first definition in the global scope is
//! `STB_GNU_UNIQUE` (spec/ldso.md 4.4 item 8).
//!
//! This is the one part of the loaded stage that reads more than headers: every object's
//! GNU hash table and dynamic symbol table (for the unique definitions), and, only when
//! some object defines a unique symbol (C++), the strings and relocations of the objects
//! scanned, until the number of tables is certain ([`unique_tables_of`]). The plan does
//! this on a second thread as the resolver finds objects ([`UniqueScan`]).
//!
//! Simplification: symbol versions are not compared (the first definition of the name in
//! an object is taken), which matches every program checked; `DT_SYMBOLIC` scopes are not
//! modelled.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::elf::dynamic::{vaddr_to_offset, DynamicInfo};
use crate::elf::ElfImage;

const DT_RELA: u64 = 7;

/// A small multiplicative hasher for symbol-name sets (names are short and trusted to be
/// distributed well enough; SipHash's DoS resistance is not needed here).
#[derive(Default, Clone, Copy)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        self.0 = h;
    }
}

type NameSet = HashSet<Box<[u8]>, BuildHasherDefault<NameHasher>>;
type NameMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<NameHasher>>;

const STB_LOCAL: u8 = 0;
const STB_GNU_UNIQUE: u8 = 10;
const STV_HIDDEN: u8 = 2;
const STV_INTERNAL: u8 = 1;
const STT_TLS: u8 = 6;
const SHN_UNDEF: u16 = 0;
const SHN_ABS: u16 = 0xfff1;
/// `ALLOWED_STT` of `check_match()`: NOTYPE, OBJECT, FUNC, COMMON, TLS, GNU_IFUNC.
const ALLOWED_STT: u32 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 10);

/// Relocation types: x86-64 / i386 (`elf.h`).
mod rtype {
    pub const X86_64_NONE: u32 = 0;
    pub const X86_64_COPY: u32 = 5;
    pub const X86_64_JUMP_SLOT: u32 = 7;
    pub const X86_64_RELATIVE: u32 = 8;
    pub const X86_64_DTPMOD64: u32 = 16;
    pub const X86_64_DTPOFF64: u32 = 17;
    pub const X86_64_TPOFF64: u32 = 18;
    pub const X86_64_TLSDESC: u32 = 36;
    pub const X86_64_RELATIVE64: u32 = 38;
    pub const I386_NONE: u32 = 0;
    pub const I386_COPY: u32 = 5;
    pub const I386_JMP_SLOT: u32 = 7;
    pub const I386_RELATIVE: u32 = 8;
    pub const I386_TLS_TPOFF: u32 = 14;
    pub const I386_TLS_DTPMOD32: u32 = 35;
    pub const I386_TLS_DTPOFF32: u32 = 36;
    pub const I386_TLS_TPOFF32: u32 = 37;
    pub const I386_TLS_DESC: u32 = 41;
}

/// `ELF_RTYPE_CLASS_PLT` / `ELF_RTYPE_CLASS_COPY`.
const CLASS_PLT: u8 = 1;
const CLASS_COPY: u8 = 2;

/// One dynamic symbol, the fields the lookup needs.
#[derive(Clone, Copy, Debug)]
struct Sym {
    st_name: u32,
    st_info: u8,
    st_other: u8,
    st_shndx: u16,
    st_value: u64,
}

/// The `st_name` of each unique definition among the symbols in `chunk` (entries of
/// `ESZ` bytes, `st_info` at `INFO`, `st_shndx` at `SHNDX`: only these are looked at
/// before a match). The sizes are constants so that the loop over a large table (about
/// 60 000 symbols for gdb's libraries) compiles to a few instructions per symbol.
fn unique_names<const ESZ: usize, const INFO: usize, const SHNDX: usize>(
    chunk: &[u8],
    found: &mut Vec<u32>,
) {
    for e in chunk.chunks_exact(ESZ) {
        let e: &[u8; ESZ] = e.try_into().expect("chunks_exact");
        let shndx = u16::from_le_bytes([e[SHNDX], e[SHNDX + 1]]);
        if e[INFO] >> 4 == STB_GNU_UNIQUE && shndx != SHN_UNDEF {
            found.push(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
        }
    }
}

/// The GNU hash table (`DT_GNU_HASH`) as file offsets.
#[derive(Clone, Copy, Debug)]
struct GnuHash {
    nbuckets: u32,
    symoffset: u32,
    bloom_size: u32,
    bloom_shift: u32,
    bloom: u64,
    buckets: u64,
    chain: u64,
}

/// A range of the file read into memory, addressed by file offset.
struct Table {
    start: u64,
    bytes: Bytes,
}

/// A table's bytes: read, or for large tables mapped ([`ElfImage::map_upto`]).
enum Bytes {
    Read(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Read(c) => c,
            Bytes::Mapped(m) => m,
        }
    }
}

impl Table {
    /// From this size on a table is mapped rather than read: on this kind of machine
    /// (a VM with costly exceptions and copies) `pread` copies about 1.4 GB/s and each
    /// fresh page of memory costs about 3 us, while a populated mapping costs an `mmap`
    /// and a `munmap` of a few microseconds each (taking other threads' TLBs with them).
    /// Measured on gdb's plan (paired): 8 KiB +0.04 ms and 64 KiB +0.01 ms against 32 KiB
    /// -0.05 to -0.08 ms, each against 16 KiB.
    const MAP_FROM: u64 = 32 * 1024;

    /// Bytes `[start, start+len)` of `img`, cut at the end of the file (empty past it).
    fn read(img: &ElfImage, start: u64, len: u64) -> Table {
        let avail = img.len().saturating_sub(start).min(len);
        let bytes = if avail >= Self::MAP_FROM {
            img.map_upto(start, avail).map(Bytes::Mapped)
        } else {
            None
        };
        let bytes = bytes.unwrap_or_else(|| {
            Bytes::Read(
                img.read_upto(start, len)
                    .map(Cow::into_owned)
                    .unwrap_or_default(),
            )
        });
        Table { start, bytes }
    }

    /// An empty table (nothing read).
    fn empty() -> Table {
        Table {
            start: 0,
            bytes: Bytes::Read(Vec::new()),
        }
    }

    /// Bytes `[off, off+len)` of the file, if they are all in the table.
    fn get(&self, off: u64, len: u64) -> Option<&[u8]> {
        slice_at(self.start, &self.bytes, off, len)
    }

    /// Whether `[off, off+len)` is all in the table.
    fn covers(&self, off: u64, len: u64) -> bool {
        self.get(off, len).is_some()
    }

    fn rd<const N: usize>(&self, off: u64) -> Option<[u8; N]> {
        self.get(off, N as u64)?.try_into().ok()
    }
    fn r32(&self, off: u64) -> Option<u32> {
        self.rd::<4>(off).map(u32::from_le_bytes)
    }
    fn r64(&self, off: u64) -> Option<u64> {
        self.rd::<8>(off).map(u64::from_le_bytes)
    }
    /// The bytes from `off` to the end of the table.
    fn tail(&self, off: u64) -> Option<&[u8]> {
        let o = usize::try_from(off.checked_sub(self.start)?).ok()?;
        self.bytes.get(o..)
    }
}

/// A reused buffer holding a range of the current object's file (`start`: its file
/// offset): its symbol table is scanned from here when it is small, so that it costs no
/// fresh memory; only the hash table is kept.
#[derive(Default)]
struct Scratch {
    start: u64,
    bytes: Vec<u8>,
}

impl Scratch {
    /// Bytes `[off, off+len)` of the file, if they are in the buffer.
    fn get(&self, off: u64, len: u64) -> Option<&[u8]> {
        slice_at(self.start, &self.bytes, off, len)
    }
}

/// Bytes `[off, off+len)` of a file whose bytes from offset `start` are `bytes`, if they
/// are all there.
fn slice_at(start: u64, bytes: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let o = usize::try_from(off.checked_sub(start)?).ok()?;
    bytes.get(o..o.checked_add(usize::try_from(len).ok()?)?)
}

/// An object's dynamic symbols and relocations.
///
/// Most objects are only asked which unique symbols they define (one pass over the symbol
/// table) and, during lookups, whether they define a name (Bloom filter, bucket, chain).
/// Both come from one read of the file from DT_GNU_HASH to DT_STRTAB, mapped when it is
/// large; strings are read one by one. The objects whose relocations are scanned also read
/// their strings whole (`DynSyms::load_all`).
pub struct DynSyms {
    img: Arc<ElfImage>,
    is64: bool,
    /// DT_SYMTAB's file offset, and the whole table once read.
    symtab_off: u64,
    symtab: OnceCell<Table>,
    /// DT_STRTAB's file offset and DT_STRSZ, and the whole table once read.
    strtab_at: (u64, u64),
    strtab: OnceCell<Table>,
    gnu: Option<GnuHash>,
    /// From DT_GNU_HASH on, read at once: the whole GNU hash table (Bloom filter, buckets,
    /// chains) and, when the object is small, the symbol table after it (GNU ld puts
    /// `.gnu.hash`, `.dynsym` and `.dynstr` one after the other). Empty without
    /// DT_GNU_HASH.
    head: Table,
    /// DT_HASH: (nbucket, bucket array offset, chain array offset) and the table.
    sysv: Option<(u32, u64, u64)>,
    sysv_table: Option<Table>,
    /// Relocation tables (offset, size): the DT_RELA/DT_REL range and DT_JMPREL.
    rel: Option<(u64, u64)>,
    jmprel: Option<(u64, u64)>,
    rela: bool,
    /// DT_RELACOUNT / DT_RELCOUNT: the leading RELATIVE relocations, which
    /// `elf_dynamic_do_Rel()` applies without looking at symbols.
    nrelative: u64,
    /// Number of symbols (from the hash table).
    nsyms: u64,
    /// Whether this is the program (COPY lookups skip it).
    pub is_executable: bool,
    /// DT_BIND_NOW / DF_BIND_NOW / DF_1_NOW: DT_JMPREL is relocated even when lazy.
    bind_now: bool,
}

/// `dl_new_hash()`: the GNU hash (djb2).
fn dl_new_hash(s: &[u8]) -> u32 {
    s.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// `_dl_elf_hash()`: the SysV hash.
fn dl_elf_hash(s: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in s {
        h = (h << 4).wrapping_add(u32::from(c));
        let hi = h & 0xf000_0000;
        if hi != 0 {
            h ^= hi >> 24;
        }
        h &= !hi;
    }
    h
}

impl DynSyms {
    /// Read the hash-table heads of `img`, whose dynamic section is `dynamic`; `None` if
    /// it has no symbol table (nothing to look up).
    fn new(
        img: &Arc<ElfImage>,
        dynamic: &DynamicInfo,
        is_executable: bool,
        scratch: &mut Scratch,
    ) -> Option<DynSyms> {
        let is64 = img.is_64();
        let t = &dynamic.tables;
        let off = |v: Option<u64>| v.and_then(|v| vaddr_to_offset(img, v));
        let symtab_off = off(t.symtab)?;
        let strtab = off((dynamic.strtab != 0).then_some(dynamic.strtab))?;
        let strsz = dynamic.strsz;
        let (gnu, head, gnu_nsyms) = match off(t.gnu_hash) {
            Some(h) => match read_gnu_hash(img, h, symtab_off, strtab, is64, scratch) {
                Some((g, head, n)) => (Some(g), head, n),
                None => (None, Table::empty(), None),
            },
            None => (None, Table::empty(), None),
        };
        let sysv = off(t.hash).and_then(|h| {
            let head = img.read(h, 8)?;
            let nbucket = u32::from_le_bytes(head[0..4].try_into().unwrap());
            let nchain = u32::from_le_bytes(head[4..8].try_into().unwrap());
            (nbucket > 0).then_some((nbucket, h + 8, h + 8 + u64::from(nbucket) * 4, nchain))
        });
        let nsyms = match (&gnu_nsyms, &sysv) {
            (_, Some((_, _, _, nchain))) => u64::from(*nchain),
            (Some(n), None) => *n,
            _ => 0,
        };
        // A hostile hash table can claim more symbols than the file holds: no more than
        // fit between DT_SYMTAB and the end of the file are ever read (nor allocated for).
        let esz = if is64 { 24 } else { 16 };
        let nsyms = nsyms.min(img.len().saturating_sub(symtab_off) / esz);
        // do_lookup_x() uses DT_GNU_HASH when there is one.
        let sysv = if gnu.is_some() { None } else { sysv };
        let sysv_table = sysv.map(|(nbucket, b, _, nchain)| {
            Table::read(img, b, (u64::from(nbucket) + u64::from(nchain)) * 4)
        });
        let rela = t.rela.is_some() || t.pltrel == Some(DT_RELA);
        let rel = if rela {
            off(t.rela).map(|o| (o, t.relasz.unwrap_or(0)))
        } else {
            off(t.rel).map(|o| (o, t.relsz.unwrap_or(0)))
        };
        let rel_vaddr = if rela { t.rela } else { t.rel };
        let jmprel_vaddr = t.jmprel;
        let pltrelsz = t.pltrelsz.unwrap_or(0);
        let jmprel = off(t.jmprel).map(|o| (o, pltrelsz));
        // elf/do-rel.h: a DT_JMPREL range at the end of DT_RELA is not relocated twice.
        let rel = match (rel, rel_vaddr, jmprel_vaddr) {
            (Some((o, sz)), Some(rv), Some(jv)) if rv + sz == jv + pltrelsz && sz >= pltrelsz => {
                Some((o, sz - pltrelsz))
            }
            (r, _, _) => r,
        };
        let nrelative = if rela { t.relacount } else { t.relcount }.unwrap_or(0);
        Some(DynSyms {
            img: img.clone(),
            nrelative,
            is64,
            symtab_off,
            symtab: OnceCell::new(),
            strtab_at: (strtab, strsz),
            strtab: OnceCell::new(),
            gnu,
            head,
            sysv: sysv.map(|(n, b, c, _)| (n, b, c)),
            sysv_table,
            rel,
            jmprel,
            rela,
            nsyms,
            is_executable,
            bind_now: dynamic.bind_now,
        })
    }

    fn sym_size(&self) -> u64 {
        if self.is64 {
            24
        } else {
            16
        }
    }

    /// Read the symbol table, the hash chains and the strings whole (for the objects whose
    /// relocations are scanned).
    fn load_all(&self) {
        let len = self.nsyms.saturating_mul(self.sym_size());
        if !self.head.covers(self.symtab_off, len) {
            self.symtab
                .get_or_init(|| Table::read(&self.img, self.symtab_off, len));
        }
        self.strtab.get_or_init(|| {
            let (off, sz) = self.strtab_at;
            Table::read(&self.img, off, if sz > 0 { sz } else { u64::MAX })
        });
    }

    fn sym(&self, idx: u64) -> Option<Sym> {
        let o = self
            .symtab_off
            .checked_add(idx.checked_mul(self.sym_size())?)?;
        let point;
        let t = match self.symtab.get() {
            _ if self.head.covers(o, self.sym_size()) => &self.head,
            Some(t) => t,
            None => {
                point = Table::read(&self.img, o, self.sym_size());
                &point
            }
        };
        let u32_at = |e: &[u8], i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        if self.is64 {
            let e = t.rd::<24>(o)?;
            Some(Sym {
                st_name: u32_at(&e, 0),
                st_info: e[4],
                st_other: e[5],
                st_shndx: u16::from_le_bytes([e[6], e[7]]),
                st_value: u64::from_le_bytes(e[8..16].try_into().expect("8 bytes")),
            })
        } else {
            let e = t.rd::<16>(o)?;
            Some(Sym {
                st_name: u32_at(&e, 0),
                st_value: u64::from(u32_at(&e, 4)),
                st_info: e[12],
                st_other: e[13],
                st_shndx: u16::from_le_bytes([e[14], e[15]]),
            })
        }
    }

    /// The name at `st_name`: from the whole string table if it was read, else read alone.
    fn name(&self, st_name: u32) -> Option<Cow<'_, [u8]>> {
        let (off, sz) = self.strtab_at;
        let at = off.checked_add(u64::from(st_name))?;
        if let Some(t) = self.strtab.get() {
            let tail = t.tail(at)?;
            // The first NUL (memchr, word at a time).
            return Some(Cow::Borrowed(
                std::ffi::CStr::from_bytes_until_nul(tail).ok()?.to_bytes(),
            ));
        }
        let limit = if sz > 0 {
            sz.checked_sub(u64::from(st_name))?
        } else {
            u64::MAX
        };
        self.img.cstr_at(at, limit).ok().map(Cow::Owned)
    }

    /// The names of the unique symbols this object defines, added to `out`; `buf` is a
    /// scratch buffer for the symbol table.
    fn unique_definitions(&self, out: &mut NameSet, scratch: &mut Scratch) {
        let first = self.gnu.as_ref().map_or(1, |g| u64::from(g.symoffset));
        let esz = self.sym_size();
        // st_name (the first word in both classes) of each unique definition.
        let mut found: Vec<u32> = Vec::new();
        let is64 = self.is64;
        let mut scan = |chunk: &[u8]| {
            if is64 {
                unique_names::<24, 4, 6>(chunk, &mut found)
            } else {
                unique_names::<16, 12, 14>(chunk, &mut found)
            }
        };
        let Some(start) = first
            .checked_mul(esz)
            .and_then(|x| x.checked_add(self.symtab_off))
        else {
            return;
        };
        let len = self.nsyms.saturating_sub(first).saturating_mul(esz);
        let in_head = scratch
            .get(start, len)
            .or_else(|| self.head.get(start, len));
        // Read through the reused buffer, a whole number of entries at a time, unless it
        // came with the hash table.
        const CHUNK: u64 = 2730;
        let mut done = 0;
        if let Some(all) = in_head {
            scan(all);
            done = len;
        }
        let buf = &mut scratch.bytes;
        scratch.start = u64::MAX;
        while done < len {
            let n = (len - done).min(CHUNK * esz);
            let Some(chunk) = self.img.read_into(start + done, n, buf) else {
                break;
            };
            scan(chunk);
            if (chunk.len() as u64) < n {
                break;
            }
            done += n;
        }
        if found.len() > 16 {
            self.load_all();
        }
        for st_name in found {
            if let Some(n) = self.name(st_name) {
                out.insert(n.into_owned().into_boxed_slice());
            }
        }
    }

    /// `check_match()` without versions: a definition of `name` usable for `class`.
    fn check_match(&self, idx: u64, name: &[u8], class: u8) -> Option<Sym> {
        let s = self.sym(idx)?;
        let stt = s.st_info & 0xf;
        if (s.st_value == 0 && s.st_shndx != SHN_ABS && stt != STT_TLS)
            || (class & CLASS_PLT != 0 && s.st_shndx == SHN_UNDEF)
        {
            return None;
        }
        if (1u32 << stt) & ALLOWED_STT == 0 {
            return None;
        }
        (*self.name(s.st_name)? == *name).then_some(s)
    }

    /// The Bloom filter test of `do_lookup_x()`.
    fn bloom_may_contain(&self, g: &GnuHash, gnu_hash: u32) -> Option<bool> {
        let word = if self.is64 { 64 } else { 32 };
        let wbytes = u64::from(word / 8);
        let bi = u64::from((gnu_hash / word) & (g.bloom_size - 1));
        let bw = if self.is64 {
            self.head.r64(g.bloom + bi * wbytes)?
        } else {
            u64::from(self.head.r32(g.bloom + bi * wbytes)?)
        };
        let b1 = gnu_hash & (word - 1);
        let b2 = (gnu_hash >> g.bloom_shift) & (word - 1);
        Some((bw >> b1) & (bw >> b2) & 1 != 0)
    }

    /// The object's definition of `name` (the hash-table walk of `do_lookup_x()`).
    fn lookup(&self, name: &[u8], gnu_hash: u32, class: u8) -> Option<Sym> {
        if let Some(g) = &self.gnu {
            if !self.bloom_may_contain(g, gnu_hash)? {
                return None;
            }
            let bucket = self
                .head
                .r32(g.buckets + u64::from(gnu_hash % g.nbuckets) * 4)?;
            if bucket == 0 || bucket < g.symoffset {
                return None;
            }
            let end = u64::from(bucket) + self.nsyms.max(1);
            for idx in u64::from(bucket)..end {
                let h = self
                    .head
                    .r32(g.chain + (idx - u64::from(g.symoffset)) * 4)?;
                if (h ^ gnu_hash) >> 1 == 0 {
                    if let Some(s) = self.check_match(idx, name, class) {
                        return Some(s);
                    }
                }
                if h & 1 != 0 {
                    break;
                }
            }
            return None;
        }
        let (nbucket, buckets, chain) = self.sysv?;
        let h = dl_elf_hash(name);
        let t = self.sysv_table.as_ref()?;
        let mut idx = u64::from(t.r32(buckets + u64::from(h % nbucket) * 4)?);
        for _ in 0..self.nsyms.max(1) {
            if idx == 0 {
                break;
            }
            if let Some(s) = self.check_match(idx, name, class) {
                return Some(s);
            }
            idx = u64::from(t.r32(chain + idx * 4)?);
        }
        None
    }

    /// The symbol references of the relocations processed at start-up, as
    /// (symbol index, type class): those `resolve_map()` looks up (not RELATIVE/NONE).
    /// DT_JMPREL is included unless `lazy`. `f` returns false to stop.
    fn references(&self, lazy: bool, mut f: impl FnMut(u64, u8) -> bool) {
        let entsize = match (self.is64, self.rela) {
            (true, true) => 24,
            (true, false) => 16,
            (false, true) => 12,
            (false, false) => 8,
        };
        let mut ranges = vec![];
        if let Some((off, size)) = self.rel {
            let skip = (self.nrelative * entsize).min(size);
            ranges.push((off + skip, size - skip));
        }
        if !lazy {
            if let Some(j) = self.jmprel {
                ranges.push(j);
            }
        }
        for (off, size) in ranges {
            let table = Table::read(&self.img, off, size);
            let n = size / entsize;
            for k in 0..n {
                let o = off + k * entsize;
                let info = if self.is64 {
                    table.r64(o + 8)
                } else {
                    table.r32(o + 4).map(u64::from)
                };
                let Some(info) = info else { break };
                let (rtype, rsym) = if self.is64 {
                    ((info & 0xffff_ffff) as u32, info >> 32)
                } else {
                    ((info & 0xff) as u32, info >> 8)
                };
                let class = if self.is64 {
                    use rtype::*;
                    match rtype {
                        X86_64_NONE | X86_64_RELATIVE | X86_64_RELATIVE64 => continue,
                        X86_64_JUMP_SLOT | X86_64_DTPMOD64 | X86_64_DTPOFF64 | X86_64_TPOFF64
                        | X86_64_TLSDESC => CLASS_PLT,
                        X86_64_COPY => CLASS_COPY,
                        _ => 0,
                    }
                } else {
                    use rtype::*;
                    match rtype {
                        I386_NONE | I386_RELATIVE => continue,
                        I386_JMP_SLOT | I386_TLS_DTPMOD32 | I386_TLS_DTPOFF32
                        | I386_TLS_TPOFF32 | I386_TLS_TPOFF | I386_TLS_DESC => CLASS_PLT,
                        I386_COPY => CLASS_COPY,
                        _ => 0,
                    }
                };
                if rsym == 0 {
                    continue;
                }
                if !f(rsym, class) {
                    return;
                }
            }
        }
    }

    /// The name of symbol `idx` if a relocation against it makes `resolve_map()` look it
    /// up (not STB_LOCAL, not hidden or internal) and it may be one of `filter`'s names:
    /// the GNU hash of a defined symbol comes from the hash chain, so most names are never
    /// read.
    fn lookup_name(
        &self,
        idx: u64,
        filter: &HashFilter,
        defined: &NameSet,
    ) -> Option<Cow<'_, [u8]>> {
        let looked_up = |s: &Sym| {
            let vis = s.st_other & 3;
            s.st_info >> 4 != STB_LOCAL && vis != STV_HIDDEN && vis != STV_INTERNAL
        };
        if let Some(g) = &self.gnu {
            if idx >= u64::from(g.symoffset) {
                // The hash first: it rejects nearly every symbol without reading it.
                let h = self
                    .head
                    .r32(g.chain + (idx - u64::from(g.symoffset)) * 4)?;
                if !filter.may_contain(h) {
                    return None;
                }
                let s = self.sym(idx).filter(looked_up)?;
                return self.name(s.st_name);
            }
        }
        // No hash at hand: the name set itself is the cheapest test.
        let s = self.sym(idx).filter(looked_up)?;
        let name = self.name(s.st_name)?;
        defined.contains(&*name).then_some(name)
    }
}

/// A bit set over the GNU hashes (low bit ignored, as in the hash chains) of a name set.
struct HashFilter {
    bits: Vec<u64>,
}

impl HashFilter {
    /// 2 KiB of bits: a few hundred names leave most of them clear.
    const BITS: u32 = 14;

    fn new<'n>(names: impl Iterator<Item = &'n [u8]>) -> HashFilter {
        let mut bits = vec![0u64; 1 << (Self::BITS - 6)];
        for n in names {
            let k = (dl_new_hash(n) >> 1) & ((1 << Self::BITS) - 1);
            bits[(k >> 6) as usize] |= 1 << (k & 63);
        }
        HashFilter { bits }
    }

    fn may_contain(&self, hash: u32) -> bool {
        let k = (hash >> 1) & ((1 << Self::BITS) - 1);
        self.bits[(k >> 6) as usize] & (1 << (k & 63)) != 0
    }
}

/// The largest `.gnu.hash` (with the symbol table of a small object) read as one table.
const GNU_HASH_MAX: u64 = 64 << 20;

/// Read the GNU hash table at file offset `h` whole, with the symbol table after it when
/// the strings follow at `strtab` (GNU ld's layout), and the number of symbols it implies:
/// the end of the chain of the highest bucket. `None` if the table is damaged.
fn read_gnu_hash(
    img: &ElfImage,
    h: u64,
    symtab: u64,
    strtab: u64,
    is64: bool,
    scratch: &mut Scratch,
) -> Option<(GnuHash, Table, Option<u64>)> {
    // GNU ld's layout: the chains end where the symbol table starts.
    let guess = if h < symtab && symtab <= strtab && strtab - h <= GNU_HASH_MAX {
        strtab - h
    } else if h < symtab && symtab - h <= GNU_HASH_MAX {
        symtab - h
    } else {
        16 + 2048
    };
    // Small: read into the scratch buffer, and keep a copy of the hash table only.
    scratch.start = u64::MAX;
    let mut table = if guess < Table::MAP_FROM {
        let mut bytes = std::mem::take(&mut scratch.bytes);
        if img.read_into(h, guess, &mut bytes).is_none() {
            bytes.clear();
        }
        Table {
            start: h,
            bytes: Bytes::Read(bytes),
        }
    } else {
        Table::read(img, h, guess)
    };
    let w = |t: &Table, i: u64| t.r32(h + 4 * i);
    let (nbuckets, symoffset, bloom_size, bloom_shift) =
        (w(&table, 0)?, w(&table, 1)?, w(&table, 2)?, w(&table, 3)?);
    if !(nbuckets > 0 && bloom_size.is_power_of_two()) {
        return None;
    }
    let word = if is64 { 8 } else { 4 };
    let bloom = h + 16;
    let buckets = bloom + u64::from(bloom_size) * word;
    let chain = buckets + u64::from(nbuckets) * 4;
    // Read again, longer, when a part lies past what was read (not GNU ld's layout).
    let reread = |t: &mut Table, end: u64| -> Option<()> {
        if !t.covers(h, end.checked_sub(h)?) {
            let want = end.checked_sub(h)?.max(2 * t.bytes.len() as u64);
            if end > img.len() || want > GNU_HASH_MAX {
                return None;
            }
            *t = Table::read(img, h, want);
        }
        Some(())
    };
    reread(&mut table, chain)?;
    // As whole 4-byte words, so that the loop over thousands of buckets vectorizes.
    let (words, _) = table
        .get(buckets, 4 * u64::from(nbuckets))?
        .as_chunks::<4>();
    let max = words
        .iter()
        .map(|b| u32::from_le_bytes(*b))
        .fold(0, u32::max);
    let nsyms = if max < symoffset {
        u64::from(symoffset)
    } else {
        let mut idx = u64::from(max);
        loop {
            let at = chain + (idx - u64::from(symoffset)) * 4;
            reread(&mut table, at + 4)?;
            if table.r32(at)? & 1 != 0 {
                break idx + 1;
            }
            idx += 1;
        }
    };
    let g = GnuHash {
        nbuckets,
        symoffset,
        bloom_size,
        bloom_shift,
        bloom,
        buckets,
        chain,
    };
    let chain_end = chain + nsyms.saturating_sub(u64::from(symoffset)) * 4;
    let table = match table.bytes {
        Bytes::Read(bytes) if bytes.len() as u64 > chain_end - h => {
            let kept = bytes[..(chain_end - h) as usize].to_vec();
            *scratch = Scratch { start: h, bytes };
            Table {
                start: h,
                bytes: Bytes::Read(kept),
            }
        }
        bytes => Table { start: h, bytes },
    };
    Some((g, table, Some(nsyms)))
}

/// What the unique-symbol tables of an object depend on: the file (device, inode, size)
/// and its dynamic section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectKey {
    dev: u64,
    ino: u64,
    len: u64,
    dynamic: Arc<DynamicInfo>,
}

impl ObjectKey {
    fn new(img: &ElfImage, dynamic: Arc<DynamicInfo>) -> ObjectKey {
        use std::os::unix::fs::MetadataExt;
        ObjectKey {
            dev: img.meta.dev(),
            ino: img.meta.ino(),
            len: img.len(),
            dynamic,
        }
    }

    /// Whether `img` with `dynamic` is the object this key was made from.
    pub fn matches(&self, img: &ElfImage, dynamic: &DynamicInfo) -> bool {
        use std::os::unix::fs::MetadataExt;
        (self.dev, self.ino, self.len) == (img.meta.dev(), img.meta.ino(), img.len())
            && (std::ptr::eq(&*self.dynamic, dynamic) || *self.dynamic == *dynamic)
    }
}

/// One object of the global scope as the model reads it: its tables and the unique names
/// it defines.
struct ScopeEntry {
    syms: Option<DynSyms>,
    defines: NameSet,
}

fn scope_entry(
    img: &Arc<ElfImage>,
    dynamic: &DynamicInfo,
    is_executable: bool,
    scratch: &mut Scratch,
) -> ScopeEntry {
    let syms = DynSyms::new(img, dynamic, is_executable, scratch);
    let mut defines = NameSet::default();
    if let Some(s) = &syms {
        s.unique_definitions(&mut defines, scratch);
    }
    scratch.start = u64::MAX;
    ScopeEntry { syms, defines }
}

/// The global scope ready for the reference scan: the objects' tables, the objects
/// relocated at start-up with their lazy flag, the unique names defined and who defines any.
struct Scope {
    syms: Vec<Option<DynSyms>>,
    relocated: Vec<(usize, bool)>,
    defined: NameSet,
    definers: Vec<usize>,
}

impl Scope {
    /// From entries in global-scope order; every object but ld.so (`rtld`) is relocated,
    /// DT_JMPREL skipped when `lazy` for objects without BIND_NOW.
    fn from_entries(entries: Vec<Option<ScopeEntry>>, rtld: usize, lazy: bool) -> Scope {
        // Sized once: the union grows past a thousand names for C++ programs.
        let mut defined = NameSet::with_capacity_and_hasher(
            entries.iter().flatten().map(|e| e.defines.len()).sum(),
            Default::default(),
        );
        let mut definers = Vec::new();
        let mut syms = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            match e {
                Some(e) => {
                    if !e.defines.is_empty() {
                        definers.push(i);
                        defined.extend(e.defines);
                    }
                    syms.push(e.syms);
                }
                None => syms.push(None),
            }
        }
        let relocated = (0..syms.len())
            .filter(|&i| i != rtld)
            .map(|i| {
                let bind_now = syms[i].as_ref().is_some_and(|s| s.bind_now);
                (i, lazy && !bind_now)
            })
            .collect();
        Scope {
            syms,
            relocated,
            defined,
            definers,
        }
    }

    /// From the load list: `objects` with their images and dynamic sections.
    fn of(objects: &[Option<(Arc<ElfImage>, Arc<DynamicInfo>)>], rtld: usize, lazy: bool) -> Scope {
        let mut scratch = Scratch::default();
        let entries = objects
            .iter()
            .enumerate()
            .map(|(i, o)| {
                o.as_ref()
                    .map(|(img, d)| scope_entry(img, d, i == 0, &mut scratch))
            })
            .collect();
        Scope::from_entries(entries, rtld, lazy)
    }

    /// The sizes of the unique-symbol tables ld.so allocates while relocating, in order
    /// ([`unique_table_sizes`] of the count). Only the tables matter, not the count: it is
    /// bounded above by the number of unique names defined in the scope, so the reference
    /// scan stops as soon as the count reaches the smallest one that needs as many tables
    /// as that bound, and objects defining unique symbols (which reference their own) are
    /// scanned first.
    fn tables(&self) -> Vec<u64> {
        let bound = unique_table_steps(self.defined.len() as u64);
        let Some(&(enough, _)) = bound.last() else {
            return Vec::new();
        };
        let is_definer = |(i, _): &(usize, bool)| self.definers.contains(i);
        let mut ordered: Vec<(usize, bool)> =
            self.relocated.iter().copied().filter(is_definer).collect();
        ordered.extend(self.relocated.iter().filter(|r| !is_definer(r)));
        let n = count_references(&self.syms, &ordered, &self.defined, enough);
        unique_table_sizes(n)
    }
}

/// The unique-symbol tables computed while the resolver was still finding objects, with
/// the inputs they were computed from (index = load-list position).
pub struct UniqueAhead {
    pub keys: Vec<Option<ObjectKey>>,
    pub tables: Vec<u64>,
}

/// What [`UniqueScan`] read (mappings of the objects' tables): dropping it unmaps them,
/// so a thread hands the result on first and drops this after.
pub struct TablesRead(#[allow(dead_code)] Scope);

/// The unique-symbol model fed object by object as the resolver reports them
/// ([`crate::deps::ObjectFound`]), for a second thread: the symbol tables are read while
/// the main thread resolves and maps, and the tables computed once the list is complete.
pub struct UniqueScan {
    program: Arc<ElfImage>,
    /// Where each object's version-array size goes, if wanted.
    ndx: Option<Arc<crate::ldso::versions::NdxAhead>>,
    lazy: bool,
    entries: Vec<Option<ScopeEntry>>,
    keys: Vec<Option<ObjectKey>>,
    rtld: usize,
    scratch: Scratch,
}

impl UniqueScan {
    /// For the program whose image is `program`, lazy binding on or off.
    pub fn new(program: Arc<ElfImage>, lazy: bool) -> UniqueScan {
        UniqueScan {
            program,
            ndx: None,
            lazy,
            entries: Vec::new(),
            keys: Vec::new(),
            rtld: usize::MAX,
            scratch: Scratch::default(),
        }
    }

    /// Also compute each object's `ndx_high` ([`crate::ldso::versions::version_ndx_high`])
    /// into `ndx`, while its file is being read anyway.
    pub fn with_versions(mut self, ndx: Arc<crate::ldso::versions::NdxAhead>) -> UniqueScan {
        self.ndx = Some(ndx);
        self
    }

    /// Read the object the resolver just entered in the load list.
    pub fn add(&mut self, f: crate::deps::ObjectFound) {
        let img = if f.index == 0 {
            Some(self.program.clone())
        } else {
            f.image
        };
        if f.is_rtld {
            self.rtld = f.index;
        }
        if self.entries.len() <= f.index {
            self.entries.resize_with(f.index + 1, || None);
            self.keys.resize(f.index + 1, None);
        }
        if let (Some(img), Some(d)) = (img, f.dynamic) {
            if let Some(ndx) = &self.ndx {
                ndx.put(
                    f.index,
                    &img,
                    crate::ldso::versions::version_ndx_high(&img, &d),
                );
            }
            self.entries[f.index] = Some(scope_entry(&img, &d, f.index == 0, &mut self.scratch));
            self.keys[f.index] = Some(ObjectKey::new(&img, d));
        }
    }

    /// The list is complete: its tables, with what was read to compute them.
    pub fn finish(self) -> (UniqueAhead, TablesRead) {
        let scope = Scope::from_entries(self.entries, self.rtld, self.lazy);
        let tables = scope.tables();
        (
            UniqueAhead {
                keys: self.keys,
                tables,
            },
            TablesRead(scope),
        )
    }
}

/// The unique-symbol tables of a program's load list: `objects` are the objects in
/// global-scope order (the program first) with their images and dynamic sections, `rtld`
/// the index of ld.so (not relocated again at start-up), `lazy` whether lazy binding is on
/// (DT_JMPREL is then skipped for objects without BIND_NOW).
pub fn unique_tables_of(
    objects: &[Option<(Arc<ElfImage>, Arc<DynamicInfo>)>],
    rtld: usize,
    lazy: bool,
) -> Vec<u64> {
    Scope::of(objects, rtld, lazy).tables()
}

/// The number of distinct names that end up in the unique-symbol table of the same load
/// list, counted to the end (no early stop): what [`unique_tables_of`] may stop short of.
pub fn count_unique_symbols(
    objects: &[Option<(Arc<ElfImage>, Arc<DynamicInfo>)>],
    rtld: usize,
    lazy: bool,
) -> u64 {
    let s = Scope::of(objects, rtld, lazy);
    count_references(&s.syms, &s.relocated, &s.defined, u64::MAX)
}

fn count_references(
    scope: &[Option<DynSyms>],
    relocated: &[(usize, bool)],
    defined: &NameSet,
    enough: u64,
) -> u64 {
    if defined.is_empty() {
        return 0;
    }
    let filter = HashFilter::new(defined.iter().map(|n| &**n));
    // Name -> resolves to a unique definition (per type class that matters: COPY skips the
    // program, PLT rejects undefined symbols with a value).
    let mut resolved: NameMap<[Option<bool>; 3]> =
        NameMap::with_capacity_and_hasher(defined.len(), Default::default());
    let mut seen = NameSet::with_capacity_and_hasher(defined.len(), Default::default());
    for &(i, lazy) in relocated {
        let Some(obj) = scope.get(i).and_then(Option::as_ref) else {
            continue;
        };
        obj.load_all();
        // Per symbol index: 0 not looked at, 1 irrelevant, 2 a candidate name.
        let mut memo = vec![0u8; usize::try_from(obj.nsyms).unwrap_or(0)];
        obj.references(lazy, |rsym, class| {
            let slot = usize::try_from(rsym).ok().and_then(|r| memo.get_mut(r));
            if let Some(m) = &slot {
                if **m == 1 {
                    return true;
                }
            }
            let Some(name) = obj
                .lookup_name(rsym, &filter, defined)
                .filter(|n| defined.contains(&**n))
            else {
                if let Some(m) = slot {
                    *m = 1;
                }
                return true;
            };
            if let Some(m) = slot {
                *m = 2;
            }
            let ci = usize::from(class.min(2));
            if !resolved.contains_key(&*name) {
                resolved.insert(name.to_vec().into_boxed_slice(), [None; 3]);
            }
            let entry = resolved.get_mut(&*name).expect("inserted above");
            let unique = *entry[ci].get_or_insert_with(|| {
                let h = dl_new_hash(&name);
                for m in scope.iter().flatten() {
                    if class & CLASS_COPY != 0 && m.is_executable {
                        continue;
                    }
                    if let Some(s) = m.lookup(&name, h, class) {
                        let vis = s.st_other & 3;
                        if vis == STV_HIDDEN || vis == STV_INTERNAL {
                            continue;
                        }
                        return s.st_info >> 4 == STB_GNU_UNIQUE;
                    }
                }
                false
            });
            if unique && !seen.contains(&*name) {
                seen.insert(name.into_owned().into_boxed_slice());
            }
            (seen.len() as u64) < enough
        });
        if seen.len() as u64 >= enough {
            break;
        }
    }
    seen.len() as u64
}

/// Models `elf/dl-misc.c: _dl_higher_prime_number()`: the smallest listed prime >= n.
pub fn dl_higher_prime_number(n: u64) -> u64 {
    const PRIMES: [u64; 30] = [
        7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139,
        524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
        268435399, 536870909, 1073741789, 2147483647, 4294967291,
    ];
    PRIMES
        .iter()
        .copied()
        .find(|&p| p >= n)
        .unwrap_or(4294967291)
}

/// The tables (in entries) allocated for `n` distinct unique names, in order, each with the
/// number of names that makes `do_lookup_unique()` allocate it.
pub fn unique_table_steps(n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let mut size = 31;
    out.push((1, size));
    for k in 1..n {
        // Before inserting the (k+1)-th name, k are in the table.
        if size * 3 <= k * 4 {
            size = dl_higher_prime_number(size + 1);
            out.push((k + 1, size));
        }
    }
    out
}

/// The table sizes (in entries) allocated for `n` distinct unique names, in order.
pub fn unique_table_sizes(n: u64) -> Vec<u64> {
    unique_table_steps(n).into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldso_unique_table_growth() {
        assert_eq!(unique_table_sizes(0), Vec::<u64>::new());
        assert_eq!(unique_table_sizes(24), vec![31]);
        assert_eq!(unique_table_sizes(25), vec![31, 61]);
        assert_eq!(unique_table_sizes(47), vec![31, 61, 127]);
        assert_eq!(dl_higher_prime_number(32), 61);
        assert_eq!(unique_table_steps(48), vec![(1, 31), (25, 61), (47, 127)]);
    }

    #[test]
    fn ldso_hashes() {
        assert_eq!(dl_new_hash(b""), 5381);
        assert_eq!(dl_new_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(dl_elf_hash(b"printf"), 0x077905a6);
    }
}
