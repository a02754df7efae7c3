//! The C API as C programs see it: compiles every test in tests/c/ (and c_examples/seed.c)
//! with a strict C11 compiler against the libpool.so / libpool.a that `cargo test` just built,
//! runs each with a hard timeout, and checks its exit status (and, for the seed example, its
//! exact output).
//!
//! Each C program returns 0 only if all its checks passed; on failure its stderr names the
//! failed check and `pool_last_error()`, and is shown in the panic message here.
//! `CC` overrides the compiler (default `cc`).
//!
//! Two more stages run the same programs under tools that see memory errors the checks miss:
//! - `sanitizers`: every program built again with `-fsanitize=address,undefined` (the C code,
//!   tasks included, is instrumented; the Rust library is not, but ASan's malloc, free and
//!   leak checker see its heap too). It fails on any sanitizer report in any process, workers
//!   included (a worker killed by ASan is only a crashed task to the program, so the report is
//!   read from stderr), and on leaks in the host (LeakSanitizer runs at `exit`, so not in
//!   workers, which leave with `_exit`).
//! - `valgrind_memcheck`: every program (built as usual) under valgrind's memcheck, worker and
//!   child processes included (fork without exec), one log per process. It fails on any
//!   memcheck error in any process and on "definitely lost" blocks in the host. Leaks reported
//!   in forked processes are listed but do not fail: such a process leaves with `_exit` holding
//!   a copy of its parent's heap, whose owners (the parent's other threads) it does not have,
//!   and some tests leak in tasks on purpose (the RSS ceiling).
//!   `POOL_SHM_SIZE=256M` keeps memcheck from scanning the default 32 GiB shared region at
//!   every process exit (the programs stretch their own waits and watchdog under valgrind:
//!   `slack` and `watchdog_arm` in tests/c/check.h).
//!   Logs stay in `<target>/c-tests/<profile>/valgrind/<program>/<pid>.log`.
//!
//! Both run by default when the tools are there (a notice says when they are not). Switches:
//! `POOL_TEST_SANITIZE` / `POOL_TEST_VALGRIND` = `0` skips the stage, `all` adds the extra
//! programs (valgrind: the statically linked `basic-static`), a comma-separated list of program
//! names runs only those; `1` requires the tool. Each stage reports every program it ran, with
//! its run time (shown with `--nocapture`).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A C test that takes longer than this is killed (with all its processes) and fails. Each
/// program's own watchdog (`watchdog_arm` in tests/c/check.h: 55 s at most, x3 for a loaded
/// machine) fires first and names the section that hung; these stay above it.
const TIMEOUT: Duration = Duration::from_secs(4 * 55);
/// The same under AddressSanitizer (the watchdog stretches 2x more).
const SANITIZE_TIMEOUT: Duration = Duration::from_secs(8 * 55);
/// The same under valgrind (the watchdog stretches 10x more: 20-50x slower on computation, and
/// every worker a program starts is a new valgrind).
const VALGRIND_TIMEOUT: Duration = Duration::from_secs(32 * 55);
/// Compiler flags of the sanitizer stage.
const SANITIZE_FLAGS: &[&str] =
    &["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"];
/// Shared memory size for valgrind runs: memcheck's leak checker reads all of it at every exit.
const VALGRIND_SHM_SIZE: &str = "256M";
/// The C tests, one file each in tests/c/; `c_tests_are_all_registered` keeps this in sync.
const C_TESTS: &[&str] = &[
    "basic",
    "faults",
    "badinput",
    "process",
    "varsize",
    "stream",
    "blocks",
    "threads",
    "advanced",
    "streaming",
    "misuse",
    "fork",
    "cancel",
    "robust",
    "ending",
    "isolation",
    "values",
    "snapshot",
    "ipc",
    "ipc_recovery",
    "callbacks",
    "heap_full",
    "startup",
    "fork_raw",
    "sandbox",
    "sandbox_memory",
];
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
            assert!(
                libdir.join(lib).exists(),
                "{} was not built (cargo builds it with the tests)",
                libdir.join(lib).display()
            );
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

