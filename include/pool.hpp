/*
 * pool.hpp: libpool for C++17. Header-only, over the C API of pool.h (same library, nothing
 * else to link).
 *
 *   #include <pool.hpp>
 *
 *   long square(const long& x) { return x * x; }
 *
 *   pool::Pool p(2);                                    // Pool(processes=2)
 *   std::vector<long> ys = p.map(square, xs);           // Pool.map
 *   auto a = p.map_async([](const long& x) { return x + 1; }, xs);
 *   std::vector<long> zs = a.get();                     // AsyncResult.get(); get(2.5): timeout
 *   long y = p.apply(square, 7L);                       // Pool.apply
 *   pool::Async<long> r = p.apply_async(square, 7L);    // Pool.apply_async
 *   p.close(); p.join();
 *
 *   pool::Process proc([](int id) { std::printf("%d\n", id); }, 42);
 *   proc.start(); proc.join();                          // multiprocessing.Process
 *
 * Rules, checked at compile time (loop bodies partly when the call is made):
 * - Work given to a Pool runs in worker processes forked when the Pool was created, so a task
 *   is a plain function or a capture-less lambda (a closure made later, or a std::function,
 *   would not exist there). A Process is forked at start(), so its target may be any callable.
 * - Items and results are copied between processes byte by byte: they must be trivially
 *   copyable and not pointers (results must also be default-constructible).
 * - A parallel_for / map_blocks loop body is copied to the workers: it must capture by value.
 *   A std::ref body is refused at compile time; reference captures ([&total], [&]) and
 *   pointers into the caller's stack cannot be seen by a trait and are refused when the call
 *   is made (pool::Error, POOL_EINVAL, naming the capture).
 * - An exception thrown by a task never crosses the C boundary: the task fails with
 *   pool::task_exception as its code, and the call throws pool::Error with status POOL_ETASK
 *   whose what() carries the exception's what() text.
 * - try_map returns every item's result and status instead of throwing for failed items.
 *
 * Errors: every failure throws pool::Error (status() is a pool_status, what() says what failed
 * and why); timeouts throw pool::TimeoutError (status POOL_ETIMEDOUT).
 * Thread safety: as the C API; a Pool may be used from several threads at once.
 */
#ifndef POOL_HPP
#define POOL_HPP

#if !defined(__cplusplus) || (__cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L))
#error "pool.hpp needs C++17 or later (use pool.h from C)"
#endif

#include "pool.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

namespace pool {

/// The library's version, "MAJOR.MINOR.PATCH".
inline const char* version() noexcept { return pool_version(); }

/// The task code reported for a task that threw an exception (the call fails with POOL_ETASK).
inline constexpr int task_exception = -1;

/// A failed libpool call: status() is a pool_status (POOL_ETASK, POOL_ECLOSED, ...).
class Error : public std::runtime_error {
public:
    /// An error with `status` (a pool_status) and the message `what`.
    Error(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
    /// The pool_status of the failure.
    int status() const noexcept { return status_; }

private:
    int status_;
};

/// A wait that ran out of time (status POOL_ETIMEDOUT): the work goes on.
class TimeoutError : public Error {
public:
    using Error::Error;
};

namespace detail {

inline std::string describe(int status, const char* what) {
    std::string m = what;
    m += ": ";
    m += pool_strerror(status);
    const char* last = pool_last_error();
    if (last != nullptr && *last != '\0') {
        m += " (";
        m += last;
        m += ")";
    }
    return m;
}

[[noreturn]] inline void raise(int status, const char* what) {
    if (status == POOL_ETIMEDOUT) throw TimeoutError(status, describe(status, what));
    throw Error(status, describe(status, what));
}

inline void check(int status, const char* what) {
    if (status != POOL_OK) raise(status, what);
}

// A call returned NULL: the C API's thread-local status says why (`fallback` if it has none).
[[noreturn]] inline void raise_null(int fallback, const char* what) {
    int st = pool_last_status();
    raise(st != POOL_OK ? st : fallback, what);
}

template <class T>
inline constexpr bool transferable_v = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                                       !std::is_member_pointer_v<T> && !std::is_void_v<T>;

// The plain function pointer a callable converts to (a function, a function pointer or a
// capture-less lambda), or void for anything else (closures with captures, generic lambdas,
// std::function...).
template <class F, class = void>
struct fn_ptr {
    using type = void;
};
template <class F>
struct fn_ptr<F, std::void_t<decltype(+std::declval<F&>())>> {
    using P = decltype(+std::declval<F&>());
    using type = std::conditional_t<std::is_pointer_v<P> && std::is_function_v<std::remove_pointer_t<P>>, P, void>;
};
template <class F>
using fn_ptr_t = typename fn_ptr<std::decay_t<F>>::type;

struct invalid_result {};  // stands for the result type of an invalid call (after its error)

template <class P, class... Args>
struct call_result {
    using type = invalid_result;
};
template <class P, class... Args>
struct call_result_impl {
    using type = std::decay_t<std::invoke_result_t<P, Args...>>;
};
template <class P, class... Args>
using result_t = typename std::conditional_t<!std::is_void_v<P> && std::is_invocable_v<P, Args...>,
                                             call_result_impl<P, Args...>, call_result<P, Args...>>::type;

// The result type of task F called on an item of type In (or with no argument: In = void).
template <class F, class In>
struct task_result {
    using type = result_t<fn_ptr_t<F>, const In&>;
};
template <class F>
struct task_result<F, void> {
    using type = result_t<fn_ptr_t<F>>;
};
template <class F, class In>
using task_result_t = typename task_result<F, In>::type;

template <class F, class In>
constexpr bool check_task() {
    using P = fn_ptr_t<F>;
    constexpr bool is_fn = !std::is_void_v<P>;
    static_assert(is_fn,
                  "pool: a task runs in a worker process forked when the Pool was created: pass a function, "
                  "a function pointer or a capture-less lambda (a closure with captures, a generic lambda "
                  "or a std::function does not exist there)");
    constexpr bool in_ok = std::is_void_v<In> || transferable_v<In>;
    static_assert(in_ok,
                  "pool: the item type cannot cross a process boundary: it must be trivially copyable and "
                  "not a pointer");
    constexpr bool callable = [] {
        if constexpr (!is_fn) {
            return true;  // already reported
        } else if constexpr (std::is_void_v<In>) {
            return std::is_invocable_v<P>;
        } else {
            return std::is_invocable_v<P, const In&>;
        }
    }();
    static_assert(callable, "pool: the task cannot be called with the item type (take it as const In& or by value)");
    using Out = task_result_t<F, In>;
    constexpr bool out_ok = !is_fn || !callable || (transferable_v<Out> && std::is_default_constructible_v<Out>);
    static_assert(out_ok,
                  "pool: the task's result cannot cross a process boundary: it must be non-void, trivially "
                  "copyable, default-constructible and not a pointer");
    return is_fn && in_ok && callable && out_ok;
}

template <class P>
inline void* to_ctx(P f) noexcept {
    // A function's address is the same in the workers: they are forks of this process.
    return reinterpret_cast<void*>(f);
}

template <class T>
inline T load(const void* src) noexcept {
    // The item may sit anywhere in shared memory: copy it out instead of assuming alignment.
    alignas(T) unsigned char buf[sizeof(T)];
    std::memcpy(buf, src, sizeof(T));
    return *std::launder(reinterpret_cast<T*>(buf));
}

// Runs a task's body: an exception fails the task with its message as pool_task_error.
template <class B>
int run_task(B&& body) noexcept {
    try {
        body();
        return 0;
    } catch (const std::exception& e) {
        pool_task_error(e.what());
        return task_exception;
    } catch (...) {
        pool_task_error("unknown exception");
        return task_exception;
    }
}

// pool_fn for a task P on items of type In (In = void: no input).
template <class P, class In>
int item_task(const void* in, void* out, void* ctx) noexcept {
    return run_task([&] {
        P f = reinterpret_cast<P>(ctx);
        if constexpr (std::is_void_v<In>) {
            (void)in;
            auto r = f();
            std::memcpy(out, &r, sizeof r);
        } else {
            const In x = load<In>(in);
            auto r = f(x);
            std::memcpy(out, &r, sizeof r);
        }
    });
}

// An initializer that throws refuses to start the worker with the exception's message:
// pool_create fails with it (POOL_ETASK), as a C initializer_ex that returns nonzero.
inline int run_initializer(void* arg) noexcept {
    try {
        (*static_cast<const std::function<void()>*>(arg))();
        return 0;
    } catch (const std::exception& e) {
        pool_task_error(e.what());
    } catch (...) {
        pool_task_error("the initializer threw an exception that is not a std::exception");
    }
    return 1;
}

}  // namespace detail

/// The result of a call made with map_async, apply_async or submit (Python's AsyncResult).
/// Move-only; destroying it frees the handle (pending work goes on, its result is dropped).
template <class T>
class Async {
public:
    Async() = default;
    Async(Async&&) noexcept = default;
    Async& operator=(Async&&) noexcept = default;
    Async(const Async&) = delete;
    Async& operator=(const Async&) = delete;
    ~Async() = default;

