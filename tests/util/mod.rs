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