/// Compiles one C file into `<outdir>/<name>` (with `extra` compiler flags); panics with the
/// compiler's output on failure.
fn compile(src: &Path, name: &str, link: Link, extra: &[&str]) -> PathBuf {
    let e = env();
    let exe = e.outdir.join(name);
    let _ = std::fs::remove_file(&exe);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-g", "-pthread"])
        .arg(format!("-I{}", e.root.join("include").display()))
        .arg(format!("-I{}", e.root.join("tests/c").display()))
        .args(extra)
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
    /// The program's pid (also its process group).
    pid: i32,
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
    run_cmd(Command::new(exe), &exe.file_name().unwrap().to_string_lossy(), timeout)
}

/// POOL_TEST_SLACK, a factor for a slow machine (1 if unset); tests/c/check.h reads it too.
fn slack_env() -> f64 {
    std::env::var("POOL_TEST_SLACK").ok().and_then(|v| v.parse().ok()).filter(|f: &f64| *f > 0.0).unwrap_or(1.0)
}

/// `run` for a prepared command (a program under valgrind, or with extra environment). After the
/// program exits, its other processes get `timeout / 15` to be gone (a process exiting under
/// valgrind runs a leak check first).
fn run_cmd(mut cmd: Command, name: &str, timeout: Duration) -> Run {
    let timeout = timeout.mul_f64(slack_env());
    let grace_period = timeout / 15;
    let start = Instant::now();
    let mut child: Child = cmd
        // cargo points LD_LIBRARY_PATH at <target>/<profile>, whose libpool.so may be stale;
        // the programs' RUNPATH names the library this run built.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
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
    let mut grace = Instant::now() + grace_period;
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
    let settle = Instant::now() + grace_period;
    while !leftovers.is_empty() && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        leftovers = group_members(pgid);
    }
    if !leftovers.is_empty() {
        kill_group(pgid);
    }
    let r = Run {
        pid: pgid,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed,
    };
    assert!(!timed_out, "{}", r.report(&format!("{name} TIMED OUT (killed after {timeout:?})")));
    assert!(
        !lingering,
        "{}",
        r.report(&format!("{name}: its processes kept stdout/stderr open {grace_period:?} after it exited"))
    );
    assert!(
        leftovers.is_empty(),
        "{}",
        r.report(&format!("{name}: processes left running after it exited: {leftovers:?}"))
    );
    r
}

fn compile_and_run(file: &str, link: Link) {
    let src = env().root.join("tests/c").join(format!("{file}.c"));
    let name = if link == Link::Static { format!("{file}-static") } else { file.to_string() };
    let exe = compile(&src, &name, link, &[]);
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
fn c_stream() {
    compile_and_run("stream", Link::Shared);
}

#[test]
fn c_blocks() {
    compile_and_run("blocks", Link::Shared);
}

#[test]
fn c_threads() {
    compile_and_run("threads", Link::Shared);
}

#[test]
fn c_advanced() {
    compile_and_run("advanced", Link::Shared);
}

#[test]
fn c_streaming() {
    compile_and_run("streaming", Link::Shared);
}

#[test]
fn c_misuse() {
    compile_and_run("misuse", Link::Shared);
}

#[test]
fn c_fork() {
    compile_and_run("fork", Link::Shared);
}

/// The fork handlers are installed by load-time constructors, which static linking must keep.
#[test]
fn c_fork_static() {
    compile_and_run("fork", Link::Static);
}

#[test]
fn c_cancel() {
    compile_and_run("cancel", Link::Shared);
}

#[test]
fn c_robust() {
    compile_and_run("robust", Link::Shared);
}

#[test]
fn c_ending() {
    compile_and_run("ending", Link::Shared);
}

#[test]
fn c_isolation() {
    compile_and_run("isolation", Link::Shared);
}

#[test]
fn c_values() {
    compile_and_run("values", Link::Shared);
}

#[test]
fn c_snapshot() {
    compile_and_run("snapshot", Link::Shared);
}

#[test]
fn c_ipc() {
    compile_and_run("ipc", Link::Shared);
}

#[test]
fn c_heap_full() {
    compile_and_run("heap_full", Link::Shared);
}

#[test]
fn c_callbacks() {
    compile_and_run("callbacks", Link::Shared);
}

#[test]
fn c_ipc_recovery() {
    compile_and_run("ipc_recovery", Link::Shared);
}

#[test]
fn c_fork_raw() {
    compile_and_run("fork_raw", Link::Shared);
}

#[test]
fn c_sandbox() {
    compile_and_run("sandbox", Link::Shared);
}

#[test]
fn c_sandbox_memory() {
    compile_and_run("sandbox_memory", Link::Shared);
}

#[test]
fn c_startup() {
    compile_and_run("startup", Link::Shared);
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
    let exe = compile(&env().root.join("c_examples/seed.c"), "seed", Link::Shared, &[]);
    let r = run(&exe, TIMEOUT);
    assert!(r.status.success(), "{}", r.report("seed failed"));
    if let Err(e) = check_seed_output(&r) {
        panic!("{e}");
    }
}

/// The README's short tour compiles as shown and prints what its comments say.
#[test]
fn readme_tour_prints_what_it_says() {
    let readme = std::fs::read_to_string(env().root.join("README.md")).unwrap();
    let tour = readme.split("## A short tour").nth(1).expect("the README has a short tour");
    let code = tour.split("```c\n").nth(1).and_then(|t| t.split("\n```").next()).expect("the tour's C block");
    // Its own file names: readme_examples_compile_and_run builds the same tour at the same time
    // (sharing them, one test's exec met the other's link: "Text file busy").
    let src = env().outdir.join("readme_tour_output.c");
    std::fs::write(&src, code).unwrap();
    let exe = compile(&src, "readme_tour_output", Link::Shared, &[]);
    let r = run(&exe, TIMEOUT);
    assert!(r.status.success(), "{}", r.report("the README's tour failed"));
    // What each printf's comment promises, in order.
    let want: Vec<&str> = code
        .lines()
        .filter(|l| l.trim_start().starts_with("printf("))
        .filter_map(|l| l.rsplit("/* ").next()?.strip_suffix(" */"))
        .collect();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), want, "{}", r.report("the tour printed otherwise"));
}

