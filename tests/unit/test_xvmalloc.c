/* ramzswap: unit tests for the xvmalloc pool.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Every test gets a fresh pool (setup/teardown, or its own when it needs other
 * limits). Block geometry is checked through handles (offsets), the pool's counters
 * and xv_pool_check(); memory return through /proc/self/statm.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "ramzswap/xvmalloc.h"

#define OFF_MASK ((1u << XV_HANDLE_OFFSET_BITS) - 1u)
#define MIB      (1024u * 1024u)

static uint32_t handle_pfn(xv_handle h)
{
        return h >> XV_HANDLE_OFFSET_BITS;
}

/* Byte offset of the object in its page. */
static uint32_t handle_off(xv_handle h)
{
        return (h & OFF_MASK) << 2;
}

static uint64_t splitmix(uint64_t *s)
{
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t rss_bytes(void)
{
        unsigned long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "r");

        assert_non_null(f);
        assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
        fclose(f);
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* A pattern that differs per object (tag) and per position. */
static void fill(void *p, uint32_t size, uint32_t tag)
{
        uint8_t *b = p;
        uint64_t w = tag * UINT64_C(0x9e3779b97f4a7c15) + 1;
        uint32_t i = 0;

        for (; i + 8 <= size; i += 8) {
                memcpy(b + i, &w, 8);
                w = w * 6364136223846793005u + 1442695040888963407u;
        }
        for (; i < size; i++)
                b[i] = (uint8_t)(w >> (8 * (i & 7)));
}

static int verify(const void *p, uint32_t size, uint32_t tag)
{
        const uint8_t *b = p;
        uint64_t w = tag * UINT64_C(0x9e3779b97f4a7c15) + 1;
        uint32_t i = 0;

        for (; i + 8 <= size; i += 8) {
                if (memcmp(b + i, &w, 8) != 0)
                        return 0;
                w = w * 6364136223846793005u + 1442695040888963407u;
        }
        for (; i < size; i++)
                if (b[i] != (uint8_t)(w >> (8 * (i & 7))))
                        return 0;
        return 1;
}

static struct xv_pool_stats stats(const struct xv_pool *pool)
{
        struct xv_pool_stats st;

        xv_pool_get_stats(pool, &st);
        return st;
}

static xv_handle must_alloc(struct xv_pool *pool, uint32_t size)
{
        xv_handle h = 0;

        assert_int_equal(xv_malloc(pool, size, &h), 0);
        assert_int_not_equal(h, 0);
        return h;
}

static int setup(void **state)
{
        struct xv_pool *pool;

        if (xv_pool_create(0, 0, &pool) != 0)
                return -1;
        *state = pool;
        return 0;
}

static int teardown(void **state)
{
        struct xv_pool *pool = *state;
        unsigned bad = xv_pool_check(pool);

        xv_pool_destroy(pool);
        return bad ? -1 : 0;
}

static void test_create_args(void **state)
{
        struct xv_pool *pool = (struct xv_pool *)1;

        (void)state;
        assert_int_equal(xv_pool_create(4, 5, &pool), -EINVAL);
        assert_null(pool);
        assert_int_equal(xv_pool_create(0, XV_MAX_PAGES + 1, &pool), -EINVAL);
        assert_null(pool);
        assert_int_equal(xv_pool_create(4, 4, &pool), 0);
        assert_non_null(pool);
        assert_int_equal(stats(pool).reserve_pages, 4);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_pool_destroy(pool);
        xv_pool_destroy(NULL);
}

static void test_handle_encoding(void **state)
{
        struct xv_pool *pool = *state;
        xv_handle a = must_alloc(pool, 100), b = must_alloc(pool, 200), w = 0;
        uint8_t *base;

        assert_int_equal(xv_page_alloc(pool, &w), 0);
        assert_int_not_equal(handle_pfn(a), 0);
        assert_int_equal(handle_pfn(a), handle_pfn(b));
        /* The first block starts the page, the object follows its header. */
        assert_int_equal(handle_off(a), XV_HEADER_SIZE);
        assert_int_equal(handle_off(b), 104 + XV_HEADER_SIZE);
        base = xv_map(pool, a & ~OFF_MASK);
        assert_int_equal((uintptr_t)base % XV_PAGE_SIZE, 0);
        assert_ptr_equal(xv_map(pool, a), base + handle_off(a));
        assert_ptr_equal(xv_map(pool, b), base + handle_off(b));
        assert_ptr_equal(
            xv_map(pool, handle_pfn(a) << XV_HANDLE_OFFSET_BITS | handle_off(b) / 4),
            xv_map(pool, b));
        /* Whole pages: offset 0, page-aligned, another page. */
        assert_int_equal(handle_off(w), 0);
        assert_int_not_equal(handle_pfn(w), 0);
        assert_int_not_equal(handle_pfn(w), handle_pfn(a));
        assert_int_equal((uintptr_t)xv_map(pool, w) % XV_PAGE_SIZE, 0);
        /* The largest handle names the last page, as the header says. */
        assert_int_equal((uint64_t)(UINT32_MAX >> XV_HANDLE_OFFSET_BITS), XV_MAX_PAGES);
        xv_free(pool, a);
        xv_free(pool, b);
        xv_page_free(pool, w);
        assert_int_equal(stats(pool).pages, 0);
}

static void test_invalid_sizes(void **state)
{
        struct xv_pool *pool = *state;
        const uint32_t bad[] = {0, XV_MAX_ALLOC + 1, XV_PAGE_SIZE, UINT32_MAX};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                xv_handle h = 123;
                assert_int_equal(xv_malloc(pool, bad[i], &h), -EINVAL);
                assert_int_equal(h, 0);
        }
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).objects, 0);
}

