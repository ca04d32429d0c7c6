//! DOC: an explanation as text for a reader: the picture from the top down, each maps line
//! with what it holds and why, every object's sections, the top of the stack, totals as
//! `pmap` gives them. Permissions are coloured as pwndbg's `vmmap` colours them (code red,
//! data magenta, stack yellow, heap blue, writable-and-executable underlined); the caller
//! strips the colour when the output is not a terminal or NO_COLOR is set.

use std::io::{self, Write};

use anstyle::{AnsiColor, Effects, Style};

use super::find::{AddressHit, StringHit, SymbolHit};
use super::{Explanation, Line, ObjectView, RegionKind};
use crate::mm::Role;

pub(crate) const BOLD: Style = Style::new().effects(Effects::BOLD);
pub(crate) const DIM: Style = Style::new().effects(Effects::DIMMED);

/// The style of a maps line, as pwndbg's `vmmap` colours it.
fn line_style(l: &Line) -> Style {
    style_of(&l.maps.perms, &l.maps.path, &l.label)
}

/// The style of a maps line with these permissions, name and label, as pwndbg's `vmmap`
/// colours it.
pub(crate) fn style_of(perms: &str, path: &str, label: &str) -> Style {
    let p = perms.as_bytes();
    if p.len() < 4 {
        return Style::new();
    }
    let base = if path == "[stack]" || label == "thread stack" {
        Style::new().fg_color(Some(AnsiColor::Yellow.into()))
    } else if path == "[heap]" || label.ends_with("heap") || label == "malloc arena" {
        Style::new().fg_color(Some(AnsiColor::Blue.into()))
    } else if p[2] == b'x' {
        Style::new().fg_color(Some(AnsiColor::Red.into()))
    } else if p[1] == b'w' {
        Style::new().fg_color(Some(AnsiColor::Magenta.into()))
    } else if p[0] == b'-' {
        DIM
    } else {
        Style::new()
    };
    if p[1] == b'w' && p[2] == b'x' {
        base.effects(Effects::UNDERLINE)
    } else {
        base
    }
}

pub(crate) fn region_style(k: RegionKind) -> Style {
    let c = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match k {
        RegionKind::Stack => c(AnsiColor::Yellow),
        RegionKind::Heap => c(AnsiColor::Blue),
        RegionKind::ProgramText => c(AnsiColor::Red),
        RegionKind::ProgramData | RegionKind::ProgramBss => c(AnsiColor::Magenta),
        RegionKind::MmapArea => c(AnsiColor::Cyan),
        RegionKind::KernelSpace | RegionKind::NonCanonical | RegionKind::NullGuard => DIM,
        _ => Style::new(),
    }
}

/// `n` bytes in binary units ("4 KiB", "1.5 MiB", "128 TiB").
pub fn human(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 || v >= 100.0 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}

fn short(o: &ObjectView) -> String {
    o.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| o.path.display().to_string())
}

/// An address as this explanation states it: the number when the draw is known (ASLR
/// off, or `--seed`), else `object+offset`.
fn at(x: &Explanation, object: Option<usize>, addr: u64) -> String {
    match object.map(|k| &x.objects[k]) {
        Some(o) if !x.concrete() && o.random.is_some() => {
            format!("{}+{:#x}", short(o), addr.wrapping_sub(o.base))
        }
        _ => format!("{addr:#x}"),
    }
}

/// The whole explanation.
pub fn write(x: &Explanation, w: &mut dyn Write) -> io::Result<()> {
    header(x, w)?;
    picture(x, w)?;
    lines(x, w)?;
    for (k, _) in x.objects.iter().enumerate() {
        object_sections(x, k, w)?;
    }
    stack(x, w)?;
    draws(x, w)?;
    write_totals(&x.totals, w)
}

