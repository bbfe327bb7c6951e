/* Unit tests for the compressed page device (src/device.c): a model-based random
 * test against a plain array, focused tests of the I/O rules, and threads. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lzo/lzo1x.h>

#include "ramzswap/device.h"

#include "pagegen.h"

#define PAGE RZS_PAGE_SIZE

/* ---- helpers ---- */

static struct rzs_device *make_dev(uint64_t disksize, uint64_t memlimit)
{
        struct rzs_config cfg = {.disksize = disksize, .memlimit = memlimit};
        struct rzs_device *dev;

        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        assert_non_null(dev);
        return dev;
}

static struct rzs_stats stats(struct rzs_device *dev)
{
        struct rzs_stats s;

        rzs_device_get_stats(dev, &s);
        return s;
}

static bool is_zero(const unsigned char *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i] != 0)
                        return false;
        return true;
}

static uint32_t get_u32(const unsigned char *p, size_t off)
{
        uint32_t v;

        memcpy(&v, p + off, 4);
        return v;
}

/* ---- model-based random test ---- */

enum mstate { M_EMPTY, M_ZERO, M_SAME, M_STORED };

struct model {
        uint64_t pages;
        unsigned char *data; /* what every slot must read as */
        enum mstate *state;  /* what the slot holds */
        uint32_t *clen;      /* LZO size for M_STORED slots */
        uint64_t reads, writes, discards, invalid;
        void *lzo_wrk;
        unsigned char lzo_out[PAGE + PAGE / 16 + 64 + 3];
};

/* Where the device's write path must put this page, decided independently. */
static void model_classify(struct model *m, const unsigned char *p, enum mstate *st,
                           uint32_t *clen)
{
        lzo_uint len = 0;
        uint32_t first = get_u32(p, 0);
        bool same = true;

        for (size_t i = 4; i < PAGE && same; i += 4)
                same = get_u32(p, i) == first;
        *clen = 0;
        if (same) {
                *st = first == 0 ? M_ZERO : M_SAME;
                return;
        }
        assert_int_equal(lzo1x_1_compress(p, PAGE, m->lzo_out, &len, m->lzo_wrk),
                         LZO_E_OK);
        *st = M_STORED;
        *clen = (uint32_t)len;
}

static void model_check_stats(struct model *m, struct rzs_device *dev)
{
        uint64_t zero = 0, same = 0, stored = 0, raw = 0, good = 0, compr = 0;
        struct rzs_stats s = stats(dev);

        for (uint64_t i = 0; i < m->pages; i++) {
                zero += m->state[i] == M_ZERO;
                same += m->state[i] == M_SAME;
                if (m->state[i] != M_STORED)
                        continue;
                stored++;
                if (m->clen[i] > PAGE / 4 * 3) {
                        raw++;
                        compr += PAGE;
                } else {
                        good += m->clen[i] <= PAGE / 2;
                        compr += m->clen[i];
                }
        }
        assert_int_equal(s.zero_pages, zero);
        assert_int_equal(s.same_pages, same);
        assert_int_equal(s.pages_stored, stored);
        assert_int_equal(s.no_compress, raw);
        assert_int_equal(s.good_compress, good);
        assert_int_equal(s.compr_data_size, compr);
        assert_int_equal(s.orig_data_size, stored * PAGE);
        assert_int_equal(s.num_reads, m->reads);
        assert_int_equal(s.num_writes, m->writes);
        assert_int_equal(s.pages_discard, m->discards);
        assert_int_equal(s.invalid_io, m->invalid);
        assert_int_equal(s.failed_reads, 0);
        assert_int_equal(s.failed_writes, 0);
        assert_int_equal(s.mem_used_total, s.pages_used * PAGE);
        assert_true(s.mem_used_max >= s.mem_used_total);
        /* Every stored object takes pool bytes; raw pages take a page each. */
        assert_true(s.pool_block_bytes >= compr - raw * PAGE);
        assert_true(s.pages_used >= raw);
        if (stored == 0)
                assert_int_equal(s.pages_used, 0);
}

