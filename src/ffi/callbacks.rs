//! Completion callbacks (`pool_call_options_t::callback`, `pool_map_options_t::callback`): one
//! thread per pool, started on first use, calls them one at a time as results become ready.

use super::error::set_last_error;
use super::handles::get;
use super::result::pool_async_t;
use crate::core::Error;
use std::os::raw::{c_int, c_void};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// `void callback(pool_async_t *a, int status, void *arg)`
pub type CallbackFn = unsafe extern "C" fn(a: *mut pool_async_t, status: c_int, arg: *mut c_void);

thread_local! {
    /// True on callback threads (of any pool).
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Per result: which thread runs its callback now, if one does, and whether it was freed.
/// `pool_async_free` waits for a running callback (unless called from that callback itself),
/// so that once it returns the callback neither runs nor will run: what it reads can be freed.
#[derive(Default)]
pub struct Gate {
    st: Mutex<(Option<ThreadId>, bool)>, // (running on, freed)
    cv: std::sync::Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<ThreadId>, bool)> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result was freed: no callback starts any more; one running is waited for, from any
    /// thread but its own (a callback freeing its own result), and unless the wait would close
    /// a circle of callbacks waiting for each other (two pools' callbacks freeing each other's
    /// results at once), where it returns at once.
    pub fn freed(&self) {
        let mut g = self.lock();
        g.1 = true;
        if g.0.is_none() {
            return; // the common case: no callback runs (no thread id needed)
        }
        let me = std::thread::current().id();
        while let Some(runner) = g.0 {
            if runner == me || !waits::begin(me, runner) {
                return;
            }
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            waits::end(me);
        }
    }

    /// Starts the callback on this thread unless the result was freed.
    fn enter(&self) -> bool {
        let mut g = self.lock();
        if g.1 {
            return false;
        }
        g.0 = Some(std::thread::current().id());
        true
    }

    fn leave(&self) {
        self.lock().0 = None;
        self.cv.notify_all();
    }
}

/// Which thread waits in `pool_async_free` for a callback running on which other thread: a
/// wait that would close a circle is refused (each thread in it would wait for the next).
mod waits {
    use std::any::Any;
    use std::collections::HashMap;
    use std::sync::{Mutex, MutexGuard};
    use std::thread::ThreadId;

    static EDGES: Mutex<Option<HashMap<ThreadId, ThreadId>>> = Mutex::new(None);

    pub(super) fn edges() -> MutexGuard<'static, Option<HashMap<ThreadId, ThreadId>>> {
        EDGES.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held by a forking thread across fork(): a child forked while another thread was in
    /// `begin` or `end` would find it locked for good and hang in its own `pool_async_free`.
    fn hold_across_fork() -> Box<dyn Any> {
        Box::new(edges())
    }

    extern "C" fn register_fork_hook() {
        crate::sys::proc::add_fork_hook(hold_across_fork);
    }

    /// Registered when the library is loaded, before any thread can wait.
    #[used]
    #[link_section = ".init_array"]
    static REGISTER_FORK_HOOK: extern "C" fn() = register_fork_hook;

    /// `me` is about to wait for `runner`; false if `runner` waits (through others) for `me`.
    pub(super) fn begin(me: ThreadId, runner: ThreadId) -> bool {
        let mut g = edges();
        let edges = g.get_or_insert_with(HashMap::new);
        let mut cur = runner;
        for _ in 0..=edges.len() {
            if cur == me {
                return false;
            }
            match edges.get(&cur) {
                Some(&next) => cur = next,
                None => break,
            }
        }
        edges.insert(me, runner);
        true
    }

    pub(super) fn end(me: ThreadId) {
        if let Some(edges) = edges().as_mut() {
            edges.remove(&me);
        }
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
    thread: crate::sys::thread::Thread,
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
            let thread = crate::sys::thread::spawn("pool-callbacks", move || run(rx))
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
                r.thread.join();
            } // else dropping the handle leaves it to end alone
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fork::in_forked_child;

    #[test]
    fn a_child_forked_while_another_thread_records_a_wait_can_wait() {
        let (holding, told) = channel();
        let holder = std::thread::spawn(move || {
            let g = waits::edges();
            holding.send(std::thread::current().id()).unwrap();
            std::thread::sleep(Duration::from_millis(100)); // a fork now catches it held
            drop(g);
        });
        let other = told.recv().unwrap();
        // Without the fork hook the child's copy of the registry stayed locked: `begin` hung.
        let child = in_forked_child(|| {
            let me = std::thread::current().id();
            let ok = waits::begin(me, other);
            waits::end(me);
            ok
        });
        assert_eq!(child, Some(true), "the child hung or was refused");
        holder.join().unwrap();
    }
}
