/* ramzswap nbd tests: many connections to one nbdkit at once.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Every page written carries a header (writer, page index, generation) and a body
 * derived from it, so any page read back can be checked on its own: it must be all
 * zeros (never written, or zeroed) or exactly one version some writer produced --
 * never half of one and half of another, never another page's data, never garbage.
 * The checks hold for every interleaving, so the test does not depend on timing.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nbd_harness.h"

#define PAGE       4096u
#define NCONN      8
#define OWN_PAGES  1024u /* each connection's private range in phase 1 */
#define OWN_GENS   3
#define SHARED_OFF ((uint64_t)NCONN * OWN_PAGES * PAGE)
#define SHARED     512u  /* pages all connections write in phase 2 */
#define ITERS      4000u /* operations per connection in phase 2 */
#define MAX_RUN    16u   /* pages per request at most */
#define MAGIC      0x52a25a9u

struct header {
        uint32_t magic;
        uint32_t writer;
        uint64_t page;
        uint64_t gen;
};

static uint64_t seed_of(uint32_t writer, uint64_t page, uint64_t gen)
{
        return (uint64_t)writer << 56 ^ page << 20 ^ gen;
}

/* Version (writer, gen) of page `page`: compressible or not, depending on both. */
static void make_page(unsigned char *buf, uint32_t writer, uint64_t page, uint64_t gen)
{
        struct header hd = {MAGIC, writer, page, gen};
        uint64_t seed = seed_of(writer, page, gen);

        harness_fill(buf, seed, (page + gen) % 3 != 0);
        memcpy(buf, &hd, sizeof hd);
}

/* 0 if buf is a valid content of page `page`: zeros or a complete version. */
static int check_page(const unsigned char *buf, uint64_t page)
{
        unsigned char expect[PAGE];
        struct header hd;

        if (harness_is_zero(buf, PAGE))
                return 0;
        memcpy(&hd, buf, sizeof hd);
        if (hd.magic != MAGIC || hd.writer >= NCONN || hd.page != page)
                return -1;
        make_page(expect, hd.writer, hd.page, hd.gen);
        return memcmp(buf, expect, PAGE) == 0 ? 0 : -1;
}

struct worker {
        const struct harness_server *srv;
        pthread_barrier_t *barrier;
        uint32_t id;
        uint64_t rng;
        char error[160]; /* empty if everything checked out */
};

