/* Unit tests for stats_format: exact text lines, JSON validity and values, the
 * text round trip, buffer limits and malformed input.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ramzswap/stats_format.h"
#include "tiny_json.h"

static const struct rzs_stats sample = {
    .disksize = 1073741824,
    .memlimit = 268435456,
    .num_reads = 123456,
    .num_writes = 234567,
    .failed_reads = 1,
    .failed_writes = 2,
    .invalid_io = 3,
    .pages_discard = 4567,
    .zero_pages = 89,
    .same_pages = 12,
    .good_compress = 900,
    .no_compress = 50,
    .pages_stored = 1000,
    .pages_used = 300,
    .orig_data_size = 4096000,
    .compr_data_size = 1100000,
    .mem_used_total = 1228800,
    .mem_used_max = 2000000,
    .pool_block_bytes = 1150000,
    .bdev_num_reads = 7,
    .bdev_num_writes = 8,
    .backing_pages = 9,
    .pool_stock = 4194304,
    .stock_empty = 11,
    .oom_kill_requests = 1,
};

static const struct rzs_stats_facts sample_facts = {
    .compressor = "lzo",
    .capabilities = "cap_ipc_lock=ep",
    .mlocked = true,
    .io_flusher = false,
};

static const char sample_text[] = "DiskSize:          1048576 kB\n"
                                  "MemLimit:           262144 kB\n"
                                  "NumReads:           123456\n"
                                  "NumWrites:          234567\n"
                                  "FailedReads:             1\n"
                                  "FailedWrites:            2\n"
                                  "InvalidIO:               3\n"
                                  "PagesDiscard:         4567\n"
                                  "ZeroPages:              89\n"
                                  "GoodCompress:           90 %\n"
                                  "NoCompress:              5 %\n"
                                  "PagesStored:          1000\n"
                                  "PagesUsed:             300\n"
                                  "OrigDataSize:         4000 kB\n"
                                  "ComprDataSize:        1074 kB\n"
                                  "MemUsedTotal:         1200 kB\n"
                                  "BDevNumReads:            7\n"
                                  "BDevNumWrites:           8\n"
                                  "MemUsedMax:           1953 kB\n"
                                  "SameFilled:             12\n"
                                  "Fragmentation:        1.12\n"
                                  "CompressionRatio:     3.72\n"
                                  "Mlock:                 yes\n"
                                  "IoFlusher:              no\n"
                                  "Capabilities:     cap_ipc_lock=ep\n"
                                  "Compressor:            lzo\n"
                                  "BackingPages:            9\n"
                                  "PoolStock:            4096 kB\n"
                                  "StockEmpty:             11\n"
                                  "OomKillRequests:         1\n";

static void test_text_exact(void **state)
{
        char buf[RZS_STATS_TEXT_MAX];
        int n = rzs_stats_format_text(&sample, &sample_facts, buf, sizeof buf);

        assert_int_equal(n, (int)strlen(sample_text));
        assert_string_equal(buf, sample_text);
}

static void test_text_empty_device(void **state)
{
        struct rzs_stats st = {.disksize = 4096};
        struct rzs_stats_facts fa = {0};
        char buf[RZS_STATS_TEXT_MAX];

        assert_true(rzs_stats_format_text(&st, &fa, buf, sizeof buf) > 0);
        /* Nothing stored: percentages and ratios are 0, not a division by zero. */
        assert_non_null(strstr(buf, "GoodCompress:            0 %\n"));
        assert_non_null(strstr(buf, "NoCompress:              0 %\n"));
        assert_non_null(strstr(buf, "Fragmentation:        0.00\n"));
        assert_non_null(strstr(buf, "CompressionRatio:     0.00\n"));
        assert_non_null(strstr(buf, "Mlock:                  no\n"));
        assert_non_null(strstr(buf, "Capabilities:         none\n"));
        assert_non_null(strstr(buf, "Compressor:           none\n"));
}

