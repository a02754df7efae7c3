//! The item loop of a task of fixed-size outputs: where outputs go, the per-item steps of
//! PROTOCOL.md (progress mark, cancellation, fork check, deadline handshake), and the ending of
//! the items a cancellation leaves.

use super::outs::{Copied, Direct, NoOut, Outs};
use super::task_calls::{take_task_error, TASK_ERROR_SET};
use super::*;

impl Worker<'_> {
    /// Runs a task of fixed-size outputs, choosing where they are written.
    pub(super) fn run_fixed(
        &mut self,
        t: &TaskSlot,
        r: &TaskRun,
        flags: u32,
        out_off: u64,
        call: impl FnMut(usize, *mut c_void) -> c_int,
    ) {
        let v = self.v;
        let osz = r.osz;
        if osz == 0 {
            self.run_items(t, r, NoOut, call);
        } else if v.in_user_heap(out_off) {
            self.run_items(t, r, Direct { base: v.task_ptr(out_off), osz }, call);
        } else if !self.protected {
            let base = v.heap_ptr(out_off);
            clear_unrun(base, flags, t, r);
            self.run_items(t, r, Direct { base, osz }, call);
        } else if flags & F_WINDOW != 0 {
            let base = self.window_onto(out_off, flags, t, r);
            self.run_items(t, r, Direct { base, osz }, call);
            self.window.unwindow();
        } else {
            let Ok(private) = self.out_area.area(osz) else { proc::exit_now(72) }; // no address space
            let shared = v.heap_ptr(out_off);
            match osz {
                4 => self.run_items(t, r, Copied::<4> { private, shared, osz }, call),
                8 => self.run_items(t, r, Copied::<8> { private, shared, osz }, call),
                16 => self.run_items(t, r, Copied::<16> { private, shared, osz }, call),
                _ => self.run_items(t, r, Copied::<0> { private, shared, osz }, call),
            }
        }
    }

    /// Maps the block's output area between guard pages, read-write, for the task to write
    /// into directly; items not run yet are cleared first if the block was used before.
    fn window_onto(&mut self, out_off: u64, flags: u32, t: &TaskSlot, r: &TaskRun) -> *mut u8 {
        let len = (r.n as usize * r.osz).next_multiple_of(4096);
        let Ok(base) = self.window.window(self.v.heap_ptr(out_off), len) else { proc::exit_now(72) };
        // Fill the window's page tables in one call: a fault per page costs more.
        crate::sys::mem::populate(base, len, true);
        clear_unrun(base, flags, t, r);
        base
    }

    /// Runs items `next..n` of task `t` with `call(i, out)`, each through the steps of
    /// PROTOCOL.md. One store per item marks it started (and the ones before it ended); items
    /// with a deadline also go through the `run` word that timeout kills are decided on.
    pub(super) fn run_items(
        &mut self,
        t: &TaskSlot,
        r: &TaskRun,
        outs: impl Outs,
        call: impl FnMut(usize, *mut c_void) -> c_int,
    ) {
        IN_ITEM.store(true, Relaxed); // only user code runs between now and the end of the loop
        let last =
            if r.timeout != 0 { self.items::<true>(t, r, outs, call) } else { self.items::<false>(t, r, outs, call) };
        IN_ITEM.store(false, Relaxed);
        let me = self.v.worker(self.cfg.index);
        if last.is_none() {
            me.progress.store(2 * r.n, Release);
            t.next.store(r.n, Release);
        }
    }

    /// The item loop, compiled apart for items with and without a deadline. Returns the item
    /// the task was cancelled at, if it was.
    fn items<const TIMED: bool>(
        &mut self,
        t: &TaskSlot,
        r: &TaskRun,
        mut outs: impl Outs,
        mut call: impl FnMut(usize, *mut c_void) -> c_int,
    ) -> Option<u64> {
        let me = self.v.worker(self.cfg.index);
        let n = r.n;
        let mut i = t.next.load(Acquire);
        let same = proc::SameProcess::now();
        while i < n {
            if t.cancelled.load(Relaxed) != 0 {
                cancel_rest(&self.v, t, i, Some(&me.progress));
                return Some(i);
            }
            me.progress.store(2 * i + 1, Release);
            kp!(WorkerItemStarted);
            let mut s = 0;
            if TIMED {
                self.seq += 1;
                s = self.seq << 4;
                me.deadline.store(proc::monotonic_ns() + r.timeout, Relaxed);
                me.run.store(s, Release);
            }
            let rc = call(i as usize, outs.prepare(i as usize));
            if same.forked() {
                proc::exit_silently(0); // as leave_if_forked, at one load per item
            }
            kp!(WorkerItemReturned);
            let timed_out = TIMED && end_timed_item(me, s);
            if timed_out {
                if let Some(ex) = &self.execs {
                    ex.now().after_term(); // the SIGTERM went to the executor: it drops it there
                }
            }
            // One test for the rare cases (a failure, a message), so a success costs one branch.
            if rc != 0 || timed_out || TASK_ERROR_SET.load(Relaxed) {
                self.item_ended_rarely(t, i, rc, timed_out, &mut outs);
            } else {
                outs.deliver(i as usize);
            }
            if TIMED {
                me.run.store(0, Release);
                me.deadline.store(0, Relaxed);
            }
            kp!(WorkerItemDone);
            i += 1;
        }
        None
    }

    /// Ends item `i` that failed, or succeeded with a message set (dropped then).
    #[cold]
    #[inline(never)]
    fn item_ended_rarely(&self, t: &TaskSlot, i: u64, rc: c_int, timed_out: bool, outs: &mut impl Outs) {
        let msg = if TASK_ERROR_SET.load(Relaxed) { take_task_error() } else { None };
        if rc != 0 || timed_out {
            let status = if timed_out { Status::TimedOut } else { Status::Task };
            let rec = Rec { item: i, status: status as i32, code: rc, pid: self.task_pid, ..Rec::default() };
            self.v.push_failure(t, rec, msg.as_deref());
        } else {
            outs.deliver(i as usize);
        }
    }
}

