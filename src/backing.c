/* ramzswap: the backing store. See include/ramzswap/backing.h.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ramzswap/backing.h"

#define PAGE RZS_BACKING_PAGE

struct rzs_backing {
        int fd;
        bool blockdev;
        uint64_t size;               /* bytes, a multiple of PAGE */
        _Atomic bool cannot_discard; /* set once the store said "not supported" */
};

/* A magic string at a fixed byte offset, and how to name what carries it. */
struct signature {
        size_t off;
        const char *magic;
        size_t len;
        const char *what;
};

/* Checked in order; GPT before the 0x55AA that its protective MBR also carries. */
static const struct signature foreign[] = {
    {1080, "\x53\xef", 2, "an ext2/3/4 file system (magic 0xEF53 at byte 1080)"},
    {0, "XFSB", 4, "an XFS file system (\"XFSB\" at byte 0)"},
    {65600, "_BHRfS_M", 8, "a btrfs file system (\"_BHRfS_M\" at byte 65600)"},
    {0, "LUKS\xba\xbe", 6, "a LUKS encrypted volume (\"LUKS\" at byte 0)"},
    {512, "LABELONE", 8, "an LVM physical volume (\"LABELONE\" at byte 512)"},
    {512, "EFI PART", 8, "a GPT partition table (\"EFI PART\" at byte 512)"},
    {4086, "S1SUSPEND", 9, "a hibernation image in a swap area (\"S1SUSPEND\")"},
    {4086, "LINHIB0001", 10, "a hibernation image in a swap area (\"LINHIB0001\")"},
    {510, "\x55\xaa", 2,
     "a partition table or boot sector (signature 0x55AA at byte 510)"},
};

static const struct signature swap_sigs[] = {
    {PAGE - 10, "SWAPSPACE2", 10, "a Linux swap area"},
    {PAGE - 10, "SWAP-SPACE", 10, "a Linux swap area (old format)"},
};

static bool has_signature(const unsigned char *head, size_t len,
                          const struct signature *s)
{
        return s->off + s->len <= len && memcmp(head + s->off, s->magic, s->len) == 0;
}

const char *rzs_backing_foreign(const unsigned char *head, size_t len)
{
        size_t first = len < PAGE ? len : PAGE;

        for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
                if (has_signature(head, len, &foreign[i]))
                        return foreign[i].what;
        }
        for (size_t i = 0; i < sizeof(swap_sigs) / sizeof(swap_sigs[0]); i++) {
                if (has_signature(head, len, &swap_sigs[i]))
                        return NULL;
        }
        /* All zeros: memcmp against itself shifted by one byte. */
        if (first == 0 || (head[0] == 0 && memcmp(head, head + 1, first - 1) == 0))
                return NULL;
        return "non-zero data in its first page";
}

static void say(char *msg, size_t msglen, const char *what)
{
        if (msg != NULL && msglen > 0)
                snprintf(msg, msglen, "%s", what);
}

/* pread exactly len bytes; -EIO when the store ends first. */
static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
        unsigned char *p = buf;

        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO;
                p += n;
                off += (uint64_t)n;
                len -= (size_t)n;
        }
        return 0;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
        const unsigned char *p = buf;

        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, (off_t)off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0) /* no progress and no reason: do not spin */
                        return -EIO;
                p += n;
                off += (uint64_t)n;
                len -= (size_t)n;
        }
        return 0;
}

/* The kind of file st is, for a refusal; NULL for a file or block device. */
static const char *unusable_kind(const struct stat *st)
{
        if (S_ISREG(st->st_mode) || S_ISBLK(st->st_mode))
                return NULL;
        if (S_ISCHR(st->st_mode))
                return "a character device";
        if (S_ISDIR(st->st_mode))
                return "a directory";
        if (S_ISFIFO(st->st_mode))
                return "a FIFO";
        if (S_ISSOCK(st->st_mode))
                return "a socket";
        return "a special file";
}

/* Refuse what is neither a file nor a block device before opening it: opening
 * some character devices already acts (a watchdog starts counting down, a
 * terminal may become ours). */
static int check_kind(const struct stat *st, char *msg, size_t msglen)
{
        const char *kind = unusable_kind(st);

        if (kind == NULL)
                return 0;
        if (msg != NULL && msglen > 0)
                snprintf(msg, msglen, "is %s, not a regular file or a block device",
                         kind);
        return S_ISDIR(st->st_mode) ? -EISDIR : -EINVAL;
}

