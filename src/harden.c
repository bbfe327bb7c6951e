/* ramzswap: memory locking and capability hygiene (see harden.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ramzswap/harden.h"

/* The lock calls go straight to the kernel: sanitizer runtimes replace mlock,
 * mlockall and munlockall with no-ops that report success, which would make our
 * record, and the stats, claim a lock that does not exist. */
static int sys_mlockall(int flags)
{
        return (int)syscall(SYS_mlockall, flags);
}

static int sys_mlock(const void *addr, size_t len)
{
        return (int)syscall(SYS_mlock, addr, len);
}

static void sys_munlockall(void)
{
        syscall(SYS_munlockall);
}

/* ELF objects with code mapped that we keep track of; a process has a few dozen. */
#define MAX_ELF_OBJECTS 512

int rzs_mlock_mode_parse(const char *s, enum rzs_mlock_mode *out)
{
        static const struct {
                const char *word;
                enum rzs_mlock_mode mode;
        } words[] = {
            {"on", RZS_MLOCK_ON},     {"yes", RZS_MLOCK_ON},  {"true", RZS_MLOCK_ON},
            {"1", RZS_MLOCK_ON},      {"off", RZS_MLOCK_OFF}, {"no", RZS_MLOCK_OFF},
            {"false", RZS_MLOCK_OFF}, {"0", RZS_MLOCK_OFF},   {"auto", RZS_MLOCK_AUTO},
        };

        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
                if (strcasecmp(s, words[i].word) == 0) {
                        *out = words[i].mode;
                        return 0;
                }
        }
        return -EINVAL;
}

const char *rzs_mlock_mode_name(enum rzs_mlock_mode mode)
{
        switch (mode) {
        case RZS_MLOCK_ON:
                return "on";
        case RZS_MLOCK_AUTO:
                return "auto";
        case RZS_MLOCK_OFF:
                break;
        }
        return "off";
}

/* A numeric field of /proc/self/status ("VmSize:", "Threads:"), as printed. */
static int status_field(const char *name, uint64_t *val)
{
        FILE *f = fopen("/proc/self/status", "re");
        size_t n = strlen(name);
        char line[256];
        int r = -ENOENT;

        if (f == NULL)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, name, n) == 0 &&
                    sscanf(line + n, "%" SCNu64, val) == 1) {
                        r = 0;
                        break;
                }
        }
        fclose(f);
        return r;
}

/* Is cap in the flag set of this thread? 1, 0, or a negative errno. */
static int have_cap(cap_value_t cap, cap_flag_t set)
{
        cap_t c = cap_get_proc();
        cap_flag_value_t v = CAP_CLEAR;
        int r;

        if (c == NULL)
                return -errno;
        r = cap_get_flag(c, cap, set, &v) < 0 ? -errno : v == CAP_SET;
        cap_free(c);
        return r;
}

int rzs_harden_check(enum rzs_mlock_mode mode, uint64_t more_bytes, bool *may_lock,
                     char *msg, size_t msglen)
{
        struct rlimit rl;
        uint64_t vm_kib, need;
        int cap, r;

        *may_lock = false;
        if (msglen)
                msg[0] = '\0';
        if (mode == RZS_MLOCK_OFF)
                return 0;
        cap = have_cap(CAP_IPC_LOCK, CAP_EFFECTIVE);
        if (cap < 0) {
                snprintf(msg, msglen, "cap_get_proc: %s", strerror(-cap));
                return cap;
        }
        if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0) {
                r = -errno;
                snprintf(msg, msglen, "getrlimit(RLIMIT_MEMLOCK): %s", strerror(-r));
                return r;
        }
        if (cap || rl.rlim_cur == RLIM_INFINITY) {
                *may_lock = true;
                return 0;
        }
        r = status_field("VmSize:", &vm_kib);
        if (r < 0) {
                snprintf(msg, msglen, "reading VmSize from /proc/self/status: %s",
                         strerror(-r));
                return r;
        }
        if (__builtin_mul_overflow(vm_kib, 1024, &need) ||
            __builtin_add_overflow(need, more_bytes, &need))
                need = UINT64_MAX;
        if (rl.rlim_cur >= need) {
                *may_lock = true;
                return 0;
        }
        snprintf(msg, msglen,
                 "mlock=%s: this process may not lock its memory: run as root or grant "
                 "CAP_IPC_LOCK, or raise RLIMIT_MEMLOCK (ulimit -l) to at least %" PRIu64
                 " KiB (it is %" PRIu64 " KiB)%s",
                 rzs_mlock_mode_name(mode), need / 1024 + (need % 1024 != 0),
                 (uint64_t)rl.rlim_cur / 1024,
                 mode == RZS_MLOCK_AUTO ? "; carrying on without locking" : "");
        return mode == RZS_MLOCK_ON ? -EPERM : 0;
}

