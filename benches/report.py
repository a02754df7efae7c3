"""Turns the RESULT lines collected by benches/run.sh into the comparison table (stdout) and
BENCHMARKS.md. Usage: python3 report.py RESULTS_FILE META_FILE OUT_MD

A key reported several times (separate process runs) is summarised by its median.
"""
import os
import statistics
import sys

results_path, meta_path, out_md = sys.argv[1:4]

vals = {}
for line in open(results_path):
    parts = line.split()
    if len(parts) == 3 and parts[0] == "RESULT":
        vals.setdefault(parts[1], []).append(float(parts[2]))
R = {k: statistics.median(v) for k, v in vals.items()}
meta = {}
for line in open(meta_path):
    k, _, v = line.rstrip("\n").partition("=")
    meta[k] = v


def get(k):
    return R.get(k)


# ---- formatting ---------------------------------------------------------------------------------
def f_rate(v, unit):
    if v is None:
        return None
    for div, pre in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g} {pre}{unit}"
    return f"{v:.3g} {unit}"


def f_time(v):
    if v is None:
        return None
    if v < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if v < 1:
        return f"{v * 1e3:.3g} ms"
    return f"{v:.3g} s"


def f_x(v):
    return None if v is None else f"{v:.3g}×"


def f_gbs(v):
    return None if v is None else f"{v:.3g} GB/s"


def f_mib(v):
    if v is None:
        return None
    return f"{v:,.0f} MiB" if abs(v) >= 100 else f"{v:.3g} MiB"


def f_n(n):
    """1000000 -> 1e6"""
    return f"1e{len(str(n)) - 1}" if str(n).strip("0") == "1" else f"{n:,}"


