//! `pool_t`: creating pools, submitting work, closing, joining.

use super::callbacks::Callback;
use super::handles::{get, get_opt, Handle};
use super::macros::{handle, release, status, value};
use super::options::{convert, convert_call, convert_map, pool_call_options_t, pool_map_options_t, pool_options_t};
use super::result::pool_async_t;
use crate::core::map::MapFn;
use crate::core::worker::{note_refusal, out_commit, out_reserve, out_write, set_task_error, ItemFn, VarFn};
use crate::core::{Error, MapArgs, Pool};
use std::os::raw::{c_char, c_int, c_void};

/// A process pool (opaque).
#[allow(non_camel_case_types)]
pub struct pool_t(Pool, crate::core::callbacks::Callbacks, Option<std::ffi::CString>);

impl pool_t {
    pub(crate) fn new(p: Pool) -> pool_t {
        let report = p.shared().sandbox.as_ref().and_then(|s| std::ffi::CString::new(s.report.as_str()).ok());
        pool_t(p, Default::default(), report)
    }

    /// What the sandbox gives the workers, if the pool has one.
    pub(crate) fn sandbox_report(&self) -> Option<&std::ffi::CStr> {
        self.2.as_deref()
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.0
    }
}

impl Handle for pool_t {
    const NAME: &'static str = "pool_t";
    const WHAT: &'static str = "pool";
}

/// A task function, run in a worker process: `input` points to one input item, `out` to its
/// result slot (NULL when the item or result size is 0). Return 0 for success; any other value
/// is the task's own error code (the call then reports `POOL_ETASK`).
#[allow(non_camel_case_types)]
pub type pool_fn = Option<unsafe extern "C" fn(input: *const c_void, out: *mut c_void, ctx: *mut c_void) -> c_int>;

/// A variable-size task, run in a worker process: `input` holds `in_len` bytes (NULL if 0); the
/// result is written with `pool_out_write`. Return 0 for success, any other value is the
/// task's own error code.
#[allow(non_camel_case_types)]
pub type pool_task_fn = Option<unsafe extern "C" fn(input: *const c_void, in_len: usize, ctx: *mut c_void) -> c_int>;

