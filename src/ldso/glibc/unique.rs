//! DOC: the `STB_GNU_UNIQUE` symbol table that relocating C++ objects makes ld.so build.
//! Models glibc 2.36 `elf/dl-lookup.c: do_lookup_x()` / `do_lookup_unique()` as far as the
//! allocations go: the first lookup that resolves to a unique definition `calloc`s a table
//! of 31 `struct unique_sym`; before an insert that would fill it beyond 3/4
//! (`size * 3 <= n * 4`) a table of `_dl_higher_prime_number(size + 1)` entries replaces it.
//! n is the number of distinct names, among the symbols referenced by the relocations
//! processed at start-up (`elf/do-rel.h`: all of DT_RELA/DT_REL, DT_JMPREL too unless the
//! object is relocated lazily), whose first definition in the global scope is
//! `STB_GNU_UNIQUE`.
//!
//! This is the one part of the loaded stage that reads more than headers: every object's
//! GNU hash table and dynamic symbol table (for the unique definitions), and, only when
//! some object defines a unique symbol (C++), the strings and relocations of the objects
//! scanned, until the number of tables is certain ([`unique_tables_of`]). The plan reads
//! per object ([`ScannedObject`], on a second thread as the loader model finds objects)
//! and combines the objects once the list is complete ([`tables_of_scanned`]).
//!
//! Simplification: symbol versions are not compared (the first definition of the name in
//! an object is taken), which matches every program checked; `DT_SYMBOLIC` scopes are not
//! modelled.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use goblin::elf::reloc::*;
use goblin::elf::section_header::{SHN_ABS, SHN_UNDEF};
use goblin::elf::sym::{
    STB_GNU_UNIQUE, STB_LOCAL, STT_COMMON, STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE, STT_OBJECT,
    STT_TLS, STV_HIDDEN, STV_INTERNAL,
};

use crate::elf::dynamic::DynamicInfo;
pub use crate::elf::symbols::Scratch;
use crate::elf::symbols::{dl_new_hash, DynSyms, Sym};
use crate::elf::ElfImage;

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
type NameMap<'a, V> = HashMap<Cow<'a, [u8]>, V, BuildHasherDefault<NameHasher>>;

/// `ALLOWED_STT` of `check_match()`: NOTYPE, OBJECT, FUNC, COMMON, TLS, GNU_IFUNC.
const ALLOWED_STT: u32 = (1 << STT_NOTYPE)
    | (1 << STT_OBJECT)
    | (1 << STT_FUNC)
    | (1 << STT_COMMON)
    | (1 << STT_TLS)
    | (1 << STT_GNU_IFUNC);

/// `ELF_RTYPE_CLASS_PLT` / `ELF_RTYPE_CLASS_COPY`.
const CLASS_PLT: u8 = 1;
const CLASS_COPY: u8 = 2;

/// `elf_machine_type_class()` (sysdeps/x86_64/dl-machine.h, sysdeps/i386/dl-machine.h): the
/// lookup class of a relocation type, `None` for those `resolve_map()` never looks up
/// (NONE, RELATIVE).
fn type_class(is64: bool, r_type: u32) -> Option<u8> {
    Some(if is64 {
        match r_type {
            R_X86_64_NONE | R_X86_64_RELATIVE | R_X86_64_RELATIVE64 => return None,
            R_X86_64_JUMP_SLOT | R_X86_64_DTPMOD64 | R_X86_64_DTPOFF64 | R_X86_64_TPOFF64
            | R_X86_64_TLSDESC => CLASS_PLT,
            R_X86_64_COPY => CLASS_COPY,
            _ => 0,
        }
    } else {
        match r_type {
            R_386_NONE | R_386_RELATIVE => return None,
            R_386_JMP_SLOT | R_386_TLS_DTPMOD32 | R_386_TLS_DTPOFF32 | R_386_TLS_TPOFF32
            | R_386_TLS_TPOFF | R_386_TLS_DESC => CLASS_PLT,
            R_386_COPY => CLASS_COPY,
            _ => 0,
        }
    })
}

