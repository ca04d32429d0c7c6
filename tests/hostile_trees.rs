//! Hostile dependency trees: libraries that need each other (a cycle), a chain 120 deep, a
//! program with 1,500 DT_NEEDED entries, symbolic-link loops. ld.so copes with all of them; so must the model:
//! `plan` equals the real process, quickly. The trees are built here with gcc, in a
//! temporary directory. (A 512 MiB garbage /etc/ld.so.cache: tests/root.rs.)

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use util::*;

struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let d = std::env::temp_dir().join(format!("elfmap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("lib")).unwrap();
        Tree(d)
    }

    /// `gcc args...` in the tree's directory.
    fn gcc(&self, args: &[&str]) {
        let o = Command::new("gcc")
            .current_dir(&self.0)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "gcc {args:?}: {}", stderr(&o));
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }

    /// A shared library `lib/libNAME.so` (soname libNAME.so) from `src`, needing `needs`.
    fn lib(&self, name: &str, src: &str, needs: &[&str]) {
        self.write(&format!("{name}.c"), src);
        let out = format!("lib/lib{name}.so");
        let soname = format!("-Wl,-soname,lib{name}.so");
        let mut args = vec![
            "-shared",
            "-fPIC",
            "-O1",
            "-o",
            &out,
            &soname,
            "-Wl,--no-as-needed",
            // DT_RUNPATH serves an object's own DT_NEEDED only: each library has its own.
            "-Wl,-rpath,$ORIGIN",
            "-Llib",
        ];
        let c = format!("{name}.c");
        args.push(&c);
        let libs: Vec<String> = needs.iter().map(|n| format!("-l{n}")).collect();
        args.extend(libs.iter().map(String::as_str));
        self.gcc(&args);
    }

    /// The program `prog` from `main.c`, linked with `-Llib` and `libs`, RUNPATH $ORIGIN/lib.
    fn program(&self, main: &str, libs: &[String]) -> PathBuf {
        self.write("main.c", main);
        let mut args: Vec<&str> = vec![
            "-O1",
            "-o",
            "prog",
            "main.c",
            "-Wl,--no-as-needed",
            "-Llib",
            "-Wl,-rpath,$ORIGIN/lib",
        ];
        args.extend(libs.iter().map(String::as_str));
        self.gcc(&args);
        self.0.join("prog")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// plan equals the real process at the loaded and entry stops, both layouts.
fn plan_equals_run(prog: &Path) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for stage in ["loaded", "entry"] {
        for layout in ["flexible", "legacy"] {
            checked += 1;
            let opts = ["--no-aslr", "--stage", stage, "--layout", layout];
            if let Some(f) = plan_vs_run(&opts, prog, &[]) {
                failures.push(f);
            }
        }
    }
    assert_no_failures(&prog.display().to_string(), checked, &failures);
}

