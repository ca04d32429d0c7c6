//! ASLR on: real runs of the test programs and of system programs, with the kernel's
//! randomisation as it is, are all judged consistent by the draws recovered from them; real
//! samples edited into what no kernel can make are all rejected; seeded plans pass the
//! check of themselves and their draws cover their ranges. The real kernel is the oracle:
//! no address is typed into these tests.

mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use elfmap::compare::aslr::Sampler;
use elfmap::kernel::random::DrawKind;
use elfmap::maps::MapsLine;
use elfmap::observe::{self, RunRequest};
use elfmap::{Config, HostFacts, Layout, Stage, Target};
use util::*;

fn config(stage: Stage, layout: Option<Layout>, addr_limit_3gb: bool) -> Config {
    Config {
        stage,
        no_aslr: false,
        layout,
        addr_limit_3gb,
        rlimit_stack: None,
        rlimit_as: None,
        seed: None,
        draws: None,
        root: None,
        env: None,
        ledger: false,
        remember: false,
        kernel: None,
    }
}

fn request(target: &Target, cfg: &Config, machine: &HostFacts) -> RunRequest {
    RunRequest {
        filename: target.filename.clone(),
        argv: target.argv.clone(),
        envp: cfg.envp(machine),
        personality: cfg.personality(machine).unwrap(),
        rlimit_stack: None,
        rlimit_as: None,
        stage: cfg.stage,
        timeout: Duration::from_secs(20),
        peek: Vec::new(),
    }
}

/// `runs` real runs of `program` with ASLR on, each checked; the failures.
fn check_runs(program: &Path, cfg: &Config, runs: usize) -> Vec<String> {
    let machine = HostFacts::detect();
    if machine.randomize_va_space == 0 {
        return vec!["kernel.randomize_va_space is 0 here: ASLR cannot be tested".into()];
    }
    let target = Target::resolve(program.as_os_str(), &[]).unwrap();
    let sampler = Sampler::new(&target, cfg, &machine).unwrap();
    let req = request(&target, cfg, &machine);
    let mut failures = Vec::new();
    for _ in 0..runs {
        let obs = observe::run(&req).unwrap();
        let v = sampler.check(&obs.maps).unwrap();
        if !v.consistent() {
            failures.push(format!(
                "{} {}: {}\n{}",
                program.display(),
                cfg.stage,
                v.problems.join("; "),
                obs.maps
            ));
        }
    }
    failures
}

const STAGES: [Stage; 3] = [Stage::Exec, Stage::Loaded, Stage::Entry];

/// The test programs: 64/32-bit, PIE, non-PIE, static, static PIE, 2 MiB-aligned (PIE and
/// static PIE), a big .bss, musl, a library asking for an executable stack.
fn test_programs() -> Vec<PathBuf> {
    let t = testdata();
    [
        "hello64pie",
        "hello64",
        "static64",
        "staticpie64",
        "hello32pie",
        "hello32",
        "static32",
        "staticpie32",
        "align2m64pie",
        "align2m32pie",
        "align2mstaticpie64",
        "bigrostaticpie64",
        "bigbss64pie",
        "bigbss32",
        "hello_musl",
        "hello_musl_static",
        "main_execstack_lib",
        "main_all",
    ]
    .iter()
    .map(|p| t.join(p))
    .collect()
}

#[test]
fn aslr_real_runs_of_test_programs_are_consistent() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for p in test_programs() {
        for stage in STAGES {
            failures.extend(check_runs(&p, &config(stage, None, false), 60));
            checked += 60;
        }
    }
    assert_no_failures("ASLR samples of the test programs", checked, &failures);
}

#[test]
fn aslr_real_runs_legacy_and_3gb_are_consistent() {
    let t = testdata();
    let mut failures = Vec::new();
    let mut checked = 0;
    for p in [
        "hello64pie",
        "static64",
        "hello32",
        "hello32pie",
        "staticpie32",
        "align2m64pie",
    ] {
        for stage in STAGES {
            failures.extend(check_runs(
                &t.join(p),
                &config(stage, Some(Layout::Legacy), false),
                25,
            ));
            checked += 25;
        }
    }
    for p in [
        "hello32",
        "hello32pie",
        "static32",
        "staticpie32",
        "bigbss32",
    ] {
        for stage in STAGES {
            for layout in [None, Some(Layout::Legacy)] {
                failures.extend(check_runs(&t.join(p), &config(stage, layout, true), 20));
                checked += 20;
            }
        }
    }
    assert_no_failures("ASLR samples, legacy layout and --3gb", checked, &failures);
}

