//! The worker process: takes tasks from the shared queue and runs them until told to stop.

mod executor;
mod items;
mod outs;
mod relay;
mod task_calls;

use executor::Executors;
pub use executor::SandboxSetup;
pub(crate) use items::cancel_rest;
use outs::NoOut;
use task_calls::*;
pub use task_calls::{note_refusal, out_commit, out_reserve, out_write, set_task_error};

use super::error::Status;
use super::queue::spin_until;
use super::shm::*;
use crate::sys::mem::Guarded;
use crate::sys::{proc, sandbox};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::*};
use std::time::Duration;

/// `int fn(const void *in, void *out, void *ctx)`
pub type ItemFn = unsafe extern "C" fn(*const c_void, *mut c_void, *mut c_void) -> c_int;
/// `int fn(const void *in, void *out, size_t count, size_t first, void *ctx)`: items
/// `first..first+count` of a map in one call.
pub type BlockFn = unsafe extern "C" fn(*const c_void, *mut c_void, usize, usize, *mut c_void) -> c_int;
/// `int fn(const void *in, size_t in_len, void *ctx)`; output through [`out_write`].
pub type VarFn = unsafe extern "C" fn(*const c_void, usize, *mut c_void) -> c_int;
/// `void init(void *arg)`
pub type InitFn = unsafe extern "C" fn(*mut c_void);
/// `int init(void *arg)`: nonzero refuses to start (with a message from `pool_task_error`).
pub type InitExFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// A worker's initializer and its argument.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Plain(InitFn, usize),
    /// One that may fail: the pool is not created (`pool_create` says why).
    Checked(InitExFn, usize),
}

/// Exit code of a worker whose checked initializer refused to start (its code and message are
/// in the header's `Control`).
pub(crate) const EXIT_INIT_REFUSED: i32 = 78;
/// Exit code of a worker that could not apply its sandbox (the reason is recorded like an
/// initializer's refusal).
pub(crate) const EXIT_SANDBOX_FAILED: i32 = 79;
/// Exit code of a worker that could not map the pool's memory a second time, which keeps tasks
/// from writing it (the reason is recorded like an initializer's refusal).
pub(crate) const EXIT_NO_ALIAS: i32 = 80;

/// True in a pool's zygote and workers: pools cannot be nested inside them.
pub static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// This worker's pid, recorded with every item it runs.
static MY_PID: AtomicI32 = AtomicI32::new(0);

pub struct WorkerConfig {
    pub view: View,
    pub index: usize,
    pub zygote: libc::pid_t,
    pub init: Option<Init>,
    pub max_tasks_per_child: u64,
    /// Resident memory (bytes) past which the worker leaves after its task; 0 for none.
    pub max_rss: u64,
    /// The pool's per-item deadline (ns); 0 for none.
    pub timeout_ns: u64,
    /// What a sandboxed worker's executor needs (`executor/`), which it forks once the
    /// initializer ran; None: tasks run in the worker itself.
    pub sandbox: Option<SandboxSetup>,
}

/// Entry of a freshly forked worker. Never returns.
pub fn main(cfg: WorkerConfig) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&cfg))).unwrap_or(70);
    proc::exit_now(code)
}

