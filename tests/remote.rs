//! One pool over several ranks (`core::remote`), with ranks as threads of this process joined
//! by channels instead of MPI: the protocol, the statuses of remote faults, and the ends of a
//! pool, fast and without an MPI installation. (The MPI library is tested under mpirun by
//! tests/mpi/run.sh.)

mod common;
use common::*;
use pool::core::remote::{self, Transport};
use pool::core::{MapArgs, Options, Pool, Status};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::SeqCst};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

type Msg = (usize, i32, Vec<u8>);

struct Loopback {
    rank: usize,
    to: Vec<Sender<Msg>>,
    from: Receiver<Msg>,
}

impl Transport for Loopback {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.to.len()
    }
    fn root(&self) -> usize {
        0
    }
    fn send(&mut self, to: usize, tag: i32, msg: &[u8]) -> std::io::Result<()> {
        self.to[to].send((self.rank, tag, msg.to_vec())).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
    fn try_recv(&mut self) -> std::io::Result<Option<Msg>> {
        Ok(self.from.try_recv().ok())
    }
}

fn loopbacks(n: usize) -> Vec<Loopback> {
    let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| channel()).unzip();
    rx.into_iter().enumerate().map(|(rank, from)| Loopback { rank, to: tx.clone(), from }).collect()
}

/// A root pool with `ranks - 1` serving threads, `w` workers on every rank.
fn cluster(ranks: usize, w: i32, opts: Options) -> (Pool, Vec<std::thread::JoinHandle<pool::core::Result<()>>>) {
    let mut ts = loopbacks(ranks).into_iter();
    let root = ts.next().unwrap();
    let servers = ts
        .map(|t| {
            let opts = opts.clone();
            std::thread::spawn(move || remote::serve(Box::new(t), w, opts))
        })
        .collect();
    (remote::create_root(Box::new(root), w, opts).unwrap(), servers)
}

fn end(p: Pool, servers: Vec<std::thread::JoinHandle<pool::core::Result<()>>>) {
    drop(p);
    for s in servers {
        s.join().unwrap().unwrap();
    }
}

/// Per-item call counters, reached through a global set before any pool exists (so every
/// worker of every rank sees the same mapping): ctx cannot carry a pointer across ranks.
static mut COUNTS: *const AtomicU32 = std::ptr::null();

unsafe extern "C" fn counted(i: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    let x = *(i as *const i64);
    (*COUNTS.add(x as usize)).fetch_add(1, SeqCst);
    faulty(i, o, std::ptr::null_mut())
}

unsafe extern "C" fn pid_slowly(_: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    libc::usleep(20_000);
    *(o as *mut i64) = libc::getpid() as i64;
    0
}

/// Room for the pids of the workers that ran `pid_of_every_rank` (shared, like COUNTS).
const RANKS_SEEN: usize = 4;
static mut SEEN: *const AtomicU32 = std::ptr::null();

/// Records `pid` in the first free one of the `n` slots at `slots`, unless it is there already.
unsafe fn record_pid(slots: *const AtomicU32, n: usize, pid: u32) {
    for k in 0..n {
        let s = &*slots.add(k);
        match s.compare_exchange(0, pid, SeqCst, SeqCst) {
            Ok(_) => return,
            Err(v) if v == pid => return,
            Err(_) => {}
        }
    }
}

/// The distinct pids recorded in the first `n` slots of `slots`.
unsafe fn recorded(slots: *const AtomicU32, n: usize) -> usize {
    (0..n).filter(|&k| (*slots.add(k)).load(SeqCst) != 0).count()
}

/// Writes the worker's pid, once every rank's worker has run one: a worker busy waiting keeps the
/// root sending work to the other ranks (60 s at most), however the machine schedules them.
unsafe extern "C" fn pid_of_every_rank(_: *const c_void, o: *mut c_void, _: *mut c_void) -> c_int {
    record_pid(SEEN, RANKS_SEEN, libc::getpid() as u32);
    wait_until(Duration::from_secs(60), || recorded(SEEN, RANKS_SEEN) == RANKS_SEEN);
    *(o as *mut i64) = libc::getpid() as i64;
    0
}

