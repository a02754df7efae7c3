//! The memory that queues, locks and events live in: one anonymous shared mapping per host,
//! made before the library's first fork (the first pool or process, or the first IPC object),
//! so that every process the library forks afterwards (workers of every pool, `Process`
//! children, and what they fork) sees it at the same address.
//!
//! Objects are named by tokens, not pointers: `(generation << 32) | offset`. A token is
//! accepted only if its offset is the start of a block (a bitmap of block starts, so an offset
//! inside another object's bytes never passes, whatever those bytes are) and the block holds a
//! live object of the right kind with that generation (one arena-wide counter: a token is never
//! reissued). So a token that was freed, made up, or of another kind is refused in every
//! process, and a token stays valid in the processes that inherit it.
//!
//! The allocator lives in the arena too (any process may create or free objects), under a
//! robust mutex; PROTOCOL.md ("The IPC arena") gives each step and what a death there leaves.
//! A freed object's memory is reused only once no live process is inside a call on it (calls
//! count themselves in `callers`, where a process that died inside stops counting) and, for a
//! lock, once no thread holds it (glibc lists a held robust mutex for its thread and would
//! write into whatever the memory became). A block whose freeing had to wait longer, or whose
//! allocator or freer died halfway, is taken back by the next allocation that finds no room.

use super::callers::Callers;
use crate::core::error::{Error, Result, Status};
use crate::sys::mem::Mapping;
use crate::sys::proc;
use crate::sys::robust::{LockError, RobustMutex};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Default size (virtual: pages cost memory once touched); `POOL_IPC_SIZE` overrides it.
const DEFAULT_LEN: usize = 64 << 20;
/// Largest arena: tokens carry 32-bit offsets.
const MAX_LEN: usize = 4 << 30;
const ALIGN: u64 = 64;
/// A free block is split when the rest would hold at least this much.
const MIN_SPLIT: u64 = 2 * ALIGN;
/// How long `free` waits for the calls inside to leave before it leaves the block to be taken
/// back later (more than the waiters' polling slices, so that even one that missed its wake-up
/// has left by then).
const FREE_WAIT: Duration = Duration::from_millis(250);

#[repr(C)]
struct Header {
    lock: RobustMutex,
    /// Offset of the first byte never handed out.
    bump: AtomicU64,
    /// Offset of the first free block (0: none), linked through `Block::next`.
    free: AtomicU64,
    /// The last generation handed out.
    generation: AtomicU32,
    /// Where the blocks begin (after this header, the callers and the bitmap of block starts).
    first: AtomicU64,
    callers: Callers,
}

/// In front of every object: its size, the free-list link, what it is now.
#[repr(C)]
struct Block {
    size: AtomicU64,
    next: AtomicU64,
    /// FREE, TAKEN, FREEING or the kind of the live object.
    kind: AtomicU32,
    /// The object's generation: a token names one incarnation.
    generation: AtomicU32,
    /// TAKEN: the allocating process. FREEING: the freeing process, 0 once it left the block
    /// to be taken back by others.
    owner: AtomicU32,
    /// FREEING: the kind the object had.
    was: AtomicU32,
}

/// Block states: on the free list; taken off it by an allocation not yet finished; being
/// freed. Live objects have their kind.
const FREE: u32 = 0x4652_4545;
const TAKEN: u32 = 0x5441_4b4e;
const FREEING: u32 = 0x4652_4e47;
/// Object kinds.
pub(crate) const QUEUE: u32 = 0x5155_4555;
pub(crate) const LOCK: u32 = 0x4c4f_434b;
pub(crate) const EVENT: u32 = 0x4556_4e54;

pub struct Arena {
    map: Mapping,
}

static ARENA: OnceLock<std::result::Result<Arena, String>> = OnceLock::new();
/// Set in a sandboxed pool's executor, which has unmapped the arena (`withdraw`).
static WITHDRAWN: AtomicBool = AtomicBool::new(false);

fn len_from_env() -> usize {
    let len = std::env::var("POOL_IPC_SIZE").ok().and_then(|v| crate::core::pool::parse_size(v.trim()));
    len.unwrap_or(DEFAULT_LEN).clamp(1 << 20, MAX_LEN - 4096)
}

