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
//! robust mutex: a process killed inside it leaves the lists consistent (every change is
//! published by one store), at worst leaking the block it was taking. A freed object's memory
//! is reused only once no live process is inside a call on it (calls register their process
//! in the block; a process that died inside does not count), and only if the object agrees (a
//! lock still held by a thread is never reused: glibc still lists it for that thread).

use crate::core::error::{Error, Result, Status};
use crate::sys::mem::Mapping;
use crate::sys::proc;
use crate::sys::robust::{LockError, RobustMutex};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Default size (virtual: pages cost memory once touched); `POOL_IPC_SIZE` overrides it.
const DEFAULT_LEN: usize = 64 << 20;
/// Largest arena: tokens carry 32-bit offsets.
const MAX_LEN: usize = 4 << 30;
const ALIGN: u64 = 64;
/// A free block is split when the rest would hold at least this much.
const MIN_SPLIT: u64 = 2 * ALIGN;
/// Processes tracked per object while inside calls; more at once are counted without a pid.
const USER_SLOTS: usize = 4;

#[repr(C)]
struct Header {
    lock: RobustMutex,
    /// Offset of the first byte never handed out.
    bump: AtomicU64,
    /// Offset of the first free block (0: none), linked through `Block::next`.
    free: AtomicU64,
    /// The last generation handed out.
    generation: AtomicU32,
    /// Where the blocks begin (after this header and the bitmap of block starts).
    first: AtomicU64,
}

/// In front of every object: its size, the free-list link, who it is now, who is inside.
#[repr(C)]
struct Block {
    size: AtomicU64,
    next: AtomicU64,
    /// The object's kind (0 while free) and generation: a token names one incarnation.
    kind: AtomicU32,
    generation: AtomicU32,
    /// Processes inside a call on the object: `pid << 32 | calls` each.
    users: [AtomicU64; USER_SLOTS],
    /// Calls by processes that found no free slot.
    others: AtomicU64,
}

/// Object kinds. A block is FREE while on the free list, 0 while being freed (or left unused
/// for good because someone is stuck inside it).
const FREE: u32 = 0x4652_4545;
pub(crate) const QUEUE: u32 = 0x5155_4555;
pub(crate) const LOCK: u32 = 0x4c4f_434b;
pub(crate) const EVENT: u32 = 0x4556_4e54;

pub struct Arena {
    map: Mapping,
}

static ARENA: OnceLock<std::result::Result<Arena, String>> = OnceLock::new();

fn len_from_env() -> usize {
    let len = std::env::var("POOL_IPC_SIZE").ok().and_then(|v| crate::core::pool::parse_size(v.trim()));
    len.unwrap_or(DEFAULT_LEN).clamp(1 << 20, MAX_LEN - 4096)
}

