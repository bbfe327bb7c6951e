/* ramzswap: the low-memory policy: may the server take more memory from the OS now?
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: the pool grows only while the machine can spare memory without reclaim.
 * A swap server that enters direct reclaim waits for swap I/O that only it can
 * serve, so the pool does not decide this itself: it asks a may_grow hook (as
 * zsmalloc takes its gfp mask from its caller), and this module is that hook. It
 * owns /proc/meminfo, /proc/zoneinfo, vm.min_free_kbytes and the memory
 * pressure stall information (PSI) of /proc/pressure/memory.
 *
 * Policy: growing by n pages is comfortable when, after it,
 *   the free pages above the zones' reserves stay at or above the margin, and
 *   MemAvailable stays at or above min_available.
 * A zone's reserve is its `low` watermark plus its largest `protection`
 * (lowmem_reserve), capped at its `managed` pages, as /proc/zoneinfo prints them;
 * headroom is the sum over zones of the free pages above it. Growing only above
 * low leaves the gap down to the min watermark to the kernel's own allocations,
 * among them the socket buffer of every reply this server sends: one that finds
 * its zone under min enters direct reclaim, which waits for swap I/O only this
 * server can complete (measured: a reply stuck in unix_stream_sendmsg ->
 * kmalloc -> try_to_free_pages when the pool was allowed to grow down to min).
 * The printed watermarks include the zone's watermark boost (after a
 * fragmentation event, vm.watermark_boost_factor), so a boost shrinks the
 * headroom and pauses growth until kswapd has reclaimed it: the server does not
 * race the boosted watermark for pages. Without a readable zoneinfo the reserve is 2 *
 * vm.min_free_kbytes and headroom is MemFree above it, or 0 if that is unknown
 * too. A meminfo that cannot be read or parsed allows the growth (the check is a
 * policy, not a guarantee; the caller's limits still hold).
 *
 * Cost: one pread of meminfo (its first 256 bytes, into a stack buffer) and one
 * streaming read of zoneinfo (4 KiB stack chunks) per question; no allocation.
 * Files are opened once, at rzs_lowmem_open, and read with pread from offset 0.
 *
 * Locking: rzs_lowmem_may_grow() and rzs_lowmem_read() may run on any thread, also
 * concurrently (pread has no shared offset; counters are atomics).
 */
#ifndef RAMZSWAP_LOWMEM_H
#define RAMZSWAP_LOWMEM_H

#include <stdbool.h>
#include <stdint.h>

struct rzs_lowmem;

struct rzs_lowmem_config {
        const char *meminfo;    /* NULL = /proc/meminfo */
        const char *zoneinfo;   /* NULL = /proc/zoneinfo (optional: without it the
                                 * min_free_kbytes fallback applies) */
        const char *min_free;   /* NULL = /proc/sys/vm/min_free_kbytes (optional) */
        const char *pressure;   /* NULL = /proc/pressure/memory (optional: PSI) */
        uint64_t margin;        /* headroom left after growing;
                                 * 0 = RZS_LOWMEM_DEFAULT_MARGIN */
        uint64_t min_available; /* bytes MemAvailable keeps after growing; 0 = none
                                 * beyond the pages asked for */
};

/* Slack between two looks: other allocations on the machine take memory too. */
#define RZS_LOWMEM_DEFAULT_MARGIN (256u << 10)

/* One reading, in bytes. */
struct rzs_lowmem_state {
        uint64_t mem_free;      /* MemFree */
        uint64_t mem_available; /* MemAvailable (MemFree on kernels without it) */
        uint64_t watermark;     /* the zones' reserves summed (see Policy) */
        uint64_t headroom;      /* free memory above them (see Policy) */
        uint64_t stall_us;      /* PSI memory "some" total: microseconds with a
                                 * task stalled on memory, since boot */
        bool stall_valid;       /* false: no /proc/pressure/memory (no PSI) */
        bool valid;             /* false: meminfo could not be read or parsed */
};

/* Open the files named in cfg (NULL: the defaults above). An explicitly named file
 * that cannot be opened fails with its -errno; so does /proc/meminfo. The optional
 * defaults (zoneinfo, min_free_kbytes) may be missing. Returns 0 and *out, or a
 * negative errno (-ENOMEM). *out is NULL on failure. */
int rzs_lowmem_open(const struct rzs_lowmem_config *cfg, struct rzs_lowmem **out);

/* Close the files and free lm. NULL is allowed. */
void rzs_lowmem_close(struct rzs_lowmem *lm);

/* Read the files now into *out. Returns out->valid. */
bool rzs_lowmem_read(struct rzs_lowmem *lm, struct rzs_lowmem_state *out);

/* Whether the machine can spare npages more pages now (see Policy). ctx is a
 * struct rzs_lowmem *; the signature is the pool's xv_may_grow_fn. Counts a "no"
 * in rzs_lowmem_refusals(). */
bool rzs_lowmem_may_grow(void *ctx, uint64_t npages);

/* How often rzs_lowmem_may_grow() said no (cumulative). */
uint64_t rzs_lowmem_refusals(const struct rzs_lowmem *lm);

#endif /* RAMZSWAP_LOWMEM_H */
