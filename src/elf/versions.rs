//! The symbol version tables (`DT_VERNEED`, `DT_VERDEF`), walked through the PT_LOADs'
//! file offsets, each step bounds-checked; a damaged table ends the walk.

use super::dynamic::{vaddr_to_offset, DynamicInfo};
use super::{ElfImage, FileWindow};

/// How many entries a walk follows at most (hostile tables can loop).
const MAX_ENTRIES: usize = 1 << 16;

/// The largest version index an object's DT_VERNEED (`vna_other`) and DT_VERDEF
/// (`vd_ndx`) entries use, each `& 0x7fff` (glibc's `ndx_high`), 0 if it has neither.
pub fn highest_version_index(img: &ElfImage, dynamic: &DynamicInfo) -> u32 {
    // GNU ld puts the two tables next to each other: one read usually holds both.
    let mut bytes = FileWindow::new(img, 2048);
    let need = dynamic.verneed.and_then(|v| vaddr_to_offset(img, v));
    let def = dynamic.verdef.and_then(|v| vaddr_to_offset(img, v));
    if let Some(first) = need.into_iter().chain(def).min() {
        bytes.prefetch(first);
    }
    let mut high = 0u32;
    if let Some(off) = need {
        // Elf*_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
        // Elf*_Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32,
        // vna_next u32. The same layout in both classes.
        let mut ent = off;
        'need: for _ in 0..MAX_ENTRIES {
            let (Some(vn_aux), Some(vn_next)) = (bytes.u32_at(ent + 8), bytes.u32_at(ent + 12))
            else {
                break;
            };
            let mut aux = ent + u64::from(vn_aux);
            for _ in 0..MAX_ENTRIES {
                let (Some(other), Some(vna_next)) = (bytes.u16_at(aux + 6), bytes.u32_at(aux + 12))
                else {
                    break 'need;
                };
                high = high.max(u32::from(other & 0x7fff));
                if vna_next == 0 {
                    break;
                }
                aux += u64::from(vna_next);
            }
            if vn_next == 0 {
                break;
            }
            ent += u64::from(vn_next);
        }
    }
    if let Some(off) = def {
        // Elf*_Verdef: vd_version u16, vd_flags u16, vd_ndx u16, vd_cnt u16, vd_hash u32,
        // vd_aux u32, vd_next u32.
        let mut ent = off;
        for _ in 0..MAX_ENTRIES {
            let (Some(ndx), Some(vd_next)) = (bytes.u16_at(ent + 4), bytes.u32_at(ent + 16)) else {
                break;
            };
            high = high.max(u32::from(ndx & 0x7fff));
            if vd_next == 0 {
                break;
            }
            ent += u64::from(vd_next);
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// libc.so.6 on x86-64 has ndx 43 (a 1056-byte array, as gdb showed ld.so allocate it).
    #[test]
    fn elf_versions_of_libc() {
        let Ok(img) = ElfImage::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")) else {
            eprintln!("skipped: no libc.so.6");
            return;
        };
        let d = crate::elf::dynamic::read_dynamic(&img).unwrap().unwrap();
        let n = highest_version_index(&img, &d);
        assert!(n >= 40, "{n}");
    }
}
