/* ramzswap: condition variables timed on the monotonic clock.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: the background threads (pool refill, OOM guard) and the I/O path's
 * bounded wait for a refill all wait "at most N ms". Timed on CLOCK_MONOTONIC, a
 * wait neither stretches nor shrinks when the wall clock is set. One place for
 * the attribute dance and the deadline arithmetic.
 */
#ifndef RAMZSWAP_MONOTONIC_H
#define RAMZSWAP_MONOTONIC_H

#include <pthread.h>
#include <time.h>

/* Initialise cv to time its waits on CLOCK_MONOTONIC. Returns 0 or an errno
 * value (as pthread_cond_init does). */
static inline int rzs_cond_init_monotonic(pthread_cond_t *cv)
{
        pthread_condattr_t attr;
        int r = pthread_condattr_init(&attr);

        if (r)
                return r;
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (!r)
                r = pthread_cond_init(cv, &attr);
        pthread_condattr_destroy(&attr);
        return r;
}

/* The CLOCK_MONOTONIC time ms milliseconds from now. */
static inline struct timespec rzs_deadline_ms(unsigned ms)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

/* Wait on cv (initialised by rzs_cond_init_monotonic, lock held) until signalled or
 * ms milliseconds have passed. Returns 0 or ETIMEDOUT; callers re-check their
 * condition either way (wake-ups may be spurious). */
static inline int rzs_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *lock, unsigned ms)
{
        struct timespec t = rzs_deadline_ms(ms);

        return pthread_cond_timedwait(cv, lock, &t);
}

#endif /* RAMZSWAP_MONOTONIC_H */
