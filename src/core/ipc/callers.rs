//! Who is inside a call on which arena object: one table for the whole arena, so that any
//! number of processes can be inside calls on one object, and a process that dies inside (by
//! SIGKILL, say) stops counting the moment it is dead, whoever else is inside.
//!
//! Each entry is one word, `pid << 42 | block << 16 | calls` (`block` is the object's offset
//! in ALIGN units), changed only by compare-and-swap: a process adds itself with one CAS from 0
//! and counts its calls in its own entries, so a death at any instruction leaves either no
//! entry change or a whole one, and an entry of a dead process is told apart by its pid. A
//! word of 0 is a free entry. Entries of dead processes are cleared when the table fills, or
//! by whoever frees the object they name.
//!
//! The entries of one object are found without reading the whole table: they go in the
//! object's home bucket of 16 entries, or, when that is full, in the buckets after it, and a
//! bucket once passed over for being full is marked so for good (`spilled`, set before the
//! entry is taken). A search for an object's callers reads its home bucket and follows the
//! marks; since the mark precedes the entry, it finds every entry taken before it looked.

use crate::core::error::{Error, Result, Status};
use crate::sys::proc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

/// Entries: processes inside calls at once, counted per object (a process inside calls on two
/// objects takes two).
const ENTRIES: usize = 16384;
const BUCKET: usize = 16;
const BUCKETS: usize = ENTRIES / BUCKET;
const CALLS: u64 = 0xffff;
const BLOCK_BITS: u32 = 26;
const PID_SHIFT: u32 = 16 + BLOCK_BITS;

/// The table (in the arena, after its header).
#[repr(C)]
pub(super) struct Callers {
    entries: [AtomicU64; ENTRIES],
    /// Per bucket: it was found full by a caller that went on to the next.
    spilled: [AtomicU32; BUCKETS],
}

fn key(pid: u64, block: u64) -> u64 {
    pid << PID_SHIFT | block << 16
}

fn pid_of(v: u64) -> libc::pid_t {
    (v >> PID_SHIFT) as libc::pid_t
}

fn block_of(v: u64) -> u64 {
    (v >> 16) & ((1 << BLOCK_BITS) - 1)
}

fn home(block: u64) -> usize {
    (block.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % BUCKETS
}

/// Whether `pid` is dead, asked once per pid per search.
struct Deaths(HashMap<libc::pid_t, bool>);

impl Deaths {
    fn dead(&mut self, pid: libc::pid_t) -> bool {
        *self.0.entry(pid).or_insert_with(|| proc::is_dead(pid))
    }
}

impl Callers {
    fn bucket(&self, b: usize) -> &[AtomicU64] {
        &self.entries[b * BUCKET..(b + 1) * BUCKET]
    }

    /// Counts a call of this process on `block` in; returns the entry to pass to `leave`.
    pub(super) fn enter(&self, block: u64) -> Result<usize> {
        let pid = proc::getpid() as u64;
        debug_assert!(block < 1 << BLOCK_BITS);
        if pid >= 1 << (64 - PID_SHIFT) {
            return Err(Error::new(Status::Sys, format!("process id {pid} is above 2^22 (the kernel's limit)")));
        }
        let k = key(pid, block);
        for pass in 0..2 {
            for b in (0..BUCKETS).map(|i| (home(block) + i) % BUCKETS) {
                for (j, e) in self.bucket(b).iter().enumerate() {
                    let mut v = e.load(SeqCst);
                    loop {
                        let next = if v == 0 {
                            k | 1
                        } else if v & !CALLS == k && v & CALLS < CALLS {
                            v + 1
                        } else {
                            break;
                        };
                        match e.compare_exchange(v, next, SeqCst, SeqCst) {
                            Ok(_) => return Ok(b * BUCKET + j),
                            Err(now) => v = now,
                        }
                    }
                }
                self.spilled[b].store(1, SeqCst); // before any entry taken further on
            }
            if pass == 0 {
                self.clear_dead(None);
            }
        }
        Err(Error::new(
            Status::NoMem,
            format!(
                "more than {ENTRIES} calls on queues, locks and events are under way at once (counted once per process \
                 and object: threads of one process inside calls on one object count once)"
            ),
        ))
    }

    /// Counts the call that `enter` counted in entry `i` out.
    pub(super) fn leave(&self, i: usize) {
        let e = &self.entries[i];
        let mut v = e.load(SeqCst);
        loop {
            let next = if v & CALLS <= 1 { 0 } else { v - 1 };
            match e.compare_exchange(v, next, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// The entries that may name `block` (None: every entry).
    fn candidates(&self, block: Option<u64>) -> impl Iterator<Item = &AtomicU64> {
        let buckets: Vec<usize> = match block {
            None => (0..BUCKETS).collect(),
            Some(b) => {
                let mut v = vec![home(b)];
                while v.len() < BUCKETS && self.spilled[*v.last().expect("not empty")].load(SeqCst) != 0 {
                    v.push((v[v.len() - 1] + 1) % BUCKETS);
                }
                v
            }
        };
        buckets.into_iter().flat_map(move |b| self.bucket(b).iter())
    }

    /// Whether a live process is inside a call on `block`.
    pub(super) fn busy(&self, block: u64) -> bool {
        let mut deaths = Deaths(HashMap::new());
        self.candidates(Some(block))
            .map(|e| e.load(SeqCst))
            .any(|v| v != 0 && block_of(v) == block && !deaths.dead(pid_of(v)))
    }

    /// The blocks some live process is inside a call on, sorted.
    pub(super) fn all_busy(&self) -> Vec<u64> {
        let mut deaths = Deaths(HashMap::new());
        let mut out: Vec<u64> = self
            .candidates(None)
            .map(|e| e.load(SeqCst))
            .filter(|&v| v != 0 && !deaths.dead(pid_of(v)))
            .map(block_of)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Clears the entries of dead processes (`only`: those on that block). An entry changes
    /// only if it still holds what was judged dead: a process that reuses the pid and counts
    /// itself in meanwhile keeps its entry.
    pub(super) fn clear_dead(&self, only: Option<u64>) {
        let mut deaths = Deaths(HashMap::new());
        for e in self.candidates(only) {
            let v = e.load(SeqCst);
            if v != 0 && only.is_none_or(|b| block_of(v) == b) && deaths.dead(pid_of(v)) {
                let _ = e.compare_exchange(v, 0, SeqCst, SeqCst);
            }
        }
    }
}
