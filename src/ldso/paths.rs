//! DOC: what ld.so allocates to build its search paths. Models the allocation side of
//! glibc 2.36 `elf/dl-load.c: _dl_init_paths()`, `decompose_rpath()`, `fillin_rpath()`,
//! `expand_dynamic_string_token()`, `elf/dl-hwcaps.c: _dl_important_hwcaps()` and
//! `sysdeps/unix/sysv/linux/dl-origin.c: _dl_get_origin()` (spec/ldso.md 4.4 item 2).
//!
//! Which file a search finds is `crate::deps`' business; here only the sizes and the order
//! of the minimal-malloc calls are modelled, because they decide where the malloc chunks go.
//! Directory names are needed for one reason: `GL(dl_all_dirs)` shares one element per
//! distinct directory, so a directory seen before costs nothing.

use super::malloc::MinimalMalloc;
use super::Sizes;
use crate::deps::hwcaps::{LoaderHwcaps, GLIBC_HWCAPS_PREFIX};
use crate::elf::Abi;
use crate::mm::{AddressSpace, MmError};

/// `DL_DST_LIB`: what `$LIB` expands to, from the configured `slibdir` (Debian bookworm:
/// `lib/x86_64-linux-gnu`; the biarch i386 loader: `lib32`).
pub fn dl_dst_lib(abi: Abi) -> &'static str {
    match abi {
        Abi::X86_64 => "lib/x86_64-linux-gnu",
        Abi::I386 => "lib32",
    }
}

/// `SYSTEM_DIRS` (elf/dl-load.c, generated from the configured slibdir/libdir), each with
/// its trailing '/', in search order.
pub fn system_dirs(abi: Abi) -> &'static [&'static str] {
    match abi {
        Abi::X86_64 => &[
            "/lib/x86_64-linux-gnu/",
            "/usr/lib/x86_64-linux-gnu/",
            "/lib/",
            "/usr/lib/",
        ],
        Abi::I386 => &["/lib32/", "/usr/lib32/", "/lib/", "/usr/lib/"],
    }
}

/// Models `elf/dl-load.c: is_dst()`: the length of the token name at `input` (after the
/// '$'), counting the braces of `${NAME}`, or 0.
fn is_dst(input: &[u8], name: &str) -> usize {
    let (curly, body) = match input.first() {
        Some(b'{') => (true, &input[1..]),
        _ => (false, input),
    };
    let r = name.len();
    if !body.starts_with(name.as_bytes()) {
        return 0;
    }
    let next = body.get(r).copied();
    if curly && next != Some(b'}') {
        return 0;
    }
    if matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
        return 0;
    }
    if curly {
        r + 2
    } else {
        r
    }
}

/// A recognised token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dst {
    Origin,
    Platform,
    Lib,
}

/// Scan `s` the way `_dl_dst_count()` and `_dl_dst_substitute()` do: literal bytes
/// (`Err`) and tokens (`Ok`), one at a time.
fn dst_tokens(s: &str) -> DstTokens<'_> {
    DstTokens {
        b: s.as_bytes(),
        i: 0,
    }
}

struct DstTokens<'a> {
    b: &'a [u8],
    i: usize,
}

impl Iterator for DstTokens<'_> {
    type Item = Result<Dst, u8>;
    fn next(&mut self) -> Option<Result<Dst, u8>> {
        let c = *self.b.get(self.i)?;
        if c != b'$' {
            self.i += 1;
            return Some(Err(c));
        }
        let rest = &self.b[self.i + 1..];
        for (name, t) in [
            ("ORIGIN", Dst::Origin),
            ("PLATFORM", Dst::Platform),
            ("LIB", Dst::Lib),
        ] {
            let n = is_dst(rest, name);
            if n != 0 {
                self.i += 1 + n;
                return Some(Ok(t));
            }
        }
        self.i += 1;
        Some(Err(b'$'))
    }
}

/// Models `_dl_dst_count()`.
pub fn dl_dst_count(s: &str) -> usize {
    if !s.contains('$') {
        return 0;
    }
    dst_tokens(s).filter(|t| t.is_ok()).count()
}

