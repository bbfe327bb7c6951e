/* ramzswap: a deterministic corpus of realistic swap pages for benchmarks.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: give the allocator, device and plugin benchmarks the same mix of pages
 * that a swap device sees, so their compression ratios and object sizes mean
 * something. Each page is 4096 bytes of one kind:
 *
 *   kind      share  content
 *   zero       15%   all zero bytes
 *   same        2%   one non-zero 32-bit word repeated
 *   elf        18%   a page of an ELF file (/usr/bin, /usr/sbin, /usr/lib/<triplet>)
 *   text       12%   text from /usr/share/doc and /usr/include
 *   heap       24%   synthetic malloc heap: chunk headers, pointers, small ints,
 *                    NULLs, short strings
 *   stack       8%   synthetic stack: frames of return addresses, saved frame
 *                    pointers, locals, unused zeros
 *   numeric    13%   int32 and double arrays (counters, small values, smooth and
 *                    noisy measurements)
 *   random      4%   random bytes from the seed (incompressible)
 *   packed      4%   a piece of a compressed file (.gz/.xz/.bz2 under /usr/share)
 *
 * Determinism: page i depends only on (seed, i) and the files on the machine; file
 * lists are walked in strcmp order, so the same seed gives the same bytes on the same
 * machine (and the same synthetic pages everywhere).
 *
 * Usage (or corpus_fill() into a buffer of your own):
 *     struct corpus c;
 *     if (corpus_init(&c, 1, 10000) == 0) {
 *             for (size_t i = 0; i < c.npages; i++)
 *                     use(corpus_page(&c, i), c.kind[i]);
 *             corpus_free(&c);
 *     }
 *
 * Not thread-safe during corpus_init(); the filled corpus is read-only and may be
 * shared by threads.
 */
#ifndef RAMZSWAP_BENCH_CORPUS_H
#define RAMZSWAP_BENCH_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORPUS_PAGE_SIZE 4096u

enum corpus_kind {
        CORPUS_ZERO,
        CORPUS_SAME,
        CORPUS_ELF,
        CORPUS_TEXT,
        CORPUS_HEAP,
        CORPUS_STACK,
        CORPUS_NUMERIC,
        CORPUS_RANDOM,
        CORPUS_PACKED,
        CORPUS_NKINDS
};

struct corpus {
        uint8_t *data; /* npages * CORPUS_PAGE_SIZE bytes, page i at i * 4096 */
        uint8_t *kind; /* enum corpus_kind of each page */
        size_t npages;
};

/* Fill c with npages pages generated from seed. Reads files under /usr.
 * Returns 0, -EINVAL (npages 0 or too large), -ENOMEM, or -ENOENT when the machine
 * has no files for the elf, text or packed kinds. On failure c is zeroed. */
int corpus_init(struct corpus *c, uint64_t seed, size_t npages);

/* Fill a caller's buffer of npages * CORPUS_PAGE_SIZE bytes with the same mix, no
 * kind labels. variant picks another set of pages from the same seed (e.g. a second
 * pass that overwrites the first in a device benchmark); variant 0 gives exactly
 * corpus_init()'s bytes. Returns 0, -EINVAL, -ENOMEM or -ENOENT as corpus_init(). */
int corpus_fill(void *buf, size_t npages, uint64_t seed, unsigned variant);

/* Free the buffers; c is zeroed. Safe on a zeroed corpus. */
void corpus_free(struct corpus *c);

/* Page i (i < npages). */
static inline const uint8_t *corpus_page(const struct corpus *c, size_t i)
{
        return c->data + i * CORPUS_PAGE_SIZE;
}

/* Short lowercase name of a kind ("zero", "elf", ...), or "?" if out of range. */
const char *corpus_kind_name(unsigned kind);

/* Pages that compress to more than this are kept raw by the device. */
#define CORPUS_RAW_LIMIT (CORPUS_PAGE_SIZE * 3 / 4)

/* True when the page p is one 32-bit word repeated: the device stores only a flag.
 * O(page). */
bool corpus_page_same_filled(const uint8_t *p);

/* The LZO1X-1 size of the page p into *len. wrk is LZO1X_1_MEM_COMPRESS bytes of
 * work memory, aligned as lzo_align_t (one per thread); lzo_init() must have
 * succeeded. Returns 0, or -EIO when LZO fails (*len is then 0). */
int corpus_lzo_size(const uint8_t *p, void *wrk, size_t *len);

/* What the device stores for the page p: *stored is 0 for a same-filled page, else
 * its LZO1X-1 size, or CORPUS_PAGE_SIZE when that is over CORPUS_RAW_LIMIT (kept
 * raw). *lzo is the LZO1X-1 size, same-filled pages included. wrk as for
 * corpus_lzo_size(). Returns 0, or -EIO when LZO fails (both outputs 0). */
int corpus_stored_size(const uint8_t *p, void *wrk, size_t *lzo, size_t *stored);

#endif /* RAMZSWAP_BENCH_CORPUS_H */
