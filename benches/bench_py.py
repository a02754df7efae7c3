"""Python multiprocessing.Pool (fork context, 2 workers) side of the benchmark.

Usage: python3 bench_py.py WORKLOAD ARGS... (see main()). Figures go to stdout as
"RESULT key value", like the C programs; every result is checked.
"""
import multiprocessing as mp
import statistics
import sys
import time

WORKERS = 2
CTX = mp.get_context("fork")
XOR_TABLE = bytes(i ^ 0x5A for i in range(256))
MIB = 1 << 20


def square(x):
    return x * x


def busy(iters):
    x = 1
    for _ in range(iters):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return x


def xor(b):
    return b.translate(XOR_TABLE)


def result(key, value):
    print(f"RESULT {key} {value:.9g}", flush=True)


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def w1(n, reps):
    want = [i * i for i in range(n)]
    times = []
    with CTX.Pool(WORKERS) as pool:
        pool.map(square, range(1000))
        for _ in range(reps):
            t0 = time.perf_counter()
            out = pool.map(square, range(n))
            times.append(time.perf_counter() - t0)
            assert out == want, "W1: wrong result"
    result(f"w1.py.{n}.items_per_s", n / statistics.median(times))


def w2(calls, runs):
    p50, p99 = [], []
    with CTX.Pool(WORKERS) as pool:
        for r in range(-1, runs):
            lat = []
            for i in range(calls if r >= 0 else 200):
                t0 = time.perf_counter()
                y = pool.apply_async(square, (i,)).get()
                lat.append(time.perf_counter() - t0)
                assert y == i * i, "W2: wrong result"
            if r >= 0:
                p50.append(quantile(lat, 0.5))
                p99.append(quantile(lat, 0.99))
    result("w2.py.p50_s", statistics.median(p50))
    result("w2.py.p99_s", statistics.median(p99))


def w3(n, reps):
    times = []
    with CTX.Pool(WORKERS) as pool:
        for _ in range(reps):
            t0 = time.perf_counter()
            hs = [pool.apply_async(square, (i,)) for i in range(n)]
            out = [h.get() for h in hs]
            times.append(time.perf_counter() - t0)
            assert out == [i * i for i in range(n)], "W3: wrong result"
    result("w3.py.tasks_per_s", n / statistics.median(times))


def w4(reps):
    # Calibrate the pure-Python loop to ~10 ms on one core.
    best = min(_timed(busy, 100000) for _ in range(5))
    iters = int(100000 * 0.010 / best)
    args = [iters] * 64
    ser, par = [], []
    with CTX.Pool(WORKERS) as pool:
        for _ in range(reps):
            t0 = time.perf_counter()
            want = [busy(a) for a in args]
            ser.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = pool.map(busy, args)
            par.append(time.perf_counter() - t0)
            assert out == want, "W4: wrong result"
    result("w4.py.serial_seconds", statistics.median(ser))
    result("w4.py.seconds", statistics.median(par))


def _timed(f, *a):
    t0 = time.perf_counter()
    f(*a)
    return time.perf_counter() - t0


def w5(reps):
    blocks = [bytes((i * 7 + j) & 0xFF for j in range(256)) * (MIB // 256) for i in range(256)]
    want = [xor(b) for b in blocks]
    times = []
    with CTX.Pool(WORKERS) as pool:
        for _ in range(reps):
            t0 = time.perf_counter()
            hs = [pool.apply_async(xor, (b,)) for b in blocks]
            out = [h.get() for h in hs]
            times.append(time.perf_counter() - t0)
            assert out == want, "W5: wrong result"
    result("w5.py.gb_per_s", 256 * MIB / statistics.median(times) / 1e9)


def w6(heap_mib, reps):
    heap = b"\x01" * (heap_mib * MIB) if heap_mib else b""  # touched: built by a memset
    first, destroy = [], []
    for r in range(-1, reps):
        t0 = time.perf_counter()
        pool = CTX.Pool(WORKERS)
        y = pool.apply(square, (7,))
        t1 = time.perf_counter()
        pool.terminate()
        pool.join()
        t2 = time.perf_counter()
        assert y == 49, "W6: wrong result"
        if r >= 0:
            first.append(t1 - t0)
            destroy.append(t2 - t1)
    assert len(heap) == heap_mib * MIB
    result(f"w6.py.{heap_mib}.first_s", statistics.median(first))
    result(f"w6.py.{heap_mib}.destroy_s", statistics.median(destroy))


def main():
    w, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "w6": w6}[w](*args)


if __name__ == "__main__":
    main()
