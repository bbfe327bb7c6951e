/* ramzswap: xvmalloc, a TLSF allocator for compressed pages.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * See include/ramzswap/xvmalloc.h for the contract. Implementation notes:
 *
 * Pages and arenas: pool page frame numbers (pfn) index a fixed table of arenas of
 * ARENA_PAGES pages each, mapped lazily with MAP_NORESERVE. pfn 0 (the first page of
 * arena 0) is never handed out, so handle 0 stays invalid. Pages are carved from the
 * arenas in pfn order ("bump"), and every page ever carved is in exactly one state:
 * holding objects, given whole to a caller, free and faulted in (the reserve and
 * the cache), or free and released to the OS. Free pages sit on two stacks of pfns
 * kept outside the pages, so a released page is never touched until it is handed
 * out again.
 *
 * Keeping memory: an emptied page stays faulted in while the faulted stack holds
 * fewer than keep_limit() pages: the reserve, or 1/2^CACHE_SHIFT of the data pages
 * when that is more. Swap traffic frees and allocates pages all the time; the cache
 * spares each such pair a madvise() and a page fault (measured: about 3.5 us of CPU
 * per page on these machines, and twice that per page written with two writer
 * threads, as a DONTNEED must flush the TLB of every CPU running the process). The
 * limit shrinks with the data, so once everything is freed the pool holds exactly
 * its reserve again and RSS follows the data to within 1/2^CACHE_SHIFT.
 *
 * Fault-in: new pages are carved in address order, and faulted in POPULATE_PAGES at
 * a time with one madvise(MADV_POPULATE_WRITE), which costs about 2/3 of faulting
 * them one by one. A caller with a lock of its own claims the next step ahead of
 * the carving with xv_pool_prefault_claim() and faults it in after unlocking, so
 * the faults do not lengthen its lock (measured: two writer threads faulting under
 * the device's pool lock reached 0.65 of bare LZO's speed, outside it 0.85); when
 * carving overtakes the claims it faults in the step itself. So up to
 * 3/2 POPULATE_PAGES pages not yet carved may be resident (96 KiB).
 *
 * Growth policy: the pool never decides itself whether the machine can spare a
 * page; it asks the caller's may_grow hook (xv_pool_set_may_grow). Synchronously
 * (refill mode off), a page taken from the OS on the allocation path asks once per
 * GROW_CHECK_PAGES such pages while the answer is yes and on every attempt while
 * it is no.
 *
 * Refill mode (xv_pool_set_refill): the allocation path never faults memory in. It
 * takes blocks from the free lists and pages from the faulted stack (the stock,
 * reserve included) only, and fails with -EAGAIN at once when the stock is empty:
 * in a swap server, a fault under memory pressure enters direct reclaim, which
 * waits for swap I/O that only the server's own I/O threads can complete. A
 * background thread calls xv_pool_refill() to keep the stock at keep_limit(),
 * which in refill mode is at least STOCK_MIN_PAGES: it claims pages under the lock
 * (released pages first, then newly carved ones; they are PG_CLAIMED, on no stack),
 * faults them in with the lock dropped, and publishes them on the faulted stack
 * under the lock. A new arena is likewise prepared (mapped, its bookkeeping
 * allocated and written) with the lock dropped and installed under it, so an I/O
 * thread waiting for the lock never waits for a fault. Emptied pages past the stock
 * are still released with madvise(MADV_DONTNEED) on the freeing path: a system call
 * that faults nothing in.
 *
 * Block header (one 32-bit word in front of every block):
 *   bit 0       block is free
 *   bit 1       the previous block in the page is free
 *   bits 2..12  block size in bytes (a multiple of 4, XV_MIN_BLOCK..XV_PAGE_SIZE)
 *   bits 16..27 byte offset of the previous block in the page (0 for the first)
 * A free block also holds, after its header, the references of the next and the
 * previous free block on its list. A reference names a block as a handle names an
 * object: pfn << 10 | block offset / 4; 0 ends a list.
 *
 * Free lists: list i holds free blocks of size 8i and 8i + 4. Bit i of l2[i / 64] is
 * set iff list i is non-empty, bit w of l1 iff l2[w] is non-zero. A request of
 * block size s takes the head of list s / 8 when it fits, else the head of the first
 * non-empty list above, so every block it gets is large enough (good fit, O(1)).
 *
 * Invariants (checked by xv_pool_check): blocks tile each object page; no two free
 * blocks are adjacent; an object page is never one free block (it would have been
 * given back); the flags and prev offsets agree with the neighbours.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ramzswap/xvmalloc.h"

/* Tunables. */
#define ARENA_SHIFT      13u /* 8192 pages = 32 MiB of address space per arena */
#define CACHE_SHIFT      5u  /* keep up to 1/32 of the data pages' worth of free pages */
#define POPULATE_PAGES   16u /* pages faulted in per madvise when carving new memory */
#define GROW_CHECK_PAGES 16u /* OS pages taken per may_grow question (sync) */
#define STOCK_MIN_PAGES  1024u /* refill mode: free pages kept ready (4 MiB) */
#define REFILL_BATCH     256u  /* pages faulted in per xv_pool_refill() */

