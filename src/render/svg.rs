//! DOC: the picture of an address space as SVG, in the style of the classic "anatomy of a
//! program in memory" diagram: one vertical bar from the top of the address space (kernel
//! space) down to address 0, with the stack, the mmap area and its libraries, the heap and
//! the program's segments, each maps line a block coloured by its permissions; the region
//! names on the left, the addresses on the axis, what each block is on the right (with a
//! leader line), the growth directions as arrows, each random draw's range as a hatched band.
//!
//! A 32-bit address space is drawn to scale (small regions get a minimum height, and the
//! footnote says so); a 64-bit one has a broken axis: unmapped gaps of terabytes are cut
//! short (zig-zag) with their size written in, and blocks grow with the logarithm of their
//! size, so that a 4 KiB page and the 128 TiB of user space are both visible.
//!
//! Plain string building: every text and attribute goes through [`esc`].

use std::fmt::Write as _;

use crate::explain::text::human;
use crate::explain::{Explanation, RegionKind};
use crate::mm::Role;

/// The picture's width; its height grows with the content.
const WIDTH: f64 = 1200.0;
/// Region names, right-aligned here, with a bracket at [`BRACKET_X`].
const REGION_RIGHT: f64 = 192.0;
const BRACKET_X: f64 = 204.0;
/// Addresses on the axis, right-aligned here.
const AXIS_RIGHT: f64 = 372.0;
/// The bar of the address space.
const BAR_X: f64 = 386.0;
const BAR_W: f64 = 264.0;
/// Two narrow columns for the random ranges, right of the bar.
const BAND_X: f64 = BAR_X + BAR_W + 8.0;
const BAND_W: f64 = 12.0;
/// The labels of the blocks (and bands), left-aligned here.
const LABEL_X: f64 = 720.0;
const LABEL_W: f64 = WIDTH - LABEL_X - 14.0;
/// Where the bar starts (below the title).
const TOP_Y: f64 = 150.0;
/// The smallest height of a region that carries a label (32-bit, to scale): also what the
/// footnote calls "not to scale below".
const MIN_LABELLED: f64 = 22.0;
/// The smallest height of a maps line in a block (32-bit, to scale).
const MIN_MAPPING: f64 = 6.0;
/// One line of a label.
const PITCH: f64 = 19.0;
/// The height of a cut (a gap too large to draw).
const CUT_H: f64 = 54.0;

const MIB: u128 = 1 << 20;
const GIB: u128 = 1 << 30;

/// The SVG picture of `x`.
pub fn render(x: &Explanation) -> String {
    Picture::new(x).draw()
}

/// What a stretch of the address space is, for its fill.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Zone {
    /// Free: nothing mapped.
    Free,
    /// Kernel space (64-bit), or above TASK_SIZE (32-bit).
    Kernel,
    NonCanonical,
    /// Below vm.mmap_min_addr.
    NullGuard,
    /// Below an ET_EXEC program's link address.
    BelowLink,
}

/// What a row of the bar holds.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Cell {
    /// A maps line (index in `Explanation::lines`).
    Line(usize),
    Empty(Zone),
}

/// One stretch `[lo, hi)` of the address space between two addresses worth marking, and
/// where it is drawn.
#[derive(Clone, Debug)]
struct Row {
    hi: u128,
    lo: u128,
    cell: Cell,
    y: f64,
    h: f64,
    /// Drawn as a cut (zig-zag edges): the axis is broken here.
    cut: bool,
}

/// Whose a maps line is: consecutive lines of the same owner make one block.
#[derive(Clone, PartialEq, Debug)]
enum Owner {
    /// One of the program's own lines (each its own block).
    Program(usize),
    /// The interpreter or a library (index in `Explanation::objects`).
    Object(usize),
    Stack,
    Heap,
    /// `[vvar]`, `[vvar_vclock]`, `[vdso]`.
    Vdso,
    Vsyscall,
    /// Another file (`/etc/ld.so.cache`).
    File(String),
    /// Anonymous memory, by its label.
    Anon(String),
}

/// Consecutive rows of one owner.
struct Block {
    owner: Owner,
    first: usize,
    last: usize,
}

/// A span of text: (text, bold, fill).
type Span = (String, bool, &'static str);

/// A label: lines of spans, drawn near `anchor` (a y), with a leader line from `from_x`.
struct Label {
    anchor: f64,
    /// Where its leader line starts (a y).
    at: f64,
    from_x: f64,
    lines: Vec<(f64, Vec<Span>)>,
    /// Top of the label once placed.
    y: f64,
}

impl Label {
    fn height(&self) -> f64 {
        self.lines.len() as f64 * PITCH
    }
}

/// A random range drawn beside the bar.
struct Band {
    low: u128,
    high: u128,
    what: String,
    bits: f64,
    color: &'static str,
    column: usize,
    /// Its label goes above the range (the heap's, whose surroundings below are the
    /// program's labels), not below it.
    label_above: bool,
}

/// How heights are given.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    /// 32-bit: pixels per byte.
    Linear(f64),
    /// 64-bit: a broken axis.
    Broken,
}

struct Picture<'a> {
    x: &'a Explanation,
    top: u128,
    rows: Vec<Row>,
    blocks: Vec<Block>,
    bands: Vec<Band>,
    scale: Scale,
    /// Each line its own row of text inside the bar (few lines, 64-bit).
    detailed: bool,
    topdown: bool,
}

// Colours: code red, data magenta, read-only green, anonymous light, no access hatched.
const CODE: &str = "#ef9a9a";
const RWX: &str = "#ff8a65";
const DATA: &str = "#ce93d8";
const READ_ONLY: &str = "#a5d6a7";
const ANON: &str = "#f3e5f5";
const STACK: &str = "#90caf9";
const HEAP: &str = "#ffcc80";
const KDATA: &str = "#cfd8dc";
const INK: &str = "#212121";
const GREY: &str = "#546e7a";
const OUTLINE: &str = "#37474f";

