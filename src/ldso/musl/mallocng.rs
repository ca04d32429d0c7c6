//! DOC: musl 1.2.3's allocator (src/malloc/mallocng/) as far as the address space sees
//! it: which request grows brk (metadata areas), which maps a group or a single
//! allocation, and which frees unmap. The state is replayed exactly: size classes,
//! the active group lists (circular, rotated as `try_avail()` does), `usage_by_class`,
//! groups nested in other groups' slots, donated memory, the bounce counters. Slot
//! addresses inside groups are not tracked; they never reach the kernel.

use crate::mm::Task;
use crate::mm::{Change, Maker, Placement, Prot};

/// `UNIT`, `IB`, `MMAP_THRESHOLD` (src/malloc/mallocng/meta.h).
pub const UNIT: u64 = 16;
pub const IB: u64 = 4;
pub const MMAP_THRESHOLD: u64 = 131052;
/// `PGSZ` (the page size).
pub const PGSZ: u64 = 4096;
/// `(4096 - sizeof (struct meta_area)) / sizeof (struct meta)`: metas per area page.
pub const META_AREA_SLOTS: u64 = (4096 - 24) / 40;

/// `size_classes[]` (malloc.c), in units of 16 bytes.
pub const SIZE_CLASSES: [u64; 48] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25, 31, 36, 42, 50, 63, 72, 84, 102, 127, 146,
    170, 204, 255, 292, 340, 409, 511, 584, 682, 818, 1023, 1169, 1364, 1637, 2047, 2340, 2730,
    3276, 4095, 4680, 5460, 6552, 8191,
];
/// `small_cnt_tab[][3]`, `med_cnt_tab[4]` (malloc.c).
const SMALL_CNT_TAB: [[u64; 3]; 9] = [
    [30, 30, 30],
    [31, 15, 15],
    [20, 10, 10],
    [31, 15, 7],
    [25, 12, 6],
    [21, 10, 5],
    [18, 8, 4],
    [31, 15, 7],
    [28, 14, 6],
];
const MED_CNT_TAB: [u64; 4] = [28, 24, 20, 32];

/// An allocation: its group and slot index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub meta: usize,
    pub idx: u32,
}

/// `struct meta` plus the group header's `active_idx`.
#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    prev: Option<usize>,
    next: Option<usize>,
    /// Address of the group, for mmapped ones (`mem`).
    mem: u64,
    avail_mask: u32,
    freed_mask: u32,
    last_idx: u32,
    freeable: bool,
    sizeclass: usize,
    /// Pages of an mmapped group, 0 for nested or donated ones.
    maplen: u64,
    /// `mem->active_idx`.
    active_idx: u32,
    /// The slot of another group that holds this one (`maplen == 0`, freeable).
    parent: Option<Slot>,
}

/// `ctx.brk`: not probed yet, the current end, or -1 after a failed brk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum BrkState {
    #[default]
    Unset,
    At(u64),
    Failed,
}

/// `struct malloc_context ctx` (meta.h), the fields that decide system calls.
#[derive(Clone, Debug)]
pub struct Mallocng {
    metas: Vec<Meta>,
    free_meta_head: Option<usize>,
    avail_meta_count: u64,
    avail_meta_area_count: u64,
    meta_alloc_shift: u32,
    avail_meta_areas: u64,
    active: [Option<usize>; 48],
    usage_by_class: [u64; 48],
    unmap_seq: [u8; 32],
    bounces: [u8; 32],
    seq: u8,
    brk: BrkState,
    mmap_counter: u32,
}

impl Default for Mallocng {
    fn default() -> Self {
        Mallocng {
            metas: Vec::new(),
            free_meta_head: None,
            avail_meta_count: 0,
            avail_meta_area_count: 0,
            meta_alloc_shift: 0,
            avail_meta_areas: 0,
            active: [None; 48],
            usage_by_class: [0; 48],
            unmap_seq: [0; 32],
            bounces: [0; 32],
            seq: 0,
            brk: BrkState::Unset,
            mmap_counter: 0,
        }
    }
}