static void random_ops(uint64_t seed, unsigned ops)
{
        enum { PAGES = 1024, MAX_REQ = 32 };
        struct rzs_device *dev = make_dev((uint64_t)PAGES * PAGE + 123, 0);
        struct model m = {.pages = PAGES};
        unsigned char *buf = malloc((size_t)MAX_REQ * PAGE);

        m.data = calloc(PAGES, PAGE);
        m.state = calloc(PAGES, sizeof(*m.state));
        m.clen = calloc(PAGES, sizeof(*m.clen));
        m.lzo_wrk = malloc(LZO1X_1_MEM_COMPRESS);
        assert_true(buf && m.data && m.state && m.clen && m.lzo_wrk);
        assert_int_equal(rzs_device_size(dev), (uint64_t)PAGES * PAGE);

        /* Slot 0 starts as the swap header; it is not a stored page. */
        assert_int_equal(rzs_device_read(dev, m.data, PAGE, 0), 0);
        m.reads++;
        assert_memory_equal(m.data + PAGE - 10, "SWAPSPACE2", 10);

        for (unsigned op = 0; op < ops; op++) {
                uint64_t r = next_rand(&seed);
                unsigned what = r % 100;
                uint64_t n = (r >> 8) % 8 == 0 ? 1 + (r >> 16) % MAX_REQ : 1;
                uint64_t first = (r >> 24) % PAGES;

                if (first + n > PAGES)
                        n = PAGES - first;
                unsigned char *model_at = m.data + first * PAGE;

                if (what < 40) {
                        for (uint64_t i = 0; i < n; i++) {
                                enum kind k = (enum kind)(next_rand(&seed) % K_KINDS);

                                fill_kind(buf + i * PAGE, k, next_rand(&seed));
                        }
                        assert_int_equal(
                            rzs_device_write(dev, buf, n * PAGE, first * PAGE), 0);
                        memcpy(model_at, buf, n * PAGE);
                        for (uint64_t i = 0; i < n; i++)
                                model_classify(&m, buf + i * PAGE, &m.state[first + i],
                                               &m.clen[first + i]);
                        m.writes += n;
                } else if (what < 80) {
                        memset(buf, 0xcc, n * PAGE);
                        assert_int_equal(
                            rzs_device_read(dev, buf, n * PAGE, first * PAGE), 0);
                        assert_memory_equal(buf, model_at, n * PAGE);
                        m.reads += n;
                } else if (what < 95) {
                        int rc = what < 88 ? rzs_device_trim(dev, n * PAGE, first * PAGE)
                                           : rzs_device_zero(dev, n * PAGE, first * PAGE);

                        assert_int_equal(rc, 0);
                        memset(model_at, 0, n * PAGE);
                        for (uint64_t i = first; i < first + n; i++) {
                                m.discards += m.state[i] != M_EMPTY;
                                m.state[i] = M_EMPTY;
                        }
                } else {
                        /* Misaligned by a random non-page amount, or past the end. */
                        uint64_t off = first * PAGE + 1 + (r >> 40) % (PAGE - 1);
                        uint64_t len = n * PAGE;

                        if (what == 99) {
                                off = first * PAGE;
                                len = (PAGES - first + 1) * PAGE;
                        }
                        assert_int_equal(rzs_device_read(dev, buf, len, off), -EINVAL);
                        m.invalid++;
                }
                if (op % 20000 == 19999) {
                        assert_int_equal(rzs_device_check(dev), 0);
                        model_check_stats(&m, dev);
                }
        }

        /* Every page, read in one request. */
        unsigned char *all = malloc((size_t)PAGES * PAGE);
        assert_non_null(all);
        assert_int_equal(rzs_device_read(dev, all, (uint64_t)PAGES * PAGE, 0), 0);
        m.reads += PAGES;
        assert_memory_equal(all, m.data, (size_t)PAGES * PAGE);
        assert_int_equal(rzs_device_check(dev), 0);
        model_check_stats(&m, dev);
        struct rzs_stats mid = stats(dev);
        assert_true(mid.mem_used_max > 0);
        /* The mix reached every store path: zero, same, good, middling, raw. */
        assert_true(mid.zero_pages > 0 && mid.same_pages > 0);
        assert_true(mid.good_compress > 0 && mid.no_compress > 0);
        assert_true(mid.pages_stored > mid.good_compress + mid.no_compress);

        /* Trimming everything gives every byte back. */
        assert_int_equal(rzs_device_trim(dev, (uint64_t)PAGES * PAGE, 0), 0);
        for (uint64_t i = 0; i < PAGES; i++) {
                m.discards += m.state[i] != M_EMPTY;
                m.state[i] = M_EMPTY;
        }
        memset(m.data, 0, (size_t)PAGES * PAGE);
        assert_int_equal(rzs_device_check(dev), 0);
        model_check_stats(&m, dev);
        struct rzs_stats s = stats(dev);
        assert_int_equal(s.pages_used, 0);
        assert_int_equal(s.mem_used_total, 0);
        assert_int_equal(s.pool_block_bytes, 0);
        assert_int_equal(rzs_device_read(dev, all, (uint64_t)PAGES * PAGE, 0), 0);
        assert_true(is_zero(all, (size_t)PAGES * PAGE));

        free(all);
        free(buf);
        free(m.data);
        free(m.state);
        free(m.clen);
        free(m.lzo_wrk);
        rzs_device_destroy(dev);
}