impl<'a> Picture<'a> {
    fn new(x: &'a Explanation) -> Picture<'a> {
        let top: u128 = if x.bits == 64 { 1 << 64 } else { 1 << 32 };
        let topdown = x.topdown;
        let bands = bands(x, top);
        let user_lines = x
            .lines
            .iter()
            .filter(|l| l.maps.path != "[vsyscall]")
            .count();
        let detailed = x.bits == 64 && user_lines <= 40;
        let scale = if x.bits == 64 {
            Scale::Broken
        } else {
            // The whole 4 GiB in about 1300 px.
            Scale::Linear(1300.0 / top as f64)
        };
        let rows = rows(x, top, &bands);
        let blocks = blocks(x, &rows);
        let mut p = Picture {
            x,
            top,
            rows,
            blocks,
            bands,
            scale,
            detailed,
            topdown,
        };
        p.heights();
        p.band_columns();
        p
    }

    /// The height of each row, then their places.
    fn heights(&mut self) {
        let mut in_block = vec![false; self.rows.len()];
        for b in &self.blocks {
            in_block[b.first..=b.last].fill(true);
        }
        for (r, in_block) in self.rows.iter_mut().zip(in_block) {
            let Cell::Empty(zone) = r.cell else {
                continue;
            };
            if in_block {
                continue;
            }
            let size = r.hi - r.lo;
            let (h, cut) = match self.scale {
                Scale::Linear(s) => {
                    let h = size as f64 * s;
                    match zone {
                        Zone::Free => (h, false),
                        _ => (h.max(MIN_LABELLED + 4.0), false),
                    }
                }
                Scale::Broken => match zone {
                    Zone::Free | Zone::BelowLink if size >= 16 * MIB => (CUT_H, true),
                    Zone::Free | Zone::BelowLink if size >= MIB => (30.0, false),
                    Zone::BelowLink => (30.0, false),
                    Zone::Free if size >= 64 << 10 => (10.0, false),
                    Zone::Free => (5.0, false),
                    Zone::Kernel if size >= GIB => (CUT_H, true),
                    Zone::Kernel => (6.0, false),
                    Zone::NonCanonical => (CUT_H, true),
                    Zone::NullGuard => (MIN_LABELLED + 4.0, false),
                },
            };
            r.h = h;
            r.cut = cut;
        }
        for k in 0..self.blocks.len() {
            let min = self.block_label(k).height() + (MIN_LABELLED - PITCH);
            let b = &self.blocks[k];
            let per_line = matches!(b.owner, Owner::Program(_));
            let min_line = if self.detailed || per_line {
                20.0
            } else if self.scale == Scale::Broken {
                3.0
            } else {
                MIN_MAPPING
            };
            let mut hs: Vec<f64> = Vec::new();
            for r in &self.rows[b.first..=b.last] {
                let size = (r.hi - r.lo) as f64;
                let h = match (r.cell, self.scale) {
                    (Cell::Empty(_), Scale::Linear(s)) => size * s,
                    (Cell::Empty(_), Scale::Broken) => 3.0,
                    (Cell::Line(_), Scale::Linear(s)) => (size * s).max(min_line),
                    (Cell::Line(_), Scale::Broken) => {
                        let k = if self.detailed { 2.5 } else { 0.8 };
                        min_line + k * (size / 4096.0).max(1.0).log2()
                    }
                };
                hs.push(h);
            }
            let sum: f64 = hs.iter().sum();
            if sum < min {
                for h in &mut hs {
                    *h *= min / sum.max(1e-9);
                }
            }
            for (r, h) in self.rows[b.first..=b.last].iter_mut().zip(hs) {
                r.h = h;
            }
        }
        let mut y = TOP_Y;
        for r in &mut self.rows {
            r.y = y;
            y += r.h;
        }
    }

    /// Bands that overlap on the page go to different columns.
    fn band_columns(&mut self) {
        let spans: Vec<(f64, f64)> = self
            .bands
            .iter()
            .map(|b| (self.y_of(b.high), self.y_of(b.low)))
            .collect();
        for i in 0..self.bands.len() {
            let mut col = 0;
            while (0..i).any(|j| {
                self.bands[j].column == col && spans[j].0 < spans[i].1 && spans[i].0 < spans[j].1
            }) {
                col += 1;
            }
            self.bands[i].column = col.min(1);
        }
    }

    /// Where address `a` is drawn.
    fn y_of(&self, a: u128) -> f64 {
        for r in &self.rows {
            if a <= r.hi && a >= r.lo {
                let f = if r.hi == r.lo {
                    0.0
                } else {
                    (r.hi - a) as f64 / (r.hi - r.lo) as f64
                };
                return r.y + f * r.h;
            }
        }
        self.bottom()
    }

    fn bottom(&self) -> f64 {
        self.rows.last().map(|r| r.y + r.h).unwrap_or(TOP_Y)
    }

    fn block_y(&self, b: &Block) -> (f64, f64) {
        let r0 = &self.rows[b.first];
        let r1 = &self.rows[b.last];
        (r0.y, r1.y + r1.h)
    }

    fn line_rows(&self, b: &Block) -> impl Iterator<Item = (&Row, usize)> {
        self.rows[b.first..=b.last]
            .iter()
            .filter_map(|r| match r.cell {
                Cell::Line(l) => Some((r, l)),
                _ => None,
            })
    }

    /// The bytes a block maps.
    fn block_size(&self, b: &Block) -> u64 {
        let mut seen = Vec::new();
        let mut n = 0;
        for (_, l) in self.line_rows(b) {
            if !seen.contains(&l) {
                seen.push(l);
                let m = &self.x.lines[l].maps;
                n = m.end.saturating_sub(m.start).saturating_add(n);
            }
        }
        n
    }

    /// What the label of block `k` says.
    fn block_label(&self, k: usize) -> Label {
        let x = self.x;
        let b = &self.blocks[k];
        let first = self.line_rows(b).map(|(_, l)| l).next().unwrap_or(0);
        let line = &x.lines[first];
        let size = human(self.block_size(b));
        let (name, detail): (String, String) = match &b.owner {
            Owner::Program(l) => {
                let l = &x.lines[*l];
                (
                    l.label.clone(),
                    if l.sections.is_empty() {
                        "anonymous zero pages".to_string()
                    } else {
                        l.sections.join(" ")
                    },
                )
            }
            Owner::Object(o) => {
                let o = &x.objects[*o];
                let p = o.path.to_string_lossy();
                let role = match o.role {
                    Role::Interpreter => "the dynamic loader",
                    Role::Library => "library",
                    Role::Program => "program",
                };
                let dir = o
                    .path
                    .parent()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let detail = match o.role {
                    Role::Library if !self.detailed => String::new(),
                    _ if !self.detailed => role.to_string(),
                    _ => format!("{role}, {dir}/"),
                };
                (short(&p), detail)
            }
            Owner::Stack => (
                "[stack]".into(),
                "argv, envp and auxv at its top; grows down to RLIMIT_STACK".into(),
            ),
            Owner::Heap => (
                if line.label == "heap" || line.label.is_empty() {
                    "[heap]".into()
                } else {
                    format!("[heap] {}", line.label)
                },
                "brk memory: grows up from start_brk".into(),
            ),
            Owner::Vdso => {
                let mut names: Vec<&str> = Vec::new();
                for (_, l) in self.line_rows(b) {
                    let p = x.lines[l].maps.path.as_str();
                    if !names.contains(&p) {
                        names.push(p);
                    }
                }
                (
                    names.join(" "),
                    "the kernel's data and code mapped into every process (vDSO)".into(),
                )
            }
            Owner::Vsyscall => (
                "[vsyscall]".into(),
                "legacy page at a fixed address (calls trap into the kernel)".into(),
            ),
            Owner::File(p) => (short(p), p.clone()),
            Owner::Anon(label) => (
                if label.is_empty() {
                    "anonymous".into()
                } else {
                    label.clone()
                },
                line.reasons
                    .first()
                    .map(|r| r.text.clone())
                    .unwrap_or_default(),
            ),
        };
        let head = vec![(name, true, INK), (format!("  {size}"), false, GREY)];
        let lines = if self.detailed {
            let mut v = vec![(15.0, fit_spans(head, 15.0, LABEL_W))];
            if !detail.is_empty() {
                v.push((
                    14.0,
                    vec![(fit(&detail, 14.0, Face::Sans, LABEL_W), false, GREY)],
                ));
            }
            v
        } else {
            let mut spans = head;
            if !detail.is_empty() {
                spans.push((format!("  {detail}"), false, GREY));
            }
            vec![(15.0, fit_spans(spans, 15.0, LABEL_W))]
        };
        Label {
            anchor: 0.0,
            at: 0.0,
            from_x: BAR_X + BAR_W,
            lines,
            y: 0.0,
        }
    }

    fn draw(&self) -> String {
        let x = self.x;
        let mut s = String::with_capacity(64 * 1024);
        let mut body = String::with_capacity(64 * 1024);
        // The bar: zones, then blocks, then the bar's edges and the cuts.
        for r in &self.rows {
            let (y, h) = (r.y, r.h);
            if h <= 0.0 {
                continue;
            }
            match r.cell {
                Cell::Empty(z) => {
                    let fill = match z {
                        Zone::Free => "#ffffff",
                        Zone::Kernel | Zone::NonCanonical => "url(#unusable)",
                        Zone::NullGuard => "url(#unusable)",
                        Zone::BelowLink => "#f5f5f5",
                    };
                    rect(&mut body, BAR_X, y, BAR_W, h, fill, "none", 0.0);
                }
                Cell::Line(l) => {
                    let m = &x.lines[l].maps;
                    rect(&mut body, BAR_X, y, BAR_W, h, fill_of(x, l), "#ffffff", 0.8);
                    if self.detailed && h >= 18.0 {
                        let t = format!("{} {}", m.perms, x.lines[l].label);
                        text(
                            &mut body,
                            BAR_X + 8.0,
                            y + h / 2.0 + 5.0,
                            14.0,
                            "start",
                            false,
                            true,
                            INK,
                            &fit(&t, 14.0, Face::Mono, BAR_W - 14.0),
                        );
                    }
                }
            }
        }
        for b in &self.blocks {
            let (y0, y1) = self.block_y(b);
            rect(&mut body, BAR_X, y0, BAR_W, y1 - y0, "none", OUTLINE, 1.4);
        }
        // The bar's edges, cut where the axis is broken.
        // Consecutive cuts (split by the edge of a random range) are one: zig-zags at its
        // ends only.
        for (i, r) in self.rows.iter().enumerate() {
            if r.cut {
                let above = i > 0 && self.rows[i - 1].cut && self.rows[i - 1].cell == r.cell;
                let below = self
                    .rows
                    .get(i + 1)
                    .is_some_and(|w| w.cut && w.cell == r.cell);
                if !above {
                    let z = r.y + 5.0;
                    for xx in [BAR_X, BAR_X + BAR_W] {
                        line(&mut body, xx, r.y, xx, z, OUTLINE, 1.4, "");
                    }
                    zigzag(&mut body, z);
                }
                if !below {
                    let z = r.y + r.h - 5.0;
                    for xx in [BAR_X, BAR_X + BAR_W] {
                        line(&mut body, xx, z, xx, r.y + r.h, OUTLINE, 1.4, "");
                    }
                    zigzag(&mut body, z);
                }
            } else if r.h > 0.0 {
                for xx in [BAR_X, BAR_X + BAR_W] {
                    line(&mut body, xx, r.y, xx, r.y + r.h, OUTLINE, 1.4, "");
                }
            }
        }
        line(
            &mut body,
            BAR_X,
            TOP_Y,
            BAR_X + BAR_W,
            TOP_Y,
            OUTLINE,
            1.4,
            "",
        );
        line(
            &mut body,
            BAR_X,
            self.bottom(),
            BAR_X + BAR_W,
            self.bottom(),
            OUTLINE,
            1.4,
            "",
        );
        // What the empty stretches measure.
        self.gap_texts(&mut body);
        self.arrows(&mut body);
        // The empty heap: where it will start.
        for r in &x.regions {
            if r.kind == RegionKind::Heap && r.start == r.end {
                let y = self.y_of(r.start as u128);
                line(
                    &mut body,
                    BAR_X - 6.0,
                    y,
                    BAR_X + BAR_W + 6.0,
                    y,
                    "#e65100",
                    2.5,
                    "6 4",
                );
            }
        }
        // The random ranges.
        for b in &self.bands {
            let (y0, y1) = (self.y_of(b.high), self.y_of(b.low));
            let (y0, y1) = if y1 - y0 < 6.0 {
                let c = (y0 + y1) / 2.0;
                (c - 3.0, c + 3.0)
            } else {
                (y0, y1)
            };
            let bx = BAND_X + b.column as f64 * (BAND_W + 4.0);
            let id = band_id(b.color);
            rect(
                &mut body,
                bx,
                y0,
                BAND_W,
                y1 - y0,
                &format!("url(#{id})"),
                b.color,
                1.2,
            );
            for yy in [y0, y1] {
                line(&mut body, BAR_X, yy, bx + BAND_W, yy, b.color, 1.2, "5 4");
            }
        }
        let axis_end = self.axis(&mut body);
        let left_end = self.left_labels(&mut body);
        let right_end = self.right_labels(&mut body);
        let mut y = self.bottom().max(axis_end).max(left_end).max(right_end) + 36.0;
        y = self.legend(&mut body, y);
        y = self.footnotes(&mut body, y);
        let height = (y + 16.0).ceil();

        // The document.
        let _ = write!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
             viewBox=\"0 0 {w} {height}\" font-family=\"sans-serif\">\n",
            w = WIDTH
        );
        let _ = writeln!(s, "<title>{}</title>", esc(&self.title()));
        s.push_str(&defs(&self.bands));
        rect(&mut s, 0.0, 0.0, WIDTH, height, "#ffffff", "none", 0.0);
        self.heading(&mut s);
        s.push_str(&body);
        s.push_str("</svg>\n");
        s
    }

