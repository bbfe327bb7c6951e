/* ramzswap: a deterministic corpus of realistic swap pages (see corpus.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lzo/lzo1x.h>

#include "corpus.h"

#define PAGE         CORPUS_PAGE_SIZE
#define MAX_FILES    20000 /* per list: bounds the start-up scan */
#define MAX_DEPTH    4
#define FILE_RETRIES 16 /* picks before a file kind gives up on a page */

/* Cumulative shares in percent, in enum order. */
static const unsigned share[CORPUS_NKINDS] = {15, 2, 18, 12, 24, 8, 13, 4, 4};

static const char *const kind_names[CORPUS_NKINDS] = {
    "zero", "same", "elf", "text", "heap", "stack", "numeric", "random", "packed",
};

const char *corpus_kind_name(unsigned kind)
{
        return kind < CORPUS_NKINDS ? kind_names[kind] : "?";
}

/* ---- random numbers: splitmix64, one stream per page ---- */

static uint64_t next(uint64_t *s)
{
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
        return next(s) % n;
}

/* ---- file lists ---- */

struct file {
        char *path;
        off_t size;
};

struct file_list {
        struct file *f;
        size_t n, cap;
};

enum list_id { LIST_ELF, LIST_TEXT, LIST_PACKED, NLISTS };

static bool has_suffix(const char *s, const char *suf)
{
        size_t a = strlen(s), b = strlen(suf);
        return a >= b && strcmp(s + a - b, suf) == 0;
}

static bool is_packed_name(const char *name)
{
        return has_suffix(name, ".gz") || has_suffix(name, ".xz") ||
               has_suffix(name, ".bz2") || has_suffix(name, ".zst");
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int list_add(struct file_list *l, const char *path, off_t size)
{
        if (l->n == MAX_FILES)
                return 0;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 256;
                struct file *f = realloc(l->f, cap * sizeof(*f));
                if (!f)
                        return -ENOMEM;
                l->f = f;
                l->cap = cap;
        }
        l->f[l->n].path = strdup(path);
        if (!l->f[l->n].path)
                return -ENOMEM;
        l->f[l->n++].size = size;
        return 0;
}

/* Which list a regular file belongs to, given the tree it was found in. */
typedef int (*classify_fn)(const char *name, off_t size);

static int classify_elf(const char *name, off_t size)
{
        return size >= 2 * (off_t)PAGE ? LIST_ELF : -1;
}

static int classify_share(const char *name, off_t size)
{
        if (is_packed_name(name))
                return size >= 2 * (off_t)PAGE ? LIST_PACKED : -1;
        return size >= (off_t)PAGE ? LIST_TEXT : -1;
}

/* Walk dir (sorted, regular files only, symlinks skipped) into the lists. */
static int scan(const char *dir, int depth, classify_fn classify,
                struct file_list lists[NLISTS])
{
        struct dirent **ent;
        int n = scandir(dir, &ent, NULL, by_name), r = 0;

        if (n < 0)
                return 0; /* a missing tree is not an error: others may do */
        for (int i = 0; i < n; i++) {
                char path[4096];
                struct stat st;
                int which;

                if (r == 0 && ent[i]->d_name[0] != '.' &&
                    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, ent[i]->d_name) <
                        sizeof(path) &&
                    lstat(path, &st) == 0) {
                        if (S_ISDIR(st.st_mode) && depth > 1)
                                r = scan(path, depth - 1, classify, lists);
                        else if (S_ISREG(st.st_mode) &&
                                 (which = classify(ent[i]->d_name, st.st_size)) >= 0)
                                r = list_add(&lists[which], path, st.st_size);
                }
                free(ent[i]);
        }
        free(ent);
        return r;
}

static void lists_free(struct file_list lists[NLISTS])
{
        for (int k = 0; k < NLISTS; k++) {
                for (size_t i = 0; i < lists[k].n; i++)
                        free(lists[k].f[i].path);
                free(lists[k].f);
        }
}

static int lists_build(struct file_list lists[NLISTS])
{
        static const char *const elf_dirs[] = {
            "/usr/bin",
            "/usr/sbin",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
        };
        static const char *const share_dirs[] = {"/usr/share/doc", "/usr/include",
                                                 "/usr/share/man"};
        int r = 0;

        /* ELF dirs are read one level deep: their subtrees hold data files. */
        for (size_t i = 0; r == 0 && i < sizeof(elf_dirs) / sizeof(*elf_dirs); i++)
                r = scan(elf_dirs[i], 1, classify_elf, lists);
        for (size_t i = 0; r == 0 && i < sizeof(share_dirs) / sizeof(*share_dirs); i++)
                r = scan(share_dirs[i], MAX_DEPTH, classify_share, lists);
        if (r == 0 &&
            (!lists[LIST_ELF].n || !lists[LIST_TEXT].n || !lists[LIST_PACKED].n))
                r = -ENOENT;
        return r;
}