/// The arena, made on first use (whichever thread comes first, even while another forks).
pub fn get() -> Result<&'static Arena> {
    if WITHDRAWN.load(Relaxed) {
        return Err(Error::inval(
            "queues, locks and events cannot be used by the tasks of a sandboxed pool: their shared memory holds \
             what the host trusts (a task could write into the host through it); pass data as inputs and results",
        ));
    }
    proc::init_once(&ARENA, || {
        let len = len_from_env();
        let map = Mapping::new_anon_shared(len).map_err(|e| {
            format!("mapping the {len} bytes of shared memory for queues, locks and events (POOL_IPC_SIZE): {e}")
        })?;
        let h = map.base() as *mut Header;
        // SAFETY: a fresh zeroed mapping, large enough for the header; nobody else sees it yet.
        unsafe { RobustMutex::init(&raw mut (*h).lock) }.map_err(|e| format!("initialising a shared mutex: {e}"))?;
        let bitmap = (len as u64 / ALIGN).div_ceil(8);
        let first = (std::mem::size_of::<Header>() as u64 + bitmap).next_multiple_of(ALIGN);
        // SAFETY: as above.
        unsafe {
            (*h).bump.store(first, SeqCst);
            (*h).first.store(first, SeqCst);
        }
        Ok(Arena { map })
    })
    .as_ref()
    .map_err(|m| Error::new(Status::Sys, m.clone()))
}

/// Makes the arena now, before the library forks, so that what it forks shares it. Failing here
/// is not fatal: the queue, lock and event calls report it.
pub fn ensure() {
    let _ = get();
}

/// In a sandboxed pool's executor, before its sandbox: unmaps the arena for good (its robust
/// mutexes carry list pointers the host's glibc follows when it unlocks them, so a task that
/// could write them could write into the host), and makes every later IPC call fail with a
/// message saying why.
pub fn withdraw() -> std::io::Result<()> {
    WITHDRAWN.store(true, SeqCst);
    match ARENA.get() {
        Some(Ok(a)) => crate::sys::mem::unmap(a.map.base(), a.map.len()),
        _ => Ok(()),
    }
}

/// Whether the memory of a freed object of `kind` may be reused (its payload at `p`): a lock
/// still held by a thread may not (its payload is the lock's robust mutex).
fn reusable(kind: u32, p: *mut u8) -> bool {
    if kind != LOCK {
        return true;
    }
    // SAFETY: a lock object's payload is its robust mutex, initialised at creation.
    let m = unsafe { &*(p as *const RobustMutex) };
    m.lock(Some(Instant::now())).is_ok() && m.unlock().is_ok()
}

/// What the arena holds (for tests and diagnostics): live objects, blocks held by an
/// allocation or a freeing under way (or abandoned by a death), and bytes free for new objects.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub live: usize,
    pub pending: usize,
    pub free_bytes: u64,
    /// The blocks tile the memory up to `bump` and the free list names only FREE blocks among
    /// them (what every step keeps, whoever dies where).
    pub consistent: bool,
}

impl Arena {
    fn header(&self) -> &Header {
        // SAFETY: offset 0 of the mapping holds the header, initialised in `get`.
        unsafe { &*(self.map.base() as *const Header) }
    }

    /// Word `i` of the bitmap of block starts (bit `off / ALIGN`).
    fn start_word(&self, off: u64) -> &AtomicU64 {
        let i = (off / ALIGN / 64) as usize;
        // SAFETY: the bitmap follows the header and covers every ALIGN-sized granule of the
        // mapping; callers pass offsets inside the mapping.
        unsafe { &*(self.map.base().add(std::mem::size_of::<Header>()) as *const AtomicU64).add(i) }
    }

    fn is_start(&self, off: u64) -> bool {
        self.start_word(off).load(SeqCst) & (1 << ((off / ALIGN) % 64)) != 0
    }

    fn mark_start(&self, off: u64) {
        self.start_word(off).fetch_or(1 << ((off / ALIGN) % 64), SeqCst);
    }

    fn unmark_start(&self, off: u64) {
        self.start_word(off).fetch_and(!(1 << ((off / ALIGN) % 64)), SeqCst);
    }

