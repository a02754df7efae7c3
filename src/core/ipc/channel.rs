//! A bounded multi-producer, multi-consumer queue of byte messages in the arena, for the host's
//! threads and every process it forks (`pool_queue_t`).
//!
//! Layout: a header (robust lock, ring size, `head`/`tail` byte positions that only grow, the
//! closed flag, two futex words), then the ring. A message is an 8-byte length and its bytes,
//! padded to 8, copied in one or two pieces (it may wrap around the ring's end).
//!
//! Crash consistency: under the lock, a put writes the message into free ring space first and
//! publishes it with one store (`tail`); a get copies it out first and consumes it with one store
//! (`head`). A process killed at any instruction therefore leaves either the message published
//! whole or not at all, and the robust lock passes to the next caller. Readers and writers never
//! see a half-written message.

use super::arena::{self, Obj};
use crate::core::error::{Error, Result, Status};
use crate::sys::futex;
use crate::sys::robust::{LockError, Locked, RobustMutex};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

#[repr(C)]
struct Head {
    lock: RobustMutex,
    /// Ring size in bytes (a multiple of 8).
    ring: AtomicU64,
    head: AtomicU64,
    tail: AtomicU64,
    closed: AtomicU32,
    /// Bumped after every put (getters sleep on it) and every get (putters sleep on it).
    put_seq: AtomicU32,
    get_seq: AtomicU32,
}

const HEAD: usize = std::mem::size_of::<Head>().next_multiple_of(64);
/// How long a call waits for the queue's lock even past its own deadline (others copying).
const LOCK_GRACE: Duration = Duration::from_millis(100);
/// Waiters re-check their condition at least this often (a wake-up lost to a killed peer costs
/// at most this much).
const SLICE: Duration = Duration::from_millis(50);

/// Bytes a message of `len` takes in the ring.
fn record(len: usize) -> u64 {
    (len as u64).checked_next_multiple_of(8).and_then(|l| l.checked_add(8)).unwrap_or(u64::MAX)
}

/// A queue handle: the arena token of its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue(pub u64);

/// What a `get` found.
pub enum Got {
    /// A message of this length was copied into the buffer.
    Message(usize),
    /// The next message has this length, more than the buffer holds; it stays queued.
    TooLong(usize),
}

struct Ring<'a> {
    obj: Obj<'a>,
}

impl Ring<'_> {
    fn head(&self) -> &Head {
        // SAFETY: the object's payload starts with the queue's head (made by `create`).
        unsafe { &*(self.obj.payload() as *const Head) }
    }
    fn ring(&self) -> *mut u8 {
        // SAFETY: the ring follows the head inside the payload.
        unsafe { self.obj.payload().add(HEAD) }
    }
    /// Copies `src` into the ring at position `pos` (wrapping).
    fn write(&self, pos: u64, src: &[u8]) {
        let ring = self.head().ring.load(Relaxed);
        let at = (pos % ring) as usize;
        let first = src.len().min(ring as usize - at);
        // SAFETY: both pieces lie inside the ring; the caller owns this free space under the lock.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ring().add(at), first);
            std::ptr::copy_nonoverlapping(src[first..].as_ptr(), self.ring(), src.len() - first);
        }
    }
    fn read(&self, pos: u64, dst: &mut [u8]) {
        let ring = self.head().ring.load(Relaxed);
        let at = (pos % ring) as usize;
        let first = dst.len().min(ring as usize - at);
        // SAFETY: both pieces lie inside the ring, holding a published message, under the lock.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring().add(at), dst.as_mut_ptr(), first);
            let rest = dst.len() - first;
            std::ptr::copy_nonoverlapping(self.ring(), dst[first..].as_mut_ptr(), rest);
        }
    }
}

fn lock_failed(e: LockError) -> Error {
    match e {
        LockError::TimedOut => Error::new(Status::TimedOut, "the queue stayed locked until the timeout"),
        LockError::Os(e) => Error::sys("locking the queue", e),
    }
}

impl Queue {
    /// A queue holding up to `max_bytes` of messages (any one message up to `max_bytes`).
    pub fn create(max_bytes: usize) -> Result<Queue> {
        if max_bytes == 0 || max_bytes > (1 << 40) {
            return Err(Error::inval(format!("max_bytes is {max_bytes}: it must be between 1 and 2^40")));
        }
        let ring = record(max_bytes);
        let token = arena::get()?.alloc(arena::QUEUE, HEAD + ring as usize, |p| {
            let h = p as *mut Head;
            // SAFETY: a fresh zeroed payload of ours; nobody else has its token yet.
            unsafe {
                RobustMutex::init(&raw mut (*h).lock).map_err(|e| Error::sys("initialising the queue's lock", e))?;
                (*h).ring.store(ring, SeqCst);
            }
            Ok(())
        })?;
        Ok(Queue(token))
    }

