// expect: pass a function, a function pointer or a lambda whose captures are trivially copyable
// parallel_for copies the loop body to the workers: a std::vector captured by value owns heap
// memory they do not share.
#include <pool.hpp>

int main() {
    pool::Pool p(1);
    std::vector<long> v(10);
    p.parallel_for(0, 10, [v](std::size_t b, std::size_t e) { (void)v[b]; (void)e; });
    return 0;
}
