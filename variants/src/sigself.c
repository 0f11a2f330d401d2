/*
 * sigself: signals a program sends itself, each taken exactly once, where it is sent.
 *
 *   sigself rt | raise | signalfd | sfdepoll | pending | sigwait | pipe | pipekill | outside |
 *           suspend | pause | alarm | sfdoutside | waitoutside
 *
 *   rt        sigqueue()s each real-time signal SIGRTMIN..SIGRTMAX to itself once, with a value;
 *             an SA_SIGINFO handler counts them and checks si_code == SI_QUEUE, si_value and
 *             si_pid == getpid(); each must have been handled before sigqueue returned.
 *   raise     raise(SIGUSR1) and kill(getpid(), SIGUSR1) three times each; the handler must have
 *             run exactly once more when each returns (si_code SI_TKILL / SI_USER, si_pid).
 *   signalfd  SIGUSR2 and SIGRTMIN blocked and read through a signalfd after raise()/sigqueue().
 *   sfdepoll  a blocked SIGUSR2, raised, seen ready through a signalfd in an epoll set, then read.
 *   pending   SIGUSR1 (raised twice: merged) and SIGRTMIN (queued twice) blocked, pending across
 *             output calls, listed by sigpending, then delivered when sigprocmask unblocks them.
 *   sigwait   blocked SIGUSR1 and SIGRTMIN+1 taken by sigtimedwait and sigwaitinfo; a third
 *             sigtimedwait finds none (EAGAIN); unblocking then runs no handler.
 *   pipe      writes to a pipe whose reader is gone: EPIPE, and SIGPIPE handled once by the next
 *             blocking call (a read of the empty stdin; natively at the write itself).
 *   pipekill  the same without a handler: killed by SIGPIPE at the write, nothing printed after.
 *   outside   writes "ready", then waits for one SIGUSR1 from outside, in a loop that unblocks
 *             it while it computes and blocks it around a getpid(): the signal may come while
 *             unblocked and find it blocked at the next call (mvx delivers it there), or come
 *             while blocked; either way it is handled once, at an unblock.
 *   suspend   writes "ready", blocks SIGUSR1 (its handler has SA_RESTART) and waits for one from
 *             outside in sigsuspend with an empty mask: handled once, sigsuspend fails with EINTR.
 *   pause     alarm(1), then pause() until SIGALRM (a handler without SA_RESTART): handled once,
 *             pause fails with EINTR.
 *   alarm     alarm(1) then pause() with SIGALRM's default action: killed by SIGALRM.
 *   sfdoutside  writes "ready" with SIGUSR1 blocked, waits in poll() until a signalfd has one from
 *             outside, and reads it there (once, no handler).
 *   waitoutside  the same, taken by sigwaitinfo.
 *
 * Every line is the same natively on every ISA (nothing printed depends on a pid or a time);
 * it ends with "verdict: pass" or "verdict: FAIL" and exits 0 or 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t count[_NSIG];
static volatile sig_atomic_t bad;   /* a handler saw a siginfo it did not expect */
static volatile int want_code;      /* the si_code the next handled signal must have */
static pid_t me;
static int failed;

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    count[sig]++;
    if (si->si_signo != sig || si->si_code != want_code || si->si_pid != me)
        bad++;
    if (si->si_code == SI_QUEUE && si->si_value.sival_int != sig * 10)
        bad++;
}

static void handle(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0) {
        perror("sigaction");
        exit(2);
    }
}

static void check(int ok, const char *what)
{
    printf("%s: %s\n", what, ok ? "ok" : "WRONG");
    fflush(stdout);  /* an output call between the steps */
    if (!ok)
        failed = 1;
}

static void block(int how, int a, int b)
{
    sigset_t set;
    sigemptyset(&set);
    if (a)
        sigaddset(&set, a);
    if (b)
        sigaddset(&set, b);
    if (sigprocmask(how, &set, NULL) < 0) {
        perror("sigprocmask");
        exit(2);
    }
}

