//! Maps: the input is cut into chunks that stream through shared memory with a bounded number
//! in flight, so memory stays bounded however many items there are. `map` drives its chunks
//! from the calling thread, `map_async` from a driver thread.

use super::error::{Error, Result, Status};
use super::heap::Block;
use super::job::{AsyncResult, Info, MapJob, MapState, Outcome};
use super::pool::{unsubmitted, Pool, Shared, TaskSpec, WATCH_SLICE};
use super::shm::*;
use super::worker::{BlockFn, ItemFn};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of input plus output per chunk when chunking is automatic.
pub(super) const CHUNK_BYTES: usize = 512 << 10;

/// What a map runs: a function per item, or per block of consecutive items.
#[derive(Clone, Copy)]
pub enum MapFn {
    Items(ItemFn),
    Blocks(BlockFn),
}

impl MapFn {
    pub(super) fn addr(self) -> usize {
        match self {
            MapFn::Items(f) => f as usize,
            MapFn::Blocks(f) => f as usize,
        }
    }
}

/// A map's arguments. Addresses are kept as integers so a driver thread can own them.
#[derive(Clone, Copy)]
pub struct MapArgs {
    pub func: MapFn,
    pub input: usize,
    pub in_size: usize,
    pub out: usize,
    pub out_size: usize,
    pub n: usize,
    pub ctx: usize,
    /// Bytes of `ctx` copied with every chunk (0: `ctx` is passed as it is).
    pub ctx_size: usize,
    /// Items per chunk; 0 for automatic.
    pub chunksize: usize,
    /// Where to write each item's status (`n` i32s), or 0.
    pub statuses: usize,
    /// Per-item deadline overriding the pool's `task_timeout`.
    pub timeout: Option<Duration>,
    /// A copied `ctx` may point only into memory workers share (a C++ loop body's captures).
    pub shared_pointers_only: bool,
}

impl MapArgs {
    /// With `ctx_size`, every item must see `ctx` as it was at the call, while chunks are
    /// submitted over time: copy it now; chunks copy from the snapshot, which the caller keeps
    /// while the map runs.
    pub(super) fn with_ctx_snapshot(self, sh: &Shared) -> Result<(MapArgs, Option<Box<[u8]>>)> {
        let snap = snapshot_ctx(sh, self.ctx, self.ctx_size, self.shared_pointers_only)?;
        let ctx = snap.as_ref().map_or(self.ctx, |s| s.as_ptr() as usize);
        Ok((MapArgs { ctx, ..self }, snap))
    }
}

/// Checks `ctx` at the call (`Shared::check_ctx`; chunks are not checked again) and takes a
/// copy of its `ctx_size` bytes (None when nothing is to be copied): calls that submit over
/// time copy from it, so every item sees `ctx` as it was at the call.
pub(super) fn snapshot_ctx(
    sh: &Shared,
    ctx: usize,
    ctx_size: usize,
    shared_pointers_only: bool,
) -> Result<Option<Box<[u8]>>> {
    sh.check_ctx_size(ctx, ctx_size)?;
    sh.check_ctx(ctx, ctx_size, shared_pointers_only)?;
    if ctx_size == 0 {
        return Ok(None);
    }
    let mut snap = Vec::new();
    snap.try_reserve_exact(ctx_size)
        .map_err(|_| Error::new(Status::NoMem, format!("no memory for a copy of ctx ({ctx_size} bytes)")))?;
    // SAFETY: the caller's ctx is readable for ctx_size bytes (its contract; NULL was refused).
    snap.extend_from_slice(unsafe { std::slice::from_raw_parts(ctx as *const u8, ctx_size) });
    Ok(Some(snap.into_boxed_slice()))
}

pub(super) struct Chunk {
    pub(super) slot: u32,
    pub(super) block: Block,
    /// Heap offset of the chunk's first output, or None when outputs are written in place
    /// (the caller's `out` is in the pool's shared memory).
    pub(super) out_off: Option<u64>,
    pub(super) start: usize,
    pub(super) len: usize,
    /// Heap offset of the task's message slots.
    pub(super) msgs: u64,
}

impl Pool {
    /// Applies `a.func` to every item and blocks until all are done.
    ///
    /// # Safety
    /// `a.input` must be readable for `n * in_size` bytes and `a.out` writable for
    /// `n * out_size` bytes for the duration of the call; `a.func` must be a valid `pool_fn`.
    pub unsafe fn map(&self, a: MapArgs) -> Result<()> {
        let sh = self.shared();
        sh.driver_started()?;
        let (a, _ctx) = match a.with_ctx_snapshot(sh) {
            Ok(x) => x,
            Err(e) => {
                sh.life.driver_finished();
                return Err(e);
            }
        };
        let job = MapJob::new(a.n, false);
        drive(sh, a, &job);
        sh.life.driver_finished();
        let o = job.with(|s| s.done.clone()).expect("driver completes the job");
        o.err.map_or(Ok(()), Err)
    }

