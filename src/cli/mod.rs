//! Command-line interface: clap parsing (no system calls), then one step that reads the
//! machine's facts, then the library call and a renderer.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use elfmap::compare::Diff;
use elfmap::host::RLIM_INFINITY;
use elfmap::kernel::profile::Kernel;
use elfmap::observe::{self, RunRequest};
use elfmap::{render, Config, Error, HostFacts, Layout, Stage, Target};
use std::sync::Arc;

const EXAMPLES: &str = "\
Examples:
  elfmap plan --no-aslr /bin/ls              predicted /proc/PID/maps with ASLR off
  elfmap plan --no-aslr --format table ./a.out
  elfmap run --no-aslr --stage exec /bin/ls  the real maps right after execve
  elfmap compare --no-aslr --stage exec /bin/ls -l /tmp
  elfmap compare --no-aslr --3gb --layout legacy ./hello32
                                             the classic i386 3G/1G picture
  elfmap compare --no-aslr /usr/bin/ssh      every library mapped, at the loader's rendezvous
  elfmap compare --no-aslr --stage entry /usr/bin/ls
                                             at AT_ENTRY; a constructor's [heap] is reported apart
  elfmap compare /usr/bin/ls                 ASLR on: the kernel's draws recovered, then the diff
  elfmap compare --maps saved/ /usr/bin/ls   check saved maps files (a crash report, old runs)
  elfmap entropy --measure 1000 /usr/bin/ls  bits per region: the model, and 1000 real runs
  elfmap explain --no-aslr --symbol printf /bin/ls
                                             why each line is there; where a symbol lands
  elfmap deps /usr/bin/curl                  which library file, found how (cache, RUNPATH, ...)
  elfmap facts > host.json                   this machine's facts, to plan from elsewhere:
  elfmap plan --facts host.json /bin/ls      the plan as that machine would make it
Options come first, then PROGRAM, then the program's own arguments (`--` is allowed).
ld.so's unique-symbol tables (the one costly part of a plan) are remembered per program in
$XDG_CACHE_HOME/elfmap (~/.cache/elfmap) for the same files; ELFMAP_CACHE=off: not at all.";

const EXPLAIN_EXAMPLES: &str = "\
Examples:
  elfmap explain --no-aslr /bin/ls           every line of the maps and why it is there
  elfmap explain --no-aslr --symbol main --symbol printf ./hello
                                             where main and printf will be
  elfmap explain --no-aslr --string 'Hello, world' ./hello
                                             where the string literal lands
  elfmap explain --no-aslr --address 0x7ffff7dd3000 /bin/ls
                                             what is at an address, or why nothing is
  elfmap explain --seed 1 /bin/ls            with ASLR on: one reproducible draw
  elfmap explain --no-aslr --svg ls.svg /bin/ls
                                             the article's picture, as SVG
  elfmap explain --format json /bin/ls       all of it as JSON
  elfmap explain --maps crash-maps.txt       a maps file from anywhere: every line labelled
  cat /proc/1234/maps | elfmap explain --maps -
  elfmap explain --maps old.maps --root /srv/sysroot
                                             with the objects' headers from a copy of that system";

#[derive(Parser)]
#[command(
    name = "elfmap",
    version,
    about = "Where will this program land in memory? Predict /proc/PID/maps before it runs, then prove it.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Predict the maps of PROGRAM (reads only ELF headers, dynamic sections and
    /// ld.so.cache; runs nothing).
    #[command(after_help = EXAMPLES)]
    Plan(PlanArgs),
    /// Run PROGRAM under ptrace, stop it at the stage, print its real maps, kill it.
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
    /// Plan and run with the same arguments and environment and diff the maps (exit 0
    /// identical, 1 different, 2 error). With ASLR on, the kernel's random draws are
    /// recovered from the real maps and the plan made with them must match line for line;
    /// --maps checks saved maps files instead of running.
    #[command(after_help = EXAMPLES)]
    Compare(CompareArgs),
    /// Explain the plan: the address space from the top down, every maps line with what
    /// made it and why, where each section lands, the top of the stack; or answer
    /// --symbol, --string, --address (exit 1 if one is not found).
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// How random each region is with ASLR on: bits and range per region from the model
    /// (which regions share one draw); --measure N: N real runs to the exec stop beside it.
    Entropy(EntropyArgs),
    /// The dependency tree: for each library the path the loader chooses and why, and what
    /// is missing (exit 2 if anything is).
    Deps(DepsArgs),
    /// Print the facts of this machine a plan depends on (sysctls, limits, personality,
    /// vDSO sizes, CPU, environment) as JSON, for `--facts FILE` here or elsewhere.
    Facts,
    /// Kernel profiles: list the built-in ones, capture this machine's, check one against
    /// maps recorded on that kernel.
    #[command(subcommand)]
    Kernel(KernelCmd),
}

