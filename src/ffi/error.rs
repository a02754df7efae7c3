//! Status codes, messages and the library version.

use crate::core::{Error, Status};
use std::cell::RefCell;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};

/// Status codes returned by libpool functions. The values are fixed and never reused.
#[repr(C)]
#[allow(non_camel_case_types)]
pub enum pool_status {
    /// Success.
    POOL_OK = 0,
    /// An argument is invalid (NULL, zero size, overflow, wrong state, wrong process).
    POOL_EINVAL = 1,
    /// Out of memory, or the pool's shared memory cannot hold the data.
    POOL_ENOMEM = 2,
    /// A system call failed; `pool_last_error()` names it and gives the errno text.
    POOL_ESYS = 3,
    /// Not ready within the timeout, or the task ran past the pool's `task_timeout`.
    POOL_ETIMEDOUT = 4,
    /// The task function returned nonzero; `pool_last_error()` gives its code.
    POOL_ETASK = 5,
    /// The worker running the task died (signal or exit); `pool_last_error()` says how.
    POOL_ECRASHED = 6,
    /// The pool is closed or terminated.
    POOL_ECLOSED = 7,
    /// An internal error was caught at the library boundary (a bug in libpool).
    POOL_EPANIC = 8,
    /// The work was cancelled with `pool_async_cancel`.
    POOL_ECANCELLED = 9,
    /// An iterator has returned every result (`pool_iter_next`).
    POOL_EDONE = 10,
    /// The pool's shared memory was found overwritten (a task wrote where no task can write
    /// without looking for it): the results it held cannot be trusted, so they fail with this
    /// status and the pool is terminated.
    POOL_ECORRUPT = 11,
    /// `pool_lock_acquire` took the lock, but its previous holder died holding it: what the
    /// lock protects may be half-updated. The caller holds the lock.
    POOL_EOWNERDEAD = 12,
}

/// Library version, kept equal to Cargo.toml by a test.
pub const POOL_VERSION_MAJOR: u32 = 0;
pub const POOL_VERSION_MINOR: u32 = 1;
pub const POOL_VERSION_PATCH: u32 = 0;

thread_local! {
    static LAST_ERROR: RefCell<(c_int, CString)> = RefCell::new((0, CString::default()));
}

pub(crate) fn set_last_error(e: &Error) {
    let msg = CString::new(e.msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = (e.status as c_int, msg));
}

/// The version of the library as "MAJOR.MINOR.PATCH" (a static string).
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn pool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// A static, human-readable description of a status code ("unknown status" for others).
///
/// Ownership: the string is static; do not free it. Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn pool_strerror(status: c_int) -> *const c_char {
    Status::of(status).map_or(c"unknown status", Status::describe_c).as_ptr()
}

/// A message about the calling thread's most recent failure: what failed and why (the item
/// index, the task's return code, the signal that killed a worker, the errno text). Empty
/// ("") if nothing failed yet on this thread.
///
/// Ownership: owned by the library; valid until the next libpool call on this thread.
/// Thread safety: each thread has its own message.
#[no_mangle]
pub extern "C" fn pool_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().1.as_ptr())
}

/// The status of the calling thread's most recent failure (`POOL_OK` if none yet): useful after
/// a function that returns NULL, such as `pool_create` or `pool_apply_async`.
///
/// Thread safety: each thread has its own status.
#[no_mangle]
pub extern "C" fn pool_last_status() -> c_int {
    LAST_ERROR.with(|l| l.borrow().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_cargo() {
        let v = format!("{POOL_VERSION_MAJOR}.{POOL_VERSION_MINOR}.{POOL_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        // SAFETY: pool_version returns a static NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(pool_version()) };
        assert_eq!(s.to_str().unwrap(), v);
    }

    #[test]
    fn c_enum_matches_core_statuses() {
        use pool_status::*;
        let pairs = [
            (POOL_OK, Status::Ok),
            (POOL_EINVAL, Status::Inval),
            (POOL_ENOMEM, Status::NoMem),
            (POOL_ESYS, Status::Sys),
            (POOL_ETIMEDOUT, Status::TimedOut),
            (POOL_ETASK, Status::Task),
            (POOL_ECRASHED, Status::Crashed),
            (POOL_ECLOSED, Status::Closed),
            (POOL_EPANIC, Status::Panic),
            (POOL_ECANCELLED, Status::Cancelled),
            (POOL_EDONE, Status::Done),
            (POOL_ECORRUPT, Status::Corrupt),
            (POOL_EOWNERDEAD, Status::OwnerDead),
        ];
        for (c, core) in pairs {
            assert_eq!(c as c_int, core as c_int);
        }
    }

    #[test]
    fn strerror_covers_every_status() {
        for code in 0..=12 {
            // SAFETY: static NUL-terminated strings.
            let s = unsafe { std::ffi::CStr::from_ptr(pool_strerror(code)) }.to_str().unwrap();
            assert_eq!(s, Status::of(code).unwrap().describe());
            assert_eq!(Status::of(code).unwrap() as c_int, code, "numbers are fixed");
        }
        // SAFETY: as above.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(pool_strerror(99)) }.to_str().unwrap(), "unknown status");
    }
}
