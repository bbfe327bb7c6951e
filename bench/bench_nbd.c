/* bench_nbd: ramzswap against its peers through nbdkit and one libnbd connection.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * For every target (nbdkit's null plugin as the protocol ceiling, the memory plugin
 * with allocator=sparse and allocator=zstd, the naive LZO plugin bench/naive.so, and
 * plugin/ramzswap.so), every request size and every order (sequential, or a seeded
 * random permutation of the request offsets), a fresh server is started on a unix
 * socket, and one asynchronous connection with --inflight requests outstanding
 *   1. writes the whole device with corpus pass 1 (first fill),
 *   2. rewrites it with pass 2 (same offsets, new content),
 *   3. reads it back, comparing every byte with pass 2 (not for null: it reads zeros),
 *   4. trims it all.
 * The server's Rss (/proc/PID/smaps_rollup) is taken after a warm-up (reads of
 * never-written pages), after 1, after 2 and after 4, its CPU time around each phase.
 * Printed: MB/s per phase (MB = 10^6 bytes), RSS growth per byte written, that growth
 * over the LZO ideal, RSS after the trim against the start, server CPU per GB; then
 * one line per goal of issue 6. Numbers only: the exit status is 1 only when a
 * request failed or a byte read back differed. bench/README.md explains the columns.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>
#include <lzo/lzo1x.h>

#include "corpus.h"

#define PAGE       4096u
#define TRIM_CHUNK (1ull << 30)
#define MAX_SIZES  4
#define NPHASES    3

enum phase { WRITE, REWRITE, READ };
static const char *const phase_name[NPHASES] = {"write", "rewrite", "read"};
enum order { SEQ, RAND, NORDERS };
static const char *const order_name[NORDERS] = {"seq", "rand"};

struct opts {
        uint64_t size;
        unsigned inflight;
        const char *targets;
        const char *naive_path;
        const char *ramzswap_path;
        uint32_t reqsizes[MAX_SIZES];
        int nreqsizes;
        unsigned seed;
        unsigned repeat;
};

/* One peer under test: how to start it and whether its reads can be verified. */
struct target {
        const char *name;
        const char *plugin; /* name or path given to nbdkit */
        const char *fmt[2]; /* key=%llu arguments, the size filled in */
        bool verifies;
};

struct result {
        const struct target *t;
        uint32_t reqsize;
        enum order order;
        double mbs[NPHASES];
        double cpu[NPHASES]; /* server CPU seconds (user + system) per GB */
        long long rss_start; /* bytes, after the warm-up */
        long long grow_fill, grow_rewrite, left_trim; /* Rss - rss_start */
        uint64_t mismatched;                          /* requests */
        uint64_t failed;                              /* requests */
        bool ok;                                      /* all phases ran */
};

/* The expected content and the LZO ideal footprint of each pass. */
struct corpus_pass {
        unsigned char *data;
        uint64_t ideal_bytes; /* sum of per-page ideal sizes + 8 bytes a page */
};

struct server {
        pid_t pid;
        char dir[64];
        char sock[96];
        struct nbd_handle *nbd;
};

/* One outstanding request: its offset and, for reads, its buffer. */
struct slot {
        struct engine *e;
        uint64_t off;
        unsigned char *buf;
        struct slot *next;
};

/* The asynchronous request loop of one connection. */
struct engine {
        struct nbd_handle *nbd;
        uint64_t reqsize;
        const unsigned char *expect; /* reads compare against it; NULL = no check */
        struct slot *slots, *free;
        unsigned in_flight;
        uint64_t mismatched, failed;
        int first_error;
};

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parses "256M"-style sizes: decimal with an optional K, M or G (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
        char *end;
        unsigned long long v;
        int shift = 0;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s)
                return -1;
        switch (*end) {
        case 'k':
        case 'K':
                shift = 10, end++;
                break;
        case 'm':
        case 'M':
                shift = 20, end++;
                break;
        case 'g':
        case 'G':
                shift = 30, end++;
                break;
        }
        if (*end != '\0' || v > (UINT64_MAX >> shift))
                return -1;
        *out = v << shift;
        return 0;
}

