//! Submission: task slots, heap blocks, queueing, and taking back what finished work leaves.

use super::*;
use crate::core::queue::TAG_HOST;

impl Shared {
    /// A `ctx` copied with the call must be there and fit in the pool's shared heap.
    pub(crate) fn check_ctx_size(&self, ctx: usize, ctx_size: usize) -> Result<()> {
        if ctx_size > 0 && ctx == 0 {
            return Err(Error::inval("ctx is NULL but ctx_size > 0"));
        }
        if ctx_size > self.heap.capacity() / 2 {
            return Err(Error::new(
                Status::NoMem,
                format!(
                    "ctx_size of {ctx_size} bytes does not fit in the pool's {} byte shared heap",
                    self.heap.capacity()
                ),
            ));
        }
        Ok(())
    }

    /// Takes the queue lock for a host thread. Fails (and ends the pool) if the zygote died
    /// while we waited: a lock held by a dead worker would then never be released.
    pub(crate) fn lock_queue(&self) -> Result<()> {
        if self.view.lock(TAG_HOST, || self.zygote_dead() || self.view.corrupt().is_some()) {
            return Ok(());
        }
        self.watchdog();
        self.check_open(true)?;
        Err(Error::closed(ZYGOTE_DIED))
    }
}

/// What to run: everything about a task but its data.
#[derive(Clone, Copy)]
pub(crate) struct TaskSpec {
    pub kind: u32,
    /// A map chunk: its completion wakes the map's driver, and it may still be submitted
    /// after `close` (the map was accepted before).
    pub map_chunk: bool,
    pub func: usize,
    pub ctx: usize,
    /// Bytes of `ctx` to copy with the task (0: `ctx` is passed as it is).
    pub ctx_size: usize,
    /// `ctx` was checked already (`check_ctx`): at the call, for work submitted over time
    /// (later chunks must not fail for a `ctx` changed after the call); by the root, for a
    /// remote rank's task (its addresses mean nothing here).
    pub ctx_checked: bool,
    pub n: usize,
    pub in_size: usize,
    pub out_size: usize,
    /// Per-item deadline overriding the pool's.
    pub timeout: Option<Duration>,
    /// Heap offsets when the input / output already live in the pool's shared memory.
    pub shm_in: Option<u64>,
    pub shm_out: Option<u64>,
    /// A `K_BLOCK` task's map items: (first index, count).
    pub span: (u64, u64),
}

impl TaskSpec {
    /// The task's sizes under the names its caller gave them, for messages (`in_size` counts
    /// bytes already in shared memory too: the caller passed it).
    fn sizes(&self) -> String {
        let ctx = if self.ctx_size > 0 { format!(" and ctx_size {}", self.ctx_size) } else { String::new() };
        match self.kind {
            K_VAR => format!("in_len {} and max_out {}{ctx}", self.in_size, self.out_size),
            K_BLOCK => {
                let count = self.span.1.max(1) as usize;
                let (i, o) = (self.in_size / count, self.out_size / count);
                format!("a block of {count} items of in_size {i} and out_size {o}{ctx}")
            }
            _ => {
                let items = if self.n == 1 { "1 item".to_string() } else { format!("{} items", self.n) };
                format!("{items} of in_size {} and out_size {}{ctx}", self.in_size, self.out_size)
            }
        }
    }
}

/// A queued task: its slot, its block, where its output goes.
pub(crate) struct Submitted {
    pub slot: u32,
    pub block: Block,
    pub out_off: u64,
    /// Heap offset of the task's message slots.
    pub msgs: u64,
    /// Items queued (fewer than asked when the input ran out).
    pub n: usize,
}

impl Shared {
    /// The heap offset of `[addr, addr+len)` if it lies in this pool's shared heap.
    pub(crate) fn shm_offset(&self, addr: usize, len: usize) -> Option<u64> {
        let cap = self.user_heap.capacity();
        let off = addr.checked_sub(self.view.heap_ptr(cap as u64) as usize)?;
        (len > 0 && off.checked_add(len)? <= cap).then_some((cap + off) as u64)
    }

    /// Allocates a slot and a block, lets `fill` copy the input in (unless it already is in
    /// shared memory), and queues the task. `fill` returns how many of the `spec.n` items it
    /// wrote (fewer shortens the task); with none the task is dropped and this fails with
    /// `Closed`.
    /// Waiting for room in the heap gives up at `deadline` (`TimedOut`).
    pub(crate) fn submit(
        &self,
        spec: TaskSpec,
        deadline: Option<Instant>,
        fill: impl FnOnce(*mut u8) -> usize,
    ) -> Result<Submitted> {
        self.submit_sized(spec, deadline, |p| (fill(p), spec.in_size))
    }