    /// False for a default-constructed or moved-from Async.
    bool valid() const noexcept { return st_ != nullptr; }

    /// Waits up to `timeout` seconds (negative: no limit) and returns the result, or throws
    /// pool::Error with the call's failure (every time), or pool::TimeoutError if not ready.
    const T& get(double timeout = -1) & {
        finish(timeout);
        return st_->value;
    }
    /// As above, on a temporary (`p.map_async(f, xs).get()`): returns the result by value.
    T get(double timeout = -1) && {
        finish(timeout);
        return std::move(st_->value);
    }

    /// Waits up to `timeout` seconds (negative: no limit); true once the result is ready
    /// (whether it succeeded or not).
    bool wait(double timeout = -1) const {
        int s = pool_async_wait(handle(), timeout);
        if (s == POOL_ETIMEDOUT) return false;
        detail::check(s, "pool_async_wait");
        return true;
    }
    /// True once the result is ready. Never blocks.
    bool ready() const noexcept { return st_ && pool_async_ready(st_->handle); }
    /// True once the result is ready and succeeded. Never blocks.
    bool successful() const noexcept { return st_ && pool_async_successful(st_->handle); }

    /// Cancels the work (queued work is dropped, running work killed); returns once the result
    /// is ready. get() then throws pool::Error with POOL_ECANCELLED unless it had finished.
    void cancel() { detail::check(pool_async_cancel(handle()), "pool_async_cancel"); }

    /// Items ended so far and in all (a map's progress; a single call counts as one item).
    std::pair<std::size_t, std::size_t> progress() const {
        std::size_t done = 0, total = 0;
        detail::check(pool_async_progress(handle(), &done, &total), "pool_async_progress");
        return {done, total};
    }

    /// How the call ended (status, the task's code, the worker's pid, exit code or signal,
    /// the failing item); throws pool::TimeoutError if not ready.
    pool_task_info_t info() const {
        pool_task_info_t i{};
        detail::check(pool_async_info(handle(), &i, sizeof i), "pool_async_info");
        return i;
    }

    /// The C handle, owned by this object.
    pool_async_t* native_handle() const noexcept { return st_ ? st_->handle : nullptr; }

private:
    friend class Pool;

    struct State {
        pool_async_t* handle = nullptr;
        T value{};                           // the library writes the result here (map, apply)
        std::shared_ptr<const void> input;   // kept until the handle is freed (map_async)
        void (*convert)(State&) = nullptr;   // fills `value` from the handle (submit)
        std::once_flag converted;
        void (*on_done)(int, const T&) = nullptr;  // the completion callback, if any
        static void callback(pool_async_t*, int status, void* arg) noexcept {
            auto* st = static_cast<State*>(arg);
            st->on_done(status, st->value);
        }
        State() = default;
        State(const State&) = delete;
        State& operator=(const State&) = delete;
        ~State() { pool_async_free(handle); }  // first: the library never writes `value` after this
    };

    explicit Async(std::unique_ptr<State> st) : st_(std::move(st)) {}

    pool_async_t* handle() const {
        if (!st_) throw Error(POOL_EINVAL, "pool::Async: no result (default-constructed or moved from)");
        return st_->handle;
    }

    void finish(double timeout) {
        detail::check(pool_async_get(handle(), timeout), "pool_async_get");
        if (st_->convert) std::call_once(st_->converted, st_->convert, *st_);
    }

