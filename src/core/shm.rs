//! The layout of a pool's shared memory, mapped at the same address in the host, the zygote
//! and every worker:
//!
//! ```text
//! [Header][WorkerSlot × nworkers][TaskSlot × MAX_TASKS][ring: u32 × MAX_TASKS][Peek][task heap][user heap]
//! ```
//! A task slot describes one unit of work (an apply, a map chunk, a variable-size task); its data
//! lives in one block of the task heap: `[Rec × n][inputs][outputs]`. The user heap holds the
//! caller's `pool_shm_alloc` buffers (zero copy). Only the host allocates slots and blocks.
//!
//! In workers, everything before the user heap is read-only at this address: the user's task can
//! read its input there but cannot write anywhere in it (a buffer overrun or a wild pointer
//! crashes its own worker instead of corrupting another caller's data or the pool's state). The
//! worker's own code writes through a second, read-write mapping of the same pages at an address
//! no task is given (`View::aliased`); task outputs are written to private memory and copied in,
//! or through a window mapping with guard pages (see `worker.rs`).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

pub(crate) const MAX_TASKS: u32 = 1 << 18;
pub(crate) const PAGE: usize = 4096;

/// Task states: the phase (low bits of `TaskSlot::state`), the owner while RUNNING (`1 + worker`
/// index in bits 8..21), and `WAITER`, set while a host thread sleeps on the word. See PROTOCOL.md.
pub(crate) const T_FREE: u32 = 0;
pub(crate) const T_QUEUED: u32 = 1;
pub(crate) const T_RUNNING: u32 = 2;
pub(crate) const T_DONE: u32 = 3;
pub(crate) const T_CLOSED: u32 = 4;
const PHASE: u32 = 0xff;
const OWNER_SHIFT: u32 = 8;
pub(crate) const WAITER: u32 = 1 << 31;

/// The state of a task run by worker `w`.
pub(crate) fn running(w: usize) -> u32 {
    T_RUNNING | ((w as u32 + 1) << OWNER_SHIFT)
}

/// The phase of a state word (owner and waiter bits dropped).
pub(crate) fn phase(s: u32) -> u32 {
    s & PHASE
}

/// `claim` words: `epoch << 32 | slot`; KILL is set by the zygote to stop the worker's task.
pub(crate) const CLAIM_NONE: u64 = u64::MAX;
pub(crate) const CLAIM_KILL: u64 = 1 << 31;
pub(crate) fn claim_word(slot: u32, epoch: u32) -> u64 {
    (epoch as u64) << 32 | slot as u64
}
/// (slot, epoch) of a claim word.
pub(crate) fn claim_parts(c: u64) -> (u32, u32) {
    ((c as u32) & !(CLAIM_KILL as u32), (c >> 32) as u32)
}

/// `run` words: `seq << 4 | flags` while user code runs an item.
pub(crate) const RUN_RETURNED: u64 = 1; // the item returned: no kill may be decided for it any more
pub(crate) const RUN_TERM: u64 = 2; // the zygote decided to SIGTERM it (deadline passed)
pub(crate) const RUN_SENT: u64 = 4; // ... and the SIGTERM was sent
pub(crate) const RUN_KILL: u64 = 8; // the zygote decided to SIGKILL it
pub(crate) const RUN_FLAGS: u64 = 15;

/// Task kinds.
pub(crate) const K_ITEMS: u32 = 0; // `n` fixed-size items through a `pool_fn`
pub(crate) const K_VAR: u32 = 1; // one input of any length, output written with `pool_out_write`
pub(crate) const K_BLOCK: u32 = 2; // one item: a block of `count` map items through a `pool_block_fn`

/// Task flags.
pub(crate) const F_NOTIFY: u32 = 1; // completion bumps `Events::seq` (map drivers wait there)
pub(crate) const F_DIRTY: u32 = 2; // the block was used before: outputs are cleared before each item
pub(crate) const F_WINDOW: u32 = 4; // outputs are page-aligned in the block: written through a window

/// The value of a control flag that is set (0: clear). Anything else is a sign that the header
/// was overwritten.
pub(crate) const ON: u32 = 0x600d_f1a6;

