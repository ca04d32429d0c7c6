//! DOC: an annotated maps file as text, as `explain` writes a plan: what the lines tell as
//! a whole, the picture from the top, then every line (grouped by object) with its label,
//! how sure it is, and why, the rule first. Coloured as pwndbg's `vmmap` colours (the
//! caller strips the colour when the output is not a terminal).

use std::io::{self, Write};

use super::{Annotation, ObjectRole};
use crate::explain::text::{colours, human, picture_of, style_of, write_totals, BOLD, DIM};

/// The whole annotation.
pub fn write(a: &Annotation, w: &mut dyn Write) -> io::Result<()> {
    header(a, w)?;
    findings(a, w)?;
    picture_of(a.bits, &a.regions, w)?;
    writeln!(w)?;
    lines(a, w)?;
    write_totals(&a.totals, w)
}

fn header(a: &Annotation, w: &mut dyn Write) -> io::Result<()> {
    let n = a.lines.len();
    let mut facts = vec![
        format!("{n} maps line{}", if n == 1 { "" } else { "s" }),
        format!("{}-bit", a.bits),
    ];
    if let Some(l) = a.loader {
        facts.push(l.to_string());
    }
    if let Some(l) = a.layout {
        facts.push(format!("{l} layout"));
    }
    facts.push(match a.aslr {
        Some(true) => "ASLR on".into(),
        Some(false) => "ASLR off".into(),
        None => "ASLR unknown".into(),
    });
    writeln!(w, "{BOLD}{}{BOLD:#}: {}", a.source, facts.join(", "))?;
    writeln!(
        w,
        "each label says how sure it is: certain (the kernel's or a library's own name, or the object's headers), likely (what such a line nearly always is), guess (one of several things it could be)"
    )?;
    colours(w)?;
    writeln!(w)
}

fn findings(a: &Annotation, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{BOLD}What the lines tell{BOLD:#}")?;
    for f in &a.findings {
        writeln!(
            w,
            "  {} ({})  {DIM}[{}]{DIM:#}",
            f.text, f.confidence, f.source
        )?;
    }
    writeln!(w)
}

fn lines(a: &Annotation, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{BOLD}The maps lines, and what each is{BOLD:#}")?;
    let width = if a.bits == 64 { 12 } else { 8 };
    let mut current: Option<usize> = None;
    for (i, l) in a.lines.iter().enumerate() {
        for h in a.holes.iter().filter(|h| h.end == l.maps.start) {
            writeln!(
                w,
                "    {DIM}{:0width$x}-{:0width$x} ({}) unmapped{DIM:#}: {} ({})",
                h.start,
                h.end,
                human(h.end - h.start),
                h.label,
                h.confidence
            )?;
            writeln!(
                w,
                "      why: {}  {DIM}[{}]{DIM:#}",
                h.reason.text, h.reason.source
            )?;
        }
        // A group header where an object's lines begin.
        if l.object != current {
            current = l.object;
            if let Some(k) = l.object {
                let o = &a.objects[k];
                if o.lines.first() == Some(&i) {
                    let role = match o.role {
                        ObjectRole::Program => "the program",
                        ObjectRole::Interpreter => "the interpreter",
                        ObjectRole::Library => "a library",
                    };
                    let file = match &o.file {
                        Some(f) => format!("; here: {}", f.note),
                        None => String::new(),
                    };
                    writeln!(
                        w,
                        "  {BOLD}{}{BOLD:#}: {role} ({}: {}){file}",
                        o.path, o.role_confidence, o.role_reason.text
                    )?;
                }
            }
        }
        let s = style_of(&l.maps.perms, &l.maps.path, &l.label);
        writeln!(
            w,
            "{i:>3} {s}{}{s:#}{}",
            l.maps.render(),
            if l.deleted { " (deleted)" } else { "" }
        )?;
        let mut what = l.label.clone();
        if !l.sections.is_empty() {
            what = format!("{what}: {}", l.sections.join(" "));
        }
        writeln!(w, "      {what} ({})", l.confidence)?;
        if let Some(why) = &l.impossible {
            writeln!(w, "      {BOLD}impossible{BOLD:#}: {why}")?;
        }
        for p in &l.parts {
            writeln!(
                w,
                "      {:0width$x}-{:0width$x} {} ({}, {})",
                p.start,
                p.end,
                p.label,
                human(p.end - p.start),
                p.confidence
            )?;
        }
        for r in &l.reasons {
            writeln!(w, "      why: {}  {DIM}[{}]{DIM:#}", r.text, r.source)?;
        }
    }
    writeln!(w)
}
