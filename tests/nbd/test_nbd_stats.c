/* ramzswap nbd tests: the stats socket of a real nbdkit, and ramzswap-stat.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A known workload goes in through NBD; the counters read back through the socket
 * (text and JSON) must equal the expected numbers exactly. The stats socket is
 * bound before nbdkit serves and its thread starts before the first NBD connection
 * is accepted, so once an NBD handshake has completed a stats client is answered:
 * nothing here waits for time to pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../unit/tiny_json.h"
#include "nbd_harness.h"
#include "ramzswap/stats_format.h"

#define PAGE  4096u
#define REPLY (4 * RZS_STATS_TEXT_MAX)

/* The workload: page ranges (first page, count) and what goes there. */
#define ZERO_AT     100u
#define N_ZERO      10u
#define SAME_AT     200u
#define N_SAME      7u
#define GOOD_AT     300u
#define N_GOOD      20u
#define RAW_AT      400u
#define N_RAW       5u
#define N_READ_GOOD 10u /* read back from GOOD_AT */
#define N_TRIM      5u  /* trimmed from GOOD_AT */
#define EMPTY_AT    500u
#define N_EMPTY     4u /* trimmed, never written: not counted as discarded */

struct fixture {
        struct harness_server srv;
        char dir[64];
        char stats[128];
        struct nbd_handle *h;
};

static struct fixture fx;

static void start(void)
{
        char param[160];
        const char *params[] = {"disksize=64M", "memlimit=32M", param, NULL};

        strcpy(fx.dir, "/tmp/ramzswap-stats-XXXXXX");
        assert_non_null(mkdtemp(fx.dir));
        snprintf(fx.stats, sizeof fx.stats, "%s/stats", fx.dir);
        snprintf(param, sizeof param, "stats=%s", fx.stats);
        harness_server_start(&fx.srv, params);
        /* Serving implies .after_fork has run: the stats thread is up. */
        fx.h = harness_server_connect(&fx.srv);
}

static void stop(void)
{
        struct stat st;

        nbd_close(fx.h);
        harness_server_stop(&fx.srv);
        /* nbdkit removed its stats socket when it exited. */
        assert_int_equal(stat(fx.stats, &st), -1);
        assert_int_equal(errno, ENOENT);
        rmdir(fx.dir);
}

static size_t fetch(const char *request, char *buf, size_t size)
{
        return harness_stats_fetch(fx.stats, request, buf, size);
}

static void fetch_text(struct rzs_stats_report *r)
{
        static char buf[REPLY];
        size_t n = fetch("text\n", buf, sizeof buf);

        if (rzs_stats_parse_text(buf, n, r) != 0)
                fail_msg("not a stats snapshot:\n%s", buf);
}

static void fetch_json(struct tj_object *o)
{
        static char buf[REPLY];
        size_t n = fetch("json\n", buf, sizeof buf);

        if (!tj_parse(buf, n, o))
                fail_msg("not JSON:\n%s", buf);
}

static void write_pages(uint64_t first, unsigned count, unsigned kind)
{
        unsigned char *buf = malloc((size_t)count * PAGE);

        assert_non_null(buf);
        for (unsigned i = 0; i < count; i++) {
                unsigned char *p = buf + (size_t)i * PAGE;
                uint32_t word = 0x01010101u * (i + 1);

                switch (kind) {
                case 0:
                        memset(p, 0, PAGE);
                        break;
                case 1:
                        for (unsigned j = 0; j < PAGE; j += 4)
                                memcpy(p + j, &word, 4);
                        break;
                default:
                        harness_fill(p, first + i, kind == 2);
                }
        }
        assert_int_equal(nbd_pwrite(fx.h, buf, (size_t)count * PAGE, first * PAGE, 0), 0);
        free(buf);
}

