//! `elfmap explain`: where each section, symbol and string lands, checked against binutils
//! (`readelf -S`, `nm`) for the link-time values and against the real process for the
//! run-time addresses: at the loaded stop, the bytes at a symbol's or a string's predicted
//! address are the bytes the file holds for it. No address is typed into these tests.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use elfmap::explain::Explanation;
use elfmap::observe::{self, Observation, RunRequest};
use elfmap::{Config, HostFacts, Stage, Target};
use util::*;

/// A plan of `program` at `stage` with ASLR off (3 GiB for a 32-bit program when asked),
/// its explanation, and the request that runs it the same way.
fn explain(program: &Path, stage: Stage, addr_limit_3gb: bool) -> (Explanation, RunRequest) {
    let machine = HostFacts::detect();
    let target = Target::resolve(program.as_os_str(), &[]).unwrap();
    let cfg = Config {
        stage,
        no_aslr: true,
        layout: None,
        addr_limit_3gb,
        rlimit_stack: None,
        rlimit_as: None,
        seed: None,
        draws: None,
        root: None,
        env: None,
        ledger: true,
        remember: false,
        kernel: None,
    };
    let plan = elfmap::plan(&target, &cfg, &machine).unwrap();
    let x = Explanation::of(&plan, elfmap::render::maps::lines(&plan.mm), None);
    let req = RunRequest {
        filename: target.filename.clone(),
        argv: target.argv.clone(),
        envp: cfg.envp(&machine),
        personality: cfg.personality(&machine).unwrap(),
        rlimit_stack: None,
        rlimit_as: None,
        stage,
        timeout: Duration::from_secs(20),
        peek: Vec::new(),
    };
    (x, req)
}

/// Run `req` reading `peek` at the stop.
fn observe_with(mut req: RunRequest, peek: Vec<(u64, u64)>) -> Observation {
    req.peek = peek;
    observe::run(&req).unwrap()
}

/// One section as `readelf -SW` lists it.
#[derive(Debug)]
struct ReadelfSection {
    name: String,
    addr: u64,
    offset: u64,
    size: u64,
    alloc: bool,
    nobits: bool,
}

/// `readelf -SW file`.
fn readelf_sections(file: &Path) -> Vec<ReadelfSection> {
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -SW {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut v = Vec::new();
    for line in text.lines() {
        // "  [ 1] .interp  PROGBITS  0000000000000318 000318 00001c 00   A  0   0  1"
        let Some(rest) = line.trim_start().strip_prefix('[') else {
            continue;
        };
        let Some((_, rest)) = rest.split_once(']') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 7 || f[0] == "Name" || f[1] == "NULL" {
            continue;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
        // Flags are the field after ES; some sections have none ("" collapses).
        let flags = if f.len() >= 10 { f[6] } else { "" };
        v.push(ReadelfSection {
            name: f[0].to_string(),
            addr: hex(f[2]),
            offset: hex(f[3]),
            size: hex(f[4]),
            alloc: flags.contains('A'),
            nobits: f[1] == "NOBITS",
        });
    }
    assert!(
        !v.is_empty(),
        "readelf found no sections in {}",
        file.display()
    );
    v
}

/// The value of `name` as `nm` (or `nm -D`) prints it: the defined entries.
fn nm_values(file: &Path, dynamic: bool, name: &str) -> Vec<u64> {
    let mut cmd = Command::new("nm");
    if dynamic {
        cmd.arg("-D");
    }
    let out = cmd.arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2].split('@').next() == Some(name))
                .then(|| u64::from_str_radix(f[0], 16).ok())
                .flatten()
        })
        .collect()
}

/// The file bytes of link-time address `vaddr` (through the section holding it).
fn file_bytes(file: &Path, sections: &[ReadelfSection], vaddr: u64, len: usize) -> Vec<u8> {
    let s = sections
        .iter()
        .find(|s| s.alloc && !s.nobits && s.addr <= vaddr && vaddr < s.addr + s.size)
        .unwrap_or_else(|| panic!("no section of {} holds {vaddr:#x}", file.display()));
    let off = (s.offset + vaddr - s.addr) as usize;
    let bytes = std::fs::read(file).unwrap();
    bytes[off..off + len].to_vec()
}

/// The programs checked: 64- and 32-bit, PIE, non-PIE, static, static PIE, musl.
fn programs() -> Vec<(PathBuf, bool)> {
    let t = testdata();
    [
        ("hello64pie", false),
        ("hello64", false),
        ("static64", false),
        ("staticpie64", false),
        ("hello32pie", false),
        ("hello32", true),
        ("static32", false),
        ("staticpie32", false),
        ("hello_musl", false),
        ("hello_musl_static", false),
    ]
    .iter()
    .map(|(p, g)| (t.join(p), *g))
    .filter(|(p, _)| p.exists())
    .collect()
}