static void test_random_model(void **state)
{
        (void)state;
        random_ops(0x243f6a8885a308d3ull, 200000);
        random_ops(0x13198a2e03707344ull, 20000);
}

/* ---- focused tests ---- */

static void test_config_errors(void **state)
{
        struct rzs_device *dev = (void *)1;
        struct rzs_config cfg = {.disksize = 0};
        (void)state;

        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        assert_null(dev);
        cfg.disksize = PAGE - 1;
        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        cfg.disksize = 16 * PAGE;
        cfg.memlimit = 17 * PAGE;
        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        cfg.memlimit = 100; /* below one page: would mean no pages at all */
        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        cfg.memlimit = 4 * PAGE;
        cfg.reserve = 5 * PAGE;
        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        cfg.reserve = 2 * PAGE;
        cfg.compressor = "no-such-codec";
        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        assert_null(dev);
        cfg.compressor = "lzo";
        cfg.workspaces = 1;
        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        assert_int_equal(stats(dev).memlimit, 4 * PAGE);
        assert_int_equal(stats(dev).disksize, 16 * PAGE);
        rzs_device_destroy(dev);
        rzs_device_destroy(NULL);
}

/* The pool addresses at most 2^22-1 pages: a larger memlimit or reserve is refused
 * with the limit in bytes rather than capped quietly, so MemLimit is the limit in
 * force. The check comes before anything is allocated. */
static void test_memlimit_above_pool(void **state)
{
        const uint64_t max = ((UINT64_C(1) << 22) - 1) * PAGE;
        struct rzs_config cfg = {.disksize = UINT64_C(20) << 30,
                                 .memlimit = UINT64_C(17) << 30};
        struct rzs_device *dev = (void *)1;
        char msg[256];
        (void)state;

        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), -EINVAL);
        assert_null(dev);
        assert_string_equal(msg, "memlimit (18253611008 bytes) is more than the pool can "
                                 "address (17179865088 bytes, 2^22-1 pages of 4 KiB)");
        cfg.memlimit = 0; /* no limit of its own: the reserve is still bounded */
        cfg.reserve = max + PAGE;
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), -EINVAL);
        assert_string_equal(msg, "reserve (17179869184 bytes) is more than the pool can "
                                 "address (17179865088 bytes, 2^22-1 pages of 4 KiB)");
        /* At the maximum it is accepted and reported as given. */
        cfg.reserve = 0;
        cfg.memlimit = max;
        cfg.disksize = 64 * PAGE + max;
        cfg.workspaces = 1;
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), 0);
        assert_int_equal(stats(dev).memlimit, max);
        rzs_device_destroy(dev);
}

static void test_invalid_requests(void **state)
{
        struct rzs_device *dev = make_dev(64 * PAGE, 0);
        unsigned char buf[2 * PAGE];
        const uint64_t end = 64 * PAGE;
        const struct {
                uint64_t len, off;
        } bad[] = {
            {PAGE, 1},
            {PAGE, PAGE / 2},
            {PAGE + 512, 0},
            {512, PAGE},
            {PAGE, end},
            {2 * PAGE, end - PAGE},
            {PAGE, end + PAGE},
            {PAGE, UINT64_MAX - PAGE + 1},
            {UINT64_MAX - PAGE + 1, PAGE},
        };
        uint64_t expect = 0;
        (void)state;

        memset(buf, 0x11, sizeof(buf));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(rzs_device_read(dev, buf, bad[i].len, bad[i].off),
                                 -EINVAL);
                assert_int_equal(rzs_device_write(dev, buf, bad[i].len, bad[i].off),
                                 -EINVAL);
                assert_int_equal(rzs_device_trim(dev, bad[i].len, bad[i].off), -EINVAL);
                assert_int_equal(rzs_device_zero(dev, bad[i].len, bad[i].off), -EINVAL);
                expect += 4;
                assert_int_equal(stats(dev).invalid_io, expect);
        }
        struct rzs_stats s = stats(dev);
        assert_int_equal(s.invalid_io, expect);
        /* Refused requests did nothing. */
        assert_int_equal(s.num_reads + s.num_writes + s.failed_writes + s.failed_reads,
                         0);
        assert_int_equal(s.pages_stored + s.same_pages + s.zero_pages, 0);
        /* The last page is in range. */
        assert_int_equal(rzs_device_write(dev, buf, PAGE, end - PAGE), 0);
        assert_int_equal(rzs_device_read(dev, buf + PAGE, PAGE, end - PAGE), 0);
        assert_memory_equal(buf, buf + PAGE, PAGE);
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev);
}

