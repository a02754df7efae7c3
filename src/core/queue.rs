//! The shared run queue and the wake-up protocol between the host, the workers and the zygote.
//!
//! The queue is a ring of task slot indices behind a futex lock whose value is the owner's tag,
//! so that when a worker dies holding it the zygote can tell, repair and release it. Waiting is
//! adaptive: spin briefly (a wake-up across CPUs costs tens of microseconds), then sleep on a
//! futex; wakers make a system call only when someone sleeps.

use super::shm::*;
use crate::sys::futex;
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

const LOCK_WAITERS: u32 = 1 << 31;
/// Lock owner tags: workers are `1 + index`.
pub(crate) const TAG_HOST: u32 = 0x7fff_0000;
pub(crate) const TAG_ZYGOTE: u32 = 0x7fff_0001;

pub fn worker_tag(i: usize) -> u32 {
    1 + i as u32
}

/// Spins while `cond` is false for up to `limit`; true if it became true.
pub fn spin_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if cond() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return cond();
        }
    }
}

impl View {
    pub fn lock(&self, tag: u32) {
        let l = &self.header().queue.lock;
        if l.compare_exchange(0, tag, Acquire, Relaxed).is_ok() {
            return;
        }
        if spin_until(Duration::from_micros(5), || l.load(Relaxed) == 0)
            && l.compare_exchange(0, tag, Acquire, Relaxed).is_ok()
        {
            return;
        }
        loop {
            let v = l.load(Relaxed);
            if v == 0 {
                // Someone may still sleep: keep the waiters bit so our unlock wakes them.
                if l.compare_exchange(0, tag | LOCK_WAITERS, Acquire, Relaxed).is_ok() {
                    return;
                }
                continue;
            }
            if v & LOCK_WAITERS == 0 && l.compare_exchange(v, v | LOCK_WAITERS, Relaxed, Relaxed).is_err() {
                continue;
            }
            futex::wait(l, v | LOCK_WAITERS, None);
        }
    }

    pub fn unlock(&self) {
        let l = &self.header().queue.lock;
        if l.swap(0, Release) & LOCK_WAITERS != 0 {
            futex::wake(l, 1);
        }
    }

    /// The tag of the current lock owner (0 if free).
    pub fn lock_owner(&self) -> u32 {
        self.header().queue.lock.load(Acquire) & !LOCK_WAITERS
    }

    /// Releases a lock whose owner is dead (zygote only).
    pub fn force_unlock(&self) {
        let l = &self.header().queue.lock;
        l.store(0, Release);
        futex::wake(l, i32::MAX);
    }

    /// Queues task slot `idx` (caller holds no lock).
    pub fn push(&self, idx: u32, tag: u32) {
        self.lock(tag);
        self.push_locked(idx);
        self.unlock();
        self.ring_doorbell();
    }

    pub fn push_locked(&self, idx: u32) {
        let q = &self.header().queue;
        let tail = q.tail.load(Relaxed);
        self.ring(tail).store(idx, Relaxed);
        q.tail.store(tail.wrapping_add(1), Release);
    }

    /// Wakes one idle worker if any sleeps.
    pub fn ring_doorbell(&self) {
        let q = &self.header().queue;
        q.seq.fetch_add(1, SeqCst);
        if q.sleepers.load(SeqCst) > 0 {
            futex::wake(&q.seq, 1);
        }
    }

    pub fn wake_all_workers(&self) {
        let q = &self.header().queue;
        q.seq.fetch_add(1, SeqCst);
        futex::wake(&q.seq, i32::MAX);
    }

    pub fn queue_empty(&self) -> bool {
        let q = &self.header().queue;
        q.head.load(Acquire) == q.tail.load(Acquire)
    }

    /// Takes the next task for worker `w`, recording it as the worker's current task *before*
    /// consuming it, so a death at any point leaves a state the zygote can repair.
    pub fn pop(&self, w: usize) -> Option<u32> {
        let q = &self.header().queue;
        if self.queue_empty() {
            return None;
        }
        self.lock(worker_tag(w));
        let head = q.head.load(Relaxed);
        let got = if head != q.tail.load(Relaxed) {
            let idx = self.ring(head).load(Relaxed);
            self.worker(w).current.store(idx, SeqCst);
            q.head.store(head.wrapping_add(1), SeqCst);
            Some(idx)
        } else {
            None
        };
        self.unlock();
        got
    }

