/* pipes: pipe/pipe2, read/write, FIONREAD, F_GETPIPE_SZ, non-blocking EAGAIN, EPIPE with SIGPIPE
 * ignored, splice pipe->file and file->pipe, tee pipe->pipe, vmsplice; the program writes into its
 * own pipes and reads them back. */
#include "corpus.h"
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

int main(int argc, char **argv)
{
    int p[2], q[2], n = -1;
    char buf[64];
    corpus_enter(argc, argv);

    check(pipe(p) == 0, "pipe");
    check(write(p[1], "abcdef", 6) == 6, "write 6 into the pipe");
    check(ioctl(p[0], FIONREAD, &n) == 0 && n == 6, "FIONREAD is 6");
    check(read(p[0], buf, 3) == 3 && !memcmp(buf, "abc", 3), "read 3: abc");
    check(fcntl(p[0], F_GETPIPE_SZ) >= 4096, "F_GETPIPE_SZ >= 4096");

    int f = open("splice.tmp", O_CREAT | O_EXCL | O_RDWR, 0600);
    check(f >= 0, "open splice.tmp");
    loff_t off = 0;
    check(splice(p[0], NULL, f, &off, 3, 0) == 3 && off == 3, "splice pipe -> file: 3 bytes");
    check(pread(f, buf, 3, 0) == 3 && !memcmp(buf, "def", 3), "file holds def");
    check(pwrite(f, "ghijkl", 6, 3) == 6, "pwrite 6 more into the file");
    off = 2;
    check(splice(f, &off, p[1], NULL, 5, 0) == 5 && off == 7, "splice file -> pipe: 5 bytes");
    memset(buf, 0, sizeof buf);
    check(read(p[0], buf, sizeof buf) == 5 && !memcmp(buf, "fghij", 5), "read spliced bytes: fghij");

    check(pipe2(q, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2 O_CLOEXEC|O_NONBLOCK");
    check((fcntl(q[0], F_GETFD) & FD_CLOEXEC) && (fcntl(q[0], F_GETFL) & O_NONBLOCK), "pipe2 flags set");
    check(read(q[0], buf, 1) < 0 && errno == EAGAIN, "empty non-blocking read: EAGAIN");
    check(write(p[1], "tee-data", 8) == 8, "write tee-data");
    check(tee(p[0], q[1], 8, 0) == 8, "tee 8 bytes");
    check(read(q[0], buf, sizeof buf) == 8 && !memcmp(buf, "tee-data", 8), "read teed copy");
    check(read(p[0], buf, sizeof buf) == 8 && !memcmp(buf, "tee-data", 8), "original still there");

    struct iovec iov[2] = {{"vm", 2}, {"splice", 6}};
    check(vmsplice(p[1], iov, 2, 0) == 8, "vmsplice 2 iovecs");
    check(readv(p[0], (struct iovec[]){{buf, 4}, {buf + 4, 4}}, 2) == 8 && !memcmp(buf, "vmsplice", 8),
          "readv 2 iovecs");
    check(writev(p[1], iov, 2) == 8 && read(p[0], buf, 8) == 8 && !memcmp(buf, "vmsplice", 8), "writev, read");

    signal(SIGPIPE, SIG_IGN);
    check(close(q[0]) == 0, "close read end");
    check(write(q[1], "x", 1) < 0 && errno == EPIPE, "write without reader: EPIPE");
    check(close(q[1]) == 0, "close write end");
    check(close(p[1]) == 0 && read(p[0], buf, 1) == 0, "EOF after the writer closed");
    check(close(p[0]) == 0 && close(f) == 0, "close the rest");
    check(unlink("splice.tmp") == 0, "unlink splice.tmp");
    return corpus_verdict();
}
