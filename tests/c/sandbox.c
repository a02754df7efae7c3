/* POOL_SANDBOX_COMPUTE: hostile tasks in a sandboxed pool, each beside innocent tasks whose
 * results are checked byte for byte. Files outside the listed paths fail with EACCES (inside
 * them, reads and writes work), as does socket(); connect, execve, fork, ptrace, process_vm_writev,
 * a kill of the host or the zygote kills the worker, and that item alone fails with
 * POOL_ECRASHED naming the call; threads work; the initializer reads what it likes before the
 * sandbox; the host, the zygote and every other result survive. Then the refusals at create:
 * a bad level, paths without a sandbox, a missing path, threads left by the initializer. */
#include "check.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <grp.h>
#include <pthread.h>
#include <sys/ptrace.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

enum op {
    OP_OPEN_PASSWD,
    OP_CREATE_TMP,
    OP_READ_LISTED,
    OP_WRITE_LISTED,
    OP_WRITE_IN_READ_ONLY,
    OP_PROC_MAPS,
    OP_THREAD,
    OP_INIT_DATA,
    OP_SOCKET_INET,
    OP_SOCKET_UNIX,
    OP_CONNECT,
    OP_EXECVE,
    OP_FORK,
    OP_SYSTEM,
    OP_PTRACE_HOST,
    OP_VM_WRITE_HOST,
    OP_KILL_HOST,
    OP_KILL_ZYGOTE,
    OP_SIGSYS_HANDLER,
    OP_INHERITED_FD,
    OP_PRLIMIT_HOST,
    OP_SETOWN_SIGIO,
    OP_SETPGID_HOST,
    OP_CHMOD_OUTSIDE,
    OP_TIOCSTI,
    OP_AFFINITY_HOST,
    OP_NICE_HOST,
    OP_NICE_USER,
    OP_SOCKETPAIR,
    OP_SIGSYS_SELF,
    OP_SIGQUEUE_SIGSYS,
    OP_BLOCKED_SIGSYS,
    OP_READ_STDIN,
    OP_SWAP_LISTED,
    OP_READ_SWAPPED,
    OP_SETHOSTNAME,
    OP_CLONE_NEWNET,
    OP_PROBE_HOST,
    OP_I386_ABI,
    OP_X32_ABI,
};

struct req {
    int op;
    pid_t host;
    char dir_r[256]; /* a listed read-only directory */
    char dir_w[256]; /* a listed writable directory */
    uintptr_t host_addr;
    int fd; /* a descriptor the host had open at pool_create */
    char path[400]; /* a path some ops act on */
};

static char init_data[64]; /* what the initializer read before the sandbox */
static volatile long host_word = 42;

static void read_hostname(void *arg) {
    (void)arg;
    int fd = open("/etc/hostname", O_RDONLY);
    if (fd < 0) fd = open("/proc/version", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, init_data, sizeof init_data - 1) : -1;
    if (n <= 0) strcpy(init_data, "unreadable");
    if (fd >= 0) close(fd);
}

static void *thread_body(void *arg) {
    *(long *)arg = 1234;
    return NULL;
}

static void on_sys(int sig) {
    (void)sig;
}

