//! The loaded stage (glibc's ld.so at the `r_debug` RT_CONSISTENT rendezvous), predicted vs
//! the real process: `plan --stage loaded` must print exactly what `run --stage loaded`
//! reads from /proc/PID/maps, with ASLR off, in the flexible and the legacy layout, for the
//! test programs and for system programs. The kernel and the real ld.so are the oracle: no
//! address is typed into these tests.

mod util;

use std::path::{Path, PathBuf};

use util::*;

/// Test programs whose loaded stage is modelled: glibc programs (musl's loader is not
/// modelled yet) that start (main_runpath_missing must fail, see its own test).
fn glibc_programs() -> Vec<PathBuf> {
    testdata_programs()
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            !s.contains("musl") && !s.ends_with("main_runpath_missing")
        })
        .collect()
}

/// System programs with many libraries, C and C++ (libstdc++'s unique symbols): every one
/// that is installed.
fn system_programs() -> Vec<PathBuf> {
    [
        "/usr/bin/ls",
        "/usr/bin/bash",
        "/usr/bin/git",
        "/usr/bin/ssh",
        "/usr/bin/perl",
        "/usr/bin/python3",
        "/usr/bin/curl",
        "/usr/bin/gdb",
        "/usr/bin/soelim",
        "/usr/bin/apt",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect()
}

/// `plan` and `run` of `program` with extra environment variables.
fn plan_vs_run_env(opts: &[&str], program: &Path, env: &[(String, String)]) -> Option<String> {
    plan_vs_run_in(opts, program, None, env)
}

fn check_all(opts: &[&str], programs: &[PathBuf]) {
    util::check_all("", opts, programs)
}

const LOADED: [&str; 3] = ["--no-aslr", "--stage", "loaded"];
const LOADED_LEGACY: [&str; 5] = ["--no-aslr", "--stage", "loaded", "--layout", "legacy"];

#[test]
fn loaded_testdata_flexible() {
    check_all(&LOADED, &glibc_programs());
}

#[test]
fn loaded_testdata_legacy() {
    check_all(&LOADED_LEGACY, &glibc_programs());
}

#[test]
fn loaded_testdata_32bit_3gb() {
    check_32bit_3gb("loaded", glibc_programs(), check_all);
}

#[test]
fn loaded_testdata_unlimited_stack() {
    check_all(
        &[
            "--no-aslr",
            "--stage",
            "loaded",
            "--stack-limit",
            "unlimited",
        ],
        &glibc_programs(),
    );
}

/// At AT_ENTRY the cache is unmapped again; the test programs' libraries have no
/// constructors that map memory, so entry is exact too.
#[test]
fn entry_testdata_flexible() {
    check_all(&["--no-aslr", "--stage", "entry"], &glibc_programs());
}

#[test]
fn loaded_system_flexible() {
    check_all(&LOADED, &system_programs());
}

#[test]
fn loaded_system_legacy() {
    check_all(&LOADED_LEGACY, &system_programs());
}

/// The loader's environment: LD_LIBRARY_PATH (with empty elements, a DST and ';'),
/// LD_PRELOAD (a path, bare names, a name of the wrong class for the i386 loader) and
/// LD_BIND_NOW (which changes which relocations bind unique symbols).
#[test]
fn loaded_with_loader_environment() {
    let t = testdata();
    let lib = |p: &str| t.join(p).to_string_lossy().into_owned();
    let kv = |k: &str, v: String| (k.to_string(), v);
    let envs: Vec<Vec<(String, String)>> = vec![
        vec![kv(
            "LD_LIBRARY_PATH",
            format!("{}:{}", lib("r1"), lib("lib")),
        )],
        vec![kv(
            "LD_LIBRARY_PATH",
            "::/nonexistent:$ORIGIN/r1;/tmp".into(),
        )],
        vec![kv(
            "LD_LIBRARY_PATH",
            "/lib/x86_64-linux-gnu/:/usr/lib/x86_64-linux-gnu".into(),
        )],
        vec![kv("LD_PRELOAD", lib("r1/libleaf.so"))],
        vec![
            kv("LD_PRELOAD", "libm.so.6:libz.so.1".into()),
            kv("LD_LIBRARY_PATH", "/tmp".into()),
        ],
        vec![kv("LD_BIND_NOW", "1".into())],
    ];
    let mut progs = vec![
        t.join("hello64pie"),
        t.join("main_rpath"),
        t.join("main_all"),
        t.join("m32/main_all32"),
    ];
    progs.extend(
        ["/usr/bin/ls", "/usr/bin/soelim"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists()),
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for env in &envs {
        for p in &progs {
            checked += 1;
            if let Some(f) = plan_vs_run_env(&LOADED, p, env) {
                failures.push(f);
            }
        }
    }
    assert_no_failures("loader environment", checked, &failures);
}

/// A library asking for an executable stack: ld.so's mprotect with PROT_GROWSDOWN changes
/// the stack from its start up to the page holding the initial stack pointer. With a large
/// environment that page is not the top one and `[stack]` splits into `rwxp` + `rw-p`.
#[test]
fn loaded_executable_stack_with_large_environment() {
    let p = testdata().join("main_execstack_lib");
    let mut failures = Vec::new();
    for n in [0usize, 3000] {
        let env: Vec<(String, String)> = (0..n)
            .map(|i| (format!("A{i:05}"), "x".repeat(40)))
            .collect();
        if let Some(f) = plan_vs_run_env(&LOADED, &p, &env) {
            failures.push(f);
        }
    }
    assert_no_failures("executable stack", 2, &failures);
}

/// A program whose library cannot be found: ld.so fails, and so does the plan.
#[test]
fn loaded_missing_library_fails_like_ld_so() {
    let p = testdata().join("main_runpath_missing");
    let args = |cmd: &'static str| {
        let mut v: Vec<std::ffi::OsString> = [cmd, "--no-aslr", "--stage", "loaded"]
            .iter()
            .map(Into::into)
            .collect();
        v.push(p.clone().into_os_string());
        v
    };
    let plan = run(args("plan"));
    assert!(!plan.status.success());
    let e = stderr(&plan);
    assert!(
        e.contains("libleaf.so") && e.contains("loader would fail"),
        "{e}"
    );
    let real = run(args("run"));
    assert!(
        !real.status.success(),
        "the real program must not reach the loaded stop"
    );
}

/// glibc's ld.so run as a command (`ld.so PROGRAM`): ld.so maps the program itself, a PIE
/// top-down like a library, an ET_EXEC at its link addresses, before its first malloc. At
/// AT_ENTRY (ld.so's own entry) nothing of that has happened yet.
#[test]
fn loaded_ld_so_run_as_a_command() {
    let t = testdata();
    let mut cases: Vec<(&str, PathBuf)> = vec![
        ("/lib64/ld-linux-x86-64.so.2", t.join("hello64pie")),
        ("/lib64/ld-linux-x86-64.so.2", t.join("hello64")),
        ("/lib64/ld-linux-x86-64.so.2", t.join("main_all")),
        ("/lib64/ld-linux-x86-64.so.2", PathBuf::from("/usr/bin/ls")),
        ("/lib/ld-linux.so.2", t.join("hello32")),
        ("/lib/ld-linux.so.2", t.join("m32/main_all32")),
    ];
    cases.retain(|(l, p)| Path::new(l).exists() && p.exists());
    let mut failures = Vec::new();
    let mut checked = 0;
    let entry = ["--no-aslr", "--stage", "entry"];
    for opts in [&LOADED[..], &LOADED_LEGACY[..], &entry[..]] {
        for (ld_so, prog) in &cases {
            checked += 1;
            if let Some(f) = plan_vs_run(opts, Path::new(ld_so), &[prog.to_str().unwrap()]) {
                failures.push(f);
            }
        }
    }
    assert_no_failures("ld.so as a command", checked, &failures);
}

/// libselinux's constructor mallocs before AT_ENTRY: `compare --stage entry` on ls must say
/// the `[heap]` was made by initializers and that nothing else differs.
#[test]
fn entry_ls_heap_is_made_by_initializers() {
    let o = run(["compare", "--no-aslr", "--stage", "entry", "/usr/bin/ls"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let section = out
        .split("made by initializers (library constructors before AT_ENTRY):")
        .nth(1)
        .unwrap_or_else(|| panic!("no initializer section:\n{out}"));
    assert!(
        section
            .lines()
            .nth(1)
            .is_some_and(|l| l.trim_end().ends_with("[heap]")),
        "{out}"
    );
    assert!(
        out.contains("identical except for memory made by initializers"),
        "{out}"
    );
    // And the heap starts where the plan says brk starts.
    let json = stdout(&run([
        "plan",
        "--no-aslr",
        "--stage",
        "entry",
        "--format",
        "json",
        "/usr/bin/ls",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let start_brk = v["start_brk"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x")
        .to_string();
    assert!(
        section.contains(&format!("{start_brk}-")),
        "heap not at start_brk {start_brk}:\n{out}"
    );
}
