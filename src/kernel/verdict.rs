//! DOC: the kernel's verdict on a file given to execve. Three outcomes:
//!
//! * refused: execve returns an error and nothing changes (every check before
//!   `fs/exec.c: begin_new_exec()`, the point of no return);
//! * killed: a step after the point of no return fails; the old program is gone, so
//!   `fs/exec.c: bprm_execve()` ends the task with `force_fatal_sig(SIGSEGV)` (or it dies
//!   of a fatal signal already pending, SIGKILL): not one instruction of the new program
//!   runs, and a tracer sees a SIGSEGV with `si_code == SI_KERNEL` where the exec stop
//!   would be;
//! * accepted: [`crate::kernel::binfmt_elf::load_elf_binary`] goes on to the exec stop.
//!
//! The checks before the point of no return are modelled here in the kernel's order, reading
//! the file as the kernel does: the first `BINPRM_BUF_SIZE` bytes (zero-filled past the end
//! of the file), the ELF header laid out as the *handler* that looks at it reads it, not as
//! `e_ident[EI_CLASS]` says. `EI_CLASS`, `EI_DATA`, `EI_VERSION` and `EI_OSABI` are never
//! looked at: a file is 64-bit because the native handler (`fs/binfmt_elf.c`) accepts its
//! `e_machine` (EM_X86_64), 32-bit because the compat one (`fs/compat_binfmt_elf.c`, the same
//! code built with `ELF_CLASS == ELFCLASS32`) accepts it (EM_386 or EM_486). The checks after
//! it are functions called from the mapping code at the kernel's points ([`killed`] makes
//! their error). Checked against the 6.12 source and the 6.18 kernel of this machine
//! (`make differential`).

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{EM_386, EM_X86_64, ET_CORE, ET_DYN, ET_EXEC, ET_REL};
use goblin::elf::program_header::ProgramHeader;

use super::binfmt_elf::{under_root, ExecRequest};
use crate::addr::PAGE_SIZE;
use crate::elf::ident::{ElfClass, RawEhdr};
use crate::elf::{Abi, ElfImage, EM_486, PT_INTERP};
use crate::error::{Error, Result};

/// `BINPRM_BUF_SIZE` (include/uapi/linux/binfmts.h): what `prepare_binprm()` reads.
const BINPRM_BUF_SIZE: usize = 256;
/// `PATH_MAX` (include/uapi/linux/limits.h).
const PATH_MAX: u64 = 4096;
/// The largest program-header table `load_elf_phdrs()` reads.
const PHDRS_MAX: u64 = 65536;

/// A refusal: execve's errno name and the reason.
#[derive(Debug)]
struct Refusal {
    errno: &'static str,
    reason: String,
}

fn refusal(errno: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        errno,
        reason: reason.into(),
    }
}

/// The binary format handlers that can take an ELF file on this kernel, in the order
/// `fs/exec.c: search_binary_handler()` tries them (registration order: `binfmt_elf`, then
/// `compat_binfmt_elf`). N.B. binfmt_misc registrations (qemu-user and the like) are not
/// modelled: a foreign `e_machine` is refused with ENOEXEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    /// `fs/binfmt_elf.c`: `elf_check_arch()` is `e_machine == EM_X86_64`.
    Native,
    /// `fs/compat_binfmt_elf.c`: `compat_elf_check_arch()` is EM_386 or EM_486 (x32 is not
    /// configured here).
    Compat,
}

impl Handler {
    fn class(self) -> ElfClass {
        match self {
            Handler::Native => ElfClass::Elf64,
            Handler::Compat => ElfClass::Elf32,
        }
    }
    fn abi(self) -> Abi {
        match self {
            Handler::Native => Abi::X86_64,
            Handler::Compat => Abi::I386,
        }
    }
    /// Models `elf_check_arch()` / `compat_elf_check_arch()`
    /// (arch/x86/include/asm/elf.h).
    fn elf_check_arch(self, e_machine: u16) -> bool {
        match self {
            Handler::Native => e_machine == EM_X86_64,
            Handler::Compat => e_machine == EM_386 || e_machine == EM_486,
        }
    }
    fn what(self) -> &'static str {
        match self {
            Handler::Native => "EM_X86_64",
            Handler::Compat => "EM_386 or EM_486",
        }
    }
}

