/* ramzswap: memory locking and capability hygiene for a swap server.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: a process that serves swap must never itself wait on swap or on page
 * cache refills while the machine is short of memory. This module, which knows
 * nothing of nbdkit, does the process-wide part:
 *
 *  1. check whether memory may be locked: CAP_IPC_LOCK effective, or RLIMIT_MEMLOCK
 *     infinite or >= the process's current virtual size plus what it will still map
 *     (mlockall(MCL_CURRENT) charges the whole virtual size against the limit when
 *     unprivileged, and MCL_FUTURE charges every later mapping, thread stacks
 *     included, in full, even with MCL_ONFAULT);
 *  2. lock: mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) (pages are locked as
 *     they are touched, so nbdkit's large static buffers cost no RAM until used),
 *     then mlock() every readable mapping of every ELF object that has code mapped
 *     (its r-xp segment, rodata and relro), which populates them now: a clean
 *     file-backed page the kernel dropped would otherwise have to be read back
 *     from disk, which needs memory, just when there is none. Data files mapped
 *     read-only (locale archive, caches) are not ELF code and are left alone;
 *  3. prctl(PR_SET_IO_FLUSHER) best effort (needs CAP_SYS_RESOURCE, Linux >= 5.6):
 *     the kernel's own marker for user-space block servers, so reclaim done on
 *     their behalf does no I/O that could wait on them. Inherited by threads
 *     created afterwards, so it is set once, before the I/O threads exist;
 *  4. drop every capability from the effective, permitted and inheritable sets
 *     (the ambient set follows the inheritable one) and, when CAP_SETPCAP allows,
 *     from the bounding set, except CAP_IPC_LOCK when memory was locked, the
 *     process holds it and RLIMIT_MEMLOCK is finite: under MCL_FUTURE every later
 *     mmap (allocator arenas, thread stacks) is checked against the limit unless
 *     CAP_IPC_LOCK is effective. CAP_SYS_RESOURCE is never kept: IO_FLUSHER is
 *     already set and nothing later needs it.
 *
 * Capabilities are per thread in Linux: rzs_harden_drop_caps refuses (-EBUSY) to
 * run while the process has more than one thread, so no thread keeps privileges
 * behind our back; call it before starting any thread (nbdkit's .after_fork runs
 * before its own threads exist).
 *
 * Messages are single sentences for the operator, written into caller buffers.
 * No globals; functions act on the calling process.
 */
#ifndef RAMZSWAP_HARDEN_H
#define RAMZSWAP_HARDEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif

/* Room for a harden message and for the kept-capabilities text. */
#define RZS_HARDEN_MSG_MAX  256
#define RZS_HARDEN_CAPS_MAX 64

enum rzs_mlock_mode {
        RZS_MLOCK_OFF,  /* never lock */
        RZS_MLOCK_AUTO, /* lock if permitted, else warn and carry on */
        RZS_MLOCK_ON,   /* lock or fail */
};

/* What rzs_harden_apply did, for the stats. */
struct rzs_harden_state {
        bool locked;                    /* mlockall took */
        bool io_flusher;                /* PR_SET_IO_FLUSHER took */
        bool bounding_dropped;          /* the bounding set was reduced too */
        uint64_t code_bytes;            /* bytes of ELF mappings populated and locked */
        char caps[RZS_HARDEN_CAPS_MAX]; /* capabilities kept: cap_to_text form, or
                                         * "none" */
};

/* "on"/"yes"/"true"/"1", "off"/"no"/"false"/"0", "auto" (any case) -> *out.
 * Returns 0 or -EINVAL (out untouched). */
int rzs_mlock_mode_parse(const char *s, enum rzs_mlock_mode *out);

/* "on", "off" or "auto". */
const char *rzs_mlock_mode_name(enum rzs_mlock_mode mode);

/* May this process lock itself in memory, given that it will still map about
 * more_bytes after locking (device memory, tables, thread stacks)? Sets *may_lock.
 * Returns 0 with msg empty when locking is permitted or mode is OFF; 0 with a
 * warning in msg and *may_lock false when mode is AUTO and it is not; -EPERM with
 * the error in msg when mode is ON and it is not ("run as root or grant
 * CAP_IPC_LOCK, or raise RLIMIT_MEMLOCK (ulimit -l) to at least N KiB"); another
 * negative errno if the capability state or /proc/self/status cannot be read.
 * No side effects. */
int rzs_harden_check(enum rzs_mlock_mode mode, uint64_t more_bytes, bool *may_lock,
                     char *msg, size_t msglen);

/* mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT), then populate and lock the ELF
 * mappings (see above). Sets st->locked and st->code_bytes. Returns 0, or a
 * negative errno with msg naming the failing call (mlockall's ENOMEM / EPERM when
 * not permitted); on failure the process is left unlocked (munlockall). */
int rzs_harden_lock(struct rzs_harden_state *st, char *msg, size_t msglen);

/* prctl(PR_SET_IO_FLUSHER, 1): true if it took. Never fails otherwise. */
bool rzs_harden_io_flusher(void);

/* Drop capabilities as described above, keeping CAP_IPC_LOCK only if keep_ipc_lock
 * and the process holds it (permitted). Writes what is kept to kept ("none" when
 * nothing). Returns 0, -EBUSY (more than one thread), or the errno of the failing
 * libcap call, with msg set. */
int rzs_harden_drop_caps(bool keep_ipc_lock, bool *bounding_dropped, char *kept,
                         size_t keptlen, char *msg, size_t msglen);

/* The whole sequence for a server starting to serve: check (mode, more_bytes),
 * lock if permitted, IO_FLUSHER, drop capabilities. Fills *st on every path.
 * Returns 0 (msg empty, or a warning when AUTO could not lock) or a negative errno
 * with the error in msg (ON could not lock, or dropping failed). */
int rzs_harden_apply(enum rzs_mlock_mode mode, uint64_t more_bytes,
                     struct rzs_harden_state *st, char *msg, size_t msglen);

#endif /* RAMZSWAP_HARDEN_H */
