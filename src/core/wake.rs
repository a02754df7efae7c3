//! Sleeping until one of several results may be ready (`pool_async_wait_any`, the callback
//! thread), instead of polling them: on the event word of each result's pool (`Events::seq`,
//! bumped as tasks end while someone is counted in `any_waiters`, and by a map's driver as the
//! map ends) and on an optional process-local word (`Kick`). One word: a futex wait; several:
//! `futex_waitv`, or on a kernel without it a wait on the first word that looks at the others
//! every `FALLBACK_NAP`. The protocol and why no wake-up is lost: PROTOCOL.md, "Sleeping until
//! a result is ready".

use super::job::AsyncResult;
use super::pool::{Shared, WATCH_SLICE};
use super::queue::spin_until;
use super::shm::{phase, T_CLOSED, T_DONE, WAITER};
use crate::sys::futex;
use std::sync::atomic::{fence, AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a sleeper looks again when the kernel cannot sleep on all its words at once.
const FALLBACK_NAP: Duration = Duration::from_millis(1);

/// A word of this process that sleepers may sleep on beside their pools' words: whoever
/// changes what they wait for (a new callback, the end of the callback thread) bumps it.
#[derive(Default)]
pub(crate) struct Kick {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Kick {
    pub(crate) fn bump(&self) {
        self.seq.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            futex::wake(&self.seq, i32::MAX);
        }
    }
}

/// Counted as a sleeper on each word's counter while alive (uncounted on drop, unwinding
/// included).
struct Counted<'a>(Vec<&'a AtomicU32>);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        for c in &self.0 {
            c.fetch_sub(1, SeqCst);
        }
    }
}

/// Waits until `ready` gives something, at most until `deadline` (None: for ever). `ready` is
/// asked at once, then after every wake-up, and at least every `WATCH_SLICE` while `pools` or
/// `tasks` is not empty (a result's poll is what notices a dead zygote). `ready` must see every
/// change of what it looks at that bumps or wakes one of the words: a task of one of `pools`
/// ending, a map of one of them completing, the end of a task whose state word is in `tasks`
/// (watched with the WAITER bit, as `pool_async_get` does: only its own end wakes the sleeper),
/// or whatever bumps `kick`.
pub(crate) fn wait_until<T>(
    pools: &[&Shared],
    tasks: &[&AtomicU32],
    kick: Option<&Kick>,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    if let Some(x) = ready() {
        return Some(x);
    }
    let start = Instant::now();
    if deadline.is_some_and(|d| start >= d) {
        return None;
    }
    // A short spin, then a few yields (as `View::wait_event`): a result due within microseconds
    // costs no sleep and wake-up.
    let mut got = None;
    if spin_until(Duration::from_micros(2), || {
        got = ready();
        got.is_some()
    }) {
        return got;
    }
    while start.elapsed() < Duration::from_micros(20) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::yield_now();
        if let Some(x) = ready() {
            return Some(x);
        }
    }
    let words: Vec<(&AtomicU32, &AtomicU32)> = kick
        .map(|k| (&k.seq, &k.sleepers))
        .into_iter()
        .chain(pools.iter().map(|p| {
            let e = &p.view.header().events;
            (&e.seq, &e.any_waiters)
        }))
        .collect();
    // Counted first, then each word read, then `ready` asked: a waker that ends something
    // `ready` missed finds us counted and bumps a word after we read it (PROTOCOL.md).
    let _counted = Counted(
        words
            .iter()
            .map(|&(_, c)| {
                c.fetch_add(1, SeqCst);
                c
            })
            .collect(),
    );
    fence(SeqCst);
    kp!(HostWaiterCounted);
    loop {
        let mut seen: Vec<(&AtomicU32, u32)> = tasks.iter().map(|&w| (w, watched(w))).collect();
        seen.extend(words.iter().map(|&(w, _)| (w, w.load(SeqCst))));
        if let Some(x) = ready() {
            return Some(x);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return None;
        }
        let slice = (!pools.is_empty() || !tasks.is_empty()).then(|| now + WATCH_SLICE);
        sleep(&seen, [deadline, slice].into_iter().flatten().min());
    }
}

