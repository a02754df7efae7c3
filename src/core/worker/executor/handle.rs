//! The worker's side of its executors: forking them, handing items over, waiting, copying
//! what they print, and dying the way an executor died.

use super::child::executor_main;
use super::output::{self, Stream};
use super::{spin_then_yield, Job, Mailbox, SandboxSetup, DISCARD_TERM, FAILED, READY};
use crate::core::shm::{View, WorkerSlot, MSG_LEN, PAGE};
use crate::core::worker::task_calls::set_task_error;
use crate::sys::mem::Mapping;
use crate::sys::proc::OwnedFd;
use crate::sys::{proc, sandbox};
use std::cell::Cell;
use std::os::raw::c_int;
use std::rc::Rc;
use std::sync::atomic::Ordering::*;
use std::time::Duration;

/// A sandboxed worker's executors: the one that runs its tasks now, the one retired before it
/// (killed, maybe not reaped yet), and the two windows they take turns with. A retired executor
/// may run on for a moment after its kill; it has only the other window mapped, and is reaped
/// before that window is handed to the next executor.
pub(in crate::core::worker) struct Executors {
    setup: SandboxSetup,
    windows: [Mapping; 2],
    now: Rc<Executor>,
    retired: Option<libc::pid_t>,
    /// Tasks the current executor ran.
    ran: u64,
}

impl Executors {
    /// Starts the first executor once the initializer ran, and waits until it is confined.
    /// `window`: the most any output may take (the pool's heap). Fails with the reason.
    pub(in crate::core::worker) fn start(
        v: &View,
        setup: SandboxSetup,
        window: usize,
        slot: &WorkerSlot,
    ) -> Result<Executors, String> {
        let map = || {
            Mapping::new_shared("libpool-executor", PAGE + window)
                .map_err(|e| format!("the executor's output window ({window} bytes): {e}"))
        };
        let windows = [map()?, map()?];
        proc::interrupt_waits_on(libc::SIGCHLD); // an executor's death ends the worker's futex waits
        let now = Rc::new(Executor::fork_retrying(v, setup, &windows, 0, slot)?);
        Ok(Executors { setup, windows, now, retired: None, ran: 0 })
    }

    /// The executor that runs tasks now.
    pub(in crate::core::worker) fn now(&self) -> Rc<Executor> {
        self.now.clone()
    }

    /// After a task: once the executor ran its share (`sandbox_tasks_per_process`), it is
    /// killed and a fresh one forked in the other window, so that code the task left running
    /// there (a thread, a patched loop) never sees the next task.
    pub(in crate::core::worker) fn task_ended(&mut self, v: &View, slot: &WorkerSlot) -> Result<(), String> {
        self.ran += 1;
        if self.ran < self.setup.tasks_per_process {
            return Ok(());
        }
        if let Some(pid) = self.retired.take() {
            let _ = proc::reap(pid, true); // the window it used is the next one's
        }
        let turn = 1 - self.now.turn;
        proc::kill(self.now.pid, libc::SIGKILL);
        self.retired = Some(self.now.pid);
        self.now = Rc::new(Executor::fork_retrying(v, self.setup, &self.windows, turn, slot)?);
        self.ran = 0;
        Ok(())
    }
}

impl Drop for Executors {
    fn drop(&mut self) {
        proc::kill(self.now.pid, libc::SIGKILL);
        let _ = proc::reap(self.now.pid, true);
        if let Some(pid) = self.retired {
            let _ = proc::reap(pid, true);
        }
    }
}

/// One executor, as its worker sees it: its pid and its window (mailbox first).
pub(in crate::core::worker) struct Executor {
    pid: libc::pid_t,
    /// Which of the worker's two windows it has, and where that is mapped.
    turn: usize,
    base: *mut u8,
    len: usize,
    seq: Cell<u32>,
    discard_term: Cell<bool>,
    /// The worker's slot, where a refusal is noted before the worker dies.
    slot: *const WorkerSlot,
    /// What the executor prints (`output.rs`), and the eventfd it rings when `done` moved
    /// while the worker sleeps.
    streams: Vec<Stream>,
    wake: OwnedFd,
}

/// The executor's ends of its pipes and eventfd, as raw descriptors in the child.
#[derive(Clone, Copy)]
pub(super) struct Ends {
    pub(super) out: c_int,
    pub(super) err: c_int,
    pub(super) wake: c_int,
}