/* The server's resident set in bytes, or -1. */
static long long rss_of(pid_t pid)
{
        char path[64], line[256];
        long long kb = -1;
        FILE *f;

        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
        f = fopen(path, "r");
        if (f == NULL)
                return -1;
        while (fgets(line, sizeof line, f) != NULL)
                if (sscanf(line, "Rss: %lld kB", &kb) == 1)
                        break;
        fclose(f);
        return kb < 0 ? -1 : kb * 1024;
}

/* The server's CPU time (all threads, user + system) in seconds, or -1. */
static double cpu_of(pid_t pid)
{
        char path[64], buf[1024], *p;
        unsigned long long ut, st;
        ssize_t len;
        int fd;

        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY);
        if (fd < 0)
                return -1;
        len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
                return -1;
        buf[len] = '\0';
        /* Fields 14 and 15, counted after the parenthesised command name. */
        p = strrchr(buf, ')');
        if (p == NULL ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                   &st) != 2)
                return -1;
        return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

/* The footprint a compressed page store can hope for: same-filled pages cost
 * nothing, others their LZO1X-1 size, at most a page (stored raw), plus 8 bytes of
 * table per page. */
static uint64_t ideal_bytes(const unsigned char *data, uint64_t size)
{
        static lzo_align_t wrk[LZO1X_1_MEM_COMPRESS / sizeof(lzo_align_t) + 1];
        uint64_t sum = 0;

        for (uint64_t off = 0; off < size; off += PAGE) {
                const unsigned char *p = data + off;
                size_t zlen;

                sum += 8;
                if (corpus_page_same_filled(p))
                        continue;
                if (corpus_lzo_size(p, wrk, &zlen) < 0)
                        zlen = PAGE; /* the most a page can cost */
                sum += zlen < PAGE ? zlen : PAGE;
        }
        return sum;
}

static int on_done(void *user_data, int *error)
{
        struct slot *s = user_data;
        struct engine *e = s->e;

        if (*error != 0) {
                e->failed++;
                if (e->first_error == 0)
                        e->first_error = *error;
        } else if (e->expect != NULL &&
                   memcmp(s->buf, e->expect + s->off, e->reqsize) != 0) {
                e->mismatched++;
        }
        s->next = e->free;
        e->free = s;
        e->in_flight--;
        return 1; /* retire the command */
}

/* Issues requests for the offsets index[0..n) * reqsize with up to the engine's
 * slot count in flight; op is 'w' (from src), 'r' (verified) or 't'. Returns the
 * elapsed seconds, or -1 when libnbd itself failed. */
static double run_requests(struct engine *e, char op, const unsigned char *src,
                           const uint32_t *index, uint64_t n)
{
        double t0 = now();
        uint64_t next = 0;

        while (next < n || e->in_flight > 0) {
                while (e->free != NULL && next < n) {
                        struct slot *s = e->free;
                        nbd_completion_callback cb = {.callback = on_done,
                                                      .user_data = s};
                        int64_t cookie;

                        e->free = s->next;
                        s->off = (uint64_t)index[next++] * e->reqsize;
                        if (op == 'w')
                                cookie = nbd_aio_pwrite(e->nbd, src + s->off, e->reqsize,
                                                        s->off, cb, 0);
                        else if (op == 'r')
                                cookie = nbd_aio_pread(e->nbd, s->buf, e->reqsize, s->off,
                                                       cb, 0);
                        else
                                cookie = nbd_aio_trim(e->nbd, e->reqsize, s->off, cb, 0);
                        if (cookie == -1) {
                                fprintf(stderr, "bench_nbd: %s\n", nbd_get_error());
                                return -1;
                        }
                        e->in_flight++;
                }
                if (nbd_poll(e->nbd, -1) == -1) {
                        fprintf(stderr, "bench_nbd: nbd_poll: %s\n", nbd_get_error());
                        return -1;
                }
        }
        return now() - t0;
}

/* index[i] = i, or a permutation seeded by seed (Fisher-Yates on nrand48). */
static void make_order(uint32_t *index, uint64_t n, enum order o, unsigned seed)
{
        unsigned short x[3] = {0x330e, (unsigned short)seed,
                               (unsigned short)(seed >> 16)};

        for (uint64_t i = 0; i < n; i++)
                index[i] = i;
        if (o == SEQ)
                return;
        for (uint64_t i = n - 1; i > 0; i--) {
                uint64_t j = ((uint64_t)nrand48(x) << 31 | nrand48(x)) % (i + 1);
                uint32_t t = index[i];

                index[i] = index[j];
                index[j] = t;
        }
}