static void test_never_written_reads_zero(void **state)
{
        enum { PAGES = 300 };
        struct rzs_device *dev = make_dev(PAGES * PAGE, 0);
        unsigned char *buf = malloc((size_t)PAGES * PAGE);
        (void)state;

        assert_non_null(buf);
        memset(buf, 0xff, (size_t)PAGES * PAGE);
        assert_int_equal(rzs_device_read(dev, buf, (PAGES - 1) * PAGE, PAGE), 0);
        assert_true(is_zero(buf, (size_t)(PAGES - 1) * PAGE));
        struct rzs_stats s = stats(dev);
        assert_int_equal(s.num_reads, PAGES - 1);
        assert_int_equal(s.zero_pages, 0); /* never written is not a zero page */
        assert_int_equal(s.pages_used, 0);
        /* Trimming never-written slots frees nothing and discards nothing. */
        assert_int_equal(rzs_device_trim(dev, (PAGES - 1) * PAGE, PAGE), 0);
        assert_int_equal(stats(dev).pages_discard, 0);
        /* A zero page written as data counts as one. */
        memset(buf, 0, PAGE);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, 5 * PAGE), 0);
        assert_int_equal(stats(dev).zero_pages, 1);
        assert_int_equal(stats(dev).pages_used, 0);
        assert_int_equal(rzs_device_zero(dev, PAGE, 5 * PAGE), 0);
        assert_int_equal(stats(dev).zero_pages, 0);
        assert_int_equal(stats(dev).pages_discard, 1);
        free(buf);
        rzs_device_destroy(dev);
}

static void check_header(const unsigned char *p, uint64_t pages)
{
        assert_true(is_zero(p, 1024));
        assert_int_equal(get_u32(p, 1024), 1);
        assert_int_equal(get_u32(p, 1028), pages - 1);
        assert_int_equal(get_u32(p, 1032), 0);
        assert_int_equal(p[1036 + 6] >> 4, 4);
        assert_memory_equal(p + 1052, "ramzswap", 8);
        assert_memory_equal(p + PAGE - 10, "SWAPSPACE2", 10);
}

static void test_slot0_header(void **state)
{
        enum { PAGES = 50 };
        unsigned char buf[3 * PAGE], again[PAGE], page[PAGE];
        struct rzs_device *dev;
        (void)state;

        /* Shown until trimmed. */
        dev = make_dev(PAGES * PAGE, 0);
        assert_int_equal(rzs_device_read(dev, buf, 2 * PAGE, 0), 0);
        check_header(buf, PAGES);
        assert_true(is_zero(buf + PAGE, PAGE));
        assert_int_equal(rzs_device_read(dev, again, PAGE, 0), 0);
        assert_memory_equal(buf, again, PAGE);
        assert_int_equal(stats(dev).pages_stored, 0);
        assert_int_equal(rzs_device_check(dev), 0);
        assert_int_equal(rzs_device_trim(dev, 2 * PAGE, 0), 0);
        assert_int_equal(rzs_device_read(dev, buf, PAGE, 0), 0);
        assert_true(is_zero(buf, PAGE));
        assert_int_equal(stats(dev).pages_discard, 0);
        rzs_device_destroy(dev);

        /* Until zeroed. */
        dev = make_dev(PAGES * PAGE, 0);
        assert_int_equal(rzs_device_zero(dev, PAGE, 0), 0);
        assert_int_equal(rzs_device_read(dev, buf, PAGE, 0), 0);
        assert_true(is_zero(buf, PAGE));
        rzs_device_destroy(dev);

        /* Until written, and a fresh device has a fresh UUID. */
        dev = make_dev(PAGES * PAGE, 0);
        assert_int_equal(rzs_device_read(dev, again, PAGE, 0), 0);
        check_header(again, PAGES);
        assert_memory_not_equal(again + 1036, buf + 1036, 16);
        fill_text(page, 7);
        assert_int_equal(rzs_device_write(dev, page, PAGE, 0), 0);
        assert_int_equal(rzs_device_read(dev, buf, PAGE, 0), 0);
        assert_memory_equal(buf, page, PAGE);
        assert_int_equal(rzs_device_trim(dev, PAGE, 0), 0);
        assert_int_equal(rzs_device_read(dev, buf, PAGE, 0), 0);
        assert_true(is_zero(buf, PAGE)); /* the header does not come back */
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev);
}

