/* ramzswap nbd tests: memory residency in a real nbdkit: mlock=on|off|auto and
 * reserve=.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Root only (a process without CAP_IPC_LOCK is made with capsh). With
 * mlockall(MCL_ONFAULT) VmLck counts whole VMAs, touched or not, so growth is
 * measured as locked resident memory: the sum of "Locked:" in smaps_rollup.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "nbd_harness.h"
#include "ramzswap/stats_format.h"

#define PAGE       4096u
#define DATA_BYTES (32u << 20)
#define CHUNK      (1u << 20)

/* "Key:   N kB" from a /proc file, in bytes. */
static uint64_t proc_kb(pid_t pid, const char *file, const char *key)
{
        char path[64], line[256];
        size_t klen = strlen(key);
        uint64_t kb;
        FILE *f;

        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
        f = fopen(path, "r");
        if (f == NULL)
                fail_msg("%s: %s", path, strerror(errno));
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, key, klen) == 0 &&
                    sscanf(line + klen, " %" SCNu64 " kB", &kb) == 1) {
                        fclose(f);
                        return kb * 1024;
                }
        }
        fclose(f);
        fail_msg("%s has no %s line", path, key);
        return 0;
}

struct server {
        struct harness_server srv;
        char dir[64];
        char stats[96];
        struct nbd_handle *h;
};

