//! `pool_transport_t`: one pool over several processes (ranks) joined by the caller's message
//! transport. libpool_mpi is built on it (MPI), which keeps MPI out of libpool itself.

use super::macros::handle;
use super::options::{convert, pool_options_t};
use super::pool::pool_t;
use crate::core::remote::{self, Transport};
use crate::core::{Error, Status};
use std::ffi::CStr;
use std::io;
use std::os::raw::{c_char, c_int, c_void};

/// Largest message part a transport is asked to carry (1 GiB: fits an `int` count). Longer
/// messages are cut into parts of this size, sent in order with the same tag.
pub const POOL_TRANSPORT_MAX_PART: usize = 1 << 30;

/// A message transport between the processes (ranks) of one pool, given to
/// `pool_create_distributed`. Every callback is called from one thread at a time (on the root,
/// the pool's runner thread; elsewhere the thread that called `pool_create_distributed`), never
/// with more than `POOL_TRANSPORT_MAX_PART` bytes. Tags are small positive ints.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_transport_t {
    /// `sizeof(pool_transport_t)`.
    pub struct_size: usize,
    /// Passed to every callback.
    pub ctx: *mut c_void,
    /// This process's rank, the number of ranks, and the rank that gets the pool.
    pub rank: c_int,
    pub size: c_int,
    pub root: c_int,
    /// Sends `len` bytes to rank `dest` with `tag`. May return before the message is received
    /// but must not keep `buf`. Returns 0, or -1 on failure.
    pub send: Option<
        unsafe extern "C" fn(ctx: *mut c_void, dest: c_int, tag: c_int, buf: *const c_void, len: usize) -> c_int,
    >,
    /// Looks for an arrived message without blocking: 1 with its source, tag and length set, 0
    /// if there is none, -1 on failure.
    pub probe:
        Option<unsafe extern "C" fn(ctx: *mut c_void, source: *mut c_int, tag: *mut c_int, len: *mut usize) -> c_int>,
    /// Receives the next message from `source` with `tag`, `len` bytes (as probed, or the next
    /// part of a long message), waiting for it. Returns 0, or -1 on failure.
    pub recv: Option<
        unsafe extern "C" fn(ctx: *mut c_void, source: c_int, tag: c_int, buf: *mut c_void, len: usize) -> c_int,
    >,
    /// Called once when the pool no longer needs the transport (may be NULL).
    pub release: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// If not NULL, the transport cannot work (it says why): `pool_create_distributed` fails
    /// with `POOL_EINVAL` and this message, without sending anything.
    pub error: *const c_char,
}

/// The callbacks, checked once.
struct CTransport {
    ctx: usize,
    rank: usize,
    size: usize,
    root: usize,
    send: unsafe extern "C" fn(*mut c_void, c_int, c_int, *const c_void, usize) -> c_int,
    probe: unsafe extern "C" fn(*mut c_void, *mut c_int, *mut c_int, *mut usize) -> c_int,
    recv: unsafe extern "C" fn(*mut c_void, c_int, c_int, *mut c_void, usize) -> c_int,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    /// Largest part handed to `send` (POOL_TRANSPORT_MAX_PART; smaller in tests).
    part: usize,
}

fn failed(what: &str) -> io::Error {
    io::Error::other(format!("the transport's {what} failed"))
}

impl Transport for CTransport {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn root(&self) -> usize {
        self.root
    }

    /// A message goes as parts of at most MAX_PART bytes; the first starts with the total
    /// length (8 bytes, little-endian).
    fn send(&mut self, to: usize, tag: i32, msg: &[u8]) -> io::Result<()> {
        let head = (msg.len() as u64).to_le_bytes();
        let first = msg.len().min(self.part - 8);
        let mut part = Vec::with_capacity(8 + first);
        part.extend_from_slice(&head);
        part.extend_from_slice(&msg[..first]);
        let mut parts = std::iter::once(&part[..]).chain(msg[first..].chunks(self.part));
        parts.try_for_each(|p| {
            // SAFETY: the C callback reads `p.len()` bytes of a live buffer and keeps no pointer.
            let rc =
                unsafe { (self.send)(self.ctx as *mut c_void, to as c_int, tag, p.as_ptr() as *const c_void, p.len()) };
            if rc == 0 {
                Ok(())
            } else {
                Err(failed("send"))
            }
        })
    }