/// The names of the unique symbols `syms` defines, added to `out`.
fn unique_definitions(syms: &DynSyms, out: &mut NameSet, scratch: &mut Scratch) {
    let found = syms.defined_names(STB_GNU_UNIQUE, scratch);
    if found.len() > 16 {
        syms.load_all();
    }
    for st_name in found {
        if let Some(n) = syms.name(st_name) {
            out.insert(n.into_owned().into_boxed_slice());
        }
    }
}

/// Models `elf/dl-lookup.c: check_match()` without versions: symbol `idx` of `syms` is a
/// definition of `name` usable for `class`.
fn check_match(syms: &DynSyms, idx: u64, name: &[u8], class: u8) -> Option<Sym> {
    let s = syms.sym(idx)?;
    let stt = s.st_info & 0xf;
    if (s.st_value == 0 && u32::from(s.st_shndx) != SHN_ABS && stt != STT_TLS)
        || (class & CLASS_PLT != 0 && u32::from(s.st_shndx) == SHN_UNDEF)
    {
        return None;
    }
    if (1u32 << stt) & ALLOWED_STT == 0 {
        return None;
    }
    (*syms.name(s.st_name)? == *name).then_some(s)
}

/// The object's definition of `name` (the hash-table walk of `do_lookup_x()`).
fn lookup(syms: &DynSyms, name: &[u8], gnu_hash: u32, class: u8) -> Option<Sym> {
    syms.find(name, gnu_hash, |idx| check_match(syms, idx, name, class))
}

/// The symbol references of the relocations processed at start-up (`elf/do-rel.h`), as
/// (symbol index, type class): those `resolve_map()` looks up. DT_JMPREL is included
/// unless `lazy`. `f` returns false to stop.
fn references(syms: &DynSyms, lazy: bool, mut f: impl FnMut(u64, u8) -> bool) {
    let is64 = syms.is_64();
    syms.relocations(!lazy, |r_type, r_sym| match type_class(is64, r_type) {
        Some(class) => f(r_sym, class),
        None => true,
    });
}

/// The name of symbol `idx` of `syms` if a relocation against it makes `resolve_map()`
/// look it up (not STB_LOCAL, not hidden or internal) and it may be one of `filter`'s
/// names: the GNU hash of a defined symbol comes from the hash chain, so most names are
/// never read.
fn lookup_name<'s>(
    syms: &'s DynSyms,
    idx: u64,
    filter: &HashFilter,
    defined: &NameSet,
) -> Option<Cow<'s, [u8]>> {
    let looked_up = |s: &Sym| {
        let vis = s.st_other & 3;
        s.st_info >> 4 != STB_LOCAL && vis != STV_HIDDEN && vis != STV_INTERNAL
    };
    if let Some(h) = syms.chain_hash(idx) {
        // The hash first: it rejects nearly every symbol without reading it.
        if !filter.may_contain(h) {
            return None;
        }
        let s = syms.sym(idx).filter(looked_up)?;
        return syms.name(s.st_name);
    }
    // No hash at hand: the name set itself is the cheapest test.
    let s = syms.sym(idx).filter(looked_up)?;
    let name = syms.name(s.st_name)?;
    defined.contains(&*name).then_some(name)
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
    pub(crate) fn new(img: &ElfImage, dynamic: Arc<DynamicInfo>) -> ObjectKey {
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
        unique_definitions(s, &mut defines, scratch);
    }
    scratch.done();
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

