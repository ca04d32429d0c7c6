//! DOC: execve of an ELF program. Models `fs/binfmt_elf.c: load_elf_binary()` with its
//! helpers `elf_map()`, `elf_load()`, `load_elf_interp()`, and the x86 vDSO placement
//! (`arch/x86/entry/vdso/vma.c: map_vdso()`), producing the address space at the exec stop.
//! Checked against kernel 6.18 x86_64.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::program_header::PF_X;

use super::mmap::arch_pick_mmap_layout;
use super::personality;
use super::profile::{Kernel, KernelProfile, VSYSCALL_ADDR};
use super::random::{Draw, DrawKind, ExecRandom};
use super::rules::{BssTail, KernelArch, LoaderBrk};
use super::stack::{setup_arg_pages, StackLayout, StackStrings};
use super::verdict::{self, killed};
use crate::addr::{page_align, page_offset, page_start, PAGE_SIZE};
use crate::elf::{
    maximum_alignment, total_mapping_size_class, Abi, ElfImage, Phdr, PT_GNU_STACK, PT_LOAD,
};
use crate::error::{Error, Result};
use crate::host::Facts;
use crate::mm::{
    AddressSpace, Backing, FileRef, Maker, MmError, MmapRequest, Object, Origin, Placement, Prot,
    Role, Vma,
};

/// What is exec'd, and how.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// The file to open (already resolved through PATH).
    pub program: PathBuf,
    /// `bprm->filename`: the path string given to execve.
    pub filename: OsString,
    pub argv: Vec<OsString>,
    pub envp: Vec<OsString>,
    /// The personality the task has when it calls execve.
    pub personality: u32,
    /// RLIMIT_STACK soft limit at execve.
    pub rlimit_stack: u64,
    /// RLIMIT_AS soft limit at execve (`u64::MAX`: unlimited).
    pub rlimit_as: u64,
    /// The binfmt_misc registrations (`search_binary_handler()` asks binfmt_misc first).
    pub binfmt_misc: Vec<crate::host::binfmt_misc::MiscEntry>,
    /// Look the interpreter up under this directory (a container root or sysroot).
    pub root: Option<PathBuf>,
}

/// PT_GNU_STACK's verdict (`EXSTACK_*` in include/linux/binfmts.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExecutableStack {
    /// No PT_GNU_STACK.
    Default,
    DisableX,
    EnableX,
}

/// The interpreter as the kernel mapped it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InterpInfo {
    /// The PT_INTERP string.
    pub requested: PathBuf,
    /// The file actually opened (under `--root` if given).
    pub path: PathBuf,
    /// `interp_load_addr` (AT_BASE).
    pub load_addr: u64,
}

/// The kernel's result: the address space at the exec stop and the values execve computed.
#[derive(Clone, Debug)]
pub struct ExecImage {
    pub abi: Abi,
    /// The kernel planned for (its rules and facts).
    pub kernel: Arc<Kernel>,
    /// The constants of this task's ABI on that kernel.
    pub profile: KernelProfile,
    pub mm: AddressSpace,
    pub e_type: u16,
    pub load_bias: u64,
    /// AT_ENTRY: the program's entry (`e_entry + load_bias`).
    pub e_entry: u64,
    /// Where the CPU starts: the interpreter's entry, or `e_entry` without one.
    pub elf_entry: u64,
    /// AT_PHDR.
    pub phdr_addr: u64,
    pub interp: Option<InterpInfo>,
    pub stack: StackLayout,
    pub executable_stack: ExecutableStack,
    pub read_implies_exec: bool,
    pub pf_randomize: bool,
    /// The program is set-user-ID (or set-group-ID and group-executable) on a mount that
    /// honours it, so exec cleared `PER_CLEAR_ON_SETID` from the personality: ASLR and the
    /// legacy layout cannot be switched off for it with `setarch`.
    pub per_clear: bool,
    /// The random choices the kernel made (none without PF_RANDOMIZE), in order.
    pub draws: Vec<Draw>,
    /// AT_SECURE: exec changes the effective ids (the loader then runs in secure mode).
    pub at_secure: bool,
    /// `bprm->filename`, the path given to execve.
    pub filename: OsString,
    /// The `[vdso]` start (AT_SYSINFO_EHDR).
    pub vdso_base: u64,
    /// The program's file as mapped.
    pub program_file: Arc<FileRef>,
    /// The interpreter's file as mapped.
    pub interp_file: Option<Arc<FileRef>>,
    /// The program and the interpreter as exec opened them (mapped headers), so that the
    /// later stages need not open them again.
    pub program_image: Arc<ElfImage>,
    pub interp_image: Option<Arc<ElfImage>>,
    /// Open ids used so far (the loader model continues numbering from here).
    pub next_open_id: u32,
}