/// Marks task state word `w` watched unless its task is final: the WAITER bit, which `finish`
/// clears, waking the word (PROTOCOL.md, "Sleeping until a result is ready"). Returns the value
/// to sleep on; a change since (any transition) makes the wait return at once.
fn watched(w: &AtomicU32) -> u32 {
    let mut s = w.load(SeqCst);
    while s & WAITER == 0 && !matches!(phase(s), T_DONE | T_CLOSED) {
        match w.compare_exchange(s, s | WAITER, SeqCst, SeqCst) {
            Ok(_) => return s | WAITER,
            Err(now) => s = now,
        }
    }
    s
}

/// Task results at most this many are watched on their own state words (one futex_waitv
/// takes `futex::WAITV_MAX` words; the rest of a wait's words are its pools' and its own);
/// beyond, the pools' event words, which every task's end bumps while someone is counted.
const TASK_WORDS_MAX: usize = 100;

/// Sleeps until one of the words changes from its value in `seen`, or `until`.
fn sleep(seen: &[(&AtomicU32, u32)], until: Option<Instant>) {
    if let [(w, v)] = seen {
        return futex::wait(w, *v, until);
    }
    if !seen.is_empty() && futex::wait_many(seen, until).is_ok() {
        return;
    }
    // No futex_waitv: sleep on the first word, and look at the others every FALLBACK_NAP.
    #[cfg(test)]
    tests::FALLBACK_NAPS.fetch_add(1, SeqCst);
    let nap = Instant::now() + FALLBACK_NAP;
    let until = until.map_or(nap, |u| u.min(nap));
    match seen.first() {
        Some(&(w, v)) => futex::wait(w, v, Some(until)),
        None => std::thread::sleep(until.saturating_duration_since(Instant::now())),
    }
}

/// The lowest index of a ready result among `rs`, once one is, at most for `timeout` (None:
/// for ever; zero: one look). Sleeps on the event words of the results' pools meanwhile.
pub fn wait_any(rs: &[&AsyncResult], timeout: Option<Duration>) -> Option<usize> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (pools, slots) = words_of(rs.iter().copied());
    let pools: Vec<&Shared> = pools.into_iter().map(|p| &**p).collect();
    let tasks: Vec<&AtomicU32> = slots.iter().map(|&(sh, slot)| &sh.view.task(slot).state).collect();
    wait_until(&pools, &tasks, None, deadline, || rs.iter().position(|r| r.poll().is_some()))
}

/// A task's slot in its pool.
pub(crate) type TaskSlot<'a> = (&'a Arc<Shared>, u32);

