/* ramzswap: the compressed page device.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: a block device of disksize bytes in 4 KiB slots whose pages are kept
 * compressed in an xvmalloc pool. This is the core behind the nbdkit plugin; it knows
 * nothing of nbdkit and is driven directly by unit tests and benchmarks.
 *
 * I/O rules: every request is page-aligned in offset and length, lies inside the
 * device, and may span many pages; anything else fails with -EINVAL and counts as
 * invalid I/O. A slot never written, trimmed or zeroed reads as zeros, except slot 0,
 * which reads as a SWAPSPACE2 header (version 1, last_page = pages - 1, a random
 * UUID, label "ramzswap") until it is first written, trimmed or zeroed.
 *
 * Write of one page: same-filled (one repeated 32-bit word, zero included) costs a
 * flag; otherwise LZO1X-1 into a per-thread workspace outside every lock; more than
 * 3/4 of a page is stored raw in a whole pool page; the new object is allocated and
 * filled first, then swapped into the slot under the slot lock, then the old object
 * is freed, so a failed write leaves the old contents readable. Past memlimit a write
 * fails with -ENOSPC, and so does one that would take memory from the OS (past the
 * reserve and the pool's cache of free pages) while the machine is low on memory
 * (cfg->lowmem, include/ramzswap/lowmem.h): a swap server that waited for memory
 * there would wait for its own swap I/O.
 *
 * Pool growth: until rzs_device_start_refill(), a write takes new pool memory from
 * the OS itself (faulting it in). After it, writes never fault pool memory in: they
 * use a stock of pre-faulted free pages (the reserve counts as stock) kept topped up
 * by a refill thread while memory is comfortable, and fail with -ENOSPC at once
 * when the stock is empty. A server starts the thread once it will not fork again.
 *
 * Backing store (optional, cfg->backing): a file or block device; slot i lives at
 * byte i * 4096 there. Pages that compress to more than 1/2 page, and pages the pool
 * refuses (memlimit reached or no memory), are written there instead (no raw pool
 * pages then). disksize defaults to the store's size and may not exceed it. Errors
 * of the store are -EIO on that request, counted as failed reads/writes. A failed
 * write to a slot whose old page was already in the store leaves that page
 * unknown: the slot then reads as -EIO until it is rewritten or trimmed (any
 * other failed write keeps the old contents, as above).
 *
 * Locking (order): slot lock -> pool lock (the refill thread takes the pool lock
 * only, and drops it while it faults memory in). Slot locks are striped or per entry; the
 * pool lock guards the allocator only; (de)compression runs under neither the pool
 * lock nor any lock but the slot's own when reading. A slot's backing-store page is
 * read, written and discarded only under that slot's lock. Counters are atomics.
 * All functions are thread-safe unless stated otherwise.
 */
#ifndef RAMZSWAP_DEVICE_H
#define RAMZSWAP_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RZS_PAGE_SIZE 4096u
/* The most pages the pool can address (its handles hold 22 bits of page number):
 * memlimit and reserve may not be larger. Equals XV_MAX_PAGES. */
#define RZS_POOL_MAX_PAGES ((UINT64_C(1) << 22) - 1)
/* rzs_config.lowmem value that turns the low-memory check off. */
#define RZS_LOWMEM_OFF UINT64_MAX

struct rzs_device;

struct rzs_config {
        uint64_t disksize;      /* bytes; rounded down to a page; > 0 */
        uint64_t memlimit;      /* max pool memory (MemUsedTotal) in bytes; 0 = none */
        uint64_t reserve;       /* pool memory faulted in at create and kept */
        const char *compressor; /* "lzo" (NULL means "lzo") */
        unsigned workspaces;    /* (de)compression buffers made at create, one per
                                 * thread compressing at once (more threads wait);
                                 * 0 = 16, nbdkit's default thread count */
        const char *backing;    /* backing store path (file or block device); NULL =
                                 * none. disksize 0 = the store's size */
        bool backing_force;     /* use the store even if it holds other data */
        uint64_t lowmem;        /* the pool grows only while the free pages above
                                 * every zone's low watermark and lowmem reserve
                                 * stay above a margin, and MemAvailable
                                 * stays at or above this many bytes (0 = any, as
                                 * long as it covers the growth); RZS_LOWMEM_OFF =
                                 * no check. See include/ramzswap/lowmem.h */
        const char *meminfo;    /* file read for that check; NULL = /proc/meminfo
                                 * (no check if it cannot be opened). For tests */
        const char *zoneinfo;   /* NULL = /proc/zoneinfo (optional). For tests */
};