/// The files exec opened, as the kernel reads them, once every check before the point of
/// no return has passed.
#[derive(Debug)]
pub struct BinPrm {
    /// The program, its header and program headers read with the handler's layout.
    pub program: ElfImage,
    pub abi: Abi,
    /// The PT_INTERP string and the interpreter opened (under `--root`), read with the same
    /// layout.
    pub interp: Option<(PathBuf, ElfImage)>,
}

/// The error of a step after the point of no return: the task is killed with SIGSEGV
/// (`fs/exec.c: bprm_execve()`). `step` names the kernel function that failed.
pub fn killed(
    path: &Path,
    step: &'static str,
    errno: &'static str,
    reason: impl Into<String>,
) -> Error {
    Error::ExecKilled {
        path: path.to_path_buf(),
        signal: "SIGSEGV",
        step,
        errno,
        reason: reason.into(),
    }
}

/// An errno's name (`ENOENT`), from an I/O error.
pub fn errno_name(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(n) => errno_str(nix::errno::Errno::from_raw(n)),
        None => "EIO",
    }
}

fn errno_str(e: nix::errno::Errno) -> &'static str {
    use nix::errno::Errno::*;
    match e {
        ENOENT => "ENOENT",
        EACCES => "EACCES",
        ENOTDIR => "ENOTDIR",
        ELOOP => "ELOOP",
        ENAMETOOLONG => "ENAMETOOLONG",
        EISDIR => "EISDIR",
        EPERM => "EPERM",
        ETXTBSY => "ETXTBSY",
        EINVAL => "EINVAL",
        ENOMEM => "ENOMEM",
        _ => "EIO",
    }
}

/// Models `fs/exec.c: prepare_binprm()`: the first `BINPRM_BUF_SIZE` bytes, the rest of
/// the buffer zero (the kernel clears it before reading).
pub(crate) fn prepare_binprm(file: &File) -> std::io::Result<[u8; BINPRM_BUF_SIZE]> {
    let mut buf = [0u8; BINPRM_BUF_SIZE];
    let mut got = 0;
    while got < BINPRM_BUF_SIZE {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// Models `fs/binfmt_elf.c: elf_read()`: exactly `len` bytes at `pos` or an error: EINVAL
/// for an offset that is negative as a `loff_t` or overflows one (`fs/read_write.c:
/// rw_verify_area()`), EIO for a short read (past the end of the file).
fn elf_read(file: &File, len: u64, pos: u64) -> std::result::Result<Vec<u8>, &'static str> {
    if pos > i64::MAX as u64 || pos.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
        return Err("EINVAL");
    }
    let mut buf = vec![0u8; len as usize];
    let mut got = 0usize;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => return Err("EIO"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(errno_name(&e)),
        }
    }
    Ok(buf)
}

fn ctx_of(class: ElfClass) -> Ctx {
    let container = match class {
        ElfClass::Elf64 => Container::Big,
        ElfClass::Elf32 => Container::Little,
    };
    Ctx::new(container, Endian::Little)
}

/// Models `fs/binfmt_elf.c: load_elf_phdrs()`: `e_phentsize` must be the handler's
/// `sizeof(struct elf_phdr)`, the table between 1 byte and 64 KiB, and all of it in the
/// file. `Err` says why not (the caller turns it into its own errno).
/// N.B. in the 6.12 source the table must also fit in `ELF_MIN_ALIGN` (a page: 73 64-bit
/// entries); the 6.18 kernel here has only the 64 KiB limit (measured: 1,170 entries of 56
/// bytes are accepted, 1,171 refused; 2,048 of 32 bytes accepted, 2,049 refused).
fn load_elf_phdrs(
    ehdr: &RawEhdr,
    file: &File,
    class: ElfClass,
) -> std::result::Result<Vec<ProgramHeader>, String> {
    let entsize = u64::from(class.phdr_size());
    if u64::from(ehdr.e_phentsize) != entsize {
        return Err(format!(
            "e_phentsize is {}, not {entsize}",
            ehdr.e_phentsize
        ));
    }
    let size = entsize * u64::from(ehdr.e_phnum);
    if size == 0 {
        return Err("no program headers (e_phnum is 0)".into());
    }
    if size > PHDRS_MAX {
        return Err(format!(
            "{} program headers ({size} bytes) are more than {PHDRS_MAX} bytes",
            ehdr.e_phnum
        ));
    }
    let table = elf_read(file, size, ehdr.e_phoff).map_err(|errno| {
        format!(
            "the program headers ({size} bytes at e_phoff {:#x}) cannot be read: {}",
            ehdr.e_phoff,
            if errno == "EIO" {
                "they lie past the end of the file"
            } else {
                "the offset is out of range"
            }
        )
    })?;
    ProgramHeader::parse(&table, 0, usize::from(ehdr.e_phnum), ctx_of(class))
        .map_err(|e| format!("bad program headers: {e}"))
}

