//! `pool_stream_t`: variable-size tasks streamed over an array of buffers or a source.

use super::handles::{get, Handle};
use super::macros::{boundary, handle, release, status};
use super::options::{covered, seconds};
use super::pool::{pool_t, pool_task_fn};
use super::result::timeout;
use crate::core::stream::{Stream, StreamArgs, StreamInput};
use crate::core::{Error, Status};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};
use std::sync::{Arc, Mutex};

/// A stream of variable-size results, one at a time (opaque), and its "freed" flag, which a
/// free sets without waiting for a `pool_stream_next` running in another thread.
#[allow(non_camel_case_types)]
pub struct pool_stream_t(Mutex<Stream>, Arc<AtomicBool>);

impl Handle for pool_stream_t {
    const NAME: &'static str = "pool_stream_t";
    const WHAT: &'static str = "stream";
}

/// One input buffer of `pool_stream`: `len` bytes at `data` (NULL if `len` is 0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct pool_buf_t {
    pub data: *const c_void,
    pub len: usize,
}

/// Produces input item `index` (0, 1, 2, ...) for `pool_stream_source`: writes at most `cap`
/// bytes to `buf` (the pool's shared memory: the task reads them there, no copy) and their
/// count to `*len`. Return 0 for an item, 1 when there are no more, any other value for an
/// error (which ends the input; `pool_stream_next` reports it after the last result). Runs in
/// the thread calling `pool_stream_next`, never in a worker.
#[allow(non_camel_case_types)]
pub type pool_stream_source_fn = Option<
    unsafe extern "C" fn(buf: *mut c_void, cap: usize, len: *mut usize, index: usize, source_ctx: *mut c_void) -> c_int,
>;

/// Options for `pool_stream` and `pool_stream_source`. Call `pool_stream_options_init` first.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_stream_options_t {
    /// sizeof(pool_stream_options_t) as the caller was compiled; set by the init function.
    pub struct_size: usize,
    /// Results in item order (true, the default), or as they complete (`*index` says which).
    pub ordered: bool,
    /// Items submitted and not yet handed back, at most: what bounds the stream's memory
    /// (about `window * (max_in + max_out)` bytes of shared memory). 0 (the default): twice
    /// the workers, plus two.
    pub window: usize,
    /// Seconds each item may run, overriding the pool's `task_timeout`; <= 0 keeps the pool's.
    pub task_timeout: f64,
    /// As in `pool_map_options_t`: if > 0, `ctx_size` bytes at `ctx` are copied when the stream
    /// starts, and every item sees those bytes (each item in flight carries a copy: keep it
    /// small).
    pub ctx_size: usize,
}

/// Fills `opts` with the defaults (ordered, automatic window, the pool's timeout, `ctx` passed
/// as it is) and stamps its size. NULL is a no-op.
/// Thread safety: safe from any thread on distinct structs.
#[no_mangle]
pub extern "C" fn pool_stream_options_init(opts: *mut pool_stream_options_t) {
    boundary(|| {
        // SAFETY: the caller passes a writable pool_stream_options_t or NULL (checked).
        if let Some(o) = unsafe { opts.as_mut() } {
            *o = pool_stream_options_t {
                struct_size: std::mem::size_of::<pool_stream_options_t>(),
                ordered: true,
                window: 0,
                task_timeout: 0.0,
                ctx_size: 0,
            };
        }
    })
}

fn start(
    pool: *mut pool_t,
    f: pool_task_fn,
    input: StreamInput,
    max_out: usize,
    ctx: *mut c_void,
    opts: *const pool_stream_options_t,
) -> Result<pool_stream_t, Error> {
    let p = get(pool)?;
    let func = f.ok_or_else(|| Error::inval("fn is NULL"))?;
    require!(max_out <= isize::MAX as usize, "max_out is too large");
    let mut a = StreamArgs { func, ctx: ctx as usize, ctx_size: 0, max_out, timeout: None, ordered: true, window: 0 };
    // SAFETY: the caller passes a readable pool_stream_options_t or NULL (checked).
    if let Some(o) = unsafe { opts.as_ref() } {
        let size = std::mem::size_of::<pool_stream_options_t>();
        let _ = covered(o.struct_size, size, "pool_stream_options_t", "pool_stream_options_init")?;
        require!(!o.task_timeout.is_nan(), "task_timeout is NaN");
        a = StreamArgs {
            ordered: o.ordered,
            window: o.window,
            timeout: seconds(o.task_timeout),
            ctx_size: o.ctx_size,
            ..a
        };
    }
    // SAFETY: arguments checked; the caller keeps an array's buffers valid while the stream
    // lives, and a source writes at most `cap` bytes (its contract).
    let s = unsafe { p.pool().stream(a, input) }?;
    let abandoned = s.abandon_flag();
    Ok(pool_stream_t(Mutex::new(s), abandoned))
}

