//! DOC: musl 1.2.3's dynamic loader, from the exec stop to `_dl_debug_state()` and AT_ENTRY.
//!
//! Models `ldso/dynlink.c: __dls3()` for a program the kernel mapped (x86-64), replaying on
//! a copy of the exec-stop address space every system call that changes it:
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
//! entry are the maps at the loaded stop ([`MuslLoaded`]).
//!
//! Structure sizes (`struct dso` 368, `struct pthread` 200, `builtin_tls` 336, `struct
//! meta` 40, `struct meta_area` header 24 bytes) are those of musl 1.2.3 on x86-64, checked
//! by compiling the same layouts with musl-gcc.
//!
//! Listing the libraries alone (`elfmap deps`) is the same model without the address
//! space: the search (`load_library()`, `path_open()`, `fixup_rpath()`) runs, nothing is
//! mapped or allocated.
//!
//! Differences from glibc that matter for the search: names of libc's parts ("libc.so",
//! "libc.so.6", "libpthread.so.0", ...) and the loader's own PT_INTERP name resolve to the
//! loader (musl's ld.so is libc.so); "already loaded" compares only the *shortname*
//! (basename of a searched path), never DT_SONAME; LD_LIBRARY_PATH comes first, then the
//! RPATH (or RUNPATH, which replaces it) of the requester and of every `needed_by`
//! ancestor; only $ORIGIN is expanded and a path with any other '$' is ignored; then the
//! system path from `<prefix>/etc/ld-musl-<arch>.path`, default "/lib:/usr/local/lib:/usr/lib".
//! No cache, no hwcaps subdirectories, no ELF class check while searching.
//!
//! Run as a command (`ld-musl-x86_64.so.1 PROGRAM [ARGS]`: the kernel mapped only libc.so,
//! as a program without PT_INTERP), `__dls3` takes its "dynamic linker invoked as a
//! command" branch ([`dls3_command`]): the loader is the kernel-mapped object, named
//! `argv[0]`; the program is opened by its name `argv[1]` and mapped with `map_library()`
//! before anything else (so it is not `kernel_mapped`: its `$ORIGIN` is the directory of
//! that name); the rest is the same.
//!
//! N.B. not modelled: i386 musl (not installed here, sizes unverified); the glibc-libc
//! replacement in `load_library()` (a glibc-like libc defining both `__libc_start_main` and
//! `stdin` is replaced by musl itself; it needs the symbol table); RLIMIT_DATA limits on
//! brk; the options of musl's loader run as a command (`--library-path`, `--preload`,
//! `--argv0`) and `ldd` mode. Missing libraries make musl exit 127 before the loaded stop:
//! they are an error of the plan.

pub mod mallocng;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PF_R, PF_W, PF_X};

use self::mallocng::Mallocng;
use super::{open_file, DepGraph, DepObject, FoundVia, Fs, LoaderEnv, Missing};
use crate::addr::{page_align, page_start};
use crate::elf::dynamic::read_dynamic;
use crate::elf::{Abi, ElfImage, PT_DYNAMIC, PT_GNU_RELRO, PT_LOAD, PT_PHDR, PT_TLS};
use crate::error::{Error, Result};
use crate::kernel::binfmt_elf::ExecImage;
use crate::mm::{
    AddressSpace, Change, FileRef, Maker, MmError, Object, Placement, Prot, Role, Task,
};

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

