/* The floor for bench_nbd: a deliberately naive compressed-RAM nbdkit plugin.
 * One pointer per 4 KiB page to a malloc'd LZO1X-1 object (a 2-byte length, then
 * the data); all-zero pages are NULL; 256 striped mutexes. No same-filled pages,
 * no raw storage, no allocator of its own: whatever glibc malloc does is what ramzswap
 * is measured against. Usage: nbdkit bench/naive.so size=256M
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <lzo/lzo1x.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#define PG           4096
#define NLOCKS       256
#define ZMAX         (PG + PG / 16 + 64 + 3) /* LZO1X worst case for one page */

struct obj {
        uint16_t len;
        unsigned char data[];
};

static int64_t size = -1;
static struct obj **pages;
static pthread_mutex_t locks[NLOCKS];

static int naive_config(const char *key, const char *value)
{
        if (strcmp(key, "size") != 0) {
                nbdkit_error("naive: unknown parameter '%s'", key);
                return -1;
        }
        size = nbdkit_parse_size(value);
        return size < 0 ? -1 : 0;
}

static int naive_get_ready(void)
{
        if (size < PG || lzo_init() != LZO_E_OK) {
                nbdkit_error("naive: size= (at least 4K) is required");
                return -1;
        }
        size -= size % PG;
        for (int i = 0; i < NLOCKS; i++)
                pthread_mutex_init(&locks[i], NULL);
        pages = calloc(size / PG, sizeof *pages);
        if (pages == NULL)
                nbdkit_error("naive: calloc: %m");
        return pages ? 0 : -1;
}

static void *naive_open(int readonly)
{
        return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t naive_get_size(void *h)
{
        return size;
}

/* Decompresses page pg into dst (PG bytes). The caller holds the page's lock. */
static int load(uint64_t pg, unsigned char *dst)
{
        lzo_uint n = PG;

        if (pages[pg] == NULL) {
                memset(dst, 0, PG);
                return 0;
        }
        if (lzo1x_decompress_safe(pages[pg]->data, pages[pg]->len, dst, &n, NULL) !=
                LZO_E_OK ||
            n != PG) {
                nbdkit_error("naive: page %" PRIu64 " does not decompress", pg);
                nbdkit_set_error(EIO);
                return -1;
        }
        return 0;
}

static int naive_pread(void *h, void *buf, uint32_t count, uint64_t off, uint32_t flags)
{
        unsigned char page[PG], *out = buf;

        while (count > 0) {
                uint64_t pg = off / PG;
                uint32_t in = off % PG, n = count < PG - in ? count : PG - in;
                unsigned char *dst = n == PG ? out : page;
                int r;

                pthread_mutex_lock(&locks[pg % NLOCKS]);
                r = load(pg, dst);
                pthread_mutex_unlock(&locks[pg % NLOCKS]);
                if (r < 0)
                        return -1;
                if (dst == page)
                        memcpy(out, page + in, n);
                out += n, off += n, count -= n;
        }
        return 0;
}

/* Compresses one page into a new object; *o = NULL for an all-zero page. */
static int pack(const unsigned char *src, struct obj **o)
{
        lzo_align_t wrk[LZO1X_1_MEM_COMPRESS / sizeof(lzo_align_t) + 1];
        unsigned char z[ZMAX];
        lzo_uint zlen;

        *o = NULL;
        if (src[0] == 0 && memcmp(src, src + 1, PG - 1) == 0)
                return 0;
        lzo1x_1_compress(src, PG, z, &zlen, wrk);
        *o = malloc(sizeof **o + zlen);
        if (*o == NULL) {
                nbdkit_error("naive: malloc: %m");
                nbdkit_set_error(ENOMEM);
                return -1;
        }
        (*o)->len = zlen;
        memcpy((*o)->data, z, zlen);
        return 0;
}

static int naive_pwrite(void *h, const void *buf, uint32_t count, uint64_t off,
                        uint32_t flags)
{
        const unsigned char *src = buf;
        unsigned char page[PG];

        while (count > 0) {
                uint64_t pg = off / PG;
                uint32_t in = off % PG, n = count < PG - in ? count : PG - in;
                struct obj *o, *old = NULL;
                int r;

                /* A whole page compresses outside the lock; a partial one is a
                 * read-modify-write under it. */
                if (n < PG) {
                        pthread_mutex_lock(&locks[pg % NLOCKS]);
                        r = load(pg, page);
                        if (r == 0) {
                                memcpy(page + in, src, n);
                                r = pack(page, &o);
                        }
                } else {
                        r = pack(src, &o);
                        pthread_mutex_lock(&locks[pg % NLOCKS]);
                }
                if (r == 0) {
                        old = pages[pg];
                        pages[pg] = o;
                }
                pthread_mutex_unlock(&locks[pg % NLOCKS]);
                free(old);
                if (r < 0)
                        return -1;
                src += n, off += n, count -= n;
        }
        return 0;
}

/* Frees the pages wholly inside the range; NBD lets trim leave the edges. */
static int naive_trim(void *h, uint32_t count, uint64_t off, uint32_t flags)
{
        for (uint64_t pg = (off + PG - 1) / PG; (pg + 1) * PG <= off + count; pg++) {
                struct obj *old;

                pthread_mutex_lock(&locks[pg % NLOCKS]);
                old = pages[pg];
                pages[pg] = NULL;
                pthread_mutex_unlock(&locks[pg % NLOCKS]);
                free(old);
        }
        return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "naive",
    .magic_config_key = "size",
    .config = naive_config,
    .get_ready = naive_get_ready,
    .open = naive_open,
    .get_size = naive_get_size,
    .pread = naive_pread,
    .pwrite = naive_pwrite,
    .trim = naive_trim,
};

NBDKIT_REGISTER_PLUGIN(plugin)
