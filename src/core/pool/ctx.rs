//! What workers see at `ctx`. Workers are forks of the zygote, which was forked at creation and
//! never runs user code: at any address, a worker starts from the zygote's bytes. A `ctx`
//! passed by address must therefore have, where the pool can tell, the same bytes here as in
//! the zygote; a `ctx` copied with the call must not carry pointers workers cannot follow (a
//! C++ loop body capturing `[&total]` sends a pointer into the caller's stack).

use super::snapshot::{Loader, Static};
use super::*;
use crate::core::error::Error;
use crate::sys::peek;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::AtomicBool;

/// Bytes compared at a `ctx` passed by address: its variable's, from `ctx` on, for static data
/// whose symbols are known (at most VARIABLE); elsewhere the size is unknown: the first WINDOW.
const WINDOW: usize = 64;
const VARIABLE: usize = 1024;
/// Bytes of a copied `ctx` scanned for pointers (a closure's captures come first), and how
/// many of the words found there may each cost a system call to tell a number from a pointer.
const SCANNED: usize = 4096;
const MAX_PROBES: usize = 4;
/// Pointers in a copied `ctx` whose targets are compared with the workers' bytes, per call.
const MAX_POINTEES: usize = 8;
/// Words outside this range are numbers, never pointers into user memory.
const USER: std::ops::Range<usize> = 1 << 16..1 << 48;
/// Pages of the zygote's memory kept per pool (up to 1 MiB).
const MAX_PAGES: usize = 256;

thread_local! {
    /// The calling thread's stack, looked up once per thread.
    static STACK: Option<(usize, usize)> = peek::thread_stack();
}

/// Zygote pages by address (`None`: the zygote has nothing mapped there).
type PageCache = HashMap<usize, Option<Box<[u8; PAGE]>>, BuildHasherDefault<PageHash>>;

/// Pages of the zygote's memory, read when first needed (`process_vm_readv`, else by asking
/// the zygote) and kept: they change only where the zygote itself allocates or runs, in memory
/// that was free at creation (a `ctx` there is refused unless its bytes happen to be the same).
#[derive(Default)]
pub(crate) struct ZygotePages {
    pages: Mutex<PageCache>,
    /// Set once the kernel refused to let us read the zygote: from then on, we ask it.
    pub(crate) denied: AtomicBool,
    /// One question to the zygote at a time.
    asking: Mutex<u32>,
}

/// Hashes a page address with one multiplication (the default hasher costs more than the
/// rest of a repeated check).
#[derive(Default)]
struct PageHash(u64);