/* The refill thread and its stock (rzs_device_get_refill_stats). */
struct rzs_refill_stats {
        bool running;            /* the thread was started */
        uint64_t stock_pages;    /* free pool pages faulted in now (reserve + cache
                                  * + stock) */
        uint64_t stock_target;   /* what the thread tops the stock up to */
        uint64_t refilled;       /* pages the thread faulted in (cumulative) */
        uint64_t stock_empty;    /* allocations refused on an empty stock (cumul.) */
        uint64_t lowmem_refused; /* times the low-memory policy said no (cumul.) */
};

/* One consistent-enough snapshot of the counters (each field read atomically).
 * Cumulative counters only grow; the others describe the device now. */
struct rzs_stats {
        uint64_t disksize;          /* DiskSize, bytes */
        uint64_t memlimit;          /* MemLimit, bytes (0 = none) */
        uint64_t num_reads;         /* NumReads: pages read successfully (cumulative) */
        uint64_t num_writes;        /* NumWrites: pages written successfully (cumul.) */
        uint64_t failed_reads;      /* FailedReads: read requests that failed */
        uint64_t failed_writes;     /* FailedWrites: write requests that failed */
        uint64_t invalid_io;        /* InvalidIO: misaligned or out-of-range requests */
        uint64_t pages_discard;     /* PagesDiscard: pages trimmed or zeroed that held
                                     * data (cumulative; trimming an empty slot or the
                                     * unwritten header of slot 0 does not count) */
        uint64_t zero_pages;        /* ZeroPages: slots now holding an all-zero page
                                     * written as data (not never-written slots) */
        uint64_t same_pages;        /* SameFilled: slots now holding a non-zero
                                     * repeated 32-bit word */
        uint64_t good_compress;     /* stored slots compressed to <= 1/2 page (now);
                                     * with no_compress never above pages_stored */
        uint64_t no_compress;       /* stored slots kept raw, incompressible (now) */
        uint64_t pages_stored;      /* PagesStored: slots with an object in the pool */
        uint64_t pages_used;        /* PagesUsed: pool pages holding data */
        uint64_t orig_data_size;    /* OrigDataSize: pages_stored * 4096, bytes */
        uint64_t compr_data_size;   /* ComprDataSize: bytes of stored objects as
                                     * compressed (raw slots count 4096) */
        uint64_t mem_used_total;    /* MemUsedTotal: pool pages * 4096, bytes */
        uint64_t mem_used_max;      /* MemUsedMax: highest mem_used_total seen */
        uint64_t pool_block_bytes;  /* bytes in allocated pool blocks, headers
                                     * included (fragmentation = mem_used_total /
                                     * compr_data_size) */
        uint64_t bdev_num_reads;    /* BDevNumReads: backing-store page reads */
        uint64_t bdev_num_writes;   /* BDevNumWrites: backing-store page writes */
        uint64_t backing_pages;     /* BackingPages: slots now in the backing store
                                     * (not in pages_stored, good/no_compress,
                                     * orig/compr_data_size, which describe the pool) */
        uint64_t pool_stock;        /* PoolStock: bytes of free pool pages faulted in
                                     * and ready for writes (reserve, cache, stock) */
        uint64_t stock_empty;       /* StockEmpty: allocations that found the stock
                                     * empty with the refill thread on (cumulative) */
        uint64_t oom_kill_requests; /* OomKillRequests: OOM kills the guard asked
                                     * for (cumulative; filled by its owner, since
                                     * the guard is not part of the device) */
};

