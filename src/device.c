/* ramzswap: the compressed page device. See include/ramzswap/device.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Lock order: slot lock (table stripe) -> pool_lock. A workspace lock is taken with
 * neither held and released before the pool lock is taken, so it never nests with
 * them. (De)compression runs outside pool_lock; decompression runs under the slot
 * lock only, which keeps the object alive while it is read.
 *
 * Object layout: a compressed object is the slot index (u32, host order) followed by
 * the LZO stream, so a later compactor can find the owner of any object it moves.
 * A raw object is a whole pool page holding the page as is.
 *
 * Backing store: slot i's page lives at byte i * 4096 of the store, a fixed place,
 * so a write there cannot put the new page beside the old one as the pool does.
 * Instead every access to a slot's backing page -- the pwrite of a write, the pread
 * of a read, the discard when the slot is trimmed or moves to the pool -- happens
 * with that slot's lock held. A reader therefore sees the entry and the page either
 * before a writer took the lock (old entry, old bytes untouched) or after it let go
 * (new entry, all new bytes), never a half-written page. The write order stays "new
 * first, then swap, then free old" wherever the old page is elsewhere: pool -> store
 * writes the store page, then swaps the entry, both under the lock, and frees the
 * pool object after it; store -> pool builds the pool object first, then swaps and
 * discards the store page under the lock. Only store -> store overwrites in place:
 * if that pwrite fails, the page may be half old, half new, so the entry becomes
 * BACKING | LOST and reads fail with -EIO (never mixed data) until the slot is
 * written or trimmed; a failed store write over any other entry keeps that entry.
 * pwrite under a stripe lock delays only the slots sharing that stripe.
 *
 * Counters: cumulative ones are bumped after the fact; the gauges (zero_pages,
 * same_pages, good/no_compress, pages_stored, compr_data_size, backing_pages, where
 * a lost store page still counts) change only with the slot lock held, so the +1
 * of a slot's new contents always lands before the -1 of its replacement and no
 * snapshot sees a gauge wrap below zero. pages_used, pool_block_bytes and
 * mem_used_max are copied from the pool under pool_lock after every pool call, so
 * reading them takes no lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ramzswap/backing.h"
#include "ramzswap/codec.h"
#include "ramzswap/device.h"
#include "ramzswap/lowmem.h"
#include "ramzswap/monotonic.h"
#include "ramzswap/swaphdr.h"
#include "ramzswap/table.h"
#include "ramzswap/xvmalloc.h"

/* Tunables. */
#define DEFAULT_WORKSPACES 16u          /* nbdkit runs 16 threads per connection (-t) */
#define MAX_WORKSPACES     4096u        /* a sanity cap on cfg->workspaces */
#define REFILL_RETRY_MS    100u         /* refill thread: pause after may_grow said no */
#define STOCK_WAIT_MS      100u         /* a write's longest wait for a refill */
#define REFILL_STACK       (256u << 10) /* its stack: stack buffers of ~5 KiB */

/* Derived constants; do not edit. */
#define PAGE            RZS_PAGE_SIZE
#define OBJ_HEADER      sizeof(uint32_t) /* the slot index before the data */
#define MAX_COMPRESSED  (PAGE / 4 * 3)   /* larger is stored raw */
#define MAX_BACKING_CMP (PAGE / 2)       /* with a store, larger goes there */
#define GOOD_COMPRESSED (PAGE / 2)       /* good_compress threshold */
#define CACHELINE       64u

_Static_assert(RZS_PAGE_SIZE == XV_PAGE_SIZE, "device and pool pages must agree");
_Static_assert(RZS_PAGE_SIZE == RZS_CODEC_PAGE, "device and codec pages must agree");
_Static_assert(RZS_PAGE_SIZE == RZS_SWAPHDR_PAGE, "the header is one device page");
_Static_assert(RZS_PAGE_SIZE == RZS_BACKING_PAGE, "device and store pages must agree");
_Static_assert(MAX_BACKING_CMP <= MAX_COMPRESSED, "the store takes only big pages");
_Static_assert(MAX_COMPRESSED + OBJ_HEADER <= XV_MAX_ALLOC, "objects must fit the pool");
_Static_assert(MAX_COMPRESSED <= RZS_ENTRY_MAX_SIZE, "sizes must fit an entry");

enum counter_id {
        C_NUM_READS,
        C_NUM_WRITES,
        C_FAILED_READS,
        C_FAILED_WRITES,
        C_INVALID_IO,
        C_PAGES_DISCARD,
        C_ZERO_PAGES,
        C_SAME_PAGES,
        C_GOOD_COMPRESS,
        C_NO_COMPRESS,
        C_PAGES_STORED,
        C_COMPR_DATA_SIZE,
        C_PAGES_USED,     /* copied from the pool */
        C_PAGES_USED_MAX, /* highest C_PAGES_USED */
        C_BLOCK_BYTES,    /* copied from the pool */
        C_POOL_STOCK,     /* copied from the pool: faulted free pages */
        C_STOCK_EMPTY,    /* copied from the pool */
        C_BACKING_PAGES,
        C_BDEV_READS,
        C_BDEV_WRITES,
        C_COUNT
};

/* One counter per cache line: threads bumping different counters do not share
 * lines. */
struct counter {
        _Atomic uint64_t v;
} __attribute__((aligned(CACHELINE)));