static void workload(void)
{
        unsigned char buf[N_READ_GOOD * PAGE];

        write_pages(ZERO_AT, N_ZERO, 0);
        write_pages(SAME_AT, N_SAME, 1);
        write_pages(GOOD_AT, N_GOOD, 2);
        write_pages(RAW_AT, N_RAW, 3);
        assert_int_equal(nbd_pread(fx.h, buf, N_READ_GOOD * PAGE, GOOD_AT * PAGE, 0), 0);
        assert_int_equal(nbd_pread(fx.h, buf, N_RAW * PAGE, RAW_AT * PAGE, 0), 0);
        assert_int_equal(nbd_trim(fx.h, N_TRIM * PAGE, GOOD_AT * PAGE, 0), 0);
        assert_int_equal(nbd_trim(fx.h, N_EMPTY * PAGE, EMPTY_AT * PAGE, 0), 0);
        /* Two misaligned requests, which libnbd would refuse itself if strict. */
        assert_int_equal(nbd_set_strict_mode(fx.h, 0), 0);
        assert_int_equal(nbd_pread(fx.h, buf, PAGE, 512, 0), -1);
        assert_int_equal(nbd_pwrite(fx.h, buf, 100, PAGE, 0), -1);
}

#define N_WRITES (N_ZERO + N_SAME + N_GOOD + N_RAW)
#define N_READS  (N_READ_GOOD + N_RAW)
#define N_STORED (N_GOOD - N_TRIM + N_RAW)

static void test_counters(void **state)
{
        struct rzs_stats_report r;
        struct tj_object o;
        uint64_t v;
        struct stat st;

        start();
        assert_int_equal(stat(fx.stats, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);

        fetch_text(&r);
        assert_int_equal(r.stats.num_writes, 0);
        assert_int_equal(r.stats.pages_stored, 0);
        assert_int_equal(r.stats.disksize, 64u << 20);
        assert_int_equal(r.stats.memlimit, 32u << 20);

        workload();
        fetch_text(&r);
        assert_int_equal(r.stats.num_writes, N_WRITES);
        assert_int_equal(r.stats.num_reads, N_READS);
        assert_int_equal(r.stats.failed_reads, 0);
        assert_int_equal(r.stats.failed_writes, 0);
        assert_int_equal(r.stats.invalid_io, 2);
        assert_int_equal(r.stats.pages_discard, N_TRIM);
        assert_int_equal(r.stats.zero_pages, N_ZERO);
        assert_int_equal(r.stats.same_pages, N_SAME);
        assert_int_equal(r.stats.pages_stored, N_STORED);
        assert_int_equal(r.stats.orig_data_size, N_STORED * PAGE);
        assert_int_equal(r.stats.bdev_num_reads, 0);
        assert_int_equal(r.stats.bdev_num_writes, 0);
        assert_int_equal(r.stats.backing_pages, 0);
        /* The refill thread keeps a stock faulted in; no guard runs here. */
        assert_true(r.stats.pool_stock > 0);
        assert_int_equal(r.stats.oom_kill_requests, 0);
        assert_int_equal(r.good_compress_pct, (N_GOOD - N_TRIM) * 100 / N_STORED);
        assert_int_equal(r.no_compress_pct, N_RAW * 100 / N_STORED);
        assert_true(r.stats.pages_used > 0);
        assert_true(r.stats.compr_data_size > N_RAW * PAGE);
        assert_true(r.stats.compr_data_size < N_STORED * PAGE);
        assert_string_equal(r.compressor, "lzo");

        fetch_json(&o);
        assert_true(tj_u64(&o, "num_writes", &v));
        assert_int_equal(v, N_WRITES);
        assert_true(tj_u64(&o, "num_reads", &v));
        assert_int_equal(v, N_READS);
        assert_true(tj_u64(&o, "invalid_io", &v));
        assert_int_equal(v, 2);
        assert_true(tj_u64(&o, "zero_pages", &v));
        assert_int_equal(v, N_ZERO);
        assert_true(tj_u64(&o, "same_pages", &v));
        assert_int_equal(v, N_SAME);
        assert_true(tj_u64(&o, "pages_stored", &v));
        assert_int_equal(v, N_STORED);
        assert_true(tj_u64(&o, "good_compress", &v));
        assert_int_equal(v, N_GOOD - N_TRIM);
        assert_true(tj_u64(&o, "no_compress", &v));
        assert_int_equal(v, N_RAW);
        assert_true(tj_u64(&o, "pages_discard", &v));
        assert_int_equal(v, N_TRIM);
        assert_true(tj_u64(&o, "compr_data_size", &v));
        /* The text form prints kB, rounded down. */
        assert_int_equal(v / 1024 * 1024, r.stats.compr_data_size);
        assert_true(tj_u64(&o, "backing_pages", &v));
        assert_int_equal(v, 0);
        assert_string_equal(tj_find(&o, "compressor")->value, "lzo");
        stop();
}

/* ---- many clients, some misbehaving, while I/O runs ---- */

#define N_CLIENTS 4
#define N_FETCHES 25

static void *client(void *arg)
{
        uintptr_t bad = 0;

        for (unsigned i = 0; i < N_FETCHES; i++) {
                static __thread char buf[REPLY];
                struct rzs_stats_report r;
                size_t n = fetch(i % 2 ? "json\n" : "text\n", buf, sizeof buf);

                if (i % 2 ? buf[0] != '{' || strstr(buf, "\"num_writes\":") == NULL
                          : rzs_stats_parse_text(buf, n, &r) != 0)
                        bad++;
        }
        return (void *)bad;
}

/* Connect without ever sending, or send garbage without a newline, and hold on. */
static int rude_client(const char *garbage, size_t len)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        strcpy(sa.sun_path, fx.stats);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        if (len)
                assert_int_equal(send(fd, garbage, len, MSG_NOSIGNAL), (ssize_t)len);
        return fd;
}