/* o has the number key, equal to want; a failure names the key. */
static void assert_json_u64(const struct tj_object *o, const char *key, uint64_t want)
{
        uint64_t v;

        if (!tj_u64(o, key, &v))
                fail_msg("JSON has no number \"%s\"", key);
        if (v != want)
                fail_msg("JSON \"%s\": %" PRIu64 ", want %" PRIu64, key, v, want);
}

static void test_json_values(void **state)
{
        char buf[RZS_STATS_TEXT_MAX];
        struct tj_object o;
        int n = rzs_stats_format_json(&sample, &sample_facts, buf, sizeof buf);

        assert_true(n > 0);
        assert_int_equal((size_t)n, strlen(buf));
        assert_true(tj_parse(buf, (size_t)n, &o));
        /* Every raw field (25, oom_kill_requests the last) + 4 derived + 4 facts. */
        assert_int_equal(o.n, sizeof(struct rzs_stats) / sizeof(uint64_t) + 8);
        assert_json_u64(&o, "disksize", 1073741824);
        assert_json_u64(&o, "compr_data_size", 1100000);
        assert_json_u64(&o, "pool_block_bytes", 1150000);
        assert_json_u64(&o, "pool_stock", 4194304);
        assert_json_u64(&o, "oom_kill_requests", 1);
        assert_json_u64(&o, "good_compress", 900);
        assert_json_u64(&o, "good_compress_pct", 90);
        assert_json_u64(&o, "no_compress_pct", 5);
        assert_json_u64(&o, "same_pages", 12);
        assert_json_u64(&o, "bdev_num_writes", 8);
        assert_string_equal(tj_find(&o, "fragmentation")->value, "1.12");
        assert_string_equal(tj_find(&o, "compression_ratio")->value, "3.72");
        assert_int_equal(tj_find(&o, "mlock")->type, TJ_TRUE);
        assert_int_equal(tj_find(&o, "io_flusher")->type, TJ_FALSE);
        assert_int_equal(tj_find(&o, "capabilities")->type, TJ_STRING);
        assert_string_equal(tj_find(&o, "capabilities")->value, "cap_ipc_lock=ep");
        assert_string_equal(tj_find(&o, "compressor")->value, "lzo");
}

static void test_json_escapes(void **state)
{
        struct rzs_stats_facts fa = {.compressor = "a\"b\\c", .capabilities = "x"};
        char buf[RZS_STATS_TEXT_MAX];
        struct tj_object o;
        int n = rzs_stats_format_json(&sample, &fa, buf, sizeof buf);

        assert_true(n > 0);
        assert_true(tj_parse(buf, (size_t)n, &o));
        assert_string_equal(tj_find(&o, "compressor")->value, "a\"b\\c");
}

static void test_control_chars_refused(void **state)
{
        struct rzs_stats_facts fa = {.compressor = "lzo\nNumReads: 1"};
        char buf[RZS_STATS_TEXT_MAX];

        assert_int_equal(rzs_stats_format_text(&sample, &fa, buf, sizeof buf), -EINVAL);
        assert_int_equal(rzs_stats_format_json(&sample, &fa, buf, sizeof buf), -EINVAL);
}

static void test_buffer_too_small(void **state)
{
        char buf[RZS_STATS_TEXT_MAX];
        size_t full = strlen(sample_text);

        /* Exactly enough (with the NUL) works; one byte less does not, at any size. */
        assert_int_equal(rzs_stats_format_text(&sample, &sample_facts, buf, full + 1),
                         (int)full);
        for (size_t size = 0; size <= full; size++) {
                memset(buf, 'X', sizeof buf);
                assert_int_equal(rzs_stats_format_text(&sample, &sample_facts, buf, size),
                                 -ENOSPC);
                if (size > 0)
                        assert_true(strlen(buf) < size);
                assert_int_equal(buf[size], 'X'); /* nothing written past the end */
        }
        assert_int_equal(rzs_stats_format_json(&sample, &sample_facts, buf, 100),
                         -ENOSPC);
}