    fn title(&self) -> String {
        let x = self.x;
        format!(
            "{}: the address space of a {}-bit {}",
            short(&x.program.to_string_lossy()),
            x.bits,
            x.kind
        )
    }

    fn heading(&self, s: &mut String) {
        let x = self.x;
        text(
            s,
            24.0,
            42.0,
            26.0,
            "start",
            true,
            false,
            INK,
            &self.title(),
        );
        let aslr = match (x.aslr, x.seed) {
            (false, _) => "ASLR off".to_string(),
            (true, _) if x.observed.is_some() => "ASLR on: the draws this process got".to_string(),
            (true, Some(seed)) => format!("ASLR on: the draws of --seed {seed}"),
            (true, None) => "ASLR on: one random draw (--seed N to repeat it)".to_string(),
        };
        let layout = if self.topdown {
            "top-down mmap layout"
        } else {
            "legacy (bottom-up) mmap layout"
        };
        let stage = match x.stage {
            crate::stage::Stage::Exec => "stage exec (right after execve)",
            crate::stage::Stage::Loaded => "stage loaded (libraries mapped, before main)",
            crate::stage::Stage::Entry => "stage entry (at AT_ENTRY)",
        };
        let path = x.program.to_string_lossy();
        text(
            s,
            24.0,
            72.0,
            16.0,
            "start",
            false,
            true,
            GREY,
            &fit(&path, 16.0, Face::Mono, WIDTH - 48.0),
        );
        let sub = format!("{stage} · {aslr} · {layout}");
        text(
            s,
            24.0,
            98.0,
            16.0,
            "start",
            false,
            false,
            GREY,
            &fit(&sub, 16.0, Face::Sans, WIDTH - 48.0),
        );
        text(
            s,
            AXIS_RIGHT,
            TOP_Y - 12.0,
            14.0,
            "end",
            false,
            false,
            GREY,
            "address",
        );
        text(
            s,
            BAR_X + BAR_W / 2.0,
            TOP_Y - 12.0,
            14.0,
            "middle",
            false,
            false,
            GREY,
            "high addresses ↑",
        );
    }

