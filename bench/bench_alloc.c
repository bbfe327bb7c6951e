/* ramzswap: xvmalloc against glibc malloc on compressed-page sizes.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Usage: bench_alloc [OBJECTS [CHURN_OPS [CORPUS_PAGES [SEED [RESERVE_PAGES]]]]]
 *        defaults 100000, 2000000, 20000, 1, 0
 *
 * Object sizes are the LZO1X-1 sizes of the corpus's pages (corpus.h), same-filled
 * pages skipped as the device skips them. Pages compressing to more than 3/4 page are
 * stored raw, as the device does: xv_page_alloc() in the xv run, malloc(4096) in the
 * glibc run; they are part of both sequences and of the requested bytes (4096 each).
 *
 * One operation sequence, precomputed, is run against both allocators:
 *   fill   OBJECTS allocations;
 *   churn  free a random half, refill it with new sizes (ROUNDS times);
 *   steady CHURN_OPS pairs: free a random object, allocate a new one;
 *   drain  free everything.
 * Every allocation writes the 4-byte slot index at the start of its object (the
 * device's object header), so both allocators pay for touching their memory.
 * Throughput is alloc+free pairs per second over the whole sequence (each object
 * allocated is freed once), and per phase. Space is pool bytes held (pages * 4096)
 * / bytes requested after fill and after the churn rounds; glibc's is its arena
 * (mallinfo2: sbrk heap + mmapped chunks) / requested, and its RSS growth.
 * The xv pool may be given a reserve of faulted-in pages (the device's reserve=).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lzo/lzo1x.h>

#include "corpus.h"
#include "ramzswap/xvmalloc.h"

#define ROUNDS 4

enum phase { PH_FILL, PH_CHURN, PH_STEADY, PH_DRAIN, NPHASES };
static const char *const phase_names[NPHASES] = {"fill", "churn", "steady", "drain"};

/* One step of the sequence: free slot's object (if free_first), then allocate size
 * into it (size 0 = no allocation). Space is sampled at the marks. */
struct op {
        uint32_t slot;
        uint16_t size; /* 1 .. 4096; 4096 = a raw page */
        uint8_t free_first;
        uint8_t alloc;
};

struct seq {
        struct op *ops;
        size_t n;
        size_t phase_end[NPHASES]; /* ops index where each phase ends */
        size_t nslots;
        uint64_t pairs; /* allocations (= frees) in the sequence */
};

struct result {
        double secs[NPHASES];
        uint64_t pairs[NPHASES];
        double space_fill, space_churn; /* held / requested */
        double rss_fill, rss_churn;     /* RSS growth / requested */
};