    fn block(&self, off: u64) -> &Block {
        // SAFETY: callers pass offsets of blocks inside the mapping (checked by `check` for
        // outside tokens).
        unsafe { &*(self.map.base().add(off as usize) as *const Block) }
    }

    /// Address of the object at `off` (its payload, after the block header).
    fn payload(&self, off: u64) -> *mut u8 {
        // SAFETY: as in `block`.
        unsafe { self.map.base().add(off as usize + std::mem::size_of::<Block>()) }
    }

    fn locked<R>(&self, f: impl FnOnce(&Header) -> R) -> Result<R> {
        let h = self.header();
        match h.lock.lock(None) {
            Ok(_) => {
                kp!(ArenaLocked);
                let r = f(h);
                let _ = h.lock.unlock();
                Ok(r)
            }
            Err(LockError::TimedOut) => unreachable!("no deadline"),
            Err(LockError::Os(e)) => Err(Error::sys("locking the shared memory of queues, locks and events", e)),
        }
    }

    /// A new object of `kind` with `size` bytes of payload, zeroed then given to `init` (while
    /// the block is still TAKEN: a death in there leaves a block the next defragment takes
    /// back, not a live object nobody has the token of); returns its token.
    pub fn alloc(&self, kind: u32, size: usize, init: impl FnOnce(*mut u8) -> Result<()>) -> Result<u64> {
        let too_big = || {
            Error::new(
                Status::NoMem,
                format!(
                    "{size} bytes do not fit in the {} bytes of shared memory for queues, locks and events; set POOL_IPC_SIZE (before the first pool, process or queue) to make it larger",
                    self.map.len()
                ),
            )
        };
        let need = (size as u64)
            .checked_add(std::mem::size_of::<Block>() as u64)
            .and_then(|n| n.checked_next_multiple_of(ALIGN))
            .ok_or_else(too_big)?;
        let taken = self.locked(|h| {
            self.take(h, need).or_else(|| {
                self.defragment(h);
                self.take(h, need)
            })
        })?;
        let (off, generation) = taken.ok_or_else(too_big)?;
        kp!(ArenaTaken);
        let b = self.block(off);
        // SAFETY: the payload of a block we now own (TAKEN by this process).
        unsafe {
            std::ptr::write_bytes(self.payload(off), 0, (b.size.load(SeqCst) as usize) - std::mem::size_of::<Block>())
        };
        if let Err(e) = init(self.payload(off)) {
            self.locked(|h| {
                b.kind.store(FREE, SeqCst);
                b.next.store(h.free.load(SeqCst), SeqCst);
                h.free.store(off, SeqCst);
            })?;
            return Err(e);
        }
        b.generation.store(generation, SeqCst);
        b.kind.store(kind, SeqCst);
        kp!(ArenaCreated);
        Ok((generation as u64) << 32 | off)
    }

    /// A block of `need` bytes, TAKEN by this process (under the lock), and its generation:
    /// first fit on the free list, else fresh memory.
    fn take(&self, h: &Header, need: u64) -> Option<(u64, u32)> {
        let len = self.map.len() as u64;
        let mine = |b: &Block| {
            b.owner.store(proc::getpid() as u32, SeqCst);
            b.kind.store(TAKEN, SeqCst);
        };
        let generation = || h.generation.fetch_add(1, SeqCst).wrapping_add(1).max(1);
        // First fit in the free list, unlinked with one store; the rest of a big block is split
        // off as a free block of its own, linked in its place. Until the block is marked TAKEN
        // it is FREE and whole, so a death anywhere here leaves a block the next defragment
        // lists again.
        let mut prev: Option<&AtomicU64> = None;
        let mut cur = h.free.load(SeqCst);
        while cur != 0 {
            let b = self.block(cur);
            let have = b.size.load(SeqCst);
            if have >= need {
                let next = b.next.load(SeqCst);
                let link = prev.unwrap_or(&h.free);
                if have - need >= MIN_SPLIT {
                    // The block shrinks before the rest is linked in its place: at every store
                    // the blocks tile the memory (a death between linking the rest and
                    // shrinking left a FREE block covering the rest, which the rest's next
                    // owner would lose to the next defragment).
                    let rest = cur + need;
                    let r = self.block(rest);
                    r.kind.store(FREE, SeqCst);
                    r.size.store(have - need, SeqCst);
                    r.next.store(next, SeqCst);
                    self.mark_start(rest);
                    b.size.store(need, SeqCst);
                    kp!(ArenaSplit);
                    link.store(rest, SeqCst);
                } else {
                    link.store(next, SeqCst);
                }
                mine(b);
                return Some((cur, generation()));
            }
            prev = Some(&b.next);
            cur = b.next.load(SeqCst);
        }
        let at = h.bump.load(SeqCst);
        (at + need <= len).then(|| {
            let b = self.block(at);
            mine(b);
            b.size.store(need, SeqCst);
            self.mark_start(at);
            h.bump.store(at + need, SeqCst);
            (at, generation())
        })
    }