static int queue(int sig)
{
    union sigval v = {.sival_int = sig * 10};
    return sigqueue(getpid(), sig, v);
}

static void rt(void)
{
    int late = 0, n = 0;
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
        handle(s);
    want_code = SI_QUEUE;
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++, n++) {
        if (queue(s) < 0) {
            perror("sigqueue");
            exit(2);
        }
        if (count[s] != 1)
            late++;
    }
    int total = 0, twice = 0;
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++) {
        total += count[s];
        twice += count[s] > 1;
    }
    printf("real-time signals sent %d, handled %d, twice %d, late %d, bad siginfo %d\n", n, total, twice, late,
           (int)bad);
    check(total == n && !twice && !late && !bad, "each real-time signal once, before sigqueue returned");
}

static void raise_and_kill(void)
{
    handle(SIGUSR1);
    for (int i = 1; i <= 3; i++) {
        want_code = SI_TKILL;
        raise(SIGUSR1);
        printf("after raise %d: handled %d\n", i, (int)count[SIGUSR1]);
    }
    for (int i = 1; i <= 3; i++) {
        want_code = SI_USER;
        kill(getpid(), SIGUSR1);
        printf("after kill %d: handled %d\n", i, (int)count[SIGUSR1]);
    }
    check(count[SIGUSR1] == 6 && !bad, "each raise and kill handled once, before it returned");
}

static void via_signalfd(void)
{
    int rtmin = SIGRTMIN;
    handle(SIGUSR2);
    handle(rtmin);
    block(SIG_BLOCK, SIGUSR2, rtmin);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, rtmin);
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0) {
        perror("signalfd");
        exit(2);
    }
    raise(SIGUSR2);
    queue(rtmin);
    struct signalfd_siginfo si[4];
    ssize_t got = read(fd, si, sizeof si);
    int n = got < 0 ? -1 : (int)(got / sizeof si[0]);
    printf("signalfd read %d\n", n);
    for (int i = 0; i < n; i++) {
        int sig = (int)si[i].ssi_signo;
        printf("  %s code %s value %d from self %s\n", sig == SIGUSR2 ? "SIGUSR2" : sig == rtmin ? "SIGRTMIN" : "?",
               si[i].ssi_code == SI_TKILL ? "SI_TKILL" : si[i].ssi_code == SI_QUEUE ? "SI_QUEUE" : "other",
               si[i].ssi_code == SI_QUEUE ? si[i].ssi_int : 0, (pid_t)si[i].ssi_pid == me ? "yes" : "no");
    }
    block(SIG_UNBLOCK, SIGUSR2, rtmin);
    check(n == 2 && count[SIGUSR2] == 0 && count[rtmin] == 0, "both read from the signalfd, no handler ran");
    close(fd);
}