fn run(cfg: &WorkerConfig) -> i32 {
    IN_WORKER.store(true, Relaxed);
    WORKER_THREAD.with(|w| w.set(true));
    super::killpoint::set_role(super::killpoint::Role::Worker);
    MY_PID.store(proc::getpid(), Relaxed);
    proc::die_with_parent();
    if proc::getppid() != cfg.zygote {
        return 0;
    }
    proc::reset_signals_for_worker();
    // A group of its own: a task's kill(0, sig) reaches only this worker and what it started.
    // (Sandboxed, it cannot leave it: setpgid is refused. Not a session of its own: with
    // scheduler autogroups, each session is scheduled as one group, and workers in sessions
    // of their own took CPU from the host: W3 ran at 0.55-0.77x.)
    proc::own_process_group();
    proc::set_name("pool-worker");
    let me = cfg.view.worker(cfg.index);
    if me.state.compare_exchange(W_STARTING, W_INIT, SeqCst, SeqCst).is_err() {
        park(); // past the start-up bound already (W_HUNG): the zygote's kill is on its way
    }
    // Without the alias under valgrind (it cannot duplicate a mapping: EINVAL), the worker runs
    // as libpool did before: tasks can write the pool's memory (the README says so). Any other
    // failure (an address-space limit fitting the pool's memory once, not twice) stops the
    // worker with a reason: it must not silently give tasks the pool's memory.
    let (v, protected) = match cfg.view.aliased() {
        Ok(v) => (v, true),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => (cfg.view, false),
        Err(e) => {
            let why = format!(
                "{e} (under a limit such as RLIMIT_AS, each worker needs room for the pool's memory twice: set a \
                 smaller shm_size or POOL_SHM_SIZE)"
            );
            cfg.view.record_init_refusal(0, why.as_bytes());
            return EXIT_NO_ALIAS;
        }
    };
    let me = v.worker(cfg.index);
    let ctl = &v.header().control;
    // What the host left open here; the sandbox closes it once the initializer ran.
    let inherited = match cfg.sandbox.map(|_| sandbox::open_fds()) {
        Some(Ok(fds)) => fds,
        Some(Err(e)) => {
            v.record_init_refusal(0, e.as_bytes());
            return EXIT_SANDBOX_FAILED;
        }
        None => Vec::new(),
    };
    let refused = match cfg.init {
        // SAFETY: the initializer is the host's function, valid in this fork of its memory.
        Some(Init::Plain(f, arg)) => unsafe {
            f(arg as *mut c_void);
            0
        },
        Some(Init::Checked(f, arg)) => {
            IN_ITEM.store(true, Relaxed); // pool_task_error may explain a refusal
                                          // SAFETY: as above.
            let rc = unsafe { f(arg as *mut c_void) };
            IN_ITEM.store(false, Relaxed);
            rc
        }
        None => 0,
    };
    if cfg.init.is_some() {
        leave_if_forked();
        proc::flush_stdio(); // what the initializer printed, in order
    }
    let msg = if TASK_ERROR_SET.load(Relaxed) { take_task_error() } else { None }; // never the first task's
    if refused != 0 {
        v.record_init_refusal(refused, msg.as_deref().unwrap_or_default());
        return EXIT_INIT_REFUSED;
    }
    let execs = match cfg.sandbox {
        Some(setup) => {
            let started = sandbox::check_alone()
                .and_then(|()| sandbox::harden(&inherited, &setup.keep()))
                .and_then(|()| Executors::start(&v, setup, v.layout().heap_len, me));
            match started {
                Ok(ex) => {
                    me.task_pid.store(ex.now().pid(), SeqCst);
                    Some(ex)
                }
                Err(e) => {
                    v.record_init_refusal(0, e.as_bytes());
                    return EXIT_SANDBOX_FAILED;
                }
            }
        }
        None => None,
    };
    let task_pid = execs.as_ref().map_or(MY_PID.load(Relaxed), |e| e.now().pid());
    // By CAS: a worker the zygote gave up on (start-up bound) never takes work, so its kill
    // cannot reach a task.
    if me.state.compare_exchange(W_INIT, W_READY, SeqCst, SeqCst).is_err() {
        park();
    }
    ctl.ready.fetch_add(1, SeqCst);
    crate::sys::futex::wake(&ctl.ready, i32::MAX);

    let mut w =
        Worker { cfg, v, protected, seq: 0, out_area: Guarded::default(), window: Guarded::default(), execs, task_pid };
    let mut done: u64 = 0;
    loop {
        if ctl.terminate.load(Acquire) != 0 {
            return 0;
        }
        match v.pop(cfg.index) {
            Some((idx, _)) => {
                w.run_task(idx);
                done += 1;
                if cfg.max_tasks_per_child != 0 && done >= cfg.max_tasks_per_child {
                    return 0;
                }
                // Read only when bounded: /proc costs microseconds per task.
                let rss = || match &w.execs {
                    Some(ex) => proc::resident_bytes_of(ex.now().pid()),
                    None => proc::resident_bytes(),
                };
                if cfg.max_rss != 0 && rss() > cfg.max_rss {
                    return 0; // replaced by a fresh worker: the memory goes back to the system
                }
                if let Err(e) = w.renew_executor_if_due() {
                    v.record_init_refusal(0, e.as_bytes());
                    return EXIT_SANDBOX_FAILED;
                }
            }
            None if ctl.shutdown.load(Acquire) != 0 => return 0,
            None => idle(&v),
        }
    }
}