static void server_stop(struct server *s)
{
        char path[128];

        if (s->nbd != NULL) {
                nbd_shutdown(s->nbd, 0);
                nbd_close(s->nbd);
                s->nbd = NULL;
        }
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
        snprintf(path, sizeof path, "%s/pid", s->dir);
        unlink(path);
        unlink(s->sock);
        rmdir(s->dir);
}

/* Starts nbdkit -f -U SOCK -P PIDFILE on the target and connects to it. */
static int server_start(struct server *s, const struct target *t, uint64_t size)
{
        char pidfile[128], arg[2][64];
        const char *argv[12];
        int argc = 0;

        memset(s, 0, sizeof *s);
        strcpy(s->dir, "/tmp/bench-nbd.XXXXXX");
        if (mkdtemp(s->dir) == NULL) {
                perror("bench_nbd: mkdtemp");
                return -1;
        }
        snprintf(s->sock, sizeof s->sock, "%s/sock", s->dir);
        snprintf(pidfile, sizeof pidfile, "%s/pid", s->dir);
        argv[argc++] = "nbdkit";
        argv[argc++] = "-f";
        argv[argc++] = "--exit-with-parent";
        argv[argc++] = "-U";
        argv[argc++] = s->sock;
        argv[argc++] = "-P";
        argv[argc++] = pidfile;
        argv[argc++] = t->plugin;
        for (int i = 0; i < 2 && t->fmt[i] != NULL; i++) {
                snprintf(arg[i], sizeof arg[i], t->fmt[i], (unsigned long long)size);
                argv[argc++] = arg[i];
        }
        argv[argc] = NULL;

        s->pid = fork();
        if (s->pid == -1) {
                perror("bench_nbd: fork");
                return -1;
        }
        if (s->pid == 0) {
                execvp(argv[0], (char **)argv);
                perror("bench_nbd: exec nbdkit");
                _exit(127);
        }
        /* nbdkit writes the pidfile once it listens. */
        for (int tries = 0; access(pidfile, F_OK) != 0; tries++) {
                bool exited = waitpid(s->pid, NULL, WNOHANG) == s->pid;

                if (exited || tries == 2000) {
                        fprintf(stderr, "bench_nbd: nbdkit %s did not start\n", t->name);
                        if (exited)
                                s->pid = 0;
                        server_stop(s);
                        return -1;
                }
                usleep(10000);
        }
        s->nbd = nbd_create();
        if (s->nbd == NULL || nbd_set_pread_initialize(s->nbd, false) == -1 ||
            nbd_connect_unix(s->nbd, s->sock) == -1) {
                fprintf(stderr, "bench_nbd: connect to %s: %s\n", t->name,
                        nbd_get_error());
                server_stop(s);
                return -1;
        }
        return 0;
}

/* Runs the four phases on a fresh server; fills r. */
static void bench_one(const struct opts *o, const struct corpus_pass pass[2],
                      struct result *r, uint32_t *index)
{
        const uint64_t n = o->size / r->reqsize;
        struct engine e = {.reqsize = r->reqsize};
        struct server srv;
        double secs, cpu0;

        r->ok = false;
        if (server_start(&srv, r->t, o->size) < 0)
                return;
        e.nbd = srv.nbd;
        e.slots = calloc(o->inflight, sizeof *e.slots);
        if (e.slots == NULL)
                goto out;
        for (unsigned i = 0; i < o->inflight; i++) {
                e.slots[i] =
                    (struct slot){.e = &e, .buf = malloc(r->reqsize), .next = e.free};
                if (e.slots[i].buf == NULL)
                        goto out;
                e.free = &e.slots[i];
        }