/// Open `path` for exec as `fs/exec.c: do_open_execat()` does (for the program and, from
/// `open_exec()`, for its interpreter).
fn open_exec(path: &Path) -> std::result::Result<(File, std::fs::Metadata), Refusal> {
    let file = File::open(path).map_err(|e| refusal(errno_name(&e), e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| refusal(errno_name(&e), e.to_string()))?;
    crate::host::exec::may_exec(path, &meta).map_err(|why| refusal("EACCES", why))?;
    Ok((file, meta))
}

/// What one handler's `load_elf_binary()` concluded before the point of no return.
enum HandlerResult {
    /// It takes the file: exec goes on past the point of no return.
    Takes(Option<(PathBuf, PathBuf)>),
    /// ENOEXEC: the next handler is tried.
    NotMine(String),
    /// Any other error ends the search: execve returns it.
    Fails(Refusal),
}

/// Models `fs/binfmt_elf.c: load_elf_binary()` up to `begin_new_exec()`, for `handler`:
/// the header checks, `load_elf_phdrs()`, the PT_INTERP loop (size, read, NUL, `open_exec()`,
/// the interpreter's header), then the interpreter's own checks (magic, arch, its program
/// headers: ELIBBAD). N.B. `parse_elf_properties()` returns at once here
/// (CONFIG_ARCH_USE_GNU_PROPERTY is not set on x86), `arch_elf_pt_proc()` and
/// `arch_check_elf()` accept everything on x86.
fn load_elf_binary_checks(
    handler: Handler,
    buf: &[u8; BINPRM_BUF_SIZE],
    file: &File,
    req: &ExecRequest,
) -> HandlerResult {
    let class = handler.class();
    let Some(ehdr) = RawEhdr::read(buf, class) else {
        return HandlerResult::NotMine("truncated header".into());
    };
    if !ehdr.has_magic() {
        return HandlerResult::NotMine("not an ELF file (no \\x7fELF magic)".into());
    }
    if ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN {
        let what = match ehdr.e_type {
            ET_REL => "a relocatable object (ET_REL)".to_string(),
            ET_CORE => "a core dump (ET_CORE)".to_string(),
            t => format!("of ELF type {t}"),
        };
        return HandlerResult::NotMine(format!("it is {what}, not an executable"));
    }
    if !handler.elf_check_arch(ehdr.e_machine) {
        return HandlerResult::NotMine(format!(
            "wrong architecture: e_machine {} (this kernel runs EM_X86_64, EM_386 and EM_486 programs)",
            ehdr.e_machine
        ));
    }
    let phdrs = match load_elf_phdrs(&ehdr, file, class) {
        Ok(p) => p,
        Err(why) => return HandlerResult::NotMine(why),
    };
    // The first PT_INTERP (the loop breaks after it).
    let Some(ph) = phdrs.iter().find(|p| p.p_type == PT_INTERP) else {
        return HandlerResult::Takes(None);
    };
    if ph.p_filesz > PATH_MAX || ph.p_filesz < 2 {
        return HandlerResult::NotMine(format!(
            "PT_INTERP size {} is outside 2..{PATH_MAX}",
            ph.p_filesz
        ));
    }
    let raw = match elf_read(file, ph.p_filesz, ph.p_offset) {
        Ok(r) => r,
        Err(errno) => {
            return HandlerResult::Fails(refusal(
                errno,
                format!(
                    "the PT_INTERP string ({} bytes at {:#x}) cannot be read: {}",
                    ph.p_filesz,
                    ph.p_offset,
                    if errno == "EIO" {
                        "it lies past the end of the file"
                    } else {
                        "the offset is out of range"
                    }
                ),
            ))
        }
    };
    if raw.last() != Some(&0) {
        return HandlerResult::NotMine("PT_INTERP string is not NUL-terminated".into());
    }
    let name = raw.split(|&b| b == 0).next().unwrap_or_default();
    let requested = PathBuf::from(std::ffi::OsStr::from_bytes(name));
    let shown = String::from_utf8_lossy(name).into_owned();
    // open_exec() of an empty name (getname_kernel() lets it through): the lookup ends at
    // the current directory, which do_open_execat() refuses as not a regular file.
    if name.is_empty() {
        return HandlerResult::Fails(refusal(
            "EACCES",
            "interpreter cannot be opened: the PT_INTERP string is empty (the current directory is opened, not a regular file)",
        ));
    }
    let ipath = under_root(req.root.as_deref(), &requested);
    let ifile = match open_exec(&ipath) {
        Ok((f, _)) => f,
        Err(r) => {
            return HandlerResult::Fails(refusal(
                r.errno,
                format!("interpreter {shown} cannot be opened: {}", r.reason),
            ))
        }
    };
    // "Get the exec headers": sizeof(struct elfhdr) of this handler.
    let ibuf = match elf_read(&ifile, class.ehdr_size() as u64, 0) {
        Ok(b) => b,
        Err(errno) => {
            return HandlerResult::Fails(refusal(
                errno,
                format!(
                    "interpreter {shown}: shorter than an ELF header ({} bytes)",
                    class.ehdr_size()
                ),
            ))
        }
    };
    let Some(iehdr) = RawEhdr::read(&ibuf, class) else {
        return HandlerResult::Fails(refusal("EIO", format!("interpreter {shown}: truncated")));
    };
    // "Some simple consistency checks for the interpreter": ELIBBAD.
    if !iehdr.has_magic() {
        return HandlerResult::Fails(refusal(
            "ELIBBAD",
            format!("interpreter {shown} is not an ELF file"),
        ));
    }
    if !handler.elf_check_arch(iehdr.e_machine) {
        return HandlerResult::Fails(refusal(
            "ELIBBAD",
            format!(
                "interpreter {shown}: e_machine {}, but the program's handler takes {}",
                iehdr.e_machine,
                handler.what()
            ),
        ));
    }
    if let Err(why) = load_elf_phdrs(&iehdr, &ifile, class) {
        return HandlerResult::Fails(refusal("ELIBBAD", format!("interpreter {shown}: {why}")));
    }
    HandlerResult::Takes(Some((requested, ipath)))
}

/// `MAX_ARG_STRLEN` (include/uapi/linux/binfmts.h): the longest argument or environment
/// string, its NUL included.
const MAX_ARG_STRLEN: u64 = 32 * 4096;
/// `ARG_MAX`: the argument strings always allowed, whatever the stack limit.
const ARG_MAX: u64 = 32 * 4096;
/// `_STK_LIM`: 8 MiB.
const STK_LIM: u64 = 8 << 20;

/// Models `fs/exec.c: bprm_stack_limits()` and the checks of `copy_strings()`, made
/// before anything else: the filename, environment and argument strings plus a pointer
/// (`kernel_pointer` bytes) for each argument (at least one) and environment string must
/// fit in a quarter of the stack limit (at most 6 MiB, at least `ARG_MAX`), and no string
/// may be longer than `MAX_ARG_STRLEN`; else execve says E2BIG.
pub fn bprm_stack_limits(req: &ExecRequest, kernel_pointer: u64) -> Result<()> {
    let e2big = |why: String| Error::refused(&req.program, "E2BIG", why);
    let len = |s: &std::ffi::OsString| s.len() as u64 + 1;
    for s in req.argv.iter().chain(&req.envp) {
        if len(s) > MAX_ARG_STRLEN {
            return Err(e2big(format!(
                "an argument or environment string of {} bytes, longer than MAX_ARG_STRLEN ({MAX_ARG_STRLEN})",
                len(s)
            )));
        }
    }
    let limit = (STK_LIM / 4 * 3).min(req.rlimit_stack / 4).max(ARG_MAX);
    let pointers = (req.argv.len().max(1) + req.envp.len()) as u64 * kernel_pointer;
    let strings: u64 = len(&req.filename)
        + req.argv.iter().map(len).sum::<u64>()
        + req.envp.iter().map(len).sum::<u64>();
    if limit <= pointers || strings > limit - pointers {
        return Err(e2big(format!(
            "the argument and environment strings ({strings} bytes) and their pointers ({pointers}) exceed the {limit} bytes allowed: a quarter of the stack limit, at most 6 MiB, at least ARG_MAX"
        )));
    }
    // copy_strings() -> get_arg_page(): the strings are written below STACK_TOP_MAX into
    // the one-page stack of __bprm_mm_init(), which expand_downwards() grows page by page
    // (acct_stack_growth() -> may_expand_vm(): RLIMIT_AS); a page it cannot have is E2BIG.
    let pages = (kernel_pointer + strings).div_ceil(crate::addr::PAGE_SIZE);
    let as_pages = req.rlimit_as / crate::addr::PAGE_SIZE;
    if pages > 1 && pages > as_pages {
        return Err(e2big(format!(
            "the argument and environment strings take {pages} pages of the new stack, more than RLIMIT_AS allows ({as_pages} pages)"
        )));
    }
    Ok(())
}

/// Models `fs/exec.c: do_open_execat()`, `prepare_binprm()` and `search_binary_handler()`
/// with the ELF handlers' checks up to the point of no return: `Err(ExecRefused)` with
/// execve's errno, or the opened files read the way the accepting handler reads them.
pub fn search_binary_handler(req: &ExecRequest) -> Result<BinPrm> {
    let path = &req.program;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::refused(
            path,
            "EACCES",
            "it is a directory, not an ELF file",
        ));
    }
    if let Err(why) = crate::host::exec::may_exec(path, &meta) {
        return Err(Error::refused(path, "EACCES", why));
    }
    let buf = prepare_binprm(&file).map_err(|e| Error::io(path, e))?;
    if buf.starts_with(b"#!") {
        // fs/binfmt_script.c would take it.
        return Err(Error::bad_elf(
            path,
            "a script (#!), not an ELF file: plan its interpreter instead",
        ));
    }
    let mut reasons = Vec::new();
    for handler in [Handler::Native, Handler::Compat] {
        match load_elf_binary_checks(handler, &buf, &file, req) {
            HandlerResult::Takes(interp) => {
                let class = handler.class();
                let program = ElfImage::open_as(path, class)?;
                let interp = match interp {
                    None => None,
                    Some((requested, ipath)) => {
                        let img = ElfImage::open_as(&ipath, class).map_err(|e| {
                            Error::refused(
                                path,
                                "ELIBBAD",
                                format!("interpreter {}: {e}", requested.display()),
                            )
                        })?;
                        Some((requested, img))
                    }
                };
                return Ok(BinPrm {
                    program,
                    abi: handler.abi(),
                    interp,
                });
            }
            HandlerResult::Fails(r) => return Err(Error::refused(path, r.errno, r.reason)),
            HandlerResult::NotMine(why) => reasons.push((handler, why)),
        }
    }
    // Every handler said ENOEXEC. Say what the one whose architecture it is said, or else
    // why neither took it.
    let machine = u16::from_le_bytes([buf[18], buf[19]]);
    let reason = if &buf[..4] != b"\x7fELF" {
        "not an ELF file (no \\x7fELF magic), and no other binary format takes it".to_string()
    } else {
        reasons
            .iter()
            .find(|(h, _)| h.elf_check_arch(machine))
            .or_else(|| reasons.first())
            .map(|(_, why)| why.clone())
            .unwrap_or_default()
    };
    Err(Error::refused(path, "ENOEXEC", reason))
}