    std::unique_ptr<State> st_;
};

/// Given to a streaming submit() task to write its result.
class Output {
public:
    /// Appends bytes to the task's result; throws pool::Error (POOL_ENOMEM past max_out).
    void write(const void* data, std::size_t len) { detail::check(pool_out_write(data, len), "pool_out_write"); }
    void write(std::string_view s) { write(s.data(), s.size()); }
    /// Room to write the result in place: where it ends now and how many bytes are left (at
    /// least `min_len`; throws pool::Error with POOL_ENOMEM if fewer are). Then commit().
    std::pair<char*, std::size_t> reserve(std::size_t min_len) {
        std::size_t avail = 0;
        void* p = pool_out_reserve(min_len, &avail);
        if (p == nullptr) detail::check(pool_last_status(), "pool_out_reserve");
        return {static_cast<char*>(p), avail};
    }
    /// Appends the first `len` bytes written where reserve() pointed.
    void commit(std::size_t len) { detail::check(pool_out_commit(len), "pool_out_commit"); }
};

namespace detail {

// pool_task_fn for submit(): P is `R(std::string_view)` (R converts to std::string_view) or
// `void(std::string_view, Output&)`.
template <class P>
int bytes_task(const void* in, std::size_t len, void* ctx) noexcept {
    return run_task([&] {
        P f = reinterpret_cast<P>(ctx);
        std::string_view input(len ? static_cast<const char*>(in) : "", len);
        if constexpr (std::is_invocable_v<P, std::string_view, Output&>) {
            Output out;
            f(input, out);
        } else {
            auto r = f(input);
            std::string_view v(r);
            Output().write(v);
        }
    });
}

template <class F>
constexpr bool check_bytes_task() {
    using P = fn_ptr_t<F>;
    constexpr bool is_fn = !std::is_void_v<P>;
    static_assert(is_fn,
                  "pool: a task runs in a worker process forked when the Pool was created: pass a function, "
                  "a function pointer or a capture-less lambda");
    constexpr bool ok = [] {
        if constexpr (!is_fn) {
            return true;
        } else if constexpr (std::is_invocable_v<P, std::string_view, Output&>) {
            return true;
        } else if constexpr (std::is_invocable_v<P, std::string_view>) {
            return std::is_convertible_v<std::invoke_result_t<P, std::string_view>, std::string_view>;
        } else {
            return false;
        }
    }();
    static_assert(ok,
                  "pool: a submit() task is `R f(std::string_view)` with R convertible to std::string_view, "
                  "or `void f(std::string_view, pool::Output&)`");
    return is_fn && ok;
}

// What a block task needs, copied with each call (ctx_size): the caller's function object (a
// function pointer, or a lambda whose captures are trivially copyable: the bytes of the closure
// cross to the worker, its code is already there) and where the caller's range starts.
template <class F>
struct BlockCtx {
    F f;
    std::size_t first;
};

// pool_block_fn for parallel_for: F is called as `f(std::size_t begin, std::size_t end)`.
template <class F>
int for_task(const void*, void*, std::size_t count, std::size_t first, void* ctx) noexcept {
    return run_task([&] {
        const auto* c = static_cast<const BlockCtx<F>*>(ctx);
        std::size_t begin = c->first + first;
        c->f(begin, begin + count);
    });
}

// pool_block_fn for map_blocks: F is called as `f(const In* in, Out* out, std::size_t count)`.
template <class F, class In, class Out>
int block_task(const void* in, void* out, std::size_t count, std::size_t, void* ctx) noexcept {
    return run_task([&] {
        static_cast<const BlockCtx<F>*>(ctx)->f(static_cast<const In*>(in), static_cast<Out*>(out), count);
    });
}

template <class T>
struct is_reference_wrapper : std::false_type {};
template <class T>
struct is_reference_wrapper<std::reference_wrapper<T>> : std::true_type {};

// What C++17 lets us see of a loop body at compile time. A trait cannot tell a lambda's
// reference captures ([&total], [&]) from values: the closure is trivially copyable either way.
// Those, and captured pointers into the caller's stack, are refused when the call is made
// (pool::Error, POOL_EINVAL, naming the capture): the pool scans the closure's bytes.
template <class F, class... Args>
constexpr bool check_block_fn() {
    using D = std::decay_t<F>;
    constexpr bool by_value = !is_reference_wrapper<D>::value;
    static_assert(by_value,
                  "pool: the loop body is a std::reference_wrapper (std::ref): workers would call the caller's "
                  "object as it was when the pool was created; pass the function object itself (it is copied)");
    constexpr bool copyable = std::is_trivially_copyable_v<D>;
    static_assert(copyable,
                  "pool: a loop body runs in worker processes: pass a function, a function pointer or a lambda "
                  "whose captures are trivially copyable (capture pointers to pool shared memory, counts, "
                  "plain values: not std::vector or std::string, whose heap the workers do not share)");
    constexpr bool ok = std::is_invocable_v<const D&, Args...>;
    static_assert(ok, "pool: the loop body cannot be called with these arguments");
    return by_value && copyable && ok;
}

// pool_stream_source_fn over a std::function the caller gave.
using SourceFn = std::function<std::size_t(std::size_t index, char* buf, std::size_t cap)>;
inline int stream_source(void* buf, std::size_t cap, std::size_t* len, std::size_t index, void* ctx) noexcept {
    try {
        std::size_t n = (*static_cast<SourceFn*>(ctx))(index, static_cast<char*>(buf), cap);
        if (n == static_cast<std::size_t>(-1)) return 1;  // end of input
        *len = n;
        return 0;
    } catch (...) {
        return 2;  // an error: pool_stream_next reports it after the last result
    }
}

}  // namespace detail

/// One result of a Stream: its item's index, and its bytes (valid until the next call to
/// next() or the Stream's end) or, if it failed, its status and message.
struct StreamItem {
    /// The item's index in the input.
    std::size_t index = 0;
    /// POOL_OK, or the item's failure status (POOL_ETASK, POOL_ECRASHED, POOL_ETIMEDOUT, ...).
    int status = POOL_OK;
    /// The result's bytes; empty if the item failed.
    std::string_view data;
    /// Why the item failed (as pool_last_error()); empty if it succeeded.
    std::string error;
    /// True if the item succeeded.
    bool ok() const noexcept { return status == POOL_OK; }
};

/// Results of Pool::stream one at a time, with a bounded number of items in flight.
/// Move-only; destroying it cancels the work not yet read.
class Stream {
public:
    /// What a source returns at the end of its input.
    static constexpr std::size_t end = static_cast<std::size_t>(-1);

    Stream(Stream&& o) noexcept
        : s_(std::exchange(o.s_, nullptr)), items_(std::move(o.items_)), source_(std::move(o.source_)) {}
    Stream& operator=(Stream&& o) noexcept {
        if (this != &o) {
            pool_stream_free(s_);
            s_ = std::exchange(o.s_, nullptr);
            items_ = std::move(o.items_);
            source_ = std::move(o.source_);
        }
        return *this;
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    ~Stream() { pool_stream_free(s_); }

    /// The next result into `item`: true, or false once every result was returned. A failed
    /// item comes back with its status (item.ok() false), and iteration goes on. Throws
    /// pool::TimeoutError if nothing is ready within `timeout` seconds (negative: no limit),
    /// pool::Error if the source failed.
    bool next(StreamItem& item, double timeout = -1) {
        const void* data = nullptr;
        std::size_t len = 0, index = 0;
        int s = pool_stream_next(s_, &data, &len, &index, timeout);
        if (s == POOL_EDONE) return false;
        if (index == static_cast<std::size_t>(-1)) detail::check(s, "pool_stream_next");
        item.index = index;
        item.status = s;
        item.data = std::string_view(len ? static_cast<const char*>(data) : "", len);
        item.error = s == POOL_OK ? std::string() : std::string(pool_last_error());
        return true;
    }
    /// Items finished so far (returned, or ended and waiting their turn), and how many there
    /// will be (0 while a source runs).
    std::pair<std::size_t, std::size_t> progress() const {
        std::size_t done = 0, total = 0;
        detail::check(pool_stream_progress(s_, &done, &total), "pool_stream_progress");
        return {done, total};
    }

private:
    friend class Pool;
    Stream(pool_stream_t* s, std::shared_ptr<const void> items, std::unique_ptr<detail::SourceFn> source)
        : s_(s), items_(std::move(items)), source_(std::move(source)) {}
    pool_stream_t* s_;
    std::shared_ptr<const void> items_;  // the buffer list, kept while the library reads it
    std::unique_ptr<detail::SourceFn> source_;
};

/// How far workers are confined (pool_options_t.sandbox).
enum class Sandbox : int { None = POOL_SANDBOX_NONE, Compute = POOL_SANDBOX_COMPUTE };

/// Options of a Pool (pool_options_t).
struct Options {
    /// Runs once in every worker when it starts, before any task. It may capture: workers are
    /// forked from a copy of this process made while the Pool is constructed. An exception
    /// from it refuses to start the worker: the Pool constructor throws pool::Error
    /// (POOL_ETASK) with the exception's message.
    std::function<void()> initializer;
    /// Tasks (an apply, or a map chunk) a worker runs before it is replaced; 0 = no limit.
    std::uint64_t max_tasks_per_child = 0;
    /// Seconds one item may run before its worker is stopped and the item fails with
    /// POOL_ETIMEDOUT; <= 0 for no limit.
    double task_timeout = 0;
    /// Resident memory in bytes past which a worker is replaced after its task; 0 = no limit.
    std::uint64_t max_rss = 0;
    /// Virtual size of the pool's shared memory in bytes; 0 for the default (32 GiB, or the
    /// POOL_SHM_SIZE environment variable).
    std::size_t shm_size = 0;
    /// Seconds a worker may take to start, its initializer included; 0 for the default (300 s),
    /// < 0 for no bound. Past it the constructor throws pool::TimeoutError (POOL_ETIMEDOUT);
    /// a replacement worker past it counts as a death in the initializer (pool_options_t).
    double start_timeout = 0;
    /// The workers' sandbox (pool_options_t.sandbox): Sandbox::Compute confines each worker
    /// once its initializer ran. The constructor throws pool::Error (POOL_ESYS) if this system
    /// cannot give all of it.
    Sandbox sandbox_level = Sandbox::None;
    /// Files and directories a sandboxed worker may read, and read and write.
    std::vector<std::string> sandbox_read_paths, sandbox_write_paths;
    /// Tasks one sandboxed process runs before a fresh one replaces it (0 or 1: a fresh one
    /// for every task; pool_options_t.sandbox_tasks_per_process).
    std::uint64_t sandbox_tasks_per_process = 0;

