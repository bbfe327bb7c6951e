/* Unit tests for the OOM guard (src/oomguard.c): the judge on synthetic samples, and
 * the guard on a real device that refuses writes, with files standing in for
 * /proc/meminfo and /proc/sysrq-trigger. */
#include <errno.h>
#include <fcntl.h>
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

#include "ramzswap/device.h"
#include "ramzswap/oomguard.h"

#include "pagegen.h"

#define LOW   (UINT64_C(8) << 20)
#define STALL 500000u /* microseconds of a 1 s period */

/* Without PSI: MemFree and MemAvailable both at avail. */
static struct rzs_oomguard_sample sample(uint64_t ok, uint64_t failed, uint64_t avail)
{
        return (struct rzs_oomguard_sample){.num_writes = ok,
                                            .failed_writes = failed,
                                            .mem_free = avail,
                                            .mem_available = avail};
}

static bool judge(struct rzs_oomguard_state *st, const struct rzs_oomguard_sample *s,
                  unsigned window)
{
        const struct rzs_oomguard_rule rule = {
            .window = window, .low_bytes = LOW, .stall_us = STALL};

        return rzs_oomguard_judge(st, s, &rule);
}

/* Stuck periods in a row: fires on the window-th, then needs a whole new window. */
static void test_judge_fires_after_window(void **state)
{
        struct rzs_oomguard_state st = {0};
        struct rzs_oomguard_sample s = sample(100, 0, LOW / 2);

        assert_false(judge(&st, &s, 3)); /* first look: baseline */
        for (int round = 0; round < 2; round++) {
                for (int i = 1; i <= 3; i++) {
                        s.failed_writes += 5;
                        assert_int_equal(judge(&st, &s, 3), i == 3);
                }
        }
}

/* Feed `periods` samples, each changed by (d_ok, d_failed) at `avail`; returns how
 * often the judge fired. */
static int feed(struct rzs_oomguard_state *st, struct rzs_oomguard_sample *s, int periods,
                uint64_t d_ok, uint64_t d_failed, uint64_t avail)
{
        int fired = 0;

        for (int i = 0; i < periods; i++) {
                s->num_writes += d_ok;
                s->failed_writes += d_failed;
                s->mem_free = s->mem_available = avail;
                fired += judge(st, s, 2);
        }
        return fired;
}

/* Any two of the three conditions keep the guard quiet. */
static void test_judge_needs_all_three(void **state)
{
        struct rzs_oomguard_sample s = sample(0, 0, LOW / 2);
        struct rzs_oomguard_state st;

        /* refusals, but some writes get through */
        st = (struct rzs_oomguard_state){0};
        assert_int_equal(feed(&st, &s, 10, 1, 1, LOW / 2), 0);
        /* refusals and nothing written, but memory to spare */
        st = (struct rzs_oomguard_state){0};
        assert_int_equal(feed(&st, &s, 10, 0, 1, LOW * 2), 0);
        /* memory low and nothing written, but nothing ever refused */
        st = (struct rzs_oomguard_state){0};
        assert_int_equal(feed(&st, &s, 10, 0, 0, LOW / 2), 0);
}

/* Refusals, then silence: the kernel stopped sending anything. Still stuck. */
static void test_judge_silence_after_refusals(void **state)
{
        struct rzs_oomguard_sample s = sample(50, 0, LOW / 2);
        struct rzs_oomguard_state st = {0};

        assert_int_equal(feed(&st, &s, 1, 0, 0, LOW / 2), 0); /* baseline */
        assert_int_equal(feed(&st, &s, 1, 0, 3, LOW / 2), 0); /* refused */
        assert_int_equal(feed(&st, &s, 1, 0, 0, LOW / 2), 1); /* nothing moves */
        /* A write that gets through ends the refusing state for good. */
        assert_int_equal(feed(&st, &s, 1, 1, 0, LOW / 2), 0);
        assert_int_equal(feed(&st, &s, 10, 0, 0, LOW / 2), 0);
}

/* Writes got through and then were refused within one period, and then the
 * kernel sent nothing (measured: its reply allocation stuck in reclaim). */
static void test_judge_refused_last_then_silence(void **state)
{
        struct rzs_oomguard_sample s = sample(50, 0, LOW / 2);
        struct rzs_oomguard_state st = {0};

        assert_int_equal(feed(&st, &s, 1, 0, 0, LOW / 2), 0); /* baseline */
        assert_int_equal(feed(&st, &s, 1, 7, 2, LOW / 2), 0); /* mixed period */
        assert_int_equal(feed(&st, &s, 1, 0, 0, LOW / 2), 0);
        assert_int_equal(feed(&st, &s, 1, 0, 0, LOW / 2), 1);
}

