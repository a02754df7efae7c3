//! Results: `AsyncResult` over a single task (collected by whichever host thread looks first)
//! or over a map (filled by its driver).

use super::error::{Error, Status};
use super::heap::Block;
use super::pool::{Shared, Submitted, CORRUPT, WATCH_SLICE, ZYGOTE_DIED};

/// `code` of a CLOSED item whose pool ended because its zygote died.
pub(crate) const CLOSED_ZYGOTE_DIED: i32 = 1;
use super::shm::*;
pub use crate::sys::proc::Exit;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a broken pool runs nothing: its replacement workers keep dying in the initializer, or
/// (`hung`) keep staying in it past the start-up bound.
pub(crate) fn broken(hung: bool) -> String {
    let times = super::zygote::MAX_INIT_FAILURES;
    if hung {
        format!(
            "the pool is broken: its replacement workers keep hanging in the initializer (killed at the start-up \
             bound, start_timeout, {times} times in a row)"
        )
    } else {
        format!("the pool is broken: its workers keep dying in the initializer ({times} times in a row)")
    }
}

/// How a task, or a map's lowest-index failing item, ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub status: Status,
    /// The task's own return code.
    pub code: i32,
    /// The worker that ran it (0 if none did).
    pub pid: i32,
    /// How the worker died, if it died running it.
    pub exit: Option<Exit>,
    /// The item's index, for maps.
    pub item: Option<u64>,
    /// The task's own message (`pool_task_error`).
    pub msg: Option<String>,
}

impl Info {
    pub(crate) fn from_rec(rec: Rec, item: Option<u64>) -> Info {
        let died = matches!(Status::from_i32(rec.status), Status::Crashed | Status::TimedOut | Status::Cancelled)
            && rec.pid != 0;
        Info {
            status: Status::from_i32(rec.status),
            code: rec.code,
            pid: rec.pid,
            exit: died.then(|| Exit::from_raw(rec.wstatus)),
            item,
            msg: None,
        }
    }

    pub(crate) fn of(status: Status) -> Info {
        Info { status, code: 0, pid: 0, exit: None, item: None, msg: None }
    }

    /// How item `item` (None: a single task) ended, from its failure record if it has one.
    pub(crate) fn of_item(rec: Option<Rec>, item: Option<u64>, message: impl FnOnce(&Rec) -> Option<String>) -> Info {
        match rec {
            Some(r) => Info { msg: message(&r), ..Info::from_rec(r, item) },
            None => Info { item, ..Info::of(Status::Ok) },
        }
    }

    /// The error this describes, with a message naming the item, code, worker and signal.
    pub(crate) fn error(&self) -> Option<Error> {
        let what = self.item.map_or(String::new(), |i| format!("item {i}: "));
        let pid = self.pid;
        let msg = match (self.status, self.exit) {
            (Status::Ok, _) => return None,
            (Status::Task, _) => format!("{what}task returned {}", self.code),
            (Status::Crashed, Some(e)) if self.code != 0 => format!(
                "{what}the sandbox refused {}: worker {pid} {e} while running the task",
                crate::sys::sandbox::refused_call(self.code as u32)
            ),
            (Status::Crashed, Some(e)) => format!("{what}worker {pid} {e} while running the task"),
            (Status::TimedOut, _) => format!("{what}task exceeded its timeout; worker {pid} was stopped"),
            (Status::Cancelled, _) => format!("{what}cancelled"),
            (Status::Closed, _) if self.code == CLOSED_ZYGOTE_DIED => format!("{what}{ZYGOTE_DIED}"),
            (Status::Corrupt, _) => format!("{what}{CORRUPT}"),
            (Status::Closed, _) => format!("{what}the pool was terminated before the task finished"),
            (Status::Sys, _) if self.code != 0 => format!(
                "{what}no worker process could be started (fork: {})",
                std::io::Error::from_raw_os_error(self.code)
            ),
            (Status::Crashed, None) if self.pid == 0 => format!("{what}{}", broken(self.code == BROKEN_HUNG)),
            (s, _) => format!("{what}{}", s.describe()),
        };
        let msg = match &self.msg {
            Some(m) => format!("{msg}: {m}"),
            None => msg,
        };
        Some(Error::new(self.status, msg))
    }
}

