/* Unit tests for harden: mode parsing, the permission check with and without
 * CAP_IPC_LOCK, locking (VmLck, MCL_ONFAULT behaviour, populated code), and what
 * capabilities survive the drop. Everything that changes the process runs in a
 * forked child, so the test program itself stays unlocked and privileged.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ramzswap/harden.h"

#define MiB (1024 * 1024)

/* In a child, cmocka's asserts would unwind into the child's copy of the runner;
 * report the failing line and exit instead. */
#define CHECK(c)                                                                         \
        do {                                                                             \
                if (!(c)) {                                                              \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                                #c);                                                     \
                        _exit(1);                                                        \
                }                                                                        \
        } while (0)

static void in_child(void (*fn)(void))
{
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                fn();
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static bool has_ipc_lock(void)
{
        cap_t c = cap_get_proc();
        cap_flag_value_t v = CAP_CLEAR;

        cap_get_flag(c, CAP_IPC_LOCK, CAP_EFFECTIVE, &v);
        cap_free(c);
        return v == CAP_SET;
}

static uint64_t status_kib(const char *name)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        uint64_t v = UINT64_MAX;

        CHECK(f != NULL);
        while (fgets(line, sizeof line, f))
                if (strncmp(line, name, strlen(name)) == 0)
                        sscanf(line + strlen(name), "%" SCNu64, &v);
        fclose(f);
        CHECK(v != UINT64_MAX);
        return v;
}

/* Size and Rss (kB) of the smaps entry starting at addr, and whether its VmFlags
 * say locked ("lo"). ("Locked:" is proportional to sharing, so it is not used.) */
static void smaps_of(uintptr_t addr, uint64_t *size_kib, uint64_t *rss_kib, bool *locked)
{
        FILE *f = fopen("/proc/self/smaps", "re");
        char line[512];
        bool in = false;

        CHECK(f != NULL);
        *size_kib = *rss_kib = UINT64_MAX;
        *locked = false;
        while (fgets(line, sizeof line, f)) {
                uintptr_t s, e;

                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2) {
                        in = s == addr;
                        continue;
                }
                if (!in)
                        continue;
                sscanf(line, "Size: %" SCNu64, size_kib);
                sscanf(line, "Rss: %" SCNu64, rss_kib);
                if (strncmp(line, "VmFlags:", 8) == 0)
                        *locked = strstr(line, " lo") != NULL;
        }
        fclose(f);
        CHECK(*size_kib != UINT64_MAX && *rss_kib != UINT64_MAX);
}

/* Every r-xp file mapping must be fully resident and locked. Returns how many. */
static int check_code_locked(void)
{
        FILE *f = fopen("/proc/self/maps", "re");
        char line[512];
        uintptr_t starts[256];
        int n = 0;

        CHECK(f != NULL);
        while (n < 256 && fgets(line, sizeof line, f)) {
                uintptr_t s, e;
                char perms[5];
                unsigned long long inode;

                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s %*x %*x:%*x %llu", &s, &e,
                           perms, &inode) == 4 &&
                    inode != 0 && strcmp(perms, "r-xp") == 0)
                        starts[n++] = s;
        }
        fclose(f);
        for (int i = 0; i < n; i++) {
                uint64_t size, rss;
                bool locked;

                smaps_of(starts[i], &size, &rss, &locked);
                if (!locked || rss != size)
                        fprintf(stderr,
                                "mapping at %#" PRIxPTR ": %" PRIu64 " of %" PRIu64
                                " kB resident, locked %d\n",
                                starts[i], rss, size, locked);
                CHECK(locked && rss == size);
        }
        return n;
}

