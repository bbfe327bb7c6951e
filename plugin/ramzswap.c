/* ramzswap: the nbdkit plugin, glue between nbdkit and the core device.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Config flows one way: .config fills `params` and rejects unknown or repeated keys,
 * .config_complete applies defaults and validates with overflow-checked arithmetic,
 * .get_ready builds the one device every connection shares, .cleanup destroys it.
 * Each data callback is one call into the device (include/ramzswap/device.h), which
 * checks alignment and counts refused requests itself; the plugin turns a negative
 * errno into one nbdkit_error and nbdkit_set_error.
 *
 * The device is thread-safe, so the thread model is fully parallel. The globals below
 * are written only before serving starts (config, get_ready) and after it ends.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ramzswap/device.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#ifndef RAMZSWAP_VERSION
#error "RAMZSWAP_VERSION must be defined by the build"
#endif

/* The largest read/write a client may send. Current kernels merge swap I/O into
 * requests of up to 32 MiB, and nbdkit itself refuses reads and writes over 64 MiB;
 * 32 MiB covers every swap request while telling clients such as nbdcopy the truth
 * (0xffffffff would advertise requests nbdkit refuses). Trim and zero are not bound
 * by it (NBD protocol) and may be up to 4 GiB - 1. */
#define MAX_REQUEST (32u << 20)

static const char *const compressors[] = {"lzo"};
#define N_COMPRESSORS (sizeof compressors / sizeof compressors[0])

/* Parameters as given on the command line; bit i of `seen` is set once key i has been
 * given, so a repeated key is an error. */
enum param_key {
        KEY_DISKSIZE,
        KEY_MEMLIMIT,
        KEY_RESERVE,
        KEY_COMPRESSOR,
        /* stats=, mlock= and backing= go here (with their fields below) once the
         * stats server, memory locking and the backing store are wired in. */
        KEY_COUNT
};

static const char *const key_names[KEY_COUNT] = {
    [KEY_DISKSIZE] = "disksize",
    [KEY_MEMLIMIT] = "memlimit",
    [KEY_RESERVE] = "reserve",
    [KEY_COMPRESSOR] = "compressor",
};

static struct {
        unsigned seen;          /* bit per enum param_key */
        uint64_t disksize;      /* bytes; default 25% of RAM */
        uint64_t memlimit;      /* bytes; default min(15% of RAM, disksize) */
        uint64_t reserve;       /* bytes; default 0 */
        const char *compressor; /* points into compressors[] */
        /* Reserved: stats socket path, mlock mode, backing store path. */
} params = {.compressor = "lzo"};

static struct rzs_device *device;

static int parse_size_param(const char *key, const char *value, uint64_t *out,
                            bool zero_ok)
{
        int64_t r = nbdkit_parse_size(value);

        if (r == -1) {
                nbdkit_error("invalid %s=%s (sizes look like 4096, 512M or 2G)", key,
                             value);
                return -1;
        }
        if (r == 0 && !zero_ok) {
                nbdkit_error("%s must not be zero", key);
                return -1;
        }
        *out = (uint64_t)r;
        return 0;
}

/* names[0..n) joined by sep into buf, for messages and --dump-plugin. */
static const char *join(char *buf, size_t size, const char *const *names, size_t n,
                        const char *sep)
{
        buf[0] = '\0';
        for (size_t i = 0; i < n; i++)
                snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? sep : "",
                         names[i]);
        return buf;
}

static int parse_compressor(const char *value)
{
        char list[64];

        for (size_t i = 0; i < N_COMPRESSORS; i++) {
                if (strcmp(value, compressors[i]) == 0) {
                        params.compressor = compressors[i];
                        return 0;
                }
        }
        nbdkit_error("unknown compressor '%s' (available: %s)", value,
                     join(list, sizeof list, compressors, N_COMPRESSORS, ", "));
        return -1;
}

