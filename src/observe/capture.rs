//! DOC: `elfmap kernel capture`: everything a plan for this machine's kernel needs that user
//! space can see, measured here, so that `plan --kernel FILE` plans for this machine from
//! anywhere ([`crate::kernel::profile::Kernel::captured`]):
//!
//! * the release, architecture and `/proc/version`; the sysctls and our own maps and auxv
//!   ([`crate::host::Facts`]): `[vvar]`, `[vvar_vclock]` and `[vdso]` of a 64-bit task, the
//!   `[vsyscall]` mode, the auxv length;
//! * two probe programs, made here (an ELF header, a PT_LOAD with a 3-page `.bss`, a
//!   PT_GNU_STACK: never run), a 64-bit and a 32-bit one, exec'd under ptrace with
//!   `ADDR_NO_RANDOMIZE` and looked at in the exec stop: the 32-bit task's vDSO and vvar
//!   sizes and auxv length (a 64-bit process cannot see them in itself), and whether the
//!   `.bss` tail ending at `start_brk` is named `[heap]` (up to v6.6);
//! * mappings made in this process: whether a hint-less anonymous mapping of 4 MiB is
//!   2 MiB-aligned (v6.7+), and, for each mounted filesystem where a readable regular file
//!   is found, whether a 4 MiB private mapping of it is (`thp_get_unmapped_area`).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host::kernel::{KernelFacts, Probes};
use crate::kernel::profile::KernelCapture;
use crate::maps::MapsLine;
use crate::mm::rules::MountThp;

/// `PMD_SIZE`.
const PMD: u64 = 2 << 20;

/// Capture this machine's kernel.
pub fn capture() -> Result<KernelCapture> {
    let host = crate::host::Facts::detect();
    let uts = nix::sys::utsname::uname().map_err(|e| Error::observe("uname", e.to_string()))?;
    let machine = uts.machine().to_string_lossy().into_owned();
    let version = std::fs::read_to_string("/proc/version")
        .unwrap_or_default()
        .trim_end()
        .to_string();
    let chosen = crate::kernel::rules::for_release(&host.kernel_release);
    let defaults = crate::kernel::profile::default_facts(chosen.built_in);
    let mut facts = KernelFacts::of_host(&host, defaults.vdso32_size);
    if Path::new("/proc/sys/vm/mmap_rnd_compat_bits").exists() {
        facts.mmap_rnd_compat_bits = Some(host.mmap_rnd_compat_bits);
    } else {
        facts.mmap_rnd_compat_bits = None;
    }
    let mut probes = Probes::default();
    for class64 in [true, false] {
        match probe_exec(class64) {
            Ok(seen) => {
                if class64 {
                    facts.auxv_entries_64 = seen.auxv_entries;
                } else {
                    facts.vdso32_size = seen.vdso;
                    facts.auxv_entries_32 = seen.auxv_entries;
                }
                probes.heap_names_bss_tail = Some(seen.bss_named_heap);
            }
            Err(e) => probes.notes.push(format!(
                "the {}-bit probe program: {e}",
                if class64 { 64 } else { 32 }
            )),
        }
    }
    match thp_anon() {
        Ok(a) => probes.thp_anon = Some(a),
        Err(e) => probes.notes.push(format!("anonymous mapping probe: {e}")),
    }
    facts.mounts = Some(mounts(&chosen.rules.mm, &mut probes.notes));
    Ok(KernelCapture {
        schema: KernelCapture::SCHEMA.into(),
        release: host.kernel_release.clone(),
        machine,
        version,
        facts,
        probes,
    })
}

/// What the exec stop of a probe program showed.
struct ProbeSeen {
    vdso: u64,
    auxv_entries: u64,
    bss_named_heap: bool,
}

