// The seed scenarios (a Process, then Pool.map, map_async and apply_async) through pool.hpp,
// with their results checked, then the rest of the C++ layer. Prints what c_examples/seed.c
// prints; exits nonzero on any mismatch.
#include <pool.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what);
        ++failures;
    }
}

long square(const long& x) { return x * x; }

void run(int id) {  // multiprocessing.Process.run
    std::printf("Invoked run()\n");
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::printf("Process ID is %d\n", id);
}

void print_longs(const std::vector<long>& v) {
    std::printf("[");
    for (std::size_t i = 0; i < v.size(); i++) std::printf(i ? ", %ld" : "%ld", v[i]);
    std::printf("]\n");
}

struct Point {  // any trivially copyable type crosses the process boundary
    double x, y;
};

int fails_on_three(const int& x) {
    if (x == 3) throw std::runtime_error("three");
    return x;
}

std::string shout(std::string_view s) {
    std::string r(s);
    for (char& c : r) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    return r;
}

void repeat(std::string_view s, pool::Output& out) {
    for (int i = 0; i < 3; i++) out.write(s);
}

long slow(const long& x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return x;
}

int exit_with(int code) { return code; }

void seed() {
    for (int id : {100, 0, 1}) {
        pool::Process p(run, id);
        p.start();
        expect(p.join(), "process joined");
        expect(p.exitcode() == 0, "process exit code 0");
    }

    {
        pool::Pool all;  // Pool(): one worker per CPU
        expect(all.workers() >= 1, "Pool() has workers");
        pool::Options o;
        o.max_rss = 1ull << 30;
        o.shm_size = 64u << 20;
        pool::Pool small(1, o);
        expect(small.apply(square, 9L) == 81, "Options with max_rss and shm_size");
        expect(small.sandbox_report().empty(), "no sandbox, no report");
    }
    try {
        // A sandboxed pool: computing works, files outside the listed paths do not.
        pool::Pool boxed(1, pool::Options().sandbox(pool::Sandbox::Compute).read_paths({"/usr"}).write_paths({}));
        expect(boxed.apply(square, 6L) == 36, "a sandboxed pool computes");
        expect(boxed.apply([] { return std::fopen("/etc/passwd", "r") == nullptr ? errno : 0; }) == EACCES,
               "a sandboxed task cannot open /etc/passwd");
        expect(boxed.apply([] { return std::fopen("/usr", "r") != nullptr; }) == 1, "it can read a listed path");
        expect(boxed.sandbox_report().find("Landlock") != std::string::npos, "sandbox_report");
        // A fresh process for every task by default; tasks_per_process(n) lets one run n tasks.
        expect(boxed.apply([] { return static_cast<long>(getpid()); }) !=
                   boxed.apply([] { return static_cast<long>(getpid()); }),
               "a fresh sandboxed process for every task");
        pool::Pool reused(1, pool::Options().sandbox(pool::Sandbox::Compute).tasks_per_process(100));
        expect(reused.apply([] { return static_cast<long>(getpid()); }) ==
                   reused.apply([] { return static_cast<long>(getpid()); }),
               "tasks_per_process(100): one process for both tasks");
        try {
            pool::Pool bad(1, pool::Options().sandbox(pool::Sandbox::Compute).read_paths({"/nonexistent/x"}));
            expect(false, "a missing sandbox path fails the constructor");
        } catch (const pool::Error& e) {
            expect(e.status() == POOL_EINVAL && std::strstr(e.what(), "/nonexistent/x"), "missing path: POOL_EINVAL naming it");
        }
    } catch (const pool::Error& e) {
        // Only a system without Landlock or seccomp may refuse, and it must say so.
        expect(e.status() == POOL_ESYS && (std::strstr(e.what(), "Landlock") || std::strstr(e.what(), "seccomp")),
               "a sandboxed pool starts, or POOL_ESYS names what the system lacks");
        std::printf("note: no sandbox on this system: %s\n", e.what());
    }

    pool::Pool p(2);  // Pool(processes=2)
    expect(p.workers() == 2, "Pool(2) has 2 workers");
    const std::vector<long> xs{2, 3, 4, 6};
    const std::vector<long> want{4, 9, 16, 36};
    std::vector<long> ys = p.map(square, xs);
    auto a = p.map_async([](const long& x) { return x * x; }, xs);
    print_longs(ys);
    const std::vector<long>& zs = a.get();
    print_longs(zs);
    expect(ys == want, "map");
    expect(zs == want, "map_async");
    expect(a.ready() && a.successful(), "map_async ready and successful");

    std::vector<pool::Async<long>> r;
    for (long i = 0; i < 100; i++) r.push_back(p.apply_async(square, i));
    std::vector<long> out;
    for (auto& x : r) out.push_back(x.get());
    print_longs(out);
    std::printf("%ld\n", out.back());
    for (long i = 0; i < 100; i++) expect(out[static_cast<std::size_t>(i)] == i * i, "apply_async");

    p.close();
    p.join();
}