/// The seed example's exact output, and nothing on stderr.
fn check_seed_output(r: &Run) -> Result<(), String> {
    let mut want = String::new();
    for id in [100, 0, 1] {
        want += &format!("Invoked run()\nProcess ID is {id}\n");
    }
    want += "[4, 9, 16, 36]\n[4, 9, 16, 36]\n";
    want += &format!("[{}]\n", (0..100).map(|i| (i * i).to_string()).collect::<Vec<_>>().join(", "));
    want += "9801\n";
    if r.stdout != want {
        return Err(r.report(&format!("seed printed the wrong output; expected:\n{want}")));
    }
    if !r.stderr.is_empty() {
        return Err(r.report("seed wrote to stderr"));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// The sanitizer and valgrind stages (see the top of this file).

/// One C program as the extra stages build it.
struct Prog {
    /// Its name in reports and in the switches: a C_TESTS name, `seed` or `basic-static`.
    name: String,
    src: PathBuf,
    link: Link,
}

/// Every C program: the tests, the seed example, and `basic` linked statically.
fn programs() -> Vec<Prog> {
    let root = &env().root;
    let mut v: Vec<Prog> = C_TESTS
        .iter()
        .map(|t| Prog { name: t.to_string(), src: root.join("tests/c").join(format!("{t}.c")), link: Link::Shared })
        .collect();
    v.push(Prog { name: "seed".into(), src: root.join("c_examples/seed.c"), link: Link::Shared });
    v.push(Prog { name: "basic-static".into(), src: root.join("tests/c/basic.c"), link: Link::Static });
    v
}

/// What a `POOL_TEST_SANITIZE` / `POOL_TEST_VALGRIND` switch asks for.
enum Mode {
    /// Unset: run the default programs if the tool is there, else skip with a notice.
    Auto,
    /// `0`: skip.
    Skip,
    /// `1`: run the default programs; a missing tool is an error.
    Require,
    /// `all`: every program, extras included.
    All,
    /// `a,b,c`: only these programs.
    Only(Vec<String>),
}

fn mode(var: &str) -> Mode {
    let Ok(v) = std::env::var(var) else { return Mode::Auto };
    match v.trim() {
        "" => Mode::Auto,
        "0" | "no" | "off" | "false" => Mode::Skip,
        "1" | "yes" | "on" | "true" => Mode::Require,
        "all" => Mode::All,
        list => Mode::Only(list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
    }
}

/// A line on the real stderr, shown by `cargo test` even when it captures test output.
fn notice(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "note: {msg}");
}

/// Decides whether a stage runs: `None` (after a notice) to skip it. A tool missing when the
/// switch asks for the stage explicitly is an error.
fn stage_gate(var: &str, stage: &str, available: fn() -> Result<(), String>) -> Option<Mode> {
    let m = mode(var);
    if matches!(m, Mode::Skip) {
        notice(&format!("{var}=0: the {stage} stage is skipped"));
        return None;
    }
    match available() {
        Ok(()) => Some(m),
        Err(e) if matches!(m, Mode::Auto) => {
            notice(&format!("the {stage} stage is skipped: {e} (set {var}=1 to make this an error)"));
            None
        }
        Err(e) => panic!("{var} asks for the {stage} stage, but {e}"),
    }
}

/// The programs a stage runs for `mode`: all but `extras` by default.
fn select(var: &str, m: &Mode, extras: &[&str]) -> Vec<Prog> {
    let all = programs();
    match m {
        Mode::All => all,
        Mode::Only(names) => {
            for n in names {
                assert!(
                    all.iter().any(|p| &p.name == n),
                    "{var}: no C program is called {n:?}; they are {:?}",
                    all.iter().map(|p| &p.name).collect::<Vec<_>>()
                );
            }
            all.into_iter().filter(|p| names.contains(&p.name)).collect()
        }
        _ => all.into_iter().filter(|p| !extras.contains(&p.name.as_str())).collect(),
    }
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    match (e.downcast_ref::<String>(), e.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (_, Some(s)) => s.to_string(),
        _ => "panicked".into(),
    }
}

/// Runs `one` on every program, one after another, printing each program's line (and a failure's
/// report) as it ends (a stage takes minutes: `make test` shows its progress), then panics
/// naming the programs that failed. `one` returns a summary line.
fn run_stage(stage: &str, progs: &[Prog], one: impl Fn(&Prog) -> Result<String, String>) {
    let mut failures = Vec::new();
    for p in progs {
        let t0 = Instant::now();
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(p))).unwrap_or_else(|e| Err(panic_text(e)));
        match res {
            Ok(line) => println!("{stage}: {:<13} ok    {line}", p.name),
            Err(e) => {
                println!(
                    "{stage}: {:<13} FAILED after {:.1?}\n===== {stage}: {} =====\n{e}",
                    p.name,
                    t0.elapsed(),
                    p.name
                );
                failures.push(p.name.as_str());
            }
        }
    }
    assert!(failures.is_empty(), "{stage}: {} of {} failed (reports above): {failures:?}", failures.len(), progs.len());
}