    /// Chainable setters: Options().sandbox(Sandbox::Compute).read_paths({"/models"}).
    Options& sandbox(Sandbox s) {
        sandbox_level = s;
        return *this;
    }
    Options& read_paths(std::vector<std::string> paths) {
        sandbox_read_paths = std::move(paths);
        return *this;
    }
    Options& write_paths(std::vector<std::string> paths) {
        sandbox_write_paths = std::move(paths);
        return *this;
    }
    Options& tasks_per_process(std::uint64_t n) {
        sandbox_tasks_per_process = n;
        return *this;
    }
};

/// What try_map returns: every item's result and status, in item order.
template <class T>
struct Results {
    /// values[i] is item i's result when statuses[i] is POOL_OK (a default T otherwise).
    std::vector<T> values;
    /// Each item's pool_status (POOL_OK, POOL_ETASK, POOL_ECRASHED, POOL_ETIMEDOUT, ...).
    std::vector<int> statuses;
    /// True if item `i` succeeded (std::out_of_range past the end).
    bool ok(std::size_t i) const { return statuses.at(i) == POOL_OK; }
    /// How many items failed.
    std::size_t failed() const {
        std::size_t n = 0;
        for (int s : statuses) n += s != POOL_OK;
        return n;
    }
};

/// Results of Pool::imap one at a time (Python's imap), with only a few chunks in flight.
/// Move-only; destroying it cancels the work not yet read.
template <class Out>
class Iter {
public:
    Iter(Iter&& o) noexcept : it_(std::exchange(o.it_, nullptr)), input_(std::move(o.input_)) {}
    Iter& operator=(Iter&& o) noexcept {
        if (this != &o) {
            pool_iter_free(it_);
            it_ = std::exchange(o.it_, nullptr);
            input_ = std::move(o.input_);
        }
        return *this;
    }
    Iter(const Iter&) = delete;
    Iter& operator=(const Iter&) = delete;
    ~Iter() { pool_iter_free(it_); }

    /// The next result into `out` (and its item index into `*index`): true, or false once every
    /// result was returned. A failed item throws pool::Error; iteration can go on after it.
    /// Throws pool::TimeoutError if nothing is ready within `timeout` seconds (negative: none).
    bool next(Out& out, std::size_t* index = nullptr, double timeout = -1) {
        int s = pool_iter_next(it_, &out, index, timeout);
        if (s == POOL_EDONE) return false;
        detail::check(s, "pool_iter_next");
        return true;
    }

private:
    friend class Pool;
    Iter(pool_iter_t* it, std::shared_ptr<const void> input) : it_(it), input_(std::move(input)) {}
    pool_iter_t* it_;
    std::shared_ptr<const void> input_;  // the items, kept while the library reads them
};

/// A pool of worker processes (Python's multiprocessing.Pool). Move-only. Destroying it
/// terminates the workers unless close() was called (like leaving `with Pool() as p:`), then
/// joins them.
class Pool {
public:
    /// Starts `workers` worker processes (<= 0: one per CPU this process may run on).
    explicit Pool(int workers = 0, const Options& options = Options()) {
        pool_options_t o;
        pool_options_init(&o);
        o.max_tasks_per_child = options.max_tasks_per_child;
        o.task_timeout = options.task_timeout;
        o.max_rss = options.max_rss;
        o.shm_size = options.shm_size;
        o.start_timeout = options.start_timeout;
        if (options.initializer) {
            o.initializer_ex = &detail::run_initializer;
            o.initarg = const_cast<std::function<void()>*>(&options.initializer);
        }
        o.sandbox = static_cast<int>(options.sandbox_level);
        auto c_list = [](const std::vector<std::string>& v) {
            std::vector<const char*> l;
            for (const auto& s : v) l.push_back(s.c_str());
            l.push_back(nullptr);
            return l;
        };
        std::vector<const char*> reads = c_list(options.sandbox_read_paths);
        std::vector<const char*> writes = c_list(options.sandbox_write_paths);
        if (!options.sandbox_read_paths.empty()) o.sandbox_read_paths = reads.data();
        if (!options.sandbox_write_paths.empty()) o.sandbox_write_paths = writes.data();
        o.sandbox_tasks_per_process = options.sandbox_tasks_per_process;
        p_ = pool_create(workers, &o);
        if (p_ == nullptr) detail::raise_null(POOL_ESYS, "pool_create");
    }
    Pool(Pool&& other) noexcept
        : p_(std::exchange(other.p_, nullptr)),
          closed_(other.closed_),
          moved_(std::exchange(other.moved_, true)) {}
    Pool& operator=(Pool&& other) noexcept {
        if (this != &other) {
            pool_destroy(p_);
            p_ = std::exchange(other.p_, nullptr);
            closed_ = other.closed_;
            moved_ = std::exchange(other.moved_, true);
        }
        return *this;
    }
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;
    ~Pool() { pool_destroy(p_); }

    /// The number of worker processes.
    int workers() const noexcept { return pool_workers(p_); }

    /// What the sandbox gives each worker (pool_sandbox_report); empty without a sandbox.
    std::string sandbox_report() const {
        const char* r = pool_sandbox_report(p_);
        return r ? r : "";
    }

    /// Applies `f` to every item in parallel and returns the results in order. `f` is a
    /// function or capture-less lambda taking `const In&` (or `In`).
    template <class F, class In>
    std::vector<detail::task_result_t<F, In>> map(F f, const In* items, std::size_t n) {
        using Out = detail::task_result_t<F, In>;
        std::vector<Out> out;
        if constexpr (detail::check_task<F, In>()) {
            out.resize(n);
            detail::check(pool_map(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, n ? items : nullptr,
                                   sizeof(In), n ? out.data() : nullptr, sizeof(Out), n,
                                   detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f))),
                          "pool_map");
        }
        return out;
    }
    template <class F, class In>
    std::vector<detail::task_result_t<F, In>> map(F f, const std::vector<In>& items) {
        return map(f, items.data(), items.size());
    }
    template <class F, class In>
    std::vector<detail::task_result_t<F, In>> map(F f, std::initializer_list<In> items) {
        return map(f, items.begin(), items.size());
    }

