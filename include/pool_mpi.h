/*
 * libpool_mpi: one libpool pool over the ranks of an MPI job.
 *
 * The program stays one SPMD binary launched by mpirun. Every rank calls pool_create_mpi; the
 * root gets an ordinary pool_t (every function of pool.h works on it unchanged) whose work runs
 * on the workers of every rank, the root's own included. Each rank runs its tasks in worker
 * processes of its own, so a task that crashes, hangs past its timeout or is cancelled fails
 * that item alone, with the same status as on one machine, and the message names the rank and
 * its host. Link with -lpool_mpi -lpool (pkg-config pool-mpi, CMake Pool::pool_mpi).
 */
#ifndef POOL_MPI_H
#define POOL_MPI_H

#include <mpi.h>
#include <pool.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Creates one pool over every rank of `comm`, `workers_per_rank` worker processes on each (0:
 * one per CPU the rank may use). Collective over `comm`: every rank calls it, after
 * MPI_Init_thread with MPI_THREAD_MULTIPLE (the root's pool talks to the other ranks from a
 * thread of its own, beside the application's threads); with a lower level on any rank, every
 * rank fails with POOL_EINVAL and a message. The library works on a duplicate of `comm`, so
 * the application may go on using `comm`.
 *
 * On `root` it returns the pool. On every other rank it runs the tasks it is sent until the
 * root's pool is destroyed (pool_destroy), then returns NULL with
 * pool_last_status() == POOL_EDONE; any other status is a real failure (reported on every
 * rank: e.g. ranks that run different binaries, or a rank that could not start its workers).
 *
 * What crosses ranks: functions, as (GNU build-id of the object holding them, offset), so they
 * may be in the program, a library it links, or a plugin loaded on every rank before this call;
 * ctx as bytes when its size is given (ctx_size), or as a place in constant (read-only) data;
 * inputs and results as bytes, any size. A function or ctx that cannot cross (heap, stack, or
 * writable static data, which each rank has its own copy of) fails its items with POOL_EINVAL.
 * Each rank uses its own `opts` (initializer, shm_size, max_tasks_per_child, ...), but
 * per-item timeouts are the root's. Ranks that disagree on `root`, or a rank given bad
 * arguments, make every rank fail: none is left waiting.
 *
 * If a whole rank dies (SIGKILL, a lost node), MPI ends the job: mpirun returns non-zero within
 * seconds, never a hang.
 *
 * Ownership: the root owns the pool and releases it with pool_destroy (collectively ending the
 * other ranks' calls); call it before MPI_Finalize. Thread safety: call from one thread per
 * rank; the returned pool may be used from any thread of the root.
 */
pool_t *pool_create_mpi(MPI_Comm comm, int root, int workers_per_rank, const pool_options_t *opts);

#ifdef __cplusplus
}
#endif

#endif /* POOL_MPI_H */
