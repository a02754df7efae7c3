//! The zygote: a single-threaded process forked once at `pool_create`. It forks the workers
//! (so every worker, replacements included, starts from the memory as it was at creation, and
//! forking stays safe however many threads the host runs), reaps them and repairs what a dead
//! worker left in shared memory (PROTOCOL.md), enforces per-item deadlines and cancellations,
//! and takes every worker, and everything their tasks started, down with it when the host dies
//! or ends the pool.

use super::error::Status;
use super::queue::{worker_tag, TAG_ZYGOTE};
use super::shm::*;
use super::worker::{self, Init, WorkerConfig};
use crate::sys::proc::{self, Exit, Forked};
use std::os::raw::c_int;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

mod repair;

/// The zygote's exit status when it found the shared header overwritten.
pub(crate) const EXIT_CORRUPT: i32 = 74;
/// Replacements that die in their initializer this many times in a row break the pool.
pub(crate) const MAX_INIT_FAILURES: u32 = 3;
/// Time between SIGTERM and SIGKILL for an item past its deadline.
const KILL_GRACE: Duration = Duration::from_millis(100);
/// Back-off between failed forks, doubling up to the maximum.
const FORK_BACKOFF: Duration = Duration::from_millis(10);
const FORK_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// With no worker alive and forks failing this long, queued work fails instead of waiting.
const FORK_GIVE_UP: Duration = Duration::from_secs(1);
/// Deaths of a task's runners at the same item before it started, after which that item fails.
const MAX_UNSTARTED: u32 = 3;
/// How long a worker may stay stopped (kill -STOP) while it holds the queue lock.
const STOPPED_GRACE: Duration = Duration::from_secs(1);

pub struct ZygoteConfig {
    pub view: View,
    pub host: libc::pid_t,
    pub init: Option<Init>,
    pub max_tasks_per_child: u64,
    pub max_rss: u64,
    pub timeout_ns: u64,
    /// How long a worker may take to start (its initializer included); None for no bound.
    pub start_timeout: Option<Duration>,
    /// What sandboxed workers inherit (descriptors), if the pool has a sandbox.
    pub sandbox: Option<worker::SandboxSetup>,
    /// The pool's completion eventfd (the zygote writes it for the workers).
    pub efd: c_int,
    /// The host's doorbell: an eventfd it writes to wake the zygote (kill requests, deadlines,
    /// termination) without needing the right to signal it.
    pub bell: c_int,
    /// Read end of the host's lifeline pipe: end of file once the host exited or exec'd.
    pub lifeline: c_int,
}

#[derive(Default)]
struct Worker {
    pid: libc::pid_t,
    alive: bool,
    /// The item (`run` word without flags) SIGTERM was sent for, and when.
    term: Option<(u64, Instant)>,
    /// When it was forked, while it may still be starting (see `check_starts`).
    forked: Option<Instant>,
}

/// Forks keep failing: when to try again, and since when.
struct Backoff {
    next: Instant,
    delay: Duration,
    since: Instant,
}

struct Zygote {
    cfg: ZygoteConfig,
    workers: Vec<Worker>,
    /// Deaths reaped (and their lock repaired) but not yet handled.
    deaths: Vec<(usize, Exit)>,
    starting: bool,
    init_failures: u32,
    backoff: Option<Backoff>,
    /// The worker seen stopped while holding the queue lock, and since when.
    stopped_owner: Option<(libc::pid_t, Instant)>,
    /// Deaths before any item started, by task incarnation (claim word): (item, deaths).
    unstarted: std::collections::HashMap<u64, (u64, u32)>,
}

/// Entry of the zygote process. Never returns.
pub fn main(cfg: ZygoteConfig) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cfg))).unwrap_or(70);
    proc::exit_now(code)
}