/// The values DSTs expand to for one object.
#[derive(Clone, Debug)]
pub struct DstValues<'a> {
    /// `l_origin` (no trailing '/'), `None` if unknown (`(char *) -1`).
    pub origin: Option<&'a str>,
    pub platform: &'a str,
    pub lib: &'a str,
}

impl DstValues<'_> {
    /// Models `DL_DST_REQUIRED(l, name, len, cnt)`: `len + cnt * (M - 4)` with
    /// `M = max(strlen(l_origin), strlen(platform), strlen(DL_DST_LIB))` if `M > 4`.
    pub fn dl_dst_required(&self, s: &str) -> u64 {
        let cnt = dl_dst_count(s) as u64;
        let len = s.len() as u64;
        if cnt == 0 {
            return len;
        }
        let m = self
            .origin
            .map_or(0, str::len)
            .max(self.platform.len())
            .max(self.lib.len()) as u64;
        if m > 4 {
            len + cnt * (m - 4)
        } else {
            len
        }
    }

    /// Models `_dl_dst_substitute()` outside secure mode: the expanded string, or "" when a
    /// token has no value (the element is dropped).
    pub fn dl_dst_substitute(&self, s: &str) -> String {
        let mut out = Vec::with_capacity(s.len());
        for t in dst_tokens(s) {
            match t {
                Err(c) => out.push(c),
                Ok(Dst::Origin) => match self.origin {
                    Some(o) => out.extend_from_slice(o.as_bytes()),
                    None => return String::new(),
                },
                Ok(Dst::Platform) => out.extend_from_slice(self.platform.as_bytes()),
                Ok(Dst::Lib) => out.extend_from_slice(self.lib.as_bytes()),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `GL(dl_all_dirs)` and `ncapstr`: every search directory ld.so has an element for.
#[derive(Clone, Debug, Default)]
pub struct SearchDirs {
    /// Directory names with their trailing '/'.
    pub all_dirs: Vec<String>,
    /// `ncapstr`: the number of hwcaps subdirectory strings (each element has one status
    /// word per string).
    pub ncapstr: u64,
}

/// Where an element of a path list comes from (`r_search_path_elem.where`): the object's
/// `l_name` (its length + 1 is allocated with the element), or nothing (LD_LIBRARY_PATH).
#[derive(Clone, Copy, Debug)]
pub enum Where<'a> {
    Object(&'a str),
    Env,
}

impl Where<'_> {
    fn len(&self) -> u64 {
        match self {
            Where::Object(n) => n.len() as u64 + 1,
            Where::Env => 0,
        }
    }
}

/// State the path functions share.
pub struct PathCtx<'a> {
    pub mm: &'a mut AddressSpace,
    pub malloc: &'a mut MinimalMalloc,
    pub sizes: &'a Sizes,
    pub dirs: &'a mut SearchDirs,
}

impl PathCtx<'_> {
    /// Models `expand_dynamic_string_token(l, input)`: `strdup` without tokens, else
    /// `malloc(DL_DST_REQUIRED + 1)`. `get_origin` is called first when the object's
    /// `l_origin` is not known yet (the program's, which `DL_DST_REQUIRED` computes with
    /// `_dl_get_origin()`). Returns the expanded string.
    pub fn expand_dynamic_string_token(
        &mut self,
        input: &str,
        values: &DstValues,
        what: &str,
    ) -> Result<String, MmError> {
        if dl_dst_count(input) == 0 {
            self.malloc.malloc(
                self.mm,
                input.len() as u64 + 1,
                format_args!("strdup {what}"),
            )?;
            return Ok(input.to_string());
        }
        let total = values.dl_dst_required(input);
        self.malloc
            .malloc(self.mm, total + 1, format_args!("DST expansion {what}"))?;
        Ok(values.dl_dst_substitute(input))
    }

    /// Models `fillin_rpath(rpath, result, sep, what, where, l)`: per element: expand
    /// (allocates), drop if empty, normalise to exactly one trailing '/', then either reuse
    /// the known directory (and the expansion, the last block, is freed for real) or
    /// allocate a new `r_search_path_elem` with its status words, `where` and name; then free
    /// the expansion (reclaimed only if nothing was allocated after it).
    ///
    /// `main_origin` is called when the program's `l_origin` is needed and not known yet.
    pub fn fillin_rpath(
        &mut self,
        list: &str,
        seps: &[char],
        where_: Where,
        values: &mut dyn FnMut(&mut Self) -> Result<DstValuesOwned, MmError>,
        what: &str,
    ) -> Result<usize, MmError> {
        let mut nelems = 0usize;
        let mut seen: Vec<String> = Vec::new();
        for elem in list.split(seps) {
            let mut dir = String::new();
            if !elem.is_empty() {
                let expanded = if dl_dst_count(elem) > 0 {
                    let v = values(self)?;
                    self.expand_dynamic_string_token(elem, &v.as_values(), what)?
                } else {
                    self.expand_dynamic_string_token(elem, &DstValues::EMPTY, what)?
                };
                if expanded.is_empty() {
                    self.malloc.free_last();
                    continue;
                }
                // Exactly one trailing '/' ("/" stays "/").
                dir = expanded.trim_end_matches('/').to_string();
                dir.push('/');
            }
            if self.dirs.all_dirs.contains(&dir) {
                if !seen.contains(&dir) {
                    seen.push(dir.clone());
                    nelems += 1;
                }
                if !elem.is_empty() {
                    // free (to_free): the expansion is the last block.
                    self.malloc.free_last();
                }
            } else {
                let n = self.sizes.search_path_elem
                    + self.dirs.ncapstr * 4
                    + where_.len()
                    + dir.len() as u64
                    + 1;
                let expansion = self.malloc.last_block();
                self.malloc.malloc(
                    self.mm,
                    n,
                    format_args!("r_search_path_elem {dir} ({what})"),
                )?;
                // free (to_free) of the expansion: not the last block any more.
                self.malloc.free(expansion);
                self.dirs.all_dirs.push(dir.clone());
                seen.push(dir);
                nelems += 1;
            }
        }
        Ok(nelems)
    }

    /// Models `decompose_rpath(sps, rpath, l, what)`: `strdup` of the list, the result
    /// array `(colons + 2) * P`, `fillin_rpath`, then `free` of the copy (not the last
    /// block) and of the array if it stayed empty (it is the last block only if every
    /// element reused a directory).
    pub fn decompose_rpath(
        &mut self,
        rpath: &str,
        where_: Where,
        values: &mut dyn FnMut(&mut Self) -> Result<DstValuesOwned, MmError>,
        what: &str,
    ) -> Result<bool, MmError> {
        let word = self.sizes.word;
        self.malloc
            .malloc(self.mm, rpath.len() as u64 + 1, format_args!("{what} copy"))?;
        let copy = self.malloc.last_block();
        let colons = rpath.bytes().filter(|&b| b == b':').count() as u64;
        self.malloc
            .malloc(self.mm, (colons + 2) * word, format_args!("{what} array"))?;
        let array = self.malloc.last_block();
        let n = self.fillin_rpath(rpath, &[':'], where_, values, what)?;
        self.malloc.free(copy);
        if n == 0 {
            self.malloc.free(array);
            return Ok(false);
        }
        Ok(true)
    }
}

