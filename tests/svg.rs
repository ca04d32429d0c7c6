//! The picture of the address space (`explain --svg FILE`, `plan --format svg`), as a
//! reader gets it: well-formed XML, opened in a real browser (headless Chromium, Debian's
//! `chromium`, installed by `make deps`): the page parses, its text has the labels a reader
//! looks for, and its screenshot is a picture, not a blank page. Skipped (and said so) only
//! when no Chromium is installed.

mod util;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// The browser: the first of these names found in PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Run headless Chromium on `file` with `extra` arguments (a fresh profile each time);
/// its standard output. Killed after a minute.
fn browse(browser: &Path, work: &Path, file: &Path, extra: &[OsString]) -> Vec<u8> {
    let profile = work.join(format!(
        "profile-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", file.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("cannot start chromium");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish in 60 s on {}", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = reader.join().unwrap();
    std::fs::remove_dir_all(&profile).ok();
    v
}

/// A small well-formedness check: one root element, tags nested and closed, attribute
/// values quoted, `<` never in text or values, `&` only as a known entity or a character
/// reference.
fn well_formed(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut i = 0;
    let at = |i: usize| format!("at byte {i}: {:?}", &s[i..(i + 60).min(s.len())]);
    let entity = |i: usize| -> Result<usize, String> {
        let end = s[i..].find(';').ok_or_else(|| at(i))? + i;
        let name = &s[i + 1..end];
        let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
            || name
                .strip_prefix("#x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || name
                .strip_prefix('#')
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
        if ok {
            Ok(end + 1)
        } else {
            Err(format!("bad entity {}", at(i)))
        }
    };
    while i < b.len() {
        match b[i] {
            b'<' if s[i..].starts_with("<?") => {
                i += s[i..].find("?>").ok_or_else(|| at(i))? + 2;
            }
            b'<' if s[i..].starts_with("<!--") => {
                i += s[i..].find("-->").ok_or_else(|| at(i))? + 3;
            }
            b'<' if s[i..].starts_with("</") => {
                let end = s[i..].find('>').ok_or_else(|| at(i))? + i;
                let name = s[i + 2..end].trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?} {}", at(i))),
                }
                i = end + 1;
            }
            b'<' => {
                if stack.is_empty() {
                    roots += 1;
                }
                let mut j = i + 1;
                while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' && b[j] != b'/' {
                    j += 1;
                }
                let name = &s[i + 1..j];
                if name.is_empty() {
                    return Err(format!("empty tag name {}", at(i)));
                }
                // Attributes.
                loop {
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j >= b.len() {
                        return Err(format!("unclosed tag {}", at(i)));
                    }
                    if s[j..].starts_with("/>") {
                        j += 2;
                        break;
                    }
                    if b[j] == b'>' {
                        stack.push(name);
                        j += 1;
                        break;
                    }
                    let eq = s[j..].find('=').ok_or_else(|| at(j))? + j;
                    let q = b[eq + 1];
                    if q != b'"' && q != b'\'' {
                        return Err(format!("unquoted attribute {}", at(j)));
                    }
                    let close = s[eq + 2..].find(q as char).ok_or_else(|| at(j))? + eq + 2;
                    let mut k = eq + 2;
                    while k < close {
                        match b[k] {
                            b'<' => return Err(format!("'<' in attribute {}", at(k))),
                            b'&' => k = entity(k)?,
                            _ => k += 1,
                        }
                    }
                    j = close + 1;
                }
                i = j;
            }
            b'&' => i = entity(i)?,
            _ => i += 1,
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements: {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

/// The text of a document: what is between its tags, entities decoded.
fn text_of(markup: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in markup.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `height` of the root `<svg>`.
fn svg_height(svg: &str) -> u32 {
    let root = &svg[svg.find("<svg").unwrap()..];
    let h = &root[root.find(" height=\"").unwrap() + 9..];
    h[..h.find('"').unwrap()].parse::<f64>().unwrap().ceil() as u32
}

/// Decode `png` and check that it is a picture: the size asked for, a good part of it not
/// white, many colours.
fn check_screenshot(png_path: &Path, width: u32, height: u32) -> Result<(), String> {
    let data = std::fs::read(png_path).map_err(|e| format!("no screenshot: {e}"))?;
    if data.is_empty() {
        return Err("empty screenshot".into());
    }
    let decoder = png::Decoder::new(std::io::Cursor::new(data));
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if (info.width, info.height) != (width, height) {
        return Err(format!(
            "screenshot is {}x{}, asked for {width}x{height}",
            info.width, info.height
        ));
    }
    let channels = info.color_type.samples();
    if info.bit_depth != png::BitDepth::Eight || channels < 3 {
        return Err(format!("unexpected PNG format {:?}", info.color_type));
    }
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut not_white = 0usize;
    let mut total = 0usize;
    for p in pixels.chunks_exact(channels) {
        total += 1;
        if p[..3] != [255, 255, 255] {
            not_white += 1;
        }
        if colours.len() < 10_000 {
            colours.insert([p[0], p[1], p[2]]);
        }
    }
    let share = not_white as f64 / total as f64;
    if share < 0.04 || colours.len() < 16 {
        return Err(format!(
            "looks blank: {:.1}% of the pixels not white, {} colours",
            share * 100.0,
            colours.len()
        ));
    }
    Ok(())
}

struct Case {
    name: &'static str,
    args: Vec<OsString>,
    /// Texts the page must show.
    expect: Vec<&'static str>,
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[test]
fn pictures_render_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!("tests/svg.rs: skipped: no chromium in PATH (`make deps` installs it)");
        return;
    };
    let t = testdata();
    let work = std::env::temp_dir().join(format!("elfmap-svg-test-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut cases = vec![
        Case {
            name: "hello32",
            args: {
                let mut v = os(&["explain", "--no-aslr", "--3gb", "--svg"]);
                v.push(work.join("hello32.svg").into());
                v.push(t.join("hello32").into());
                v
            },
            expect: vec![
                "hello32: the address space of a 32-bit non-PIE (ET_EXEC)",
                "not usable",
                "1 GiB unusable",
                "[stack]",
                "mmap area",
                "libc.so.6",
                "ld-linux.so.2",
                "start_brk",
                "text",
                "0x8048000",
                "0xc0000000",
                "Drawn to scale",
                "ASLR off",
            ],
        },
        Case {
            name: "ls",
            args: os(&["plan", "--format", "svg", "--no-aslr", "/usr/bin/ls"]),
            expect: vec![
                "ls: the address space of a 64-bit PIE",
                "kernel space",
                "non-canonical",
                "[vsyscall]",
                "[stack]",
                "libc.so.6",
                "ld-linux-x86-64.so.2",
                "[vdso]",
                "heap",
                "TiB unmapped",
                "0x555555554000",
                "Not to scale",
                "top-down mmap layout",
            ],
        },
        Case {
            name: "static64",
            args: {
                let mut v = os(&["plan", "--format", "svg", "--seed", "1"]);
                v.push(t.join("static64").into());
                v
            },
            expect: vec![
                "static64: the address space of a 64-bit static non-PIE (ET_EXEC)",
                "kernel space",
                "[stack]",
                "random stack top",
                "random mmap_base",
                "random start_brk",
                "below the link address",
                "0x400000",
                "--seed 1",
            ],
        },
        Case {
            name: "musl",
            args: {
                let mut v = os(&["plan", "--format", "svg", "--no-aslr"]);
                v.push(t.join("hello_musl").into());
                v
            },
            expect: vec![
                "hello_musl: the address space of a 64-bit PIE",
                "libc.so",
                "x86_64-linux-musl",
                "[stack]",
                "heap",
            ],
        },
    ];
    if Path::new("/usr/bin/gdb").exists() {
        cases.push(Case {
            name: "gdb",
            args: os(&["plan", "--format", "svg", "--no-aslr", "/usr/bin/gdb"]),
            expect: vec![
                "gdb: the address space of a 64-bit PIE",
                "libc.so.6",
                "libpython",
                "ld.so's malloc",
                "[stack]",
            ],
        });
    }
    let mut failures = Vec::new();
    for c in &cases {
        let file = work.join(format!("{}.svg", c.name));
        let o = run(&c.args);
        assert!(o.status.success(), "{}: {}", c.name, stderr(&o));
        if c.args[0] == "plan" {
            std::fs::write(&file, &o.stdout).unwrap();
        } else {
            assert!(o.stdout.len() > 100, "explain still prints its text");
        }
        let svg = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = well_formed(&svg) {
            failures.push(format!("{}: not well-formed XML: {e}", c.name));
            continue;
        }
        // What the browser made of it: the DOM it parsed.
        // (A second try if the browser gave nothing: a headless start can fail on a busy
        // machine.)
        let mut dom = String::new();
        for _ in 0..2 {
            dom = String::from_utf8_lossy(&browse(&browser, &work, &file, &os(&["--dump-dom"])))
                .into_owned();
            if !dom.trim().is_empty() {
                break;
            }
        }
        if dom.contains("parsererror") || !dom.contains("<svg") {
            failures.push(format!(
                "{}: the browser could not parse it: {}",
                c.name,
                &dom[..dom.len().min(600)]
            ));
            continue;
        }
        let shown = text_of(&dom);
        for e in &c.expect {
            if !shown.contains(e) {
                failures.push(format!("{}: the page does not show {e:?}", c.name));
            }
        }
        // What it looks like.
        let h = svg_height(&svg);
        assert!((600..6000).contains(&h), "{}: height {h}", c.name);
        let png = work.join(format!("{}.png", c.name));
        for _ in 0..2 {
            browse(
                &browser,
                &work,
                &file,
                &[
                    OsString::from(format!("--screenshot={}", png.display())),
                    OsString::from(format!("--window-size=1200,{h}")),
                ],
            );
            if std::fs::metadata(&png).is_ok_and(|m| m.len() > 0) {
                break;
            }
        }
        if let Err(e) = check_screenshot(&png, 1200, h) {
            failures.push(format!("{}: screenshot {}: {e}", c.name, png.display()));
        }
    }
    if failures.is_empty() {
        std::fs::remove_dir_all(&work).ok();
    } else {
        panic!(
            "{} problems (files kept in {}):\n{}",
            failures.len(),
            work.display(),
            failures.join("\n")
        );
    }
}

/// The checker itself: what it must refuse.
#[test]
fn well_formed_refuses_broken_xml() {
    assert!(well_formed("<a x=\"1\"><b/>t &amp; &#x41;</a>").is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a>&</a>",
        "<a x=1/>",
        "<a x=\"<\"/>",
        "<a>",
        "<a/><b/>",
    ] {
        assert!(well_formed(bad).is_err(), "{bad}");
    }
}

/// Paths with XML's special characters come out escaped.
#[test]
fn special_characters_in_paths_are_escaped() {
    let t = testdata();
    let dir = std::env::temp_dir().join(format!("elfmap-svg-amp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("a&b<c>'\"");
    std::fs::copy(t.join("hello64pie"), &prog).unwrap();
    let o = run([
        OsString::from("plan"),
        "--format".into(),
        "svg".into(),
        "--no-aslr".into(),
        prog.clone().into(),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = stdout(&o);
    well_formed(&svg).unwrap();
    assert!(text_of(&svg).contains("a&b<c>'\""));
}
