//! Block maps: a map whose function gets a block of consecutive items per call.

use super::options::pool_map_options_t;
use super::pool::{map_and_wait, map_args_of, map_in_background, pool_t};
use super::result::pool_async_t;
use crate::core::map::MapFn;
use crate::core::Error;
use std::os::raw::{c_int, c_void};

/// A block of a map, run in a worker process: items `first .. first+count-1`, their inputs at
/// `input` (`count * in_size` bytes, NULL if `in_size` is 0) and their outputs to write at `out`
/// (`count * out_size` bytes, NULL if `out_size` is 0). Return 0 for success; anything else
/// fails the whole block with that code.
#[allow(non_camel_case_types)]
pub type pool_block_fn = Option<
    unsafe extern "C" fn(input: *const c_void, out: *mut c_void, count: usize, first: usize, ctx: *mut c_void) -> c_int,
>;

#[allow(clippy::too_many_arguments)]
fn block_args(
    f: pool_block_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> Result<(crate::core::MapArgs, Option<super::callbacks::Callback>), Error> {
    let func = f.ok_or_else(|| Error::inval("fn is NULL"))?;
    map_args_of(MapFn::Blocks(func), input, in_size, out, out_size, n, ctx, opts)
}

/// `pool_map` for functions that take a block of consecutive items per call (`pool_block_fn`):
/// one call per chunk instead of one per item, for items too small to pay a call each (a loop
/// the compiler can vectorise, a library call that takes arrays). `opts->chunksize` is the
/// block size (0: automatic, a few blocks per worker). Item sizes may be 0 (a loop over
/// indices with no data: `input`/`out` may then be NULL). A block that fails (returns nonzero,
/// crashes, times out: `task_timeout` applies to a whole block) fails alone: each of its items
/// gets its status in `opts->statuses`, and the map returns the status of the lowest failed
/// block, with `pool_last_error()` naming its first item. Buffers from `pool_shm_alloc` are
/// used in place (no copy); others are copied through shared memory block by block.
/// Ownership: `input` and `out` stay the caller's. Thread safety: any thread. Not a cancellation
/// point (as `pool_map`).
#[no_mangle]
pub extern "C" fn pool_map_blocks(
    pool: *mut pool_t,
    f: pool_block_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> c_int {
    map_and_wait(pool, "pool_map_blocks", "pool_map_blocks_async", || {
        block_args(f, input, in_size, out, out_size, n, ctx, opts)
    })
}

/// `pool_map_blocks` returning at once with a handle (as `pool_map_async_ex`: buffers and
/// `statuses` stay valid until the result is ready or the handle freed; a `callback` in `opts`
/// is called when it is ready).
/// Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_map_blocks_async(
    pool: *mut pool_t,
    f: pool_block_fn,
    input: *const c_void,
    in_size: usize,
    out: *mut c_void,
    out_size: usize,
    n: usize,
    ctx: *mut c_void,
    opts: *const pool_map_options_t,
) -> *mut pool_async_t {
    map_in_background(pool, || block_args(f, input, in_size, out, out_size, n, ctx, opts))
}
