//! DOC: the host at the edge. This module is the only reader of the machine elfmap runs on:
//! its sysctls, rlimits, personality, kernel release, CPU, its own `/proc/self/maps` and
//! `/proc/self/auxv` ([`Facts`]), and the file system ([`fs`]: paths under an optional
//! root, `realpath`, `readlink`, `stat`, `statfs`). The kernel and loader models are pure
//! functions of a [`Facts`] value, the files they read through [`fs`], and the ELF files.
//!
//! [`Facts`] is a plain value: it can be written as JSON ([`Facts::to_json`]) on one machine
//! and read back ([`Facts::from_json`]) on another, so that a plan can be made from captured
//! facts instead of the live ones.

pub mod binfmt_misc;
pub mod cpu;
pub mod exec;
pub mod fs;
pub mod kernel;

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

fn unlimited() -> u64 {
    RLIM_INFINITY
}

/// The facts of the host that a plan depends on, read once ([`Facts::detect`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
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
    /// The binfmt_misc registrations execve consults before the ELF handler (none when the
    /// file system is not mounted or is disabled).
    #[serde(default)]
    pub binfmt_misc: Vec<binfmt_misc::MiscEntry>,
    /// Our own `RLIMIT_AS` soft limit (inherited by what we exec; `u64::MAX`: unlimited).
    /// Facts written before it was kept read as unlimited.
    #[serde(default = "unlimited")]
    pub rlimit_as: u64,
    /// Our own personality (inherited by what we exec; e.g. `setarch -R elfmap ...`).
    pub personality: u32,
    /// Our own `PR_GET_NO_NEW_PRIVS` (inherited by what we exec).
    pub no_new_privs: bool,
    /// Our effective user and group ids (what exec compares a set-ID file's owner with).
    pub euid: u32,
    pub egid: u32,
    /// Sizes of the `[vvar]`, `[vvar_vclock]` and 64-bit `[vdso]` mappings, from our maps.
    pub vvar_size: u64,
    pub vvar_vclock_size: u64,
    pub vdso64_size: u64,
    /// `[vsyscall]` permissions as maps shows them (`--xp` for vsyscall=xonly, `r-xp` for
    /// emulate), `None` if absent.
    pub vsyscall: Option<String>,
    /// Number of auxv entries (AT_NULL included) the kernel gives a 64-bit dynamic program,
    /// from our own `/proc/self/auxv`.
    pub auxv_entries_64: u64,
    /// What CPUID says, as far as the loaders look at it ([`Facts::cpu`]): asked of the CPU
    /// only when a loader model needs it (each CPUID instruction is a VM exit here, about
    /// 5 us), or read with the rest from a facts file.
    #[serde(with = "lazy_cpu")]
    cpu: std::sync::OnceLock<cpu::CpuFacts>,
    /// Our current directory (inherited by what we exec).
    #[serde(with = "os_string")]
    pub cwd: OsString,
    /// Our environment, as `NAME=value` strings, in order (inherited by what we exec).
    #[serde(with = "os_strings")]
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
    let mut f = std::fs::File::open(path).ok()?;
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

