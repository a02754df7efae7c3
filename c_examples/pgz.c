/*
 * pgz: a parallel gzip on libpool's streaming API, in the manner of pigz.
 *
 *   pgz [-p N] [-b KiB] [-l LEVEL] [-S] < in > out.gz
 *
 * The input is cut into blocks. Each block is compressed by a worker as raw deflate (no zlib
 * header), primed with the 32 KiB of input that precede it as a dictionary, and ended with
 * Z_SYNC_FLUSH, which byte-aligns it without ending the deflate stream: the blocks, written one
 * after the other, form a single deflate stream. The host writes the gzip header, the blocks in
 * order, a final empty block, and the trailer whose CRC-32 it combines from the blocks' CRCs.
 * Only a bounded window of blocks is ever in memory, whatever the input's length. With -S the
 * workers run sandboxed (POOL_SANDBOX_COMPUTE): they only compute, with no file at all.
 */
#include <pool.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define DICT_MAX 32768u          /* deflate's window: back-references reach no further */
#define IN_HDR 4u                /* item header: the dictionary length (uint32, host order) */
#define OUT_HDR 8u               /* result header: the block's CRC-32 and length */

static void usage(void) {
    fprintf(stderr,
            "usage: pgz [-p N] [-b KiB] [-l LEVEL] [-S] < in > out.gz\n"
            "  -p N      worker processes (default: one per CPU)\n"
            "  -b KiB    block size in KiB, 1..1048576 (default 128)\n"
            "  -l LEVEL  compression level 0..9 (default 6)\n"
            "  -S        sandboxed workers: no files, network or processes (untrusted input)\n");
}

/* Strict decimal parse: the whole argument, within [lo, hi]. */
static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* ---- worker side ------------------------------------------------------------------------ */

typedef struct {
    int level;
} pgz_params_t;

/* One deflate state per worker process, made on its first block and reset for the next ones:
 * deflateInit2 allocates ~270 KiB, too much to redo for every block. Workers are separate
 * processes, so this global is private to each. */
static z_stream g_strm;
static int g_strm_ready;

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int deflate_fail(const char *what, int zret) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s: %s (zlib %d)", what, g_strm.msg ? g_strm.msg : zError(zret),
             zret);
    pool_task_error(msg);
    return 1;
}

