//! DOC: the three questions about a plan: where is a symbol, where is a string, what is at
//! an address. Each answer is read from the objects' own tables (section headers, `.symtab`
//! or `.dynsym`, section bytes) placed at the plan's bases; nothing is typed in.

use std::path::PathBuf;

use goblin::elf::section_header::SHN_ABS;
use goblin::elf::sym::{
    STB_GLOBAL, STB_GNU_UNIQUE, STB_LOCAL, STB_WEAK, STT_COMMON, STT_FILE, STT_FUNC, STT_GNU_IFUNC,
    STT_NOTYPE, STT_OBJECT, STT_SECTION, STT_TLS, STV_HIDDEN, STV_INTERNAL,
};
use serde::Serialize;

use super::{lookup_order, Explanation};
use crate::addr::{hex, opt_hex};
use crate::elf::sections::{self, Symbol, SymbolTable};

/// Where a symbol is.
#[derive(Clone, Debug, Serialize)]
pub struct SymbolHit {
    pub name: String,
    /// Its symbol version (`.gnu.version_d`), if it has one.
    pub version: Option<String>,
    /// An old version kept for programs linked against it (`name@VERSION`), not the
    /// default one (`name@@VERSION`) a new link binds to.
    pub hidden_version: bool,
    /// The object defining it (index in [`Explanation::objects`]) and its path.
    pub object: usize,
    pub path: PathBuf,
    /// The table it was read from.
    pub table: SymbolTable,
    /// `function`, `object`, `tls`, `ifunc`, `notype`, `common`.
    pub kind: &'static str,
    /// `global`, `weak`, `local`, `unique`.
    pub binding: &'static str,
    /// The section holding it (`*ABS*` for an absolute symbol).
    pub section: String,
    /// Its link-time value (`st_value`).
    #[serde(serialize_with = "hex")]
    pub value: u64,
    /// Its run-time address (for a thread-local symbol: the main thread's copy, when
    /// the loader has placed the static TLS block).
    #[serde(serialize_with = "opt_hex")]
    pub address: Option<u64>,
    pub size: u64,
    /// The maps line its address falls in (index in [`Explanation::lines`]).
    pub line: Option<usize>,
    /// In the dynamic symbol table: other objects can bind to it.
    pub exported: bool,
    /// The definition the loader's global lookup scope finds first (what a reference
    /// from another object binds to).
    pub bound: bool,
    /// Something a reader should know about it.
    pub note: Option<String>,
}

/// Where a string is.
#[derive(Clone, Debug, Serialize)]
pub struct StringHit {
    pub object: usize,
    pub path: PathBuf,
    pub section: String,
    #[serde(serialize_with = "hex")]
    pub address: u64,
    #[serde(serialize_with = "hex")]
    pub file_offset: u64,
    /// A whole C string (a NUL before and after), not the tail or middle of a longer one.
    pub whole: bool,
    pub line: Option<usize>,
}

/// What is at an address.
#[derive(Clone, Debug, Serialize)]
pub struct AddressHit {
    #[serde(serialize_with = "hex")]
    pub address: u64,
    /// The maps line holding it; `None`: nothing is mapped there.
    pub line: Option<usize>,
    pub object: Option<usize>,
    pub section: Option<String>,
    /// The nearest symbol at or below it, and the offset from it.
    pub symbol: Option<(String, u64)>,
    /// The region of the picture it is in (index in [`Explanation::regions`]).
    pub region: Option<usize>,
    /// Why it is there, or why nothing is mapped there.
    pub why: String,
}

fn kind(t: u8) -> &'static str {
    match t {
        STT_FUNC => "function",
        STT_OBJECT => "object",
        STT_TLS => "tls",
        STT_GNU_IFUNC => "ifunc",
        STT_COMMON => "common",
        STT_SECTION => "section",
        STT_FILE => "file",
        _ => "notype",
    }
}

fn binding(b: u8) -> &'static str {
    match b {
        STB_GLOBAL => "global",
        STB_WEAK => "weak",
        STB_LOCAL => "local",
        STB_GNU_UNIQUE => "unique",
        _ => "other",
    }
}

/// Whether glibc's `do_lookup_x()` (elf/dl-lookup.c) can bind to `y`: defined, not
/// hidden or internal, a global, weak or unique binding, a data, code, TLS or IFUNC type.
fn bindable(y: &Symbol) -> bool {
    let vis = y.st_other & 3;
    y.st_shndx != 0
        && (y.st_value != 0 || y.st_type == STT_TLS)
        && matches!(y.st_bind, STB_GLOBAL | STB_WEAK | STB_GNU_UNIQUE)
        && matches!(
            y.st_type,
            STT_NOTYPE | STT_OBJECT | STT_FUNC | STT_COMMON | STT_TLS | STT_GNU_IFUNC
        )
        && vis != STV_HIDDEN
        && vis != STV_INTERNAL
}

