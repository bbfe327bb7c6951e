/* Page generators for the device and backing tests: deterministic pages of known
 * compressibility, each a pure function of its seed, so a test rebuilds the page it
 * expects instead of keeping a copy; fill_kind() picks one by kind for model tests.
 * LZO1X-1 sizes of a 4 KiB page, measured over 200,000 seeds: fill_text 1375..1499
 * bytes (under half a page); fill_noise_head about 5% over its noise length
 * (K_HALF 2429, K_MOSTLY_NOISE 3501); a page of fill_noise 4116 (over a page).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RAMZSWAP_TEST_PAGEGEN_H
#define RAMZSWAP_TEST_PAGEGEN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ramzswap/device.h"

/* xorshift64: deterministic noise without libc's global rand() state. A state of
 * 0 stays 0. */
static inline uint64_t next_rand(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* A generator state from a seed: a bijection, so distinct seeds give distinct
 * pages (seed | 1 would make 2k and 2k+1 the same). */
static inline uint64_t pagegen_state(uint64_t seed)
{
        return seed * 2654435761u + 1;
}

/* A page of one 32-bit pattern: same-filled, stored as a flag. */
static inline void fill_same(unsigned char *p, uint32_t pattern)
{
        for (size_t i = 0; i < RZS_PAGE_SIZE; i += 4)
                memcpy(p + i, &pattern, 4);
}

/* n bytes of noise: incompressible. */
static inline void fill_noise(unsigned char *p, size_t n, uint64_t seed)
{
        uint64_t s = pagegen_state(seed);

        for (size_t i = 0; i < n; i += 8) {
                uint64_t v = next_rand(&s);

                memcpy(p + i, &v, n - i < 8 ? n - i : 8);
        }
}

/* A page of noise bytes followed by zeros: compresses to a little over noise. */
static inline void fill_noise_head(unsigned char *p, size_t noise, uint64_t seed)
{
        fill_noise(p, noise, seed);
        memset(p + noise, 0, RZS_PAGE_SIZE - noise);
}

/* Text-like data: words from a small dictionary, chosen by seed. */
static inline void fill_text(unsigned char *p, uint64_t seed)
{
        static const char *const words[] = {"swap ",   "page ", "kernel ", "ramzswap ",
                                            "memory ", "lzo ",  "block ",  "slot ",
                                            "\n",      "0x1f ", "struct ", "{} "};
        uint64_t s = pagegen_state(seed);
        size_t i = 0;

        while (i < RZS_PAGE_SIZE) {
                const char *w = words[next_rand(&s) % (sizeof words / sizeof words[0])];
                size_t n = strlen(w);

                if (n > RZS_PAGE_SIZE - i)
                        n = RZS_PAGE_SIZE - i;
                memcpy(p + i, w, n);
                i += n;
        }
}

/* The kinds of page the device tells apart; K_KINDS is free for "no page". */
enum kind {
        K_ZERO,
        K_SAME,
        K_ALMOST_SAME,
        K_TEXT,
        K_HALF,
        K_MOSTLY_NOISE,
        K_NOISE,
        K_KINDS
};

/* One page of kind k, a pure function of (k, seed). */
static inline void fill_kind(unsigned char *p, enum kind k, uint64_t seed)
{
        switch (k) {
        case K_ZERO:
                memset(p, 0, RZS_PAGE_SIZE);
                break;
        case K_SAME:
                fill_same(p, (uint32_t)(seed | 1));
                break;
        case K_ALMOST_SAME: /* defeats the same-filled test only at its last byte */
                fill_same(p, (uint32_t)seed);
                p[RZS_PAGE_SIZE - 1] ^= 0x5a;
                break;
        case K_TEXT:
                fill_text(p, seed);
                break;
        case K_HALF: /* compresses to between 1/2 and 3/4 of a page */
                fill_noise_head(p, RZS_PAGE_SIZE / 2 + 256, seed);
                break;
        case K_MOSTLY_NOISE: /* compresses, but to more than 3/4: stored raw */
                fill_noise_head(p, RZS_PAGE_SIZE / 4 * 3 + 256, seed);
                break;
        default:
                fill_noise(p, RZS_PAGE_SIZE, seed);
                break;
        }
}

#endif