/// `(2u << n) - 1` with C's unsigned wrap-around.
fn ones(n: u32) -> u32 {
    ((2u64 << n) - 1) as u32
}

/// `queue()` (meta.h): append `m` at the tail of the circular list `head`.
fn queue(metas: &mut [Meta], head: &mut Option<usize>, m: usize) {
    match *head {
        Some(h) => {
            let hp = metas[h].prev.unwrap_or(h);
            metas[m].next = Some(h);
            metas[m].prev = Some(hp);
            metas[h].prev = Some(m);
            metas[hp].next = Some(m);
        }
        None => {
            metas[m].prev = Some(m);
            metas[m].next = Some(m);
            *head = Some(m);
        }
    }
}

/// `dequeue()` (meta.h).
fn dequeue(metas: &mut [Meta], head: &mut Option<usize>, m: usize) {
    if metas[m].next != Some(m) {
        let (p, n) = (metas[m].prev.unwrap_or(m), metas[m].next.unwrap_or(m));
        metas[p].next = Some(n);
        metas[n].prev = Some(p);
        if *head == Some(m) {
            *head = Some(n);
        }
    } else {
        *head = None;
    }
    metas[m].prev = None;
    metas[m].next = None;
}

/// `size_to_class()` (meta.h).
pub fn size_to_class(n: u64) -> usize {
    let mut n = (n + IB - 1) >> 4;
    if n < 10 {
        return n as usize;
    }
    n += 1;
    let clz = (n.min(u64::from(u32::MAX)) as u32).leading_zeros() as i64;
    let mut i = ((28 - clz) * 4 + 8).clamp(0, 46) as usize;
    if n > SIZE_CLASSES[i + 1] {
        i += 2;
    }
    if i < 48 && n > SIZE_CLASSES[i] {
        i += 1;
    }
    i.min(47)
}

impl Mallocng {
    fn step_seq(&mut self) {
        if self.seq == 255 {
            self.unmap_seq = [0; 32];
            self.seq = 1;
        } else {
            self.seq += 1;
        }
    }

    fn record_seq(&mut self, sc: usize) {
        if (7..39).contains(&sc) {
            self.unmap_seq[sc - 7] = self.seq;
        }
    }

    fn account_bounce(&mut self, sc: usize) {
        if (7..39).contains(&sc) {
            let seq = i32::from(self.unmap_seq[sc - 7]);
            if seq != 0 && i32::from(self.seq) - seq < 10 {
                if self.bounces[sc - 7] + 1 < 100 {
                    self.bounces[sc - 7] += 1;
                } else {
                    self.bounces[sc - 7] = 150;
                }
            }
        }
    }

    fn decay_bounces(&mut self, sc: usize) {
        if (7..39).contains(&sc) && self.bounces[sc - 7] != 0 {
            self.bounces[sc - 7] -= 1;
        }
    }

    fn is_bouncing(&self, sc: usize) -> bool {
        (7..39).contains(&sc) && self.bounces[sc - 7] >= 100
    }

    fn get_stride(&self, g: usize) -> u64 {
        let m = &self.metas[g];
        if m.last_idx == 0 && m.maplen != 0 {
            m.maplen * 4096 - UNIT
        } else {
            UNIT * SIZE_CLASSES[m.sizeclass.min(47)]
        }
    }

    /// `free_meta()` (meta.h).
    fn free_meta(&mut self, m: usize) {
        self.metas[m] = Meta::default();
        queue(&mut self.metas, &mut self.free_meta_head, m);
    }

    /// `activate_group()` (meta.h).
    fn activate_group(&mut self, m: usize) -> u32 {
        let g = &mut self.metas[m];
        let act = ones(g.active_idx);
        let mask = g.freed_mask;
        g.freed_mask = mask & !act;
        g.avail_mask = mask & act;
        g.avail_mask
    }

