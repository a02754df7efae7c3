//! Streams: variable-size tasks (as `submit`) over an array of buffers or over input produced on
//! demand, with results handed out one at a time, in order or as they complete, from a bounded
//! window (backpressure). Each item is one task: its input is written straight into its block
//! (by the caller's source, or one copy from the caller's buffer), its result is read in place.

use super::error::{Error, Result, Status};
use super::heap::Block;
use super::map::ItemOutcomes;
use super::pool::{unsubmitted, Pool, Shared, TaskSpec, WATCH_SLICE};
use super::shm::*;
use super::worker::VarFn;
use std::collections::VecDeque;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering::Acquire};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `int source(void *buf, size_t cap, size_t *len, size_t index, void *ctx)`: writes item
/// `index` (at most `cap` bytes) and its length; 0 for an item, 1 at the end, else an error.
pub type StreamSourceFn = unsafe extern "C" fn(*mut c_void, usize, *mut usize, usize, *mut c_void) -> c_int;

/// Where a stream's items come from.
#[derive(Clone, Copy)]
pub enum StreamInput {
    /// The address of the caller's `n` (address, length) pairs (C's `{const void *, size_t}`),
    /// readable while the stream lives.
    Array { items: usize, n: usize },
    /// A function called in the consuming thread, writing into shared memory.
    Source { f: StreamSourceFn, ctx: usize, max_in: usize },
}

/// What every item of a stream runs.
#[derive(Clone, Copy)]
pub struct StreamArgs {
    pub func: VarFn,
    pub ctx: usize,
    pub ctx_size: usize,
    pub max_out: usize,
    pub timeout: Option<Duration>,
    pub ordered: bool,
    /// Items submitted and not yet handed out; 0 for automatic.
    pub window: usize,
}

/// One result: the item's index and either its bytes (valid until the next call) or its error.
pub struct StreamItem {
    pub index: usize,
    pub result: std::result::Result<(*const u8, usize), Error>,
}

/// An item submitted, or one that failed before it could be (it is reported in its turn).
struct InFlight {
    index: usize,
    task: Result<Task>,
}

struct Task {
    slot: u32,
    block: Block,
    out_off: u64,
    msgs: u64,
}

pub struct Stream {
    sh: Arc<Shared>,
    a: StreamArgs,
    input: StreamInput,
    window: usize,
    next: usize,
    exhausted: bool,
    /// Short of room at the last look: the next wait counts itself among any task's waiters.
    starved: bool,
    source_error: Option<Error>,
    /// Why feeding stopped before the input ended (see `MapIter`).
    stop: Option<Error>,
    inflight: VecDeque<InFlight>,
    /// The block of the result handed out last: freed at the next call.
    lent: Option<Block>,
    returned: usize,
    /// Set (from any thread) when the stream's handle is freed: a `next` waiting in another
    /// thread gives up instead of handing out a result whose memory is about to go.
    abandoned: Arc<AtomicBool>,
    _ctx: Option<Box<[u8]>>,
}

impl Pool {
    /// Starts a stream of `a.func` over `input`.
    ///
    /// # Safety
    /// An array's buffers must stay readable until the stream is dropped; a source must write
    /// at most `cap` bytes; `ctx` must be readable for `ctx_size` bytes.
    pub unsafe fn stream(&self, a: StreamArgs, input: StreamInput) -> Result<Stream> {
        let sh = self.shared().clone();
        sh.check_open(false)?;
        let snap = super::map::snapshot_ctx(&sh, a.ctx, a.ctx_size, false)?;
        // What can never fit is refused now, not item by item.
        let max_in = match input {
            StreamInput::Source { max_in, .. } => max_in,
            StreamInput::Array { .. } => 0,
        };
        if item_bytes(max_in, a.max_out, a.ctx_size).is_none_or(|b| b > sh.heap.capacity()) {
            let what = match max_in {
                0 => format!("max_out ({} bytes)", a.max_out),
                _ => format!("max_in + max_out ({max_in} + {} bytes)", a.max_out),
            };
            let m = format!("{what}: more than the pool's {} byte shared heap holds", sh.heap.capacity());
            return Err(Error::new(Status::NoMem, m));
        }
        let a = StreamArgs { ctx: snap.as_ref().map_or(a.ctx, |s| s.as_ptr() as usize), ..a };
        let window = if a.window > 0 { a.window } else { 2 * sh.nworkers + 2 };
        Ok(Stream {
            exhausted: matches!(input, StreamInput::Array { n: 0, .. }),
            starved: false,
            sh,
            a,
            input,
            window,
            next: 0,
            source_error: None,
            stop: None,
            inflight: VecDeque::new(),
            lent: None,
            returned: 0,
            abandoned: Arc::new(AtomicBool::new(false)),
            _ctx: snap,
        })
    }
}

