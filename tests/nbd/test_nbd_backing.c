/* ramzswap nbd tests: the backing store (backing=PATH) through a real nbdkit.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * With a small memlimit, a patterned workload larger than the limit goes to the
 * store and comes back byte-identical; start-up refuses stores that hold a file
 * system, that do not exist, that another server holds, or that are smaller than
 * disksize, each with a sentence naming the path.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbd_harness.h"
#include "ramzswap/stats_format.h"

#define PAGE       4096u
#define STORE_SIZE (64u << 20)
#define DATA_PAGES (40u << 20 >> 12) /* 40 MiB of data, memlimit 4 MiB */
#define CHUNK      64u               /* pages per request */

struct tmpdir {
        char dir[64];
        char store[96];
        char stats[96];
};

static void tmp_setup(struct tmpdir *t, uint64_t store_size)
{
        int fd;

        strcpy(t->dir, "/tmp/ramzswap-backing-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        snprintf(t->store, sizeof t->store, "%s/store", t->dir);
        snprintf(t->stats, sizeof t->stats, "%s/stats", t->dir);
        fd = open(t->store, O_CREAT | O_RDWR | O_EXCL, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)store_size), 0);
        close(fd);
}

static void tmp_cleanup(struct tmpdir *t)
{
        unlink(t->store);
        unlink(t->stats);
        rmdir(t->dir);
}

/* Page i's content: a third compress well, the rest are noise (which, with a
 * backing store, go to the store rather than the pool), every 16th is zero. */
static void make_page(unsigned char *p, uint64_t i)
{
        if (i % 16 == 15)
                memset(p, 0, PAGE);
        else
                harness_fill(p, 0xbac0000 + i, i % 3 == 0);
}

static void fetch_stats(const char *path, struct rzs_stats_report *r)
{
        static char buf[4 * RZS_STATS_TEXT_MAX];
        size_t n = harness_stats_fetch(path, "text\n", buf, sizeof buf);

        if (rzs_stats_parse_text(buf, n, r) != 0)
                fail_msg("not a stats snapshot:\n%s", buf);
}

static void test_round_trip(void **state)
{
        struct tmpdir t;
        char backing[128], stats[128];
        struct rzs_stats_report r;
        unsigned char *buf = malloc(CHUNK * PAGE), *expect = malloc(CHUNK * PAGE);
        struct nbd_handle *h;

        assert_non_null(buf);
        assert_non_null(expect);
        tmp_setup(&t, STORE_SIZE);
        snprintf(backing, sizeof backing, "backing=%s", t.store);
        snprintf(stats, sizeof stats, "stats=%s", t.stats);
        /* No disksize: it is the store's size. */
        h = harness_connect((const char *const[]){backing, "memlimit=4M", stats, NULL});
        assert_int_equal(nbd_get_size(h), STORE_SIZE);

        for (uint64_t first = 0; first < DATA_PAGES; first += CHUNK) {
                for (unsigned i = 0; i < CHUNK; i++)
                        make_page(buf + (size_t)i * PAGE, first + i);
                if (nbd_pwrite(h, buf, CHUNK * PAGE, first * PAGE, 0) != 0)
                        fail_msg("write at page %" PRIu64 ": %s", first, nbd_get_error());
        }
        fetch_stats(t.stats, &r);
        assert_true(r.stats.bdev_num_writes > 0);
        assert_true(r.stats.backing_pages > 0);
        assert_int_equal(r.stats.failed_writes, 0);
        /* The pool stayed within memlimit; the rest went to the store. */
        assert_true(r.stats.mem_used_total <= 4u << 20);
        assert_true(r.stats.backing_pages * PAGE + r.stats.orig_data_size >
                    (uint64_t)DATA_PAGES * PAGE / 2);

        for (uint64_t first = 0; first < DATA_PAGES; first += CHUNK) {
                for (unsigned i = 0; i < CHUNK; i++)
                        make_page(expect + (size_t)i * PAGE, first + i);
                assert_int_equal(nbd_pread(h, buf, CHUNK * PAGE, first * PAGE, 0), 0);
                for (unsigned i = 0; i < CHUNK; i++)
                        if (memcmp(buf + (size_t)i * PAGE, expect + (size_t)i * PAGE,
                                   PAGE) != 0)
                                fail_msg("page %" PRIu64 " differs", first + i);
        }
        /* Past the data: never written, zeros. */
        assert_int_equal(nbd_pread(h, buf, CHUNK * PAGE, (uint64_t)DATA_PAGES * PAGE, 0),
                         0);
        assert_true(harness_is_zero(buf, CHUNK * PAGE));
        fetch_stats(t.stats, &r);
        assert_true(r.stats.bdev_num_reads > 0);
        assert_int_equal(r.stats.failed_reads, 0);

        /* A second server may not take the store while this one holds it. */
        {
                char *err;
                int status =
                    harness_run_nbdkit((const char *const[]){backing, NULL}, &err);

                assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
                if (strstr(err, "is locked by another program") == NULL)
                        fail_msg("second server on the store:\n%s", err);
                free(err);
        }
        nbd_close(h);
        tmp_cleanup(&t);
        free(buf);
        free(expect);
}