/* Scratch for one compression at a time: LZO's dictionary and the output buffer. */
struct workspace {
        pthread_mutex_t lock;
        void *wrkmem;
        unsigned char *out;
} __attribute__((aligned(CACHELINE)));

struct rzs_device {
        uint64_t size;  /* bytes, a multiple of PAGE */
        uint64_t pages; /* size / PAGE */
        uint64_t memlimit;
        const struct rzs_codec *codec;
        struct rzs_table *table;
        struct rzs_backing *backing; /* NULL without a backing store */
        uint32_t max_compressed;     /* larger compressed pages are raw or go to
                                      * the backing store */

        pthread_mutex_t pool_lock;
        struct xv_pool *pool;
        struct rzs_lowmem *lowmem; /* the pool's may_grow hook; NULL = none */

        /* The refill thread (rzs_device_start_refill). Guarded by pool_lock. */
        pthread_t refill_thread;
        pthread_cond_t refill_cv; /* wakes the thread; waits use pool_lock */
        bool refill_running;
        bool refill_stop;
        bool refill_waiting;     /* the thread waits for the stock to run low */
        bool refill_refused;     /* its last attempt was refused: memory is short */
        pthread_cond_t stock_cv; /* I/O threads wait here for a refill; pool_lock */

        struct workspace *ws;
        unsigned nws;
        void *ws_map; /* one mapping holding every workspace's buffers */
        size_t ws_map_len;

        /* Guarded by slot 0's lock: slot 0 still shows header[] (until first
         * written, trimmed or zeroed). */
        bool header_live;
        unsigned char header[PAGE];

        struct counter c[C_COUNT];
};

static void count(struct rzs_device *dev, enum counter_id id, int64_t delta)
{
        atomic_fetch_add_explicit(&dev->c[id].v, (uint64_t)delta, memory_order_relaxed);
}

static uint64_t counter(const struct rzs_device *dev, enum counter_id id)
{
        return atomic_load_explicit(&dev->c[id].v, memory_order_relaxed);
}

static uint32_t load_u32(const void *p)
{
        uint32_t v;

        memcpy(&v, p, sizeof(v));
        return v;
}

/* ---- pool access: every call under pool_lock, stats copied out after it ---- */

/* Caller holds pool_lock. */
static void pool_stats_refresh(struct rzs_device *dev)
{
        struct xv_pool_stats s;

        xv_pool_get_stats(dev->pool, &s);
        atomic_store_explicit(&dev->c[C_PAGES_USED].v, s.pages, memory_order_relaxed);
        atomic_store_explicit(&dev->c[C_BLOCK_BYTES].v, s.block_bytes,
                              memory_order_relaxed);
        atomic_store_explicit(&dev->c[C_POOL_STOCK].v, s.reserve_pages,
                              memory_order_relaxed);
        atomic_store_explicit(&dev->c[C_STOCK_EMPTY].v, s.stock_empty,
                              memory_order_relaxed);
        if (s.pages > counter(dev, C_PAGES_USED_MAX))
                atomic_store_explicit(&dev->c[C_PAGES_USED_MAX].v, s.pages,
                                      memory_order_relaxed);
}

/* One allocation attempt; wakes the refill thread when the stock runs low.
 * Caller holds pool_lock. */
static int pool_take(struct rzs_device *dev, bool raw, uint32_t size, xv_handle *h)
{
        int r = raw ? xv_page_alloc(dev->pool, h) : xv_malloc(dev->pool, size, h);

        /* No syscall unless the thread sleeps, and then one: it clears the flag. */
        if (dev->refill_waiting && xv_pool_stock_low(dev->pool)) {
                dev->refill_waiting = false;
                pthread_cond_signal(&dev->refill_cv);
        }
        return r;
}

/* The stock ran dry under a burst of writes. Wait for the refill thread (and say
 * whether it waited), but only while its last word was yes (memory is
 * comfortable, so its faults are quick), and never longer than STOCK_WAIT_MS: if
 * it is stuck in reclaim after all, the write fails with ENOSPC rather than wait
 * with it. Caller holds pool_lock. */
static bool stock_wait(struct rzs_device *dev)
{
        if (!dev->refill_running || dev->refill_refused)
                return false;
        rzs_cond_wait_ms(&dev->stock_cv, &dev->pool_lock, STOCK_WAIT_MS);
        return true;
}

/* Allocate a pool object of size bytes, or a whole page when raw. Returns 0 or
 * -ENOSPC: the device refuses rather than waits for memory, whether the limit, the
 * OS or an empty stock (after at most one bounded wait) said no. */
static int pool_alloc(struct rzs_device *dev, bool raw, uint32_t size, xv_handle *h)
{
        size_t prefault;
        void *addr;
        int r;

        pthread_mutex_lock(&dev->pool_lock);
        r = pool_take(dev, raw, size, h);
        if (r == -EAGAIN && stock_wait(dev))
                r = pool_take(dev, raw, size, h);
        prefault = xv_pool_prefault_claim(dev->pool, &addr);
        pool_stats_refresh(dev);
        pthread_mutex_unlock(&dev->pool_lock);
        /* New pool memory faults in here, ahead of use and outside pool_lock. */
        if (prefault)
                xv_prefault(addr, prefault);
        return r < 0 ? -ENOSPC : 0;
}

/* Free the object an entry owned, if any. Takes pool_lock; call with no slot lock
 * held (the entry is already unpublished). */