/* out: errno of the attempt (0 on success), or a value the op computes. */
static int hostile(const void *in, void *out, void *ctx) {
    (void)ctx;
    const struct req *r = in;
    long *res = out;
    char path[512];
    int fd;
    switch (r->op) {
    case OP_OPEN_PASSWD:
        fd = open("/etc/passwd", O_RDONLY);
        *res = fd >= 0 ? 0 : errno;
        if (fd >= 0) close(fd);
        break;
    case OP_CREATE_TMP:
        snprintf(path, sizeof path, "/tmp/pool-sandbox-escape-%d", (int)getpid());
        fd = open(path, O_WRONLY | O_CREAT, 0600);
        *res = fd >= 0 ? 0 : errno;
        if (fd >= 0) close(fd), unlink(path);
        break;
    case OP_READ_LISTED: {
        snprintf(path, sizeof path, "%s/data", r->dir_r);
        fd = open(path, O_RDONLY);
        char b[16] = {0};
        *res = fd >= 0 && read(fd, b, sizeof b - 1) > 0 ? strtol(b, NULL, 10) : -errno;
        if (fd >= 0) close(fd);
        break;
    }
    case OP_WRITE_LISTED:
        snprintf(path, sizeof path, "%s/out-%d", r->dir_w, (int)getpid());
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        *res = fd >= 0 && write(fd, "written", 7) == 7 ? 0 : errno;
        if (fd >= 0) close(fd);
        break;
    case OP_WRITE_IN_READ_ONLY:
        snprintf(path, sizeof path, "%s/new", r->dir_r);
        fd = open(path, O_WRONLY | O_CREAT, 0600);
        *res = fd >= 0 ? 0 : errno;
        if (fd >= 0) close(fd);
        break;
    case OP_PROC_MAPS:
        fd = open("/proc/self/maps", O_RDONLY);
        *res = fd >= 0 ? 0 : errno;
        if (fd >= 0) close(fd);
        break;
    case OP_THREAD: {
        pthread_t t;
        long v = 0;
        *res = pthread_create(&t, NULL, thread_body, &v) == 0 && pthread_join(t, NULL) == 0 ? v : -1;
        break;
    }
    case OP_INIT_DATA:
        *res = (long)strlen(init_data);
        break;
    case OP_SOCKET_INET:
        *res = socket(AF_INET, SOCK_STREAM, 0) < 0 ? errno : 0;
        break;
    case OP_SOCKET_UNIX:
        *res = socket(AF_UNIX, SOCK_STREAM, 0) < 0 ? errno : 0;
        break;
    case OP_CONNECT: {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
        *res = connect(3, (struct sockaddr *)&a, sizeof a);
        break;
    }
    case OP_EXECVE: {
        char *argv[] = {"/bin/sh", "-c", "true", NULL};
        execve("/bin/sh", argv, NULL);
        *res = errno;
        break;
    }
    case OP_FORK: {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) waitpid(p, NULL, 0);
        *res = p;
        break;
    }
    case OP_SYSTEM: /* glibc blocks every signal around the clone it starts the shell with */
        *res = system("true");
        break;
    case OP_PTRACE_HOST:
        *res = ptrace(PTRACE_ATTACH, r->host, NULL, NULL);
        break;
    case OP_VM_WRITE_HOST: {
        long v = 666;
        struct iovec local = {&v, sizeof v}, remote = {(void *)r->host_addr, sizeof v};
        *res = (long)process_vm_writev(r->host, &local, 1, &remote, 1, 0);
        break;
    }
    case OP_KILL_HOST:
        *res = kill(r->host, SIGKILL);
        break;
    case OP_KILL_ZYGOTE:
        *res = kill(getppid(), SIGKILL);
        break;
    case OP_INHERITED_FD:
        *res = fcntl(r->fd, F_GETFD) == -1 ? errno : 0;
        break;
    case OP_PRLIMIT_HOST: {
        struct rlimit none = {0, 0};
        *res = prlimit(r->host, RLIMIT_CPU, &none, NULL);
        break;
    }
    case OP_SETOWN_SIGIO: {
        int p[2];
        *res = pipe(p) == 0 ? fcntl(p[0], F_SETOWN, r->host) : errno;
        break;
    }
    case OP_SETPGID_HOST:
        *res = setpgid(0, getpgid(r->host));
        break;
    case OP_CHMOD_OUTSIDE:
        *res = chmod(r->path, 0777) == 0 ? 0 : errno;
        break;
    case OP_TIOCSTI: {
        char c = 'x';
        *res = ioctl(0, TIOCSTI, &c);
        break;
    }
    case OP_AFFINITY_HOST: {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        *res = sched_setaffinity(r->host, sizeof set, &set) == 0 ? 0 : errno;
        break;
    }
    case OP_NICE_HOST:
        *res = setpriority(PRIO_PROCESS, (id_t)r->host, 19) == 0 ? 0 : errno;
        break;
    case OP_NICE_USER:
        *res = setpriority(PRIO_USER, getuid(), 19) == 0 ? 0 : errno;
        break;
    case OP_SOCKETPAIR: {
        int sv[2];
        *res = socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
        break;
    }
    case OP_SIGSYS_SELF: /* a SIGSYS the task sends itself is no refusal: it goes on */
        *res = kill(getpid(), SIGSYS);
        break;
    case OP_SIGQUEUE_SIGSYS: { /* forging the seccomp report is refused */
        union sigval v = {0};
        *res = sigqueue(getpid(), SIGSYS, v);
        break;
    }
    case OP_BLOCKED_SIGSYS: {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGSYS);
        sigprocmask(SIG_BLOCK, &set, NULL);
        *res = ptrace(PTRACE_ATTACH, r->host, NULL, NULL);
        break;
    }
    case OP_READ_STDIN: {
        char b[16];
        *res = read(0, b, sizeof b);
        break;
    }
    case OP_SWAP_LISTED: { /* the listed read directory becomes a link to / for the next worker */
        char old[600];
        snprintf(old, sizeof old, "%s.moved", r->path);
        if (rename(r->path, old) != 0 || symlink("/", r->path) != 0) {
            *res = errno;
            break;
        }
        abort();
    }
    case OP_READ_SWAPPED:
        snprintf(path, sizeof path, "%s/etc/passwd", r->path);
        fd = open(path, O_RDONLY);
        *res = fd >= 0 ? 0 : errno;
        if (fd >= 0) close(fd);
        break;
    case OP_SETHOSTNAME:
        *res = sethostname("pwned", 5) == 0 ? 0 : errno;
        break;
    case OP_CLONE_NEWNET:
        *res = syscall(SYS_clone, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | CLONE_NEWNET, NULL, NULL, NULL, 0);
        break;
    case OP_PROBE_HOST: /* signal 0: does it exist? (the queues' recovery asks it) */
        *res = kill(r->host, 0) == 0 ? 0 : errno;
        break;
