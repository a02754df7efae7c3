//! Lifecycle: start-up, termination, cancellation, and watching over the zygote.

use super::*;

impl Shared {
    /// Stops everything now: no task starts, workers are killed, unfinished tasks end CLOSED.
    pub(crate) fn terminate(&self) {
        {
            let mut life = lock(&self.life);
            life.closed = true;
            life.terminated = true;
        }
        self.view.header().control.terminate.store(1, SeqCst);
        self.view.wake_all_workers();
        if let Some(z) = lock(&self.zygote).as_ref() {
            let _ = z.h.signal(libc::SIGTERM);
        }
        self.reap_zygote();
        self.close_unfinished();
    }

    /// Waits for every worker to finish its initializer; fails if one died in it.
    pub(super) fn await_workers(&self) -> Result<()> {
        let ctl = &self.view.header().control;
        loop {
            let r = ctl.ready.load(SeqCst);
            let failed = ctl.init_failed.load(SeqCst);
            if failed != 0 {
                self.terminate();
                self.reap_zygote();
                let exit = proc::Exit::from_raw(failed - 1);
                return Err(Error::new(
                    Status::Crashed,
                    format!("a worker died while starting (in the initializer): {exit}"),
                ));
            }
            if r as usize >= self.nworkers {
                return Ok(());
            }
            if self.zygote_dead() {
                self.reap_zygote();
                return Err(Error::new(Status::Sys, "the pool's zygote process exited while starting workers"));
            }
            crate::sys::futex::wait(&ctl.ready, r, Some(Instant::now() + Duration::from_millis(50)));
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        lock(&self.life).terminated
    }

    pub(crate) fn driver_started(&self) -> Result<()> {
        self.check_open(false)?;
        lock(&self.life).drivers += 1;
        Ok(())
    }

    pub(crate) fn driver_finished(&self) {
        lock(&self.life).drivers -= 1;
        self.life_cv.notify_all();
    }

    /// Asks for task `slot` to be cancelled: dropped if queued, its worker killed if running
    /// (the zygote then reports the item as cancelled). Does not wait.
    pub(crate) fn cancel_task(&self, slot: u32) {
        let t = self.view.task(slot);
        t.cancelled.store(1, SeqCst);
        if self.view.finish(t, T_QUEUED, T_CLOSED) {
            return;
        }
        if self.task_state(slot) == T_RUNNING {
            for w in 0..self.nworkers {
                if self.view.worker(w).current.load(SeqCst) == slot {
                    self.view.worker(w).kill_req.store(slot + 1, SeqCst);
                }
            }
            self.ring_zygote();
        }
    }

    /// How items of a CLOSED task that never ran end: cancelled or closed.
    pub(crate) fn closed_status(&self, slot: u32) -> Status {
        if self.view.task(slot).cancelled.load(SeqCst) != 0 {
            Status::Cancelled
        } else {
            Status::Closed
        }
    }

    /// Wakes the zygote to look at kill requests and deadlines.
    pub(super) fn ring_zygote(&self) {
        if let Some(z) = lock(&self.zygote).as_ref() {
            let _ = z.h.signal(libc::SIGUSR1);
        }
    }

    /// Ends every queued or running task as CLOSED (once no worker can touch them).
    pub(super) fn close_unfinished(&self) {
        let fresh = lock(&self.slots).fresh;
        for i in 0..fresh {
            let t = self.view.task(i);
            for from in [T_QUEUED, T_RUNNING] {
                self.view.finish(t, from, T_CLOSED);
            }
        }
    }

    pub(super) fn zygote_dead(&self) -> bool {
        lock(&self.zygote).as_ref().is_none_or(|z| z.h.exited(0))
    }

    /// Waits for the zygote (which reaps its workers before it exits) and releases its pidfd.
    /// The zygote handle stays available meanwhile, so another thread can still signal it (a
    /// `terminate` while a `join` waits); `reaping` makes sure only one thread waits for the pid.
    pub(super) fn reap_zygote(&self) {
        let _one = lock(&self.reaping);
        let Some(pid) = lock(&self.zygote).as_ref().map(|z| z.h.pid) else { return };
        let _ = proc::reap(pid, true);
        *lock(&self.zygote) = None;
    }

    /// Called by waiters now and then: if the zygote died behind our back, nothing will ever
    /// finish, so end the pool instead of hanging.
    pub(crate) fn watchdog(&self) {
        if !self.is_terminated() && self.zygote_dead() {
            self.terminate();
        }
    }
}