/// Runs `f` (a `pool_task_fn`) on each of the `n` buffers of `items` in the pool's workers and
/// hands back the results one at a time through `pool_stream_next`: variable-size input and
/// output per item, at most `max_out` bytes of result each, written by the task with
/// `pool_out_write` or `pool_out_reserve`/`pool_out_commit`. At most `opts->window` items are
/// submitted and not yet handed back: a consumer slower than the workers holds them back
/// (backpressure), so memory stays bounded for any `n`; when the pool's shared memory is
/// full, fewer items are in flight. Each buffer is copied into shared memory when its item is
/// submitted; an item too big to ever fit fails alone (`POOL_ENOMEM`). `opts` may be NULL (the
/// defaults).
/// Returns NULL on failure with `pool_last_error()` set (`POOL_ENOMEM` if `max_out` can never
/// fit).
/// Ownership: `items` and the buffers it points to must stay valid until the stream is freed
/// (with `pool_stream_free`). Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_stream(
    pool: *mut pool_t,
    f: pool_task_fn,
    items: *const pool_buf_t,
    n: usize,
    max_out: usize,
    ctx: *mut c_void,
    opts: *const pool_stream_options_t,
) -> *mut pool_stream_t {
    handle(|| {
        require!(n == 0 || !items.is_null(), "items is NULL");
        require!(n <= isize::MAX as usize / std::mem::size_of::<pool_buf_t>(), "n is too large");
        if n > 0 {
            // SAFETY: non-NULL, and the caller says it holds n entries.
            let all = unsafe { std::slice::from_raw_parts(items, n) };
            if let Some(i) = all.iter().position(|b| b.len > 0 && b.data.is_null()) {
                return Err(Error::inval(format!("items[{i}].data is NULL but its len is {}", all[i].len)));
            }
            if let Some(i) = all.iter().position(|b| b.len > isize::MAX as usize) {
                return Err(Error::inval(format!("items[{i}].len is too large")));
            }
        }
        let input = StreamInput::Array { items: items as usize, n }; // pool_buf_t is two words
        start(pool, f, input, max_out, ctx, opts)
    })
}

/// Like `pool_stream`, for input of any length produced on demand: `source` writes each item
/// (up to `max_in` bytes) straight into the pool's shared memory as workers need more, so
/// neither the input nor the results ever need to be in memory at once (about `window *
/// (max_in + max_out)` bytes of shared memory at most; fewer items are in flight when the
/// pool's shared memory holds fewer). `opts` may be NULL.
/// Returns NULL on failure with `pool_last_error()` set (`POOL_ENOMEM` if one item's `max_in +
/// max_out` can never fit in the pool's shared memory).
/// Ownership: free with `pool_stream_free`. Thread safety: any thread.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn pool_stream_source(
    pool: *mut pool_t,
    f: pool_task_fn,
    source: pool_stream_source_fn,
    source_ctx: *mut c_void,
    max_in: usize,
    max_out: usize,
    ctx: *mut c_void,
    opts: *const pool_stream_options_t,
) -> *mut pool_stream_t {
    handle(|| {
        let src = source.ok_or_else(|| Error::inval("source is NULL"))?;
        require!(max_in <= isize::MAX as usize, "max_in is too large");
        let input = StreamInput::Source { f: src, ctx: source_ctx as usize, max_in };
        start(pool, f, input, max_out, ctx, opts)
    })
}