/* Derived constants: do not edit. */
#define ARENA_PAGES    (1u << ARENA_SHIFT)
#define ARENA_BYTES    ((size_t)ARENA_PAGES * XV_PAGE_SIZE)
#define MAX_ARENAS     ((uint32_t)(XV_MAX_PAGES >> ARENA_SHIFT) + 1u)
#define PAGE_SHIFT     12u
#define LIST_SHIFT     3u /* one list per 8 bytes of block size */
#define NLISTS         (XV_PAGE_SIZE >> LIST_SHIFT)
#define NWORDS         (NLISTS / 64u)
#define OFFSET_MASK    ((1u << XV_HANDLE_OFFSET_BITS) - 1u)
#define HDR_FREE       1u
#define HDR_PREVFREE   2u
#define HDR_SIZE       0x1ffcu
#define HDR_PREV_SHIFT 16u

_Static_assert(XV_PAGE_SIZE == 1u << PAGE_SHIFT, "page shift");
_Static_assert(ARENA_PAGES % POPULATE_PAGES == 0, "a populate step stays in its arena");
_Static_assert(REFILL_BATCH <= ARENA_PAGES, "a carved refill stays in its arena");
_Static_assert(NLISTS % 64 == 0 && NWORDS <= 64, "two-level bitmap geometry");
_Static_assert(XV_MIN_BLOCK >= XV_HEADER_SIZE + 2 * sizeof(uint32_t),
               "a free block must hold its header and two list links");
_Static_assert((XV_PAGE_SIZE >> 2) - 1 <= OFFSET_MASK, "offsets fit a handle");

enum page_state {
        PG_UNUSED = 0, /* not carved yet */
        PG_OBJECTS,    /* tiled by blocks */
        PG_WHOLE,      /* given to a caller by xv_page_alloc */
        PG_FAULTED,    /* free, faulted in, on the faulted stack (reserve, cache) */
        PG_RELEASED,   /* free, given back to the OS, on the released stack */
        PG_CLAIMED,    /* being faulted in by xv_pool_refill, on no stack */
};

struct xv_pool {
        uint64_t max_pages;      /* limit on data pages (objects + whole) */
        uint64_t reserve_target; /* free pages always kept faulted in */
        uint32_t next_pfn;       /* first pfn never carved */
        uint32_t populated_pfn;  /* pages from next_pfn up to here are faulted in */
        uint32_t narenas;        /* arenas mapped: arena[0 .. narenas - 1] */
        /* The free-page stacks can each hold every page of the mapped arenas. */
        uint32_t *faulted; /* stack of PG_FAULTED pfns, at most keep_limit() */
        uint32_t nfaulted;
        uint32_t *released; /* stack of PG_RELEASED pfns */
        uint32_t nreleased;
        xv_may_grow_fn may_grow; /* NULL: always yes */
        void *may_grow_ctx;
        uint32_t grow_budget; /* sync mode: OS pages allowed before the next ask */
        bool grow_refused;    /* sync mode: the last answer was no */
        bool refill_mode;     /* the allocation path takes only faulted pages */
        bool refilling;       /* an xv_pool_refill() has pages claimed */
        uint32_t nclaimed;    /* PG_CLAIMED pages */
        uint64_t l1;
        uint64_t l2[NWORDS];
        uint32_t head[NLISTS]; /* reference of each list's first block, 0 = empty */
        struct xv_pool_stats st;
        uint8_t *state[MAX_ARENAS]; /* enum page_state per page, per arena */
        /* Written once per arena (release) before any handle into it exists; read
         * by xv_map without the pool lock (acquire). */
        uint8_t *arena[MAX_ARENAS];
};

static inline uint8_t *page_addr(const struct xv_pool *pool, uint32_t pfn)
{
        return pool->arena[pfn >> ARENA_SHIFT] +
               ((size_t)(pfn & (ARENA_PAGES - 1)) << PAGE_SHIFT);
}

static inline uint8_t *page_state(const struct xv_pool *pool, uint32_t pfn)
{
        return &pool->state[pfn >> ARENA_SHIFT][pfn & (ARENA_PAGES - 1)];
}

static inline uint32_t mkref(uint32_t pfn, uint32_t off)
{
        return pfn << XV_HANDLE_OFFSET_BITS | off >> 2;
}

static inline uint32_t *ref_block(const struct xv_pool *pool, uint32_t ref)
{
        return (uint32_t *)(page_addr(pool, ref >> XV_HANDLE_OFFSET_BITS) +
                            ((ref & OFFSET_MASK) << 2));
}

static inline uint32_t hdr_size(uint32_t h)
{
        return h & HDR_SIZE;
}

static inline uint32_t hdr_prev(uint32_t h)
{
        return h >> HDR_PREV_SHIFT;
}

static inline uint32_t mkhdr(uint32_t size, uint32_t prev_off, uint32_t flags)
{
        return size | prev_off << HDR_PREV_SHIFT | flags;
}

static inline unsigned list_index(uint32_t size)
{
        return size >> LIST_SHIFT;
}

/* Block size for an object of size bytes: header added, rounded up to 4, at least
 * XV_MIN_BLOCK. */
