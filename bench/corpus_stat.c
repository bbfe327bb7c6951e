/* ramzswap: print the benchmark corpus's mix and its LZO1X-1 compression ratios.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Usage: corpus_stat [NPAGES [SEED]]   (defaults 20000 and 1)
 *
 * Ratio = compressed bytes / original bytes (smaller is better). "device" counts
 * pages as the device stores them: same-filled pages cost nothing, pages that
 * compress to more than 3/4 page are kept raw (4096 bytes).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lzo/lzo1x.h>

#include "corpus.h"

int main(int argc, char **argv)
{
        size_t npages = argc > 1 ? strtoull(argv[1], NULL, 0) : 20000;
        uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
        static lzo_align_t wrk[LZO1X_1_MEM_COMPRESS / sizeof(lzo_align_t) + 1];
        uint64_t count[CORPUS_NKINDS] = {0}, lzo[CORPUS_NKINDS] = {0};
        uint64_t dev[CORPUS_NKINDS] = {0}, raw[CORPUS_NKINDS] = {0};
        uint64_t tot_lzo = 0, tot_dev = 0, tot_raw = 0,
                 sum = UINT64_C(0xcbf29ce484222325);
        struct corpus c;
        int r;

        if (lzo_init() != LZO_E_OK) {
                fprintf(stderr, "corpus_stat: lzo_init failed\n");
                return 1;
        }
        r = corpus_init(&c, seed, npages);
        if (r < 0) {
                fprintf(stderr, "corpus_stat: corpus_init: %s\n", strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < c.npages; i++) {
                unsigned k = c.kind[i];
                size_t len, stored;

                if (corpus_stored_size(corpus_page(&c, i), wrk, &len, &stored) < 0) {
                        fprintf(stderr, "corpus_stat: lzo1x_1_compress failed\n");
                        return 1;
                }
                count[k]++;
                lzo[k] += len;
                dev[k] += stored;
                raw[k] += stored == CORPUS_PAGE_SIZE;
        }
        /* FNV-1a of every byte: equal seeds must print equal sums on one machine. */
        for (size_t i = 0; i < c.npages * CORPUS_PAGE_SIZE; i++)
                sum = (sum ^ c.data[i]) * UINT64_C(0x100000001b3);
        printf("corpus: %zu pages, seed %" PRIu64 ", checksum %016" PRIx64 "\n", c.npages,
               seed, sum);
        printf("%-8s %7s %6s %9s %9s %8s\n", "kind", "pages", "share", "lzo", "device",
               "raw>3/4");
        for (unsigned k = 0; k < CORPUS_NKINDS; k++) {
                double orig = (double)count[k] * CORPUS_PAGE_SIZE;

                tot_lzo += lzo[k];
                tot_dev += dev[k];
                tot_raw += raw[k];
                printf("%-8s %7" PRIu64 " %5.1f%% %9.3f %9.3f %8" PRIu64 "\n",
                       corpus_kind_name(k), count[k],
                       100.0 * (double)count[k] / (double)c.npages,
                       count[k] ? (double)lzo[k] / orig : 0.0,
                       count[k] ? (double)dev[k] / orig : 0.0, raw[k]);
        }
        printf("%-8s %7zu %5.1f%% %9.3f %9.3f %8" PRIu64 "\n", "all", c.npages, 100.0,
               (double)tot_lzo / ((double)c.npages * CORPUS_PAGE_SIZE),
               (double)tot_dev / ((double)c.npages * CORPUS_PAGE_SIZE), tot_raw);
        corpus_free(&c);
        return 0;
}
