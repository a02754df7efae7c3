"""Notes under the report's tables: what limits each figure, computed from the run's own
figures and diagnostics (keys *.diag.*)."""
from .figures import f_n, f_rate, f_time, f_x, ratio
from .tables import N1, N8, w7_sizes


def ms(v):
    return "?" if v is None else f"{v * 1e3:.3g} ms"


def x(v):
    return "?" if v is None else f"{v:.3g}×"


def cpu_split(F, prefix):
    """(wall, host cpu, workers cpu) per repetition from a probe, or None."""
    v = [F.get(prefix + k) for k in ("wall_s", "host_user_s", "host_sys_s", "workers_user_s", "workers_sys_s")]
    return None if None in v else (v[0], v[1] + v[2], v[3] + v[4])


def workload_notes(F, rows):
    """One paragraph per workload (rows: the main table's, for the targets' verdicts)."""
    get = F.get

    def verdict_of(prefix):
        return next((r[10] for r in rows if r[0].startswith(prefix)), "?")

    notes = []
    # W1
    for n in (N1, N8):
        c, z = cpu_split(F, f"w1.diag.{n}."), cpu_split(F, f"w1.diag.shm.{n}.")
        floor, eight = get(f"w1.diag.{n}.host_copy_floor_s"), get(f"w1.diag.shm.{n}.eight_per_item_s")
        rate, srate = get(f"w1.pool.{n}.items_per_s"), get(f"w1.shm.{n}.items_per_s")
        py, om = get(f"w1.py.{n}.items_per_s"), get(f"w1.omp.{n}.items_per_s")
        if None in (c, z, floor, rate, srate):
            continue
        (wall, host, wk), (_, zhost, zwk) = c, z
        st = verdict_of(f"W1 map {f_n(n)}, malloc") + " with malloc buffers, " + verdict_of(f"W1 map {f_n(n)}, pool_shm") + " with pool_shm_alloc"
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
            t += (f". With a single worker the copying map takes {ms(one)} (two: {ms(get(f'w1.diag.{n}.seconds'))}). "
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
    p50, py50, p99 = get("w2.pool.p50_s"), get("w2.py.p50_s"), get("w2.pool.p99_s")
    worst = F.values("w2.pool.max_s")
    if None not in (p50, py50, p99):
        notes.append(f"**W2 ({verdict_of('W2')}).** p50 {f_time(p50)} against Python's {f_time(py50)}; p99 "
                     f"{f_time(p99)}: the worker polls ~50 µs after a task (yielding the CPU after 5 µs) and the "
                     f"caller spins ~30 µs in `pool_async_get` "
                     f"before sleeping on a futex, so a call that follows another rarely pays a cross-CPU wake-up "
                     f"(~40 µs here; \"bounded\" is read as at most two of them, 100 µs). From run to run the p99 "
                     f"is either ~2 µs or ~60 µs: in the latter about 1% of calls find the worker asleep. The worst "
                     f"of {10000 * len(worst):,} calls took {f_time(max(worst, default=None))}. Python's p50 moves "
                     f"between ~50 and ~150 µs from run to run on this machine.")
    # W3
    p, py = get("w3.pool.tasks_per_s"), get("w3.py.tasks_per_s")
    if None not in (p, py):
        notes.append(f"**W3 ({verdict_of('W3')}).** {f_rate(p, 'tasks/s')}: each `pool_apply_async` writes its "
                     f"task straight into shared memory and the workers take it from the shared queue; no host "
                     f"thread relays it. Each task also pays for the checks that answer misuse instead of crashing "
                     f"(every handle looked up in the registry of live handles, about 50 ns a call) and for "
                     f"keeping cancellation out of library calls (about 25 ns a call). Other load on the two "
                     f"CPUs cuts it several-fold (~0.5 M/s was seen with two busy loops running beside it).")
    # W4
    s_pm, s_pa = ratio(get("w4.serial.seconds"), get("w4.pool.map_seconds")), ratio(get("w4.serial.seconds"), get("w4.pool.apply_seconds"))
    if None not in (s_pm, s_pa):
        notes.append(f"**W4 ({verdict_of('W4 64×10 ms CPU (map)')} map, {verdict_of('W4 64×10 ms CPU (apply')} "
                     f"apply_async).** {x(s_pm)} (map) and {x(s_pa)} (apply_async) over serial C, OpenMP "
                     f"{x(ratio(get('w4.serial.seconds'), get('w4.omp.seconds')))}: a waiting caller sleeps after a "
                     f"short spin, so the two workers get both CPUs. Any other load on the machine shows here first.")
    # W5
    c, w16, z = cpu_split(F, "w5.diag.copy."), cpu_split(F, "w5.diag.window16."), cpu_split(F, "w5.diag.shm.")
    p, pw, ps, py = get("w5.pool.copy_gb_per_s"), get("w5.pool.window16_gb_per_s"), get("w5.shm.gb_per_s"), get("w5.py.gb_per_s")
    floor = get("w5.diag.host_copy_floor_s")
    if None not in (c, w16, p, pw, py, floor):
        hs, ws = get("w5.diag.copy.host_sys_s"), get("w5.diag.copy.workers_sys_s")
        hs16 = get("w5.diag.window16.host_sys_s")
        notes.append(
            f"**W5 copies ({verdict_of('W5 256×1 MiB, copies')} with all 256 in flight, "
            f"{verdict_of('W5 256×1 MiB, copies, ≤')} with ≤ 16).** With all 256 tasks submitted before the "
            f"first is collected (as the Python version does), {p:.3g} GB/s = {x(p / py)} Python: a pass takes "
            f"{ms(c[0])}, of which the host spends {ms(hs)} and the workers {ms(ws)} in the kernel, populating "
            f"fresh pages of the pool's shared memory, since 512 MiB of inputs and results are in flight at "
            f"once; the copies themselves take {ms(floor)} (host copy floor, warm memory). With at most 16 tasks "
            f"in flight the same shared pages are reused: {pw:.3g} GB/s = {x(pw / py)} Python, {ms(hs16)} of host "
            f"kernel time.")
    if ps is not None and py:
        notes.append(
            f"**W5 shared memory ({verdict_of('W5 256×1 MiB, pool_shm')}).** Inputs and outputs from "
            f"`pool_shm_alloc`: every task checks that it was handed the caller's own buffers (the run stops "
            f"otherwise), so nothing is copied; {ps:.3g} GB/s = {x(ps / py)} Python"
            + (f", with {ms(z[1])} of host CPU per pass" if z else "") + ".")
    # W6
    f0, f1, k0, k1, py1 = get("w6.pool.0.first_s"), get("w6.pool.1024.first_s"), get("w6.diag.0.fork_s"), get("w6.diag.1024.fork_s"), get("w6.py.1024.first_s")
    if None not in (f0, f1, k0, k1):
        notes.append(f"**W6 ({verdict_of('W6 start-up, small host')}).** A small host gets its first result "
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
        flat = ", ".join(f"{get(f'w7.pool.pool-first.{n}.extra_mib'):.3g} MiB at n = {f_n(n)}" for n in w7_sizes(F, "pool-first"))
        es, ei = get(f"w7.pool.shm.{N8}.extra_mib"), get("w7.pool.imap.10000000.extra_mib")
        t = (f"**W7 ({verdict_of('W7 memory, map 1e8')}; buffers before the pool: "
             f"{verdict_of('W7 memory, map 1e8, buffers')}).** With the pool created first (as with Python) the extra "
             f"memory is flat in n: {flat}: the host's own program, the zygote, two workers and a few MiB of "
             f"chunks in flight. When the caller's buffers already exist (touched) at `pool_create`, the zygote "
             f"and the workers keep a copy-on-write snapshot of them (by design: functions and `ctx` must exist at "
             f"`pool_create`), so every page of `out` the map writes gets copied: +{eb:.0f} MiB (the `out` array is "
             f"{N8 * 8 / 2**20:.0f} MiB), the zygote and workers holding {zb:.0f} MiB, and the first map taking "
             f"{tb:.3g} s instead of {tp:.3g} s (both with the sampler running). Workarounds: create the pool "
             f"first, or put the buffers in `pool_shm_alloc` memory, which is shared, not copy-on-write")
        if es is not None:
            t += f" (+{es:.3g} MiB measured that way"
            t += ("; Pss shares change while pages get mapped into the workers during a sample, so this figure "
                  "is an upper bound)")
        if ei is not None:
            t += f". `pool_imap` over 1e7 items, results read one at a time: +{ei:.3g} MiB over the input"
        notes.append(t + ".")
    return "\n\n".join(notes)


def jobs_notes(F):
    """What the real jobs' figures say (misses explained from the run's own numbers)."""
    get = F.get
    g = {k: get(f"jobs.gz.{k}.mb_s") for k in ("pgz", "pigz", "py", "gzip")}
    # ocr is compared with the tools tuned (OMP_THREAD_LIMIT=1): as users run them, OpenMP's
    # threads make them several times slower, which says nothing of libpool.
    o = {k: get(f"jobs.ocr.{k}_omp1.pages_s") or get(f"jobs.ocr.{k}.pages_s") for k in ("serial", "xargs", "py")}
    o.update({k: get(f"jobs.ocr.{k}.pages_s") for k in ("pool1", "pool2")})
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
    oc = {k: get(f"jobs.ocr.{k}_omp1.cpu_s") or get(f"jobs.ocr.{k}.cpu_s") for k in ("serial", "xargs", "py")}
    oc.update({k: get(f"jobs.ocr.{k}.cpu_s") for k in ("pool1", "pool2")})
    if o["pool2"] is not None and o["xargs"] and o["pool2"] < o["xargs"]:
        n_pages = get("jobs.ocr.pages") or 10
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
    plain = {k: get(f"jobs.ocr.{k}.pages_s") for k in ("serial", "xargs", "py")}
    if o["pool2"] is not None and None not in plain.values() and get("jobs.ocr.xargs_omp1.pages_s"):
        parts.append(
            f"As users run them, with no OMP_THREAD_LIMIT, the tools let Tesseract's OpenMP start 4 threads a "
            f"page on 2 cores: serial {plain['serial']:.2f}, xargs {plain['xargs']:.2f}, Python {plain['py']:.2f} "
            f"pages/s, so `ocr -p 2` (which caps its engines to one thread itself, needing nothing from the "
            f"environment) is {f_x(ratio(o['pool2'], plain['xargs']))} xargs there. The goals above use the tools tuned.")
    return " ".join(parts)


def w8_notes(F, nproc):
    get = F.get
    m4, ml = get("mpi.np4.map_items_per_s"), get("mpi.local.map_items_per_s")
    r4, rr4, rl, rp = (get(f"mpi.{k}_p50_s") for k in ("np4.rt", "np4.remote_rt", "local.rt", "mpi4py.rt"))
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
            f"share {nproc} CPUs, and every hand-off waits for a CPU. The same oversubscription "
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

    return w8_notes
