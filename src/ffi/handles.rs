//! The C handles: tokens that name objects in a registry of live handles. Every call looks its
//! handle up before touching anything, so a freed, foreign, mistyped or made-up handle gets
//! `POOL_EINVAL` and a message instead of a crash or a hang (SQLite's `SQLITE_MISUSE`).
//!
//! A handle is `BASE | (n * SHARDS + shard) << 4` for the `n`th handle numbered in its shard:
//! never reused in the life of the process, and never the address of anything (`BASE` lies
//! outside every user address range), so a stale or invented pointer can only miss. Lookups
//! clone the object's `Arc` and let go of the registry at once: a thread that frees a handle
//! while another thread is inside a call on it cannot pull the object from under that call,
//! which finishes; the object goes when the last call returns.

use crate::core::worker::IN_WORKER;
use crate::core::Error;
use crate::sys::proc::{self, ForkHooks};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A C object type.
pub(crate) trait Handle: Any + Send + Sync {
    /// Its C name.
    const NAME: &'static str;
    /// What the argument is called in messages.
    const WHAT: &'static str;
    /// Who may use it.
    const OWNER_RULE: &'static str = "a pool can only be used by the process that created it";
}

struct Entry {
    obj: Arc<dyn Any + Send + Sync>,
    /// The C name of its type, for messages.
    kind: &'static str,
    /// The process that created it. A forked child inherits the registry, but the objects it
    /// names act on the parent's pools and processes.
    owner: i32,
}

/// Shards, so that threads working on different handles rarely meet on one lock: each thread
/// creates its handles in a shard of its own (numbering them there), and any thread finds a
/// handle in the shard its token names.
const SHARDS: usize = 64;
/// Non-canonical on x86-64 and in the kernel half on aarch64: no user pointer looks like this.
const BASE: usize = 0xa5 << 56;

struct Shard {
    /// Created on first use (a `HashMap` cannot be built in a static), kept after (capacity).
    map: Option<HashMap<usize, Entry, BuildHasherDefault<TokenHasher>>>,
    /// Handles numbered so far.
    count: usize,
}

#[repr(align(128))]
struct Padded(RwLock<Shard>);

static REGISTRY: [Padded; SHARDS] = [const { Padded(RwLock::new(Shard { map: None, count: 0 })) }; SHARDS];
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: usize = THREADS.fetch_add(1, Relaxed) % SHARDS;
}

fn shard_of(token: usize) -> usize {
    (token >> 4) % SHARDS
}

fn read(s: usize) -> RwLockReadGuard<'static, Shard> {
    REGISTRY[s].0.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(s: usize) -> RwLockWriteGuard<'static, Shard> {
    REGISTRY[s].0.write().unwrap_or_else(PoisonError::into_inner)
}

/// Hashes a token with the splitmix64 finaliser: the table indexes by the low bits, which
/// tokens of one shard share.
#[derive(Default)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.0 = self.0.rotate_left(8) ^ b as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
    fn finish(&self) -> u64 {
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Fails inside a pool's worker (a task): the handles there are copies of the host's, whose
/// pools the worker must not drive.
pub(crate) fn not_in_task() -> Result<(), Error> {
    if IN_WORKER.load(Relaxed) {
        return Err(Error::inval("pool functions cannot be used inside a task (only pool_out_write can)"));
    }
    Ok(())
}

/// Registers a new object and returns its handle.
pub(crate) fn insert<T: Handle>(obj: T) -> *mut T {
    let e = Entry { obj: Arc::new(obj), kind: T::NAME, owner: proc::getpid() };
    let s = MY_SHARD.try_with(|s| *s).unwrap_or(0);
    let mut sh = write(s);
    sh.count += 1;
    let token = BASE | (sh.count * SHARDS + s) << 4;
    sh.map.get_or_insert_with(Default::default).insert(token, e);
    token as *mut T
}

fn not_live<T: Handle>() -> Error {
    Error::inval(format!("{} is not a live handle (freed already, or never returned by libpool?)", T::WHAT))
}

fn wrong_type<T: Handle>(kind: &str) -> Error {
    Error::inval(format!("{} is a {kind} handle, not a {}", T::WHAT, T::NAME))
}

fn foreign<T: Handle>(owner: i32, what_happened: &str) -> Error {
    Error::inval(format!(
        "{}: this {} belongs to process {owner}, and this process ({}) inherited it through fork(){what_happened}",
        T::OWNER_RULE,
        T::WHAT,
        proc::getpid()
    ))
}

/// The object behind handle `h`, after the checks every call makes before anything else: not
/// inside a task, not NULL, live, of type `T`, created by this process.
pub(crate) fn get<T: Handle>(h: *const T) -> Result<Arc<T>, Error> {
    not_in_task()?;
    let token = h as usize;
    if token == 0 {
        return Err(Error::inval(format!("{} is NULL", T::WHAT)));
    }
    let (obj, kind, owner) = match read(shard_of(token)).map.as_ref().and_then(|m| m.get(&token)) {
        Some(e) => (e.obj.clone(), e.kind, e.owner),
        None => return Err(not_live::<T>()),
    };
    let obj = obj.downcast::<T>().map_err(|_| wrong_type::<T>(kind))?;
    if owner != proc::getpid() {
        return Err(foreign::<T>(owner, ""));
    }
    Ok(obj)
}

/// `get` for the functions that answer a question, for which NULL just gets the answer "no"
/// (`None`) and no error.
pub(crate) fn get_opt<T: Handle>(h: *const T) -> Result<Option<Arc<T>>, Error> {
    if h.is_null() {
        return not_in_task().map(|()| None);
    }
    get(h).map(Some)
}

/// Takes handle `h` out of the registry (NULL: `Ok(None)`) for the caller to drop, outside the
/// registry's lock. A handle inherited through fork() is taken out too, but its object is
/// leaked: dropping it would act on the parent's pool or process.
pub(crate) fn remove<T: Handle>(h: *mut T) -> Result<Option<Arc<T>>, Error> {
    not_in_task()?;
    let token = h as usize;
    if token == 0 {
        return Ok(None);
    }
    let mut sh = write(shard_of(token));
    let map = sh.map.as_mut().ok_or_else(not_live::<T>)?;
    let e = map.get(&token).ok_or_else(not_live::<T>)?;
    if !(*e.obj).is::<T>() {
        return Err(wrong_type::<T>(e.kind));
    }
    let e = map.remove(&token).expect("present");
    drop(sh);
    if e.owner != proc::getpid() {
        std::mem::forget(e.obj);
        return Err(foreign::<T>(e.owner, "; only this process's copy of the handle was released"));
    }
    Ok(e.obj.downcast::<T>().ok())
}

// ---- fork(): a thread may fork while another is inside the registry

thread_local! {
    /// The whole registry, write-locked by a forking thread from before fork() until after it.
    static HELD: RefCell<Vec<RwLockWriteGuard<'static, Shard>>> = const { RefCell::new(Vec::new()) };
}

fn lock_all() {
    let all: Vec<_> = (0..SHARDS).map(write).collect();
    let _ = HELD.try_with(|h| *h.borrow_mut() = all);
}

fn unlock_all() {
    let _ = HELD.try_with(|h| h.borrow_mut().clear());
}

extern "C" fn register_fork_hooks() {
    proc::set_fork_hooks(ForkHooks { prepare: lock_all, release: unlock_all });
}

/// Registers the hooks when the library is loaded, before any thread can use the registry.
#[used]
#[link_section = ".init_array"]
static REGISTER_FORK_HOOKS: extern "C" fn() = register_fork_hooks;
