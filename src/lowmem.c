/* ramzswap: the low-memory policy. See include/ramzswap/lowmem.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Reading: procfs keeps an open file's read buffer, so after the first read at open
 * no question allocates in the kernel either (zoneinfo's buffer may still grow
 * once, if a node's text outgrows it). meminfo's MemFree and MemAvailable are its
 * 2nd and 3rd lines, so MEMINFO_TEXT bytes suffice. zoneinfo is longer (about 5
 * KiB a node) and is parsed line by line from ZONEINFO_CHUNK-byte preads; a line
 * cut by the chunk's end is carried to the front of the next chunk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ramzswap/lowmem.h"

#define MEMINFO_TEXT   256u  /* bytes of meminfo read (MemAvailable is line 3) */
#define ZONEINFO_CHUNK 4096u /* bytes of zoneinfo per pread */
#define PRESSURE_TEXT  128u  /* bytes of PSI read (the "some" line comes first) */
#define MIN_FREE_X     2u    /* fallback reserve: this many vm.min_free_kbytes */
#define PAGE_BYTES     4096u /* zoneinfo counts pages of this size (x86, arm64 4K) */

struct rzs_lowmem {
        int meminfo_fd;
        int zoneinfo_fd; /* -1: use fallback_watermark */
        int pressure_fd; /* -1: no PSI (stall_valid stays false) */
        uint64_t fallback_watermark;
        uint64_t margin;
        uint64_t min_available;
        _Atomic uint64_t refusals;
};

/* The open fd of path, or of fallback when path is NULL; an optional default that
 * is missing gives -1 and no error. Returns 0 or -errno. */
static int open_file(const char *path, const char *fallback, bool required, int *fd)
{
        *fd = open(path ? path : fallback, O_RDONLY | O_CLOEXEC);
        if (*fd >= 0)
                return 0;
        return path || required ? -errno : 0;
}

