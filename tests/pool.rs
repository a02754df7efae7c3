//! The core engine through its Rust API: maps, applies, faults, lifecycle.

mod common;
use common::*;
use pool::core::iter::Input;
use pool::core::{CallOptions, MapArgs, Options, Pool, Status};
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

#[test]
fn map_million_items() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..1_000_000).collect();
    let mut ys = vec![0i64; xs.len()];
    unsafe { p.map(map_args(square, &xs, &mut ys, 0, 0)) }.unwrap();
    assert!(xs.iter().zip(&ys).all(|(x, y)| x * x == *y));
}

#[test]
fn crash_inside_chunk_fails_only_that_item_and_runs_the_rest_once() {
    let counts = shared_counters(400); // before the pool: workers see memory as it was then
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..400).filter(|x| x % 100 != 16).collect();
    let mut ys = vec![-1i64; xs.len()];
    let err = unsafe { p.map(map_args(faulty, &xs, &mut ys, counts.as_ptr() as usize, 50)) }.unwrap_err();
    assert_eq!(err.status, Status::Crashed, "{err}");
    assert!(err.msg.starts_with("item 13:"), "{err}");
    assert!(err.msg.contains("signal 11"), "{err}");
    for (i, &x) in xs.iter().enumerate() {
        let c = counts[x as usize].load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(c, 1, "item {x} ran {c} times");
        if matches!(x % 100, 13 | 14 | 15 | 17) {
            assert_eq!(ys[i], -1, "failed item {x} must not have a result");
        } else {
            assert_eq!(ys[i], x * x, "item {x}");
        }
    }
}