static int ramzswap_config(const char *key, const char *value)
{
        char list[128];
        unsigned k;

        for (k = 0; k < KEY_COUNT; k++) {
                if (strcmp(key, key_names[k]) == 0)
                        break;
        }
        if (k == KEY_COUNT) {
                nbdkit_error("unknown parameter '%s' (known: %s)", key,
                             join(list, sizeof list, key_names, KEY_COUNT, ", "));
                return -1;
        }
        if (params.seen & (1u << k)) {
                nbdkit_error("parameter '%s' given twice", key);
                return -1;
        }
        params.seen |= 1u << k;

        switch ((enum param_key)k) {
        case KEY_DISKSIZE:
                return parse_size_param(key, value, &params.disksize, false);
        case KEY_MEMLIMIT:
                return parse_size_param(key, value, &params.memlimit, false);
        case KEY_RESERVE:
                return parse_size_param(key, value, &params.reserve, true);
        case KEY_COMPRESSOR:
                return parse_compressor(value);
        case KEY_COUNT:
                break;
        }
        return -1;
}

/* Physical RAM in bytes, or 0 if the system will not say. */
static uint64_t ram_bytes(void)
{
        long pages = sysconf(_SC_PHYS_PAGES);
        long page_size = sysconf(_SC_PAGESIZE);
        uint64_t r;

        if (pages <= 0 || page_size <= 0 ||
            __builtin_mul_overflow((uint64_t)pages, (uint64_t)page_size, &r))
                return 0;
        return r;
}

static int ramzswap_config_complete(void)
{
        uint64_t ram = ram_bytes();
        bool disksize_given = params.seen & (1u << KEY_DISKSIZE);

        if (!disksize_given || !(params.seen & (1u << KEY_MEMLIMIT))) {
                if (ram == 0) {
                        nbdkit_error("cannot find the amount of RAM: give disksize= "
                                     "and memlimit= explicitly");
                        return -1;
                }
        }
        if (!disksize_given)
                params.disksize = ram / 4;
        /* Slots are whole pages; what is left over is not part of the device. */
        params.disksize -= params.disksize % RZS_PAGE_SIZE;
        if (params.disksize == 0) {
                nbdkit_error("disksize must be at least one page (%u bytes)",
                             RZS_PAGE_SIZE);
                return -1;
        }

        if (!(params.seen & (1u << KEY_MEMLIMIT))) {
                /* ram / 100 * 15 cannot overflow; the rounding error is < 15 bytes. */
                params.memlimit = ram / 100 * 15;
                if (params.memlimit > params.disksize)
                        params.memlimit = params.disksize;
        }
        if (params.memlimit > params.disksize) {
                nbdkit_error("memlimit (%" PRIu64 " bytes) is larger than disksize "
                             "(%" PRIu64 " bytes%s)",
                             params.memlimit, params.disksize,
                             disksize_given ? "" : ", 25% of RAM by default");
                return -1;
        }
        if (params.reserve > params.memlimit) {
                nbdkit_error("reserve (%" PRIu64 " bytes) is larger than memlimit "
                             "(%" PRIu64 " bytes)",
                             params.reserve, params.memlimit);
                return -1;
        }
        nbdkit_debug("disksize=%" PRIu64 " memlimit=%" PRIu64 " reserve=%" PRIu64
                     " compressor=%s",
                     params.disksize, params.memlimit, params.reserve, params.compressor);
        return 0;
}

/* The untranslated description, without gettext: with ASan preloaded into nbdkit
 * (the sanitizer tests), strerror in the worker threads left nbdkit blocked at exit
 * on glibc's setlocale lock (measured, glibc 2.36; strerrordesc_np does not). */
static const char *errstr(int e)
{
        const char *s = strerrordesc_np(e);

        return s ? s : "unknown error";
}

static int ramzswap_get_ready(void)
{
        const struct rzs_config cfg = {
            .disksize = params.disksize,
            .memlimit = params.memlimit,
            .reserve = params.reserve,
            .compressor = params.compressor,
        };
        char why[256];
        int r = rzs_device_create_msg(&cfg, &device, why, sizeof why);

        if (r < 0) {
                nbdkit_error("cannot create the device: %s", why[0] ? why : errstr(-r));
                return -1;
        }
        return 0;
}

static void ramzswap_cleanup(void)
{
        rzs_device_destroy(device);
        device = NULL;
}

static void ramzswap_dump_plugin(void)
{
        printf("ramzswap_version=%s\n", RAMZSWAP_VERSION);
        char list[64];

        printf("ramzswap_compressors=%s\n",
               join(list, sizeof list, compressors, N_COMPRESSORS, ","));
}