static void test_memlimit(void **state)
{
        enum { LIMIT = 16 };
        struct rzs_device *dev = make_dev(256 * PAGE, LIMIT * PAGE);
        unsigned char a[PAGE], b[PAGE], buf[4 * PAGE];
        uint64_t filled = 0;
        int rc;
        (void)state;

        /* Incompressible pages take a whole pool page each. */
        fill_noise(a, PAGE, 1);
        for (;;) {
                fill_noise(buf, PAGE, 100 + filled);
                rc = rzs_device_write(dev, buf, PAGE, (filled + 1) * PAGE);
                if (rc != 0)
                        break;
                filled++;
                assert_true(filled <= LIMIT);
        }
        assert_int_equal(rc, -ENOSPC);
        assert_int_equal(filled, LIMIT);
        struct rzs_stats s = stats(dev);
        assert_int_equal(s.failed_writes, 1);
        assert_int_equal(s.mem_used_total, LIMIT * PAGE);
        assert_int_equal(s.no_compress, LIMIT);

        /* An overwrite needs its new object before the old one goes: refused, and
         * the old contents stay. */
        fill_noise(b, PAGE, 999);
        assert_int_equal(rzs_device_write(dev, b, PAGE, PAGE), -ENOSPC);
        assert_int_equal(rzs_device_read(dev, buf, PAGE, PAGE), 0);
        fill_noise(a, PAGE, 100);
        assert_memory_equal(buf, a, PAGE);
        /* Compressible data needs a pool page too, none left. */
        fill_text(buf, 3);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, 200 * PAGE), -ENOSPC);
        /* Same-filled pages need no memory, so they pass the limit. */
        fill_same(buf, 0x01020304);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, 201 * PAGE), 0);
        /* A multi-page write stops at the first page that does not fit. */
        fill_same(buf, 0x0a0a0a0a);
        fill_noise(buf + PAGE, PAGE, 5);
        fill_same(buf + 2 * PAGE, 0x0b0b0b0b);
        assert_int_equal(rzs_device_write(dev, buf, 3 * PAGE, 210 * PAGE), -ENOSPC);
        assert_int_equal(rzs_device_read(dev, buf + 3 * PAGE, PAGE, 210 * PAGE), 0);
        assert_memory_equal(buf + 3 * PAGE, buf, PAGE);
        assert_int_equal(rzs_device_read(dev, buf + 3 * PAGE, PAGE, 212 * PAGE), 0);
        assert_true(is_zero(buf + 3 * PAGE, PAGE));
        assert_int_equal(stats(dev).failed_writes, 4);
        assert_int_equal(rzs_device_check(dev), 0);

        /* Trimming frees room: the refused overwrite now succeeds. */
        assert_int_equal(rzs_device_trim(dev, PAGE, 2 * PAGE), 0);
        assert_int_equal(rzs_device_write(dev, b, PAGE, PAGE), 0);
        assert_int_equal(rzs_device_read(dev, buf, PAGE, PAGE), 0);
        assert_memory_equal(buf, b, PAGE);
        assert_true(stats(dev).mem_used_max <= LIMIT * PAGE);
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev);
}

static void test_reserve(void **state)
{
        struct rzs_config cfg = {
            .disksize = 64 * PAGE, .memlimit = 32 * PAGE, .reserve = 8 * PAGE};
        struct rzs_device *dev;
        unsigned char buf[PAGE], back[PAGE];
        (void)state;

        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        assert_int_equal(stats(dev).mem_used_total, 0); /* reserve is not data */
        fill_text(buf, 11);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, 3 * PAGE), 0);
        assert_int_equal(rzs_device_read(dev, back, PAGE, 3 * PAGE), 0);
        assert_memory_equal(buf, back, PAGE);
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev);
}

/* Low system memory (cfg->lowmem, with meminfo from a file): a write that needs pool
 * memory past the reserve fails with -ENOSPC and keeps the slot's old contents;
 * writes the reserve covers, and same-filled pages, still succeed. */
static void test_lowmem(void **state)
{
        char path[] = "/tmp/rzs-meminfo-XXXXXX";
        int fd = mkstemp(path);
        static const char low[] = "MemTotal: 204800 kB\nMemFree: 1000 kB\n"
                                  "MemAvailable: 900 kB\n";
        struct rzs_config cfg = {.disksize = 64 * PAGE,
                                 .reserve = 4 * PAGE,
                                 .lowmem = 4 * 1024 * 1024,
                                 .meminfo = path};
        struct rzs_device *dev;
        unsigned char buf[PAGE], back[PAGE];
        uint64_t slot;
        int r = 0;
        (void)state;

        assert_true(fd >= 0);
        assert_int_equal(write(fd, low, sizeof(low) - 1), (ssize_t)sizeof(low) - 1);
        close(fd);
        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        /* Incompressible pages take a whole pool page each: 4 fit the reserve. */
        for (slot = 1; slot <= 5 && r == 0; slot++) {
                fill_noise(buf, PAGE, slot);
                r = rzs_device_write(dev, buf, PAGE, slot * PAGE);
        }
        assert_int_equal(r, -ENOSPC);
        assert_int_equal(slot - 1, 5);
        /* Slot 4 keeps its page after a refused rewrite. */
        fill_noise(buf, PAGE, 4);
        fill_noise(back, PAGE, 99);
        assert_int_equal(rzs_device_write(dev, back, PAGE, 5 * PAGE), -ENOSPC);
        assert_int_equal(rzs_device_read(dev, back, PAGE, 4 * PAGE), 0);
        assert_memory_equal(buf, back, PAGE);
        fill_same(buf, 0x01020304);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, 6 * PAGE), 0);
        assert_int_equal(stats(dev).failed_writes, 2);
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev);

        /* The check is off with RZS_LOWMEM_OFF; an explicit meminfo must open. */
        cfg.lowmem = RZS_LOWMEM_OFF;
        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        for (slot = 1; slot <= 8; slot++) {
                fill_noise(buf, PAGE, slot);
                assert_int_equal(rzs_device_write(dev, buf, PAGE, slot * PAGE), 0);
        }
        rzs_device_destroy(dev);
        unlink(path);
        cfg.lowmem = 0;
        assert_int_equal(rzs_device_create(&cfg, &dev), -ENOENT);
        assert_null(dev);
}

