//! `pool_iter_t`: Python's `imap` and `imap_unordered`.

use super::handles::{get, Handle};
use super::macros::{handle, release, status};
use super::options::{convert_map, pool_map_options_t};
use super::pool::{pool_fn, pool_t};
use super::result::timeout;
use crate::core::iter::{Input, MapIter};
use crate::core::map::MapFn;
use crate::core::{Error, MapArgs, Status};
use std::os::raw::{c_int, c_void};
use std::sync::Mutex;

/// An iterator over the results of a map, one at a time (opaque).
#[allow(non_camel_case_types)]
pub struct pool_iter_t(Mutex<MapIter>);

impl Handle for pool_iter_t {
    const NAME: &'static str = "pool_iter_t";
    const WHAT: &'static str = "iterator";
}

#[allow(clippy::too_many_arguments)]
fn start(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
    ordered: bool,
) -> Result<pool_iter_t, Error> {
    let p = get(pool)?;
    let func = f.ok_or_else(|| Error::inval("fn is NULL"))?;
    require!(in_size > 0 && out_size > 0, "item sizes (in_size, out_size) must be > 0");
    require!(n.checked_mul(in_size).is_some_and(|b| b <= isize::MAX as usize), "n * in_size overflows");
    require!(n == 0 || !input.is_null(), "in is NULL");
    let o = convert_map(opts)?;
    require!(o.callback.is_none(), "callback: iterators do not take one (their results are read one by one)");
    let a = MapArgs {
        func: MapFn::Items(func),
        input: input as usize,
        in_size,
        out: 0,
        out_size,
        n,
        ctx: ctx as usize,
        ctx_size: o.ctx_size,
        chunksize: o.chunksize,
        statuses: 0,
        timeout: o.timeout,
        shared_pointers_only: o.shared_pointers_only,
    };
    // SAFETY: arguments checked; the caller keeps `in` valid while the iterator lives.
    Ok(pool_iter_t(Mutex::new(unsafe { p.pool().imap(a, Input::Array, ordered) }?)))
}

/// Produces input item `index` (0, 1, 2, ...) into `item` (`in_size` bytes) for
/// `pool_imap_source`. Return 0 for an item, 1 when there are no more, any other value for an
/// error (which also ends the input; `pool_iter_next` reports it after the last result).
/// Runs in the thread calling `pool_iter_next`, never in a worker.
#[allow(non_camel_case_types)]
pub type pool_source_fn =
    Option<unsafe extern "C" fn(item: *mut c_void, index: usize, source_ctx: *mut c_void) -> c_int>;

/// Like `pool_imap`, for input of any length produced on demand: `source` writes each item
/// straight into the pool's shared memory as workers need more, so neither the input nor the
/// results ever need to be in memory at once. `ordered`: results in item order, or as they
/// complete. `opts` may be NULL (`chunksize` 0 picks up to 1024 items per chunk).
/// Returns NULL on failure with `pool_last_error()` set.
/// Ownership: free with `pool_iter_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_imap_source(
    pool: *mut pool_t,
    f: pool_fn,
    source: pool_source_fn,
    source_ctx: *mut c_void,
    in_size: usize,
    out_size: usize,
    ctx: *mut c_void,
    ordered: bool,
    opts: *const pool_map_options_t,
) -> *mut pool_iter_t {
    handle(|| {
        let p = get(pool)?;
        let func = f.ok_or_else(|| Error::inval("fn is NULL"))?;
        let src = source.ok_or_else(|| Error::inval("source is NULL"))?;
        require!(in_size > 0 && out_size > 0, "item sizes (in_size, out_size) must be > 0");
        let o = convert_map(opts)?;
        require!(o.callback.is_none(), "callback: iterators do not take one (their results are read one by one)");
        let a = MapArgs {
            func: MapFn::Items(func),
            input: 0,
            in_size,
            out: 0,
            out_size,
            n: 0,
            ctx: ctx as usize,
            ctx_size: o.ctx_size,
            chunksize: o.chunksize,
            statuses: 0,
            timeout: o.timeout,
            shared_pointers_only: o.shared_pointers_only,
        };
        let input = Input::Source { f: src, ctx: source_ctx as usize };
        // SAFETY: arguments checked; the source writes in_size bytes per call as documented.
        Ok(pool_iter_t(Mutex::new(unsafe { p.pool().imap(a, input, ordered) }?)))
    })
}