    /// `submit` whose `fill` also says how many input bytes per item it wrote (at most
    /// `spec.in_size`, the room it was given): a variable-size task sees that length.
    pub(crate) fn submit_sized(
        &self,
        spec: TaskSpec,
        deadline: Option<Instant>,
        fill: impl FnOnce(*mut u8) -> (usize, usize),
    ) -> Result<Submitted> {
        let in_bytes = if spec.shm_in.is_some() { 0 } else { spec.in_size };
        let out_bytes = if spec.shm_out.is_some() { 0 } else { spec.out_size };
        self.check_ctx_size(spec.ctx, spec.ctx_size)?;
        let lay = BlockLayout::new(spec.n, in_bytes, out_bytes, spec.ctx_size)
            .ok_or_else(|| Error::inval(format!("sizes overflow: {}", spec.sizes())))?;
        if lay.total > self.heap.capacity() {
            return Err(Error::new(
                Status::NoMem,
                format!(
                    "{} take {} bytes, more than the pool's {} byte shared heap holds",
                    spec.sizes(),
                    lay.total,
                    self.heap.capacity()
                ),
            ));
        }
        self.check_open(spec.map_chunk)?;
        let loader = snapshot::Loader::default();
        self.snapshot.check_func(spec.func, &loader)?;
        if !spec.ctx_checked {
            self.check_ctx_with(spec.ctx, spec.ctx_size, false, &loader)?;
        }
        let timeout_ns = spec.timeout.map_or(0, |d| (d.as_nanos() as u64).max(1));
        if timeout_ns != 0 && self.view.header().control.deadlines.swap(ON, SeqCst) == 0 {
            self.ring_zygote(); // from now on it watches deadlines
        }
        let (slot, block) = self.reserve(lay.total, spec.map_chunk, deadline)?;
        let in_off = spec.shm_in.unwrap_or((block.off + lay.input) as u64);
        let out_off = spec.shm_out.unwrap_or((block.off + lay.output) as u64);
        let input = self.view.heap_ptr(in_off);
        if !block.resident {
            crate::sys::mem::populate(input, in_bytes * spec.n, true); // fresh pages: fault them in at once
        }
        // The block is ours until the task is queued.
        let (n, in_size) = if spec.shm_in.is_some() { (spec.n, spec.in_size) } else { fill(input) };
        let (n, in_size) = (n.min(spec.n), in_size.min(spec.in_size));
        if n == 0 {
            self.free_block(block);
            self.free_slot(slot);
            return Err(Error::closed("nothing left to submit"));
        }
        let ctx = if spec.ctx_size > 0 {
            let dst = self.view.heap_ptr((block.off + lay.ctx) as u64);
            // SAFETY: the caller's ctx is readable for ctx_size bytes (its contract); the block's
            // ctx area holds ctx_size bytes and is ours until the task is queued.
            unsafe { std::ptr::copy_nonoverlapping(spec.ctx as *const u8, dst, spec.ctx_size) };
            dst as usize // the address tasks see too (read-only to them)
        } else {
            spec.ctx
        };
        let msgs = (block.off + lay.msgs) as u64;
        let t = self.view.task(slot);
        t.epoch.store(t.epoch.load(Relaxed).wrapping_add(1), Relaxed); // the host is its only writer
        t.kind.store(spec.kind, Relaxed);
        let mut flags = if spec.map_chunk { F_NOTIFY } else { 0 };
        if block.resident {
            flags |= F_DIRTY;
        }
        if spec.shm_out.is_none() && BlockLayout::window(spec.n, spec.out_size) {
            flags |= F_WINDOW;
        }
        t.flags.store(flags, Relaxed);
        t.func.store(spec.func as u64, Relaxed);
        t.ctx.store(ctx as u64, Relaxed);
        t.ctx_size.store(spec.ctx_size as u64, Relaxed);
        t.msgs.store(msgs, Relaxed);
        t.block.store(block.off as u64, Relaxed);
        t.in_off.store(in_off, Relaxed);
        t.out_off.store(out_off, Relaxed);
        t.n.store(n as u64, Relaxed);
        t.in_size.store(in_size as u64, Relaxed);
        t.out_size.store(spec.out_size as u64, Relaxed);
        t.next.store(0, Relaxed);
        t.first.store(spec.span.0, Relaxed);
        t.count.store(spec.span.1, Relaxed);
        t.out_len.store(0, Relaxed);
        t.pid.store(0, Relaxed);
        t.timeout_ns.store(timeout_ns, Relaxed);
        t.cancelled.store(0, Relaxed);
        t.nfail.store(0, Relaxed);
        // QUEUED before its entry is pushed (invariant Q allows it: no lock holder acts on a
        // QUEUED task that has no entry, and this thread pushes it next).
        t.state.store(T_QUEUED, Release);
        kp!(HostSubmitFilled);
        if let Err(e) = self.lock_queue() {
            self.free_block(block);
            self.free_slot(slot);
            return Err(e);
        }
        kp!(HostPushLocked);
        if self.view.header().control.terminate.load(SeqCst) != 0 {
            // Terminated while we filled the task: its sweep may have passed this slot already
            // (the flag is set before the sweep, so checking it under the lock is enough).
            self.view.unlock();
            self.free_block(block);
            self.free_slot(slot);
            self.check_open(spec.map_chunk)?;
            return Err(Error::closed("the pool was terminated"));
        }
        self.view.push_locked(slot);
        self.view.unlock();
        kp!(HostPushed);
        self.view.ring_doorbell();
        Ok(Submitted { slot, block, out_off, msgs, n })
    }

