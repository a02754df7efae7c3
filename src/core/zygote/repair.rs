//! The zygote's repairs: reaping workers, taking over a dead worker's queue lock, and ending or
//! requeueing the task it ran (PROTOCOL.md, "The worker's steps and the zygote's repair").

use super::*;

impl Zygote {
    /// Reaps every child that exited. A worker's lock is repaired at once (others may be
    /// waiting for it); the rest of its death is handled by `handle_deaths`. Other children are
    /// orphans of tasks, reparented to us (subreaper): reaping them is all they need.
    pub(super) fn reap(&mut self) {
        while let Some((pid, exit)) = proc::reap_any() {
            let Some(w) = self.workers.iter().position(|x| x.alive && x.pid == pid) else { continue };
            // What its tasks left running in its process group dies with it, before its task is
            // ended: a process a cancelled or timed-out task forked could otherwise go on writing
            // the caller's buffer after the cancel returned. (The group's id outlives the worker
            // while members remain, so it names no one else.)
            proc::kill_group(pid, libc::SIGKILL);
            self.workers[w].alive = false;
            kp!(ZygoteReaped);
            if self.cfg.view.lock_owner() == worker_tag(w) {
                self.cfg.view.repair_pop(w);
                kp!(ZygoteLockRepaired);
            }
            self.deaths.push((w, exit));
        }
    }

    /// The queue lock for the zygote: never waits long for an owner that may be dead.
    pub(super) fn lock(&mut self) {
        loop {
            let Err(owner) = self.cfg.view.try_lock(TAG_ZYGOTE) else { return };
            if self.cfg.view.corrupt().is_some() {
                self.die_corrupt();
            }
            if proc::getppid() != self.cfg.host || proc::poll_readable(self.cfg.lifeline, 0) {
                // The host died or exec'd, perhaps holding the lock: the pool is over.
                self.kill_all();
                proc::exit_now(0);
            }
            self.reap(); // the owner may have died since we last looked
            self.unstick();
            self.cfg.view.wait_lock_change(owner);
        }
    }

    /// A worker stopped by a signal while it holds the queue lock would stall every submission
    /// and every other worker for as long as it stays stopped: after a grace period it is
    /// killed, and its pop repaired like that of any worker that dies holding the lock.
    pub(super) fn unstick(&mut self) {
        let owner = self.cfg.view.lock_owner();
        let held = (0..self.workers.len()).find(|&w| self.workers[w].alive && worker_tag(w) == owner);
        let Some(pid) = held.map(|w| self.workers[w].pid).filter(|&p| proc::is_stopped(p)) else {
            self.stopped_owner = None;
            return;
        };
        match self.stopped_owner {
            Some((p, since)) if p == pid => {
                if since.elapsed() >= STOPPED_GRACE {
                    proc::kill(pid, libc::SIGKILL);
                }
            }
            _ => self.stopped_owner = Some((pid, Instant::now())),
        }
    }

    /// The header was overwritten (a task wrote through memory it had to look for): nothing in
    /// shared memory can be trusted. End everything; the exit status tells the host why.
    pub(super) fn die_corrupt(&mut self) -> ! {
        self.kill_all();
        proc::exit_now(EXIT_CORRUPT)
    }

    pub(super) fn handle_deaths(&mut self) {
        let died = !self.deaths.is_empty();
        while let Some((w, exit)) = self.deaths.pop() {
            self.on_death(w, exit);
        }
        if died && self.cfg.sandbox.is_some() {
            self.kill_orphans();
        }
    }

    /// In a sandboxed pool no task can start a process, so a child of ours that is not a worker
    /// is an executor whose worker died, reparented to us (subreaper): its parent-death signal
    /// should have ended it; whatever kept it alive, it goes now. (Our own children: their pids
    /// cannot be reused before we reap them.)
    fn kill_orphans(&mut self) {
        for pid in proc::own_children() {
            if !self.workers.iter().any(|x| x.alive && x.pid == pid) {
                proc::kill(pid, libc::SIGKILL);
            }
        }
    }

