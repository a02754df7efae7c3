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
/// How long a lock waiter sleeps before it checks again (and asks `give_up`).
const LOCK_SLICE: Duration = Duration::from_millis(20);
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
    /// Takes the queue lock, waiting as long as it takes unless `give_up` says otherwise (it is
    /// asked every few milliseconds while waiting; then the lock is not taken and this returns
    /// false). Waiters sleep with a timeout and unlock wakes them all, so a waiter killed after
    /// its wake-up never strands the others.
    pub fn lock(&self, tag: u32, mut give_up: impl FnMut() -> bool) -> bool {
        let l = &self.header().queue.lock;
        if l.compare_exchange(0, tag, Acquire, Relaxed).is_ok() {
            return true;
        }
        if spin_until(Duration::from_micros(5), || l.load(Relaxed) == 0)
            && l.compare_exchange(0, tag, Acquire, Relaxed).is_ok()
        {
            return true;
        }
        loop {
            let v = l.load(Relaxed);
            if v == 0 {
                // Others may still sleep: keep the waiters bit so our unlock wakes them.
                if l.compare_exchange(0, tag | LOCK_WAITERS, Acquire, Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            if v & LOCK_WAITERS == 0 && l.compare_exchange(v, v | LOCK_WAITERS, Relaxed, Relaxed).is_err() {
                continue;
            }
            futex::wait(l, v | LOCK_WAITERS, Some(Instant::now() + LOCK_SLICE));
            if give_up() {
                return false;
            }
        }
    }

    /// Takes the lock only if it is free now.
    pub fn try_lock(&self, tag: u32) -> Result<(), u32> {
        let l = &self.header().queue.lock;
        l.compare_exchange(0, tag, Acquire, Relaxed).map(|_| ()).map_err(|v| v & !LOCK_WAITERS)
    }

    pub fn unlock(&self) {
        let l = &self.header().queue.lock;
        if l.swap(0, Release) & LOCK_WAITERS != 0 {
            futex::wake(l, i32::MAX);
        }
    }

    /// The tag of the current lock owner (0 if free).
    pub fn lock_owner(&self) -> u32 {
        self.header().queue.lock.load(Acquire) & !LOCK_WAITERS
    }

    /// Sleeps until the lock word changes from `seen` or a short while passes (the zygote,
    /// which must not sleep long while a lock owner may be dead).
    pub fn wait_lock_change(&self, seen: u32) {
        let l = &self.header().queue.lock;
        if seen != 0 && l.compare_exchange(seen, seen | LOCK_WAITERS, Relaxed, Relaxed).is_ok() {
            futex::wait(l, seen | LOCK_WAITERS, Some(Instant::now() + Duration::from_millis(1)));
        }
    }

    /// Releases a lock whose owner is dead (zygote only).
    pub fn force_unlock(&self) {
        let l = &self.header().queue.lock;
        l.store(0, Release);
        futex::wake(l, i32::MAX);
    }

    /// Queues task `idx` whose state the caller just made QUEUED (caller holds the lock).
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

    /// Whether the queue indices are further apart than the ring holds (overwritten memory).
    /// Safe without the lock: `head` is read on both sides of `tail`, so a pop and a push
    /// between two reads can never make the queue look longer than the ring, or shorter than
    /// empty. While `head` keeps moving the queue is in use and is not judged.
    pub fn queue_overrun(&self) -> bool {
        let q = &self.header().queue;
        for _ in 0..16 {
            let head = q.head.load(Acquire);
            let tail = q.tail.load(Acquire);
            if q.head.load(Acquire) == head {
                return tail.wrapping_sub(head) > MAX_TASKS;
            }
        }
        false
    }

    /// Worker `w` takes the next task: claims it (`claim`, then RUNNING(w)) before consuming
    /// its entry, all under the lock, so a death at any step leaves a state `repair_pop` undoes
    /// or completes (PROTOCOL.md). Returns the task's slot and epoch.
    pub fn pop(&self, w: usize) -> Option<(u32, u32)> {
        if self.queue_empty() {
            return None;
        }
        self.lock(worker_tag(w), || false);
        kp!(WorkerPopLocked);
        let q = &self.header().queue;
        let me = self.worker(w);
        let head = q.head.load(Relaxed);
        let mut got = None;
        if head != q.tail.load(Relaxed) {
            let idx = self.ring(head).load(Relaxed);
            if idx < MAX_TASKS {
                let t = self.task(idx);
                let epoch = t.epoch.load(Acquire);
                // Plain stores: the zygote reads them only once this worker is dead.
                me.claim.store(claim_word(idx, epoch), Release);
                me.progress.store(2 * t.next.load(Acquire), Release);
                kp!(WorkerPopClaimed);
                if self.transition(t, T_QUEUED, running(w)) {
                    got = Some((idx, epoch));
                }
                kp!(WorkerPopRunning);
            }
            q.head.store(head.wrapping_add(1), Release);
            kp!(WorkerPopAdvanced);
            if got.is_none() {
                me.claim.store(CLAIM_NONE, Release); // not a queued task (Q broken): skip the entry
            }
        }
        self.unlock();
        got
    }

    /// Worker `w` died holding the lock (zygote only): undo a pop that had not consumed its
    /// entry yet (the task stays queued, untouched), then release the lock. A pop that had
    /// consumed it leaves a RUNNING(w) task, which the death handler treats like any other.
    pub fn repair_pop(&self, w: usize) {
        let me = self.worker(w);
        let c = me.claim.load(SeqCst);
        if c != CLAIM_NONE {
            let (idx, _) = claim_parts(c);
            let q = &self.header().queue;
            let head = q.head.load(SeqCst);
            let at_head = head != q.tail.load(SeqCst) && self.ring(head).load(SeqCst) == idx;
            if at_head && idx < MAX_TASKS {
                let t = self.task(idx);
                if phase(t.state.load(SeqCst)) == T_QUEUED || self.transition(t, running(w), T_QUEUED) {
                    me.claim.store(CLAIM_NONE, SeqCst);
                }
            }
        }
        self.force_unlock();
    }

    /// Removes queued task `idx` from the ring and ends it CLOSED (cancelled before it ran).
    /// Caller holds the lock. False if it was not queued.
    pub fn remove_queued(&self, idx: u32) -> bool {
        let t = self.task(idx);
        if phase(t.state.load(Acquire)) != T_QUEUED {
            return false;
        }
        let q = &self.header().queue;
        let head = q.head.load(Relaxed);
        let tail = q.tail.load(Relaxed);
        let Some(pos) = (0..tail.wrapping_sub(head).min(MAX_TASKS))
            .map(|k| head.wrapping_add(k))
            .find(|&p| self.ring(p).load(Relaxed) == idx)
        else {
            return false;
        };
        // Entries before it move up one place; the queue keeps its order.
        let mut p = pos;
        while p != head {
            let prev = p.wrapping_sub(1);
            self.ring(p).store(self.ring(prev).load(Relaxed), Relaxed);
            p = prev;
        }
        q.head.store(head.wrapping_add(1), SeqCst);
        self.finish(t, T_QUEUED, T_CLOSED)
    }

    /// Announces a group event (a notify-task completion, a death) to whoever waits for one.
    pub fn signal_event(&self, notify: bool) {
        let e = &self.header().events;
        let waiting = if notify {
            // Saturating: a header a task overwrote must not panic the host (the pool then
            // finds itself corrupt and ends).
            e.notify_waiters.load(SeqCst).saturating_add(e.any_waiters.load(SeqCst))
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

    /// Starts a wait for group events: counted first among the threads that any task's end must
    /// wake (if `any`), then the word read, so that a task ending after the read either bumps
    /// the word or finds this thread counted (PROTOCOL.md, "Sleeping until a result is ready").
    /// Look at what you wait for after this call, then `wait` if it is not there yet. Without
    /// `any`, only the ends of `F_NOTIFY` tasks (which always bump the word) are waited for.
    pub fn event_wait(&self, any: bool) -> EventWait<'_> {
        let e = &self.header().events;
        if any {
            e.any_waiters.fetch_add(1, SeqCst);
        }
        EventWait { e, any, seen: e.seq.load(SeqCst) }
    }

    /// Moves task `t` from state `from` (phase and owner) to `to`, keeping the waiter bit.
    /// False if it was not in `from`.
    pub fn transition(&self, t: &TaskSlot, from: u32, to: u32) -> bool {
        t.state.fetch_update(AcqRel, Acquire, |s| (s & !WAITER == from).then_some((s & WAITER) | to)).is_ok()
    }

    /// Wakes host threads waiting for task `t` (after a state change made without waking them).
    pub fn wake_task(&self, t: &TaskSlot) {
        futex::wake(&t.state, i32::MAX);
        self.signal_event(t.flags.load(Relaxed) & F_NOTIFY != 0);
    }

    /// Ends task `t` (from `from`) with a final state, waking host waiters. The final state is
    /// stored SeqCst, before `signal_event` reads the waiter counters: a thread that counted
    /// itself and then looked at the task either sees it final or is seen (wake.rs).
    pub fn finish(&self, t: &TaskSlot, from: u32, to: u32) -> bool {
        let Ok(old) = t.state.fetch_update(SeqCst, Acquire, |s| (s & !WAITER == from).then_some(to)) else {
            return false;
        };
        if old & WAITER != 0 {
            futex::wake(&t.state, i32::MAX);
        }
        self.signal_event(t.flags.load(Relaxed) & F_NOTIFY != 0);
        true
    }
}

/// Waits until task state word `w` holds a final state (DONE or CLOSED), at most until
/// `deadline`. Returns the final state, or None on timeout.
pub fn wait_final(w: &AtomicU32, deadline: Option<Instant>) -> Option<u32> {
    let fin = |s: u32| matches!(phase(s), T_DONE | T_CLOSED).then_some(phase(s));
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

/// A host thread's wait for the next group event (`View::event_wait`); uncounted on drop.
pub struct EventWait<'a> {
    e: &'a Events,
    /// Counted in `any_waiters` since the start (else only while asleep, in `notify_waiters`).
    pub any: bool,
    seen: u32,
}

impl EventWait<'_> {
    /// Returns once the word moved past the value read at the start, or at `deadline`: a short
    /// spin, then yields (leaving the CPU to workers on a small machine), then the futex.
    pub fn wait(&self, deadline: Option<Instant>) {
        let (e, seen) = (self.e, self.seen);
        if spin_until(Duration::from_micros(2), || e.seq.load(Acquire) != seen) {
            return;
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_micros(20) {
            std::thread::yield_now();
            if e.seq.load(Acquire) != seen {
                return;
            }
        }
        // F_NOTIFY ends always bump the word: counting just before the futex's own check of it
        // only decides whether they also wake.
        if !self.any {
            e.notify_waiters.fetch_add(1, SeqCst);
        }
        if e.seq.load(SeqCst) == seen {
            futex::wait(&e.seq, seen, deadline);
        }
        if !self.any {
            e.notify_waiters.fetch_sub(1, SeqCst);
        }
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        if self.any {
            self.e.any_waiters.fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::mem::Mapping;
    use std::sync::atomic::AtomicBool;

    /// A pop and a push between a checker's two reads of the queue indices once made a busy
    /// pool look overwritten ("the queue indices"), and the zygote ended it: a kill storm in CI
    /// found it. The check must hold however the reads interleave with lock holders.
    #[test]
    fn a_busy_queue_never_looks_overwritten() {
        let layout = Layout::new(1, 0, 1 << 21);
        let m = Mapping::new_anon_shared(layout.total).unwrap();
        // SAFETY: a fresh zeroed mapping of the layout's size, alive until the end of the test.
        let v = unsafe { View::new(m.base(), layout) };
        let stop = AtomicBool::new(false);
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                let q = &v.header().queue;
                while !stop.load(Relaxed) {
                    for _ in 0..2 {
                        v.lock(TAG_HOST, || false);
                        v.push_locked(0);
                        v.unlock();
                    }
                    for _ in 0..2 {
                        v.lock(TAG_HOST, || false);
                        q.head.store(q.head.load(Relaxed).wrapping_add(1), Release);
                        v.unlock();
                    }
                }
            });
            let _stop = StopOnDrop(&stop); // also when a check fails
            let t0 = Instant::now();
            let mut checks = 0u64;
            while t0.elapsed() < Duration::from_millis(500) {
                assert_eq!(v.corrupt(), None, "after {checks} checks");
                checks += 1;
            }
        });
    }
}
