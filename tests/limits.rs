//! Hosts under limits and privilege changes, each in a child process of its own (this binary run
//! again with one `*_child` test selected): the zygote hitting RLIMIT_NPROC when it replaces a
//! worker, a pool whose workers cannot start at all, a host that drops root after pool_create
//! (timeouts, cancels and terminate still work; ctx is still checked, the zygote answering),
//! and shared memory refused by RLIMIT_AS.

mod common;
use common::*;
use pool::core::{MapArgs, Options, Pool, Status};
use std::os::raw::{c_int, c_void};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// Runs `<this test binary> --exact <name>`, killing it if it runs past `limit`; returns its
/// stderr if it failed.
fn run_child(name: &str, limit: Duration) -> Result<(), String> {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("POOL_LIMITS_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return if st.success() { Ok(()) } else { Err(format!("{st:?} (signal {:?}): {err}", st.signal())) };
        }
        if t0.elapsed() > limit {
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            c.kill().ok();
            c.wait().ok();
            return Err(format!("{name} hung (killed after {limit:?})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In a child: true when this process is the child of `run_child`.
fn in_child() -> bool {
    std::env::var("POOL_LIMITS_CHILD").is_ok()
}

/// Becomes user nobody if root (RLIMIT_NPROC binds only unprivileged users). False if it can't.
fn become_nobody() -> bool {
    unsafe {
        if libc::getuid() != 0 {
            return true;
        }
        libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0
    }
}

fn set_nproc(pid: i32, soft: u64) {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::prlimit(pid, libc::RLIMIT_NPROC, std::ptr::null(), &mut old) };
    let new = libc::rlimit { rlim_cur: soft.min(old.rlim_max), rlim_max: old.rlim_max };
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NPROC, &new, std::ptr::null_mut()) }, 0, "prlimit");
}

