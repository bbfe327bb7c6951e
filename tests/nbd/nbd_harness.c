/* ramzswap nbd tests: nbdkit start/stop helpers (see nbd_harness.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "nbd_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 32

static void die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fputs("nbd_harness: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(1);
}

static const char *env_path(const char *name, int mode)
{
        const char *p = getenv(name);

        if (p == NULL || *p == '\0' || access(p, mode) != 0) {
                fprintf(stderr, "%s is not set or not usable: skipping\n", name);
                exit(HARNESS_SKIP);
        }
        return p;
}

const char *harness_nbdkit(void)
{
        return env_path("NBDKIT", X_OK);
}

const char *harness_plugin(void)
{
        return env_path("RAMZSWAP_PLUGIN", R_OK);
}

void harness_require_program(const char *program)
{
        char cmd[256];

        snprintf(cmd, sizeof cmd, "command -v '%s' >/dev/null 2>&1", program);
        if (system(cmd) != 0) {
                fprintf(stderr, "%s not found: skipping\n", program);
                exit(HARNESS_SKIP);
        }
}

/* argv = nbdkit, the fixed options, the plugin, params, NULL. */
static void build_argv(const char **argv, const char *const *opts,
                       const char *const *params)
{
        size_t n = 0;

        argv[n++] = harness_nbdkit();
        for (; *opts; opts++)
                argv[n++] = *opts;
        argv[n++] = harness_plugin();
        for (; params && *params; params++) {
                if (n >= MAX_ARGS - 1)
                        die("too many parameters");
                argv[n++] = *params;
        }
        argv[n] = NULL;
}

struct nbd_handle *harness_connect(const char *const *params)
{
        static const char *const opts[] = {"-s", "--exit-with-parent", NULL};
        const char *argv[MAX_ARGS];
        struct nbd_handle *h;

        build_argv(argv, opts, params);
        h = nbd_create();
        if (h == NULL)
                die("nbd_create: %s", nbd_get_error());
        if (nbd_connect_command(h, (char **)argv) == -1)
                die("nbd_connect_command: %s", nbd_get_error());
        return h;
}

/* libnbd starts nbdkit with our stderr: point ours at errfd for that moment. */
struct nbd_handle *harness_connect_stderr(const char *const *params, int errfd)
{
        struct nbd_handle *h;
        int saved;

        fflush(stderr);
        saved = dup(2);
        if (saved == -1 || dup2(errfd, 2) == -1)
                die("redirecting stderr: %s", strerror(errno));
        h = harness_connect(params);
        if (dup2(saved, 2) == -1)
                die("restoring stderr: %s", strerror(errno));
        close(saved);
        return h;
}

void harness_server_start(struct harness_server *srv, const char *const *params)
{
        static const char *const opts[] = {"-f", "--exit-with-parent", NULL};
        const char *argv[MAX_ARGS];
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int fd;

        build_argv(argv, opts, params);
        strcpy(srv->dir, "/tmp/ramzswap-nbd-XXXXXX");
        if (mkdtemp(srv->dir) == NULL)
                die("mkdtemp: %s", strerror(errno));
        snprintf(srv->sock, sizeof srv->sock, "%s/sock", srv->dir);
        strcpy(addr.sun_path, srv->sock);

        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd == -1 || bind(fd, (struct sockaddr *)&addr, sizeof addr) == -1 ||
            listen(fd, 64) == -1)
                die("listening on %s: %s", srv->sock, strerror(errno));

        srv->pid = fork();
        if (srv->pid == -1)
                die("fork: %s", strerror(errno));
        if (srv->pid == 0) {
                char pid[32];

                /* systemd's protocol: the socket is fd 3, LISTEN_PID names us. */
                if (fd != 3 && (dup2(fd, 3) == -1 || close(fd) == -1))
                        _exit(126);
                snprintf(pid, sizeof pid, "%d", (int)getpid());
                setenv("LISTEN_PID", pid, 1);
                setenv("LISTEN_FDS", "1", 1);
                execv(argv[0], (char **)argv);
                _exit(127);
        }
        close(fd);
}

