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

thread_local! {
    /// True on callback threads (of any pool).
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Per result: whether its callback runs now, and whether it was freed. `pool_async_free` waits for a
/// running callback (unless called from a callback thread), so that once it returns the
/// callback neither runs nor will run: what it reads can be freed.
#[derive(Default)]
pub struct Gate {
    st: Mutex<(bool, bool)>, // (running, freed)
    cv: std::sync::Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, bool)> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result was freed: no callback starts any more; one running is waited for.
    pub fn freed(&self) {
        let mut g = self.lock();
        g.1 = true;
        if IN_CALLBACK.with(|c| c.get()) {
            return; // a callback freeing a result (maybe its own): never wait for ourselves
        }
        while g.0 {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Starts the callback unless the result was freed.
    fn enter(&self) -> bool {
        let mut g = self.lock();
        if g.1 {
            return false;
        }
        g.0 = true;
        true
    }

    fn leave(&self) {
        self.lock().0 = false;
        self.cv.notify_all();
    }
}

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
    /// ends. From a callback (of any pool: two pools' callbacks destroying each other's pool
    /// would otherwise wait for each other) it is left to end alone.
    fn drop(&mut self) {
        if let Some(r) = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            drop(r.tx);
            if !IN_CALLBACK.with(|c| c.get()) {
                let _ = r.thread.join();
            }
        }
    }
}

fn run(rx: Receiver<Pending>) {
    IN_CALLBACK.with(|c| c.set(true));
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
            // Not freed (the gate decides, against pool_async_free): `obj` keeps it valid meanwhile.
            if obj.1.enter() {
                let status = outcome.err.as_ref().map_or(0, |e| {
                    set_last_error(e);
                    e.status as c_int
                });
                // SAFETY: the caller's callback, on its own live handle and argument.
                unsafe { (p.cb.0)(p.token as *mut pool_async_t, status, p.cb.1 as *mut c_void) };
                obj.1.leave();
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
