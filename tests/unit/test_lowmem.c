/* ramzswap: unit tests for the low-memory policy (src/lowmem.c).
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Every test writes meminfo, zoneinfo and min_free_kbytes fixtures in /proc's
 * formats (as this kernel prints them, boost line and per-cpu "high:" included)
 * to temporary files and points the module at them.
 */
#include <errno.h>
#include <inttypes.h>
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

#include "ramzswap/lowmem.h"

#define KIB 1024u
#define PG  4096u

struct fixture {
        char meminfo[32], zoneinfo[32], min_free[32];
};

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void write_meminfo(const char *path, uint64_t free_kb, uint64_t avail_kb)
{
        char text[256];

        snprintf(text, sizeof text,
                 "MemTotal:       24683548 kB\nMemFree:        %8" PRIu64
                 " kB\nMemAvailable:   %8" PRIu64 " kB\nBuffers:           17596 kB\n",
                 free_kb, avail_kb);
        write_file(path, text);
}

/* One zone as /proc/zoneinfo prints it; low already includes boost, as the
 * kernel's low_wmark_pages() does. pad adds per-node stat lines. */
static void zone_text(FILE *f, const char *name, uint64_t free, uint64_t boost,
                      uint64_t low, uint64_t managed, const char *protection,
                      unsigned pad)
{
        fprintf(f, "Node 0, zone %8s\n", name);
        if (pad)
                fprintf(f, "  per-node stats\n");
        for (unsigned i = 0; i < pad; i++)
                fprintf(f, "      nr_padding_stat_%u %u\n", i, i * 7);
        fprintf(f,
                "  pages free     %" PRIu64 "\n        boost    %" PRIu64
                "\n        min      %" PRIu64 "\n        low      %" PRIu64
                "\n        high     %" PRIu64
                "\n        promo    119\n        spanned  4095\n        present  3998\n"
                "        managed  %" PRIu64 "\n        cma      0\n"
                "        protection: %s\n",
                free, boost, low - 20, low, low + 250, managed, protection);
        fprintf(f, "  pagesets\n    cpu: 0\n              count:    0\n"
                   "              high:     9999\n              batch:    63\n"
                   "  node_unreclaimable:  0\n  start_pfn:           1\n");
}

/* Zones DMA (low + protection capped at managed: 3840, all free pages inside its
 * reserve), Normal (low 1000 + boost, protection 0, normal_free pages free) and an
 * empty Movable zone (nothing). */
static void write_zoneinfo(const char *path, uint64_t normal_free, uint64_t boost,
                           unsigned pad)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        zone_text(f, "DMA", 3840, 0, 68, 3840, "(0, 3018, 5066, 5066, 5066)", pad);
        zone_text(f, "Normal", normal_free, boost, 1000 + boost, 500000,
                  "(0, 0, 0, 0, 0)", 0);
        zone_text(f, "Movable", 0, 0, 32, 0, "(0, 0, 0, 0, 0)", 0);
        assert_int_equal(fclose(f), 0);
}

static int make_fixture(struct fixture *fx)
{
        int fd;

        strcpy(fx->meminfo, "/tmp/lm-meminfo-XXXXXX");
        strcpy(fx->zoneinfo, "/tmp/lm-zoneinfo-XXXXXX");
        strcpy(fx->min_free, "/tmp/lm-minfree-XXXXXX");
        if ((fd = mkstemp(fx->meminfo)) < 0 || close(fd) < 0 ||
            (fd = mkstemp(fx->zoneinfo)) < 0 || close(fd) < 0 ||
            (fd = mkstemp(fx->min_free)) < 0 || close(fd) < 0)
                return -1;
        write_file(fx->min_free, "67584\n");
        return 0;
}

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));

        if (fx == NULL || make_fixture(fx) < 0)
                return -1;
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        unlink(fx->meminfo);
        unlink(fx->zoneinfo);
        unlink(fx->min_free);
        free(fx);
        return 0;
}

