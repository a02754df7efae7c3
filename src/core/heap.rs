//! The allocator of a pool's shared heap. It runs in the host only (workers never allocate), so
//! it is plain Rust behind a mutex. Blocks are power-of-two classes reused last-in first-out so
//! that hot, already-faulted pages are reused; big freed blocks give their pages back.

use std::sync::Mutex;

const MIN_SHIFT: u32 = 6; // 64 bytes
/// Freed blocks at least this big return their memory to the system.
const RELEASE_AT: usize = 4 << 20;

pub struct Heap {
    len: usize,
    state: Mutex<State>,
}

struct State {
    bump: usize,
    free: Vec<Vec<usize>>, // per class
}

fn class_of(size: usize) -> Option<u32> {
    let size = size.max(1 << MIN_SHIFT);
    let shift = size.checked_next_power_of_two()?.trailing_zeros();
    Some(shift - MIN_SHIFT)
}

/// A heap block: offset and rounded size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub off: usize,
    pub size: usize,
}

impl Heap {
    pub fn new(len: usize) -> Heap {
        Heap { len, state: Mutex::new(State { bump: 0, free: vec![Vec::new(); 64] }) }
    }

    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Allocates at least `size` bytes, or None if the heap is full.
    pub fn alloc(&self, size: usize) -> Option<Block> {
        let class = class_of(size)?;
        let bsize = 1usize << (class + MIN_SHIFT);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(off) = st.free[class as usize].pop() {
            return Some(Block { off, size: bsize });
        }
        // Bump allocation, aligned to the block size (capped at 2 MiB) for clean page use.
        let al = bsize.min(1 << 21);
        let off = (st.bump + al - 1) & !(al - 1);
        if off.checked_add(bsize)? > self.len {
            return None;
        }
        st.bump = off + bsize;
        Some(Block { off, size: bsize })
    }

    /// Frees a block; returns true if its pages should be released to the system by the caller.
    pub fn free(&self, b: Block) -> bool {
        let class = class_of(b.size).expect("valid block");
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(!st.free[class as usize].contains(&b.off), "double free");
        st.free[class as usize].push(b.off);
        b.size >= RELEASE_AT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_lifo_and_rounds_up() {
        let h = Heap::new(1 << 30);
        let a = h.alloc(100).unwrap();
        assert_eq!(a.size, 128);
        let b = h.alloc(100).unwrap();
        assert_ne!(a.off, b.off);
        assert!(!h.free(a));
        assert_eq!(h.alloc(120).unwrap(), a);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let h = Heap::new(1 << 20);
        assert!(h.alloc(2 << 20).is_none());
        let big = h.alloc(1 << 20).unwrap();
        assert!(h.alloc(64).is_none());
        h.free(big);
        assert!(h.alloc(1 << 20).is_some());
    }

    #[test]
    fn big_blocks_ask_for_release() {
        let h = Heap::new(1 << 30);
        let b = h.alloc(8 << 20).unwrap();
        assert!(h.free(b));
    }
}