    /// Like [`Pool::map`] but returns at once; a driver thread feeds the chunks.
    ///
    /// # Safety
    /// As for `map`, until the result is ready or freed.
    pub unsafe fn map_async(&self, a: MapArgs) -> Result<AsyncResult> {
        let sh = self.shared().clone();
        if a.n == 0 {
            sh.check_owner()?;
            return Ok(AsyncResult::ready(Outcome::ok()));
        }
        sh.driver_started()?;
        let job = MapJob::new(a.n, sh.shm_offset(a.out, a.n * a.out_size).is_some());
        let (a, ctx) = match a.with_ctx_snapshot(&sh) {
            Ok(x) => x,
            Err(e) => {
                sh.life.driver_finished();
                return Err(e);
            }
        };
        let (sh2, job2, life) = (sh.clone(), job.clone(), sh.life.clone());
        let caller = super::pool::submitter::current();
        let spawned = crate::sys::thread::spawn("pool-map", move || {
            super::pool::submitter::act_for(caller);
            let _ctx = ctx; // chunks copy from it as they go
            drive(&sh2, a, &job2);
            drop(sh2);
            life.driver_finished();
        });
        if let Err(e) = spawned {
            sh.life.driver_finished();
            return Err(Error::sys("spawning the map driver thread", e));
        }
        Ok(AsyncResult::map(job, sh))
    }
}

/// Items per chunk: about four chunks per worker (as Python), but no more bytes per chunk than
/// keep copies streaming (only bytes that are copied count: buffers in shared memory are not).
pub(super) fn chunk_size(sh: &Shared, a: &MapArgs) -> usize {
    if a.chunksize > 0 {
        return a.chunksize;
    }
    let even = a.n.div_ceil(4 * sh.nworkers);
    let copied = |addr: usize, size: usize| if sh.shm_offset(addr, a.n * size).is_some() { 0 } else { size };
    let out = if a.out == 0 { a.out_size } else { copied(a.out, a.out_size) };
    let bytes = copied(a.input, a.in_size).saturating_add(out); // absurd sizes are refused at submission
    let by_bytes = CHUNK_BYTES.checked_div(bytes).map_or(usize::MAX, |c| c.max(1));
    even.min(by_bytes).max(1)
}

/// The lowest-index failure of a map so far.
#[derive(Default)]
struct FirstFailure(Option<(u64, Error, Info)>);

impl FirstFailure {
    fn note(&mut self, info: Info, err: Error) {
        let i = info.item.unwrap_or(0);
        if self.0.as_ref().is_none_or(|(j, _, _)| i < *j) {
            self.0 = Some((i, err, info));
        }
    }
    fn outcome(self) -> Outcome {
        match self.0 {
            None => Outcome::ok(),
            Some((_, err, info)) => Outcome { err: Some(err), info },
        }
    }
}

/// Runs a whole map and completes `job` with its outcome: OK, or the lowest-index failure.
fn drive(sh: &Arc<Shared>, a: MapArgs, job: &MapJob) {
    let mut first = FirstFailure::default();
    let cs = chunk_size(sh, &a);
    let window = 2 * sh.nworkers + 2;
    let mut inflight: VecDeque<Chunk> = VecDeque::new();
    let mut next = 0usize;
    let mut cancelled = false;
    let mut starved = false;
    while next < a.n || !inflight.is_empty() {
        // Counted among any task's waiters from the start once short of room (event_wait).
        let ev = sh.view.event_wait(starved);
        let (cancel, detached) = job.with(|s| (s.cancel, s.detached));
        if (cancel || detached) && !cancelled {
            // Stop feeding; what runs is cancelled (a freed map's results have no reader).
            cancelled = true;
            inflight.iter().for_each(|c| sh.cancel_task(c.slot));
            fail_rest(&a, job, &mut first, next, Error::new(Status::Cancelled, "cancelled"));
            next = a.n;
        }
        starved = false;
        while next < a.n && inflight.len() < window {
            let len = cs.min(a.n - next);
            // Never wait for room here: ended chunks are collected below, which frees theirs.
            match submit_chunk(sh, &a, next, len, job, Some(Instant::now())) {
                Ok(c) => {
                    inflight.push_back(c);
                    next += len;
                }
                // No room now: what runs (ours or others') frees some as it ends.
                Err(e) if e.status == Status::TimedOut || (e.status == Status::NoMem && !inflight.is_empty()) => {
                    starved = true;
                    break;
                }
                Err(e) => {
                    // Nothing more can be submitted: every remaining item fails with this.
                    fail_rest(&a, job, &mut first, next, unsubmitted(e));
                    next = a.n;
                }
            }
        }
        let before = inflight.len();
        inflight.retain(|c| !collect_chunk(sh, &a, c, job, &mut first));
        // Waiting for room, any task's end may make some: wake for all of them (first look
        // again, counted, if this wait was not).
        if inflight.len() == before && (!inflight.is_empty() || starved) && starved == ev.any {
            ev.wait(Some(Instant::now() + WATCH_SLICE));
            sh.watchdog();
        }
    }
    job.complete(first.outcome());
    sh.view.signal_event(false); // wakes threads sleeping until one of their results is ready (wake.rs)
    sh.notify_event_fd();
}

