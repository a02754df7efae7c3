//! The C API as C programs see it: compiles every test in tests/c/ (and c_examples/seed.c)
//! with a strict C11 compiler against the libpool.so / libpool.a that `cargo test` just built,
//! runs each with a hard timeout, and checks its exit status (and, for the seed example, its
//! exact output).
//!
//! Each C program returns 0 only if all its checks passed; on failure its stderr names the
//! failed check and `pool_last_error()`, and is shown in the panic message here.
//! `CC` overrides the compiler (default `cc`).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A C test that takes longer than this is killed (with all its processes) and fails.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The C tests, one file each in tests/c/; `c_tests_are_all_registered` keeps this in sync.
const C_TESTS: &[&str] = &["basic", "faults", "badinput", "process", "varsize", "threads", "advanced"];
/// What the static library needs from the system (`cargo rustc -- --print native-static-libs`).
const NATIVE_STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

struct Env {
    root: PathBuf,
    /// Where cargo put the libpool.so / libpool.a it built for this run: <target>/<profile>/deps
    /// (the copies one level up are refreshed only by `cargo build`).
    libdir: PathBuf,
    /// Where the C programs are built: <target>/c-tests/<profile>.
    outdir: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // This test runs as <target>/<profile>/deps/c_api-<hash>.
        let exe = std::env::current_exe().expect("current_exe");
        let libdir = exe.parent().expect("<target>/<profile>/deps/<exe>").to_path_buf();
        for lib in ["libpool.so", "libpool.a"] {
            assert!(libdir.join(lib).exists(), "{} was not built (cargo builds it with the tests)", libdir.join(lib).display());
        }
        // The .so carries the soname libpool.so.0, which is what the programs look up at run time.
        let soname = libdir.join("libpool.so.0");
        if std::fs::symlink_metadata(&soname).is_err() {
            match std::os::unix::fs::symlink("libpool.so", &soname) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("creating {}: {e}", soname.display()),
            }
        }
        let profile_dir = libdir.parent().expect("profile dir");
        let profile = profile_dir.file_name().expect("profile dir").to_owned();
        let target = profile_dir.parent().expect("target dir");
        let outdir = target.join("c-tests").join(profile);
        std::fs::create_dir_all(&outdir).expect("creating the C test output directory");
        Env { root, libdir, outdir }
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Link {
    Shared,
    Static,
}

/// Compiles one C file into `<outdir>/<name>`; panics with the compiler's output on failure.
fn compile(src: &Path, name: &str, link: Link) -> PathBuf {
    let e = env();
    let exe = e.outdir.join(name);
    let _ = std::fs::remove_file(&exe);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-g", "-pthread"])
        .arg(format!("-I{}", e.root.join("include").display()))
        .arg(format!("-I{}", e.root.join("tests/c").display()))
        .arg(src)
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            cmd.arg(format!("-L{}", e.libdir.display()))
                .arg("-lpool")
                .arg(format!("-Wl,-rpath,{}", e.libdir.display()));
        }
        Link::Static => {
            cmd.arg(e.libdir.join("libpool.a")).args(NATIVE_STATIC_LIBS);
        }
    }
    cmd.arg("-lm");
    let out = cmd.output().unwrap_or_else(|err| panic!("running the C compiler `{cc}`: {err}"));
    assert!(
        out.status.success(),
        "compiling {} failed ({}):\n{:?}\n{}{}",
        src.display(),
        out.status,
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe(self.status),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{s}"),
    }
}

fn spawn_reader(mut r: impl Read + Send + 'static, tx: mpsc::Sender<(bool, Vec<u8>)>, is_stdout: bool) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send((is_stdout, buf));
    });
}

/// Processes (not zombies) still in process group `pgid`, as "pid (comm)".
fn group_members(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return found };
    for ent in dir.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid pgrp ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[stat.find('(').map_or(0, |i| i + 1)..close];
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if rest.len() >= 3 && rest[0] != "Z" && rest[2].parse::<i32>() == Ok(pgid) {
            found.push(format!("{pid} ({comm})"));
        }
    }
    found
}