static inline uint32_t block_size(uint32_t size)
{
        uint32_t b = ((size + 3u) & ~3u) + XV_HEADER_SIZE;
        return b < XV_MIN_BLOCK ? XV_MIN_BLOCK : b;
}

/* ---- free lists ---- */

static void list_insert(struct xv_pool *pool, uint32_t *blk, uint32_t ref)
{
        unsigned i = list_index(hdr_size(blk[0]));
        uint32_t first = pool->head[i];

        blk[1] = first;
        blk[2] = 0;
        if (first)
                ref_block(pool, first)[2] = ref;
        else {
                pool->l2[i / 64] |= UINT64_C(1) << (i % 64);
                pool->l1 |= UINT64_C(1) << (i / 64);
        }
        pool->head[i] = ref;
}

static void list_remove(struct xv_pool *pool, const uint32_t *blk)
{
        unsigned i = list_index(hdr_size(blk[0]));
        uint32_t next = blk[1], prev = blk[2];

        if (next)
                ref_block(pool, next)[2] = prev;
        if (prev) {
                ref_block(pool, prev)[1] = next;
                return;
        }
        pool->head[i] = next;
        if (!next) {
                pool->l2[i / 64] &= ~(UINT64_C(1) << (i % 64));
                if (!pool->l2[i / 64])
                        pool->l1 &= ~(UINT64_C(1) << (i / 64));
        }
}

/* Index of the first non-empty list at or above i, or -1. */
static int find_list(const struct xv_pool *pool, unsigned i)
{
        unsigned w = i / 64;
        uint64_t m, top;

        if (i >= NLISTS)
                return -1;
        m = pool->l2[w] & (~UINT64_C(0) << (i % 64));
        if (m)
                return (int)(w * 64 + (unsigned)__builtin_ctzll(m));
        top = w + 1 < 64 ? pool->l1 & (~UINT64_C(0) << (w + 1)) : 0;
        if (!top)
                return -1;
        w = (unsigned)__builtin_ctzll(top);
        return (int)(w * 64 + (unsigned)__builtin_ctzll(pool->l2[w]));
}

/* ---- pages ---- */

/* Write every page of len bytes at p, so that the pool's own bookkeeping never
 * faults in memory later, when the machine may have none to give (a swap server
 * then waits on itself). Fresh heap memory from calloc() is not written at all, and
 * a page only ever read maps the shared zero page, which faults again on the first
 * write; realloc() reads the old block to copy it. volatile: these stores must
 * happen even where the compiler knows the memory is zero. */
static void touch(void *p, size_t len)
{
        volatile uint8_t *b = p;

        for (size_t i = 0; i < len; i += XV_PAGE_SIZE)
                b[i] = b[i];
        if (len)
                b[len - 1] = b[len - 1];
}

/* What one more arena needs, made without the pool: the mapping, its page states
 * and free-page stacks big enough for every page of all arenas (filled in by
 * arena_commit). All of it is written now, so nothing faults in later. */
struct arena_prep {
        uint32_t index; /* the arena this is for: pool->narenas when made */
        uint8_t *mem;
        uint8_t *state;
        uint32_t *faulted, *released;
};

/* Prepare arena a. Touches no pool: may run without the pool's lock. */
static int arena_prepare(uint32_t a, struct arena_prep *p)
{
        size_t cap = (size_t)(a + 1) * ARENA_PAGES * sizeof(uint32_t);
        void *mem;

        *p = (struct arena_prep){.index = a};
        p->faulted = malloc(cap);
        p->released = malloc(cap);
        p->state = calloc(ARENA_PAGES, 1);
        mem = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        p->mem = mem == MAP_FAILED ? NULL : mem;
        if (!p->faulted || !p->released || !p->state || !p->mem)
                return -ENOMEM;
        touch(p->faulted, cap);
        touch(p->released, cap);
        touch(p->state, ARENA_PAGES);
        return 0;
}

/* Install a prepared arena; p keeps the old stacks for arena_discard(). Under the
 * pool's lock; only copies into memory arena_prepare() already wrote. */
static void arena_commit(struct xv_pool *pool, struct arena_prep *p)
{
        uint32_t *old_faulted = pool->faulted, *old_released = pool->released;
        uint32_t a = p->index;

        if (pool->nfaulted) /* the first arena has no stacks to copy (NULL) */
                memcpy(p->faulted, pool->faulted, pool->nfaulted * sizeof(uint32_t));
        if (pool->nreleased)
                memcpy(p->released, pool->released, pool->nreleased * sizeof(uint32_t));
        pool->faulted = p->faulted;
        pool->released = p->released;
        pool->state[a] = p->state;
        __atomic_store_n(&pool->arena[a], p->mem, __ATOMIC_RELEASE);
        pool->narenas = a + 1;
        *p = (struct arena_prep){.faulted = old_faulted, .released = old_released};
}

/* Free what p holds: all of it if never committed, else the old stacks. */
static void arena_discard(struct arena_prep *p)
{
        free(p->faulted);
        free(p->released);
        free(p->state);
        if (p->mem)
                munmap(p->mem, ARENA_BYTES);
}