impl Hasher for PageHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3));
    }
    fn write_usize(&mut self, page: usize) {
        self.0 = (page as u64 >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Memory this process can read without a fault, known without a system call.
enum Here {
    /// Constants or code of an object loaded at creation: the same bytes in every process.
    Constant,
    /// Readable up to `end`; the variable there ends at `variable_end`, if known.
    Until { end: usize, variable_end: Option<usize> },
}

/// The bytes at `addr` here that workers must have too: the variable there (static data with
/// symbols, up to VARIABLE), else a WINDOW; read without a fault where `here` does not know the
/// memory (into `buf`). Empty if nothing is mapped there.
fn host_bytes(addr: usize, here: Option<Here>, buf: &mut [u8; WINDOW]) -> Result<&[u8]> {
    match here {
        Some(Here::Until { end, variable_end }) => {
            let n = variable_end.map_or(WINDOW, |v| (v - addr).min(VARIABLE)).min(end - addr);
            // SAFETY: [addr, end) is mapped and readable in this process (`here`); the bytes are
            // only compared, while the caller's call lasts.
            Ok(unsafe { std::slice::from_raw_parts(addr as *const u8, n) })
        }
        _ => {
            let n = peek::read_own(addr, buf).map_err(|e| Error::sys("reading the memory ctx points to", e))?;
            Ok(&buf[..n])
        }
    }
}

impl Shared {
    /// Checks the `ctx` of a call (after `check_ctx_size`). Passed by address: workers must
    /// see the bytes the caller has. Copied: the copy must not hold pointers into the calling
    /// thread's stack, into memory mapped after creation, or to bytes that changed since; with
    /// `shared_only` (a C++ loop body's captures), no pointer into this process's private memory
    /// at all (what workers write there is lost).
    pub(crate) fn check_ctx(&self, ctx: usize, ctx_size: usize, shared_only: bool) -> Result<()> {
        self.check_ctx_with(ctx, ctx_size, shared_only, &Loader::default())
    }

    /// `check_ctx` within a submission that may have read the loader's generation already.
    pub(super) fn check_ctx_with(&self, ctx: usize, ctx_size: usize, shared_only: bool, loader: &Loader) -> Result<()> {
        if ctx_size == 0 {
            return self.check_ctx_address(ctx, loader);
        }
        // SAFETY: the caller's ctx is readable for ctx_size bytes (its contract; NULL was refused).
        let bytes = unsafe { std::slice::from_raw_parts(ctx as *const u8, ctx_size.min(SCANNED)) };
        self.check_ctx_copy(bytes, shared_only, loader)
    }

    fn in_pool(&self, addr: usize) -> bool {
        (self.map.base() as usize..self.map.base() as usize + self.map.len()).contains(&addr)
    }

    fn here(&self, addr: usize, loader: &Loader) -> Option<Here> {
        match self.snapshot.static_at(addr, loader) {
            Some(Static::Constant) => return Some(Here::Constant),
            Some(Static::Data { end, variable_end }) => return Some(Here::Until { end, variable_end }),
            None => {}
        }
        if let Some((_, top)) = STACK.with(|s| *s) {
            if (peek::stack_pointer()..top).contains(&addr) {
                return Some(Here::Until { end: top, variable_end: None });
            }
        }
        let brk = peek::program_break();
        (self.snapshot.brk_start..brk).contains(&addr).then_some(Here::Until { end: brk, variable_end: None })
    }

    fn check_ctx_address(&self, ctx: usize, loader: &Loader) -> Result<()> {
        // Shared memory (this pool's, another's, the IPC arena's, the caller's MAP_SHARED
        // mappings made before the pool) is the same memory in the workers.
        if ctx == 0 || self.in_pool(ctx) || self.snapshot.shared_at(ctx) {
            return Ok(());
        }
        let mut buf = [0u8; WINDOW];
        let here = self.here(ctx, loader);
        if matches!(here, Some(Here::Constant)) {
            return Ok(());
        }
        let host = host_bytes(ctx, here, &mut buf)?;
        if host.is_empty() {
            return Ok(()); // nothing there: a number passed as a pointer, which only the task reads
        }
        let Some(end) = self.snapshot.created_end(ctx) else {
            return Err(Error::inval(format!(
                "ctx {ctx:#x} points into memory mapped after the pool was created, which workers do not have: \
                 pass ctx_size to copy it with the call (or allocate it before pool_create, or with pool_shm_alloc)"
            )));
        };
        let n = host.len().min(end - ctx);
        match self.zygote_differs(ctx, &host[..n])? {
            None => Ok(()),
            Some(off) => Err(Error::inval(format!(
                "ctx {ctx:#x} points to memory that changed after the pool was created (byte {off} of the {n} \
                 compared differs from the workers' copy, e.g. a struct filled or allocated after pool_create): \
                 workers see memory as it was then; pass ctx_size to copy the value with the call"
            ))),
        }
    }

    fn check_ctx_copy(&self, bytes: &[u8], shared_only: bool, loader: &Loader) -> Result<()> {
        let stack = STACK.with(|s| *s);
        let (mut probes, mut pointees) = (0, 0);
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let w = usize::from_ne_bytes(w.try_into().expect("8 bytes"));
            if stack.is_some_and(|(lo, hi)| (lo..hi).contains(&w)) {
                return Err(Error::inval(format!(
                    "ctx (copied with ctx_size) holds at byte {} a pointer into the calling thread's stack ({w:#x}): \
                     workers have their own copy of that stack, as it was when the pool was created, so they would \
                     read old values and their writes would be lost. In C++, the loop body captures a reference or \
                     pointer to the caller's stack, e.g. [&total]: capture by value, or write results through \
                     pool.shm_alloc<T>() memory",
                    i * 8
                )));
            }
            if !USER.contains(&w) || self.in_pool(w) || self.snapshot.shared_at(w) {
                continue;
            }
            let here = self.here(w, loader);
            let mapped = match &here {
                Some(_) => true,
                None if probes < MAX_PROBES => {
                    probes += 1;
                    peek::read_own(w, &mut [0u8]).is_ok_and(|n| n > 0)
                }
                None => false,
            };
            if !mapped || matches!(here, Some(Here::Constant)) {
                continue; // a number, or constants every process has
            }
            if self.snapshot.created_end(w).is_none() {
                return Err(Error::inval(format!(
                    "ctx (copied with ctx_size) holds at byte {} a pointer ({w:#x}) into memory mapped after the pool \
                     was created, which workers do not have. In C++, the loop body captures a pointer to such \
                     memory: allocate it with pool.shm_alloc<T>() (or before the pool)",
                    i * 8
                )));
            }
            if shared_only {
                return Err(Error::inval(format!(
                    "ctx (copied with ctx_size) holds at byte {} a pointer ({w:#x}) into this process's own memory \
                     (its heap, a stack or writable data), which workers see as it was when the pool was created \
                     and whose changes by a worker stay in that worker: a loop body must capture values, or \
                     pointers into pool.shm_alloc<T>() memory (map_blocks carries inputs and results itself)",
                    i * 8
                )));
            }
            // Memory of creation time, read through the pointer: workers read the bytes they have.
            if pointees < MAX_POINTEES {
                pointees += 1;
                let mut buf = [0u8; WINDOW];
                let host = host_bytes(w, here, &mut buf)?;
                let n = host.len().min(self.snapshot.created_end(w).map_or(0, |e| e - w));
                if let Some(off) = self.zygote_differs(w, &host[..n])? {
                    return Err(Error::inval(format!(
                        "ctx (copied with ctx_size) holds at byte {} a pointer ({w:#x}) to memory that changed after the \
                         pool was created (byte {off} there differs from what workers have): they would read old \
                         values. Put what it points to in the copy itself, or in pool_shm_alloc memory",
                        i * 8
                    )));
                }
            }
        }
        Ok(())
    }

    /// Where `host`, the bytes at `addr` here, first differs from the zygote's bytes there;
    /// None if they are the same.
    fn zygote_differs(&self, addr: usize, host: &[u8]) -> Result<Option<usize>> {
        let mut off = 0;
        while off < host.len() {
            let a = addr + off;
            let page = a & !(PAGE - 1);
            let take = (PAGE - (a - page)).min(host.len() - off);
            let differs = |z: &Option<Box<[u8; PAGE]>>| match z {
                None => Some(off), // workers have nothing there
                Some(z) => {
                    let theirs = &z[a - page..a - page + take];
                    theirs.iter().zip(&host[off..off + take]).position(|(x, y)| x != y).map(|i| off + i)
                }
            };
            let known = lock(&self.zpages.pages).get(&page).map(differs);
            let d = match known {
                Some(d) => d,
                None => {
                    let z = self.zygote_page(page)?;
                    let d = differs(&z);
                    let mut pages = lock(&self.zpages.pages);
                    if pages.len() >= MAX_PAGES {
                        // Make room by one page, any (clearing them all made a program cycling
                        // over one page more than the cache holds read the zygote every call).
                        let any = *pages.keys().next().expect("full");
                        pages.remove(&any);
                    }
                    pages.insert(page, z);
                    d
                }
            };
            if d.is_some() {
                return Ok(d);
            }
            off += take;
        }
        Ok(None)
    }

    /// The zygote's page at `page`; None if it has nothing readable there.
    fn zygote_page(&self, page: usize) -> Result<Option<Box<[u8; PAGE]>>> {
        let mut buf = Box::new([0u8; PAGE]);
        let pid = lock(&self.zygote).as_ref().map(|z| z.pid);
        if let (Some(pid), false) = (pid, self.zpages.denied.load(Relaxed)) {
            match peek::read_process(pid, page, &mut buf[..]) {
                Ok(n) => return Ok((n == PAGE).then_some(buf)),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES | libc::ENOSYS)) => {
                    self.zpages.denied.store(true, Relaxed);
                }
                Err(_) => {} // gone, say: asking notices that
            }
        }
        self.ask_zygote(page, buf)
    }

    /// Asks the zygote for a page of its memory (`shm::Peek`), waiting as long as it takes:
    /// until it answers, or dies (the pool then ends, and this fails).
    fn ask_zygote(&self, page: usize, mut buf: Box<[u8; PAGE]>) -> Result<Option<Box<[u8; PAGE]>>> {
        let mut seq = lock(&self.zpages.asking);
        *seq = seq.wrapping_add(1);
        let p = self.view.peek();
        p.addr.store(page as u64, Relaxed);
        p.asked.store(*seq, Release);
        self.ring_zygote();
        while p.answered.load(Acquire) != *seq {
            let seen = p.answered.load(Relaxed);
            if seen != *seq {
                crate::sys::futex::wait(&p.answered, seen, Some(Instant::now() + WATCH_SLICE));
            }
            if p.answered.load(Acquire) != *seq {
                self.watchdog();
                self.check_open(true)?;
            }
        }
        for (b, w) in buf.chunks_exact_mut(8).zip(&p.page) {
            b.copy_from_slice(&w.load(Relaxed).to_ne_bytes());
        }
        Ok((p.len.load(Relaxed) as usize == PAGE).then_some(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Options, Pool};
    use crate::core::error::Status;
    use std::os::raw::{c_int, c_void};
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    static UNCHANGED: AtomicU64 = AtomicU64::new(5);
    static CHANGED: AtomicU64 = AtomicU64::new(1);

    unsafe extern "C" fn read_ctx(_: *const c_void, out: *mut c_void, ctx: *mut c_void) -> c_int {
        // SAFETY: the test passes a ctx pointing to a u64 and an 8-byte output.
        unsafe { *(out as *mut u64) = *(ctx as *const u64) };
        0
    }

    /// Where the kernel will not let the host read the zygote (forced here; tests/limits.rs
    /// drops root for the real thing), the zygote answers, with the same verdicts.
    #[test]
    fn the_zygote_answers_when_it_may_not_be_read() {
        let p = Pool::new(1, Options::default()).unwrap();
        let sh = p.shared();
        sh.zpages.denied.store(true, SeqCst);
        CHANGED.store(2, SeqCst);
        let apply = |ctx: &AtomicU64| {
            let mut y = 0u64;
            // SAFETY: `y` outlives the result, waited for at once.
            let r = unsafe {
                p.apply_async(read_ctx, std::ptr::null(), 0, &mut y as *mut u64 as *mut u8, 8, ctx.as_ptr() as usize)
            }?;
            // `y` is read only after the wait wrote it (a closure reading it around the wait held
            // a borrow across that write: in release builds it read 0).
            let status = r.wait(None).unwrap().status();
            Ok::<_, crate::core::Error>((status, y))
        };
        assert_eq!(apply(&UNCHANGED).unwrap(), (Status::Ok, 5));
        let e = apply(&CHANGED).unwrap_err();
        assert_eq!(e.status, Status::Inval);
        assert!(e.msg.contains("changed after the pool was created"), "{e}");
        assert!(sh.view.peek().answered.load(SeqCst) > 0, "the zygote was never asked");
        assert!(sh.zpages.denied.load(SeqCst));
    }
}
