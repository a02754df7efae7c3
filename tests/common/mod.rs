//! Task functions and helpers shared by the Rust integration tests.
#![allow(dead_code)]

use pool::core::map::MapFn;
use pool::core::MapArgs;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

pub unsafe extern "C" fn square(i: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    *(o as *mut i64) = x * x;
    0
}

/// Squares, but crashes the worker (SIGSEGV) on 13, exits on 14, returns 7 on 15, hangs on 16,
/// aborts on 17. Counts every call in the shared counters passed as ctx.
pub unsafe extern "C" fn faulty(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    if !ctx.is_null() {
        let counts = ctx as *const AtomicU32;
        (*counts.add(x as usize)).fetch_add(1, Ordering::SeqCst);
    }
    match x % 100 {
        13 => {
            libc::raise(libc::SIGSEGV);
        }
        14 => libc::_exit(3),
        15 => return 7,
        16 => loop {
            libc::sleep(100);
        },
        17 => libc::abort(),
        _ => {}
    }
    *(o as *mut i64) = x * x;
    0
}

/// Writes the worker's pid; sleeps 2 ms so that a map spreads over every worker.
pub unsafe extern "C" fn getpid_task(_: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    libc::usleep(2000);
    *(o as *mut i32) = libc::getpid();
    0
}

/// Counters in anonymous shared memory, visible to workers forked after this call.
pub fn shared_counters(n: usize) -> &'static [AtomicU32] {
    // SAFETY: a fresh anonymous shared mapping, zeroed, never unmapped (leaked on purpose).
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            n * 4,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::slice::from_raw_parts(p as *const AtomicU32, n)
    }
}

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The processes whose parent is `ppid` (zombies included).
pub fn children_of(ppid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s[s.rfind(')')? + 2..].split(' ').nth(1)?.parse::<i32>().ok())
                == Some(ppid)
        })
        .collect()
}

/// True while `pid` runs (false once it is a zombie or gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

/// A map over 8-byte items at raw addresses (shared memory, or the caller's arrays).
pub fn map_args_raw(
    f: pool::core::worker::ItemFn,
    input: usize,
    out: usize,
    n: usize,
    ctx: usize,
    chunksize: usize,
) -> MapArgs {
    MapArgs {
        func: MapFn::Items(f),
        input,
        in_size: 8,
        out,
        out_size: 8,
        n,
        ctx,
        ctx_size: 0,
        chunksize,
        statuses: 0,
        timeout: None,
        shared_pointers_only: false,
    }
}

/// A map of `f` from `xs` into `ys` (same length).
pub fn map_args(f: pool::core::worker::ItemFn, xs: &[i64], ys: &mut [i64], ctx: usize, chunksize: usize) -> MapArgs {
    assert_eq!(xs.len(), ys.len());
    map_args_raw(f, xs.as_ptr() as usize, ys.as_mut_ptr() as usize, xs.len(), ctx, chunksize)
}

/// A hang guard on a step that must not wait for anything slow: prints how long `what` took and
/// fails only past `bound`, which is generous (a busy machine must pass; no performance claim).
pub fn hang_guard(what: &str, took: std::time::Duration, bound: std::time::Duration) {
    eprintln!("{what}: {took:.2?} (hang guard {bound:?})");
    assert!(took < bound, "{what} took {took:?}, past its hang guard of {bound:?}");
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}