/// What to sleep on for `rs`: the task slots of task results (their own state words), and the
/// pools of map results, each pool once. Past `TASK_WORDS_MAX` tasks, or past what one
/// `futex_waitv` takes with the map results' pools and a `Kick`, the tasks' pools instead: a
/// wait over more words than that naps (`sleep`).
pub(crate) fn words_of<'a>(rs: impl Iterator<Item = &'a AsyncResult>) -> (Vec<&'a Arc<Shared>>, Vec<TaskSlot<'a>>) {
    fn add<'a>(pools: &mut Vec<&'a Arc<Shared>>, sh: &'a Arc<Shared>) {
        if !pools.iter().any(|p| Arc::ptr_eq(p, sh)) {
            pools.push(sh);
        }
    }
    let mut pools: Vec<&Arc<Shared>> = Vec::new();
    let mut tasks = Vec::new();
    for r in rs {
        match (r.task_slot(), r.pool()) {
            (Some(t), _) => tasks.push(t),
            (None, Some(sh)) => add(&mut pools, sh),
            (None, None) => {}
        }
    }
    if tasks.len() > TASK_WORDS_MAX || tasks.len() + pools.len() + 1 > futex::WAITV_MAX {
        tasks.drain(..).for_each(|(sh, _)| add(&mut pools, sh));
    }
    (pools, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::callbacks::{Callbacks, Gate, Watched};
    use crate::core::pool::{Options, Pool};
    use crate::core::{Outcome, Status};
    use crate::sys::mem::Mapping;
    use std::os::raw::{c_int, c_void};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    /// Returns once the gate its input points to (in memory shared with the workers) opens.
    unsafe extern "C" fn held(i: *const c_void, _: *mut c_void, _: *mut c_void) -> c_int {
        // SAFETY: the input is the address of a gate in a shared mapping made before the pool.
        let gate = unsafe { &*(*(i as *const usize) as *const AtomicU32) };
        while gate.load(SeqCst) == 0 {
            // SAFETY: plain sleep.
            unsafe { libc::usleep(200) };
        }
        0
    }

    fn apply_held(p: &Pool, gate: &AtomicU32) -> AsyncResult {
        let addr = gate as *const AtomicU32 as usize;
        // SAFETY: the input is copied; there is no output.
        unsafe { p.apply_async(held, &addr as *const usize as *const u8, 8, std::ptr::null_mut(), 0, 0) }.unwrap()
    }

    /// Acts as a kernel without futex_waitv while any is alive. Other tests of this binary may
    /// run meanwhile and then take the fallback too: it is correct, only slower.
    struct NoWaitv;
    impl NoWaitv {
        fn force() -> NoWaitv {
            futex::FORCE_NO_WAITV.fetch_add(1, Relaxed);
            NoWaitv
        }
    }
    impl Drop for NoWaitv {
        fn drop(&mut self) {
            futex::FORCE_NO_WAITV.fetch_sub(1, Relaxed);
        }
    }

    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// Naps taken for want of futex_waitv (by any test of this binary).
    pub(super) static FALLBACK_NAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Opens `gate` once some thread has napped in the fallback since this call: the waiter
    /// sleeps there when its result ends.
    fn open_once_napping(gate: &'static AtomicU32) -> std::thread::JoinHandle<()> {
        let naps = FALLBACK_NAPS.load(SeqCst);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while FALLBACK_NAPS.load(SeqCst) < naps + 2 && t0.elapsed() < HANG_GUARD {
                std::thread::sleep(Duration::from_millis(1));
            }
            gate.store(1, SeqCst);
        })
    }

    /// `n` gates in a shared mapping made now (before the pools), never unmapped.
    fn gates(n: usize) -> &'static [AtomicU32] {
        let m = Box::leak(Box::new(Mapping::new_anon_shared(4096).unwrap()));
        // SAFETY: a fresh zeroed mapping of a page, leaked: alive for the rest of the process.
        unsafe { std::slice::from_raw_parts(m.base() as *const AtomicU32, n) }
    }

    #[test]
    fn without_futex_waitv_a_wait_over_several_pools_sees_each_result() {
        let gates = gates(4);
        let pools: Vec<Pool> = (0..4).map(|_| Pool::new(1, Options::default()).unwrap()).collect();
        let _forced = NoWaitv::force();
        let mut left: Vec<(usize, AsyncResult)> = (0..4).map(|k| (k, apply_held(&pools[k], &gates[k]))).collect();
        // Gate 3 stays shut: at least two pools' words are left to sleep on.
        for g in [2, 0, 1] {
            let opener = open_once_napping(&gates[g]);
            let rs: Vec<&AsyncResult> = left.iter().map(|(_, r)| r).collect();
            let i = wait_any(&rs, Some(HANG_GUARD)).expect("nothing ready after a gate opened");
            assert_eq!(left[i].0, g, "another result than the one of gate {g}");
            left.remove(i);
            opener.join().unwrap();
        }
    }

    struct Handle(AsyncResult, Arc<Gate>);
    impl Watched for Handle {
        fn result(&self) -> &AsyncResult {
            &self.0
        }
        fn gate(&self) -> &Arc<Gate> {
            &self.1
        }
    }

    #[test]
    fn without_futex_waitv_the_callback_thread_sees_results_and_registrations() {
        let gates = gates(2);
        let p = Pool::new(2, Options::default()).unwrap();
        let _forced = NoWaitv::force();
        let cbs = Callbacks::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let hs: Vec<Arc<Handle>> =
            (0..2).map(|k| Arc::new(Handle(apply_held(&p, &gates[k]), Default::default()))).collect();
        for (k, h) in hs.iter().enumerate() {
            let tx = tx.clone();
            let call = move |o: &Outcome| tx.send((k, o.status())).unwrap();
            let weak: std::sync::Weak<Handle> = Arc::downgrade(h);
            cbs.add(weak, Box::new(call)).unwrap();
        }
        for k in [1, 0] {
            let opener = open_once_napping(&gates[k]);
            assert_eq!(rx.recv_timeout(HANG_GUARD), Ok((k, Status::Ok)), "callback {k}");
            opener.join().unwrap();
        }
    }
}