/// A final result: `err` is None on success; `info` says how it ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub err: Option<Error>,
    pub info: Info,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome { err: None, info: Info::of(Status::Ok) }
    }
    pub(crate) fn from_info(info: Info) -> Outcome {
        Outcome { err: info.error(), info }
    }
    pub fn status(&self) -> Status {
        self.err.as_ref().map_or(Status::Ok, |e| e.status)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

// ---------------------------------------------------------------------------------------------

struct TaskState {
    phase: Phase,
    /// Threads inside `wait` or `cancel`: while any is, the slot is kept (they may be asleep on
    /// its word, or about to cancel it), and the last one out frees it.
    waiters: u32,
    slot_held: bool,
}

enum Phase {
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
    /// Heap offset of the result.
    out_off: u64,
    /// Heap offset of the task's message slots.
    msgs: u64,
    /// Where to copy the result (0: nowhere, it is read in place).
    out: usize,
    /// The task writes its result straight into the caller's `pool_shm_alloc` buffer.
    in_place: bool,
    /// Result size (for variable-size tasks, the most it may write).
    out_size: usize,
    var: bool,
    st: Mutex<TaskState>,
}

impl TaskJob {
    pub(crate) fn new(sh: Arc<Shared>, sub: Submitted, out: *mut u8, out_size: usize, var: bool) -> TaskJob {
        let st = TaskState { phase: Phase::Pending, waiters: 0, slot_held: false };
        TaskJob {
            sh,
            slot: sub.slot,
            block: sub.block,
            out_off: sub.out_off,
            msgs: sub.msgs,
            out: out as usize,
            in_place: !var && out.is_null() && out_size > 0,
            out_size,
            var,
            st: Mutex::new(st),
        }
    }

    /// Collects the result if the task has ended: copies the output to the caller, frees the
    /// slot. Returns the outcome once there is one.
    fn try_collect(&self) -> Option<Outcome> {
        let mut st = lock(&self.st);
        if let Phase::Done(o, _) = &st.phase {
            return Some(o.clone());
        }
        let s = self.sh.task_state(self.slot);
        let var_len = self.sh.view.task(self.slot).out_len.load(std::sync::atomic::Ordering::Acquire) as usize;
        let max_out = if self.var { self.out_size } else { 0 };
        let outcome = match s {
            _ if matches!(s, T_DONE | T_CLOSED) && !self.sh.check_records(self.slot, 1, max_out) => {
                Outcome::from_info(Info::of(Status::Corrupt))
            }
            T_DONE => {
                let t = self.sh.view.task(self.slot);
                // The task is DONE: its records are final.
                let first = self.sh.view.failures(t).first().copied();
                let mut info = Info::of_item(first, None, |r| self.sh.view.message(self.msgs, 1, r));
                if first.is_none() {
                    info.pid = t.pid.load(std::sync::atomic::Ordering::Relaxed);
                }
                let outcome = Outcome::from_info(info);
                if outcome.err.is_none() && !self.var && self.out_size > 0 && self.out != 0 {
                    let src = self.sh.view.heap_ptr(self.out_off);
                    crate::sys::mem::populate(src, self.out_size, false);
                    // SAFETY: the output of a DONE task is final; the caller promised `out` stays
                    // writable for `out_size` bytes until the result is collected.
                    unsafe { std::ptr::copy_nonoverlapping(src, self.out as *mut u8, self.out_size) };
                }
                outcome
            }
            T_CLOSED => Outcome::from_info(Info::from_rec(self.sh.unrun(self.slot, 0), None)),
            _ => return None,
        };
        kp!(HostCollected);
        if !(self.var && outcome.err.is_none()) {
            self.sh.free_block(self.block);
        }
        if st.waiters == 0 {
            self.sh.free_slot(self.slot);
        } else {
            st.slot_held = true;
        }
        st.phase = Phase::Done(outcome.clone(), var_len);
        Some(outcome)
    }

    fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        if let Some(o) = self.try_collect() {
            return Some(o);
        }
        lock(&self.st).waiters += 1;
        let dl = deadline(timeout);
        let r = loop {
            if let Some(o) = self.try_collect() {
                break Some(o);
            }
            if self.sh.wait_task(self.slot, dl).is_none() {
                break self.try_collect();
            }
        };
        self.unpin();
        r
    }

    /// Ends a `waiters` pin on the slot; the last one out frees it if a collect kept it.
    fn unpin(&self) {
        let mut st = lock(&self.st);
        st.waiters -= 1;
        if st.waiters == 0 && st.slot_held {
            st.slot_held = false;
            self.sh.free_slot(self.slot);
        }
    }

    /// Cancels the task (killing its worker if it runs) and waits until it has ended. The slot
    /// is pinned first: another thread may collect the result meanwhile, and an unpinned slot
    /// could then be freed and reused, and the cancel would land on somebody else's task.
    fn cancel(&self) {
        {
            let mut st = lock(&self.st);
            if !matches!(st.phase, Phase::Pending) {
                return;
            }
            st.waiters += 1;
        }
        #[cfg(test)]
        tests::pause(&tests::CANCEL_PAUSE);
        self.sh.cancel_task(self.slot);
        self.wait(None);
        self.unpin();
    }

    /// The bytes a variable-size task wrote (zero copy: they stay in shared memory).
    fn var_output(&self) -> Option<&[u8]> {
        let st = lock(&self.st);
        match &st.phase {
            Phase::Done(o, len) if self.var && o.err.is_none() => {
                let len = (*len).min(self.out_size);
                // SAFETY: the block stays allocated while this handle lives and no one writes
                // it after the task ended.
                Some(unsafe { std::slice::from_raw_parts(self.sh.view.heap_ptr(self.out_off), len) })
            }
            _ => None,
        }
    }
}