    /// Like map, but one failed item does not discard the others: returns every item's result
    /// and status (Python has no such call; it is pool_map_ex with statuses). Throws only when
    /// the call itself fails (a closed pool, bad arguments). `task_timeout` > 0 limits each item.
    template <class F, class In>
    Results<detail::task_result_t<F, In>> try_map(F f, const std::vector<In>& items, double task_timeout = 0) {
        Results<detail::task_result_t<F, In>> r;
        if constexpr (detail::check_task<F, In>()) {
            using Out = detail::task_result_t<F, In>;
            const std::size_t n = items.size();
            r.values.resize(n);
            r.statuses.assign(n, -1);
            pool_map_options_t o;
            pool_map_options_init(&o);
            o.statuses = n ? r.statuses.data() : nullptr;
            o.task_timeout = task_timeout;
            int s = pool_map_ex(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, n ? items.data() : nullptr,
                                sizeof(In), n ? r.values.data() : nullptr, sizeof(Out), n,
                                detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)), &o);
            if (s != POOL_OK && (n == 0 || r.statuses[0] == -1)) detail::raise(s, "pool_map_ex");
        }
        return r;
    }

    /// Like map, without waiting. The Async keeps its own copy of the items.
    template <class F, class In>
    Async<std::vector<detail::task_result_t<F, In>>> map_async(F f, std::vector<In> items) {
        using Out = detail::task_result_t<F, In>;
        using A = Async<std::vector<Out>>;
        auto st = std::make_unique<typename A::State>();
        if constexpr (detail::check_task<F, In>()) {
            auto in = std::make_shared<const std::vector<In>>(std::move(items));
            const std::size_t n = in->size();
            st->value.resize(n);
            st->input = in;
            st->handle = pool_map_async(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, n ? in->data() : nullptr,
                                        sizeof(In), n ? st->value.data() : nullptr, sizeof(Out), n,
                                        detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)));
            if (st->handle == nullptr) detail::raise_null(submit_status(), "pool_map_async");
        }
        return A(std::move(st));
    }
    /// Results of `f` over `items` one at a time, in item order (`ordered`) or as they
    /// complete: `while (it.next(y, &i)) ...`. Only a few chunks are in flight at once.
    template <class F, class In>
    Iter<detail::task_result_t<F, In>> imap(F f, std::vector<In> items, bool ordered = true) {
        using Out = detail::task_result_t<F, In>;
        pool_iter_t* it = nullptr;
        auto in = std::make_shared<const std::vector<In>>(std::move(items));
        if constexpr (detail::check_task<F, In>()) {
            const std::size_t n = in->size();
            auto start = ordered ? pool_imap : pool_imap_unordered;
            it = start(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, n ? in->data() : nullptr, sizeof(In),
                       sizeof(Out), n, detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)), nullptr);
            if (it == nullptr) detail::raise_null(submit_status(), "pool_imap");
        }
        return Iter<Out>(it, std::move(in));
    }

    /// map_async over a braced list: `p.map_async(f, {1, 2, 3})`.
    template <class F, class In>
    Async<std::vector<detail::task_result_t<F, In>>> map_async(F f, std::initializer_list<In> items) {
        return map_async(f, std::vector<In>(items));
    }

    /// Runs `f(x)` in a worker and returns its result.
    template <class F, class In>
    detail::task_result_t<F, In> apply(F f, const In& x) {
        detail::task_result_t<F, In> r{};
        if constexpr (detail::check_task<F, In>()) {
            detail::check(pool_apply(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, &x, sizeof(In), &r, sizeof r,
                                     detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f))),
                          "pool_apply");
        }
        return r;
    }
    /// Runs `f()` in a worker and returns its result.
    template <class F>
    detail::task_result_t<F, void> apply(F f) {
        detail::task_result_t<F, void> r{};
        if constexpr (detail::check_task<F, void>()) {
            detail::check(pool_apply(get(), &detail::item_task<detail::fn_ptr_t<F>, void>, nullptr, 0, &r, sizeof r,
                                     detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f))),
                          "pool_apply");
        }
        return r;
    }

    /// Like apply, without waiting (the item is copied before this returns).
    template <class F, class In>
    Async<detail::task_result_t<F, In>> apply_async(F f, const In& x) {
        using A = Async<detail::task_result_t<F, In>>;
        auto st = std::make_unique<typename A::State>();
        if constexpr (detail::check_task<F, In>()) {
            st->handle = pool_apply_async(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, &x, sizeof(In), &st->value,
                                          sizeof st->value, detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)));
            if (st->handle == nullptr) detail::raise_null(submit_status(), "pool_apply_async");
        }
        return A(std::move(st));
    }
    /// Like apply_async(f, x), and calls `on_done(status, value)` once the result is ready,
    /// from the pool's callback thread (one at a time for a pool; see pool_callback_fn).
    /// `on_done` is a function or capture-less lambda `void(int status, const R& value)`,
    /// which must not throw (an exception escaping it ends the program: std::terminate);
    /// `value` is meaningful when status is POOL_OK. Destroying the Async waits for a callback
    /// that is running; destroyed before the result is ready, it means no callback.
    template <class F, class In, class Cb>
    Async<detail::task_result_t<F, In>> apply_async(F f, const In& x, Cb on_done) {
        using R = detail::task_result_t<F, In>;
        using A = Async<R>;
        static_assert(std::is_convertible_v<Cb, void (*)(int, const R&)>,
                      "pool::Pool::apply_async: on_done must be a function or a capture-less lambda "
                      "void(int status, const R& value): it runs on the pool's callback thread, without captures");
        void (*cb)(int, const R&) = on_done;
        auto st = std::make_unique<typename A::State>();
        if constexpr (detail::check_task<F, In>()) {
            st->on_done = cb;
            pool_call_options_t co;
            pool_call_options_init(&co);
            co.callback = &A::State::callback;
            co.callback_arg = st.get();
            st->handle = pool_apply_async_ex(get(), &detail::item_task<detail::fn_ptr_t<F>, In>, &x, sizeof(In), &st->value,
                                             sizeof st->value, detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)), &co);
            if (st->handle == nullptr) detail::raise_null(submit_status(), "pool_apply_async_ex");
        }
        return A(std::move(st));
    }
    /// Runs `f()` (no input) in a worker, without waiting.
    template <class F>
    Async<detail::task_result_t<F, void>> apply_async(F f) {
        using A = Async<detail::task_result_t<F, void>>;
        auto st = std::make_unique<typename A::State>();
        if constexpr (detail::check_task<F, void>()) {
            st->handle = pool_apply_async(get(), &detail::item_task<detail::fn_ptr_t<F>, void>, nullptr, 0, &st->value,
                                          sizeof st->value, detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)));
            if (st->handle == nullptr) detail::raise_null(submit_status(), "pool_apply_async");
        }
        return A(std::move(st));
    }

    /// Runs a task on bytes of any size whose result has a size decided as it runs, up to
    /// `max_out` bytes. `f` is `R f(std::string_view in)` (R converts to std::string_view: a
    /// std::string, say) or `void f(std::string_view in, pool::Output& out)` for streaming.
    /// The input is copied before this returns; get() returns the result as a std::string.
    template <class F>
    Async<std::string> submit(F f, std::string_view input, std::size_t max_out) {
        using A = Async<std::string>;
        auto st = std::make_unique<A::State>();
        if constexpr (detail::check_bytes_task<F>()) {
            st->convert = [](A::State& s) {
                const void* data = nullptr;
                std::size_t len = 0;
                detail::check(pool_async_result(s.handle, &data, &len), "pool_async_result");
                s.value.assign(static_cast<const char*>(data), len);
            };
            st->handle = pool_submit(get(), &detail::bytes_task<detail::fn_ptr_t<F>>, input.data(), input.size(),
                                     max_out, detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)));
            if (st->handle == nullptr) detail::raise_null(submit_status(), "pool_submit");
        }
        return A(std::move(st));
    }

    /// Runs `f` on each of `items` (as submit(): `R f(std::string_view)` or
    /// `void f(std::string_view, pool::Output&)`), results one at a time through the Stream, in
    /// item order or (ordered = false) as they complete, with at most `window` items in flight
    /// (0: automatic). The bytes the views point to must outlive the Stream.
    template <class F>
    Stream stream(F f, std::vector<std::string_view> items, std::size_t max_out, bool ordered = true,
                  std::size_t window = 0) {
        auto bufs = std::make_shared<std::vector<pool_buf_t>>();
        for (auto v : items) bufs->push_back(pool_buf_t{v.data(), v.size()});
        pool_stream_t* s = nullptr;
        if constexpr (detail::check_bytes_task<F>()) {
            pool_stream_options_t o;
            pool_stream_options_init(&o);
            o.ordered = ordered;
            o.window = window;
            s = pool_stream(get(), &detail::bytes_task<detail::fn_ptr_t<F>>, bufs->data(), bufs->size(), max_out,
                            detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)), &o);
            if (s == nullptr) detail::raise_null(pool_last_status(), "pool_stream");
        }
        return Stream(s, std::move(bufs), nullptr);
    }

    /// A stream whose input is produced on demand, in the thread calling next():
    /// `source(index, buf, cap)` writes item `index` (at most `cap` = `max_in` bytes, straight
    /// into shared memory) and returns its length, or Stream::end when there are no more.
    template <class F>
    Stream stream(F f, std::function<std::size_t(std::size_t, char*, std::size_t)> source, std::size_t max_in,
                  std::size_t max_out, bool ordered = true, std::size_t window = 0) {
        auto src = std::make_unique<detail::SourceFn>(std::move(source));
        pool_stream_t* s = nullptr;
        if constexpr (detail::check_bytes_task<F>()) {
            pool_stream_options_t o;
            pool_stream_options_init(&o);
            o.ordered = ordered;
            o.window = window;
            s = pool_stream_source(get(), &detail::bytes_task<detail::fn_ptr_t<F>>, &detail::stream_source, src.get(),
                                   max_in, max_out, detail::to_ctx(static_cast<detail::fn_ptr_t<F>>(f)), &o);
            if (s == nullptr) detail::raise_null(pool_last_status(), "pool_stream_source");
        }
        return Stream(s, nullptr, std::move(src));
    }

    /// Runs `f(begin, end)` over [first, last) cut into blocks of `block` indices (0: a few
    /// per worker), in the workers, and waits (BS::thread_pool's detach_loop + wait, or an
    /// OpenMP parallel for). `f` is a function or a lambda whose captures are trivially
    /// copyable: it is copied to the workers with each block. Workers are other processes:
    /// what they write is seen here only in memory from shm_alloc() (capture its pointer).
    /// Capture values, and pointers only into shm_alloc() memory (or constants): a body that
    /// captures by reference ([&total], [&]) or holds a pointer into this process's own memory
    /// (a local, a std::vector's data(): workers would read it as it was when the pool was
    /// created and their writes to it would be lost) is refused, pool::Error with POOL_EINVAL
    /// saying at which byte of the captures, before any block runs. A block that
    /// fails (throws, crashes, times out) fails alone; the call then throws pool::Error for
    /// the lowest one, after every block has ended.
    template <class F>
    void parallel_for(std::size_t first, std::size_t last, F f, std::size_t block = 0) {
        if (last <= first) return;
        if constexpr (detail::check_block_fn<F, std::size_t, std::size_t>()) {
            using D = std::decay_t<F>;
            detail::BlockCtx<D> c{f, first};
            pool_map_options_t o;
            pool_map_options_init(&o);
            o.chunksize = block;
            o.ctx_size = sizeof c;
            o.ctx_shared_pointers_only = true;
            detail::check(pool_map_blocks(get(), &detail::for_task<D>, nullptr, 0, nullptr, 0, last - first, &c, &o),
                          "parallel_for");
        }
    }

    /// A map over `n` items where `f(const In* in, Out* out, std::size_t count)` handles a
    /// block of `count` consecutive items per call (`block` items; 0: automatic). `f` as for
    /// parallel_for (values, and pointers only into shm_alloc() memory). `in` and `out` may be
    /// anywhere (buffers from shm_alloc() are used in place, others copied). Throws pool::Error
    /// for the lowest failed block, after every block ended.
    template <class F, class In, class Out>
    void map_blocks(F f, const In* in, Out* out, std::size_t n, std::size_t block = 0) {
        static_assert(detail::transferable_v<In> && detail::transferable_v<Out>,
                      "pool: item types must be trivially copyable and not pointers");
        if constexpr (detail::check_block_fn<F, const In*, Out*, std::size_t>()) {
            using D = std::decay_t<F>;
            detail::BlockCtx<D> c{f, 0};
            pool_map_options_t o;
            pool_map_options_init(&o);
            o.chunksize = block;
            o.ctx_size = sizeof c;
            o.ctx_shared_pointers_only = true;
            detail::check(pool_map_blocks(get(), &detail::block_task<D, In, Out>, in, sizeof(In), out, sizeof(Out), n,
                                          &c, &o),
                          "map_blocks");
        }
    }

    /// `n` objects of T in memory shared with the workers (pool_shm_alloc), at the same address
    /// there: what tasks write into it is seen here. Uninitialised. Throws pool::Error when it
    /// does not fit. Free with shm_free().
    template <class T>
    T* shm_alloc(std::size_t n) {
        static_assert(std::is_trivially_copyable_v<T>, "pool: shared memory holds trivially copyable types");
        void* p = pool_shm_alloc(get(), n * sizeof(T));
        if (p == nullptr) detail::check(pool_last_status(), "pool_shm_alloc");
        return static_cast<T*>(p);
    }
    /// Frees memory from shm_alloc(), once the work using it has ended.
    template <class T>
    void shm_free(T* p) {
        detail::check(pool_shm_free(get(), p), "pool_shm_free");
    }

    /// Stops accepting work; work already submitted still finishes.
    void close() {
        detail::check(pool_close(get()), "pool_close");
        closed_ = true;
    }
    /// Stops the workers at once; unfinished results fail with POOL_ECLOSED.
    void terminate() {
        detail::check(pool_terminate(get()), "pool_terminate");
        closed_ = true;
    }
    /// Waits for the workers to exit; call close() or terminate() first.
    void join() { detail::check(pool_join(get()), "pool_join"); }

    /// The C handle, owned by this object.
    pool_t* native_handle() const noexcept { return p_; }

