/* itimer: setitimer/getitimer (ITIMER_REAL with a SIGALRM handler, waited for with sigsuspend;
 * ITIMER_VIRTUAL armed and read back), alarm. Only relations between readings are printed. */
#include "corpus.h"
#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

int main(int argc, char **argv)
{
    corpus_enter(argc, argv);
    struct itimerval v = {{0, 0}, {5, 0}}, vgot;
    check(setitimer(ITIMER_VIRTUAL, &v, NULL) == 0, "setitimer ITIMER_VIRTUAL 5 s");
    check(getitimer(ITIMER_VIRTUAL, &vgot) == 0 && vgot.it_value.tv_sec <= 5 &&
          (vgot.it_value.tv_sec > 0 || vgot.it_value.tv_usec > 0), "getitimer ITIMER_VIRTUAL: armed, <= 5 s");
    v.it_value.tv_sec = 0;
    check(setitimer(ITIMER_VIRTUAL, &v, &vgot) == 0 && vgot.it_value.tv_sec <= 5, "ITIMER_VIRTUAL disarmed, old value");
    check(alarm(10) == 0 && alarm(0) >= 9, "alarm set and cancelled");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    check(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction SIGALRM");
    struct itimerval it = {{0, 0}, {0, 30000}}, got;
    check(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer ITIMER_REAL 30 ms");
    check(getitimer(ITIMER_REAL, &got) == 0 && got.it_value.tv_usec > 0 && got.it_value.tv_usec <= 30000,
          "getitimer: 0 < left <= 30 ms");
    sigset_t empty;
    sigemptyset(&empty);
    while (!alarms)
        sigsuspend(&empty);
    check(alarms == 1, "SIGALRM handled once");
    check(getitimer(ITIMER_REAL, &got) == 0 && got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0,
          "getitimer: disarmed after it fired");
    return corpus_verdict();
}
