//! Kill points: the named steps of the shared-memory protocol (PROTOCOL.md). In a build with the
//! `killpoints` feature (tests only) a test can arm one point, and the process that passes it
//! the n-th time (counted across every process of the pool) SIGKILLs itself there. In other
//! builds `kp!` expands to nothing.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Which process a point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Host = 0,
    Zygote = 1,
    Worker = 2,
    /// A process using queues, locks and events, named so by the test that made it
    /// (`set_role`): the IPC objects' points fire only there.
    Peer = 3,
    /// Points of a sandboxed worker's hand-off to its executor: passed in worker processes.
    Sandboxed = 4,
    /// The executor of a sandboxed worker (`worker/executor/`).
    Executor = 5,
}

impl Role {
    /// The process a point of this role fires in.
    #[cfg_attr(not(feature = "killpoints"), allow(dead_code))]
    fn process(self) -> Role {
        if self == Role::Sandboxed {
            Role::Worker
        } else {
            self
        }
    }
}

static ROLE: AtomicU8 = AtomicU8::new(Role::Host as u8);

/// Set once by the zygote and by each worker as it starts (and by tests, in peers they fork).
pub fn set_role(r: Role) {
    ROLE.store(r as u8, Relaxed);
}

macro_rules! points {
    ($($role:ident $name:ident),* $(,)?) => {
        /// Every step of the protocol that a test can kill a process at.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Point { $($name),* }
        impl Point {
            pub const ALL: &'static [Point] = &[$(Point::$name),*];
            pub fn role(self) -> Role {
                match self { $(Point::$name => Role::$role),* }
            }
        }
    };
}

points! {
    Worker WorkerPopLocked,
    Worker WorkerPopClaimed,
    Worker WorkerPopRunning,
    Worker WorkerPopAdvanced,
    Worker WorkerTaskStart,
    Worker WorkerItemStarted,
    Worker WorkerItemReturned,
    Worker WorkerTermHandshake,
    Worker WorkerOutputCopied,
    Worker WorkerRecordWritten,
    Worker WorkerRecordCounted,
    Worker WorkerItemDone,
    Worker WorkerTaskFinished,
    Worker WorkerClaimReleased,
    Worker WorkerIdle,
    Sandboxed WorkerItemHandedOver,
    Sandboxed WorkerItemHandedBack,
    Sandboxed WorkerMirrorsDeath,
    Executor ExecutorItemReturned,
    Executor ExecutorResultWritten,
    Zygote ZygoteReaped,
    Zygote ZygoteLockRepaired,
    Zygote ZygoteItemEnded,
    Zygote ZygoteRequeued,
    Zygote ZygoteDeathHandled,
    Zygote ZygoteCancelKill,
    Zygote ZygoteTermDecided,
    Zygote ZygoteTimeoutKill,
    Host HostSubmitFilled,
    Host HostPushLocked,
    Host HostPushed,
    Host HostCancelLocked,
    Host HostCollected,
    Host HostWaiterCounted,
    Peer ArenaLocked,
    Peer ArenaSplit,
    Peer ArenaTaken,
    Peer ArenaCreated,
    Peer ArenaEntered,
    Peer ArenaFreeing,
    Peer ArenaFreeWaited,
    Peer QueueLocked,
    Peer QueuePutWritten,
    Peer QueuePutPublished,
    Peer QueueGetCopied,
    Peer QueueGetConsumed,
    Peer QueueClosed,
    Peer LockAcquired,
    Peer EventSetFlagged,
    Peer EventSetCounted,
}

#[cfg(feature = "killpoints")]
pub use armed::*;

#[cfg(feature = "killpoints")]
mod armed {
    use super::*;
    use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64};

    /// Shared by every process forked after `arm`: the armed points, and hit counts.
    #[repr(C)]
    struct Arm {
        armed: [Armed; 2],
        hits: [AtomicU64; 64],
    }

    #[repr(C)]
    struct Armed {
        point: AtomicU32,
        nth: AtomicU64,
        fired: AtomicU32,
    }

    const NONE: u32 = u32::MAX;
    static ARM: AtomicPtr<Arm> = AtomicPtr::new(std::ptr::null_mut());

    fn arm_page() -> &'static Arm {
        let mut p = ARM.load(Relaxed);
        if p.is_null() {
            // SAFETY: a fresh anonymous shared mapping (zeroed, never unmapped): pools created
            // after this see it at the same address in all their processes.
            p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    std::mem::size_of::<Arm>(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            } as *mut Arm;
            assert_ne!(p as *mut libc::c_void, libc::MAP_FAILED);
            ARM.store(p, Relaxed);
            disarm();
        }
        // SAFETY: set once above, valid for the life of the process and its forks.
        unsafe { &*p }
    }

    /// From now on (in pools created after this call), the process passing each `(point, nth)`
    /// for the `nth` time (1-based, counted across processes) kills itself there, once.
    /// Hit counts restart from zero.
    pub fn arm(points: &[(Point, u64)]) {
        assert!(points.len() <= 2);
        disarm();
        let a = arm_page();
        for (slot, &(p, nth)) in a.armed.iter().zip(points) {
            slot.nth.store(nth, Relaxed);
            slot.point.store(p as u32, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// No point armed; hit counts restart from zero (for coverage).
    pub fn disarm() {
        let a = arm_page();
        for slot in &a.armed {
            slot.point.store(NONE, Relaxed);
            slot.fired.store(0, Relaxed);
        }
        a.hits.iter().for_each(|h| h.store(0, Relaxed));
    }

    /// Whether armed `point` killed its process.
    pub fn fired(point: Point) -> bool {
        arm_page().armed.iter().any(|s| s.point.load(Relaxed) == point as u32 && s.fired.load(Relaxed) != 0)
    }

    /// How many times `point` was passed since `arm` / `disarm`.
    pub fn hits(point: Point) -> u64 {
        arm_page().hits[point as usize].load(Relaxed)
    }

    pub fn hit(p: Point) {
        let a = ARM.load(Relaxed);
        if a.is_null() || p.role().process() as u8 != ROLE.load(Relaxed) {
            return;
        }
        // SAFETY: set by arm_page, never unmapped.
        let a = unsafe { &*a };
        let k = a.hits[p as usize].fetch_add(1, Relaxed) + 1;
        for s in &a.armed {
            if s.point.load(Relaxed) == p as u32 && k == s.nth.load(Relaxed) && s.fired.swap(1, Relaxed) == 0 {
                // SAFETY: plain syscalls on ourselves.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
        }
    }
}

#[cfg(feature = "killpoints")]
macro_rules! kp {
    ($p:ident) => {
        $crate::core::killpoint::hit($crate::core::killpoint::Point::$p)
    };
}

#[cfg(not(feature = "killpoints"))]
macro_rules! kp {
    ($p:ident) => {};
}
