//! `pool_queue_t`, `pool_lock_t`, `pool_event_t`: objects shared by the host's threads and every
//! process it forks. Their handles are tokens valid in all of those processes (checked there
//! against the object's kind and generation), not entries of this process's handle registry.

use super::macros::{boundary, status, value};
use super::result::timeout;
use crate::core::error::{Error, Status};
use crate::core::ipc::channel::{Got, Queue};
use crate::core::ipc::sync::{Event, Lock};
use std::os::raw::{c_int, c_void};
use std::time::Instant;

/// A bounded queue of byte messages (opaque).
#[allow(non_camel_case_types)]
pub struct pool_queue_t {
    _opaque: [u8; 0],
}
/// A lock whose holder may die (opaque).
#[allow(non_camel_case_types)]
pub struct pool_lock_t {
    _opaque: [u8; 0],
}
/// An event (opaque).
#[allow(non_camel_case_types)]
pub struct pool_event_t {
    _opaque: [u8; 0],
}

fn token<T>(h: *const T, what: &str) -> Result<u64, Error> {
    require!(!h.is_null(), format!("{what} is NULL"));
    Ok(h as usize as u64)
}

fn handle<T>(t: u64) -> *mut T {
    t as usize as *mut T
}

/// The `*_free` functions: NULL is a no-op; a handle that is not live sets `pool_last_error()`.
fn free_handle<T>(h: *mut T, free: impl FnOnce(u64) -> Result<(), Error>) {
    boundary(|| {
        if !h.is_null() {
            if let Err(e) = free(h as usize as u64) {
                super::error::set_last_error(&e);
            }
        }
    })
}

fn deadline(secs: f64) -> Result<Option<Instant>, Error> {
    Ok(timeout(secs)?.map(|d| Instant::now() + d))
}

/// Creates a queue that holds up to `max_bytes` of messages (each message takes its length
/// rounded up to 8, plus 8 bytes; any single message of up to `max_bytes` fits). The queue
/// lives in shared memory made before the library's first fork, so it works in the host's
/// threads, in `Process` children, in pool tasks (whatever pool they belong to, created before
/// or after the queue) and in what those fork; its size is `POOL_IPC_SIZE` (default 64 MiB, at
/// most 4 GiB, read once, before the first pool, process or queue). Returns NULL on failure
/// (`POOL_EINVAL` for 0, `POOL_ENOMEM` when the shared memory is full).
/// Ownership: free it with `pool_queue_free`, once, from any process that has it.
/// Thread safety: every queue function may be called from any thread of any of those processes.
/// Limits: every call on a queue, lock or event counts itself in a table of 16384 (process,
/// object) pairs while it runs; a call that finds it full fails with `POOL_ENOMEM`. An object
/// whose creating process dies inside its `_create` call, after the object was made and before
/// the call returned, is never freed (nobody has its handle).
#[no_mangle]
pub extern "C" fn pool_queue_create(max_bytes: usize) -> *mut pool_queue_t {
    value(std::ptr::null_mut(), || Ok(handle(Queue::create(max_bytes)?.0)))
}

/// Appends the `len` bytes at `data` as one message, waiting up to `timeout` seconds (negative:
/// forever; 0: not at all) while the queue is full (`POOL_ETIMEDOUT`). A message that can never
/// fit is refused at once (`POOL_EINVAL`); after `pool_queue_close`, `POOL_ECLOSED`. Messages
/// arrive whole and, from one producer, in order. A producer or consumer killed at any instant
/// (SIGKILL included) never leaves the queue locked or a message half-written.
/// Ownership: the bytes are copied. Not a cancellation point.
#[no_mangle]
pub extern "C" fn pool_queue_put(q: *mut pool_queue_t, data: *const c_void, len: usize, timeout: f64) -> c_int {
    status(|| {
        let q = Queue(token(q, "queue")?);
        require!(len == 0 || !data.is_null(), "data is NULL but len > 0");
        require!(len <= isize::MAX as usize, format!("a message of {len} bytes never fits in a queue"));
        let dl = deadline(timeout)?;
        // SAFETY: the caller provides `len` readable bytes at `data`.
        let bytes = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(data as *const u8, len) } };
        q.put(bytes, dl)
    })
}

/// Takes the oldest message into `buf` (`cap` bytes), waiting up to `timeout` seconds (negative:
/// forever; 0: not at all) while the queue is empty (`POOL_ETIMEDOUT`). `*len` gets the
/// message's length. If the message is longer than `cap`, returns `POOL_ENOMEM` with `*len` set
/// to its length and leaves it in the queue: call again with a buffer that big. After
/// `pool_queue_close`, what was queued is still handed out, then `POOL_ECLOSED`.
/// `len` may be NULL only if the caller does not need the length. Not a cancellation point.
#[no_mangle]
pub extern "C" fn pool_queue_get(
    q: *mut pool_queue_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout: f64,
) -> c_int {
    status(|| {
        let q = Queue(token(q, "queue")?);
        require!(cap == 0 || !buf.is_null(), "buf is NULL but cap > 0");
        let cap = cap.min(isize::MAX as usize); // no buffer is bigger
        let dl = deadline(timeout)?;
        // SAFETY: the caller provides `cap` writable bytes at `buf`.
        let out = if cap == 0 { &mut [][..] } else { unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, cap) } };
        let (n, r) = match q.get(out, dl)? {
            Got::Message(n) => (n, Ok(())),
            Got::TooLong(n) => (
                n,
                Err(Error::new(
                    Status::NoMem,
                    format!("the next message is {n} bytes; the buffer holds {cap}: it stays queued"),
                )),
            ),
        };
        if !len.is_null() {
            // SAFETY: checked non-NULL; the caller passes a writable size_t.
            unsafe { *len = n };
        }
        r
    })
}