/// `PROT_*` of a segment from its `p_flags`, as `map_library()` computes it.
fn seg_prot(p_flags: u32) -> Prot {
    Prot::new(
        p_flags & PF_R != 0,
        p_flags & PF_W != 0,
        p_flags & PF_X != 0,
    )
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

/// Where an object is mapped, as `struct dso` records it.
#[derive(Clone, Debug, Default)]
struct Span {
    /// `base`: load bias.
    base: u64,
    /// `map`, `map_len`: the reservation (the kernel's span for kernel-mapped objects).
    map: u64,
    map_len: u64,
    /// `relro_start`, `relro_end` (link-time, page-rounded down).
    relro_start: u64,
    relro_end: u64,
    /// `phdr` known (`reclaim_gaps()` walks nothing without it) and the PT_LOADs.
    loads: Option<Vec<(u64, u64, u32)>>,
}

/// Models `ldso/dynlink.c: kernel_mapped_dso()`: the span of the PT_LOADs and the RELRO
/// range of an object the kernel mapped at `base`.
fn kernel_mapped_dso(img: &ElfImage, base: u64) -> Span {
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
    Span {
        base,
        map: base.wrapping_add(min_addr),
        map_len: max_addr.wrapping_sub(min_addr),
        relro_start,
        relro_end,
        loads: Some(loads),
    }
}

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

/// What musl's run left besides the address space, at the `_dl_debug_state()` stop: the
/// maps at AT_ENTRY are the same (`__dls3` jumps there right after it; only `argv[0]` and
/// `errno` change; constructors run later, from `__libc_start_init()`).
#[derive(Clone, Debug)]
pub struct MuslLoaded {
    /// The dso list: program, preloads and libraries in load order (libc.so where a name
    /// first resolved to it), the vDSO last.
    pub dsos: Vec<MuslDso>,
    pub tls: InitialTls,
    pub warnings: Vec<String>,
}

/// `struct dso`, the fields that matter here, for an object of the load list.
struct Dso {
    /// The object as the load list reports it.
    dep: DepObject,
    kind: DsoKind,
    /// `p->name`: the path as opened (the program: as exec'd; the loader: PT_INTERP).
    name: String,
    /// `p->shortname`: basename of a searched path (`"libc.so"` for the loader).
    shortname: Option<String>,
    /// (st_dev, st_ino); `None` for the program and the loader.
    id: Option<(u64, u64)>,
    needed_by: Option<usize>,
    /// `p->rpath` once `fixup_rpath()` set it.
    rpath: Option<String>,
    kernel_mapped: bool,
    /// The file as maps shows it.
    path: Option<PathBuf>,
    span: Span,
    tls: Option<TlsModule>,
    /// The object as the mappings' provenance names it, once mapped.
    object: Option<Arc<Object>>,
}

impl Dso {
    /// A dso not mapped yet: the program and the loader are `kernel_mapped`.
    fn new(dep: DepObject, kind: DsoKind, name: String, shortname: Option<String>) -> Dso {
        Dso {
            id: None,
            needed_by: dep.loader,
            dep,
            kind,
            name,
            shortname,
            rpath: None,
            kernel_mapped: kind != DsoKind::Library,
            path: None,
            span: Span::default(),
            tls: None,
            object: None,
        }
    }

    fn summary(&self) -> MuslDso {
        MuslDso {
            kind: self.kind,
            name: self.name.clone(),
            path: self.path.clone(),
            base: self.span.base,
            map: self.span.map,
            map_len: self.span.map_len,
            relro: (self.span.relro_start != self.span.relro_end).then(|| {
                (
                    self.span.base.wrapping_add(self.span.relro_start),
                    self.span.base.wrapping_add(self.span.relro_end),
                )
            }),
            tls: self.tls,
        }
    }
}

/// What `path_open()` returned.
enum Opened {
    /// An fd: the candidate path that opened, and the file.
    Found(String, Box<ElfImage>),
    /// -1: nothing found.
    Miss,
    /// -2 (or another negative value): stop searching.
    Inhibit,
}

/// What `load_library()` returned.
enum Load {
    /// An object of the list, by index.
    Obj(usize),
    Fail,
}

/// The mapping state of `__dls3`: the process, mallocng, the TLS counters. Absent when
/// only listing.
struct MapState {
    task: Task,
    malloc: Mallocng,
    /// `tls_cnt`, `tls_offset`, `tls_align`.
    tls_cnt: u64,
    tls_offset: u64,
    tls_align: u64,
    next_open_id: u32,
    tls: Option<InitialTls>,
}

/// The loader's state while `__dls3` runs.
struct Dls3<'e> {
    env: &'e LoaderEnv,
    fs: Fs,
    /// The dso list in load order (the vDSO apart).
    dsos: Vec<Dso>,
    /// The loader (`ldso`), until a name resolves to it.
    ldso: Option<Dso>,
    ldso_idx: Option<usize>,
    /// `ldso.name`: the PT_INTERP string.
    ldso_name: String,
    /// `env_path` (LD_LIBRARY_PATH unless secure).
    env_path: Option<String>,
    /// `sys_path`, once read.
    sys_path: Option<String>,
    /// The vDSO's address, once on the list.
    vdso: Option<u64>,
    tried: Vec<String>,
    warnings: Vec<String>,
    missing: Vec<Missing>,
    map: Option<MapState>,
}

fn err(path: &Path, e: MmError) -> Error {
    Error::load_failed(path, format!("out of memory in musl's loader: {e}"))
}

/// Lists the load list of `program` (started as `exec_path`, whose PT_INTERP is `interp`)
/// as musl's loader finds it, without mapping anything (`elfmap deps`). Missing libraries
/// are listed, not fatal.
pub fn list(
    program: &Arc<ElfImage>,
    exec_path: &Path,
    interp: &Path,
    env: &LoaderEnv,
) -> Result<DepGraph> {
    let mut d = Dls3::new(env, program, exec_path, interp, None)?;
    d.load()?;
    Ok(d.finish().0)
}

/// If `argv` runs musl's loader as a command on a program (`ld-musl-x86_64.so.1 PROGRAM
/// [ARGS]`, no loader options), the program's name. `exec` must be the exec of a loader (no
/// PT_INTERP) that is musl's: its dynamic symbols define `__dls3`.
pub fn ldso_is_main_program(exec: &ExecImage, argv: &[std::ffi::OsString]) -> Option<String> {
    use crate::elf::symbols::{dl_new_hash, DynSyms, Scratch};
    if exec.interp.is_some() || exec.abi != Abi::X86_64 {
        return None;
    }
    let img = &exec.program_image;
    let dynamic = read_dynamic(img).ok()??;
    let syms = DynSyms::new(img, &dynamic, false, &mut Scratch::default())?;
    let want = b"__dls3";
    syms.find(want, dl_new_hash(want), |idx| {
        let s = syms.sym(idx)?;
        (s.st_shndx != 0 && syms.name(s.st_name)?.as_ref() == want).then_some(())
    })?;
    let name = argv.get(1)?.to_str()?;
    (!name.starts_with("--")).then(|| name.to_string())
}

/// Models musl 1.2.3 `ldso/dynlink.c: __dls3()` for musl's loader run as a command on
/// `program_name` (`argv[1]`), on the address space of the exec stop `exec` (which mapped
/// only the loader): the branch "dynamic linker invoked as a command" opens the program
/// and maps it with `map_library()` first; then as for a program the kernel mapped.
pub fn dls3_command(
    exec: &ExecImage,
    env: &LoaderEnv,
    program_name: &str,
) -> Result<(AddressSpace, MuslLoaded, DepGraph)> {
    let ldso_path = exec.program_file.path.clone();
    let ldname = exec.filename.to_string_lossy().into_owned();
    let fs = env.fs();
    let host = fs.host(program_name).into_owned();
    // open(argv[0], O_RDONLY) failing: musl prints and exits 1.
    let app_img = Arc::new(ElfImage::open(&host).map_err(|e| {
        Error::load_failed(
            &ldso_path,
            format!("musl's loader run as a command cannot load {program_name}: {e}; it exits with status 1"),
        )
    })?);
    let mut d = Dls3::new(
        env,
        &app_img,
        Path::new(program_name),
        Path::new(&ldname),
        Some(&exec.program_image),
    )?;
    d.map = Some(MapState::at_exec(exec));
    d.command_mapped(exec, &app_img, &host)?;
    d.load_and_relocate(exec, &ldso_path)
}

