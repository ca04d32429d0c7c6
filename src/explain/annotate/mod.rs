//! DOC: a maps file from anywhere, explained with no program and no process
//! (`elfmap explain --maps FILE`). A plan knows why each of its lines is there, because its
//! models made them; here there are only the lines, from another machine, an old kernel, a
//! 32-bit system, a process long gone. Each line gets the label `explain` gives a planned
//! line ("text", "RELRO", "bss tail", "ld.so's malloc" ...) or one for what only a running
//! process has (thread stacks, malloc arenas, mmap'd memory, files), with how sure it is
//! ([`Confidence`]) and the rule that gave it, citing the kernel or library function whose
//! work the line's shape shows. Where a file the maps names is on this machine (or under
//! `--root DIR`) and its program headers give the lines, its headers decide: the exact
//! PT_LOAD, RELRO, `.bss` and sections of each line. Otherwise the label comes from the
//! line's shape and its neighbours, and says so.
//!
//! The input is read as a stream by [`crate::maps::Reader`] (any spacing, the 2.6-era
//! format, smaps, a last line cut short); lines out of address order or overlapping are
//! read, sorted, and flagged as impossible for a real process.

pub mod objects;
pub mod text;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{reason, segment_label, Reason, Region, RegionKind, Totals};
use crate::error::{Error, Result};
use crate::maps::{MapsLine, ReadStats, Reader, Record};
use objects::{FileCheck, FileStatus, Layout, Piece, PAGE};

/// A line next to the libraries longer than this, in a process that has run, is not all
/// ld.so's start-up memory: its chunks are a few pages (at most 12 KiB each over all of
/// /usr/bin here), and merged they stay well below it.
const LDSO_MALLOC_MAX: u64 = 128 << 10;

/// The JSON schema of an [`Annotation`]: fields are only ever added.
pub const SCHEMA: &str = "elfmap-explain-maps/1";

/// How many mappings are read at most: 16 times the default `vm.max_map_count` (65530).
pub const MAX_MAPPINGS: usize = 1 << 20;

/// How sure a label is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// One of several things the line could be; the most common.
    Guess,
    /// What the line's shape and place nearly always mean.
    Likely,
    /// The kernel's or the library's own name for it, or the object's headers.
    Certain,
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Confidence::Guess => "guess",
            Confidence::Likely => "likely",
            Confidence::Certain => "certain",
        })
    }
}

/// The labels. Those a plan also gives are `explain`'s own ([`super::Line::label`]).
pub mod label {
    pub const TEXT: &str = "text";
    pub const READ_ONLY: &str = "read-only data";
    pub const RELRO: &str = "RELRO";
    pub const DATA: &str = "data";
    pub const BSS: &str = "bss tail";
    pub const GAP: &str = "gap (---p)";
    pub const RESERVED: &str = "reserved (---p)";
    pub const STACK: &str = "stack";
    pub const HEAP: &str = "heap";
    pub const MUSL_HEAP: &str = "musl's heap";
    pub const LDSO_MALLOC: &str = "ld.so's malloc";
    pub const MUSL_MALLOC: &str = "musl's malloc";
    pub const LD_CACHE: &str = "ld.so.cache";
    pub const LD_PRELOAD: &str = "ld.so.preload";
    pub const THREAD_STACK: &str = "thread stack";
    pub const GUARD: &str = "thread stack guard (---p)";
    pub const ARENA: &str = "malloc arena";
    pub const ARENA_RESERVE: &str = "malloc arena reserve (---p)";
    pub const MALLOC_CHUNK: &str = "mmap'd malloc chunk";
    pub const ANON: &str = "anonymous mmap";
    pub const LOCALE: &str = "locale-archive";
    pub const LOCALE_FILE: &str = "locale file";
    pub const GCONV: &str = "gconv cache";
    pub const FONT: &str = "font";
    pub const FONT_CACHE: &str = "fontconfig cache";
    pub const SHM: &str = "shared memory";
    pub const SHARED_ANON: &str = "shared anonymous memory";
    pub const DEVICE: &str = "device";
    pub const FILE: &str = "file";
}

/// One maps line with what it is.
#[derive(Clone, Debug, Serialize)]
pub struct AnnotatedLine {
    #[serde(flatten)]
    pub maps: MapsLine,
    /// Its line number in the input.
    pub number: u64,
    /// The name ended in ` (deleted)`.
    pub deleted: bool,
    /// What it is ("text", "thread stack" ...); `a + b` when it holds several things
    /// (mappings the kernel merged into one line), each in [`AnnotatedLine::parts`].
    pub label: String,
    /// The weakest of its parts'.
    pub confidence: Confidence,
    /// Why, the rule first, each with the function whose work it shows.
    pub reasons: Vec<Reason>,
    /// The object it belongs to (index in [`Annotation::objects`]).
    pub object: Option<usize>,
    /// The allocated sections it holds (when the object's headers are here).
    pub sections: Vec<String>,
    /// When the line holds several things: each one's range and label.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<LinePart>,
    /// Why no real process can have this line (out of order, overlapping, unaligned ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impossible: Option<String>,
    /// smaps `VmFlags:`, when the input is smaps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_flags: Option<String>,
}

/// One of the things a line holds.
#[derive(Clone, Debug, Serialize)]
pub struct LinePart {
    #[serde(serialize_with = "crate::addr::hex")]
    pub start: u64,
    #[serde(serialize_with = "crate::addr::hex")]
    pub end: u64,
    pub label: String,
    pub confidence: Confidence,
    pub reasons: Vec<Reason>,
}

/// The role of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectRole {
    Program,
    Interpreter,
    Library,
}

/// An ELF object the maps show (its file lines).
#[derive(Clone, Debug, Serialize)]
pub struct MapsObject {
    pub role: ObjectRole,
    pub role_confidence: Confidence,
    /// Why it has that role.
    pub role_reason: Reason,
    /// The name maps shows.
    pub path: String,
    pub deleted: bool,
    /// Its lines (indices in [`Annotation::lines`]): its file lines and its `.bss` tail.
    pub lines: Vec<usize>,
    /// What its lowest line says its load address is, when its headers are here.
    #[serde(serialize_with = "crate::addr::opt_hex")]
    pub base: Option<u64>,
    /// Its file here (or under `--root`): found, the same, another version.
    pub file: Option<FileCheck>,
    /// `ET_EXEC` or `ET_DYN`, when its headers are here.
    pub e_type: Option<&'static str>,
    /// Its allocated sections at run time, when its headers are here.
    #[serde(skip)]
    pub sections: Vec<super::SectionView>,
}

/// Something told by the lines as a whole.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// What it is about: `bits`, `kernel`, `loader`, `layout`, `aslr`, `brk`, `stage`,
    /// `format`, `rwx`, `below program`, `deleted`.
    pub topic: &'static str,
    pub text: String,
    pub confidence: Confidence,
    pub source: String,
}

/// A hole between two lines that has a name.
#[derive(Clone, Debug, Serialize)]
pub struct Hole {
    #[serde(serialize_with = "crate::addr::hex")]
    pub start: u64,
    #[serde(serialize_with = "crate::addr::hex")]
    pub end: u64,
    pub label: String,
    pub confidence: Confidence,
    pub reason: Reason,
}

/// A maps file explained.
#[derive(Clone, Debug, Serialize)]
pub struct Annotation {
    /// `elfmap-explain-maps/1`.
    pub schema: &'static str,
    /// The file read (`-`: standard input).
    pub source: String,
    pub input: ReadStats,
    /// The 2.6-era format: anonymous mappings' offset column holds their address.
    pub old_format: bool,
    /// 32 or 64.
    pub bits: u32,
    /// `glibc`, `musl`, or null (static, or not known).
    pub loader: Option<&'static str>,
    /// `top-down` or `legacy`, when it can be told.
    pub layout: Option<&'static str>,
    /// ASLR on, when it can be told.
    pub aslr: Option<bool>,
    pub findings: Vec<Finding>,
    pub objects: Vec<MapsObject>,
    /// The lines, in address order.
    pub lines: Vec<AnnotatedLine>,
    /// Named holes (where ld.so.cache was ...).
    pub holes: Vec<Hole>,
    /// The address space from the top, as `explain` draws it.
    pub regions: Vec<Region>,
    pub totals: Totals,
}

/// What [`annotate`] looks at besides the text.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Look the named files up under this directory instead of `/`.
    pub root: Option<PathBuf>,
    /// Do not look at any file (labels from the lines alone).
    pub no_files: bool,
}

// ---- Working state ---------------------------------------------------------------------

/// What the name column says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Name {
    Anon,
    Stack,
    /// `[stack:TID]` (kernels 3.4 to 4.4).
    StackTid(String),
    Heap,
    /// `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`, `[vectors]`, `[sigpage]`, `[uprobes]`.
    Kernel(String),
    /// `[anon:NAME]`: prctl(PR_SET_VMA_ANON_NAME).
    AnonNamed(String),
    /// Any other `[...]`.
    OtherSpecial(String),
    File,
}

fn name_of(l: &MapsLine) -> Name {
    let p = l.path.as_str();
    if p.is_empty() {
        return Name::Anon;
    }
    if let Some(inner) = p.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return match inner {
            "stack" => Name::Stack,
            "heap" => Name::Heap,
            "vdso" | "vvar" | "vvar_vclock" | "vsyscall" | "vectors" | "sigpage" | "uprobes" => {
                Name::Kernel(inner.to_string())
            }
            _ => {
                if let Some(tid) = inner.strip_prefix("stack:") {
                    Name::StackTid(tid.to_string())
                } else if let Some(n) = inner.strip_prefix("anon:") {
                    Name::AnonNamed(n.to_string())
                } else {
                    Name::OtherSpecial(inner.to_string())
                }
            }
        };
    }
    Name::File
}

/// A label being built.
#[derive(Clone, Debug)]
struct P {
    start: u64,
    end: u64,
    label: String,
    confidence: Confidence,
    reasons: Vec<Reason>,
}

struct W {
    rec: Record,
    name: Name,
    /// Labelled pieces, in address order, not overlapping; what they leave is unlabelled.
    pieces: Vec<P>,
    object: Option<usize>,
    sections: Vec<String>,
    impossible: Option<String>,
}

impl W {
    fn l(&self) -> &MapsLine {
        &self.rec.line
    }
    fn is_anon(&self) -> bool {
        self.name == Name::Anon
    }
    fn perms(&self) -> &[u8] {
        self.rec.line.perms.as_bytes()
    }
    fn writable(&self) -> bool {
        self.perms()[1] == b'w'
    }
    fn none(&self) -> bool {
        &self.perms()[..3] == b"---"
    }
    fn unlabelled(&self) -> bool {
        self.pieces.is_empty()
    }
    /// The unlabelled ranges.
    fn free(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut a = self.l().start;
        for p in &self.pieces {
            if p.start > a {
                out.push((a, p.start));
            }
            a = a.max(p.end);
        }
        if a < self.l().end {
            out.push((a, self.l().end));
        }
        out
    }
    fn put(&mut self, start: u64, end: u64, label: &str, c: Confidence, reasons: Vec<Reason>) {
        if start >= end {
            return;
        }
        self.pieces.push(P {
            start,
            end,
            label: label.to_string(),
            confidence: c,
            reasons,
        });
        self.pieces.sort_by_key(|p| p.start);
    }
    fn whole(&mut self, label: &str, c: Confidence, reasons: Vec<Reason>) {
        let (s, e) = (self.l().start, self.l().end);
        self.pieces.clear();
        self.pieces.push(P {
            start: s,
            end: e,
            label: label.to_string(),
            confidence: c,
            reasons,
        });
    }
}

