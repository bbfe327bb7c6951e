/* ramzswap: the OOM guard (see oomguard.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ramzswap/lowmem.h"
#include "ramzswap/monotonic.h"
#include "ramzswap/oomguard.h"

/* The thread sleeps almost always; a small stack counts little against
 * RLIMIT_MEMLOCK in a locked server. */
#define GUARD_STACK_SIZE (64 * 1024)

struct rzs_oomguard {
        struct rzs_device *dev;
        int sysrq_fd;
        struct rzs_lowmem *lowmem;
        unsigned period_ms;
        struct rzs_oomguard_rule rule; /* low_bytes 0: twice the reserve */
        _Atomic uint64_t fired;
        struct rzs_oomguard_state judged; /* only the poller touches it */
        bool started;
        bool stop; /* under lock */
        pthread_mutex_t lock;
        pthread_cond_t wake; /* CLOCK_MONOTONIC */
        pthread_t thread;
};

/* "Refusing" starts when a write fails, and ends in a period where writes got
 * through and none failed. A period is stuck while the device is refusing, nothing got
 * written and the machine is out of memory. The kernel may go on retrying the
 * refused pages, or stop sending anything at all once its own allocations for the
 * retries fail (measured in a QEMU guest: swap writeout waiting in mempool_alloc
 * for a bio); both are the livelock. */
/* Out of memory: MemFree under the threshold, and tasks stalled on memory for
 * much of the period (PSI). MemAvailable is no use here: in the measured no-fit
 * livelock it still counted 8 MB of reclaimable slab that reclaim was not
 * getting back, while 2.4 MB were free. Without PSI, MemAvailable it is. */
static bool memory_out(const struct rzs_oomguard_state *st,
                       const struct rzs_oomguard_sample *now,
                       const struct rzs_oomguard_rule *rule)
{
        if (now->mem_free >= rule->low_bytes)
                return false;
        if (now->stall_valid && st->last.stall_valid)
                return now->stall_us - st->last.stall_us >= rule->stall_us;
        return now->mem_available < rule->low_bytes;
}

bool rzs_oomguard_judge(struct rzs_oomguard_state *st,
                        const struct rzs_oomguard_sample *now,
                        const struct rzs_oomguard_rule *rule)
{
        bool wrote = st->have_last && now->num_writes != st->last.num_writes;
        bool refused = st->have_last && now->failed_writes != st->last.failed_writes;
        bool stuck;

        /* Within one period the order is unknown: a refusal wins, since it is the
         * device's latest word if the kernel stops sending right after it. */
        if (refused)
                st->refusing = true;
        else if (wrote)
                st->refusing = false;
        stuck = st->have_last && st->refusing && !wrote && memory_out(st, now, rule);
        st->last = *now;
        st->have_last = true;
        st->stuck_periods = stuck ? st->stuck_periods + 1 : 0;
        if (st->stuck_periods < rule->window)
                return false;
        st->stuck_periods = 0;
        return true;
}

/* One look at the device and the machine. Without a readable meminfo the
 * memory reads as plentiful, so a broken /proc never makes the guard fire. */
static void take_sample(struct rzs_oomguard *g, struct rzs_oomguard_sample *s,
                        uint64_t *watermark)
{
        struct rzs_lowmem_state lm;
        struct rzs_stats stats;

        rzs_device_get_stats(g->dev, &stats);
        *s = (struct rzs_oomguard_sample){.num_writes = stats.num_writes,
                                          .failed_writes = stats.failed_writes,
                                          .mem_free = UINT64_MAX,
                                          .mem_available = UINT64_MAX};
        *watermark = 0;
        if (rzs_lowmem_read(g->lowmem, &lm)) {
                s->mem_free = lm.mem_free;
                s->mem_available = lm.mem_available;
                *watermark = lm.watermark;
        }
        s->stall_us = lm.stall_us;
        s->stall_valid = lm.stall_valid;
}

static void fire(struct rzs_oomguard *g)
{
        /* The kernel logs the OOM kill; a failed write leaves nothing to do but
         * try again after another window. */
        if (pwrite(g->sysrq_fd, "f", 1, 0) == 1)
                atomic_fetch_add_explicit(&g->fired, 1, memory_order_relaxed);
}

/* Sleep one period; false once destroy asked the thread to stop. */
static bool wait_period(struct rzs_oomguard *g)
{
        struct timespec until = rzs_deadline_ms(g->period_ms);
        bool go_on;

        pthread_mutex_lock(&g->lock);
        while (!g->stop &&
               pthread_cond_timedwait(&g->wake, &g->lock, &until) != ETIMEDOUT)
                ;
        go_on = !g->stop;
        pthread_mutex_unlock(&g->lock);
        return go_on;
}

