/* ramzswap nbd tests: starting and stopping real nbdkit with the built plugin.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The build passes the plugin's path in RAMZSWAP_PLUGIN and nbdkit's in NBDKIT; a test
 * run without them (or without a tool it needs) exits 77, meson's "skipped".
 * Argument lists are NULL-terminated plugin parameters ("disksize=64M", ...).
 * Every function aborts the test program (with a message) on a harness failure, so
 * callers see only working handles and servers.
 */
#ifndef RAMZSWAP_NBD_HARNESS_H
#define RAMZSWAP_NBD_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libnbd.h>

#define HARNESS_SKIP 77

/* Paths from the environment; exit 77 if unset or not executable/readable. */
const char *harness_nbdkit(void);
const char *harness_plugin(void);

/* Exit 77 unless PROGRAM is found on PATH (or is an executable path). */
void harness_require_program(const char *program);

/* A connected handle to a private nbdkit (-s --exit-with-parent) serving the plugin
 * with the given parameters. Close it with nbd_close, which also ends that nbdkit. */
struct nbd_handle *harness_connect(const char *const *params);

/* harness_connect() with nbdkit's stderr going to errfd instead of ours, so a test
 * can read what the server logged (after nbd_close, which waits for nbdkit). */
struct nbd_handle *harness_connect_stderr(const char *const *params, int errfd);

/* One nbdkit serving many connections on a unix socket it is handed ready-made
 * (systemd socket activation), so connections made right after start succeed
 * without waiting for nbdkit to come up. */
struct harness_server {
        pid_t pid;
        char dir[64];   /* private temporary directory holding the socket */
        char sock[128]; /* the socket's path */
};
void harness_server_start(struct harness_server *srv, const char *const *params);
/* A new handle connected to srv. */
struct nbd_handle *harness_server_connect(const struct harness_server *srv);
/* SIGTERM, wait; fails the program if nbdkit did not exit cleanly. */
void harness_server_stop(struct harness_server *srv);

/* Run nbdkit (no socket: -s with stdin and stdout on /dev/null) with the params, to
 * check start-up. Returns its wait status and its stderr, malloc'd and
 * NUL-terminated, in *err. */
int harness_run_nbdkit(const char *const *params, char **err);

/* Run argv (argv[0] a path) with stdin on /dev/null. Returns its wait status and
 * its stdout and stderr together, malloc'd and NUL-terminated, in *out. */
int harness_run(const char *const *argv, char **out);

/* One request to the stats socket at path ("text\n", "json\n", anything; "" sends
 * nothing and only ends our side). The reply, NUL-terminated, goes to buf; returns
 * its length. Fails the program if the socket does not accept the connection. */
size_t harness_stats_fetch(const char *path, const char *request, char *buf, size_t size);

/* Fill a page (4096 bytes) with deterministic data from seed: data that compresses
 * well when compressible is true, otherwise incompressible noise. */
void harness_fill(void *page, uint64_t seed, int compressible);

/* 1 if all len bytes of buf are zero, else 0. */
int harness_is_zero(const void *buf, size_t len);

#endif /* RAMZSWAP_NBD_HARNESS_H */
