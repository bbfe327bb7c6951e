/* ramzswap: SWAPSPACE2 header. See include/ramzswap/swaphdr.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "ramzswap/swaphdr.h"

int rzs_swaphdr_random_uuid(uint8_t uuid[16])
{
        size_t got = 0;

        while (got < 16) {
                ssize_t r = getrandom(uuid + got, 16 - got, 0);

                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        int err = errno;
                        memset(uuid, 0, 16);
                        return -err;
                }
                got += (size_t)r;
        }
        /* RFC 4122: version 4 (random) in the high nibble of byte 6, variant 10xx in
         * byte 8. */
        uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
        uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
        return 0;
}

static void put_u32(unsigned char *page, unsigned off, uint32_t v)
{
        memcpy(page + off, &v, sizeof(v));
}

void rzs_swaphdr_build(void *page, uint64_t pages, const uint8_t uuid[16])
{
        unsigned char *p = page;
        uint64_t last = pages - 1;

        memset(p, 0, RZS_SWAPHDR_PAGE);
        put_u32(p, RZS_SWAPHDR_VERSION_OFF, 1);
        put_u32(p, RZS_SWAPHDR_LAST_PAGE_OFF,
                last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
        put_u32(p, RZS_SWAPHDR_NR_BADPAGE_OFF, 0);
        memcpy(p + RZS_SWAPHDR_UUID_OFF, uuid, 16);
        memcpy(p + RZS_SWAPHDR_LABEL_OFF, RZS_SWAPHDR_LABEL, strlen(RZS_SWAPHDR_LABEL));
        memcpy(p + RZS_SWAPHDR_MAGIC_OFF, RZS_SWAPHDR_MAGIC, RZS_SWAPHDR_MAGIC_LEN);
}
