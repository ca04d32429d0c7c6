//! DOC: the size of each object's version array. Models the index scan of glibc 2.36
//! `elf/dl-version.c: _dl_check_map_versions()`: the highest `vna_other` of the
//! DT_VERNEED entries and the highest `vd_ndx` of the DT_VERDEF entries (both `& 0x7fff`)
//! give `ndx_high`, and `calloc(ndx_high + 1, sizeof(struct r_found_version))` is made
//! when it is above 0 (spec/ldso.md 4.4 item 6).
//!
//! Only the version tables are read (a few hundred bytes), through the PT_LOADs' file
//! offsets, each step bounds-checked; a damaged table ends the walk.

use crate::elf::dynamic::{vaddr_to_offset, DynamicInfo};
use crate::elf::{ElfImage, FileWindow};

/// How many entries a walk follows at most (hostile tables can loop).
const MAX_ENTRIES: usize = 1 << 16;

/// `ndx_high` of the objects of a load list, computed on the helper thread as the resolver
/// reports them (by load-list position, with the image each was computed from), for the
/// loader model to take instead of reading the tables again.
#[derive(Default)]
pub struct NdxAhead(std::sync::Mutex<Vec<Option<NdxOf>>>);

/// An object's `ndx_high` and the image it was read from.
type NdxOf = (std::sync::Arc<ElfImage>, u32);

impl NdxAhead {
    /// Record `ndx` for the object at `index`, read from `img`.
    pub fn put(&self, index: usize, img: &std::sync::Arc<ElfImage>, ndx: u32) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() <= index {
            v.resize(index + 1, None);
        }
        v[index] = Some((img.clone(), ndx));
    }

    /// `ndx_high` of the object at `index` if it was computed from this very image.
    pub fn get(&self, index: usize, img: &std::sync::Arc<ElfImage>) -> Option<u32> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match v.get(index)? {
            Some((i, n)) if std::sync::Arc::ptr_eq(i, img) => Some(*n),
            _ => None,
        }
    }
}

/// `ndx_high` of an object: the largest version index its DT_VERNEED and DT_VERDEF
/// tables use, 0 if it has neither.
pub fn version_ndx_high(img: &ElfImage, dynamic: &DynamicInfo) -> u32 {
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

    /// spec/ldso.md 4.4: libc.so.6 on x86-64 has ndx 43 (1056-byte array).
    #[test]
    fn ldso_versions_of_libc() {
        let Ok(img) = ElfImage::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")) else {
            eprintln!("skipped: no libc.so.6");
            return;
        };
        let d = crate::elf::dynamic::read_dynamic(&img).unwrap().unwrap();
        let n = version_ndx_high(&img, &d);
        assert!(n >= 40, "{n}");
    }
}
