//! A rank other than the root: runs the tasks it is sent in a local pool of its own and sends
//! back how each ended, until the root's pool is gone.

use super::wire::{self, Failure, Reader, Writer};
use super::{hostname, Backoff, Transport};
use crate::core::error::{Error, Result, Status};
use crate::core::pool::{Options, Pool, Shared, Submitted, TaskSpec};
use crate::core::shm::*;
use crate::sys::dl;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A task of the root's, running here.
struct Mirror {
    sub: Submitted,
    kind: u32,
    osz: usize,
}

/// Serves the root: creates the local pool, says HELLO, and runs what it is sent until STOP.
/// Ok once the root's pool is gone; an error if this rank or another could not start.
pub fn serve(mut t: Box<dyn Transport>, workers: i32, opts: Options) -> Result<()> {
    let root = t.root();
    // Deadlines come with each task (the root's); this pool must not add its own.
    let opts = Options { task_timeout: None, ..opts };
    let pool = Pool::new(workers, opts.clone());
    let verdict = handshake(&mut *t, pool.as_ref().map(|p| p.workers()));
    let pool = match (pool, verdict) {
        (Ok(p), Ok(())) => p,
        (Err(e), _) | (_, Err(e)) => {
            t.release();
            return Err(e);
        }
    };
    let mut pool = Some(pool);
    let mut s = Server {
        sh: pool.as_ref().map(|p| p.shared().clone()),
        tasks: HashMap::new(),
        backlog: VecDeque::new(),
        funcs: HashMap::new(),
        gen: (0, 0),
    };
    let mut idle = Backoff::new();
    let mut stopping = false;
    let mut retry_at = Instant::now();
    while !stopping {
        let mut busy = false;
        // A local pool that ended (its zygote killed from outside) fails what it held; once
        // that is answered, a new one takes its place: the rank carries on.
        if let Some(sh) = &s.sh {
            sh.watchdog_now_and_then();
            if sh.is_terminated() && s.tasks.is_empty() {
                s.sh = None;
                pool = None;
            }
        }
        if pool.is_none() && Instant::now() >= retry_at {
            match Pool::new(workers, opts.clone()) {
                Ok(p) => {
                    s.sh = Some(p.shared().clone());
                    pool = Some(p);
                }
                Err(_) => retry_at = Instant::now() + Duration::from_secs(1),
            }
        }
        loop {
            let (from, tag, msg) = match t.try_recv() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                // MPI's default is to end the job on a communication error; a transport that
                // reports one instead ends this rank's part (the root's calls see the job end).
                Err(e) => return Err(Error::sys("receiving from the root rank", e)),
            };
            busy = true;
            if from != root {
                continue;
            }
            match tag {
                wire::TASK => {
                    if let Some(reply) = s.take(msg) {
                        let _ = t.send(root, wire::RESULT, &reply);
                    }
                }
                wire::CANCEL => {
                    if let Some(reply) = s.cancel(&msg) {
                        let _ = t.send(root, wire::RESULT, &reply);
                    }
                }
                wire::STOP => stopping = true,
                _ => {}
            }
            if stopping {
                break;
            }
        }
        for reply in s.finished().into_iter().chain(s.retry()) {
            busy = true;
            let _ = t.send(root, wire::RESULT, &reply);
        }
        if busy {
            idle.reset();
        } else {
            idle.idle();
        }
    }
    drop(s);
    drop(pool); // terminates what still runs: the root no longer waits for it
    let _ = t.send(root, wire::BYE, &[]);
    t.release();
    Ok(())
}

/// Says HELLO (this rank's workers, or why it could not start) and waits for the root's
/// verdict: Ok to serve, or the error that fails every rank.
pub(super) fn handshake(t: &mut dyn Transport, local: std::result::Result<usize, &Error>) -> Result<()> {
    let mut hello = Writer::default();
    hello.u32(wire::VERSION);
    match local {
        Ok(workers) => hello.i32(0).u32(workers as u32),
        Err(e) => hello.i32(e.status as i32).u32(0),
    };
    hello.u64(dl::program_hash()).str(&hostname()).str(local.err().map_or("", |e| e.msg.as_str()));
    t.send(t.root(), wire::HELLO, &hello.0).map_err(|e| Error::sys("sending to the root rank", e))?;
    let msg = wait_for(t, wire::WELCOME)?;
    let mut r = Reader(&msg);
    let bad = || Error::new(Status::Sys, "a malformed answer from the root rank");
    let (status, text) = (r.i32().map_err(|_| bad())?, r.str().map_err(|_| bad())?);
    if status == 0 {
        Ok(())
    } else {
        Err(Error::new(Status::from_i32(status), text))
    }
}