static void test_mode_parse(void **state)
{
        enum rzs_mlock_mode m = RZS_MLOCK_AUTO;

        assert_int_equal(rzs_mlock_mode_parse("on", &m), 0);
        assert_int_equal(m, RZS_MLOCK_ON);
        assert_int_equal(rzs_mlock_mode_parse("OFF", &m), 0);
        assert_int_equal(m, RZS_MLOCK_OFF);
        assert_int_equal(rzs_mlock_mode_parse("auto", &m), 0);
        assert_int_equal(m, RZS_MLOCK_AUTO);
        assert_int_equal(rzs_mlock_mode_parse("true", &m), 0);
        assert_int_equal(m, RZS_MLOCK_ON);
        assert_int_equal(rzs_mlock_mode_parse("0", &m), 0);
        assert_int_equal(m, RZS_MLOCK_OFF);
        assert_int_equal(rzs_mlock_mode_parse("maybe", &m), -EINVAL);
        assert_int_equal(rzs_mlock_mode_parse("", &m), -EINVAL);
        assert_int_equal(m, RZS_MLOCK_OFF);
        assert_string_equal(rzs_mlock_mode_name(RZS_MLOCK_AUTO), "auto");
}

static void test_check_off_and_permitted(void **state)
{
        char msg[RZS_HARDEN_MSG_MAX] = "x";
        bool may = true;

        assert_int_equal(rzs_harden_check(RZS_MLOCK_OFF, 0, &may, msg, sizeof msg), 0);
        assert_false(may);
        assert_string_equal(msg, "");
        if (!has_ipc_lock())
                skip();
        assert_int_equal(
            rzs_harden_check(RZS_MLOCK_ON, UINT64_MAX, &may, msg, sizeof msg), 0);
        assert_true(may);
        assert_string_equal(msg, "");
}

/* Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB. */
static void child_no_capability(void)
{
        const struct rlimit small = {64 * 1024, 64 * 1024};
        cap_value_t ipc = CAP_IPC_LOCK;
        struct rzs_harden_state st;
        char msg[RZS_HARDEN_MSG_MAX];
        cap_t c = cap_get_proc();
        bool may = true;

        CHECK(cap_set_flag(c, CAP_EFFECTIVE, 1, &ipc, CAP_CLEAR) == 0);
        CHECK(cap_set_flag(c, CAP_PERMITTED, 1, &ipc, CAP_CLEAR) == 0);
        CHECK(cap_set_proc(c) == 0);
        cap_free(c);
        CHECK(setrlimit(RLIMIT_MEMLOCK, &small) == 0);

        CHECK(rzs_harden_check(RZS_MLOCK_ON, MiB, &may, msg, sizeof msg) == -EPERM);
        CHECK(!may);
        fprintf(stderr, "on:   %s\n", msg);
        CHECK(strstr(msg, "mlock=on: ") == msg);
        CHECK(strstr(msg, "run as root or grant CAP_IPC_LOCK, or raise RLIMIT_MEMLOCK "
                          "(ulimit -l) to at least "));
        CHECK(strstr(msg, " KiB (it is 64 KiB)"));

        CHECK(rzs_harden_check(RZS_MLOCK_AUTO, MiB, &may, msg, sizeof msg) == 0);
        CHECK(!may);
        fprintf(stderr, "auto: %s\n", msg);
        CHECK(strstr(msg, "mlock=auto: ") == msg);
        CHECK(strstr(msg, "carrying on without locking"));

        /* The verdict is right: the kernel refuses too (the raw call, since
         * sanitizers turn mlockall into a no-op). */
        CHECK(syscall(SYS_mlockall, MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0);
        CHECK(errno == ENOMEM || errno == EPERM);

        CHECK(rzs_harden_apply(RZS_MLOCK_ON, MiB, &st, msg, sizeof msg) == -EPERM);
        CHECK(!st.locked);
        CHECK(rzs_harden_apply(RZS_MLOCK_AUTO, MiB, &st, msg, sizeof msg) == 0);
        CHECK(strstr(msg, "mlock=auto: ") == msg);
        CHECK(!st.locked);
        CHECK(status_kib("VmLck:") == 0);
        /* Nothing to keep: every capability is gone. */
        CHECK(strcmp(st.caps, "none") == 0);
}

static void test_check_without_capability(void **state)
{
        in_child(child_no_capability);
}

static void child_lock_on(void)
{
        struct rzs_harden_state st;
        char msg[RZS_HARDEN_MSG_MAX];
        uint64_t before, after, size, rss;
        bool locked;
        unsigned char vec[16 * MiB / 4096];
        char *p;
        cap_t c;
        char *text;

        CHECK(status_kib("VmLck:") == 0);
        CHECK(rzs_harden_apply(RZS_MLOCK_ON, 64 * MiB, &st, msg, sizeof msg) == 0);
        CHECK(msg[0] == '\0');
        CHECK(st.locked);
        CHECK(st.code_bytes > 0);
        before = status_kib("VmLck:");
        CHECK(before > 0);
        CHECK(check_code_locked() > 0);

        /* MCL_FUTURE: a new mapping is locked; MCL_ONFAULT: only as it is touched. */
        p = mmap(NULL, 16 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
        CHECK(p != MAP_FAILED);
        after = status_kib("VmLck:");
        CHECK(after >= before + 16 * 1024);
        smaps_of((uintptr_t)p, &size, &rss, &locked);
        CHECK(size == 16 * 1024);
        CHECK(locked);
        CHECK(rss == 0);
        CHECK(mincore(p, 16 * MiB, vec) == 0);
        for (size_t i = 0; i < sizeof vec; i++)
                CHECK((vec[i] & 1) == 0);
        memset(p, 0x5a, 4 * MiB);
        smaps_of((uintptr_t)p, &size, &rss, &locked);
        CHECK(locked);
        CHECK(rss == 4 * 1024);

        /* Only CAP_IPC_LOCK is kept (RLIMIT_MEMLOCK is finite here). */
        c = cap_get_proc();
        text = cap_to_text(c, NULL);
        fprintf(stderr,
                "kept: %s (state: %s), code locked: %" PRIu64 " KiB, io_flusher %d\n",
                text, st.caps, st.code_bytes / 1024, st.io_flusher);
        CHECK(strcmp(text, "cap_ipc_lock=ep") == 0);
        CHECK(strcmp(st.caps, "cap_ipc_lock=ep") == 0);
        cap_free(text);
        cap_free(c);
        if (st.bounding_dropped) {
                CHECK(cap_get_bound(CAP_SYS_ADMIN) == 0);
                CHECK(cap_get_bound(CAP_SETPCAP) == 0);
                CHECK(cap_get_bound(CAP_IPC_LOCK) == 1);
        }
        /* The record matches the kernel's view. */
        CHECK(st.io_flusher == (prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 1));
}

static void test_lock_on(void **state)
{
        struct rlimit rl;

        if (!has_ipc_lock())
                skip();
        /* The test assumes a finite limit, so CAP_IPC_LOCK must be kept. */
        assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
        if (rl.rlim_cur == RLIM_INFINITY)
                skip();
        in_child(child_lock_on);
}

static void child_off_drops_all(void)
{
        struct rzs_harden_state st;
        char msg[RZS_HARDEN_MSG_MAX];
        cap_t c;
        char *text;

        CHECK(rzs_harden_apply(RZS_MLOCK_OFF, 0, &st, msg, sizeof msg) == 0);
        CHECK(!st.locked);
        CHECK(status_kib("VmLck:") == 0);
        CHECK(strcmp(st.caps, "none") == 0);
        c = cap_get_proc();
        text = cap_to_text(c, NULL);
        CHECK(strcmp(text, "=") == 0);
        cap_free(text);
        cap_free(c);
        if (st.bounding_dropped)
                CHECK(cap_get_bound(CAP_IPC_LOCK) == 0);
}

static void test_off_drops_everything(void **state)
{
        if (geteuid() != 0)
                skip();
        in_child(child_off_drops_all);
}

static void *idle_thread(void *arg)
{
        pause();
        return arg;
}

static void child_threads_refused(void)
{
        char kept[RZS_HARDEN_CAPS_MAX], msg[RZS_HARDEN_MSG_MAX];
        bool bounding = true;
        pthread_t t;

        CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0);
        CHECK(rzs_harden_drop_caps(false, &bounding, kept, sizeof kept, msg,
                                   sizeof msg) == -EBUSY);
        CHECK(!bounding);
        CHECK(strstr(msg, "per thread"));
}

static void test_drop_refuses_threads(void **state)
{
        in_child(child_threads_refused);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mode_parse),
            cmocka_unit_test(test_check_off_and_permitted),
            cmocka_unit_test(test_check_without_capability),
            cmocka_unit_test(test_lock_on),
            cmocka_unit_test(test_off_drops_everything),
            cmocka_unit_test(test_drop_refuses_threads),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
