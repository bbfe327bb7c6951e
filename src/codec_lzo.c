/* ramzswap: LZO1X-1 codec. See include/ramzswap/codec.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <string.h>

#include <lzo/lzo1x.h>

#include "ramzswap/codec.h"

/* LZO's documented worst case for incompressible input: in + in/16 + 64 + 3. */
#define LZO_MAX_OUT (RZS_CODEC_PAGE + RZS_CODEC_PAGE / 16 + 64 + 3)

static int lzo_page_compress(const void *src, void *dst, size_t *dst_len, void *workspace)
{
        lzo_uint out_len = 0;
        int r = lzo1x_1_compress(src, RZS_CODEC_PAGE, dst, &out_len, workspace);

        if (r != LZO_E_OK || out_len > LZO_MAX_OUT) {
                *dst_len = 0;
                return -EIO;
        }
        *dst_len = out_len;
        return 0;
}

static int lzo_page_decompress(const void *src, size_t src_len, void *dst)
{
        lzo_uint out_len = RZS_CODEC_PAGE;
        int r = lzo1x_decompress_safe(src, src_len, dst, &out_len, NULL);

        return r == LZO_E_OK && out_len == RZS_CODEC_PAGE ? 0 : -EIO;
}

static const struct rzs_codec lzo_codec = {
    .name = "lzo",
    .workspace_size = LZO1X_1_MEM_COMPRESS,
    .max_out = LZO_MAX_OUT,
    .compress = lzo_page_compress,
    .decompress = lzo_page_decompress,
};

/* lzo_init() only checks that the library matches its headers and keeps no state,
 * so calling it on every lookup is safe from any thread. */
static int lzo_codec_init(void)
{
        return lzo_init() == LZO_E_OK ? 0 : -EIO;
}

const char *const *rzs_codec_names(size_t *n)
{
        static const char *const names[] = {"lzo"};

        *n = sizeof(names) / sizeof(names[0]);
        return names;
}

int rzs_codec_find(const char *name, const struct rzs_codec **out)
{
        *out = NULL;
        if (name == NULL || strcmp(name, lzo_codec.name) == 0) {
                int r = lzo_codec_init();

                if (r < 0)
                        return r;
                *out = &lzo_codec;
                return 0;
        }
        return -ENOENT;
}