    pub(super) fn on_death(&mut self, w: usize, exit: Exit) {
        let v = self.cfg.view;
        let slot = v.worker(w);
        // Deaths in the initializer count against it, unless by SIGKILL (killed from outside,
        // or out of memory): a pool is not declared broken for what was done to it.
        let prev = slot.state.swap(W_EXITED, SeqCst);
        let hung = prev == W_HUNG; // killed at the start-up bound: a failure of the initializer
        let in_init = hung || (prev == W_INIT && !matches!(exit, Exit::Signal { sig: libc::SIGKILL, .. }));
        let claim = slot.claim.load(SeqCst);
        if claim != CLAIM_NONE {
            let (idx, epoch) = claim_parts(claim);
            if idx < MAX_TASKS {
                let t = v.task(idx);
                if t.epoch.load(SeqCst) == epoch && t.state.load(SeqCst) & !WAITER == running(w) {
                    self.recover(idx, w, exit, claim & CLAIM_KILL != 0);
                } else {
                    // It ended before the death, maybe before waking its waiters or making the
                    // event fd readable (a spurious wake-up is harmless; a lost one is not).
                    v.wake_task(t);
                    if t.flags.load(SeqCst) & F_NOTIFY == 0 {
                        self.notify_event_fd();
                    }
                }
            }
        }
        slot.claim.store(CLAIM_NONE, SeqCst);
        slot.progress.store(0, SeqCst);
        slot.run.store(0, SeqCst);
        slot.deadline.store(0, SeqCst);
        kp!(ZygoteDeathHandled);
        let ctl = &v.header().control;
        if in_init {
            ctl.init_hung.store(if hung { ON } else { 0 }, SeqCst); // before the failure is seen
            if self.starting {
                ctl.init_failed.store(raw_status(exit) + 1, SeqCst);
                crate::sys::futex::wake(&ctl.ready, i32::MAX);
            } else {
                self.init_failures += 1;
                if self.init_failures >= MAX_INIT_FAILURES {
                    ctl.broken.store(ON, SeqCst);
                }
            }
        } else if prev == W_READY {
            self.init_failures = 0; // a replacement got through the initializer
        }
        if ctl.ready.load(SeqCst) as usize >= self.workers.len() {
            self.starting = false;
        }
        v.signal_event(true);
    }

    /// Worker `w` died running task `idx` (PROTOCOL.md): the item that may have started ends
    /// (crashed, timed out or cancelled), then the task is requeued from the next item, or
    /// ends if nothing is left, it was cancelled, or the pool is terminating.
    pub(super) fn recover(&mut self, idx: u32, w: usize, exit: Exit, killed_for_cancel: bool) {
        let v = self.cfg.view;
        let t = v.task(idx);
        let slot = v.worker(w);
        let n = t.n.load(SeqCst);
        let cancelled = killed_for_cancel || t.cancelled.load(SeqCst) != 0;
        let p = slot.progress.load(SeqCst);
        let (i, started) = ((p >> 1).min(n), p & 1 != 0);
        let last = v.last_failure(t).filter(|r| r.item >= i && r.item < n);
        let next = match last {
            Some(r) => r.item + 1, // recorded and counted before the death
            None if started && i < n => {
                let run = slot.run.load(SeqCst);
                let status = if run & RUN_TERM != 0 {
                    Status::TimedOut
                } else if cancelled {
                    Status::Cancelled
                } else {
                    Status::Crashed
                };
                let pid = task_pid(slot, self.workers[w].pid);
                // A call the sandbox refused killed it: the record names the call (`code`).
                let code = match slot.refused.load(SeqCst) {
                    _ if status != Status::Crashed => 0,
                    0 if self.cfg.sandbox.is_some() && matches!(exit, Exit::Signal { sig: libc::SIGSYS, .. }) => {
                        crate::sys::sandbox::UNKNOWN as i32 // refused with SIGSYS blocked, or another ABI
                    }
                    n => n as i32,
                };
                let rec =
                    Rec { item: i, status: status as i32, code, pid, wstatus: raw_status(exit), ..Rec::default() };
                v.push_failure(t, rec, None);
                i + 1
            }
            // No item had started: the task is requeued from the same item, unless its runners
            // keep dying there (something about this task kills every worker before its item
            // starts): then that item fails, so that a map cannot go round forever.
            None => {
                let key = claim_word(idx, t.epoch.load(SeqCst));
                if self.unstarted.len() > 4096 {
                    self.unstarted.clear();
                }
                let e = self.unstarted.entry(key).or_insert((i, 0));
                if e.0 != i {
                    *e = (i, 0);
                }
                e.1 += 1;
                if e.1 >= MAX_UNSTARTED && i < n {
                    self.unstarted.remove(&key);
                    let pid = task_pid(v.worker(w), self.workers[w].pid);
                    let rec = Rec {
                        item: i,
                        status: Status::Crashed as i32,
                        pid,
                        wstatus: raw_status(exit),
                        ..Rec::default()
                    };
                    v.push_failure(t, rec, None);
                    i + 1
                } else {
                    i
                }
            }
        };
        t.next.store(next, SeqCst);
        kp!(ZygoteItemEnded);
        if next < n && cancelled {
            worker::cancel_rest(&v, t, next, None);
        }
        let notify = t.flags.load(SeqCst) & F_NOTIFY == 0;
        if t.next.load(SeqCst) >= n {
            v.finish(t, running(w), T_DONE);
        } else if v.header().control.terminate.load(SeqCst) != 0 {
            v.finish(t, running(w), T_CLOSED);
        } else {
            self.lock();
            if v.transition(t, running(w), T_QUEUED) {
                v.push_locked(idx);
            }
            kp!(ZygoteRequeued);
            v.unlock();
            v.ring_doorbell();
            return;
        }
        if notify {
            self.notify_event_fd();
        }
    }
}

/// The pid a dead worker's tasks ran in: its executor's if it had one (a sandboxed worker),
/// else its own, as the records the worker writes say.
fn task_pid(slot: &WorkerSlot, worker: libc::pid_t) -> libc::pid_t {
    match slot.task_pid.load(SeqCst) {
        p if p > 0 => p,
        _ => worker,
    }
}
