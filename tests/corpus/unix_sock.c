/* unix_sock: AF_UNIX stream/dgram/seqpacket through socketpair and through named paths in the
 * cwd (bind, listen, connect, accept, sendto/recvfrom with addresses), recv with MSG_PEEK and
 * MSG_TRUNC, shutdown, SO_PEERCRED, SCM_RIGHTS passing a pipe end, all to itself. */
#include "corpus.h"
#include <sys/socket.h>
#include <stddef.h>
#include <sys/un.h>

static socklen_t addr_of(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

int main(int argc, char **argv)
{
    int sv[2], lst, cli, acc, d1, d2;
    char buf[64];
    struct sockaddr_un a, from;
    socklen_t len;
    corpus_enter(argc, argv);

    /* stream socketpair */
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair stream");
    check(send(sv[0], "ping", 4, 0) == 4, "send ping");
    check(recv(sv[1], buf, 4, MSG_PEEK) == 4 && !memcmp(buf, "ping", 4), "recv MSG_PEEK ping");
    check(recv(sv[1], buf, 2, 0) == 2 && recv(sv[1], buf + 2, 8, 0) == 2 && !memcmp(buf, "ping", 4),
          "recv ping in two parts");
    check(recv(sv[1], buf, 4, MSG_DONTWAIT) < 0 && errno == EAGAIN, "recv MSG_DONTWAIT empty: EAGAIN");
    struct ucred cr;
    len = sizeof cr;
    check(getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.pid == getpid() &&
          cr.uid == getuid(), "SO_PEERCRED is self");
    int type = 0;
    len = sizeof type;
    check(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM, "SO_TYPE stream");

    /* SCM_RIGHTS: pass a pipe's write end, write through the received fd */
    int p[2];
    check(pipe(p) == 0, "pipe for SCM_RIGHTS");
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {"fd!", 3};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[1], sizeof(int));
    check(sendmsg(sv[0], &mh, 0) == 3, "sendmsg SCM_RIGHTS");
    memset(&ctl, 0, sizeof ctl);
    iov.iov_base = buf;
    iov.iov_len = sizeof buf;
    struct msghdr rh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    int got = -1;
    check(recvmsg(sv[1], &rh, MSG_CMSG_CLOEXEC) == 3 && !memcmp(buf, "fd!", 3), "recvmsg SCM_RIGHTS data");
    cm = CMSG_FIRSTHDR(&rh);
    if (cm && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&got, CMSG_DATA(cm), sizeof got);
    check(got >= 0 && got != p[1], "received a new fd");
    check(got >= 0 && (fcntl(got, F_GETFD) & FD_CLOEXEC), "received fd is close-on-exec");
    check(write(got, "via", 3) == 3 && read(p[0], buf, 3) == 3 && !memcmp(buf, "via", 3),
          "write through the received fd");
    close(got);
    close(p[0]);
    close(p[1]);
    check(shutdown(sv[0], SHUT_WR) == 0 && recv(sv[1], buf, 4, 0) == 0, "shutdown SHUT_WR: peer sees EOF");
    close(sv[0]);
    close(sv[1]);

    /* dgram socketpair: MSG_TRUNC */
    check(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair dgram");
    check(send(sv[0], "0123456789", 10, 0) == 10, "send 10-byte datagram");
    check(recv(sv[1], buf, 4, MSG_PEEK | MSG_TRUNC) == 10, "recv MSG_PEEK|MSG_TRUNC says 10");
    check(recv(sv[1], buf, 4, MSG_TRUNC) == 10 && !memcmp(buf, "0123", 4), "recv MSG_TRUNC: 10, first 4 kept");
    check(send(sv[0], "abcdef", 6, 0) == 6, "send 6-byte datagram");
    iov.iov_base = buf;
    iov.iov_len = 3;
    struct msghdr th = {.msg_iov = &iov, .msg_iovlen = 1};
    check(recvmsg(sv[1], &th, 0) == 3 && (th.msg_flags & MSG_TRUNC), "recvmsg short buffer: MSG_TRUNC flag");
    close(sv[0]);
    close(sv[1]);

    /* seqpacket socketpair */
    check(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair seqpacket");
    check(send(sv[0], "rec1", 4, 0) == 4 && send(sv[0], "record2", 7, 0) == 7, "send two records");
    check(recv(sv[1], buf, 64, 0) == 4 && recv(sv[1], buf, 64, 0) == 7, "records keep their bounds");
    close(sv[0]);
    close(sv[1]);

    /* named stream socket in the cwd */
    lst = socket(AF_UNIX, SOCK_STREAM, 0);
    check(lst >= 0, "socket stream");
    len = addr_of(&a, "s.sock");
    check(bind(lst, (struct sockaddr *)&a, len) == 0, "bind s.sock");
    check(listen(lst, 4) == 0, "listen");
    cli = socket(AF_UNIX, SOCK_STREAM, 0);
    check(connect(cli, (struct sockaddr *)&a, len) == 0, "connect to s.sock");
    acc = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
    check(acc >= 0, "accept4");
    memset(&from, 0, sizeof from);
    len = sizeof from;
    check(getsockname(acc, (struct sockaddr *)&from, &len) == 0 && !strcmp(from.sun_path, "s.sock"),
          "getsockname: s.sock");
    check(write(cli, "hello", 5) == 5 && read(acc, buf, 5) == 5 && !memcmp(buf, "hello", 5), "client -> server");
    check(write(acc, "world", 5) == 5 && read(cli, buf, 5) == 5 && !memcmp(buf, "world", 5), "server -> client");
    close(cli);
    check(read(acc, buf, 5) == 0, "EOF after client close");
    close(acc);
    close(lst);
    check(unlink("s.sock") == 0, "unlink s.sock");

    /* named datagram sockets: sendto/recvfrom with addresses */
    d1 = socket(AF_UNIX, SOCK_DGRAM, 0);
    d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    len = addr_of(&a, "d1.sock");
    check(bind(d1, (struct sockaddr *)&a, len) == 0, "bind d1.sock");
    struct sockaddr_un b;
    socklen_t blen = addr_of(&b, "d2.sock");
    check(bind(d2, (struct sockaddr *)&b, blen) == 0, "bind d2.sock");
    check(sendto(d2, "dgram", 5, 0, (struct sockaddr *)&a, len) == 5, "sendto d1.sock");
    memset(&from, 0, sizeof from);
    len = sizeof from;
    check(recvfrom(d1, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) == 5 && !memcmp(buf, "dgram", 5),
          "recvfrom: dgram");
    check(!strcmp(from.sun_path, "d2.sock"), "recvfrom: sender is d2.sock");
    check(sendto(d1, "back", 4, 0, (struct sockaddr *)&from, len) == 4 && recv(d2, buf, 4, 0) == 4, "reply");
    close(d1);
    close(d2);
    check(unlink("d1.sock") == 0 && unlink("d2.sock") == 0, "unlink d1.sock d2.sock");
    return corpus_verdict();
}
