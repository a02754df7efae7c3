//! The host side of a pool: creation, submission, lifecycle. Submitting threads write tasks
//! straight into shared memory and the workers take them from there; no host thread sits in
//! the middle of the data path.

use super::error::{Error, Result, Status};
use super::heap::{Block, Heap};
use super::job::{AsyncResult, TaskJob};
use super::queue::wait_final;
use super::shm::*;
use super::worker::{Init, ItemFn, VarFn};
use super::zygote::{self, ZygoteConfig};
use crate::sys::dl;
use crate::sys::mem::Mapping;
use crate::sys::proc::{self, Forked, PidHandle};
use crate::sys::thread;
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod ctx;
mod lifecycle;
mod snapshot;
mod submit;
use snapshot::Snapshot;
pub(crate) use submit::{submitter, Submitted, TaskSpec};

/// Default virtual size of each pool's shared heap. Pages cost memory only once touched.
const HEAP_LEN: usize = 32 << 30;
const MIN_HEAP_LEN: usize = 16 << 20;
/// How long the host waits for its zygote to exit before it kills it (the zygote's own
/// clean-up is bounded well below this). A zygote stopped by a signal is killed at once.
const ZYGOTE_EXIT_WAIT: Duration = Duration::from_secs(10);
pub(crate) const CORRUPT: &str = "the pool's shared memory was found overwritten (by a task that wrote where it \
     had to look for memory to write); results in flight cannot be trusted and the pool is terminated";
/// The error for items a map, iterator or stream never submitted, from the one that stopped
/// their submission: a pool found corrupt never had them (their data never was in the damaged
/// memory, unlike work in flight), so they end as never run (`Closed`), not as `Corrupt`.
pub(crate) fn unsubmitted(e: Error) -> Error {
    if e.status != Status::Corrupt {
        return e;
    }
    Error::closed("never run: the pool was terminated when its shared memory was found overwritten")
}
pub(crate) const ZYGOTE_DIED: &str = "the pool's zygote process died (killed from outside?); the pool is terminated";
/// How often a blocked waiter checks that the pool's zygote is still alive.
pub(crate) const WATCH_SLICE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Options {
    pub initializer: Option<Init>,
    pub max_tasks_per_child: u64,
    /// Per-item deadline; None for no limit.
    pub task_timeout: Option<Duration>,
    /// Resident memory (bytes) past which a worker is replaced after its task; 0 for none.
    pub max_rss: u64,
    /// Virtual size of the shared heap (bytes); 0 for the default (32 GiB, or the
    /// `POOL_SHM_SIZE` environment variable: tools like valgrind scan all of it).
    pub shm_size: usize,
    /// How long a worker may take to start (its initializer included) before it is killed and
    /// counted as a failure in the initializer; None for no bound.
    pub start_timeout: Option<Duration>,
    /// Confines every worker once its initializer ran (`sys::sandbox`); None for no sandbox.
    pub sandbox: Option<crate::sys::sandbox::Policy>,
}

/// The default start-up bound: far above any initializer we know of (OCR loads its model in
/// about a second, 50 s under valgrind), yet a hang still ends within minutes.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for Options {
    fn default() -> Options {
        Options {
            initializer: None,
            max_tasks_per_child: 0,
            task_timeout: None,
            max_rss: 0,
            shm_size: 0,
            start_timeout: Some(DEFAULT_START_TIMEOUT),
            sandbox: None,
        }
    }
}

/// Largest shared heap accepted (virtual size; user address space is 128 TiB on x86-64).
const MAX_HEAP_LEN: usize = 1 << 45;

/// The shared heap size: the option, else `POOL_SHM_SIZE` (bytes, K/M/G/T suffixes), else 32 GiB.
fn heap_len(opt: usize) -> Result<usize> {
    let len = if opt != 0 {
        opt
    } else {
        match std::env::var("POOL_SHM_SIZE") {
            Err(_) => HEAP_LEN,
            Ok(v) => parse_size(v.trim()).ok_or_else(|| {
                Error::inval(format!("POOL_SHM_SIZE={v:?} is not a size (bytes, or a number with K, M, G or T)"))
            })?,
        }
    };
    if len > MAX_HEAP_LEN {
        return Err(Error::inval(format!(
            "shm_size / POOL_SHM_SIZE of {len} bytes is too large (at most {MAX_HEAP_LEN} bytes)"
        )));
    }
    Ok(len.max(MIN_HEAP_LEN).next_multiple_of(1 << 21))
}

