/* ramzswap nbd tests: refused requests, a full device, and bad start-up parameters.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbd_harness.h"

#define PAGE 4096u

static void assert_fails(int r, struct nbd_handle *h, int err)
{
        assert_int_equal(r, -1);
        assert_int_equal(nbd_get_errno(), err);
}

/* Misaligned offsets and lengths are refused with EINVAL for every kind of
 * request, change nothing, and leave the device working. */
static void test_unaligned(void **state)
{
        static const char *const params[] = {"disksize=16M", NULL};
        struct nbd_handle *h = harness_connect(params);
        unsigned char page[2 * PAGE], back[2 * PAGE];

        /* Let libnbd send what the server's block size constraints forbid. */
        assert_int_equal(nbd_set_strict_mode(h, 0), 0);
        harness_fill(page, 1, 0);
        harness_fill(page + PAGE, 2, 1);
        assert_int_equal(nbd_pwrite(h, page, 2 * PAGE, PAGE, 0), 0);

        assert_fails(nbd_pread(h, back, PAGE, PAGE + 512, 0), h, EINVAL);
        assert_fails(nbd_pread(h, back, 512, PAGE, 0), h, EINVAL);
        assert_fails(nbd_pread(h, back, PAGE + 1, PAGE, 0), h, EINVAL);
        assert_fails(nbd_pwrite(h, back, PAGE, PAGE + 512, 0), h, EINVAL);
        assert_fails(nbd_pwrite(h, back, 512, PAGE, 0), h, EINVAL);
        assert_fails(nbd_pwrite(h, back, 2 * PAGE - 1, PAGE, 0), h, EINVAL);
        assert_fails(nbd_trim(h, 512, PAGE, 0), h, EINVAL);
        assert_fails(nbd_trim(h, PAGE, 100, 0), h, EINVAL);
        assert_fails(nbd_zero(h, PAGE, PAGE + 8, 0), h, EINVAL);
        assert_fails(nbd_zero(h, 8, PAGE, 0), h, EINVAL);

        assert_int_equal(nbd_pread(h, back, 2 * PAGE, PAGE, 0), 0);
        assert_memory_equal(page, back, 2 * PAGE);
        harness_fill(page, 3, 1);
        assert_int_equal(nbd_pwrite(h, page, PAGE, 2 * PAGE, 0), 0);
        assert_int_equal(nbd_pread(h, back, PAGE, 2 * PAGE, 0), 0);
        assert_memory_equal(page, back, PAGE);
        nbd_close(h);
}

#define REFUSED_READS 100

/* Lines of text that hold needle. */
static unsigned lines_with(const char *text, const char *needle)
{
        unsigned n = 0;

        for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
                n++;
        return n;
}

/* A client repeating a refused request must not write a log line per request:
 * 100 misaligned reads are logged at the 1st, 2nd, 4th ... 64th, 7 lines. */
static void test_refusals_rate_limited(void **state)
{
        static const char *const params[] = {"disksize=16M", NULL};
        char path[] = "/tmp/ramzswap-errlog-XXXXXX", *log;
        int fd = mkstemp(path);
        struct nbd_handle *h;
        unsigned char page[PAGE];
        unsigned lines;
        FILE *f;

        assert_true(fd >= 0);
        h = harness_connect_stderr(params, fd);
        assert_int_equal(nbd_set_strict_mode(h, 0), 0);
        for (unsigned i = 0; i < REFUSED_READS; i++)
                assert_fails(nbd_pread(h, page, 512, PAGE, 0), h, EINVAL);
        nbd_close(h); /* waits for nbdkit: the log is complete */
        close(fd);
        f = fopen(path, "r");
        assert_non_null(f);
        log = calloc(1, 1 << 20);
        assert_non_null(log);
        fread(log, 1, (1 << 20) - 1, f);
        fclose(f);
        unlink(path);
        lines = lines_with(log, "read of 512 bytes");
        if (lines < 1 || lines > 8)
                fail_msg("%u lines about %u refused reads:\n%s", lines, REFUSED_READS,
                         log);
        free(log);
}

/* With a 4 MiB memlimit, incompressible pages fill the pool: the write that does
 * not fit fails with ENOSPC, everything written before reads back intact,
 * same-filled pages (which store nothing) still go in, and once pages are trimmed
 * writes succeed again. */