    /// Sizes of the unmapped stretches, and of the zones, written in the bar.
    fn gap_texts(&self, s: &mut String) {
        let cx = BAR_X + BAR_W / 2.0;
        for (i, r) in self.rows.iter().enumerate() {
            let Cell::Empty(z) = r.cell else { continue };
            if r.h < 18.0 || self.in_block(i) {
                continue;
            }
            // A free stretch is measured between the marks around it; a zone whole.
            let size = match z {
                Zone::Free => r.hi - r.lo,
                _ => self
                    .x
                    .regions
                    .iter()
                    .map(|g| (g.start as u128, end_of(g.end, self.top)))
                    .find(|&(lo, hi)| lo <= r.lo && r.hi <= hi)
                    .map(|(lo, hi)| hi - lo)
                    .unwrap_or(r.hi - r.lo),
            };
            let what = match z {
                Zone::Free | Zone::BelowLink => format!("{} unmapped", human128(size)),
                Zone::Kernel if self.x.bits == 64 => format!("kernel space, {}", human128(size)),
                Zone::Kernel | Zone::NonCanonical => format!("{} unusable", human128(size)),
                Zone::NullGuard => human128(size),
            };
            let ty = r.y + r.h / 2.0 + 5.0;
            if z != Zone::Free {
                let tw = text_w(&what, 15.0, Face::Sans) + 12.0;
                rect(
                    s,
                    cx - tw / 2.0,
                    ty - 15.0,
                    tw,
                    20.0,
                    "#ffffff",
                    "none",
                    0.0,
                );
            }
            text(s, cx, ty, 15.0, "middle", false, false, GREY, &what);
        }
    }

    fn in_block(&self, row: usize) -> bool {
        self.blocks.iter().any(|b| b.first <= row && row <= b.last)
    }

    /// The growth arrows: the stack down, the heap up, the mmap area down (top-down) or up.
    fn arrows(&self, s: &mut String) {
        let x = self.x;
        let left = BAR_X + 26.0;
        let right = BAR_X + BAR_W - 26.0;
        for r in &x.regions {
            let (below, at_x) = match r.kind {
                RegionKind::Stack => (true, left),
                RegionKind::MmapArea if self.topdown => (true, left),
                RegionKind::MmapArea => (false, right),
                RegionKind::Heap => (false, right),
                _ => continue,
            };
            // The empty row next to the region, on the side it grows towards.
            let row = if below {
                self.rows.iter().position(|w| w.hi == r.start as u128)
            } else {
                self.rows.iter().position(|w| w.lo == r.end as u128)
            };
            let Some(i) = row else { continue };
            // The free rows there, together (the edge of a random range may split them).
            let free = |k: usize| {
                matches!(self.rows[k].cell, Cell::Empty(Zone::Free)) && !self.in_block(k)
            };
            if !free(i) {
                continue;
            }
            let mut j = i;
            while below && j + 1 < self.rows.len() && free(j + 1) || !below && j > 0 && free(j - 1)
            {
                j = if below { j + 1 } else { j - 1 };
            }
            let (a, b) = (i.min(j), i.max(j));
            let (top, bottom) = (self.rows[a].y, self.rows[b].y + self.rows[b].h);
            if bottom - top < 22.0 {
                continue;
            }
            let len = (bottom - top - 8.0).min(64.0);
            let (y0, y1) = if below {
                (top + 3.0, top + 3.0 + len)
            } else {
                (bottom - 3.0, bottom - 3.0 - len)
            };
            let _ = writeln!(
                s,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#455a64\" stroke-width=\"3\" marker-end=\"url(#arrow)\"/>",
                n(at_x),
                n(y0),
                n(at_x),
                n(y1)
            );
        }
    }