    fn try_recv(&mut self) -> io::Result<Option<(usize, i32, Vec<u8>)>> {
        let (mut src, mut tag, mut len) = (-1 as c_int, 0 as c_int, 0usize);
        // SAFETY: three valid out-pointers.
        match unsafe { (self.probe)(self.ctx as *mut c_void, &mut src, &mut tag, &mut len) } {
            0 => return Ok(None),
            1 => {}
            _ => return Err(failed("probe")),
        }
        if src < 0 || src as usize >= self.size || !(8..=self.part).contains(&len) {
            return Err(io::Error::other(format!("the transport probed a message of {len} bytes from rank {src}")));
        }
        let mut first = vec![0u8; len];
        self.recv_part(src, tag, &mut first)?;
        let total = u64::from_le_bytes(first[..8].try_into().expect("8 bytes")) as usize;
        if total < len - 8 {
            return Err(io::Error::other("a message shorter than its first part"));
        }
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&first[8..]);
        while msg.len() < total {
            let at = msg.len();
            msg.resize(at + (total - at).min(self.part), 0);
            self.recv_part(src, tag, &mut msg[at..])?;
        }
        Ok(Some((src as usize, tag, msg)))
    }

    fn release(&mut self) {
        if let Some(r) = self.release.take() {
            // SAFETY: the caller's release callback, called once.
            unsafe { r(self.ctx as *mut c_void) };
        }
    }
}

impl Drop for CTransport {
    /// Whatever path the pool's creation or end takes, the caller gets its transport back.
    fn drop(&mut self) {
        Transport::release(self);
    }
}

