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
 * the pool (alloc, free, page alloc/free, reserve, stats, check) with one lock.
 * xv_map() alone may run without that lock, for a handle the caller owns: it reads
 * only the arena table, which is written once per arena before any handle into that
 * arena exists.
 */
#ifndef RAMZSWAP_XVMALLOC_H
#define RAMZSWAP_XVMALLOC_H

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
        uint64_t lowmem_refused; /* allocations refused for low system memory
                                  * (cumulative; see xv_pool_set_lowmem) */
};

/* Create an empty pool.
 * max_pages: the pool never holds more data pages than this (0 = no limit of its own;
 *            the handle format still caps it at XV_MAX_PAGES).
 * reserve_pages: pages mapped and faulted in now and kept (never given back) so
 *            that later allocations up to that amount take no memory from the OS.
 * Returns 0, -EINVAL (reserve > max), or -ENOMEM. *out is NULL on failure. */
int xv_pool_create(uint64_t max_pages, uint64_t reserve_pages, struct xv_pool **out);

/* Unmap everything. Handles die with the pool. NULL is allowed. */
void xv_pool_destroy(struct xv_pool *pool);

/* Allocate an object of size bytes (1 .. XV_MAX_ALLOC). O(1), plus one pread of
 * meminfo per 16 pages taken from the OS when xv_pool_set_lowmem() is on.
 * Returns 0 and *out, or -EINVAL (size out of range), -ENOSPC (would pass
 * max_pages, or low system memory: see xv_pool_set_lowmem), -ENOMEM (the OS
 * refused an arena). *out is 0 on failure. */
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
 * to be reused). Changes the pool: call it under the pool's lock; then
 * pass the range to xv_prefault() after unlocking. Skipping the fault-in is
 * harmless: the pages then fault in on first touch. */
size_t xv_pool_prefault_claim(struct xv_pool *pool, void **addr);

/* Make the pool refuse, with -ENOSPC, an allocation that needs a page from the OS
 * (not one of its free faulted pages: the reserve and the cache) while the machine
 * is low on memory: MemFree and MemAvailable both under min_bytes. In a locked swap
 * server such a fault would enter direct reclaim, which can only wait for the swap
 * I/O the server itself must complete; failing the write leaves the page in the
 * kernel's swap cache instead. meminfo_fd is an open /proc/meminfo (or a file in
 * its format), read with pread() from offset 0 into a stack buffer (no allocation;
 * procfs keeps the read buffer of an open file) at most once per 16 pages taken
 * from the OS, and on every such allocation while memory is low. A short or
 * unreadable text allows the allocation. The pool does not own the fd; -1 turns
 * the check off (the default). Also stops prefault claims while memory is low. */
void xv_pool_set_lowmem(struct xv_pool *pool, int meminfo_fd, uint64_t min_bytes);

/* Fault in len bytes at addr (madvise(MADV_POPULATE_WRITE), best effort). No lock
 * needed, even if the pool hands those pages out meanwhile: faulting in never
 * changes a page that is already there. */
void xv_prefault(void *addr, size_t len);

void xv_pool_get_stats(const struct xv_pool *pool, struct xv_pool_stats *out);

/* Walk the whole pool and count violated invariants: every free block is on the
 * list its size selects; bitmaps agree with the lists; no two free blocks are
 * adjacent; block sizes tile each page exactly; prev offsets and flags agree; every
 * free page is on one free-page stack, and no more are kept faulted in than the
 * reserve and cache allow; the counters match the walk. Returns 0 for a sound pool.
 * O(pool size); for tests. */
unsigned xv_pool_check(const struct xv_pool *pool);

#endif /* RAMZSWAP_XVMALLOC_H */