#[test]
fn apply_statuses_and_recovery() {
    let p = Pool::new(2, Options::default()).unwrap();
    for (x, want) in
        [(13i64, Status::Crashed), (14, Status::Crashed), (15, Status::Task), (17, Status::Crashed), (5, Status::Ok)]
    {
        let mut y = 0i64;
        let r = unsafe { p.apply_async(faulty, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
            .unwrap();
        let o = r.wait(None).unwrap();
        assert_eq!(o.status(), want, "x={x}: {:?}", o.err);
        if want == Status::Ok {
            assert_eq!(y, 25);
        }
    }
    let mut y = 0i64;
    let x = 14i64;
    let r = unsafe { p.apply_async(faulty, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    let e = r.wait(None).unwrap().err.unwrap();
    assert!(e.msg.contains("exited with status 3"), "{e}");
}

#[test]
fn timeout_stops_the_item_and_the_pool_goes_on() {
    let opts = Options { task_timeout: Some(Duration::from_secs(1)), ..Options::default() };
    let p = Pool::new(2, opts).unwrap();
    let xs: Vec<i64> = vec![1, 2, 16, 3, 4];
    let mut ys = vec![0i64; xs.len()];
    let t0 = Instant::now();
    let err = unsafe { p.map(map_args(faulty, &xs, &mut ys, 0, 1)) }.unwrap_err();
    assert_eq!(err.status, Status::TimedOut, "{err}");
    assert!(err.msg.starts_with("item 2:"), "{err}");
    hang_guard("a map ended by its task_timeout", t0.elapsed(), Duration::from_secs(60));
    assert_eq!(ys, vec![1, 4, 0, 9, 16]);
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let p = Pool::new(1, Options { max_tasks_per_child: 1, ..Options::default() }).unwrap();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut pid = 0i32;
        let r =
            unsafe { p.apply_async(getpid_task, std::ptr::null(), 0, &mut pid as *mut i32 as *mut u8, 4, 0) }.unwrap();
        assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
        pids.push(pid);
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "{pids:?}");
}

#[test]
fn terminate_ends_pending_work_with_closed() {
    let p = Pool::new(1, Options::default()).unwrap();
    let x = 16i64; // hangs
    let mut y = 0i64;
    let hang = unsafe { p.apply_async(faulty, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    let queued =
        unsafe { p.apply_async(faulty, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
            .unwrap();
    assert!(hang.wait(Some(Duration::from_millis(50))).is_none());
    p.terminate().unwrap();
    assert_eq!(hang.wait(None).unwrap().status(), Status::Closed);
    assert_eq!(queued.wait(None).unwrap().status(), Status::Closed);
    p.join().unwrap();
}

#[test]
fn close_join_waits_for_async_map() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..100_000).collect();
    let mut ys = vec![0i64; xs.len()];
    let r = unsafe { p.map_async(map_args(square, &xs, &mut ys, 0, 0)) }.unwrap();
    p.close().unwrap();
    let e =
        unsafe { p.apply_async(square, xs.as_ptr() as *const u8, 8, ys.as_mut_ptr() as *mut u8, 8, 0) }.err().unwrap();
    assert_eq!(e.status, Status::Closed);
    p.join().unwrap();
    let o = r.poll().expect("join returns after the map is done");
    assert_eq!(o.status(), Status::Ok, "{:?}", o.err);
    drop(r);
    assert!(xs.iter().zip(&ys).all(|(x, y)| x * x == *y));
}

#[test]
fn handles_outlive_the_pool() {
    let p = Pool::new(1, Options::default()).unwrap();
    let x = 3i64;
    let mut y = 0i64;
    let r = unsafe { p.apply_async(square, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    let x2 = 16i64;
    let mut y2 = 0i64;
    let hang =
        unsafe { p.apply_async(faulty, &x2 as *const i64 as *const u8, 8, &mut y2 as *mut i64 as *mut u8, 8, 0) }
            .unwrap();
    assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
    drop(p);
    assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
    assert_eq!(y, 9);
    assert_eq!(hang.wait(None).unwrap().status(), Status::Closed);
}

#[test]
fn many_outstanding_applies() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..20_000).collect();
    let mut ys = vec![0i64; xs.len()];
    let rs: Vec<_> = xs
        .iter()
        .zip(ys.iter_mut())
        .map(|(x, y)| {
            unsafe { p.apply_async(square, x as *const i64 as *const u8, 8, y as *mut i64 as *mut u8, 8, 0) }.unwrap()
        })
        .collect();
    for r in &rs {
        assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
    }
    drop(rs);
    assert!(xs.iter().zip(&ys).all(|(x, y)| x * x == *y));
}

fn apply(p: &Pool, f: pool::core::worker::ItemFn, x: &i64, y: &mut i64) -> pool::core::AsyncResult {
    unsafe { p.apply_async(f, x as *const i64 as *const u8, 8, y as *mut i64 as *mut u8, 8, 0) }.unwrap()
}

#[test]
fn cancel_running_and_queued_tasks() {
    let p = Pool::new(1, Options::default()).unwrap();
    let (hang, ok) = (16i64, 4i64);
    let (mut y1, mut y2, mut y3) = (0i64, 0i64, 0i64);
    let running = apply(&p, faulty, &hang, &mut y1);
    let queued = apply(&p, faulty, &hang, &mut y2);
    assert!(running.wait(Some(Duration::from_millis(50))).is_none());
    let t0 = Instant::now();
    queued.cancel();
    running.cancel();
    hang_guard("two cancels", t0.elapsed(), Duration::from_secs(60));
    let o = running.poll().unwrap();
    assert_eq!(o.status(), Status::Cancelled, "{:?}", o.err);
    assert!(o.info.pid > 0, "the killed worker is named");
    assert_eq!(queued.poll().unwrap().status(), Status::Cancelled);
    // The pool goes on with a fresh worker.
    let r = apply(&p, faulty, &ok, &mut y3);
    assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
    assert_eq!(y3, 16);
    // Cancelling a finished result changes nothing.
    r.cancel();
    assert_eq!(r.poll().unwrap().status(), Status::Ok);
}

#[test]
fn cancel_map_async_stops_it() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = vec![16; 50]; // every item hangs
    let mut ys = vec![0i64; 50];
    let mut st = vec![-1i32; 50];
    let mut a = map_args(faulty, &xs, &mut ys, 0, 1);
    a.statuses = st.as_mut_ptr() as usize;
    let r = unsafe { p.map_async(a) }.unwrap();
    assert!(r.wait(Some(Duration::from_millis(50))).is_none());
    r.cancel();
    let o = r.poll().unwrap();
    assert_eq!(o.status(), Status::Cancelled, "{:?}", o.err);
    assert!(st.iter().all(|&s| s == Status::Cancelled as i32), "{st:?}");
}

#[test]
fn per_item_statuses_and_failure_info() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = (0..40).filter(|x| *x != 16).collect();
    let mut ys = vec![0i64; xs.len()];
    let mut st = vec![-1i32; xs.len()];
    let mut a = map_args(faulty, &xs, &mut ys, 0, 5);
    a.statuses = st.as_mut_ptr() as usize;
    let r = unsafe { p.map_async(a) }.unwrap();
    let o = r.wait(None).unwrap();
    assert_eq!(o.info.item, Some(13));
    assert_eq!(o.info.status, Status::Crashed);
    assert!(matches!(o.info.exit, Some(pool::core::job::Exit::Signal { sig: 11, .. })), "{:?}", o.info);
    for (i, &x) in xs.iter().enumerate() {
        let want = match x % 100 {
            13 | 14 | 17 => Status::Crashed,
            15 => Status::Task,
            _ => Status::Ok,
        };
        assert_eq!(st[i], want as i32, "item {x}");
    }
    let (x, mut y) = (15i64, 0i64);
    let o = apply(&p, faulty, &x, &mut y).wait(None).unwrap();
    assert_eq!((o.info.status, o.info.code, o.info.exit), (Status::Task, 7, None));
    assert!(o.info.pid > 0);
}

#[test]
fn per_call_timeout_overrides_the_pool() {
    let p = Pool::new(2, Options::default()).unwrap();
    let xs: Vec<i64> = vec![1, 16, 2];
    let mut ys = vec![0i64; 3];
    let mut a = map_args(faulty, &xs, &mut ys, 0, 1);
    a.timeout = Some(Duration::from_millis(100));
    let t0 = Instant::now();
    let e = unsafe { p.map(a) }.unwrap_err();
    assert_eq!(e.status, Status::TimedOut, "{e}");
    hang_guard("a map ended by its per-call timeout", t0.elapsed(), Duration::from_secs(60));
    assert_eq!(ys, vec![1, 0, 4]);
}

unsafe extern "C" fn leak(
    _: *const std::os::raw::c_void,
    o: *mut std::os::raw::c_void,
    _: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    let v = std::hint::black_box(vec![1u8; 8 << 20]); // black_box: kept even in release builds
    std::mem::forget(v); // 8 MiB touched and leaked per task
    *(o as *mut i32) = libc::getpid();
    0
}

#[test]
fn rss_ceiling_replaces_leaking_workers() {
    let p = Pool::new(1, Options { max_rss: 64 << 20, ..Options::default() }).unwrap();
    let mut pids = Vec::new();
    for _ in 0..20 {
        let mut pid = 0i32;
        let r = unsafe { p.apply_async(leak, std::ptr::null(), 0, &mut pid as *mut i32 as *mut u8, 4, 0) }.unwrap();
        assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
        pids.push(pid);
    }
    pids.dedup();
    assert!(pids.len() >= 2, "a worker leaking 160 MiB past a 64 MiB ceiling was never replaced");
}

#[test]
fn code_loaded_after_creation_is_refused() {
    let p = Pool::new(1, Options::default()).unwrap();
    let data = [0xC3u8; 64]; // not in any executable mapping
    let f: pool::core::worker::ItemFn = unsafe { std::mem::transmute(data.as_ptr()) };
    let (x, mut y) = (1i64, 0i64);
    let e = unsafe { p.apply_async(f, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .err()
        .unwrap();
    assert_eq!(e.status, Status::Inval);
    assert!(e.msg.contains("not in code"), "{e}");
}

#[test]
fn function_from_a_library_loaded_after_creation_is_refused() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    if maps.contains("libz.so") {
        eprintln!("libz already loaded: nothing to test");
        return;
    }
    let p = Pool::new(1, Options::default()).unwrap();
    let lib = unsafe { libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW) };
    if lib.is_null() {
        eprintln!("libz.so.1 not installed: skipped");
        return;
    }
    let sym = unsafe { libc::dlsym(lib, c"zlibVersion".as_ptr()) };
    assert!(!sym.is_null());
    let f: pool::core::worker::ItemFn = unsafe { std::mem::transmute(sym) };
    let (x, mut y) = (1i64, 0i64);
    let e = unsafe { p.apply_async(f, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .err()
        .unwrap();
    assert_eq!(e.status, Status::Inval);
    assert!(e.msg.contains("library loaded later"), "{e}");
}

#[test]
fn terminate_unblocks_a_join_waiting_in_another_thread() {
    let p = Pool::new(1, Options::default()).unwrap();
    let (x, mut y) = (16i64, 0i64); // hangs
    let r = apply(&p, faulty, &x, &mut y);
    p.close().unwrap();
    std::thread::scope(|s| {
        let joiner = s.spawn(|| p.join());
        std::thread::sleep(Duration::from_millis(100));
        assert!(!joiner.is_finished(), "join waits for the hanging task");
        let t0 = Instant::now();
        p.terminate().unwrap();
        joiner.join().unwrap().unwrap();
        hang_guard("a join ended by terminate", t0.elapsed(), Duration::from_secs(60));
    });
    assert_eq!(r.wait(None).unwrap().status(), Status::Closed);
}

/// Builds a one-function shared library (`int task(const void*, void*, void*)` writing `value`)
/// with the system C compiler.
fn build_task_lib(dir: &std::path::Path, name: &str, value: i64) -> std::ffi::CString {
    let src = dir.join(format!("{name}.c"));
    let so = dir.join(format!("lib{name}.so"));
    std::fs::write(
        &src,
        format!("int task(const void *i, void *o, void *c) {{ (void)i; (void)c; *(long *)o = {value}; return 0; }}\n"),
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = std::process::Command::new(cc).args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&src).status().unwrap();
    assert!(st.success(), "building {name}");
    std::ffi::CString::new(so.to_str().unwrap()).unwrap()
}

#[test]
fn function_of_a_library_unloaded_and_replaced_after_creation_is_refused() {
    let dir = std::env::temp_dir().join(format!("pool-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (build_task_lib(&dir, "taska", 1), build_task_lib(&dir, "taskb", 2));
    let la = unsafe { libc::dlopen(a.as_ptr(), libc::RTLD_NOW) };
    assert!(!la.is_null());
    let f = unsafe { libc::dlsym(la, c"task".as_ptr()) };
    let p = Pool::new(1, Options::default()).unwrap();
    let (x, mut y) = (0i64, 0i64);
    let ff: pool::core::worker::ItemFn = unsafe { std::mem::transmute(f) };
    let r =
        unsafe { p.apply_async(ff, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }.unwrap();
    r.wait(None).unwrap().err.map_or(Ok(()), Err).unwrap();
    assert_eq!(y, 1, "the library loaded before the pool runs");
    unsafe { libc::dlclose(la) };
    let lb = unsafe { libc::dlopen(b.as_ptr(), libc::RTLD_NOW) };
    assert!(!lb.is_null());
    let g = unsafe { libc::dlsym(lb, c"task".as_ptr()) };
    // Whether or not the loader put taskb where taska was, the old pointer must be refused.
    let e = unsafe { p.apply_async(ff, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .err()
        .expect("a function of an unloaded library must be refused");
    assert_eq!(e.status, Status::Inval);
    if g == f {
        assert!(e.msg.contains("unloaded"), "{e}");
    } else {
        eprintln!("taskb loaded elsewhere ({g:?}, taska was at {f:?}): refused as unknown code");
    }
    unsafe { libc::dlclose(lb) };
    std::fs::remove_dir_all(&dir).ok();
}

/// Adds the i64 that ctx points to.
unsafe extern "C" fn add_ctx(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    *(o as *mut i64) = *(i as *const i64) + *(ctx as *const i64);
    0
}

#[test]
fn ctx_is_copied_with_the_call_when_ctx_size_is_given() {
    let p = Pool::new(2, Options::default()).unwrap();
    // Allocated after the pool: workers do not have it, so it must travel with the call.
    let big: Vec<i64> = vec![1000; 1 << 20]; // large enough to be its own mapping
    let ctx = big.as_ptr() as usize;
    let (x, mut y) = (5i64, 0i64);
    let e = unsafe { p.apply_async(add_ctx, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, ctx) }
        .err()
        .expect("ctx in memory the workers do not have must be refused");
    assert_eq!(e.status, Status::Inval);
    assert!(e.msg.contains("ctx") && e.msg.contains("ctx_size"), "{e}");
    let opts = CallOptions { ctx_size: 8, ..CallOptions::default() };
    let r = unsafe {
        p.apply_async_ex(add_ctx, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, ctx, opts)
    }
    .unwrap();
    assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
    assert_eq!(y, 1005);
    // A map sees the bytes as they were at the call, whatever the caller does after.
    let mut val = Box::new(7i64);
    let xs: Vec<i64> = (0..10_000).collect();
    let mut ys = vec![0i64; xs.len()];
    let a = MapArgs { ctx_size: 8, ..map_args(add_ctx, &xs, &mut ys, &*val as *const i64 as usize, 100) };
    let r = unsafe { p.map_async(a) }.unwrap();
    *val = -1;
    r.wait(None).unwrap().err.map_or(Ok(()), Err).unwrap();
    assert!(xs.iter().zip(&ys).all(|(x, y)| *y == x + 7));
}

unsafe extern "C" fn explains(i: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    if x % 10 == 3 {
        let m = format!("cannot take item {x}: it ends in 3");
        pool::core::worker::set_task_error(m.as_bytes()).unwrap();
        return 3;
    }
    if x % 10 == 4 {
        pool::core::worker::set_task_error(b"dropped: this item succeeds").unwrap();
    }
    *(o as *mut i64) = x;
    0
}

#[test]
fn task_error_messages_reach_the_caller() {
    assert!(pool::core::worker::set_task_error(b"outside").is_err(), "only inside a task");
    let p = Pool::new(2, Options::default()).unwrap();
    let (x, mut y) = (13i64, 0i64);
    let r = unsafe { p.apply_async(explains, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    let o = r.wait(None).unwrap();
    assert_eq!(o.status(), Status::Task);
    assert_eq!(o.info.msg.as_deref(), Some("cannot take item 13: it ends in 3"));
    assert!(o.err.unwrap().msg.ends_with("task returned 3: cannot take item 13: it ends in 3"));
    // A map: the lowest failing item's message; the message of a task that succeeds is dropped.
    let xs: Vec<i64> = (0..100).collect();
    let mut ys = vec![0i64; 100];
    let e = unsafe { p.map(map_args(explains, &xs, &mut ys, 0, 7)) }.unwrap_err();
    assert_eq!(e.msg, "item 3: task returned 3: cannot take item 3: it ends in 3");
    assert_eq!(ys[4], 4);
    // Iterators: every failed item carries its own.
    let mut it =
        unsafe { p.imap(map_args_raw(explains, xs.as_ptr() as usize, 0, 100, 0, 7), Input::Array, true) }.unwrap();
    let mut seen = 0;
    let mut out = 0i64;
    while let Some(item) = unsafe { it.next(&mut out as *mut i64 as *mut u8, None) }.unwrap() {
        if let Some(e) = item.err {
            assert!(e.msg.ends_with(&format!("cannot take item {}: it ends in 3", item.index)), "{e}");
            seen += 1;
        }
    }
    assert_eq!(seen, 10);
}

unsafe extern "C" fn sleeps_then_answers(i: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    std::thread::sleep(Duration::from_millis(*(i as *const u64)));
    *(o as *mut i64) = 42;
    0
}

/// A join after close waits for the work however long it takes: the zygote is only given a
/// deadline (10 s) once the pool is terminated.
#[test]
fn join_after_close_waits_for_a_task_longer_than_the_exit_deadline() {
    let p = Pool::new(1, Options::default()).unwrap();
    let ms = 11_500u64;
    let mut y = 0i64;
    let t0 = Instant::now(); // before the task starts: the join cannot end before it does
    let r = unsafe {
        p.apply_async(sleeps_then_answers, &ms as *const u64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0)
    }
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    p.close().unwrap();
    p.join().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(ms), "join returned after {:?}", t0.elapsed());
    let o = r.wait(Some(Duration::ZERO)).unwrap();
    assert_eq!(o.status(), Status::Ok, "{:?}", o.err);
    assert_eq!(y, 42);
}

/// Keeps the worker from mapping anything more: its address space is capped where it is.
unsafe extern "C" fn no_more_address_space(_: *mut c_void) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let vm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let cap = (vm_kb + 256) * 1024;
    let lim = libc::rlimit { rlim_cur: cap, rlim_max: cap };
    libc::setrlimit(libc::RLIMIT_AS, &lim);
}

unsafe extern "C" fn fills_mib(_: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    std::ptr::write_bytes(o as *mut u8, 7, 1 << 20);
    0
}

/// A task that kills every worker before its item starts (here: no address space left for the
/// window its big result is written through) fails that item after a few tries, instead of
/// being requeued forever.
#[test]
fn a_task_that_kills_every_worker_before_its_item_starts_fails_instead_of_looping() {
    let init = pool::core::worker::Init::Plain(no_more_address_space, 0);
    let p = Pool::new(1, Options { initializer: Some(init), ..Options::default() }).unwrap();
    let xs = [0i64; 4];
    let mut ys = vec![0u8; 4 << 20];
    let mut st = vec![0i32; 4];
    let mut a = map_args_raw(fills_mib, xs.as_ptr() as usize, ys.as_mut_ptr() as usize, 4, 0, 4);
    a.out_size = 1 << 20;
    a.statuses = st.as_mut_ptr() as usize;
    let t0 = Instant::now();
    let r = unsafe { p.map(a) };
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Crashed, "{e}");
    assert!(st.iter().all(|&s| s == Status::Crashed as i32), "{st:?}");
}
