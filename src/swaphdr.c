/* ramzswap: SWAPSPACE2 header. See include/ramzswap/swaphdr.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ramzswap/swaphdr.h"

/* RFC 4122: version 4 (random) in the high nibble of byte 6, variant 10xx in byte
 * 8. */
static void mark_v4(uint8_t uuid[16])
{
        uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
        uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

/* getrandom into buf until full. Returns 0 or -errno. */
static int fill_random(uint8_t *buf, size_t len, unsigned flags)
{
        size_t got = 0;

        while (got < len) {
                ssize_t r = getrandom(buf + got, len - got, flags);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                got += (size_t)r;
        }
        return 0;
}

/* splitmix64: spreads every input bit over the whole output. */
static uint64_t mix64(uint64_t z)
{
        z += UINT64_C(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t clock_ns(clockid_t id)
{
        struct timespec t = {0};

        clock_gettime(id, &t);
        return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void rzs_swaphdr_weak_uuid(uint8_t uuid[16])
{
        static _Atomic uint64_t calls;
        uint64_t seed = clock_ns(CLOCK_REALTIME) ^ (uint64_t)getpid() << 40 ^
                        (uint64_t)(uintptr_t)&seed ^ atomic_fetch_add(&calls, 1) << 20;
        uint64_t hi = mix64(seed ^ clock_ns(CLOCK_MONOTONIC));
        uint64_t lo = mix64(hi ^ (uint64_t)(uintptr_t)&rzs_swaphdr_weak_uuid);

        memcpy(uuid, &hi, 8);
        memcpy(uuid + 8, &lo, 8);
        mark_v4(uuid);
}

/* With the entropy pool not yet ready (early boot), getrandom(0) would block the
 * server's start: ask without blocking, then for the kernel's unready bytes, then
 * mix what the process has. A swap UUID only needs to differ between devices. */
int rzs_swaphdr_random_uuid(uint8_t uuid[16])
{
        int r = fill_random(uuid, 16, GRND_NONBLOCK);

#ifdef GRND_INSECURE
        if (r == -EAGAIN)
                r = fill_random(uuid, 16, GRND_INSECURE);
        /* Kernels before 5.6 refuse GRND_INSECURE with EINVAL. */
        if (r == -EINVAL)
                r = -EAGAIN;
#endif
        if (r == -EAGAIN) {
                rzs_swaphdr_weak_uuid(uuid);
                return 0;
        }
        if (r < 0) {
                memset(uuid, 0, 16);
                return r;
        }
        mark_v4(uuid);
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
