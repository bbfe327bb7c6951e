/* ramzswap-stat: show the statistics of a running ramzswap device.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Connects to the stats socket of the nbdkit ramzswap plugin (stats=PATH), asks for
 * one snapshot (protocol in include/ramzswap/stats_server.h) and prints it as a
 * table with human-readable sizes, or passes the JSON form through. With --watch it
 * repeats every N seconds and adds read and write rates.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ramzswap/stats_format.h"

/* How long the server may take for its whole answer; it answers at once unless
 * wedged, and a deadline per read would let a trickling peer hold us forever. */
#define REPLY_TIMEOUT_S 2
#define REPLY_MAX       (4 * RZS_STATS_TEXT_MAX)
#define STR_(x)         #x
#define STR(x)          STR_(x)

static const char *progname = "ramzswap-stat";

struct options {
        const char *path;
        bool json;
        unsigned watch; /* seconds between reports; 0 = once */
        unsigned count; /* reports with --watch; 0 = until interrupted */
};

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: %s [--json] [--watch N [--count M]] PATH\n"
                "Show the statistics of the ramzswap device whose nbdkit plugin serves\n"
                "them on the unix socket PATH (the plugin's stats=PATH parameter).\n"
                "\n"
                "  -j, --json       print the server's JSON snapshot unchanged\n"
                "  -w, --watch N    refresh every N seconds, with reads/s and writes/s\n"
                "  -n, --count M    with --watch, stop after M reports\n"
                "  -h, --help       show this help\n",
                progname);
}

static bool parse_uint(const char *s, unsigned *out)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v == 0 || v > 86400 * 365 || s[0] == '-')
                return false;
        *out = (unsigned)v;
        return true;
}

/* Returns 0, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct options *o)
{
        static const struct option longopts[] = {
            {"json", no_argument, NULL, 'j'},
            {"watch", required_argument, NULL, 'w'},
            {"count", required_argument, NULL, 'n'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "jw:n:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'j':
                        o->json = true;
                        break;
                case 'w':
                        if (!parse_uint(optarg, &o->watch)) {
                                fprintf(stderr,
                                        "%s: --watch needs a positive number of "
                                        "seconds, not '%s'\n",
                                        progname, optarg);
                                return 2;
                        }
                        break;
                case 'n':
                        if (!parse_uint(optarg, &o->count)) {
                                fprintf(stderr,
                                        "%s: --count needs a positive number, not '%s'\n",
                                        progname, optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc - 1) {
                fprintf(stderr, "%s: expected exactly one socket PATH\n", progname);
                usage(stderr);
                return 2;
        }
        if (o->count && !o->watch) {
                fprintf(stderr, "%s: --count only makes sense with --watch\n", progname);
                return 2;
        }
        o->path = argv[optind];
        return 0;
}

static int connect_to(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S}; /* for the request */
        int fd;

        if (strlen(path) >= sizeof sa.sun_path) {
                errno = ENAMETOOLONG;
                return -1;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
                int e = errno;

                close(fd);
                errno = e;
                return -1;
        }
        return fd;
}

static void not_ours(const char *path, const char *why)
{
        fprintf(stderr, "%s: %s is not a ramzswap stats socket (%s)\n", progname, path,
                why);
}

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read the reply into buf (size - 1 bytes at most) until the server closes, all
 * within REPLY_TIMEOUT_S. Returns 0 and *len, or -errno (-ETIMEDOUT at the
 * deadline). */