#if defined(__x86_64__)
    case OP_I386_ABI: { /* the 32-bit system call ABI: another filter's arch, killed at once */
        long ret = 20; /* i386 getpid */
        __asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
        *res = ret;
        break;
    }
    case OP_X32_ABI: /* x32 numbers */
        *res = syscall(0x40000000 | SYS_getpid);
        break;
#endif
    case OP_SIGSYS_HANDLER:
        *res = signal(SIGSYS, on_sys) == SIG_ERR;
        break;
    }
    return 0;
}

/* Tries a queue from a sandboxed task (the handle comes in ctx, copied): refused, the reason as
 * the task's message. */
static int puts_to_queue(const void *in, void *out, void *ctx) {
    (void)out;
    pool_queue_t *q = *(pool_queue_t *const *)ctx;
    int st = pool_queue_put(q, in, sizeof(long), 10);
    if (st != POOL_OK) pool_task_error(pool_last_error());
    return st;
}

static int triple(const void *in, void *out, void *ctx) {
    (void)ctx;
    *(long *)out = 3 * *(const long *)in;
    return 0;
}

/* Whether the kernel (as this process sees it) offers Landlock. */
static int has_landlock(void) {
    return syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */) >= 1;
}

static char dir_r[256], dir_w[256];
static int host_fd = -1;
static int host_nice; /* the host's nice value at the start (a test may run niced) */

/* A sandboxed pool that reads `read_dir` and writes dir_w. */
static pool_t *sandboxed_reading(int workers, void (*init)(void *), const char *read_dir) {
    const char *reads[] = {read_dir, NULL};
    const char *writes[] = {dir_w, NULL};
    pool_options_t o;
    pool_options_init(&o);
    o.sandbox = POOL_SANDBOX_COMPUTE;
    o.sandbox_read_paths = reads;
    o.sandbox_write_paths = writes;
    o.initializer = init;
    return pool_create(workers, &o);
}

