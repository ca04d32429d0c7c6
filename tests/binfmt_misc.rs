//! binfmt_misc: execve asks it before the ELF and script handlers (`insert_binfmt()`), and
//! a registration that matches the file (magic under a mask at an offset, or the name's
//! extension) runs its interpreter with argv = interpreter, name, [argv[0] with flag P],
//! argv[1..]. Entries are registered here for the test (root; binfmt_misc mounted if it is
//! not), and the plan is compared with the real process at both stops, the initial stack
//! pointer included (it depends on every argument).

mod util;

use std::path::{Path, PathBuf};
use std::process::Output;

use util::*;

const DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The registrations made by one test, removed on drop.
struct Registered(Vec<String>);

impl Registered {
    fn add(&mut self, name: &str, rule: &str) {
        std::fs::write(Path::new(DIR).join("register"), format!(":{name}:{rule}\n"))
            .unwrap_or_else(|e| panic!("register {name}: {e}"));
        self.0.push(name.to_string());
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::fs::write(Path::new(DIR).join(n), "-1");
        }
    }
}

/// binfmt_misc mounted and enabled, or `false` (not root, no binfmt_misc in this kernel).
fn available() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    if !Path::new(DIR).join("register").exists() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc", DIR])
            .status();
    }
    std::fs::read_to_string(Path::new(DIR).join("status")).is_ok_and(|s| s.trim() == "enabled")
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn elfmap_args(cmd: &str, stage: &str, extra: &[&str], program: &Path, args: &[&str]) -> Output {
    let mut a = vec![cmd, "--no-aslr", "--stage", stage];
    a.extend_from_slice(extra);
    a.push(program.to_str().unwrap());
    a.extend_from_slice(args);
    run(&a)
}

/// The plan equals the real process at exec and loaded, and at exec the initial stack
/// pointer too.
fn same_as_real(what: &str, program: &Path, args: &[&str]) {
    for stage in ["exec", "loaded"] {
        let plan = elfmap_args("plan", stage, &[], program, args);
        let real = elfmap_args("run", stage, &[], program, args);
        assert!(
            real.status.success(),
            "{what} {stage}: run: {}",
            stderr(&real)
        );
        assert!(
            plan.status.success(),
            "{what} {stage}: plan: {}",
            stderr(&plan)
        );
        assert_same(&format!("{what} {stage}"), &stdout(&real), &stdout(&plan));
    }
    let json = |o: Output| -> serde_json::Value { serde_json::from_slice(&o.stdout).unwrap() };
    let plan = json(elfmap_args(
        "plan",
        "exec",
        &["--format", "json"],
        program,
        args,
    ));
    let real = json(elfmap_args("run", "exec", &["--json"], program, args));
    assert_eq!(
        plan["start_stack"], real["start_stack"],
        "{what}: the stack pointer"
    );
}

#[test]
fn registered_interpreters_run_as_the_kernel_runs_them() {
    if !available() {
        eprintln!("skipped: binfmt_misc cannot be used here (not root, or not in this kernel)");
        return;
    }
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("elfmap-binfmt-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let hello = testdata().join("hello64pie");
    let hello32 = testdata().join("hello32");
    let mut reg = Registered(Vec::new());
    // A magic of its own (six bytes from the pid), no flags.
    let magic = format!("EM{:04x}", id & 0xffff);
    let hex: String = magic.bytes().map(|b| format!("\\x{b:02x}")).collect();
    reg.add(
        &format!("elfmap-m-{id}"),
        &format!("M::{hex}::{}:", hello.display()),
    );
    // The same magic at offset 8 under a mask that ignores its last byte, flag P.
    let masked = format!("EN{:04x}", id & 0xffff);
    let mhex: String = masked.bytes().map(|b| format!("\\x{b:02x}")).collect();
    reg.add(
        &format!("elfmap-p-{id}"),
        &format!(
            "M:8:{mhex}:\\xff\\xff\\xff\\xff\\xff\\x00:{}:P",
            hello32.display()
        ),
    );
    // An extension, handing over to a #! script.
    let ext = format!("emx{id}");
    let script = file(
        &dir,
        "interp.sh",
        format!("#!{} -x\n", hello.display()).as_bytes(),
    );
    reg.add(
        &format!("elfmap-e-{id}"),
        &format!("E::{ext}::{}:", script.display()),
    );

    let m = file(
        &dir,
        "by-magic",
        format!("{magic} and then anything\n").as_bytes(),
    );
    same_as_real("magic", &m, &["one", "two"]);
    let mut off = b"........".to_vec();
    off.extend_from_slice(&masked.as_bytes()[..5]);
    off.push(b'?');
    let p = file(&dir, "by-masked-magic", &off);
    same_as_real("masked magic at 8, P", &p, &["arg"]);
    let e = file(&dir, &format!("prog.{ext}"), b"not an ELF file\n");
    same_as_real("extension, then #!", &e, &[]);

    // Flag O (the binary passed as AT_EXECFD) is not modelled: said so, exit 2.
    let omagic = format!("EO{:04x}", id & 0xffff);
    let ohex: String = omagic.bytes().map(|b| format!("\\x{b:02x}")).collect();
    reg.add(
        &format!("elfmap-o-{id}"),
        &format!("M::{ohex}::{}:O", hello.display()),
    );
    let o = file(&dir, "by-magic-o", omagic.as_bytes());
    let plan = elfmap_args("plan", "exec", &[], &o, &[]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(stderr(&plan).contains("AT_EXECFD"), "{}", stderr(&plan));
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
}