static int map_arena(struct xv_pool *pool)
{
        struct arena_prep p;
        int r = arena_prepare(pool->narenas, &p);

        if (r == 0)
                arena_commit(pool, &p);
        arena_discard(&p);
        return r;
}

/* A never-used page from the arenas, mapping a new arena when needed. */
static int carve_page(struct xv_pool *pool, uint32_t *pfn)
{
        int r;

        if (pool->next_pfn > XV_MAX_PAGES)
                return -ENOSPC;
        if ((pool->next_pfn >> ARENA_SHIFT) >= pool->narenas) {
                r = map_arena(pool);
                if (r < 0)
                        return r;
        }
        *pfn = pool->next_pfn++;
        if (*pfn >= pool->populated_pfn) {
                /* Up to the next step boundary, so a step never crosses an arena. */
                pool->populated_pfn = (*pfn | (POPULATE_PAGES - 1)) + 1;
                xv_prefault(page_addr(pool, *pfn),
                            (size_t)(pool->populated_pfn - *pfn) * XV_PAGE_SIZE);
        }
        return 0;
}

/* Most free pages to keep faulted in now: see "Keeping memory" above; in refill
 * mode also at least STOCK_MIN_PAGES, but no more than could still be used. It is
 * also the stock's target. */
static uint64_t keep_limit(const struct xv_pool *pool)
{
        uint64_t keep = pool->st.pages >> CACHE_SHIFT;

        if (pool->refill_mode) {
                uint64_t room = pool->max_pages - pool->st.pages;

                keep = keep > STOCK_MIN_PAGES ? keep : STOCK_MIN_PAGES;
                keep = keep < room ? keep : room;
        }
        return keep > pool->reserve_target ? keep : pool->reserve_target;
}

/* Give the free page pfn back to the OS and put it on the released stack. */
static void release_page(struct xv_pool *pool, uint32_t pfn)
{
        void *addr = page_addr(pool, pfn);

        /* A swap server locks itself in RAM (mlockall), and MADV_DONTNEED refuses
         * locked memory with EINVAL; MADV_DONTNEED_LOCKED (Linux 5.18) drops it
         * and keeps the range locked for its next use. Any other failure leaves the
         * page merely resident, still free for reuse. */
        if (madvise(addr, XV_PAGE_SIZE, MADV_DONTNEED) < 0 && errno == EINVAL)
                (void)madvise(addr, XV_PAGE_SIZE, MADV_DONTNEED_LOCKED);
        pool->released[pool->nreleased++] = pfn;
        *page_state(pool, pfn) = PG_RELEASED;
}

/* Whether a page from the OS must be refused now (sync mode); see "Growth policy"
 * above. */
static bool os_page_refused(struct xv_pool *pool)
{
        if (pool->may_grow == NULL)
                return false;
        if (pool->grow_budget == 0) {
                pool->grow_refused =
                    !pool->may_grow(pool->may_grow_ctx, GROW_CHECK_PAGES);
                if (pool->grow_refused) {
                        pool->st.lowmem_refused++;
                        return true;
                }
                pool->grow_budget = GROW_CHECK_PAGES;
        }
        pool->grow_budget--;
        return false;
}

/* A page for data: the reserve (the stock) first, then, unless in refill mode,
 * released pages, then new ones. */
static int get_page(struct xv_pool *pool, enum page_state use, uint32_t *pfn)
{
        int r;

        if (pool->st.pages >= pool->max_pages)
                return -ENOSPC;
        if (pool->nfaulted) {
                *pfn = pool->faulted[--pool->nfaulted];
                pool->st.reserve_pages = pool->nfaulted;
        } else if (pool->refill_mode) {
                pool->st.stock_empty++;
                return -EAGAIN;
        } else if (os_page_refused(pool)) {
                return -ENOSPC;
        } else if (pool->nreleased) {
                *pfn = pool->released[--pool->nreleased];
        } else {
                r = carve_page(pool, pfn);
                if (r < 0)
                        return r;
        }
        *page_state(pool, *pfn) = (uint8_t)use;
        pool->st.pages++;
        return 0;
}

/* Keep an emptied page faulted in while keep_limit() allows, else give it back;
 * the limit shrinks with the data, so this may also give back one kept page. */
static void put_page(struct xv_pool *pool, uint32_t pfn)
{
        uint64_t limit;

        pool->st.pages--;
        limit = keep_limit(pool);
        if (pool->nfaulted < limit) {
                pool->faulted[pool->nfaulted++] = pfn;
                *page_state(pool, pfn) = PG_FAULTED;
        } else {
                release_page(pool, pfn);
        }
        while (pool->nfaulted > limit)
                release_page(pool, pool->faulted[--pool->nfaulted]);
        pool->st.reserve_pages = pool->nfaulted;
}

/* ---- public API ---- */