struct obj {
        xv_handle h;
        uint32_t size;
        uint32_t tag;
        uint8_t *p;
};

static int cmp_addr(const void *a, const void *b)
{
        const struct obj *x = a, *y = b;
        return (x->p > y->p) - (x->p < y->p);
}

static void test_every_size(void **state)
{
        struct xv_pool *pool = *state;
        struct obj *o = calloc(XV_MAX_ALLOC + 1, sizeof(*o));
        uint64_t bytes = 0;

        assert_non_null(o);
        for (uint32_t s = 1; s <= XV_MAX_ALLOC; s++) {
                o[s].h = must_alloc(pool, s);
                o[s].size = s;
                o[s].tag = s * 7919u;
                o[s].p = xv_map(pool, o[s].h);
                assert_int_equal((uintptr_t)o[s].p % 4, 0);
                fill(o[s].p, s, o[s].tag);
                bytes += s + 3 < 28 ? 32 : ((s + 3) & ~3u) + 4;
        }
        assert_int_equal(stats(pool).objects, XV_MAX_ALLOC);
        assert_true(stats(pool).block_bytes >= bytes);
        assert_int_equal(xv_pool_check(pool), 0);
        for (uint32_t s = 1; s <= XV_MAX_ALLOC; s++)
                assert_true(verify(o[s].p, s, o[s].tag));
        /* Non-overlapping, and every object inside its own page. */
        qsort(o + 1, XV_MAX_ALLOC, sizeof(*o), cmp_addr);
        for (uint32_t k = 1; k <= XV_MAX_ALLOC; k++) {
                assert_true(handle_off(o[k].h) + o[k].size <= XV_PAGE_SIZE);
                if (k > 1)
                        assert_true(o[k - 1].p + o[k - 1].size <= o[k].p);
        }
        for (uint32_t k = 1; k <= XV_MAX_ALLOC; k++)
                xv_free(pool, o[k].h);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).objects, 0);
        assert_int_equal(stats(pool).block_bytes, 0);
        free(o);
}

/* Four objects whose blocks (1024 bytes each) tile one page exactly. */
static void fill_page(struct xv_pool *pool, xv_handle h[4])
{
        for (int i = 0; i < 4; i++) {
                h[i] = must_alloc(pool, 1020);
                assert_int_equal(handle_off(h[i]), i * 1024 + XV_HEADER_SIZE);
                assert_int_equal(handle_pfn(h[i]), handle_pfn(h[0]));
        }
        assert_int_equal(stats(pool).pages, 1);
        assert_int_equal(stats(pool).block_bytes, XV_PAGE_SIZE);
}

static void test_exact_fit_and_split(void **state)
{
        struct xv_pool *pool = *state;
        xv_handle h[4], x, y;

        fill_page(pool, h);
        xv_free(pool, h[1]);
        assert_int_equal(xv_pool_check(pool), 0);
        /* Exact fit: the hole is reused as it is. */
        x = must_alloc(pool, 1020);
        assert_int_equal(x, h[1]);
        assert_int_equal(stats(pool).pages, 1);
        assert_int_equal(xv_pool_check(pool), 0);
        /* Split: a smaller object takes the front of the hole, the rest stays free
         * and serves the next one. */
        xv_free(pool, x);
        x = must_alloc(pool, 500);
        assert_int_equal(x, h[1]);
        y = must_alloc(pool, 400);
        assert_int_equal(handle_pfn(y), handle_pfn(h[0]));
        assert_int_equal(handle_off(y), 1024 + 504 + XV_HEADER_SIZE);
        assert_int_equal(stats(pool).pages, 1);
        assert_int_equal(xv_pool_check(pool), 0);
        /* 1024 - 504 - 404 = 116 bytes left: a 200-byte object needs a new page. */
        x = must_alloc(pool, 200);
        assert_int_equal(stats(pool).pages, 2);
        assert_int_not_equal(handle_pfn(x), handle_pfn(h[0]));
        assert_int_equal(xv_pool_check(pool), 0);
}