#[derive(Subcommand)]
enum KernelCmd {
    /// The built-in profiles (`--kernel RELEASE`) and the one the running kernel gets.
    List,
    /// Everything a plan for this machine's kernel needs that user space can see, as JSON
    /// (release, sysctls, vDSO/vvar sizes of 64- and 32-bit tasks, vsyscall mode, auxv,
    /// each mounted filesystem's alignment of large file mappings): `plan --kernel FILE`
    /// plans for this machine from anywhere.
    Capture,
    /// Plan every case the kernel lab recorded in DIR (lab/README.md: `index.tsv`,
    /// `recorder/`, `sysinfo/`) for that kernel and compare with the real maps (device
    /// and inode numbers left out). Exit 0 if all are identical, 1 otherwise.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The kernel to plan for (a release or a capture file); default: the release the
    /// results were recorded on (`sysinfo/uname`).
    #[arg(long, value_name = "RELEASE|FILE")]
    kernel: Option<String>,
    /// The files the guest ran (its root directory as a directory here).
    #[arg(long)]
    root: Option<PathBuf>,
    /// FROM=TO: read recorded paths starting with FROM (program paths and paths in the
    /// maps) as starting with TO (the test programs, built in another place).
    #[arg(long, value_name = "FROM=TO")]
    relocate: Option<String>,
    /// Write every differing case with its lines to FILE.
    #[arg(long, value_name = "FILE")]
    diffs: Option<PathBuf>,
    /// Print JSON (every case and its verdict) instead of the summary.
    #[arg(long)]
    json: bool,
    /// The results directory of one kernel.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Args)]
struct DepsArgs {
    /// Print JSON instead of the tree.
    #[arg(long)]
    json: bool,
    /// Resolve inside another filesystem image (container root, sysroot).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Resolve with host facts written by `elfmap facts` instead of this machine's.
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// Resolve for another kernel (a release or a capture file, as for `plan --kernel`).
    #[arg(long, value_name = "RELEASE|FILE")]
    kernel: Option<String>,
    /// The program (looked up in PATH if it has no '/').
    #[arg(value_name = "PROGRAM")]
    program: OsString,
}

/// `--stage` (the library's [`Stage`]).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum StageArg {
    /// execve has returned: only the kernel's work, not one instruction of the program run.
    Exec,
    /// The loader's r_debug RT_CONSISTENT rendezvous: libraries mapped, relocated,
    /// RELRO-protected; no initializer run yet.
    Loaded,
    /// AT_ENTRY: after the libraries' initializers.
    Entry,
}

impl From<StageArg> for Stage {
    fn from(s: StageArg) -> Stage {
        match s {
            StageArg::Exec => Stage::Exec,
            StageArg::Loaded => Stage::Loaded,
            StageArg::Entry => Stage::Entry,
        }
    }
}

/// `--layout` (the library's [`Layout`]).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LayoutArg {
    /// Top-down from mmap_base (`vm.legacy_va_layout=0`).
    Flexible,
    /// Bottom-up from TASK_UNMAPPED_BASE (`setarch -L`).
    Legacy,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Flexible => Layout::Flexible,
            LayoutArg::Legacy => Layout::Legacy,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// Exactly what /proc/PID/maps shows.
    Maps,
    /// Key addresses and a table.
    Table,
    Json,
    /// The picture of the address space (as `explain --svg` draws it).
    Svg,
}

#[derive(Args, Clone)]
struct Common {
    /// Disable ASLR, as `setarch -R` does (personality ADDR_NO_RANDOMIZE).
    #[arg(long, short = 'R')]
    no_aslr: bool,
    /// Stop: exec (after execve), loaded (the loader's rendezvous) or entry (AT_ENTRY).
    #[arg(long, value_enum, default_value_t = StageArg::Loaded)]
    stage: StageArg,
    /// mmap layout; default: this machine's (vm.legacy_va_layout). legacy = `setarch -L`.
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
    /// 3 GiB address space for a 32-bit program (`setarch --3gb`, ADDR_LIMIT_3GB).
    #[arg(long = "3gb")]
    addr_limit_3gb: bool,
    /// RLIMIT_STACK for the program: bytes (suffix k, m, g allowed) or `unlimited`;
    /// default: elfmap's own limit.
    #[arg(long, value_parser = parse_rlimit)]
    stack_limit: Option<u64>,
    /// RLIMIT_AS for the program (`ulimit -v`, in bytes: suffix k, m, g allowed) or
    /// `unlimited`; default: elfmap's own limit. An exec that outgrows it is killed.
    #[arg(long, value_parser = parse_rlimit)]
    as_limit: Option<u64>,
    /// Plan for another filesystem image: look up the interpreter (and libraries) under DIR.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Plan from host facts written by `elfmap facts` (on this machine or another) instead
    /// of this machine's.
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// Plan for another kernel: a release as `uname -r` prints it there (a built-in
    /// profile: `elfmap kernel list`), or a FILE written by `elfmap kernel capture`.
    /// Default: the running kernel.
    #[arg(long, value_name = "RELEASE|FILE")]
    kernel: Option<String>,
    /// The program to plan or run (looked up in PATH if it has no '/').
    #[arg(value_name = "PROGRAM", required = true, index = 1)]
    program: Option<OsString>,
    /// The program's arguments.
    #[arg(
        value_name = "ARGS",
        index = 2,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<OsString>,
}

impl Common {
    /// PROGRAM (clap requires it, except for `explain --maps`).
    fn program(&self) -> Result<&OsString, Error> {
        self.program.as_ref().ok_or_else(|| Error::Usage {
            path: "elfmap".into(),
            reason: "PROGRAM is missing".into(),
        })
    }
}

#[derive(Args)]
struct PlanArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Maps)]
    format: Format,
    /// Seed for the random draws when ASLR is on (a randomized but reproducible plan).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ExplainFormat {
    /// For a reader (coloured on a terminal).
    Text,
    Json,
    /// The picture of the address space (what --svg FILE writes).
    Svg,
}

