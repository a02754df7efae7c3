//! A host that forks, through the Rust API (below the C handle registry): the child's copies of
//! a pool and its results refuse every call before touching a lock or the shared memory, and
//! dropping them neither signals the parent's processes nor writes to the shared memory.

mod common;
use common::*;
use pool::core::iter::{Input, MapIter};
use pool::core::{AsyncResult, Error, Options, Pool, Status};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// Waits until the counter at `ctx` is nonzero (30 s at most), then squares.
unsafe extern "C" fn blocks(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    let release = &*(ctx as *const AtomicU32);
    for _ in 0..30_000 {
        if release.load(SeqCst) != 0 {
            break;
        }
        libc::usleep(1000);
    }
    square(i, o, ctx)
}

fn refused(e: &Error) -> bool {
    e.status == Status::Inval && e.msg.contains("can only be used by the process that created it")
}

/// Runs in the forked child: every call is refused; then everything is dropped. Returns the
/// number of the first failed expectation, 0 if none.
fn child(p: Pool, running: AsyncResult, map: AsyncResult, mut it: MapIter, shm: *mut u8) -> i32 {
    let mut y = 0i64;
    let checks = [
        running.wait(None).and_then(|o| o.err).is_some_and(|e| refused(&e)),
        running.poll().and_then(|o| o.err).is_some_and(|e| refused(&e)),
        map.wait(None).and_then(|o| o.err).is_some_and(|e| refused(&e)),
        // SAFETY: `y` holds one 8-byte result.
        unsafe { it.next(&mut y as *mut i64 as *mut u8, None) }.is_err_and(|e| refused(&e)),
        p.close().is_err_and(|e| refused(&e)),
        p.terminate().is_err_and(|e| refused(&e)),
        p.join().is_err_and(|e| refused(&e)),
        p.shm_free(shm).is_err_and(|e| refused(&e)),
        p.shm_alloc(8).is_err_and(|e| refused(&e)),
    ];
    if let Some(i) = checks.iter().position(|ok| !ok) {
        return i as i32 + 1;
    }
    running.cancel(); // no effect here: the task is the parent's
    map.cancel();
    drop((running, map, it));
    drop(p); // nor here: the pool is the parent's
    0
}

#[test]
fn a_forked_child_leaves_its_parents_pool_alone() {
    let release = shared_counters(1); // before the pool: the workers see it
    let ctx = release.as_ptr() as usize;
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..50).collect();
    let mut it =
        unsafe { p.imap(map_args_raw(square, xs.as_ptr() as usize, 0, xs.len(), 0, 1), Input::Array, true) }.unwrap();
    let mut first = -1i64;
    let item = unsafe { it.next(&mut first as *mut i64 as *mut u8, None) }.unwrap().unwrap();
    assert_eq!((item.index, first), (0, 0));
    // Both workers blocked until the child is done, and map items queued behind them.
    let (x, mut y) = (5i64, 0i64);
    let running =
        unsafe { p.apply_async(blocks, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, ctx) }
            .unwrap();
    let mut ys = vec![0i64; xs.len()];
    let map = unsafe { p.map_async(map_args(blocks, &xs, &mut ys, ctx, 1)) }.unwrap();
    let shm = p.shm_alloc(64).unwrap();
    unsafe { shm.write_bytes(0x5a, 64) };

    // SAFETY: the child only calls the library and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(p, running, map, it, shm)));
        // SAFETY: leaves the child at once, without the test harness's atexit handlers.
        unsafe { libc::_exit(code.unwrap_or(100)) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed check {status:#x}");

    assert!(running.poll().is_none(), "not cancelled, not collected");
    assert!((0..64).all(|i| unsafe { *shm.add(i) } == 0x5a), "the child freed nothing");
    release[0].store(1, SeqCst);
    assert_eq!(running.wait(None).unwrap().status(), Status::Ok);
    assert_eq!(y, 25);
    assert_eq!(map.wait(None).unwrap().status(), Status::Ok);
    assert!(xs.iter().zip(&ys).all(|(x, y)| x * x == *y));
    let mut n = 1;
    while let Some(item) = unsafe { it.next(&mut first as *mut i64 as *mut u8, None) }.unwrap() {
        assert!(item.err.is_none(), "{:?}", item.err);
        assert_eq!(first, xs[item.index] * xs[item.index]);
        n += 1;
    }
    assert_eq!(n, xs.len());
    p.shm_free(shm).unwrap();
    let mut zs = vec![0i64; xs.len()];
    unsafe { p.map(map_args(square, &xs, &mut zs, 0, 0)) }.unwrap();
    assert_eq!(zs, ys);
}