    /// Addresses on the axis: region edges first, then blocks, bands and lines, each where
    /// it does not crowd one already written. Returns the lowest y used.
    fn axis(&self, s: &mut String) -> f64 {
        let x = self.x;
        let mut marks: Vec<(u8, u128)> = vec![(0, self.top), (0, 0)];
        for r in &x.regions {
            marks.push((0, r.start as u128));
            marks.push((0, end_of(r.end, self.top)));
        }
        for b in &self.blocks {
            marks.push((1, self.rows[b.first].hi));
            marks.push((1, self.rows[b.last].lo));
        }
        for b in &self.bands {
            marks.push((2, b.low));
            marks.push((2, b.high));
        }
        for r in &self.rows {
            if matches!(r.cell, Cell::Line(_)) {
                marks.push((3, r.hi));
                marks.push((3, r.lo));
            }
        }
        marks.sort();
        let mut placed: Vec<f64> = Vec::new();
        let mut lowest: f64 = 0.0;
        for (_, a) in marks {
            let y = self.y_of(a);
            if placed.iter().any(|&p| (p - y).abs() < 16.0) {
                continue;
            }
            placed.push(y);
            lowest = lowest.max(y + 6.0);
            let t = if a >= 1 << 64 {
                "0xffffffffffffffff".to_string()
            } else {
                format!("{a:#x}")
            };
            line(s, AXIS_RIGHT + 4.0, y, BAR_X, y, GREY, 1.0, "");
            text(
                s,
                AXIS_RIGHT,
                y + 5.0,
                14.0,
                "end",
                false,
                true,
                "#37474f",
                &t,
            );
        }
        lowest
    }

    /// The region names on the left, with brackets. Returns the lowest y used.
    fn left_labels(&self, s: &mut String) -> f64 {
        let x = self.x;
        let mut labels = Vec::new();
        // The program's segments (named on the right) share one bracket.
        let program: Vec<&crate::explain::Region> = x
            .regions
            .iter()
            .filter(|r| {
                matches!(
                    r.kind,
                    RegionKind::ProgramText
                        | RegionKind::ProgramData
                        | RegionKind::ProgramBss
                        | RegionKind::ProgramReadOnly
                )
            })
            .collect();
        let program_name = short(&x.program.to_string_lossy());
        let mut entries: Vec<(f64, f64, String, String)> = Vec::new();
        if let (Some(lo), Some(hi)) = (
            program.iter().map(|r| r.start).min(),
            program.iter().map(|r| r.end).max(),
        ) {
            entries.push((
                self.y_of(end_of(hi, self.top)),
                self.y_of(lo as u128),
                fit(&program_name, 16.0, Face::Bold, REGION_RIGHT - 16.0),
                "the program".into(),
            ));
        }
        for r in &x.regions {
            let y0 = self.y_of(end_of(r.end, self.top));
            let y1 = self.y_of(r.start as u128);
            let (name, note): (&str, String) = match r.kind {
                RegionKind::KernelSpace if x.bits == 64 => ("kernel space", String::new()),
                RegionKind::KernelSpace if r.name.contains("3G/1G") => {
                    ("not usable", "3G/1G split (--3gb)".into())
                }
                RegionKind::KernelSpace => ("above TASK_SIZE", "not usable".into()),
                RegionKind::NonCanonical => ("non-canonical", "not usable".into()),
                RegionKind::Stack => ("stack", "grows down ↓".into()),
                RegionKind::MmapArea if self.topdown => ("mmap area", "grows down ↓".into()),
                RegionKind::MmapArea => ("mmap area", "grows up ↑".into()),
                RegionKind::Heap if r.start == r.end => ("heap", "empty; grows up ↑".into()),
                RegionKind::Heap => ("heap", "grows up ↑".into()),
                RegionKind::ProgramText
                | RegionKind::ProgramData
                | RegionKind::ProgramBss
                | RegionKind::ProgramReadOnly => continue,
                RegionKind::Gap => ("unmapped", "below the link address".into()),
                RegionKind::NullGuard => ("never mapped", "vm.mmap_min_addr".into()),
            };
            entries.push((y0, y1, name.to_string(), note));
        }
        for (y0, y1, name, note) in entries {
            let mut lines = vec![(16.0, vec![(name, true, INK)])];
            if !note.is_empty() {
                lines.push((14.0, vec![(note, false, GREY)]));
            }
            // Brackets.
            if y1 - y0 >= 3.0 {
                let _ = writeln!(
                    s,
                    "<path d=\"M{a},{y0} H{b} V{y1} H{a}\" fill=\"none\" stroke=\"{GREY}\" stroke-width=\"1.5\"/>",
                    a = n(BRACKET_X + 6.0),
                    b = n(BRACKET_X),
                    y0 = n(y0 + 1.0),
                    y1 = n(y1 - 1.0)
                );
            } else {
                line(s, BRACKET_X, y0, BRACKET_X + 10.0, y0, GREY, 1.5, "");
            }
            let h = lines.len() as f64 * PITCH;
            labels.push(Label {
                // An empty region (the heap not yet grown): the label just above its line.
                anchor: if y1 - y0 < 1.0 {
                    y0 - h / 2.0
                } else {
                    (y0 + y1) / 2.0
                },
                at: (y0 + y1) / 2.0,
                from_x: BRACKET_X,
                lines,
                y: 0.0,
            });
        }
        place(&mut labels, TOP_Y);
        let mut lowest: f64 = 0.0;
        for l in &labels {
            let h = l.height();
            let cy = l.y + h / 2.0;
            if (cy - l.at).abs() > 2.0 {
                let _ = writeln!(
                    s,
                    "<polyline points=\"{},{} {},{} {},{}\" fill=\"none\" stroke=\"#90a4ae\" stroke-width=\"1\"/>",
                    n(REGION_RIGHT + 3.0),
                    n(cy),
                    n(REGION_RIGHT + 6.0),
                    n(cy),
                    n(l.from_x - 1.0),
                    n(l.at)
                );
            }
            draw_label(s, l, REGION_RIGHT, "end");
            lowest = lowest.max(l.y + h);
        }
        lowest
    }

