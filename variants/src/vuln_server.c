/*
 * vuln_server: epoll_server with a deliberate stack buffer overflow.
 *
 *   vuln_server [PORT [MAX_CONNS]]
 *
 * Same protocol as epoll_server (127.0.0.1:PORT, default 5000; replies
 * "Hi, how are you.\n" to every chunk; MAX_CONNS; SIGTERM exits 0), but the
 * request handler reads up to 128 bytes into a 16-byte stack buffer.  A request
 * longer than the buffer overwrites the handler's saved frame pointer and return
 * address.  win() is never called by the program; a payload from
 * scripts/make_attack.py returns into it.  win() writes "PWNED" to stdout,
 * creates the file named by $MVX_MARKER (default /tmp/mvx-pwned) and exits 66.
 *
 * Because the stack layout differs per ISA (offsets on x86_64 and i386 differ;
 * aarch64 keeps the return address below the locals), a payload made for one
 * ISA's build does not hijack another ISA's build: this is what an MVX engine
 * running the builds side by side detects.
 *
 * Built with -O0 -fno-stack-protector -no-pie (and -fcf-protection=none on x86)
 * by scripts/build_variants.sh, so the overflow is real and addresses are fixed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

/* The attacker's goal.  Not static, so `nm` shows it; never called. */
__attribute__((noinline, used)) void win(void)
{
    static const char msg[] = "PWNED\n";
    write(1, msg, sizeof msg - 1);
    const char *marker = getenv("MVX_MARKER");
    if (marker == NULL || marker[0] == '\0')
        marker = "/tmp/mvx-pwned";
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        write(fd, msg, sizeof msg - 1);
        close(fd);
    }
    _exit(66);
}

static void on_sigterm(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *what)
{
    write(2, "vuln_server: ", 13);
    write(2, what, strlen(what));
    write(2, " failed\n", 8);
    exit(1);
}

/*
 * The vulnerable handler: reads one request into a 16-byte stack buffer but
 * asks read() for up to 128 bytes.  Returns the byte count read.
 */
__attribute__((noinline)) int handle_request(int fd)
{
    char buf[16];
    int n = read(fd, buf, 128); /* BUG: 128 > sizeof buf */
    if (n > 0)
        write(fd, REPLY, sizeof REPLY - 1);
    return n;
}

static int listen_on(int port)
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
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(fd, 64) < 0)
        die("listen");
    return fd;
}

static void accept_clients(int epfd, int lfd)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR)
                continue;
            return;
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
    int n = handle_request(cfd);
    if (n > 0)
        return 0;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    epoll_ctl(epfd, EPOLL_CTL_DEL, cfd, NULL);
    close(cfd);
    return 1;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 5000;
    long max_conns = argc > 2 ? atol(argv[2]) : 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);

    int lfd = listen_on(port);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll_ctl");

    static const char ready[] = "vuln_server: listening\n";
    write(1, ready, sizeof ready - 1);

    long served = 0;
    struct epoll_event events[MAX_EVENTS];
    while (!stop_requested && (max_conns == 0 || served < max_conns)) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                break;
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
