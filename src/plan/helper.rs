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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::memo::{self, Memo, Stamp};
use super::prefetch::Prefetch;
use crate::elf::ElfImage;
use crate::ldso::glibc::unique::{
    self, ObjectKey, ScannedObject, Scratch, TablesRead, UniqueAhead,
};
use crate::ldso::{Ahead, Fetched, LoaderEnv, ObjectFound};

/// The helper starts when the load list will hold this many objects. A thread costs about
/// 0.2 ms here: more than it saves on a short list.
const HELPER_AFTER: usize = 8;

/// One object read for the unique-symbol model: its scan and `ndx_high`, with the image
/// they were read from.
struct Scanned {
    img: Option<Arc<ElfImage>>,
    scan: Option<ScannedObject>,
    ndx: Option<u32>,
}

/// The work shared by the model's thread and the helper: objects to scan (in load-list
/// order), paths to read ahead (the latest first), what is done.
#[derive(Default)]
struct Work {
    /// Objects reported and not taken by either thread yet.
    objects: VecDeque<ObjectFound>,
    /// The object the helper is scanning, if any (the model may scan it too rather than
    /// wait: the first result stored wins).
    scanning: Option<ObjectFound>,
    /// Scans done, by load-list index.
    done: Vec<Option<Scanned>>,
    /// Paths asked for and not read yet.
    fetch: Vec<String>,
    /// The load list is complete: no more work will come.
    closed: bool,
    /// What the tables were computed from, for the helper to release (unmapping them costs
    /// the model's thread nothing then).
    release: Option<TablesRead>,
    /// The model is done with the helper: it ends (after releasing what it was given).
    finished: bool,
    /// The helper waits on the condition: only then is it worth waking (a wake is a
    /// system call, made for nothing while the helper is busy).
    sleeping: bool,
    /// Tables were remembered for this program ([`memo`]): objects are read for their
    /// version-array sizes only, unless the remembered load list turns out different.
    remembered: bool,
}

