//! Python's `multiprocessing.Process`: run one function in a forked child.

use super::error::{Error, Result, Status};
use crate::sys::proc::{self, Exit, Forked, PidHandle};
use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// `int fn(void *arg)`: its return value is the child's exit status.
pub type ProcessFn = unsafe extern "C" fn(*mut c_void) -> c_int;

pub struct Process {
    func: ProcessFn,
    arg: usize,
    opts: ProcessOptions,
    st: Mutex<State>,
}

/// How a child is started.
#[derive(Clone, Debug, Default)]
pub struct ProcessOptions {
    /// Killed (SIGKILL) when the thread that started it ends, hence when the host process
    /// ends, however it ends (Python's `daemon=True`).
    pub daemon: bool,
    /// Its name in `ps` (`/proc/<pid>/comm`; the kernel keeps 15 bytes), as bytes.
    pub name: Option<Vec<u8>>,
}

#[derive(Default)]
struct State {
    pid: Option<libc::pid_t>,
    /// The process that started the child (its parent): only it may wait for or signal it.
    parent: libc::pid_t,
    /// Until the child is reaped.
    handle: Option<Arc<PidHandle>>,
    exit: Option<Exit>,
    /// Someone else reaped our child (a host `waitpid(-1)`): its status is lost.
    lost: bool,
}

impl State {
    fn running(&self) -> bool {
        self.pid.is_some() && self.exit.is_none() && !self.lost
    }
}

impl Process {
    pub fn new(func: ProcessFn, arg: *mut c_void) -> Process {
        Process::with_options(func, arg, ProcessOptions::default())
    }

    pub fn with_options(func: ProcessFn, arg: *mut c_void, opts: ProcessOptions) -> Process {
        Process { func, arg: arg as usize, opts, st: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, once the process was started, in the process that started it (a forked
    /// child's copy of a Process must not wait for, signal or kill its parent's child).
    fn started(&self, what: &str) -> Result<MutexGuard<'_, State>> {
        let st = self.lock();
        match st.pid {
            None => Err(Error::inval(format!("{what} before pool_process_start"))),
            Some(pid) if proc::getpid() != st.parent => Err(Error::inval(format!(
                "process {pid} is the child of process {}, not of this one (a forked copy cannot use it)",
                st.parent
            ))),
            Some(_) => Ok(st),
        }
    }

    pub fn start(&self) -> Result<()> {
        let mut st = self.lock();
        if st.pid.is_some() {
            return Err(Error::inval("the process was already started"));
        }
        crate::core::ipc::arena::ensure(); // the child shares queues, locks and events created later
        let parent = proc::getpid();
        match proc::fork(None, &[]).map_err(|e| Error::sys("fork", e))? {
            Forked::Child => {
                if self.opts.daemon {
                    proc::die_with_parent();
                    if proc::getppid() != parent {
                        proc::exit_now(0); // the host ended before the signal was armed
                    }
                }
                if let Some(name) = &self.opts.name {
                    proc::set_name(name);
                }
                let (f, arg) = (self.func, self.arg);
                // SAFETY: the user's function on the user's argument, in the child.
                let rc = std::panic::catch_unwind(|| unsafe { f(arg as *mut c_void) }).unwrap_or(70);
                proc::exit_now(rc & 0xff)
            }
            Forked::Parent(pid) => {
                st.pid = Some(pid);
                st.parent = proc::getpid();
                st.handle = Some(Arc::new(PidHandle::open(pid)));
                Ok(())
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.lock().pid.unwrap_or(-1)
    }

    /// Reaps the child if it has exited (waiting up to `timeout_ms`, -1 forever).
    fn poll_exit(st: &mut State, timeout_ms: c_int) {
        if !st.running() {
            return;
        }
        let (Some(pid), Some(h)) = (st.pid, st.handle.as_ref()) else { return };
        if !h.exited(timeout_ms) {
            return;
        }
        match proc::reap(pid, true) {
            Ok(Some(e)) => st.exit = Some(e),
            _ => st.lost = true,
        }
        st.handle = None;
    }

    pub fn is_alive(&self) -> bool {
        let Ok(mut st) = self.started("") else { return false };
        Self::poll_exit(&mut st, 0);
        st.running()
    }

    /// Waits up to `timeout` (None: forever) for the child to exit. The wait holds no lock:
    /// other threads may signal or look at the process meanwhile.
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let h = {
            let st = self.started("pool_process_join called")?;
            st.handle.clone().filter(|_| st.running())
        };
        if let Some(h) = h {
            h.exited(timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as c_int));
        }
        let mut st = self.lock();
        Self::poll_exit(&mut st, 0);
        if st.running() {
            return Err(Error::new(Status::TimedOut, format!("process {} is still running", st.pid.unwrap_or(-1))));
        }
        Ok(())
    }

    pub fn signal(&self, sig: c_int) -> Result<()> {
        let mut st = self.started("signalling the process")?;
        Self::poll_exit(&mut st, 0);
        match st.handle.as_ref() {
            Some(h) if st.running() => h.signal(sig).map_err(|e| Error::sys("sending a signal to the process", e)),
            _ => Ok(()), // already exited: nothing to stop
        }
    }

    /// The exit code once finished: the status, or -N if killed by signal N.
    pub fn exitcode(&self) -> Result<i32> {
        let mut st = self.started("pool_process_exitcode called")?;
        Self::poll_exit(&mut st, 0);
        match (st.pid, st.exit, st.lost) {
            (_, Some(e), _) => Ok(e.python_code()),
            (_, None, true) => Err(Error::new(
                Status::Sys,
                "the child was reaped by someone else (waitpid(-1) in the host?); its exit code is lost",
            )),
            _ => Err(Error::new(Status::TimedOut, "the process is still running")),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let Ok(mut st) = self.started("") else { return };
        Self::poll_exit(&mut st, 0);
        if st.running() {
            if let Some(h) = st.handle.as_ref() {
                let _ = h.signal(libc::SIGKILL);
            }
            Self::poll_exit(&mut st, -1);
        }
    }
}