static void pool_release(struct rzs_device *dev, rzs_entry e)
{
        if (!rzs_entry_has_object(e))
                return;
        pthread_mutex_lock(&dev->pool_lock);
        if (rzs_entry_is_raw(e))
                xv_page_free(dev->pool, rzs_entry_handle(e));
        else
                xv_free(dev->pool, rzs_entry_handle(e));
        pool_stats_refresh(dev);
        pthread_mutex_unlock(&dev->pool_lock);
}

/* ---- workspaces ---- */

/* Pick a free workspace, trying the one this thread hashes to first so a thread
 * tends to reuse its own (warm) buffers; block only when all are busy. */
static struct workspace *ws_get(struct rzs_device *dev)
{
        uint64_t self = (uint64_t)(uintptr_t)pthread_self();
        unsigned hint =
            (unsigned)((self * UINT64_C(0x9e3779b97f4a7c15)) >> 32) % dev->nws;

        for (unsigned i = 0; i < dev->nws; i++) {
                struct workspace *w = &dev->ws[(hint + i) % dev->nws];

                if (pthread_mutex_trylock(&w->lock) == 0)
                        return w;
        }
        pthread_mutex_lock(&dev->ws[hint].lock);
        return &dev->ws[hint];
}

static void ws_put(struct workspace *w)
{
        pthread_mutex_unlock(&w->lock);
}

