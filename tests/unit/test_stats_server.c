/* Unit tests for stats_server: socket file mode, text and JSON replies, concurrent
 * clients, silent and garbage-sending clients, refusal to replace files and live
 * sockets, symlinks and a symlink swapped in after bind, reuse of stale sockets,
 * removal at stop, fork ownership.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libgen.h>
#include <limits.h>

#include "ramzswap/stats_format.h"
#include "ramzswap/stats_server.h"
#include "tiny_json.h"

/* A safety net so a broken server fails the test instead of hanging it. */
#define CLIENT_RECV_TIMEOUT_S 30

/* A symlink swapped in for the socket right after bind, as a racing process that can
 * rename entries in the directory would do; "" = no race. The test's bind replaces
 * libc's for the whole executable (the server is linked in statically). */
static char race_victim[128];

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
        const struct sockaddr_un *sa = (const struct sockaddr_un *)addr;
        long r = syscall(SYS_bind, fd, addr, len);
        char moved[sizeof sa->sun_path + 8];

        if (r == 0 && race_victim[0] && sa->sun_family == AF_UNIX) {
                snprintf(moved, sizeof moved, "%s.old", sa->sun_path);
                if (rename(sa->sun_path, moved) == 0)
                        (void)symlink(race_victim, sa->sun_path);
                unlink(moved);
        }
        return (int)r;
}

struct fixture {
        char dir[64];
        char path[128];
        atomic_uint_fast64_t calls; /* snapshots taken */
        int fail_with;              /* snapshot error to return, 0 = none */
};

/* Each snapshot is distinct (num_reads = call number) and self-consistent
 * (num_writes = 2 * num_reads), so a reply can be checked on its own. */
static int snapshot(void *opaque, struct rzs_stats *st, struct rzs_stats_facts *fa)
{
        struct fixture *fx = opaque;
        uint64_t k = atomic_fetch_add(&fx->calls, 1) + 1;

        if (fx->fail_with)
                return -fx->fail_with;
        *st = (struct rzs_stats){.disksize = 1 << 30,
                                 .num_reads = k,
                                 .num_writes = 2 * k,
                                 .pages_stored = 10,
                                 .good_compress = 5,
                                 .orig_data_size = 40960,
                                 .compr_data_size = 10240,
                                 .mem_used_total = 12288};
        *fa = (struct rzs_stats_facts){.compressor = "lzo", .capabilities = "none"};
        return 0;
}

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof *fx);

        if (fx == NULL)
                return -1;
        strcpy(fx->dir, "/tmp/rzs-stats-XXXXXX");
        if (mkdtemp(fx->dir) == NULL)
                return -1;
        snprintf(fx->path, sizeof fx->path, "%s/stats.sock", fx->dir);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        race_victim[0] = '\0';
        unlink(fx->path);
        rmdir(fx->dir);
        free(fx);
        return 0;
}

static int connect_to(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct timeval tv = {.tv_sec = CLIENT_RECV_TIMEOUT_S};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
        return fd;
}

/* Read until end of file; fails the test on a timeout or error. */
static size_t read_all(int fd, char *buf, size_t size)
{
        size_t len = 0;
        ssize_t n;

        while ((n = recv(fd, buf + len, size - 1 - len, 0)) > 0)
                len += (size_t)n;
        assert_int_equal(n, 0);
        buf[len] = '\0';
        return len;
}

/* One request; req NULL sends nothing and half-closes at once. */
static size_t fetch(const char *path, const char *req, char *buf, size_t size)
{
        int fd = connect_to(path);
        size_t len;

        if (req)
                assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL),
                                 (ssize_t)strlen(req));
        else
                shutdown(fd, SHUT_WR);
        len = read_all(fd, buf, size);
        close(fd);
        return len;
}

static uint64_t check_text(const char *buf, size_t len)
{
        struct rzs_stats_report r;

        assert_int_equal(rzs_stats_parse_text(buf, len, &r), 0);
        assert_int_equal(r.stats.num_writes, 2 * r.stats.num_reads);
        assert_int_equal(r.good_compress_pct, 50);
        assert_int_equal(r.compression_ratio_x100, 400);
        assert_string_equal(r.compressor, "lzo");
        return r.stats.num_reads;
}