fn run(cfg: ZygoteConfig) -> i32 {
    worker::IN_WORKER.store(true, Relaxed);
    super::killpoint::set_role(super::killpoint::Role::Zygote);
    proc::set_name("pool-zygote");
    proc::own_process_group();
    proc::become_subreaper();
    // SIGUSR1: a worker completed a task while the event fd is armed.
    let sigs = [libc::SIGCHLD, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1];
    proc::set_mask(&sigs, libc::SIG_BLOCK);
    // SAFETY: dispositions of our own process: Ctrl-C is the host's to handle, and SIGCHLD
    // must not be inherited as SIG_IGN (that would auto-reap workers and hide their deaths).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    let ctl = &cfg.view.header().control;
    let Ok(sfd) = proc::signalfd(&sigs) else {
        ctl.fork_errno.store(proc::errno(), SeqCst);
        ctl.start_step.store(STEP_SIGNALFD, SeqCst);
        return 71;
    };
    proc::register_fd(sfd.0);
    let host = proc::PidHandle::open(cfg.host);
    let host_pid = cfg.host;
    let host_gone = || proc::getppid() != host_pid; // we were reparented: the host is dead
    if host_gone() {
        return 0;
    }
    let n = cfg.view.layout().nworkers;
    let mut z = Zygote {
        cfg,
        workers: (0..n).map(|_| Worker::default()).collect(),
        deaths: Vec::new(),
        starting: true,
        init_failures: 0,
        backoff: None,
        stopped_owner: None,
        unstarted: Default::default(),
    };
    for w in 0..n {
        if let Err(e) = z.spawn(w) {
            z.cfg.view.header().control.fork_errno.store(e, SeqCst);
            z.kill_all();
            return 73;
        }
    }
    loop {
        let view = z.cfg.view;
        let ctl = &view.header().control;
        let watching = z.cfg.timeout_ns != 0 || ctl.deadlines.load(SeqCst) != 0;
        let mut timeout_ms = if watching { 5 } else { -1 };
        if host.poll_fd() < 0 {
            timeout_ms = if timeout_ms < 0 { 50 } else { timeout_ms }; // no pidfd: look now and then
        }
        if z.stopped_owner.is_some() {
            timeout_ms = if timeout_ms < 0 { 100 } else { timeout_ms.min(100) };
        }
        if let Some(b) = &z.backoff {
            let left = b.next.saturating_duration_since(Instant::now()).as_millis().min(1000) as c_int + 1;
            timeout_ms = if timeout_ms < 0 { left } else { timeout_ms.min(left) };
        }
        if let Some(d) = z.next_start_deadline() {
            let left = d.saturating_duration_since(Instant::now()).as_millis().min(1 << 30) as c_int + 1;
            timeout_ms = if timeout_ms < 0 { left } else { timeout_ms.min(left) };
        }
        let ready = proc::poll_any(&[sfd.0, host.poll_fd(), z.cfg.bell, z.cfg.lifeline], timeout_ms);
        if ready[1] || ready[3] || host_gone() {
            z.kill_all();
            return 0;
        }
        while let Some(sig) = proc::read_signal(&sfd) {
            if sig == libc::SIGTERM || sig == libc::SIGHUP {
                z.kill_all();
                return 0;
            }
        }
        proc::eventfd_drain(z.cfg.bell);
        if view.corrupt().is_some() {
            z.die_corrupt();
        }
        answer_peek(view.peek());
        z.reap();
        z.unstick();
        z.handle_deaths();
        if ctl.efd_pending.swap(0, AcqRel) != 0 {
            proc::eventfd_signal(z.cfg.efd);
        }
        z.serve_cancels();
        z.check_deadlines();
        z.check_starts();
        if ctl.terminate.load(SeqCst) != 0 {
            z.kill_all();
            return 0;
        }
        let draining = ctl.shutdown.load(SeqCst) != 0 && view.queue_empty();
        if z.workers.iter().all(|w| !w.alive) && draining {
            z.kill_all(); // what tasks left behind
            return 0;
        }
        if !draining && ctl.broken.load(SeqCst) == 0 {
            z.respawn();
        }
        let none_alive = z.workers.iter().all(|w| !w.alive);
        if none_alive && ctl.broken.load(SeqCst) != 0 {
            let why = if ctl.init_hung.load(SeqCst) != 0 { BROKEN_HUNG } else { 0 };
            z.fail_queue(Status::Crashed, why);
        } else if none_alive && z.backoff.as_ref().is_some_and(|b| b.since.elapsed() >= FORK_GIVE_UP) {
            z.fail_queue(Status::Sys, ctl.fork_errno.load(SeqCst));
        }
    }
}