/// Models musl 1.2.3 `ldso/dynlink.c: __dls3()` for a program the kernel mapped, on the
/// address space of the exec stop `exec`, up to the `_dl_debug_state()` call (see the
/// module documentation for the steps). The load list comes with it.
pub fn dls3(exec: &ExecImage, env: &LoaderEnv) -> Result<(AddressSpace, MuslLoaded, DepGraph)> {
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
    let mut d = Dls3::new(
        env,
        &exec.program_image,
        Path::new(&exec.filename),
        &interp.requested,
        exec.interp_image.as_ref(),
    )?;
    d.map = Some(MapState::at_exec(exec));
    d.kernel_mapped(exec, interp.load_addr)?;
    d.load_and_relocate(exec, &program_path)
}

impl MapState {
    /// The mapping state on the address space of the exec stop, before musl maps anything.
    fn at_exec(exec: &ExecImage) -> MapState {
        MapState {
            task: Task {
                mm: exec.mm.clone(),
                read_implies_exec: exec.read_implies_exec,
            },
            malloc: Mallocng::default(),
            tls_cnt: 0,
            tls_offset: 0,
            tls_align: MIN_TLS_ALIGN,
            next_open_id: exec.next_open_id,
            tls: None,
        }
    }
}

impl<'e> Dls3<'e> {
    /// The common end of both entries to `__dls3()`: `load_deps()` (a missing library:
    /// musl prints and exits 127, reported against `path`), then what follows up to the
    /// `_dl_debug_state()` call.
    fn load_and_relocate(
        mut self,
        exec: &ExecImage,
        path: &Path,
    ) -> Result<(AddressSpace, MuslLoaded, DepGraph)> {
        self.load()?;
        if let Some(m) = self.missing.first() {
            let by = self
                .dsos
                .get(m.needed_by)
                .map(|o| o.dep.path.display().to_string())
                .unwrap_or_default();
            return Err(Error::load_failed(
                path,
                format!(
                    "Error loading shared library {}: No such file or directory (needed by {by}); \
                     musl exits with status 127 before the loaded stop",
                    m.name
                ),
            ));
        }
        self.after_deps(exec)?;
        let (graph, loaded) = self.finish();
        let (mm, loaded) = loaded.expect("mapping state");
        Ok((mm, loaded, graph))
    }

