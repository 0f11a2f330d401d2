/* ids: getpid, gettid, getppid, getuid/geteuid/getgid/getegid, getresuid/getresgid, getgroups,
 * getpgid/getpgrp/getsid, and what /proc says about the same process (/proc/self link,
 * /proc/self/stat, /proc/self/task/TID/comm, /proc/self/status). Only relations are printed. */
#include "corpus.h"
#include <grp.h>
#include <sys/syscall.h>

static int read_file(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    buf[r > 0 ? r : 0] = 0;
    return (int)r;
}

int main(int argc, char **argv)
{
    char buf[4096], path[96];
    corpus_enter(argc, argv);
    pid_t pid = getpid(), tid = gettid();
    note("pid==tid: %s", pid == tid ? "yes" : "no");
    check(pid == tid, "pid==tid");
    check(syscall(SYS_gettid) == tid, "raw gettid agrees");
    check(getppid() > 0 && getppid() != pid, "ppid is another process");
    check(getpid() == pid, "getpid twice agrees");
    uid_t r, e, s;
    gid_t gr, ge, gs;
    check(getresuid(&r, &e, &s) == 0 && r == getuid() && e == geteuid(), "getresuid agrees with getuid/geteuid");
    check(getresgid(&gr, &ge, &gs) == 0 && gr == getgid() && ge == getegid(), "getresgid agrees with getgid/getegid");
    int ng = getgroups(0, NULL);
    gid_t groups[256];
    check(ng >= 0 && ng <= 256 && getgroups(ng, groups) == ng, "getgroups count then list");
    check(getpgid(0) == getpgrp() && getpgid(pid) == getpgrp(), "getpgid(0)==getpgid(pid)==getpgrp()");
    check(getsid(0) > 0 && getsid(pid) == getsid(0), "getsid");

    ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    check(atoi(buf) == pid, "/proc/self names getpid()");
    check(read_file("/proc/self/stat", buf, sizeof buf) > 0 && atoi(buf) == pid, "/proc/self/stat pid field");
    char *cp = strrchr(buf, ')');
    int ppid = 0;
    check(cp && sscanf(cp + 2, "%*c %d", &ppid) == 1 && ppid == getppid(), "/proc/self/stat ppid field");
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    check(read_file(path, buf, sizeof buf) > 0, "read /proc/self/task/TID/comm");
    buf[strcspn(buf, "\n")] = 0;
    note("comm: %s", buf);
    check(read_file("/proc/self/status", buf, sizeof buf) > 0, "read /proc/self/status");
    char *t = strstr(buf, "\nTgid:");
    check(t && atoi(t + 6) == pid, "/proc/self/status Tgid is getpid()");
    t = strstr(buf, "\nUid:");
    check(t && (uid_t)atoi(t + 5) == getuid(), "/proc/self/status Uid is getuid()");
    return corpus_verdict();
}
