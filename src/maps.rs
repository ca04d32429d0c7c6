//! `/proc/PID/maps` lines, the text format alone: parsing, and formatting exactly as
//! `fs/proc/task_mmu.c: show_vma_header_prefix()` and `show_map_vma()` print them. What a
//! modelled address space prints is [`crate::render::maps`].

/// One line of a maps file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapsLine {
    #[serde(serialize_with = "crate::addr::hex")]
    pub start: u64,
    #[serde(serialize_with = "crate::addr::hex")]
    pub end: u64,
    /// `rwxp` / `r--s` ...
    pub perms: String,
    #[serde(serialize_with = "crate::addr::hex")]
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The name column: a path, `[stack]`, `[heap]`, `[vdso]` ..., or empty.
    pub path: String,
}

/// The column where names start is reached by padding the prefix to
/// `25 + 6 * sizeof(long) - 1` characters (`seq_setwidth()` in show_map_vma(); 72 on a
/// 64-bit kernel, 48 on a 32-bit one) and then one more space.
pub const NAME_PAD: usize = 25 + 6 * 8 - 1;

impl MapsLine {
    /// `start-end` as maps prints it.
    pub fn range(&self) -> String {
        format!("{:08x}-{:08x}", self.start, self.end)
    }

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

    /// The line exactly as a 64-bit kernel prints it (without the newline).
    pub fn render(&self) -> String {
        self.render_padded(NAME_PAD)
    }

    /// The line as a kernel that pads the name column to `pad` prints it.
    pub fn render_padded(&self, pad: usize) -> String {
        let mut s = Vec::with_capacity(100);
        self.render_into(&mut s, pad);
        String::from_utf8(s).expect("maps lines are built from str")
    }

    /// [`MapsLine::render_padded`], appended to `s`.
    pub fn render_into(&self, s: &mut Vec<u8>, pad: usize) {
        write_line(
            s,
            Fields {
                start: self.start,
                end: self.end,
                perms: &self.perms,
                offset: self.offset,
                dev: (self.dev_major, self.dev_minor),
                inode: self.inode,
                path: &self.path,
                pad,
            },
        );
    }
}

/// The columns of one maps line.
pub struct Fields<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: &'a str,
    pub offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    pub path: &'a str,
    /// The width the prefix is padded to before a name ([`NAME_PAD`] on a 64-bit kernel).
    pub pad: usize,
}

/// `v` in lower-case hex, zero-padded to `width` digits (`%0*lx`), written into `b` at
/// `at`; returns the index after it.
fn put_hex(b: &mut [u8; LINE_HEAD], at: usize, v: u64, width: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = ((64 - v.leading_zeros() as usize).div_ceil(4))
        .max(width)
        .max(1);
    let mut v = v;
    for i in (at..at + digits).rev() {
        b[i] = DIGITS[(v & 15) as usize];
        v >>= 4;
    }
    at + digits
}

/// `v` in decimal (`%lu`), written into `b` at `at`; returns the index after it.
fn put_dec(b: &mut [u8; LINE_HEAD], at: usize, v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = digits.len() - i;
    b[at..at + n].copy_from_slice(&digits[i..]);
    at + n
}

/// Room for a line's columns around the permissions: `start-end ` is at most 34 bytes, and
/// ` offset dev:dev inode ` at most 60, then the padding to the name column.
const LINE_HEAD: usize = 128;

/// One maps line as `show_map_vma()` prints it (without the newline): `%08lx-%08lx %s
/// %08llx %02x:%02x %lu `, then, for a named VMA, padding to the name column and the name.
/// The columns are built in a buffer on the stack (filled with spaces: the padding) and
/// appended with the permissions and the name in a few copies.
pub fn write_line(s: &mut Vec<u8>, f: Fields) {
    let line_start = s.len();
    let mut b = [b' '; LINE_HEAD];
    let mut n = put_hex(&mut b, 0, f.start, 8);
    b[n] = b'-';
    n = put_hex(&mut b, n + 1, f.end, 8) + 1;
    s.extend_from_slice(&b[..n]);
    s.extend_from_slice(f.perms.as_bytes());
    let mut b = [b' '; LINE_HEAD];
    n = put_hex(&mut b, 1, f.offset, 8);
    n = put_hex(&mut b, n + 1, u64::from(f.dev.0), 2);
    b[n] = b':';
    n = put_hex(&mut b, n + 1, u64::from(f.dev.1), 2);
    n = put_dec(&mut b, n + 1, f.inode) + 1;
    if !f.path.is_empty() {
        // Up to the name column (counted from the line's start), then one space.
        let so_far = s.len() - line_start;
        n = n.max(f.pad.saturating_sub(so_far)) + 1;
    }
    s.extend_from_slice(&b[..n]);
    s.extend_from_slice(f.path.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as this kernel (6.18) printed them: parse and re-render.
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
