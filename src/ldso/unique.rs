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
//! This is the one part of the loaded stage that reads more than headers: each object's
//! dynamic symbol table, hash table and relocations (still zero-copy over the mapped file).
//! It is skipped at once when no object defines a unique symbol (C programs).
//!
//! Simplification: symbol versions are not compared (the first definition of the name in
//! an object is taken), which matches every program checked; `DT_SYMBOLIC` scopes are not
//! modelled.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::elf::dynamic::vaddr_to_offset;
use crate::elf::{ElfImage, PT_DYNAMIC};

const DT_NULL: u64 = 0;
const DT_PLTRELSZ: u64 = 2;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_STRSZ: u64 = 10;
const DT_REL: u64 = 17;
const DT_RELSZ: u64 = 18;
const DT_PLTREL: u64 = 20;
const DT_JMPREL: u64 = 23;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_RELACOUNT: u64 = 0x6fff_fff9;
const DT_RELCOUNT: u64 = 0x6fff_fffa;

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

type NameSet<'a> = HashSet<&'a [u8], BuildHasherDefault<NameHasher>>;
type NameMap<'a, V> = HashMap<&'a [u8], V, BuildHasherDefault<NameHasher>>;

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

/// An object's dynamic symbols and relocations, read in place.
pub struct DynSyms<'a> {
    bytes: &'a [u8],
    is64: bool,
    symtab: u64,
    strtab: u64,
    strsz: u64,
    gnu: Option<GnuHash>,
    /// DT_HASH: (nbucket, bucket array offset, chain array offset).
    sysv: Option<(u32, u64, u64)>,
    /// Relocation tables (offset, size, is RELA): the DT_RELA/DT_REL range and DT_JMPREL.
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
}