/// Owned DST values (the program's origin is computed on demand).
#[derive(Clone, Debug)]
pub struct DstValuesOwned {
    pub origin: Option<String>,
    pub platform: String,
    pub lib: String,
}

impl DstValuesOwned {
    pub fn as_values(&self) -> DstValues<'_> {
        DstValues {
            origin: self.origin.as_deref(),
            platform: &self.platform,
            lib: &self.lib,
        }
    }
}

impl DstValues<'static> {
    const EMPTY: DstValues<'static> = DstValues {
        origin: None,
        platform: "",
        lib: "",
    };
}

/// The sizes `_dl_important_hwcaps()` allocates: the `compute_priorities()` array and the
/// result table, and `ncapstr` (the number of subdirectory strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwcapsSizes {
    pub priorities: u64,
    pub table: u64,
    pub ncapstr: u64,
}

/// Models the sizes of `elf/dl-hwcaps.c: _dl_important_hwcaps()` (2.36 branch, after "Fix
/// hwcaps string size overestimation"): `compute_priorities()` allocates one
/// `struct priority` (16 bytes on x86-64, 12 on i386) per active glibc-hwcaps name; the
/// table is `2P * (h + 2^c)` of `r_strlenpair`s, the glibc-hwcaps strings
/// ("glibc-hwcaps/NAME/") and the compressed legacy power set of the c components.
pub fn dl_important_hwcaps(hw: &LoaderHwcaps, word: u64) -> HwcapsSizes {
    let h = hw.hwcaps_subdirs_active.len() as u64;
    let priority = if word == 8 { 16 } else { 12 };
    let t1: u64 = hw
        .hwcaps_subdirs_active
        .iter()
        .map(|n| (GLIBC_HWCAPS_PREFIX.len() + n.len() + 1) as u64)
        .sum();
    let masked = hw.dl_hwcap & hw.dl_hwcap_mask;
    let mut lens: Vec<u64> = Vec::new();
    const NAMES: [&str; 3] = ["sse2", "x86_64", "avx512_1"];
    for b in 0..64u32 {
        if masked & (1u64 << b) != 0 {
            lens.push(NAMES.get(b as usize).map_or(0, |s| s.len() as u64));
        }
    }
    lens.push(hw.dl_platform.len() as u64);
    lens.push(3); // "tls"
    let cnt = lens.len();
    let total = if cnt == 1 {
        lens[0] + 1
    } else {
        let mut t = lens[0] + lens[cnt - 1] + 2;
        if cnt > 2 {
            t <<= 1;
            for l in &lens[1..cnt - 1] {
                t += l + 1;
            }
            if cnt > 3 {
                t <<= cnt - 3;
            }
        }
        t
    };
    let k = h + (1u64 << cnt);
    HwcapsSizes {
        priorities: priority * h,
        table: 2 * word * k + t1 + total,
        ncapstr: k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deps::hwcaps::{HWCAP_X86_64, HWCAP_X86_AVX512_1, HWCAP_X86_SSE2};

    #[test]
    fn ldso_hwcaps_sizes_of_this_kind_of_machine() {
        let hw = LoaderHwcaps {
            isa_1: 7,
            hwcaps_subdirs_active: vec!["x86-64-v3", "x86-64-v2"],
            dl_hwcap: HWCAP_X86_64,
            dl_hwcap_mask: HWCAP_X86_64 | HWCAP_X86_AVX512_1,
            dl_platform: "x86_64",
        };
        // spec/ldso.md 4.4: 0x20 and 0xeb, 10 strings.
        assert_eq!(
            dl_important_hwcaps(&hw, 8),
            HwcapsSizes {
                priorities: 0x20,
                table: 0xeb,
                ncapstr: 10
            }
        );
        let hw = LoaderHwcaps {
            isa_1: 7,
            hwcaps_subdirs_active: vec![],
            dl_hwcap: HWCAP_X86_SSE2,
            dl_hwcap_mask: HWCAP_X86_SSE2,
            dl_platform: "i686",
        };
        assert_eq!(dl_important_hwcaps(&hw, 4).table, 87);
        assert_eq!(dl_important_hwcaps(&hw, 4).ncapstr, 8);
    }

    #[test]
    fn ldso_dst_sizes() {
        let v = DstValues {
            origin: Some("/work/main/testdata/build"),
            platform: "x86_64",
            lib: "lib/x86_64-linux-gnu",
        };
        assert_eq!(dl_dst_count("$ORIGIN/r1"), 1);
        assert_eq!(dl_dst_count("${ORIGIN}/$LIB"), 2);
        assert_eq!(dl_dst_count("$ORIGINX/a"), 0);
        assert_eq!(v.dl_dst_required("$ORIGIN/r1"), 10 + 25 - 4);
        assert_eq!(
            v.dl_dst_substitute("${ORIGIN}/r1/$PLATFORM"),
            "/work/main/testdata/build/r1/x86_64"
        );
        assert_eq!(v.dl_dst_substitute("$FOO/x"), "$FOO/x");
    }
}
