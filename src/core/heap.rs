//! The allocator of a pool's shared heap. It runs in the host only (workers never allocate), so
//! it is plain Rust behind a mutex. Sizes are rounded to classes four per power of two (at most
//! 25% slack); freed blocks are reused last-in first-out so that pages already faulted in are
//! reused (a copy into fresh shared pages is several times slower). Big freed blocks stay
//! resident up to a budget and give their pages back beyond it. When a size finds neither a
//! freed block of its class nor fresh memory, freed blocks are merged with their neighbours
//! (a free run at the end goes back to fresh memory) and bigger ones are cut, so memory freed
//! in one size serves any other: a heap that was full of one size never refuses another.

use std::sync::Mutex;

const MIN_SHIFT: u32 = 6; // 64 bytes
const PAGE: usize = 4096;
/// Freed blocks at least this big count against the resident budget.
const BIG: usize = 1 << 20;
/// How much freed big memory stays resident for reuse.
const RESIDENT_BUDGET: usize = 256 << 20;

pub struct Heap {
    /// Offset of this heap's first byte in the pool's heap region (block offsets include it).
    base: usize,
    len: usize,
    state: Mutex<State>,
}

struct State {
    bump: usize,
    /// The end of the memory ever handed out: past it, bytes were never written.
    used: usize,
    /// Per class: freed blocks (offset, still resident).
    free: Vec<Vec<(usize, bool)>>,
    /// Bytes of freed big blocks that still hold their pages.
    resident_free: usize,
}

/// The class of `size` and its rounded size: classes are 2^k × {1, 1.25, 1.5, 1.75}.
fn class_of(size: usize) -> Option<(usize, usize)> {
    let size = size.max(1 << MIN_SHIFT);
    let k = usize::BITS - 1 - size.leading_zeros(); // 2^k <= size < 2^(k+1)
    let quarter = 1usize << (k - 2);
    let sub = (size - (1 << k)).div_ceil(quarter); // 0..=4
    let rounded = (1usize << k).checked_add(sub * quarter)?;
    let class = (k - MIN_SHIFT) as usize * 4 + sub; // sub == 4 is the next power's class 0
    Some((class, rounded))
}

/// The largest class no bigger than `size` (None below the smallest class).
fn class_at_most(size: usize) -> Option<(usize, usize)> {
    if size < 1 << MIN_SHIFT {
        return None;
    }
    let k = usize::BITS - 1 - size.leading_zeros();
    let quarter = 1usize << (k - 2);
    let sub = (size - (1 << k)) / quarter; // 0..=3
    Some(((k - MIN_SHIFT) as usize * 4 + sub, (1 << k) + sub * quarter))
}

/// A heap block: offset and rounded size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub off: usize,
    pub size: usize,
    /// Set by `alloc` when the block was used before: its pages are faulted in already, and
    /// may hold old bytes.
    pub resident: bool,
}

