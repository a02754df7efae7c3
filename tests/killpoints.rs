//! Kill-point injection (PROTOCOL.md): for every named step of the shared-memory protocol, a
//! process of the pool is killed exactly there, in the middle of a workload that exercises
//! every path (maps with failing and crashing items, applies, a variable-size task, a cancel, a
//! timed-out item that handles SIGTERM and returns, one that ignores it, a wait for whichever
//! result ends first), and the invariants are checked:
//! - every item of every call ends with exactly one valid status; good items have the right
//!   result; no item starts twice; nothing hangs;
//! - a worker killed anywhere changes the outcome of at most the one item it was running (to
//!   POOL_ECRASHED), and the pool keeps working (a fresh map is all OK);
//! - the zygote killed anywhere: every call returns (unfinished work ends POOL_ECLOSED, saying the
//!   zygote died), later calls fail, and no worker survives;
//! - the host killed anywhere (in a child process): its zygote and workers are gone within
//!   seconds;
//! - after each pool: no process, descriptor or shared mapping left.
//!
//! Needs the test-only `killpoints` feature: `cargo test --features killpoints --test killpoints`.
#![cfg(feature = "killpoints")]

mod common;
use common::*;
use pool::core::killpoint::{self, Point, Role};
use pool::core::map::MapFn;
use pool::core::wake::wait_any;
use pool::core::{AsyncResult, MapArgs, Options, Pool, Status};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of item starts, shared with the workers (created before any pool).
fn counters() -> &'static [AtomicU32] {
    static C: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let p = *C.get_or_init(|| shared_counters(N).as_ptr() as usize);
    // SAFETY: a leaked shared mapping of N counters.
    unsafe { std::slice::from_raw_parts(p as *const AtomicU32, N) }
}

const N: usize = 4096;
/// Item ranges of the workload's calls.
const MAP_A: std::ops::Range<i64> = 0..600;
const APPLIES: std::ops::Range<i64> = 1000..1016;
const TIMED: std::ops::Range<i64> = 2000..2004;
/// Sleepers, all cancelled: more than there are workers, so some are cancelled while queued.
const CANCELLED: std::ops::Range<i64> = 3000..3004;
const MAP_C: std::ops::Range<i64> = 3100..3400;
/// A block map, blocks of BLOCK items; the block holding FAILING_BLOCK_ITEM returns nonzero.
const BLOCKS: std::ops::Range<i64> = 3500..3740;
const BLOCK: usize = 16;
const FAILING_BLOCK_ITEM: i64 = 3550;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ok,
    Fail,
    Crash,
    /// Handles SIGTERM and returns when it arrives: must end timed out, and the next item of
    /// its chunk must not be hit by the SIGKILL meant for it.
    TermReturn,
    /// Ignores SIGTERM: killed after the grace period.
    Hang,
    Sleep,
}

fn kind(x: i64) -> Kind {
    match x {
        _ if BLOCKS.contains(&x) && block_of(x) == block_of(FAILING_BLOCK_ITEM) => Kind::Fail,
        2000 => Kind::TermReturn,
        2002 => Kind::Hang,
        _ if CANCELLED.contains(&x) => Kind::Sleep,
        _ if MAP_A.contains(&x) && x % 50 == 45 => Kind::Fail,
        _ if MAP_A.contains(&x) && x % 50 == 46 => Kind::Crash,
        _ => Kind::Ok,
    }
}

fn expected(x: i64) -> Status {
    match kind(x) {
        Kind::Ok => Status::Ok,
        Kind::Fail => Status::Task,
        Kind::Crash => Status::Crashed,
        Kind::TermReturn | Kind::Hang => Status::TimedOut,
        Kind::Sleep => Status::Cancelled,
    }
}

/// Index of the block (of the block map) holding item `x`.
fn block_of(x: i64) -> usize {
    (x - BLOCKS.start) as usize / BLOCK
}

/// The block map's function: each item counted and computed as `probe` does; the failing block
/// returns 7 after running all its items.
unsafe extern "C" fn block_probe(i: *const c_void, o: *mut c_void, count: usize, _: usize, ctx: *mut c_void) -> c_int {
    let mut rc = 0;
    for k in 0..count {
        let x = *(i as *const i64).add(k);
        (*(ctx as *const AtomicU32).add(x as usize)).fetch_add(1, SeqCst);
        if kind(x) == Kind::Fail {
            rc = 7;
        }
        if x % 5 == 0 {
            libc::usleep(100);
        }
        *(o as *mut i64).add(k) = 3 * x;
    }
    rc
}

