/* Unit tests for the SWAPSPACE2 header (src/swaphdr.c). The offsets are written
 * out as numbers here, not taken from the header, so a wrong constant fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ramzswap/swaphdr.h"

static uint32_t get_u32(const unsigned char *p, unsigned off)
{
        uint32_t v;

        memcpy(&v, p + off, sizeof(v));
        return v;
}

static int all_zero(const unsigned char *p, size_t from, size_t to)
{
        for (size_t i = from; i < to; i++)
                if (p[i] != 0)
                        return 0;
        return 1;
}

static void test_layout(void **state)
{
        unsigned char page[4096];
        uint8_t uuid[16];
        (void)state;

        for (int i = 0; i < 16; i++)
                uuid[i] = (uint8_t)(0xa0 + i);
        memset(page, 0xee, sizeof(page));
        rzs_swaphdr_build(page, 262144, uuid);
        assert_true(all_zero(page, 0, 1024));
        assert_int_equal(get_u32(page, 1024), 1);
        assert_int_equal(get_u32(page, 1028), 262143);
        assert_int_equal(get_u32(page, 1032), 0);
        assert_memory_equal(page + 1036, uuid, 16);
        assert_memory_equal(page + 1052, "ramzswap\0\0\0\0\0\0\0\0", 16);
        assert_true(all_zero(page, 1068, 4086));
        assert_memory_equal(page + 4086, "SWAPSPACE2", 10);
}

static void test_last_page_capped(void **state)
{
        unsigned char page[4096];
        uint8_t uuid[16] = {0};
        (void)state;

        rzs_swaphdr_build(page, UINT64_C(1) << 40, uuid);
        assert_int_equal(get_u32(page, 1028), UINT32_MAX);
        rzs_swaphdr_build(page, 1, uuid);
        assert_int_equal(get_u32(page, 1028), 0);
}

static void test_random_uuid_v4(void **state)
{
        uint8_t a[16], b[16];
        (void)state;

        assert_int_equal(rzs_swaphdr_random_uuid(a), 0);
        assert_int_equal(rzs_swaphdr_random_uuid(b), 0);
        assert_int_equal(a[6] >> 4, 4);
        assert_int_equal(a[8] >> 6, 2);
        assert_int_equal(b[6] >> 4, 4);
        /* 122 random bits: two equal draws mean no randomness at all. */
        assert_memory_not_equal(a, b, 16);
}

/* The fallback for a kernel whose entropy pool is not ready yet (early boot): still
 * a well-formed version-4 UUID, and a different one on every call. */
static void test_weak_uuid_v4(void **state)
{
        uint8_t prev[16] = {0}, u[16];
        (void)state;

        for (int i = 0; i < 1000; i++) {
                rzs_swaphdr_weak_uuid(u);
                assert_int_equal(u[6] >> 4, 4);
                assert_int_equal(u[8] >> 6, 2);
                assert_memory_not_equal(u, prev, 16);
                memcpy(prev, u, 16);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_layout),
            cmocka_unit_test(test_last_page_capped),
            cmocka_unit_test(test_random_uuid_v4),
            cmocka_unit_test(test_weak_uuid_v4),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