private:
    pool_t* get() const {
        if (p_ == nullptr && moved_) throw Error(POOL_EINVAL, "pool::Pool: moved from");
        if (p_ == nullptr) {
            // Not moved from, yet no handle: a copy made by fork inside the constructor, before
            // it stored the handle, i.e. the pool's own worker. (A copy of a Pool that has its
            // handle goes to the library, which refuses it in tasks with the same words.)
            throw Error(POOL_EINVAL,
                        "pool::Pool: used inside a task (or a worker's initializer), where pools cannot be used, "
                        "not even the task's own");
        }
        return p_;
    }
    // The C API returns NULL without a status when a submission fails; after the checks above
    // the likely causes are a closed pool or a full shared heap.
    int submit_status() const noexcept { return closed_ ? POOL_ECLOSED : POOL_ENOMEM; }

    pool_t* p_ = nullptr;
    bool closed_ = false;
    bool moved_ = false;  // a move took its handle
};

/// Waits up to `timeout` seconds (negative: no limit) until one of `results` is ready and
/// returns its index (the lowest ready one), or nothing on timeout
/// (concurrent.futures.wait(FIRST_COMPLETED)).
template <class T>
std::optional<std::size_t> wait_any(const std::vector<Async<T>>& results, double timeout = -1) {
    if (results.empty()) return std::nullopt;
    std::vector<pool_async_t*> hs;
    for (const auto& r : results) hs.push_back(r.native_handle());
    std::size_t i = 0;
    int s = pool_async_wait_any(hs.data(), hs.size(), timeout, &i);
    if (s == POOL_ETIMEDOUT) return std::nullopt;
    detail::check(s, "pool_async_wait_any");
    return i;
}