#[derive(Args)]
#[command(
    mut_arg("program", |a| a.required(false).required_unless_present("maps").conflicts_with("maps")),
    override_usage = "elfmap explain [OPTIONS] PROGRAM [ARGS]...\n       elfmap explain --maps FILE [--root DIR] [--format text|json|svg] [--svg FILE]"
)]
struct ExplainArgs {
    /// Explain a maps file (/proc/PID/maps or smaps, from any machine, kernel or age; `-`
    /// for standard input) instead of a plan: every line labelled, with how sure the label
    /// is and the rule that gave it. The files it names are read here (or under --root)
    /// when they are there.
    #[arg(long, value_name = "FILE")]
    maps: Option<PathBuf>,
    /// --maps: read no file the maps names (label from the lines alone).
    #[arg(long, requires = "maps")]
    no_files: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    format: ExplainFormat,
    /// Seed for the random draws when ASLR is on: the addresses of that draw. Without it
    /// (and without --no-aslr) addresses are given as base + offset.
    #[arg(long)]
    seed: Option<u64>,
    /// Where a symbol is: object, section, maps line, address (.symtab when present, else
    /// .dynsym), every definition in the loader's lookup order. Repeatable.
    #[arg(long, value_name = "NAME")]
    symbol: Vec<String>,
    /// Where a string literal is in the program's allocated sections. Repeatable.
    #[arg(long, value_name = "TEXT")]
    string: Vec<String>,
    /// --string: search the interpreter and the libraries too.
    #[arg(long)]
    all_objects: bool,
    /// What is at an address (hex with 0x, or decimal). Repeatable.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    address: Vec<u64>,
    /// Also write the picture of the address space as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

fn parse_address(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => t.replace('_', "").parse::<u64>(),
    };
    r.map_err(|_| format!("not an address (0x... or decimal): {s:?}"))
}

#[derive(Args)]
struct RunArgs {
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// compare: show predicted and real lines side by side (shortened).
    #[arg(long)]
    side_by_side: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct EntropyArgs {
    /// Also run PROGRAM this many times to the exec stop and measure.
    #[arg(long, value_name = "N")]
    measure: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct CompareArgs {
    /// Check this saved maps file (or every file in this directory) instead of running
    /// PROGRAM; repeatable. One verdict line per file (the draws and the diff for one file).
    /// Device and inode numbers are not compared: the file may come from another machine.
    #[arg(long, value_name = "FILE")]
    maps: Vec<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

fn parse_rlimit(s: &str) -> Result<u64, String> {
    if s == "unlimited" || s == "infinity" {
        return Ok(RLIM_INFINITY);
    }
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a size or `unlimited`: {s:?}"))
}

/// What can end a command.
pub enum CliError {
    BrokenPipe,
    Elfmap(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Elfmap(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Elfmap(Error::io("<stdout>", e))
        }
    }
}

fn config(c: &Common, seed: Option<u64>) -> Config {
    Config {
        stage: c.stage.into(),
        no_aslr: c.no_aslr,
        layout: c.layout.map(Layout::from),
        addr_limit_3gb: c.addr_limit_3gb,
        rlimit_stack: c.stack_limit,
        rlimit_as: c.as_limit,
        seed,
        draws: None,
        root: c.root.clone(),
        env: None,
        ledger: false,
        kernel: None,
        remember: true,
    }
}

/// The kernel `--kernel` names (a release or a capture file), or `None` for the running
/// one; the note about a release without a built-in profile goes to stderr.
fn kernel(arg: Option<&String>, machine: &HostFacts) -> Result<Arc<Kernel>, Error> {
    let k = match arg {
        Some(a) => Kernel::from_arg(a, machine)?,
        None => Kernel::running(machine),
    };
    if let Some(n) = k.note() {
        eprintln!("elfmap: {n}");
    }
    Ok(Arc::new(k))
}

fn run_request(
    target: &Target,
    cfg: &Config,
    machine: &HostFacts,
    timeout: f64,
) -> Result<RunRequest, Error> {
    Ok(RunRequest {
        filename: target.filename.clone(),
        argv: target.argv.clone(),
        envp: cfg.envp(machine),
        personality: cfg.personality(machine)?,
        rlimit_stack: cfg.rlimit_stack,
        rlimit_as: cfg.rlimit_as,
        stage: cfg.stage,
        timeout: Duration::from_secs_f64(timeout.clamp(0.01, 3600.0)),
        peek: Vec::new(),
    })
}

/// The program of a command line: under `--root`, looked up inside the root.
fn resolve(c: &Common) -> Result<Target, Error> {
    Target::resolve_under(
        c.root.as_deref(),
        c.program()?,
        &c.args,
        std::env::var_os("PATH").as_deref(),
    )
}

/// The host facts: from `file` if given, else this machine's.
fn facts(file: Option<&PathBuf>) -> Result<HostFacts, Error> {
    match file {
        None => Ok(HostFacts::detect()),
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            HostFacts::from_json(&text, f)
        }
    }
}

/// The command line. `plan` and `deps` are parsed first against their own arguments
/// alone: clap builds every argument of every subcommand before it parses, about 0.1 ms of
/// a 2 ms plan of gdb. Anything but a clean parse (help, version, an error) is parsed again
/// by the whole command, which says what it always said.
fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let quick = match args.get(1).and_then(|a| a.to_str()) {
        Some("plan") => quick_parse::<PlanArgs>("plan", &args).map(Cmd::Plan),
        Some("deps") => quick_parse::<DepsArgs>("deps", &args).map(Cmd::Deps),
        _ => None,
    };
    match quick {
        Some(cmd) => Cli { cmd },
        None => Cli::parse_from(args),
    }
}

/// `args` parsed as subcommand `name` with arguments `A` alone, if that parse is clean.
fn quick_parse<A: Args + clap::FromArgMatches>(name: &'static str, args: &[OsString]) -> Option<A> {
    let sub = A::augment_args(clap::Command::new(name));
    let m = clap::Command::new("elfmap")
        .subcommand(sub)
        .try_get_matches_from(args)
        .ok()?;
    match m.subcommand() {
        Some((n, sub)) if n == name => A::from_arg_matches(sub).ok(),
        _ => None,
    }
}

/// Where a command's output goes: one buffer for the whole output, not one write per
/// line (stdout is line-buffered).
type Out<'a> = io::BufWriter<io::StdoutLock<'a>>;

/// Run the command line; the process's exit status (0 done or the same, 1 compare found a
/// difference, 2 a plan or tree could not be made complete, e.g. a library is missing).
pub fn run() -> Result<u8, CliError> {
    let cli = parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let code = match cli.cmd {
        Cmd::Plan(a) => plan(&a, &mut out)?,
        Cmd::Run(a) => run_target(&a, &mut out)?,
        Cmd::Compare(a) => compare(&a, &mut out)?,
        Cmd::Deps(a) => deps(&a, &mut out)?,
        Cmd::Explain(a) => explain(&a, &mut out)?,
        Cmd::Entropy(a) => entropy(&a, &mut out)?,
        Cmd::Facts => {
            writeln!(out, "{}", HostFacts::detect().to_json())?;
            0
        }
        Cmd::Kernel(k) => kernel_cmd(&k, &mut out)?,
    };
    out.flush()?;
    Ok(code)
}

/// `elfmap plan`.
fn plan(a: &PlanArgs, out: &mut Out) -> Result<u8, CliError> {
    let machine = facts(a.common.facts.as_ref())?;
    let target = resolve(&a.common)?;
    let mut cfg = config(&a.common, a.seed);
    cfg.kernel = Some(kernel(a.common.kernel.as_ref(), &machine)?);
    // JSON lists what each of the loader's allocations is for; the picture says it too.
    cfg.ledger = matches!(a.format, Format::Json | Format::Svg);
    let plan = elfmap::plan(&target, &cfg, &machine)?;
    if plan.exec.per_clear && (cfg.no_aslr || cfg.layout == Some(Layout::Legacy)) {
        eprintln!(
            "elfmap: note: {} is set-user-ID or set-group-ID: exec clears ADDR_NO_RANDOMIZE \
             and ADDR_COMPAT_LAYOUT for it, so this plan is randomised",
            target.program.display()
        );
    }
    match a.format {
        // Already one buffer: written as it is, not copied into `out`'s.
        Format::Maps => out
            .get_mut()
            .write_all(render::maps::render(&plan.mm).as_bytes())?,
        Format::Table => render::table::write(&plan, &render::maps::lines(&plan.mm), out)?,
        Format::Json => render::json::write(&plan, &render::maps::lines(&plan.mm), out)?,
        Format::Svg => {
            let x = elfmap::explain::Explanation::of(&plan, render::maps::lines(&plan.mm), a.seed);
            out.write_all(render::svg::render(&x).as_bytes())?;
        }
    }
    leave_to_exit(plan);
    Ok(0)
}

/// The process ends as soon as a command has written its output: what `value` holds (the
/// open ELF files of a plan, its memory) is left for exit to release in one pass, rather
/// than one `close()` or `munmap()` each (about 70 system calls for gdb's plan).
fn leave_to_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Write `w` (coloured text) to `out`, without the colour unless stdout is a terminal that
/// wants it (NO_COLOR, CLICOLOR_FORCE, TERM=dumb respected).
fn write_coloured(w: &[u8], out: &mut Out) -> io::Result<()> {
    if anstream::AutoStream::choice(&io::stdout()) == anstream::ColorChoice::Never {
        for part in anstream::adapter::strip_bytes(w) {
            out.write_all(part)?;
        }
        Ok(())
    } else {
        out.write_all(w)
    }
}

/// A writer that strips ANSI escapes on the way (kept across writes: an escape may be cut
/// between two).
struct Strip<'a, W: Write> {
    out: &'a mut W,
    state: anstream::adapter::StripBytes,
}