struct nbd_handle *harness_server_connect(const struct harness_server *srv)
{
        struct nbd_handle *h = nbd_create();

        if (h == NULL)
                die("nbd_create: %s", nbd_get_error());
        if (nbd_connect_unix(h, srv->sock) == -1)
                die("nbd_connect_unix %s: %s", srv->sock, nbd_get_error());
        return h;
}

void harness_server_stop(struct harness_server *srv)
{
        int status;

        if (kill(srv->pid, SIGTERM) == -1)
                die("kill nbdkit: %s", strerror(errno));
        if (waitpid(srv->pid, &status, 0) == -1)
                die("waitpid: %s", strerror(errno));
        unlink(srv->sock);
        rmdir(srv->dir);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                die("nbdkit did not exit cleanly (wait status %#x)", status);
}

/* Fork, exec argv with stdin on /dev/null, stdout on /dev/null unless
 * capture_stdout, stderr (and stdout if captured) into a pipe read into *out. */
static int run_capture(const char *const *argv, int capture_stdout, char **out)
{
        int pipefd[2], status;
        char *text = NULL;
        size_t len = 0;
        ssize_t r;
        pid_t pid;

        if (pipe(pipefd) == -1)
                die("pipe: %s", strerror(errno));
        pid = fork();
        if (pid == -1)
                die("fork: %s", strerror(errno));
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);

                if (null == -1 || dup2(null, 0) == -1 ||
                    dup2(capture_stdout ? pipefd[1] : null, 1) == -1 ||
                    dup2(pipefd[1], 2) == -1)
                        _exit(126);
                close(pipefd[0]);
                execv(argv[0], (char **)argv);
                _exit(127);
        }
        close(pipefd[1]);
        do {
                text = realloc(text, len + 4096 + 1);
                if (text == NULL)
                        die("out of memory");
                r = read(pipefd[0], text + len, 4096);
                if (r > 0)
                        len += (size_t)r;
        } while (r > 0 || (r == -1 && errno == EINTR));
        text[len] = '\0';
        close(pipefd[0]);
        if (waitpid(pid, &status, 0) == -1)
                die("waitpid: %s", strerror(errno));
        *out = text;
        return status;
}

int harness_run_nbdkit(const char *const *params, char **err)
{
        static const char *const opts[] = {"-s", NULL};
        const char *argv[MAX_ARGS];

        build_argv(argv, opts, params);
        return run_capture(argv, 0, err);
}

int harness_run(const char *const *argv, char **out)
{
        return run_capture(argv, 1, out);
}

size_t harness_stats_fetch(const char *path, const char *request, char *buf, size_t size)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len = 0;
        ssize_t n;
        int fd;

        if (strlen(path) >= sizeof sa.sun_path)
                die("stats socket path too long: %s", path);
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof sa) == -1)
                die("connecting to the stats socket %s: %s", path, strerror(errno));
        if (*request &&
            send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request))
                die("sending to the stats socket %s: %s", path, strerror(errno));
        shutdown(fd, SHUT_WR);
        while (len < size - 1) {
                n = recv(fd, buf + len, size - 1 - len, 0);
                if (n == -1 && errno == EINTR)
                        continue;
                if (n == -1)
                        die("reading the stats socket %s: %s", path, strerror(errno));
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        buf[len] = '\0';
        return len;
}

/* splitmix64: a well-mixed 64-bit sequence from any seed. */
static uint64_t mix(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

void harness_fill(void *page, uint64_t seed, int compressible)
{
        uint64_t *w = page, state = seed;

        if (!compressible) {
                for (size_t i = 0; i < 4096 / 8; i++)
                        w[i] = mix(&state);
                return;
        }
        /* Runs of a few distinct words: LZO shrinks this well below half a page,
         * and it differs from seed to seed everywhere in the page. */
        for (size_t i = 0; i < 4096 / 8; i += 8) {
                uint64_t v = mix(&state) & 0x0f0f0f0f0f0f0f0full;

                for (size_t j = 0; j < 8; j++)
                        w[i + j] = v;
        }
}

int harness_is_zero(const void *buf, size_t len)
{
        const unsigned char *p = buf;

        return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}
