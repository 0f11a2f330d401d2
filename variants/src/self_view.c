/* What a program can see of its own process: prctl state, open fds, rlimits, environment, signal
 * dispositions and mask, umask. Under mvx every line must be what the same program prints natively
 * (mvx invisible), the follower's too (its writes are compared with the leader's). */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

int main(void) {
    int sig = -1;
    prctl(PR_GET_PDEATHSIG, &sig);
    printf("pdeathsig %d\n", sig);
    printf("dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    printf("no_new_privs %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    printf("child_subreaper ");
    int sub = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &sub);
    printf("%d\n", sub);
    printf("keepcaps %d\n", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
    printf("fds");
    DIR *d = opendir("/proc/self/fd");
    int me = dirfd(d);
    struct dirent *e;
    int fds[64], n = 0;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.' && atoi(e->d_name) != me)
            fds[n++] = atoi(e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)         /* readdir order is the kernel's: sort */
        for (int j = i + 1; j < n; j++)
            if (fds[j] < fds[i]) { int t = fds[i]; fds[i] = fds[j]; fds[j] = t; }
    for (int i = 0; i < n; i++)
        printf(" %d", fds[i]);
    printf("\n");
    static const int limits[] = {RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NOFILE,
                                 RLIMIT_AS, RLIMIT_NPROC, RLIMIT_MEMLOCK, RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE,
                                 RLIMIT_NICE, RLIMIT_RTPRIO};
    for (unsigned i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct rlimit r;
        getrlimit(limits[i], &r);
        printf("rlimit %d %lld %lld\n", limits[i], (long long)(r.rlim_cur == RLIM_INFINITY ? -1 : (long long)r.rlim_cur),
               (long long)(r.rlim_max == RLIM_INFINITY ? -1 : (long long)r.rlim_max));
    }
    for (char **v = environ; *v; v++)
        printf("env %s\n", *v);
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    printf("blocked");
    for (int s = 1; s < 65; s++)
        if (sigismember(&mask, s) == 1)
            printf(" %d", s);
    printf("\nnot default");
    for (int s = 1; s < 65; s++) {
        struct sigaction sa;
        if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL)
            printf(" %d", s);
    }
    mode_t um = umask(022);
    printf("\numask %03o\n", (unsigned)um);
    return 0;
}
