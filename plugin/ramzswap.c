/* ramzswap: the nbdkit plugin, glue between nbdkit and the core device.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Config flows one way: .config fills `params` and rejects unknown or repeated keys,
 * .config_complete applies defaults and validates with overflow-checked arithmetic
 * (and sizes up the backing store), .get_ready builds the one device every
 * connection shares, checks that memory may be locked and binds the stats socket
 * (errors there are still visible to the user), .after_fork locks memory, drops
 * capabilities and starts the stats thread (none of these survive nbdkit's fork),
 * .cleanup tears down the stats server and then the device.
 * Each data callback is one call into the device (include/ramzswap/device.h), which
 * checks alignment and counts refused requests itself; the plugin turns a negative
 * errno into one nbdkit_error and nbdkit_set_error.
 *
 * The device is thread-safe, so the thread model is fully parallel. The globals below
 * are written only before serving starts (config, get_ready, after_fork, the last
 * before the stats thread exists) and after it ends.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "ramzswap/backing.h"
#include "ramzswap/codec.h"
#include "ramzswap/device.h"
#include "ramzswap/harden.h"
#include "ramzswap/oomguard.h"
#include "ramzswap/stats_server.h"

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

/* Parameters as given on the command line; bit i of `seen` is set once key i has been
 * given, so a repeated key is an error. */
enum param_key {
        KEY_DISKSIZE,
        KEY_MEMLIMIT,
        KEY_RESERVE,
        KEY_COMPRESSOR,
        KEY_STATS,
        KEY_MLOCK,
        KEY_BACKING,
        KEY_BACKING_FORCE,
        KEY_OOMKILL,
        KEY_WORKSPACES,
        KEY_COUNT
};

static const char *const key_names[KEY_COUNT] = {
    [KEY_DISKSIZE] = "disksize", [KEY_MEMLIMIT] = "memlimit",
    [KEY_RESERVE] = "reserve",   [KEY_COMPRESSOR] = "compressor",
    [KEY_STATS] = "stats",       [KEY_MLOCK] = "mlock",
    [KEY_BACKING] = "backing",   [KEY_BACKING_FORCE] = "backing-force",
    [KEY_OOMKILL] = "oomkill",   [KEY_WORKSPACES] = "workspaces",
};

static struct {
        unsigned seen;             /* bit per enum param_key */
        uint64_t disksize;         /* bytes; default 25% of RAM */
        uint64_t memlimit;         /* bytes; default min(15% of RAM, disksize) */
        uint64_t reserve;          /* bytes; default 0 */
        const char *compressor;    /* a codec's own name (rzs_codec_find) */
        char *stats;               /* socket path (absolute, malloc'd) or NULL */
        enum rzs_mlock_mode mlock; /* default auto */
        char *backing;             /* store path (absolute, malloc'd) or NULL */
        bool backing_force;
        bool oomkill;        /* run the OOM guard (oomguard.h) */
        unsigned workspaces; /* compression buffers; 0 = the device's default (16) */
} params = {.compressor = "lzo", .mlock = RZS_MLOCK_AUTO};

/* The RAM-derived limits below keep a default or a typo from making the server
 * fault in most of the machine at start, where the swap it serves cannot help. */
#define RESERVE_MAX_PCT 50 /* reserve= at most this share of RAM */
#define TABLE_MAX_PCT   25 /* the page table (8 bytes a page) at most this share */

static struct rzs_device *device;
static struct rzs_stats_server *stats_server;
static struct rzs_oomguard *oomguard;
/* Memory the process will still map after locking (for the RLIMIT_MEMLOCK check),
 * set in .get_ready. */
static uint64_t lock_more_bytes;
/* Whether .get_ready found that memory may be locked; if not, it already warned. */
static bool lock_permitted;
/* Whether .get_ready tuned malloc (warm_heap); if not, it already warned. */
static bool malloc_tuned;
/* What .after_fork's hardening did; read by the stats thread, which starts after. */
static struct rzs_harden_state harden;

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

