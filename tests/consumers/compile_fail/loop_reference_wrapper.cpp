// expect: pool: the loop body is a std::reference_wrapper (std::ref)
// std::ref(body) would have the workers call the caller's object through a pointer, as that
// object was when the pool was created. (A lambda's own reference captures, [&total], cannot be
// seen by a trait: those are refused when the call is made.)
#include <functional>
#include <pool.hpp>

int main() {
    pool::Pool p(1);
    long total = 0;
    auto body = [&total](std::size_t b, std::size_t e) { total += static_cast<long>(e - b); };
    p.parallel_for(0, 10, std::ref(body));
    return static_cast<int>(total);
}