/// Every allocated section of the program (and, at the loaded stop, of each library) is
/// where `readelf -S` says, moved by the object's base; and lies in the maps line the
/// explanation names.
#[test]
fn explain_sections_are_readelfs() {
    let mut checked = 0;
    let mut progs = programs();
    progs.push((PathBuf::from("/usr/bin/ls"), false));
    for (prog, gb3) in progs {
        let (x, _) = explain(&prog, Stage::Loaded, gb3);
        for o in &x.objects {
            let want: Vec<ReadelfSection> = readelf_sections(&o.path)
                .into_iter()
                .filter(|s| s.alloc && s.size > 0)
                .collect();
            assert_eq!(
                o.sections.len(),
                want.len(),
                "{}: allocated sections of {}",
                prog.display(),
                o.path.display()
            );
            for (s, w) in o.sections.iter().zip(&want) {
                assert_eq!(s.name, w.name, "{}", o.path.display());
                assert_eq!(
                    s.start.wrapping_sub(o.base),
                    w.addr,
                    "{} {}",
                    o.path.display(),
                    s.name
                );
                assert_eq!(s.end - s.start, w.size, "{} {}", o.path.display(), s.name);
                if !s.tls {
                    let l = &x.lines[s.line.unwrap_or_else(|| {
                        panic!("{} {} is in no maps line", o.path.display(), s.name)
                    })];
                    assert!(l.maps.start <= s.start && s.start < l.maps.end);
                    assert!(
                        l.sections.contains(&s.name),
                        "{} {}",
                        o.path.display(),
                        s.name
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} sections checked");
}

/// `main` of each test program and `puts`/`printf` in libc: the value is `nm`'s, and at the
/// loaded stop the predicted address holds the function's first bytes.
#[test]
fn explain_symbols_hold_their_bytes_in_the_process() {
    for (prog, gb3) in programs() {
        let (x, req) = explain(&prog, Stage::Loaded, gb3);
        let mut wanted = vec![("main", prog.clone(), false)];
        if let Some(libc) = x
            .objects
            .iter()
            .find(|o| o.path.file_name().is_some_and(|n| n == "libc.so.6"))
        {
            wanted.push(("printf", libc.path.clone(), true));
            wanted.push(("puts", libc.path.clone(), true));
        }
        let mut peek = Vec::new();
        let mut expect = Vec::new();
        for (name, file, dynamic) in &wanted {
            let hits = x.find_symbol(name);
            let bound: Vec<_> = hits.iter().filter(|h| h.bound || !*dynamic).collect();
            let h = bound.iter().find(|h| h.path == *file).unwrap_or_else(|| {
                panic!("{}: {name} not found in {}", prog.display(), file.display())
            });
            let nm = nm_values(file, *dynamic, name);
            assert!(
                nm.contains(&h.value),
                "{}: {name} = {:#x}, nm says {nm:x?}",
                prog.display(),
                h.value
            );
            let addr = h.address.unwrap();
            assert!(h.line.is_some(), "{name} in no maps line");
            // --address names it, or an alias at the same value.
            let (at, off) = x.find_address(addr).symbol.unwrap();
            assert_eq!(off, 0, "--address of {name}: {at}+{off:#x}");
            assert!(
                at == *name || nm_values(file, *dynamic, &at).contains(&h.value),
                "--address of {name}: {at}"
            );
            let secs = readelf_sections(file);
            expect.push((name, file_bytes(file, &secs, h.value, 16)));
            peek.push((addr, 16));
        }
        let seen = observe_with(req, peek);
        for ((name, want), got) in expect.iter().zip(&seen.memory) {
            assert_eq!(
                got.as_deref(),
                Some(want.as_slice()),
                "{}: the bytes at {name}'s predicted address",
                prog.display()
            );
        }
    }
}

/// A string literal: the program's "hi" (hello.c) and a string of ls's .rodata, read from
/// the process at the predicted address.
#[test]
fn explain_strings_hold_their_bytes_in_the_process() {
    let mut cases: Vec<(PathBuf, bool, String)> = programs()
        .into_iter()
        .map(|(p, g)| (p, g, "hi".to_string()))
        .collect();
    let ls = PathBuf::from("/usr/bin/ls");
    if ls.exists() {
        // The longest printable string of ls's .rodata (read from the file, not typed).
        let secs = readelf_sections(&ls);
        let ro = secs.iter().find(|s| s.name == ".rodata").unwrap();
        let bytes = std::fs::read(&ls).unwrap();
        let data = &bytes[ro.offset as usize..(ro.offset + ro.size) as usize];
        let longest = data
            .split(|&b| b == 0)
            .filter(|s| s.iter().all(|&b| (0x20..0x7f).contains(&b)))
            .max_by_key(|s| s.len())
            .unwrap();
        cases.push((ls, false, String::from_utf8(longest.to_vec()).unwrap()));
    }
    for (prog, gb3, text) in cases {
        let (x, req) = explain(&prog, Stage::Loaded, gb3);
        let hits = x.find_string(&text, false);
        // The literal itself: a whole string, or the tail of a longer one the linker
        // merged it into (SHF_MERGE|SHF_STRINGS), in .rodata.
        let found: Vec<_> = hits
            .iter()
            .filter(|h| h.section.starts_with(".rodata"))
            .take(8)
            .collect();
        assert!(
            !found.is_empty(),
            "{}: {text:?} not found: {hits:?}",
            prog.display()
        );
        let want = text.clone().into_bytes();
        let peek = found
            .iter()
            .map(|h| (h.address, want.len() as u64 + 1))
            .collect();
        let seen = observe_with(req, peek);
        let mut terminated = 0;
        for (h, got) in found.iter().zip(&seen.memory) {
            let got = got.as_deref().unwrap();
            assert_eq!(
                &got[..want.len()],
                want.as_slice(),
                "{}: {text:?} at {:#x}",
                prog.display(),
                h.address
            );
            terminated += usize::from(got[want.len()] == 0);
        }
        assert!(
            terminated > 0,
            "{}: no occurrence of {text:?} ends its C string",
            prog.display()
        );
    }
}

/// The top of the stack: AT_RANDOM, AT_PLATFORM and AT_EXECFN are where the kernel put
/// them, argc is at the initial stack pointer, and the strings are there.
#[test]
fn explain_stack_top_is_the_kernels() {
    const AT_PLATFORM: u64 = 15;
    const AT_RANDOM: u64 = 25;
    const AT_EXECFN: u64 = 31;
    for (prog, gb3) in programs() {
        let (x, req) = explain(&prog, Stage::Exec, gb3);
        let s = &x.stack;
        let filename = req.filename.clone();
        let seen = observe_with(req, vec![(s.execfn, filename.len() as u64 + 1)]);
        let aux = |k: u64| seen.auxv.iter().find(|(t, _)| *t == k).map(|(_, v)| *v);
        assert_eq!(
            aux(AT_RANDOM),
            Some(s.random_bytes),
            "{} AT_RANDOM",
            prog.display()
        );
        assert_eq!(
            aux(AT_PLATFORM),
            Some(s.platform),
            "{} AT_PLATFORM",
            prog.display()
        );
        assert_eq!(
            aux(AT_EXECFN),
            Some(s.execfn),
            "{} AT_EXECFN",
            prog.display()
        );
        assert_eq!(seen.start_stack, s.argc, "{} argc", prog.display());
        let mut want = filename.into_encoded_bytes();
        want.push(0);
        assert_eq!(seen.memory[0].as_deref(), Some(want.as_slice()));
    }
}

/// Not there: exit 1 and a clear message, not an error; a stripped object is said to be.
#[test]
fn explain_not_found_exits_1() {
    let hello = testdata().join("hello64pie");
    let o = run(["explain", "--no-aslr", "--symbol", "no_such_symbol_here"])
        .status
        .code();
    assert_eq!(o, Some(2), "no program: a usage error");
    let o = elfmap()
        .args(["explain", "--no-aslr", "--symbol", "no_such_symbol_here"])
        .arg(&hello)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("no_such_symbol_here: not found"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("no .symtab"),
        "libc is stripped: {}",
        stdout(&o)
    );
    let o = elfmap()
        .args(["explain", "--no-aslr", "--string", "no such string, surely"])
        .arg(&hello)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = elfmap()
        .args(["explain", "--no-aslr", "--address", "0x10"])
        .arg(&hello)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("not mapped"), "{}", stdout(&o));
    assert!(stdout(&o).contains("mmap_min_addr"), "{}", stdout(&o));
    assert!(stderr(&o).is_empty());
}

/// Every maps line of every plan explained: a label and at least one reason with its
/// source, over the test programs and system programs, at each stage.
#[test]
fn explain_every_line_has_a_reason() {
    let mut progs: Vec<PathBuf> = testdata_programs()
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("main_runpath_missing"))
        .collect();
    // A sample of /usr/bin: every 8th ELF program.
    let mut sys: Vec<PathBuf> = std::fs::read_dir("/usr/bin")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_elf(p))
        .collect();
    sys.sort();
    progs.extend(sys.into_iter().step_by(8));
    let mut failures = Vec::new();
    let mut lines = 0;
    for p in &progs {
        for stage in ["exec", "loaded", "entry"] {
            let o = elfmap()
                .args(["explain", "--no-aslr", "--format", "json", "--stage", stage])
                .arg(p)
                .output()
                .unwrap();
            if o.status.code() != Some(0) {
                // Set-id programs and the like: the plan itself fails the same way.
                let plan = elfmap()
                    .args(["plan", "--no-aslr", "--stage", stage])
                    .arg(p)
                    .output()
                    .unwrap();
                assert_eq!(
                    plan.status.code(),
                    o.status.code(),
                    "{}: {}",
                    p.display(),
                    stderr(&o)
                );
                continue;
            }
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            for l in j["lines"].as_array().unwrap() {
                lines += 1;
                let reasons = l["reasons"].as_array().unwrap();
                if l["label"].as_str().unwrap_or("").is_empty()
                    || reasons.is_empty()
                    || reasons
                        .iter()
                        .any(|r| r["source"].as_str().unwrap_or("").is_empty())
                {
                    failures.push(format!("{} {stage}: {}", p.display(), l));
                }
            }
        }
    }
    assert!(lines > 1000, "only {lines} lines");
    assert!(
        failures.is_empty(),
        "{} lines unexplained:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}