    /// Models `alloc_meta()` (malloc.c): a recycled meta, or the next slot of the
    /// current area page; a new area page comes from brk (the first time `brk(0)`,
    /// `brk(+2 pages)` and the lower page mapped PROT_NONE as a guard; later one page
    /// at a time), or, once brk failed, from an `mmap` of `2 << meta_alloc_shift`
    /// PROT_NONE pages whose pages after the first are made read-write one by one.
    fn alloc_meta(&mut self, t: &mut Task) -> Option<usize> {
        if let Some(m) = self.free_meta_head {
            dequeue(&mut self.metas, &mut self.free_meta_head, m);
            return Some(m);
        }
        if self.avail_meta_count == 0 {
            let mut need_unprotect = true;
            if self.avail_meta_area_count == 0 && self.brk != BrkState::Failed {
                let (cur, new, need_guard) = match self.brk {
                    BrkState::At(b) => (b, b + PGSZ, false),
                    _ => {
                        let b = t.brk(0);
                        let b = b.wrapping_add(b.wrapping_neg() & (PGSZ - 1));
                        (b, b + 2 * PGSZ, true)
                    }
                };
                if t.brk(new) != new {
                    self.brk = BrkState::Failed;
                } else {
                    if need_guard {
                        let _ = t.mmap(
                            cur,
                            PGSZ,
                            Prot::NONE,
                            Placement::Fixed,
                            None,
                            Maker::MallocngBrk,
                        );
                    }
                    self.brk = BrkState::At(new);
                    self.avail_meta_areas = new - PGSZ;
                    self.avail_meta_area_count = PGSZ >> 12;
                    need_unprotect = false;
                }
            }
            if self.avail_meta_area_count == 0 {
                let n = 2u64 << self.meta_alloc_shift;
                let p = t
                    .mmap(
                        0,
                        n * PGSZ,
                        Prot::NONE,
                        Placement::Hint,
                        None,
                        Maker::MallocngMmap,
                    )
                    .ok()?;
                self.avail_meta_areas = p + PGSZ;
                self.avail_meta_area_count = (n - 1) * (PGSZ >> 12);
                self.meta_alloc_shift += 1;
            }
            let p = self.avail_meta_areas;
            if p & (PGSZ - 1) != 0 {
                need_unprotect = false;
            }
            if need_unprotect {
                t.mprotect(p, PGSZ, Prot::RW, &Change::Mallocng);
            }
            self.avail_meta_area_count -= 1;
            self.avail_meta_areas = p + 4096;
            self.avail_meta_count = META_AREA_SLOTS;
        }
        self.avail_meta_count -= 1;
        self.metas.push(Meta::default());
        Some(self.metas.len() - 1)
    }

    /// Models `try_avail()` (malloc.c) on `ctx.active[sc]`: the first available slot
    /// of the head group, else rotate, drop exhausted groups, activate freed slots (or
    /// more of a partly activated group, up to the next 4 KiB boundary).
    fn try_avail(&mut self, sc: usize) -> u32 {
        let Some(mut m) = self.active[sc] else {
            return 0;
        };
        let mut mask = self.metas[m].avail_mask;
        if mask == 0 {
            if self.metas[m].freed_mask == 0 {
                dequeue(&mut self.metas, &mut self.active[sc], m);
                match self.active[sc] {
                    Some(x) => m = x,
                    None => return 0,
                }
            } else {
                m = self.metas[m].next.unwrap_or(m);
                self.active[sc] = Some(m);
            }
            mask = self.metas[m].freed_mask;
            if mask == ones(self.metas[m].last_idx) && self.metas[m].freeable {
                m = self.metas[m].next.unwrap_or(m);
                self.active[sc] = Some(m);
                mask = self.metas[m].freed_mask;
            }
            if mask & ones(self.metas[m].active_idx) == 0 {
                if self.metas[m].next != Some(m) {
                    m = self.metas[m].next.unwrap_or(m);
                    self.active[sc] = Some(m);
                } else {
                    let g = self.metas[m];
                    let mut cnt = i64::from(g.active_idx) + 2;
                    let size = (SIZE_CLASSES[g.sizeclass.min(47)] * UNIT) as i64;
                    let mut span = UNIT as i64 + size * cnt;
                    while (span ^ (span + size - 1)) < 4096 {
                        cnt += 1;
                        span += size;
                    }
                    if cnt > i64::from(g.last_idx) + 1 {
                        cnt = i64::from(g.last_idx) + 1;
                    }
                    self.metas[m].active_idx = (cnt - 1) as u32;
                }
            }
            mask = self.activate_group(m);
            let sc_m = self.metas[m].sizeclass;
            self.decay_bounces(sc_m);
        }
        let first = mask & mask.wrapping_neg();
        self.metas[m].avail_mask = mask - first;
        first
    }