impl Heap {
    pub fn new(base: usize, len: usize) -> Heap {
        Heap {
            base,
            len,
            state: Mutex::new(State { bump: 0, used: 0, free: vec![Vec::new(); 64 * 4 + 1], resident_free: 0 }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Allocates at least `size` bytes, or None if the heap is full.
    pub fn alloc(&self, size: usize) -> Option<Block> {
        let (class, bsize) = class_of(size)?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (off, resident) = st.reuse(class).or_else(|| st.fresh(bsize, self.len)).or_else(|| {
            st.coalesce();
            st.reuse(class).or_else(|| st.fresh(bsize, self.len)).or_else(|| st.cut(class, bsize))
        })?;
        Some(Block { off: self.base + off, size: bsize, resident })
    }

    /// Frees a block. Returns the page-aligned range whose memory the caller should give back
    /// to the system, if any.
    pub fn free(&self, b: Block) -> Option<(usize, usize)> {
        let (class, _) = class_of(b.size).expect("valid block");
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(!st.free[class].iter().any(|&(o, _)| o + self.base == b.off), "double free");
        let keep = b.size < BIG || st.resident_free + b.size <= RESIDENT_BUDGET;
        if keep && b.size >= BIG {
            st.resident_free += b.size;
        }
        st.free[class].push((b.off - self.base, keep));
        if keep {
            return None;
        }
        let start = b.off.next_multiple_of(PAGE);
        let end = (b.off + b.size) & !(PAGE - 1);
        (end > start).then_some((start, end - start))
    }
}

impl State {
    /// A freed block of `class`, preferring one whose pages are still there.
    fn reuse(&mut self, class: usize) -> Option<(usize, bool)> {
        let list = &mut self.free[class];
        let i = list.iter().rposition(|&(_, resident)| resident).or(list.len().checked_sub(1))?;
        let (off, resident) = list.swap_remove(i);
        let (_, bsize) = class_of_index(class);
        if resident && bsize >= BIG {
            self.resident_free -= bsize;
        }
        Some((off, resident))
    }

    /// Memory past the last block, blocks of a page or more page-aligned (the bytes skipped to
    /// align are listed as free blocks). Zero unless a block that went back there (`coalesce`)
    /// used it: below `used` it may hold old bytes.
    fn fresh(&mut self, bsize: usize, len: usize) -> Option<(usize, bool)> {
        let al = if bsize >= PAGE { PAGE } else { 64 };
        let off = self.bump.next_multiple_of(al);
        if off.checked_add(bsize)? > len {
            return None;
        }
        let skipped = self.bump;
        self.bump = off + bsize;
        if off - skipped >= 1 << MIN_SHIFT {
            self.list(skipped, off);
        }
        let old = off < self.used;
        self.used = self.used.max(self.bump);
        Some((off, old))
    }

    /// Merges freed blocks whose extents touch, gives a run that ends the used memory back to
    /// fresh memory, and lists the other runs again as blocks of the largest classes that fit.
    /// (Every block starts 64-aligned and the next starts at or after the end of its size
    /// rounded up to 64, its extent; the alignment bytes skipped before a page-aligned block
    /// are listed as free blocks too: so extents tile the used memory, and touching is exact.)
    fn coalesce(&mut self) {
        let mut blocks: Vec<(usize, usize)> = Vec::new();
        for (class, list) in self.free.iter_mut().enumerate().filter(|(_, l)| !l.is_empty()) {
            let (_, size) = class_of_index(class);
            blocks.extend(list.drain(..).map(|(off, _)| (off, extent(size))));
        }
        blocks.sort_unstable();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (off, ext) in blocks {
            match runs.last_mut() {
                Some(r) if off == r.1 => r.1 = off + ext,
                _ => runs.push((off, off + ext)),
            }
        }
        if runs.last().is_some_and(|r| r.1 >= self.bump) {
            self.bump = runs.pop().expect("checked").0;
        }
        self.resident_free = 0;
        for (start, end) in runs {
            // Pieces of a run may hold old bytes of any block that was in it: listed as such
            // (released pages read as zero, but a piece may straddle a kept one).
            self.list(start, end);
        }
    }

    /// Lists `[start, end)` (`end` 64-aligned) as free blocks of the largest classes that fit,
    /// each aligned as fresh memory would be (64 bytes, a page from a page up).
    fn list(&mut self, start: usize, end: usize) {
        let mut off = start.next_multiple_of(1 << MIN_SHIFT);
        while off < end {
            let room = if off % PAGE == 0 { end - off } else { (end - off).min(off.next_multiple_of(PAGE) - off) };
            let Some((class, size)) = class_at_most(room) else { break };
            if size >= BIG {
                self.resident_free += size;
            }
            self.free[class].push((off, true));
            off += extent(size);
        }
    }

    /// Cuts `bsize` bytes from the front of the smallest freed block of a bigger class (its
    /// start is aligned for any size it holds) and lists the rest.
    fn cut(&mut self, class: usize, bsize: usize) -> Option<(usize, bool)> {
        let bigger = (class + 1..self.free.len()).find(|&c| !self.free[c].is_empty())?;
        let (off, _) = self.reuse(bigger)?;
        let (_, size) = class_of_index(bigger);
        self.list(off + bsize, off + extent(size));
        Some((off, true))
    }
}

/// The bytes a block of `size` keeps from others: its size rounded up to 64.
fn extent(size: usize) -> usize {
    size.next_multiple_of(1 << MIN_SHIFT)
}

/// The rounded size of class `class` (`class_of`'s inverse).
fn class_of_index(class: usize) -> (usize, usize) {
    let (k, sub) = (class / 4 + MIN_SHIFT as usize, class % 4);
    (class, (1usize << k) + sub * (1usize << (k - 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_waste_at_most_a_quarter() {
        for size in [1, 64, 65, 100, 1000, 4096, 5000, 1 << 20, (1 << 20) + 1, 3 << 20, 1 << 30] {
            let (_, r) = class_of(size).unwrap();
            assert!(r >= size && (r <= 64 || r * 4 <= size * 5 + 256), "{size} -> {r}");
        }
        assert_eq!(class_of(2 << 20).unwrap().1, 2 << 20);
        assert_eq!(class_of((2 << 20) + 64).unwrap().1, (2 << 20) + (512 << 10));
    }

    #[test]
    fn reuses_lifo() {
        let h = Heap::new(0, 1 << 30);
        let a = h.alloc(100).unwrap();
        let b = h.alloc(100).unwrap();
        assert_ne!(a.off, b.off);
        assert_eq!(h.free(a), None);
        let again = h.alloc(100).unwrap();
        assert_eq!((again.off, again.resident), (a.off, true));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let h = Heap::new(0, 1 << 20);
        assert!(h.alloc(2 << 20).is_none());
        let big = h.alloc(1 << 20).unwrap();
        assert!(h.alloc(64).is_none());
        h.free(big);
        assert!(h.alloc(1 << 20).is_some());
    }

    #[test]
    fn memory_freed_in_one_size_serves_others() {
        let h = Heap::new(0, 16 << 20);
        // Full of 1 MiB blocks, all freed: small ones fit, and so do big ones again after.
        let big: Vec<_> = (0..16).map(|_| h.alloc(1 << 20).unwrap()).collect();
        assert!(h.alloc(100).is_none());
        big.into_iter().for_each(|b| {
            h.free(b);
        });
        let small: Vec<_> = (0..1000).map(|_| h.alloc(100).expect("a small block after big ones were freed")).collect();
        assert!(small.iter().all(|b| b.resident), "cut from used memory: may hold old bytes");
        small.into_iter().for_each(|b| {
            h.free(b);
        });
        assert!(h.alloc(8 << 20).is_some(), "half the heap once the small blocks were freed");
    }

    #[test]
    fn mixed_sizes_never_overlap_and_always_fit_when_free() {
        let len = 8 << 20;
        let h = Heap::new(4096, len);
        let mut live: Vec<Block> = Vec::new();
        let mut seed = 12345u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            if live.is_empty() || rand() % 3 != 0 {
                let size = match rand() % 4 {
                    0 => 1 + (rand() % 200) as usize,
                    1 => 1 + (rand() % 20_000) as usize,
                    2 => 1 + (rand() % 300_000) as usize,
                    _ => 1 + (rand() % 2_000_000) as usize,
                };
                let used: usize = live.iter().map(|b| b.size).sum();
                match h.alloc(size) {
                    Some(b) => {
                        assert!(b.off >= 4096 && b.off + b.size <= 4096 + len, "round {round}: {b:?} outside");
                        assert!(b.size < PAGE || b.off % PAGE == 0, "round {round}: {b:?} not page-aligned");
                        for o in &live {
                            assert!(
                                b.off + b.size <= o.off || o.off + o.size <= b.off,
                                "round {round}: {b:?} overlaps {o:?}"
                            );
                        }
                        live.push(b);
                    }
                    // Refused only when the heap is mostly used.
                    None => assert!(used + 4 * size > len / 4, "round {round}: {size} refused with {used} used"),
                }
            } else {
                let b = live.swap_remove((rand() as usize) % live.len());
                h.free(b);
            }
            // Live and free blocks tile the used memory exactly (extents), so merging is exact.
            let st = h.state.lock().unwrap();
            let mut all: Vec<(usize, usize)> = st
                .free
                .iter()
                .enumerate()
                .flat_map(|(c, l)| l.iter().map(move |&(o, _)| (o + 4096, class_of_index(c).1)))
                .chain(live.iter().map(|b| (b.off, b.size)))
                .collect();
            all.sort_unstable();
            let end = all.iter().try_fold(4096, |end, &(o, s)| (o == end).then_some(o + extent(s)));
            assert_eq!(end, Some(4096 + extent(st.bump)), "round {round}: a hole or an overlap: {all:?}");
            drop(st);
            if round % 5000 == 4999 {
                live.drain(..).for_each(|b| {
                    h.free(b);
                });
                let whole = h.alloc(len / 2).expect("half the heap once everything was freed");
                h.free(whole);
            }
        }
    }

    #[test]
    fn big_blocks_stay_resident_up_to_the_budget() {
        let h = Heap::new(0, 4 << 30);
        let blocks: Vec<_> = (0..3).map(|_| h.alloc(100 << 20).unwrap()).collect();
        let released: Vec<_> = blocks.into_iter().map(|b| h.free(b)).collect();
        assert_eq!(released.iter().filter(|r| r.is_none()).count(), 2, "{released:?}");
        let (start, len) = released[2].unwrap();
        assert_eq!(start % PAGE, 0);
        assert!(len > 0);
    }
}