impl<'a, W: Write> Strip<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Strip {
            out,
            state: anstream::adapter::StripBytes::new(),
        }
    }
}

impl<W: Write> Write for Strip<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        for part in self.state.strip_next(b) {
            self.out.write_all(part)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `elfmap explain --maps FILE`.
fn explain_maps(a: &ExplainArgs, file: &std::path::Path, out: &mut Out) -> Result<u8, CliError> {
    use elfmap::explain::annotate::{self, text};
    let c = &a.common;
    let plan_only = [
        (c.no_aslr, "--no-aslr"),
        (c.stage != StageArg::Loaded, "--stage"),
        (c.layout.is_some(), "--layout"),
        (c.addr_limit_3gb, "--3gb"),
        (c.stack_limit.is_some(), "--stack-limit"),
        (c.as_limit.is_some(), "--as-limit"),
        (c.facts.is_some(), "--facts"),
        (a.seed.is_some(), "--seed"),
        (!a.symbol.is_empty(), "--symbol"),
        (!a.string.is_empty(), "--string"),
        (a.all_objects, "--all-objects"),
        (!a.address.is_empty(), "--address"),
    ];
    if let Some((_, opt)) = plan_only.iter().find(|(given, _)| *given) {
        return Err(Error::Usage {
            path: file.to_path_buf(),
            reason: format!("{opt} is an option of a plan: --maps explains the file alone (--root DIR, --no-files, --format, --svg)"),
        }
        .into());
    }
    if let Some(r) = &c.root {
        if !annotate::valid_root(r) {
            return Err(Error::Usage {
                path: r.clone(),
                reason: "--root: not a directory".into(),
            }
            .into());
        }
    }
    let opts = annotate::Options {
        root: c.root.clone(),
        no_files: a.no_files,
    };
    let x = if file.as_os_str() == "-" {
        annotate::annotate("-", io::stdin().lock(), &opts)?
    } else {
        let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(Error::bad_input(file, "is a directory, not a maps file").into());
        }
        let name = file.display().to_string();
        annotate::annotate(&name, io::BufReader::with_capacity(64 * 1024, f), &opts)?
    };
    if let Some(f) = &a.svg {
        let svg = render::svg::render(&x.explanation());
        std::fs::write(f, svg).map_err(|e| Error::io(f, e))?;
    }
    match a.format {
        ExplainFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &x).map_err(io::Error::other)?;
            writeln!(out)?;
        }
        ExplainFormat::Svg => out.write_all(render::svg::render(&x.explanation()).as_bytes())?,
        // Written as it is made (a maps file may have a million lines), the colour
        // stripped on the way unless stdout is a terminal that wants it.
        ExplainFormat::Text => {
            if anstream::AutoStream::choice(&io::stdout()) == anstream::ColorChoice::Never {
                text::write(&x, &mut Strip::new(&mut *out))?;
            } else {
                text::write(&x, out)?;
            }
        }
    }
    leave_to_exit(x);
    Ok(0)
}

