//! Maps: the input is cut into chunks that stream through shared memory with a bounded number
//! in flight, so memory stays bounded however many items there are. `map` drives its chunks
//! from the calling thread, `map_async` from a driver thread.

use super::error::{Error, Result, Status};
use super::heap::Block;
use super::job::{item_error, AsyncResult, MapJob, MapState, Outcome};
use super::pool::{Pool, Shared, WATCH_SLICE};
use super::shm::*;
use super::worker::ItemFn;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Instant;

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
}

struct Chunk {
    slot: u32,
    block: Block,
    lay: BlockLayout,
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
        let job = MapJob::new();
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
        let job = MapJob::new();
        let (sh2, job2) = (sh.clone(), job.clone());
        let spawned = std::thread::Builder::new().name("pool-map".into()).spawn(move || {
            drive(&sh2, a, &job2);
            sh2.driver_finished();
        });
        if let Err(e) = spawned {
            sh.driver_finished();
            return Err(Error::sys("spawning the map driver thread", e));
        }
        Ok(AsyncResult::map(job))
    }
}

fn chunk_size(a: &MapArgs, workers: usize) -> usize {
    if a.chunksize > 0 {
        return a.chunksize;
    }
    let even = a.n.div_ceil(4 * workers);
    let by_bytes = (CHUNK_BYTES / (a.in_size + a.out_size).max(1)).max(1);
    even.min(by_bytes).max(1)
}

/// Runs a whole map and completes `job` with its outcome: OK, or the lowest-index failure.
fn drive(sh: &Arc<Shared>, a: MapArgs, job: &MapJob) {
    let mut first_fail: Option<(usize, Error)> = None;
    let mut fail = |i: usize, e: Error| {
        if first_fail.as_ref().is_none_or(|(j, _)| i < *j) {
            first_fail = Some((i, e));
        }
    };
    let cs = chunk_size(&a, sh.nworkers);
    let window = 2 * sh.nworkers + 2;
    let mut inflight: VecDeque<Chunk> = VecDeque::new();
    let mut next = 0usize;
    while next < a.n || !inflight.is_empty() {
        let seen = sh.view.event_seq();
        while next < a.n && inflight.len() < window {
            let len = cs.min(a.n - next);
            match submit_chunk(sh, &a, next, len, job) {
                Ok(c) => {
                    inflight.push_back(c);
                    next += len;
                }
                Err(_) if job.with(|s| s.detached) => next = a.n, // freed: the caller's buffers may be gone
                Err(e) => {
                    // Nothing more can be submitted: every remaining item fails with this.
                    fail(next, Error::new(e.status, format!("item {next}: {}", e.msg)));
                    next = a.n;
                }
            }
        }
        let before = inflight.len();
        inflight.retain(|c| !collect_chunk(sh, &a, c, job, &mut fail));
        if inflight.len() == before && !inflight.is_empty() {
            sh.view.wait_event(seen, false, Some(Instant::now() + WATCH_SLICE));
            sh.watchdog();
        }
    }
    job.complete(Outcome { err: first_fail.map(|(_, e)| e) });
}

/// Copies a chunk's inputs into shared memory and queues it, unless the handle was freed (the
/// copy runs under the handle's lock, so `async_free` never races with a read of the input).
fn submit_chunk(sh: &Shared, a: &MapArgs, start: usize, len: usize, job: &MapJob) -> Result<Chunk> {
    let lay = BlockLayout::new(len, a.in_size, a.out_size).ok_or_else(|| Error::inval("sizes overflow"))?;
    let src = a.input + start * a.in_size;
    let (slot, block) = sh.submit(K_ITEMS, true, a.func as usize, a.ctx, len, a.in_size, a.out_size, lay, |dst| {
        job.with(|s| {
            if !s.detached {
                // SAFETY: the caller keeps the input readable until the handle is freed, which
                // has not happened (checked under the lock); the chunk lies inside the input.
                unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst, len * a.in_size) }
            }
            !s.detached
        })
    })?;
    Ok(Chunk { slot, block, lay, start, len })
}

/// If chunk `c` has ended, copies its successful results out, reports failures, frees it.
fn collect_chunk(sh: &Shared, a: &MapArgs, c: &Chunk, job: &MapJob, fail: &mut impl FnMut(usize, Error)) -> bool {
    let state = sh.task_state(c.slot);
    if !matches!(state, T_DONE | T_CLOSED) {
        return false;
    }
    let t = sh.view.task(c.slot);
    let ran = if state == T_DONE { c.len } else { t.next.load(Acquire) as usize };
    let pid = t.pid.load(Relaxed);
    let base = sh.view.heap_ptr(c.block.off as u64);
    job.with(|st: &mut MapState| {
        let mut run_start: Option<usize> = None;
        let copy = |from: usize, to: usize| {
            if !st.detached && a.out_size > 0 && to > from {
                // SAFETY: items [from, to) of this chunk succeeded; their outputs are final and
                // the caller's buffer holds n items of out_size bytes (checked at the boundary).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        base.add(c.lay.output + from * a.out_size),
                        (a.out + (c.start + from) * a.out_size) as *mut u8,
                        (to - from) * a.out_size,
                    )
                };
            }
        };
        for i in 0..c.len {
            let rec = if i < ran {
                // SAFETY: records before `ran` are final.
                unsafe { (base as *const Rec).add(i).read() }
            } else {
                Rec { status: Status::Closed as i32, code: 0 }
            };
            if rec.status == 0 {
                run_start.get_or_insert(i);
                continue;
            }
            if let Some(s) = run_start.take() {
                copy(s, i);
            }
            let e = item_error(rec, pid, Some((c.start + i) as u64)).expect("failed record");
            fail(c.start + i, e);
        }
        if let Some(s) = run_start {
            copy(s, c.len);
        }
    });
    sh.free_block(c.block);
    sh.free_slot(c.slot);
    true
}
