//! musl's loader (ldso/dynlink.c, 1.2.3), predicted vs the real process: `plan` must print
//! exactly what `run` reads from /proc/PID/maps at the `_dl_debug_state()` stop and at
//! AT_ENTRY, with ASLR off, in the flexible and the legacy layout. The kernel and the real
//! musl loader are the oracle: no address is typed into these tests.

mod util;

use std::path::{Path, PathBuf};

use util::*;

const LOADED: [&str; 3] = ["--no-aslr", "--stage", "loaded"];
const LOADED_LEGACY: [&str; 5] = ["--no-aslr", "--stage", "loaded", "--layout", "legacy"];
const ENTRY: [&str; 3] = ["--no-aslr", "--stage", "entry"];
const ENTRY_LEGACY: [&str; 5] = ["--no-aslr", "--stage", "entry", "--layout", "legacy"];

/// The musl test programs (dynamic and static): every testdata program named after musl,
/// so programs added to testdata/Makefile's musl set are checked too.
fn musl_programs() -> Vec<PathBuf> {
    let v: Vec<PathBuf> = testdata_programs()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("musl"))
        .collect();
    assert!(
        v.iter().any(|p| p.ends_with("hello_musl")) && v.iter().any(|p| p.ends_with("main_musl")),
        "expected hello_musl and musl/main_musl among {v:?}"
    );
    v
}

fn check_all(opts: &[&str], programs: &[PathBuf]) {
    util::check_all("musl ", opts, programs)
}

#[test]
fn musl_loaded_flexible() {
    check_all(&LOADED, &musl_programs());
}

#[test]
fn musl_loaded_legacy() {
    check_all(&LOADED_LEGACY, &musl_programs());
}

/// musl runs no constructor before AT_ENTRY (they run from `__libc_start_main`), so the
/// entry maps are the loaded maps, `[heap]` included.
#[test]
fn musl_entry_flexible() {
    check_all(&ENTRY, &musl_programs());
}

#[test]
fn musl_entry_legacy() {
    check_all(&ENTRY_LEGACY, &musl_programs());
}

/// The same programs started by a relative path from their own directory (the program's
/// `$ORIGIN` comes from `/proc/self/exe`, the libraries' from the path they were opened
/// at), and with LD_LIBRARY_PATH, which musl searches before any RPATH (so no RPATH is
/// expanded, and `fixup_rpath()` allocates nothing), with relative and empty elements.
#[test]
fn musl_loaded_relative_and_ld_library_path() {
    let t = testdata();
    let m = t.join("musl");
    let mut failures = Vec::new();
    let mut checked = 0;
    type Case<'a> = (&'a Path, &'a str, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        (&m, "./main_musl", vec![]),
        (&t, "./hello_musl", vec![]),
        (
            &t,
            "musl/main_musl",
            vec![("LD_LIBRARY_PATH", "musl/lib::musl/r1".into())],
        ),
        (
            &t,
            "./musl/main_musl",
            vec![(
                "LD_LIBRARY_PATH",
                format!(
                    "/nonexistent:{}:{}",
                    m.join("r1").display(),
                    m.join("lib").display()
                ),
            )],
        ),
    ];
    for (cwd, prog, env) in &cases {
        for opts in [&LOADED[..], &LOADED_LEGACY[..], &ENTRY[..]] {
            checked += 1;
            if let Some(f) = plan_vs_run_in(opts, Path::new(prog), Some(Path::new(cwd)), env) {
                failures.push(f);
            }
        }
    }
    assert_no_failures("musl relative/LD_LIBRARY_PATH", checked, &failures);
}

