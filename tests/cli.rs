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
        assert_eq!(
            u64::from_str_radix(start, 16).unwrap(),
            l["start"].as_u64().unwrap()
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
    // exec clears ADDR_NO_RANDOMIZE for set-user-ID programs: compare must say so.
    let Some(p) = ["/usr/bin/passwd", "/usr/bin/su", "/usr/bin/mount"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return;
    };
    let o = run(["compare", "--no-aslr", "--stage", "exec", p]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("set-user-ID"), "{}", stderr(&o));
}
