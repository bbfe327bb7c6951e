/* ramzswap: in-process benchmark of the compressed page device.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Writes a corpus of realistic pages (bench/corpus.c) into a fresh device and reads
 * it back, with 1 and 2 threads, and runs bare lzo1x_1_compress /
 * lzo1x_decompress_safe over the same pages in the same run, so the device's
 * overhead (same-fill test, allocator, locks, copies) shows as a ratio.
 *
 * Usage: bench_device [pages [seed [repeats [reserve_pages]]]]   (defaults 16384 1 3 0)
 * Each figure is the best of `repeats` runs; MB/s counts 4096-byte pages (10^6
 * bytes per MB). Every page read back is checked against the corpus. reserve_pages
 * is the device's reserve (pool memory faulted in at create, outside the timing):
 * with enough of it the write figures leave out the kernel's first-touch faults.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lzo/lzo1x.h>

#include "corpus.h"
#include "ramzswap/device.h"

#define PAGE    RZS_PAGE_SIZE
#define LZO_OUT (PAGE + PAGE / 16 + 64 + 3)
#define MAX_THR 2

struct job {
        const struct corpus *c;
        struct rzs_device *dev;
        size_t first, n;    /* pages [first, first + n) */
        unsigned char *out; /* bare LZO: n * LZO_OUT bytes */
        lzo_uint *len;      /* bare LZO: compressed length of each page */
        void *wrk;
        int err;
};

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *do_write(void *p)
{
        struct job *j = p;

        for (size_t i = j->first; i < j->first + j->n && j->err == 0; i++)
                j->err = rzs_device_write(j->dev, corpus_page(j->c, i), PAGE, i * PAGE);
        return NULL;
}

static void *do_read(void *p)
{
        struct job *j = p;
        unsigned char page[PAGE];

        for (size_t i = j->first; i < j->first + j->n && j->err == 0; i++) {
                j->err = rzs_device_read(j->dev, page, PAGE, i * PAGE);
                /* The check sits in the timed loop on purpose: a reader always
                 * touches what it read. Its cost is a memcmp per page. */
                if (j->err == 0 && memcmp(page, corpus_page(j->c, i), PAGE) != 0)
                        j->err = -EILSEQ;
        }
        return NULL;
}

static void *do_compress(void *p)
{
        struct job *j = p;

        for (size_t i = 0; i < j->n && j->err == 0; i++)
                if (lzo1x_1_compress(corpus_page(j->c, j->first + i), PAGE,
                                     j->out + i * LZO_OUT, &j->len[i],
                                     j->wrk) != LZO_E_OK)
                        j->err = -EIO;
        return NULL;
}

static void *do_decompress(void *p)
{
        struct job *j = p;
        unsigned char page[PAGE];

        for (size_t i = 0; i < j->n && j->err == 0; i++) {
                lzo_uint len = PAGE;

                if (lzo1x_decompress_safe(j->out + i * LZO_OUT, j->len[i], page, &len,
                                          NULL) != LZO_E_OK ||
                    len != PAGE ||
                    memcmp(page, corpus_page(j->c, j->first + i), PAGE) != 0)
                        j->err = -EIO;
        }
        return NULL;
}

/* Run fn over the corpus split into nthr contiguous parts; seconds taken. */
static double run(void *(*fn)(void *), struct job *jobs, unsigned nthr)
{
        pthread_t th[MAX_THR];
        double t0 = now();

        for (unsigned i = 0; i < nthr; i++)
                if (pthread_create(&th[i], NULL, fn, &jobs[i]) != 0) {
                        jobs[i].err = -EAGAIN;
                        fn(&jobs[i]);
                        th[i] = 0;
                }
        for (unsigned i = 0; i < nthr; i++)
                if (th[i] != 0)
                        pthread_join(th[i], NULL);
        return now() - t0;
}

static void split(struct job *jobs, unsigned nthr, const struct corpus *c,
                  struct rzs_device *dev)
{
        for (unsigned i = 0; i < nthr; i++) {
                jobs[i].c = c;
                jobs[i].dev = dev;
                jobs[i].first = c->npages * i / nthr;
                jobs[i].n = c->npages * (i + 1) / nthr - jobs[i].first;
                jobs[i].err = 0;
        }
}

static int check_jobs(const struct job *jobs, unsigned nthr, const char *what)
{
        for (unsigned i = 0; i < nthr; i++)
                if (jobs[i].err != 0) {
                        fprintf(stderr, "bench_device: %s failed: %s\n", what,
                                strerror(-jobs[i].err));
                        return -1;
                }
        return 0;
}

struct result {
        double bare_c, bare_d, dev_w, dev_r; /* best seconds */
};