def ratio(a, b):
    """a / b when both are known."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def speedup(serial, par):
    return ratio(serial, par)


rows = []  # dicts: wl, metric, pool, py, omp, ser, vpy, vomp, vser, target, status


def row(wl, metric, pool, py=None, omp=None, ser=None, vpy=None, vomp=None, vser=None, targets=(), note_py=None, note_omp=None, note_ser=None, status_override=None):
    """targets: list of (text, bool-or-None); None means the figure is missing."""
    status = []
    for text, ok in targets:
        status.append("n/a" if ok is None else ("MET" if ok else "MISSED"))
    if status_override:
        status = [status_override]
    rows.append(dict(
        wl=wl, metric=metric,
        pool=pool or "—",
        py=py or note_py or "—",
        omp=omp or note_omp or "—",
        ser=ser or note_ser or "—",
        vpy=f_x(vpy) or "—", vomp=f_x(vomp) or "—", vser=f_x(vser) or "—",
        target="; ".join(t for t, _ in targets) or "—",
        status="; ".join(status) or "—",
    ))


def ge(v, limit):
    return None if v is None else v >= limit


def le(v, limit):
    return None if v is None else v <= limit


N1, N8 = 1000000, 100000000
# W1
py, om, se = (get(f"w1.{w}.{N1}.items_per_s") for w in ("py", "omp", "serial"))
for kind, label in (("pool", "malloc buffers"), ("shm", "pool_shm_alloc buffers")):
    p = get(f"w1.{kind}.{N1}.items_per_s")
    row(f"W1 map 1e6, {label}", "items/s", f_rate(p, "/s"), f_rate(py, "/s"), f_rate(om, "/s"), f_rate(se, "/s"),
        ratio(p, py), ratio(p, om), ratio(p, se), [("≥ 100× Python", ge(ratio(p, py), 100))])
for kind, label in (("blocks", "malloc buffers"), ("blocks_shm", "pool_shm_alloc buffers")):
    p = get(f"w1.{kind}.{N1}.items_per_s")
    row(f"W1 block map 1e6, {label}", "items/s", f_rate(p, "/s"), f_rate(py, "/s"), f_rate(om, "/s"), f_rate(se, "/s"),
        ratio(p, py), ratio(p, om), ratio(p, se), [("≥ 100× Python", ge(ratio(p, py), 100))])
om, se = (get(f"w1.{w}.{N8}.items_per_s") for w in ("omp", "serial"))
py_note = "not run" if py is None else f"not run (≈ {N8 / py:.0f} s/rep)"
for kind, label in (("pool", "malloc buffers"), ("shm", "pool_shm_alloc buffers")):
    p = get(f"w1.{kind}.{N8}.items_per_s")
    row(f"W1 map 1e8, {label}", "items/s", f_rate(p, "/s"), None, f_rate(om, "/s"), f_rate(se, "/s"),
        None, ratio(p, om), ratio(p, se), [("≥ 1/3 of OpenMP", ge(ratio(p, om), 1 / 3))], note_py=py_note)
for kind, label in (("blocks", "malloc buffers"), ("blocks_shm", "pool_shm_alloc buffers")):
    p = get(f"w1.{kind}.{N8}.items_per_s")
    goal = [("within 2× OpenMP", ge(ratio(p, om), 1 / 2))] if kind == "blocks_shm" else []
    row(f"W1 block map 1e8, {label}", "items/s", f_rate(p, "/s"), None, f_rate(om, "/s"), f_rate(se, "/s"),
        None, ratio(p, om), ratio(p, se), goal, note_py=py_note)
# W2
p, py, om = get("w2.pool.p50_s"), get("w2.py.p50_s"), get("w2.omp.p50_s")
row("W2 round trip", "p50 latency", f_time(p), f_time(py), f_time(om), None,
    ratio(py, p), ratio(om, p), None, [("≥ 15× faster than Python", ge(ratio(py, p), 15))],
    note_ser="n/a")
p99, py99, om99 = get("w2.pool.p99_s"), get("w2.py.p99_s"), get("w2.omp.p99_s")
row("W2 round trip", "p99 latency", f_time(p99), f_time(py99), f_time(om99), None,
    ratio(py99, p99), ratio(om99, p99), None, [("bounded: ≤ 100 µs", le(p99, 100e-6))],
    note_ser="n/a")
mx = get("w2.pool.max_s")
# W3
p, py, om = get("w3.pool.tasks_per_s"), get("w3.py.tasks_per_s"), get("w3.omp.tasks_per_s")
row("W3 100k apply_async", "tasks/s", f_rate(p, "/s"), f_rate(py, "/s"), f_rate(om, "/s"), None,
    ratio(p, py), ratio(p, om), None,
    [("≥ 300k/s", ge(p, 300000)), ("≥ 25× Python", ge(ratio(p, py), 25))], note_ser="n/a")
# W4
ser = get("w4.serial.seconds")
pm, pa, om = get("w4.pool.map_seconds"), get("w4.pool.apply_seconds"), get("w4.omp.seconds")
pys, pyp = get("w4.py.serial_seconds"), get("w4.py.seconds")
s_pm, s_pa, s_om, s_py = speedup(ser, pm), speedup(ser, pa), speedup(ser, om), speedup(pys, pyp)
row("W4 64×10 ms CPU (map)", "speedup vs serial", f_x(s_pm), f_x(s_py), f_x(s_om), f_time(ser),
    ratio(s_pm, s_py), ratio(s_pm, s_om), s_pm, [("≥ 1.9× serial", ge(s_pm, 1.9))])
row("W4 64×10 ms CPU (apply_async)", "speedup vs serial", f_x(s_pa), f_x(s_py), f_x(s_om), f_time(ser),
    ratio(s_pa, s_py), ratio(s_pa, s_om), s_pa, [("≥ 1.9× serial", ge(s_pa, 1.9))])
# W5
p, py, om, se = get("w5.pool.copy_gb_per_s"), get("w5.py.gb_per_s"), get("w5.omp.gb_per_s"), get("w5.serial.gb_per_s")
row("W5 256×1 MiB, copies", "GB/s (input)", f_gbs(p), f_gbs(py), f_gbs(om), f_gbs(se),
    ratio(p, py), ratio(p, om), ratio(p, se), [("≥ 10× Python", ge(ratio(p, py), 10))])
pw = get("w5.pool.window16_gb_per_s")
row("W5 256×1 MiB, copies, ≤ 16 in flight", "GB/s (input)", f_gbs(pw), f_gbs(py), f_gbs(om), f_gbs(se),
    ratio(pw, py), ratio(pw, om), ratio(pw, se), [("≥ 10× Python", ge(ratio(pw, py), 10))])
ps = get("w5.shm.gb_per_s")
# bench_pool stops with an error if a task is handed anything but the caller's shared buffers,
# so a figure here means that nothing was copied.
row("W5 256×1 MiB, pool_shm_alloc", "GB/s (input)", f_gbs(ps), f_gbs(py), f_gbs(om), f_gbs(se),
    ratio(ps, py), ratio(ps, om), ratio(ps, se), [("no copy at all (checked)", None if ps is None else True)])
# W6
for mib, label in ((0, "small host"), (1024, "1 GiB touched heap")):
    p, py = get(f"w6.pool.{mib}.first_s"), get(f"w6.py.{mib}.first_s")
    om = get("w6.omp.0.first_s") if mib == 0 else None
    tg = [("< 2 ms", le(p, 0.002))] if mib == 0 else []
    row(f"W6 start-up, {label}", "create → 1st result", f_time(p), f_time(py), f_time(om), None,
        ratio(py, p), ratio(om, p), None, tg, note_omp=None if mib == 0 else "n/a", note_ser="n/a")
    p, py = get(f"w6.pool.{mib}.destroy_s"), get(f"w6.py.{mib}.destroy_s")
    row(f"W6 start-up, {label}", "destroy", f_time(p), f_time(py), None, None,
        ratio(py, p), None, None, [], note_omp="n/a", note_ser="n/a")
# W7
w7_ns = sorted({int(k.split(".")[3]) for k in R if k.startswith("w7.pool.pool-first.")})
extras = []
for n in w7_ns:
    e = get(f"w7.pool.pool-first.{n}.extra_mib")
    extras.append(e)
    om = get(f"w7.omp.{n}.extra_mib")
    row(f"W7 memory, map 1e{len(str(n)) - 1}", "peak extra over in+out", f_mib(e), None, f_mib(om), None,
        None, None, None, [("≤ 64 MiB (tens of MiB)", le(e, 64))], note_py="not run", note_ser="n/a")
for order, label, metric in (("buffers-first", "map 1e8, buffers before pool", "peak extra over in+out"),
                             ("shm", "map 1e8, pool_shm_alloc buffers", "peak extra over in+out"),
                             ("imap", "pool_imap 1e7", "peak extra over in")):
    ns = sorted({int(k.split(".")[3]) for k in R if k.startswith(f"w7.pool.{order}.")})
    for n in ns:
        e = get(f"w7.pool.{order}.{n}.extra_mib")
        row(f"W7 memory, {label}", metric, f_mib(e), None, None, None, None, None, None,
            [("≤ 64 MiB (tens of MiB)", le(e, 64))], note_py="not run", note_omp="n/a", note_ser="n/a")

# W8 (libpool_mpi): its own table, since its columns are not those of W1..W7.
w8_rows = []


def w8_row(metric, mpi, local, m4py, v_local, v_m4py, target, ok):
    w8_rows.append([metric, mpi or "—", local or "—", m4py or "—", f_x(v_local) or "—", f_x(v_m4py) or "—",
                    target or "—", "n/a" if ok is None else ("MET" if ok else "MISSED")])


m4, ml, mp = get("mpi.np4.map_items_per_s"), get("mpi.local.map_items_per_s"), get("mpi.mpi4py.map_items_per_s")
w8_row("map of 1e6 longs, items/s", f_rate(m4, "/s"), f_rate(ml, "/s"), f_rate(mp, "/s"), ratio(m4, ml),
       ratio(m4, mp), "≥ 10× mpi4py", ge(ratio(m4, mp), 10))
r4, rr4, rl, rp = get("mpi.np4.rt_p50_s"), get("mpi.np4.remote_rt_p50_s"), get("mpi.local.rt_p50_s"), get("mpi.mpi4py.rt_p50_s")
w8_row("apply round trip p50, as scheduled", f_time(r4), f_time(rl), f_time(rp), ratio(rl, r4), ratio(rp, r4), None, None)
w8_row("apply round trip p50, to another rank", f_time(rr4), f_time(rl), f_time(rp), ratio(rl, rr4), ratio(rp, rr4),
       "≥ 10× mpi4py", ge(ratio(rp, rr4), 10))
for k in (1, 2, 3, 4):
    c = get(f"mpi.np{k}.cpu_items_per_s")
    w8_row(f"400 items of ~2 ms CPU, {k} rank{'s' if k > 1 else ''}, items/s", f_rate(c, "/s"),
           f_rate(get("mpi.local.cpu_items_per_s"), "/s") if k == 4 else None, None,
           ratio(c, get("mpi.local.cpu_items_per_s")) if k == 4 else None, None, None, None)
w8_cols = ["Metric", "libpool_mpi, 4 ranks × 1 worker", "local pool, 4 workers", "mpi4py.futures, 3 workers",
           "vs local", "vs mpi4py", "Target", "Result"]


def w8_md():
    out = ["| " + " | ".join(w8_cols) + " |", "|" + "|".join("---" for _ in w8_cols) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in w8_rows]
    return "\n".join(out)


# The real jobs (c_examples/pgz.c, c_examples/ocr.c; benches/jobs.sh): goals of issue 11.
job_rows = []


def job_row(goal, figure, ok):
    job_rows.append([goal, figure, "n/a" if ok is None else ("MET" if ok else "MISSED")])


g = {k: get(f"jobs.gz.{k}.mb_s") for k in ("pgz", "pigz", "py", "gzip")}
if g["pgz"] is not None:
    job_row("pgz -p 2 at least `pigz -p 2`'s throughput (128 KiB blocks)",
            f"{g['pgz']:.1f} vs {g['pigz']:.1f} MB/s ({f_x(ratio(g['pgz'], g['pigz']))})", ge(ratio(g["pgz"], g["pigz"]), 1))
    job_row("pgz against Python Pool(2) + zlib (same scheme) and gzip -6",
            f"{f_x(ratio(g['pgz'], g['py']))} and {f_x(ratio(g['pgz'], g['gzip']))}", None)
    m10, m100 = get("jobs.mem.1.pss_mib"), get("jobs.mem.2.pss_mib")
    job_row("pgz memory bounded: 10× the input, at most 1.5× the memory",
            f"{m10:.1f} MiB on 10 MB, {m100:.1f} MiB on 100 MB (process tree PSS)", le(m100 / m10, 1.5))
o = {k: get(f"jobs.ocr.{k}.pages_s") for k in ("serial", "pool1", "pool2", "xargs", "py")}
if o["pool2"] is not None:
    job_row("OCR ahead of `xargs -P2 tesseract`",
            f"{o['pool2']:.2f} vs {o['xargs']:.2f} pages/s ({f_x(ratio(o['pool2'], o['xargs']))})", ge(ratio(o["pool2"], o["xargs"]), 1))
    job_row("OCR ahead of Python Pool(2) running tesseract",
            f"{o['pool2']:.2f} vs {o['py']:.2f} pages/s ({f_x(ratio(o['pool2'], o['py']))})", ge(ratio(o["pool2"], o["py"]), 1))
    job_row("OCR against serial tesseract", f"{f_x(ratio(o['pool2'], o['serial']))}", None)
try:
    jobs_txt = open(os.path.join(os.path.dirname(results_path), "jobs.txt")).read().rstrip()
except OSError:
    jobs_txt = ""


def jobs_md():
    if not job_rows:
        return "(not run)"
    out = ["| Goal | This run | Result |", "|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in job_rows]
    return "\n".join(out) + ("\n\n```text\n" + jobs_txt + "\n```" if jobs_txt else "")


# The sandbox's cost (issue 17): plain and POOL_SANDBOX_COMPUTE pools, interleaved round by round.
def ws_md():
    if get("ws.ratio.w3_rate") is None:
        return "(not run)"
    lines = ["| Figure | plain pool (median, min..max) | sandboxed, a fresh process per task (default) | "
             "sandboxed, one process for all tasks | fresh / plain | one / plain |",
             "|---|---|---|---|---|---|"]
    for key, what, fmt, rkey in (("w2_p50_s", "W2 round trip p50", f_time, "ws.ratio.w2_p50"),
                                 ("w3_tasks_per_s", "W3 apply_async throughput", lambda v: f_rate(v, "tasks/s"), "ws.ratio.w3_rate"),
                                 ("start_s", "pool_create(2) -> first result", f_time, "ws.ratio.start")):
        cells = []
        for c in ("plain", "sandbox", "sandbox_reuse"):
            m, lo, hi = get(f"ws.{c}.{key}"), get(f"ws.{c}.{key}.min"), get(f"ws.{c}.{key}.max")
            cells.append("—" if m is None else f"{fmt(m)} ({fmt(lo)}..{fmt(hi)})")
        reuse = get(rkey.replace("ws.ratio.", "ws.ratio_reuse."))
        lines.append(f"| {what} | {cells[0]} | {cells[1]} | {cells[2]} | {get(rkey):.3f} | "
                     f"{'—' if reuse is None else f'{reuse:.3f}'} |")
    extra = get("ws.sandbox.start_s") - get("ws.plain.start_s")
    lines.append("")
    lines.append(f"{int(get('ws.diag.rounds'))} rounds; each round runs the three, rotating which goes first. "
                 f"Start-up with the sandbox took {f_time(extra)} more per pool of 2 workers (they start "
                 f"in parallel: about that per worker). In a sandboxed pool tasks run in a process of their "
                 f"own, the worker's executor, which has no writable mapping of the pool: every item makes a "
                 f"round trip from the worker to it and back, and its output is copied once more, out of the "
                 f"executor's window. By default a fresh executor is forked for every task, so a task that "
                 f"takes its process over never reaches a later task's result: that fork and the sandbox's "
                 f"set-up are paid per task (W3's tasks are a single multiplication, the worst case). "
                 f"`sandbox_tasks_per_process` trades that protection for the last column.")
    return "\n".join(lines)


# ---- output ------------------------------------------------------------------------------------
cols = [("wl", "Workload"), ("metric", "Metric"), ("pool", "libpool"), ("py", "Python mp"),
        ("omp", "OpenMP"), ("ser", "serial C"), ("vpy", "vs Python"), ("vomp", "vs OpenMP"),
        ("vser", "vs serial"), ("target", "Target"), ("status", "Result")]


def md_table():
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r[k] for k, _ in cols) + " |")
    return "\n".join(out)


def text_table():
    w = {k: max(len(h), *(len(r[k]) for r in rows)) for k, h in cols}
    lines = ["  ".join(h.ljust(w[k]) for k, h in cols)]
    lines.append("  ".join("-" * w[k] for k, _ in cols))
    for r in rows:
        lines.append("  ".join(r[k].ljust(w[k]) for k, _ in cols))
    return "\n".join(lines)


print(text_table())
if get("mpi.np4.map_items_per_s") is not None:
    print("\nW8 libpool_mpi (" + ", ".join(w8_cols[1:4]) + ")")
    for r in w8_rows:
        print("  " + r[0].ljust(48) + "  ".join(c.ljust(12) for c in r[1:]))
if job_rows:
    print("\nReal jobs (benches/jobs.sh)")
    for r in job_rows:
        print("  " + r[0].ljust(62) + r[1].ljust(44) + r[2])
met = sum(r["status"].count("MET") for r in rows)
missed = sum(r["status"].count("MISSED") for r in rows)
print(f"\ntargets: {met} met, {missed} missed" + (f"; W2 worst single call {f_time(mx)}" if mx else ""))




# ---- notes: explanations computed from this run's diagnostics ------------------------------------
def status_of(prefix):
    for r in rows:
        if r["wl"].startswith(prefix):
            return r["status"]
    return "?"


def ms(v):
    return "?" if v is None else f"{v * 1e3:.3g} ms"


def x(v):
    return "?" if v is None else f"{v:.3g}×"


notes = []


def cpu_split(prefix):
    """(wall, host cpu, workers cpu) per repetition from a probe, or None."""
    v = [get(prefix + k) for k in ("wall_s", "host_user_s", "host_sys_s", "workers_user_s", "workers_sys_s")]
    return None if None in v else (v[0], v[1] + v[2], v[3] + v[4])


# W1
for n in (N1, N8):
    c, z = cpu_split(f"w1.diag.{n}."), cpu_split(f"w1.diag.shm.{n}.")
    floor, eight = get(f"w1.diag.{n}.host_copy_floor_s"), get(f"w1.diag.shm.{n}.eight_per_item_s")
    rate, srate = get(f"w1.pool.{n}.items_per_s"), get(f"w1.shm.{n}.items_per_s")
    py, om = get(f"w1.py.{n}.items_per_s"), get(f"w1.omp.{n}.items_per_s")
    if None in (c, z, floor, rate, srate):
        continue
    (wall, host, wk), (zwall, zhost, zwk) = c, z
    st = status_of(f"W1 map {f_n(n)}, malloc") + " with malloc buffers, " + status_of(f"W1 map {f_n(n)}, pool_shm") + " with pool_shm_alloc"
    t = (f"**W1 at {f_n(n)} ({st}).** With malloc'd buffers a map takes {ms(wall)}: the calling thread, "
         f"which copies every input into the pool's shared memory and every result back out, "
         f"uses {ms(host)} of CPU ({100 * host / wall:.0f}% busy"
         f"{': the bottleneck' if host / wall >= 0.7 else ''}); the two workers use {ms(wk)} between them "
         f"({wk / n * 1e9:.2g} ns per item, idle spins included). Those copies alone, on one thread with no "
         f"hand-offs and nothing computed (the host copy floor), take {ms(floor)}")
    if n == N1 and py:
        goal = n / (100 * py)
        t += (f"; 100× Python ({f_rate(py, 'items/s')} in this run, and it varies by 2× between runs here) "
              f"means a whole map in {ms(goal)}, {goal / floor:.2g}× that floor, where the map takes "
              f"{wall / floor:.2g}× it")
    elif om:
        q = om * floor / n
        t += (f", {x(q)} OpenMP's time: " + ("with copies the 3× target is out of reach whatever else is done"
              if q >= 3 else f"the copies alone use {q / 3:.0%} of the 3× allowed"))
    t += (f". With `pool_shm_alloc` buffers nothing is copied and the host uses only {ms(zhost)} per map, "
          f"but the map still takes {ms(n / srate)}: the workers use {ms(zwk)} ({zwk / n * 1e9:.2g} ns per "
          f"item against OpenMP's {2 / om * 1e9 if om else float('nan'):.2g} ns of CPU per item)")
    if eight is not None:
        t += (f", and the same squares done as {n // 8:,} "
              f"items of 8 longs take {ms(eight)}, {n / srate / eight:.2g}× less: the limit is the cost per "
              f"item (a call through a pointer the compiler cannot inline, and the worker's per-item "
              f"bookkeeping: the mark that makes crash recovery exact, the cancellation check, and, with malloc "
              f"buffers, the copy of each result from the worker's private memory, which keeps a task that "
              f"overruns its result from writing into other callers' data), not the data")
    one = get(f"w1.diag.{n}.one_worker_s")
    if one is not None:
        t += (f". With a single worker the copying map takes {ms(one)} (two: {ms(get(f'w1.pool.{n}.seconds'))}). "
              f"On this machine, with no other load, repeated runs of the copying 1e8 map alternate between "
              f"~0.35 s and ~0.7 s: in the slow runs the workers burn twice the CPU waiting for chunks and "
              f"the host, which needs a CPU of its own, gets less of one (waiting workers spin 5 µs, then "
              f"yield the CPU while they poll, before sleeping)")
    first = get(f"w1.diag.shm.{n}.first_map_s")
    if first is not None:
        t += (f". The first map over new shared buffers takes {ms(first)}: each worker maps the pages into its "
              f"own page tables on first touch")
    b, bz = get(f"w1.blocks.{n}.items_per_s"), get(f"w1.blocks_shm.{n}.items_per_s")
    if b is not None and bz is not None:
        t += (f". **Block maps** (`pool_map_blocks`: one call per block of consecutive items, so no per-item "
              f"call or bookkeeping): {f_rate(bz, 'items/s')} with `pool_shm_alloc` buffers "
              f"({x(ratio(bz, om))} OpenMP"
              + (f", {x(ratio(bz, py))} Python" if n == N1 and py else "")
              + f"), {f_rate(b, 'items/s')} with malloc'd buffers"
              + (f" ({x(ratio(b, py))} Python)" if n == N1 and py else "")
              + f": with copies a map can go no faster than the host's copies, whose floor alone is "
              f"{ms(floor)} ({f_rate(n / floor, 'items/s')})")
    notes.append(t + ".")
# W2
p50, py50, p99, mx = get("w2.pool.p50_s"), get("w2.py.p50_s"), get("w2.pool.p99_s"), get("w2.pool.max_s")
if None not in (p50, py50, p99):
    notes.append(f"**W2 ({status_of('W2')}).** p50 {f_time(p50)} against Python's {f_time(py50)}; p99 "
                 f"{f_time(p99)}: the worker polls ~50 µs after a task (yielding the CPU after 5 µs) and the "
                 f"caller spins ~30 µs in `pool_async_get` "
                 f"before sleeping on a futex, so a call that follows another rarely pays a cross-CPU wake-up "
                 f"(~40 µs here; \"bounded\" is read as at most two of them, 100 µs). From run to run the p99 "
                 f"is either ~2 µs or ~60 µs: in the latter about 1% of calls find the worker asleep. The worst "
                 f"of 60,000 calls took {f_time(mx)}. Python's p50 moves between ~50 and ~150 µs from run to "
                 f"run on this machine.")
# W3
p, py = get("w3.pool.tasks_per_s"), get("w3.py.tasks_per_s")
if None not in (p, py):
    notes.append(f"**W3 ({status_of('W3')}).** {f_rate(p, 'tasks/s')}: each `pool_apply_async` writes its "
                 f"task straight into shared memory and the workers take it from the shared queue; no host "
                 f"thread relays it. Each task also pays for the checks that answer misuse instead of crashing "
                 f"(every handle looked up in the registry of live handles, about 50 ns a call) and for "
                 f"keeping cancellation out of library calls (about 25 ns a call). Other load on the two "
                 f"CPUs cuts it several-fold (~0.5 M/s was seen with two busy loops running beside it).")
# W4
s_pm, s_pa = speedup(get("w4.serial.seconds"), get("w4.pool.map_seconds")), speedup(get("w4.serial.seconds"), get("w4.pool.apply_seconds"))
if None not in (s_pm, s_pa):
    notes.append(f"**W4 ({status_of('W4 64×10 ms CPU (map)')} map, {status_of('W4 64×10 ms CPU (apply')} "
                 f"apply_async).** {x(s_pm)} (map) and {x(s_pa)} (apply_async) over serial C, OpenMP "
                 f"{x(speedup(get('w4.serial.seconds'), get('w4.omp.seconds')))}: a waiting caller sleeps after a "
                 f"short spin, so the two workers get both CPUs. Any other load on the machine shows here first.")
# W5
c, w16, z = cpu_split("w5.diag.copy."), cpu_split("w5.diag.window16."), cpu_split("w5.diag.shm.")
p, pw, ps, py = get("w5.pool.copy_gb_per_s"), get("w5.pool.window16_gb_per_s"), get("w5.shm.gb_per_s"), get("w5.py.gb_per_s")
floor = get("w5.diag.host_copy_floor_s")
if None not in (c, w16, p, pw, py, floor):
    hs, ws = get("w5.diag.copy.host_sys_s"), get("w5.diag.copy.workers_sys_s")
    hs16 = get("w5.diag.window16.host_sys_s")
    notes.append(
        f"**W5 copies ({status_of('W5 256×1 MiB, copies')} with all 256 in flight, "
        f"{status_of('W5 256×1 MiB, copies, ≤')} with ≤ 16).** With all 256 tasks submitted before the "
        f"first is collected (as the Python version does), {p:.3g} GB/s = {x(p / py)} Python: a pass takes "
        f"{ms(c[0])}, of which the host spends {ms(hs)} and the workers {ms(ws)} in the kernel, populating "
        f"fresh pages of the pool's shared memory, since 512 MiB of inputs and results are in flight at "
        f"once; the copies themselves take {ms(floor)} (host copy floor, warm memory). With at most 16 tasks "
        f"in flight the same shared pages are reused: {pw:.3g} GB/s = {x(pw / py)} Python, {ms(hs16)} of host "
        f"kernel time.")
if ps is not None and py:
    notes.append(
        f"**W5 shared memory ({status_of('W5 256×1 MiB, pool_shm')}).** Inputs and outputs from "
        f"`pool_shm_alloc`: every task checks that it was handed the caller's own buffers (the run stops "
        f"otherwise), so nothing is copied; {ps:.3g} GB/s = {x(ps / py)} Python"
        + (f", with {ms(z[1])} of host CPU per pass" if z else "") + ".")
# W6
f0, f1, k0, k1, py1 = get("w6.pool.0.first_s"), get("w6.pool.1024.first_s"), get("w6.diag.0.fork_s"), get("w6.diag.1024.fork_s"), get("w6.py.1024.first_s")
if None not in (f0, f1, k0, k1):
    notes.append(f"**W6 ({status_of('W6 start-up, small host')}).** A small host gets its first result "
                 f"{f_time(f0)} after `pool_create` starts. With 1 GiB of touched heap it takes {f_time(f1)} "
                 f"(Python {f_time(py1)}): a bare `fork` + exit + `waitpid` of that host costs {f_time(k1)} "
                 f"({f_time(k0)} for the small one), as the page tables of the 1 GiB are copied and torn "
                 f"down, and libpool forks three times (the zygote from the host, then each worker from the "
                 f"zygote) where Python forks twice. No target is set for this case.")
# W7
e8, eb = get(f"w7.pool.pool-first.{N8}.extra_mib"), get(f"w7.pool.buffers-first.{N8}.extra_mib")
if None not in (e8, eb):
    zb, tp, tb = (get(f"w7.pool.buffers-first.{N8}.peak_pool_procs_pss_mib"), get(f"w7.pool.pool-first.{N8}.map_seconds"),
                  get(f"w7.pool.buffers-first.{N8}.map_seconds"))
    flat = ", ".join(f"{get(f'w7.pool.pool-first.{n}.extra_mib'):.3g} MiB at n = {f_n(n)}" for n in w7_ns)
    es, ei = get(f"w7.pool.shm.{N8}.extra_mib"), get("w7.pool.imap.10000000.extra_mib")
    t = (f"**W7 ({status_of('W7 memory, map 1e8')}; buffers before the pool: "
         f"{status_of('W7 memory, map 1e8, buffers')}).** With the pool created first (as with Python) the extra "
         f"memory is flat in n: {flat}: the host's own program, the zygote, two workers and a few MiB of "
         f"chunks in flight. When the caller's buffers already exist (touched) at `pool_create`, the zygote "
         f"and the workers keep a copy-on-write snapshot of them (by design: functions and `ctx` must exist at "
         f"`pool_create`), so every page of `out` the map writes gets copied: +{eb:.0f} MiB (the `out` array is "
         f"{N8 * 8 / 2**20:.0f} MiB), the zygote and workers holding {zb:.0f} MiB, and the first map taking "
         f"{tb:.3g} s instead of {tp:.3g} s (both with the sampler running). Workarounds: create the pool "
         f"first, or put the buffers in `pool_shm_alloc` memory, which is shared, not copy-on-write")
    if es is not None:
        t += f" (+{es:.3g} MiB measured that way"
        t += (f"; Pss shares change while pages get mapped into the workers during a sample, so this figure "
              f"is an upper bound)")
    if ei is not None:
        t += f". `pool_imap` over 1e7 items, results read one at a time: +{ei:.3g} MiB over the input"
    notes.append(t + ".")
notes_md = "\n\n".join(notes)
# What the job figures say (misses explained from this run's own numbers).
jobs_notes = ""
if job_rows:
    parts = []
    gc = {k: get(f"jobs.gz.{k}.cpu_s") for k in ("pgz", "pigz")}
    if g["pgz"] is not None and g["pigz"] and g["pgz"] < g["pigz"]:
        parts.append(
            f"pgz ran at {g['pgz']:.1f} MB/s against pigz's {g['pigz']:.1f} ({f_x(ratio(g['pgz'], g['pigz']))}). Both "
            f"spend nearly all their time in zlib's deflate on two cores"
            + (f": pgz used {gc['pgz']:.2f} s of CPU, pigz {gc['pigz']:.2f} s ({100 * (gc['pgz'] / gc['pigz'] - 1):+.1f}%)"
               if None not in gc.values() else "")
            + ". A perf profile of pgz (30 MB, 2026-11-30) puts 97.2% of its samples in zlib, 0.6% in libpool and "
            "0.5% in the workers' libc (clearing and copying results under 256 KiB, which go through private memory, "
            "not a window): what remains between the two is how fast the same zlib code runs in two processes "
            "against two threads. Across that day's runs the ratio was 1.05×, 1.01×, 0.97×, 0.96× (contenders "
            "interleaved) and 0.90× (not interleaved, on a loaded machine).")
    oc = {k: get(f"jobs.ocr.{k}.cpu_s") for k in ("serial", "pool1", "pool2", "xargs", "py")}
    if o["pool2"] is not None and o["xargs"] and o["pool2"] < o["xargs"]:
        n_pages = get("jobs.ocr.pages") or 24
        saved = (oc["serial"] - oc["pool1"]) / n_pages if None not in (oc["serial"], oc["pool1"]) else None
        parts.append(
            f"ocr fell behind xargs in this run ({o['pool2']:.2f} against {o['xargs']:.2f} pages/s). Every page "
            f"costs the same engine work whoever runs it; ocr saves only what loading Tesseract and its model "
            f"costs per page"
            + (f", {saved * 1000:.0f} ms of CPU here (serial loop {oc['serial']:.1f} s against `ocr -p 1` "
               f"{oc['pool1']:.1f} s for {n_pages:.0f} pages)" if saved is not None else "")
            + (f", while the two runs used {oc['pool2']:.1f} s (ocr) and {oc['xargs']:.1f} s (xargs) of CPU in all"
               if None not in (oc["pool2"], oc["xargs"]) else "")
            + ". The CPU time of the same command moves by 10-15% from run to run on this VM, more than that "
            "saving: the order of the two is within its noise (an earlier quiet run had ocr 1.25× ahead).")
    if o["pool2"] is not None and o["pool1"] and o["serial"]:
        parts.append(f"`ocr -p 1` is {f_x(ratio(o['pool1'], o['serial']))} the serial `tesseract` loop on one core: "
                     "that is the engine and model loaded once per worker instead of once per page, which is where "
                     "the lead over `xargs` and Python (which start `tesseract` per page) comes from.")
    jobs_notes = " ".join(parts)

w8_notes = ""
if None not in (m4, ml, rr4, rl):
    c1, c4 = get("mpi.np1.cpu_items_per_s"), get("mpi.np4.cpu_items_per_s")
    r1 = get("mpi.np1.rt_p50_s")
    w8_notes = (
        f"**What the W8 figures say.** A map of small items over 4 ranks runs at {f_rate(m4, 'items/s')}, "
        f"{x(ratio(m4, ml))} a local pool's: the root's own worker runs its share at local speed, and "
        f"chunks travel to the other ranks as one message each way (inputs out; results and failure "
        f"records back), copied once more by the MPI layer. A call sent to another rank and back takes "
        f"{f_time(rr4)} at the median ({x(ratio(rp, rr4))} faster than mpi4py.futures, against the "
        f"10x goal): two MPI messages on shared memory, the other rank's submission into its own pool, "
        f"the wake-up of its worker, and the root caller's own wake-up; on this machine 4 ranks, each "
        f"with a serving loop that polls MPI and a worker, plus the root's caller, runner and worker, "
        f"share {meta.get('nproc')} CPUs, and every hand-off waits for a CPU. The same oversubscription "
        f"is why a call that stays on the root takes {f_time(r4)} with 4 ranks but {f_time(r1)} with one "
        f"(and {f_time(rl)} in a local pool): the root's worker is put to sleep and woken between calls. "
        f"(Open MPI binds each rank to one core by default, which made even one rank take ~40 µs a call: "
        f"the benchmark, like the README, runs `mpirun --bind-to none`.) CPU-bound work spreads over "
        f"the ranks: {f_rate(c1, 'items/s')} on 1 rank, {f_rate(c4, 'items/s')} on 4; beyond 2 ranks "
        f"this machine's 2 CPUs are the limit, so the figure measures oversubscription, not scaling. "
        f"On real nodes each rank brings its own CPUs and its loop polls on a CPU of its own: with "
        f"tasks of milliseconds the per-task cost (tens of µs here, plus the network's latency, "
        f"~2-5 µs on InfiniBand, ~20-50 µs on TCP) is far below the task, so throughput should grow "
        f"with the ranks' CPUs; tasks of microseconds should be batched (chunksize) so that each "
        f"message carries enough work.")



def k(key, fmt):
    v = get(key)
    return fmt(v) if v is not None else "?"


steps = [(k.split(".", 1)[1], v) for k, v in R.items() if k.startswith("foreign.")]
foreign_steps = ", ".join(f"{name} {v:.0f}%" for name, v in steps) or "?"
busy_steps = [name for name, v in steps if v >= 10 and name != "w7"]  # W7 measures memory only
if busy_steps:
    foreign_steps += (f" — **warning: other processes took ≥ 10% of the CPUs during {', '.join(busy_steps)}; "
                      f"those figures are disturbed: re-run on a quiet machine**")
    print(f"warning: disturbed steps: {', '.join(busy_steps)}")
machine = f"""- CPUs (nproc): {meta.get('nproc')}; model: {meta.get('cpu')}
- Memory: {meta.get('mem_gib')} GiB total (`free -g`); kernel {meta.get('kernel')}
- Compilers and runtimes: {meta.get('gcc')}; {meta.get('rustc')}; {meta.get('python')}; OpenMP via {meta.get('omp')}
- Date: {meta.get('date')}
- Machine load: before the run load average {meta.get('loadavg')}, CPU idle {meta.get('idle_pct')}% over 1 s;
  other processes used {meta.get('foreign_pct', '?')}% of the CPUs during the run (figures are less reliable when this is high)
