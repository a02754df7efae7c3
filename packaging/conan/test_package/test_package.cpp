// pool.hpp against the packaged library: maps over worker processes, results checked.
#include <pool.hpp>

#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include <unistd.h>

namespace {

long square(const long& x) { return x * x; }

int worker_pid(const int&) { return static_cast<int>(getpid()); }

}  // namespace

int main() {
    if (std::strcmp(pool_version(), POOL_EXPECTED_VERSION) != 0) {
        std::fprintf(stderr, "pool_version() %s, package %s\n", pool_version(), POOL_EXPECTED_VERSION);
        return 1;
    }
    pool::Pool p(2);
    std::vector<long> xs(1000);
    std::iota(xs.begin(), xs.end(), 0L);
    std::vector<long> ys = p.map(square, xs);
    long sum = 0;
    for (std::size_t i = 0; i < xs.size(); i++) {
        if (ys[i] != xs[i] * xs[i]) {
            std::fprintf(stderr, "map: item %zu is %ld\n", i, ys[i]);
            return 1;
        }
        sum += ys[i];
    }
    std::vector<int> pids = p.map(worker_pid, std::vector<int>(8));
    for (int pid : pids) {
        if (pid == static_cast<int>(getpid())) {
            std::fprintf(stderr, "map ran an item in the calling process\n");
            return 1;
        }
    }
    int workers = p.workers();
    p.close();
    p.join();
    std::printf("test_cpp: libpool %s, %d workers, sum of squares 0..999 = %ld\n", pool_version(), workers, sum);
    return sum == 332833500L ? 0 : 1;
}