    /// The labels of the blocks and of the random ranges, on the right, with leader lines.
    /// Returns the lowest y used.
    fn right_labels(&self, s: &mut String) -> f64 {
        let x = self.x;
        let mut labels = Vec::new();
        for (k, b) in self.blocks.iter().enumerate() {
            let mut l = self.block_label(k);
            let (y0, y1) = self.block_y(b);
            l.anchor = (y0 + y1) / 2.0;
            l.at = l.anchor;
            labels.push(l);
        }
        for r in &x.regions {
            if r.kind == RegionKind::Heap && r.start == r.end {
                let y = self.y_of(r.start as u128);
                labels.push(Label {
                    anchor: y - PITCH,
                    at: y,
                    from_x: BAR_X + BAR_W + 6.0,
                    lines: vec![
                        (
                            15.0,
                            vec![
                                ("start_brk".to_string(), true, "#e65100"),
                                ("  the heap is empty".into(), false, GREY),
                            ],
                        ),
                        (
                            14.0,
                            vec![(
                                fit(
                                    "where brk() grows it from, at malloc's first call",
                                    14.0,
                                    Face::Sans,
                                    LABEL_W,
                                ),
                                false,
                                GREY,
                            )],
                        ),
                    ],
                    y: 0.0,
                });
            }
        }
        for b in &self.bands {
            let y1 = self.y_of(b.low);
            let bx = BAND_X + b.column as f64 * (BAND_W + 4.0) + BAND_W;
            let lines = vec![
                (
                    15.0,
                    fit_spans(
                        {
                            let (name, why) = match b.what.split_once(" (") {
                                Some((n, w)) => (n.to_string(), format!("  ({w}")),
                                None => (b.what.clone(), String::new()),
                            };
                            vec![
                                (format!("random {name}"), true, b.color),
                                (why, false, GREY),
                            ]
                        },
                        15.0,
                        LABEL_W,
                    ),
                ),
                (
                    14.0,
                    vec![(
                        format!(
                            "{:#x} – {:#x}, {} bits",
                            b.low,
                            b.high,
                            (b.bits * 10.0).round() / 10.0
                        ),
                        false,
                        GREY,
                    )],
                ),
            ];
            let h = lines.len() as f64 * PITCH;
            let y0 = self.y_of(b.high);
            // Beside an end of the range, not among the labels of the blocks it spans.
            let (anchor, at) = if b.label_above {
                (y0 - h / 2.0 - 2.0, y0 + 2.0)
            } else {
                (y1 + h / 2.0 + 2.0, (y1 - 2.0).max(y0))
            };
            labels.push(Label {
                anchor,
                at,
                from_x: bx,
                lines,
                y: 0.0,
            });
        }
        place(&mut labels, TOP_Y);
        let mut lowest: f64 = 0.0;
        for l in &labels {
            let h = l.height();
            let cy = l.y + h / 2.0;
            let _ = writeln!(
                s,
                "<polyline points=\"{},{} {},{} {},{}\" fill=\"none\" stroke=\"#90a4ae\" stroke-width=\"1\"/>",
                n(l.from_x),
                n(l.at),
                n((l.from_x + 14.0).max(BAND_X + 2.0 * (BAND_W + 4.0) + 4.0)),
                n(l.at),
                n(LABEL_X - 6.0),
                n(cy)
            );
            draw_label(s, l, LABEL_X, "start");
            lowest = lowest.max(l.y + h);
        }
        lowest
    }

    /// The legend, from `y`; returns the y below it.
    fn legend(&self, s: &mut String, y: f64) -> f64 {
        let mut items: Vec<(&str, &str)> = vec![
            (CODE, "code (r-x)"),
            (DATA, "data (rw-, from the file)"),
            (READ_ONLY, "read-only (r--)"),
            ("url(#noaccess)", "no access (---p)"),
            (ANON, "anonymous memory (rw-)"),
            (STACK, "stack"),
            (HEAP, "heap"),
            (KDATA, "kernel data ([vvar], r--)"),
            ("url(#unusable)", "not usable / never mapped"),
        ];
        if self.x.lines.iter().any(|l| l.maps.perms.starts_with("rwx")) {
            items.push((RWX, "writable code (rwx)"));
        }
        if !self.bands.is_empty() {
            items.push(("url(#legendband)", "random range (ASLR)"));
        }
        text(s, 24.0, y, 17.0, "start", true, false, INK, "Legend");
        let col_w = (WIDTH - 48.0) / 3.0;
        let mut yy = y + 14.0;
        for (i, (fill, what)) in items.iter().enumerate() {
            let c = i % 3;
            if i > 0 && c == 0 {
                yy += 28.0;
            }
            let x0 = 24.0 + c as f64 * col_w;
            rect(s, x0, yy, 30.0, 20.0, fill, OUTLINE, 1.0);
            text(
                s,
                x0 + 40.0,
                yy + 15.0,
                15.0,
                "start",
                false,
                false,
                INK,
                what,
            );
        }
        yy + 40.0
    }

    fn footnotes(&self, s: &mut String, mut y: f64) -> f64 {
        let mut notes: Vec<String> = Vec::new();
        match self.scale {
            Scale::Linear(px) => {
                notes.push(format!(
                    "Drawn to scale: 1 px = {:.1} MiB, except small things: each labelled block or area is at least {} px tall, each mapping at least {} px",
                    1.0 / px / (1 << 20) as f64,
                    MIN_LABELLED as u32,
                    MIN_MAPPING as u32
                ));
                notes.push(format!(
                    "(not to scale below {} px: a 4 KiB page would be a thousandth of a pixel).",
                    MIN_LABELLED as u32
                ));
            }
            Scale::Broken => {
                notes.push("Not to scale: the axis is broken (zig-zag) at gaps of 16 MiB and more, their sizes written in;".into());
                notes.push("a block's height grows with the logarithm of its size, so that a 4 KiB page and 128 TiB both show.".into());
            }
        }
        notes.push(match &self.x.observed {
            Some(source) => format!(
                "Observed: the lines of {source}, labelled by elfmap from their paths, permissions and order (nothing predicted)."
            ),
            None => "Predicted by elfmap from the ELF files, the kernel's and the loader's rules (not observed)."
                .into(),
        });
        for t in notes {
            text(s, 24.0, y, 14.0, "start", false, false, GREY, &t);
            y += 20.0;
        }
        y
    }
}

/// The random ranges: the stack top, mmap_base, start_brk (regions) and a PIE's load_bias.
fn bands(x: &Explanation, top: u128) -> Vec<Band> {
    let mut v = Vec::new();
    for r in &x.regions {
        let Some(b) = &r.random else { continue };
        let color = match r.kind {
            RegionKind::Stack => "#1565c0",
            RegionKind::MmapArea => "#6a1b9a",
            RegionKind::Heap => "#e65100",
            _ => "#2e7d32",
        };
        v.push(Band {
            low: (b.low as u128).min(top),
            high: end_of(b.high, top),
            what: b.what.clone(),
            bits: b.bits,
            color,
            column: 0,
            label_above: r.kind == RegionKind::Heap,
        });
    }
    if let Some(b) = x
        .objects
        .first()
        .filter(|o| o.role == Role::Program)
        .and_then(|o| o.random.as_ref())
    {
        v.push(Band {
            low: (b.low as u128).min(top),
            high: end_of(b.high, top),
            what: b.what.clone(),
            bits: b.bits,
            color: "#2e7d32",
            column: 0,
            label_above: false,
        });
    }
    v.retain(|b| b.low < b.high);
    v
}