fn apply_square(p: &Pool, x: i64) -> (Status, String, i64) {
    let mut y = 0i64;
    let r = unsafe { p.apply_async(square, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    let o = r.wait(Some(Duration::from_secs(60))).expect("the apply hung");
    (o.status(), o.err.map(|e| e.msg).unwrap_or_default(), y)
}

#[test]
fn fork_failure_at_respawn_fails_queued_work_then_recovers() {
    run_child("respawn_child", Duration::from_secs(300)).unwrap();
}

#[test]
fn respawn_child() {
    if !in_child() {
        return;
    }
    if !become_nobody() {
        eprintln!("cannot drop to nobody: skipped");
        return;
    }
    let p = Pool::new(1, Options::default()).unwrap();
    assert_eq!(apply_square(&p, 3).0, Status::Ok);
    let me = std::process::id() as i32;
    let zygote = children_of(me)[0];
    set_nproc(zygote, 1); // the zygote can fork no more
    for w in children_of(zygote) {
        unsafe { libc::kill(w, libc::SIGKILL) };
    }
    // No worker, and none can start: queued work fails (after about a second), saying why.
    let t0 = Instant::now();
    let (st, msg, _) = apply_square(&p, 4);
    assert_eq!(st, Status::Sys, "{msg}");
    assert!(msg.contains("fork") && msg.contains("Resource temporarily unavailable"), "{msg}");
    hang_guard("queued work failed by a refused fork", t0.elapsed(), Duration::from_secs(60));
    // The limit lifted: the zygote's back-off retries and the pool works again.
    set_nproc(zygote, u64::MAX);
    let t0 = Instant::now();
    loop {
        let (st, msg, y) = apply_square(&p, 5);
        if st == Status::Ok {
            assert_eq!(y, 25);
            break;
        }
        assert_eq!(st, Status::Sys, "{msg}");
        assert!(t0.elapsed() < Duration::from_secs(60), "the pool never recovered");
    }
    let xs: Vec<i64> = (0..100).collect();
    let mut ys = vec![0i64; 100];
    unsafe { p.map(map_args(square, &xs, &mut ys, 0, 0)) }.unwrap();
    assert_eq!(ys[99], 99 * 99);
}

#[test]
fn workers_that_cannot_start_fail_pool_create_with_the_errno() {
    run_child("startup_child", Duration::from_secs(300)).unwrap();
}

#[test]
fn startup_child() {
    if !in_child() {
        return;
    }
    if !become_nobody() {
        eprintln!("cannot drop to nobody: skipped");
        return;
    }
    set_nproc(0, 2); // this process and the zygote, no worker
    let e = Pool::new(2, Options::default()).err().expect("no worker can start");
    assert_eq!(e.status, Status::Sys, "{e}");
    assert!(e.msg.contains("fork") && e.msg.contains("Resource temporarily unavailable"), "{e}");
}

static UNCHANGED: AtomicI64 = AtomicI64::new(5);
static CHANGED: AtomicI64 = AtomicI64::new(1);

/// out = in + the i64 ctx points to.
unsafe extern "C" fn add_ctx(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    unsafe { *(o as *mut i64) = *(i as *const i64) + *(ctx as *const i64) };
    0
}

/// out = in + ctx as a number.
unsafe extern "C" fn add_number(i: *const c_void, o: *mut c_void, ctx: *mut c_void) -> c_int {
    unsafe { *(o as *mut i64) = *(i as *const i64) + ctx as i64 };
    0
}

/// The host may no longer read the zygote's memory: `ctx` is still checked, the zygote
/// answering (an unchanged global and a number pass; a changed global and a heap object
/// allocated after the pool are refused).
fn ctx_checks_without_reading_the_zygote(p: &Pool, zygote: i32) {
    let mut byte = 0u8;
    let (local, remote) = (
        libc::iovec { iov_base: &mut byte as *mut u8 as *mut c_void, iov_len: 1 },
        libc::iovec { iov_base: UNCHANGED.as_ptr() as *mut c_void, iov_len: 1 },
    );
    assert_eq!(unsafe { libc::process_vm_readv(zygote, &local, 1, &remote, 1, 0) }, -1, "the host can still read it");
    CHANGED.store(2, SeqCst);
    let late = Box::new(7i64);
    let apply = |f, ctx: usize| {
        let (x, mut y) = (1i64, 0i64);
        let r = unsafe { p.apply_async(f, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, ctx) }?;
        // `y` is read only after the wait wrote it (a closure reading it around the wait held a
        // borrow across that write: in release builds it read 0).
        let status = r.wait(None).unwrap().status();
        Ok::<_, pool::core::Error>((status, y))
    };
    assert_eq!(apply(add_ctx, UNCHANGED.as_ptr() as usize).unwrap(), (Status::Ok, 6));
    assert_eq!(apply(add_number, 42).unwrap(), (Status::Ok, 43));
    for stale in [CHANGED.as_ptr() as usize, &*late as *const i64 as usize] {
        let e = apply(add_ctx, stale).unwrap_err();
        assert_eq!(e.status, Status::Inval, "{e}");
        assert!(e.msg.contains("ctx"), "{e}");
    }
}

#[test]
fn host_that_drops_root_keeps_timeouts_cancel_terminate_and_ctx_checks() {
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: nothing to drop; skipped");
        return;
    }
    run_child("drop_root_child", Duration::from_secs(300)).unwrap();
}

#[test]
fn drop_root_child() {
    if !in_child() {
        return;
    }
    let me = std::process::id() as i32;
    let p = Pool::new(2, Options::default()).unwrap();
    assert!(become_nobody(), "setuid");
    // The zygote is root: the host may no longer signal it, and nothing may depend on that.
    let zygote = children_of(me)[0];
    assert_eq!(unsafe { libc::kill(zygote, 0) }, -1, "the host should have lost the right to signal");
    ctx_checks_without_reading_the_zygote(&p, zygote);
    // A per-call timeout (the zygote learns of deadlines through its doorbell).
    let xs = vec![16i64, 1]; // faulty(): 16 hangs
    let mut ys = vec![0i64; 2];
    let a = MapArgs { timeout: Some(Duration::from_millis(200)), ..map_args(faulty, &xs, &mut ys, 0, 1) };
    let e = unsafe { p.map(a) }.unwrap_err();
    assert_eq!(e.status, Status::TimedOut, "{e}");
    // Cancel of a running task.
    let (x, mut y) = (16i64, 0i64);
    let r = unsafe { p.apply_async(faulty, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    assert!(r.wait(Some(Duration::from_millis(100))).is_none());
    r.cancel();
    assert_eq!(r.poll().unwrap().status(), Status::Cancelled);
    // Terminate with work pending, and nothing left behind.
    let r = unsafe { p.apply_async(faulty, &x as *const i64 as *const u8, 8, &mut y as *mut i64 as *mut u8, 8, 0) }
        .unwrap();
    p.terminate().unwrap();
    assert_eq!(r.wait(None).unwrap().status(), Status::Closed);
    drop(r);
    drop(p);
    assert_eq!(children_of(me), Vec::<i32>::new());
}

#[test]
fn rlimit_as_refusal_names_shm_size() {
    run_child("rlimit_as_child", Duration::from_secs(300)).unwrap();
}

#[test]
fn rlimit_as_child() {
    if !in_child() {
        return;
    }
    // 32 GiB (the default) cannot be mapped under an 8 GiB RLIMIT_AS.
    refused_under_rlimit_as(8 << 30, Options::default(), &["shm_size", "POOL_SHM_SIZE"]);
}

/// Under an address-space limit of `cap` bytes, `Pool::new(1, opts)` fails with `Status::Sys`
/// and a message holding each of `want`; a pool of 256 MiB still starts and works.
fn refused_under_rlimit_as(cap: u64, opts: Options, want: &[&str]) {
    let lim = libc::rlimit { rlim_cur: cap, rlim_max: cap };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
    let e = Pool::new(1, opts).err().expect("the pool was created under the limit");
    assert_eq!(e.status, Status::Sys, "{e}");
    assert!(want.iter().all(|w| e.msg.contains(w)), "{e}");
    let p = Pool::new(1, Options { shm_size: 256 << 20, ..Options::default() }).unwrap();
    assert_eq!(apply_square(&p, 6).0, Status::Ok);
}

#[test]
fn rlimit_as_for_one_mapping_not_two_is_refused() {
    run_child("rlimit_as_once_child", Duration::from_secs(300)).unwrap();
}

/// A limit with room for the pool's memory once but not for each worker's second (read-write)
/// mapping of it: pool_create fails and says why. (Before, workers silently ran without it:
/// tasks could write the pool's memory, and a task's forked child writing the task's output
/// after it returned changed the result: POOL_OK with the child's bytes.)
#[test]
fn rlimit_as_once_child() {
    if !in_child() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kb: u64 =
        status.lines().find(|l| l.starts_with("VmSize:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    // A 4 GiB heap takes a little over 8 GiB of address space (heap and IPC area); the worker's
    // second mapping, nearly as much again, does not fit in 3 GiB more.
    let cap = vm_kb * 1024 + (11 << 30);
    refused_under_rlimit_as(
        cap,
        Options { shm_size: 4 << 30, ..Options::default() },
        &["second time", "POOL_SHM_SIZE"],
    );
}
