//! DOC: scripts. `fs/binfmt_script.c: load_script()` takes a file whose first two bytes
//! are `#!`: it reads the interpreter's name and one optional argument from the first line
//! (within the `BINPRM_BUF_SIZE` bytes the kernel has read), removes `argv[0]`, pushes the
//! script's path (`bprm->interp`: the filename given to execve), the argument and the
//! interpreter's name, opens the interpreter, and the handlers are asked again
//! (`fs/exec.c: exec_binprm()`, at most 5 rewrites, then ELOOP). `bprm->filename` (AT_EXECFN,
//! the first string on the stack) stays the script's path. All of it happens before the
//! point of no return: a failure is execve's error.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use super::binfmt_elf::{under_root, ExecRequest};
use super::verdict::{errno_name, prepare_binprm};
use crate::error::{Error, Result};
use crate::host::binfmt_misc::{MiscEntry, MiscMatch};

/// `fs/exec.c: exec_binprm()`: "This allows 4 levels of binfmt rewrites before failing
/// hard": the loop gives up with ELOOP when its depth passes 5.
const MAX_REWRITES: usize = 5;

/// The first line of a script as `load_script()` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter's path, as written (relative to the current directory if relative).
    pub name: Vec<u8>,
    /// The optional argument: everything after the name and the blanks that follow it, up
    /// to the end of the line (spaces included: it is one argument).
    pub arg: Option<Vec<u8>>,
}

fn spacetab(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// The first index in `[first, last)` that is not a space or tab.
fn next_non_spacetab(buf: &[u8], first: usize, last: usize) -> Option<usize> {
    (first..last).find(|&i| !spacetab(buf[i]))
}

/// The first index in `[first, last)` that is a space, a tab or a NUL.
fn next_terminator(buf: &[u8], first: usize, last: usize) -> Option<usize> {
    (first..last).find(|&i| spacetab(buf[i]) || buf[i] == 0)
}

/// A C string: the bytes up to the first NUL.
fn c_str(b: &[u8]) -> Vec<u8> {
    b.split(|&c| c == 0).next().unwrap_or_default().to_vec()
}

/// Models the parsing of `load_script()` on `buf`, the file's first `BINPRM_BUF_SIZE`
/// bytes (zero past a short file's end): `Ok(None)` if it is no script (no `#!`),
/// `Err(reason)` where the kernel says ENOEXEC.
pub fn parse(buf: &[u8]) -> std::result::Result<Option<Shebang>, &'static str> {
    if buf.len() < 2 || buf[0] != b'#' || buf[1] != b'!' {
        return Ok(None);
    }
    let buf_end = buf.len() - 1;
    let mut i_end = match buf.iter().position(|&c| c == b'\n') {
        Some(i) => i,
        None => {
            let Some(start) = next_non_spacetab(buf, 2, buf_end) else {
                return Err("the #! line is nothing but blanks");
            };
            // No later blank or NUL: the interpreter's path must be cut short.
            if next_terminator(buf, start, buf_end).is_none() {
                return Err("the #! line is longer than the 256 bytes the kernel reads: the interpreter's path would be cut short");
            }
            buf_end
        }
    };
    while i_end > 2 && spacetab(buf[i_end - 1]) {
        i_end -= 1;
    }
    let Some(i_name) = next_non_spacetab(buf, 2, i_end).filter(|&i| i != i_end) else {
        return Err("no interpreter is named after #!");
    };
    let i_sep = next_terminator(buf, i_name, i_end);
    let name_end = i_sep.unwrap_or(i_end);
    let arg = match i_sep {
        Some(s) if buf[s] != 0 => next_non_spacetab(buf, s, i_end).map(|a| c_str(&buf[a..i_end])),
        _ => None,
    };
    Ok(Some(Shebang {
        name: c_str(&buf[i_name..name_end]),
        arg: arg.filter(|a| !a.is_empty()),
    }))
}