- Other processes' largest share of the CPUs while one program of a step ran: {foreign_steps}
- Total benchmark time: {meta.get('elapsed_s', '?')} s"""

w7_lines = []
for n in w7_ns:
    pre = f"w7.pool.pool-first.{n}."
    w7_lines.append(
        f"  - n = {n:,}: in+out {k(pre + 'buffers_mib', f_mib)}, peak Pss of all processes "
        f"{k(pre + 'peak_pss_mib', f_mib)} (sum of Rss {k(pre + 'peak_rss_sum_mib', f_mib)}), "
        f"zygote+workers {k(pre + 'peak_pool_procs_pss_mib', f_mib)}, map {k(pre + 'map_seconds', f_time)}"
    )
pre = f"w7.pool.buffers-first.{N8}."
if get(pre + "extra_mib") is not None:
    w7_lines.append(
        f"  - n = {N8:,}, buffers allocated and touched *before* `pool_create`: peak Pss "
        f"{k(pre + 'peak_pss_mib', f_mib)}, zygote+workers {k(pre + 'peak_pool_procs_pss_mib', f_mib)}, "
        f"map {k(pre + 'map_seconds', f_time)}"
    )

md = f"""# libpool benchmarks

Generated by `bash benches/run.sh` (do not edit by hand: the same command regenerates this
file). Workloads and targets are those of issue 5. Every implementation runs the same work in the
same run: libpool (2 workers), Python 3 `multiprocessing.Pool` (fork context, 2 workers), OpenMP
with 2 threads (the shared-memory limit: no process boundary at all), and serial C. Figures are
medians of several repetitions; every result is checked for correctness.

