/* What a program does inside its own world, which must behave under mvx as natively: files it
 * creates (O_EXCL), writes and reads back, renames and deletes; a temporary file written then read
 * with pread (lighttpd's mod_deflate cache); its own pipe written then spliced; a socketpair and an
 * eventfd; its identities (pid == tid, /proc/self/task/TID, /proc/PID, kill/tgkill of itself with
 * signal 0) and no parent-death signal. Prints one deterministic line per check and "done". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;

static void check(const char *what, int ok) {
    printf("%s: %s\n", what, ok ? "ok" : "FAILED");
    fflush(stdout);
    if (!ok)
        failures++;
}

int main(void) {
    char buf[4096], back[4096];
    for (int i = 0; i < (int)sizeof buf; i++)
        buf[i] = (char)('a' + i % 26);

    int fd = open("dummy.txt", O_RDWR | O_CREAT | O_EXCL, 0600);
    check("create dummy.txt with O_EXCL", fd >= 0);
    check("write 1294 bytes", write(fd, buf, 1294) == 1294);
    check("pread them back", pread(fd, back, sizeof back, 0) == 1294 && memcmp(buf, back, 1294) == 0);
    close(fd);
    check("create it again fails with EEXIST", open("dummy.txt", O_RDWR | O_CREAT | O_EXCL, 0600) < 0);
    check("rename", rename("dummy.txt", "renamed.txt") == 0);
    struct stat st;
    check("stat the renamed file", stat("renamed.txt", &st) == 0 && st.st_size == 1294);
    check("unlink", unlink("renamed.txt") == 0);
    check("gone", stat("renamed.txt", &st) < 0);

    char tmpl[] = "cache-XXXXXX";
    int t = mkstemp(tmpl);
    check("mkstemp", t >= 0);
    check("write the temp file", write(t, buf + 7, 1294) == 1294);
    check("pread the temp file", pread(t, back, 1294, 0) == 1294 && memcmp(buf + 7, back, 1294) == 0);
    close(t);
    unlink(tmpl);

    int p[2], q[2];
    check("pipe", pipe(p) == 0 && pipe(q) == 0);
    check("write into its own pipe", write(p[1], "through the pipe", 16) == 16);
    check("splice out of it", splice(p[0], NULL, q[1], NULL, 16, 0) == 16);
    check("read what was spliced", read(q[0], back, sizeof back) == 16 && memcmp(back, "through the pipe", 16) == 0);

    int sv[2];
    check("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    check("send on it", write(sv[0], "pair", 4) == 4);
    check("receive on the other end", recv(sv[1], back, sizeof back, 0) == 4 && memcmp(back, "pair", 4) == 0);

    int e = eventfd(0, 0);
    unsigned long long one = 5, got = 0;
    check("eventfd write", write(e, &one, 8) == 8);
    check("eventfd read", read(e, &got, 8) == 8 && got == 5);

    pid_t pid = getpid(), tid = (pid_t)syscall(SYS_gettid);
    check("pid == tid", pid == tid);
    snprintf(back, sizeof back, "/proc/self/task/%d/comm", tid);
    int c = open(back, O_RDONLY);
    ssize_t n = c >= 0 ? read(c, buf, sizeof buf - 1) : -1;
    check("read /proc/self/task/TID/comm", n > 0 && strncmp(buf, "own_world", 9) == 0);
    snprintf(back, sizeof back, "/proc/%d/stat", pid);
    check("/proc/PID is this process", stat(back, &st) == 0);
    check("kill(self, 0)", kill(pid, 0) == 0);
    check("tgkill(self, self, 0)", syscall(SYS_tgkill, pid, tid, 0) == 0);
    int sig = -1;
    check("no parent-death signal", prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == 0);
    printf("done: %d failed\n", failures);
    return failures ? 1 : 0;
}