/// Items `[from, n)` will not run: they all end with `e`'s status.
fn fail_rest(a: &MapArgs, job: &MapJob, first: &mut FirstFailure, from: usize, e: Error) {
    if from >= a.n {
        return;
    }
    let info = Info { item: Some(from as u64), ..Info::of(e.status) };
    first.note(info, Error::new(e.status, format!("item {from}: {}", e.msg)));
    job.done.fetch_add(a.n - from, Relaxed);
    job.with(|st| {
        if st.detached || a.statuses == 0 {
            return;
        }
        for i in from..a.n {
            // SAFETY: the caller's statuses array holds n entries and is ours until the handle
            // is freed (checked: not detached, under the lock).
            unsafe { (a.statuses as *mut i32).add(i).write(e.status as i32) };
        }
    });
}

/// Copies a chunk's inputs into shared memory and queues it, unless the handle was freed (the
/// copy runs under the handle's lock, so `pool_async_free` never races with a read of the input).
fn submit_chunk(
    sh: &Shared,
    a: &MapArgs,
    start: usize,
    len: usize,
    job: &MapJob,
    deadline: Option<Instant>,
) -> Result<Chunk> {
    let src = a.input + start * a.in_size;
    let dst_out = a.out + start * a.out_size;
    let shm_in = sh.shm_offset(src, len * a.in_size);
    let shm_out = sh.shm_offset(dst_out, len * a.out_size);
    // A block is one item of its task, whose input and output are the block's.
    let (kind, n, in_size, out_size, span) = match a.func {
        MapFn::Items(_) => (K_ITEMS, len, a.in_size, a.out_size, (0, 0)),
        MapFn::Blocks(_) => (K_BLOCK, 1, len * a.in_size, len * a.out_size, (start as u64, len as u64)),
    };
    let spec = TaskSpec {
        kind,
        map_chunk: true,
        func: a.func.addr(),
        ctx: a.ctx,
        ctx_size: a.ctx_size,
        ctx_checked: true,
        n,
        in_size,
        out_size,
        timeout: a.timeout,
        shm_in,
        shm_out,
        span,
    };
    let sub = sh.submit(spec, deadline, |dst| {
        job.with(|s| {
            if s.detached {
                return 0;
            }
            // SAFETY: the caller keeps the input readable until the handle is freed, which has
            // not happened (checked under the lock); the chunk lies inside the input.
            unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst, len * a.in_size) };
            n
        })
    })?;
    Ok(Chunk {
        slot: sub.slot,
        block: sub.block,
        out_off: shm_out.is_none().then_some(sub.out_off),
        start,
        len,
        msgs: sub.msgs,
    })
}

/// How the items of an ended task ended, asked in item order: None for success, else the
/// failure (recorded, or "never ran" past `ran` when the task was closed or cancelled).
pub(super) struct ItemOutcomes<'a> {
    sh: &'a Shared,
    /// The task's message slots and items.
    msgs: u64,
    len: usize,
    fails: &'a [Rec],
    k: usize,
    ran: usize,
    unrun: Rec,
}

