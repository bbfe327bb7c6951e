/* Unit tests for the backing store (src/backing.c) alone and behind the device
 * (src/device.c): signature checks, page I/O, overflow of big pages and of a full
 * pool, trim, I/O errors, a model-based random test and threads. Temporary files
 * live under /tmp and are removed by each test. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ramzswap/backing.h"
#include "ramzswap/device.h"

#include "pagegen.h"

#define PAGE RZS_PAGE_SIZE

/* ---- temporary store files ---- */

struct tmpfile {
        char path[64];
        int fd; /* the test's own descriptor, for inspecting and damaging */
};

static void tmp_make(struct tmpfile *t, uint64_t size)
{
        strcpy(t->path, "/tmp/rzs-backing-XXXXXX");
        t->fd = mkstemp(t->path);
        assert_true(t->fd >= 0);
        assert_int_equal(ftruncate(t->fd, (off_t)size), 0);
}

static void tmp_put(struct tmpfile *t, uint64_t off, const void *p, size_t n)
{
        assert_int_equal(pwrite(t->fd, p, n, (off_t)off), (ssize_t)n);
}

static void tmp_remove(struct tmpfile *t)
{
        close(t->fd);
        assert_int_equal(unlink(t->path), 0);
}

static struct rzs_device *make_dev(const char *path, uint64_t disksize, uint64_t memlimit)
{
        struct rzs_config cfg = {
            .disksize = disksize, .memlimit = memlimit, .backing = path};
        struct rzs_device *dev;
        char msg[256];
        int r = rzs_device_create_msg(&cfg, &dev, msg, sizeof msg);

        if (r != 0)
                fail_msg("rzs_device_create_msg: %d: %s", r, msg);
        assert_string_equal(msg, "");
        return dev;
}

/* The end of a test over a store file: the device is consistent, then it and the
 * file go. */
static void end_store_test(struct rzs_device *dev, struct tmpfile *t)
{
        assert_int_equal(rzs_device_check(dev), 0);
        rzs_device_destroy(dev);
        tmp_remove(t);
}

static struct rzs_stats stats(struct rzs_device *dev)
{
        struct rzs_stats s;

        rzs_device_get_stats(dev, &s);
        return s;
}

/* ---- the module alone ---- */

static void test_foreign_signatures(void **state)
{
        unsigned char *h = calloc(1, RZS_BACKING_PROBE_LEN);
        const char *what;
        (void)state;

        assert_non_null(h);
        assert_null(rzs_backing_foreign(h, RZS_BACKING_PROBE_LEN));
        assert_null(rzs_backing_foreign(h, 0));
        assert_null(rzs_backing_foreign(h, 1));

        memcpy(h + PAGE - 10, "SWAPSPACE2", 10);
        h[1024] = 1; /* a swap header is not all zeros */
        assert_null(rzs_backing_foreign(h, PAGE));
        memcpy(h + PAGE - 10, "SWAP-SPACE", 10);
        assert_null(rzs_backing_foreign(h, PAGE));
        /* A hibernation image is not ours to overwrite. */
        memcpy(h + PAGE - 10, "S1SUSPEND", 10);
        assert_non_null(strstr(rzs_backing_foreign(h, PAGE), "hibernation"));
        memset(h, 0, PAGE);

        h[1080] = 0x53;
        h[1081] = 0xef;
        what = rzs_backing_foreign(h, PAGE);
        assert_non_null(what);
        assert_non_null(strstr(what, "ext2/3/4"));
        /* A swap signature does not excuse a file system's magic. */
        memcpy(h + PAGE - 10, "SWAPSPACE2", 10);
        assert_non_null(strstr(rzs_backing_foreign(h, PAGE), "ext2/3/4"));
        memset(h, 0, PAGE);

        memcpy(h, "XFSB", 4);
        assert_non_null(strstr(rzs_backing_foreign(h, PAGE), "XFS"));
        memset(h, 0, PAGE);

        /* GPT wins over the 0x55AA of its protective MBR. */
        h[510] = 0x55;
        h[511] = 0xaa;
        assert_non_null(strstr(rzs_backing_foreign(h, PAGE), "0x55AA"));
        memcpy(h + 512, "EFI PART", 8);
        assert_non_null(strstr(rzs_backing_foreign(h, PAGE), "GPT"));
        memset(h, 0, PAGE);

        /* btrfs keeps its magic past page 0: seen only when the probe reaches it. */
        memcpy(h + 65600, "_BHRfS_M", 8);
        assert_non_null(strstr(rzs_backing_foreign(h, RZS_BACKING_PROBE_LEN), "btrfs"));
        assert_null(rzs_backing_foreign(h, 65600));
        memset(h + 65600, 0, 8);

        /* Anything else non-zero in page 0, even its very last byte. */
        h[PAGE - 1] = 1;
        assert_non_null(strstr(rzs_backing_foreign(h, PAGE), "non-zero"));
        /* ... but data past page 0 does not count. */
        h[PAGE - 1] = 0;
        h[PAGE] = 1;
        assert_null(rzs_backing_foreign(h, 2 * PAGE));
        free(h);
}

