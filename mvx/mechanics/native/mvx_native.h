/* The C hot path of mvx: spawning a traced variant, the stop loop, registers, memory, and
 * seccomp user notification. Declarations here are read by cffi (mvx/mechanics/native/__init__.py), so
 * they use only plain C types. */

#define MVX_MODE_PTRACE 0
#define MVX_MODE_SECCOMP 1
#define MVX_MODE_HYBRID 2

/* event kinds returned by mvx_wait */
#define MVX_EV_ENTRY 1     /* syscall-entry stop (ptrace mode, a traced number) */
#define MVX_EV_SECCOMP 2   /* SECCOMP_RET_TRACE stop */
#define MVX_EV_EXIT 3      /* syscall-exit stop requested by the last resume */
#define MVX_EV_NOTIFY 4    /* a seccomp user notification */
#define MVX_EV_EXITED 5    /* the variant exited: status = exit code */
#define MVX_EV_KILLED 6    /* the variant was killed by a signal: status = signal */
#define MVX_EV_SIGNAL 7    /* signal-delivery stop (only when report_signals is set) */
#define MVX_EV_EXEC 8      /* PTRACE_EVENT_EXEC after the first exec */

/* how to resume after an ENTRY/SECCOMP/EXIT/SIGNAL event */
#define MVX_RESUME_RUN 0        /* let the call run, no exit stop */
#define MVX_RESUME_TO_EXIT 1    /* let the call run and stop at its exit */

#define MVX_MAX_NR 1024

struct mvx_event {
    int kind;
    int pid;
    unsigned int arch;          /* AUDIT_ARCH_* of the stopped thread */
    long long nr;
    unsigned long long args[6];
    long long ret;              /* at EXIT: return value */
    int is_error;
    unsigned int ret_data;      /* at SECCOMP: data of SECCOMP_RET_TRACE */
    unsigned long long notif_id;
    int status;                 /* EXITED: exit code; KILLED/SIGNAL: signal number */
    unsigned long long ip;
    unsigned long long sp;
};

struct mvx_tracee {
    int pid;
    int mode;
    int notify_fd;              /* -1 unless hybrid */
    int sync_wake_up;           /* in: ask for SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP; out: granted */
    int sigchld_fd;             /* signalfd for SIGCHLD (hybrid) */
    int report_signals;
    int isolate_net;            /* the variant gets a network namespace of its own */
    int world;                  /* MVX_WORLD_* flags: a follower's world of its own (below) */
    int as_pid;                 /* with MVX_WORLD_PIDS: the pid (and tid) the variant gets in it */
    int world_pid;              /* the process that made the namespaces (reaped at the end) */
    int in_syscall;             /* ptrace mode: between entry and exit */
    int want_exit;              /* the last resume asked for an exit stop */
    int pending_sig;            /* signal to deliver at the next resume */
    int exited;
    unsigned int arch_primary, arch_secondary;
    unsigned char traced_primary[MVX_MAX_NR];    /* ptrace mode: which numbers to report */
    unsigned char traced_secondary[MVX_MAX_NR];
    unsigned long long stops;   /* every ptrace stop seen, reported or not */
    int hide_vdso;              /* at exec: AT_SYSINFO_EHDR/AT_SYSINFO become AT_IGNORE */
};

/* A follower's world: its own pid namespace, where it has the leader's pid (so getpid, gettid,
 * /proc/self/task/TID and kill(self) agree without translation); with FILES, a copy-on-write view
 * of every file system (an overlay per mount, the changes kept in memory and gone at the end). */
#define MVX_WORLD_PIDS 1
#define MVX_WORLD_FILES 2

int mvx_spawn(struct mvx_tracee *t, const char *path, char *const argv[], char *const envp[],
              const char *cwd, const void *bpf, int bpf_len, int want_listener, int cpu,
              int fd0, int fd1, int fd2, char *err, int errlen);
int mvx_wait(struct mvx_tracee *t, struct mvx_event *ev);
int mvx_resume(struct mvx_tracee *t, int how);
int mvx_skip(struct mvx_tracee *t, unsigned int arch, long long retval, int how);
int mvx_set_return(struct mvx_tracee *t, unsigned int arch, long long retval);
int mvx_rewind(struct mvx_tracee *t, int how);
int mvx_siginfo(int pid, void *buf, int set);
int mvx_restart_interrupted(struct mvx_tracee *t);
int mvx_get_regs(int pid, unsigned int arch, void *buf, int len);
int mvx_set_regs(int pid, unsigned int arch, const void *buf, int len);
long mvx_read_mem(int pid, unsigned long long addr, void *buf, unsigned long len);
long mvx_write_mem(int pid, unsigned long long addr, const void *buf, unsigned long len);
long mvx_read_cstr(int pid, unsigned long long addr, char *buf, unsigned long limit);
int mvx_notif_respond(int fd, unsigned long long id, long long val, int error, int cont);
int mvx_notif_addfd(int fd, unsigned long long id, int srcfd, int newfd, int setfd, int send,
                    int cloexec);
int mvx_notif_id_valid(int fd, unsigned long long id);
int mvx_pidfd_getfd(int pid, int targetfd);
int mvx_kill_tree(struct mvx_tracee *t);
int mvx_block_sigchld(void);
int mvx_set_syscall(struct mvx_tracee *t, long long nr, const unsigned long long args[6], int nargs,
                    int is_compat);
long mvx_floor_loop(struct mvx_tracee *t, long n, int inject);
int mvx_same_file(int pid, int fd, int myfd);
int mvx_epoll_wait_raw(int epfd, void *events, int maxevents, int timeout_ms);
int mvx_wait_ready(int fd, int events, int pid, int slice_ms);