impl<'a> ItemOutcomes<'a> {
    /// `check`: validate the records first (once per chunk); once any chunk failed the check,
    /// no result of the pool is trusted.
    pub(super) fn of(sh: &'a Shared, slot: u32, msgs: u64, len: usize, check: bool) -> ItemOutcomes<'a> {
        let t = sh.view.task(slot);
        let valid = if check { sh.check_records(slot, len, 0) } else { !sh.corrupt.load(Acquire) };
        if !valid {
            let corrupt = Rec { status: Status::Corrupt as i32, ..Rec::default() };
            return ItemOutcomes { sh, msgs, len, fails: &[], k: 0, ran: 0, unrun: corrupt };
        }
        // Items before `next` have ended (a DONE task has ended them all); the rest never ran.
        let ran = (t.next.load(Acquire) as usize).min(len);
        ItemOutcomes { sh, msgs, len, fails: sh.view.failures(t), k: 0, ran, unrun: sh.unrun(slot, 0) }
    }

    /// Resumes reading the failure records at record `k` (from an earlier `record()`).
    pub(super) fn resume_at(self, k: usize) -> Self {
        ItemOutcomes { k, ..self }
    }

    /// How many failure records have been read.
    pub(super) fn record(&self) -> usize {
        self.k
    }

    /// Item `i` (non-decreasing from call to call).
    pub(super) fn at(&mut self, i: usize) -> Option<Rec> {
        while self.k < self.fails.len() && (self.fails[self.k].item as usize) < i {
            self.k += 1;
        }
        match self.fails.get(self.k) {
            Some(r) if r.item as usize == i => Some(*r),
            _ if i >= self.ran => Some(Rec { item: i as u64, ..self.unrun }),
            _ => None,
        }
    }

    /// How an item ended (`rec` from `at`), with the task's message if it gave one.
    pub(super) fn info(&self, rec: Option<Rec>, item: u64) -> Info {
        Info::of_item(rec, Some(item), |r| self.sh.view.message(self.msgs, self.len, r))
    }

    /// True when every item succeeded (the common case: one bulk copy, no per-item work).
    fn all_ok(&self, len: usize) -> bool {
        self.fails.is_empty() && self.ran >= len
    }
}

/// If chunk `c` has ended: copies its successful results and every item's status out, notes
/// failures, frees it. Returns whether it had ended.
fn collect_chunk(sh: &Shared, a: &MapArgs, c: &Chunk, job: &MapJob, first: &mut FirstFailure) -> bool {
    let state = sh.task_state(c.slot);
    if !matches!(state, T_DONE | T_CLOSED) {
        return false;
    }
    // The task's items: the chunk's, or one for a whole block; `span` gives the chunk items
    // each covers.
    let blocks = matches!(a.func, MapFn::Blocks(_));
    let units = if blocks { 1 } else { c.len };
    let span = |u: usize| if blocks { (0, c.len) } else { (u, u + 1) };
    let mut outcomes = ItemOutcomes::of(sh, c.slot, c.msgs, units, true);
    job.with(|st: &mut MapState| {
        let write = !st.detached;
        let copy = |from: usize, to: usize| {
            let Some(out_off) = c.out_off else { return }; // written in place
            if write && to > from {
                // SAFETY: items [from, to) of this chunk succeeded; their outputs are final and
                // the caller's buffer holds n items of out_size bytes (checked at the boundary).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        sh.view.heap_ptr(out_off).add(from * a.out_size),
                        (a.out + (c.start + from) * a.out_size) as *mut u8,
                        (to - from) * a.out_size,
                    )
                };
            }
        };
        let set_status = |i: usize, s: i32| {
            if write && a.statuses != 0 {
                // SAFETY: the statuses array holds n entries (checked at the boundary).
                unsafe { (a.statuses as *mut i32).add(c.start + i).write(s) };
            }
        };
        if outcomes.all_ok(units) {
            copy(0, c.len);
            if a.statuses != 0 {
                (0..c.len).for_each(|i| set_status(i, Status::Ok as i32));
            }
            return;
        }
        let mut ok_from: Option<usize> = None;
        for u in 0..units {
            let (lo, hi) = span(u);
            let Some(rec) = outcomes.at(u) else {
                (lo..hi).for_each(|i| set_status(i, Status::Ok as i32));
                ok_from.get_or_insert(lo);
                continue;
            };
            (lo..hi).for_each(|i| set_status(i, rec.status));
            if let Some(s) = ok_from.take() {
                copy(s, lo);
            }
            let info = outcomes.info(Some(rec), (c.start + lo) as u64);
            let err = info.error().expect("a failed record");
            first.note(info, err);
        }
        if let Some(s) = ok_from {
            copy(s, c.len);
        }
    });
    sh.free_block(c.block);
    sh.free_slot(c.slot);
    job.done.fetch_add(c.len, Relaxed);
    true
}
