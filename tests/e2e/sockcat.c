/* sockcat: print what a unix stream socket server sends, for the QEMU end-to-end test.
 *
 * Usage: sockcat PATH [REQUEST]. Connects to PATH, sends REQUEST followed by a newline
 * if given, then copies everything the server sends to stdout until EOF. busybox nc
 * has no unix-socket mode; ramzswap's stats server (stats=PATH) answers each
 * connection with one snapshot and closes it. Gives up after 20 s so a stuck server
 * shows up as an error, not a hang.
 *
 * Built static (gcc -static) by run-e2e.sh; runs as a guest binary only.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        char buf[4096];
        ssize_t n;
        int fd;

        if (argc < 2 || argc > 3 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
                fprintf(stderr, "usage: sockcat PATH [REQUEST]\n");
                return 2;
        }
        alarm(20);
        strcpy(addr.sun_path, argv[1]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                fprintf(stderr, "sockcat: %s: %m\n", argv[1]);
                return 1;
        }
        if (argc == 3 &&
            (write(fd, argv[2], strlen(argv[2])) < 0 || write(fd, "\n", 1) < 0)) {
                fprintf(stderr, "sockcat: write %s: %m\n", argv[1]);
                return 1;
        }
        while ((n = read(fd, buf, sizeof(buf))) > 0) {
                if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
                        return 1;
        }
        if (n < 0) {
                fprintf(stderr, "sockcat: read %s: %m\n", argv[1]);
                return 1;
        }
        return fflush(stdout) == 0 ? 0 : 1;
}