    /// Models `alloc_group()` (malloc.c): the slot count from the usage of the class,
    /// then either an `mmap` of whole pages (groups above half a page, with the
    /// reductions and the single-allocation choice) or a slot of a larger class.
    fn alloc_group(&mut self, t: &mut Task, sc: usize, req: u64) -> Option<usize> {
        let size = UNIT * SIZE_CLASSES[sc];
        let m = self.alloc_meta(t)?;
        let mut usage = self.usage_by_class[sc];
        let mut cnt: u64;
        if sc < 9 {
            let mut i = 0;
            while i < 2 && 4 * SMALL_CNT_TAB[sc][i] > usage {
                i += 1;
            }
            cnt = SMALL_CNT_TAB[sc][i];
        } else {
            cnt = MED_CNT_TAB[sc & 3];
            while cnt & 1 == 0 && 4 * cnt > usage {
                cnt >>= 1;
            }
            while size * cnt >= 65536 * UNIT {
                cnt >>= 1;
            }
        }
        if cnt == 1 && size * cnt + UNIT <= PGSZ / 2 {
            cnt = 2;
        }
        let (mem, maplen, active_idx, parent);
        if size * cnt + UNIT > PGSZ / 2 {
            let nosmall = self.is_bouncing(sc);
            self.account_bounce(sc);
            self.step_seq();
            if sc & 1 == 0 && sc < 32 {
                usage += self.usage_by_class[sc + 1];
            }
            if 4 * cnt > usage && !nosmall {
                let bytes = size * cnt;
                cnt = match sc & 3 {
                    1 if bytes > 8 * PGSZ => 2,
                    2 if bytes > 4 * PGSZ => 3,
                    0 if bytes > 8 * PGSZ => 3,
                    0 if bytes > 2 * PGSZ => 5,
                    _ => cnt,
                };
            }
            let mut needed = size * cnt + UNIT;
            needed += needed.wrapping_neg() & (PGSZ - 1);
            if !nosmall && cnt <= 7 {
                let mut req = req + IB + UNIT;
                req += req.wrapping_neg() & (PGSZ - 1);
                if req < size + UNIT || (req >= 4 * PGSZ && 2 * cnt > usage) {
                    cnt = 1;
                    needed = req;
                }
            }
            let Ok(p) = t.mmap(
                0,
                needed,
                Prot::RW,
                Placement::Hint,
                None,
                Maker::MallocngMmap,
            ) else {
                self.free_meta(m);
                return None;
            };
            mem = p;
            maplen = needed >> 12;
            self.mmap_counter = self.mmap_counter.wrapping_add(1);
            let ai = ((4096 - UNIT) / size) as i64 - 1;
            active_idx = ai.min(cnt as i64 - 1).max(0) as u32;
            parent = None;
        } else {
            let j = size_to_class(UNIT + cnt * size - IB);
            let Some(idx) = self.alloc_slot(t, j, UNIT + cnt * size - IB) else {
                self.free_meta(m);
                return None;
            };
            let g = self.active[j]?;
            mem = 0;
            maplen = 0;
            active_idx = (cnt - 1) as u32;
            parent = Some(Slot { meta: g, idx });
        }
        self.usage_by_class[sc] += cnt;
        let avail = ones(active_idx);
        let g = &mut self.metas[m];
        g.avail_mask = avail;
        g.freed_mask = ones((cnt - 1) as u32).wrapping_sub(avail);
        g.mem = mem;
        g.active_idx = active_idx;
        g.last_idx = (cnt - 1) as u32;
        g.freeable = true;
        g.sizeclass = sc;
        g.maplen = maplen;
        g.parent = parent;
        Some(m)
    }

