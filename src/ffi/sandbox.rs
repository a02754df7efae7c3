//! What a sandboxed pool's workers get (`pool_options_t.sandbox`).

use super::handles::get_opt;
use super::macros::value;
use super::pool::pool_t;
use std::os::raw::c_char;

/// A line saying what the sandbox gives each worker of `pool` (the Landlock ABI and the paths
/// it may read and write, the seccomp filter's refusals), for logs; NULL if `pool` has no
/// sandbox, or is NULL (or not a live pool: then with `pool_last_error()` set).
///
/// Ownership: the string belongs to the pool and stays valid until `pool_destroy`.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn pool_sandbox_report(pool: *const pool_t) -> *const c_char {
    value(std::ptr::null(), || {
        // The string lives in the pool_t, which the handle table keeps until pool_destroy.
        Ok(get_opt(pool)?.map_or(std::ptr::null(), |p| p.sandbox_report().map_or(std::ptr::null(), |r| r.as_ptr())))
    })
}
