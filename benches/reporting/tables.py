"""The tables of the report: each figure as its median over rounds with the spread [min–max],
ratios and targets from the medians."""
from .figures import f_gbs, f_mib, f_rate, f_time, f_x, ge, le, ratio, verdict

N1, N8 = 1000000, 100000000
MAIN_COLS = ["Workload", "Metric", "libpool", "Python mp", "OpenMP", "serial C", "vs Python", "vs OpenMP",
             "vs serial", "Target", "Result"]


def rate(v):
    return f_rate(v, "/s")


def speedup_cell(F, serial_key, key):
    """serial median ÷ the key's median, with the spread of the key's values mapped the same way."""
    ser, s = F.get(serial_key), F.spread(key)
    if ser is None or s is None:
        return None, None
    lo, med, hi, n = s
    text = f_x(ser / med) + (f" [{ser / hi:.3g}–{ser / lo:.3g}]" if n > 1 else "")
    d = max(F.disturbed(key), F.disturbed(serial_key))
    return text + (f" ⚠{d}/{n}" if d else ""), ser / med


def main_rows(F):
    """The comparison table of W1..W7: rows of MAIN_COLS."""
    rows = []
    c = F.cell

    def row(wl, metric, pool, py=None, omp=None, ser=None, vpy=None, vomp=None, vser=None, targets=(),
            note_py=None, note_omp=None, note_ser=None):
        if pool is None:
            return  # not in this run (make bench ONLY=...)
        rows.append([wl, metric, pool or "—", py or note_py or "—", omp or note_omp or "—", ser or note_ser or "—",
                     f_x(vpy) or "—", f_x(vomp) or "—", f_x(vser) or "—",
                     "; ".join(t for t, _ in targets) or "—", "; ".join(verdict(ok) for _, ok in targets) or "—"])

    # W1
    k1 = {w: f"w1.{w}.{N1}.items_per_s" for w in ("py", "omp", "serial")}
    py, om, se = (F.get(k1[w]) for w in ("py", "omp", "serial"))
    for kind, label in (("pool", "map 1e6, malloc buffers"), ("shm", "map 1e6, pool_shm_alloc buffers"),
                        ("blocks", "block map 1e6, malloc buffers"), ("blocks_shm", "block map 1e6, pool_shm_alloc buffers")):
        key = f"w1.{kind}.{N1}.items_per_s"
        p = F.get(key)
        row(f"W1 {label}", "items/s", c(key, rate) or F.skipped(key), c(k1["py"], rate), c(k1["omp"], rate),
            c(k1["serial"], rate), ratio(p, py), ratio(p, om), ratio(p, se), [("≥ 100× Python", ge(ratio(p, py), 100))])
    k8 = {w: f"w1.{w}.{N8}.items_per_s" for w in ("omp", "serial")}
    om, se = F.get(k8["omp"]), F.get(k8["serial"])
    py_note = "not run" if py is None else f"not run (≈ {N8 / py:.0f} s/rep)"
    for kind, label in (("pool", "map 1e8, malloc buffers"), ("shm", "map 1e8, pool_shm_alloc buffers"),
                        ("blocks", "block map 1e8, malloc buffers"), ("blocks_shm", "block map 1e8, pool_shm_alloc buffers")):
        key = f"w1.{kind}.{N8}.items_per_s"
        p = F.get(key)
        goal = {"pool": [("≥ 1/3 of OpenMP", ge(ratio(p, om), 1 / 3))], "shm": [("≥ 1/3 of OpenMP", ge(ratio(p, om), 1 / 3))],
                "blocks_shm": [("within 2× OpenMP", ge(ratio(p, om), 1 / 2))]}.get(kind, [])
        row(f"W1 {label}", "items/s", c(key, rate) or F.skipped(key), None, c(k8["omp"], rate), c(k8["serial"], rate),
            None, ratio(p, om), ratio(p, se), goal, note_py=py_note)
    # W2
    for q, target in (("p50", ("≥ 15× faster than Python", lambda p, py: ge(ratio(py, p), 15))),
                      ("p99", ("bounded: ≤ 100 µs", lambda p, py: le(p, 100e-6)))):
        keys = [f"w2.{w}.{q}_s" for w in ("pool", "py", "omp")]
        p, py, om = (F.get(k) for k in keys)
        row("W2 round trip", f"{q} latency", *(c(k, f_time) for k in keys), None, ratio(py, p), ratio(om, p), None,
            [(target[0], target[1](p, py))], note_ser="n/a")
    # W3
    keys = [f"w3.{w}.tasks_per_s" for w in ("pool", "py", "omp")]
    p, py, om = (F.get(k) for k in keys)
    row("W3 100k apply_async", "tasks/s", *(c(k, rate) for k in keys), None, ratio(p, py), ratio(p, om), None,
        [("≥ 300k/s", ge(p, 300000)), ("≥ 25× Python", ge(ratio(p, py), 25))], note_ser="n/a")
    # W4: speedups over serial (Python: over serial Python)
    s_py_txt, s_py = speedup_cell(F, "w4.py.serial_seconds", "w4.py.seconds")
    s_om_txt, s_om = speedup_cell(F, "w4.serial.seconds", "w4.omp.seconds")
    for kind, label in (("map", "map"), ("apply", "apply_async")):
        txt, s = speedup_cell(F, "w4.serial.seconds", f"w4.pool.{kind}_seconds")
        row(f"W4 64×10 ms CPU ({label})", "speedup vs serial", txt, s_py_txt, s_om_txt, c("w4.serial.seconds", f_time),
            ratio(s, s_py), ratio(s, s_om), s, [("≥ 1.9× serial", ge(s, 1.9))])
    # W5
    others = ["w5.py.gb_per_s", "w5.omp.gb_per_s", "w5.serial.gb_per_s"]
    py, om, se = (F.get(k) for k in others)
    # bench_pool stops with an error if a task is handed anything but the caller's shared buffers,
    # so a figure on the last row means that nothing was copied.
    for key, label in (("w5.pool.copy_gb_per_s", "copies"), ("w5.pool.window16_gb_per_s", "copies, ≤ 16 in flight"),
                       ("w5.shm.gb_per_s", "pool_shm_alloc")):
        p = F.get(key)
        goal = [("no copy at all (checked)", None if p is None else True)] if "shm" in key else [("≥ 10× Python", ge(ratio(p, py), 10))]
        row(f"W5 256×1 MiB, {label}", "GB/s (input)", c(key, f_gbs), *(c(k, f_gbs) for k in others),
            ratio(p, py), ratio(p, om), ratio(p, se), goal)
    # W6
    for mib, label in ((0, "small host"), (1024, "1 GiB touched heap")):
        kp, kpy = f"w6.pool.{mib}.first_s", f"w6.py.{mib}.first_s"
        p, py = F.get(kp), F.get(kpy)
        om = F.get("w6.omp.0.first_s") if mib == 0 else None
        row(f"W6 start-up, {label}", "create → 1st result", c(kp, f_time), c(kpy, f_time),
            c("w6.omp.0.first_s", f_time) if mib == 0 else None, None, ratio(py, p), ratio(om, p), None,
            [("< 2 ms", le(p, 0.002))] if mib == 0 else [], note_omp=None if mib == 0 else "n/a", note_ser="n/a")
        kp, kpy = f"w6.pool.{mib}.destroy_s", f"w6.py.{mib}.destroy_s"
        row(f"W6 start-up, {label}", "destroy", c(kp, f_time), c(kpy, f_time), None, None,
            ratio(F.get(kpy), F.get(kp)), None, None, [], note_omp="n/a", note_ser="n/a")
    # W7
    for n in w7_sizes(F, "pool-first"):
        key = f"w7.pool.pool-first.{n}.extra_mib"
        row(f"W7 memory, map 1e{len(str(n)) - 1}", "peak extra over in+out", c(key, f_mib), None,
            c(f"w7.omp.{n}.extra_mib", f_mib), None, None, None, None, [("≤ 64 MiB (tens of MiB)", le(F.get(key), 64))],
            note_py="not run", note_ser="n/a")
    for order, label, metric in (("buffers-first", "map 1e8, buffers before pool", "peak extra over in+out"),
                                 ("shm", "map 1e8, pool_shm_alloc buffers", "peak extra over in+out"),
                                 ("imap", "pool_imap 1e7", "peak extra over in")):
        for n in w7_sizes(F, order):
            key = f"w7.pool.{order}.{n}.extra_mib"
            row(f"W7 memory, {label}", metric, c(key, f_mib), None, None, None, None, None, None,
                [("≤ 64 MiB (tens of MiB)", le(F.get(key), 64))], note_py="not run", note_omp="n/a", note_ser="n/a")
    return rows