#[allow(clippy::too_many_arguments)]
fn map_args(
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> Result<(MapArgs, Option<Callback>), Error> {
    let func: ItemFn = f.ok_or_else(|| Error::inval("fn is NULL"))?;
    require!(in_size > 0 && out_size > 0, "map item sizes (in_size, out_size) must be > 0");
    map_args_of(MapFn::Items(func), input, in_size, out, out_size, n, ctx, opts)
}

/// The checks every map shares (item sizes of 0 are for block maps only).
#[allow(clippy::too_many_arguments)]
pub(super) fn map_args_of(
    func: MapFn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> Result<(MapArgs, Option<Callback>), Error> {
    let o = convert_map(opts)?;
    require!(n.checked_mul(in_size).is_some_and(|b| b <= isize::MAX as usize), "n * in_size overflows");
    require!(n.checked_mul(out_size).is_some_and(|b| b <= isize::MAX as usize), "n * out_size overflows");
    require!(n == 0 || in_size == 0 || !input.is_null(), "in is NULL");
    require!(n == 0 || out_size == 0 || !out.is_null(), "out is NULL");
    let args = MapArgs {
        func,
        input: input as usize,
        in_size,
        out: out as usize,
        out_size,
        n,
        ctx: ctx as usize,
        ctx_size: o.ctx_size,
        chunksize: o.chunksize,
        statuses: o.statuses,
        timeout: o.timeout,
        shared_pointers_only: o.shared_pointers_only,
    };
    Ok((args, o.callback))
}

fn apply_args(
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
) -> Result<ItemFn, Error> {
    let func = f.ok_or_else(|| Error::inval("fn is NULL"))?;
    require!(in_size == 0 || !input.is_null(), "in is NULL but in_size > 0");
    require!(out_size == 0 || !out.is_null(), "out is NULL but out_size > 0");
    Ok(func)
}

/// Creates a pool of `workers` worker processes (0: one per CPU this process may run on;
/// negative: `POOL_EINVAL`). `opts` may be NULL for the defaults; otherwise it must have been
/// initialised with `pool_options_init`. The workers are running, their initializer done, when
/// this returns.
///
/// Workers are forked from a helper process forked here, so every worker, including one that
/// replaces a dead one, sees the process memory as it is now: functions passed later must be
/// code loaded at this call, and a `ctx` passed later by address is seen as it is now (calls
/// refuse one whose bytes changed since, or that did not exist: pass `ctx_size` to copy it
/// with the call; see `pool_map_options_t`). Tasks run on a copy of the calling thread's stack
/// (fork semantics): create pools from a thread whose stack is big enough for the tasks (the
/// main thread's, or a default-sized thread stack).
///
/// Returns NULL on failure with `pool_last_error()` saying why: fork or shared memory
/// (`POOL_ESYS`), an initializer that crashed or exited (`POOL_ECRASHED`), refused
/// (`initializer_ex`: `POOL_ETASK`) or did not return within `start_timeout` (`POOL_ETIMEDOUT`;
/// the default bound is 300 s). Whatever the failure, no process, descriptor or mapping of the
/// pool is left.
/// Ownership: the caller owns the pool and releases it with `pool_destroy`.
/// Thread safety: safe from any thread; the pool may be used from any thread.
#[no_mangle]
pub extern "C" fn pool_create(workers: c_int, opts: *const pool_options_t) -> *mut pool_t {
    handle(|| {
        require!(workers >= 0, format!("workers is {workers}: it must be > 0, or 0 for one per CPU"));
        Ok(pool_t::new(Pool::new(workers, convert(opts)?)?))
    })
}

/// The number of worker processes of `pool` (0 if `pool` is NULL; 0 with `pool_last_error()`
/// set if it is not a live pool).
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn pool_workers(pool: *const pool_t) -> c_int {
    value(0, || Ok(get_opt(pool)?.map_or(0, |p| p.0.workers() as c_int)))
}

/// Applies `f` to `n` items in parallel and waits: item i is read from `input + i*in_size` and
/// its result written to `out + i*out_size`. Items are cut into chunks automatically and
/// streamed through shared memory, so memory stays bounded for any `n`. When the pool's shared
/// memory is full (of running work, or of other calls' results not yet read), fewer chunks
/// are in flight and the map waits for room; only a chunk that can never fit fails
/// (`POOL_ENOMEM`). So do block maps, iterators and streams.
///
/// Returns `POOL_OK` when every item succeeded; otherwise the status of the lowest-index
/// failure (`POOL_ETASK`, `POOL_ECRASHED`, `POOL_ETIMEDOUT`, `POOL_ECLOSED`), with
/// `pool_last_error()` naming the item. The results of the items that succeeded are written in
/// every case. `n == 0` is a no-op returning `POOL_OK` (buffers may then be NULL). Item sizes
/// must be > 0.
/// Ownership: `input` and `out` stay the caller's. Thread safety: safe from any thread,
/// concurrently with other calls on the same pool. Not a cancellation point: a cancel takes
/// effect after it returns; to cancel promptly, use `pool_map_async` and wait in a loop with a
/// timeout and `pthread_testcancel`.
#[no_mangle]
pub extern "C" fn pool_map(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
) -> c_int {
    pool_map_ex(pool, f, input, in_size, out, out_size, n, ctx, std::ptr::null())
}

/// `pool_map` with per-call options (`opts` may be NULL): chunk size, per-item statuses, a
/// per-item timeout.
/// Thread safety: safe from any thread. Not a cancellation point (as `pool_map`).
#[no_mangle]
pub extern "C" fn pool_map_ex(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> c_int {
    map_and_wait(pool, "pool_map_ex", "pool_map_async_ex", || map_args(f, input, in_size, out, out_size, n, ctx, opts))
}

/// A map that waits (`pool_map_ex`, `pool_map_blocks`), once `args` has checked its arguments.
pub(super) fn map_and_wait(
    pool: *mut pool_t,
    name: &str,
    async_name: &str,
    args: impl FnOnce() -> Result<(MapArgs, Option<Callback>), Error>,
) -> c_int {
    status(|| {
        let p = get(pool)?;
        let (a, cb) = args()?;
        require!(cb.is_none(), format!("callback: {name} waits for its result; use {async_name}"));
        if a.n == 0 {
            return p.0.shared().check_owner();
        }
        // SAFETY: arguments checked by `args`; the caller keeps the buffers valid during the call.
        unsafe { p.0.map(a) }
    })
}

/// Like `pool_map` but returns at once with a handle to wait on (`pool_async_get`). `input` and `out`
/// must stay valid until the result is ready or the handle freed; `out` is never written after
/// `pool_async_free` returns. `n == 0` gives a handle that is already ready.
///
/// Returns NULL on failure (bad argument, closed pool) with `pool_last_error()` set.
/// Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_map_async(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
) -> *mut pool_async_t {
    pool_map_async_ex(pool, f, input, in_size, out, out_size, n, ctx, std::ptr::null())
}

/// `pool_map_async` with per-call options (`opts` may be NULL; a `statuses` array must stay
/// valid like `out`).
/// Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_map_async_ex(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> *mut pool_async_t {
    map_in_background(pool, || map_args(f, input, in_size, out, out_size, n, ctx, opts))
}

/// A map that returns a handle at once (`pool_map_async_ex`, `pool_map_blocks_async`), once
/// `args` has checked its arguments; its callback, if any, is registered.
pub(super) fn map_in_background(
    pool: *mut pool_t,
    args: impl FnOnce() -> Result<(MapArgs, Option<Callback>), Error>,
) -> *mut pool_async_t {
    let mut cb = None;
    let h = handle(|| {
        let p = get(pool)?;
        let (a, c) = args()?;
        cb = c;
        // SAFETY: arguments checked by `args`; the caller keeps the buffers valid as documented.
        Ok(pool_async_t::new(unsafe { p.0.map_async(a) }?))
    });
    on_ready(pool, h, cb)
}

/// Registers the completion callback of a new result `h` (if there is one); if that fails the
/// result is freed (its work cancelled if it writes in place) and the call fails.
fn on_ready(pool: *mut pool_t, h: *mut pool_async_t, cb: Option<Callback>) -> *mut pool_async_t {
    let Some(cb) = cb.filter(|_| !h.is_null()) else { return h };
    value(std::ptr::null_mut(), || match get(pool).and_then(|p| super::callbacks::add(&p.1, h, cb)) {
        Ok(()) => Ok(h),
        Err(e) => {
            super::result::pool_async_free(h);
            Err(e)
        }
    })
}

/// Runs `f` on one input in a worker and waits for it. `input`/`out` may be NULL when their size
/// is 0. Returns the task's status (`POOL_ETASK` if it returned nonzero, `POOL_ECRASHED` if its
/// worker died, ...).
/// Thread safety: safe from any thread. Not a cancellation point: a cancel takes effect after
/// it returns (`pool_apply_async` and a timeout loop cancel promptly).
#[no_mangle]
pub extern "C" fn pool_apply(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    ctx: *mut c_void,
) -> c_int {
    pool_apply_ex(pool, f, input, in_size, out, out_size, ctx, std::ptr::null())
}

/// `pool_apply` with per-call options (`opts` may be NULL): a task timeout, a copy of `ctx`.
/// Thread safety: safe from any thread. Not a cancellation point (as `pool_apply`).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn pool_apply_ex(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    ctx: *mut c_void,
    opts: *const pool_call_options_t,
) -> c_int {
    status(|| {
        let p = get(pool)?;
        let func = apply_args(f, input, in_size, out, out_size)?;
        let (o, cb) = convert_call(opts)?;
        require!(cb.is_none(), "callback: pool_apply_ex waits for its result; use pool_apply_async_ex");
        // SAFETY: arguments checked; `out` is written before this call returns.
        let r = unsafe {
            p.0.apply_async_ex(func, input as *const u8, in_size, out as *mut u8, out_size, ctx as usize, o)
        }?;
        r.wait(None).expect("waits forever").err.map_or(Ok(()), Err)
    })
}