impl Executor {
    /// `fork`, again while the executor is killed from outside (SIGKILL) before it is confined:
    /// someone killing processes at random must not take the worker down with its executor.
    fn fork_retrying(
        v: &View,
        setup: SandboxSetup,
        windows: &[Mapping; 2],
        turn: usize,
        slot: &WorkerSlot,
    ) -> Result<Executor, String> {
        let mut tries = 0;
        loop {
            match Executor::fork(v, setup, windows, turn, slot) {
                Err((_, true)) if tries < 20 => tries += 1,
                r => return r.map_err(|(msg, _)| msg),
            }
        }
    }

    /// Forks an executor with window `turn` (nobody else's any more: its last user was reaped)
    /// and waits until it is confined. The error says whether it was killed (SIGKILL).
    fn fork(
        v: &View,
        setup: SandboxSetup,
        windows: &[Mapping; 2],
        turn: usize,
        slot: &WorkerSlot,
    ) -> Result<Executor, (String, bool)> {
        let w = &windows[turn];
        // SAFETY: the mailbox page starts the window mapping, which only this worker uses now.
        unsafe { std::ptr::write_bytes(w.base(), 0, std::mem::size_of::<Mailbox>()) };
        let io = |e: std::io::Error| (format!("the executor's pipes: {e}"), false);
        let (streams, write_ends) = output::pipes().map_err(io)?;
        let wake = proc::eventfd().map_err(io)?;
        let out = write_ends.out.0;
        let ends = Ends { out, err: write_ends.err.as_ref().map_or(out, |e| e.0), wake: wake.0 };
        let me = proc::getpid();
        let pid = match proc::fork(Some(v.public() as usize), &setup.keep()) {
            Ok(proc::Forked::Child) => executor_main(v, setup, w, &windows[1 - turn], ends, me),
            Ok(proc::Forked::Parent(pid)) => pid,
            Err(e) => return Err((format!("fork of the executor: {e}"), false)),
        };
        drop(write_ends);
        let ex = Executor {
            pid,
            turn,
            base: w.base(),
            len: w.len(),
            seq: Cell::new(0),
            discard_term: Cell::new(false),
            slot,
            streams,
            wake,
        };
        match ex.wait(|d| d == READY || d == FAILED) {
            Ok(READY) => Ok(ex),
            Ok(_) => Err((ex.message().unwrap_or_else(|| "the executor could not enter its sandbox".into()), false)),
            Err(e) => {
                let killed = matches!(e, proc::Exit::Signal { sig: libc::SIGKILL, .. });
                Err((format!("the executor {e} before entering its sandbox"), killed))
            }
        }
    }

    pub(in crate::core::worker) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    fn mailbox(&self) -> &Mailbox {
        // SAFETY: the first page of the window mapping holds the mailbox (zeroed memory is a
        // valid one); the worker's `Executors` keeps the mapping while this executor exists.
        unsafe { &*(self.base as *const Mailbox) }
    }

    /// The output window, as the worker reads it.
    pub(in crate::core::worker) fn window(&self) -> *const u8 {
        // SAFETY: the window follows the mailbox page inside the mapping.
        unsafe { self.base.add(PAGE) }
    }

    pub(in crate::core::worker) fn window_len(&self) -> usize {
        self.len - PAGE
    }

    /// The next item after a SIGTERM sent for the last one: the executor drops it if pending.
    /// Waits until it did, so that if the signal kills it, the item that timed out is blamed.
    pub(in crate::core::worker) fn after_term(&self) {
        self.discard_term.set(true);
        let job = Job {
            kind: u32::MAX,
            func: 0,
            ctx: std::ptr::null_mut(),
            input: std::ptr::null_mut(),
            isz: 0,
            osz: 0,
            first: 0,
            count: 0,
        };
        self.hand_over(&job, false);
    }

    /// Runs one item in the executor and returns its status (`rc`), with its message handed to
    /// this worker's `pool_task_error`, and for a variable-size task, its length. If the
    /// executor dies meanwhile, so does this worker, the same way.
    pub(in crate::core::worker) fn call(&self, j: &Job) -> (c_int, usize) {
        self.hand_over(j, true)
    }

