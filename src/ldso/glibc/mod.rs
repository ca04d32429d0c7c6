//! DOC: glibc 2.36's dynamic loader (`ld.so`, x86-64 and i386), from the exec stop to the
//! debugger's "loaded" stop: one model of `elf/rtld.c: dl_main()`, written once, that both
//! finds the libraries (the load list `elfmap deps` prints) and replays what finding and
//! mapping them does to the address space.
//!
//! [`Rtld`] is ld.so's state. It runs the steps of `dl_main()` in order:
//! `rtld_setup_main_map()` (or, run as a command, the mapping of the program), the ld.so
//! and vDSO link maps (`setup_vdso()`), `_dl_init_paths()`, the preloads (LD_PRELOAD,
//! `/etc/ld.so.preload`), `_dl_map_object_deps()` with `_dl_map_object()`'s search
//! ([`search`]: DT_RPATH chain, LD_LIBRARY_PATH, DT_RUNPATH, `/etc/ld.so.cache`
//! ([`ldcache`]), the system directories, each with the hwcaps subdirectories of
//! [`hwcaps`]) and `_dl_map_object_from_fd()` with `_dl_map_segments()` ([`map`]), then
//! `_dl_check_all_versions()`, `init_tls()` ([`tls`]), the relocation loop
//! (the `STB_GNU_UNIQUE` tables of [`unique`], TEXTREL, RELRO) and
//! `_dl_find_object_init()`. Every allocation goes through the minimal malloc
//! ([`malloc`]), whose anonymous chunks are placed by the kernel when they are made.
//!
//! Listing only (`elfmap deps`, the search without an address space) is the same code with
//! the mapping state off ([`Rtld::map`] is `None`): every step that maps, protects or
//! allocates is then skipped. The result is the address space at the `r_debug`
//! RT_CONSISTENT rendezvous ([`Loaded::mm`]) and the load list ([`DepGraph`]).
//!
//! Not modelled (reported in the warnings where detected): audit modules (LD_AUDIT,
//! DT_AUDIT), DT_AUXILIARY/DT_FILTER, DT_SYMBOLIC scopes and symbol versions in the
//! unique-symbol lookup, the `glibc_hwcaps_priorities` array the cache lookup allocates
//! when it meets a glibc-hwcaps cache entry (this machine's cache has none), tunables in
//! GLIBC_TUNABLES, ld.so's own command-line options (`--library-path`, `--preload`, ...).

pub mod hwcaps;
pub mod ldcache;
pub mod malloc;
pub mod map;
pub mod search;
pub mod tls;
pub mod unique;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::program_header::PF_X;

use self::hwcaps::LoaderHwcaps;
use self::ldcache::CacheQuery;
use self::malloc::MinimalMalloc;
use self::map::Placed;
use self::search::{CacheState, PathList, SearchDir};
use self::tls::{StaticTls, TlsModule};
use super::{Ahead, DepGraph, DepObject, LoaderEnv, Missing, PreloadFileUse};
use crate::elf::dynamic::{read_dynamic, DynamicInfo};
use crate::elf::{Abi, ElfImage, PT_GNU_RELRO, PT_GNU_STACK, PT_LOAD, PT_TLS};
use crate::error::{Error, Result};
use crate::kernel::binfmt_elf::ExecImage;
use crate::mm::{AddressSpace, FileRef, MmError, Object, Role, Task};

/// `DL_NNS` (sysdeps/generic/ldsodefs.h): namespaces; the program's and the vDSO's link
/// maps reserve one `struct auditstate` per namespace.
pub const DL_NNS: u64 = 16;

/// Structure sizes of glibc 2.36. x86-64 from Debian's debug symbols; i386 measured from
/// link_map/TCB addresses (no debug symbols exist for it).
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