static void *ramzswap_open(int readonly)
{
        return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t ramzswap_get_size(void *handle)
{
        return (int64_t)rzs_device_size(device);
}

static int ramzswap_block_size(void *handle, uint32_t *minimum, uint32_t *preferred,
                               uint32_t *maximum)
{
        *minimum = RZS_PAGE_SIZE;
        *preferred = RZS_PAGE_SIZE;
        *maximum = MAX_REQUEST;
        return 0;
}

/* Everything lives in RAM: there is nothing to flush, zeroing is never slower than
 * writing, and several connections see one coherent device. */
static int ramzswap_can_true(void *handle)
{
        return 1;
}

static int ramzswap_can_fua(void *handle)
{
        return NBDKIT_FUA_NATIVE;
}

/* A cache request asks to bring data into fast storage; it already is, so the
 * request is a successful no-op (EMULATE would decompress pages for nothing). */
static int ramzswap_can_cache(void *handle)
{
        return NBDKIT_CACHE_NATIVE;
}

/* Report a failed device call once, naming it, and hand its errno to nbdkit. */
static int fail(const char *what, uint32_t count, uint64_t offset, int r)
{
        nbdkit_error("%s of %" PRIu32 " bytes at offset %" PRIu64 " failed: %s", what,
                     count, offset, errstr(-r));
        nbdkit_set_error(-r);
        return -1;
}

static int ramzswap_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
                          uint32_t flags)
{
        int r = rzs_device_read(device, buf, count, offset);

        return r < 0 ? fail("read", count, offset, r) : 0;
}

/* FUA needs no work: a completed write is as durable as this device gets. */
static int ramzswap_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
                           uint32_t flags)
{
        int r = rzs_device_write(device, buf, count, offset);

        return r < 0 ? fail("write", count, offset, r) : 0;
}

static int ramzswap_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        int r = rzs_device_trim(device, count, offset);

        return r < 0 ? fail("trim", count, offset, r) : 0;
}

/* NBDKIT_FLAG_MAY_TRIM and NBDKIT_FLAG_FAST_ZERO need no handling: zeroing always
 * frees the pages, and it is always fast. */
static int ramzswap_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        int r = rzs_device_zero(device, count, offset);

        return r < 0 ? fail("write zeroes", count, offset, r) : 0;
}

static int ramzswap_flush(void *handle, uint32_t flags)
{
        return 0;
}

static int ramzswap_cache(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        return 0;
}

#define ramzswap_config_help                                                             \
        "disksize=<SIZE>      (magic key) Device size (default: 25% of RAM).\n"          \
        "memlimit=<SIZE>      Most memory the compressed pages may use\n"                \
        "                     (default: 15% of RAM or disksize, whichever is less).\n"   \
        "reserve=<SIZE>       Pool memory faulted in at start (default: 0).\n"           \
        "compressor=lzo       Page compressor (default: lzo)."

static struct nbdkit_plugin plugin = {
    .name = "ramzswap",
    .longname = "ramzswap compressed RAM swap device",
    .version = RAMZSWAP_VERSION,
    .description = "Compressed in-memory block device for swap (compcache).",
    .config = ramzswap_config,
    .config_complete = ramzswap_config_complete,
    .config_help = ramzswap_config_help,
    .magic_config_key = "disksize",
    .get_ready = ramzswap_get_ready,
    .cleanup = ramzswap_cleanup,
    .unload = ramzswap_cleanup,
    .dump_plugin = ramzswap_dump_plugin,
    .open = ramzswap_open,
    .get_size = ramzswap_get_size,
    .block_size = ramzswap_block_size,
    .can_write = ramzswap_can_true,
    .can_flush = ramzswap_can_true,
    .can_trim = ramzswap_can_true,
    .can_zero = ramzswap_can_true,
    .can_fast_zero = ramzswap_can_true,
    .can_multi_conn = ramzswap_can_true,
    .can_fua = ramzswap_can_fua,
    .can_cache = ramzswap_can_cache,
    .pread = ramzswap_pread,
    .pwrite = ramzswap_pwrite,
    .trim = ramzswap_trim,
    .zero = ramzswap_zero,
    .flush = ramzswap_flush,
    .cache = ramzswap_cache,
};

NBDKIT_REGISTER_PLUGIN(plugin)
