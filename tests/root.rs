//! `--root DIR`: a program planned inside another root is looked up there (an absolute path,
//! a name in PATH, or a path on this machine that lies inside DIR), and the paths in the
//! maps are the ones the process inside DIR sees. The truth is the real process run
//! chrooted into the tree by elfmap's own (static) `run`.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn sh(script: &str, dir: &Path) -> bool {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The tree, with /proc mounted in it (elfmap's `run` reads /proc/PID/maps); unmounted
/// and removed on drop.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.join("proc")).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tree holding ls and its libraries (ld.so reached through an absolute symbolic link,
/// as on Debian), the test program hello64pie, and elfmap.
fn tree() -> Option<Tree> {
    let chroot = Path::new("/usr/sbin/chroot");
    if !is_root() || !chroot.exists() || !Path::new("/usr/bin/ls").exists() {
        eprintln!("skipped: needs root, chroot and /usr/bin/ls");
        return None;
    }
    // One tree per test (the tests of this file run side by side).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let root =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("root-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let deps = run(["deps", "--json", "/usr/bin/ls"]);
    assert!(deps.status.success(), "{}", stderr(&deps));
    let j: serde_json::Value = serde_json::from_slice(&deps.stdout).unwrap();
    let mut script = String::from(
        "set -e\nmkdir -p usr/lib/x86_64-linux-gnu usr/bin etc lib64 work proc dev\n\
         mknod -m 666 dev/null c 1 3\nln -s usr/lib lib\n\
         ln -s usr/bin bin\ncp /usr/bin/ls usr/bin/\ncp /etc/ld.so.cache etc/\n",
    );
    for o in j["objects"].as_array().unwrap().iter().skip(1) {
        let real = o["realpath"].as_str().unwrap();
        script += &format!("cp {real} usr/lib/x86_64-linux-gnu/\n");
        let asked = Path::new(o["requested"].as_str().unwrap());
        let base = Path::new(real).file_name().unwrap();
        if asked.file_name() != Some(base) {
            script += &format!(
                "ln -sf {} usr/lib/x86_64-linux-gnu/{}\n",
                base.to_string_lossy(),
                asked.file_name().unwrap().to_string_lossy()
            );
        }
    }
    script += "ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 lib64/ld-linux-x86-64.so.2\n";
    script += &format!(
        "cp {} work/hello64pie\ncp {} elfmap\n",
        testdata().join("hello64pie").display(),
        env!("CARGO_BIN_EXE_elfmap")
    );
    assert!(sh(&script, &root), "building {}", root.display());
    let tree = Tree(root.clone());
    if !sh("mount -t proc proc proc", &root) {
        eprintln!("skipped: cannot mount /proc in the tree");
        return None;
    }
    Some(tree)
}

/// The real maps of `prog` run chrooted into `root` at `stage` (ASLR off).
fn chroot_run(root: &Path, stage: &str, prog: &str) -> String {
    let out = Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(["/elfmap", "run", "--no-aslr", "--stage", stage, prog])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "chroot run: {}", stderr(&out));
    stdout(&out)
}

fn plan(root: &Path, stage: &str, prog: &str) -> String {
    let out = elfmap()
        .args(["plan", "--no-aslr", "--stage", stage, "--root"])
        .arg(root)
        .arg(prog)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "plan: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn plan_under_root_is_the_chrooted_process() {
    let Some(tree) = tree() else {
        return;
    };
    let root = tree.0.clone();
    let host_path = root.join("usr/bin/ls");
    let host_path = host_path.to_string_lossy().into_owned();
    let mut checked = 0;
    for stage in ["exec", "loaded"] {
        for (prog, asked) in [
            ("/usr/bin/ls", "/usr/bin/ls"),
            ("/work/hello64pie", "/work/hello64pie"),
            // A name looked up in PATH inside the root, and the path on this machine: the
            // process inside is /usr/bin/ls all the same.
            ("/usr/bin/ls", "ls"),
            ("/usr/bin/ls", host_path.as_str()),
        ] {
            let real = chroot_run(&root, stage, prog);
            let got = plan(&root, stage, asked);
            assert_eq!(
                got, real,
                "plan --root {} --stage {stage} {asked}\nexpected (chrooted run):\n{real}\ngot:\n{got}",
                root.display()
            );
            assert!(!got.contains(&*root.to_string_lossy()), "{got}");
            checked += 1;
        }
    }
    // Nothing of the host's: the in-root interpreter, not the host's, was opened.
    let o = run([
        "plan",
        "--no-aslr",
        "--stage",
        "exec",
        "--root",
        &root.to_string_lossy(),
        "/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("under --root"), "{}", stderr(&o));
    eprintln!("{checked} plans under --root equal the chrooted process");
}

/// A root whose /etc/ld.so.cache is 512 MiB of garbage (sparse): ld.so maps it, finds no
/// magic it knows, unmaps it (`_dl_load_cache_lookup()`) and finds the libraries in the
/// default directories. The plan, made quickly, is the chrooted process.
#[test]
fn a_huge_garbage_cache_under_root() {
    let Some(tree) = tree() else {
        return;
    };
    let root = tree.0.clone();
    let f = std::fs::File::create(root.join("etc/ld.so.cache")).unwrap();
    f.set_len(512 << 20).unwrap();
    drop(f);
    // (At the entry stop the constructors' memory comes on top: compare's business.)
    for stage in ["exec", "loaded"] {
        let real = chroot_run(&root, stage, "/usr/bin/ls");
        let t0 = std::time::Instant::now();
        let got = plan(&root, stage, "/usr/bin/ls");
        let took = t0.elapsed();
        assert_eq!(
            got, real,
            "--stage {stage}: expected (chrooted run):\n{real}\ngot:\n{got}"
        );
        assert!(!got.contains("ld.so.cache"), "{got}");
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }
}