static TERM: AtomicBool = AtomicBool::new(false);
extern "C" fn on_term(_: c_int) {
    TERM.store(true, SeqCst);
}

unsafe extern "C" fn probe(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    (*(ctx as *const AtomicU32).add(x as usize)).fetch_add(1, SeqCst);
    match kind(x) {
        Kind::Ok => {}
        Kind::Fail => return 7,
        Kind::Crash => {
            libc::raise(libc::SIGSEGV);
        }
        Kind::TermReturn => {
            TERM.store(false, SeqCst);
            libc::signal(libc::SIGTERM, on_term as extern "C" fn(c_int) as libc::sighandler_t);
            while !TERM.load(SeqCst) {
                libc::usleep(1000);
            }
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
        Kind::Hang => {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            loop {
                libc::usleep(1000);
            }
        }
        Kind::Sleep => {
            libc::sleep(30);
        }
    }
    if x % 5 == 0 {
        libc::usleep(100);
    }
    *(o as *mut i64) = 3 * x;
    0
}

unsafe extern "C" fn echo(i: *const c_void, len: usize, _: *mut c_void) -> c_int {
    let data = std::slice::from_raw_parts(i as *const u8, len);
    pool::core::worker::out_write(data).map_or(1, |_| 0)
}

/// One call's items: inputs, outputs, statuses.
struct Items {
    xs: Vec<i64>,
    ys: Vec<i64>,
    st: Vec<i32>,
}

impl Items {
    fn new(r: std::ops::Range<i64>) -> Items {
        let n = r.clone().count();
        Items { xs: r.collect(), ys: vec![-1; n], st: vec![-1; n] }
    }
    fn args(&mut self, chunksize: usize, timeout: Option<Duration>) -> MapArgs {
        MapArgs {
            func: MapFn::Items(probe),
            input: self.xs.as_ptr() as usize,
            in_size: 8,
            out: self.ys.as_mut_ptr() as usize,
            out_size: 8,
            n: self.xs.len(),
            ctx: counters().as_ptr() as usize,
            ctx_size: 0,
            chunksize,
            statuses: self.st.as_mut_ptr() as usize,
            timeout,
            shared_pointers_only: false,
        }
    }
}

/// What the workload saw: per item (x, status, result), and how the run ended.
#[derive(Default)]
struct Report {
    items: Vec<(i64, i32, i64)>,
    /// A call failed with a status other than the items' own (pool gone).
    errors: Vec<String>,
    /// The block map's items, checked block by block.
    blocks: Vec<(i64, i32, i64)>,
}

const HANG_GUARD: Duration = Duration::from_secs(60);

fn wait(r: &AsyncResult) -> Status {
    r.wait(Some(HANG_GUARD)).expect("a call hung").status()
}

/// One `apply_async(probe)` per item of `xs`: (item, where its result goes, its handle, if it
/// was accepted).
fn apply_each(p: &Pool, xs: std::ops::Range<i64>) -> Vec<(i64, Box<i64>, Option<AsyncResult>)> {
    xs.map(|x| {
        let mut y = Box::new(-1i64);
        let ctx = counters().as_ptr() as usize;
        let r =
            unsafe { p.apply_async(probe, &x as *const i64 as *const u8, 8, &mut *y as *mut i64 as *mut u8, 8, ctx) };
        (x, y, r.ok())
    })
    .collect()
}

/// The workload: every path of the protocol, all at once.
fn workload(p: &Pool) -> Report {
    let mut rep = Report::default();
    let mut a = Items::new(MAP_A);
    let ra = unsafe { p.map_async(a.args(8, None)) };
    let mut blocks = Items::new(BLOCKS);
    let rblocks = unsafe { p.map_async(MapArgs { func: MapFn::Blocks(block_probe), ..blocks.args(BLOCK, None) }) };
    let applies = apply_each(p, APPLIES);
    let text: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let var = unsafe { p.submit_var(echo, text.as_ptr(), text.len(), text.len(), 0, Default::default()) }.ok();
    let sleepers = apply_each(p, CANCELLED);
    // Cancel once one sleeper runs: the others run or wait in the queue.
    let t0 = Instant::now();
    let started = || CANCELLED.clone().any(|x| counters()[x as usize].load(SeqCst) != 0);
    let ended = || sleepers.iter().any(|(_, _, r)| r.as_ref().is_none_or(|r| r.poll().is_some()));
    while !started() && !ended() && t0.elapsed() < HANG_GUARD {
        std::thread::sleep(Duration::from_millis(1));
    }
    for (x, y, r) in sleepers.iter().rev() {
        match r {
            Some(r) => {
                r.cancel();
                rep.items.push((*x, wait(r) as i32, **y));
            }
            None => rep.errors.push(format!("sleeper {x} not submitted")),
        }
    }
    // The maps and applies in the order they end, as `pool_async_wait_any` sees them (asleep on
    // the pool's event word, `HostWaiterCounted`).
    let mut left: Vec<&AsyncResult> = [ra.as_ref().ok(), rblocks.as_ref().ok()]
        .into_iter()
        .flatten()
        .chain(applies.iter().filter_map(|(_, _, r)| r.as_ref()))
        .collect();
    while !left.is_empty() {
        match wait_any(&left, Some(HANG_GUARD)) {
            Some(i) => {
                left.remove(i);
            }
            None => {
                rep.errors.push(format!("wait_any: none of {} results ended", left.len()));
                break;
            }
        }
    }
    let mut b = Items::new(TIMED);
    let rb = unsafe { p.map(b.args(2, Some(Duration::from_millis(100)))) };
    let b_refused = match &rb {
        Err(e) if e.status == Status::Closed && b.st.iter().all(|&s| s == -1) => true, // pool already gone
        Err(e) if !matches!(e.status, Status::TimedOut | Status::Crashed | Status::Closed) => {
            rep.errors.push(format!("timed map: {e}"));
            false
        }
        _ => false,
    };
    match ra {
        Ok(r) => {
            wait(&r);
        }
        Err(e) => rep.errors.push(format!("map A: {e}")),
    }
    for (x, y, r) in &applies {
        match r {
            Some(r) => rep.items.push((*x, wait(r) as i32, **y)),
            None => rep.errors.push(format!("apply {x} not submitted")),
        }
    }
    match rblocks {
        Ok(r) => {
            wait(&r);
            rep.blocks.extend(blocks.xs.iter().zip(&blocks.st).zip(&blocks.ys).map(|((&x, &s), &y)| (x, s, y)));
        }
        Err(e) => rep.errors.push(format!("block map: {e}")),
    }
    match &var {
        Some(v) => {
            if wait(v) == Status::Ok {
                assert_eq!(v.var_output().unwrap(), &text[..], "variable-size result");
            }
        }
        None => rep.errors.push("var task not submitted".into()),
    }
    for it in [Some(&a), (!b_refused).then_some(&b)].into_iter().flatten() {
        rep.items.extend(it.xs.iter().zip(&it.st).zip(&it.ys).map(|((&x, &s), &y)| (x, s, y)));
    }
    rep
}

/// Invariants that hold whatever was killed: one valid status per item, right results, no
/// item started twice.
fn check_items(rep: &Report) {
    let c = counters();
    for &(x, s, y) in rep.items.iter().chain(&rep.blocks) {
        let st = Status::of(s).unwrap_or_else(|| panic!("item {x}: no status ({s})"));
        if st == Status::Ok {
            assert_eq!(y, 3 * x, "item {x}: OK with a wrong result");
        }
        let runs = c[x as usize].load(SeqCst);
        assert!(runs <= 1, "item {x} started {runs} times");
    }
}

/// After a worker kill: at most one item's outcome differs from what it does on its own, and
/// only to a crash; the pool keeps working.
fn check_worker_killed(p: &Pool, rep: &Report, what: &str) {
    assert!(rep.errors.is_empty(), "{what}: {:?}", rep.errors);
    check_items(rep);
    // One item, or the items of one block, may have been changed by the kill, to a crash.
    let off: Vec<_> = rep.items.iter().filter(|&&(x, s, _)| s != expected(x) as i32).collect();
    let off_blocks: Vec<_> = rep.blocks.iter().filter(|&&(x, s, _)| s != expected(x) as i32).collect();
    let changed_blocks: std::collections::BTreeSet<usize> = off_blocks.iter().map(|&&(x, ..)| block_of(x)).collect();
    assert!(
        off.len() + changed_blocks.len() <= 1,
        "{what}: more than one item or block changed by one kill: {off:?} {off_blocks:?}"
    );
    for &&(x, s, _) in off.iter().chain(&off_blocks) {
        assert_eq!(s, Status::Crashed as i32, "{what}: item {x} ended {s:?}, expected {:?} or crashed", expected(x));
    }
    if let Some(&b) = changed_blocks.first() {
        let whole =
            rep.blocks.iter().filter(|&&(x, ..)| block_of(x) == b).all(|&(_, s, _)| s == Status::Crashed as i32);
        assert!(whole, "{what}: a killed block must fail as a whole: {off_blocks:?}");
    }
    let mut c = Items::new(MAP_C);
    unsafe { p.map(c.args(0, None)) }.unwrap_or_else(|e| panic!("{what}: the pool does not work after the kill: {e}"));
    assert!(c.xs.iter().zip(&c.ys).all(|(x, y)| *y == 3 * x), "{what}: wrong results after the kill");
}

/// After the zygote was killed: every call returned, items are consistent, the pool is closed.
fn check_zygote_killed(p: &Pool, rep: &Report, what: &str) {
    check_items(rep);
    let mut c = Items::new(MAP_C);
    let e = unsafe { p.map(c.args(0, None)) }.expect_err("the pool must be ended once its zygote died");
    assert_eq!(e.status, Status::Closed, "{what}: {e}");
    assert!(e.msg.contains("zygote"), "{what}: {e}");
}

/// Runs the workload in a fresh pool with `arm` armed, checks, and checks for leftovers.
fn scenario(arm: &[(Point, u64)], check: impl FnOnce(&Pool, &Report, &str)) {
    scenario_with(Options::default(), arm, check)
}

fn scenario_with(opts: Options, arm: &[(Point, u64)], check: impl FnOnce(&Pool, &Report, &str)) {
    let me = std::process::id() as i32;
    let (fds, maps) = (fd_count(), shm_mappings());
    counters().iter().for_each(|c| c.store(0, SeqCst));
    if arm.is_empty() {
        killpoint::disarm();
    } else {
        killpoint::arm(arm);
    }
    let what = format!("{arm:?}{}", if opts.sandbox.is_some() { " (sandboxed)" } else { "" });
    let p = Pool::new(3, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let t0 = Instant::now();
    let rep = workload(&p);
    assert!(t0.elapsed() < HANG_GUARD, "{what}: took {:?}", t0.elapsed());
    check(&p, &rep, &what);
    drop(p);
    assert_eq!(children_of(me), Vec::<i32>::new(), "{what}: processes left behind");
    assert_eq!(fd_count(), fds, "{what}: descriptors leaked");
    assert_eq!(shm_mappings(), maps, "{what}: shared memory left mapped");
}

fn shm_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("memfd:libpool")).count()
}