/// Like `pool_apply` but returns at once with a handle. The input is copied before this
/// returns; `out` must stay valid until the result is ready or the handle freed.
///
/// Returns NULL on failure with `pool_last_error()` set: `POOL_ENOMEM` when the pool's shared
/// memory is full of results nobody has collected and no running work will free any (this
/// call waits for running work to free room, not for readers).
/// Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_apply_async(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    ctx: *mut c_void,
) -> *mut pool_async_t {
    pool_apply_async_ex(pool, f, input, in_size, out, out_size, ctx, std::ptr::null())
}

/// `pool_apply_async` with per-call options (`opts` may be NULL): a task timeout, a copy of
/// `ctx`. Ownership and thread safety as `pool_apply_async`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn pool_apply_async_ex(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    ctx: *mut c_void,
    opts: *const pool_call_options_t,
) -> *mut pool_async_t {
    let mut cb = None;
    let h = handle(|| {
        let p = get(pool)?;
        let func = apply_args(f, input, in_size, out, out_size)?;
        let (o, c) = convert_call(opts)?;
        cb = c;
        // SAFETY: arguments checked; the caller keeps `out` valid as documented.
        Ok(pool_async_t::new(unsafe {
            p.0.apply_async_ex(func, input as *const u8, in_size, out as *mut u8, out_size, ctx as usize, o)
        }?))
    });
    on_ready(pool, h, cb)
}