/* Read PAGE bytes of a file at off; true on a full read. */
static bool read_at(const char *path, off_t off, uint8_t *out)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got;

        if (fd < 0)
                return false;
        got = pread(fd, out, PAGE, off);
        close(fd);
        return got == (ssize_t)PAGE;
}

/* ---- page generators ---- */

static void gen_same(uint64_t *s, uint8_t *p)
{
        uint32_t w = (uint32_t)next(s) | 1u;

        for (unsigned i = 0; i < PAGE; i += 4)
                memcpy(p + i, &w, 4);
}

static void gen_random(uint64_t *s, uint8_t *p)
{
        for (unsigned i = 0; i < PAGE; i += 8) {
                uint64_t v = next(s);
                memcpy(p + i, &v, 8);
        }
}

/* A page-aligned page of an ELF file that starts with the ELF magic. */
static bool gen_elf(uint64_t *s, const struct file_list *l, uint8_t *p)
{
        static const uint8_t magic[4] = {0x7f, 'E', 'L', 'F'};

        for (int t = 0; t < FILE_RETRIES; t++) {
                const struct file *f = &l->f[below(s, l->n)];
                uint8_t head[PAGE];
                off_t pg = (off_t)below(s, (uint64_t)(f->size / PAGE));

                if (read_at(f->path, 0, head) && memcmp(head, magic, 4) == 0 &&
                    read_at(f->path, pg * PAGE, p))
                        return true;
        }
        return false;
}

/* PAGE bytes of text at any offset: no NUL, and mostly printable. */
static bool gen_text(uint64_t *s, const struct file_list *l, uint8_t *p)
{
        for (int t = 0; t < FILE_RETRIES; t++) {
                const struct file *f = &l->f[below(s, l->n)];
                off_t off = (off_t)below(s, (uint64_t)(f->size - PAGE + 1));
                unsigned odd = 0;

                if (!read_at(f->path, off, p) || memchr(p, 0, PAGE))
                        continue;
                for (unsigned i = 0; i < PAGE; i++)
                        odd += p[i] < 9 || (p[i] > 13 && p[i] < 32);
                if (odd < PAGE / 64)
                        return true;
        }
        return false;
}

/* A piece of a compressed file, past its header. */
static bool gen_packed(uint64_t *s, const struct file_list *l, uint8_t *p)
{
        for (int t = 0; t < FILE_RETRIES; t++) {
                const struct file *f = &l->f[below(s, l->n)];
                off_t off = 64 + (off_t)below(s, (uint64_t)(f->size - PAGE - 64 + 1));

                if (read_at(f->path, off, p))
                        return true;
        }
        return false;
}

static const char *const words[] = {
    "/usr/lib",      "libc.so.6",   "main",   "config", "error",   "HOME",
    "PATH=/usr/bin", "en_US.UTF-8", "value",  "name",   "id",      "user",
    "localhost",     "GET",         "200 OK", "json",   "true",    "false",
    "buffer",        "tmp",         "x86_64", "init",   "session", "window",
};

/* Address bases of a few imaginary processes: heap, libraries, stack. */
static uint64_t heap_base(unsigned proc)
{
        return UINT64_C(0x000055d0a1b20000) + ((uint64_t)proc << 28);
}

static uint64_t lib_base(unsigned proc)
{
        return UINT64_C(0x00007f3c8e400000) + ((uint64_t)proc << 32);
}

static uint64_t stack_base(unsigned proc)
{
        return UINT64_C(0x00007ffc12345000) - ((uint64_t)proc << 24);
}

static void put64(uint8_t *p, unsigned off, uint64_t v)
{
        if (off + 8 <= PAGE)
                memcpy(p + off, &v, 8);
}

static void put32(uint8_t *p, unsigned off, uint32_t v)
{
        if (off + 4 <= PAGE)
                memcpy(p + off, &v, 4);
}

