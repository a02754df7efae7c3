//! What an executor prints: its stdout and stderr are pipes to its worker, which copies what
//! comes through to its own (the host's) stdout and stderr. The executor so shares no open file
//! with the host: a terminal's modes, a log file's size, mode and flags stay out of its reach.
//!
//! Copies keep what a task's own writes would give: whole lines (a line is held back until its
//! newline comes, or the item ends) in writes of at most `PIPE_BUF` bytes where lines allow, so
//! lines from different workers never tear into each other; and where the host's stdout and
//! stderr are one open file (`2>&1`, a terminal), one pipe carries both, in the order written.

use crate::sys::proc::{self, OwnedFd, ReadNow};
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;

/// Longest write the kernel keeps whole on a pipe.
const PIPE_BUF: usize = 4096;
/// A partial line longer than this is copied without waiting for its end.
const HOLD_MAX: usize = 64 << 10;

/// The worker's end of one of its executor's output pipes.
pub(super) struct Stream {
    from: OwnedFd,
    /// The worker's descriptor it is copied to (1 or 2).
    to: c_int,
    /// False once the executor closed its end (polling it would report that again and again).
    open: Cell<bool>,
    /// Read, not copied yet: the start of a line whose end has not come.
    held: RefCell<Vec<u8>>,
}

/// The executor's write ends, for its stdout and stderr (the same pipe when the host's are one
/// open file).
pub(super) struct WriteEnds {
    pub(super) out: OwnedFd,
    pub(super) err: Option<OwnedFd>,
}

/// The pipes for a new executor: the worker's streams and the executor's ends.
pub(super) fn pipes() -> std::io::Result<(Vec<Stream>, WriteEnds)> {
    let stream = |from: OwnedFd, to| {
        proc::set_nonblocking(from.0);
        Stream { from, to, open: Cell::new(true), held: RefCell::new(Vec::new()) }
    };
    let (out_r, out_w) = proc::pipe()?;
    if proc::same_open_file(1, 2) {
        return Ok((vec![stream(out_r, 1)], WriteEnds { out: out_w, err: None }));
    }
    let (err_r, err_w) = proc::pipe()?;
    Ok((vec![stream(out_r, 1), stream(err_r, 2)], WriteEnds { out: out_w, err: Some(err_w) }))
}

impl Stream {
    /// The descriptor to poll, or -1 (which poll skips) once the executor closed its end.
    pub(super) fn poll_fd(&self) -> c_int {
        if self.open.get() {
            self.from.0
        } else {
            -1
        }
    }

    /// Copies what came through: whole lines only, unless `all` (the item ended: what it
    /// printed goes out before its result) or a partial line grew past `HOLD_MAX`.
    pub(super) fn copy(&self, all: bool) {
        let mut held = self.held.borrow_mut();
        let mut buf = [0u8; 16 << 10];
        while self.open.get() {
            match proc::read_now(self.from.0, &mut buf) {
                ReadNow::Data(n) => held.extend_from_slice(&buf[..n]),
                ReadNow::Empty => break,
                ReadNow::End => self.open.set(false),
            }
        }
        let lines = held.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let end = if all || held.len() >= HOLD_MAX { held.len() } else { lines };
        let mut at = 0;
        while at < end {
            let mut stop = (at + PIPE_BUF).min(end);
            if stop < end {
                if let Some(p) = held[at..stop].iter().rposition(|&b| b == b'\n') {
                    stop = at + p + 1;
                }
            }
            proc::write_all(self.to, &held[at..stop]);
            at = stop;
        }
        held.drain(..end);
    }
}