static int read_reply(int fd, char *buf, size_t size, size_t *len)
{
        double deadline = now_s() + REPLY_TIMEOUT_S;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        *len = 0;
        while (*len < size - 1) {
                double left = deadline - now_s();
                int r = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return -ETIMEDOUT;
                n = recv(fd, buf + *len, size - 1 - *len, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        break; /* a server closing on our unread request: judge what
                                * came */
                if (n < 0 && errno != EINTR && errno != EAGAIN)
                        return -errno;
                *len += n > 0 ? (size_t)n : 0;
        }
        return 0;
}

/* Make text from the server safe for a terminal: every byte but printable ASCII
 * (and newlines, when keep_newlines) becomes '?', so escape sequences cannot act. */
static void sanitize(char *s, bool keep_newlines)
{
        for (; *s; s++)
                if ((*s < 0x20 || *s > 0x7e) && !(keep_newlines && *s == '\n'))
                        *s = '?';
}

/* One request/reply. Returns the reply length, or -1 after printing why. */
static int fetch(const char *path, bool json, char *buf, size_t size)
{
        const char *req = json ? "json\n" : "text\n";
        size_t len = 0;
        int r, fd = connect_to(path);

        if (fd < 0) {
                fprintf(stderr, "%s: no ramzswap stats socket at %s: %s\n", progname,
                        path, strerror(errno));
                return -1;
        }
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0 && errno != EPIPE) {
                fprintf(stderr, "%s: writing to %s: %s\n", progname, path,
                        strerror(errno));
                close(fd);
                return -1;
        }
        shutdown(fd, SHUT_WR);
        r = read_reply(fd, buf, size, &len);
        close(fd);
        buf[len] = '\0';
        if (r == -ETIMEDOUT) {
                not_ours(path, "no full answer within " STR(REPLY_TIMEOUT_S) " seconds");
                return -1;
        }
        if (r < 0) {
                fprintf(stderr, "%s: reading from %s: %s\n", progname, path,
                        strerror(-r));
                return -1;
        }
        if (len == size - 1) {
                not_ours(path, "its answer is too long");
                return -1;
        }
        sanitize(buf, true);
        if (strncmp(buf, "Error: ", 7) == 0) {
                fprintf(stderr,
                        "%s: the ramzswap server at %s could not take a snapshot: %s",
                        progname, path, buf + 7);
                return -1;
        }
        return (int)len;
}

static const char *human(uint64_t bytes, char *buf, size_t size)
{
        static const char *const units[] = {"B",   "KiB", "MiB", "GiB",
                                            "TiB", "PiB", "EiB"};
        double v = (double)bytes;
        unsigned u = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%" PRIu64 " B", bytes);
                return buf;
        }
        while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, "%.2f %s", v, units[u]);
        return buf;
}

struct rates {
        bool valid;
        double reads, writes; /* pages per second */
};

static void print_table(const char *path, const struct rzs_stats_report *r,
                        const struct rates *rt, bool watching)
{
        const struct rzs_stats *s = &r->stats;
        char a[32], b[32];

        printf("ramzswap statistics from %s\n", path);
        printf("  %-18s %14s\n", "Disk size", human(s->disksize, a, sizeof a));
        printf("  %-18s %14s\n", "Memory limit",
               s->memlimit ? human(s->memlimit, a, sizeof a) : "none");
        printf("  %-18s %14" PRIu64 "  (zero %" PRIu64 ", same-filled %" PRIu64 ")\n",
               "Pages stored", s->pages_stored, s->zero_pages, s->same_pages);
        printf("  %-18s %14s\n", "Original data", human(s->orig_data_size, a, sizeof a));
        printf("  %-18s %14s\n", "Compressed data",
               human(s->compr_data_size, a, sizeof a));
        printf("  %-18s %14s  (max %s)\n", "Memory used",
               human(s->mem_used_total, a, sizeof a),
               human(s->mem_used_max, b, sizeof b));
        printf("  %-18s %11" PRIu64 ".%02" PRIu64 "\n", "Compression ratio",
               r->compression_ratio_x100 / 100, r->compression_ratio_x100 % 100);
        printf("  %-18s %11" PRIu64 ".%02" PRIu64 "\n", "Fragmentation",
               r->fragmentation_x100 / 100, r->fragmentation_x100 % 100);
        printf("  %-18s %12u %%  (incompressible %u %%)\n", "Good compression",
               r->good_compress_pct, r->no_compress_pct);
        printf("  %-18s %14" PRIu64 "  (failed %" PRIu64 ")\n", "Pages read",
               s->num_reads, s->failed_reads);
        printf("  %-18s %14" PRIu64 "  (failed %" PRIu64 ")\n", "Pages written",
               s->num_writes, s->failed_writes);
        if (watching) {
                if (rt->valid)
                        printf("  %-18s %14.1f  (writes/s %.1f)\n", "Reads/s", rt->reads,
                               rt->writes);
                else
                        printf("  %-18s %14s  (writes/s -)\n", "Reads/s", "-");
        }
        printf("  %-18s %14" PRIu64 "\n", "Invalid I/O", s->invalid_io);
        printf("  %-18s %14" PRIu64 "\n", "Pages discarded", s->pages_discard);
        printf("  %-18s %14" PRIu64 "  (writes %" PRIu64 ")\n", "Backing reads",
               s->bdev_num_reads, s->bdev_num_writes);
        printf("  %-18s %14" PRIu64 "\n", "Backing pages", s->backing_pages);
        printf("  %-18s %14s  (found empty %" PRIu64 ")\n", "Pool stock",
               human(s->pool_stock, a, sizeof a), s->stock_empty);
        printf("  %-18s %14" PRIu64 "\n", "OOM kills asked", s->oom_kill_requests);
        printf("  %-18s %14s\n", "Memory locked", r->mlocked ? "yes" : "no");
        printf("  %-18s %14s\n", "IO flusher", r->io_flusher ? "yes" : "no");
        printf("  %-18s %14s\n", "Capabilities", r->capabilities);
        printf("  %-18s %14s\n", "Compressor", r->compressor);
}

