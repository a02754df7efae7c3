//! Completion callbacks (`pool_call_options_t::callback`, `pool_map_options_t::callback`): the C
//! function and its argument, called by the pool's callback thread (`core::callbacks`) with the
//! result's handle and status.

use super::error::set_last_error;
use super::handles::get;
use super::result::pool_async_t;
use crate::core::callbacks::{Callbacks, Gate, Watched};
use crate::core::{AsyncResult, Error, Outcome};
use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Weak};

/// `void callback(pool_async_t *a, int status, void *arg)`
pub type CallbackFn = unsafe extern "C" fn(a: *mut pool_async_t, status: c_int, arg: *mut c_void);

/// A callback and its argument, from the options.
#[derive(Clone, Copy)]
pub struct Callback(pub CallbackFn, pub usize);

impl Watched for pool_async_t {
    fn result(&self) -> &AsyncResult {
        &self.0
    }
    fn gate(&self) -> &Arc<Gate> {
        &self.1
    }
}

/// Calls `cb` from the pool's callback thread once the result `h` is ready (unless it is
/// freed first).
pub fn add(callbacks: &Callbacks, h: *mut pool_async_t, cb: Callback) -> Result<(), Error> {
    let obj = get(h)?;
    let weak: Weak<pool_async_t> = Arc::downgrade(&obj);
    let token = h as usize;
    let call = move |o: &Outcome| {
        let status = o.err.as_ref().map_or(0, |e| {
            set_last_error(e);
            e.status as c_int
        });
        // SAFETY: the caller's callback, on its own live handle (the gate keeps it from being
        // freed meanwhile) and argument.
        unsafe { (cb.0)(token as *mut pool_async_t, status, cb.1 as *mut c_void) };
    };
    callbacks.add(weak, Box::new(call))
}