int xv_pool_create(uint64_t max_pages, uint64_t reserve_pages, struct xv_pool **out)
{
        struct xv_pool *pool;
        uint32_t pfn;
        int r;

        *out = NULL;
        if (max_pages == 0 || max_pages > XV_MAX_PAGES)
                max_pages = XV_MAX_PAGES;
        if (reserve_pages > max_pages)
                return -EINVAL;
        pool = calloc(1, sizeof(*pool));
        if (!pool)
                return -ENOMEM;
        touch(pool, sizeof(*pool));
        pool->max_pages = max_pages;
        pool->reserve_target = reserve_pages;
        pool->next_pfn = 1; /* pfn 0 is never used: handle 0 stays invalid */
        /* Pushed from the top so that pages are handed out in address order. */
        while (pool->nfaulted < reserve_pages) {
                r = carve_page(pool, &pfn);
                if (r < 0)
                        goto fail;
                *(volatile uint8_t *)page_addr(pool, pfn) = 0;
                *page_state(pool, pfn) = PG_FAULTED;
                pool->faulted[pool->nfaulted++] = pfn;
        }
        for (uint32_t i = 0; i < pool->nfaulted / 2; i++) {
                uint32_t t = pool->faulted[i];
                pool->faulted[i] = pool->faulted[pool->nfaulted - 1 - i];
                pool->faulted[pool->nfaulted - 1 - i] = t;
        }
        pool->st.reserve_pages = pool->nfaulted;
        *out = pool;
        return 0;

fail:
        xv_pool_destroy(pool);
        return r;
}

void xv_pool_destroy(struct xv_pool *pool)
{
        if (!pool)
                return;
        for (uint32_t a = 0; a < pool->narenas; a++) {
                munmap(pool->arena[a], ARENA_BYTES);
                free(pool->state[a]);
        }
        free(pool->faulted);
        free(pool->released);
        free(pool);
}

int xv_malloc(struct xv_pool *pool, uint32_t size, xv_handle *out)
{
        uint32_t bsize, fsize, ref, pfn, off, rest, *blk;
        uint8_t *page;
        unsigned i;
        int li, r;

        *out = 0;
        if (size == 0 || size > XV_MAX_ALLOC)
                return -EINVAL;
        bsize = block_size(size);
        i = list_index(bsize);
        /* List i also holds blocks 4 bytes short of bsize: take its head only if it
         * fits, else look above, where every block fits. */
        if ((bsize & 4u) && pool->head[i] &&
            hdr_size(ref_block(pool, pool->head[i])[0]) >= bsize)
                li = (int)i;
        else
                li = find_list(pool, i + ((bsize & 4u) >> 2));

        if (li >= 0) {
                ref = pool->head[li];
                pfn = ref >> XV_HANDLE_OFFSET_BITS;
                off = (ref & OFFSET_MASK) << 2;
                page = page_addr(pool, pfn);
                blk = (uint32_t *)(page + off);
                list_remove(pool, blk);
                fsize = hdr_size(blk[0]);
        } else {
                r = get_page(pool, PG_OBJECTS, &pfn);
                if (r < 0)
                        return r;
                off = 0;
                page = page_addr(pool, pfn);
                blk = (uint32_t *)page;
                blk[0] = mkhdr(XV_PAGE_SIZE, 0, HDR_FREE);
                fsize = XV_PAGE_SIZE;
        }

        rest = fsize - bsize;
        if (rest >= XV_MIN_BLOCK) {
                uint32_t *tail = (uint32_t *)(page + off + bsize);
                uint32_t end = off + fsize;

                tail[0] = mkhdr(rest, off, HDR_FREE);
                list_insert(pool, tail, mkref(pfn, off + bsize));
                /* The block after a free block is allocated (no two free blocks
                 * touch); its previous block is now the tail. */
                if (end < XV_PAGE_SIZE) {
                        uint32_t *next = (uint32_t *)(page + end);
                        next[0] = mkhdr(hdr_size(next[0]), off + bsize, HDR_PREVFREE);
                }
        } else {
                bsize = fsize;
                if (off + fsize < XV_PAGE_SIZE) {
                        uint32_t *next = (uint32_t *)(page + off + fsize);
                        next[0] &= ~HDR_PREVFREE;
                }
        }
        blk[0] = mkhdr(bsize, hdr_prev(blk[0]), 0);

        pool->st.objects++;
        pool->st.block_bytes += bsize;
        *out = mkref(pfn, off + XV_HEADER_SIZE);
        return 0;
}

void xv_free(struct xv_pool *pool, xv_handle h)
{
        uint32_t pfn = h >> XV_HANDLE_OFFSET_BITS;
        uint32_t start = ((h & OFFSET_MASK) << 2) - XV_HEADER_SIZE;
        uint8_t *page = page_addr(pool, pfn);
        uint32_t *blk = (uint32_t *)(page + start);
        uint32_t hdr = blk[0], size = hdr_size(hdr), end = start + size;
        uint32_t prev_off = hdr_prev(hdr);

        assert(pfn && pfn < pool->next_pfn && (h & OFFSET_MASK));
        assert(*page_state(pool, pfn) == PG_OBJECTS && !(hdr & HDR_FREE));
        pool->st.objects--;
        pool->st.block_bytes -= size;

        if (end < XV_PAGE_SIZE) {
                uint32_t *next = (uint32_t *)(page + end);
                if (next[0] & HDR_FREE) {
                        list_remove(pool, next);
                        end += hdr_size(next[0]);
                }
        }
        if (hdr & HDR_PREVFREE) {
                blk = (uint32_t *)(page + prev_off);
                list_remove(pool, blk);
                start = prev_off;
                prev_off = hdr_prev(blk[0]);
        }
        if (end - start == XV_PAGE_SIZE) {
                put_page(pool, pfn);
                return;
        }
        blk[0] = mkhdr(end - start, prev_off, HDR_FREE);
        list_insert(pool, blk, mkref(pfn, start));
        if (end < XV_PAGE_SIZE) {
                uint32_t *next = (uint32_t *)(page + end);
                next[0] = mkhdr(hdr_size(next[0]), start, HDR_PREVFREE);
        }
}

