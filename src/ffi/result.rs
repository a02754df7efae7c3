//! `pool_async_t`: Python's AsyncResult.

use super::handles::{get, get_opt, Handle};
use super::macros::{release, status, value};
use crate::core::job::Exit;
use crate::core::wake::wait_any;
use crate::core::{AsyncResult, Error, Outcome, Status};
use std::os::raw::{c_char, c_int, c_void};
use std::time::Duration;

/// The pending or finished result of an asynchronous call (opaque).
#[allow(non_camel_case_types)]
pub struct pool_async_t(pub(crate) AsyncResult, pub(crate) std::sync::Arc<crate::core::callbacks::Gate>);

impl pool_async_t {
    pub(crate) fn new(r: AsyncResult) -> pool_async_t {
        pool_async_t(r, Default::default())
    }
}

impl Handle for pool_async_t {
    const NAME: &'static str = "pool_async_t";
    const WHAT: &'static str = "async result";
}

/// Seconds as a C double: negative means no limit.
pub(crate) fn timeout(secs: f64) -> Result<Option<Duration>, Error> {
    if secs.is_nan() {
        return Err(Error::inval("timeout is NaN"));
    }
    Ok((secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9))))
}

/// Waits up to `timeout` seconds (negative: forever) and returns the result's status: the same
/// one every time once finished (`POOL_OK`, or the failure with `pool_last_error()` set); or
/// `POOL_ETIMEDOUT` if it is not ready yet (the work goes on).
/// Thread safety: any thread; several threads may wait on one handle. Not a cancellation
/// point: a cancel takes effect after it returns; to cancel a waiting thread promptly, wait in
/// a loop with a timeout and call `pthread_testcancel` between waits.
#[no_mangle]
pub extern "C" fn pool_async_get(a: *mut pool_async_t, timeout: f64) -> c_int {
    status(|| {
        let a = get(a)?;
        match a.0.wait(self::timeout(timeout)?) {
            None => Err(Error::new(Status::TimedOut, "the result is not ready yet")),
            Some(Outcome { err, .. }) => err.map_or(Ok(()), Err),
        }
    })
}

/// Waits up to `timeout` seconds (negative: forever): `POOL_OK` once the result is ready,
/// whatever its status; `POOL_ETIMEDOUT` otherwise.
/// Thread safety: any thread. Not a cancellation point (as `pool_async_get`).
#[no_mangle]
pub extern "C" fn pool_async_wait(a: *mut pool_async_t, timeout: f64) -> c_int {
    status(|| {
        let a = get(a)?;
        match a.0.wait(self::timeout(timeout)?) {
            None => Err(Error::new(Status::TimedOut, "the result is not ready yet")),
            Some(_) => Ok(()),
        }
    })
}

/// True once the result is ready (false for NULL; false with `pool_last_error()` set if `a` is
/// not a live handle). Never blocks.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_async_ready(a: *const pool_async_t) -> bool {
    value(false, || Ok(get_opt(a)?.is_some_and(|a| a.0.poll().is_some())))
}

/// Waits up to `timeout` seconds (negative: forever; 0: not at all) until one of the `n`
/// results in `handles` is ready, and sets `*index` to the first ready one (lowest index).
/// `POOL_OK` then (collect it with `pool_async_get`); `POOL_ETIMEDOUT` if none was ready in time;
/// `POOL_EINVAL` if `handles` or `index` is NULL, `n` is 0, or an entry is not a live result
/// (the message names its index). Results of several pools may be mixed. After a few
/// microseconds of looking, sleeps until one of the results ends (as `pool_async_get` sleeps on
/// its own result: other tasks of the pools do not wake it), then looks again: a waiting thread
/// costs next to no CPU. Past 100 task results (or 127 with the pools of its map results), and
/// for map results, it sleeps instead until their pools end any task or map, so a busy pool
/// wakes it more often.
/// Thread safety: any thread; the handles may be waited on by other threads too. Not a
/// cancellation point.
#[no_mangle]
pub extern "C" fn pool_async_wait_any(
    handles: *const *mut pool_async_t,
    n: usize,
    timeout: f64,
    index: *mut usize,
) -> c_int {
    status(|| {
        require!(!handles.is_null(), "handles is NULL");
        require!(!index.is_null(), "index is NULL");
        require!(n > 0, "n is 0: nothing to wait for");
        require!(n <= isize::MAX as usize / std::mem::size_of::<*mut pool_async_t>(), "n is too large");
        // SAFETY: the caller passes an array of `n` handles.
        let hs = unsafe { std::slice::from_raw_parts(handles, n) };
        let objs = hs
            .iter()
            .enumerate()
            .map(|(i, &h)| get(h).map_err(|e| Error::new(e.status, format!("handles[{i}]: {}", e.msg))))
            .collect::<Result<Vec<_>, Error>>()?;
        let rs: Vec<&AsyncResult> = objs.iter().map(|o| &o.0).collect();
        let i = wait_any(&rs, self::timeout(timeout)?).ok_or_else(|| {
            Error::new(Status::TimedOut, format!("none of the {n} results was ready before the timeout"))
        })?;
        // SAFETY: checked non-NULL; the caller passes a writable size_t.
        unsafe { *index = i };
        Ok(())
    })
}

/// True if the result is ready and succeeded (false if not ready or NULL; false with
/// `pool_last_error()` set if `a` is not a live handle). Never blocks.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_async_successful(a: *const pool_async_t) -> bool {
    value(false, || Ok(get_opt(a)?.is_some_and(|a| a.0.poll().is_some_and(|o| o.err.is_none()))))
}

