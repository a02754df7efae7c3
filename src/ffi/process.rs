//! `pool_process_t`: Python's multiprocessing.Process.

use super::handles::{get, get_opt, Handle};
use super::macros::{handle, release, status, value};
use super::result::timeout;
use crate::core::process::ProcessOptions;
use crate::core::{Error, Process};
use std::os::raw::{c_int, c_void};

/// A function run in a child process by `pool_process_start`; its return value (0-255) is the
/// child's exit status.
#[allow(non_camel_case_types)]
pub type pool_process_fn = Option<unsafe extern "C" fn(arg: *mut c_void) -> c_int>;

/// A child process running one function (opaque).
#[allow(non_camel_case_types)]
pub struct pool_process_t(Process);

impl Handle for pool_process_t {
    const NAME: &'static str = "pool_process_t";
    const WHAT: &'static str = "process";
    const OWNER_RULE: &'static str =
        "a process object can only be used by the process that created it (a forked child is not the parent of its process)";
}

/// Creates a process object that will run `f(arg)`; nothing is started yet. Returns NULL (with
/// `pool_last_error()`) if `f` is NULL.
/// Ownership: the caller frees it with `pool_process_free`. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_create(f: pool_process_fn, arg: *mut c_void) -> *mut pool_process_t {
    handle(|| Ok(pool_process_t(Process::new(f.ok_or_else(|| Error::inval("fn is NULL"))?, arg))))
}

/// Options for `pool_process_create_ex`. Call `pool_process_options_init` first.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_process_options_t {
    /// sizeof(pool_process_options_t) as the caller was compiled; set by `pool_process_options_init`.
    pub struct_size: usize,
    /// A daemon child is killed (SIGKILL) when the host process ends, however it ends (even by
    /// SIGKILL), as Python's `daemon=True` processes are; a plain child outlives its parent.
    /// (Linux ties this to the thread that called `pool_process_start`: start daemons from a thread
    /// that lives as long as the process, such as the main thread.)
    pub daemon: bool,
    /// The child's name in `ps` and `/proc/<pid>/comm` (the first 15 bytes), or NULL to keep
    /// the host's. Copied by `pool_process_create_ex`.
    pub name: *const std::os::raw::c_char,
}

/// Fills `opts` with the defaults (not a daemon, the host's name) and stamps its size. NULL is
/// a no-op. Thread safety: any thread on distinct structs.
#[no_mangle]
pub extern "C" fn pool_process_options_init(opts: *mut pool_process_options_t) {
    super::macros::boundary(|| {
        // SAFETY: the caller passes a writable struct or NULL (checked).
        if let Some(o) = unsafe { opts.as_mut() } {
            *o = pool_process_options_t {
                struct_size: std::mem::size_of::<pool_process_options_t>(),
                daemon: false,
                name: std::ptr::null(),
            };
        }
    })
}

/// `pool_process_create` with options (`opts` NULL: the defaults). Returns NULL (with
/// `pool_last_error()`) if `f` is NULL or `opts` was not initialised with
/// `pool_process_options_init`. Ownership: free it with `pool_process_free`; `opts` stays the caller's.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_create_ex(
    f: pool_process_fn,
    arg: *mut c_void,
    opts: *const pool_process_options_t,
) -> *mut pool_process_t {
    handle(|| {
        let f = f.ok_or_else(|| Error::inval("fn is NULL"))?;
        // SAFETY: the caller passes a readable struct or NULL (checked).
        let o = match unsafe { opts.as_ref() } {
            None => ProcessOptions::default(),
            Some(o) => {
                require!(
                    o.struct_size >= std::mem::size_of::<pool_process_options_t>() && o.struct_size <= 1 << 16,
                    "pool_process_options_t was not initialised with pool_process_options_init (bad struct_size)"
                );
                // SAFETY: a NUL-terminated string from the caller, or NULL (checked).
                let name = (!o.name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(o.name) }.to_bytes().to_vec());
                ProcessOptions { daemon: o.daemon, name }
            }
        };
        Ok(pool_process_t(Process::with_options(f, arg, o)))
    })
}

/// Forks: the child runs `f(arg)`, flushes stdio and exits with the return value. Starting
/// twice is `POOL_EINVAL`. stdio is flushed before the fork so no output is duplicated.
/// Thread safety: any thread (safe in a host running many threads).
#[no_mangle]
pub extern "C" fn pool_process_start(p: *mut pool_process_t) -> c_int {
    status(|| get(p)?.0.start())
}

/// Waits up to `timeout` seconds (negative: forever) for the child to exit and reaps it.
/// `POOL_ETIMEDOUT` while it still runs; `POOL_EINVAL` before `pool_process_start`.
/// Thread safety: any thread. Not a cancellation point: a cancel takes effect after it
/// returns; to cancel a waiting thread promptly, wait in a loop with a timeout and call
/// `pthread_testcancel` between waits.
#[no_mangle]
pub extern "C" fn pool_process_join(p: *mut pool_process_t, timeout: f64) -> c_int {
    status(|| get(p)?.0.join(self::timeout(timeout)?))
}

/// True while the child runs; false before start, once it has exited (no join needed), for
/// NULL, and (with `pool_last_error()` set) if `p` is not a live handle. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_is_alive(p: *mut pool_process_t) -> bool {
    value(false, || Ok(get_opt(p)?.is_some_and(|p| p.0.is_alive())))
}

/// Sends SIGTERM to the child (a no-op once it has exited). `POOL_EINVAL` before start.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_terminate(p: *mut pool_process_t) -> c_int {
    status(|| get(p)?.0.signal(libc::SIGTERM))
}

/// Sends SIGKILL to the child (a no-op once it has exited). `POOL_EINVAL` before start.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_kill(p: *mut pool_process_t) -> c_int {
    status(|| get(p)?.0.signal(libc::SIGKILL))
}

/// Once the child has finished: `POOL_OK` and `*code` = its exit status, or `-N` if it was
/// killed by signal N (as Python). Before that, `POOL_ETIMEDOUT` (running) or `POOL_EINVAL`
/// (not started, NULL `code`); `*code` is written only on success.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_exitcode(p: *const pool_process_t, code: *mut c_int) -> c_int {
    status(|| {
        let p = get(p)?;
        require!(!code.is_null(), "code is NULL");
        let c = p.0.exitcode()?;
        // SAFETY: checked non-NULL above.
        unsafe { *code = c };
        Ok(())
    })
}

/// The child's pid, or -1 before `pool_process_start`, for NULL, and (with `pool_last_error()` set)
/// if `p` is not a live handle. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_pid(p: *const pool_process_t) -> c_int {
    value(-1, || Ok(get_opt(p)?.map_or(-1, |p| p.0.pid())))
}

/// Frees the process object. A child still running is killed and reaped (no zombie is left),
/// once calls on the object still running in other threads (a `pool_process_join`) have returned.
/// NULL is a no-op.
/// Ownership: `p` is invalid afterwards: any later call with it (a second `pool_process_free`
/// included) does nothing but report `POOL_EINVAL` ("not a live handle"). In a forked child,
/// only the child's copy of the object is released (the parent's child process is untouched).
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn pool_process_free(p: *mut pool_process_t) {
    release(p, drop)
}