/// An object being worked on.
struct Obj {
    path: String,
    deleted: bool,
    /// Its file lines, in address order (indices into the sorted lines).
    lines: Vec<usize>,
    layout: Option<Layout>,
    file: Option<FileCheck>,
    role: ObjectRole,
    role_confidence: Confidence,
    role_reason: Reason,
    /// Its PT_INTERP, from its headers.
    interp: Option<String>,
}

impl Obj {
    fn short(&self) -> String {
        self.path
            .rsplit('/')
            .next()
            .unwrap_or(&self.path)
            .to_string()
    }
}

/// The context the rules share.
struct Ctx {
    bits: u32,
    loader: Option<&'static str>,
    /// ld.so.cache is still mapped: the process has run nothing of its own yet.
    cache_mapped: bool,
}

impl Ctx {
    /// `HEAP_MAX_SIZE` (malloc/arena.c): `2 * DEFAULT_MMAP_THRESHOLD_MAX`, that is
    /// `2 * 4 * 1024 * 1024 * sizeof(long)`: 64 MiB on 64-bit, and `2 * 512 * 1024`,
    /// 1 MiB, on 32-bit (malloc/malloc.c).
    fn heap_max(&self) -> u64 {
        if self.bits == 64 {
            64 << 20
        } else {
            1 << 20
        }
    }
}

// ---- Reading ---------------------------------------------------------------------------

/// Explain the maps text read from `input` (named `source` in messages). Fails (with one
/// line naming `source` and the first line that cannot be read) on input that is not a
/// maps file.
pub fn annotate<R: BufRead>(source: &str, input: R, opts: &Options) -> Result<Annotation> {
    let bad = |reason: String| Error::bad_input(source, reason);
    let mut reader = Reader::new(input);
    let mut recs: Vec<Record> = Vec::new();
    for r in reader.by_ref() {
        let r = r.map_err(|e| bad(format!("not a maps file: {e}")))?;
        if recs.len() >= MAX_MAPPINGS {
            return Err(bad(format!(
                "more than {MAX_MAPPINGS} mappings (the default vm.max_map_count is 65530): elfmap reads at most {MAX_MAPPINGS}"
            )));
        }
        recs.push(r);
    }
    let stats = reader.stats.clone();
    if recs.is_empty() {
        return Err(bad(match stats.truncated {
            Some(n) => {
                format!("not a maps file: line {n} is not a maps line and the input ends there")
            }
            None => "not a maps file: no maps line in it".into(),
        }));
    }
    Ok(annotate_records(source, recs, stats, opts))
}

