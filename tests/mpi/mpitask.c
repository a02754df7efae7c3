/* Task functions in a shared library the test program links (mpitask.so), and, built a second
 * time as plugin.so, in a plugin it dlopens before pool_create_mpi. */
#include <stdint.h>

int triple(const void *in, void *out, void *ctx) {
    (void)ctx;
    *(int64_t *)out = 3 * *(const int64_t *)in;
    return 0;
}