static void test_full(void **state)
{
        static const char *const params[] = {"disksize=64M", "memlimit=4M", NULL};
        const uint64_t pages = 64u * 1024 * 1024 / PAGE;
        struct nbd_handle *h = harness_connect(params);
        unsigned char page[PAGE], back[PAGE];
        uint64_t n, i;
        int r = 0;

        for (n = 1; n < pages; n++) {
                harness_fill(page, n, 0);
                r = nbd_pwrite(h, page, PAGE, n * PAGE, 0);
                if (r == -1)
                        break;
        }
        assert_fails(r, h, ENOSPC);
        n--;                              /* pages 1..n are written */
        assert_true(n >= 512);            /* 4 MiB holds about 1024 raw pages... */
        assert_true(n <= 4u << 20 >> 12); /* ...and never more */

        for (i = 1; i <= n; i++) {
                harness_fill(page, i, 0);
                assert_int_equal(nbd_pread(h, back, PAGE, i * PAGE, 0), 0);
                if (memcmp(page, back, PAGE) != 0)
                        fail_msg("page %llu lost after the device filled up",
                                 (unsigned long long)i);
        }
        /* The refused page kept its old (never written: zero) contents. */
        assert_int_equal(nbd_pread(h, back, PAGE, (n + 1) * PAGE, 0), 0);
        assert_true(harness_is_zero(back, PAGE));

        memset(page, 0, PAGE);
        assert_int_equal(nbd_pwrite(h, page, PAGE, (n + 1) * PAGE, 0), 0);
        memset(page, 0x5a, PAGE);
        assert_int_equal(nbd_pwrite(h, page, PAGE, (n + 2) * PAGE, 0), 0);
        assert_int_equal(nbd_pread(h, back, PAGE, (n + 2) * PAGE, 0), 0);
        assert_memory_equal(page, back, PAGE);

        /* Free the first half; as many new incompressible pages fit again. */
        assert_int_equal(nbd_trim(h, n / 2 * PAGE, PAGE, 0), 0);
        for (i = 0; i < n / 2; i++) {
                harness_fill(page, 1000000 + i, 0);
                assert_int_equal(nbd_pwrite(h, page, PAGE, (n + 3 + i) * PAGE, 0), 0);
        }
        for (i = 0; i < n / 2; i++) {
                harness_fill(page, 1000000 + i, 0);
                assert_int_equal(nbd_pread(h, back, PAGE, (n + 3 + i) * PAGE, 0), 0);
                assert_memory_equal(page, back, PAGE);
        }
        for (i = n / 2 + 1; i <= n; i++) {
                harness_fill(page, i, 0);
                assert_int_equal(nbd_pread(h, back, PAGE, i * PAGE, 0), 0);
                assert_memory_equal(page, back, PAGE);
        }
        nbd_close(h);
}

struct bad_start {
        const char *params[4];
        const char *phrase; /* must appear in nbdkit's stderr */
};

static const struct bad_start bad_starts[] = {
    {{"disksize=16M", "foo=1"}, "unknown parameter 'foo'"},
    {{"disksize=12Q"}, "invalid disksize=12Q"},
    {{"disksize=0"}, "disksize must not be zero"},
    {{"disksize=100"}, "disksize must be at least one page"},
    {{"disksize=16M", "memlimit=32M"},
     "memlimit (33554432 bytes) is larger than disksize (16777216 bytes)"},
    {{"disksize=16M", "memlimit=0"}, "memlimit must not be zero"},
    {{"disksize=16M", "memlimit=8M", "reserve=9M"},
     "reserve (9437184 bytes) is larger than memlimit (8388608 bytes)"},
    {{"disksize=16M", "compressor=zstd"}, "unknown compressor 'zstd' (available: lzo)"},
    {{"disksize=16M", "disksize=32M"}, "parameter 'disksize' given twice"},
    {{"disksize=16M", "mlock=sometimes"},
     "invalid mlock=sometimes (use on, off or auto)"},
    {{"disksize=16M", "backing-force=true"}, "backing-force needs backing=PATH"},
    {{"disksize=16M", "oomkill=sometimes"}, "invalid oomkill=sometimes (use on or off)"},
    {{"disksize=16M", "workspaces=0"}, "workspaces=0: must be 1 to 4096"},
    {{"disksize=16M", "stats=/proc/no-such-dir/sock"},
     "stats=/proc/no-such-dir/sock: cannot create the socket"},
    /* 2^32 pages and more: the table alone outgrows any RAM this runs on. */
    {{"disksize=17T", "memlimit=1G"}, "needs a page table of 36507222016 bytes"},
    /* The pool addresses 2^22-1 pages; disksize=20G keeps the table small. */
    {{"disksize=20G", "memlimit=17G"},
     "memlimit (18253611008 bytes) is more than the pool can address (17179865088 "
     "bytes, 2^22-1 pages of 4 KiB)"},
    /* Refused by the core when it builds the device: */
    {{"disksize=16M", "memlimit=100"}, "cannot create the device: memlimit"},
};

