//! DOC: the size of each object's version array: glibc 2.36
//! `elf/dl-version.c: _dl_check_map_versions()` computes `ndx_high`, the highest version
//! index of the object's DT_VERNEED and DT_VERDEF entries, and makes
//! `calloc(ndx_high + 1, sizeof(struct r_found_version))` when it is above 0.

use crate::elf::ElfImage;

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

/// `ndx_high` of an object ([`crate::elf::versions::highest_version_index`]): the size of the
/// array `_dl_check_map_versions()` allocates is `ndx_high + 1` entries.
pub use crate::elf::versions::highest_version_index as version_ndx_high;
