/* timers: clock_gettime on every usual clock, clock_getres, gettimeofday, time, times, getrusage,
 * nanosleep and clock_nanosleep, timerfd (settime, gettime, read expirations). Only relations
 * between readings are printed. (setitimer/alarm, which deliver a signal: itimer.c) */
#include "corpus.h"
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/times.h>
#include <time.h>

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

int main(int argc, char **argv)
{
    struct timespec t0, t1, res;
    corpus_enter(argc, argv);
    static const struct { clockid_t id; const char *name; } clocks[] = {
        {CLOCK_REALTIME, "CLOCK_REALTIME"}, {CLOCK_MONOTONIC, "CLOCK_MONOTONIC"},
        {CLOCK_BOOTTIME, "CLOCK_BOOTTIME"}, {CLOCK_MONOTONIC_COARSE, "CLOCK_MONOTONIC_COARSE"},
        {CLOCK_PROCESS_CPUTIME_ID, "CLOCK_PROCESS_CPUTIME_ID"}, {CLOCK_THREAD_CPUTIME_ID, "CLOCK_THREAD_CPUTIME_ID"}};
    char what[80];
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        snprintf(what, sizeof what, "clock_gettime %s", clocks[i].name);
        check(clock_gettime(clocks[i].id, &t0) == 0 && t0.tv_nsec >= 0 && t0.tv_nsec < 1000000000, what);
    }
    check(clock_getres(CLOCK_MONOTONIC, &res) == 0 && ns(&res) > 0 && ns(&res) <= 1000000, "clock_getres <= 1 ms");
    struct timeval tv;
    check(gettimeofday(&tv, NULL) == 0 && tv.tv_sec > 1600000000, "gettimeofday after 2020");
    time_t now = time(NULL);
    /* time() reads the coarse clock, up to a tick behind gettimeofday's: across a second boundary it
     * can say the second before */
    check(now > 1600000000 && now - tv.tv_sec >= -1 && now - tv.tv_sec < 5, "time agrees with gettimeofday");
    struct tms tm;
    check(times(&tm) != (clock_t)-1, "times");
    struct rusage ru;
    check(getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0, "getrusage");

    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct timespec d = {0, 10000000}, rem;
    check(nanosleep(&d, &rem) == 0, "nanosleep 10 ms");
    d.tv_nsec = 5000000;
    check(clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL) == 0, "clock_nanosleep 5 ms");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    check(ns(&t1) - ns(&t0) >= 15000000, "monotonic advanced >= 15 ms");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    t0.tv_nsec += 5000000;
    if (t0.tv_nsec >= 1000000000) { t0.tv_sec++; t0.tv_nsec -= 1000000000; }
    check(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t0, NULL) == 0, "clock_nanosleep absolute");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    check(ns(&t1) >= ns(&t0), "woke after the absolute deadline");

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    check(tfd >= 0, "timerfd_create");
    struct itimerspec its = {{0, 0}, {0, 30000000}}, cur;
    check(timerfd_settime(tfd, 0, &its, NULL) == 0, "timerfd_settime 30 ms");
    check(timerfd_gettime(tfd, &cur) == 0 && ns(&cur.it_value) > 0 && ns(&cur.it_value) <= 30000000,
          "timerfd_gettime: 0 < left <= 30 ms");
    uint64_t exp = 0;
    check(read(tfd, &exp, 8) == 8 && exp == 1, "timerfd read: 1 expiration");
    /* Under mvx a follower's read of its own timerfd gets the leader's result without waiting, so
     * its timer may not have fired yet here: let every variant's timer fire before asking for the
     * old value (the check is about settime's old value, not about that race). */
    d.tv_nsec = 40000000;
    nanosleep(&d, NULL);
    struct itimerspec per = {{0, 5000000}, {0, 5000000}};
    check(timerfd_settime(tfd, 0, &per, &cur) == 0 && ns(&cur.it_value) == 0, "timerfd periodic, old disarmed");
    check(read(tfd, &exp, 8) == 8 && exp >= 1, "timerfd periodic read");
    its.it_value.tv_nsec = 0;
    check(timerfd_settime(tfd, 0, &its, NULL) == 0 && timerfd_gettime(tfd, &cur) == 0 && ns(&cur.it_value) == 0,
          "timerfd disarm");
    close(tfd);

    return corpus_verdict();
}