    /// Takes back what can be (blocks whose allocator died before finishing, blocks freed
    /// whose callers have all left), merges neighbouring free blocks, gives a free run at the
    /// end back to fresh memory, then rebuilds the free list (under the lock; only when an
    /// allocation found no room). Blocks tile the memory from `first` to `bump`, so one walk by
    /// their sizes sees them all; a death anywhere in here leaves blocks that the next walk
    /// lists again.
    fn defragment(&self, h: &Header) {
        let (first, bump) = (h.first.load(SeqCst), h.bump.load(SeqCst));
        let busy = h.callers.all_busy();
        let mut off = first;
        while off < bump {
            let b = self.block(off);
            let size = b.size.load(SeqCst);
            if size == 0 || off + size > bump {
                return; // not a tiling we understand (memory overwritten): leave everything as is
            }
            if self.abandoned(b) && busy.binary_search(&(off / ALIGN)).is_err() && self.ends_freeing(off) {
                b.kind.store(FREE, SeqCst);
            }
            off += size;
        }
        let mut free = Vec::new();
        let mut off = first;
        while off < bump {
            let b = self.block(off);
            let mut size = b.size.load(SeqCst);
            if b.kind.load(SeqCst) == FREE {
                while off + size < bump && self.block(off + size).kind.load(SeqCst) == FREE {
                    let next = off + size;
                    let n = self.block(next).size.load(SeqCst);
                    if n == 0 || next + n > bump {
                        break;
                    }
                    self.unmark_start(next);
                    size += n;
                }
                b.size.store(size, SeqCst);
                free.push(off);
            }
            off += size;
        }
        // Rebuild the list (the merged blocks are unreachable from now on), the last run given
        // back to fresh memory if it ends at `bump`.
        h.free.store(0, SeqCst);
        if let Some(&last) = free.last() {
            if last + self.block(last).size.load(SeqCst) == bump {
                free.pop();
                self.unmark_start(last);
                h.bump.store(last, SeqCst);
            }
        }
        for &f in free.iter().rev() {
            self.block(f).next.store(h.free.load(SeqCst), SeqCst);
            h.free.store(f, SeqCst);
        }
    }

    /// A block TAKEN by a process that died, or FREEING with nobody freeing it any more.
    fn abandoned(&self, b: &Block) -> bool {
        let owner = b.owner.load(SeqCst) as libc::pid_t;
        match b.kind.load(SeqCst) {
            TAKEN => proc::is_dead(owner),
            FREEING => owner == 0 || proc::is_dead(owner),
            _ => false,
        }
    }

    /// Whether a block may become FREE: any but a FREEING one whose object says no.
    fn ends_freeing(&self, off: u64) -> bool {
        let b = self.block(off);
        b.kind.load(SeqCst) != FREEING || reusable(b.was.load(SeqCst), self.payload(off))
    }

    /// Whether `token` names a live object of `kind`: its offset if so.
    fn check(&self, token: u64, kind: u32) -> Option<u64> {
        let off = token & 0xffff_ffff;
        let h = self.header();
        let in_range = off >= h.first.load(SeqCst)
            && off % ALIGN == 0
            && off + std::mem::size_of::<Block>() as u64 <= h.bump.load(SeqCst);
        if !in_range || !self.is_start(off) {
            return None;
        }
        let b = self.block(off);
        (b.kind.load(SeqCst) == kind && b.generation.load(SeqCst) == (token >> 32) as u32).then_some(off)
    }

