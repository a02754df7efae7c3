//! A host forks while its other threads start and end threads: the child can still make a pool,
//! have the library start its threads (the event fd's watcher, the callback thread, a map's
//! driver), use them and destroy the pool (which joins them).
//!
//! Rust's std takes a process-wide lock of its own as each std thread starts (in Rust programs)
//! and as it ends (in any program): its table of stack guard pages. A child forked while another
//! thread held it can neither start nor end a std thread, ever; the library's threads used to be
//! std threads, and such a child hung in `pool_destroy` joining them (about 1 fork in 700 here,
//! caught with gdb). To catch that lock held at most forks, this test's allocator pauses
//! whenever the name of a thread called `HOLD` is freed, which std (1.95) does under that lock
//! as the thread ends; with a std that does not, forks catch the lock only by chance.

mod common;
use common::*;
use pool::ffi::options::*;
use pool::ffi::pool::*;
use pool::ffi::result::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

const HOLD: &str = "fork-test-hold";
const FORKS: usize = 40;
/// A child takes milliseconds; one that has not exited by then is stuck.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Times the allocator paused (a thread named `HOLD` ended).
static PAUSES: AtomicUsize = AtomicUsize::new(0);

struct PausingAlloc;

// SAFETY: every call is passed on to the system allocator unchanged; the pause only delays.
unsafe impl GlobalAlloc for PausingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: as the caller promised.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // memcmp, not a Rust slice: the block may hold uninitialised bytes.
        // SAFETY: the block is at least `l.size()` bytes long and still allocated.
        if l.size() == HOLD.len()
            && unsafe { libc::memcmp(p as *const c_void, HOLD.as_ptr() as *const c_void, l.size()) } == 0
        {
            PAUSES.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: as the caller promised.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised (a name grown to a C string does not pause).
        unsafe { System.realloc(p, l, new_size) }
    }
}

#[global_allocator]
static ALLOC: PausingAlloc = PausingAlloc;

static CALLED_BACK: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn on_done(_: *mut pool_async_t, _: c_int, _: *mut c_void) {
    CALLED_BACK.store(true, SeqCst);
}

/// In the child: a pool whose three kinds of threads start, work and are joined. The number of
/// the step that failed, 0 if none (a hang is the parent's to see).
fn child() -> i32 {
    let p = pool_create(1, std::ptr::null());
    if p.is_null() {
        return 1;
    }
    if pool_event_fd(p) < 0 {
        return 2;
    }
    // SAFETY: plain data (a size, numbers, a nullable function and pointer), filled below.
    let mut co: pool_call_options_t = unsafe { std::mem::zeroed() };
    pool_call_options_init(&mut co);
    co.callback = Some(on_done);
    let (x, mut y) = (3i64, 0i64);
    let a = pool_apply_async_ex(
        p,
        Some(square),
        &x as *const i64 as *const c_void,
        8,
        &mut y as *mut i64 as *mut c_void,
        8,
        std::ptr::null_mut(),
        &co,
    );
    if a.is_null() || pool_async_get(a, -1.0) != 0 || y != 9 {
        return 3;
    }
    while !CALLED_BACK.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    pool_async_free(a);
    let (xs, mut ys) = ([1i64, 2, 3, 4], [0i64; 4]);
    let m = pool_map_async(
        p,
        Some(square),
        xs.as_ptr() as *const c_void,
        8,
        ys.as_mut_ptr() as *mut c_void,
        8,
        4,
        std::ptr::null_mut(),
    );
    if m.is_null() || pool_async_get(m, -1.0) != 0 || ys != [1, 4, 9, 16] {
        return 4;
    }
    pool_async_free(m);
    pool_destroy(p);
    0
}

/// The child's wait status, or None if it hung (it is then killed).
fn wait_child(pid: libc::pid_t) -> Option<c_int> {
    let t0 = Instant::now();
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != pid {
        if t0.elapsed() > HANG_GUARD {
            // SAFETY: our own child, reaped right after.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Some(status)
}

#[test]
fn a_child_forked_while_threads_start_and_end_uses_the_librarys_threads() {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(SeqCst) {
                    let t = std::thread::Builder::new().name(HOLD.into()).spawn(|| {}).unwrap();
                    t.join().unwrap();
                }
            });
        }
        let mut outcome = Ok(());
        for i in 0..FORKS {
            // SAFETY: the child only calls the library and leaves with _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let code = std::panic::catch_unwind(child).unwrap_or(100);
                // SAFETY: leaves the child at once, without the test harness's atexit handlers.
                unsafe { libc::_exit(code) };
            }
            match wait_child(pid) {
                None => outcome = Err(format!("child {i} of {FORKS} hung (killed after {HANG_GUARD:?})")),
                Some(st) if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 => {
                    outcome = Err(format!("child {i} of {FORKS} ended with status {st:#x}"))
                }
                Some(_) => continue,
            }
            break;
        }
        stop.store(true, SeqCst);
        eprintln!("{} pauses while threads named {HOLD} ended", PAUSES.load(SeqCst));
        outcome.unwrap();
    });
}
