//! DOC: the speed machinery, behind the loader models' one seam ([`crate::ldso::Ahead`]).
//!
//! glibc's model spends most of its time in small system calls (open, fstat, reads,
//! readlinks per library) and, for the unique-symbol tables, in reading every object's
//! hash and symbol tables. Both can start before the model needs them. [`Helper`] runs a
//! second thread, started once the load list will be long enough to repay a thread:
//! it scans each object the model reports (unique-symbol entries and the version-array
//! size) and, with the time left, opens the libraries the model will probably open next
//! ([`Prefetch`]). The model takes what is done and does the rest itself; whatever the
//! helper hands over was computed from the very files the model uses, and is checked.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};

use super::prefetch::Prefetch;
use crate::elf::ElfImage;
use crate::ldso::glibc::unique::{TablesRead, UniqueAhead, UniqueScan};
use crate::ldso::{Ahead, Fetched, LoaderEnv, ObjectFound};

/// The helper starts when the load list will hold this many objects. A thread costs about
/// 0.2 ms here: more than it saves on a short list.
const HELPER_AFTER: usize = 8;

/// Reports per wake-up of the helper (waking it costs more than a report).
const BATCH: usize = 16;

/// What the model hands the helper thread.
enum Work {
    /// An object entered the load list.
    Found(Box<ObjectFound>),
    /// Read this in-root path ahead of the model ([`Prefetch::fetch`]).
    Fetch(String),
}

/// `ndx_high` of the objects of a load list, computed on the helper thread as the model
/// reports them (by load-list position, with the image each was computed from).
#[derive(Default)]
struct NdxAhead(Mutex<Vec<Option<NdxOf>>>);

/// An object's `ndx_high` and the image it was read from.
type NdxOf = (Arc<ElfImage>, u32);

impl NdxAhead {
    fn put(&self, index: usize, img: &Arc<ElfImage>, ndx: u32) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() <= index {
            v.resize(index + 1, None);
        }
        v[index] = Some((img.clone(), ndx));
    }

    fn get(&self, index: usize, img: &Arc<ElfImage>) -> Option<u32> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match v.get(index)? {
            Some((i, n)) if Arc::ptr_eq(i, img) => Some(*n),
            _ => None,
        }
    }
}

/// The helper of one glibc model run ([`Ahead`]): not started, running, or done.
pub(crate) struct Helper {
    env: LoaderEnv,
    /// The list length from which the thread is worth starting ([`HELPER_AFTER`]).
    after: usize,
    /// With the unique-symbol scan (a plan), or only reading ahead (`elfmap deps`); taken
    /// by the thread when it starts.
    scan: Option<UniqueScan>,
    /// Whether objects are reported (to the scan).
    report: bool,
    /// Reports kept until the thread runs.
    unsent: Vec<ObjectFound>,
    tx: Option<Sender<Work>>,
    prefetch: Arc<Prefetch>,
    ndx: Arc<NdxAhead>,
    tables: Option<Receiver<UniqueAhead>>,
}

impl Helper {
    /// A helper that, once started, scans each object for the unique-symbol model with
    /// lazy binding `lazy` (`Some`) or only reads libraries ahead (`None`).
    pub(crate) fn new(env: &LoaderEnv, lazy: Option<bool>) -> Helper {
        Helper {
            env: env.clone(),
            after: HELPER_AFTER,
            scan: lazy.map(UniqueScan::new),
            report: lazy.is_some(),
            unsent: Vec::new(),
            tx: None,
            prefetch: Arc::new(Prefetch::default()),
            ndx: Arc::new(NdxAhead::default()),
            tables: None,
        }
    }