/// The result of a `pool_submit` task once it succeeded: `*data` points to `*len` bytes that
/// stay valid, unchanged, until `pool_async_free`. Does not wait: returns `POOL_ETIMEDOUT` if not
/// ready, the task's failure status if it failed, `POOL_EINVAL` for other kinds of results.
/// `data` and `len` are written only on success.
/// Ownership: the bytes belong to the handle. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_async_result(a: *mut pool_async_t, data: *mut *const c_void, len: *mut usize) -> c_int {
    status(|| {
        let a = get(a)?;
        require!(!data.is_null() && !len.is_null(), "data or len is NULL");
        let bytes = a.0.var_output()?;
        // SAFETY: both out-pointers were checked non-NULL.
        unsafe {
            *data = bytes.as_ptr() as *const c_void;
            *len = bytes.len();
        }
        Ok(())
    })
}

/// Cancels the work behind `a`: what has not started is dropped, what runs is killed (its
/// worker is replaced), and it ends with `POOL_ECANCELLED`; for a map, every item not yet done.
/// Returns `POOL_OK` once the result is ready (work that had already finished keeps its own
/// status, which `pool_async_get` reports).
/// Thread safety: any thread. Not a cancellation point.
#[no_mangle]
pub extern "C" fn pool_async_cancel(a: *mut pool_async_t) -> c_int {
    status(|| {
        get(a)?.0.cancel();
        Ok(())
    })
}

/// How a finished task ended; for a map, its lowest-index failing item (`item` >= 0), or
/// `POOL_OK` and `item` -1 if every item succeeded.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_task_info_t {
    /// The result's status.
    pub status: c_int,
    /// The task's own return value (nonzero for `POOL_ETASK`).
    pub task_code: c_int,
    /// The worker process that ran it, 0 if none did.
    pub pid: c_int,
    /// The worker's exit status if it exited while running the task, else -1.
    pub exit_code: c_int,
    /// The signal that killed the worker while running the task, else 0.
    pub signal: c_int,
    /// Whether that signal dumped core.
    pub core_dumped: bool,
    /// For maps, the index of the item described; -1 otherwise.
    pub item: i64,
    /// The task's own message (`pool_task_error`), NUL-terminated; "" if it gave none. Written
    /// only if `info_size` covers it (callers built before it existed pass a smaller size).
    pub message: [c_char; 256],
}

/// Fills `*info` (`info_size` = sizeof(pool_task_info_t)) once the result is ready.
/// `POOL_ETIMEDOUT` if not ready (nothing written), `POOL_EINVAL` for NULL or a short struct.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_async_info(a: *mut pool_async_t, info: *mut pool_task_info_t, info_size: usize) -> c_int {
    status(|| {
        let a = get(a)?;
        require!(!info.is_null(), "info is NULL");
        require!(
            info_size >= std::mem::offset_of!(pool_task_info_t, message),
            "info_size is smaller than pool_task_info_t"
        );
        let o = a.0.poll().ok_or_else(|| Error::new(Status::TimedOut, "the result is not ready yet"))?;
        let i = o.info;
        let (exit_code, signal, core_dumped) = match i.exit {
            Some(Exit::Code(c)) => (c, 0, false),
            Some(Exit::Signal { sig, core }) => (-1, sig, core),
            None => (-1, 0, false),
        };
        let mut v = pool_task_info_t {
            status: i.status as c_int,
            task_code: i.code,
            pid: i.pid,
            exit_code,
            signal,
            core_dumped,
            item: i.item.map_or(-1, |x| x as i64),
            message: [0; 256],
        };
        for (d, &b) in v.message.iter_mut().zip(i.msg.as_deref().unwrap_or("").as_bytes().iter().take(255)) {
            *d = b as c_char;
        }
        let n = info_size.min(std::mem::size_of::<pool_task_info_t>());
        // SAFETY: `info` is non-NULL and the caller says it holds `info_size` bytes; we write
        // the first `n` bytes of our (repr(C)) struct, the fields its size covers.
        unsafe { std::ptr::copy_nonoverlapping(&v as *const pool_task_info_t as *const u8, info as *mut u8, n) };
        Ok(())
    })
}

/// A map's progress: `*done` items have ended out of `*total` (a single task counts as one
/// item; a map of 0 items reports 0 of 0). Never blocks; out-params written only on success.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_async_progress(a: *const pool_async_t, done: *mut usize, total: *mut usize) -> c_int {
    status(|| {
        let a = get(a)?;
        require!(!done.is_null() && !total.is_null(), "done or total is NULL");
        let (d, t) = a.0.progress();
        // SAFETY: both checked non-NULL.
        unsafe {
            *done = d;
            *total = t;
        }
        Ok(())
    })
}

/// Frees a handle, at any time: a task still pending is detached (it runs, but the caller's
/// `out` is never written after this returns); a map stops there (what runs is cancelled, the
/// items not yet submitted never run). If its results are written in place into
/// `pool_shm_alloc` memory, the work is cancelled and this waits until nothing writes there any
/// more (so that memory can be reused at once), even while another thread waits on the handle
/// (that wait then returns `POOL_ECANCELLED`, or the work's own outcome if it ended first).
/// Otherwise a call on the handle still running in another thread (a `pool_async_get`) is not
/// cut short: it finishes, may still collect the result into `out`, and the handle is detached
/// or stopped as above when it returns. NULL is a no-op.
/// Ownership: `a` is invalid afterwards: any later call with it (a second `pool_async_free`
/// included) does nothing but report `POOL_EINVAL` ("not a live handle"). In a forked child,
/// only the child's copy of the handle is released. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_async_free(a: *mut pool_async_t) {
    release(a, |obj| {
        obj.1.freed(); // a callback running on it finishes first
        obj.0.release(); // in-place work stops now, even while another thread waits on it
    })
}
