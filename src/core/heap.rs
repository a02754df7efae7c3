//! The allocator of a pool's shared heap. It runs in the host only (workers never allocate), so
//! it is plain Rust behind a mutex. Sizes are rounded to classes four per power of two (at most
//! 25% slack); freed blocks are reused last-in first-out so that pages already faulted in are
//! reused (a copy into fresh shared pages is several times slower). Big freed blocks stay
//! resident up to a budget and give their pages back beyond it.

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

/// A heap block: offset and rounded size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub off: usize,
    pub size: usize,
    /// Set by `alloc` when the block's pages are known to be faulted in already (reused).
    pub resident: bool,
}

impl Heap {
    pub fn new(base: usize, len: usize) -> Heap {
        Heap { base, len, state: Mutex::new(State { bump: 0, free: vec![Vec::new(); 64 * 4 + 1], resident_free: 0 }) }
    }

    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Allocates at least `size` bytes, or None if the heap is full.
    pub fn alloc(&self, size: usize) -> Option<Block> {
        let (class, bsize) = class_of(size)?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let list = &mut st.free[class];
        // Prefer a block whose pages are still there.
        let pick = list.iter().rposition(|&(_, resident)| resident).or(list.len().checked_sub(1));
        if let Some(i) = pick {
            let (off, resident) = list.swap_remove(i);
            if resident && bsize >= BIG {
                st.resident_free -= bsize;
            }
            return Some(Block { off: self.base + off, size: bsize, resident });
        }
        let al = if bsize >= PAGE { PAGE } else { 64 };
        let off = st.bump.next_multiple_of(al);
        if off.checked_add(bsize)? > self.len {
            return None;
        }
        st.bump = off + bsize;
        Some(Block { off: self.base + off, size: bsize, resident: false })
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