static pool_t *sandboxed(int workers, void (*init)(void *)) {
    return sandboxed_reading(workers, init, dir_r);
}

static struct req request(int op) {
    struct req r;
    memset(&r, 0, sizeof r);
    r.op = op;
    r.host = getpid();
    snprintf(r.dir_r, sizeof r.dir_r, "%s", dir_r);
    snprintf(r.dir_w, sizeof r.dir_w, "%s", dir_w);
    r.host_addr = (uintptr_t)&host_word;
    r.fd = host_fd;
    return r;
}

/* Innocent applies in flight from another thread while the hostile ones run. */
static pool_t *shared_pool;
static atomic_int innocent_stop, innocent_bad, innocent_done;

static void *innocent(void *arg) {
    (void)arg;
    for (long i = 0; !atomic_load(&innocent_stop); i++) {
        long in[64], out[64];
        for (int k = 0; k < 64; k++) in[k] = i * 64 + k, out[k] = -1;
        int st = pool_map(shared_pool, triple, in, sizeof(long), out, sizeof(long), 64, NULL);
        for (int k = 0; k < 64; k++) atomic_fetch_add(&innocent_bad, st != POOL_OK || out[k] != 3 * in[k]);
        atomic_fetch_add(&innocent_done, 1);
    }
    return NULL;
}

static void expect_errno(pool_t *p, int op, long want, const char *what) {
    struct req r = request(op);
    long res = -99;
    int st = pool_apply(p, hostile, &r, sizeof r, &res, sizeof res, NULL);
    if (st != POOL_OK || res != want)
        fprintf(stderr, "  %s: status %s, result %ld (want %ld)\n", what, pool_strerror(st), res, want);
    CHECK_ST(st, POOL_OK);
    CHECK_EQ(res, want);
}

static void expect_refused(pool_t *p, int op, const char *call) {
    struct req r = request(op);
    long res = -99;
    int st = pool_apply(p, hostile, &r, sizeof r, &res, sizeof res, NULL);
    fprintf(stderr, "  %s: %s: %s\n", call, pool_strerror(st), pool_last_error());
    CHECK_ST(st, POOL_ECRASHED);
    CHECK_ERR_HAS("the sandbox refused");
    CHECK_ERR_HAS(call);
}