#[test]
fn map_runs_every_item_once_across_ranks_with_remote_fault_statuses() {
    let n = 3000;
    let counts = shared_counters(n);
    unsafe {
        COUNTS = counts.as_ptr();
        SEEN = shared_counters(RANKS_SEEN).as_ptr();
    }
    let (p, servers) = cluster(4, 1, Options { task_timeout: Some(Duration::from_secs(1)), ..Options::default() });
    assert_eq!(p.workers(), 4);
    let xs: Vec<i64> = (0..n as i64).filter(|x| x % 100 != 16 || *x == 216).collect();
    let mut ys = vec![-1i64; xs.len()];
    let mut st = vec![0i32; xs.len()];
    let mut a = map_args(counted, &xs, &mut ys, 0, 7);
    a.statuses = st.as_mut_ptr() as usize;
    let err = unsafe { p.map(a) }.unwrap_err();
    assert!(err.msg.starts_with("item 13:"), "{err}");
    for (i, &x) in xs.iter().enumerate() {
        assert_eq!(counts[x as usize].load(SeqCst), 1, "item {x} ran {} times", counts[x as usize].load(SeqCst));
        let want = match x % 100 {
            13 | 14 | 17 => Status::Crashed,
            15 => Status::Task,
            16 => Status::TimedOut,
            _ => Status::Ok,
        };
        assert_eq!(st[i], want as i32, "item {x}");
        if want == Status::Ok {
            assert_eq!(ys[i], x * x, "item {x}");
        }
    }
    // Work went to the other ranks too: their workers' pids differ from the root's.
    let mut pids = vec![0i64; 200];
    let ins = vec![0i64; 200];
    let a = map_args_raw(pid_of_every_rank, ins.as_ptr() as usize, pids.as_mut_ptr() as usize, 200, 0, 1);
    // Not the pool's 1 s: the first items wait for the other ranks.
    unsafe { p.map(MapArgs { timeout: Some(Duration::from_secs(120)), ..a }) }.unwrap();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 4, "one worker per rank, all used: {pids:?}");
    end(p, servers);
}

#[test]
fn applies_submits_timeouts_and_cancels_on_remote_ranks() {
    let (p, servers) = cluster(3, 1, Options::default());
    // Many applies at once, so that the other ranks get some.
    let xs: Vec<i64> = (0..300).collect();
    let mut ys = vec![0i64; 300];
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

    // A hang on every rank: each times out alone; messages name the rank when it was remote.
    let hang = 16i64;
    let opts = pool::core::CallOptions { timeout: Some(Duration::from_millis(200)), ..Default::default() };
    let mut outs = [0i64; 6];
    let rs: Vec<_> = outs
        .iter_mut()
        .map(|y| {
            unsafe {
                p.apply_async_ex(faulty, &hang as *const i64 as *const u8, 8, y as *mut i64 as *mut u8, 8, 0, opts)
            }
            .unwrap()
        })
        .collect();
    let mut remote = 0;
    for r in &rs {
        let o = r.wait(Some(Duration::from_secs(60))).expect("a timeout ends the item");
        assert_eq!(o.status(), Status::TimedOut, "{:?}", o.err);
        remote += o.err.unwrap().msg.contains("on rank ") as usize;
    }
    assert!(remote > 0, "some of 6 hangs ran on the other ranks");
    drop(rs);

    // Cancel of work running elsewhere.
    let rs = hangs(&p, 6);
    let t0 = Instant::now();
    for r in &rs {
        r.cancel();
        assert_eq!(r.wait(None).unwrap().status(), Status::Cancelled);
    }
    hang_guard("six cancels across ranks", t0.elapsed(), Duration::from_secs(60));
    drop(rs);

    // Variable-size results.
    let word = b"hello ranks";
    let rs: Vec<_> = (0..20)
        .map(|_| unsafe { p.submit_var(echo, word.as_ptr(), word.len(), 64, 0, Default::default()) }.unwrap())
        .collect();
    for r in &rs {
        assert_eq!(r.wait(None).unwrap().status(), Status::Ok);
        assert_eq!(r.var_output().unwrap(), word);
    }
    drop(rs);
    end(p, servers);
}