/* stat path and check its kind, saying why not in msg. */
static int stat_store(const char *path, struct stat *st, char *msg, size_t msglen)
{
        if (stat(path, st) < 0) {
                int r = -errno;

                /* msg continues "<path> ...": a verb phrase, not a bare strerror. */
                if (r == -ENOENT)
                        say(msg, msglen, "does not exist");
                else if (msg != NULL && msglen > 0)
                        snprintf(msg, msglen, "cannot be looked up (%s)",
                                 strerrordesc_np(-r));
                return r;
        }
        return check_kind(st, msg, msglen);
}

/* Open path read-write; a block device exclusively, so the kernel refuses one that
 * is mounted or swapped on. Sets b->fd, b->blockdev and b->size. */
static int open_store(const char *path, struct rzs_backing *b, char *msg, size_t msglen)
{
        struct stat st;
        int flags = O_RDWR | O_CLOEXEC | O_NOCTTY;
        int err = stat_store(path, &st, msg, msglen);

        if (err < 0)
                return err;
        if (S_ISBLK(st.st_mode))
                flags |= O_EXCL;
        b->fd = open(path, flags);
        if (b->fd < 0) {
                int r = -errno;

                if (r == -EBUSY)
                        say(msg, msglen,
                            "is in use (mounted, an active swap area, or held by "
                            "another program)");
                else if (msg != NULL && msglen > 0)
                        snprintf(msg, msglen, "cannot be opened read-write (%s)",
                                 strerrordesc_np(-r));
                return r;
        }
        if (fstat(b->fd, &st) < 0) {
                int r = -errno;

                if (msg != NULL && msglen > 0)
                        snprintf(msg, msglen, "cannot be examined (%s)",
                                 strerrordesc_np(-r));
                return r;
        }
        if (S_ISBLK(st.st_mode) && (flags & O_EXCL)) {
                b->blockdev = true;
                if (ioctl(b->fd, BLKGETSIZE64, &b->size) < 0) {
                        int r = -errno;

                        say(msg, msglen, "gives no size (BLKGETSIZE64 failed)");
                        return r;
                }
        } else if (S_ISREG(st.st_mode)) {
                b->size = (uint64_t)st.st_size;
                if (flock(b->fd, LOCK_EX | LOCK_NB) < 0) {
                        int r = errno == EWOULDBLOCK ? -EBUSY : -errno;

                        say(msg, msglen, "is locked by another program");
                        return r;
                }
        } else {
                /* A path that changed type between stat and open lands here too. */
                say(msg, msglen, "is neither a regular file nor a block device");
                return -EINVAL;
        }
        b->size -= b->size % PAGE;
        if (b->size == 0) {
                say(msg, msglen, "is smaller than one page (4096 bytes)");
                return -EINVAL;
        }
        return 0;
}

#define NBD_MAJOR 43

const char *rzs_backing_swap_loop(unsigned major, const char *devname)
{
        if (major == NBD_MAJOR || (devname && strncmp(devname, "nbd", 3) == 0))
                return "is an nbd device: its server could need the memory that the "
                       "device it backs is there to free";
        if (devname && strncmp(devname, "zram", 4) == 0)
                return "is a zram device: its pages live in the RAM that the device it "
                       "backs is there to free";
        return NULL;
}

/* The kernel's name of block device dev (DEVNAME= in its uevent), or "" when
 * sysfs will not say. */
static void block_devname(dev_t dev, char *name, size_t size)
{
        char path[64], line[128];
        FILE *f;

        name[0] = '\0';
        snprintf(path, sizeof path, "/sys/dev/block/%u:%u/uevent", major(dev),
                 minor(dev));
        f = fopen(path, "re");
        if (f == NULL)
                return;
        while (fgets(line, sizeof line, f) != NULL) {
                if (strncmp(line, "DEVNAME=", 8) == 0) {
                        line[strcspn(line, "\n")] = '\0';
                        snprintf(name, size, "%s", line + 8);
                        break;
                }
        }
        fclose(f);
}

/* Refuse a store that itself lives in RAM: under memory pressure the kernel could
 * swap its pages out to the very device it backs, or need that device's memory to
 * write to it. */