static void test_tail_absorbed(void **state)
{
        struct xv_pool *pool = *state;
        /* A remainder under XV_MIN_BLOCK cannot be a block: it goes with the object. */
        xv_handle a = must_alloc(pool, XV_PAGE_SIZE - 28 - XV_HEADER_SIZE);

        assert_int_equal(stats(pool).block_bytes, XV_PAGE_SIZE);
        xv_free(pool, a);
        a = must_alloc(pool, XV_PAGE_SIZE - 32 - XV_HEADER_SIZE);
        assert_int_equal(stats(pool).block_bytes, XV_PAGE_SIZE - 32);
        assert_int_equal(xv_pool_check(pool), 0);
        /* The 32-byte tail is a real block and serves a small object. */
        xv_handle b = must_alloc(pool, 1);
        assert_int_equal(handle_pfn(b), handle_pfn(a));
        assert_int_equal(handle_off(b), XV_PAGE_SIZE - 32 + XV_HEADER_SIZE);
        assert_int_equal(stats(pool).pages, 1);
        xv_free(pool, a);
        xv_free(pool, b);
        assert_int_equal(stats(pool).pages, 0);
}

/* After frees that should merge [first, last] into one 1024*n-byte block, that
 * block alone serves an object of its full size in the same page. */
static void expect_merged(struct xv_pool *pool, xv_handle h[4], int first, int n)
{
        xv_handle x;

        assert_int_equal(xv_pool_check(pool), 0);
        x = must_alloc(pool, 1024u * (unsigned)n - XV_HEADER_SIZE);
        assert_int_equal(x, h[first]);
        assert_int_equal(stats(pool).pages, 1);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_free(pool, x);
}

static void test_coalesce_prev(void **state)
{
        struct xv_pool *pool = *state;
        xv_handle h[4];

        fill_page(pool, h);
        xv_free(pool, h[1]);
        xv_free(pool, h[2]); /* merges with h[1] before it */
        expect_merged(pool, h, 1, 2);
}

static void test_coalesce_next(void **state)
{
        struct xv_pool *pool = *state;
        xv_handle h[4];

        fill_page(pool, h);
        xv_free(pool, h[2]);
        xv_free(pool, h[1]); /* merges with h[2] after it */
        expect_merged(pool, h, 1, 2);
}

static void test_coalesce_both(void **state)
{
        struct xv_pool *pool = *state;
        xv_handle h[4];

        fill_page(pool, h);
        xv_free(pool, h[0]);
        xv_free(pool, h[2]);
        xv_free(pool, h[1]); /* merges with both */
        expect_merged(pool, h, 0, 3);
        /* And the last one empties the page, which leaves the pool. */
        xv_free(pool, h[3]);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).objects, 0);
        /* The emptied page is reused before a new one. */
        fill_page(pool, h);
        for (int i = 0; i < 4; i++)
                xv_free(pool, h[i]);
        assert_int_equal(stats(pool).pages, 0);
}

static void test_whole_pages(void **state)
{
        struct xv_pool *pool = *state;
        xv_handle w[3], o;

        o = must_alloc(pool, 10);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(xv_page_alloc(pool, &w[i]), 0);
                assert_int_equal(handle_off(w[i]), 0);
                fill(xv_map(pool, w[i]), XV_PAGE_SIZE, 1000u + (unsigned)i);
        }
        fill(xv_map(pool, o), 10, 7);
        assert_int_equal(stats(pool).pages, 4);
        assert_int_equal(stats(pool).whole_pages, 3);
        assert_int_equal(stats(pool).objects, 4);
        assert_int_equal(xv_pool_check(pool), 0);
        for (int i = 0; i < 3; i++)
                assert_true(
                    verify(xv_map(pool, w[i]), XV_PAGE_SIZE, 1000u + (unsigned)i));
        assert_true(verify(xv_map(pool, o), 10, 7));
        xv_page_free(pool, w[1]);
        assert_int_equal(stats(pool).whole_pages, 2);
        assert_int_equal(stats(pool).pages, 3);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_page_free(pool, w[0]);
        xv_page_free(pool, w[2]);
        xv_free(pool, o);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).block_bytes, 0);
}

