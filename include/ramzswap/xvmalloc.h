/* ramzswap: xvmalloc, a TLSF allocator for compressed pages.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: hold many small objects (1 .. XV_MAX_ALLOC bytes, the compressed form
 * of 4 KiB swap pages) with little waste, O(1) alloc and free, and give memory back
 * to the OS as pages empty (past a small, bounded cache), so the server's RSS
 * follows the data it holds.
 *
 * Data layout:
 *  - The pool hands out 4 KiB pages carved from large mmap'd arenas. A page is either
 *    an object page (tiled by blocks), a whole page given to one caller
 *    (xv_page_alloc, for incompressible data), or free. Free pages are kept faulted
 *    in up to the reserve, or up to 1/32 of the pages holding data when that is more
 *    (a cache that spares swap churn a madvise and a fault per page); the rest are
 *    returned to the OS with madvise(MADV_DONTNEED). New memory is faulted in 16
 *    pages at a time, so up to 24 pages not yet handed out may be resident.
 *  - Refill mode (xv_pool_set_refill): the allocation path never faults memory in;
 *    it hands out only free blocks and the faulted free pages (the stock: reserve,
 *    cache, and at least 1024 pages, 4 MiB, while that much may still be used), and
 *    fails with -EAGAIN at once when the stock is empty. The caller runs a thread
 *    that tops the stock up with xv_pool_refill(), woken when xv_pool_stock_low().
 *  - Every block in an object page starts with a 4-byte header holding its size, the
 *    offset of the previous block in the page and two flags (free, previous free);
 *    the caller's object follows the header. Block sizes are multiples of 4, at least
 *    XV_MIN_BLOCK bytes, and tile their page exactly.
 *  - Free blocks sit on segregated lists, one per 8 bytes of size, found through a
 *    two-level bitmap with find-first-set, so alloc and free cost O(1) whatever the
 *    pool holds. A freed block coalesces at once with free neighbours on both sides.
 *
 * Handles: an xv_handle names (page frame number, offset) and fits in 32 bits, so a
 * page-table entry stays 8 bytes. 0 is never a valid handle: a zeroed table is an
 * empty table. Handles stay valid until freed (no compaction yet).
 *
 * Locking: a pool is NOT thread-safe. The caller serialises every call that changes
 * the pool (alloc, free, page alloc/free, reserve, stats, check, refill) with one
 * lock; xv_pool_refill() takes that lock as an argument and drops it while it
 * faults pages in or asks may_grow.
 * xv_map() alone may run without that lock, for a handle the caller owns: it reads
 * only the arena table, which is written once per arena before any handle into that
 * arena exists.
 */
#ifndef RAMZSWAP_XVMALLOC_H
#define RAMZSWAP_XVMALLOC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size of a pool page; equal to the device page. */
#define XV_PAGE_SIZE 4096u
/* Bytes of block header in front of every object. */
#define XV_HEADER_SIZE 4u
/* Largest object xv_malloc() accepts. */
#define XV_MAX_ALLOC (XV_PAGE_SIZE - XV_HEADER_SIZE)
/* Smallest block (header included); smaller requests are rounded up to it. */
#define XV_MIN_BLOCK 32u

/* Handle encoding: (pfn << XV_HANDLE_OFFSET_BITS) | (offset / 4); 0 = no object. */
#define XV_HANDLE_OFFSET_BITS 10u
/* Largest number of pool pages a handle can name (16 GiB of pool). */
#define XV_MAX_PAGES ((UINT64_C(1) << (32 - XV_HANDLE_OFFSET_BITS)) - 1)

typedef uint32_t xv_handle;

struct xv_pool;

struct xv_pool_stats {
        uint64_t pages;          /* pool pages holding data (objects or whole pages) */
        uint64_t reserve_pages;  /* free pages kept faulted in (reserve + cache) */
        uint64_t block_bytes;    /* bytes in allocated blocks, headers included */
        uint64_t objects;        /* live objects (whole pages included) */
        uint64_t whole_pages;    /* pages given out by xv_page_alloc */
        uint64_t lowmem_refused; /* times may_grow said no: allocations refused
                                  * (sync) or refills skipped (refill mode);
                                  * cumulative */
        uint64_t stock_empty;    /* refill mode: allocations refused because the
                                  * stock was empty (cumulative) */
        uint64_t refilled;       /* pages put on the stock by xv_pool_refill
                                  * (cumulative) */
        uint64_t stock_target;   /* refill mode: pages the stock is topped up to
                                  * (reserve_pages is the stock now); 0 when off */
};

/* May the pool take npages more pages from the OS now? ctx is the hook's own. The
 * pool calls it without any guarantee about which thread or lock it is on other
 * than the caller's pool lock (sync mode) or no lock (xv_pool_refill). */
typedef bool (*xv_may_grow_fn)(void *ctx, uint64_t npages);

