//! DOC: musl 1.2.3's dynamic loader, from the exec stop to `_dl_debug_state()` and AT_ENTRY.
//!
//! Models `ldso/dynlink.c: __dls3()` for a program the kernel mapped (x86-64), replaying on
//! a copy of the exec-stop address space every system call that changes it (spec/ldso.md
//! section 8):
//!
//! 1. `kernel_mapped_dso()` for the program and for the loader (libc.so): their RELRO
//!    ranges; the program's PT_TLS.
//! 2. `reclaim_gaps()` of both: the unused partial pages around each writable segment are
//!    donated to mallocng (`__malloc_donate()`), whose first metadata allocation grows brk
//!    by two pages and maps the first one PROT_NONE (the 2-page `[heap]`).
//! 3. `load_preload()`, then `load_deps()`: `load_direct_deps()` allocates each object's
//!    `deps` array, and `load_library()` searches each name (`fixup_rpath()` allocates an
//!    object's `$ORIGIN`-expanded RPATH the first time a search uses it; the first search
//!    that reaches the system path reads `/etc/ld-musl-x86_64.path` into a malloc'd
//!    buffer), maps every new object with `map_library()` (one reservation with the first
//!    segment's protection, the other segments MAP_FIXED over it, anonymous .bss pages,
//!    DT_TEXTREL making the whole span `rwx`), donates its gaps and allocates its
//!    `struct dso`.
//! 4. The vDSO joins the list; `queue_ctors()` allocates the constructor queue (more than
//!    three objects); the initial TLS is `builtin_tls` unless the modules need more room
//!    or alignment, then `calloc(tls_size)` (a mapping of its own only when mallocng
//!    needs one).
//! 5. `reloc_all()`: RELRO `mprotect` of every object, the loader's own included (it is
//!    relocated a second time in stage 3), the program last; a TEXTREL object's RELRO
//!    pages become `r--p` inside its `rwxp` span.
//!
//! Every allocation goes through [`mallocng`], a replay of musl's allocator state (size
//! classes, groups, donated memory, metadata areas) precise enough to say which request
//! makes a `brk` or an `mmap`.
//!
//! The "loaded" stop is the only `_dl_debug_state()` call, at the end of `__dls3`.
//! AT_ENTRY follows it with no system call in between: musl runs the constructors later,
//! from `__libc_start_main()` (`__libc_start_init()` -> `do_init_fini()`), so the maps at
//! entry are the maps at the loaded stop ([`MuslLoaded::at_entry`]).
//!
//! Structure sizes (`struct dso` 368, `struct pthread` 200, `builtin_tls` 336, `struct
//! meta` 40, `struct meta_area` header 24 bytes) are those of musl 1.2.3 on x86-64, checked
//! by compiling the same layouts with musl-gcc.
//!
//! N.B. not modelled: i386 musl (not installed here, sizes unverified); the glibc-libc
//! replacement in `load_library()` (needs symbol tables; the resolver does not model it
//! either); RLIMIT_DATA limits on brk; `ld-musl` run as a command. Missing libraries make
//! musl exit 127 before the loaded stop: they are an error here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PF_R, PF_W, PF_X};

use self::mallocng::Mallocng;
use super::open_file;
use crate::addr::{page_align, page_start, PAGE_SIZE};
use crate::deps::{DepGraph, Fs, LoaderEnv};
use crate::elf::{Abi, ElfImage, PT_DYNAMIC, PT_GNU_RELRO, PT_LOAD, PT_PHDR, PT_TLS};
use crate::error::{Error, Result};
use crate::kernel::binfmt_elf::ExecImage;
use crate::mm::{AddressSpace, FileRef, MmError, MmapRequest, Placement, Prot};

/// `sizeof (struct dso)` (ldso/dynlink.c), x86-64, without the name that follows it.
pub const SIZEOF_DSO: u64 = 368;
/// `sizeof (struct pthread)` (src/internal/pthread_impl.h), x86-64.
pub const SIZEOF_PTHREAD: u64 = 200;
/// `sizeof builtin_tls` (ldso/dynlink.c: `struct builtin_tls { char c; struct pthread pt;
/// void *space[16]; }`), x86-64.
pub const SIZEOF_BUILTIN_TLS: u64 = 336;
/// `MIN_TLS_ALIGN` = `offsetof (struct builtin_tls, pt)`.
pub const MIN_TLS_ALIGN: u64 = 8;
/// `countof (builtin_ctor_queue)`.
const BUILTIN_CTOR_QUEUE: u64 = 4;
/// `map_library()`'s header buffer: `Ehdr buf[(896+sizeof(Ehdr))/sizeof(Ehdr)]`; program
/// headers of more than `sizeof buf - sizeof *eh` bytes are read into a malloc'd buffer.
const MAP_LIBRARY_PHDR_BUF: u64 = 896;
/// Pointer size.
const WORD: u64 = 8;

/// What an entry of musl's dso list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DsoKind {
    /// The program (`app`), mapped by the kernel.
    App,
    /// A library `map_library()` mapped.
    Library,
    /// The loader, libc.so (`ldso`), mapped by the kernel; on the list once a name
    /// resolved to it.
    Ldso,
    /// The vDSO (`vdso`), appended last; nothing mapped.
    Vdso,
}

/// The TLS module of an object (`struct tls_module`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlsModule {
    /// `tls_id`.
    pub id: u64,
    /// `image`: where the initialisation image is (`base + p_vaddr`).
    pub image: u64,
    pub len: u64,
    pub size: u64,
    pub align: u64,
    /// `offset`: the block is at TP - offset.
    pub offset: u64,
}

/// One `struct dso` at the loaded stop, in list order.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MuslDso {
    pub kind: DsoKind,
    /// `p->name`: the path string it was opened at (the program: as exec'd).
    pub name: String,
    /// The file as maps shows it (none for the vDSO).
    pub path: Option<PathBuf>,
    /// `base`: load bias.
    pub base: u64,
    /// `map`, `map_len`: the reservation (the kernel's span for kernel-mapped objects).
    pub map: u64,
    pub map_len: u64,
    /// `[base + relro_start, base + relro_end)`, if not empty.
    pub relro: Option<(u64, u64)>,
    pub tls: Option<TlsModule>,
}

/// The initial thread's TLS (`update_tls_size()` and the choice in `__dls3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InitialTls {
    /// `libc.tls_size`, `libc.tls_align`, `tls_cnt`.
    pub tls_size: u64,
    pub tls_align: u64,
    pub tls_cnt: u64,
    /// It fits `builtin_tls` (inside libc.so's .bss): nothing allocated.
    pub builtin: bool,
}

/// musl's result at the `_dl_debug_state()` stop.
#[derive(Clone, Debug)]
pub struct MuslLoaded {
    pub mm: AddressSpace,
    /// The dso list: program, preloads and libraries in load order (libc.so where a name
    /// first resolved to it), the vDSO last.
    pub dsos: Vec<MuslDso>,
    pub tls: InitialTls,
    /// Every system call that changed the address space, strace-like, in order.
    pub syscalls: Vec<String>,
    pub warnings: Vec<String>,
}

impl MuslLoaded {
    /// The address space at AT_ENTRY: `__dls3` jumps there right after
    /// `_dl_debug_state()` (only `argv[0]` and `errno` change); constructors run later,
    /// from `__libc_start_init()`.
    pub fn at_entry(&self) -> AddressSpace {
        self.mm.clone()
    }
}

/// The process as musl's system calls see it: the address space, the personality flag
/// READ_IMPLIES_EXEC (`do_mmap()`, `do_mprotect_pkey()`, `do_brk_flags()` add PROT_EXEC),
/// and a log.
pub struct Task {
    pub mm: AddressSpace,
    pub read_implies_exec: bool,
    pub log: Vec<String>,
}

fn prot_str(p: Prot) -> String {
    if p == Prot::NONE {
        return "PROT_NONE".into();
    }
    let mut v = Vec::new();
    if p.read {
        v.push("PROT_READ");
    }
    if p.write {
        v.push("PROT_WRITE");
    }
    if p.exec {
        v.push("PROT_EXEC");
    }
    v.join("|")
}

impl Task {
    fn prot(&self, prot: Prot) -> Prot {
        prot.read_implies_exec(self.read_implies_exec)
    }

