/* fds passed to itself with SCM_RIGHTS over a socketpair of its own, which must behave under mvx as
 * natively (tests/test_world.py): what it receives is of its own world when what it sent was (a
 * pipe end closed before the receive, a pipe end received twice through MSG_PEEK, an end of another
 * socketpair), and of the leader's world when what it sent was (its stdout, sent with a pipe end
 * in one message; a /proc file, whose bytes differ per ISA). Plain syscalls, no stdio: one line per
 * check, "done" last; the exit status is the number of failed checks. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures, sv[2];

static void say(const char *s) {
    if (write(1, s, strlen(s)) < 0)
        failures++;
}

static void check(const char *what, int ok) {
    say(what);
    say(ok ? ": ok\n" : ": FAILED\n");
    if (!ok)
        failures++;
}

static int send_fds(const int *fds, int n) {
    union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {"x", 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    return sendmsg(sv[0], &m, 0) == 1;
}

/* the fds of one message (-1 where none came); MSG_PEEK leaves the message there */
static int recv_fds(int *fds, int n, int flags) {
    union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    char c;
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    if (recvmsg(sv[1], &m, flags) != 1)
        return 0;
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    if (!h || h->cmsg_type != SCM_RIGHTS || h->cmsg_len != CMSG_LEN(n * sizeof(int)))
        return 0;
    memcpy(fds, CMSG_DATA(h), n * sizeof(int));
    return 1;
}

int main(void) {
    char buf[64];
    int p[2], q[2], got[2];
    check("socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);

    /* a pipe's write end, closed before the receive: the received fd is its only write end */
    check("pipe", pipe(p) == 0);
    check("send its write end", send_fds(&p[1], 1));
    close(p[1]);
    check("receive it", recv_fds(got, 1, 0) && got[0] >= 0);
    check("write through it", write(got[0], "abc", 3) == 3);
    close(got[0]);
    check("read what was written, then EOF", read(p[0], buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0 &&
                                                  read(p[0], buf, sizeof buf) == 0);
    close(p[0]);

    /* received twice: MSG_PEEK installs the fds too */
    check("pipe again", pipe(p) == 0);
    check("send its write end again", send_fds(&p[1], 1));
    int peeked;
    check("peek at it", recv_fds(&peeked, 1, MSG_PEEK) && peeked >= 0);
    check("receive it", recv_fds(got, 1, 0) && got[0] >= 0 && got[0] != peeked);
    check("write through both", write(peeked, "12", 2) == 2 && write(got[0], "34", 2) == 2);
    close(peeked);
    close(got[0]);
    close(p[1]);
    check("read both, then EOF", read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "1234", 4) == 0 &&
                                     read(p[0], buf, sizeof buf) == 0);
    close(p[0]);

    /* an end of another socketpair of its own */
    check("another socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, q) == 0);
    check("send an end of it", send_fds(&q[1], 1));
    check("receive it", recv_fds(got, 1, 0) && got[0] >= 0);
    check("ping through the pair", write(q[0], "ping", 4) == 4 && read(got[0], buf, 4) == 4 && memcmp(buf, "ping", 4) == 0);
    check("pong back", write(got[0], "pong", 4) == 4 && read(q[0], buf, 4) == 4 && memcmp(buf, "pong", 4) == 0);
    close(got[0]);
    close(q[1]);
    check("EOF once both copies are closed", read(q[0], buf, 4) == 0);
    close(q[0]);

    /* its stdout (the leader's world) and a pipe end of its own, in one message */
    check("pipe a third time", pipe(p) == 0);
    int two[2] = {1, p[1]};
    check("send stdout and the write end", send_fds(two, 2));
    check("receive both", recv_fds(got, 2, 0) && got[0] >= 0 && got[1] >= 0);
    check("write through the received stdout", write(got[0], "through the received stdout\n", 28) == 28);
    check("write through the received pipe end", write(got[1], "xyz", 3) == 3);
    close(got[0]);
    close(got[1]);
    close(p[1]);
    check("read it, then EOF", read(p[0], buf, sizeof buf) == 3 && memcmp(buf, "xyz", 3) == 0 &&
                                   read(p[0], buf, sizeof buf) == 0);
    close(p[0]);

    /* a /proc file: what the kernel says is an input, whoever reads it */
    int st = open("/proc/self/stat", O_RDONLY);
    check("open /proc/self/stat", st >= 0);
    check("send it", send_fds(&st, 1));
    close(st);
    check("receive it", recv_fds(got, 1, 0) && got[0] >= 0);
    check("read through it", read(got[0], buf, sizeof buf) > 0);
    close(got[0]);

    close(sv[0]);
    close(sv[1]);
    say("done\n");
    return failures;
}
