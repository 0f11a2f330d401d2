/* poll: readiness on its own pipe and eventfd through poll, ppoll, select, pselect and epoll
 * (create1, ctl add/mod/del with data, wait, pwait), with zero and short timeouts. */
#include "corpus.h"
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <time.h>

int main(int argc, char **argv)
{
    int p[2];
    char buf[16];
    corpus_enter(argc, argv);
    check(pipe2(p, O_NONBLOCK) == 0, "pipe2");
    int ev = eventfd(0, EFD_NONBLOCK);
    check(ev >= 0, "eventfd");

    struct pollfd pf[2] = {{p[0], POLLIN, 0}, {ev, POLLIN, 0}};
    check(poll(pf, 2, 0) == 0, "poll, nothing ready");
    check(poll(pf, 2, 20) == 0, "poll 20 ms, nothing ready");
    check(write(p[1], "x", 1) == 1, "write the pipe");
    check(poll(pf, 2, 1000) == 1 && pf[0].revents == POLLIN && pf[1].revents == 0, "poll: pipe readable");
    uint64_t one = 1;
    check(write(ev, &one, 8) == 8, "write the eventfd");
    struct timespec ts = {1, 0};
    check(ppoll(pf, 2, &ts, NULL) == 2 && pf[1].revents == POLLIN, "ppoll: both readable");
    struct pollfd wr = {p[1], POLLOUT, 0};
    check(poll(&wr, 1, 0) == 1 && wr.revents == POLLOUT, "poll: pipe writable");

    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    FD_SET(ev, &r);
    struct timeval tv = {1, 0};
    int maxfd = (p[0] > ev ? p[0] : ev) + 1;
    check(select(maxfd, &r, NULL, NULL, &tv) == 2 && FD_ISSET(p[0], &r) && FD_ISSET(ev, &r), "select: both readable");
    check(read(p[0], buf, 1) == 1, "drain the pipe");
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    ts.tv_sec = 0;
    ts.tv_nsec = 20000000;
    sigset_t none;
    sigemptyset(&none);
    check(pselect(maxfd, &r, NULL, NULL, &ts, &none) == 0, "pselect 20 ms: pipe empty");
    fd_set w;
    FD_ZERO(&w);
    FD_SET(p[1], &w);
    tv.tv_sec = 0;
    tv.tv_usec = 0;
    check(select(maxfd, NULL, &w, NULL, &tv) == 1 && FD_ISSET(p[1], &w), "select: pipe writable");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    check(ep >= 0, "epoll_create1");
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ULL};
    check(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e) == 0, "epoll_ctl ADD pipe");
    e.events = EPOLLIN | EPOLLET;
    e.data.u64 = 42;
    check(epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) == 0, "epoll_ctl ADD eventfd (edge)");
    check(epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) < 0 && errno == EEXIST, "epoll_ctl ADD again: EEXIST");
    struct epoll_event out[4];
    int n = epoll_wait(ep, out, 4, 1000);
    check(n == 1 && out[0].data.u64 == 42 && out[0].events == EPOLLIN, "epoll_wait: eventfd, data 42");
    check(epoll_wait(ep, out, 4, 0) == 0, "epoll_wait: edge fired once");
    check(write(p[1], "yz", 2) == 2, "write the pipe again");
    n = epoll_wait(ep, out, 4, 1000);
    check(n == 1 && out[0].data.u64 == 0x1122334455667788ULL, "epoll_wait: pipe, 64-bit data");
    e.events = EPOLLOUT;
    e.data.fd = p[0];
    check(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e) == 0, "epoll_ctl MOD pipe to EPOLLOUT");
    check(epoll_wait(ep, out, 4, 0) == 0, "epoll_wait: read end never writable");
    check(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == 0, "epoll_ctl DEL");
    check(write(ev, &one, 8) == 8, "write the eventfd again");
    n = epoll_pwait(ep, out, 4, 1000, &none);
    check(n == 1 && out[0].data.u64 == 42, "epoll_pwait: eventfd");
    check(epoll_ctl(ep, EPOLL_CTL_DEL, ev, NULL) == 0, "epoll_ctl DEL eventfd");
    check(epoll_wait(ep, out, 4, 20) == 0, "epoll_wait 20 ms: nothing registered");
    close(ep);
    close(ev);
    close(p[0]);
    close(p[1]);
    return corpus_verdict();
}
