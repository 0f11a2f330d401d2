/*
 * echo_load: a closed-loop load generator for line servers (variants/src/epoll_server.c) that
 * answer every chunk a client sends with one short reply. wrk cannot talk to them (it parses HTTP).
 *
 *   echo_load PORT CONNS SECONDS KEEPALIVE [REPLY_BYTES]
 *
 * CONNS connections to 127.0.0.1:PORT, driven from one thread with epoll. Each sends "ping\n",
 * waits for REPLY_BYTES (default 17: "Hi, how are you.\n") and sends again (KEEPALIVE=1), or
 * closes and reconnects for every request (KEEPALIVE=0; the close is abortive, SO_LINGER 0, so
 * the client leaves no TIME_WAIT behind and cannot run out of ports). Latency is measured from
 * the send (keep-alive) or from the connect (not keep-alive) to the last byte of the reply.
 * Requests still in flight when SECONDS run out are not counted.
 *
 * Prints one JSON object: requests, errors, seconds, p50_us, p90_us, p99_us, mean_us, max_us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] = "ping\n";

struct conn {
    int fd;
    int connecting;
    size_t got;
    double t0;
};

static struct sockaddr_in addr;
static int epfd;
static long reply_bytes = 17;
static double *lat;
static size_t nlat, caplat;
static long errors;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void record(double us)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) {
            perror("echo_load: realloc");
            exit(1);
        }
    }
    lat[nlat++] = us;
}

static void drop(struct conn *c)
{
    if (c->fd >= 0) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd); /* also removes it from the epoll set */
    }
    c->fd = -1;
}

static int send_request(struct conn *c)
{
    c->got = 0;
    ssize_t n = send(c->fd, REQUEST, sizeof REQUEST - 1, MSG_NOSIGNAL);
    return n == (ssize_t)(sizeof REQUEST - 1) ? 0 : -1;
}

/* Open a new connection for c; 0 on success (connected or in progress). */
static int open_conn(struct conn *c)
{
    c->t0 = now();
    c->got = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS) {
        drop(c);
        return -1;
    }
    c->connecting = r < 0;
    struct epoll_event ev = {.events = c->connecting ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        drop(c);
        return -1;
    }
    if (!c->connecting && send_request(c) < 0) {
        drop(c);
        return -1;
    }
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!nlat)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)nlat);
    if (i >= nlat)
        i = nlat - 1;
    return lat[i];
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: echo_load PORT CONNS SECONDS KEEPALIVE [REPLY_BYTES]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int nconn = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int keepalive = atoi(argv[4]);
    if (argc > 5)
        reply_bytes = atol(argv[5]);
    if (nconn <= 0 || seconds <= 0 || port <= 0 || reply_bytes <= 0) {
        fprintf(stderr, "echo_load: bad arguments\n");
        return 2;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)nconn, sizeof *conns);
    double start = now(), end = start + seconds;
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = -1;
        if (open_conn(&conns[i]) < 0)
            errors++;
    }
    struct epoll_event evs[64];
    char buf[4096];
    for (;;) {
        double t = now();
        if (t >= end)
            break;
        /* retry connections that failed to open (server refusing, out of fds ...) */
        for (int i = 0; i < nconn; i++)
            if (conns[i].fd < 0 && t >= conns[i].t0 + 0.01 && open_conn(&conns[i]) < 0)
                errors++; /* at most one attempt per 10 ms per connection */
        int timeout_ms = (int)((end - t) * 1000) + 1;
        if (timeout_ms > 50)
            timeout_ms = 50;
        int n = epoll_wait(epfd, evs, 64, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("echo_load: epoll_wait");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->fd < 0)
                continue;
            if (c->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    errors++;
                    drop(c);
                    continue;
                }
                c->connecting = 0;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                if (send_request(c) < 0) {
                    errors++;
                    drop(c);
                }
                continue;
            }
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) { /* the server closed or reset the connection mid-request */
                errors++;
                drop(c);
                continue;
            }
            c->got += (size_t)r;
            if (c->got < (size_t)reply_bytes)
                continue;
            double done = now();
            if (done < end)
                record((done - c->t0) * 1e6);
            if (keepalive) {
                c->t0 = done;
                if (send_request(c) < 0) {
                    errors++;
                    drop(c);
                }
            } else {
                drop(c);
                if (done < end && open_conn(c) < 0)
                    errors++;
            }
        }
    }
    double elapsed = now() - start;
    for (int i = 0; i < nconn; i++)
        drop(&conns[i]);
    double sum = 0, max = 0;
    for (size_t i = 0; i < nlat; i++) {
        sum += lat[i];
        if (lat[i] > max)
            max = lat[i];
    }
    qsort(lat, nlat, sizeof *lat, cmp);
    printf("{\"requests\": %zu, \"errors\": %ld, \"seconds\": %.6f, \"p50_us\": %.3f, \"p90_us\": %.3f, "
           "\"p99_us\": %.3f, \"mean_us\": %.3f, \"max_us\": %.3f}\n",
           nlat, errors, elapsed, pct(50), pct(90), pct(99), nlat ? sum / (double)nlat : 0.0, max);
    return 0;
}
