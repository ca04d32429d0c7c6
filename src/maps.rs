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

// ---- Reading maps text from anywhere -------------------------------------------------------
//
// DOC: maps files as people paste them. [`MapsLine::parse`] reads this kernel's output, one
// space between columns. A maps file from a bug report may come from any kernel and any
// hands: the columns separated by runs of spaces or tabs, indented, with `\r\n` ends; the
// 2.6-era format, where an anonymous mapping's offset column holds its `vm_pgoff` (its start
// address, in bytes, when it was made) instead of 0; 32-bit addresses; a name with spaces;
// a name ending in ` (deleted)`; `/proc/PID/smaps`, where each mapping's line is followed by
// `Key:   value` lines; and a last line cut short. [`Reader`] reads all of that as a stream
// (one line in memory at a time, each at most [`MAX_LINE`] bytes), so a file of any size
// costs memory only for what the caller keeps.

/// The longest line [`Reader`] accepts: a name is at most `PATH_MAX` (4096) bytes, which
/// `seq_path()` may escape (`\n` as `\012`: four bytes for one), plus ` (deleted)`, plus
/// the columns.
pub const MAX_LINE: usize = 4 * 4096 + 256;

/// One mapping read by [`Reader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The line, its columns as read (the name without a ` (deleted)` suffix).
    pub line: MapsLine,
    /// Its line number in the input (1-based).
    pub number: u64,
    /// The name ended in ` (deleted)`: the file was deleted (or replaced, as a package
    /// upgrade replaces a library) after it was mapped (`fs/d_path.c: d_path()`).
    pub deleted: bool,
    /// The smaps `VmFlags:` of the mapping, when the input is smaps (two-letter flags
    /// from `fs/proc/task_mmu.c: show_smap_vma_flags()`: `rd wr ex mr mw me gd ...`).
    pub vm_flags: Option<String>,
    /// The smaps `Rss:` in KiB, when the input is smaps.
    pub rss_kib: Option<u64>,
}

/// What went wrong reading a maps text: the line number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    /// 1-based; 0 when the input could not be read at all.
    pub number: u64,
    pub reason: String,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.number == 0 {
            f.write_str(&self.reason)
        } else {
            write!(f, "line {}: {}", self.number, self.reason)
        }
    }
}

/// What a [`Reader`] saw besides the mappings.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Lines read, blank ones and smaps fields included.
    pub lines: u64,
    /// Mappings read.
    pub mappings: u64,
    /// smaps field lines (`Rss:   4 kB` ...) were read: the input is `/proc/PID/smaps`.
    pub smaps: bool,
    /// The number of the last line, when it could not be read and had no newline: the
    /// input was cut short in the middle of it (it is left out).
    pub truncated: Option<u64>,
    /// The last line had no newline but could be read: it may still have been cut short
    /// (in its name, say).
    pub unterminated: bool,
}

/// A maps text as a stream of [`Record`]s (see the module's DOC above).
pub struct Reader<R> {
    input: R,
    buf: Vec<u8>,
    number: u64,
    /// A mapping read, waiting for its smaps fields (if any) before it is handed out.
    pending: Option<Record>,
    done: bool,
    pub stats: ReadStats,
}

impl<R: std::io::BufRead> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            buf: Vec::with_capacity(256),
            number: 0,
            pending: None,
            done: false,
            stats: ReadStats::default(),
        }
    }

    /// The next line into `self.buf` (without its `\n`): `Ok(Some(had_newline))`, or
    /// `Ok(None)` at the end. A line longer than [`MAX_LINE`] is an error.
    fn next_line(&mut self) -> Result<Option<bool>, ReadError> {
        self.buf.clear();
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ReadError {
                        number: self.number + 1,
                        reason: e.to_string(),
                    })
                }
            };
            if chunk.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.number += 1;
                return Ok(Some(false));
            }
            let (take, newline) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if self.buf.len() + take > MAX_LINE {
                return Err(ReadError {
                    number: self.number + 1,
                    reason: format!(
                        "a line longer than {MAX_LINE} bytes: not a maps line (a name is at most PATH_MAX bytes)"
                    ),
                });
            }
            self.buf.extend_from_slice(&chunk[..take]);
            self.input.consume(take + usize::from(newline));
            if newline {
                self.number += 1;
                return Ok(Some(true));
            }
        }
    }
}