fn end_of(e: u64, top: u128) -> u128 {
    if e == u64::MAX {
        top
    } else {
        (e as u128).min(top)
    }
}

/// The rows: the address space cut at every line's, region's and band's edge.
fn rows(x: &Explanation, top: u128, bands: &[Band]) -> Vec<Row> {
    let mut cuts: Vec<u128> = vec![0, top];
    for r in &x.regions {
        cuts.push((r.start as u128).min(top));
        cuts.push(end_of(r.end, top));
    }
    for l in &x.lines {
        cuts.push((l.maps.start as u128).min(top));
        cuts.push((l.maps.end as u128).min(top));
    }
    for b in bands {
        cuts.push(b.low);
        cuts.push(b.high);
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.reverse();
    let zones: Vec<(u128, u128, Zone)> = x
        .regions
        .iter()
        .filter_map(|r| {
            let z = match r.kind {
                RegionKind::KernelSpace => Zone::Kernel,
                RegionKind::NonCanonical => Zone::NonCanonical,
                RegionKind::NullGuard => Zone::NullGuard,
                RegionKind::Gap => Zone::BelowLink,
                _ => return None,
            };
            Some((r.start as u128, end_of(r.end, top), z))
        })
        .collect();
    cuts.windows(2)
        .map(|w| {
            let (hi, lo) = (w[0], w[1]);
            let line = x
                .lines
                .iter()
                .position(|l| (l.maps.start as u128) <= lo && hi <= l.maps.end as u128);
            let cell = match line {
                Some(i) => Cell::Line(i),
                None => Cell::Empty(
                    zones
                        .iter()
                        .find(|(a, b, _)| *a <= lo && hi <= *b)
                        .map(|z| z.2)
                        .unwrap_or(Zone::Free),
                ),
            };
            Row {
                hi,
                lo,
                cell,
                y: 0.0,
                h: 0.0,
                cut: false,
            }
        })
        .collect()
}

fn owner(x: &Explanation, i: usize) -> Owner {
    let l = &x.lines[i];
    let p = l.maps.path.as_str();
    match p {
        "[stack]" => return Owner::Stack,
        "[heap]" => return Owner::Heap,
        "[vvar]" | "[vvar_vclock]" | "[vdso]" => return Owner::Vdso,
        "[vsyscall]" => return Owner::Vsyscall,
        _ => {}
    }
    match l.object {
        Some(0) if x.objects.first().is_some_and(|o| o.role == Role::Program) => Owner::Program(i),
        Some(k) => Owner::Object(k),
        None if l.maps.inode != 0 => Owner::File(p.to_string()),
        None => Owner::Anon(l.label.clone()),
    }
}

/// Consecutive rows of the same owner, with small holes between them, make a block.
fn blocks(x: &Explanation, rows: &[Row]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let Cell::Line(l) = rows[i].cell else {
            i += 1;
            continue;
        };
        let o = owner(x, l);
        let mut last = i;
        let mut k = i + 1;
        while k < rows.len() {
            match rows[k].cell {
                Cell::Line(m) if owner(x, m) == o => {
                    last = k;
                    k += 1;
                }
                Cell::Empty(Zone::Free) if rows[k].hi - rows[k].lo < MIB => k += 1,
                _ => break,
            }
        }
        out.push(Block {
            owner: o,
            first: i,
            last,
        });
        i = last + 1;
    }
    out
}

/// Place labels in anchor order without overlaps, each group of labels that would overlap
/// centred on its anchors (the mean displacement zero), none above `top`.
fn place(labels: &mut [Label], top: f64) {
    const GAP: f64 = 2.0;
    labels.sort_by(|a, b| a.anchor.total_cmp(&b.anchor));
    /// Labels `first..end` stacked from `y`; `sum` is the sum of each one's ideal top
    /// minus its offset in the stack, `n` their number.
    struct Group {
        first: usize,
        end: usize,
        y: f64,
        h: f64,
        sum: f64,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let h = l.height();
        let ideal = l.anchor - h / 2.0;
        groups.push(Group {
            first: i,
            end: i + 1,
            y: ideal.max(top),
            h: h + GAP,
            sum: ideal,
        });
        // Merge with the group above while they overlap.
        while groups.len() >= 2 {
            let b = &groups[groups.len() - 1];
            let a = &groups[groups.len() - 2];
            if a.y + a.h <= b.y {
                break;
            }
            let b = groups.pop().unwrap();
            let a = groups.last_mut().unwrap();
            a.sum += b.sum - (b.end - b.first) as f64 * a.h;
            a.h += b.h;
            a.end = b.end;
            a.y = (a.sum / (a.end - a.first) as f64).max(top);
        }
    }
    for g in &groups {
        let mut y = g.y;
        for l in &mut labels[g.first..g.end] {
            l.y = y;
            y += l.height() + GAP;
        }
    }
}

fn draw_label(s: &mut String, l: &Label, x: f64, anchor: &str) {
    let mut y = l.y;
    for (size, spans) in &l.lines {
        y += PITCH;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{anchor}\">",
            n(x),
            n(y - 5.0),
            size
        );
        for (t, bold, fill) in spans {
            let _ = write!(
                s,
                "<tspan fill=\"{fill}\"{}>{}</tspan>",
                if *bold { " font-weight=\"bold\"" } else { "" },
                esc(t)
            );
        }
        s.push_str("</text>\n");
    }
}

/// The fill of a maps line, from its permissions and what it is.
fn fill_of(x: &Explanation, i: usize) -> &'static str {
    let m = &x.lines[i].maps;
    match m.path.as_str() {
        "[stack]" => return STACK,
        "[heap]" if m.perms.starts_with("rw") => return HEAP,
        "[vvar]" | "[vvar_vclock]" => return KDATA,
        _ => {}
    }
    match &m.perms[..3] {
        "rwx" => RWX,
        "r-x" | "--x" => CODE,
        "rw-" if m.inode == 0 => ANON,
        "rw-" => DATA,
        "r--" if m.inode == 0 => KDATA,
        "r--" => READ_ONLY,
        _ => "url(#noaccess)",
    }
}

fn band_id(color: &str) -> String {
    format!("band{}", color.trim_start_matches('#'))
}

