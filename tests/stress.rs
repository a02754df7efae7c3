//! Fault injection under load, and pools in a host whose other threads hammer malloc and stdio.
//! Tests here count process-wide resources, so they run one at a time.

mod common;
use common::*;
use pool::core::{MapArgs, Options, Pool, Process, Status};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// What item `x` does: 0 ok, 1 segfault, 2 abort, 3 _exit(3), 4 hang, 5 return 7.
fn kind(x: i64) -> u32 {
    let h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1023
    match h {
        0..=19 => 1,
        20..=29 => 2,
        30..=39 => 3,
        40..=44 => 4,
        45..=64 => 5,
        _ => 0,
    }
}

unsafe extern "C" fn chaos(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    (*(ctx as *const std::sync::atomic::AtomicU32).add(x as usize)).fetch_add(1, Ordering::SeqCst);
    match kind(x) {
        1 => {
            libc::raise(libc::SIGSEGV);
        }
        2 => libc::abort(),
        3 => libc::_exit(3),
        4 => loop {
            libc::pause();
        },
        5 => return 7,
        _ => {}
    }
    *(o as *mut i64) = x * 3;
    0
}

fn shm_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("memfd:libpool")).count()
}

#[test]
fn fault_injection_under_load() {
    let _g = SERIAL.lock().unwrap();
    let me = std::process::id() as i32;
    let (fds, maps) = (fd_count(), shm_mappings());
    const N: usize = 3000;
    let counts = shared_counters(N);
    let p = Pool::new(2, Options { task_timeout: Some(Duration::from_secs(1)), ..Options::default() }).unwrap();
    // Kill a random worker from outside every 100 ms while the map runs.
    let stop = AtomicBool::new(false);
    let killed = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let mut killed = 0;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                for z in children_of(me) {
                    if let Some(&w) = children_of(z).first() {
                        unsafe { libc::kill(w, libc::SIGKILL) };
                        killed += 1;
                    }
                }
            }
            killed
        });
        let xs: Vec<i64> = (0..N as i64).collect();
        let mut ys = vec![-1i64; N];
        let mut st = vec![-1i32; N];
        let a = MapArgs {
            statuses: st.as_mut_ptr() as usize,
            ..map_args(chaos, &xs, &mut ys, counts.as_ptr() as usize, 16)
        };
        let t0 = Instant::now();
        let r = unsafe { p.map(a) };
        stop.store(true, Ordering::SeqCst);
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(120), "took {:?}", t0.elapsed());
        let mut outside = 0;
        for x in 0..N {
            let runs = counts[x].load(Ordering::SeqCst);
            assert!(runs <= 1, "item {x} ran {runs} times");
            let want = match kind(x as i64) {
                0 => Status::Ok,
                1..=3 => Status::Crashed,
                4 => Status::TimedOut,
                _ => Status::Task,
            };
            let got = st[x];
            if got == want as i32 {
                if want == Status::Ok {
                    assert_eq!(ys[x], 3 * x as i64, "item {x}");
                }
            } else {
                // Only a kill from outside may change how an item ends, and only to a crash.
                assert_eq!(got, Status::Crashed as i32, "item {x} (expected {want:?})");
                outside += 1;
            }
        }
        let killed = killer.join().unwrap();
        assert!(outside <= killed, "{outside} items failed but only {killed} workers were killed from outside");
        killed
    });
    eprintln!("fault injection: {N} items, {killed} workers killed from outside");
    drop(p);
    assert_eq!(children_of(me), Vec::<i32>::new(), "processes left behind");
    assert_eq!(fd_count(), fds, "descriptors leaked");
    assert_eq!(shm_mappings(), maps, "shared memory left mapped");
}

/// A Process body that uses malloc and stdio, whose locks other host threads keep taking.
unsafe extern "C" fn child_main(_: *mut c_void) -> c_int {
    let v: Vec<u8> = vec![7; 1 << 16];
    let f = libc::fopen(c"/dev/null".as_ptr(), c"w".as_ptr());
    libc::fprintf(f, c"child %d\n".as_ptr(), v[100] as c_int);
    libc::fclose(f);
    3
}