/// Models the checks of `mm/util.c: vm_mmap()`, `mm/mmap.c: do_mmap()` and `mmap_region()`
/// that the placement model does not make, for the file mapping `elf_map()` asks for:
/// a file offset that is not page-aligned (EINVAL), an offset whose end overflows (EINVAL,
/// EOVERFLOW), and the commitment of a private writable mapping larger than this machine's
/// memory and swap (`security_vm_enough_memory_mm()`: ENOMEM). `Err((errno, reason))`.
pub fn vm_mmap_check(
    off: u64,
    len: u64,
    writable: bool,
    commit_pages: Option<u64>,
) -> std::result::Result<(), (&'static str, String)> {
    let Some(alen) = crate::addr::page_align(len) else {
        return Err(("ENOMEM", format!("length {len:#x} overflows")));
    };
    if off.checked_add(alen).is_none() {
        return Err((
            "EINVAL",
            format!("file offset {off:#x} + {alen:#x} overflows"),
        ));
    }
    if crate::addr::page_offset(off) != 0 {
        return Err((
            "EINVAL",
            format!("file offset {off:#x} is not page-aligned (p_offset and p_vaddr differ modulo the page size)"),
        ));
    }
    if (off >> 12).checked_add(alen >> 12).is_none() {
        return Err(("EOVERFLOW", format!("file offset {off:#x} overflows")));
    }
    vm_enough_memory(alen, writable, commit_pages)
}

