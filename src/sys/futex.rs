//! Futex waits and wakes on words that may live in memory shared between processes.
//! The calls are never `FUTEX_PRIVATE_FLAG`: waiters and wakers are in different processes.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// Sleeps while `*word == expected`, at most until `deadline` (None: no limit).
/// Returns on a wake, a changed value, a signal or the deadline; callers re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) {
    let ts;
    let ts_ptr = match deadline {
        None => std::ptr::null(),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            ts = timespec(left);
            &ts as *const libc::timespec
        }
    };
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; the kernel only reads
    // it and the optional timespec, which lives on this stack frame.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32);
    }
}

/// Wakes up to `n` waiters sleeping on `word`.
pub fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is valid.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n, 0usize, 0usize, 0u32);
    }
}

pub fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t, tv_nsec: d.subsec_nanos() as _ }
}