/// Resolve `path` under `root` the way an absolute path would be opened inside a chroot:
/// its symbolic links are followed inside the root (an absolute link target is taken
/// relative to it), so the file found is the root's, never this machine's.
pub fn under_root(root: Option<&Path>, path: &Path) -> PathBuf {
    match root {
        Some(r) if path.is_absolute() => {
            let mut fs = crate::host::fs::Fs::new(Some(r), Path::new("/"));
            match fs.realpath(&path.to_string_lossy()) {
                Ok(canon) => fs.host(&canon).into_owned(),
                Err(_) => r.join(path.strip_prefix("/").unwrap_or(path)),
            }
        }
        _ => path.to_path_buf(),
    }
}

/// Models `fs/binfmt_elf.c: make_prot()` plus the READ_IMPLIES_EXEC rule of
/// `mm/mmap.c: do_mmap()`.
fn make_prot(p_flags: u32, read_implies_exec: bool) -> Prot {
    Prot::from_p_flags(p_flags).read_implies_exec(read_implies_exec)
}

/// A failed mapping of exec's: after the point of no return, so the task is killed.
fn mm_err(path: &Path, step: &'static str, what: &str, e: MmError) -> Error {
    let errno = match e {
        MmError::NoMemory { .. } => "ENOMEM",
        MmError::Exists { .. } => "EEXIST",
        MmError::Invalid { .. } => "EINVAL",
        MmError::AsLimit { .. } => "ENOMEM",
    };
    killed(path, step, errno, format!("{what}: {e}"))
}

/// State shared by the segment-mapping helpers.
struct Mapper<'a> {
    mm: &'a mut AddressSpace,
    file: Arc<FileRef>,
    /// The object whose segments these are (provenance).
    object: Arc<Object>,
    read_implies_exec: bool,
    path: &'a Path,
    /// The file's length (`padzero()` faults past its last page).
    file_len: u64,
    /// What `__vm_enough_memory()` allows one mapping ([`crate::host::exec`]).
    commit_pages: Option<u64>,
}