static void test_max_pages(void **state)
{
        struct xv_pool *pool;
        xv_handle w[4], h, objs[64];
        int n = 0, r;

        (void)state;
        assert_int_equal(xv_pool_create(4, 0, &pool), 0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(xv_page_alloc(pool, &w[i]), 0);
        h = 99;
        assert_int_equal(xv_page_alloc(pool, &h), -ENOSPC);
        assert_int_equal(h, 0);
        h = 99;
        assert_int_equal(xv_malloc(pool, 100, &h), -ENOSPC);
        assert_int_equal(h, 0);
        assert_int_equal(xv_pool_check(pool), 0);
        /* Still works after: one page freed holds objects until it is full. */
        xv_page_free(pool, w[3]);
        while ((r = xv_malloc(pool, 1000, &h)) == 0) {
                assert_true(n < 64);
                objs[n++] = h;
                fill(xv_map(pool, h), 1000, (uint32_t)n);
        }
        assert_int_equal(r, -ENOSPC);
        assert_int_equal(n, 4);
        assert_int_equal(stats(pool).pages, 4);
        assert_int_equal(xv_pool_check(pool), 0);
        for (int i = 0; i < n; i++)
                assert_true(verify(xv_map(pool, objs[i]), 1000, (uint32_t)i + 1));
        xv_free(pool, objs[0]);
        assert_int_equal(xv_malloc(pool, 1000, &objs[0]), 0);
        for (int i = 0; i < n; i++)
                xv_free(pool, objs[i]);
        for (int i = 0; i < 3; i++)
                xv_page_free(pool, w[i]);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_pool_destroy(pool);
}

static void test_reserve(void **state)
{
        const uint32_t nres = 4096; /* 16 MiB */
        struct xv_pool *pool;
        xv_handle *w = calloc(nres + 100, sizeof(*w));
        uint64_t rss0, rss1, rss2, rss3;
        void *addr;

        (void)state;
        assert_non_null(w);
        rss0 = rss_bytes();
        assert_int_equal(xv_pool_create(0, nres, &pool), 0);
        rss1 = rss_bytes();
        assert_true(rss1 >= rss0 + (uint64_t)nres * XV_PAGE_SIZE * 9 / 10);
        assert_int_equal(stats(pool).reserve_pages, nres);
        assert_int_equal(stats(pool).pages, 0);
        /* Nothing to fault in ahead while the reserve lasts. */
        assert_int_equal(xv_pool_prefault_claim(pool, &addr), 0);

        /* Allocations are served from the reserve: no new memory. */
        for (uint32_t i = 0; i < nres; i++) {
                assert_int_equal(xv_page_alloc(pool, &w[i]), 0);
                memset(xv_map(pool, w[i]), 0xa5, XV_PAGE_SIZE);
        }
        rss2 = rss_bytes();
        assert_true(rss2 < rss1 + 2 * MIB);
        assert_int_equal(stats(pool).reserve_pages, 0);
        assert_int_equal(xv_pool_check(pool), 0);

        /* Past the reserve the pool grows; freeing refills the reserve first and
         * gives back only what is beyond it. */
        for (uint32_t i = nres; i < nres + 100; i++)
                assert_int_equal(xv_page_alloc(pool, &w[i]), 0);
        assert_int_equal(stats(pool).pages, nres + 100);
        for (uint32_t i = 0; i < nres + 100; i++)
                xv_page_free(pool, w[i]);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).reserve_pages, nres);
        assert_int_equal(xv_pool_check(pool), 0);
        rss3 = rss_bytes();
        assert_true(rss3 >= rss0 + (uint64_t)nres * XV_PAGE_SIZE * 9 / 10);
        xv_pool_destroy(pool);
        free(w);
}

/* A compressed-page-like size: mostly 1-2.5 KiB, some small, some near a page,
 * plus a uniform share; 0 means a whole page. */
static uint32_t random_size(uint64_t *seed)
{
        uint64_t r = splitmix(seed);
        unsigned pick = (unsigned)(r % 100);
        uint32_t v = (uint32_t)(r >> 32);

        if (pick < 5)
                return 0;
        if (pick < 55) /* sum of two uniforms: a hump around 1.6 KiB */
                return 400 + v % 1200 + (v >> 16) % 1200;
        if (pick < 70)
                return 1 + v % 400;
        if (pick < 80)
                return 3000 + v % (XV_MAX_ALLOC - 3000 + 1);
        return 1 + v % XV_MAX_ALLOC;
}

static void obj_alloc(struct xv_pool *pool, struct obj *o, uint32_t size, uint32_t tag)
{
        if (size == 0) {
                assert_int_equal(xv_page_alloc(pool, &o->h), 0);
                o->size = XV_PAGE_SIZE;
        } else {
                assert_int_equal(xv_malloc(pool, size, &o->h), 0);
                o->size = size;
        }
        o->tag = tag;
        fill(xv_map(pool, o->h), o->size, tag);
}

static void obj_free(struct xv_pool *pool, struct obj *o)
{
        assert_true(verify(xv_map(pool, o->h), o->size, o->tag));
        if (o->size == XV_PAGE_SIZE)
                xv_page_free(pool, o->h);
        else
                xv_free(pool, o->h);
}

static void test_random_sequence(void **state)
{
        enum { OPS = 1000000, MAXLIVE = 20000, CHECK_EVERY = 50000, PHASE = 125000 };
        struct xv_pool *pool = *state;
        struct obj *live = calloc(MAXLIVE, sizeof(*live));
        uint64_t seed = 20090714, bytes = 0;
        uint32_t n = 0, tag = 0;

        assert_non_null(live);
        for (uint32_t op = 1; op <= OPS; op++) {
                /* Alternate growing and shrinking phases so pages fill, empty, go
                 * back to the OS and are reused. */
                unsigned alloc_pct = (op / PHASE) % 2 ? 35 : 65;
                uint64_t r = splitmix(&seed);
                int do_alloc = n == 0 || (n < MAXLIVE && r % 100 < alloc_pct);

                if (do_alloc) {
                        obj_alloc(pool, &live[n], random_size(&seed), ++tag);
                        bytes += live[n].size;
                        n++;
                } else {
                        uint32_t k = (uint32_t)((r >> 32) % n);
                        obj_free(pool, &live[k]);
                        bytes -= live[k].size;
                        live[k] = live[--n];
                }
                if (op % CHECK_EVERY == 0) {
                        struct xv_pool_stats st = stats(pool);
                        assert_int_equal(xv_pool_check(pool), 0);
                        assert_int_equal(st.objects, n);
                        assert_true(st.block_bytes >= bytes);
                        assert_true(st.pages * XV_PAGE_SIZE >= st.block_bytes);
                }
        }
        assert_int_equal(xv_pool_check(pool), 0);
        while (n)
                obj_free(pool, &live[--n]);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).objects, 0);
        assert_int_equal(stats(pool).block_bytes, 0);
        assert_int_equal(xv_pool_check(pool), 0);
        free(live);
}

