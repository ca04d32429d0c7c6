//! `/proc/PID/maps` lines: parsing, and formatting exactly as
//! `fs/proc/task_mmu.c: show_vma_header_prefix()` and `show_map_vma()` print them.

use std::fmt::Write as _;

use crate::mm::{AddressSpace, Backing, Prot, Vma};

/// One line of a maps file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `r--s` ...
    pub perms: String,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The name column: a path, `[stack]`, `[heap]`, `[vdso]` ..., or empty.
    pub path: String,
}

/// The column where names start is reached by padding the prefix to
/// `25 + 6 * sizeof(long) - 1` characters (`seq_setwidth()` in show_map_vma(); 72 on a
/// 64-bit kernel) and then one more space.
const NAME_PAD: usize = 25 + 6 * 8 - 1;

impl MapsLine {
    /// Parse one maps line.
    pub fn parse(line: &str) -> Result<MapsLine, String> {
        let bad = || format!("not a maps line: {line:?}");
        let mut it = line.splitn(6, ' ');
        let range = it.next().ok_or_else(bad)?;
        let perms = it.next().ok_or_else(bad)?;
        let offset = it.next().ok_or_else(bad)?;
        let dev = it.next().ok_or_else(bad)?;
        let inode = it.next().ok_or_else(bad)?;
        let path = it.next().unwrap_or("").trim_start().to_string();
        let (s, e) = range.split_once('-').ok_or_else(bad)?;
        let (ma, mi) = dev.split_once(':').ok_or_else(bad)?;
        let hex = |x: &str| u64::from_str_radix(x, 16).map_err(|_| bad());
        if perms.len() != 4 {
            return Err(bad());
        }
        Ok(MapsLine {
            start: hex(s)?,
            end: hex(e)?,
            perms: perms.to_string(),
            offset: hex(offset)?,
            dev_major: hex(ma)? as u32,
            dev_minor: hex(mi)? as u32,
            inode: inode.parse().map_err(|_| bad())?,
            path,
        })
    }

    /// Parse a whole maps text, skipping blank lines.
    pub fn parse_all(text: &str) -> Result<Vec<MapsLine>, String> {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(MapsLine::parse)
            .collect()
    }

    pub fn prot(&self) -> Prot {
        let b = self.perms.as_bytes();
        Prot::new(b[0] == b'r', b[1] == b'w', b[2] == b'x')
    }

    /// The line exactly as the kernel prints it (without the newline).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(100);
        let _ = write!(
            s,
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
            self.start,
            self.end,
            self.perms,
            self.offset,
            self.dev_major,
            self.dev_minor,
            self.inode
        );
        if !self.path.is_empty() {
            while s.len() < NAME_PAD {
                s.push(' ');
            }
            s.push(' ');
            s.push_str(&self.path);
        }
        s
    }
}

fn perms(prot: Prot, shared: bool) -> String {
    let mut s = String::with_capacity(4);
    s.push(if prot.read { 'r' } else { '-' });
    s.push(if prot.write { 'w' } else { '-' });
    s.push(if prot.exec { 'x' } else { '-' });
    s.push(if shared { 's' } else { 'p' });
    s
}

/// The name `fs/proc/task_mmu.c: get_vma_name()` gives a VMA: the file path, a special
/// mapping's name, `[heap]` for an anonymous VMA overlapping `[start_brk, brk)`
/// (`vma_is_initial_heap()`, v6.7+), `[stack]` for the VMA holding `start_stack`
/// (`vma_is_initial_stack()`), or nothing.
fn vma_name(mm: &AddressSpace, v: &Vma) -> String {
    match &v.backing {
        Backing::File { file, .. } => file.path.to_string_lossy().into_owned(),
        Backing::Special(n) => n.to_string(),
        Backing::Anon => {
            if v.start < mm.brk && v.end > mm.start_brk {
                "[heap]".into()
            } else if v.start <= mm.start_stack && v.end >= mm.start_stack {
                "[stack]".into()
            } else {
                String::new()
            }
        }
    }
}

/// The maps lines of an address space, in address order, `[vsyscall]` last.
pub fn lines(mm: &AddressSpace) -> Vec<MapsLine> {
    let mut out: Vec<MapsLine> = mm
        .vmas()
        .iter()
        .map(|v| {
            let (dev_major, dev_minor, inode, offset) = match &v.backing {
                Backing::File { file, offset } => {
                    (file.dev_major, file.dev_minor, file.ino, *offset)
                }
                _ => (0, 0, 0, 0),
            };
            MapsLine {
                start: v.start,
                end: v.end,
                perms: perms(v.prot, v.shared),
                offset,
                dev_major,
                dev_minor,
                inode,
                path: vma_name(mm, v),
            }
        })
        .collect();
    if let Some(p) = mm.vsyscall {
        out.push(MapsLine {
            start: crate::kernel::profile::VSYSCALL_ADDR,
            end: crate::kernel::profile::VSYSCALL_ADDR + 4096,
            perms: perms(p, false),
            offset: 0,
            dev_major: 0,
            dev_minor: 0,
            inode: 0,
            path: "[vsyscall]".into(),
        });
    }
    out
}

/// The whole maps text of an address space, one line per VMA, each ending in a newline.
pub fn render(mm: &AddressSpace) -> String {
    let mut s = String::new();
    for l in lines(mm) {
        s.push_str(&l.render());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as this kernel printed them (spec/kernel.md 12.1, 12.3): parse and re-render.
    #[test]
    fn round_trip_kernel_lines() {
        let real = [
            "555555554000-555555555000 r--p 00000000 fe:00 10207942                   /home/user/demo/hello64pie",
            "7ffff7ffa000-7ffff7fff000 rw-p 00000000 00:00 0 ",
            "00400000-00401000 r--p 00000000 fe:00 10209009                           /home/user/demo/static64",
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
            "f7fc9000-f7ffb000 r-xp 00000000 fe:00 738026                             /usr/lib32/ld-linux.so.2",
        ];
        for l in real {
            assert_eq!(MapsLine::parse(l).unwrap().render(), l);
        }
    }

    #[test]
    fn own_maps_round_trip() {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap();
        for l in text.lines() {
            assert_eq!(MapsLine::parse(l).unwrap().render(), l);
        }
    }
}