static void test_concurrent_clients(void **state)
{
        static const char junk[] = "\x00\xff\x16\x03\x01GET / HTTP/1.1\r";
        pthread_t t[N_CLIENTS];
        struct rzs_stats_report r;
        unsigned char page[PAGE];
        int silent, rude;
        uint64_t writes = 0;

        start();
        silent = rude_client(NULL, 0);
        rude = rude_client(junk, sizeof junk - 1);
        for (unsigned i = 0; i < N_CLIENTS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, client, NULL), 0);
        for (unsigned i = 0; i < 2000; i++, writes++) {
                harness_fill(page, i, i % 4 != 0);
                assert_int_equal(
                    nbd_pwrite(fx.h, page, PAGE, (uint64_t)(i % 1000) * PAGE, 0), 0);
        }
        for (unsigned i = 0; i < N_CLIENTS; i++) {
                void *bad;

                assert_int_equal(pthread_join(t[i], &bad), 0);
                assert_int_equal((uintptr_t)bad, 0);
        }
        /* Another garbage line is just a request for the text form. */
        {
                static char buf[REPLY];
                size_t n = fetch("\x01\x02garbage\n", buf, sizeof buf);

                assert_int_equal(rzs_stats_parse_text(buf, n, &r), 0);
        }
        fetch_text(&r);
        assert_int_equal(r.stats.num_writes, writes);
        assert_int_equal(r.stats.pages_stored, 1000);
        close(silent);
        close(rude);
        stop();
}

/* ---- ramzswap-stat ---- */

/* Run argv; stdout and stderr together in out (NUL-terminated). Returns the wait
 * status. */
static int run(const char *const *argv, char *out, size_t size)
{
        char *text;
        int status = harness_run(argv, &text);

        snprintf(out, size, "%s", text);
        free(text);
        return status;
}

static const char *stat_program(void)
{
        const char *p = getenv("RAMZSWAP_STAT");

        if (p == NULL || access(p, X_OK) != 0) {
                print_message("RAMZSWAP_STAT not set or not executable\n");
                skip();
        }
        return p;
}

static void expect_line(const char *out, const char *line)
{
        if (strstr(out, line) == NULL)
                fail_msg("ramzswap-stat output lacks \"%s\":\n%s", line, out);
}