void more() {
    expect(std::strcmp(pool::version(), POOL_EXPECTED_VERSION) == 0, "pool_version() is the package version");

    pool::Pool p(2);
    expect(p.apply(square, 7L) == 49, "apply");
    expect(p.apply([] { return 42; }) == 42, "apply without argument");
    expect(p.map(square, {1L, 2L, 3L}) == std::vector<long>{1, 4, 9}, "map over an initializer list");
    expect(p.map(square, std::vector<long>{}).empty(), "map over nothing");

    auto moved = p.map([](const Point& q) { return Point{q.y, q.x}; }, std::vector<Point>{{1, 2}, {3, 4}});
    expect(moved.size() == 2 && moved[1].x == 4 && moved[1].y == 3, "map over a struct");

    // A task that throws: the exception stays in the worker, the call throws pool::Error.
    try {
        p.map(fails_on_three, std::vector<int>{1, 2, 3, 4});
        expect(false, "a throwing task fails the map");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ETASK, "a throwing task gives POOL_ETASK");
        expect(std::strstr(e.what(), "item 2") && std::strstr(e.what(), ": three"),
               "the task's exception text reaches pool::Error::what()");
    }
    // try_map: every item's result and status, no exception for failed items.
    auto r = p.try_map(fails_on_three, std::vector<int>{1, 2, 3, 4});
    expect(r.failed() == 1 && !r.ok(2) && r.statuses[2] == POOL_ETASK, "try_map: one failed item");
    expect(r.ok(3) && r.values[3] == 4 && r.values[0] == 1, "try_map: the others' results kept");
    auto bad = p.apply_async(fails_on_three, 3);
    try {
        bad.get();
        expect(false, "get() of a failed task throws");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ETASK && !bad.successful() && bad.ready(), "failed apply_async");
    }

    // Timeouts.
    auto s = p.apply_async(slow, 5L);
    expect(!s.wait(0.01), "wait times out on slow work");
    try {
        s.get(0.01);
        expect(false, "get(timeout) throws TimeoutError");
    } catch (const pool::TimeoutError& e) {
        expect(e.status() == POOL_ETIMEDOUT, "TimeoutError has POOL_ETIMEDOUT");
    }
    expect(s.get() == 5, "get() after a timeout");

    // Variable-size tasks.
    expect(p.submit(shout, "hello", 64).get() == "HELLO", "submit returning a string");
    expect(p.submit(repeat, "ab", 64).get() == "ababab", "submit streaming into Output");
    try {
        p.submit(repeat, std::string(40, 'x'), 64).get();
        expect(false, "submit past max_out fails");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ETASK, "submit past max_out gives POOL_ETASK");
    }

    // Options: an initializer that captures, run in every worker.
    static long base = 0;
    pool::Options o;
    long start_value = 1000;
    o.initializer = [start_value] { base = start_value; };
    pool::Pool q(1, o);
    expect(q.apply([](const long& x) { return base + x; }, 1L) == 1001, "initializer ran in the worker");

    // Closed and terminated pools.
    q.close();
    try {
        q.apply(square, 1L);
        expect(false, "apply on a closed pool throws");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ECLOSED, "closed pool gives POOL_ECLOSED");
    }
    q.join();
    auto pending = p.apply_async(slow, 1L);
    p.terminate();
    p.join();
    try {
        pending.get();
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ECLOSED, "terminate fails pending work with POOL_ECLOSED");
    }

    // Process: exit codes, signals, a capturing target.
    pool::Process e(exit_with, 3);
    expect(!e.exitcode() && e.pid() == -1, "no exit code before start");
    e.start();
    e.join();
    expect(e.exitcode() == 3 && !e.is_alive(), "exit code of a process");
    std::string msg = "captured";
    pool::Process c([msg] { return msg == "captured" ? 0 : 1; });
    c.start();
    c.join();
    expect(c.exitcode() == 0, "a process target may capture");
    pool::Process k([] { std::this_thread::sleep_for(std::chrono::seconds(30)); });
    k.start();
    expect(k.is_alive() && k.pid() > 0, "process alive");
    expect(!k.join(0.05), "join times out");
    k.kill();
    k.join();
    expect(k.exitcode() == -9, "killed process reports -9");
}

