//! How the kernel names an opened file in maps: the canonical path `d_path()` prints
//! (symlinks resolved), `MAJOR:MINOR` of the filesystem's device, the inode, and whether the
//! filesystem's `get_unmapped_area` is `thp_get_unmapped_area`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::ElfImage;
use crate::error::{Error, Result};
use crate::mm::FileRef;

/// Filesystems whose file_operations use `thp_get_unmapped_area` (6.18: ext4, xfs, btrfs,
/// erofs, fuse; by `statfs` magic). tmpfs has its own `shmem_get_unmapped_area`, and
/// overlayfs none; both are treated as plain searches.
const THP_FS_MAGIC: &[i64] = &[
    0xEF53,      // EXT2/3/4_SUPER_MAGIC
    0x5846_5342, // XFS_SB_MAGIC
    0x9123_683E, // BTRFS_SUPER_MAGIC
    0xE0F5_E1E2, // EROFS_SUPER_MAGIC_V1
    0x6573_5546, // FUSE_SUPER_MAGIC
];

/// `OVERLAYFS_SUPER_MAGIC`: a stacking filesystem (see `FileRef::stacked`).
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

thread_local! {
    /// `statfs` magic per device.
    static FS_MAGIC: RefCell<HashMap<u64, i64>> = RefCell::new(HashMap::new());
}

/// `realpath(path)`: the resolver's walk ([`crate::deps::host_realpath`]), whose
/// `readlink`s are remembered, so that the directories of the program, the interpreter and
/// the libraries are looked at once.
pub fn canonicalize(path: &Path) -> std::io::Result<PathBuf> {
    crate::deps::host_realpath(path)
}

/// Describe `path` as a mapping of open number `open_id` would show it.
pub fn file_ref(path: &Path, open_id: u32) -> Result<Arc<FileRef>> {
    let canon = canonicalize(path).map_err(|e| Error::io(path, e))?;
    let meta = std::fs::metadata(&canon).map_err(|e| Error::io(path, e))?;
    file_ref_known(&canon, meta.dev(), meta.ino(), open_id)
}

/// [`file_ref`] for a file already open as `img` (its device and inode are the ones
/// `fstat` gave).
pub fn file_ref_of(img: &ElfImage, open_id: u32) -> Result<Arc<FileRef>> {
    let canon = canonicalize(&img.path).map_err(|e| Error::io(&img.path, e))?;
    file_ref_known(&canon, img.meta.dev(), img.meta.ino(), open_id)
}

/// [`file_ref`] for a file whose canonical path, device and inode are already known.
pub fn file_ref_known(canon: &Path, dev: u64, ino: u64, open_id: u32) -> Result<Arc<FileRef>> {
    let magic = match FS_MAGIC.with(|m| m.borrow().get(&dev).copied()) {
        Some(m) => m,
        None => {
            let m = nix::sys::statfs::statfs(canon)
                .map(|s| s.filesystem_type().0)
                .unwrap_or(0);
            FS_MAGIC.with(|c| c.borrow_mut().insert(dev, m));
            m
        }
    };
    let thp_capable = THP_FS_MAGIC.contains(&{ magic });
    let stacked = magic == OVERLAYFS_SUPER_MAGIC;
    Ok(Arc::new(FileRef {
        path: canon.to_path_buf(),
        dev_major: libc::major(dev),
        dev_minor: libc::minor(dev),
        ino,
        open_id,
        thp_capable,
        stacked,
    }))
}
