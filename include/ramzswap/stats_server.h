/* ramzswap: the stats socket server.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: serve live statistics on a unix stream socket at a path, one snapshot per
 * connection, like the seed's /proc/compcache. Protocol: the client connects and may
 * send one request line within RZS_STATS_REQUEST_MS; "json" gets the JSON form,
 * anything else (or nothing, or end of input) gets the text form (stats_format.h);
 * the server then writes the reply and closes. A failed snapshot is answered with
 * one line "Error: <reason>".
 *
 * Lifecycle, matching nbdkit's: create (bind + listen; in .get_ready, where errors
 * are visible) -> start (the thread; in .after_fork, since threads do not survive
 * fork) -> destroy (stop, join, close, unlink; in .unload). The socket file is mode
 * 0600 before anyone can connect. create never replaces anything at the path but a
 * stale socket (a socket of our euid nobody listens on).
 *
 * Robustness: one thread multiplexes the listening socket and up to
 * RZS_STATS_MAX_PENDING connections with poll(); each connection has a deadline, reads
 * at most RZS_STATS_REQUEST_MAX bytes, and its reply is one non-blocking send with
 * MSG_NOSIGNAL (a reply is a few KiB and always fits an empty socket buffer; if not,
 * the connection is dropped). So a silent, slow, garbage-sending or vanished client
 * costs one slot for at most RZS_STATS_REQUEST_MS and never blocks other clients.
 * Nothing is allocated per connection: the reply is built in a buffer on the
 * thread's stack.
 *
 * Locking: the snapshot callback runs on the server thread, one call per reply; it
 * must be thread-safe with respect to the I/O threads (rzs_device_get_stats is).
 * create/start/destroy must not race with each other (the nbdkit lifecycle calls
 * them in order from one thread).
 */
#ifndef RAMZSWAP_STATS_SERVER_H
#define RAMZSWAP_STATS_SERVER_H

#include "ramzswap/device.h"
#include "ramzswap/stats_format.h"

/* How long a connection may take to send its request line. */
#define RZS_STATS_REQUEST_MS 200
/* At most this many request bytes are read; the rest is ignored. */
#define RZS_STATS_REQUEST_MAX 64
/* Connections waiting for their request at once; more wait in the listen backlog. */
#define RZS_STATS_MAX_PENDING 16

/* Fill *stats and *facts with a fresh snapshot. The facts' strings must stay valid
 * until the server is destroyed. Return 0 or a negative errno (the client then gets
 * "Error: <strerror>"). */
typedef int (*rzs_stats_snapshot_fn)(void *opaque, struct rzs_stats *stats,
                                     struct rzs_stats_facts *facts);

struct rzs_stats_server;

/* Bind and listen at path (FD_CLOEXEC; the file is created 0600 under a umask set
 * around bind, never chmod'ed by name). Removes a stale socket of our euid at path first.
 * Returns 0 and *out, or: -EEXIST (path is a live socket, another user's socket, not a
 * socket, or was replaced right after bind), -ENAMETOOLONG (longer than a sockaddr_un
 * path), -EPERM (the directory is writable by others and not sticky), -ENOMEM, or the
 * errno of the failing socket/bind/listen call (e.g. -EACCES, -ENOENT for a missing
 * directory). *out is NULL on failure. The thread is not started. Changes the process
 * umask for the duration of bind. */
int rzs_stats_server_create(const char *path, rzs_stats_snapshot_fn snapshot,
                            void *opaque, struct rzs_stats_server **out);

/* Use ms instead of RZS_STATS_REQUEST_MS as the time a connection may take to send
 * its request (ms > 0). Only before start; tests use it to tell "answered at once"
 * from "answered at the deadline" without depending on timing. Returns 0 or -EINVAL
 * (ms == 0), -EBUSY (already started). */
int rzs_stats_server_set_request_timeout(struct rzs_stats_server *srv, unsigned ms);

/* Start the serving thread. Call at most once, in the process that will serve
 * (after any fork). Returns 0, -EALREADY if started, or the pthread_create error. */
int rzs_stats_server_start(struct rzs_stats_server *srv);

/* Stop the thread (if started) and join it, close every socket, and remove the
 * socket file if it is still ours (same inode) and this is the process that started
 * the thread (or created the server, if never started). NULL is allowed. */
void rzs_stats_server_destroy(struct rzs_stats_server *srv);

#endif /* RAMZSWAP_STATS_SERVER_H */