/// Names of our own C sources, to tell the test programs' frames from libc's in reports.
fn own_sources() -> Vec<String> {
    let mut v: Vec<String> = C_TESTS.iter().map(|t| format!("{t}.c")).collect();
    v.extend(["check.h", "seed.c", CONTROL_FILE].map(String::from));
    v
}

// ---- AddressSanitizer + UndefinedBehaviorSanitizer

/// A sanitized program builds and runs here (gcc ships libasan and libubsan).
fn sanitizers_available() -> Result<(), String> {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    OK.get_or_init(|| {
        let src = env().outdir.join("sanitizer_probe.c");
        std::fs::write(&src, "int main(void) { return 0; }\n")
            .map_err(|e| format!("writing {}: {e}", src.display()))?;
        let exe = env().outdir.join("sanitizer_probe");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args(SANITIZE_FLAGS)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .map_err(|e| format!("cannot run the C compiler `{cc}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`{cc}` cannot build with {SANITIZE_FLAGS:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        match Command::new(&exe).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => {
                Err(format!("a sanitized program does not run here: {}", String::from_utf8_lossy(&o.stderr).trim()))
            }
            Err(e) => Err(format!("a sanitized program does not run here: {e}")),
        }
    })
    .clone()
}

fn sanitizer_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    // Leak checking is ASan's default on x86-64 Linux; it runs at exit() in the host. Options
    // already in the environment come last, so they win.
    let user = |var: &str| std::env::var(var).map(|v| format!(":{v}")).unwrap_or_default();
    cmd.env("ASAN_OPTIONS", format!("detect_leaks=1{}", user("ASAN_OPTIONS")));
    cmd.env("UBSAN_OPTIONS", format!("print_stacktrace=1:halt_on_error=1{}", user("UBSAN_OPTIONS")));
    cmd
}

