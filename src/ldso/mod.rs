//! DOC: the dynamic loader's start-up, from the exec stop to the debugger's "loaded" stop.
//!
//! Models glibc 2.36's `elf/rtld.c: dl_main()` (x86-64 and i386), for a program the kernel
//! mapped ([`dl_main`]) and for ld.so run as a command ([`dl_main_rtld_is_main`]), replaying
//! spec/ldso.md section 1 step by step on a copy of the exec-stop address space: the
//! minimal-malloc chunks (4.3, with the allocation ledger of 4.4), the `/etc/ld.so.cache`
//! mapping at the first cache lookup, every object mapped by `_dl_map_segments` (section 3),
//! the executable-stack `mprotect` (4.7), the static TLS block (4.5), the `STB_GNU_UNIQUE`
//! tables of C++ objects, TEXTREL and RELRO (4.1, 4.2) per object, then the program and
//! (only when some DT_NEEDED names ld.so, the 2.36 rule) ld.so itself, and the transient
//! `/etc/ld.so.preload` mapping. The result is the address space at the `r_debug`
//! RT_CONSISTENT rendezvous ([`Loaded::mm`]); [`Loaded::at_entry`] removes the cache mapping
//! as `_dl_unload_cache()` does right after it.
//!
//! Which file each DT_NEEDED resolves to is `crate::deps`' job ([`DepGraph`]); this module
//! only replays what ld.so does to the address space while loading them. It reads headers,
//! dynamic sections and the version tables; only the unique-symbol count ([`unique`])
//! reads symbol tables and relocations, and only when some object defines a unique symbol.
//!
//! * [`glibc`]: `_dl_map_object_from_fd`'s header walk, `_dl_map_segments`, RELRO, TEXTREL,
//!   executable stack.
//! * [`malloc`]: `__minimal_malloc` and the ledger.
//! * [`paths`]: the allocations of `_dl_init_paths`, `decompose_rpath`, `fillin_rpath`.
//! * [`tls`]: `init_tls`, `_dl_determine_tlsoffset`.
//! * [`versions`]: `_dl_check_map_versions`' array sizes.
//! * [`unique`]: `do_lookup_unique`'s tables.
//!
//! Not modelled (reported in [`Loaded::warnings`] where they are detected): audit modules
//! (LD_AUDIT, DT_AUDIT), DT_AUXILIARY/DT_FILTER, DT_SYMBOLIC scopes and symbol versions in
//! the unique-symbol lookup, the `glibc_hwcaps_priorities` array the cache lookup allocates
//! when it meets a glibc-hwcaps cache entry (this machine's cache has none), tunables in
//! GLIBC_TUNABLES, ld.so's own command-line options (`--library-path`, `--preload`, ...).

pub mod glibc;
pub mod malloc;
pub mod musl;
pub mod paths;
pub mod tls;
pub mod unique;
pub mod versions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::dynamic::DF_1_PIE;
use goblin::elf::program_header::PF_X;

use self::glibc::{Placed, Proc};
use self::malloc::MinimalMalloc;
use self::paths::{DstValuesOwned, PathCtx, SearchDirs, Where};
use self::tls::{StaticTls, TlsModule};
use crate::deps::hwcaps::LoaderHwcaps;
use crate::deps::{DepGraph, FoundVia, LoaderEnv};
use crate::elf::dynamic::{read_dynamic, DynamicInfo};
use crate::elf::{Abi, ElfImage, PT_GNU_RELRO, PT_GNU_STACK, PT_LOAD, PT_TLS};
use crate::error::{Error, Result};
use crate::kernel::binfmt_elf::ExecImage;
use crate::mm::{AddressSpace, FileRef, MmError, Placement, Prot};

/// `DL_NNS` (sysdeps/generic/ldsodefs.h): namespaces; the program's and the vDSO's link
/// maps reserve one `struct auditstate` per namespace.
pub const DL_NNS: u64 = 16;

/// Structure sizes of glibc 2.36 (spec/ldso.md 4.4). x86-64 from Debian's debug symbols;
/// i386 measured from link_map/TCB addresses (no debug symbols exist for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Pointer size.
    pub word: u64,
    /// `sizeof (struct link_map)`.
    pub link_map: u64,
    /// `sizeof (struct libname_list)`.
    pub libname_list: u64,
    /// `sizeof (struct auditstate)`.
    pub auditstate: u64,
    /// `sizeof (struct r_found_version)`.
    pub r_found_version: u64,
    /// `sizeof (struct r_search_path_elem)`.
    pub search_path_elem: u64,
    /// `sizeof (struct dtv_slotinfo_list)` and `sizeof (struct dtv_slotinfo)`.
    pub slotinfo_list: u64,
    pub slotinfo: u64,
    /// `sizeof (dtv_t)`.
    pub dtv: u64,
    /// `TLS_TCB_SIZE` = `sizeof (struct pthread)`.
    pub tcb: u64,
    /// `sizeof (struct dl_find_object_internal)`.
    pub find_object: u64,
    /// `sizeof (struct unique_sym)`.
    pub unique_sym: u64,
    /// `sizeof (ElfW(Phdr))`.
    pub phdr: u64,
}

impl Sizes {
    pub const X86_64: Sizes = Sizes {
        word: 8,
        link_map: 1192,
        libname_list: 24,
        auditstate: 16,
        r_found_version: 24,
        search_path_elem: 40,
        slotinfo_list: 16,
        slotinfo: 16,
        dtv: 16,
        tcb: 2368,
        find_object: 32,
        unique_sym: 32,
        phdr: 56,
    };
    pub const I386: Sizes = Sizes {
        word: 4,
        link_map: 640,
        libname_list: 12,
        auditstate: 8,
        r_found_version: 16,
        search_path_elem: 20,
        slotinfo_list: 8,
        slotinfo: 8,
        dtv: 8,
        tcb: 1216,
        find_object: 20,
        unique_sym: 16,
        phdr: 32,
    };

    pub fn for_abi(abi: Abi) -> &'static Sizes {
        match abi {
            Abi::X86_64 => &Sizes::X86_64,
            Abi::I386 => &Sizes::I386,
        }
    }
}

/// The vDSO's DT_SONAME and highest version index (arch/x86/entry/vdso/vdso.lds.S:
/// LINUX_2.6; vdso32/vdso32.lds.S: LINUX_2.6 and LINUX_2.5).
fn vdso_facts(abi: Abi) -> (&'static str, u32) {
    match abi {
        Abi::X86_64 => ("linux-vdso.so.1", 2),
        Abi::I386 => ("linux-gate.so.1", 3),
    }
}

/// What kind of link map an entry of the namespace list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapKind {
    Program,
    Vdso,
    Library,
    /// ld.so itself.
    Rtld,
}

/// One link map at the loaded stop, in namespace-list order.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkMap {
    pub kind: MapKind,
    /// `l_name`: the path string it was opened with ("" for the program).
    pub l_name: String,
    /// The file as maps shows it (none for the vDSO).
    pub path: Option<PathBuf>,
    pub l_addr: u64,
    pub l_map_start: u64,
    pub l_map_end: u64,
    /// `l_tls_offset` (the block is at TP - offset), if it has PT_TLS.
    pub tls_offset: Option<u64>,
    /// The RELRO range made read-only, if any.
    pub relro: Option<(u64, u64)>,
}

/// The static TLS block of the initial thread.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TlsBlock {
    /// What `_dl_allocate_tls_storage()` got from malloc.
    pub allocated: u64,
    pub request: u64,
    /// The thread pointer (`%fs` base / the GDT entry's base).
    pub tp: u64,
    pub layout: StaticTls,
}

