//! The executor process: it gives up the pool's memory but for reading, enters the sandbox,
//! and runs the items its worker hands over, one at a time.

use super::handle::Ends;
use super::{spin_then_yield, Mailbox, SandboxSetup, DISCARD_TERM, FAILED, READY};
use crate::core::shm::{View, K_BLOCK, K_VAR, MSG_LEN, PAGE};
use crate::core::worker::task_calls::{take_task_error, VarOut, IN_ITEM, TASK_ERROR_SET, VAR_OUT};
use crate::core::worker::{BlockFn, ItemFn, VarFn, EXIT_SANDBOX_FAILED, MY_PID};
use crate::sys::mem::Mapping;
use crate::sys::{proc, sandbox};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicI32, Ordering::*};
use std::time::Duration;

/// The executor: gives up the pool's memory but for reading, and the other window, enters the
/// sandbox, then runs items until its worker goes. Never returns.
pub(super) fn executor_main(
    v: &View,
    fds: SandboxSetup,
    mem: &Mapping,
    other: &Mapping,
    ends: Ends,
    worker: libc::pid_t,
) -> ! {
    MY_PID.store(proc::getpid(), Relaxed);
    crate::core::killpoint::set_role(crate::core::killpoint::Role::Executor);
    proc::die_with_parent();
    if proc::getppid() != worker {
        proc::exit_silently(0);
    }
    proc::set_name("pool-task");
    // A group of its own: a task's kill(0, sig) reaches only its own process.
    proc::own_process_group();
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
    proc::close_fd(fds.pool); // its mapping is made
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
    proc::flush_stdio(); // what the task printed, before its result is visible
}