fn kill_group(pgid: i32) {
    // SAFETY: plain kill(2) on the process group we created for the test program.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Runs `exe` in its own process group with stdout and stderr as pipes, killing the whole group
/// after `timeout`. Panics on a timeout, or if processes of the program outlive it.
fn run(exe: &Path, timeout: Duration) -> Run {
    let start = Instant::now();
    let mut child: Child = Command::new(exe)
        // cargo points LD_LIBRARY_PATH at <target>/<profile>, whose libpool.so may be stale;
        // the programs' RUNPATH names the library this run built.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    spawn_reader(child.stdout.take().unwrap(), tx.clone(), true);
    spawn_reader(child.stderr.take().unwrap(), tx, false);

    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the test program") {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            kill_group(pgid);
            break child.wait().expect("waiting for the killed test program");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();

    // The pipes close once every process holding them is gone: the program's workers and
    // children must not outlive it.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut got = 0;
    let mut lingering = false;
    let mut grace = Instant::now() + Duration::from_secs(10);
    while got < 2 {
        let left = grace.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, b)) => (stdout, got) = (b, got + 1),
            Ok((false, b)) => (stderr, got) = (b, got + 1),
            Err(_) if lingering => break,
            Err(_) => {
                lingering = true;
                kill_group(pgid);
                grace = Instant::now() + Duration::from_secs(2);
            }
        }
    }
    let mut leftovers = group_members(pgid);
    let settle = Instant::now() + Duration::from_secs(5);
    while !leftovers.is_empty() && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        leftovers = group_members(pgid);
    }
    if !leftovers.is_empty() {
        kill_group(pgid);
    }
    let r = Run {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed,
    };
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!timed_out, "{}", r.report(&format!("{name} TIMED OUT (killed after {timeout:?})")));
    assert!(!lingering, "{}", r.report(&format!("{name}: its processes kept stdout/stderr open >10 s after it exited")));
    assert!(leftovers.is_empty(), "{}", r.report(&format!("{name}: processes left running after it exited: {leftovers:?}")));
    r
}

fn compile_and_run(file: &str, link: Link) {
    let src = env().root.join("tests/c").join(format!("{file}.c"));
    let name = if link == Link::Static { format!("{file}-static") } else { file.to_string() };
    let exe = compile(&src, &name, link);
    let r = run(&exe, TIMEOUT);
    assert!(r.status.success(), "{}", r.report(&format!("C test {name} failed")));
    // Its progress log, shown with --nocapture.
    println!("{}", r.report(&name));
}

#[test]
fn c_basic() {
    compile_and_run("basic", Link::Shared);
}

#[test]
fn c_basic_static() {
    compile_and_run("basic", Link::Static);
}

#[test]
fn c_faults() {
    compile_and_run("faults", Link::Shared);
}

#[test]
fn c_badinput() {
    compile_and_run("badinput", Link::Shared);
}

#[test]
fn c_process() {
    compile_and_run("process", Link::Shared);
}

#[test]
fn c_varsize() {
    compile_and_run("varsize", Link::Shared);
}

#[test]
fn c_threads() {
    compile_and_run("threads", Link::Shared);
}

#[test]
fn c_advanced() {
    compile_and_run("advanced", Link::Shared);
}

/// Every tests/c/*.c has a #[test] above (C_TESTS), so none is silently skipped.
#[test]
fn c_tests_are_all_registered() {
    let dir = env().root.join("tests/c");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("tests/c")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".c")).map(str::to_string))
        .collect();
    let listed: BTreeSet<String> = C_TESTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, listed, "tests/c/*.c and C_TESTS (each with its #[test]) must match");
}

/// The notebook's output, exactly once and in order, with stdout a pipe (fully buffered, so
/// output duplicated by a fork or lost at a child's exit would show).
#[test]
fn seed_example_output() {
    let exe = compile(&env().root.join("c_examples/seed.c"), "seed", Link::Shared);
    let r = run(&exe, TIMEOUT);
    assert!(r.status.success(), "{}", r.report("seed failed"));
    let mut want = String::new();
    for id in [100, 0, 1] {
        want += &format!("Invoked run()\nProcess ID is {id}\n");
    }
    want += "[4, 9, 16, 36]\n[4, 9, 16, 36]\n";
    want += &format!("[{}]\n", (0..100).map(|i| (i * i).to_string()).collect::<Vec<_>>().join(", "));
    want += "9801\n";
    assert_eq!(r.stdout, want, "{}", r.report("seed printed the wrong output"));
    assert!(r.stderr.is_empty(), "{}", r.report("seed wrote to stderr"));
}
