//! Results: `AsyncResult` over a single task (collected by whichever host thread looks first)
//! or over a map (filled by its driver).

use super::error::{Error, Status};
use super::heap::Block;
use super::pool::{Shared, WATCH_SLICE};
use super::shm::*;
use crate::sys::proc::Exit;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A final result. `err` is None on success.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub err: Option<Error>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome { err: None }
    }
    pub fn status(&self) -> Status {
        self.err.as_ref().map_or(Status::Ok, |e| e.status)
    }
}

/// The error of one item from its record; `pid` is the worker that ran it.
pub(crate) fn item_error(rec: Rec, pid: i32, item: Option<u64>) -> Option<Error> {
    let status = Status::from_i32(rec.status);
    let what = match item {
        Some(i) => format!("item {i}: "),
        None => String::new(),
    };
    let death = |code: i32| if code < 0 { Exit::Signal { sig: -code, core: false } } else { Exit::Code(code) };
    let msg = match status {
        Status::Ok => return None,
        Status::Task => format!("{what}task returned {}", rec.code),
        Status::Crashed => format!("{what}worker {pid} {} while running the task", death(rec.code)),
        Status::TimedOut => format!("{what}task exceeded the pool's task_timeout; worker {pid} was stopped"),
        s => format!("{what}{}", s.describe()),
    };
    Some(Error::new(status, msg))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

// ---------------------------------------------------------------------------------------------

enum TaskState {
    Pending,
    /// Collected; for variable-size tasks the block stays until the handle goes (zero copy),
    /// and the second field is the result's length.
    Done(Outcome, usize),
}

/// One task in a slot.
pub struct TaskJob {
    sh: Arc<Shared>,
    slot: u32,
    block: Block,
    lay: BlockLayout,
    out: usize,
    out_size: usize,
    var: bool,
    st: Mutex<TaskState>,
}

impl TaskJob {
    pub(crate) fn new(sh: Arc<Shared>, slot: u32, block: Block, lay: BlockLayout, out: *mut u8, out_size: usize, var: bool) -> TaskJob {
        TaskJob { sh, slot, block, lay, out: out as usize, out_size, var, st: Mutex::new(TaskState::Pending) }
    }

    /// Collects the result if the task has ended: copies the output to the caller, frees the
    /// slot. Returns the outcome once there is one.
    fn try_collect(&self) -> Option<Outcome> {
        let mut st = lock(&self.st);
        if let TaskState::Done(o, _) = &*st {
            return Some(o.clone());
        }
        let s = self.sh.task_state(self.slot);
        let var_len = self.sh.view.task(self.slot).out_len.load(std::sync::atomic::Ordering::Acquire) as usize;
        let outcome = match s {
            T_DONE => {
                let t = self.sh.view.task(self.slot);
                // SAFETY: the task is DONE: its record is final and no worker writes it again.
                let rec = unsafe { self.sh.view.rec(t, 0).read() };
                let err = item_error(rec, t.pid.load(std::sync::atomic::Ordering::Relaxed), None);
                if err.is_none() && !self.var && self.out_size > 0 {
                    // SAFETY: the output area lies inside the block.
                    let src = unsafe { self.sh.view.heap_ptr(self.block.off as u64).add(self.lay.output) };
                    crate::sys::mem::populate(src, self.out_size, false);
                    // SAFETY: the output of a DONE task is final; the caller promised `out` stays
                    // writable for `out_size` bytes until the result is collected.
                    unsafe { std::ptr::copy_nonoverlapping(src, self.out as *mut u8, self.out_size) };
                }
                Outcome { err }
            }
            T_CLOSED => Outcome { err: Some(Error::closed("the pool was terminated before the task finished")) },
            _ => return None,
        };
        if !(self.var && outcome.err.is_none()) {
            self.sh.free_block(self.block);
        }
        self.sh.free_slot(self.slot);
        *st = TaskState::Done(outcome.clone(), var_len);
        Some(outcome)
    }

    fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        if let Some(o) = self.try_collect() {
            return Some(o);
        }
        if matches!(&*lock(&self.st), TaskState::Pending) {
            self.sh.wait_task(self.slot, deadline(timeout))?;
        }
        self.try_collect()
    }

    fn out_size_var(&self) -> usize {
        self.lay.total - self.lay.output
    }

    /// The bytes a variable-size task wrote (zero copy: they stay in shared memory).
    fn var_output(&self) -> Option<&[u8]> {
        let st = lock(&self.st);
        match &*st {
            TaskState::Done(o, len) if self.var && o.err.is_none() => {
                let len = (*len).min(self.out_size_var());
                // SAFETY: the block stays allocated while this handle lives and no one writes
                // it after the task ended.
                Some(unsafe { std::slice::from_raw_parts(self.sh.view.heap_ptr(self.block.off as u64).add(self.lay.output), len) })
            }
            _ => None,
        }
    }
}

