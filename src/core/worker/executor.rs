//! A sandboxed worker runs its tasks in a child of its own, the executor: the only process of
//! the pool that runs untrusted code, and one that holds no writable mapping of the pool's
//! memory. The pool is mapped there read-only from a read-only descriptor, so no `mprotect` or
//! `mremap` can make it writable; the worker's read-write alias is unmapped; the memfd's
//! descriptors are closed. What the executor may write is its mailbox and its output window, a
//! memfd of its own that the worker maps too.
//!
//! The worker (trusted: it runs no task code) keeps the pool's protocol exactly as an
//! unsandboxed worker does, item by item (PROTOCOL.md, "Sandboxed workers"). Where an
//! unsandboxed worker calls the task, it hands the item to its executor and waits; it then
//! copies the output out of the window into the task's block itself. Every result is out of the
//! executor's reach before the executor is given the next item, so a task that takes over its
//! executor can write its own output and nothing else. When the executor dies, the worker dies
//! the same way (same signal or exit status) after noting what the sandbox refused: the
//! zygote then repairs the item as for any worker's death.

use super::task_calls::{set_task_error, take_task_error, VarOut, IN_ITEM, TASK_ERROR_SET, VAR_OUT};
use super::{BlockFn, ItemFn, VarFn, EXIT_SANDBOX_FAILED, MY_PID};
use crate::core::queue::spin_until;
use crate::core::shm::{View, WorkerSlot, K_BLOCK, K_VAR, MSG_LEN, PAGE};
use crate::sys::mem::Mapping;
use crate::sys::proc::OwnedFd;
use crate::sys::{proc, sandbox};
use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::time::{Duration, Instant};

/// What a sandboxed pool's workers need for their executors: the Landlock ruleset and a
/// read-only descriptor of the pool's memory (inherited descriptors), and how many tasks one
/// executor runs before the worker replaces it.
#[derive(Clone, Copy, Debug)]
pub struct SandboxSetup {
    pub ruleset: c_int,
    pub pool: c_int,
    pub tasks_per_process: u64,
}

impl SandboxSetup {
    pub fn keep(&self) -> [c_int; 2] {
        [self.ruleset, self.pool]
    }
}

/// `done` once the executor is confined and waits for items; `FAILED` if it could not be
/// (its message is in `msg`).
const READY: u32 = u32::MAX;
const FAILED: u32 = u32::MAX - 1;
/// Job flag: a SIGTERM sent for the item before may still be pending; drop it first.
const DISCARD_TERM: u32 = 1;

/// The first page of the executor's memfd, shared by the worker and its executor. The worker
/// writes the job and then `job`; the executor writes the result and then `done`. The worker
/// never reads back what it wrote, and checks what it reads: an executor that scribbles here
/// harms only its own item.
#[repr(C, align(64))]
struct Mailbox {
    job: AtomicU32,
    /// Set to `job` by the executor when it takes the job, before it runs anything of it.
    taken: AtomicU32,
    done: AtomicU32,
    kind: AtomicU32,
    flags: AtomicU32,
    func: AtomicU64,
    ctx: AtomicU64,
    input: AtomicU64,
    isz: AtomicU64,
    /// The output's size (a variable-size task's room, `max_out`).
    osz: AtomicU64,
    first: AtomicU64,
    count: AtomicU64,
    rc: AtomicI32,
    /// 1 + the length of the item's message (`pool_task_error`), 0 for none.
    msg_len: AtomicU32,
    /// Bytes a variable-size task wrote.
    out_len: AtomicU64,
    /// The system call (number + 1) the sandbox refused, noted by the executor's SIGSYS handler.
    refused: AtomicU32,
    /// 1 while the worker sleeps on `wake` (the executor's eventfd) waiting for `done`.
    sleeping: AtomicU32,
    msg: [AtomicU8; MSG_LEN],
}

const _: () = assert!(std::mem::size_of::<Mailbox>() <= PAGE);

