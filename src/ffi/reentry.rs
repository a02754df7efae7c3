//! Calls that run the caller's code (an iterator's or a stream's source) while holding the
//! object's lock: that code must not call back into an object whose call is running on this
//! thread (it would wait for itself), however deeply nested.

use crate::core::Error;
use std::cell::RefCell;

thread_local! {
    /// The objects (their handle tokens) with a call running on this thread, innermost last.
    static RUNNING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Fails with `POOL_EINVAL` if a call on `token` runs on this thread already.
pub(super) fn check(token: usize, what: &str) -> Result<(), Error> {
    if RUNNING.with(|r| r.borrow().contains(&token)) {
        return Err(Error::inval(format!("{what} called from inside a call on the same object (its source)")));
    }
    Ok(())
}

/// Marks a call on `token` as running on this thread until the guard is dropped.
pub(super) fn enter(token: usize, what: &str) -> Result<Guard, Error> {
    check(token, what)?;
    RUNNING.with(|r| r.borrow_mut().push(token));
    Ok(Guard(token))
}

pub(super) struct Guard(usize);

impl Drop for Guard {
    fn drop(&mut self) {
        RUNNING.with(|r| {
            let mut r = r.borrow_mut();
            if let Some(i) = r.iter().rposition(|&t| t == self.0) {
                r.remove(i);
            }
        });
    }
}