/// What the tables were computed from (mappings of the objects' tables): dropping it
/// unmaps them, so a caller in a hurry can hand the result on first and drop this after.
pub struct TablesRead(#[allow(dead_code)] Scope);

/// One object of the load list read for the unique-symbol model ahead of the loader model
/// ([`ScannedObject::scan`]): its dynamic symbols and the unique names it defines, and the
/// file they were read from. The model combines them once the list is complete
/// ([`tables_of_scanned`]); any object can be scanned on any thread, in any order.
pub struct ScannedObject {
    entry: ScopeEntry,
    key: ObjectKey,
}

impl ScannedObject {
    /// Read object `f` (`scratch` is a buffer reused across objects); `None` without an
    /// image or a dynamic section (nothing to look up in it).
    pub fn scan(f: &crate::ldso::ObjectFound, scratch: &mut Scratch) -> Option<ScannedObject> {
        let (img, d) = (f.image.as_ref()?, f.dynamic.as_ref()?);
        Some(ScannedObject {
            entry: scope_entry(img, d, f.index == 0, scratch),
            key: ObjectKey::new(img, d.clone()),
        })
    }
}

/// The unique-symbol tables of a load list from its scanned objects (by load-list index;
/// `None` for an object without symbols), ld.so's index `rtld`, lazy binding on or off;
/// with what was read to compute them.
pub fn tables_of_scanned(
    objects: Vec<Option<ScannedObject>>,
    rtld: usize,
    lazy: bool,
) -> (UniqueAhead, TablesRead) {
    let (entries, keys) = objects
        .into_iter()
        .map(|o| match o {
            Some(o) => (Some(o.entry), Some(o.key)),
            None => (None, None),
        })
        .unzip();
    let scope = Scope::from_entries(entries, rtld, lazy);
    let tables = scope.tables();
    (UniqueAhead { keys, tables }, TablesRead(scope))
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
    // The candidate names met so far (defined unique somewhere in the scope), numbered;
    // per number: whether it resolves to a unique definition, per type class that matters
    // (COPY skips the program, PLT rejects undefined symbols with a value), and whether it
    // is counted. Names are borrowed from the string tables, which outlive the count.
    let mut ids: NameMap<'_, u32> =
        NameMap::with_capacity_and_hasher(defined.len(), Default::default());
    let mut names: Vec<Cow<'_, [u8]>> = Vec::with_capacity(defined.len());
    let mut resolved: Vec<[Option<bool>; 3]> = Vec::with_capacity(defined.len());
    let mut seen: Vec<bool> = Vec::with_capacity(defined.len());
    let mut count = 0u64;
    // Per symbol index of the object being scanned: 0 not looked at, 1 not a candidate,
    // 2 + the candidate's number.
    let mut memo: Vec<u32> = Vec::new();
    for &(i, lazy) in relocated {
        let Some(obj) = scope.get(i).and_then(Option::as_ref) else {
            continue;
        };
        obj.load_all();
        memo.clear();
        memo.resize(usize::try_from(obj.nsyms).unwrap_or(0), 0);
        references(obj, lazy, |rsym, class| {
            let slot = usize::try_from(rsym).ok().filter(|&r| r < memo.len());
            let id = match slot.map(|r| memo[r]) {
                Some(1) => return true,
                Some(m) if m >= 2 => m - 2,
                _ => {
                    let Some(name) =
                        lookup_name(obj, rsym, &filter, defined).filter(|n| defined.contains(&**n))
                    else {
                        if let Some(r) = slot {
                            memo[r] = 1;
                        }
                        return true;
                    };
                    let id = match ids.get(&*name) {
                        Some(&id) => id,
                        None => {
                            let id = names.len() as u32;
                            names.push(name.clone());
                            ids.insert(name, id);
                            resolved.push([None; 3]);
                            seen.push(false);
                            id
                        }
                    };
                    if let Some(r) = slot {
                        memo[r] = id + 2;
                    }
                    id
                }
            };
            let ci = usize::from(class.min(2));
            let unique = match resolved[id as usize][ci] {
                Some(u) => u,
                None => {
                    let u = resolves_unique(scope, &names[id as usize], class);
                    resolved[id as usize][ci] = Some(u);
                    u
                }
            };
            if unique && !seen[id as usize] {
                seen[id as usize] = true;
                count += 1;
            }
            count < enough
        });
        if count >= enough {
            break;
        }
    }
    count
}

/// Whether `name`, looked up for type class `class` in the global scope `scope`
/// (`do_lookup_x()` over the search list), first resolves to a `STB_GNU_UNIQUE`
/// definition.
fn resolves_unique(scope: &[Option<DynSyms>], name: &[u8], class: u8) -> bool {
    let h = dl_new_hash(name);
    for m in scope.iter().flatten() {
        if class & CLASS_COPY != 0 && m.is_executable {
            continue;
        }
        if let Some(s) = lookup(m, name, h, class) {
            let vis = s.st_other & 3;
            if vis == STV_HIDDEN || vis == STV_INTERNAL {
                continue;
            }
            return s.st_info >> 4 == STB_GNU_UNIQUE;
        }
    }
    false
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
}