/* Fill one heap chunk body [off, end). */
static void heap_body(uint64_t *s, uint8_t *p, unsigned off, unsigned end, unsigned proc)
{
        uint64_t heap = heap_base(proc), lib = lib_base(proc);

        switch (below(s, 6)) {
        case 0: /* array of pointers into the heap */
                for (; off + 8 <= end; off += 8)
                        put64(p, off, heap + below(s, 1u << 20) * 16);
                break;
        case 1: /* small integers */
                for (; off + 4 <= end; off += 4)
                        put32(p, off, (uint32_t)below(s, 100));
                break;
        case 2: /* a sparse struct: mostly NULL, a pointer or a vtable */
                for (; off + 8 <= end; off += 8) {
                        uint64_t k = below(s, 8);
                        put64(p, off,
                              k == 0   ? heap + below(s, 1u << 20) * 16
                              : k == 1 ? lib + below(s, 1u << 16) * 8
                                       : 0);
                }
                break;
        case 3: /* short strings */
                while (off < end) {
                        const char *w = words[below(s, sizeof(words) / sizeof(*words))];
                        size_t n = strlen(w) + 1;
                        if (off + n > end)
                                break;
                        memcpy(p + off, w, n);
                        off += (unsigned)n;
                }
                break;
        case 4: /* {ptr, len, flags, ptr, NULL} records */
                for (; off + 32 <= end; off += 32) {
                        put64(p, off, heap + below(s, 1u << 20) * 16);
                        put32(p, off + 8, (uint32_t)below(s, 4096));
                        put32(p, off + 12, 1u << below(s, 4));
                        put64(p, off + 16, heap + below(s, 1u << 20) * 16);
                        put64(p, off + 24, 0);
                }
                break;
        default: /* a free chunk: list links, stale bytes left zero */
                put64(p, off, heap + below(s, 1u << 20) * 16);
                put64(p, off + 8, heap + below(s, 1u << 20) * 16);
                break;
        }
}

static void gen_heap(uint64_t *s, uint8_t *p)
{
        unsigned proc = (unsigned)below(s, 8), off = 0;

        while (off + 16 <= PAGE) {
                unsigned size = below(s, 4) ? 16u * (1u + (unsigned)below(s, 16))
                                            : 16u * (1u + (unsigned)below(s, 64));
                unsigned end = off + size < PAGE ? off + size : PAGE;

                put64(p, off, (uint64_t)size | 1u); /* size, PREV_INUSE */
                heap_body(s, p, off + 8, end, proc);
                off = end;
        }
}

static void gen_stack(uint64_t *s, uint8_t *p)
{
        unsigned proc = (unsigned)below(s, 8);
        uint64_t sp = stack_base(proc) - below(s, 64) * PAGE;
        uint64_t canary = next(s) & ~UINT64_C(0xff);
        /* The deepest part of a stack page is often never touched: zeros. */
        unsigned off = (unsigned)below(s, PAGE / 2) & ~15u;

        while (off + 16 <= PAGE) {
                unsigned frame = 32u + 16u * (unsigned)below(s, 12);
                unsigned end = off + frame < PAGE ? off + frame : PAGE;

                for (unsigned o = off; o + 8 <= end - 16; o += 8) {
                        uint64_t k = below(s, 10);
                        put64(p, o,
                              k < 3   ? below(s, 256)
                              : k < 5 ? heap_base(proc) + below(s, 1u << 20) * 16
                              : k < 6 ? sp + o
                              : k < 7 ? canary
                                      : 0);
                }
                put64(p, end - 16, sp + end + 64); /* rbp */
                put64(p, end - 8,
                      UINT64_C(0x000055d0a0000000) + below(s, 4096) * 13); /* ret */
                off = end;
        }
}

static void gen_numeric(uint64_t *s, uint8_t *p)
{
        switch (below(s, 4)) {
        case 0: { /* counters: increasing int32 */
                uint32_t v = (uint32_t)below(s, 1u << 20);
                for (unsigned i = 0; i < PAGE; i += 4) {
                        v += (uint32_t)below(s, 8);
                        put32(p, i, v);
                }
                break;
        }
        case 1: /* small values, e.g. bytes widened to int32 */
                for (unsigned i = 0; i < PAGE; i += 4)
                        put32(p, i, (uint32_t)below(s, 256));
                break;
        case 2: { /* a smooth series of doubles */
                double v = (double)below(s, 1000),
                       step = 0.25 * (double)(1 + below(s, 8));
                for (unsigned i = 0; i < PAGE; i += 8, v += step)
                        memcpy(p + i, &v, 8);
                break;
        }
        default: /* noisy measurements */
                for (unsigned i = 0; i < PAGE; i += 8) {
                        double v = 100.0 + (double)below(s, 100000) / 1000.0;
                        memcpy(p + i, &v, 8);
                }
                break;
        }
}