/* Item: [dict_len][dictionary][block]. Result: [crc32(block)][block length][raw deflate]. */
static int compress_block(const void *in, size_t in_len, void *ctx) {
    const pgz_params_t *params = ctx;
    const unsigned char *p = in;
    if (in_len < IN_HDR) { pool_task_error("item shorter than its header"); return 1; }
    uint32_t dict_len;
    memcpy(&dict_len, p, sizeof dict_len);
    if (dict_len > DICT_MAX || dict_len > in_len - IN_HDR) {
        pool_task_error("bad dictionary length in item header");
        return 1;
    }
    const unsigned char *dict = p + IN_HDR;
    const unsigned char *block = dict + dict_len;
    size_t block_len = in_len - IN_HDR - dict_len;
    if (block_len > UINT32_MAX) { pool_task_error("block too long"); return 1; }

    int zret;
    if (!g_strm_ready) {
        /* windowBits -15: raw deflate, so the blocks can be concatenated into one stream. */
        zret = deflateInit2(&g_strm, params->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
        if (zret != Z_OK) return deflate_fail("deflateInit2", zret);
        g_strm_ready = 1;
    } else if ((zret = deflateReset(&g_strm)) != Z_OK) {
        return deflate_fail("deflateReset", zret);
    }
    if (dict_len > 0 && (zret = deflateSetDictionary(&g_strm, dict, dict_len)) != Z_OK)
        return deflate_fail("deflateSetDictionary", zret);

    unsigned char hdr[OUT_HDR];
    put_le32(hdr, (uint32_t)crc32(0L, block, (uInt)block_len));
    put_le32(hdr + 4, (uint32_t)block_len);
    if (pool_out_write(hdr, sizeof hdr) != POOL_OK) {
        pool_task_error("no room for the result header");
        return 1;
    }

    /* Deflate straight into the result: reserve whatever room is left, commit what was used.
     * Z_SYNC_FLUSH is done once deflate leaves output room unused (zlib's rule). */
    g_strm.next_in = (Bytef *)block;
    g_strm.avail_in = (uInt)block_len;
    do {
        size_t avail;
        void *out = pool_out_reserve(64, &avail);
        if (!out) {
            char msg[256];
            snprintf(msg, sizeof msg, "result does not fit max_out: %s", pool_last_error());
            pool_task_error(msg);
            return 1;
        }
        if (avail > UINT_MAX) avail = UINT_MAX;
        g_strm.next_out = out;
        g_strm.avail_out = (uInt)avail;
        zret = deflate(&g_strm, Z_SYNC_FLUSH);
        if (zret != Z_OK && zret != Z_BUF_ERROR) return deflate_fail("deflate", zret);
        if (pool_out_commit(avail - g_strm.avail_out) != POOL_OK) {
            pool_task_error("pool_out_commit refused");
            return 1;
        }
    } while (g_strm.avail_out == 0 || g_strm.avail_in > 0);
    return 0;
}

/* ---- host side -------------------------------------------------------------------------- */

typedef struct {
    FILE *in;
    size_t block;                     /* bytes per block */
    unsigned char tail[DICT_MAX];     /* the last input bytes read, the next block's dictionary */
    size_t tail_len;
    int read_errno;                   /* set when the source ends the input on a read error */
} source_t;

/* Writes [dict_len][dictionary][block] into the pool's shared memory: the block is read from
 * stdin straight into place, never copied. */
static int read_block(void *buf, size_t cap, size_t *len, size_t index, void *source_ctx) {
    (void)index;
    source_t *src = source_ctx;
    unsigned char *p = buf;
    if (cap < IN_HDR + src->tail_len + src->block) return 3; /* max_in too small: a bug */
    uint32_t dict_len = (uint32_t)src->tail_len;
    memcpy(p, &dict_len, sizeof dict_len);
    memcpy(p + IN_HDR, src->tail, src->tail_len);
    unsigned char *block = p + IN_HDR + src->tail_len;
    size_t got = fread(block, 1, src->block, src->in);
    if (got < src->block && ferror(src->in)) {
        src->read_errno = errno ? errno : EIO;
        return 2;
    }
    if (got == 0) return 1;

    /* Keep the last 32 KiB of all input so far (blocks may be shorter than 32 KiB). */
    if (got >= DICT_MAX) {
        memcpy(src->tail, block + got - DICT_MAX, DICT_MAX);
        src->tail_len = DICT_MAX;
    } else {
        size_t keep = src->tail_len + got > DICT_MAX ? DICT_MAX - got : src->tail_len;
        memmove(src->tail, src->tail + src->tail_len - keep, keep);
        memcpy(src->tail + keep, block, got);
        src->tail_len = keep + got;
    }
    *len = IN_HDR + dict_len + got;
    return 0;
}

static int write_all(const void *p, size_t n) {
    if (n && fwrite(p, 1, n, stdout) != n) {
        fprintf(stderr, "pgz: write error: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    long workers = 0, kib = 128, level = 6;
    int opt, sandbox = 0;
    while ((opt = getopt(argc, argv, "p:b:l:Sh")) != -1) {
        switch (opt) {
        case 'p':
            if (parse_long(optarg, 1, 1024, &workers)) {
                fprintf(stderr, "pgz: -p wants 1..1024 workers, got '%s'\n", optarg);
                usage();
                return 2;
            }
            break;
        case 'b':
            if (parse_long(optarg, 1, 1L << 20, &kib)) {
                fprintf(stderr, "pgz: -b wants 1..1048576 KiB, got '%s'\n", optarg);
                usage();
                return 2;
            }
            break;
        case 'l':
            if (parse_long(optarg, 0, 9, &level)) {
                fprintf(stderr, "pgz: -l wants a level 0..9, got '%s'\n", optarg);
                usage();
                return 2;
            }
            break;
        case 'S':
            sandbox = 1;
            break;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "pgz: unexpected argument '%s' (input is read from stdin)\n", argv[optind]);
        usage();
        return 2;
    }
    if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "pgz: compressed data not written to a terminal: redirect stdout\n");
        usage();
        return 2;
    }

    size_t block = (size_t)kib * 1024;
    /* Sized for stored blocks (incompressible input, level 0) plus the sync flush's marker. */
    size_t max_in = IN_HDR + DICT_MAX + block;
    size_t max_out = OUT_HDR + compressBound((uLong)block) + 64;

    static source_t src; /* static: 32 KiB tail off the stack */
    src.in = stdin;
    src.block = block;

    pool_options_t popts;
    pool_options_init(&popts);
    if (sandbox) popts.sandbox = POOL_SANDBOX_COMPUTE; /* blocks come in shared memory: no path */
    pool_t *pool = pool_create((int)workers, &popts);
    if (!pool) {
        fprintf(stderr, "pgz: pool_create: %s\n", pool_last_error());
        return 1;
    }

    pgz_params_t params = {.level = (int)level};
    pool_stream_options_t sopts;
    pool_stream_options_init(&sopts);
    sopts.ordered = true;                                 /* gzip needs the blocks in order */
    sopts.window = 4 * (size_t)pool_workers(pool);        /* bounds memory; keeps workers fed */
    sopts.ctx_size = sizeof params;                       /* params live on the stack: copy */
    pool_stream_t *s = pool_stream_source(pool, compress_block, read_block, &src, max_in,
                                          max_out, &params, &sopts);
    if (!s) {
        fprintf(stderr, "pgz: pool_stream_source: %s\n", pool_last_error());
        pool_destroy(pool);
        return 1;
    }

    /* gzip header (RFC 1952): deflate, no name, no mtime; XFL says max or fastest; OS Unix. */
    const unsigned char gz_hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0,
                                      level == 9 ? 2 : level == 1 ? 4 : 0, 3};
    int failed = write_all(gz_hdr, sizeof gz_hdr) != 0;

    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    for (;;) {
        const void *data;
        size_t len, index = SIZE_MAX;
        int st = pool_stream_next(s, &data, &len, &index, -1);
        if (st == POOL_EDONE) break;
        if (st != POOL_OK) {
            if (src.read_errno)
                fprintf(stderr, "pgz: read error: %s\n", strerror(src.read_errno));
            else if (index != SIZE_MAX)
                fprintf(stderr, "pgz: block %zu: %s: %s\n", index, pool_strerror(st),
                        pool_last_error());
            else
                fprintf(stderr, "pgz: %s: %s\n", pool_strerror(st), pool_last_error());
            failed = 1;
            break; /* the output cannot be completed: stop at the first failure */
        }
        const unsigned char *r = data;
        if (len < OUT_HDR) {
            fprintf(stderr, "pgz: block %zu: short result\n", index);
            failed = 1;
            break;
        }
        uint32_t bcrc = get_le32(r), blen = get_le32(r + 4);
        crc = crc32_combine(crc, bcrc, (z_off_t)blen);
        total += blen;
        if (!failed && write_all(r + OUT_HDR, len - OUT_HDR)) {
            failed = 1;
            break;
        }
    }
    pool_stream_free(s);
    pool_close(pool);
    pool_join(pool);
    pool_destroy(pool);
    if (failed) return 1;

    /* The last block ended with a sync flush: end the deflate stream with an empty final
     * fixed-Huffman block (BFINAL=1, BTYPE=01, end-of-block code), as pigz does. */
    unsigned char trailer[10] = {0x03, 0x00};
    put_le32(trailer + 2, (uint32_t)crc);
    put_le32(trailer + 6, (uint32_t)total); /* ISIZE: the length modulo 2^32 */
    if (write_all(trailer, sizeof trailer)) return 1;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "pgz: write error: %s\n", strerror(errno));
        return 1;
    }
    if (fclose(stdout) != 0) {
        fprintf(stderr, "pgz: write error: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