static int check_not_in_ram(struct rzs_backing *b, char *msg, size_t msglen)
{
        const char *why = NULL;
        struct statfs sfs;
        struct stat st;
        char name[128];

        if (b->blockdev) {
                if (fstat(b->fd, &st) < 0)
                        return 0; /* open_store just did it: cannot happen */
                block_devname(st.st_rdev, name, sizeof name);
                why = rzs_backing_swap_loop(major(st.st_rdev), name);
        } else if (fstatfs(b->fd, &sfs) == 0) {
                if (sfs.f_type == TMPFS_MAGIC)
                        why = "is on tmpfs: its pages could be swapped out to the "
                              "device it backs";
                else if (sfs.f_type == RAMFS_MAGIC)
                        why = "is on ramfs: it holds RAM the device it backs is "
                              "there to free";
        }
        if (why == NULL)
                return 0;
        say(msg, msglen, why);
        return -EDEADLK;
}

/* Refuse a store holding something that is not ours to overwrite. */
static int check_content(struct rzs_backing *b, char *msg, size_t msglen)
{
        size_t len = b->size < RZS_BACKING_PROBE_LEN ? b->size : RZS_BACKING_PROBE_LEN;
        unsigned char *head = malloc(len);
        const char *what;
        int r;

        if (head == NULL) {
                say(msg, msglen, "cannot be checked (out of memory)");
                return -ENOMEM;
        }
        r = read_full(b->fd, head, len, 0);
        if (r < 0) {
                say(msg, msglen, "cannot be read at its start");
                goto out;
        }
        what = rzs_backing_foreign(head, len);
        if (what != NULL) {
                if (msg != NULL && msglen > 0)
                        snprintf(msg, msglen, "holds %s", what);
                r = -EEXIST;
        }
out:
        free(head);
        return r;
}

int rzs_backing_open(const char *path, bool force, struct rzs_backing **out, char *msg,
                     size_t msglen)
{
        struct rzs_backing *b;
        int r;

        *out = NULL;
        say(msg, msglen, "");
        b = calloc(1, sizeof(*b));
        if (b == NULL) {
                say(msg, msglen, "cannot be opened (out of memory)");
                return -ENOMEM;
        }
        b->fd = -1;
        r = open_store(path, b, msg, msglen);
        if (r == 0 && !force)
                r = check_not_in_ram(b, msg, msglen);
        if (r == 0 && !force)
                r = check_content(b, msg, msglen);
        if (r < 0) {
                rzs_backing_close(b);
                return r;
        }
        *out = b;
        return 0;
}

void rzs_backing_close(struct rzs_backing *b)
{
        if (b == NULL)
                return;
        if (b->fd >= 0)
                close(b->fd);
        free(b);
}

uint64_t rzs_backing_size(const struct rzs_backing *b)
{
        return b->size;
}

bool rzs_backing_is_blockdev(const struct rzs_backing *b)
{
        return b->blockdev;
}

int rzs_backing_read(struct rzs_backing *b, uint64_t page, void *buf)
{
        if (page >= b->size / PAGE)
                return -EINVAL;
        return read_full(b->fd, buf, PAGE, page * PAGE);
}

int rzs_backing_write(struct rzs_backing *b, uint64_t page, const void *buf)
{
        if (page >= b->size / PAGE)
                return -EINVAL;
        return write_full(b->fd, buf, PAGE, page * PAGE);
}

int rzs_backing_discard(struct rzs_backing *b, uint64_t page, uint64_t count)
{
        uint64_t pages = b->size / PAGE;
        int r;

        if (page > pages || count > pages - page)
                return -EINVAL;
        if (count == 0 || atomic_load_explicit(&b->cannot_discard, memory_order_relaxed))
                return 0;
        if (b->blockdev) {
                uint64_t range[2] = {page * PAGE, count * PAGE};

                r = ioctl(b->fd, BLKDISCARD, range);
        } else {
                r = fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              (off_t)(page * PAGE), (off_t)(count * PAGE));
        }
        if (r == 0)
                return 0;
        if (errno == EOPNOTSUPP || errno == ENOTTY || errno == ENOSYS) {
                atomic_store_explicit(&b->cannot_discard, true, memory_order_relaxed);
                return 0;
        }
        return -errno;
}
