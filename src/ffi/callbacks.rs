//! Completion callbacks (`pool_call_options_t::callback`, `pool_map_options_t::callback`): one
//! thread per pool, started on first use, calls them one at a time as results become ready.

use super::error::set_last_error;
use super::handles::get;
use super::result::pool_async_t;
use crate::core::Error;
use std::os::raw::{c_int, c_void};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// `void callback(pool_async_t *a, int status, void *arg)`
pub type CallbackFn = unsafe extern "C" fn(a: *mut pool_async_t, status: c_int, arg: *mut c_void);

/// A callback and its argument, from the options.
#[derive(Clone, Copy)]
pub struct Callback(pub CallbackFn, pub usize);

struct Pending {
    token: usize,
    obj: Weak<pool_async_t>,
    cb: Callback,
}

struct Runner {
    tx: Sender<Pending>,
    thread: std::thread::JoinHandle<()>,
}

/// A pool's callback thread, if one was needed yet.
#[derive(Default)]
pub struct Callbacks(Mutex<Option<Runner>>);

impl Callbacks {
    /// Calls `cb` once the result `h` is ready (unless it is freed first).
    pub fn add(&self, h: *mut pool_async_t, cb: Callback) -> Result<(), Error> {
        let obj = get(h)?;
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            let (tx, rx) = channel();
            let thread = std::thread::Builder::new()
                .name("pool-callbacks".into())
                .spawn(move || run(rx))
                .map_err(|e| Error::sys("starting the callback thread", e))?;
            *r = Some(Runner { tx, thread });
        }
        let p = Pending { token: h as usize, obj: Arc::downgrade(&obj), cb };
        r.as_ref().expect("started above").tx.send(p).map_err(|_| Error::closed("the pool's callback thread ended"))
    }
}

impl Drop for Callbacks {
    /// Once the pool is gone its results are final: the thread calls the callbacks left, then
    /// ends. From a callback itself (a callback that destroys its pool) it is left to end alone.
    fn drop(&mut self) {
        if let Some(r) = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            drop(r.tx);
            if r.thread.thread().id() != std::thread::current().id() {
                let _ = r.thread.join();
            }
        }
    }
}

fn run(rx: Receiver<Pending>) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut open = true;
    let mut quiet = Instant::now();
    while open || !pending.is_empty() {
        if pending.is_empty() {
            match rx.recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let before = pending.len();
        pending.retain(|p| {
            let Some(obj) = p.obj.upgrade() else { return false }; // freed: no callback
            let Some(outcome) = obj.0.poll() else { return true };
            // Still a live handle (not freed meanwhile)? `obj` keeps it valid during the call.
            if get(p.token as *const pool_async_t).is_ok() {
                let status = outcome.err.as_ref().map_or(0, |e| {
                    set_last_error(e);
                    e.status as c_int
                });
                // SAFETY: the caller's callback, on its own live handle and argument.
                unsafe { (p.cb.0)(p.token as *mut pool_async_t, status, p.cb.1 as *mut c_void) };
            }
            false
        });
        if pending.len() < before {
            quiet = Instant::now();
        } else {
            // Nothing ready: look again soon (first microseconds, then up to every millisecond).
            let waited = quiet.elapsed();
            if waited < Duration::from_micros(50) {
                std::thread::yield_now();
            } else {
                std::thread::sleep((waited / 8).clamp(Duration::from_micros(50), Duration::from_millis(1)));
            }
        }
    }
}