/// [`annotate`] over records already read.
pub fn annotate_records(
    source: &str,
    recs: Vec<Record>,
    stats: ReadStats,
    opts: &Options,
) -> Annotation {
    // Impossible lines, in input order.
    let mut impossible: Vec<(u64, String)> = Vec::new();
    let mut prev: Option<(u64, u64, u64)> = None; // start, end, number of the highest line so far
    for r in &recs {
        let l = &r.line;
        if l.start >= l.end {
            impossible.push((
                r.number,
                format!(
                    "it ends ({:#x}) where or before it starts ({:#x}): a VMA is never empty",
                    l.end, l.start
                ),
            ));
        } else if l.start % PAGE != 0 || l.end % PAGE != 0 {
            impossible.push((
                r.number,
                "its addresses are not page-aligned (VMAs start and end on page boundaries)".into(),
            ));
        }
        if let Some((ps, pe, pn)) = prev {
            if l.start < ps {
                impossible.push((r.number, format!("it comes after line {pn} but lies below it: the kernel lists VMAs in address order (fs/proc/task_mmu.c: m_next())")));
            } else if l.start < pe {
                impossible.push((
                    r.number,
                    format!("it overlaps line {pn}: no two VMAs share an address"),
                ));
            }
        }
        if prev.is_none_or(|(_, pe, _)| l.end >= pe) {
            prev = Some((l.start, l.end, r.number));
        }
    }
    let mut recs = recs;
    recs.sort_by_key(|r| (r.line.start, r.line.end));
    let mut ws: Vec<W> = recs
        .into_iter()
        .map(|rec| {
            let name = name_of(&rec.line);
            let number = rec.number;
            W {
                rec,
                name,
                pieces: Vec::new(),
                object: None,
                sections: Vec::new(),
                impossible: impossible
                    .iter()
                    .filter(|(n, _)| *n == number)
                    .map(|(_, t)| t.clone())
                    .reduce(|a, b| format!("{a}; {b}")),
            }
        })
        .collect();

    let bits = if ws.iter().any(|w| w.l().end > 0x1_0000_0000) {
        64
    } else {
        32
    };
    let old_format = ws.iter().any(|w| {
        w.l().inode == 0 && w.name != Name::File && w.l().offset != 0 && w.l().offset == w.l().start
    });

    let mut objs = find_objects(&ws, opts);
    let program = assign_roles(&ws, &mut objs);
    let loader = loader_of(&objs);
    let cache_mapped = ws
        .iter()
        .any(|w| w.name == Name::File && is_ld_cache(&w.l().path));
    let ctx = Ctx {
        bits: objs
            .iter()
            .find_map(|o| o.layout.as_ref())
            .map(|l| if l.image.is_64() { 64 } else { 32 })
            .filter(|&b| b == 64 || bits == 32)
            .unwrap_or(bits),
        loader,
        cache_mapped,
    };
    for (k, o) in objs.iter().enumerate() {
        for &i in &o.lines {
            ws[i].object = Some(k);
        }
    }
    label_objects(&mut ws, &objs);
    label_named(&mut ws, &ctx);
    label_bss(&mut ws, &objs);
    label_arenas(&mut ws, &ctx);
    label_thread_stacks(&mut ws, &ctx);
    label_loader_malloc(&mut ws, &objs, &ctx);
    label_rest(&mut ws, &ctx);

    let mut findings = Vec::new();
    let layout = infer(&ws, &objs, program, &ctx, old_format, &stats, &mut findings);
    let aslr = findings
        .iter()
        .find(|f| f.topic == "aslr")
        .filter(|f| !f.text.starts_with("ASLR unclear"))
        .map(|f| f.text.starts_with("ASLR on"));
    let holes = holes(&ws, &objs, &ctx, layout, opts);

    let lines: Vec<AnnotatedLine> = ws.into_iter().map(finish_line).collect();
    let objects: Vec<MapsObject> = objs
        .into_iter()
        .enumerate()
        .map(|(k, o)| MapsObject {
            role: o.role,
            role_confidence: o.role_confidence,
            role_reason: o.role_reason,
            path: o.path,
            deleted: o.deleted,
            lines: lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.object == Some(k))
                .map(|(i, _)| i)
                .collect(),
            base: o.layout.as_ref().map(|l| l.base),
            e_type: o.layout.as_ref().map(|l| {
                if l.image.is_dyn() {
                    "ET_DYN"
                } else {
                    "ET_EXEC"
                }
            }),
            sections: o
                .layout
                .as_ref()
                .map(|l| {
                    l.sections
                        .iter()
                        .filter(|s| s.is_alloc() && s.sh_size > 0)
                        .map(|s| {
                            let start = l.base.wrapping_add(s.sh_addr);
                            let end = start.wrapping_add(s.sh_size);
                            super::SectionView {
                                name: s.name.clone(),
                                start,
                                end,
                                line: lines
                                    .iter()
                                    .position(|x| x.maps.start <= start && start < x.maps.end),
                                tls: s.is_tls(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            file: o.file,
        })
        .collect();
    let totals = Totals::of(lines.iter().map(|l| &l.maps));
    let regions = regions(&lines, &objects, ctx.bits, layout);
    Annotation {
        schema: SCHEMA,
        source: source.to_string(),
        input: stats,
        old_format,
        bits: ctx.bits,
        loader,
        layout,
        aslr,
        findings,
        objects,
        lines,
        holes,
        regions,
        totals,
    }
}

// ---- Files and objects -----------------------------------------------------------------

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_ld_cache(path: &str) -> bool {
    path.ends_with("/ld.so.cache") || path == "ld.so.cache"
}

/// The label of a file mapping that is not an ELF object, by its name.
fn file_kind(path: &str) -> Option<(&'static str, Confidence, Reason)> {
    let name = file_name(path);
    let lower = name.to_ascii_lowercase();
    let r = if is_ld_cache(path) {
        (
            label::LD_CACHE,
            Confidence::Certain,
            reason(
                "the library cache: ld.so maps it whole at its first library search and unmaps it before the program starts (_dl_unload_cache()); seen here, the process was stopped before AT_ENTRY, or was inside dlopen()",
                "elf/dl-cache.c: _dl_load_cache_lookup()",
            ),
        )
    } else if path.ends_with("/ld.so.preload") {
        (
            label::LD_PRELOAD,
            Confidence::Certain,
            reason(
                "/etc/ld.so.preload, read by ld.so while it loads the preloads",
                "elf/rtld.c: dl_main()",
            ),
        )
    } else if name == "locale-archive" {
        (
            label::LOCALE,
            Confidence::Certain,
            reason(
                "glibc's locale archive: setlocale() maps the part holding the locale asked for (LANG, LC_*)",
                "locale/loadarchive.c: _nl_load_locale_from_archive()",
            ),
        )
    } else if path.contains("/locale/") && name.starts_with("LC_") {
        (
            label::LOCALE_FILE,
            Confidence::Likely,
            reason(
                "one category of a locale compiled into its own directory, mapped by setlocale()",
                "locale/loadlocale.c: _nl_load_locale()",
            ),
        )
    } else if name == "gconv-modules.cache" {
        (
            label::GCONV,
            Confidence::Certain,
            reason(
                "iconv's module cache, mapped at the first character-set conversion (iconv_open, or a wide-character function)",
                "iconv/gconv_cache.c: __gconv_load_cache()",
            ),
        )
    } else if [
        ".ttf", ".otf", ".ttc", ".pfb", ".pcf", ".pcf.gz", ".woff", ".woff2",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
    {
        (
            label::FONT,
            Confidence::Likely,
            reason(
                "a font file, mapped by FreeType or fontconfig to read its glyphs",
                "freetype: FT_Stream_Open()",
            ),
        )
    } else if path.contains("fontconfig") && lower.contains(".cache-") {
        (
            label::FONT_CACHE,
            Confidence::Likely,
            reason(
                "a fontconfig cache file: the font list, mapped when fonts are first looked up",
                "fontconfig: FcDirCacheMapFd()",
            ),
        )
    } else if path.starts_with("/dev/shm/") {
        (
            label::SHM,
            Confidence::Certain,
            reason(
                "POSIX shared memory: a file of the /dev/shm tmpfs (shm_open), mapped MAP_SHARED",
                "mm/shmem.c",
            ),
        )
    } else if path.starts_with("/SYSV") {
        (
            label::SHM,
            Confidence::Certain,
            reason(
                "a System V shared memory segment (shmat); the name is its key in hex",
                "ipc/shm.c: do_shmat()",
            ),
        )
    } else if path.starts_with("/memfd:") {
        (
            label::SHM,
            Confidence::Certain,
            reason(
                "a memfd_create() file (the name after memfd: is the one given)",
                "mm/memfd.c: memfd_create()",
            ),
        )
    } else if path == "/dev/zero" {
        (
            label::SHARED_ANON,
            Confidence::Certain,
            reason(
                "shared anonymous memory (mmap MAP_SHARED|MAP_ANONYMOUS): the kernel backs it with a shmem file it names /dev/zero, deleted",
                "mm/shmem.c: shmem_zero_setup()",
            ),
        )
    } else if path.starts_with("/dev/") || path.starts_with("anon_inode:") {
        (
            label::DEVICE,
            Confidence::Certain,
            reason("a device or kernel object mapped through its file (GPU buffers, perf rings, DRM, io_uring ...)", "mm/mmap.c: do_mmap() -> f_op->mmap()"),
        )
    } else {
        return None;
    };
    Some(r)
}

/// Group the file lines into objects: each run of lines of one file (same name, device
/// and inode) with no other file between them, when it looks like (or its file here is)
/// an ELF object.
fn find_objects(ws: &[W], opts: &Options) -> Vec<Obj> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut last: Option<usize> = None;
    for (i, w) in ws.iter().enumerate() {
        if w.name != Name::File {
            continue;
        }
        let same = last.is_some_and(|j| {
            let a = ws[j].l();
            let b = w.l();
            a.path == b.path
                && a.inode == b.inode
                && (a.dev_major, a.dev_minor) == (b.dev_major, b.dev_minor)
        });
        if same {
            if let Some(r) = runs.last_mut() {
                r.push(i);
            }
        } else {
            runs.push(vec![i]);
        }
        last = Some(i);
    }
    let mut out = Vec::new();
    for run in runs {
        let first = ws[run[0]].l();
        if file_kind(&first.path).is_some() {
            continue;
        }
        let looks_elf = run.len() >= 2
            || run.iter().any(|&i| ws[i].perms()[2] == b'x')
            || file_name(&first.path).contains(".so");
        let lines: Vec<&MapsLine> = run.iter().map(|&i| ws[i].l()).collect();
        let (file, layout) = if opts.no_files {
            (None, None)
        } else {
            let (fc, layout) = objects::check(opts.root.as_deref(), &first.path, &lines);
            (Some(fc), layout)
        };
        let is_object = match file.as_ref().map(|f| &f.status) {
            Some(FileStatus::Consistent | FileStatus::OtherVersion) => true,
            Some(FileStatus::NotElf) => false,
            _ => looks_elf,
        };
        if !is_object {
            continue;
        }
        let interp = layout.as_ref().and_then(|l| {
            l.image.interp_raw().map(|b| {
                let b = b.split(|&c| c == 0).next().unwrap_or(&[]);
                String::from_utf8_lossy(b).into_owned()
            })
        });
        out.push(Obj {
            path: first.path.clone(),
            deleted: run.iter().any(|&i| ws[i].rec.deleted),
            lines: run,
            layout,
            file,
            role: ObjectRole::Library,
            role_confidence: Confidence::Guess,
            role_reason: reason("", ""),
            interp,
        });
    }
    out
}

/// Whether a file name is a dynamic loader's.
fn is_loader_name(path: &str) -> bool {
    let n = file_name(path);
    n.starts_with("ld-linux")
        || n.starts_with("ld-musl")
        || (n.starts_with("ld-") && n.contains(".so"))
        || n.starts_with("ld.so")
        || (path.contains("-linux-musl/") && n.starts_with("libc.so"))
}

/// Which object is the program, which the interpreter; the rest are libraries. Returns the
/// program's index.
fn assign_roles(ws: &[W], objs: &mut [Obj]) -> Option<usize> {
    let start = |o: &Obj| ws[o.lines[0]].l().start;
    let end = |o: &Obj| ws[*o.lines.last().unwrap_or(&o.lines[0])].l().end;
    // The program.
    let heap = ws
        .iter()
        .find(|w| w.name == Name::Heap)
        .map(|w| w.l().start);
    let et_exec = objs.iter().position(|o| {
        o.layout
            .as_ref()
            .is_some_and(|l| l.image.e_type() == goblin::elf::header::ET_EXEC)
    });
    let not_so: Vec<usize> = (0..objs.len())
        .filter(|&k| !file_name(&objs[k].path).contains(".so") && !is_loader_name(&objs[k].path))
        .collect();
    let below_heap = heap.and_then(|h| {
        (0..objs.len())
            .filter(|&k| end(&objs[k]) <= h)
            .max_by_key(|&k| end(&objs[k]))
    });
    let program = if let Some(k) = et_exec {
        Some((k, Confidence::Certain, reason(
            "its headers say ET_EXEC: only a program is linked to a fixed address (libraries and loaders are ET_DYN)",
            "fs/binfmt_elf.c: load_elf_binary()",
        )))
    } else if let Some(k) = below_heap.filter(|k| not_so.contains(k) || not_so.is_empty()) {
        Some((k, Confidence::Likely, reason(
            "the object right below [heap]: the kernel starts the brk heap just past the program's .bss (start_brk)",
            "fs/binfmt_elf.c: load_elf_binary()",
        )))
    } else if let Some(&k) = not_so.iter().find(|&&k| objs[k].interp.is_some()) {
        Some((
            k,
            Confidence::Likely,
            reason(
                "it has a PT_INTERP and its name is not a shared object's",
                "fs/binfmt_elf.c: load_elf_binary()",
            ),
        ))
    } else if let Some(&k) = not_so.iter().min_by_key(|&&k| start(&objs[k])) {
        Some((
            k,
            Confidence::Likely,
            reason(
                "the lowest object whose name is not a shared object's (lib*.so*) nor a loader's",
                "fs/binfmt_elf.c: load_elf_binary()",
            ),
        ))
    } else {
        None
    };
    let program_k = program.as_ref().map(|p| p.0);
    if let Some((k, c, r)) = program {
        objs[k].role = ObjectRole::Program;
        objs[k].role_confidence = c;
        objs[k].role_reason = r;
    }
    // The interpreter: the program's PT_INTERP, else a loader's name.
    let want = program_k.and_then(|k| objs[k].interp.clone());
    let by_interp = want.as_ref().and_then(|w| {
        let wn = file_name(w).to_string();
        (0..objs.len()).find(|&k| Some(k) != program_k && file_name(&objs[k].path) == wn)
    });
    let interp = by_interp
        .map(|k| {
            (k, Confidence::Certain, reason(
                format!("the program's PT_INTERP names it ({})", want.clone().unwrap_or_default()),
                "fs/binfmt_elf.c: load_elf_binary() -> load_elf_interp()",
            ))
        })
        .or_else(|| {
            (0..objs.len())
                .find(|&k| Some(k) != program_k && is_loader_name(&objs[k].path))
                .map(|k| {
                    (k, Confidence::Likely, reason(
                        "its name is a dynamic loader's (ld-linux*, ld-*.so, ld-musl-*, musl's libc.so)",
                        "fs/binfmt_elf.c: load_elf_binary() -> load_elf_interp()",
                    ))
                })
        });
    if let Some((k, c, r)) = interp {
        objs[k].role = ObjectRole::Interpreter;
        objs[k].role_confidence = c;
        objs[k].role_reason = r;
    }
    for o in objs.iter_mut() {
        if o.role == ObjectRole::Library && o.role_reason.text.is_empty() {
            o.role_confidence = Confidence::Likely;
            o.role_reason = reason(
                "a shared library: mapped by the dynamic loader (or dlopen())",
                "elf/dl-load.c: _dl_map_object_from_fd()",
            );
        }
    }
    program_k
}

fn loader_of(objs: &[Obj]) -> Option<&'static str> {
    let i = objs.iter().find(|o| o.role == ObjectRole::Interpreter)?;
    if i.path.contains("musl") {
        Some("musl")
    } else {
        Some("glibc")
    }
}

/// Who mapped an object's segments, for the citation.
fn mapper(o: &Obj, loader: Option<&str>) -> &'static str {
    match (o.role, loader) {
        (ObjectRole::Program | ObjectRole::Interpreter, _) => "fs/binfmt_elf.c: elf_map()",
        (_, Some("musl")) => "musl ldso/dynlink.c: map_library()",
        _ => "elf/dl-map-segments.h: _dl_map_segments()",
    }
}

/// Label every file line of every object.
fn label_objects(ws: &mut [W], objs: &[Obj]) {
    let loader = loader_of(objs);
    for o in objs {
        let who = o.short();
        let src = mapper(o, loader);
        match &o.layout {
            Some(lay) => {
                for &i in &o.lines {
                    let l = ws[i].l().clone();
                    let Ok(pieces) = lay.pieces(&l) else { continue };
                    for (s, e, piece) in pieces {
                        let (lab, rs) = match piece {
                            Piece::Segment { phdr, relro } if relro && l.perms.as_bytes()[1] != b'w' => (
                                label::RELRO.to_string(),
                                vec![
                                    reason(format!("{who}'s {}: its file pages, by its headers", lay.describe(phdr)), src),
                                    reason(
                                        format!("{who}'s PT_GNU_RELRO (.data.rel.ro, .dynamic, .got ...): written during relocation, then made read-only, so part of the writable segment shows r--p"),
                                        if loader == Some("musl") { "musl ldso/dynlink.c: reloc_all()" } else { "elf/dl-reloc.c: _dl_protect_relro()" },
                                    ),
                                ],
                            ),
                            Piece::Segment { phdr, .. } => (
                                segment_label(&l.perms).to_string(),
                                vec![reason(format!("{who}'s {}: its file pages, by its headers", lay.describe(phdr)), src)],
                            ),
                            Piece::Hole if &l.perms.as_bytes()[..3] == b"---" => (
                                label::GAP.to_string(),
                                vec![reason(
                                    format!("the hole between two segments of {who}: the loader maps the whole span at once (so that the segments keep their relative places) and makes the hole PROT_NONE; it still maps the file"),
                                    "elf/dl-map-segments.h: _dl_map_segments()",
                                )],
                            ),
                            Piece::Hole => (
                                segment_label(&l.perms).to_string(),
                                vec![reason(
                                    format!("between two segments of {who}: musl maps the whole span with the first segment's protection, and the gaps keep it"),
                                    "musl ldso/dynlink.c: map_library()",
                                )],
                            ),
                        };
                        ws[i].put(s, e, &lab, Confidence::Certain, rs);
                    }
                    ws[i].sections = lay.sections_in(l.start, l.end);
                }
            }
            None => label_object_by_shape(ws, o, &who, src, loader.is_none()),
        }
    }
}

/// An object's file lines labelled from their permissions and order alone.
fn label_object_by_shape(
    ws: &mut [W],
    o: &Obj,
    who: &str,
    src: &'static str,
    static_program: bool,
) {
    let n = o.lines.len();
    let last_x = o.lines.iter().rposition(|&i| ws[i].perms()[2] == b'x');
    let first_w = o.lines.iter().position(|&i| ws[i].writable());
    for (k, &i) in o.lines.iter().enumerate() {
        let perms = ws[i].l().perms.clone();
        let p = perms.as_bytes();
        let between_own = k > 0 && k + 1 < n;
        if &p[..3] == b"---" && between_own {
            ws[i].whole(
                label::GAP,
                Confidence::Likely,
                vec![reason(
                    format!("a PROT_NONE line of {who} between two of its own: the hole between two segments; the loader maps the whole span at once and makes the hole PROT_NONE"),
                    "elf/dl-map-segments.h: _dl_map_segments()",
                )],
            );
            continue;
        }
        let shape = format!("{who}'s line {} of {n}: a segment's pages, labelled by its permissions ({perms}) (no headers of {who} to check)", k + 1);
        // RELRO: the r--p line right below the first writable line, after the code.
        let relro_candidate = p[0] == b'r'
            && p[1] != b'w'
            && first_w == Some(k + 1)
            && ws[o.lines[k + 1]].l().start == ws[i].l().end
            && last_x.is_some_and(|x| x < k);
        if relro_candidate {
            let ro_after_x = o.lines[last_x.map_or(0, |x| x + 1)..k + 1]
                .iter()
                .filter(|&&j| ws[j].perms()[1] != b'w' && ws[j].perms()[0] == b'r')
                .count();
            let prev = ws[o.lines[k - 1]].l();
            let overlap = ws[i].l().offset
                < prev
                    .offset
                    .saturating_add(prev.end.saturating_sub(prev.start));
            let (lab, c, why) = if overlap {
                (label::RELRO, Confidence::Likely, "its file offset lies in the pages of the line before it: a new segment starting in the page where the previous one ends, the writable one, whose first part is RELRO")
            } else if ro_after_x >= 2 {
                (label::RELRO, Confidence::Likely, "the second read-only line after the code, right below the data: read-only data, then RELRO")
            } else if static_program && o.role == ObjectRole::Program {
                (label::READ_ONLY, Confidence::Guess, "the one read-only line between the code and the data of a static program: its read-only data (a static program applies RELRO itself, late, if it has any)")
            } else {
                (label::RELRO, Confidence::Guess, "the one read-only line between the code and the data: RELRO, or read-only data of an object linked without RELRO")
            };
            let first = if lab == label::RELRO {
                reason(format!("{why}; {who}'s PT_GNU_RELRO is written during relocation, then made read-only"), "elf/dl-reloc.c: _dl_protect_relro()")
            } else {
                reason(why, src)
            };
            ws[i].whole(lab, c, vec![first, reason(shape, src)]);
            continue;
        }
        let lab = segment_label(&perms);
        ws[i].whole(lab, Confidence::Likely, vec![reason(shape, src)]);
    }
}

/// Lines the kernel or a library named.
fn label_named(ws: &mut [W], ctx: &Ctx) {
    for w in ws.iter_mut() {
        if !w.unlabelled() {
            continue;
        }
        let name = w.name.clone();
        match name {
            Name::Stack => w.whole(
                label::STACK,
                Confidence::Certain,
                vec![reason(
                    "the initial stack, named by the kernel (the VMA holding mm->start_stack): argv, envp and auxv at its top; it grows down to RLIMIT_STACK",
                    "fs/exec.c: setup_arg_pages(), fs/proc/task_mmu.c: show_map_vma()",
                )],
            ),
            Name::StackTid(tid) => w.whole(
                label::THREAD_STACK,
                Confidence::Certain,
                vec![reason(
                    format!("named [stack:{tid}] by the kernel (3.4 to 4.4 named so the VMA holding a thread's stack pointer): the stack of thread {tid}"),
                    "fs/proc/task_mmu.c: show_map_vma() (vm_is_stack())",
                )],
            ),
            Name::Heap => {
                let musl = ctx.loader == Some("musl");
                w.whole(
                    if musl { label::MUSL_HEAP } else { label::HEAP },
                    Confidence::Certain,
                    vec![reason(
                        if musl {
                            "the brk heap, named by the kernel: musl's mallocng keeps its metadata areas there"
                        } else {
                            "the brk heap, named by the kernel: from start_brk (just past the program's .bss, plus a random offset with ASLR) up to brk; malloc's main arena grows it with brk()"
                        },
                        "mm/mmap.c: brk(), fs/proc/task_mmu.c: show_map_vma()",
                    )],
                )
            }
            Name::Kernel(k) => {
                let (text, src) = match k.as_str() {
                    "vsyscall" => ("the legacy vsyscall page, at a fixed address above TASK_SIZE in every 64-bit process (execute-only: calls trap into the kernel)", "arch/x86/entry/vsyscall/vsyscall_64.c"),
                    "vdso" | "vvar" | "vvar_vclock" => ("the vDSO (kernel code run in user mode: clock_gettime, gettimeofday ...) and its data pages ([vvar]), mapped by the kernel at exec", "arch/x86/entry/vdso/vma.c: map_vdso()"),
                    "uprobes" => ("the execute-out-of-line page of uprobes (a tracer probed this process)", "kernel/events/uprobes.c: xol_add_vma()"),
                    _ => ("a page the kernel maps into every process of this architecture (ARM's vector or signal page)", "arch/arm/kernel/process.c"),
                };
                w.whole(&k, Confidence::Certain, vec![reason(text, src)]);
            }
            Name::AnonNamed(n) => {
                let t = n.trim();
                let (lab, text, src) = if t == "glibc: malloc arena" {
                    (label::ARENA, "named by glibc (glibc.mem.decorate_maps, 2.39+): the in-use part of a malloc arena's heap", "malloc/arena.c: new_heap()")
                } else if t == "glibc: malloc" {
                    (label::MALLOC_CHUNK, "named by glibc (glibc.mem.decorate_maps, 2.39+): a chunk malloc mmap'd on its own (a request of M_MMAP_THRESHOLD or more), or the main arena's non-contiguous heap", "malloc/malloc.c: sysmalloc_mmap()")
                } else if t == "glibc: loader malloc" {
                    (label::LDSO_MALLOC, "named by glibc (glibc.mem.decorate_maps, 2.39+): memory of ld.so's start-up allocator", "elf/dl-minimal-malloc.c: __minimal_malloc()")
                } else if t.starts_with("glibc: pthread stack:") || t.starts_with("glibc: pthread user stack:") {
                    (label::THREAD_STACK, "named by glibc (glibc.mem.decorate_maps, 2.39+): a thread's stack (the number is its TID)", "nptl/allocatestack.c: name_stack_maps()")
                } else if t == "glibc: unused stack" {
                    (label::THREAD_STACK, "named by glibc (glibc.mem.decorate_maps, 2.39+): the stack of a thread that has exited, kept in glibc's stack cache for the next one", "nptl/allocatestack.c: name_stack_maps()")
                } else {
                    w.whole(
                        &format!("named: {t}"),
                        Confidence::Certain,
                        vec![reason(
                            format!("anonymous memory the process named \"{t}\" with prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)"),
                            "kernel/sys.c: prctl_set_vma(), mm/madvise.c: madvise_set_anon_name()",
                        )],
                    );
                    continue;
                };
                w.whole(lab, Confidence::Certain, vec![reason(text, src)]);
            }
            Name::OtherSpecial(n) => w.whole(
                &format!("[{n}]"),
                Confidence::Likely,
                vec![reason(format!("a name the kernel (or a driver) gives this mapping: [{n}]"), "fs/proc/task_mmu.c: show_map_vma() (vm_ops->name())")],
            ),
            Name::File => {
                if w.object.is_some() {
                    continue;
                }
                match file_kind(&w.l().path) {
                    Some((lab, c, r)) => w.whole(lab, c, vec![r]),
                    None => {
                        let shared = w.perms()[3] == b's';
                        w.whole(
                            label::FILE,
                            Confidence::Likely,
                            vec![reason(
                                format!("a file the process mapped with mmap(){} (not an ELF object: one line, not executable)", if shared { ", MAP_SHARED" } else { "" }),
                                "mm/mmap.c: do_mmap()",
                            )],
                        );
                    }
                }
            }
            Name::Anon => {}
        }
    }
}

/// `.bss` tails: the anonymous pages right after an object's file pages.
fn label_bss(ws: &mut [W], objs: &[Obj]) {
    let loader = loader_of(objs);
    for i in 1..ws.len() {
        if !ws[i].is_anon() || !ws[i].writable() {
            continue;
        }
        let Some(k) = ws[i - 1].object else { continue };
        if ws[i - 1].l().end != ws[i].l().start || ws[i - 1].name != Name::File {
            continue;
        }
        let prev_writable = ws[i - 1].writable();
        // The lowest free range must start at the line's start.
        let Some(&(a, e)) = ws[i].free().first() else {
            continue;
        };
        if a != ws[i].l().start {
            continue;
        }
        let o = &objs[k];
        let who = o.short();
        let src = match (o.role, loader) {
            (ObjectRole::Program | ObjectRole::Interpreter, _) => {
                "fs/binfmt_elf.c: elf_load() -> vm_brk_flags()"
            }
            (_, Some("musl")) => "musl ldso/dynlink.c: map_library()",
            _ => "elf/dl-map-segments.h: _dl_map_segments()",
        };
        match &o.layout {
            Some(lay) => {
                if let Some(s) = lay.bss_at(a) {
                    let end = e.min(s.mem_end);
                    let r = reason(
                        format!("the part of {who}'s .bss past its last file page: {} has p_memsz > p_filesz, and the rest is anonymous zero memory", lay.describe(s.phdr)),
                        src,
                    );
                    let secs = lay.sections_in(a, end);
                    ws[i].put(a, end, label::BSS, Confidence::Certain, vec![r]);
                    ws[i].object = Some(k);
                    ws[i].sections = secs;
                }
            }
            None => {
                if prev_writable && o.lines.last() == Some(&(i - 1)) {
                    ws[i].whole(
                        label::BSS,
                        Confidence::Likely,
                        vec![reason(
                            format!("anonymous memory right after {who}'s last (writable) line: the part of its .bss past its last file page (no headers of {who} to check its size: memory mapped later right there would merge into this line)"),
                            src,
                        )],
                    );
                    ws[i].object = Some(k);
                }
            }
        }
    }
}

/// glibc's malloc arenas: heaps of HEAP_MAX_SIZE, aligned to it, a read-write part at the
/// bottom and the PROT_NONE rest above (`malloc/arena.c: new_heap()`).
fn label_arenas(ws: &mut [W], ctx: &Ctx) {
    if ctx.loader == Some("musl") {
        return;
    }
    let hm = ctx.heap_max();
    let heap_text = format!(
        "a malloc arena's heap (each thread but the first gets an arena of its own, up to 8 per CPU on 64-bit, 2 on 32-bit): new_heap() maps 2 x HEAP_MAX_SIZE PROT_NONE and keeps the half aligned to HEAP_MAX_SIZE ({} MiB on {}-bit)",
        hm >> 20,
        ctx.bits
    );
    let arena_reason = |extra: &str| {
        reason(
            format!("{heap_text}{extra}"),
            "malloc/arena.c: new_heap(), grow_heap()",
        )
    };
    for i in 0..ws.len().saturating_sub(1) {
        let (lo, hi) = ws.split_at_mut(i + 1);
        let l = &mut lo[i];
        let n = &mut hi[0];
        let named = matches!(&l.name, Name::AnonNamed(s) if s.trim() == "glibc: malloc arena");
        if !(l.is_anon() || named) || !l.writable() || !n.is_anon() || !n.none() {
            continue;
        }
        if n.l().start != l.l().end || !n.unlabelled() {
            continue;
        }
        let e = l.l().end;
        if e == 0 {
            continue;
        }
        let x = (e - 1) & !(hm - 1);
        let Some(top) = x.checked_add(hm) else {
            continue;
        };
        let Some(&(a, fe)) = l.free().last() else {
            if named {
                // The reserve above glibc's own name.
                let r_end = n.l().end.min(top.max(n.l().start));
                n.put(
                    n.l().start,
                    r_end,
                    label::ARENA_RESERVE,
                    Confidence::Likely,
                    vec![arena_reason(": the PROT_NONE rest of a heap glibc named")],
                );
            }
            continue;
        };
        if fe != e || x < a || top <= n.l().start || top > n.l().end {
            continue;
        }
        if x > a {
            if a.is_multiple_of(hm) && (x - a).is_multiple_of(hm) {
                l.put(
                    a,
                    x,
                    label::ARENA,
                    Confidence::Likely,
                    vec![arena_reason(
                        ": heaps grown to their full size, the next heap right above",
                    )],
                );
            } else {
                continue;
            }
        }
        l.put(
            x,
            e,
            label::ARENA,
            Confidence::Likely,
            vec![arena_reason(&format!(
                ": read-write from its start {x:#x} as far as the arena uses it (grow_heap() extends it with mprotect)"
            ))],
        );
        n.put(n.l().start, top, label::ARENA_RESERVE, Confidence::Likely, vec![arena_reason(": the PROT_NONE rest, up to the next boundary; grow_heap() makes it read-write as the arena grows")]);
    }
}

/// Thread stacks: an anonymous read-write mapping right above a PROT_NONE guard.
fn label_thread_stacks(ws: &mut [W], ctx: &Ctx) {
    let musl = ctx.loader == Some("musl");
    for i in 1..ws.len() {
        let (lo, hi) = ws.split_at_mut(i);
        let g = &mut lo[i - 1];
        let s = &mut hi[0];
        let named_stack = s.pieces.len() == 1 && s.pieces[0].label == label::THREAD_STACK;
        if !(s.is_anon() || named_stack)
            || !s.writable()
            || g.l().end != s.l().start
            || !g.is_anon()
            || !g.none()
        {
            continue;
        }
        // The guard is the top of g that nothing else claims.
        let Some(&(ga, ge)) = g.free().last() else {
            continue;
        };
        if ge != g.l().end {
            continue;
        }
        let guard = ge - ga;
        let size = s.l().end.saturating_sub(s.l().start);
        if named_stack {
            g.put(
                ga,
                ge,
                label::GUARD,
                Confidence::Likely,
                vec![reason(
                    format!(
                        "the PROT_NONE page(s) right below a named thread stack: its guard ({})",
                        super::text::human(guard)
                    ),
                    "nptl/allocatestack.c: allocate_stack()",
                )],
            );
            continue;
        }
        if !s.unlabelled() || size < 16 << 10 {
            continue;
        }
        let size_note = if size == 8 << 20 {
            "8 MiB: the default, RLIMIT_STACK (8 MiB on most systems)".to_string()
        } else if musl && size <= 1 << 20 {
            format!(
                "{}: musl's default is 128 KiB plus the thread's TLS",
                super::text::human(size)
            )
        } else {
            format!("{}: a size of its own (pthread_attr_setstacksize), or a default from a stack limit other than 8 MiB", super::text::human(size))
        };
        let guard_note = if guard == PAGE {
            "one page: the default guard".to_string()
        } else {
            format!(
                "{}: a guard size of its own (pthread_attr_setguardsize){}",
                super::text::human(guard),
                if musl && guard == 8 << 10 {
                    ", or musl's default 8 KiB"
                } else {
                    ""
                }
            )
        };
        let (text, src) = if musl {
            (format!("a thread's stack: musl's pthread_create() maps the guard, the stack and the thread's TLS in one mmap and makes the guard PROT_NONE; stack {size_note}; guard {guard_note}"), "musl src/thread/pthread_create.c: __pthread_create()")
        } else {
            (format!("a thread's stack: allocate_stack() maps the stack and its guard in one mmap (MAP_STACK), the guard PROT_NONE at the low end, and puts the thread's descriptor (struct pthread) and static TLS at the top; stack {size_note}; guard {guard_note}"), "nptl/allocatestack.c: allocate_stack()")
        };
        s.whole(
            label::THREAD_STACK,
            Confidence::Likely,
            vec![reason(text.clone(), src)],
        );
        g.put(ga, ge, label::GUARD, Confidence::Likely, vec![reason(
            format!("the guard of the thread stack right above: PROT_NONE, so that running off the stack faults ({guard_note})"),
            src,
        )]);
    }
}

/// Whether line `j` is the loader's neighbourhood: a library's or the interpreter's line
/// (its .bss included), the vDSO's, ld.so.cache, or ld.so's malloc.
fn loader_neighbour(ws: &[W], objs: &[Obj], j: usize) -> bool {
    let w = &ws[j];
    if let Some(k) = w.object {
        return objs[k].role != ObjectRole::Program;
    }
    matches!(&w.name, Name::Kernel(k) if k == "vdso" || k == "vvar" || k == "vvar_vclock")
        || (w.name == Name::File && is_ld_cache(&w.l().path))
        || w.pieces.iter().any(|p| p.label == label::LDSO_MALLOC)
}

/// ld.so's (or musl's) start-up allocations: anonymous memory the loader mapped while it
/// loaded, next to what it mapped before and after.
fn label_loader_malloc(ws: &mut [W], objs: &[Obj], ctx: &Ctx) {
    let Some(loader) = ctx.loader else { return };
    let musl = loader == "musl";
    for i in 0..ws.len() {
        if !(ws[i].is_anon() && ws[i].writable()) {
            continue;
        }
        for (a, e) in ws[i].free() {
            let below = if a == ws[i].l().start {
                i > 0 && ws[i - 1].l().end == a && loader_neighbour(ws, objs, i - 1)
            } else {
                // Right above a piece of this line (a library's .bss).
                ws[i]
                    .object
                    .is_some_and(|k| objs[k].role != ObjectRole::Program)
                    && ws[i].pieces.iter().any(|p| p.end == a)
            };
            let above = e == ws[i].l().end
                && i + 1 < ws.len()
                && ws[i + 1].l().start == e
                && loader_neighbour(ws, objs, i + 1);
            if !(below || above) {
                continue;
            }
            if !musl && !ctx.cache_mapped && e - a > LDSO_MALLOC_MAX {
                ws[i].put(a, e, label::ANON, Confidence::Guess, vec![reason(
                    format!("anonymous memory next to the libraries or the vDSO, but {} long, more than ld.so's start-up allocations take (a few pages each): malloc's mmap'd chunks (M_MMAP_THRESHOLD, 128 KiB by default, or more) or the process's own mmaps, with perhaps some of ld.so's start-up memory merged at an edge", super::text::human(e - a)),
                    "malloc/malloc.c: sysmalloc_mmap()",
                )]);
                continue;
            }
            let (lab, text, src) = if musl {
                (label::MUSL_MALLOC, "anonymous memory next to what musl's loader mapped: mallocng's groups and large allocations (the loader's own, then the program's)".to_string(), "musl src/malloc/mallocng/malloc.c: malloc()")
            } else {
                (
                    label::LDSO_MALLOC,
                    format!(
                        "anonymous read-write memory next to the libraries, the vDSO or ld.so.cache: ld.so's start-up allocator maps its pages as it loads (link maps, search paths, scopes, the static TLS block and TCB){}",
                        if ctx.cache_mapped {
                            ""
                        } else {
                            "; the process has run since, and anonymous memory it mapped there later (malloc's mmap'd chunks, its own mmaps) would look the same"
                        }
                    ),
                    "elf/dl-minimal-malloc.c: __minimal_malloc()",
                )
            };
            let c = if ctx.cache_mapped {
                Confidence::Likely
            } else {
                Confidence::Guess
            };
            ws[i].put(a, e, lab, c, vec![reason(text, src)]);
        }
    }
}

/// What no rule claimed.
fn label_rest(ws: &mut [W], ctx: &Ctx) {
    for w in ws.iter_mut() {
        let free = w.free();
        if free.is_empty() {
            continue;
        }
        let p = w.perms().to_vec();
        for (a, e) in free {
            let (lab, text, src) = if w.is_anon() && &p[..3] == b"---" {
                (label::RESERVED, "anonymous PROT_NONE memory: address space reserved and not (yet) usable: a guard, or an allocator's or a runtime's reservation (a JVM heap, a Go arena, a sanitizer's shadow)".to_string(), "mm/mmap.c: do_mmap()")
            } else if w.is_anon() {
                let musl = ctx.loader == Some("musl");
                (
                    if musl {
                        label::MUSL_MALLOC
                    } else {
                        label::ANON
                    },
                    format!(
                        "anonymous memory{}: {}, or the process's own mmap(MAP_ANONYMOUS)",
                        if p[2] == b'x' {
                            " that is executable (a JIT's code, or READ_IMPLIES_EXEC)"
                        } else {
                            ""
                        },
                        if musl {
                            "mallocng's groups of slots and large allocations"
                        } else {
                            "malloc's chunks of M_MMAP_THRESHOLD (128 KiB by default, up to 32 MiB as it adapts) or more are mmap'd one each"
                        }
                    ),
                    if musl {
                        "musl src/malloc/mallocng/malloc.c: malloc()"
                    } else {
                        "malloc/malloc.c: sysmalloc_mmap()"
                    },
                )
            } else {
                // A file line of an object the headers do not cover (should not happen).
                (
                    segment_label(std::str::from_utf8(&p).unwrap_or("----")),
                    "a segment's pages, labelled by its permissions".to_string(),
                    "mm/mmap.c: do_mmap()",
                )
            };
            w.put(a, e, lab, Confidence::Guess, vec![reason(text, src)]);
        }
    }
}

fn finish_line(w: W) -> AnnotatedLine {
    let mut pieces = w.pieces;
    // Adjacent pieces with the same label are one.
    let mut merged: Vec<P> = Vec::new();
    for p in pieces.drain(..) {
        match merged.last_mut() {
            Some(q) if q.label == p.label && q.end == p.start => {
                q.end = p.end;
                q.confidence = q.confidence.min(p.confidence);
                for r in p.reasons {
                    if !q.reasons.contains(&r) {
                        q.reasons.push(r);
                    }
                }
            }
            _ => merged.push(p),
        }
    }
    let label = if merged.is_empty() {
        "impossible line".to_string()
    } else {
        merged
            .iter()
            .map(|p| p.label.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let confidence = merged
        .iter()
        .map(|p| p.confidence)
        .min()
        .unwrap_or(Confidence::Guess);
    let (reasons, parts) = if merged.len() == 1 {
        (
            merged.pop().map(|p| p.reasons).unwrap_or_default(),
            Vec::new(),
        )
    } else {
        let mut rs = vec![reason(
            format!("{} mappings made apart, merged into one line by the kernel: adjacent, the same permissions and flags (anonymous, or the same file at contiguous offsets)", merged.len()),
            "mm/vma.c: vma_merge_new_range()",
        )];
        for p in &merged {
            for r in &p.reasons {
                if !rs.contains(r) {
                    rs.push(r.clone());
                }
            }
        }
        (
            rs,
            merged
                .into_iter()
                .map(|p| LinePart {
                    start: p.start,
                    end: p.end,
                    label: p.label,
                    confidence: p.confidence,
                    reasons: p.reasons,
                })
                .collect(),
        )
    };
    AnnotatedLine {
        maps: w.rec.line,
        number: w.rec.number,
        deleted: w.rec.deleted,
        label,
        confidence,
        reasons,
        object: w.object,
        sections: w.sections,
        parts,
        impossible: w.impossible,
        vm_flags: w.rec.vm_flags,
    }
}

// ---- What the lines tell as a whole ----------------------------------------------------

fn finding(topic: &'static str, text: impl Into<String>, c: Confidence, source: &str) -> Finding {
    Finding {
        topic,
        text: text.into(),
        confidence: c,
        source: source.to_string(),
    }
}

/// The inferences; returns the layout.
fn infer(
    ws: &[W],
    objs: &[Obj],
    program: Option<usize>,
    ctx: &Ctx,
    old_format: bool,
    stats: &ReadStats,
    out: &mut Vec<Finding>,
) -> Option<&'static str> {
    use crate::kernel::profile::{KernelProfile, IA32_PAGE_OFFSET, IA32_PAGE_OFFSET_3GB};
    let max_end = ws.iter().map(|w| w.l().end).max().unwrap_or(0);
    // Bits.
    let from_headers = objs.iter().find_map(|o| o.layout.as_ref());
    if ctx.bits == 64 {
        out.push(finding(
            "bits",
            format!("a 64-bit process: addresses above 4 GiB (up to {max_end:#x})"),
            Confidence::Certain,
            "arch/x86/include/asm/page_64_types.h: TASK_SIZE",
        ));
    } else if let Some(l) = from_headers.filter(|l| !l.image.is_64()) {
        out.push(finding(
            "bits",
            format!(
                "a 32-bit process: every address below 4 GiB, and {} is ELFCLASS32",
                l.image.path.display()
            ),
            Confidence::Certain,
            "fs/binfmt_elf.c: load_elf_binary()",
        ));
    } else {
        out.push(finding("bits", "a 32-bit process: every address below 4 GiB (a 64-bit one has its stack near 0x7fff... and [vsyscall] at 0xffffffffff600000)", Confidence::Likely, "arch/x86/include/asm/processor.h: TASK_SIZE"));
    }
    let stack = ws.iter().find(|w| w.name == Name::Stack);
    // The kernel of a 32-bit process.
    if ctx.bits == 32 {
        let fixed_vdso = ws
            .iter()
            .any(|w| w.name == Name::Kernel("vdso".into()) && w.l().start == 0xffff_e000);
        let high = ws.iter().any(|w| {
            w.l().start >= IA32_PAGE_OFFSET_3GB
                && !(w.name == Name::Kernel("vdso".into()) && w.l().start == 0xffff_e000)
        });
        if fixed_vdso {
            out.push(finding("kernel", "[vdso] at the fixed address 0xffffe000: a 32-bit kernel of the 2.6 era (CONFIG_COMPAT_VDSO, or vdso=2), which put it in the fixmap above TASK_SIZE", Confidence::Likely, "arch/x86/vdso/vdso32-setup.c: arch_setup_additional_pages()"));
        }
        if high {
            out.push(finding("kernel", format!("mappings at or above 0xc0000000: a 64-bit kernel running a 32-bit program (a compat task may use nearly all 4 GiB: TASK_SIZE is IA32_PAGE_OFFSET {IA32_PAGE_OFFSET:#x})"), Confidence::Likely, "arch/x86/include/asm/processor.h: IA32_PAGE_OFFSET"));
        } else if stack.is_some_and(|s| s.l().end == IA32_PAGE_OFFSET_3GB) {
            out.push(finding("kernel", "the stack ends at 0xc0000000: the 3G/1G split of a 32-bit kernel (or setarch --3gb on a 64-bit one)", Confidence::Likely, "arch/x86/include/asm/page_32_types.h: __PAGE_OFFSET"));
        }
    }
    // The loader.
    match ctx.loader {
        Some(l) => {
            let i = objs
                .iter()
                .find(|o| o.role == ObjectRole::Interpreter)
                .map(|o| o.path.clone())
                .unwrap_or_default();
            out.push(finding(
                "loader",
                format!("{l}: the interpreter is {i}"),
                Confidence::Likely,
                "fs/binfmt_elf.c: load_elf_interp()",
            ));
        }
        None if program.is_some() => out.push(finding(
            "loader",
            "no dynamic loader: a static program (no PT_INTERP)",
            Confidence::Likely,
            "fs/binfmt_elf.c: load_elf_binary()",
        )),
        None => {}
    }
    // Layout: the order the loader mapped in (the interpreter first, by the kernel, then
    // the libraries in load order).
    let interp = objs.iter().position(|o| o.role == ObjectRole::Interpreter);
    let libs: Vec<&Obj> = objs
        .iter()
        .filter(|o| o.role == ObjectRole::Library)
        .collect();
    let start = |o: &Obj| ws[o.lines[0]].l().start;
    let mut layout = None;
    // Exec-shield's ASCII armour: executable mappings low, the rest top-down.
    let armour = ctx.bits == 32
        && objs
            .iter()
            .filter(|o| o.role != ObjectRole::Program)
            .all(|o| start(o) < 0x0100_0000)
        && objs.iter().any(|o| o.role != ObjectRole::Program);
    // prelink(8): libraries at the fixed addresses it chose, below the mmap area.
    let prelinked = ctx.bits == 64
        && objs
            .iter()
            .filter(|o| o.role != ObjectRole::Program)
            .any(|o| {
                start(o)
                    < crate::kernel::profile::task_unmapped_base(
                        crate::kernel::profile::DEFAULT_MAP_WINDOW,
                    )
                    && start(o) > 0x1_0000_0000
            });
    if prelinked {
        out.push(finding("below program", "libraries below TASK_UNMAPPED_BASE (0x2aaaaaaab000), where neither layout puts them: prelinked (prelink(8) gave each library an address of its own, and ld.so maps it there when that is free)", Confidence::Likely, "elf/dl-load.c: _dl_map_object_from_fd() (l_map_start from p_vaddr)"));
    }
    if let Some(k) = interp.filter(|_| !armour && !prelinked) {
        let is = start(&objs[k]);
        if !libs.is_empty() && libs.iter().all(|l| start(l) < is) {
            layout = Some("top-down");
            out.push(finding("layout", "top-down (flexible) layout: the interpreter, mapped first, is above every library: mappings are placed downwards from mmap_base, below the stack's room", Confidence::Likely, "arch/x86/mm/mmap.c: arch_pick_mmap_layout()"));
        } else if !libs.is_empty() && libs.iter().all(|l| start(l) > is) {
            layout = Some("legacy");
            out.push(finding("layout", "legacy (bottom-up) layout: the interpreter, mapped first, is below every library: mappings are placed upwards from TASK_UNMAPPED_BASE (setarch -L, vm.legacy_va_layout=1, or an old kernel)", Confidence::Likely, "arch/x86/mm/mmap.c: mmap_is_legacy(), arch_pick_mmap_layout()"));
        }
    }
    // Libraries below the program's text.
    if let Some(p) = program {
        let ptext = objs[p]
            .lines
            .iter()
            .map(|&i| ws[i].l())
            .find(|l| l.perms.as_bytes()[2] == b'x')
            .map(|l| l.start)
            .unwrap_or(start(&objs[p]));
        let below: Vec<&Obj> = objs
            .iter()
            .filter(|o| o.role != ObjectRole::Program && start(o) < ptext)
            .collect();
        if !below.is_empty() {
            let names: Vec<String> = below.iter().take(4).map(|o| o.short()).collect();
            let armour = ctx.bits == 32 && below.iter().all(|o| start(o) < 0x0100_0000);
            let text = if armour {
                format!("libraries below the program's text ({}): below 16 MiB, the \"ASCII armour\" area where exec-shield kernels (old Red Hat and Fedora) put libraries so that their addresses hold a NUL byte", names.join(", "))
            } else if layout == Some("legacy") {
                format!("libraries below the program's text ({}): the legacy layout places them upwards from TASK_UNMAPPED_BASE, below a PIE placed at ELF_ET_DYN_BASE", names.join(", "))
            } else {
                format!("libraries below the program's text ({}): the program was linked or placed above the mmap area", names.join(", "))
            };
            out.push(finding(
                "below program",
                text,
                if armour {
                    Confidence::Likely
                } else {
                    Confidence::Guess
                },
                if armour {
                    "exec-shield: arch_get_unmapped_exec_area()"
                } else {
                    "arch/x86/mm/mmap.c: arch_pick_mmap_layout()"
                },
            ));
        }
    }
    // ASLR.
    let prof = if ctx.bits == 64 {
        KernelProfile::x86_64()
    } else {
        KernelProfile::ia32(false)
    };
    let mut on = Vec::new();
    let mut off = Vec::new();
    if let Some(s) = stack {
        let tops: &[u64] = if ctx.bits == 64 {
            &[prof.stack_top]
        } else {
            &[IA32_PAGE_OFFSET, IA32_PAGE_OFFSET_3GB]
        };
        if tops.contains(&s.l().end) {
            off.push(format!(
                "the stack ends at STACK_TOP {:#x} exactly",
                s.l().end
            ));
        } else if ctx.bits == 64 || s.l().end > 0x8000_0000 {
            on.push(format!(
                "the stack ends at {:#x}, below STACK_TOP by a random amount",
                s.l().end
            ));
        }
    }
    if let Some(p) = program {
        let base = objs[p]
            .layout
            .as_ref()
            .map(|l| l.base)
            .unwrap_or(start(&objs[p]));
        let is_dyn = objs[p].layout.as_ref().map(|l| l.image.is_dyn());
        // ELF_ET_DYN_BASE with no random offset (arch/x86/include/asm/elf.h): 2/3 of the
        // 47-bit window for a 64-bit task; COMPAT_ELF_ET_DYN_BASE (TASK_UNMAPPED_BASE + 16
        // MiB) for a 32-bit one on a 64-bit kernel (0x41000000 with ADDR_LIMIT_3GB); and
        // 0x400000 on a 32-bit kernel (mmap_is_ia32()).
        let dyn_bases: Vec<u64> = if ctx.bits == 64 {
            vec![prof.elf_et_dyn_base & !(PAGE - 1)]
        } else {
            vec![
                prof.elf_et_dyn_base,
                KernelProfile::ia32(true).elf_et_dyn_base,
                0x40_0000,
            ]
        };
        // A PIE with an interpreter goes to ELF_ET_DYN_BASE; a static PIE is placed like
        // an interpreter, at the top of the mmap area (the next check).
        // load_elf_binary() rounds it down to the largest p_align.
        let aligns: Vec<u64> = match objs[p].layout.as_ref() {
            Some(l) => vec![crate::elf::maximum_alignment(&l.image.phdrs).max(PAGE)],
            None => vec![PAGE, 64 << 10, 2 << 20],
        };
        let at_base = dyn_bases.iter().any(|b| {
            aligns
                .iter()
                .any(|a| a.is_power_of_two() && base == b & !(a - 1))
        });
        if ctx.loader.is_some() {
            if at_base && is_dyn != Some(false) {
                off.push(format!(
                    "the PIE is at ELF_ET_DYN_BASE {base:#x} exactly (rounded down to its p_align)"
                ));
            } else if is_dyn == Some(true) {
                on.push(format!(
                    "the PIE is at {base:#x}, not at ELF_ET_DYN_BASE {:#x}",
                    dyn_bases[0]
                ));
            }
        }
    }
    let static_pie = program.filter(|&p| {
        ctx.loader.is_none() && objs[p].layout.as_ref().is_some_and(|l| l.image.is_dyn())
    });
    if let Some(k) = interp.or(static_pie) {
        let top = ws[*objs[k].lines.last().unwrap_or(&objs[k].lines[0])]
            .l()
            .end;
        // mmap_base with no random offset: TASK_SIZE minus the stack's room, at least
        // SIZE_128M (arch/x86/mm/mmap.c: mmap_base()), for the usual 8 MiB stack limit.
        let tops: Vec<u64> = if ctx.bits == 64 {
            vec![crate::kernel::profile::DEFAULT_MAP_WINDOW - crate::kernel::profile::SIZE_128M]
        } else {
            vec![
                IA32_PAGE_OFFSET - crate::kernel::profile::SIZE_128M,
                IA32_PAGE_OFFSET_3GB - crate::kernel::profile::SIZE_128M,
            ]
        };
        if tops.contains(&top) && layout != Some("legacy") {
            off.push(format!(
                "the {} ends at {top:#x}, mmap_base with no random offset (TASK_SIZE - 128 MiB)",
                if interp.is_some() {
                    "interpreter"
                } else {
                    "static PIE"
                }
            ));
        }
    }
    if !on.is_empty() || !off.is_empty() {
        let (text, c) = if off.is_empty() {
            (format!("ASLR on: {}", on.join("; ")), Confidence::Likely)
        } else if on.is_empty() {
            (
                format!(
                    "ASLR off (setarch -R, or kernel.randomize_va_space=0): {}",
                    off.join("; ")
                ),
                if off.len() >= 2 {
                    Confidence::Likely
                } else {
                    Confidence::Guess
                },
            )
        } else {
            (
                format!(
                    "ASLR unclear: on by {}; off by {}",
                    on.join("; "),
                    off.join("; ")
                ),
                Confidence::Guess,
            )
        };
        out.push(finding("aslr", text, c, "fs/binfmt_elf.c: randomize_stack_top(), load_elf_binary(); arch/x86/mm/mmap.c: arch_mmap_rnd()"));
    }
    // brk.
    if let (Some(p), Some(h)) = (program, ws.iter().find(|w| w.name == Name::Heap)) {
        let pend = ws
            .iter()
            .filter(|w| w.object == Some(p))
            .map(|w| w.l().end)
            .max()
            .unwrap_or(0);
        if pend == h.l().start {
            out.push(finding("brk", "the heap starts right after the program's .bss: start_brk was not randomised (kernel.randomize_va_space=1, or ASLR off)", Confidence::Likely, "fs/binfmt_elf.c: load_elf_binary() -> arch_randomize_brk()"));
        } else if pend < h.l().start {
            out.push(finding("brk", format!("the heap starts {} above the program's end: arch_randomize_brk() moved start_brk", super::text::human(h.l().start - pend)), Confidence::Likely, "arch/x86/kernel/process.c: arch_randomize_brk()"));
        }
    }
    // The stage.
    if ctx.cache_mapped {
        out.push(finding("stage", "ld.so.cache is still mapped: the process was stopped while ld.so was loading (before AT_ENTRY: it is unmapped by _dl_unload_cache() before the program starts), or while dlopen() was searching", Confidence::Likely, "elf/dl-cache.c: _dl_unload_cache()"));
    }
    // rwx.
    let rwx: Vec<&W> = ws.iter().filter(|w| &w.perms()[..3] == b"rwx").collect();
    if !rwx.is_empty() {
        let any_ro_file = ws
            .iter()
            .any(|w| w.name == Name::File && &w.perms()[..3] == b"r--");
        let stack_x = stack.is_some_and(|s| s.perms()[2] == b'x');
        let text = if !any_ro_file && ws.iter().any(|w| w.object.is_some()) {
            format!("{} writable and executable lines, and no read-only file line at all: READ_IMPLIES_EXEC, every PROT_READ mapping is also executable (a program without PT_GNU_STACK on i386, or an old personality)", rwx.len())
        } else if stack_x {
            format!("{} writable and executable lines, the stack among them: an executable stack (an object with PT_GNU_STACK PF_X, or none; ld.so makes the stack and thread stacks executable)", rwx.len())
        } else {
            format!("{} writable and executable lines: a JIT's code, DT_TEXTREL, or a mapping asked for PROT_EXEC|PROT_WRITE", rwx.len())
        };
        let src = if !any_ro_file {
            "fs/binfmt_elf.c: load_elf_binary() (elf_read_implies_exec())"
        } else if stack_x {
            "sysdeps/unix/sysv/linux/dl-execstack.c: _dl_make_stack_executable()"
        } else {
            "mm/mmap.c: do_mmap()"
        };
        out.push(finding("rwx", text, Confidence::Likely, src));
    }
    // The format.
    if old_format {
        out.push(finding("format", "the 2.6-era format: anonymous mappings' offset column holds their address (vm_pgoff, set to the address when they were made); today's show_map_vma() prints 0 for them", Confidence::Certain, "fs/proc/task_mmu.c: show_map_vma()"));
    }
    if stats.smaps {
        out.push(finding("format", "smaps: each mapping's line is followed by its memory counters (read and skipped, but VmFlags)", Confidence::Certain, "fs/proc/task_mmu.c: show_smap()"));
    }
    if let Some(n) = stats.truncated {
        out.push(finding(
            "format",
            format!("the input ends in the middle of line {n}: left out"),
            Confidence::Certain,
            "elfmap: maps::Reader",
        ));
    } else if stats.unterminated {
        out.push(finding(
            "format",
            "the last line has no newline: it may have been cut short",
            Confidence::Guess,
            "elfmap: maps::Reader",
        ));
    }
    if ws.iter().any(|w| matches!(w.name, Name::StackTid(_))) {
        out.push(finding(
            "kernel",
            "[stack:TID] names: a kernel from 3.4 to 4.4 (later ones name only the main [stack])",
            Confidence::Likely,
            "fs/proc/task_mmu.c: show_map_vma()",
        ));
    }
    let deleted: Vec<&str> = objs
        .iter()
        .filter(|o| o.deleted)
        .map(|o| o.path.as_str())
        .collect();
    if !deleted.is_empty() {
        out.push(finding("deleted", format!("{} object(s) marked (deleted): their files were deleted or replaced (a package upgrade?) after they were mapped: {}", deleted.len(), deleted.join(", ")), Confidence::Certain, "fs/d_path.c: d_path()"));
    }
    let impossible = ws.iter().filter(|w| w.impossible.is_some()).count();
    if impossible > 0 {
        out.push(finding("impossible", format!("{impossible} line(s) no real process can have (out of order, overlapping, empty or unaligned): the text was edited or joined from several files"), Confidence::Certain, "fs/proc/task_mmu.c: show_map()"));
    }
    layout
}

/// Named holes: where ld.so.cache was.
fn holes(
    ws: &[W],
    objs: &[Obj],
    ctx: &Ctx,
    layout: Option<&'static str>,
    opts: &Options,
) -> Vec<Hole> {
    let mut out = Vec::new();
    if ctx.loader != Some("glibc") || ctx.cache_mapped {
        return out;
    }
    let Some(k) = objs.iter().position(|o| o.role == ObjectRole::Interpreter) else {
        return out;
    };
    let cache_len = if opts.no_files {
        None
    } else {
        let p = objects::host_path(opts.root.as_deref(), "/etc/ld.so.cache");
        std::fs::metadata(p)
            .ok()
            .map(|m| m.len().div_ceil(PAGE) * PAGE)
    };
    let next_to = |j: usize| {
        let w = &ws[j];
        matches!(&w.name, Name::Kernel(n) if n.starts_with("v"))
            || w.pieces.iter().any(|p| p.label == label::LDSO_MALLOC)
            || w.object == Some(k)
    };
    // From the interpreter, through the vDSO and ld.so's first chunk, to the first gap.
    let gap = if layout == Some("legacy") {
        let mut j = *objs[k].lines.last().unwrap_or(&objs[k].lines[0]);
        while j + 1 < ws.len() && ws[j + 1].l().start == ws[j].l().end && next_to(j + 1) {
            j += 1;
        }
        (j + 1 < ws.len()).then(|| (ws[j].l().end, ws[j + 1].l().start))
    } else {
        let mut j = objs[k].lines[0];
        while j > 0 && ws[j - 1].l().end == ws[j].l().start && next_to(j - 1) {
            j -= 1;
        }
        (j > 0).then(|| (ws[j - 1].l().end, ws[j].l().start))
    };
    if let Some((s, e)) = gap.filter(|(s, e)| e > s && e - s <= 1 << 20) {
        let matches = cache_len == Some(e - s);
        out.push(Hole {
            start: s,
            end: e,
            label: "where ld.so.cache was".into(),
            confidence: if matches { Confidence::Likely } else { Confidence::Guess },
            reason: reason(
                format!(
                    "ld.so maps /etc/ld.so.cache next to its first allocations, before the libraries, and unmaps it before the program starts, leaving this hole{}",
                    match cache_len {
                        Some(n) if n == e - s => format!(" ({}: the size of this machine's ld.so.cache)", super::text::human(n)),
                        Some(n) => format!(" (this machine's cache would leave {})", super::text::human(n)),
                        None => String::new(),
                    }
                ),
                "elf/dl-cache.c: _dl_unload_cache()",
            ),
        });
    }
    out
}

/// The regions of the classic picture, from the top down, as `explain` gives them.
fn regions(
    lines: &[AnnotatedLine],
    objects: &[MapsObject],
    bits: u32,
    layout: Option<&str>,
) -> Vec<Region> {
    let mut out = Vec::new();
    let region = |start, end, kind, name: &str, note: &str| Region {
        start,
        end,
        kind,
        name: name.to_string(),
        note: note.to_string(),
        random: None,
    };
    let task_size = if bits == 64 {
        crate::kernel::profile::DEFAULT_MAP_WINDOW
    } else {
        0x1_0000_0000
    };
    if bits == 64 {
        out.push(region(0xffff_8000_0000_0000, u64::MAX, RegionKind::KernelSpace, "kernel space", "the upper canonical half belongs to the kernel; only the [vsyscall] page is visible in maps"));
        out.push(region(task_size, 0xffff_8000_0000_0000, RegionKind::NonCanonical, "non-canonical", "above TASK_SIZE (47-bit user space with 4-level paging), addresses whose bits 47-63 are not all equal cannot be used"));
    }
    for l in lines.iter().filter(|l| l.maps.path == "[stack]") {
        out.push(region(
            l.maps.start,
            l.maps.end,
            RegionKind::Stack,
            "stack",
            "the initial stack: grows down from the stack top; argv, envp and auxv at its top",
        ));
    }
    let program = objects.iter().position(|o| o.role == ObjectRole::Program);
    let is_program = |l: &AnnotatedLine| program.is_some() && l.object == program;
    let fixed_vdso =
        |l: &AnnotatedLine| bits == 32 && l.maps.path == "[vdso]" && l.maps.start == 0xffff_e000;
    let in_mmap: Vec<&AnnotatedLine> = lines
        .iter()
        .filter(|l| {
            l.maps.path != "[stack]"
                && l.maps.path != "[heap]"
                && l.maps.path != "[vsyscall]"
                && !is_program(l)
                && !fixed_vdso(l)
                && l.maps.end <= task_size
        })
        .collect();
    // Split where the program (or the heap) lies inside the area's span.
    let middle = lines
        .iter()
        .filter(|l| is_program(l) || l.maps.path == "[heap]")
        .map(|l| l.maps.start)
        .min();
    let (under, over): (Vec<&AnnotatedLine>, Vec<&AnnotatedLine>) = in_mmap
        .iter()
        .partition(|l| middle.is_some_and(|m| l.maps.end <= m));
    for group in [under, over] {
        if let (Some(lo), Some(hi)) = (
            group.iter().map(|l| l.maps.start).min(),
            group.iter().map(|l| l.maps.end).max(),
        ) {
            out.push(region(lo, hi, RegionKind::MmapArea, "mmap area", if layout == Some("legacy") {
                "the legacy layout: libraries, ld.so, the vDSO, thread stacks, arenas and anonymous memory placed upwards from TASK_UNMAPPED_BASE"
            } else {
                "libraries, ld.so, the vDSO, thread stacks, arenas and anonymous memory, placed downwards from mmap_base"
            }));
        }
    }
    for l in lines.iter().filter(|l| l.maps.path == "[heap]") {
        out.push(region(
            l.maps.start,
            l.maps.end,
            RegionKind::Heap,
            "heap",
            "the brk heap: grows up from start_brk",
        ));
    }
    for l in lines.iter().filter(|l| is_program(l)) {
        let (kind, name) = super::program_region(&l.label, &l.maps.perms);
        let name = if l.sections.is_empty() {
            name.to_string()
        } else {
            format!("{name}: {}", l.sections.join(" "))
        };
        out.push(Region {
            start: l.maps.start,
            end: l.maps.end,
            kind,
            name,
            note: l
                .reasons
                .first()
                .map(|r| r.text.clone())
                .unwrap_or_default(),
            random: None,
        });
    }
    if let Some(lo) = lines.iter().map(|l| l.maps.start).min() {
        let guard = 0x1_0000u64.min(lo);
        if guard > 0 {
            out.push(region(
                0,
                guard,
                RegionKind::NullGuard,
                "never mapped",
                "below vm.mmap_min_addr (65536 on most systems): a NULL pointer dereference faults",
            ));
        }
    }
    out.sort_by(|a, b| b.start.cmp(&a.start).then(b.end.cmp(&a.end)));
    out
}

// ---- The same picture as a plan's ----------------------------------------------------

impl Annotation {
    /// An [`super::Explanation`] holding what the annotation knows (regions, lines with
    /// their labels and sections, objects), for the renderers that draw a plan's (the SVG
    /// picture). What only a plan knows is empty: no random draws, no provenance, and the
    /// top of the stack is the `[stack]` line's end.
    pub fn explanation(&self) -> super::Explanation {
        use super::{Explanation, Line, ObjectView, StackView};
        let program = self
            .objects
            .iter()
            .find(|o| o.role == ObjectRole::Program)
            .map(|o| PathBuf::from(&o.path))
            .unwrap_or_else(|| PathBuf::from(&self.source));
        let objects: Vec<ObjectView> = self
            .objects
            .iter()
            .map(|o| ObjectView {
                role: match o.role {
                    ObjectRole::Program => crate::mm::Role::Program,
                    ObjectRole::Interpreter => crate::mm::Role::Interpreter,
                    ObjectRole::Library => crate::mm::Role::Library,
                },
                path: PathBuf::from(&o.path),
                base: o.base.unwrap_or_else(|| {
                    o.lines
                        .first()
                        .map(|&i| self.lines[i].maps.start)
                        .unwrap_or(0)
                }),
                sections: o.sections.clone(),
                symbols: None,
                random: None,
                scope: None,
                tls_block: None,
                image: None,
                section_headers: Vec::new(),
                in_scope: false,
            })
            .collect();
        let lines = self
            .lines
            .iter()
            .map(|l| Line {
                maps: l.maps.clone(),
                label: l.label.clone(),
                reasons: l.reasons.clone(),
                object: l.object,
                sections: l.sections.clone(),
                origin: crate::mm::Origin::default(),
            })
            .collect();
        let top = self
            .lines
            .iter()
            .find(|l| l.maps.path == "[stack]")
            .map(|l| l.maps.end)
            .unwrap_or(0);
        // As explain names a plan's program.
        let program_kind = self
            .objects
            .iter()
            .find(|o| o.role == ObjectRole::Program)
            .map(|o| match (o.e_type, self.loader.is_some()) {
                (Some("ET_DYN"), true) => "PIE",
                (Some("ET_EXEC"), true) => "non-PIE (ET_EXEC)",
                (Some("ET_DYN"), false) => "static PIE",
                (Some(_), false) => "static non-PIE (ET_EXEC)",
                (_, true) => "dynamically linked",
                (_, false) => "static",
            })
            .unwrap_or("unknown");
        Explanation {
            program,
            stage: if self.lines.iter().any(|l| is_ld_cache(&l.maps.path)) {
                crate::stage::Stage::Loaded
            } else {
                crate::stage::Stage::Entry
            },
            bits: self.bits,
            kind: program_kind.to_string(),
            aslr: self.aslr.unwrap_or(true),
            seed: None,
            topdown: self.layout != Some("legacy"),
            regions: self.regions.clone(),
            lines,
            objects,
            stack: StackView {
                top,
                argc: top,
                argv: top,
                envp: top,
                auxv: top,
                random_bytes: top,
                platform: top,
                arg_strings: top,
                env_strings: top,
                execfn: top,
            },
            draws: Vec::new(),
            totals: self.totals.clone(),
            observed: Some(self.source.clone()),
        }
    }
}

/// Whether `p` is a directory elfmap can look files up under.
pub fn valid_root(p: &Path) -> bool {
    p.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<(String, Confidence)> {
        let opts = Options {
            root: None,
            no_files: true,
        };
        annotate("test", text.as_bytes(), &opts)
            .unwrap()
            .lines
            .into_iter()
            .map(|l| (l.label, l.confidence))
            .collect()
    }

    fn names(text: &str) -> Vec<String> {
        labels(text).into_iter().map(|(l, _)| l).collect()
    }

    /// glibc's own names (glibc.mem.decorate_maps) are ground truth, and the reserve above
    /// a named arena is its reserve.
    #[test]
    fn decorate_maps_names() {
        let text = "\
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 [anon: glibc: malloc arena]
7f0000021000-7f0004000000 ---p 00000000 00:00 0 
7f0010000000-7f0010001000 ---p 00000000 00:00 0 
7f0010001000-7f0010801000 rw-p 00000000 00:00 0 [anon: glibc: pthread stack: 4242]
7f0020000000-7f0020040000 rw-p 00000000 00:00 0 [anon: glibc: malloc]
7f0020040000-7f0020042000 rw-p 00000000 00:00 0 [anon: glibc: loader malloc]
7f0020042000-7f0020043000 rw-p 00000000 00:00 0 [anon:my cache]
";
        let l = labels(text);
        assert_eq!(l[0], (label::ARENA.into(), Confidence::Certain));
        assert_eq!(l[1].0, label::ARENA_RESERVE);
        assert_eq!(l[2].0, label::GUARD);
        assert_eq!(l[3], (label::THREAD_STACK.into(), Confidence::Certain));
        assert_eq!(l[4], (label::MALLOC_CHUNK.into(), Confidence::Certain));
        assert_eq!(l[5], (label::LDSO_MALLOC.into(), Confidence::Certain));
        assert_eq!(l[6], ("named: my cache".into(), Confidence::Certain));
    }

    /// Arenas are told by their alignment: 1 MiB on 32-bit, 64 MiB on 64-bit; a 1 MiB-aligned
    /// pair in a 64-bit process is not one.
    #[test]
    fn arenas_by_alignment() {
        let arena32 = "\
f6700000-f6721000 rw-p 00000000 00:00 0 
f6721000-f6800000 ---p 00000000 00:00 0 
";
        assert_eq!(names(arena32), [label::ARENA, label::ARENA_RESERVE]);
        let not64 = "\
7f0006700000-7f0006721000 rw-p 00000000 00:00 0 
7f0006721000-7f0006800000 ---p 00000000 00:00 0 
";
        assert_eq!(names(not64), [label::ANON, label::RESERVED]);
        // A heap grown to the full 64 MiB and the next one right above it: one line.
        let grown = "\
7f0004000000-7f0008021000 rw-p 00000000 00:00 0 
7f0008021000-7f000c000000 ---p 00000000 00:00 0 
";
        let opts = Options {
            root: None,
            no_files: true,
        };
        let a = annotate("t", grown.as_bytes(), &opts).unwrap();
        assert_eq!(a.lines[0].label, label::ARENA);
        assert_eq!(a.lines[1].label, label::ARENA_RESERVE);
    }

    /// A thread stack is the read-write line right above a PROT_NONE guard.
    #[test]
    fn thread_stacks_and_guards() {
        let text = "\
7f0000000000-7f0000010000 ---p 00000000 00:00 0 
7f0000010000-7f0000110000 rw-p 00000000 00:00 0 
7f0000200000-7f0000201000 ---p 00000000 00:00 0 
7f0000202000-7f0000a02000 rw-p 00000000 00:00 0 
";
        assert_eq!(
            names(text),
            [
                label::GUARD,
                label::THREAD_STACK,
                label::RESERVED,
                label::ANON
            ]
        );
    }

    /// The 2.6 format, [stack:TID], (deleted), smaps, out of order.
    #[test]
    fn formats_and_impossible_lines() {
        let text = "\
08048000-0804d000 r-xp 00000000 08:01 11 /bin/cat
b7f00000-b7f01000 rw-p b7f00000 00:00 0 [stack:1234]
0804d000-0804e000 rw-p 00004000 08:01 11 /bin/cat (deleted)
Rss: 4 kB
VmFlags: rd wr mr mw me ac
bfe8b000-bfea0000 rw-p bfe8b000 00:00 0 [stack]
";
        let opts = Options::default();
        let a = annotate("t", text.as_bytes(), &opts).unwrap();
        assert!(a.old_format);
        assert!(a.input.smaps);
        assert_eq!(a.bits, 32);
        let by_name = |n: &str| a.lines.iter().find(|l| l.maps.path == n).unwrap();
        assert_eq!(by_name("[stack:1234]").label, label::THREAD_STACK);
        let cat: Vec<&AnnotatedLine> = a
            .lines
            .iter()
            .filter(|l| l.maps.path == "/bin/cat")
            .collect();
        assert_eq!(cat.len(), 2);
        assert!(cat[1].deleted);
        assert_eq!(cat[1].vm_flags.as_deref(), Some("rd wr mr mw me ac"));
        // Line 3 came after line 2 but lies below it.
        assert!(cat[1].impossible.is_some());
        assert!(a.findings.iter().any(|f| f.topic == "impossible"));
    }

    /// Not a maps file: the first unreadable line is named.
    #[test]
    fn not_a_maps_file() {
        let opts = Options::default();
        for (text, want) in [
            ("hello\n", "line 1"),
            ("", "no maps line"),
            ("7f00-7f01 rw-p 0 00:00 0\n\nRss 4 kB x\n", "line 3"),
        ] {
            let e = annotate("f", text.as_bytes(), &opts)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("f: not a maps file: "), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }
}
