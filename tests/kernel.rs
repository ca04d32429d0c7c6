//! Kernel profiles: `--kernel RELEASE|FILE`, `elfmap kernel capture`, and what the plan says
//! about the profile it used. (The built-in profiles against the real maps of their
//! kernels: tests/kernels.rs.)

mod util;

use std::path::PathBuf;

use util::*;

fn plan_args(extra: &[&str], prog: &str) -> Vec<String> {
    let mut v: Vec<String> = vec!["plan".into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(prog.into());
    v
}

/// A capture of this machine, then `plan --kernel FILE` gives what the plan for the
/// running kernel gives: every test program and a few system programs, both layouts,
/// exec and loaded stages.
#[test]
fn capture_plans_like_the_running_kernel() {
    let o = run(["kernel", "capture"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cap: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cap["schema"], "elfmap-kernel/1");
    let release = nix::sys::utsname::uname().unwrap();
    assert_eq!(
        cap["release"].as_str().unwrap(),
        release.release().to_string_lossy()
    );
    // The 32-bit probe ran (a 32-bit vDSO of some pages) and the mounts were looked at.
    assert!(
        cap["facts"]["vdso32_size"].as_u64().unwrap() >= 4096,
        "{cap}"
    );
    assert!(cap["facts"]["mounts"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("capture-{}.json", std::process::id()));
    std::fs::write(&file, &o.stdout).unwrap();
    let file_s = file.to_string_lossy().into_owned();
    let mut progs: Vec<String> = testdata_programs()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for p in [
        "/usr/bin/ls",
        "/usr/bin/bash",
        "/usr/bin/python3",
        "/usr/bin/perl",
    ] {
        if std::path::Path::new(p).exists() {
            progs.push(p.into());
        }
    }
    let mut checked = 0;
    for p in &progs {
        for stage in ["exec", "loaded"] {
            for layout in ["flexible", "legacy"] {
                let opts = ["--no-aslr", "--stage", stage, "--layout", layout];
                let want = run(plan_args(&opts, p));
                let mut with = opts.to_vec();
                with.extend(["--kernel", &file_s]);
                let got = run(plan_args(&with, p));
                assert_eq!(
                    (got.status.code(), stdout(&got)),
                    (want.status.code(), stdout(&want)),
                    "{p} {opts:?} --kernel {file_s}"
                );
                checked += 1;
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    eprintln!("{checked} plans from the capture equal the running kernel's");
}

/// The table and the JSON name the profile; a release without a built-in profile gets the
/// nearest rules and a note on stderr; `--kernel` of this machine's release is the
/// running kernel.
#[test]
fn the_plan_names_its_kernel() {
    let hello = testdata().join("hello64pie");
    let hello = hello.to_string_lossy();
    let o = run([
        "plan",
        "--no-aslr",
        "--format",
        "table",
        "--kernel",
        "6.1.0-50-amd64",
        &hello,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    let line = t.lines().find(|l| l.starts_with("kernel ")).unwrap();
    assert!(
        line.contains("6.1.0-50-amd64") && line.contains("debian-6.1-amd64"),
        "{line}"
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    let o = run(["plan", "--no-aslr", "--format", "json", &hello]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let uname = nix::sys::utsname::uname().unwrap();
    assert_eq!(j["kernel"]["release"], *uname.release().to_string_lossy());
    assert_eq!(j["kernel"]["source"], "running");

    let o = run(["plan", "--no-aslr", "--kernel", "5.15.0-91-generic", &hello]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("no built-in profile") && stderr(&o).contains("debian-5.10-amd64"),
        "{}",
        stderr(&o)
    );
}

/// Bad `--kernel` input: one line naming the file, exit 2. A 64-bit program on a 32-bit
/// kernel is refused as that kernel's exec would refuse it.
#[test]
fn bad_kernel_input() {
    let hello = testdata().join("hello64pie");
    let hello = hello.to_string_lossy();
    let bad = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bad-capture-{}.json", std::process::id()));
    std::fs::write(&bad, "{\"schema\": 1}").unwrap();
    let o = run(["plan", "--kernel", &bad.to_string_lossy(), &hello]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains(&*bad.to_string_lossy()), "{e}");
    let _ = std::fs::remove_file(&bad);
    let o = run(["plan", "--kernel", "/nonexistent/capture.json", &hello]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("elfmap: /nonexistent/capture.json"));
    let o = run(["plan", "--kernel", "6.1.0-50-686-pae", &hello]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ENOEXEC"), "{}", stderr(&o));
    let o = run(["run", "--kernel", "6.1.0-50-amd64", &hello]);
    assert_eq!(o.status.code(), Some(2));
}