int xv_page_alloc(struct xv_pool *pool, xv_handle *out)
{
        uint32_t pfn;
        int r;

        *out = 0;
        r = get_page(pool, PG_WHOLE, &pfn);
        if (r < 0)
                return r;
        pool->st.whole_pages++;
        pool->st.objects++;
        pool->st.block_bytes += XV_PAGE_SIZE;
        *out = mkref(pfn, 0);
        return 0;
}

void xv_page_free(struct xv_pool *pool, xv_handle h)
{
        assert(!(h & OFFSET_MASK) && (h >> XV_HANDLE_OFFSET_BITS) < pool->next_pfn);
        assert(*page_state(pool, h >> XV_HANDLE_OFFSET_BITS) == PG_WHOLE);
        pool->st.whole_pages--;
        pool->st.objects--;
        pool->st.block_bytes -= XV_PAGE_SIZE;
        put_page(pool, h >> XV_HANDLE_OFFSET_BITS);
}

void *xv_map(const struct xv_pool *pool, xv_handle h)
{
        uint32_t pfn = h >> XV_HANDLE_OFFSET_BITS;
        uint8_t *base =
            __atomic_load_n(&pool->arena[pfn >> ARENA_SHIFT], __ATOMIC_ACQUIRE);

        return base + ((size_t)(pfn & (ARENA_PAGES - 1)) << PAGE_SHIFT) +
               ((h & OFFSET_MASK) << 2);
}

size_t xv_pool_prefault_claim(struct xv_pool *pool, void **addr)
{
        uint32_t pfn = pool->populated_pfn;

        *addr = NULL;
        /* Only when the next page will be carved (no free page is left to reuse),
         * half a step ahead, and only in mapped arenas (carving maps them).
         * populated_pfn is a step boundary here, so a claim stays in its arena. */
        if (pool->nfaulted || pool->nreleased || pool->grow_refused ||
            pool->refill_mode || pfn >= pool->next_pfn + POPULATE_PAGES / 2 ||
            pfn < pool->next_pfn || (pfn >> ARENA_SHIFT) >= pool->narenas)
                return 0;
        pool->populated_pfn = pfn + POPULATE_PAGES;
        *addr = page_addr(pool, pfn);
        return POPULATE_PAGES * XV_PAGE_SIZE;
}

void xv_pool_set_may_grow(struct xv_pool *pool, xv_may_grow_fn fn, void *ctx)
{
        pool->may_grow = fn;
        pool->may_grow_ctx = ctx;
        pool->grow_budget = 0;
        pool->grow_refused = false;
}

void xv_pool_set_refill(struct xv_pool *pool, bool on)
{
        pool->refill_mode = on;
        /* Off again: the stock beyond the sync cache goes back to the OS. */
        while (pool->nfaulted > keep_limit(pool))
                release_page(pool, pool->faulted[--pool->nfaulted]);
        pool->st.reserve_pages = pool->nfaulted;
}

uint64_t xv_pool_stock_deficit(const struct xv_pool *pool)
{
        uint64_t have = (uint64_t)pool->nfaulted + pool->nclaimed, want;

        if (!pool->refill_mode)
                return 0;
        want = keep_limit(pool);
        return have < want ? want - have : 0;
}

bool xv_pool_stock_low(const struct xv_pool *pool)
{
        /* Refill once a quarter of the stock is gone (or the one page the smallest
         * stocks can lose), so the stock is topped up long before it runs dry. */
        uint64_t target = keep_limit(pool);

        return pool->refill_mode && xv_pool_stock_deficit(pool) > target / 4;
}

/* Claim up to want free pages for the stock: released pages first, then new ones
 * from the current arena. They become PG_CLAIMED. Under the lock. */
static uint32_t refill_claim(struct xv_pool *pool, uint32_t *pfn, uint32_t want)
{
        uint32_t n = 0;

        while (n < want && pool->nreleased)
                pfn[n++] = pool->released[--pool->nreleased];
        while (n < want && pool->next_pfn <= XV_MAX_PAGES &&
               (pool->next_pfn >> ARENA_SHIFT) < pool->narenas)
                pfn[n++] = pool->next_pfn++;
        for (uint32_t i = 0; i < n; i++)
                *page_state(pool, pfn[i]) = PG_CLAIMED;
        pool->nclaimed = n;
        return n;
}