/// Models `exec_binprm()`'s rewrites by `load_script()`: while `req.program` is a script,
/// exec its interpreter instead, with the arguments the kernel pushes. The request returned
/// names the file the ELF handler will get; `filename` is unchanged.
pub fn load_scripts(mut req: ExecRequest) -> Result<ExecRequest> {
    let misc = std::mem::take(&mut req.binfmt_misc);
    // `bprm->interp`: the name the next rewrite pushes (the filename, then each
    // interpreter's name).
    let mut interp: OsString = req.filename.clone();
    for depth in 0.. {
        let script = req.program.clone();
        // A file that cannot be opened or read (a directory, ...): search_binary_handler()
        // reports it as execve would.
        let Ok(buf) = File::open(&script).and_then(|f| prepare_binprm(&f)) else {
            return Ok(req);
        };
        // binfmt_misc is first in the list of handlers (insert_binfmt()).
        if let Some(e) = check_file(&misc, &buf, interp.as_encoded_bytes()) {
            if depth >= MAX_REWRITES {
                return Err(Error::refused(
                    &req.filename,
                    "ELOOP",
                    format!("more than {MAX_REWRITES} interpreters in a chain of rewrites"),
                ));
            }
            if e.flags.contains('O') || e.flags.contains('C') {
                return Err(Error::bad_elf(
                    &script,
                    format!(
                        "binfmt_misc entry {} ({}) takes it with flag O or C (the binary passed as AT_EXECFD), which elfmap does not model",
                        e.name,
                        e.interpreter.display()
                    ),
                ));
            }
            let name = e.interpreter.clone().into_os_string();
            let host = open_exec(&req, &script, &name, "binfmt_misc's interpreter")?;
            // load_misc_binary(): remove_arg_zero() unless P, then bprm->interp and the
            // interpreter are pushed: argv becomes interpreter, interp, [argv[0]], argv[1..].
            let mut argv = vec![name.clone(), interp.clone()];
            let keep = if e.flags.contains('P') { 0 } else { 1 };
            argv.extend(req.argv.iter().skip(keep).cloned());
            req.argv = argv;
            req.program = host;
            interp = name;
            continue;
        }
        let shebang = match parse(&buf) {
            Ok(None) => return Ok(req),
            Ok(Some(s)) => s,
            Err(why) => return Err(Error::refused(&script, "ENOEXEC", why)),
        };
        if depth >= MAX_REWRITES {
            return Err(Error::refused(
                &req.filename,
                "ELOOP",
                format!("more than {MAX_REWRITES} interpreters in a chain of #! scripts"),
            ));
        }
        let name = OsString::from_vec(shebang.name.clone());
        let host = open_exec(&req, &script, &name, "the interpreter of the script")?;
        // remove_arg_zero(), then bprm->interp, the argument and the name are pushed: argv
        // becomes name, [arg], interp, argv[1..].
        let mut argv = vec![name.clone()];
        if let Some(a) = &shebang.arg {
            argv.push(OsString::from_vec(a.clone()));
        }
        argv.push(interp.clone());
        argv.extend(req.argv.iter().skip(1).cloned());
        req.argv = argv;
        req.program = host;
        interp = name;
    }
    unreachable!("the loop returns")
}

/// `open_exec()` of an interpreter `name` (in-root) for `script`: a regular file we may
/// execute; its path on this machine.
fn open_exec(
    req: &ExecRequest,
    script: &Path,
    name: &OsString,
    what: &str,
) -> Result<std::path::PathBuf> {
    let host = under_root(req.root.as_deref(), Path::new(name));
    let shown = Path::new(name).display();
    let meta = std::fs::metadata(&host).map_err(|e| {
        Error::refused(
            script,
            errno_name(&e),
            format!("{what} {shown} cannot be opened: {e}"),
        )
    })?;
    if !meta.is_file() {
        return Err(Error::refused(
            script,
            "EACCES",
            format!("{what} {shown} is not a regular file"),
        ));
    }
    if let Err(why) = crate::host::exec::may_exec(&host, &meta) {
        return Err(Error::refused(
            script,
            "EACCES",
            format!("{what} {shown}: {why}"),
        ));
    }
    Ok(host)
}

/// Models `fs/binfmt_misc.c: check_file()`: the first enabled entry whose magic (under its
/// mask, at its offset of the first `BINPRM_BUF_SIZE` bytes) or extension (after the last
/// '.' of `bprm->interp`, the whole name) matches.
fn check_file<'e>(entries: &'e [MiscEntry], buf: &[u8], interp: &[u8]) -> Option<&'e MiscEntry> {
    let ext = interp
        .iter()
        .rposition(|&c| c == b'.')
        .map(|i| &interp[i + 1..]);
    entries
        .iter()
        .filter(|e| e.enabled)
        .find(|e| match &e.matches {
            MiscMatch::Extension(x) => ext == Some(x.as_slice()),
            MiscMatch::Magic {
                offset,
                magic,
                mask,
            } => magic.iter().enumerate().all(|(j, m)| {
                let b = buf.get(offset + j).copied().unwrap_or(0);
                let k = mask
                    .as_ref()
                    .and_then(|k| k.get(j))
                    .copied()
                    .unwrap_or(0xff);
                (b ^ m) & k == 0
            }),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(s: &[u8]) -> Vec<u8> {
        let mut b = s.to_vec();
        b.resize(256, 0);
        b
    }

    fn sb(name: &str, arg: Option<&str>) -> Option<Shebang> {
        Some(Shebang {
            name: name.as_bytes().to_vec(),
            arg: arg.map(|a| a.as_bytes().to_vec()),
        })
    }

    #[test]
    fn first_lines_as_load_script_reads_them() {
        assert_eq!(parse(&buf(b"#!/bin/sh\necho")), Ok(sb("/bin/sh", None)));
        assert_eq!(parse(&buf(b"#! \t/bin/sh  \t\n")), Ok(sb("/bin/sh", None)));
        assert_eq!(
            parse(&buf(b"#!/usr/bin/env python3 -u  x \n")),
            Ok(sb("/usr/bin/env", Some("python3 -u  x")))
        );
        assert_eq!(parse(&buf(b"#!sh\n")), Ok(sb("sh", None)));
        assert_eq!(parse(&buf(b"\x7fELF")), Ok(None));
        assert!(parse(&buf(b"#!   \n")).is_err());
        assert!(parse(&buf(b"#!\n")).is_err());
        // No newline within 256 bytes: fine if the name ends before, cut short otherwise.
        let mut long = b"#!/bin/sh ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 300));
        assert_eq!(
            parse(&long[..256]),
            Ok(sb("/bin/sh", Some(&"x".repeat(245))))
        );
        let mut cut = b"#!/".to_vec();
        cut.extend(std::iter::repeat_n(b'x', 300));
        assert!(parse(&cut[..256]).is_err());
        // A short file without a newline: the name ends at the zero fill.
        assert_eq!(parse(&buf(b"#!/bin/sh")), Ok(sb("/bin/sh", None)));
    }
}
