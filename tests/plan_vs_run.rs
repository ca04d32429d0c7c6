//! The exec stage, predicted vs the real kernel: `plan` must print exactly what `run` reads
//! from /proc/PID/maps, with ASLR off, for every test program and for system programs, in
//! every layout. The kernel is the oracle: no address is typed into these tests.

mod util;

use std::path::{Path, PathBuf};

use util::*;

fn system_programs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "/usr/bin/ls",
        "/usr/bin/bash",
        "/usr/bin/python3",
        "/usr/bin/perl",
        "/usr/bin/busybox",
        "/usr/bin/git",
        "/usr/bin/gdb",
        "/usr/bin/ssh",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect();
    // The dynamic loaders, run directly as programs (ET_DYN without PT_INTERP).
    for l in [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/ld-linux.so.2",
        "/lib/ld-musl-x86_64.so.1",
    ] {
        if Path::new(l).exists() {
            v.push(PathBuf::from(l));
        }
    }
    v
}

fn check_all(opts: &[&str], programs: &[PathBuf]) {
    let mut failures = Vec::new();
    for p in programs {
        // A loader run directly is given a program to load, as a user would.
        let hello = testdata().join("hello64pie");
        let args: Vec<&str> = if p.to_string_lossy().contains("ld-") {
            vec![hello.to_str().unwrap()]
        } else {
            vec![]
        };
        if let Some(f) = plan_vs_run(opts, p, &args) {
            failures.push(f);
        }
    }
    assert_no_failures(&format!("exec stage {opts:?}"), programs.len(), &failures);
}

#[test]
fn testdata_flexible() {
    check_all(&["--no-aslr", "--stage", "exec"], &testdata_programs());
}

#[test]
fn testdata_legacy() {
    check_all(
        &["--no-aslr", "--stage", "exec", "--layout", "legacy"],
        &testdata_programs(),
    );
}

#[test]
fn testdata_unlimited_stack() {
    check_all(
        &["--no-aslr", "--stage", "exec", "--stack-limit", "unlimited"],
        &testdata_programs(),
    );
}

#[test]
fn testdata_small_and_large_stack_limits() {
    let progs = [testdata().join("hello64pie"), testdata().join("hello32")];
    for lim in ["16k", "64k", "1g", "16g"] {
        check_all(
            &["--no-aslr", "--stage", "exec", "--stack-limit", lim],
            &progs,
        );
    }
}

#[test]
fn testdata_32bit_3gb() {
    check_32bit_3gb("exec", testdata_programs(), check_all);
}

#[test]
fn system_flexible() {
    check_all(&["--no-aslr", "--stage", "exec"], &system_programs());
}

#[test]
fn system_legacy() {
    check_all(
        &["--no-aslr", "--stage", "exec", "--layout", "legacy"],
        &system_programs(),
    );
}

#[test]
fn system_unlimited_stack() {
    check_all(
        &["--no-aslr", "--stage", "exec", "--stack-limit", "unlimited"],
        &system_programs(),
    );
}

/// The [stack] VMA depends on argv, envp and the filename: many and long arguments, and a
/// large environment that makes the pointer arrays extend the VMA.
#[test]
fn stack_follows_arguments_and_environment() {
    let hello = testdata().join("hello64pie");
    let hello32 = testdata().join("hello32");
    let long = "x".repeat(100_000);
    let many: Vec<String> = (0..3000).map(|i| format!("arg{i}")).collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for p in [&hello, &hello32] {
        for args in [
            vec![long.as_str()],
            many.iter().map(String::as_str).collect::<Vec<_>>(),
        ] {
            checked += 1;
            if let Some(f) = plan_vs_run(&["--no-aslr", "--stage", "exec"], p, &args) {
                failures.push(f);
            }
        }
    }
    assert_no_failures("argv sizes", checked, &failures);

    // 30000 small environment variables: the envp pointer array alone spans many pages.
    let env: Vec<(String, String)> = (0..30000)
        .map(|i| (format!("A{i:05}"), "1".into()))
        .collect();
    for p in [&hello, &hello32] {
        let out = |cmd: &str| {
            let o = elfmap()
                .args([cmd, "--no-aslr", "--stage", "exec"])
                .arg(p)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap();
            assert!(o.status.success(), "{cmd}: {}", stderr(&o));
            stdout(&o)
        };
        assert_eq!(
            out("plan"),
            out("run"),
            "large environment, {}",
            p.display()
        );
    }
}

/// The program as a relative path (`./prog`) and found through PATH: the filename copied to
/// the stack is what execve was given.
#[test]
fn relative_and_path_lookup() {
    let dir = testdata();
    for (cwd, prog) in [(dir.clone(), "./hello64pie"), (dir.clone(), "hello32")] {
        let get = |cmd: &str| {
            let o = elfmap()
                .current_dir(&cwd)
                .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
                .args([cmd, "--no-aslr", "--stage", "exec", prog])
                .output()
                .unwrap();
            assert!(o.status.success(), "{cmd} {prog}: {}", stderr(&o));
            stdout(&o)
        };
        let (p, r) = (get("plan"), get("run"));
        assert_eq!(p, r, "{prog}");
        // maps shows the canonical path, not ./hello64pie.
        assert!(r.contains(&format!("{}/", dir.canonicalize().unwrap().display())));
    }
}

/// `compare` agrees with itself: exit 0 and "identical" for a program plan gets right.
#[test]
fn compare_exit_codes() {
    let o = run(["compare", "--no-aslr", "--stage", "exec", "/usr/bin/ls"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("identical"));
    let o = run([
        "compare",
        "--no-aslr",
        "--stage",
        "exec",
        "--side-by-side",
        testdata().join("hello32").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// A program reached through symbolic links (relative, absolute, chained, through a
/// directory link, with ".."): maps names the
/// file by its canonical path, which `plan` must find as the kernel does, at the exec and
/// the loaded stage. A link whose target ends in '/' names no program: execve fails with
/// ENOTDIR, and so must `plan`.
#[test]
fn symlinked_program_paths() {
    use std::os::unix::fs::symlink;
    let d = std::env::temp_dir().join(format!("elfmap-symlinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("real")).unwrap();
    std::fs::copy(testdata().join("hello64pie"), d.join("real/prog")).unwrap();
    symlink("real/prog", d.join("rel")).unwrap();
    symlink(d.join("real/prog"), d.join("abs")).unwrap();
    symlink("rel", d.join("chain")).unwrap();
    symlink("real", d.join("dirlink")).unwrap();
    symlink("real/prog/", d.join("slash")).unwrap();
    let paths = [
        d.join("rel"),
        d.join("abs"),
        d.join("chain"),
        d.join("dirlink/prog"),
        d.join("dirlink/../real/prog"),
    ];
    let mut failures = Vec::new();
    for stage in ["exec", "loaded"] {
        for p in &paths {
            failures.extend(plan_vs_run(&["--no-aslr", "--stage", stage], p, &[]));
        }
    }
    let slash = d.join("slash");
    let o = run(["plan".as_ref(), "--no-aslr".as_ref(), slash.as_os_str()]);
    let real = std::process::Command::new(&slash).output();
    let _ = std::fs::remove_dir_all(&d);
    assert_no_failures("symlinked program paths", 2 * paths.len(), &failures);
    assert_eq!(
        real.map_err(|e| e.raw_os_error()).err(),
        Some(Some(libc::ENOTDIR)),
        "execve of a link to \"prog/\" should fail with ENOTDIR"
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Not a directory"),
        "plan should say why, as execve does: {}",
        stderr(&o)
    );
}
