//! DOC: plans against maps recorded on another kernel. The kernel lab (`lab/`) boots a
//! kernel under qemu and records, in the guest, the real `/proc/PID/maps` of programs at
//! the exec, loaded and entry stops (`index.tsv`, `recorder/*.maps`, `recorder/*.info`,
//! `sysinfo/`). [`check`] plans every recorded case here, for that kernel's profile, with
//! what the recorder used (argv, environment, personality, stack limit, the root's files)
//! and compares line for line. Device and inode numbers are left out (the guest's disk
//! image numbers its files differently); everything else, the padding of the name column
//! included, must be equal. At the entry stop, lines made by library constructors are
//! judged as `compare` judges them ([`super::entry::classify`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::host::Facts;
use crate::kernel::profile::Kernel;
use crate::maps::MapsLine;

use super::without_ids as normalise;
use crate::plan::{Config, Layout, Stage, Target};

/// One recorded case: a program at a stop, in a layout, with or without ADDR_LIMIT_3GB.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Case {
    pub program: String,
    pub bits: u32,
    pub stage: Stage,
    pub legacy: bool,
    pub addr_limit_3gb: bool,
    /// Recorded with ASLR on (`recorder-aslr`): checked as `compare --maps` checks a
    /// sample, by recovering the kernel's draws from it.
    pub aslr: bool,
    /// The recorded maps file, relative to the results directory.
    pub file: String,
}

impl Case {
    /// The options of `elfmap plan` for this case.
    pub fn options(&self) -> String {
        format!(
            "{}--stage {}{}{}",
            if self.aslr { "" } else { "--no-aslr " },
            self.stage,
            if self.legacy { " --layout legacy" } else { "" },
            if self.addr_limit_3gb { " --3gb" } else { "" }
        )
    }
}

/// The verdict on one case.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Identical,
    /// Identical but for memory made by library constructors (entry stop).
    IdenticalButInitializers,
    Different,
    /// No plan could be made (the text says why).
    Error,
}

/// A case and how the plan compared.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub case: Case,
    pub verdict: Verdict,
    /// The differing lines (`- ` predicted only, `+ ` real only) and value mismatches.
    pub detail: Vec<String>,
}

/// What the recorder ran the programs with (`sysinfo/uname`).
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub release: String,
    pub rlimit_stack: u64,
    pub personality: u32,
    pub env: Vec<OsString>,
}

impl Recorded {
    /// Read `DIR/sysinfo/uname` (lines `key<TAB>value`, `env<TAB>NAME=value` repeated).
    pub fn read(dir: &Path) -> Result<Recorded> {
        let p = dir.join("sysinfo/uname");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let mut r = Recorded {
            rlimit_stack: 8 << 20,
            ..Recorded::default()
        };
        for line in text.lines() {
            let Some((k, v)) = line.split_once('\t') else {
                continue;
            };
            match k {
                "release" => r.release = v.to_string(),
                "RLIMIT_STACK" => {
                    let soft = v.split_whitespace().next().unwrap_or("");
                    r.rlimit_stack = match soft.parse::<i64>() {
                        Ok(n) if n >= 0 => n as u64,
                        Ok(_) => crate::host::RLIM_INFINITY,
                        Err(_) => return Err(Error::bad_input(&p, format!("RLIMIT_STACK {v:?}"))),
                    }
                }
                "personality" => {
                    r.personality = u32::from_str_radix(v.trim_start_matches("0x"), 16)
                        .map_err(|_| Error::bad_input(&p, format!("personality {v:?}")))?
                }
                "env" => r.env.push(v.into()),
                _ => {}
            }
        }
        if r.release.is_empty() {
            return Err(Error::bad_input(&p, "no release line"));
        }
        Ok(r)
    }
}

