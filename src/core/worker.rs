//! The worker process: takes tasks from the shared queue and runs them until told to stop.

use super::error::Status;
use super::queue::spin_until;
use super::shm::*;
use crate::sys::proc;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
use std::sync::Mutex;
use std::time::Duration;

/// `int fn(const void *in, void *out, void *ctx)`
pub type ItemFn = unsafe extern "C" fn(*const c_void, *mut c_void, *mut c_void) -> c_int;
/// `int fn(const void *in, size_t in_len, void *ctx)`; output through [`out_write`].
pub type VarFn = unsafe extern "C" fn(*const c_void, usize, *mut c_void) -> c_int;
/// `void init(void *arg)`
pub type InitFn = unsafe extern "C" fn(*mut c_void);

/// True in a pool's zygote and workers: pools cannot be nested inside them.
pub static IN_WORKER: AtomicBool = AtomicBool::new(false);
/// This worker's pid, recorded with every item it runs.
static MY_PID: AtomicI32 = AtomicI32::new(0);

/// The output buffer of the variable-size task being run in this worker.
struct VarOut {
    base: usize,
    cap: usize,
    len: usize,
}
static VAR_OUT: Mutex<Option<VarOut>> = Mutex::new(None);

/// Appends to the running variable-size task's result.
pub fn out_write(data: &[u8]) -> Result<(), (Status, String)> {
    // Checked first so the host never takes a lock its forks could inherit held.
    if !IN_WORKER.load(Relaxed) {
        return Err((Status::Inval, "pool_out_write called outside a worker".into()));
    }
    let mut g = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = g.as_mut() else {
        return Err((Status::Inval, "pool_out_write called outside a task submitted with pool_submit".into()));
    };
    if data.len() > o.cap - o.len {
        return Err((Status::NoMem, format!("result would exceed the task's max_out of {} bytes", o.cap)));
    }
    crate::sys::mem::populate((o.base + o.len) as *const u8, data.len(), true);
    // SAFETY: [base+len, base+len+data.len()) lies inside the task's output region (checked
    // above), which this worker alone writes while the task runs.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (o.base + o.len) as *mut u8, data.len()) };
    o.len += data.len();
    Ok(())
}

pub struct WorkerConfig {
    pub view: View,
    pub index: usize,
    pub zygote: libc::pid_t,
    pub init: Option<(InitFn, usize)>,
}

/// Entry of a freshly forked worker. Never returns.
pub fn main(cfg: WorkerConfig) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&cfg))).unwrap_or(70);
    proc::exit_now(code)
}

fn run(cfg: &WorkerConfig) -> i32 {
    IN_WORKER.store(true, Relaxed);
    MY_PID.store(proc::getpid(), Relaxed);
    proc::die_with_parent();
    if proc::getppid() != cfg.zygote {
        return 0;
    }
    proc::reset_signals_for_worker();
    proc::set_name("pool-worker");
    let v = cfg.view;
    let me = v.worker(cfg.index);
    let ctl = &v.header().control;
    if let Some((f, arg)) = cfg.init {
        // SAFETY: the initializer is the host's function, valid in this fork of its memory.
        unsafe { f(arg as *mut c_void) };
        // SAFETY: flush whatever the initializer printed, in order.
        unsafe { libc::fflush(std::ptr::null_mut()) };
    }
    me.state.store(W_READY, SeqCst);
    ctl.ready.fetch_add(1, SeqCst);
    crate::sys::futex::wake(&ctl.ready, i32::MAX);

    let mut done: u64 = 0;
    let max = ctl.max_tasks_per_child;
    loop {
        if ctl.terminate.load(Acquire) != 0 {
            return 0;
        }
        match v.pop(cfg.index) {
            Some(idx) => {
                run_task(&v, cfg.index, idx);
                done += 1;
                if max != 0 && done >= max {
                    return 0;
                }
                if ctl.max_rss != 0 && proc::resident_bytes() > ctl.max_rss {
                    return 0; // replaced by a fresh worker: the memory goes back to the system
                }
            }
            None if ctl.shutdown.load(Acquire) != 0 => return 0,
            None => idle(&v),
        }
    }
}