/* A counter that went backwards means the server restarted: no rate this time. */
static void update_rates(struct rates *rt, const struct rzs_stats *prev,
                         const struct rzs_stats *cur, double dt)
{
        rt->valid = dt > 0 && cur->num_reads >= prev->num_reads &&
                    cur->num_writes >= prev->num_writes;
        if (rt->valid) {
                rt->reads = (double)(cur->num_reads - prev->num_reads) / dt;
                rt->writes = (double)(cur->num_writes - prev->num_writes) / dt;
        }
}

/* One report: JSON passed through, or the parsed text as a table. */
static int report(const struct options *o, struct rzs_stats_report *r, struct rates *rt,
                  bool have_prev, double *t_prev)
{
        static char buf[REPLY_MAX];
        struct rzs_stats prev = r->stats;
        int n = fetch(o->path, o->json, buf, sizeof buf);
        double t = now_s();

        if (n < 0)
                return 1;
        if (o->json) {
                if (buf[0] != '{' || strstr(buf, "\"disksize\":") == NULL) {
                        not_ours(o->path, "its answer is not ramzswap's JSON");
                        return 1;
                }
                fputs(buf, stdout);
                return fflush(stdout) == 0 ? 0 : 1;
        }
        if (rzs_stats_parse_text(buf, (size_t)n, r) < 0) {
                not_ours(o->path, "its answer is not ramzswap's statistics");
                return 1;
        }
        if (have_prev)
                update_rates(rt, &prev, &r->stats, t - *t_prev);
        *t_prev = t;
        if (o->watch && isatty(STDOUT_FILENO))
                fputs("\033[H\033[J", stdout); /* redraw in place */
        else if (have_prev)
                putchar('\n');
        print_table(o->path, r, rt, o->watch != 0);
        return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
        struct options o = {0};
        struct rzs_stats_report r = {0};
        struct rates rt = {0};
        double t_prev = 0;
        int status = parse_args(argc, argv, &o);

        if (status)
                return status;
        for (unsigned i = 0; !o.watch || !o.count || i < o.count; i++) {
                struct timespec interval = {.tv_sec = o.watch};

                if (i > 0)
                        while (nanosleep(&interval, &interval) < 0 && errno == EINTR)
                                ;
                status = report(&o, &r, &rt, i > 0, &t_prev);
                if (status || !o.watch)
                        break;
        }
        return status;
}
