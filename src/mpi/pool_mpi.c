/* libpool_mpi: pool.h's pool_transport_t on MPI. Only this file includes mpi.h: the Rust core
 * never declares MPI's types, which differ between Open MPI and MPICH. Sends are non-blocking
 * on a private copy, so two ranks sending large messages to each other never wait on each
 * other (a blocking MPI_Send may wait until the receiver posts its receive). */
#include "pool_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pending {
    MPI_Request req;
    void *buf;
};

typedef struct {
    MPI_Comm comm;
    struct pending *sends; /* in flight */
    int nsends, cap;
} mpi_link;

/* Frees the buffers of sends that have completed. */
static int reap_sends(mpi_link *m) {
    int k = 0;
    for (int i = 0; i < m->nsends; i++) {
        int done = 0;
        if (MPI_Test(&m->sends[i].req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return -1;
        if (done) {
            free(m->sends[i].buf);
        } else {
            m->sends[k++] = m->sends[i];
        }
    }
    m->nsends = k;
    return 0;
}

static int link_send(void *ctx, int dest, int tag, const void *buf, size_t len) {
    mpi_link *m = ctx;
    if (reap_sends(m) != 0) return -1;
    if (m->nsends == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        struct pending *p = realloc(m->sends, (size_t)cap * sizeof *p);
        if (!p) return -1;
        m->sends = p;
        m->cap = cap;
    }
    void *copy = malloc(len ? len : 1);
    if (!copy) return -1;
    memcpy(copy, buf, len);
    struct pending *p = &m->sends[m->nsends];
    if (MPI_Isend(copy, (int)len, MPI_BYTE, dest, tag, m->comm, &p->req) != MPI_SUCCESS) {
        free(copy);
        return -1;
    }
    p->buf = copy;
    m->nsends++;
    return 0;
}

static int link_probe(void *ctx, int *source, int *tag, size_t *len) {
    mpi_link *m = ctx;
    if (m->nsends && reap_sends(m) != 0) return -1;
    int flag = 0, count = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, m->comm, &flag, &st) != MPI_SUCCESS) return -1;
    if (!flag) return 0;
    if (MPI_Get_count(&st, MPI_BYTE, &count) != MPI_SUCCESS || count < 0) return -1;
    *source = st.MPI_SOURCE;
    *tag = st.MPI_TAG;
    *len = (size_t)count;
    return 1;
}

static int link_recv(void *ctx, int source, int tag, void *buf, size_t len) {
    mpi_link *m = ctx;
    return MPI_Recv(buf, (int)len, MPI_BYTE, source, tag, m->comm, MPI_STATUS_IGNORE) == MPI_SUCCESS ? 0 : -1;
}

static void link_release(void *ctx) {
    mpi_link *m = ctx;
    for (int i = 0; i < m->nsends; i++) {
        MPI_Wait(&m->sends[i].req, MPI_STATUS_IGNORE);
        free(m->sends[i].buf);
    }
    free(m->sends);
    MPI_Comm_free(&m->comm);
    free(m);
}

pool_t *pool_create_mpi(MPI_Comm comm, int root, int workers_per_rank, const pool_options_t *opts) {
    pool_transport_t t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    char why[256] = "";
    int inited = 0, finalized = 0, size = 0, rank = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized) {
        t.error = "pool_create_mpi: call it between MPI_Init_thread and MPI_Finalize";
        return pool_create_distributed(&t, workers_per_rank, opts);
    }
    if (comm == MPI_COMM_NULL) {
        t.error = "pool_create_mpi: comm is MPI_COMM_NULL";
        return pool_create_distributed(&t, workers_per_rank, opts);
    }
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    /* One collective settles what every rank must agree on: the thread level (the lowest),
     * and the root (the same everywhere). */
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    int mine[3] = {provided, root, -root}, all[3];
    MPI_Allreduce(mine, all, 3, MPI_INT, MPI_MIN, comm);
    int lowest = all[0];
    if (all[1] != -all[2]) {
        snprintf(why, sizeof why, "pool_create_mpi: the ranks disagree on the root (from %d to %d; this rank passed %d)",
                 all[1], -all[2], root);
        t.error = why;
        return pool_create_distributed(&t, workers_per_rank, opts);
    }
    if (root < 0 || root >= size) {
        snprintf(why, sizeof why, "pool_create_mpi: root %d is not a rank of comm (size %d)", root, size);
        t.error = why;
        return pool_create_distributed(&t, workers_per_rank, opts);
    }
    if (lowest < MPI_THREAD_MULTIPLE) {
        snprintf(why, sizeof why,
                 "pool_create_mpi needs MPI_THREAD_MULTIPLE on every rank (the root's pool talks to the other "
                 "ranks from a thread of its own): initialise MPI with MPI_Init_thread(&argc, &argv, "
                 "MPI_THREAD_MULTIPLE, &provided); a rank has level %d, this rank %d",
                 lowest, provided);
        t.error = why;
        return pool_create_distributed(&t, workers_per_rank, opts);
    }
    mpi_link *m = calloc(1, sizeof *m);
    if (!m || MPI_Comm_dup(comm, &m->comm) != MPI_SUCCESS) {
        free(m);
        t.error = "pool_create_mpi: out of memory, or MPI_Comm_dup failed";
        return pool_create_distributed(&t, workers_per_rank, opts);
    }
    t.ctx = m;
    t.rank = rank;
    t.size = size;
    t.root = root;
    t.send = link_send;
    t.probe = link_probe;
    t.recv = link_recv;
    t.release = link_release;
    return pool_create_distributed(&t, workers_per_rank, opts);
}
