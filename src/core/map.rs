//! Maps: the input is cut into chunks that stream through shared memory with a bounded number
//! in flight, so memory stays bounded however many items there are. `map` drives its chunks
//! from the calling thread, `map_async` from a driver thread.

use super::error::{Error, Result, Status};
use super::heap::Block;
use super::job::{AsyncResult, Info, MapJob, MapState, Outcome};
use super::pool::{Pool, Shared, TaskSpec, WATCH_SLICE};
use super::shm::*;
use super::worker::ItemFn;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

/// Bytes of input plus output per chunk when chunking is automatic.
const CHUNK_BYTES: usize = 512 << 10;

/// A map's arguments. Addresses are kept as integers so a driver thread can own them.
#[derive(Clone, Copy)]
pub struct MapArgs {
    pub func: ItemFn,
    pub input: usize,
    pub in_size: usize,
    pub out: usize,
    pub out_size: usize,
    pub n: usize,
    pub ctx: usize,
    /// Items per chunk; 0 for automatic.
    pub chunksize: usize,
    /// Where to write each item's status (`n` i32s), or 0.
    pub statuses: usize,
    /// Per-item deadline overriding the pool's `task_timeout`.
    pub timeout: Option<Duration>,
}


struct Chunk {
    slot: u32,
    block: Block,
    /// Heap offset of the chunk's first output, or None when outputs are written in place
    /// (the caller's `out` is in the pool's shared memory).
    out_off: Option<u64>,
    start: usize,
    len: usize,
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
        let job = MapJob::new(a.n);
        drive(sh, a, &job);
        sh.driver_finished();
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
        let job = MapJob::new(a.n);
        let (sh2, job2) = (sh.clone(), job.clone());
        let spawned = std::thread::Builder::new().name("pool-map".into()).spawn(move || {
            drive(&sh2, a, &job2);
            sh2.driver_finished();
        });
        if let Err(e) = spawned {
            sh.driver_finished();
            return Err(Error::sys("spawning the map driver thread", e));
        }
        Ok(AsyncResult::map(job, sh))
    }
}

/// Items per chunk: about four chunks per worker (as Python), but no more bytes per chunk than
/// keep copies streaming (only bytes that are copied count: buffers in shared memory are not).
fn chunk_size(sh: &Shared, a: &MapArgs) -> usize {
    if a.chunksize > 0 {
        return a.chunksize;
    }
    let even = a.n.div_ceil(4 * sh.nworkers);
    let copied = |addr: usize, size: usize| if sh.shm_offset(addr, a.n * size).is_some() { 0 } else { size };
    let bytes = copied(a.input, a.in_size) + if a.out == 0 { a.out_size } else { copied(a.out, a.out_size) };
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
    while next < a.n || !inflight.is_empty() {
        let seen = sh.view.event_seq();
        let (cancel, detached) = job.with(|s| (s.cancel, s.detached));
        if (cancel || detached) && !cancelled {
            // Stop feeding; what runs is cancelled (a freed map's results have no reader).
            cancelled = true;
            inflight.iter().for_each(|c| sh.cancel_task(c.slot));
            fail_rest(&a, job, &mut first, next, Error::new(Status::Cancelled, "cancelled"));
            next = a.n;
        }
        while next < a.n && inflight.len() < window {
            let len = cs.min(a.n - next);
            match submit_chunk(sh, &a, next, len, job) {
                Ok(c) => {
                    inflight.push_back(c);
                    next += len;
                }
                Err(e) => {
                    // Nothing more can be submitted: every remaining item fails with this.
                    fail_rest(&a, job, &mut first, next, e);
                    next = a.n;
                }
            }
        }
        let before = inflight.len();
        inflight.retain(|c| !collect_chunk(sh, &a, c, job, &mut first));
        if inflight.len() == before && !inflight.is_empty() {
            sh.view.wait_event(seen, false, Some(Instant::now() + WATCH_SLICE));
            sh.watchdog();
        }
    }
    job.complete(first.outcome());
    sh.notify_event_fd();
}

/// Items `[from, n)` will not run: they all end with `e`'s status.
fn fail_rest(a: &MapArgs, job: &MapJob, first: &mut FirstFailure, from: usize, e: Error) {
    if from >= a.n {
        return;
    }
    let info = Info { status: e.status, code: 0, pid: 0, exit: None, item: Some(from as u64) };
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
/// copy runs under the handle's lock, so `async_free` never races with a read of the input).
fn submit_chunk(sh: &Shared, a: &MapArgs, start: usize, len: usize, job: &MapJob) -> Result<Chunk> {
    let src = a.input + start * a.in_size;
    let dst_out = a.out + start * a.out_size;
    let shm_in = sh.shm_offset(src, len * a.in_size);
    let shm_out = sh.shm_offset(dst_out, len * a.out_size);
    let spec = TaskSpec { kind: K_ITEMS, map_chunk: true, func: a.func as usize, ctx: a.ctx, n: len, in_size: a.in_size, out_size: a.out_size, timeout: a.timeout, shm_in, shm_out };
    let sub = sh.submit(spec, |dst| {
        job.with(|s| {
            if s.detached {
                return 0;
            }
            // SAFETY: the caller keeps the input readable until the handle is freed, which has
            // not happened (checked under the lock); the chunk lies inside the input.
            unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst, len * a.in_size) };
            len
        })
    })?;
    Ok(Chunk { slot: sub.slot, block: sub.block, out_off: shm_out.is_none().then_some(sub.out_off), start, len })
}