static void test_open_file_and_io(void **state)
{
        unsigned char in[PAGE], out[PAGE];
        struct rzs_backing *b = (void *)1;
        struct tmpfile t;
        char msg[128];
        (void)state;

        tmp_make(&t, 10 * PAGE + 100); /* the tail is not a whole page */
        assert_int_equal(rzs_backing_open(t.path, false, &b, msg, sizeof msg), 0);
        assert_non_null(b);
        assert_int_equal(rzs_backing_size(b), 10 * PAGE);
        assert_false(rzs_backing_is_blockdev(b));

        for (uint64_t p = 0; p < 10; p++) {
                fill_noise(in, PAGE, p + 1);
                assert_int_equal(rzs_backing_write(b, p, in), 0);
        }
        for (uint64_t p = 0; p < 10; p++) {
                fill_noise(in, PAGE, p + 1);
                assert_int_equal(rzs_backing_read(b, p, out), 0);
                assert_memory_equal(in, out, PAGE);
                /* The page is where the header says: at p * 4096 of the file. */
                assert_int_equal(pread(t.fd, out, PAGE, (off_t)(p * PAGE)), PAGE);
                assert_memory_equal(in, out, PAGE);
        }
        assert_int_equal(rzs_backing_read(b, 10, out), -EINVAL);
        assert_int_equal(rzs_backing_write(b, 10, in), -EINVAL);
        assert_int_equal(rzs_backing_discard(b, 9, 2), -EINVAL);
        assert_int_equal(rzs_backing_discard(b, 11, 0), -EINVAL);
        assert_int_equal(rzs_backing_discard(b, 10, 0), 0);

        /* A second server on the same file is refused while the first holds it. */
        struct rzs_backing *b2 = (void *)1;

        assert_int_equal(rzs_backing_open(t.path, true, &b2, msg, sizeof msg), -EBUSY);
        assert_null(b2);
        assert_non_null(strstr(msg, "locked"));

        /* Discarded pages give their blocks back (where the file system can). */
        struct stat before, after;

        assert_int_equal(fsync(t.fd), 0);
        assert_int_equal(fstat(t.fd, &before), 0);
        assert_int_equal(rzs_backing_discard(b, 2, 5), 0);
        assert_int_equal(fstat(t.fd, &after), 0);
        assert_int_equal(after.st_size, before.st_size);
        if (fallocate(t.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE) == 0) {
                assert_true(after.st_blocks < before.st_blocks);
                assert_int_equal(rzs_backing_read(b, 3, out), 0);
                memset(in, 0, PAGE);
                assert_memory_equal(in, out, PAGE);
        }

        /* A store cut short under us: the read fails, it does not return stale
         * or partial data as good. */
        assert_int_equal(ftruncate(t.fd, 7 * PAGE + 10), 0);
        assert_int_equal(rzs_backing_read(b, 7, out), -EIO);
        assert_int_equal(rzs_backing_read(b, 8, out), -EIO);
        assert_int_equal(rzs_backing_read(b, 6, out), 0);

        rzs_backing_close(b);
        rzs_backing_close(NULL);
        tmp_remove(&t);
}