/// Closes the queue: every waiting and later `pool_queue_put` returns `POOL_ECLOSED`;
/// `pool_queue_get` hands out what is left, then returns `POOL_ECLOSED` (waiters wake).
#[no_mangle]
pub extern "C" fn pool_queue_close(q: *mut pool_queue_t) -> c_int {
    status(|| Queue(token(q, "queue")?).close())
}

/// Frees the queue. Calls waiting in it (in any process) return `POOL_EINVAL`, as does any
/// later use of the handle, in every process. Its memory is reused once no live process is
/// inside a call on it: processes that died inside calls (any number, SIGKILL included) do not
/// count; one stopped inside (SIGSTOP, a debugger) delays the reuse until it has left, without
/// delaying this call more than a fraction of a second.
/// NULL is a no-op; a handle already freed sets `pool_last_error()` and does nothing.
#[no_mangle]
pub extern "C" fn pool_queue_free(q: *mut pool_queue_t) {
    free_handle(q, |t| Queue(t).free());
}

/// Creates a lock shared by the host's threads and every process it forks (like
/// `pool_queue_create`). Unlike a plain mutex, a holder that dies (SIGKILL included) does not
/// lose it: the next `pool_lock_acquire` gets it with `POOL_EOWNERDEAD`. Returns NULL on failure.
/// Ownership: free it with `pool_lock_free`. Thread safety: any thread of any of those processes.
#[no_mangle]
pub extern "C" fn pool_lock_create() -> *mut pool_lock_t {
    value(std::ptr::null_mut(), || Ok(handle(Lock::create()?.0)))
}

/// Takes the lock, waiting up to `timeout` seconds (negative: forever; 0: not at all;
/// `POOL_ETIMEDOUT`). `POOL_OK`, or `POOL_EOWNERDEAD`: taken, but the previous holder died
/// holding it (repair what it protects; the lock stays usable). A thread that already holds it
/// gets `POOL_EINVAL`. The lock belongs to the calling thread until it releases it.
/// Not a cancellation point.
#[no_mangle]
pub extern "C" fn pool_lock_acquire(l: *mut pool_lock_t, timeout: f64) -> c_int {
    status(|| {
        let l = Lock(token(l, "lock")?);
        match l.acquire(deadline(timeout)?)? {
            false => Ok(()),
            true => Err(Error::new(
                Status::OwnerDead,
                "the lock's previous holder died holding it; this thread holds it now",
            )),
        }
    })
}

/// Releases the lock; `POOL_EINVAL` unless the calling thread holds it.
#[no_mangle]
pub extern "C" fn pool_lock_release(l: *mut pool_lock_t) -> c_int {
    status(|| Lock(token(l, "lock")?).release())
}

/// Frees the lock (see `pool_queue_free`). NULL is a no-op. Its memory is reused only once no
/// thread holds it (a holder that dies releases it).
#[no_mangle]
pub extern "C" fn pool_lock_free(l: *mut pool_lock_t) {
    free_handle(l, |t| Lock(t).free());
}

/// Creates an event (a flag, initially clear) that threads and processes wait on (shared like
/// `pool_queue_create`). Returns NULL on failure. Ownership: free it with `pool_event_free`.
/// Thread safety: any thread of any of those processes.
#[no_mangle]
pub extern "C" fn pool_event_create() -> *mut pool_event_t {
    value(std::ptr::null_mut(), || Ok(handle(Event::create()?.0)))
}

/// Sets the event: every thread and process waiting in `pool_event_wait` wakes and gets
/// `POOL_OK`, even if the event is cleared before it runs again (as Python's `Event.wait`
/// returns True to every thread a `set()` woke); later waits return at once until it is
/// cleared. A setter killed inside this call leaves the event set or not set, and waiters
/// notice a set within a fraction of a second even if the wake-up was lost with it.
#[no_mangle]
pub extern "C" fn pool_event_set(e: *mut pool_event_t) -> c_int {
    status(|| Event(token(e, "event")?).set())
}

/// Clears the event.
#[no_mangle]
pub extern "C" fn pool_event_clear(e: *mut pool_event_t) -> c_int {
    status(|| Event(token(e, "event")?).clear())
}

/// Whether the event is set (false, with `pool_last_error()` set, for a bad handle).
#[no_mangle]
pub extern "C" fn pool_event_is_set(e: *mut pool_event_t) -> bool {
    value(false, || Event(token(e, "event")?).is_set())
}

/// Waits up to `timeout` seconds (negative: forever) until the event is set: `POOL_OK` if it
/// is set, or was set while this call waited (even if cleared since); else `POOL_ETIMEDOUT`.
/// Not a cancellation point.
#[no_mangle]
pub extern "C" fn pool_event_wait(e: *mut pool_event_t, timeout: f64) -> c_int {
    status(|| Event(token(e, "event")?).wait(deadline(timeout)?))
}

/// Frees the event (see `pool_queue_free`); waiters return `POOL_EINVAL`. NULL is a no-op.
#[no_mangle]
pub extern "C" fn pool_event_free(e: *mut pool_event_t) {
    free_handle(e, |t| Event(t).free());
}