pub(crate) fn parse_size(v: &str) -> Option<usize> {
    let (num, shift) = match v.chars().last()?.to_ascii_uppercase() {
        'K' => (&v[..v.len() - 1], 10),
        'M' => (&v[..v.len() - 1], 20),
        'G' => (&v[..v.len() - 1], 30),
        'T' => (&v[..v.len() - 1], 40),
        _ => (v, 0),
    };
    num.parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// Per-call options of an apply or a variable-size task.
#[derive(Clone, Copy, Default)]
pub struct CallOptions {
    /// Bytes of `ctx` copied with the call (0: `ctx` is passed as it is).
    pub ctx_size: usize,
    /// Deadline of the task, overriding the pool's `task_timeout`.
    pub timeout: Option<Duration>,
}

#[derive(Default)]
struct Life {
    closed: bool,
    terminated: bool,
    /// `join` has begun shutting the workers down: nothing may be submitted any more, not even
    /// the rest of an iterator's input.
    joining: bool,
    joined: bool,
    /// Map drivers still feeding work (`map_async`); join waits for them.
    drivers: usize,
}

/// Descriptors of a pool, shared with its zygote (never with workers).
struct Fds {
    /// Completion eventfd (`pool_event_fd`): written by the host and the zygote.
    efd: proc::OwnedFd,
    /// The zygote's doorbell.
    bell: proc::OwnedFd,
    /// The write end of a close-on-exec pipe whose read end the zygote watches: it closes when
    /// the host exits or execs another program, and the pool ends with it.
    lifeline: proc::OwnedFd,
}

pub struct Shared {
    pub(crate) view: View,
    map: Mapping,
    /// Task blocks (read-only to tasks), and the user's `pool_shm_alloc` buffers.
    pub(crate) heap: Heap,
    user_heap: Heap,
    /// Workers that take part: the zygote's, and those behind remote runners.
    pub(crate) nworkers: usize,
    /// The pool's per-item deadline (ns; 0 for none), for tasks that do not set their own.
    pub(crate) timeout_ns: u64,
    /// Held by a remote runner while it ends a task, and by `close_unfinished`: a runner never
    /// writes into a task that the pool's end has already closed.
    pub(crate) runner_gate: Mutex<()>,
    owner: libc::pid_t,
    slots: Mutex<Slots>,
    /// Who holds each task block, by offset: the thread (`submit::submitter`) whose reading or
    /// collecting frees it. A call waiting for room tells from this whether it waits for itself.
    holders: Mutex<std::collections::HashMap<usize, u32>>,
    /// Task blocks freed so far. A call that found no room and nobody else to wait for tries
    /// again if this moved meanwhile: a free between its attempt and its checks made room.
    frees: std::sync::atomic::AtomicU64,
    /// Slots and blocks of results freed before their task ended; reclaimed once it does.
    orphans: Mutex<Vec<(u32, Block)>>,
    pub(crate) life: Arc<LifeSync>,
    zygote: Mutex<Option<Arc<PidHandle>>>,
    /// Set when the zygote was found dead: unfinished work then says so.
    pub(crate) zygote_died: std::sync::atomic::AtomicBool,
    /// Set when shared memory was found overwritten: the pool is ended and says so.
    pub(crate) corrupt: std::sync::atomic::AtomicBool,
    /// When calls that do not wait last checked on the zygote (monotonic ns).
    last_watch: std::sync::atomic::AtomicU64,
    /// The event fd's watcher thread, once `pool_event_fd` was called.
    watcher: Mutex<Option<thread::Thread>>,
    reaping: Mutex<()>,
    fds: Fds,
    /// Blocks handed out by `shm_alloc`, by offset.
    user_blocks: Mutex<std::collections::HashMap<usize, Block>>,
    /// What workers have: the code and memory of the creating process at creation.
    snapshot: Snapshot,
    /// The zygote's memory, as far as `ctx` checks needed it.
    zpages: ctx::ZygotePages,
    /// The workers' sandbox (its Landlock ruleset and report), if the pool has one.
    pub(crate) sandbox: Option<crate::sys::sandbox::Prepared>,
    /// A read-only descriptor of the pool's memory, for sandboxed workers' executors.
    reader: Option<proc::OwnedFd>,
}

/// The pool's lifecycle state, in its own allocation: a map driver thread gives back its
/// reference to `Shared` before it reports that it finished, so that once `join` returns no
/// thread keeps the pool's descriptors open.
pub(crate) struct LifeSync {
    st: Mutex<Life>,
    cv: Condvar,
}

impl LifeSync {
    pub(crate) fn driver_finished(&self) {
        lock(&self.st).drivers -= 1;
        self.cv.notify_all();
    }
}

struct Slots {
    free: Vec<u32>,
    fresh: u32,
}

/// A pool handle. Dropping it terminates the pool if it was not closed, then joins it.
pub struct Pool {
    sh: Arc<Shared>,
    /// The thread that runs tasks on other ranks (`remote/`), for a root pool; stopped after
    /// the pool is shut down.
    runner: Option<super::remote::RunnerHandle>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub fn new(workers: i32, opts: Options) -> Result<Pool> {
        Pool::with_runners(workers, opts, 0, 0)
    }

    /// A pool whose worker slots also hold `runner_slots` for remote runners (host threads
    /// that take tasks like workers and run them elsewhere), which bring `remote_workers` more
    /// workers: `workers()` counts them, and work is cut for all of them.
    pub(crate) fn with_runners(
        workers: i32,
        opts: Options,
        runner_slots: usize,
        remote_workers: usize,
    ) -> Result<Pool> {
        if super::worker::IN_WORKER.load(Relaxed) {
            return Err(Error::inval("pools cannot be created inside a pool's worker (nested use)"));
        }
        let n = if workers <= 0 { proc::usable_cpus() } else { workers as usize };
        // Never a silently weaker sandbox: what this kernel cannot give fails the pool.
        let sandbox =
            match &opts.sandbox {
                Some(p) => Some(crate::sys::sandbox::prepare(p).map_err(|e| {
                    Error::new(Status::Sys, format!("the sandbox cannot be applied on this system: {e}"))
                })?),
                None => None,
            };
        let sandbox_fd = sandbox.as_ref().map(crate::sys::sandbox::ruleset_fd);
        if let Some(fd) = sandbox_fd {
            proc::register_fd(fd); // kept by this pool's zygote and workers only
        }
        super::ipc::arena::ensure(); // before the first fork: queues, locks and events reach the workers
        if n > 4096 {
            return Err(Error::inval(format!("{n} workers requested; at most 4096")));
        }
        let layout = Layout::new(n, runner_slots, heap_len(opts.shm_size)?);
        let mapped = if sandbox.is_some() {
            // Executors map the pool from a read-only descriptor: never writable there.
            Mapping::new_shared_with_reader("libpool", layout.total).map(|(m, r)| (m, Some(r)))
        } else {
            Mapping::new_shared("libpool", layout.total).map(|m| (m, None))
        };
        let (map, reader) = mapped.map_err(|e| {
            Error::sys(
                &format!(
                    "mapping {} bytes of shared memory (memfd/mmap, and for a sandbox reopening it read-only through \
                     /proc/self/fd; under a limit such as RLIMIT_AS, set a smaller shm_size or POOL_SHM_SIZE)",
                    layout.total
                ),
                e,
            )
        })?;
        let sandbox_fds = match (sandbox_fd, &reader) {
            (Some(ruleset), Some(r)) => {
                proc::register_fd(r.0); // kept by this pool's zygote and workers only
                let tasks_per_process = opts.sandbox.as_ref().map_or(1, |p| p.tasks_per_process.max(1));
                Some(crate::core::worker::SandboxSetup { ruleset, pool: r.0, tasks_per_process })
            }
            _ => None,
        };
        // SAFETY: a fresh, zeroed mapping of exactly `layout.total` bytes, owned by `Shared`,
        // which outlives every View copy the host uses.
        let view = unsafe { View::new(map.base(), layout) };
        for w in 0..layout.nslots {
            view.worker(w).claim.store(CLAIM_NONE, Relaxed);
        }
        let eventfd = || {
            let fd = proc::eventfd().map_err(|e| Error::sys("eventfd", e))?;
            proc::register_fd(fd.0);
            Ok::<_, Error>(fd)
        };
        let (alive_rd, alive_wr) = proc::pipe().map_err(|e| Error::sys("pipe", e))?;
        proc::register_fd(alive_rd.0);
        proc::register_fd(alive_wr.0);
        let fds = Fds { efd: eventfd()?, bell: eventfd()?, lifeline: alive_wr };
        proc::register_map(map.base() as usize, map.len());
        let sh = Arc::new(Shared {
            view,
            heap: Heap::new(0, layout.heap_len),
            user_heap: Heap::new(layout.heap_len, layout.heap_len),
            map,
            nworkers: n + remote_workers,
            timeout_ns: opts.task_timeout.map_or(0, |d| (d.as_nanos() as u64).max(1)),
            runner_gate: Mutex::new(()),
            owner: proc::getpid(),
            slots: Mutex::new(Slots { free: Vec::new(), fresh: 0 }),
            holders: Default::default(),
            frees: Default::default(),
            orphans: Mutex::new(Vec::new()),
            life: Arc::new(LifeSync { st: Mutex::new(Life::default()), cv: Condvar::new() }),
            zygote: Mutex::new(None),
            zygote_died: Default::default(),
            corrupt: Default::default(),
            last_watch: Default::default(),
            watcher: Mutex::new(None),
            reaping: Mutex::new(()),
            user_blocks: Mutex::new(std::collections::HashMap::new()),
            fds,
            snapshot: Snapshot::now(),
            sandbox,
            reader,
            zpages: Default::default(),
        });
        let cfg = ZygoteConfig {
            view,
            host: sh.owner,
            init: opts.initializer,
            max_tasks_per_child: opts.max_tasks_per_child,
            max_rss: opts.max_rss,
            timeout_ns: sh.timeout_ns,
            start_timeout: opts.start_timeout,
            sandbox: sandbox_fds,
            efd: sh.fds.efd.0,
            bell: sh.fds.bell.0,
            lifeline: alive_rd.0,
        };
        let sb = sandbox_fds.map_or([-1, -1], |s| s.keep());
        let keep = [sh.fds.efd.0, sh.fds.bell.0, alive_rd.0, sb[0], sb[1]];
        let pid = match proc::fork(Some(sh.map.base() as usize), &keep).map_err(|e| Error::sys("fork", e))? {
            Forked::Child => zygote::main(cfg),
            Forked::Parent(pid) => pid,
        };
        proc::set_process_group(pid);
        proc::unregister_fd(alive_rd.0);
        drop(alive_rd); // the zygote's end
        *lock(&sh.zygote) = Some(Arc::new(PidHandle::open(pid)));
        let pool = Pool { sh, runner: None };
        pool.sh.await_workers(&opts)?;
        Ok(pool)
    }

    pub(crate) fn set_runner(&mut self, r: super::remote::RunnerHandle) {
        self.runner = Some(r);
    }

    pub fn workers(&self) -> usize {
        self.sh.nworkers
    }

    /// A descriptor that polls readable whenever a result became ready or the pool ended (see
    /// `pool_event_fd`).
    pub fn event_fd(&self) -> Result<i32> {
        self.sh.check_owner()?;
        self.sh.start_watcher()?;
        Ok(self.sh.event_fd())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.sh
    }

    /// Submits one task of fixed-size input and output (`apply_async`).
    ///
    /// # Safety
    /// `f` must be a valid `pool_fn` in the pool's workers; `input` must be readable for
    /// `in_size` bytes; `out` writable for `out_size` bytes until the result is collected or
    /// freed; `ctx` readable for `opts.ctx_size` bytes.
    pub unsafe fn apply_async(
        &self,
        f: ItemFn,
        input: *const u8,
        in_size: usize,
        out: *mut u8,
        out_size: usize,
        ctx: usize,
    ) -> Result<AsyncResult> {
        // SAFETY: as the caller promised.
        unsafe { self.apply_async_ex(f, input, in_size, out, out_size, ctx, CallOptions::default()) }
    }

    /// `apply_async` with per-call options.
    ///
    /// # Safety
    /// As for `apply_async`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn apply_async_ex(
        &self,
        f: ItemFn,
        input: *const u8,
        in_size: usize,
        out: *mut u8,
        out_size: usize,
        ctx: usize,
        opts: CallOptions,
    ) -> Result<AsyncResult> {
        let (shm_in, shm_out) =
            (self.sh.shm_offset(input as usize, in_size), self.sh.shm_offset(out as usize, out_size));
        let spec = TaskSpec {
            kind: K_ITEMS,
            map_chunk: false,
            func: f as usize,
            ctx,
            ctx_size: opts.ctx_size,
            ctx_checked: false,
            n: 1,
            in_size,
            out_size,
            timeout: opts.timeout,
            shm_in,
            shm_out,
            span: (0, 0),
        };
        let sub = self.sh.submit(spec, None, |dst| {
            // SAFETY: caller guarantees `input` is readable for `in_size` bytes.
            unsafe { std::ptr::copy_nonoverlapping(input, dst, in_size) };
            1
        })?;
        let out = if shm_out.is_some() { std::ptr::null_mut() } else { out }; // written in place
        Ok(AsyncResult::task(TaskJob::new(self.sh.clone(), sub, out, out_size, false)))
    }

    /// Submits one task with a byte input of any length whose result length it decides.
    ///
    /// # Safety
    /// `f` must be a valid `pool_task_fn` in the workers; `input` readable for `len` bytes;
    /// `ctx` readable for `opts.ctx_size` bytes.
    pub unsafe fn submit_var(
        &self,
        f: VarFn,
        input: *const u8,
        len: usize,
        max_out: usize,
        ctx: usize,
        opts: CallOptions,
    ) -> Result<AsyncResult> {
        let shm_in = self.sh.shm_offset(input as usize, len);
        let spec = TaskSpec {
            kind: K_VAR,
            map_chunk: false,
            func: f as usize,
            ctx,
            ctx_size: opts.ctx_size,
            ctx_checked: false,
            n: 1,
            in_size: len,
            out_size: max_out,
            timeout: opts.timeout,
            shm_in,
            shm_out: None,
            span: (0, 0),
        };
        let sub = self.sh.submit(spec, None, |dst| {
            // SAFETY: caller guarantees `input` is readable for `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(input, dst, len) };
            1
        })?;
        Ok(AsyncResult::task(TaskJob::new(self.sh.clone(), sub, std::ptr::null_mut(), max_out, true)))
    }

    /// Memory shared with every worker at the same address: inputs and outputs placed here are
    /// not copied. Contents are unspecified until written.
    pub fn shm_alloc(&self, size: usize) -> Result<*mut u8> {
        self.sh.check_owner()?;
        let b =
            self.sh.user_heap.alloc(size.max(1)).ok_or_else(|| {
                Error::new(Status::NoMem, format!("{size} bytes do not fit in the pool's shared memory"))
            })?;
        lock(&self.sh.user_blocks).insert(b.off, b);
        Ok(self.sh.view.heap_ptr(b.off as u64))
    }

    /// Frees memory from [`Pool::shm_alloc`]. Work still using it must have ended.
    pub fn shm_free(&self, ptr: *mut u8) -> Result<()> {
        self.sh.check_owner()?;
        let off = (ptr as usize).wrapping_sub(self.sh.view.heap_ptr(0) as usize);
        let b = lock(&self.sh.user_blocks)
            .remove(&off)
            .ok_or_else(|| Error::inval("pointer was not returned by pool_shm_alloc on this pool"))?;
        self.sh.free_block(b);
        Ok(())
    }

    pub fn close(&self) -> Result<()> {
        self.sh.check_owner()?;
        lock(&self.sh.life.st).closed = true;
        Ok(())
    }

    pub fn terminate(&self) -> Result<()> {
        self.sh.check_owner()?;
        self.sh.terminate();
        Ok(())
    }

    pub fn join(&self) -> Result<()> {
        self.sh.check_owner()?;
        let mut life = lock(&self.sh.life.st);
        if !life.closed {
            return Err(Error::inval("pool_join called before pool_close or pool_terminate"));
        }
        while life.drivers > 0 {
            life = self.sh.life.cv.wait(life).unwrap_or_else(|e| e.into_inner());
        }
        if life.joined {
            return Ok(());
        }
        life.joining = true;
        drop(life);
        if self.sh.view.layout().nslots > self.sh.view.layout().nworkers {
            // Remote runners are not the zygote's: its workers leave once the queue is empty,
            // while work may still run elsewhere. Wait for all of it first.
            while self.sh.anything_running() && !self.sh.is_terminated() {
                std::thread::sleep(Duration::from_millis(1));
                self.sh.watchdog_now_and_then();
            }
        }
        let ctl = &self.sh.view.header().control;
        ctl.shutdown.store(ON, SeqCst);
        self.sh.view.wake_all_workers();
        self.sh.reap_zygote();
        self.sh.join_watcher();
        // Anything still unfinished (the zygote died abnormally) ends now instead of hanging.
        self.sh.close_unfinished();
        lock(&self.sh.life.st).joined = true;
        Ok(())
    }

    /// Terminates the pool unless it was closed, then joins it: what dropping it does, here
    /// also while other threads still use it (their calls then end with `Closed`). Does nothing
    /// in any process but the owner (a forked child must leave its parent's pool alone).
    pub fn shut_down(&self) {
        if self.sh.check_owner().is_err() {
            return;
        }
        if !lock(&self.sh.life.st).closed {
            self.sh.terminate();
        }
        let _ = self.join();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Shared {
    pub(crate) fn check_owner(&self) -> Result<()> {
        if proc::getpid() != self.owner {
            return Err(Error::inval(
                "a pool can only be used by the process that created it (not from a task, a worker or a forked child)",
            ));
        }
        Ok(())
    }

    /// The completion eventfd: readable whenever a result became ready since it was last read.
    pub(crate) fn event_fd(&self) -> i32 {
        self.view.header().control.efd_armed.store(ON, SeqCst);
        self.fds.efd.0
    }

    /// Makes the completion eventfd readable, if the host asked for it.
    pub(crate) fn notify_event_fd(&self) {
        if self.view.header().control.efd_armed.load(Relaxed) != 0 {
            proc::eventfd_signal(self.fds.efd.0);
        }
    }

    /// Fails once the pool no longer takes work. A running map (`draining`) may still feed its
    /// chunks after `close`, but not after `terminate`.
    pub(crate) fn check_open(&self, draining: bool) -> Result<()> {
        self.check_owner()?;
        let life = lock(&self.life.st);
        if self.corrupt.load(Relaxed) {
            return Err(Error::new(Status::Corrupt, CORRUPT));
        }
        if life.terminated || life.joining || (life.closed && !draining) {
            return Err(Error::closed(if self.zygote_died.load(Relaxed) {
                ZYGOTE_DIED
            } else if life.terminated {
                "the pool was terminated"
            } else if life.joining {
                "the pool was closed and joined"
            } else {
                "the pool is closed"
            }));
        }
        let ctl = &self.view.header().control;
        if ctl.broken.load(Relaxed) != 0 {
            if self.view.corrupt().is_some() {
                // Not broken: overwritten (a garbage flag reads as set). Waiters end the pool.
                self.corrupt.store(true, SeqCst);
                self.ring_zygote();
                return Err(Error::new(Status::Corrupt, CORRUPT));
            }
            let hung = ctl.init_hung.load(Relaxed) != 0;
            return Err(Error::new(Status::Crashed, super::job::broken(hung)));
        }
        Ok(())
    }

    /// Waits for a task to end, checking the zygote now and then. None on timeout.
    pub(crate) fn wait_task(&self, slot: u32, deadline: Option<Instant>) -> Option<u32> {
        loop {
            let slice = Instant::now() + WATCH_SLICE;
            let d = deadline.map_or(slice, |d| d.min(slice));
            if let Some(s) = wait_final(&self.view.task(slot).state, Some(d)) {
                return Some(s);
            }
            if deadline.is_some_and(|dl| Instant::now() >= dl) {
                return None;
            }
            self.watchdog();
        }
    }

    /// The phase of task `slot` (T_QUEUED, T_RUNNING, T_DONE, ...).
    pub(crate) fn task_state(&self, slot: u32) -> u32 {
        phase(self.view.task(slot).state.load(Acquire))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Only the owner's zygote is its child; a forked child lets go of its copies only.
        if self.check_owner().is_ok() && lock(&self.zygote).is_some() {
            self.view.header().control.terminate.store(ON, SeqCst);
            self.ring_zygote();
            self.reap_zygote();
        }
        self.join_watcher();
        proc::unregister_map(self.map.base() as usize);
        proc::unregister_fd(self.fds.efd.0);
        proc::unregister_fd(self.fds.bell.0);
        proc::unregister_fd(self.fds.lifeline.0);
        if let Some(s) = &self.sandbox {
            proc::unregister_fd(crate::sys::sandbox::ruleset_fd(s));
        }
        if let Some(r) = &self.reader {
            proc::unregister_fd(r.0);
        }
    }
}