/// Models `mm/util.c: __vm_enough_memory()` in the heuristic mode for one private writable
/// mapping (accounted, `VM_ACCOUNT`): more pages than RAM and swap together is ENOMEM.
pub fn vm_enough_memory(
    len: u64,
    accounted: bool,
    commit_pages: Option<u64>,
) -> std::result::Result<(), (&'static str, String)> {
    match commit_pages {
        Some(limit) if accounted && len / PAGE_SIZE > limit => Err((
            "ENOMEM",
            format!(
                "{len:#x} bytes of private writable memory: more than this machine's memory and swap ({} pages; vm.overcommit_memory heuristic)",
                limit
            ),
        )),
        _ => Ok(()),
    }
}

/// Models `fs/binfmt_elf.c: padzero()` as `elf_load()` calls it: zeroing the rest of the
/// page after `p_filesz` faults (EFAULT) if that page is past the end of the file (the
/// page cache has no page there: `filemap_fault()` gives SIGBUS), and the error matters only
/// for a writable segment. `file_page` is the file offset of the byte at `zero_start`.
pub fn padzero_fails(zero_start: u64, file_off: u64, file_len: u64, writable: bool) -> bool {
    if !writable || crate::addr::page_offset(zero_start) == 0 {
        return false;
    }
    let pages_in_file = file_len.div_ceil(PAGE_SIZE);
    file_off / PAGE_SIZE >= pages_in_file
}

