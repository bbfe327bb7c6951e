/* workload: the guest-side swap test of the QEMU end-to-end test.
 *
 * Fills more anonymous memory than the process may keep resident with pages whose
 * content is a pure function of (page index, pass), rewrites a fraction of them with
 * pass 2, then reads every page back and compares it with a freshly generated copy.
 * The mix exercises every path of a compressed swap device: zero pages, same-filled
 * pages, compressible text, heap-like pages (mostly zero words, pointers, small
 * integers) and incompressible random bytes.
 *
 * It passes only if no page differs AND swap was really used: pswpout and pswpin in
 * /proc/vmstat both grew, and SwapTotal - SwapFree peaked, by at least 3/4 of the
 * excess of the workload over its memory limit (memory.max of its cgroup, or
 * MemAvailable at start when it runs in the root cgroup). The /proc files are
 * opened before memory runs short: under pressure even open() can block.
 *
 * Built static (gcc -static) by run-e2e.sh; runs as a guest binary only.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { PAGE = 4096, WORDS = PAGE / 8 };

/* Percent thresholds of the page-kind mix, cumulative. */
enum { PCT_ZERO = 12, PCT_SAME = 22, PCT_TEXT = 55, PCT_HEAP = 78 };

enum kind { K_ZERO, K_SAME, K_TEXT, K_HEAP, K_RANDOM, K_COUNT };
static const char *const kind_name[K_COUNT] = {"zero", "same-filled", "text", "heap-like",
                                               "random"};

struct config {
        uint64_t mib;
        uint64_t pct_available; /* --mib P%: P% of MemAvailable at start instead */
        unsigned rewrite_permille;
        uint64_t seed;
        bool only_random; /* --mix random: every page incompressible */
};