/// True in a process forked by a task (the pid, kept by the library's fork handler, is not the
/// worker's).
fn forked_child() -> bool {
    proc::getpid() != MY_PID.load(Relaxed)
}

/// A process forked by a task that returned into the worker's code must not take work (it
/// would be a second runner of the same task): it leaves at once, without flushing stdio (its
/// buffers are copies of the worker's).
fn leave_if_forked() {
    if forked_child() {
        proc::exit_silently(0);
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
    kp!(WorkerIdle);
    if q.seq.load(SeqCst) == seen && v.queue_empty() && !stop() {
        // Bounded: a wait the worker missed (or one moved away from it) ends on its own.
        crate::sys::futex::wait(&q.seq, seen, Some(std::time::Instant::now() + Duration::from_secs(1)));
    }
    q.sleepers.fetch_sub(1, SeqCst);
}

/// A worker's running state.
struct Worker<'a> {
    cfg: &'a WorkerConfig,
    /// The pool's memory through the worker's own read-write alias (`View::aliased`).
    v: View,
    /// Whether tasks are kept from writing the pool's memory (false without the alias).
    protected: bool,
    /// Items started so far: `run` names each one uniquely (PROTOCOL.md, invariant K).
    seq: u64,
    /// Private memory, between guard pages, where small outputs are written before they are
    /// copied into the block; and the place of windows onto big output areas.
    out_area: Guarded,
    window: Guarded,
    /// A sandboxed worker's executors, where its tasks run (`executor/`).
    execs: Option<Executors>,
    /// The pid tasks run in (the executor's, or this worker's), recorded with their items.
    task_pid: libc::pid_t,
}

/// What one task needs, read once from its (read-only once queued) description.
struct TaskRun {
    n: u64,
    isz: usize,
    osz: usize,
    /// Item 0's input, at the address tasks see (read-only, or the user's zero-copy buffer).
    input: *mut u8,
    ctx: *mut c_void,
    timeout: u64,
}

