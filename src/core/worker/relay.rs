//! A sandboxed worker's tasks, run item by item in its executor (`executor/`).

use super::executor::{Executor, Job};
use super::outs::{NoOut, Relayed};
use super::{TaskRun, Worker};
use crate::core::shm::{TaskSlot, K_VAR};
use crate::sys::proc;
use std::os::raw::c_void;
use std::rc::Rc;
use std::sync::atomic::Ordering::*;

impl Worker<'_> {
    /// Replaces the executor by a fresh one, forked from this worker as it was after its
    /// initializer, once it ran the tasks it may (`sandbox_tasks_per_process`): a task that took
    /// its process over goes with it, before it can touch the next task's result.
    pub(super) fn renew_executor_if_due(&mut self) -> Result<(), String> {
        let Some(execs) = &mut self.execs else { return Ok(()) };
        let me = self.v.worker(self.cfg.index);
        execs.task_ended(&self.v, me)?;
        let pid = execs.now().pid();
        me.task_pid.store(pid, SeqCst);
        self.task_pid = pid;
        Ok(())
    }

    /// Runs task `t` item by item in the executor (a sandboxed worker): each output comes back
    /// through the executor's window and is copied into place here, before the next item.
    pub(super) fn relay_task(&mut self, t: &TaskSlot, r: &TaskRun, func: usize, out_off: u64, ex: Rc<Executor>) {
        let kind = t.kind.load(Relaxed);
        let (first, count) = (t.first.load(Relaxed) as usize, t.count.load(Relaxed) as usize);
        let job = Job { kind, func, ctx: r.ctx, input: r.input, isz: r.isz, osz: r.osz, first, count };
        if r.osz > ex.window_len() {
            proc::exit_now(72); // cannot happen: an output never exceeds the heap it goes to
        }
        let shared = self.v.heap_ptr(out_off);
        let window = ex.window();
        if kind == K_VAR {
            self.run_items(t, r, NoOut, |_, _| {
                let (rc, len) = ex.call(&job);
                // SAFETY: `len` <= the task's output room at `shared`, which only this worker
                // writes while the task runs; the window holds at least `len` bytes.
                unsafe { std::ptr::copy_nonoverlapping(window, shared, len) };
                t.out_len.store(len as u64, Relaxed);
                rc
            });
            return;
        }
        let call = |i: usize, _: *mut c_void| {
            let j = Job { input: job.input.wrapping_add(i * job.isz), ..job };
            ex.call(&j).0
        };
        if r.osz == 0 {
            self.run_items(t, r, NoOut, call);
        } else {
            self.run_items(t, r, Relayed { window, shared, osz: r.osz }, call);
        }
    }
}