static void test_hostile(void) {
    SECTION("hostile tasks beside innocent ones");
    /* Open in the host, at a number no task reuses: gone in sandboxed workers. */
    int fd = open("/etc/passwd", O_RDONLY);
    REQUIRE(fd >= 0);
    host_fd = dup2(fd, 200);
    close(fd);
    REQUIRE(host_fd == 200);
    shared_pool = sandboxed(2, read_hostname);
    REQUIRE(shared_pool != NULL);
    const char *report = pool_sandbox_report(shared_pool);
    CHECK(report != NULL && strstr(report, "Landlock ABI") && strstr(report, "seccomp"));
    if (report) fprintf(stderr, "  %s\n", report);
    pthread_t t;
    pthread_create(&t, NULL, innocent, NULL);

    expect_errno(shared_pool, OP_OPEN_PASSWD, EACCES, "open /etc/passwd");
    expect_errno(shared_pool, OP_CREATE_TMP, EACCES, "create under /tmp");
    expect_errno(shared_pool, OP_READ_LISTED, 4711, "read in a listed directory");
    expect_errno(shared_pool, OP_WRITE_LISTED, 0, "write in a listed directory");
    expect_errno(shared_pool, OP_WRITE_IN_READ_ONLY, EACCES, "create in a read-only directory");
    expect_errno(shared_pool, OP_PROC_MAPS, EACCES, "open /proc/self/maps");
    expect_errno(shared_pool, OP_THREAD, 1234, "a thread");
    expect_errno(shared_pool, OP_INHERITED_FD, EBADF, "a descriptor the host had open");
    struct req r = request(OP_INIT_DATA);
    long len = 0;
    CHECK_ST(pool_apply(shared_pool, hostile, &r, sizeof r, &len, sizeof len, NULL), POOL_OK);
    CHECK(len > 0); /* the initializer read a file outside the listed paths */

    expect_errno(shared_pool, OP_SOCKET_INET, EACCES, "socket(AF_INET)");
    expect_errno(shared_pool, OP_SOCKET_UNIX, EACCES, "socket(AF_UNIX)");
    expect_refused(shared_pool, OP_CONNECT, "connect()");
    expect_refused(shared_pool, OP_EXECVE, "execve()");
    expect_refused(shared_pool, OP_FORK, "clone");
    expect_refused(shared_pool, OP_SYSTEM, "such as system() or posix_spawn()");
    expect_refused(shared_pool, OP_PTRACE_HOST, "ptrace()");
    expect_refused(shared_pool, OP_VM_WRITE_HOST, "process_vm_writev()");
    expect_refused(shared_pool, OP_KILL_HOST, "kill");
    expect_refused(shared_pool, OP_KILL_ZYGOTE, "kill");
    expect_refused(shared_pool, OP_SIGSYS_HANDLER, "rt_sigaction");
    expect_refused(shared_pool, OP_PRLIMIT_HOST, "prlimit64()");
    expect_refused(shared_pool, OP_SETOWN_SIGIO, "fcntl()");
    expect_refused(shared_pool, OP_SETPGID_HOST, "setpgid()");
    expect_refused(shared_pool, OP_TIOCSTI, "ioctl()");
    expect_refused(shared_pool, OP_SOCKETPAIR, "socketpair()");
    expect_refused(shared_pool, OP_SIGQUEUE_SIGSYS, "rt_sigqueueinfo()");
    expect_refused(shared_pool, OP_BLOCKED_SIGSYS, "which one is unknown");
    expect_refused(shared_pool, OP_CLONE_NEWNET, "clone()");
#if defined(__x86_64__)
    expect_refused(shared_pool, OP_I386_ABI, "which one is unknown");
    expect_refused(shared_pool, OP_X32_ABI, "which one is unknown");
#endif
    expect_errno(shared_pool, OP_AFFINITY_HOST, EPERM, "sched_setaffinity of the host");
    expect_errno(shared_pool, OP_NICE_HOST, EPERM, "setpriority of the host");
    expect_errno(shared_pool, OP_NICE_USER, EPERM, "setpriority of the user's processes");
    expect_errno(shared_pool, OP_SIGSYS_SELF, 0, "a SIGSYS it sends itself");
    expect_errno(shared_pool, OP_PROBE_HOST, 0, "kill(host, 0): whether it exists");
    expect_errno(shared_pool, OP_READ_STDIN, 0, "read stdin (/dev/null)");
    expect_errno(shared_pool, OP_SETHOSTNAME, EPERM, "sethostname (no capabilities)");
    {
        /* Metadata outside the listed paths: EPERM, and the file keeps its mode. */
        char outside[300];
        snprintf(outside, sizeof outside, "%s.outside", dir_r);
        FILE *o = fopen(outside, "w");
        REQUIRE(o != NULL);
        fclose(o);
        chmod(outside, 0600);
        struct req q = request(OP_CHMOD_OUTSIDE);
        snprintf(q.path, sizeof q.path, "%s", outside);
        long res = -1;
        CHECK_ST(pool_apply(shared_pool, hostile, &q, sizeof q, &res, sizeof res, NULL), POOL_OK);
        CHECK_EQ(res, EPERM);
        struct stat st;
        CHECK(stat(outside, &st) == 0 && (st.st_mode & 0777) == 0600);
        unlink(outside);
    }
    CHECK_EQ(host_word, 42);
    CHECK_EQ(getpriority(PRIO_PROCESS, 0), host_nice); /* the host's priority is untouched */

    /* Queues, locks and events are not for sandboxed tasks: their memory holds what the host
     * trusts (a robust mutex's list pointers, which glibc follows in the host). The task gets
     * POOL_EINVAL saying so; the host's queue is untouched. */
    {
        pool_queue_t *q = pool_queue_create(4096);
        REQUIRE(q != NULL);
        pool_call_options_t co;
        pool_call_options_init(&co);
        co.ctx_size = sizeof q;
        long x = 4711, got = 0;
        size_t len = 0;
        CHECK_ST(pool_apply_ex(shared_pool, puts_to_queue, &x, sizeof x, NULL, 0, &q, &co), POOL_ETASK);
        CHECK_ERR_HAS("cannot be used by the tasks of a sandboxed pool");
        CHECK_ST(pool_queue_put(q, &x, sizeof x, 10), POOL_OK);
        CHECK_ST(pool_queue_get(q, &got, sizeof got, &len, guard_s(60)), POOL_OK);
        CHECK_EQ(got, 4711);
        pool_queue_free(q);
    }

    /* Innocent work went on throughout, every result right. */
    int done = atomic_load(&innocent_done);
    WAIT_UNTIL(atomic_load(&innocent_done) >= done + 2, 120);
    atomic_store(&innocent_stop, 1);
    pthread_join(t, NULL);
    CHECK_EQ(atomic_load(&innocent_bad), 0);

    /* The file written in the listed directory is there, with its bytes. */
    DIR *d = opendir(dir_w);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "out-", 4) != 0) continue;
        char path[600], b[16] = {0};
        snprintf(path, sizeof path, "%s/%s", dir_w, e->d_name);
        int fd = open(path, O_RDONLY);
        found += fd >= 0 && read(fd, b, sizeof b) == 7 && memcmp(b, "written", 7) == 0;
        if (fd >= 0) close(fd);
        unlink(path);
    }
    if (d) closedir(d);
    CHECK_EQ(found, 1);

    /* The pool goes on after every refusal (workers replaced). */
    long in = 14, out = 0;
    CHECK_ST(pool_apply(shared_pool, triple, &in, sizeof in, &out, sizeof out, NULL), POOL_OK);
    CHECK_EQ(out, 42);
    pool_destroy(shared_pool);
    close(host_fd);
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static void leaves_a_thread(void *arg) {
    (void)arg;
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
}