    /// mmap(2), private.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        placement: Placement,
        file: Option<(Arc<FileRef>, u64)>,
    ) -> std::result::Result<u64, MmError> {
        let what = match &file {
            Some((f, off)) => format!(
                "{}, {off:#x}",
                f.path.file_name().unwrap_or_default().to_string_lossy()
            ),
            None => "MAP_ANONYMOUS".into(),
        };
        let fixed = match placement {
            Placement::Fixed => "|MAP_FIXED",
            Placement::FixedNoReplace => "|MAP_FIXED_NOREPLACE",
            Placement::Hint => "",
        };
        let r = match &file {
            Some((_, off)) if !file_mmap_ok(*off, len) => {
                Err(MmError::Invalid { start: addr, len })
            }
            _ => self.mm.mmap(&MmapRequest {
                addr,
                len,
                prot: self.prot(prot),
                placement,
                shared: false,
                file,
            }),
        };
        self.log.push(format!(
            "mmap({addr:#x}, {len:#x}, {}, MAP_PRIVATE{fixed}, {what}) = {}",
            prot_str(prot),
            match &r {
                Ok(a) => format!("{a:#x}"),
                Err(e) => format!("-1 ({e})"),
            }
        ));
        r
    }

    /// mprotect(2).
    pub fn mprotect(&mut self, start: u64, len: u64, prot: Prot) {
        self.log.push(format!(
            "mprotect({start:#x}, {len:#x}, {}) = 0",
            prot_str(prot)
        ));
        let prot = self.prot(prot);
        self.mm.mprotect(start, len, prot);
    }

    /// munmap(2).
    pub fn munmap(&mut self, start: u64, len: u64) {
        self.log.push(format!("munmap({start:#x}, {len:#x}) = 0"));
        self.mm.munmap(start, len);
    }

    /// Models `mm/mmap.c: SYSCALL_DEFINE1(brk)` (6.18) for a probe and for growing: below
    /// `start_brk` it only reports the current break; growing fails unless a page plus the
    /// stack guard gap stays free below the next VMA; then `do_brk_flags()` (anonymous,
    /// `VM_ACCOUNT`). Returns the new break, or the old one on failure. N.B. RLIMIT_DATA is
    /// not checked (unlimited by default).
    pub fn brk(&mut self, brk: u64) -> u64 {
        let r = self.sys_brk(brk);
        self.log.push(format!("brk({brk:#x}) = {r:#x}"));
        r
    }

    fn sys_brk(&mut self, brk: u64) -> u64 {
        let mm = &mut self.mm;
        let origbrk = mm.brk;
        if brk < mm.start_brk {
            return origbrk;
        }
        let (Some(newbrk), Some(oldbrk)) = (page_align(brk), page_align(mm.brk)) else {
            return origbrk;
        };
        if oldbrk == newbrk {
            mm.brk = brk;
            return brk;
        }
        if brk <= mm.brk {
            mm.munmap(newbrk, oldbrk - newbrk);
            mm.brk = brk;
            return brk;
        }
        let gap = mm.layout.stack_guard_gap;
        if let Some(next) = mm.vmas().find(|v| v.end > oldbrk) {
            let start_gap = if next.growsdown {
                next.start.saturating_sub(gap)
            } else {
                next.start
            };
            if newbrk.saturating_add(PAGE_SIZE) > start_gap {
                return origbrk;
            }
        }
        if newbrk > mm.layout.task_size {
            return origbrk;
        }
        mm.vm_brk_flags(oldbrk, newbrk, self.read_implies_exec);
        mm.brk = brk;
        brk
    }
}

/// Models `mm/mmap.c: file_mmap_ok()` for a regular file (`MAX_LFS_FILESIZE` =
/// `LLONG_MAX`): `do_mmap()` refuses with EOVERFLOW a file range that ends beyond it.
fn file_mmap_ok(off: u64, len: u64) -> bool {
    const MAX_LFS_FILESIZE: u64 = i64::MAX as u64;
    let Some(len) = page_align(len) else {
        return false;
    };
    len <= MAX_LFS_FILESIZE && off >> 12 <= (MAX_LFS_FILESIZE - len) >> 12
}

/// `PROT_*` of a segment from its `p_flags`, as `map_library()` computes it.
fn seg_prot(p_flags: u32) -> Prot {
    Prot::new(
        p_flags & PF_R != 0,
        p_flags & PF_W != 0,
        p_flags & PF_X != 0,
    )
}

/// The per-object state `__dls3` keeps (`struct dso`, the fields that matter here).
struct Dso {
    kind: DsoKind,
    /// Index in the resolver's graph (none for the vDSO).
    graph: Option<usize>,
    name: String,
    /// `shortname`: basename of a searched path (`"libc.so"` for the loader).
    shortname: Option<String>,
    path: Option<PathBuf>,
    base: u64,
    map: u64,
    map_len: u64,
    /// `relro_start`, `relro_end` (link-time, page-rounded down).
    relro_start: u64,
    relro_end: u64,
    /// `phdr` known (`reclaim_gaps()` walks nothing without it) and the PT_LOADs.
    loads: Option<Vec<(u64, u64, u32)>>,
    tls: Option<TlsModule>,
}

impl Dso {
    fn summary(&self) -> MuslDso {
        MuslDso {
            kind: self.kind,
            name: self.name.clone(),
            path: self.path.clone(),
            base: self.base,
            map: self.map,
            map_len: self.map_len,
            relro: (self.relro_start != self.relro_end).then(|| {
                (
                    self.base.wrapping_add(self.relro_start),
                    self.base.wrapping_add(self.relro_end),
                )
            }),
            tls: self.tls,
        }
    }
}

/// `MAXP2(a,b)` (ldso/dynlink.c): the larger of two powers of two.
fn maxp2(a: u64, b: u64) -> u64 {
    (a.wrapping_neg() & b.wrapping_neg()).wrapping_neg()
}

/// The PT_TLS of an image as `map_library()` / `__dls3` record it (`len` = p_filesz,
/// `size` = p_memsz, `align` = p_align; last PT_TLS wins). `None` if absent or empty.
fn pt_tls(img: &ElfImage) -> Option<(u64, u64, u64, u64)> {
    img.phdrs
        .iter()
        .rev()
        .find(|p| p.p_type == PT_TLS)
        .filter(|p| p.p_memsz != 0)
        .map(|p| (p.p_vaddr, p.p_filesz, p.p_memsz, p.p_align))
}

/// PT_GNU_RELRO page-rounded as musl keeps it: `relro_start = p_vaddr & -PAGE_SIZE`,
/// `relro_end = (p_vaddr + p_memsz) & -PAGE_SIZE` (last one wins).
fn relro_of(img: &ElfImage) -> (u64, u64) {
    img.phdrs
        .iter()
        .rev()
        .find(|p| p.p_type == PT_GNU_RELRO)
        .map_or((0, 0), |p| {
            (
                page_start(p.p_vaddr),
                page_start(p.p_vaddr.wrapping_add(p.p_memsz)),
            )
        })
}

fn loads_of(img: &ElfImage) -> Vec<(u64, u64, u32)> {
    img.loads()
        .map(|p| (p.p_vaddr, p.p_memsz, p.p_flags))
        .collect()
}

/// The basename of a path (`strrchr(p, '/') + 1`).
fn basename(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_string()
}

/// `load_library()`'s test for the implementation itself: "lib" followed by one of
/// "c.", "pthread.", "rt.", "m.", "dl.", "util.", "xnet." (libc.so, libc.so.6,
/// libpthread.so.0 ...), or exactly the loader's name (the PT_INTERP string).
fn is_self(name: &str, ldso_name: &str) -> bool {
    const RESERVED: [&str; 7] = ["c.", "pthread.", "rt.", "m.", "dl.", "util.", "xnet."];
    name.strip_prefix("lib")
        .is_some_and(|rest| RESERVED.iter().any(|r| rest.starts_with(r)))
        || name == ldso_name
}

/// `NAME_MAX`; `load_library()`'s `buf` is `2*NAME_MAX+2` bytes.
const NAME_MAX: usize = 255;
const LOAD_LIBRARY_BUF: usize = 2 * NAME_MAX + 2;
/// `load_library()`'s default system path.
const DEFAULT_SYS_PATH: &str = "/lib:/usr/local/lib:/usr/lib";

/// What `path_open()` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Opened {
    /// -1: nothing found.
    Miss,
    /// An fd: the candidate path that opened.
    Found(String),
    /// -2 (or another negative value): stop searching.
    Inhibit,
}

/// The loader's state while `__dls3` runs.
struct Dls3<'g> {
    graph: &'g DepGraph,
    env: &'g LoaderEnv,
    fs: Fs,
    task: Task,
    malloc: Mallocng,
    /// The dso list, in list order.
    dsos: Vec<Dso>,
    /// graph index -> position in `dsos`, once on the list.
    on_list: Vec<Option<usize>>,
    /// The loader until a name resolves to it.
    ldso: Option<Dso>,
    /// `ldso.name`: the PT_INTERP string.
    ldso_name: String,
    /// `env_path` (LD_LIBRARY_PATH unless secure).
    env_path: Option<String>,
    /// `sys_path`, once read.
    sys_path: Option<String>,
    /// `p->rpath` per graph object (`None` until `fixup_rpath()` set it).
    rpath: Vec<Option<String>>,
    /// `tls_cnt`, `tls_offset`, `tls_align`.
    tls_cnt: u64,
    tls_offset: u64,
    tls_align: u64,
    next_open_id: u32,
    program_path: PathBuf,
    tls_result: Option<InitialTls>,
    warnings: Vec<String>,
}