    fn enter(&self) -> Result<Ring<'static>> {
        Ok(Ring { obj: arena::get()?.enter(self.0, arena::QUEUE, "queue")? })
    }

    /// Runs `step` under the queue's lock until it returns Some, sleeping on `seq` between
    /// tries, until `deadline`.
    fn until<R>(
        &self,
        deadline: Option<Instant>,
        seq: fn(&Head) -> &AtomicU32,
        mut step: impl FnMut(&Ring) -> Option<Result<R>>,
    ) -> Result<R> {
        let q = self.enter()?;
        loop {
            let seen = seq(q.head()).load(SeqCst);
            // The lock is only held for a copy: a caller that does not want to wait for room or
            // a message still waits that long for the lock (a busy queue is not a full one).
            let lock_by = deadline.map(|d| d.max(Instant::now() + LOCK_GRACE));
            match q.head().lock.lock(lock_by) {
                Ok(Locked::Clean | Locked::OwnerDied) => {}
                Err(e) => return Err(lock_failed(e)),
            }
            kp!(QueueLocked);
            let r = step(&q);
            let _ = q.head().lock.unlock();
            if let Some(r) = r {
                return r;
            }
            if !q.obj.alive() {
                return Err(Error::inval("the queue was freed while this call waited"));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(
                    Status::TimedOut,
                    "the queue did not have what this call waited for before the timeout",
                ));
            }
            let slice = Instant::now() + SLICE;
            futex::wait(seq(q.head()), seen, Some(deadline.map_or(slice, |d| d.min(slice))));
        }
    }

    /// Appends a message, waiting while the queue is full.
    pub fn put(&self, data: &[u8], deadline: Option<Instant>) -> Result<()> {
        let rec = record(data.len());
        self.until(
            deadline,
            |h| &h.get_seq,
            |q| {
                let h = q.head();
                if h.closed.load(SeqCst) != 0 {
                    return Some(Err(Error::closed("the queue is closed")));
                }
                let ring = h.ring.load(Relaxed);
                if rec > ring {
                    return Some(Err(Error::inval(format!(
                        "a message of {} bytes never fits in this queue (at most {} bytes)",
                        data.len(),
                        ring - 8
                    ))));
                }
                let (head, tail) = (h.head.load(SeqCst), h.tail.load(SeqCst));
                if tail - head + rec > ring {
                    return None; // full: wait for a get
                }
                q.write(tail, &(data.len() as u64).to_le_bytes());
                q.write(tail + 8, data);
                kp!(QueuePutWritten);
                h.tail.store(tail + rec, SeqCst); // published: whole, or (killed before) not at all
                kp!(QueuePutPublished);
                h.put_seq.fetch_add(1, SeqCst);
                futex::wake(&h.put_seq, i32::MAX);
                Some(Ok(()))
            },
        )
    }

    /// Takes the oldest message into `buf`, waiting while the queue is empty.
    pub fn get(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<Got> {
        self.until(
            deadline,
            |h| &h.put_seq,
            |q| {
                let h = q.head();
                let (head, tail) = (h.head.load(SeqCst), h.tail.load(SeqCst));
                if head == tail {
                    return h.closed.load(SeqCst).ne(&0).then(|| Err(Error::closed("the queue is closed and empty")));
                }
                let mut len = [0u8; 8];
                q.read(head, &mut len);
                let len = u64::from_le_bytes(len);
                if record(len as usize) > tail - head || len > h.ring.load(Relaxed) {
                    return Some(Err(Error::new(Status::Corrupt, "the queue's memory was overwritten")));
                }
                let len = len as usize;
                if len > buf.len() {
                    return Some(Ok(Got::TooLong(len)));
                }
                q.read(head + 8, &mut buf[..len]);
                kp!(QueueGetCopied);
                h.head.store(head + record(len), SeqCst); // consumed
                kp!(QueueGetConsumed);
                h.get_seq.fetch_add(1, SeqCst);
                futex::wake(&h.get_seq, i32::MAX);
                Some(Ok(Got::Message(len)))
            },
        )
    }

    /// Closes the queue: puts fail with `Closed`, gets drain what is left, then fail with
    /// `Closed`; every waiter wakes.
    pub fn close(&self) -> Result<()> {
        let q = self.enter()?;
        let h = q.head();
        h.closed.store(1, SeqCst);
        kp!(QueueClosed);
        for s in [&h.put_seq, &h.get_seq] {
            s.fetch_add(1, SeqCst);
            futex::wake(s, i32::MAX);
        }
        Ok(())
    }

    /// Frees the queue: calls waiting in it return `POOL_EINVAL`; later calls too.
    pub fn free(self) -> Result<()> {
        arena::get()?.free(self.0, arena::QUEUE, "queue", |p| {
            // SAFETY: the payload of the queue being freed still holds its head.
            let h = unsafe { &*(p as *const Head) };
            for s in [&h.put_seq, &h.get_seq] {
                s.fetch_add(1, SeqCst);
                futex::wake(s, i32::MAX);
            }
        })
    }
}
