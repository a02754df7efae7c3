//! Kill-point injection for the objects users share between processes (PROTOCOL.md, "Queues,
//! locks, events and their arena"): for every named step of the arena, the queue, the lock and
//! the event, a peer process is killed exactly there while others use the same objects, and the
//! promises are checked:
//! - queue: every message that arrives is whole, arrives once, and in its producer's order; a
//!   killed producer's messages are a prefix of what it meant to send; a killed consumer loses
//!   at most the one message it had taken; nobody is left waiting on a lock;
//! - lock: the protected pair stays equal once the next holder repairs it after
//!   `POOL_EOWNERDEAD`, which is reported once if and only if a holder died holding it;
//! - event: every waiter returns POOL_OK once the event is set, even if its setter died between
//!   setting the flag and waking anyone;
//! - arena: with the objects freed, no block stays taken or half-freed once an allocation
//!   looked for room, and no object is left but the one a creator killed before it returned the
//!   token (that one has no owner to free it, like memory a process allocates and never frees);
//! - nothing hangs, and no process is left.
//!
//! Needs the test-only `killpoints` feature:
//! `cargo test --features killpoints --test killpoints_ipc`.
#![cfg(feature = "killpoints")]

mod common;
use common::*;
use pool::core::ipc::arena;
use pool::core::ipc::channel::{Got, Queue};
use pool::core::ipc::sync::{Event, Lock};
use pool::core::killpoint::{self, Point, Role};
use pool::core::{Process, Status};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

const PRODUCERS: usize = 3;
const MSGS: usize = 150;
const CONSUMERS: usize = 2;
const LOCKERS: usize = 2;
const ROUNDS: usize = 200;
const WAITERS: usize = 3;
const CHURNERS: usize = 2;
const CHURN: usize = 40;
/// A peer that takes longer than this is stuck: the test fails.
const HANG_GUARD: Duration = Duration::from_secs(60);
/// Small, so that churning fills it and allocations defragment.
const IPC_SIZE: &str = "8M";

/// What the peers share with the test: object tokens, and what they saw.
#[repr(C)]
struct Board {
    queue: AtomicU64,
    lock: AtomicU64,
    event: AtomicU64,
    /// Per producer and sequence number: times received.
    received: [[AtomicU32; MSGS]; PRODUCERS],
    corrupt: AtomicU32,
    out_of_order: AtomicU32,
    /// The pair the lock protects, and what lockers saw.
    a: AtomicU64,
    b: AtomicU64,
    owner_dead: AtomicU32,
    rounds_done: AtomicU64,
    waiting: AtomicU32,
    woke_ok: AtomicU32,
    churn_errors: AtomicU32,
}

fn board() -> &'static Board {
    static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let p = *B.get_or_init(|| shared_counters(std::mem::size_of::<Board>().div_ceil(4)).as_ptr() as usize);
    // SAFETY: a leaked, zeroed shared mapping as large as a Board (all atomics: zero is valid).
    unsafe { &*(p as *const Board) }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role2 {
    Producer(usize),
    Consumer,
    Closer,
    Locker,
    Waiter,
    Setter,
    Churner(usize),
}

fn msg(p: usize, seq: usize) -> Vec<u8> {
    let len = 8 + (seq * 7 + p * 3) % 200;
    let mut m = vec![0u8; len];
    m[0..4].copy_from_slice(&(p as u32).to_le_bytes());
    m[4..8].copy_from_slice(&(seq as u32).to_le_bytes());
    for (i, x) in m[8..].iter_mut().enumerate() {
        *x = (i * 13 + seq + p) as u8;
    }
    m
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + HANG_GUARD)
}