/* Build a device. Returns 0 and *out, or -EINVAL (bad config: zero or sub-page
 * disksize, more than 2^32 pages, memlimit > disksize or below one page, memlimit
 * or reserve above RZS_POOL_MAX_PAGES pages, reserve > memlimit, unknown compressor,
 * workspaces > 4096, disksize larger than the backing store), -ENOMEM, or an error of
 * rzs_backing_open() (-ENOENT, -EBUSY, -EEXIST for a store holding other data ...). *out
 * is NULL on failure. memlimit caps the pool's data pages at memlimit / 4096 (rounded
 * down); reserve pages (reserve / 4096, rounded down) are faulted in here. The page table
 * and all workspaces are allocated and faulted in here too, so I/O takes memory from the
 * OS only for pool pages past the reserve (and, once the refill thread runs, never: see
 * Pool growth). An explicit cfg->meminfo or cfg->zoneinfo that cannot be opened fails
 * with its errno. The backing store is opened and checked here, before
 * any write to it. */
int rzs_device_create(const struct rzs_config *cfg, struct rzs_device **out);

/* rzs_device_create() that also explains a failure: msg (msglen bytes, may be NULL)
 * receives one sentence without a final period, e.g. "backing store /dev/sdb1 holds
 * an ext2/3/4 file system (magic 0xEF53 at byte 1080)"; it is "" on success. */
int rzs_device_create_msg(const struct rzs_config *cfg, struct rzs_device **out,
                          char *msg, size_t msglen);

/* Free everything, joining the refill thread first. No I/O may be running. NULL is
 * allowed. */
void rzs_device_destroy(struct rzs_device *dev);

/* Switch pool growth to the refill thread (see Pool growth): fault in the first
 * stock on the calling thread (up to 4 MiB, or the share of the data the pool keeps,
 * while the low-memory policy allows), then start the thread. Call it after the
 * last fork (threads do not survive one) and after mlockall, so the stock is
 * locked. Calling it again does nothing. Returns 0, or -EAGAIN/-ENOMEM when the
 * thread cannot start (the device then stays synchronous and usable). */
int rzs_device_start_refill(struct rzs_device *dev);

/* Snapshot of the refill thread's counters (takes the pool lock). */
void rzs_device_get_refill_stats(struct rzs_device *dev, struct rzs_refill_stats *out);

/* Size in bytes (disksize rounded down to a page). */
uint64_t rzs_device_size(const struct rzs_device *dev);

/* Page-aligned I/O of len bytes at off. Return 0 or a negative errno:
 * -EINVAL misaligned or out of range (counted as invalid I/O), -ENOSPC memory limit,
 * low system memory (cfg->lowmem) or pool exhausted on write without a backing store (the
 * slot keeps its old contents), -EIO corrupt data on read or a backing store error
 * (counted as a failed read or write; a read's buffer must not be trusted). A multi-page
 * write that fails part way leaves the pages before the failure written and the rest
 * untouched. */
int rzs_device_read(struct rzs_device *dev, void *buf, uint64_t len, uint64_t off);
int rzs_device_write(struct rzs_device *dev, const void *buf, uint64_t len, uint64_t off);
/* Free the pages: they read as zeros afterwards (slot 0 included). */
int rzs_device_trim(struct rzs_device *dev, uint64_t len, uint64_t off);
/* Make the pages read as zeros; memory is freed as by trim. A zeroed slot is an
 * empty slot, as if trimmed: it is not counted in zero_pages, which counts zero
 * pages written as data. */
int rzs_device_zero(struct rzs_device *dev, uint64_t len, uint64_t off);

void rzs_device_get_stats(const struct rzs_device *dev, struct rzs_stats *out);

/* Verify the device's invariants (table against counters, every handle live in the
 * pool, pool check, backing entries only with a backing store). Returns the number of
 * violations; 0 is sound. Not thread-safe: no I/O may be running. For tests. */
unsigned rzs_device_check(struct rzs_device *dev);

#endif /* RAMZSWAP_DEVICE_H */
