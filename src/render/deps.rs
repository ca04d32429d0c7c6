//! `elfmap deps`: the dependency tree, with the path the loader chose for each library and
//! why, and what is missing.

use std::io::{self, Write};

use crate::ldso::{DepGraph, FoundVia};

/// Why the loader took this file, in words.
pub fn found_via(g: &DepGraph, v: FoundVia) -> String {
    let name = |i: usize| {
        g.objects
            .get(i)
            .map(|o| {
                o.realpath
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    match v {
        FoundVia::Program => "the program".into(),
        FoundVia::Preload => "preloaded".into(),
        FoundVia::SlashName => "name with '/', opened as is".into(),
        FoundVia::Rpath { of } => format!("DT_RPATH of {}", name(of)),
        FoundVia::LdLibraryPath => "LD_LIBRARY_PATH".into(),
        FoundVia::Runpath { of } => format!("DT_RUNPATH of {}", name(of)),
        FoundVia::Cache => "ld.so.cache".into(),
        FoundVia::DefaultDir => "default directory".into(),
        FoundVia::Loader => "the dynamic loader itself".into(),
    }
}

/// The tree: each object's DT_NEEDED in order; an object seen before is not expanded again.
pub fn write_tree(g: &DepGraph, out: &mut dyn Write) -> io::Result<()> {
    let Some(prog) = g.objects.first() else {
        return Ok(());
    };
    writeln!(out, "{}", prog.realpath.display())?;
    let mut expanded = vec![false; g.objects.len()];
    expanded[0] = true;
    walk(g, 0, "", &mut expanded, out)?;
    writeln!(out)?;
    writeln!(out, "load order ({} objects):", g.objects.len())?;
    for (i, o) in g.objects.iter().enumerate() {
        writeln!(
            out,
            "  {i:>3}  {:<28} {}  [{}]",
            o.requested,
            o.realpath.display(),
            found_via(g, o.found_via)
        )?;
    }
    for m in &g.missing {
        let by = g
            .objects
            .get(m.needed_by)
            .map(|o| o.requested.as_str())
            .unwrap_or("?");
        write!(out, "missing: {} (needed by {by})", m.name)?;
        match (m.tried.first(), m.tried.last()) {
            (Some(a), Some(b)) if m.tried.len() > 2 => writeln!(
                out,
                "; tried {} files, from {} to {} (--json lists them all)",
                m.tried.len(),
                a.display(),
                b.display()
            )?,
            _ => {
                writeln!(out, "; tried:")?;
                for t in &m.tried {
                    writeln!(out, "    {}", t.display())?;
                }
            }
        }
    }
    Ok(())
}

fn walk(
    g: &DepGraph,
    i: usize,
    prefix: &str,
    expanded: &mut [bool],
    out: &mut dyn Write,
) -> io::Result<()> {
    let o = &g.objects[i];
    let names: Vec<String> = o
        .dynamic
        .as_ref()
        .map(|d| d.needed.clone())
        .unwrap_or_default();
    let mut found = o.needed.iter();
    let n = names.len();
    for (k, name) in names.iter().enumerate() {
        let last = k + 1 == n;
        let (branch, cont) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let missing = g
            .missing
            .iter()
            .any(|m| m.needed_by == i && &m.name == name);
        if missing {
            writeln!(out, "{prefix}{branch}{name} => NOT FOUND")?;
            continue;
        }
        let Some(&j) = found.next() else {
            writeln!(out, "{prefix}{branch}{name}")?;
            continue;
        };
        let d = &g.objects[j];
        if expanded[j] {
            writeln!(out, "{prefix}{branch}{name} (already loaded)")?;
            continue;
        }
        expanded[j] = true;
        writeln!(
            out,
            "{prefix}{branch}{name} => {} [{}]",
            d.realpath.display(),
            found_via(g, d.found_via)
        )?;
        walk(g, j, &format!("{prefix}{cont}"), expanded, out)?;
    }
    Ok(())
}