/// Submits a variable-size task: `in_len` bytes of input (any length the pool's shared memory
/// holds, 1 GiB and more), a result whose length the task decides as it runs, written with
/// `pool_out_write`, up to `max_out` bytes. Only the pages actually written cost memory.
/// Get the result with `pool_async_result` (zero copy: it stays valid until `pool_async_free`).
///
/// Returns NULL on failure with `pool_last_error()` set (sizes that never fit: `POOL_EINVAL`
/// or `POOL_ENOMEM`, naming `in_len` or `max_out`).
/// Ownership: the input is copied before this returns; the caller frees the handle with
/// `pool_async_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_submit(
    pool: *mut pool_t,
    f: pool_task_fn,
    input: *const c_void,
    in_len: usize,
    max_out: usize,
    ctx: *mut c_void,
) -> *mut pool_async_t {
    pool_submit_ex(pool, f, input, in_len, max_out, ctx, std::ptr::null())
}

/// `pool_submit` with per-call options (`opts` may be NULL): a task timeout, a copy of `ctx`.
/// Ownership and thread safety as `pool_submit`.
#[no_mangle]
pub extern "C" fn pool_submit_ex(
    pool: *mut pool_t,
    f: pool_task_fn,
    input: *const c_void,
    in_len: usize,
    max_out: usize,
    ctx: *mut c_void,
    opts: *const pool_call_options_t,
) -> *mut pool_async_t {
    let mut cb = None;
    let h = handle(|| {
        let p = get(pool)?;
        let func: VarFn = f.ok_or_else(|| Error::inval("fn is NULL"))?;
        require!(in_len == 0 || !input.is_null(), "in is NULL but in_len > 0");
        let (o, c) = convert_call(opts)?;
        cb = c;
        // SAFETY: arguments checked; the input is copied before returning.
        Ok(pool_async_t::new(unsafe { p.0.submit_var(func, input as *const u8, in_len, max_out, ctx as usize, o) }?))
    });
    on_ready(pool, h, cb)
}

