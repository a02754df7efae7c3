//! A sandboxed worker runs its tasks in a child of its own, the executor: the only process of
//! the pool that runs untrusted code, and one that holds no writable mapping of the pool's
//! memory. The pool is mapped there read-only from a read-only descriptor, so no `mprotect` or
//! `mremap` can make it writable; the worker's read-write alias is unmapped; the memfd's
//! descriptors are closed. What the executor may write is its mailbox and its output window, a
//! memfd of its own that the worker maps too.
//!
//! The worker (trusted: it runs no task code) keeps the pool's protocol exactly as an
//! unsandboxed worker does, item by item (PROTOCOL.md, "Sandboxed workers"). Where an
//! unsandboxed worker calls the task, it hands the item to its executor and waits; it then
//! copies the output out of the window into the task's block itself. Every result is out of the
//! executor's reach before the executor is given the next item, so a task that takes over its
//! executor can write its own output and nothing else. When the executor dies, the worker dies
//! the same way (same signal or exit status) after noting what the sandbox refused: the
//! zygote then repairs the item as for any worker's death.
//!
//! `handle.rs` is the worker's side (forking, handing over, waiting, mirroring a death);
//! `output.rs` copies what executors print; `child.rs` is the executor process itself.

mod child;
mod handle;
mod output;

pub(super) use handle::{Executor, Executors};

use crate::core::queue::spin_until;
use crate::core::shm::{MSG_LEN, PAGE};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8};
use std::time::{Duration, Instant};

/// What a sandboxed pool's workers need for their executors: the Landlock ruleset and a
/// read-only descriptor of the pool's memory (inherited descriptors), and how many tasks one
/// executor runs before the worker replaces it.
#[derive(Clone, Copy, Debug)]
pub struct SandboxSetup {
    pub ruleset: c_int,
    pub pool: c_int,
    pub tasks_per_process: u64,
}

impl SandboxSetup {
    pub fn keep(&self) -> [c_int; 2] {
        [self.ruleset, self.pool]
    }
}

/// `done` once the executor is confined and waits for items; `FAILED` if it could not be
/// (its message is in `msg`).
pub(super) const READY: u32 = u32::MAX;
pub(super) const FAILED: u32 = u32::MAX - 1;
/// Job flag: a SIGTERM sent for the item before may still be pending; drop it first.
pub(super) const DISCARD_TERM: u32 = 1;

/// The first page of the executor's memfd, shared by the worker and its executor. The worker
/// writes the job and then `job`; the executor writes the result and then `done`. The worker
/// never reads back what it wrote, and checks what it reads: an executor that scribbles here
/// harms only its own item.
#[repr(C, align(64))]
pub(super) struct Mailbox {
    pub(super) job: AtomicU32,
    /// Set to `job` by the executor when it takes the job, before it runs anything of it.
    pub(super) taken: AtomicU32,
    pub(super) done: AtomicU32,
    pub(super) kind: AtomicU32,
    pub(super) flags: AtomicU32,
    pub(super) func: AtomicU64,
    pub(super) ctx: AtomicU64,
    pub(super) input: AtomicU64,
    pub(super) isz: AtomicU64,
    /// The output's size (a variable-size task's room, `max_out`).
    pub(super) osz: AtomicU64,
    pub(super) first: AtomicU64,
    pub(super) count: AtomicU64,
    pub(super) rc: AtomicI32,
    /// 1 + the length of the item's message (`pool_task_error`), 0 for none.
    pub(super) msg_len: AtomicU32,
    /// Bytes a variable-size task wrote.
    pub(super) out_len: AtomicU64,
    /// The system call (number + 1) the sandbox refused, noted by the executor's SIGSYS handler.
    pub(super) refused: AtomicU32,
    /// 1 while the worker sleeps on `wake` (the executor's eventfd) waiting for `done`.
    pub(super) sleeping: AtomicU32,
    pub(super) msg: [AtomicU8; MSG_LEN],
}

const _: () = assert!(std::mem::size_of::<Mailbox>() <= PAGE);

/// One item, as the worker hands it over.
#[derive(Clone, Copy)]
pub(in crate::core::worker) struct Job {
    pub kind: u32,
    pub func: usize,
    pub ctx: *mut c_void,
    /// The item's input, at the address tasks see (read-only in the executor).
    pub input: *mut u8,
    pub isz: usize,
    pub osz: usize,
    pub first: usize,
    pub count: usize,
}

/// Spins a few microseconds while `cond` is false, then yields the CPU between looks (the
/// worker and its executor take turns, often on one CPU) for up to `limit`: true if it became
/// true. A sleep costs tens of microseconds to wake from.
pub(super) fn spin_then_yield(limit: Duration, cond: impl Fn() -> bool) -> bool {
    if spin_until(Duration::from_micros(5), &cond) {
        return true;
    }
    let start = Instant::now();
    while start.elapsed() < limit {
        std::thread::yield_now();
        if cond() {
            return true;
        }
    }
    false
}