/* reserve may be NULL (none). */
static void start_with(struct server *s, const char *mlock, const char *reserve)
{
        char param[128];

        strcpy(s->dir, "/tmp/ramzswap-mlock-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->stats, sizeof s->stats, "%s/stats", s->dir);
        snprintf(param, sizeof param, "stats=%s", s->stats);
        harness_server_start(&s->srv,
                             (const char *const[]){"disksize=256M", "memlimit=192M",
                                                   mlock, param, reserve, NULL});
        /* Once a connection is served, .after_fork has locked memory. */
        s->h = harness_server_connect(&s->srv);
}

static void start(struct server *s, const char *mlock)
{
        start_with(s, mlock, NULL);
}

static void stop(struct server *s)
{
        nbd_close(s->h);
        harness_server_stop(&s->srv);
        rmdir(s->dir);
}

static void fetch_stats(const struct server *s, struct rzs_stats_report *r)
{
        static char buf[4 * RZS_STATS_TEXT_MAX];
        size_t n = harness_stats_fetch(s->stats, "text\n", buf, sizeof buf);

        if (rzs_stats_parse_text(buf, n, r) != 0)
                fail_msg("not a stats snapshot:\n%s", buf);
}

/* Incompressible: each page takes a whole pool page. */
static void write_data(struct nbd_handle *h)
{
        unsigned char *buf = malloc(CHUNK);

        assert_non_null(buf);
        for (uint64_t off = 0; off < DATA_BYTES; off += CHUNK) {
                for (unsigned i = 0; i < CHUNK / PAGE; i++)
                        harness_fill(buf + (size_t)i * PAGE, off / PAGE + i, 0);
                assert_int_equal(nbd_pwrite(h, buf, CHUNK, off, 0), 0);
        }
        free(buf);
}

static void test_mlock_on(void **state)
{
        struct server s;
        struct rzs_stats_report r;
        struct rlimit rl;
        uint64_t before, after, trimmed;

        start(&s, "mlock=on");
        assert_true(proc_kb(s.srv.pid, "status", "VmLck:") > 0);
        before = proc_kb(s.srv.pid, "smaps_rollup", "Locked:");
        write_data(s.h);
        after = proc_kb(s.srv.pid, "smaps_rollup", "Locked:");
        /* The pool's pages holding the data are resident and locked. */
        if (after < before + DATA_BYTES)
                fail_msg("locked memory grew by %" PRIu64 " bytes after writing %u bytes",
                         after - before, DATA_BYTES);

        fetch_stats(&s, &r);
        assert_int_equal(r.stats.pages_stored, DATA_BYTES / PAGE);
        assert_true(r.mlocked);
        /* CAP_IPC_LOCK is kept only when later mappings need it (a finite
         * RLIMIT_MEMLOCK, inherited from us); every other capability is gone. */
        assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
        assert_string_equal(r.capabilities,
                            rl.rlim_cur == RLIM_INFINITY ? "none" : "cap_ipc_lock=ep");

        /* Locked pool memory still goes back to the OS when the data goes: a
         * locked swap server whose RSS never fell would hoard what it was meant to
         * save. (nbdkit's own request buffers stay, hence pool memory, not all.) */
        assert_true(r.stats.mem_used_total >= DATA_BYTES / 16);
        assert_int_equal(nbd_trim(s.h, DATA_BYTES, 0, 0), 0);
        trimmed = proc_kb(s.srv.pid, "smaps_rollup", "Locked:");
        if (trimmed + r.stats.mem_used_total / 10 * 9 > after)
                fail_msg("locked memory %" PRIu64 " bytes after trimming %" PRIu64
                         " bytes of pool memory, %" PRIu64 " before",
                         trimmed, r.stats.mem_used_total, after);
        stop(&s);
}

static void test_mlock_off(void **state)
{
        struct server s;
        struct rzs_stats_report r;

        start(&s, "mlock=off");
        write_data(s.h);
        assert_int_equal(proc_kb(s.srv.pid, "status", "VmLck:"), 0);
        fetch_stats(&s, &r);
        assert_false(r.mlocked);
        assert_string_equal(r.capabilities, "none");
        stop(&s);
}

/* reserve= pool pages are faulted in before serving: the server is that much
 * larger from the start, before any data arrives. The rest of the process's RSS
 * differs between two starts by a few pages, hence the 1/16 slack. */
static void test_reserve_resident(void **state)
{
        struct server s;
        uint64_t plain, reserved;

        start_with(&s, "mlock=off", NULL);
        plain = proc_kb(s.srv.pid, "status", "VmRSS:");
        stop(&s);
        start_with(&s, "mlock=off", "reserve=128M");
        reserved = proc_kb(s.srv.pid, "status", "VmRSS:");
        stop(&s);
        if (reserved < plain + (128u << 20) - (8u << 20))
                fail_msg("RSS %" PRIu64 " bytes with reserve=128M, %" PRIu64 " without",
                         reserved, plain);
}

/* Run the inner shell command (bash -c, via capsh) in a process without
 * CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB. Output in *out. */
static int run_unprivileged(const char *inner, char **out)
{
        static const char *const argv[] = {
            "/bin/sh", "-c",
            "ulimit -l 64 && exec capsh --drop=cap_ipc_lock -- -c \"$RZS_INNER\"", NULL};

        assert_int_equal(setenv("RZS_INNER", inner, 1), 0);
        return harness_run(argv, out);
}

/* Start nbdkit -s under run_unprivileged with mlock=on and extra (a parameter or
 * ""); it must refuse with a clear sentence naming the thread count it assumed.
 * Returns the RLIMIT_MEMLOCK it asked for, in KiB. */
static uint64_t refused_asking(const char *extra, unsigned threads)
{
        char cmd[256], assumed[160];
        const char *p;
        uint64_t kib;
        char *out;
        int status;

        snprintf(cmd, sizeof cmd,
                 "exec \"$NBDKIT\" -s \"$RAMZSWAP_PLUGIN\" disksize=16M mlock=on %s",
                 extra);
        status = run_unprivileged(cmd, &out);
        if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
                fail_msg("mlock=on without CAP_IPC_LOCK started (status %#x):\n%s",
                         status, out);
        p = strstr(out, "mlock=on: this process may not lock its memory: run as root or "
                        "grant CAP_IPC_LOCK, or raise RLIMIT_MEMLOCK (ulimit -l) to at "
                        "least ");
        snprintf(assumed, sizeof assumed,
                 "(it is 64 KiB) (assuming %u threads of 8 MiB stacks; raise "
                 "workspaces= if you run nbdkit -t with more)",
                 threads);
        if (p == NULL || strstr(out, assumed) == NULL ||
            sscanf(strstr(p, "at least ") + 9, "%" SCNu64, &kib) != 1)
                fail_msg("no clear refusal:\n%s", out);
        free(out);
        return kib;
}

/* The estimate counts the worker threads the user says nbdkit runs (workspaces=,
 * default 16), each with an 8 MiB stack. */
static void test_mlock_on_refused(void **state)
{
        uint64_t sixteen = refused_asking("", 16);
        uint64_t four = refused_asking("workspaces=4", 4);

        if (sixteen < four + 12 * 8192)
                fail_msg("asks %" PRIu64 " KiB for 16 threads, %" PRIu64 " KiB for 4",
                         sixteen, four);
}

static void test_mlock_auto_warns(void **state)
{
        char dir[] = "/tmp/ramzswap-mlock-XXXXXX", stats[64], line[96];
        char *out;
        int status;

        if (getenv("RAMZSWAP_STAT") == NULL || access(getenv("RAMZSWAP_STAT"), X_OK))
                skip();
        assert_non_null(mkdtemp(dir));
        snprintf(stats, sizeof stats, "%s/stats", dir);
        assert_int_equal(setenv("RZS_TEST_STATS", stats, 1), 0);
        /* The captive command runs once the server is serving. */
        status =
            run_unprivileged("exec \"$NBDKIT\" -U - \"$RAMZSWAP_PLUGIN\" disksize=16M "
                             "mlock=auto \"stats=$RZS_TEST_STATS\" "
                             "--run '\"$RAMZSWAP_STAT\" \"$RZS_TEST_STATS\"'",
                             &out);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("mlock=auto without CAP_IPC_LOCK: status %#x:\n%s", status, out);
        if (strstr(out, "warning: mlock=auto: this process may not lock its memory") ==
                NULL ||
            strstr(out, "carrying on without locking") == NULL)
                fail_msg("no warning:\n%s", out);
        snprintf(line, sizeof line, "  %-18s %14s\n", "Memory locked", "no");
        if (strstr(out, line) == NULL)
                fail_msg("ramzswap-stat does not say memory is unlocked:\n%s", out);
        free(out);
        rmdir(dir);
}

/* A warning issued in .after_fork goes through nbdkit's error log, not our
 * stderr: once nbdkit has daemonised, stderr is /dev/null and only the log (syslog)
 * reaches the operator. mlockall is made to fail (fail_mlockall.so) so that
 * mlock=auto warns there. */
static void test_after_fork_warning_logged(void **state)
{
        const char *shim = getenv("RZS_FAIL_MLOCKALL");
        char *old = getenv("LD_PRELOAD") ? strdup(getenv("LD_PRELOAD")) : NULL;
        char preload[1024];
        char *err;
        int status;

        if (shim == NULL)
                skip();
        /* After ASan's runtime, which must come first. */
        snprintf(preload, sizeof preload, "%s%s%s", old ? old : "", old ? ":" : "", shim);
        assert_int_equal(setenv("LD_PRELOAD", preload, 1), 0);
        status = harness_run_nbdkit(
            (const char *const[]){"disksize=16M", "mlock=auto", NULL}, &err);
        if (old)
                setenv("LD_PRELOAD", old, 1);
        else
                unsetenv("LD_PRELOAD");
        free(old);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("nbdkit -s failed (status %#x):\n%s", status, err);
        /* In .after_fork nbdkit names no plugin: "nbdkit: error: ...". */
        if (strstr(err, "nbdkit: error: warning: ramzswap: mlock=auto: "
                        "mlockall(MCL_CURRENT|MCL_FUTURE|"
                        "MCL_ONFAULT): Operation not permitted; carrying on without "
                        "locking") == NULL)
                fail_msg("no warning through nbdkit's log:\n%s", err);
        free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_mlock_on),
            cmocka_unit_test(test_mlock_off),
            cmocka_unit_test(test_reserve_resident),
            cmocka_unit_test(test_mlock_on_refused),
            cmocka_unit_test(test_mlock_auto_warns),
            cmocka_unit_test(test_after_fork_warning_logged),
        };

        harness_nbdkit();
        harness_plugin();
        if (geteuid() != 0) {
                fprintf(stderr, "not root: skipping\n");
                return HARNESS_SKIP;
        }
        harness_require_program("capsh");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
