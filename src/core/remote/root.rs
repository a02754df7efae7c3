//! The root rank: its pool, and the runner thread that sends tasks to the other ranks and ends
//! them with what comes back.

use super::wire::{self, Failure, Reader, Writer};
use super::{hostname, Backoff, Transport};
use crate::core::error::{Error, Result, Status};
use crate::core::pool::{Options, Pool, Shared};
use crate::core::shm::*;
use crate::sys::dl;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the root waits for the other ranks to end their pools once its own is destroyed.
const BYE_WAIT: Duration = Duration::from_secs(30);
/// How long a queued task is left to the root's own free workers before it may go elsewhere.
const LOCAL_FIRST: Duration = Duration::from_micros(200);

/// Another rank, as its HELLO described it.
struct Peer {
    rank: usize,
    host: String,
    /// Runner slots (worker slot indices) free for tasks sent to this rank: its credit.
    free: Vec<usize>,
}

/// A task sent to a rank and not back yet.
struct Flight {
    peer: usize,
    w: usize,
    slot: u32,
    epoch: u32,
    /// The first item sent (a task taken back from a dead worker resumes where it stopped).
    first: u64,
    cancel_sent: bool,
}

/// Creates the root's pool: waits for every other rank's HELLO, checks that all run the same
/// program, creates the pool with a runner slot per task in flight, tells every rank whether
/// to go on, and starts the runner. Collective: the other ranks call `serve`.
pub fn create_root(mut t: Box<dyn Transport>, workers: i32, opts: Options) -> Result<Pool> {
    let hellos = gather_hellos(&mut *t);
    let me = dl::program_hash();
    let host = hostname();
    let mut problem = None;
    let mut peers = Vec::new();
    let mut remote_workers = 0;
    for h in &hellos {
        let why = if h.version != wire::VERSION {
            Some(format!(
                "rank {} ({}) speaks libpool wire format {}, rank {} ({host}) format {}: every rank needs the same libpool",
                h.rank,
                h.host,
                h.version,
                t.rank(),
                wire::VERSION
            ))
        } else if h.hash != me {
            Some(format!(
                "rank {} ({}) runs a different program than rank {} ({host}) (the build-ids of the program and the libraries it links differ): every rank must run the same binary",
                h.rank,
                h.host,
                t.rank()
            ))
        } else if h.status != 0 {
            Some(format!("rank {} ({}) could not create its pool: {}", h.rank, h.host, h.error))
        } else {
            None
        };
        if problem.is_none() {
            problem = why.map(|w| (if h.status != 0 { Status::from_i32(h.status) } else { Status::Inval }, w));
        }
        remote_workers += h.workers;
        peers.push(Peer { rank: h.rank, host: h.host.clone(), free: Vec::new() });
    }
    let credits: Vec<usize> = hellos.iter().map(|h| h.workers + 1).collect();
    let pool = match problem {
        Some((s, msg)) => Err(Error::new(s, msg)),
        None => Pool::with_runners(workers, opts, credits.iter().sum(), remote_workers).map_err(|e| {
            Error::new(e.status, format!("rank {} ({host}) could not create its pool: {}", t.rank(), e.msg))
        }),
    };
    let mut w = Writer::default();
    match &pool {
        Ok(_) => w.i32(0).str(""),
        Err(e) => w.i32(e.status as i32).str(&e.msg),
    };
    for p in &peers {
        t.send(p.rank, wire::WELCOME, &w.0).map_err(|e| Error::sys("sending to the other ranks", e))?;
    }
    let mut pool = pool?;
    if peers.is_empty() {
        t.release(); // one rank: a pool like any other
        return Ok(pool);
    }
    let sh = pool.shared().clone();
    let mut next = sh.view.layout().nworkers;
    for (p, c) in peers.iter_mut().zip(credits) {
        p.free = (next..next + c).collect();
        next += c;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let runner = Runner {
        sh,
        t,
        peers,
        flights: HashMap::new(),
        next_id: 0,
        hot: 0,
        funcs: HashMap::new(),
        gen: (0, 0),
        waiting_since: None,
        dead: false,
    };
    let s = stop.clone();
    let thread = crate::sys::thread::spawn("pool-runner", move || runner.run(&s))
        .map_err(|e| Error::sys("starting the runner thread", e))?;
    pool.set_runner(RunnerHandle { stop, thread: Some(thread) });
    Ok(pool)
}

struct Hello {
    rank: usize,
    version: u32,
    status: i32,
    workers: usize,
    hash: u64,
    host: String,
    error: String,
}

/// The root could not take part (`e`): every other rank is told so, once it said HELLO.
pub(super) fn refuse(t: &mut dyn Transport, e: Error) -> Error {
    let _ = gather_hellos(t);
    let e = Error::new(e.status, format!("rank {} ({}) could not create its pool: {}", t.rank(), hostname(), e.msg));
    let mut w = Writer::default();
    w.i32(e.status as i32).str(&e.msg);
    let me = t.rank();
    for r in (0..t.size()).filter(|&r| r != me) {
        let _ = t.send(r, wire::WELCOME, &w.0);
    }
    e
}

fn gather_hellos(t: &mut dyn Transport) -> Vec<Hello> {
    let mut got: Vec<Hello> = Vec::new();
    let mut idle = Backoff::new();
    while got.len() + 1 < t.size() {
        match t.try_recv() {
            Ok(Some((from, wire::HELLO, msg))) if !got.iter().any(|h| h.rank == from) => {
                let mut r = Reader(&msg);
                let h = (|| {
                    Ok::<_, wire::Malformed>(Hello {
                        rank: from,
                        version: r.u32()?,
                        status: r.i32()?,
                        workers: r.u32()? as usize,
                        hash: r.u64()?,
                        host: r.str()?,
                        error: r.str()?,
                    })
                })()
                .unwrap_or(Hello {
                    rank: from,
                    version: 0,
                    status: 0,
                    workers: 0,
                    hash: 0,
                    host: "?".into(),
                    error: String::new(),
                });
                got.push(h);
                idle.reset();
            }
            Ok(_) => idle.idle(),
            Err(_) => idle.idle(),
        }
    }
    got.sort_by_key(|h| h.rank);
    got
}

/// The runner thread of a root pool; stopped (the other ranks told to end) when the pool is
/// dropped.
pub(crate) struct RunnerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<crate::sys::thread::Thread>,
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.join();
        }
    }
}

