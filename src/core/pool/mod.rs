//! The host side of a pool: creation, submission, lifecycle. Submitting threads write tasks
//! straight into shared memory and the workers take them from there; no host thread sits in
//! the middle of the data path.

use super::error::{Error, Result, Status};
use super::heap::{Block, Heap};
use super::job::{AsyncResult, TaskJob};
use super::queue::wait_final;
use super::shm::*;
use super::worker::{InitFn, ItemFn, VarFn};
use super::zygote::{self, ZygoteConfig};
use crate::sys::mem::Mapping;
use crate::sys::proc::{self, Forked, PidHandle};
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod lifecycle;
mod submit;
pub(crate) use submit::{Submitted, TaskSpec};

/// Default virtual size of each pool's shared heap. Pages cost memory only once touched.
const HEAP_LEN: usize = 32 << 30;
const MIN_HEAP_LEN: usize = 16 << 20;
/// How often a blocked waiter checks that the pool's zygote is still alive.
pub(crate) const WATCH_SLICE: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Default)]
pub struct Options {
    pub initializer: Option<(InitFn, usize)>,
    pub max_tasks_per_child: u64,
    /// Per-item deadline; None for no limit.
    pub task_timeout: Option<Duration>,
    /// Resident memory (bytes) past which a worker is replaced after its task; 0 for none.
    pub max_rss: u64,
    /// Virtual size of the shared heap (bytes); 0 for the default (32 GiB, or the
    /// `POOL_SHM_SIZE` environment variable: tools like valgrind scan all of it).
    pub shm_size: usize,
}

/// The shared heap size: the option, else `POOL_SHM_SIZE` (bytes, K/M/G suffixes), else 32 GiB.
fn heap_len(opt: usize) -> usize {
    let from_env = || {
        let v = std::env::var("POOL_SHM_SIZE").ok()?;
        let v = v.trim();
        let (num, mul) = match v.chars().last()?.to_ascii_uppercase() {
            'K' => (&v[..v.len() - 1], 1usize << 10),
            'M' => (&v[..v.len() - 1], 1 << 20),
            'G' => (&v[..v.len() - 1], 1 << 30),
            _ => (v, 1),
        };
        num.parse::<usize>().ok()?.checked_mul(mul)
    };
    let len = if opt != 0 { opt } else { from_env().unwrap_or(HEAP_LEN) };
    len.max(MIN_HEAP_LEN).next_multiple_of(1 << 21)
}

#[derive(Default)]
struct Life {
    closed: bool,
    terminated: bool,
    joined: bool,
    /// Map drivers still feeding work (`map_async`); join waits for them.
    drivers: usize,
}

struct ZygoteProc {
    h: PidHandle,
}

pub struct Shared {
    pub(crate) view: View,
    map: Mapping,
    pub(crate) heap: Heap,
    pub(crate) nworkers: usize,
    owner: libc::pid_t,
    slots: Mutex<Slots>,
    /// Slots and blocks of results freed before their task ended; reclaimed once it does.
    orphans: Mutex<Vec<(u32, Block)>>,
    life: Mutex<Life>,
    life_cv: Condvar,
    zygote: Mutex<Option<ZygoteProc>>,
    reaping: Mutex<()>,
    /// Completion eventfd, shared with the zygote and workers.
    efd: proc::OwnedFd,
    /// Blocks handed out by `shm_alloc`, by offset.
    user_blocks: Mutex<std::collections::HashMap<usize, Block>>,
    /// Executable address ranges at creation: the only code workers have.
    code: Vec<(usize, usize)>,
}

struct Slots {
    free: Vec<u32>,
    fresh: u32,
}

/// A pool handle. Dropping it terminates the pool if it was not closed, then joins it.
pub struct Pool {
    sh: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub fn new(workers: i32, opts: Options) -> Result<Pool> {
        if super::worker::IN_WORKER.load(Relaxed) {
            return Err(Error::inval("pools cannot be created inside a pool's worker (nested use)"));
        }
        let n = if workers <= 0 { proc::usable_cpus() } else { workers as usize };
        if n > 4096 {
            return Err(Error::inval(format!("{n} workers requested; at most 4096")));
        }
        let layout = Layout::new(n, heap_len(opts.shm_size));
        let map =
            Mapping::new_shared("libpool", layout.total).map_err(|e| Error::sys("shared memory (memfd/mmap)", e))?;
        // SAFETY: a fresh, zeroed mapping of exactly `layout.total` bytes, owned by `Shared`,
        // which outlives every View copy the host uses.
        let view = unsafe { View::new(map.base(), layout) };
        // SAFETY: nobody else sees the mapping yet; plain initialisation of the control block.
        unsafe {
            let ctl = &view.header().control as *const Control as *mut Control;
            (*ctl).nworkers = n as u32;
            (*ctl).max_tasks_per_child = opts.max_tasks_per_child;
            (*ctl).max_rss = opts.max_rss;
            (*ctl).timeout_ns = opts.task_timeout.map_or(0, |d| (d.as_nanos() as u64).max(1));
        }
        for w in 0..n {
            view.worker(w).current.store(NONE, Relaxed);
        }
        let efd = proc::eventfd().map_err(|e| Error::sys("eventfd", e))?;
        proc::register_fd(efd.0);
        // SAFETY: as above, before anyone else sees the mapping.
        unsafe { (*(&view.header().control as *const Control as *mut Control)).efd = efd.0 };
        proc::register_map(map.base() as usize, map.len());
        let sh = Arc::new(Shared {
            view,
            heap: Heap::new(layout.heap_len),
            map,
            nworkers: n,
            owner: proc::getpid(),
            slots: Mutex::new(Slots { free: Vec::new(), fresh: 0 }),
            orphans: Mutex::new(Vec::new()),
            life: Mutex::new(Life::default()),
            life_cv: Condvar::new(),
            zygote: Mutex::new(None),
            reaping: Mutex::new(()),
            user_blocks: Mutex::new(std::collections::HashMap::new()),
            efd,
            code: proc::executable_ranges(),
        });
        let cfg = ZygoteConfig { view, host: sh.owner, init: opts.initializer };
        let pid = match proc::fork(Some(sh.map.base() as usize), Some(sh.efd.0)).map_err(|e| Error::sys("fork", e))? {
            Forked::Child => zygote::main(cfg),
            Forked::Parent(pid) => pid,
        };
        *lock(&sh.zygote) = Some(ZygoteProc { h: PidHandle::open(pid) });
        let pool = Pool { sh };
        pool.sh.await_workers()?;
        Ok(pool)
    }

