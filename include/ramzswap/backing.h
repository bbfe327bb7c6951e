/* ramzswap: the backing store, a file or block device that takes overflow.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Purpose: hold the pages the compressed pool should not or cannot keep (too big
 * after compression, or past memlimit). Page i of the device lives at byte i * 4096
 * of the store; the store keeps no metadata of its own, the device's page table says
 * which slots live here.
 *
 * Safety at open: a store is something the user named on a command line, and a typo
 * must not destroy a file system. Page 0 (and the few places other formats keep
 * their magic, up to RZS_BACKING_PROBE_LEN bytes) is inspected: all zeros or a Linux
 * swap signature is accepted; a known foreign signature (file system, partition
 * table, LVM, LUKS, hibernation image) or any other non-zero first page is refused
 * unless the caller forces it. A block device is opened O_EXCL, so one that is
 * mounted or an active swap area is refused by the kernel itself; a regular file is
 * flock()ed so two servers never share one. A store that itself lives in RAM (a
 * file on tmpfs or ramfs, an nbd or zram device) is refused unless forced: its
 * pages could be swapped out to, or need the memory of, the device it backs.
 *
 * I/O: buffered pread/pwrite of whole pages, looping over short transfers and EINTR.
 * A transfer that cannot complete is an error (-EIO for a read past the end).
 * Discard is best effort: punching a hole in a file or BLKDISCARD on a device; a
 * store that cannot discard is remembered and never asked again.
 *
 * Locking: none inside. Page I/O on distinct pages may run concurrently (pread and
 * pwrite are positioned); the caller orders I/O on one page (the device does it
 * under that slot's lock). All functions return 0 or a negative errno.
 */
#ifndef RAMZSWAP_BACKING_H
#define RAMZSWAP_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RZS_BACKING_PAGE 4096u
/* Bytes inspected at open: btrfs keeps its magic at byte 65600. */
#define RZS_BACKING_PROBE_LEN (17u * RZS_BACKING_PAGE)

struct rzs_backing;

/* Name what the first len bytes of a store hold when it must not be overwritten
 * without force: e.g. "an ext2/3/4 file system (magic 0xEF53 at byte 1080)", or
 * "non-zero data in its first page". Returns NULL when the store may be used: its
 * first page is all zeros or carries a Linux swap signature (SWAPSPACE2 or
 * SWAP-SPACE in its last 10 bytes) and no foreign signature is found. Bytes past
 * len count as zeros. Pure; O(len). */
const char *rzs_backing_foreign(const unsigned char *head, size_t len);

/* Why block device major:devname (the kernel's name, e.g. "zram0"; NULL if not
 * known) must not back a swap device without force, as a fragment after its path,
 * or NULL when it may. nbd (major 43, or named nbd*) and zram (named zram*, its
 * major is dynamic) are named. Pure. */
const char *rzs_backing_swap_loop(unsigned major, const char *devname);

/* Open path (a regular file or a block device) read-write, find its size (rounded
 * down to a page) and check where it lives and its content as above unless force. Any
 * other kind of file (a character device such as /dev/null or a watchdog, a directory
 * ...) is refused before it is opened. Returns 0 and *out, or a negative errno with *out
 * NULL: the open's own (-ENOENT, -EACCES ...), -EISDIR (a directory), -EBUSY (a
 * block device in use, or a file locked by another process), -EINVAL (not a file
 * or block device, or smaller than one page), -EEXIST (holds data, see
 * rzs_backing_foreign), -EDEADLK (lives in RAM: a file on tmpfs or ramfs, an nbd
 * or zram device), -EIO (page 0 unreadable). On failure msg (when not NULL)
 * receives one sentence fragment saying why, after the path, e.g. "holds an XFS
 * file system (\"XFSB\" at byte 0)"; the caller reports it. */
int rzs_backing_open(const char *path, bool force, struct rzs_backing **out, char *msg,
                     size_t msglen);

/* Close the store. NULL is allowed. */
void rzs_backing_close(struct rzs_backing *b);

/* Usable size in bytes, a multiple of RZS_BACKING_PAGE, >= one page. */
uint64_t rzs_backing_size(const struct rzs_backing *b);

/* True when the store is a block device rather than a regular file. */
bool rzs_backing_is_blockdev(const struct rzs_backing *b);

/* Read page (< size / 4096) into buf (4096 bytes). Returns 0, -EINVAL (page out of
 * range), -EIO (the store ended early: a truncated file) or the read's -errno. On
 * failure buf's content is undefined. */
int rzs_backing_read(struct rzs_backing *b, uint64_t page, void *buf);

/* Write buf (4096 bytes) to page (< size / 4096). Returns 0, -EINVAL (page out of
 * range) or the write's -errno (-EIO, -ENOSPC, -EFBIG ...). On failure the page on
 * the store may hold any mix of its old and new bytes. */
int rzs_backing_write(struct rzs_backing *b, uint64_t page, const void *buf);

/* Tell the store that count pages from page no longer hold data, so a file gives
 * back its blocks and an SSD may erase them. Their content afterwards is undefined.
 * Best effort: returns 0 when done or when the store cannot discard (remembered;
 * later calls cost nothing), -EINVAL for a range outside the store, or another
 * -errno the file system or device gave. */
int rzs_backing_discard(struct rzs_backing *b, uint64_t page, uint64_t count);

#endif /* RAMZSWAP_BACKING_H */
