/* The C hot path of mvx (see mvx_native.h). One tracee per struct mvx_tracee, driven from a
 * single thread (ptrace requests must come from the tracer thread). mvx_wait returns to Python
 * only when a decision is needed; unsynced stops are resumed here. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include <elf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "mvx_native.h"
#include "mvx_tables.h"

/* Linux 6.6: the notifier wakes the tracee (and is woken) as a synchronous switch on the same CPU,
 * not through the scheduler (the monitor and its variant share one CPU). Older kernels say EINVAL
 * or ENOTTY and the plain wake-up is used. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

#ifndef MVX_HOST_ISA
#error "unsupported monitor architecture"
#endif
_Static_assert(sizeof(struct user_regs_struct) == MVX_HOST(REGSET_SIZE),
               "mvx_tables.h: the host regset size differs from <sys/user.h>; run `just regen`");

#ifndef NT_ARM_SYSTEM_CALL
#define NT_ARM_SYSTEM_CALL 0x404
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static void set_err(char *err, int errlen, const char *what, int e) {
    if (err && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, strerror(e));
}

/* ---- spawning ------------------------------------------------------------------------- */

/* A network namespace of the variant's own with only loopback up: a follower's sockets never
 * reach the world, and variants on one machine never fight over a port. */
static int loopback_up(char *msg, size_t len) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
        (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
        snprintf(msg, len, "cannot bring up loopback in the follower's network: %s", strerror(errno));
        return -1;
    }
    close(s);
    return 0;
}

static int isolate_network(char *msg, size_t len) {
    if (unshare(CLONE_NEWNET) < 0) {
        snprintf(msg, len, "cannot isolate the follower's network (unshare: %s)", strerror(errno));
        return -1;
    }
    return loopback_up(msg, len);
}

/* ---- a follower's world of its own (MVX_WORLD_*) ------------------------------------------ */

/* Writes a one-line reason to the spawning monitor and ends this process. */
static void world_fail(int fd, const char *what, int e) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
    if (write(fd, msg, n > 0 ? (size_t)n : 0) < 0) { /* nothing more to do */ }
    _exit(127);
}

struct mvx_clone_args {         /* struct clone_args of <linux/sched.h>, whose macros clash with glibc's */
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* File systems that hold no files of a program's own: left out of the overlays. */
static int pseudo_fs(const char *type) {
    static const char *const names[] = {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "binfmt_misc", "debugfs",
        "tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs",
        "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs", NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(type, names[i]) == 0)
            return 1;
    return 0;
}

static int under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == 0);
}

/* mountinfo's octal escapes (\040 for a space) undone in place. */
static void unescape(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

#define WORLD_ROOT "/proc/root"         /* the staging tmpfs is mounted over the old /proc */
#define MAX_MOUNTS 256

/* Every file system the variant could write to is seen through an overlay whose upper layer is a
 * tmpfs of this mount namespace: what the follower creates, writes, renames or deletes stays in its
 * own copy, and the leader's world is never touched. /dev and /sys are bound as they are (/dev/shm
 * and other file-holding mounts below them get overlays too); /proc is mounted anew by the caller.
 * The old root is then swapped out with pivot_root. */
static void private_files(int report) {
    static char mps[MAX_MOUNTS][512], types[MAX_MOUNTS][64];
    static char line[4096];
    int n = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        world_fail(report, "cannot read /proc/self/mountinfo", errno);
    while (fgets(line, sizeof line, f) && n < MAX_MOUNTS) {
        char *fields[64];
        int nf = 0;
        for (char *tok = strtok(line, " \n"); tok && nf < 64; tok = strtok(NULL, " \n"))
            fields[nf++] = tok;
        int dash = 6;
        while (dash < nf && strcmp(fields[dash], "-") != 0)
            dash++;
        if (nf < 7 || dash + 1 >= nf)
            continue;
        unescape(fields[4]);
        snprintf(mps[n], sizeof mps[n], "%s", fields[4]);
        snprintf(types[n], sizeof types[n], "%s", fields[dash + 1]);
        n++;
    }
    fclose(f);
    if (mount("mvx-world", "/proc", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
        world_fail(report, "cannot mount the follower's staging tmpfs", errno);
    char opts[1400], target[600], upper[64], work[64];
    int layer = 0;
    /* the root first, then the rest in mount order (parents come before their children) */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const char *mp = mps[i], *type = types[i];
            int is_root = strcmp(mp, "/") == 0;
            if (pass == 0 ? !is_root : is_root)
                continue;
            if (under(mp, "/proc"))
                continue;
            int dup = 0;                /* a later mount at the same place hides this one */
            for (int j = i + 1; j < n; j++)
                dup |= strcmp(mps[j], mp) == 0;
            if (dup)
                continue;
            snprintf(target, sizeof target, WORLD_ROOT "%.511s", is_root ? "" : mp);
            if (pass == 0)
                mkdir(WORLD_ROOT, 0700);
            if (strcmp(mp, "/dev") == 0 || strcmp(mp, "/sys") == 0) {
                if (mount(mp, target, NULL, MS_BIND | MS_REC, NULL) < 0)
                    world_fail(report, "cannot bind /dev or /sys into the follower's world", errno);
                continue;
            }
            if ((under(mp, "/dev") || under(mp, "/sys")) && pseudo_fs(type))
                continue;               /* already there with the recursive bind */
            struct stat st;
            if (pseudo_fs(type) || (stat(mp, &st) == 0 && !S_ISDIR(st.st_mode)) ||
                strpbrk(mp, ",:\\")) {
                /* read-only as it is: nothing of the follower's can land in the leader's world */
                if (mount(mp, target, NULL, MS_BIND, NULL) < 0 ||
                    mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) {
                    if (pseudo_fs(type))
                        continue;
                    snprintf(opts, sizeof opts, "cannot give the follower a private view of %.511s", mp);
                    world_fail(report, opts, errno);
                }
                continue;
            }
            snprintf(upper, sizeof upper, "/proc/u%d", layer);
            snprintf(work, sizeof work, "/proc/w%d", layer);
            layer++;
            if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0)
                world_fail(report, "cannot make the follower's overlay layers", errno);
            snprintf(opts, sizeof opts, "lowerdir=%.511s,upperdir=%s,workdir=%s", mp, upper, work);
            if (mount("mvx-world", target, "overlay", 0, opts) < 0) {
                snprintf(opts, sizeof opts, "cannot give the follower a private view of %.511s (overlay)", mp);
                world_fail(report, opts, errno);
            }
        }
    }
    if (chdir(WORLD_ROOT) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0)
        world_fail(report, "cannot enter the follower's world (pivot_root)", errno);
}

