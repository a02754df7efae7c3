//! The gate between a result's callback thread and `pool_async_free`: a freed result gets no
//! callback, and a free waits for a callback running on it (or the thread's look at it), unless
//! that would close a circle of waits.

use std::sync::Mutex;
use std::thread::ThreadId;

/// Per result: which thread is inside now, if one is (the callback thread, looking at the result
/// or running its callback), and whether it was freed. `pool_async_free` waits for that thread
/// (unless called from the callback itself), so that once it returns the callback neither runs
/// nor will run (what it reads can be freed), and the callback thread neither copies the result
/// into the caller's `out` nor holds the result any more.
#[derive(Default)]
pub struct Gate {
    st: Mutex<(Option<ThreadId>, bool)>, // (running on, freed)
    cv: std::sync::Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<ThreadId>, bool)> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result was freed: no callback or look starts any more; one under way is waited for,
    /// from any thread but its own (a callback freeing its own result), and unless the wait
    /// would close a circle of callbacks waiting for each other (two pools' callbacks freeing
    /// each other's results at once), where it returns at once.
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

    /// Enters on this thread (to look at the result or run its callback) unless it was freed.
    pub(super) fn enter(&self) -> bool {
        let mut g = self.lock();
        if g.1 {
            return false;
        }
        g.0 = Some(std::thread::current().id());
        true
    }

    pub(super) fn leave(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fork::in_forked_child;
    use std::sync::mpsc::channel;
    use std::time::Duration;

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