/// The cases of `DIR/index.tsv` the recorder recorded.
pub fn cases(dir: &Path) -> Result<Vec<Case>> {
    let p = dir.join("index.tsv");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::bad_input(&p, format!("no column {name:?}")))
    };
    let (c_prog, c_bits, c_stage, c_layout, c_limit, c_tool, c_status, c_file) = (
        col("program")?,
        col("bits")?,
        col("stage")?,
        col("layout")?,
        col("limit")?,
        col("tool")?,
        col("status")?,
        col("file")?,
    );
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let aslr = match get(c_tool) {
            "recorder" => false,
            "recorder-aslr" => true,
            _ => continue,
        };
        if get(c_status) != "ok" {
            continue;
        }
        let bad = || Error::bad_input(&p, format!("line {}: {line:?}", n + 2));
        out.push(Case {
            program: get(c_prog).to_string(),
            bits: get(c_bits).parse().map_err(|_| bad())?,
            stage: match get(c_stage) {
                "exec" => Stage::Exec,
                "loaded" => Stage::Loaded,
                "entry" => Stage::Entry,
                _ => return Err(bad()),
            },
            legacy: get(c_layout) == "legacy",
            addr_limit_3gb: get(c_limit) == "3gb",
            aslr,
            file: get(c_file).to_string(),
        });
    }
    Ok(out)
}

/// How to check: the kernel to plan for, the root the recorded files are in, and a prefix
/// of the recorded paths to read as another (the test programs, built elsewhere).
pub struct CheckOptions {
    pub kernel: Arc<Kernel>,
    pub root: Option<PathBuf>,
    /// `(recorded, here)`: program paths and paths in the recorded maps that start with
    /// `recorded` are read as starting with `here`.
    pub relocate: Option<(String, String)>,
}

/// The `key<TAB>value` lines of a recorder's `.info` file.
fn read_info(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hex(v: &str) -> Option<u64> {
    u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok()
}

/// Plan `case` as the recorder ran it and compare with what it recorded in `dir`.
pub fn check_case(
    dir: &Path,
    case: &Case,
    rec: &Recorded,
    host: &Facts,
    opts: &CheckOptions,
) -> Outcome {
    let fail = |detail: String| Outcome {
        case: case.clone(),
        verdict: Verdict::Error,
        detail: vec![detail],
    };
    let maps_path = dir.join(&case.file);
    let real = match std::fs::read_to_string(&maps_path) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", maps_path.display())),
    };
    let program = match &opts.relocate {
        Some((from, to)) if case.program.starts_with(from.as_str()) => {
            format!("{to}{}", &case.program[from.len()..])
        }
        _ => case.program.clone(),
    };
    let target = match Target::resolve_under(
        opts.root.as_deref(),
        program.as_ref(),
        &[],
        rec.env
            .iter()
            .find_map(|e| e.to_str()?.strip_prefix("PATH="))
            .map(std::ffi::OsStr::new),
    ) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    // The recorder exec'd the program by the path as recorded (argv[0] too): the strings
    // on the stack are those, wherever the file is here.
    let target = Target {
        filename: case.program.clone().into(),
        argv: vec![case.program.clone().into()],
        ..target
    };
    let mut machine = host.clone();
    machine.personality = rec.personality;
    machine.env = rec.env.clone();
    if opts.root.is_some() {
        machine.cwd = "/".into();
    }
    let cfg = Config {
        stage: case.stage,
        no_aslr: !case.aslr,
        layout: Some(if case.legacy {
            Layout::Legacy
        } else {
            Layout::Flexible
        }),
        addr_limit_3gb: case.addr_limit_3gb,
        rlimit_stack: Some(rec.rlimit_stack),
        // The recorder's processes had no address-space limit.
        rlimit_as: Some(u64::MAX),
        seed: None,
        root: opts.root.clone(),
        env: Some(rec.env.clone()),
        ledger: false,
        remember: false,
        kernel: Some(opts.kernel.clone()),
        draws: None,
    };
    if case.aslr {
        return check_sample(case, &real, &target, &cfg, &machine, opts);
    }
    let plan = match crate::plan::plan(&target, &cfg, &machine) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let pad = plan.mm.rules.name_pad;
    let mut detail = Vec::new();
    // The recorded text itself must be padded as this kernel pads.
    for l in real.lines().filter(|l| !l.is_empty()) {
        if let Ok(m) = MapsLine::parse(l) {
            if m.render_padded(pad) != l {
                detail.push(format!("! recorded line not padded to column {pad}: {l}"));
                break;
            }
        }
    }
    let predicted = normalise(
        &crate::render::maps::render(&plan.mm),
        pad,
        opts.relocate
            .as_ref()
            .map(|(f, t)| (t.clone(), f.clone()))
            .as_ref(),
    );
    let real = normalise(&real, pad, None);
    let join = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    let diff = super::Diff::new(&join(&predicted), &join(&real));
    let mut verdict = if diff.identical() {
        Verdict::Identical
    } else {
        Verdict::Different
    };
    if !diff.identical() {
        let (p, o) = diff.one_sided();
        if case.stage == Stage::Entry {
            let v = super::entry::classify(&plan.mm, &p, &o);
            if v.ok() {
                verdict = Verdict::IdenticalButInitializers;
            } else {
                detail.extend(v.mismatches);
            }
        } else {
            detail.extend(p.iter().map(|l| format!("- {l}")));
            detail.extend(o.iter().map(|l| format!("+ {l}")));
        }
    }
    // The values exec computed, as the recorder read them at the exec stop.
    if case.stage == Stage::Exec {
        let info = read_info(&maps_path.with_extension("info"));
        let e = &plan.exec;
        let checks = [
            ("AT_ENTRY", e.e_entry),
            ("AT_BASE", e.interp.as_ref().map_or(0, |i| i.load_addr)),
            ("AT_SYSINFO_EHDR", e.vdso_base),
            ("start_brk", e.mm.start_brk),
            ("start_stack", e.stack.start_stack),
        ];
        for (k, want) in checks {
            if let Some(got) = info.get(k).and_then(|v| hex(v)) {
                if got != want {
                    detail.push(format!("! {k}: predicted {want:#x}, real {got:#x}"));
                }
            }
        }
    }
    if !detail.is_empty() && verdict != Verdict::Different {
        verdict = Verdict::Different;
    }
    Outcome {
        case: case.clone(),
        verdict,
        detail,
    }
}

