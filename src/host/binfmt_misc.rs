//! The binfmt_misc registrations of this machine (`/proc/sys/fs/binfmt_misc`, when that
//! file system is mounted): each entry as `fs/binfmt_misc.c: bm_entry_read()` shows it. What
//! execve does with them is the kernel model's ([`crate::kernel::script`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How an entry recognises a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MiscMatch {
    /// `magic` at `offset` of the first bytes, compared under `mask` (all ones if none).
    Magic {
        offset: usize,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// The text after the last '.' of the name given to execve.
    Extension(Vec<u8>),
}

/// One registration (`struct Node`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiscEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    /// The flag letters: P (preserve argv[0]), O (open the binary: AT_EXECFD), C
    /// (credentials), F (the interpreter opened at registration).
    pub flags: String,
    pub matches: MiscMatch,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An entry's file as `bm_entry_read()` writes it: `enabled`/`disabled`, `interpreter
/// PATH`, `flags: LETTERS`, then `offset N`, `magic HEX` and optionally `mask HEX`, or
/// `extension .EXT`.
pub fn parse_entry(name: &str, text: &str) -> Option<MiscEntry> {
    let mut lines = text.lines();
    let enabled = match lines.next()? {
        "enabled" => true,
        "disabled" => false,
        _ => return None,
    };
    let (mut interpreter, mut flags) = (None, String::new());
    let (mut offset, mut magic, mut mask, mut extension) = (0, None, None, None);
    for l in lines {
        if let Some(v) = l.strip_prefix("interpreter ") {
            interpreter = Some(PathBuf::from(v));
        } else if let Some(v) = l.strip_prefix("flags:") {
            flags = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("offset ") {
            offset = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("magic ") {
            magic = Some(hex(v)?);
        } else if let Some(v) = l.strip_prefix("mask ") {
            mask = Some(hex(v)?);
        } else if let Some(v) = l.strip_prefix("extension .") {
            extension = Some(v.as_bytes().to_vec());
        }
    }
    let matches = match (magic, extension) {
        (Some(magic), None) => MiscMatch::Magic {
            offset,
            magic,
            mask,
        },
        (None, Some(e)) => MiscMatch::Extension(e),
        _ => return None,
    };
    Some(MiscEntry {
        name: name.to_string(),
        enabled,
        interpreter: interpreter?,
        flags,
        matches,
    })
}

/// The registrations under `dir` (`/proc/sys/fs/binfmt_misc`) in directory order; none if
/// it is not mounted or `status` says `disabled` (`load_misc_binary()` then declines
/// everything).
pub fn read(dir: &Path) -> Vec<MiscEntry> {
    let enabled = std::fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() == "enabled");
    if !enabled {
        return Vec::new();
    }
    let Ok(d) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<MiscEntry> = d
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "status" || name == "register" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            parse_entry(&name, &text)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_as_the_kernel_shows_them() {
        let qemu = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let e = parse_entry("qemu-aarch64", qemu).unwrap();
        assert!(e.enabled);
        assert_eq!(e.flags, "POCF");
        match &e.matches {
            MiscMatch::Magic {
                offset,
                magic,
                mask,
            } => {
                assert_eq!(*offset, 0);
                assert_eq!(magic.len(), 20);
                assert_eq!(mask.as_ref().unwrap()[7], 0);
            }
            m => panic!("{m:?}"),
        }
        let wine = "disabled\ninterpreter /usr/bin/wine\nflags: \nextension .exe\n";
        let w = parse_entry("wine", wine).unwrap();
        assert!(!w.enabled);
        assert_eq!(w.matches, MiscMatch::Extension(b"exe".to_vec()));
        assert_eq!(parse_entry("x", "enabled\nflags: \n"), None);
    }
}
