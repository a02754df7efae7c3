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

use crate::core::error::{Error, Result, Status};
use crate::sys::proc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Entries: processes inside calls at once, counted per object (a process inside calls on two
/// objects takes two).
pub(super) const ENTRIES: usize = 16384;
const CALLS: u64 = 0xffff;
const BLOCK_BITS: u32 = 26;
const PID_SHIFT: u32 = 16 + BLOCK_BITS;

/// The table (in the arena, after its header).
#[repr(C)]
pub(super) struct Callers([AtomicU64; ENTRIES]);

fn key(pid: u64, block: u64) -> u64 {
    pid << PID_SHIFT | block << 16
}

fn pid_of(v: u64) -> libc::pid_t {
    (v >> PID_SHIFT) as libc::pid_t
}

fn block_of(v: u64) -> u64 {
    (v >> 16) & ((1 << BLOCK_BITS) - 1)
}

impl Callers {
    /// Counts a call of this process on `block` in; returns the entry to pass to `leave`.
    pub(super) fn enter(&self, block: u64) -> Result<usize> {
        let pid = proc::getpid() as u64;
        debug_assert!(block < 1 << BLOCK_BITS);
        if pid >= 1 << (64 - PID_SHIFT) {
            return Err(Error::new(Status::Sys, format!("process id {pid} is above 2^22 (the kernel's limit)")));
        }
        let k = key(pid, block);
        let start = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % ENTRIES;
        for pass in 0..2 {
            for i in (0..ENTRIES).map(|i| (start + i) % ENTRIES) {
                let e = &self.0[i];
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
                        Ok(_) => return Ok(i),
                        Err(now) => v = now,
                    }
                }
            }
            if pass == 0 {
                self.clear_dead(None);
            }
        }
        Err(Error::new(
            Status::NoMem,
            format!("more than {ENTRIES} calls on queues, locks and events are under way in different processes at once"),
        ))
    }

    /// Counts the call that `enter` counted in entry `i` out.
    pub(super) fn leave(&self, i: usize) {
        let e = &self.0[i];
        let mut v = e.load(SeqCst);
        loop {
            let next = if v & CALLS <= 1 { 0 } else { v - 1 };
            match e.compare_exchange(v, next, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// The blocks some live process is inside a call on (`only`: just that block's entries).
    pub(super) fn busy(&self, only: Option<u64>) -> Vec<u64> {
        let mut alive: HashMap<libc::pid_t, bool> = HashMap::new();
        let mut out: Vec<u64> = self
            .0
            .iter()
            .map(|e| e.load(SeqCst))
            .filter(|&v| v != 0 && only.is_none_or(|b| block_of(v) == b))
            .filter(|&v| *alive.entry(pid_of(v)).or_insert_with(|| !proc::is_dead(pid_of(v))))
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
        let mut dead: HashMap<libc::pid_t, bool> = HashMap::new();
        for e in &self.0 {
            let v = e.load(SeqCst);
            if v != 0 && only.is_none_or(|b| block_of(v) == b) && *dead.entry(pid_of(v)).or_insert_with(|| proc::is_dead(pid_of(v))) {
                let _ = e.compare_exchange(v, 0, SeqCst, SeqCst);
            }
        }
    }
}