/// Waits for one message with `tag` from the root (others are dropped: none can come yet).
fn wait_for(t: &mut dyn Transport, tag: i32) -> Result<Vec<u8>> {
    let mut idle = Backoff::new();
    loop {
        match t.try_recv() {
            Ok(Some((from, got, msg))) if from == t.root() && got == tag => return Ok(msg),
            Ok(Some(_)) => {}
            Ok(None) => idle.idle(),
            Err(e) => return Err(Error::sys("receiving from the root rank", e)),
        }
    }
}

struct Server {
    /// The local pool (None while it cannot be replaced: tasks then fail at once).
    sh: Option<Arc<Shared>>,
    tasks: HashMap<u64, Mirror>,
    /// TASKs waiting for room in the local pool, in arrival order.
    backlog: VecDeque<Vec<u8>>,
    funcs: HashMap<dl::Ref, Option<usize>>,
    gen: (u64, u64),
}

impl Server {
    fn func(&mut self, r: &dl::Ref) -> Option<usize> {
        let g = dl::generation();
        if g != self.gen {
            self.funcs.clear();
            self.gen = g;
        }
        *self.funcs.entry(r.clone()).or_insert_with(|| dl::resolve(r, true))
    }

    /// Starts a TASK, or queues it here while the local pool has no room for it yet (its
    /// memory is freed as the tasks before it are answered: this thread must not wait for it).
    /// A reply at once if it cannot run here.
    fn take(&mut self, msg: Vec<u8>) -> Option<Vec<u8>> {
        if !self.backlog.is_empty() {
            self.backlog.push_back(msg);
            return None;
        }
        match self.start(&msg) {
            Started::Running => None,
            Started::Reply(r) => Some(r),
            Started::Later => {
                self.backlog.push_back(msg);
                None
            }
        }
    }

    /// Starts what waited for room, in order; the replies of those that cannot run.
    fn retry(&mut self) -> Vec<Vec<u8>> {
        let mut replies = Vec::new();
        while let Some(msg) = self.backlog.pop_front() {
            match self.start(&msg) {
                Started::Running => {}
                Started::Reply(r) => replies.push(r),
                Started::Later => {
                    self.backlog.push_front(msg);
                    break;
                }
            }
        }
        replies
    }