static void test_parse_round_trip(void **state)
{
        char buf[RZS_STATS_TEXT_MAX];
        struct rzs_stats_report r;
        int n = rzs_stats_format_text(&sample, &sample_facts, buf, sizeof buf);

        assert_true(n > 0);
        assert_int_equal(rzs_stats_parse_text(buf, (size_t)n, &r), 0);
        assert_int_equal(r.stats.disksize, sample.disksize);
        assert_int_equal(r.stats.memlimit, sample.memlimit);
        assert_int_equal(r.stats.num_reads, sample.num_reads);
        assert_int_equal(r.stats.num_writes, sample.num_writes);
        assert_int_equal(r.stats.failed_reads, 1);
        assert_int_equal(r.stats.failed_writes, 2);
        assert_int_equal(r.stats.invalid_io, 3);
        assert_int_equal(r.stats.pages_discard, 4567);
        assert_int_equal(r.stats.zero_pages, 89);
        assert_int_equal(r.stats.same_pages, 12);
        assert_int_equal(r.stats.pages_stored, 1000);
        assert_int_equal(r.stats.pages_used, 300);
        assert_int_equal(r.stats.orig_data_size, 4096000);
        assert_int_equal(r.stats.compr_data_size, 1074 * 1024); /* kB, rounded down */
        assert_int_equal(r.stats.mem_used_total, 1228800);
        assert_int_equal(r.stats.mem_used_max, 1953 * 1024);
        assert_int_equal(r.stats.bdev_num_reads, 7);
        assert_int_equal(r.stats.bdev_num_writes, 8);
        assert_int_equal(r.stats.backing_pages, 9);
        assert_int_equal(r.stats.pool_stock, 4194304);
        assert_int_equal(r.stats.stock_empty, 11);
        assert_int_equal(r.stats.oom_kill_requests, 1);
        assert_int_equal(r.good_compress_pct, 90);
        assert_int_equal(r.no_compress_pct, 5);
        assert_int_equal(r.fragmentation_x100, 112);
        assert_int_equal(r.compression_ratio_x100, 372);
        assert_true(r.mlocked);
        assert_false(r.io_flusher);
        assert_string_equal(r.capabilities, "cap_ipc_lock=ep");
        assert_string_equal(r.compressor, "lzo");
        /* Not NUL-terminated input: parse exactly len bytes. */
        buf[n] = 'Z';
        assert_int_equal(rzs_stats_parse_text(buf, (size_t)n, &r), 0);
}

static void test_parse_unknown_keys_ignored(void **state)
{
        char buf[RZS_STATS_TEXT_MAX + 64];
        struct rzs_stats_report r;
        int n = rzs_stats_format_text(&sample, &sample_facts, buf, RZS_STATS_TEXT_MAX);

        assert_true(n > 0);
        strcat(buf, "FutureCounter:  42 widgets\n");
        assert_int_equal(rzs_stats_parse_text(buf, strlen(buf), &r), 0);
        assert_int_equal(r.stats.num_reads, 123456);
}

/* Replace the first occurrence of from with to in a copy of the sample, parse it. */
static int parse_edited(const char *from, const char *to)
{
        char buf[RZS_STATS_TEXT_MAX];
        const char *at = strstr(sample_text, from);
        struct rzs_stats_report r;

        assert_non_null(at);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - sample_text), sample_text, to,
                 at + strlen(from));
        return rzs_stats_parse_text(buf, strlen(buf), &r);
}