/// Fails a run that exited badly or whose stderr (shared by all its processes) holds a
/// sanitizer report.
fn sanitizer_verdict(r: &Run, name: &str) -> Result<(), String> {
    let hits: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| (l.contains("Sanitizer") && l.contains("ERROR")) || l.contains("runtime error:"))
        .collect();
    if !hits.is_empty() {
        return Err(format!("sanitizer reports:\n  {}\n\n{}", hits.join("\n  "), r.report(name)));
    }
    if !r.status.success() {
        return Err(r.report(&format!("{name} failed")));
    }
    Ok(())
}

fn sanitize_one(p: &Prog) -> Result<String, String> {
    let exe = compile(&p.src, &format!("{}-asan", p.name), p.link, SANITIZE_FLAGS);
    let r = run_cmd(sanitizer_command(&exe), &p.name, SANITIZE_TIMEOUT);
    sanitizer_verdict(&r, &p.name)?;
    if p.name == "seed" {
        check_seed_output(&r)?;
    }
    Ok(format!("ran in {:.1?}", r.elapsed))
}

/// Every C program built with `-fsanitize=address,undefined` passes, with no sanitizer report
/// from any of its processes.
#[test]
fn sanitizers() {
    let Some(m) = stage_gate("POOL_TEST_SANITIZE", "sanitizer", sanitizers_available) else { return };
    run_stage("asan+ubsan", &select("POOL_TEST_SANITIZE", &m, &[]), sanitize_one);
}

// ---- valgrind

fn valgrind_available() -> Result<(), String> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`valgrind --version` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("valgrind is not installed ({e})")),
    }
}

/// `exe` under memcheck, one log per process in `logdir` (`<pid>.log`).
fn valgrind_command(exe: &Path, logdir: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "-q",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite",
        // Leaks fail the run by the log (in the host only), not by exit status: a forked child
        // exiting with 99 would fail the check of its exit status (threads.c, pool_process_start).
        "--errors-for-leak-kinds=none",
        "--trace-children=no",
        "--num-callers=40",
    ])
    .arg(format!("--log-file={}/%p.log", logdir.display()));
    let supp = env().root.join("tests/c/valgrind.supp");
    if supp.exists() {
        cmd.arg(format!("--suppressions={}", supp.display()));
    }
    cmd.arg(exe).env("POOL_SHM_SIZE", VALGRIND_SHM_SIZE).current_dir(logdir);
    cmd
}

/// One memcheck report: the lines between blank lines of one process's log, "==pid== " cut.
struct VgRecord {
    pid: i32,
    lines: Vec<String>,
}

impl VgRecord {
    fn is_definite_leak(&self) -> bool {
        self.lines[0].contains(" are definitely lost in loss record ")
    }
    fn is_other_leak(&self) -> bool {
        self.lines[0].contains(" lost in loss record ")
    }
    fn is_warning(&self) -> bool {
        self.lines[0].starts_with("Warning:")
    }
    /// Where the report points: the first frame (from the top) in libpool or in our C code;
    /// (`"libc/other"`, top frame) if none.
    fn origin(&self, own: &[String]) -> (&'static str, String) {
        let frames = self.lines.iter().map(|l| l.trim()).filter(|l| l.starts_with("at ") || l.starts_with("by "));
        let strip = |l: &str| l.split_once(": ").map_or(l, |(_, f)| f).to_string();
        let mut top = None;
        for f in frames {
            if f.contains("vgpreload_") {
                continue;
            }
            top.get_or_insert_with(|| strip(f));
            if f.contains("pool::") || f.contains("libpool.so") {
                // Name the library function too when the frame is inlined std code.
                let func = |l: &str| strip(l).starts_with("pool::") || strip(l).starts_with("<pool::");
                let site = match frames_after(&self.lines, f).into_iter().find(|l| func(l)) {
                    Some(p) if !func(f) => format!("{} via {}", strip(f), strip(p)),
                    _ => strip(f),
                };
                return ("libpool", site);
            }
            if own.iter().any(|s| f.contains(&format!("({s}:"))) {
                return ("test program", strip(f));
            }
        }
        ("libc/other", top.unwrap_or_default())
    }
}

/// The stack frames of `lines` from `from` on.
fn frames_after<'a>(lines: &'a [String], from: &str) -> Vec<&'a str> {
    let frames: Vec<&str> =
        lines.iter().map(|l| l.trim()).filter(|l| l.starts_with("at ") || l.starts_with("by ")).collect();
    let i = frames.iter().position(|l| *l == from).unwrap_or(0);
    frames[i..].to_vec()
}