impl Zygote {
    /// Forks worker `w`; the errno on failure.
    fn spawn(&mut self, w: usize) -> Result<(), i32> {
        let v = self.cfg.view;
        let slot = v.worker(w);
        slot.claim.store(CLAIM_NONE, SeqCst);
        slot.progress.store(0, SeqCst);
        slot.run.store(0, SeqCst);
        slot.deadline.store(0, SeqCst);
        slot.refused.store(0, SeqCst);
        slot.task_pid.store(0, SeqCst);
        slot.state.store(W_STARTING, SeqCst);
        let me = proc::getpid();
        let keep = self.cfg.sandbox.map(|s| s.keep());
        match proc::fork(Some(v.base() as usize), keep.as_ref().map_or(&[][..], |k| &k[..])) {
            Ok(Forked::Child) => worker::main(WorkerConfig {
                view: v,
                index: w,
                zygote: me,
                init: self.cfg.init,
                max_tasks_per_child: self.cfg.max_tasks_per_child,
                max_rss: self.cfg.max_rss,
                timeout_ns: self.cfg.timeout_ns,
                sandbox: self.cfg.sandbox,
            }),
            Ok(Forked::Parent(pid)) => {
                slot.pid.store(pid, SeqCst);
                self.workers[w] = Worker { pid, alive: true, term: None, forked: Some(Instant::now()) };
                Ok(())
            }
            Err(e) => {
                slot.state.store(W_EXITED, SeqCst);
                Err(e.raw_os_error().unwrap_or(libc::EAGAIN))
            }
        }
    }

    /// The earliest moment a worker still starting passes the start-up bound, if any does.
    fn next_start_deadline(&self) -> Option<Instant> {
        let bound = self.cfg.start_timeout?;
        self.workers.iter().filter(|x| x.alive).filter_map(|x| x.forked).min().map(|t| t + bound)
    }

    /// Kills the workers still starting (in their initializer) past the start-up bound. The
    /// state goes to W_HUNG by CAS first, so a worker that got ready meanwhile is left alone,
    /// and one that did not can never get ready (it parks): the kill reaches no task.
    fn check_starts(&mut self) {
        let Some(bound) = self.cfg.start_timeout else { return };
        let v = self.cfg.view;
        for (w, x) in self.workers.iter_mut().enumerate().filter(|(_, x)| x.alive) {
            if x.forked.is_none_or(|t| t.elapsed() < bound) {
                continue;
            }
            x.forked = None; // looked at once: ready by now, or killed
            let slot = v.worker(w);
            let state = slot.state.load(SeqCst);
            if matches!(state, W_STARTING | W_INIT)
                && slot.state.compare_exchange(state, W_HUNG, SeqCst, SeqCst).is_ok()
            {
                proc::kill(x.pid, libc::SIGKILL);
            }
        }
    }

    /// Replaces dead workers; when forks fail (RLIMIT_NPROC, memory), tries again later with
    /// a growing delay instead of giving up or spinning.
    fn respawn(&mut self) {
        if self.backoff.as_ref().is_some_and(|b| Instant::now() < b.next) {
            return;
        }
        for w in 0..self.workers.len() {
            if self.workers[w].alive {
                continue;
            }
            if let Err(e) = self.spawn(w) {
                self.cfg.view.header().control.fork_errno.store(e, SeqCst);
                let now = Instant::now();
                let (delay, since) = match &self.backoff {
                    Some(b) => ((b.delay * 2).min(FORK_BACKOFF_MAX), b.since),
                    None => (FORK_BACKOFF, now),
                };
                self.backoff = Some(Backoff { next: now + delay, delay, since });
                return;
            }
        }
        if self.backoff.take().is_some() {
            self.cfg.view.header().control.fork_errno.store(0, SeqCst);
        }
    }

    fn notify_event_fd(&self) {
        if self.cfg.view.header().control.efd_armed.load(Relaxed) != 0 {
            proc::eventfd_signal(self.cfg.efd);
        }
    }

    /// Kills workers running a task the host cancelled, after marking their claim (invariant
    /// K: a worker that finishes the task first parks instead of taking more work).
    fn serve_cancels(&mut self) {
        let v = self.cfg.view;
        for (w, info) in self.workers.iter().enumerate().filter(|(_, x)| x.alive) {
            let slot = v.worker(w);
            let c = slot.claim.load(SeqCst);
            if c == CLAIM_NONE || c & CLAIM_KILL != 0 {
                continue;
            }
            let (idx, epoch) = claim_parts(c);
            if idx >= MAX_TASKS {
                continue;
            }
            let t = v.task(idx);
            let cancelled = t.cancelled.load(SeqCst) != 0;
            if !cancelled || t.epoch.load(SeqCst) != epoch || t.state.load(SeqCst) & !WAITER != running(w) {
                continue;
            }
            if slot.claim.compare_exchange(c, c | CLAIM_KILL, SeqCst, SeqCst).is_ok() {
                kp!(ZygoteCancelKill);
                proc::kill(info.pid, libc::SIGKILL);
            }
        }
    }