/* Emptied pages stay faulted in up to 1/32 of the data pages (the cache), are
 * reused first, and the cache shrinks with the data down to the reserve. */
static void test_page_cache(void **state)
{
        enum { N = 3200 };
        struct xv_pool *pool = *state;
        xv_handle *w = calloc(N, sizeof(*w));
        uint32_t k;

        assert_non_null(w);
        for (k = 0; k < N; k++) {
                assert_int_equal(xv_page_alloc(pool, &w[k]), 0);
                fill(xv_map(pool, w[k]), XV_PAGE_SIZE, k);
        }
        assert_int_equal(stats(pool).reserve_pages, 0);
        xv_page_free(pool, w[0]);
        assert_int_equal(stats(pool).reserve_pages, 1);
        for (k = 1; k < 200; k++) {
                xv_page_free(pool, w[k]);
                if (k % 32 == 0)
                        assert_int_equal(xv_pool_check(pool), 0);
        }
        /* 3000 data pages keep at most 93 free ones. */
        assert_int_equal(stats(pool).pages, N - 200);
        assert_int_equal(stats(pool).reserve_pages, (N - 200) >> 5);
        assert_int_equal(xv_pool_check(pool), 0);

        /* New pages come from the cache first. */
        for (k = 0; k < 50; k++) {
                assert_int_equal(xv_page_alloc(pool, &w[k]), 0);
                fill(xv_map(pool, w[k]), XV_PAGE_SIZE, N + k);
        }
        assert_int_equal(stats(pool).reserve_pages, ((N - 200) >> 5) - 50);
        for (k = 0; k < 50; k++)
                assert_true(verify(xv_map(pool, w[k]), XV_PAGE_SIZE, N + k));
        for (k = 200; k < N; k++)
                assert_true(verify(xv_map(pool, w[k]), XV_PAGE_SIZE, k));
        assert_int_equal(xv_pool_check(pool), 0);

        /* The cache follows the data down: nothing is kept once all is freed. */
        for (k = 0; k < 50; k++)
                xv_page_free(pool, w[k]);
        for (k = 200; k < N; k++) {
                xv_page_free(pool, w[k]);
                assert_true(stats(pool).reserve_pages <= stats(pool).pages >> 5);
                if (k % 256 == 0)
                        assert_int_equal(xv_pool_check(pool), 0);
        }
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(stats(pool).reserve_pages, 0);
        free(w);
}

/* Claims of memory to fault in run ahead of the carving, one step at a time, never
 * twice for the same pages and never before an arena exists. */
static void test_prefault_claim(void **state)
{
        struct xv_pool *pool = *state;
        uint8_t *prev = NULL;
        size_t len, claimed = 0;
        void *addr;
        xv_handle w;

        /* Nothing mapped yet: nothing to claim. */
        assert_int_equal(xv_pool_prefault_claim(pool, &addr), 0);
        assert_null(addr);
        for (unsigned i = 0; i < 200; i++) {
                assert_int_equal(xv_page_alloc(pool, &w), 0);
                len = xv_pool_prefault_claim(pool, &addr);
                if (len == 0) {
                        assert_null(addr);
                        continue;
                }
                assert_int_equal(len % XV_PAGE_SIZE, 0);
                /* Claims follow each other and lie beyond the page just carved. */
                assert_true((uint8_t *)addr > (uint8_t *)xv_map(pool, w));
                if (prev != NULL)
                        assert_ptr_equal(addr, prev);
                prev = (uint8_t *)addr + len;
                claimed += len;
                xv_prefault(addr, len);
                /* Claimed once: asking again at once gets nothing. */
                assert_int_equal(xv_pool_prefault_claim(pool, &addr), 0);
        }
        /* The claims kept up with the carving (200 pages, 16 per claim). */
        assert_true(claimed >= 11 * 16 * XV_PAGE_SIZE);
        assert_int_equal(xv_pool_check(pool), 0);
}

static int cmp_uintptr(const void *a, const void *b)
{
        uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;

        return (x > y) - (x < y);
}