/// The logs valgrind wrote in `logdir`: (pid, records, lines that are not memcheck reports).
fn read_vg_logs(logdir: &Path) -> Vec<(i32, Vec<VgRecord>, Vec<String>)> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(logdir).expect("valgrind log dir").flatten() {
        let fname = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = fname.strip_suffix(".log").and_then(|p| p.parse::<i32>().ok()) else { continue };
        let text = std::fs::read_to_string(ent.path()).unwrap_or_default();
        let (mut recs, mut other, mut cur) = (Vec::new(), Vec::new(), Vec::<String>::new());
        let mut flush = |cur: &mut Vec<String>| {
            if !cur.is_empty() {
                recs.push(VgRecord { pid, lines: std::mem::take(cur) });
            }
        };
        for line in text.lines() {
            let body = line
                .strip_prefix("==")
                .and_then(|r| r.split_once("=="))
                .filter(|(p, _)| p.parse::<i32>().is_ok())
                .map(|(_, b)| b.strip_prefix(' ').unwrap_or(b));
            match body {
                Some(b) if b.trim().is_empty() => flush(&mut cur),
                Some(b) => cur.push(b.to_string()),
                None => {
                    flush(&mut cur);
                    other.push(line.to_string());
                }
            }
        }
        flush(&mut cur);
        out.push((pid, recs, other));
    }
    out.sort_by_key(|(pid, ..)| *pid);
    out
}

/// valgrind's own messages that are not about the program: syscall 434 (pidfd_open) and 424
/// (pidfd_send_signal) are unknown to valgrind 3.19; the library then falls back to polling.
fn is_vg_noise(line: &str) -> bool {
    const NOISE: &[&str] = &[
        "WARNING: unhandled amd64-linux syscall: 434",
        "WARNING: unhandled amd64-linux syscall: 424",
        "You may be able to write your own handler.",
        "Read the file README_MISSING_SYSCALL_OR_IOCTL.",
        "Nevertheless we consider this a bug.  Please report",
        "it at http://valgrind.org/support/bug_reports.html.",
    ];
    line.trim().is_empty() || NOISE.iter().any(|n| line.ends_with(n))
}

/// Reads the logs of a valgrind run: Err (with the reports) for any memcheck error in any
/// process or a definite leak in the host; Ok with notes (leaks in forked processes, other
/// messages) otherwise.
fn valgrind_verdict(r: &Run, logdir: &Path, name: &str) -> Result<String, String> {
    let own = own_sources();
    let logs = read_vg_logs(logdir);
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut child_leaks: std::collections::BTreeMap<String, usize> = Default::default();
    let mut leaky_children = 0;
    for (pid, recs, other) in &logs {
        let who = if *pid == r.pid { format!("pid {pid} (host)") } else { format!("pid {pid} (forked)") };
        let mut leaked = false;
        for rec in recs {
            let (origin, frame) = rec.origin(&own);
            if rec.is_definite_leak() && rec.pid != r.pid {
                leaked = true;
                *child_leaks.entry(format!("[{origin}] {frame}")).or_default() += 1;
            } else if rec.is_definite_leak() || !(rec.is_other_leak() || rec.is_warning()) {
                errors.push(format!("{who} [{origin}, at {frame}]:\n    {}", rec.lines.join("\n    ")));
            } else {
                notes.push(format!("{who}: {}", rec.lines[0]));
            }
        }
        leaky_children += leaked as usize;
        for l in other.iter().filter(|l| !is_vg_noise(l)) {
            notes.push(format!("{who}: {l}"));
        }
    }
    if !logs.iter().any(|(pid, ..)| *pid == r.pid) {
        errors.push(format!("valgrind wrote no log for the host (pid {}) in {}", r.pid, logdir.display()));
    }
    for core in std::fs::read_dir(logdir).into_iter().flatten().flatten() {
        if core.file_name().to_string_lossy().starts_with("vgcore.") {
            notes.push(format!("core file {} (removed)", core.file_name().to_string_lossy()));
            let _ = std::fs::remove_file(core.path());
        }
    }
    if !child_leaks.is_empty() {
        let n: usize = child_leaks.values().sum();
        let mut s = format!(
            "{n} \"definitely lost\" report(s) in {leaky_children} of {} forked processes (not failures), by allocation site:",
            logs.len().saturating_sub(1)
        );
        for (site, k) in &child_leaks {
            s += &format!("\n      {k:>3} x {site}");
        }
        notes.push(s);
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} memcheck report(s) (logs in {}):\n{}\n\n{}",
            errors.len(),
            logdir.display(),
            errors.join("\n\n"),
            r.report(name)
        ));
    }
    if !r.status.success() {
        return Err(r.report(&format!("{name} failed under valgrind")));
    }
    Ok(notes.join("\n    "))
}