static uint64_t next(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

#define FAIL(w, ...)                                                                     \
        do {                                                                             \
                snprintf((w)->error, sizeof(w)->error, __VA_ARGS__);                     \
                return;                                                                  \
        } while (0)

/* Phase 1: write and verify this connection's own range, generation by generation,
 * in requests of 1 to MAX_RUN pages. */
static void own_range(struct worker *w, struct nbd_handle *h, unsigned char *buf)
{
        uint64_t first = (uint64_t)w->id * OWN_PAGES;

        for (uint64_t gen = 0; gen < OWN_GENS; gen++) {
                for (uint64_t p = 0, n; p < OWN_PAGES; p += n) {
                        n = 1 + next(&w->rng) % MAX_RUN;
                        if (n > OWN_PAGES - p)
                                n = OWN_PAGES - p;
                        for (uint64_t i = 0; i < n; i++)
                                make_page(buf + i * PAGE, w->id, first + p + i, gen);
                        if (nbd_pwrite(h, buf, n * PAGE, (first + p) * PAGE, 0) == -1)
                                FAIL(w, "conn %u: write: %s", w->id, nbd_get_error());
                }
                for (uint64_t p = 0; p < OWN_PAGES; p += MAX_RUN) {
                        if (nbd_pread(h, buf, MAX_RUN * PAGE, (first + p) * PAGE, 0) ==
                            -1)
                                FAIL(w, "conn %u: read: %s", w->id, nbd_get_error());
                        for (uint64_t i = 0; i < MAX_RUN; i++) {
                                unsigned char expect[PAGE];

                                make_page(expect, w->id, first + p + i, gen);
                                if (memcmp(buf + i * PAGE, expect, PAGE) != 0)
                                        FAIL(w, "conn %u: page %llu is not gen %llu",
                                             w->id, (unsigned long long)(first + p + i),
                                             (unsigned long long)gen);
                        }
                }
        }
}

/* Phase 2: random writes, write-zeroes and checked reads over the shared range. */
static void shared_range(struct worker *w, struct nbd_handle *h, unsigned char *buf)
{
        const uint64_t base = SHARED_OFF / PAGE;

        for (uint64_t it = 0; it < ITERS; it++) {
                uint64_t n = 1 + next(&w->rng) % MAX_RUN;
                uint64_t p = next(&w->rng) % (SHARED - n + 1);
                unsigned op = next(&w->rng) % 8;
                uint64_t off = (base + p) * PAGE;

                if (op < 4) {
                        for (uint64_t i = 0; i < n; i++)
                                make_page(buf + i * PAGE, w->id, base + p + i, it);
                        if (nbd_pwrite(h, buf, n * PAGE, off, 0) == -1)
                                FAIL(w, "conn %u: write: %s", w->id, nbd_get_error());
                } else if (op == 4) {
                        if (nbd_zero(h, n * PAGE, off, 0) == -1)
                                FAIL(w, "conn %u: zero: %s", w->id, nbd_get_error());
                } else {
                        if (nbd_pread(h, buf, n * PAGE, off, 0) == -1)
                                FAIL(w, "conn %u: read: %s", w->id, nbd_get_error());
                        for (uint64_t i = 0; i < n; i++) {
                                if (check_page(buf + i * PAGE, base + p + i) != 0)
                                        FAIL(w, "conn %u: page %llu read torn or foreign",
                                             w->id, (unsigned long long)(base + p + i));
                        }
                }
        }
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        struct nbd_handle *h = harness_server_connect(w->srv);
        unsigned char *buf = malloc(MAX_RUN * PAGE);

        if (buf == NULL) {
                snprintf(w->error, sizeof w->error, "out of memory");
        } else {
                own_range(w, h, buf);
                /* Everyone starts phase 2 only after every range checked out. */
                pthread_barrier_wait(w->barrier);
                if (w->error[0] == '\0')
                        shared_range(w, h, buf);
        }
        free(buf);
        nbd_close(h);
        return NULL;
}

static int start_server(void **state)
{
        static const char *const params[] = {"disksize=64M", NULL};
        static struct harness_server srv;

        harness_server_start(&srv, params);
        *state = &srv;
        return 0;
}

/* Runs even when the test fails, so no server or socket directory is left. */
static int stop_server(void **state)
{
        harness_server_stop(*state);
        return 0;
}

static void test_connections(void **state)
{
        const struct harness_server *srv = *state;
        struct worker workers[NCONN];
        pthread_t threads[NCONN];
        pthread_barrier_t barrier;
        unsigned char *buf = malloc(SHARED * PAGE);

        assert_non_null(buf);
        assert_int_equal(pthread_barrier_init(&barrier, NULL, NCONN), 0);
        for (uint32_t i = 0; i < NCONN; i++) {
                workers[i] = (struct worker){.srv = srv,
                                             .barrier = &barrier,
                                             .id = i,
                                             .rng = 0x9e3779b97f4a7c15ull * (i + 1)};
                assert_int_equal(
                    pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
        }
        for (uint32_t i = 0; i < NCONN; i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);
        pthread_barrier_destroy(&barrier);
        for (uint32_t i = 0; i < NCONN; i++) {
                if (workers[i].error[0] != '\0')
                        fail_msg("%s", workers[i].error);
        }

        /* Afterwards, from a fresh connection: the private ranges hold their last
         * generation, and every shared page is zeros or one whole version. */
        struct nbd_handle *h = harness_server_connect(srv);
        unsigned char expect[PAGE];

        for (uint32_t id = 0; id < NCONN; id++) {
                uint64_t first = (uint64_t)id * OWN_PAGES;

                for (uint64_t p = 0; p < OWN_PAGES; p += SHARED) {
                        assert_int_equal(
                            nbd_pread(h, buf, SHARED * PAGE, (first + p) * PAGE, 0), 0);
                        for (uint64_t i = 0; i < SHARED; i++) {
                                make_page(expect, id, first + p + i, OWN_GENS - 1);
                                assert_memory_equal(buf + i * PAGE, expect, PAGE);
                        }
                }
        }
        assert_int_equal(nbd_pread(h, buf, SHARED * PAGE, SHARED_OFF, 0), 0);
        unsigned versions = 0;
        for (uint64_t i = 0; i < SHARED; i++) {
                if (check_page(buf + i * PAGE, SHARED_OFF / PAGE + i) != 0)
                        fail_msg("shared page %llu is torn or foreign",
                                 (unsigned long long)(SHARED_OFF / PAGE + i));
                versions += !harness_is_zero(buf + i * PAGE, PAGE);
        }
        /* The writes far outnumber the zeroes: most pages hold data. */
        assert_true(versions > SHARED / 4);
        nbd_close(h);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_connections, start_server, stop_server),
        };

        harness_nbdkit();
        harness_plugin();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