/// The indices of `results` in the order they become ready (Python's as_completed):
/// `for (std::size_t i : pool::as_completed(rs)) use(rs[i].get());`
template <class T>
class as_completed {
public:
    /// Watches `results`, which must outlive the iteration.
    explicit as_completed(const std::vector<Async<T>>& results) {
        for (std::size_t i = 0; i < results.size(); i++) left_.push_back({results[i].native_handle(), i});
    }
    /// An input iterator: ++ waits until the next result is ready (pool_async_wait_any).
    class iterator {
    public:
        /// The index of the result that became ready.
        std::size_t operator*() const { return cur_; }
        /// Waits until the next result is ready.
        iterator& operator++() {
            step();
            return *this;
        }
        /// False once both are at the end.
        bool operator!=(const iterator& o) const { return done_ != o.done_; }

    private:
        friend class as_completed;
        iterator(as_completed* owner, bool done) : owner_(owner), done_(done) {
            if (!done_) step();
        }
        void step() {
            auto& left = owner_->left_;
            if (left.empty()) {
                done_ = true;
                return;
            }
            std::vector<pool_async_t*> hs;
            for (auto& e : left) hs.push_back(e.first);
            std::size_t i = 0;
            detail::check(pool_async_wait_any(hs.data(), hs.size(), -1, &i), "pool_async_wait_any");
            cur_ = left[i].second;
            left.erase(left.begin() + static_cast<std::ptrdiff_t>(i));
        }
        as_completed* owner_;
        bool done_;
        std::size_t cur_ = 0;
    };
    /// Waits for the first result; begin() == end() once every result was handed out.
    iterator begin() { return iterator(this, false); }
    iterator end() { return iterator(this, true); }

private:
    std::vector<std::pair<pool_async_t*, std::size_t>> left_;
};

/// A queue of byte messages shared by this process's threads and every process it forks:
/// pool::Process children and pool tasks (pool_queue_t). A peer killed in the middle of put or
/// get never leaves it locked or a message half-written. Move-only; the process that created
/// it frees it when the object is destroyed (copies inherited by forked children do not).
class BytesQueue {
public:
    /// Holds up to `max_bytes` of messages (each also takes up to 15 bytes of bookkeeping).
    explicit BytesQueue(std::size_t max_bytes) : q_(pool_queue_create(max_bytes)), owner_(getpid_()) {
        if (q_ == nullptr) detail::raise_null(POOL_EINVAL, "pool_queue_create");
    }
    BytesQueue(BytesQueue&& o) noexcept : q_(std::exchange(o.q_, nullptr)), owner_(o.owner_) {}
    BytesQueue& operator=(BytesQueue&& o) noexcept {
        if (this != &o) {
            release();
            q_ = std::exchange(o.q_, nullptr);
            owner_ = o.owner_;
        }
        return *this;
    }
    BytesQueue(const BytesQueue&) = delete;
    BytesQueue& operator=(const BytesQueue&) = delete;
    ~BytesQueue() { release(); }

    /// Appends a message, waiting up to `timeout` seconds (negative: no limit) while full;
    /// false if it is still full then. Throws pool::Error (POOL_ECLOSED once closed,
    /// POOL_EINVAL for a message that can never fit).
    bool put(std::string_view msg, double timeout = -1) {
        int s = pool_queue_put(q_, msg.data(), msg.size(), timeout);
        if (s == POOL_ETIMEDOUT) return false;
        detail::check(s, "pool_queue_put");
        return true;
    }
    /// The oldest message, waiting up to `timeout` seconds while empty; nothing on timeout.
    /// Throws pool::Error with POOL_ECLOSED once the queue is closed and empty.
    [[nodiscard]] std::optional<std::string> get(double timeout = -1) {
        std::string buf(256, '\0');
        for (;;) {
            std::size_t len = 0;
            int s = pool_queue_get(q_, buf.data(), buf.size(), &len, timeout);
            if (s == POOL_ENOMEM) {  // longer than the buffer: it stayed queued
                buf.resize(len);
                continue;
            }
            if (s == POOL_ETIMEDOUT) return std::nullopt;
            detail::check(s, "pool_queue_get");
            buf.resize(len);
            return buf;
        }
    }
    /// Puts fail from now on; gets drain what is left, then throw POOL_ECLOSED.
    void close() { detail::check(pool_queue_close(q_), "pool_queue_close"); }
    /// The C handle, owned by this object.
    pool_queue_t* native_handle() const noexcept { return q_; }

private:
    static long getpid_() noexcept { return static_cast<long>(::getpid()); }
    void release() noexcept {
        if (q_ != nullptr && owner_ == getpid_()) pool_queue_free(q_);
        q_ = nullptr;
    }
    pool_queue_t* q_;
    long owner_;
};

/// A queue of values of a trivially copyable T (Python's multiprocessing.Queue for plain data),
/// over a BytesQueue. Move-only; freed by the creating process.
template <class T>
class Queue {
    static_assert(detail::transferable_v<T>, "pool::Queue<T>: T must be trivially copyable and hold no pointers");

public:
    /// Holds up to `capacity` values.
    explicit Queue(std::size_t capacity) : q_(bytes_for(capacity)) {}
    /// Appends `v`, waiting up to `timeout` seconds while full; false if still full then.
    bool put(const T& v, double timeout = -1) {
        return q_.put(std::string_view(reinterpret_cast<const char*>(&v), sizeof v), timeout);
    }
    /// The oldest value, waiting up to `timeout` seconds while empty; nothing on timeout.
    /// Throws pool::Error with POOL_ECLOSED once closed and empty.
    /// A message of another size (put by other code through the C API) is taken out of the
    /// queue and reported as pool::Error with POOL_EINVAL.
    [[nodiscard]] std::optional<T> get(double timeout = -1) {
        std::optional<std::string> m = q_.get(timeout);
        if (!m) return std::nullopt;
        if (m->size() != sizeof(T)) throw Error(POOL_EINVAL, "pool::Queue: a message of another size than T");
        T v;
        std::memcpy(&v, m->data(), sizeof v);
        return v;
    }
    /// Puts fail from now on; gets drain what is left, then throw POOL_ECLOSED.
    void close() { q_.close(); }
    /// The C handle, owned by this object.
    pool_queue_t* native_handle() const noexcept { return q_.native_handle(); }

private:
    static std::size_t bytes_for(std::size_t capacity) {
        const std::size_t per = ((sizeof(T) + 7) / 8) * 8 + 8;
        if (capacity == 0 || capacity > SIZE_MAX / per) throw Error(POOL_EINVAL, "pool::Queue: capacity out of range");
        return capacity * per - 8;  // the C queue adds room for one message's bookkeeping
    }
    BytesQueue q_;
};

