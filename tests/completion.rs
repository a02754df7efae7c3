//! Completion that sleeps: `pool_async_wait_any` and the callback threads wait for results on
//! their pools' event words instead of polling them (src/core/wake.rs). Through the C API:
//! - wait_any over results of one pool, and of several pools (a map among them), returns the
//!   one that became ready, whichever it is;
//! - a callback whose result ends long after it was registered runs, once; callbacks of several
//!   pools each run once, as their results end; destroying a pool while its callback thread
//!   sleeps runs the callbacks left (closed), a result freed meanwhile gets none;
//! - a thread blocked in wait_any, and a callback thread with nothing ready, sleep: their CPU
//!   time stays far below the wall time and they wake a handful of times, not at every
//!   millisecond (a poll guard, not a benchmark: bounds are generous), also over more results
//!   and pools than one `futex_waitv` takes words;
//! - wait_any over a result whose worker is killed meanwhile returns it, crashed.
//!
//! Tasks are held by gates in shared memory that the test opens one at a time, so every check
//! waits for an event. The forced fallback without futex_waitv is tested in wake.rs.

mod common;
use common::*;
use pool::ffi::options::*;
use pool::ffi::pool::*;
use pool::ffi::result::*;
use std::collections::BTreeSet;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

const OK: c_int = 0;
const TIMEDOUT: c_int = 4;
const CLOSED: c_int = 7;
const HANG_GUARD: Duration = Duration::from_secs(60);
/// How long the sleep checks watch a waiting thread.
const WATCH: Duration = Duration::from_millis(300);

/// Gates shared with the workers (made before any pool: every test calls this first). Each
/// test uses gates of its own, since tests run in parallel.
fn gates() -> &'static [AtomicU32] {
    static G: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let p = *G.get_or_init(|| shared_counters(256).as_ptr() as usize);
    // SAFETY: a leaked shared mapping of 256 counters.
    unsafe { std::slice::from_raw_parts(p as *const AtomicU32, 256) }
}

/// Returns `3 * gate` once its gate (the input) is open.
unsafe extern "C" fn held(i: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    let g = *(i as *const u64) as usize;
    while gates()[g].load(SeqCst) == 0 {
        libc::usleep(200);
    }
    *(o as *mut u64) = 3 * g as u64;
    0
}

/// Per callback argument (a gate): calls and the status given.
static CALLS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static STATUS: [AtomicU32; 256] = [const { AtomicU32::new(u32::MAX) }; 256];

unsafe extern "C" fn on_done(_: *mut pool_async_t, status: c_int, arg: *mut c_void) {
    STATUS[arg as usize].store(status as u32, SeqCst);
    CALLS[arg as usize].fetch_add(1, SeqCst);
}

fn create(workers: c_int) -> *mut pool_t {
    let p = pool_create(workers, std::ptr::null());
    assert!(!p.is_null(), "pool_create failed");
    p
}

/// `held(gate)` on `p`, its result in `out`; with a callback named by the gate if `callback`.
fn apply_held(p: *mut pool_t, gate: usize, out: &mut u64, callback: bool) -> *mut pool_async_t {
    let mut co: pool_call_options_t = unsafe { std::mem::zeroed() };
    pool_call_options_init(&mut co);
    if callback {
        co.callback = Some(on_done);
        co.callback_arg = gate as *mut c_void;
    }
    let g = gate as u64;
    let (i, o) = (&g as *const u64 as *const c_void, out as *mut u64 as *mut c_void);
    let h = pool_apply_async_ex(p, Some(held), i, 8, o, 8, std::ptr::null_mut(), &co);
    assert!(!h.is_null(), "apply refused");
    h
}

/// Opens the gates of `pending` (gate, handle) in `order`; after each, wait_any over the handles
/// left must name that gate's handle, which is then collected and freed.
fn open_and_wait_any(mut pending: Vec<(usize, *mut pool_async_t)>, order: &[usize]) {
    let hs: Vec<_> = pending.iter().map(|&(_, h)| h).collect();
    let mut idx = usize::MAX;
    assert_eq!(pool_async_wait_any(hs.as_ptr(), hs.len(), 0.0, &mut idx), TIMEDOUT, "ready before any gate opened");
    for &g in order {
        gates()[g].store(1, SeqCst);
        let hs: Vec<_> = pending.iter().map(|&(_, h)| h).collect();
        let st = pool_async_wait_any(hs.as_ptr(), hs.len(), HANG_GUARD.as_secs_f64(), &mut idx);
        assert_eq!(st, OK, "wait_any returned nothing after gate {g} opened");
        assert_eq!(pending[idx].0, g, "wait_any named another result than the one of gate {g}");
        assert_eq!(pool_async_get(pending[idx].1, 0.0), OK);
        pool_async_free(pending.remove(idx).1);
    }
}