fn points(role: Role) -> impl Iterator<Item = Point> {
    Point::ALL.iter().copied().filter(move |p| p.role() == role)
}

/// Points passed only after an earlier death: armed together with a worker kill.
fn needs_a_death(p: Point) -> Option<(Point, u64)> {
    (p == Point::ZygoteLockRepaired).then_some((Point::WorkerPopRunning, 4))
}

/// Which hits of a point to kill at: the first, and one later hit if the workload passes it
/// often enough.
fn nths(hits: u64) -> Vec<u64> {
    [1, 5, 40].into_iter().filter(|&n| n == 1 || n <= hits / 2).collect()
}

#[test]
fn every_worker_and_zygote_point() {
    let _g = serial();
    scenario(&[], check_worker_killed);
    let hits: Vec<(Point, u64)> = Point::ALL.iter().map(|&p| (p, killpoint::hits(p))).collect();
    eprintln!("hits in one workload: {hits:?}");
    let mut ran = 0;
    // (Peer points are the IPC objects': tests/killpoints_ipc.rs.)
    for (p, h) in hits.iter().copied().filter(|(p, _)| matches!(p.role(), Role::Worker | Role::Zygote)) {
        let extra = needs_a_death(p);
        assert!(h > 0 || extra.is_some(), "the workload never passes {p:?}");
        for nth in nths(h) {
            let mut arm = vec![(p, nth)];
            arm.extend(extra);
            if p.role() == Role::Worker {
                scenario(&arm, check_worker_killed);
            } else {
                scenario(&arm, check_zygote_killed);
            }
            assert!(nth > 1 || killpoint::fired(p), "{p:?} was never reached with {arm:?}");
            eprintln!(
                "killed at {p:?} (hit {nth}{}): invariants hold",
                if killpoint::fired(p) { "" } else { ", not reached" }
            );
            ran += 1;
        }
    }
    eprintln!("{ran} kill scenarios passed");
}

