//! A readable table of a plan: the key addresses, then one row per maps line with its size.

use std::io::{self, Write};

use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::maps::MapsLine;
use crate::plan::Plan;

#[derive(Tabled)]
struct Row {
    #[tabled(rename = "start")]
    start: String,
    #[tabled(rename = "end")]
    end: String,
    #[tabled(rename = "size")]
    size: String,
    #[tabled(rename = "perms")]
    perms: String,
    #[tabled(rename = "offset")]
    offset: String,
    #[tabled(rename = "dev:inode")]
    dev: String,
    #[tabled(rename = "mapping")]
    path: String,
}

/// A size in KiB/MiB/GiB for people.
pub fn human(n: u64) -> String {
    const K: u64 = 1024;
    if n >= K * K * K && n.is_multiple_of(K * K * K) {
        format!("{} GiB", n / (K * K * K))
    } else if n >= K * K {
        let m = n as f64 / (K * K) as f64;
        if n.is_multiple_of(K * K) {
            format!("{} MiB", n / (K * K))
        } else {
            format!("{m:.1} MiB")
        }
    } else {
        format!("{} KiB", n / K)
    }
}

pub fn write(plan: &Plan, lines: &[MapsLine], out: &mut dyn Write) -> io::Result<()> {
    let e = &plan.exec;
    let l = &e.mm.layout;
    writeln!(out, "program      {}", e.program_file.path.display())?;
    writeln!(
        out,
        "abi          {:?}, {}, stage {}",
        e.abi,
        if e.e_type == goblin::elf::header::ET_DYN {
            "ET_DYN"
        } else {
            "ET_EXEC"
        },
        plan.stage
    )?;
    writeln!(out, "kernel       {}", e.kernel.describe())?;
    writeln!(
        out,
        "layout       {} (mmap_base {:#x}, legacy base {:#x}), TASK_SIZE {:#x}",
        if l.topdown {
            "flexible/top-down"
        } else {
            "legacy/bottom-up"
        },
        l.mmap_base,
        l.mmap_legacy_base,
        l.task_size
    )?;
    writeln!(
        out,
        "load_bias    {:#x}   e_entry {:#x}",
        e.load_bias, e.e_entry
    )?;
    if let Some(i) = &e.interp {
        writeln!(
            out,
            "interpreter  {} at {:#x} (AT_BASE)",
            i.path.display(),
            i.load_addr
        )?;
    }
    writeln!(
        out,
        "start_brk    {:#x}   start_stack {:#x}   stack_top {:#x}",
        plan.mm.start_brk, plan.mm.start_stack, e.stack.stack_top
    )?;
    if plan.stage == crate::plan::Stage::Entry {
        // Where memory made by constructors would go: brk grows from start_brk, and the next
        // hint-less anonymous mmap (e.g. a malloc arena) goes where get_unmapped_area puts it.
        let next = crate::mm::unmapped_area::get_unmapped_area(
            &plan.mm,
            &crate::mm::SearchRequest {
                addr: 0,
                len: crate::addr::PAGE_SIZE,
                fixed: false,
                file_offset: None,
                thp_capable_file: false,
                shared: false,
            },
        );
        if let Ok(a) = next {
            writeln!(
                out,
                "initializers [heap] would start at start_brk {:#x}; a new anonymous mmap would end at {:#x}",
                plan.mm.start_brk,
                a + crate::addr::PAGE_SIZE
            )?;
        }
    }
    let rows: Vec<Row> = lines
        .iter()
        .map(|m| Row {
            start: format!("{:x}", m.start),
            end: format!("{:x}", m.end),
            size: human(m.end - m.start),
            perms: m.perms.clone(),
            offset: format!("{:x}", m.offset),
            dev: format!("{:02x}:{:02x} {}", m.dev_major, m.dev_minor, m.inode),
            path: if m.path.is_empty() {
                "(anonymous)".into()
            } else {
                m.path.clone()
            },
        })
        .collect();
    let mut t = Table::new(rows);
    t.with(Style::psql());
    writeln!(out, "{t}")
}
