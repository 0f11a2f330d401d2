/*
 * sendfile_http: a tiny HTTP/1.0 file server that sends bodies with sendfile().
 *
 *   sendfile_http [PORT [DOCROOT [NREQ]]]
 *
 * Listens on 127.0.0.1:PORT (default 8080) and serves files below DOCROOT
 * (default ".").  One connection at a time, with a blocking accept: the request
 * is read up to the blank line, "GET /path" is resolved below DOCROOT ("/" and
 * paths ending in "/" mean index.html), the file is open()ed and fstat()ed, a
 * header "HTTP/1.0 200 OK\r\nContent-Length: N\r\n\r\n" is written and the body
 * follows with sendfile().  Anything else (other methods, "..", missing or
 * unreadable files, directories) gets a 404.  The connection is then closed.
 *
 * If NREQ is given the server exits 0 after NREQ connections; SIGTERM also
 * makes it exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_sigterm(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *what)
{
    write(2, "sendfile_http: ", 15);
    write(2, what, strlen(what));
    write(2, " failed\n", 8);
    exit(1);
}

/* Write all of buf; returns 0 on success, -1 on error. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read the request head (up to the blank line, EOF or a full buffer) into buf.
 * Returns the length read, NUL-terminated. */
static size_t read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            break;
    }
    buf[len] = '\0';
    return len;
}

static void send_404(int cfd)
{
    static const char resp[] = "HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n";
    write_all(cfd, resp, sizeof resp - 1);
}

/* Handle one connection: parse, open, fstat, header, sendfile. */
static void serve(int cfd, const char *docroot)
{
    char req[4096];
    read_request(cfd, req, sizeof req);

    /* Request line: "GET /path HTTP/1.x" */
    if (strncmp(req, "GET /", 5) != 0) {
        send_404(cfd);
        return;
    }
    char *path = req + 4;
    size_t plen = strcspn(path, " \r\n");
    path[plen] = '\0';
    if (strstr(path, "..")) {
        send_404(cfd);
        return;
    }

    char file[8192];
    int len = snprintf(file, sizeof file, "%s%s%s", docroot, path,
                       path[plen - 1] == '/' ? "index.html" : "");
    if (len < 0 || (size_t)len >= sizeof file) {
        send_404(cfd);
        return;
    }

    int ffd = open(file, O_RDONLY | O_CLOEXEC);
    if (ffd < 0) {
        send_404(cfd);
        return;
    }
    struct stat st;
    if (fstat(ffd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(ffd);
        send_404(cfd);
        return;
    }

    char head[128];
    int hlen = snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Length: %lld\r\n\r\n",
                        (long long)st.st_size);
    if (write_all(cfd, head, (size_t)hlen) == 0) {
        off_t left = st.st_size;
        while (left > 0) {
            ssize_t n = sendfile(cfd, ffd, NULL, (size_t)left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break; /* client went away, or the file shrank */
            left -= n;
        }
    }
    close(ffd);
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    const char *docroot = argc > 2 ? argv[2] : ".";
    long max_reqs = argc > 3 ? atol(argv[3]) : 0; /* 0: serve forever */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm; /* no SA_RESTART: accept returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client closing early must not kill us */

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, 64) < 0)
        die("listen");

    static const char ready[] = "sendfile_http: listening\n";
    write(1, ready, sizeof ready - 1);

    long served = 0;
    while (!stop_requested && (max_reqs == 0 || served < max_reqs)) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR)
                break; /* SIGTERM */
            continue;  /* e.g. ECONNABORTED: try the next client */
        }
        serve(cfd, docroot);
        close(cfd);
        served++;
    }
    close(lfd);
    return 0;
}
