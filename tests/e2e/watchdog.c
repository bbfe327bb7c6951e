/* watchdog: turns a hung QEMU guest into a FAIL line and a reboot.
 *
 * Usage: watchdog SECONDS. Locks itself in memory and opens everything it will need
 * before sleeping: once the guest is out of memory a fork, an exec or even an open()
 * of a /proc file can block forever. At the deadline it prints the test's FAIL line,
 * raises the console log level and asks the kernel (sysrq 'w', 'l', 'm', 't') for
 * the stacks of blocked tasks, the running CPU, the memory and every task, then calls
 * reboot(2); QEMU runs with -no-reboot, so that ends the run. /init kills it when
 * the test finishes in time.
 *
 * Built static (gcc -static) by run-e2e.sh; runs as a guest binary only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

static void put(int fd, const char *s)
{
        if (fd >= 0 && write(fd, s, strlen(s)) < 0)
                return; /* nothing better to do on a dying guest */
}

int main(int argc, char **argv)
{
        static char msg[128];
        struct timespec deadline;
        long seconds = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
        int sysrq, printk, oom;

        if (seconds <= 0) {
                fprintf(stderr, "usage: watchdog SECONDS\n");
                return 2;
        }
        sysrq = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
        printk = open("/proc/sys/kernel/printk", O_WRONLY | O_CLOEXEC);
        oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        put(oom, "-1000\n");
        if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
                perror("watchdog: mlockall");
        snprintf(msg, sizeof(msg), "\nE2E-RESULT: FAIL watchdog: no result after %ld s\n",
                 seconds);

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += seconds;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
                ;
        put(STDOUT_FILENO, msg);
        put(printk, "7\n");
        put(sysrq, "w");
        put(sysrq, "l");
        put(sysrq, "m");
        put(sysrq, "t");
        reboot(RB_AUTOBOOT);
        perror("watchdog: reboot");
        return 1;
}