static void test_open_refusals(void **state)
{
        unsigned char page[PAGE];
        struct rzs_backing *b;
        struct tmpfile t;
        char msg[256];
        (void)state;

        /* An ext4-like store is refused, and the message names what was found. */
        tmp_make(&t, 64 * PAGE);
        tmp_put(&t, 1080, "\x53\xef", 2);
        b = (void *)1;
        assert_int_equal(rzs_backing_open(t.path, false, &b, msg, sizeof msg), -EEXIST);
        assert_null(b);
        assert_non_null(strstr(msg, "ext2/3/4"));
        assert_non_null(strstr(msg, "0xEF53"));
        /* Forced, it is used; nothing was written by the refused open. */
        assert_int_equal(rzs_backing_open(t.path, true, &b, msg, sizeof msg), 0);
        assert_int_equal(rzs_backing_size(b), 64 * PAGE);
        rzs_backing_close(b);
        assert_int_equal(pread(t.fd, page, 2, 1080), 2);
        assert_memory_equal(page, "\x53\xef", 2);

        /* Any other content in page 0 is refused too. */
        tmp_put(&t, 1080, "\0\0", 2);
        tmp_put(&t, 17, "x", 1);
        assert_int_equal(rzs_backing_open(t.path, false, &b, msg, sizeof msg), -EEXIST);
        assert_non_null(strstr(msg, "non-zero data"));

        /* A swap area is accepted (mkswap's header has non-zero fields). */
        memset(page, 0, PAGE);
        page[1024] = 1;
        page[1028] = 63;
        memcpy(page + PAGE - 10, "SWAPSPACE2", 10);
        tmp_put(&t, 0, page, PAGE);
        assert_int_equal(rzs_backing_open(t.path, false, &b, msg, sizeof msg), 0);
        rzs_backing_close(b);
        tmp_remove(&t);

        /* So is a store of zeros, even one smaller than the probe. */
        tmp_make(&t, PAGE);
        assert_int_equal(rzs_backing_open(t.path, false, &b, msg, sizeof msg), 0);
        assert_int_equal(rzs_backing_size(b), PAGE);
        rzs_backing_close(b);
        /* ... but not one smaller than a page. */
        assert_int_equal(ftruncate(t.fd, PAGE - 1), 0);
        assert_int_equal(rzs_backing_open(t.path, false, &b, msg, sizeof msg), -EINVAL);
        assert_non_null(strstr(msg, "smaller than one page"));
        tmp_remove(&t);

        b = (void *)1;
        assert_int_equal(
            rzs_backing_open("/tmp/rzs-backing-no-such-file", false, &b, msg, sizeof msg),
            -ENOENT);
        assert_null(b);
        assert_string_equal(msg, "does not exist");
        assert_int_equal(rzs_backing_open("/tmp", false, &b, msg, sizeof msg), -EISDIR);
        assert_string_equal(msg, "is a directory, not a regular file or a block device");
        /* A character device is refused before it is opened: opening some (a
         * watchdog, a terminal) already acts on them. */
        assert_int_equal(rzs_backing_open("/dev/null", true, &b, msg, sizeof msg),
                         -EINVAL);
        assert_string_equal(
            msg, "is a character device, not a regular file or a block device");
}

/* A store in RAM (tmpfs, ramfs) could have its pages swapped out to the very device
 * it backs: refused unless forced. */
static void test_open_refuses_ram_fs(void **state)
{
        char path[] = "/dev/shm/rzs-backing-XXXXXX";
        struct rzs_backing *b = (void *)1;
        char msg[256];
        int fd = mkstemp(path);
        (void)state;

        if (fd < 0)
                skip(); /* no /dev/shm here */
        assert_int_equal(ftruncate(fd, 16 * PAGE), 0);
        assert_int_equal(rzs_backing_open(path, false, &b, msg, sizeof msg), -EDEADLK);
        assert_null(b);
        assert_string_equal(
            msg, "is on tmpfs: its pages could be swapped out to the device it backs");
        assert_int_equal(rzs_backing_open(path, true, &b, msg, sizeof msg), 0);
        assert_int_equal(rzs_backing_size(b), 16 * PAGE);
        rzs_backing_close(b);
        close(fd);
        assert_int_equal(unlink(path), 0);
}

/* nbd (major 43, or named so) and zram devices are named; others are not. */
static void test_loop_device_kind(void **state)
{
        (void)state;
        assert_non_null(strstr(rzs_backing_swap_loop(43, "foo"), "nbd"));
        assert_non_null(strstr(rzs_backing_swap_loop(251, "nbd3"), "nbd"));
        assert_non_null(strstr(rzs_backing_swap_loop(252, "zram0"), "zram"));
        assert_null(rzs_backing_swap_loop(8, "sda1"));
        assert_null(rzs_backing_swap_loop(259, NULL));
}

/* ---- behind the device ---- */