/// The shared work and the condition the helper sleeps on.
#[derive(Default)]
struct Shared {
    work: Mutex<Work>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the work with `f`, and wake the helper if it sleeps.
    fn post(&self, f: impl FnOnce(&mut Work)) {
        let mut w = self.lock();
        f(&mut w);
        let wake = w.sleeping;
        drop(w);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// Read one object for the unique-symbol model (with `unique`) and, with `ndx`, its
/// version-array size.
fn scan(found: &ObjectFound, scratch: &mut Scratch, ndx: bool, unique: bool) -> Scanned {
    let ndx = match (&found.image, &found.dynamic) {
        (Some(img), Some(d)) if ndx => Some(crate::elf::versions::highest_version_index(img, d)),
        _ => None,
    };
    Scanned {
        img: found.image.clone(),
        scan: if unique {
            ScannedObject::scan(found, scratch)
        } else {
            None
        },
        ndx,
    }
}

fn store(work: &mut Work, index: usize, s: Scanned) {
    if work.done.len() <= index {
        work.done.resize_with(index + 1, || None);
    }
    if work.done[index].is_none() {
        work.done[index] = Some(s);
    }
}

/// The helper of one glibc model run ([`Ahead`]): not started, running, or done. Whatever
/// the helper has not done when the model needs it, the model's thread does itself: a
/// helper starved of CPU (another process busy on the other core) costs the model only
/// the thread's start.
pub(crate) struct Helper {
    env: LoaderEnv,
    /// The list length from which the thread is worth starting ([`HELPER_AFTER`]).
    after: usize,
    /// Scan objects for the unique-symbol model with this lazy-binding flag (a plan), or
    /// only read ahead (`elfmap deps`).
    lazy: Option<bool>,
    shared: Arc<Shared>,
    prefetch: Arc<Prefetch>,
    started: bool,
    /// The start was considered (and, without a spare CPU, declined).
    declined: bool,
    /// What the tables were computed from, when the model's thread computed them: for the
    /// plan to hold ([`Helper::take_read`]).
    read: Option<TablesRead>,
    /// Where tables are remembered between runs, if they are ([`memo`]).
    memo: Option<Memo>,
    /// What is remembered for this program (read when the program is reported), and the
    /// entry of this very load list once it is complete.
    remembered: Vec<memo::Entry>,
    hit: Option<memo::Entry>,
    /// The objects reported, by load-list index, and ld.so's index.
    found: Vec<Option<ObjectFound>>,
    rtld: usize,
}

impl Helper {
    /// A helper that, once started, scans each object for the unique-symbol model with
    /// lazy binding `lazy` (`Some`) or only reads libraries ahead (`None`); with
    /// `remember`, what earlier runs remembered is taken and what this one computes kept
    /// ([`memo`]).
    pub(crate) fn new(env: &LoaderEnv, lazy: Option<bool>, remember: bool) -> Helper {
        Helper {
            env: env.clone(),
            after: HELPER_AFTER,
            lazy,
            shared: Arc::new(Shared::default()),
            prefetch: Arc::new(Prefetch::default()),
            started: false,
            declined: false,
            read: None,
            memo: lazy
                .filter(|_| remember)
                .and_then(|_| Memo::from_process_env()),
            remembered: Vec::new(),
            hit: None,
            found: Vec::new(),
            // As before it was reported (the tables take index 0 then).
            rtld: 0,
        }
    }

    /// Each object's identity, in load-list order (`None` without a file or a dynamic
    /// section: nothing of it is read for the tables).
    fn stamps(&self) -> Vec<Option<Stamp>> {
        self.found
            .iter()
            .map(|f| {
                let f = f.as_ref()?;
                f.dynamic.as_ref()?;
                f.image.as_ref().map(|img| Stamp::of(&img.meta))
            })
            .collect()
    }

    /// The remembered tables of this very load list, if there are any.
    fn remembered_tables(&self) -> Option<UniqueAhead> {
        let e = self.hit.as_ref()?;
        let keys = self
            .found
            .iter()
            .map(|f| {
                let f = f.as_ref()?;
                Some(ObjectKey::new(f.image.as_ref()?, f.dynamic.clone()?))
            })
            .collect();
        Some(UniqueAhead {
            keys,
            tables: e.tables.clone(),
        })
    }

    /// What the unique-symbol tables were computed from (the mappings of the objects'
    /// tables), if the model's thread computed them; the helper thread releases its own.
    pub(crate) fn take_read(&mut self) -> Option<TablesRead> {
        self.read.take()
    }

    fn start(&mut self) {
        self.declined = true;
        if !spare_cpu() {
            return;
        }
        self.started = true;
        let shared = self.shared.clone();
        let prefetch = self.prefetch.clone();
        let env = self.env.clone();
        let worker = std::thread::spawn(move || helper(&shared, &prefetch, &env));
        on_another_cpu(&worker);
    }
}

impl Helper {
    /// Remember this load list's tables and version-array sizes ([`memo`]).
    fn remember(&self, m: &Memo, lazy: bool, rtld: usize, tables: &[u64]) {
        let stamps = self.stamps();
        let Some(Some(program)) = stamps.first().copied() else {
            return;
        };
        let ndx = self
            .found
            .iter()
            .map(|f| {
                let f = f.as_ref()?;
                let (img, d) = (f.image.as_ref()?, f.dynamic.as_ref()?);
                Some(
                    self.computed_ndx(f.index, img)
                        .unwrap_or_else(|| crate::elf::versions::highest_version_index(img, d)),
                )
            })
            .collect();
        m.remember(
            &program,
            memo::Entry {
                lazy,
                rtld,
                objects: memo::digest(&stamps),
                tables: tables.to_vec(),
                ndx,
            },
        );
    }

    /// `ndx_high` of object `index` as the helper computed it from `img`, if it did.
    fn computed_ndx(&self, index: usize, img: &Arc<ElfImage>) -> Option<u32> {
        let w = self.shared.lock();
        match w.done.get(index)? {
            Some(Scanned {
                img: Some(i),
                ndx: Some(n),
                ..
            }) if Arc::ptr_eq(i, img) => Some(*n),
            _ => None,
        }
    }
}

impl Ahead for Helper {
    fn object_found(&mut self, found: ObjectFound, expected: usize) {
        if let Some(lazy) = self.lazy {
            if found.index == 0 {
                if let (Some(m), Some(img)) = (&self.memo, &found.image) {
                    self.remembered = m.entries(&Stamp::of(&img.meta));
                    self.remembered.retain(|e| e.lazy == lazy);
                }
            }
            if found.is_rtld {
                self.rtld = found.index;
            }
            if self.found.len() <= found.index {
                self.found.resize_with(found.index + 1, || None);
            }
            self.found[found.index] = Some(found.clone());
            let remembered = !self.remembered.is_empty();
            self.shared.post(|w| {
                w.remembered = remembered;
                w.objects.push_back(found);
            });
        }
        // With the tables and version-array sizes remembered, reading libraries ahead is
        // all a helper would do, and it does not repay its thread: gdb's plan took
        // 0.07 +- 0.01 ms longer with it than without (paired, 300 runs).
        if !self.declined && expected >= self.after && self.remembered.is_empty() {
            self.start();
        }
    }

    fn reads_ahead(&self) -> bool {
        self.started
    }

    fn read_ahead(&mut self, path: &str) {
        if self.started && self.prefetch.request(path) {
            self.shared.post(|w| w.fetch.push(path.to_string()));
        }
    }

    fn take(&mut self, path: &str) -> Option<Box<Fetched>> {
        self.prefetch.take(path)
    }

    fn list_complete(&mut self) {
        if let Some(lazy) = self.lazy.filter(|_| !self.remembered.is_empty()) {
            let d = memo::digest(&self.stamps());
            self.hit = self
                .remembered
                .iter()
                .find(|e| e.lazy == lazy && e.rtld == self.rtld && e.objects == d)
                .cloned();
        }
        let hit = self.hit.is_some();
        self.shared.post(|w| {
            w.closed = true;
            if hit {
                // Nothing left to read for the model.
                w.objects.clear();
            }
        });
    }

    fn version_ndx(&mut self, index: usize, img: &Arc<ElfImage>) -> Option<u32> {
        if let Some(hit) = &self.hit {
            let same = self
                .found
                .get(index)
                .and_then(Option::as_ref)
                .and_then(|f| f.image.as_ref());
            if same.is_some_and(|f| Arc::ptr_eq(f, img)) {
                if let Some(&Some(n)) = hit.ndx.get(index) {
                    return Some(n);
                }
            }
        }
        self.computed_ndx(index, img)
    }

    /// The tables, from the objects the helper scanned and those it has not got to yet,
    /// scanned here (the one it is busy with too): the model's thread never waits for it.
    fn unique_tables(&mut self) -> Option<UniqueAhead> {
        let lazy = self.lazy?;
        let mut scratch = Scratch::default();
        let mut w = self.shared.lock();
        w.closed = true;
        let mut todo: Vec<ObjectFound> = w.objects.drain(..).collect();
        todo.extend(w.scanning.clone());
        let remembered = w.remembered;
        drop(w);
        if remembered {
            if let Some(ahead) = self.remembered_tables() {
                return Some(ahead);
            }
            // Remembered for another load list: every object is read here (the helper
            // read none of them for the tables).
            todo = self.found.iter().flatten().cloned().collect();
        }
        // The version-array sizes were wanted before the tables (`_dl_check_all_versions`
        // runs before the relocations): the model read those the helper had not.
        for f in &todo {
            let s = scan(f, &mut scratch, false, true);
            let mut w = self.shared.lock();
            if remembered {
                // Replace what the helper stored (version-array sizes only).
                if let Some(slot) = w.done.get_mut(f.index) {
                    *slot = None;
                }
            }
            store(&mut w, f.index, s);
        }
        let mut w = self.shared.lock();
        let objects: Vec<Option<ScannedObject>> = w
            .done
            .iter_mut()
            .map(|s| s.as_mut().and_then(|s| s.scan.take()))
            .collect();
        let rtld = self.rtld;
        drop(w);
        let (ahead, read) = unique::tables_of_scanned(objects, rtld, lazy);
        if let Some(m) = &self.memo {
            self.remember(m, lazy, rtld, &ahead.tables);
        }
        if self.started {
            self.shared.post(|w| w.release = Some(read));
        } else {
            self.read = Some(read);
        }
        Some(ahead)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.started {
            self.shared.post(|w| w.finished = true);
        }
    }
}

/// Whether a CPU we may run on is idle now: fewer tasks are running (`/proc/loadavg`, its
/// fourth field counts them, this one included) than there are such CPUs. With every CPU
/// busy a helper thread only competes for time: a build on the other core of this 2-vCPU
/// machine made a helped plan of gdb twice as slow as one made alone.
///
/// The CPUs are those of our affinity mask (`sched_getaffinity`), not
/// `std::thread::available_parallelism()`, which also reads the cgroup's CPU quota: about
/// 15 system calls on /proc/self/cgroup and /sys/fs/cgroup, for a question that
/// /proc/loadavg answers anyway. /proc/loadavg is one `seq_file` record, read at once.
fn spare_cpu() -> bool {
    let cpus = affinity().map_or(0, |(_, n)| n);
    if cpus < 2 {
        return false;
    }
    let mut buf = [0u8; 128];
    let Ok(n) = std::fs::File::open("/proc/loadavg").and_then(|mut f| {
        use std::io::Read;
        f.read(&mut buf)
    }) else {
        return true;
    };
    let running = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| text.split_whitespace().nth(3))
        .and_then(|f| f.split('/').next())
        .and_then(|n| n.parse::<usize>().ok());
    running.is_none_or(|r| r < cpus)
}

/// The CPUs we may run on (`sched_getaffinity`), and how many they are.
fn affinity() -> Option<(libc::cpu_set_t, usize)> {
    // SAFETY: sched_getaffinity writes at most the size given into a zeroed cpu_set_t;
    // CPU_COUNT reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let n = usize::try_from(libc::CPU_COUNT(&set)).unwrap_or(0);
        Some((set, n))
    }
}

