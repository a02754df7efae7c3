// expect: the task's result cannot cross a process boundary
// A pointer into a worker's memory means nothing in the parent.
#include <pool.hpp>

static long cell;

int main() {
    pool::Pool p(1);
    return p.apply([](const long& x) { cell = x; return &cell; }, 1L) != nullptr;
}