/// Clears the outputs of the items not run yet at `base` (the task's output area) if the block
/// was used before: a task that writes nothing must hand back zeros, never older bytes.
fn clear_unrun(base: *mut u8, flags: u32, t: &TaskSlot, r: &TaskRun) {
    if flags & F_DIRTY != 0 {
        let from = t.next.load(Acquire) as usize * r.osz;
        // SAFETY: the output area holds n outputs.
        unsafe { std::ptr::write_bytes(base.add(from), 0, r.n as usize * r.osz - from) };
    }
}

/// After an item with a deadline returned: true if it timed out (the zygote sent SIGTERM).
/// Decides by CAS against the zygote (PROTOCOL.md, invariant K): once RETURNED is set no kill
/// can be decided for the item; if the zygote got there first with KILL, park until it lands;
/// with TERM, wait until the signal was sent and discard it if still pending, so that it never
/// reaches the next item.
fn end_timed_item(me: &WorkerSlot, s: u64) -> bool {
    let Err(mut cur) = me.run.compare_exchange(s, s | RUN_RETURNED, AcqRel, Acquire) else { return false };
    loop {
        if cur & RUN_KILL != 0 {
            park();
        }
        if cur & RUN_SENT != 0 {
            break;
        }
        std::thread::yield_now();
        cur = me.run.load(Acquire);
    }
    kp!(WorkerTermHandshake);
    proc::discard_pending(libc::SIGTERM);
    if me.run.compare_exchange(cur, cur | RUN_RETURNED, AcqRel, Acquire).is_err() {
        park();
    }
    true
}

/// Ends items `[from, n)` of a cancelled task without running them (the runner owns the task),
/// one record at a time (invariant I). A worker passes its `progress` word, kept in step.
pub(crate) fn cancel_rest(v: &View, t: &TaskSlot, from: u64, progress: Option<&AtomicU64>) {
    let n = t.n.load(Relaxed);
    let step = |i: u64| progress.iter().for_each(|p| p.store(2 * i, Release));
    step(from);
    for i in from..n {
        if !v.push_failure(t, Rec { item: i, status: Status::Cancelled as i32, ..Rec::default() }, None) {
            break;
        }
        step(i + 1);
    }
    t.next.store(n, Release);
}
