//! `MachineParams`: the facts of this machine that the model needs (sysctls, rlimits,
//! personality, vDSO sizes, kernel release). This is the only module that reads `/proc/sys`,
//! our own `/proc/self/maps` and `/proc/self/auxv`; everything else gets a `MachineParams`.

use std::ffi::OsString;
use std::fs;

use crate::mm::Prot;

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// Personality bits (include/uapi/linux/personality.h).
pub mod personality {
    pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
    pub const ADDR_COMPAT_LAYOUT: u32 = 0x0200000;
    pub const READ_IMPLIES_EXEC: u32 = 0x0400000;
    pub const ADDR_LIMIT_3GB: u32 = 0x8000000;
    pub const MMAP_PAGE_ZERO: u32 = 0x0100000;
    /// `PER_CLEAR_ON_SETID`: what exec of a set-user-ID program clears.
    pub const PER_CLEAR_ON_SETID: u32 =
        READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE | ADDR_COMPAT_LAYOUT | MMAP_PAGE_ZERO;
}

/// The machine facts, read once.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MachineParams {
    /// `uname -r`.
    pub kernel_release: String,
    /// `kernel.randomize_va_space`.
    pub randomize_va_space: u32,
    /// `vm.mmap_rnd_bits` and `vm.mmap_rnd_compat_bits`.
    pub mmap_rnd_bits: u32,
    pub mmap_rnd_compat_bits: u32,
    /// `vm.legacy_va_layout`.
    pub legacy_va_layout: bool,
    /// `vm.mmap_min_addr`.
    pub mmap_min_addr: u64,
    /// `stack_guard_gap` in bytes (boot parameter `stack_guard_gap=` pages, default 256).
    pub stack_guard_gap: u64,
    /// Our own `RLIMIT_STACK` soft limit (inherited by what we exec).
    pub rlimit_stack: u64,
    /// Our own personality (inherited by what we exec; e.g. `setarch -R elfmap ...`).
    pub personality: u32,
    /// Sizes of the `[vvar]`, `[vvar_vclock]` and 64-bit `[vdso]` mappings, from our maps.
    pub vvar_size: u64,
    pub vvar_vclock_size: u64,
    pub vdso64_size: u64,
    /// `[vsyscall]` permissions (vsyscall=xonly: `--x`, emulate: `r-x`), `None` if absent.
    pub vsyscall: Option<Prot>,
    /// Number of auxv entries (AT_NULL included) the kernel gives a 64-bit dynamic program,
    /// from our own `/proc/self/auxv`.
    pub auxv_entries_64: u64,
    /// Our environment, as `NAME=value` strings, in order.
    #[serde(skip)]
    pub env: Vec<OsString>,
}

/// A small /proc file as text ([`read_proc`]).
fn read_small(path: &str) -> Option<String> {
    String::from_utf8(read_proc(path, 4096)?).ok()
}

/// A whole /proc file, whose size stat() does not tell (it says 0): reads into `room`
/// bytes (doubled when filled) until the end, without the size query and growing probe
/// reads of `fs::read`.
fn read_proc(path: &str, room: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; room.max(1)];
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(n * 2, 0);
        }
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(n);
    Some(buf)
}

fn read_num(path: &str) -> Option<u64> {
    read_small(path)?.trim().parse().ok()
}

impl MachineParams {
    /// Read this machine's parameters. Missing files give the kernel's defaults.
    pub fn detect() -> MachineParams {
        let uts = nix::sys::utsname::uname().ok();
        let kernel_release = uts
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let rlimit_stack =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
                .map(|(soft, _)| soft)
                .unwrap_or(8 << 20);
        // personality(0xffffffff) queries without changing.
        // SAFETY: the query form of personality(2) has no effect on the process.
        let personality = unsafe { libc::personality(0xffff_ffff) } as u32;
        let guard_pages = read_small("/proc/cmdline")
            .and_then(|c| {
                c.split_whitespace().find_map(|w| {
                    w.strip_prefix("stack_guard_gap=")
                        .and_then(|v| v.parse::<u64>().ok())
                })
            })
            .unwrap_or(256);
        let mut m = MachineParams {
            kernel_release,
            randomize_va_space: read_num("/proc/sys/kernel/randomize_va_space").unwrap_or(2) as u32,
            mmap_rnd_bits: read_num("/proc/sys/vm/mmap_rnd_bits").unwrap_or(28) as u32,
            mmap_rnd_compat_bits: read_num("/proc/sys/vm/mmap_rnd_compat_bits").unwrap_or(8) as u32,
            legacy_va_layout: read_num("/proc/sys/vm/legacy_va_layout").unwrap_or(0) != 0,
            mmap_min_addr: read_num("/proc/sys/vm/mmap_min_addr").unwrap_or(4096),
            stack_guard_gap: guard_pages * 4096,
            rlimit_stack,
            personality,
            vvar_size: 0x4000,
            vvar_vclock_size: 0x2000,
            vdso64_size: 0x2000,
            vsyscall: None,
            auxv_entries_64: 23,
            env: std::env::vars_os()
                .map(|(k, v)| {
                    let mut s = k;
                    s.push("=");
                    s.push(v);
                    s
                })
                .collect(),
        };
        m.read_own_maps();
        m.read_own_auxv();
        m
    }

    fn read_own_maps(&mut self) {
        let Some(text) = read_proc("/proc/self/maps", 4096) else {
            return;
        };
        let text = String::from_utf8_lossy(&text);
        let mut vvar_vclock = false;
        for line in text.lines() {
            let Ok(l) = crate::maps::MapsLine::parse(line) else {
                continue;
            };
            match l.path.as_str() {
                "[vvar]" => self.vvar_size = l.end - l.start,
                "[vvar_vclock]" => {
                    self.vvar_vclock_size = l.end - l.start;
                    vvar_vclock = true;
                }
                "[vdso]" => self.vdso64_size = l.end - l.start,
                "[vsyscall]" => self.vsyscall = Some(l.prot()),
                _ => {}
            }
        }
        if !vvar_vclock {
            self.vvar_vclock_size = 0;
        }
    }

    fn read_own_auxv(&mut self) {
        if let Some(b) = read_proc("/proc/self/auxv", 1024) {
            let n = b
                .chunks_exact(16)
                .position(|c| c[..8] == [0; 8])
                .map(|i| i as u64 + 1);
            if let Some(n) = n {
                self.auxv_entries_64 = n;
            }
        }
    }

    /// `PF_RANDOMIZE` for a task exec'd with personality `pers`:
    /// `randomize_va_space != 0 && !(personality & ADDR_NO_RANDOMIZE)`.
    pub fn pf_randomize(&self, pers: u32) -> bool {
        self.randomize_va_space != 0 && pers & personality::ADDR_NO_RANDOMIZE == 0
    }
}
