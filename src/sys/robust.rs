//! Robust, process-shared mutexes (glibc's `PTHREAD_MUTEX_ROBUST`): when the holder dies, even
//! by SIGKILL, the kernel marks the mutex and the next locker gets it with `OwnerDied`, never a
//! lock that stays taken forever.

use std::cell::UnsafeCell;
use std::io;
use std::time::{Duration, Instant};

#[repr(C)]
pub struct RobustMutex(UnsafeCell<libc::pthread_mutex_t>);

/// How a lock was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Locked {
    Clean,
    /// The previous holder died holding it; the mutex was made consistent again.
    OwnerDied,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    TimedOut,
    Os(io::Error),
}

impl RobustMutex {
    /// Initialises a mutex in place (shared memory, zeroed or reused).
    ///
    /// # Safety
    /// `m` points to writable memory for a `RobustMutex` that no process uses yet.
    pub unsafe fn init(m: *mut RobustMutex) -> io::Result<()> {
        let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: attr is initialised by pthread_mutexattr_init before use and destroyed after.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let r = check(libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED))
                .and_then(|_| check(libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST)))
                .and_then(|_| check(libc::pthread_mutexattr_settype(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ERRORCHECK)))
                .and_then(|_| check(libc::pthread_mutex_init((*m).0.get(), attr.as_ptr())));
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            r
        }
    }

    /// Takes the lock, waiting until `deadline` (None: no limit). Waits in short slices of the
    /// real-time clock, so a clock step cannot stretch or cut the wait.
    pub fn lock(&self, deadline: Option<Instant>) -> Result<Locked, LockError> {
        loop {
            let slice = Duration::from_millis(50);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                // SAFETY: a valid, initialised mutex.
                return self.result(unsafe { libc::pthread_mutex_trylock(self.0.get()) }, libc::EBUSY);
            }
            let wait = left.map_or(slice, |l| l.min(slice));
            let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: plain clock read into a local.
            unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
            let ns = now.tv_nsec + wait.subsec_nanos() as libc::c_long;
            let abs = libc::timespec {
                tv_sec: now.tv_sec + wait.as_secs() as libc::time_t + (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: ns % 1_000_000_000,
            };
            // SAFETY: a valid, initialised mutex and a valid timespec.
            match self.result(unsafe { libc::pthread_mutex_timedlock(self.0.get(), &abs) }, libc::ETIMEDOUT) {
                Err(LockError::TimedOut) => continue,
                r => return r,
            }
        }
    }

    fn result(&self, rc: libc::c_int, busy: libc::c_int) -> Result<Locked, LockError> {
        match rc {
            0 => Ok(Locked::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD hands it over); marking it consistent
                // is what the protocol of every user of this lock allows (their state is
                // consistent at every instruction).
                unsafe { libc::pthread_mutex_consistent(self.0.get()) };
                Ok(Locked::OwnerDied)
            }
            rc if rc == busy => Err(LockError::TimedOut),
            rc => Err(LockError::Os(io::Error::from_raw_os_error(rc))),
        }
    }

    /// Releases the lock; an error if this thread does not hold it.
    pub fn unlock(&self) -> io::Result<()> {
        // SAFETY: a valid, initialised mutex (error-checking: unlocking one we do not hold fails).
        match unsafe { libc::pthread_mutex_unlock(self.0.get()) } {
            0 => Ok(()),
            rc => Err(io::Error::from_raw_os_error(rc)),
        }
    }
}