static void sfd_epoll(void)
{
    block(SIG_BLOCK, SIGUSR2, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
    if (fd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        perror("signalfd/epoll");
        exit(2);
    }
    raise(SIGUSR2);
    struct epoll_event out = {0};
    int n = epoll_wait(ep, &out, 1, 2000);
    printf("epoll_wait %d data %u\n", n, n > 0 ? out.data.u32 : 0);
    struct signalfd_siginfo si;
    ssize_t got = read(fd, &si, sizeof si);
    printf("read %d %s\n", (int)got, si.ssi_signo == SIGUSR2 ? "SIGUSR2" : "?");
    check(n == 1 && out.data.u32 == 7 && got == sizeof si, "the signalfd is ready in the epoll set");
}

static void pending(void)
{
    int rtmin = SIGRTMIN;
    handle(SIGUSR1);
    handle(rtmin);
    block(SIG_BLOCK, SIGUSR1, rtmin);
    want_code = SI_TKILL;
    raise(SIGUSR1);
    raise(SIGUSR1);
    printf("raised SIGUSR1 twice while blocked: handled %d\n", (int)count[SIGUSR1]);
    fflush(stdout);
    queue(rtmin);
    queue(rtmin);
    printf("queued SIGRTMIN twice while blocked: handled %d\n", (int)count[rtmin]);
    fflush(stdout);
    sigset_t set;
    sigpending(&set);
    printf("pending: SIGUSR1 %d SIGRTMIN %d SIGUSR2 %d\n", sigismember(&set, SIGUSR1), sigismember(&set, rtmin),
           sigismember(&set, SIGUSR2));
    fflush(stdout);
    want_code = SI_TKILL;
    block(SIG_UNBLOCK, SIGUSR1, 0);
    printf("unblocked SIGUSR1: handled %d\n", (int)count[SIGUSR1]);
    want_code = SI_QUEUE;
    block(SIG_UNBLOCK, rtmin, 0);
    printf("unblocked SIGRTMIN: handled %d\n", (int)count[rtmin]);
    check(count[SIGUSR1] == 1 && count[rtmin] == 2 && !bad, "merged, queued, delivered at the unblock");
}

static void sigwait_(void)
{
    int rt1 = SIGRTMIN + 1;
    handle(SIGUSR1);
    handle(rt1);
    block(SIG_BLOCK, SIGUSR1, rt1);
    raise(SIGUSR1);
    queue(rt1);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    siginfo_t si;
    struct timespec ts = {5, 0};
    int a = sigtimedwait(&set, &si, &ts);
    printf("sigtimedwait: %s code %d self %s\n", a == SIGUSR1 ? "SIGUSR1" : "other", si.si_code,
           si.si_pid == me ? "yes" : "no");
    sigemptyset(&set);
    sigaddset(&set, rt1);
    int b = sigwaitinfo(&set, &si);
    printf("sigwaitinfo: %s code %s value %d self %s\n", b == rt1 ? "SIGRTMIN+1" : "other",
           si.si_code == SI_QUEUE ? "SI_QUEUE" : "other", si.si_value.sival_int, si.si_pid == me ? "yes" : "no");
    sigaddset(&set, SIGUSR1);
    struct timespec zero = {0, 0};
    int c = sigtimedwait(&set, &si, &zero);
    printf("sigtimedwait again: %s\n", c < 0 && errno == EAGAIN ? "EAGAIN" : "a signal");
    block(SIG_UNBLOCK, SIGUSR1, rt1);
    printf("unblocked: handled %d %d\n", (int)count[SIGUSR1], (int)count[rt1]);
    check(a == SIGUSR1 && b == rt1 && c < 0 && count[SIGUSR1] == 0 && count[rt1] == 0, "each taken once by a wait");
}

static void on_pipe(int sig)
{
    count[sig]++;
}

static void pipe_(int with_handler)
{
    if (with_handler) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_pipe;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
    int p[2];
    if (pipe(p) < 0) {
        perror("pipe");
        exit(2);
    }
    close(p[0]);
    printf("writing to a pipe without a reader\n");
    fflush(stdout);
    ssize_t r = write(p[1], "x", 1);
    int e = errno;
    char c;
    ssize_t in = read(0, &c, 1);  /* a blocking call: the input is empty */
    printf("write: %s, read %d, SIGPIPE handled %d\n", r < 0 && e == EPIPE ? "EPIPE" : "?", (int)in,
           (int)count[SIGPIPE]);
    check(r < 0 && e == EPIPE && count[SIGPIPE] == 1, "EPIPE and one SIGPIPE");
}

static void on_outside(int sig)
{
    count[sig]++;
}

static void outside(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_outside;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    block(SIG_BLOCK, SIGUSR1, 0);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 10000 && !count[SIGUSR1]; i++) {
        block(SIG_UNBLOCK, SIGUSR1, 0);
        for (volatile long spin = 0; spin < 1000000; spin++) {
        }
        block(SIG_BLOCK, SIGUSR1, 0);
        getpid();  /* a synced call with the signal blocked */
    }
    printf("handled %d\n", (int)count[SIGUSR1]);
    check(count[SIGUSR1] == 1, "one signal from outside, handled once");
}

