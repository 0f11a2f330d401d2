/* fcntl: F_GETFL/F_SETFL (O_NONBLOCK, O_APPEND), F_GETFD/F_SETFD, F_DUPFD/F_DUPFD_CLOEXEC,
 * dup/dup2/dup3, F_SETOWN_EX/F_GETOWN_EX, F_SETSIG/F_GETSIG, record locks (F_SETLK/F_GETLK,
 * F_OFD_SETLK/F_OFD_GETLK), F_GETPIPE_SZ/F_SETPIPE_SZ, F_GETLEASE. */
#include "corpus.h"
#include <signal.h>

int main(int argc, char **argv)
{
    corpus_enter(argc, argv);
    int fd = open("fc.tmp", O_CREAT | O_EXCL | O_RDWR, 0600);
    check(fd >= 0, "open fc.tmp O_RDWR");
    int fl = fcntl(fd, F_GETFL);
    check(fl >= 0 && (fl & O_ACCMODE) == O_RDWR && !(fl & O_NONBLOCK), "F_GETFL: O_RDWR, blocking");
    check(fcntl(fd, F_SETFL, fl | O_NONBLOCK | O_APPEND) == 0, "F_SETFL O_NONBLOCK|O_APPEND");
    fl = fcntl(fd, F_GETFL);
    check((fl & O_NONBLOCK) && (fl & O_APPEND), "F_GETFL shows both");
    check(write(fd, "ab", 2) == 2 && lseek(fd, 0, SEEK_SET) == 0 && write(fd, "cd", 2) == 2 &&
          lseek(fd, 0, SEEK_CUR) == 4, "O_APPEND writes at the end");
    check(fcntl(fd, F_GETFD) == 0, "F_GETFD: 0");
    check(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC, "F_SETFD FD_CLOEXEC");
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    check(d >= 10 && fcntl(d, F_GETFD) == FD_CLOEXEC, "F_DUPFD_CLOEXEC >= 10, close-on-exec");
    int d2 = fcntl(fd, F_DUPFD, 20);
    check(d2 == 20 && fcntl(d2, F_GETFD) == 0, "F_DUPFD 20 is 20, no close-on-exec");
    check(dup2(fd, 30) == 30 && dup3(fd, 31, O_CLOEXEC) == 31 && fcntl(31, F_GETFD) == FD_CLOEXEC, "dup2, dup3");
    check(dup3(fd, fd, 0) < 0 && errno == EINVAL, "dup3 onto itself: EINVAL");
    int du = dup(fd);
    check(du > 2 && lseek(du, 0, SEEK_CUR) == 4, "dup shares the offset");
    check(fcntl(99, F_GETFD) < 0 && errno == EBADF, "F_GETFD closed fd: EBADF");

    struct f_owner_ex own = {F_OWNER_TID, 12345};
    check(fcntl(fd, F_GETOWN_EX, &own) == 0 && own.pid == 0, "F_GETOWN_EX: no owner");
    own.type = F_OWNER_PID;
    own.pid = getpid();
    check(fcntl(fd, F_SETOWN_EX, &own) == 0, "F_SETOWN_EX self");
    memset(&own, 0, sizeof own);
    check(fcntl(fd, F_GETOWN_EX, &own) == 0 && own.type == F_OWNER_PID && own.pid == getpid(), "F_GETOWN_EX: self");
    check(fcntl(fd, F_GETOWN) == getpid(), "F_GETOWN: self");
    check(fcntl(fd, F_SETSIG, SIGUSR1) == 0 && fcntl(fd, F_GETSIG) == SIGUSR1, "F_SETSIG/F_GETSIG");

    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 2};
    check(fcntl(fd, F_SETLK, &lk) == 0, "F_SETLK write lock");
    lk.l_type = F_WRLCK;
    check(fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type == F_UNLCK, "F_GETLK: own lock does not conflict");
    struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 2};
    int other = open("fc.tmp", O_RDWR);
    check(fcntl(other, F_OFD_GETLK, &ofd) == 0 && ofd.l_type == F_WRLCK && ofd.l_pid == getpid(),
          "F_OFD_GETLK sees the process lock");
    ofd.l_type = F_WRLCK;
    ofd.l_start = 2;
    ofd.l_pid = 0;
    check(fcntl(other, F_OFD_SETLK, &ofd) == 0, "F_OFD_SETLK on another range");
    lk.l_type = F_UNLCK;
    lk.l_start = 0;
    check(fcntl(fd, F_SETLK, &lk) == 0, "F_SETLK unlock");
    check(fcntl(fd, F_GETLEASE) == F_UNLCK, "F_GETLEASE: none");

    int p[2];
    check(pipe(p) == 0, "pipe");
    check(fcntl(p[0], F_SETPIPE_SZ, 8192) >= 8192 && fcntl(p[0], F_GETPIPE_SZ) >= 8192, "F_SETPIPE_SZ 8192");
    check(fcntl(fd, F_GETPIPE_SZ) < 0 && errno == EBADF, "F_GETPIPE_SZ on a file: EBADF");
    close(p[0]);
    close(p[1]);
    close(other);
    close(du);
    close(30);
    close(31);
    close(d);
    close(d2);
    close(fd);
    check(unlink("fc.tmp") == 0, "unlink fc.tmp");
    return corpus_verdict();
}
