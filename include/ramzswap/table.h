/* ramzswap: the page table, one packed entry per device slot.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: say for every 4 KiB slot where its page is: nowhere (reads as zeros), in
 * the entry itself (same-filled), or in an allocator object (compressed or raw).
 *
 * Data layout: an entry is one 64-bit word.
 *   bits  0..31  allocator handle, or the 32-bit fill pattern when SAME is set
 *   bits 32..44  compressed size in bytes (0 for SAME and RAW entries)
 *   bit  48      SAME    the page is one 32-bit word repeated (zero included)
 *   bit  49      RAW     the page is stored uncompressed in a whole pool page
 *   bit  50      BACKING the page lives in the backing store, at byte slot * 4096
 *   bit  51      LOST    with BACKING only: a write to that backing page failed part
 *                        way, so it holds neither the old page nor the new one; the
 *                        slot reads as an I/O error until rewritten or trimmed
 * The word 0 is the empty entry: no flags, no handle (0 is never a valid handle).
 * So a zeroed table is a valid empty table.
 *
 * Invariants: SAME and RAW are never both set; a SAME entry has no handle of its
 * own; a non-SAME, non-empty, non-BACKING entry holds a non-zero handle; RAW entries
 * have size 0; a BACKING entry is BACKING alone or BACKING | LOST (no handle: its
 * place in the store is the slot's index).
 *
 * Locking: slot locks are striped: slot i is guarded by mutex i % stripes, so
 * neighbouring slots of one multi-page request use different mutexes and no lock
 * covers all I/O. Change an entry only with its slot lock held. rzs_table_get()
 * may run without the lock (an atomic load): it then gives a value that was current
 * at some instant, good enough to skip empty slots but not to act on an object.
 * Lock order: a slot lock is taken before the allocator's lock, and at most one
 * slot lock is held at a time.
 */
#ifndef RAMZSWAP_TABLE_H
#define RAMZSWAP_TABLE_H

#include <stdbool.h>
#include <stdint.h>

typedef uint64_t rzs_entry;

#define RZS_ENTRY_SIZE_SHIFT 32
#define RZS_ENTRY_SIZE_BITS  13
#define RZS_ENTRY_SAME       (UINT64_C(1) << 48)
#define RZS_ENTRY_RAW        (UINT64_C(1) << 49)
#define RZS_ENTRY_BACKING    (UINT64_C(1) << 50)
#define RZS_ENTRY_LOST       (UINT64_C(1) << 51)
/* Largest compressed size an entry can record. */
#define RZS_ENTRY_MAX_SIZE ((UINT32_C(1) << RZS_ENTRY_SIZE_BITS) - 1)

_Static_assert(sizeof(rzs_entry) <= 8, "a page-table entry must stay 8 bytes");
_Static_assert(RZS_ENTRY_SIZE_SHIFT + RZS_ENTRY_SIZE_BITS <= 48,
               "the size field must not reach the flags");

/* An entry for a same-filled page of the 32-bit word pattern. */
static inline rzs_entry rzs_entry_same(uint32_t pattern)
{
        return RZS_ENTRY_SAME | pattern;
}

/* An entry for a compressed object of size bytes (1 .. RZS_ENTRY_MAX_SIZE). */
static inline rzs_entry rzs_entry_compressed(uint32_t handle, uint32_t size)
{
        return (uint64_t)size << RZS_ENTRY_SIZE_SHIFT | handle;
}

/* An entry for a page stored uncompressed in the whole pool page handle. */
static inline rzs_entry rzs_entry_raw(uint32_t handle)
{
        return RZS_ENTRY_RAW | handle;
}

/* An entry for a page in the backing store; lost when its last write failed. */
static inline rzs_entry rzs_entry_backing(bool lost)
{
        return RZS_ENTRY_BACKING | (lost ? RZS_ENTRY_LOST : 0);
}

static inline bool rzs_entry_is_empty(rzs_entry e)
{
        return e == 0;
}

static inline bool rzs_entry_is_same(rzs_entry e)
{
        return (e & RZS_ENTRY_SAME) != 0;
}

static inline bool rzs_entry_is_raw(rzs_entry e)
{
        return (e & RZS_ENTRY_RAW) != 0;
}

static inline bool rzs_entry_is_backing(rzs_entry e)
{
        return (e & RZS_ENTRY_BACKING) != 0;
}

static inline bool rzs_entry_is_lost(rzs_entry e)
{
        return (e & RZS_ENTRY_LOST) != 0;
}

/* True when the entry owns an allocator object (compressed or raw). */
static inline bool rzs_entry_has_object(rzs_entry e)
{
        return !rzs_entry_is_empty(e) && !rzs_entry_is_same(e) &&
               !rzs_entry_is_backing(e);
}

static inline uint32_t rzs_entry_handle(rzs_entry e)
{
        return (uint32_t)e;
}

static inline uint32_t rzs_entry_pattern(rzs_entry e)
{
        return (uint32_t)e;
}

static inline uint32_t rzs_entry_size(rzs_entry e)
{
        return (uint32_t)(e >> RZS_ENTRY_SIZE_SHIFT) & RZS_ENTRY_MAX_SIZE;
}

struct rzs_table;

/* Make a table of slots empty entries with stripes slot locks (a power of two;
 * 0 picks a default). The entries are faulted in now, so I/O later takes no memory
 * from the OS for the table. Returns 0 and *out, -EINVAL (slots == 0, stripes not a
 * power of two), or -ENOMEM. *out is NULL on failure. */
int rzs_table_create(uint64_t slots, unsigned stripes, struct rzs_table **out);

/* Free the table. No slot lock may be held. NULL is allowed. */
void rzs_table_destroy(struct rzs_table *t);

uint64_t rzs_table_slots(const struct rzs_table *t);

/* Take / release the lock guarding slot (< slots). May block. */
void rzs_table_lock(struct rzs_table *t, uint64_t slot);
void rzs_table_unlock(struct rzs_table *t, uint64_t slot);

/* Read slot's entry. With the slot lock held the value is stable; without it see
 * the locking note above. O(1). */
rzs_entry rzs_table_get(const struct rzs_table *t, uint64_t slot);

/* Replace slot's entry and return the old one. The caller holds the slot lock. */
rzs_entry rzs_table_swap(struct rzs_table *t, uint64_t slot, rzs_entry e);

/* Count entries that break the invariants above. Not thread-safe. O(slots). */
unsigned rzs_table_check(const struct rzs_table *t);

#endif /* RAMZSWAP_TABLE_H */