impl<R: std::io::BufRead> Iterator for Reader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let newline = match self.next_line() {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.done = true;
                    return self.pending.take().map(Ok);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.stats.lines += 1;
            let number = self.number;
            let text = &self.buf;
            if text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if let Some((key, value)) = smaps_field(text) {
                let Some(p) = self.pending.as_mut() else {
                    self.done = true;
                    return Some(Err(ReadError {
                        number,
                        reason: format!(
                            "an smaps field ({key}:) before any mapping line: {}",
                            quote(text)
                        ),
                    }));
                };
                self.stats.smaps = true;
                match key {
                    "VmFlags" => p.vm_flags = Some(value.to_string()),
                    "Rss" => {
                        p.rss_kib = value
                            .split_ascii_whitespace()
                            .next()
                            .and_then(|n| n.parse().ok())
                    }
                    _ => {}
                }
                continue;
            }
            match parse_tolerant(text) {
                Ok((line, deleted)) => {
                    if !newline {
                        self.stats.unterminated = true;
                    }
                    self.stats.mappings += 1;
                    let rec = Record {
                        line,
                        number,
                        deleted,
                        vm_flags: None,
                        rss_kib: None,
                    };
                    if let Some(prev) = self.pending.replace(rec) {
                        return Some(Ok(prev));
                    }
                }
                Err(why) if !newline => {
                    // The input ends in the middle of this line: leave it out.
                    let _ = why;
                    self.stats.truncated = Some(number);
                    self.done = true;
                    return self.pending.take().map(Ok);
                }
                Err(why) => {
                    self.done = true;
                    return Some(Err(ReadError {
                        number,
                        reason: format!("not a maps line ({why}): {}", quote(text)),
                    }));
                }
            }
        }
    }
}