/// `elfmap explain`.
fn explain(a: &ExplainArgs, out: &mut Out) -> Result<u8, CliError> {
    use elfmap::explain::{text, Explanation};
    if let Some(file) = &a.maps {
        return explain_maps(a, file, out);
    }
    let machine = facts(a.common.facts.as_ref())?;
    let target = resolve(&a.common)?;
    let mut cfg = config(&a.common, a.seed);
    cfg.kernel = Some(kernel(a.common.kernel.as_ref(), &machine)?);
    cfg.ledger = true;
    let plan = elfmap::plan(&target, &cfg, &machine)?;
    let x = Explanation::of(&plan, render::maps::lines(&plan.mm), a.seed);
    if let Some(f) = &a.svg {
        let svg = render::svg::render(&x);
        std::fs::write(f, svg).map_err(|e| Error::io(f, e))?;
    }
    let queries = !(a.symbol.is_empty() && a.string.is_empty() && a.address.is_empty());
    let symbols: Vec<_> = a.symbol.iter().map(|n| (n, x.find_symbol(n))).collect();
    let strings: Vec<_> = a
        .string
        .iter()
        .map(|t| (t, x.find_string(t, a.all_objects)))
        .collect();
    let addresses: Vec<_> = a.address.iter().map(|&ad| x.find_address(ad)).collect();
    let missing = symbols.iter().any(|(_, h)| h.is_empty())
        || strings.iter().any(|(_, h)| h.is_empty())
        || addresses.iter().any(|h| h.line.is_none());
    match a.format {
        ExplainFormat::Json => {
            let j = if queries {
                serde_json::json!({
                    "schema": "elfmap-explain/1",
                    "symbols": symbols.iter().map(|(n, h)| serde_json::json!({"name": n, "found": h})).collect::<Vec<_>>(),
                    "strings": strings.iter().map(|(t, h)| serde_json::json!({"text": t, "found": h})).collect::<Vec<_>>(),
                    "addresses": addresses,
                })
            } else {
                let mut v = serde_json::to_value(&x).map_err(io::Error::other)?;
                if let Some(m) = v.as_object_mut() {
                    m.insert("schema".into(), "elfmap-explain/1".into());
                }
                v
            };
            serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
            writeln!(out)?;
        }
        ExplainFormat::Svg => out.write_all(render::svg::render(&x).as_bytes())?,
        ExplainFormat::Text => {
            // Coloured into a buffer; stripped unless stdout is a terminal that wants
            // colour (NO_COLOR, CLICOLOR_FORCE, TERM=dumb respected).
            let mut w: Vec<u8> = Vec::new();
            if queries {
                for (n, h) in &symbols {
                    text::write_symbols(&x, n, h, &mut w)?;
                }
                for (t, h) in &strings {
                    text::write_strings(&x, t, h, a.all_objects, &mut w)?;
                }
                for h in &addresses {
                    text::write_address(&x, h, &mut w)?;
                }
            } else {
                text::write(&x, &mut w)?;
            }
            write_coloured(&w, out)?;
        }
    }
    leave_to_exit(plan);
    Ok(if missing { 1 } else { 0 })
}