#[test]
fn wait_any_over_one_pool_returns_the_result_that_became_ready() {
    gates();
    const G: usize = 0;
    let p = create(3);
    let mut outs = [0u64; 3];
    let pending = outs.iter_mut().enumerate().map(|(k, o)| (G + k, apply_held(p, G + k, o, false))).collect();
    open_and_wait_any(pending, &[G + 1, G + 2, G]);
    assert_eq!(outs, [3 * G as u64, 3 * (G + 1) as u64, 3 * (G + 2) as u64]);
    pool_destroy(p);
}

#[test]
fn wait_any_over_several_pools_returns_the_result_that_became_ready() {
    gates();
    const G: usize = 10;
    let ps = [create(1), create(1), create(2)];
    let (mut a, mut c) = (0u64, 0u64);
    // Pool 1 runs a map of two items behind gate G + 1: its driver ends it.
    let map_in = [(G + 1) as u64; 2];
    let mut map_out = [0u64; 2];
    let (mi, mo) = (map_in.as_ptr() as *const c_void, map_out.as_mut_ptr() as *mut c_void);
    let map = pool_map_async_ex(ps[1], Some(held), mi, 8, mo, 8, 2, std::ptr::null_mut(), std::ptr::null());
    assert!(!map.is_null(), "map refused");
    let pending =
        vec![(G, apply_held(ps[0], G, &mut a, false)), (G + 1, map), (G + 2, apply_held(ps[2], G + 2, &mut c, false))];
    open_and_wait_any(pending, &[G + 2, G + 1, G]);
    assert_eq!((a, map_out, c), (3 * G as u64, [3 * (G + 1) as u64; 2], 3 * (G + 2) as u64));
    ps.into_iter().for_each(|p| pool_destroy(p));
}

/// CPU time (user + system) and voluntary context switches (sleeps) of the calling thread.
fn my_usage() -> (Duration, i64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: fills `ru`.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    (t(ru.ru_utime) + t(ru.ru_stime), ru.ru_nvcsw)
}

/// Whether this kernel has futex_waitv (Linux 5.16): without it a wait over several pools
/// naps in 1 ms slices, which wakes often by design.
fn has_futex_waitv() -> bool {
    // SAFETY: no futex named: the kernel answers EINVAL if it knows the call, ENOSYS if not.
    let r = unsafe { libc::syscall(libc::SYS_futex_waitv, std::ptr::null::<u8>(), 0u32, 0u32, 0usize, 0) };
    !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// A wait_any over `hs`, held results all, in a thread of its own for `WATCH`: its CPU time,
/// wall time and sleeps.
fn held_wait_any(hs: &[*mut pool_async_t]) -> (Duration, Duration, i64) {
    let (hs_addr, n) = (hs.as_ptr() as usize, hs.len());
    std::thread::spawn(move || {
        let (t0, (c0, s0)) = (Instant::now(), my_usage());
        let mut idx = usize::MAX;
        let st = pool_async_wait_any(hs_addr as *const *mut pool_async_t, n, WATCH.as_secs_f64(), &mut idx);
        assert_eq!(st, TIMEDOUT, "a held result was ready");
        let (c1, s1) = my_usage();
        (c1 - c0, t0.elapsed(), s1 - s0)
    })
    .join()
    .unwrap()
}

#[test]
fn a_thread_blocked_in_wait_any_sleeps() {
    gates();
    const G: usize = 20;
    let ps = [create(1), create(1)];
    let (mut a, mut b) = (0u64, 0u64);
    let hs = [apply_held(ps[0], G, &mut a, false), apply_held(ps[1], G + 1, &mut b, false)];
    for n in [1, 2] {
        let (cpu, wall, sleeps) = held_wait_any(&hs[..n]);
        eprintln!("wait_any over {n} pool(s): {cpu:?} of CPU in {wall:?}, {sleeps} sleeps");
        assert!(cpu < wall * 3 / 10, "wait_any over {n} pool(s) burnt {cpu:?} of CPU in {wall:?}");
        if n == 1 || has_futex_waitv() {
            assert!(sleeps < 50, "wait_any over {n} pool(s) went to sleep {sleeps} times in {wall:?}: it polls");
        }
    }
    gates()[G].store(1, SeqCst);
    gates()[G + 1].store(1, SeqCst);
    for h in hs {
        assert_eq!(pool_async_get(h, HANG_GUARD.as_secs_f64()), OK);
        pool_async_free(h);
    }
    ps.into_iter().for_each(|p| pool_destroy(p));
}

/// The library's callback threads, by thread id.
fn callback_threads() -> BTreeSet<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "pool-callbacks"))
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Held by the tests that start callback threads: each finds its own as the one that appeared.
static CALLBACK_THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The callback thread a result registered with `register` started (the pool's first); the
/// caller holds `CALLBACK_THREADS`.
fn new_callback_thread(register: impl FnOnce()) -> i32 {
    let before = callback_threads();
    register();
    let mut new = Vec::new();
    // It names itself as it starts.
    wait_until(HANG_GUARD, || {
        new = callback_threads().difference(&before).copied().collect();
        !new.is_empty()
    });
    assert_eq!(new.len(), 1, "no new callback thread (or more than one): {new:?}");
    new[0]
}

/// Thread `tid`'s state letter, CPU time (clock ticks, user + system) and voluntary switches.
fn thread_stat(tid: i32) -> (char, u64, i64) {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let sleeps = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).unwrap();
    (
        f[0].chars().next().unwrap(),
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap(),
        sleeps.trim().parse().unwrap(),
    )
}

