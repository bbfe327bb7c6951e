/* Unit tests for the codec ops table (src/codec_lzo.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lzo/lzo1x.h>

#include "ramzswap/codec.h"

#define PAGE RZS_CODEC_PAGE

struct fixture {
        const struct rzs_codec *codec;
        void *workspace;
        unsigned char *out;
        unsigned char in[PAGE];
        unsigned char back[PAGE];
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (f == NULL || rzs_codec_find("lzo", &f->codec) != 0)
                return -1;
        f->workspace = malloc(f->codec->workspace_size);
        f->out = malloc(f->codec->max_out);
        if (f->workspace == NULL || f->out == NULL)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        free(f->workspace);
        free(f->out);
        free(f);
        return 0;
}

/* xorshift64: deterministic noise without libc's global rand() state. */
static uint64_t next_rand(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void fill_noise(unsigned char *p, size_t n, uint64_t seed)
{
        for (size_t i = 0; i < n; i += 8) {
                uint64_t v = next_rand(&seed);
                memcpy(p + i, &v, 8);
        }
}

static void fill_text(unsigned char *p, size_t n)
{
        static const char words[] = "swap page compressed ramzswap lzo block ";

        for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)words[(i * 7 + i / 13) % (sizeof(words) - 1)];
}

static size_t round_trip(struct fixture *f)
{
        size_t len = 12345;

        assert_int_equal(f->codec->compress(f->in, f->out, &len, f->workspace), 0);
        assert_true(len > 0 && len <= f->codec->max_out);
        memset(f->back, 0xa5, PAGE);
        assert_int_equal(f->codec->decompress(f->out, len, f->back), 0);
        assert_memory_equal(f->in, f->back, PAGE);
        return len;
}

static void test_find(void **state)
{
        const struct rzs_codec *c = (const void *)1;

        (void)state;
        assert_int_equal(rzs_codec_find(NULL, &c), 0);
        assert_string_equal(c->name, "lzo");
        assert_true(c->workspace_size > 0);
        assert_true(c->max_out >= PAGE);
        assert_int_equal(rzs_codec_find("zstd-nope", &c), -ENOENT);
        assert_null(c);
}

static void test_zero_page_compresses_well(void **state)
{
        struct fixture *f = *state;

        memset(f->in, 0, PAGE);
        assert_true(round_trip(f) < 64);
}

static void test_text_page(void **state)
{
        struct fixture *f = *state;

        fill_text(f->in, PAGE);
        assert_true(round_trip(f) < PAGE / 2);
}

static void test_noise_page_grows_within_bound(void **state)
{
        struct fixture *f = *state;

        for (uint64_t seed = 1; seed < 50; seed++) {
                fill_noise(f->in, PAGE, seed * 0x9e3779b97f4a7c15ull);
                assert_true(round_trip(f) > PAGE);
        }
}

static void test_truncated_input_fails(void **state)
{
        struct fixture *f = *state;
        size_t len;

        fill_text(f->in, PAGE);
        f->in[100] = 'X';
        assert_int_equal(f->codec->compress(f->in, f->out, &len, f->workspace), 0);
        for (size_t cut = 0; cut < len; cut += 1 + cut / 8)
                assert_int_equal(f->codec->decompress(f->out, cut, f->back), -EIO);
}

/* A valid LZO stream of the wrong length must be refused: a short page would be
 * garbage at its tail, a long one would overrun the caller's page. */
static void check_length(struct fixture *f, size_t in_len)
{
        unsigned char *in = malloc(in_len);
        unsigned char *out = malloc(in_len + in_len / 16 + 64 + 3);
        lzo_uint len = 0;

        assert_non_null(in);
        assert_non_null(out);
        fill_text(in, in_len);
        assert_int_equal(lzo1x_1_compress(in, in_len, out, &len, f->workspace), LZO_E_OK);
        assert_int_equal(f->codec->decompress(out, len, f->back), -EIO);
        free(in);
        free(out);
}

static void test_wrong_length_fails(void **state)
{
        struct fixture *f = *state;

        check_length(f, PAGE / 2);
        check_length(f, PAGE - 4);
        check_length(f, PAGE + 4);
        check_length(f, 2 * PAGE);
}

static void test_corrupt_input_never_overruns(void **state)
{
        struct fixture *f = *state;
        size_t len;
        uint64_t seed = 42;
        unsigned failures = 0;

        fill_text(f->in, PAGE);
        assert_int_equal(f->codec->compress(f->in, f->out, &len, f->workspace), 0);
        /* Flip random bytes; decompress_safe must return an error or some page,
         * never crash (ASan watches the bounds). */
        for (int i = 0; i < 2000; i++) {
                unsigned char *copy = malloc(len);

                assert_non_null(copy);
                memcpy(copy, f->out, len);
                copy[next_rand(&seed) % len] ^=
                    (unsigned char)(1 + next_rand(&seed) % 255);
                if (f->codec->decompress(copy, len, f->back) != 0)
                        failures++;
                free(copy);
        }
        assert_true(failures > 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_find),
            cmocka_unit_test_setup_teardown(test_zero_page_compresses_well, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_text_page, setup, teardown),
            cmocka_unit_test_setup_teardown(test_noise_page_grows_within_bound, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_truncated_input_fails, setup, teardown),
            cmocka_unit_test_setup_teardown(test_wrong_length_fails, setup, teardown),
            cmocka_unit_test_setup_teardown(test_corrupt_input_never_overruns, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