    /// Models `alloc_slot()` (malloc.c).
    fn alloc_slot(&mut self, t: &mut Task, sc: usize, req: u64) -> Option<u32> {
        let first = self.try_avail(sc);
        if first != 0 {
            return Some(first.trailing_zeros());
        }
        let g = self.alloc_group(t, sc, req)?;
        self.metas[g].avail_mask = self.metas[g].avail_mask.wrapping_sub(1);
        queue(&mut self.metas, &mut self.active[sc], g);
        Some(0)
    }

    /// Models `malloc()` (malloc.c); `calloc()` is `malloc(m * n)` plus clearing.
    /// `None` when the kernel refuses memory.
    pub fn malloc(&mut self, t: &mut Task, n: u64) -> Option<Slot> {
        if n >= u64::MAX / 2 - 4096 {
            return None;
        }
        if n >= MMAP_THRESHOLD {
            let needed = n + IB + UNIT;
            let p = t
                .mmap(
                    0,
                    needed,
                    Prot::RW,
                    Placement::Hint,
                    None,
                    Maker::MallocngMmap,
                )
                .ok()?;
            self.step_seq();
            let Some(g) = self.alloc_meta(t) else {
                t.munmap(p, needed);
                return None;
            };
            let m = &mut self.metas[g];
            m.mem = p;
            m.last_idx = 0;
            m.freeable = true;
            m.sizeclass = 63;
            m.maplen = needed.div_ceil(4096);
            m.avail_mask = 0;
            m.freed_mask = 0;
            self.mmap_counter = self.mmap_counter.wrapping_add(1);
            return Some(Slot { meta: g, idx: 0 });
        }
        let mut sc = size_to_class(n);
        let mut g = self.active[sc];
        if g.is_none()
            && (4..32).contains(&sc)
            && sc != 6
            && sc & 1 == 0
            && self.usage_by_class[sc] == 0
        {
            let mut usage = self.usage_by_class[sc | 1];
            let coarse_free = match self.active[sc | 1] {
                None => true,
                Some(c) => self.metas[c].avail_mask == 0 && self.metas[c].freed_mask == 0,
            };
            if coarse_free {
                usage += 3;
            }
            if usage <= 12 {
                sc |= 1;
            }
            g = self.active[sc];
        }
        if let Some(g) = g {
            let mask = self.metas[g].avail_mask;
            let first = mask & mask.wrapping_neg();
            if first != 0 {
                self.metas[g].avail_mask = mask - first;
                return Some(Slot {
                    meta: g,
                    idx: first.trailing_zeros(),
                });
            }
        }
        let idx = self.alloc_slot(t, sc, n)?;
        let g = self.active[sc]?;
        Some(Slot { meta: g, idx })
    }

    /// Models `donate()` (donate.c): carve `[a, a+len)` (16-byte aligned inwards) into
    /// single-slot, never-freed groups, largest class first, classes 47, 43, ..., 3.
    pub fn donate(&mut self, t: &mut Task, base: u64, len: u64) {
        let mut a = base;
        let mut b = a.wrapping_add(len);
        a = a.wrapping_add(a.wrapping_neg() & (UNIT - 1));
        b -= b & (UNIT - 1);
        let mut sc: i64 = 47;
        while sc > 0 && b > a {
            let s = sc as usize;
            let need = (SIZE_CLASSES[s] + 1) * UNIT;
            if b - a < need {
                sc -= 4;
                continue;
            }
            let Some(m) = self.alloc_meta(t) else {
                return;
            };
            let g = &mut self.metas[m];
            g.avail_mask = 0;
            g.freed_mask = 1;
            g.mem = a;
            g.last_idx = 0;
            g.freeable = false;
            g.sizeclass = s;
            g.maplen = 0;
            g.active_idx = 0;
            queue(&mut self.metas, &mut self.active[s], m);
            a += need;
            sc -= 4;
        }
    }