/* Fault in the claimed pages; no lock needed (nobody else touches them). Runs of
 * consecutive pages take one madvise; a write does it where madvise cannot (kernels
 * before 5.14). */
static void refill_fault(const struct xv_pool *pool, const uint32_t *pfn, uint32_t n)
{
        for (uint32_t i = 0, run; i < n; i += run) {
                uint8_t *addr = page_addr(pool, pfn[i]);

                for (run = 1; i + run < n && pfn[i + run] == pfn[i] + run; run++)
                        ;
                if (madvise(addr, (size_t)run * XV_PAGE_SIZE, MADV_POPULATE_WRITE) == 0)
                        continue;
                for (uint32_t k = 0; k < run; k++)
                        *(volatile uint8_t *)(addr + (size_t)k * XV_PAGE_SIZE) = 0;
        }
}

/* Put the faulted pages on the stock, lowest address on top; any the stock no
 * longer wants (data freed meanwhile) go back to the OS. Under the lock. */
static void refill_publish(struct xv_pool *pool, const uint32_t *pfn, uint32_t n)
{
        uint64_t limit = keep_limit(pool);

        for (uint32_t i = n; i-- > 0;) {
                if (pool->nfaulted < limit) {
                        *page_state(pool, pfn[i]) = PG_FAULTED;
                        pool->faulted[pool->nfaulted++] = pfn[i];
                        pool->st.refilled++;
                } else {
                        release_page(pool, pfn[i]);
                }
        }
        pool->nclaimed = 0;
        pool->st.reserve_pages = pool->nfaulted;
}

/* Map the next arena with lock dropped, when the released pages cannot cover want
 * and carving has reached the end of the mapped arenas. Under the lock. */
static int refill_arena(struct xv_pool *pool, pthread_mutex_t *lock, uint64_t want)
{
        struct arena_prep p;
        uint32_t a = pool->narenas;
        int r;

        if (pool->nreleased >= want || pool->next_pfn > XV_MAX_PAGES ||
            (pool->next_pfn >> ARENA_SHIFT) < a)
                return 0;
        pthread_mutex_unlock(lock);
        r = arena_prepare(a, &p);
        pthread_mutex_lock(lock);
        if (r == 0 && pool->narenas == a)
                arena_commit(pool, &p);
        pthread_mutex_unlock(lock);
        arena_discard(&p); /* free() and munmap() outside the lock too */
        pthread_mutex_lock(lock);
        return r;
}

int xv_pool_refill(struct xv_pool *pool, pthread_mutex_t *lock)
{
        uint32_t pfn[REFILL_BATCH], n;
        uint64_t want = xv_pool_stock_deficit(pool);
        bool ok = true;
        int r;

        if (want == 0 || pool->refilling)
                return 0;
        want = want < REFILL_BATCH ? want : REFILL_BATCH;
        pool->refilling = true;
        if (pool->may_grow) {
                xv_may_grow_fn fn = pool->may_grow;
                void *ctx = pool->may_grow_ctx;

                pthread_mutex_unlock(lock); /* it reads files: not under the lock */
                ok = fn(ctx, want);
                /* Under pressure a whole batch rarely fits above the watermarks,
                 * while a few pages at a time keep swap moving. */
                if (!ok && want > GROW_CHECK_PAGES) {
                        want = GROW_CHECK_PAGES;
                        ok = fn(ctx, want);
                }
                pthread_mutex_lock(lock);
                /* Data freed meanwhile may have filled the stock. */
                want = ok && xv_pool_stock_deficit(pool) < want
                           ? xv_pool_stock_deficit(pool)
                           : want;
        }
        r = !ok ? -EAGAIN : want ? refill_arena(pool, lock, want) : 0;
        if (r == -EAGAIN)
                pool->st.lowmem_refused++;
        n = r == 0 ? refill_claim(pool, pfn, (uint32_t)want) : 0;
        if (n) {
                pthread_mutex_unlock(lock);
                refill_fault(pool, pfn, n);
                pthread_mutex_lock(lock);
                refill_publish(pool, pfn, n);
        }
        pool->refilling = false;
        if (r == 0 && n == 0 && want)
                r = -ENOSPC; /* every page a handle can name is carved */
        return r < 0 ? r : (int)n;
}

void xv_prefault(void *addr, size_t len)
{
        /* Best effort: a page that did not populate faults in on first touch, as it
         * would without this. */
        (void)madvise(addr, len, MADV_POPULATE_WRITE);
}

void xv_pool_get_stats(const struct xv_pool *pool, struct xv_pool_stats *out)
{
        *out = pool->st;
        out->stock_target = pool->refill_mode ? keep_limit(pool) : 0;
}

/* ---- consistency check ---- */

struct walk {
        uint64_t objects;     /* allocated blocks in object pages */
        uint64_t block_bytes; /* their bytes */
        uint64_t free_blocks; /* free blocks in object pages */
};