    /// A free slot and a heap block of `bytes`, waiting for running work to free some if the
    /// pool is full (backpressure). A `feeder` (a map, iterator or stream submitting as room
    /// comes) also waits while other threads hold blocks (their results, which their reading
    /// frees); any other call is told the pool is full (`NoMem`) once nothing runs.
    /// `bytes` must fit in the heap (checked by the caller, whose message names the sizes).
    pub(super) fn reserve(&self, bytes: usize, feeder: bool, deadline: Option<Instant>) -> Result<(u32, Block)> {
        let me = submitter::current();
        let take = || {
            let slot = self.alloc_slot()?;
            let Some(b) = self.heap.alloc(bytes.max(1)) else {
                self.free_slot(slot);
                return None;
            };
            lock(&self.holders).insert(b.off, me);
            Some((slot, b))
        };
        loop {
            let ev = self.view.event_wait(true);
            // Read before the attempt: a free after it shows here (see `frees`).
            let frees = self.frees.load(SeqCst);
            self.reclaim_orphans();
            if let Some(got) = take() {
                return Ok(got);
            }
            #[cfg(test)]
            crate::core::job::tests::pause(&crate::core::job::tests::RESERVE_PAUSE);
            let idle = !self.anything_running();
            // Waiting would be waiting for ourselves: every block that fills the heap is this
            // thread's (a stream or iterator it reads later, results it has not collected), and
            // nothing runs to free any. Blocks only others free are waited for.
            let full = idle && (!feeder || !self.others_hold(me));
            if full && self.frees.load(SeqCst) == frees {
                return Err(if feeder {
                    Error::new(
                        Status::NoMem,
                        "the pool's shared memory is full of results this thread has not read yet (a stream or \
                         iterator it holds, or results it has not collected) and nothing runs: read or free some first",
                    )
                } else {
                    Error::new(
                        Status::NoMem,
                        "the pool's shared memory is full of unclaimed results; free or collect some",
                    )
                });
            }
            if full {
                continue; // something was freed since the attempt: try again
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(Status::TimedOut, "no room in the pool's shared memory yet"));
            }
            let slice = Instant::now() + WATCH_SLICE;
            ev.wait(Some(deadline.map_or(slice, |d| d.min(slice))));
            self.watchdog();
            self.check_open(feeder)?;
        }
    }

    /// A free task slot.
    pub(super) fn alloc_slot(&self) -> Option<u32> {
        let mut s = lock(&self.slots);
        if let Some(i) = s.free.pop() {
            return Some(i);
        }
        (s.fresh < MAX_TASKS).then(|| {
            s.fresh += 1;
            s.fresh - 1
        })
    }

    pub(crate) fn free_slot(&self, slot: u32) {
        self.view.task(slot).state.store(T_FREE, Release);
        lock(&self.slots).free.push(slot);
    }

    pub(crate) fn free_block(&self, b: Block) {
        let heap = if b.off >= self.heap.capacity() {
            &self.user_heap
        } else {
            lock(&self.holders).remove(&b.off);
            &self.heap
        };
        if let Some((off, len)) = heap.free(b) {
            self.map.release(self.view.heap_offset() + off, len);
        }
        self.frees.fetch_add(1, SeqCst);
        self.view.signal_event(false); // wakes calls waiting for room (only if there are some)
    }

    /// Takes back a task whose handle was freed before it ended.
    pub(crate) fn orphan(&self, slot: u32, block: Block) {
        lock(&self.orphans).push((slot, block));
    }

    pub(super) fn reclaim_orphans(&self) {
        let mut o = lock(&self.orphans);
        o.retain(|&(slot, block)| {
            if matches!(self.task_state(slot), T_DONE | T_CLOSED) {
                self.free_block(block);
                self.free_slot(slot);
                false
            } else {
                true
            }
        });
    }

    /// Whether an ended task whose result nobody collected yet was submitted by a thread other
    /// than this one (or the caller this thread submits for): that thread may read it and
    /// free room, so a wait for room can end.
    /// Whether a thread other than `me` holds a task block.
    fn others_hold(&self, me: u32) -> bool {
        lock(&self.holders).values().any(|&t| t != me)
    }

    pub(crate) fn anything_running(&self) -> bool {
        let fresh = lock(&self.slots).fresh;
        (0..fresh).any(|i| matches!(phase(self.view.task(i).state.load(Acquire)), T_QUEUED | T_RUNNING))
    }
}

/// Which thread submits: a number per thread, taken by a map driver thread from the caller it
/// submits for, so that a call waiting for room can tell results it must read itself.
pub(crate) mod submitter {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static ME: Cell<u32> = const { Cell::new(0) };
    }

    pub(crate) fn current() -> u32 {
        ME.with(|m| {
            if m.get() == 0 {
                m.set(NEXT.fetch_add(1, Relaxed).max(1));
            }
            m.get()
        })
    }

    /// Makes this thread submit as `caller` (a map driver, for the thread that started it).
    pub(crate) fn act_for(caller: u32) {
        ME.with(|m| m.set(caller));
    }
}
