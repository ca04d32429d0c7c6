//! Scripts (`#!`): the kernel execs the interpreter named on the first line
//! (fs/binfmt_script.c: load_script()), with the script's path and the line's one argument
//! pushed in front of the arguments. The plan of a script must be the real process's maps
//! (the stack holds the rewritten argv), and where execve refuses, plan refuses with the
//! same errno.

mod util;

use std::path::{Path, PathBuf};

use util::*;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("elfmap-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script(d: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn scripts_plan_as_their_interpreter_runs() {
    let d = dir();
    let sh = script(&d, "plain.sh", "#!/bin/sh\necho hi\n");
    let env = script(&d, "env.sh", "#!/usr/bin/env  python3 -S  \nprint(1)\n");
    // A chain of 5 rewrites (the most exec_binprm() allows): c4 -> c3 -> ... -> /bin/sh.
    let mut prev = sh.clone();
    for i in 0..4 {
        prev = script(
            &d,
            &format!("c{i}"),
            &format!("#!{} arg{i}\n", prev.display()),
        );
    }
    let chain = prev;
    // A relative interpreter, resolved from the current directory.
    let rel = script(&d, "rel.sh", "#!../../usr/bin/../bin/sh\n");
    let h32 = testdata().join("hello32");
    let i32 = script(&d, "h32.sh", &format!("#!{} x\n", h32.display()));
    let mut failures = Vec::new();
    let mut checked = 0;
    for p in [&sh, &env, &chain, &i32] {
        for stage in ["exec", "loaded", "entry"] {
            checked += 1;
            let opts = ["--no-aslr", "--stage", stage];
            // entry: memory made by constructors is compare's business.
            if stage == "entry" {
                let o = run([
                    "compare".as_ref(),
                    "--no-aslr".as_ref(),
                    "--stage".as_ref(),
                    "entry".as_ref(),
                    p.as_os_str(),
                    "a b".as_ref(),
                ]);
                if o.status.code() != Some(0) {
                    failures.push(format!(
                        "{}: compare --stage entry: {}",
                        p.display(),
                        stdout(&o)
                    ));
                }
            } else if let Some(f) = plan_vs_run(&opts, p, &["a b", "c"]) {
                failures.push(f);
            }
        }
    }
    // The relative name is resolved from the directory the process starts in: from /tmp,
    // ../../usr/bin/../bin/sh is /bin/sh.
    let o = elfmap()
        .current_dir("/tmp")
        .args(["compare", "--no-aslr", "--stage", "loaded"])
        .arg(&rel)
        .output()
        .unwrap();
    checked += 1;
    if o.status.code() != Some(0) {
        failures.push(format!("{}: {}{}", rel.display(), stdout(&o), stderr(&o)));
    }
    assert_no_failures("scripts", checked, &failures);
    let _ = std::fs::remove_dir_all(&d);
}

/// Scripts execve refuses: plan refuses with the same errno (`run` is the real execve).
#[test]
fn scripts_the_kernel_refuses() {
    let d = dir().join("refused");
    std::fs::create_dir_all(&d).unwrap();
    let sh = script(&d, "base", "#!/bin/sh\n");
    let mut prev = sh;
    for i in 0..5 {
        prev = script(&d, &format!("c{i}"), &format!("#!{}\n", prev.display()));
    }
    let cases = [
        (prev, "ELOOP"),
        (script(&d, "missing", "#!/nonexistent/sh\n"), "ENOENT"),
        (script(&d, "noexec", "#!/etc/passwd\n"), "EACCES"),
        (script(&d, "dir", "#!/usr\n"), "EACCES"),
        (script(&d, "blank", "#!  \t \n"), "ENOEXEC"),
        (
            script(&d, "long", &format!("#!/{}\n", "x".repeat(300))),
            "ENOEXEC",
        ),
    ];
    for (p, errno) in &cases {
        let plan = run([
            "plan".as_ref(),
            "--stage".as_ref(),
            "exec".as_ref(),
            p.as_os_str(),
        ]);
        assert_eq!(plan.status.code(), Some(2), "{}", p.display());
        let e = stderr(&plan);
        assert!(
            e.contains("the kernel would refuse to exec it") && e.contains(&format!("({errno})")),
            "{}: {e}",
            p.display()
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let real = run([
            "run".as_ref(),
            "--no-aslr".as_ref(),
            "--stage".as_ref(),
            "exec".as_ref(),
            p.as_os_str(),
        ]);
        assert_eq!(real.status.code(), Some(2), "{}", p.display());
        assert!(
            stderr(&real).contains(&format!("execve failed: {errno}")),
            "{}: the real execve: {}",
            p.display(),
            stderr(&real)
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}