/* Create an empty pool.
 * max_pages: the pool never holds more data pages than this (0 = no limit of its own;
 *            the handle format still caps it at XV_MAX_PAGES).
 * reserve_pages: pages mapped and faulted in now and kept (never given back) so
 *            that later allocations up to that amount take no memory from the OS.
 * Returns 0, -EINVAL (reserve > max), or -ENOMEM. *out is NULL on failure. */
int xv_pool_create(uint64_t max_pages, uint64_t reserve_pages, struct xv_pool **out);

/* Unmap everything. Handles die with the pool. NULL is allowed. */
void xv_pool_destroy(struct xv_pool *pool);

/* Allocate an object of size bytes (1 .. XV_MAX_ALLOC). O(1); in sync mode plus
 * one may_grow question per 16 pages taken from the OS. Returns 0 and *out, or
 * -EINVAL (size out of range), -ENOSPC (would pass max_pages; may_grow said no),
 * -EAGAIN (refill mode: the stock is empty until the next refill), -ENOMEM (the
 * OS refused an arena). *out is 0 on failure. */
int xv_malloc(struct xv_pool *pool, uint32_t size, xv_handle *out);

/* Free an object from xv_malloc(). O(1). Coalesces; an emptied page goes back to the
 * OS, or stays faulted in as reserve or cache (see Data layout). */
void xv_free(struct xv_pool *pool, xv_handle h);

/* Take a whole XV_PAGE_SIZE page (for data that did not compress). Same errors as
 * xv_malloc(). Free it with xv_page_free(). */
int xv_page_alloc(struct xv_pool *pool, xv_handle *out);
void xv_page_free(struct xv_pool *pool, xv_handle h);

/* Address of the object (or whole page) h. Valid until h is freed. No lock needed. */
void *xv_map(const struct xv_pool *pool, xv_handle h);

/* Claim the next few pages the pool will carve, so the caller can fault them in
 * outside its lock: returns their length in bytes and *addr, or 0 (and NULL) when
 * nothing needs claiming yet (e.g. while free pages, the reserve included, remain
 * to be reused, or in refill mode). Changes the pool: call it under the pool's lock; then
 * pass the range to xv_prefault() after unlocking. Skipping the fault-in is
 * harmless: the pages then fault in on first touch. */
size_t xv_pool_prefault_claim(struct xv_pool *pool, void **addr);

/* Set the growth policy: fn (NULL = always yes) is asked before the pool takes
 * pages from the OS. Sync mode asks on the allocation path once per 16 such pages
 * while the answer is yes and on every such allocation while it is no, which then
 * fails with -ENOSPC (the reserve and cache are still handed out); a "no" also
 * stops prefault claims. Refill mode asks only in xv_pool_refill(). In a swap
 * server a fault under memory pressure enters direct reclaim, which can only wait
 * for the swap I/O the server itself must complete. */
void xv_pool_set_may_grow(struct xv_pool *pool, xv_may_grow_fn fn, void *ctx);

/* Turn refill mode on or off (see Data layout). Off (the default) the allocation
 * path takes pages from the OS itself. Turning it off gives back the stock beyond
 * what sync mode keeps. */
void xv_pool_set_refill(struct xv_pool *pool, bool on);

/* Refill mode: pages the stock lacks to reach its target (0 when off or full). */
uint64_t xv_pool_stock_deficit(const struct xv_pool *pool);

/* Refill mode: whether the stock has fallen below its low mark (3/4 of the target)
 * and the refill thread should be woken. Cheap: no system call. */
bool xv_pool_stock_low(const struct xv_pool *pool);

/* Add up to 256 faulted-in pages to the stock. Call with lock (the pool's lock)
 * held; it is dropped while may_grow is asked, while a new arena is mapped, and
 * while the pages are faulted in, and held again on return. Returns the number of
 * pages added (0: the stock is full, or another refill is under way), -EAGAIN
 * (may_grow said no), -ENOSPC (no page left for a handle to name) or -ENOMEM. */
int xv_pool_refill(struct xv_pool *pool, pthread_mutex_t *lock);

/* Fault in len bytes at addr (madvise(MADV_POPULATE_WRITE), best effort). No lock
 * needed, even if the pool hands those pages out meanwhile: faulting in never
 * changes a page that is already there. */
void xv_prefault(void *addr, size_t len);

void xv_pool_get_stats(const struct xv_pool *pool, struct xv_pool_stats *out);

/* Walk the whole pool and count violated invariants: every free block is on the
 * list its size selects; bitmaps agree with the lists; no two free blocks are
 * adjacent; block sizes tile each page exactly; prev offsets and flags agree; every
 * free page is on one free-page stack (or claimed by a refill), and no more are
 * kept faulted in than the reserve, cache and stock allow; the counters match the
 * walk. Returns 0 for a sound pool.
 * O(pool size); for tests. */
unsigned xv_pool_check(const struct xv_pool *pool);

#endif /* RAMZSWAP_XVMALLOC_H */