fn header(x: &Explanation, w: &mut dyn Write) -> io::Result<()> {
    let prog = &x.objects[0];
    let libs = x.objects.iter().filter(|o| o.role == Role::Library).count();
    let interp = x
        .objects
        .iter()
        .find(|o| o.role == Role::Interpreter)
        .map(|o| format!("interpreter {}", o.path.display()))
        .unwrap_or_else(|| "static (no PT_INTERP)".into());
    writeln!(
        w,
        "{BOLD}{}{BOLD:#}: {}-bit {}, {interp}, {libs} {}; {} stage; ASLR {}",
        x.program.display(),
        x.bits,
        x.kind,
        if libs == 1 { "library" } else { "libraries" },
        x.stage,
        if x.aslr { "on" } else { "off" },
    )?;
    if x.aslr && !x.concrete() {
        writeln!(
            w,
            "ASLR is on: the addresses below are one random draw. What holds for every run is \
             each address's offset from its base (shown as object+offset), and each base's \
             range (below); --seed N gives the addresses of one reproducible draw, --no-aslr \
             those of setarch -R."
        )?;
    }
    let _ = prog;
    colours(w)?;
    writeln!(w)
}

/// The key to the colours.
pub(crate) fn colours(w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "colours: {}code{:#} {}data{:#} read-only {}stack{:#} {}heap{:#} {}rwx{:#} {}---p{:#}",
        Style::new().fg_color(Some(AnsiColor::Red.into())),
        Style::new(),
        Style::new().fg_color(Some(AnsiColor::Magenta.into())),
        Style::new(),
        Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Style::new(),
        Style::new().fg_color(Some(AnsiColor::Blue.into())),
        Style::new(),
        Style::new().effects(Effects::UNDERLINE),
        Style::new(),
        DIM,
        Style::new(),
    )?;
    Ok(())
}

fn picture(x: &Explanation, w: &mut dyn Write) -> io::Result<()> {
    picture_of(x.bits, &x.regions, w)
}

/// The regions of the picture, from the top.
pub(crate) fn picture_of(
    bits: u32,
    regions: &[super::Region],
    w: &mut dyn Write,
) -> io::Result<()> {
    writeln!(w, "{BOLD}The address space, from the top{BOLD:#}")?;
    let width = if bits == 64 { 16 } else { 8 };
    let mut below: Option<u64> = None;
    for r in regions {
        if let Some(b) = below {
            if r.end < b {
                writeln!(
                    w,
                    "  {:>width$}  {:>9}  {DIM}(unmapped){DIM:#}",
                    "",
                    human(b - r.end),
                )?;
            }
        }
        let s = region_style(r.kind);
        writeln!(
            w,
            "  {:0width$x}-{:0width$x}  {:>9}  {s}{}{s:#}",
            r.start,
            r.end,
            human(r.end.wrapping_sub(r.start)),
            r.name,
        )?;
        writeln!(
            w,
            "  {:>width$}   {DIM}{}{DIM:#}",
            "",
            r.note,
            width = 2 * width + 10
        )?;
        if let Some(b) = &r.random {
            writeln!(
                w,
                "  {:>width$}   {} is random: in [{:#x}, {:#x}] ({:.0} bits)",
                "",
                b.what,
                b.low,
                b.high,
                b.bits,
                width = 2 * width + 10
            )?;
        }
        below = Some(below.map_or(r.start, |b| b.min(r.start)));
    }
    writeln!(w)
}