impl Explanation {
    /// The run-time address of `y` of object `k` (`None`: a TLS symbol without a placed
    /// block, or an undefined one).
    fn symbol_address(&self, k: usize, y: &Symbol) -> Option<u64> {
        let o = &self.objects[k];
        if y.st_shndx == 0 {
            return None;
        }
        if y.st_shndx == SHN_ABS as usize {
            return Some(y.st_value);
        }
        if y.st_type == STT_TLS {
            return o.tls_block.map(|b| b.wrapping_add(y.st_value));
        }
        Some(o.base.wrapping_add(y.st_value))
    }

    /// The maps line holding `addr`.
    pub fn line_at(&self, addr: u64) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.maps.start <= addr && addr < l.maps.end)
    }

    /// Every definition of `name` (`name@VERSION`: of that version only), in the
    /// loader's lookup order; the one a reference binds to is marked `bound` (with no
    /// version asked, the default version: what a new link binds to).
    pub fn find_symbol(&self, name: &str) -> Vec<SymbolHit> {
        let mut out = Vec::new();
        let mut bound = false;
        for k in lookup_order(self) {
            let o = &self.objects[k];
            let Some(img) = &o.image else { continue };
            let secs = &o.section_headers;
            let dynsym = sections::table(img, secs, SymbolTable::Dynsym)
                .ok()
                .flatten()
                .unwrap_or_default();
            let versions = sections::dynsym_versions(img, secs);
            let (table, syms) = match o.symbols {
                Some(SymbolTable::Symtab) => (
                    SymbolTable::Symtab,
                    sections::table(img, secs, SymbolTable::Symtab)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                ),
                _ => (SymbolTable::Dynsym, dynsym.clone()),
            };
            let (name, wanted) = match name.split_once('@') {
                Some((n, v)) => (n, Some(v.trim_start_matches('@'))),
                None => (name, None),
            };
            for (i, y) in syms.iter().enumerate() {
                if y.name != name || y.st_shndx == 0 {
                    continue;
                }
                // Its version: by index in .dynsym, or the .dynsym entry of the same
                // name and value for a .symtab entry.
                let dyn_index = match table {
                    SymbolTable::Dynsym => Some(i),
                    SymbolTable::Symtab => dynsym
                        .iter()
                        .position(|d| d.name == y.name && d.st_value == y.st_value && bindable(d)),
                };
                let version = dyn_index.and_then(|d| versions.get(d).cloned().flatten());
                if wanted.is_some_and(|w| version.as_ref().is_none_or(|(v, _)| v != w)) {
                    continue;
                }
                let exported = dyn_index.is_some_and(|d| bindable(&dynsym[d]));
                let hidden = version.as_ref().is_some_and(|(_, h)| *h);
                let is_bound = !bound
                    && exported
                    && bindable(y)
                    && o.in_scope
                    && (!hidden || wanted.is_some());
                bound |= is_bound;
                let address = self.symbol_address(k, y);
                let section = if y.st_shndx == SHN_ABS as usize {
                    "*ABS*".to_string()
                } else {
                    secs.get(y.st_shndx)
                        .map(|s| s.name.clone())
                        .unwrap_or_default()
                };
                let note = match y.st_type {
                    STT_GNU_IFUNC => Some(
                        "an IFUNC: this is its resolver; the loader binds references to the \
                         implementation the resolver picks for this CPU"
                            .to_string(),
                    ),
                    STT_TLS if address.is_some() => Some(
                        "thread-local: the address is the main thread's copy in the static TLS \
                         block; the section holds the template each thread's copy starts from"
                            .to_string(),
                    ),
                    STT_TLS => Some(
                        "thread-local: each thread has its own copy; its offset in the \
                         object's TLS block is the value"
                            .to_string(),
                    ),
                    _ => None,
                };
                out.push(SymbolHit {
                    name: y.name.clone(),
                    version: version.as_ref().map(|(v, _)| v.clone()),
                    hidden_version: hidden,
                    object: k,
                    path: o.path.clone(),
                    table,
                    kind: kind(y.st_type),
                    binding: binding(y.st_bind),
                    section,
                    value: y.st_value,
                    address,
                    size: y.st_size,
                    line: address.and_then(|a| self.line_at(a)),
                    exported,
                    bound: is_bound,
                    note,
                });
            }
        }
        out
    }

    /// Every occurrence of `text` in the allocated sections with file contents of the
    /// program (and of every object with `all_objects`).
    pub fn find_string(&self, text: &str, all_objects: bool) -> Vec<StringHit> {
        let needle = text.as_bytes();
        let mut out = Vec::new();
        if needle.is_empty() {
            return out;
        }
        for (k, o) in self.objects.iter().enumerate() {
            if !all_objects && o.role != crate::mm::Role::Program {
                continue;
            }
            let Some(img) = &o.image else { continue };
            for s in o
                .section_headers
                .iter()
                .filter(|s| s.is_alloc() && !s.is_tls())
            {
                let Some(bytes) = sections::contents(img, s) else {
                    continue;
                };
                for i in memchr::memmem::find_iter(&bytes, needle) {
                    let end = i + needle.len();
                    let whole = (i == 0 || bytes[i - 1] == 0) && bytes.get(end) == Some(&0);
                    let address = o.base.wrapping_add(s.sh_addr).wrapping_add(i as u64);
                    out.push(StringHit {
                        object: k,
                        path: o.path.clone(),
                        section: s.name.clone(),
                        address,
                        file_offset: s.sh_offset + i as u64,
                        whole,
                        line: self.line_at(address),
                    });
                }
            }
        }
        out
    }

    /// What is at `addr`: the maps line, object, section and nearest symbol; or, if
    /// nothing is mapped there, the region and why.
    pub fn find_address(&self, addr: u64) -> AddressHit {
        let region = self
            .regions
            .iter()
            .position(|r| r.start <= addr && addr < r.end);
        let Some(li) = self.line_at(addr) else {
            return AddressHit {
                address: addr,
                line: None,
                object: None,
                section: None,
                symbol: None,
                region,
                why: self.why_unmapped(addr, region),
            };
        };
        let line = &self.lines[li];
        let object = line.object;
        let mut section = None;
        let mut symbol = None;
        if let Some(k) = object {
            let o = &self.objects[k];
            section = o
                .sections
                .iter()
                .filter(|s| !s.tls && s.start <= addr && addr < s.end)
                .min_by_key(|s| s.end - s.start)
                .map(|s| s.name.clone());
            if let Some(img) = &o.image {
                if let Ok(Some((_, syms))) = sections::symbols(img, &o.section_headers) {
                    symbol = syms
                        .iter()
                        .filter(|y| {
                            y.st_shndx != 0
                                && y.st_shndx != SHN_ABS as usize
                                && !y.name.is_empty()
                                && matches!(
                                    y.st_type,
                                    STT_FUNC | STT_OBJECT | STT_NOTYPE | STT_GNU_IFUNC
                                )
                        })
                        .filter_map(|y| {
                            let a = o.base.wrapping_add(y.st_value);
                            (a <= addr).then(|| (addr - a, y))
                        })
                        // Nearest first; inside the symbol's size before past its end;
                        // of aliases, the fewest leading underscores (puts before _IO_puts),
                        // then a global one, then the shortest name.
                        .min_by_key(|(d, y)| {
                            (
                                *d >= y.st_size.max(1),
                                *d,
                                y.name.len() - y.name.trim_start_matches('_').len(),
                                y.st_bind != STB_GLOBAL,
                                y.name.len(),
                            )
                        })
                        .map(|(d, y)| (y.name.clone(), d));
                }
            }
        }
        let why = if line.reasons.is_empty() {
            line.label.clone()
        } else {
            line.reasons[0].text.clone()
        };
        AddressHit {
            address: addr,
            line: Some(li),
            object,
            section,
            symbol,
            region,
            why,
        }
    }

    /// Why nothing is mapped at `addr`.
    fn why_unmapped(&self, addr: u64, region: Option<usize>) -> String {
        use super::RegionKind as K;
        if let Some(r) = region.map(|r| &self.regions[r]) {
            match r.kind {
                K::NullGuard => return format!("{}: {}", r.name, r.note),
                K::KernelSpace | K::NonCanonical => return format!("{}: {}", r.name, r.note),
                K::Heap => {
                    return format!("in the heap's range but past the current break: {}", r.note)
                }
                K::Stack => return format!("in the stack's range: {}", r.note),
                K::Gap => return format!("{}: {}", r.name, r.note),
                _ => {}
            }
        }
        let above = self
            .lines
            .iter()
            .filter(|l| l.maps.start > addr)
            .min_by_key(|l| l.maps.start);
        let below = self
            .lines
            .iter()
            .filter(|l| l.maps.end <= addr)
            .max_by_key(|l| l.maps.end);
        let name = |l: &super::Line| {
            if l.maps.path.is_empty() {
                format!("{} ({})", l.maps.range(), l.label)
            } else {
                format!("{} ({})", l.maps.range(), l.maps.path)
            }
        };
        match (below, above) {
            (Some(b), Some(a)) => format!(
                "free: between {} and {}; nothing maps it (a later mmap may)",
                name(b),
                name(a)
            ),
            (None, Some(a)) => format!("free: below everything mapped, under {}", name(a)),
            (Some(b), None) => format!("free: above everything mapped, over {}", name(b)),
            (None, None) => "nothing is mapped".into(),
        }
    }
}