/// Waits up to `timeout` seconds (negative: forever) for the next result. On `POOL_OK`,
/// `*data` points to its `*len` bytes (zero copy: they stay valid, unchanged, until the next
/// `pool_stream_next` on this stream or `pool_stream_free`) and `*index` says which item it
/// is. If that item failed, returns its status (`POOL_ETASK`, `POOL_ECRASHED`,
/// `POOL_ETIMEDOUT`, ...) with `*index` set, `*data` NULL, `*len` 0 and `pool_last_error()`
/// saying why; the next call goes on with the other items. Nothing ready in time:
/// `POOL_ETIMEDOUT` with `*index` set to `SIZE_MAX` (an item that timed out has its own index).
/// `POOL_EDONE`: every result was returned. A source that failed: its status (`POOL_ETASK`,
/// `POOL_EINVAL` for a length over `max_in`) once after the last result, then `POOL_EDONE`.
/// If the pool stops taking work before the input ends (even because it was found corrupt),
/// what was submitted still comes back, then each array item never submitted with
/// `POOL_ECLOSED` and its index (a source: the status once), then `POOL_EDONE`. Called from inside the same stream's source: `POOL_EINVAL`.
/// `data`, `len` and `index` may be NULL. Thread safety: one consumer at a time (calls are
/// serialised). Not a cancellation point (see `pool_iter_next`).
#[no_mangle]
pub extern "C" fn pool_stream_next(
    s: *mut pool_stream_t,
    data: *mut *const c_void,
    len: *mut usize,
    index: *mut usize,
    timeout: f64,
) -> c_int {
    // SAFETY (all writes below): each pointer is checked non-NULL; the caller says it is writable.
    let put = |d: *const c_void, l: usize, i: usize| unsafe {
        if !data.is_null() {
            *data = d;
        }
        if !len.is_null() {
            *len = l;
        }
        if !index.is_null() {
            *index = i;
        }
    };
    status(|| {
        put(std::ptr::null(), 0, usize::MAX);
        let token = s as usize;
        let s = get(s)?;
        let t = self::timeout(timeout)?;
        // A source runs inside pool_stream_next: calling into the same stream from there (even
        // through another stream's source) would wait for itself.
        let _running = super::reentry::enter(token, "pool_stream_next")?;
        let mut guard = s.0.lock().unwrap_or_else(|e| e.into_inner());
        let r = guard.next(t);
        // Freed meanwhile (by another thread): the result's memory goes with the stream.
        if s.1.load(Acquire) {
            return Err(Error::inval("the stream was freed while this call waited"));
        }
        match r? {
            None => Err(Error::new(Status::Done, "the stream has returned every result")),
            Some(item) => match item.result {
                Ok((p, l)) => {
                    put(p as *const c_void, l, item.index);
                    Ok(())
                }
                Err(e) => {
                    put(std::ptr::null(), 0, item.index);
                    Err(e)
                }
            },
        }
    })
}

/// Items finished so far (`*done`: handed back, or ended and waiting their turn, so an ordered
/// stream's progress moves on while an earlier item still runs) and how many there will be
/// (`*total`: `n` for an array; for a source, 0 until it has ended). Either pointer may be NULL.
/// Thread safety: any thread (waits for a `pool_stream_next` running in another thread).
#[no_mangle]
pub extern "C" fn pool_stream_progress(s: *mut pool_stream_t, done: *mut usize, total: *mut usize) -> c_int {
    status(|| {
        let token = s as usize;
        let s = get(s)?;
        super::reentry::check(token, "pool_stream_progress")?;
        let (d, t) = s.0.lock().unwrap_or_else(|e| e.into_inner()).progress();
        // SAFETY: each pointer is checked non-NULL; the caller says it is writable.
        unsafe {
            if !done.is_null() {
                *done = d;
            }
            if !total.is_null() {
                *total = t;
            }
        }
        Ok(())
    })
}

/// Frees a stream: work for results not yet handed back is cancelled, and the last result's
/// bytes become invalid. A `pool_stream_next` waiting in another thread returns `POOL_EINVAL`
/// (within 0.2 s), handing out nothing; the cancel happens once it has returned. NULL is a no-op.
/// Ownership: `s` is invalid afterwards (a later call with it reports `POOL_EINVAL`). In a
/// forked child, only the child's copy of the handle is released. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_stream_free(s: *mut pool_stream_t) {
    release(s, |s| {
        s.1.store(true, Release); // a next() waiting in another thread returns soon
        drop(s)
    })
}