/* Pid 1 of the follower's pid namespace: makes the variant with the leader's pid, gives it its
 * files and its own /proc, tells the monitor the variant's pid as the monitor sees it, and reaps. */
static void world_init(int report, int go, int flags, int as_pid) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* the namespace (and the variant) ends with its maker */
    pid_t want = as_pid;
    struct mvx_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    if (want > 1) {
        ca.set_tid = (uint64_t)(uintptr_t)&want;
        ca.set_tid_size = 1;
    }
    long c = syscall(SYS_clone3, &ca, sizeof ca);
    if (c < 0) {
        char what[96];
        snprintf(what, sizeof what, "cannot give the follower the leader's pid %d", as_pid);
        world_fail(report, what, errno);
    }
    if (c == 0) {               /* the variant: wait until the monitor traces it */
        close(report);
        char b;
        ssize_t r;
        do
            r = read(go, &b, 1);
        while (r < 0 && errno == EINTR);
        if (r != 1)
            _exit(127);
        close(go);
        return;
    }
    close(go);
    long host = -1;
    FILE *f = fopen("/proc/thread-self/children", "re");
    if (!f || fscanf(f, "%ld", &host) != 1) {
        kill((pid_t)c, SIGKILL);
        world_fail(report, "cannot find the follower's pid (/proc/thread-self/children)", f ? EIO : errno);
    }
    fclose(f);
    if (flags & MVX_WORLD_FILES)
        private_files(report);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        kill((pid_t)c, SIGKILL);
        world_fail(report, "cannot mount the follower's /proc", errno);
    }
    char msg[32];
    int len = snprintf(msg, sizeof msg, "P%ld", host);
    if (write(report, msg, (size_t)len) < 0) { /* the monitor is gone: the variant waits for go */ }
    close(report);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    int st = 0;
    for (;;) {
        pid_t w = waitpid(-1, &st, 0);
        if (w == (pid_t)c || (w < 0 && errno != EINTR))
            break;
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* The process that makes the namespaces; its child is their pid 1. Returns only in the variant. */
static void enter_world(int report, int go, int flags, int as_pid, int isolate_net) {
    int ns = CLONE_NEWPID | CLONE_NEWNS | (isolate_net ? CLONE_NEWNET : 0);
    char msg[256];
    if (unshare(ns) < 0)
        world_fail(report, "cannot give the follower a world of its own (unshare; it needs root)", errno);
    if (isolate_net && loopback_up(msg, sizeof msg) < 0)
        world_fail(report, msg, errno);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        world_fail(report, "cannot make the follower's mounts private", errno);
    pid_t b = fork();
    if (b < 0)
        world_fail(report, "fork", errno);
    if (b == 0) {
        world_init(report, go, flags, as_pid);
        return;
    }
    close(report);
    close(go);
    sigset_t all;                       /* plumbing: a stray signal must not end the world */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    int st = 0;
    while (waitpid(b, &st, 0) < 0 && errno == EINTR) {}
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* Put passed[i] at 3 + i (each first copied above the targets, so that no target overwrites a
 * source still to be placed); the copies are closed with the rest. 0, or -1 with errno. */
static int pass_fds(const int *passed, int npassed) {
    int high[MVX_MAX_PASSED];
    for (int i = 0; i < npassed; i++)
        if ((high[i] = fcntl(passed[i], F_DUPFD, 3 + npassed)) < 0)
            return -1;
    for (int i = 0; i < npassed; i++)
        if (dup2(high[i], 3 + i) < 0) /* (without close-on-exec) */
            return -1;
    return 0;
}

/* Socket activation (sd_listen_fds): LISTEN_PID must name the program's own pid, which is known
 * only here (in a pid namespace of its own, the pid it has there). */
static void set_listen_pid(char **envp) {
    static char entry[32];
    for (int i = 0; envp[i]; i++)
        if (strncmp(envp[i], "LISTEN_PID=", 11) == 0) {
            snprintf(entry, sizeof entry, "LISTEN_PID=%d", (int)getpid());
            envp[i] = entry;
        }
}

/* The child: everything before execve is plain C, so the only syscalls between the filter
 * load and the exec are the exec itself. Failures before PTRACE_TRACEME go through the error
 * pipe; later ones are seen by the parent at the syscall stops. In a world of its own (go >= 0)
 * the variant is a grandchild, traced with PTRACE_SEIZE once the monitor knows its pid, and waits
 * for a byte on `go` before it goes on. */
static void child_main(int errfd, const char *path, char *const argv[], char *const envp[],
                       const char *cwd, const void *bpf, int bpf_len, int want_listener, int cpu,
                       int fd0, int fd1, int fd2, pid_t parent, int isolate_net, int go, int world,
                       int as_pid, const int *passed, int npassed, const int *agent) {
    char msg[256];
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)       /* Python ignores SIGPIPE and SIGXFSZ; ignored */
        signal(s, SIG_DFL);              /* dispositions would survive the exec */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(127);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    int fds[3] = {fd0, fd1, fd2};
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0 && fds[i] != i && dup2(fds[i], i) < 0) {
            snprintf(msg, sizeof msg, "dup2: %s", strerror(errno));
            goto fail;
        }
    }
    static char here[4096];
    if (!cwd)
        cwd = getcwd(here, sizeof here);
    if (cwd && chdir(cwd) < 0) {
        snprintf(msg, sizeof msg, "cannot change directory to %s: %s", cwd, strerror(errno));
        goto fail;
    }
    if (world) {
        enter_world(errfd, go, world, as_pid, isolate_net);
        /* the variant, traced: its directory again, as the world's files see it */
        if (cwd && chdir(cwd) < 0)
            _exit(126);
    } else {
        if (isolate_net && isolate_network(msg, sizeof msg) < 0)
            goto fail;
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0) {
            snprintf(msg, sizeof msg, "PTRACE_TRACEME: %s", strerror(errno));
            goto fail;
        }
        close(errfd);
    }
    /* the variant starts with stdin/stdout/stderr and the fds it is passed (at 3, 4, ...) only:
     * every variant's fd table is the same, whatever the monitor process holds (channel sockets,
     * log files). (In a world of its own no error pipe is left: a failure is exit status 126.) With
     * the in-process agent, its two memfds at 1022 and 1023 too (first copied above the passed
     * fds' targets, which pass_fds overwrites). */
    int agent_hi[2] = {-1, -1};
    for (int i = 0; i < 2 && agent && agent[0] >= 0; i++)
        if ((agent_hi[i] = fcntl(agent[i], F_DUPFD, 3 + npassed)) < 0 || agent_hi[i] >= 1022)
            agent_hi[0] = -2;
    if (agent_hi[0] == -2 || pass_fds(passed, npassed) < 0 ||
        (agent_hi[0] >= 0 && (dup2(agent_hi[0], 1022) < 0 || dup2(agent_hi[1], 1023) < 0))) {
        snprintf(msg, sizeof msg, "cannot pass fd to the program: %s", strerror(errno));
        if (world)
            _exit(126);
        goto fail;
    }
    if (agent_hi[0] >= 0) {
        syscall(SYS_close_range, 3 + npassed, 1021, 0);
        syscall(SYS_close_range, 1024, ~0U, 0);
    } else {
        syscall(SYS_close_range, 3 + npassed, ~0U, 0);
    }
    if (npassed > 0) /* (before the filter: getpid is a synced call) */
        set_listen_pid((char **)envp);
    if (!world)
        raise(SIGSTOP);
    /* traced now, with PTRACE_O_EXITKILL: the program sees no parent-death signal of mvx's */
    prctl(PR_SET_PDEATHSIG, 0);
    if (bpf) {
        struct sock_fprog prog = {.len = (unsigned short)bpf_len, .filter = (struct sock_filter *)bpf};
        unsigned int flags = want_listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
        /* with CAP_SYS_ADMIN the filter needs no no_new_privs, which the program would see */
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0) {
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0)
                _exit(125);
        }
    }
    execve(path, argv, envp);
    _exit(127);