def w7_sizes(F, order):
    return sorted({int(k.split(".")[3]) for k in F.keys(f"w7.pool.{order}.")})


# ---- W1 at 1e6: the four maps and Python, interleaved --------------------------------------------
def w1_rows(F):
    """Rows (map, items/s, plain ÷ it) and the goals of issue 18 as (goal, figure, verdict); None
    when W1 did not run."""
    plain = F.get(f"w1.pool.{N1}.items_per_s")
    if plain is None:
        return None, None
    rows = []
    for key, label in ((f"w1.pool.{N1}.items_per_s", "`pool_map`, malloc'd buffers (plain)"),
                       (f"w1.blocks.{N1}.items_per_s", "`pool_map_blocks`, the same buffers"),
                       (f"w1.shm.{N1}.items_per_s", "`pool_map`, `pool_shm_alloc` buffers"),
                       (f"w1.blocks_shm.{N1}.items_per_s", "`pool_map_blocks`, `pool_shm_alloc` buffers"),
                       (f"w1.py.{N1}.items_per_s", "Python `Pool.map`")):
        rows.append([label, F.cell(key, rate) or F.skipped(key) or "—", f_x(ratio(plain, F.get(key))) or "—"])
    pb = ratio(plain, F.get(f"w1.blocks.{N1}.items_per_s"))
    pp = ratio(plain, F.get(f"w1.py.{N1}.items_per_s"))
    goals = [["plain ≥ 0.8× the block map (malloc'd buffers)", f_x(pb) or "—", verdict(ge(pb, 0.8))],
             ["plain ≥ 100× Python's `Pool.map`", f_x(pp) or "—", verdict(ge(pp, 100))]]
    return rows, goals