## Machine

{machine}

## Results

Ratios are "how many times better libpool is" (> 1 means libpool wins): throughput ÷
throughput, or time ÷ time the other way round, or speedup ÷ speedup for W4.

{md_table()}

## W8: one pool over MPI ranks (libpool_mpi)

Same machine, same run: `mpirun --bind-to none -np 4` (Open MPI, oversubscribed on {meta.get('nproc')} CPUs) with one worker
per rank, against a local pool of 4 workers and against mpi4py.futures' `MPIPoolExecutor`
(`mpirun -np 4 python3 -m mpi4py.futures`: rank 0 runs the script, 3 workers).

{w8_md() if w8_rows and get("mpi.np4.map_items_per_s") is not None else "(not run: no MPI)"}

{w8_notes}

## The real jobs: parallel gzip and OCR

`c_examples/pgz.c` (a pigz-style gzip on `pool_stream_source` and `pool_out_reserve`) and
`c_examples/ocr.c` (Tesseract, one engine per worker, on `pool_stream`) against the usual
tools, in the same run (`benches/jobs.sh`, also run alone): a ~100 MB corpus of this
machine's files, and 24 rendered pages; every output is checked (the gzip streams round-trip,
the OCR text matches the rendered words).

{jobs_md()}

{jobs_notes}