    /// Models `free()` (free.c): the lock-free case (neither the first freed nor the
    /// last used slot), else `nontrivial_free()` and the `munmap` it asks for.
    pub fn free(&mut self, t: &mut Task, s: Slot) {
        let g = s.meta;
        let me = 1u32 << s.idx;
        let all = ones(self.metas[g].last_idx);
        let freed = self.metas[g].freed_mask;
        let avail = self.metas[g].avail_mask;
        let mask = freed | avail;
        if freed != 0 && mask.wrapping_add(me) != all {
            self.metas[g].freed_mask = freed + me;
            return;
        }
        if let Some((base, len)) = self.nontrivial_free(g, s.idx) {
            t.munmap(base, len);
        }
    }

    /// Models `okay_to_free()` (free.c).
    fn okay_to_free(&self, g: usize) -> bool {
        let m = &self.metas[g];
        let sc = m.sizeclass;
        if !m.freeable {
            return false;
        }
        if sc >= 48 || self.get_stride(g) < UNIT * SIZE_CLASSES[sc] {
            return true;
        }
        if m.maplen == 0 {
            return true;
        }
        if m.next != Some(g) {
            return true;
        }
        if !self.is_bouncing(sc) {
            return true;
        }
        let cnt = u64::from(m.last_idx) + 1;
        9 * cnt <= self.usage_by_class[sc] && cnt < 20
    }

    /// Models `nontrivial_free()` (free.c).
    fn nontrivial_free(&mut self, g: usize, i: u32) -> Option<(u64, u64)> {
        let me = 1u32 << i;
        let sc = self.metas[g].sizeclass;
        let mask = self.metas[g].freed_mask | self.metas[g].avail_mask;
        if mask.wrapping_add(me) == ones(self.metas[g].last_idx) && self.okay_to_free(g) {
            if self.metas[g].next.is_some() && sc < 48 {
                let activate_new = self.active[sc] == Some(g);
                dequeue(&mut self.metas, &mut self.active[sc], g);
                if activate_new {
                    if let Some(h) = self.active[sc] {
                        self.activate_group(h);
                    }
                }
            }
            return self.free_group(g);
        } else if mask == 0 && sc < 48 && self.active[sc] != Some(g) {
            queue(&mut self.metas, &mut self.active[sc], g);
        }
        self.metas[g].freed_mask |= me;
        None
    }

    /// Models `free_group()` (free.c).
    fn free_group(&mut self, g: usize) -> Option<(u64, u64)> {
        let m = self.metas[g];
        let sc = m.sizeclass;
        if sc < 48 {
            self.usage_by_class[sc] -= u64::from(m.last_idx) + 1;
        }
        let mi = if m.maplen != 0 {
            self.step_seq();
            self.record_seq(sc);
            Some((m.mem, m.maplen * 4096))
        } else {
            m.parent.and_then(|p| self.nontrivial_free(p.meta, p.idx))
        };
        self.free_meta(g);
        mi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_match_the_table() {
        // The smallest class whose slot (minus the 4-byte in-band header) holds n.
        for n in [
            0u64, 1, 12, 13, 100, 428, 492, 493, 1004, 2028, 4000, 131000,
        ] {
            let sc = size_to_class(n);
            assert!(SIZE_CLASSES[sc] * UNIT >= n + IB, "n={n} sc={sc}");
            if sc > 0 {
                assert!(SIZE_CLASSES[sc - 1] * UNIT < n + IB, "n={n} sc={sc}");
            }
        }
    }
}