static uint64_t check_json(const char *buf, size_t len)
{
        struct tj_object o;
        uint64_t reads, writes;

        assert_true(tj_parse(buf, len, &o));
        assert_true(tj_u64(&o, "num_reads", &reads));
        assert_true(tj_u64(&o, "num_writes", &writes));
        assert_int_equal(writes, 2 * reads);
        assert_string_equal(tj_find(&o, "compression_ratio")->value, "4.00");
        return reads;
}

static struct rzs_stats_server *start_server(struct fixture *fx)
{
        struct rzs_stats_server *srv;

        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), 0);
        assert_int_equal(rzs_stats_server_start(srv), 0);
        return srv;
}

static void test_mode_and_replies(void **state)
{
        struct fixture *fx = *state;
        mode_t old = umask(0); /* the mode must not depend on the umask */
        struct rzs_stats_server *srv = start_server(fx);
        char buf[RZS_STATS_TEXT_MAX];
        struct stat st;
        size_t n;

        assert_int_equal(umask(old), 0); /* create restored the umask */
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(rzs_stats_server_start(srv), -EALREADY);
        assert_int_equal(rzs_stats_server_set_request_timeout(srv, 5), -EBUSY);

        n = fetch(fx->path, "json\n", buf, sizeof buf);
        assert_int_equal(check_json(buf, n), 1);
        n = fetch(fx->path, "json\r\n", buf, sizeof buf);
        assert_int_equal(check_json(buf, n), 2);
        n = fetch(fx->path, "text\n", buf, sizeof buf);
        assert_int_equal(check_text(buf, n), 3);
        n = fetch(fx->path, NULL, buf, sizeof buf); /* nothing, end of input */
        assert_int_equal(check_text(buf, n), 4);
        n = fetch(fx->path, "jsonx\n", buf, sizeof buf);
        assert_int_equal(check_text(buf, n), 5);
        rzs_stats_server_destroy(srv);
        assert_int_equal(lstat(fx->path, &st), -1);
        assert_int_equal(errno, ENOENT);
}

#define CLIENT_THREADS      6
#define REQUESTS_PER_THREAD 25

struct client_arg {
        struct fixture *fx;
        int id;
        uint64_t seen[REQUESTS_PER_THREAD];
};

static void *client_thread(void *p)
{
        struct client_arg *a = p;
        char buf[RZS_STATS_TEXT_MAX];

        for (int i = 0; i < REQUESTS_PER_THREAD; i++) {
                bool json = (i + a->id) % 2;
                size_t n = fetch(a->fx->path, json ? "json\n" : "\n", buf, sizeof buf);

                a->seen[i] = json ? check_json(buf, n) : check_text(buf, n);
        }
        return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

static void test_concurrent_clients(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx);
        static struct client_arg args[CLIENT_THREADS];
        pthread_t th[CLIENT_THREADS];
        uint64_t all[CLIENT_THREADS * REQUESTS_PER_THREAD];

        for (int t = 0; t < CLIENT_THREADS; t++) {
                args[t] = (struct client_arg){.fx = fx, .id = t};
                assert_int_equal(pthread_create(&th[t], NULL, client_thread, &args[t]),
                                 0);
        }
        for (int t = 0; t < CLIENT_THREADS; t++) {
                pthread_join(th[t], NULL);
                memcpy(&all[t * REQUESTS_PER_THREAD], args[t].seen, sizeof args[t].seen);
        }
        rzs_stats_server_destroy(srv);
        /* Every reply came from its own fresh snapshot: 1..N, each exactly once. */
        assert_int_equal(atomic_load(&fx->calls), CLIENT_THREADS * REQUESTS_PER_THREAD);
        qsort(all, CLIENT_THREADS * REQUESTS_PER_THREAD, sizeof all[0], cmp_u64);
        for (size_t i = 0; i < CLIENT_THREADS * REQUESTS_PER_THREAD; i++)
                assert_int_equal(all[i], i + 1);
}