    pub fn workers(&self) -> usize {
        self.sh.nworkers
    }

    /// A descriptor that polls readable whenever a result became ready (see `pool_event_fd`).
    pub fn event_fd(&self) -> Result<i32> {
        self.sh.check_owner()?;
        Ok(self.sh.event_fd())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.sh
    }

    /// Submits one task of fixed-size input and output (`apply_async`).
    ///
    /// # Safety
    /// `f` must be a valid `pool_fn` in the pool's workers; `input` must be readable for
    /// `in_size` bytes; `out` writable for `out_size` bytes until the result is collected or freed.
    pub unsafe fn apply_async(
        &self,
        f: ItemFn,
        input: *const u8,
        in_size: usize,
        out: *mut u8,
        out_size: usize,
        ctx: usize,
    ) -> Result<AsyncResult> {
        let (shm_in, shm_out) =
            (self.sh.shm_offset(input as usize, in_size), self.sh.shm_offset(out as usize, out_size));
        let spec = TaskSpec {
            kind: K_ITEMS,
            map_chunk: false,
            func: f as usize,
            ctx,
            n: 1,
            in_size,
            out_size,
            timeout: None,
            shm_in,
            shm_out,
        };
        let sub = self.sh.submit(spec, |dst| {
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
    /// `f` must be a valid `pool_task_fn` in the workers; `input` readable for `len` bytes.
    pub unsafe fn submit_var(
        &self,
        f: VarFn,
        input: *const u8,
        len: usize,
        max_out: usize,
        ctx: usize,
    ) -> Result<AsyncResult> {
        let shm_in = self.sh.shm_offset(input as usize, len);
        let spec = TaskSpec {
            kind: K_VAR,
            map_chunk: false,
            func: f as usize,
            ctx,
            n: 1,
            in_size: len,
            out_size: max_out,
            timeout: None,
            shm_in,
            shm_out: None,
        };
        let sub = self.sh.submit(spec, |dst| {
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
            self.sh.heap.alloc(size.max(1)).ok_or_else(|| {
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
        lock(&self.sh.life).closed = true;
        Ok(())
    }

    pub fn terminate(&self) -> Result<()> {
        self.sh.check_owner()?;
        self.sh.terminate();
        Ok(())
    }

    pub fn join(&self) -> Result<()> {
        self.sh.check_owner()?;
        let mut life = lock(&self.sh.life);
        if !life.closed {
            return Err(Error::inval("pool_join called before pool_close or pool_terminate"));
        }
        while life.drivers > 0 {
            life = self.sh.life_cv.wait(life).unwrap_or_else(|e| e.into_inner());
        }
        if life.joined {
            return Ok(());
        }
        drop(life);
        let ctl = &self.sh.view.header().control;
        ctl.shutdown.store(1, SeqCst);
        self.sh.view.wake_all_workers();
        self.sh.reap_zygote();
        // Anything still unfinished (the zygote died abnormally) ends now instead of hanging.
        self.sh.close_unfinished();
        lock(&self.sh.life).joined = true;
        Ok(())
    }

    /// Terminates the pool unless it was closed, then joins it: what dropping it does, here
    /// also while other threads still use it (their calls then end with `Closed`). Does nothing
    /// in any process but the owner (a forked child must leave its parent's pool alone).
    pub fn shut_down(&self) {
        if self.sh.check_owner().is_err() {
            return;
        }
        if !lock(&self.sh.life).closed {
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
        self.view.header().control.efd_armed.store(1, SeqCst);
        self.efd.0
    }

    pub(crate) fn notify_event_fd(&self) {
        self.view.notify_event_fd();
    }

    /// Fails once the pool no longer takes work. A running map (`draining`) may still feed its
    /// chunks after `close`, but not after `terminate`.
    fn check_open(&self, draining: bool) -> Result<()> {
        self.check_owner()?;
        let life = lock(&self.life);
        if life.terminated || (life.closed && !draining) {
            return Err(Error::closed(if life.terminated { "the pool was terminated" } else { "the pool is closed" }));
        }
        if self.view.header().control.broken.load(Relaxed) != 0 {
            return Err(Error::new(Status::Crashed, "the pool is broken: its workers keep dying in the initializer"));
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

    pub(crate) fn task_state(&self, slot: u32) -> u32 {
        self.view.task(slot).state.load(Acquire) & !WAITER
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Only the owner's zygote is its child; a forked child lets go of its copies only.
        if let Some(z) = self.check_owner().ok().and_then(|()| lock(&self.zygote).take()) {
            let _ = z.h.signal(libc::SIGKILL);
            let _ = proc::reap(z.h.pid, true);
        }
        proc::unregister_map(self.map.base() as usize);
        proc::unregister_fd(self.efd.0);
    }
}