/// `start_step` when the zygote could not make its signalfd (0: a fork failed).
pub(crate) const STEP_SIGNALFD: u32 = 1;

/// Worker slot states.
pub(crate) const W_STARTING: u32 = 1;
pub(crate) const W_INIT: u32 = 4; // running the initializer
pub(crate) const W_READY: u32 = 2;
pub(crate) const W_EXITED: u32 = 3;
pub(crate) const W_HUNG: u32 = 5; // past the start-up bound: the zygote kills it

/// `code` of the records of work a broken pool fails, when the start-up bound broke it.
pub(crate) const BROKEN_HUNG: i32 = 1;

#[repr(C, align(64))]
pub struct Queue {
    /// Futex lock; the value is the owner's tag (see `queue.rs`) so a dead owner can be found.
    pub lock: AtomicU32,
    pub head: AtomicU32,
    pub tail: AtomicU32,
    /// Bumped on every push; idle workers sleep on it.
    pub seq: AtomicU32,
    pub sleepers: AtomicU32,
}

/// An event count: bumped on completions that someone may be waiting for as a group.
#[repr(C, align(64))]
pub struct Events {
    pub seq: AtomicU32,
    /// Waiters interested in `F_NOTIFY` completions and worker deaths.
    pub notify_waiters: AtomicU32,
    /// Waiters interested in any completion (a submitter waiting for a free slot).
    pub any_waiters: AtomicU32,
}

#[repr(C, align(64))]
pub struct Control {
    /// Set by the host: workers exit once the queue is empty.
    pub shutdown: AtomicU32,
    /// Set by the host: no task may start any more.
    pub terminate: AtomicU32,
    /// Workers that finished their initializer at start-up (futex: the host waits on it).
    pub ready: AtomicU32,
    /// Wait status + 1 of a worker that died during start-up, 0 if none.
    pub init_failed: AtomicI32,
    /// Nonzero once replacements keep dying in their initializer: the pool cannot run tasks.
    pub broken: AtomicU32,
    /// Set when the last death in the initializer was a kill at the start-up bound (a hang).
    pub init_hung: AtomicU32,
    /// Nonzero once any task may carry a deadline: the zygote then watches deadlines.
    pub deadlines: AtomicU32,
    /// Nonzero once the host asked for the completion eventfd: completions then reach it.
    pub efd_armed: AtomicU32,
    /// Set by a worker that completed a task while `efd_armed`: the zygote, which owns the
    /// eventfd (workers hold no descriptor a task could close or reuse), writes it.
    pub efd_pending: AtomicU32,
    /// errno of the zygote's last failed fork (0 once a fork succeeds again), or of the step
    /// `start_step` names when the zygote could not start.
    pub fork_errno: AtomicI32,
    /// What the zygote was doing when it failed to start (`STEP_*`).
    pub start_step: AtomicU32,
    /// A checked initializer that refused: 0, then 1 while the first refusing worker writes
    /// its code and message, 2 once they are complete.
    pub init_refusal: AtomicU32,
    pub init_code: AtomicI32,
    /// Its message (`pool_task_error`), NUL-terminated.
    pub init_msg: [AtomicU64; MSG_LEN / 8],
}

/// A page of the zygote's memory, for a host that may not read the zygote itself (Yama's
/// ptrace_scope, seccomp, privileges dropped after `pool_create`): the host writes `addr`, then
/// `asked` (a new number), and rings the zygote; the zygote fills `page` and `len` and sets
/// `answered` to that number (a futex). See `pool/ctx.rs`.
#[repr(C, align(64))]
pub struct Peek {
    pub asked: AtomicU32,
    pub answered: AtomicU32,
    /// Bytes of `page` the zygote could read: PAGE, or 0 where it has nothing mapped.
    pub len: AtomicU32,
    /// The page asked for (page-aligned).
    pub addr: AtomicU64,
    pub page: [AtomicU64; PAGE / 8],
}

#[repr(C, align(64))]
pub struct Header {
    pub queue: Queue,
    pub events: Events,
    pub control: Control,
}