impl Drop for TaskJob {
    fn drop(&mut self) {
        let st = lock(&self.st);
        match &*st {
            TaskState::Done(o, _) => {
                if self.var && o.err.is_none() {
                    self.sh.free_block(self.block);
                }
            }
            // Detach: nobody copies into the caller's buffer any more; reclaim the slot later.
            TaskState::Pending => self.sh.orphan(self.slot, self.block),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The shared state of a map: its driver fills it, handles read it.
pub struct MapJob {
    st: Mutex<MapState>,
    cv: Condvar,
}

pub(crate) struct MapState {
    pub done: Option<Outcome>,
    /// The handle was freed: the driver must not write to the caller's buffer any more.
    pub detached: bool,
}

impl MapJob {
    pub(crate) fn new() -> Arc<MapJob> {
        Arc::new(MapJob { st: Mutex::new(MapState { done: None, detached: false }), cv: Condvar::new() })
    }
    /// Runs `f` with the state locked (the driver copies results under it).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut MapState) -> R) -> R {
        f(&mut lock(&self.st))
    }
    pub(crate) fn complete(&self, o: Outcome) {
        lock(&self.st).done = Some(o);
        self.cv.notify_all();
    }
    fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let dl = deadline(timeout);
        let mut st = lock(&self.st);
        loop {
            if let Some(o) = &st.done {
                return Some(o.clone());
            }
            let slice = match dl {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => WATCH_SLICE,
            };
            if slice.is_zero() {
                return None;
            }
            st = self.cv.wait_timeout(st, slice).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

// ---------------------------------------------------------------------------------------------

enum Kind {
    Task(TaskJob),
    Map(Arc<MapJob>),
    Ready(Outcome),
}

/// Python's `AsyncResult`.
pub struct AsyncResult {
    kind: Kind,
}

impl AsyncResult {
    pub(crate) fn task(t: TaskJob) -> AsyncResult {
        AsyncResult { kind: Kind::Task(t) }
    }
    pub(crate) fn map(m: Arc<MapJob>) -> AsyncResult {
        AsyncResult { kind: Kind::Map(m) }
    }
    pub(crate) fn ready(o: Outcome) -> AsyncResult {
        AsyncResult { kind: Kind::Ready(o) }
    }

    /// Waits up to `timeout` (None: forever) for the result. None if it is not ready.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        match &self.kind {
            Kind::Task(t) => t.wait(timeout),
            Kind::Map(m) => m.wait(timeout),
            Kind::Ready(o) => Some(o.clone()),
        }
    }

    /// The outcome if ready, without waiting.
    pub fn poll(&self) -> Option<Outcome> {
        match &self.kind {
            Kind::Task(t) => t.try_collect(),
            Kind::Map(m) => m.with(|s| s.done.clone()),
            Kind::Ready(o) => Some(o.clone()),
        }
    }

    /// The result bytes of a task submitted with `submit_var`, once it succeeded.
    pub fn var_output(&self) -> std::result::Result<&[u8], Error> {
        match &self.kind {
            Kind::Task(t) if t.var => match self.poll() {
                None => Err(Error::new(Status::TimedOut, "the result is not ready yet")),
                Some(Outcome { err: Some(e) }) => Err(e),
                Some(_) => Ok(t.var_output().unwrap_or(&[])),
            },
            _ => Err(Error::inval("only results of pool_submit carry variable-size data")),
        }
    }
}

impl Drop for AsyncResult {
    fn drop(&mut self) {
        if let Kind::Map(m) = &self.kind {
            m.with(|s| s.detached = true);
        }
    }
}
