// expect: the task's result cannot cross a process boundary
#include <pool.hpp>

std::string name(const int& i) { return std::to_string(i); }

int main() {
    pool::Pool p(1);
    return static_cast<int>(p.apply_async(name, 1).get().size());
}