#[test]
fn threaded_host_hammering_malloc_and_stdio() {
    let _g = SERIAL.lock().unwrap();
    let me = std::process::id() as i32;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..8 {
            let stop = &stop;
            s.spawn(move || {
                let devnull = unsafe { libc::fopen(c"/dev/null".as_ptr(), c"w".as_ptr()) };
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<u64> = vec![i; 1 + (i as usize % 4096)];
                    unsafe {
                        libc::fprintf(devnull, c"%d %lu\n".as_ptr(), t as c_int, v[v.len() - 1]);
                        let p = libc::malloc(1 + (i as usize % 100_000));
                        libc::free(p);
                    }
                    i += 1;
                }
                unsafe { libc::fclose(devnull) };
            });
        }
        for cycle in 0..30 {
            let p = Pool::new(2, Options::default()).unwrap();
            // faulty() crashes on 13 and behaves on values that are 1 modulo 100.
            let xs: Vec<i64> = (0..200).map(|x| if x == 50 && cycle % 2 == 0 { 13 } else { 100 * x + 1 }).collect();
            let mut ys = vec![0i64; xs.len()];
            let a = map_args(faulty, &xs, &mut ys, 0, 10);
            let r = unsafe { p.map(a) };
            if cycle % 2 == 0 {
                assert_eq!(r.unwrap_err().status, Status::Crashed); // and a worker was respawned
            } else {
                r.unwrap();
            }
            assert_eq!(ys[199], 19901 * 19901);
            let proc_ = Process::new(child_main, std::ptr::null_mut());
            proc_.start().unwrap();
            proc_.join(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(proc_.exitcode().unwrap(), 3);
            drop(p);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(children_of(me), Vec::<i32>::new());
}

static CHILD_SEEN: AtomicBool = AtomicBool::new(false);
extern "C" fn on_sigchld(_: c_int) {
    // A host handler that reaps whatever it can, as careless hosts do.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {
        CHILD_SEEN.store(true, Ordering::SeqCst);
    }
}

#[test]
fn host_sigchld_handler_and_own_children_coexist() {
    let _g = SERIAL.lock().unwrap();
    // The host's own child, which the pool must never reap.
    let own = unsafe { libc::fork() };
    if own == 0 {
        unsafe { libc::pause() };
        unsafe { libc::_exit(0) };
    }
    let p = Pool::new(2, Options::default()).unwrap();
    let old = unsafe { libc::signal(libc::SIGCHLD, on_sigchld as extern "C" fn(c_int) as libc::sighandler_t) };
    for round in 0..3 {
        let xs: Vec<i64> = (0..100).map(|x| if x == 7 { 13 } else { 100 * x + 1 + 10_000 * round }).collect();
        let mut ys = vec![0i64; 100];
        let a = map_args(faulty, &xs, &mut ys, 0, 5);
        assert_eq!(unsafe { p.map(a) }.unwrap_err().status, Status::Crashed);
        assert_eq!(ys[99], (9901 + 10_000 * round) * (9901 + 10_000 * round));
    }
    drop(p);
    // Our own child is still ours: alive and reapable by us.
    unsafe { libc::signal(libc::SIGCHLD, old) };
    assert_eq!(
        unsafe { libc::waitpid(own, std::ptr::null_mut(), libc::WNOHANG) },
        0,
        "the pool reaped the host's child"
    );
    unsafe { libc::kill(own, libc::SIGKILL) };
    assert_eq!(unsafe { libc::waitpid(own, std::ptr::null_mut(), 0) }, own);
}