impl Worker<'_> {
    fn run_task(&mut self, idx: u32) {
        let (v, w) = (self.v, self.cfg.index);
        let t = v.task(idx);
        let me = v.worker(w);
        kp!(WorkerTaskStart);
        t.pid.store(self.task_pid, Relaxed);
        let flags = t.flags.load(Relaxed);
        let (in_off, out_off) = (t.in_off.load(Relaxed), t.out_off.load(Relaxed));
        let r = TaskRun {
            n: t.n.load(Relaxed),
            isz: t.in_size.load(Relaxed) as usize,
            osz: t.out_size.load(Relaxed) as usize,
            input: v.task_ptr(in_off),
            ctx: t.ctx.load(Relaxed) as *mut c_void,
            timeout: match t.timeout_ns.load(Relaxed) {
                0 => self.cfg.timeout_ns,
                own => own,
            },
        };
        let func = t.func.load(Relaxed) as usize;
        if let Some(ex) = self.execs.as_ref().map(Executors::now) {
            self.relay_task(t, &r, func, out_off, ex);
        } else if t.kind.load(Relaxed) == K_VAR {
            // SAFETY: the host stored a `VarFn` for K_VAR tasks (checked non-NULL at submission).
            let f: VarFn = unsafe { std::mem::transmute(func) };
            crate::sys::mem::populate(r.input, r.isz, false);
            // A big result area is written in place between guard pages (a window); a small
            // one through private memory that `out_commit` copies in. Either way a task that
            // overruns what `out_reserve` gave it faults instead of writing others' data.
            let windowed = self.protected && flags & F_WINDOW != 0;
            let (base, staging) = if windowed {
                let len = r.osz.next_multiple_of(4096);
                let Ok(w) = self.window.window(v.heap_ptr(out_off), len) else { proc::exit_now(72) };
                (w as usize, 0)
            } else if self.protected {
                let Ok(p) = self.out_area.area(r.osz) else { proc::exit_now(72) }; // no address space
                (v.heap_ptr(out_off) as usize, p as usize)
            } else {
                (v.heap_ptr(out_off) as usize, 0)
            };
            self.run_items(t, &r, NoOut, |_, _| {
                let stale = staging != 0 || flags & F_DIRTY != 0;
                let o = VarOut { base, cap: r.osz, len: 0, staging, reserved: None, stale };
                *VAR_OUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
                // SAFETY: calling the user's task on its input, as the contract says.
                let rc = unsafe { f(ptr_or_null(r.input, r.isz), r.isz, r.ctx) };
                leave_if_forked(); // a child the task forked must not write the length of its result
                let len = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner()).take().map_or(0, |o| o.len);
                t.out_len.store(len as u64, Relaxed);
                rc
            });
            if windowed {
                self.window.unwindow();
            }
        } else if t.kind.load(Relaxed) == K_BLOCK {
            // SAFETY: the host stored a `BlockFn` for K_BLOCK tasks (checked non-NULL).
            let f: BlockFn = unsafe { std::mem::transmute(func) };
            let (input, isz, ctx) = (r.input, r.isz, r.ctx);
            let (first, count) = (t.first.load(Relaxed) as usize, t.count.load(Relaxed) as usize);
            // SAFETY: the block's input and output are its one item's (the host sized them).
            let call = move |_: usize, out: *mut c_void| unsafe { f(ptr_or_null(input, isz), out, count, first, ctx) };
            self.run_fixed(t, &r, flags, out_off, call);
        } else {
            // SAFETY: the host stored an `ItemFn` for K_ITEMS tasks (checked non-NULL).
            let f: ItemFn = unsafe { std::mem::transmute(func) };
            let (input, isz, ctx) = (r.input, r.isz, r.ctx);
            let call = move |i: usize, out: *mut c_void| {
                // SAFETY: item i's input lies inside the area the host sized for n items; `out`
                // holds out_size bytes.
                unsafe { f(ptr_or_null(input.wrapping_add(i * isz), isz), out, ctx) }
            };
            self.run_fixed(t, &r, flags, out_off, call);
        }
        proc::flush_stdio(); // what the task printed, before its result is visible
        v.finish(t, running(w), T_DONE);
        kp!(WorkerTaskFinished);
        if flags & F_NOTIFY == 0 {
            self.notify_completion();
        }
        if me.claim.fetch_update(SeqCst, SeqCst, |c| (c & CLAIM_KILL == 0).then_some(CLAIM_NONE)).is_err() {
            park(); // the zygote decided to kill this task's worker: never take more work
        }
        kp!(WorkerClaimReleased);
    }

    /// Makes the pool's event fd readable through the zygote, if the host armed it.
    fn notify_completion(&self) {
        let ctl = &self.v.header().control;
        if ctl.efd_armed.load(Relaxed) != 0 && ctl.efd_pending.swap(1, AcqRel) == 0 {
            proc::kill(self.cfg.zygote, libc::SIGUSR1);
        }
    }
}

fn ptr_or_null(p: *mut u8, size: usize) -> *mut c_void {
    if size == 0 {
        std::ptr::null_mut()
    } else {
        p as *mut c_void
    }
}

/// Waits for the SIGKILL the zygote decided on.
fn park() -> ! {
    loop {
        proc::pause();
    }
}