void rzs_oomguard_poll(struct rzs_oomguard *g)
{
        struct rzs_oomguard_rule rule = g->rule;
        struct rzs_oomguard_sample s;
        uint64_t watermark;

        take_sample(g, &s, &watermark);
        /* The reserve is read each period: it moves with the watermark boost. */
        if (rule.low_bytes == 0)
                rule.low_bytes = 2 * watermark;
        if (rzs_oomguard_judge(&g->judged, &s, &rule))
                fire(g);
}

static void *guard_thread(void *arg)
{
        struct rzs_oomguard *g = arg;

        while (wait_period(g))
                rzs_oomguard_poll(g);
        return NULL;
}

static void say(char *msg, size_t msglen, const char *path, int e)
{
        if (msg)
                snprintf(msg, msglen, "cannot open %s: %s", path, strerrordesc_np(e));
}

/* The sysrq trigger and lowmem's files; 0 or -errno, with msg naming the file. */
static int open_files(struct rzs_oomguard *g, const struct rzs_oomguard_config *cfg,
                      char *msg, size_t msglen)
{
        const char *sysrq = cfg->sysrq ? cfg->sysrq : "/proc/sysrq-trigger";
        const struct rzs_lowmem_config lc = {.meminfo = cfg->meminfo,
                                             .zoneinfo = cfg->zoneinfo,
                                             .pressure = cfg->pressure};
        int r;

        g->sysrq_fd = open(sysrq, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (g->sysrq_fd < 0) {
                say(msg, msglen, sysrq, errno);
                return -errno;
        }
        r = rzs_lowmem_open(&lc, &g->lowmem);
        if (r < 0)
                say(msg, msglen, cfg->meminfo ? cfg->meminfo : "/proc/meminfo", -r);
        return r;
}

static int init_sync(struct rzs_oomguard *g)
{
        int r = rzs_cond_init_monotonic(&g->wake);

        if (r)
                return -r;
        r = pthread_mutex_init(&g->lock, NULL);
        if (r)
                pthread_cond_destroy(&g->wake);
        return -r;
}

int rzs_oomguard_create(const struct rzs_oomguard_config *cfg, struct rzs_oomguard **out,
                        char *msg, size_t msglen)
{
        struct rzs_oomguard *g = calloc(1, sizeof *g);
        int r;

        *out = NULL;
        if (msg && msglen)
                msg[0] = '\0';
        if (g == NULL)
                return -ENOMEM;
        g->dev = cfg->dev;
        g->period_ms = cfg->period_ms ? cfg->period_ms : RZS_OOMGUARD_PERIOD_MS;
        g->rule = (struct rzs_oomguard_rule){
            .window = cfg->window ? cfg->window : RZS_OOMGUARD_WINDOW,
            .low_bytes = cfg->low_bytes,
            .stall_us = (uint64_t)g->period_ms * 1000 * RZS_OOMGUARD_STALL_PCT / 100,
        };
        g->sysrq_fd = -1;
        r = open_files(g, cfg, msg, msglen);
        if (r == 0)
                r = init_sync(g);
        if (r < 0) {
                if (g->sysrq_fd >= 0)
                        close(g->sysrq_fd);
                rzs_lowmem_close(g->lowmem);
                free(g);
                return r;
        }
        *out = g;
        return 0;
}

int rzs_oomguard_start(struct rzs_oomguard *g)
{
        pthread_attr_t attr;
        int r;

        if (g->started)
                return -EALREADY;
        r = pthread_attr_init(&attr);
        if (r)
                return -r;
        r = pthread_attr_setstacksize(&attr, GUARD_STACK_SIZE);
        if (!r)
                r = pthread_create(&g->thread, &attr, guard_thread, g);
        pthread_attr_destroy(&attr);
        if (r)
                return -r;
        g->started = true;
        return 0;
}

uint64_t rzs_oomguard_fired(const struct rzs_oomguard *g)
{
        return atomic_load_explicit(&g->fired, memory_order_relaxed);
}

void rzs_oomguard_destroy(struct rzs_oomguard *g)
{
        if (g == NULL)
                return;
        if (g->started) {
                pthread_mutex_lock(&g->lock);
                g->stop = true;
                pthread_cond_signal(&g->wake);
                pthread_mutex_unlock(&g->lock);
                pthread_join(g->thread, NULL);
        }
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->lock);
        close(g->sysrq_fd);
        rzs_lowmem_close(g->lowmem);
        free(g);
}