/* vm.min_free_kbytes in bytes, read once at open; 0 when unknown. */
static uint64_t read_min_free(const char *path)
{
        char text[32];
        ssize_t n;
        int fd = open(path ? path : "/proc/sys/vm/min_free_kbytes", O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return 0;
        n = pread(fd, text, sizeof(text) - 1, 0);
        close(fd);
        if (n <= 0)
                return 0;
        text[n] = '\0';
        return strtoull(text, NULL, 10) * 1024;
}

int rzs_lowmem_open(const struct rzs_lowmem_config *cfg, struct rzs_lowmem **out)
{
        struct rzs_lowmem_state first;
        struct rzs_lowmem *lm;
        int r;

        *out = NULL;
        lm = calloc(1, sizeof(*lm));
        if (lm == NULL)
                return -ENOMEM;
        lm->zoneinfo_fd = lm->pressure_fd = -1;
        r = open_file(cfg->meminfo, "/proc/meminfo", true, &lm->meminfo_fd);
        if (r == 0)
                r = open_file(cfg->zoneinfo, "/proc/zoneinfo", false, &lm->zoneinfo_fd);
        if (r == 0)
                r = open_file(cfg->pressure, "/proc/pressure/memory", false,
                              &lm->pressure_fd);
        if (r < 0) {
                rzs_lowmem_close(lm);
                return r;
        }
        lm->fallback_watermark = read_min_free(cfg->min_free) * MIN_FREE_X;
        lm->margin = cfg->margin ? cfg->margin : RZS_LOWMEM_DEFAULT_MARGIN;
        lm->min_available = cfg->min_available;
        /* A first read makes procfs allocate its buffers now, not when memory is
         * short. */
        (void)rzs_lowmem_read(lm, &first);
        *out = lm;
        return 0;
}

void rzs_lowmem_close(struct rzs_lowmem *lm)
{
        if (lm == NULL)
                return;
        if (lm->meminfo_fd >= 0)
                close(lm->meminfo_fd);
        if (lm->zoneinfo_fd >= 0)
                close(lm->zoneinfo_fd);
        if (lm->pressure_fd >= 0)
                close(lm->pressure_fd);
        free(lm);
}

/* kB value of the meminfo line "name" (with its colon), or -1 when absent. */
static int64_t meminfo_kb(const char *text, const char *name)
{
        const char *p = strstr(text, name);

        return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

static bool read_meminfo(struct rzs_lowmem *lm, struct rzs_lowmem_state *st)
{
        char text[MEMINFO_TEXT];
        ssize_t n = pread(lm->meminfo_fd, text, sizeof(text) - 1, 0);
        int64_t free_kb, avail_kb;

        if (n <= 0)
                return false;
        text[n] = '\0';
        free_kb = meminfo_kb(text, "MemFree:");
        avail_kb = meminfo_kb(text, "MemAvailable:");
        if (free_kb < 0)
                return false;
        if (avail_kb < 0) /* kernels before 3.14 */
                avail_kb = free_kb;
        st->mem_free = (uint64_t)free_kb * 1024;
        st->mem_available = (uint64_t)avail_kb * 1024;
        return true;
}

/* Per-zone figures, in pages, collected until the next zone starts. */
struct zone_acc {
        uint64_t free, low, protection, managed;
        bool in_zone, managed_seen;
        uint64_t reserve;  /* sum of the finished zones' reserves */
        uint64_t headroom; /* sum of their free pages above their reserves */
};

/* Add the current zone: its reserve is its low watermark plus its largest
 * protection (as calculate_totalreserve_pages() does with high), capped at its
 * managed pages. What is free above it can be had without waking kswapd. */
static void zone_finish(struct zone_acc *z)
{
        uint64_t r = z->low + z->protection;

        if (z->in_zone) {
                if (z->managed_seen && r > z->managed)
                        r = z->managed;
                z->reserve += r;
                z->headroom += z->free > r ? z->free - r : 0;
        }
        *z = (struct zone_acc){.reserve = z->reserve, .headroom = z->headroom};
}

/* Largest number in "protection: (a, b, ...)". */
static uint64_t max_in_list(const char *p)
{
        uint64_t m = 0;
        char *end;

        while (*p && *p != ')') {
                if (*p >= '0' && *p <= '9') {
                        uint64_t v = strtoull(p, &end, 10);

                        m = v > m ? v : m;
                        p = end;
                } else {
                        p++;
                }
        }
        return m;
}

/* One zoneinfo line (NUL-terminated, no newline). Only the zone's own lines count:
 * "low" alone as the first word, "pages free", "managed", "protection:". */
static void zone_line(struct zone_acc *z, const char *line)
{
        const char *p = line + strspn(line, " \t");
        size_t w = strcspn(p, " \t");

        if (strncmp(p, "Node ", 5) == 0 && strstr(p, "zone") != NULL) {
                zone_finish(z);
                z->in_zone = true;
        } else if (strncmp(p, "pages free", 10) == 0) {
                z->free = strtoull(p + 10, NULL, 10);
        } else if (w == 3 && strncmp(p, "low", 3) == 0) {
                z->low = strtoull(p + 3, NULL, 10);
        } else if (w == 7 && strncmp(p, "managed", 7) == 0) {
                z->managed = strtoull(p + 7, NULL, 10);
                z->managed_seen = true;
        } else if (strncmp(p, "protection:", 11) == 0) {
                z->protection = max_in_list(p + 11);
        }
}

/* The zones' reserves and headroom, in bytes, streamed in chunks; false when
 * unreadable or without a single zone. */
static bool read_zoneinfo(int fd, struct rzs_lowmem_state *st)
{
        char buf[ZONEINFO_CHUNK + 1];
        struct zone_acc z = {0};
        size_t keep = 0, zones = 0;
        off_t off = 0;
        ssize_t n;

        while ((n = pread(fd, buf + keep, ZONEINFO_CHUNK - keep, off)) > 0) {
                size_t len = keep + (size_t)n, start = 0;
                char *nl;

                off += n;
                buf[len] = '\0';
                while ((nl = memchr(buf + start, '\n', len - start)) != NULL) {
                        *nl = '\0';
                        zones += strncmp(buf + start, "Node ", 5) == 0;
                        zone_line(&z, buf + start);
                        start = (size_t)(nl - buf) + 1;
                }
                /* A line longer than a chunk is dropped (no zoneinfo line is). */
                keep = len - start < ZONEINFO_CHUNK ? len - start : 0;
                memmove(buf, buf + start, keep);
        }
        if (n < 0 || zones == 0)
                return false;
        buf[keep] = '\0';
        zone_line(&z, buf);
        zone_finish(&z);
        st->watermark = z.reserve * PAGE_BYTES;
        st->headroom = z.headroom * PAGE_BYTES;
        return true;
}

/* The "some" line's total= of /proc/pressure/memory: microseconds in which at
 * least one task stalled on memory, since boot. */
static bool read_pressure(int fd, uint64_t *stall_us)
{
        char text[PRESSURE_TEXT];
        ssize_t n = fd < 0 ? -1 : pread(fd, text, sizeof(text) - 1, 0);
        const char *p;

        if (n <= 0)
                return false;
        text[n] = '\0';
        p = strncmp(text, "some ", 5) == 0 ? strstr(text, "total=") : NULL;
        if (p == NULL || (p - text) > (ptrdiff_t)strcspn(text, "\n"))
                return false;
        *stall_us = strtoull(p + 6, NULL, 10);
        return true;
}

bool rzs_lowmem_read(struct rzs_lowmem *lm, struct rzs_lowmem_state *out)
{
        *out = (struct rzs_lowmem_state){0};
        out->valid = read_meminfo(lm, out);
        out->stall_valid = read_pressure(lm->pressure_fd, &out->stall_us);
        if (lm->zoneinfo_fd < 0 || !read_zoneinfo(lm->zoneinfo_fd, out)) {
                out->watermark = lm->fallback_watermark;
                out->headroom =
                    out->mem_free > out->watermark ? out->mem_free - out->watermark : 0;
        }
        return out->valid;
}

bool rzs_lowmem_may_grow(void *ctx, uint64_t npages)
{
        struct rzs_lowmem *lm = ctx;
        struct rzs_lowmem_state st;
        uint64_t want = npages * PAGE_BYTES;
        bool ok;

        if (!rzs_lowmem_read(lm, &st))
                return true;
        ok = st.headroom >= want + lm->margin &&
             st.mem_available >= want + lm->min_available;
        if (!ok)
                atomic_fetch_add_explicit(&lm->refusals, 1, memory_order_relaxed);
        return ok;
}

uint64_t rzs_lowmem_refusals(const struct rzs_lowmem *lm)
{
        return atomic_load_explicit(&lm->refusals, memory_order_relaxed);
}