static uint64_t splitmix64(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

static uint64_t page_key(const struct config *cfg, uint64_t index, unsigned pass)
{
        return splitmix64(cfg->seed ^ splitmix64(index * 4 + pass));
}

static enum kind page_kind(uint64_t key)
{
        unsigned pct = (unsigned)(key % 100);

        if (pct < PCT_ZERO)
                return K_ZERO;
        if (pct < PCT_SAME)
                return K_SAME;
        if (pct < PCT_TEXT)
                return K_TEXT;
        if (pct < PCT_HEAP)
                return K_HEAP;
        return K_RANDOM;
}

/* xorshift64*: cheap and good enough to defeat any compressor. */
static uint64_t next_rand(uint64_t *state)
{
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        return *state * 0x2545f4914f6cdd1dULL;
}

static void fill_same(uint64_t *w, uint64_t key)
{
        /* One repeated 32-bit word, never zero, as ramzswap's same-filled test sees it.
         */
        uint64_t word32 = (key >> 32) | 1;
        uint64_t word = word32 | (word32 << 32);

        for (int i = 0; i < WORDS; i++)
                w[i] = word;
}

static void fill_text(unsigned char *p, uint64_t key, uint64_t index, unsigned pass)
{
        static const char *const words[] = {
            "swap",  "page", "memory", "kernel", "compress", "block",  "device",
            "slot",  "the",  "of",     "and",    "a",        "to",     "in",
            "is",    "for",  "struct", "return", "int",      "static", "void",
            "if",    "else", "while",  "NULL",   "error",    "lock",   "unlock",
            "alloc", "free", "read",   "write",
        };
        uint64_t state = key | 1;
        int len = snprintf((char *)p, PAGE, "page %" PRIu64 " pass %u\n", index, pass);

        for (int n = 1; len < PAGE; n++) {
                uint64_t r = next_rand(&state);
                const char *word = words[r % (sizeof(words) / sizeof(words[0]))];
                size_t wlen = strlen(word);
                size_t room = (size_t)(PAGE - len);
                size_t take = wlen < room ? wlen : room;

                memcpy(p + len, word, take);
                len += (int)take;
                if (len < PAGE)
                        p[len++] = n % 11 == 0 ? '\n' : ' ';
        }
}

static void fill_heap(uint64_t *w, uint64_t key)
{
        uint64_t state = key | 1;

        for (int i = 0; i < WORDS; i++) {
                uint64_t r = next_rand(&state);

                switch (r & 3) {
                case 0:
                case 1:
                        w[i] = 0;
                        break;
                case 2: /* a user-space pointer, 16-byte aligned */
                        w[i] = 0x00007f0000000000ULL | ((r >> 8) & 0xffffff0ULL);
                        break;
                default: /* a small integer */
                        w[i] = (r >> 16) & 0xff;
                        break;
                }
        }
}

static void fill_random(uint64_t *w, uint64_t key)
{
        uint64_t state = key | 1;

        for (int i = 0; i < WORDS; i++)
                w[i] = next_rand(&state);
}

/* Write page `index` of pass `pass` into `p` (PAGE bytes, 8-byte aligned); returns
 * its kind. */
static enum kind fill_page(void *p, const struct config *cfg, uint64_t index,
                           unsigned pass)
{
        uint64_t key = page_key(cfg, index, pass);
        enum kind k = cfg->only_random ? K_RANDOM : page_kind(key);

        switch (k) {
        case K_ZERO:
                memset(p, 0, PAGE);
                break;
        case K_SAME:
                fill_same(p, key);
                break;
        case K_TEXT:
                fill_text(p, key, index, pass);
                break;
        case K_HEAP:
                fill_heap(p, key);
                break;
        default:
                fill_random(p, key);
                break;
        }
        return k;
}

static bool rewritten(const struct config *cfg, uint64_t index)
{
        return splitmix64(cfg->seed ^ ~index) % 1000 < cfg->rewrite_permille;
}

/* Value of "name" in a /proc key-value file read through an fd opened early, so no
 * open() is needed once memory is short. Returns -1 if absent or unreadable. */
static int64_t proc_value(int fd, const char *name)
{
        static char buf[16384];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        size_t nlen = strlen(name);

        if (n <= 0)
                return -1;
        buf[n] = '\0';
        for (char *line = buf; line; line = strchr(line, '\n')) {
                if (*line == '\n')
                        line++;
                if (strncmp(line, name, nlen) == 0 &&
                    (line[nlen] == ' ' || line[nlen] == ':'))
                        return strtoll(line + nlen + 1, NULL, 10);
        }
        return -1;
}

struct swap_probe {
        int vmstat_fd;
        int meminfo_fd;
        int64_t peak_used_kib;
};

static void sample_swap_used(struct swap_probe *probe)
{
        int64_t total = proc_value(probe->meminfo_fd, "SwapTotal");
        int64_t free_kib = proc_value(probe->meminfo_fd, "SwapFree");

        if (total >= 0 && free_kib >= 0 && total - free_kib > probe->peak_used_kib)
                probe->peak_used_kib = total - free_kib;
}

/* The memory this process may keep resident, in MiB: its cgroup's memory.max, or
 * MemAvailable when there is no limit. Returns -1 when neither can be read. */
static int64_t memory_limit_mib(int meminfo_fd)
{
        char cg[512], path[600], val[64];
        FILE *f = fopen("/proc/self/cgroup", "r");
        int64_t avail;

        if (f) {
                bool got = fgets(cg, sizeof(cg), f) != NULL;

                fclose(f);
                if (got && strncmp(cg, "0::", 3) == 0) {
                        cg[strcspn(cg, "\n")] = '\0';
                        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max",
                                 cg + 3);
                        f = fopen(path, "r");
                        if (f) {
                                got = fgets(val, sizeof(val), f) != NULL;
                                fclose(f);
                                if (got && strncmp(val, "max", 3) != 0)
                                        return strtoll(val, NULL, 10) >> 20;
                        }
                }
        }
        avail = proc_value(meminfo_fd, "MemAvailable");
        return avail < 0 ? -1 : avail >> 10;
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
        *cfg = (struct config){
            .mib = 0, .rewrite_permille = 250, .seed = 0x72616d7a73776170ULL};
        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--mib") == 0 && strchr(argv[i + 1], '%'))
                        cfg->mib = cfg->pct_available = strtoull(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--mib") == 0)
                        cfg->mib = strtoull(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--rewrite-permille") == 0)
                        cfg->rewrite_permille = (unsigned)strtoul(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--seed") == 0)
                        cfg->seed = strtoull(argv[i + 1], NULL, 0);
                else if (strcmp(argv[i], "--mix") == 0 &&
                         strcmp(argv[i + 1], "random") == 0)
                        cfg->only_random = true;
                else if (strcmp(argv[i], "--mix") != 0 ||
                         strcmp(argv[i + 1], "default") != 0)
                        return -EINVAL;
        }
        if (argc % 2 != 1 || cfg->mib == 0 || cfg->rewrite_permille > 1000)
                return -EINVAL;
        return 0;
}

static uint64_t verify(const unsigned char *area, uint64_t pages,
                       const struct config *cfg, uint64_t bad_by_kind[K_COUNT])
{
        static uint64_t expect[WORDS];
        uint64_t bad = 0;

        for (uint64_t i = 0; i < pages; i++) {
                unsigned pass = rewritten(cfg, i) ? 2 : 1;
                const unsigned char *got = area + i * PAGE;
                enum kind k = fill_page(expect, cfg, i, pass);

                if (memcmp(got, expect, PAGE) == 0)
                        continue;
                bad++;
                bad_by_kind[k]++;
                if (bad <= 10) {
                        size_t off = 0;

                        while (got[off] == ((unsigned char *)expect)[off])
                                off++;
                        printf("workload: BAD page %" PRIu64
                               " (%s, pass %u): first difference at "
                               "byte %zu\n",
                               i, kind_name[k], pass, off);
                }
        }
        return bad;
}

int main(int argc, char **argv)
{
        struct config cfg;
        struct swap_probe probe = {.peak_used_kib = 0};
        uint64_t kinds[K_COUNT] = {0}, bad_by_kind[K_COUNT] = {0};
        int64_t out0, in0, out1, in1, limit_mib, expect_mib;
        uint64_t pages, bad, moved_out, moved_in;
        unsigned char *area;
        bool ok = true;
        double t0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (parse_args(argc, argv, &cfg) < 0) {
                fprintf(stderr,
                        "usage: workload --mib N|P%% [--rewrite-permille P] [--seed S] "
                        "[--mix default|random]\n");
                return 2;
        }
        probe.vmstat_fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
        probe.meminfo_fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
        if (probe.vmstat_fd < 0 || probe.meminfo_fd < 0) {
                perror("workload: open /proc");
                return 1;
        }
        limit_mib = memory_limit_mib(probe.meminfo_fd);
        /* Sized from what the machine has left once swap is up, so that the same
         * scenario fits beside any swap server (it holds memory of its own). */
        if (cfg.pct_available) {
                int64_t avail_kib = proc_value(probe.meminfo_fd, "MemAvailable");

                cfg.mib = avail_kib < 0 ? 0 : (uint64_t)avail_kib * cfg.pct_available / 100 >> 10;
        }
        expect_mib = ((int64_t)cfg.mib - limit_mib) * 3 / 4;
        printf("workload: %" PRIu64 " MiB, memory limit %" PRId64
               " MiB, expecting >= %" PRId64 " MiB swapped out and in\n",
               cfg.mib, limit_mib, expect_mib);
        if (limit_mib < 0 || expect_mib <= 0) {
                printf("workload: the workload does not exceed its memory limit\n");
                return 1;
        }

        pages = cfg.mib << 20 >> 12;
        area = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (area == MAP_FAILED) {
                perror("workload: mmap");
                return 1;
        }
        madvise(area, pages * PAGE, MADV_NOHUGEPAGE);
        t0 = now_s();
        out0 = proc_value(probe.vmstat_fd, "pswpout");
        in0 = proc_value(probe.vmstat_fd, "pswpin");

        for (uint64_t i = 0; i < pages; i++) {
                kinds[fill_page(area + i * PAGE, &cfg, i, 1)]++;
                if (i % 256 == 0)
                        sample_swap_used(&probe);
        }
        printf("workload: pass 1 wrote %" PRIu64 " pages in %.1f s: %" PRIu64
               " zero, %" PRIu64 " same-filled, %" PRIu64 " text, %" PRIu64
               " heap-like, %" PRIu64 " random\n",
               pages, now_s() - t0, kinds[K_ZERO], kinds[K_SAME], kinds[K_TEXT],
               kinds[K_HEAP], kinds[K_RANDOM]);

        uint64_t rewrites = 0;
        for (uint64_t i = 0; i < pages; i++) {
                if (rewritten(&cfg, i)) {
                        fill_page(area + i * PAGE, &cfg, i, 2);
                        rewrites++;
                }
                if (i % 256 == 0)
                        sample_swap_used(&probe);
        }
        printf("workload: pass 2 rewrote %" PRIu64 " pages (%.1f s so far)\n", rewrites,
               now_s() - t0);
        sample_swap_used(&probe);

        bad = verify(area, pages, &cfg, bad_by_kind);
        sample_swap_used(&probe);
        out1 = proc_value(probe.vmstat_fd, "pswpout");
        in1 = proc_value(probe.vmstat_fd, "pswpin");
        moved_out = (uint64_t)(out1 - out0);
        moved_in = (uint64_t)(in1 - in0);

        printf("workload: verified in %.1f s in all\n", now_s() - t0);
        printf("workload: pages checked %" PRIu64 ", bad pages %" PRIu64 " (%" PRIu64
               " zero, %" PRIu64 " same-filled, %" PRIu64 " text, %" PRIu64
               " heap-like, %" PRIu64 " random)\n",
               pages, bad, bad_by_kind[K_ZERO], bad_by_kind[K_SAME], bad_by_kind[K_TEXT],
               bad_by_kind[K_HEAP], bad_by_kind[K_RANDOM]);
        printf("workload: swap out %" PRIu64 " pages (%.1f MiB), swap in %" PRIu64
               " pages (%.1f MiB), peak swap used %.1f MiB\n",
               moved_out, moved_out / 256.0, moved_in, moved_in / 256.0,
               probe.peak_used_kib / 1024.0);

        if (bad != 0)
                ok = false;
        if (out0 < 0 || in0 < 0 || (int64_t)(moved_out >> 8) < expect_mib ||
            (int64_t)(moved_in >> 8) < expect_mib) {
                printf("workload: swap traffic below the expected %" PRId64
                       " MiB each way\n",
                       expect_mib);
                ok = false;
        }
        if (probe.peak_used_kib >> 10 < expect_mib) {
                printf("workload: peak swap use below the expected %" PRId64 " MiB\n",
                       expect_mib);
                ok = false;
        }
        printf("workload: %s\n", ok ? "ok" : "failed");
        return ok ? 0 : 1;
}