/// Move `thread` off the CPU we run on, when we may run on another. A new thread is often
/// queued behind its creator, which here does not block until it needs the thread's
/// result: on a 2-vCPU VM the worker then started 1-3 ms late in about a third of the runs.
fn on_another_cpu<T>(thread: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    let Some((mut set, n)) = affinity() else {
        return;
    };
    // SAFETY: plain libc calls on a cpu_set_t and the live thread's pthread_t.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 || n < 2 {
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

/// The helper thread: it scans the objects the model reports, oldest first (their tables
/// are wanted soon after the list is complete), and with the time left reads the libraries
/// the model asks for ahead of it, the latest asked for first; at the end it releases what
/// the tables were computed from.
fn helper(shared: &Shared, prefetch: &Prefetch, env: &LoaderEnv) {
    let mut fs = env.fs();
    let mut scratch = Scratch::default();
    let mut w = shared.lock();
    loop {
        if let Some(f) = w.objects.pop_front() {
            w.scanning = Some(f.clone());
            let unique = !w.remembered;
            drop(w);
            let s = scan(&f, &mut scratch, true, unique);
            w = shared.lock();
            store(&mut w, f.index, s);
            w.scanning = None;
        } else if let Some(path) = w.fetch.pop() {
            drop(w);
            prefetch.fetch(&mut fs, &path);
            w = shared.lock();
        } else if let Some(read) = w.release.take() {
            drop(w);
            drop(read);
            return;
        } else if w.finished {
            return;
        } else {
            w.sleeping = true;
            w = shared.wake.wait(w).unwrap_or_else(|e| e.into_inner());
            w.sleeping = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldso::glibc;
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
            let abi = program.abi().unwrap();
            let interp = program.interp_name().unwrap();
            let env = LoaderEnv::from_env(abi, Flavor::Glibc, &facts.env, None, &facts);
            let mut helper = Helper::new(&env, Some(true), false);
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
                    // Those the helper did not get to are not computed again for
                    // the tables (the model has read them by then).
                    if let Some(ndx) = helper.version_ndx(i, img) {
                        let direct = crate::elf::versions::highest_version_index(img, d);
                        assert_eq!(ndx, direct, "{p}: object {i}");
                    }
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