/// What the loader's run left besides the address space, at the RT_CONSISTENT rendezvous.
#[derive(Clone, Debug)]
pub struct Loaded {
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
    /// From the loaded stop to AT_ENTRY as far as ld.so is concerned: the
    /// `/etc/ld.so.cache` mapping goes (`elf/dl-cache.c: _dl_unload_cache()`, right after
    /// the RT_CONSISTENT call of `_dl_debug_state()`).
    ///
    /// N.B. between the two, `_dl_init` runs every library's constructors, which may add
    /// mappings of their own, most often a `[heap]` (libselinux, libp11-kit,
    /// libgpg-error, libstdc++'s emergency pool): those are not predicted.
    pub fn unload_cache(&self, mm: &mut AddressSpace) {
        if let Some((start, len)) = self.cache {
            mm.munmap(start, len);
        }
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

/// How ld.so was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// The kernel mapped the program and ld.so (PT_INTERP).
    Kernel,
    /// ld.so was exec'd and maps the program named `program_name` (`argv[1]`) itself.
    RtldIsMain { program_name: String },
}

/// `struct link_map`, the parts the model uses, for an object of the load list.
pub(crate) struct Obj {
    /// The object as the load list reports it (with its image and dynamic section).
    pub(crate) dep: DepObject,
    /// `l_name` ("" for the main program).
    pub(crate) l_name: String,
    /// `l_libname`.
    pub(crate) libnames: Vec<String>,
    /// `l_soname_added`.
    soname_added: bool,
    /// `l_file_id`: `None` for the main program and ld.so (glibc leaves both zero).
    file_id: Option<(u64, u64)>,
    /// `l_loader`.
    l_loader: Option<usize>,
    /// `l_origin`; `None` if not known (yet): the program's is computed when a DST first
    /// needs it (`_dl_get_origin()`), `(char *) -1` is `Some` of nothing never happens.
    origin: Option<String>,
    is_main: bool,
    /// `l_rpath_dirs` / `l_runpath_dirs`.
    rpath: PathList,
    runpath: PathList,
    /// The object as the mappings' provenance names it, once mapped.
    object: Option<Arc<Object>>,
    /// Where `_dl_map_segments()` (or the kernel) put it.
    placed: Option<Placed>,
    /// PT_GNU_RELRO (`p_vaddr`, `p_memsz`).
    relro: Option<(u64, u64)>,
    tls: Option<TlsModule>,
}

impl Obj {
    fn dynamic(&self) -> Option<&DynamicInfo> {
        self.dep.dynamic.as_deref()
    }
    fn flags_1(&self) -> u64 {
        self.dynamic().map_or(0, |d| d.flags_1)
    }
    fn has_runpath(&self) -> bool {
        self.dynamic().is_some_and(|d| d.runpath.is_some())
    }
    /// `_dl_name_match_p`.
    fn name_match(&self, name: &str) -> bool {
        self.l_name == name || self.libnames.iter().any(|n| n == name)
    }
}

/// A link map of the namespace list (`GL(dl_ns)[0]._ns_loaded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// An object of the load list, by index.
    Obj(usize),
    /// ld.so, before some DT_NEEDED names it (then it is an `Obj`).
    Rtld,
    Vdso,
}

/// What ld.so's mapping steps work on: the process, the minimal malloc and what the
/// mapping decided so far. Absent when only listing.
struct MapState {
    task: Task,
    malloc: MinimalMalloc,
    /// `GL(dl_stack_flags)`.
    stack_flags: u32,
    stack_made_executable: bool,
    /// `__libc_stack_end`: the initial stack pointer.
    libc_stack_end: u64,
    /// `struct file`s opened so far (numbers continue the kernel's).
    next_open_id: u32,
    /// `/etc/ld.so.cache` as mapped, until `_dl_unload_cache()`.
    cache: Option<(u64, u64)>,
    /// The `_dl_map_object_deps` scratch buffer: (address, length) once on the heap.
    scratch: Option<(u64, u64)>,
    tls: Option<TlsBlock>,
    /// ld.so as the kernel mapped it: `l_addr`, its image, its file as maps shows it.
    rtld_load_addr: u64,
    rtld_img: Arc<ElfImage>,
    rtld_path: PathBuf,
    /// The kernel's view of the program (for a program the kernel mapped).
    exec: ExecFacts,
    warnings: Vec<String>,
}

/// What the model takes from the exec stop.
struct ExecFacts {
    load_bias: u64,
    /// The program's file as maps shows it.
    program_path: PathBuf,
    vdso: bool,
}

/// ld.so's state while it runs `dl_main()`.
pub(crate) struct Rtld<'e> {
    env: &'e LoaderEnv,
    abi: Abi,
    sizes: &'static Sizes,
    opts: RtldOptions,
    invocation: Invocation,
    /// Where objects found are reported, and what may have been read ahead.
    ahead: &'e mut dyn Ahead,
    fs: crate::host::fs::Fs,
    hw: LoaderHwcaps,
    /// `capstr`: the subdirectory prefixes of `_dl_important_hwcaps`.
    capstr: Vec<String>,
    /// `GL(dl_all_dirs)`.
    dirs: Vec<SearchDir>,
    dir_ids: HashMap<String, usize>,
    /// `__rtld_search_dirs`.
    system: Vec<usize>,
    /// `__rtld_env_path_list`.
    env_path: PathList,
    /// The load list; ld.so waits in `rtld` until a DT_NEEDED names it.
    objs: Vec<Obj>,
    rtld: Option<Obj>,
    rtld_idx: Option<usize>,
    /// The namespace list (`l_next` order), for `_dl_map_object()`'s "already loaded?".
    chain: Vec<Node>,
    cache: CacheState,
    /// What `cache_use` and the warnings become when the loader first consults the cache
    /// (the file may be opened earlier, for reading ahead).
    cache_opened: Option<(Option<super::CacheUse>, Option<String>)>,
    cache_use: Option<super::CacheUse>,
    cache_verified: bool,
    /// What `search_cache` needs to know about this loader and CPU.
    cache_query: CacheQuery,
    first_cache_use: Option<usize>,
    /// Candidates tried by the current `_dl_map_object`.
    tried: Vec<String>,
    /// `errno` as `open_path` sees it.
    errno: i32,
    found_other_class: bool,
    /// What the reading ahead had of the file `try_candidate` just took (path, dynamic
    /// section, canonical path), for `dl_map_object_from_fd`.
    fetched: Option<(String, Arc<DynamicInfo>, Option<String>)>,
    warnings: Vec<String>,
    missing: Vec<Missing>,
    preload_file: Option<PreloadFileUse>,
    /// The mapping state; `None` when only listing.
    map: Option<MapState>,
}