        /* The baseline is a warmed-up server: reads of never-written pages (no
         * plugin stores anything for them) fault in nbdkit's threads and request
         * buffers, which are no part of any plugin's footprint. */
        make_order(index, n, SEQ, 0);
        if (run_requests(&e, 'r', NULL, index,
                         n < 4 * o->inflight ? n : 4 * o->inflight) < 0)
                goto out;
        r->rss_start = rss_of(srv.pid);
        for (int ph = WRITE; ph <= READ; ph++) {
                const unsigned char *src = pass[ph == WRITE ? 0 : 1].data;

                make_order(index, n, r->order, o->seed + ph);
                e.expect = ph == READ && r->t->verifies ? src : NULL;
                cpu0 = cpu_of(srv.pid);
                secs = run_requests(&e, ph == READ ? 'r' : 'w', src, index, n);
                if (secs < 0)
                        goto out;
                r->mbs[ph] = o->size / secs / 1e6;
                r->cpu[ph] = (cpu_of(srv.pid) - cpu0) / (o->size / 1e9);
                if (ph == WRITE)
                        r->grow_fill = rss_of(srv.pid) - r->rss_start;
                else if (ph == REWRITE)
                        r->grow_rewrite = rss_of(srv.pid) - r->rss_start;
        }

        e.expect = NULL;
        e.reqsize = o->size < TRIM_CHUNK ? o->size : TRIM_CHUNK;
        make_order(index, o->size / e.reqsize, SEQ, 0);
        if (run_requests(&e, 't', NULL, index, o->size / e.reqsize) < 0)
                goto out;
        r->left_trim = rss_of(srv.pid) - r->rss_start;
        r->ok = true;
out:
        r->mismatched = e.mismatched;
        r->failed = e.failed;
        if (e.first_error != 0)
                fprintf(stderr, "bench_nbd: %s: %" PRIu64 " requests failed, first: %s\n",
                        r->t->name, e.failed, strerror(e.first_error));
        server_stop(&srv);
        if (e.slots != NULL)
                for (unsigned i = 0; i < o->inflight; i++)
                        free(e.slots[i].buf);
        free(e.slots);
}

/* Folds run r into best: the fastest of each phase, the worst of each memory figure
 * (so one lucky run cannot hide a leak), errors summed. */
static void merge(struct result *best, const struct result *r, bool first)
{
        if (first) {
                *best = *r;
                return;
        }
        for (int ph = 0; ph < NPHASES; ph++) {
                best->mbs[ph] = r->mbs[ph] > best->mbs[ph] ? r->mbs[ph] : best->mbs[ph];
                best->cpu[ph] = r->cpu[ph] < best->cpu[ph] ? r->cpu[ph] : best->cpu[ph];
        }
        best->rss_start = r->rss_start > best->rss_start ? r->rss_start : best->rss_start;
        best->grow_fill = r->grow_fill > best->grow_fill ? r->grow_fill : best->grow_fill;
        best->grow_rewrite =
            r->grow_rewrite > best->grow_rewrite ? r->grow_rewrite : best->grow_rewrite;
        best->left_trim = r->left_trim > best->left_trim ? r->left_trim : best->left_trim;
        best->mismatched += r->mismatched;
        best->failed += r->failed;
        best->ok = best->ok && r->ok;
}

static void print_table(const struct result *res, int nres,
                        const struct corpus_pass pass[2], uint64_t size)
{
        printf("\n%-9s %4s %-4s %8s %8s %8s %7s %7s %6s %6s %6s %7s %8s  %s\n", "target",
               "req", "ord", "write", "rewrite", "read", "RSS/B", "RSS/B", "xideal",
               "xideal", "RSS0", "trim:", "trim:", "verify");
        printf("%-9s %4s %-4s %8s %8s %8s %7s %7s %6s %6s %6s %7s %8s\n", "", "", "",
               "MB/s", "MB/s", "MB/s", "fill", "rewrite", "fill", "rewr", "MiB",
               "MiB left", "vs RSS0");
        for (int i = 0; i < nres; i++) {
                const struct result *r = &res[i];
                double fill = (double)r->grow_fill / size;
                double rew = (double)r->grow_rewrite / size;

                if (!r->ok) {
                        printf("%-9s %3uK %-4s  FAILED\n", r->t->name, r->reqsize / 1024,
                               order_name[r->order]);
                        continue;
                }
                printf("%-9s %3uK %-4s %8.0f %8.0f %8.0f %7.3f %7.3f %6.2f %6.2f %6.1f "
                       "%+7.1f %+7.1f%%  %s\n",
                       r->t->name, r->reqsize / 1024, order_name[r->order], r->mbs[WRITE],
                       r->mbs[REWRITE], r->mbs[READ], fill, rew,
                       fill / ((double)pass[0].ideal_bytes / size),
                       rew / ((double)pass[1].ideal_bytes / size),
                       r->rss_start / 1048576.0, r->left_trim / 1048576.0,
                       100.0 * r->left_trim / r->rss_start,
                       !r->t->verifies ? "skipped (reads zeros)"
                       : r->mismatched ? "MISMATCH"
                       : r->failed     ? "I/O ERROR"
                                       : "ok");
        }
}