impl Mapper<'_> {
    /// Models `elf_map()`: map the file part of one PT_LOAD. With `total_size` (the first
    /// segment of an ET_DYN image) the whole image span is mapped at once and everything past
    /// this segment's own pages is unmapped again, so holes between segments stay unmapped.
    fn elf_map(
        &mut self,
        addr: u64,
        (phdr, ph): (usize, &Phdr),
        prot: Prot,
        placement: Placement,
        total_size: u64,
    ) -> Result<u64> {
        // The kernel's unsigned arithmetic wraps; vm_mmap() then refuses what wrapped.
        let size = page_align(ph.p_filesz.wrapping_add(page_offset(ph.p_vaddr))).unwrap_or(0);
        let off = ph.p_offset.wrapping_sub(page_offset(ph.p_vaddr));
        let addr = page_start(addr);
        if size == 0 {
            return Ok(addr);
        }
        let len = if total_size > 0 {
            page_align(total_size).unwrap_or(0)
        } else {
            size
        };
        verdict::vm_mmap_check(off, len, prot.write, self.commit_pages).map_err(
            |(errno, why)| {
                killed(
                    self.path,
                    "elf_map",
                    errno,
                    format!("PT_LOAD #{phdr}: {why}"),
                )
            },
        )?;
        let map_addr = self
            .mm
            .mmap(&MmapRequest {
                addr,
                len,
                prot,
                placement,
                shared: false,
                file: Some((self.file.clone(), off)),
                made_by: Maker::ElfMap {
                    object: self.object.clone(),
                    phdr,
                },
            })
            .map_err(|e| {
                mm_err(
                    self.path,
                    "elf_map",
                    &format!("mapping PT_LOAD #{phdr} at {addr:#x}"),
                    e,
                )
            })?;
        if total_size > 0 && len > size {
            self.mm.munmap(map_addr + size, len - size);
        }
        Ok(map_addr)
    }

    /// Models `elf_load()` (v6.7+): `elf_map()`, then `padzero()` of the last file page
    /// (no VMA change), then an anonymous `vm_brk_flags()` mapping for the rest of .bss,
    /// `rw-` plus `x` if the segment is executable or the task has READ_IMPLIES_EXEC.
    fn elf_load(
        &mut self,
        addr: u64,
        (phdr, ph): (usize, &Phdr),
        prot: Prot,
        placement: Placement,
        total_size: u64,
    ) -> Result<u64> {
        let (map_addr, zero_start, zero_end);
        if ph.p_filesz > 0 {
            map_addr = self.elf_map(addr, (phdr, ph), prot, placement, total_size)?;
            zero_start = map_addr
                .wrapping_add(page_offset(ph.p_vaddr))
                .wrapping_add(ph.p_filesz);
            zero_end = map_addr
                .wrapping_add(page_offset(ph.p_vaddr))
                .wrapping_add(ph.p_memsz);
            let file_off = ph.p_offset.wrapping_add(ph.p_filesz);
            if ph.p_memsz > ph.p_filesz
                && verdict::padzero_fails(zero_start, file_off, self.file_len, prot.write)
            {
                return Err(killed(
                    self.path,
                    "padzero",
                    "EFAULT",
                    format!(
                        "PT_LOAD #{phdr}: clearing the bss tail at {zero_start:#x} faults: file offset {file_off:#x} is past the last page of the file"
                    ),
                ));
            }
        } else {
            map_addr = page_start(addr);
            zero_start = map_addr;
            zero_end = zero_start
                .wrapping_add(page_offset(ph.p_vaddr))
                .wrapping_add(ph.p_memsz);
        }
        if ph.p_memsz > ph.p_filesz {
            self.set_brk(zero_start, zero_end, (phdr, ph))?;
        }
        Ok(map_addr)
    }

    /// The anonymous part of a `.bss`: `vm_brk_flags(PAGE_ALIGN(start), PAGE_ALIGN(end))`,
    /// executable if the segment `ph` is or the task has READ_IMPLIES_EXEC. As `elf_load()`
    /// does it per segment (v6.7+), and as `set_brk()` (fs/binfmt_elf.c, up to v6.6) and
    /// the end of `load_elf_interp()` did it once for everything past the last file byte.
    fn set_brk(&mut self, start: u64, end: u64, (phdr, ph): (usize, &Phdr)) -> Result<()> {
        // ELF_PAGEALIGN wraps at the top of the address space.
        let align = |a: u64| a.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let zs = align(start);
        let ze = align(end);
        verdict::vm_brk_check(zs, ze, self.mm.layout.task_size, self.commit_pages).map_err(
            |(errno, why)| {
                killed(
                    self.path,
                    "vm_brk_flags",
                    errno,
                    format!("PT_LOAD #{phdr}'s bss: {why}"),
                )
            },
        )?;
        let exec = ph.p_flags & PF_X != 0 || self.read_implies_exec;
        let made_by = Maker::ElfBss {
            object: self.object.clone(),
            phdr,
        };
        self.mm.vm_brk_flags(zs, ze, exec, made_by).map_err(|e| {
            mm_err(
                self.path,
                "vm_brk_flags",
                &format!("PT_LOAD #{phdr}'s bss"),
                e,
            )
        })
    }

    /// One PT_LOAD as this kernel maps it: `elf_load()` (v6.7+: the segment's own .bss
    /// after it), or `elf_map()` alone when the .bss is mapped once after all segments
    /// ([`BssTail::SetBrk`]).
    fn load_segment(
        &mut self,
        bss: BssTail,
        addr: u64,
        seg: (usize, &Phdr),
        prot: Prot,
        placement: Placement,
        total_size: u64,
    ) -> Result<u64> {
        match bss {
            BssTail::ElfLoad => self.elf_load(addr, seg, prot, placement, total_size),
            BssTail::SetBrk => {
                if seg.1.p_filesz == 0 {
                    return Ok(page_start(addr));
                }
                self.elf_map(addr, seg, prot, placement, total_size)
            }
        }
    }
}

/// The .bss bookkeeping of `set_brk()`-era exec (up to v6.6): the highest file end
/// (`elf_bss`) and memory end (`elf_brk` / `last_bss`) seen so far, and the segment that
/// has the latter (its `bss_prot`).
#[derive(Default)]
struct BssEnds {
    elf_bss: u64,
    elf_brk: u64,
    seg: Option<(usize, Phdr)>,
}

impl BssEnds {
    fn add(&mut self, base: u64, (phdr, ph): (usize, &Phdr)) {
        let k = base.wrapping_add(ph.p_vaddr).wrapping_add(ph.p_filesz);
        self.elf_bss = self.elf_bss.max(k);
        let k = base.wrapping_add(ph.p_vaddr).wrapping_add(ph.p_memsz);
        if k > self.elf_brk {
            self.elf_brk = k;
            self.seg = Some((phdr, ph.clone()));
        }
    }
}

/// PT_GNU_STACK's verdict: `load_elf_binary()` looks at every program header, so the last
/// PT_GNU_STACK decides.
fn executable_stack(img: &ElfImage) -> ExecutableStack {
    match img.phdrs.iter().rev().find(|p| p.p_type == PT_GNU_STACK) {
        None => ExecutableStack::Default,
        Some(p) if p.p_flags & PF_X != 0 => ExecutableStack::EnableX,
        Some(_) => ExecutableStack::DisableX,
    }
}

