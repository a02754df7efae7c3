//! The panic boundary and argument checks shared by every exported function.

use super::error::set_last_error;
use crate::core::{Error, Status};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

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

/// Runs `f`, turning a panic into the return type's fallback and a `pool_last_error` message.
pub fn boundary<R: Fallback>(f: impl FnOnce() -> R) -> R {
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

/// For functions returning a new handle: NULL on error, with `pool_last_error` set.
pub fn handle<T>(f: impl FnOnce() -> Result<T, Error>) -> *mut T {
    boundary(|| match f() {
        Ok(v) => Box::into_raw(Box::new(v)),
        Err(e) => {
            set_last_error(&e);
            std::ptr::null_mut()
        }
    })
}

/// Borrows a handle, or fails with `POOL_EINVAL` naming the argument.
macro_rules! try_ref {
    ($p:expr, $what:literal) => {
        // SAFETY: the caller passes a handle returned by this library and not yet freed, or NULL
        // (checked here); handles are only ever accessed through shared references.
        match unsafe { $p.as_ref() } {
            Some(r) => r,
            None => return Err($crate::core::Error::inval(concat!($what, " is NULL"))),
        }
    };
}

/// Fails with `POOL_EINVAL` when a required pointer is NULL.
macro_rules! require {
    ($cond:expr, $msg:expr) => {
        if !$cond {
            return Err($crate::core::Error::inval($msg));
        }
    };
}
