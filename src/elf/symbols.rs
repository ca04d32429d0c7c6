//! Dynamic symbols, their hash tables and the relocations that reference them: what a
//! symbol lookup reads (`DT_SYMTAB`, `DT_STRTAB`, `DT_GNU_HASH` or `DT_HASH`, `DT_RELA` or
//! `DT_REL`, `DT_JMPREL`), read through the PT_LOADs' file offsets.
//!
//! Most objects are only asked which symbols of a binding they define (one pass over the
//! symbol table) and, during lookups, which symbols their hash table offers for a name.
//! Both come from one read of the file from DT_GNU_HASH to DT_STRTAB, mapped when it is
//! large ([`ElfImage::map_upto`]); strings are read one by one unless the whole table is
//! asked for ([`DynSyms::load_all`]). Every offset and count is checked against the file:
//! a damaged table ends a walk, it never panics or allocates more than the file holds.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;

use goblin::elf::dynamic::DT_RELA;
use goblin::elf::section_header::SHN_UNDEF;

use super::dynamic::{vaddr_to_offset, DynamicInfo};
use super::ElfImage;

/// One dynamic symbol, the fields a lookup needs.
#[derive(Clone, Copy, Debug)]
pub struct Sym {
    pub st_name: u32,
    pub st_info: u8,
    pub st_other: u8,
    pub st_shndx: u16,
    pub st_value: u64,
}

/// The `st_name` of each definition of binding `binding` among the symbols in `chunk`
/// (entries of `ESZ` bytes, `st_info` at `INFO`, `st_shndx` at `SHNDX`: only these are
/// looked at before a match). The sizes are constants so that the loop over a large table (about
/// 60 000 symbols for gdb's libraries) compiles to a few instructions per symbol: eight
/// entries' bindings are compared at a time, without a branch, and the rare group with a
/// match is looked at entry by entry.
fn names_with_binding<const ESZ: usize, const INFO: usize, const SHNDX: usize>(
    chunk: &[u8],
    binding: u8,
    found: &mut Vec<u32>,
) {
    let one = |e: &[u8], found: &mut Vec<u32>| {
        let shndx = u16::from_le_bytes([e[SHNDX], e[SHNDX + 1]]);
        if e[INFO] >> 4 == binding && u32::from(shndx) != SHN_UNDEF {
            found.push(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
        }
    };
    let groups = chunk.chunks_exact(8 * ESZ);
    let rest = groups.remainder();
    for g in groups {
        let g = &g[..8 * ESZ];
        let mut hit = false;
        for k in 0..8 {
            hit |= g[k * ESZ + INFO] >> 4 == binding;
        }
        if hit {
            g.chunks_exact(ESZ).for_each(|e| one(e, found));
        }
    }
    rest.chunks_exact(ESZ).for_each(|e| one(e, found));
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
/// fresh memory; only the hash table is kept. [`Scratch::done`] when moving to another
/// object.
#[derive(Default)]
pub struct Scratch {
    start: u64,
    bytes: Vec<u8>,
}

impl Scratch {
    /// Forget what the buffer holds (it belongs to the object just read).
    pub fn done(&mut self) {
        self.start = u64::MAX;
    }

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
    pub nsyms: u64,
    /// Whether this is the program (the caller's flag: COPY lookups skip it).
    pub is_executable: bool,
    /// DT_BIND_NOW / DF_BIND_NOW / DF_1_NOW.
    pub bind_now: bool,
}

/// `dl_new_hash()`: the GNU hash (djb2).
pub fn dl_new_hash(s: &[u8]) -> u32 {
    s.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// `_dl_elf_hash()`: the SysV hash.
pub fn dl_elf_hash(s: &[u8]) -> u32 {
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
    pub fn new(
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

    /// ELFCLASS64.
    pub fn is_64(&self) -> bool {
        self.is64
    }

    pub fn sym_size(&self) -> u64 {
        if self.is64 {
            24
        } else {
            16
        }
    }

    /// Read the symbol table, the hash chains and the strings whole (for the objects whose
    /// relocations are scanned).
    pub fn load_all(&self) {
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

    pub fn sym(&self, idx: u64) -> Option<Sym> {
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
    pub fn name(&self, st_name: u32) -> Option<Cow<'_, [u8]>> {
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

    /// The `st_name` of every defined symbol (`st_shndx` not `SHN_UNDEF`) of binding
    /// `binding` among the hashed symbols (from the GNU hash table's `symoffset`, else
    /// from 1), in table order; `scratch` is a reused buffer for the symbol table.
    pub fn defined_names(&self, binding: u8, scratch: &mut Scratch) -> Vec<u32> {
        let first = self.gnu.as_ref().map_or(1, |g| u64::from(g.symoffset));
        let esz = self.sym_size();
        // st_name (the first word in both classes) of each match.
        let mut found: Vec<u32> = Vec::new();
        let is64 = self.is64;
        let mut scan = |chunk: &[u8]| {
            if is64 {
                names_with_binding::<24, 4, 6>(chunk, binding, &mut found)
            } else {
                names_with_binding::<16, 12, 14>(chunk, binding, &mut found)
            }
        };
        let Some(start) = first
            .checked_mul(esz)
            .and_then(|x| x.checked_add(self.symtab_off))
        else {
            return found;
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
        found
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
        // `new_hash >> l_gnu_shift` on 32-bit values: a shift of 32 or more (a hostile
        // table; found by fuzzing) is taken mod 32, as x86's `shr` does.
        let b2 = gnu_hash.wrapping_shr(g.bloom_shift) & (word - 1);
        Some((bw >> b1) & (bw >> b2) & 1 != 0)
    }

    /// The hash-table walk for `name` (whose GNU hash is `gnu_hash`): `found` is called
    /// with the index of each symbol the table offers for it (GNU: Bloom filter, bucket,
    /// chain entries with the same hash; SysV: the bucket's chain), until it returns
    /// `Some`.
    pub fn find<R>(
        &self,
        name: &[u8],
        gnu_hash: u32,
        mut found: impl FnMut(u64) -> Option<R>,
    ) -> Option<R> {
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
                    if let Some(r) = found(idx) {
                        return Some(r);
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
            if let Some(r) = found(idx) {
                return Some(r);
            }
            idx = u64::from(t.r32(chain + idx * 4)?);
        }
        None
    }

    /// The relocations of DT_RELA (or DT_REL) and, with `with_jmprel`, DT_JMPREL, as
    /// (`r_type`, `r_sym`), in table order; the leading DT_RELACOUNT/DT_RELCOUNT entries
    /// (RELATIVE, no symbol) are skipped, as are entries without a symbol. `f` returns
    /// false to stop.
    pub fn relocations(&self, with_jmprel: bool, mut f: impl FnMut(u32, u64) -> bool) {
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
        if with_jmprel {
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
                if rsym == 0 {
                    continue;
                }
                if !f(rtype, rsym) {
                    return;
                }
            }
        }
    }

    /// The GNU hash stored in the hash chain for symbol `idx` (low bit: end of chain), if
    /// the object has a GNU hash table covering `idx`.
    pub fn chain_hash(&self, idx: u64) -> Option<u32> {
        let g = self.gnu.as_ref()?;
        if idx < u64::from(g.symoffset) {
            return None;
        }
        self.head.r32(g.chain + (idx - u64::from(g.symoffset)) * 4)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_hashes() {
        assert_eq!(dl_new_hash(b""), 5381);
        assert_eq!(dl_new_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(dl_elf_hash(b"printf"), 0x077905a6);
    }
}