/// Models `load_elf_interp()`: the first PT_LOAD without MAP_FIXED (hint: its `p_vaddr`,
/// or none when the program itself was relocated), with the interpreter's whole span, so
/// `get_unmapped_area()` puts it just below `mmap_base` (or at the legacy base); the others
/// MAP_FIXED relative to it; the .bss as `bss` says (per segment since v6.7, once after the
/// last segment before). Returns `interp_load_addr`.
fn load_elf_interp(
    mm: &mut AddressSpace,
    interp: &ElfImage,
    file: Arc<FileRef>,
    no_base: u64,
    rie: bool,
    commit_pages: Option<u64>,
    bss: BssTail,
) -> Result<u64> {
    let path = &interp.path;
    // "First of all, some simple consistency checks" (after the point of no return here).
    if interp.e_type() != ET_EXEC && interp.e_type() != ET_DYN {
        return Err(killed(
            path,
            "load_elf_interp",
            "EPERM",
            format!(
                "the interpreter's e_type {} is not ET_EXEC or ET_DYN",
                interp.e_type()
            ),
        ));
    }
    let mut total_size = total_mapping_size_class(&interp.phdrs, interp.is_64());
    if total_size == 0 {
        return Err(killed(
            path,
            "load_elf_interp",
            "EINVAL",
            "the interpreter's PT_LOAD segments span nothing (total_mapping_size() is 0)",
        ));
    }
    let is_exec = interp.e_type() == ET_EXEC;
    let mut load_addr: u64 = 0;
    let mut load_addr_set = false;
    let object = Arc::new(Object {
        role: Role::Interpreter,
        path: file.path.clone(),
    });
    let mut m = Mapper {
        mm,
        file,
        object,
        read_implies_exec: rie,
        path,
        file_len: interp.len(),
        commit_pages,
    };
    let mut ends = BssEnds::default();
    for (phdr, ph) in loads(interp) {
        let prot = make_prot(ph.p_flags, rie);
        let vaddr = ph.p_vaddr;
        let placement = if is_exec || load_addr_set {
            Placement::Fixed
        } else {
            if no_base != 0 && interp.is_dyn() {
                load_addr = vaddr.wrapping_neg();
            }
            Placement::Hint
        };
        let map_addr = m.load_segment(
            bss,
            load_addr.wrapping_add(vaddr),
            (phdr, ph),
            prot,
            placement,
            total_size,
        )?;
        total_size = 0;
        if !load_addr_set && interp.is_dyn() {
            load_addr = map_addr.wrapping_sub(page_start(vaddr));
            load_addr_set = true;
        }
        let k = load_addr.wrapping_add(ph.p_vaddr);
        let ts = m.mm.layout.task_size;
        if k >= ts || ph.p_filesz > ph.p_memsz || ph.p_memsz > ts || ts - ph.p_memsz < k {
            return Err(killed(
                path,
                "load_elf_interp",
                "ENOMEM",
                format!(
                    "the interpreter's PT_LOAD #{phdr} at {k:#x} (p_filesz {:#x}, p_memsz {:#x}) does not fit below TASK_SIZE {ts:#x}",
                    ph.p_filesz, ph.p_memsz
                ),
            ));
        }
        ends.add(load_addr, (phdr, ph));
    }
    if let (BssTail::SetBrk, Some((phdr, ph))) = (bss, &ends.seg) {
        // padzero(elf_bss), then vm_brk_flags() from the page after the last file byte.
        m.set_brk(ends.elf_bss, ends.elf_brk, (*phdr, ph))?;
    }
    Ok(load_addr)
}

/// A special mapping (`_install_special_mapping()`): never merged, named by the kernel.
fn special(start: u64, end: u64, prot: Prot, name: &'static str, made_by: Maker) -> Vma {
    Vma {
        start,
        end,
        prot,
        shared: false,
        account: false,
        growsdown: false,
        anon_vma: false,
        backing: Backing::Special(name),
        origin: Origin::new(start, end, made_by),
    }
}

/// The PT_LOAD program headers of `img` with their index in the program headers.
fn loads(img: &ElfImage) -> impl Iterator<Item = (usize, &Phdr)> {
    img.phdrs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type == PT_LOAD)
}

/// Models `arch/x86/entry/vdso/vma.c: map_vdso(image, addr)`: one `get_unmapped_area()`
/// for `[vvar]` (+ `[vvar_vclock]`, v6.13+) + `[vdso]`, which without a usable hint and
/// with the top-down allocator lands just below the interpreter. The hint is 0 since v6.9
/// and for 32-bit tasks; before, a 64-bit task's was [`vdso_addr`]'s.
fn map_vdso(mm: &mut AddressSpace, kernel: &Kernel, vdso_size: u64, hint: u64) -> Result<u64> {
    let f = &kernel.facts;
    let len = f.vvar_size + f.vvar_vclock_size + vdso_size;
    let addr = crate::mm::unmapped_area::get_unmapped_area(
        mm,
        &crate::mm::SearchRequest {
            addr: hint,
            len,
            fixed: false,
            file_offset: None,
            thp_capable_file: false,
            shared: false,
        },
    )
    .map_err(|e| mm_err(Path::new("[vdso]"), "map_vdso", "mapping the vDSO", e))?;
    let mut at = addr;
    mm.insert(special(
        at,
        at + f.vvar_size,
        Prot::R,
        "[vvar]",
        Maker::Vdso,
    ));
    at += f.vvar_size;
    if f.vvar_vclock_size > 0 {
        mm.insert(special(
            at,
            at + f.vvar_vclock_size,
            Prot::R,
            "[vvar_vclock]",
            Maker::Vdso,
        ));
        at += f.vvar_vclock_size;
    }
    mm.insert(special(at, at + vdso_size, Prot::RX, "[vdso]", Maker::Vdso));
    Ok(at)
}