    /// Enters the live object of `kind` that `token` names (`what` names it in messages); its
    /// memory is not reused while the returned guard lives.
    pub fn enter(&self, token: u64, kind: u32, what: &str) -> Result<Obj<'_>> {
        let refused =
            || Error::inval(format!("{what} is not a live {what} (freed, of another kind, or never created)"));
        let off = self.check(token, kind).ok_or_else(refused)?;
        let entry = self.header().callers.enter(off / ALIGN)?;
        kp!(ArenaEntered);
        let obj = Obj { arena: self, off, token, kind, entry };
        // Counted in before this second look, as `free` marks before it counts: one of the two
        // sees the other.
        if !obj.alive() {
            return Err(refused()); // freed between the check and the count (the guard leaves)
        }
        Ok(obj)
    }

    /// Frees the object `token` names: new calls on it are refused at once; calls inside it
    /// are woken by `wake` (they see it gone). Its memory is reused once no live process is
    /// inside a call on it (and, for a lock, no thread holds it): now if they leave soon, else
    /// by a later allocation that finds no room.
    pub fn free(&self, token: u64, kind: u32, what: &str, wake: impl Fn(*mut u8)) -> Result<()> {
        let off = self
            .locked(|_| {
                let off = self.check(token, kind)?;
                let b = self.block(off);
                b.was.store(kind, SeqCst);
                b.owner.store(proc::getpid() as u32, SeqCst);
                b.kind.store(FREEING, SeqCst);
                Some(off)
            })?
            .ok_or_else(|| {
                Error::inval(format!("{what} is not a live {what} (already freed, of another kind, or never created)"))
            })?;
        kp!(ArenaFreeing);
        let (b, callers) = (self.block(off), &self.header().callers);
        let until = Instant::now() + FREE_WAIT;
        let mut left = false;
        while !left && Instant::now() < until {
            wake(self.payload(off));
            left = !callers.busy(off / ALIGN);
            if !left {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        callers.clear_dead(Some(off / ALIGN));
        kp!(ArenaFreeWaited);
        self.locked(|h| {
            // Still ours to finish (a defragment takes only blocks whose freer left or died).
            if left && self.ends_freeing(off) {
                b.kind.store(FREE, SeqCst);
                b.next.store(h.free.load(SeqCst), SeqCst);
                h.free.store(off, SeqCst);
            } else {
                b.owner.store(0, SeqCst); // left to a later defragment
            }
        })
    }

    /// Counts what the arena holds (walks every block under the lock).
    pub fn census(&self) -> Result<Census> {
        self.locked(|h| {
            let (first, bump) = (h.first.load(SeqCst), h.bump.load(SeqCst));
            let mut c = Census { free_bytes: self.map.len() as u64 - bump, ..Census::default() };
            let mut starts = Vec::new();
            let mut off = first;
            while off < bump {
                let b = self.block(off);
                let size = b.size.load(SeqCst);
                if size == 0 || off + size > bump {
                    break;
                }
                starts.push(off);
                match b.kind.load(SeqCst) {
                    FREE => c.free_bytes += size,
                    TAKEN | FREEING => c.pending += 1,
                    _ => c.live += 1,
                }
                off += size;
            }
            let mut listed = h.free.load(SeqCst);
            let mut listed_ok = true;
            for _ in 0..=starts.len() {
                if listed == 0 {
                    break;
                }
                listed_ok &= starts.binary_search(&listed).is_ok() && self.block(listed).kind.load(SeqCst) == FREE;
                listed = self.block(listed).next.load(SeqCst);
            }
            c.consistent = off == bump && listed == 0 && listed_ok;
            c
        })
    }
}

/// A call inside an object (see `Arena::enter`).
pub struct Obj<'a> {
    arena: &'a Arena,
    off: u64,
    token: u64,
    kind: u32,
    /// Where this call is counted (`Callers::enter`).
    entry: usize,
}

impl Obj<'_> {
    pub fn payload(&self) -> *mut u8 {
        self.arena.payload(self.off)
    }

    /// False once the object was freed: a waiting call gives up.
    pub fn alive(&self) -> bool {
        self.arena.check(self.token, self.kind) == Some(self.off)
    }
}

impl Drop for Obj<'_> {
    fn drop(&mut self) {
        self.arena.header().callers.leave(self.entry);
    }
}