    /// Submits a TASK to the local pool.
    fn start(&mut self, msg: &[u8]) -> Started {
        let mut r = Reader(msg);
        let Ok(id) = r.u64() else { return Started::Running }; // nothing to answer
        let fail = |n: u64, status: Status, why: String| Started::Reply(failed(id, n, status, &why));
        let Ok((kind, n, isz, osz, timeout, fref)) =
            (|| Ok::<_, wire::Malformed>((r.u32()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.reference()?)))()
        else {
            return fail(1, Status::Sys, "a malformed task".into());
        };
        let Some(func) = self.func(&fref) else {
            return fail(
                n,
                Status::Inval,
                "the task's function is not loaded here (a plugin the root loaded and this rank did not?)".into(),
            );
        };
        let ctx = match r.u32() {
            Ok(wire::CTX_NULL) => (0, 0),
            Ok(wire::CTX_BYTES) => match r.bytes() {
                Ok(b) => (b.as_ptr() as usize, b.len()),
                Err(_) => return fail(n, Status::Sys, "a malformed task".into()),
            },
            Ok(wire::CTX_STATIC) => match r.reference().ok().and_then(|c| dl::resolve(&c, false)) {
                Some(a) => (a, 0),
                None => return fail(n, Status::Inval, "the task's ctx is in static data not loaded here".into()),
            },
            _ => return fail(n, Status::Sys, "a malformed task".into()),
        };
        let Ok(input) = r.bytes() else { return fail(n, Status::Sys, "a malformed task".into()) };
        let span = match kind {
            K_BLOCK => match (r.u64(), r.u64()) {
                (Ok(first), Ok(count)) => (first, count),
                _ => return fail(n, Status::Sys, "a malformed task".into()),
            },
            _ => (0, 0),
        };
        let spec = TaskSpec {
            kind,
            map_chunk: false,
            func,
            ctx: ctx.0,
            ctx_size: ctx.1,
            ctx_checked: true,
            n: if kind == K_VAR { 1 } else { n as usize },
            in_size: isz as usize,
            out_size: osz as usize,
            timeout: (timeout != 0).then(|| Duration::from_nanos(timeout)),
            shm_in: None,
            shm_out: None,
            span,
        };
        let want = if kind == K_VAR { isz as usize } else { (n * isz) as usize };
        if input.len() != want || !matches!(kind, K_ITEMS | K_VAR | K_BLOCK) {
            return fail(n, Status::Sys, "a malformed task".into());
        }
        let count = spec.n;
        let Some(sh) = &self.sh else {
            return fail(
                n,
                Status::Closed,
                "this rank could not start a new local pool after its last one ended".into(),
            );
        };
        let out_total = if kind == K_VAR { osz } else { n.saturating_mul(osz) } as usize;
        let fits = input.len().saturating_add(out_total) <= sh.heap.capacity();
        match sh.submit(spec, Some(Instant::now()), |dst| {
            // SAFETY: the block's input area holds n * in_size bytes (in_size for K_VAR).
            unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), dst, input.len()) };
            count
        }) {
            Ok(sub) => {
                self.tasks.insert(id, Mirror { sub, kind, osz: osz as usize });
                Started::Running
            }
            // No room yet: what runs here frees it as it is answered.
            Err(e) if matches!(e.status, Status::TimedOut | Status::NoMem) && fits && !self.tasks.is_empty() => {
                Started::Later
            }
            Err(e) => fail(n, e.status, e.msg),
        }
    }

    /// Cancels a task: running here, or still waiting for room (answered at once).
    fn cancel(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let id = Reader(msg).u64().ok()?;
        if let (Some(m), Some(sh)) = (self.tasks.get(&id), &self.sh) {
            sh.cancel_task(m.sub.slot);
            return None;
        }
        let at = self.backlog.iter().position(|m| Reader(m).u64().ok() == Some(id))?;
        let m = self.backlog.remove(at)?;
        let n = {
            let mut r = Reader(&m[8..]);
            let _ = r.u32();
            r.u64().unwrap_or(1)
        };
        Some(failed(id, n, Status::Cancelled, ""))
    }

    /// The replies of the tasks that ended since last time; their slots are freed.
    fn finished(&mut self) -> Vec<Vec<u8>> {
        let Some(sh) = self.sh.clone() else { return Vec::new() };
        let done: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, m)| matches!(sh.task_state(m.sub.slot), T_DONE | T_CLOSED))
            .map(|(&id, _)| id)
            .collect();
        let mut replies = Vec::new();
        for id in done {
            let m = self.tasks.remove(&id).expect("listed above");
            let (slot, n) = (m.sub.slot, m.sub.n);
            let t = sh.view.task(slot);
            let closed = sh.task_state(slot) == T_CLOSED;
            let mut fails: Vec<Failure> = sh
                .view
                .failures(t)
                .iter()
                .filter(|r| r.item < n as u64)
                .map(|r| Failure {
                    item: r.item,
                    status: r.status,
                    code: r.code,
                    pid: r.pid,
                    wstatus: r.wstatus,
                    msg: sh.view.message(m.sub.msgs, n, r).unwrap_or_default(),
                })
                .collect();
            if closed {
                let from = t.next.load(Acquire).min(n as u64);
                for i in from..n as u64 {
                    if fails.last().is_none_or(|f| f.item < i) {
                        let r = sh.unrun(slot, i);
                        let msg = if r.status == Status::Closed as i32 {
                            "the local pool of this rank ended (its zygote died) before the task finished; the rank goes on with a new pool".into()
                        } else {
                            String::new()
                        };
                        fails.push(Failure { item: i, status: r.status, msg, ..Failure::default() });
                    }
                }
            }
            let out_len = if m.kind == K_VAR { (t.out_len.load(Acquire) as usize).min(m.osz) } else { n * m.osz };
            // SAFETY: the output area of a task that has ended: final, and ours until freed below.
            let out = unsafe { std::slice::from_raw_parts(sh.view.heap_ptr(m.sub.out_off), out_len) };
            replies.push(result(id, &fails, t.pid.load(Relaxed), out));
            sh.free_block(m.sub.block);
            sh.free_slot(slot);
        }
        replies
    }
}

/// What became of a TASK.
enum Started {
    Running,
    /// Answered at once (it cannot run here).
    Reply(Vec<u8>),
    /// No room in the local pool yet: try again once answered tasks freed some.
    Later,
}

/// A RESULT failing items `0..n` of task `id`.
fn failed(id: u64, n: u64, status: Status, why: &str) -> Vec<u8> {
    let fails: Vec<Failure> = (0..n.max(1))
        .map(|i| Failure { item: i, status: status as i32, msg: why.into(), ..Failure::default() })
        .collect();
    result(id, &fails, 0, &[])
}

fn result(id: u64, fails: &[Failure], pid: i32, out: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(id).u32(fails.len() as u32);
    for f in fails {
        f.write(&mut w);
    }
    w.i32(pid).bytes(out);
    w.0
}