/* ---- refill thread ---- */

static void write_text_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
}

static struct rzs_refill_stats refill_stats(struct rzs_device *dev)
{
        struct rzs_refill_stats r;

        rzs_device_get_refill_stats(dev, &r);
        return r;
}

/* Poll (no timing assertion: a generous bound only stops a hung test) until the
 * stock holds at least want pages. */
static void wait_stock(struct rzs_device *dev, uint64_t want)
{
        for (int i = 0; i < 200000 && refill_stats(dev).stock_pages < want; i++)
                usleep(100);
        assert_true(refill_stats(dev).stock_pages >= want);
}

/* With the refill thread, writes use only the pre-faulted stock: while the
 * low-memory policy says no the stock stays empty and writes fail at once with
 * -ENOSPC; once memory is comfortable the thread fills it, and keeps it filled
 * as writes drain it (woken by them). */
static void test_refill_thread(void **state)
{
        enum { PAGES = 3000 };
        char mi[] = "/tmp/rzs-mi-XXXXXX", zi[] = "/tmp/rzs-zi-XXXXXX";
        int fdm = mkstemp(mi), fdz = mkstemp(zi);
        struct rzs_config cfg = {
            .disksize = (PAGES + 1) * (uint64_t)PAGE, .meminfo = mi, .zoneinfo = zi};
        struct rzs_device *dev;
        unsigned char buf[PAGE], back[PAGE];
        uint64_t retries = 0;
        (void)state;

        assert_true(fdm >= 0 && fdz >= 0);
        close(fdm);
        close(fdz);
        write_text_file(zi, "Node 0, zone   Normal\n  pages free     10\n"
                            "        boost    0\n        min      100\n"
                            "        managed  100000\n        protection: (0, 0)\n");
        write_text_file(mi, "MemTotal: 204800 kB\nMemFree: 1000 kB\n"
                            "MemAvailable: 900 kB\n");
        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        assert_false(refill_stats(dev).running);
        assert_int_equal(rzs_device_start_refill(dev), 0);
        assert_true(refill_stats(dev).running);
        assert_int_equal(refill_stats(dev).stock_pages, 0);
        assert_true(refill_stats(dev).lowmem_refused > 0);
        fill_noise(buf, PAGE, 1);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, PAGE), -ENOSPC);
        assert_int_equal(refill_stats(dev).stock_empty, 1);
        assert_int_equal(stats(dev).mem_used_total, 0);

        write_text_file(zi, "Node 0, zone   Normal\n  pages free     2500000\n"
                            "        boost    0\n        min      100\n"
                            "        managed  5000000\n        protection: (0, 0)\n");
        write_text_file(mi, "MemTotal: 20480000 kB\nMemFree: 10000000 kB\n"
                            "MemAvailable: 10000000 kB\n");
        wait_stock(dev, refill_stats(dev).stock_target);
        /* More pages than the stock: the thread is woken and keeps up (a write
         * that finds the stock empty is retried, as the kernel retries swap). */
        for (uint64_t s = 1; s <= PAGES; s++) {
                int r;

                fill_noise(buf, PAGE, s);
                while ((r = rzs_device_write(dev, buf, PAGE, s * PAGE)) == -ENOSPC) {
                        retries++;
                        wait_stock(dev, 1);
                }
                assert_int_equal(r, 0);
        }
        for (uint64_t s = 1; s <= PAGES; s++) {
                fill_noise(buf, PAGE, s);
                assert_int_equal(rzs_device_read(dev, back, PAGE, s * PAGE), 0);
                assert_memory_equal(buf, back, PAGE);
        }
        print_message("refilled %" PRIu64 " pages, %" PRIu64 " writes retried\n",
                      refill_stats(dev).refilled, retries);
        assert_true(refill_stats(dev).refilled >= PAGES);
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev); /* joins the thread */
        unlink(mi);
        unlink(zi);
}

