/* ramzswap: the stats socket server (see stats_server.h).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ramzswap/stats_server.h"

/* The thread's own stack: it holds one reply buffer and the poll set. A small stack
 * matters when the process is mlocked: every thread stack counts in full against
 * RLIMIT_MEMLOCK. */
#define SERVER_STACK_SIZE (256 * 1024)
/* After accept fails for lack of descriptors or memory, wait this long before trying
 * again rather than spinning on a readable listening socket. */
#define ACCEPT_BACKOFF_MS 100

struct pending {
        int fd; /* -1 when the slot is free */
        uint64_t deadline_ms;
        size_t len;
        char req[RZS_STATS_REQUEST_MAX];
};

struct rzs_stats_server {
        rzs_stats_snapshot_fn snapshot;
        void *opaque;
        int listen_fd;
        int stop_fd; /* eventfd: readable once destroy asks the thread to stop */
        dev_t dev;   /* identity of our socket file, so destroy removes only ours */
        ino_t ino;
        pid_t owner; /* the process that serves (and removes the file) */
        bool started;
        unsigned request_ms;
        pthread_t thread;
        uint64_t accept_resume_ms; /* accept paused until then (0 = not paused) */
        struct pending pending[RZS_STATS_MAX_PENDING];
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int make_addr(const char *path, struct sockaddr_un *sa)
{
        memset(sa, 0, sizeof *sa);
        sa->sun_family = AF_UNIX;
        if (strlen(path) >= sizeof sa->sun_path)
                return -ENAMETOOLONG;
        strcpy(sa->sun_path, path);
        return 0;
}

/* Is someone accepting on the socket at path? Non-blocking, so a live server with a
 * full backlog answers EAGAIN instead of blocking us. Returns 1 live, 0 stale, or a
 * negative errno when it cannot tell. */
static int socket_is_live(const struct sockaddr_un *sa)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int r;

        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
                r = 1;
        else if (errno == ECONNREFUSED)
                r = 0;
        else if (errno == EAGAIN || errno == EINPROGRESS)
                r = 1;
        else
                r = -errno;
        close(fd);
        return r;
}

/* Refuse a directory others can write to unless it is sticky: anyone there could
 * remove or replace our socket (and race clear_stale). In a sticky directory only
 * a file's owner (or the directory's, or root) can remove or rename it. */
static int check_directory(const char *path)
{
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        const char *slash = strrchr(path, '/');
        struct stat st;

        if (slash == NULL)
                strcpy(dir, ".");
        else if (slash == path)
                strcpy(dir, "/");
        else
                snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        if (stat(dir, &st) < 0)
                return -errno;
        if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
                return -EPERM;
        return 0;
}

/* Make path free for bind: nothing there, or a stale socket of ours (our euid: an
 * earlier run's) that we remove; another user's socket is another service's, even
 * if nobody listens. lstat then unlink by name is enough because check_directory
 * passed: in a sticky directory only we (or the directory's owner, or root) can
 * replace our own socket between the two, and otherwise only those trusted to
 * write the directory can. */
