//! The built-in kernel profiles against the real maps of their kernels: testdata/kernels/
//! holds, per Debian kernel, maps the kernel lab recorded in a guest under qemu (`make
//! kernels`, exported by lab/export.py; real output, not typed in). Here each recorded case is
//! planned with `--kernel RELEASE` (`elfmap kernel check`), and with `--kernel` the capture
//! the guest made of its kernel (`elfmap kernel capture` there), and must equal the recording,
//! line for line (device and inode numbers aside), with `.info`'s AT_ENTRY, AT_BASE,
//! AT_SYSINFO_EHDR, start_brk and start_stack; a case recorded with ASLR on must be explained
//! by draws that kernel can make (as `compare --maps` checks a sample). Cases whose files (the program, its
//! libraries, the cache's size) are not the same here as in the guest are left out, and
//! said so.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use util::*;

/// Whether `dir` is on a filesystem whose large files are 2 MiB-aligned as on the guests'
/// ext4 root (statfs magic of ext4, xfs or btrfs).
fn aligns_like_the_guest(dir: &Path) -> bool {
    let o = Command::new("stat")
        .args(["-f", "-c", "%t"])
        .arg(dir)
        .output()
        .unwrap();
    matches!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "ef53" | "58465342" | "9123683e"
    )
}

fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kernels")
}

/// `sha256sum` of each existing file of `paths`.
fn sha256(paths: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.is_file()).collect();
    if existing.is_empty() {
        return BTreeMap::new();
    }
    let out = Command::new("sha256sum").args(&existing).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (h, p) = l.split_once("  ")?;
            Some((PathBuf::from(p), h.to_string()))
        })
        .collect()
}

/// A copy of the recorded directory `src` holding only the cases whose program's files
/// are the same here; the programs left out, with why.
fn checkable(
    src: &Path,
    dst: &Path,
    recorded: &str,
    testdata: &Path,
    skip_testdata: bool,
) -> Vec<String> {
    let here = |p: &str| -> PathBuf {
        match p.strip_prefix(recorded) {
            Some(rest) => PathBuf::from(format!("{}{rest}", testdata.display())),
            None => PathBuf::from(p),
        }
    };
    let manifest = std::fs::read_to_string(src.join("MANIFEST")).unwrap();
    let mut hashes = BTreeMap::new();
    let mut pages = BTreeMap::new();
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in manifest.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.splitn(3, ' ').collect();
        match f[..] {
            ["sha256", h, p] => {
                hashes.insert(p.to_string(), h.to_string());
            }
            ["pages", n, p] => {
                pages.insert(p.to_string(), n.parse::<u64>().unwrap());
            }
            ["needs", prog, p] => needs.entry(prog.into()).or_default().push(p.into()),
            _ => panic!("MANIFEST line {l:?}"),
        }
    }
    let paths: Vec<PathBuf> = hashes.keys().map(|p| here(p)).collect();
    let got = sha256(&paths);
    let mut changed = BTreeSet::new();
    for (p, h) in &hashes {
        if got.get(&here(p)) != Some(h) {
            changed.insert(p.clone());
        }
    }
    for (p, n) in &pages {
        let size = std::fs::metadata(here(p)).map(|m| m.len()).unwrap_or(0);
        if size.div_ceil(4096) != *n {
            changed.insert(p.clone());
        }
    }
    let mut left_out = Vec::new();
    // 64-bit programs: the kernels' THP alignment of file mappings is for 64-bit tasks
    // (32-bit ones: not since 6.1.0-19 / 6.1.0-24 on 686).
    let index = std::fs::read_to_string(src.join("index.tsv")).unwrap();
    let bits64: BTreeSet<&str> = index
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let prog = f.next()?;
            (f.next()? == "64").then_some(prog)
        })
        .collect();
    let ok: BTreeSet<&String> = needs
        .iter()
        .filter(|(prog, files)| {
            if skip_testdata && prog.starts_with(recorded) && bits64.contains(prog.as_str()) {
                left_out.push(format!(
                    "{prog}: the test programs are on a filesystem that does not 2 MiB-align \
                     large files as the guest's ext4 did"
                ));
                return false;
            }
            let bad: Vec<&String> = files.iter().filter(|f| changed.contains(*f)).collect();
            if !bad.is_empty() {
                left_out.push(format!("{prog}: {bad:?} not as recorded"));
            }
            bad.is_empty()
        })
        .map(|(p, _)| p)
        .collect();
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst.join("recorder")).unwrap();
    std::fs::create_dir_all(dst.join("sysinfo")).unwrap();
    std::fs::copy(src.join("sysinfo/uname"), dst.join("sysinfo/uname")).unwrap();
    let index = std::fs::read_to_string(src.join("index.tsv")).unwrap();
    let mut out = String::new();
    for (i, l) in index.lines().enumerate() {
        let prog = l.split('\t').next().unwrap_or("");
        if i == 0 || ok.contains(&prog.to_string()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    std::fs::write(dst.join("index.tsv"), out).unwrap();
    // ASLR off (recorder/) and on (recorder-aslr/, where the lab recorded it).
    for dir in ["recorder", "recorder-aslr"] {
        let Ok(rd) = std::fs::read_dir(src.join(dir)) else {
            continue;
        };
        std::fs::create_dir_all(dst.join(dir)).unwrap();
        for e in rd {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(dir).join(e.file_name())).unwrap();
        }
    }
    left_out
}

