//! A lock whose holder may die (`pool_lock_t`) and an event many processes wait on
//! (`pool_event_t`), in the arena.

use super::arena;
use crate::core::error::{Error, Result, Status};
use crate::sys::futex;
use crate::sys::robust::{LockError, Locked, RobustMutex};
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

/// A lock: a robust mutex. When its holder dies (even by SIGKILL), the next `acquire` gets it
/// and learns that its holder died, so it can repair whatever the lock protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock(pub u64);

fn mutex<'a>(o: &'a arena::Obj<'a>) -> &'a RobustMutex {
    // SAFETY: a lock object's payload is its robust mutex (made by `Lock::create`).
    unsafe { &*(o.payload() as *const RobustMutex) }
}

impl Lock {
    pub fn create() -> Result<Lock> {
        let token = arena::get()?.alloc(arena::LOCK, std::mem::size_of::<RobustMutex>(), |p| {
            // SAFETY: a fresh zeroed payload of ours; nobody else has its token yet.
            unsafe { RobustMutex::init(p as *mut RobustMutex) }.map_err(|e| Error::sys("initialising a lock", e))
        })?;
        Ok(Lock(token))
    }

    /// Takes the lock, waiting until `deadline`. `Ok(true)`: its previous holder died holding
    /// it (the caller holds it now).
    pub fn acquire(&self, deadline: Option<Instant>) -> Result<bool> {
        let o = arena::get()?.enter(self.0, arena::LOCK, "lock")?;
        loop {
            // Bounded slices, so that a lock freed while we wait is noticed.
            let slice = Instant::now() + Duration::from_millis(200);
            match mutex(&o).lock(Some(deadline.map_or(slice, |d| d.min(slice)))) {
                Ok(Locked::Clean) => {
                    kp!(LockAcquired);
                    return Ok(false);
                }
                Ok(Locked::OwnerDied) => {
                    kp!(LockAcquired);
                    return Ok(true);
                }
                Err(LockError::TimedOut) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Error::new(Status::TimedOut, "the lock was still held at the timeout"))
                }
                Err(LockError::TimedOut) if !o.alive() => {
                    return Err(Error::inval("the lock was freed while this call waited"))
                }
                Err(LockError::TimedOut) => {}
                Err(LockError::Os(e)) if e.raw_os_error() == Some(libc::EDEADLK) => {
                    return Err(Error::inval("this thread already holds the lock"))
                }
                Err(LockError::Os(e)) => return Err(Error::sys("taking the lock", e)),
            }
        }
    }

    /// Releases the lock; `POOL_EINVAL` unless the calling thread holds it.
    pub fn release(&self) -> Result<()> {
        let o = arena::get()?.enter(self.0, arena::LOCK, "lock")?;
        mutex(&o).unlock().map_err(|_| Error::inval("the calling thread does not hold the lock"))
    }

    /// Frees the lock; its memory is reused only once no thread holds it (see `arena`).
    pub fn free(self) -> Result<()> {
        arena::get()?.free(self.0, arena::LOCK, "lock", |_| {})
    }
}

/// An event: a flag that many threads and processes wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event(pub u64);

#[repr(C)]
struct EventHead {
    set: AtomicU32,
    /// Bumped at every `set` (and when freed): waiters sleep on it.
    seq: AtomicU32,
}

fn event<'a>(o: &'a arena::Obj<'a>) -> &'a EventHead {
    // SAFETY: an event object's payload is its head.
    unsafe { &*(o.payload() as *const EventHead) }
}

impl Event {
    pub fn create() -> Result<Event> {
        Ok(Event(arena::get()?.alloc(arena::EVENT, std::mem::size_of::<EventHead>(), |_| Ok(()))?))
    }

    pub fn set(&self) -> Result<()> {
        let o = arena::get()?.enter(self.0, arena::EVENT, "event")?;
        let e = event(&o);
        e.set.store(1, SeqCst);
        kp!(EventSetFlagged);
        e.seq.fetch_add(1, SeqCst);
        kp!(EventSetCounted);
        futex::wake(&e.seq, i32::MAX);
        Ok(())
    }

    pub fn clear(&self) -> Result<()> {
        let o = arena::get()?.enter(self.0, arena::EVENT, "event")?;
        event(&o).set.store(0, SeqCst);
        Ok(())
    }

    pub fn is_set(&self) -> Result<bool> {
        let o = arena::get()?.enter(self.0, arena::EVENT, "event")?;
        Ok(event(&o).set.load(SeqCst) != 0)
    }

    /// Waits until the event is set, at most until `deadline` (`TimedOut`). As Python's
    /// `Event.wait`, a wait that a `set` ended returns `Ok` even if the event was cleared
    /// before this thread ran again: every `set` bumps `seq`, so a `seq` other than the one
    /// seen at the start means a `set` happened during the wait (or the event was freed).
    pub fn wait(&self, deadline: Option<Instant>) -> Result<()> {
        let o = arena::get()?.enter(self.0, arena::EVENT, "event")?;
        let e = event(&o);
        let start = e.seq.load(SeqCst);
        if e.set.load(SeqCst) != 0 {
            return Ok(());
        }
        loop {
            let seen = e.seq.load(SeqCst);
            if !o.alive() {
                return Err(Error::inval("the event was freed while this call waited"));
            }
            if seen != start || e.set.load(SeqCst) != 0 {
                return Ok(()); // (set, with `seq` not bumped: its setter died between the two)
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(Status::TimedOut, "the event was not set before the timeout"));
            }
            let slice = Instant::now() + Duration::from_millis(200);
            futex::wait(&e.seq, seen, Some(deadline.map_or(slice, |d| d.min(slice))));
        }
    }

    pub fn free(self) -> Result<()> {
        arena::get()?.free(self.0, arena::EVENT, "event", |p| {
            // SAFETY: the payload of the event being freed still holds its head.
            let e = unsafe { &*(p as *const EventHead) };
            e.seq.fetch_add(1, SeqCst);
            futex::wake(&e.seq, i32::MAX);
        })
    }
}