static void test_ramzswap_stat(void **state)
{
        const char *prog = stat_program();
        static char out[REPLY];
        char missing[160], line[256];
        struct rzs_stats_report r;
        struct tj_object o;
        uint64_t v;
        int status;

        start();
        workload();
        fetch_text(&r);

        status = run((const char *const[]){prog, fx.stats, NULL}, out, sizeof out);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("ramzswap-stat: status %#x:\n%s", status, out);
        expect_line(out, "ramzswap statistics from ");
        expect_line(out, "  Disk size               64.00 MiB\n");
        expect_line(out, "  Memory limit            32.00 MiB\n");
        snprintf(line, sizeof line,
                 "  Pages stored       %14u  (zero %u, same-filled %u)\n", N_STORED,
                 N_ZERO, N_SAME);
        expect_line(out, line);
        snprintf(line, sizeof line, "  Compression ratio  %11" PRIu64 ".%02" PRIu64 "\n",
                 r.compression_ratio_x100 / 100, r.compression_ratio_x100 % 100);
        expect_line(out, line);
        assert_true(r.compression_ratio_x100 > 100);
        snprintf(line, sizeof line,
                 "  Good compression   %12u %%  (incompressible %u %%)\n",
                 (N_GOOD - N_TRIM) * 100 / N_STORED, N_RAW * 100 / N_STORED);
        expect_line(out, line);
        snprintf(line, sizeof line, "  Pages read         %14u  (failed 0)\n", N_READS);
        expect_line(out, line);
        snprintf(line, sizeof line, "  Pages written      %14u  (failed 0)\n", N_WRITES);
        expect_line(out, line);
        expect_line(out, "  Invalid I/O                     2\n");
        snprintf(line, sizeof line, "  Pages discarded    %14u\n", N_TRIM);
        expect_line(out, line);
        expect_line(out, "  Backing pages                   0\n");
        expect_line(out, "  Compressor                    lzo\n");

        status =
            run((const char *const[]){prog, "--json", fx.stats, NULL}, out, sizeof out);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!tj_parse(out, strlen(out), &o))
                fail_msg("ramzswap-stat --json is not JSON:\n%s", out);
        assert_true(tj_u64(&o, "num_writes", &v));
        assert_int_equal(v, N_WRITES);
        assert_true(tj_u64(&o, "pages_stored", &v));
        assert_int_equal(v, N_STORED);

        snprintf(missing, sizeof missing, "%s/no-such-socket", fx.dir);
        status = run((const char *const[]){prog, missing, NULL}, out, sizeof out);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        snprintf(line, sizeof line, "no ramzswap stats socket at %s: ", missing);
        expect_line(out, line);
        stop();
}

/* ---- start-up refusals ---- */

static void test_stats_path_refused(void **state)
{
        char dir[] = "/tmp/ramzswap-stats-XXXXXX", file[64], param[96];
        const char *params[] = {"disksize=16M", param, NULL};
        char *err;
        int status, fd;

        assert_non_null(mkdtemp(dir));
        snprintf(file, sizeof file, "%s/regular", dir);
        fd = open(file, O_CREAT | O_WRONLY, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "keep me\n", 8), 8);
        close(fd);

        snprintf(param, sizeof param, "stats=%s", file);
        status = harness_run_nbdkit(params, &err);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        if (strstr(err, "a file or a live socket is already there") == NULL)
                fail_msg("stderr lacks the reason:\n%s", err);
        free(err);
        /* The file is untouched. */
        {
                char back[16] = {0};

                fd = open(file, O_RDONLY);
                assert_true(fd >= 0);
                assert_int_equal(read(fd, back, sizeof back), 8);
                close(fd);
                assert_string_equal(back, "keep me\n");
        }

        snprintf(param, sizeof param, "stats=%s/no-such-dir/sock", dir);
        status = harness_run_nbdkit(params, &err);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        if (strstr(err, "cannot create the socket") == NULL)
                fail_msg("stderr lacks the reason:\n%s", err);
        free(err);
        unlink(file);
        rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_counters),
            cmocka_unit_test(test_concurrent_clients),
            cmocka_unit_test(test_ramzswap_stat),
            cmocka_unit_test(test_stats_path_refused),
        };

        harness_nbdkit();
        harness_plugin();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
