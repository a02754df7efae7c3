//! Zero-copy shared memory, iterators with backpressure, progress, the completion eventfd.

mod common;
use common::*;
use pool::core::iter::Input;
use pool::core::{Options, Pool, Status};
use std::time::Duration;

#[test]
fn map_in_shared_memory_copies_nothing_and_is_right() {
    let p = Pool::new(2, Options::default()).unwrap();
    let n = 100_000;
    let xs = p.shm_alloc(n * 8).unwrap() as *mut i64;
    let ys = p.shm_alloc(n * 8).unwrap() as *mut i64;
    for i in 0..n {
        unsafe { *xs.add(i) = i as i64 };
    }
    unsafe { p.map(map_args_raw(square, xs as usize, ys as usize, n, 0, 0)) }.unwrap();
    for i in 0..n {
        assert_eq!(unsafe { *ys.add(i) }, (i * i) as i64);
    }
    // An apply whose buffers are shared memory too.
    let r = unsafe { p.apply_async(square, xs.add(7) as *const u8, 8, ys as *mut u8, 8, 0) }.unwrap();
    assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
    assert_eq!(unsafe { *ys }, 49);
    p.shm_free(xs as *mut u8).unwrap();
    p.shm_free(ys as *mut u8).unwrap();
    assert_eq!(p.shm_free(ys as *mut u8).unwrap_err().status, Status::Inval);
}

#[test]
fn imap_yields_in_order_with_failures_in_place() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..1000).filter(|x| x % 100 != 16).collect();
    let mut it =
        unsafe { p.imap(map_args_raw(faulty, xs.as_ptr() as usize, 0, xs.len(), 0, 7), Input::Array, true) }.unwrap();
    let mut y = 0i64;
    let mut seen = 0;
    while let Some(item) = unsafe { it.next(&mut y as *mut i64 as *mut u8, None) }.unwrap() {
        assert_eq!(item.index, seen, "in order");
        let x = xs[item.index];
        match x % 100 {
            13 | 14 | 17 => assert_eq!(item.err.unwrap().status, Status::Crashed),
            15 => assert_eq!(item.err.unwrap().status, Status::Task),
            _ => {
                assert!(item.err.is_none());
                assert_eq!(y, x * x);
            }
        }
        seen += 1;
    }
    assert_eq!(seen, xs.len());
}

#[test]
fn imap_unordered_returns_everything_once() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..5000).map(|x| x * 100 + 1).collect();
    let mut it =
        unsafe { p.imap(map_args_raw(square, xs.as_ptr() as usize, 0, xs.len(), 0, 0), Input::Array, false) }.unwrap();
    let mut got = vec![false; xs.len()];
    let mut y = 0i64;
    while let Some(item) = unsafe { it.next(&mut y as *mut i64 as *mut u8, None) }.unwrap() {
        assert!(!got[item.index]);
        got[item.index] = true;
        assert_eq!(y, xs[item.index] * xs[item.index]);
    }
    assert!(got.iter().all(|&g| g));
}

#[test]
fn imap_applies_backpressure_to_a_slow_consumer() {
    let counts = shared_counters(10_000);
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..10_000).filter(|x| !(13..=17).contains(&(x % 100))).collect();
    let mut it = unsafe {
        p.imap(
            map_args_raw(faulty, xs.as_ptr() as usize, 0, xs.len(), counts.as_ptr() as usize, 10),
            Input::Array,
            true,
        )
    }
    .unwrap();
    let mut y = 0i64;
    unsafe { it.next(&mut y as *mut i64 as *mut u8, None) }.unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the consumer dawdles; workers must wait
    let started = counts.iter().filter(|c| c.load(std::sync::atomic::Ordering::SeqCst) > 0).count();
    assert!(started <= 10 * (2 * 2 + 2), "{started} items ran ahead of a consumer that read 1");
    drop(it); // the rest is cancelled
}

#[test]
fn progress_and_event_fd() {
    let p = Pool::new(2, Options::default()).unwrap();
    let efd = p.event_fd().unwrap();
    let xs: Vec<i64> = (0..200_000).collect();
    let mut ys = vec![0i64; xs.len()];
    let r =
        unsafe { p.map_async(map_args_raw(square, xs.as_ptr() as usize, ys.as_mut_ptr() as usize, xs.len(), 0, 1000)) }
            .unwrap();
    let mut pfd = libc::pollfd { fd: efd, events: libc::POLLIN, revents: 0 };
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 60_000) }, 1, "the eventfd became readable");
    assert!(r.wait(Some(Duration::from_secs(60))).is_some());
    assert_eq!(r.progress(), (200_000, 200_000));
    let mut v = 0u64;
    assert_eq!(unsafe { libc::read(efd, &mut v as *mut u64 as *mut libc::c_void, 8) }, 8);
    // A single task signals it too.
    let (x, mut y) = (3i64, 0i64);
    let t = unsafe { p.apply_async(square, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 60_000) }, 1);
    assert_eq!(t.progress(), (1, 1));
    assert_eq!(y, 9);
}

/// Produces 100 * index + 1 for indices below the count in ctx, then ends (or fails with 7 if
/// the count is negative: -count items then an error).
unsafe extern "C" fn numbers(
    item: *mut std::os::raw::c_void,
    index: usize,
    ctx: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    let limit = *(ctx as *const i64);
    if index as i64 >= limit.abs() {
        return if limit < 0 { 7 } else { 1 };
    }
    *(item as *mut i64) = 100 * index as i64 + 1;
    0
}

#[test]
fn imap_from_a_source_streams_input_of_unknown_length() {
    let p = Pool::new(2, Options::default()).unwrap();
    for (limit, ordered) in [(100_000i64, true), (2500, false), (0, true), (-300, true)] {
        let input = Input::Source { f: numbers, ctx: &limit as *const i64 as usize };
        let mut it = unsafe { p.imap(map_args_raw(square, 0, 0, 0, 0, 0), input, ordered) }.unwrap();
        let (mut y, mut count, mut failed) = (0i64, 0usize, None);
        loop {
            match unsafe { it.next(&mut y as *mut i64 as *mut u8, None) } {
                Ok(Some(item)) => {
                    if ordered {
                        assert_eq!(item.index, count);
                    }
                    let x = 100 * item.index as i64 + 1;
                    assert!(item.err.is_none());
                    assert_eq!(y, x * x);
                    count += 1;
                }
                Ok(None) => break,
                Err(e) => failed = Some(e),
            }
        }
        assert_eq!(count as i64, limit.abs(), "limit {limit}");
        assert_eq!(failed.map(|e| e.status), (limit < 0).then_some(Status::Task), "limit {limit}");
    }
}