# ---- WC: completion latency ---------------------------------------------------------------------
WAYS = (("get", "`pool_async_get`"), ("any1", "`pool_async_wait_any`, 1 handle"),
        ("any8", "`pool_async_wait_any`, 8 handles (7 never ready)"), ("callback", "completion callback"))
WC_COLS = ["Seen by", "p50 latency", "p99 latency", "CPU of the waiting thread per completion",
           "host CPU per task (all threads)", "p50 ÷ get's"]


def wc_rows(F):
    get50 = F.get("wc.get.p50_s")
    rows = []
    for way, label in WAYS:
        k = f"wc.{way}."
        if F.get(k + "p50_s") is None:
            rows.append([label, F.skipped(k + "p50_s") or F.skipped("wc") or "—"] + ["—"] * 4)
            continue
        rows.append([label, F.cell(k + "p50_s", f_time), F.cell(k + "p99_s", f_time), F.cell(k + "wait_cpu_s", f_time),
                     F.cell(k + "host_cpu_s", f_time), f_x(ratio(F.get(k + "p50_s"), get50)) or "—"])
    return rows


# ---- WS: the sandbox's cost ---------------------------------------------------------------------
WS_COLS = ["Figure", "plain pool", "sandboxed, a fresh process per task (default)",
           "sandboxed, one process for all tasks", "fresh ÷ plain", "one ÷ plain"]


def ws_rows(F):
    rows = []
    for key, what, fmt in (("w2_p50_s", "W2 round trip p50", f_time),
                           ("w3_tasks_per_s", "W3 apply_async throughput", lambda v: f_rate(v, "tasks/s")),
                           ("start_s", "pool_create(2) -> first result", f_time)):
        ks = [f"ws.{c}.{key}" for c in ("plain", "sandbox", "sandbox_reuse")]
        plain = F.get(ks[0])
        rows.append([what] + [F.cell(k, fmt) or "—" for k in ks] +
                    [f_x(r) or "—" for r in (ratio(F.get(ks[1]), plain), ratio(F.get(ks[2]), plain))])
    return rows


# ---- W8: libpool_mpi ----------------------------------------------------------------------------
W8_COLS = ["Metric", "libpool_mpi, 4 ranks × 1 worker", "local pool, 4 workers", "mpi4py.futures, 3 workers",
           "vs local", "vs mpi4py", "Target", "Result"]