/// The probe program: an ET_EXEC at the usual link address with one PT_LOAD (its file
/// bytes in the first page, three more pages of `.bss`) and a PT_GNU_STACK. It is never
/// run: only exec'd to the exec stop.
fn probe_elf(class64: bool) -> Vec<u8> {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::header::{Header, EM_386, EM_X86_64, ET_EXEC};
    use goblin::elf::program_header::{ProgramHeader, PF_R, PF_W, PT_GNU_STACK, PT_LOAD};
    use scroll::Pwrite;
    let ctx = Ctx::new(
        if class64 {
            Container::Big
        } else {
            Container::Little
        },
        Endian::Little,
    );
    let mut h = Header::new(ctx);
    let (ehsize, phentsize) = (u64::from(h.e_ehsize), u64::from(h.e_phentsize));
    let base: u64 = if class64 { 0x40_0000 } else { 0x0804_8000 };
    let size = ehsize + 2 * phentsize;
    h.e_type = ET_EXEC;
    h.e_machine = if class64 { EM_X86_64 } else { EM_386 };
    h.e_version = 1;
    h.e_entry = base + size;
    h.e_phoff = ehsize;
    h.e_phnum = 2;
    let load = ProgramHeader {
        p_type: PT_LOAD,
        p_flags: PF_R | PF_W,
        p_offset: 0,
        p_vaddr: base,
        p_paddr: base,
        p_filesz: size,
        p_memsz: 4 << 12,
        p_align: 4096,
    };
    let stack = ProgramHeader {
        p_type: PT_GNU_STACK,
        p_flags: PF_R | PF_W,
        p_align: 16,
        ..ProgramHeader::default()
    };
    let mut bytes = vec![0u8; size as usize];
    let ok = bytes
        .pwrite_with(h, 0, scroll::Endian::Little)
        .and_then(|_| bytes.pwrite_with(load, ehsize as usize, ctx))
        .and_then(|_| bytes.pwrite_with(stack, (ehsize + phentsize) as usize, ctx));
    debug_assert!(ok.is_ok(), "the probe's headers fit");
    bytes
}

/// Exec the probe program of `class64` to its exec stop and look.
fn probe_exec(class64: bool) -> std::result::Result<ProbeSeen, String> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "elfmap-probe{}-{}",
        if class64 { 64 } else { 32 },
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)?;
        f.write_all(&probe_elf(class64))
    };
    write().map_err(|e| format!("{}: {e}", path.display()))?;
    let req = super::RunRequest {
        filename: path.clone().into_os_string(),
        argv: vec![path.clone().into_os_string()],
        envp: Vec::new(),
        personality: crate::kernel::personality::ADDR_NO_RANDOMIZE,
        rlimit_stack: None,
        rlimit_as: None,
        stage: crate::stage::Stage::Exec,
        timeout: Duration::from_secs(10),
        peek: Vec::new(),
    };
    let seen = super::run(&req);
    let _ = std::fs::remove_file(&path);
    let obs = seen.map_err(|e| e.to_string())?;
    let lines = MapsLine::parse_all(&obs.maps)?;
    let size = |name: &str| {
        lines
            .iter()
            .find(|l| l.path == name)
            .map_or(0, |l| l.end - l.start)
    };
    let bss_end = if class64 { 0x40_4000 } else { 0x0804_c000 };
    let bss = lines
        .iter()
        .find(|l| l.end == bss_end && l.inode == 0)
        .ok_or_else(|| format!("no .bss line ending at {bss_end:#x} in\n{}", obs.maps))?;
    Ok(ProbeSeen {
        vdso: size("[vdso]"),
        auxv_entries: obs.auxv.len() as u64 + 1,
        bss_named_heap: bss.path == "[heap]",
    })
}