struct elf_id {
        unsigned major, minor;
        uint64_t inode;
};

struct map_line {
        uintptr_t start, end;
        char perms[5];
        struct elf_id id;
        char path[256];
};

static bool parse_map_line(const char *line, struct map_line *m)
{
        unsigned long long off;
        int pos = 0;

        m->path[0] = '\0';
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s %llx %x:%x %" SCNu64 " %n",
                   &m->start, &m->end, m->perms, &off, &m->id.major, &m->id.minor,
                   &m->id.inode, &pos) < 7)
                return false;
        if (pos > 0)
                sscanf(line + pos, "%255[^\n]", m->path);
        return true;
}

static bool same_elf(const struct elf_id *a, const struct elf_id *b)
{
        return a->major == b->major && a->minor == b->minor && a->inode == b->inode;
}

/* Pass 1: every file with an executable private mapping is an ELF object to lock. */
static size_t collect_elf_objects(FILE *f, struct elf_id *ids, size_t max)
{
        char line[512];
        struct map_line m;
        size_t n = 0;

        while (n < max && fgets(line, sizeof line, f)) {
                if (!parse_map_line(line, &m) || m.id.inode == 0 ||
                    strcmp(m.perms, "r-xp") != 0)
                        continue;
                size_t i = 0;
                while (i < n && !same_elf(&ids[i], &m.id))
                        i++;
                if (i == n)
                        ids[n++] = m.id;
        }
        return n;
}

/* Pass 2: mlock (populating) every readable mapping of those objects. */
static int lock_elf_mappings(FILE *f, const struct elf_id *ids, size_t n, uint64_t *bytes,
                             char *msg, size_t msglen)
{
        char line[512];
        struct map_line m;

        while (fgets(line, sizeof line, f)) {
                if (!parse_map_line(line, &m) || m.id.inode == 0 || m.perms[0] != 'r')
                        continue;
                size_t i = 0;
                while (i < n && !same_elf(&ids[i], &m.id))
                        i++;
                if (i == n)
                        continue;
                if (sys_mlock((const void *)m.start, m.end - m.start) < 0) {
                        int e = errno;

                        snprintf(msg, msglen, "mlock of %s (%zu KiB): %s", m.path,
                                 (size_t)(m.end - m.start) / 1024, strerror(e));
                        return -e;
                }
                *bytes += m.end - m.start;
        }
        return 0;
}

static int lock_code(uint64_t *bytes, char *msg, size_t msglen)
{
        struct elf_id ids[MAX_ELF_OBJECTS];
        FILE *f = fopen("/proc/self/maps", "re");
        size_t n;
        int r;

        *bytes = 0;
        if (f == NULL) {
                r = -errno;
                snprintf(msg, msglen, "opening /proc/self/maps: %s", strerror(-r));
                return r;
        }
        n = collect_elf_objects(f, ids, MAX_ELF_OBJECTS);
        rewind(f);
        r = lock_elf_mappings(f, ids, n, bytes, msg, msglen);
        fclose(f);
        return r;
}

int rzs_harden_lock(struct rzs_harden_state *st, char *msg, size_t msglen)
{
        int r;

        st->locked = false;
        st->code_bytes = 0;
        if (msglen)
                msg[0] = '\0';
        if (sys_mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
                r = -errno;
                snprintf(msg, msglen, "mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): %s",
                         strerror(-r));
                return r;
        }
        r = lock_code(&st->code_bytes, msg, msglen);
        if (r < 0) {
                sys_munlockall();
                st->code_bytes = 0;
                return r;
        }
        st->locked = true;
        return 0;
}

bool rzs_harden_io_flusher(void)
{
        return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0;
}

/* Remove every capability but keep (or all, if keep < 0) from the bounding set. */
static int drop_bounding(cap_value_t keep)
{
        for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++) {
                if (c == keep || cap_get_bound(c) <= 0)
                        continue;
                if (cap_drop_bound(c) < 0)
                        return -errno;
        }
        return 0;
}

