//! The maps text of a modelled address space: each VMA named as
//! `fs/proc/task_mmu.c: get_vma_name()` names it, formatted by [`crate::maps`].

use crate::maps::{write_line, Fields, MapsLine};
use crate::mm::{AddressSpace, Backing, Prot, Vma};

/// The name `fs/proc/task_mmu.c: get_vma_name()` gives a VMA: the file path, a special
/// mapping's name, `[heap]` for an anonymous VMA overlapping `[start_brk, brk)`
/// (`vma_is_initial_heap()`, v6.7+; before, `show_map_vma()` also named one that only
/// touches it: [`crate::mm::rules::MmRules::heap_exclusive`]), `[stack]` for the VMA
/// holding `start_stack` (`vma_is_initial_stack()`), or nothing.
fn vma_name<'a>(mm: &AddressSpace, v: &'a Vma) -> std::borrow::Cow<'a, str> {
    match &v.backing {
        // The fast check first: to_string_lossy() walks the bytes one at a time.
        Backing::File { file, .. } => match file.path.to_str() {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => file.path.to_string_lossy(),
        },
        Backing::Special(n) => std::borrow::Cow::Borrowed(n),
        Backing::Anon => std::borrow::Cow::Borrowed(if is_heap(mm, v) {
            "[heap]"
        } else if v.start <= mm.start_stack && v.end >= mm.start_stack {
            "[stack]"
        } else {
            ""
        }),
    }
}

/// Whether `v` is the initial heap as this kernel's maps names it.
fn is_heap(mm: &AddressSpace, v: &Vma) -> bool {
    if mm.rules.heap_exclusive {
        v.start < mm.brk && v.end > mm.start_brk
    } else {
        v.start <= mm.brk && v.end >= mm.start_brk
    }
}

/// The four permission characters of a VMA (`rwxp` / `r--s` ...).
fn perm_chars(prot: Prot, shared: bool) -> [u8; 4] {
    [
        if prot.read { b'r' } else { b'-' },
        if prot.write { b'w' } else { b'-' },
        if prot.exec { b'x' } else { b'-' },
        if shared { b's' } else { b'p' },
    ]
}

/// Each maps line of an address space, in address order, the gate VMA (`[vsyscall]`) last
/// (`fs/proc/task_mmu.c: m_next()` ends with `get_gate_vma()`), as its
/// columns: what [`lines`] collects and [`render`] prints.
fn for_each_line(mm: &AddressSpace, mut f: impl FnMut(Fields)) {
    for v in mm.vmas().chain(&mm.gate_vma) {
        let perms = perm_chars(v.prot, v.shared);
        let name = vma_name(mm, v);
        let (dev, inode, offset) = match &v.backing {
            Backing::File { file, offset } => ((file.dev_major, file.dev_minor), file.ino, *offset),
            _ => ((0, 0), 0, 0),
        };
        f(Fields {
            start: v.start,
            end: v.end,
            perms: std::str::from_utf8(&perms).expect("ASCII"),
            offset,
            dev,
            inode,
            path: &name,
            pad: mm.rules.name_pad,
        });
    }
}

/// The maps lines of an address space, in address order, `[vsyscall]` last.
pub fn lines(mm: &AddressSpace) -> Vec<MapsLine> {
    let mut out = Vec::with_capacity(mm.vmas().len() + 1);
    for_each_line(mm, |f| {
        out.push(MapsLine {
            start: f.start,
            end: f.end,
            perms: f.perms.to_string(),
            offset: f.offset,
            dev_major: f.dev.0,
            dev_minor: f.dev.1,
            inode: f.inode,
            path: f.path.to_string(),
        })
    });
    out
}

/// The whole maps text of an address space, one line per VMA, each ending in a newline
/// (what [`lines`] would give, rendered, without building them).
pub fn render(mm: &AddressSpace) -> String {
    let mut s = Vec::with_capacity((mm.vmas().len() + 1) * 110);
    for_each_line(mm, |f| {
        write_line(&mut s, f);
        s.push(b'\n');
    });
    String::from_utf8(s).expect("maps lines are built from str")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `render()` writes what `lines()` gives, line by line.
    #[test]
    fn render_matches_lines() {
        let machine = crate::HostFacts::detect();
        let target = crate::Target::resolve("/bin/sh".as_ref(), &[]).unwrap();
        let cfg = crate::Config::no_aslr(crate::Stage::Loaded);
        let plan = crate::plan(&target, &cfg, &machine).unwrap();
        let text: String = lines(&plan.mm).iter().map(|l| l.render() + "\n").collect();
        assert_eq!(render(&plan.mm), text);
        assert!(text.lines().count() > 10);
    }
}