struct Runner {
    sh: Arc<Shared>,
    t: Box<dyn Transport>,
    peers: Vec<Peer>,
    flights: HashMap<u64, Flight>,
    next_id: u64,
    /// The peer that gets the next task first: the one that answered last, whose worker is
    /// awake (a stream of single calls stays on it; a burst still goes one task per rank per
    /// round, so work spreads).
    hot: usize,
    /// References of the functions sent so far, valid while the set of loaded objects is.
    funcs: HashMap<usize, Option<dl::Ref>>,
    gen: (u64, u64),
    /// Since when the queue has had work this runner left to the root's own workers.
    waiting_since: Option<Instant>,
    /// The transport failed: nothing more is sent.
    dead: bool,
}

impl Runner {
    fn run(mut self, stop: &AtomicBool) {
        let mut idle = Backoff::new();
        while !stop.load(SeqCst) {
            let mut busy = self.receive();
            busy |= self.cancel();
            if !self.sh.is_terminated() && !self.dead {
                busy |= self.dispatch();
            }
            if busy {
                idle.reset();
            } else {
                idle.idle();
            }
        }
        self.stop();
    }

    /// Tells every rank to end and waits (bounded) for them to say they did.
    fn stop(&mut self) {
        let mut left: Vec<usize> = self.peers.iter().map(|p| p.rank).collect();
        for &r in &left {
            let _ = self.t.send(r, wire::STOP, &[]);
        }
        let until = Instant::now() + BYE_WAIT;
        let mut idle = Backoff::new();
        while !left.is_empty() && Instant::now() < until {
            match self.t.try_recv() {
                Ok(Some((from, wire::BYE, _))) => left.retain(|&r| r != from),
                Ok(Some(_)) => {}
                Ok(None) => idle.idle(),
                Err(_) => break,
            }
        }
        self.t.release();
    }