/// The worker points again in a sandboxed pool (`POOL_SANDBOX_COMPUTE`), with the points of the
/// hand-off between a worker and its executor and the executor's own, at each point's first
/// hit: the sandbox changes how a worker runs, never what its death leaves behind.
#[test]
fn every_worker_point_sandboxed() {
    let _g = serial();
    let sandboxed = || Options { sandbox: Some(Default::default()), ..Options::default() };
    if let Err(e) = Pool::new(1, sandboxed()) {
        assert_eq!(e.status, Status::Sys, "{e}");
        eprintln!("note: no sandbox on this system ({e}); skipped");
        return;
    }
    let mut ran = 0;
    // A worker's own points, its hand-off to its executor, and the executor's.
    for p in points(Role::Worker).chain(points(Role::Sandboxed)).chain(points(Role::Executor)) {
        scenario_with(sandboxed(), &[(p, 1)], check_worker_killed);
        assert!(killpoint::fired(p), "{p:?} was never reached in a sandboxed pool");
        ran += 1;
    }
    eprintln!("{ran} kill scenarios passed in a sandboxed pool");
}

/// The host side: re-runs this test binary as a child that creates a pool, arms a host point
/// and runs the workload; it dies there. Its zygote and workers must be gone soon after.
#[test]
fn every_host_point() {
    let _g = serial();
    // Orphans of the dead host are reparented to us, so we can see (and reap) them.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let me = std::process::id() as i32;
    for p in points(Role::Host) {
        for nth in [1, 2] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "host_child", "--nocapture", "--test-threads=1"])
                .env("POOL_KP_HOST", format!("{p:?}:{nth}"))
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            if nth > 1 && out.status.success() {
                continue; // the workload passed the point only once this time
            }
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGKILL),
                "{p:?} #{nth}: the host child was not killed there: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("host killed at {p:?} (hit {nth})");
            let t0 = Instant::now();
            let gone = wait_until(HANG_GUARD, || {
                while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
                children_of(me).is_empty()
            });
            assert!(gone, "{p:?} #{nth}: processes outlive their dead host: {:?}", children_of(me));
            eprintln!("  its processes were gone after {:.2?}", t0.elapsed());
        }
    }
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
}

