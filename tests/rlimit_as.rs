//! RLIMIT_AS (`--as-limit`, `ulimit -v`): the kernel's `may_expand_vm()` holds every
//! mapping of the exec (the argument pages, `setup_arg_pages()`'s expansion, each PT_LOAD
//! with an ET_DYN image's whole span first, the .bss, the interpreter) and ld.so's own
//! mappings to the limit. For each program the smallest limit the real process gets to the
//! stop with is found by bisection (`elfmap run`), and the plan must take exactly that one
//! (with the real maps) and refuse one page less, saying why.

mod util;

use std::path::{Path, PathBuf};
use std::process::Output;

use util::*;

const PAGE: u64 = 4096;

fn at(cmd: &str, stage: &str, pages: u64, program: &Path, args: &[&str]) -> Output {
    let limit = (pages * PAGE).to_string();
    let mut a = vec![cmd, "--no-aslr", "--stage", stage, "--as-limit", &limit];
    let p = program.to_str().unwrap();
    a.push(p);
    a.extend_from_slice(args);
    run(&a)
}

/// The smallest limit (pages) at which the real process reaches `stage`.
fn real_boundary(stage: &str, program: &Path, args: &[&str]) -> u64 {
    let (mut lo, mut hi) = (0u64, 1 << 17);
    assert!(
        at("run", stage, hi, program, args).status.success(),
        "{}: does not run even with {hi} pages",
        program.display()
    );
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if at("run", stage, mid, program, args).status.success() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

fn programs() -> Vec<PathBuf> {
    let d = testdata();
    let mut v: Vec<PathBuf> = [
        "hello64pie",
        "hello64",
        "hello32",
        "static64",
        "staticpie32",
        "bigbss64",
        "tls64",
    ]
    .iter()
    .map(|n| d.join(n))
    .filter(|p| p.exists())
    .collect();
    v.extend(
        ["/usr/bin/ls", "/usr/bin/true"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists()),
    );
    v
}

#[test]
fn plan_takes_exactly_the_limits_the_kernel_takes() {
    let mut checked = 0;
    for program in programs() {
        for stage in ["exec", "loaded"] {
            let edge = real_boundary(stage, &program, &[]);
            let what = format!("{} {stage} at {edge} pages", program.display());
            let plan = at("plan", stage, edge, &program, &[]);
            assert!(plan.status.success(), "{what}: {}", stderr(&plan));
            let real = at("run", stage, edge, &program, &[]);
            assert_same(&what, &stdout(&real), &stdout(&plan));
            let below = at("plan", stage, edge - 1, &program, &[]);
            assert_eq!(
                below.status.code(),
                Some(2),
                "{what}: one page less is planned: {}",
                stdout(&below)
            );
            let why = stderr(&below);
            assert!(
                why.contains("RLIMIT_AS") || why.contains("ENOMEM"),
                "{what}: one page less: {why}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} cases");
}

/// The argument pages: a 100,000-byte argument needs 25 pages of the new stack while the
/// strings are copied, before the point of no return: below that execve says E2BIG, and
/// from there on the exec goes on (and is killed while the stack is expanded).
#[test]
fn argument_pages_past_the_limit_are_e2big() {
    let program = testdata().join("hello64pie");
    let big = "a".repeat(100_000);
    let refused = |cmd: &str, pages: u64| {
        let o = at(cmd, "exec", pages, &program, &[&big]);
        stderr(&o).contains("E2BIG")
    };
    let (mut lo, mut hi) = (1u64, 64u64);
    assert!(refused("run", lo) && !refused("run", hi));
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if refused("run", mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    assert!(refused("plan", lo), "plan accepts {lo} pages");
    assert!(!refused("plan", hi), "plan refuses {hi} pages");
    let o = at("plan", "exec", lo, &program, &[&big]);
    assert!(stderr(&o).contains("RLIMIT_AS"), "{}", stderr(&o));
}