/// Called from inside a task, before it returns nonzero: attaches `message` (a NUL-terminated
/// string; at most 255 bytes are kept) to the task's failure. The caller then finds it in
/// `pool_last_error()` (after the item index and the task's code, for maps and iterators) and
/// in `pool_async_info`'s `message`. A task that succeeds drops it; the first 16 failing items of a
/// map chunk carry one each. Returns `POOL_EINVAL` outside a task or for NULL.
/// Thread safety: call only from the task's own worker process.
#[no_mangle]
pub extern "C" fn pool_task_error(message: *const c_char) -> c_int {
    status(|| {
        require!(!message.is_null(), "message is NULL");
        // SAFETY: a NUL-terminated string, as documented.
        let bytes = unsafe { std::ffi::CStr::from_ptr(message) }.to_bytes();
        set_task_error(bytes).map_err(|(s, m)| Error::new(s, m))
    })
}

/// Called from inside a task started with `pool_submit`: appends `len` bytes to its result.
/// Returns `POOL_ENOMEM` if the result would exceed the task's `max_out`, `POOL_EINVAL`
/// outside such a task or for NULL `data` with `len > 0`. A refusal (of this, of
/// `pool_out_reserve` or `pool_out_commit`) also becomes the task's message unless it gave one
/// (`pool_task_error`): a task that then fails, say by returning the status it got, fails with
/// the reason ("task returned 2: pool_out_write of ... bytes refused: ... max_out ...").
/// Thread safety: call only from the task's own worker process.
#[no_mangle]
pub extern "C" fn pool_out_write(data: *const c_void, len: usize) -> c_int {
    status(|| {
        explained(|| {
            require!(len == 0 || !data.is_null(), "pool_out_write: data is NULL but len > 0");
            let bytes: &[u8] = if len == 0 {
                &[]
            } else {
                // SAFETY: `data` is non-NULL and the caller says it holds `len` bytes.
                unsafe { std::slice::from_raw_parts(data as *const u8, len) }
            };
            out_write(bytes).map_err(|(s, m)| Error::new(s, m))
        })
    })
}

/// Runs an output call; a refusal also becomes the running task's message (see `note_refusal`).
fn explained<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    f().inspect_err(|e| note_refusal(&e.msg))
}

/// Called from inside a task of `pool_submit` or `pool_stream`, to write its result in place
/// (e.g. as zlib's `next_out`): returns where the result ends now, with room for `*avail`
/// bytes (everything left up to `max_out`, at least `min_len`). Write there, then append what
/// was written with `pool_out_commit`. Writing past `*avail` bytes never reaches other results:
/// it faults at the next page boundary (the worker dies, the item fails with `POOL_ECRASHED`). Big results (`max_out`
/// of 256 KiB or more) are written in place; smaller ones through private memory that the
/// commit copies in. Returns NULL with `pool_last_error()` set (`POOL_ENOMEM`) if fewer than
/// `min_len` bytes are left, or outside such a task (`POOL_EINVAL`); NULL `avail` is
/// `POOL_EINVAL`.
/// Thread safety: call only from the task's own worker process and thread.
#[no_mangle]
pub extern "C" fn pool_out_reserve(min_len: usize, avail: *mut usize) -> *mut c_void {
    value(std::ptr::null_mut(), || {
        explained(|| {
            require!(!avail.is_null(), "pool_out_reserve: avail is NULL");
            let (p, room) = out_reserve(min_len).map_err(|(s, m)| Error::new(s, m))?;
            // SAFETY: checked non-NULL; the caller says it is writable.
            unsafe { *avail = room };
            Ok(p as *mut c_void)
        })
    })
}

/// Appends to the task's result the first `len` bytes written where the last
/// `pool_out_reserve` pointed; that reservation then ends (reserve again to write more).
/// Returns `POOL_EINVAL`, even for `len` 0, if no reservation is open (none was made, or the
/// last one already ended with a commit or a `pool_out_write`), if `len` is more than it gave
/// room for, or outside a task of `pool_submit` or `pool_stream`.
/// Thread safety: call only from the task's own worker process and thread.
#[no_mangle]
pub extern "C" fn pool_out_commit(len: usize) -> c_int {
    status(|| explained(|| out_commit(len).map_err(|(s, m)| Error::new(s, m))))
}

