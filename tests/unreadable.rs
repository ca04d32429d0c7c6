//! Directories and files a user may not read, on the loader's search path: ld.so's `open()`
//! fails with EACCES and it goes on (`elf/dl-load.c: open_path()` does not stop there), and
//! a preloaded object it cannot open is ignored with a message. As root every directory is
//! readable (DAC override), so elfmap runs here as `nobody` (setpriv), planning and running
//! with the same identity, and the plan must equal the real process.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use util::*;

struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(
            self.0.join("locked"),
            std::fs::Permissions::from_mode(0o755),
        );
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// elfmap (copied into the tree, so that `nobody` may run it) as `nobody`.
fn as_nobody(tree: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(tree.join("elfmap"))
        .args(args)
        .current_dir(tree)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("setpriv")
}

#[test]
fn unreadable_directories_and_files_on_the_search_path() {
    let have_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !nix::unistd::geteuid().is_root() || !have_setpriv {
        eprintln!("skipped: needs root (to make the tree) and setpriv (to drop to nobody)");
        return;
    }
    let build = testdata();
    let t = Tree(std::env::temp_dir().join(format!("elfmap-unreadable-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&t.0);
    for d in ["lib", "r1", "locked", "empty"] {
        std::fs::create_dir_all(t.0.join(d)).unwrap();
    }
    let copy = |from: &Path, to: &str| {
        std::fs::copy(from, t.0.join(to)).unwrap();
    };
    copy(&build.join("main_runpath_ok"), "main_runpath_ok");
    copy(&build.join("lib/libchain.so"), "lib/libchain.so");
    copy(&build.join("r1/libleaf.so"), "r1/libleaf.so");
    copy(&build.join("lib/libchain.so"), "locked/libchain.so");
    copy(&build.join("r1/libleaf.so"), "locked/libleaf.so");
    copy(Path::new(env!("CARGO_BIN_EXE_elfmap")), "elfmap");
    mode(&t.0, 0o755);
    mode(&t.0.join("locked"), 0o000);
    let program = t.0.join("main_runpath_ok");
    let locked = t.0.join("locked");
    let empty = t.0.join("empty");

    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no environment", vec![]),
        (
            // LD_LIBRARY_PATH is searched before DT_RUNPATH: EACCES, ENOENT, then found.
            "LD_LIBRARY_PATH through an unreadable directory",
            vec![(
                "LD_LIBRARY_PATH",
                format!("{}:{}", locked.display(), empty.display()),
            )],
        ),
        (
            // ld.so cannot open it: "cannot be preloaded ... ignored".
            "LD_PRELOAD of a file in an unreadable directory",
            vec![(
                "LD_PRELOAD",
                locked.join("libleaf.so").to_string_lossy().into_owned(),
            )],
        ),
    ];
    for (what, env) in &cases {
        for stage in ["exec", "loaded", "entry"] {
            let o = as_nobody(
                &t.0,
                env,
                &[
                    "compare",
                    "--no-aslr",
                    "--stage",
                    stage,
                    program.to_str().unwrap(),
                ],
            );
            assert_eq!(
                o.status.code(),
                Some(0),
                "{what}, {stage}: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
        let d = as_nobody(&t.0, env, &["deps", program.to_str().unwrap()]);
        assert!(d.status.success(), "{what}: deps: {}", stderr(&d));
        assert!(
            stdout(&d).contains(&*t.0.join("lib/libchain.so").to_string_lossy()),
            "{what}: deps: {}",
            stdout(&d)
        );
    }
}
