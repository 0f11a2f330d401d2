/*
 * vulnlab: a small line-protocol TCP server with one deliberate bug per command, for the exploit
 * suite (tests/exploits/, `just exploits`, docs/security.md).
 *
 *   vulnlab [PORT=5000 [MAX_CONNS]]        files for GET are read under $VULNLAB_ROOT (default ".")
 *
 * 127.0.0.1:PORT, one connection at a time; each read() of a connection is one request, answered
 * before the next is read. Writes `vulnlab: listening` to stdout once it accepts; SIGTERM exits 0.
 *
 *   PING             "PONG\n"
 *   ECHO <data>      the first 32 bytes back; BUG: a copy of all of <data> goes into a 32-byte
 *                    stack buffer (stack overflow: return into win(), a ROP chain)
 *   FMT <text>       <text> back; BUG: used as the format of snprintf (format string: leaks
 *                    stack words and registers into the response)
 *   NAME <data>      "hello, <name>\n" through the greeter's function pointer; BUG: the name is
 *                    copied into the heap greeter without a bound, over that pointer
 *   LOGIN, LOGOUT    make and free a session; BUG: LOGOUT keeps the dangling pointer
 *   NOTE <data>      keeps a heap copy of <data> (its size is the attacker's)
 *   CALL             calls the session's handler (use after free when a NOTE took its chunk)
 *   GET <path>       the file <path> under the root; BUG: "../" is not refused (path traversal:
 *                    a logic bug, the same in every build, which MVX cannot see by design)
 *
 * The attacker's goal is win(): it writes PWNED to the client, creates the file named by
 * $MVX_MARKER (default /tmp/mvx-pwned) and exits 66. Nothing calls it. Payloads for a build come
 * from tests/exploits/payloads.py, which reads addresses from the binary.
 *
 * Built static (the gadgets of a ROP chain come from the binary's own libc) and -O0
 * -fno-stack-protector -no-pie (+ -fcf-protection=none), so the bugs are real and the addresses
 * fixed (scripts/build_variants.sh). Every address and layout differs per ISA, so a payload made
 * for one build does something else in another: that difference is what MVX reports.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* The request being handled: global, so its address is fixed in a -no-pie build. */
char request[1024];
int current_client = -1;

__attribute__((noinline, used)) void win(void)
{
    static const char msg[] = "PWNED\n";
    write(current_client, msg, sizeof msg - 1);
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

/* Keeps mprotect in the static build (the loader-less binary would otherwise not link it): a ROP
 * chain returning into it is how a page becomes executable. */
__attribute__((used)) int (*const keep_mprotect)(void *, size_t, int) = mprotect;

static void reply(int fd, const char *s, size_t n)
{
    write(fd, s, n);
}

static void reply_str(int fd, const char *s)
{
    reply(fd, s, strlen(s));
}

/* ECHO: the stack overflow. The answer is written first; the copy is the last thing before the
 * return, so nothing of this frame is read after it is overwritten. */
__attribute__((noinline)) void echo(int fd, const char *data, size_t len)
{
    char echo_copy[32];
    reply(fd, data, len < sizeof echo_copy ? len : sizeof echo_copy);
    memcpy(echo_copy, data, len); /* BUG: len is the request's, not the buffer's */
}

/* FMT: the format string. */
__attribute__((noinline)) void fmt(int fd, const char *text)
{
    char out[256];
    int n = snprintf(out, sizeof out, text); /* BUG: the client's text is the format */
    if (n > (int)sizeof out - 1)
        n = sizeof out - 1;
    if (n > 0)
        reply(fd, out, n);
}

/* NAME: the heap overflow into a function pointer. */
struct greeter {
    char name[32];
    void (*greet)(int fd, const char *name);
};
static struct greeter *greeter;

static void greet_politely(int fd, const char *name)
{
    char out[64];
    int n = snprintf(out, sizeof out, "hello, %.32s\n", name);
    reply(fd, out, n);
}

__attribute__((noinline)) void name(int fd, const char *data, size_t len)
{
    memset(greeter->name, 0, sizeof greeter->name);
    memcpy(greeter->name, data, len); /* BUG: no bound */
    greeter->greet(fd, greeter->name);
}

/* LOGIN/LOGOUT/NOTE/CALL: the use after free. */
struct session {
    void (*handler)(int fd);
    char user[16];
};
static struct session *session;

static void session_hello(int fd)
{
    reply_str(fd, "session ok\n");
}

/* GET: the path traversal. */
static void get(int fd, const char *path)
{
    const char *root = getenv("VULNLAB_ROOT");
    char full[512];
    snprintf(full, sizeof full, "%s/%s", root && root[0] ? root : ".", path); /* BUG: "../" kept */
    int f = open(full, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        reply_str(fd, "404\n");
        return;
    }
    char buf[512];
    ssize_t n;
    while ((n = read(f, buf, sizeof buf)) > 0)
        reply(fd, buf, n);
    close(f);
}

static int is(const char *req, const char *cmd)
{
    size_t n = strlen(cmd);
    return strncmp(req, cmd, n) == 0 && (req[n] == ' ' || req[n] == '\n' || req[n] == '\0');
}

static void handle(int fd, size_t n)
{
    char *arg = memchr(request, ' ', n);
    size_t arg_len = arg ? n - (size_t)(arg + 1 - request) : 0;
    arg = arg ? arg + 1 : request + n;
    if (is(request, "PING"))
        reply_str(fd, "PONG\n");
    else if (is(request, "ECHO"))
        echo(fd, arg, arg_len);
    else if (is(request, "FMT"))
        fmt(fd, arg);
    else if (is(request, "NAME"))
        name(fd, arg, arg_len);
    else if (is(request, "LOGIN")) {
        session = malloc(sizeof *session);
        session->handler = session_hello;
        strcpy(session->user, "guest");
        reply_str(fd, "logged in\n");
    } else if (is(request, "LOGOUT")) {
        free(session); /* BUG: session still points at the freed chunk */
        reply_str(fd, "logged out\n");
    } else if (is(request, "NOTE")) {
        char *note = malloc(arg_len);
        memcpy(note, arg, arg_len); /* kept: never freed */
        reply_str(fd, "noted\n");
    } else if (is(request, "CALL")) {
        if (session)
            session->handler(fd);
        else
            reply_str(fd, "no session\n");
    } else if (is(request, "GET")) {
        char *end = memchr(arg, '\n', arg_len);
        if (end)
            *end = '\0';
        get(fd, arg);
    } else
        reply_str(fd, "?\n");
}

static volatile sig_atomic_t stop_requested;

static void on_sigterm(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 5000;
    int max_conns = argc > 2 ? atoi(argv[2]) : 0;
    struct sigaction sa = {.sa_handler = on_sigterm}; /* no SA_RESTART: accept() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);

    greeter = malloc(sizeof *greeter);
    greeter->greet = greet_politely;

    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) {
        reply_str(2, "vulnlab: bind failed\n");
        return 1;
    }
    reply_str(1, "vulnlab: listening\n");
    for (int served = 0; !stop_requested && (max_conns == 0 || served < max_conns); served++) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue; /* EINTR: SIGTERM came, the loop ends */
        current_client = c;
        ssize_t n;
        while ((n = read(c, request, sizeof request - 1)) > 0) {
            request[n] = '\0';
            handle(c, (size_t)n);
        }
        close(c);
        current_client = -1;
    }
    return 0;
}
