// expect: pass a function, a function pointer or a capture-less lambda
// A closure made after the pool was created does not exist in its worker processes.
#include <pool.hpp>

int main() {
    pool::Pool p(1);
    long k = 3;
    return static_cast<int>(p.map([k](const long& x) { return x * k; }, std::vector<long>{1, 2}).size());
}