    /// The program (`app`) and the loader (`ldso`, found by `__dls2`: its name the
    /// PT_INTERP string, its shortname "libc.so"); `opened` is the interpreter as the
    /// kernel opened it, if it did.
    fn new(
        env: &'e LoaderEnv,
        program: &Arc<ElfImage>,
        exec_path: &Path,
        interp: &Path,
        opened: Option<&Arc<ElfImage>>,
    ) -> Result<Dls3<'e>> {
        let mut fs = env.fs();
        let dep = super::program_object(&mut fs, program, exec_path)?;
        let app = Dso::new(
            dep,
            DsoKind::App,
            exec_path.to_string_lossy().into_owned(),
            None,
        );
        let mut warnings = Vec::new();
        let dep = super::loader_object(&mut fs, interp, opened, &mut warnings);
        let ldso_name = dep.requested.clone();
        let ldso = Dso::new(
            dep,
            DsoKind::Ldso,
            ldso_name.clone(),
            Some("libc.so".into()),
        );
        Ok(Dls3 {
            env,
            fs,
            dsos: vec![app],
            ldso: Some(ldso),
            ldso_idx: None,
            ldso_name,
            env_path: if env.secure {
                None
            } else {
                env.ld_library_path.clone()
            },
            sys_path: None,
            vdso: None,
            tried: Vec::new(),
            warnings,
            missing: Vec::new(),
            map: None,
        })
    }

    fn map_mut(&mut self) -> &mut MapState {
        self.map.as_mut().expect("mapping state")
    }

    fn program_path(&self) -> PathBuf {
        self.dsos[0].dep.host_path.clone()
    }

    fn malloc(&mut self, len: u64, what: &str) -> Result<Option<mallocng::Slot>> {
        let path = self.program_path();
        let Some(m) = self.map.as_mut() else {
            return Ok(None);
        };
        m.malloc.malloc(&mut m.task, len).map(Some).ok_or_else(|| {
            Error::load_failed(
                path,
                format!("musl's loader: out of memory allocating {len} bytes ({what})"),
            )
        })
    }

    /// `calloc(m, n)` (src/malloc/calloc.c): `malloc(m * n)`, then clearing.
    fn calloc(&mut self, m: u64, n: u64, what: &str) -> Result<Option<mallocng::Slot>> {
        let Some(len) = m.checked_mul(n) else {
            return Err(Error::load_failed(
                self.program_path(),
                format!("calloc overflow ({what})"),
            ));
        };
        self.malloc(len, what)
    }

    /// `kernel_mapped_dso()` for the program (with its TLS, `tls_id` 1) and the loader as
    /// the kernel mapped them, then "donate unused parts of app and library mapping to
    /// malloc" (`reclaim_gaps()` of both).
    fn kernel_mapped(&mut self, exec: &ExecImage, interp_load_addr: u64) -> Result<()> {
        let app_img = exec.program_image.clone();
        if app_img.phdr(PT_PHDR).is_none() && exec.load_bias != 0 {
            self.warnings.push(
                "musl model: the program has no PT_PHDR; musl would take its base as 0".into(),
            );
        }
        let app = kernel_mapped_dso(&app_img, exec.load_bias);
        let mut tls = None;
        if let Some((vaddr, len, size, align)) = pt_tls(&app_img) {
            let image = exec.load_bias.wrapping_add(vaddr);
            let offset =
                size.wrapping_add(image.wrapping_add(size).wrapping_neg() & align.wrapping_sub(1));
            tls = Some(TlsModule {
                id: 1,
                image,
                len,
                size,
                align,
                offset,
            });
            let m = self.map_mut();
            m.tls_cnt = 1;
            m.tls_offset = offset;
            m.tls_align = maxp2(m.tls_align, align);
        }
        let a = &mut self.dsos[0];
        a.span = app;
        (a.tls, a.path) = (tls, Some(exec.program_file.path.clone()));
        a.object = Some(Arc::new(Object {
            role: Role::Program,
            path: exec.program_file.path.clone(),
        }));
        let ldso_img = match exec.interp_image.clone() {
            Some(i) => i,
            None => Arc::new(ElfImage::open(
                &exec.interp.as_ref().expect("PT_INTERP").path,
            )?),
        };
        let k = kernel_mapped_dso(&ldso_img, interp_load_addr);
        let l = self.ldso.as_mut().expect("the loader's dso");
        l.span = k;
        l.path = exec
            .mm
            .find(interp_load_addr)
            .and_then(|v| match &v.backing {
                crate::mm::Backing::File { file, .. } => Some(file.path.clone()),
                _ => None,
            })
            .or_else(|| exec.interp.as_ref().map(|i| i.path.clone()));
        l.object = l.path.clone().map(|path| {
            Arc::new(Object {
                role: Role::Interpreter,
                path,
            })
        });
        let span = self.dsos[0].span.clone();
        self.reclaim_gaps(&span);
        if let Some(span) = self.ldso.as_ref().map(|l| l.span.clone()) {
            self.reclaim_gaps(&span);
        }
        Ok(())
    }

    /// The command branch of `__dls3`: the loader is what the kernel mapped (`ldso`,
    /// `kernel_mapped_dso()` in `__dls2`); the program (`app`) is opened by name and mapped
    /// by `map_library()`, its TLS module the first; then `reclaim_gaps()` of both.
    fn command_mapped(
        &mut self,
        exec: &ExecImage,
        app_img: &Arc<ElfImage>,
        host: &Path,
    ) -> Result<()> {
        let k = kernel_mapped_dso(&exec.program_image, exec.load_bias);
        let l = self.ldso.as_mut().expect("the loader's dso");
        l.span = k;
        l.path = Some(exec.program_file.path.clone());
        l.object = Some(Arc::new(Object {
            role: Role::Interpreter,
            path: exec.program_file.path.clone(),
        }));
        let dt_textrel = self.dsos[0]
            .dep
            .dynamic
            .as_ref()
            .is_some_and(|d| d.dt_textrel);
        let host_path = self.dsos[0].dep.host_path.clone();
        let file = {
            let m = self.map_mut();
            let id = m.next_open_id;
            m.next_open_id += 1;
            open_file(&host_path, id, self.env.root.as_deref())?
        };
        let placeholder = Dso::new(self.dsos[0].dep.clone(), DsoKind::App, String::new(), None);
        let mut app = std::mem::replace(&mut self.dsos[0], placeholder);
        self.map_library(app_img, dt_textrel, host, file, &mut app)?;
        app.kernel_mapped = false;
        let map = app.span.map;
        app.path = self
            .map_mut()
            .task
            .mm
            .find(map)
            .and_then(|v| match &v.backing {
                crate::mm::Backing::File { file, .. } => Some(file.path.clone()),
                _ => None,
            });
        app.object = app.path.clone().map(|path| {
            Arc::new(Object {
                role: Role::Program,
                path,
            })
        });
        if let Some((vaddr, len, size, align)) = pt_tls(app_img) {
            let image = app.span.base.wrapping_add(vaddr);
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
            let m = self.map_mut();
            m.tls_cnt = 1;
            m.tls_offset = offset;
            m.tls_align = maxp2(m.tls_align, align);
        }
        let span = app.span.clone();
        self.dsos[0] = app;
        self.reclaim_gaps(&span);
        if let Some(span) = self.ldso.as_ref().map(|l| l.span.clone()) {
            self.reclaim_gaps(&span);
        }
        Ok(())
    }

    /// `load_preload()` (not in secure mode: names separated by white space (`isspace`) or
    /// ':', loaded with no `needed_by`), then `load_deps(&app)`: `load_direct_deps()` for
    /// every dso in list order (the list grows meanwhile; the loader's deps are `no_deps`).
    fn load(&mut self) -> Result<()> {
        if !self.env.secure {
            if let Some(s) = self.env.ld_preload.clone() {
                for name in s
                    .split(|c: char| c.is_ascii_whitespace() || c == '\x0b' || c == ':')
                    .filter(|n| !n.is_empty())
                {
                    let before = self.dsos.len();
                    match self.load_library(name, None)? {
                        Load::Obj(i) if i >= before && Some(i) != self.ldso_idx => {
                            self.dsos[i].dep.found_via = FoundVia::Preload;
                        }
                        Load::Obj(_) => {}
                        Load::Fail => self
                            .warnings
                            .push(format!("LD_PRELOAD: {name}: cannot load (ignored)")),
                    }
                }
            }
        }
        let mut i = 0;
        while i < self.dsos.len() {
            if Some(i) != self.ldso_idx {
                self.load_direct_deps(i)?;
            }
            i += 1;
        }
        Ok(())
    }

    /// Models `ldso/dynlink.c: load_direct_deps()` for list entry `i`: the `deps` array
    /// (`builtin_deps` for the program with fewer than two entries, else
    /// `calloc(cnt+1, sizeof (struct dso *))`, the program's count including everything
    /// already on the list after it, i.e. the preloads), then `load_library()` for each
    /// DT_NEEDED.
    fn load_direct_deps(&mut self, i: usize) -> Result<()> {
        let names: Vec<String> = self.dsos[i]
            .dep
            .dynamic
            .as_ref()
            .map(|d| d.needed.clone())
            .unwrap_or_default();
        let mut cnt = names.len() as u64;
        if i == 0 {
            cnt += self.dsos.len() as u64 - 1;
        }
        if !(i == 0 && cnt < 2) {
            let what = format!("deps of {}", self.dsos[i].dep.path.display());
            self.calloc(cnt + 1, WORD, &what)?;
        }
        for name in names {
            self.tried.clear();
            match self.load_library(&name, Some(i))? {
                Load::Obj(j) => self.dsos[i].dep.needed.push(j),
                Load::Fail => self.missing.push(Missing {
                    name,
                    needed_by: i,
                    tried: self.tried.drain(..).map(PathBuf::from).collect(),
                }),
            }
        }
        Ok(())
    }

    /// The loader joins the list where a name first resolves to it.
    fn append_ldso(&mut self, requested: &str, needed_by: Option<usize>) -> usize {
        if let Some(i) = self.ldso_idx {
            return i;
        }
        let mut d = self.ldso.take().expect("the loader's dso");
        d.dep.requested = requested.to_string();
        d.dep.loader = needed_by;
        self.dsos.push(d);
        let i = self.dsos.len() - 1;
        self.ldso_idx = Some(i);
        i
    }

    /// Models ldso/dynlink.c: `load_library(name, needed_by)`: the loader itself for libc's
    /// names; a '/' name opened as is; otherwise the shortname check, then the search
    /// (`LD_LIBRARY_PATH`, the RPATH of `needed_by` and its ancestors, the system path);
    /// an inode already on the list is returned (getting a shortname if a search found it);
    /// a new object is mapped (`map_library()`), its gaps donated (`reclaim_gaps()`), its
    /// `struct dso` allocated (`calloc(1, sizeof *p + strlen(pathname) + 1)`) and its TLS
    /// placed.
    fn load_library(&mut self, name: &str, needed_by: Option<usize>) -> Result<Load> {
        if name.is_empty() {
            return Ok(Load::Fail);
        }
        if is_self(name, &self.ldso_name) {
            return Ok(Load::Obj(self.append_ldso(name, needed_by)));
        }
        let searched = !name.contains('/');
        let (pathname, via, img) = if !searched {
            self.tried.push(name.to_string());
            match ElfImage::open(&self.fs.host(name)) {
                Ok(img) => (name.to_string(), FoundVia::SlashName, Box::new(img)),
                Err(_) => return Ok(Load::Fail),
            }
        } else {
            if let Some(i) =
                (1..self.dsos.len()).find(|&i| self.dsos[i].shortname.as_deref() == Some(name))
            {
                return Ok(Load::Obj(i));
            }
            if name.len() > NAME_MAX {
                return Ok(Load::Fail);
            }
            match self.search(name, needed_by)? {
                Some(found) => found,
                None => return Ok(Load::Fail),
            }
        };
        let id = (img.meta.dev(), img.meta.ino());
        if let Some(i) = (1..self.dsos.len()).find(|&i| self.dsos[i].id == Some(id)) {
            // A search found an inode first loaded by pathname: it gets a shortname now.
            let d = &mut self.dsos[i];
            if searched && d.shortname.is_none() && d.kind == DsoKind::Library {
                d.shortname = Some(basename(&d.name));
            }
            return Ok(Load::Obj(i));
        }
        // map_library: reject what it cannot map (musl does not check the class while
        // searching; a wrong-class file makes the load fail).
        let abi_ok = img.abi() == Some(self.env.abi);
        if !abi_ok || !(img.is_dyn() || img.e_type() == ET_EXEC) || img.loads().next().is_none() {
            self.warnings.push(format!(
                "{pathname}: not a loadable {:?} ELF object for musl",
                self.env.abi
            ));
            return Ok(Load::Fail);
        }
        let dynamic = match read_dynamic(&img) {
            Ok(d) => d,
            Err(e) => {
                self.warnings.push(e.to_string());
                return Ok(Load::Fail);
            }
        };
        let (realpath, host_path) = match self.fs.realpath(&pathname) {
            Ok(r) => {
                let h = self.fs.host(&r).into_owned();
                (PathBuf::from(r), h)
            }
            Err(e) => {
                self.warnings
                    .push(format!("{pathname}: cannot canonicalize: {e}"));
                (PathBuf::from(&pathname), img.path.clone())
            }
        };
        let dt_textrel = dynamic.as_ref().is_some_and(|d| d.dt_textrel);
        let img: Arc<ElfImage> = Arc::from(img);
        let mut dso = Dso::new(
            DepObject {
                requested: name.to_string(),
                path: PathBuf::from(&pathname),
                realpath,
                host_path: host_path.clone(),
                dev: id.0,
                ino: id.1,
                soname: dynamic.as_ref().and_then(|d| d.soname.clone()),
                found_via: via,
                loader: needed_by,
                needed: Vec::new(),
                dynamic,
                image: Some(img.clone()),
            },
            DsoKind::Library,
            pathname.clone(),
            searched.then(|| basename(&pathname)),
        );
        dso.id = Some(id);
        if self.map.is_some() {
            let file = {
                let m = self.map_mut();
                let id = m.next_open_id;
                m.next_open_id += 1;
                open_file(&host_path, id, self.env.root.as_deref())?
            };
            self.map_library(&img, dt_textrel, &host_path, file, &mut dso)?;
            let map = dso.span.map;
            dso.path = self
                .map_mut()
                .task
                .mm
                .find(map)
                .and_then(|v| match &v.backing {
                    crate::mm::Backing::File { file, .. } => Some(file.path.clone()),
                    _ => None,
                });
            self.reclaim_gaps(&dso.span);
            self.calloc(
                1,
                SIZEOF_DSO + pathname.len() as u64 + 1,
                &format!("struct dso {pathname}"),
            )?;
            if let Some((vaddr, len, size, align)) = pt_tls(&img) {
                let image = dso.span.base.wrapping_add(vaddr);
                if image != 0 {
                    let m = self.map_mut();
                    m.tls_cnt += 1;
                    m.tls_align = maxp2(m.tls_align, align);
                    let am1 = align.wrapping_sub(1);
                    m.tls_offset = m.tls_offset.wrapping_add(size).wrapping_add(am1);
                    m.tls_offset = m
                        .tls_offset
                        .wrapping_sub(m.tls_offset.wrapping_add(image) & am1);
                    dso.tls = Some(TlsModule {
                        id: m.tls_cnt,
                        image,
                        len,
                        size,
                        align,
                        offset: m.tls_offset,
                    });
                }
            }
        }
        self.dsos.push(dso);
        Ok(Load::Obj(self.dsos.len() - 1))
    }

    /// The search part of `load_library()` for a bare name: `path_open()` over
    /// `env_path`, then for `needed_by` and each of its `needed_by` ancestors
    /// `fixup_rpath()` and `path_open()` over its rpath, then the system path (read from
    /// `<prefix>/etc/ld-musl-<arch>.path` the first time). The pathname that opened, how
    /// it was found and the file.
    fn search(
        &mut self,
        name: &str,
        needed_by: Option<usize>,
    ) -> Result<Option<(String, FoundVia, Box<ElfImage>)>> {
        if let Some(p) = self.env_path.clone() {
            match self.path_open(name, &p) {
                Opened::Found(s, img) => return Ok(Some((s, FoundVia::LdLibraryPath, img))),
                Opened::Inhibit => return Ok(None),
                Opened::Miss => {}
            }
        }
        let mut p = needed_by;
        while let Some(pi) = p {
            if !self.fixup_rpath(pi)? {
                return Ok(None);
            }
            if let Some(rp) = self.dsos[pi].rpath.clone() {
                let via = if self.dsos[pi]
                    .dep
                    .dynamic
                    .as_ref()
                    .is_some_and(|d| d.runpath.is_some())
                {
                    FoundVia::Runpath { of: pi }
                } else {
                    FoundVia::Rpath { of: pi }
                };
                match self.path_open(name, &rp) {
                    Opened::Found(s, img) => return Ok(Some((s, via, img))),
                    Opened::Inhibit => return Ok(None),
                    Opened::Miss => {}
                }
            }
            p = self.dsos[pi].needed_by;
        }
        let sys = self.sys_path()?;
        Ok(match self.path_open(name, &sys) {
            Opened::Found(s, img) => Some((s, FoundVia::DefaultDir, img)),
            _ => None,
        })
    }

    /// Models ldso/dynlink.c: `path_open()`: elements separated by ':' or '\n' (empty ones
    /// skipped), "%s/%s" (no '/' normalisation), candidates longer than `load_library()`'s
    /// buffer skipped; ENOENT/ENOTDIR/EACCES/ENAMETOOLONG go on, any other error stops the
    /// whole search.
    fn path_open(&mut self, name: &str, s: &str) -> Opened {
        for dir in s.split([':', '\n']).filter(|d| !d.is_empty()) {
            let cand = format!("{dir}/{name}");
            if cand.len() >= LOAD_LIBRARY_BUF {
                continue;
            }
            self.tried.push(cand.clone());
            match ElfImage::open(&self.fs.host(&cand)) {
                Ok(img) => return Opened::Found(cand, Box::new(img)),
                Err(Error::Io { source, .. }) => match source.raw_os_error() {
                    Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::ENAMETOOLONG) => {}
                    _ => return Opened::Inhibit,
                },
                // Opened, but not something ElfImage can read: musl's map_library fails on
                // it and the load of this name fails.
                Err(e) => {
                    self.warnings.push(e.to_string());
                    return Opened::Inhibit;
                }
            }
        }
        Opened::Miss
    }

    /// Models ldso/dynlink.c: `fixup_rpath()` for list entry `i`: DT_RUNPATH (else
    /// DT_RPATH) as is if it has no '$'; with only `$ORIGIN`/`${ORIGIN}` tokens,
    /// `malloc(strlen(rpath_orig) + n*l + 1)` for the expansion (n tokens, l = length of
    /// the origin directory: the program's from `/proc/self/exe`, not in secure mode; a
    /// library's from its pathname; "." without a '/'). Any other '$' token leaves it
    /// without rpath. False where musl returns -1 (inhibit the search): only a failed
    /// allocation here.
    fn fixup_rpath(&mut self, i: usize) -> Result<bool> {
        let d = &self.dsos[i];
        if d.rpath.is_some() {
            return Ok(true);
        }
        let Some(orig) = d
            .dep
            .dynamic
            .as_ref()
            .and_then(|d| d.runpath.clone().or_else(|| d.rpath.clone()))
        else {
            return Ok(true);
        };
        if !orig.contains('$') {
            self.dsos[i].rpath = Some(orig);
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
        let origin_src = if d.kernel_mapped {
            // readlink("/proc/self/exe"): the canonical program path.
            if secure {
                return Ok(true);
            }
            let exe = d.dep.realpath.to_string_lossy().into_owned();
            if exe.len() >= LOAD_LIBRARY_BUF {
                return Ok(true);
            }
            exe
        } else {
            d.name.clone()
        };
        let origin = match origin_src.rfind('/') {
            Some(t) => origin_src[..t].to_string(),
            None => ".".to_string(),
        };
        if secure && !origin.starts_with('/') {
            return Ok(true);
        }
        let l = origin.len() as u64;
        let what = format!("fixup_rpath {}", d.dep.path.display());
        if self.malloc(orig.len() as u64 + n * l + 1, &what).is_err() {
            return Ok(false);
        }
        self.dsos[i].rpath = Some(substitute_origin(&orig, &origin));
        Ok(true)
    }

    /// The `sys_path` part of `load_library()`, the first time a search gets there:
    /// `<prefix>/etc/ld-musl-<arch>.path` ([`path_file`]) read into `malloc(st_size + 1)`
    /// (freed again if the read fails); a missing file gives the default path, another
    /// open error an empty one.
    fn sys_path(&mut self) -> Result<String> {
        if let Some(s) = &self.sys_path {
            return Ok(s.clone());
        }
        let file = path_file(&self.ldso_name, self.env.abi);
        let host = self.fs.host(&file).into_owned();
        let s = match std::fs::File::open(&host) {
            Ok(f) => {
                let size = f.metadata().map_or(0, |m| m.len());
                let buf = self.malloc(size + 1, "sys_path")?;
                match std::fs::read(&host) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(_) => {
                        if let (Some(buf), Some(m)) = (buf, self.map.as_mut()) {
                            m.malloc.free(&mut m.task, buf);
                        }
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

    /// The steps of `__dls3` after `load_deps()`: the vDSO joins the list, the constructor
    /// queue, the initial TLS, `reloc_all()` (RELRO; the program last).
    fn after_deps(&mut self, exec: &ExecImage) -> Result<()> {
        if exec.vdso_base != 0 {
            self.vdso = Some(exec.vdso_base);
        }
        self.queue_ctors()?;
        let tls = self.update_tls_size();
        if !tls.builtin {
            self.calloc(tls.tls_size, 1, "initial thread-local storage")?;
        }
        self.map_mut().tls = Some(tls);
        // reloc_all(app.next); reloc_all(&app): the vDSO is already `relocated`.
        let order: Vec<usize> = (1..self.dsos.len()).chain(std::iter::once(0)).collect();
        for i in order {
            self.reloc_all_one(i);
        }
        Ok(())
    }

    /// The load list, and with the mapping state the loader's result.
    fn finish(self) -> (DepGraph, Option<(AddressSpace, MuslLoaded)>) {
        let loaded = self.map.map(|m| {
            let mut dsos: Vec<MuslDso> = self.dsos.iter().map(Dso::summary).collect();
            if let Some(map) = self.vdso {
                dsos.push(MuslDso {
                    kind: DsoKind::Vdso,
                    name: String::new(),
                    path: None,
                    base: 0,
                    map,
                    map_len: 0,
                    relro: None,
                    tls: None,
                });
            }
            let loaded = MuslLoaded {
                dsos,
                tls: m.tls.unwrap_or(InitialTls {
                    tls_size: 0,
                    tls_align: MIN_TLS_ALIGN,
                    tls_cnt: 0,
                    builtin: true,
                }),
                warnings: self.warnings.clone(),
            };
            (m.task.mm, loaded)
        });
        let graph = DepGraph {
            objects: self.dsos.into_iter().map(|d| d.dep).collect(),
            missing: self.missing,
            first_cache_use: None,
            cache: None,
            preload_file: None,
            interp_index: self.ldso_idx,
            warnings: self.warnings,
        };
        (graph, loaded)
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
        dso: &mut Dso,
    ) -> Result<()> {
        let object = Arc::new(Object {
            role: Role::Library,
            path: file.path.clone(),
        });
        let noexec =
            |why: &str| Error::load_failed(host, format!("musl's map_library: {why} (ENOEXEC)"));
        let e_type = img.e_type();
        if e_type != ET_DYN && e_type != ET_EXEC {
            return Err(noexec("neither ET_DYN nor ET_EXEC"));
        }
        let phsize = u64::from(img.header.e_phentsize) * u64::from(img.header.e_phnum);
        let allocated_buf = if phsize > MAP_LIBRARY_PHDR_BUF {
            self.malloc(phsize, "map_library program headers")?
        } else {
            None
        };
        let mut dyn_vaddr = 0u64;
        let mut addr_min = u64::MAX;
        let mut addr_max = 0u64;
        let mut off_start = 0u64;
        let mut prot = Prot::NONE;
        let mut first_phdr = 0;
        for (phdr, ph) in img.phdrs.iter().enumerate() {
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
                first_phdr = phdr;
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
            .map_mut()
            .task
            .mmap(
                addr_min,
                map_len,
                prot,
                Placement::Hint,
                Some((file.clone(), off_start)),
                Maker::MuslMapLibrary {
                    object: object.clone(),
                    phdr: first_phdr,
                },
            )
            .map_err(|e| err(host, e))?;
        if e_type != ET_DYN && addr_min != 0 && map != addr_min {
            self.map_mut().task.munmap(map, map_len);
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
        for (phdr, ph) in img
            .phdrs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.p_type == PT_LOAD)
        {
            let this_min = page_start(ph.p_vaddr);
            let this_max = page_align(ph.p_vaddr.wrapping_add(ph.p_memsz)).ok_or_else(bad)?;
            let off = page_start(ph.p_offset);
            let sprot = seg_prot(ph.p_flags);
            if this_min != addr_min && this_max > this_min {
                self.map_mut()
                    .task
                    .mmap(
                        base.wrapping_add(this_min),
                        this_max - this_min,
                        sprot,
                        Placement::Fixed,
                        Some((file.clone(), off)),
                        Maker::MuslMapLibrary {
                            object: object.clone(),
                            phdr,
                        },
                    )
                    .map_err(|e| err(host, e))?;
            }
            if ph.p_memsz > ph.p_filesz && ph.p_flags & PF_W != 0 {
                let brk = base.wrapping_add(ph.p_vaddr).wrapping_add(ph.p_filesz);
                let pgbrk = page_align(brk).ok_or_else(bad)?;
                let end = base.wrapping_add(this_max);
                if pgbrk.wrapping_sub(base) < this_max && end > pgbrk {
                    self.map_mut()
                        .task
                        .mmap(
                            pgbrk,
                            end - pgbrk,
                            sprot,
                            Placement::Fixed,
                            None,
                            Maker::MuslZeroFill {
                                object: object.clone(),
                                phdr,
                            },
                        )
                        .map_err(|e| err(host, e))?;
                }
            }
        }
        if dt_textrel {
            let why = Change::TextRelRwx {
                object: object.clone(),
            };
            self.map_mut().task.mprotect(map, map_len, Prot::RWX, &why);
        }
        if let Some(b) = allocated_buf {
            let m = self.map_mut();
            m.malloc.free(&mut m.task, b);
        }
        let (relro_start, relro_end) = relro_of(img);
        dso.span = Span {
            base,
            map,
            map_len,
            relro_start,
            relro_end,
            loads: phdr_mapped.then(|| loads_of(img)),
        };
        dso.object = Some(object);
        Ok(())
    }

    /// Models `ldso/dynlink.c: reclaim_gaps()`: for every writable, readable PT_LOAD of the
    /// object mapped at `span`, `reclaim()` the part of its first page before `p_vaddr` and
    /// the rest of its last page after `p_vaddr + p_memsz`.
    fn reclaim_gaps(&mut self, span: &Span) {
        let (base, rs, re) = (span.base, span.relro_start, span.relro_end);
        for &(vaddr, memsz, flags) in span.loads.as_deref().unwrap_or_default() {
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
        let m = self.map_mut();
        m.malloc.donate(&mut m.task, a, end - start);
    }

    /// Models `ldso/dynlink.c: queue_ctors(&app)` at start-up: a queue of one slot per
    /// object on the list (vDSO included) plus a terminator, `builtin_ctor_queue` if that
    /// is at most four, else `calloc(cnt, sizeof (struct dso *))`.
    fn queue_ctors(&mut self) -> Result<()> {
        let cnt = self.dsos.len() as u64 + u64::from(self.vdso.is_some()) + 1;
        if cnt > BUILTIN_CTOR_QUEUE {
            self.calloc(cnt, WORD, "constructor queue")?;
        }
        Ok(())
    }

    /// Models `ldso/dynlink.c: update_tls_size()` and the `builtin_tls` test of `__dls3`.
    fn update_tls_size(&self) -> InitialTls {
        let m = self.map.as_ref().expect("mapping state");
        let a = m.tls_align;
        let raw = (1 + m.tls_cnt)
            .wrapping_mul(WORD)
            .wrapping_add(m.tls_offset)
            .wrapping_add(SIZEOF_PTHREAD)
            .wrapping_add(a.wrapping_mul(2));
        let tls_size = raw.wrapping_add(a).wrapping_sub(1) & a.wrapping_neg();
        InitialTls {
            tls_size,
            tls_align: a,
            tls_cnt: m.tls_cnt,
            builtin: !(tls_size > SIZEOF_BUILTIN_TLS || a > MIN_TLS_ALIGN),
        }
    }

    /// The RELRO part of `ldso/dynlink.c: reloc_all()` for list entry `i`:
    /// `mprotect(base + relro_start, relro_end - relro_start, PROT_READ)`.
    fn reloc_all_one(&mut self, i: usize) {
        let d = &self.dsos[i];
        let s = &d.span;
        if s.relro_start == s.relro_end {
            return;
        }
        let start = s.base.wrapping_add(s.relro_start);
        let len = s.relro_end.wrapping_sub(s.relro_start);
        let why = Change::Relro {
            object: d.object.clone().expect("a mapped dso"),
        };
        self.map_mut().task.mprotect(start, len, Prot::R, &why);
    }
}

/// Where `load_library()` looks for the system path: `<prefix>/etc/ld-musl-<arch>.path`,
/// prefix being the loader's name up to its second-to-last '/' (empty for a name without a
/// leading '/').
pub(crate) fn path_file(ldso_name: &str, abi: Abi) -> String {
    let arch = match abi {
        Abi::X86_64 => "x86_64",
        Abi::I386 => "i386",
    };
    let prefix = if ldso_name.starts_with('/') {
        let mut slashes = ldso_name.rmatch_indices('/').map(|(i, _)| i);
        slashes.nth(1).unwrap_or(0)
    } else {
        0
    };
    format!("{}/etc/ld-musl-{arch}.path", &ldso_name[..prefix])
}

/// The `$ORIGIN` / `${ORIGIN}` substitution of `ldso/dynlink.c: fixup_rpath()`, for a path
/// string whose every '$' starts one of the two tokens (the caller has checked).
fn substitute_origin(s: &str, origin: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2 * origin.len());
    let mut rest = s;
    while let Some(p) = rest.find('$') {
        out.push_str(&rest[..p]);
        out.push_str(origin);
        let skip = if rest[p..].starts_with("${") { 9 } else { 7 };
        rest = &rest[p + skip..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// musl's rule (`ldso/dynlink.c: load_library()`): the prefix ends at the name's
    /// second-to-last '/', or is empty.
    #[test]
    fn deps_musl_path_file() {
        assert_eq!(
            path_file("/lib/ld-musl-x86_64.so.1", Abi::X86_64),
            "/etc/ld-musl-x86_64.path"
        );
        assert_eq!(
            path_file("/usr/local/musl/lib/libc.so", Abi::I386),
            "/usr/local/musl/etc/ld-musl-i386.path"
        );
        assert_eq!(path_file("/ld.so", Abi::X86_64), "/etc/ld-musl-x86_64.path");
        assert_eq!(path_file("ld.so", Abi::X86_64), "/etc/ld-musl-x86_64.path");
        // Without a leading '/' there is no prefix, however many '/' follow.
        assert_eq!(
            path_file("lib/x/ld.so", Abi::X86_64),
            "/etc/ld-musl-x86_64.path"
        );
        assert_eq!(substitute_origin("${ORIGIN}/a:$ORIGIN", "/o"), "/o/a:/o");
    }
}