/// The loader's result at the RT_CONSISTENT rendezvous.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub mm: AddressSpace,
    /// Namespace list order: program, vDSO, libraries (ld.so where a DT_NEEDED names it).
    pub maps: Vec<LinkMap>,
    /// The minimal-malloc state: the ledger and the chunks.
    pub malloc: MinimalMalloc,
    pub tls: Option<TlsBlock>,
    /// `/etc/ld.so.cache` as mapped (start, length) until `_dl_unload_cache()`.
    pub cache: Option<(u64, u64)>,
    /// An object asked for an executable stack and `[stack]` became `rwx`.
    pub stack_made_executable: bool,
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The address space at AT_ENTRY as far as ld.so is concerned: the loaded stop minus the
    /// `/etc/ld.so.cache` mapping (`elf/dl-cache.c: _dl_unload_cache()`, right after the
    /// RT_CONSISTENT call of `_dl_debug_state()`).
    ///
    /// N.B. between the two, `_dl_init` runs every library's constructors, which may add
    /// mappings of their own, most often a `[heap]` (libselinux, libp11-kit,
    /// libgpg-error, libstdc++'s emergency pool): those are not predicted.
    pub fn at_entry(&self) -> AddressSpace {
        let mut mm = self.mm.clone();
        if let Some((start, len)) = self.cache {
            mm.munmap(start, len);
        }
        mm
    }
}

/// What ld.so takes from the environment besides the search variables
/// (`elf/rtld.c: process_envvars()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtldOptions {
    /// `GLRO(dl_lazy)`: true unless LD_BIND_NOW is set to a non-empty value.
    pub lazy: bool,
    /// Keep the purpose of each minimal-malloc allocation in the ledger
    /// ([`malloc::Allocation::what`]), for comparing with the real ld.so under gdb.
    pub ledger: bool,
}

impl RtldOptions {
    /// From the program's environment (`NAME=value` strings).
    pub fn from_env(envp: &[std::ffi::OsString]) -> RtldOptions {
        use std::os::unix::ffi::OsStrExt;
        let mut lazy = true;
        for e in envp {
            if let Some(v) = e.as_bytes().strip_prefix(b"LD_BIND_NOW=") {
                lazy = v.is_empty();
            }
        }
        RtldOptions {
            lazy,
            ledger: false,
        }
    }
}

/// Per-object state during the replay, indexed like `DepGraph::objects`.
struct Obj {
    /// Mapped (the program and ld.so count as mapped from the start).
    loaded: bool,
    /// `l_name`.
    l_name: String,
    /// `l_libname`.
    libnames: Vec<String>,
    soname: Option<String>,
    soname_added: bool,
    /// `l_origin` (None: not computed yet, only for the program).
    origin: Option<String>,
    /// `l_rpath_dirs` / `l_runpath_dirs` decomposed yet.
    rpath_done: bool,
    runpath_done: bool,
    dynamic: Option<Arc<DynamicInfo>>,
    placed: Option<Placed>,
    relro: Option<(u64, u64)>,
    tls: Option<TlsModule>,
    img: Option<Arc<ElfImage>>,
}

/// `find_loaded`'s answer for the vDSO.
const VDSO: usize = usize::MAX;

/// A link map of the namespace list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Obj(usize),
    Vdso,
}

/// ld.so's state while it runs `dl_main`.
struct Rtld<'g> {
    abi: Abi,
    sizes: &'static Sizes,
    graph: &'g DepGraph,
    env: &'g LoaderEnv,
    proc: Proc,
    malloc: MinimalMalloc,
    dirs: SearchDirs,
    hw: LoaderHwcaps,
    objs: Vec<Obj>,
    /// `GL(dl_ns)[0]._ns_loaded` chain.
    chain: Vec<Node>,
    /// Index of ld.so in `objs` (it is always there, appended when no DT_NEEDED names it).
    rtld: usize,
    /// `GL(dl_stack_flags)`.
    stack_flags: u32,
    stack_made_executable: bool,
    /// `__libc_stack_end`: the initial stack pointer.
    libc_stack_end: u64,
    next_open_id: u32,
    cache: Option<(u64, u64)>,
    /// The `_dl_map_object_deps` scratch buffer: (address, length) once on the heap.
    scratch: Option<(u64, u64)>,
    /// The canonical program path (what `/proc/self/exe` says).
    exe: String,
    warnings: Vec<String>,
    program_path: PathBuf,
    tls: Option<TlsBlock>,
    opts: RtldOptions,
    invocation: Invocation,
    /// The path the program's file was opened at, when its image came from the kernel model.
    main_path: Option<PathBuf>,
    /// The unique-symbol tables a second thread computed while the resolver ran
    /// ([`unique::UniqueScan`]); used only if computed from the same objects.
    unique_ahead: Option<std::sync::mpsc::Receiver<unique::UniqueAhead>>,
    /// The version-array sizes it computed.
    ndx_ahead: Option<Arc<versions::NdxAhead>>,
}

/// What a helper thread computes for `dl_main` while the resolver runs: the unique-symbol
/// tables (sent when the load list is complete) and each object's version-array size.
pub struct Ahead {
    pub unique: std::sync::mpsc::Receiver<unique::UniqueAhead>,
    pub ndx: Arc<versions::NdxAhead>,
}

fn mm_err(path: &Path, e: MmError) -> Error {
    Error::load_failed(path, format!("out of memory in ld.so: {e}"))
}

/// Models `elf/rtld.c: dl_main()` for the normal case (the kernel mapped the program and
/// ld.so), up to the RT_CONSISTENT `_dl_debug_state()` call. glibc only.
pub fn dl_main(
    exec: &ExecImage,
    graph: &DepGraph,
    env: &LoaderEnv,
    opts: RtldOptions,
    ahead: Option<Ahead>,
) -> Result<Loaded> {
    let program_path = exec.program_file.path.clone();
    let interp = exec
        .interp
        .as_ref()
        .ok_or_else(|| Error::load_failed(&program_path, "no PT_INTERP: nothing to load"))?;
    let rtld = RtldStart {
        path: interp.path.clone(),
        load_addr: interp.load_addr,
        l_name: interp.requested.to_string_lossy().into_owned(),
        libname: interp.requested.to_string_lossy().into_owned(),
    };
    dl_main_common(exec, graph, env, opts, rtld, Invocation::Kernel, ahead)
}

/// Models `dl_main()` when ld.so itself was exec'd with the program's name as its first
/// argument (`ld.so ./prog`, the `rtld_is_main` branch; spec/ldso.md section 7): ld.so
/// maps the program with `_dl_map_object(NULL, argv[1], lt_executable, 0,
/// __RTLD_OPENEXEC)` before anything else (a PIE top-down like a library, an ET_EXEC at its
/// link addresses), then continues as for a program the kernel mapped. `graph` is the
/// program's load list; `program_name` is `argv[1]` as given. ld.so's own options
/// (`--library-path`, `--preload`, ...) are not modelled.
pub fn dl_main_rtld_is_main(
    exec: &ExecImage,
    graph: &DepGraph,
    env: &LoaderEnv,
    opts: RtldOptions,
    program_name: &str,
) -> Result<Loaded> {
    let ld_so = exec.program_file.path.clone();
    let host = &graph
        .objects
        .first()
        .ok_or_else(|| Error::load_failed(&ld_so, "empty load list"))?
        .host_path;
    let img = ElfImage::open(host)?;
    // Run this way, the program's `l_origin` is the directory of the name as given (made
    // absolute), not of /proc/self/exe; the resolver uses the canonical directory. Refuse
    // rather than guess when a DST would see the difference.
    let uses_origin = graph.objects[0].dynamic.as_ref().is_some_and(|d| {
        [&d.rpath, &d.runpath].iter().any(|l| {
            l.as_deref()
                .is_some_and(|s| s.contains("$ORIGIN") || s.contains("${ORIGIN}"))
        }) || d
            .needed
            .iter()
            .any(|n| n.contains("$ORIGIN") || n.contains("${ORIGIN}"))
    });
    if uses_origin {
        // _dl_new_object(): the name (after getcwd() if relative) up to its last '/'.
        let given = if program_name.starts_with('/') {
            program_name.to_string()
        } else {
            let cwd = env.cwd.to_string_lossy();
            format!("{}/{program_name}", cwd.trim_end_matches('/'))
        };
        let given_dir = paths_dirname(&given);
        let real_dir = graph.objects[0]
            .realpath
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if given_dir != real_dir {
            return Err(Error::Usage {
                path: host.clone(),
                reason: format!(
                    "ld.so run as a command: the program's $ORIGIN would be {} (the name as \
                     given), not {}; this case is not modelled",
                    given_dir, real_dir
                ),
            });
        }
    }
    // rtld_setup_main_map(): PT_INTERP of the program names ld.so.
    let libname = crate::elf::check::interp_path(&img)?
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rtld = RtldStart {
        path: ld_so,
        load_addr: exec.load_bias,
        l_name: exec.program_file.path.to_string_lossy().into_owned(),
        libname,
    };
    dl_main_common(
        exec,
        graph,
        env,
        opts,
        rtld,
        Invocation::RtldIsMain {
            program_name: program_name.to_string(),
        },
        None,
    )
}

