/*
 * echo_events: an epoll echo server that logs what each call gave it, so a follower whose
 * replayed inputs were wrong writes other bytes than its leader (mvx compares every write).
 *
 *   echo_events [PORT [MAX_CONNS [ADDR]]]
 *
 * Listens on ADDR:PORT (default 127.0.0.1:5000).  Like lighttpd it keeps a POINTER to a
 * per-connection record in epoll_event.data (not the fd), so a replayed epoll_pwait must give
 * each variant back its own pointer.  It accepts with accept4 and a peer address, echoes every
 * chunk it reads back to its client, and logs to stdout one line per call result:
 *
 *   accept #ID fd=FD family=F peer=A.B.C.D addrlen=L
 *   event #ID fd=FD events=0xE        (#ID found through data.ptr)
 *   read #ID fd=FD n=N sum=S          (S: a byte sum of what read returned)
 *   close #ID fd=FD
 *
 * Exits 0 after MAX_CONNS connections were closed (0: serve forever).  Plain syscall wrappers
 * only (no stdio), so every ISA makes the same calls.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 16

struct conn {
    long id; /* 0: the listening socket */
    int fd;
};

static void die(const char *what)
{
    write(2, "echo_events: ", 13);
    write(2, what, strlen(what));
    write(2, " failed\n", 8);
    exit(1);
}

static void say(const char *line)
{
    write(1, line, strlen(line));
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 5000;
    long max_conns = argc > 2 ? atol(argv[2]) : 0;
    const char *ip = argc > 3 ? argv[3] : "127.0.0.1";
    char line[256];

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1)
        die("inet_pton");
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, 64) < 0)
        die("listen");
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    static struct conn listener = {0, -1};
    listener.fd = lfd;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = &listener;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll_ctl");
    say("echo_events: listening\n");

    long next_id = 1, closed = 0;
    struct epoll_event events[MAX_EVENTS];
    char buf[4096];
    while (max_conns == 0 || closed < max_conns) {
        int n = epoll_pwait(epfd, events, MAX_EVENTS, -1, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_pwait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == &listener) {
                for (;;) {
                    struct sockaddr_in peer;
                    socklen_t plen = sizeof peer;
                    memset(&peer, 0, sizeof peer);
                    int cfd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0)
                        break; /* EAGAIN: nothing more to accept */
                    struct conn *nc = malloc(sizeof *nc);
                    if (!nc)
                        die("malloc");
                    nc->id = next_id++;
                    nc->fd = cfd;
                    char ip_text[INET_ADDRSTRLEN] = "?";
                    inet_ntop(AF_INET, &peer.sin_addr, ip_text, sizeof ip_text);
                    snprintf(line, sizeof line, "accept #%ld fd=%d family=%d peer=%s addrlen=%u\n", nc->id,
                             cfd, peer.sin_family, ip_text, (unsigned)plen);
                    say(line);
                    memset(&ev, 0, sizeof ev);
                    ev.events = EPOLLIN | EPOLLRDHUP;
                    ev.data.ptr = nc;
                    if (epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev) < 0)
                        die("epoll_ctl add");
                }
                continue;
            }
            snprintf(line, sizeof line, "event #%ld fd=%d events=%#x\n", c->id, c->fd, events[i].events);
            say(line);
            ssize_t got = read(c->fd, buf, sizeof buf);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got > 0) {
                unsigned long sum = 0;
                for (ssize_t k = 0; k < got; k++)
                    sum += (unsigned char)buf[k];
                snprintf(line, sizeof line, "read #%ld fd=%d n=%zd sum=%lu\n", c->id, c->fd, got, sum);
                say(line);
                write_all(c->fd, buf, (size_t)got);
                continue;
            }
            snprintf(line, sizeof line, "close #%ld fd=%d\n", c->id, c->fd);
            say(line);
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            free(c);
            closed++;
        }
    }
    snprintf(line, sizeof line, "echo_events: served %ld\n", closed);
    say(line);
    return 0;
}