fn defs(bands: &[Band]) -> String {
    let mut s = String::from("<defs>\n");
    s.push_str(
        "<pattern id=\"noaccess\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"8\" height=\"8\" fill=\"#eeeeee\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#9e9e9e\" stroke-width=\"3\"/></pattern>\n",
    );
    s.push_str(
        "<pattern id=\"unusable\" width=\"12\" height=\"12\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(-45)\">\
         <rect width=\"12\" height=\"12\" fill=\"#eceff1\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"12\" stroke=\"#cfd8dc\" stroke-width=\"5\"/></pattern>\n",
    );
    let mut colors: Vec<&str> = bands.iter().map(|b| b.color).collect();
    colors.push("#1565c0");
    colors.sort_unstable();
    colors.dedup();
    for c in colors {
        let _ = writeln!(
            s,
            "<pattern id=\"{}\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
             <rect width=\"8\" height=\"8\" fill=\"{c}\" fill-opacity=\"0.18\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"{c}\" stroke-opacity=\"0.7\" stroke-width=\"3\"/></pattern>",
            band_id(c)
        );
    }
    let _ = writeln!(
        s,
        "<pattern id=\"legendband\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"8\" height=\"8\" fill=\"#1565c0\" fill-opacity=\"0.18\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#1565c0\" stroke-opacity=\"0.7\" stroke-width=\"3\"/></pattern>"
    );
    s.push_str(
        "<marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"8\" refY=\"5\" markerWidth=\"4\" markerHeight=\"4\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#455a64\"/></marker>\n",
    );
    s.push_str("</defs>\n");
    s
}

/// A zig-zag across the bar at `y`: the axis is broken here.
fn zigzag(s: &mut String, y: f64) {
    let mut d = format!("M{},{}", n(BAR_X - 8.0), n(y));
    let mut xx = BAR_X - 8.0;
    let mut up = true;
    while xx < BAR_X + BAR_W + 8.0 {
        xx += 6.0;
        d.push_str(&format!(
            " L{},{}",
            n(xx),
            n(if up { y - 3.5 } else { y + 3.5 })
        ));
        up = !up;
    }
    let _ = writeln!(
        s,
        "<path d=\"{d}\" fill=\"none\" stroke=\"{OUTLINE}\" stroke-width=\"1.6\"/>"
    );
}

#[allow(clippy::too_many_arguments)]
fn rect(s: &mut String, x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: &str, sw: f64) {
    let _ = write!(
        s,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"",
        n(x),
        n(y),
        n(w),
        n(h.max(0.0))
    );
    if stroke != "none" {
        let _ = write!(s, " stroke=\"{stroke}\" stroke-width=\"{sw}\"");
    }
    s.push_str("/>\n");
}

#[allow(clippy::too_many_arguments)]
fn line(s: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, w: f64, dash: &str) {
    let _ = write!(
        s,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{stroke}\" stroke-width=\"{w}\"",
        n(x1),
        n(y1),
        n(x2),
        n(y2)
    );
    if !dash.is_empty() {
        let _ = write!(s, " stroke-dasharray=\"{dash}\"");
    }
    s.push_str("/>\n");
}

#[allow(clippy::too_many_arguments)]
fn text(
    s: &mut String,
    x: f64,
    y: f64,
    size: f64,
    anchor: &str,
    bold: bool,
    mono: bool,
    fill: &str,
    t: &str,
) {
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"{size}\" text-anchor=\"{anchor}\" fill=\"{fill}\"{}{}>{}</text>",
        n(x),
        n(y),
        if bold { " font-weight=\"bold\"" } else { "" },
        if mono { " font-family=\"monospace\"" } else { "" },
        esc(t)
    );
}

/// A coordinate, to a tenth of a pixel.
fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Text for XML: the five special characters escaped, characters XML 1.0 cannot hold
/// replaced.
fn esc(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// The faces of the picture's texts, for estimating their widths.
#[derive(Clone, Copy)]
enum Face {
    Sans,
    Bold,
    Mono,
}

impl Face {
    /// The mean advance of a character, in ems: DejaVu Sans's (the widest of the common
    /// `sans-serif` fonts, so that the estimate holds for the others too), DejaVu Sans Mono's.
    fn em(self) -> f64 {
        match self {
            Face::Sans => 0.54,
            Face::Bold => 0.6,
            Face::Mono => 0.61,
        }
    }
}

/// The estimated width of a text.
fn text_w(t: &str, size: f64, face: Face) -> f64 {
    t.chars().count() as f64 * size * face.em()
}

/// `t`, shortened with "…" to fit `w` pixels.
fn fit(t: &str, size: f64, face: Face, w: f64) -> String {
    if text_w(t, size, face) <= w {
        return t.to_string();
    }
    let keep = ((w / (size * face.em())) as usize).saturating_sub(1);
    let mut o: String = t.chars().take(keep).collect();
    o.push('…');
    o
}

/// Spans shortened to fit `w` pixels together: the later ones give way first.
fn fit_spans(spans: Vec<Span>, size: f64, w: f64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut left = w;
    for (t, bold, fill) in spans {
        if left < size * 2.0 {
            break;
        }
        let face = if bold { Face::Bold } else { Face::Sans };
        let f = fit(&t, size, face, left);
        left -= text_w(&f, size, face);
        out.push((f, bold, fill));
    }
    out
}

/// The file name of a path.
fn short(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_string()
}

fn human128(n: u128) -> String {
    human(n.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_xml_needs() {
        assert_eq!(esc("a&b<c>\"'"), "a&amp;b&lt;c&gt;&quot;&apos;");
        assert_eq!(esc("x\u{1}y"), "x\u{fffd}y");
    }

    #[test]
    fn fits() {
        assert_eq!(fit("short", 15.0, Face::Sans, 500.0), "short");
        let f = fit(&"x".repeat(200), 15.0, Face::Sans, 100.0);
        assert!(f.ends_with('…') && text_w(&f, 15.0, Face::Sans) <= 100.0);
    }

    /// The picture of a real plan: well-formed enough (balanced tags), with its parts.
    #[test]
    fn picture_of_sh() {
        let machine = crate::HostFacts::detect();
        let target = crate::Target::resolve("/bin/sh".as_ref(), &[]).unwrap();
        let mut cfg = crate::Config::no_aslr(crate::Stage::Loaded);
        cfg.ledger = true;
        let plan = crate::plan(&target, &cfg, &machine).unwrap();
        let x = Explanation::of(&plan, crate::render::maps::lines(&plan.mm), None);
        let s = render(&x);
        assert!(s.starts_with("<?xml"));
        assert!(s.trim_end().ends_with("</svg>"));
        for part in ["stack", "mmap area", "kernel space", "libc.so.6", "Legend"] {
            assert!(s.contains(part), "{part}");
        }
        assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
    }
}