/// Models musl 1.2.3 `ldso/dynlink.c: __dls3()` for a program the kernel mapped, up to the
/// `_dl_debug_state()` call (see the module documentation for the steps). `graph` says
/// which file each name resolves to; the search itself is replayed here too, because
/// `fixup_rpath()` and the first use of the system path allocate.
pub fn dls3(exec: &ExecImage, graph: &DepGraph, env: &LoaderEnv) -> Result<MuslLoaded> {
    let program_path = exec.program_file.path.clone();
    let interp = exec
        .interp
        .as_ref()
        .ok_or_else(|| Error::load_failed(&program_path, "no PT_INTERP: nothing to load"))?;
    if exec.abi != Abi::X86_64 {
        return Err(Error::Usage {
            path: program_path,
            reason: "musl's loader is modelled for x86-64 only".into(),
        });
    }
    if let Some(m) = graph.missing.first() {
        let by = graph
            .objects
            .get(m.needed_by)
            .map(|o| o.path.display().to_string())
            .unwrap_or_default();
        return Err(Error::load_failed(
            &program_path,
            format!(
                "Error loading shared library {}: No such file or directory (needed by {by}); \
                 musl exits with status 127 before the loaded stop",
                m.name
            ),
        ));
    }
    if graph.objects.is_empty() {
        return Err(Error::load_failed(&program_path, "empty load list"));
    }
    let n = graph.objects.len();
    let mut d = Dls3 {
        graph,
        env,
        fs: env.fs(),
        task: Task {
            mm: exec.mm.clone(),
            read_implies_exec: exec.read_implies_exec,
            log: Vec::new(),
        },
        malloc: Mallocng::default(),
        dsos: Vec::with_capacity(n + 1),
        on_list: vec![None; n],
        ldso: None,
        ldso_name: interp.requested.to_string_lossy().into_owned(),
        env_path: if env.secure {
            None
        } else {
            env.ld_library_path.clone()
        },
        sys_path: None,
        rpath: vec![None; n],
        tls_cnt: 0,
        tls_offset: 0,
        tls_align: MIN_TLS_ALIGN,
        next_open_id: exec.next_open_id,
        program_path,
        tls_result: None,
        warnings: graph.warnings.clone(),
    };

    // The program (`app`): kernel_mapped_dso(), its TLS (tls_id 1).
    let host = &graph.objects[0].host_path;
    let app_img = ElfImage::open(if host.as_os_str().is_empty() {
        &exec.program_file.path
    } else {
        host
    })?;
    if app_img.phdr(PT_PHDR).is_none() && exec.load_bias != 0 {
        d.warnings
            .push("musl model: the program has no PT_PHDR; musl would take its base as 0".into());
    }
    let mut app = kernel_mapped_dso(&app_img, exec.load_bias, DsoKind::App);
    app.graph = Some(0);
    app.name = graph.objects[0].path.to_string_lossy().into_owned();
    app.path = Some(exec.program_file.path.clone());
    if let Some((vaddr, len, size, align)) = pt_tls(&app_img) {
        let image = app.base.wrapping_add(vaddr);
        let offset =
            size.wrapping_add(image.wrapping_add(size).wrapping_neg() & align.wrapping_sub(1));
        app.tls = Some(TlsModule {
            id: 1,
            image,
            len,
            size,
            align,
            offset,
        });
        d.tls_cnt = 1;
        d.tls_offset = offset;
        d.tls_align = maxp2(d.tls_align, align);
    }
    d.dsos.push(app);
    d.on_list[0] = Some(0);

    // The loader, as `__dls2` found it (name and shortname "libc.so"; `__dls3` sets the
    // name to the PT_INTERP string).
    let ldso_img = ElfImage::open(&interp.path)?;
    let mut ldso = kernel_mapped_dso(&ldso_img, interp.load_addr, DsoKind::Ldso);
    ldso.graph = graph.interp_index;
    ldso.name = d.ldso_name.clone();
    ldso.shortname = Some("libc.so".into());
    ldso.path = exec
        .mm
        .find(interp.load_addr)
        .and_then(|v| match &v.backing {
            crate::mm::Backing::File { file, .. } => Some(file.path.clone()),
            _ => None,
        })
        .or_else(|| Some(interp.path.clone()));

    // "Donate unused parts of app and library mapping to malloc."
    d.reclaim_gaps_of(0);
    d.reclaim_gaps(&ldso);
    d.ldso = Some(ldso);
    d.run(exec)?;
    Ok(d.finish())
}

/// Models `ldso/dynlink.c: kernel_mapped_dso()`: the span of the PT_LOADs and the RELRO
/// range of an object the kernel mapped at `base`.
fn kernel_mapped_dso(img: &ElfImage, base: u64, kind: DsoKind) -> Dso {
    let loads = loads_of(img);
    let min_addr = loads.iter().map(|l| l.0).min().unwrap_or(0);
    let max_addr = loads
        .iter()
        .map(|l| l.0.wrapping_add(l.1))
        .max()
        .unwrap_or(0);
    let min_addr = page_start(min_addr);
    let max_addr = page_align(max_addr).unwrap_or(max_addr);
    let (relro_start, relro_end) = relro_of(img);
    Dso {
        kind,
        graph: None,
        name: String::new(),
        shortname: None,
        path: None,
        base,
        map: base.wrapping_add(min_addr),
        map_len: max_addr.wrapping_sub(min_addr),
        relro_start,
        relro_end,
        loads: Some(loads),
        tls: None,
    }
}