    /// SIGTERM to workers whose item is past its deadline, SIGKILL after a grace period; each
    /// decided by CAS on the item's `run` word, so a signal never reaches a later item.
    fn check_deadlines(&mut self) {
        let v = self.cfg.view;
        let now = proc::monotonic_ns();
        for (w, info) in self.workers.iter_mut().enumerate().filter(|(_, x)| x.alive) {
            let slot = v.worker(w);
            let r = slot.run.load(SeqCst);
            if r == 0 || r & RUN_RETURNED != 0 {
                info.term = None;
                continue;
            }
            match info.term {
                Some((item, t0)) if item == r & !RUN_FLAGS => {
                    let due = r & RUN_SENT != 0 && r & RUN_KILL == 0 && t0.elapsed() >= KILL_GRACE;
                    if due && slot.run.compare_exchange(r, r | RUN_KILL, SeqCst, SeqCst).is_ok() {
                        kp!(ZygoteTimeoutKill);
                        proc::kill(info.pid, libc::SIGKILL);
                    }
                }
                _ if r & RUN_FLAGS == 0 => {
                    let d = slot.deadline.load(SeqCst);
                    if slot.run.load(SeqCst) != r || d == 0 || now <= d {
                        continue;
                    }
                    if slot.run.compare_exchange(r, r | RUN_TERM, SeqCst, SeqCst).is_ok() {
                        kp!(ZygoteTermDecided);
                        // To the process the task runs in: a sandboxed worker's executor.
                        let tp = slot.task_pid.load(SeqCst);
                        proc::kill(if tp > 0 { tp } else { info.pid }, libc::SIGTERM);
                        slot.run.fetch_or(RUN_SENT, SeqCst);
                        info.term = Some((r, Instant::now()));
                    }
                }
                _ => {}
            }
        }
    }

    /// No worker can run: end every queued task with `status` (`code`: the fork errno)
    /// instead of leaving it to wait forever.
    fn fail_queue(&mut self, status: Status, code: i32) {
        let v = self.cfg.view;
        let q = &v.header().queue;
        self.lock();
        while q.head.load(SeqCst) != q.tail.load(SeqCst) {
            let head = q.head.load(SeqCst);
            let idx = v.ring(head).load(SeqCst);
            if idx < MAX_TASKS {
                let t = v.task(idx);
                // QUEUED, and ours while we hold the lock: its records are ours to write.
                if phase(t.state.load(SeqCst)) == T_QUEUED {
                    for i in t.next.load(SeqCst)..t.n.load(SeqCst) {
                        v.push_failure(t, Rec { item: i, status: status as i32, code, ..Rec::default() }, None);
                        t.next.store(i + 1, SeqCst);
                    }
                    v.finish(t, T_QUEUED, T_DONE);
                    if t.flags.load(SeqCst) & F_NOTIFY == 0 {
                        self.notify_event_fd();
                    }
                }
            }
            q.head.store(head.wrapping_add(1), SeqCst);
        }
        v.unlock();
    }

    /// Kills every worker, then whatever their tasks left behind (orphans reparented to us),
    /// until no child is left.
    fn kill_all(&mut self) {
        for w in self.workers.iter_mut().filter(|w| w.alive) {
            proc::kill(w.pid, libc::SIGKILL);
            w.alive = false;
        }
        let start = Instant::now();
        loop {
            while proc::reap_any().is_some() {}
            let kids = proc::own_children();
            if kids.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            for k in kids {
                proc::kill(k, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The host asked for a page of our memory (it may not read it itself): every worker starts
/// from these bytes, since we fork them and run no user code.
fn answer_peek(p: &Peek) {
    let asked = p.asked.load(Acquire);
    if asked == p.answered.load(Relaxed) {
        return;
    }
    let mut buf = [0u8; PAGE];
    let addr = p.addr.load(Relaxed) as usize & !(PAGE - 1);
    let n = crate::sys::peek::read_own(addr, &mut buf).unwrap_or(0);
    for (w, b) in p.page.iter().zip(buf.chunks_exact(8)) {
        w.store(u64::from_ne_bytes(b.try_into().expect("8 bytes")), Relaxed);
    }
    p.len.store(n as u32, Relaxed);
    p.answered.store(asked, Release);
    crate::sys::futex::wake(&p.answered, i32::MAX);
}

fn raw_status(e: Exit) -> i32 {
    match e {
        Exit::Code(c) => c << 8,
        Exit::Signal { sig, core } => sig | if core { 0x80 } else { 0 },
    }
}