long fails_on_13(const long& x) {
    if (x == 13) throw std::runtime_error("13");
    return x * x;
}

long slow_identity(const long& x) {
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return x;
}

// Streaming, cancellation, progress and failure reports (issues 4 and 5) through pool.hpp.
void streaming() {
    pool::Pool p(2);
    std::vector<long> xs;
    for (long i = 0; i < 5000; i++) xs.push_back(i);
    auto it = p.imap(fails_on_13, xs);
    long y = 0;
    std::size_t i = 0, n = 0, failed = 0;
    bool ordered = true, right = true;
    for (;;) {
        try {
            if (!it.next(y, &i)) break;
            right = right && y == static_cast<long>(i * i);
        } catch (const pool::Error& e) {
            failed += e.status() == POOL_ETASK;
        }
        ordered = ordered && i == n;
        ++n;
    }
    expect(n == xs.size() && ordered && right && failed == 1, "imap: every result once, in order, one failure");
    auto un = p.imap(square, std::vector<long>{1, 2, 3}, false);
    long sum = 0;
    while (un.next(y)) sum += y;
    expect(sum == 14, "imap unordered");

    auto m = p.map_async(square, xs);
    m.wait();
    auto pr = m.progress();
    expect(pr.first == xs.size() && pr.second == xs.size(), "progress of a finished map");
    expect(m.info().status == POOL_OK && m.info().item == -1, "info of a successful map");

    auto slow = p.apply_async(slow_identity, 5L);
    slow.cancel();
    try {
        slow.get();
        expect(false, "a cancelled call throws");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ECANCELLED, "cancelled call reports POOL_ECANCELLED");
    }
}

long sleepy(const long& ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}

std::atomic<int> callbacks_seen{0};
std::atomic<long> callbacks_sum{0};

