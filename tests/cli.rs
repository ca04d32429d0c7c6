//! The command line as a user meets it: help with examples, formats, the argument contract.

mod util;

use util::*;

#[test]
fn help_has_examples() {
    for args in [
        vec!["--help"],
        vec!["plan", "--help"],
        vec!["compare", "--help"],
    ] {
        let o = run(&args);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Examples:"), "{args:?}");
    }
}

#[test]
fn program_arguments_after_program_are_not_options() {
    // `-l` belongs to ls, not to elfmap.
    let o = run([
        "plan",
        "--no-aslr",
        "--stage",
        "exec",
        "/usr/bin/ls",
        "-l",
        "--color",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o2 = run([
        "plan",
        "--no-aslr",
        "--stage",
        "exec",
        "--",
        "/usr/bin/ls",
        "-l",
        "--color",
    ]);
    assert_eq!(stdout(&o), stdout(&o2));
}

#[test]
fn json_and_table_describe_the_same_maps() {
    let maps = stdout(&run([
        "plan",
        "--no-aslr",
        "--stage",
        "exec",
        "/usr/bin/ls",
    ]));
    let json = stdout(&run([
        "plan",
        "--no-aslr",
        "--stage",
        "exec",
        "--format",
        "json",
        "/usr/bin/ls",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let lines = v["maps"].as_array().unwrap();
    assert_eq!(lines.len(), maps.lines().count());
    for (l, m) in lines.iter().zip(maps.lines()) {
        let start = m.split('-').next().unwrap();
        // Addresses are hex strings in all JSON output (schema 3).
        assert!(l["start"].as_str().unwrap().starts_with("0x"));
        assert_eq!(
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(l["start"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        );
    }
    let table = stdout(&run([
        "plan",
        "--no-aslr",
        "--stage",
        "exec",
        "--format",
        "table",
        "/usr/bin/ls",
    ]));
    assert!(table.contains("load_bias") && table.contains("mmap_base"));
    for m in maps.lines() {
        let start = m.split('-').next().unwrap().trim_start_matches('0');
        assert!(table.contains(start), "table lacks {start}");
    }
}

#[test]
fn set_user_id_programs_are_explained() {
    // exec clears ADDR_NO_RANDOMIZE for set-user-ID programs: compare must say so, and
    // then check the randomised run by the draws recovered from it.
    let Some(p) = ["/usr/bin/passwd", "/usr/bin/su", "/usr/bin/mount"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return;
    };
    let o = run(["compare", "--no-aslr", "--stage", "exec", p]);
    assert!(stderr(&o).contains("set-user-ID"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains(": consistent"), "{}", stdout(&o));
}

/// `elfmap deps` lists the files the real loader opens (`ld.so --list`), in its order.
#[test]
fn deps_agrees_with_the_loader() {
    for p in [
        "/usr/bin/ls",
        "/usr/bin/bash",
        "/usr/bin/git",
        "/usr/bin/ssh",
        "/usr/bin/gdb",
    ] {
        if !std::path::Path::new(p).exists() {
            continue;
        }
        let o = run(["deps", "--json", p]);
        assert!(o.status.success(), "{p}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let ours: Vec<String> = v["objects"].as_array().unwrap()[1..]
            .iter()
            .map(|o| o["realpath"].as_str().unwrap().to_string())
            .filter(|p| !p.contains("/ld-linux"))
            .collect();
        let real = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .args(["--list", p])
            .output()
            .unwrap();
        let theirs: Vec<String> = stdout(&real)
            .lines()
            .filter_map(|l| l.split(" => ").nth(1))
            .filter_map(|r| r.split(" (").next())
            .map(|r| {
                std::fs::canonicalize(r.trim())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .filter(|p| !p.contains("/ld-linux"))
            .collect();
        assert_eq!(ours, theirs, "{p}");
    }
}

#[test]
fn deps_reports_missing_libraries() {
    let p = testdata().join("main_runpath_missing");
    let o = run(["deps", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("libleaf.so => NOT FOUND"),
        "{}",
        stdout(&o)
    );
    let err = stderr(&o);
    assert!(
        err.starts_with("elfmap: ") && err.contains("libleaf.so"),
        "{err}"
    );
    // The real loader agrees: the program cannot start.
    let real = std::process::Command::new(&p).output().unwrap();
    assert!(!real.status.success());
    assert!(stderr(&real).contains("libleaf.so"));
}

/// A plan made from host facts captured by `elfmap facts` is the live plan; and the file is
/// what the plan is made from: facts changed in it change the plan as the same change of
/// the live machine would.
#[test]
fn plan_from_captured_host_facts() {
    let dir = std::env::temp_dir().join(format!("elfmap-facts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let captured = run(["facts"]);
    assert!(captured.status.success(), "{}", stderr(&captured));
    let facts = dir.join("facts.json");
    std::fs::write(&facts, &captured.stdout).unwrap();
    let f = facts.to_str().unwrap();
    let td = testdata();
    let programs = [
        td.join("hello64pie"),
        td.join("hello32"),
        td.join("static64"),
        td.join("main_rpath"),
        "/usr/bin/ls".into(),
    ];
    for p in &programs {
        let p = p.to_str().unwrap();
        for stage in ["exec", "loaded", "entry"] {
            for format in ["maps", "json"] {
                let live = run(["plan", "--no-aslr", "--stage", stage, "--format", format, p]);
                let from_file = run([
                    "plan",
                    "--no-aslr",
                    "--facts",
                    f,
                    "--stage",
                    stage,
                    "--format",
                    format,
                    p,
                ]);
                assert!(live.status.success(), "{p}: {}", stderr(&live));
                assert_same(
                    &format!("{p} at {stage} ({format})"),
                    &stdout(&live),
                    &stdout(&from_file),
                );
            }
        }
    }
    // Another machine: a 16 MiB stack limit and no [vsyscall] page.
    let mut j: serde_json::Value = serde_json::from_slice(&captured.stdout).unwrap();
    j["rlimit_stack"] = serde_json::json!(16u64 << 20);
    j["vsyscall"] = serde_json::Value::Null;
    let other = dir.join("other.json");
    std::fs::write(&other, j.to_string()).unwrap();
    let ls = "/usr/bin/ls";
    let o = run(["plan", "--no-aslr", "--facts", other.to_str().unwrap(), ls]);
    assert!(o.status.success(), "{}", stderr(&o));
    let live_16m = stdout(&run(["plan", "--no-aslr", "--stack-limit", "16m", ls]));
    let expected: String = live_16m
        .lines()
        .filter(|l| !l.ends_with("[vsyscall]"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(expected, live_16m, "this machine has a [vsyscall] page");
    assert_same("ls from changed facts", &expected, &stdout(&o));
    // Not a facts file: one line naming it, exit 2.
    let o = run(["plan", "--facts", "/etc/hostname", ls]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("elfmap: /etc/hostname: not a host facts file"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every maps line of a plan says what made it: its `origin` parts cover the line exactly,
/// in order, each naming the step that mapped it; file lines are made by a segment of
/// their own file, and a line the loader protected after relocation (RELRO) says so.
#[test]
fn every_line_has_its_origin() {
    let hex = |v: &serde_json::Value| {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let mut programs = testdata_programs();
    programs.extend(["/usr/bin/ls", "/usr/bin/gdb", "/usr/bin/bash"].map(std::path::PathBuf::from));
    let mut relro_lines = 0;
    for p in &programs {
        for stage in ["exec", "loaded", "entry"] {
            let o = run([
                "plan",
                "--no-aslr",
                "--stage",
                stage,
                "--format",
                "json",
                p.to_str().unwrap(),
            ]);
            if !o.status.success() {
                continue; // a program whose library is missing, on purpose
            }
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            for m in j["maps"].as_array().unwrap() {
                let (start, end) = (hex(&m["start"]), hex(&m["end"]));
                let parts = m["origin"].as_array().unwrap();
                assert!(!parts.is_empty(), "{}: {m}", p.display());
                let mut at = start;
                for part in parts {
                    assert_eq!(hex(&part["start"]), at, "{}: {m}", p.display());
                    at = hex(&part["end"]);
                    assert!(part["by"].is_string(), "{}: {m}", p.display());
                }
                assert_eq!(at, end, "{}: {m}", p.display());
                let path = m["path"].as_str().unwrap();
                if m["inode"].as_u64().unwrap() != 0 && path != "/etc/ld.so.cache" {
                    for part in parts {
                        assert_eq!(part["object"]["path"], path, "{}: {m}", p.display());
                        assert!(part["phdr"].is_u64(), "{}: {m}", p.display());
                    }
                }
                let relro = parts.iter().any(|part| {
                    part["changes"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["change"] == "relro"))
                });
                if relro {
                    assert!(
                        m["perms"].as_str().unwrap().starts_with("r-"),
                        "{}: {m}",
                        p.display()
                    );
                    relro_lines += 1;
                }
            }
        }
    }
    assert!(relro_lines > 0, "no RELRO line seen");
}