/* Run as root, the test also proves the sandbox needs no privilege: a child drops to nobody
 * and runs a sandboxed pool there. */
static void test_unprivileged(void) {
    if (getuid() != 0) return; /* the whole test already ran unprivileged */
    SECTION("an unprivileged process gets the same sandbox");
    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
        const char *reads[] = {"/usr", NULL};
        pool_options_t o;
        pool_options_init(&o);
        o.sandbox = POOL_SANDBOX_COMPUTE;
        o.sandbox_read_paths = reads;
        pool_t *p = pool_create(1, &o);
        if (!p) {
            fprintf(stderr, "  unprivileged pool_create: %s\n", pool_last_error());
            _exit(3);
        }
        struct req r = request(OP_OPEN_PASSWD);
        long res = -1, in = 5, out = 0;
        int ok = pool_apply(p, hostile, &r, sizeof r, &res, sizeof res, NULL) == POOL_OK && res == EACCES;
        ok = ok && pool_apply(p, triple, &in, sizeof in, &out, sizeof out, NULL) == POOL_OK && out == 15;
        r = request(OP_PTRACE_HOST);
        ok = ok && pool_apply(p, hostile, &r, sizeof r, &res, sizeof res, NULL) == POOL_ECRASHED;
        pool_destroy(p);
        _exit(ok ? 0 : 4);
    }
    int ws = 0;
    waitpid(c, &ws, 0);
    CHECK(WIFEXITED(ws));
    CHECK_EQ(WEXITSTATUS(ws), 0);
}

/* A task replaces a listed directory by a link to / and crashes: the workers after it keep
 * the paths as they were at pool_create. */
