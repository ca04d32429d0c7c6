//! The dependency resolver against the real loaders: for real programs and for small test
//! programs built here (and those of testdata/build when they exist), the resolved load list
//! must equal, in order and by canonical path, what `ld.so` lists for the same program and
//! environment (`LD_TRACE_LOADED_OBJECTS=1 ld.so PROG`, i.e. `ld.so --list` that also lists
//! missing libraries; musl: `ld-musl --list`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use elfmap::elf::{Abi, ElfImage};
use elfmap::ldso::{list, DepGraph, Flavor, FoundVia, LoaderEnv};

/// What the real loader printed.
#[derive(Debug, Default)]
struct Listing {
    /// Found objects in order: (requested name, canonical path).
    found: Vec<(String, PathBuf)>,
    missing: Vec<String>,
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn interp_of(img: &ElfImage) -> Option<String> {
    let raw = img.interp_raw()?;
    let raw = raw.split(|&b| b == 0).next()?;
    Some(String::from_utf8_lossy(raw).into_owned())
}

/// Run the real loader in list mode with exactly `env` (nothing inherited).
fn real_listing(interp: &str, prog: &Path, env: &[(&str, &str)], cwd: &Path) -> Option<Listing> {
    let musl = Flavor::from_interp(Path::new(interp)) == Flavor::Musl;
    let mut cmd = Command::new(interp);
    cmd.env_clear().current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if musl {
        cmd.arg("--list");
    } else {
        cmd.env("LD_TRACE_LOADED_OBJECTS", "1");
    }
    cmd.arg(prog);
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut l = Listing::default();
    let mut first = true;
    for line in text.lines() {
        let Some(line) = line.strip_prefix('\t') else {
            continue;
        };
        if musl && first {
            first = false; // musl prints the loader itself first
            continue;
        }
        if let Some((name, rest)) = line.split_once(" => ") {
            if rest.trim() == "not found" {
                l.missing.push(name.to_string());
            } else {
                let path = rest.rsplit_once(" (").map_or(rest, |(p, _)| p);
                l.found.push((name.to_string(), canon(&cwd.join(path))));
            }
        } else if let Some((path, _)) = line.rsplit_once(" (") {
            if path.contains('/') {
                l.found.push((path.to_string(), canon(&cwd.join(path))));
            } // else: the vDSO
        }
    }
    Some(l)
}

fn loader_env(abi: Abi, flavor: Flavor, env: &[(&str, &str)], cwd: &Path) -> LoaderEnv {
    let envp: Vec<OsString> = env
        .iter()
        .map(|(k, v)| OsString::from(format!("{k}={v}")))
        .collect();
    {
        let mut e = LoaderEnv::from_env(abi, flavor, &envp, None, &elfmap::HostFacts::detect());
        e.cwd = cwd.to_path_buf();
        e
    }
}

fn ours(prog: &Path, env: &[(&str, &str)], cwd: &Path) -> Result<(DepGraph, String), String> {
    let img = std::sync::Arc::new(ElfImage::open(prog).map_err(|e| e.to_string())?);
    let abi = img.abi().ok_or("unknown ABI")?;
    let interp = interp_of(&img).ok_or("no PT_INTERP")?;
    let flavor = Flavor::from_interp(Path::new(&interp));
    let le = loader_env(abi, flavor, env, cwd);
    let g = list(&img, prog, Path::new(&interp), &le).map_err(|e| e.to_string())?;
    Ok((g, interp))
}

/// Compare our resolution of `prog` with the real loader's; `Err` describes a difference.
fn compare(prog: &Path, env: &[(&str, &str)], cwd: &Path) -> Result<DepGraph, String> {
    let (g, interp) = ours(prog, env, cwd)?;
    let real = real_listing(&interp, prog, env, cwd)
        .ok_or_else(|| format!("{interp} could not be run"))?;
    let mine: Vec<PathBuf> = g.objects[1..].iter().map(|o| o.realpath.clone()).collect();
    let theirs: Vec<PathBuf> = real.found.iter().map(|(_, p)| p.clone()).collect();
    let mut mine_missing: Vec<String> = g.missing.iter().map(|m| m.name.clone()).collect();
    let mut their_missing = real.missing.clone();
    mine_missing.sort();
    their_missing.sort();
    let (a, b) = if real.missing.is_empty() {
        (mine.clone(), theirs.clone())
    } else {
        // In trace mode ld.so re-inserts itself next to its BFS predecessor among the
        // *found* objects, which can move it in the printed list: compare without it.
        let ld = g.interp_index.map(|i| g.objects[i].realpath.clone());
        let strip = |v: &[PathBuf]| {
            v.iter()
                .filter(|p| Some(*p) != ld.as_ref())
                .cloned()
                .collect::<Vec<_>>()
        };
        (strip(&mine), strip(&theirs))
    };
    if a != b || mine_missing != their_missing {
        return Err(format!(
            "{}:\nexpected (ld.so):\n  {}\n  missing {:?}\ngot:\n  {}\n  missing {:?}",
            prog.display(),
            theirs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join("\n  "),
            their_missing,
            mine.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join("\n  "),
            mine_missing
        ));
    }
    Ok(g)
}

fn here() -> PathBuf {
    std::env::current_dir().unwrap()
}

/// Dynamically linked programs of /usr/bin (by PT_INTERP), sorted, 64-bit and 32-bit.
fn usr_bin_programs(limit: usize) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/usr/bin") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    v.sort();
    v.into_iter()
        .filter(|p| {
            !std::fs::symlink_metadata(p)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(true)
        })
        .filter(|p| {
            ElfImage::open(p)
                .ok()
                .and_then(|i| interp_of(&i))
                .is_some_and(|s| {
                    matches!(
                        s.as_str(),
                        "/lib64/ld-linux-x86-64.so.2"
                            | "/lib/ld-linux.so.2"
                            | "/lib/ld-musl-x86_64.so.1"
                    )
                })
        })
        .take(limit)
        .collect()
}

