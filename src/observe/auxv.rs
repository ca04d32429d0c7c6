//! Small `/proc/PID/…` parsers for the observer: auxv, stat, the ELF class of the
//! executable. Pure functions over bytes/text, plus thin readers.

use std::path::PathBuf;

/// `AT_NULL`: ends the vector.
pub const AT_NULL: u64 = 0;
/// `AT_PHDR`: the program headers of the executable, in memory.
pub const AT_PHDR: u64 = 3;
/// `AT_PAGESZ`: the page size.
pub const AT_PAGESZ: u64 = 6;
/// `AT_BASE`: the interpreter's load bias (0 without PT_INTERP).
pub const AT_BASE: u64 = 7;
/// `AT_ENTRY`: the executable's entry point.
pub const AT_ENTRY: u64 = 9;

pub use crate::elf::ident::ElfClass;

/// The class of the running executable of `pid`, from `/proc/PID/exe`: as the kernel
/// decided it, by the handler that took its `e_machine` (EM_X86_64: 64-bit; EM_386 or
/// EM_486: 32-bit, see `kernel::verdict`), not by `e_ident[EI_CLASS]`, which the kernel
/// never reads.
pub fn exe_class(pid: i32) -> Result<ElfClass, String> {
    use std::io::Read;
    let path = format!("/proc/{pid}/exe");
    let mut head = [0u8; 20];
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("{path}: {e}"))?;
    match u16::from_le_bytes([head[18], head[19]]) {
        goblin::elf::header::EM_X86_64 => Ok(ElfClass::Elf64),
        goblin::elf::header::EM_386 | crate::elf::EM_486 => Ok(ElfClass::Elf32),
        _ => ElfClass::from_ident(&head).map_err(|e| format!("{path}: {e}")),
    }
}

/// Parse the bytes of `/proc/PID/auxv`: native-endian (type, value) pairs of
/// `word_size` bytes each, up to (not including) `AT_NULL`.
pub fn parse_auxv(bytes: &[u8], class: ElfClass) -> Vec<(u64, u64)> {
    let w = class.word_size();
    let word = |b: &[u8]| -> u64 {
        match w {
            4 => u32::from_ne_bytes(b.try_into().unwrap()) as u64,
            _ => u64::from_ne_bytes(b.try_into().unwrap()),
        }
    };
    let mut out = Vec::new();
    for pair in bytes.chunks_exact(2 * w) {
        let (t, v) = (word(&pair[..w]), word(&pair[w..]));
        if t == AT_NULL {
            break;
        }
        out.push((t, v));
    }
    out
}

/// The first value of `key` in an auxv list.
pub fn auxv_get(auxv: &[(u64, u64)], key: u64) -> Option<u64> {
    auxv.iter().find(|(t, _)| *t == key).map(|(_, v)| *v)
}

/// Read and parse `/proc/PID/auxv`.
pub fn read_auxv(pid: i32, class: ElfClass) -> Result<Vec<(u64, u64)>, String> {
    let path = format!("/proc/{pid}/auxv");
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(parse_auxv(&bytes, class))
}

/// The fields of `/proc/PID/stat` the observer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Field 28: "the address of the start (i.e., bottom) of the stack" (proc(5)); in
    /// practice `mm->start_stack`, where argc sits at exec.
    pub start_stack: u64,
    /// Field 47: the address above which the heap can be expanded with brk(2).
    pub start_brk: u64,
}

/// Parse the text of `/proc/PID/stat`. Field 2 (comm) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted after the *last* `)`.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let close = text
        .rfind(')')
        .ok_or_else(|| "no ')' after the comm field".to_string())?;
    // Field 3 (state) is the first one after the ')'.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64, String> {
        let s = fields
            .get(n - 3)
            .ok_or_else(|| format!("only {} fields, field {n} missing", fields.len() + 2))?;
        s.parse::<u64>()
            .map_err(|_| format!("field {n} is not a number: {s:?}"))
    };
    Ok(Stat {
        start_stack: field(28)?,
        start_brk: field(47)?,
    })
}