static void test_device_config(void **state)
{
        struct rzs_device *dev = (void *)1;
        struct rzs_config cfg = {0};
        struct tmpfile t;
        char msg[256];
        (void)state;

        tmp_make(&t, 100 * PAGE + 5);
        cfg.backing = t.path;
        /* disksize 0: the store's size. */
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), 0);
        assert_int_equal(rzs_device_size(dev), 100 * PAGE);
        assert_int_equal(stats(dev).disksize, 100 * PAGE);
        rzs_device_destroy(dev);
        /* Smaller than the store is fine; larger is refused with a reason. */
        cfg.disksize = 50 * PAGE;
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), 0);
        assert_int_equal(rzs_device_size(dev), 50 * PAGE);
        rzs_device_destroy(dev);
        cfg.disksize = 101 * PAGE;
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), -EINVAL);
        assert_null(dev);
        assert_non_null(strstr(msg, "larger than the backing store"));
        assert_non_null(strstr(msg, t.path));
        assert_int_equal(rzs_device_create(&cfg, &dev), -EINVAL);
        /* memlimit is checked against the size the store gave. */
        cfg.disksize = 0;
        cfg.memlimit = 101 * PAGE;
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), -EINVAL);
        assert_non_null(strstr(msg, "memlimit"));
        cfg.memlimit = 0;

        /* A store holding a file system: refused, the path and the find named; the
         * device's own swap header never reaches it. */
        tmp_put(&t, 1080, "\x53\xef", 2);
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), -EEXIST);
        assert_null(dev);
        assert_non_null(strstr(msg, "backing store "));
        assert_non_null(strstr(msg, t.path));
        assert_non_null(strstr(msg, "ext2/3/4"));
        cfg.backing_force = true;
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), 0);
        rzs_device_destroy(dev);
        tmp_remove(&t);

        cfg.backing = "/tmp/rzs-backing-no-such-file";
        assert_int_equal(rzs_device_create_msg(&cfg, &dev, msg, sizeof msg), -ENOENT);
        assert_non_null(strstr(msg, "no-such-file"));
}

/* Big pages go to the store, small ones to the pool, and they move between the
 * two as slots are rewritten. */
static void test_big_pages_to_store(void **state)
{
        unsigned char in[PAGE], out[PAGE];
        struct tmpfile t;
        struct rzs_device *dev;
        struct rzs_stats s;
        (void)state;

        tmp_make(&t, 64 * PAGE);
        dev = make_dev(t.path, 0, 0);
        for (uint64_t p = 1; p <= 20; p++) {
                fill_kind(in, p % 2 ? K_NOISE : K_HALF, p);
                assert_int_equal(rzs_device_write(dev, in, PAGE, p * PAGE), 0);
        }
        s = stats(dev);
        assert_int_equal(s.bdev_num_writes, 20);
        assert_int_equal(s.backing_pages, 20);
        assert_int_equal(s.pages_stored, 0);
        assert_int_equal(s.no_compress, 0);
        assert_int_equal(s.mem_used_total, 0);
        assert_int_equal(s.num_writes, 20);
        for (uint64_t p = 1; p <= 20; p++) {
                fill_kind(in, p % 2 ? K_NOISE : K_HALF, p);
                assert_int_equal(rzs_device_read(dev, out, PAGE, p * PAGE), 0);
                assert_memory_equal(in, out, PAGE);
                assert_int_equal(pread(t.fd, out, PAGE, (off_t)(p * PAGE)), PAGE);
                assert_memory_equal(in, out, PAGE);
        }
        assert_int_equal(stats(dev).bdev_num_reads, 20);
        assert_int_equal(rzs_device_check(dev), 0);

        /* Text goes to the pool, also over a slot that was in the store. */
        fill_kind(in, K_TEXT, 7);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 3 * PAGE), 0);
        fill_kind(in, K_SAME, 9);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 4 * PAGE), 0);
        s = stats(dev);
        assert_int_equal(s.backing_pages, 18);
        assert_int_equal(s.pages_stored, 1);
        assert_int_equal(s.good_compress, 1);
        assert_int_equal(s.same_pages, 1);
        assert_int_equal(s.bdev_num_writes, 20);
        fill_kind(in, K_TEXT, 7);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 3 * PAGE), 0);
        assert_memory_equal(in, out, PAGE);
        /* ... and back to the store, which frees the pool object. */
        fill_kind(in, K_NOISE, 77);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 3 * PAGE), 0);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 3 * PAGE), 0);
        assert_memory_equal(in, out, PAGE);
        s = stats(dev);
        assert_int_equal(s.backing_pages, 19);
        assert_int_equal(s.pages_stored, 0);
        assert_int_equal(s.mem_used_total, 0);

        /* Slot 0 written to the store ends the built-in swap header. */
        fill_kind(in, K_NOISE, 1000);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 0), 0);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 0), 0);
        assert_memory_equal(in, out, PAGE);
        end_store_test(dev, &t);
}

