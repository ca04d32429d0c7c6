//! Remembered unique-symbol tables (`$XDG_CACHE_HOME/elfmap/unique-tables`): a plan made
//! from them equals the plan computed afresh and the real process; they are taken only for
//! the very files they were computed from; nothing is written for bad input or with
//! `ELFMAP_CACHE=off`.

mod util;

use std::path::{Path, PathBuf};
use std::process::Output;

use util::*;

/// A fresh directory for one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("elfmap-memo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `elfmap ARGS` with the cache in `cache`, `extra` environment on top.
fn with_cache(cache: &Path, extra: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = elfmap();
    c.env("XDG_CACHE_HOME", cache).env_remove("ELFMAP_CACHE");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.args(args).output().expect("cannot run elfmap")
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    stdout(&o)
}

/// The files remembered under `cache`.
fn remembered(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("elfmap/unique-tables")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn tables(file: &Path) -> Vec<Vec<u64>> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_value(e["tables"].clone()).unwrap())
        .collect()
}

/// For a C++ program (apt: libstdc++ defines unique symbols, so ld.so allocates tables)
/// and a C one (ls: none): the plan computed without the cache, the one computed and
/// remembered, the one made from what was remembered, and the real process at the loaded
/// stop are all the same.
#[test]
fn remembered_tables_give_the_real_maps() {
    let dir = TempDir::new("real");
    let cache = dir.0.join("cache");
    let mut checked = 0;
    for (program, cxx) in [("/usr/bin/apt", true), ("/usr/bin/ls", false)] {
        if !Path::new(program).exists() {
            continue;
        }
        let args = ["plan", "--no-aslr", "--stage", "loaded", program];
        let off = ok(
            with_cache(&cache, &[("ELFMAP_CACHE", Path::new("off"))], &args),
            "off",
        );
        assert!(
            remembered(&cache).len() == checked,
            "ELFMAP_CACHE=off wrote"
        );
        let computed = ok(with_cache(&cache, &[], &args), "computed");
        let files = remembered(&cache);
        assert_eq!(files.len(), checked + 1, "{program}: nothing remembered");
        let from_memo = ok(with_cache(&cache, &[], &args), "remembered");
        let real = ok(
            with_cache(
                &cache,
                &[],
                &["run", "--no-aslr", "--stage", "loaded", program],
            ),
            "run",
        );
        assert_same(program, &real, &off);
        assert_same(program, &real, &computed);
        assert_same(program, &real, &from_memo);
        let mine = files
            .iter()
            .find(|f| {
                use std::os::unix::fs::MetadataExt;
                let m = std::fs::metadata(program).unwrap();
                f.file_name().unwrap().to_string_lossy() == format!("{}-{}.json", m.dev(), m.ino())
            })
            .expect("the program's file");
        let t = tables(mine);
        assert_eq!(t.len(), 1, "{program}: {t:?}");
        assert_eq!(!t[0].is_empty(), cxx, "{program}: tables {t:?}");
        checked += 1;
    }
    assert!(checked > 0, "neither apt nor ls here");
}

/// What is remembered is used (a forged table changes the plan: ld.so's minimal malloc
/// needs more pages), but only while every file of the load list is the one it was
/// computed from: a library's new modification time makes the plan computed afresh.
#[test]
fn a_remembered_entry_is_taken_only_for_the_same_files() {
    let program = "/usr/bin/apt";
    let libstdcxx = Path::new("/usr/lib/x86_64-linux-gnu/libstdc++.so.6");
    if !Path::new(program).exists() || !libstdcxx.exists() {
        eprintln!("skipped: no apt or libstdc++ here");
        return;
    }
    let dir = TempDir::new("same");
    let cache = dir.0.join("cache");
    let lib = dir.0.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let copy = lib.join("libstdc++.so.6");
    std::fs::copy(libstdcxx, &copy).unwrap();
    let env = [("LD_LIBRARY_PATH", lib.as_path())];
    let args = ["plan", "--no-aslr", "--stage", "loaded", program];
    let honest = ok(with_cache(&cache, &env, &args), "computed");
    assert!(
        honest.contains(&*copy.to_string_lossy()),
        "the copy is not in the plan"
    );
    let files = remembered(&cache);
    assert_eq!(files.len(), 1);
    let file = &files[0];

    // Forge the remembered tables: a table of 4093 entries (98 KiB).
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["entries"][0]["tables"] = serde_json::json!([4093]);
    std::fs::write(file, serde_json::to_vec(&v).unwrap()).unwrap();
    let forged = ok(with_cache(&cache, &env, &args), "forged");
    assert_ne!(forged, honest, "the remembered tables were not used");

    // The library is touched: the forged entry is not for these files any more.
    let f = std::fs::File::options().write(true).open(&copy).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30))
        .unwrap();
    drop(f);
    let after = ok(with_cache(&cache, &env, &args), "after touch");
    assert_same("after the library changed", &honest, &after);
    let t = tables(file);
    assert_eq!(
        t.len(),
        2,
        "the new load list is remembered beside the old: {t:?}"
    );
    assert_ne!(t[0], vec![4093], "{t:?}");
}

/// A plan that fails (a file no kernel would exec) writes nothing; neither does any plan
/// with `ELFMAP_CACHE=off`.
#[test]
fn nothing_is_remembered_for_bad_input_or_when_off() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("bad");
    let cache = dir.0.join("cache");
    let bad = dir.0.join("garbage");
    std::fs::write(&bad, b"\x7fELF\x02\x01\x01 not really an ELF file at all").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = with_cache(
        &cache,
        &[],
        &["plan", "--stage", "loaded", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!cache.exists(), "a failed plan wrote {}", cache.display());
    let o = with_cache(
        &cache,
        &[("ELFMAP_CACHE", Path::new("off"))],
        &["plan", "--stage", "loaded", "/usr/bin/ls"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !cache.exists(),
        "ELFMAP_CACHE=off wrote {}",
        cache.display()
    );
}
