//! The panic boundary and argument checks shared by every exported function.

use super::error::set_last_error;
use super::handles::{self, Handle};
use crate::core::{Error, Status};
use crate::sys::proc::NoCancel;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// What an exported function returns when a panic was caught.
pub trait Fallback {
    fn fallback() -> Self;
}
impl Fallback for c_int {
    fn fallback() -> c_int {
        Status::Panic as c_int
    }
}
impl Fallback for bool {
    fn fallback() -> bool {
        false
    }
}
impl Fallback for () {
    fn fallback() {}
}
impl<T> Fallback for *mut T {
    fn fallback() -> *mut T {
        std::ptr::null_mut()
    }
}
impl<T> Fallback for *const T {
    fn fallback() -> *const T {
        std::ptr::null()
    }
}

/// Runs `f`, turning a panic into the return type's fallback and a `pool_last_error` message.
/// The thread cannot be cancelled meanwhile (see `NoCancel`): no library function is a
/// cancellation point.
pub fn boundary<R: Fallback>(f: impl FnOnce() -> R) -> R {
    let _no_cancel = NoCancel::enter();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&Error::new(Status::Panic, format!("internal error: {what}")));
            R::fallback()
        }
    }
}

/// For functions returning a status: `Ok` is `POOL_OK`; an error sets `pool_last_error`.
pub fn status(f: impl FnOnce() -> Result<(), Error>) -> c_int {
    boundary(|| match f() {
        Ok(()) => Status::Ok as c_int,
        Err(e) => {
            set_last_error(&e);
            e.status as c_int
        }
    })
}

/// For functions returning a plain value: `on_error` on error, with `pool_last_error` set.
pub fn value<R: Fallback>(on_error: R, f: impl FnOnce() -> Result<R, Error>) -> R {
    boundary(|| {
        f().unwrap_or_else(|e| {
            set_last_error(&e);
            on_error
        })
    })
}

/// For functions returning a new handle: NULL on error, with `pool_last_error` set.
pub fn handle<T: Handle>(f: impl FnOnce() -> Result<T, Error>) -> *mut T {
    boundary(|| match handles::not_in_task().and_then(|()| f()).and_then(handles::insert) {
        Ok(h) => h,
        Err(e) => {
            set_last_error(&e);
            std::ptr::null_mut()
        }
    })
}

/// For the functions that free a handle: `f` gets the object once it is out of the registry
/// (other calls on it still running keep it alive until they return). NULL is a no-op; a
/// handle that is not live sets `pool_last_error` and does nothing else.
pub fn release<T: Handle>(h: *mut T, f: impl FnOnce(Arc<T>)) {
    boundary(|| match handles::remove(h) {
        Ok(Some(obj)) => f(obj),
        Ok(None) => {}
        Err(e) => set_last_error(&e),
    })
}

/// Fails with `POOL_EINVAL` when a required pointer is NULL.
macro_rules! require {
    ($cond:expr, $msg:expr) => {
        if !$cond {
            return Err($crate::core::Error::inval($msg));
        }
    };
}