/* A small memlimit: compressible pages fill the pool and the rest overflow to the
 * store instead of failing; every page reads back. */
static void test_memlimit_overflow(void **state)
{
        const uint64_t pages = 600;
        unsigned char in[4 * PAGE], out[4 * PAGE];
        struct tmpfile t;
        struct rzs_device *dev;
        struct rzs_stats s;
        (void)state;

        tmp_make(&t, pages * PAGE);
        dev = make_dev(t.path, 0, 16 * PAGE);
        for (uint64_t p = 0; p < pages; p += 4) {
                for (unsigned i = 0; i < 4; i++)
                        fill_kind(in + i * PAGE, K_TEXT, p + i);
                assert_int_equal(rzs_device_write(dev, in, 4 * PAGE, p * PAGE), 0);
        }
        s = stats(dev);
        assert_int_equal(s.failed_writes, 0);
        assert_true(s.mem_used_total <= 16 * PAGE);
        assert_true(s.pages_stored > 16); /* more than one text page per pool page */
        assert_true(s.backing_pages > 0);
        assert_int_equal(s.pages_stored + s.backing_pages, pages);
        assert_int_equal(s.bdev_num_writes, s.backing_pages);
        for (uint64_t p = 0; p < pages; p += 4) {
                for (unsigned i = 0; i < 4; i++)
                        fill_kind(in + i * PAGE, K_TEXT, p + i);
                assert_int_equal(rzs_device_read(dev, out, 4 * PAGE, p * PAGE), 0);
                assert_memory_equal(in, out, 4 * PAGE);
        }
        assert_int_equal(stats(dev).bdev_num_reads, s.backing_pages);
        assert_int_equal(rzs_device_check(dev), 0);

        /* Trim frees both kinds: the pool empties, the store's pages go. */
        assert_int_equal(rzs_device_trim(dev, pages * PAGE, 0), 0);
        s = stats(dev);
        assert_int_equal(s.backing_pages, 0);
        assert_int_equal(s.pages_stored, 0);
        assert_int_equal(s.mem_used_total, 0);
        assert_int_equal(s.pages_discard, pages);
        memset(in, 0, sizeof in);
        for (uint64_t p = 0; p < pages; p += 4) {
                assert_int_equal(rzs_device_read(dev, out, 4 * PAGE, p * PAGE), 0);
                assert_memory_equal(in, out, 4 * PAGE);
        }
        end_store_test(dev, &t);
}

/* Trim and write-zeroes of store pages: they read as zeros and the file gives its
 * blocks back. */
static void test_trim_store_pages(void **state)
{
        unsigned char in[PAGE], out[PAGE], zero[PAGE] = {0};
        struct tmpfile t;
        struct rzs_device *dev;
        struct stat before, after;
        struct rzs_stats s;
        (void)state;

        tmp_make(&t, 256 * PAGE);
        dev = make_dev(t.path, 0, 0);
        for (uint64_t p = 1; p < 256; p++) {
                fill_kind(in, K_NOISE, p);
                assert_int_equal(rzs_device_write(dev, in, PAGE, p * PAGE), 0);
        }
        assert_int_equal(fsync(t.fd), 0);
        assert_int_equal(fstat(t.fd, &before), 0);
        assert_int_equal(rzs_device_trim(dev, 100 * PAGE, 100 * PAGE), 0);
        assert_int_equal(rzs_device_zero(dev, 50 * PAGE, 50 * PAGE), 0);
        s = stats(dev);
        assert_int_equal(s.backing_pages, 255 - 150);
        assert_int_equal(s.pages_discard, 150);
        for (uint64_t p = 1; p < 256; p++) {
                assert_int_equal(rzs_device_read(dev, out, PAGE, p * PAGE), 0);
                fill_kind(in, K_NOISE, p);
                assert_memory_equal(p >= 50 && p < 200 ? zero : in, out, PAGE);
        }
        assert_int_equal(fstat(t.fd, &after), 0);
        if (fallocate(t.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE) == 0)
                assert_true(after.st_blocks + 150 * PAGE / 512 <= before.st_blocks);
        end_store_test(dev, &t);
}

