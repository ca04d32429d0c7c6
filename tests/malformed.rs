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
    assert_clean_error("plan", &text, "not an ELF file");

    let full = std::fs::read(testdata().join("hello64pie")).unwrap();
    let trunc = d.join("trunc-header");
    std::fs::write(&trunc, &full[..20]).unwrap();
    assert_clean_error("plan", &trunc, "truncated");

    let trunc_ph = d.join("trunc-phdrs");
    std::fs::write(&trunc_ph, &full[..70]).unwrap();
    assert_clean_error("plan", &trunc_ph, "truncated");

    let empty = d.join("empty");
    std::fs::write(&empty, b"").unwrap();
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
    let s = b"/etc/passwd\0";
    e.0[off..off + s.len()].copy_from_slice(s);
    cases.push((e.write(&d, "interp-not-elf"), "ELIBBAD"));

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
    let l = e.phdrs(PT_LOAD)[1];
    let memsz = e.u64(l + 0x28);
    e.set_u64(l + 0x20, memsz + 0x1000); // p_filesz > p_memsz
    cases.push((e.write(&d, "filesz-gt-memsz"), "p_filesz"));

    let mut e = Elf64::load(&src);
    let l = e.phdrs(PT_LOAD)[1];
    let off1 = e.u64(l + 8);
    e.set_u64(l + 8, off1 + 8); // p_offset no longer congruent with p_vaddr
    cases.push((e.write(&d, "misaligned-offset"), "modulo the page size"));

    for (p, needle) in &cases {
        let err = assert_clean_error("plan", p, needle);
        assert!(err.contains("the kernel would refuse"), "{err}");
        // The real execve refuses it too.
        assert_clean_error("run", p, "");
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
