//! The entry stop: library constructors run before AT_ENTRY and may grow the heap or map
//! memory that no header announces. Such real lines are "made by initializers" when they
//! sit where the model allows new memory: `[heap]` from `start_brk`, anonymous or file
//! mappings in free space of the mmap area (and anonymous regions that grew by merging with
//! a predicted anonymous neighbour). Everything else is a mismatch.

use crate::maps::MapsLine;
use crate::mm::AddressSpace;

/// The verdict on an entry-stage comparison.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EntryVerdict {
    /// Real lines explained as initializers' work.
    pub by_initializers: Vec<String>,
    /// Predicted lines absorbed into such regions (an anonymous region that grew).
    pub absorbed: Vec<String>,
    /// Lines that differ for no modelled reason.
    pub mismatches: Vec<String>,
}

impl EntryVerdict {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

fn overlaps(a: &MapsLine, b: &MapsLine) -> bool {
    a.start < b.end && b.start < a.end
}

/// Classify the predicted-only and observed-only lines of an entry-stage diff.
pub fn classify(
    mm: &AddressSpace,
    predicted_only: &[String],
    observed_only: &[String],
) -> EntryVerdict {
    let parse = |v: &[String]| -> Vec<(String, Option<MapsLine>)> {
        v.iter()
            .map(|s| (s.clone(), MapsLine::parse(s).ok()))
            .collect()
    };
    let pred = parse(predicted_only);
    let obs = parse(observed_only);
    let predicted_all = crate::render::maps::lines(mm);
    let l = &mm.layout;
    let mut verdict = EntryVerdict::default();
    let mut absorbed = vec![false; pred.len()];
    for (text, o) in &obs {
        let Some(o) = o else {
            verdict.mismatches.push(format!("+ {text}"));
            continue;
        };
        let anon = o.inode == 0 && (o.path.is_empty() || o.path == "[heap]");
        // Predicted lines this real line covers (merging can only grow anonymous memory).
        let covered: Vec<usize> = pred
            .iter()
            .enumerate()
            .filter(|(_, (_, p))| p.as_ref().is_some_and(|p| overlaps(p, o)))
            .map(|(i, _)| i)
            .collect();
        let grows_predicted = covered.iter().all(|&i| {
            let p = pred[i].1.as_ref().unwrap();
            anon && p.inode == 0 && p.perms == o.perms && p.start >= o.start && p.end <= o.end
        });
        // Everything else predicted must not overlap it (new memory goes to free space).
        let clashes = predicted_all
            .iter()
            .any(|p| overlaps(p, o) && !covered.iter().any(|&i| pred[i].1.as_ref() == Some(p)));
        // The heap starts at start_brk; a kernel whose brk() grows the VMA below it (the
        // .bss tail, up to v6.0) shows both as one [heap] line.
        let grown_bss = mm.rules.brk_merges_below
            && o.start < mm.start_brk
            && o.end > mm.start_brk
            && covered
                .iter()
                .any(|&i| pred[i].1.as_ref().is_some_and(|p| p.start == o.start));
        let heap_ok = o.path == "[heap]" && (o.start == mm.start_brk || grown_bss);
        let in_mmap_area = if l.topdown {
            o.end <= l.mmap_base && o.start >= l.mmap_min_addr
        } else {
            o.start >= l.mmap_legacy_base && o.end <= l.task_size
        };
        if grows_predicted && !clashes && (heap_ok || (o.path != "[heap]" && in_mmap_area)) {
            verdict.by_initializers.push(text.clone());
            for i in covered {
                absorbed[i] = true;
            }
        } else {
            verdict.mismatches.push(format!("+ {text}"));
        }
    }
    for (i, (text, _)) in pred.iter().enumerate() {
        if absorbed[i] {
            verdict.absorbed.push(text.clone());
        } else {
            verdict.mismatches.push(format!("- {text}"));
        }
    }
    verdict
}