    /// After worker `w` died holding the lock: undo a pop that had not consumed its task yet,
    /// then release the lock.
    pub fn repair_after_death(&self, w: usize) {
        if self.lock_owner() != worker_tag(w) {
            return;
        }
        let q = &self.header().queue;
        let cur = self.worker(w).current.load(SeqCst);
        let head = q.head.load(SeqCst);
        if cur != NONE && head != q.tail.load(SeqCst) && self.ring(head).load(SeqCst) == cur {
            self.worker(w).current.store(NONE, SeqCst); // still queued: not consumed
        }
        self.force_unlock();
    }

    /// Announces a group event (a notify-task completion, a death) to whoever waits for one.
    pub fn signal_event(&self, notify: bool) {
        let e = &self.header().events;
        let waiting = if notify {
            e.notify_waiters.load(SeqCst) + e.any_waiters.load(SeqCst)
        } else {
            e.any_waiters.load(SeqCst)
        };
        if notify || waiting > 0 {
            e.seq.fetch_add(1, SeqCst);
            if waiting > 0 {
                futex::wake(&e.seq, i32::MAX);
            }
        }
    }

    /// Waits for the next group event after `seen` (a value of `events.seq` read before the
    /// caller last checked its condition), at most until `deadline`.
    pub fn wait_event(&self, seen: u32, any: bool, deadline: Option<Instant>) {
        let e = &self.header().events;
        let counter = if any { &e.any_waiters } else { &e.notify_waiters };
        if spin_until(Duration::from_micros(20), || e.seq.load(Acquire) != seen) {
            return;
        }
        counter.fetch_add(1, SeqCst);
        if e.seq.load(SeqCst) == seen {
            futex::wait(&e.seq, seen, deadline);
        }
        counter.fetch_sub(1, SeqCst);
    }

    /// Makes the pool's completion eventfd readable, if the host asked for it.
    pub fn notify_event_fd(&self) {
        let ctl = &self.header().control;
        if ctl.efd_armed.load(Relaxed) != 0 {
            crate::sys::proc::eventfd_signal(ctl.efd);
        }
    }

    pub fn event_seq(&self) -> u32 {
        self.header().events.seq.load(SeqCst)
    }

    /// Moves task `t` from `from` to `to`, keeping the waiter bit. False if it was not in `from`.
    pub fn transition(&self, t: &TaskSlot, from: u32, to: u32) -> bool {
        t.state.fetch_update(AcqRel, Acquire, |s| (s & !WAITER == from).then_some((s & WAITER) | to)).is_ok()
    }

    /// Ends task `t` (from `from`) with a final state, waking host waiters.
    pub fn finish(&self, t: &TaskSlot, from: u32, to: u32) -> bool {
        let Ok(old) = t.state.fetch_update(AcqRel, Acquire, |s| (s & !WAITER == from).then_some(to)) else {
            return false;
        };
        if old & WAITER != 0 {
            futex::wake(&t.state, i32::MAX);
        }
        let chunk = t.flags.load(Relaxed) & F_NOTIFY != 0;
        self.signal_event(chunk);
        if !chunk {
            self.notify_event_fd(); // a map's driver signals once for the whole map
        }
        true
    }
}

/// Waits until task state word `w` holds a final state (DONE or CLOSED), at most until
/// `deadline`. Returns the final state, or None on timeout.
pub fn wait_final(w: &AtomicU32, deadline: Option<Instant>) -> Option<u32> {
    let fin = |s: u32| matches!(s & !WAITER, T_DONE | T_CLOSED).then_some(s & !WAITER);
    if let Some(s) = fin(w.load(Acquire)) {
        return Some(s);
    }
    let spin = match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()).min(Duration::from_micros(30)),
        None => Duration::from_micros(30),
    };
    if spin_until(spin, || fin(w.load(Acquire)).is_some()) {
        return fin(w.load(Acquire));
    }
    loop {
        let s = w.load(Acquire);
        if let Some(f) = fin(s) {
            return Some(f);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if s & WAITER == 0 && w.compare_exchange(s, s | WAITER, AcqRel, Acquire).is_err() {
            continue;
        }
        futex::wait(w, s | WAITER, deadline);
    }
}