/* A store that comes back short: the read is -EIO and counted, never data. */
static void test_read_error(void **state)
{
        unsigned char in[PAGE], out[4 * PAGE];
        struct tmpfile t;
        struct rzs_device *dev;
        struct rzs_stats s;
        (void)state;

        tmp_make(&t, 32 * PAGE);
        dev = make_dev(t.path, 0, 0);
        fill_kind(in, K_NOISE, 1);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 3 * PAGE), 0);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 20 * PAGE), 0);
        fill_kind(in, K_TEXT, 2);
        assert_int_equal(rzs_device_write(dev, in, PAGE, 21 * PAGE), 0);
        assert_int_equal(ftruncate(t.fd, 10 * PAGE), 0);

        assert_int_equal(rzs_device_read(dev, out, PAGE, 3 * PAGE), 0);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 20 * PAGE), -EIO);
        assert_int_equal(rzs_device_read(dev, out, 4 * PAGE, 18 * PAGE), -EIO);
        s = stats(dev);
        assert_int_equal(s.failed_reads, 2);
        assert_int_equal(s.num_reads, 1 + 2); /* slot 3, then 18 and 19 */
        assert_int_equal(s.bdev_num_reads, 1);
        /* The pool page next to it is unaffected. */
        assert_int_equal(rzs_device_read(dev, out, PAGE, 21 * PAGE), 0);
        assert_memory_equal(in, out, PAGE);
        end_store_test(dev, &t);
}

/* Write errors, made deterministic with RLIMIT_FSIZE: writes past the limit fail
 * with EFBIG (SIGXFSZ ignored), and a limit inside a page makes a partial write. */
static void test_write_error(void **state)
{
        unsigned char a[PAGE], b[PAGE], text[PAGE], out[PAGE];
        struct rlimit old, lim;
        struct tmpfile t;
        struct rzs_device *dev;
        struct rzs_stats s;
        void (*old_sig)(int);
        int r;
        (void)state;

        tmp_make(&t, 64 * PAGE);
        dev = make_dev(t.path, 0, 0);
        fill_kind(a, K_NOISE, 1);
        fill_kind(b, K_NOISE, 2);
        fill_kind(text, K_TEXT, 3);
        assert_int_equal(rzs_device_write(dev, text, PAGE, 40 * PAGE), 0);
        assert_int_equal(rzs_device_write(dev, a, PAGE, 50 * PAGE), 0);

        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        old_sig = signal(SIGXFSZ, SIG_IGN);
        lim = old;
        /* 1. The whole write fails; the slot's pool page is untouched. */
        lim.rlim_cur = 30 * PAGE;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        r = rzs_device_write(dev, b, PAGE, 40 * PAGE);
        /* 2. Half a page gets written over the slot's store page: it is lost. */
        lim.rlim_cur = 50 * PAGE + 100;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        int r2 = rzs_device_write(dev, b, PAGE, 50 * PAGE);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, old_sig);

        assert_int_equal(r, -EIO);
        assert_int_equal(r2, -EIO);
        s = stats(dev);
        assert_int_equal(s.failed_writes, 2);
        assert_int_equal(s.bdev_num_writes, 1);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 40 * PAGE), 0);
        assert_memory_equal(text, out, PAGE);
        /* The store really holds a mix, which the device must not hand out. */
        assert_int_equal(pread(t.fd, out, PAGE, 50 * PAGE), PAGE);
        assert_memory_equal(out, b, 100);
        assert_memory_not_equal(out + 100, b + 100, PAGE - 100);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 50 * PAGE), -EIO);
        assert_int_equal(stats(dev).failed_reads, 1);
        assert_int_equal(rzs_device_check(dev), 0);
        assert_int_equal(stats(dev).backing_pages, 1);

        /* Rewritten, the slot is whole again; trimmed, it reads as zeros. */
        assert_int_equal(rzs_device_write(dev, b, PAGE, 50 * PAGE), 0);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 50 * PAGE), 0);
        assert_memory_equal(b, out, PAGE);
        lim.rlim_cur = 50 * PAGE + 100;
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        r = rzs_device_write(dev, a, PAGE, 50 * PAGE);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, old_sig);
        assert_int_equal(r, -EIO);
        assert_int_equal(rzs_device_trim(dev, PAGE, 50 * PAGE), 0);
        memset(a, 0, PAGE);
        assert_int_equal(rzs_device_read(dev, out, PAGE, 50 * PAGE), 0);
        assert_memory_equal(a, out, PAGE);
        assert_int_equal(stats(dev).backing_pages, 0);
        end_store_test(dev, &t);
}

