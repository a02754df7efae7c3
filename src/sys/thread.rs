//! The library's own threads (a pool's event-fd watcher, its callback thread, map drivers, the
//! remote runner): plain POSIX threads, not `std::thread`.
//!
//! Rust's std keeps a process-wide table of its threads' stack guard pages (for its stack
//! overflow message), behind a mutex and a spin lock that every std thread takes as it starts
//! (in Rust programs) and as it ends (in any program). A fork while another thread holds them
//! leaves them held for good in the child, where every std thread then hangs as it starts or
//! ends: a child forked while one of the parent's pools' threads was ending waited forever to
//! join its own pool's watcher thread. The lock is std's own (no fork handler can reset it) and
//! the host may fork at any instant, so the library's threads never take it: they are started
//! here, without std's start-up and exit code. What a thread uses inside (thread-locals,
//! `std::thread::current()`) works as in any thread the host started itself.

use std::io;
use std::os::raw::c_void;

type Main = Box<dyn FnOnce() + Send + 'static>;

/// A running thread. Dropping the handle detaches the thread (it ends on its own).
pub struct Thread {
    id: libc::pthread_t,
}

/// Starts `f` on a new thread named `name` (at most 15 bytes show).
pub fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> io::Result<Thread> {
    let main: Box<Main> = Box::new(Box::new(move || {
        super::proc::set_name(name);
        f()
    }));
    let arg = Box::into_raw(main) as *mut c_void;
    let mut id: libc::pthread_t = 0;
    // SAFETY: `start` takes ownership of `arg`, a leaked `Box<Main>`; default attributes.
    let r = unsafe { libc::pthread_create(&mut id, std::ptr::null(), start, arg) };
    if r != 0 {
        // SAFETY: no thread was started: the box is still ours, and freed once.
        drop(unsafe { Box::from_raw(arg as *mut Main) });
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(Thread { id })
}

extern "C" fn start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the box `spawn` leaked for this thread alone.
    let main = unsafe { Box::from_raw(arg as *mut Main) };
    // A panic must not unwind out of a C thread function; as in a std thread, the panic hook
    // has reported it and the thread just ends.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(main));
    std::ptr::null_mut()
}

impl Thread {
    /// Waits for the thread to end.
    pub fn join(self) {
        let id = self.id;
        std::mem::forget(self);
        // SAFETY: a joinable thread of this process, joined once (the handle is consumed).
        unsafe { libc::pthread_join(id, std::ptr::null_mut()) };
    }

    /// Whether the caller is this thread.
    pub fn is_current(&self) -> bool {
        // SAFETY: compares two thread ids.
        unsafe { libc::pthread_equal(self.id, libc::pthread_self()) != 0 }
    }

    /// Lets go of the handle of a thread that is not in this process (a forked child's copy):
    /// neither joined nor detached.
    pub fn abandon(self) {
        std::mem::forget(self);
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        // SAFETY: a joinable thread of this process, never joined (join consumes the handle).
        unsafe { libc::pthread_detach(self.id) };
    }
}