/// Waits until thread `tid` sleeps.
fn until_asleep(tid: i32) {
    let asleep = wait_until(HANG_GUARD, || thread_stat(tid).0 == 'S');
    assert!(asleep, "the callback thread never went to sleep");
}

fn until_called(gate: usize) {
    let called = wait_until(HANG_GUARD, || CALLS[gate].load(SeqCst) != 0);
    assert!(called, "the callback of gate {gate} never ran");
}

#[test]
fn a_callback_whose_result_ends_long_after_runs_and_its_thread_sleeps_meanwhile() {
    let _serial = CALLBACK_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    gates();
    const G: usize = 30;
    let p = create(1);
    let mut out = 0u64;
    let mut h = std::ptr::null_mut();
    let tid = new_callback_thread(|| h = apply_held(p, G, &mut out, true));
    until_asleep(tid);
    let (_, cpu0, sleeps0) = thread_stat(tid);
    let t0 = Instant::now();
    std::thread::sleep(WATCH);
    let (_, cpu1, sleeps1) = thread_stat(tid);
    // SAFETY: plain query.
    let tick = Duration::from_secs(1) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u32;
    let (cpu, wall, sleeps) = (tick * (cpu1 - cpu0) as u32, t0.elapsed(), sleeps1 - sleeps0);
    eprintln!("the callback thread with nothing ready: {cpu:?} of CPU in {wall:?}, {sleeps} sleeps");
    assert!(cpu < wall * 3 / 10, "the callback thread burnt {cpu:?} of CPU in {wall:?}");
    assert!(sleeps < 50, "the callback thread went to sleep {sleeps} times in {wall:?}: it polls");
    assert_eq!(CALLS[G].load(SeqCst), 0, "called before its result ended");
    gates()[G].store(1, SeqCst);
    until_called(G);
    assert_eq!(STATUS[G].load(SeqCst), OK as u32);
    assert_eq!(out, 3 * G as u64);
    pool_async_free(h);
    pool_destroy(p);
    assert_eq!(CALLS[G].load(SeqCst), 1, "called more than once");
}

#[test]
fn callbacks_of_several_pools_each_run_once_as_their_results_end() {
    let _serial = CALLBACK_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    gates();
    const G: usize = 40;
    let ps = [create(2), create(2), create(2)];
    let mut outs = [0u64; 6];
    let hs: Vec<_> = outs.iter_mut().enumerate().map(|(k, o)| apply_held(ps[k / 2], G + k, o, true)).collect();
    for k in [5, 0, 3, 1, 4, 2] {
        gates()[G + k].store(1, SeqCst);
        until_called(G + k);
        assert_eq!(STATUS[G + k].load(SeqCst), OK as u32);
    }
    assert!((0..6).all(|k| outs[k] == 3 * (G + k) as u64));
    hs.into_iter().for_each(|h| pool_async_free(h));
    ps.into_iter().for_each(|p| pool_destroy(p));
    assert!((G..G + 6).all(|g| CALLS[g].load(SeqCst) == 1), "a callback ran more than once");
}