/// 128-byte aligned: each worker writes its slot as it runs items, and CPUs fetch cache lines in
/// pairs; neighbours must not share a pair.
#[repr(C, align(128))]
pub struct WorkerSlot {
    pub pid: AtomicI32,
    pub state: AtomicU32,
    /// The task this worker runs (`claim_word`), or CLAIM_NONE.
    pub claim: AtomicU64,
    /// Items of the claimed task: `2i + 1` once item i started (items before it ended), `2i`
    /// when items before i ended and none runs.
    pub progress: AtomicU64,
    /// `seq << 4 | flags` while user code runs an item with a deadline, 0 otherwise.
    pub run: AtomicU64,
    /// Deadline (monotonic ns) of the item named by `run`, 0 for none.
    pub deadline: AtomicU64,
    /// The system call (number + 1) the sandbox refused this worker's executor, noted by the
    /// worker as it mirrors the executor's death; 0 before.
    pub refused: AtomicU32,
    /// A sandboxed worker's executor, the process its tasks run in (0: none, they run in the
    /// worker). Written by the worker; the zygote sends a deadline's SIGTERM there.
    pub task_pid: AtomicI32,
}

#[repr(C, align(64))]
pub struct TaskSlot {
    pub state: AtomicU32,
    /// Incarnation of this slot, bumped by the host at every submission.
    pub epoch: AtomicU32,
    pub kind: AtomicU32,
    pub flags: AtomicU32,
    /// pid of the last worker that ran (part of) it.
    pub pid: AtomicI32,
    pub func: AtomicU64,
    pub ctx: AtomicU64,
    /// Heap offset of the task's block (its records, and its data unless it lives elsewhere).
    pub block: AtomicU64,
    /// Heap offsets of item 0's input and output: inside the block, or in memory the caller
    /// allocated with `pool_shm_alloc` (zero copy).
    pub in_off: AtomicU64,
    pub out_off: AtomicU64,
    pub n: AtomicU64,
    pub in_size: AtomicU64,
    pub out_size: AtomicU64,
    /// Index of the next item to run (items before it have a final record).
    pub next: AtomicU64,
    /// Bytes written by a `K_VAR` task.
    pub out_len: AtomicU64,
    /// Per-item deadline for this task (ns); 0 to use the pool's.
    pub timeout_ns: AtomicU64,
    /// Set by the host: the task is cancelled; items not yet run end as cancelled.
    pub cancelled: AtomicU32,
    /// Failure records written so far: items before `next` without one succeeded.
    pub nfail: AtomicU64,
    /// Heap offset of the task's message slots (`BlockLayout::msgs`).
    pub msgs: AtomicU64,
    /// Bytes of `ctx` copied with the task (0: `ctx` is the caller's pointer as it is).
    pub ctx_size: AtomicU64,
    /// A `K_BLOCK` task's map items: the index of its first, and how many.
    pub first: AtomicU64,
    pub count: AtomicU64,
}

/// The failure of one item. Only failures are recorded (successes cost no write), in item
/// order, by whoever runs the task: its worker, or the zygote once that worker died.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Rec {
    pub item: u64,
    /// A `Status` value.
    pub status: i32,
    /// The task's own return code.
    pub code: i32,
    /// The worker that ran the item (0 if none did).
    pub pid: i32,
    /// The worker's raw wait status when it died running the item.
    pub wstatus: i32,
    /// 1 + the message slot holding the task's own error message (`pool_task_error`), or 0.
    pub msg: u64,
}

/// Failures of a task that can carry a message of their own (the first ones), and the room for
/// each (the text and its NUL).
pub(crate) const MSG_SLOTS: usize = 16;
pub(crate) const MSG_LEN: usize = 256;

/// Offsets of the parts of a task block.
#[derive(Clone, Copy, Debug)]
pub struct BlockLayout {
    pub input: usize,
    pub output: usize,
    /// Message slots (`min(n, MSG_SLOTS)` of `MSG_LEN` bytes), then the copy of `ctx`.
    pub msgs: usize,
    pub ctx: usize,
    pub total: usize,
}