/// Stops accepting work; work already submitted (maps included) still finishes. A second call
/// is a no-op. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_close(pool: *mut pool_t) -> c_int {
    status(|| get(pool)?.0.close())
}

/// Stops the pool at once: workers are killed; unfinished results end with `POOL_ECLOSED`.
/// Submissions racing it in other threads get `POOL_ECLOSED`; iterators hand back what had run,
/// then each item never submitted with `POOL_ECLOSED`, then `POOL_EDONE`; the event fd
/// (`pool_event_fd`) becomes readable. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_terminate(pool: *mut pool_t) -> c_int {
    status(|| get(pool)?.0.terminate())
}

/// Waits for the workers to exit after `pool_close` (once all submitted work is done, however
/// long it takes; a `pool_terminate` from another thread cuts it short) or
/// `pool_terminate`. Before either, returns `POOL_EINVAL`. Once it is called, submissions are
/// refused (`POOL_ECLOSED`): iterators stop feeding, hand back what they submitted, then each
/// item never submitted with `POOL_ECLOSED`, then `POOL_EDONE`.
/// Thread safety: any thread. Not a cancellation point: a cancel takes effect after it returns.
#[no_mangle]
pub extern "C" fn pool_join(pool: *mut pool_t) -> c_int {
    status(|| get(pool)?.0.join())
}

/// Terminates the pool unless it was closed, joins it and frees it. Async handles and
/// iterators stay valid (unfinished ones report `POOL_ECLOSED`) and must still be freed. NULL is
/// a no-op. Calls blocked on the pool in other threads return soon (`POOL_ECLOSED` once it is
/// terminated; after `pool_close` they finish their work first).
/// Ownership: `pool` is invalid afterwards: any later call with it (a second `pool_destroy`
/// included) does nothing but report `POOL_EINVAL` ("not a live handle") in
/// `pool_last_error()`. In a forked child, only the child's copy of the handle is released (the
/// parent's pool is untouched). Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_destroy(pool: *mut pool_t) {
    release(pool, |p| p.0.shut_down())
}

/// Allocates `size` bytes of the pool's shared memory, which every worker sees at the same
/// address: inputs and outputs placed here are never copied (`pool_map`, `pool_apply*` and
/// `pool_submit` use them in place). Contents are unspecified until written. Returns NULL with
/// `pool_last_error()` set when the pool's shared memory (`shm_size`) is full.
/// Ownership: free with `pool_shm_free` on the same pool, after the work using it has ended;
/// the memory goes away with the pool in any case. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_shm_alloc(pool: *mut pool_t, size: usize) -> *mut c_void {
    value(std::ptr::null_mut(), || Ok(get(pool)?.0.shm_alloc(size)? as *mut c_void))
}

/// Frees memory from `pool_shm_alloc`. NULL is a no-op; any other pointer not from
/// `pool_shm_alloc` on this pool is `POOL_EINVAL`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_shm_free(pool: *mut pool_t, ptr: *mut c_void) -> c_int {
    status(|| {
        let p = get(pool)?;
        if ptr.is_null() {
            return Ok(());
        }
        p.0.shm_free(ptr as *mut u8)
    })
}

/// A descriptor for event loops (epoll, poll, libuv): it polls readable whenever a result of
/// this pool became ready since it was last read, and when the pool ends (terminated,
/// destroyed, or its zygote killed from outside: a watcher thread started by the first call
/// notices). Read 8 bytes from it to reset it (it is an eventfd), then look at your handles
/// with `pool_async_ready`. Returns -1 with `pool_last_error()` set on failure. Until the first call,
/// the workers do not signal it (no cost).
/// Ownership: the pool owns the descriptor; do not close it. It stays valid while the pool or
/// any of its async handles lives. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_event_fd(pool: *mut pool_t) -> c_int {
    value(-1, || get(pool)?.0.event_fd())
}
