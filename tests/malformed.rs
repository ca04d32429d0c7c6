//! Bad input: every case gives one line `elfmap: <path>: <problem>` on stderr, exit code 2,
//! no panic and nothing on stdout. Malformed files are made by mutating a real test program.
//! Where the kernel refuses to exec the file, `run` (the real execve) must fail too.

mod util;

use std::path::{Path, PathBuf};

use util::*;

struct Elf64(Vec<u8>);

impl Elf64 {
    fn load(p: &Path) -> Elf64 {
        Elf64(std::fs::read(p).unwrap())
    }
    fn u16(&self, o: usize) -> u64 {
        u16::from_le_bytes(self.0[o..o + 2].try_into().unwrap()) as u64
    }
    fn u64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.0[o..o + 8].try_into().unwrap())
    }
    fn set_u16(&mut self, o: usize, v: u16) {
        self.0[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set_u64(&mut self, o: usize, v: u64) {
        self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// Offsets of the program headers of type `t`.
    fn phdrs(&self, t: u32) -> Vec<usize> {
        let (off, num) = (self.u64(0x20) as usize, self.u16(0x38) as usize);
        (0..num)
            .map(|i| off + i * 56)
            .filter(|&o| u32::from_le_bytes(self.0[o..o + 4].try_into().unwrap()) == t)
            .collect()
    }
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, &self.0).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("elfmap-malformed-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `cmd` on `path` fails cleanly: exit 2, one stderr line naming the file, empty stdout.
fn assert_clean_error(cmd: &str, path: &Path, needle: &str) -> String {
    let o = run([cmd, "--no-aslr", "--stage", "exec", path.to_str().unwrap()]);
    let err = stderr(&o);
    let what = format!(
        "{cmd} {}: exit {:?}, stderr {err:?}",
        path.display(),
        o.status.code()
    );
    assert_eq!(o.status.code(), Some(2), "{what}");
    assert!(o.stdout.is_empty(), "{what}: stdout {:?}", stdout(&o));
    assert!(!err.contains("panicked"), "{what}");
    assert_eq!(err.lines().count(), 1, "{what}");
    assert!(err.starts_with("elfmap: "), "{what}");
    assert!(
        err.contains(path.file_name().unwrap().to_str().unwrap()),
        "{what}: the message must name the file"
    );
    assert!(err.contains(needle), "{what}: expected {needle:?}");
    err
}

#[test]
fn not_elf_truncated_directory_missing() {
    let d = tempdir("basic");
    let text = d.join("script.txt");
    std::fs::write(&text, "hello, world\n").unwrap();
    assert_clean_error("plan", &text, "EACCES"); // not executable
    std::fs::set_permissions(&text, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_clean_error("plan", &text, "not an ELF file");

    let full = std::fs::read(testdata().join("hello64pie")).unwrap();
    // The kernel reads a short file's header as zeros past its end: no program headers.
    let trunc = d.join("trunc-header");
    std::fs::write(&trunc, &full[..20]).unwrap();
    std::fs::set_permissions(&trunc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_clean_error("plan", &trunc, "ENOEXEC");

    let trunc_ph = d.join("trunc-phdrs");
    std::fs::write(&trunc_ph, &full[..70]).unwrap();
    std::fs::set_permissions(
        &trunc_ph,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_clean_error("plan", &trunc_ph, "past the end of the file");

    let empty = d.join("empty");
    std::fs::write(&empty, b"").unwrap();
    std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_clean_error("plan", &empty, "not an ELF file");

    assert_clean_error("plan", &d, "is a directory");
    assert_clean_error("plan", &d.join("no-such-file"), "No such file");
    assert_clean_error("plan", &text.join("below-a-file"), "Not a directory");
    assert_clean_error("run", &d.join("no-such-file"), "No such file");
}

#[test]
fn kernel_refusals_agree_with_execve() {
    let d = tempdir("refusals");
    let src = testdata().join("hello64pie");
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();

    let mut e = Elf64::load(&src);
    e.set_u16(0x12, 183); // EM_AARCH64
    cases.push((e.write(&d, "wrong-machine"), "wrong architecture"));

    let mut e = Elf64::load(&src);
    let ip = e.phdrs(PT_INTERP)[0];
    let off = e.u64(ip + 8) as usize;
    let s = b"/lib/ld-foo.so\0";
    e.0[off..off + s.len()].copy_from_slice(s);
    cases.push((
        e.write(&d, "missing-interp"),
        "interpreter /lib/ld-foo.so cannot be opened",
    ));

    let mut e = Elf64::load(&src);
    // An executable file that is not ELF (a shell script).
    let s = b"/usr/bin/ldd\0";
    e.0[off..off + s.len()].copy_from_slice(s);
    cases.push((e.write(&d, "interp-not-elf"), "ELIBBAD"));

    let mut e = Elf64::load(&src);
    let s = b"/etc/passwd\0"; // no execute permission: open_exec() refuses it
    e.0[off..off + s.len()].copy_from_slice(s);
    cases.push((e.write(&d, "interp-not-executable"), "EACCES"));

    let mut e = Elf64::load(&src);
    let ip = e.phdrs(PT_INTERP)[0];
    let len = e.u64(ip + 0x20) as usize;
    e.0[off + len - 1] = b'x'; // no NUL
    cases.push((e.write(&d, "interp-no-nul"), "NUL"));

    let mut e = Elf64::load(&src);
    e.set_u16(0x36, 0);
    cases.push((e.write(&d, "bad-phentsize"), "e_phentsize"));

    let mut e = Elf64::load(&src);
    e.set_u16(0x38, 0);
    cases.push((e.write(&d, "no-phdrs"), "no program headers"));

    let mut e = Elf64::load(&src);
    e.set_u16(0x10, 1); // ET_REL
    cases.push((e.write(&d, "relocatable"), "ET_REL"));

    let mut e = Elf64::load(&src);
    e.0[0] = b'X'; // no magic: no handler takes it
    cases.push((e.write(&d, "no-magic"), "ENOEXEC"));

    let mut e = Elf64::load(&src);
    e.set_u16(0x38, 1171); // 65,576 bytes of program headers: more than load_elf_phdrs() reads
    cases.push((e.write(&d, "too-many-phdrs"), "program headers"));

    let mut e = Elf64::load(&src);
    e.set_u16(0x12, 3); // EM_386: the compat handler reads it as a 32-bit file
    cases.push((e.write(&d, "em386-in-64bit-layout"), "ENOEXEC"));

    let mut e = Elf64::load(&src);
    let s = b"\0";
    e.0[off..off + s.len()].copy_from_slice(s); // an empty PT_INTERP string
    cases.push((e.write(&d, "interp-empty"), "EACCES"));

    let mut e = Elf64::load(&src);
    let s = b"/usr/lib32/ld-linux.so.2\0"; // a 32-bit interpreter for a 64-bit program
    if Path::new("/usr/lib32/ld-linux.so.2").exists() && s.len() <= len {
        e.0[off..off + s.len()].copy_from_slice(s);
        cases.push((e.write(&d, "interp-wrong-arch"), "ELIBBAD"));
    }

    for (p, needle) in &cases {
        let err = assert_clean_error("plan", p, needle);
        assert!(err.contains("the kernel would refuse"), "{err}");
        // The real execve refuses it too, with the same errno.
        let errno = err
            .rsplit('(')
            .next()
            .unwrap()
            .trim_end_matches([')', '\n']);
        let real = assert_clean_error("run", p, "execve failed");
        assert!(real.contains(errno), "plan: {err}\nrun: {real}");
    }
}

/// Files the kernel takes past the point of no return (`begin_new_exec()`) and then fails
/// on: the process is killed with SIGSEGV before its first instruction. `plan` says so
/// (exit 2, one line), and `run` sees exactly that.
#[test]
fn killed_after_the_point_of_no_return() {
    let d = tempdir("killed");
    let src = testdata().join("hello64pie");
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();

    let mut e = Elf64::load(&src);
    let l = e.phdrs(PT_LOAD)[1];
    let memsz = e.u64(l + 0x28);
    e.set_u64(l + 0x20, memsz + 0x1000); // p_filesz > p_memsz: checked after elf_load()
    cases.push((e.write(&d, "filesz-gt-memsz"), "p_filesz"));

    let mut e = Elf64::load(&src);
    let l = e.phdrs(PT_LOAD)[1];
    let off1 = e.u64(l + 8);
    e.set_u64(l + 8, off1 + 8); // p_offset no longer congruent with p_vaddr: vm_mmap() EINVAL
    cases.push((e.write(&d, "misaligned-offset"), "not page-aligned"));

    let mut e = Elf64::load(&testdata().join("static64"));
    e.set_u64(0x18, 0xffff_ffff_ffff_0000); // e_entry above TASK_SIZE, no interpreter
    cases.push((e.write(&d, "entry-above-task-size"), "entry point"));

    let mut e = Elf64::load(&src);
    let l = *e.phdrs(PT_LOAD).last().unwrap();
    e.set_u64(l + 0x28, 1 << 46); // a bss of 64 TiB: past TASK_SIZE
    cases.push((e.write(&d, "huge-bss"), "elf_map"));

    // A PIE whose first PT_LOAD's p_vaddr is past TASK_SIZE: load_bias wraps it back into
    // place and it is mapped, but the check after elf_load() looks at p_vaddr as it is in
    // the file (found by `make differential` on /usr/bin/true).
    let t = Path::new("/usr/bin/true");
    if t.exists() {
        let mut e = Elf64::load(t);
        let l = e.phdrs(PT_LOAD)[0];
        e.set_u64(l + 0x10, 0xffff_ffff_ffff_f000);
        cases.push((
            e.write(&d, "vaddr-past-task-size"),
            "p_vaddr 0xfffffffffffff000",
        ));
    }

    // The data segment's file part cut off: clearing its bss tail faults (padzero()).
    let mut e = Elf64::load(&testdata().join("bigbss64"));
    let l = *e.phdrs(PT_LOAD).last().unwrap();
    let end = (e.u64(l + 8) + e.u64(l + 0x20)) as usize;
    if e.u64(l + 0x28) > e.u64(l + 0x20) && !end.is_multiple_of(4096) {
        e.0.truncate(end / 4096 * 4096);
        cases.push((e.write(&d, "truncated-data"), "padzero"));
    }

    for (p, needle) in &cases {
        let err = assert_clean_error("plan", p, needle);
        assert!(
            err.contains("execve fails after the point of no return") && err.contains("SIGSEGV"),
            "{err}"
        );
        assert_clean_error(
            "run",
            p,
            "execve failed after the point of no return: the process was killed with SIGSEGV",
        );
    }
}

/// What the kernel never reads: `e_ident[EI_CLASS]`, `EI_DATA`, `EI_VERSION`, `EI_OSABI`.
/// A parser refuses such files; the kernel runs them, and so the plan must be the real maps.
/// EM_486 is taken by the compat handler like EM_386.
#[test]
fn ident_bytes_the_kernel_ignores() {
    let d = tempdir("ident");
    let mut cases = Vec::new();
    for (name, i, v) in [
        ("class-32", 4usize, 1u8),
        ("class-0", 4, 0),
        ("data-big-endian", 5, 2),
        ("version-9", 6, 9),
        ("osabi-freebsd", 7, 9),
    ] {
        let mut e = Elf64::load(&testdata().join("hello64pie"));
        e.0[i] = v;
        cases.push(e.write(&d, name));
    }
    let mut e = Elf64::load(&testdata().join("hello32"));
    e.set_u16(0x12, 6); // EM_486
    cases.push(e.write(&d, "hello32-em486"));
    let mut e = Elf64::load(&testdata().join("hello32"));
    e.0[4] = 2; // says ELFCLASS64, is read as 32-bit (EM_386)
    cases.push(e.write(&d, "hello32-class64"));
    for p in &cases {
        let o = run([
            "compare",
            "--no-aslr",
            "--stage",
            "exec",
            p.to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}{}",
            p.display(),
            stdout(&o),
            stderr(&o)
        );
    }
}

#[test]
fn hostile_program_header_counts_do_not_panic() {
    let d = tempdir("hostile");
    let src = testdata().join("hello64pie");
    for (i, (phoff, phnum)) in [(u64::MAX - 8, 3u16), (0x40, 0xffff), (1 << 40, 1)]
        .iter()
        .enumerate()
    {
        let mut e = Elf64::load(&src);
        e.set_u64(0x20, *phoff);
        e.set_u16(0x38, *phnum);
        let p = e.write(&d, &format!("hostile-{i}"));
        assert_clean_error("plan", &p, "");
    }
    // Every prefix of a real program: no panic, exit 0 or 2.
    let full = std::fs::read(&src).unwrap();
    for n in (0..full.len().min(4096)).step_by(7) {
        let p = d.join("prefix");
        std::fs::write(&p, &full[..n]).unwrap();
        let o = run(["plan", "--no-aslr", "--stage", "exec", p.to_str().unwrap()]);
        assert!(
            !stderr(&o).contains("panicked"),
            "prefix {n}: {}",
            stderr(&o)
        );
        assert!(matches!(o.status.code(), Some(0) | Some(2)), "prefix {n}");
    }
}

#[test]
fn usage_errors() {
    let o = run(["plan", "--no-aslr"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(["plan", "--stack-limit", "lots", "/usr/bin/ls"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(["plan", "no-such-command-anywhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not found in PATH"));
}

/// Hostile trees: a symlink loop as the program and as its interpreter, and a sparse
/// 8 GiB program file (only headers are read: bounded time, a clear message or the maps).
#[test]
fn symlink_loops_and_a_sparse_huge_program() {
    use std::os::unix::fs::symlink;
    let d = tempdir("trees");
    let (a, b) = (d.join("loop-a"), d.join("loop-b"));
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    symlink(&b, &a).unwrap();
    symlink(&a, &b).unwrap();
    assert_clean_error("plan", &a, "Too many levels of symbolic links");
    assert_clean_error("run", &a, "ELOOP");

    // PT_INTERP naming the loop: execve says ELOOP, and so does the plan.
    let mut e = Elf64::load(&testdata().join("hello64pie"));
    let ip = e.phdrs(PT_INTERP)[0];
    let (off, len) = (e.u64(ip + 8) as usize, e.u64(ip + 0x20) as usize);
    let name = format!("{}\0", a.display());
    if name.len() <= len {
        e.0[off..off + name.len()].copy_from_slice(name.as_bytes());
        let p = e.write(&d, "interp-loop");
        assert_clean_error("plan", &p, "ELOOP");
        assert_clean_error("run", &p, "ELOOP");
    }

    let big = Elf64::load(&testdata().join("hello64pie")).write(&d, "sparse-8g");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let t0 = std::time::Instant::now();
    let o = run([
        "compare",
        "--no-aslr",
        "--stage",
        "exec",
        big.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(["plan", "--no-aslr", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    let _ = std::fs::remove_file(&big);
}

/// Every input the fuzzers found a crash with (fuzz/regressions/<target>-<what>) is replayed
/// the way its target feeds it, through the command: an answer or one line of error, never a
/// panic. plan_library: the bytes are a library preloaded (LD_PRELOAD) into a test program;
/// explain_maps: a maps file given to `explain --maps --no-files`, as text and as SVG.
#[test]
fn fuzz_regressions_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let tmp = std::env::temp_dir().join(format!("elfmap-regress-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut replayed = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let f = e.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&f).unwrap();
        let out = if name.starts_with("plan_library-") {
            let lib = tmp.join("libfuzz.so");
            std::fs::write(&lib, &data).unwrap();
            elfmap()
                .env("LD_PRELOAD", &lib)
                .args(["plan", "--no-aslr", "--stage", "loaded"])
                .arg(testdata().join("hello64pie"))
                .output()
                .unwrap()
        } else if name.starts_with("plan_exec-") {
            let prog = tmp.join("program");
            std::fs::write(&prog, &data).unwrap();
            elfmap()
                .args(["plan", "--no-aslr", "--stage", "exec"])
                .arg(&prog)
                .output()
                .unwrap()
        } else if name.starts_with("explain_maps-") {
            let maps = tmp.join("pasted.maps");
            std::fs::write(&maps, &data).unwrap();
            // The text, then the picture (the target makes both, and JSON).
            let text = elfmap()
                .args(["explain", "--no-files", "--maps"])
                .arg(&maps)
                .output()
                .unwrap();
            assert!(
                matches!(text.status.code(), Some(0 | 2)),
                "{name}: {:?} {}",
                text.status,
                stderr(&text)
            );
            elfmap()
                .args(["explain", "--no-files", "--format", "svg", "--maps"])
                .arg(&maps)
                .output()
                .unwrap()
        } else {
            continue;
        };
        replayed += 1;
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{name}: {:?} {}",
            out.status,
            stderr(&out)
        );
        assert!(
            stderr(&out).lines().count() <= 1,
            "{name}: {}",
            stderr(&out)
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(replayed >= 1);
}

/// `bprm_stack_limits()`: with a 256 KiB stack limit the strings may take ARG_MAX (128 KiB)
/// with their pointers. The longest argument the real execve takes (found by bisection
/// with `run`) is planned, one byte more is E2BIG for both, with one more argument too.
#[test]
fn argument_strings_past_the_stack_limit_are_e2big() {
    let ok = |cmd: &str, n: usize, extra: &[String]| -> bool {
        let mut c = elfmap();
        c.args([
            cmd,
            "--no-aslr",
            "--stack-limit",
            "262144",
            "--stage",
            "exec",
            "/usr/bin/true",
        ])
        .arg("y".repeat(n))
        .args(extra);
        let o = c.output().unwrap();
        if o.status.code() == Some(2) {
            assert!(stderr(&o).contains("E2BIG"), "{cmd} {n}: {}", stderr(&o));
            assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        }
        o.status.success()
    };
    for extra in [vec![], vec!["z".repeat(60_000)]] {
        let (mut lo, mut hi) = (1usize, 131_071usize);
        while lo < hi {
            let m = (lo + hi).div_ceil(2);
            if ok("run", m, &extra) {
                lo = m;
            } else {
                hi = m - 1;
            }
        }
        assert!(lo > 1000 && lo < 131_071, "{lo}");
        assert!(ok("plan", lo, &extra), "the real execve takes {lo} bytes");
        assert!(
            !ok("plan", lo + 1, &extra),
            "the real execve refuses {} bytes",
            lo + 1
        );
        assert!(!ok("run", lo + 1, &extra));
    }
}
