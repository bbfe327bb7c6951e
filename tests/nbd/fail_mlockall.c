/* Preloaded into nbdkit by test_nbd_mlock: the mlockall system call fails with
 * EPERM, so the plugin's .after_fork takes its warning path even as root. The
 * plugin makes that call through syscall() (ASan would swallow the libc wrapper),
 * so syscall() is what is wrapped; every other call passes through.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

long syscall(long n, ...)
{
        static long (*next)(long, ...);
        long a[6];
        va_list ap;

        if (n == SYS_mlockall) {
                errno = EPERM;
                return -1;
        }
        /* Six arguments, as the kernel takes; unused ones are ignored there. */
        va_start(ap, n);
        for (int i = 0; i < 6; i++)
                a[i] = va_arg(ap, long);
        va_end(ap);
        if (next == NULL)
                next = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
        return next(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
