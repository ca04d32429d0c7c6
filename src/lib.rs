//! elfmap: where will this program land in memory?
//!
//! The pipeline runs one way:
//! ELF files ([`elf`], headers only, read with pread) → kernel exec model ([`kernel`]:
//! `load_elf_binary` and friends) → loader model (`ldso`, next) → address space ([`mm`]:
//! VMAs, `get_unmapped_area`, merging) → rendering ([`maps`], [`render`]) or comparison
//! ([`compare`]) against the real process ([`observe`], ptrace).

pub mod addr;
pub mod compare;
pub mod elf;
pub mod error;
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
