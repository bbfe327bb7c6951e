/* ramzswap: page compressors behind a small ops table.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: the device compresses whole 4 KiB pages and decompresses them back. Each
 * compressor is a const struct rzs_codec found by name with rzs_codec_find(), so
 * more backends can follow LZO without touching the device.
 *
 * Data layout: a codec has no state of its own. compress() needs a caller-owned
 * workspace of workspace_size bytes and an output buffer of max_out bytes (the
 * worst case for one incompressible page); the caller keeps one pair per thread.
 *
 * Invariants: decompress() succeeds only when the input decodes to exactly
 * RZS_CODEC_PAGE bytes without reading or writing out of bounds; anything else is
 * an error, so corrupt data is never handed out as a page.
 *
 * Locking: the functions are reentrant; a workspace must not be shared by two
 * threads at once.
 */
#ifndef RAMZSWAP_CODEC_H
#define RAMZSWAP_CODEC_H

#include <stddef.h>

/* The unit every codec works on: one device page. */
#define RZS_CODEC_PAGE 4096u

struct rzs_codec {
        const char *name;      /* the compressor= value selecting it */
        size_t workspace_size; /* bytes of scratch compress() needs */
        size_t max_out;        /* largest output compress() can write for a page */

        /* Compress the RZS_CODEC_PAGE bytes at src into dst (max_out bytes).
         * Returns 0 and *dst_len, or -EIO (the library failed; *dst_len is 0). */
        int (*compress)(const void *src, void *dst, size_t *dst_len, void *workspace);

        /* Decompress src_len bytes into dst (RZS_CODEC_PAGE bytes). Returns 0 when
         * exactly one page came out, or -EIO (corrupt or truncated input, wrong
         * length); dst's contents are then undefined. */
        int (*decompress)(const void *src, size_t src_len, void *dst);
};

/* The codec called name (NULL means the default, "lzo"). Initialises the backing
 * library on first use. Returns 0 and *out, -ENOENT (no such codec), or -EIO (the
 * library failed its self-check). *out is NULL on failure. Thread-safe. */
int rzs_codec_find(const char *name, const struct rzs_codec **out);

/* The names rzs_codec_find() knows, *n of them, for help and error messages. */
const char *const *rzs_codec_names(size_t *n);

#endif /* RAMZSWAP_CODEC_H */