/* With PSI: little free memory and tasks stalled on it make memory out, whatever
 * MemAvailable says (it counted 8 MB of slab reclaim was not getting back). */
static void test_judge_psi(void **state)
{
        struct rzs_oomguard_sample s = sample(0, 0, LOW / 2);
        struct rzs_oomguard_state st = {0};

        s.mem_available = 4 * LOW;
        s.stall_valid = true;
        judge(&st, &s, 2);
        for (int i = 0; i < 4; i++) { /* stalled a tenth of each period: fine */
                s.failed_writes++;
                s.stall_us += STALL / 5;
                assert_false(judge(&st, &s, 2));
        }
        s.stall_us += STALL; /* stalled half of it, twice: out */
        assert_false(judge(&st, &s, 2));
        s.stall_us += STALL;
        assert_true(judge(&st, &s, 2));
        s.mem_free = LOW; /* stalls with free memory: the kernel's business */
        for (int i = 0; i < 4; i++) {
                s.stall_us += 2 * STALL;
                assert_false(judge(&st, &s, 2));
        }
}

/* One good period in the middle restarts the count. */
static void test_judge_progress_restarts_count(void **state)
{
        struct rzs_oomguard_state st = {0};
        struct rzs_oomguard_sample s = sample(0, 0, 0);

        judge(&st, &s, 3);
        s.failed_writes++;
        assert_false(judge(&st, &s, 3));
        s.failed_writes++;
        assert_false(judge(&st, &s, 3));
        s.num_writes++; /* a page got through */
        assert_false(judge(&st, &s, 3));
        s.failed_writes++;
        assert_false(judge(&st, &s, 3));
        s.failed_writes++;
        assert_false(judge(&st, &s, 3));
        s.failed_writes++;
        assert_true(judge(&st, &s, 3));
}

struct fixture {
        char meminfo[64];
        char zoneinfo[64];
        char pressure[64];
        uint64_t stall_us; /* what the pressure file says now */
        char sysrq[64];
        struct rzs_device *dev;
        unsigned char page[RZS_PAGE_SIZE];
};

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static size_t file_size(const char *path)
{
        FILE *f = fopen(path, "r");
        long n;

        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fclose(f);
        return (size_t)n;
}

static void set_available(struct fixture *fx, unsigned kb)
{
        char text[128];

        snprintf(text, sizeof text,
                 "MemTotal: 262144 kB\nMemFree: %u kB\n"
                 "MemAvailable: %u kB\n",
                 kb, kb);
        write_file(fx->meminfo, text);
}

static void write_file(const char *path, const char *text);

/* A 64-page device with room for two raw pages, filled until it refuses. */
static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof *fx);
        struct rzs_config cfg = {.disksize = 64 * RZS_PAGE_SIZE,
                                 .memlimit = 2 * RZS_PAGE_SIZE};
        int fd;

        assert_non_null(fx);
        strcpy(fx->meminfo, "/tmp/ramzswap-oomguard-meminfo-XXXXXX");
        strcpy(fx->sysrq, "/tmp/ramzswap-oomguard-sysrq-XXXXXX");
        strcpy(fx->zoneinfo, "/tmp/ramzswap-oomguard-zoneinfo-XXXXXX");
        strcpy(fx->pressure, "/tmp/ramzswap-oomguard-pressure-XXXXXX");
        assert_true((fd = mkstemp(fx->pressure)) >= 0);
        close(fd);
        assert_true((fd = mkstemp(fx->meminfo)) >= 0);
        close(fd);
        assert_true((fd = mkstemp(fx->zoneinfo)) >= 0);
        close(fd);
        /* The kernel's reserve: one zone whose low watermark is 800 pages, so
         * the guard's default threshold is 2 x 3276800 bytes. */
        write_file(fx->zoneinfo, "Node 0, zone   Normal\n  pages free     100\n"
                                 "        boost    0\n        min      600\n"
                                 "        low      800\n        high     1000\n"
                                 "        managed  60000\n"
                                 "        protection: (0, 0, 0, 0)\n");
        assert_true((fd = mkstemp(fx->sysrq)) >= 0);
        close(fd);
        assert_int_equal(rzs_device_create(&cfg, &fx->dev), 0);
        for (uint64_t i = 0; i < 64; i++) {
                fill_noise(fx->page, sizeof fx->page, i + 1);
                if (rzs_device_write(fx->dev, fx->page, RZS_PAGE_SIZE,
                                     i * RZS_PAGE_SIZE) == -ENOSPC)
                        break;
        }
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        rzs_device_destroy(fx->dev);
        unlink(fx->meminfo);
        unlink(fx->zoneinfo);
        unlink(fx->pressure);
        unlink(fx->sysrq);
        free(fx);
        return 0;
}

