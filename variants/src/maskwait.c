/* maskwait: waits that carry a signal mask of their own (epoll_pwait, ppoll, pselect6), other than
 * the one the program blocks; prints what each returned.
 *
 *   maskwait ready | taken
 *
 *   ready   SIGUSR1 blocked, an eventfd readable: epoll_pwait with an empty mask (and with the
 *           blocked mask, and none), ppoll and pselect with an empty mask each find it ready; no
 *           signal is pending, so none is taken.
 *   taken   SIGUSR1 blocked and raised (pending), nothing ready: each wait with an empty mask is
 *           interrupted at once (EINTR) and the handler runs exactly once, inside the wait; the
 *           program's own mask (SIGUSR1 blocked) is back after each.
 *
 * Every line is the same natively on every ISA; it ends with "verdict: pass" or "verdict: FAIL"
 * and exits 0 or 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static int failed;

static void on_usr1(int sig)
{
    (void)sig;
    handled++;
}

static void check(int ok, const char *what)
{
    printf("%s: %s\n", what, ok ? "ok" : "FAIL");
    fflush(stdout);
    if (!ok)
        failed = 1;
}

static int still_blocked(void)
{
    sigset_t now;
    return sigprocmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, SIGUSR1);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "ready") && strcmp(argv[1], "taken"))) {
        fprintf(stderr, "usage: maskwait ready|taken\n");
        return 2;
    }
    int taken = !strcmp(argv[1], "taken");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: these waits fail with EINTR anyway */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, none;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &usr1, NULL);

    int ev = eventfd(0, EFD_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 42};
    check(ev >= 0 && ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) == 0, "eventfd in an epoll set");
    struct epoll_event out[4];
    struct pollfd pf = {ev, POLLIN, 0};
    struct timespec ts = {1, 0};
    fd_set r;
    int n;

    if (!taken) {
        uint64_t one = 1;
        check(write(ev, &one, 8) == 8, "eventfd written");
        n = epoll_pwait(ep, out, 4, 1000, &none);
        check(n == 1 && out[0].data.u64 == 42 && out[0].events == EPOLLIN, "epoll_pwait, empty mask: ready");
        n = epoll_pwait(ep, out, 4, 1000, &usr1);
        check(n == 1 && out[0].data.u64 == 42, "epoll_pwait, the blocked mask: ready");
        n = epoll_pwait(ep, out, 4, 1000, NULL);
        check(n == 1 && out[0].data.u64 == 42, "epoll_pwait, no mask: ready");
        n = ppoll(&pf, 1, &ts, &none);
        check(n == 1 && pf.revents == POLLIN, "ppoll, empty mask: ready");
        FD_ZERO(&r);
        FD_SET(ev, &r);
        n = pselect(ev + 1, &r, NULL, NULL, &ts, &none);
        check(n == 1 && FD_ISSET(ev, &r), "pselect, empty mask: ready");
        check(handled == 0 && still_blocked(), "no signal taken, SIGUSR1 still blocked");
    } else {
        raise(SIGUSR1);
        check(handled == 0, "raised while blocked: pending");
        errno = 0;
        n = epoll_pwait(ep, out, 4, 1000, &none);
        check(n < 0 && errno == EINTR && handled == 1 && still_blocked(), "epoll_pwait, empty mask: EINTR, handled once");
        raise(SIGUSR1);
        errno = 0;
        n = ppoll(&pf, 1, &ts, &none);
        check(n < 0 && errno == EINTR && handled == 2 && still_blocked(), "ppoll, empty mask: EINTR, handled once");
        raise(SIGUSR1);
        FD_ZERO(&r);
        FD_SET(ev, &r);
        errno = 0;
        n = pselect(ev + 1, &r, NULL, NULL, &ts, &none);
        check(n < 0 && errno == EINTR && handled == 3 && still_blocked(), "pselect, empty mask: EINTR, handled once");
    }
    close(ep);
    close(ev);
    printf("verdict: %s\n", failed ? "FAIL" : "pass");
    return failed;
}