static struct rzs_lowmem *open_lm(struct fixture *fx, uint64_t margin, uint64_t avail)
{
        struct rzs_lowmem_config cfg = {.meminfo = fx->meminfo,
                                        .zoneinfo = fx->zoneinfo,
                                        .min_free = fx->min_free,
                                        .margin = margin,
                                        .min_available = avail};
        struct rzs_lowmem *lm;

        assert_int_equal(rzs_lowmem_open(&cfg, &lm), 0);
        assert_non_null(lm);
        return lm;
}

/* The reserve: DMA capped at its managed pages, Normal's low (boost included
 * once), empty zones and per-cpu "high:" lines ignored; headroom: free pages
 * above each zone's reserve (none in DMA). */
static void test_watermark(void **state)
{
        struct fixture *fx = *state;
        struct rzs_lowmem_state st;
        struct rzs_lowmem *lm;

        write_meminfo(fx->meminfo, 100000, 90000);
        write_zoneinfo(fx->zoneinfo, 5000, 0, 0);
        lm = open_lm(fx, 0, 0);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_int_equal(st.mem_free, 100000 * KIB);
        assert_int_equal(st.mem_available, 90000 * KIB);
        assert_int_equal(st.watermark, (3840 + 1000) * (uint64_t)PG);
        assert_int_equal(st.headroom, 4000 * (uint64_t)PG);
        /* Boosted: the printed low grew by the boost, and only that counts. */
        write_zoneinfo(fx->zoneinfo, 5000, 1500, 0);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_int_equal(st.watermark, (3840 + 2500) * (uint64_t)PG);
        assert_int_equal(st.headroom, 2500 * (uint64_t)PG);
        /* Long text: lines cross the 4 KiB read chunks. */
        write_zoneinfo(fx->zoneinfo, 5000, 1500, 400);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_int_equal(st.watermark, (3840 + 2500) * (uint64_t)PG);
        assert_int_equal(st.headroom, 2500 * (uint64_t)PG);
        /* A zone under its reserve adds no headroom (and takes none away). */
        write_zoneinfo(fx->zoneinfo, 900, 0, 0);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_int_equal(st.headroom, 0);
        rzs_lowmem_close(lm);
}

/* Growing by n pages: yes exactly while the headroom covers n plus the margin and
 * MemAvailable covers n plus min_available; a boost raises the bar. MemFree as a
 * whole does not matter: DMA's free pages are all inside its reserve. */
static void test_decision(void **state)
{
        struct fixture *fx = *state;
        const uint64_t margin_pages = 64, n = 256;
        struct rzs_lowmem *lm;

        write_zoneinfo(fx->zoneinfo, 1000 + margin_pages + n, 0, 0);
        write_meminfo(fx->meminfo, 1000000, 1000000);
        lm = open_lm(fx, margin_pages * PG, 0);
        assert_true(rzs_lowmem_may_grow(lm, n));
        assert_false(rzs_lowmem_may_grow(lm, n + 1));
        assert_int_equal(rzs_lowmem_refusals(lm), 1);

        /* The same free pages under a boost of 1000 pages: no, until free grows. */
        write_zoneinfo(fx->zoneinfo, 1000 + margin_pages + n, 1000, 0);
        assert_false(rzs_lowmem_may_grow(lm, n));
        write_zoneinfo(fx->zoneinfo, 2000 + margin_pages + n, 1000, 0);
        assert_true(rzs_lowmem_may_grow(lm, n));
        assert_false(rzs_lowmem_may_grow(lm, n + 1));
        rzs_lowmem_close(lm);

        /* MemAvailable: must cover the pages plus min_available. */
        write_zoneinfo(fx->zoneinfo, 100000, 0, 0);
        write_meminfo(fx->meminfo, 1000000, 8192 + n * 4);
        lm = open_lm(fx, 0, 8192 * KIB);
        assert_true(rzs_lowmem_may_grow(lm, n));
        assert_false(rzs_lowmem_may_grow(lm, n + 1));
        assert_int_equal(rzs_lowmem_refusals(lm), 1);
        rzs_lowmem_close(lm);
}

