// expect: the item type cannot cross a process boundary
// A std::string owns heap memory: it cannot be copied to another process byte by byte.
#include <pool.hpp>

std::size_t length(const std::string& s) { return s.size(); }

int main() {
    pool::Pool p(1);
    return static_cast<int>(p.map(length, std::vector<std::string>{"a", "bc"}).size());
}