static unsigned pick_kind(uint64_t *s)
{
        unsigned r = (unsigned)below(s, 100), acc = 0;

        for (unsigned k = 0; k < CORPUS_NKINDS; k++) {
                acc += share[k];
                if (r < acc)
                        return k;
        }
        return CORPUS_HEAP;
}

/* Fill page p with the kind chosen by its stream; returns the kind produced (a file
 * kind that found no readable file falls back to a heap page). */
static unsigned gen_page(uint64_t *s, const struct file_list lists[NLISTS], uint8_t *p)
{
        unsigned kind = pick_kind(s);
        bool ok = true;

        memset(p, 0, PAGE);
        switch (kind) {
        case CORPUS_ZERO:
                break;
        case CORPUS_SAME:
                gen_same(s, p);
                break;
        case CORPUS_ELF:
                ok = gen_elf(s, &lists[LIST_ELF], p);
                break;
        case CORPUS_TEXT:
                ok = gen_text(s, &lists[LIST_TEXT], p);
                break;
        case CORPUS_HEAP:
                gen_heap(s, p);
                break;
        case CORPUS_STACK:
                gen_stack(s, p);
                break;
        case CORPUS_NUMERIC:
                gen_numeric(s, p);
                break;
        case CORPUS_RANDOM:
                gen_random(s, p);
                break;
        default:
                ok = gen_packed(s, &lists[LIST_PACKED], p);
                break;
        }
        if (!ok) {
                memset(p, 0, PAGE);
                gen_heap(s, p);
                kind = CORPUS_HEAP;
        }
        return kind;
}

/* Generate pages into buf (and their kinds into kind, if not NULL). */
static int generate(uint8_t *buf, uint8_t *kind, size_t npages, uint64_t seed,
                    unsigned variant)
{
        struct file_list lists[NLISTS] = {{0}};
        uint64_t base =
            seed * UINT64_C(0xd1342543de82ef95) + variant * UINT64_C(0xaf251af3b0f025b5);
        int r = lists_build(lists);

        for (size_t i = 0; r == 0 && i < npages; i++) {
                uint64_t s = base + i;
                unsigned k;

                next(&s); /* decorrelate neighbouring streams */
                k = gen_page(&s, lists, buf + i * PAGE);
                if (kind)
                        kind[i] = (uint8_t)k;
        }
        lists_free(lists);
        return r;
}

int corpus_fill(void *buf, size_t npages, uint64_t seed, unsigned variant)
{
        if (npages == 0 || npages > SIZE_MAX / PAGE)
                return -EINVAL;
        return generate(buf, NULL, npages, seed, variant);
}

int corpus_init(struct corpus *c, uint64_t seed, size_t npages)
{
        int r;

        memset(c, 0, sizeof(*c));
        if (npages == 0 || npages > SIZE_MAX / PAGE)
                return -EINVAL;
        c->data = malloc(npages * PAGE);
        c->kind = malloc(npages);
        if (!c->data || !c->kind) {
                corpus_free(c);
                return -ENOMEM;
        }
        c->npages = npages;
        r = generate(c->data, c->kind, npages, seed, 0);
        if (r < 0)
                corpus_free(c);
        return r;
}

void corpus_free(struct corpus *c)
{
        free(c->data);
        free(c->kind);
        memset(c, 0, sizeof(*c));
}

bool corpus_page_same_filled(const uint8_t *p)
{
        /* Each word equals the one before it iff all equal the first. */
        return memcmp(p, p + 4, PAGE - 4) == 0;
}

int corpus_lzo_size(const uint8_t *p, void *wrk, size_t *len)
{
        uint8_t out[PAGE + PAGE / 16 + 64 + 3];
        lzo_uint n = sizeof(out);

        *len = 0;
        if (lzo1x_1_compress(p, PAGE, out, &n, wrk) != LZO_E_OK)
                return -EIO;
        *len = n;
        return 0;
}

int corpus_stored_size(const uint8_t *p, void *wrk, size_t *lzo, size_t *stored)
{
        int r = corpus_lzo_size(p, wrk, lzo);

        *stored = 0;
        if (r < 0 || corpus_page_same_filled(p))
                return r;
        *stored = *lzo > CORPUS_RAW_LIMIT ? PAGE : *lzo;
        return 0;
}