static bool has_nothing_to_read(int fd)
{
        char c;

        return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* With a request timeout far beyond the test's length, the silent and the hanging
 * clients are still waiting when the normal clients are answered: they did not
 * block them. */
static void test_slow_clients_do_not_block(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv;
        char buf[RZS_STATS_TEXT_MAX], junk[RZS_STATS_REQUEST_MAX - 1];
        int silent, garbage, early;
        size_t n;

        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), 0);
        assert_int_equal(rzs_stats_server_set_request_timeout(srv, 0), -EINVAL);
        assert_int_equal(rzs_stats_server_set_request_timeout(srv, 3600 * 1000), 0);
        assert_int_equal(rzs_stats_server_start(srv), 0);

        silent = connect_to(fx->path);
        garbage = connect_to(fx->path);
        memset(junk, 0xff, sizeof junk); /* no newline, under the read bound */
        assert_int_equal(send(garbage, junk, sizeof junk, MSG_NOSIGNAL), sizeof junk);
        early = connect_to(fx->path);
        close(early); /* gone before the server answers */

        for (int i = 0; i < 3; i++) {
                n = fetch(fx->path, "json\n", buf, sizeof buf);
                check_json(buf, n);
                n = fetch(fx->path, NULL, buf, sizeof buf);
                check_text(buf, n);
        }
        assert_true(has_nothing_to_read(silent));
        assert_true(has_nothing_to_read(garbage));

        /* Reaching the read bound without a newline completes the request: text. */
        assert_int_equal(send(garbage, "x", 1, MSG_NOSIGNAL), 1);
        n = read_all(garbage, buf, sizeof buf);
        check_text(buf, n);
        close(garbage);
        /* The silent client is answered (text) when the server stops. */
        rzs_stats_server_destroy(srv);
        n = read_all(silent, buf, sizeof buf);
        assert_int_equal(n, 0); /* closed unanswered at stop, not left hanging */
        close(silent);
}

/* With the default timeout a silent client gets the text form once it expires. */
static void test_silent_client_gets_text(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx);
        char buf[RZS_STATS_TEXT_MAX];
        int fd = connect_to(fx->path);
        size_t n;

        assert_int_equal(send(fd, "js", 2, MSG_NOSIGNAL), 2);
        n = read_all(fd, buf,
                     sizeof buf); /* "js" without newline: text at the deadline */
        check_text(buf, n);
        close(fd);
        rzs_stats_server_destroy(srv);
}

/* A flood of silent clients, more than the pending slots, all get answered. */
static void test_more_clients_than_slots(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx);
        enum { N = RZS_STATS_MAX_PENDING * 2 + 3 };
        int fds[N];
        char buf[RZS_STATS_TEXT_MAX];

        for (int i = 0; i < N; i++)
                fds[i] = connect_to(fx->path);
        for (int i = 0; i < N; i++) {
                check_text(buf, read_all(fds[i], buf, sizeof buf));
                close(fds[i]);
        }
        rzs_stats_server_destroy(srv);
}

static void test_snapshot_error(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv;
        char buf[RZS_STATS_TEXT_MAX], want[128];
        struct rzs_stats_report r;
        size_t n;

        fx->fail_with = EIO;
        srv = start_server(fx);
        n = fetch(fx->path, "json\n", buf, sizeof buf);
        snprintf(want, sizeof want, "Error: %s\n", strerror(EIO));
        assert_string_equal(buf, want);
        assert_int_equal(rzs_stats_parse_text(buf, n, &r), -EBADMSG);
        rzs_stats_server_destroy(srv);
}

static void test_refuses_regular_file(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = (void *)1;
        struct stat st;
        int fd = open(fx->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, "keep", 4), 4);
        close(fd);
        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), -EEXIST);
        assert_null(srv);
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_size, 4);
}

static void test_refuses_live_socket(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx), *second = (void *)1;
        char buf[RZS_STATS_TEXT_MAX];

        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &second),
                         -EEXIST);
        assert_null(second);
        check_text(buf, fetch(fx->path, NULL, buf, sizeof buf)); /* first one unharmed */
        rzs_stats_server_destroy(srv);
}

