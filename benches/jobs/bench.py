#!/usr/bin/env python3
"""Runs the two jobs of benches/jobs.sh and prints their tables (called by jobs.sh, which builds
the examples, the corpus and the pages first).

    bench.py --bin target/examples --corpus FILE --pages DIR --out target/bench

Every command runs as a user's shell would run it: the examples as the README shows them, with
no OpenMP variable (any OMP_* or GOMP_* in this environment is removed); the other OCR tools
both so and with OMP_THREAD_LIMIT=1, the usual tuning for many Tesseracts at once.
Every command's wall time, CPU time (its whole process tree, from wait4) and the CPU time
other processes took on the machine meanwhile (from /proc/stat) are measured; a best run
disturbed by more than 10% of the machine is retried once the machine is quiet (BENCH_RETRIES,
2, within BENCH_BUDGET, 300 s), and flagged with '*' if it stays disturbed. Compressors:
GZ_REPS (3) rounds, OCR: OCR_REPS (3), the contenders taking turns round by round (a shared
VM's speed drifts: each contender sees the same drift); each figure is given as min, median
and max over the rounds (retries included). Memory: one more run of each compressor, its
process tree sampled every 20 ms: the summed PSS (shared pages counted once) and the largest
per-process peak RSS (VmHWM).
"""
import argparse
import glob
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()
RETRIES = int(os.environ.get("BENCH_RETRIES", 2))
BUDGET = float(os.environ.get("BENCH_BUDGET", 300))
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# A user's environment, less the OpenMP runtime's settings: its defaults, unless a contender
# names a variable itself.
USER_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
OMP1_ENV = dict(USER_ENV, OMP_THREAD_LIMIT="1")


def busy_ticks():
    with open("/proc/stat") as f:
        a = [int(x) for x in f.readline().split()[1:]]
    return a[0] + a[1] + a[2] + a[5] + a[6] + a[7]  # user nice system irq softirq steal


def run(cmd, stdin=None, stdout=None, env=USER_ENV):
    """One run of a shell command: (wall s, tree CPU s, others' CPU s, exit status, max RSS KiB)."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    b0, t0 = busy_ticks(), time.perf_counter()
    p = subprocess.Popen(["bash", "-c", cmd], stdin=fin, stdout=fout, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    b1 = busy_ticks()
    p.returncode = os.waitstatus_to_exitcode(status)
    for f in (fin, fout):
        if f is not subprocess.DEVNULL:
            f.close()
    cpu = ru.ru_utime + ru.ru_stime
    others = max(0.0, (b1 - b0) / HZ - cpu)
    return wall, cpu, others, p.returncode, ru.ru_maxrss


T_START = time.perf_counter()


def wait_quiet(limit=20.0):
    """Waits (up to `limit` s) for a second in which the machine is less than 20% busy."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        b0 = busy_ticks()
        time.sleep(1.0)
        if (busy_ticks() - b0) / HZ < 0.2 * NCPU:
            return


def rounds(jobs, reps):
    """`jobs`: name -> (cmd, stdin, stdout, env). Runs them in turn, `reps` rounds, so that a
    machine whose speed drifts (a shared VM) shifts every contender alike, and returns name ->
    its runs (wall, CPU, disturbed). A best run that other processes disturbed is retried on a
    quiet machine, up to BENCH_RETRIES times while the run is within BENCH_BUDGET seconds."""
    runs = {name: [] for name in jobs}

    def one(name):
        cmd, stdin, stdout, env = jobs[name]
        print(f"  ... {name}", file=sys.stderr, flush=True)
        r = run(cmd, stdin, stdout, env)
        if r[3] != 0:
            sys.exit(f"bench.py: '{cmd}' exited {r[3]}")
        runs[name].append((r[0], r[1], r[2] > 0.10 * r[0] * NCPU))

    for _ in range(reps):
        for name in jobs:
            one(name)
    for name in jobs:
        for _ in range(RETRIES):
            if not min(runs[name])[2] or time.perf_counter() - T_START > BUDGET:
                break
            print("      (disturbed by other processes: waiting for a quiet machine, again)",
                  file=sys.stderr, flush=True)
            wait_quiet()
            one(name)
    return runs


def spread(runs):
    """A contender's runs summed up: (min, median, max) wall s, the same of CPU s, its best run."""
    walls, cpus = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
    return ((walls[0], statistics.median(walls), walls[-1]),
            (cpus[0], statistics.median(cpus), cpus[-1]), min(runs))


def mmm(t, fmt="{:.2f}"):
    return "/".join(fmt.format(v) for v in t)


def tree(root):
    """`root` and its descendants."""
    parent = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/stat") as f:
                s = f.read()
            parent[int(d[6:])] = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            pass
    pids, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in pids:
                pids.add(c)
                frontier.append(c)
    return pids