/// `elfmap entropy`.
fn entropy(a: &EntropyArgs, out: &mut Out) -> Result<u8, CliError> {
    use elfmap::compare::{aslr::Sampler, entropy};
    use std::collections::BTreeMap;
    let machine = facts(a.common.facts.as_ref())?;
    let target = resolve(&a.common)?;
    let mut cfg = config(&a.common, None);
    cfg.kernel = Some(kernel(a.common.kernel.as_ref(), &machine)?);
    if !elfmap::kernel::personality::pf_randomize(
        machine.randomize_va_space,
        cfg.personality(&machine)?,
    ) {
        return Err(Error::Usage {
            path: target.program.clone(),
            reason: "ASLR is off for this run (--no-aslr or kernel.randomize_va_space=0): every region has 0 bits".into(),
        }
        .into());
    }
    let sampler = Sampler::new(&target, &cfg, &machine)?;
    let model = entropy::model(&sampler)?;
    let mut measured = Vec::new();
    if let Some(n) = a.measure {
        let mut rcfg = cfg.clone();
        rcfg.stage = Stage::Exec;
        let req = run_request(&target, &rcfg, &machine, 10.0)?;
        let exec = &sampler.reference().exec;
        let lines = render::maps::lines(&exec.mm);
        let name_at = |addr: u64| {
            lines
                .iter()
                .find(|l| l.start == addr)
                .map(|l| l.path.clone())
        };
        let program = exec
            .mm
            .vmas()
            .find(|v| v.origin.0.iter().any(|p| matches!(&p.made_by, elfmap::mm::Maker::ElfMap { object, .. } if object.role == elfmap::mm::Role::Program)))
            .and_then(|v| name_at(v.start))
            .unwrap_or_default();
        let interp = exec.interp.as_ref().and_then(|i| name_at(i.load_addr));
        let bar = indicatif::ProgressBar::new(n as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} runs, {eta} left")
                .map_err(io::Error::other)?,
        );
        bar.set_message("measuring");
        let mut samples: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for _ in 0..n {
            let obs = observe::run(&req)?;
            let maps = elfmap::maps::MapsLine::parse_all(&obs.maps)
                .map_err(|e| Error::observe(&target.program, e))?;
            for (r, v) in entropy::regions_of(
                &maps,
                &program,
                interp.as_deref(),
                obs.start_brk,
                obs.start_stack,
            ) {
                samples.entry(r).or_default().push(v);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        measured = entropy::summarise(&samples, &model);
    }
    if a.json {
        let j = serde_json::json!({ "schema": "elfmap-entropy/1", "model": model, "measured": measured });
        serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{}: the randomness of each region with ASLR on (from the model)",
        target.program.display()
    )?;
    writeln!(
        out,
        "{:<32} {:>6}  {:<40} {:<14} moved by",
        "region", "bits", "range", "step"
    )?;
    for m in &model {
        writeln!(
            out,
            "{:<32} {:>6.1}  {:<40} {:<14} {}",
            m.region,
            m.bits,
            format!("{:#x}-{:#x}", m.low, m.high),
            format!("{:#x}", m.unit),
            m.draw.map(|d| d.describe()).unwrap_or("nothing: fixed"),
        )?;
    }
    let mut shared: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &model {
        if let Some(d) = m.draw {
            shared.entry(d.describe()).or_default().push(&m.region);
        }
    }
    for (d, rs) in shared.iter().filter(|(_, rs)| rs.len() > 1) {
        writeln!(
            out,
            "one draw ({d}) moves together: {}: one leaked address gives them all",
            rs.join(", ")
        )?;
    }
    if !measured.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "measured over {} real runs (exec stop):",
            a.measure.unwrap_or(0)
        )?;
        writeln!(
            out,
            "{:<32} {:>8} {:>9}  {:<40} {:>8} {:>8}",
            "region", "distinct", "step", "range seen", "bits", "model"
        )?;
        for m in &measured {
            writeln!(
                out,
                "{:<32} {:>8} {:>9}  {:<40} {:>8.1} {:>8}",
                m.region,
                m.distinct,
                format!("{:#x}", m.unit),
                format!("{:#x}-{:#x}", m.low, m.high),
                m.bits,
                m.model_bits.map(|b| format!("{b:.1}")).unwrap_or_default()
            )?;
        }
    }
    Ok(0)
}

/// `elfmap run`.
fn run_target(a: &RunArgs, out: &mut Out) -> Result<u8, CliError> {
    let machine = facts(a.common.facts.as_ref())?;
    let target = resolve(&a.common)?;
    if a.common.kernel.is_some() {
        return Err(Error::Usage {
            path: "--kernel".into(),
            reason: "run observes the kernel it runs on; --kernel is for plan, compare, \
                     explain and deps"
                .into(),
        }
        .into());
    }
    let cfg = config(&a.common, None);
    let req = run_request(&target, &cfg, &machine, a.timeout)?;
    let obs = observe::run(&req)?;
    if a.json {
        serde_json::to_writer_pretty(&mut *out, &obs).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        out.write_all(obs.maps.as_bytes())?;
    }
    Ok(0)
}

/// `elfmap deps`.
fn deps(a: &DepsArgs, out: &mut Out) -> Result<u8, CliError> {
    let machine = facts(a.facts.as_ref())?;
    let target = Target::resolve_under(
        a.root.as_deref(),
        &a.program,
        &[],
        std::env::var_os("PATH").as_deref(),
    )?;
    let cfg = Config {
        stage: Stage::Loaded,
        no_aslr: false,
        layout: None,
        addr_limit_3gb: false,
        rlimit_stack: None,
        rlimit_as: None,
        seed: None,
        draws: None,
        root: a.root.clone(),
        env: None,
        ledger: false,
        kernel: Some(kernel(a.kernel.as_ref(), &machine)?),
        remember: false,
    };
    let Some(graph) = elfmap::plan::dependencies(&target, &cfg, &machine)? else {
        writeln!(
            out,
            "{}: statically linked (no PT_INTERP): no loader, no libraries",
            target.program.display()
        )?;
        return Ok(0);
    };
    if a.json {
        serde_json::to_writer_pretty(&mut *out, &graph).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        render::deps::write_tree(&graph, out)?;
    }
    if graph.complete() {
        return Ok(0);
    }
    for m in &graph.missing {
        eprintln!(
            "elfmap: {}: {}: cannot open shared object file (needed by {})",
            target.program.display(),
            m.name,
            graph
                .objects
                .get(m.needed_by)
                .map(|o| o.requested.as_str())
                .unwrap_or("?")
        );
    }
    Ok(2)
}