/// Outputs of items at least this big, in tasks whose outputs add up to at least `WINDOW_MIN`,
/// are written by the task straight into shared memory through a window mapping of their own
/// pages (page-aligned in the block, `F_WINDOW`): a few system calls per task instead of a copy.
/// Smaller ones go through private memory and are copied in, item by item (cheaper for many
/// small items than setting up a mapping).
pub(crate) const WINDOW_MIN: usize = 256 << 10;
pub(crate) const WINDOW_ITEM_MIN: usize = 4 << 10;

impl BlockLayout {
    /// `[Rec × n][inputs][outputs][messages][ctx]`: records, inputs and outputs first, where
    /// every task touches them; the rest only when used.
    pub fn new(n: usize, in_size: usize, out_size: usize, ctx_size: usize) -> Option<BlockLayout> {
        let recs = n.checked_mul(std::mem::size_of::<Rec>())?;
        let input = align(recs, 64);
        let out_bytes = n.checked_mul(out_size)?;
        let window = Self::window(n, out_size);
        let a = if window { PAGE } else { 64 };
        let output = align_checked(input.checked_add(n.checked_mul(in_size)?)?, a)?;
        let out_end = output.checked_add(if window { align_checked(out_bytes, PAGE)? } else { out_bytes })?;
        let msgs = align_checked(out_end, 64)?;
        let ctx = msgs + n.min(MSG_SLOTS) * MSG_LEN;
        let total = ctx.checked_add(ctx_size)?;
        Some(BlockLayout { input, output, msgs, ctx, total })
    }

    /// Whether the output area is page-aligned for a window mapping.
    pub fn window(n: usize, out_size: usize) -> bool {
        out_size >= WINDOW_ITEM_MIN && n.saturating_mul(out_size) >= WINDOW_MIN
    }
}

fn align(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

fn align_checked(x: usize, a: usize) -> Option<usize> {
    Some(x.checked_add(a - 1)? & !(a - 1))
}

/// Region sizes of one pool's mapping.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Worker processes (the zygote's).
    pub nworkers: usize,
    /// Worker slots: the workers', then those of remote runners (threads of the host that
    /// take tasks like a worker and run them elsewhere, `remote/`).
    pub nslots: usize,
    pub workers: usize,
    pub tasks: usize,
    pub ring: usize,
    pub peek: usize,
    /// Offset of the task heap; the user heap follows it, `heap_len` bytes each.
    pub heap: usize,
    pub heap_len: usize,
    pub total: usize,
}

impl Layout {
    pub fn new(nworkers: usize, nrunners: usize, heap_len: usize) -> Layout {
        let nslots = nworkers + nrunners;
        let workers = align(std::mem::size_of::<Header>(), PAGE);
        let tasks = workers + align(nslots * std::mem::size_of::<WorkerSlot>(), PAGE);
        let ring = tasks + MAX_TASKS as usize * std::mem::size_of::<TaskSlot>();
        let peek = align(ring + MAX_TASKS as usize * 4, PAGE);
        let heap = align(peek + std::mem::size_of::<Peek>(), 1 << 21);
        Layout { nworkers, nslots, workers, tasks, ring, peek, heap, heap_len, total: heap + 2 * heap_len }
    }

    /// Bytes from the start that tasks may only read: all but the user heap.
    pub fn protected(&self) -> usize {
        self.heap + self.heap_len
    }
}

/// A view of a pool's mapping: plain address arithmetic, valid in every process of the pool
/// for as long as the mapping exists.
#[derive(Clone, Copy)]
pub struct View {
    /// Where this process reads and writes the pool's memory.
    base: *mut u8,
    /// Where tasks see it (the same address everywhere; in workers, read-only but for the user
    /// heap, while `base` is the worker's private read-write alias).
    public: *mut u8,
    layout: Layout,
}

// SAFETY: a View is an address plus sizes; every access through it goes through atomics or
// through heap blocks owned by one party at a time.
unsafe impl Send for View {}
// SAFETY: see above.
unsafe impl Sync for View {}

impl View {
    /// # Safety
    /// `base` must point to a live mapping of `layout.total` bytes, zero-initialised or laid out
    /// by an earlier View, that outlives every use of the View.
    pub unsafe fn new(base: *mut u8, layout: Layout) -> View {
        View { base, public: base, layout }
    }

