//! Iterators (Python's `imap` / `imap_unordered`): results one at a time from a window of
//! chunks, over an array or over input produced on demand by a callback.

use super::error::{Error, Result, Status};
use super::map::{chunk_size, Chunk, ItemOutcomes, MapArgs, CHUNK_BYTES};
use super::pool::{unsubmitted, Pool, Shared, TaskSpec, WATCH_SLICE};
use super::shm::*;
use std::collections::VecDeque;
use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Short of room at the last look: the next wait counts itself among any task's waiters.
    starved: bool,
    /// What a source returned when it failed, reported once after the last result.
    source_error: Option<c_int>,
    /// Why feeding stopped before the input ended (the pool was closed and joined, terminated,
    /// or died): the items never submitted are reported with it after the last result.
    stop: Option<Error>,
    /// Submitted and not yet fully consumed, in submission order.
    chunks: VecDeque<Chunk>,
    /// The copy of `ctx` chunks are given (with `ctx_size`), taken when the iterator started.
    _ctx: Option<Box<[u8]>>,
    /// The chunk being consumed and the position in it.
    /// (and where its failure records have been read up to, so each is read once).
    cur: Option<(Chunk, usize, usize)>,
}

impl Pool {
    /// Starts an iterator over the results of `a.func` on every item (`a.out` is unused).
    ///
    /// # Safety
    /// With `Input::Array`, `a.input` must stay readable for `n * in_size` bytes until the
    /// iterator is dropped; a source must be safe to call with an `in_size`-byte buffer.
    pub unsafe fn imap(&self, a: MapArgs, input: Input, ordered: bool) -> Result<MapIter> {
        let sh = self.shared().clone();
        sh.check_open(false)?;
        let window = 2 * sh.nworkers + 2;
        let chunksize = match input {
            Input::Array => chunk_size(&sh, &a),
            // Unknown length: chunks of at most CHUNK_BYTES, and few enough items that the
            // first results come back soon.
            Input::Source { .. } if a.chunksize == 0 => (CHUNK_BYTES / (a.in_size + a.out_size).max(1)).clamp(1, 1024),
            Input::Source { .. } => a.chunksize,
        };
        let exhausted = matches!(input, Input::Array) && a.n == 0;
        let (a, _ctx) = a.with_ctx_snapshot(&sh)?;
        Ok(MapIter {
            chunksize,
            sh,
            a,
            input,
            ordered,
            window,
            next: 0,
            exhausted,
            starved: false,
            source_error: None,
            stop: None,
            chunks: VecDeque::new(),
            _ctx,
            cur: None,
        })
    }
}