impl CTransport {
    fn recv_part(&mut self, src: c_int, tag: c_int, buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: `buf` is writable for its length.
        let rc = unsafe { (self.recv)(self.ctx as *mut c_void, src, tag, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(failed("recv"))
        }
    }
}

/// Creates one pool over every rank of `transport`, `workers_per_rank` workers on each (0: one
/// per CPU). Collective: every rank calls it. On the root rank it returns the pool: every pool
/// function works on it, and its work runs on the workers of all ranks (the root's own
/// included). On every other rank it runs the tasks it is sent in local workers of its own,
/// until the root's pool is destroyed, then returns NULL with `pool_last_status() ==
/// POOL_EDONE`; any other status is a real failure (on every rank, e.g. ranks that run
/// different programs). Each rank uses its own `opts` (initializer, limits, `start_timeout`),
/// except `task_timeout`: the root's applies to every item. A rank whose workers fail to start
/// (an initializer that crashed, refused or hung past its `start_timeout`) fails every rank
/// with its status and a message naming it.
///
/// Functions cross ranks as (build-id of the object holding them, offset), so they must be in
/// the program, a library it links, or a plugin loaded on every rank before this call; `ctx`
/// must be NULL, copied (`ctx_size`) or in constant (read-only) data. Other items fail with
/// `POOL_EINVAL`. A rank whose own arguments are wrong fails every rank (none waits forever).
/// Ownership: the transport's `ctx` stays the caller's until `release` is called.
/// Thread safety: call from one thread per rank.
#[no_mangle]
pub extern "C" fn pool_create_distributed(
    transport: *const pool_transport_t,
    workers_per_rank: c_int,
    opts: *const pool_options_t,
) -> *mut pool_t {
    handle(|| {
        require!(!transport.is_null(), "transport is NULL");
        // SAFETY: checked non-NULL; the caller passes a valid struct of at least struct_size.
        let t = unsafe { &*transport };
        require!(t.struct_size >= std::mem::size_of::<pool_transport_t>(), "transport.struct_size is too small");
        if !t.error.is_null() {
            // SAFETY: a NUL-terminated message from the transport.
            let why = unsafe { CStr::from_ptr(t.error) }.to_string_lossy().into_owned();
            return Err(Error::inval(why));
        }
        let (Some(send), Some(probe), Some(recv)) = (t.send, t.probe, t.recv) else {
            return Err(Error::inval("the transport's send, probe and recv must not be NULL"));
        };
        // From here on, dropping it gives the transport back (release), whatever fails.
        let ct = CTransport {
            ctx: t.ctx as usize,
            rank: t.rank.max(0) as usize,
            size: t.size.max(0) as usize,
            root: t.root.max(0) as usize,
            send,
            probe,
            recv,
            release: t.release,
            part: POOL_TRANSPORT_MAX_PART,
        };
        require!(t.size > 0 && (0..t.size).contains(&t.rank), format!("rank {} of {} ranks", t.rank, t.size));
        require!((0..t.size).contains(&t.root), format!("root is {}: not a rank of {}", t.root, t.size));
        // What one rank alone may get wrong fails every rank, never leaves the others waiting.
        let local = (|| {
            require!(workers_per_rank >= 0, format!("workers_per_rank is {workers_per_rank}: it must be >= 0"));
            convert(opts)
        })();
        let opts = match local {
            Ok(o) => o,
            Err(e) => return Err(remote::fail_together(Box::new(ct), e)),
        };
        if t.rank == t.root {
            Ok(pool_t::new(remote::create_root(Box::new(ct), workers_per_rank, opts)?))
        } else {
            remote::serve(Box::new(ct), workers_per_rank, opts)?;
            Err(Error::new(Status::Done, "this rank served the root's pool until it was destroyed"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    thread_local! {
        /// Parts in flight: (source, tag, bytes).
        static WIRE: RefCell<VecDeque<(c_int, c_int, Vec<u8>)>> = const { RefCell::new(VecDeque::new()) };
    }

    unsafe extern "C" fn send(_: *mut c_void, _dest: c_int, tag: c_int, buf: *const c_void, len: usize) -> c_int {
        // SAFETY: the transport passes a live buffer of len bytes.
        let b = unsafe { std::slice::from_raw_parts(buf as *const u8, len) }.to_vec();
        WIRE.with(|w| w.borrow_mut().push_back((0, tag, b)));
        0
    }
    unsafe extern "C" fn probe(_: *mut c_void, src: *mut c_int, tag: *mut c_int, len: *mut usize) -> c_int {
        WIRE.with(|w| match w.borrow().front() {
            // SAFETY: valid out-pointers from try_recv.
            Some((s, t, b)) => unsafe {
                (*src, *tag, *len) = (*s, *t, b.len());
                1
            },
            None => 0,
        })
    }
    unsafe extern "C" fn recv(_: *mut c_void, _src: c_int, tag: c_int, buf: *mut c_void, len: usize) -> c_int {
        WIRE.with(|w| match w.borrow_mut().pop_front() {
            Some((_, t, b)) if t == tag && b.len() == len => {
                // SAFETY: buf holds len bytes.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), buf as *mut u8, len) };
                0
            }
            _ => -1,
        })
    }

    /// Messages longer than a part cross as several parts and arrive whole, in order.
    #[test]
    fn long_messages_cross_in_parts() {
        let mut t = CTransport { ctx: 0, rank: 0, size: 1, root: 0, send, probe, recv, release: None, part: 16 };
        let msgs: Vec<Vec<u8>> =
            [0usize, 1, 7, 8, 9, 16, 100, 1000].iter().map(|&n| (0..n).map(|i| i as u8).collect()).collect();
        for (k, m) in msgs.iter().enumerate() {
            t.send(0, k as i32 + 1, m).unwrap();
        }
        let parts = WIRE.with(|w| w.borrow().len());
        assert!(parts > msgs.len(), "long messages were cut into parts");
        assert!(WIRE.with(|w| w.borrow().iter().all(|(_, _, b)| b.len() <= 16)));
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(t.try_recv().unwrap(), Some((0, k as i32 + 1, m.clone())));
        }
        assert_eq!(t.try_recv().unwrap(), None);
    }
}
