/* callkinds: small programs whose calls mvx must compare by the right kind and replay without
 * overrunning a buffer. Each case prints what it saw; under mvx every variant must print the same
 * (a follower's writes are compared with the leader's).
 *
 *   callkinds fcntl              F_SETOWN_EX/F_GETOWN_EX (struct f_owner_ex *), F_GETLK/F_OFD_GETLK
 *                                (struct flock / flock64 per ISA)
 *   callkinds openmode           openat without O_CREAT whose mode register holds an address
 *   callkinds scm DIR            sendmsg with SCM_RIGHTS and SCM_CREDENTIALS between two sockets
 *   callkinds clocks             every clock-valued result: times, timerfd_gettime, timer_gettime,
 *                                getitimer, getrusage, sysinfo's uptime
 *   callkinds sleepint           a 1 s sleep that SIGALRM (setitimer, 100 ms) interrupts natively
 *   callkinds pausealarm         alarm(1) then pause(): natively wakes after 1 s (under mvx today it
 *                                hangs: the leader's SIGALRM waits for a synced call that never comes)
 *   callkinds trunc              recv/recvfrom/recvmsg/readv into short buffers with MSG_TRUNC/MSG_PEEK:
 *                                guard bytes after each buffer must stay untouched
 *   callkinds unixdgram DIR      sendto an AF_UNIX path, recvfrom an unnamed sender
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/times.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ssize_t w;
    while ((w = write(1, line, (size_t)n)) < 0 && errno == EINTR) {}
    if (w != n) exit(3);
}

static int fcntl_case(void) {
    int p[2];
    if (pipe(p) < 0) return 1;
    struct f_owner_ex own = {F_OWNER_PID, getpid()}, got = {-1, -1};
    out("setown_ex %d\n", fcntl(p[0], F_SETOWN_EX, &own));
    int r = fcntl(p[0], F_GETOWN_EX, &got);
    out("getown_ex %d type %d pid_is_mine %d\n", r, got.type, got.pid == getpid());
    int fd = open("/dev/null", O_RDONLY);
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)1 << 32; /* a 64-bit offset: a 32-bit struct flock would read it wrong */
    fl.l_len = 10;
    r = fcntl(fd, F_GETLK, &fl);
    out("getlk %d type %d start %lld len %lld\n", r, fl.l_type,
        (long long)fl.l_start, (long long)fl.l_len);
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_start = ((off_t)1 << 33) + 5;
    fl.l_len = 3;
    r = fcntl(fd, F_OFD_GETLK, &fl);
    out("ofd_getlk %d type %d start %lld\n", r, fl.l_type, (long long)fl.l_start);
    return 0;
}

static void on_alarm(int sig) { (void)sig; }

static int sleepint_case(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec req = {1, 0}, rem = {9, 9};
    int r = nanosleep(&req, &rem);
    if (r == 0)
        out("nanosleep 0\n");
    else
        out("nanosleep %d errno %d rem_sec %lld\n", r, errno, (long long)rem.tv_sec);
    return 0;
}

static int pausealarm_case(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    pause();
    out("woke\n");
    return 0;
}

static int openmode_case(void) {
    int where = 0;
    /* no O_CREAT: the kernel never reads the mode, here an address (other on each ISA) */
    long fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY, (long)(intptr_t)&where);
    out("opened %ld\n", fd);
    return fd < 0;
}