static int clear_stale(const struct sockaddr_un *sa)
{
        struct stat st;
        int live;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
                return -EEXIST;
        live = socket_is_live(sa);
        if (live < 0)
                return live;
        if (live)
                return -EEXIST;
        if (unlink(sa->sun_path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* Remove the socket file only if it is still the one we bound. */
static void remove_socket_file(const struct rzs_stats_server *srv)
{
        struct stat st;

        if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
                unlink(srv->path);
}

/* Bind with the socket file created 0600 by the kernel: no chmod, since a chmod by
 * name after bind follows whatever a racing process swapped in at the path (and
 * fchmod on a socket does not change the file). umask is process-wide, but create
 * runs in nbdkit's .get_ready, from one thread before any serving starts. */
static int bind_private(int fd, const struct sockaddr_un *sa)
{
        mode_t old = umask(0177);
        int r = bind(fd, (const struct sockaddr *)sa, sizeof *sa);
        int e = errno;

        umask(old);
        if (r < 0)
                return e == EADDRINUSE ? -EEXIST : -e;
        return 0;
}

/* Record the identity of the file we bound, so destroy removes only ours. If the
 * path no longer holds a socket of ours, someone replaced it: fail and leave it. */
static int note_identity(struct rzs_stats_server *srv, const char *path)
{
        struct stat st;

        if (lstat(path, &st) < 0)
                return -errno;
        if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
                return -EEXIST;
        srv->dev = st.st_dev;
        srv->ino = st.st_ino;
        return 0;
}

/* listen only after the identity check: until then connects are refused. */
static int bind_listen(struct rzs_stats_server *srv, const struct sockaddr_un *sa)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int r;

        if (fd < 0)
                return -errno;
        r = bind_private(fd, sa);
        if (r == 0)
                r = note_identity(srv, sa->sun_path);
        if (r == 0 && listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                remove_socket_file(srv);
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        srv->listen_fd = fd;
        return 0;
}

int rzs_stats_server_create(const char *path, rzs_stats_snapshot_fn snapshot,
                            void *opaque, struct rzs_stats_server **out)
{
        struct rzs_stats_server *srv;
        struct sockaddr_un sa;
        int r;

        *out = NULL;
        r = make_addr(path, &sa);
        if (r < 0)
                return r;
        srv = calloc(1, sizeof *srv);
        if (srv == NULL)
                return -ENOMEM;
        srv->snapshot = snapshot;
        srv->opaque = opaque;
        srv->listen_fd = -1;
        srv->request_ms = RZS_STATS_REQUEST_MS;
        srv->owner = getpid();
        strcpy(srv->path, path);
        for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                srv->pending[i].fd = -1;
        srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (srv->stop_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = check_directory(path);
        if (r == 0)
                r = clear_stale(&sa);
        if (r < 0)
                goto fail;
        r = bind_listen(srv, &sa);
        if (r < 0)
                goto fail;
        *out = srv;
        return 0;
fail:
        if (srv->stop_fd >= 0)
                close(srv->stop_fd);
        free(srv);
        return r;
}

static bool wants_json(const struct pending *p)
{
        const char *nl = memchr(p->req, '\n', p->len);
        size_t n = nl ? (size_t)(nl - p->req) : p->len;

        while (n > 0 && (p->req[n - 1] == '\r' || p->req[n - 1] == ' '))
                n--;
        return n == 4 && memcmp(p->req, "json", 4) == 0;
}

static void close_slot(struct pending *p)
{
        close(p->fd);
        p->fd = -1;
        p->len = 0;
}

/* Build the reply in buf and send it in one non-blocking go, then close. */
static void answer(struct rzs_stats_server *srv, struct pending *p, char *buf,
                   size_t size)
{
        struct rzs_stats st = {0};
        struct rzs_stats_facts facts = {0};
        int n = srv->snapshot(srv->opaque, &st, &facts);

        if (n == 0)
                n = wants_json(p) ? rzs_stats_format_json(&st, &facts, buf, size)
                                  : rzs_stats_format_text(&st, &facts, buf, size);
        if (n < 0) {
                /* Not strerror/strerror_r: their translation takes glibc's locale
                 * lock, which left nbdkit under ASan blocked at exit (measured). */
                const char *why = strerrordesc_np(-n);

                n = snprintf(buf, size, "Error: %s\n", why ? why : "unknown error");
        }
        /* A short or failed send means the client is gone or not reading: drop it. */
        (void)send(p->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        close_slot(p);
}

/* Read what the client sent so far; answer once the request is complete: a newline,
 * end of input, or RZS_STATS_REQUEST_MAX bytes. */
static void read_request(struct rzs_stats_server *srv, struct pending *p, char *buf,
                         size_t size)
{
        ssize_t n = recv(p->fd, p->req + p->len, sizeof p->req - p->len, MSG_DONTWAIT);

        if (n < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                        close_slot(p);
                return;
        }
        p->len += (size_t)n;
        if (n == 0 || p->len == sizeof p->req || memchr(p->req, '\n', p->len))
                answer(srv, p, buf, size);
}

static struct pending *free_slot(struct rzs_stats_server *srv)
{
        for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                if (srv->pending[i].fd < 0)
                        return &srv->pending[i];
        return NULL;
}

static void accept_some(struct rzs_stats_server *srv, uint64_t now)
{
        struct pending *p;

        while ((p = free_slot(srv)) != NULL) {
                int fd =
                    accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                srv->accept_resume_ms = now + ACCEPT_BACKOFF_MS;
                        return;
                }
                p->fd = fd;
                p->len = 0;
                p->deadline_ms = now + srv->request_ms;
        }
}

/* Poll timeout until the next deadline (a pending request or the accept backoff). */
static int next_timeout(const struct rzs_stats_server *srv, uint64_t now)
{
        uint64_t next = UINT64_MAX;

        for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                if (srv->pending[i].fd >= 0 && srv->pending[i].deadline_ms < next)
                        next = srv->pending[i].deadline_ms;
        if (srv->accept_resume_ms && srv->accept_resume_ms < next)
                next = srv->accept_resume_ms;
        if (next == UINT64_MAX)
                return -1;
        return next <= now ? 0 : (int)(next - now);
}

static void *serve(void *arg)
{
        struct rzs_stats_server *srv = arg;
        struct pollfd pfd[2 + RZS_STATS_MAX_PENDING];
        char buf[RZS_STATS_TEXT_MAX];

        for (;;) {
                uint64_t now = now_ms();
                bool can_accept;

                if (srv->accept_resume_ms && now >= srv->accept_resume_ms)
                        srv->accept_resume_ms = 0;
                can_accept = srv->accept_resume_ms == 0 && free_slot(srv) != NULL;
                pfd[0] = (struct pollfd){.fd = srv->stop_fd, .events = POLLIN};
                pfd[1] = (struct pollfd){.fd = can_accept ? srv->listen_fd : -1,
                                         .events = POLLIN};
                for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                        pfd[2 + i] =
                            (struct pollfd){.fd = srv->pending[i].fd, .events = POLLIN};
                if (poll(pfd, 2 + RZS_STATS_MAX_PENDING, next_timeout(srv, now)) < 0) {
                        if (errno == EINTR || errno == ENOMEM)
                                continue;
                        break;
                }
                if (pfd[0].revents)
                        break;
                for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                        if (pfd[2 + i].revents && srv->pending[i].fd >= 0)
                                read_request(srv, &srv->pending[i], buf, sizeof buf);
                now = now_ms();
                for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                        if (srv->pending[i].fd >= 0 && srv->pending[i].deadline_ms <= now)
                                answer(srv, &srv->pending[i], buf, sizeof buf);
                if (pfd[1].revents & POLLIN)
                        accept_some(srv, now);
        }
        for (size_t i = 0; i < RZS_STATS_MAX_PENDING; i++)
                if (srv->pending[i].fd >= 0)
                        close_slot(&srv->pending[i]);
        return NULL;
}

int rzs_stats_server_set_request_timeout(struct rzs_stats_server *srv, unsigned ms)
{
        if (ms == 0)
                return -EINVAL;
        if (srv->started)
                return -EBUSY;
        srv->request_ms = ms;
        return 0;
}

int rzs_stats_server_start(struct rzs_stats_server *srv)
{
        pthread_attr_t attr;
        sigset_t all, old;
        int r;

        if (srv->started)
                return -EALREADY;
        r = pthread_attr_init(&attr);
        if (r)
                return -r;
        r = pthread_attr_setstacksize(&attr, SERVER_STACK_SIZE);
        if (r == 0) {
                /* The thread inherits a full signal mask: signals are the host
                 * program's business (nbdkit's quit handling) and stay on its threads. */
                sigfillset(&all);
                pthread_sigmask(SIG_SETMASK, &all, &old);
                r = pthread_create(&srv->thread, &attr, serve, srv);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        pthread_attr_destroy(&attr);
        if (r)
                return -r;
        srv->started = true;
        srv->owner = getpid();
        return 0;
}

void rzs_stats_server_destroy(struct rzs_stats_server *srv)
{
        bool ours;

        if (srv == NULL)
                return;
        ours = srv->owner == getpid();
        if (srv->started && ours) {
                uint64_t one = 1;

                /* An eventfd write of 1 cannot fail short of a counter overflow. */
                (void)write(srv->stop_fd, &one, sizeof one);
                pthread_join(srv->thread, NULL);
        }
        if (ours)
                remove_socket_file(srv);
        close(srv->listen_fd);
        close(srv->stop_fd);
        free(srv);
}
