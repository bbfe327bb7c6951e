/* Unit tests for the page table (src/table.c). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ramzswap/table.h"

static void test_entry_encoding(void **state)
{
        static const uint32_t values[] = {0, 1, 0xdeadbeef, UINT32_MAX, 0x80000000};
        (void)state;

        assert_true(rzs_entry_is_empty(0));
        assert_false(rzs_entry_has_object(0));
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                rzs_entry e = rzs_entry_same(values[i]);

                assert_false(rzs_entry_is_empty(e));
                assert_true(rzs_entry_is_same(e));
                assert_false(rzs_entry_is_raw(e));
                assert_false(rzs_entry_has_object(e));
                assert_int_equal(rzs_entry_pattern(e), values[i]);
                assert_int_equal(rzs_entry_size(e), 0);
        }
        for (uint32_t size = 1; size <= RZS_ENTRY_MAX_SIZE; size += 97) {
                rzs_entry e = rzs_entry_compressed(0xfffffffe, size);

                assert_true(rzs_entry_has_object(e));
                assert_false(rzs_entry_is_same(e));
                assert_false(rzs_entry_is_raw(e));
                assert_int_equal(rzs_entry_handle(e), 0xfffffffe);
                assert_int_equal(rzs_entry_size(e), size);
        }
        rzs_entry e = rzs_entry_compressed(1, RZS_ENTRY_MAX_SIZE);
        assert_int_equal(rzs_entry_size(e), RZS_ENTRY_MAX_SIZE);
        assert_true(RZS_ENTRY_MAX_SIZE >= 4096);
        e = rzs_entry_raw(12345);
        assert_true(rzs_entry_is_raw(e));
        assert_true(rzs_entry_has_object(e));
        assert_int_equal(rzs_entry_handle(e), 12345);
        assert_int_equal(rzs_entry_size(e), 0);
}

static void test_create_invalid(void **state)
{
        struct rzs_table *t = (void *)1;
        (void)state;

        assert_int_equal(rzs_table_create(0, 0, &t), -EINVAL);
        assert_null(t);
        t = (void *)1;
        assert_int_equal(rzs_table_create(10, 3, &t), -EINVAL);
        assert_null(t);
        rzs_table_destroy(NULL);
}

static void test_zeroed_is_empty_and_swap(void **state)
{
        struct rzs_table *t;
        (void)state;

        assert_int_equal(rzs_table_create(100000, 0, &t), 0);
        assert_int_equal(rzs_table_slots(t), 100000);
        for (uint64_t i = 0; i < 100000; i++)
                assert_true(rzs_entry_is_empty(rzs_table_get(t, i)));
        assert_int_equal(rzs_table_check(t), 0);

        rzs_table_lock(t, 7);
        assert_int_equal(rzs_table_swap(t, 7, rzs_entry_compressed(99, 1000)), 0);
        rzs_table_unlock(t, 7);
        rzs_table_lock(t, 99999);
        assert_int_equal(rzs_table_swap(t, 99999, rzs_entry_same(5)), 0);
        rzs_table_unlock(t, 99999);
        assert_int_equal(rzs_table_check(t), 0);

        rzs_table_lock(t, 7);
        rzs_entry old = rzs_table_swap(t, 7, rzs_entry_raw(3));
        rzs_table_unlock(t, 7);
        assert_int_equal(rzs_entry_handle(old), 99);
        assert_int_equal(rzs_entry_size(old), 1000);
        assert_true(rzs_entry_is_raw(rzs_table_get(t, 7)));
        assert_int_equal(rzs_entry_pattern(rzs_table_get(t, 99999)), 5);
        assert_true(rzs_entry_is_empty(rzs_table_get(t, 8)));
        rzs_table_destroy(t);
}

static void test_check_finds_bad_entries(void **state)
{
        struct rzs_table *t;
        (void)state;

        assert_int_equal(rzs_table_create(16, 4, &t), 0);
        rzs_table_lock(t, 1);
        rzs_table_swap(t, 1, rzs_entry_compressed(0, 100)); /* object without handle */
        rzs_table_unlock(t, 1);
        rzs_table_lock(t, 2);
        rzs_table_swap(t, 2, RZS_ENTRY_SAME | RZS_ENTRY_RAW | 4);
        rzs_table_unlock(t, 2);
        rzs_table_lock(t, 3);
        rzs_table_swap(t, 3, rzs_entry_raw(8) | (uint64_t)5 << RZS_ENTRY_SIZE_SHIFT);
        rzs_table_unlock(t, 3);
        rzs_table_lock(t, 4);
        rzs_table_swap(t, 4, UINT64_C(1) << 60);
        rzs_table_unlock(t, 4);
        rzs_table_lock(t, 5);
        rzs_table_swap(t, 5, RZS_ENTRY_BACKING);
        rzs_table_unlock(t, 5);
        assert_int_equal(rzs_table_check(t), 4);
        rzs_table_destroy(t);
}

/* Threads do read-modify-write on a few shared slots under the slot lock; a lost
 * update would show as a wrong final count, whatever the interleaving. */
struct inc_arg {
        struct rzs_table *t;
        unsigned rounds;
};

static void *inc_thread(void *p)
{
        struct inc_arg *a = p;

        for (unsigned i = 0; i < a->rounds; i++) {
                uint64_t slot = i % 5;

                rzs_table_lock(a->t, slot);
                rzs_entry e = rzs_table_get(a->t, slot);
                rzs_table_swap(a->t, slot,
                               rzs_entry_compressed(rzs_entry_handle(e) + 1, 1));
                rzs_table_unlock(a->t, slot);
        }
        return NULL;
}

static void test_locks_serialise_slot(void **state)
{
        enum { THREADS = 4, ROUNDS = 100000 };
        struct rzs_table *t;
        pthread_t th[THREADS];
        struct inc_arg arg;
        uint64_t total = 0;
        (void)state;

        /* Two stripes for five slots: distinct slots share a mutex too. */
        assert_int_equal(rzs_table_create(5, 2, &t), 0);
        arg.t = t;
        arg.rounds = ROUNDS;
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&th[i], NULL, inc_thread, &arg), 0);
        for (int i = 0; i < THREADS; i++)
                pthread_join(th[i], NULL);
        for (uint64_t s = 0; s < 5; s++)
                total += rzs_entry_handle(rzs_table_get(t, s));
        assert_int_equal(total, (uint64_t)THREADS * ROUNDS);
        rzs_table_destroy(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_entry_encoding),
            cmocka_unit_test(test_create_invalid),
            cmocka_unit_test(test_zeroed_is_empty_and_swap),
            cmocka_unit_test(test_check_finds_bad_entries),
            cmocka_unit_test(test_locks_serialise_slot),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