/* Server CPU per byte is steadier than MB/s when other work shares the cores. */
static void print_cpu(const struct result *res, int nres)
{
        printf("\nServer CPU seconds (user + system, all threads) per GB moved:\n");
        printf("%-9s %4s %-4s %8s %8s %8s\n", "target", "req", "ord", "write", "rewrite",
               "read");
        for (int i = 0; i < nres; i++)
                if (res[i].ok)
                        printf("%-9s %3uK %-4s %8.2f %8.2f %8.2f\n", res[i].t->name,
                               res[i].reqsize / 1024, order_name[res[i].order],
                               res[i].cpu[WRITE], res[i].cpu[REWRITE], res[i].cpu[READ]);
}

static const struct result *find(const struct result *res, int nres, const char *name,
                                 uint32_t reqsize, enum order o)
{
        for (int i = 0; i < nres; i++)
                if (res[i].ok && strcmp(res[i].t->name, name) == 0 &&
                    res[i].reqsize == reqsize && res[i].order == o)
                        return &res[i];
        return NULL;
}

/* One line: ramzswap's phase speed over a peer's, per order, against a goal. */
static void speed_goal(const struct result *res, int nres, const char *peer,
                       uint32_t reqsize, enum phase ph, double goal)
{
        printf("  %2uK %-5s vs %-5s (goal >= %.2fx):", reqsize / 1024, phase_name[ph],
               peer, goal);
        for (int o = 0; o < NORDERS; o++) {
                const struct result *a = find(res, nres, "ramzswap", reqsize, o);
                const struct result *b = find(res, nres, peer, reqsize, o);

                if (a == NULL || b == NULL)
                        printf("  %s n/a", order_name[o]);
                else
                        printf("  %s %.2fx %s", order_name[o], a->mbs[ph] / b->mbs[ph],
                               a->mbs[ph] / b->mbs[ph] >= goal ? "met" : "MISSED");
        }
        printf("\n");
}

static void print_goals(const struct result *res, int nres, const struct opts *o,
                        const struct corpus_pass pass[2])
{
        double worst_ideal = 0, worst_trim = -1e9;
        bool any = false;

        printf("\nGoals (issue 6), ramzswap in this run:\n");
        speed_goal(res, nres, "null", 4096, WRITE, 0.75);
        speed_goal(res, nres, "null", 4096, READ, 0.95);
        speed_goal(res, nres, "zstd", 65536, WRITE, 3.0);
        speed_goal(res, nres, "zstd", 65536, READ, 1.5);
        for (int i = 0; i < nres; i++) {
                const struct result *r = &res[i];

                if (!r->ok || strcmp(r->t->name, "ramzswap") != 0)
                        continue;
                any = true;
                for (int p = 0; p < 2; p++) {
                        long long grown = p == 0 ? r->grow_fill : r->grow_rewrite;
                        double x = (double)grown / pass[p].ideal_bytes;

                        worst_ideal = x > worst_ideal ? x : worst_ideal;
                }
                double trim = (double)r->left_trim / r->rss_start;
                worst_trim = trim > worst_trim ? trim : worst_trim;
        }
        if (any) {
                printf("  RSS growth vs LZO ideal, worst of fill/rewrite, all sizes and "
                       "orders (goal <= 1.10x): %.3fx %s\n",
                       worst_ideal, worst_ideal <= 1.10 ? "met" : "MISSED");
                printf("  RSS after trimming all vs start, worst (goal within 5%%): "
                       "%+.1f%% %s\n",
                       100 * worst_trim, worst_trim <= 0.05 ? "met" : "MISSED");
        } else {
                printf("  RSS goals: n/a (ramzswap did not run)\n");
        }

        printf("\nramzswap vs naive (floor: no slower, less memory after rewrite):\n");
        for (int s = 0; s < o->nreqsizes; s++)
                for (int ord = 0; ord < NORDERS; ord++) {
                        const struct result *a =
                            find(res, nres, "ramzswap", o->reqsizes[s], ord);
                        const struct result *b =
                            find(res, nres, "naive", o->reqsizes[s], ord);

                        if (a == NULL || b == NULL)
                                continue;
                        printf("  %2uK %-4s write %.2fx rewrite %.2fx read %.2fx, RSS "
                               "after rewrite %.2fx of naive's\n",
                               o->reqsizes[s] / 1024, order_name[ord],
                               a->mbs[WRITE] / b->mbs[WRITE],
                               a->mbs[REWRITE] / b->mbs[REWRITE],
                               a->mbs[READ] / b->mbs[READ],
                               (double)a->grow_rewrite / b->grow_rewrite);
                }
}

