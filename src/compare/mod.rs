//! Line-by-line comparison of predicted and observed maps (start, end, perms, offset, dev,
//! inode, path): a diff of the rendered lines.

pub mod aslr;
pub mod entropy;
pub mod entry;
pub mod recorded;

use similar::{ChangeTag, TextDiff};

use crate::maps::MapsLine;

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "line", rename_all = "lowercase")]
pub enum DiffLine {
    /// In both.
    Same(String),
    /// Only in the prediction.
    Predicted(String),
    /// Only in the real process.
    Observed(String),
}

/// The comparison of two maps texts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Diff {
    pub lines: Vec<DiffLine>,
}

impl Diff {
    /// Diff `predicted` against `observed` (both whole maps texts).
    pub fn new(predicted: &str, observed: &str) -> Diff {
        let d = TextDiff::from_lines(predicted, observed);
        let lines = d
            .iter_all_changes()
            .map(|c| {
                let s = c.value().trim_end_matches('\n').to_string();
                match c.tag() {
                    ChangeTag::Equal => DiffLine::Same(s),
                    ChangeTag::Delete => DiffLine::Predicted(s),
                    ChangeTag::Insert => DiffLine::Observed(s),
                }
            })
            .collect();
        Diff { lines }
    }

    /// The lines only in the prediction, and only in the real process.
    pub fn one_sided(&self) -> (Vec<String>, Vec<String>) {
        let mut p = Vec::new();
        let mut o = Vec::new();
        for l in &self.lines {
            match l {
                DiffLine::Predicted(t) => p.push(t.clone()),
                DiffLine::Observed(t) => o.push(t.clone()),
                DiffLine::Same(_) => {}
            }
        }
        (p, o)
    }

    pub fn identical(&self) -> bool {
        self.lines.iter().all(|l| matches!(l, DiffLine::Same(_)))
    }

    /// Number of lines that differ (predicted-only plus observed-only).
    pub fn differing(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| !matches!(l, DiffLine::Same(_)))
            .count()
    }

    /// The diff as text: `  ` same, `- ` predicted only, `+ ` real only.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let (p, t) = match l {
                DiffLine::Same(t) => ("  ", t),
                DiffLine::Predicted(t) => ("- ", t),
                DiffLine::Observed(t) => ("+ ", t),
            };
            s.push_str(p);
            s.push_str(t);
            s.push('\n');
        }
        s
    }
}

/// A short form of a maps line for side-by-side display: range, perms, offset, and the
/// name's last component.
fn short(line: &str) -> String {
    match crate::maps::MapsLine::parse(line) {
        Ok(l) => {
            let name = l.path.rsplit('/').next().unwrap_or("");
            let range = format!("{:08x}-{:08x}", l.start, l.end);
            format!("{range:<33} {} {:>8x} {}", l.perms, l.offset, name)
        }
        Err(_) => line.to_string(),
    }
}

impl Diff {
    /// Predicted and real lines next to each other (`=` same, `<` predicted only,
    /// `>` real only), each shortened to range, perms, offset and file name.
    pub fn render_side_by_side(&self) -> String {
        const W: usize = 66;
        let mut s = format!(
            "{:<W$}   {}\n",
            "predicted (elfmap plan)", "real (/proc/PID/maps)"
        );
        for l in &self.lines {
            let row = match l {
                DiffLine::Same(t) => {
                    let x = short(t);
                    format!("{x:<W$} = {x}")
                }
                DiffLine::Predicted(t) => format!("{:<W$} <", short(t)),
                DiffLine::Observed(t) => format!("{:<W$} > {}", "", short(t)),
            };
            s.push_str(row.trim_end());
            s.push('\n');
        }
        s
    }
}

/// The maps text normalised for a comparison across machines: device and inode numbers
/// zeroed (another machine, or this one after a reinstall, numbers its files differently),
/// each line printed as a kernel padding its name column to `pad` prints it, paths starting
/// with `relocate.0` read as starting with `relocate.1`.
pub fn without_ids(text: &str, pad: usize, relocate: Option<&(String, String)>) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| match MapsLine::parse(l) {
            Ok(mut m) => {
                m.dev_major = 0;
                m.dev_minor = 0;
                m.inode = 0;
                if let Some((from, to)) = relocate {
                    if let Some(rest) = m.path.strip_prefix(from.as_str()) {
                        m.path = format!("{to}{rest}");
                    }
                }
                m.render_padded(pad)
            }
            Err(_) => l.to_string(),
        })
        .collect()
}

/// [`Diff::new`] of two maps texts from different machines: [`without_ids`] on both.
pub fn diff_without_ids(predicted: &str, observed: &str, pad: usize) -> Diff {
    let join = |v: Vec<String>| v.into_iter().map(|l| l + "\n").collect::<String>();
    Diff::new(
        &join(without_ids(predicted, pad, None)),
        &join(without_ids(observed, pad, None)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn detects_changed_line() {
        let d = Diff::new("a\nb\nc\n", "a\nB\nc\n");
        assert!(!d.identical());
        assert_eq!(d.differing(), 2);
        assert!(Diff::new("a\n", "a\n").identical());
    }
}
