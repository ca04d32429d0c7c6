//! elfmap: where will this program land in memory?
//!
//! DOC: the pipeline runs one way, and each stage only imports the ones before it:
//!
//! 1. [`host`]: the one reader of this machine. Its facts ([`host::Facts`]: sysctls,
//!    limits, personality, ids, vDSO sizes, CPU, environment) are a plain value that can be
//!    written and read back, so that a plan can be made from captured facts; [`host::fs`]
//!    is the file system as a process under an optional root sees it.
//! 2. [`elf`]: all ELF reading: headers (also raw, as the kernel and the loaders read
//!    them), program headers, the dynamic section, symbols and their hash tables,
//!    relocations, version tables; and the kernel's accept/refuse checks.
//! 3. The models, pure functions of the facts and the files:
//!    * [`kernel`]: what `execve` does (`fs/binfmt_elf.c: load_elf_binary()` and the mm
//!      layout of `arch/x86/mm/mmap.c`): the exec stop, as the kernel of a profile does it
//!      ([`kernel::profile::Kernel`]: the rules of a release and configuration,
//!      [`kernel::rules::KernelRules`], and its facts, [`host::kernel::KernelFacts`]; the
//!      running kernel's by default), a value the model takes, never a global;
//!    * [`ldso`]: one model per dynamic loader, glibc's `ld.so` ([`ldso::glibc`]) and
//!      musl's ([`ldso::musl`]), each finding the libraries and replaying what loading them
//!      does, up to the loaded stop (and AT_ENTRY after it).
//! 4. [`mm`]: the address space both models change: VMAs with their provenance
//!    ([`mm::origin`]: which step of the kernel or the loader made each part, and what
//!    changed it since), `get_unmapped_area`, the kernel's splitting and merging, and the
//!    system calls a loader makes ([`mm::Task`]).
//! 5. [`plan`]: runs the models for a stage; the speed machinery (a helper thread behind
//!    [`ldso::Ahead`], the models' one seam) lives there and nowhere else.
//! 6. Output: [`render`] (maps text, table, JSON, the dependency tree) and [`compare`]
//!    (against the real process, observed by [`observe`] with ptrace). [`maps`] is the
//!    `/proc/PID/maps` line format itself, as the kernel writes it and as people paste it.
//!    [`explain`] says why each line of a plan is there; [`explain::annotate`] labels the
//!    lines of a maps file from anywhere, with no plan, in the same words. The command line
//!    (`src/cli`) sits on top.
//!
//! Every function that reproduces a kernel or loader step is named after it and cites it
//! as `file: function()`.

pub mod addr;
pub mod compare;
pub mod elf;
pub mod error;
pub mod explain;
pub mod host;
pub mod kernel;
pub mod ldso;
pub mod maps;
pub mod mm;
pub mod observe;
pub mod plan;
pub mod render;
pub mod stage;

pub use error::{Error, Result};
pub use host::Facts as HostFacts;
pub use plan::{plan, Config, Layout, Plan, Stage, Target};