/// Like `pool_map`, but results come back one at a time through `pool_iter_next`, in item
/// order, as they complete. Only a few chunks are in flight and waiting to be read at any time:
/// a consumer slower than the workers holds them back (backpressure), so memory stays bounded
/// for any `n`. `opts` may be NULL (its `statuses` field is ignored: each result carries its
/// own status). `input` must stay valid until the iterator is freed.
/// Returns NULL on failure with `pool_last_error()` set.
/// Ownership: free with `pool_iter_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_imap(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> *mut pool_iter_t {
    handle(|| start(pool, f, input, in_size, out_size, n, ctx, opts, true))
}

/// `pool_imap` whose results come back in the order they complete (`*index` tells which item
/// each one is). Same arguments, errors and ownership as `pool_imap`.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_imap_unordered(
    pool: *mut pool_t,
    f: pool_fn,
    input: *const c_void,
    in_size: usize,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> *mut pool_iter_t {
    handle(|| start(pool, f, input, in_size, out_size, n, ctx, opts, false))
}

/// Waits up to `timeout` seconds (negative: forever) for the next result. On `POOL_OK` its
/// output is in `out` (`out_size` bytes) and `*index` says which item it is. If that item
/// failed, returns its status (`POOL_ETASK`, `POOL_ECRASHED`, ...) with `*index` set, `out`
/// untouched and `pool_last_error()` saying why; the next call goes on with the other items.
/// `POOL_ETIMEDOUT`: nothing ready yet. `POOL_EDONE`: every result was returned. A return that
/// is about no item (these two, a source's own status, a refusal) sets `*index` to `SIZE_MAX`.
/// If the pool
/// stops taking work before the input ends (joined, terminated, zygote killed, or found
/// corrupt), what was submitted still comes back, then each array item never submitted with
/// `POOL_ECLOSED` ("never run" after `POOL_ECORRUPT`) and its index (a source: the status
/// once), then `POOL_EDONE`. Called from
/// inside the same iterator's source, returns `POOL_EINVAL` (it would wait for itself).
/// `index` may be NULL. Thread safety: one consumer at a time (calls are serialised). Not a
/// cancellation point: a cancel takes effect after it returns; to cancel a waiting thread
/// promptly, wait in a loop with a timeout and call `pthread_testcancel` between waits.
#[no_mangle]
pub extern "C" fn pool_iter_next(it: *mut pool_iter_t, out: *mut c_void, index: *mut usize, timeout: f64) -> c_int {
    status(|| {
        let token = it as usize;
        let it = get(it)?;
        require!(!out.is_null(), "out is NULL");
        let t = self::timeout(timeout)?;
        // A source runs inside pool_iter_next: calling it again on the same iterator from there
        // (even through another iterator's source) would wait for itself.
        let _running = super::reentry::enter(token, "pool_iter_next")?;
        let mut guard = it.0.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `out` is non-NULL and the caller says it holds out_size bytes.
        let r = unsafe { guard.next(out as *mut u8, t) };
        let set_index = |i: usize| {
            if !index.is_null() {
                // SAFETY: checked non-NULL; the caller passes a writable size_t.
                unsafe { *index = i };
            }
        };
        match r {
            Ok(Some(item)) => {
                set_index(item.index);
                item.err.map_or(Ok(()), Err)
            }
            // No item: nothing ready, the end, or the source's own status.
            Ok(None) => {
                set_index(usize::MAX);
                Err(Error::new(Status::Done, "the iterator has returned every result"))
            }
            Err(e) => {
                set_index(usize::MAX);
                Err(e)
            }
        }
    })
}

/// Frees an iterator; work for results not yet read is cancelled (once a `pool_iter_next` still
/// running in another thread has returned). NULL is a no-op.
/// Ownership: `it` is invalid afterwards: any later call with it (a second `pool_iter_free`
/// included) does nothing but report `POOL_EINVAL` ("not a live handle"). In a forked child,
/// only the child's copy of the handle is released. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_iter_free(it: *mut pool_iter_t) {
    release(it, drop)
}