/// A line for an error message: at most 60 characters, control bytes escaped.
fn quote(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    let mut out: String = s.chars().take(60).flat_map(char::escape_debug).collect();
    if s.chars().count() > 60 {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

/// `Key:   value` as smaps prints each field after a mapping's line
/// (`fs/proc/task_mmu.c: show_smap()`): a key of letters, digits and `_`, a colon, then
/// spaces or the end. A maps line never starts so (it starts with a hex digit and `-`).
fn smaps_field(text: &[u8]) -> Option<(&str, &str)> {
    let s = std::str::from_utf8(text).ok()?.trim();
    let (key, value) = s.split_once(':')?;
    if key.is_empty()
        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || !(value.is_empty() || value.starts_with([' ', '\t']))
    {
        return None;
    }
    Some((key, value.trim()))
}

/// One maps line, tolerantly: columns separated by any run of spaces or tabs, leading
/// whitespace, a `\r` before the newline, upper- or lower-case hex, the name being the
/// rest of the line (spaces included) without a ` (deleted)` suffix. `Err` says which
/// column could not be read.
pub fn parse_tolerant(text: &[u8]) -> Result<(MapsLine, bool), &'static str> {
    let mut rest = text;
    let mut column = || -> Option<&[u8]> {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let tail = &rest[start..];
        let len = tail
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(tail.len());
        let (col, after) = tail.split_at(len);
        rest = after;
        Some(col)
    };
    let hex = |x: &[u8]| -> Option<u64> {
        if x.is_empty() || x.len() > 16 {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(x).ok()?, 16).ok()
    };
    // Each column is checked as it is read: the error names the first bad one.
    let range = column().ok_or("no address range")?;
    let dash = range
        .iter()
        .position(|&b| b == b'-')
        .ok_or("no '-' in the address range")?;
    let start = hex(&range[..dash]).ok_or("the start address is not hex")?;
    let end = hex(&range[dash + 1..]).ok_or("the end address is not hex")?;
    let perms = column().ok_or("no permissions")?;
    let perms_ok = perms.len() == 4
        && matches!(perms[0], b'r' | b'-')
        && matches!(perms[1], b'w' | b'-')
        && matches!(perms[2], b'x' | b'-')
        && matches!(perms[3], b'p' | b's');
    if !perms_ok {
        return Err("the permissions are not rwxp/rwxs");
    }
    let offset = hex(column().ok_or("no offset")?).ok_or("the offset is not hex")?;
    let dev = column().ok_or("no device")?;
    let colon = dev
        .iter()
        .position(|&b| b == b':')
        .ok_or("the device is not major:minor")?;
    let major = hex(&dev[..colon]).ok_or("the device is not major:minor")?;
    let minor = hex(&dev[colon + 1..]).ok_or("the device is not major:minor")?;
    let inode = std::str::from_utf8(column().ok_or("no inode")?)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("the inode is not a decimal number")?;
    let name_start = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let mut name = &rest[name_start..];
    while let [head @ .., b' ' | b'\t' | b'\r'] = name {
        name = head;
    }
    let deleted = name.ends_with(b" (deleted)");
    if deleted {
        name = &name[..name.len() - b" (deleted)".len()];
    }
    Ok((
        MapsLine {
            start,
            end,
            perms: String::from_utf8_lossy(perms).into_owned(),
            offset,
            dev_major: u32::try_from(major).map_err(|_| "the device is not major:minor")?,
            dev_minor: u32::try_from(minor).map_err(|_| "the device is not major:minor")?,
            inode,
            path: String::from_utf8_lossy(name).into_owned(),
        },
        deleted,
    ))
}

/// A name as `seq_path()` escaped it (`\n` as `\012`, and `\\`), unescaped: the path of
/// the file on disk.
pub fn unescape_name(name: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    std::ffi::OsString::from_vec(out)
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

#[cfg(test)]
mod reader_tests {
    use super::*;

    fn read(text: &[u8]) -> (Vec<Record>, ReadStats, Option<ReadError>) {
        let mut r = Reader::new(text);
        let mut v = Vec::new();
        let mut err = None;
        for x in r.by_ref() {
            match x {
                Ok(rec) => v.push(rec),
                Err(e) => err = Some(e),
            }
        }
        (v, r.stats.clone(), err)
    }

    #[test]
    fn kernel_lines_read_as_the_strict_parser_reads_them() {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap();
        let (recs, stats, err) = read(text.as_bytes());
        assert!(err.is_none());
        assert_eq!(stats.mappings as usize, text.lines().count());
        for (rec, l) in recs.iter().zip(text.lines()) {
            assert_eq!(rec.line, MapsLine::parse(l).unwrap());
        }
    }

    #[test]
    fn tolerant_columns() {
        let cases: &[(&str, &str, bool)] = &[
            // any spacing, tabs, indentation, \r
            (
                "  7f00-7f01\tr-xp  0001A000   08:01\t123   /lib/libc.so.6\r",
                "/lib/libc.so.6",
                false,
            ),
            // a name with spaces, deleted
            (
                "7f00-7f01 r--p 00000000 fe:00 9 /tmp/my data file.bin (deleted)",
                "/tmp/my data file.bin",
                true,
            ),
            // no name
            ("7f00-7f01 rw-p 00000000 00:00 0", "", false),
            ("7f00-7f01 rw-p 00000000 00:00 0 ", "", false),
            // names of newer and older kernels
            (
                "7f00-7f01 rw-p 00000000 00:00 0   [anon: glibc: malloc arena]",
                "[anon: glibc: malloc arena]",
                false,
            ),
            (
                "b7f00000-b7f01000 rw-p b7f00000 00:00 0 [stack:1234]",
                "[stack:1234]",
                false,
            ),
        ];
        for (line, name, deleted) in cases {
            let (l, d) = parse_tolerant(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!((l.path.as_str(), d), (*name, *deleted), "{line}");
            assert!(l.start < l.end, "{line}");
        }
        let (l, _) = parse_tolerant(b"  7f00-7f01\tr-xp  0001A000   08:01\t123   /x").unwrap();
        assert_eq!(
            (l.offset, l.dev_major, l.dev_minor, l.inode),
            (0x1a000, 8, 1, 123)
        );
        for bad in [
            "",
            "hello world",
            "7f00 r-xp 0 08:01 1",
            "7f00-7f01 rwzp 0 08:01 1",
            "7f00-7f01 r-xp 0 0801 1",
            "7f00-7f01 r-xp 0 08:01 -1",
            "7f00-7f0g r-xp 0 08:01 1",
            "7f00-7f01 r-xp",
        ] {
            assert!(parse_tolerant(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn smaps_fields_attach_to_their_mapping() {
        let text = b"7f00-7f01 rw-p 00000000 00:00 0 \nSize:                  4 kB\nRss:                   4 kB\nVmFlags: rd wr mr mw me ac \n7f02-7f03 r--p 00000000 00:00 0 [vvar]\nSize: 4 kB\n";
        let (recs, stats, err) = read(text);
        assert!(err.is_none());
        assert!(stats.smaps);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].vm_flags.as_deref(), Some("rd wr mr mw me ac"));
        assert_eq!(recs[0].rss_kib, Some(4));
        assert_eq!(recs[1].line.path, "[vvar]");
        assert_eq!(recs[1].number, 5);
    }

    #[test]
    fn a_cut_last_line_is_left_out_and_said() {
        let (recs, stats, err) = read(b"7f00-7f01 rw-p 00000000 00:00 0\n7f02-7f0");
        assert!(err.is_none());
        assert_eq!(recs.len(), 1);
        assert_eq!(stats.truncated, Some(2));
        let (recs, stats, _) =
            read(b"7f00-7f01 rw-p 00000000 00:00 0\n7f02-7f03 r--p 0 00:00 0 /usr/li");
        assert_eq!(recs.len(), 2);
        assert!(stats.unterminated && stats.truncated.is_none());
    }

    #[test]
    fn the_first_unreadable_line_is_named() {
        let (recs, _, err) =
            read(b"\n7f00-7f01 rw-p 00000000 00:00 0\n\nnot a line\n7f02-7f03 rw-p 0 00:00 0\n");
        let e = err.unwrap();
        assert_eq!(e.number, 4);
        assert!(e.to_string().starts_with("line 4: not a maps line"), "{e}");
        assert!(recs.len() <= 1);
        let (_, _, err) = read(b"Rss: 4 kB\n");
        assert_eq!(err.unwrap().number, 1);
        let long = vec![b'a'; MAX_LINE + 10];
        let (_, _, err) = read(&long);
        assert!(err.unwrap().reason.contains("longer than"));
    }

    #[test]
    fn escaped_names() {
        assert_eq!(
            unescape_name("/tmp/a\\012b"),
            std::ffi::OsString::from("/tmp/a\nb")
        );
        assert_eq!(
            unescape_name("/tmp/plain"),
            std::ffi::OsString::from("/tmp/plain")
        );
        assert_eq!(
            unescape_name("/tmp/\\01"),
            std::ffi::OsString::from("/tmp/\\01")
        );
    }
}