/// A lock shared with every process this one forks, whose holder may die: the next acquirer
/// gets it and learns so (pool_lock_t). Move-only; freed by the creating process.
class Lock {
public:
    /// Creates the lock (pool_lock_create); throws pool::Error on failure.
    Lock() : l_(pool_lock_create()), owner_(static_cast<long>(::getpid())) {
        if (l_ == nullptr) detail::raise_null(POOL_ESYS, "pool_lock_create");
    }
    Lock(Lock&& o) noexcept : l_(std::exchange(o.l_, nullptr)), owner_(o.owner_) {}
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    ~Lock() {
        if (l_ != nullptr && owner_ == static_cast<long>(::getpid())) pool_lock_free(l_);
    }
    /// Takes it, waiting up to `timeout` seconds; false if not taken in time. `*holder_died`
    /// (if given) says whether the previous holder died holding it.
    bool acquire(double timeout = -1, bool* holder_died = nullptr) {
        int s = pool_lock_acquire(l_, timeout);
        if (s == POOL_ETIMEDOUT) return false;
        if (holder_died) *holder_died = (s == POOL_EOWNERDEAD);
        if (s != POOL_EOWNERDEAD) detail::check(s, "pool_lock_acquire");
        return true;
    }
    /// Releases it; throws pool::Error (POOL_EINVAL) unless this thread holds it.
    void release() { detail::check(pool_lock_release(l_), "pool_lock_release"); }
    /// The C handle, owned by this object.
    pool_lock_t* native_handle() const noexcept { return l_; }

    /// Holds the lock for its scope: `pool::Lock::Guard g(lock);`
    class Guard {
    public:
        /// Takes `l`, waiting as long as it takes; the destructor releases it.
        explicit Guard(Lock& l) : l_(&l) { l.acquire(-1, &died_); }
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;
        ~Guard() { pool_lock_release(l_->l_); }
        /// True if the previous holder died holding the lock (repair what it protects).
        bool holder_died() const noexcept { return died_; }

    private:
        Lock* l_;
        bool died_ = false;
    };

private:
    pool_lock_t* l_;
    long owner_;
};

/// An event that threads and processes wait on (pool_event_t). Move-only; freed by its creator.
class Event {
public:
    /// Creates the event, clear (pool_event_create); throws pool::Error on failure.
    Event() : e_(pool_event_create()), owner_(static_cast<long>(::getpid())) {
        if (e_ == nullptr) detail::raise_null(POOL_ESYS, "pool_event_create");
    }
    Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)), owner_(o.owner_) {}
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event() {
        if (e_ != nullptr && owner_ == static_cast<long>(::getpid())) pool_event_free(e_);
    }
    /// Sets it: every waiter wakes (and returns true, even if it is cleared before it runs).
    void set() { detail::check(pool_event_set(e_), "pool_event_set"); }
    /// Clears it.
    void clear() { detail::check(pool_event_clear(e_), "pool_event_clear"); }
    /// Whether it is set.
    bool is_set() const noexcept { return pool_event_is_set(e_); }
    /// Waits up to `timeout` seconds; true once set.
    bool wait(double timeout = -1) {
        int s = pool_event_wait(e_, timeout);
        if (s == POOL_ETIMEDOUT) return false;
        detail::check(s, "pool_event_wait");
        return true;
    }
    /// The C handle, owned by this object.
    pool_event_t* native_handle() const noexcept { return e_; }

private:
    pool_event_t* e_;
    long owner_;
};

/// A child process running a callable (Python's multiprocessing.Process). The target is run
/// in a fork made by start(), so it may be any callable, with captures; it returns an int (the
/// exit status, 0-255) or void (0). An exception escaping it is printed and exits with 1.
/// Move-only; destroying it kills and reaps a child still running.
class Process {
public:
    Process() = default;
    /// Process(f, args...) runs f(args...) in the child; args are copied now.
    template <class F, class... Args,
              class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Process> &&
                                       std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>>>
    explicit Process(F&& target, Args&&... args)
        : target_(std::make_unique<std::function<int()>>(
              [f = std::forward<F>(target), tup = std::make_tuple(std::forward<Args>(args)...)]() mutable -> int {
                  if constexpr (std::is_void_v<decltype(std::apply(f, tup))>) {
                      std::apply(f, tup);
                      return 0;
                  } else {
                      return static_cast<int>(std::apply(f, tup));
                  }
              })) {
        p_ = pool_process_create(&Process::run, target_.get());
        if (p_ == nullptr) detail::raise_null(POOL_EINVAL, "pool_process_create");
    }
    Process(Process&& other) noexcept
        : target_(std::move(other.target_)), p_(std::exchange(other.p_, nullptr)) {}
    Process& operator=(Process&& other) noexcept {
        if (this != &other) {
            pool_process_free(p_);
            p_ = std::exchange(other.p_, nullptr);
            target_ = std::move(other.target_);
        }
        return *this;
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() { pool_process_free(p_); }

    /// Forks the child (once).
    void start() { detail::check(pool_process_start(get()), "pool_process_start"); }
    /// Waits up to `timeout` seconds (negative: no limit); true once the child has exited.
    bool join(double timeout = -1) {
        int s = pool_process_join(get(), timeout);
        if (s == POOL_ETIMEDOUT) return false;
        detail::check(s, "pool_process_join");
        return true;
    }
    /// True while the child runs.
    bool is_alive() const noexcept { return pool_process_is_alive(p_); }
    /// Sends SIGTERM (no-op once it has exited).
    void terminate() { detail::check(pool_process_terminate(get()), "pool_process_terminate"); }
    /// Sends SIGKILL (no-op once it has exited).
    void kill() { detail::check(pool_process_kill(get()), "pool_process_kill"); }
    /// The exit status, or -N if killed by signal N; empty while running or before start().
    std::optional<int> exitcode() const {
        int code = 0;
        int s = pool_process_exitcode(get(), &code);
        if (s == POOL_OK) return code;
        if (s == POOL_ETIMEDOUT || s == POOL_EINVAL) return std::nullopt;
        detail::raise(s, "pool_process_exitcode");
    }
    /// The child's pid, or -1 before start().
    int pid() const noexcept { return pool_process_pid(p_); }

    /// The C handle, owned by this object.
    pool_process_t* native_handle() const noexcept { return p_; }

private:
    static int run(void* arg) noexcept {
        try {
            return (*static_cast<std::function<int()>*>(arg))();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "pool::Process: uncaught exception: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "pool::Process: uncaught exception\n");
        }
        return 1;
    }
    pool_process_t* get() const {
        if (p_ == nullptr) throw Error(POOL_EINVAL, "pool::Process: no process (default-constructed or moved from)");
        return p_;
    }

    std::unique_ptr<std::function<int()>> target_;
    pool_process_t* p_ = nullptr;
};

}  // namespace pool

#endif /* POOL_HPP */
