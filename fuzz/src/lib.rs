//! The fuzz targets' bodies, shared by the cargo-fuzz targets (`fuzz_targets/`) and the
//! stable random-mutation driver (`src/bin/drive.rs`). Each takes arbitrary bytes and must
//! return (an `Ok` or an `Err` of elfmap's): a panic, a hang or a huge allocation is a
//! finding.
//!
//! The library reads files by path (the kernel and the loaders open files), so the bytes
//! are written to a file in a private directory first; the process's own directory under
//! the system's temporary directory is reused for every input.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use elfmap::ldso::glibc::ldcache::{CacheLoader, CacheQuery, LdCache};
use elfmap::{Config, HostFacts, Stage, Target};

fn facts() -> &'static HostFacts {
    static F: OnceLock<HostFacts> = OnceLock::new();
    F.get_or_init(HostFacts::detect)
}

fn dir() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("elfmap-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fuzz directory");
        d
    })
}

/// `data` as the file `name` in the private directory, executable.
fn put(name: &str, data: &[u8]) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, data).expect("write fuzz input");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn target(p: &Path) -> Target {
    Target {
        program: p.to_path_buf(),
        filename: p.as_os_str().to_os_string(),
        argv: vec![p.as_os_str().to_os_string()],
    }
}

/// Arbitrary bytes as a program, through the whole exec-stage plan (the kernel's verdict,
/// `load_elf_binary()`, the interpreter it names) and the maps rendering.
pub fn plan_exec(data: &[u8]) {
    let p = put("program", data);
    let cfg = Config::no_aslr(Stage::Exec);
    if let Ok(plan) = elfmap::plan(&target(&p), &cfg, facts()) {
        let _ = elfmap::render::maps::render(&plan.mm);
    }
}

/// The program the library bytes are preloaded into (`LD_PRELOAD`).
fn host_program() -> &'static Path {
    static H: OnceLock<PathBuf> = OnceLock::new();
    H.get_or_init(|| {
        let t = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/build/hello64pie");
        if t.exists() {
            t
        } else {
            PathBuf::from("/usr/bin/true")
        }
    })
}

/// Arbitrary bytes as a shared library, through the loaded-stage plan: preloaded
/// (`LD_PRELOAD`) into a real program, so glibc's model opens, checks and maps it
/// (`_dl_map_object_from_fd()`, its dynamic section, symbol tables, versions, TLS ...).
pub fn plan_library(data: &[u8]) {
    let lib = put("libfuzz.so", data);
    let mut cfg = Config::no_aslr(Stage::Loaded);
    let mut env: Vec<OsString> = facts()
        .env
        .iter()
        .filter(|e| !e.as_encoded_bytes().starts_with(b"LD_"))
        .cloned()
        .collect();
    let mut pre = OsString::from("LD_PRELOAD=");
    pre.push(lib.as_os_str());
    env.push(pre);
    cfg.env = Some(env);
    let _ = elfmap::plan(&target(host_program()), &cfg, facts());
}

/// Arbitrary bytes as `/etc/ld.so.cache`: opened and verified by the cache reader, every
/// entry read, and looked up as ld.so's `_dl_load_cache_lookup()` would for a few names.
pub fn ld_cache(data: &[u8]) {
    let p = put("ld.so.cache", data);
    let Ok(cache) = LdCache::open(&p) else {
        return;
    };
    let _ = cache.verify();
    let _ = cache.generator();
    let _ = cache.hwcaps_names();
    for e in cache.entries().take(1 << 16) {
        let _ = e.is_hwcaps();
    }
    for loader in [CacheLoader::X86_64, CacheLoader::I386] {
        let q = CacheQuery {
            loader,
            hwcap: 2,
            hwcap_mask: 6,
            platform_bit: Some(0),
            isa_1: 0x7,
            hwcaps_active: vec!["x86-64-v3".into(), "x86-64-v2".into()],
        };
        for name in ["libc.so.6", "libm.so.6", "", "a"] {
            let _ = cache.lookup_path(name, &q);
        }
    }
}

/// Arbitrary bytes as a saved `/proc/PID/maps` file, through the maps parser and back.
pub fn maps(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(lines) = elfmap::maps::MapsLine::parse_all(&text) {
        // What the parser read, printed as the kernel prints it, reads back the same.
        for l in &lines {
            let again = l.render();
            assert_eq!(
                elfmap::maps::MapsLine::parse(&again).as_ref(),
                Ok(l),
                "{again:?}"
            );
        }
    }
    for line in text.lines().take(1 << 16) {
        let _ = elfmap::maps::MapsLine::parse(line);
    }
}

/// The bytes as a maps file pasted from anywhere: `elfmap explain --maps` (the tolerant
/// reader, the labels from the lines alone, and the text, JSON and SVG made of them).
pub fn explain_maps(data: &[u8]) {
    use elfmap::explain::annotate::{self, text, Options};
    let opts = Options {
        root: None,
        no_files: true,
    };
    if let Ok(a) = annotate::annotate("fuzz", data, &opts) {
        let mut sink = Vec::new();
        text::write(&a, &mut sink).expect("text");
        serde_json::to_writer(&mut sink, &a).expect("json");
        let _ = elfmap::render::svg::render(&a.explanation());
    }
}
