//! JSON output of a plan, with its own serde types (the model's types stay free to
//! change). The schema is documented in the README ("JSON output"); fields are only ever
//! added, at the end of an object.

use std::io::{self, Write};

use serde::Serialize;

use crate::ldso::glibc;
use crate::maps::MapsLine;
use crate::mm::{Origin, Vma};
use crate::plan::{LoaderRun, Plan};

/// The version of the schema below ([`JsonPlan`]), written as `schema`.
pub const SCHEMA: &str = "elfmap-plan/4";

#[derive(Serialize)]
struct JsonPlan<'a> {
    program: String,
    stage: String,
    abi: crate::elf::Abi,
    e_type: &'static str,
    load_bias: String,
    e_entry: String,
    elf_entry: String,
    interp: Option<JsonInterp>,
    layout: JsonLayout,
    start_brk: String,
    start_stack: String,
    stack_top: String,
    read_implies_exec: bool,
    executable_stack: crate::kernel::binfmt_elf::ExecutableStack,
    /// The libraries in load order, with where they were found (loaded/entry stages).
    libraries: Vec<JsonLibrary>,
    maps: Vec<JsonLine<'a>>,
    // Since schema 2:
    schema: &'static str,
    /// Which loader model ran ("glibc", "musl"), if any.
    loader: Option<&'static str>,
    /// The loader's objects in namespace order: each one's load address and span.
    objects: Vec<JsonObject>,
    /// The initial thread's static TLS block.
    tls: Option<JsonTls>,
    /// The loader's own allocations, in order (glibc's minimal malloc).
    allocations: Vec<JsonAllocation>,
    warnings: Vec<String>,
    // Since schema 4:
    /// The kernel the plan is for: its profile.
    kernel: JsonKernel<'a>,
}

/// The kernel profile a plan was made with.
#[derive(Serialize)]
struct JsonKernel<'a> {
    /// `uname -r` of that kernel.
    release: &'a str,
    /// The built-in rule set (`debian-6.1-amd64`, ...).
    rules: &'static str,
    /// What the rule set is for (`Debian 12 bookworm`).
    rules_for: &'static str,
    /// `false`: the release has no built-in profile; the rules are the nearest known.
    exact: bool,
    /// `running`, `built_in`, or `{"captured": FILE}`.
    source: &'a crate::kernel::profile::KernelSource,
    /// The kernel's facts the plan used (sysctls, vDSO sizes, vsyscall mode, ...).
    facts: &'a crate::host::kernel::KernelFacts,
}

/// A maps line, with what made it.
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(flatten)]
    line: &'a MapsLine,
    /// The parts of the VMA, each with the kernel or loader step that made it and the
    /// changes since (schema 2).
    origin: &'a Origin,
}

#[derive(Serialize)]
struct JsonLibrary {
    requested: String,
    path: String,
    found_via: String,
}

#[derive(Serialize)]
struct JsonInterp {
    requested: String,
    path: String,
    load_addr: String,
}

#[derive(Serialize)]
struct JsonLayout {
    topdown: bool,
    mmap_base: String,
    mmap_legacy_base: String,
    task_size: String,
}

/// A link map (glibc) or a `struct dso` (musl).
#[derive(Serialize)]
struct JsonObject {
    /// program, interpreter/rtld, library, vdso.
    kind: String,
    /// The name the loader keeps (`l_name`; musl's `name`).
    name: String,
    /// The file as maps shows it (none for the vDSO).
    path: Option<String>,
    /// `l_addr` / musl's `base`: what is added to the object's link-time addresses.
    base: String,
    /// The span the loader reserved for it.
    map_start: String,
    map_end: String,
    /// The RELRO range made read-only.
    relro: Option<[String; 2]>,
    /// Where its TLS block is: the thread pointer minus this.
    tls_offset: Option<String>,
}

#[derive(Serialize)]
struct JsonTls {
    /// The thread pointer (`%fs` base on x86-64; not modelled for musl).
    tp: Option<String>,
    /// The block allocated for the static TLS and the TCB (glibc), or `builtin_tls`.
    block: Option<[String; 2]>,
    size: u64,
    align: u64,
}

#[derive(Serialize)]
struct JsonAllocation {
    addr: String,
    size: u64,
    /// What ld.so allocates it for.
    what: String,
    /// It needed a new anonymous chunk (an mmap).
    new_chunk: bool,
    /// Freed while it was the last block (its bytes were reused).
    reclaimed: bool,
}

fn hex(x: u64) -> String {
    format!("{x:#x}")
}