static int scm_case(const char *dir) {
    (void)dir;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) return 1;
    int one = 1;
    setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    int fds[2] = {0, 1};
    char payload[] = "fds";
    struct iovec iov = {payload, 3};
    union { char buf[CMSG_SPACE(sizeof fds) + CMSG_SPACE(sizeof(struct ucred))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    c = CMSG_NXTHDR(&m, c);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred cred = {getpid(), getuid(), getgid()};
    memcpy(CMSG_DATA(c), &cred, sizeof cred);
    ssize_t n = sendmsg(sv[0], &m, 0);
    out("sendmsg %zd\n", n);
    /* credentials received (SO_PASSCRED), re-encoded in each ISA's cmsghdr; the sender is unnamed */
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) < 0) return 1;
    setsockopt(sp[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    send(sp[0], "cred", 4, 0);
    char data[8];
    struct iovec riov = {data, sizeof data};
    union { char buf[CMSG_SPACE(sizeof(struct ucred))]; struct cmsghdr align; } r;
    struct sockaddr_un from;
    struct msghdr rm = {0};
    rm.msg_name = &from;
    rm.msg_namelen = sizeof from;
    rm.msg_iov = &riov;
    rm.msg_iovlen = 1;
    rm.msg_control = r.buf;
    rm.msg_controllen = sizeof r.buf;
    n = recvmsg(sp[1], &rm, 0);
    out("recvmsg %zd '%.*s' namelen %u controllen_is_space %d flags %d\n", n, (int)(n > 0 ? n : 0), data,
        (unsigned)rm.msg_namelen, rm.msg_controllen == CMSG_SPACE(sizeof(struct ucred)), rm.msg_flags);
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&rm); h; h = CMSG_NXTHDR(&rm, h)) {
        struct ucred got;
        memcpy(&got, CMSG_DATA(h), sizeof got);
        out("cmsg level %d type %d pid_is_mine %d uid %u gid %u\n", h->cmsg_level, h->cmsg_type,
            got.pid == getpid(), (unsigned)got.uid, (unsigned)got.gid);
    }
    return 0;
}