/* ---- model-based random test ---- */

#define MODEL_PAGES 1024u
#define MODEL_OPS   50000u

/* The model keeps (kind, seed) per slot; kind K_KINDS means "never written". */
struct model {
        uint8_t kind[MODEL_PAGES];
        uint64_t seed[MODEL_PAGES];
};

static void model_expect(const struct model *m, uint64_t p, unsigned char *page)
{
        if (m->kind[p] == K_KINDS)
                memset(page, 0, PAGE);
        else
                fill_kind(page, (enum kind)m->kind[p], m->seed[p]);
}

static void test_random_model(void **state)
{
        static struct model m;
        unsigned char *buf = malloc(8 * PAGE), *exp = malloc(8 * PAGE);
        struct tmpfile t;
        struct rzs_device *dev;
        struct rzs_stats s;
        uint64_t rng = 0x5eed;
        uint64_t max_pool = 0, max_backing = 0;
        (void)state;

        assert_non_null(buf);
        assert_non_null(exp);
        tmp_make(&t, MODEL_PAGES * PAGE);
        /* 48 pool pages hold far fewer than the 1024 slots' worth of data. */
        dev = make_dev(t.path, 0, 48 * PAGE);
        memset(m.kind, K_KINDS, sizeof m.kind);
        /* Slot 0's built-in header is covered by the device tests; start past it. */
        memset(buf, 0, PAGE);
        assert_int_equal(rzs_device_write(dev, buf, PAGE, 0), 0);
        m.kind[0] = K_ZERO;

        for (unsigned op = 0; op < MODEL_OPS; op++) {
                uint64_t r = next_rand(&rng);
                uint64_t n = 1 + (r >> 8) % 8;
                uint64_t first = (r >> 16) % (MODEL_PAGES - n + 1);
                unsigned what = r % 16;

                if (what < 7) { /* write */
                        for (uint64_t i = 0; i < n; i++) {
                                uint64_t k = next_rand(&rng);

                                m.kind[first + i] = (uint8_t)(k % K_KINDS);
                                m.seed[first + i] = k >> 8;
                                model_expect(&m, first + i, buf + i * PAGE);
                        }
                        assert_int_equal(
                            rzs_device_write(dev, buf, n * PAGE, first * PAGE), 0);
                } else if (what < 14) { /* read */
                        assert_int_equal(
                            rzs_device_read(dev, buf, n * PAGE, first * PAGE), 0);
                        for (uint64_t i = 0; i < n; i++)
                                model_expect(&m, first + i, exp + i * PAGE);
                        if (memcmp(buf, exp, n * PAGE) != 0)
                                fail_msg("op %u: pages %" PRIu64 "+%" PRIu64 " differ",
                                         op, first, n);
                } else { /* trim or zero */
                        if (what == 14)
                                assert_int_equal(
                                    rzs_device_trim(dev, n * PAGE, first * PAGE), 0);
                        else
                                assert_int_equal(
                                    rzs_device_zero(dev, n * PAGE, first * PAGE), 0);
                        memset(m.kind + first, K_KINDS, n);
                }
                s = stats(dev);
                if (s.pages_stored > max_pool)
                        max_pool = s.pages_stored;
                if (s.backing_pages > max_backing)
                        max_backing = s.backing_pages;
                if (op % 5000 == 4999)
                        assert_int_equal(rzs_device_check(dev), 0);
        }
        /* Every page, one last time. */
        for (uint64_t p = 0; p < MODEL_PAGES; p++) {
                assert_int_equal(rzs_device_read(dev, buf, PAGE, p * PAGE), 0);
                model_expect(&m, p, exp);
                assert_memory_equal(buf, exp, PAGE);
        }
        s = stats(dev);
        assert_int_equal(rzs_device_check(dev), 0);
        assert_int_equal(s.failed_reads + s.failed_writes + s.invalid_io, 0);
        assert_true(s.mem_used_max <= 48 * PAGE);
        /* Both tiers were really in use, and in use at once. */
        assert_true(max_pool > 48);
        assert_true(max_backing > 100);
        assert_true(s.pages_stored > 0 && s.backing_pages > 0);
        print_message("model: pool %" PRIu64 " pages stored (max %" PRIu64
                      "), store %" PRIu64 " (max %" PRIu64 "), bdev reads %" PRIu64
                      " writes %" PRIu64 "\n",
                      s.pages_stored, max_pool, s.backing_pages, max_backing,
                      s.bdev_num_reads, s.bdev_num_writes);
        rzs_device_destroy(dev);
        tmp_remove(&t);
        free(buf);
        free(exp);
}