pub fn write(plan: &Plan, lines: &[MapsLine], out: &mut dyn Write) -> io::Result<()> {
    let e = &plan.exec;
    let vmas: Vec<&Vma> = plan.mm.vmas().chain(&plan.mm.gate_vma).collect();
    let maps = lines
        .iter()
        .zip(vmas)
        .map(|(line, v)| JsonLine {
            line,
            origin: &v.origin,
        })
        .collect();
    let (loader, objects, tls, allocations, warnings) = loader_parts(plan);
    let j = JsonPlan {
        program: e.program_file.path.display().to_string(),
        stage: plan.stage.to_string(),
        abi: e.abi,
        e_type: if e.e_type == goblin::elf::header::ET_DYN {
            "ET_DYN"
        } else {
            "ET_EXEC"
        },
        load_bias: hex(e.load_bias),
        e_entry: hex(e.e_entry),
        elf_entry: hex(e.elf_entry),
        interp: e.interp.as_ref().map(|i| JsonInterp {
            requested: i.requested.display().to_string(),
            path: i.path.display().to_string(),
            load_addr: hex(i.load_addr),
        }),
        layout: JsonLayout {
            topdown: e.mm.layout.topdown,
            mmap_base: hex(e.mm.layout.mmap_base),
            mmap_legacy_base: hex(e.mm.layout.mmap_legacy_base),
            task_size: hex(e.mm.layout.task_size),
        },
        start_brk: hex(plan.mm.start_brk),
        start_stack: hex(plan.mm.start_stack),
        stack_top: hex(e.stack.stack_top),
        read_implies_exec: e.read_implies_exec,
        executable_stack: e.executable_stack,
        libraries: plan
            .deps
            .iter()
            .flat_map(|g| {
                g.objects.iter().skip(1).map(move |o| JsonLibrary {
                    requested: o.requested.clone(),
                    path: o.realpath.display().to_string(),
                    found_via: crate::render::deps::found_via(g, o.found_via),
                })
            })
            .collect(),
        maps,
        schema: SCHEMA,
        loader,
        objects,
        tls,
        allocations,
        warnings,
        kernel: JsonKernel {
            release: &plan.exec.kernel.release,
            rules: plan.exec.kernel.built_in.name,
            rules_for: plan.exec.kernel.built_in.what,
            exact: plan.exec.kernel.exact,
            source: &plan.exec.kernel.source,
            facts: &plan.exec.kernel.facts,
        },
    };
    serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
    writeln!(out)
}

type LoaderParts = (
    Option<&'static str>,
    Vec<JsonObject>,
    Option<JsonTls>,
    Vec<JsonAllocation>,
    Vec<String>,
);

/// What the loader's model knows, in the JSON's terms.
fn loader_parts(plan: &Plan) -> LoaderParts {
    match &plan.loader {
        None => (None, Vec::new(), None, Vec::new(), Vec::new()),
        Some(LoaderRun::Glibc(l)) => {
            let objects = l
                .maps
                .iter()
                .map(|m| JsonObject {
                    kind: match m.kind {
                        glibc::MapKind::Program => "program",
                        glibc::MapKind::Rtld => "interpreter",
                        glibc::MapKind::Library => "library",
                        glibc::MapKind::Vdso => "vdso",
                    }
                    .into(),
                    name: m.l_name.clone(),
                    path: m.path.as_ref().map(|p| p.display().to_string()),
                    base: hex(m.l_addr),
                    map_start: hex(m.l_map_start),
                    map_end: hex(m.l_map_end),
                    relro: m.relro.map(|(s, e)| [hex(s), hex(e)]),
                    tls_offset: m.tls_offset.map(hex),
                })
                .collect();
            let tls = l.tls.as_ref().map(|t| JsonTls {
                tp: Some(hex(t.tp)),
                block: Some([hex(t.allocated), hex(t.allocated + t.request)]),
                size: t.layout.static_size,
                align: t.layout.static_align,
            });
            let allocations = l
                .malloc
                .ledger
                .iter()
                .map(|a| JsonAllocation {
                    addr: hex(a.addr),
                    size: a.size,
                    what: a.what.clone(),
                    new_chunk: a.new_chunk,
                    reclaimed: a.reclaimed,
                })
                .collect();
            (Some("glibc"), objects, tls, allocations, l.warnings.clone())
        }
        Some(LoaderRun::Musl(l)) => {
            use crate::ldso::musl::DsoKind;
            let objects = l
                .dsos
                .iter()
                .map(|d| JsonObject {
                    kind: match d.kind {
                        DsoKind::App => "program",
                        DsoKind::Ldso => "interpreter",
                        DsoKind::Library => "library",
                        DsoKind::Vdso => "vdso",
                    }
                    .into(),
                    name: d.name.clone(),
                    path: d.path.as_ref().map(|p| p.display().to_string()),
                    base: hex(d.base),
                    map_start: hex(d.map),
                    map_end: hex(d.map + d.map_len),
                    relro: d.relro.map(|(s, e)| [hex(s), hex(e)]),
                    tls_offset: d.tls.map(|t| hex(t.offset)),
                })
                .collect();
            let tls = Some(JsonTls {
                tp: None,
                block: None,
                size: l.tls.tls_size,
                align: l.tls.tls_align,
            });
            (Some("musl"), objects, tls, Vec::new(), l.warnings.clone())
        }
    }
}