/// `elfmap compare`.
fn compare(args: &CompareArgs, out: &mut Out) -> Result<u8, CliError> {
    let a = &args.run;
    let machine = facts(a.common.facts.as_ref())?;
    let target = resolve(&a.common)?;
    let mut cfg = config(&a.common, None);
    cfg.kernel = Some(kernel(a.common.kernel.as_ref(), &machine)?);
    let aslr = elfmap::kernel::personality::pf_randomize(
        machine.randomize_va_space,
        cfg.personality(&machine)?,
    );
    let samples = maps_files(&args.maps)?;
    let plan = if aslr {
        None
    } else {
        Some(elfmap::plan(&target, &cfg, &machine)?)
    };
    if aslr || plan.as_ref().is_some_and(|p| p.exec.pf_randomize) {
        // ASLR on (asked, or forced for a set-id program): recover the draws.
        if !aslr {
            eprintln!(
                "elfmap: note: {} is set-user-ID or set-group-ID: exec clears ADDR_NO_RANDOMIZE \
                 and ADDR_COMPAT_LAYOUT for it, so its run is randomised: comparing with the \
                 draws recovered from it",
                target.program.display()
            );
        }
        let mut sampler = elfmap::compare::aslr::Sampler::new(&target, &cfg, &machine)?;
        if !args.maps.is_empty() {
            // Saved maps may come from another machine: its files have other numbers.
            sampler = sampler.ignoring_ids();
        }
        return compare_aslr(
            a, &args.maps, &samples, &target, &cfg, &machine, &sampler, out,
        );
    }
    let plan = plan.expect("planned above");
    let predicted = render::maps::render(&plan.mm);
    if !args.maps.is_empty() {
        let mut all = true;
        for (f, text) in &samples {
            let diff = elfmap::compare::diff_without_ids(&predicted, text, plan.mm.rules.name_pad);
            all &= diff.identical();
            if samples.len() == 1 {
                out.write_all(diff.render().as_bytes())?;
            }
            writeln!(
                out,
                "{}: {}",
                f.display(),
                if diff.identical() {
                    format!("identical ({} lines)", diff.lines.len())
                } else {
                    format!("different: {} lines differ", diff.differing())
                }
            )?;
        }
        return Ok(if all { 0 } else { 1 });
    }
    let req = run_request(&target, &cfg, &machine, a.timeout)?;
    let obs = observe::run(&req)?;
    let diff = Diff::new(&predicted, &obs.maps);
    // At the entry stop, constructors may have made memory no header announces.
    let verdict = (cfg.stage == Stage::Entry && !diff.identical()).then(|| {
        let (p, o) = diff.one_sided();
        elfmap::compare::entry::classify(&plan.mm, &p, &o)
    });
    if a.json {
        let j = serde_json::json!({ "diff": diff, "entry": verdict });
        serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        write_diff(a, &diff, verdict.as_ref(), cfg.stage, out)?;
    }
    let same = diff.identical() || verdict.as_ref().is_some_and(|v| v.ok());
    Ok(if same { 0 } else { 1 })
}