/// Read and parse `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<Stat, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_stat(&text).map_err(|e| format!("{path}: {e}"))
}

/// `/proc/PID/maps`, the full text.
pub fn read_maps(pid: i32) -> Result<String, String> {
    let path = format!("/proc/{pid}/maps");
    std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
}

/// `readlink /proc/PID/exe`.
pub fn read_exe(pid: i32) -> Result<PathBuf, String> {
    let path = format!("/proc/{pid}/exe");
    std::fs::read_link(&path).map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_class() -> ElfClass {
        if cfg!(target_pointer_width = "64") {
            ElfClass::Elf64
        } else {
            ElfClass::Elf32
        }
    }

    #[test]
    fn own_exe_class() {
        assert_eq!(exe_class(std::process::id() as i32).unwrap(), own_class());
    }

    #[test]
    fn own_auxv() {
        let bytes = std::fs::read("/proc/self/auxv").unwrap();
        let auxv = parse_auxv(&bytes, own_class());
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .unwrap()
            .unwrap() as u64;
        assert_eq!(auxv_get(&auxv, AT_PAGESZ), Some(page));
        let entry = auxv_get(&auxv, AT_ENTRY).unwrap();
        assert_ne!(entry, 0);
        assert!(auxv_get(&auxv, AT_PHDR).is_some());
        assert!(auxv.iter().all(|(t, _)| *t != AT_NULL));
        // The entry point lies in an executable mapping of the test binary.
        let maps = read_maps(std::process::id() as i32).unwrap();
        let exe = read_exe(std::process::id() as i32).unwrap();
        let hit = crate::maps::MapsLine::parse_all(&maps)
            .unwrap()
            .into_iter()
            .find(|l| l.start <= entry && entry < l.end)
            .expect("AT_ENTRY is mapped");
        assert_eq!(hit.path, exe.to_str().unwrap());
        assert_eq!(&hit.perms[2..3], "x");
        // read_auxv agrees with the hand parse.
        assert_eq!(
            read_auxv(std::process::id() as i32, own_class()).unwrap(),
            auxv
        );
    }

    #[test]
    fn auxv_32bit_words() {
        let mut b = Vec::new();
        for w in [
            AT_PAGESZ as u32,
            4096,
            AT_ENTRY as u32,
            0x8049000,
            0,
            0,
            99,
            99,
        ] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(
            parse_auxv(&b, ElfClass::Elf32),
            vec![(AT_PAGESZ, 4096), (AT_ENTRY, 0x8049000)]
        );
    }

    #[test]
    fn own_stat() {
        let pid = std::process::id() as i32;
        let st = read_stat(pid).unwrap();
        let maps = crate::maps::MapsLine::parse_all(&read_maps(pid).unwrap()).unwrap();
        let stack = maps.iter().find(|l| l.path == "[stack]").unwrap();
        assert!(
            stack.start <= st.start_stack && st.start_stack < stack.end,
            "{st:x?} {stack:x?}"
        );
        assert_ne!(st.start_brk, 0);
        if let Some(heap) = maps.iter().find(|l| l.path == "[heap]") {
            assert!(heap.start <= st.start_brk && st.start_brk <= heap.end);
        }
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        // Fields 3.. : state then numbers 4..=52; field n holds the value n.
        let mut text = String::from("4242 (a) b (c)) S");
        for n in 4..=52 {
            text.push_str(&format!(" {n}"));
        }
        text.push('\n');
        assert_eq!(
            parse_stat(&text).unwrap(),
            Stat {
                start_stack: 28,
                start_brk: 47
            }
        );
        assert!(parse_stat("1 (x) S 1 2 3").is_err());
        assert!(parse_stat("garbage").is_err());
    }
}