#[test]
fn aslr_real_runs_of_system_programs_are_consistent() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (p, runs) in [
        ("/usr/bin/ls", 100),
        ("/usr/bin/bash", 100),
        ("/usr/bin/python3", 60),
        ("/usr/bin/gdb", 30),
    ] {
        let p = Path::new(p);
        if !p.exists() {
            continue;
        }
        for stage in STAGES {
            failures.extend(check_runs(p, &config(stage, None, false), runs));
            checked += runs;
        }
    }
    assert_no_failures("ASLR samples of system programs", checked, &failures);
}

/// A real sample of `program` at `stage`, and its sampler.
fn real_sample(program: &Path, stage: Stage) -> (String, Vec<MapsLine>) {
    let machine = HostFacts::detect();
    let target = Target::resolve(program.as_os_str(), &[]).unwrap();
    let obs = observe::run(&request(&target, &config(stage, None, false), &machine)).unwrap();
    let lines = MapsLine::parse_all(&obs.maps).unwrap();
    (obs.maps, lines)
}

fn render(lines: &[MapsLine]) -> String {
    lines.iter().map(|l| l.render() + "\n").collect()
}

/// Real samples edited into layouts no kernel makes are rejected, each for its reason.
#[test]
fn aslr_impossible_samples_are_rejected() {
    let machine = HostFacts::detect();
    if machine.randomize_va_space == 0 {
        return;
    }
    let ls = Path::new("/usr/bin/ls");
    let pie2m = testdata().join("align2m64pie");
    let mut cases: Vec<(&str, PathBuf, Stage, Vec<MapsLine>)> = Vec::new();
    let (_, s) = real_sample(ls, Stage::Loaded);
    let libc = |l: &MapsLine| l.path.ends_with("/libc.so.6");
    let shift = |lines: &[MapsLine], pick: &dyn Fn(&MapsLine) -> bool, by: i64| -> Vec<MapsLine> {
        lines
            .iter()
            .map(|l| {
                let mut l = l.clone();
                if pick(&l) {
                    l.start = l.start.wrapping_add_signed(by);
                    l.end = l.end.wrapping_add_signed(by);
                }
                l
            })
            .collect()
    };
    cases.push((
        "a library moved against the others",
        ls.into(),
        Stage::Loaded,
        shift(&s, &libc, -0x1000),
    ));
    let mut v = s.clone();
    let i = v.iter().position(|l| libc(l) && l.offset != 0).unwrap();
    v[i].offset += 0x1000;
    cases.push(("a file offset changed", ls.into(), Stage::Loaded, v));
    let mut v = s.clone();
    let i = v.iter().position(|l| l.path == "[stack]").unwrap();
    let top = elfmap::kernel::profile::KernelProfile::x86_64().stack_top;
    let by = (top + 0x1000 - v[i].end) as i64;
    v[i].start = v[i].start.wrapping_add_signed(by);
    v[i].end = v[i].end.wrapping_add_signed(by);
    cases.push(("a stack above the highest top", ls.into(), Stage::Loaded, v));
    let mut v = s.clone();
    let exe = v[0].path.clone();
    for l in v.iter_mut().filter(|l| l.path == exe && l.perms == "r-xp") {
        l.perms = "rwxp".into();
    }
    cases.push(("writable text", ls.into(), Stage::Loaded, v));
    cases.push((
        "the vDSO moved",
        ls.into(),
        Stage::Loaded,
        shift(
            &s,
            &|l: &MapsLine| l.path.starts_with("[v") && l.path != "[vsyscall]",
            0x1000,
        ),
    ));
    cases.push((
        "ld.so moved",
        ls.into(),
        Stage::Loaded,
        shift(&s, &|l: &MapsLine| l.path.contains("ld-linux"), -0x1000),
    ));
    let mut v = s.clone();
    v.remove(v.len() / 2);
    cases.push(("a line missing", ls.into(), Stage::Loaded, v));
    let (_, s2) = real_sample(&pie2m, Stage::Exec);
    let exe2 = s2[0].path.clone();
    cases.push((
        "a 2 MiB-aligned PIE one page off its alignment",
        pie2m.clone(),
        Stage::Exec,
        shift(&s2, &|l: &MapsLine| l.path == exe2, 0x1000),
    ));
    let (_, s3) = real_sample(ls, Stage::Entry);
    if s3.iter().any(|l| l.path == "[heap]") {
        cases.push((
            "a heap beyond brk's range",
            ls.into(),
            Stage::Entry,
            shift(&s3, &|l: &MapsLine| l.path == "[heap]", 0x8000_0000),
        ));
    }
    let mut rejected = 0;
    let mut failures = Vec::new();
    for (what, program, stage, lines) in &cases {
        let target = Target::resolve(program.as_os_str(), &[]).unwrap();
        let sampler = Sampler::new(&target, &config(*stage, None, false), &machine).unwrap();
        let v = sampler.check(&render(lines)).unwrap();
        if v.consistent() {
            failures.push(format!("{what}: judged consistent"));
        } else {
            rejected += 1;
        }
    }
    // The unedited samples themselves pass (the edits made the difference).
    for (program, stage, lines) in [(ls, Stage::Loaded, &s), (pie2m.as_path(), Stage::Exec, &s2)] {
        let target = Target::resolve(program.as_os_str(), &[]).unwrap();
        let sampler = Sampler::new(&target, &config(stage, None, false), &machine).unwrap();
        assert!(sampler.check(&render(lines)).unwrap().consistent());
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(rejected >= 8, "only {rejected} cases");
}

/// `plan --seed N` layouts pass the check of themselves, and over many seeds each draw
/// reaches near both ends of its range.
#[test]
fn aslr_seeded_plans_are_consistent_and_cover_the_ranges() {
    let machine = HostFacts::detect();
    if machine.randomize_va_space == 0 {
        return;
    }
    for (p, stage) in [
        ("hello64pie", Stage::Exec),
        ("hello32pie", Stage::Loaded),
        ("static64", Stage::Exec),
    ] {
        let program = testdata().join(p);
        let target = Target::resolve(program.as_os_str(), &[]).unwrap();
        let cfg = config(stage, None, false);
        let sampler = Sampler::new(&target, &cfg, &machine).unwrap();
        let mut seen: Vec<(DrawKind, u64, u64, u64)> = Vec::new(); // kind, min, max, range max
        for seed in 0..1500u64 {
            let mut c = cfg.clone();
            c.seed = Some(seed);
            let plan = elfmap::plan(&target, &c, &machine).unwrap();
            let text = elfmap::render::maps::render(&plan.mm);
            let v = sampler.check(&text).unwrap();
            assert!(v.consistent(), "{p} seed {seed}: {:?}\n{text}", v.problems);
            for d in &plan.exec.draws {
                match seen.iter_mut().find(|s| s.0 == d.kind) {
                    Some(s) => {
                        s.1 = s.1.min(d.value);
                        s.2 = s.2.max(d.value);
                    }
                    None => seen.push((d.kind, d.value, d.value, d.max())),
                }
            }
        }
        for (kind, min, max, top) in seen {
            // 1500 uniform draws: the extremes within 1% of the ends (a miss has
            // probability below 1e-6 for each).
            assert!(
                min <= top / 100,
                "{p} {kind:?}: lowest draw {min:#x} of {top:#x}"
            );
            assert!(
                max >= top - top / 100,
                "{p} {kind:?}: highest draw {max:#x} of {top:#x}"
            );
        }
    }
}

/// The CLI: compare with ASLR on runs, prints the draws and a verdict; --maps checks
/// saved files, one line each.
#[test]
fn aslr_compare_cli() {
    let hello = testdata().join("hello64pie");
    let o = elfmap()
        .args(["compare", "--stage", "exec"])
        .arg(&hello)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("recovered from the real maps"));
    assert!(stdout(&o).contains("consistent"));
    let dir = std::env::temp_dir().join(format!("elfmap-aslr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        let o = elfmap()
            .args(["run", "--stage", "loaded"])
            .arg(&hello)
            .output()
            .unwrap();
        std::fs::write(dir.join(format!("{i}.maps")), &o.stdout).unwrap();
    }
    // One impossible: the stack's end moved by a page and a half.
    let mut lines =
        MapsLine::parse_all(&std::fs::read_to_string(dir.join("0.maps")).unwrap()).unwrap();
    let s = lines.iter_mut().find(|l| l.path == "[stack]").unwrap();
    s.end += 0x1800;
    std::fs::write(dir.join("9-bad.maps"), render(&lines)).unwrap();
    let o = elfmap()
        .args(["compare", "--stage", "loaded", "--maps"])
        .arg(&dir)
        .arg(&hello)
        .output()
        .unwrap();
    let text = stdout(&o);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert_eq!(text.matches(": consistent").count(), 3, "{text}");
    assert_eq!(text.matches(": inconsistent").count(), 1, "{text}");
}

/// `entropy --measure 1000` agrees with the model within half a bit for every region, for
/// a 64-bit PIE, a 32-bit non-PIE and a 2 MiB-aligned PIE.
#[test]
fn aslr_entropy_measured_agrees_with_the_model() {
    for p in ["hello64pie", "hello32", "align2m64pie"] {
        let o = elfmap()
            .args(["entropy", "--measure", "1000", "--json"])
            .arg(testdata().join(p))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let measured = j["measured"].as_array().unwrap();
        assert!(measured.len() >= 5, "{p}: {measured:?}");
        for m in measured {
            let model = m["model_bits"]
                .as_f64()
                .unwrap_or_else(|| panic!("{p}: no model for {m}"));
            let bits = m["bits"].as_f64().unwrap();
            assert!((bits - model).abs() <= 0.5, "{p}: {m}");
            assert_eq!(m["samples"], 1000);
        }
    }
}