def w8_rows(F):
    rows = []
    c = F.cell

    def row(metric, mpi, local, m4py, v_local, v_m4py, target, ok):
        rows.append([metric, mpi or "—", local or "—", m4py or "—", f_x(v_local) or "—", f_x(v_m4py) or "—",
                     target or "—", verdict(ok)])

    m4, ml, mp = F.get("mpi.np4.map_items_per_s"), F.get("mpi.local.map_items_per_s"), F.get("mpi.mpi4py.map_items_per_s")
    row("map of 1e6 longs, items/s", c("mpi.np4.map_items_per_s", rate), c("mpi.local.map_items_per_s", rate),
        c("mpi.mpi4py.map_items_per_s", rate), ratio(m4, ml), ratio(m4, mp), "≥ 10× mpi4py", ge(ratio(m4, mp), 10))
    r4, rr4, rl, rp = (F.get(f"mpi.{k}_p50_s") for k in ("np4.rt", "np4.remote_rt", "local.rt", "mpi4py.rt"))
    row("apply round trip p50, as scheduled", c("mpi.np4.rt_p50_s", f_time), c("mpi.local.rt_p50_s", f_time),
        c("mpi.mpi4py.rt_p50_s", f_time), ratio(rl, r4), ratio(rp, r4), None, None)
    row("apply round trip p50, to another rank", c("mpi.np4.remote_rt_p50_s", f_time), c("mpi.local.rt_p50_s", f_time),
        c("mpi.mpi4py.rt_p50_s", f_time), ratio(rl, rr4), ratio(rp, rr4), "≥ 10× mpi4py", ge(ratio(rp, rr4), 10))
    local = F.get("mpi.local.cpu_items_per_s")
    for k in (1, 2, 3, 4):
        key = f"mpi.np{k}.cpu_items_per_s"
        row(f"400 items of ~2 ms CPU, {k} rank{'s' if k > 1 else ''}, items/s", c(key, rate),
            c("mpi.local.cpu_items_per_s", rate) if k == 4 else None, None,
            ratio(F.get(key), local) if k == 4 else None, None, None, None)
    return rows


# ---- the real jobs (c_examples/pgz.c, c_examples/ocr.c; benches/jobs.sh): goals of issue 11 ----
def job_rows(F):
    rows = []
    g = {k: F.get(f"jobs.gz.{k}.mb_s") for k in ("pgz", "pigz", "py", "gzip")}
    if g["pgz"] is not None:
        rows.append(["pgz -p 2 at least `pigz -p 2`'s throughput (128 KiB blocks)",
                     f"{g['pgz']:.1f} vs {g['pigz']:.1f} MB/s ({f_x(ratio(g['pgz'], g['pigz']))})",
                     verdict(ge(ratio(g["pgz"], g["pigz"]), 1))])
        rows.append(["pgz against Python Pool(2) + zlib (same scheme) and gzip -6",
                     f"{f_x(ratio(g['pgz'], g['py']))} and {f_x(ratio(g['pgz'], g['gzip']))}", "n/a"])
        m10, m100 = F.get("jobs.mem.1.pss_mib"), F.get("jobs.mem.2.pss_mib")
        if None not in (m10, m100):
            rows.append(["pgz memory bounded: 10× the input, at most 1.5× the memory",
                         f"{m10:.1f} MiB on 10 MB, {m100:.1f} MiB on 100 MB (process tree PSS)", verdict(le(m100 / m10, 1.5))])
    keys = ("serial", "pool1", "pool2", "xargs", "py", "serial_omp1", "xargs_omp1", "py_omp1")
    o = {k: F.get(f"jobs.ocr.{k}.pages_s") for k in keys}
    med = {k: F.get(f"jobs.ocr.{k}.pages_s_median") for k in keys}

    def vs(tool, label):
        # The goal holds against the tool tuned (OMP_THREAD_LIMIT=1); as users run it, beside it.
        tuned, plain = f"{tool}_omp1", tool
        if o[tuned] is None:
            return
        spread = f", medians {med['pool2']:.2f} vs {med[tuned]:.2f}" if None not in (med["pool2"], med[tuned]) else ""
        rows.append([f"OCR ahead of {label} (tuned: OMP_THREAD_LIMIT=1)",
                     f"{o['pool2']:.2f} vs {o[tuned]:.2f} pages/s ({f_x(ratio(o['pool2'], o[tuned]))}{spread}); "
                     f"as users run it (no variable): {o[plain]:.2f} pages/s ({f_x(ratio(o['pool2'], o[plain]))})",
                     verdict(ge(ratio(o["pool2"], o[tuned]), 1))])

    if o["pool2"] is not None:
        vs("xargs", "`xargs -P2 tesseract`")
        vs("py", "Python Pool(2) running tesseract")
        serial = o["serial_omp1"] or o["serial"]
        rows.append(["OCR against serial tesseract (tuned)", f"{f_x(ratio(o['pool2'], serial))}", "n/a"])
    return rows
