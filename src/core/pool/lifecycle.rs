//! Lifecycle: start-up, termination, cancellation, and watching over the zygote.

use super::*;

impl Shared {
    /// Stops everything now: no task starts, workers are killed, unfinished tasks end CLOSED.
    pub(crate) fn terminate(&self) {
        {
            let mut life = lock(&self.life.st);
            life.closed = true;
            life.terminated = true;
        }
        self.view.header().control.terminate.store(ON, SeqCst);
        self.view.wake_all_workers();
        self.ring_zygote();
        self.reap_zygote();
        self.close_unfinished();
    }

    /// Waits for every worker to finish its initializer; fails if one died in it, or stayed in
    /// it past the start-up bound (the zygote kills it then).
    pub(super) fn await_workers(&self, opts: &Options) -> Result<()> {
        let ctl = &self.view.header().control;
        loop {
            let r = ctl.ready.load(SeqCst);
            let failed = ctl.init_failed.load(SeqCst);
            if failed != 0 {
                self.terminate();
                self.reap_zygote();
                if ctl.init_hung.load(SeqCst) != 0 {
                    return Err(Error::new(Status::TimedOut, start_timed_out(opts)));
                }
                let exit = proc::Exit::from_raw(failed - 1);
                if let (proc::Exit::Code(code), Some((rc, msg))) = (exit, self.view.init_refusal()) {
                    use super::super::worker::{EXIT_INIT_REFUSED, EXIT_NO_ALIAS, EXIT_SANDBOX_FAILED};
                    match code {
                        EXIT_SANDBOX_FAILED => {
                            let why = format!("a worker could not enter its sandbox: {msg}");
                            return Err(Error::new(Status::Sys, why));
                        }
                        EXIT_NO_ALIAS => {
                            let why =
                                format!("a worker could not map the pool's memory a second time, read-write: {msg}");
                            return Err(Error::new(Status::Sys, why));
                        }
                        EXIT_INIT_REFUSED => {
                            let msg = if msg.is_empty() { String::new() } else { format!(": {msg}") };
                            let why = format!("the workers' initializer returned {rc}{msg}");
                            return Err(Error::new(Status::Task, why));
                        }
                        _ => {}
                    }
                }
                return Err(Error::new(
                    Status::Crashed,
                    format!("a worker died while starting (in the initializer): {exit}"),
                ));
            }
            if r as usize >= self.view.layout().nworkers {
                return Ok(());
            }
            if self.zygote_dead() {
                self.reap_zygote();
                let errno = ctl.fork_errno.load(SeqCst);
                let step = if ctl.start_step.load(SeqCst) == STEP_SIGNALFD { "signalfd" } else { "fork" };
                let why =
                    if errno != 0 { format!(": {}", std::io::Error::from_raw_os_error(errno)) } else { String::new() };
                return Err(Error::new(
                    Status::Sys,
                    format!("the pool's zygote process exited while starting workers ({step}{why})"),
                ));
            }
            crate::sys::futex::wait(&ctl.ready, r, Some(Instant::now() + Duration::from_millis(50)));
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        lock(&self.life.st).terminated
    }

    pub(crate) fn driver_started(&self) -> Result<()> {
        self.check_open(false)?;
        lock(&self.life.st).drivers += 1;
        Ok(())
    }

    /// Asks for task `slot` to be cancelled: taken out of the queue if it waits there, else
    /// its worker is killed by the zygote (which then ends the item as cancelled). Does not wait.
    pub(crate) fn cancel_task(&self, slot: u32) {
        self.view.task(slot).cancelled.store(1, SeqCst);
        if self.task_state(slot) == T_QUEUED && self.lock_queue().is_ok() {
            kp!(HostCancelLocked);
            let removed = self.view.remove_queued(slot);
            self.view.unlock();
            if removed {
                return;
            }
        }
        if self.task_state(slot) == T_RUNNING {
            self.ring_zygote();
        }
    }

    /// How items of a CLOSED task that never ran end: cancelled or closed.
    /// Whether what a final task left in shared memory is consistent: failure records in item
    /// order, one per item at most, each a failure status; `next` and a variable-size result's
    /// length within bounds. If not, the block was overwritten: the pool is ended as corrupt.
    pub(crate) fn check_records(&self, slot: u32, len: usize, max_out: usize) -> bool {
        let t = self.view.task(slot);
        let mut prev: Option<u64> = None;
        let ok = self.view.failures(t).iter().all(|r| {
            let in_order = r.item < len as u64 && prev.is_none_or(|p| r.item > p);
            prev = Some(r.item);
            in_order && Status::of(r.status).is_some_and(|s| s != Status::Ok)
        }) && t.next.load(SeqCst) <= len as u64
            && t.out_len.load(SeqCst) <= max_out as u64;
        if !ok {
            self.corrupt.store(true, SeqCst);
            self.ring_zygote(); // never trust this pool again; waiters end it (watchdog)
        }
        ok
    }

    /// The record of an item that never ran: cancelled, or closed (`code` says whether
    /// because the zygote died, see `Info::error`).
    pub(crate) fn unrun(&self, slot: u32, item: u64) -> Rec {
        let (status, code) = if self.corrupt.load(SeqCst) {
            (Status::Corrupt, 0)
        } else if self.view.task(slot).cancelled.load(SeqCst) != 0 {
            (Status::Cancelled, 0)
        } else {
            (Status::Closed, i32::from(self.zygote_died.load(SeqCst)))
        };
        Rec { item, status: status as i32, code, ..Rec::default() }
    }

    /// Wakes the zygote to look at kill requests, deadlines and termination. A write to its
    /// doorbell, not a signal: it works even if the host has since lost the right to signal
    /// the zygote (dropped privileges).
    pub(super) fn ring_zygote(&self) {
        proc::eventfd_signal(self.fds.bell.0);
    }

    /// Ends every queued or running task as CLOSED (once no worker can touch them).
    pub(super) fn close_unfinished(&self) {
        let _runners = lock(&self.runner_gate);
        let fresh = lock(&self.slots).fresh;
        for i in 0..fresh {
            let t = self.view.task(i);
            // Until final: a remote runner may still take a queued task between our read and
            // the change (it pops without the runner gate), and a task it took must close too.
            loop {
                let s = t.state.load(SeqCst) & !WAITER;
                if !matches!(phase(s), T_QUEUED | T_RUNNING) || self.view.finish(t, s, T_CLOSED) {
                    break;
                }
            }
        }
        self.notify_event_fd(); // an event loop learns that everything pending has ended
    }

    /// For calls that do not wait (`pool_async_ready`...): the watchdog, at most every
    /// `WATCH_SLICE`, so that a loop that only polls still sees a dead zygote end the pool.
    pub(crate) fn watchdog_now_and_then(&self) {
        let now = proc::monotonic_ns();
        let last = self.last_watch.load(Relaxed);
        if now.saturating_sub(last) >= WATCH_SLICE.as_nanos() as u64
            && self.last_watch.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
        {
            self.watchdog();
        }
    }

    /// Once an event loop uses the pool's event fd: a thread that sleeps until the zygote
    /// exits, then, unless the pool is being ended on purpose, ends it and makes the fd
    /// readable, so that a loop sleeping on the fd learns that a zygote killed from outside
    /// took its work with it. It holds the pool only weakly; `join` waits for it.
    pub(crate) fn start_watcher(self: &Arc<Self>) -> Result<()> {
        let mut w = lock(&self.watcher);
        if w.is_some() {
            return Ok(());
        }
        let Some(z) = lock(&self.zygote).clone() else { return Ok(()) };
        let weak = Arc::downgrade(self);
        let h = thread::spawn("pool-watch", move || {
            z.exited(-1);
            drop(z);
            if let Some(sh) = weak.upgrade() {
                let ending = {
                    let life = lock(&sh.life.st);
                    life.terminated || life.joining
                };
                if !ending {
                    sh.watchdog();
                }
                sh.notify_event_fd();
            }
        })
        .map_err(|e| Error::sys("starting the event fd's watcher thread", e))?;
        *w = Some(h);
        Ok(())
    }

    /// Waits for the watcher thread, once the zygote is gone (it wakes then).
    pub(crate) fn join_watcher(&self) {
        if let Some(h) = lock(&self.watcher).take() {
            if self.check_owner().is_err() {
                h.abandon(); // a forked child's copy of the handle
            } else if !h.is_current() {
                h.join();
            } // else the watcher itself, which ends on its own (detached)
        }
    }

    pub(super) fn zygote_dead(&self) -> bool {
        lock(&self.zygote).as_ref().is_none_or(|z| z.exited(0))
    }

    /// Waits for the zygote to exit (it kills and reaps every worker, and what their tasks
    /// started, before it does), then reaps it. If it died abnormally (killed from outside),
    /// its workers die on their own (parent-death signal, and a kill of the pool's process
    /// group here): wait until they are gone, so that none still writes into shared memory
    /// when the host ends their tasks. `reaping` makes sure only one thread waits for the pid;
    /// the handle stays available meanwhile so that another thread can still ring the zygote.
    ///
    /// After a terminate the zygote is given ZYGOTE_EXIT_WAIT, and killed at once if stopped:
    /// never hang the host. A join after close waits for as long as the work takes (a task may
    /// run for hours), unless a terminate comes meanwhile.
    pub(super) fn reap_zygote(&self) {
        let _one = lock(&self.reaping);
        let Some(h) = lock(&self.zygote).clone() else { return };
        let mut until = None;
        while !h.exited(100) {
            if until.is_none() && self.view.header().control.terminate.load(SeqCst) == ON {
                until = Some(Instant::now() + ZYGOTE_EXIT_WAIT);
            }
            if until.is_some_and(|t| proc::is_stopped(h.pid) || Instant::now() >= t) {
                let _ = h.signal(libc::SIGKILL);
                break;
            }
        }
        proc::kill_group(h.pid, libc::SIGKILL); // before reaping: the zombie keeps the group id
        let exit = proc::reap(h.pid, true).ok().flatten();
        if exit == Some(proc::Exit::Code(zygote::EXIT_CORRUPT)) {
            self.corrupt.store(true, SeqCst);
        }
        if exit != Some(proc::Exit::Code(0)) {
            // The zygote died without ending its workers and what their tasks started: they
            // die with it (parent-death signal) unless a task undid that, or left a process
            // behind. Those are the processes that map this pool's memory somewhere else than
            // the host does (a worker's own alias; whatever it forks inherits that), where the
            // host and the children it forked itself map it only where the host does, however
            // they split that range (mprotect, mlock): kill them all and wait, so that none
            // writes into memory the host reuses.
            let until = Instant::now() + Duration::from_secs(2);
            let (me, lo) = (proc::getpid(), self.map.base() as usize);
            if let Some(ours) = proc::mapping_at(lo) {
                let range = lo..lo + self.map.len();
                let left: Vec<_> =
                    proc::all_pids().into_iter().filter(|&p| p != me && proc::maps_outside(p, &ours, &range)).collect();
                for &pid in &left {
                    proc::kill(pid, libc::SIGKILL);
                }
                for pid in left {
                    while !proc::is_dead(pid) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        *lock(&self.zygote) = None;
    }

    /// Called by waiters now and then: if the zygote died behind our back, nothing will ever
    /// finish, so end the pool instead of hanging.
    pub(crate) fn watchdog(&self) {
        if self.is_terminated() {
            if lock(&self.zygote).is_none() {
                self.close_unfinished(); // nothing can run any more: nothing may stay pending
            }
            return;
        }
        if self.corrupt.load(SeqCst) || self.view.corrupt().is_some() {
            self.corrupt.store(true, SeqCst);
            self.terminate();
        } else if self.zygote_dead() {
            self.zygote_died.store(true, SeqCst);
            self.terminate();
        }
    }
}

/// Why `pool_create` gave up on a worker that was still starting at the start-up bound.
fn start_timed_out(opts: &Options) -> String {
    let bound = opts.start_timeout.map_or(0.0, |d| d.as_secs_f64());
    let what = match opts.initializer {
        Some(Init::Plain(..)) => "the workers' initializer did not return",
        Some(Init::Checked(..)) => "the workers' initializer (initializer_ex) did not return",
        None => "a worker did not start (it has no initializer: is the system overloaded?)",
    };
    format!("{what} within the start-up bound of {bound} s (start_timeout); pool_create ended every worker")
}