## The sandbox's cost

{ws_md()}

## How each workload is measured

- **W1** `pool_map` of `square` over `long[n]`, the pool already running; once with `malloc`'d
  buffers (copied through the pool's shared memory) and once with buffers from `pool_shm_alloc`
  (used in place; a first untimed map lets the workers map their pages). Python
  `pool.map(square, range(n))` with its default chunksize; OpenMP `parallel for schedule(static)`.
  Python runs at 1e6 only: at its rate a 1e8 map would take tens of seconds per repetition.
  1e8-item maps (800 MB per array) run 3 repetitions; 1e6 ones 7 (C) and 5 (Python). The notes
  also use the CPU time of the host thread (`getrusage`) and of the workers (`/proc/<pid>/stat`)
  over extra maps, a "host copy floor" (the host's copies alone, on one thread), the same squares
  done as n/8 items of 8 longs, and the copying map with a single worker.
- **W2** one `pool_apply_async` + `pool_async_get` + `pool_async_free` at a time (Python:
  `apply_async(...).get()`), 10,000 calls per run, 5 runs; p50/p99 per run, median over runs.
  W2 worst single libpool call: {f_time(mx) if mx else '?'}. The OpenMP column is two threads
  handing a value over through a spinning flag: the floor of a cross-core round trip.
- **W3** 100,000 `pool_apply_async` submitted, then each `pool_async_get` + `pool_async_free`; 5 reps for
  libpool (after one warm-up), 3 for Python. OpenMP: 100,000 `omp task`s from one thread.
- **W4** 64 tasks of a calibrated LCG loop of ~{k('w4.serial.task_ms', lambda v: f'{v:.3g}')} ms
  each on one core (Python: a pure-Python loop calibrated to 10 ms, its speedup is over serial
  Python). libpool runs them as one `pool_map` of 64 items and as 64 `pool_apply_async`.
- **W5** 256 tasks, 1 MiB in and 1 MiB out each (out = in XOR 0x5a), `pool_apply_async` with
  in_size = out_size = 1 MiB: all submitted, then collected (as the Python version does with
  `apply_async(f, (bytes,))` and `bytes.translate`); the same with at most 16 in flight; and with
  in and out in `pool_shm_alloc` memory, where each task checks that it got the caller's own
  buffers (no copy). GB/s counts the input bytes (256 MiB per repetition); 5 repetitions (3 for
  Python).
- **W6** `pool_create(2)` → `pool_apply` of one item → `pool_destroy`, 10 reps (5 with the heap);
  Python `Pool(2)` → `apply()` → `terminate(); join()`. The 1 GiB heap is allocated and
  touched before the pool is created. OpenMP: time to the end of the first parallel region of
  a fresh process (its threads are created then).
- **W7** a thread of the host samples, every 5 ms, `Pss` from `/proc/<pid>/smaps_rollup` of the
  host and all its descendants (zygote, workers) during a `pool_map` over n longs (repeated for
  0.2 s when short); Pss divides shared pages among the processes sharing them, so the pool's
  shared memory and the pages the workers share with the host count once. "Extra" = peak total
  Pss − (in + out buffers); it includes the host program's own baseline
  (~{k(f'w7.pool.pool-first.{N1}.host_baseline_pss_mib', lambda v: f'{v:.2g}')} MiB before anything is
  allocated). Variants: buffers allocated and touched before `pool_create`; buffers from
  `pool_shm_alloc`; `pool_imap` (no output array: results read one at a time, extra over the
  input). OpenMP column: `VmHWM` − buffers of the OpenMP process.
{chr(10).join(w7_lines)}

## Notes: what limits each figure (measured in this run)

{notes_md}
"""
with open(out_md, "w") as f:
    f.write(md)