static int ws_create(struct rzs_device *dev, unsigned n)
{
        size_t wrk =
            (dev->codec->workspace_size + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
        size_t out = (dev->codec->max_out + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
        unsigned char *p;

        if (posix_memalign((void **)&dev->ws, CACHELINE, n * sizeof(*dev->ws)) != 0)
                return -ENOMEM;
        dev->ws_map_len = n * (wrk + out);
        /* Populated now: a swap server must not fault memory in on its I/O path. */
        p = mmap(NULL, dev->ws_map_len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) {
                free(dev->ws);
                dev->ws = NULL;
                return -ENOMEM;
        }
        dev->ws_map = p;
        for (unsigned i = 0; i < n; i++) {
                pthread_mutex_init(&dev->ws[i].lock, NULL);
                dev->ws[i].wrkmem = p + i * (wrk + out);
                dev->ws[i].out = p + i * (wrk + out) + wrk;
        }
        dev->nws = n;
        return 0;
}

static void ws_destroy(struct rzs_device *dev)
{
        if (dev->ws == NULL)
                return;
        for (unsigned i = 0; i < dev->nws; i++)
                pthread_mutex_destroy(&dev->ws[i].lock);
        munmap(dev->ws_map, dev->ws_map_len);
        free(dev->ws);
}

/* ---- refill thread ----
 * With the thread running, the pool is in refill mode: I/O threads never fault
 * pool memory in (see include/ramzswap/xvmalloc.h); this thread does, so if a fault
 * enters direct reclaim, only this thread waits in it. */

/* Wait on refill_cv until woken or for ms milliseconds (0: no bound). Caller holds
 * pool_lock. */
static void refill_wait(struct rzs_device *dev, unsigned ms)
{
        if (ms == 0)
                pthread_cond_wait(&dev->refill_cv, &dev->pool_lock);
        else
                rzs_cond_wait_ms(&dev->refill_cv, &dev->pool_lock, ms);
}

static void *refill_main(void *arg)
{
        struct rzs_device *dev = arg;

        pthread_mutex_lock(&dev->pool_lock);
        while (!dev->refill_stop) {
                int r = xv_pool_refill(dev->pool, &dev->pool_lock);

                pool_stats_refresh(dev);
                /* Either way, I/O threads waiting for the stock have their answer. */
                dev->refill_refused = r < 0;
                pthread_cond_broadcast(&dev->stock_cv);
                if (r > 0)
                        continue;
                if (r < 0) {
                        /* Memory is short (or the pool is full): look again later,
                         * not at every I/O thread's wake-up. */
                        refill_wait(dev, REFILL_RETRY_MS);
                        continue;
                }
                dev->refill_waiting = !xv_pool_stock_low(dev->pool);
                while (dev->refill_waiting && !dev->refill_stop)
                        refill_wait(dev, 0);
        }
        pthread_mutex_unlock(&dev->pool_lock);
        return NULL;
}

/* Start the thread with every signal blocked (they belong to the host program's
 * threads) and a small stack (mlockall(MCL_FUTURE) charges all of it). */
static int refill_spawn(struct rzs_device *dev)
{
        sigset_t all, old;
        pthread_attr_t attr;
        int r;

        r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        (void)pthread_attr_setstacksize(&attr, REFILL_STACK);
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&dev->refill_thread, &attr, refill_main, dev);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        return -r;
}

int rzs_device_start_refill(struct rzs_device *dev)
{
        int r;

        pthread_mutex_lock(&dev->pool_lock);
        if (dev->refill_running) {
                pthread_mutex_unlock(&dev->pool_lock);
                return 0;
        }
        xv_pool_set_refill(dev->pool, true);
        /* The first stock is faulted in here, at start, as the reserve was. */
        while ((r = xv_pool_refill(dev->pool, &dev->pool_lock)) > 0)
                ;
        dev->refill_refused = r < 0;
        pool_stats_refresh(dev);
        dev->refill_stop = false;
        r = refill_spawn(dev);
        dev->refill_running = r == 0;
        if (r < 0)
                xv_pool_set_refill(dev->pool, false);
        pthread_mutex_unlock(&dev->pool_lock);
        return r;
}

/* Stop and join the thread, if running; the pool stays in refill mode. */
static void refill_stop(struct rzs_device *dev)
{
        pthread_mutex_lock(&dev->pool_lock);
        if (!dev->refill_running) {
                pthread_mutex_unlock(&dev->pool_lock);
                return;
        }
        dev->refill_stop = true;
        pthread_cond_broadcast(&dev->refill_cv);
        pthread_mutex_unlock(&dev->pool_lock);
        pthread_join(dev->refill_thread, NULL);
        dev->refill_running = false;
}

void rzs_device_get_refill_stats(struct rzs_device *dev, struct rzs_refill_stats *out)
{
        struct xv_pool_stats ps;

        pthread_mutex_lock(&dev->pool_lock);
        xv_pool_get_stats(dev->pool, &ps);
        *out = (struct rzs_refill_stats){
            .running = dev->refill_running,
            .stock_pages = ps.reserve_pages,
            .stock_target = ps.stock_target,
            .refilled = ps.refilled,
            .stock_empty = ps.stock_empty,
            .lowmem_refused = ps.lowmem_refused,
        };
        pthread_mutex_unlock(&dev->pool_lock);
}

/* ---- create / destroy ---- */

/* Explain a failure into msg (may be NULL), printf-style. */
__attribute__((format(printf, 3, 4))) static void explain(char *msg, size_t msglen,
                                                          const char *fmt, ...)
{
        va_list ap;

        if (msg == NULL || msglen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, msglen, fmt, ap);
        va_end(ap);
}

_Static_assert(RZS_POOL_MAX_PAGES == XV_MAX_PAGES, "the pool's limit, as published");

/* Refuse a memlimit or reserve the pool cannot address rather than cap it quietly:
 * MemLimit must report the limit in force. */
static int check_pool_max(const char *what, uint64_t bytes, char *msg, size_t msglen)
{
        if (bytes / PAGE <= XV_MAX_PAGES)
                return 0;
        explain(msg, msglen,
                "%s (%" PRIu64 " bytes) is more than the pool can address (%" PRIu64
                " bytes, 2^22-1 pages of 4 KiB)",
                what, bytes, XV_MAX_PAGES * PAGE);
        return -EINVAL;
}

/* Check cfg for a device of size bytes (backing_size: the store's, 0 without one). */
static int check_config(const struct rzs_config *cfg, uint64_t size,
                        uint64_t backing_size, char *msg, size_t msglen)
{
        if (size == 0 || size / PAGE - 1 > UINT32_MAX) {
                /* the object header holds a 32-bit slot index */
                explain(msg, msglen,
                        "disksize (%" PRIu64 " bytes) must be 1 to 2^32 pages",
                        cfg->disksize);
                return -EINVAL;
        }
        if (backing_size != 0 && size > backing_size) {
                explain(msg, msglen,
                        "disksize (%" PRIu64
                        " bytes) is larger than the backing store %s "
                        "(%" PRIu64 " bytes)",
                        size, cfg->backing, backing_size);
                return -EINVAL;
        }
        if (cfg->memlimit != 0 && (cfg->memlimit < PAGE || cfg->memlimit > size)) {
                explain(msg, msglen,
                        "memlimit (%" PRIu64 " bytes) must be from one page to disksize "
                        "(%" PRIu64 " bytes)",
                        cfg->memlimit, size);
                return -EINVAL;
        }
        if (check_pool_max("memlimit", cfg->memlimit, msg, msglen) < 0 ||
            check_pool_max("reserve", cfg->reserve, msg, msglen) < 0)
                return -EINVAL;
        if (cfg->memlimit != 0 && cfg->reserve > cfg->memlimit) {
                explain(msg, msglen,
                        "reserve (%" PRIu64 " bytes) is larger than memlimit (%" PRIu64
                        " bytes)",
                        cfg->reserve, cfg->memlimit);
                return -EINVAL;
        }
        if (cfg->workspaces > MAX_WORKSPACES) {
                explain(msg, msglen, "workspaces (%u) is more than %u", cfg->workspaces,
                        MAX_WORKSPACES);
                return -EINVAL;
        }
        return 0;
}

int rzs_device_create(const struct rzs_config *cfg, struct rzs_device **out)
{
        return rzs_device_create_msg(cfg, out, NULL, 0);
}

/* Open and check the store named in cfg, before anything is written anywhere. */
static int open_backing(const struct rzs_config *cfg, struct rzs_backing **b, char *msg,
                        size_t msglen)
{
        char why[256];
        int r;

        *b = NULL;
        if (cfg->backing == NULL)
                return 0;
        r = rzs_backing_open(cfg->backing, cfg->backing_force, b, why, sizeof(why));
        if (r < 0)
                explain(msg, msglen, "backing store %s %s", cfg->backing, why);
        return r;
}

/* Give the pool its may_grow hook (see include/ramzswap/lowmem.h) unless cfg->lowmem
 * is RZS_LOWMEM_OFF. Without explicit paths a missing /proc leaves it off; an
 * explicit path must open. */
static int lowmem_setup(struct rzs_device *dev, const struct rzs_config *cfg, char *msg,
                        size_t msglen)
{
        const struct rzs_lowmem_config lc = {
            .meminfo = cfg->meminfo,
            .zoneinfo = cfg->zoneinfo,
            .min_available = cfg->lowmem,
        };
        int r;

        if (cfg->lowmem == RZS_LOWMEM_OFF)
                return 0;
        r = rzs_lowmem_open(&lc, &dev->lowmem);
        if (r < 0) {
                if (cfg->meminfo == NULL && cfg->zoneinfo == NULL && r != -ENOMEM)
                        return 0;
                explain(msg, msglen, "cannot open %s: %s",
                        cfg->meminfo ? cfg->meminfo : cfg->zoneinfo, strerror(-r));
                return r;
        }
        xv_pool_set_may_grow(dev->pool, rzs_lowmem_may_grow, dev->lowmem);
        return 0;
}

int rzs_device_create_msg(const struct rzs_config *cfg, struct rzs_device **out,
                          char *msg, size_t msglen)
{
        uint64_t size = cfg->disksize / PAGE * PAGE;
        uint64_t max_pages = cfg->memlimit / PAGE;
        uint64_t backing_size = 0;
        struct rzs_backing *backing;
        uint8_t uuid[16];
        struct rzs_device *dev;
        int r;

        *out = NULL;
        explain(msg, msglen, "%s", "");
        r = open_backing(cfg, &backing, msg, msglen);
        if (r < 0)
                return r;
        if (backing != NULL) {
                backing_size = rzs_backing_size(backing);
                if (size == 0)
                        size = backing_size;
        }
        r = check_config(cfg, size, backing_size, msg, msglen);
        if (r < 0) {
                rzs_backing_close(backing);
                return r;
        }
        dev = aligned_alloc(CACHELINE,
                            (sizeof(*dev) + CACHELINE - 1) / CACHELINE * CACHELINE);
        if (dev == NULL) {
                rzs_backing_close(backing);
                explain(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        memset(dev, 0, sizeof(*dev));
        dev->size = size;
        dev->pages = size / PAGE;
        dev->memlimit = cfg->memlimit;
        dev->backing = backing;
        dev->max_compressed = backing != NULL ? MAX_BACKING_CMP : MAX_COMPRESSED;
        pthread_mutex_init(&dev->pool_lock, NULL);
        rzs_cond_init_monotonic(&dev->refill_cv);
        rzs_cond_init_monotonic(&dev->stock_cv);

        r = rzs_codec_find(cfg->compressor, &dev->codec);
        if (r < 0) {
                r = r == -ENOENT ? -EINVAL : r;
                explain(msg, msglen, "unknown compressor %s", cfg->compressor);
                goto err;
        }
        r = rzs_swaphdr_random_uuid(uuid);
        if (r < 0) {
                explain(msg, msglen, "no random UUID for the swap header: %s",
                        strerror(-r));
                goto err;
        }
        rzs_swaphdr_build(dev->header, dev->pages, uuid);
        dev->header_live = true;

        r = rzs_table_create(dev->pages, 0, &dev->table);
        if (r < 0)
                goto err;
        r = xv_pool_create(max_pages, cfg->reserve / PAGE, &dev->pool);
        if (r < 0)
                goto err;
        r = lowmem_setup(dev, cfg, msg, msglen);
        if (r < 0)
                goto err;
        r = ws_create(dev, cfg->workspaces ? cfg->workspaces : DEFAULT_WORKSPACES);
        if (r < 0)
                goto err;
        *out = dev;
        return 0;

err:
        if (msg != NULL && msglen > 0 && msg[0] == '\0')
                explain(msg, msglen, "cannot build the device: %s", strerror(-r));
        rzs_device_destroy(dev);
        return r;
}

void rzs_device_destroy(struct rzs_device *dev)
{
        if (dev == NULL)
                return;
        refill_stop(dev);
        ws_destroy(dev);
        xv_pool_destroy(dev->pool);
        rzs_lowmem_close(dev->lowmem);
        rzs_table_destroy(dev->table);
        rzs_backing_close(dev->backing);
        pthread_cond_destroy(&dev->refill_cv);
        pthread_cond_destroy(&dev->stock_cv);
        pthread_mutex_destroy(&dev->pool_lock);
        free(dev);
}

uint64_t rzs_device_size(const struct rzs_device *dev)
{
        return dev->size;
}

/* ---- one page ---- */

/* True when the page is one 32-bit word repeated; *pattern is that word. Compares
 * 64-bit words and stops at the first difference, so ordinary pages cost a few
 * loads. */
static bool page_same_filled(const unsigned char *page, uint32_t *pattern)
{
        uint64_t first, w;

        memcpy(&first, page, sizeof(first));
        if ((uint32_t)first != (uint32_t)(first >> 32))
                return false;
        for (size_t i = sizeof(w); i < PAGE; i += sizeof(w)) {
                memcpy(&w, page + i, sizeof(w));
                if (w != first)
                        return false;
        }
        *pattern = (uint32_t)first;
        return true;
}

static void page_fill(unsigned char *page, uint32_t pattern)
{
        uint64_t w = (uint64_t)pattern << 32 | pattern;

        if (pattern == 0) {
                memset(page, 0, PAGE);
                return;
        }
        for (size_t i = 0; i < PAGE; i += sizeof(w))
                memcpy(page + i, &w, sizeof(w));
}

/* good_compress or no_compress for a pool entry, or C_COUNT when it is neither. */
static enum counter_id part_of(rzs_entry e)
{
        if (rzs_entry_is_raw(e))
                return C_NO_COMPRESS;
        return rzs_entry_size(e) <= GOOD_COMPRESSED ? C_GOOD_COMPRESS : C_COUNT;
}

/* A counter update that a snapshot's acquire load orders against. */
static void count_release(struct rzs_device *dev, enum counter_id id, int64_t delta)
{
        atomic_fetch_add_explicit(&dev->c[id].v, (uint64_t)delta, memory_order_release);
}

/* Add sign (+1/-1) times an entry's share to the gauges. Caller holds the slot
 * lock. good_compress and no_compress are parts of pages_stored: they rise after it
 * and fall before it, so a snapshot reading them first never sees more parts than
 * the pages they belong to from this update (see read_stored). */
static void account(struct rzs_device *dev, rzs_entry e, int sign)
{
        enum counter_id part;

        if (rzs_entry_is_empty(e))
                return;
        if (rzs_entry_is_same(e)) {
                count(dev, rzs_entry_pattern(e) == 0 ? C_ZERO_PAGES : C_SAME_PAGES, sign);
                return;
        }
        if (rzs_entry_is_backing(e)) {
                count(dev, C_BACKING_PAGES, sign);
                return;
        }
        part = part_of(e);
        if (sign > 0)
                count_release(dev, C_PAGES_STORED, 1);
        if (part != C_COUNT)
                count_release(dev, part, sign);
        if (sign < 0)
                count_release(dev, C_PAGES_STORED, -1);
        count(dev, C_COMPR_DATA_SIZE,
              sign * (int64_t)(rzs_entry_is_raw(e) ? PAGE : rzs_entry_size(e)));
}

/* Swap e into slot, whose lock the caller holds, and count it; returns the old
 * entry. */
static rzs_entry swap_locked(struct rzs_device *dev, uint64_t slot, rzs_entry e)
{
        rzs_entry old = rzs_table_swap(dev->table, slot, e);

        if (slot == 0)
                dev->header_live = false;
        account(dev, e, +1);
        account(dev, old, -1);
        return old;
}

/* Put e (not a backing entry) into slot and free what it replaces: a backing page
 * is discarded under the slot lock (a later write to the slot must not race with
 * the discard), a pool object freed after it. Returns true when the replaced entry
 * held a page, for the caller's counting. */
static bool publish(struct rzs_device *dev, uint64_t slot, rzs_entry e)
{
        rzs_entry old;

        rzs_table_lock(dev->table, slot);
        old = swap_locked(dev, slot, e);
        if (rzs_entry_is_backing(old))
                rzs_backing_discard(dev->backing, slot, 1); /* best effort */
        rzs_table_unlock(dev->table, slot);
        pool_release(dev, old);
        return !rzs_entry_is_empty(old);
}

/* Write src to slot's page in the backing store and point the slot there. The
 * pwrite runs under the slot lock: see "Backing store" at the top. Returns 0 or
 * -EIO. */
static int publish_backing(struct rzs_device *dev, uint64_t slot,
                           const unsigned char *src)
{
        rzs_entry old;
        int r;

        rzs_table_lock(dev->table, slot);
        r = rzs_backing_write(dev->backing, slot, src);
        if (r < 0) {
                /* Over an old store page the bytes are now unknown; anything else
                 * still holds the old page untouched. */
                if (rzs_entry_is_backing(rzs_table_get(dev->table, slot)))
                        swap_locked(dev, slot, rzs_entry_backing(true));
                rzs_table_unlock(dev->table, slot);
                return -EIO;
        }
        old = swap_locked(dev, slot, rzs_entry_backing(false));
        rzs_table_unlock(dev->table, slot);
        count(dev, C_BDEV_WRITES, 1);
        pool_release(dev, old);
        return 0;
}

/* Compress src and store it in a new pool object; *e describes it. No lock is held
 * on entry or exit. Returns 0, -ENOSPC, -EIO (the compressor failed) or, with a
 * backing store, -E2BIG: too big for the pool, the page belongs in the store. */
static int store_object(struct rzs_device *dev, uint64_t slot, const unsigned char *src,
                        rzs_entry *e)
{
        struct workspace *w = ws_get(dev);
        size_t clen;
        xv_handle h;
        int r;

        *e = 0;
        r = dev->codec->compress(src, w->out, &clen, w->wrkmem);
        if (r < 0)
                goto out;
        if (clen > dev->max_compressed && dev->backing != NULL) {
                r = -E2BIG;
                goto out;
        }
        if (clen > dev->max_compressed) {
                ws_put(w);
                r = pool_alloc(dev, true, PAGE, &h);
                if (r < 0)
                        return r;
                memcpy(xv_map(dev->pool, h), src, PAGE);
                *e = rzs_entry_raw(h);
                return 0;
        }
        r = pool_alloc(dev, false, (uint32_t)(OBJ_HEADER + clen), &h);
        if (r < 0)
                goto out;
        unsigned char *obj = xv_map(dev->pool, h);
        uint32_t owner = (uint32_t)slot;

        memcpy(obj, &owner, OBJ_HEADER);
        memcpy(obj + OBJ_HEADER, w->out, clen);
        *e = rzs_entry_compressed(h, (uint32_t)clen);
out:
        ws_put(w);
        return r;
}

static int write_page(struct rzs_device *dev, uint64_t slot, const unsigned char *src)
{
        uint32_t pattern;
        rzs_entry e;

        if (page_same_filled(src, &pattern)) {
                e = rzs_entry_same(pattern);
        } else {
                int r = store_object(dev, slot, src, &e);

                /* Too big, or the pool is full: the store takes it. */
                if ((r == -E2BIG || r == -ENOSPC) && dev->backing != NULL)
                        return publish_backing(dev, slot, src);
                if (r < 0)
                        return r;
        }
        publish(dev, slot, e);
        return 0;
}

static int read_page(struct rzs_device *dev, uint64_t slot, unsigned char *dst)
{
        rzs_entry e;
        int r = 0;

        rzs_table_lock(dev->table, slot);
        e = rzs_table_get(dev->table, slot);
        if (rzs_entry_is_empty(e)) {
                if (slot == 0 && dev->header_live)
                        memcpy(dst, dev->header, PAGE);
                else
                        memset(dst, 0, PAGE);
        } else if (rzs_entry_is_same(e)) {
                page_fill(dst, rzs_entry_pattern(e));
        } else if (rzs_entry_is_lost(e)) {
                r = -EIO;
        } else if (rzs_entry_is_backing(e)) {
                r = rzs_backing_read(dev->backing, slot, dst);
                if (r == 0)
                        count(dev, C_BDEV_READS, 1);
        } else if (rzs_entry_is_raw(e)) {
                memcpy(dst, xv_map(dev->pool, rzs_entry_handle(e)), PAGE);
        } else {
                const unsigned char *obj = xv_map(dev->pool, rzs_entry_handle(e));

                r = dev->codec->decompress(obj + OBJ_HEADER, rzs_entry_size(e), dst);
        }
        rzs_table_unlock(dev->table, slot);
        return r;
}

/* Empty slot; returns true when it held a page. */
static bool discard_page(struct rzs_device *dev, uint64_t slot)
{
        /* Trims of whole swap areas are mostly of empty slots: skip them without
         * the lock. Slot 0 may still show the header, which a trim must end. */
        if (slot != 0 && rzs_entry_is_empty(rzs_table_get(dev->table, slot)))
                return false;
        return publish(dev, slot, 0);
}

/* ---- requests ---- */

static int check_request(struct rzs_device *dev, uint64_t len, uint64_t off)
{
        if (off % PAGE != 0 || len % PAGE != 0 || off > dev->size ||
            len > dev->size - off) {
                count(dev, C_INVALID_IO, 1);
                return -EINVAL;
        }
        return 0;
}

int rzs_device_read(struct rzs_device *dev, void *buf, uint64_t len, uint64_t off)
{
        unsigned char *p = buf;
        uint64_t first = off / PAGE, n = len / PAGE;
        int r = check_request(dev, len, off);

        if (r < 0)
                return r;
        for (uint64_t i = 0; i < n; i++) {
                r = read_page(dev, first + i, p + i * PAGE);
                if (r < 0) {
                        count(dev, C_NUM_READS, (int64_t)i);
                        count(dev, C_FAILED_READS, 1);
                        return -EIO;
                }
        }
        count(dev, C_NUM_READS, (int64_t)n);
        return 0;
}

int rzs_device_write(struct rzs_device *dev, const void *buf, uint64_t len, uint64_t off)
{
        const unsigned char *p = buf;
        uint64_t first = off / PAGE, n = len / PAGE;
        int r = check_request(dev, len, off);

        if (r < 0)
                return r;
        for (uint64_t i = 0; i < n; i++) {
                r = write_page(dev, first + i, p + i * PAGE);
                if (r < 0) {
                        count(dev, C_NUM_WRITES, (int64_t)i);
                        count(dev, C_FAILED_WRITES, 1);
                        return r;
                }
        }
        count(dev, C_NUM_WRITES, (int64_t)n);
        return 0;
}

static int discard(struct rzs_device *dev, uint64_t len, uint64_t off)
{
        uint64_t first = off / PAGE, n = len / PAGE, freed = 0;
        int r = check_request(dev, len, off);

        if (r < 0)
                return r;
        for (uint64_t i = 0; i < n; i++)
                freed += discard_page(dev, first + i);
        count(dev, C_PAGES_DISCARD, (int64_t)freed);
        return 0;
}

int rzs_device_trim(struct rzs_device *dev, uint64_t len, uint64_t off)
{
        return discard(dev, len, off);
}

/* Zeroed pages become empty slots, exactly as trimmed ones: both read as zeros and
 * hold no memory, and zero_pages keeps counting only zero pages written as data. */
int rzs_device_zero(struct rzs_device *dev, uint64_t len, uint64_t off)
{
        return discard(dev, len, off);
}

/* pages_stored and its parts, good_compress and no_compress, with the parts never
 * above the whole. The parts are read first, with acquire loads: a page they count
 * was added to pages_stored before them (see account), so the later read of
 * pages_stored sees it. A page removed between the reads can still leave a part
 * above the whole, so the parts are clamped: a snapshot is a moment's estimate,
 * and readers divide the parts by pages_stored. */
static void read_stored(const struct rzs_device *dev, struct rzs_stats *out)
{
        uint64_t good =
            atomic_load_explicit(&dev->c[C_GOOD_COMPRESS].v, memory_order_acquire);
        uint64_t no =
            atomic_load_explicit(&dev->c[C_NO_COMPRESS].v, memory_order_acquire);
        uint64_t stored =
            atomic_load_explicit(&dev->c[C_PAGES_STORED].v, memory_order_acquire);

        out->pages_stored = stored;
        out->good_compress = good < stored ? good : stored;
        out->no_compress =
            no < stored - out->good_compress ? no : stored - out->good_compress;
}

void rzs_device_get_stats(const struct rzs_device *dev, struct rzs_stats *out)
{
        memset(out, 0, sizeof(*out));
        out->disksize = dev->size;
        out->memlimit = dev->memlimit;
        out->num_reads = counter(dev, C_NUM_READS);
        out->num_writes = counter(dev, C_NUM_WRITES);
        out->failed_reads = counter(dev, C_FAILED_READS);
        out->failed_writes = counter(dev, C_FAILED_WRITES);
        out->invalid_io = counter(dev, C_INVALID_IO);
        out->pages_discard = counter(dev, C_PAGES_DISCARD);
        out->zero_pages = counter(dev, C_ZERO_PAGES);
        out->same_pages = counter(dev, C_SAME_PAGES);
        read_stored(dev, out);
        out->pages_used = counter(dev, C_PAGES_USED);
        out->orig_data_size = out->pages_stored * PAGE;
        out->compr_data_size = counter(dev, C_COMPR_DATA_SIZE);
        out->mem_used_total = out->pages_used * PAGE;
        out->mem_used_max = counter(dev, C_PAGES_USED_MAX) * PAGE;
        out->pool_block_bytes = counter(dev, C_BLOCK_BYTES);
        out->bdev_num_reads = counter(dev, C_BDEV_READS);
        out->bdev_num_writes = counter(dev, C_BDEV_WRITES);
        out->backing_pages = counter(dev, C_BACKING_PAGES);
        out->pool_stock = counter(dev, C_POOL_STOCK) * PAGE;
        out->stock_empty = counter(dev, C_STOCK_EMPTY);
}

/* ---- consistency check ---- */

static int cmp_handle(const void *a, const void *b)
{
        xv_handle x = *(const xv_handle *)a, y = *(const xv_handle *)b;

        return (x > y) - (x < y);
}

/* Count handles owned by two slots. Needs memory; skipped (0) without it. */
static unsigned duplicate_handles(const struct rzs_device *dev, uint64_t objects)
{
        xv_handle *h = malloc((objects ? objects : 1) * sizeof(*h));
        uint64_t n = 0;
        unsigned bad = 0;

        if (h == NULL)
                return 0;
        for (uint64_t s = 0; s < dev->pages && n < objects; s++) {
                rzs_entry e = rzs_table_get(dev->table, s);

                if (rzs_entry_has_object(e))
                        h[n++] = rzs_entry_handle(e);
        }
        qsort(h, n, sizeof(*h), cmp_handle);
        for (uint64_t i = 1; i < n; i++)
                bad += h[i] == h[i - 1];
        free(h);
        return bad;
}

unsigned rzs_device_check(struct rzs_device *dev)
{
        uint64_t zero = 0, same = 0, stored = 0, raw = 0, good = 0, compr = 0;
        uint64_t backing = 0;
        struct xv_pool_stats ps;
        unsigned bad = rzs_table_check(dev->table);

        for (uint64_t s = 0; s < dev->pages; s++) {
                rzs_entry e = rzs_table_get(dev->table, s);

                if (rzs_entry_is_empty(e))
                        continue;
                if (rzs_entry_is_same(e)) {
                        zero += rzs_entry_pattern(e) == 0;
                        same += rzs_entry_pattern(e) != 0;
                        continue;
                }
                if (rzs_entry_is_backing(e)) {
                        backing++;
                        bad += dev->backing == NULL;
                        continue;
                }
                stored++;
                if (rzs_entry_is_raw(e)) {
                        raw++;
                        compr += PAGE;
                        continue;
                }
                compr += rzs_entry_size(e);
                good += rzs_entry_size(e) <= GOOD_COMPRESSED;
                bad += rzs_entry_size(e) > dev->max_compressed;
                bad += load_u32(xv_map(dev->pool, rzs_entry_handle(e))) != s;
        }
        if (dev->header_live && !rzs_entry_is_empty(rzs_table_get(dev->table, 0)))
                bad++;
        bad += zero != counter(dev, C_ZERO_PAGES);
        bad += same != counter(dev, C_SAME_PAGES);
        bad += stored != counter(dev, C_PAGES_STORED);
        bad += raw != counter(dev, C_NO_COMPRESS);
        bad += good != counter(dev, C_GOOD_COMPRESS);
        bad += compr != counter(dev, C_COMPR_DATA_SIZE);
        bad += backing != counter(dev, C_BACKING_PAGES);
        /* With a store, big pages go there: the pool holds no raw pages. */
        bad += dev->backing != NULL && raw != 0;
        bad += dev->backing != NULL && dev->size > rzs_backing_size(dev->backing);
        bad += duplicate_handles(dev, stored);

        pthread_mutex_lock(&dev->pool_lock);
        bad += xv_pool_check(dev->pool);
        xv_pool_get_stats(dev->pool, &ps);
        pthread_mutex_unlock(&dev->pool_lock);
        bad += ps.objects != stored;
        bad += ps.whole_pages != raw;
        bad += ps.pages != counter(dev, C_PAGES_USED);
        bad += ps.block_bytes != counter(dev, C_BLOCK_BYTES);
        bad += ps.pages > counter(dev, C_PAGES_USED_MAX);
        return bad;
}