/* ---- concurrency ----
 * Every data page written carries (slot, writer, seq) in its first 24 bytes and is
 * otherwise a pure function of them, so a reader can rebuild the page it should
 * see and compare all 4096 bytes: a mix of two versions cannot pass. Same-filled
 * versions use a pattern that likewise encodes (writer, seq). */

enum { T_THREADS = 4, T_SHARED = 16, T_OWN = 32, T_OPS = 6000 };
#define T_PAGES (T_SHARED + T_THREADS * T_OWN)

static void version_page(unsigned char *p, uint64_t slot, uint32_t writer, uint32_t seq)
{
        uint64_t h = (slot * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)writer << 32 | seq);

        switch (seq % 4) {
        case 0: /* same-filled: byte 0 = writer + 1, bytes 1..3 = seq */
                fill_same(p, (writer + 1) | (seq & 0xffffff) << 8);
                return;
        case 1:
                fill_noise(p, PAGE, h);
                break;
        default:
                fill_text(p, h);
                break;
        }
        memcpy(p, &slot, 8);
        memcpy(p + 8, &writer, 4);
        memcpy(p + 12, &seq, 4);
        memcpy(p + 16, &h, 8);
}

/* True when p is exactly some version of slot (or zeros, the trimmed state). */
static bool page_is_version(const unsigned char *p, uint64_t slot, unsigned char *tmp)
{
        uint32_t writer, seq, first = get_u32(p, 0);

        if (is_zero(p, PAGE))
                return true;
        fill_same(tmp, first);
        if (memcmp(tmp, p, PAGE) == 0) {
                writer = (first & 0xff) - 1;
                seq = first >> 8;
                return writer < T_THREADS && seq % 4 == 0;
        }
        uint64_t s;
        memcpy(&s, p, 8);
        writer = get_u32(p, 8);
        seq = get_u32(p, 12);
        if (s != slot || writer >= T_THREADS)
                return false;
        version_page(tmp, slot, writer, seq);
        return memcmp(tmp, p, PAGE) == 0;
}

struct thread_arg {
        struct rzs_device *dev;
        uint32_t id;
        unsigned failures;
};

static void *io_thread(void *p)
{
        struct thread_arg *a = p;
        uint64_t rnd = 0x9e3779b97f4a7c15ull * (a->id + 1);
        uint64_t own = T_SHARED + (uint64_t)a->id * T_OWN;
        uint32_t last[T_OWN] = {0};
        static const unsigned char none[PAGE]; /* seq 0 of own slots: never written */
        unsigned char *buf = malloc(4 * PAGE), *want = malloc(PAGE);

        if (buf == NULL || want == NULL) {
                a->failures++;
                goto out;
        }
        for (uint32_t seq = 1; seq <= T_OPS; seq++) {
                uint64_t r = next_rand(&rnd);
                uint64_t n = 1 + r % 4;
                uint64_t slot = (r >> 8) % (T_SHARED - n + 1);
                uint64_t mine = (r >> 16) % T_OWN;

                switch ((r >> 32) % 5) {
                case 0: /* multi-page write to shared slots */
                        for (uint64_t i = 0; i < n; i++)
                                version_page(buf + i * PAGE, slot + i, a->id, seq);
                        a->failures +=
                            rzs_device_write(a->dev, buf, n * PAGE, slot * PAGE) != 0;
                        break;
                case 1:
                        a->failures +=
                            rzs_device_read(a->dev, buf, n * PAGE, slot * PAGE) != 0;
                        for (uint64_t i = 0; i < n; i++)
                                a->failures +=
                                    !page_is_version(buf + i * PAGE, slot + i, want);
                        break;
                case 2:
                        a->failures += rzs_device_trim(a->dev, PAGE, slot * PAGE) != 0;
                        break;
                case 3: /* own slot: write then later expect exactly that version */
                        version_page(buf, own + mine, a->id, seq);
                        a->failures +=
                            rzs_device_write(a->dev, buf, PAGE, (own + mine) * PAGE) != 0;
                        last[mine] = seq;
                        break;
                default:
                        a->failures +=
                            rzs_device_read(a->dev, buf, PAGE, (own + mine) * PAGE) != 0;
                        if (last[mine] == 0)
                                a->failures += memcmp(buf, none, PAGE) != 0;
                        else {
                                version_page(want, own + mine, a->id, last[mine]);
                                a->failures += memcmp(buf, want, PAGE) != 0;
                        }
                        break;
                }
        }
out:
        free(buf);
        free(want);
        return NULL;
}