/* Distinct pool pages holding o[0..n), sorted, into pages[]; returns how many. */
static size_t pool_pages_of(struct xv_pool *pool, const struct obj *o, size_t n,
                            uintptr_t *pages)
{
        size_t k = 0;

        for (size_t i = 0; i < n; i++)
                pages[i] =
                    (uintptr_t)xv_map(pool, o[i].h) & ~(uintptr_t)(XV_PAGE_SIZE - 1);
        qsort(pages, n, sizeof(*pages), cmp_uintptr);
        for (size_t i = 0; i < n; i++)
                if (k == 0 || pages[k - 1] != pages[i])
                        pages[k++] = pages[i];
        return k;
}

/* Bytes of those pages resident now (mincore): the pool's own memory, which a
 * process RSS blurs with the sanitizers' shadow and the test's own heap. */
static uint64_t resident_bytes(const uintptr_t *pages, size_t n)
{
        uint64_t bytes = 0;

        for (size_t i = 0; i < n; i++) {
                unsigned char in;

                assert_int_equal(mincore((void *)pages[i], XV_PAGE_SIZE, &in), 0);
                bytes += (in & 1) ? XV_PAGE_SIZE : 0;
        }
        return bytes;
}

static void test_rss_returns(void **state)
{
        enum { N = 40000 };
        struct xv_pool *pool = *state;
        struct obj *o = calloc(N, sizeof(*o));
        uintptr_t *pages = calloc(N, sizeof(*pages));
        uint64_t seed = 42, full, end;
        size_t npages;

        assert_non_null(o);
        assert_non_null(pages);
        for (uint32_t i = 0; i < N; i++)
                obj_alloc(pool, &o[i], 1200 + (uint32_t)(splitmix(&seed) % 800), i);
        npages = pool_pages_of(pool, o, N, pages);
        full = resident_bytes(pages, npages);
        assert_true(full >= 50 * MIB);
        /* Free in random order so pages empty at random moments. */
        for (uint32_t i = N; i > 1; i--) {
                uint32_t k = (uint32_t)(splitmix(&seed) % i);
                struct obj t = o[k];
                o[k] = o[i - 1];
                o[i - 1] = t;
        }
        for (uint32_t i = 0; i < N; i++)
                obj_free(pool, &o[i]);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(xv_pool_check(pool), 0);
        end = resident_bytes(pages, npages);
        print_message("pool pages resident: full %" PRIu64 " KiB, end %" PRIu64 " KiB\n",
                      full / 1024, end / 1024);
        /* What stays is the bounded cache of empty pages and nothing more. */
        assert_true(end < 4 * MIB);
        free(pages);
        free(o);
}

/* A may_grow hook whose answer the test sets; it counts the questions. */
struct grow_answer {
        bool yes;
        unsigned asked;
        uint64_t last_npages;
};

static bool fake_may_grow(void *ctx, uint64_t npages)
{
        struct grow_answer *a = ctx;

        a->asked++;
        a->last_npages = npages;
        return a->yes;
}

/* Sync mode: pages the pool keeps (reserve, cache) are always handed out; a page
 * from the OS is refused with -ENOSPC while may_grow says no, and a "yes" lasts 16
 * OS pages before the hook is asked again. */
static void test_may_grow(void **state)
{
        struct grow_answer ans = {.yes = false};
        struct xv_pool *pool;
        xv_handle h[40], x;
        void *addr;

        (void)state;
        assert_int_equal(xv_pool_create(0, 4, &pool), 0);
        xv_pool_set_may_grow(pool, fake_may_grow, &ans);
        for (int i = 0; i < 4; i++) /* the reserve */
                assert_int_equal(xv_page_alloc(pool, &h[i]), 0);
        assert_int_equal(ans.asked, 0);
        assert_int_equal(xv_page_alloc(pool, &x), -ENOSPC);
        assert_int_equal(x, 0);
        assert_int_equal(xv_malloc(pool, 100, &x), -ENOSPC);
        assert_int_equal(stats(pool).lowmem_refused, 2);
        assert_int_equal(ans.asked, 2);
        assert_int_equal(stats(pool).pages, 4);
        /* No fault-in ahead while the answer is no. */
        assert_int_equal(xv_pool_prefault_claim(pool, &addr), 0);

        /* A freed page is kept and reused whatever the hook says. */
        xv_page_free(pool, h[3]);
        assert_int_equal(xv_page_alloc(pool, &h[3]), 0);
        assert_int_equal(xv_page_alloc(pool, &x), -ENOSPC);

        /* One yes allows 16 OS pages; the 17th asks again. */
        ans.yes = true;
        for (int i = 4; i < 20; i++)
                assert_int_equal(xv_page_alloc(pool, &h[i]), 0);
        assert_int_equal(ans.asked, 4);
        assert_int_equal(ans.last_npages, 16);
        ans.yes = false;
        assert_int_equal(xv_page_alloc(pool, &x), -ENOSPC);
        assert_int_equal(ans.asked, 5);

        /* No hook: no question. */
        xv_pool_set_may_grow(pool, NULL, NULL);
        assert_int_equal(xv_page_alloc(pool, &h[20]), 0);
        assert_int_equal(stats(pool).lowmem_refused, 4);
        assert_int_equal(xv_pool_check(pool), 0);
        for (int i = 0; i <= 20; i++)
                xv_page_free(pool, h[i]);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_pool_destroy(pool);
}

