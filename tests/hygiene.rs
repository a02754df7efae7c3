//! Process and descriptor hygiene: pools leave no descriptors, children or workers behind,
//! and the host dying (even by SIGKILL) takes every worker with it.
//! One test per binary section runs serially: they count process-wide resources.

mod common;
use common::*;
use pool::core::{MapArgs, Options, Pool, Status};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn worker_pids(p: &Pool) -> Vec<i32> {
    let mut pids = vec![0i32; 64];
    let dummy = vec![0i64; 64];
    let a = MapArgs {
        out_size: 4,
        ..map_args_raw(getpid_task, dummy.as_ptr() as usize, pids.as_mut_ptr() as usize, 64, 0, 1)
    };
    unsafe { p.map(a) }.unwrap();
    pids.sort();
    pids.dedup();
    pids
}

#[test]
fn create_use_destroy_cycles_leak_nothing() {
    let _g = SERIAL.lock().unwrap();
    let me = std::process::id() as i32;
    let fds = fd_count();
    let mut workers = Vec::new();
    let mut rss_after_warmup = 0;
    for i in 0..100 {
        if i == 10 {
            rss_after_warmup = rss_kib();
        }
        let p = Pool::new(2, Options::default()).unwrap();
        if i % 10 == 0 {
            workers.extend(worker_pids(&p));
        }
        let xs: Vec<i64> = (0..1000).collect();
        let mut ys = vec![0i64; 1000];
        let a = map_args(square, &xs, &mut ys, 0, 0);
        unsafe { p.map(a) }.unwrap();
        if i % 2 == 0 {
            p.close().unwrap();
            p.join().unwrap();
        }
        drop(p);
    }
    assert_eq!(fd_count(), fds, "descriptors leaked");
    let growth = rss_kib().saturating_sub(rss_after_warmup);
    assert!(growth < 8 << 10, "RSS grew by {growth} KiB over 90 create/use/destroy cycles");
    assert_eq!(children_of(me), Vec::<i32>::new(), "children left behind");
    let left: Vec<_> = workers.iter().copied().filter(|&w| alive(w)).collect();
    assert!(left.is_empty(), "workers still alive: {left:?}");
}

/// Run by `parent_death_takes_the_workers_down` as a separate host process.
#[test]
fn host_role_for_parent_death() {
    if std::env::var_os("POOL_TEST_HOST").is_none() {
        return;
    }
    let p = Pool::new(2, Options::default()).unwrap();
    for w in worker_pids(&p) {
        println!("worker {w}");
    }
    println!("ready");
    let xs: Vec<i64> = vec![16; 8]; // every item hangs
    let mut ys = vec![0i64; 8];
    let a = map_args(faulty, &xs, &mut ys, 0, 1);
    let _ = unsafe { p.map(a) };
    unreachable!("the map hangs until this process is killed");
}

#[test]
fn parent_death_takes_the_workers_down() {
    let _g = SERIAL.lock().unwrap();
    // Orphans come to us, so zombies can be told from live processes and reaped.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut host = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "host_role_for_parent_death", "--nocapture", "--test-threads=1"])
            .env("POOL_TEST_HOST", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut workers = Vec::new();
    for line in BufReader::new(host.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The harness prints "test NAME ... " before the first line of output.
        if let Some(w) = line.split("worker ").nth(1) {
            workers.push(w.parse::<i32>().unwrap());
        }
        if line.ends_with("ready") {
            break;
        }
    }
    assert_eq!(workers.len(), 2, "{workers:?}");
    std::thread::sleep(Duration::from_millis(100)); // the map is running
    host.0.kill().unwrap(); // SIGKILL
    host.0.wait().unwrap();
    // They go at once (the figure is printed); 60 s only guards against a hang.
    let t0 = Instant::now();
    wait_until(Duration::from_secs(60), || !workers.iter().any(|&w| alive(w)));
    let left: Vec<_> = workers.iter().copied().filter(|&w| alive(w)).collect();
    assert!(left.is_empty(), "workers alive {:?} {:?} after the host died", left, t0.elapsed());
    eprintln!("the workers were gone {:.2?} after the host died", t0.elapsed());
    // Reap the orphaned zygote (it came to us as subreaper).
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    let _ = Status::Ok;
}