/// Not a test on its own: the host process of `every_host_point`.
#[test]
fn host_child() {
    let Ok(spec) = std::env::var("POOL_KP_HOST") else { return };
    let (name, nth) = spec.split_once(':').unwrap();
    let point = *Point::ALL.iter().find(|p| format!("{p:?}") == name).unwrap();
    let _ = counters();
    killpoint::arm(&[(point, nth.parse().unwrap())]);
    let p = Pool::new(3, Options::default()).unwrap();
    let _ = workload(&p);
    let mut c = Items::new(MAP_C);
    let _ = unsafe { p.map(c.args(0, None)) };
    // Still alive: the point was not reached. The parent reports it.
}

/// A worker killed after it finished a task but before it made the pool's event fd readable:
/// the zygote does it instead, so an event loop sleeping on the fd does not miss that result.
#[test]
fn event_fd_after_a_death_between_finish_and_notify() {
    let _g = serial();
    counters().iter().for_each(|c| c.store(0, SeqCst));
    killpoint::arm(&[(Point::WorkerTaskFinished, 1)]);
    let p = Pool::new(1, Options::default()).unwrap();
    let fd = p.event_fd().unwrap();
    let mut r = apply_each(&p, 0..1);
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, HANG_GUARD.as_millis() as i32) };
    killpoint::disarm();
    assert_eq!(ready, 1, "the event fd stayed silent although the task had finished");
    let (_, y, h) = r.pop().unwrap();
    assert_eq!(wait(h.as_ref().unwrap()), Status::Ok);
    assert_eq!(*y, 0);
}
