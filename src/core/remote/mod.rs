//! One pool over several processes (MPI ranks): the root's pool has, beside its own workers, a
//! **runner** thread that takes tasks from the shared queue in worker slots of its own (one per
//! task in flight: the credit of each rank) and sends them to the other ranks; each of them
//! runs its tasks in a local pool of its own, so a crash, a timeout or a cancel ends that item
//! alone, exactly as on one machine, and sends the outcome back. Every call on the root's pool
//! works unchanged, because remote work goes through the same task slots as local work.
//!
//! What crosses: a function as (its object's build-id, offset), found again on the other side
//! (`sys::dl`); `ctx` as bytes (copied with `ctx_size`) or as a place in static data; inputs
//! and results as bytes. The transport is the caller's (libpool_mpi gives one on MPI): this
//! module only needs to send a message to a rank and to receive whatever came.

mod rank;
mod root;
mod wire;

pub use rank::serve;
pub use root::create_root;
pub(crate) use root::RunnerHandle;

/// Fails the pool's creation on every rank for `e`, found on this rank before it could take
/// part (bad arguments): the others are in `create_root` or `serve`, which answer it like the
/// HELLO of a rank that could not start, so none is left waiting.
pub fn fail_together(mut t: Box<dyn Transport>, e: crate::core::Error) -> crate::core::Error {
    if t.rank() == t.root() {
        root::refuse(&mut *t, e)
    } else {
        match rank::handshake(&mut *t, Err(&e)) {
            Err(from_root) if from_root.msg.contains(&e.msg) => e,
            Err(from_root) => from_root,
            Ok(()) => e,
        }
    }
}

use std::io;

/// How messages travel. Every call comes from one thread at a time.
pub trait Transport: Send {
    /// This process's rank, the number of ranks, and the root's rank.
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    fn root(&self) -> usize;
    /// Sends a whole message (the transport may cut it into parts).
    fn send(&mut self, to: usize, tag: i32, msg: &[u8]) -> io::Result<()>;
    /// A message that has arrived, if any: (from, tag, bytes). Never blocks for long.
    fn try_recv(&mut self) -> io::Result<Option<(usize, i32, Vec<u8>)>>;
    /// Called once when the pool is done with it (the root's pool destroyed, or serving ended).
    fn release(&mut self) {}
}

/// This machine's name, for messages that say where something ran.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Waits between polls that found nothing (MPI gives nothing to sleep on): yields the CPU for
/// the first millisecond after something happened, so that a stream of calls sees round trips
/// of microseconds; then sleeps 50 µs at a time; after 50 ms of nothing, 1 ms at a time, so that
/// an idle rank costs next to nothing.
pub(crate) struct Backoff(std::time::Instant);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(std::time::Instant::now())
    }
    pub fn reset(&mut self) {
        self.0 = std::time::Instant::now();
    }
    pub fn idle(&mut self) {
        let quiet = self.0.elapsed();
        if quiet < std::time::Duration::from_millis(1) {
            std::thread::yield_now();
        } else if quiet < std::time::Duration::from_millis(50) {
            std::thread::sleep(std::time::Duration::from_micros(50));
        } else {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