#[test]
fn built_in_profiles_give_the_real_kernels_maps() {
    let testdata = std::fs::canonicalize(testdata()).unwrap();
    let mut kernels = 0;
    let mut cases = 0;
    let mut failures = Vec::new();
    for e in std::fs::read_dir(kernels_dir()).unwrap() {
        let src = e.unwrap().path();
        let release = src.file_name().unwrap().to_string_lossy().into_owned();
        let dst = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kernels-{release}"));
        // Where the guest had the test programs (lab/mkroot.sh: their path on the host
        // that made the image).
        let recorded = std::fs::read_to_string(src.join("TESTDATA")).unwrap();
        let recorded = recorded.trim();
        // The built-in profile, and the profile the guest captured of itself. A built-in
        // profile takes a file's 2 MiB alignment from the filesystem it is on here; the
        // capture knows the guest's mounts: where the test programs are not on a
        // filesystem that aligns as the guest's ext4 did (an overlay, tmpfs), the built-in
        // profile cannot be held to the test programs' recordings.
        let skip = !aligns_like_the_guest(&testdata);
        let mut profiles = vec![(release.clone(), skip)];
        let cap = src.join("kernel-capture.json");
        if cap.exists() {
            profiles.push((cap.to_string_lossy().into_owned(), false));
        }
        let mut n = 0;
        for (kernel, skip_testdata) in &profiles {
            let left_out = checkable(&src, &dst, recorded, &testdata, *skip_testdata);
            for l in &left_out {
                eprintln!("{release} (--kernel {kernel}): left out: {l}");
            }
            let o = run([
                "kernel".into(),
                "check".into(),
                "--json".into(),
                "--kernel".into(),
                kernel.clone(),
                "--relocate".into(),
                format!("{recorded}={}", testdata.display()),
                dst.to_string_lossy().into_owned(),
            ]);
            let j: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("{release}: {e}: {}", stderr(&o)));
            n = j["cases"].as_array().unwrap().len();
            eprintln!("{release}: {n} recorded cases planned with --kernel {kernel}");
            // The static test programs need nothing of this machine but themselves.
            assert!(n >= 10, "{release}: only {n} cases could be planned");
            // Samples recorded with ASLR on are judged by the draws recovered from them.
            let aslr = j["cases"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["case"]["aslr"] == true)
                .count();
            if src.join("recorder-aslr").is_dir() {
                assert!(aslr >= 10, "{release}: only {aslr} ASLR samples planned");
            }
            for c in j["cases"].as_array().unwrap() {
                let v = c["verdict"].as_str().unwrap();
                if v != "identical" && v != "identical_but_initializers" {
                    failures.push(format!(
                        "{release} (--kernel {kernel}): {} {}: {v}\n{}",
                        c["case"]["program"],
                        c["case"]["file"],
                        c["detail"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| d.as_str().unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
            }
        }
        kernels += 1;
        cases += n;
        let _ = std::fs::remove_dir_all(&dst);
    }
    assert!(
        kernels >= 5,
        "only {kernels} kernels recorded in testdata/kernels"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{cases} cases of {kernels} kernels equal the real maps");
}

/// The ASLR ranges come from the profile. A real sample of 5.10.0-32 (recorded with ASLR
/// on: ls at its entry stop, with the `[heap]` its constructors made) is consistent with
/// that kernel and with 5.10.0-33, whose only difference is arch_randomize_brk()'s range
/// (32 MiB, then 1 GiB: 44c76825d6ee in stable 5.10.225). Its `[heap]` moved 64 MiB up is
/// a draw only 5.10.0-33 can make: rejected with -32, accepted with -33.
#[test]
fn aslr_ranges_come_from_the_profile() {
    let testdata = std::fs::canonicalize(testdata()).unwrap();
    let src = kernels_dir().join("5.10.0-32-amd64");
    let recorded = std::fs::read_to_string(src.join("TESTDATA")).unwrap();
    let recorded = recorded.trim().to_string();
    let dst = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels-brk-range");
    let left_out = checkable(&src, &dst, &recorded, &testdata, false);
    let index = std::fs::read_to_string(dst.join("index.tsv")).unwrap();
    let Some(file) = index.lines().find_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (f[0] == "/usr/bin/ls" && f[2] == "entry" && f[5] == "recorder-aslr" && f[6] == "ok")
            .then(|| f[8].to_string())
    }) else {
        eprintln!("skipped: ls is not as recorded here: {left_out:?}");
        return;
    };
    let verdicts = |kernel: &str| -> BTreeMap<String, String> {
        let o = run([
            "kernel".into(),
            "check".into(),
            "--json".into(),
            "--kernel".into(),
            kernel.to_string(),
            "--relocate".into(),
            format!("{recorded}={}", testdata.display()),
            dst.to_string_lossy().into_owned(),
        ]);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{kernel}: {e}: {}", stderr(&o)));
        j["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["case"]["file"].as_str().unwrap().to_string(),
                    format!("{} {}", c["verdict"].as_str().unwrap(), c["detail"]),
                )
            })
            .collect()
    };
    let ok = |v: &str| v.starts_with("identical");
    for k in ["5.10.0-32-amd64", "5.10.0-33-amd64"] {
        let v = &verdicts(k)[&file];
        assert!(ok(v), "{k}: the recorded sample: {v}");
    }
    // Move the [heap] 64 MiB up.
    let path = dst.join(&file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut moved = false;
    let shifted: String = text
        .lines()
        .map(|l| {
            let m = elfmap::maps::MapsLine::parse(l).unwrap();
            if m.path == "[heap]" {
                moved = true;
                let w = |x: u64| format!("{:0width$x}", x + (64 << 20), width = 12);
                let rest = l.split_once(' ').unwrap().1;
                format!("{}-{} {rest}\n", w(m.start), w(m.end))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(moved, "{file} has no [heap]");
    std::fs::write(&path, shifted).unwrap();
    let old = &verdicts("5.10.0-32-amd64")[&file];
    assert!(!ok(old), "5.10.0-32 accepts a brk draw past 32 MiB: {old}");
    assert!(old.contains("arch_randomize_brk"), "{old}");
    let new = &verdicts("5.10.0-33-amd64")[&file];
    assert!(ok(new), "5.10.0-33: {new}");
    let _ = std::fs::remove_dir_all(&dst);
}