/// A private mapping made here and unmapped when dropped.
struct Mapping {
    addr: u64,
    len: u64,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ, MAP_PRIVATE | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0)`.
    fn new(len: u64, fd: Option<i32>) -> std::result::Result<Mapping, String> {
        let flags = libc::MAP_PRIVATE | if fd.is_none() { libc::MAP_ANONYMOUS } else { 0 };
        // SAFETY: mmap(2) with a null hint and without MAP_FIXED never replaces an existing
        // mapping; the memory is never accessed, only its address looked at, and it is
        // unmapped by Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                flags,
                fd.unwrap_or(-1),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Mapping {
            addr: p as u64,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: munmap(2) of exactly the range mmap returned, never used as memory.
        unsafe {
            libc::munmap(self.addr as *mut libc::c_void, self.len as usize);
        }
    }
}

/// Whether two 4 MiB mappings of `fd` (anonymous if `None`), made with a one-page
/// anonymous mapping between them (so that, unaligned, the second could not land on the
/// same 2 MiB boundary as the first), are both 2 MiB-aligned.
fn aligned_twice(fd: Option<i32>) -> std::result::Result<bool, String> {
    let a = Mapping::new(4 << 20, fd)?;
    let _spacer = Mapping::new(4096, None)?;
    let b = Mapping::new(4 << 20, fd)?;
    Ok(a.addr % PMD == 0 && b.addr % PMD == 0)
}

fn thp_anon() -> std::result::Result<bool, String> {
    aligned_twice(None)
}

/// Filesystems that hold no programs (nothing to measure there).
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nsfs",
];

/// `\040` and the other octal escapes of /proc/self/mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts of /proc/self/mountinfo (mount point, filesystem type, device) in order.
fn mountinfo() -> Vec<(PathBuf, String, u64)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(dev), Some(mp), Some(fstype)) = (f.get(2), f.get(4), f.get(sep + 1)) else {
            continue;
        };
        let dev = dev
            .split_once(':')
            .and_then(|(a, b)| Some(libc::makedev(a.parse().ok()?, b.parse().ok()?)))
            .unwrap_or(0);
        out.push((PathBuf::from(unescape(mp)), fstype.to_string(), dev));
    }
    out
}

/// A readable regular file on device `dev` below `dir` (breadth first, a bounded walk).
fn some_file(dir: &Path, dev: u64) -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let mut queue = std::collections::VecDeque::from([dir.to_path_buf()]);
    let mut seen = 0;
    while let Some(d) = queue.pop_front() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > 2000 {
                return None;
            }
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.is_file() && m.len() > 0 {
                if let Ok(f) = std::fs::File::open(e.path()) {
                    return Some(f);
                }
            } else if m.is_dir() {
                queue.push_back(e.path());
            }
        }
    }
    None
}

/// Each mount with whether large file mappings there are 2 MiB-aligned: measured on a file
/// found there, else the release's rule for the filesystem's magic.
fn mounts(rules: &crate::mm::rules::MmRules, notes: &mut Vec<String>) -> Vec<MountThp> {
    let mut out = Vec::new();
    for (mp, fstype, dev) in mountinfo() {
        if PSEUDO.contains(&fstype.as_str()) {
            continue;
        }
        let measured = some_file(&mp, dev).and_then(|f| aligned_twice(Some(f.as_raw_fd())).ok());
        let thp_aligned = match measured {
            Some(a) => a,
            None => {
                let magic = nix::sys::statfs::statfs(&mp)
                    .map(|s| s.filesystem_type().0)
                    .unwrap_or(0);
                let by_rule = rules.thp_file != crate::mm::rules::ThpFile::DaxOnly
                    && rules.thp_filesystems.contains(&magic);
                notes.push(format!(
                    "{} ({fstype}): no readable file found, {} by the release's rule",
                    mp.display(),
                    if by_rule { "aligned" } else { "not aligned" }
                ));
                by_rule
            }
        };
        out.push(MountThp {
            mount_point: mp,
            fs_type: fstype,
            thp_aligned,
            measured: measured.is_some(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe programs are ELF files the model reads as it reads any program.
    #[test]
    fn probe_programs_parse() {
        for class64 in [true, false] {
            let bytes = probe_elf(class64);
            let h = goblin::elf::Elf::parse(&bytes).unwrap();
            assert_eq!(h.is_64, class64);
            assert_eq!(h.program_headers.len(), 2);
            assert_eq!(h.program_headers[0].p_memsz, 4 << 12);
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/x\\"), "/x\\");
    }
}