#[test]
fn destroying_a_pool_while_its_callback_thread_sleeps() {
    let _serial = CALLBACK_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    gates();
    const G: usize = 50; // never opened: the pool's end closes them
    let p = create(2);
    let (mut a, mut b) = (0u64, 0u64);
    let mut kept = std::ptr::null_mut();
    let tid = new_callback_thread(|| kept = apply_held(p, G, &mut a, true));
    let freed = apply_held(p, G + 1, &mut b, true);
    until_asleep(tid);
    pool_async_free(freed); // while the thread sleeps: its callback must never run
    until_asleep(tid);
    pool_destroy(p); // ends the work, runs the callbacks left, joins the thread
    assert_eq!(CALLS[G].load(SeqCst), 1, "the pending callback did not run once by the pool's end");
    assert_eq!(STATUS[G].load(SeqCst), CLOSED as u32);
    assert_eq!(CALLS[G + 1].load(SeqCst), 0, "a freed result got its callback");
    assert!(!callback_threads().contains(&tid), "the callback thread outlived its pool");
    assert_eq!(pool_async_get(kept, 0.0), CLOSED);
    pool_async_free(kept);
}

unsafe extern "C" fn double(i: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    *(o as *mut u64) = 2 * *(i as *const u64);
    0
}

/// A thread waiting on one result sleeps on that task's own word (as `pool_async_get` does):
/// the other tasks of its pool ending do not wake it. (It slept on the pool's word, which every
/// task's end bumped while anyone waited: a burst of applies beside one sleeper took 3-4x as
/// long, the sleeper woken for each.)
#[test]
fn the_other_tasks_of_a_pool_do_not_wake_a_thread_waiting_on_one_of_its_results() {
    gates();
    const G: usize = 60;
    const BURST: u64 = 2000;
    let p = create(2);
    let mut a = 0u64;
    let h = apply_held(p, G, &mut a, false);
    let h_addr = h as usize;
    let (tell, told) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tell.send(unsafe { libc::gettid() }).unwrap();
        let hs = [h_addr as *mut pool_async_t];
        let s0 = my_usage().1;
        let mut idx = usize::MAX;
        let st = pool_async_wait_any(hs.as_ptr(), 1, HANG_GUARD.as_secs_f64(), &mut idx);
        assert_eq!((st, idx), (OK, 0), "the held result");
        my_usage().1 - s0
    });
    let tid = told.recv().unwrap();
    let asleep = wait_until(HANG_GUARD, || thread_stat(tid).0 == 'S');
    assert!(asleep, "the waiter never went to sleep");
    for x in 0..BURST {
        let mut y = 0u64;
        let st = pool_apply(
            p,
            Some(double),
            &x as *const u64 as *const c_void,
            8,
            &mut y as *mut u64 as *mut c_void,
            8,
            std::ptr::null_mut(),
        );
        assert_eq!((st, y), (OK, 2 * x));
    }
    gates()[G].store(1, SeqCst);
    let sleeps = waiter.join().unwrap();
    eprintln!("a waiter beside {BURST} other tasks of its pool slept {sleeps} times");
    assert!(sleeps < BURST as i64 / 10, "the waiter was woken {sleeps} times by {BURST} other tasks' ends");
    assert_eq!(pool_async_get(h, HANG_GUARD.as_secs_f64()), OK);
    pool_async_free(h);
    pool_destroy(p);
}