// What Python users reach for next: queues between processes and tasks, a lock whose holder
// dies, events, callbacks, wait_any and as_completed.
void next() {
    // A Process sends its result back through a queue (the notebook's Process, extended).
    pool::Queue<long> results(16);
    std::vector<pool::Process> procs;
    for (long id = 1; id <= 3; id++) procs.emplace_back([&results, id] { results.put(id * id); });
    for (auto& pr : procs) pr.start();
    long sum = 0;
    for (int i = 0; i < 3; i++) sum += results.get(10).value_or(-1000);
    for (auto& pr : procs) pr.join();
    expect(sum == 1 + 4 + 9, "Process results through a pool::Queue");
    expect(!results.get(0).has_value(), "an empty queue times out");
    pool::Queue<long> tiny(2);
    expect(tiny.put(1) && tiny.put(2), "two values fit a queue of two");
    expect(!tiny.put(3, 0.05), "a full queue times out");
    results.close();
    try {
        (void)results.get(0);
        expect(false, "a closed, empty queue throws");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ECLOSED, "closed queue: POOL_ECLOSED");
    }

    pool::BytesQueue bytes(1 << 12);
    expect(bytes.put(std::string(1000, 'x')), "put of 1000 bytes");
    auto got = bytes.get(1);
    expect(got && got->size() == 1000, "a message longer than the first buffer comes whole");

    // A lock whose holder dies.
    pool::Lock lock;
    pool::Event held;  // (not a sleep: on a busy machine the holder may take longer to get there)
    pool::Process holder([&lock, &held] {
        lock.acquire();
        held.set();
        std::this_thread::sleep_for(std::chrono::seconds(60));
    });
    holder.start();
    expect(held.wait(60), "the holder took the lock");
    expect(!lock.acquire(0.05), "a held lock times out");
    holder.kill();
    holder.join();
    {
        pool::Lock::Guard g(lock);
        expect(g.holder_died(), "the guard learns that the holder died");
    }
    bool died = true;
    expect(lock.acquire(1, &died) && !died, "the lock is clean again");
    lock.release();

    // An event many processes wait on.
    pool::Event go;
    std::vector<pool::Process> waiters;
    for (int i = 0; i < 3; i++) waiters.emplace_back([&go] { return go.wait(10) ? 0 : 1; });
    for (auto& w : waiters) w.start();
    go.set();
    for (auto& w : waiters) {
        w.join();
        expect(w.exitcode() == 0, "every waiter saw the event");
    }

    // wait_any, as_completed and callbacks.
    pool::Pool p(3);
    std::vector<pool::Async<long>> rs;
    for (long ms : {300L, 50L, 150L}) rs.push_back(p.apply_async(sleepy, ms));
    auto first = pool::wait_any(rs, 5);
    expect(first && *first == 1, "wait_any: the quickest first");
    std::vector<std::size_t> order;
    for (std::size_t i : pool::as_completed(rs)) order.push_back(i);
    expect(order.size() == 3 && order[0] == 1 && order[1] == 2 && order[2] == 0, "as_completed: in the order they finish");
    std::vector<pool::Async<long>> cbs;
    for (long x = 1; x <= 5; x++)
        cbs.push_back(p.apply_async(square, x, [](int status, const long& v) {
            if (status == POOL_OK) callbacks_sum += v;
            callbacks_seen++;
        }));
    for (int i = 0; i < 500 && callbacks_seen < 5; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    expect(callbacks_seen == 5 && callbacks_sum == 1 + 4 + 9 + 16 + 25, "a callback per result");
}

// Writes the input upper-cased in place (Output::reserve/commit); fails on "bad".
void upper(std::string_view in, pool::Output& out) {
    if (in == "bad") throw std::runtime_error("bad item");
    auto [p, room] = out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); i++) p[i] = static_cast<char>(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
    (void)room;
    out.commit(in.size());
}

void square_block(const long* in, long* out, std::size_t count) {
    for (std::size_t i = 0; i < count; i++) out[i] = in[i] * in[i];
}