fn rd<const N: usize>(b: &[u8], off: u64) -> Option<[u8; N]> {
    let o = usize::try_from(off).ok()?;
    b.get(o..o.checked_add(N)?)?.try_into().ok()
}
fn r32(b: &[u8], off: u64) -> Option<u32> {
    rd::<4>(b, off).map(u32::from_le_bytes)
}
fn r64(b: &[u8], off: u64) -> Option<u64> {
    rd::<8>(b, off).map(u64::from_le_bytes)
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

impl<'a> DynSyms<'a> {
    /// Read the tables of `img`; `None` if it has no symbol table (nothing to look up).
    pub fn new(img: &'a ElfImage, is_executable: bool) -> Option<DynSyms<'a>> {
        let bytes = img.bytes();
        let is64 = img.is_64();
        let ph = img.phdr(PT_DYNAMIC)?;
        let dynamic = img.slice(ph.p_offset, ph.p_filesz)?;
        let entsize = if is64 { 16 } else { 8 };
        let mut tags: Vec<(u64, u64)> = Vec::new();
        for e in dynamic.chunks_exact(entsize) {
            let (t, v) = if is64 {
                (
                    u64::from_le_bytes(e[0..8].try_into().ok()?),
                    u64::from_le_bytes(e[8..16].try_into().ok()?),
                )
            } else {
                (
                    u64::from(u32::from_le_bytes(e[0..4].try_into().ok()?)),
                    u64::from(u32::from_le_bytes(e[4..8].try_into().ok()?)),
                )
            };
            if t == DT_NULL {
                break;
            }
            tags.push((t, v));
        }
        let get = |tag: u64| tags.iter().rev().find(|(t, _)| *t == tag).map(|(_, v)| *v);
        let off = |tag: u64| get(tag).and_then(|v| vaddr_to_offset(img, v));
        let symtab = off(DT_SYMTAB)?;
        let strtab = off(DT_STRTAB)?;
        let strsz = get(DT_STRSZ).unwrap_or(0);
        let word = if is64 { 8 } else { 4 };
        let gnu = off(DT_GNU_HASH).and_then(|h| {
            let nbuckets = r32(bytes, h)?;
            let symoffset = r32(bytes, h + 4)?;
            let bloom_size = r32(bytes, h + 8)?;
            let bloom_shift = r32(bytes, h + 12)?;
            let bloom = h + 16;
            let buckets = bloom + u64::from(bloom_size) * word;
            let chain = buckets + u64::from(nbuckets) * 4;
            (nbuckets > 0 && bloom_size.is_power_of_two()).then_some(GnuHash {
                nbuckets,
                symoffset,
                bloom_size,
                bloom_shift,
                bloom,
                buckets,
                chain,
            })
        });
        let sysv = off(DT_HASH).and_then(|h| {
            let nbucket = r32(bytes, h)?;
            let nchain = r32(bytes, h + 4)?;
            (nbucket > 0).then_some((nbucket, h + 8, h + 8 + u64::from(nbucket) * 4, nchain))
        });
        let nsyms = match (&gnu, &sysv) {
            (_, Some((_, _, _, nchain))) => u64::from(*nchain),
            (Some(g), None) => gnu_nsyms(bytes, g).unwrap_or(0),
            _ => 0,
        };
        let rela = get(DT_RELA).is_some() || get(DT_PLTREL) == Some(DT_RELA);
        let rel = if rela {
            off(DT_RELA).map(|o| (o, get(DT_RELASZ).unwrap_or(0)))
        } else {
            off(DT_REL).map(|o| (o, get(DT_RELSZ).unwrap_or(0)))
        };
        let rel_vaddr = if rela { get(DT_RELA) } else { get(DT_REL) };
        let jmprel_vaddr = get(DT_JMPREL);
        let pltrelsz = get(DT_PLTRELSZ).unwrap_or(0);
        let jmprel = off(DT_JMPREL).map(|o| (o, pltrelsz));
        // elf/do-rel.h: a DT_JMPREL range at the end of DT_RELA is not relocated twice.
        let rel = match (rel, rel_vaddr, jmprel_vaddr) {
            (Some((o, sz)), Some(rv), Some(jv)) if rv + sz == jv + pltrelsz && sz >= pltrelsz => {
                Some((o, sz - pltrelsz))
            }
            (r, _, _) => r,
        };
        let nrelative = get(if rela { DT_RELACOUNT } else { DT_RELCOUNT }).unwrap_or(0);
        Some(DynSyms {
            nrelative,
            bytes,
            is64,
            symtab,
            strtab,
            strsz,
            gnu,
            sysv: sysv.map(|(n, b, c, _)| (n, b, c)),
            rel,
            jmprel,
            rela,
            nsyms,
            is_executable,
        })
    }

    fn sym(&self, idx: u64) -> Option<Sym> {
        if self.is64 {
            let o = self.symtab + idx * 24;
            Some(Sym {
                st_name: r32(self.bytes, o)?,
                st_info: rd::<1>(self.bytes, o + 4)?[0],
                st_other: rd::<1>(self.bytes, o + 5)?[0],
                st_shndx: u16::from_le_bytes(rd::<2>(self.bytes, o + 6)?),
                st_value: r64(self.bytes, o + 8)?,
            })
        } else {
            let o = self.symtab + idx * 16;
            Some(Sym {
                st_name: r32(self.bytes, o)?,
                st_value: u64::from(r32(self.bytes, o + 4)?),
                st_info: rd::<1>(self.bytes, o + 12)?[0],
                st_other: rd::<1>(self.bytes, o + 13)?[0],
                st_shndx: u16::from_le_bytes(rd::<2>(self.bytes, o + 14)?),
            })
        }
    }

    fn name(&self, st_name: u32) -> Option<&'a [u8]> {
        let start = usize::try_from(self.strtab + u64::from(st_name)).ok()?;
        let tail = self.bytes.get(start..)?;
        let limit = if self.strsz > u64::from(st_name) {
            usize::try_from(self.strsz - u64::from(st_name))
                .unwrap_or(usize::MAX)
                .min(tail.len())
        } else {
            tail.len()
        };
        let tail = &tail[..limit];
        // The first NUL (memchr, word at a time).
        Some(std::ffi::CStr::from_bytes_until_nul(tail).ok()?.to_bytes())
    }

    /// The names of the unique symbols this object defines.
    fn unique_definitions(&self, out: &mut NameSet<'a>) {
        let first = self.gnu.map_or(1, |g| u64::from(g.symoffset));
        // `sym()` reads the first 16 bytes of an entry (both classes); stop where it would
        // fail. Only st_info and st_shndx are looked at before a match.
        let (esz, info_at, shndx_at) = if self.is64 { (24, 4, 6) } else { (16, 12, 14) };
        let len = self.bytes.len() as u64;
        let Some(mut o) = first
            .checked_mul(esz)
            .and_then(|x| x.checked_add(self.symtab))
        else {
            return;
        };
        for i in first..self.nsyms {
            if o.checked_add(16).is_none_or(|e| e > len) {
                break;
            }
            let e = &self.bytes[o as usize..o as usize + 16];
            let shndx = u16::from_le_bytes([e[shndx_at], e[shndx_at + 1]]);
            if e[info_at] >> 4 == STB_GNU_UNIQUE && shndx != SHN_UNDEF {
                if let Some(n) = self.sym(i).and_then(|s| self.name(s.st_name)) {
                    out.insert(n);
                }
            }
            o += esz;
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
        (self.name(s.st_name)? == name).then_some(s)
    }

    /// The Bloom filter test of `do_lookup_x()`.
    fn bloom_may_contain(&self, g: &GnuHash, gnu_hash: u32) -> Option<bool> {
        let word = if self.is64 { 64 } else { 32 };
        let wbytes = u64::from(word / 8);
        let bi = u64::from((gnu_hash / word) & (g.bloom_size - 1));
        let bw = if self.is64 {
            r64(self.bytes, g.bloom + bi * wbytes)?
        } else {
            u64::from(r32(self.bytes, g.bloom + bi * wbytes)?)
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
            let bucket = r32(self.bytes, g.buckets + u64::from(gnu_hash % g.nbuckets) * 4)?;
            if bucket == 0 || bucket < g.symoffset {
                return None;
            }
            let end = u64::from(bucket) + self.nsyms.max(1);
            for idx in u64::from(bucket)..end {
                let h = r32(self.bytes, g.chain + (idx - u64::from(g.symoffset)) * 4)?;
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
        let mut idx = u64::from(r32(self.bytes, buckets + u64::from(h % nbucket) * 4)?);
        for _ in 0..self.nsyms.max(1) {
            if idx == 0 {
                break;
            }
            if let Some(s) = self.check_match(idx, name, class) {
                return Some(s);
            }
            idx = u64::from(r32(self.bytes, chain + idx * 4)?);
        }
        None
    }

    /// The symbol references of the relocations processed at start-up, as
    /// (name, type class): those `resolve_map()` looks up (not STB_LOCAL, not hidden or
    /// internal, not RELATIVE/NONE). DT_JMPREL is included unless `lazy`.
    fn references(&self, lazy: bool, mut f: impl FnMut(u64, u8)) {
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
            let n = size / entsize;
            for k in 0..n {
                let o = off + k * entsize;
                let info = if self.is64 {
                    r64(self.bytes, o + 8)
                } else {
                    r32(self.bytes, o + 4).map(u64::from)
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
                f(rsym, class);
            }
        }
    }
}

impl<'a> DynSyms<'a> {
    /// The name of symbol `idx` if a relocation against it makes `resolve_map()` look it
    /// up (not STB_LOCAL, not hidden or internal) and it may be one of `filter`'s names:
    /// the GNU hash of a defined symbol comes from the hash chain, so most names are never
    /// read.
    fn lookup_name(&self, idx: u64, filter: &HashFilter, defined: &NameSet) -> Option<&'a [u8]> {
        let s = self.sym(idx)?;
        let vis = s.st_other & 3;
        if s.st_info >> 4 == STB_LOCAL || vis == STV_HIDDEN || vis == STV_INTERNAL {
            return None;
        }
        if let Some(g) = &self.gnu {
            if idx >= u64::from(g.symoffset) {
                let h = r32(self.bytes, g.chain + (idx - u64::from(g.symoffset)) * 4)?;
                if !filter.may_contain(h) {
                    return None;
                }
                return self.name(s.st_name);
            }
        }
        // No hash at hand: the name set itself is the cheapest test.
        let name = self.name(s.st_name)?;
        defined.contains(name).then_some(name)
    }
}

/// A bit set over the GNU hashes (low bit ignored, as in the hash chains) of a name set.
struct HashFilter {
    bits: Vec<u64>,
}

impl HashFilter {
    const BITS: u32 = 20;

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

/// The number of symbols from a GNU hash table: the end of the chain of the highest bucket.
fn gnu_nsyms(bytes: &[u8], g: &GnuHash) -> Option<u64> {
    let mut max = 0u32;
    for b in 0..u64::from(g.nbuckets) {
        max = max.max(r32(bytes, g.buckets + b * 4)?);
    }
    if max < g.symoffset {
        return Some(u64::from(g.symoffset));
    }
    let mut idx = u64::from(max);
    loop {
        let h = r32(bytes, g.chain + (idx - u64::from(g.symoffset)) * 4)?;
        if h & 1 != 0 {
            return Some(idx + 1);
        }
        idx += 1;
    }
}

/// Counts the distinct names that end up in the unique-symbol table: `scope` is the global
/// scope (the program's search list, in order), `relocated` the objects relocated at
/// start-up with their lazy flag, in relocation order (indices into `scope`).
pub fn count_unique_symbols(scope: &[Option<DynSyms>], relocated: &[(usize, bool)]) -> u64 {
    let mut defined = NameSet::default();
    for s in scope.iter().flatten() {
        s.unique_definitions(&mut defined);
    }
    if defined.is_empty() {
        return 0;
    }
    let filter = HashFilter::new(defined.iter().copied());
    // Name -> resolves to a unique definition (per type class that matters: COPY skips the
    // program, PLT rejects undefined symbols with a value).
    let mut resolved: NameMap<'_, [Option<bool>; 3]> = NameMap::default();
    let mut seen = NameSet::default();
    for &(i, lazy) in relocated {
        let Some(obj) = scope.get(i).and_then(Option::as_ref) else {
            continue;
        };
        // Per symbol index: 0 not looked at, 1 irrelevant, 2 a candidate name.
        let mut memo = vec![0u8; usize::try_from(obj.nsyms).unwrap_or(0)];
        obj.references(lazy, |rsym, class| {
            let slot = usize::try_from(rsym).ok().and_then(|r| memo.get_mut(r));
            if let Some(m) = &slot {
                if **m == 1 {
                    return;
                }
            }
            let Some(name) = obj
                .lookup_name(rsym, &filter, &defined)
                .filter(|n| defined.contains(n))
            else {
                if let Some(m) = slot {
                    *m = 1;
                }
                return;
            };
            if let Some(m) = slot {
                *m = 2;
            }
            let ci = usize::from(class.min(2));
            let entry = resolved.entry(name).or_insert([None; 3]);
            let unique = *entry[ci].get_or_insert_with(|| {
                let h = dl_new_hash(name);
                for m in scope.iter().flatten() {
                    if class & CLASS_COPY != 0 && m.is_executable {
                        continue;
                    }
                    if let Some(s) = m.lookup(name, h, class) {
                        let vis = s.st_other & 3;
                        if vis == STV_HIDDEN || vis == STV_INTERNAL {
                            continue;
                        }
                        return s.st_info >> 4 == STB_GNU_UNIQUE;
                    }
                }
                false
            });
            if unique {
                seen.insert(name);
            }
        });
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

/// The table sizes (in entries) allocated for `n` distinct unique names, in order.
pub fn unique_table_sizes(n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let mut size = 31;
    out.push(size);
    for k in 1..n {
        // Before inserting the (k+1)-th name, k are in the table.
        if size * 3 <= k * 4 {
            size = dl_higher_prime_number(size + 1);
            out.push(size);
        }
    }
    out
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
    }

    #[test]
    fn ldso_hashes() {
        assert_eq!(dl_new_hash(b""), 5381);
        assert_eq!(dl_new_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(dl_elf_hash(b"printf"), 0x077905a6);
    }
}