/// Models the checks of `mm/mmap.c: vm_brk_flags()` / `check_brk_limits()` for the
/// anonymous tail `[zero_start, zero_end)` (already page-aligned, wrapped as the kernel's
/// unsigned arithmetic wraps): a length that wraps, or a range past TASK_SIZE, is ENOMEM,
/// and so is a commitment larger than memory and swap.
pub fn vm_brk_check(
    zero_start: u64,
    zero_end: u64,
    task_size: u64,
    commit_pages: Option<u64>,
) -> std::result::Result<(), (&'static str, String)> {
    let len = zero_end.wrapping_sub(zero_start);
    if len == 0 {
        return Ok(());
    }
    if len > task_size || zero_start > task_size - len {
        return Err((
            "ENOMEM",
            format!("[{zero_start:#x}, {zero_end:#x}) is not below TASK_SIZE {task_size:#x}"),
        ));
    }
    vm_enough_memory(len, true, commit_pages)
}

/// Models the writes of `fs/binfmt_elf.c: create_elf_tables()` when a PT_LOAD was mapped
/// over the stack (MAP_FIXED replaces what it covers): `find_extend_vma_locked()` must
/// find memory at the stack pointer, and every `copy_to_user()` / `put_user()` of argc,
/// the pointer arrays, auxv, AT_RANDOM and AT_PLATFORM (`[start_stack, arg_start)`) must
/// land in writable memory, or it is EFAULT.
pub fn create_elf_tables_check(
    mm: &crate::mm::AddressSpace,
    stack: &super::stack::StackLayout,
) -> std::result::Result<(), String> {
    let (mut at, end) = (stack.start_stack, stack.arg_start);
    while at < end {
        match mm.find(at) {
            Some(v) if v.prot.write => at = v.end,
            Some(v) => {
                return Err(format!(
                    "the initial stack at {at:#x} lies in a read-only mapping ({:#x}-{:#x}) of a segment mapped over the stack",
                    v.start, v.end
                ))
            }
            None => return Err(format!("nothing is mapped at {at:#x}, where the initial stack goes")),
        }
    }
    Ok(())
}