// Streams (array and source), parallel_for and map_blocks.
void blocks_and_streams() {
    pool::Pool p(2);
    std::vector<std::string> words{"alpha", "bad", "", "gamma", std::string(10000, 'z')};
    std::vector<std::string_view> views(words.begin(), words.end());
    auto s = p.stream(upper, views, 20000);
    pool::StreamItem it;
    std::size_t n = 0, good = 0, bad = 0;
    while (s.next(it)) {
        expect(it.index == n, "stream: in order");
        if (it.ok() && it.data.size() == words[n].size() &&
            (it.data.empty() || it.data[0] == static_cast<char>(words[n][0] - 32)))
            good++;
        if (!it.ok() && it.status == POOL_ETASK && it.error.find("bad item") != std::string::npos) bad++;
        n++;
    }
    expect(n == 5 && good == 4 && bad == 1, "stream: every item once, the bad one failed alone");
    expect(s.progress().first == 5, "stream: progress");

    std::size_t made = 0;
    auto src = p.stream(
        upper,
        [&made](std::size_t index, char* buf, std::size_t cap) -> std::size_t {
            if (index == 100) return pool::Stream::end;
            made++;
            int k = std::snprintf(buf, cap, "item %zu", index);
            return static_cast<std::size_t>(k);
        },
        64, 64, false, 4);
    std::size_t seen = 0, right_src = 0;
    while (src.next(it)) {
        seen++;
        right_src += it.ok() && it.data == "ITEM " + std::to_string(it.index);
    }
    expect(seen == 100 && right_src == 100 && made == 100, "stream from a source, unordered");

    // parallel_for: the closure (a pointer into shared memory) crosses to the workers.
    const std::size_t N = 100000;
    long* marks = p.shm_alloc<long>(N);
    std::memset(marks, 0, N * sizeof(long));
    p.parallel_for(10, N, [marks](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; i++) marks[i] += static_cast<long>(i) * 2;
    });
    std::size_t once = 0;
    for (std::size_t i = 0; i < N; i++) once += marks[i] == (i < 10 ? 0 : static_cast<long>(i) * 2);
    expect(once == N, "parallel_for: each index once, in shared memory");
    bool threw = false;
    try {
        p.parallel_for(0, 1000, [](std::size_t b, std::size_t) {
            if (b == 500) throw std::runtime_error("block 500");
        }, 100);
    } catch (const pool::Error& e) {
        threw = e.status() == POOL_ETASK && std::string(e.what()).find("block 500") != std::string::npos;
    }
    expect(threw, "parallel_for: a throwing block fails the call with its message");
    p.shm_free(marks);

    // map_blocks with malloc'd buffers and a capturing lambda.
    std::vector<long> xs(100000), ys(100000);
    for (std::size_t i = 0; i < xs.size(); i++) xs[i] = static_cast<long>(i);
    long offset = 7;
    p.map_blocks([offset](const long* in, long* out, std::size_t count) {
        for (std::size_t i = 0; i < count; i++) out[i] = in[i] * in[i] + offset;
    }, xs.data(), ys.data(), xs.size());
    std::size_t right = 0;
    for (std::size_t i = 0; i < xs.size(); i++) right += ys[i] == xs[i] * xs[i] + 7;
    expect(right == xs.size(), "map_blocks with a capturing lambda");
    p.map_blocks(square_block, xs.data(), ys.data(), xs.size(), 1000);
    expect(ys[999] == 999L * 999L, "map_blocks with a function and a block size");

    // A loop body that reaches into the caller's stack (a reference capture, or a pointer to a
    // local) would work on the workers' stale copies of it: refused, naming the capture.
    auto refused = [](auto&& call) {
        try {
            call();
        } catch (const pool::Error& e) {
            return e.status() == POOL_EINVAL && std::strstr(e.what(), "captures a reference or pointer") != nullptr &&
                   std::strstr(e.what(), "[&total]") != nullptr;
        }
        return false;
    };
    long total = 0;
    expect(refused([&] {
               p.parallel_for(0, 1000, [&total](std::size_t b, std::size_t e) { total += static_cast<long>(e - b); });
           }) && total == 0,
           "parallel_for capturing [&total]: refused");
    expect(refused([&] {
               p.parallel_for(0, 1000, [&](std::size_t b, std::size_t) { total += static_cast<long>(b) + offset; });
           }),
           "parallel_for capturing [&]: refused");
    const long local[2] = {3, 4};
    const long* lp = local;
    expect(refused([&] {
               p.map_blocks([lp](const long* in, long* out, std::size_t count) {
                   for (std::size_t i = 0; i < count; i++) out[i] = in[i] + lp[1];
               }, xs.data(), ys.data(), xs.size());
           }),
           "map_blocks capturing a pointer to a local: refused");
    // A std::vector's data(): its writes would stay in the workers (the vector is unchanged).
    std::vector<long> results(1000, 0);
    long* out = results.data();
    bool heap_refused = false;
    try {
        p.parallel_for(0, 1000, [out](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; i++) out[i] = static_cast<long>(i);
        });
    } catch (const pool::Error& e) {
        heap_refused = e.status() == POOL_EINVAL && std::strstr(e.what(), "parallel_for") != nullptr &&
                       std::strstr(e.what(), "own memory") != nullptr;
    }
    expect(heap_refused && results[999] == 0, "parallel_for capturing a vector's data(): refused");
    static const long table[4] = {1, 2, 3, 4};  // constants: every process has them
    const long* tp = table;
    long* got = p.shm_alloc<long>(1);
    *got = 0;
    p.parallel_for(0, 4, [tp, got](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; i++) __atomic_fetch_add(got, tp[i], __ATOMIC_SEQ_CST);
    });
    expect(*got == 10, "parallel_for reading a constant table through a captured pointer");
    p.shm_free(got);
    long* sum = p.shm_alloc<long>(1);
    *sum = 0;
    p.parallel_for(0, 1000, [sum, offset](std::size_t b, std::size_t e) {
        __atomic_fetch_add(sum, static_cast<long>(e - b) * offset, __ATOMIC_SEQ_CST);
    });
    expect(*sum == 7000, "parallel_for: results through shm_alloc memory, values captured by value");
    p.shm_free(sum);
}