fail:
    if (write(errfd, msg, strlen(msg)) < 0) { /* nothing more to do */ }
    _exit(127);
}

static int do_resume(struct mvx_tracee *t, int sig) {
    int req = (t->mode == MVX_MODE_PTRACE || t->want_exit) ? PTRACE_SYSCALL : PTRACE_CONT;
    if (ptrace(req, t->pid, 0, (void *)(long)sig) < 0)
        return -errno;
    return 0;
}

int mvx_pidfd_getfd(int pid, int targetfd) {
    int pidfd = syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return -errno;
    int fd = syscall(SYS_pidfd_getfd, pidfd, targetfd, 0);
    int e = errno;
    close(pidfd);
    return fd < 0 ? -e : fd;
}

int mvx_block_sigchld(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    return pthread_sigmask(SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

/* At the exec event the new program's stack holds argc, argv, envp and the auxiliary vector.
 * Turning AT_SYSINFO_EHDR (and i386's AT_SYSINFO) into AT_IGNORE hides the vDSO from libc, which
 * then makes real clock_gettime/gettimeofday/time syscalls that the monitor can trap and replicate
 * (the kernel still maps the vDSO; nothing calls into it). */
static int hide_vdso(int pid) {
    unsigned long long regs[64];
    struct iovec iov = {regs, sizeof regs};
    if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0)
        return -1;
    unsigned long long sp;
    size_t w;
    if (iov.iov_len == MVX_HOST(REGSET_SIZE)) {
        memcpy(&sp, (char *)regs + MVX_HOST(REG_SP), sizeof sp);
        w = 8;
    } else {                    /* the i386 compat view: 17 32-bit registers, esp is the 16th */
        sp = ((uint32_t *)regs)[15];
        w = 4;
    }
    static unsigned char stack[256 << 10];
    long n = mvx_read_mem(pid, sp, stack, sizeof stack);
    if (n <= 0) {
        errno = n < 0 ? (int)-n : EFAULT;
        return -1;
    }
#define WORD(i) (w == 8 ? ((uint64_t *)stack)[i] : (uint64_t)((uint32_t *)stack)[i])
    size_t words = (size_t)n / w, i = 1 + WORD(0) + 1;  /* argc, argv..., NULL */
    while (i < words && WORD(i) != 0)                  /* envp..., NULL */
        i++;
    for (i++; i + 1 < words && WORD(i) != AT_NULL; i += 2) {
        if (WORD(i) == AT_SYSINFO_EHDR || WORD(i) == 32 /* AT_SYSINFO */) {
            uint64_t ignore = AT_IGNORE;
            if (mvx_write_mem(pid, sp + i * w, &ignore, w) != (long)w) {
                errno = EFAULT;
                return -1;
            }
        }
    }
#undef WORD
    return 0;
}

/* The namespaces' maker ends once the variant has: reaped here so that nothing is left behind. */
static void reap_world(struct mvx_tracee *t) {
    if (t->world_pid <= 0)
        return;
    int st;
    for (int i = 0; i < 200 && waitpid(t->world_pid, &st, WNOHANG) == 0; i++)
        usleep(5000);
    if (waitpid(t->world_pid, &st, WNOHANG) == 0) {
        kill(t->world_pid, SIGKILL);
        waitpid(t->world_pid, &st, 0);
    }
    t->world_pid = 0;
}

int mvx_spawn(struct mvx_tracee *t, const char *path, char *const argv[], char *const envp[],
              const char *cwd, const void *bpf, int bpf_len, int want_listener, int cpu,
              int fd0, int fd1, int fd2, char *err, int errlen) {
    int mode = t->mode, report = t->report_signals, isolate = t->isolate_net, hide = t->hide_vdso;
    int sync_wake_up = t->sync_wake_up, world = t->world, as_pid = t->as_pid;
    unsigned char tp[MVX_MAX_NR], ts[MVX_MAX_NR];
    unsigned int ap = t->arch_primary, as = t->arch_secondary;
    memcpy(tp, t->traced_primary, sizeof tp);
    memcpy(ts, t->traced_secondary, sizeof ts);
    int passed[MVX_MAX_PASSED], npassed = t->npassed < 0 ? 0 : t->npassed > MVX_MAX_PASSED ? MVX_MAX_PASSED : t->npassed;
    memcpy(passed, t->passed, sizeof passed);
    int agent[2] = {t->agent_fds[0], t->agent_fds[1]};
    int has_agent = agent[0] > 2 && agent[1] > 2; /* (a zeroed struct: none) */
    memset(t, 0, sizeof *t);
    t->agent_fds[0] = agent[0];
    t->agent_fds[1] = agent[1];
    t->mode = mode; t->report_signals = report; t->arch_primary = ap; t->arch_secondary = as;
    t->isolate_net = isolate;
    t->hide_vdso = hide;
    t->sync_wake_up = sync_wake_up;
    t->world = world;
    t->as_pid = as_pid;
    memcpy(t->traced_primary, tp, sizeof tp);
    memcpy(t->traced_secondary, ts, sizeof ts);
    t->notify_fd = -1;
    t->sigchld_fd = -1;

    if (want_listener) {
        mvx_block_sigchld();
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        t->sigchld_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (t->sigchld_fd < 0) {
            set_err(err, errlen, "signalfd", errno);
            return -1;
        }
    }
    int pipefd[2], gofd[2] = {-1, -1};
    if (pipe2(pipefd, O_CLOEXEC) < 0 || (world && pipe2(gofd, O_CLOEXEC) < 0)) {
        set_err(err, errlen, "pipe", errno);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        set_err(err, errlen, "fork", errno);
        close(pipefd[0]);
        close(pipefd[1]);
        if (world) { close(gofd[0]); close(gofd[1]); }
        return -1;
    }
    if (pid == 0) {
        close(pipefd[0]);
        if (world)
            close(gofd[1]);
        child_main(pipefd[1], path, argv, envp, cwd, bpf, bpf_len, want_listener, cpu, fd0, fd1,
                   fd2, parent, isolate, gofd[0], world, as_pid, passed, npassed, has_agent ? agent : NULL);
    }
    close(pipefd[1]);
    int st;
    long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL |
                PTRACE_O_TRACESECCOMP;
    if (world) {
        /* the variant is the grandchild of the namespaces' maker: its pid 1 sends "P<pid>" */
        close(gofd[0]);
        char msg[256] = {0};
        size_t got = 0;
        ssize_t r;
        while (got < sizeof msg - 1 && ((r = read(pipefd[0], msg + got, sizeof msg - 1 - got)) > 0 ||
                                        (r < 0 && errno == EINTR)))
            got += r > 0 ? (size_t)r : 0;
        close(pipefd[0]);
        t->world_pid = pid;
        pid_t v = msg[0] == 'P' ? (pid_t)atol(msg + 1) : 0;
        if (v <= 0) {
            snprintf(err, errlen, "%s", got ? msg : "the variant died before it could be traced");
            close(gofd[1]);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            t->world_pid = 0;
            return -1;
        }
        t->pid = pid = v;
        if (ptrace(PTRACE_SEIZE, pid, 0, (void *)opts) < 0 || ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0 ||
            waitpid(pid, &st, __WALL) < 0 || !WIFSTOPPED(st)) {
            set_err(err, errlen, "PTRACE_SEIZE of the follower in its world", errno);
            close(gofd[1]);
            goto fail;
        }
        if (write(gofd[1], "g", 1) != 1) {
            set_err(err, errlen, "starting the follower in its world", errno);
            close(gofd[1]);
            goto fail;
        }
        close(gofd[1]);
        goto step;
    }
    t->pid = pid;

    if (waitpid(pid, &st, __WALL) < 0 || !WIFSTOPPED(st)) {
        char msg[256] = {0};
        ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
        close(pipefd[0]);
        if (n > 0)
            snprintf(err, errlen, "%s", msg);
        else
            snprintf(err, errlen, "the variant died before it could be traced");
        waitpid(pid, &st, __WALL | WNOHANG);
        return -1;
    }
    close(pipefd[0]);
    if (ptrace(PTRACE_SETOPTIONS, pid, 0, (void *)opts) < 0) {
        set_err(err, errlen, "PTRACE_SETOPTIONS", errno);
        kill(pid, SIGKILL);
        waitpid(pid, &st, __WALL);
        return -1;
    }
step:;
    /* Step the child syscall by syscall up to its exec: pick up the listener fd at the exit of
     * seccomp() and see a failing execve at its exit. */
    long long last_nr = -1;
    for (;;) {
        if (ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0) {
            set_err(err, errlen, "PTRACE_SYSCALL", errno);
            goto fail;
        }
        if (waitpid(pid, &st, __WALL) < 0) {
            set_err(err, errlen, "waitpid", errno);
            goto fail;
        }
        if (WIFEXITED(st)) {
            snprintf(err, errlen, WEXITSTATUS(st) == 125 ? "the kernel refused the seccomp filter"
                                                         : "the variant exited (%d) before exec",
                     WEXITSTATUS(st));
            return -1;
        }
        if (WIFSIGNALED(st)) {
            snprintf(err, errlen, "the variant was killed by signal %d before exec", WTERMSIG(st));
            return -1;
        }
        int event = st >> 16;
        if (WSTOPSIG(st) == SIGTRAP && event == PTRACE_EVENT_EXEC) {
            if (t->hide_vdso && hide_vdso(pid) < 0) {
                set_err(err, errlen, "hiding the vDSO in the auxiliary vector", errno);
                goto fail;
            }
            break;
        }
        if (WSTOPSIG(st) == (SIGTRAP | 0x80)) {
            struct __ptrace_syscall_info info;
            if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) < 0) {
                set_err(err, errlen, "PTRACE_GET_SYSCALL_INFO", errno);
                goto fail;
            }
            if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
                last_nr = info.entry.nr;
            } else if (info.op == PTRACE_SYSCALL_INFO_EXIT) {
                if (last_nr == SYS_seccomp && want_listener) {
                    if (info.exit.is_error) {
                        set_err(err, errlen, "seccomp", (int)-info.exit.rval);
                        goto fail;
                    }
                    t->notify_fd = mvx_pidfd_getfd(pid, (int)info.exit.rval);
                    if (t->notify_fd < 0) {
                        set_err(err, errlen, "pidfd_getfd", -t->notify_fd);
                        goto fail;
                    }
                    if (t->sync_wake_up)
                        t->sync_wake_up = ioctl(t->notify_fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                                                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0;
                } else if (last_nr == SYS_execve && info.exit.is_error) {
                    snprintf(err, errlen, "cannot execute %s: %s", path,
                             strerror((int)-info.exit.rval));
                    goto fail;
                }
            }
        }
        /* seccomp stops (a traced execve) and anything else: keep stepping */
    }
    /* At the exec event the tracee is inside execve: in ptrace mode its exit stop comes next. */
    t->want_exit = 0;
    if (do_resume(t, 0) < 0) {
        set_err(err, errlen, "resume after exec", errno);
        goto fail;
    }
    return pid;
