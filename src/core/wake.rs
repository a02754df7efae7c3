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
use crate::sys::futex;
use std::sync::atomic::{fence, AtomicU32, Ordering::SeqCst};
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
/// asked at once, then after every wake-up, and at least every `WATCH_SLICE` while `pools` is
/// not empty (a result's poll is what notices a dead zygote). `ready` must see every change of
/// what it looks at that bumps one of the words: a task of one of `pools` ending, a map of one
/// of them completing, or whatever bumps `kick`.
pub(crate) fn wait_until<T>(
    pools: &[&Shared],
    kick: Option<&Kick>,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    // A short spin, then a few yields (as `View::wait_event`): a result due within microseconds
    // costs no sleep and wake-up.
    if let Some(x) = ready() {
        return Some(x);
    }
    let start = Instant::now();
    if deadline.is_some_and(|d| start >= d) {
        return None;
    }
    let mut got = None;
    let spin =
        deadline.map_or(Duration::from_micros(2), |d| d.saturating_duration_since(start).min(Duration::from_micros(2)));
    if spin_until(spin, || {
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
        let seen: Vec<(&AtomicU32, u32)> = words.iter().map(|&(w, _)| (w, w.load(SeqCst))).collect();
        if let Some(x) = ready() {
            return Some(x);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return None;
        }
        let slice = (!pools.is_empty()).then(|| now + WATCH_SLICE);
        sleep(&seen, [deadline, slice].into_iter().flatten().min());
    }
}

/// Sleeps until one of the words changes from its value in `seen`, or `until`.
fn sleep(seen: &[(&AtomicU32, u32)], until: Option<Instant>) {
    if let [(w, v)] = seen {
        return futex::wait(w, *v, until);
    }
    if !seen.is_empty() && futex::wait_many(seen, until).is_ok() {
        return;
    }
    // No futex_waitv: sleep on the first word, and look at the others every FALLBACK_NAP.
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
    let mut pools: Vec<&Shared> = Vec::new();
    for sh in rs.iter().filter_map(|r| r.pool()) {
        if !pools.iter().any(|p| std::ptr::eq(*p, &**sh)) {
            pools.push(sh);
        }
    }
    wait_until(&pools, None, deadline, || rs.iter().position(|r| r.poll().is_some()))
}