/* The plugins of a build directory: bench/naive.so and plugin/ramzswap.so. The
 * default build directory is the one holding this program. */
static void build_paths(struct opts *o, const char *builddir)
{
        static char naive[PATH_MAX], rzs[PATH_MAX];
        char exe[PATH_MAX];
        ssize_t len;

        if (builddir == NULL) {
                len = readlink("/proc/self/exe", exe, sizeof exe - 1);
                if (len < 0)
                        return;
                exe[len] = '\0';
                builddir = dirname(dirname(exe));
        }
        snprintf(naive, sizeof naive, "%s/bench/naive.so", builddir);
        snprintf(rzs, sizeof rzs, "%s/plugin/ramzswap.so", builddir);
        o->naive_path = naive;
        o->ramzswap_path = rzs;
}

static void usage(void)
{
        fprintf(
            stderr,
            "usage: bench_nbd [--size 256M] [--inflight 32] [--reqsizes 4K,64K]\n"
            "                 [--targets null,sparse,zstd,naive,ramzswap]\n"
            "                 [--plugin-dir BUILDDIR] [--naive PATH] [--ramzswap PATH]\n"
            "                 [--seed N] [--repeat N]\n"
            "                 [--quick]\n");
        exit(2);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
        static const struct option lo[] = {
            {"size", required_argument, NULL, 's'},
            {"inflight", required_argument, NULL, 'i'},
            {"targets", required_argument, NULL, 't'},
            {"reqsizes", required_argument, NULL, 'r'},
            {"plugin-dir", required_argument, NULL, 'p'},
            {"naive", required_argument, NULL, 'n'},
            {"ramzswap", required_argument, NULL, 'z'},
            {"seed", required_argument, NULL, 'S'},
            {"repeat", required_argument, NULL, 'R'},
            {"quick", no_argument, NULL, 'q'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        char *list = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
                switch (c) {
                case 's':
                        if (parse_size(optarg, &o->size) < 0)
                                usage();
                        break;
                case 'i':
                        o->inflight = strtoul(optarg, NULL, 10);
                        break;
                case 't':
                        o->targets = optarg;
                        break;
                case 'r':
                        list = optarg;
                        break;
                case 'n':
                        o->naive_path = optarg;
                        break;
                case 'p':
                        build_paths(o, optarg);
                        break;
                case 'z':
                        o->ramzswap_path = optarg;
                        break;
                case 'S':
                        o->seed = strtoul(optarg, NULL, 10);
                        break;
                case 'R':
                        o->repeat = strtoul(optarg, NULL, 10);
                        break;
                case 'q':
                        o->size = 16 << 20;
                        break;
                default:
                        usage();
                }
        }
        if (list != NULL) {
                o->nreqsizes = 0;
                for (char *tok = strtok(list, ","); tok != NULL;
                     tok = strtok(NULL, ",")) {
                        uint64_t v;

                        if (o->nreqsizes == MAX_SIZES || parse_size(tok, &v) < 0 ||
                            v < PAGE || v % PAGE != 0 || v > (64u << 20))
                                usage();
                        o->reqsizes[o->nreqsizes++] = v;
                }
        }
        for (int i = 0; i < o->nreqsizes; i++)
                if (o->size == 0 || o->size % o->reqsizes[i] != 0) {
                        fprintf(stderr, "bench_nbd: --size must be a multiple of every "
                                        "request size\n");
                        return -1;
                }
        if (optind != argc || o->inflight == 0 || o->repeat == 0 ||
            o->size / PAGE > UINT32_MAX)
                usage();
        return 0;
}

static bool wanted(const char *list, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
                if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
                        return true;
        return false;
}

int main(int argc, char **argv)
{
        struct opts o = {.size = 256ull << 20,
                         .inflight = 32,
                         .targets = "null,sparse,zstd,naive,ramzswap",
                         .reqsizes = {4096, 65536},
                         .nreqsizes = 2,
                         .seed = 1,
                         .repeat = 1};
        struct target all[] = {
            {"null", "null", {"size=%llu"}, false},
            {"sparse", "memory", {"size=%llu", "allocator=sparse"}, true},
            {"zstd", "memory", {"size=%llu", "allocator=zstd"}, true},
            {"naive", NULL, {"size=%llu"}, true},
            {"ramzswap", NULL, {"disksize=%llu", "memlimit=%llu"}, true},
        };
        const int ntargets = sizeof all / sizeof all[0];
        struct corpus_pass pass[2];
        struct result *res;
        uint32_t *index;
        double load[3] = {0};
        int nres = 0, status = 0, err;
        uint64_t npages;

        build_paths(&o, NULL);
        if (parse_opts(argc, argv, &o) < 0)
                return 2;
        all[3].plugin = o.naive_path;
        all[4].plugin = o.ramzswap_path;
        npages = o.size / PAGE;
        signal(SIGPIPE, SIG_IGN);

        for (int p = 0; p < 2; p++) {
                pass[p].data = malloc(o.size);
                if (pass[p].data == NULL) {
                        perror("bench_nbd: malloc corpus");
                        return 1;
                }
                err = corpus_fill(pass[p].data, npages, o.seed, p + 1);
                if (err < 0) {
                        fprintf(stderr, "bench_nbd: corpus_fill: %s\n", strerror(-err));
                        return 1;
                }
                pass[p].ideal_bytes = ideal_bytes(pass[p].data, o.size);
        }
        index = malloc(npages * sizeof *index);
        res = calloc(ntargets * MAX_SIZES * NORDERS, sizeof *res);
        if (index == NULL || res == NULL) {
                perror("bench_nbd: malloc");
                return 1;
        }

        getloadavg(load, 3);
        printf("bench_nbd: %" PRIu64 " MiB, %u in flight, one connection, seed %u; "
               "best of %u; load average before: %.2f %.2f %.2f\n",
               o.size >> 20, o.inflight, o.seed, o.repeat, load[0], load[1], load[2]);
        printf("naive: %s\nramzswap: %s\n", o.naive_path, o.ramzswap_path);
        printf("LZO ideal (same-filled 0, else min(LZO1X-1, 4096), + 8 B/page) per byte: "
               "pass 1 %.4f, pass 2 %.4f\n",
               (double)pass[0].ideal_bytes / o.size,
               (double)pass[1].ideal_bytes / o.size);

        for (int ti = 0; ti < ntargets; ti++) {
                if (!wanted(o.targets, all[ti].name))
                        continue;
                if (all[ti].plugin == NULL ||
                    (all[ti].plugin[0] == '/' && access(all[ti].plugin, R_OK) != 0)) {
                        printf("(skipping %s: %s not found)\n", all[ti].name,
                               all[ti].plugin ? all[ti].plugin : "plugin");
                        continue;
                }
                for (int s = 0; s < o.nreqsizes; s++)
                        for (int ord = 0; ord < NORDERS; ord++)
                                res[nres++] = (struct result){.t = &all[ti],
                                                              .reqsize = o.reqsizes[s],
                                                              .order = ord};
        }
        /* Repetitions go round all targets so that a burst of load from elsewhere
         * hits them alike. */
        for (unsigned rep = 0; rep < o.repeat; rep++)
                for (int i = 0; i < nres; i++) {
                        struct result r = res[i];

                        bench_one(&o, pass, &r, index);
                        fprintf(stderr, "  done %s %uK %s (run %u)\n", r.t->name,
                                r.reqsize / 1024, order_name[r.order], rep + 1);
                        if (!r.ok || r.mismatched || r.failed)
                                status = 1;
                        merge(&res[i], &r, rep == 0);
                }

        print_table(res, nres, pass, o.size);
        print_cpu(res, nres);
        print_goals(res, nres, &o, pass);
        getloadavg(load, 3);
        printf("\nload average after: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
        free(res);
        free(index);
        free(pass[0].data);
        free(pass[1].data);
        return status;
}