    /// `call`; `new_item`: the job is an item of its own (an executor that dies before taking
    /// it did not run it), not a step of the item before.
    fn hand_over(&self, j: &Job, new_item: bool) -> (c_int, usize) {
        let mb = self.mailbox();
        mb.kind.store(j.kind, Relaxed);
        mb.flags.store(if self.discard_term.replace(false) { DISCARD_TERM } else { 0 }, Relaxed);
        mb.func.store(j.func as u64, Relaxed);
        mb.ctx.store(j.ctx as u64, Relaxed);
        mb.input.store(j.input as u64, Relaxed);
        mb.isz.store(j.isz as u64, Relaxed);
        mb.osz.store(j.osz as u64, Relaxed);
        mb.first.store(j.first as u64, Relaxed);
        mb.count.store(j.count as u64, Relaxed);
        let seq = self.seq.get().wrapping_add(1) % FAILED;
        self.seq.set(seq);
        mb.job.store(seq, Release);
        crate::sys::futex::wake(&mb.job, 1);
        kp!(WorkerItemHandedOver);
        if let Err(e) = self.wait(|d| d == seq) {
            let unstarted = new_item && mb.taken.load(Acquire) != seq;
            self.die_like(e, unstarted);
        }
        kp!(WorkerItemHandedBack);
        if let Some(m) = self.message() {
            let _ = set_task_error(m.as_bytes());
        }
        let len = (mb.out_len.load(Relaxed) as usize).min(j.osz);
        (mb.rc.load(Relaxed), len)
    }

    /// The item's message, if the executor gave one (its length checked).
    fn message(&self) -> Option<String> {
        let mb = self.mailbox();
        let len = (mb.msg_len.load(Acquire) as usize).checked_sub(1)?.min(MSG_LEN - 1);
        let bytes: Vec<u8> = mb.msg[..len].iter().map(|b| b.load(Relaxed)).collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until `done` satisfies `ok`, or the executor died (its exit), copying what it
    /// prints meanwhile (a full pipe would stop it) and, once it is done, all it printed, so
    /// that output stays in order with results. Spins and yields a little first (short items),
    /// then sleeps on its pipes and eventfd; SIGCHLD ends a sleep, and a bound catches a
    /// SIGCHLD that came just before it.
    fn wait(&self, ok: impl Fn(u32) -> bool) -> Result<u32, proc::Exit> {
        let mb = self.mailbox();
        let r = self.await_done(mb, ok);
        self.streams.iter().for_each(|s| s.copy(true));
        r
    }

    fn await_done(&self, mb: &Mailbox, ok: impl Fn(u32) -> bool) -> Result<u32, proc::Exit> {
        if spin_then_yield(Duration::from_micros(200), || ok(mb.done.load(Acquire))) {
            return Ok(mb.done.load(Acquire));
        }
        loop {
            let d = mb.done.load(Acquire);
            if ok(d) {
                return Ok(d);
            }
            if let Ok(Some(e)) = proc::reap(self.pid, false) {
                return Err(e);
            }
            mb.sleeping.store(1, SeqCst);
            if !ok(mb.done.load(SeqCst)) {
                let mut fds: Vec<c_int> = self.streams.iter().map(Stream::poll_fd).collect();
                fds.push(self.wake.0);
                let ready = proc::poll_any(&fds, 20);
                for (s, &r) in self.streams.iter().zip(&ready) {
                    if r {
                        s.copy(false);
                    }
                }
                if ready[fds.len() - 1] {
                    proc::eventfd_drain(self.wake.0);
                }
            }
            mb.sleeping.store(0, SeqCst);
        }
    }

    /// The executor died running an item: this worker dies the same way, after noting a
    /// refused call where the zygote reads it. An executor that died before it took the item
    /// (between items: a thread an earlier task left behind, a kill) did not run it: the item
    /// is then marked not started, and the zygote hands it to the next worker.
    fn die_like(&self, e: proc::Exit, unstarted: bool) -> ! {
        // SAFETY: the worker slot lives in the pool's mapping, which outlives this process.
        let me = unsafe { &*self.slot };
        let mb = self.mailbox();
        let r = mb.refused.load(Acquire);
        let sigsys = matches!(e, proc::Exit::Signal { sig: libc::SIGSYS, .. });
        if sigsys && r != 0 && (r == sandbox::UNKNOWN || r <= 4096) {
            me.refused.store(r, SeqCst);
        }
        if unstarted {
            let p = me.progress.load(SeqCst);
            if p & 1 == 1 {
                me.run.store(0, SeqCst);
                me.deadline.store(0, SeqCst);
                me.progress.store(p - 1, SeqCst);
            }
        }
        kp!(WorkerMirrorsDeath);
        proc::die_like(e)
    }
}