/* Minor page faults this thread took so far. */
static long thread_minflt(void)
{
        struct rusage ru;

        assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
        return ru.ru_minflt;
}

/* Refill the stock to its target as the refill thread would, with lock held. */
static int refill_all(struct xv_pool *pool, pthread_mutex_t *lock)
{
        int r, total = 0;

        pthread_mutex_lock(lock);
        while ((r = xv_pool_refill(pool, lock)) > 0)
                total += r;
        pthread_mutex_unlock(lock);
        return r < 0 ? r : total;
}

struct refiller {
        struct xv_pool *pool;
        pthread_mutex_t lock;
        pthread_t thread;
};

static void *refiller_main(void *arg)
{
        struct refiller *rf = arg;

        (void)refill_all(rf->pool, &rf->lock);
        return NULL;
}

/* Stock pages now, read under the lock. */
static uint64_t stock_now(struct refiller *rf)
{
        uint64_t n;

        pthread_mutex_lock(&rf->lock);
        n = stats(rf->pool).reserve_pages;
        pthread_mutex_unlock(&rf->lock);
        return n;
}

/* Take every page of the stock; each is already faulted in. */
static uint32_t drain_stock(struct xv_pool *pool, xv_handle *w, uint32_t max)
{
        uint32_t n = 0;

        while (n < max && xv_page_alloc(pool, &w[n]) == 0) {
                memset(xv_map(pool, w[n]), 0x5a, XV_PAGE_SIZE);
                n++;
        }
        return n;
}

/* Refill mode: allocations take only the stock and fail at once when it is empty,
 * without faulting anything in; refilling (here on another thread, as in the
 * device) brings the stock back and allocations succeed again. */
static void test_refill_no_fault(void **state)
{
        enum { MAX = 4096 };
        struct refiller rf = {.lock = PTHREAD_MUTEX_INITIALIZER};
        xv_handle *w = calloc(MAX, sizeof(*w)), x;
        uint64_t target, rss0;
        uint32_t n, m;
        long flt0;

        (void)state;
        assert_non_null(w);
        assert_int_equal(xv_pool_create(0, 0, &rf.pool), 0);
        xv_pool_set_refill(rf.pool, true);
        target = stats(rf.pool).stock_target;
        assert_true(target >= 1024);
        /* Nothing in stock: refused at once, and no memory taken. */
        rss0 = rss_bytes();
        flt0 = thread_minflt();
        for (int i = 0; i < 1000; i++) {
                assert_int_equal(xv_page_alloc(rf.pool, &x), -EAGAIN);
                assert_int_equal(xv_malloc(rf.pool, 100, &x), -EAGAIN);
        }
        assert_true(thread_minflt() - flt0 < 16);
        assert_true(rss_bytes() < rss0 + 256 * 1024);
        assert_int_equal(stats(rf.pool).stock_empty, 2000);
        assert_int_equal(stats(rf.pool).pages, 0);

        assert_int_equal(refill_all(rf.pool, &rf.lock), (int)target);
        assert_int_equal(stats(rf.pool).reserve_pages, target);
        assert_int_equal(xv_pool_check(rf.pool), 0);
        /* The stock is spent without a single fault, then refused again. */
        flt0 = thread_minflt();
        n = drain_stock(rf.pool, w, MAX);
        assert_true(thread_minflt() - flt0 < 16);
        assert_true(n >= target && n < MAX);
        assert_int_equal(xv_page_alloc(rf.pool, &x), -EAGAIN);
        assert_true(xv_pool_stock_low(rf.pool));
        assert_int_equal(xv_pool_check(rf.pool), 0);

        /* Refill on another thread; wait (no timing assertion) for the stock. */
        assert_int_equal(pthread_create(&rf.thread, NULL, refiller_main, &rf), 0);
        for (int i = 0; i < 100000 && stock_now(&rf) < stats(rf.pool).stock_target; i++)
                usleep(100);
        pthread_join(rf.thread, NULL);
        assert_true(stats(rf.pool).reserve_pages >= stats(rf.pool).stock_target);
        m = drain_stock(rf.pool, w + n, MAX - n);
        assert_true(m > 0);
        for (uint32_t i = 0; i < n + m; i++)
                xv_page_free(rf.pool, w[i]);
        assert_int_equal(stats(rf.pool).pages, 0);
        assert_int_equal(xv_pool_check(rf.pool), 0);
        xv_pool_destroy(rf.pool);
        free(w);
}

/* A may_grow "no" stops refills (the stock stays as it is, the reserve counts as
 * stock); a "yes" lets them fill up to the target. */