static void expect_start(const char *const *params, int ok, const char *phrase)
{
        char *err;
        int status = harness_run_nbdkit(params, &err);
        int exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;

        if (exited_ok != ok)
                fail_msg("%s %s: wait status %#x, stderr:\n%s", params[0],
                         params[1] ? params[1] : "", status, err);
        if (phrase && strstr(err, phrase) == NULL)
                fail_msg("%s: stderr lacks \"%s\":\n%s", params[0], phrase, err);
        free(err);
}

static void test_refusals(void **state)
{
        static const unsigned char ext4_magic[2] = {0x53, 0xef};
        struct tmpdir t;
        char backing[128], phrase[256], missing[128];
        unsigned char back[2];
        int fd;

        tmp_setup(&t, 16u << 20);
        snprintf(backing, sizeof backing, "backing=%s", t.store);

        /* Larger than the store. */
        snprintf(phrase, sizeof phrase,
                 "disksize (33554432 bytes) is larger than the backing store %s "
                 "(16777216 bytes)",
                 t.store);
        expect_start((const char *const[]){backing, "disksize=32M", NULL}, 0, phrase);
        expect_start((const char *const[]){backing, "disksize=16M", NULL}, 1, NULL);

        /* An ext4 superblock magic: refused, and left as it was; forced: accepted. */
        fd = open(t.store, O_RDWR);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, ext4_magic, 2, 1080), 2);
        snprintf(phrase, sizeof phrase,
                 "backing=%s: cannot use it: it holds an ext2/3/4 file system", t.store);
        expect_start((const char *const[]){backing, NULL}, 0, phrase);
        expect_start((const char *const[]){backing, NULL}, 0,
                     "give backing-force=true to overwrite it");
        assert_int_equal(pread(fd, back, 2, 1080), 2);
        assert_memory_equal(back, ext4_magic, 2);
        expect_start((const char *const[]){backing, "backing-force=true", NULL}, 1, NULL);
        close(fd);

        /* A path that does not exist. */
        snprintf(missing, sizeof missing, "backing=%s/missing", t.dir);
        snprintf(phrase, sizeof phrase,
                 "backing=%s/missing: cannot use it: it does not exist", t.dir);
        expect_start((const char *const[]){missing, NULL}, 0, phrase);

        /* Not a file or a block device. */
        expect_start((const char *const[]){"backing=/dev/null", NULL}, 0,
                     "backing=/dev/null: cannot use it: it is a character device, not a "
                     "regular file or a block device");
        snprintf(missing, sizeof missing, "backing=%s", t.dir);
        snprintf(phrase, sizeof phrase,
                 "backing=%s: cannot use it: it is a directory, not a regular file or a "
                 "block device",
                 t.dir);
        expect_start((const char *const[]){missing, NULL}, 0, phrase);
        tmp_cleanup(&t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_refusals),
            cmocka_unit_test(test_round_trip),
        };

        harness_nbdkit();
        harness_plugin();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
