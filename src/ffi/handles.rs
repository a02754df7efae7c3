//! The C handles: tokens that name objects in a registry of live handles. Every call looks its
//! handle up before touching anything, so a freed, foreign, mistyped or made-up handle gets
//! `POOL_EINVAL` and a message instead of a crash or a hang (SQLite's `SQLITE_MISUSE`).
//!
//! The registry is a slab per shard; a handle is `BASE | gen << GEN_SHIFT | index << 10 |
//! shard << 4`: the slot it lives in and that slot's generation, bumped each time the slot is
//! freed. A slot whose generation would wrap is retired, so no token is ever reused in the life
//! of the process, and none is the address of anything (`BASE` lies outside every user address
//! range): a stale or invented pointer can only miss. A lookup is an array index (the slots of
//! handles made one after another sit side by side). Lookups clone the object's `Arc` and let
//! go of the registry at once: a thread that frees a handle while another thread is inside a
//! call on it cannot pull the object from under that call, which finishes; the object goes
//! when the last call returns.

use crate::core::worker::IN_WORKER;
use crate::core::Error;
use crate::sys::proc;
use std::any::Any;
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
/// creates its handles in a shard of its own, and any thread finds a handle in the shard its
/// token names.
const SHARDS: usize = 64;
const SHARD_BITS: u32 = 6;
/// Slots per shard (16 million live handles) and generations per slot (4 million reuses).
const INDEX_BITS: u32 = 24;
const GEN_BITS: u32 = 22;
const INDEX_SHIFT: u32 = 4 + SHARD_BITS;
const GEN_SHIFT: u32 = INDEX_SHIFT + INDEX_BITS;
/// Non-canonical on x86-64 and in the kernel half on aarch64: no user pointer looks like this.
const BASE: usize = 0xa5 << 56;
const _: () = assert!(SHARDS == 1 << SHARD_BITS && GEN_SHIFT + GEN_BITS <= 56);

struct Slot {
    gen: u32,
    entry: Option<Entry>,
}

struct Shard {
    slots: Vec<Slot>,
    /// Free slots, the most recently freed last (reused first: its memory is warm).
    free: Vec<u32>,
}

#[repr(align(128))]
struct Padded(RwLock<Shard>);

static REGISTRY: [Padded; SHARDS] =
    [const { Padded(RwLock::new(Shard { slots: Vec::new(), free: Vec::new() })) }; SHARDS];
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: usize = THREADS.fetch_add(1, Relaxed) % SHARDS;
}

/// The shard, slot and generation a token names (None: not a token of ours).
fn parse(token: usize) -> Option<(usize, usize, u32)> {
    if token & !((1 << 56) - 1) != BASE || token & 0xf != 0 {
        return None;
    }
    let field = |shift: u32, bits: u32| (token >> shift) & ((1 << bits) - 1);
    Some((field(4, SHARD_BITS), field(INDEX_SHIFT, INDEX_BITS), field(GEN_SHIFT, GEN_BITS) as u32))
}

fn read(s: usize) -> RwLockReadGuard<'static, Shard> {
    REGISTRY[s].0.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(s: usize) -> RwLockWriteGuard<'static, Shard> {
    REGISTRY[s].0.write().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    /// The live entry `token` names, if any.
    fn entry(&self, token: usize) -> Option<&Entry> {
        let (_, i, gen) = parse(token)?;
        let slot = self.slots.get(i)?;
        (slot.gen == gen).then_some(slot.entry.as_ref())?
    }
}

/// What a task is told when it calls a function it cannot use there.
const IN_TASK: &str = "pools, results, iterators, streams and processes cannot be used inside a task (or a \
     worker's initializer): there only pool_out_write, pool_out_reserve, pool_out_commit, pool_task_error and the \
     queue, lock and event functions (pool_queue_*, pool_lock_*, pool_event_*) work";

/// Fails inside a pool's worker (a task): the handles there are copies of the host's, whose
/// pools the worker must not drive.
pub(crate) fn not_in_task() -> Result<(), Error> {
    if IN_WORKER.load(Relaxed) {
        return Err(Error::inval(IN_TASK));
    }
    Ok(())
}

