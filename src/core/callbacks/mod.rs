//! Completion callbacks: one thread per pool, started on first use, calls them one at a time
//! as results become ready. Between callbacks it sleeps on the event words of its results'
//! pools and on a word of its own that a new registration or the pool's end bumps (`wake.rs`).

mod gate;

pub use gate::Gate;

use super::error::Error;
use super::job::{AsyncResult, Outcome};
use super::pool::Shared;
use super::wake::{self, wait_until, Kick};
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, Weak};

thread_local! {
    /// True on callback threads (of any pool).
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A result that may get a callback: the result and its gate (against its free).
pub trait Watched: Send + Sync + 'static {
    fn result(&self) -> &AsyncResult;
    fn gate(&self) -> &Arc<Gate>;
}

/// What a callback does with the result's outcome, on the callback thread.
pub type Call = Box<dyn FnOnce(&Outcome) + Send>;

struct Pending {
    obj: Weak<dyn Watched>,
    /// The result's gate, held apart from it: this thread holds the result only inside the gate,
    /// so once `Gate::freed` returns it neither collects the result (into the caller's `out`)
    /// nor keeps it alive (which would put off its detach past `pool_async_free`).
    gate: Arc<Gate>,
    call: Call,
}

impl Pending {
    /// Whether the result is ready, or freed (its entry then goes), looked at inside its gate.
    fn ready(&self) -> bool {
        if !self.gate.enter() {
            return true;
        }
        let ready = self.obj.upgrade().is_none_or(|o| o.result().poll().is_some());
        self.gate.leave();
        ready
    }
}

struct Runner {
    tx: Sender<Pending>,
    kick: Arc<Kick>,
    thread: crate::sys::thread::Thread,
}

/// A pool's callback thread, if one was needed yet.
#[derive(Default)]
pub struct Callbacks(Mutex<Option<Runner>>);

impl Callbacks {
    /// Calls `call` once the result `obj` is ready, unless it is freed first.
    pub fn add(&self, obj: Weak<dyn Watched>, call: Call) -> Result<(), Error> {
        let Some(gate) = obj.upgrade().map(|o| o.gate().clone()) else { return Ok(()) }; // gone: no call
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            let (tx, rx) = channel();
            let kick = Arc::new(Kick::default());
            let k = kick.clone();
            let thread = crate::sys::thread::spawn("pool-callbacks", move || run(rx, &k))
                .map_err(|e| Error::sys("starting the callback thread", e))?;
            *r = Some(Runner { tx, kick, thread });
        }
        let r = r.as_ref().expect("started above");
        r.tx.send(Pending { obj, gate, call }).map_err(|_| Error::closed("the pool's callback thread ended"))?;
        r.kick.bump();
        Ok(())
    }
}

impl Drop for Callbacks {
    /// Once the pool is gone its results are final: the thread calls the callbacks left, then
    /// ends. From a callback (of any pool: two pools' callbacks destroying each other's pool
    /// would otherwise wait for each other) it is left to end alone.
    fn drop(&mut self) {
        if let Some(r) = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            drop(r.tx);
            r.kick.bump();
            if !IN_CALLBACK.with(|c| c.get()) {
                r.thread.join();
            } // else dropping the handle leaves it to end alone
        }
    }
}

fn run(rx: Receiver<Pending>, kick: &Kick) {
    IN_CALLBACK.with(|c| c.set(true));
    let mut pending: Vec<Pending> = Vec::new();
    let mut open = true;
    loop {
        while open {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        let ran = call_ready(&mut pending);
        if !open && pending.is_empty() {
            return;
        }
        if ran {
            continue; // look again before sleeping: more may have become ready meanwhile
        }
        // Asleep until a result may be ready, or a registration or the pool's end arrives.
        let (pools, tasks) = words_of(&pending);
        let pools: Vec<&Shared> = pools.iter().map(|p| &**p).collect();
        let tasks: Vec<&AtomicU32> = tasks.iter().map(|(sh, slot)| &sh.view.task(*slot).state).collect();
        let mut arrived = Vec::new();
        wait_until(&pools, &tasks, Some(kick), None, || {
            if open {
                match rx.try_recv() {
                    Ok(p) => arrived.push(p),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => open = false,
                }
                if !arrived.is_empty() || !open {
                    return Some(());
                }
            }
            pending.iter().any(Pending::ready).then_some(())
        });
        pending.append(&mut arrived);
    }
}

/// Calls the callbacks of the ready results, in order, and drops them and those of freed
/// results. True if any ended so. Each result is looked at, and its callback run, inside its
/// gate (against `pool_async_free`).
fn call_ready(pending: &mut Vec<Pending>) -> bool {
    let before = pending.len();
    let mut left = Vec::with_capacity(before);
    for p in pending.drain(..) {
        if !p.gate.enter() {
            continue; // freed: no callback
        }
        let obj = p.obj.upgrade();
        let outcome = obj.as_ref().map(|o| o.result().poll());
        match outcome {
            Some(None) => {
                drop(obj);
                p.gate.leave();
                left.push(p);
            }
            Some(Some(o)) => {
                (p.call)(&o);
                drop(obj);
                p.gate.leave();
            }
            None => p.gate.leave(), // gone
        }
    }
    *pending = left;
    pending.len() < before
}

/// A task's slot in its pool.
type TaskSlotRef = (Arc<Shared>, u32);

/// What tells when one of `pending` may have become ready: the task slots of task results
/// (their state words, as `pool_async_get` sleeps on them: no other task's end wakes the thread),
/// and the pools of map results (or of every result, past `TASK_WORDS_MAX` tasks), each once.
/// Owned (the pools' shared state), so the results themselves stay free to be freed meanwhile;
/// read inside their gates.
fn words_of(pending: &[Pending]) -> (Vec<Arc<Shared>>, Vec<TaskSlotRef>) {
    let entered: Vec<&Pending> = pending.iter().filter(|p| p.gate.enter()).collect();
    let live: Vec<Arc<dyn Watched>> = entered.iter().filter_map(|p| p.obj.upgrade()).collect();
    let (pools, tasks) = wake::words_of(live.iter().map(|o| o.result()));
    let words =
        (pools.into_iter().cloned().collect(), tasks.into_iter().map(|(sh, slot)| (sh.clone(), slot)).collect());
    drop(live);
    entered.iter().for_each(|p| p.gate.leave());
    words
}
