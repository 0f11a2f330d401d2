/* rlimits: getrlimit/setrlimit/prlimit on NOFILE, CORE, STACK, AS, and their effect (an fd past
 * the soft limit). Values inherited from the caller are never printed, only relations. */
#include "corpus.h"
#include <sys/resource.h>

int main(int argc, char **argv)
{
    struct rlimit r, old, now;
    corpus_enter(argc, argv);
    check(getrlimit(RLIMIT_NOFILE, &old) == 0 && old.rlim_cur <= old.rlim_max, "getrlimit NOFILE: soft <= hard");
    r.rlim_cur = 64;
    r.rlim_max = old.rlim_max;
    check(setrlimit(RLIMIT_NOFILE, &r) == 0, "setrlimit NOFILE soft 64");
    check(getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == 64 && now.rlim_max == old.rlim_max,
          "getrlimit NOFILE reads 64 back");
    check(dup2(0, 100) < 0 && errno == EBADF, "dup2 to fd 100 past the limit: EBADF");
    check(fcntl(0, F_DUPFD, 64) < 0 && errno == EINVAL, "F_DUPFD 64 past the limit: EINVAL");
    check(prlimit(0, RLIMIT_NOFILE, &old, &now) == 0 && now.rlim_cur == 64, "prlimit set back, old value 64");
    check(getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == old.rlim_cur, "restored");
    check(prlimit(getpid(), RLIMIT_STACK, NULL, &now) == 0 && now.rlim_cur <= now.rlim_max, "prlimit STACK by pid");
    r.rlim_cur = 0;
    check(getrlimit(RLIMIT_CORE, &old) == 0, "getrlimit CORE");
    r.rlim_max = old.rlim_max;
    check(setrlimit(RLIMIT_CORE, &r) == 0 && getrlimit(RLIMIT_CORE, &now) == 0 && now.rlim_cur == 0, "CORE soft 0");
    check(getrlimit(RLIMIT_AS, &now) == 0 && now.rlim_cur <= now.rlim_max, "getrlimit AS");
    note("AS infinite: %s", now.rlim_cur == RLIM_INFINITY ? "yes" : "no");
    r.rlim_cur = r.rlim_max = 0;
    check(setrlimit(RLIMIT_NOFILE, &(struct rlimit){10, 5}) < 0 && errno == EINVAL, "soft > hard: EINVAL");
    check(getrlimit(99, &now) < 0 && errno == EINVAL, "unknown resource: EINVAL");
    struct rusage ru;
    check(getrusage(RUSAGE_SELF, &ru) == 0 && getrusage(RUSAGE_CHILDREN, &ru) == 0 && ru.ru_utime.tv_sec == 0,
          "getrusage self and children");
    return corpus_verdict();
}
