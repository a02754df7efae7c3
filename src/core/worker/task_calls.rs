//! What a running task may call in its worker: its result (`out_write`, `out_reserve`,
//! `out_commit`) and its message (`set_task_error`), each refused anywhere but on the worker's
//! own thread while a task runs.

use super::forked_child;
use crate::core::error::Status;
use crate::core::shm::MSG_LEN;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Mutex;

thread_local! {
    /// True on a worker's own thread only: a thread a task started and left behind must not
    /// write into the results of the tasks that come after.
    pub(super) static WORKER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Fails unless called by the worker's own thread, inside a task.
fn on_worker_thread(what: &str) -> Result<(), (Status, String)> {
    if !WORKER_THREAD.with(|w| w.get()) || forked_child() {
        return Err((
            Status::Inval,
            format!("{what} called outside a task (or from a thread or process a task started)"),
        ));
    }
    Ok(())
}

/// The output buffer of the variable-size task being run in this worker.
pub(super) struct VarOut {
    pub(super) base: usize,
    pub(super) cap: usize,
    pub(super) len: usize,
    /// Private memory that `out_reserve` hands out when the result area is not behind guard
    /// pages (small results): `out_commit` copies it in. 0: the task writes `base` directly.
    pub(super) staging: usize,
    /// Bytes the open `out_reserve` made room for; None when no reservation is open (none yet,
    /// or the last one ended with a commit or a write).
    pub(super) reserved: Option<usize>,
    /// Whether what `out_reserve` hands out may still hold bytes of an earlier task (private
    /// memory used before, or a block used before): cleared at the first reserve.
    pub(super) stale: bool,
}

pub(super) static VAR_OUT: Mutex<Option<VarOut>> = Mutex::new(None);

/// Appends to the running variable-size task's result.
pub fn out_write(data: &[u8]) -> Result<(), (Status, String)> {
    // Checked first so the host never takes a lock its forks could inherit held.
    on_worker_thread("pool_out_write")?;
    let mut g = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let o = running_var_out(&mut g, "pool_out_write")?;
    if data.len() > o.cap - o.len {
        let m = format!(
            "pool_out_write of {} bytes refused: the result would exceed the task's max_out of {} bytes ({} written \
             before)",
            data.len(),
            o.cap,
            o.len
        );
        return Err((Status::NoMem, m));
    }
    o.append(data.as_ptr(), data.len());
    o.reserved = None; // what was reserved may now be partly written over
    Ok(())
}

impl VarOut {
    /// Copies `len` bytes (room checked by the caller) to the end of the result.
    fn append(&mut self, data: *const u8, len: usize) {
        crate::sys::mem::populate((self.base + self.len) as *const u8, len, true);
        // SAFETY: [base+len, base+len+len) lies inside the task's output region (the caller
        // checked the room), which this worker alone writes while the task runs.
        unsafe { std::ptr::copy_nonoverlapping(data, (self.base + self.len) as *mut u8, len) };
        self.len += len;
    }
}

fn running_var_out<'a>(
    g: &'a mut std::sync::MutexGuard<'_, Option<VarOut>>,
    what: &str,
) -> Result<&'a mut VarOut, (Status, String)> {
    g.as_mut().ok_or_else(|| (Status::Inval, format!("{what} called outside a task of pool_submit or pool_stream")))
}

/// Room to write the running variable-size task's result in place: the address of its end and
/// every byte left up to `max_out` (at least `min`). `out_commit` then appends what was written.
pub fn out_reserve(min: usize) -> Result<(*mut u8, usize), (Status, String)> {
    on_worker_thread("pool_out_reserve")?;
    let mut g = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let o = running_var_out(&mut g, "pool_out_reserve")?;
    let avail = o.cap - o.len;
    if min > avail {
        let m = format!(
            "pool_out_reserve of at least {min} bytes refused: only {avail} of the task's max_out of {} bytes are left",
            o.cap
        );
        return Err((Status::NoMem, m));
    }
    o.reserved = Some(avail);
    let at = if o.staging != 0 { o.staging } else { o.base + o.len };
    if o.stale {
        // A task that commits bytes it never wrote must get zeros, never another task's data.
        if o.staging != 0 {
            // SAFETY: the private staging area holds `cap` >= `avail` bytes.
            unsafe { std::ptr::write_bytes(at as *mut u8, 0, avail) };
        } else {
            crate::sys::mem::discard(at as *mut u8, avail);
        }
        o.stale = false;
    }
    Ok((at as *mut u8, avail))
}

/// Appends the `len` bytes written at the place the last `out_reserve` gave.
pub fn out_commit(len: usize) -> Result<(), (Status, String)> {
    on_worker_thread("pool_out_commit")?;
    let mut g = VAR_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let o = running_var_out(&mut g, "pool_out_commit")?;
    match o.reserved {
        None => {
            let m = format!(
                "pool_out_commit of {len} bytes with no open reservation (call pool_out_reserve first; a commit or a \
                 pool_out_write ends the reservation before it)"
            );
            return Err((Status::Inval, m));
        }
        Some(room) if len > room => {
            let m = format!("pool_out_commit of {len} bytes, but pool_out_reserve gave room for {room}");
            return Err((Status::Inval, m));
        }
        Some(_) => {}
    }
    if o.staging != 0 {
        o.append(o.staging as *const u8, len);
    } else {
        o.len += len;
    }
    o.reserved = None;
    Ok(())
}

/// True while user code runs an item: `pool_task_error` is valid then.
pub(super) static IN_ITEM: AtomicBool = AtomicBool::new(false);
/// The message the running item gave with `pool_task_error` (a flag so that the common case,
/// no message, costs one load per item).
pub(super) static TASK_ERROR_SET: AtomicBool = AtomicBool::new(false);
static TASK_ERROR: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Attaches `message` to the failure of the task running now (it must then return nonzero; a
/// task that succeeds drops it). Longer messages are cut to what a message slot holds.
pub fn set_task_error(message: &[u8]) -> Result<(), (Status, String)> {
    on_worker_thread("pool_task_error")?;
    if !IN_ITEM.load(Relaxed) {
        return Err((Status::Inval, "pool_task_error called outside a task".into()));
    }
    let m = message[..message.len().min(MSG_LEN - 1)].to_vec();
    *TASK_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
    TASK_ERROR_SET.store(true, Relaxed);
    Ok(())
}

/// A refused output call (`pool_out_write`, `pool_out_reserve`, `pool_out_commit`) becomes the
/// running task's message unless it gave one, so that a task that returns the status it got
/// fails with the reason ("task returned 2: pool_out_write of ... refused"), not a bare code. A
/// task that recovers and succeeds drops it, as any message.
pub fn note_refusal(message: &str) {
    if IN_ITEM.load(Relaxed) && !TASK_ERROR_SET.load(Relaxed) {
        let _ = set_task_error(message.as_bytes()); // refused outside the worker's own thread
    }
}

pub(super) fn take_task_error() -> Option<Vec<u8>> {
    TASK_ERROR_SET.store(false, Relaxed);
    TASK_ERROR.lock().unwrap_or_else(|e| e.into_inner()).take()
}