// A Pool its own task reaches (as a global would): the worker's copy was made by fork inside
// the constructor, before it had its handle.
alignas(pool::Pool) unsigned char self_storage[sizeof(pool::Pool)];
pool::Pool* const self = reinterpret_cast<pool::Pool*>(self_storage);

long uses_own_pool(const long& x) { return self->apply(square, x); }

// A pool used from its own task says so.
void inside_a_task() {
    new (self_storage) pool::Pool(1);
    try {
        self->apply(uses_own_pool, 3L);
        expect(false, "a task using its own pool fails");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ETASK && std::strstr(e.what(), "inside a task") &&
                   !std::strstr(e.what(), "moved from"),
               "a Pool used inside its own task says so, not 'moved from'");
    }
    pool::Pool moved(std::move(*self));
    try {
        self->apply(square, 3L);
        expect(false, "a moved-from Pool throws");
    } catch (const pool::Error& e) {
        expect(std::strstr(e.what(), "moved from") != nullptr, "a moved-from Pool says so");
    }
    self->~Pool();
}

// An initializer that never returns ends at start_timeout: the constructor throws.
void start_bound() {
    pool::Options o;
    o.initializer = [] {
        for (;;) pause();
    };
    o.start_timeout = 1;
    auto t0 = std::chrono::steady_clock::now();
    try {
        pool::Pool hangs(1, o);
        expect(false, "an initializer that never returns fails the constructor");
    } catch (const pool::TimeoutError& e) {
        expect(e.status() == POOL_ETIMEDOUT && std::strstr(e.what(), "start_timeout"),
               "a hung initializer: pool::TimeoutError naming start_timeout");
    }
    expect(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30), "start_timeout: no hang");
    // An initializer that throws: the constructor says why, with the exception's message.
    pool::Options t;
    t.initializer = [] { throw std::runtime_error("no model file here"); };
    try {
        pool::Pool refused(1, t);
        expect(false, "a throwing initializer fails the constructor");
    } catch (const pool::Error& e) {
        expect(e.status() == POOL_ETASK && std::strstr(e.what(), "no model file here"),
               "a throwing initializer: pool::Error with its message");
    }
}

}  // namespace

int main() {
    try {
        seed();
        more();
        streaming();
        next();
        blocks_and_streams();
        inside_a_task();
        start_bound();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "FAIL: unexpected exception: %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
