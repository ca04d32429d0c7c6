//! `/etc/ld.so.cache`, read zero-copy over a memory map, as glibc 2.36's ld.so reads it
//! (elf/dl-cache.c, sysdeps/generic/dl-cache.h).
//!
//! Two layouts exist: the new format `glibc-ld.so.cache1.1` alone (what ldconfig writes since
//! 2.32) or the old `ld.so-1.7.0` format with the new one embedded after its entries. All
//! integers are in the file's byte order; only little-endian files are accepted (this is x86).
//! The format is glibc 2.36's `elf/cache.c` / `sysdeps/generic/dl-cache.h` (`struct
//! cache_file_new`), looked up as `elf/dl-cache.c: _dl_load_cache_lookup()` does.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

/// `CACHEMAGIC`: the old format's magic (11 bytes, then one pad byte).
const CACHEMAGIC: &[u8] = b"ld.so-1.7.0";
/// `CACHEMAGIC_VERSION_NEW`: `"glibc-ld.so.cache" "1.1"`.
const CACHEMAGIC_VERSION_NEW: &[u8] = b"glibc-ld.so.cache1.1";
/// `sizeof (struct cache_file)`: magic, pad, `nlibs`.
const SIZEOF_CACHE_FILE: usize = 16;
/// `sizeof (struct file_entry)`: `flags, key, value`.
const SIZEOF_FILE_ENTRY: usize = 12;
/// `sizeof (struct cache_file_new)`.
const SIZEOF_CACHE_FILE_NEW: usize = 48;
/// `sizeof (struct file_entry_new)`: `flags, key, value, osversion_unused, hwcap`.
const SIZEOF_FILE_ENTRY_NEW: usize = 24;
/// `cache_extension_magic` ((uint32_t) -358342284).
const CACHE_EXTENSION_MAGIC: u32 = 0xEAA4_2174;
/// `cache_extension_tag_generator`.
const TAG_GENERATOR: u32 = 0;
/// `cache_extension_tag_glibc_hwcaps`.
const TAG_GLIBC_HWCAPS: u32 = 1;
/// `DL_CACHE_HWCAP_EXTENSION`: the entry's low 32 hwcap bits index the glibc-hwcaps names.
pub const DL_CACHE_HWCAP_EXTENSION: u64 = 1 << 62;
/// `DL_CACHE_HWCAP_ISA_LEVEL_MASK`: bits 32..41 of hwcap hold an x86 ISA level number.
pub const DL_CACHE_HWCAP_ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
/// `_DL_HWCAP_TLS_MASK`.
const DL_HWCAP_TLS_MASK: u64 = 1 << 63;
/// `_DL_FIRST_PLATFORM` (sysdeps/x86/dl-procinfo.h).
pub const DL_FIRST_PLATFORM: u32 = 48;

/// Entry flags: `FLAG_ELF` (1) and `FLAG_ELF_LIBC6` (3) in the low byte, the ABI in the next.
pub const FLAG_ELF: i32 = 0x0001;
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
/// `FLAG_X8664_LIB64 | FLAG_ELF_LIBC6`: `_DL_CACHE_DEFAULT_ID` of the x86-64 loader.
pub const FLAG_X8664_LIBC6: i32 = 0x0303;
/// `FLAG_X8664_LIBX32 | FLAG_ELF_LIBC6`: what ldconfig writes for x32 objects.
pub const FLAG_X32_LIBC6: i32 = 0x0803;

/// Which loader is looking: decides the accepted entry flags (`_dl_cache_check_flags`) and
/// `_DL_CACHE_DEFAULT_ID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheLoader {
    /// sysdeps/unix/sysv/linux/x86_64/dl-cache.h: only `0x0303`.
    X86_64,
    /// sysdeps/generic/dl-cache.h (i386 biarch loader): 1 or 3, default id 3.
    I386,
}

impl CacheLoader {
    /// `_dl_cache_check_flags(flags)`.
    pub fn check_flags(self, flags: i32) -> bool {
        match self {
            CacheLoader::X86_64 => flags == FLAG_X8664_LIBC6,
            CacheLoader::I386 => flags == FLAG_ELF || flags == FLAG_ELF_LIBC6,
        }
    }

    /// `_DL_CACHE_DEFAULT_ID`.
    pub fn default_id(self) -> i32 {
        match self {
            CacheLoader::X86_64 => FLAG_X8664_LIBC6,
            CacheLoader::I386 => FLAG_ELF_LIBC6,
        }
    }

    /// `HWCAP_PLATFORMS_COUNT` of sysdeps/x86/dl-hwcap.h for this loader.
    fn platforms_count(self) -> u32 {
        match self {
            CacheLoader::X86_64 => 4,
            CacheLoader::I386 => 2,
        }
    }
}

/// The loader facts `search_cache` consults besides the name.
#[derive(Clone, Debug)]
pub struct CacheQuery {
    pub loader: CacheLoader,
    /// `GLRO(dl_hwcap)`.
    pub hwcap: u64,
    /// `GET_HWCAP_MASK()` (the `glibc.cpu.hwcap_mask` tunable, default `HWCAP_IMPORTANT`).
    pub hwcap_mask: u64,
    /// `_dl_string_platform(GLRO(dl_platform))`: the platform's bit number, if it is a
    /// known platform.
    pub platform_bit: Option<u32>,
    /// `cpu_features->isa_1` (`GNU_PROPERTY_X86_ISA_1_*` bits).
    pub isa_1: u32,
    /// The active glibc-hwcaps subdirectory names, best first (`_dl_hwcaps_priorities`).
    pub hwcaps_active: Vec<String>,
}