fn mm_err(path: &Path, e: MmError) -> Error {
    Error::load_failed(path, format!("out of memory in ld.so: {e}"))
}

/// Lists the load list of `program` (started as `exec_path`, whose PT_INTERP is `interp`)
/// as glibc's ld.so finds it, without mapping anything (`elfmap deps`).
///
/// `Err` only for what makes the loader itself give up even when it just lists (ld.so's
/// `_dl_signal_error` outside a search: a candidate that is not a valid ELF of a loadable
/// type, an executable as a dependency, "DST not allowed in SUID/SGID programs"), or an
/// unreadable program. Missing libraries are listed, not fatal.
pub fn list(
    program: &Arc<ElfImage>,
    exec_path: &Path,
    interp: &Path,
    env: &LoaderEnv,
    ahead: &mut dyn Ahead,
) -> Result<DepGraph> {
    let mut r = Rtld::new(env, RtldOptions::from_env(&[]), Invocation::Kernel, ahead);
    r.setup_main(program, exec_path)?;
    r.setup_rtld(interp, None);
    r.chain.push(Node::Vdso);
    r.load()?;
    Ok(r.finish().0)
}

/// Models `elf/rtld.c: dl_main()` up to the RT_CONSISTENT `_dl_debug_state()` call, on the
/// address space of the exec stop `exec`: for a program the kernel mapped with ld.so as its
/// PT_INTERP, or, with [`Invocation::RtldIsMain`], for ld.so exec'd with the program's name
/// as its first argument (`ld.so ./prog`): ld.so then maps the program itself with
/// `_dl_map_object(NULL, argv[1], lt_executable, 0, __RTLD_OPENEXEC)` before anything
/// else (a PIE top-down like a library, an ET_EXEC at its link addresses). The load list
/// comes with it.
pub fn dl_main(
    exec: &ExecImage,
    env: &LoaderEnv,
    opts: RtldOptions,
    invocation: Invocation,
    ahead: &mut dyn Ahead,
) -> Result<(AddressSpace, Loaded, DepGraph)> {
    let program_path = exec.program_file.path.clone();
    let (program, exec_path, interp, rtld_img, rtld_load_addr, rtld_l_name, rtld_path) =
        match &invocation {
            Invocation::Kernel => {
                let interp = exec.interp.as_ref().ok_or_else(|| {
                    Error::load_failed(&program_path, "no PT_INTERP: nothing to load")
                })?;
                let rtld_img = exec.interp_image.clone().ok_or_else(|| {
                    Error::load_failed(&program_path, "the interpreter is not open")
                })?;
                (
                    exec.program_image.clone(),
                    PathBuf::from(&exec.filename),
                    interp.requested.clone(),
                    rtld_img,
                    interp.load_addr,
                    interp.requested.to_string_lossy().into_owned(),
                    exec.interp_file
                        .as_ref()
                        .map_or_else(|| interp.path.clone(), |f| f.path.clone()),
                )
            }
            Invocation::RtldIsMain { program_name } => {
                let program = Arc::new(ElfImage::open(Path::new(program_name))?);
                // rtld_setup_main_map(): PT_INTERP of the program names ld.so (the string
                // as it is, up to its NUL: nothing checks it).
                let interp = program
                    .interp_name()
                    .unwrap_or_else(|| exec.program_file.path.clone());
                (
                    program,
                    PathBuf::from(program_name),
                    interp,
                    exec.program_image.clone(),
                    exec.load_bias,
                    exec.program_file.path.to_string_lossy().into_owned(),
                    exec.program_file.path.clone(),
                )
            }
        };
    let mut r = Rtld::new(env, opts, invocation.clone(), ahead);
    let rtld_end = rtld_img
        .loads()
        .map(|p| p.p_vaddr.saturating_add(p.p_memsz))
        .max()
        .unwrap_or(0);
    // GL(dl_stack_flags) starts as DEFAULT_STACK_PERMS; run as a command, ld.so first takes
    // its own PT_GNU_STACK (what the kernel honoured).
    let stack_flags = match invocation {
        Invocation::Kernel => map::DEFAULT_STACK_PERMS,
        Invocation::RtldIsMain { .. } => rtld_img
            .phdr(PT_GNU_STACK)
            .map_or(map::DEFAULT_STACK_PERMS, |p| p.p_flags),
    };
    r.map = Some(MapState {
        task: Task {
            mm: exec.mm.clone(),
            read_implies_exec: exec.read_implies_exec,
        },
        malloc: MinimalMalloc::new(rtld_load_addr.wrapping_add(rtld_end)).with_labels(opts.ledger),
        stack_flags,
        stack_made_executable: false,
        libc_stack_end: exec.mm.start_stack,
        next_open_id: exec.next_open_id,
        cache: None,
        scratch: None,
        tls: None,
        rtld_load_addr,
        rtld_img,
        rtld_path,
        exec: ExecFacts {
            load_bias: exec.load_bias,
            program_path: exec.program_file.path.clone(),
            vdso: exec.vdso_base != 0,
        },
        warnings: Vec::new(),
    });
    r.setup_main(&program, &exec_path)?;
    let opened = match &invocation {
        Invocation::Kernel => exec.interp_image.as_ref(),
        Invocation::RtldIsMain { .. } => Some(&exec.program_image),
    };
    r.setup_rtld(&interp, opened);
    r.rtld_setup_map(rtld_l_name)?;
    r.setup_vdso()?;
    r.load()?;
    if let Some(m) = r.missing.first() {
        let by = r
            .objs
            .get(m.needed_by)
            .map(|o| o.dep.realpath.display().to_string())
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
    r.after_deps()?;
    let (graph, loaded) = r.finish();
    let (mm, loaded) = loaded.expect("mapping state");
    Ok((mm, loaded, graph))
}

/// If `argv` runs glibc's ld.so as a command on a program (`ld.so PROGRAM [ARGS]`, no ld.so
/// options), the program's name. `exec` must be the exec of a loader (no PT_INTERP).
pub fn rtld_is_main_program(exec: &ExecImage, argv: &[std::ffi::OsString]) -> Option<String> {
    if exec.interp.is_some() {
        return None;
    }
    let soname = read_dynamic(&exec.program_image).ok()??.soname.clone()?;
    if !soname.starts_with("ld-linux") {
        return None;
    }
    let name = argv.get(1)?.to_str()?;
    (!name.starts_with('-')).then(|| name.to_string())
}

impl<'e> Rtld<'e> {
    fn new(
        env: &'e LoaderEnv,
        opts: RtldOptions,
        invocation: Invocation,
        ahead: &'e mut dyn Ahead,
    ) -> Rtld<'e> {
        let hw = LoaderHwcaps::for_abi(env.abi, &env.cpu);
        let capstr = hw.important_hwcaps();
        let cache_query = CacheQuery {
            loader: match env.abi {
                Abi::X86_64 => ldcache::CacheLoader::X86_64,
                Abi::I386 => ldcache::CacheLoader::I386,
            },
            hwcap: hw.dl_hwcap,
            hwcap_mask: hw.dl_hwcap_mask,
            platform_bit: hw.string_platform(env.abi),
            isa_1: hw.isa_1,
            hwcaps_active: hw
                .hwcaps_subdirs_active
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        Rtld {
            env,
            abi: env.abi,
            sizes: Sizes::for_abi(env.abi),
            opts,
            invocation,
            ahead,
            fs: env.fs(),
            hw,
            capstr,
            dirs: Vec::new(),
            dir_ids: HashMap::new(),
            system: Vec::new(),
            env_path: PathList::None,
            objs: Vec::new(),
            rtld: None,
            rtld_idx: None,
            chain: Vec::new(),
            cache: CacheState::Unopened,
            cache_opened: None,
            cache_use: None,
            cache_verified: false,
            cache_query,
            first_cache_use: None,
            tried: Vec::new(),
            errno: 0,
            found_other_class: false,
            fetched: None,
            warnings: Vec::new(),
            missing: Vec::new(),
            preload_file: None,
            map: None,
        }
    }

    /// `dl_main()` from `_dl_init_paths()` to the end of `_dl_map_object_deps()`.
    fn load(&mut self) -> Result<()> {
        self.dl_init_paths()?;
        self.preloads()?;
        self.request_prefetch(0);
        self.dl_map_object_deps()?;
        self.ahead.list_complete();
        Ok(())
    }

    /// The steps of `dl_main()` after the load list is complete (mapping state only).
    fn after_deps(&mut self) -> Result<()> {
        self.place_rtld_in_chain();
        self.dl_check_all_versions()?;
        let tcb = self.init_tls()?;
        self.relocate_all()?;
        if self.rtld_multiple_ref() {
            self.dl_find_object_init()?;
            // The re-relocation of ld.so ends with its RELRO.
            let r = self.rtld_index();
            self.protect_relro(r);
        }
        if let Some(m) = &mut self.map {
            m.tls = tcb;
        }
        Ok(())
    }

    /// The program's path for error messages.
    fn program_path(&self) -> PathBuf {
        self.objs
            .first()
            .map(|o| o.dep.host_path.clone())
            .unwrap_or_default()
    }

    fn err(&self, e: MmError) -> Error {
        mm_err(&self.program_path(), e)
    }

    /// `malloc(n)` of the minimal malloc (nothing when only listing); `what` is formatted
    /// only when the ledger keeps labels.
    fn malloc(&mut self, n: u64, what: impl std::fmt::Display) -> Result<u64> {
        let Some(m) = &mut self.map else {
            return Ok(0);
        };
        let r = m.malloc.malloc(&mut m.task, n, what);
        r.map_err(|e| self.err(e))
    }

    /// `free(ptr)` (only the last block is reused).
    fn free(&mut self, ptr: u64) {
        if let Some(m) = &mut self.map {
            m.malloc.free(ptr);
        }
    }

    /// `free()` of the last block.
    fn free_last(&mut self) {
        if let Some(m) = &mut self.map {
            m.malloc.free_last();
        }
    }

    /// The last block allocated (0 when only listing).
    fn last_block(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.malloc.last_block())
    }

    /// Index of ld.so in `objs` once the load list is complete (appended there when no
    /// DT_NEEDED named it).
    fn rtld_index(&self) -> usize {
        match (self.rtld_idx, &self.rtld) {
            (Some(i), _) => i,
            (None, Some(_)) => self.objs.len(),
            (None, None) => self.objs.len() - 1,
        }
    }

    /// Whether a DT_NEEDED named ld.so (2.36: only then is it relocated again and
    /// `_dl_find_object_init()` called before that).
    fn rtld_multiple_ref(&self) -> bool {
        self.rtld_idx.is_some()
    }

    /// A new open (the next `struct file`) of the file at host path `path`.
    fn open_file(&mut self, path: &Path) -> Result<Arc<FileRef>> {
        let m = self.map.as_mut().expect("mapping state");
        let id = m.next_open_id;
        m.next_open_id += 1;
        super::open_file(path, id, self.env.root.as_deref())
    }

    /// The `FileRef` of object `k`: a new open of its file.
    fn object_file_ref(&mut self, k: usize) -> Result<Arc<FileRef>> {
        let o = &self.objs[k].dep;
        if self.env.root.is_none() && o.image.is_some() && o.realpath == o.host_path {
            // The search canonicalized the path and fstat'ed the file it opened.
            let (host, dev, ino) = (o.host_path.clone(), o.dev, o.ino);
            let m = self.map.as_mut().expect("mapping state");
            let id = m.next_open_id;
            m.next_open_id += 1;
            return Ok(FileRef::open(
                crate::host::fs::file_id_known(&host, dev, ino),
                id,
            ));
        }
        let host = o.host_path.clone();
        self.open_file(&host)
    }

    /// `_dl_new_object("", "", lt_executable, NULL, __RTLD_OPENEXEC, 0)` and
    /// `rtld_setup_main_map()`: the program's link map (room for DL_NNS audit states),
    /// its RELRO, TLS and PT_GNU_STACK, and `l_contiguous`. Run as a command, ld.so maps
    /// the program first ([`Rtld::map_main_program`]).
    fn setup_main_map(&mut self, img: &Arc<ElfImage>) -> Result<()> {
        if self.map.is_none() {
            return Ok(());
        }
        let s = self.sizes;
        let main_map_size = s.link_map + DL_NNS * s.auditstate + s.word + s.libname_list + 1;
        let l_addr = match self.invocation.clone() {
            Invocation::Kernel => {
                self.malloc(main_map_size, "link_map of the program")?;
                self.map.as_ref().expect("mapping state").exec.load_bias
            }
            Invocation::RtldIsMain { program_name } => {
                self.map_main_program(img, &program_name, main_map_size)?
            }
        };
        let mut map_start = u64::MAX;
        let mut map_end = 0u64;
        let mut contiguous = true;
        let mut expected = 0u64;
        let mut relro = None;
        let mut tls = None;
        let mut stack_flags = None;
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
                PT_GNU_STACK => stack_flags = Some(ph.p_flags),
                PT_GNU_RELRO => relro = Some((ph.p_vaddr, ph.p_memsz)),
                _ => {}
            }
        }
        if let (Some(f), Some(m)) = (stack_flags, &mut self.map) {
            m.stack_flags = f;
        }
        let o = &mut self.objs[0];
        o.object = Some(Arc::new(Object {
            role: Role::Program,
            path: match &self.invocation {
                Invocation::Kernel => self
                    .map
                    .as_ref()
                    .expect("mapping state")
                    .exec
                    .program_path
                    .clone(),
                Invocation::RtldIsMain { .. } => o.dep.realpath.clone(),
            },
        }));
        o.placed = Some(Placed {
            l_addr,
            l_map_start: map_start,
            l_map_end: map_end,
            l_contiguous: contiguous,
        });
        o.relro = relro;
        o.tls = tls;
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
        img: &Arc<ElfImage>,
        name: &str,
        main_map_size: u64,
    ) -> Result<u64> {
        let host = self.objs[0].dep.host_path.clone();
        if !name.contains('/') {
            // Before _dl_init_paths there are no search directories; only the cache would
            // be consulted.
            return Err(Error::Usage {
                path: host,
                reason: "ld.so run as a command on a name without '/' is not modelled".into(),
            });
        }
        self.malloc(name.len() as u64 + 1, format_args!("realname {name}"))?;
        self.malloc(main_map_size, "link_map of the program")?;
        self.dl_new_object_origin(0, name)?;
        let hdr = map::read_object_headers(img)?;
        let file = self.open_file(&host)?;
        let object = Arc::new(Object {
            role: Role::Program,
            path: file.path.clone(),
        });
        let et_exec = img.e_type() == goblin::elf::header::ET_EXEC;
        let m = self.map.as_mut().expect("mapping state");
        let placed = map::dl_map_segments(&mut m.task, &host, &hdr, &file, &object, et_exec)?;
        if !hdr.phdr_mapped {
            self.malloc(
                u64::from(img.header.e_phnum) * self.sizes.phdr,
                "program headers of the program",
            )?;
        }
        self.check_stack_flags(hdr.stack_flags);
        Ok(placed.l_addr)
    }

    /// `GL(dl_rtld_map)` as the kernel mapped it: `l_addr`, its span, RELRO; its name is
    /// the PT_INTERP string (argv[0] when run as a command).
    fn rtld_setup_map(&mut self, l_name: String) -> Result<()> {
        let Some(m) = &self.map else {
            return Ok(());
        };
        let img = m.rtld_img.clone();
        let l_addr = m.rtld_load_addr;
        let rtld_end = img
            .loads()
            .map(|p| p.p_vaddr.saturating_add(p.p_memsz))
            .max()
            .unwrap_or(0);
        let first = img.loads().next().map(|p| p.p_vaddr).unwrap_or(0);
        let relro = img
            .phdrs
            .iter()
            .rev()
            .find(|p| p.p_type == PT_GNU_RELRO)
            .map(|p| (p.p_vaddr, p.p_memsz));
        let path = m.rtld_path.clone();
        let r = self.rtld.as_mut().expect("ld.so's link map");
        r.object = Some(Arc::new(Object {
            role: Role::Interpreter,
            path,
        }));
        r.l_name = l_name;
        r.placed = Some(Placed {
            l_addr,
            l_map_start: l_addr.wrapping_add(crate::addr::page_start(first)),
            l_map_end: l_addr.wrapping_add(rtld_end),
            l_contiguous: true,
        });
        r.relro = relro;
        Ok(())
    }

    /// Models `elf/setup-vdso.h: setup_vdso()`: a link map for the vDSO image (the same
    /// worst-case audit room as the program's), named by its DT_SONAME. Nothing is mapped.
    fn setup_vdso(&mut self) -> Result<()> {
        if !self.map.as_ref().is_some_and(|m| m.exec.vdso) {
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

    /// Models `sysdeps/unix/sysv/linux/dl-origin.c: _dl_get_origin()` for the program the
    /// first time a DST needs it: `readlink("/proc/self/exe")` (the canonical path),
    /// `malloc(len + 1)` of the part before the last '/'.
    fn ensure_program_origin(&mut self) -> Result<()> {
        if self.objs[0].origin.is_some() {
            return Ok(());
        }
        let exe = self.objs[0].dep.realpath.to_string_lossy().into_owned();
        let cut = exe.rfind('/').map_or(1, |i| i + 1);
        self.malloc(cut as u64 + 1, "_dl_get_origin (program)")?;
        self.objs[0].origin = Some(if cut == 1 {
            "/".to_string()
        } else {
            exe[..cut - 1].to_string()
        });
        Ok(())
    }

    /// The `l_origin` part of `_dl_new_object()`: an absolute realname costs
    /// `strlen + 1`; a relative one a `getcwd` buffer grown by 128 bytes at a time.
    fn dl_new_object_origin(&mut self, k: usize, realname: &str) -> Result<()> {
        let len = realname.len() as u64 + 1;
        let origin = if realname.starts_with('/') {
            self.malloc(len, format_args!("l_origin of {realname}"))?;
            dirname(realname)
        } else {
            let cwd = self.fs.cwd().to_string();
            let mut size = len + 128;
            self.malloc(size, format_args!("l_origin (getcwd) of {realname}"))?;
            while (cwd.len() as u64 + 1) > size - len {
                // realloc of the last block: same start, bigger.
                self.free_last();
                size += 128;
                self.malloc(size, format_args!("l_origin (getcwd) of {realname}"))?;
            }
            dirname(&format!("{}/{}", cwd.trim_end_matches('/'), realname))
        };
        self.objs[k].origin = Some(origin);
        Ok(())
    }

    /// `_dl_map_object_from_fd()` after the checks, for object `k` (just entered in the
    /// load list as `name`, opened as `realname`): `_dl_new_object()` (the link map with
    /// its name, then `l_origin`), the program-header walk, `_dl_map_segments()`, a copy of
    /// the program headers when no segment holds them, and the executable-stack change.
    fn map_object(&mut self, k: usize, name: &str, realname: &str) -> Result<()> {
        let s = self.sizes;
        let img = self.objs[k].dep.image.clone().expect("an opened library");
        let host = self.objs[k].dep.host_path.clone();
        let hdr = map::read_object_headers(&img)?;
        // _dl_new_object (realname, name, lt_library, loader, mode, nsid), naudit = 0.
        self.malloc(
            s.link_map + s.word + s.libname_list + name.len() as u64 + 1,
            format_args!("link_map {name}"),
        )?;
        self.dl_new_object_origin(k, realname)?;
        let file = self.object_file_ref(k)?;
        let object = Arc::new(Object {
            role: Role::Library,
            path: file.path.clone(),
        });
        let m = self.map.as_mut().expect("mapping state");
        let placed = map::dl_map_segments(&mut m.task, &host, &hdr, &file, &object, false)?;
        if !hdr.phdr_mapped {
            self.malloc(
                u64::from(img.header.e_phnum) * s.phdr,
                format_args!("program headers of {name}"),
            )?;
        }
        self.check_stack_flags(hdr.stack_flags);
        let o = &mut self.objs[k];
        o.object = Some(object);
        o.placed = Some(placed);
        o.relro = hdr.relro;
        o.tls = hdr.tls;
        Ok(())
    }

    /// `_dl_map_object_from_fd()`'s executable-stack check: an object asking for more
    /// than `GL(dl_stack_flags)` allows makes the stack executable.
    fn check_stack_flags(&mut self, stack_flags: u32) {
        let Some(m) = &mut self.map else {
            return;
        };
        if (stack_flags & !m.stack_flags) & PF_X != 0 {
            map::dl_make_stack_executable(&mut m.task, m.libc_stack_end);
            m.stack_flags |= PF_X;
            m.stack_made_executable = true;
        }
    }

    /// After `_dl_map_object_deps`, dl_main takes ld.so out of the namespace list and, if a
    /// DT_NEEDED named it, puts it back after its predecessor in the search list (after the
    /// vDSO if that predecessor is the program).
    fn place_rtld_in_chain(&mut self) {
        let r = self.rtld_index();
        if self.rtld_idx.is_none() {
            // Never named: ld.so's link map stays apart from the load list.
            let o = self.rtld.take().expect("ld.so's link map");
            self.objs.push(o);
        }
        self.chain
            .retain(|n| *n != Node::Obj(r) && *n != Node::Rtld);
        let Some(i) = self.rtld_idx else {
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
    /// namespace list, `_dl_check_map_versions()` computes `ndx_high`, the highest version
    /// index of its DT_VERNEED and DT_VERDEF entries
    /// ([`crate::elf::versions::highest_version_index`]), and makes
    /// `calloc(ndx_high + 1, sizeof (struct r_found_version))` when it is above 0.
    fn dl_check_all_versions(&mut self) -> Result<()> {
        for n in self.chain.clone() {
            let (ndx, name) = match n {
                Node::Vdso => (vdso_facts(self.abi).1, "vDSO".to_string()),
                Node::Rtld => continue,
                Node::Obj(i) => {
                    let o = &self.objs[i];
                    let (Some(img), Some(d)) = (o.dep.image.as_ref(), o.dep.dynamic.as_ref())
                    else {
                        continue;
                    };
                    let ahead = self.ahead.version_ndx(i, img);
                    let ndx = ahead
                        .unwrap_or_else(|| crate::elf::versions::highest_version_index(img, d));
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
                Node::Vdso | Node::Rtld => None,
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
        let rtld = self.rtld_index();
        let n = self.load_len();
        let mut order: Vec<usize> = (1..n).rev().filter(|&i| i != rtld).collect();
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
                self.free(o);
            }
            old = Some(t);
        }
        for i in order {
            let textrel = self.objs[i].dynamic().is_some_and(|d| d.textrel);
            if textrel {
                let o = &self.objs[i];
                if let (Some(img), Some(p), Some(object), Some(m)) =
                    (o.dep.image.as_ref(), o.placed, &o.object, self.map.as_mut())
                {
                    map::dl_relocate_textrel(&mut m.task, img, p.l_addr, object)
                        .map_err(|why| Error::load_failed(&o.dep.host_path, why))?;
                }
            }
            self.protect_relro(i);
        }
        Ok(())
    }

    /// The number of objects in the load list (ld.so's link map may follow them).
    fn load_len(&self) -> usize {
        match self.rtld_idx {
            Some(_) => self.objs.len(),
            None if self.rtld.is_none() => self.objs.len() - 1,
            None => self.objs.len(),
        }
    }

    /// The unique-symbol tables the start-up relocations make ld.so allocate
    /// ([`unique::unique_tables_of`]); the global scope is the load list, every object but
    /// ld.so is relocated. Taken from what was computed ahead if it was computed from the
    /// same objects.
    fn unique_tables(&mut self) -> Vec<u64> {
        let objs = &self.objs[..self.load_len()];
        if let Some(ahead) = self.ahead.unique_tables() {
            let same = ahead.keys.len() == objs.len()
                && ahead.keys.iter().zip(objs).all(|(k, o)| {
                    match (k, &o.dep.image, &o.dep.dynamic) {
                        (Some(k), Some(img), Some(d)) => k.matches(img, d),
                        (None, img, d) => img.is_none() || d.is_none(),
                        _ => false,
                    }
                });
            if same {
                return ahead.tables;
            }
        }
        let inputs: Vec<Option<(Arc<ElfImage>, Arc<DynamicInfo>)>> = objs
            .iter()
            .map(|o| o.dep.image.clone().zip(o.dep.dynamic.clone()))
            .collect();
        unique::unique_tables_of(&inputs, self.rtld_index(), self.opts.lazy)
    }

    fn protect_relro(&mut self, i: usize) {
        let o = &self.objs[i];
        if let (Some(relro), Some(p), Some(object), Some(m)) =
            (o.relro, o.placed, &o.object, self.map.as_mut())
        {
            map::dl_protect_relro(&mut m.task, p.l_addr, relro, object);
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
            n += main
                .dep
                .image
                .as_ref()
                .map_or(0, |i| i.loads().count() as u64);
        }
        self.malloc(n * self.sizes.find_object, "_dl_find_object_init")?;
        Ok(())
    }

    /// The load list, and with the mapping state the loader's result.
    fn finish(mut self) -> (DepGraph, Option<(AddressSpace, Loaded)>) {
        let n = self.load_len();
        let loaded = self.map.take().map(|m| {
            let maps = self.link_maps(&m);
            let mut warnings = self.warnings.clone();
            warnings.extend(m.warnings);
            let loaded = Loaded {
                maps,
                malloc: m.malloc,
                tls: m.tls,
                cache: m.cache,
                stack_made_executable: m.stack_made_executable,
                warnings,
            };
            (m.task.mm, loaded)
        });
        self.objs.truncate(n);
        let graph = DepGraph {
            objects: self.objs.into_iter().map(|o| o.dep).collect(),
            missing: self.missing,
            first_cache_use: self.first_cache_use,
            cache: self.cache_use,
            preload_file: self.preload_file,
            interp_index: self.rtld_idx,
            warnings: self.warnings,
        };
        (graph, loaded)
    }

    /// The namespace list at the loaded stop, as [`LinkMap`]s.
    fn link_maps(&self, m: &MapState) -> Vec<LinkMap> {
        let rtld = self.rtld_index();
        self.chain
            .iter()
            .filter_map(|n| match *n {
                Node::Vdso => Some(LinkMap {
                    kind: MapKind::Vdso,
                    l_name: vdso_facts(self.abi).0.to_string(),
                    path: None,
                    l_addr: 0,
                    l_map_start: 0,
                    l_map_end: 0,
                    tls_offset: None,
                    relro: None,
                }),
                Node::Rtld => None,
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
                    } else if i == rtld {
                        MapKind::Rtld
                    } else {
                        MapKind::Library
                    };
                    let tls_offset = m.tls.as_ref().and_then(|t| {
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
                    Some(LinkMap {
                        kind,
                        l_name: o.l_name.clone(),
                        path: o.object.as_ref().map(|ob| ob.path.clone()),
                        l_addr: p.l_addr,
                        l_map_start: p.l_map_start,
                        l_map_end: p.l_map_end,
                        tls_offset,
                        relro: o.relro.map(|r| map::relro_pages(p.l_addr, r)),
                    })
                }
            })
            .collect()
    }
}

/// `l_origin` of a name: everything before the last '/' ("/" for "/x", "." without '/').
fn dirname(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => p[..i].to_string(),
        None => ".".to_string(),
    }
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
        let mut machine = crate::HostFacts::detect();
        // cargo sets LD_LIBRARY_PATH for tests; the program under gdb runs without it.
        machine
            .env
            .retain(|e| !e.to_string_lossy().starts_with("LD_LIBRARY_PATH="));
        let target = crate::plan::Target::resolve(&prog, &[]).unwrap();
        let mut cfg = crate::plan::Config::no_aslr(crate::plan::Stage::Loaded);
        cfg.ledger = true;
        let plan = crate::plan::plan(&target, &cfg, &machine).unwrap();
        let Some(crate::plan::LoaderRun::Glibc(l)) = plan.loader else {
            panic!("not a glibc program");
        };
        for a in &l.malloc.ledger {
            println!("LEDGER {:#x} {}", a.size, a.what);
        }
    }
}
