//! Test helpers: run the built `elfmap` binary, compare texts with expected/got blocks.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `elfmap` binary cargo built for these tests.
pub fn elfmap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_elfmap"))
}

/// Run `elfmap ARGS` and return its output.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    elfmap().args(args).output().expect("cannot run elfmap")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The directory of the test programs built by `make testdata`.
pub fn testdata() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/build");
    assert!(
        d.join("hello64pie").exists(),
        "testdata programs are missing: run `make testdata` (make test does it)"
    );
    d
}

/// The executable test programs (not the libraries).
pub fn testdata_programs() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "tmp" {
                    walk(&p, out);
                }
            } else if !name.contains(".so") && is_exec(&p) {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&testdata(), &mut v);
    v.sort();
    v
}

fn is_exec(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whether `p` starts with the ELF magic.
pub fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b == b"\x7fELF"
}

/// The 32-bit test programs (ELFCLASS32).
pub fn is_32bit(p: &Path) -> bool {
    std::fs::read(p)
        .map(|b| b.get(4) == Some(&1))
        .unwrap_or(false)
}

/// `plan` and `run` with the same options; `Some(report)` if they differ or fail.
pub fn plan_vs_run(opts: &[&str], program: &Path, args: &[&str]) -> Option<String> {
    let mut plan_args: Vec<&OsStr> = vec!["plan".as_ref()];
    let mut run_args: Vec<&OsStr> = vec!["run".as_ref()];
    for o in opts {
        plan_args.push(o.as_ref());
        run_args.push(o.as_ref());
    }
    plan_args.push(program.as_os_str());
    run_args.push(program.as_os_str());
    for a in args {
        plan_args.push(a.as_ref());
        run_args.push(a.as_ref());
    }
    let p = run(&plan_args);
    let r = run(&run_args);
    let head = format!("{} {}", opts.join(" "), program.display());
    if !p.status.success() || !r.status.success() {
        return Some(format!(
            "{head}: plan exit {:?}: {}; run exit {:?}: {}",
            p.status.code(),
            stderr(&p).trim(),
            r.status.code(),
            stderr(&r).trim()
        ));
    }
    let (ps, rs) = (stdout(&p), stdout(&r));
    if ps == rs {
        assert!(!ps.is_empty(), "{head}: empty maps");
        None
    } else {
        Some(format!(
            "{head}:\n--- expected (run, the real kernel)\n{rs}--- got (plan)\n{ps}"
        ))
    }
}

/// Fail with every report collected.
pub fn assert_no_failures(what: &str, checked: usize, failures: &[String]) {
    if !failures.is_empty() {
        panic!(
            "{what}: {} of {checked} differ:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    assert!(checked > 0, "{what}: nothing was checked");
}

/// `plan` and `run` of `program` with options `opts`, started from `cwd` (if given) with the
/// extra environment variables `env`; `Some(report)` if they differ or fail.
pub fn plan_vs_run_in<K, V>(
    opts: &[&str],
    program: &Path,
    cwd: Option<&Path>,
    env: &[(K, V)],
) -> Option<String>
where
    K: AsRef<OsStr> + std::fmt::Debug,
    V: AsRef<OsStr> + std::fmt::Debug,
{
    let out = |cmd: &str| {
        let mut c = elfmap();
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let o = c
            .arg(cmd)
            .args(opts)
            .arg(program)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("cannot run elfmap");
        (o.status.success(), stdout(&o), stderr(&o))
    };
    let (pok, ps, pe) = out("plan");
    let (rok, rs, re) = out("run");
    let mut head = format!("{env:?} {opts:?} {}", program.display());
    if let Some(d) = cwd {
        head.push_str(&format!(" (in {})", d.display()));
    }
    if !pok || !rok {
        return Some(format!("{head}: plan: {}; run: {}", pe.trim(), re.trim()));
    }
    (ps != rs).then(|| format!("{head}:\n--- expected (run)\n{rs}--- got (plan)\n{ps}"))
}

/// `plan_vs_run` on every program of `programs` (no arguments); fail with every report.
pub fn check_all(label: &str, opts: &[&str], programs: &[PathBuf]) {
    let failures: Vec<String> = programs
        .iter()
        .filter_map(|p| plan_vs_run(opts, p, &[]))
        .collect();
    assert_no_failures(&format!("{label}{opts:?}"), programs.len(), &failures);
}

/// The 32-bit programs among `programs` (the test programs hold at least 8), checked by
/// `check` with `--3gb` (ADDR_LIMIT_3GB) at `stage`, in the flexible and the legacy layout.
pub fn check_32bit_3gb(stage: &str, programs: Vec<PathBuf>, check: impl Fn(&[&str], &[PathBuf])) {
    let progs: Vec<PathBuf> = programs.into_iter().filter(|p| is_32bit(p)).collect();
    assert!(
        progs.len() >= 8,
        "expected the 32-bit test programs, found {progs:?}"
    );
    check(&["--no-aslr", "--stage", stage, "--3gb"], &progs);
    check(
        &["--no-aslr", "--stage", stage, "--3gb", "--layout", "legacy"],
        &progs,
    );
}

/// Assert two texts are equal, printing both as expected/got blocks when not.
pub fn assert_same(what: &str, expected: &str, got: &str) {
    assert!(
        expected == got,
        "{what}: texts differ\n--- expected\n{expected}--- got\n{got}---"
    );
}