fn run(role: Role2) -> c_int {
    let b = board();
    let q = Queue(b.queue.load(SeqCst));
    let l = Lock(b.lock.load(SeqCst));
    let e = Event(b.event.load(SeqCst));
    match role {
        Role2::Producer(p) => {
            for seq in 0..MSGS {
                if q.put(&msg(p, seq), deadline()).is_err() {
                    return 1;
                }
            }
        }
        Role2::Consumer => {
            let mut last = [-1i64; PRODUCERS];
            let mut buf = [0u8; 256];
            loop {
                match q.get(&mut buf, deadline()) {
                    Ok(Got::Message(n)) => {
                        let p = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
                        let seq = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
                        if p >= PRODUCERS || seq >= MSGS || buf[..n] != msg(p, seq)[..] {
                            b.corrupt.fetch_add(1, SeqCst);
                            continue;
                        }
                        if seq as i64 <= last[p] {
                            b.out_of_order.fetch_add(1, SeqCst);
                        }
                        last[p] = seq as i64;
                        b.received[p][seq].fetch_add(1, SeqCst);
                    }
                    Ok(Got::TooLong(_)) => return 2,
                    Err(e) if e.status == Status::Closed => break,
                    Err(_) => return 3,
                }
            }
        }
        Role2::Closer => {
            if q.close().is_err() {
                return 1;
            }
        }
        Role2::Locker => {
            for _ in 0..ROUNDS {
                match l.acquire(deadline()) {
                    Ok(died) => {
                        if died {
                            b.owner_dead.fetch_add(1, SeqCst);
                            b.b.store(b.a.load(SeqCst), SeqCst); // repair
                        }
                    }
                    Err(_) => return 1,
                }
                b.a.fetch_add(1, SeqCst);
                std::hint::spin_loop();
                b.b.fetch_add(1, SeqCst);
                if l.release().is_err() {
                    return 2;
                }
                b.rounds_done.fetch_add(1, SeqCst);
            }
        }
        Role2::Waiter => {
            b.waiting.fetch_add(1, SeqCst);
            if e.wait(deadline()).is_ok() {
                b.woke_ok.fetch_add(1, SeqCst);
            }
        }
        Role2::Setter => {
            let t0 = Instant::now();
            while (b.waiting.load(SeqCst) as usize) < WAITERS && t0.elapsed() < HANG_GUARD {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20)); // most waiters asleep by now (not required)
            if e.set().is_err() {
                return 1;
            }
        }
        Role2::Churner(c) => {
            for i in 0..CHURN {
                let size = 1024 + (i * 7919 + c * 104_729) % (200 << 10);
                let ok = match i % 3 {
                    0 => Queue::create(size).and_then(|q| {
                        let r = q.put(b"x", deadline()).and_then(|_| q.get(&mut [0u8; 4], deadline()));
                        q.free().and(r.map(|_| ()))
                    }),
                    1 => Lock::create().and_then(|l| {
                        let r = l.acquire(deadline()).and_then(|_| l.release());
                        l.free().and(r)
                    }),
                    // (No set: the event points are the setter's.)
                    _ => Event::create().and_then(|e| {
                        let r = match e.wait(Some(Instant::now())) {
                            Err(e) if e.status == Status::TimedOut => Ok(()),
                            r => r,
                        };
                        e.free().and(r)
                    }),
                };
                if ok.is_err() {
                    b.churn_errors.fetch_add(1, SeqCst);
                }
            }
        }
    }
    0
}

unsafe extern "C" fn peer(arg: *mut c_void) -> c_int {
    killpoint::set_role(Role::Peer);
    // SAFETY: `arg` points to the Role2 of this peer, in the parent's memory copied by fork.
    run(unsafe { *(arg as *const Role2) })
}

/// Starts one peer per role; returns them with their roles (kept alive: fork copies them).
fn start(roles: &[Role2]) -> Vec<(Box<Role2>, Process)> {
    roles
        .iter()
        .map(|&r| {
            let mut r = Box::new(r);
            let p = Process::new(peer, &mut *r as *mut Role2 as *mut c_void);
            p.start().unwrap();
            (r, p)
        })
        .collect()
}