/// Runs `exe` under valgrind (logs in `<outdir>/valgrind/<name>`) and judges it.
fn run_valgrind(exe: &Path, name: &str, args: &[&str]) -> (Run, Result<String, String>) {
    let logdir = env().outdir.join("valgrind").join(name);
    let _ = std::fs::remove_dir_all(&logdir);
    std::fs::create_dir_all(&logdir).expect("creating the valgrind log dir");
    let mut cmd = valgrind_command(exe, &logdir);
    cmd.args(args);
    let r = run_cmd(cmd, name, VALGRIND_TIMEOUT);
    let v = valgrind_verdict(&r, &logdir, name);
    (r, v)
}

fn valgrind_one(p: &Prog) -> Result<String, String> {
    let exe = compile(&p.src, &format!("{}-vg", p.name), p.link, &[]);
    let (r, v) = run_valgrind(&exe, &p.name, &[]);
    let notes = v?;
    if p.name == "seed" {
        check_seed_output(&r)?;
    }
    Ok(format!("ran in {:.1?}{}{notes}", r.elapsed, if notes.is_empty() { "" } else { "\n    " }))
}

/// Programs the valgrind stage runs only with POOL_TEST_VALGRIND=all: `basic` again, linked
/// statically (the same code as `basic`, and 15 s more).
const VALGRIND_EXTRAS: &[&str] = &["basic-static"];

/// Every C program passes under valgrind's memcheck with no error in any of its processes
/// and no leak in the host.
#[test]
fn valgrind_memcheck() {
    let Some(m) = stage_gate("POOL_TEST_VALGRIND", "valgrind", valgrind_available) else { return };
    run_stage("valgrind", &select("POOL_TEST_VALGRIND", &m, VALGRIND_EXTRAS), valgrind_one);
}

// ---- The stages catch what they should: planted errors

const CONTROL_FILE: &str = "harness_control.c";

/// Errors the stages must report (argv[1] picks one). The program exits 0 whatever happens, as
/// a test whose own checks missed the error would.
const CONTROL_SRC: &str = r#"
#include <pool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes one byte past an 8-byte block, in a worker. */
static int overflow_task(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    char *volatile p = malloc(8);
    volatile size_t i = 8;
    p[i] = 1;
    free(p);
    return 0;
}

/* Signed overflow (INT_MAX + 1), in a worker. */
static int ub_task(const void *in, void *out, void *ctx) {
    (void)out; (void)ctx;
    volatile int x = *(const int *)in;
    return x + 1 == 0;
}

/* A child process that loses a block, then exits: not a failure. */
static int leaky_child(void *arg) {
    (void)arg;
    char *volatile p = malloc(4242);
    p[0] = 1;
    p = NULL;
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    pool_t *pool = pool_create(1, NULL);
    if (pool == NULL) {
        fprintf(stderr, "pool_create: %s\n", pool_last_error());
        return 2;
    }
    int big = INT_MAX, st = POOL_OK;
    if (strcmp(mode, "worker-overflow") == 0) {
        st = pool_apply(pool, overflow_task, NULL, 0, NULL, 0, NULL);
    } else if (strcmp(mode, "worker-ub") == 0) {
        st = pool_apply(pool, ub_task, &big, sizeof big, NULL, 0, NULL);
    } else if (strcmp(mode, "child-leak") == 0) {
        pool_process_t *c = pool_process_create(leaky_child, NULL);
        st = pool_process_start(c);
        if (st == POOL_OK) st = pool_process_join(c, -1);
        pool_process_free(c);
    } else if (strcmp(mode, "host-leak") == 0) {
        char *volatile p = malloc(4242);
        p[0] = 1;
        p = NULL;
    }
    fprintf(stderr, "control %s: %s\n", mode, pool_strerror(st));
    pool_destroy(pool);
    return 0;
}
"#;

/// CONTROL_SRC written once to `<outdir>/harness_control.c`.
fn control_src() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = env().outdir.join(CONTROL_FILE);
        std::fs::write(&p, CONTROL_SRC).expect("writing the control program");
        p
    })
}

