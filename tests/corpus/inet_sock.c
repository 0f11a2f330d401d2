/* inet_sock: AF_INET and AF_INET6 over loopback to itself: TCP (bind to port 0, listen, connect,
 * accept, send/recv both ways, getsockname/getpeername, setsockopt, shutdown) and UDP (sendto,
 * recvfrom with MSG_PEEK|MSG_TRUNC, connected send/recv). Ports are the kernel's choice and are
 * never printed. */
#include "corpus.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static char what[96];
static const char *w(const char *fam, const char *s)
{
    snprintf(what, sizeof what, "%s %s", fam, s);
    return what;
}

static void loopback(int fam, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (fam == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_addr = in6addr_loopback;
        *len = sizeof *s;
    }
}

static void tcp(int fam, const char *f)
{
    struct sockaddr_storage a, b, c;
    socklen_t len, blen, clen;
    char buf[64];
    int one = 1, v = 0;
    int lst = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    check(lst >= 0, w(f, "tcp socket"));
    check(setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, w(f, "SO_REUSEADDR"));
    loopback(fam, &a, &len);
    check(bind(lst, (struct sockaddr *)&a, len) == 0, w(f, "tcp bind loopback:0"));
    check(listen(lst, 8) == 0, w(f, "listen"));
    len = sizeof a;
    check(getsockname(lst, (struct sockaddr *)&a, &len) == 0 && ((struct sockaddr_in *)&a)->sin_port != 0,
          w(f, "getsockname: a port was chosen"));
    int cli = socket(fam, SOCK_STREAM, 0);
    check(setsockopt(cli, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, w(f, "TCP_NODELAY"));
    check(connect(cli, (struct sockaddr *)&a, len) == 0, w(f, "connect"));
    blen = sizeof b;
    int acc = accept(lst, (struct sockaddr *)&b, &blen);
    check(acc >= 0, w(f, "accept"));
    clen = sizeof c;
    check(getsockname(cli, (struct sockaddr *)&c, &clen) == 0 && clen == blen && !memcmp(&b, &c, blen),
          w(f, "accept's peer is the client's name"));
    clen = sizeof c;
    check(getpeername(cli, (struct sockaddr *)&c, &clen) == 0 && clen == len && !memcmp(&a, &c, len),
          w(f, "getpeername: the listener"));
    socklen_t vl = sizeof v;
    check(getsockopt(acc, SOL_SOCKET, SO_ERROR, &v, &vl) == 0 && v == 0, w(f, "SO_ERROR 0"));
    check(send(cli, "request", 7, 0) == 7, w(f, "send request"));
    check(recv(acc, buf, 7, MSG_WAITALL) == 7 && !memcmp(buf, "request", 7), w(f, "recv request"));
    check(send(acc, "response", 8, MSG_NOSIGNAL) == 8, w(f, "send response"));
    check(recv(cli, buf, 8, MSG_PEEK | MSG_WAITALL) == 8, w(f, "recv MSG_PEEK"));
    check(recv(cli, buf, 8, MSG_WAITALL) == 8 && !memcmp(buf, "response", 8), w(f, "recv response"));
    check(shutdown(cli, SHUT_WR) == 0 && recv(acc, buf, 8, 0) == 0, w(f, "shutdown: EOF at the server"));
    close(acc);
    close(cli);
    close(lst);
}

static void udp(int fam, const char *f)
{
    struct sockaddr_storage a, c, from;
    socklen_t len, clen, flen;
    char buf[64];
    int srv = socket(fam, SOCK_DGRAM, 0), cli = socket(fam, SOCK_DGRAM, 0);
    check(srv >= 0 && cli >= 0, w(f, "udp sockets"));
    loopback(fam, &a, &len);
    check(bind(srv, (struct sockaddr *)&a, len) == 0, w(f, "udp bind loopback:0"));
    check(bind(cli, (struct sockaddr *)&a, len) == 0, w(f, "udp bind client"));
    len = sizeof a;
    check(getsockname(srv, (struct sockaddr *)&a, &len) == 0, w(f, "udp getsockname"));
    clen = sizeof c;
    check(getsockname(cli, (struct sockaddr *)&c, &clen) == 0, w(f, "udp client getsockname"));
    check(sendto(cli, "0123456789", 10, 0, (struct sockaddr *)&a, len) == 10, w(f, "sendto 10 bytes"));
    check(recv(srv, buf, 4, MSG_PEEK | MSG_TRUNC) == 10, w(f, "recv MSG_PEEK|MSG_TRUNC: 10"));
    flen = sizeof from;
    check(recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 10 && !memcmp(buf, "0123456789", 10),
          w(f, "recvfrom 10 bytes"));
    check(flen == clen && !memcmp(&from, &c, clen), w(f, "recvfrom: sender is the client"));
    check(connect(srv, (struct sockaddr *)&from, flen) == 0, w(f, "udp connect"));
    check(send(srv, "pong", 4, 0) == 4, w(f, "send on connected udp"));
    check(recv(cli, buf, sizeof buf, 0) == 4 && !memcmp(buf, "pong", 4), w(f, "client gets pong"));
    close(srv);
    close(cli);
}

int main(int argc, char **argv)
{
    corpus_enter(argc, argv);
    tcp(AF_INET, "inet");
    udp(AF_INET, "inet");
    tcp(AF_INET6, "inet6");
    udp(AF_INET6, "inet6");
    return corpus_verdict();
}