unsafe extern "C" fn echo(i: *const c_void, len: usize, _: *mut c_void) -> c_int {
    let s = std::slice::from_raw_parts(i as *const u8, len);
    pool::core::worker::out_write(s).map_or(1, |_| 0)
}

/// Writable static data, unchanged since the pool was created: the root's workers have these
/// bytes, but another rank has a copy of its own.
static WRITABLE_CTX: AtomicI64 = AtomicI64::new(5);

#[test]
fn stale_or_writable_ctx_is_refused_and_close_join_waits_for_remote_work() {
    let (p, servers) = cluster(2, 1, Options::default());
    let xs: Vec<i64> = (0..400).collect();
    let mut ys = vec![0i64; 400];
    // Allocated after the pool was created: no worker anywhere has it, refused at the call.
    let late = Box::new(5i64);
    let e = unsafe { p.map(map_args(pid_slowly_ctx, &xs, &mut ys, &*late as *const i64 as usize, 1)) }.unwrap_err();
    assert_eq!(e.status, Status::Inval, "{e}");
    assert!(e.msg.contains("ctx"), "{e}");
    let mut st = vec![0i32; 400];
    let mut a = map_args(pid_slowly_ctx, &xs, &mut ys, WRITABLE_CTX.as_ptr() as usize, 1);
    a.statuses = st.as_mut_ptr() as usize;
    let _ = unsafe { p.map(a) };
    // Items on the root ran; those sent away were refused.
    assert!(st.contains(&(Status::Inval as i32)), "writable static data cannot cross ranks");
    assert!(st.iter().zip(&ys).all(|(&s, &y)| s == Status::Inval as i32 || (s == Status::Ok as i32 && y == 5)));

    let mut outs = vec![0i64; 50];
    let ins = vec![0i64; 50];
    let r =
        unsafe { p.map_async(map_args_raw(pid_slowly, ins.as_ptr() as usize, outs.as_mut_ptr() as usize, 50, 0, 1)) }
            .unwrap();
    p.close().unwrap();
    p.join().unwrap();
    assert_eq!(r.wait(Some(Duration::ZERO)).unwrap().status(), Status::Ok);
    assert!(outs.iter().all(|&x| x > 0));
    drop(r);
    end(p, servers);
}

unsafe extern "C" fn pid_slowly_ctx(_: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    libc::usleep(2000);
    *(o as *mut i64) = *(ctx as *const i64);
    0
}