static void test_refill_may_grow(void **state)
{
        pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        struct grow_answer ans = {.yes = false};
        struct xv_pool *pool;

        (void)state;
        assert_int_equal(xv_pool_create(0, 8, &pool), 0);
        xv_pool_set_may_grow(pool, fake_may_grow, &ans);
        xv_pool_set_refill(pool, true);
        assert_int_equal(stats(pool).reserve_pages, 8);
        assert_int_equal(refill_all(pool, &lock), -EAGAIN);
        /* A whole batch, then a few pages. */
        assert_int_equal(ans.asked, 2);
        assert_int_equal(ans.last_npages, 16);
        assert_int_equal(stats(pool).reserve_pages, 8);
        assert_int_equal(stats(pool).refilled, 0);
        assert_int_equal(stats(pool).lowmem_refused, 1);
        assert_int_equal(xv_pool_check(pool), 0);

        ans.yes = true;
        assert_int_equal(refill_all(pool, &lock), (int)stats(pool).stock_target - 8);
        assert_int_equal(stats(pool).reserve_pages, stats(pool).stock_target);
        assert_int_equal(stats(pool).refilled, stats(pool).stock_target - 8);
        assert_int_equal(xv_pool_check(pool), 0);
        /* Full: nothing to do, nothing asked. */
        ans.asked = 0;
        assert_int_equal(refill_all(pool, &lock), 0);
        assert_int_equal(ans.asked, 0);
        /* Off again: the stock shrinks back to the reserve. */
        xv_pool_set_refill(pool, false);
        assert_int_equal(stats(pool).reserve_pages, 8);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_pool_destroy(pool);
}

/* Refill mode under churn: pages are freed (released or kept) and allocated while
 * the stock is refilled from released pages and across arenas (8192 pages each);
 * the stock respects max_pages. */
static void test_refill_churn(void **state)
{
        enum { N = 20000, LIMIT = 19000 };
        pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        struct obj *o = calloc(N, sizeof(*o));
        uint64_t seed = 7;
        struct xv_pool *pool;
        uint32_t n = 0;

        (void)state;
        assert_non_null(o);
        assert_int_equal(xv_pool_create(LIMIT, 0, &pool), 0);
        xv_pool_set_refill(pool, true);
        for (uint32_t op = 0; op < 200000; op++) {
                uint64_t r = splitmix(&seed);
                bool grow = (op / 40000) % 2 == 0;

                if (n < N && (n == 0 || r % 100 < (grow ? 70u : 30u))) {
                        uint32_t size = r >> 40 & 1 ? 0 : 1 + (uint32_t)(r >> 8) % 3000;
                        xv_handle h;
                        int e =
                            size ? xv_malloc(pool, size, &h) : xv_page_alloc(pool, &h);

                        if (e == -EAGAIN || e == -ENOSPC) {
                                assert_true(refill_all(pool, &lock) >= 0 ||
                                            stats(pool).pages >= LIMIT - 1);
                                continue;
                        }
                        assert_int_equal(e, 0);
                        o[n].h = h;
                        o[n].size = size ? size : XV_PAGE_SIZE;
                        o[n].tag = op;
                        fill(xv_map(pool, h), o[n].size, op);
                        n++;
                } else {
                        uint32_t k = (uint32_t)(r >> 16) % n;

                        obj_free(pool, &o[k]);
                        o[k] = o[--n];
                }
                if (op % 20000 == 0) {
                        assert_int_equal(xv_pool_check(pool), 0);
                        assert_true(stats(pool).pages + stats(pool).stock_target <=
                                        LIMIT ||
                                    stats(pool).stock_target == 0);
                }
        }
        assert_true(stats(pool).refilled > 8192); /* more than one arena's worth */
        while (n)
                obj_free(pool, &o[--n]);
        assert_int_equal(stats(pool).pages, 0);
        assert_int_equal(xv_pool_check(pool), 0);
        xv_pool_destroy(pool);
        free(o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_create_args),
            cmocka_unit_test_setup_teardown(test_handle_encoding, setup, teardown),
            cmocka_unit_test_setup_teardown(test_invalid_sizes, setup, teardown),
            cmocka_unit_test_setup_teardown(test_every_size, setup, teardown),
            cmocka_unit_test_setup_teardown(test_exact_fit_and_split, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tail_absorbed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_coalesce_prev, setup, teardown),
            cmocka_unit_test_setup_teardown(test_coalesce_next, setup, teardown),
            cmocka_unit_test_setup_teardown(test_coalesce_both, setup, teardown),
            cmocka_unit_test_setup_teardown(test_whole_pages, setup, teardown),
            cmocka_unit_test(test_max_pages),
            cmocka_unit_test(test_reserve),
            cmocka_unit_test_setup_teardown(test_random_sequence, setup, teardown),
            cmocka_unit_test_setup_teardown(test_page_cache, setup, teardown),
            cmocka_unit_test_setup_teardown(test_prefault_claim, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rss_returns, setup, teardown),
            cmocka_unit_test(test_may_grow),
            cmocka_unit_test(test_refill_no_fault),
            cmocka_unit_test(test_refill_may_grow),
            cmocka_unit_test(test_refill_churn),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