/* Without zones the watermark falls back to 2 * min_free_kbytes; an unreadable
 * meminfo allows; an explicit path that does not exist fails to open. */
static void test_fallbacks(void **state)
{
        struct fixture *fx = *state;
        struct rzs_lowmem_config cfg = {.meminfo = "/nonexistent/meminfo"};
        struct rzs_lowmem_state st;
        struct rzs_lowmem *lm = (struct rzs_lowmem *)1;

        write_file(fx->zoneinfo, "");
        write_meminfo(fx->meminfo, 100000, 90000);
        lm = open_lm(fx, 0, 0);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_int_equal(st.watermark, 2 * 67584 * (uint64_t)KIB);
        assert_false(rzs_lowmem_may_grow(lm, 1));
        write_file(fx->meminfo, "");
        assert_false(rzs_lowmem_read(lm, &st));
        assert_true(rzs_lowmem_may_grow(lm, 1000000));
        rzs_lowmem_close(lm);

        assert_int_equal(rzs_lowmem_open(&cfg, &lm), -ENOENT);
        assert_null(lm);
        cfg.meminfo = fx->meminfo;
        cfg.zoneinfo = "/nonexistent/zoneinfo";
        assert_int_equal(rzs_lowmem_open(&cfg, &lm), -ENOENT);
        rzs_lowmem_close(NULL);
}

/* PSI: the "some" line's total, in microseconds; no file, or a file without it,
 * leaves stall_valid false. */
static void test_pressure(void **state)
{
        struct fixture *fx = *state;
        char path[] = "/tmp/lm-pressure-XXXXXX";
        struct rzs_lowmem_config cfg = {
            .meminfo = fx->meminfo, .zoneinfo = fx->zoneinfo, .pressure = path};
        struct rzs_lowmem_state st;
        struct rzs_lowmem *lm;
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        close(fd);
        write_meminfo(fx->meminfo, 100000, 90000);
        write_zoneinfo(fx->zoneinfo, 5000, 0, 0);
        write_file(path, "some avg10=12.50 avg60=3.00 avg300=1.00 total=987654321\n"
                         "full avg10=2.00 avg60=1.00 avg300=0.50 total=123\n");
        assert_int_equal(rzs_lowmem_open(&cfg, &lm), 0);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_true(st.stall_valid);
        assert_int_equal(st.stall_us, 987654321);
        write_file(path, "full avg10=2.00 avg60=1.00 avg300=0.50 total=123\n");
        assert_true(rzs_lowmem_read(lm, &st));
        assert_false(st.stall_valid);
        rzs_lowmem_close(lm);
        unlink(path);
        cfg.pressure = NULL; /* the default is optional */
        assert_int_equal(rzs_lowmem_open(&cfg, &lm), 0);
        rzs_lowmem_close(lm);
}

/* This host's own files parse: a watermark at least vm.min_free_kbytes. */
static void test_live(void **state)
{
        struct rzs_lowmem_config cfg = {0};
        struct rzs_lowmem_state st;
        struct rzs_lowmem *lm;
        unsigned long long min_kb = 0;
        FILE *f = fopen("/proc/sys/vm/min_free_kbytes", "r");

        (void)state;
        if (f == NULL || fscanf(f, "%llu", &min_kb) != 1 ||
            rzs_lowmem_open(&cfg, &lm) != 0) {
                if (f)
                        fclose(f);
                skip();
        }
        fclose(f);
        assert_true(rzs_lowmem_read(lm, &st));
        assert_true(st.mem_free > 0);
        assert_true(st.watermark >= min_kb * KIB);
        print_message("live: MemFree %" PRIu64 " KiB, MemAvailable %" PRIu64
                      " KiB, watermark %" PRIu64 " KiB\n",
                      st.mem_free / KIB, st.mem_available / KIB, st.watermark / KIB);
        rzs_lowmem_close(lm);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_watermark, setup, teardown),
            cmocka_unit_test_setup_teardown(test_decision, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fallbacks, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pressure, setup, teardown),
            cmocka_unit_test(test_live),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
