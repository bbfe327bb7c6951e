/* ramzswap: the SWAPSPACE2 header that slot 0 shows until it is first written.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: let `swapon` use a fresh device without `mkswap`, by building the page
 * mkswap would write.
 *
 * Data layout (Linux's union swap_header, host byte order, one 4096-byte page):
 *   offset    0  bootbits, 1024 bytes of zeros
 *   offset 1024  u32 version      = 1
 *   offset 1028  u32 last_page    = pages - 1 (the last usable page)
 *   offset 1032  u32 nr_badpages  = 0
 *   offset 1036  u8  uuid[16]     random, RFC 4122 version 4
 *   offset 1052  u8  volume[16]   "ramzswap", zero padded
 *   offset 4086  "SWAPSPACE2"     the magic, the page's last 10 bytes
 * Everything else is zero.
 */
#ifndef RAMZSWAP_SWAPHDR_H
#define RAMZSWAP_SWAPHDR_H

#include <stdint.h>

#define RZS_SWAPHDR_PAGE           4096u
#define RZS_SWAPHDR_VERSION_OFF    1024u
#define RZS_SWAPHDR_LAST_PAGE_OFF  1028u
#define RZS_SWAPHDR_NR_BADPAGE_OFF 1032u
#define RZS_SWAPHDR_UUID_OFF       1036u
#define RZS_SWAPHDR_LABEL_OFF      1052u
#define RZS_SWAPHDR_LABEL_LEN      16u
#define RZS_SWAPHDR_MAGIC          "SWAPSPACE2"
#define RZS_SWAPHDR_MAGIC_LEN      10u
#define RZS_SWAPHDR_MAGIC_OFF      (RZS_SWAPHDR_PAGE - RZS_SWAPHDR_MAGIC_LEN)
#define RZS_SWAPHDR_LABEL          "ramzswap"

/* Fill uuid with a random version-4 UUID from getrandom(2). Never blocks: while the
 * kernel's entropy pool is not ready (early boot) it takes GRND_INSECURE bytes,
 * or rzs_swaphdr_weak_uuid(). Returns 0 or -errno (-ENOSYS, -EIO ...) when the
 * kernel gives no randomness at all; uuid is then zeroed. */
int rzs_swaphdr_random_uuid(uint8_t uuid[16]);

/* Fill uuid with a version-4 UUID mixed from the clocks, the process id, addresses
 * and a call counter: unpredictable enough to tell swap areas apart, not for
 * secrets. Never fails; successive calls give different UUIDs. */
void rzs_swaphdr_weak_uuid(uint8_t uuid[16]);

/* Write the header page for a device of pages pages (>= 1) into page
 * (RZS_SWAPHDR_PAGE bytes) with the given uuid. last_page is capped at UINT32_MAX,
 * the most the format can say. */
void rzs_swaphdr_build(void *page, uint64_t pages, const uint8_t uuid[16]);

#endif /* RAMZSWAP_SWAPHDR_H */