    fn start(&mut self) {
        let (tx, rx) = mpsc::channel();
        let (tables_tx, tables_rx) = mpsc::channel();
        let env = self.env.clone();
        let prefetch = self.prefetch.clone();
        let ndx = self.ndx.clone();
        let scan = self.scan.take();
        let worker = std::thread::spawn(move || {
            if let Some((a, read)) = helper(rx, &env, &prefetch, &ndx, scan) {
                let _ = tables_tx.send(a);
                // Unmapped only now: the model need not wait for that.
                drop(read);
            }
        });
        on_another_cpu(&worker);
        self.tx = Some(tx);
        self.tables = Some(tables_rx);
    }

    fn send_reports(&mut self) {
        if let Some(tx) = &self.tx {
            for f in self.unsent.drain(..) {
                let _ = tx.send(Work::Found(Box::new(f)));
            }
        }
    }
}

impl Ahead for Helper {
    fn object_found(&mut self, found: ObjectFound, expected: usize) {
        if self.report {
            self.unsent.push(found);
        }
        if self.tx.is_none() && self.tables.is_none() && expected >= self.after {
            self.start();
        }
        if self.unsent.len() >= BATCH {
            self.send_reports();
        }
    }

    fn reads_ahead(&self) -> bool {
        self.tx.is_some()
    }

    fn read_ahead(&mut self, path: &str) {
        if let Some(tx) = &self.tx {
            if self.prefetch.request(path) {
                let _ = tx.send(Work::Fetch(path.to_string()));
            }
        }
    }

    fn take(&mut self, path: &str) -> Option<Box<Fetched>> {
        self.prefetch.take(path)
    }

    fn list_complete(&mut self) {
        self.send_reports();
        // The thread finishes its scan once the channel closes.
        self.tx = None;
    }

    fn version_ndx(&mut self, index: usize, img: &Arc<ElfImage>) -> Option<u32> {
        self.ndx.get(index, img)
    }

    fn unique_tables(&mut self) -> Option<UniqueAhead> {
        self.tables.take()?.recv().ok()
    }
}

/// Move `thread` off the CPU we run on, when we may run on another. A new thread is often
/// queued behind its creator, which here does not block until it needs the thread's
/// result: on a 2-vCPU VM the worker then started 1-3 ms late in about a third of the runs.
fn on_another_cpu<T>(thread: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: plain libc calls on a zeroed cpu_set_t and the live thread's pthread_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let cpu = libc::sched_getcpu();
        if cpu < 0 || libc::CPU_COUNT(&set) < 2 {
            return;
        }
        libc::CPU_CLR(cpu as usize, &mut set);
        libc::pthread_setaffinity_np(
            thread.as_pthread_t(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        );
    }
}