static int clocks_case(void) {
    struct tms t;
    clock_t ticks = times(&t);
    out("times %lld utime %lld stime %lld\n", (long long)ticks, (long long)t.tms_utime, (long long)t.tms_stime);
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = {{0, 0}, {100, 0}}, cur;
    timerfd_settime(tfd, 0, &its, NULL);
    usleep(2000);
    timerfd_gettime(tfd, &cur);
    out("timerfd %lld.%09ld\n", (long long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
    timer_t tid;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_NONE;
    if (timer_create(CLOCK_MONOTONIC, &sev, &tid) == 0) {
        timer_settime(tid, 0, &its, NULL);
        usleep(2000);
        timer_gettime(tid, &cur);
        out("timer %lld.%09ld\n", (long long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
        usleep(1000);
        timer_settime(tid, 0, &its, &cur);
        out("timer_old %lld.%09ld\n", (long long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
    }
    struct itimerval itv = {{0, 0}, {100, 0}}, icur;
    setitimer(ITIMER_REAL, &itv, NULL);
    usleep(2000);
    getitimer(ITIMER_REAL, &icur);
    out("itimer %lld.%06ld\n", (long long)icur.it_value.tv_sec, (long)icur.it_value.tv_usec);
    /* setters give the old timer's time left */
    usleep(1000);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &itv, &icur);
    out("setitimer_old %lld.%06ld\n", (long long)icur.it_value.tv_sec, (long)icur.it_value.tv_usec);
    usleep(1000);
    setitimer(ITIMER_REAL, &off, &icur);
    out("setitimer_off_old %lld.%06ld\n", (long long)icur.it_value.tv_sec, (long)icur.it_value.tv_usec);
    alarm(100);
    usleep(1000);
    out("alarm_left %u\n", alarm(0));
    struct itimerspec old;
    usleep(1000);
    timerfd_settime(tfd, 0, &its, &old);
    out("timerfd_old %lld.%09ld\n", (long long)old.it_value.tv_sec, old.it_value.tv_nsec);
    struct rusage ru;
    for (volatile int i = 0; i < 3000000; i++) {}
    getrusage(RUSAGE_SELF, &ru);
    out("rusage %lld.%06ld %lld.%06ld maxrss %ld\n", (long long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
        (long long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, ru.ru_maxrss);
    /* the raw ppoll writes back the time left of its timeout (glibc's wrapper hides it) */
    int pp[2];
    if (pipe(pp) == 0 && write(pp[1], "x", 1) == 1) {
        struct pollfd pf = {pp[0], POLLIN, 0};
        struct timespec pts = {5, 0};
        long r = syscall(SYS_ppoll, &pf, 1, &pts, NULL, 8);
        out("ppoll %ld left %lld.%09ld\n", r, (long long)pts.tv_sec, pts.tv_nsec);
    }
    struct sysinfo si;
    sysinfo(&si);
    out("uptime %ld\n", (long)si.uptime);
    return 0;
}

struct guarded { char buf[4]; char guard[12]; };

static void guard_init(struct guarded *g) { memset(g, 'G', sizeof *g); }
static int guard_ok(const struct guarded *g) {
    for (size_t i = 0; i < sizeof g->guard; i++) if (g->guard[i] != 'G') return 0;
    return 1;
}

static int trunc_case(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) return 1;
    const char msg[] = "0123456789"; /* a 10-byte datagram */
    struct guarded g;
    for (int i = 0; i < 8; i++) send(sv[0], msg, 10, 0);
    guard_init(&g);
    ssize_t n = recv(sv[1], g.buf, 1, MSG_TRUNC);
    out("recv_trunc %zd guard %d\n", n, guard_ok(&g));
    guard_init(&g);
    n = recv(sv[1], g.buf, 2, MSG_PEEK | MSG_TRUNC);
    out("recv_peek_trunc %zd guard %d\n", n, guard_ok(&g));
    guard_init(&g);
    n = recv(sv[1], g.buf, 3, 0);
    out("recv_short %zd guard %d\n", n, guard_ok(&g));
    guard_init(&g);
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    n = recvfrom(sv[1], g.buf, 1, MSG_TRUNC, (struct sockaddr *)&from, &flen);
    out("recvfrom_trunc %zd guard %d\n", n, guard_ok(&g));
    guard_init(&g);
    n = read(sv[1], g.buf, 2);
    out("read_short %zd guard %d\n", n, guard_ok(&g));
    struct guarded g2;
    guard_init(&g);
    guard_init(&g2);
    struct iovec iov[2] = {{g.buf, 1}, {g2.buf, 2}};
    n = readv(sv[1], iov, 2);
    out("readv_short %zd guard %d %d\n", n, guard_ok(&g), guard_ok(&g2));
    guard_init(&g);
    guard_init(&g2);
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    n = recvmsg(sv[1], &m, MSG_TRUNC);
    out("recvmsg_trunc %zd flags %d guard %d %d\n", n, m.msg_flags & MSG_TRUNC ? 1 : 0, guard_ok(&g), guard_ok(&g2));
    return 0;
}

static int unixdgram_case(const char *dir) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/srv", dir);
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    int r = bind(srv, (struct sockaddr *)&a, sizeof a);
    out("bind %d\n", r);
    int cli = socket(AF_UNIX, SOCK_DGRAM, 0);
    ssize_t s = sendto(cli, "hello", 5, 0, (struct sockaddr *)&a, sizeof a);
    out("sendto %zd\n", s);
    char buf[16];
    struct sockaddr_un from;
    memset(&from, 'x', sizeof from);
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    out("recvfrom %zd '%.*s' fromlen %u family %d\n", n, (int)(n > 0 ? n : 0), buf, (unsigned)flen,
        flen >= 2 ? from.sun_family : -1);
    /* a named sender: its path comes back */
    struct sockaddr_un b = {.sun_family = AF_UNIX};
    snprintf(b.sun_path, sizeof b.sun_path, "%s/cli", dir);
    int named = socket(AF_UNIX, SOCK_DGRAM, 0);
    r = bind(named, (struct sockaddr *)&b, sizeof b);
    s = sendto(named, "named", 5, 0, (struct sockaddr *)&a, sizeof a);
    memset(&from, 'x', sizeof from);
    flen = sizeof from;
    n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    out("named bind %d sendto %zd recvfrom %zd fromlen %u path_is_cli %d\n", r, s, n, (unsigned)flen,
        flen > 2 && !strcmp(from.sun_path, b.sun_path));
    /* a short address buffer: the kernel writes what fits and says the full length */
    memset(&from, 'x', sizeof from);
    flen = 6;
    sendto(named, "short", 5, 0, (struct sockaddr *)&a, sizeof a);
    n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    out("short recvfrom %zd fromlen %u untouched_after %d\n", n, (unsigned)flen, from.sun_path[4] == 'x');
    unlink(a.sun_path);
    unlink(b.sun_path);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: callkinds CASE [DIR]\n"); return 2; }
    const char *c = argv[1], *dir = argc > 2 ? argv[2] : "/tmp";
    if (!strcmp(c, "fcntl")) return fcntl_case();
    if (!strcmp(c, "openmode")) return openmode_case();
    if (!strcmp(c, "sleepint")) return sleepint_case();
    if (!strcmp(c, "pausealarm")) return pausealarm_case();
    if (!strcmp(c, "scm")) return scm_case(dir);
    if (!strcmp(c, "clocks")) return clocks_case();
    if (!strcmp(c, "trunc")) return trunc_case();
    if (!strcmp(c, "unixdgram")) return unixdgram_case(dir);
    fprintf(stderr, "callkinds: unknown case %s\n", c);
    return 2;
}
