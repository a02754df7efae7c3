"""W8 against mpi4py.futures: the same work as benches/bench_mpi.c through MPIPoolExecutor.
Run as `mpirun -np 4 python3 -m mpi4py.futures benches/bench_mpi4py.py`: rank 0 runs this
script, the other ranks are the executor's workers. Prints RESULT lines (keys mpi.mpi4py.*).
Debian's python3-mpi4py (3.1.4) is what the issue measured."""
import statistics
import sys
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor


def square(x):
    return x * x


def result(key, value):
    print(f"RESULT {key} {value:.9g}", flush=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    with MPIPoolExecutor() as ex:
        workers = MPI.COMM_WORLD.Get_size() - 1
        list(ex.map(square, range(1000)))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = list(ex.map(square, range(n), chunksize=max(1, n // (4 * workers))))
            times.append(time.perf_counter() - t0)
            assert out[n - 1] == (n - 1) ** 2
        result("mpi.mpi4py.map_items_per_s", n / statistics.median(times))
        lat = []
        for i in range(500):
            t0 = time.perf_counter()
            y = ex.submit(square, i).result()
            lat.append(time.perf_counter() - t0)
            assert y == i * i
        result("mpi.mpi4py.rt_p50_s", statistics.median(lat))


if __name__ == "__main__":
    main()