/// Registers a new object and returns its handle.
pub(crate) fn insert<T: Handle>(obj: T) -> Result<*mut T, Error> {
    let e = Entry { obj: Arc::new(obj), kind: T::NAME, owner: proc::getpid() };
    let s = MY_SHARD.try_with(|s| *s).unwrap_or(0);
    let mut sh = write(s);
    let i = match sh.free.pop() {
        Some(i) => i as usize,
        None if sh.slots.len() < 1 << INDEX_BITS => {
            sh.slots.push(Slot { gen: 0, entry: None });
            sh.slots.len() - 1
        }
        None => {
            return Err(Error::inval(format!("too many live handles (at most {} per thread group)", 1 << INDEX_BITS)))
        }
    };
    let slot = &mut sh.slots[i];
    slot.entry = Some(e);
    Ok((BASE | (slot.gen as usize) << GEN_SHIFT | i << INDEX_SHIFT | s << 4) as *mut T)
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
    let Some((shard, _, _)) = parse(token) else { return Err(not_live::<T>()) };
    let (obj, kind, owner) = match read(shard).entry(token) {
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
    let Some((shard, i, _)) = parse(token) else { return Err(not_live::<T>()) };
    let mut sh = write(shard);
    let e = sh.entry(token).ok_or_else(not_live::<T>)?;
    if !(*e.obj).is::<T>() {
        return Err(wrong_type::<T>(e.kind));
    }
    let slot = &mut sh.slots[i];
    let e = slot.entry.take().expect("present");
    slot.gen += 1;
    if slot.gen < 1 << GEN_BITS {
        sh.free.push(i as u32);
    } // else retired: its tokens are never handed out again
    drop(sh);
    if e.owner != proc::getpid() {
        std::mem::forget(e.obj);
        return Err(foreign::<T>(e.owner, "; only this process's copy of the handle was released"));
    }
    Ok(e.obj.downcast::<T>().ok())
}

// ---- fork(): a thread may fork while another is inside the registry

/// The whole registry, write-locked by a forking thread from before fork() until after it.
fn lock_all() -> Box<dyn Any> {
    Box::new((0..SHARDS).map(write).collect::<Vec<_>>())
}

extern "C" fn register_fork_hooks() {
    proc::add_fork_hook(lock_all);
}

/// Registers the hooks when the library is loaded, before any thread can use the registry.
#[used]
#[link_section = ".init_array"]
static REGISTER_FORK_HOOKS: extern "C" fn() = register_fork_hooks;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct A(u32);
    impl Handle for A {
        const NAME: &'static str = "a_t";
        const WHAT: &'static str = "a";
    }
    #[derive(Debug)]
    struct B;
    impl Handle for B {
        const NAME: &'static str = "b_t";
        const WHAT: &'static str = "b";
    }

    #[test]
    fn tokens_are_checked_and_never_reused() {
        let h = insert(A(7)).unwrap();
        assert_eq!(get(h).unwrap().0, 7);
        assert!(get(h as *const B).unwrap_err().msg.contains("is a a_t handle"));
        assert!(remove(h).unwrap().is_some());
        assert!(get(h).unwrap_err().msg.contains("not a live handle"));
        assert!(remove(h).is_err(), "a second free is refused");
        // The slot is reused (same thread, same shard) under a new generation: the old token
        // still misses.
        let h2 = insert(A(8)).unwrap();
        assert_ne!(h, h2);
        assert_eq!(parse(h as usize).map(|p| p.1), parse(h2 as usize).map(|p| p.1));
        assert!(get(h).is_err());
        assert_eq!(get(h2).unwrap().0, 8);
        // Made-up handles: a real address, a token with stray low bits, a far slot.
        let local = 0u64;
        for bad in [&local as *const u64 as usize, h2 as usize | 8, h2 as usize ^ (1000 << INDEX_SHIFT), usize::MAX] {
            assert!(get(bad as *const A).is_err());
        }
        assert!(remove(h2).unwrap().is_some());
    }

    #[test]
    fn a_slot_is_retired_before_its_generation_wraps() {
        let h = insert(A(1)).unwrap();
        let (s, i, _) = parse(h as usize).unwrap();
        write(s).slots[i].gen = (1 << GEN_BITS) - 1;
        let old = (h as usize & !(((1 << GEN_BITS) - 1) << GEN_SHIFT)) | ((1 << GEN_BITS) - 1) << GEN_SHIFT;
        assert!(remove(old as *mut A).unwrap().is_some());
        assert!(!read(s).free.contains(&(i as u32)), "retired, not reused");
        let h2 = insert(A(2)).unwrap();
        assert_ne!(parse(h2 as usize).unwrap().1, i);
        assert!(remove(h2).unwrap().is_some());
    }
}