/// If `argv` runs glibc's ld.so as a command on a program (`ld.so PROGRAM [ARGS]`, no ld.so
/// options), the program's name. `exec` must be the exec of a loader (no PT_INTERP).
pub fn rtld_is_main_program(exec: &ExecImage, argv: &[std::ffi::OsString]) -> Option<String> {
    if exec.interp.is_some() {
        return None;
    }
    let img = ElfImage::open(&exec.program_file.path).ok()?;
    let soname = read_dynamic(&img).ok()??.soname.clone()?;
    if !soname.starts_with("ld-linux") {
        return None;
    }
    let name = argv.get(1)?.to_str()?;
    (!name.starts_with('-')).then(|| name.to_string())
}

/// ld.so as the kernel mapped it.
struct RtldStart {
    path: PathBuf,
    load_addr: u64,
    /// `GL(dl_rtld_map).l_name`: the PT_INTERP string, or argv[0] when run as a command.
    l_name: String,
    /// Its first `l_libname`: the program's PT_INTERP string.
    libname: String,
}

/// How ld.so was started.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Invocation {
    /// The kernel mapped the program and ld.so (PT_INTERP).
    Kernel,
    /// ld.so was exec'd and maps the program named `program_name` itself.
    RtldIsMain { program_name: String },
}

fn dl_main_common(
    exec: &ExecImage,
    graph: &DepGraph,
    env: &LoaderEnv,
    opts: RtldOptions,
    rtld_start: RtldStart,
    invocation: Invocation,
    ahead: Option<Ahead>,
) -> Result<Loaded> {
    let program_path = exec.program_file.path.clone();
    if let Some(m) = graph.missing.first() {
        let by = graph
            .objects
            .get(m.needed_by)
            .map(|o| o.realpath.display().to_string())
            .unwrap_or_default();
        return Err(Error::load_failed(
            &program_path,
            format!(
                "error while loading shared libraries: {}: cannot open shared object file \
                 (needed by {by})",
                m.name
            ),
        ));
    }
    if graph.objects.is_empty() {
        return Err(Error::load_failed(&program_path, "empty load list"));
    }
    let abi = exec.abi;
    let sizes = Sizes::for_abi(abi);

    // ld.so as the kernel mapped it: `_end`, PT_GNU_RELRO, DT_SONAME.
    // The kernel model opened it already (same path: same file).
    let rtld_img = match [exec.interp_image.as_ref(), Some(&exec.program_image)]
        .into_iter()
        .flatten()
        .find(|i| i.path == rtld_start.path)
    {
        Some(i) => i.clone(),
        None => Arc::new(ElfImage::open(&rtld_start.path)?),
    };
    let rtld_end = rtld_img
        .loads()
        .map(|p| p.p_vaddr.saturating_add(p.p_memsz))
        .max()
        .unwrap_or(0);
    let rtld_dyn = read_dynamic(&rtld_img)?;
    let rtld_relro = rtld_img
        .phdrs
        .iter()
        .rev()
        .find(|p| p.p_type == PT_GNU_RELRO)
        .map(|p| (p.p_vaddr, p.p_memsz));

    let mut objs: Vec<Obj> = Vec::with_capacity(graph.objects.len() + 1);
    for o in &graph.objects {
        objs.push(Obj {
            loaded: false,
            l_name: o.path.to_string_lossy().into_owned(),
            libnames: vec![o.requested.clone()],
            soname: o
                .dynamic
                .as_ref()
                .and_then(|d| d.soname.clone())
                .or_else(|| o.soname.clone()),
            soname_added: false,
            origin: None,
            rpath_done: false,
            runpath_done: false,
            dynamic: o.dynamic.clone(),
            placed: None,
            relro: None,
            tls: None,
            img: None,
        });
    }
    let rtld = match graph.interp_index {
        Some(i) => i,
        None => {
            objs.push(Obj {
                loaded: true,
                l_name: String::new(),
                libnames: Vec::new(),
                soname: None,
                soname_added: false,
                origin: None,
                rpath_done: true,
                runpath_done: true,
                dynamic: None,
                placed: None,
                relro: None,
                tls: None,
                img: None,
            });
            objs.len() - 1
        }
    };
    {
        // rtld_setup_main_map(): PT_INTERP names ld.so; dl_main adds its DT_SONAME.
        let r = &mut objs[rtld];
        r.l_name = rtld_start.l_name.clone();
        r.libnames = vec![rtld_start.libname.clone()];
        let soname = rtld_dyn.as_ref().and_then(|d| d.soname.clone());
        if let Some(s) = &soname {
            if !r.libnames.contains(s) {
                r.libnames.push(s.clone());
            }
        }
        r.soname = soname;
        r.loaded = true;
        r.rpath_done = true;
        r.runpath_done = true;
        r.relro = rtld_relro;
        r.dynamic = rtld_dyn;
        let l_addr = rtld_start.load_addr;
        let first = rtld_img.loads().next().map(|p| p.p_vaddr).unwrap_or(0);
        r.placed = Some(Placed {
            l_addr,
            l_map_start: l_addr.wrapping_add(crate::addr::page_start(first)),
            l_map_end: l_addr.wrapping_add(rtld_end),
            l_contiguous: true,
        });
        r.img = Some(rtld_img);
    }

    let exe = exec.program_file.path.to_string_lossy().into_owned();
    // GL(dl_stack_flags) starts as DEFAULT_STACK_PERMS; run as a command, ld.so first takes
    // its own PT_GNU_STACK (what the kernel honoured).
    let stack_flags = match invocation {
        Invocation::Kernel => glibc::DEFAULT_STACK_PERMS,
        Invocation::RtldIsMain { .. } => objs[rtld]
            .img
            .as_ref()
            .and_then(|i| i.phdr(PT_GNU_STACK))
            .map_or(glibc::DEFAULT_STACK_PERMS, |p| p.p_flags),
    };
    let mut rt = Rtld {
        abi,
        sizes,
        graph,
        env,
        proc: Proc {
            mm: exec.mm.clone(),
            read_implies_exec: exec.read_implies_exec,
        },
        malloc: MinimalMalloc::new(
            rtld_start.load_addr.wrapping_add(rtld_end),
            exec.read_implies_exec,
        )
        .with_labels(opts.ledger),
        dirs: SearchDirs::default(),
        hw: LoaderHwcaps::for_abi(abi, &env.cpu),
        objs,
        chain: Vec::new(),
        rtld,
        stack_flags,
        stack_made_executable: false,
        libc_stack_end: exec.mm.start_stack,
        next_open_id: exec.next_open_id,
        cache: None,
        scratch: None,
        exe,
        warnings: graph.warnings.clone(),
        program_path: program_path.clone(),
        tls: None,
        opts,
        invocation,
        main_path: None,
        unique_ahead: None,
        ndx_ahead: None,
    };
    if let Some(a) = ahead {
        rt.unique_ahead = Some(a.unique);
        rt.ndx_ahead = Some(a.ndx);
    }
    rt.run(exec)?;
    Ok(rt.finish())
}