fn lines(x: &Explanation, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{BOLD}The maps lines, and why each is there{BOLD:#}")?;
    for (i, l) in x.lines.iter().enumerate() {
        let s = line_style(l);
        writeln!(w, "{i:>3} {s}{}{s:#}", l.maps.render())?;
        let mut what = l.label.clone();
        if !l.sections.is_empty() {
            what = format!("{what}: {}", l.sections.join(" "));
        }
        if !what.is_empty() {
            writeln!(w, "      {what}")?;
        }
        for r in &l.reasons {
            writeln!(w, "      why: {}  {DIM}[{}]{DIM:#}", r.text, r.source)?;
        }
    }
    writeln!(w)
}

fn object_sections(x: &Explanation, k: usize, w: &mut dyn Write) -> io::Result<()> {
    let o = &x.objects[k];
    let role = match o.role {
        Role::Program => "the program",
        Role::Interpreter => "the interpreter",
        Role::Library => "library",
    };
    writeln!(
        w,
        "{BOLD}Sections of {} ({role}){BOLD:#}, base {}{}",
        o.path.display(),
        at(x, None, o.base),
        match &o.random {
            Some(b) if x.aslr => format!(
                " (random: {}; in [{:#x}, {:#x}], {:.0} bits)",
                b.what, b.low, b.high, b.bits
            ),
            _ => String::new(),
        }
    )?;
    match o.symbols {
        Some(crate::elf::sections::SymbolTable::Symtab) => {}
        Some(crate::elf::sections::SymbolTable::Dynsym) => writeln!(
            w,
            "  stripped: no .symtab, symbols from .dynsym (the exported ones) only"
        )?,
        None => writeln!(w, "  no symbol table")?,
    }
    if o.sections.is_empty() {
        writeln!(w, "  no section headers (the loader needs none)")?;
    }
    let concrete = x.concrete() || o.random.is_none();
    if !concrete {
        writeln!(w, "  (offsets from the base: the base moves with each run)")?;
    }
    for s in &o.sections {
        let (a, b) = if concrete {
            (format!("{:x}", s.start), format!("{:x}", s.end))
        } else {
            (
                format!("+{:x}", s.start - o.base),
                format!("+{:x}", s.end - o.base),
            )
        };
        writeln!(
            w,
            "  {:<22} {:>16}-{:<16} {:>9}  {}{}",
            s.name,
            a,
            b,
            human(s.end - s.start),
            s.line.map(|l| format!("line {l}")).unwrap_or_default(),
            if s.tls {
                "  (TLS template: each thread's copy is elsewhere)"
            } else {
                ""
            }
        )?;
    }
    writeln!(w)
}

fn stack(x: &Explanation, w: &mut dyn Write) -> io::Result<()> {
    let s = &x.stack;
    writeln!(
        w,
        "{BOLD}The top of the stack{BOLD:#} (fs/binfmt_elf.c: create_elf_tables(), fs/exec.c: copy_strings())"
    )?;
    let mut rows = [
        (s.top, "the top of the stack VMA"),
        (s.execfn, "AT_EXECFN: the filename string"),
        (s.env_strings, "the environment strings (mm->env_start)"),
        (s.arg_strings, "the argument strings (mm->arg_start)"),
        (s.platform, "AT_PLATFORM: the platform string"),
        (
            s.random_bytes,
            "AT_RANDOM: 16 random bytes (stack protector, pointer guard)",
        ),
        (s.auxv, "auxv: the auxiliary vector (type, value pairs)"),
        (s.envp, "envp[]: pointers to the environment strings"),
        (s.argv, "argv[]: pointers to the argument strings"),
        (s.argc, "argc: the stack pointer at the entry point"),
    ];
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (a, what) in rows {
        if x.concrete() {
            writeln!(w, "  {a:#018x}  {what}")?;
        } else {
            writeln!(w, "  top-{:<#8x}  {what}", s.top - a)?;
        }
    }
    if !x.concrete() {
        writeln!(
            w,
            "  (offsets from the top of the stack VMA; it moves with randomize_stack_top() and arch_align_stack())"
        )?;
    }
    writeln!(w)
}

fn draws(x: &Explanation, w: &mut dyn Write) -> io::Result<()> {
    if x.draws.is_empty() {
        return Ok(());
    }
    writeln!(w, "{BOLD}The kernel's random draws at exec{BOLD:#}")?;
    for d in &x.draws {
        writeln!(
            w,
            "  {:<46} {:#x} of [0, {:#x}] in steps of {:#x} ({:.1} bits)",
            d.kind.describe(),
            d.value,
            d.max(),
            d.unit,
            d.bits()
        )?;
    }
    writeln!(w)
}

/// The totals as pmap gives them (a plan's and a pasted maps file's alike).
pub(crate) fn write_totals(t: &super::Totals, w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "{BOLD}Totals{BOLD:#} (as pmap): {} mapped (VSZ), {} file-backed, {} anonymous",
        human(t.total),
        human(t.file_backed),
        human(t.anonymous)
    )?;
    for (p, n) in &t.per_object {
        writeln!(w, "  {:>9}  {p}", human(*n))?;
    }
    Ok(())
}

