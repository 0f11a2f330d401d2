/* eventfd: counter semantics (writes add, a read takes all), EFD_SEMAPHORE, EFD_NONBLOCK EAGAIN,
 * the eventfd_read/eventfd_write wrappers, a too-short read and an overflowing write. */
#include "corpus.h"
#include <poll.h>
#include <sys/eventfd.h>

int main(int argc, char **argv)
{
    uint64_t v = 0;
    eventfd_t ev;
    corpus_enter(argc, argv);
    int fd = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
    check(fd >= 0, "eventfd initval 5");
    check(read(fd, &v, 8) == 8 && v == 5, "read: 5");
    check(read(fd, &v, 8) < 0 && errno == EAGAIN, "read empty: EAGAIN");
    v = 3;
    check(write(fd, &v, 8) == 8, "write 3");
    check(eventfd_write(fd, 4) == 0, "eventfd_write 4");
    check(eventfd_read(fd, &ev) == 0 && ev == 7, "eventfd_read: 7");
    check(read(fd, &v, 4) < 0 && errno == EINVAL, "4-byte read: EINVAL");
    v = UINT64_MAX;
    check(write(fd, &v, 8) < 0 && errno == EINVAL, "write 2^64-1: EINVAL");
    v = UINT64_MAX - 1;
    check(write(fd, &v, 8) == 8, "write the maximum");
    v = 1;
    check(write(fd, &v, 8) < 0 && errno == EAGAIN, "overflow: EAGAIN");
    struct pollfd p = {fd, POLLIN | POLLOUT, 0};
    check(poll(&p, 1, 0) == 1 && p.revents == POLLIN, "poll: readable, not writable");
    check(read(fd, &v, 8) == 8 && v == UINT64_MAX - 1, "read the maximum");
    close(fd);

    int s = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK);
    check(s >= 0, "eventfd EFD_SEMAPHORE");
    check(eventfd_write(s, 2) == 0, "write 2");
    check(read(s, &v, 8) == 8 && v == 1 && read(s, &v, 8) == 8 && v == 1, "two reads of 1");
    check(read(s, &v, 8) < 0 && errno == EAGAIN, "third read: EAGAIN");
    close(s);
    return corpus_verdict();
}
