/* ramzswap nbd tests: data round trips through real nbdkit and the plugin.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Each page's content is a function of its index and a pass number, mixing the
 * device's four storage cases (zero, same-filled, compressible, incompressible), so
 * any misplaced, stale or corrupted page shows up as a mismatch at a known page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbd_harness.h"

#define PAGE    4096u
#define MIB     (1024u * 1024u)
#define MAX_REQ (32u * MIB)

static const char *const params_16m[] = {"disksize=16M", NULL};

static uint64_t page_hash(uint64_t page, unsigned pass)
{
        uint64_t x = page * 0x9e3779b97f4a7c15ull ^ (uint64_t)pass << 56;

        x ^= x >> 31;
        x *= 0xd6e8feb86659fd93ull;
        return x ^ x >> 32;
}

/* The content of page `page` in pass `pass`. */
static void pattern_page(void *buf, uint64_t page, unsigned pass)
{
        uint64_t h = page_hash(page, pass);
        uint32_t *w = buf;

        switch (h % 4) {
        case 0:
                memset(buf, 0, PAGE);
                break;
        case 1: /* same-filled with a non-zero word */
                for (size_t i = 0; i < PAGE / 4; i++)
                        w[i] = (uint32_t)(h >> 8) | 1;
                break;
        case 2:
                harness_fill(buf, h, 1);
                break;
        default:
                harness_fill(buf, h, 0);
                break;
        }
}

static void pattern(unsigned char *buf, uint64_t len, uint64_t off, unsigned pass)
{
        for (uint64_t i = 0; i < len; i += PAGE)
                pattern_page(buf + i, (off + i) / PAGE, pass);
}

/* Write pass `pass` over [off, off + len) in requests of varying sizes. */
static void write_pattern(struct nbd_handle *h, unsigned char *buf, uint64_t len,
                          uint64_t off, unsigned pass)
{
        static const uint64_t sizes[] = {PAGE, 16 * PAGE, MIB, MAX_REQ, 3 * PAGE};
        uint64_t done = 0;

        for (unsigned i = 0; done < len; i++) {
                uint64_t n = sizes[i % 5];

                if (n > len - done)
                        n = len - done;
                pattern(buf, n, off + done, pass);
                assert_int_equal(nbd_pwrite(h, buf, n, off + done, 0), 0);
                done += n;
        }
}

/* Read [off, off + len) back in requests of sizes other than the writes' and
 * compare page by page, naming the first bad page. */
static void verify_pattern(struct nbd_handle *h, unsigned char *buf, uint64_t len,
                           uint64_t off, unsigned pass)
{
        static const uint64_t sizes[] = {7 * PAGE, MAX_REQ, PAGE, 2 * MIB};
        unsigned char expect[PAGE];
        uint64_t done = 0;

        for (unsigned i = 0; done < len; i++) {
                uint64_t n = sizes[i % 4];

                if (n > len - done)
                        n = len - done;
                assert_int_equal(nbd_pread(h, buf, n, off + done, 0), 0);
                for (uint64_t p = 0; p < n; p += PAGE) {
                        uint64_t page = (off + done + p) / PAGE;

                        pattern_page(expect, page, pass);
                        if (memcmp(buf + p, expect, PAGE) != 0)
                                fail_msg("page %llu differs from pass %u",
                                         (unsigned long long)page, pass);
                }
                done += n;
        }
}

static void assert_zeros(struct nbd_handle *h, unsigned char *buf, uint64_t len,
                         uint64_t off)
{
        for (uint64_t done = 0; done < len;) {
                uint64_t n = len - done < MAX_REQ ? len - done : MAX_REQ;

                assert_int_equal(nbd_pread(h, buf, n, off + done, 0), 0);
                if (!harness_is_zero(buf, n))
                        fail_msg("bytes at %llu..%llu are not zero",
                                 (unsigned long long)(off + done),
                                 (unsigned long long)(off + done + n));
                done += n;
        }
}

/* >= 64 MiB written, verified, rewritten with different content, verified again;
 * the rest of the device, never written, reads as zeros. */
static void test_roundtrip(void **state)
{
        static const char *const params[] = {"disksize=96M", "memlimit=96M", NULL};
        const uint64_t region = 64 * (uint64_t)MIB, size = 96 * (uint64_t)MIB;
        unsigned char *buf = malloc(MAX_REQ);
        struct nbd_handle *h = harness_connect(params);

        assert_non_null(buf);
        assert_int_equal(nbd_get_size(h), (int64_t)size);
        assert_zeros(h, buf, size - PAGE, PAGE);
        for (unsigned pass = 1; pass <= 2; pass++) {
                write_pattern(h, buf, region, 0, pass);
                verify_pattern(h, buf, region, 0, pass);
        }
        assert_zeros(h, buf, size - region, region);
        /* A partial rewrite leaves its neighbours alone. */
        write_pattern(h, buf, 8 * (uint64_t)MIB, 20 * (uint64_t)MIB, 3);
        verify_pattern(h, buf, 20 * (uint64_t)MIB, 0, 2);
        verify_pattern(h, buf, 8 * (uint64_t)MIB, 20 * (uint64_t)MIB, 3);
        verify_pattern(h, buf, region - 28 * (uint64_t)MIB, 28 * (uint64_t)MIB, 2);
        nbd_close(h);
        free(buf);
}

static void blkid_value(const char *file, const char *tag, char *out, size_t n)
{
        char cmd[512];
        FILE *p;

        snprintf(cmd, sizeof cmd, "blkid -p -o value -s %s '%s'", tag, file);
        p = popen(cmd, "r");
        assert_non_null(p);
        if (fgets(out, (int)n, p) == NULL)
                out[0] = '\0';
        out[strcspn(out, "\n")] = '\0';
        pclose(p);
}