impl MapIter {
    /// The next result, its output copied to `out` (`out_size` bytes) if it succeeded.
    /// `Ok(None)` once every result was returned; `Err(TimedOut)` if none is ready in time.
    ///
    /// # Safety
    /// `out` must be writable for `out_size` bytes.
    pub unsafe fn next(&mut self, out: *mut u8, timeout: Option<Duration>) -> Result<Option<IterItem>> {
        self.sh.check_owner()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(item) = self.take_from_current(out) {
                return Ok(Some(item));
            }
            let sh = Arc::clone(&self.sh); // `ev` borrows it while `self` changes
            let ev = sh.view.event_wait(self.starved);
            // Feeding never waits for room: results already there come first, and reading
            // them is what frees room.
            self.starved = self.feed();
            let done = |c: &Chunk| matches!(self.sh.task_state(c.slot), T_DONE | T_CLOSED);
            let pick = if self.ordered {
                self.chunks.front().is_some_and(done).then_some(0)
            } else {
                self.chunks.iter().position(done)
            };
            if let Some(i) = pick {
                self.cur = self.chunks.remove(i).map(|c| (c, 0, 0));
                continue;
            }
            if self.chunks.is_empty() && self.exhausted {
                if let Some(item) = self.unfed() {
                    return item;
                }
                if let Some(rc) = self.source_error.take() {
                    return Err(Error::new(
                        Status::Task,
                        format!("the input source returned {rc} when asked for item {}", self.next),
                    ));
                }
                return Ok(None);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(Status::TimedOut, "no result is ready yet"));
            }
            let slice = Instant::now() + WATCH_SLICE;
            // Waiting for room, any task's end may make some: wake for all of them (first look
            // again, counted, if this wait was not: event_wait).
            if self.starved == ev.any {
                ev.wait(Some(deadline.map_or(slice, |d| d.min(slice))));
                self.sh.watchdog();
            }
        }
    }

    /// After the last result of a feed that stopped early: each item of an array never
    /// submitted, with its index and the reason; for a source, the reason once.
    fn unfed(&mut self) -> Option<Result<Option<IterItem>>> {
        let e = self.stop.as_ref()?;
        match self.input {
            Input::Array if self.next < self.a.n => {
                let i = self.next;
                self.next += 1;
                Some(Ok(Some(IterItem { index: i, err: Some(Error::new(e.status, format!("item {i}: {}", e.msg))) })))
            }
            Input::Array => None,
            Input::Source { .. } => {
                let e = self.stop.take()?;
                let msg = format!("the input from item {} on was not run: {}", self.next, e.msg);
                Some(Err(Error::new(e.status, msg)))
            }
        }
    }

    /// Submits chunks while fewer than the window are waiting to be consumed, without waiting
    /// for room in the heap: returns true when it stopped for want of room. A pool that takes
    /// no more work ends the input.
    fn feed(&mut self) -> bool {
        while !self.exhausted && self.chunks.len() + usize::from(self.cur.is_some()) < self.window {
            let len = match self.input {
                Input::Array => self.chunksize.min(self.a.n - self.next),
                Input::Source { .. } => self.chunksize,
            };
            let spec = TaskSpec {
                kind: K_ITEMS,
                map_chunk: true,
                func: self.a.func.addr(),
                ctx: self.a.ctx,
                ctx_size: self.a.ctx_size,
                ctx_checked: true,
                n: len,
                in_size: self.a.in_size,
                out_size: self.a.out_size,
                timeout: self.a.timeout,
                shm_in: None,
                shm_out: None,
                span: (0, 0),
            };
            let (start, isz) = (self.next, self.a.in_size);
            let mut ended: Option<c_int> = None;
            let r = self.sh.submit(spec, Some(Instant::now()), |dst| match self.input {
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
                // No room now: what runs (ours or others') frees some as it ends, and ours as
                // it is read.
                Err(e) if e.status == Status::TimedOut => return true,
                Err(e) if e.status == Status::NoMem && !(self.chunks.is_empty() && self.cur.is_none()) => return true,
                Err(e) => {
                    self.stop = Some(unsubmitted(e));
                    self.exhausted = true;
                    break;
                }
            };
            self.chunks.push_back(Chunk {
                slot: sub.slot,
                block: sub.block,
                out_off: Some(sub.out_off),
                start,
                len: sub.n,
                msgs: sub.msgs,
            });
            self.next += sub.n;
            if matches!(self.input, Input::Array) && self.next >= self.a.n {
                self.exhausted = true;
            }
        }
        false
    }

    unsafe fn take_from_current(&mut self, out: *mut u8) -> Option<IterItem> {
        let (c, pos, seen) = self.cur.as_mut()?;
        let i = *pos;
        let mut outcomes = ItemOutcomes::of(&self.sh, c.slot, c.msgs, c.len, i == 0).resume_at(*seen);
        let rec = outcomes.at(i);
        *seen = outcomes.record();
        let info = outcomes.info(rec, (c.start + i) as u64);
        if info.status == Status::Ok && self.a.out_size > 0 {
            let src = self.sh.view.heap_ptr(c.out_off.expect("iterators copy") + (i * self.a.out_size) as u64);
            // SAFETY: the item succeeded, its output is final; `out` holds out_size bytes.
            unsafe { std::ptr::copy_nonoverlapping(src, out, self.a.out_size) };
        }
        let item = IterItem { index: c.start + i, err: info.error() };
        *pos += 1;
        if *pos == c.len {
            let (c, ..) = self.cur.take().expect("current chunk");
            self.sh.free_block(c.block);
            self.sh.free_slot(c.slot);
        }
        Some(item)
    }
}

impl Drop for MapIter {
    /// Work nobody will read is cancelled; its memory is reclaimed once it has stopped.
    fn drop(&mut self) {
        if self.sh.check_owner().is_err() {
            return; // a forked child's copy: the chunks are the owner's
        }
        for c in self.chunks.drain(..).chain(self.cur.take().map(|(c, ..)| c)) {
            self.sh.cancel_task(c.slot);
            self.sh.orphan(c.slot, c.block);
        }
    }
}