/* Walk one object page block by block; returns the violations found. */
static unsigned check_page(const struct xv_pool *pool, uint32_t pfn, struct walk *w)
{
        const uint8_t *page = page_addr(pool, pfn);
        uint32_t off = 0, prev_off = 0, used = 0;
        bool prev_free = false;
        unsigned bad = 0;

        while (off < XV_PAGE_SIZE) {
                uint32_t hdr = *(const uint32_t *)(page + off);
                uint32_t size = hdr_size(hdr);
                bool is_free = hdr & HDR_FREE;

                if (size < XV_MIN_BLOCK || size > XV_PAGE_SIZE - off)
                        return bad + 1; /* the tiling is broken: stop walking */
                if (hdr_prev(hdr) != prev_off)
                        bad++;
                if (!!(hdr & HDR_PREVFREE) != prev_free)
                        bad++;
                if (is_free && prev_free)
                        bad++;
                if (is_free) {
                        w->free_blocks++;
                } else {
                        used++;
                        w->objects++;
                        w->block_bytes += size;
                }
                prev_free = is_free;
                prev_off = off;
                off += size;
        }
        if (!used) /* an empty object page should have left the lists */
                bad++;
        return bad;
}

/* Walk free list i; returns the violations found and counts its blocks. */
static unsigned check_list(const struct xv_pool *pool, unsigned i, uint64_t limit,
                           uint64_t *listed)
{
        uint32_t ref = pool->head[i], prev = 0;
        unsigned bad = 0;

        for (; ref; prev = ref, ref = ref_block(pool, ref)[1]) {
                uint32_t pfn = ref >> XV_HANDLE_OFFSET_BITS, off = (ref & OFFSET_MASK)
                                                                   << 2;
                const uint32_t *blk;

                if (!pfn || pfn >= pool->next_pfn || off >= XV_PAGE_SIZE ||
                    *page_state(pool, pfn) != PG_OBJECTS || ++*listed > limit)
                        return bad + 1; /* a wild reference or a cycle: stop */
                blk = ref_block(pool, ref);
                if (!(blk[0] & HDR_FREE) || list_index(hdr_size(blk[0])) != i)
                        bad++;
                if (blk[2] != prev)
                        bad++;
        }
        return bad;
}

unsigned xv_pool_check(const struct xv_pool *pool)
{
        uint64_t nstate[PG_CLAIMED + 1] = {0}, listed = 0;
        struct walk w = {0};
        uint8_t *seen;
        unsigned bad = 0;

        if (pool->narenas && *page_state(pool, 0) != PG_UNUSED)
                bad++;
        for (uint32_t pfn = 1; pfn < pool->next_pfn; pfn++) {
                uint8_t s = *page_state(pool, pfn);

                if (s == PG_UNUSED || s > PG_CLAIMED) {
                        bad++;
                        continue;
                }
                nstate[s]++;
                if (s == PG_OBJECTS)
                        bad += check_page(pool, pfn, &w);
        }
        if (pool->populated_pfn > (uint64_t)pool->narenas * ARENA_PAGES)
                bad++;
        for (uint64_t pfn = pool->next_pfn; pfn < (uint64_t)pool->narenas * ARENA_PAGES;
             pfn++)
                if (*page_state(pool, (uint32_t)pfn) != PG_UNUSED)
                        bad++;

        /* Free-page stacks: right states, no duplicates, every free page on one. */
        if (pool->nfaulted != nstate[PG_FAULTED] || pool->nfaulted > keep_limit(pool))
                bad++;
        if (pool->nreleased != nstate[PG_RELEASED] ||
            pool->nclaimed != nstate[PG_CLAIMED])
                bad++;
        seen = calloc(pool->next_pfn, 1);
        if (!seen)
                return bad + 1;
        for (uint32_t k = 0; k < pool->nfaulted + pool->nreleased; k++) {
                bool faulted = k < pool->nfaulted;
                uint32_t pfn =
                    faulted ? pool->faulted[k] : pool->released[k - pool->nfaulted];

                if (!pfn || pfn >= pool->next_pfn || seen[pfn] ||
                    *page_state(pool, pfn) != (faulted ? PG_FAULTED : PG_RELEASED))
                        bad++;
                else
                        seen[pfn] = 1;
        }
        free(seen);

        /* Lists and bitmaps. */
        for (unsigned i = 0; i < NLISTS; i++) {
                bool bit = pool->l2[i / 64] >> (i % 64) & 1;

                if (bit != (pool->head[i] != 0))
                        bad++;
                bad += check_list(pool, i, w.free_blocks, &listed);
        }
        for (unsigned k = 0; k < 64; k++) {
                bool bit = pool->l1 >> k & 1;

                if (bit != (k < NWORDS && pool->l2[k] != 0))
                        bad++;
        }
        if (listed != w.free_blocks)
                bad++;

        /* Counters. */
        if (pool->st.pages != nstate[PG_OBJECTS] + nstate[PG_WHOLE] ||
            pool->st.pages > pool->max_pages)
                bad++;
        if (pool->st.whole_pages != nstate[PG_WHOLE])
                bad++;
        if (pool->st.objects != w.objects + nstate[PG_WHOLE])
                bad++;
        if (pool->st.block_bytes != w.block_bytes + nstate[PG_WHOLE] * XV_PAGE_SIZE)
                bad++;
        if (pool->st.reserve_pages != pool->nfaulted)
                bad++;
        return bad;
}
