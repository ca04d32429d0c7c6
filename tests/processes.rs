//! `run` and `compare` never leave a process behind: the traced child (and whatever it
//! forked) is killed and reaped on a timeout, when elfmap itself gets SIGTERM or SIGKILL,
//! when the program forks, exits at once, cannot be executed, crashes, or dies inside
//! execve. Each test runs a program built here for the purpose, from its own directory,
//! and then looks through /proc for any process still running a file of that directory.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("elfmap-proc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    /// A program whose library constructor runs `ctor` (before AT_ENTRY), and whose main
    /// returns 0.
    fn program(&self, ctor: &str) -> PathBuf {
        let d = &self.0;
        std::fs::write(
            d.join("ctor.c"),
            format!(
                "#include <signal.h>\n#include <stdlib.h>\n#include <unistd.h>\n\
                 __attribute__((constructor)) static void c(void) {{ {ctor} }}\n\
                 void ctor_dep(void) {{}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("main.c"),
            "void ctor_dep(void); int main(void) { ctor_dep(); return 0; }\n",
        )
        .unwrap();
        let ok = Command::new("gcc")
            .current_dir(d)
            .args(["-shared", "-fPIC", "-o", "libctor.so", "ctor.c"])
            .status()
            .unwrap()
            .success()
            && Command::new("gcc")
                .current_dir(d)
                .args([
                    "-o",
                    "prog",
                    "main.c",
                    "-L.",
                    "-lctor",
                    "-Wl,-rpath,$ORIGIN",
                ])
                .status()
                .unwrap()
                .success();
        assert!(ok, "gcc failed");
        d.join("prog")
    }
    /// Processes still running a file of this directory (their executable, or a command
    /// line naming it).
    fn survivors(&self) -> Vec<String> {
        let me = self.0.to_string_lossy().into_owned();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let exe = std::fs::read_link(e.path().join("exe"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            // elfmap's own command line names the program too: not a survivor.
            if exe.starts_with(&me) || (cmd.contains(&me) && !cmd.contains("elfmap")) {
                v.push(format!("pid {name}: {exe} {cmd}"));
            }
        }
        v
    }
    /// Nothing of ours is left running (a killed process may take a moment to go).
    fn assert_none_left(&self, what: &str) {
        let t0 = Instant::now();
        loop {
            let s = self.survivors();
            if s.is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{what}: left behind: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_stage(stage: &str, prog: &Path, timeout: &str) -> std::process::Output {
    run([
        "run",
        "--no-aslr",
        "--stage",
        stage,
        "--timeout",
        timeout,
        prog.to_str().unwrap(),
    ])
}

#[test]
fn timeout_kills_the_program_and_what_it_forked() {
    let d = Dir::new("fork-timeout");
    // The constructor forks; both processes then wait forever.
    let prog = d.program("if (fork() == 0) for (;;) pause(); for (;;) pause();");
    let t0 = Instant::now();
    let o = run_stage("entry", &prog, "1");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert!(t0.elapsed() < Duration::from_secs(10));
    d.assert_none_left("timeout with a forked child");
}

#[test]
fn the_program_forks_and_exits_at_once() {
    let d = Dir::new("fork-exit");
    let prog = d.program("if (fork() == 0) for (;;) pause(); _exit(3);");
    let o = run_stage("entry", &prog, "10");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("exited with status 3"),
        "{}",
        stderr(&o)
    );
    d.assert_none_left("a forked child of a program that exited");
}

#[test]
fn the_program_crashes() {
    let d = Dir::new("crash");
    let prog = d.program("*(volatile int *)0 = 1;");
    let o = run_stage("entry", &prog, "10");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SIGSEGV"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);
    d.assert_none_left("a crash");
}

#[test]
fn the_program_cannot_be_executed() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("noexec");
    let prog = d.program("");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o644)).unwrap();
    for cmd in ["run", "compare"] {
        let o = run([cmd, "--no-aslr", "--stage", "exec", prog.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(stderr(&o).contains("EACCES"), "{cmd}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1);
    }
    d.assert_none_left("a file without execute permission");
}

#[test]
fn sigterm_and_sigkill_to_elfmap_end_the_program() {
    let d = Dir::new("sigterm");
    let prog = d.program("for (;;) pause();");
    use nix::sys::signal::{kill, Signal};
    // (SIGINT is not tried: a shell starts background jobs with SIGINT ignored, and the
    // test would inherit that; SIGKILL cannot be caught or ignored.)
    for sig in [Signal::SIGTERM, Signal::SIGKILL] {
        for cmd in ["run", "compare"] {
            let mut child = elfmap()
                .args([cmd, "--no-aslr", "--stage", "entry", "--timeout", "60"])
                .arg(&prog)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Wait until the program is running (stopped in its constructor's loop).
            let t0 = Instant::now();
            while d.survivors().is_empty() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                !d.survivors().is_empty(),
                "{cmd}: the program never started"
            );
            kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success());
            d.assert_none_left(&format!("{cmd} after {sig}"));
        }
    }
}

#[test]
fn killed_inside_execve_leaves_nothing() {
    // p_filesz > p_memsz: the kernel fails after its point of no return.
    let d = Dir::new("execve-killed");
    let prog = d.program("");
    let mut b = std::fs::read(&prog).unwrap();
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(b[0x38..0x3a].try_into().unwrap()) as usize;
    let load = (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&o| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 1)
        .nth(1)
        .unwrap();
    let memsz = u64::from_le_bytes(b[load + 40..load + 48].try_into().unwrap());
    b[load + 32..load + 40].copy_from_slice(&(memsz + 0x2000).to_le_bytes());
    std::fs::write(&prog, &b).unwrap();
    let o = run_stage("exec", &prog, "10");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("point of no return") && stderr(&o).contains("SIGSEGV"),
        "{}",
        stderr(&o)
    );
    d.assert_none_left("a process killed in execve");
}