/// The arena, made on first use.
pub fn get() -> Result<&'static Arena> {
    ARENA
        .get_or_init(|| {
            let len = len_from_env();
            let map = Mapping::new_anon_shared(len).map_err(|e| {
                format!("mapping the {len} bytes of shared memory for queues, locks and events (POOL_IPC_SIZE): {e}")
            })?;
            let h = map.base() as *mut Header;
            // SAFETY: a fresh zeroed mapping, large enough for the header; nobody else sees it yet.
            unsafe { RobustMutex::init(&raw mut (*h).lock) }
                .map_err(|e| format!("initialising a shared mutex: {e}"))?;
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
                let r = f(h);
                let _ = h.lock.unlock();
                Ok(r)
            }
            Err(LockError::TimedOut) => unreachable!("no deadline"),
            Err(LockError::Os(e)) => Err(Error::sys("locking the shared memory of queues, locks and events", e)),
        }
    }

    /// A new object of `kind` with `size` bytes of zeroed payload; returns its token.
    pub fn alloc(&self, kind: u32, size: usize) -> Result<u64> {
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
        let b = self.block(off);
        self.clear_users(b);
        // SAFETY: the payload of a block we now own.
        unsafe {
            std::ptr::write_bytes(self.payload(off), 0, (b.size.load(SeqCst) as usize) - std::mem::size_of::<Block>())
        };
        b.generation.store(generation, SeqCst);
        b.kind.store(kind, SeqCst);
        Ok((generation as u64) << 32 | off)
    }

    /// A block of `need` bytes (under the lock) and its generation: first fit on the free list,
    /// else fresh memory.
    fn take(&self, h: &Header, need: u64) -> Option<(u64, u32)> {
        let len = self.map.len() as u64;
        {
            // First fit in the free list, unlinked with one store; the rest of a big block is
            // split off as a free block of its own, linked in its place.
            let mut prev: Option<&AtomicU64> = None;
            let mut cur = h.free.load(SeqCst);
            while cur != 0 {
                let b = self.block(cur);
                let have = b.size.load(SeqCst);
                if have >= need {
                    let next = b.next.load(SeqCst);
                    let link = prev.unwrap_or(&h.free);
                    if have - need >= MIN_SPLIT {
                        let rest = cur + need;
                        let r = self.block(rest);
                        r.kind.store(FREE, SeqCst);
                        r.size.store(have - need, SeqCst);
                        r.next.store(next, SeqCst);
                        self.clear_users(r);
                        self.mark_start(rest);
                        b.size.store(need, SeqCst);
                        link.store(rest, SeqCst);
                    } else {
                        link.store(next, SeqCst);
                    }
                    return Some((cur, h.generation.fetch_add(1, SeqCst).wrapping_add(1).max(1)));
                }
                prev = Some(&b.next);
                cur = b.next.load(SeqCst);
            }
            let at = h.bump.load(SeqCst);
            (at + need <= len).then(|| {
                self.block(at).size.store(need, SeqCst);
                self.mark_start(at);
                h.bump.store(at + need, SeqCst);
                (at, h.generation.fetch_add(1, SeqCst).wrapping_add(1).max(1))
            })
        }
    }

    /// Merges neighbouring free blocks and gives a free run at the end back to fresh memory,
    /// then rebuilds the free list (under the lock; only when an allocation found no room).
    /// Blocks tile the memory from `first` to `bump`, so one walk by their sizes sees them all.
    fn defragment(&self, h: &Header) {
        let (first, bump) = (h.first.load(SeqCst), h.bump.load(SeqCst));
        let unmark = |off: u64| {
            self.start_word(off).fetch_and(!(1 << ((off / ALIGN) % 64)), SeqCst);
        };
        let mut free = Vec::new();
        let mut off = first;
        while off < bump {
            let b = self.block(off);
            let mut size = b.size.load(SeqCst);
            if size == 0 || off + size > bump {
                return; // not a tiling we understand (memory overwritten): leave everything as is
            }
            if b.kind.load(SeqCst) == FREE {
                while off + size < bump && self.block(off + size).kind.load(SeqCst) == FREE {
                    let next = off + size;
                    let n = self.block(next).size.load(SeqCst);
                    if n == 0 || next + n > bump {
                        break;
                    }
                    unmark(next);
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
                unmark(last);
                h.bump.store(last, SeqCst);
            }
        }
        for &f in free.iter().rev() {
            self.block(f).next.store(h.free.load(SeqCst), SeqCst);
            h.free.store(f, SeqCst);
        }
    }

    fn clear_users(&self, b: &Block) {
        b.users.iter().for_each(|u| u.store(0, SeqCst));
        b.others.store(0, SeqCst);
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

    /// Enters the live object of `kind` that `token` names (`what` names it in messages); it
    /// is not recycled while the returned guard lives.
    pub fn enter(&self, token: u64, kind: u32, what: &str) -> Result<Obj<'_>> {
        let refused =
            || Error::inval(format!("{what} is not a live {what} (freed, of another kind, or never created)"));
        let off = self.check(token, kind).ok_or_else(refused)?;
        let slot = self.register(self.block(off));
        let obj = Obj { arena: self, off, token, kind, slot };
        if !obj.alive() {
            return Err(refused()); // freed between the check and the registration (the guard leaves)
        }
        Ok(obj)
    }

    /// Counts this process in: in a slot with its pid if one is free or already its own, else
    /// among the others. Returns the slot used (USER_SLOTS: the others).
    fn register(&self, b: &Block) -> usize {
        let me = proc::getpid() as u64;
        for (i, u) in b.users.iter().enumerate() {
            let mut cur = u.load(SeqCst);
            loop {
                let (pid, calls) = (cur >> 32, cur & 0xffff_ffff);
                let next = if pid == me && calls < 0xffff_ffff {
                    cur + 1
                } else if calls == 0 {
                    me << 32 | 1
                } else {
                    break;
                };
                match u.compare_exchange(cur, next, SeqCst, SeqCst) {
                    Ok(_) => return i,
                    Err(c) => cur = c,
                }
            }
        }
        b.others.fetch_add(1, SeqCst);
        USER_SLOTS
    }

    /// True while a live process is inside a call on the block (a process that died inside
    /// does not count; calls without a slot always do).
    fn in_use(&self, b: &Block) -> bool {
        b.others.load(SeqCst) != 0
            || b.users.iter().any(|u| {
                let v = u.load(SeqCst);
                v & 0xffff_ffff != 0 && !proc::is_dead((v >> 32) as libc::pid_t)
            })
    }

    /// Frees the object `token` names: new calls on it are refused at once; calls inside it
    /// are woken by `wake` (they see it gone) and its memory is reused once none is inside and
    /// `reusable` agrees. A process stopped inside a call, or an object that says no, leaves
    /// the block unused for good: it is never reused under someone.
    pub fn free(
        &self,
        token: u64,
        kind: u32,
        what: &str,
        wake: impl Fn(*mut u8),
        reusable: impl Fn(*mut u8) -> bool,
    ) -> Result<()> {
        let off = self
            .locked(|_| {
                let off = self.check(token, kind)?;
                self.block(off).kind.store(0, SeqCst);
                Some(off)
            })?
            .ok_or_else(|| {
                Error::inval(format!("{what} is not a live {what} (already freed, of another kind, or never created)"))
            })?;
        let b = self.block(off);
        let until = Instant::now() + Duration::from_secs(2);
        while self.in_use(b) {
            wake(self.payload(off));
            if Instant::now() >= until {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if !reusable(self.payload(off)) {
            return Ok(());
        }
        self.locked(|h| {
            b.kind.store(FREE, SeqCst);
            b.next.store(h.free.load(SeqCst), SeqCst);
            h.free.store(off, SeqCst);
        })
    }
}

/// A call inside an object (see `Arena::enter`).
pub struct Obj<'a> {
    arena: &'a Arena,
    off: u64,
    token: u64,
    kind: u32,
    /// Where this call is counted (`Arena::register`).
    slot: usize,
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
        let b = self.arena.block(self.off);
        match b.users.get(self.slot) {
            Some(u) => u.fetch_sub(1, SeqCst),
            None => b.others.fetch_sub(1, SeqCst),
        };
    }
}