static void test_listed_path_swapped(void) {
    SECTION("a listed path swapped by a task changes nothing for later workers");
    char models[300];
    snprintf(models, sizeof models, "%s/models", dir_w);
    REQUIRE(mkdir(models, 0700) == 0);
    pool_t *p = sandboxed_reading(1, NULL, models);
    REQUIRE(p != NULL);
    struct req q = request(OP_SWAP_LISTED);
    snprintf(q.path, sizeof q.path, "%s", models);
    long res = -1;
    CHECK_ST(pool_apply(p, hostile, &q, sizeof q, &res, sizeof res, NULL), POOL_ECRASHED);
    q.op = OP_READ_SWAPPED;
    CHECK_ST(pool_apply(p, hostile, &q, sizeof q, &res, sizeof res, NULL), POOL_OK);
    CHECK_EQ(res, EACCES);
    pool_destroy(p);
    char moved[320];
    snprintf(moved, sizeof moved, "%s.moved", models);
    unlink(models);
    rmdir(moved);
    rmdir(models);
}

static void leaves_a_process(void *arg) {
    (void)arg;
    if (fork() == 0) {
        pause();
        _exit(0);
    }
}

static void test_refusals_at_create(void) {
    SECTION("what the sandbox cannot give fails pool_create");
    pool_options_t o;
    pool_options_init(&o);
    o.sandbox = 7;
    CHECK(pool_create(1, &o) == NULL);
    CHECK_ST(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("POOL_SANDBOX_COMPUTE");

    const char *reads[] = {"/nonexistent/pool-sandbox", NULL};
    pool_options_init(&o);
    o.sandbox_read_paths = reads;
    CHECK(pool_create(1, &o) == NULL);
    CHECK_ST(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("POOL_SANDBOX_NONE");

    o.sandbox = POOL_SANDBOX_COMPUTE;
    CHECK(pool_create(1, &o) == NULL);
    CHECK_ST(pool_last_status(), POOL_EINVAL); /* a typo is the caller's, not the system's */
    CHECK_ERR_HAS("sandbox_read_paths[0] \"/nonexistent/pool-sandbox\": No such file or directory");

    pool_t *p = sandboxed(1, leaves_a_thread);
    CHECK(p == NULL);
    CHECK_ST(pool_last_status(), POOL_ESYS);
    CHECK_ERR_HAS("threads");
    pool_destroy(p);

    p = sandboxed(1, leaves_a_process);
    CHECK(p == NULL);
    CHECK_ST(pool_last_status(), POOL_ESYS);
    CHECK_ERR_HAS("left a process");
    pool_destroy(p);

    /* No sandbox: no report. */
    p = pool_create(1, NULL);
    REQUIRE(p != NULL);
    CHECK(pool_sandbox_report(p) == NULL);
    pool_destroy(p);
}

int main(void) {
    test_begin("sandbox", 300);
    errno = 0;
    host_nice = getpriority(PRIO_PROCESS, 0);
    char tmpl_r[] = "/tmp/pool-sandbox-r-XXXXXX", tmpl_w[] = "/tmp/pool-sandbox-w-XXXXXX";
    REQUIRE(mkdtemp(tmpl_r) && mkdtemp(tmpl_w));
    snprintf(dir_r, sizeof dir_r, "%s", tmpl_r);
    snprintf(dir_w, sizeof dir_w, "%s", tmpl_w);
    char path[300];
    snprintf(path, sizeof path, "%s/data", dir_r);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("4711", f);
    fclose(f);

    if (!has_landlock()) {
        /* No Landlock here (an old kernel, one booted without it, or valgrind, which does not
         * know its system calls): the sandbox must refuse to start rather than run weaker. */
        SECTION("no Landlock on this system: no sandboxed pool");
        fprintf(stderr, "  note: this system has no Landlock; only the refusal is tested\n");
        pool_t *p = sandboxed(1, NULL);
        CHECK(p == NULL);
        CHECK_ST(pool_last_status(), POOL_ESYS);
        CHECK_ERR_HAS("Landlock");
        pool_destroy(p);
    } else {
        test_hostile();
        test_listed_path_swapped();
        test_unprivileged();
        test_refusals_at_create();
    }

    unlink(path);
    rmdir(dir_r);
    rmdir(dir_w);
    return test_finish();
}
