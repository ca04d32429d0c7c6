//! JSON output, with its own serde types (the model's types stay free to change).

use std::io::{self, Write};

use serde::Serialize;

use crate::maps::MapsLine;
use crate::plan::Plan;

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
    maps: &'a [MapsLine],
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

fn hex(x: u64) -> String {
    format!("{x:#x}")
}

pub fn write(plan: &Plan, lines: &[MapsLine], out: &mut dyn Write) -> io::Result<()> {
    let e = &plan.exec;
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
        maps: lines,
    };
    serde_json::to_writer_pretty(&mut *out, &j).map_err(io::Error::other)?;
    writeln!(out)
}