/// A wait over 100 task results of one pool and a map on each of 29 more pools: 129 words to
/// sleep on, one more than a futex_waitv takes, and it napped every millisecond (about 300
/// wake-ups in 300 ms). It sleeps on the 30 pools' words instead.
#[test]
fn a_wait_over_more_words_than_one_futex_waitv_takes_sleeps() {
    gates();
    const G: usize = 70; // opened at the end
    let ps: Vec<_> = (0..30).map(|_| create(1)).collect();
    let mut outs = vec![0u64; 100];
    let mut hs: Vec<_> = outs.iter_mut().map(|o| apply_held(ps[0], G, o, false)).collect();
    let map_in = G as u64;
    let mut map_outs = vec![0u64; 29];
    for (&p, o) in ps[1..].iter().zip(map_outs.iter_mut()) {
        let (i, o) = (&map_in as *const u64 as *const c_void, o as *mut u64 as *mut c_void);
        let h = pool_map_async_ex(p, Some(held), i, 8, o, 8, 1, std::ptr::null_mut(), std::ptr::null());
        assert!(!h.is_null(), "map refused");
        hs.push(h);
    }
    let n = hs.len();
    let (cpu, wall, sleeps) = held_wait_any(&hs);
    eprintln!("wait_any over {n} results of 30 pools: {cpu:?} of CPU in {wall:?}, {sleeps} sleeps");
    assert!(cpu < wall * 3 / 10, "wait_any burnt {cpu:?} of CPU in {wall:?}");
    if has_futex_waitv() {
        assert!(sleeps < 50, "wait_any over {n} results of 30 pools went to sleep {sleeps} times in {wall:?}: it naps");
    }
    gates()[G].store(1, SeqCst);
    for h in hs {
        assert_eq!(pool_async_get(h, HANG_GUARD.as_secs_f64()), OK);
        pool_async_free(h);
    }
    assert!(outs.iter().chain(&map_outs).all(|&o| o == 3 * G as u64));
    ps.into_iter().for_each(|p| pool_destroy(p));
}

/// Notes its worker's pid in gate `k + 1` (the input is `k`), then waits at gate `k`.
unsafe extern "C" fn pid_then_held(i: *const c_void, o: *mut c_void, c: *mut c_void) -> c_int {
    let g = *(i as *const u64) as usize;
    gates()[g + 1].store(libc::getpid() as u32, SeqCst);
    held(i, o, c)
}

/// A worker killed while a thread sleeps in wait_any over its task's result, beside others
/// held: wait_any returns that result, crashed, whether it sleeps on the task's own word (2
/// results) or on the pools' words (101 tasks and a map).
#[test]
fn wait_any_returns_the_result_whose_worker_was_killed() {
    gates();
    const G: usize = 80; // G: the killed task's gate (never opened), G + 1 its pid, G + 2 the others'
    let (p, q) = (create(1), create(1));
    for others in [1, 100] {
        gates()[G + 1].store(0, SeqCst);
        let g = G as u64;
        let mut out = 0u64;
        let (i, o) = (&g as *const u64 as *const c_void, &mut out as *mut u64 as *mut c_void);
        let killed = pool_apply_async(p, Some(pid_then_held), i, 8, o, 8, std::ptr::null_mut());
        assert!(!killed.is_null(), "apply refused");
        let mut outs = vec![0u64; others + 1];
        let mut hs = vec![killed];
        hs.extend(outs[1..].iter_mut().map(|o| apply_held(p, G + 2, o, false)));
        let (mi, mo) = (&(G as u64 + 2) as *const u64 as *const c_void, &mut outs[0] as *mut u64 as *mut c_void);
        hs.push(pool_map_async_ex(q, Some(held), mi, 8, mo, 8, 1, std::ptr::null_mut(), std::ptr::null()));
        assert!(wait_until(HANG_GUARD, || gates()[G + 1].load(SeqCst) != 0), "the task never started");
        let (hs_addr, n) = (hs.as_ptr() as usize, hs.len());
        let (tell, told) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tell.send(unsafe { libc::gettid() }).unwrap();
            let mut idx = usize::MAX;
            let st = pool_async_wait_any(hs_addr as *const *mut pool_async_t, n, HANG_GUARD.as_secs_f64(), &mut idx);
            (st, idx)
        });
        let tid = told.recv().unwrap();
        assert!(wait_until(HANG_GUARD, || thread_stat(tid).0 == 'S'), "the waiter never went to sleep");
        // SAFETY: kills the worker running the task (its pid, as it noted it).
        unsafe { libc::kill(gates()[G + 1].load(SeqCst) as i32, libc::SIGKILL) };
        let (st, idx) = waiter.join().unwrap();
        assert_eq!((st, idx), (OK, 0), "with {others} other task(s): not the killed worker's result");
        assert_eq!(pool_async_get(hs[0], 0.0), 6, "POOL_ECRASHED");
        gates()[G + 2].store(1, SeqCst);
        for &h in &hs[1..] {
            assert_eq!(pool_async_get(h, HANG_GUARD.as_secs_f64()), OK);
        }
        hs.into_iter().for_each(|h| pool_async_free(h));
        gates()[G + 2].store(0, SeqCst);
    }
    pool_destroy(p);
    pool_destroy(q);
}
