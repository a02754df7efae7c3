//! The memory that queues, locks and events live in: one anonymous shared mapping per host,
//! made before the library's first fork (the first pool or process, or the first IPC object),
//! so that every process the library forks afterwards (workers of every pool, `Process`
//! children, and what they fork) sees it at the same address.
//!
//! Objects are named by tokens, not pointers: `(generation << 32) | offset`, checked against
//! the object's kind and generation in shared memory, so a token that was freed, made up, or of
//! another kind is refused in every process, and a token stays valid in the processes that
//! inherit it (a registry in one process's private memory could not do that).
//!
//! The allocator lives in the arena too (any process may create or free objects), under a
//! robust mutex: a process killed inside it leaves the lists consistent (every change is one
//! store), at worst leaking the block it was taking.

use crate::core::error::{Error, Result, Status};
use crate::sys::mem::Mapping;
use crate::sys::robust::{LockError, RobustMutex};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::OnceLock;

/// Default size (virtual: pages cost memory once touched); `POOL_IPC_SIZE` overrides it.
const DEFAULT_LEN: usize = 64 << 20;
const ALIGN: u64 = 64;

#[repr(C)]
struct Header {
    lock: RobustMutex,
    /// Offset of the first byte never handed out.
    bump: AtomicU64,
    /// Offset of the first free block (0: none), linked through `Block::next`.
    free: AtomicU64,
}

/// In front of every object: its size, the free-list link, and who it is now.
#[repr(C)]
struct Block {
    size: AtomicU64,
    next: AtomicU64,
    /// The object's kind (0 while free) and generation: a token names one incarnation.
    kind: AtomicU32,
    generation: AtomicU32,
    /// Calls inside the object now: it is recycled only once they are out.
    users: AtomicU32,
    _pad: [u32; 9],
}

/// Object kinds.
pub const QUEUE: u32 = 0x5155_4555;
pub const LOCK: u32 = 0x4c4f_434b;
pub const EVENT: u32 = 0x4556_4e54;

pub struct Arena {
    map: Mapping,
}

static ARENA: OnceLock<std::result::Result<Arena, String>> = OnceLock::new();

fn len_from_env() -> usize {
    std::env::var("POOL_IPC_SIZE").ok().and_then(|v| crate::core::pool::parse_size(v.trim())).unwrap_or(DEFAULT_LEN)
}

/// The arena, made on first use.
pub fn get() -> Result<&'static Arena> {
    ARENA
        .get_or_init(|| {
            let len = len_from_env().max(1 << 20);
            let map = Mapping::new_anon_shared(len).map_err(|e| {
                format!("mapping the {len} bytes of shared memory for queues, locks and events (POOL_IPC_SIZE): {e}")
            })?;
            let h = map.base() as *mut Header;
            // SAFETY: a fresh zeroed mapping, large enough for the header; nobody else sees it yet.
            unsafe { RobustMutex::init(&raw mut (*h).lock) }
                .map_err(|e| format!("initialising a shared mutex: {e}"))?;
            // SAFETY: as above.
            unsafe { (*h).bump.store(std::mem::size_of::<Header>().next_multiple_of(ALIGN as usize) as u64, SeqCst) };
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

    fn block(&self, off: u64) -> &Block {
        // SAFETY: callers pass offsets of blocks inside the mapping (checked by `token_block`
        // for outside tokens).
        unsafe { &*(self.map.base().add(off as usize) as *const Block) }
    }

    /// Address of the object at `off` (its payload, after the block header).
    pub fn payload(&self, off: u64) -> *mut u8 {
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
        let need = (size as u64 + std::mem::size_of::<Block>() as u64).next_multiple_of(ALIGN);
        let len = self.map.len() as u64;
        let off = self.locked(|h| {
            // First fit in the free list: unlinked with one store.
            let mut prev: Option<&AtomicU64> = None;
            let mut cur = h.free.load(SeqCst);
            while cur != 0 {
                let b = self.block(cur);
                if b.size.load(SeqCst) >= need {
                    prev.unwrap_or(&h.free).store(b.next.load(SeqCst), SeqCst);
                    return Some(cur);
                }
                prev = Some(&b.next);
                cur = b.next.load(SeqCst);
            }
            let at = h.bump.load(SeqCst);
            (at + need <= len).then(|| {
                self.block(at).size.store(need, SeqCst);
                h.bump.store(at + need, SeqCst);
                at
            })
        })?;
        let Some(off) = off else {
            return Err(Error::new(
                Status::NoMem,
                format!(
                    "{size} bytes do not fit in the {} bytes of shared memory for queues, locks and events; set POOL_IPC_SIZE (before the first pool, process or queue) to make it larger",
                    self.map.len()
                ),
            ));
        };
        let b = self.block(off);
        // SAFETY: the payload of a block we now own, `need - header` bytes.
        unsafe {
            std::ptr::write_bytes(self.payload(off), 0, (b.size.load(SeqCst) as usize) - std::mem::size_of::<Block>())
        };
        let generation = b.generation.load(SeqCst).wrapping_add(1).max(1);
        b.generation.store(generation, SeqCst);
        b.kind.store(kind, SeqCst);
        Ok((generation as u64) << 32 | off)
    }

    /// Whether `token` names a live object of `kind`: its offset if so.
    fn check(&self, token: u64, kind: u32) -> Option<u64> {
        let off = token & 0xffff_ffff;
        let hdr = (std::mem::size_of::<Header>() as u64).next_multiple_of(ALIGN);
        let in_range = off >= hdr
            && off % ALIGN == 0
            && off + std::mem::size_of::<Block>() as u64 <= self.header().bump.load(SeqCst);
        let b = in_range.then(|| self.block(off))?;
        (b.kind.load(SeqCst) == kind && b.generation.load(SeqCst) == (token >> 32) as u32).then_some(off)
    }

    /// Enters the live object of `kind` that `token` names (`what` names it in messages); it
    /// is not recycled while the returned guard lives.
    pub fn enter(&self, token: u64, kind: u32, what: &str) -> Result<Obj<'_>> {
        let refused =
            || Error::inval(format!("{what} is not a live {what} (freed, of another kind, or never created)"));
        let off = self.check(token, kind).ok_or_else(refused)?;
        self.block(off).users.fetch_add(1, SeqCst);
        let obj = Obj { arena: self, off, token, kind };
        if !obj.alive() {
            return Err(refused()); // freed between the check and the count (the guard uncounts)
        }
        Ok(obj)
    }

    /// Frees the object `token` names: new calls on it are refused at once; calls inside it
    /// are woken by `wake` (they see it gone) and its memory is reused once they are out (if one
    /// never comes out, its process killed inside, the block is left unused: never reused
    /// under a user).
    pub fn free(&self, token: u64, kind: u32, what: &str, wake: impl Fn(*mut u8)) -> Result<()> {
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
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while b.users.load(SeqCst) != 0 {
            wake(self.payload(off));
            if std::time::Instant::now() >= until {
                return Ok(());
            }
            crate::sys::futex::wait(
                &b.users,
                b.users.load(SeqCst),
                Some(std::time::Instant::now() + std::time::Duration::from_millis(10)),
            );
        }
        self.locked(|h| {
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
        b.users.fetch_sub(1, SeqCst);
        if b.kind.load(SeqCst) == 0 {
            crate::sys::futex::wake(&b.users, i32::MAX); // a free waits for us
        }
    }
}