static void on_wake(int sig)
{
    count[sig]++;
}

/* Wait for one SIGUSR1 from outside in sigsuspend; it is blocked until then (no race). */
static void suspend(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_wake;
    sa.sa_flags = SA_RESTART; /* sigsuspend is never restarted */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    block(SIG_BLOCK, SIGUSR1, 0);
    printf("ready\n");
    fflush(stdout);
    sigset_t empty;
    sigemptyset(&empty);
    int r = sigsuspend(&empty);
    int e = errno;
    printf("sigsuspend: %d %s, handled %d\n", r, e == EINTR ? "EINTR" : "?", (int)count[SIGUSR1]);
    check(r == -1 && e == EINTR && count[SIGUSR1] == 1, "woken by one signal from outside, handled once");
}

/* pause() until the program's own alarm: its handler runs once and pause fails with EINTR. */
static void pause_(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_wake;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    int r = pause();
    int e = errno;
    printf("pause: %d %s, handled %d\n", r, e == EINTR ? "EINTR" : "?", (int)count[SIGALRM]);
    check(r == -1 && e == EINTR && count[SIGALRM] == 1, "woken by the alarm, handled once");
}

static void alarm_(void)
{
    printf("alarm in 1 s, then pause\n");
    fflush(stdout);
    alarm(1);
    pause();
    printf("pause returned\n"); /* not reached: SIGALRM's default action ends the program */
}

/* One SIGUSR1 from outside, blocked, taken by a signalfd read after poll (0) or by sigwaitinfo (1). */
static void take_outside(int with_sigwait)
{
    block(SIG_BLOCK, SIGUSR1, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int sfd = with_sigwait ? -1 : signalfd(-1, &set, SFD_CLOEXEC);
    printf("ready\n");
    fflush(stdout);
    int got = 0, code = 99;
    if (with_sigwait) {
        siginfo_t si;
        got = sigwaitinfo(&set, &si);
        code = si.si_code;
    } else {
        struct pollfd pfd = {sfd, POLLIN, 0};
        int n = poll(&pfd, 1, -1);
        struct signalfd_siginfo ssi;
        if (n == 1 && read(sfd, &ssi, sizeof ssi) == (ssize_t)sizeof ssi) {
            got = (int)ssi.ssi_signo;
            code = ssi.ssi_code;
        }
    }
    printf("%s: signal %d, code %d\n", with_sigwait ? "sigwaitinfo" : "signalfd", got, code);
    check(got == SIGUSR1 && code == SI_USER, "one SIGUSR1 from outside, taken without a handler");
    sigset_t left;
    sigpending(&left);
    check(!sigismember(&left, SIGUSR1), "none left pending");
}

int main(int argc, char **argv)
{
    me = getpid();
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "rt"))
        rt();
    else if (!strcmp(what, "raise"))
        raise_and_kill();
    else if (!strcmp(what, "signalfd"))
        via_signalfd();
    else if (!strcmp(what, "sfdepoll"))
        sfd_epoll();
    else if (!strcmp(what, "pending"))
        pending();
    else if (!strcmp(what, "sigwait"))
        sigwait_();
    else if (!strcmp(what, "pipe"))
        pipe_(1);
    else if (!strcmp(what, "pipekill"))
        pipe_(0);
    else if (!strcmp(what, "outside"))
        outside();
    else if (!strcmp(what, "suspend"))
        suspend();
    else if (!strcmp(what, "pause"))
        pause_();
    else if (!strcmp(what, "alarm"))
        alarm_();
    else if (!strcmp(what, "sfdoutside"))
        take_outside(0);
    else if (!strcmp(what, "waitoutside"))
        take_outside(1);
    else {
        fprintf(stderr, "usage: sigself rt|raise|signalfd|sfdepoll|pending|sigwait|pipe|pipekill|outside|"
                        "suspend|pause|alarm|sfdoutside|waitoutside\n");
        return 2;
    }
    printf("verdict: %s\n", failed ? "FAIL" : "pass");
    return failed;
}