/// A case recorded with ASLR on: the kernel's draws recovered from it, each one the
/// profile's kernel can make, and the plan with those draws equal to it (as `compare --maps`
/// judges a sample; the `.info` values are not checked).
fn check_sample(
    case: &Case,
    real: &str,
    target: &Target,
    cfg: &Config,
    machine: &Facts,
    opts: &CheckOptions,
) -> Outcome {
    let outcome = |verdict, detail| Outcome {
        case: case.clone(),
        verdict,
        detail,
    };
    let sampler = match super::aslr::Sampler::new(target, cfg, machine) {
        Ok(s) => s.ignoring_ids(),
        Err(e) => return outcome(Verdict::Error, vec![e.to_string()]),
    };
    let pad = sampler.reference().mm.rules.name_pad;
    let sample: String = normalise(real, pad, opts.relocate.as_ref())
        .into_iter()
        .map(|l| l + "\n")
        .collect();
    match sampler.check(&sample) {
        Ok(v) if v.consistent() => {
            let made = v
                .entry
                .as_ref()
                .is_some_and(|e| !e.by_initializers.is_empty());
            outcome(
                if made {
                    Verdict::IdenticalButInitializers
                } else {
                    Verdict::Identical
                },
                Vec::new(),
            )
        }
        Ok(v) => outcome(Verdict::Different, v.problems),
        Err(e) => outcome(Verdict::Error, vec![e.to_string()]),
    }
}

/// Plan and compare every case recorded in `dir`.
pub fn check(dir: &Path, host: &Facts, opts: &CheckOptions) -> Result<Vec<Outcome>> {
    let rec = Recorded::read(dir)?;
    let cases = cases(dir)?;
    Ok(cases
        .iter()
        .map(|c| check_case(dir, c, &rec, host, opts))
        .collect())
}