/// Models `arch/x86/entry/vdso/vma.c: vdso_addr(start, len)` (up to v6.8, 64-bit tasks:
/// `map_vdso_randomized()`): a page in the 2 MiB block above `mm->start_stack` (the lowest
/// argument string), drawn whenever there is room, with or without PF_RANDOMIZE. N.B.
/// `align_vdso_addr()` (AMD family 15h only) is not modelled.
fn vdso_addr(start_stack: u64, len: u64, random: &mut ExecRandom) -> u64 {
    use crate::mm::unmapped_area::PMD_SIZE;
    let start = page_align(start_stack).unwrap_or(start_stack);
    let mut end = start.saturating_add(len).saturating_add(PMD_SIZE - 1) & !(PMD_SIZE - 1);
    if end >= super::profile::DEFAULT_MAP_WINDOW {
        end = super::profile::DEFAULT_MAP_WINDOW;
    }
    end -= len;
    if end > start {
        start + random.vdso_addr((end - start) / PAGE_SIZE + 1)
    } else {
        start
    }
}

/// Models `load_elf_binary()`: everything execve does to the address space, in the kernel's
/// order (stack, program segments, interpreter, vDSO, tables, brk), as `kernel` does it.
pub fn load_elf_binary(
    req: &ExecRequest,
    machine: &Facts,
    kernel: &Arc<Kernel>,
    random: &mut ExecRandom,
) -> Result<ExecImage> {
    // Everything before the point of no return: execve refuses the file, or the handler
    // that takes it has read it (kernel::verdict).
    let verdict::BinPrm {
        program: img,
        abi,
        interp,
    } = verdict::search_binary_handler(req)?;
    if abi == Abi::X86_64 && kernel.rules.arch == KernelArch::I386 {
        // fs/binfmt_elf.c: elf_check_arch() of a 32-bit kernel accepts EM_386 (and EM_486)
        // only, and it has no compat handler for 64-bit programs.
        return Err(Error::refused(
            &img.path,
            "ENOEXEC",
            format!(
                "a 64-bit program, and kernel {} is a 32-bit kernel",
                kernel.release
            ),
        ));
    }
    let path = img.path.clone();
    let commit_pages = crate::host::exec::overcommit_limit_pages();
    // begin_new_exec(): `me->personality &= ~bprm->per_clear`.
    let per_clear = bprm_fill_uid(&img, machine.no_new_privs);
    let pers = if per_clear {
        req.personality & !personality::PER_CLEAR_ON_SETID
    } else {
        req.personality
    };

    let exstack = executable_stack(&img);
    // x86 elf_read_implies_exec() (v5.8+): only ia32 tasks without PT_GNU_STACK.
    let read_implies_exec = abi == Abi::I386
        && (exstack == ExecutableStack::Default || pers & personality::READ_IMPLIES_EXEC != 0);
    let profile = KernelProfile::for_task(kernel, abi, pers & personality::ADDR_LIMIT_3GB != 0);
    let rules = &kernel.rules;
    let kf = &kernel.facts;
    let pf_randomize = personality::pf_randomize(kf.randomize_va_space, pers);

    // setup_new_exec() -> arch_pick_mmap_layout()
    let bits = profile.mmap_rnd_bits;
    let rnd = if pf_randomize {
        random.arch_rnd(DrawKind::MmapBase, bits)
    } else {
        0
    };
    let layout = arch_pick_mmap_layout(&profile, kf, pers, req.rlimit_stack, rnd);
    let mut mm = AddressSpace::new(layout, rules.mm.clone());
    mm.rlimit_as = req.rlimit_as;

    // setup_arg_pages()
    let strings = StackStrings {
        filename: &req.filename,
        argv: &req.argv,
        envp: &req.envp,
    };
    let stack = setup_arg_pages(
        &profile,
        &strings,
        req.rlimit_stack,
        profile.auxv_entries,
        pf_randomize,
        random,
    );
    // setup_arg_pages() expands the stack (expand_stack_locked() -> acct_stack_growth() ->
    // may_expand_vm(); a failure is -EFAULT), and create_elf_tables() may extend it further
    // (find_extend_vma_locked()). The stack is the only VMA then, and not yet in `mm`:
    // asking for all of its pages is asking for total_vm + the growth.
    let copied = page_align(stack.vm_end - stack.arg_start).unwrap_or(0) / PAGE_SIZE;
    for (step, start) in [
        ("setup_arg_pages", stack.expanded_start),
        ("create_elf_tables", stack.vm_start),
    ] {
        let pages = (stack.vm_end - start) / PAGE_SIZE;
        if pages > copied.max(1) {
            mm.may_expand_vm(pages).map_err(|_| {
                let limit = mm.rlimit_as / PAGE_SIZE;
                let why =
                    format!("growing the stack to {pages} pages passes RLIMIT_AS ({limit} pages)");
                killed(&img.path, step, "EFAULT", why)
            })?;
        }
    }
    let stack_exec = match exstack {
        ExecutableStack::EnableX => true,
        ExecutableStack::DisableX => false,
        ExecutableStack::Default => read_implies_exec,
    };
    let stack_vma = Vma {
        start: stack.vm_start,
        end: stack.vm_end,
        prot: Prot::new(true, true, stack_exec),
        shared: false,
        account: true,
        growsdown: true,
        // copy_strings() wrote the arguments.
        anon_vma: true,
        backing: Backing::Anon,
        origin: Origin::new(stack.vm_start, stack.vm_end, Maker::Stack),
    };
    mm.insert(stack_vma.clone());

    // The program's PT_LOADs.
    let file = open_file(&img, 1, req.root.as_deref())?;
    let mut next_open_id = 2;
    let e_type = img.e_type();
    let total_size = total_mapping_size_class(&img.phdrs, img.is_64());
    let alignment = maximum_alignment(&img.phdrs);

    let mut load_bias: u64 = 0;
    let mut first = true;
    let mut elf_brk: u64 = 0;
    // Up to v6.6 the .bss is mapped by set_brk() from these, not per segment.
    let mut ends = BssEnds::default();
    let program = Arc::new(Object {
        role: Role::Program,
        path: file.path.clone(),
    });
    let mut m = Mapper {
        mm: &mut mm,
        file: file.clone(),
        object: program,
        read_implies_exec,
        path: &path,
        file_len: img.len(),
        commit_pages,
    };
    for (phdr, ph) in loads(&img) {
        if let (BssTail::SetBrk, Some((bphdr, bph))) = (rules.program_bss, &ends.seg) {
            // A PT_LOAD with p_memsz > p_filesz before this one: set_brk() now.
            if ends.elf_brk > ends.elf_bss {
                m.set_brk(
                    ends.elf_bss.wrapping_add(load_bias),
                    ends.elf_brk.wrapping_add(load_bias),
                    (*bphdr, bph),
                )?;
            }
        }
        let prot = make_prot(ph.p_flags, read_implies_exec);
        let vaddr = ph.p_vaddr;
        let mut placement = Placement::Fixed;
        let mut seg_total = 0;
        if first {
            if e_type == ET_EXEC {
                placement = Placement::FixedNoReplace;
            } else {
                seg_total = total_size;
                if total_size == 0 {
                    return Err(killed(
                        &path,
                        "load_elf_binary",
                        "EINVAL",
                        "ET_DYN whose PT_LOAD segments span nothing (total_mapping_size() is 0)",
                    ));
                }
                if interp.is_some() {
                    // PIE: ELF_ET_DYN_BASE (+ arch_mmap_rnd()), aligned to maximum_alignment().
                    load_bias = profile.elf_et_dyn_base;
                    if pf_randomize {
                        load_bias += random.arch_rnd(DrawKind::LoadBias, bits);
                    }
                    load_bias &= !(alignment - 1);
                    placement = Placement::FixedNoReplace;
                } else if alignment > PAGE_SIZE && rules.loader_p_align {
                    // A loader with a large alignment (v6.11+): find where it would go,
                    // unmap, align.
                    load_bias = m.elf_load(0, (phdr, ph), prot, Placement::Hint, total_size)?;
                    m.mm.munmap(load_bias, total_size);
                    load_bias &= !(alignment - 1);
                    placement = Placement::FixedNoReplace;
                } else {
                    load_bias = 0;
                    placement = Placement::Hint;
                }
                load_bias = page_start(load_bias.wrapping_sub(vaddr));
            }
        }
        let map_addr = m.load_segment(
            rules.program_bss,
            load_bias.wrapping_add(vaddr),
            (phdr, ph),
            prot,
            placement,
            seg_total,
        )?;
        if first {
            first = false;
            if e_type == ET_DYN {
                load_bias = load_bias
                    .wrapping_add(map_addr.wrapping_sub(page_start(load_bias.wrapping_add(vaddr))));
            }
        }
        // The program's check takes p_vaddr as it is in the file, not relocated by
        // load_bias (the interpreter's adds its load address): a PIE segment whose p_vaddr
        // is past TASK_SIZE is killed even where load_bias wraps it back into place.
        let k = ph.p_vaddr;
        let ts = profile.task_size;
        if k >= ts || ph.p_filesz > ph.p_memsz || ph.p_memsz > ts || ts - ph.p_memsz < k {
            return Err(killed(
                &path,
                "load_elf_binary",
                "EINVAL",
                if ph.p_filesz > ph.p_memsz {
                    format!(
                        "PT_LOAD #{phdr}'s p_filesz {:#x} is larger than its p_memsz {:#x}",
                        ph.p_filesz, ph.p_memsz
                    )
                } else {
                    format!(
                        "PT_LOAD #{phdr}'s p_vaddr {k:#x} (p_memsz {:#x}) does not fit below TASK_SIZE {ts:#x}",
                        ph.p_memsz
                    )
                },
            ));
        }
        elf_brk = elf_brk.max(ph.p_vaddr.saturating_add(ph.p_memsz));
        ends.add(0, (phdr, ph));
    }
    let e_entry = img.header.e_entry.wrapping_add(load_bias);
    let phdr_addr = phdr_vaddr(&img).wrapping_add(load_bias);
    elf_brk = elf_brk.wrapping_add(load_bias);
    if let (BssTail::SetBrk, Some((bphdr, bph))) = (rules.program_bss, &ends.seg) {
        // set_brk(elf_bss, elf_brk), before the interpreter is mapped.
        m.set_brk(
            ends.elf_bss.wrapping_add(load_bias),
            ends.elf_brk.wrapping_add(load_bias),
            (*bphdr, bph),
        )?;
    }

    // The interpreter.
    let mut interp_image = None;
    let mut interp_file = None;
    let interp_info = match interp {
        None => None,
        Some((requested, iimg)) => {
            let iimg = Arc::new(iimg);
            interp_image = Some(iimg.clone());
            let ifile = open_file(&iimg, next_open_id, req.root.as_deref())?;
            interp_file = Some(ifile.clone());
            next_open_id += 1;
            let load_addr = load_elf_interp(
                &mut mm,
                &iimg,
                ifile,
                load_bias,
                read_implies_exec,
                commit_pages,
                rules.interp_bss,
            )?;
            Some((
                InterpInfo {
                    requested,
                    path: iimg.path.clone(),
                    load_addr,
                },
                load_addr.wrapping_add(iimg.header.e_entry),
            ))
        }
    };
    let elf_entry = interp_info.as_ref().map(|(_, e)| *e).unwrap_or(e_entry);
    if elf_entry >= profile.task_size {
        // BAD_ADDR(elf_entry)
        return Err(killed(
            &path,
            "load_elf_binary",
            "EINVAL",
            format!(
                "the entry point {elf_entry:#x} ({}) is not below TASK_SIZE {:#x}",
                if interp_info.is_some() {
                    "the interpreter's e_entry plus its load address"
                } else {
                    "e_entry plus load_bias"
                },
                profile.task_size
            ),
        ));
    }

    // ARCH_SETUP_ADDITIONAL_PAGES: the vDSO (`mm->start_stack` is `bprm->p` here, set by
    // setup_arg_pages()).
    let vdso_len = kf.vvar_size + kf.vvar_vclock_size + profile.vdso_size;
    let vdso_hint = if rules.vdso_hinted(abi) {
        vdso_addr(stack.arg_start, vdso_len, random)
    } else {
        0
    };
    let vdso_base = map_vdso(&mut mm, kernel, profile.vdso_size, vdso_hint)?;

    // create_elf_tables() writes argv, envp and auxv inside the stack VMA and changes no
    // VMA; the model inserts the stack VMA as setup_arg_pages() left it once more, unless
    // a segment was mapped over it (MAP_FIXED replaces it), where the writes must find
    // writable memory.
    if mm
        .vmas()
        .any(|v| !v.growsdown && v.start < stack_vma.end && stack_vma.start < v.end)
    {
        verdict::create_elf_tables_check(&mm, &stack)
            .map_err(|why| killed(&path, "create_elf_tables", "EFAULT", why))?;
    } else {
        mm.insert(stack_vma);
    }
    mm.start_stack = stack.start_stack;

    // brk: a loader (ET_DYN without PT_INTERP) gets its brk at ELF_ET_DYN_BASE (always
    // since v6.15, only when randomising before); with randomisation one page of gap above
    // the .bss (v6.10+) and arch_randomize_brk().
    let randomize_brk = pf_randomize && kf.randomize_va_space > 1;
    let mut brk_moved = false;
    let mut brk_range = profile.brk_rnd_range;
    if e_type == ET_DYN
        && interp_info.is_none()
        && (rules.loader_brk == LoaderBrk::Always || randomize_brk)
    {
        elf_brk = profile.elf_et_dyn_base;
        brk_moved = true;
        if rules.loader_brk == LoaderBrk::WhenRandomized {
            // mm->brk = ELF_ET_DYN_BASE unaligned: randomize_page() shrinks the range by
            // the rounding (mm/util.c).
            brk_range -= page_align(elf_brk).unwrap_or(elf_brk) - elf_brk;
        }
    }
    let mut start_brk = page_align(elf_brk).unwrap_or(elf_brk);
    if randomize_brk {
        if !brk_moved && rules.brk_gap {
            start_brk += PAGE_SIZE;
        }
        start_brk += random.randomize_page(brk_range);
    }
    mm.start_brk = start_brk;
    mm.brk = start_brk;
    mm.gate_vma = if profile.has_vsyscall {
        kf.vsyscall.as_deref().map(|perms| {
            special(
                VSYSCALL_ADDR,
                VSYSCALL_ADDR + PAGE_SIZE,
                Prot::from_perms(perms),
                "[vsyscall]",
                Maker::Vsyscall,
            )
        })
    } else {
        None
    };

    Ok(ExecImage {
        abi,
        kernel: kernel.clone(),
        profile,
        mm,
        e_type,
        load_bias,
        e_entry,
        elf_entry,
        phdr_addr,
        interp: interp_info.map(|(i, _)| i),
        stack,
        executable_stack: exstack,
        read_implies_exec,
        pf_randomize,
        per_clear,
        draws: random.draws.clone(),
        at_secure: secureexec(&img, machine),
        filename: req.filename.clone(),
        vdso_base,
        program_file: file,
        interp_file,
        program_image: Arc::new(img),
        interp_image,
        next_open_id,
    })
}