/// The answers to `--symbol`.
pub fn write_symbols(
    x: &Explanation,
    name: &str,
    hits: &[SymbolHit],
    w: &mut dyn Write,
) -> io::Result<()> {
    if hits.is_empty() {
        let stripped: Vec<String> = x
            .objects
            .iter()
            .filter(|o| o.symbols != Some(crate::elf::sections::SymbolTable::Symtab))
            .map(short)
            .collect();
        writeln!(
            w,
            "{name}: not found in {} objects{}",
            x.objects.len(),
            if stripped.is_empty() {
                String::new()
            } else {
                format!(
                    " (no .symtab, only exported symbols searched: {})",
                    stripped.join(", ")
                )
            }
        )?;
        return Ok(());
    }
    for h in hits {
        let o = &x.objects[h.object];
        let addr = match h.address {
            Some(a) => at(x, Some(h.object), a),
            None => "(no address)".into(),
        };
        let name = match &h.version {
            Some(v) if h.hidden_version => format!("{}@{v}", h.name),
            Some(v) => format!("{}@@{v}", h.name),
            None => h.name.clone(),
        };
        writeln!(
            w,
            "{BOLD}{}{BOLD:#} {addr}  {} {} in {} of {} ({}){}",
            name,
            h.binding,
            h.kind,
            h.section,
            o.path.display(),
            match h.table {
                crate::elf::sections::SymbolTable::Symtab => ".symtab",
                crate::elf::sections::SymbolTable::Dynsym => ".dynsym: no .symtab",
            },
            if h.bound {
                ": the definition the loader binds references to"
            } else if h.hidden_version {
                ": an old version, bound only by programs linked against it"
            } else if hits.iter().any(|g| g.bound) && h.exported {
                ": preempted: the lookup finds another definition first"
            } else {
                ""
            }
        )?;
        writeln!(
            w,
            "    value {:#x}, size {}, {}",
            h.value,
            h.size,
            h.line
                .map(|l| format!("maps line {l}: {}", x.lines[l].maps.render()))
                .unwrap_or_else(|| "in no maps line".into())
        )?;
        if let Some(n) = &h.note {
            writeln!(w, "    {n}")?;
        }
    }
    Ok(())
}

/// The answers to `--string`.
pub fn write_strings(
    x: &Explanation,
    text: &str,
    hits: &[StringHit],
    all_objects: bool,
    w: &mut dyn Write,
) -> io::Result<()> {
    if hits.is_empty() {
        writeln!(
            w,
            "{text:?}: not found in the allocated sections of {}",
            if all_objects {
                "any object"
            } else {
                "the program (--all-objects searches the libraries too)"
            }
        )?;
        return Ok(());
    }
    const SHOWN: usize = 20;
    if hits.len() > SHOWN {
        writeln!(
            w,
            "{text:?}: {} occurrences (whole strings first); the first {SHOWN}, --format json lists all:",
            hits.len()
        )?;
    }
    let mut order: Vec<&StringHit> = hits.iter().collect();
    order.sort_by_key(|h| !h.whole);
    for h in order.into_iter().take(SHOWN) {
        writeln!(
            w,
            "{BOLD}{text:?}{BOLD:#} {}  in {} of {} (file offset {:#x}){}; {}",
            at(x, Some(h.object), h.address),
            h.section,
            x.objects[h.object].path.display(),
            h.file_offset,
            if h.whole {
                ""
            } else {
                ", part of a longer string"
            },
            h.line
                .map(|l| format!("maps line {l}"))
                .unwrap_or_else(|| "in no maps line".into())
        )?;
    }
    Ok(())
}

/// The answer to `--address`.
pub fn write_address(x: &Explanation, h: &AddressHit, w: &mut dyn Write) -> io::Result<()> {
    write!(w, "{BOLD}{:#x}{BOLD:#}: ", h.address)?;
    match h.line {
        None => writeln!(w, "not mapped: {}", h.why),
        Some(l) => {
            let line = &x.lines[l];
            let mut what = Vec::new();
            if let Some(k) = h.object {
                let o = &x.objects[k];
                what.push(if o.base == 0 {
                    o.path.display().to_string()
                } else {
                    format!("{} +{:#x}", o.path.display(), h.address - o.base)
                });
            }
            if let Some(s) = &h.section {
                what.push(s.clone());
            }
            if let Some((s, off)) = &h.symbol {
                what.push(format!("{s}+{off:#x}"));
            }
            if what.is_empty() {
                what.push(line.label.clone());
            }
            writeln!(w, "{}", what.join(", "))?;
            writeln!(w, "    maps line {l}: {}", line.maps.render())?;
            writeln!(w, "    why: {}", h.why)
        }
    }
}
