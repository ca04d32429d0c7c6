//! What this machine's kernel checks about the caller when a file is exec'd or memory is
//! committed: execute permission (`fs/exec.c: do_open_execat()`), and the overcommit
//! policy with the memory it is measured against (`mm/util.c: __vm_enough_memory()`).
//! N.B. these are read at plan time, from this machine, not from a facts file.

use std::path::Path;

/// Models the checks of `fs/exec.c: do_open_execat()` on an opened file: a regular file
/// (`S_ISREG`), not on a `noexec` mount (`path_noexec()`), with execute permission for the
/// caller (`may_open(MAY_EXEC)`: for root, any of the three execute bits). `Err` is the
/// reason; execve's errno is EACCES for each.
pub fn may_exec(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use nix::fcntl::AtFlags;
    use nix::unistd::AccessFlags;
    if meta.is_dir() {
        return Err("it is a directory".into());
    }
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let noexec = nix::sys::statvfs::statvfs(path)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
        .unwrap_or(false);
    if noexec {
        return Err("it is on a file system mounted noexec".into());
    }
    nix::unistd::faccessat(
        nix::fcntl::AT_FDCWD,
        path,
        AccessFlags::X_OK,
        AtFlags::AT_EACCESS,
    )
    .map_err(|_| "no execute permission".to_string())
}

/// `vm.overcommit_memory` and the pages `__vm_enough_memory()` compares a commitment with
/// in its heuristic mode: `totalram_pages() + total_swap_pages`. `None` where the policy
/// refuses nothing at the size of one mapping (mode 1), or could not be read.
/// N.B. mode 2 (strict: `CommitLimit` minus what is committed) is not modelled: treated as
/// mode 0.
pub fn overcommit_limit_pages() -> Option<u64> {
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").ok()?;
    if mode.trim() == "1" {
        return None;
    }
    let si = nix::sys::sysinfo::sysinfo().ok()?;
    Some((si.ram_total() + si.swap_total()) / crate::addr::PAGE_SIZE)
}