/// Models `fs/exec.c: bprm_fill_uid()`'s effect on the personality: a set-user-ID file, or a
/// set-group-ID file with the group-execute bit, on a mount without `nosuid`, sets
/// `bprm->per_clear = PER_CLEAR_ON_SETID` (also when the tracer is root and no id changes).
/// N.B. the kernel skips this under `no_new_privs`; we read our own flag, which the child
/// inherits.
fn bprm_fill_uid(img: &ElfImage, no_new_privs: bool) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = img.meta.permissions().mode();
    let setid = mode & 0o4000 != 0 || mode & 0o2010 == 0o2010;
    if !setid {
        return false;
    }
    let nosuid = crate::host::fs::mounted_nosuid(&img.path);
    !nosuid && !no_new_privs
}

/// The `struct file` exec opened for `img` (open number `open_id`), as its mappings show
/// it: the canonical path (inside `root`, as the process there sees it), and the device
/// and inode of the `fstat` at open.
fn open_file(img: &ElfImage, open_id: u32, root: Option<&Path>) -> Result<Arc<FileRef>> {
    use std::os::unix::fs::MetadataExt;
    let io = |e| Error::io(&img.path, e);
    let (shown, host) = match root {
        None => {
            let c = crate::host::fs::host_realpath(&img.path).map_err(io)?;
            (c.clone(), c)
        }
        Some(r) => {
            let mut fs = crate::host::fs::Fs::new(Some(r), Path::new("/"));
            let (inside, host) = fs.realpath_of_host(&img.path).map_err(io)?;
            (PathBuf::from(inside), host)
        }
    };
    let mut id = crate::host::fs::file_id_known(&host, img.meta.dev(), img.meta.ino());
    id.path = shown;
    Ok(FileRef::open(id, open_id))
}

/// AT_SECURE as the kernel sets it (`security/commoncap.c: cap_bprm_creds_from_file()`
/// sets `secureexec` when exec changes the effective ids): the set-user-ID bit on a file
/// owned by someone else than our effective uid, or set-group-ID (with group execute) on a
/// file of another group. N.B. file capabilities are not looked at.
fn secureexec(img: &ElfImage, host: &Facts) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = img.meta.mode();
    (mode & 0o4000 != 0 && img.meta.uid() != host.euid)
        || (mode & 0o2010 == 0o2010 && img.meta.gid() != host.egid)
}

/// AT_PHDR before relocation: PT_PHDR's `p_vaddr`, else the PT_LOAD containing `e_phoff`.
fn phdr_vaddr(img: &ElfImage) -> u64 {
    if let Some(p) = img.phdr(crate::elf::PT_PHDR) {
        return p.p_vaddr;
    }
    let off = img.header.e_phoff;
    img.loads()
        .find(|p| p.p_offset <= off && off < p.p_offset + p.p_filesz)
        .map(|p| off - p.p_offset + p.p_vaddr)
        .unwrap_or(0)
}