static int bench_threads(const struct corpus *c, unsigned nthr, unsigned repeats,
                         uint64_t reserve_pages, struct result *res, struct rzs_stats *st)
{
        struct job jobs[MAX_THR] = {0};
        int rc = -1;

        res->bare_c = res->bare_d = res->dev_w = res->dev_r = 1e30;
        split(jobs, nthr, c, NULL);
        for (unsigned i = 0; i < nthr; i++) {
                jobs[i].out = malloc(jobs[i].n * LZO_OUT);
                jobs[i].len = malloc(jobs[i].n * sizeof(lzo_uint));
                jobs[i].wrk = malloc(LZO1X_1_MEM_COMPRESS);
                if (!jobs[i].out || !jobs[i].len || !jobs[i].wrk) {
                        fprintf(stderr, "bench_device: out of memory\n");
                        goto out;
                }
        }
        for (unsigned r = 0; r < repeats; r++) {
                struct rzs_config cfg = {.disksize = c->npages * PAGE,
                                         .reserve = reserve_pages * PAGE};
                struct rzs_device *dev;
                double t;

                t = run(do_compress, jobs, nthr);
                if (check_jobs(jobs, nthr, "lzo1x_1_compress"))
                        goto out;
                res->bare_c = t < res->bare_c ? t : res->bare_c;
                t = run(do_decompress, jobs, nthr);
                if (check_jobs(jobs, nthr, "lzo1x_decompress_safe"))
                        goto out;
                res->bare_d = t < res->bare_d ? t : res->bare_d;

                int err = rzs_device_create(&cfg, &dev);
                if (err < 0) {
                        fprintf(stderr, "bench_device: rzs_device_create: %s\n",
                                strerror(-err));
                        goto out;
                }
                split(jobs, nthr, c, dev);
                t = run(do_write, jobs, nthr);
                if (check_jobs(jobs, nthr, "rzs_device_write")) {
                        rzs_device_destroy(dev);
                        goto out;
                }
                res->dev_w = t < res->dev_w ? t : res->dev_w;
                t = run(do_read, jobs, nthr);
                if (check_jobs(jobs, nthr, "rzs_device_read")) {
                        rzs_device_destroy(dev);
                        goto out;
                }
                res->dev_r = t < res->dev_r ? t : res->dev_r;
                rzs_device_get_stats(dev, st);
                if (rzs_device_check(dev) != 0) {
                        fprintf(stderr, "bench_device: rzs_device_check failed\n");
                        rzs_device_destroy(dev);
                        goto out;
                }
                rzs_device_destroy(dev);
                split(jobs, nthr, c, NULL);
        }
        rc = 0;
out:
        for (unsigned i = 0; i < nthr; i++) {
                free(jobs[i].out);
                free(jobs[i].len);
                free(jobs[i].wrk);
        }
        return rc;
}

int main(int argc, char **argv)
{
        size_t pages = argc > 1 ? strtoull(argv[1], NULL, 0) : 16384;
        uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
        unsigned repeats = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 3;
        uint64_t reserve = argc > 4 ? strtoull(argv[4], NULL, 0) : 0;
        struct corpus c;
        struct rzs_stats st;
        int err;

        if (lzo_init() != LZO_E_OK || repeats == 0) {
                fprintf(stderr, "bench_device: lzo_init failed or repeats is 0\n");
                return 1;
        }
        err = corpus_init(&c, seed, pages);
        if (err < 0) {
                fprintf(stderr, "bench_device: corpus_init: %s\n", strerror(-err));
                return 1;
        }
        double mb = (double)c.npages * PAGE / 1e6;

        printf("bench_device: %zu corpus pages (%.1f MB), seed %llu, best of %u, "
               "reserve %llu pages\n",
               c.npages, mb, (unsigned long long)seed, repeats,
               (unsigned long long)reserve);
        for (unsigned nthr = 1; nthr <= MAX_THR; nthr++) {
                struct result r;

                if (bench_threads(&c, nthr, repeats, reserve, &r, &st) < 0) {
                        corpus_free(&c);
                        return 1;
                }
                printf("threads %u: bare lzo compress %7.1f MB/s  device write %7.1f MB/s"
                       "  (device/bare %.2f)\n",
                       nthr, mb / r.bare_c, mb / r.dev_w, r.bare_c / r.dev_w);
                printf(
                    "threads %u: bare lzo decompress %5.1f MB/s  device read %8.1f MB/s"
                    "  (device/bare %.2f)\n",
                    nthr, mb / r.bare_d, mb / r.dev_r, r.bare_d / r.dev_r);
        }
        printf("stored: zero %llu  same %llu  compressed %llu (good %llu)  raw %llu\n",
               (unsigned long long)st.zero_pages, (unsigned long long)st.same_pages,
               (unsigned long long)(st.pages_stored - st.no_compress),
               (unsigned long long)st.good_compress, (unsigned long long)st.no_compress);
        printf("memory: orig %.1f MB  compressed %.1f MB  pool %.1f MB  "
               "ratio orig/pool %.2f  pool/compressed %.2f\n",
               mb, st.compr_data_size / 1e6, st.mem_used_total / 1e6,
               st.mem_used_total ? mb * 1e6 / st.mem_used_total : 0.0,
               st.compr_data_size ? (double)st.mem_used_total / st.compr_data_size : 0.0);
        corpus_free(&c);
        return 0;
}