static void caps_text(char *kept, size_t keptlen)
{
        cap_t c = cap_get_proc();
        char *t = c ? cap_to_text(c, NULL) : NULL;

        /* An empty set prints as "="; say it in words. */
        snprintf(kept, keptlen, "%s",
                 t == NULL        ? "unknown"
                 : strcmp(t, "=") ? t
                                  : "none");
        cap_free(t);
        cap_free(c);
}

int rzs_harden_drop_caps(bool keep_ipc_lock, bool *bounding_dropped, char *kept,
                         size_t keptlen, char *msg, size_t msglen)
{
        const cap_value_t ipc_lock = CAP_IPC_LOCK;
        uint64_t threads = 0;
        cap_t c;
        int held, setpcap, r;

        *bounding_dropped = false;
        caps_text(kept, keptlen);
        if (msglen)
                msg[0] = '\0';
        r = status_field("Threads:", &threads);
        if (r == 0 && threads > 1) {
                snprintf(msg, msglen,
                         "capabilities are per thread: drop them before starting threads "
                         "(%" PRIu64 " running)",
                         threads);
                return -EBUSY;
        }
        held = have_cap(CAP_IPC_LOCK, CAP_PERMITTED);
        setpcap = have_cap(CAP_SETPCAP, CAP_EFFECTIVE);
        if (held < 0 || setpcap < 0) {
                r = held < 0 ? held : setpcap;
                snprintf(msg, msglen, "cap_get_proc: %s", strerror(-r));
                return r;
        }
        keep_ipc_lock = keep_ipc_lock && held;
        if (setpcap) {
                r = drop_bounding(keep_ipc_lock ? CAP_IPC_LOCK : -1);
                if (r < 0) {
                        snprintf(msg, msglen, "cap_drop_bound: %s", strerror(-r));
                        return r;
                }
                *bounding_dropped = true;
        }
        c = cap_init(); /* all clear: the inheritable set, hence the ambient one, too */
        if (c == NULL ||
            (keep_ipc_lock &&
             (cap_set_flag(c, CAP_EFFECTIVE, 1, &ipc_lock, CAP_SET) < 0 ||
              cap_set_flag(c, CAP_PERMITTED, 1, &ipc_lock, CAP_SET) < 0)) ||
            cap_set_proc(c) < 0) {
                r = -errno;
                cap_free(c);
                snprintf(msg, msglen, "cap_set_proc: %s", strerror(-r));
                return r;
        }
        cap_free(c);
        caps_text(kept, keptlen);
        return 0;
}

int rzs_harden_apply(enum rzs_mlock_mode mode, uint64_t more_bytes,
                     struct rzs_harden_state *st, char *msg, size_t msglen)
{
        char warn[RZS_HARDEN_MSG_MAX];
        struct rlimit rl;
        bool may_lock, keep;
        int r;

        memset(st, 0, sizeof *st);
        caps_text(st->caps, sizeof st->caps);
        r = rzs_harden_check(mode, more_bytes, &may_lock, warn, sizeof warn);
        if (r < 0) {
                snprintf(msg, msglen, "%s", warn);
                return r;
        }
        if (may_lock) {
                r = rzs_harden_lock(st, warn, sizeof warn);
                if (r < 0 && mode == RZS_MLOCK_ON) {
                        snprintf(msg, msglen, "mlock=on: %.200s", warn);
                        return r;
                }
                if (r < 0) {
                        char why[RZS_HARDEN_MSG_MAX];

                        memcpy(why, warn, sizeof why);
                        snprintf(warn, sizeof warn,
                                 "mlock=auto: %.200s; carrying on without locking", why);
                }
        }
        st->io_flusher = rzs_harden_io_flusher();
        /* Under MCL_FUTURE each later mapping is checked against a finite
         * RLIMIT_MEMLOCK unless CAP_IPC_LOCK is effective. */
        keep = st->locked && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
               rl.rlim_cur != RLIM_INFINITY;
        r = rzs_harden_drop_caps(keep, &st->bounding_dropped, st->caps, sizeof st->caps,
                                 msg, msglen);
        if (r < 0)
                return r;
        snprintf(msg, msglen, "%s", warn);
        return 0;
}
