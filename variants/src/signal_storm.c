/*
 * signal_storm: copy stdin to stdout while SIGUSR1 keeps arriving.
 *
 *   signal_storm
 *
 * SIGUSR1 has a handler installed without SA_RESTART, so a blocking read or
 * write it interrupts fails with EINTR (counted, then retried).  Between a
 * read and its write the program makes calls that never block: a pread of its
 * own executable and a shutdown of one end of a socketpair.  It writes "ready"
 * once the handler is in place, then the input, then at EOF
 * "signals S eintr E bytes B", and exits 0.
 *
 * Under mvx every variant must take each signal at the same point of its call
 * stream: a variant that sees EINTR where another does not, or one that loses
 * the bytes of an interrupted read, writes other counts or other bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t signals;

static void on_usr1(int sig)
{
    (void)sig;
    signals++;
}

static long eintr;

static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(1, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                eintr++;
                continue;
            }
            _exit(1);
        }
        p += n;
        len -= (size_t)n;
    }
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;  /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) < 0)
        return 1;
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int pair[2];
    if (self < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        return 1;

    write_all("ready\n", 6);
    char buf[512], head[16];
    long bytes = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) {
                eintr++;
                continue;
            }
            return 1;
        }
        if (n == 0)
            break;
        if (pread(self, head, sizeof head, bytes % 4096) != (ssize_t)sizeof head)
            return 1;
        shutdown(pair[1], SHUT_RD);  /* never blocks, never fails with EINTR */
        write_all(buf, (size_t)n);
        bytes += n;
    }
    char line[96];
    int len = snprintf(line, sizeof line, "signals %d eintr %ld bytes %ld\n", (int)signals, eintr, bytes);
    write_all(line, (size_t)len);
    return 0;
}