    /// In a worker: maps the pool's pages a second time, read-write, for the worker's own use,
    /// and makes the shared address read-only but for the user heap, for the tasks.
    pub fn aliased(&self) -> std::io::Result<View> {
        let alias = crate::sys::mem::alias(self.base, self.layout.protected())?;
        crate::sys::mem::protect_read_only(self.base, self.layout.protected())?;
        Ok(View { base: alias, public: self.base, layout: self.layout })
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }
    /// Where tasks see the mapping (the same address in every process of the pool).
    pub fn public(&self) -> *mut u8 {
        self.public
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn header(&self) -> &Header {
        // SAFETY: offset 0 of the mapping holds the Header (zeroed memory is a valid Header).
        unsafe { &*(self.base as *const Header) }
    }

    pub fn peek(&self) -> &Peek {
        // SAFETY: the Peek region lies inside the mapping (Layout); zeroed memory is a valid Peek.
        unsafe { &*(self.base.add(self.layout.peek) as *const Peek) }
    }

    pub fn worker(&self, i: usize) -> &WorkerSlot {
        assert!(i < self.layout.nslots);
        // SAFETY: index checked against the slot count the layout was made for.
        unsafe { &*(self.base.add(self.layout.workers) as *const WorkerSlot).add(i) }
    }

    pub fn task(&self, i: u32) -> &TaskSlot {
        assert!(i < MAX_TASKS);
        // SAFETY: index checked; the task table holds MAX_TASKS slots.
        unsafe { &*(self.base.add(self.layout.tasks) as *const TaskSlot).add(i as usize) }
    }

    pub fn ring(&self, pos: u32) -> &AtomicU32 {
        // SAFETY: masked index into the ring of MAX_TASKS words.
        unsafe { &*(self.base.add(self.layout.ring) as *const AtomicU32).add((pos & (MAX_TASKS - 1)) as usize) }
    }

    /// Address of heap offset `off` (task heap, then user heap; an end is a valid address for
    /// empty data), for this process's own use.
    pub fn heap_ptr(&self, off: u64) -> *mut u8 {
        assert!((off as usize) <= 2 * self.layout.heap_len);
        // The alias of a worker covers the protected part only; the user heap is the same for all.
        let base = if self.in_user_heap(off) { self.public } else { self.base };
        // SAFETY: offset checked to lie inside the heap regions.
        unsafe { base.add(self.layout.heap + off as usize) }
    }

    /// Address of heap offset `off` as tasks see it.
    pub fn task_ptr(&self, off: u64) -> *mut u8 {
        assert!((off as usize) <= 2 * self.layout.heap_len);
        // SAFETY: as above, at the public address.
        unsafe { self.public.add(self.layout.heap + off as usize) }
    }

    /// What is wrong with the header, if it was overwritten: flags that are neither clear nor
    /// set, a lock owner that is nobody, queue indices further apart than the ring holds.
    pub fn corrupt(&self) -> Option<&'static str> {
        let h = self.header();
        let c = &h.control;
        let flags = [&c.shutdown, &c.terminate, &c.broken, &c.init_hung, &c.deadlines, &c.efd_armed];
        if flags.iter().any(|f| !matches!(f.load(Relaxed), 0 | ON)) {
            return Some("a control flag");
        }
        let owner = h.queue.lock.load(Relaxed) & !(1 << 31);
        let valid = owner == 0
            || owner == super::queue::TAG_HOST
            || owner == super::queue::TAG_ZYGOTE
            || (owner as usize) <= self.layout.nslots;
        if !valid {
            return Some("the queue lock");
        }
        self.queue_overrun().then_some("the queue indices")
    }

    /// Whether heap offset `off` is in the user heap (writable by tasks).
    pub fn in_user_heap(&self, off: u64) -> bool {
        off as usize >= self.layout.heap_len
    }

    pub fn heap_offset(&self) -> usize {
        self.layout.heap
    }

    /// The failure records of task `t` (`n` of them fit in its block).
    fn recs(&self, t: &TaskSlot) -> *mut Rec {
        self.heap_ptr(t.block.load(Relaxed)) as *mut Rec
    }