fail:
    kill(pid, SIGKILL);
    waitpid(pid, &st, __WALL);
    reap_world(t);
    t->exited = 1;
    return -1;
}

/* ---- the stop loop ---------------------------------------------------------------------- */

static int is_traced(struct mvx_tracee *t, unsigned int arch, long long nr) {
    if (nr < 0 || nr >= MVX_MAX_NR)
        return 0;
    if (arch == t->arch_primary)
        return t->traced_primary[nr];
    if (arch == t->arch_secondary)
        return t->traced_secondary[nr];
    return 1; /* an arch we were not told about: let Python see it (fail closed) */
}

static void fill_info(struct mvx_event *ev, struct __ptrace_syscall_info *info) {
    ev->arch = info->arch;
    ev->ip = info->instruction_pointer;
    ev->sp = info->stack_pointer;
    if (info->op == PTRACE_SYSCALL_INFO_ENTRY) {
        ev->nr = info->entry.nr;
        memcpy(ev->args, info->entry.args, sizeof ev->args);
    } else if (info->op == PTRACE_SYSCALL_INFO_SECCOMP) {
        ev->nr = info->seccomp.nr;
        memcpy(ev->args, info->seccomp.args, sizeof ev->args);
        ev->ret_data = info->seccomp.ret_data;
    } else if (info->op == PTRACE_SYSCALL_INFO_EXIT) {
        ev->ret = info->exit.rval;
        ev->is_error = info->exit.is_error;
    }
}