static struct rzs_oomguard *make_guard(struct fixture *fx, unsigned window)
{
        struct rzs_oomguard_config cfg = {.dev = fx->dev,
                                          .sysrq = fx->sysrq,
                                          .meminfo = fx->meminfo,
                                          .zoneinfo = fx->zoneinfo,
                                          .pressure = fx->pressure,
                                          .window = window};
        struct rzs_oomguard *g;

        assert_int_equal(rzs_oomguard_create(&cfg, &g, NULL, 0), 0);
        return g;
}

/* Each period: the kernel retries a swap-out the full device refuses, and tasks
 * stall on memory for the whole period. */
static void refused_period(struct fixture *fx, struct rzs_oomguard *g)
{
        char text[160];

        fx->stall_us += 1000000;
        snprintf(text, sizeof text,
                 "some avg10=90.00 avg60=50.00 avg300=20.00 total=%" PRIu64 "\n"
                 "full avg10=80.00 avg60=40.00 avg300=10.00 total=%" PRIu64 "\n",
                 fx->stall_us, fx->stall_us / 2);
        write_file(fx->pressure, text);
        fill_noise(fx->page, sizeof fx->page, 999);
        assert_int_equal(
            rzs_device_write(fx->dev, fx->page, RZS_PAGE_SIZE, 63 * RZS_PAGE_SIZE),
            -ENOSPC);
        rzs_oomguard_poll(g);
}

static void test_guard_fires_on_livelock(void **state)
{
        struct fixture *fx = *state;
        struct rzs_oomguard *g;

        set_available(fx, 1024);
        g = make_guard(fx, 3);
        rzs_oomguard_poll(g);
        refused_period(fx, g);
        refused_period(fx, g);
        assert_int_equal(rzs_oomguard_fired(g), 0);
        assert_int_equal(file_size(fx->sysrq), 0);
        refused_period(fx, g);
        assert_int_equal(rzs_oomguard_fired(g), 1);
        assert_int_equal(file_size(fx->sysrq), 1); /* the 'f' */
        refused_period(fx, g);                     /* a new window starts */
        assert_int_equal(rzs_oomguard_fired(g), 1);
        rzs_oomguard_destroy(g);
}

/* The same refusals on a machine with memory to spare (16 MiB available, twice
 * the reserve is 6.5 MB): never. */
static void test_guard_quiet_with_memory(void **state)
{
        struct fixture *fx = *state;
        struct rzs_oomguard *g;

        set_available(fx, 16 * 1024);
        g = make_guard(fx, 3);
        for (int i = 0; i < 10; i++)
                refused_period(fx, g);
        assert_int_equal(rzs_oomguard_fired(g), 0);
        assert_int_equal(file_size(fx->sysrq), 0);
        rzs_oomguard_destroy(g);
}

static void test_guard_thread_stops(void **state)
{
        struct fixture *fx = *state;
        struct rzs_oomguard_config cfg = {
            .dev = fx->dev, .sysrq = fx->sysrq, .meminfo = fx->meminfo, .period_ms = 1};
        struct rzs_oomguard *g;

        set_available(fx, 64 * 1024);
        assert_int_equal(rzs_oomguard_create(&cfg, &g, NULL, 0), 0);
        assert_int_equal(rzs_oomguard_start(g), 0);
        assert_int_equal(rzs_oomguard_start(g), -EALREADY);
        rzs_oomguard_destroy(g); /* joins; a hang here fails by the test timeout */
}

static void test_guard_create_names_file(void **state)
{
        struct fixture *fx = *state;
        struct rzs_oomguard_config cfg = {.dev = fx->dev,
                                          .sysrq = "/nonexistent/sysrq-trigger",
                                          .meminfo = fx->meminfo};
        struct rzs_oomguard *g = (void *)1;
        char msg[128];

        assert_int_equal(rzs_oomguard_create(&cfg, &g, msg, sizeof msg), -ENOENT);
        assert_null(g);
        assert_non_null(strstr(msg, "/nonexistent/sysrq-trigger"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_judge_fires_after_window),
            cmocka_unit_test(test_judge_needs_all_three),
            cmocka_unit_test(test_judge_silence_after_refusals),
            cmocka_unit_test(test_judge_refused_last_then_silence),
            cmocka_unit_test(test_judge_psi),
            cmocka_unit_test(test_judge_progress_restarts_count),
            cmocka_unit_test_setup_teardown(test_guard_fires_on_livelock, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_guard_quiet_with_memory, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_guard_thread_stops, setup, teardown),
            cmocka_unit_test_setup_teardown(test_guard_create_names_file, setup,
                                            teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