impl Facts {
    /// Read this machine's facts. Missing files give the kernel's defaults.
    pub fn detect() -> Facts {
        let uts = nix::sys::utsname::uname().ok();
        let kernel_release = uts
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let rlimit_stack =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
                .map(|(soft, _)| soft)
                .unwrap_or(8 << 20);
        let rlimit_as = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_AS)
            .map(|(soft, _)| soft)
            .unwrap_or(RLIM_INFINITY);
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
        let mut f = Facts {
            kernel_release,
            randomize_va_space: read_num("/proc/sys/kernel/randomize_va_space").unwrap_or(2) as u32,
            mmap_rnd_bits: read_num("/proc/sys/vm/mmap_rnd_bits").unwrap_or(28) as u32,
            mmap_rnd_compat_bits: read_num("/proc/sys/vm/mmap_rnd_compat_bits").unwrap_or(8) as u32,
            legacy_va_layout: read_num("/proc/sys/vm/legacy_va_layout").unwrap_or(0) != 0,
            mmap_min_addr: read_num("/proc/sys/vm/mmap_min_addr").unwrap_or(4096),
            stack_guard_gap: guard_pages * 4096,
            rlimit_stack,
            rlimit_as,
            binfmt_misc: binfmt_misc::read(std::path::Path::new("/proc/sys/fs/binfmt_misc")),
            personality,
            // prctl(PR_GET_NO_NEW_PRIVS) has no side effects.
            no_new_privs: nix::sys::prctl::get_no_new_privs().unwrap_or(false),
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            vvar_size: 0x4000,
            vvar_vclock_size: 0x2000,
            vdso64_size: 0x2000,
            vsyscall: None,
            auxv_entries_64: 23,
            cpu: std::sync::OnceLock::new(),
            cwd: std::env::current_dir()
                .map(PathBuf::into_os_string)
                .unwrap_or_else(|_| "/".into()),
            env: std::env::vars_os()
                .map(|(k, v)| {
                    let mut s = k;
                    s.push("=");
                    s.push(v);
                    s
                })
                .collect(),
        };
        f.read_own_maps();
        f.read_own_auxv();
        f
    }

    /// Facts written by [`Facts::to_json`] (on this machine or another).
    pub fn from_json(text: &str, origin: &std::path::Path) -> Result<Facts> {
        serde_json::from_str(text)
            .map_err(|e| Error::bad_input(origin, format!("not a host facts file: {e}")))
    }

    /// These facts as JSON, for [`Facts::from_json`].
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("facts serialize")
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
                "[vsyscall]" => self.vsyscall = Some(l.perms.clone()),
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

    /// The CPU (detected at the first call for live facts).
    pub fn cpu(&self) -> &cpu::CpuFacts {
        self.cpu.get_or_init(cpu::CpuFacts::detect)
    }

    /// The current directory as a path.
    pub fn cwd(&self) -> PathBuf {
        PathBuf::from(&self.cwd)
    }
}

/// An `OsString` in JSON: a string when it is UTF-8, else its bytes.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OsText {
    Text(String),
    Bytes(Vec<u8>),
}

impl OsText {
    fn of(s: &OsString) -> OsText {
        use std::os::unix::ffi::OsStrExt;
        match s.to_str() {
            Some(t) => OsText::Text(t.to_string()),
            None => OsText::Bytes(s.as_bytes().to_vec()),
        }
    }
    fn into_os(self) -> OsString {
        use std::os::unix::ffi::OsStringExt;
        match self {
            OsText::Text(t) => t.into(),
            OsText::Bytes(b) => OsString::from_vec(b),
        }
    }
}

mod lazy_cpu {
    use super::cpu::CpuFacts;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::OnceLock;
    pub fn serialize<S: Serializer>(c: &OnceLock<CpuFacts>, ser: S) -> Result<S::Ok, S::Error> {
        c.get_or_init(CpuFacts::detect).serialize(ser)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<OnceLock<CpuFacts>, D::Error> {
        Ok(OnceLock::from(CpuFacts::deserialize(de)?))
    }
}

mod os_string {
    use super::OsText;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::ffi::OsString;
    pub fn serialize<S: Serializer>(s: &OsString, ser: S) -> Result<S::Ok, S::Error> {
        OsText::of(s).serialize(ser)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<OsString, D::Error> {
        Ok(OsText::deserialize(de)?.into_os())
    }
}

mod os_strings {
    use super::OsText;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::ffi::OsString;
    pub fn serialize<S: Serializer>(v: &[OsString], ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(v.iter().map(OsText::of))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<OsString>, D::Error> {
        Ok(Vec::<OsText>::deserialize(de)?
            .into_iter()
            .map(OsText::into_os)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written can be read back, non-UTF-8 environment strings included.
    #[test]
    fn facts_json_round_trip() {
        use std::os::unix::ffi::OsStringExt;
        let mut f = Facts::detect();
        f.cpu();
        f.env.push(OsString::from_vec(vec![b'X', b'=', 0xff, 0xfe]));
        let back = Facts::from_json(&f.to_json(), "facts.json".as_ref()).unwrap();
        assert_eq!(back, f);
        assert!(Facts::from_json("{}", "x.json".as_ref()).is_err());
    }
}