/// One item, as the worker hands it over.
#[derive(Clone, Copy)]
pub(super) struct Job {
    pub kind: u32,
    pub func: usize,
    pub ctx: *mut c_void,
    /// The item's input, at the address tasks see (read-only in the executor).
    pub input: *mut u8,
    pub isz: usize,
    pub osz: usize,
    pub first: usize,
    pub count: usize,
}

/// A sandboxed worker's executors: the one that runs its tasks now, the one retired before it
/// (killed, maybe not reaped yet), and the two windows they take turns with. A retired executor
/// may run on for a moment after its kill; it has only the other window mapped, and is reaped
/// before that window is handed to the next executor.
pub(super) struct Executors {
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
    pub(super) fn start(v: &View, setup: SandboxSetup, window: usize, slot: &WorkerSlot) -> Result<Executors, String> {
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
    pub(super) fn now(&self) -> Rc<Executor> {
        self.now.clone()
    }

    /// After a task: once the executor ran its share (`sandbox_tasks_per_process`), it is
    /// killed and a fresh one forked in the other window, so that code the task left running
    /// there (a thread, a patched loop) never sees the next task.
    pub(super) fn task_ended(&mut self, v: &View, slot: &WorkerSlot) -> Result<(), String> {
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
pub(super) struct Executor {
    pid: libc::pid_t,
    /// Which of the worker's two windows it has, and where that is mapped.
    turn: usize,
    base: *mut u8,
    len: usize,
    seq: Cell<u32>,
    discard_term: Cell<bool>,
    /// The worker's slot, where a refusal is noted before the worker dies.
    slot: *const WorkerSlot,
    /// What the executor prints (its stdout and stderr are pipes to the worker, which copies
    /// them to its own), and the eventfd it rings when `done` moved while the worker sleeps.
    out: OwnedFd,
    err: OwnedFd,
    wake: OwnedFd,
}

/// The executor's ends of its pipes and eventfd, as raw descriptors in the child.
#[derive(Clone, Copy)]
struct Ends {
    out: c_int,
    err: c_int,
    wake: c_int,
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
        let ((out_r, out_w), (err_r, err_w)) = (proc::pipe().map_err(io)?, proc::pipe().map_err(io)?);
        let wake = proc::eventfd().map_err(io)?;
        proc::set_nonblocking(out_r.0);
        proc::set_nonblocking(err_r.0);
        let ends = Ends { out: out_w.0, err: err_w.0, wake: wake.0 };
        let me = proc::getpid();
        let pid = match proc::fork(Some(v.public() as usize), &setup.keep()) {
            Ok(proc::Forked::Child) => executor_main(v, setup, w, &windows[1 - turn], ends, me),
            Ok(proc::Forked::Parent(pid)) => pid,
            Err(e) => return Err((format!("fork of the executor: {e}"), false)),
        };
        drop((out_w, err_w));
        let ex = Executor {
            pid,
            turn,
            base: w.base(),
            len: w.len(),
            seq: Cell::new(0),
            discard_term: Cell::new(false),
            slot,
            out: out_r,
            err: err_r,
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

    pub(super) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    fn mailbox(&self) -> &Mailbox {
        // SAFETY: the first page of the window mapping holds the mailbox (zeroed memory is a
        // valid one); the worker's `Executors` keeps the mapping while this executor exists.
        unsafe { &*(self.base as *const Mailbox) }
    }

    /// The output window, as the worker reads it.
    pub(super) fn window(&self) -> *const u8 {
        // SAFETY: the window follows the mailbox page inside the mapping.
        unsafe { self.base.add(PAGE) }
    }

    pub(super) fn window_len(&self) -> usize {
        self.len - PAGE
    }

    /// The next item after a SIGTERM sent for the last one: the executor drops it if pending.
    /// Waits until it did, so that if the signal kills it, the item that timed out is blamed.
    pub(super) fn after_term(&self) {
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
    pub(super) fn call(&self, j: &Job) -> (c_int, usize) {
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
        self.relay();
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
                let ready = proc::poll_any(&[self.out.0, self.err.0, self.wake.0], 20);
                if ready[0] || ready[1] {
                    self.relay();
                }
                if ready[2] {
                    proc::eventfd_drain(self.wake.0);
                }
            }
            mb.sleeping.store(0, SeqCst);
        }
    }

    /// Copies what the executor printed so far to this worker's stdout and stderr.
    fn relay(&self) {
        proc::pump(self.out.0, 1);
        proc::pump(self.err.0, 2);
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

/// The executor: gives up the pool's memory but for reading, and the other window, enters the
/// sandbox, then runs items until its worker goes. Never returns.
fn executor_main(v: &View, fds: SandboxSetup, mem: &Mapping, other: &Mapping, ends: Ends, worker: libc::pid_t) -> ! {
    MY_PID.store(proc::getpid(), Relaxed);
    crate::core::killpoint::set_role(crate::core::killpoint::Role::Executor);
    proc::die_with_parent();
    if proc::getppid() != worker {
        proc::exit_silently(0);
    }
    proc::set_name("pool-task");
    proc::own_process_group(); // a task's kill(0, sig) reaches only its own process
                               // SAFETY: the mailbox is the first page of `mem`, mapped for the life of this process.
    let mb: &'static Mailbox = unsafe { &*(mem.base() as *const Mailbox) };
    // SAFETY: as above, the window follows it.
    let window = unsafe { mem.base().add(PAGE) };
    let cap = mem.len() - PAGE;
    WAKE.store(ends.wake, Relaxed);
    let fail = |msg: String| fail(mb, msg);
    // Its stdout and stderr are pipes to its worker: it shares no open file with the host (a
    // terminal's modes, a log file's size and flags stay out of its reach).
    if let Err(e) = proc::dup_onto(ends.out, 1).and_then(|()| proc::dup_onto(ends.err, 2)) {
        fail(format!("stdout and stderr to the worker's pipes: {e}"));
    }
    // Nothing else of its worker's: the other executors' pipes, whatever the worker holds.
    proc::close_all_but(&[ends.wake, fds.ruleset, fds.pool]);
    let total = v.layout().total;
    if let Err(e) = crate::sys::mem::remap_read_only(v.public(), total, fds.pool) {
        fail(format!("mapping the pool's memory read-only: {e}"));
    }
    // (A worker without its alias, under valgrind, has none to drop.)
    if v.base() != v.public() {
        if let Err(e) = crate::sys::mem::unmap(v.base(), v.layout().protected()) {
            fail(format!("unmapping the worker's view of the pool: {e}"));
        }
    }
    // SAFETY: the descriptor this process inherited; its mapping is made.
    unsafe { libc::close(fds.pool) };
    if let Err(e) = crate::sys::mem::unmap(other.base(), other.len()) {
        fail(format!("unmapping the other executor's window: {e}"));
    }
    if let Err(e) = crate::core::ipc::arena::withdraw() {
        fail(format!("unmapping the memory of queues, locks and events: {e}"));
    }
    if let Err(e) = sandbox::confine(fds.ruleset, &mb.refused) {
        fail(e);
    }
    signal_done(mb, READY);
    let mut last = 0;
    loop {
        last = next_job(mb, last);
        mb.taken.store(last, Release);
        run_job(mb, window, cap);
        signal_done(mb, last);
        kp!(ExecutorResultWritten);
    }
}

/// The executor could not set itself up: its message goes to the worker, which fails to start.
fn fail(mb: &Mailbox, msg: String) -> ! {
    let bytes = msg.as_bytes();
    let n = bytes.len().min(MSG_LEN - 1);
    for (d, &b) in mb.msg.iter().zip(&bytes[..n]) {
        d.store(b, Relaxed);
    }
    mb.msg_len.store(n as u32 + 1, Release);
    signal_done(mb, FAILED);
    proc::exit_silently(EXIT_SANDBOX_FAILED)
}

/// The executor's eventfd (its end), rung when the worker sleeps.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Publishes `done` and rings the worker if it sleeps (it sets `sleeping` before it looks at
/// `done` a last time: one of the two sees the other).
fn signal_done(mb: &Mailbox, done: u32) {
    mb.done.store(done, SeqCst);
    if mb.sleeping.load(SeqCst) != 0 {
        proc::eventfd_signal(WAKE.load(Relaxed));
    }
}

/// Spins a few microseconds while `cond` is false, then yields the CPU between looks (the
/// worker and its executor take turns, often on one CPU) for up to `limit`: true if it became
/// true. A sleep costs tens of microseconds to wake from.
fn spin_then_yield(limit: Duration, cond: impl Fn() -> bool) -> bool {
    if spin_until(Duration::from_micros(5), &cond) {
        return true;
    }
    let start = Instant::now();
    while start.elapsed() < limit {
        std::thread::yield_now();
        if cond() {
            return true;
        }
    }
    false
}

/// Waits for a job other than `last` (spin, yield, then sleep); returns its number.
fn next_job(mb: &Mailbox, last: u32) -> u32 {
    let fresh = || mb.job.load(Acquire) != last;
    if !spin_then_yield(Duration::from_micros(200), fresh) {
        while !fresh() {
            crate::sys::futex::wait(&mb.job, last, None);
        }
    }
    mb.job.load(Acquire)
}

/// Runs the item the mailbox holds, its output going to the window, and writes the result.
fn run_job(mb: &Mailbox, window: *mut u8, cap: usize) {
    let kind = mb.kind.load(Relaxed);
    let func = mb.func.load(Relaxed) as usize;
    let ctx = mb.ctx.load(Relaxed) as *mut c_void;
    let input = mb.input.load(Relaxed) as *const c_void;
    let isz = mb.isz.load(Relaxed) as usize;
    let osz = (mb.osz.load(Relaxed) as usize).min(cap);
    let (first, count) = (mb.first.load(Relaxed) as usize, mb.count.load(Relaxed) as usize);
    if mb.flags.load(Relaxed) & DISCARD_TERM != 0 {
        proc::discard_pending(libc::SIGTERM);
    }
    mb.msg_len.store(0, Relaxed);
    mb.out_len.store(0, Relaxed);
    if kind == u32::MAX {
        return; // nothing to run (`after_term`)
    }
    let out = if osz == 0 { std::ptr::null_mut() } else { window as *mut c_void };
    IN_ITEM.store(true, Relaxed);
    let rc = if kind == K_VAR {
        // SAFETY: the host stored a `VarFn` for K_VAR tasks (checked non-NULL at submission).
        let f: VarFn = unsafe { std::mem::transmute(func) };
        let o = VarOut { base: window as usize, cap: osz, len: 0, staging: 0, reserved: None, stale: true };
        *VAR_OUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
        // SAFETY: calling the user's task on its input, as the contract says.
        let rc = unsafe { f(input, isz, ctx) };
        let len = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner()).take().map_or(0, |o| o.len);
        mb.out_len.store(len as u64, Relaxed);
        rc
    } else {
        // A task that writes nothing hands back zeros, never an earlier item's bytes.
        // SAFETY: the window holds `cap` >= `osz` bytes.
        unsafe { std::ptr::write_bytes(window, 0, osz) };
        if kind == K_BLOCK {
            // SAFETY: the host stored a `BlockFn` for K_BLOCK tasks; the input and output are
            // the block's (sized by the host), the output in the window.
            let f: BlockFn = unsafe { std::mem::transmute(func) };
            // SAFETY: as above.
            unsafe { f(input, out, count, first, ctx) }
        } else {
            // SAFETY: the host stored an `ItemFn` for K_ITEMS tasks; `input` holds `isz` bytes.
            let f: ItemFn = unsafe { std::mem::transmute(func) };
            // SAFETY: as above; `out` holds `osz` bytes.
            unsafe { f(input, out, ctx) }
        }
    };
    IN_ITEM.store(false, Relaxed);
    kp!(ExecutorItemReturned);
    if TASK_ERROR_SET.load(Relaxed) {
        if let Some(m) = take_task_error() {
            let n = m.len().min(MSG_LEN - 1);
            for (d, &b) in mb.msg.iter().zip(&m[..n]) {
                d.store(b, Relaxed);
            }
            mb.msg_len.store(n as u32 + 1, Relaxed);
        }
    }
    mb.rc.store(rc, Relaxed);
    // SAFETY: flush what the task printed before its result is visible, so output stays in order.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}