#[test]
fn workers_ignore_ctrl_c() {
    let _g = SERIAL.lock().unwrap();
    let me = std::process::id() as i32;
    let p = Pool::new(2, Options::default()).unwrap();
    for z in children_of(me) {
        unsafe { libc::kill(z, libc::SIGINT) };
        for w in children_of(z) {
            unsafe { libc::kill(w, libc::SIGINT) };
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let xs: Vec<i64> = (0..1000).collect();
    let mut ys = vec![0i64; 1000];
    let a = map_args(square, &xs, &mut ys, 0, 0);
    unsafe { p.map(a) }.unwrap(); // no item crashed: SIGINT killed nobody
    assert_eq!(ys[999], 999 * 999);
}

/// What storm item `x` does: 0 ok, 1 returns 7, 2 segfaults, 3 hangs (timed out).
fn storm_kind(x: i64) -> u32 {
    match (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58 {
        0 => 1,
        1 => 2,
        2 if x % 7 == 0 => 3,
        _ => 0,
    }
}

unsafe extern "C" fn storm_task(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    let n = if ctx == STORM_COUNTS.load(Ordering::Relaxed) as *mut c_void { STORM_N } else { APPLY_N };
    (*(ctx as *const std::sync::atomic::AtomicU32).add(x as usize % n)).fetch_add(1, Ordering::SeqCst);
    match storm_kind(x) {
        1 => return 7,
        2 => {
            libc::raise(libc::SIGSEGV);
        }
        3 => loop {
            libc::pause();
        },
        _ => {}
    }
    *(o as *mut i64) = x * 3;
    0
}

const STORM_N: usize = 3000;
static STORM_COUNTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const APPLY_N: usize = 1 << 22;

/// The zygote's children, read from /proc (cheap enough to do every millisecond).
/// The children of `parent` (a zygote's workers, a worker's executors).
fn workers_of(parent: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A random worker is SIGKILLed from outside about every millisecond while maps of a few
/// thousand items (about 5% failing, crashing or hanging past their timeout) and applies from
/// another thread run, for POOL_STORM_SECS seconds (default 10; `make stress` runs longer).
/// Every item of every call ends with exactly one status, its own or POOL_ECRASHED (a kill);
/// good items have the right result; no item starts twice; nothing hangs; afterwards a map
/// runs clean (no innocent item fails) and nothing is left behind.
#[test]
fn random_kill_storm() {
    let _g = SERIAL.lock().unwrap();
    kill_storm(None);
}

/// The same storm on a sandboxed pool (`POOL_SANDBOX_COMPUTE`): confinement changes nothing
/// about crash consistency.
#[test]
fn random_kill_storm_sandboxed() {
    let _g = SERIAL.lock().unwrap();
    if let Err(e) = Pool::new(1, Options { sandbox: Some(Default::default()), ..Options::default() }) {
        assert_eq!(e.status, Status::Sys, "{e}");
        eprintln!("note: no sandbox on this system ({e}); the sandboxed storm is skipped");
        return;
    }
    kill_storm(Some(Default::default()));
}

fn kill_storm(sandbox: Option<pool::core::SandboxPolicy>) {
    let secs: u64 = std::env::var("POOL_STORM_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let me = std::process::id() as i32;
    let (fds, maps) = (fd_count(), shm_mappings());
    let counts = shared_counters(STORM_N);
    STORM_COUNTS.store(counts.as_ptr() as usize, Ordering::Relaxed);
    let apply_counts = shared_counters(APPLY_N);
    let sandboxed = sandbox.is_some();
    let opts = Options { task_timeout: Some(Duration::from_secs(1)), sandbox, ..Options::default() };
    let p = Pool::new(3, opts).unwrap_or_else(|e| panic!("{e}"));
    let zygote = children_of(me)[0];
    let stop = AtomicBool::new(false);
    let (mut rounds, mut items, mut kills, mut changed) = (0u64, 0u64, 0u64, 0u64);
    std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let (mut killed, mut seed) = (0u64, 0x2545_F491_4F6C_DD1Du64);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
                // In a sandboxed pool, the workers' executors (where tasks run) too.
                let mut ws = workers_of(zygote);
                if sandboxed {
                    let execs: Vec<i32> = ws.iter().flat_map(|&w| workers_of(w)).collect();
                    ws.extend(execs);
                }
                if ws.is_empty() {
                    continue;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                unsafe { libc::kill(ws[seed as usize % ws.len()], libc::SIGKILL) };
                killed += 1;
            }
            killed
        });
        let applier = s.spawn(|| {
            let mut k = 0i64;
            while !stop.load(Ordering::SeqCst) && (k as usize) < APPLY_N {
                let x = k;
                let mut y = -1i64;
                let ctx = apply_counts.as_ptr() as usize;
                let a = unsafe {
                    p.apply_async(storm_task, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, ctx)
                };
                let o = a.unwrap().wait(Some(Duration::from_secs(120))).expect("an apply hung");
                let want = match storm_kind(x) {
                    0 => Status::Ok,
                    1 => Status::Task,
                    2 => Status::Crashed,
                    _ => Status::TimedOut,
                };
                assert!(o.status() == want || o.status() == Status::Crashed, "apply {x}: {:?}", o.err);
                if o.status() == Status::Ok {
                    assert_eq!(y, 3 * x);
                }
                k += 1;
            }
            assert!(apply_counts.iter().all(|c| c.load(Ordering::SeqCst) <= 1), "an apply started twice");
        });
        // Stops the killer and the applier however this thread leaves the scope: a failed
        // check below must fail the test, not leave the killer running forever.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stopper = StopOnDrop(&stop);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            counts.iter().for_each(|c| c.store(0, Ordering::SeqCst));
            let base = rounds as i64 * STORM_N as i64;
            let xs: Vec<i64> = (base..base + STORM_N as i64).collect();
            let mut ys = vec![-1i64; STORM_N];
            let mut st = vec![-1i32; STORM_N];
            let a = MapArgs {
                statuses: st.as_mut_ptr() as usize,
                ..map_args(storm_task, &xs, &mut ys, counts.as_ptr() as usize, 16)
            };
            let r = unsafe { p.map_async(a) }.unwrap();
            r.wait(Some(Duration::from_secs(60))).expect("a map hung in the storm");
            for (i, &x) in xs.iter().enumerate() {
                let runs = counts[i].load(Ordering::SeqCst);
                assert!(runs <= 1, "round {rounds}: item {x} started {runs} times");
                let want = match storm_kind(x) {
                    0 => Status::Ok,
                    1 => Status::Task,
                    2 => Status::Crashed,
                    _ => Status::TimedOut,
                };
                let got = Status::of(st[i]).unwrap_or_else(|| panic!("round {rounds}: item {x} has no status"));
                if got != want {
                    assert_eq!(got, Status::Crashed, "round {rounds}: item {x} ended {got:?}, expected {want:?}");
                    changed += 1;
                }
                if got == Status::Ok {
                    assert_eq!(ys[i], 3 * x, "round {rounds}: item {x} OK with a wrong result");
                }
            }
            rounds += 1;
            items += STORM_N as u64;
        }
        drop(stopper);
        kills = killer.join().unwrap();
        applier.join().unwrap();
    });
    assert!(changed <= kills, "{changed} items changed by {kills} kills");
    // After the storm: no innocent item fails.
    let xs: Vec<i64> = (0..STORM_N as i64).filter(|&x| storm_kind(x) == 0).collect();
    let mut ys = vec![0i64; xs.len()];
    let mut st = vec![-1i32; xs.len()];
    let a = MapArgs {
        statuses: st.as_mut_ptr() as usize,
        ..map_args(storm_task, &xs, &mut ys, counts.as_ptr() as usize, 0)
    };
    unsafe { p.map(a) }.unwrap_or_else(|e| panic!("a clean map after the storm failed: {e} ({st:?})"));
    drop(p);
    eprintln!(
        "kill storm{}: {secs} s, {rounds} maps, {items} items, {kills} workers killed, {changed} items crashed by a kill",
        if sandboxed { " (sandboxed pool)" } else { "" }
    );
    assert_eq!(children_of(me), Vec::<i32>::new(), "processes left behind");
    assert_eq!(fd_count(), fds, "descriptors leaked");
    assert_eq!(shm_mappings(), maps, "shared memory left mapped");
}
