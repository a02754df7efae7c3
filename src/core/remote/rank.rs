//! A rank other than the root: runs the tasks it is sent in a local pool of its own and sends
//! back how each ended, until the root's pool is gone.

use super::wire::{self, Failure, Reader, Writer};
use super::{hostname, Backoff, Transport};
use crate::core::error::{Error, Result, Status};
use crate::core::pool::{Options, Pool, Shared, Submitted, TaskSpec};
use crate::core::shm::*;
use crate::sys::dl;
use std::collections::HashMap;
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
    let pool = Pool::new(workers, opts);
    let mut hello = Writer::default();
    hello.u32(wire::VERSION);
    match &pool {
        Ok(p) => hello.i32(0).u32(p.workers() as u32),
        Err(e) => hello.i32(e.status as i32).u32(0),
    };
    hello.u64(dl::program_hash()).str(&hostname()).str(pool.as_ref().err().map_or("", |e| e.msg.as_str()));
    let sent = t.send(root, wire::HELLO, &hello.0).map_err(|e| Error::sys("sending to the root rank", e));
    let welcome = sent.and_then(|_| wait_for(&mut *t, wire::WELCOME));
    let verdict = welcome.and_then(|msg| {
        let mut r = Reader(&msg);
        let bad = || Error::new(Status::Sys, "a malformed answer from the root rank");
        let (status, text) = (r.i32().map_err(|_| bad())?, r.str().map_err(|_| bad())?);
        if status == 0 {
            Ok(())
        } else {
            Err(Error::new(Status::from_i32(status), text))
        }
    });
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
            match Pool::new(workers, opts) {
                Ok(p) => {
                    s.sh = Some(p.shared().clone());
                    pool = Some(p);
                }
                Err(_) => retry_at = Instant::now() + Duration::from_secs(1),
            }
        }
        while let Ok(Some((from, tag, msg))) = t.try_recv() {
            busy = true;
            if from != root {
                continue;
            }
            match tag {
                wire::TASK => {
                    if let Some(reply) = s.start(&msg) {
                        let _ = t.send(root, wire::RESULT, &reply);
                    }
                }
                wire::CANCEL => s.cancel(&msg),
                wire::STOP => stopping = true,
                _ => {}
            }
            if stopping {
                break;
            }
        }
        for reply in s.finished() {
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

    /// Submits a TASK to the local pool; a reply at once if it cannot run here.
    fn start(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let mut r = Reader(msg);
        let id = r.u64().ok()?;
        let fail = |n: u64, status: Status, why: String| {
            let fails: Vec<Failure> = (0..n.max(1))
                .map(|i| Failure { item: i, status: status as i32, msg: why.clone(), ..Failure::default() })
                .collect();
            Some(result(id, &fails, 0, &[]))
        };
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
        let spec = TaskSpec {
            kind,
            map_chunk: false,
            func,
            ctx: ctx.0,
            ctx_size: ctx.1,
            n: if kind == K_VAR { 1 } else { n as usize },
            in_size: isz as usize,
            out_size: osz as usize,
            timeout: (timeout != 0).then(|| Duration::from_nanos(timeout)),
            shm_in: None,
            shm_out: None,
        };
        let want = if kind == K_VAR { isz as usize } else { (n * isz) as usize };
        if input.len() != want || !matches!(kind, K_ITEMS | K_VAR) {
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
        match sh.submit(spec, None, |dst| {
            // SAFETY: the block's input area holds n * in_size bytes (in_size for K_VAR).
            unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), dst, input.len()) };
            count
        }) {
            Ok(sub) => {
                self.tasks.insert(id, Mirror { sub, kind, osz: osz as usize });
                None
            }
            Err(e) => fail(n, e.status, e.msg),
        }
    }

    fn cancel(&mut self, msg: &[u8]) {
        if let (Some(m), Some(sh)) = (Reader(msg).u64().ok().and_then(|id| self.tasks.get(&id)), &self.sh) {
            sh.cancel_task(m.sub.slot);
        }
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

fn result(id: u64, fails: &[Failure], pid: i32, out: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(id).u32(fails.len() as u32);
    for f in fails {
        f.write(&mut w);
    }
    w.i32(pid).bytes(out);
    w.0
}