impl Dls3<'_> {
    fn err(&self, e: MmError) -> Error {
        Error::load_failed(
            &self.program_path,
            format!("out of memory in musl's loader: {e}"),
        )
    }

    fn malloc(&mut self, len: u64, what: &str) -> Result<mallocng::Slot> {
        self.task.log.push(format!("# malloc({len}) {what}"));
        self.malloc.malloc(&mut self.task, len).ok_or_else(|| {
            Error::load_failed(
                &self.program_path,
                format!("musl's loader: out of memory allocating {len} bytes ({what})"),
            )
        })
    }

    /// `calloc(m, n)` (src/malloc/calloc.c): `malloc(m * n)`, then clearing.
    fn calloc(&mut self, m: u64, n: u64, what: &str) -> Result<mallocng::Slot> {
        let Some(len) = m.checked_mul(n) else {
            return Err(Error::load_failed(
                &self.program_path,
                format!("calloc overflow ({what})"),
            ));
        };
        self.malloc(len, what)
    }

    /// The steps of `__dls3` after the two `reclaim_gaps()` calls.
    fn run(&mut self, exec: &ExecImage) -> Result<()> {
        // load_preload(): names separated by white space (isspace) or ':', no `needed_by`.
        if !self.env.secure {
            if let Some(s) = self.env.ld_preload.clone() {
                for name in s
                    .split(|c: char| c.is_ascii_whitespace() || c == '\x0b' || c == ':')
                    .filter(|n| !n.is_empty())
                {
                    self.load_library(name, None, None)?;
                }
            }
        }

        // load_deps(&app): load_direct_deps() for every object on the list, in list order
        // (the list grows meanwhile; libc.so has `no_deps`).
        let mut i = 0;
        while i < self.dsos.len() {
            if self.dsos[i].kind != DsoKind::Ldso {
                if let Some(g) = self.dsos[i].graph {
                    self.load_direct_deps(i, g)?;
                }
            }
            i += 1;
        }
        if let Some(i) = (0..self.graph.objects.len()).find(|&i| self.on_list[i].is_none()) {
            self.warnings.push(format!(
                "musl model: {} was resolved but never loaded",
                self.graph.objects[i].path.display()
            ));
        }

        // The vDSO, last, if the kernel provided one.
        if exec.vdso_base != 0 {
            self.dsos.push(Dso {
                kind: DsoKind::Vdso,
                graph: None,
                name: String::new(),
                shortname: Some("linux-gate.so.1".into()),
                path: None,
                base: 0,
                map: exec.vdso_base,
                map_len: 0,
                relro_start: 0,
                relro_end: 0,
                loads: None,
                tls: None,
            });
        }

        self.queue_ctors()?;
        let tls = self.update_tls_size();
        if !tls.builtin {
            self.calloc(tls.tls_size, 1, "initial thread-local storage")?;
        }
        self.tls_result = Some(tls);

        // reloc_all(app.next); reloc_all(&app): the vDSO is already `relocated`.
        let order: Vec<usize> = (1..self.dsos.len()).chain(std::iter::once(0)).collect();
        for i in order {
            self.reloc_all_one(i);
        }
        Ok(())
    }

    fn finish(self) -> MuslLoaded {
        MuslLoaded {
            mm: self.task.mm,
            dsos: self.dsos.iter().map(Dso::summary).collect(),
            tls: self.tls_result.unwrap_or(InitialTls {
                tls_size: 0,
                tls_align: MIN_TLS_ALIGN,
                tls_cnt: 0,
                builtin: true,
            }),
            syscalls: self.task.log,
            warnings: self.warnings,
        }
    }

    /// Models `ldso/dynlink.c: load_direct_deps()` for list entry `li` (graph object `g`):
    /// the `deps` array (`builtin_deps` for the program with fewer than two entries, else
    /// `calloc(cnt+1, sizeof (struct dso *))`, the program's count including everything
    /// already on the list after it, i.e. the preloads), then `load_library()` for each
    /// DT_NEEDED.
    fn load_direct_deps(&mut self, li: usize, g: usize) -> Result<()> {
        let o = &self.graph.objects[g];
        let names: Vec<String> = o
            .dynamic
            .as_ref()
            .map(|d| d.needed.clone())
            .unwrap_or_default();
        let targets = o.needed.clone();
        let mut cnt = names.len() as u64;
        if li == 0 {
            cnt += self.dsos.len() as u64 - 1;
        }
        if !(li == 0 && cnt < 2) {
            let what = format!("deps of {}", o.path.display());
            self.calloc(cnt + 1, WORD, &what)?;
        }
        for (j, name) in names.iter().enumerate() {
            self.load_library(name, Some(g), targets.get(j).copied())?;
        }
        Ok(())
    }

    /// Models `ldso/dynlink.c: load_library(name, needed_by)`: the loader itself for libc's
    /// names; a '/' name opened as is; otherwise the shortname check, then the search
    /// (`LD_LIBRARY_PATH`, the RPATH of `needed_by` and its ancestors, the system path);
    /// an inode already on the list is returned (getting a shortname if a search found it);
    /// a new object is mapped (`map_library()`), its gaps donated (`reclaim_gaps()`), its
    /// `struct dso` allocated (`calloc(1, sizeof *p + strlen(pathname) + 1)`) and its TLS
    /// placed. `target` is the graph object the resolver found for this name (for
    /// preloads: found by inode here).
    fn load_library(
        &mut self,
        name: &str,
        needed_by: Option<usize>,
        target: Option<usize>,
    ) -> Result<Option<usize>> {
        if name.is_empty() {
            return Ok(None);
        }
        if is_self(name, &self.ldso_name) {
            if let Some(mut l) = self.ldso.take() {
                let k = self.graph.interp_index;
                l.graph = k;
                if let Some(k) = k {
                    self.on_list[k] = Some(self.dsos.len());
                }
                self.dsos.push(l);
            }
            return Ok(self.graph.interp_index);
        }
        let searched = !name.contains('/');
        let pathname = if searched {
            if let Some(d) = self.dsos[1..]
                .iter()
                .find(|d| d.shortname.as_deref() == Some(name))
            {
                return Ok(d.graph);
            }
            if name.len() > NAME_MAX {
                return Ok(None);
            }
            match self.search(name, needed_by)? {
                Some(p) => p,
                None => return Ok(None),
            }
        } else {
            name.to_string()
        };
        let k = match target {
            Some(t) => t,
            None => match self.graph_object_at(&pathname) {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        if let Some(pos) = self.on_list[k] {
            // Same (st_dev, st_ino) as an object on the list.
            let d = &mut self.dsos[pos];
            if searched && d.shortname.is_none() && d.kind == DsoKind::Library {
                d.shortname = Some(basename(&d.name));
            }
            return Ok(Some(k));
        }
        if Some(k) == self.graph.interp_index {
            return Ok(Some(k));
        }
        let obj = &self.graph.objects[k];
        if obj.path.to_string_lossy() != pathname {
            self.warnings.push(format!(
                "musl model: the search opened {pathname}, the resolver says {}",
                obj.path.display()
            ));
        }
        let host = obj.host_path.clone();
        let img: Arc<ElfImage> = match &obj.image {
            Some(i) => i.clone(),
            None => Arc::new(ElfImage::open(&host)?),
        };
        let file = {
            let id = self.next_open_id;
            self.next_open_id += 1;
            open_file(&host, id)?
        };
        let dt_textrel = obj.dynamic.as_ref().is_some_and(|d| d.dt_textrel);
        let mut dso = self.map_library(&img, dt_textrel, &host, file)?;
        dso.graph = Some(k);
        dso.name = pathname.clone();
        dso.shortname = searched.then(|| basename(&pathname));
        if let Some(f) = self.task.mm.find(dso.map) {
            if let crate::mm::Backing::File { file, .. } = &f.backing {
                dso.path = Some(file.path.clone());
            }
        }
        self.reclaim_gaps(&dso);
        self.calloc(
            1,
            SIZEOF_DSO + pathname.len() as u64 + 1,
            &format!("struct dso {pathname}"),
        )?;
        if let Some((vaddr, len, size, align)) = pt_tls(&img) {
            let image = dso.base.wrapping_add(vaddr);
            if image != 0 {
                self.tls_cnt += 1;
                self.tls_align = maxp2(self.tls_align, align);
                let am1 = align.wrapping_sub(1);
                self.tls_offset = self.tls_offset.wrapping_add(size).wrapping_add(am1);
                self.tls_offset = self
                    .tls_offset
                    .wrapping_sub(self.tls_offset.wrapping_add(image) & am1);
                dso.tls = Some(TlsModule {
                    id: self.tls_cnt,
                    image,
                    len,
                    size,
                    align,
                    offset: self.tls_offset,
                });
            }
        }
        self.on_list[k] = Some(self.dsos.len());
        self.dsos.push(dso);
        Ok(Some(k))
    }

    /// The graph object that is the file at `pathname` (by st_dev and st_ino), for names
    /// the resolver's graph does not index (the preloads).
    fn graph_object_at(&self, pathname: &str) -> Option<usize> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.fs.host(pathname)).ok()?;
        (1..self.graph.objects.len()).find(|&i| {
            let o = &self.graph.objects[i];
            o.dev == m.dev() && o.ino == m.ino()
        })
    }

    /// The search part of `load_library()` for a bare name: `path_open()` over
    /// `env_path`, then for `needed_by` and each of its `needed_by` ancestors
    /// `fixup_rpath()` and `path_open()` over its rpath, then the system path (read from
    /// `<prefix>/etc/ld-musl-x86_64.path` the first time). The pathname that opened.
    fn search(&mut self, name: &str, needed_by: Option<usize>) -> Result<Option<String>> {
        let mut fd = Opened::Miss;
        if let Some(ep) = self.env_path.clone() {
            fd = self.path_open(name, &ep);
        }
        let mut p = needed_by;
        let mut guard = 0;
        while let (Opened::Miss, Some(pi)) = (&fd, p) {
            if !self.fixup_rpath(pi)? {
                fd = Opened::Inhibit;
            }
            if let Some(rp) = self.rpath[pi].clone() {
                fd = self.path_open(name, &rp);
            }
            p = if pi == 0 {
                None
            } else {
                self.graph.objects[pi].loader
            };
            guard += 1;
            if guard > self.graph.objects.len() {
                break;
            }
        }
        if fd == Opened::Miss {
            let sp = self.sys_path()?;
            fd = self.path_open(name, &sp);
        }
        Ok(match fd {
            Opened::Found(p) => Some(p),
            _ => None,
        })
    }

    /// Models `ldso/dynlink.c: path_open()`: the elements of `s` (separated by ':' or
    /// '\n', empty ones skipped) + "/" + name, skipping candidates longer than the buffer;
    /// ENOENT, ENOTDIR, EACCES and ENAMETOOLONG go on, any other error stops the search.
    fn path_open(&self, name: &str, s: &str) -> Opened {
        for dir in s.split([':', '\n']).filter(|d| !d.is_empty()) {
            let cand = format!("{dir}/{name}");
            if cand.len() >= LOAD_LIBRARY_BUF {
                continue;
            }
            match std::fs::File::open(self.fs.host(&cand)) {
                Ok(_) => return Opened::Found(cand),
                Err(e) => match e.raw_os_error() {
                    Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::ENAMETOOLONG) => {}
                    _ => return Opened::Inhibit,
                },
            }
        }
        Opened::Miss
    }

    /// Models `ldso/dynlink.c: fixup_rpath()` for graph object `i`: DT_RUNPATH (else
    /// DT_RPATH) as is if it has no '$'; with only `$ORIGIN`/`${ORIGIN}` tokens,
    /// `malloc(strlen(rpath_orig) + n*l + 1)` for the expansion (n tokens, l = length of
    /// the origin directory: the program's from `/proc/self/exe`, not in secure mode; a
    /// library's from its pathname). Any other '$' token leaves it without rpath. False
    /// where musl returns -1 (inhibit the search): only a failed allocation here.
    fn fixup_rpath(&mut self, i: usize) -> Result<bool> {
        if self.rpath[i].is_some() {
            return Ok(true);
        }
        let o = &self.graph.objects[i];
        let Some(orig) = o
            .dynamic
            .as_ref()
            .and_then(|d| d.runpath.clone().or_else(|| d.rpath.clone()))
        else {
            return Ok(true);
        };
        if !orig.contains('$') {
            self.rpath[i] = Some(orig);
            return Ok(true);
        }
        let mut n = 0u64;
        let mut rest = orig.as_str();
        while let Some(p) = rest.find('$') {
            let t = &rest[p..];
            if !(t.starts_with("$ORIGIN") || t.starts_with("${ORIGIN}")) {
                return Ok(true);
            }
            rest = &t[1..];
            n += 1;
        }
        let secure = self.env.secure;
        let origin_src = if i == 0 {
            // readlink("/proc/self/exe"): the canonical program path.
            if secure {
                return Ok(true);
            }
            let exe = o.realpath.to_string_lossy().into_owned();
            if exe.len() >= LOAD_LIBRARY_BUF {
                return Ok(true);
            }
            exe
        } else {
            o.path.to_string_lossy().into_owned()
        };
        let origin = match origin_src.rfind('/') {
            Some(t) => origin_src[..t].to_string(),
            None => ".".to_string(),
        };
        if secure && !origin.starts_with('/') {
            return Ok(true);
        }
        let l = origin.len() as u64;
        let what = format!("fixup_rpath {}", o.path.display());
        if self.malloc(orig.len() as u64 + n * l + 1, &what).is_err() {
            return Ok(false);
        }
        self.rpath[i] = Some(crate::deps::musl::substitute_origin(&orig, &origin));
        Ok(true)
    }

    /// The `sys_path` part of `load_library()`, the first time a search gets there:
    /// `<prefix>/etc/ld-musl-x86_64.path` (prefix = the loader's name up to its
    /// second-to-last '/') read into `malloc(st_size + 1)` (freed again if the read
    /// fails); a missing file gives the default path, another open error an empty one.
    fn sys_path(&mut self) -> Result<String> {
        if let Some(s) = &self.sys_path {
            return Ok(s.clone());
        }
        let file = crate::deps::musl::path_file(&self.ldso_name, self.env.abi);
        let host = self.fs.host(&file).into_owned();
        let s = match std::fs::File::open(&host) {
            Ok(f) => {
                let size = f.metadata().map_or(0, |m| m.len());
                let buf = self.malloc(size + 1, "sys_path")?;
                match std::fs::read(&host) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(_) => {
                        self.task.log.push("# free(sys_path)".into());
                        self.malloc.free(&mut self.task, buf);
                        String::new()
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_SYS_PATH.to_string(),
            Err(_) => String::new(),
        };
        self.sys_path = Some(s.clone());
        Ok(s)
    }

    /// Models `ldso/dynlink.c: map_library()` (the non-FDPIC, MMU branch): the reservation
    /// `mmap(addr_min, addr_max - addr_min + off_start, prot of the lowest segment,
    /// MAP_PRIVATE, fd, off_start)` (`addr_min` is a hint; an ET_EXEC must get it), every
    /// other PT_LOAD `MAP_FIXED` from the file over it, the anonymous pages past a writable
    /// segment's file image, and `mprotect(map, map_len, RWX)` for DT_TEXTREL. Program
    /// headers that do not fit the 896-byte header buffer are read into a malloc'd buffer,
    /// freed at the end. Gaps between segments keep the reservation's protection and file
    /// offsets; p_align is not looked at.
    fn map_library(
        &mut self,
        img: &ElfImage,
        dt_textrel: bool,
        host: &Path,
        file: Arc<FileRef>,
    ) -> Result<Dso> {
        let noexec =
            |why: &str| Error::load_failed(host, format!("musl's map_library: {why} (ENOEXEC)"));
        let e_type = img.e_type();
        if e_type != ET_DYN && e_type != ET_EXEC {
            return Err(noexec("neither ET_DYN nor ET_EXEC"));
        }
        let phsize = u64::from(img.header.e_phentsize) * u64::from(img.header.e_phnum);
        let allocated_buf = if phsize > MAP_LIBRARY_PHDR_BUF {
            Some(self.malloc(phsize, "map_library program headers")?)
        } else {
            None
        };
        let mut dyn_vaddr = 0u64;
        let mut addr_min = u64::MAX;
        let mut addr_max = 0u64;
        let mut off_start = 0u64;
        let mut prot = Prot::NONE;
        for ph in &img.phdrs {
            if ph.p_type == PT_DYNAMIC {
                dyn_vaddr = ph.p_vaddr;
            }
            if ph.p_type != PT_LOAD {
                continue;
            }
            if ph.p_vaddr < addr_min {
                addr_min = ph.p_vaddr;
                off_start = ph.p_offset;
                prot = seg_prot(ph.p_flags);
            }
            addr_max = addr_max.max(ph.p_vaddr.wrapping_add(ph.p_memsz));
        }
        if dyn_vaddr == 0 {
            return Err(noexec("no PT_DYNAMIC"));
        }
        if addr_min == u64::MAX {
            return Err(noexec("no PT_LOAD"));
        }
        let bad = || Error::bad_elf(host, "PT_LOAD addresses overflow");
        let addr_max = page_align(addr_max).ok_or_else(bad)?;
        let addr_min = page_start(addr_min);
        let off_start = page_start(off_start);
        let map_len = addr_max
            .checked_sub(addr_min)
            .and_then(|l| l.checked_add(off_start))
            .ok_or_else(bad)?;
        let map = self
            .task
            .mmap(
                addr_min,
                map_len,
                prot,
                Placement::Hint,
                Some((file.clone(), off_start)),
            )
            .map_err(|e| self.err(e))?;
        if e_type != ET_DYN && addr_min != 0 && map != addr_min {
            self.task.munmap(map, map_len);
            return Err(Error::load_failed(
                host,
                format!("musl's map_library: ET_EXEC wants {addr_min:#x}, got {map:#x} (EBUSY)"),
            ));
        }
        let base = map.wrapping_sub(addr_min);
        // `dso->phdr` is set only if a PT_LOAD's file image holds the program headers.
        let e_phoff = img.header.e_phoff;
        let phdr_mapped = img.loads().any(|ph| {
            e_phoff >= ph.p_offset
                && e_phoff.saturating_add(phsize) <= ph.p_offset.saturating_add(ph.p_filesz)
        });
        for ph in img.loads() {
            let this_min = page_start(ph.p_vaddr);
            let this_max = page_align(ph.p_vaddr.wrapping_add(ph.p_memsz)).ok_or_else(bad)?;
            let off = page_start(ph.p_offset);
            let sprot = seg_prot(ph.p_flags);
            if this_min != addr_min && this_max > this_min {
                self.task
                    .mmap(
                        base.wrapping_add(this_min),
                        this_max - this_min,
                        sprot,
                        Placement::Fixed,
                        Some((file.clone(), off)),
                    )
                    .map_err(|e| self.err(e))?;
            }
            if ph.p_memsz > ph.p_filesz && ph.p_flags & PF_W != 0 {
                let brk = base.wrapping_add(ph.p_vaddr).wrapping_add(ph.p_filesz);
                let pgbrk = page_align(brk).ok_or_else(bad)?;
                let end = base.wrapping_add(this_max);
                if pgbrk.wrapping_sub(base) < this_max && end > pgbrk {
                    self.task
                        .mmap(pgbrk, end - pgbrk, sprot, Placement::Fixed, None)
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        if dt_textrel {
            self.task.mprotect(map, map_len, Prot::RWX);
        }
        if let Some(b) = allocated_buf {
            self.task
                .log
                .push("# free(map_library program headers)".into());
            self.malloc.free(&mut self.task, b);
        }
        let (relro_start, relro_end) = relro_of(img);
        Ok(Dso {
            kind: DsoKind::Library,
            graph: None,
            name: String::new(),
            shortname: None,
            path: None,
            base,
            map,
            map_len,
            relro_start,
            relro_end,
            loads: phdr_mapped.then(|| loads_of(img)),
            tls: None,
        })
    }

    fn reclaim_gaps_of(&mut self, i: usize) {
        let loads = self.dsos[i].loads.clone();
        let (base, rs, re) = (
            self.dsos[i].base,
            self.dsos[i].relro_start,
            self.dsos[i].relro_end,
        );
        self.reclaim_loads(loads.as_deref(), base, rs, re);
    }

    /// Models `ldso/dynlink.c: reclaim_gaps()`: for every writable, readable PT_LOAD,
    /// `reclaim()` the part of its first page before `p_vaddr` and the rest of its last
    /// page after `p_vaddr + p_memsz`.
    fn reclaim_gaps(&mut self, dso: &Dso) {
        self.reclaim_loads(
            dso.loads.as_deref(),
            dso.base,
            dso.relro_start,
            dso.relro_end,
        );
    }

    fn reclaim_loads(&mut self, loads: Option<&[(u64, u64, u32)]>, base: u64, rs: u64, re: u64) {
        for &(vaddr, memsz, flags) in loads.unwrap_or_default() {
            if flags & (PF_R | PF_W) != (PF_R | PF_W) {
                continue;
            }
            self.reclaim(base, rs, re, page_start(vaddr), vaddr);
            let end = vaddr.wrapping_add(memsz);
            self.reclaim(base, rs, re, end, page_align(end).unwrap_or(end));
        }
    }

    /// Models `ldso/dynlink.c: reclaim()`: clip `[start, end)` out of the RELRO range,
    /// then `__malloc_donate()` it.
    fn reclaim(&mut self, base: u64, rs: u64, re: u64, mut start: u64, mut end: u64) {
        if start >= rs && start < re {
            start = re;
        }
        if end >= rs && end < re {
            end = rs;
        }
        if start >= end {
            return;
        }
        let a = base.wrapping_add(start);
        self.task
            .log
            .push(format!("# __malloc_donate({a:#x}, {:#x})", end - start));
        self.malloc.donate(&mut self.task, a, end - start);
    }

    /// Models `ldso/dynlink.c: queue_ctors(&app)` at start-up: a queue of one slot per
    /// object on the list (vDSO included) plus a terminator, `builtin_ctor_queue` if that
    /// is at most four, else `calloc(cnt, sizeof (struct dso *))`.
    fn queue_ctors(&mut self) -> Result<()> {
        let cnt = self.dsos.len() as u64 + 1;
        if cnt > BUILTIN_CTOR_QUEUE {
            self.calloc(cnt, WORD, "constructor queue")?;
        }
        Ok(())
    }

    /// Models `ldso/dynlink.c: update_tls_size()` and the `builtin_tls` test of `__dls3`.
    fn update_tls_size(&self) -> InitialTls {
        let a = self.tls_align;
        let raw = (1 + self.tls_cnt)
            .wrapping_mul(WORD)
            .wrapping_add(self.tls_offset)
            .wrapping_add(SIZEOF_PTHREAD)
            .wrapping_add(a.wrapping_mul(2));
        let tls_size = raw.wrapping_add(a).wrapping_sub(1) & a.wrapping_neg();
        InitialTls {
            tls_size,
            tls_align: a,
            tls_cnt: self.tls_cnt,
            builtin: !(tls_size > SIZEOF_BUILTIN_TLS || a > MIN_TLS_ALIGN),
        }
    }

    /// The RELRO part of `ldso/dynlink.c: reloc_all()` for list entry `i`:
    /// `mprotect(base + relro_start, relro_end - relro_start, PROT_READ)`.
    fn reloc_all_one(&mut self, i: usize) {
        let d = &self.dsos[i];
        if d.kind == DsoKind::Vdso || d.relro_start == d.relro_end {
            return;
        }
        let start = d.base.wrapping_add(d.relro_start);
        let len = d.relro_end.wrapping_sub(d.relro_start);
        self.task.mprotect(start, len, Prot::R);
    }
}

pub mod mallocng {
    //! DOC: musl 1.2.3's allocator (src/malloc/mallocng/) as far as the address space sees
    //! it: which request grows brk (metadata areas), which maps a group or a single
    //! allocation, and which frees unmap. The state is replayed exactly: size classes,
    //! the active group lists (circular, rotated as `try_avail()` does), `usage_by_class`,
    //! groups nested in other groups' slots, donated memory, the bounce counters. Slot
    //! addresses inside groups are not tracked; they never reach the kernel.

    use super::Task;
    use crate::mm::{Placement, Prot};

    /// `UNIT`, `IB`, `MMAP_THRESHOLD` (src/malloc/mallocng/meta.h).
    pub const UNIT: u64 = 16;
    pub const IB: u64 = 4;
    pub const MMAP_THRESHOLD: u64 = 131052;
    /// `PGSZ` (the page size).
    pub const PGSZ: u64 = 4096;
    /// `(4096 - sizeof (struct meta_area)) / sizeof (struct meta)`: metas per area page.
    pub const META_AREA_SLOTS: u64 = (4096 - 24) / 40;

    /// `size_classes[]` (malloc.c), in units of 16 bytes.
    pub const SIZE_CLASSES: [u64; 48] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25, 31, 36, 42, 50, 63, 72, 84, 102, 127,
        146, 170, 204, 255, 292, 340, 409, 511, 584, 682, 818, 1023, 1169, 1364, 1637, 2047, 2340,
        2730, 3276, 4095, 4680, 5460, 6552, 8191,
    ];
    /// `small_cnt_tab[][3]`, `med_cnt_tab[4]` (malloc.c).
    const SMALL_CNT_TAB: [[u64; 3]; 9] = [
        [30, 30, 30],
        [31, 15, 15],
        [20, 10, 10],
        [31, 15, 7],
        [25, 12, 6],
        [21, 10, 5],
        [18, 8, 4],
        [31, 15, 7],
        [28, 14, 6],
    ];
    const MED_CNT_TAB: [u64; 4] = [28, 24, 20, 32];

    /// An allocation: its group and slot index.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Slot {
        pub meta: usize,
        pub idx: u32,
    }

    /// `struct meta` plus the group header's `active_idx`.
    #[derive(Clone, Copy, Debug, Default)]
    struct Meta {
        prev: Option<usize>,
        next: Option<usize>,
        /// Address of the group, for mmapped ones (`mem`).
        mem: u64,
        avail_mask: u32,
        freed_mask: u32,
        last_idx: u32,
        freeable: bool,
        sizeclass: usize,
        /// Pages of an mmapped group, 0 for nested or donated ones.
        maplen: u64,
        /// `mem->active_idx`.
        active_idx: u32,
        /// The slot of another group that holds this one (`maplen == 0`, freeable).
        parent: Option<Slot>,
    }

    /// `ctx.brk`: not probed yet, the current end, or -1 after a failed brk.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    enum BrkState {
        #[default]
        Unset,
        At(u64),
        Failed,
    }

    /// `struct malloc_context ctx` (meta.h), the fields that decide system calls.
    #[derive(Clone, Debug)]
    pub struct Mallocng {
        metas: Vec<Meta>,
        free_meta_head: Option<usize>,
        avail_meta_count: u64,
        avail_meta_area_count: u64,
        meta_alloc_shift: u32,
        avail_meta_areas: u64,
        active: [Option<usize>; 48],
        usage_by_class: [u64; 48],
        unmap_seq: [u8; 32],
        bounces: [u8; 32],
        seq: u8,
        brk: BrkState,
        mmap_counter: u32,
    }

    impl Default for Mallocng {
        fn default() -> Self {
            Mallocng {
                metas: Vec::new(),
                free_meta_head: None,
                avail_meta_count: 0,
                avail_meta_area_count: 0,
                meta_alloc_shift: 0,
                avail_meta_areas: 0,
                active: [None; 48],
                usage_by_class: [0; 48],
                unmap_seq: [0; 32],
                bounces: [0; 32],
                seq: 0,
                brk: BrkState::Unset,
                mmap_counter: 0,
            }
        }
    }

    /// `(2u << n) - 1` with C's unsigned wrap-around.
    fn ones(n: u32) -> u32 {
        ((2u64 << n) - 1) as u32
    }

    /// `queue()` (meta.h): append `m` at the tail of the circular list `head`.
    fn queue(metas: &mut [Meta], head: &mut Option<usize>, m: usize) {
        match *head {
            Some(h) => {
                let hp = metas[h].prev.unwrap_or(h);
                metas[m].next = Some(h);
                metas[m].prev = Some(hp);
                metas[h].prev = Some(m);
                metas[hp].next = Some(m);
            }
            None => {
                metas[m].prev = Some(m);
                metas[m].next = Some(m);
                *head = Some(m);
            }
        }
    }

    /// `dequeue()` (meta.h).
    fn dequeue(metas: &mut [Meta], head: &mut Option<usize>, m: usize) {
        if metas[m].next != Some(m) {
            let (p, n) = (metas[m].prev.unwrap_or(m), metas[m].next.unwrap_or(m));
            metas[p].next = Some(n);
            metas[n].prev = Some(p);
            if *head == Some(m) {
                *head = Some(n);
            }
        } else {
            *head = None;
        }
        metas[m].prev = None;
        metas[m].next = None;
    }

    /// `size_to_class()` (meta.h).
    pub fn size_to_class(n: u64) -> usize {
        let mut n = (n + IB - 1) >> 4;
        if n < 10 {
            return n as usize;
        }
        n += 1;
        let clz = (n.min(u64::from(u32::MAX)) as u32).leading_zeros() as i64;
        let mut i = ((28 - clz) * 4 + 8).clamp(0, 46) as usize;
        if n > SIZE_CLASSES[i + 1] {
            i += 2;
        }
        if i < 48 && n > SIZE_CLASSES[i] {
            i += 1;
        }
        i.min(47)
    }

    impl Mallocng {
        fn step_seq(&mut self) {
            if self.seq == 255 {
                self.unmap_seq = [0; 32];
                self.seq = 1;
            } else {
                self.seq += 1;
            }
        }

        fn record_seq(&mut self, sc: usize) {
            if (7..39).contains(&sc) {
                self.unmap_seq[sc - 7] = self.seq;
            }
        }

        fn account_bounce(&mut self, sc: usize) {
            if (7..39).contains(&sc) {
                let seq = i32::from(self.unmap_seq[sc - 7]);
                if seq != 0 && i32::from(self.seq) - seq < 10 {
                    if self.bounces[sc - 7] + 1 < 100 {
                        self.bounces[sc - 7] += 1;
                    } else {
                        self.bounces[sc - 7] = 150;
                    }
                }
            }
        }

        fn decay_bounces(&mut self, sc: usize) {
            if (7..39).contains(&sc) && self.bounces[sc - 7] != 0 {
                self.bounces[sc - 7] -= 1;
            }
        }

        fn is_bouncing(&self, sc: usize) -> bool {
            (7..39).contains(&sc) && self.bounces[sc - 7] >= 100
        }

        fn get_stride(&self, g: usize) -> u64 {
            let m = &self.metas[g];
            if m.last_idx == 0 && m.maplen != 0 {
                m.maplen * 4096 - UNIT
            } else {
                UNIT * SIZE_CLASSES[m.sizeclass.min(47)]
            }
        }

        /// `free_meta()` (meta.h).
        fn free_meta(&mut self, m: usize) {
            self.metas[m] = Meta::default();
            queue(&mut self.metas, &mut self.free_meta_head, m);
        }

        /// `activate_group()` (meta.h).
        fn activate_group(&mut self, m: usize) -> u32 {
            let g = &mut self.metas[m];
            let act = ones(g.active_idx);
            let mask = g.freed_mask;
            g.freed_mask = mask & !act;
            g.avail_mask = mask & act;
            g.avail_mask
        }

        /// Models `alloc_meta()` (malloc.c): a recycled meta, or the next slot of the
        /// current area page; a new area page comes from brk (the first time `brk(0)`,
        /// `brk(+2 pages)` and the lower page mapped PROT_NONE as a guard; later one page
        /// at a time), or, once brk failed, from an `mmap` of `2 << meta_alloc_shift`
        /// PROT_NONE pages whose pages after the first are made read-write one by one.
        fn alloc_meta(&mut self, t: &mut Task) -> Option<usize> {
            if let Some(m) = self.free_meta_head {
                dequeue(&mut self.metas, &mut self.free_meta_head, m);
                return Some(m);
            }
            if self.avail_meta_count == 0 {
                let mut need_unprotect = true;
                if self.avail_meta_area_count == 0 && self.brk != BrkState::Failed {
                    let (cur, new, need_guard) = match self.brk {
                        BrkState::At(b) => (b, b + PGSZ, false),
                        _ => {
                            let b = t.brk(0);
                            let b = b.wrapping_add(b.wrapping_neg() & (PGSZ - 1));
                            (b, b + 2 * PGSZ, true)
                        }
                    };
                    if t.brk(new) != new {
                        self.brk = BrkState::Failed;
                    } else {
                        if need_guard {
                            let _ = t.mmap(cur, PGSZ, Prot::NONE, Placement::Fixed, None);
                        }
                        self.brk = BrkState::At(new);
                        self.avail_meta_areas = new - PGSZ;
                        self.avail_meta_area_count = PGSZ >> 12;
                        need_unprotect = false;
                    }
                }
                if self.avail_meta_area_count == 0 {
                    let n = 2u64 << self.meta_alloc_shift;
                    let p = t
                        .mmap(0, n * PGSZ, Prot::NONE, Placement::Hint, None)
                        .ok()?;
                    self.avail_meta_areas = p + PGSZ;
                    self.avail_meta_area_count = (n - 1) * (PGSZ >> 12);
                    self.meta_alloc_shift += 1;
                }
                let p = self.avail_meta_areas;
                if p & (PGSZ - 1) != 0 {
                    need_unprotect = false;
                }
                if need_unprotect {
                    t.mprotect(p, PGSZ, Prot::RW);
                }
                self.avail_meta_area_count -= 1;
                self.avail_meta_areas = p + 4096;
                self.avail_meta_count = META_AREA_SLOTS;
            }
            self.avail_meta_count -= 1;
            self.metas.push(Meta::default());
            Some(self.metas.len() - 1)
        }

        /// Models `try_avail()` (malloc.c) on `ctx.active[sc]`: the first available slot
        /// of the head group, else rotate, drop exhausted groups, activate freed slots (or
        /// more of a partly activated group, up to the next 4 KiB boundary).
        fn try_avail(&mut self, sc: usize) -> u32 {
            let Some(mut m) = self.active[sc] else {
                return 0;
            };
            let mut mask = self.metas[m].avail_mask;
            if mask == 0 {
                if self.metas[m].freed_mask == 0 {
                    dequeue(&mut self.metas, &mut self.active[sc], m);
                    match self.active[sc] {
                        Some(x) => m = x,
                        None => return 0,
                    }
                } else {
                    m = self.metas[m].next.unwrap_or(m);
                    self.active[sc] = Some(m);
                }
                mask = self.metas[m].freed_mask;
                if mask == ones(self.metas[m].last_idx) && self.metas[m].freeable {
                    m = self.metas[m].next.unwrap_or(m);
                    self.active[sc] = Some(m);
                    mask = self.metas[m].freed_mask;
                }
                if mask & ones(self.metas[m].active_idx) == 0 {
                    if self.metas[m].next != Some(m) {
                        m = self.metas[m].next.unwrap_or(m);
                        self.active[sc] = Some(m);
                    } else {
                        let g = self.metas[m];
                        let mut cnt = i64::from(g.active_idx) + 2;
                        let size = (SIZE_CLASSES[g.sizeclass.min(47)] * UNIT) as i64;
                        let mut span = UNIT as i64 + size * cnt;
                        while (span ^ (span + size - 1)) < 4096 {
                            cnt += 1;
                            span += size;
                        }
                        if cnt > i64::from(g.last_idx) + 1 {
                            cnt = i64::from(g.last_idx) + 1;
                        }
                        self.metas[m].active_idx = (cnt - 1) as u32;
                    }
                }
                mask = self.activate_group(m);
                let sc_m = self.metas[m].sizeclass;
                self.decay_bounces(sc_m);
            }
            let first = mask & mask.wrapping_neg();
            self.metas[m].avail_mask = mask - first;
            first
        }

        /// Models `alloc_group()` (malloc.c): the slot count from the usage of the class,
        /// then either an `mmap` of whole pages (groups above half a page, with the
        /// reductions and the single-allocation choice) or a slot of a larger class.
        fn alloc_group(&mut self, t: &mut Task, sc: usize, req: u64) -> Option<usize> {
            let size = UNIT * SIZE_CLASSES[sc];
            let m = self.alloc_meta(t)?;
            let mut usage = self.usage_by_class[sc];
            let mut cnt: u64;
            if sc < 9 {
                let mut i = 0;
                while i < 2 && 4 * SMALL_CNT_TAB[sc][i] > usage {
                    i += 1;
                }
                cnt = SMALL_CNT_TAB[sc][i];
            } else {
                cnt = MED_CNT_TAB[sc & 3];
                while cnt & 1 == 0 && 4 * cnt > usage {
                    cnt >>= 1;
                }
                while size * cnt >= 65536 * UNIT {
                    cnt >>= 1;
                }
            }
            if cnt == 1 && size * cnt + UNIT <= PGSZ / 2 {
                cnt = 2;
            }
            let (mem, maplen, active_idx, parent);
            if size * cnt + UNIT > PGSZ / 2 {
                let nosmall = self.is_bouncing(sc);
                self.account_bounce(sc);
                self.step_seq();
                if sc & 1 == 0 && sc < 32 {
                    usage += self.usage_by_class[sc + 1];
                }
                if 4 * cnt > usage && !nosmall {
                    let bytes = size * cnt;
                    cnt = match sc & 3 {
                        1 if bytes > 8 * PGSZ => 2,
                        2 if bytes > 4 * PGSZ => 3,
                        0 if bytes > 8 * PGSZ => 3,
                        0 if bytes > 2 * PGSZ => 5,
                        _ => cnt,
                    };
                }
                let mut needed = size * cnt + UNIT;
                needed += needed.wrapping_neg() & (PGSZ - 1);
                if !nosmall && cnt <= 7 {
                    let mut req = req + IB + UNIT;
                    req += req.wrapping_neg() & (PGSZ - 1);
                    if req < size + UNIT || (req >= 4 * PGSZ && 2 * cnt > usage) {
                        cnt = 1;
                        needed = req;
                    }
                }
                let Ok(p) = t.mmap(0, needed, Prot::RW, Placement::Hint, None) else {
                    self.free_meta(m);
                    return None;
                };
                mem = p;
                maplen = needed >> 12;
                self.mmap_counter = self.mmap_counter.wrapping_add(1);
                let ai = ((4096 - UNIT) / size) as i64 - 1;
                active_idx = ai.min(cnt as i64 - 1).max(0) as u32;
                parent = None;
            } else {
                let j = size_to_class(UNIT + cnt * size - IB);
                let Some(idx) = self.alloc_slot(t, j, UNIT + cnt * size - IB) else {
                    self.free_meta(m);
                    return None;
                };
                let g = self.active[j]?;
                mem = 0;
                maplen = 0;
                active_idx = (cnt - 1) as u32;
                parent = Some(Slot { meta: g, idx });
            }
            self.usage_by_class[sc] += cnt;
            let avail = ones(active_idx);
            let g = &mut self.metas[m];
            g.avail_mask = avail;
            g.freed_mask = ones((cnt - 1) as u32).wrapping_sub(avail);
            g.mem = mem;
            g.active_idx = active_idx;
            g.last_idx = (cnt - 1) as u32;
            g.freeable = true;
            g.sizeclass = sc;
            g.maplen = maplen;
            g.parent = parent;
            Some(m)
        }

        /// Models `alloc_slot()` (malloc.c).
        fn alloc_slot(&mut self, t: &mut Task, sc: usize, req: u64) -> Option<u32> {
            let first = self.try_avail(sc);
            if first != 0 {
                return Some(first.trailing_zeros());
            }
            let g = self.alloc_group(t, sc, req)?;
            self.metas[g].avail_mask = self.metas[g].avail_mask.wrapping_sub(1);
            queue(&mut self.metas, &mut self.active[sc], g);
            Some(0)
        }

        /// Models `malloc()` (malloc.c); `calloc()` is `malloc(m * n)` plus clearing.
        /// `None` when the kernel refuses memory.
        pub fn malloc(&mut self, t: &mut Task, n: u64) -> Option<Slot> {
            if n >= u64::MAX / 2 - 4096 {
                return None;
            }
            if n >= MMAP_THRESHOLD {
                let needed = n + IB + UNIT;
                let p = t.mmap(0, needed, Prot::RW, Placement::Hint, None).ok()?;
                self.step_seq();
                let Some(g) = self.alloc_meta(t) else {
                    t.munmap(p, needed);
                    return None;
                };
                let m = &mut self.metas[g];
                m.mem = p;
                m.last_idx = 0;
                m.freeable = true;
                m.sizeclass = 63;
                m.maplen = needed.div_ceil(4096);
                m.avail_mask = 0;
                m.freed_mask = 0;
                self.mmap_counter = self.mmap_counter.wrapping_add(1);
                return Some(Slot { meta: g, idx: 0 });
            }
            let mut sc = size_to_class(n);
            let mut g = self.active[sc];
            if g.is_none()
                && (4..32).contains(&sc)
                && sc != 6
                && sc & 1 == 0
                && self.usage_by_class[sc] == 0
            {
                let mut usage = self.usage_by_class[sc | 1];
                let coarse_free = match self.active[sc | 1] {
                    None => true,
                    Some(c) => self.metas[c].avail_mask == 0 && self.metas[c].freed_mask == 0,
                };
                if coarse_free {
                    usage += 3;
                }
                if usage <= 12 {
                    sc |= 1;
                }
                g = self.active[sc];
            }
            if let Some(g) = g {
                let mask = self.metas[g].avail_mask;
                let first = mask & mask.wrapping_neg();
                if first != 0 {
                    self.metas[g].avail_mask = mask - first;
                    return Some(Slot {
                        meta: g,
                        idx: first.trailing_zeros(),
                    });
                }
            }
            let idx = self.alloc_slot(t, sc, n)?;
            let g = self.active[sc]?;
            Some(Slot { meta: g, idx })
        }

        /// Models `donate()` (donate.c): carve `[a, a+len)` (16-byte aligned inwards) into
        /// single-slot, never-freed groups, largest class first, classes 47, 43, ..., 3.
        pub fn donate(&mut self, t: &mut Task, base: u64, len: u64) {
            let mut a = base;
            let mut b = a.wrapping_add(len);
            a = a.wrapping_add(a.wrapping_neg() & (UNIT - 1));
            b -= b & (UNIT - 1);
            let mut sc: i64 = 47;
            while sc > 0 && b > a {
                let s = sc as usize;
                let need = (SIZE_CLASSES[s] + 1) * UNIT;
                if b - a < need {
                    sc -= 4;
                    continue;
                }
                let Some(m) = self.alloc_meta(t) else {
                    return;
                };
                let g = &mut self.metas[m];
                g.avail_mask = 0;
                g.freed_mask = 1;
                g.mem = a;
                g.last_idx = 0;
                g.freeable = false;
                g.sizeclass = s;
                g.maplen = 0;
                g.active_idx = 0;
                queue(&mut self.metas, &mut self.active[s], m);
                a += need;
                sc -= 4;
            }
        }

        /// Models `free()` (free.c): the lock-free case (neither the first freed nor the
        /// last used slot), else `nontrivial_free()` and the `munmap` it asks for.
        pub fn free(&mut self, t: &mut Task, s: Slot) {
            let g = s.meta;
            let me = 1u32 << s.idx;
            let all = ones(self.metas[g].last_idx);
            let freed = self.metas[g].freed_mask;
            let avail = self.metas[g].avail_mask;
            let mask = freed | avail;
            if freed != 0 && mask.wrapping_add(me) != all {
                self.metas[g].freed_mask = freed + me;
                return;
            }
            if let Some((base, len)) = self.nontrivial_free(g, s.idx) {
                t.munmap(base, len);
            }
        }

        /// Models `okay_to_free()` (free.c).
        fn okay_to_free(&self, g: usize) -> bool {
            let m = &self.metas[g];
            let sc = m.sizeclass;
            if !m.freeable {
                return false;
            }
            if sc >= 48 || self.get_stride(g) < UNIT * SIZE_CLASSES[sc] {
                return true;
            }
            if m.maplen == 0 {
                return true;
            }
            if m.next != Some(g) {
                return true;
            }
            if !self.is_bouncing(sc) {
                return true;
            }
            let cnt = u64::from(m.last_idx) + 1;
            9 * cnt <= self.usage_by_class[sc] && cnt < 20
        }

        /// Models `nontrivial_free()` (free.c).
        fn nontrivial_free(&mut self, g: usize, i: u32) -> Option<(u64, u64)> {
            let me = 1u32 << i;
            let sc = self.metas[g].sizeclass;
            let mask = self.metas[g].freed_mask | self.metas[g].avail_mask;
            if mask.wrapping_add(me) == ones(self.metas[g].last_idx) && self.okay_to_free(g) {
                if self.metas[g].next.is_some() && sc < 48 {
                    let activate_new = self.active[sc] == Some(g);
                    dequeue(&mut self.metas, &mut self.active[sc], g);
                    if activate_new {
                        if let Some(h) = self.active[sc] {
                            self.activate_group(h);
                        }
                    }
                }
                return self.free_group(g);
            } else if mask == 0 && sc < 48 && self.active[sc] != Some(g) {
                queue(&mut self.metas, &mut self.active[sc], g);
            }
            self.metas[g].freed_mask |= me;
            None
        }

        /// Models `free_group()` (free.c).
        fn free_group(&mut self, g: usize) -> Option<(u64, u64)> {
            let m = self.metas[g];
            let sc = m.sizeclass;
            if sc < 48 {
                self.usage_by_class[sc] -= u64::from(m.last_idx) + 1;
            }
            let mi = if m.maplen != 0 {
                self.step_seq();
                self.record_seq(sc);
                Some((m.mem, m.maplen * 4096))
            } else {
                m.parent.and_then(|p| self.nontrivial_free(p.meta, p.idx))
            };
            self.free_meta(g);
            mi
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn size_classes_match_the_table() {
            // The smallest class whose slot (minus the 4-byte in-band header) holds n.
            for n in [
                0u64, 1, 12, 13, 100, 428, 492, 493, 1004, 2028, 4000, 131000,
            ] {
                let sc = size_to_class(n);
                assert!(SIZE_CLASSES[sc] * UNIT >= n + IB, "n={n} sc={sc}");
                if sc > 0 {
                    assert!(SIZE_CLASSES[sc - 1] * UNIT < n + IB, "n={n} sc={sc}");
                }
            }
        }
    }
}