/// Waits for the peers; returns the roles of those killed (SIGKILL), failing on any other end.
fn join(peers: Vec<(Box<Role2>, Process)>, what: &str) -> Vec<Role2> {
    let mut killed = Vec::new();
    for (r, p) in peers {
        p.join(Some(HANG_GUARD)).unwrap_or_else(|e| panic!("{what}: {r:?} hung: {e}"));
        match p.exitcode().unwrap() {
            0 => {}
            -9 => killed.push(*r),
            c => panic!("{what}: {r:?} failed with {c}"),
        }
    }
    killed
}

/// One run of every peer at once with `arm` armed; checks every object's promises.
fn scenario(arm: Option<(Point, u64)>) {
    let what = format!("{arm:?}");
    let b = board();
    // SAFETY: the board is plain atomics; no peer runs now.
    unsafe { std::ptr::write_bytes(b as *const Board as *mut Board, 0, 1) };
    let before = arena::get().unwrap().census().unwrap();
    let (q, l, e) = (Queue::create(2048).unwrap(), Lock::create().unwrap(), Event::create().unwrap());
    b.queue.store(q.0, SeqCst);
    b.lock.store(l.0, SeqCst);
    b.event.store(e.0, SeqCst);
    match arm {
        Some(a) => killpoint::arm(&[a]),
        None => killpoint::disarm(),
    }
    let mut roles: Vec<Role2> = (0..PRODUCERS).map(Role2::Producer).collect();
    roles.extend([Role2::Consumer; CONSUMERS]);
    roles.extend([Role2::Locker; LOCKERS]);
    roles.extend([Role2::Waiter; WAITERS]);
    roles.push(Role2::Setter);
    roles.extend((0..CHURNERS).map(Role2::Churner));
    let peers = start(&roles);
    let (producers, rest): (Vec<_>, Vec<_>) = peers.into_iter().partition(|(r, _)| matches!(**r, Role2::Producer(_)));
    let mut killed = join(producers, &what);
    let closer = join(start(&[Role2::Closer]), &what);
    // A closer killed before it set the flag closed nothing: close here. One killed after it set
    // it, before waking anyone: the consumers must notice on their own.
    if !closer.is_empty() && arm.is_none_or(|(p, _)| p != Point::QueueClosed) {
        q.close().unwrap();
    }
    killed.extend(closer);
    let (setter, rest): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(r, _)| **r == Role2::Setter);
    killed.extend(join(setter, &what));
    // A setter killed before it set the flag set nothing: set it here. One killed after has set
    // it: the waiters must notice on their own.
    if !e.is_set().unwrap() {
        e.set().unwrap();
    }
    killed.extend(join(rest, &what));
    assert!(killed.len() <= 1, "{what}: more than one peer died: {killed:?}");
    let killed = killed.first().copied();
    if let Some((p, nth)) = arm {
        assert!(nth > 1 || killpoint::fired(p), "{what}: never reached");
        assert_eq!(killed.is_some(), killpoint::fired(p), "{what}: fired, but no peer died (or the reverse)");
    }

    // Queue: whole, once, in order; only the killed peer's messages may be missing.
    assert_eq!(b.corrupt.load(SeqCst), 0, "{what}: a message arrived damaged");
    assert_eq!(b.out_of_order.load(SeqCst), 0, "{what}: a producer's messages arrived out of order");
    let mut missing = 0;
    for p in 0..PRODUCERS {
        let got: Vec<u32> = b.received[p].iter().map(|c| c.load(SeqCst)).collect();
        assert!(got.iter().all(|&c| c <= 1), "{what}: producer {p}: a message arrived twice");
        if killed == Some(Role2::Producer(p)) {
            let n = got.iter().take_while(|&&c| c == 1).count();
            assert!(got[n..].iter().all(|&c| c == 0), "{what}: killed producer {p}: not a prefix");
        } else {
            missing += got.iter().filter(|&&c| c == 0).count();
        }
    }
    let allowed = usize::from(killed == Some(Role2::Consumer));
    assert!(missing <= allowed, "{what}: {missing} messages lost (killed: {killed:?})");
    let mut buf = [0u8; 256];
    assert!(
        matches!(q.get(&mut buf, Some(Instant::now())), Err(ref e) if e.status == Status::Closed),
        "{what}: the queue is not closed and drained"
    );

    // Lock: taken again, the pair repaired, EOWNERDEAD seen once iff a holder died.
    let died = l.acquire(deadline()).unwrap();
    if died {
        b.owner_dead.fetch_add(1, SeqCst);
        b.b.store(b.a.load(SeqCst), SeqCst);
    }
    l.release().unwrap();
    let (a, bb, done) = (b.a.load(SeqCst), b.b.load(SeqCst), b.rounds_done.load(SeqCst));
    assert_eq!(a, bb, "{what}: the pair the lock protects differs");
    assert!(a == done || a == done + 1, "{what}: {a} increments, {done} rounds done");
    let holder_died =
        killed == Some(Role2::Locker) && (a == done + 1 || arm.is_some_and(|(p, _)| p == Point::LockAcquired));
    assert!(b.owner_dead.load(SeqCst) <= 1, "{what}: EOWNERDEAD reported twice");
    if holder_died {
        assert_eq!(b.owner_dead.load(SeqCst), 1, "{what}: a holder died but nobody was told");
    }

    // Event: every waiter that lived woke with OK.
    let waiters = WAITERS - usize::from(killed == Some(Role2::Waiter));
    assert_eq!(b.woke_ok.load(SeqCst) as usize, waiters, "{what}: waiters did not all wake with OK");

    // Arena: consistent whoever died where; every object freed, nothing left taken or
    // half-freed once an allocation searched.
    let c = arena::get().unwrap().census().unwrap();
    assert!(c.consistent, "{what}: the arena's blocks or free list are inconsistent: {c:?}");
    assert_eq!(b.churn_errors.load(SeqCst), 0, "{what}: a churner's call failed");
    q.free().unwrap();
    l.free().unwrap();
    e.free().unwrap();
    let huge = Queue::create(64 << 20); // never fits: defragments, taking back what it can
    assert!(huge.is_err(), "{what}: 64 MiB fit in an 8 MiB arena");
    let after = arena::get().unwrap().census().unwrap();
    assert!(after.consistent, "{what}: the arena is inconsistent after a defragment: {after:?}");
    assert_eq!(after.pending, 0, "{what}: blocks left taken or half-freed: {after:?}");
    // A churner killed between creating an object and freeing it leaves that one object.
    let leaked = if matches!(killed, Some(Role2::Churner(_))) { 0..=1 } else { 0..=0 };
    assert!(
        leaked.contains(&(after.live - before.live)),
        "{what}: objects left: {after:?} (before: {before:?}, killed: {killed:?})"
    );
}

#[test]
fn every_ipc_point() {
    std::env::set_var("POOL_IPC_SIZE", IPC_SIZE);
    let me = std::process::id() as i32;
    scenario(None);
    let hits: Vec<(Point, u64)> =
        Point::ALL.iter().filter(|p| p.role() == Role::Peer).map(|&p| (p, killpoint::hits(p))).collect();
    eprintln!("hits in one workload: {hits:?}");
    let mut ran = 0;
    for (p, h) in hits {
        assert!(h > 0, "the workload never passes {p:?}");
        for nth in [1, 2, 7, 40].into_iter().filter(|&n| n == 1 || n <= h / 2) {
            scenario(Some((p, nth)));
            eprintln!("killed a peer at {p:?} (hit {nth}): promises hold");
            ran += 1;
        }
    }
    assert_eq!(children_of(me), Vec::<i32>::new(), "processes left behind");
    eprintln!("{ran} IPC kill scenarios passed");
}