def field_kib(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_memory(cmd, stdin):
    """(peak summed PSS of the process tree, largest peak RSS of one of its processes), MiB.
    The PSS sum counts shared pages (the pool's shared memory, libraries) once in all. Peak
    RSS is /proc's VmHWM per process (wait4's ru_maxrss would carry the RSS of the Python
    process that forked the command), sampled every 20 ms."""
    with open(stdin, "rb") as fin:
        p = subprocess.Popen(["bash", "-c", "exec " + cmd], stdin=fin, stdout=subprocess.DEVNULL,
                             env=USER_ENV)
        peak_pss, peak_rss = 0, 0
        while True:
            pid, status, _ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            pids = tree(p.pid)
            peak_pss = max(peak_pss, sum(field_kib(f"/proc/{q}/smaps_rollup", "Pss:") for q in pids))
            peak_rss = max([peak_rss] + [field_kib(f"/proc/{q}/status", "VmHWM:") for q in pids])
            time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"bench.py: '{cmd}' exited {p.returncode}")
    return peak_pss / 1024, peak_rss / 1024


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(r, widths)))
    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--pages", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    gz_reps = int(os.environ.get("GZ_REPS", 3))
    ocr_reps = int(os.environ.get("OCR_REPS", 3))
    scratch = os.path.join(a.out, "jobs-scratch")
    os.makedirs(scratch, exist_ok=True)
    q = shlex.quote
    pgz, ocr = q(os.path.join(a.bin, "pgz")), q(os.path.join(a.bin, "ocr"))
    py = q(sys.executable)
    size = os.path.getsize(a.corpus)
    mb = size / 1e6
    lines = []
    results = []  # RESULT lines for benches/report.py (make bench)

    def result(key, value):
        results.append(f"RESULT jobs.{key} {value:.6g}")

    def results_of(key, runs, amount, unit):
        """jobs.KEY.UNIT (amount / the best run's wall time), .cpu_s and .disturbed of that run,
        as before rounds were summed up; then UNIT_median and UNIT_worst (median and slowest
        round), cpu_s_min/median/max over the rounds, and how many rounds there were."""
        (_, wmed, wmax), (cmin, cmed, cmax), (wall, cpu, dist) = spread(runs)
        result(f"{key}.{unit}", amount / wall)
        result(f"{key}.cpu_s", cpu)
        result(f"{key}.disturbed", float(bool(dist)))
        result(f"{key}.{unit}_median", amount / wmed)
        result(f"{key}.{unit}_worst", amount / wmax)
        result(f"{key}.cpu_s_min", cmin)
        result(f"{key}.cpu_s_median", cmed)
        result(f"{key}.cpu_s_max", cmax)
        result(f"{key}.rounds", len(runs))

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    say(f"libpool example jobs: pgz (parallel gzip) and ocr (Tesseract), {time.strftime('%Y-%m-%d %H:%M')}")
    say(f"machine: {NCPU} CPUs ({platform.processor() or platform.machine()}), {platform.platform()}, "
        f"load {open('/proc/loadavg').read().split()[0]} at start")
    say("Every command runs with no OMP_* variable (the OpenMP runtime's defaults, as a user runs it)")
    say("unless its name gives one; seconds and CPU s are min/median/max over the rounds")
    say()

    # ---- gzip -------------------------------------------------------------------------------
    gz = {
        "pgz -p 2 -b 128 -l 6 (libpool)": f"{pgz} -p 2 -b 128 -l 6",
        "pigz -p 2 -b 128 -6": "pigz -n -p 2 -b 128 -6",
        "python Pool(2) + zlib, same scheme": f"{py} {q(os.path.join(HERE, 'py_gzip.py'))} -p 2 -b 128 -l 6",
        "gzip -6 (serial)": "gzip -n -6",
    }
    outs = {name: os.path.join(scratch, f"out{i}.gz") for i, name in enumerate(gz)}
    timed = rounds({name: (cmd, a.corpus, outs[name], USER_ENV) for name, cmd in gz.items()}, gz_reps)
    for name in gz:
        out = outs[name]
        check = subprocess.run(f"gzip -t {q(out)} && gunzip -c {q(out)} | cmp -s - {q(a.corpus)}",
                               shell=True)
        if check.returncode:
            sys.exit(f"bench.py: {name}: output does not round-trip")
    for key, name in zip(("pgz", "pigz", "py", "gzip"), gz):
        results_of(f"gz.{key}", timed[name], mb, "mb_s")
    pgz_med = spread(timed[next(iter(gz))])[0][1]
    rows = []
    for name, runs in timed.items():
        wall, cpu, best = spread(runs)
        rows.append([name, mmm(wall) + ("*" if best[2] else ""), f"{mb / wall[1]:.1f}", mmm(cpu),
                     f"{100 * os.path.getsize(outs[name]) / size:.2f}%", f"{wall[1] / pgz_med:.2f}x"])
    say(f"Job 1: compress a {mb:.0f} MB corpus (text + binaries from this machine), {gz_reps} rounds")
    for l in table(["", "seconds", "MB/s (median)", "CPU s", "size/input", "pgz faster by (median)"],
                   rows):
        say(l)
    say()

    # Memory: bounded by the window, not by the input's length.
    small = os.path.join(scratch, "corpus10")
    with open(a.corpus, "rb") as f, open(small, "wb") as g:
        g.write(f.read(size // 10))
    mem = [
        (f"pgz -p 2 -b 128, {mb / 10:.0f} MB", f"{pgz} -p 2 -b 128", small),
        (f"pgz -p 2 -b 128, {mb:.0f} MB", f"{pgz} -p 2 -b 128", a.corpus),
        (f"pgz -p 2 -b 1024, {mb:.0f} MB", f"{pgz} -p 2 -b 1024", a.corpus),
        (f"pigz -p 2 -b 128, {mb:.0f} MB", "pigz -n -p 2 -b 128", a.corpus),
        (f"python Pool(2) + zlib, {mb:.0f} MB", gz["python Pool(2) + zlib, same scheme"], a.corpus),
        (f"gzip -6, {mb:.0f} MB", "gzip -n -6", a.corpus),
    ]
    rows = []
    for name, cmd, inp in mem:
        print(f"  ... memory: {name}", file=sys.stderr, flush=True)
        pss, rss = peak_memory(cmd, inp)
        rows.append([name, f"{pss:.1f}", f"{rss:.1f}"])
        result(f"mem.{len(rows)}.pss_mib", pss)
    say("Memory: peak of the summed PSS of the process tree (shared pages counted once), and the")
    say("largest peak RSS (VmHWM) of one of its processes, sampled every 20 ms")
    for l in table(["", "tree PSS MiB", "max RSS MiB"], rows):
        say(l)
    say()

    # ---- OCR --------------------------------------------------------------------------------
    pages = sorted(glob.glob(os.path.join(a.pages, "page*.png")),
                   key=lambda p: int(os.path.basename(p)[4:-4]))
    n = len(pages)
    plist = " ".join(q(p) for p in pages)
    txt = os.path.join(scratch, "xargs-out")
    os.makedirs(txt, exist_ok=True)
    pairs = " ".join(f"{q(p)} {q(os.path.join(txt, os.path.basename(p)[:-4]))}" for p in pages)
    serial = f"for p in {plist}; do tesseract \"$p\" stdout 2>/dev/null; done"
    xargs = f"echo {pairs} | xargs -n 2 -P 2 sh -c 'tesseract \"$0\" \"$1\" 2>/dev/null'"
    py_ocr = f"{py} {q(os.path.join(HERE, 'py_ocr.py'))} -p 2 {plist} 2>/dev/null"
    omp1 = ", OMP_THREAD_LIMIT=1"
    ocr_jobs = {  # result key: (name, command, environment)
        "serial": ("tesseract CLI, serial loop", serial, USER_ENV),
        "serial_omp1": ("tesseract CLI, serial loop" + omp1, serial, OMP1_ENV),
        "pool1": ("ocr -p 1 (libpool, 1 engine)", f"{ocr} -p 1 {plist}", USER_ENV),
        "pool2": ("ocr -p 2 (libpool)", f"{ocr} -p 2 {plist}", USER_ENV),
        "xargs": ("xargs -P 2 tesseract", xargs, USER_ENV),
        "xargs_omp1": ("xargs -P 2 tesseract" + omp1, xargs, OMP1_ENV),
        "py": ("python Pool(2) + tesseract CLI", py_ocr, USER_ENV),
        "py_omp1": ("python Pool(2) + tesseract CLI" + omp1, py_ocr, OMP1_ENV),
    }
    outs = {k: os.path.join(scratch, f"ocr-{k}.out") for k in ocr_jobs}
    timed = rounds({k: (cmd, None, outs[k], env) for k, (_, cmd, env) in ocr_jobs.items()}, ocr_reps)
    chk = subprocess.run([sys.executable, os.path.join(ROOT, "tests/examples/check_ocr.py"),
                          outs["pool2"], "header"] + pages, capture_output=True, text=True)
    if chk.returncode:
        sys.exit(f"bench.py: ocr output wrong: {chk.stdout}")
    accuracy = chk.stdout.strip()
    for key, runs in timed.items():
        results_of(f"ocr.{key}", runs, n, "pages_s")
    result("ocr.pages", n)
    pool2_med = spread(timed["pool2"])[0][1]
    rows = []
    for key, runs in timed.items():
        wall, cpu, best = spread(runs)
        rows.append([ocr_jobs[key][0], mmm(wall) + ("*" if best[2] else ""), f"{n / wall[1]:.2f}",
                     mmm(cpu, "{:.1f}"), f"{wall[1] / pool2_med:.2f}x"])
    say(f"Job 2: OCR {n} rendered pages (1700x2200, 200 dpi, 16 lines of text), {ocr_reps} rounds; "
        f"libpool output checked: {accuracy}")
    for l in table(["", "seconds", "pages/s (median)", "CPU s", "ocr -p 2 faster by (median)"], rows):
        say(l)
    say()
    say("* = other processes took more than 10% of the machine during the fastest round")
    with open(os.path.join(a.out, "jobs.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "jobs-results.txt"), "w") as f:
        f.write("\n".join(results) + "\n")
    print(f"written to {os.path.join(a.out, 'jobs.txt')}", file=sys.stderr)


if __name__ == "__main__":
    main()