#[test]
fn deps_real_programs_match_ld_so() {
    let named = [
        "ls", "bash", "git", "ssh", "perl", "python3", "gdb", "curl", "vim", "apt", "cp", "gpgv",
    ];
    let mut progs: Vec<PathBuf> = named
        .iter()
        .map(|n| Path::new("/usr/bin").join(n))
        .filter(|p| p.exists())
        .collect();
    for p in usr_bin_programs(60) {
        if !progs.contains(&p) {
            progs.push(p);
        }
    }
    assert!(!progs.is_empty(), "no programs to test");
    let (mut ok, mut bad) = (0, Vec::new());
    let mut libs = 0;
    for p in &progs {
        match compare(p, &[], &here()) {
            Ok(g) => {
                ok += 1;
                libs += g.objects.len() - 1;
                // The cache is consulted for any program with a bare DT_NEEDED on this system.
                if g.objects.len() > 2 {
                    assert!(g.first_cache_use.is_some(), "{}", p.display());
                }
                for o in &g.objects {
                    assert!(
                        o.realpath.is_absolute() && o.ino != 0,
                        "{}: {:?}",
                        p.display(),
                        o.path
                    );
                }
            }
            Err(e) => bad.push(e),
        }
    }
    eprintln!(
        "{ok} of {} programs agree with ld.so ({libs} objects)",
        progs.len()
    );
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n\n")
    );
}