/// The saved maps files named (a directory: every file in it, sorted), read.
fn maps_files(names: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, Error> {
    let mut files = Vec::new();
    for n in names {
        if n.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(n)
                .map_err(|e| Error::io(n, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(n.clone());
        }
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
            Ok((f, text))
        })
        .collect()
}

/// A diff, and at the entry stop what initializers made, as text.
fn write_diff(
    a: &RunArgs,
    diff: &Diff,
    verdict: Option<&elfmap::compare::entry::EntryVerdict>,
    stage: Stage,
    out: &mut Out,
) -> Result<(), CliError> {
    if let Some(v) = verdict {
        out.write_all(diff.render().as_bytes())?;
        if !v.by_initializers.is_empty() {
            writeln!(
                out,
                "made by initializers (library constructors before AT_ENTRY):"
            )?;
            for l in &v.by_initializers {
                writeln!(out, "  + {l}")?;
            }
            for l in &v.absorbed {
                writeln!(out, "  - {l}   (grew into the line above)")?;
            }
        }
        if v.ok() {
            writeln!(
                out,
                "identical except for memory made by initializers ({} lines)",
                v.by_initializers.len()
            )?;
        } else {
            writeln!(
                out,
                "different: {} lines differ for no modelled reason:",
                v.mismatches.len()
            )?;
            for l in &v.mismatches {
                writeln!(out, "  {l}")?;
            }
        }
        return Ok(());
    }
    if a.side_by_side {
        out.write_all(diff.render_side_by_side().as_bytes())?;
    } else {
        out.write_all(diff.render().as_bytes())?;
    }
    if diff.identical() {
        writeln!(
            out,
            "identical: {} lines ({} stage)",
            diff.lines.len(),
            stage
        )?;
    } else {
        writeln!(
            out,
            "different: {} of {} lines differ (- predicted only, + real only)",
            diff.differing(),
            diff.lines.len()
        )?;
    }
    Ok(())
}

/// `elfmap compare` with ASLR on: the draws recovered from each sample (a live run, or
/// the saved files), checked, and the plan with them diffed.
#[allow(clippy::too_many_arguments)]
fn compare_aslr(
    a: &RunArgs,
    names: &[PathBuf],
    samples: &[(PathBuf, String)],
    target: &Target,
    cfg: &Config,
    machine: &HostFacts,
    sampler: &elfmap::compare::aslr::Sampler,
    out: &mut Out,
) -> Result<u8, CliError> {
    let live;
    let samples: Vec<(PathBuf, &str)> = if names.is_empty() {
        let req = run_request(target, cfg, machine, a.timeout)?;
        live = observe::run(&req)?.maps;
        vec![(PathBuf::from("(the real process)"), live.as_str())]
    } else {
        samples
            .iter()
            .map(|(f, t)| (f.clone(), t.as_str()))
            .collect()
    };
    let one = samples.len() == 1;
    let mut all = true;
    let mut json = Vec::new();
    for (f, text) in &samples {
        let v = sampler.check(text)?;
        all &= v.consistent();
        if a.json {
            json.push(serde_json::json!({ "file": f, "consistent": v.consistent(), "verdict": v }));
            continue;
        }
        if one {
            writeln!(
                out,
                "the kernel's random draws, recovered from the real maps:"
            )?;
            for d in &v.draws {
                writeln!(
                    out,
                    "  {:<40} {:>#14x} of [0, {:#x}] step {:#x} ({:.0} bits){}{}",
                    d.kind.describe(),
                    d.value,
                    d.max,
                    d.unit,
                    d.bits,
                    if d.observed {
                        format!(", from {}", d.from)
                    } else {
                        ", not visible in maps".into()
                    },
                    if d.possible { "" } else { "  IMPOSSIBLE" }
                )?;
            }
            write_diff(a, &v.diff, v.entry.as_ref(), cfg.stage, out)?;
        }
        if v.consistent() {
            writeln!(
                out,
                "{}: consistent: every line is where the kernel's draws put it ({} lines)",
                f.display(),
                v.diff.lines.len()
            )?;
        } else {
            writeln!(
                out,
                "{}: inconsistent: {}",
                f.display(),
                v.problems.join("; ")
            )?;
        }
    }
    if a.json {
        serde_json::to_writer_pretty(&mut *out, &json).map_err(io::Error::other)?;
        writeln!(out)?;
    }
    Ok(if all { 0 } else { 1 })
}

/// `elfmap kernel ...`.
fn kernel_cmd(k: &KernelCmd, out: &mut Out) -> Result<u8, CliError> {
    match k {
        KernelCmd::List => {
            let running = Kernel::running(&HostFacts::detect());
            for b in elfmap::kernel::rules::BUILT_IN {
                writeln!(out, "{:<20} {:<40} {}", b.name, b.releases, b.what)?;
            }
            writeln!(out, "running kernel: {}", running.describe())?;
            Ok(0)
        }
        KernelCmd::Capture => {
            let cap = elfmap::observe::capture::capture()?;
            writeln!(out, "{}", cap.to_json())?;
            Ok(0)
        }
        KernelCmd::Check(a) => kernel_check(a, out),
    }
}

/// `elfmap kernel check`.
fn kernel_check(a: &CheckArgs, out: &mut Out) -> Result<u8, CliError> {
    use elfmap::compare::recorded::{self, CheckOptions, Verdict};
    let host = HostFacts::detect();
    let rec = recorded::Recorded::read(&a.dir)?;
    let arg = a.kernel.clone().unwrap_or_else(|| rec.release.clone());
    let kernel = kernel(Some(&arg), &host)?;
    let relocate = match &a.relocate {
        None => None,
        Some(r) => match r.split_once('=') {
            Some((f, t)) => Some((f.to_string(), t.to_string())),
            None => {
                return Err(Error::Usage {
                    path: "--relocate".into(),
                    reason: format!("{r:?} is not FROM=TO"),
                }
                .into())
            }
        },
    };
    let opts = CheckOptions {
        kernel: kernel.clone(),
        root: a.root.clone(),
        relocate,
    };
    let outcomes = recorded::check(&a.dir, &host, &opts)?;
    if let Some(f) = &a.diffs {
        let mut text = String::new();
        for o in outcomes.iter().filter(|o| !o.detail.is_empty()) {
            text.push_str(&format!(
                "### {} {}  ({:?})\n{}\n\n",
                o.case.program,
                o.case.options(),
                o.verdict,
                o.detail.join("\n")
            ));
        }
        std::fs::write(f, text).map_err(|e| Error::io(f, e))?;
    }
    let same = |o: &&recorded::Outcome| {
        matches!(
            o.verdict,
            Verdict::Identical | Verdict::IdenticalButInitializers
        )
    };
    let all_same = outcomes.iter().all(|o| same(&o));
    if a.json {
        let j = serde_json::json!({
            "kernel": kernel.describe(),
            "cases": outcomes,
        });
        serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
        writeln!(out)?;
        return Ok(if all_same { 0 } else { 1 });
    }
    let programs: std::collections::BTreeSet<&str> =
        outcomes.iter().map(|o| o.case.program.as_str()).collect();
    writeln!(out, "kernel   {}", kernel.describe())?;
    writeln!(
        out,
        "results  {} ({} programs, {} cases)",
        a.dir.display(),
        programs.len(),
        outcomes.len()
    )?;
    let count = |f: &dyn Fn(&recorded::Outcome) -> bool| {
        let v: Vec<_> = outcomes.iter().filter(|o| f(o)).collect();
        let s = v.iter().filter(|o| same(o)).count();
        let e = v.iter().filter(|o| o.verdict == Verdict::Error).count();
        (v.len(), s, v.len() - s - e, e)
    };
    writeln!(
        out,
        "{:<22} {:>6} {:>10} {:>10} {:>7}",
        "", "cases", "identical", "different", "errors"
    )?;
    let mut row = |name: &str, f: &dyn Fn(&recorded::Outcome) -> bool| -> io::Result<()> {
        let (n, s, d, e) = count(f);
        if n > 0 {
            writeln!(out, "{name:<22} {n:>6} {s:>10} {d:>10} {e:>7}")?;
        }
        Ok(())
    };
    row("all", &|_| true)?;
    for st in [Stage::Exec, Stage::Loaded, Stage::Entry] {
        row(&format!("stage {st}"), &move |o| o.case.stage == st)?;
    }
    row("64-bit", &|o| o.case.bits == 64)?;
    row("32-bit", &|o| o.case.bits == 32)?;
    row("flexible", &|o| !o.case.legacy)?;
    row("legacy", &|o| o.case.legacy)?;
    row("--3gb", &|o| o.case.addr_limit_3gb)?;
    // Identical there: every draw recovered is one this kernel can make, and the plan with
    // those draws equals the recording.
    row("ASLR on", &|o| o.case.aslr)?;
    let init = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::IdenticalButInitializers)
        .count();
    if init > 0 {
        writeln!(
            out,
            "({init} of the identical entry-stage cases differ only by memory made by library constructors)"
        )?;
    }
    let bad: Vec<_> = outcomes.iter().filter(|o| !same(o)).collect();
    for o in bad.iter().take(20) {
        writeln!(
            out,
            "{:?}: {} {}: {}",
            o.verdict,
            o.case.program,
            o.case.options(),
            o.detail.first().map(String::as_str).unwrap_or("")
        )?;
    }
    if bad.len() > 20 {
        writeln!(out, "... {} more", bad.len() - 20)?;
    }
    Ok(if all_same { 0 } else { 1 })
}