/// `n` applies that hang (`faulty` on 16), given 200 ms to start on the ranks.
fn hangs(p: &Pool, n: usize) -> Vec<pool::core::AsyncResult> {
    let hang = 16i64;
    let rs = (0..n)
        .map(|_| {
            unsafe { p.apply_async(faulty, &hang as *const i64 as *const u8, 8, std::ptr::null_mut(), 0, 0) }.unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    rs
}

#[test]
fn terminate_ends_remote_work_and_every_rank_returns() {
    let (p, servers) = cluster(3, 1, Options::default());
    let rs = hangs(&p, 8);
    let t0 = Instant::now();
    p.terminate().unwrap();
    for r in &rs {
        assert_eq!(r.wait(Some(Duration::from_secs(60))).unwrap().status(), Status::Closed);
    }
    drop(rs);
    end(p, servers);
    hang_guard("terminate across ranks", t0.elapsed(), Duration::from_secs(60));
}

/// The pid that ran each block of `block_maps_cross_ranks_with_their_span` (shared, like COUNTS).
static mut BLOCK_PIDS: *const AtomicU32 = std::ptr::null();
const BLOCKS_OF_100: usize = 40;

/// Squares a block of items (each counted); the block holding item 500 fails.
unsafe extern "C" fn square_block(
    i: *const c_void,
    o: *mut c_void,
    count: usize,
    first: usize,
    _: *mut c_void,
) -> c_int {
    let me = libc::getpid() as u32;
    (*BLOCK_PIDS.add(first / 100)).store(me, SeqCst);
    // Until a block has run in another process (60 s at most): a worker busy waiting keeps the
    // root sending blocks to the other ranks, however the machine schedules them.
    let elsewhere = || (0..BLOCKS_OF_100).any(|k| ![0, me].contains(&(*BLOCK_PIDS.add(k)).load(SeqCst)));
    wait_until(Duration::from_secs(60), elsewhere);
    for k in 0..count {
        let x = *(i as *const i64).add(k);
        (*COUNTS.add(x as usize)).fetch_add(1, SeqCst);
        *(o as *mut i64).add(k) = x * x;
    }
    if (first..first + count).contains(&500) {
        return 9;
    }
    0
}

#[test]
fn block_maps_cross_ranks_with_their_span() {
    let n = 100 * BLOCKS_OF_100;
    let counts = shared_counters(n);
    let pids = shared_counters(BLOCKS_OF_100);
    unsafe {
        COUNTS = counts.as_ptr();
        BLOCK_PIDS = pids.as_ptr();
    }
    let (p, servers) = cluster(3, 1, Options::default());
    let xs: Vec<i64> = (0..n as i64).collect();
    let mut ys = vec![-1i64; n];
    let mut st = vec![-1i32; n];
    let a = pool::core::MapArgs {
        func: pool::core::map::MapFn::Blocks(square_block),
        statuses: st.as_mut_ptr() as usize,
        ..map_args(counted, &xs, &mut ys, 0, 100)
    };
    let err = unsafe { p.map(a) }.unwrap_err();
    assert_eq!(err.status, Status::Task);
    assert!(err.msg.starts_with("item 500:"), "{err}");
    for x in 0..n {
        assert_eq!(counts[x].load(SeqCst), 1, "item {x} ran {} times", counts[x].load(SeqCst));
        let want = if (500..600).contains(&x) { Status::Task } else { Status::Ok };
        assert_eq!(st[x], want as i32, "item {x}");
        if want == Status::Ok {
            assert_eq!(ys[x], (x * x) as i64, "item {x}");
        }
    }
    let mut who: Vec<u32> = pids.iter().map(|p| p.load(SeqCst)).collect();
    who.sort();
    who.dedup();
    assert!(who.len() >= 2, "blocks ran on other ranks too (their span crossed the wire): {who:?}");
    end(p, servers);
}

unsafe extern "C" fn init_hangs(_: *mut c_void) {
    loop {
        libc::pause();
    }
}

/// Ranks run their initializers in their own pools: one that never returns on another rank
/// ends at that rank's start_timeout, and creation fails on every rank with POOL_ETIMEDOUT
/// naming the rank, instead of the root waiting for it forever.
#[test]
fn a_rank_whose_initializer_hangs_fails_creation_on_every_rank() {
    let mut ts = loopbacks(2).into_iter();
    let root = ts.next().unwrap();
    let rank = ts.next().unwrap();
    let hung = Options {
        initializer: Some(pool::core::worker::Init::Plain(init_hangs, 0)),
        start_timeout: Some(Duration::from_secs(1)),
        ..Options::default()
    };
    let t0 = Instant::now();
    let server = std::thread::spawn(move || remote::serve(Box::new(rank), 1, hung));
    let err = remote::create_root(Box::new(root), 1, Options::default()).err().expect("creation fails");
    assert_eq!(err.status, Status::TimedOut, "{err}");
    assert!(err.msg.contains("rank 1") && err.msg.contains("start_timeout"), "{err}");
    let err = server.join().unwrap().unwrap_err();
    assert_eq!(err.status, Status::TimedOut, "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(1) && t0.elapsed() < Duration::from_secs(60));
}
