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

#include "ramzswap/oomguard.h"

/* The thread sleeps almost always; a small stack counts little against
 * RLIMIT_MEMLOCK in a locked server. */
#define GUARD_STACK_SIZE (64 * 1024)
/* MemAvailable is the third line of meminfo; this reads the first few. */
#define MEMINFO_TEXT 256

struct rzs_oomguard {
        struct rzs_device *dev;
        int sysrq_fd;
        int meminfo_fd;
        unsigned period_ms;
        unsigned window;
        uint64_t low_bytes;
        _Atomic uint64_t fired;
        struct rzs_oomguard_state judged; /* only the poller touches it */
        bool started;
        bool stop; /* under lock */
        pthread_mutex_t lock;
        pthread_cond_t wake; /* CLOCK_MONOTONIC */
        pthread_t thread;
};

/* "Refusing" starts when writes fail and none gets through, and ends when a write
 * gets through. A period is stuck while the device is refusing, nothing got
 * written and the machine is out of memory. The kernel may go on retrying the
 * refused pages, or stop sending anything at all once its own allocations for the
 * retries fail (measured in a QEMU guest: swap writeout waiting in mempool_alloc
 * for a bio); both are the livelock. */
bool rzs_oomguard_judge(struct rzs_oomguard_state *st,
                        const struct rzs_oomguard_sample *now, unsigned window,
                        uint64_t low_bytes)
{
        bool wrote = st->have_last && now->num_writes != st->last.num_writes;
        bool refused = st->have_last && now->failed_writes != st->last.failed_writes;
        bool stuck;

        if (wrote)
                st->refusing = false;
        else if (refused)
                st->refusing = true;
        stuck = st->refusing && !wrote && now->mem_available < low_bytes;
        st->last = *now;
        st->have_last = true;
        st->stuck_periods = stuck ? st->stuck_periods + 1 : 0;
        if (st->stuck_periods < window)
                return false;
        st->stuck_periods = 0;
        return true;
}

/* kB value of the meminfo line "name:" in text, or -1. */
static int64_t meminfo_kb(const char *text, const char *name)
{
        const char *p = strstr(text, name);

        return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

/* A single number from a small file such as /proc/sys/vm/min_free_kbytes, or -1. */
static int64_t read_number(const char *path)
{
        char buf[32];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        return strtoll(buf, NULL, 10);
}

uint64_t rzs_oomguard_default_low(void)
{
        char text[MEMINFO_TEXT];
        int64_t min_free_kb = read_number("/proc/sys/vm/min_free_kbytes");
        int64_t total_kb = -1;
        int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
        uint64_t low = 0;

        if (fd >= 0) {
                ssize_t n = pread(fd, text, sizeof text - 1, 0);

                text[n > 0 ? n : 0] = '\0';
                total_kb = meminfo_kb(text, "MemTotal:");
                close(fd);
        }
        if (min_free_kb > 0)
                low = (uint64_t)min_free_kb * 4 * 1024;
        if (total_kb > 0 && (uint64_t)total_kb * 1024 / 100 > low)
                low = (uint64_t)total_kb * 1024 / 100;
        return low ? low : UINT64_C(16) << 20;
}

/* MemAvailable in bytes; UINT64_MAX (never low) if it cannot be read, so a
 * broken /proc never makes the guard fire. */
static uint64_t mem_available(int fd)
{
        char text[MEMINFO_TEXT];
        ssize_t n = pread(fd, text, sizeof text - 1, 0);
        int64_t kb;

        if (n <= 0)
                return UINT64_MAX;
        text[n] = '\0';
        kb = meminfo_kb(text, "MemAvailable:");
        return kb < 0 ? UINT64_MAX : (uint64_t)kb * 1024;
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
        struct timespec until;
        bool go_on;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += g->period_ms / 1000;
        until.tv_nsec += (long)(g->period_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
        }
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
        struct rzs_oomguard_sample s;
        struct rzs_stats stats;

        rzs_device_get_stats(g->dev, &stats);
        s.num_writes = stats.num_writes;
        s.failed_writes = stats.failed_writes;
        s.mem_available = mem_available(g->meminfo_fd);
        if (rzs_oomguard_judge(&g->judged, &s, g->window, g->low_bytes))
                fire(g);
}

static void *guard_thread(void *arg)
{
        struct rzs_oomguard *g = arg;

        while (wait_period(g))
                rzs_oomguard_poll(g);
        return NULL;
}

static int open_or_say(const char *path, int flags, char *msg, size_t msglen)
{
        int fd = open(path, flags | O_CLOEXEC | O_NOCTTY);
        int e = errno;

        if (fd < 0 && msg)
                snprintf(msg, msglen, "cannot open %s: %s", path, strerrordesc_np(e));
        return fd < 0 ? -e : fd;
}

static int init_sync(struct rzs_oomguard *g)
{
        pthread_condattr_t attr;
        int r = pthread_condattr_init(&attr);

        if (r)
                return -r;
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (!r)
                r = pthread_cond_init(&g->wake, &attr);
        pthread_condattr_destroy(&attr);
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
        g->window = cfg->window ? cfg->window : RZS_OOMGUARD_WINDOW;
        g->low_bytes = cfg->low_bytes ? cfg->low_bytes : rzs_oomguard_default_low();
        g->sysrq_fd = open_or_say(cfg->sysrq ? cfg->sysrq : "/proc/sysrq-trigger",
                                  O_WRONLY, msg, msglen);
        g->meminfo_fd = open_or_say(cfg->meminfo ? cfg->meminfo : "/proc/meminfo",
                                    O_RDONLY, msg, msglen);
        r = g->sysrq_fd < 0 ? g->sysrq_fd : g->meminfo_fd < 0 ? g->meminfo_fd : 0;
        if (r == 0)
                r = init_sync(g);
        if (r < 0) {
                if (g->sysrq_fd >= 0)
                        close(g->sysrq_fd);
                if (g->meminfo_fd >= 0)
                        close(g->meminfo_fd);
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
        close(g->meminfo_fd);
        free(g);
}
