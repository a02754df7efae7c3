//! Where a task's item outputs go, as the worker's item loop sees them: nowhere, in place,
//! through private memory, or back from a sandboxed worker's executor.

use std::os::raw::c_void;

/// Where item outputs go. Each kind gets its own copy of the item loop (`run_items` is generic
/// over it), so the per-item cost stays a few instructions.
pub(super) trait Outs {
    /// The output pointer for item `i`, cleared.
    fn prepare(&mut self, i: usize) -> *mut c_void;
    /// Hands item `i`'s output over to the block, once it succeeded.
    fn deliver(&mut self, _i: usize) {}
}

/// Written by a sandboxed worker's executor into its window, and copied from there into the
/// block (or the caller's buffer) by the worker.
pub(super) struct Relayed {
    pub(super) window: *const u8,
    pub(super) shared: *mut u8,
    pub(super) osz: usize,
}

impl Outs for Relayed {
    fn prepare(&mut self, _: usize) -> *mut c_void {
        std::ptr::null_mut() // the executor writes its own window
    }

    fn deliver(&mut self, i: usize) {
        // SAFETY: item i's place in the task's output area (n items of osz bytes), written by
        // this worker only; the window holds at least osz bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.window, self.shared.add(i * self.osz), self.osz) };
        kp!(WorkerOutputCopied);
    }
}

/// No outputs: size 0, or a variable-size task (it writes through `pool_out_write`).
pub(super) struct NoOut;

impl Outs for NoOut {
    fn prepare(&mut self, _: usize) -> *mut c_void {
        std::ptr::null_mut()
    }
}

/// Written by the task in place: the caller's own buffer in the user heap, or a window onto the
/// block's output area (cleared beforehand if the block was used before).
pub(super) struct Direct {
    pub(super) base: *mut u8,
    pub(super) osz: usize,
}

impl Outs for Direct {
    fn prepare(&mut self, i: usize) -> *mut c_void {
        self.base.wrapping_add(i * self.osz) as *mut c_void
    }
}

/// Written by the task into private memory, then copied into the block: an overrun faults on a
/// guard page or stays in the worker's own memory, never in someone else's data. `N` is the
/// output size when it is a common one (the copies then compile to a few moves), 0 otherwise.
pub(super) struct Copied<const N: usize> {
    pub(super) private: *mut u8,
    pub(super) shared: *mut u8,
    pub(super) osz: usize,
}

impl<const N: usize> Copied<N> {
    fn size(&self) -> usize {
        if N != 0 {
            N
        } else {
            self.osz
        }
    }
}

impl<const N: usize> Outs for Copied<N> {
    fn prepare(&mut self, _: usize) -> *mut c_void {
        // SAFETY: the private area holds at least one output.
        unsafe { std::ptr::write_bytes(self.private, 0, self.size()) };
        self.private as *mut c_void
    }

    fn deliver(&mut self, i: usize) {
        let n = self.size();
        // SAFETY: item i's place in the block's output area (n items), written by us only.
        unsafe { std::ptr::copy_nonoverlapping(self.private, self.shared.add(i * n), n) };
        kp!(WorkerOutputCopied);
    }
}