/* ---- threads ---- */

/* Writers keep replacing a few shared slots with one of four candidate pages that
 * land in different places (store, pool, same-filled); readers check every read is
 * exactly one candidate, never a mix of two. The outcome does not depend on timing:
 * any torn read fails, whatever the interleaving. */
#define SHARED_SLOTS 8u
#define THREAD_ITERS 20000u

struct shared {
        struct rzs_device *dev;
        unsigned char cand[4][PAGE];
        unsigned id;
        _Atomic unsigned bad;
};

static void *writer(void *arg)
{
        struct shared *sh = arg;
        uint64_t rng = 0x1234 + sh->id;

        for (unsigned i = 0; i < THREAD_ITERS; i++) {
                uint64_t r = next_rand(&rng);
                uint64_t slot = 1 + r % SHARED_SLOTS;

                if (rzs_device_write(sh->dev, sh->cand[(r >> 8) % 4], PAGE,
                                     slot * PAGE) != 0)
                        sh->bad++;
        }
        return NULL;
}

static void *reader(void *arg)
{
        struct shared *sh = arg;
        unsigned char out[PAGE];
        uint64_t rng = 0x9876 + sh->id;

        for (unsigned i = 0; i < THREAD_ITERS; i++) {
                uint64_t slot = 1 + next_rand(&rng) % SHARED_SLOTS;
                bool ok = false;

                if (rzs_device_read(sh->dev, out, PAGE, slot * PAGE) != 0) {
                        sh->bad++;
                        continue;
                }
                for (unsigned c = 0; c < 4; c++)
                        ok |= memcmp(out, sh->cand[c], PAGE) == 0;
                sh->bad += !ok;
        }
        return NULL;
}

static void test_threads(void **state)
{
        static struct shared sh[4];
        pthread_t th[4];
        struct tmpfile t;
        struct rzs_device *dev;
        (void)state;

        tmp_make(&t, 64 * PAGE);
        /* memlimit of one page: text pages go to the pool until it is full, then to
         * the store, so slots move between all three places. */
        dev = make_dev(t.path, 0, PAGE);
        for (unsigned i = 0; i < 4; i++) {
                sh[i].dev = dev;
                sh[i].id = i;
                sh[i].bad = 0;
                fill_kind(sh[i].cand[0], K_NOISE, 11);
                fill_kind(sh[i].cand[1], K_NOISE, 12);
                fill_kind(sh[i].cand[2], K_TEXT, 13);
                fill_kind(sh[i].cand[3], K_SAME, 14);
        }
        for (uint64_t s = 1; s <= SHARED_SLOTS; s++)
                assert_int_equal(rzs_device_write(dev, sh[0].cand[0], PAGE, s * PAGE), 0);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(
                    pthread_create(&th[i], NULL, i % 2 ? reader : writer, &sh[i]), 0);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(pthread_join(th[i], NULL), 0);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(sh[i].bad, 0);
        assert_true(stats(dev).bdev_num_writes > 0);
        assert_true(stats(dev).bdev_num_reads > 0);
        end_store_test(dev, &t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_foreign_signatures),
            cmocka_unit_test(test_open_file_and_io),
            cmocka_unit_test(test_open_refusals),
            cmocka_unit_test(test_open_refuses_ram_fs),
            cmocka_unit_test(test_loop_device_kind),
            cmocka_unit_test(test_device_config),
            cmocka_unit_test(test_big_pages_to_store),
            cmocka_unit_test(test_memlimit_overflow),
            cmocka_unit_test(test_trim_store_pages),
            cmocka_unit_test(test_read_error),
            cmocka_unit_test(test_write_error),
            cmocka_unit_test(test_random_model),
            cmocka_unit_test(test_threads),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