/* Page 0 of a fresh device is a swap header blkid recognises, and the rest of the
 * device reads as zeros. */
static void test_swap_header(void **state)
{
        unsigned char page[PAGE];
        char file[] = "/tmp/ramzswap-hdr-XXXXXX", type[64], label[64];
        struct nbd_handle *h = harness_connect(params_16m);
        uint32_t version, last_page;
        int fd;

        assert_int_equal(nbd_pread(h, page, PAGE, 0, 0), 0);
        assert_memory_equal(page + PAGE - 10, "SWAPSPACE2", 10);
        memcpy(&version, page + 1024, 4);
        memcpy(&last_page, page + 1028, 4);
        assert_int_equal(version, 1);
        assert_int_equal(last_page, 16 * MIB / PAGE - 1);

        fd = mkstemp(file);
        assert_true(fd >= 0);
        /* The image has the device's size (sparse): libblkid ignores a swap
         * signature on a tiny image (measured: 3 pages no, 10 pages yes). */
        assert_int_equal(write(fd, page, PAGE), (ssize_t)PAGE);
        assert_int_equal(ftruncate(fd, 16 * MIB), 0);
        close(fd);
        blkid_value(file, "TYPE", type, sizeof type);
        blkid_value(file, "LABEL", label, sizeof label);
        unlink(file);
        assert_string_equal(type, "swap");
        assert_string_equal(label, "ramzswap");

        /* The header is stable across reads. */
        unsigned char again[PAGE];
        assert_int_equal(nbd_pread(h, again, PAGE, 0, 0), 0);
        assert_memory_equal(page, again, PAGE);

        unsigned char *buf = malloc(16 * MIB);
        assert_non_null(buf);
        assert_zeros(h, buf, 16 * MIB - PAGE, PAGE);
        free(buf);
        nbd_close(h);
}

/* Trim and write-zeroes (plain, fast, no-hole) read back as zeros and leave their
 * neighbours intact; a trim larger than the maximum block size works. */
static void test_trim_zero(void **state)
{
        static const char *const params[] = {"disksize=48M", NULL};
        const uint64_t size = 48 * (uint64_t)MIB;
        unsigned char *buf = malloc(MAX_REQ);
        struct nbd_handle *h = harness_connect(params);

        assert_non_null(buf);
        write_pattern(h, buf, 4 * MIB, 0, 7);
        assert_int_equal(nbd_trim(h, MIB, MIB, 0), 0);
        assert_int_equal(nbd_zero(h, MIB / 2, 2 * MIB, 0), 0);
        assert_int_equal(nbd_zero(h, MIB / 4, 5 * MIB / 2, LIBNBD_CMD_FLAG_FAST_ZERO), 0);
        assert_int_equal(nbd_zero(h, PAGE, 3 * MIB, LIBNBD_CMD_FLAG_NO_HOLE), 0);
        assert_int_equal(nbd_zero(h, PAGE, 3 * MIB + PAGE, LIBNBD_CMD_FLAG_FUA), 0);

        verify_pattern(h, buf, MIB, 0, 7);
        assert_zeros(h, buf, 7 * MIB / 4, MIB);
        verify_pattern(h, buf, MIB / 4, 11 * MIB / 4, 7);
        assert_zeros(h, buf, 2 * PAGE, 3 * MIB);
        verify_pattern(h, buf, MIB - 2 * PAGE, 3 * MIB + 2 * PAGE, 7);

        /* Slot 0 too reads as zeros once trimmed; the whole device is one trim. */
        assert_int_equal(nbd_trim(h, size, 0, 0), 0);
        assert_zeros(h, buf, size, 0);
        write_pattern(h, buf, 4 * MIB, 0, 8);
        assert_int_equal(nbd_zero(h, size, 0, LIBNBD_CMD_FLAG_FAST_ZERO), 0);
        assert_zeros(h, buf, size, 0);
        nbd_close(h);
        free(buf);
}

/* What the plugin advertises: block sizes, size rounding and capabilities. */
static void test_capabilities(void **state)
{
        static const char *const params[] = {"1000001", NULL}; /* magic disksize */
        struct nbd_handle *h = harness_connect(params);

        assert_int_equal(nbd_get_size(h), 1000001 / PAGE * PAGE);
        assert_int_equal(nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM), PAGE);
        assert_int_equal(nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED), PAGE);
        assert_int_equal(nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM), MAX_REQ);
        assert_int_equal(nbd_can_multi_conn(h), 1);
        assert_int_equal(nbd_can_trim(h), 1);
        assert_int_equal(nbd_can_zero(h), 1);
        assert_int_equal(nbd_can_fast_zero(h), 1);
        assert_int_equal(nbd_can_flush(h), 1);
        assert_int_equal(nbd_can_fua(h), 1);
        assert_int_equal(nbd_can_cache(h), 1);
        assert_int_equal(nbd_is_read_only(h), 0);
        assert_int_equal(nbd_flush(h, 0), 0);
        assert_int_equal(nbd_cache(h, 16 * PAGE, 0, 0), 0);

        unsigned char page[PAGE], back[PAGE];
        pattern_page(page, 3, 3);
        assert_int_equal(nbd_pwrite(h, page, PAGE, 17 * PAGE, LIBNBD_CMD_FLAG_FUA), 0);
        assert_int_equal(nbd_pread(h, back, PAGE, 17 * PAGE, 0), 0);
        assert_memory_equal(page, back, PAGE);
        nbd_close(h);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_capabilities),
            cmocka_unit_test(test_swap_header),
            cmocka_unit_test(test_trim_zero),
            cmocka_unit_test(test_roundtrip),
        };

        harness_nbdkit();
        harness_plugin();
        harness_require_program("blkid");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
