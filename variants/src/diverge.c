/*
 * diverge: one program whose builds part ways on purpose, to test divergence detection.
 *
 *   diverge MODE [all]
 *
 * Every build reads one chunk of stdin (replicated input), asks for its pid, then writes
 * "got: <input>" to stdout and exits 0.  With MODE other than "same", the non-x86_64 builds
 * (i386, aarch64) do something else at one point; with "all", every build does it (so the
 * variants agree again: the test that no false alarm fires on that path).
 *
 *   syscall  getrandom() of 16 bytes where the others write -> a different syscall (a draw of
 *            8 bytes or less is not a point of sync: see FollowerSync.small_draw)
 *   args     the write goes to fd 2 instead of fd 1      -> different arguments
 *   bytes    the written bytes differ in one byte        -> different output bytes
 *   exit     exit status 3 instead of 0                  -> different exit statuses
 *   signal   a SIGSEGV (null write) before the write                 -> killed by a signal
 *   hang     a 30 s sleep (not synced) before the write  -> does not reach the next call
 *            (with "all": a 1 s sleep, under the timeout)
 *   fd       an inotify fd (not synced) before socket()  -> fd numbers differ
 *   file     reads 8 bytes of /etc/passwd, not 16        -> different arguments of a local read
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "same";
#if defined(__x86_64__)
    int odd = argc > 2 && strcmp(argv[2], "all") == 0;
#else
    int odd = 1;
#endif
    int all = argc > 2 && strcmp(argv[2], "all") == 0;
    if (strcmp(mode, "same") == 0)
        odd = 0;

    char in[64];
    ssize_t n = read(0, in, sizeof in);
    if (n < 0)
        n = 0;
    getpid();

    /* a regular file: opened and read by every variant itself (local calls, compared) */
    char head[16];
    int f = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    if (f >= 0) {
        if (read(f, head, odd && strcmp(mode, "file") == 0 ? 8 : sizeof head) < 0)
            head[0] = 0;
        close(f);
    }

    if (odd && strcmp(mode, "fd") == 0)
        inotify_init1(0);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    close(s);

    char out[80] = "got: ";
    memcpy(out + 5, in, (size_t)n);
    size_t len = 5 + (size_t)n;
    int fd = 1;
    if (odd && strcmp(mode, "syscall") == 0) {
        char r[16];
        getrandom(r, sizeof r, 0);
    }
    if (odd && strcmp(mode, "args") == 0)
        fd = 2;
    if (odd && strcmp(mode, "bytes") == 0)
        out[1] = 'O';
    if (odd && strcmp(mode, "signal") == 0)
        *(volatile int *)0 = 1; /* a real fault: raise() would make synced calls (getpid) first */
    if (odd && strcmp(mode, "hang") == 0) {
        struct timespec ts = {all ? 1 : 30, 0};
        nanosleep(&ts, NULL);
    }
    if (write(fd, out, len) < 0)
        return 1;
    return odd && strcmp(mode, "exit") == 0 ? 3 : 0;
}