/// Waits for work: spin a little (a sleeping worker costs tens of microseconds to wake), then
/// sleep on the queue's futex. Past the first microseconds the spin yields the CPU at each
/// round, so a host thread copying the next chunk on this CPU is not starved by a waiting worker.
fn idle(v: &View) {
    let q = &v.header().queue;
    let ctl = &v.header().control;
    let seen = q.seq.load(SeqCst);
    let stop = || ctl.shutdown.load(Relaxed) != 0 || ctl.terminate.load(Relaxed) != 0;
    let ready = || !v.queue_empty() || stop();
    if spin_until(Duration::from_micros(5), ready) {
        return;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_micros(50) {
        std::thread::yield_now();
        if ready() {
            return;
        }
    }
    q.sleepers.fetch_add(1, SeqCst);
    if q.seq.load(SeqCst) == seen && v.queue_empty() && !stop() {
        crate::sys::futex::wait(&q.seq, seen, None);
    }
    q.sleepers.fetch_sub(1, SeqCst);
}

fn run_task(v: &View, w: usize, idx: u32) {
    let t = v.task(idx);
    let me = v.worker(w);
    if !v.transition(t, T_QUEUED, T_RUNNING) {
        me.current.store(NONE, SeqCst);
        return;
    }
    t.pid.store(proc::getpid(), Relaxed);
    let n = t.n.load(Relaxed);
    let (isz, osz) = (t.in_size.load(Relaxed) as usize, t.out_size.load(Relaxed) as usize);
    let (input, output) = (v.heap_ptr(t.in_off.load(Relaxed)), v.heap_ptr(t.out_off.load(Relaxed)));
    let ctx = t.ctx.load(Relaxed) as *mut c_void;
    let timeout = match t.timeout_ns.load(Relaxed) {
        0 => v.header().control.timeout_ns,
        own => own,
    };
    let ptr_or_null = |p: *mut u8, size: usize| if size == 0 { std::ptr::null_mut() } else { p as *mut c_void };
    if t.cancelled.load(Relaxed) != 0 {
        cancel_rest(v, t, t.next.load(Acquire));
    } else if t.kind.load(Relaxed) == K_VAR {
        // SAFETY: the host stored a `VarFn` for K_VAR tasks (checked non-NULL at submission).
        let f: VarFn = unsafe { std::mem::transmute(t.func.load(Relaxed) as usize) };
        crate::sys::mem::populate(input, isz, false);
        *VAR_OUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(VarOut { base: output as usize, cap: osz, len: 0 });
        if timeout != 0 {
            me.deadline.store(proc::monotonic_ns() + timeout, SeqCst);
        }
        // SAFETY: calling the user's task on its input, as the contract says.
        let rc = unsafe { f(ptr_or_null(input, isz), isz, ctx) };
        me.deadline.store(0, SeqCst);
        let len = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner()).take().map_or(0, |o| o.len);
        t.out_len.store(len as u64, Relaxed);
        record(v, t, 0, rc);
    } else {
        // SAFETY: the host stored an `ItemFn` for K_ITEMS tasks.
        let f: ItemFn = unsafe { std::mem::transmute(t.func.load(Relaxed) as usize) };
        let mut i = t.next.load(Acquire);
        while i < n {
            if t.cancelled.load(Relaxed) != 0 {
                cancel_rest(v, t, i);
                break;
            }
            if timeout != 0 {
                me.deadline.store(proc::monotonic_ns() + timeout, SeqCst);
            }
            // SAFETY: item i's input and output lie inside the areas the host sized for n items.
            let rc = unsafe {
                f(ptr_or_null(input.add(i as usize * isz), isz), ptr_or_null(output.add(i as usize * osz), osz), ctx)
            };
            record(v, t, i, rc);
            i += 1;
        }
        me.deadline.store(0, SeqCst);
    }
    // SAFETY: flush what the task printed before its result is visible, so output stays in order.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    v.finish(t, T_RUNNING, T_DONE);
    me.current.store(NONE, SeqCst);
}

fn record(v: &View, t: &TaskSlot, i: u64, rc: c_int) {
    if rc != 0 {
        v.push_failure(
            t,
            Rec { item: i, status: Status::Task as i32, code: rc, pid: MY_PID.load(Relaxed), wstatus: 0 },
        );
    }
    t.next.store(i + 1, Release);
}

/// Ends items `[from, n)` of a cancelled task without running them (the runner owns the task).
pub(crate) fn cancel_rest(v: &View, t: &TaskSlot, from: u64) {
    let n = t.n.load(Relaxed);
    for i in from..n {
        v.push_failure(t, Rec { item: i, status: Status::Cancelled as i32, ..Rec::default() });
    }
    t.next.store(n, Release);
}