static void test_threads(void **state)
{
        struct rzs_config cfg = {.disksize = (uint64_t)T_PAGES * PAGE, .workspaces = 2};
        struct thread_arg args[T_THREADS];
        pthread_t th[T_THREADS];
        struct rzs_device *dev;
        unsigned char *all = malloc((size_t)T_PAGES * PAGE), tmp[PAGE];
        (void)state;

        /* Fewer workspaces than threads: threads must wait for one, not share it. */
        assert_int_equal(rzs_device_create(&cfg, &dev), 0);
        assert_non_null(all);
        /* Drop the header so every shared slot starts as zeros. */
        assert_int_equal(rzs_device_trim(dev, PAGE, 0), 0);
        for (uint32_t i = 0; i < T_THREADS; i++) {
                args[i] = (struct thread_arg){.dev = dev, .id = i};
                assert_int_equal(pthread_create(&th[i], NULL, io_thread, &args[i]), 0);
        }
        for (int i = 0; i < T_THREADS; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(args[i].failures, 0);
        }
        assert_int_equal(rzs_device_check(dev), 0);
        assert_int_equal(rzs_device_read(dev, all, (uint64_t)T_PAGES * PAGE, 0), 0);
        for (uint64_t s = 0; s < T_SHARED; s++)
                assert_true(page_is_version(all + s * PAGE, s, tmp));
        struct rzs_stats st = stats(dev);
        assert_int_equal(st.failed_writes + st.failed_reads + st.invalid_io, 0);
        assert_int_equal(rzs_device_trim(dev, (uint64_t)T_PAGES * PAGE, 0), 0);
        assert_int_equal(stats(dev).mem_used_total, 0);
        assert_int_equal(rzs_device_check(dev), 0);
        free(all);
        rzs_device_destroy(dev);
}

/* ---- snapshots against a churning writer ---- */

#define SNAP_SLOTS                                                                       \
        4                /* few slots: pages_stored stays small, so a torn read          \
                          * shows as parts > pages_stored */
#define SNAP_ROUNDS 5000 /* writer rounds; the reader snapshots until they end */

struct churn_arg {
        struct rzs_device *dev;
        atomic_bool done;
        unsigned failures;
};

/* Store a well-compressed and a raw page, then trim them: good_compress and
 * no_compress rise and fall with pages_stored. */
static void *churn_thread(void *p)
{
        struct churn_arg *a = p;
        unsigned char good[PAGE], raw[PAGE];

        fill_text(good, 1);
        fill_noise(raw, PAGE, 2);
        for (uint64_t i = 0; i < SNAP_ROUNDS; i++) {
                uint64_t slot = 1 + i % SNAP_SLOTS;
                uint64_t next = 1 + (i + 1) % SNAP_SLOTS;

                a->failures += rzs_device_write(a->dev, good, PAGE, slot * PAGE) != 0;
                a->failures += rzs_device_write(a->dev, raw, PAGE, next * PAGE) != 0;
                a->failures += rzs_device_trim(a->dev, SNAP_SLOTS * PAGE, PAGE) != 0;
        }
        atomic_store(&a->done, true);
        return NULL;
}

/* No snapshot shows more good or raw pages than stored ones (the parts of
 * pages_stored), however the reads interleave with the writer's updates. */
static void test_snapshot_parts_within_stored(void **state)
{
        struct churn_arg a = {.dev = make_dev((SNAP_SLOTS + 2) * PAGE, 0)};
        uint64_t torn = 0, taken = 0;
        pthread_t th;
        (void)state;

        assert_int_equal(pthread_create(&th, NULL, churn_thread, &a), 0);
        while (!atomic_load(&a.done)) {
                struct rzs_stats s = stats(a.dev);

                torn += s.good_compress + s.no_compress > s.pages_stored;
                taken++;
        }
        pthread_join(th, NULL);
        print_message("%" PRIu64 " of %" PRIu64 " snapshots torn\n", torn, taken);
        assert_int_equal(a.failures, 0);
        assert_int_equal(torn, 0);
        assert_int_equal(rzs_device_check(a.dev), 0);
        rzs_device_destroy(a.dev);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_config_errors),
            cmocka_unit_test(test_memlimit_above_pool),
            cmocka_unit_test(test_invalid_requests),
            cmocka_unit_test(test_never_written_reads_zero),
            cmocka_unit_test(test_slot0_header),
            cmocka_unit_test(test_memlimit),
            cmocka_unit_test(test_reserve),
            cmocka_unit_test(test_lowmem),
            cmocka_unit_test(test_threads),
            cmocka_unit_test(test_snapshot_parts_within_stored),
            cmocka_unit_test(test_refill_thread),
            cmocka_unit_test(test_random_model),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
