/*
 * epoll_server: a small epoll-based TCP server, the classic MVX test program.
 *
 *   epoll_server [PORT [MAX_CONNS [ADDR]]]
 *
 * Listens on ADDR:PORT (default 127.0.0.1:5000; a guest under qemu's user networking needs
 * 0.0.0.0 to be reached through a forwarded port).  Clients are accepted without
 * blocking (accept4 with SOCK_NONBLOCK); for every chunk of data a client sends
 * the server answers "Hi, how are you.\n".  A client that closes its end is
 * removed from the epoll set and closed.
 *
 * If MAX_CONNS is given, the server exits with status 0 once that many
 * connections have been served (accepted and closed again).  SIGTERM makes it
 * leave the loop and exit 0 too (the handler only sets a flag; epoll_wait then
 * fails with EINTR because the handler is installed without SA_RESTART).
 *
 * The program talks to the kernel only through plain system-call wrappers
 * (no stdio), so the syscall sequence is the same on every ISA.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 16
static const char REPLY[] = "Hi, how are you.\n";

static volatile sig_atomic_t stop_requested;

static void on_sigterm(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Write a string to fd 2 and exit with status 1. */
static void die(const char *what)
{
    write(2, "epoll_server: ", 14);
    write(2, what, strlen(what));
    write(2, " failed\n", 8);
    exit(1);
}

static int listen_on(const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1)
        die("inet_pton");
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(fd, 64) < 0)
        die("listen");
    return fd;
}

/* Accept every pending client and add it to the epoll set. */
static void accept_clients(int epfd, int lfd)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN: nothing more to accept (or a transient error) */
        }
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.fd = cfd;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev) < 0)
            close(cfd);
    }
}

/* Serve one readable client.  Returns 1 if the client was closed, else 0. */
static int serve_client(int epfd, int cfd)
{
    char buf[4096];
    ssize_t n = read(cfd, buf, sizeof buf);
    if (n > 0) {
        write(cfd, REPLY, sizeof REPLY - 1);
        return 0;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    /* EOF or a hard error: forget the client. */
    epoll_ctl(epfd, EPOLL_CTL_DEL, cfd, NULL);
    close(cfd);
    return 1;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 5000;
    long max_conns = argc > 2 ? atol(argv[2]) : 0; /* 0: serve forever */
    const char *ip = argc > 3 ? argv[3] : "127.0.0.1";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);

    int lfd = listen_on(ip, port);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll_ctl");

    static const char ready[] = "epoll_server: listening\n";
    write(1, ready, sizeof ready - 1);

    long served = 0;
    struct epoll_event events[MAX_EVENTS];
    while (!stop_requested && (max_conns == 0 || served < max_conns)) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                break; /* SIGTERM (or another signal): leave the loop */
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd)
                accept_clients(epfd, lfd);
            else
                served += serve_client(epfd, fd);
        }
    }
    close(epfd);
    close(lfd);
    return 0;
}