/// The helper thread: it reads each object the model reports for the unique-symbol model
/// (`scan`; first, as its tables are wanted soon after the list is complete) and its
/// version-array size, and with the time left reads the libraries the model asks for ahead
/// of it.
fn helper(
    rx: Receiver<Work>,
    env: &LoaderEnv,
    prefetch: &Prefetch,
    ndx: &NdxAhead,
    mut scan: Option<UniqueScan>,
) -> Option<(UniqueAhead, TablesRead)> {
    fn queue(w: Work, fetch: &mut Vec<String>, later: &mut VecDeque<ObjectFound>) {
        match w {
            Work::Fetch(path) => fetch.push(path),
            Work::Found(found) => later.push_back(*found),
        }
    }
    let add = |scan: &mut UniqueScan, found: ObjectFound| {
        if let (Some(img), Some(d)) = (&found.image, &found.dynamic) {
            ndx.put(
                found.index,
                img,
                crate::elf::versions::highest_version_index(img, d),
            );
        }
        scan.add(found);
    };
    let mut fs = env.fs();
    let mut later = VecDeque::new();
    // Paths to read, the latest asked for on top: the model works from the oldest.
    let mut fetch: Vec<String> = Vec::new();
    loop {
        // Everything sent so far, then one piece of work: a report (the unique-symbol scan
        // must not fall behind: its tables are wanted soon after the list is complete),
        // else a path, with the time left.
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(w) => queue(w, &mut fetch, &mut later),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            break;
        }
        if let Some(found) = later.pop_front() {
            if let Some(scan) = &mut scan {
                add(scan, found);
            }
        } else if let Some(path) = fetch.pop() {
            prefetch.fetch(&mut fs, &path);
        } else {
            match rx.recv() {
                Ok(w) => queue(w, &mut fetch, &mut later),
                Err(_) => break,
            }
        }
    }
    let mut scan = scan?;
    for found in later {
        add(&mut scan, found);
    }
    Some(scan.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfImage;
    use crate::ldso::glibc::{self, unique};
    use crate::ldso::{DepGraph, Flavor, NothingAhead};
    use std::path::Path;

    /// Helped from the first object on, the glibc model finds the same load list as alone;
    /// the version-array sizes the helper computed are those read directly, and the
    /// unique-symbol tables it computed while the model reported objects equal those
    /// computed afterwards from the load list and from the full reference count without
    /// the early stop. C++ programs (apt, gdb) must need tables, C programs (ls) none; the
    /// maps themselves are checked by the plan-vs-run tests.
    #[test]
    fn helped_model_equals_the_model_alone() {
        let facts = crate::host::Facts::detect();
        let mut checked_cxx = 0;
        for (p, cxx) in [
            ("/usr/bin/apt", true),
            ("/usr/bin/gdb", true),
            ("/usr/bin/ls", false),
        ] {
            let path = Path::new(p);
            if !path.exists() {
                continue;
            }
            let program = Arc::new(ElfImage::open(path).unwrap());
            let abi = crate::elf::check::check_program(&program).unwrap();
            let interp = crate::elf::check::interp_path(&program).unwrap().unwrap();
            let env = LoaderEnv::from_env(abi, Flavor::Glibc, &facts.env, None, &facts);
            let mut helper = Helper::new(&env, Some(true));
            helper.after = 0;
            let graph = glibc::list(&program, path, &interp, &env, &mut helper).unwrap();
            let ahead = helper.unique_tables().expect("tables");
            let alone = glibc::list(&program, path, &interp, &env, &mut NothingAhead).unwrap();
            let key = |g: &DepGraph| -> Vec<_> {
                g.objects
                    .iter()
                    .map(|o| {
                        let d = o
                            .dynamic
                            .as_ref()
                            .map(|d| (d.needed.clone(), d.soname.clone()));
                        (
                            o.path.clone(),
                            o.realpath.clone(),
                            o.host_path.clone(),
                            o.dev,
                            o.ino,
                            d,
                        )
                    })
                    .collect()
            };
            assert_eq!(key(&graph), key(&alone), "{p}");
            assert_eq!(graph.first_cache_use, alone.first_cache_use, "{p}");
            assert_eq!(graph.warnings, alone.warnings, "{p}");
            for (i, o) in graph.objects.iter().enumerate() {
                if let (Some(img), Some(d)) = (&o.image, &o.dynamic) {
                    let direct = crate::elf::versions::highest_version_index(img, d);
                    assert_eq!(helper.version_ndx(i, img), Some(direct), "{p}: object {i}");
                }
            }
            let inputs: Vec<_> = graph
                .objects
                .iter()
                .map(|o| o.image.clone().zip(o.dynamic.clone()))
                .collect();
            let rtld = graph.interp_index.unwrap_or(usize::MAX);
            let after = unique::unique_tables_of(&inputs, rtld, true);
            let full =
                unique::unique_table_sizes(unique::count_unique_symbols(&inputs, rtld, true));
            assert_eq!(ahead.tables, after, "{p}");
            assert_eq!(after, full, "{p}");
            assert_eq!(!full.is_empty(), cxx, "{p}: {full:?}");
            if cxx {
                checked_cxx += 1;
            }
        }
        assert!(checked_cxx > 0, "no C++ program (apt, gdb) to check");
    }
}