    fn receive(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.t.try_recv() {
                Ok(Some((from, tag, msg))) => {
                    any = true;
                    if tag == wire::RESULT {
                        self.result(from, &msg);
                    }
                }
                Ok(None) => return any,
                Err(e) => {
                    self.broken(&format!("receiving from the other ranks failed: {e}"));
                    return true;
                }
            }
        }
    }

    /// The transport failed (MPI's default is to end the job instead): every task in flight
    /// fails with `POOL_ESYS` and this message, and nothing more is sent; the root's own
    /// workers go on with the rest.
    fn broken(&mut self, why: &str) {
        self.dead = true;
        for (_, f) in std::mem::take(&mut self.flights) {
            let n = self.sh.view.task(f.slot).n.load(Relaxed);
            let fails: Vec<Failure> = (0..n - f.first)
                .map(|i| Failure { item: i, status: Status::Sys as i32, ..Failure::default() })
                .collect();
            self.end_task(f.w, f.slot, Some(f.epoch), f.first, &fails, &[], 0, |_| why.to_string());
            self.peers[f.peer].free.push(f.w);
        }
    }

    /// Sends a CANCEL for every task in flight that was cancelled, or all once the pool ends.
    fn cancel(&mut self) -> bool {
        let ending = self.sh.is_terminated();
        let mut any = false;
        for (&id, f) in self.flights.iter_mut() {
            if !f.cancel_sent && (ending || self.sh.view.task(f.slot).cancelled.load(SeqCst) != 0) {
                f.cancel_sent = true;
                let _ = self.t.send(self.peers[f.peer].rank, wire::CANCEL, &id.to_le_bytes());
                any = true;
            }
        }
        any
    }

    /// Whether one of the root's own workers is free: it takes the next task within
    /// microseconds, faster than any other rank could.
    fn local_worker_free(&self) -> bool {
        let v = self.sh.view;
        (0..v.layout().nworkers)
            .any(|w| v.worker(w).claim.load(Relaxed) == CLAIM_NONE && v.worker(w).pid.load(Relaxed) != 0)
    }

    /// Takes queued tasks into the free runner slots, one rank after another, and sends them.
    /// Work is left to the root's own free workers, unless it waits in the queue for longer
    /// than LOCAL_FIRST (a worker that is starting, stopped or gone).
    fn dispatch(&mut self) -> bool {
        if self.sh.view.queue_empty() {
            self.waiting_since = None;
            return false;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() < LOCAL_FIRST && self.local_worker_free() {
            return false;
        }
        self.waiting_since = None;
        let mut any = false;
        loop {
            let mut sent = false;
            for k in 0..self.peers.len() {
                let p = (self.hot + k) % self.peers.len();
                if self.sh.view.queue_empty() {
                    return any;
                }
                let Some(w) = self.peers[p].free.pop() else { continue };
                match self.sh.view.pop(w) {
                    Some((slot, epoch)) => {
                        self.send_task(p, w, slot, epoch);
                        sent = true;
                        any = true;
                    }
                    None => {
                        self.peers[p].free.push(w);
                        return any;
                    }
                }
            }
            if !sent {
                return any;
            }
        }
    }

    fn func_ref(&mut self, addr: usize) -> Option<dl::Ref> {
        let g = dl::generation();
        if g != self.gen {
            self.funcs.clear();
            self.gen = g;
        }
        self.funcs.entry(addr).or_insert_with(|| dl::reference(addr, true)).clone()
    }

    fn send_task(&mut self, p: usize, w: usize, slot: u32, epoch: u32) {
        let v = self.sh.view;
        let t = v.task(slot);
        let kind = t.kind.load(Relaxed);
        let (n, first) = (t.n.load(Relaxed), t.next.load(Acquire));
        let (isz, osz) = (t.in_size.load(Relaxed), t.out_size.load(Relaxed));
        let func = t.func.load(Relaxed) as usize;
        let Some(fref) = self.func_ref(func) else {
            let msg = format!("the function at {func:#x} is in no loaded object's code: it cannot run on another rank");
            return self.fail_here(p, w, slot, first, Status::Inval, &msg);
        };
        let (ctx, ctx_size) = (t.ctx.load(Relaxed) as usize, t.ctx_size.load(Relaxed) as usize);
        let mut m = Writer::default();
        let id = self.next_id;
        self.next_id += 1;
        let timeout = match t.timeout_ns.load(Relaxed) {
            0 => self.sh.timeout_ns,
            own => own,
        };
        m.u64(id).u32(kind).u64(n - first).u64(isz).u64(osz).u64(timeout).reference(&fref);
        if ctx == 0 {
            m.u32(wire::CTX_NULL);
        } else if ctx_size > 0 {
            // SAFETY: a ctx copied with the task: ctx_size bytes in its block, final once queued.
            m.u32(wire::CTX_BYTES).bytes(unsafe { std::slice::from_raw_parts(ctx as *const u8, ctx_size) });
        } else if let Some(r) = dl::reference(ctx, false) {
            m.u32(wire::CTX_STATIC).reference(&r);
        } else {
            let msg = format!(
                "ctx {ctx:#x} is neither copied (ctx_size) nor constant data of a loaded object (it is on the heap or stack, in pool_shm_alloc memory, or in writable static data, of which each rank has its own copy): it cannot cross to another rank; pass its size (ctx_size) so that it is copied"
            );
            return self.fail_here(p, w, slot, first, Status::Inval, &msg);
        }
        let input_len = if kind == K_VAR { isz } else { (n - first) * isz } as usize;
        let input = v.heap_ptr(t.in_off.load(Relaxed)).wrapping_add((first * isz) as usize * (kind != K_VAR) as usize);
        // SAFETY: the task's inputs, final once it was queued; this runner owns the task now.
        m.bytes(unsafe { std::slice::from_raw_parts(input, input_len) });
        if kind == K_BLOCK {
            m.u64(t.first.load(Relaxed)).u64(t.count.load(Relaxed));
        }
        let rank = self.peers[p].rank;
        if let Err(e) = self.t.send(rank, wire::TASK, &m.0) {
            let msg = format!("sending the task to rank {rank} ({}) failed: {e}", self.peers[p].host);
            return self.fail_here(p, w, slot, first, Status::Sys, &msg);
        }
        self.flights.insert(id, Flight { peer: p, w, slot, epoch, first, cancel_sent: false });
    }

    /// Ends a task this runner took for peer `p` without sending it: every item from `first`
    /// fails with `status` and `msg`.
    fn fail_here(&mut self, p: usize, w: usize, slot: u32, first: u64, status: Status, msg: &str) {
        let n = self.sh.view.task(slot).n.load(Relaxed);
        let fails: Vec<Failure> =
            (0..n - first).map(|i| Failure { item: i, status: status as i32, ..Failure::default() }).collect();
        self.end_task(w, slot, None, first, &fails, &[], 0, |_| msg.to_string());
        self.peers[p].free.push(w);
    }

    fn result(&mut self, from: usize, msg: &[u8]) {
        let mut r = Reader(msg);
        let Ok(id) = r.u64() else { return };
        let Some(f) = self.flights.remove(&id) else { return };
        self.hot = f.peer;
        let peer = &mut self.peers[f.peer];
        peer.free.push(f.w);
        let (rank, host) = (peer.rank, peer.host.clone());
        let parsed = (|| {
            let k = r.u32()?;
            let mut fails = Vec::with_capacity(k.min(1 << 16) as usize);
            for _ in 0..k {
                fails.push(Failure::read(&mut r)?);
            }
            Ok::<_, wire::Malformed>((fails, r.i32()?, r.bytes()?))
        })();
        let (fails, pid, out) = parsed.unwrap_or_else(|_| {
            let all =
                Failure { item: 0, status: Status::Sys as i32, msg: "a malformed result".into(), ..Failure::default() };
            (vec![all], 0, &[][..])
        });
        debug_assert_eq!(from, rank);
        let name = |f: &Failure| {
            if f.msg.is_empty() {
                format!("on rank {rank} ({host})")
            } else {
                format!("on rank {rank} ({host}): {}", f.msg)
            }
        };
        self.end_task(f.w, f.slot, Some(f.epoch), f.first, &fails, out, pid, name);
    }

    /// Ends the task in runner slot `w` as its runner: records, outputs, then DONE, under the
    /// gate (never once the pool's end has closed it).
    #[allow(clippy::too_many_arguments)]
    fn end_task(
        &mut self,
        w: usize,
        slot: u32,
        epoch: Option<u32>,
        first: u64,
        fails: &[Failure],
        out: &[u8],
        pid: i32,
        msg: impl Fn(&Failure) -> String,
    ) {
        let sh = &self.sh;
        let v = sh.view;
        let me = v.worker(w);
        let _gate = sh.runner_gate.lock().unwrap_or_else(|e| e.into_inner());
        let t = v.task(slot);
        let ours = phase(t.state.load(Acquire)) == T_RUNNING
            && t.state.load(Acquire) & !WAITER == running(w)
            && epoch.is_none_or(|e| t.epoch.load(Acquire) == e);
        if ours && !sh.is_terminated() {
            let n = t.n.load(Relaxed);
            let count = n - first;
            let mut last = None;
            for f in fails {
                let status = Status::of(f.status).filter(|&s| s != Status::Ok).unwrap_or(Status::Sys);
                if f.item >= count || last.is_some_and(|l| f.item <= l) {
                    continue; // out of order or range: a malformed result, dropped
                }
                last = Some(f.item);
                let rec = Rec {
                    item: first + f.item,
                    status: status as i32,
                    code: f.code,
                    pid: f.pid,
                    wstatus: f.wstatus,
                    msg: 0,
                };
                v.push_failure(t, rec, Some(msg(f).as_bytes()));
            }
            let kind = t.kind.load(Relaxed);
            let (osz, out_off) = (t.out_size.load(Relaxed) as usize, t.out_off.load(Relaxed));
            let (at, room) = if kind == K_VAR { (0, osz) } else { (first as usize * osz, count as usize * osz) };
            let len = out.len().min(room);
            // SAFETY: the task's output area holds `room` bytes from `at`; its runner (us) is
            // its only writer until it is DONE.
            unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), v.heap_ptr(out_off).add(at), len) };
            if kind == K_VAR {
                t.out_len.store(len as u64, Relaxed);
            }
            t.pid.store(pid, Relaxed);
            me.progress.store(2 * n, Release);
            t.next.store(n, Release);
            v.finish(t, running(w), T_DONE);
            if t.flags.load(Relaxed) & F_NOTIFY == 0 {
                sh.notify_event_fd();
            }
        }
        me.claim.store(CLAIM_NONE, Release);
    }
}