impl Stream {
    /// The next result; `Ok(None)` once all were returned, `Err(TimedOut)` if none is ready.
    /// A result's bytes stay valid until the next call or the drop.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<StreamItem>> {
        self.sh.check_owner()?;
        if let Some(b) = self.lent.take() {
            self.sh.free_block(b);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.abandoned.load(Acquire) {
                return Err(Error::inval("the stream was freed while this call waited"));
            }
            let sh = Arc::clone(&self.sh); // `ev` borrows it while `self` changes
            let ev = sh.view.event_wait(self.starved);
            // Feeding never waits for room: results already there come first, and handing
            // them out is what frees room.
            self.starved = self.feed();
            let pick = if self.a.ordered {
                self.inflight.front().is_some_and(|f| self.ended(f)).then_some(0)
            } else {
                self.inflight.iter().position(|f| self.ended(f))
            };
            if let Some(i) = pick {
                let f = self.inflight.remove(i).expect("picked");
                self.returned += 1;
                return Ok(Some(self.collect(f)));
            }
            if self.inflight.is_empty() && self.exhausted {
                if let Some(item) = self.unfed() {
                    self.returned += 1;
                    return Ok(Some(item));
                }
                return match self.source_error.take().or_else(|| self.stop.take()) {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
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

    /// A flag that, once set, makes a waiting `next` return (see `abandoned`).
    pub fn abandon_flag(&self) -> Arc<AtomicBool> {
        self.abandoned.clone()
    }

    /// Items finished (handed out, or ended and waiting to be), and how many there will be (0
    /// while a source has not ended).
    pub fn progress(&self) -> (usize, usize) {
        let finished = self.returned + self.inflight.iter().filter(|f| self.ended(f)).count();
        let total = match self.input {
            StreamInput::Array { n, .. } => n,
            StreamInput::Source { .. } if self.exhausted => self.next,
            StreamInput::Source { .. } => 0,
        };
        (finished, total)
    }

    /// Whether an item has ended (one that could not be submitted has).
    fn ended(&self, f: &InFlight) -> bool {
        f.task.as_ref().map_or(true, |t| matches!(self.sh.task_state(t.slot), T_DONE | T_CLOSED))
    }

    /// How an ended item went; its block is kept (lent) while its bytes are out.
    fn collect(&mut self, f: InFlight) -> StreamItem {
        let t = match f.task {
            Ok(t) => t,
            Err(e) => return StreamItem { index: f.index, result: Err(e) },
        };
        let sh = &self.sh;
        let valid = sh.check_records(t.slot, 1, self.a.max_out);
        let mut outcomes = ItemOutcomes::of(sh, t.slot, t.msgs, 1, false);
        let rec = if valid { outcomes.at(0) } else { Some(Rec { status: Status::Corrupt as i32, ..Rec::default() }) };
        let info = outcomes.info(rec, f.index as u64);
        let len = sh.view.task(t.slot).out_len.load(Acquire) as usize;
        sh.free_slot(t.slot);
        let result = match info.error() {
            Some(e) => {
                sh.free_block(t.block);
                Err(e)
            }
            None => {
                self.lent = Some(t.block);
                Ok((sh.view.heap_ptr(t.out_off) as *const u8, len))
            }
        };
        StreamItem { index: f.index, result }
    }

    /// After the last result of a feed that stopped early: each array item never submitted,
    /// with its index and the reason (a source's reason comes once, as the final error).
    fn unfed(&mut self) -> Option<StreamItem> {
        let e = self.stop.as_ref()?;
        match self.input {
            StreamInput::Array { n, .. } if self.next < n => {
                let i = self.next;
                self.next += 1;
                Some(StreamItem { index: i, result: Err(Error::new(e.status, format!("item {i}: {}", e.msg))) })
            }
            StreamInput::Array { .. } => {
                self.stop = None;
                None
            }
            StreamInput::Source { .. } => {
                let e = self.stop.take()?;
                let msg = format!("the input from item {} on was not run: {}", self.next, e.msg);
                self.stop = Some(Error::new(e.status, msg));
                None
            }
        }
    }

    /// Submits items while fewer than the window are in flight or unread, without waiting for
    /// room in the heap. Returns true when it stopped for want of room (the caller then waits
    /// for any task to end). A pool that takes no more work ends the input.
    fn feed(&mut self) -> bool {
        while !self.exhausted && self.inflight.len() + usize::from(self.lent.is_some()) < self.window {
            let index = self.next;
            let in_cap = match self.input {
                StreamInput::Array { items, .. } => array_item(items, index).1,
                StreamInput::Source { max_in, .. } => max_in,
            };
            if item_bytes(in_cap, self.a.max_out, self.a.ctx_size).is_none_or(|b| b > self.sh.heap.capacity()) {
                // An array item that can never fit fails alone (a source's size was checked).
                let m = format!(
                    "item {index}: its {in_cap} bytes of input and max_out of {} do not fit in the pool's {} byte shared heap",
                    self.a.max_out,
                    self.sh.heap.capacity()
                );
                self.push(index, Err(Error::new(Status::NoMem, m)));
                continue;
            }
            let spec = TaskSpec {
                kind: K_VAR,
                map_chunk: true,
                func: self.a.func as usize,
                ctx: self.a.ctx,
                ctx_size: self.a.ctx_size,
                ctx_checked: true,
                n: 1,
                in_size: in_cap,
                out_size: self.a.max_out,
                timeout: self.a.timeout,
                shm_in: None,
                shm_out: None,
                span: (0, 0),
            };
            let mut ended: Option<std::result::Result<(), Error>> = None;
            let input = self.input;
            let r = self.sh.submit_sized(spec, Some(Instant::now()), |dst| match input {
                StreamInput::Array { items, .. } => {
                    if in_cap > 0 {
                        let src = array_item(items, index).0 as *const u8;
                        // SAFETY: item `index` points to `in_cap` readable bytes (caller's
                        // contract); the block's input area holds `in_cap` bytes.
                        unsafe { std::ptr::copy_nonoverlapping(src, dst, in_cap) };
                    }
                    (1, in_cap)
                }
                StreamInput::Source { f, ctx, max_in } => {
                    let mut len = 0usize;
                    // SAFETY: the block's input area holds `max_in` bytes, ours until queued.
                    let rc = unsafe { f(dst as *mut c_void, max_in, &mut len, index, ctx as *mut c_void) };
                    match rc {
                        0 if len <= max_in => (1, len),
                        0 => {
                            let m =
                                format!("the source gave item {index} a length of {len} bytes, over max_in ({max_in})");
                            ended = Some(Err(Error::inval(m)));
                            (0, 0)
                        }
                        1 => {
                            ended = Some(Ok(()));
                            (0, 0)
                        }
                        rc => {
                            let m = format!("the input source returned {rc} for item {index}");
                            ended = Some(Err(Error::new(Status::Task, m)));
                            (0, 0)
                        }
                    }
                }
            });
            let source_ended = ended.is_some();
            if let Some(end) = ended {
                self.exhausted = true;
                self.source_error = end.err();
            }
            match r {
                Ok(sub) => {
                    let t = Task { slot: sub.slot, block: sub.block, out_off: sub.out_off, msgs: sub.msgs };
                    self.push(index, Ok(t));
                }
                Err(_) if source_ended => break,
                // No room now: what is in flight (ours or others') frees some as it ends.
                Err(e) if e.status == Status::TimedOut => return true,
                // The heap is full of results nobody reads: ours free it as they are read.
                Err(e) if e.status == Status::NoMem && !(self.inflight.is_empty() && self.lent.is_none()) => {
                    return true
                }
                Err(e) => {
                    self.stop = Some(unsubmitted(e));
                    self.exhausted = true;
                    break;
                }
            }
        }
        false
    }

    fn push(&mut self, index: usize, task: Result<Task>) {
        self.inflight.push_back(InFlight { index, task });
        self.next += 1;
        if matches!(self.input, StreamInput::Array { n, .. } if self.next >= n) {
            self.exhausted = true;
        }
    }
}

/// Item `i` (address, length) of the caller's `pool_buf_t` array at `items`.
fn array_item(items: usize, i: usize) -> (usize, usize) {
    // SAFETY: the caller's array holds n pairs of words, readable while the stream lives, and
    // the feed asks only for `i` < n.
    let [data, len] = unsafe { *(items as *const [usize; 2]).add(i) };
    (data, len)
}

/// Heap bytes one item may take, or None if that overflows.
fn item_bytes(in_size: usize, max_out: usize, ctx_size: usize) -> Option<usize> {
    BlockLayout::new(1, in_size, max_out, ctx_size).map(|l| l.total)
}

impl Drop for Stream {
    /// Work nobody will read is cancelled; its memory is reclaimed once it has stopped.
    fn drop(&mut self) {
        if self.sh.check_owner().is_err() {
            return; // a forked child's copy: the tasks are the owner's
        }
        if let Some(b) = self.lent.take() {
            self.sh.free_block(b);
        }
        for t in self.inflight.drain(..).filter_map(|f| f.task.ok()) {
            self.sh.cancel_task(t.slot);
            self.sh.orphan(t.slot, t.block);
        }
    }
}