    /// Records a failure of the task in slot `t`: its message if any (in the slot of the same
    /// number as the record, while there are slots), the record, then the count (PROTOCOL.md,
    /// invariant I). Only the task's runner calls this. False if the task's words are not
    /// consistent any more (a record for every item already: shared memory was overwritten).
    pub fn push_failure(&self, t: &TaskSlot, mut rec: Rec, msg: Option<&[u8]>) -> bool {
        let k = t.nfail.load(Relaxed);
        let n = t.n.load(Relaxed);
        if k >= n {
            return false;
        }
        if let Some(m) = msg.filter(|_| (k as usize) < (n as usize).min(MSG_SLOTS)) {
            let len = m.len().min(MSG_LEN - 1);
            let dst = self.heap_ptr(t.msgs.load(Relaxed) + k * MSG_LEN as u64);
            // SAFETY: slot k of the task's message area (n.min(MSG_SLOTS) slots of MSG_LEN bytes),
            // written by the runner only, read once the task has ended.
            unsafe {
                std::ptr::copy_nonoverlapping(m.as_ptr(), dst, len);
                dst.add(len).write(0);
            }
            rec.msg = k + 1;
        }
        // SAFETY: the records array starts the task's block and has room for `n` entries; only
        // the runner writes it, and readers wait for the task to end.
        unsafe { self.recs(t).add(k as usize).write(rec) };
        kp!(WorkerRecordWritten);
        t.nfail.store(k + 1, Release);
        kp!(WorkerRecordCounted);
        true
    }

    /// Records why a worker's checked initializer refused to start (the first refusal wins).
    pub fn record_init_refusal(&self, code: i32, msg: &[u8]) {
        let c = &self.header().control;
        if c.init_refusal.compare_exchange(0, 1, SeqCst, SeqCst).is_err() {
            return;
        }
        let mut bytes = [0u8; MSG_LEN];
        let n = msg.len().min(MSG_LEN - 1);
        bytes[..n].copy_from_slice(&msg[..n]);
        for (w, chunk) in c.init_msg.iter().zip(bytes.chunks(8)) {
            w.store(u64::from_le_bytes(chunk.try_into().expect("8 bytes")), SeqCst);
        }
        c.init_code.store(code, SeqCst);
        c.init_refusal.store(2, SeqCst);
    }

    /// Why a checked initializer refused to start: its code and message, once recorded.
    pub fn init_refusal(&self) -> Option<(i32, String)> {
        let c = &self.header().control;
        if c.init_refusal.load(SeqCst) != 2 {
            return None;
        }
        let bytes: Vec<u8> = c.init_msg.iter().flat_map(|w| w.load(SeqCst).to_le_bytes()).collect();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some((c.init_code.load(SeqCst), String::from_utf8_lossy(&bytes[..len]).into_owned()))
    }

    /// The last failure record counted, if any.
    pub fn last_failure(&self, t: &TaskSlot) -> Option<Rec> {
        let k = t.nfail.load(Acquire).min(t.n.load(Relaxed));
        // SAFETY: record k-1 was written before nfail was published (Release/Acquire).
        (k > 0).then(|| unsafe { self.recs(t).add(k as usize - 1).read() })
    }

    /// The message of failure record `rec` of a task whose message slots are at heap offset
    /// `msgs` (the host's own copy of it), if the task gave one.
    pub fn message(&self, msgs: u64, n: usize, rec: &Rec) -> Option<String> {
        let k = (rec.msg as usize).checked_sub(1).filter(|&k| k < n.min(MSG_SLOTS))?;
        // SAFETY: slot k lies in the task's message area, final once the task has ended.
        let bytes = unsafe { std::slice::from_raw_parts(self.heap_ptr(msgs + (k * MSG_LEN) as u64), MSG_LEN) };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(MSG_LEN);
        Some(String::from_utf8_lossy(&bytes[..len]).into_owned())
    }

    /// The failures of a task that has ended, in item order.
    pub fn failures(&self, t: &TaskSlot) -> &[Rec] {
        let k = t.nfail.load(Acquire).min(t.n.load(Relaxed));
        // SAFETY: `k` records were written before `nfail` was published (Release/Acquire), and
        // the block outlives the caller's use (it is freed by the same host thread later).
        unsafe { std::slice::from_raw_parts(self.recs(t), k as usize) }
    }
}