/* nbdkit_parse_bool says what it could not read; this adds which key it was. */
static int parse_bool_param(const char *key, const char *value, bool *out)
{
        int r = nbdkit_parse_bool(value);

        if (r == -1) {
                nbdkit_error("invalid %s=%s (use on or off)", key, value);
                return -1;
        }
        *out = r;
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
        const struct rzs_codec *codec;
        const char *const *names;
        char list[64];
        size_t n;

        if (rzs_codec_find(value, &codec) == 0) {
                params.compressor = codec->name;
                return 0;
        }
        names = rzs_codec_names(&n);
        nbdkit_error("unknown compressor '%s' (available: %s)", value,
                     join(list, sizeof list, names, n, ", "));
        return -1;
}

/* One buffer per request compressed at once: nbdkit runs 16 threads per
 * connection unless told otherwise (-t), and offers no way to ask how many. */
static int parse_workspaces(const char *value)
{
        if (nbdkit_parse_unsigned("workspaces", value, &params.workspaces) == -1)
                return -1;
        if (params.workspaces < 1 || params.workspaces > 4096) {
                nbdkit_error("workspaces=%s: must be 1 to 4096", value);
                return -1;
        }
        return 0;
}

static int ramzswap_config(const char *key, const char *value)
{
        char list[256];
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
        case KEY_STATS:
                return (params.stats = nbdkit_absolute_path(value)) ? 0 : -1;
        case KEY_MLOCK:
                if (rzs_mlock_mode_parse(value, &params.mlock) < 0) {
                        nbdkit_error("invalid mlock=%s (use on, off or auto)", value);
                        return -1;
                }
                return 0;
        case KEY_BACKING:
                return (params.backing = nbdkit_absolute_path(value)) ? 0 : -1;
        case KEY_BACKING_FORCE:
                return parse_bool_param(key, value, &params.backing_force);
        case KEY_OOMKILL:
                return parse_bool_param(key, value, &params.oomkill);
        case KEY_WORKSPACES:
                return parse_workspaces(value);
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

/* Size up the backing store: disksize defaults to its size and may not exceed it.
 * It is opened (and checked) here so that a wrong path stops nbdkit with a clear
 * sentence; .get_ready opens it again for good. */
static int check_backing(bool disksize_given)
{
        struct rzs_backing *b;
        char why[256];
        uint64_t size;
        int r;

        if (params.backing == NULL) {
                if (params.backing_force) {
                        nbdkit_error("backing-force needs backing=PATH");
                        return -1;
                }
                return 0;
        }
        r = rzs_backing_open(params.backing, params.backing_force, &b, why, sizeof why);
        if (r < 0) {
                nbdkit_error("backing=%s: cannot use it: it %s%s", params.backing, why,
                             r == -EEXIST ? "; give backing-force=true to overwrite it"
                             : r == -EDEADLK
                                 ? "; give backing-force=true to use it anyway"
                                 : "");
                return -1;
        }
        size = rzs_backing_size(b);
        rzs_backing_close(b);
        if (!disksize_given) {
                params.disksize = size;
        } else if (params.disksize / RZS_PAGE_SIZE * RZS_PAGE_SIZE > size) {
                nbdkit_error("disksize (%" PRIu64 " bytes) is larger than the backing "
                             "store %s (%" PRIu64 " bytes)",
                             params.disksize, params.backing, size);
                return -1;
        }
        return 0;
}

/* Both are faulted in when the device is built, before anything is served. */
static int check_against_ram(uint64_t ram)
{
        uint64_t table = params.disksize / RZS_PAGE_SIZE * 8;

        if (params.reserve > ram / 100 * RESERVE_MAX_PCT) {
                nbdkit_error("reserve (%" PRIu64 " bytes) is more than %d%% of RAM "
                             "(%" PRIu64 " bytes); it is faulted in at start: choose a "
                             "smaller reserve",
                             params.reserve, RESERVE_MAX_PCT, ram);
                return -1;
        }
        if (table > ram / 100 * TABLE_MAX_PCT) {
                nbdkit_error("disksize (%" PRIu64 " bytes) needs a page table of %" PRIu64
                             " bytes, more than %d%% of RAM (%" PRIu64 " bytes); the "
                             "table is faulted in at start: choose a smaller disksize",
                             params.disksize, table, TABLE_MAX_PCT, ram);
                return -1;
        }
        return 0;
}

static int ramzswap_config_complete(void)
{
        uint64_t ram = ram_bytes();
        bool disksize_given = params.seen & (1u << KEY_DISKSIZE);
        bool memlimit_given = params.seen & (1u << KEY_MEMLIMIT);
        bool disksize_default = !disksize_given && params.backing == NULL;

        if (check_backing(disksize_given) < 0)
                return -1;
        if ((disksize_default || !memlimit_given) && ram == 0) {
                nbdkit_error("cannot find the amount of RAM: give disksize= "
                             "and memlimit= explicitly");
                return -1;
        }
        if (disksize_default)
                params.disksize = ram / 4;
        /* Slots are whole pages; what is left over is not part of the device. */
        params.disksize -= params.disksize % RZS_PAGE_SIZE;
        if (params.disksize == 0) {
                nbdkit_error("disksize must be at least one page (%u bytes)",
                             RZS_PAGE_SIZE);
                return -1;
        }

        if (!memlimit_given) {
                /* ram / 100 * 15 cannot overflow; the rounding error is < 15 bytes. */
                params.memlimit = ram / 100 * 15;
                if (params.memlimit > params.disksize)
                        params.memlimit = params.disksize;
                /* A default, unlike a given value, may be capped: it is reported. */
                if (params.memlimit / RZS_PAGE_SIZE > RZS_POOL_MAX_PAGES)
                        params.memlimit = RZS_POOL_MAX_PAGES * RZS_PAGE_SIZE;
        }
        if (params.memlimit > params.disksize) {
                nbdkit_error("memlimit (%" PRIu64 " bytes) is larger than disksize "
                             "(%" PRIu64 " bytes%s)",
                             params.memlimit, params.disksize,
                             disksize_given     ? ""
                             : disksize_default ? ", 25% of RAM by default"
                                                : ", the backing store's size");
                return -1;
        }
        if (params.memlimit / RZS_PAGE_SIZE > RZS_POOL_MAX_PAGES) {
                /* Capped quietly, MemLimit would report a limit not in force. */
                nbdkit_error("memlimit (%" PRIu64 " bytes) is more than the pool can "
                             "address (%" PRIu64 " bytes, 2^22-1 pages of 4 KiB)",
                             params.memlimit, RZS_POOL_MAX_PAGES * RZS_PAGE_SIZE);
                return -1;
        }
        if (params.reserve > params.memlimit) {
                nbdkit_error("reserve (%" PRIu64 " bytes) is larger than memlimit "
                             "(%" PRIu64 " bytes)",
                             params.reserve, params.memlimit);
                return -1;
        }
        if (ram != 0 && check_against_ram(ram) < 0)
                return -1;
        nbdkit_debug("disksize=%" PRIu64 " memlimit=%" PRIu64 " reserve=%" PRIu64
                     " compressor=%s mlock=%s backing=%s",
                     params.disksize, params.memlimit, params.reserve, params.compressor,
                     rzs_mlock_mode_name(params.mlock),
                     params.backing ? params.backing : "none");
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

/* nbdkit 1.32 has no warning call: nbdkit_error would call it an error, and
 * nbdkit_debug is shown only with -v. A warning the operator must see (memory not
 * locked) before nbdkit forks goes to stderr, which then is the operator's
 * terminal. */
__attribute__((format(printf, 1, 2))) static void warn(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        flockfile(stderr);
        fputs("nbdkit: ramzswap: warning: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        funlockfile(stderr);
        va_end(ap);
}

/* From .after_fork on, stderr of a daemonised nbdkit is /dev/null; only nbdkit's
 * log reaches anyone (syslog once it has forked, stderr with -f), so a warning
 * goes there, as an "error" that says it is a warning. nbdkit names no plugin in
 * .after_fork's lines ("nbdkit: error: ..."), so the warning does. */
__attribute__((format(printf, 1, 2))) static void warn_log(const char *fmt, ...)
{
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        nbdkit_error("warning: ramzswap: %s", buf);
}

/* Runs on the stats thread. harden is complete before that thread starts. */
static int stats_snapshot(void *dev, struct rzs_stats *st, struct rzs_stats_facts *fa)
{
        rzs_device_get_stats(dev, st);
        st->oom_kill_requests = oomguard ? rzs_oomguard_fired(oomguard) : 0;
        *fa = (struct rzs_stats_facts){
            .compressor = params.compressor,
            .capabilities = harden.caps,
            .mlocked = harden.locked,
            .io_flusher = harden.io_flusher,
        };
        return 0;
}

static int create_stats_server(void)
{
        int r =
            rzs_stats_server_create(params.stats, stats_snapshot, device, &stats_server);

        switch (r) {
        case 0:
                return 0;
        case -EEXIST:
                nbdkit_error("stats=%s: a file or a live socket is already there; "
                             "remove it or choose another path",
                             params.stats);
                break;
        case -EPERM:
                nbdkit_error("stats=%s: its directory is writable by others and not "
                             "sticky: choose a private directory",
                             params.stats);
                break;
        case -ENAMETOOLONG:
                nbdkit_error("stats=%s: the path is too long for a unix socket (at most "
                             "%zu bytes)",
                             params.stats,
                             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
                break;
        default:
                nbdkit_error("stats=%s: cannot create the socket: %s", params.stats,
                             errstr(-r));
        }
        return -1;
}

/* The trigger file opens only as root, so here, before privileges go. */
static int create_oomguard(void)
{
        const struct rzs_oomguard_config cfg = {.dev = device};
        char why[256];
        int r = rzs_oomguard_create(&cfg, &oomguard, why, sizeof why);

        if (r < 0) {
                nbdkit_error("oomkill=on: %s (it needs root)", why[0] ? why : errstr(-r));
                return -1;
        }
        return 0;
}

static void ramzswap_cleanup(void)
{
        /* The stats and guard threads read the device: they go first. */
        rzs_stats_server_destroy(stats_server);
        stats_server = NULL;
        rzs_oomguard_destroy(oomguard);
        oomguard = NULL;
        rzs_device_destroy(device);
        device = NULL;
}

static void ramzswap_unload(void)
{
        ramzswap_cleanup();
        free(params.stats);
        free(params.backing);
        params.stats = params.backing = NULL;
}

static bool tune_malloc(void);

/* nbdkit runs this many worker threads per connection unless told otherwise (-t);
 * workspaces= is the user's word for how many it runs in all. */
#define NBDKIT_THREADS 16
/* Each worker's stack: glibc's default, RLIMIT_STACK, usually 8 MiB. */
#define WORKER_STACK (8u << 20)
/* The refill, stats and OOM-guard threads set their own stacks (256, 256 and
 * 64 KiB); 1 MiB covers them and their guard pages. */
#define HELPER_STACKS (1u << 20)

static unsigned worker_threads(void)
{
        return params.workspaces ? params.workspaces : NBDKIT_THREADS;
}

/* Memory mapped after locking, for the RLIMIT_MEMLOCK check: the pool up to
 * memlimit, the page table, and the stacks of every thread started later. */
static uint64_t lock_estimate(void)
{
        return params.memlimit + params.disksize / RZS_PAGE_SIZE * 8 +
               (uint64_t)worker_threads() * WORKER_STACK + HELPER_STACKS;
}

/* What lock_estimate assumed, for a message about the limit. */
static const char *assumption(char *buf, size_t size)
{
        snprintf(buf, size,
                 "assuming %u threads of %u MiB stacks; raise workspaces= if you run "
                 "nbdkit -t with more",
                 worker_threads(), WORKER_STACK >> 20);
        return buf;
}

static int ramzswap_get_ready(void)
{
        const struct rzs_config cfg = {
            .disksize = params.disksize,
            .memlimit = params.memlimit,
            .reserve = params.reserve,
            .compressor = params.compressor,
            .workspaces = params.workspaces,
            .backing = params.backing,
            .backing_force = params.backing_force,
        };
        char why[256], ass[128];
        int r = rzs_device_create_msg(&cfg, &device, why, sizeof why);

        if (r < 0) {
                nbdkit_error("cannot create the device: %s", why[0] ? why : errstr(-r));
                return -1;
        }
        lock_more_bytes = lock_estimate();
        r = rzs_harden_check(params.mlock, lock_more_bytes, &lock_permitted, why,
                             sizeof why);
        /* The only refusal (-EPERM) and the only warning are about the limit. */
        if (r == -EPERM) {
                nbdkit_error("%s (%s)", why, assumption(ass, sizeof ass));
                goto fail;
        }
        if (r < 0) {
                nbdkit_error("%s", why);
                goto fail;
        }
        if (why[0])
                warn("%s (%s)", why, assumption(ass, sizeof ass));
        malloc_tuned = tune_malloc();
        if (params.stats && create_stats_server() < 0)
                goto fail;
        if (params.oomkill && create_oomguard() < 0)
                goto fail;
        return 0;

fail:
        ramzswap_cleanup();
        return -1;
}

/* nbdkit keeps one request buffer per worker thread and grows it with realloc the
 * first time a larger request arrives, and for a swap device the first large request
 * is the first swap-out: glibc would map that buffer fresh (at or over its 128 KiB
 * mmap threshold) and fault it in exactly when the machine is out of memory. In a
 * locked, IO_FLUSHER server that fault cannot reclaim anything (measured: a worker
 * spinning in try_to_free_pages at the first swap-out of the e2e global scenario).
 * So: one arena for every thread, requests up to MAX_REQUEST served from the heap
 * and never trimmed (set in .get_ready), and after locking (or without a lock)
 * WARM_HEAP_BYTES of heap faulted in (under the lock, if any, so it stays resident),
 * enough for WARM_HEAP_BYTES / 256 KiB threads' largest swap requests (the kernel merges
 * swap writes into 128 KiB). Not a guarantee: an arena made before this (a thread that
 * allocated earlier) is not warmed. */
#define WARM_HEAP_BYTES (4u << 20)

/* Tuning survives fork, so it is done in .get_ready where a failure is still seen
 * on stderr. Returns false when malloc refused it. */
static bool tune_malloc(void)
{
        if (!mallopt(M_ARENA_MAX, 1) || !mallopt(M_MMAP_THRESHOLD, MAX_REQUEST) ||
            !mallopt(M_TRIM_THRESHOLD, INT32_MAX)) {
                warn("cannot tune malloc: the first swap requests may fault in memory");
                return false;
        }
        return true;
}

static void warm_heap(void)
{
        void *p;

        if (!malloc_tuned)
                return;
        p = malloc(WARM_HEAP_BYTES);
        if (p == NULL) {
                warn_log("cannot pre-fault %u bytes of heap", WARM_HEAP_BYTES);
                return;
        }
        /* volatile: the compiler may not drop a memset before free. */
        for (size_t i = 0; i < WARM_HEAP_BYTES; i += 4096)
                ((volatile char *)p)[i] = 0;
        free(p);
}

/* From here on the device's I/O never faults pool memory in: a refill thread keeps
 * a stock of faulted pages (include/ramzswap/device.h, Pool growth). Started after
 * locking, so the stock is locked too. Without the thread the device still works,
 * faulting on the I/O path as before: worth a warning, not a refusal to serve. */
static void start_refill(void)
{
        int r = rzs_device_start_refill(device);

        if (r < 0)
                warn_log("cannot start the pool refill thread (%s): swap-outs will fault "
                         "memory in themselves",
                         errstr(-r));
}

/* Memory locks and threads do not survive fork: both happen here, hardening first
 * because dropping capabilities needs a process with a single thread. */
static int ramzswap_after_fork(void)
{
        char msg[RZS_HARDEN_MSG_MAX];
        int r = rzs_harden_apply(params.mlock, lock_more_bytes, &harden, msg, sizeof msg);

        if (r < 0) {
                nbdkit_error("%s", msg);
                return -1;
        }
        if (msg[0] && lock_permitted)
                warn_log("%s", msg);
        nbdkit_debug("mlock=%s: memory locked: %s, IO flusher: %s, capabilities kept: %s",
                     rzs_mlock_mode_name(params.mlock), harden.locked ? "yes" : "no",
                     harden.io_flusher ? "yes" : "no", harden.caps);
        /* Unlocked too: the first swap-out must not fault the heap in either. */
        warm_heap();
        start_refill();
        if (oomguard) {
                r = rzs_oomguard_start(oomguard);
                if (r < 0) {
                        nbdkit_error("oomkill=on: cannot start its thread: %s",
                                     errstr(-r));
                        return -1;
                }
        }
        if (stats_server) {
                r = rzs_stats_server_start(stats_server);
                if (r < 0) {
                        nbdkit_error("stats=%s: cannot start the statistics thread: %s",
                                     params.stats, errstr(-r));
                        return -1;
                }
        }
        return 0;
}

static void ramzswap_dump_plugin(void)
{
        size_t n;
        const char *const *names = rzs_codec_names(&n);
        char list[64];

        printf("ramzswap_version=%s\n", RAMZSWAP_VERSION);
        printf("ramzswap_compressors=%s\n", join(list, sizeof list, names, n, ","));
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

/* Failures are logged per kind of errno, each with the stats counter that counts
 * them all. */
enum fail_class { FC_EINVAL, FC_EIO, FC_ENOSPC, FC_OTHER, FC_COUNT };

static const char *const fail_counter[FC_COUNT] = {
    [FC_EINVAL] = "InvalidIO",
    [FC_EIO] = "FailedReads/FailedWrites",
    [FC_ENOSPC] = "FailedWrites",
    [FC_OTHER] = "FailedReads/FailedWrites",
};

static enum fail_class fail_class_of(int e)
{
        switch (e) {
        case EINVAL:
                return FC_EINVAL;
        case EIO:
                return FC_EIO;
        case ENOSPC:
                return FC_ENOSPC;
        default:
                return FC_OTHER;
        }
}

/* Report a failed device call, naming it, and hand its errno to nbdkit. Each kind
 * of failure is logged on its 1st, 2nd, 4th, 8th... occurrence only: a full device
 * refuses every write until the kernel frees swap, and a client may repeat a
 * misaligned request or a read of a lost page without end, and a line per request
 * through a slow console stalls the server (seen in the e2e guest). */
static int fail(const char *what, uint32_t count, uint64_t offset, int r)
{
        static _Atomic uint64_t seen[FC_COUNT];
        enum fail_class c = fail_class_of(-r);
        uint64_t n = atomic_fetch_add(&seen[c], 1) + 1;

        if ((n & (n - 1)) == 0)
                nbdkit_error("%s of %" PRIu32 " bytes at offset %" PRIu64
                             " failed: %s%s%s%s",
                             what, count, offset, errstr(-r),
                             n > 1 ? " (logged at powers of two; see " : "",
                             n > 1 ? fail_counter[c] : "", n > 1 ? ")" : "");
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
        "disksize=<SIZE>      (magic key) Device size (default: 25% of RAM,\n"           \
        "                     or the backing store's size).\n"                           \
        "memlimit=<SIZE>      Most memory the compressed pages may use\n"                \
        "                     (default: 15% of RAM or disksize, whichever is less).\n"   \
        "reserve=<SIZE>       Pool memory faulted in at start (default: 0).\n"           \
        "workspaces=<N>       Pages compressed at once; match nbdkit -t\n"               \
        "                     (default: 16).\n"                                          \
        "compressor=lzo       Page compressor (default: lzo).\n"                         \
        "backing=<PATH>       File or block device taking incompressible pages\n"        \
        "                     and pages past memlimit (default: none).\n"                \
        "backing-force=true   Use the backing store even if it holds data.\n"            \
        "stats=<PATH>         Serve statistics on this unix socket (ramzswap-stat).\n"   \
        "mlock=on|off|auto    Lock the server in RAM (default: auto = if permitted).\n"  \
        "oomkill=on|off       When the device is full and the machine out of memory\n"   \
        "                     for 10 s, ask the kernel's OOM killer to act\n"            \
        "                     (/proc/sysrq-trigger; root; default: off)."

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
    .after_fork = ramzswap_after_fork,
    .cleanup = ramzswap_cleanup,
    .unload = ramzswap_unload,
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
