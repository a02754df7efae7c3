//! The zygote: a single-threaded process forked once at `pool_create`. It forks the workers
//! (so every worker, replacements included, starts from the memory as it was at creation, and
//! forking stays safe however many threads the host runs), reaps them, reports deaths into the
//! tasks they were running, enforces per-item deadlines, and takes every worker down with it
//! when the host dies or terminates the pool.

use super::error::Status;
use super::queue::TAG_ZYGOTE;
use super::shm::*;
use super::worker::{self, InitFn, WorkerConfig};
use crate::sys::proc::{self, Exit, Forked};
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

/// Replacements that die in their initializer this many times in a row break the pool.
const MAX_INIT_FAILURES: u32 = 3;
/// Time between SIGTERM and SIGKILL for a task past its deadline.
const KILL_GRACE: Duration = Duration::from_millis(100);

pub struct ZygoteConfig {
    pub view: View,
    pub host: libc::pid_t,
    pub init: Option<(InitFn, usize)>,
}

#[derive(Default)]
struct Worker {
    pid: libc::pid_t,
    alive: bool,
    /// When SIGTERM was sent for a missed deadline.
    term_sent: Option<Instant>,
}

struct Zygote {
    cfg: ZygoteConfig,
    workers: Vec<Worker>,
    starting: bool,
    init_failures: u32,
}

/// Entry of the zygote process. Never returns.
pub fn main(cfg: ZygoteConfig) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cfg))).unwrap_or(70);
    proc::exit_now(code)
}

fn run(cfg: ZygoteConfig) -> i32 {
    worker::IN_WORKER.store(true, Relaxed);
    proc::set_name("pool-zygote");
    // SIGUSR1 is the host's doorbell: kill requests, deadlines switched on.
    let sigs = [libc::SIGCHLD, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1];
    proc::set_mask(&sigs, libc::SIG_BLOCK);
    // SAFETY: dispositions of our own process: Ctrl-C is the host's to handle, and SIGCHLD
    // must not be inherited as SIG_IGN (that would auto-reap workers and hide their deaths).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    let Ok(sfd) = proc::signalfd(&sigs) else { return 71 };
    proc::register_fd(sfd.0);
    let host = proc::PidHandle::open(cfg.host);
    let host_pid = cfg.host;
    let host_gone = || proc::getppid() != host_pid; // we were reparented: the host is dead
    if host_gone() {
        return 0;
    }
    let n = cfg.view.header().control.nworkers as usize;
    let mut z = Zygote { cfg, workers: (0..n).map(|_| Worker::default()).collect(), starting: true, init_failures: 0 };
    for w in 0..n {
        if !z.spawn(w) {
            z.kill_all();
            return 73;
        }
    }
    loop {
        let ctl = &z.cfg.view.header().control;
        let mut timeout_ms = if ctl.timeout_ns != 0 || ctl.deadlines.load(SeqCst) != 0 { 5 } else { -1 };
        if host.poll_fd() < 0 {
            timeout_ms = if timeout_ms < 0 { 50 } else { timeout_ms }; // no pidfd: look now and then
        }
        let ready = proc::poll_any(&[sfd.0, host.poll_fd()], timeout_ms);
        if ready[1] || host_gone() {
            z.kill_all();
            return 0;
        }
        while let Some(sig) = proc::read_signal(&sfd) {
            if sig == libc::SIGTERM || sig == libc::SIGHUP {
                z.kill_all();
                return 0;
            }
        }
        while let Some((pid, exit)) = proc::reap_any() {
            if let Some(w) = z.workers.iter().position(|x| x.alive && x.pid == pid) {
                z.on_death(w, exit);
            }
        }
        z.serve_kill_requests();
        z.check_deadlines();
        let view = z.cfg.view;
        let ctl = &view.header().control;
        if ctl.terminate.load(SeqCst) != 0 {
            z.kill_all();
            return 0;
        }
        let draining = ctl.shutdown.load(SeqCst) != 0 && view.queue_empty();
        if z.workers.iter().all(|w| !w.alive) && draining {
            return 0;
        }
        if !draining && ctl.broken.load(SeqCst) == 0 {
            for w in 0..n {
                if !z.workers[w].alive && !z.spawn(w) {
                    break;
                }
            }
        }
        if ctl.broken.load(SeqCst) != 0 && z.workers.iter().all(|w| !w.alive) {
            z.fail_queue();
        }
    }
}

impl Zygote {
    fn spawn(&mut self, w: usize) -> bool {
        let v = self.cfg.view;
        let slot = v.worker(w);
        slot.current.store(NONE, SeqCst);
        slot.deadline.store(0, SeqCst);
        slot.state.store(W_STARTING, SeqCst);
        let me = proc::getpid();
        match proc::fork(Some(v.base() as usize), None) {
            Ok(Forked::Child) => worker::main(WorkerConfig { view: v, index: w, zygote: me, init: self.cfg.init }),
            Ok(Forked::Parent(pid)) => {
                slot.pid.store(pid, SeqCst);
                self.workers[w] = Worker { pid, alive: true, ..Worker::default() };
                true
            }
            Err(_) => {
                slot.state.store(W_EXITED, SeqCst);
                false
            }
        }
    }