#[test]
fn deps_first_cache_use_and_paths_of_ls() {
    let ls = Path::new("/usr/bin/ls");
    if !ls.exists() {
        return;
    }
    let (g, _) = ours(ls, &[], &here()).unwrap();
    // No RPATH: the very first DT_NEEDED goes to the cache, before objects[1] is loaded.
    assert_eq!(g.first_cache_use, Some(1));
    let c = g.cache.as_ref().unwrap();
    assert!(c.valid && c.size > 0);
    assert_eq!(g.objects[0].found_via, FoundVia::Program);
    for o in &g.objects[1..] {
        assert!(
            matches!(o.found_via, FoundVia::Cache | FoundVia::Loader),
            "{o:?}"
        );
    }
    let ld = g.interp_index.expect("libc names ld.so");
    assert_eq!(
        g.objects[ld].path,
        PathBuf::from("/lib64/ld-linux-x86-64.so.2")
    );
    assert_eq!(g.objects[ld].found_via, FoundVia::Loader);
    // The loader opened the cache's string; maps shows the canonical path.
    let libc = g
        .objects
        .iter()
        .find(|o| o.requested == "libc.so.6")
        .unwrap();
    assert_eq!(libc.path, PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"));
    assert_eq!(
        libc.realpath,
        PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")
    );
}

// ---------------------------------------------------------------------------------------
// Test programs built here (gcc; gcc -m32; musl-gcc), in a private temporary directory.

struct Fixture {
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(cmd: &str, dir: &Path) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Build the fixture tree once per test (each test gets its own directory).
fn fixture(tag: &str) -> Option<Fixture> {
    if !have("gcc") {
        eprintln!("skipped: no gcc");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("elfmap-deps-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"
set -e
mkdir -p r1 r2 lib sub hw/glibc-hwcaps/x86-64-v3 hw/glibc-hwcaps/x86-64-v4 hw/glibc-hwcaps/x86-64-v2 leg/x86_64 m32 nodef
echo 'int leaf(void){return 1;}' > leaf.c
echo 'int leaf(void); int chain(void){return leaf();}' > chain.c
echo 'int chain(void); int main(void){return chain()-1;}' > main.c
echo 'int leaf(void); int main(void){return leaf()-1;}' > mainleaf.c
echo 'int pre(void){return 0;}' > pre.c
gcc -shared -fPIC -Wl,-soname,libleaf.so -o r1/libleaf.so leaf.c
gcc -shared -fPIC -Wl,-soname,libleaf.so -o r2/libleaf.so leaf.c
gcc -shared -fPIC -Wl,-soname,libchain.so -o lib/libchain.so chain.c -Lr1 -lleaf
gcc -shared -fPIC -o libpre.so pre.c
# RPATH chain: program RPATH $ORIGIN/r1:$ORIGIN/lib; libchain has no path of its own.
gcc -o main_rpath main.c -Llib -lchain -Lr1 -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/r1:$ORIGIN/lib' -Wl,--allow-shlib-undefined
# RUNPATH: not inherited, libleaf is missing.
gcc -o main_runpath_missing main.c -Llib -lchain -Wl,--enable-new-dtags -Wl,-rpath,'$ORIGIN/lib' -Wl,--allow-shlib-undefined
# RUNPATH with both dirs: found.
gcc -o main_runpath_ok main.c -Llib -lchain -Lr1 -lleaf -Wl,--enable-new-dtags -Wl,-rpath,'${ORIGIN}/lib:$ORIGIN/r1'
# $LIB and $PLATFORM, an empty element and a missing directory in RPATH.
gcc -o main_dst mainleaf.c -Lr1 -lleaf -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/nodir::/$LIB/none:$ORIGIN/$PLATFORM-x:$ORIGIN/r2'
# hwcaps subdirectories: the best supported glibc-hwcaps level wins; legacy x86_64/ too.
cp r1/libleaf.so hw/glibc-hwcaps/x86-64-v3/; cp r1/libleaf.so hw/glibc-hwcaps/x86-64-v4/; cp r1/libleaf.so hw/glibc-hwcaps/x86-64-v2/; cp r1/libleaf.so hw/
cp r1/libleaf.so leg/x86_64/
gcc -o main_hw mainleaf.c -Lr1 -lleaf -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/hw'
gcc -o main_leg mainleaf.c -Lr1 -lleaf -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/leg'
# A bare-named library only LD_LIBRARY_PATH can find.
gcc -o main_llp mainleaf.c -Lr1 -lleaf
# A DT_NEEDED with a '/': relative to the current directory.
gcc -o main_slash mainleaf.c r1/libleaf.so
# DF_1_NODEFLIB (only meaningful on a shared object) on a library needing libz: the cache
# entry in a system directory is refused and the default dirs are skipped: libz missing.
if [ -e /usr/lib/x86_64-linux-gnu/libz.so.1 ]; then
  echo 'int zlibVersion(void); int nodef(void){return !zlibVersion();}' > nodef.c
  gcc -shared -fPIC -Wl,-soname,libnodef.so -Wl,-z,nodefaultlib -o nodef/libnodef.so nodef.c /usr/lib/x86_64-linux-gnu/libz.so.1
  echo 'int nodef(void); int main(void){return nodef();}' > mainnodef.c
  gcc -o main_nodeflib mainnodef.c -Lnodef -lnodef -Wl,-rpath,'$ORIGIN/nodef'
fi
# A 32-bit library first in the RPATH: skipped silently, the 64-bit one is used.
if gcc -m32 -shared -fPIC -Wl,-soname,libleaf.so -o m32/libleaf.so leaf.c 2>/dev/null; then
  gcc -o main_class mainleaf.c -Lr1 -lleaf -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/m32:$ORIGIN/r1'
  mkdir -p b32/lib
  gcc -m32 -shared -fPIC -Wl,-soname,libleaf.so -o b32/lib/libleaf.so leaf.c
  gcc -m32 -shared -fPIC -Wl,-soname,libchain.so -o b32/lib/libchain.so chain.c -Lb32/lib -lleaf
  gcc -m32 -o b32/main32 main.c -Lb32/lib -lchain -Wl,--allow-shlib-undefined -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/lib:$ORIGIN/../r1'
fi
# An executable as a dependency: link against a library, then put an ET_EXEC in its place.
mkdir -p ex
gcc -shared -fPIC -Wl,-soname,libexec.so -o ex/libexec.so pre.c
echo 'int pre(void); int main(void){return pre();}' > mainpre.c
gcc -o main_exec_dep mainpre.c -Lex -lexec -Wl,-rpath,'$ORIGIN/ex'
gcc -no-pie -o ex/libexec.so mainleaf.c -Lr1 -lleaf -Wl,-rpath,'$ORIGIN/../r1'
# A dependency cycle: libcyca <-> libcycb.
echo 'int b(void); int a(void){return 0;}' > cyca.c
echo 'int a(void); int b(void){return a();}' > cycb.c
gcc -shared -fPIC -Wl,-soname,libcycb.so -o lib/libcycb.so cycb.c
gcc -shared -fPIC -Wl,-soname,libcyca.so -o lib/libcyca.so cyca.c -Wl,--no-as-needed -Llib -lcycb
gcc -shared -fPIC -Wl,-soname,libcycb.so -o lib/libcycb.so cycb.c -Wl,--no-as-needed -Llib -lcyca
echo 'int b(void); int main(void){return b();}' > cyc.c
gcc -o main_cycle cyc.c -Wl,--no-as-needed -Llib -lcyca -lcycb -Wl,-rpath,'$ORIGIN/lib'
"#;
    assert!(
        sh(script, &dir),
        "building the fixtures in {} failed",
        dir.display()
    );
    Some(Fixture { dir })
}

#[test]
fn deps_fixtures_match_ld_so() {
    let Some(f) = fixture("match") else { return };
    let d = &f.dir;
    let progs = [
        "main_rpath",
        "main_runpath_missing",
        "main_runpath_ok",
        "main_dst",
        "main_hw",
        "main_leg",
        "main_llp",
        "main_nodeflib",
        "main_class",
        "main_cycle",
        "b32/main32",
    ];
    let mut bad = Vec::new();
    let mut n = 0;
    for p in progs {
        let path = d.join(p);
        if !path.exists() {
            eprintln!("(not built: {p})");
            continue;
        }
        n += 1;
        if let Err(e) = compare(&path, &[], d) {
            bad.push(e);
        }
    }
    // A '/' name is opened relative to the current directory: from the fixture directory it
    // is found, from elsewhere it is missing - ld.so agrees both times.
    for cwd in [d.clone(), std::env::temp_dir()] {
        n += 1;
        if let Err(e) = compare(&d.join("main_slash"), &[], &cwd) {
            bad.push(e);
        }
    }
    eprintln!("{} of {n} fixture runs agree with ld.so", n - bad.len());
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn deps_fixture_details() {
    let Some(f) = fixture("details") else { return };
    let d = &f.dir;
    // RPATH chain: libleaf (needed by libchain, which has no RPATH) is found through the
    // program's RPATH, libchain through its second element.
    let (g, _) = ours(&d.join("main_rpath"), &[], d).unwrap();
    let names: Vec<_> = g.objects.iter().map(|o| o.requested.as_str()).collect();
    assert_eq!(&names[1..3], ["libchain.so", "libc.so.6"]);
    let leaf = g
        .objects
        .iter()
        .find(|o| o.requested == "libleaf.so")
        .unwrap();
    assert_eq!(leaf.found_via, FoundVia::Rpath { of: 0 });
    assert_eq!(leaf.path, d.join("r1/libleaf.so"));
    assert_eq!(leaf.loader, Some(1));
    // libc comes from the cache, after libchain was loaded: the cache is first used then.
    assert_eq!(g.first_cache_use, Some(2));

    // RUNPATH is not inherited: libleaf missing, with the list of what was tried.
    let (g, _) = ours(&d.join("main_runpath_missing"), &[], d).unwrap();
    assert_eq!(g.missing.len(), 1);
    assert_eq!(g.missing[0].name, "libleaf.so");
    assert_eq!(g.missing[0].needed_by, 1);
    let tried = &g.missing[0].tried;
    assert!(
        tried
            .iter()
            .any(|t| t == Path::new("/lib/x86_64-linux-gnu/libleaf.so")),
        "{tried:?}"
    );
    assert!(
        !tried.iter().any(|t| t.starts_with(d)),
        "RUNPATH must not be inherited: {tried:?}"
    );
    // ... and the same list as LD_DEBUG=libs prints.
    let out = Command::new("/lib64/ld-linux-x86-64.so.2")
        .env_clear()
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .env("LD_DEBUG", "libs")
        .arg(d.join("main_runpath_missing"))
        .current_dir(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let mut in_leaf = false;
    let mut debug_tried = Vec::new();
    for l in err.lines() {
        if l.contains("find library=") {
            in_leaf = l.contains("find library=libleaf.so");
        } else if in_leaf {
            if let Some(t) = l.split("trying file=").nth(1) {
                debug_tried.push(PathBuf::from(t.trim()));
            }
        }
    }
    assert_eq!(tried, &debug_tried);

    // Both glibc-hwcaps and legacy subdirectories.
    let (g, _) = ours(&d.join("main_hw"), &[], d).unwrap();
    let leaf = g
        .objects
        .iter()
        .find(|o| o.requested == "libleaf.so")
        .unwrap();
    let best = elfmap::ldso::glibc::hwcaps::LoaderHwcaps::for_abi(
        Abi::X86_64,
        &elfmap::host::cpu::CpuFacts::detect(),
    )
    .hwcaps_subdirs_active
    .first()
    .copied();
    let want = match best {
        Some(level) => d.join(format!("hw/glibc-hwcaps/{level}/libleaf.so")),
        None => d.join("hw/libleaf.so"),
    };
    assert_eq!(leaf.path, want);
    let (g, _) = ours(&d.join("main_leg"), &[], d).unwrap();
    let leaf = g
        .objects
        .iter()
        .find(|o| o.requested == "libleaf.so")
        .unwrap();
    let legacy = elfmap::ldso::glibc::hwcaps::LoaderHwcaps::for_abi(
        Abi::X86_64,
        &elfmap::host::cpu::CpuFacts::detect(),
    )
    .dl_platform;
    if legacy == "x86_64" {
        assert_eq!(leaf.path, d.join("leg/x86_64/libleaf.so"));
    }

    // A cycle terminates, each object once.
    let (g, _) = ours(&d.join("main_cycle"), &[], d).unwrap();
    let mut seen = BTreeMap::new();
    for o in &g.objects {
        *seen.entry(o.realpath.clone()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let a = g
        .objects
        .iter()
        .position(|o| o.requested == "libcyca.so")
        .unwrap();
    let b = g
        .objects
        .iter()
        .position(|o| o.requested == "libcycb.so")
        .unwrap();
    assert!(g.objects[a].needed.contains(&b) && g.objects[b].needed.contains(&a));

    // An executable as a dependency is a load error.
    let e = ours(&d.join("main_exec_dep"), &[], d).unwrap_err();
    assert!(e.contains("cannot dynamically load executable"), "{e}");
    let out = Command::new(d.join("main_exec_dep"))
        .env_clear()
        .current_dir(d)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot dynamically load executable"));

    // A wrong-class file in an RPATH directory is skipped.
    if d.join("main_class").exists() {
        let (g, _) = ours(&d.join("main_class"), &[], d).unwrap();
        let leaf = g
            .objects
            .iter()
            .find(|o| o.requested == "libleaf.so")
            .unwrap();
        assert_eq!(leaf.path, d.join("r1/libleaf.so"));
    }
    // A 32-bit program resolves with the i386 loader's rules: 32-bit libraries only.
    if d.join("b32/main32").exists() {
        let (g, interp) = ours(&d.join("b32/main32"), &[], d).unwrap();
        assert_eq!(interp, "/lib/ld-linux.so.2");
        assert!(g.missing.is_empty(), "{:?}", g.missing);
        for o in &g.objects {
            let img = ElfImage::open(&o.host_path).unwrap();
            assert_eq!(img.abi(), Some(Abi::I386), "{}", o.realpath.display());
        }
        let libc = g
            .objects
            .iter()
            .find(|o| o.requested == "libc.so.6")
            .unwrap();
        assert_eq!(libc.found_via, FoundVia::Cache);
    }
}

#[test]
fn deps_environment_match_ld_so() {
    let Some(f) = fixture("env") else { return };
    let d = &f.dir;
    let r1 = d.join("r1").display().to_string();
    let r2 = d.join("r2").display().to_string();
    let libpre = d.join("libpre.so").display().to_string();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("main_llp", vec![("LD_LIBRARY_PATH", r1.clone())]),
        (
            "main_llp",
            vec![("LD_LIBRARY_PATH", format!("/nonexistent;{r2}:{r1}"))],
        ),
        // Empty element = current directory (the fixture directory has no libleaf.so; r1 has).
        ("main_llp", vec![("LD_LIBRARY_PATH", "::r1".to_string())]),
        (
            "main_llp",
            vec![("LD_LIBRARY_PATH", "$ORIGIN/r2".to_string())],
        ),
        ("main_llp", vec![]),
        // RPATH beats LD_LIBRARY_PATH; RUNPATH does not.
        ("main_rpath", vec![("LD_LIBRARY_PATH", r2.clone())]),
        (
            "main_runpath_missing",
            vec![("LD_LIBRARY_PATH", r2.clone())],
        ),
        ("main_runpath_ok", vec![("LD_LIBRARY_PATH", r2.clone())]),
        // Preloads: a path, a bare name (found through the program's RPATH), duplicates,
        // a missing one (ignored), separators ' ' and ':'.
        ("main_rpath", vec![("LD_PRELOAD", libpre.clone())]),
        (
            "main_rpath",
            vec![(
                "LD_PRELOAD",
                format!("libleaf.so {libpre}:libnone.so:libleaf.so"),
            )],
        ),
        (
            "main_llp",
            vec![
                ("LD_PRELOAD", format!("{r2}/libleaf.so")),
                ("LD_LIBRARY_PATH", r1.clone()),
            ],
        ),
    ];
    let mut bad = Vec::new();
    for (p, env) in &cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) = compare(&d.join(p), &env, d) {
            bad.push(format!("env {env:?}\n{e}"));
        }
    }
    // LD_PRELOAD of the SONAME's file: later DT_NEEDED "libleaf.so" reuses it.
    let env = [("LD_PRELOAD", format!("{r2}/libleaf.so"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (g, _) = ours(&d.join("main_rpath"), &env, d).unwrap();
    assert_eq!(g.objects[1].found_via, FoundVia::Preload);
    assert_eq!(g.objects[1].loader, Some(0));
    assert!(!g.objects.iter().any(|o| o.path == d.join("r1/libleaf.so")));
    eprintln!(
        "{} of {} environment cases agree with ld.so",
        cases.len() - bad.len(),
        cases.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn deps_musl_matches_ld_musl() {
    if !have("musl-gcc") || !Path::new("/lib/ld-musl-x86_64.so.1").exists() {
        eprintln!("skipped: no musl");
        return;
    }
    let Some(f) = fixture("musl") else { return };
    let d = &f.dir;
    let script = r#"
set -e
mkdir -p mu/lib mu/r1
musl-gcc -shared -fPIC -o mu/r1/libleaf.so leaf.c
musl-gcc -shared -fPIC -o mu/lib/libchain.so chain.c -Lmu/r1 -lleaf
musl-gcc -o mu/main_musl main.c -Lmu/lib -lchain -Lmu/r1 -lleaf -lm -lpthread -Wl,-rpath,'$ORIGIN/lib:$ORIGIN/r1'
musl-gcc -o mu/main_musl_chain main.c -Lmu/lib -lchain -Wl,--allow-shlib-undefined -Wl,-rpath,'$ORIGIN/lib:$ORIGIN/r1'
musl-gcc -o mu/hello -x c - <<EOF
int main(void){return 0;}
EOF
"#;
    if !sh(script, d) {
        eprintln!("skipped: musl-gcc failed");
        return;
    }
    let mut bad = Vec::new();
    for p in ["mu/main_musl", "mu/main_musl_chain", "mu/hello"] {
        match compare(&d.join(p), &[], d) {
            Ok(g) => {
                assert!(g.first_cache_use.is_none());
                let ld = g.interp_index.expect("libc.so names the loader");
                assert_eq!(g.objects[ld].found_via, FoundVia::Loader);
            }
            Err(e) => bad.push(e),
        }
    }
    // musl: RPATH (here RUNPATH) inherited: libleaf found for libchain through the program's.
    let (g, _) = ours(&d.join("mu/main_musl_chain"), &[], d).unwrap();
    let leaf = g
        .objects
        .iter()
        .find(|o| o.requested == "libleaf.so")
        .unwrap();
    assert_eq!(leaf.found_via, FoundVia::Runpath { of: 0 });
    let r1 = d.join("mu/r1").display().to_string();
    if let Err(e) = compare(&d.join("mu/hello"), &[("LD_PRELOAD", r1.as_str())], d) {
        bad.push(e);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

/// Every dynamically linked program of testdata/build (built by `make -C testdata`), when
/// present: main_rpath, main_runpath_ok, main_runpath_missing (libleaf.so missing), main_all,
/// m32/main_all32, musl/main_musl, main_execstack_lib, main_textrel32, the hello programs...
#[test]
fn deps_testdata_programs() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/build");
    if !base.exists() {
        eprintln!("skipped: testdata/build not built (make -C testdata)");
        return;
    }
    let mut found = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let Ok(img) = ElfImage::open(&p) else {
                    continue;
                };
                let is_prog = interp_of(&img).is_some()
                    && img
                        .phdrs
                        .iter()
                        .any(|ph| ph.p_type == elfmap::elf::PT_DYNAMIC);
                let is_lib = img.is_dyn() && p.extension().is_some_and(|x| x == "so");
                if is_prog && !is_lib {
                    found.push(p);
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        eprintln!("skipped: no dynamic programs in {}", base.display());
        return;
    }
    let mut bad = Vec::new();
    let mut seen_missing = false;
    for p in &found {
        match compare(p, &[], &base) {
            Ok(g) => {
                if p.ends_with("main_runpath_missing") {
                    assert!(
                        g.missing.iter().any(|m| m.name == "libleaf.so"),
                        "{:?}",
                        g.missing
                    );
                    seen_missing = true;
                }
            }
            Err(e) => bad.push(e),
        }
    }
    eprintln!(
        "{} of {} testdata programs agree with ld.so: {}",
        found.len() - bad.len(),
        found.len(),
        found
            .iter()
            .map(|p| p.strip_prefix(&base).unwrap().display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if base.join("main_runpath_missing").exists() {
        assert!(seen_missing);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// Secure mode (AT_SECURE): a setuid-root copy started by an unprivileged user. The real
/// program loads exactly when the resolver in secure mode finds everything.
#[test]
fn deps_secure_mode_matches_setuid_run() {
    if !is_root() || !have("setpriv") {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let Some(f) = fixture("secure") else { return };
    let d = &f.dir;
    let r1 = d.join("r1").display().to_string();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("main_rpath", vec![]), // $ORIGIN outside trusted dirs: dropped
        ("main_llp", vec![("LD_LIBRARY_PATH", r1.clone())]), // LD_LIBRARY_PATH ignored
        ("main_llp", vec![]),
        ("main_nodeflib", vec![]),
        ("main_cycle", vec![]),
    ];
    let mut checked = 0;
    for (p, env) in &cases {
        let src = d.join(p);
        if !src.exists() {
            continue;
        }
        let suid = d.join(format!("{p}.suid"));
        std::fs::copy(&src, &suid).unwrap();
        assert!(sh(&format!("chmod 4755 {}", suid.display()), d));
        // The secure resolution of the setuid copy.
        let img = std::sync::Arc::new(ElfImage::open(&suid).unwrap());
        let envp: Vec<OsString> = env
            .iter()
            .map(|(k, v)| OsString::from(format!("{k}={v}")))
            .collect();
        let mut le = LoaderEnv::from_env(
            Abi::X86_64,
            Flavor::Glibc,
            &envp,
            None,
            &elfmap::HostFacts::detect(),
        );
        le.cwd = d.clone();
        le.secure = true;
        let g = list(&img, &suid, Path::new("/lib64/ld-linux-x86-64.so.2"), &le);
        let predicted_ok = matches!(&g, Ok(g) if g.missing.is_empty());
        // The real run, as nobody.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&suid)
            .env_clear()
            .current_dir(d);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let real_ok = !stderr.contains("error while loading shared libraries");
        assert_eq!(
            predicted_ok, real_ok,
            "{p} {env:?}: predicted {g:?}\nreal stderr: {stderr}"
        );
        checked += 1;
    }
    eprintln!("{checked} secure-mode cases agree with the real setuid run");
}

/// `--root`: a small tree with the libraries of ls (ld.so reached through an absolute
/// symlink), ls itself and - with gcc - a library in glibc-hwcaps/x86-64-v{2,3,4}/
/// subdirectories, its cache made by `ldconfig -r` (so it holds glibc-hwcaps entries);
/// compared with ld.so run chrooted into the tree.
#[test]
fn deps_root_matches_chroot() {
    let chroot = ["/usr/sbin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let ldconfig = ["/usr/sbin/ldconfig", "/sbin/ldconfig"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let (Some(chroot), Some(ldconfig)) = (chroot, ldconfig) else {
        eprintln!("skipped: needs chroot and ldconfig");
        return;
    };
    if !is_root() || !Path::new("/usr/bin/ls").exists() {
        eprintln!("skipped: needs root and /usr/bin/ls");
        return;
    }
    let root = std::env::temp_dir().join(format!("elfmap-deps-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (g, _) = ours(Path::new("/usr/bin/ls"), &[], &here()).unwrap();
    let mut script = String::from(
        "set -e\nmkdir -p usr/lib/x86_64-linux-gnu usr/bin etc lib64\nln -s usr/lib lib\n",
    );
    script += "cp /usr/bin/ls usr/bin/\ntouch etc/ld.so.conf\n";
    for o in &g.objects[1..] {
        let real = o.realpath.display();
        let base = o
            .realpath
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        script += &format!("cp {real} usr/lib/x86_64-linux-gnu/{base}\n");
        let asked = Path::new(&o.requested)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if asked != base {
            script += &format!("ln -sf {base} usr/lib/x86_64-linux-gnu/{asked}\n");
        }
    }
    script += "ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 lib64/ld-linux-x86-64.so.2\n";
    let with_hw = have("gcc");
    if with_hw {
        script += r#"
L=usr/lib/x86_64-linux-gnu
echo 'int leaf(void){return 0;}' > /tmp/elfmap-hw-$$.c
for v in x86-64-v2 x86-64-v3 x86-64-v4; do
  mkdir -p $L/glibc-hwcaps/$v
  gcc -shared -fPIC -Wl,-soname,libleafhw.so.1 -o $L/glibc-hwcaps/$v/libleafhw.so.1 /tmp/elfmap-hw-$$.c
done
gcc -shared -fPIC -Wl,-soname,libleafhw.so.1 -o $L/libleafhw.so.1 /tmp/elfmap-hw-$$.c
echo 'int leaf(void); int main(void){return leaf();}' > /tmp/elfmap-hwm-$$.c
gcc -o usr/bin/mainhw /tmp/elfmap-hwm-$$.c $L/libleafhw.so.1
rm -f /tmp/elfmap-hw-$$.c /tmp/elfmap-hwm-$$.c
"#;
    }
    std::fs::create_dir_all(&root).unwrap();
    assert!(sh(&script, &root), "building {}", root.display());
    assert!(
        sh(&format!("{ldconfig} -r {}", root.display()), &root),
        "ldconfig -r"
    );

    let chroot_list = |prog: &str| -> (Vec<PathBuf>, String) {
        let out = Command::new(chroot)
            .arg(&root)
            .arg("/lib64/ld-linux-x86-64.so.2")
            .arg("--list")
            .arg(prog)
            .env_clear()
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = text
            .lines()
            .filter_map(|l| {
                let l = l.strip_prefix('\t')?;
                let p = l.split_once(" => ").map_or(l, |(_, r)| r);
                let p = p.rsplit_once(" (").map_or(p, |(p, _)| p);
                p.contains('/').then(|| p.to_string())
            })
            .map(|p| {
                // (An absolute symlink escapes the root on the host; the tree mirrors the
                // host's layout, so the host's canonical path is the in-root one then.)
                let host = canon(&root.join(p.trim_start_matches('/')));
                match host.strip_prefix(canon(&root)) {
                    Ok(rest) => PathBuf::from("/").join(rest),
                    Err(_) => host,
                }
            })
            .collect();
        (v, text)
    };
    let mut le = LoaderEnv::from_env(
        Abi::X86_64,
        Flavor::Glibc,
        &[],
        Some(root.clone()),
        &elfmap::HostFacts::detect(),
    );
    le.cwd = PathBuf::from("/");
    let mut progs = vec!["/usr/bin/ls"];
    if with_hw {
        progs.push("/usr/bin/mainhw");
    }
    let mut result = Ok(());
    for prog in progs {
        let img =
            std::sync::Arc::new(ElfImage::open(&root.join(prog.trim_start_matches('/'))).unwrap());
        let got = list(
            &img,
            Path::new(prog),
            Path::new("/lib64/ld-linux-x86-64.so.2"),
            &le,
        )
        .unwrap();
        assert!(got.missing.is_empty(), "{:?}", got.missing);
        assert_eq!(got.objects[0].realpath, PathBuf::from(prog));
        for o in &got.objects {
            assert!(o.host_path.starts_with(&root), "{o:?}");
        }
        assert!(got.cache.as_ref().unwrap().host_path.starts_with(&root));
        if prog.ends_with("mainhw") {
            let leaf = got
                .objects
                .iter()
                .find(|o| o.requested == "libleafhw.so.1")
                .unwrap();
            assert_eq!(leaf.found_via, FoundVia::Cache);
            let best = elfmap::ldso::glibc::hwcaps::LoaderHwcaps::for_abi(
                Abi::X86_64,
                &elfmap::host::cpu::CpuFacts::detect(),
            )
            .hwcaps_subdirs_active
            .first()
            .copied();
            let want = match best {
                Some(v) => format!("/usr/lib/x86_64-linux-gnu/glibc-hwcaps/{v}/libleafhw.so.1"),
                None => "/usr/lib/x86_64-linux-gnu/libleafhw.so.1".to_string(),
            };
            assert_eq!(leaf.realpath, PathBuf::from(want));
        }
        let mine: Vec<PathBuf> = got.objects[1..]
            .iter()
            .map(|o| o.realpath.clone())
            .collect();
        let (theirs, text) = chroot_list(prog);
        if mine != theirs {
            result = Err(format!(
                "{prog}: ours {mine:?}\nchroot ld.so --list:\n{text}"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    result.unwrap();
}
