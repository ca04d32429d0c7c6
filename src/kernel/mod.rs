//! The kernel exec model: everything `execve` does before the program's first instruction.
//! One file per kernel area; each function names the kernel function it models.

pub mod binfmt_elf;
pub mod mmap;
pub mod personality;
pub mod profile;
pub mod random;
pub mod rules;
pub mod script;
pub mod stack;
pub mod verdict;