/// A copy of main_musl without its libraries next to it: musl reports the missing library
/// and exits 127 before `_dl_debug_state()`; the plan fails as well.
#[test]
fn musl_missing_library_fails_like_musl() {
    let dir = std::env::temp_dir().join(format!("elfmap-musl-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("main_musl");
    std::fs::copy(testdata().join("musl/main_musl"), &prog).unwrap();
    let p = run(["plan", "--no-aslr", "--stage", "loaded"]
        .iter()
        .map(Path::new)
        .chain([prog.as_path()]));
    let r = run(["run", "--no-aslr", "--stage", "loaded"]
        .iter()
        .map(Path::new)
        .chain([prog.as_path()]));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !r.status.success(),
        "the real program should not reach the loaded stop"
    );
    assert!(!p.status.success(), "plan should fail: {}", stdout(&p));
    assert!(
        stderr(&p).contains("libchain.so"),
        "the error should name the library: {}",
        stderr(&p)
    );
}

/// Hostile input: main_musl with its libraries copied next to it and libleaf.so's program
/// headers mutated field by field. Planning the loaded stage must succeed or fail with an
/// error (exit 2), never panic.
#[test]
fn musl_mutated_library_never_panics() {
    let dir = std::env::temp_dir().join(format!("elfmap-musl-mutated-{}", std::process::id()));
    for d in ["r1", "lib"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let src = testdata().join("musl");
    for f in ["main_musl", "lib/libchain.so"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let leaf = std::fs::read(src.join("r1/libleaf.so")).unwrap();
    let phoff = u64::from_le_bytes(leaf[0x20..0x28].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([leaf[0x38], leaf[0x39]]) as usize;
    // (program header, new p_type or none, field offset, value) to try.
    let mut mutations: Vec<(usize, Option<u32>, usize, u64)> = Vec::new();
    for i in 0..phnum {
        // p_offset, p_vaddr, p_filesz, p_memsz, p_align.
        for field in [8usize, 16, 32, 40, 48] {
            for v in [0u64, 1, 0x7fff_ffff_f000, 0xffff_ffff_ffff_f000, u64::MAX] {
                mutations.push((i, None, field, v));
            }
        }
        // Turned into PT_LOAD, PT_DYNAMIC, PT_TLS, PT_GNU_RELRO with odd sizes and
        // alignments (TLS offsets, RELRO clipping, the .bss tail).
        for p_type in [1u32, 2, 7, 0x6474_e552] {
            for (field, v) in [
                (40, 0),
                (40, 0x10_0000_0000),
                (48, 0),
                (48, 3),
                (48, u64::MAX),
            ] {
                mutations.push((i, Some(p_type), field, v));
            }
        }
    }
    let mut failures = Vec::new();
    for &(i, p_type, field, v) in &mutations {
        let mut b = leaf.clone();
        let at = phoff + i * 56;
        if let Some(t) = p_type {
            b[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        b[at + field..at + field + 8].copy_from_slice(&v.to_le_bytes());
        std::fs::write(dir.join("r1/libleaf.so"), &b).unwrap();
        let o = run([
            "plan".as_ref(),
            "--no-aslr".as_ref(),
            "--stage".as_ref(),
            "loaded".as_ref(),
            dir.join("main_musl").as_os_str(),
        ]);
        if !matches!(o.status.code(), Some(0 | 2)) {
            failures.push(format!(
                "phdr {i} type {p_type:?} field {field:#x} = {v:#x}: exit {:?}: {}",
                o.status.code(),
                stderr(&o).trim()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_no_failures("mutated libleaf.so", mutations.len(), &failures);
}

/// musl's loader run as a command (`ld-musl-x86_64.so.1 PROGRAM`): `__dls3`'s "invoked as
/// a command" branch maps the program itself with `map_library()` before anything else;
/// at AT_ENTRY (the loader's own entry) nothing has run yet. Every dynamic musl test
/// program, by an absolute and by a relative path, a glibc PIE too (musl takes its
/// libc.so.6 for itself), loaded and entry stops, both layouts.
#[test]
fn musl_loader_run_as_a_command() {
    let ld = Path::new("/lib/ld-musl-x86_64.so.1");
    if !ld.exists() {
        eprintln!("skipped: no {}", ld.display());
        return;
    }
    let t = testdata();
    let mut progs: Vec<String> = musl_programs()
        .iter()
        .filter(|p| !p.to_string_lossy().contains("static"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    progs.push(t.join("hello64pie").to_string_lossy().into_owned());
    let mut failures = Vec::new();
    let mut checked = 0;
    for opts in [
        &LOADED[..],
        &LOADED_LEGACY[..],
        &ENTRY[..],
        &ENTRY_LEGACY[..],
    ] {
        for prog in &progs {
            checked += 1;
            if let Some(f) = plan_vs_run(opts, ld, &[prog]) {
                failures.push(f);
            }
        }
        // A relative name: the program's $ORIGIN is the directory of the name as given.
        let o = plan_vs_run_in(
            &[opts, &[ld.to_str().unwrap()][..]].concat(),
            Path::new("musl/main_musl"),
            Some(&t),
            &[] as &[(&str, &str)],
        );
        checked += 1;
        failures.extend(o);
    }
    assert_no_failures("ld-musl as a command", checked, &failures);
}
