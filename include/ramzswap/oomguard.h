/* ramzswap: the OOM guard, which ends a swap livelock.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: when the device is full (memlimit reached, no backing store, or the pool
 * may not grow) it refuses swap writes with ENOSPC. The kernel keeps each refused
 * page dirty in its swap cache and tries again; its reclaim keeps "making progress"
 * on those retries, so the OOM killer never runs and the machine livelocks (the
 * in-kernel zram does the same at its mem_limit). The guard notices that state and
 * asks the kernel's OOM killer to act once, by writing 'f' to /proc/sysrq-trigger:
 * the killer ends the process with the highest badness, which is never the server
 * (it runs with oom_score_adj -1000 under ramzswapctl).
 *
 * The state: for `window` consecutive periods the device was refusing (writes
 * failed, and no period since saw writes get through without failures), no page
 * was written, and the machine was out of memory: MemFree under low_bytes while
 * tasks stalled on memory for at least half the period (PSI). The kernel may keep
 * retrying the refused writes or stop sending anything at all; either way nothing
 * moves. Each condition matters: refused writes alone happen on a machine that
 * still has memory (a cgroup limit pushing pages out); little free memory alone is
 * normal on a machine full of page cache; stalls alone are the kernel's business
 * while swap writes succeed. After firing, the guard needs a whole new window
 * before it fires again, so it never asks more than once per window.
 *
 * The decision (rzs_oomguard_judge) is a pure function of the samples, so tests feed
 * it samples. The thread samples once a period: the device's counters and the
 * lowmem module's reading of meminfo, zoneinfo and /proc/pressure/memory into
 * stack buffers, on descriptors opened at create (the sysrq trigger can only be
 * opened as root; the descriptor keeps working after the server drops
 * privileges). It allocates nothing once started.
 *
 * Lifecycle, as for the stats server: create in .get_ready (errors visible), start
 * in .after_fork (threads do not survive fork), destroy at unload.
 */
#ifndef RAMZSWAP_OOMGUARD_H
#define RAMZSWAP_OOMGUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "ramzswap/device.h"

/* One look at the device and the machine. */
struct rzs_oomguard_sample {
        uint64_t num_writes;    /* pages written (cumulative) */
        uint64_t failed_writes; /* write requests refused (cumulative) */
        uint64_t mem_free;      /* MemFree, bytes */
        uint64_t mem_available; /* MemAvailable, bytes */
        uint64_t stall_us;      /* PSI memory "some" total, microseconds */
        bool stall_valid;       /* false: no PSI on this kernel */
};

/* When a period counts as stuck, and for how many periods in a row. */
struct rzs_oomguard_rule {
        unsigned window;    /* periods in a row; >= 1 */
        uint64_t low_bytes; /* memory is out when MemFree is under this, and */
        uint64_t stall_us;  /* tasks stalled on memory at least this long in the
                             * period (PSI); without PSI: MemAvailable under
                             * low_bytes instead */
};

/* The judge's memory between samples. Zero it to start. */
struct rzs_oomguard_state {
        struct rzs_oomguard_sample last;
        bool have_last;
        bool refusing;          /* writes failed, and no clean period since */
        unsigned stuck_periods; /* consecutive periods in the livelock state */
};

/* Feed one sample. Returns true when the guard should fire now (and restarts the
 * count, so the next firing needs another full window). O(1). */
bool rzs_oomguard_judge(struct rzs_oomguard_state *st,
                        const struct rzs_oomguard_sample *now,
                        const struct rzs_oomguard_rule *rule);

struct rzs_oomguard_config {
        struct rzs_device *dev; /* counters are read from it; it outlives the guard */
        const char *sysrq;      /* NULL = /proc/sysrq-trigger; tests give a file */
        const char *meminfo;    /* NULL = /proc/meminfo; tests give a file */
        const char *zoneinfo;   /* NULL = /proc/zoneinfo; tests give a file */
        const char *pressure;   /* NULL = /proc/pressure/memory; tests give a file */
        unsigned period_ms;     /* 0 = RZS_OOMGUARD_PERIOD_MS */
        unsigned window;        /* periods; 0 = RZS_OOMGUARD_WINDOW */
        uint64_t low_bytes;     /* MemFree under which memory may be out (see
                                 * rzs_oomguard_rule); 0 = twice the kernel's
                                 * reserve (the low watermarks with any boost, see
                                 * lowmem.h), read each period */
};

#define RZS_OOMGUARD_PERIOD_MS 1000
#define RZS_OOMGUARD_WINDOW    10
#define RZS_OOMGUARD_STALL_PCT 50 /* share of a period stalled on memory (PSI) */

struct rzs_oomguard;

/* Open the trigger and lowmem's files. Returns 0 and *out, or -ENOMEM, or the errno of
 * the failed open (-EACCES when not root). msg (may be NULL) gets one sentence naming the
 * file on failure. The thread is not started. */
int rzs_oomguard_create(const struct rzs_oomguard_config *cfg, struct rzs_oomguard **out,
                        char *msg, size_t msglen);

/* Start the sampling thread, once, in the process that serves. Returns 0, -EALREADY,
 * or the pthread_create error. */
int rzs_oomguard_start(struct rzs_oomguard *g);

/* Take one sample and judge it, firing if the livelock has lasted a window: what
 * the thread does once a period. For tests, which drive the guard without the
 * thread; never call it while the thread runs. */
void rzs_oomguard_poll(struct rzs_oomguard *g);

/* Times the guard asked the OOM killer to act. Thread-safe. */
uint64_t rzs_oomguard_fired(const struct rzs_oomguard *g);

/* Stop and join the thread (if started), close the files. NULL is allowed. */
void rzs_oomguard_destroy(struct rzs_oomguard *g);

#endif /* RAMZSWAP_OOMGUARD_H */
