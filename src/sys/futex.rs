//! Futex waits and wakes on words that may live in memory shared between processes.
//! The calls are never `FUTEX_PRIVATE_FLAG`: waiters and wakers are in different processes.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Sleeps while `*word == expected`, at most until `deadline` (None: no limit).
/// Returns on a wake, a changed value, a signal or the deadline; callers re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) {
    let Some(left) = time_left(deadline) else { return };
    let ts = left.map(timespec);
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; the kernel only reads
    // it and the optional timespec, which lives on this stack frame.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32);
    }
}

/// The time left until `deadline`: Some(None) for no deadline, None once it has passed.
fn time_left(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then_some(Some(left))
        }
    }
}

/// Wakes up to `n` waiters sleeping on `word`.
pub fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is valid.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n, 0usize, 0usize, 0u32);
    }
}

/// `struct futex_waitv` (linux/futex.h).
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

const FUTEX2_SIZE_U32: u32 = 2;
/// The most words one `futex_waitv` takes.
pub(crate) const WAITV_MAX: usize = 128;

/// Set once `futex_waitv` failed other than a wait does (ENOSYS: a kernel before 5.16; EPERM or
/// ENOSYS: a seccomp filter).
static NO_WAITV: AtomicBool = AtomicBool::new(false);

/// Test-only: while not 0 (tests that force it, counted), every call acts as on a kernel
/// without `futex_waitv`.
#[cfg(test)]
pub static FORCE_NO_WAITV: AtomicU32 = AtomicU32::new(0);

/// The kernel cannot sleep on these words at once (no `futex_waitv`, or more than it takes).
pub struct Unsupported;

/// Sleeps while every word still holds its value in `words`, at most until `deadline` (None:
/// no limit): `futex_waitv`. Returns on a wake of any of them, a changed value, a signal or
/// the deadline; callers re-check their condition.
pub fn wait_many(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> Result<(), Unsupported> {
    #[cfg(test)]
    if FORCE_NO_WAITV.load(Relaxed) > 0 {
        return Err(Unsupported);
    }
    if words.len() > WAITV_MAX || NO_WAITV.load(Relaxed) {
        return Err(Unsupported);
    }
    let v: Vec<FutexWaitv> = words
        .iter()
        .map(|&(w, val)| FutexWaitv { val: val as u64, uaddr: w.as_ptr() as u64, flags: FUTEX2_SIZE_U32, reserved: 0 })
        .collect();
    let Some(left) = time_left(deadline) else { return Ok(()) };
    // The timeout is absolute, on CLOCK_MONOTONIC (the clock `Instant` reads).
    let ts = left.map(|l| {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes the timespec on this stack frame.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        timespec(Duration::new(now.tv_sec as u64, now.tv_nsec as u32) + l)
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `v` holds `v.len()` entries naming valid, aligned u32 words for the duration of
    // the call; the kernel only reads them, the entries and the optional timespec, all alive
    // on this frame.
    let r = unsafe {
        libc::syscall(libc::SYS_futex_waitv, v.as_ptr(), v.len() as u32, 0u32, ts_ptr, libc::CLOCK_MONOTONIC)
    };
    // EAGAIN (a word changed), ETIMEDOUT and EINTR are what a wait returns; anything else
    // (ENOSYS on kernels before 5.16, EPERM or ENOSYS from seccomp filters such as container
    // runtimes' profiles) would return at once on every call: the caller would spin.
    let err = if r < 0 { std::io::Error::last_os_error().raw_os_error() } else { None };
    if err.is_some_and(|e| !matches!(e, libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR)) {
        NO_WAITV.store(true, Relaxed);
        return Err(Unsupported);
    }
    Ok(())
}

pub fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t, tv_nsec: d.subsec_nanos() as _ }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fork::in_forked_child;

    /// Makes `futex_waitv` fail with `errno` in this process from now on (a seccomp filter, as
    /// container runtimes' default profiles install).
    fn refuse_waitv(errno: u32) {
        let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        let mut prog = [
            f((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0, 0, 0), // seccomp_data.nr
            f((libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, 0, 1, libc::SYS_futex_waitv as u32),
            f((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, libc::SECCOMP_RET_ERRNO | errno),
            f((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, libc::SECCOMP_RET_ALLOW),
        ];
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
        // SAFETY: prctl with a filter program that lives on this frame for the call.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog), 0);
        }
    }

    /// A filter that answers EPERM (not ENOSYS) made every wait_many return at once: wait_any
    /// over several pools and every callback thread spun at 100% CPU.
    #[test]
    fn a_refused_futex_waitv_is_unsupported_whatever_the_errno() {
        for errno in [libc::EPERM, libc::ENOSYS] {
            let child = in_forked_child(|| {
                FORCE_NO_WAITV.store(0, Relaxed); // this process's own copy: other tests may force it
                refuse_waitv(errno as u32);
                let (a, b) = (AtomicU32::new(0), AtomicU32::new(0));
                let until = Some(Instant::now() + Duration::from_millis(50));
                let first = wait_many(&[(&a, 0), (&b, 0)], until).is_err();
                first && wait_many(&[(&a, 0), (&b, 0)], until).is_err()
            });
            assert_eq!(child, Some(true), "errno {errno}: wait_many did not report futex_waitv unsupported");
        }
    }
}