static void test_reuses_stale_socket(void **state)
{
        struct fixture *fx = *state;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct rzs_stats_server *srv;
        char buf[RZS_STATS_TEXT_MAX];
        struct stat st;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        /* A socket file left behind by a dead server. */
        strcpy(sa.sun_path, fx->path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd);
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));

        srv = start_server(fx);
        check_text(buf, fetch(fx->path, NULL, buf, sizeof buf));
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        rzs_stats_server_destroy(srv);
}

/* The socket gets its mode without a chmod by name: a symlink swapped in between bind
 * and the rest of create does not get its target's mode changed, and create fails
 * rather than serve on a path that is no longer its socket. */
/* Another user's file, mode 0644, in the fixture's directory: what a symlink at
 * the socket's path would point to. */
static void make_victim(const struct fixture *fx, char *victim, size_t size)
{
        int fd;

        snprintf(victim, size, "%s/victim", fx->dir);
        fd = open(victim, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(chmod(victim, 0644), 0);
}

/* Create is refused, and the victim keeps its mode. */
static void assert_refused_victim_untouched(struct fixture *fx, const char *victim)
{
        struct rzs_stats_server *srv = (void *)1;
        struct stat st;

        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), -EEXIST);
        assert_null(srv);
        assert_int_equal(stat(victim, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
}

static void test_no_chmod_by_name(void **state)
{
        struct fixture *fx = *state;
        char victim[160];
        struct stat st;

        make_victim(fx, victim, sizeof victim);
        strcpy(race_victim, victim);
        assert_refused_victim_untouched(fx, victim);
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_true(S_ISLNK(st.st_mode)); /* not ours: left alone */
        unlink(victim);
}

/* A symlink already at the path is refused, and its target is untouched. */
static void test_refuses_symlink(void **state)
{
        struct fixture *fx = *state;
        char victim[160];

        make_victim(fx, victim, sizeof victim);
        assert_int_equal(symlink(victim, fx->path), 0);
        assert_refused_victim_untouched(fx, victim);
        unlink(victim);
}

/* A directory others can write to is refused unless sticky: there anyone could
 * replace the socket under us. A sticky one (like /tmp) is fine. */
static void test_directory_writable_by_others(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = (void *)1;

        assert_int_equal(chmod(fx->dir, 0777), 0);
        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), -EPERM);
        assert_null(srv);
        assert_int_equal(chmod(fx->dir, 01777), 0);
        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), 0);
        rzs_stats_server_destroy(srv);
}

/* A stale socket another user left (another service's, say) is not ours to remove.
 * Needs root to make it: skipped otherwise. */
static void test_keeps_foreign_stale_socket(void **state)
{
        struct fixture *fx = *state;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct rzs_stats_server *srv = (void *)1;
        struct stat st;
        int status;
        pid_t pid;

        if (geteuid() != 0)
                skip();
        assert_int_equal(chmod(fx->dir, 01777), 0); /* so uid 65534 may bind there */
        strcpy(sa.sun_path, fx->path);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

                if (setresuid(65534, 65534, 65534) < 0 ||
                    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                        _exit(1);
                _exit(0); /* nobody listens: the socket is stale */
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), -EEXIST);
        assert_null(srv);
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_uid, 65534);
}