static uint64_t splitmix(uint64_t *s)
{
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rss_bytes(void)
{
        unsigned long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "r");

        if (f) {
                if (fscanf(f, "%lu %lu", &size, &resident) != 2)
                        resident = 0;
                fclose(f);
        }
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Stored sizes of the corpus's pages: LZO1X-1 length, or 4096 when kept raw. */
static int corpus_sizes(uint64_t seed, size_t npages, uint16_t **out, size_t *n)
{
        static lzo_align_t wrk[LZO1X_1_MEM_COMPRESS / sizeof(lzo_align_t) + 1];
        struct corpus c;
        uint16_t *s;
        int r;

        if (lzo_init() != LZO_E_OK)
                return -EIO;
        r = corpus_init(&c, seed, npages);
        if (r < 0)
                return r;
        s = malloc(npages * sizeof(*s));
        if (!s) {
                corpus_free(&c);
                return -ENOMEM;
        }
        *n = 0;
        for (size_t i = 0; i < c.npages; i++) {
                size_t lzo, stored;

                r = corpus_stored_size(corpus_page(&c, i), wrk, &lzo, &stored);
                if (r < 0) {
                        free(s);
                        corpus_free(&c);
                        return r;
                }
                if (stored > 0) /* same-filled pages take no object */
                        s[(*n)++] = (uint16_t)stored;
        }
        corpus_free(&c);
        *out = s;
        return 0;
}

static int seq_build(struct seq *q, size_t nobj, size_t steady, const uint16_t *sizes,
                     size_t nsizes, uint64_t seed)
{
        size_t cap = nobj + ROUNDS * nobj + steady + nobj, k = 0;
        uint32_t *perm = malloc(nobj * sizeof(*perm));

        q->ops = malloc(cap * sizeof(*q->ops));
        if (!q->ops || !perm) {
                free(perm);
                free(q->ops);
                return -ENOMEM;
        }
#define SIZE() sizes[splitmix(&seed) % nsizes]
        for (uint32_t i = 0; i < nobj; i++)
                q->ops[k++] = (struct op){i, SIZE(), 0, 1};
        q->phase_end[PH_FILL] = k;
        for (int r = 0; r < ROUNDS; r++) {
                /* A random half: the first nobj/2 of a fresh shuffle. */
                for (uint32_t i = 0; i < nobj; i++)
                        perm[i] = i;
                for (size_t i = nobj - 1; i > 0; i--) {
                        size_t j = splitmix(&seed) % (i + 1);
                        uint32_t t = perm[i];
                        perm[i] = perm[j];
                        perm[j] = t;
                }
                for (size_t i = 0; i < nobj / 2; i++)
                        q->ops[k++] = (struct op){perm[i], 0, 1, 0};
                for (size_t i = 0; i < nobj / 2; i++)
                        q->ops[k++] = (struct op){perm[i], SIZE(), 0, 1};
        }
        q->phase_end[PH_CHURN] = k;
        for (size_t i = 0; i < steady; i++)
                q->ops[k++] =
                    (struct op){(uint32_t)(splitmix(&seed) % nobj), SIZE(), 1, 1};
        q->phase_end[PH_STEADY] = k;
        for (uint32_t i = 0; i < nobj; i++)
                q->ops[k++] = (struct op){i, 0, 1, 0};
        q->phase_end[PH_DRAIN] = k;
#undef SIZE
        q->n = k;
        q->nslots = nobj;
        free(perm);
        return 0;
}

/* Bytes requested by the live objects after ops [0, end). */
static uint64_t live_bytes(const struct seq *q, size_t end)
{
        uint16_t *cur = calloc(q->nslots, sizeof(*cur));
        uint64_t sum = 0;

        if (!cur)
                return 0;
        for (size_t i = 0; i < end; i++) {
                if (q->ops[i].free_first)
                        cur[q->ops[i].slot] = 0;
                if (q->ops[i].alloc)
                        cur[q->ops[i].slot] = q->ops[i].size;
        }
        for (size_t i = 0; i < q->nslots; i++)
                sum += cur[i];
        free(cur);
        return sum;
}

/* ---- the two allocators behind one loop ---- */

static int run_xv(const struct seq *q, uint64_t reserve, struct result *res)
{
        xv_handle *h = calloc(q->nslots, sizeof(*h));
        uint64_t rss0, req_fill = live_bytes(q, q->phase_end[PH_FILL]);
        uint64_t req_churn = live_bytes(q, q->phase_end[PH_CHURN]);
        struct xv_pool_stats st;
        struct xv_pool *pool;
        size_t i = 0;
        int r;

        if (!h)
                return -ENOMEM;
        r = xv_pool_create(0, reserve, &pool);
        if (r < 0) {
                free(h);
                return r;
        }
        rss0 = rss_bytes();
        for (int ph = 0; ph < NPHASES; ph++) {
                double t0 = now();

                for (; i < q->phase_end[ph]; i++) {
                        const struct op *o = &q->ops[i];
                        uint32_t *p;

                        if (o->free_first) {
                                if (h[o->slot] & ((1u << XV_HANDLE_OFFSET_BITS) - 1))
                                        xv_free(pool, h[o->slot]);
                                else
                                        xv_page_free(pool, h[o->slot]);
                        }
                        if (!o->alloc)
                                continue;
                        r = o->size == CORPUS_PAGE_SIZE
                                ? xv_page_alloc(pool, &h[o->slot])
                                : xv_malloc(pool, o->size, &h[o->slot]);
                        if (r < 0)
                                goto out;
                        p = xv_map(pool, h[o->slot]);
                        *p = o->slot;
                }
                res->secs[ph] = now() - t0;
                xv_pool_get_stats(pool, &st);
                if (ph == PH_FILL) {
                        res->space_fill =
                            (double)(st.pages * XV_PAGE_SIZE) / (double)req_fill;
                        res->rss_fill = (double)(rss_bytes() - rss0) / (double)req_fill;
                } else if (ph == PH_CHURN) {
                        res->space_churn =
                            (double)(st.pages * XV_PAGE_SIZE) / (double)req_churn;
                        res->rss_churn = (double)(rss_bytes() - rss0) / (double)req_churn;
                }
        }
        r = xv_pool_check(pool) ? -EIO : 0;
out:
        xv_pool_destroy(pool);
        free(h);
        return r;
}

static int run_glibc(const struct seq *q, struct result *res)
{
        void **h = calloc(q->nslots, sizeof(*h));
        uint64_t rss0, req_fill = live_bytes(q, q->phase_end[PH_FILL]);
        uint64_t req_churn = live_bytes(q, q->phase_end[PH_CHURN]);
        size_t i = 0;

        if (!h)
                return -ENOMEM;
        malloc_trim(0);
        rss0 = rss_bytes();
        for (int ph = 0; ph < NPHASES; ph++) {
                double t0 = now();

                for (; i < q->phase_end[ph]; i++) {
                        const struct op *o = &q->ops[i];

                        if (o->free_first)
                                free(h[o->slot]);
                        if (!o->alloc)
                                continue;
                        h[o->slot] = malloc(o->size);
                        if (!h[o->slot])
                                return -ENOMEM;
                        *(uint32_t *)h[o->slot] = o->slot;
                }
                res->secs[ph] = now() - t0;
                if (ph == PH_FILL || ph == PH_CHURN) {
                        struct mallinfo2 mi = mallinfo2();
                        double held = (double)(mi.arena + mi.hblkhd);
                        double rss = (double)(rss_bytes() - rss0);
                        uint64_t req = ph == PH_FILL ? req_fill : req_churn;

                        *(ph == PH_FILL ? &res->space_fill : &res->space_churn) =
                            held / (double)req;
                        *(ph == PH_FILL ? &res->rss_fill : &res->rss_churn) =
                            rss / (double)req;
                }
        }
        free(h);
        return 0;
}

static void phase_pairs(const struct seq *q, struct result *res)
{
        size_t i = 0;

        for (int ph = 0; ph < NPHASES; ph++) {
                res->pairs[ph] = 0;
                for (; i < q->phase_end[ph]; i++)
                        res->pairs[ph] += q->ops[i].alloc + q->ops[i].free_first;
        }
}

static double total_secs(const struct result *r)
{
        double s = 0;

        for (int ph = 0; ph < NPHASES; ph++)
                s += r->secs[ph];
        return s;
}

int main(int argc, char **argv)
{
        size_t nobj = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000;
        size_t steady = argc > 2 ? strtoull(argv[2], NULL, 0) : 2000000;
        size_t npages = argc > 3 ? strtoull(argv[3], NULL, 0) : 20000;
        uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
        uint64_t reserve = argc > 5 ? strtoull(argv[5], NULL, 0) : 0;
        struct result xv[2] = {0}, gl[2] = {0}, bx, bg;
        uint64_t nsizes_raw = 0, sum = 0;
        uint16_t *sizes;
        size_t nsizes;
        struct seq q;
        int r;

        if (nobj < 2 || nobj > UINT32_MAX) {
                fprintf(stderr, "bench_alloc: OBJECTS must be 2 .. 2^32-1\n");
                return 1;
        }
        r = corpus_sizes(seed, npages, &sizes, &nsizes);
        if (r < 0 || nsizes == 0) {
                fprintf(stderr, "bench_alloc: corpus: %s\n",
                        strerror(r < 0 ? -r : ENOENT));
                return 1;
        }
        for (size_t i = 0; i < nsizes; i++) {
                sum += sizes[i];
                nsizes_raw += sizes[i] == CORPUS_PAGE_SIZE;
        }
        r = seq_build(&q, nobj, steady, sizes, nsizes, seed);
        if (r < 0) {
                fprintf(stderr, "bench_alloc: %s\n", strerror(-r));
                return 1;
        }
        printf("sizes: %zu corpus pages (seed %" PRIu64
               "), %zu stored objects, mean %.0f B, "
               "%.1f%% raw pages (xv_page_alloc / malloc(4096))\n",
               npages, seed, nsizes, (double)sum / (double)nsizes,
               100.0 * (double)nsizes_raw / (double)nsizes);
        printf("sequence: %zu objects, %d half-churn rounds, %zu steady pairs; "
               "xv reserve %" PRIu64 " pages\n",
               nobj, ROUNDS, steady, reserve);

        /* Two alternating runs each; the faster of each allocator's two is kept. */
        for (int k = 0; k < 2; k++) {
                r = run_xv(&q, reserve, &xv[k]);
                if (r == 0)
                        r = run_glibc(&q, &gl[k]);
                if (r < 0) {
                        fprintf(stderr, "bench_alloc: run failed: %s\n", strerror(-r));
                        return 1;
                }
        }
        bx = total_secs(&xv[0]) <= total_secs(&xv[1]) ? xv[0] : xv[1];
        bg = total_secs(&gl[0]) <= total_secs(&gl[1]) ? gl[0] : gl[1];
        phase_pairs(&q, &bx);
        phase_pairs(&q, &bg);

        printf("\n%-8s %14s %14s %8s\n", "phase", "xv ns/op", "glibc ns/op", "glibc/xv");
        for (int ph = 0; ph < NPHASES; ph++) {
                double a = bx.secs[ph] * 1e9 / (double)bx.pairs[ph];
                double b = bg.secs[ph] * 1e9 / (double)bg.pairs[ph];
                printf("%-8s %14.1f %14.1f %8.2f\n", phase_names[ph], a, b, b / a);
        }
        {
                uint64_t pairs = 0;
                for (size_t i = 0; i < q.n; i++)
                        pairs += q.ops[i].alloc;
                printf("\nalloc+free pairs/s: xv %.3g, glibc %.3g, xv/glibc %.2f\n",
                       (double)pairs / total_secs(&bx), (double)pairs / total_secs(&bg),
                       total_secs(&bg) / total_secs(&bx));
        }
        printf("\nspace (bytes held / bytes requested; 1.00 = ideal):\n");
        printf("%-22s %10s %10s\n", "", "xv", "glibc");
        printf("%-22s %10.4f %10.4f\n", "after fill (held)", bx.space_fill,
               bg.space_fill);
        printf("%-22s %10.4f %10.4f\n", "after churn (held)", bx.space_churn,
               bg.space_churn);
        printf("%-22s %10.4f %10.4f\n", "after fill (RSS)", bx.rss_fill, bg.rss_fill);
        printf("%-22s %10.4f %10.4f\n", "after churn (RSS)", bx.rss_churn, bg.rss_churn);
        printf("(xv held = pool pages * 4096; glibc held = mallinfo2 arena + hblkhd)\n");
        free(q.ops);
        free(sizes);
        return 0;
}
