/* ramzswap: the page table. See include/ramzswap/table.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "ramzswap/table.h"

/* Tunable: default number of slot-lock stripes; plenty for nbdkit's 16 threads. */
#define DEFAULT_STRIPES 1024u

/* A mutex alone on its cache line, so threads locking neighbouring stripes do not
 * bounce one line between cores. */
struct stripe {
        pthread_mutex_t lock;
} __attribute__((aligned(64)));

struct rzs_table {
        uint64_t slots;
        unsigned stripe_mask;
        size_t map_len;
        rzs_entry *entries; /* mmap'd, slots entries */
        struct stripe *stripes;
};

int rzs_table_create(uint64_t slots, unsigned stripes, struct rzs_table **out)
{
        struct rzs_table *t;
        unsigned i;

        *out = NULL;
        if (stripes == 0)
                stripes = DEFAULT_STRIPES;
        if (slots == 0 || slots > SIZE_MAX / sizeof(rzs_entry) ||
            (stripes & (stripes - 1)) != 0)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (t == NULL)
                return -ENOMEM;
        t->slots = slots;
        t->stripe_mask = stripes - 1;
        t->map_len = slots * sizeof(rzs_entry);
        /* MAP_POPULATE: fault the zeroed entries in now rather than on the I/O path. */
        t->entries = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (t->entries == MAP_FAILED)
                goto err_table;
        if (posix_memalign((void **)&t->stripes, sizeof(struct stripe),
                           stripes * sizeof(struct stripe)) != 0)
                goto err_map;
        for (i = 0; i < stripes; i++)
                pthread_mutex_init(&t->stripes[i].lock, NULL);
        *out = t;
        return 0;

err_map:
        munmap(t->entries, t->map_len);
err_table:
        free(t);
        return -ENOMEM;
}

void rzs_table_destroy(struct rzs_table *t)
{
        if (t == NULL)
                return;
        for (unsigned i = 0; i <= t->stripe_mask; i++)
                pthread_mutex_destroy(&t->stripes[i].lock);
        free(t->stripes);
        munmap(t->entries, t->map_len);
        free(t);
}

uint64_t rzs_table_slots(const struct rzs_table *t)
{
        return t->slots;
}

void rzs_table_lock(struct rzs_table *t, uint64_t slot)
{
        pthread_mutex_lock(&t->stripes[slot & t->stripe_mask].lock);
}

void rzs_table_unlock(struct rzs_table *t, uint64_t slot)
{
        pthread_mutex_unlock(&t->stripes[slot & t->stripe_mask].lock);
}

rzs_entry rzs_table_get(const struct rzs_table *t, uint64_t slot)
{
        return __atomic_load_n(&t->entries[slot], __ATOMIC_RELAXED);
}

rzs_entry rzs_table_swap(struct rzs_table *t, uint64_t slot, rzs_entry e)
{
        rzs_entry old = t->entries[slot];

        /* Atomic store only so that lock-free rzs_table_get() never sees a torn word;
         * the slot lock orders writers. */
        __atomic_store_n(&t->entries[slot], e, __ATOMIC_RELAXED);
        return old;
}

static bool entry_sound(rzs_entry e)
{
        const rzs_entry known =
            RZS_ENTRY_SAME | RZS_ENTRY_RAW | RZS_ENTRY_BACKING | RZS_ENTRY_LOST |
            (uint64_t)RZS_ENTRY_MAX_SIZE << RZS_ENTRY_SIZE_SHIFT | UINT32_MAX;

        if (e & ~known)
                return false;
        /* A backing-store page needs no handle: it lives at slot * 4096. */
        if (e & RZS_ENTRY_BACKING)
                return (e & ~RZS_ENTRY_LOST) == RZS_ENTRY_BACKING;
        if (e & RZS_ENTRY_LOST)
                return false;
        if (rzs_entry_is_empty(e) || rzs_entry_is_same(e))
                return rzs_entry_size(e) == 0 && !rzs_entry_is_raw(e);
        if (rzs_entry_handle(e) == 0)
                return false;
        if (rzs_entry_is_raw(e))
                return rzs_entry_size(e) == 0;
        return rzs_entry_size(e) != 0;
}

unsigned rzs_table_check(const struct rzs_table *t)
{
        unsigned bad = 0;

        for (uint64_t i = 0; i < t->slots; i++)
                bad += !entry_sound(t->entries[i]);
        return bad;
}