/* Handle one waitpid status. Returns 1 when ev holds an event for Python, 0 when the tracee was
 * resumed here, negative errno on failure. */
static int handle_status(struct mvx_tracee *t, int st, struct mvx_event *ev) {
    ev->pid = t->pid;
    if (WIFEXITED(st)) {
        t->exited = 1;
        reap_world(t);
        ev->kind = MVX_EV_EXITED;
        ev->status = WEXITSTATUS(st);
        return 1;
    }
    if (WIFSIGNALED(st)) {
        t->exited = 1;
        reap_world(t);
        ev->kind = MVX_EV_KILLED;
        ev->status = WTERMSIG(st);
        return 1;
    }
    if (!WIFSTOPPED(st))
        return 0;
    t->stops++;
    int sig = WSTOPSIG(st), event = st >> 16;
    if (sig == (SIGTRAP | 0x80)) {
        struct __ptrace_syscall_info info;
        if (ptrace(PTRACE_GET_SYSCALL_INFO, t->pid, sizeof info, &info) < 0)
            return -errno;
        if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
            t->in_syscall = 1;
            if (is_traced(t, info.arch, info.entry.nr)) {
                ev->kind = MVX_EV_ENTRY;
                fill_info(ev, &info);
                return 1;
            }
        } else if (info.op == PTRACE_SYSCALL_INFO_EXIT) {
            t->in_syscall = 0;
            if (t->want_exit) {
                t->want_exit = 0;
                ev->kind = MVX_EV_EXIT;
                fill_info(ev, &info);
                return 1;
            }
        }
        int r = do_resume(t, 0);
        return r < 0 ? r : 0;
    }
    if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP) {
        struct __ptrace_syscall_info info;
        if (ptrace(PTRACE_GET_SYSCALL_INFO, t->pid, sizeof info, &info) < 0)
            return -errno;
        ev->kind = MVX_EV_SECCOMP;
        fill_info(ev, &info);
        return 1;
    }
    if (sig == SIGTRAP && event == PTRACE_EVENT_EXEC) {
        ev->kind = MVX_EV_EXEC;
        return 1;
    }
    if (event != 0) { /* other ptrace events: nothing to decide */
        int r = do_resume(t, 0);
        return r < 0 ? r : 0;
    }
    /* signal-delivery stop, or a group-stop (GETSIGINFO fails with EINVAL) */
    siginfo_t si;
    if (ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si) < 0) {
        int r = do_resume(t, 0);
        return r < 0 ? r : 0;
    }
    if (t->report_signals) {
        ev->kind = MVX_EV_SIGNAL;
        ev->status = sig;
        t->pending_sig = sig;
        return 1;
    }
    int r = do_resume(t, sig);
    return r < 0 ? r : 0;
}

