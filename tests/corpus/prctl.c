/* prctl: PR_GET/SET_PDEATHSIG, PR_SET/GET_NAME (and /proc/self/comm), PR_GET_DUMPABLE,
 * PR_SET/GET_CHILD_SUBREAPER, PR_GET_TIMERSLACK, PR_GET_KEEPCAPS, an unknown option. */
#include "corpus.h"
#include <signal.h>
#include <sys/prctl.h>

int main(int argc, char **argv)
{
    int v = -1;
    char name[32], comm[32];
    corpus_enter(argc, argv);
    check(prctl(PR_GET_PDEATHSIG, &v) == 0 && v == 0, "PR_GET_PDEATHSIG: 0");
    check(prctl(PR_SET_PDEATHSIG, SIGUSR1) == 0 && prctl(PR_GET_PDEATHSIG, &v) == 0 && v == SIGUSR1,
          "PR_SET_PDEATHSIG SIGUSR1 reads back");
    check(prctl(PR_SET_PDEATHSIG, 0) == 0, "PR_SET_PDEATHSIG 0");
    check(prctl(PR_SET_NAME, "corpus-prctl") == 0, "PR_SET_NAME corpus-prctl");
    memset(name, 0, sizeof name);
    check(prctl(PR_GET_NAME, name) == 0 && !strcmp(name, "corpus-prctl"), "PR_GET_NAME reads it back");
    int fd = open("/proc/self/comm", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, comm, sizeof comm - 1) : -1;
    comm[n > 0 ? n : 0] = 0;
    close(fd);
    check(!strcmp(comm, "corpus-prctl\n"), "/proc/self/comm agrees");
    check(prctl(PR_SET_NAME, "a-name-longer-than-sixteen") == 0 && prctl(PR_GET_NAME, name) == 0 &&
          !strcmp(name, "a-name-longer-t"), "PR_SET_NAME truncates to 15");
    note("PR_GET_DUMPABLE: %d", prctl(PR_GET_DUMPABLE));
    check(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 && prctl(PR_GET_CHILD_SUBREAPER, &v) == 0 && v == 1,
          "PR_SET/GET_CHILD_SUBREAPER");
    check(prctl(PR_SET_CHILD_SUBREAPER, 0) == 0, "PR_SET_CHILD_SUBREAPER 0");
    check(prctl(PR_GET_TIMERSLACK) > 0, "PR_GET_TIMERSLACK > 0");
    check(prctl(PR_GET_KEEPCAPS) == 0, "PR_GET_KEEPCAPS: 0");
    check(prctl(9999) < 0 && errno == EINVAL, "unknown option: EINVAL");
    return corpus_verdict();
}