static void test_bad_paths(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv;
        char longpath[200], missing[160];

        memset(longpath, 'a', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        assert_int_equal(rzs_stats_server_create(longpath, snapshot, fx, &srv),
                         -ENAMETOOLONG);
        snprintf(missing, sizeof missing, "%s/no-such-dir/s.sock", fx->dir);
        assert_int_equal(rzs_stats_server_create(missing, snapshot, fx, &srv), -ENOENT);
}

/* Destroy removes only its own socket file. */
static void test_destroy_keeps_replaced_file(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx);
        struct stat st;
        int fd;

        assert_int_equal(unlink(fx->path), 0);
        fd = open(fx->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        rzs_stats_server_destroy(srv);
        assert_int_equal(lstat(fx->path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
}

/* A forked process that is not the server (nbdkit's exiting parent, say) does not
 * remove the socket when it cleans up. */
static void test_fork_does_not_remove(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx);
        char buf[RZS_STATS_TEXT_MAX];
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                rzs_stats_server_destroy(srv);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        check_text(buf, fetch(fx->path, NULL, buf, sizeof buf));
        rzs_stats_server_destroy(srv);
}

static void test_destroy_without_start(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv;
        struct stat st;

        assert_int_equal(rzs_stats_server_create(fx->path, snapshot, fx, &srv), 0);
        rzs_stats_server_destroy(srv);
        assert_int_equal(lstat(fx->path, &st), -1);
        rzs_stats_server_destroy(NULL);
}

/* ---- the ramzswap-stat CLI against a real server ---- */

/* The CLI from this build tree: $RAMZSWAP_STAT, or src/ramzswap-stat beside
 * tests/unit/ (meson builds every target before running tests). */
static void cli_path(char *buf, size_t size)
{
        const char *env = getenv("RAMZSWAP_STAT");
        char exe[PATH_MAX];
        ssize_t n;

        if (env) {
                snprintf(buf, size, "%s", env);
                return;
        }
        n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        assert_true(n > 0);
        exe[n] = '\0';
        snprintf(buf, size, "%s/../../src/ramzswap-stat", dirname(exe));
        assert_int_equal(access(buf, X_OK), 0);
}

static size_t drain(int fd, char *buf, size_t size)
{
        size_t len = 0;
        ssize_t n;

        while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
                len += (size_t)n;
        buf[len] = '\0';
        return len;
}

/* Run the CLI with args (NULL-terminated, without argv[0]); returns its exit status,
 * stdout in out, stderr in err. */
static int run_cli(const char *const *args, char *out, size_t outsize, char *err,
                   size_t errsize)
{
        char exe[PATH_MAX];
        const char *argv[8] = {exe};
        int po[2], pe[2], status;
        pid_t pid;

        cli_path(exe, sizeof exe);
        for (size_t i = 0; args[i]; i++)
                argv[i + 1] = args[i];
        assert_int_equal(pipe(po), 0);
        assert_int_equal(pipe(pe), 0);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(po[1], 1);
                dup2(pe[1], 2);
                execv(exe, (char *const *)argv);
                _exit(127);
        }
        close(po[1]);
        close(pe[1]);
        drain(po[0], out, outsize); /* replies are far below a pipe's capacity */
        drain(pe[0], err, errsize);
        close(po[0]);
        close(pe[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static int count_of(const char *hay, const char *needle)
{
        int n = 0;

        for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
                n++;
        return n;
}

static void test_cli_table_and_json(void **state)
{
        struct fixture *fx = *state;
        struct rzs_stats_server *srv = start_server(fx);
        char out[4 * RZS_STATS_TEXT_MAX], err[1024];
        struct tj_object o;
        uint64_t reads, writes;

        assert_int_equal(
            run_cli((const char *[]){fx->path, NULL}, out, sizeof out, err, sizeof err),
            0);
        assert_string_equal(err, "");
        assert_non_null(strstr(out, "Disk size                1.00 GiB\n"));
        assert_non_null(strstr(out, "Original data           40.00 KiB\n"));
        assert_non_null(strstr(out, "Compression ratio            4.00\n"));
        assert_non_null(strstr(out, "Pages read                      1  (failed 0)\n"));
        assert_null(strstr(out, "Reads/s"));

        assert_int_equal(run_cli((const char *[]){"--json", fx->path, NULL}, out,
                                 sizeof out, err, sizeof err),
                         0);
        assert_true(tj_parse(out, strlen(out), &o));
        assert_true(tj_u64(&o, "num_reads", &reads));
        assert_true(tj_u64(&o, "num_writes", &writes));
        assert_int_equal(reads, 2);
        assert_int_equal(writes, 4);

        /* Two reports a second apart: the second has rates, the first a dash. */
        assert_int_equal(
            run_cli((const char *[]){"--watch", "1", "--count", "2", fx->path, NULL}, out,
                    sizeof out, err, sizeof err),
            0);
        assert_int_equal(count_of(out, "ramzswap statistics from "), 2);
        assert_int_equal(count_of(out, "Reads/s "), 2);
        assert_int_equal(
            count_of(out, "Reads/s                         -  (writes/s -)\n"), 1);
        assert_true(strstr(out, "(writes/s -)") < strstr(out, "\n\n")); /* the first */
        rzs_stats_server_destroy(srv);
}

static void test_cli_errors(void **state)
{
        struct fixture *fx = *state;
        char out[RZS_STATS_TEXT_MAX], err[1024], want[256];

        assert_int_equal(
            run_cli((const char *[]){fx->path, NULL}, out, sizeof out, err, sizeof err),
            1);
        snprintf(want, sizeof want, "ramzswap-stat: no ramzswap stats socket at %s: %s\n",
                 fx->path, strerror(ENOENT));
        assert_string_equal(err, want);
        assert_string_equal(out, "");

        assert_int_equal(
            run_cli((const char *[]){NULL}, out, sizeof out, err, sizeof err), 2);
        assert_int_equal(run_cli((const char *[]){"--watch", "0", fx->path, NULL}, out,
                                 sizeof out, err, sizeof err),
                         2);
        assert_int_equal(
            run_cli((const char *[]){"--help", NULL}, out, sizeof out, err, sizeof err),
            0);
        assert_non_null(strstr(out, "Usage: ramzswap-stat"));
}

/* A server that answers one connection with someone else's banner. */
static void *foreign_server(void *arg)
{
        int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
        const char banner[] = "SSH-2.0-OpenSSH_9.2p1\r\n";

        if (fd >= 0) {
                (void)send(fd, banner, sizeof banner - 1, MSG_NOSIGNAL);
                close(fd);
        }
        return NULL;
}

static void test_cli_foreign_socket(void **state)
{
        struct fixture *fx = *state;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char out[RZS_STATS_TEXT_MAX], err[1024], want[256];
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pthread_t t;

        strcpy(sa.sun_path, fx->path);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(lfd, 4), 0);
        for (int json = 0; json < 2; json++) {
                assert_int_equal(pthread_create(&t, NULL, foreign_server, &lfd), 0);
                assert_int_equal(run_cli((const char *[]){json ? "--json" : fx->path,
                                                          json ? fx->path : NULL, NULL},
                                         out, sizeof out, err, sizeof err),
                                 1);
                pthread_join(t, NULL);
                snprintf(want, sizeof want,
                         "ramzswap-stat: %s is not a ramzswap stats socket", fx->path);
                assert_true(strncmp(err, want, strlen(want)) == 0);
                assert_string_equal(out, "");
        }
        close(lfd);
}

/* A server that answers one connection with reply, chunk bytes at a time with
 * pause_ms between chunks, until all is sent or the client goes away. */
struct scripted {
        int lfd;
        const char *reply;
        size_t chunk;
        unsigned pause_ms;
};

static void *scripted_server(void *arg)
{
        const struct scripted *sc = arg;
        int fd = accept(sc->lfd, NULL, NULL);
        size_t len = strlen(sc->reply);
        char req[64];

        if (fd < 0)
                return NULL;
        (void)recv(fd, req, sizeof req, 0); /* "text\n" or "json\n" */
        for (size_t off = 0; off < len; off += sc->chunk) {
                size_t n = len - off < sc->chunk ? len - off : sc->chunk;
                struct timespec pause = {.tv_nsec = (long)sc->pause_ms * 1000000L};

                if (send(fd, sc->reply + off, n, MSG_NOSIGNAL) != (ssize_t)n)
                        break;
                if (sc->pause_ms)
                        nanosleep(&pause, NULL);
        }
        close(fd);
        return NULL;
}

static int listen_at(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(lfd >= 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(lfd, 4), 0);
        return lfd;
}

/* Run the CLI with args against one scripted reply; returns its exit status. */
static int cli_against(struct scripted *sc, const char *const *args, char *out,
                       size_t outsize, char *err, size_t errsize)
{
        pthread_t t;
        int status;

        assert_int_equal(pthread_create(&t, NULL, scripted_server, sc), 0);
        status = run_cli(args, out, outsize, err, errsize);
        pthread_join(t, NULL);
        return status;
}

/* A snapshot in form json (0/1) whose Compressor is "lzo" followed by hostile. */
static void hostile_snapshot(int json, const char *hostile, char *buf, size_t size)
{
        const struct rzs_stats st = {.disksize = 1 << 30, .pages_stored = 1};
        const struct rzs_stats_facts fa = {.compressor = "lzo", .capabilities = "none"};
        char plain[RZS_STATS_TEXT_MAX];
        const char *at;

        assert_true((json ? rzs_stats_format_json
                          : rzs_stats_format_text)(&st, &fa, plain, sizeof plain) > 0);
        at = strstr(plain, json ? "\"lzo\"" : "lzo\n");
        assert_non_null(at);
        at += json ? 4 : 3;
        snprintf(buf, size, "%.*s%s%s", (int)(at - plain), plain, hostile, at);
}

/* Terminal escapes in the server's strings are not printed raw: a stats socket
 * must not be able to retitle or clear the reader's terminal. */
static void test_cli_escapes_server_strings(void **state)
{
        struct fixture *fx = *state;
        char reply[RZS_STATS_TEXT_MAX], out[4 * RZS_STATS_TEXT_MAX], err[1024];
        struct scripted sc = {.lfd = listen_at(fx->path), .reply = reply, .chunk = 4096};

        for (int json = 0; json < 2; json++) {
                hostile_snapshot(json, "\033]0;owned\007\033[2J", reply, sizeof reply);
                assert_int_equal(
                    cli_against(&sc,
                                (const char *[]){json ? "--json" : fx->path,
                                                 json ? fx->path : NULL, NULL},
                                out, sizeof out, err, sizeof err),
                    0);
                assert_non_null(strstr(out, "lzo"));
                assert_null(strchr(out, '\033'));
                assert_null(strchr(out, '\007'));
        }
        close(sc.lfd);
}

/* A server that trickles a valid snapshot a few bytes at a time (about 10 s for
 * the whole) is cut off by the CLI's deadline on the whole reply, not waited for
 * read by read. */
static void test_cli_reply_deadline(void **state)
{
        struct fixture *fx = *state;
        char reply[RZS_STATS_TEXT_MAX], out[4 * RZS_STATS_TEXT_MAX], err[1024];
        struct scripted sc = {
            .lfd = listen_at(fx->path), .reply = reply, .chunk = 10, .pause_ms = 100};

        hostile_snapshot(0, "", reply, sizeof reply);
        assert_int_equal(cli_against(&sc, (const char *[]){fx->path, NULL}, out,
                                     sizeof out, err, sizeof err),
                         1);
        assert_non_null(strstr(err, "no full answer within"));
        assert_string_equal(out, "");
        close(sc.lfd);
}

/* Every test gets its own fixture (setup and teardown). */
#define FRESH(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            FRESH(test_mode_and_replies),
            FRESH(test_concurrent_clients),
            FRESH(test_slow_clients_do_not_block),
            FRESH(test_silent_client_gets_text),
            FRESH(test_more_clients_than_slots),
            FRESH(test_snapshot_error),
            FRESH(test_refuses_regular_file),
            FRESH(test_refuses_live_socket),
            FRESH(test_reuses_stale_socket),
            FRESH(test_no_chmod_by_name),
            FRESH(test_refuses_symlink),
            FRESH(test_directory_writable_by_others),
            FRESH(test_keeps_foreign_stale_socket),
            FRESH(test_bad_paths),
            FRESH(test_destroy_keeps_replaced_file),
            FRESH(test_fork_does_not_remove),
            FRESH(test_destroy_without_start),
            FRESH(test_cli_table_and_json),
            FRESH(test_cli_errors),
            FRESH(test_cli_foreign_socket),
            FRESH(test_cli_escapes_server_strings),
            FRESH(test_cli_reply_deadline),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