int mvx_wait(struct mvx_tracee *t, struct mvx_event *ev) { return mvx_wait_fd(t, ev, -1); }

/* mvx_wait that also returns MVX_EV_READABLE when `extra` (a follower's channel: its monitor thread
 * reads it itself) becomes readable first; only where the loop polls (hybrid), else as mvx_wait. */
int mvx_wait_fd(struct mvx_tracee *t, struct mvx_event *ev, int extra) {
    return mvx_wait_fds(t, ev, &extra, extra >= 0 ? 1 : 0);
}

/* mvx_wait_fd with up to 64 extra fds (the leader's channels to its followers, which its monitor
 * thread reads itself in mvx_fast_wait): MVX_EV_READABLE when one is readable and no notification
 * waits; t->extra_ready says whether one was readable at the last poll, whatever it returned. */
int mvx_wait_fds(struct mvx_tracee *t, struct mvx_event *ev, const int *extra, int nextra) {
    memset(ev, 0, sizeof *ev);
    t->extra_ready = 0;
    if (nextra > 64)
        nextra = 64;
    for (;;) {
        int st, r;
        if (t->exited)
            return -ECHILD;
        if (t->notify_fd >= 0) {
            pid_t w = waitpid(t->pid, &st, __WALL | WNOHANG);
            if (w < 0 && errno != EINTR)
                return -errno;
            if (w > 0) {
                r = handle_status(t, st, ev);
                if (r != 0)
                    return r < 0 ? r : 0;
                continue;
            }
            struct pollfd pfd[2 + 64] = {{t->notify_fd, POLLIN, 0}, {t->sigchld_fd, POLLIN, 0}};
            for (int i = 0; i < nextra; i++)
                pfd[2 + i] = (struct pollfd){extra[i], POLLIN, 0};
            if (poll(pfd, 2 + nextra, -1) < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            for (int i = 0; i < nextra; i++)
                if (pfd[2 + i].revents)
                    t->extra_ready = 1;
            if (pfd[1].revents) {
                struct signalfd_siginfo si;
                while (read(t->sigchld_fd, &si, sizeof si) > 0) {}
            }
            if (pfd[0].revents & POLLIN) {
                struct seccomp_notif n;
                memset(&n, 0, sizeof n);
                if (ioctl(t->notify_fd, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0) {
                    if (errno == EINTR || errno == ENOENT)
                        continue; /* the waiting syscall was interrupted */
                    return -errno;
                }
                ev->kind = MVX_EV_NOTIFY;
                ev->pid = n.pid;
                ev->notif_id = n.id;
                ev->arch = n.data.arch;
                ev->nr = n.data.nr;
                ev->ip = n.data.instruction_pointer;
                memcpy(ev->args, n.data.args, sizeof ev->args);
                return 0;
            }
            if (t->extra_ready && !(pfd[0].revents & POLLIN)) {
                ev->kind = MVX_EV_READABLE;
                return 0;
            }
            if (pfd[0].revents & (POLLHUP | POLLERR)) {
                /* the filter's last user is gone; the exit status comes through waitpid */
                if (waitpid(t->pid, &st, __WALL) < 0)
                    return -errno;
                r = handle_status(t, st, ev);
                if (r != 0)
                    return r < 0 ? r : 0;
            }
            continue;
        }
        if (waitpid(t->pid, &st, __WALL) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        r = handle_status(t, st, ev);
        if (r != 0)
            return r < 0 ? r : 0;
    }
}

int mvx_resume(struct mvx_tracee *t, int how) {
    t->want_exit = (how == MVX_RESUME_TO_EXIT);
    int sig = t->pending_sig;
    t->pending_sig = 0;
    return do_resume(t, sig);
}

/* ---- registers ---------------------------------------------------------------------------- */

/* The host's regset as raw bytes; every offset comes from mvx_tables.h (keyed by the host ISA). */
typedef unsigned long long mvx_regs_t[(MVX_HOST(REGSET_SIZE) + 7) / 8];

static unsigned long long reg_get(const mvx_regs_t r, int off) {
    unsigned long long v;
    memcpy(&v, (const char *)r + off, sizeof v);
    return v;
}

static void reg_set(mvx_regs_t r, int off, unsigned long long v) {
    memcpy((char *)r + off, &v, sizeof v);
}

/* Read/write the whole regset: PTRACE_GETREGS on x86_64 (always the 64-bit view, i386 tracees
 * included), NT_PRSTATUS elsewhere. */
static int regs_read(int pid, void *r) {
#if defined(__x86_64__)
    return ptrace(PTRACE_GETREGS, pid, 0, r) < 0 ? -errno : 0;
#else
    struct iovec iov = {r, MVX_HOST(REGSET_SIZE)};
    return ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0 ? -errno : 0;
#endif
}

static int regs_write(int pid, const void *r) {
#if defined(__x86_64__)
    return ptrace(PTRACE_SETREGS, pid, 0, r) < 0 ? -errno : 0;
#else
    struct iovec iov = {(void *)r, MVX_HOST(REGSET_SIZE)};
    return ptrace(PTRACE_SETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0 ? -errno : 0;
#endif
}

/* Set the syscall number at an entry or seccomp stop: in `r` (written back by the caller) where
 * the regset holds it, else through the ISA's regset of its own (aarch64: NT_ARM_SYSTEM_CALL). */
static int nr_write(int pid, mvx_regs_t r, long long nr) {
    if (MVX_HOST(NR_WRITE_REGSET)) {
        int n = (int)nr;
        struct iovec sc = {&n, sizeof n};
        return ptrace(PTRACE_SETREGSET, pid, (void *)(long)MVX_HOST(NR_WRITE_REGSET), &sc) < 0 ? -errno : 0;
    }
    reg_set(r, MVX_HOST(REG_NR), (unsigned long long)nr);
    return 0;
}

int mvx_get_regs(int pid, unsigned int arch, void *buf, int len) {
    (void)arch;
    if (len < MVX_HOST(REGSET_SIZE))
        return -EINVAL;
    return regs_read(pid, buf);
}

int mvx_set_regs(int pid, unsigned int arch, const void *buf, int len) {
    (void)arch;
    if (len < MVX_HOST(REGSET_SIZE))
        return -EINVAL;
    return regs_write(pid, buf);
}

/* Skip the syscall at an entry or seccomp stop: the number becomes -1 and the return register
 * gets retval in the same stop. The kernel leaves the return register alone for nr == -1 on
 * x86_64, on the i386 compat entry and on aarch64, so no exit stop is needed. */
int mvx_skip(struct mvx_tracee *t, unsigned int arch, long long retval, int how) {
    (void)arch;
    mvx_regs_t r;
    int e = regs_read(t->pid, r);
    if (e < 0 || (e = nr_write(t->pid, r, -1)) < 0)
        return e;
    reg_set(r, MVX_HOST(REG_RET), (unsigned long long)retval);
    if ((e = regs_write(t->pid, r)) < 0)
        return e;
    return mvx_resume(t, how);
}

/* At an entry or seccomp stop: do not execute the call now, but leave the variant so that it
 * makes the same call again when it next runs (the number or first argument back in the return
 * register, the instruction pointer back on the syscall instruction). A signal delivered on this
 * resume then runs its handler just before the call: the point mvx replicates signals at. */
int mvx_rewind(struct mvx_tracee *t, int how) {
    mvx_regs_t r;
    int e = regs_read(t->pid, r);
    if (e < 0)
        return e;
    if (!MVX_HOST(NR_WRITE_REGSET))  /* x86: syscall, int $0x80 and sysenter read the number from eax */
        reg_set(r, MVX_HOST(REG_RET), reg_get(r, MVX_HOST(REG_NR)));
    /* (aarch64: x8 still holds the number, x0 the first argument) */
    if ((e = nr_write(t->pid, r, -1)) < 0)
        return e;
    reg_set(r, MVX_HOST(REG_IP), reg_get(r, MVX_HOST(REG_IP)) - MVX_HOST(SYSCALL_INSN_LEN));
    if ((e = regs_write(t->pid, r)) < 0)
        return e;
    return mvx_resume(t, how);
}

/* At the signal-delivery stop that interrupted a notified call (its return register holds the
 * kernel's -ERESTARTSYS and kin): make the call restart after the handler whatever SA_RESTART
 * says, as if the signal had come just before the call. 1 if done, 0 if no call was interrupted. */
int mvx_restart_interrupted(struct mvx_tracee *t) {
    mvx_regs_t r;
    int e = regs_read(t->pid, r);
    if (e < 0)
        return e;
    long long ret = (long long)reg_get(r, MVX_HOST(REG_RET));
    /* where the regset holds the kernel's own record of the number (x86 orig_rax), < 0: no call */
    if (!MVX_HOST(NR_WRITE_REGSET) && (long long)reg_get(r, MVX_HOST(REG_NR)) < 0)
        return 0;
    /* an i386 tracee's eax: only the low 32 bits count */
    if ((int)ret != -MVX_HOST(ERESTARTSYS) && (int)ret != -MVX_HOST(ERESTARTNOHAND)
        && (int)ret != -MVX_HOST(ERESTART_RESTARTBLOCK))
        return 0;
    int err = mvx_set_return(t, 0, -MVX_HOST(ERESTARTNOINTR));
    return err < 0 ? err : 1;
}

/* At the signal-delivery stop of a signal sent at an entry or seccomp stop whose call was then
 * skipped (mvx_skip): make call `nr` look interrupted by it, as a real blocking call is (its number
 * back, -ERESTARTSYS in the return register), so the kernel restarts it or fails it with EINTR per
 * the handler's SA_RESTART. x86 only (-ENOSYS where the number lives in a regset of its own). */
int mvx_interrupted_by_signal(struct mvx_tracee *t, long long nr) {
    if (MVX_HOST(NR_WRITE_REGSET))
        return -ENOSYS;
    mvx_regs_t r;
    int e = regs_read(t->pid, r);
    if (e < 0)
        return e;
    reg_set(r, MVX_HOST(REG_NR), (unsigned long long)nr);
    reg_set(r, MVX_HOST(REG_RET), (unsigned long long)(long long)-MVX_HOST(ERESTARTSYS));
    return regs_write(t->pid, r);
}

/* At a signal-delivery stop: the siginfo the handler will get (in the tracer's layout; the kernel
 * converts for a 32-bit tracee), read or replaced. */
int mvx_siginfo(int pid, void *buf, int set) {
    return ptrace(set ? PTRACE_SETSIGINFO : PTRACE_GETSIGINFO, pid, 0, buf) < 0 ? -errno : 0;
}

/* Set the return register at a syscall-exit stop. */
int mvx_set_return(struct mvx_tracee *t, unsigned int arch, long long retval) {
    (void)arch;
    mvx_regs_t r;
    int e = regs_read(t->pid, r);
    if (e < 0)
        return e;
    reg_set(r, MVX_HOST(REG_RET), (unsigned long long)retval);
    return regs_write(t->pid, r);
}

/* ---- memory --------------------------------------------------------------------------------- */

long mvx_read_mem(int pid, unsigned long long addr, void *buf, unsigned long len) {
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    long n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return n < 0 ? -errno : n;
}

long mvx_write_mem(int pid, unsigned long long addr, const void *buf, unsigned long len) {
    struct iovec local = {(void *)buf, len}, remote = {(void *)(uintptr_t)addr, len};
    long n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    return n < 0 ? -errno : n;
}

/* Read a NUL-terminated string page by page (a string may end just before an unmapped page).
 * Returns its length without the NUL, or limit if none was found within limit bytes. */
long mvx_read_cstr(int pid, unsigned long long addr, char *buf, unsigned long limit) {
    unsigned long done = 0;
    while (done < limit) {
        unsigned long page_left = 4096 - ((addr + done) & 4095);
        unsigned long want = limit - done < page_left ? limit - done : page_left;
        long n = mvx_read_mem(pid, addr + done, buf + done, want);
        if (n <= 0)
            return done ? (long)done : (n < 0 ? n : -EFAULT);
        void *z = memchr(buf + done, 0, n);
        if (z)
            return (char *)z - buf;
        done += n;
    }
    return (long)limit;
}

/* ---- seccomp user notification ---------------------------------------------------------------- */

int mvx_notif_respond(int fd, unsigned long long id, long long val, int error, int cont) {
    struct seccomp_notif_resp resp = {.id = id, .val = val, .error = error,
                                      .flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0};
    if (cont) {
        resp.val = 0;
        resp.error = 0;
    }
    return ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 ? -errno : 0;
}

int mvx_notif_addfd(int fd, unsigned long long id, int srcfd, int newfd, int setfd, int send,
                    int cloexec) {
    struct seccomp_notif_addfd a = {
        .id = id,
        .flags = (setfd ? SECCOMP_ADDFD_FLAG_SETFD : 0) | (send ? SECCOMP_ADDFD_FLAG_SEND : 0),
        .srcfd = (unsigned int)srcfd,
        .newfd = setfd ? (unsigned int)newfd : 0,
        .newfd_flags = cloexec ? O_CLOEXEC : 0,
    };
    int r = ioctl(fd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
    return r < 0 ? -errno : r;
}

int mvx_notif_id_valid(int fd, unsigned long long id) {
    return ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 ? 1 : 0;
}

int mvx_kill_tree(struct mvx_tracee *t) {
    if (t->exited || t->pid <= 0)
        return 0;
    kill(t->pid, SIGKILL);
    int st;
    while (waitpid(t->pid, &st, __WALL) >= 0) {
        if (WIFEXITED(st) || WIFSIGNALED(st))
            break;
    }
    t->exited = 1;
    reap_world(t);
    if (t->notify_fd >= 0) close(t->notify_fd);
    if (t->sigchld_fd >= 0) close(t->sigchld_fd);
    t->notify_fd = t->sigchld_fd = -1;
    return 0;
}

/* Rewrite the syscall at an entry or seccomp stop into another one (nr and the first nargs
 * arguments). is_compat: an i386 tracee seen through the 64-bit registers. */
int mvx_set_syscall(struct mvx_tracee *t, long long nr, const unsigned long long args[6], int nargs,
                    int is_compat) {
    const struct mvx_regs *conv = &mvx_isas[is_compat ? MVX_HOST_COMPAT_ISA : MVX_HOST_ISA].regs;
    mvx_regs_t r;
    int e = regs_read(t->pid, r);
    if (e < 0 || (e = nr_write(t->pid, r, nr)) < 0)
        return e;
    for (int i = 0; i < nargs && i < 6; i++)
        reg_set(r, conv->args[i], args[i]);
    return regs_write(t->pid, r);
}

/* The C floor for benchmarks: answer n synced stops (let them run, or skip them with value 0)
 * without returning to Python. Same spawn, filter and mvx_wait as the Python path, so the
 * difference between the two is the cost of deciding in Python. */
long mvx_floor_loop(struct mvx_tracee *t, long n, int inject) {
    struct mvx_event ev;
    long done = 0;
    while (done < n) {
        int r = mvx_wait(t, &ev);
        if (r < 0)
            return r;
        if (ev.kind == MVX_EV_EXITED || ev.kind == MVX_EV_KILLED)
            break;
        if (ev.kind == MVX_EV_EXEC || ev.kind == MVX_EV_SIGNAL) {
            mvx_resume(t, MVX_RESUME_RUN);
            continue;
        }
        done++;
        if (ev.kind == MVX_EV_NOTIFY)
            r = mvx_notif_respond(t->notify_fd, ev.notif_id, 0, 0, !inject);
        else if (inject)
            r = mvx_skip(t, ev.arch, 0, MVX_RESUME_RUN);
        else
            r = mvx_resume(t, MVX_RESUME_RUN);
        if (r < 0)
            return r;
    }
    return done;
}

#ifndef SYS_kcmp
#define SYS_kcmp 312
#endif
#define MVX_KCMP_FILE 0
/* 1 if the variant's fd and the monitor's myfd are the same open file description (kcmp). */
int mvx_same_file(int pid, int fd, int myfd) {
    long r = syscall(SYS_kcmp, pid, getpid(), MVX_KCMP_FILE, fd, myfd);
    return r == 0 ? 1 : (r < 0 ? -errno : 0);
}

#include <sys/epoll.h>
/* epoll_wait on a duplicate of a variant's epoll fd: the events come back with the data the
 * variant registered (raw, in the monitor's layout), which Python's select.epoll would cut to an fd. */
int mvx_epoll_wait_raw(int epfd, void *events, int maxevents, int timeout_ms) {
    int r = epoll_wait(epfd, (struct epoll_event *)events, maxevents, timeout_ms);
    return r < 0 ? -errno : r;
}

/* Wait up to slice_ms for fd to be ready for events, or for the variant pid to exit.
 * Returns 1 ready, 0 timeout, 2 variant gone, negative errno. */
int mvx_wait_ready(int fd, int events, int pid, int slice_ms) {
    (void)pid;
    struct pollfd p = {fd, (short)events, 0};
    int r = poll(&p, 1, slice_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    return r > 0 ? 1 : 0;
}

#include "mvx_fast.c"
