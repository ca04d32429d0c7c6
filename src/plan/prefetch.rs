//! Opening libraries ahead of the glibc model, on the helper thread.
//!
//! The glibc model's search is a sequence of small system calls per library (open, fstat,
//! three reads, one or two readlinks), about two thirds of its time. It knows early which
//! paths it will probably open: when an object enters the load list, the cache answers for
//! its DT_NEEDED names. It asks for those paths (`Prefetch::request`); the helper thread
//! opens them and reads what the model would read (`Prefetch::fetch`), the latest asked for
//! first, as the model takes them in the order asked; when the model gets to a path it
//! takes the helper's result (`Prefetch::take`) or, if the helper is not done with it,
//! does the work itself. Nothing the model decides depends on this: a path it never opens
//! is simply not used, and anything the helper could not read is read again by the model,
//! which then reports the error as usual.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::elf::dynamic::read_dynamic;
use crate::elf::ElfImage;
use crate::host::fs::Fs;
use crate::ldso::Fetched;

enum Slot {
    /// Asked for, not started.
    Pending,
    /// The helper is reading it.
    Working,
    Done(Box<Fetched>),
    /// Taken by the resolver, or failed: the resolver reads it itself.
    Gone,
}

/// The paths asked for and what the helper read of them.
#[derive(Default)]
pub struct Prefetch {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Prefetch {
    /// Ask for `realname` (an in-root path). True if it was not asked for before: the
    /// caller then tells the helper.
    pub(crate) fn request(&self, realname: &str) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.contains_key(realname) {
            return false;
        }
        slots.insert(realname.to_string(), Slot::Pending);
        true
    }

    /// The helper's reading of `realname`, if it is done; `None` if it was never asked
    /// for, failed, or is not done (the helper's work is then wasted: waiting for another
    /// thread costs more here than doing the reads).
    pub(crate) fn take(&self, realname: &str) -> Option<Box<Fetched>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(slots.get_mut(realname)?, Slot::Gone) {
            Slot::Done(f) => Some(f),
            _ => None,
        }
    }

    /// Helper thread: read `realname` as the resolver would (`fs` is the helper's own view
    /// of the file system), unless the resolver got to it first.
    pub(crate) fn fetch(&self, fs: &mut Fs, realname: &str) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get_mut(realname) {
                Some(s @ Slot::Pending) => *s = Slot::Working,
                _ => return,
            }
        }
        let host = fs.host(realname).into_owned();
        let fetched = ElfImage::open(&host).ok().and_then(|img| {
            let dynamic = read_dynamic(&img).ok().flatten()?;
            let realpath = fs.realpath(realname).ok();
            Some(Box::new(Fetched {
                img,
                dynamic,
                realpath,
            }))
        });
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s @ Slot::Working) = slots.get_mut(realname) {
            *s = fetched.map_or(Slot::Gone, Slot::Done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::Abi;
    use crate::ldso::{Flavor, LoaderEnv};

    fn env() -> LoaderEnv {
        LoaderEnv::from_env(
            Abi::X86_64,
            Flavor::Glibc,
            &[],
            None,
            &crate::host::Facts::detect(),
        )
    }

    /// What the helper reads is what the resolver would read itself; the resolver gets it
    /// once, and a path the resolver took over or that failed is never read by the helper.
    #[test]
    fn prefetch_slots() {
        let lib = "/lib/x86_64-linux-gnu/libc.so.6";
        if !std::path::Path::new(lib).exists() {
            eprintln!("skipped: no {lib}");
            return;
        }
        let env = env();
        let mut fs = env.fs();
        let p = Prefetch::default();
        assert!(p.request(lib));
        assert!(!p.request(lib), "asked for twice");
        p.fetch(&mut fs, lib);
        let f = p.take(lib).expect("fetched");
        let img = ElfImage::open(std::path::Path::new(lib)).unwrap();
        assert_eq!(f.img.head(), img.head());
        assert_eq!(Some(f.dynamic), read_dynamic(&img).unwrap());
        assert_eq!(f.realpath, fs.realpath(lib).ok());
        assert!(p.take(lib).is_none(), "taken twice");

        // Taken over before the helper started: the helper leaves it alone.
        let other = "/lib/x86_64-linux-gnu/libm.so.6";
        assert!(p.request(other));
        assert!(p.take(other).is_none());
        p.fetch(&mut fs, other);
        assert!(p.take(other).is_none());

        // Not there: nothing to take, the resolver reports it itself.
        let missing = "/nonexistent/libnothing.so.1";
        assert!(p.request(missing));
        p.fetch(&mut fs, missing);
        assert!(p.take(missing).is_none());
        // Never asked for.
        assert!(p.take("/lib/x86_64-linux-gnu/libz.so.1").is_none());
    }
}