/// One entry, borrowed from the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheEntry<'a> {
    pub flags: i32,
    /// The soname (key), without its NUL.
    pub key: &'a [u8],
    /// The full path (value), without its NUL.
    pub value: &'a [u8],
    /// `hwcap` (0 for old-format entries).
    pub hwcap: u64,
}

impl CacheEntry<'_> {
    /// `dl_cache_hwcap_extension()`: bit 62 set and nothing else in the upper half except
    /// the ISA-level bits.
    pub fn is_hwcaps(&self) -> bool {
        ((self.hwcap >> 32) & !DL_CACHE_HWCAP_ISA_LEVEL_MASK) == (DL_CACHE_HWCAP_EXTENSION >> 32)
    }
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// The new format; `base` = file offset of its header (0, or after the old part).
    New { base: usize, nlibs: u32 },
    /// The old format only: entries from offset 16, strings after the last entry.
    Old { nlibs: u32 },
}

/// A validated `/etc/ld.so.cache`, mapped read-only.
pub struct LdCache {
    path: PathBuf,
    map: Mmap,
    layout: Layout,
    /// `st_size`, `st_dev`, `st_ino` of the file (the loader maps `st_size` bytes).
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
}

impl std::fmt::Debug for LdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdCache")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("size", &self.size)
            .finish()
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, reason.into()),
    )
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// `cache_file_new_matches_endian()`: flags 0 (no information) or the little-endian value
/// in the endianness bits.
fn matches_endian(flags: u8) -> bool {
    flags == 0 || (flags & 3) == 2
}