/* Each bad parameter set stops nbdkit at start-up with a clear sentence; the same
 * command with good parameters starts (and ends on end of input) cleanly. */
static void test_startup_errors(void **state)
{
        static const char *const good[] = {"disksize=16M", "memlimit=8M", "reserve=1M",
                                           "compressor=lzo", NULL};
        char *err;
        int status;

        status = harness_run_nbdkit(good, &err);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("good parameters: wait status %#x, stderr:\n%s", status, err);
        free(err);

        for (size_t i = 0; i < sizeof bad_starts / sizeof bad_starts[0]; i++) {
                const struct bad_start *b = &bad_starts[i];

                status = harness_run_nbdkit(b->params, &err);
                if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
                        fail_msg("%s %s: expected a failing exit, wait status %#x",
                                 b->params[0], b->params[1] ? b->params[1] : "", status);
                if (strstr(err, b->phrase) == NULL)
                        fail_msg("%s %s: stderr lacks \"%s\":\n%s", b->params[0],
                                 b->params[1] ? b->params[1] : "", b->phrase, err);
                free(err);
        }
}

/* Physical RAM, as the plugin sees it. */
static uint64_t ram_bytes(void)
{
        return (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void expect_refusal(const char *const *params, const char *phrase)
{
        char *err;
        int status = harness_run_nbdkit(params, &err);

        if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
                fail_msg("%s %s: expected a failing exit, wait status %#x", params[0],
                         params[1], status);
        if (strstr(err, phrase) == NULL)
                fail_msg("%s %s: stderr lacks \"%s\":\n%s", params[0], params[1], phrase,
                         err);
        free(err);
}

/* Memory faulted in at start is bounded by RAM: reserve to half of it, the page
 * table (8 bytes a page) to a quarter. Refused before anything is allocated. */
static void test_ram_limits(void **state)
{
        const uint64_t ram = ram_bytes();
        const uint64_t reserve = ram / 100 * 60 / PAGE * PAGE;
        const uint64_t big = (ram / 32 + 4096) * PAGE; /* table > ram / 4 */
        char d[64], m[64], r[64], phrase[160];

        snprintf(d, sizeof d, "disksize=%" PRIu64, reserve + PAGE);
        snprintf(m, sizeof m, "memlimit=%" PRIu64, reserve + PAGE);
        snprintf(r, sizeof r, "reserve=%" PRIu64, reserve);
        snprintf(phrase, sizeof phrase,
                 "reserve (%" PRIu64 " bytes) is more than 50%% of RAM (%" PRIu64
                 " bytes)",
                 reserve, ram);
        expect_refusal((const char *const[]){d, m, r, NULL}, phrase);

        snprintf(d, sizeof d, "disksize=%" PRIu64, big);
        snprintf(phrase, sizeof phrase,
                 "disksize (%" PRIu64 " bytes) needs a page table of %" PRIu64
                 " bytes, more than 25%% of RAM",
                 big, big / PAGE * 8);
        expect_refusal((const char *const[]){d, "memlimit=1G", NULL}, phrase);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_startup_errors),
            cmocka_unit_test(test_ram_limits),
            cmocka_unit_test(test_unaligned),
            cmocka_unit_test(test_refusals_rate_limited),
            cmocka_unit_test(test_full),
        };

        harness_nbdkit();
        harness_plugin();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