    fn on_death(&mut self, w: usize, exit: Exit) {
        let v = self.cfg.view;
        let timed_out = self.workers[w].term_sent.is_some();
        self.workers[w].alive = false;
        v.repair_after_death(w);
        let slot = v.worker(w);
        let was_ready = slot.state.swap(W_EXITED, SeqCst) == W_READY;
        let cur = slot.current.swap(NONE, SeqCst);
        if cur != NONE {
            let pid = self.workers[w].pid;
            self.fail_running(cur, if timed_out { Status::TimedOut } else { Status::Crashed }, pid, exit);
        }
        let ctl = &v.header().control;
        if !was_ready {
            if self.starting {
                ctl.init_failed.store(raw_status(exit) + 1, SeqCst);
                crate::sys::futex::wake(&ctl.ready, i32::MAX);
            } else {
                self.init_failures += 1;
                if self.init_failures >= MAX_INIT_FAILURES {
                    ctl.broken.store(1, SeqCst);
                }
            }
        } else {
            self.init_failures = 0;
        }
        if ctl.ready.load(SeqCst) as usize >= self.workers.len() {
            self.starting = false;
        }
        v.signal_event(true);
    }

    /// The worker running task `idx` died: its current item fails, the rest of the task is
    /// queued again (or the task ends if nothing is left).
    fn fail_running(&self, idx: u32, status: Status, pid: libc::pid_t, exit: Exit) {
        let v = self.cfg.view;
        let t = v.task(idx);
        match t.state.load(SeqCst) & !WAITER {
            T_QUEUED => v.push(idx, TAG_ZYGOTE), // taken from the queue but never started
            T_RUNNING => {
                let i = t.next.load(SeqCst);
                let n = t.n.load(SeqCst);
                let cancelled = t.cancelled.load(SeqCst) != 0;
                let status = if cancelled { Status::Cancelled } else { status };
                if i < n {
                    // The runner is dead: the zygote is the task's only writer now.
                    v.push_failure(t, Rec { item: i, status: status as i32, code: 0, pid, wstatus: raw_status(exit) });
                    t.next.store(i + 1, SeqCst);
                }
                if cancelled && i + 1 < n {
                    worker::cancel_rest(&v, t, i + 1);
                }
                let terminating = v.header().control.terminate.load(SeqCst) != 0;
                if i + 1 < n && !cancelled && !terminating && v.transition(t, T_RUNNING, T_QUEUED) {
                    v.push(idx, TAG_ZYGOTE);
                } else {
                    v.finish(t, T_RUNNING, T_DONE);
                }
            }
            _ => {}
        }
    }

    /// Kills workers still running a task the host cancelled.
    fn serve_kill_requests(&mut self) {
        let v = self.cfg.view;
        for (w, info) in self.workers.iter().enumerate() {
            let req = v.worker(w).kill_req.swap(0, SeqCst);
            if info.alive && req != 0 && v.worker(w).current.load(SeqCst) == req - 1 {
                proc::kill(info.pid, libc::SIGKILL);
            }
        }
    }

    /// SIGTERM to workers past their item's deadline, SIGKILL after a grace period.
    fn check_deadlines(&mut self) {
        let v = self.cfg.view;
        let now = proc::monotonic_ns();
        for (w, info) in self.workers.iter_mut().enumerate() {
            if !info.alive {
                continue;
            }
            match info.term_sent {
                Some(t0) if t0.elapsed() >= KILL_GRACE => proc::kill(info.pid, libc::SIGKILL),
                Some(_) => {}
                None => {
                    let d = v.worker(w).deadline.load(SeqCst);
                    if d != 0 && now > d {
                        info.term_sent = Some(Instant::now());
                        proc::kill(info.pid, libc::SIGTERM);
                    }
                }
            }
        }
    }

    /// No worker can start: end every queued task as crashed instead of leaving it to hang.
    fn fail_queue(&self) {
        let v = self.cfg.view;
        let q = &v.header().queue;
        loop {
            v.lock(TAG_ZYGOTE);
            let head = q.head.load(SeqCst);
            let idx = (head != q.tail.load(SeqCst)).then(|| v.ring(head).load(SeqCst));
            if idx.is_some() {
                q.head.store(head.wrapping_add(1), SeqCst);
            }
            v.unlock();
            let Some(idx) = idx else { break };
            let t = v.task(idx);
            if v.transition(t, T_QUEUED, T_RUNNING) {
                for i in t.next.load(SeqCst)..t.n.load(SeqCst) {
                    // The task is ours (RUNNING, no worker alive).
                    v.push_failure(t, Rec { item: i, status: Status::Crashed as i32, ..Rec::default() });
                }
                t.next.store(t.n.load(SeqCst), SeqCst);
                v.finish(t, T_RUNNING, T_DONE);
            }
        }
    }

    fn kill_all(&mut self) {
        for w in self.workers.iter().filter(|w| w.alive) {
            proc::kill(w.pid, libc::SIGKILL);
        }
        for w in self.workers.iter_mut().filter(|w| w.alive) {
            let _ = proc::reap(w.pid, true);
            w.alive = false;
        }
    }
}

fn raw_status(e: Exit) -> i32 {
    match e {
        Exit::Code(c) => c << 8,
        Exit::Signal { sig, core } => sig | if core { 0x80 } else { 0 },
    }
}
