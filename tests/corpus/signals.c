/* signals: sigaction with SA_SIGINFO, raise, kill self, sigprocmask and sigpending (standard
 * signals merge), sigqueue of real-time signals (queued, in order, with values), sigtimedwait,
 * signalfd read, sigaltstack. Handlers only count and record; the checks print counts. */
#include "corpus.h"
#include <signal.h>
#include <sys/signalfd.h>

static volatile sig_atomic_t usr1, usr2, rt, last_code, last_pid_ok, rt_order_ok = 1, rt_next = 1;

static void handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    last_code = si->si_code;
    last_pid_ok = (si->si_code != SI_USER && si->si_code != SI_QUEUE && si->si_code != SI_TKILL) ||
                  si->si_pid == getpid();
    if (sig == SIGUSR1)
        usr1++;
    else if (sig == SIGUSR2)
        usr2++;
    else if (sig == SIGRTMIN) {
        rt++;
        if (si->si_value.sival_int != rt_next)
            rt_order_ok = 0;
        rt_next++;
    }
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    sigset_t set, old, pend;
    corpus_enter(argc, argv);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    check(sigaction(SIGUSR1, &sa, NULL) == 0 && sigaction(SIGUSR2, &sa, NULL) == 0 &&
          sigaction(SIGRTMIN, &sa, NULL) == 0, "sigaction USR1 USR2 RTMIN");
    struct sigaction back;
    check(sigaction(SIGUSR1, NULL, &back) == 0 && back.sa_sigaction == handler && (back.sa_flags & SA_SIGINFO),
          "sigaction reads back");

    check(raise(SIGUSR1) == 0 && usr1 == 1 && last_code == SI_TKILL && last_pid_ok, "raise SIGUSR1: handled, SI_TKILL");
    check(kill(getpid(), SIGUSR2) == 0 && usr2 == 1 && last_code == SI_USER && last_pid_ok,
          "kill self SIGUSR2: handled, SI_USER, si_pid is self");

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN);
    check(sigprocmask(SIG_BLOCK, &set, &old) == 0, "sigprocmask block USR1 RTMIN");
    check(raise(SIGUSR1) == 0 && raise(SIGUSR1) == 0 && usr1 == 1, "raise twice while blocked: not handled");
    union sigval v;
    for (int i = 1; i <= 3; i++) {
        v.sival_int = i;
        sigqueue(getpid(), SIGRTMIN, v);
    }
    check(rt == 0, "sigqueue RTMIN x3 while blocked: not handled");
    check(sigpending(&pend) == 0 && sigismember(&pend, SIGUSR1) && sigismember(&pend, SIGRTMIN), "sigpending");
    check(sigprocmask(SIG_SETMASK, &old, NULL) == 0, "sigprocmask unblock");
    note("SIGUSR1 handled: %d", (int)usr1);
    note("SIGRTMIN handled: %d", (int)rt);
    check(usr1 == 2, "standard signal merged: one more SIGUSR1");
    check(rt == 3 && rt_order_ok, "real-time signals queued: 3, values 1 2 3 in order");

    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    check(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "block RTMIN+1");
    v.sival_int = 77;
    check(sigqueue(getpid(), SIGRTMIN + 1, v) == 0, "sigqueue RTMIN+1 value 77");
    siginfo_t si;
    struct timespec ts = {1, 0};
    check(sigtimedwait(&set, &si, &ts) == SIGRTMIN + 1 && si.si_value.sival_int == 77 && si.si_pid == getpid(),
          "sigtimedwait: RTMIN+1, value 77");
    ts.tv_sec = 0;
    ts.tv_nsec = 10000000;
    check(sigtimedwait(&set, &si, &ts) < 0 && errno == EAGAIN, "sigtimedwait again: EAGAIN");

    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN + 2);
    check(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "block USR2 RTMIN+2");
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    check(sfd >= 0, "signalfd");
    struct signalfd_siginfo fi;
    check(read(sfd, &fi, sizeof fi) < 0 && errno == EAGAIN, "signalfd read, none: EAGAIN");
    check(kill(getpid(), SIGUSR2) == 0, "kill self SIGUSR2");
    v.sival_int = 5;
    check(sigqueue(getpid(), SIGRTMIN + 2, v) == 0, "sigqueue RTMIN+2 value 5");
    check(read(sfd, &fi, sizeof fi) == sizeof fi && fi.ssi_signo == SIGUSR2 && (pid_t)fi.ssi_pid == getpid() &&
          fi.ssi_code == SI_USER, "signalfd read: SIGUSR2 from self");
    check(read(sfd, &fi, sizeof fi) == sizeof fi && fi.ssi_signo == (uint32_t)SIGRTMIN + 2 && fi.ssi_int == 5 &&
          fi.ssi_code == SI_QUEUE, "signalfd read: RTMIN+2 value 5");
    check(usr2 == 1, "SIGUSR2 handler not run for signalfd");
    close(sfd);

    stack_t ss = {.ss_sp = malloc(SIGSTKSZ * 2), .ss_size = SIGSTKSZ * 2, .ss_flags = 0}, oss;
    check(sigaltstack(&ss, &oss) == 0 && oss.ss_flags == SS_DISABLE, "sigaltstack");
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    check(sigaction(SIGUSR1, &sa, NULL) == 0 && raise(SIGUSR1) == 0 && usr1 == 3, "handler on the alternate stack");
    check(sigaction(SIGUSR1, NULL, &back) == 0 && back.sa_handler == SIG_DFL, "SA_RESETHAND reset it");
    signal(SIGUSR1, SIG_IGN);
    check(raise(SIGUSR1) == 0 && usr1 == 3, "ignored SIGUSR1");
    return corpus_verdict();
}