impl LdCache {
    /// Map and validate `path` exactly as `elf/dl-cache.c: _dl_load_cache_lookup()` does on
    /// its first call; an `Err` means ld.so behaves as if there were no cache (it maps the
    /// file and unmaps it again, or maps nothing if it cannot be opened).
    ///
    /// N.B. glibc does not check that the *embedded* new-format part (old format followed by
    /// the new one) fits in the file; it would read past the mapping. We reject such a file.
    pub fn open(path: &Path) -> Result<LdCache> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(invalid(path, "not a regular file"));
        }
        if meta.len() == 0 {
            // _dl_sysdep_read_whole_file maps nothing for an empty file.
            return Err(invalid(path, "empty file"));
        }
        // SAFETY-free in the sense of ElfImage::open: the bytes are treated as untrusted
        // input and every read is bounds-checked; a concurrent writer can only make us
        // read garbage, not misbehave.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let layout = Self::check(path, &map)?;
        Ok(LdCache {
            path: path.to_path_buf(),
            map,
            layout,
            size: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The format checks of `_dl_load_cache_lookup()`.
    fn check(path: &Path, b: &[u8]) -> Result<Layout> {
        let size = b.len();
        if b.starts_with(CACHEMAGIC_VERSION_NEW) {
            if size <= SIZEOF_CACHE_FILE_NEW {
                return Err(invalid(
                    path,
                    format!("truncated: {size} bytes, the new-format header alone is 48"),
                ));
            }
            let nlibs = u32_at(b, 20).unwrap();
            if (size - SIZEOF_CACHE_FILE_NEW) / SIZEOF_FILE_ENTRY_NEW < nlibs as usize {
                return Err(invalid(
                    path,
                    format!("truncated or corrupt: {nlibs} entries do not fit in {size} bytes"),
                ));
            }
            if !matches_endian(b[28]) {
                return Err(invalid(
                    path,
                    format!("wrong byte order (header flags {:#x})", b[28]),
                ));
            }
            return Ok(Layout::New { base: 0, nlibs });
        }
        if b.starts_with(CACHEMAGIC) {
            if size <= SIZEOF_CACHE_FILE {
                return Err(invalid(
                    path,
                    format!("truncated: {size} bytes, the old-format header alone is 16"),
                ));
            }
            let nlibs = u32_at(b, 12).unwrap();
            if (size - SIZEOF_CACHE_FILE) / SIZEOF_FILE_ENTRY < nlibs as usize {
                return Err(invalid(
                    path,
                    format!("truncated or corrupt: {nlibs} old-format entries do not fit in {size} bytes"),
                ));
            }
            // ALIGN_CACHE: the new header is 8-aligned after the old entries.
            let offset = (SIZEOF_CACHE_FILE + nlibs as usize * SIZEOF_FILE_ENTRY + 7) & !7;
            if size < offset + SIZEOF_CACHE_FILE_NEW
                || !b[offset..].starts_with(CACHEMAGIC_VERSION_NEW)
            {
                return Ok(Layout::Old { nlibs });
            }
            if !matches_endian(b[offset + 28]) {
                return Err(invalid(
                    path,
                    format!("wrong byte order (header flags {:#x})", b[offset + 28]),
                ));
            }
            let nlibs_new = u32_at(b, offset + 20).unwrap();
            if (size - offset - SIZEOF_CACHE_FILE_NEW) / SIZEOF_FILE_ENTRY_NEW < nlibs_new as usize
            {
                return Err(invalid(
                    path,
                    format!("truncated or corrupt: {nlibs_new} new-format entries do not fit after the old part"),
                ));
            }
            return Ok(Layout::New {
                base: offset,
                nlibs: nlibs_new,
            });
        }
        Err(invalid(path, "not an ld.so cache (bad magic)"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the new format is used (alone or embedded).
    pub fn is_new_format(&self) -> bool {
        matches!(self.layout, Layout::New { .. })
    }

    /// Number of entries of the format in use.
    pub fn len(&self) -> usize {
        match self.layout {
            Layout::New { nlibs, .. } | Layout::Old { nlibs } => nlibs as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (entries offset, entry size, string-table base, `string_table_size` as glibc passes
    /// it to `search_cache`).
    fn geometry(&self) -> (usize, usize, usize, usize) {
        let size = self.map.len();
        match self.layout {
            Layout::New { base, .. } => (
                base + SIZEOF_CACHE_FILE_NEW,
                SIZEOF_FILE_ENTRY_NEW,
                base,
                size,
            ),
            Layout::Old { nlibs } => {
                let strings = SIZEOF_CACHE_FILE + nlibs as usize * SIZEOF_FILE_ENTRY;
                (
                    SIZEOF_CACHE_FILE,
                    SIZEOF_FILE_ENTRY,
                    strings,
                    size - strings,
                )
            }
        }
    }

    /// The NUL-terminated string at `strings + off`, if `off` passes glibc's
    /// `_dl_cache_verify_ptr` and the string really is inside the file.
    fn string(&self, strings: usize, limit: usize, off: u32) -> Option<&[u8]> {
        if off as usize >= limit {
            return None;
        }
        let tail = self.map.get(strings.checked_add(off as usize)?..)?;
        match memchr(tail) {
            Some(nul) => Some(&tail[..nul]),
            // A string running into the end of a truncated file: ld.so reads on into the
            // zero-filled rest of the mapping's last page, which terminates it. (At a page
            // boundary it would fault; we give up.)
            None if !self.map.len().is_multiple_of(4096) => Some(tail),
            None => None,
        }
    }

    /// True if the string at `strings + off` is terminated inside the file.
    fn string_in_file(&self, strings: usize, off: u32) -> bool {
        strings
            .checked_add(off as usize)
            .and_then(|s| self.map.get(s..))
            .is_some_and(|t| memchr(t).is_some())
    }

    /// Raw fields of entry `i`: (flags, key, value, hwcap).
    fn raw(&self, i: usize) -> Option<(i32, u32, u32, u64)> {
        let (entries, esize, _, _) = self.geometry();
        let at = entries + i * esize;
        let flags = u32_at(&self.map, at)? as i32;
        let key = u32_at(&self.map, at + 4)?;
        let value = u32_at(&self.map, at + 8)?;
        let hwcap = if esize == SIZEOF_FILE_ENTRY_NEW {
            u64_at(&self.map, at + 16)?
        } else {
            0
        };
        Some((flags, key, value, hwcap))
    }

    /// Entry `i`, if its strings are valid.
    pub fn entry(&self, i: usize) -> Option<CacheEntry<'_>> {
        if i >= self.len() {
            return None;
        }
        let (_, _, strings, limit) = self.geometry();
        let (flags, key, value, hwcap) = self.raw(i)?;
        Some(CacheEntry {
            flags,
            key: self.string(strings, limit, key)?,
            value: self.string(strings, limit, value)?,
            hwcap,
        })
    }

    /// All entries in file order (descending `_dl_cache_libcmp` order of their keys);
    /// entries with bogus string offsets are left out.
    pub fn entries(&self) -> impl Iterator<Item = CacheEntry<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.entry(i))
    }

    /// Deep validation (beyond what ld.so checks): every entry's key and value lie in the
    /// file and are NUL-terminated, and the keys are sorted as `_dl_cache_libcmp` requires.
    /// ld.so itself only notices a bad offset when its binary search touches it.
    pub fn verify(&self) -> Result<()> {
        let mut prev: Option<&[u8]> = None;
        let (_, _, strings, _) = self.geometry();
        for i in 0..self.len() {
            let e = self.entry(i).ok_or_else(|| {
                invalid(
                    &self.path,
                    format!("entry {i}: string offset outside the file"),
                )
            })?;
            let (_, key, value, _) = self.raw(i).unwrap();
            if !self.string_in_file(strings, key) || !self.string_in_file(strings, value) {
                return Err(invalid(
                    &self.path,
                    format!("truncated: entry {i}'s strings run past the end of the file"),
                ));
            }
            if let Some(p) = prev {
                if dl_cache_libcmp(p, e.key) == Ordering::Less {
                    return Err(invalid(
                        &self.path,
                        format!("entry {i}: keys not in _dl_cache_libcmp order"),
                    ));
                }
            }
            prev = Some(e.key);
        }
        if let Layout::New { base, .. } = self.layout {
            let ext_off = u32_at(&self.map, base + 32).unwrap_or(0);
            if ext_off != 0 && !self.extension_dir_ok() {
                return Err(invalid(
                    &self.path,
                    format!("extension directory at {ext_off:#x} is malformed or truncated (ld.so then ignores the glibc-hwcaps entries)"),
                ));
            }
        }
        Ok(())
    }

    /// `cache_extension_load()` succeeds.
    fn extension_dir_ok(&self) -> bool {
        self.extension_scan().is_some()
    }

    /// Walk the extension directory; `None` if `cache_extension_load()` would fail.
    fn extension_scan(&self) -> Option<()> {
        let Layout::New { base, .. } = self.layout else {
            return Some(());
        };
        let b: &[u8] = &self.map;
        let ext_off = u32_at(b, base + 32)? as usize;
        if ext_off == 0 {
            return Some(());
        }
        if !ext_off.is_multiple_of(4) || u32_at(b, ext_off)? != CACHE_EXTENSION_MAGIC {
            return None;
        }
        let count = u32_at(b, ext_off + 4)? as usize;
        if count.checked_mul(16)?.checked_add(ext_off + 8)? > b.len() {
            return None;
        }
        for k in 0..count {
            let s = ext_off + 8 + 16 * k;
            if (u32_at(b, s + 8)? as usize).checked_add(u32_at(b, s + 12)? as usize)? > b.len() {
                return None;
            }
        }
        Some(())
    }

    /// The loaded extension sections (`cache_extension_load()` + `cache_extension_verify()`):
    /// `None` if the directory is malformed (glibc then ignores all extensions).
    fn extension(&self, tag: u32) -> Option<&[u8]> {
        let Layout::New { base, .. } = self.layout else {
            return None;
        };
        let b: &[u8] = &self.map;
        let ext_off = u32_at(b, base + 32)? as usize;
        if ext_off == 0 || !ext_off.is_multiple_of(4) {
            return None;
        }
        if u32_at(b, ext_off)? != CACHE_EXTENSION_MAGIC {
            return None;
        }
        let count = u32_at(b, ext_off + 4)? as usize;
        let end = count.checked_mul(16)?.checked_add(ext_off + 8)?;
        if end > b.len() {
            return None;
        }
        let mut found = None;
        for k in 0..count {
            let s = ext_off + 8 + 16 * k;
            let (t, off, size) = (
                u32_at(b, s)?,
                u32_at(b, s + 8)? as usize,
                u32_at(b, s + 12)? as usize,
            );
            if off.checked_add(size)? > b.len() {
                return None; // "Extension data extends beyond the end of the file."
            }
            if t == tag {
                found = Some(&b[off..off + size]); // a later section of the same tag wins
            }
        }
        let sec = found?;
        if tag == TAG_GLIBC_HWCAPS
            && (sec.is_empty()
                || !sec.len().is_multiple_of(4)
                || !(sec.as_ptr() as usize).is_multiple_of(4))
        {
            return None;
        }
        Some(sec)
    }

    /// The generator string (extension tag 0), e.g. "ldconfig (Debian GLIBC 2.36-...) ...".
    pub fn generator(&self) -> Option<&str> {
        std::str::from_utf8(self.extension(TAG_GENERATOR)?).ok()
    }

    /// The glibc-hwcaps subdirectory name of each hwcaps index (tag 1), `None` for an offset
    /// outside the file.
    pub fn hwcaps_names(&self) -> Vec<Option<&str>> {
        let Some(sec) = self.extension(TAG_GLIBC_HWCAPS) else {
            return Vec::new();
        };
        sec.chunks_exact(4)
            .map(|c| {
                let off = u32::from_le_bytes(c.try_into().unwrap()) as usize;
                let tail = self.map.get(off..)?;
                std::str::from_utf8(&tail[..memchr(tail)?]).ok()
            })
            .collect()
    }

    /// `glibc_hwcaps_priorities_init()`: merge the sorted cache names with the sorted active
    /// subdirectories; result\[i\] = priority of hwcaps index i (1 = best), 0 = not usable.
    fn hwcaps_priorities(&self, active: &[String]) -> Vec<u32> {
        let Some(sec) = self.extension(TAG_GLIBC_HWCAPS) else {
            return Vec::new();
        };
        let mut right: Vec<(&str, u32)> = active
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32 + 1))
            .collect();
        // sort_priorities_by_name(): memcmp order, shorter first on a common prefix.
        right.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let left: Vec<u32> = sec
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut result = Vec::with_capacity(left.len());
        let (mut l, mut r) = (0, 0);
        let size = self.map.len();
        while l < left.len() && r < right.len() {
            if (left[l] as usize) < size {
                let tail = &self.map[left[l] as usize..];
                let name = &tail[..memchr(tail).unwrap_or(tail.len())];
                match name.cmp(right[r].0.as_bytes()) {
                    Ordering::Equal => {
                        result.push(right[r].1);
                        l += 1;
                        r += 1;
                    }
                    Ordering::Less => {
                        result.push(0);
                        l += 1;
                    }
                    Ordering::Greater => r += 1,
                }
            } else {
                // N.B. glibc does not advance `left` here (an endless loop on a bogus
                // offset); we treat the name as unusable.
                result.push(0);
                l += 1;
            }
        }
        result.resize(left.len(), 0);
        result
    }

    /// Models `elf/dl-cache.c: _dl_load_cache_lookup()` → `search_cache()`: the path ld.so
    /// would try for `name`, or `None`.
    ///
    /// Binary search on the key (the table is in descending `_dl_cache_libcmp` order), back
    /// up to the first equal key, then walk the equal keys: entries with unacceptable flags
    /// are skipped; glibc-hwcaps entries (listed first) compete by subdirectory priority and
    /// need a supported ISA level; at the first acceptable ordinary entry the search stops if
    /// an hwcaps entry was found, otherwise that entry is taken. With new-format entries the
    /// walk ends at the next acceptable ordinary entry anyway ("`!named_hwcap && best !=
    /// NULL`"), so the first acceptable entry wins; only old-format entries keep scanning
    /// when the flags are not the loader's default id. (ldconfig writes equal keys in
    /// descending flags order, so i386 sees flags 3 before flags 1.) A bogus key offset met
    /// by the search ends it with no result.
    pub fn lookup(&self, name: &str, q: &CacheQuery) -> Option<&[u8]> {
        let name = name.as_bytes();
        let (_, esize, strings, limit) = self.geometry();
        let nlibs = self.len();
        if nlibs == 0 {
            return None;
        }
        let platform = q.platform_bit.map_or(u64::MAX, |b| 1u64 << b);
        let dl_hwcap_platform = ((1u64 << q.loader.platforms_count()) - 1) << DL_FIRST_PLATFORM;
        let hwcap_exclude = !((q.hwcap & q.hwcap_mask) | dl_hwcap_platform | DL_HWCAP_TLS_MASK);
        let key_at = |i: usize| -> Option<&[u8]> {
            let (_, key, _, _) = self.raw(i)?;
            self.string(strings, limit, key)
        };
        let mut priorities: Option<Vec<u32>> = None;

        let (mut left, mut right) = (0isize, nlibs as isize - 1);
        while left <= right {
            let middle = (left + right) / 2;
            let key = key_at(middle as usize)?;
            let cmpres = dl_cache_libcmp(name, key);
            if cmpres == Ordering::Equal {
                let found = middle as usize;
                let mut m = found;
                while m > 0 {
                    match key_at(m - 1) {
                        Some(k) if dl_cache_libcmp(name, k) == Ordering::Equal => m -= 1,
                        _ => break,
                    }
                }
                let mut best: Option<&[u8]> = None;
                let mut best_priority = 0u32;
                while m as isize <= right {
                    let i = m;
                    m += 1;
                    if i > found {
                        match key_at(i) {
                            Some(k) if dl_cache_libcmp(name, k) == Ordering::Equal => {}
                            _ => break,
                        }
                    }
                    let Some((flags, _, value, hwcap)) = self.raw(i) else {
                        break;
                    };
                    if !q.loader.check_flags(flags) || value as usize >= limit {
                        continue;
                    }
                    let entry = CacheEntry {
                        flags,
                        key: &[],
                        value: &[],
                        hwcap,
                    };
                    let mut named_hwcap = false;
                    if esize == SIZEOF_FILE_ENTRY_NEW {
                        named_hwcap = entry.is_hwcaps();
                        if named_hwcap && !dl_cache_hwcap_isa_level_compatible(hwcap, q.isa_1) {
                            continue;
                        }
                        if !named_hwcap && best.is_some() {
                            break;
                        }
                        if hwcap & hwcap_exclude != 0 && !named_hwcap {
                            continue;
                        }
                        if hwcap & dl_hwcap_platform != 0 && hwcap & dl_hwcap_platform != platform {
                            continue;
                        }
                        if named_hwcap {
                            let pr = priorities
                                .get_or_insert_with(|| self.hwcaps_priorities(&q.hwcaps_active));
                            let p = pr.get((hwcap & 0xffff_ffff) as usize).copied().unwrap_or(0);
                            if p == 0 || (best.is_some() && p >= best_priority) {
                                continue;
                            }
                            best_priority = p;
                        }
                    }
                    let Some(v) = self.string(strings, limit, value) else {
                        continue;
                    };
                    best = Some(v);
                    if !named_hwcap && flags == q.loader.default_id() {
                        break;
                    }
                }
                return best;
            }
            if cmpres == Ordering::Less {
                left = middle + 1;
            } else {
                right = middle - 1;
            }
        }
        None
    }

    /// `lookup` as a path.
    pub fn lookup_path(&self, name: &str, q: &CacheQuery) -> Option<PathBuf> {
        self.lookup(name, q)
            .map(|b| PathBuf::from(OsStr::from_bytes(b)))
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == 0)
}

/// sysdeps/x86/dl-isa-level.h: `dl_cache_hwcap_isa_level_compatible()`. The ISA level
/// number in bits 32..41 becomes the bit `1 << level` (shift count taken mod 32 as the x86
/// `shl` the C compiles to does), which must be in `isa_1`.
pub fn dl_cache_hwcap_isa_level_compatible(hwcap: u64, isa_1: u32) -> bool {
    let level = ((hwcap >> 32) & DL_CACHE_HWCAP_ISA_LEVEL_MASK) as u32;
    let bit = 1u32.wrapping_shl(level);
    bit & isa_1 == bit
}

/// Models `elf/dl-cache.c: _dl_cache_libcmp()`: byte comparison, except that runs of
/// decimal digits compare as numbers and a digit sorts above any non-digit. The C version
/// computes the numbers in `int` (wrapping); so do we.
pub fn dl_cache_libcmp(p1: &[u8], p2: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    while at(p1, i) != 0 {
        let (c1, c2) = (at(p1, i), at(p2, j));
        if c1.is_ascii_digit() {
            if c2.is_ascii_digit() {
                let mut v1: i32 = 0;
                while at(p1, i).is_ascii_digit() {
                    v1 = v1
                        .wrapping_mul(10)
                        .wrapping_add(i32::from(at(p1, i) - b'0'));
                    i += 1;
                }
                let mut v2: i32 = 0;
                while at(p2, j).is_ascii_digit() {
                    v2 = v2
                        .wrapping_mul(10)
                        .wrapping_add(i32::from(at(p2, j) - b'0'));
                    j += 1;
                }
                if v1 != v2 {
                    return v1.wrapping_sub(v2).cmp(&0);
                }
            } else {
                return Ordering::Greater;
            }
        } else if c2.is_ascii_digit() {
            return Ordering::Less;
        } else if c1 != c2 {
            return c1.cmp(&c2);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&at(p2, j))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::Command;

    const CACHE: &str = "/etc/ld.so.cache";

    /// `ldconfig -p` lines `\tNAME (KIND[, hwcap: "..."]) => PATH`, as (name, kind, path).
    fn ldconfig_p() -> Option<Vec<(String, String, String)>> {
        let out = Command::new("ldconfig").arg("-p").output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut v = Vec::new();
        for line in text.lines().filter(|l| l.starts_with('\t')) {
            let line = &line[1..];
            let (lhs, path) = line.split_once(" => ")?;
            let (name, kind) = lhs.split_once(" (")?;
            v.push((
                name.to_string(),
                kind.trim_end_matches(')').to_string(),
                path.to_string(),
            ));
        }
        Some(v)
    }

    fn real_cache() -> Option<LdCache> {
        if !Path::new(CACHE).exists() {
            eprintln!("skipped: no {CACHE}");
            return None;
        }
        Some(LdCache::open(Path::new(CACHE)).expect("the system cache is valid"))
    }

    fn set_for(cache: &LdCache, pred: impl Fn(i32) -> bool) -> BTreeSet<(String, String)> {
        cache
            .entries()
            .filter(|e| pred(e.flags) && !e.is_hwcaps())
            .map(|e| {
                (
                    String::from_utf8_lossy(e.key).into_owned(),
                    String::from_utf8_lossy(e.value).into_owned(),
                )
            })
            .collect()
    }

    fn set_from_ldconfig(
        lines: &[(String, String, String)],
        kinds: &[&str],
    ) -> BTreeSet<(String, String)> {
        lines
            .iter()
            .filter(|(_, k, _)| kinds.contains(&k.as_str()))
            .map(|(n, _, p)| (n.clone(), p.clone()))
            .collect()
    }

    #[test]
    fn deps_ldcache_matches_ldconfig_x86_64() {
        let Some(cache) = real_cache() else { return };
        let Some(lines) = ldconfig_p() else {
            eprintln!("skipped: ldconfig -p failed");
            return;
        };
        cache.verify().unwrap();
        let ours = set_for(&cache, |f| f == FLAG_X8664_LIBC6);
        let theirs = set_from_ldconfig(&lines, &["libc6,x86-64"]);
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs);
        // Every x86-64 soname is found by the lookup, at the path ldconfig lists first.
        let q = CacheQuery {
            loader: CacheLoader::X86_64,
            hwcap: 2,
            hwcap_mask: 6,
            platform_bit: None,
            isa_1: crate::ldso::glibc::hwcaps::get_isa_level(&crate::host::cpu::CpuFacts::detect()),
            hwcaps_active: Vec::new(),
        };
        for (name, kind, path) in &lines {
            if kind == "libc6,x86-64"
                && lines
                    .iter()
                    .find(|(n, k, _)| n == name && k == kind)
                    .unwrap()
                    .2
                    == *path
            {
                assert_eq!(
                    cache.lookup_path(name, &q),
                    Some(PathBuf::from(path)),
                    "{name}"
                );
            }
        }
        assert_eq!(cache.len(), lines.len(), "entry count");
        let gen = cache.generator().unwrap_or("");
        let out = Command::new("ldconfig").arg("-p").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(gen), "generator {gen:?}");
    }

    #[test]
    fn deps_ldcache_matches_ldconfig_i386() {
        let Some(cache) = real_cache() else { return };
        let Some(lines) = ldconfig_p() else { return };
        let ours = set_for(&cache, |f| f == FLAG_ELF_LIBC6 || f == FLAG_ELF);
        let theirs = set_from_ldconfig(&lines, &["libc6", "ELF"]);
        assert_eq!(ours, theirs);
        let q = CacheQuery {
            loader: CacheLoader::I386,
            hwcap: 1,
            hwcap_mask: 1,
            platform_bit: Some(49),
            isa_1: crate::ldso::glibc::hwcaps::get_isa_level(&crate::host::cpu::CpuFacts::detect()),
            hwcaps_active: Vec::new(),
        };
        for (name, _) in &ours {
            let got = cache.lookup_path(name, &q).unwrap();
            // A flags-3 entry is preferred over a flags-1 entry of the same name.
            let want = lines
                .iter()
                .find(|(n, k, _)| n == name && k == "libc6")
                .or_else(|| lines.iter().find(|(n, k, _)| n == name && k == "ELF"))
                .unwrap();
            assert_eq!(got, PathBuf::from(&want.2), "{name}");
        }
        // An x86-64-only name is not found by the i386 loader.
        assert_eq!(
            cache.lookup_path("libselinux.so.1", &q).is_some(),
            theirs.iter().any(|(n, _)| n == "libselinux.so.1")
        );
    }

    #[test]
    fn deps_ldcache_libcmp_order() {
        assert_eq!(
            dl_cache_libcmp(b"libfoo.so.10", b"libfoo.so.9"),
            Ordering::Greater
        );
        assert_eq!(
            dl_cache_libcmp(b"libfoo.so.1", b"libfoo.so.1"),
            Ordering::Equal
        );
        assert_eq!(dl_cache_libcmp(b"libfoo1", b"libfoo."), Ordering::Greater);
        assert_eq!(dl_cache_libcmp(b"libfoo.", b"libfoo1"), Ordering::Less);
        assert_eq!(dl_cache_libcmp(b"liba", b"libb"), Ordering::Less);
        assert_eq!(dl_cache_libcmp(b"lib", b"libx"), Ordering::Less);
        assert_eq!(dl_cache_libcmp(b"libx", b"lib"), Ordering::Greater);
        assert_eq!(
            dl_cache_libcmp(b"libz.so.01", b"libz.so.1"),
            Ordering::Equal
        );
    }

    /// Build a synthetic new-format cache (plus optional old part) to test selection rules.
    fn synth(entries: &[(i32, &str, &str, u64)], hwcaps: &[&str], old_part: bool) -> Vec<u8> {
        let n = entries.len();
        // An old part with no entries: its 16-byte header, 8-aligned.
        let old_len = if old_part { 16 } else { 0 };
        let header = 48 + 24 * n;
        let mut strings: Vec<u8> = Vec::new();
        let mut offs = Vec::new();
        let str_base = header; // relative to the new header
        for (_, k, v, _) in entries {
            let ko = str_base + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = str_base + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            offs.push((ko as u32, vo as u32));
        }
        let mut hw_offs = Vec::new();
        for h in hwcaps {
            hw_offs.push((old_len + str_base + strings.len()) as u32); // from file start
            strings.extend_from_slice(h.as_bytes());
            strings.push(0);
        }
        while !(old_len + header + strings.len()).is_multiple_of(4) {
            strings.push(0);
        }
        let ext_off = old_len + header + strings.len();
        let mut f = Vec::new();
        if old_part {
            f.extend_from_slice(CACHEMAGIC);
            f.push(0);
            f.extend_from_slice(&0u32.to_le_bytes());
            f.resize(old_len, 0);
        }
        f.extend_from_slice(CACHEMAGIC_VERSION_NEW);
        f.extend_from_slice(&(n as u32).to_le_bytes());
        f.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        f.push(2);
        f.extend_from_slice(&[0; 3]);
        f.extend_from_slice(&(if hwcaps.is_empty() { 0 } else { ext_off as u32 }).to_le_bytes());
        f.extend_from_slice(&[0; 12]);
        for ((fl, _, _, hw), (ko, vo)) in entries.iter().zip(&offs) {
            f.extend_from_slice(&fl.to_le_bytes());
            f.extend_from_slice(&ko.to_le_bytes());
            f.extend_from_slice(&vo.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&hw.to_le_bytes());
        }
        f.extend_from_slice(&strings);
        if !hwcaps.is_empty() {
            let data_off = ext_off + 8 + 16;
            f.extend_from_slice(&CACHE_EXTENSION_MAGIC.to_le_bytes());
            f.extend_from_slice(&1u32.to_le_bytes());
            f.extend_from_slice(&TAG_GLIBC_HWCAPS.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(data_off as u32).to_le_bytes());
            f.extend_from_slice(&((4 * hw_offs.len()) as u32).to_le_bytes());
            for o in hw_offs {
                f.extend_from_slice(&o.to_le_bytes());
            }
        }
        f
    }

    fn cache_nlibs(b: &[u8]) -> usize {
        u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("elfmap-ldcache-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn deps_ldcache_selection_rules() {
        let d = tmpdir("sel");
        // Sorted descending by _dl_cache_libcmp: libz before liba; equal keys adjacent with the
        // hwcaps entries first.
        // ldconfig stores the ISA level as bsr(GNU_PROPERTY_X86_ISA_1_NEEDED): v2 = 1, v3 = 2,
        // v4 = 3; the low bits index the sorted hwcaps names.
        let hw2 = DL_CACHE_HWCAP_EXTENSION | (1 << 32); // index 0 = x86-64-v2
        let hw3 = DL_CACHE_HWCAP_EXTENSION | (2 << 32) | 1; // index 1 = x86-64-v3
        let hw4 = DL_CACHE_HWCAP_EXTENSION | (3 << 32) | 2; // index 2 = x86-64-v4
        let entries = [
            (FLAG_X8664_LIBC6, "libz.so.1", "/v4/libz.so.1", hw4),
            (FLAG_X8664_LIBC6, "libz.so.1", "/v2/libz.so.1", hw2),
            (FLAG_X8664_LIBC6, "libz.so.1", "/v3/libz.so.1", hw3),
            (FLAG_X8664_LIBC6, "libz.so.1", "/plain/libz.so.1", 0),
            // ldconfig sorts equal keys by descending flags (elf/cache.c: compare()).
            (FLAG_X32_LIBC6, "libm.so.6", "/libx32/libm.so.6", 0),
            (FLAG_ELF_LIBC6, "libm.so.6", "/lib/libc6/libm.so.6", 0),
            (FLAG_ELF, "libm.so.6", "/lib/elf1/libm.so.6", 0),
            // Not in ldconfig's order: new-format search takes the first acceptable entry.
            (FLAG_ELF, "libdl.so.2", "/lib/elf1/libdl.so.2", 0),
            (FLAG_ELF_LIBC6, "libdl.so.2", "/lib/libc6/libdl.so.2", 0),
            (FLAG_X8664_LIBC6, "liba.so.1", "/plain/liba.so.1", 0),
        ];
        let bytes = synth(&entries, &["x86-64-v2", "x86-64-v3", "x86-64-v4"], false);
        let p = d.join("new.cache");
        std::fs::write(&p, &bytes).unwrap();
        let c = LdCache::open(&p).unwrap();
        c.verify().unwrap();
        assert_eq!(
            c.hwcaps_names(),
            vec![Some("x86-64-v2"), Some("x86-64-v3"), Some("x86-64-v4")]
        );
        let v = |isa: u32, active: &[&str]| CacheQuery {
            loader: CacheLoader::X86_64,
            hwcap: 2,
            hwcap_mask: 6,
            platform_bit: None,
            isa_1: isa,
            hwcaps_active: active.iter().map(|s| s.to_string()).collect(),
        };
        let all = 0xf;
        assert_eq!(
            c.lookup_path(
                "libz.so.1",
                &v(all, &["x86-64-v4", "x86-64-v3", "x86-64-v2"])
            ),
            Some("/v4/libz.so.1".into())
        );
        assert_eq!(
            c.lookup_path("libz.so.1", &v(all, &["x86-64-v3", "x86-64-v2"])),
            Some("/v3/libz.so.1".into())
        );
        assert_eq!(
            c.lookup_path("libz.so.1", &v(all, &["x86-64-v2"])),
            Some("/v2/libz.so.1".into())
        );
        assert_eq!(
            c.lookup_path("libz.so.1", &v(all, &[])),
            Some("/plain/libz.so.1".into())
        );
        // ISA level not supported by the CPU: the v3 entry is skipped even if its name is active.
        assert_eq!(
            c.lookup_path("libz.so.1", &v(0b011, &["x86-64-v3", "x86-64-v2"])),
            Some("/v2/libz.so.1".into())
        );
        assert_eq!(
            c.lookup_path("liba.so.1", &v(all, &[])),
            Some("/plain/liba.so.1".into())
        );
        assert_eq!(c.lookup_path("libm.so.6", &v(all, &[])), None);
        assert_eq!(c.lookup_path("libnone.so", &v(all, &[])), None);
        let i386 = CacheQuery {
            loader: CacheLoader::I386,
            hwcap: 1,
            hwcap_mask: 1,
            platform_bit: Some(49),
            isa_1: all,
            hwcaps_active: Vec::new(),
        };
        // i386: flags 3 and 1 accepted; with new-format entries the first acceptable one wins
        // (the "keep scanning unless default id" rule only survives for old-format entries).
        assert_eq!(
            c.lookup_path("libm.so.6", &i386),
            Some("/lib/libc6/libm.so.6".into())
        );
        assert_eq!(
            c.lookup_path("libdl.so.2", &i386),
            Some("/lib/elf1/libdl.so.2".into())
        );
        assert_eq!(c.lookup_path("libz.so.1", &i386), None);

        // The same entries behind an (empty) old-format part.
        let bytes = synth(&entries, &["x86-64-v2", "x86-64-v3", "x86-64-v4"], true);
        let p = d.join("old+new.cache");
        std::fs::write(&p, &bytes).unwrap();
        let c = LdCache::open(&p).unwrap();
        assert!(c.is_new_format());
        assert_eq!(
            c.lookup_path("libz.so.1", &v(all, &["x86-64-v3", "x86-64-v2"])),
            Some("/v3/libz.so.1".into())
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn deps_ldcache_corrupt_copies() {
        let Some(_) = real_cache() else { return };
        let orig = std::fs::read(CACHE).unwrap();
        let d = tmpdir("bad");
        let write = |name: &str, b: &[u8]| {
            let p = d.join(name);
            std::fs::write(&p, b).unwrap();
            p
        };
        let reason = |p: &Path| LdCache::open(p).unwrap_err().to_string();
        // Truncations at many points: rejected by ld.so's own header checks (then it uses no
        // cache), or - when only the string table is cut - accepted by ld.so and caught by
        // verify(); lookups stay bounds-checked either way.
        let q = CacheQuery {
            loader: CacheLoader::X86_64,
            hwcap: 2,
            hwcap_mask: 6,
            platform_bit: None,
            isa_1: 0xf,
            hwcaps_active: vec!["x86-64-v3".into()],
        };
        let entries_end = 48 + 24 * cache_nlibs(&orig);
        for cut in [
            0,
            1,
            10,
            20,
            47,
            48,
            49,
            100,
            entries_end - 1,
            entries_end + 7,
            orig.len() / 2,
            orig.len() - 1,
        ] {
            let p = write("cut.cache", &orig[..cut]);
            let err = match LdCache::open(&p) {
                Err(e) => {
                    assert!(cut < entries_end, "cut {cut}: {e}");
                    e
                }
                Ok(c) => {
                    assert!(cut >= entries_end, "cut {cut} accepted");
                    let _ = c.lookup("libc.so.6", &q);
                    c.verify().unwrap_err()
                }
            };
            assert!(
                err.to_string().starts_with(&p.display().to_string()),
                "{err}"
            );
        }
        // Bad magic.
        let mut m = orig.clone();
        m[0] = b'X';
        assert!(reason(&write("magic.cache", &m)).contains("bad magic"));
        // Too many entries.
        let mut m = orig.clone();
        m[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(reason(&write("nlibs.cache", &m)).contains("do not fit"));
        // Big-endian flag.
        let mut m = orig.clone();
        m[28] = 3;
        assert!(reason(&write("endian.cache", &m)).contains("byte order"));
        // Bogus string offsets: accepted by ld.so's checks, caught by verify(), lookups safe.
        let mut m = orig.clone();
        for i in 0..(u32::from_le_bytes(m[20..24].try_into().unwrap()) as usize) {
            let at = 48 + 24 * i + 8;
            m[at..at + 4].copy_from_slice(&(u32::MAX - 3).to_le_bytes());
        }
        let p = write("values.cache", &m);
        let c = LdCache::open(&p).unwrap();
        assert!(c.verify().is_err());
        assert_eq!(c.lookup("libc.so.6", &q), None);
        // Random byte flips never panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            let mut m = orig.clone();
            for _ in 0..6 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed >> 16) as usize % m.len();
                m[at] = seed as u8;
            }
            let p = write("flip.cache", &m);
            if let Ok(c) = LdCache::open(&p) {
                let _ = c.verify();
                let _ = c.lookup("libc.so.6", &q);
                let _ = c.hwcaps_names();
                let _ = c.entries().count();
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