impl Drop for TaskJob {
    fn drop(&mut self) {
        if self.sh.check_owner().is_err() {
            return; // a forked child's copy: the slot and block are the owner's to take back
        }
        if self.in_place && matches!(lock(&self.st).phase, Phase::Pending) {
            // The task writes the caller's own shared buffer: it must be stopped, not detached.
            self.cancel();
        }
        let st = lock(&self.st);
        match &st.phase {
            Phase::Done(o, _) => {
                if self.var && o.err.is_none() {
                    self.sh.free_block(self.block);
                }
                if st.slot_held {
                    self.sh.free_slot(self.slot);
                }
            }
            // Detach: nobody copies into the caller's buffer any more; reclaim the slot later.
            Phase::Pending => self.sh.orphan(self.slot, self.block),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The shared state of a map: its driver fills it, handles read it.
pub struct MapJob {
    st: Mutex<MapState>,
    cv: Condvar,
    /// Items ended so far, of `total`.
    pub(crate) done: std::sync::atomic::AtomicUsize,
    total: usize,
}

pub(crate) struct MapState {
    pub done: Option<Outcome>,
    /// Workers write the caller's `out` in place (a `pool_shm_alloc` buffer): freeing the
    /// handle must stop them first.
    pub in_place: bool,
    /// The handle was freed: the driver must not write to the caller's buffers any more.
    pub detached: bool,
    /// Cancellation was asked for: the driver stops feeding and cancels what runs.
    pub cancel: bool,
}

impl MapJob {
    pub(crate) fn new(total: usize, in_place: bool) -> Arc<MapJob> {
        let st = Mutex::new(MapState { done: None, in_place, detached: false, cancel: false });
        Arc::new(MapJob { st, cv: Condvar::new(), done: Default::default(), total })
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
    Map(Arc<MapJob>, Arc<Shared>),
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
    pub(crate) fn map(m: Arc<MapJob>, sh: Arc<Shared>) -> AsyncResult {
        AsyncResult { kind: Kind::Map(m, sh) }
    }
    pub(crate) fn ready(o: Outcome) -> AsyncResult {
        AsyncResult { kind: Kind::Ready(o) }
    }

    /// In any process but the pool's owner (a forked child), the failure every call reports
    /// before it touches a lock or shared memory: they are the owner's.
    fn foreign(&self) -> Option<Outcome> {
        let sh = match &self.kind {
            Kind::Task(t) => &t.sh,
            Kind::Map(_, sh) => sh,
            Kind::Ready(_) => return None,
        };
        let e = sh.check_owner().err()?;
        Some(Outcome { info: Info::of(e.status), err: Some(e) })
    }

    /// Waits up to `timeout` (None: forever) for the result. None if it is not ready.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        if let Some(o) = self.foreign() {
            return Some(o);
        }
        match &self.kind {
            Kind::Task(t) => t.wait(timeout),
            Kind::Map(m, _) => m.wait(timeout),
            Kind::Ready(o) => Some(o.clone()),
        }
    }

    /// The pool and task slot of a task's result, whose state word `finish` wakes when the
    /// WAITER bit is set (None: a map's result, or one ready from the start).
    pub(crate) fn task_slot(&self) -> Option<(&Arc<Shared>, u32)> {
        match &self.kind {
            Kind::Task(t) => Some((&t.sh, t.slot)),
            _ => None,
        }
    }

    /// The pool whose event word is bumped when this result may have become ready (None: it
    /// always is).
    pub(crate) fn pool(&self) -> Option<&Arc<Shared>> {
        match &self.kind {
            Kind::Task(t) => Some(&t.sh),
            Kind::Map(_, sh) => Some(sh),
            Kind::Ready(_) => None,
        }
    }

    /// The outcome if ready, without waiting.
    pub fn poll(&self) -> Option<Outcome> {
        if let Some(o) = self.foreign() {
            return Some(o);
        }
        let o = match &self.kind {
            Kind::Task(t) => t.try_collect(),
            Kind::Map(m, _) => m.with(|s| s.done.clone()),
            Kind::Ready(o) => Some(o.clone()),
        };
        if o.is_none() {
            match &self.kind {
                Kind::Task(t) => t.sh.watchdog_now_and_then(),
                Kind::Map(_, sh) => sh.watchdog_now_and_then(),
                Kind::Ready(_) => {}
            }
        }
        o
    }

    /// The caller lets go of the result while another thread may still hold it (a wait under
    /// way): work writing the caller's shared buffer in place is stopped before this returns, so
    /// the buffer may be reused at once. Other work goes on until the last holder lets go.
    pub fn release(&self) {
        match &self.kind {
            Kind::Task(t) if t.in_place => self.cancel(),
            Kind::Map(m, _) if m.with(|s| s.in_place) => self.cancel(),
            _ => {}
        }
    }

    /// Cancels the work: what has not started is dropped, what runs is killed (its worker is
    /// replaced). Returns once the result is ready; work that had already finished keeps its
    /// own outcome.
    pub fn cancel(&self) {
        if self.foreign().is_some() {
            return;
        }
        match &self.kind {
            Kind::Task(t) => t.cancel(),
            Kind::Map(m, sh) => {
                m.with(|s| s.cancel = true);
                sh.view.signal_event(true); // wake the driver
                m.wait(None);
            }
            Kind::Ready(_) => {}
        }
    }

    /// (items ended, items in all): a map's progress; a single task counts as one item.
    pub fn progress(&self) -> (usize, usize) {
        match &self.kind {
            Kind::Task(_) => (usize::from(self.poll().is_some()), 1),
            Kind::Map(m, _) => (m.done.load(std::sync::atomic::Ordering::Relaxed).min(m.total), m.total),
            Kind::Ready(_) => (0, 0),
        }
    }

    /// The result bytes of a task submitted with `submit_var`, once it succeeded.
    pub fn var_output(&self) -> std::result::Result<&[u8], Error> {
        match &self.kind {
            Kind::Task(t) if t.var => match self.poll() {
                None => Err(Error::new(Status::TimedOut, "the result is not ready yet")),
                Some(Outcome { err: Some(e), .. }) => Err(e),
                Some(_) => Ok(t.var_output().unwrap_or(&[])),
            },
            _ => Err(Error::inval("only results of pool_submit carry variable-size data")),
        }
    }
}

impl Drop for AsyncResult {
    fn drop(&mut self) {
        if let Kind::Map(m, sh) = &self.kind {
            // Detached; if workers write the caller's shared buffer in place, also stopped.
            let stop = || {
                m.with(|s| {
                    s.detached = true;
                    let stop = s.in_place && s.done.is_none();
                    s.cancel |= stop;
                    stop
                })
            };
            if sh.check_owner().is_ok() && stop() {
                // Workers write the caller's shared buffer in place: stop them before returning.
                sh.view.signal_event(true);
                m.wait(None);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::pool::{Options, Pool};
    use std::os::raw::{c_int, c_void};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// Test-only stand-ins for a preemption at a racy instant (a test sets one, the code sleeps).
    pub(crate) static CANCEL_PAUSE: AtomicBool = AtomicBool::new(false);
    pub(crate) static RESERVE_PAUSE: AtomicBool = AtomicBool::new(false);

    pub(crate) fn pause(at: &AtomicBool) {
        if at.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    unsafe extern "C" fn quick(_: *const c_void, _: *mut c_void, _: *mut c_void) -> c_int {
        0
    }
    unsafe extern "C" fn brief(_: *const c_void, _: *mut c_void, _: *mut c_void) -> c_int {
        // SAFETY: plain sleep.
        unsafe { libc::usleep(50_000) };
        0
    }
    unsafe extern "C" fn slow(_: *const c_void, _: *mut c_void, _: *mut c_void) -> c_int {
        // SAFETY: plain sleep.
        unsafe { libc::usleep(300_000) };
        0
    }

    /// Found by review: thread A cancels result X; thread B collects X meanwhile (freeing its
    /// slot) and submits Y, which reuses the slot; A's cancel then landed on Y. The slot is now
    /// pinned for the cancel.
    #[test]
    fn a_cancel_never_lands_on_the_next_task_in_its_slot() {
        let p = Pool::new(1, Options::default()).unwrap();
        let (x, mut y) = (1i64, 0i64);
        // SAFETY: buffers outlive the results (waited for below).
        let rx = unsafe { p.apply_async(quick, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
            .unwrap();
        let t0 = Instant::now(); // X, the pool's first task, is in slot 0
        while p.shared().task_state(0) != crate::core::shm::T_DONE && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (x2, mut y2) = (2i64, 0i64);
        CANCEL_PAUSE.store(true, SeqCst);
        let y_outcome = std::thread::scope(|s| {
            let a = s.spawn(|| rx.cancel()); // sees X pending, then "is preempted"
            std::thread::sleep(Duration::from_millis(50));
            assert!(rx.poll().is_some()); // B collects X
                                          // SAFETY: as above.
            let ry =
                unsafe { p.apply_async(slow, &x2 as *const i64 as *const u8, 8, &mut y2 as *mut i64 as *mut u8, 8, 0) }
                    .unwrap();
            a.join().unwrap();
            ry.wait(None).unwrap()
        });
        CANCEL_PAUSE.store(false, SeqCst);
        assert_eq!(y_outcome.status(), crate::core::Status::Ok, "Y was cancelled: {:?}", y_outcome.err);
    }

    /// Found by review: a submit found the heap full while X ran; X ended and was collected
    /// (its block freed) before the submit looked for running work: it failed with NoMem
    /// although there was room.
    #[test]
    fn a_full_heap_freed_during_the_check_is_not_reported_full() {
        let p = Pool::new(1, Options { shm_size: 16 << 20, ..Options::default() }).unwrap();
        let big = vec![7u8; 10 << 20];
        let (mut y, mut y2) = (0i64, 0i64);
        // SAFETY: buffers outlive the results.
        let rx = unsafe { p.apply_async(brief, big.as_ptr(), big.len(), &mut y as *mut i64 as *mut u8, 8, 0) }.unwrap();
        let y2p = &mut y2 as *mut i64 as usize;
        RESERVE_PAUSE.store(true, SeqCst);
        let second = std::thread::scope(|s| {
            // SAFETY: as above.
            let t =
                s.spawn(|| unsafe { p.apply_async(quick, big.as_ptr(), big.len(), y2p as *mut u8, 8, 0) }.map(drop));
            assert!(rx.wait(None).unwrap().err.is_none()); // X ends; collecting it frees its block
            t.join().unwrap()
        });
        RESERVE_PAUSE.store(false, SeqCst);
        assert!(second.is_ok(), "the second submit failed although X's block was free: {:?}", second.err());
    }

    unsafe extern "C" fn nothing(_: *const c_void, _: usize, _: *mut c_void) -> c_int {
        0
    }

    /// Found by `make test` under load: a stream's first item found the heap full of another
    /// thread's result X; that thread collected X (freeing its block) before the stream looked
    /// for blocks held by others, saw none, and failed as if it waited for itself.
    #[test]
    fn a_feeder_whose_room_was_freed_during_the_check_waits_for_itself_never() {
        use crate::core::stream::{StreamArgs, StreamInput};
        let p = Pool::new(1, Options { shm_size: 16 << 20, ..Options::default() }).unwrap();
        let big = vec![7u8; 10 << 20];
        let mut y = 0i64;
        // SAFETY: buffers outlive the result (waited for below).
        let rx = unsafe { p.apply_async(quick, big.as_ptr(), big.len(), &mut y as *mut i64 as *mut u8, 8, 0) }.unwrap();
        let t0 = Instant::now(); // X, the pool's first task, is in slot 0
        while p.shared().task_state(0) != crate::core::shm::T_DONE && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let item: [usize; 2] = [big.as_ptr() as usize, 8 << 20]; // does not fit beside X
        let args =
            StreamArgs { func: nothing, ctx: 0, ctx_size: 0, max_out: 8, timeout: None, ordered: true, window: 1 };
        RESERVE_PAUSE.store(true, SeqCst);
        let first = std::thread::scope(|s| {
            let t = s.spawn(|| {
                // SAFETY: `item` is one (address, length) pair whose bytes outlive the stream.
                let mut st = unsafe { p.stream(args, StreamInput::Array { items: item.as_ptr() as usize, n: 1 }) }?;
                st.next(Some(Duration::from_secs(60))).map(|i| i.map(|i| i.result.map(drop)))
            });
            std::thread::sleep(Duration::from_millis(100)); // into the stream's pause
            assert!(rx.wait(None).unwrap().err.is_none()); // X collected: its block is free
            t.join().unwrap()
        });
        RESERVE_PAUSE.store(false, SeqCst);
        assert!(matches!(first, Ok(Some(Ok(())))), "the stream's item failed although X's block was free: {first:?}");
    }
}