impl Rtld<'_> {
    fn err(&self, e: MmError) -> Error {
        mm_err(&self.program_path, e)
    }

    fn malloc(&mut self, n: u64, what: impl std::fmt::Display) -> Result<u64> {
        self.malloc
            .malloc(&mut self.proc.mm, n, what)
            .map_err(|e| mm_err(&self.program_path, e))
    }

    /// The steps of `dl_main()` in order.
    fn run(&mut self, exec: &ExecImage) -> Result<()> {
        self.setup_main_map(exec)?;
        self.setup_vdso(exec)?;
        self.dl_init_paths()?;
        self.preloads()?;
        self.dl_map_object_deps()?;
        self.place_rtld_in_chain();
        self.dl_check_all_versions()?;
        let tcb = self.init_tls()?;
        self.relocate_all()?;
        if self.rtld_multiple_ref() {
            self.dl_find_object_init()?;
            // The re-relocation of ld.so ends with its RELRO.
            let r = self.rtld;
            self.protect_relro(r);
        }
        self.tls = tcb;
        Ok(())
    }

    fn finish(self) -> Loaded {
        let maps = self
            .chain
            .iter()
            .map(|n| match *n {
                Node::Vdso => LinkMap {
                    kind: MapKind::Vdso,
                    l_name: vdso_facts(self.abi).0.to_string(),
                    path: None,
                    l_addr: 0,
                    l_map_start: 0,
                    l_map_end: 0,
                    tls_offset: None,
                    relro: None,
                },
                Node::Obj(i) => {
                    let o = &self.objs[i];
                    let p = o.placed.unwrap_or(Placed {
                        l_addr: 0,
                        l_map_start: 0,
                        l_map_end: 0,
                        l_contiguous: true,
                    });
                    let kind = if i == 0 {
                        MapKind::Program
                    } else if i == self.rtld {
                        MapKind::Rtld
                    } else {
                        MapKind::Library
                    };
                    let tls_offset = self.tls.as_ref().and_then(|t| {
                        let slot = self
                            .chain
                            .iter()
                            .filter_map(|n| match n {
                                Node::Obj(j) if self.objs[*j].tls.is_some() => Some(*j),
                                _ => None,
                            })
                            .position(|j| j == i)?;
                        t.layout.offsets.get(slot).copied()
                    });
                    LinkMap {
                        kind,
                        l_name: o.l_name.clone(),
                        path: match (&self.main_path, i) {
                            (Some(p), 0) => Some(p.clone()),
                            _ => o.img.as_ref().map(|im| im.path.clone()),
                        },
                        l_addr: p.l_addr,
                        l_map_start: p.l_map_start,
                        l_map_end: p.l_map_end,
                        tls_offset,
                        relro: o.relro.map(|(v, m)| {
                            let s = crate::addr::page_start(p.l_addr.wrapping_add(v));
                            let e = crate::addr::page_start(p.l_addr.wrapping_add(v + m));
                            (s, e)
                        }),
                    }
                }
            })
            .collect();
        Loaded {
            mm: self.proc.mm,
            maps,
            malloc: self.malloc,
            tls: self.tls,
            cache: self.cache,
            stack_made_executable: self.stack_made_executable,
            warnings: self.warnings,
        }
    }

    fn rtld_multiple_ref(&self) -> bool {
        self.graph.interp_index.is_some()
    }

    /// `_dl_new_object("", "", lt_executable, NULL, __RTLD_OPENEXEC, 0)` and
    /// `rtld_setup_main_map()`: the program's link map (room for DL_NNS audit states),
    /// its RELRO, TLS and PT_GNU_STACK, and `l_contiguous`.
    fn setup_main_map(&mut self, exec: &ExecImage) -> Result<()> {
        let s = self.sizes;
        let main_map_size = s.link_map + DL_NNS * s.auditstate + s.word + s.libname_list + 1;
        let host = self.graph.objects[0].host_path.clone();
        let want = if host.as_os_str().is_empty() {
            &exec.program_file.path
        } else {
            &host
        };
        // The kernel model opened the program already; reuse its map when it is the file
        // ld.so is given (its path as opened stays what LinkMap shows).
        let img = if self.invocation == Invocation::Kernel {
            self.main_path = Some(want.clone());
            exec.program_image.clone()
        } else {
            Arc::new(ElfImage::open(want)?)
        };
        let l_addr = match self.invocation.clone() {
            Invocation::Kernel => {
                self.malloc(main_map_size, "link_map of the program")?;
                exec.load_bias
            }
            Invocation::RtldIsMain { program_name } => {
                self.map_main_program(&img, &host, &program_name, main_map_size)?
            }
        };
        let mut map_start = u64::MAX;
        let mut map_end = 0u64;
        let mut contiguous = true;
        let mut expected = 0u64;
        let mut relro = None;
        let mut tls = None;
        for ph in &img.phdrs {
            match ph.p_type {
                PT_LOAD => {
                    let mapstart = l_addr.wrapping_add(crate::addr::page_start(ph.p_vaddr));
                    map_start = map_start.min(mapstart);
                    if contiguous && expected != 0 && expected != mapstart {
                        contiguous = false;
                    }
                    let allocend = l_addr.wrapping_add(ph.p_vaddr).wrapping_add(ph.p_memsz);
                    map_end = map_end.max(allocend);
                    expected = crate::addr::page_align(allocend).unwrap_or(u64::MAX);
                }
                PT_TLS if ph.p_memsz > 0 => {
                    tls = Some(TlsModule::from_phdr(ph.p_vaddr, ph.p_memsz, ph.p_align));
                }
                PT_GNU_STACK => self.stack_flags = ph.p_flags,
                PT_GNU_RELRO => relro = Some((ph.p_vaddr, ph.p_memsz)),
                _ => {}
            }
        }
        let o = &mut self.objs[0];
        o.l_name = String::new();
        o.libnames = vec![String::new()];
        o.loaded = true;
        o.rpath_done = true;
        o.runpath_done = true;
        o.placed = Some(Placed {
            l_addr,
            l_map_start: map_start,
            l_map_end: map_end,
            l_contiguous: contiguous,
        });
        o.relro = relro;
        o.tls = tls;
        o.img = Some(img);
        // main -> ld.so -> vDSO -> preloads -> ...
        self.chain.push(Node::Obj(0));
        self.chain.push(Node::Obj(self.rtld));
        Ok(())
    }

    /// The `rtld_is_main` branch of `dl_main()`: `_dl_map_object(NULL, name, lt_executable,
    /// 0, __RTLD_OPENEXEC)`. A name with '/' is `strdup`ed and opened as is; then
    /// `_dl_new_object()` (the program's link map with DL_NNS audit states, and `l_origin`
    /// from the name), `_dl_map_segments()` (ET_EXEC: at the link addresses), the program
    /// header copy if needed, and the executable-stack check against ld.so's own
    /// PT_GNU_STACK. Returns `l_addr`.
    fn map_main_program(
        &mut self,
        img: &ElfImage,
        host: &Path,
        name: &str,
        main_map_size: u64,
    ) -> Result<u64> {
        if !name.contains('/') {
            // Before _dl_init_paths there are no search directories; only the cache would
            // be consulted.
            return Err(Error::Usage {
                path: host.to_path_buf(),
                reason: "ld.so run as a command on a name without '/' is not modelled".into(),
            });
        }
        self.malloc(name.len() as u64 + 1, format_args!("realname {name}"))?;
        self.malloc(main_map_size, "link_map of the program")?;
        self.dl_new_object_origin(0, name)?;
        let hdr = glibc::read_object_headers(img)?;
        let file = self.file_ref(host)?;
        let et_exec = img.e_type() == goblin::elf::header::ET_EXEC;
        let placed = glibc::dl_map_segments(&mut self.proc, host, &hdr, &file, et_exec)?;
        if !hdr.phdr_mapped {
            self.malloc(
                u64::from(img.header.e_phnum) * self.sizes.phdr,
                "program headers of the program",
            )?;
        }
        if (hdr.stack_flags & !self.stack_flags) & PF_X != 0 {
            glibc::dl_make_stack_executable(&mut self.proc, self.libc_stack_end);
            self.stack_flags |= PF_X;
            self.stack_made_executable = true;
        }
        Ok(placed.l_addr)
    }

    /// Models `elf/setup-vdso.h: setup_vdso()`: a link map for the vDSO image (the same
    /// worst-case audit room as the program's), named by its DT_SONAME. Nothing is mapped.
    fn setup_vdso(&mut self, exec: &ExecImage) -> Result<()> {
        if exec.vdso_base == 0 {
            return Ok(());
        }
        let s = self.sizes;
        self.malloc(
            s.link_map + DL_NNS * s.auditstate + s.word + s.libname_list + 1,
            "link_map of the vDSO",
        )?;
        self.chain.push(Node::Vdso);
        Ok(())
    }

    /// The DST values of object `i` (the program's origin is computed on first use).
    fn dst_values(&mut self, i: usize) -> DstValuesOwned {
        DstValuesOwned {
            origin: self.objs[i].origin.clone(),
            platform: self.hw.dl_platform.to_string(),
            lib: paths::dl_dst_lib(self.abi).to_string(),
        }
    }

    /// Models `sysdeps/unix/sysv/linux/dl-origin.c: _dl_get_origin()` for the program:
    /// `readlink("/proc/self/exe")`, cut after the last '/', `malloc(len + 1)`.
    fn program_origin(exe: &str, ctx: &mut PathCtx) -> std::result::Result<String, MmError> {
        let cut = exe.rfind('/').map_or(1, |i| i + 1);
        ctx.malloc
            .malloc(ctx.mm, cut as u64 + 1, "_dl_get_origin (program)")?;
        Ok(if cut == 1 {
            "/".to_string()
        } else {
            exe[..cut - 1].to_string()
        })
    }

    /// Models `elf/dl-load.c: _dl_init_paths()` (via `call_init_paths()`): the hwcaps
    /// tables, the system directories, the program's RUNPATH (else RPATH), LD_LIBRARY_PATH.
    fn dl_init_paths(&mut self) -> Result<()> {
        let s = self.sizes;
        let hws = paths::dl_important_hwcaps(&self.hw, s.word);
        self.malloc(hws.priorities, "hwcaps priorities (compute_priorities)")?;
        self.malloc(hws.table, "_dl_important_hwcaps table")?;
        let sys = paths::system_dirs(self.abi);
        let n_sys = sys.len() as u64;
        self.malloc((n_sys + 1) * s.word, "system search directory array")?;
        let round_size = (2 * s.search_path_elem - 1 + hws.ncapstr * 4) / s.search_path_elem;
        self.malloc(
            n_sys * round_size * s.search_path_elem,
            "system search directory elements",
        )?;
        self.dirs = SearchDirs {
            all_dirs: sys.iter().map(|d| d.to_string()).collect(),
            ncapstr: hws.ncapstr,
        };
        let dynamic = self.objs[0].dynamic.clone().unwrap_or_default();
        if let Some(runpath) = &dynamic.runpath {
            self.decompose_program(runpath, "RUNPATH")?;
        } else if let Some(rpath) = &dynamic.rpath {
            self.decompose_program(rpath, "RPATH")?;
        }
        if !self.env.secure {
            if let Some(llp) = self.env.ld_library_path.clone().filter(|s| !s.is_empty()) {
                self.ld_library_path(&llp)?;
            }
        }
        Ok(())
    }

    /// `decompose_rpath()` of the program's list (`where` = its empty `l_name`).
    fn decompose_program(&mut self, list: &str, what: &str) -> Result<()> {
        let exe = self.exe.clone();
        let mut origin = self.objs[0].origin.clone();
        let platform = self.hw.dl_platform.to_string();
        let lib = paths::dl_dst_lib(self.abi).to_string();
        let mut ctx = PathCtx {
            mm: &mut self.proc.mm,
            malloc: &mut self.malloc,
            sizes: self.sizes,
            dirs: &mut self.dirs,
        };
        let mut values = |c: &mut PathCtx| {
            if origin.is_none() {
                origin = Some(Self::program_origin(&exe, c)?);
            }
            Ok(DstValuesOwned {
                origin: origin.clone(),
                platform: platform.clone(),
                lib: lib.clone(),
            })
        };
        let r = ctx.decompose_rpath(list, Where::Object(""), &mut values, what);
        r.map_err(|e| mm_err(&self.program_path, e))?;
        self.objs[0].origin = origin;
        Ok(())
    }

    /// The LD_LIBRARY_PATH part of `_dl_init_paths()`: DSTs substituted on the stack
    /// (`DL_DST_REQUIRED` may compute the program's origin), the array `(n + 1) * P` with
    /// n = 1 + the number of ':' and ';', then `fillin_rpath` without `where`.
    /// The program's `$ORIGIN`, computed (and its memory allocated) the first time a DST
    /// needs it, as `_dl_get_origin()` is called lazily.
    fn ensure_program_origin(&mut self) -> Result<()> {
        if self.objs[0].origin.is_none() {
            let exe = self.exe.clone();
            let mut ctx = PathCtx {
                mm: &mut self.proc.mm,
                malloc: &mut self.malloc,
                sizes: self.sizes,
                dirs: &mut self.dirs,
            };
            let o = Self::program_origin(&exe, &mut ctx).map_err(|e| self.err(e))?;
            self.objs[0].origin = Some(o);
        }
        Ok(())
    }

    fn ld_library_path(&mut self, llp: &str) -> Result<()> {
        let mut llp = llp.to_string();
        if paths::dl_dst_count(&llp) > 0 {
            self.ensure_program_origin()?;
            let v = self.dst_values(0);
            llp = v.as_values().dl_dst_substitute(&llp);
        }
        let n = 1 + llp.bytes().filter(|&b| b == b':' || b == b';').count() as u64;
        let array = self.malloc((n + 1) * self.sizes.word, "LD_LIBRARY_PATH array")?;
        let mut ctx = PathCtx {
            mm: &mut self.proc.mm,
            malloc: &mut self.malloc,
            sizes: self.sizes,
            dirs: &mut self.dirs,
        };
        let mut none = |_: &mut PathCtx| {
            Ok(DstValuesOwned {
                origin: None,
                platform: String::new(),
                lib: String::new(),
            })
        };
        let k = ctx
            .fillin_rpath(&llp, &[':', ';'], Where::Env, &mut none, "LD_LIBRARY_PATH")
            .map_err(|e| mm_err(&self.program_path, e))?;
        if k == 0 {
            self.malloc.free(array);
        }
        Ok(())
    }

    /// `cache_rpath(l, &l->l_rpath_dirs or l_runpath_dirs, ...)`: decompose object `i`'s
    /// DT_RPATH (or DT_RUNPATH) the first time a search needs it. True if it has a list.
    fn cache_rpath(&mut self, i: usize, runpath: bool) -> Result<bool> {
        let (done, list) = {
            let o = &self.objs[i];
            let d = o.dynamic.as_ref();
            if runpath {
                (o.runpath_done, d.and_then(|d| d.runpath.clone()))
            } else {
                (o.rpath_done, d.and_then(|d| d.rpath.clone()))
            }
        };
        let Some(list) = list else {
            return Ok(false);
        };
        if i == 0 {
            // The program's lists were decomposed by _dl_init_paths (RPATH only without
            // RUNPATH).
            let has_runpath = self.objs[0]
                .dynamic
                .as_ref()
                .is_some_and(|d| d.runpath.is_some());
            return Ok(runpath || !has_runpath);
        }
        if done {
            return Ok(true);
        }
        if runpath {
            self.objs[i].runpath_done = true;
        } else {
            self.objs[i].rpath_done = true;
        }
        let where_ = self.objs[i].l_name.clone();
        let v = self.dst_values(i);
        let what = if runpath { "RUNPATH" } else { "RPATH" };
        let mut ctx = PathCtx {
            mm: &mut self.proc.mm,
            malloc: &mut self.malloc,
            sizes: self.sizes,
            dirs: &mut self.dirs,
        };
        let mut values = |_: &mut PathCtx| Ok(v.clone());
        ctx.decompose_rpath(&list, Where::Object(&where_), &mut values, what)
            .map_err(|e| mm_err(&self.program_path, e))
    }

    /// The search part of `_dl_map_object()` for object `k` found as `via` on behalf of
    /// `loader`: the lazy RPATH/RUNPATH decompositions on the way, then the first cache
    /// lookup's mapping.
    fn search_costs(&mut self, k: usize, loader: usize, via: FoundVia) -> Result<()> {
        let bare = matches!(
            via,
            FoundVia::Rpath { .. }
                | FoundVia::LdLibraryPath
                | FoundVia::Runpath { .. }
                | FoundVia::Cache
                | FoundVia::DefaultDir
        );
        if bare {
            let loader_runpath = self.objs[loader]
                .dynamic
                .as_ref()
                .is_some_and(|d| d.runpath.is_some());
            let mut found = false;
            if !loader_runpath {
                let mut l = Some(loader);
                let mut guard = 0;
                while let Some(x) = l {
                    if self.cache_rpath(x, false)? && via == (FoundVia::Rpath { of: x }) {
                        found = true;
                        break;
                    }
                    l = self.graph.objects[x].loader;
                    guard += 1;
                    if guard > self.objs.len() {
                        break;
                    }
                }
                if matches!(via, FoundVia::Rpath { .. }) {
                    found = true;
                }
            }
            if !found && via != FoundVia::LdLibraryPath && loader_runpath {
                self.cache_rpath(loader, true)?;
            }
        }
        if self.graph.first_cache_use == Some(k) {
            self.map_cache()?;
        }
        Ok(())
    }

    /// `_dl_load_cache_lookup()`'s first call: `_dl_sysdep_read_whole_file()` maps the whole
    /// `/etc/ld.so.cache` read-only (an invalid file is unmapped again at once).
    fn map_cache(&mut self) -> Result<()> {
        let Some(c) = &self.graph.cache else {
            return Ok(());
        };
        if self.cache.is_some() || c.size == 0 {
            return Ok(());
        }
        let file = self.file_ref(&c.host_path)?;
        let addr = self
            .proc
            .mmap(0, c.size, Prot::R, Placement::Hint, Some((file, 0)))
            .map_err(|e| self.err(e))?;
        if c.valid {
            self.cache = Some((addr, c.size));
        } else {
            self.proc.munmap(addr, c.size);
        }
        Ok(())
    }

    /// The `FileRef` of object `k`: a new open of its file.
    fn object_file_ref(&mut self, k: usize) -> Result<Arc<FileRef>> {
        let o = &self.graph.objects[k];
        if self.env.root.is_none() && o.image.is_some() && o.realpath == o.host_path {
            // The resolver canonicalized the path and fstat'ed the file it opened.
            let id = self.next_open_id;
            self.next_open_id += 1;
            return Ok(FileRef::open(
                crate::host::fs::file_id_known(&o.host_path, o.dev, o.ino),
                id,
            ));
        }
        let host = o.host_path.clone();
        self.file_ref(&host)
    }

    fn file_ref(&mut self, path: &Path) -> Result<Arc<FileRef>> {
        let id = self.next_open_id;
        self.next_open_id += 1;
        open_file(path, id)
    }

    /// Models `rtld.c: handle_preload_list()` / `do_preload()` and the
    /// `/etc/ld.so.preload` block: each preload is `_dl_map_object(main_map, name, ...)`;
    /// the preload file is mapped read-write private while its names are loaded, then
    /// unmapped.
    fn preloads(&mut self) -> Result<()> {
        let env_names: Vec<String> = self
            .env
            .ld_preload
            .as_deref()
            .unwrap_or("")
            .split([' ', ':'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let preload_objs: Vec<usize> = (1..self.graph.objects.len())
            .take_while(|&i| self.graph.objects[i].found_via == FoundVia::Preload)
            .collect();
        let (from_env, from_file): (Vec<usize>, Vec<usize>) = preload_objs
            .iter()
            .partition(|&&i| env_names.contains(&self.graph.objects[i].requested));
        for &i in &from_env {
            let name = self.graph.objects[i].requested.clone();
            self.dl_map_object(0, &name, Some(i))?;
        }
        if let Some(pf) = &self.graph.preload_file {
            let size = pf.size;
            let path = pf.path.clone();
            let file = self.file_ref(&crate::kernel::binfmt_elf::under_root(
                self.env.root.as_deref(),
                &path,
            ))?;
            let addr = self
                .proc
                .mmap(0, size, Prot::RW, Placement::Hint, Some((file, 0)))
                .map_err(|e| self.err(e))?;
            for &i in &from_file {
                let name = self.graph.objects[i].requested.clone();
                self.dl_map_object(0, &name, Some(i))?;
            }
            self.proc.munmap(addr, size);
        }
        Ok(())
    }

    /// Models `_dl_name_match_p()` plus the SONAME branch of `_dl_map_object()`'s
    /// already-loaded check: the first object on the namespace list whose `l_name` or a
    /// `l_libname` entry is `name`, or (once per object) whose DT_SONAME is, in which case
    /// the name is added (`add_name_to_object`, a small malloc).
    fn find_loaded(&mut self, name: &str) -> Result<Option<usize>> {
        let vdso_name = vdso_facts(self.abi).0;
        for p in 0..self.chain.len() {
            let i = match self.chain[p] {
                Node::Vdso => {
                    if name == vdso_name {
                        return Ok(Some(VDSO));
                    }
                    continue;
                }
                Node::Obj(i) => i,
            };
            let o = &self.objs[i];
            if i != 0 && (o.l_name == name || o.libnames.iter().any(|l| l == name)) {
                return Ok(Some(i));
            }
            if o.soname_added || o.soname.as_deref() != Some(name) {
                continue;
            }
            self.add_name_to_object(i, name)?;
            self.objs[i].soname_added = true;
            return Ok(Some(i));
        }
        Ok(None)
    }

    /// Models `add_name_to_object()`: nothing if the name is known, else
    /// `malloc(sizeof (struct libname_list) + strlen (name) + 1)`.
    fn add_name_to_object(&mut self, i: usize, name: &str) -> Result<()> {
        if self.objs[i].libnames.iter().any(|l| l == name) {
            return Ok(());
        }
        self.malloc(
            self.sizes.libname_list + name.len() as u64 + 1,
            format_args!("libname {name}"),
        )?;
        self.objs[i].libnames.push(name.to_string());
        Ok(())
    }

    /// Models `_dl_map_object(loader, name, ...)`: already loaded, or search (costs in
    /// [`Rtld::search_costs`]), `realname`, then `_dl_map_object_from_fd()`. `target` is the
    /// object the resolver found for this name.
    fn dl_map_object(&mut self, loader: usize, name: &str, target: Option<usize>) -> Result<usize> {
        if let Some(i) = self.find_loaded(name)? {
            if let Some(t) = target {
                if t != i && i != VDSO {
                    self.warnings.push(format!(
                        "ld.so model: {name} matched {} by name, the resolver says {}",
                        self.objs[i].l_name, self.objs[t].l_name
                    ));
                }
            }
            return Ok(i);
        }
        let Some(k) = target else {
            return Err(Error::load_failed(
                &self.program_path,
                format!("{name}: cannot open shared object file"),
            ));
        };
        let via = self.graph.objects[k].found_via;
        self.search_costs(k, loader, via)?;
        let path = self.graph.objects[k].path.to_string_lossy().into_owned();
        let realname = self.malloc(path.len() as u64 + 1, format_args!("realname {path}"))?;
        if self.objs[k].loaded {
            // _dl_map_object_from_fd(): same (st_dev, st_ino) as a loaded object: close,
            // free (realname), add the name.
            self.malloc.free(realname);
            self.add_name_to_object(k, name)?;
            return Ok(k);
        }
        self.dl_map_object_from_fd(k, name, &path)?;
        Ok(k)
    }

    /// Models `elf/dl-load.c: _dl_map_object_from_fd()`: `_dl_new_object()` (the link map
    /// with its name, then `l_origin`), the program-header walk, `_dl_map_segments()`, a copy
    /// of the program headers when no segment holds them, and the executable-stack change.
    fn dl_map_object_from_fd(&mut self, k: usize, name: &str, realname: &str) -> Result<()> {
        let s = self.sizes;
        let dep = &self.graph.objects[k];
        let host = dep.host_path.clone();
        let img = match &dep.image {
            Some(i) => i.clone(),
            None => Arc::new(ElfImage::open(&host)?),
        };
        if self.objs[k]
            .dynamic
            .as_ref()
            .is_some_and(|d| d.flags_1 & DF_1_PIE != 0)
        {
            return Err(Error::load_failed(
                &host,
                "cannot dynamically load position-independent executable",
            ));
        }
        let hdr = glibc::read_object_headers(&img)?;
        // _dl_new_object (realname, name, lt_library, loader, mode, nsid), naudit = 0.
        self.malloc(
            s.link_map + s.word + s.libname_list + name.len() as u64 + 1,
            format_args!("link_map {name}"),
        )?;
        self.dl_new_object_origin(k, realname)?;
        let file = self.object_file_ref(k)?;
        let et_exec = img.e_type() == goblin::elf::header::ET_EXEC;
        if et_exec {
            return Err(Error::load_failed(
                &host,
                "cannot dynamically load executable",
            ));
        }
        let placed = glibc::dl_map_segments(&mut self.proc, &host, &hdr, &file, false)?;
        if !hdr.phdr_mapped {
            self.malloc(
                u64::from(img.header.e_phnum) * s.phdr,
                format_args!("program headers of {name}"),
            )?;
        }
        if (hdr.stack_flags & !self.stack_flags) & PF_X != 0 {
            glibc::dl_make_stack_executable(&mut self.proc, self.libc_stack_end);
            self.stack_flags |= PF_X;
            self.stack_made_executable = true;
        }
        let o = &mut self.objs[k];
        o.loaded = true;
        o.l_name = realname.to_string();
        o.libnames = vec![name.to_string()];
        o.placed = Some(placed);
        o.relro = hdr.relro;
        o.tls = hdr.tls;
        o.img = Some(img);
        if o.dynamic
            .as_ref()
            .is_some_and(|d| !d.auxiliary.is_empty() || !d.filter.is_empty())
        {
            self.warnings.push(format!(
                "ld.so model: {realname} has DT_AUXILIARY/DT_FILTER entries (not modelled)"
            ));
        }
        self.chain.push(Node::Obj(k));
        Ok(())
    }

    /// The `l_origin` part of `_dl_new_object()`: an absolute realname costs
    /// `strlen + 1`; a relative one a `getcwd` buffer grown by 128 bytes at a time.
    fn dl_new_object_origin(&mut self, k: usize, realname: &str) -> Result<()> {
        let len = realname.len() as u64 + 1;
        let origin = if realname.starts_with('/') {
            self.malloc(len, format_args!("l_origin of {realname}"))?;
            paths_dirname(realname)
        } else {
            let cwd = self.env.cwd.to_string_lossy().into_owned();
            let mut size = len + 128;
            self.malloc(size, format_args!("l_origin (getcwd) of {realname}"))?;
            while (cwd.len() as u64 + 1) > size - len {
                // realloc of the last block: same start, bigger.
                self.malloc.free_last();
                size += 128;
                self.malloc(size, format_args!("l_origin (getcwd) of {realname}"))?;
            }
            let full = format!("{}/{}", cwd.trim_end_matches('/'), realname);
            paths_dirname(&full)
        };
        self.objs[k].origin = Some(origin);
        Ok(())
    }

    /// Models `elf/dl-deps.c: _dl_map_object_deps(main_map, preloads, ...)`: breadth-first
    /// over the load list, every DT_NEEDED of each object in order (DSTs expanded on the
    /// stack), then the object's `l_initfini` array; the scratch buffer for objects with
    /// more than 1024 bytes of dynamic entries; finally the search list.
    fn dl_map_object_deps(&mut self) -> Result<()> {
        let n = self.graph.objects.len();
        for l in 0..n {
            let dynamic = self.objs[l].dynamic.clone().unwrap_or_default();
            let want_initfini = l != 0 && l != self.rtld && dynamic.n_entries > 0;
            if want_initfini {
                let need = dynamic.n_entries as u64 * self.sizes.word;
                let cur = self.scratch.map_or(1024, |(_, len)| len);
                if need > cur {
                    if let Some((addr, _)) = self.scratch {
                        self.malloc.free(addr);
                    }
                    let addr = self.malloc(need, "dependency scratch buffer")?;
                    self.scratch = Some((addr, need));
                }
            }
            let targets = self.graph.objects[l].needed.clone();
            for (j, raw) in dynamic.needed.iter().enumerate() {
                let name = if paths::dl_dst_count(raw) > 0 {
                    if l == 0 {
                        self.ensure_program_origin()?;
                    }
                    self.dst_values(l).as_values().dl_dst_substitute(raw)
                } else {
                    raw.clone()
                };
                let target = targets.get(j).copied();
                self.dl_map_object(l, &name, target)?;
            }
            if want_initfini {
                let nneeded = dynamic.needed.len() as u64 + 1;
                let what = if self.opts.ledger {
                    format!("l_initfini of {}", self.objs[l].l_name)
                } else {
                    String::new()
                };
                self.malloc((2 * nneeded + 1) * self.sizes.word, what)?;
            }
        }
        if let Some((addr, _)) = self.scratch {
            self.malloc.free(addr);
        }
        self.malloc(
            (2 * n as u64 + 1) * self.sizes.word,
            "search list of the program",
        )?;
        Ok(())
    }

    /// After `_dl_map_object_deps`, dl_main takes ld.so out of the namespace list and, if a
    /// DT_NEEDED named it, puts it back after its predecessor in the search list (after the
    /// vDSO if that predecessor is the program).
    fn place_rtld_in_chain(&mut self) {
        let r = self.rtld;
        self.chain.retain(|n| *n != Node::Obj(r));
        let Some(i) = self.graph.interp_index else {
            return;
        };
        let prev = i - 1;
        let mut pos = self
            .chain
            .iter()
            .position(|n| *n == Node::Obj(prev))
            .map_or(self.chain.len(), |p| p + 1);
        if self.chain.get(pos) == Some(&Node::Vdso) && prev == 0 {
            pos += 1;
        }
        self.chain.insert(pos, Node::Obj(r));
    }

    /// Models `elf/dl-version.c: _dl_check_all_versions()`: for every link map of the
    /// namespace list with version definitions or needs, `calloc(ndx_high + 1,
    /// sizeof (struct r_found_version))`.
    fn dl_check_all_versions(&mut self) -> Result<()> {
        for n in self.chain.clone() {
            let (ndx, name) = match n {
                Node::Vdso => (vdso_facts(self.abi).1, "vDSO".to_string()),
                Node::Obj(i) => {
                    let o = &self.objs[i];
                    let (Some(img), Some(d)) = (o.img.as_ref(), o.dynamic.as_ref()) else {
                        continue;
                    };
                    let ahead = self.ndx_ahead.as_ref().and_then(|a| a.get(i, img));
                    let ndx = ahead.unwrap_or_else(|| versions::version_ndx_high(img, d));
                    (ndx, o.l_name.clone())
                }
            };
            if ndx > 0 {
                self.malloc(
                    (u64::from(ndx) + 1) * self.sizes.r_found_version,
                    format_args!("l_versions of {name}"),
                )?;
            }
        }
        Ok(())
    }

    /// Models `rtld.c: init_tls(0)`: the slotinfo list, `_dl_determine_tlsoffset()`, and
    /// `_dl_allocate_tls_storage()` with its DTV.
    fn init_tls(&mut self) -> Result<Option<TlsBlock>> {
        let s = self.sizes;
        let modules: Vec<TlsModule> = self
            .chain
            .iter()
            .filter_map(|n| match n {
                Node::Obj(i) => self.objs[*i].tls,
                Node::Vdso => None,
            })
            .collect();
        let ntls = modules.len() as u64;
        self.malloc(
            s.slotinfo_list + (ntls + 1 + tls::TLS_SLOTINFO_SURPLUS) * s.slotinfo,
            "TLS slotinfo list",
        )?;
        let surplus =
            tls::dl_tls_static_surplus_init(tls::DEFAULT_NNS, tls::DEFAULT_OPTIONAL_STATIC_TLS);
        let layout = tls::dl_determine_tlsoffset(&modules, surplus, s.tcb);
        let request = tls::tls_storage_request(&layout, s.word);
        let allocated = self.malloc(request, "static TLS block + TCB")?;
        self.malloc((ntls + tls::DTV_SURPLUS + 2) * s.dtv, "DTV")?;
        let tp = tls::thread_pointer(&layout, allocated, s.tcb);
        Ok(Some(TlsBlock {
            allocated,
            request,
            tp,
            layout,
        }))
    }

    /// The relocation loop of `dl_main()`: every object but ld.so in reverse
    /// initialization order (the program last): `_dl_relocate_object()`'s TEXTREL
    /// mprotects and `_dl_protect_relro()`. The order does not change the final maps.
    fn relocate_all(&mut self) -> Result<()> {
        let n = self.graph.objects.len();
        let mut order: Vec<usize> = (1..n).rev().filter(|&i| i != self.rtld).collect();
        order.push(0);
        // The unique-symbol tables are allocated during the first lookups; nothing else
        // allocates in this loop, so they can be allocated up front.
        let mut old = None;
        for size in self.unique_tables() {
            let t = self.malloc(
                size * self.sizes.unique_sym,
                format_args!("unique symbol table ({size} entries)"),
            )?;
            if let Some(o) = old {
                self.malloc.free(o);
            }
            old = Some(t);
        }
        for i in order {
            let textrel = self.objs[i].dynamic.as_ref().is_some_and(|d| d.textrel);
            if textrel {
                if let (Some(img), Some(p)) = (self.objs[i].img.as_ref(), self.objs[i].placed) {
                    glibc::dl_relocate_textrel(&mut self.proc, img, p.l_addr);
                }
            }
            self.protect_relro(i);
        }
        Ok(())
    }

    /// The unique-symbol tables the start-up relocations make ld.so allocate
    /// ([`unique::unique_tables_of`]); the global scope is the load list, every object but
    /// ld.so is relocated.
    fn unique_tables(&mut self) -> Vec<u64> {
        let objs = &self.objs[..self.graph.objects.len()];
        if let Some(ahead) = self.unique_ahead.take().and_then(|rx| rx.recv().ok()) {
            let same = ahead.keys.len() == objs.len()
                && ahead
                    .keys
                    .iter()
                    .zip(objs)
                    .all(|(k, o)| match (k, &o.img, &o.dynamic) {
                        (Some(k), Some(img), Some(d)) => k.matches(img, d),
                        (None, img, d) => img.is_none() || d.is_none(),
                        _ => false,
                    });
            if same {
                return ahead.tables;
            }
        }
        let inputs: Vec<Option<(Arc<ElfImage>, Arc<DynamicInfo>)>> = objs
            .iter()
            .map(|o| o.img.clone().zip(o.dynamic.clone()))
            .collect();
        unique::unique_tables_of(&inputs, self.rtld, self.opts.lazy)
    }

    fn protect_relro(&mut self, i: usize) {
        if let (Some(relro), Some(p)) = (self.objs[i].relro, self.objs[i].placed) {
            glibc::dl_protect_relro(&mut self.proc, p.l_addr, relro);
        }
    }

    /// Models `elf/dl-find_object.c: _dl_find_object_init()` at start-up: one array of
    /// `struct dl_find_object_internal` for every link map but the program's, plus one per
    /// PT_LOAD of the program if it is not contiguous. (2.36 calls it only before the
    /// re-relocation of ld.so.)
    fn dl_find_object_init(&mut self) -> Result<()> {
        let mut n = self.chain.len() as u64 - 1;
        let main = &self.objs[0];
        if main.placed.is_some_and(|p| !p.l_contiguous) {
            n += main.img.as_ref().map_or(0, |i| i.loads().count() as u64);
        }
        self.malloc(n * self.sizes.find_object, "_dl_find_object_init")?;
        Ok(())
    }
}

/// A new open (number `open_id`) of the file at host path `path`.
pub(crate) fn open_file(path: &Path, open_id: u32) -> Result<Arc<FileRef>> {
    let id = crate::host::fs::file_id(path).map_err(|e| Error::io(path, e))?;
    Ok(FileRef::open(id, open_id))
}

/// `l_origin` of an absolute name: everything before the last '/' ("/" for "/x").
fn paths_dirname(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => p[..i].to_string(),
        None => ".".to_string(),
    }
}