static void test_parse_rejects(void **state)
{
        struct rzs_stats_report r;
        const char *junk = "HTTP/1.1 400 Bad Request\r\n\r\n";

        assert_int_equal(parse_edited("NumReads", "NumReads"), 0);
        assert_int_equal(rzs_stats_parse_text("", 0, &r), -EBADMSG);
        assert_int_equal(rzs_stats_parse_text(junk, strlen(junk), &r), -EBADMSG);
        assert_int_equal(r.stats.num_reads, 0); /* zeroed on failure */
        /* A missing key. */
        assert_int_equal(parse_edited("NumWrites:          234567\n", ""), -EBADMSG);
        /* Malformed values. */
        assert_int_equal(parse_edited("123456", "12x456"), -EBADMSG);
        assert_int_equal(parse_edited("1048576 kB", "1048576 MB"), -EBADMSG);
        assert_int_equal(parse_edited("1048576 kB", "1048576"), -EBADMSG);
        assert_int_equal(parse_edited("90 %", "90 percent"), -EBADMSG);
        assert_int_equal(parse_edited("3.72", "3.7"), -EBADMSG);
        assert_int_equal(parse_edited("3.72", "-3.72"), -EBADMSG);
        assert_int_equal(parse_edited("yes", "maybe"), -EBADMSG);
        assert_int_equal(parse_edited("123456", "99999999999999999999"), -EBADMSG);
        assert_int_equal(parse_edited("NumReads:", "NumReads"), -EBADMSG);
}

/* Counters read one by one while pages come and go can show more good or raw pages
 * than stored ones: the text must still say at most 100 % and parse back, or
 * ramzswap-stat --watch would stop on a busy device. An older server's 190 % is
 * read as 100 %. */
static void test_torn_snapshot_parses(void **state)
{
        struct rzs_stats st = sample;
        char buf[RZS_STATS_TEXT_MAX];
        struct rzs_stats_report r;
        int n;

        st.pages_stored = 200;
        st.good_compress = 400;
        st.no_compress = 250;
        n = rzs_stats_format_text(&st, &sample_facts, buf, sizeof buf);
        assert_true(n > 0);
        assert_non_null(strstr(buf, "GoodCompress:          100 %\n"));
        assert_non_null(strstr(buf, "NoCompress:            100 %\n"));
        assert_int_equal(rzs_stats_parse_text(buf, (size_t)n, &r), 0);
        assert_int_equal(r.good_compress_pct, 100);
        assert_int_equal(r.no_compress_pct, 100);
        assert_int_equal(r.stats.pages_stored, 200);

        n = rzs_stats_format_json(&st, &sample_facts, buf, sizeof buf);
        assert_true(n > 0);
        assert_non_null(strstr(buf, "\"good_compress_pct\": 100,"));
        assert_int_equal(parse_edited("90 %", "190 %"), 0);
}

static void test_percent_and_ratio(void **state)
{
        assert_int_equal(rzs_stats_percent(0, 0), 0);
        assert_int_equal(rzs_stats_percent(5, 0), 0);
        assert_int_equal(rzs_stats_percent(1, 3), 33);
        assert_int_equal(rzs_stats_percent(7, 3), 100); /* a torn snapshot */
        assert_int_equal(rzs_stats_percent(UINT64_MAX, UINT64_MAX), 100);
        assert_int_equal(rzs_stats_ratio_x100(1, 0), 0);
        assert_int_equal(rzs_stats_ratio_x100(2, 3), 67);
        assert_int_equal(rzs_stats_ratio_x100(UINT64_MAX, 1), UINT64_MAX); /* saturates */
        assert_int_equal(rzs_stats_ratio_x100(UINT64_MAX, UINT64_MAX), 100);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_text_exact),
            cmocka_unit_test(test_text_empty_device),
            cmocka_unit_test(test_json_values),
            cmocka_unit_test(test_json_escapes),
            cmocka_unit_test(test_control_chars_refused),
            cmocka_unit_test(test_buffer_too_small),
            cmocka_unit_test(test_parse_round_trip),
            cmocka_unit_test(test_parse_unknown_keys_ignored),
            cmocka_unit_test(test_parse_rejects),
            cmocka_unit_test(test_torn_snapshot_parses),
            cmocka_unit_test(test_percent_and_ratio),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