/// Two libraries that need each other, a third that needs both: ld.so loads each once
/// (breadth first, `_dl_map_object_deps()`), and the model must not loop.
#[test]
fn a_dependency_cycle() {
    let t = Tree::new("cycle");
    t.lib("b", "int b(void) { return 2; }\n", &[]);
    t.lib(
        "a",
        "int b(void);\nint a(void) { return b() + 1; }\n",
        &["b"],
    );
    // libb again, now needing liba: a cycle.
    t.lib("b", "int b(void) { return 2; }\n", &["a"]);
    t.lib(
        "x",
        "int a(void);\nint x(void) { return a(); }\n",
        &["a", "b"],
    );
    let prog = t.program(
        "int x(void);\nint main(void) { return x() == 3 ? 0 : 1; }\n",
        &["-lx".into(), "-la".into(), "-lb".into()],
    );
    let o = run(["deps".as_ref(), prog.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tree = stdout(&o);
    assert!(tree.contains("liba.so") && tree.contains("libb.so") && tree.contains("libx.so"));
    plan_equals_run(&prog);
}

/// A chain 120 libraries deep: each needs the next.
#[test]
fn a_deep_chain() {
    let t = Tree::new("chain");
    const N: usize = 120;
    for i in (0..N).rev() {
        let next = format!("l{}", i + 1);
        let needs: Vec<&str> = if i + 1 < N { vec![&next] } else { vec![] };
        t.lib(
            &format!("l{i}"),
            &format!("int f{i}(void) {{ return {i}; }}\n"),
            &needs,
        );
    }
    let prog = t.program(
        "int f0(void);\nint main(void) { return f0(); }\n",
        &["-ll0".into()],
    );
    let t0 = Instant::now();
    let o = run(["plan", "--no-aslr", "--stage", "loaded"]
        .iter()
        .map(|s| s.as_ref())
        .chain([prog.as_os_str()]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Every library of the chain is mapped.
    let maps = stdout(&o);
    for i in 0..N {
        assert!(
            maps.contains(&format!("/libl{i}.so\n")),
            "libl{i}.so is not in the plan"
        );
    }
    plan_equals_run(&prog);
}

/// A program with 1,500 DT_NEEDED entries (copies of one library without a soname, each a
/// file of its own): ld.so maps every one.
#[test]
fn thousands_of_needed_libraries() {
    let t = Tree::new("wide");
    const N: usize = 1500;
    t.write("one.c", "int one = 1;\n");
    t.gcc(&["-shared", "-fPIC", "-O1", "-o", "one.so", "one.c"]);
    let mut libs = Vec::new();
    for i in 0..N {
        std::fs::copy(t.0.join("one.so"), t.0.join(format!("lib/libw{i}.so"))).unwrap();
        libs.push(format!("-lw{i}"));
    }
    let prog = t.program("int main(void) { return 0; }\n", &libs);
    let o = run(["deps", "--json"]
        .iter()
        .map(|s| s.as_ref())
        .chain([prog.as_os_str()]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = j.to_string();
    assert!(text.contains("libw0.so") && text.contains(&format!("libw{}.so", N - 1)));
    let t0 = Instant::now();
    let o = run(["plan", "--no-aslr", "--stage", "loaded"]
        .iter()
        .map(|s| s.as_ref())
        .chain([prog.as_os_str()]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Four lines per library at least (its segments), plus the program's and ld.so's.
    assert!(stdout(&o).lines().count() > 4 * N);
    let opts = ["--no-aslr", "--stage", "loaded"];
    if let Some(f) = plan_vs_run(&opts, &prog, &[]) {
        panic!("{}", &f[..f.len().min(4000)]);
    }
}

/// Symbolic links that point at each other: a library name on LD_LIBRARY_PATH that is a
/// loop (ld.so's open() gets ELOOP and it goes on to DT_RUNPATH) and a program that is one
/// (execve's ELOOP): the plan equals the real process, or says what execve says.
#[test]
fn symlink_loops() {
    let t = Tree::new("loops");
    let loops = t.0.join("lib");
    std::os::unix::fs::symlink("libchain2.so", loops.join("libchain.so")).unwrap();
    std::os::unix::fs::symlink("libchain.so", loops.join("libchain2.so")).unwrap();
    let prog = testdata().join("main_runpath_ok");
    let env = [("LD_LIBRARY_PATH", loops.as_os_str())];
    let mut failures = Vec::new();
    for stage in ["exec", "loaded", "entry"] {
        let opts = ["--no-aslr", "--stage", stage];
        if let Some(f) = plan_vs_run_in(&opts, &prog, None, &env) {
            failures.push(f);
        }
    }
    assert_no_failures("a library name that is a symlink loop", 3, &failures);
    let lp = t.0.join("loopprog");
    std::os::unix::fs::symlink("loopprog", &lp).unwrap();
    let p = run(["plan".as_ref(), lp.as_os_str()]);
    assert_eq!(p.status.code(), Some(2));
    assert!(stderr(&p).contains("symbolic links"), "{}", stderr(&p));
    let r = run(["run".as_ref(), lp.as_os_str()]);
    assert!(stderr(&r).contains("ELOOP"), "{}", stderr(&r));
}