/// A heap overflow and undefined behaviour in a worker, and a leak in the host, each fail the
/// sanitizer stage although the program exits 0.
#[test]
fn sanitizers_catch_planted_errors() {
    if stage_gate("POOL_TEST_SANITIZE", "sanitizer", sanitizers_available).is_none() {
        return;
    }
    let exe = compile(control_src(), "control-asan", Link::Shared, SANITIZE_FLAGS);
    for (mode, want) in [
        ("worker-overflow", "ERROR: AddressSanitizer: heap-buffer-overflow"),
        ("worker-ub", "runtime error: signed integer overflow"),
        ("host-leak", "ERROR: LeakSanitizer: detected memory leaks"),
    ] {
        let mut cmd = sanitizer_command(&exe);
        cmd.arg(mode);
        let r = run_cmd(cmd, mode, SANITIZE_TIMEOUT);
        match sanitizer_verdict(&r, mode) {
            Ok(()) => panic!("{}", r.report(&format!("the sanitizer stage missed {mode}"))),
            Err(e) => {
                assert!(e.contains(want), "{mode}: the report should say {want:?}:\n{e}");
                println!("{mode}: caught, as it should be:\n{e}\n");
            }
        }
    }
}

/// An invalid write in a worker and a leak in the host each fail the valgrind stage; a leak in
/// a forked child is only listed.
#[test]
fn valgrind_catches_planted_errors() {
    if stage_gate("POOL_TEST_VALGRIND", "valgrind", valgrind_available).is_none() {
        return;
    }
    let exe = compile(control_src(), "control-vg", Link::Shared, &[]);
    for (mode, want) in [
        ("worker-overflow", "(forked) [test program, at overflow_task (harness_control.c:"),
        ("host-leak", "(host) [test program, at main (harness_control.c:"),
    ] {
        let (r, v) = run_valgrind(&exe, &format!("control-{mode}"), &[mode]);
        match v {
            Ok(_) => panic!("{}", r.report(&format!("the valgrind stage missed {mode}"))),
            Err(e) => {
                assert!(e.contains(want), "{mode}: the report should say {want:?}:\n{e}");
                println!("{mode}: caught, as it should be:\n{e}\n");
            }
        }
    }
    let (r, v) = run_valgrind(&exe, "control-child-leak", &["child-leak"]);
    match v {
        Ok(notes) => {
            assert!(
                notes.contains("[test program] leaky_child (harness_control.c:"),
                "child-leak: the notes should list the child's leak:\n{notes}\n{}",
                r.report("child-leak")
            );
            println!("child-leak: passed, with the note:\n    {notes}");
        }
        Err(e) => panic!("a leak in a forked child must not fail the stage:\n{e}"),
    }
}

/// The first block of `lang` (```c / ```cpp) in README.md, written to the build directory.
fn readme_block(lang: &str, file: &str) -> PathBuf {
    let readme = std::fs::read_to_string(env().root.join("README.md")).unwrap();
    let fence = format!("```{lang}\n");
    let start = readme.find(&fence).unwrap_or_else(|| panic!("README.md has no {fence:?} block")) + fence.len();
    let len = readme[start..].find("```").unwrap();
    let path = env().outdir.join(file);
    std::fs::write(&path, &readme[start..start + len]).unwrap();
    path
}

/// The README's C tour and C++ example compile with every warning as an error and run: the
/// code a new user copies first must work.
#[test]
fn readme_examples_compile_and_run() {
    let exe = compile(&readme_block("c", "readme_tour.c"), "readme_tour", Link::Shared, &[]);
    let r = run(&exe, TIMEOUT);
    assert!(r.status.success(), "{}", r.report("README C tour"));
    let e = env();
    let src = readme_block("cpp", "readme_example.cpp");
    let exe = e.outdir.join("readme_example");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let out = Command::new(&cxx)
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", e.root.join("include").display()))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", e.libdir.display()))
        .arg("-lpool")
        .arg(format!("-Wl,-rpath,{}", e.libdir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "README C++ example: {}", String::from_utf8_lossy(&out.stderr));
    let r = run(&exe, TIMEOUT);
    assert!(r.status.success(), "{}", r.report("README C++ example"));
    assert!(r.stdout.starts_with("36 49\n1\n4\n9\n"), "{}", r.report("README C++ example output"));
}