/// How the items of an ended task ended, asked in item order: None for success, else the
/// failure (recorded, or "never ran" past `ran` when the task was closed or cancelled).
struct ItemOutcomes<'a> {
    fails: &'a [Rec],
    k: usize,
    ran: usize,
    unrun: Status,
}

impl<'a> ItemOutcomes<'a> {
    fn of(sh: &'a Shared, slot: u32, len: usize) -> ItemOutcomes<'a> {
        let t = sh.view.task(slot);
        let ran = if sh.task_state(slot) == T_DONE { len } else { t.next.load(Acquire) as usize };
        ItemOutcomes { fails: sh.view.failures(t), k: 0, ran, unrun: sh.closed_status(slot) }
    }

    /// Item `i` (non-decreasing from call to call).
    fn at(&mut self, i: usize) -> Option<Rec> {
        while self.k < self.fails.len() && (self.fails[self.k].item as usize) < i {
            self.k += 1;
        }
        match self.fails.get(self.k) {
            Some(r) if r.item as usize == i => Some(*r),
            _ if i >= self.ran => Some(Rec { item: i as u64, status: self.unrun as i32, ..Rec::default() }),
            _ => None,
        }
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
    let mut outcomes = ItemOutcomes::of(sh, c.slot, c.len);
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
        if outcomes.all_ok(c.len) {
            copy(0, c.len);
            (0..c.len).for_each(|i| set_status(i, Status::Ok as i32));
            return;
        }
        let mut ok_from: Option<usize> = None;
        for i in 0..c.len {
            let Some(rec) = outcomes.at(i) else {
                set_status(i, Status::Ok as i32);
                ok_from.get_or_insert(i);
                continue;
            };
            set_status(i, rec.status);
            if let Some(s) = ok_from.take() {
                copy(s, i);
            }
            let info = Info::from_rec(rec, Some((c.start + i) as u64));
            first.note(info, info.error().expect("a failed record"));
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

/// One result from an iterator: the item's index and how it ended (its output was copied to the
/// caller's buffer if it succeeded).
pub struct IterItem {
    pub index: usize,
    pub err: Option<Error>,
}

/// `int source(void *item, size_t index, void *ctx)`: writes item `index`; returns 0 for an
/// item, 1 at the end of the input, anything else for an error (which also ends the input).
pub type SourceFn = unsafe extern "C" fn(*mut c_void, usize, *mut c_void) -> c_int;

/// Where an iterator's items come from: the caller's array (`a.input`, `a.n` items), or a
/// function that produces them on demand in the calling thread, straight into shared memory.
#[derive(Clone, Copy)]
pub enum Input {
    Array,
    Source { f: SourceFn, ctx: usize },
}

/// Python's `imap` / `imap_unordered`: results one at a time, with at most a window of chunks
/// submitted and not yet consumed, so a slow consumer holds the producers back (backpressure).
pub struct MapIter {
    sh: Arc<Shared>,
    a: MapArgs,
    input: Input,
    ordered: bool,
    chunksize: usize,
    window: usize,
    next: usize,
    /// The input has no more items (an array's end, or the source said so).
    exhausted: bool,
    /// What a source returned when it failed, reported once after the last result.
    source_error: Option<c_int>,
    /// Submitted and not yet fully consumed, in submission order.
    chunks: VecDeque<Chunk>,
    /// The chunk being consumed and the position in it.
    cur: Option<(Chunk, usize)>,
}

impl Pool {
    /// Starts an iterator over the results of `a.func` on every item (`a.out` is unused).
    ///
    /// # Safety
    /// With `Input::Array`, `a.input` must stay readable for `n * in_size` bytes until the
    /// iterator is dropped; a source must be safe to call with an `in_size`-byte buffer.
    pub unsafe fn imap(&self, a: MapArgs, input: Input, ordered: bool) -> Result<MapIter> {
        let sh = self.shared().clone();
        sh.check_owner()?;
        let window = 2 * sh.nworkers + 2;
        let chunksize = match input {
            Input::Array => chunk_size(&sh, &a),
            // Unknown length: chunks of at most CHUNK_BYTES, and few enough items that the
            // first results come back soon.
            Input::Source { .. } if a.chunksize == 0 => (CHUNK_BYTES / (a.in_size + a.out_size).max(1)).clamp(1, 1024),
            Input::Source { .. } => a.chunksize,
        };
        let exhausted = matches!(input, Input::Array) && a.n == 0;
        Ok(MapIter { chunksize, sh, a, input, ordered, window, next: 0, exhausted, source_error: None, chunks: VecDeque::new(), cur: None })
    }
}

impl MapIter {
    /// The next result, its output copied to `out` (`out_size` bytes) if it succeeded.
    /// `Ok(None)` once every result was returned; `Err(TimedOut)` if none is ready in time.
    ///
    /// # Safety
    /// `out` must be writable for `out_size` bytes.
    pub unsafe fn next(&mut self, out: *mut u8, timeout: Option<Duration>) -> Result<Option<IterItem>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(item) = self.take_from_current(out) {
                return Ok(Some(item));
            }
            let seen = self.sh.view.event_seq();
            self.feed()?;
            let done = |c: &Chunk| matches!(self.sh.task_state(c.slot), T_DONE | T_CLOSED);
            let pick = if self.ordered { self.chunks.front().is_some_and(done).then_some(0) } else { self.chunks.iter().position(done) };
            if let Some(i) = pick {
                self.cur = self.chunks.remove(i).map(|c| (c, 0));
                continue;
            }
            if self.chunks.is_empty() && self.exhausted {
                if let Some(rc) = self.source_error.take() {
                    return Err(Error::new(Status::Task, format!("the input source returned {rc} after item {}", self.next)));
                }
                return Ok(None);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(Status::TimedOut, "no result is ready yet"));
            }
            let slice = Instant::now() + WATCH_SLICE;
            self.sh.view.wait_event(seen, false, Some(deadline.map_or(slice, |d| d.min(slice))));
            self.sh.watchdog();
        }
    }

    /// Submits chunks while fewer than the window are waiting to be consumed.
    fn feed(&mut self) -> Result<()> {
        while !self.exhausted && self.chunks.len() + usize::from(self.cur.is_some()) < self.window {
            let len = match self.input {
                Input::Array => self.chunksize.min(self.a.n - self.next),
                Input::Source { .. } => self.chunksize,
            };
            let spec = TaskSpec { kind: K_ITEMS, map_chunk: true, func: self.a.func as usize, ctx: self.a.ctx, n: len, in_size: self.a.in_size, out_size: self.a.out_size, timeout: self.a.timeout, shm_in: None, shm_out: None };
            let (start, isz) = (self.next, self.a.in_size);
            let mut ended: Option<c_int> = None;
            let r = self.sh.submit(spec, |dst| match self.input {
                Input::Array => {
                    // SAFETY: the caller keeps the input readable while the iterator lives.
                    unsafe { std::ptr::copy_nonoverlapping((self.a.input + start * isz) as *const u8, dst, len * isz) };
                    len
                }
                Input::Source { f, ctx } => (0..len)
                    .position(|j| {
                        // SAFETY: item j's input slot lies inside the chunk's input area.
                        let rc = unsafe { f(dst.add(j * isz) as *mut c_void, start + j, ctx as *mut c_void) };
                        (rc != 0).then(|| ended = Some(rc)).is_some()
                    })
                    .unwrap_or(len),
            });
            if let Some(rc) = ended {
                self.exhausted = true;
                self.source_error = (rc != 1).then_some(rc);
            }
            let sub = match r {
                Ok(sub) => sub,
                Err(_) if ended.is_some() => break, // the source ended at a chunk boundary
                Err(e) => return Err(e),
            };
            self.chunks.push_back(Chunk { slot: sub.slot, block: sub.block, out_off: Some(sub.out_off), start, len: sub.n });
            self.next += sub.n;
            if matches!(self.input, Input::Array) && self.next >= self.a.n {
                self.exhausted = true;
            }
        }
        Ok(())
    }

    unsafe fn take_from_current(&mut self, out: *mut u8) -> Option<IterItem> {
        let (c, pos) = self.cur.as_mut()?;
        let i = *pos;
        let info = match ItemOutcomes::of(&self.sh, c.slot, c.len).at(i) {
            Some(rec) => Info::from_rec(rec, Some((c.start + i) as u64)),
            None => Info { status: Status::Ok, code: 0, pid: 0, exit: None, item: Some((c.start + i) as u64) },
        };
        if info.status == Status::Ok && self.a.out_size > 0 {
            let src = self.sh.view.heap_ptr(c.out_off.expect("iterators copy") + (i * self.a.out_size) as u64);
            // SAFETY: the item succeeded, its output is final; `out` holds out_size bytes.
            unsafe { std::ptr::copy_nonoverlapping(src, out, self.a.out_size) };
        }
        let item = IterItem { index: c.start + i, err: info.error() };
        *pos += 1;
        if *pos == c.len {
            let (c, _) = self.cur.take().expect("current chunk");
            self.sh.free_block(c.block);
            self.sh.free_slot(c.slot);
        }
        Some(item)
    }
}

impl Drop for MapIter {
    /// Work nobody will read is cancelled; its memory is reclaimed once it has stopped.
    fn drop(&mut self) {
        for c in self.chunks.drain(..).chain(self.cur.take().map(|(c, _)| c)) {
            self.sh.cancel_task(c.slot);
            self.sh.orphan(c.slot, c.block);
        }
    }
}