/// AT_SECURE as the kernel would set it for `program` (`security/commoncap.c:
/// cap_bprm_creds_from_file()` sets `secureexec` when exec changes the effective ids): the
/// set-user-ID bit on a file owned by someone else than our effective uid, or set-group-ID
/// (with group execute) on a file of another group. File capabilities are not checked.
pub fn at_secure(program: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(program) else {
        return false;
    };
    let mode = m.mode();
    // /proc/self belongs to our effective uid and gid.
    let (euid, egid) = std::fs::metadata("/proc/self").map_or((0, 0), |s| (s.uid(), s.gid()));
    (mode & 0o4000 != 0 && m.uid() != euid) || (mode & 0o2010 == 0o2010 && m.gid() != egid)
}

/// A debugging aid, not a test: prints the minimal-malloc ledger of `$LEDGER_PROG` for a
/// side-by-side comparison with the real ld.so under gdb (Debian's libc6-dbg:
/// `break __minimal_malloc`, print `$rdi`). Run with
/// `LEDGER_PROG=/usr/bin/ls cargo test ldso_print_ledger -- --ignored --nocapture`.
#[cfg(test)]
mod ledger_probe {
    #[test]
    #[ignore]
    fn ldso_print_ledger() {
        let Some(prog) = std::env::var_os("LEDGER_PROG") else {
            eprintln!("set LEDGER_PROG");
            return;
        };
        let machine = crate::HostFacts::detect();
        let target = crate::plan::Target::resolve(&prog, &[]).unwrap();
        let cfg = crate::plan::Config::no_aslr(crate::plan::Stage::Exec);
        let exec = crate::plan::plan(&target, &cfg, &machine).unwrap().exec;
        let interp = exec.interp.as_ref().unwrap();
        let flavor = crate::deps::Flavor::from_interp(&interp.requested);
        // cargo sets LD_LIBRARY_PATH for tests; the program under gdb runs without it.
        let envp: Vec<_> = machine
            .env
            .iter()
            .filter(|e| !e.to_string_lossy().starts_with("LD_LIBRARY_PATH="))
            .cloned()
            .collect();
        let env = crate::deps::LoaderEnv::from_env(exec.abi, flavor, &envp, None, &machine);
        let img = crate::elf::ElfImage::open(&target.program).unwrap();
        let as_execed = std::path::Path::new(&target.filename);
        let g = crate::deps::resolve(&img, as_execed, &interp.requested, &env).unwrap();
        let opts = super::RtldOptions {
            ledger: true,
            ..super::RtldOptions::from_env(&envp)
        };
        let l = super::dl_main(&exec, &g, &env, opts, None).unwrap();
        for a in &l.malloc.ledger {
            println!("LEDGER {:#x} {}", a.size, a.what);
        }
    }
}
