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
/* reported by mvx_fast_wait after a hot call it carried (mvx_fast.c) */
#define MVX_EV_PIPE_BROKEN 9  /* the leader's write got EPIPE: the program's SIGPIPE is due */
#define MVX_EV_FAST_NOTE 10   /* a follower was lost (mvx_link_take_lost): tell the session */
#define MVX_EV_CHECK_LATE 11  /* a lockstep check timed out: a divergence (the call is unanswered) */
#define MVX_EV_READABLE 12    /* mvx_wait_fd: its extra fd is readable (used inside mvx_fast_wait) */
#define MVX_EV_CHANNEL_END 13 /* a follower's own channel ended (mvx_inbox_end says how) */
#define MVX_EV_AGENT_LIED 14  /* an in-process agent claimed what it was not given or allowed (mvx_fast_error) */

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

#define MVX_MAX_PASSED 64

struct mvx_tracee {
    int pid;
    int mode;
    int notify_fd;              /* -1 unless hybrid */
    int sync_wake_up;           /* in: ask for SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP; out: granted */
    int sigchld_fd;             /* signalfd for SIGCHLD (hybrid) */
    int extra_ready;            /* mvx_wait_fds: one of its extra fds was readable at its last poll */
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
    int passed[MVX_MAX_PASSED]; /* fds of the monitor the variant gets at 3, 4, ... (socket activation) */
    int npassed;
    int agent_fds[2];           /* memfds of the monitor the variant gets at 1022 and 1023 (the in-process
                                 * agent's ring and status page, mvx_agent.h); -1: none */
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
int mvx_wait_fd(struct mvx_tracee *t, struct mvx_event *ev, int extra);
int mvx_wait_fds(struct mvx_tracee *t, struct mvx_event *ev, const int *extra, int nextra);
int mvx_resume(struct mvx_tracee *t, int how);
int mvx_skip(struct mvx_tracee *t, unsigned int arch, long long retval, int how);
int mvx_set_return(struct mvx_tracee *t, unsigned int arch, long long retval);
int mvx_rewind(struct mvx_tracee *t, int how);
int mvx_siginfo(int pid, void *buf, int set);
int mvx_restart_interrupted(struct mvx_tracee *t);
int mvx_interrupted_by_signal(struct mvx_tracee *t, long long nr);
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

/* ---- the data plane in C (mvx_fast.c) ---- */
struct mvx_chan;
struct mvx_tls;
struct mvx_link;
struct mvx_inbox;
struct mvx_fast;

struct mvx_chan *mvx_chan_new(int fd, int send_timeout_ms);
void mvx_chan_free(struct mvx_chan *c);
int mvx_chan_send(struct mvx_chan *c, const void *data, size_t len);
void mvx_chan_shutdown(struct mvx_chan *c);
int mvx_chan_seed(struct mvx_chan *c, const void *data, size_t len);
uint8_t *mvx_chan_special(struct mvx_chan *c, size_t *len);
const char *mvx_chan_error(struct mvx_chan *c);
const char *mvx_chan_send_error(struct mvx_chan *c);
int mvx_chan_set_tls(struct mvx_chan *c, struct mvx_tls *t);

/* mutual TLS 1.3 (mvx_tls.c) */
struct mvx_tls_ctx;
int mvx_tls_available(char *err, size_t errlen);
struct mvx_tls_ctx *mvx_tls_ctx_new(const char *ca, const char *cert, const char *key, const char *crl,
                                    int server, char *err, size_t errlen);
void mvx_tls_ctx_free(struct mvx_tls_ctx *c);
struct mvx_tls *mvx_tls_new(struct mvx_tls_ctx *c);
void mvx_tls_free(struct mvx_tls *t);
const char *mvx_tls_error(struct mvx_tls *t);
int mvx_tls_feed(struct mvx_tls *t, const void *data, size_t len);
int mvx_tls_handshake(struct mvx_tls *t);
size_t mvx_tls_pending(struct mvx_tls *t);
size_t mvx_tls_take(struct mvx_tls *t, void *buf, size_t cap);
int mvx_tls_write(struct mvx_tls *t, const void *data, size_t len);
int mvx_tls_read(struct mvx_tls *t, void *buf, size_t cap);
void mvx_tls_close_notify(struct mvx_tls *t);
int mvx_tls_peer_cn(struct mvx_tls *t, char *out, size_t cap);

struct mvx_link *mvx_link_new(int n, int window);
void mvx_link_free(struct mvx_link *l);
void mvx_link_set_chan(struct mvx_link *l, int i, struct mvx_chan *c);
int mvx_link_all_chans(struct mvx_link *l);
void mvx_link_published(struct mvx_link *l, uint64_t seq);
int mvx_link_on_ack(struct mvx_link *l, int i, uint64_t seq);
int mvx_link_on_checked(struct mvx_link *l, int i, uint64_t seq);
void mvx_link_detach(struct mvx_link *l, int i);
void mvx_link_fail(struct mvx_link *l);
int mvx_link_live(struct mvx_link *l, int i);
uint64_t mvx_link_acked(struct mvx_link *l, int i);
uint64_t mvx_link_checked(struct mvx_link *l, int i);
int mvx_link_failed(struct mvx_link *l);
int mvx_link_take_lost(struct mvx_link *l, int i);
int mvx_link_window_wait(struct mvx_link *l, uint64_t seq);
int mvx_link_checked_wait(struct mvx_link *l, uint64_t seq, int timeout_ms);
int mvx_link_pump(struct mvx_link *l, int i, struct mvx_chan *c);

struct mvx_outbox;
struct mvx_outbox *mvx_outbox_new(struct mvx_link *l, size_t limit);
void mvx_outbox_free(struct mvx_outbox *o);
int mvx_outbox_hold(struct mvx_outbox *o, uint64_t seq, int fd, const void *data, size_t len, int how);
void mvx_outbox_run(struct mvx_outbox *o);
int mvx_outbox_drain(struct mvx_outbox *o, int timeout_ms);
void mvx_outbox_close(struct mvx_outbox *o);
void mvx_outbox_drop(struct mvx_outbox *o);
double mvx_outbox_oldest_wait(struct mvx_outbox *o, uint64_t *seq);
unsigned long long mvx_outbox_sent(struct mvx_outbox *o);
unsigned long long mvx_outbox_held(struct mvx_outbox *o);

struct mvx_inbox *mvx_inbox_new(void);
void mvx_inbox_free(struct mvx_inbox *q);
int mvx_inbox_put(struct mvx_inbox *q, const void *body, size_t len);
void mvx_inbox_close(struct mvx_inbox *q);
double mvx_inbox_oldest_wait(struct mvx_inbox *q);
int mvx_inbox_take(struct mvx_inbox *q, void *out, size_t cap, size_t *len, int timeout_ms);
int mvx_inbox_pump(struct mvx_inbox *q, struct mvx_chan *c);
#define MVX_INBOX_END_STOP 1
#define MVX_INBOX_END_EOF 2
#define MVX_INBOX_END_ERROR 3
void mvx_inbox_own(struct mvx_inbox *q, struct mvx_chan *c);
void mvx_inbox_take_buffered(struct mvx_inbox *q);
int mvx_inbox_end(struct mvx_inbox *q, int *err);

#define MVX_ROLE_LEADER 1
#define MVX_ROLE_FOLLOWER 2
#define MVX_HOT_READ 1
#define MVX_HOT_RECVFROM 2
#define MVX_HOT_WRITE 3
#define MVX_HOT_SENDTO 4
#define MVX_HOT_WRITEV 5
#define MVX_HOT_PREAD 6
#define MVX_HOT_EPOLL_WAIT 7    /* epoll_wait(epfd, events, maxevents, timeout) */
#define MVX_HOT_EPOLL_PWAIT 8   /* epoll_pwait(epfd, events, maxevents, timeout, NULL, size) */
#define MVX_HOT_SHUTDOWN 9      /* shutdown(fd, SHUT_RD|SHUT_WR|SHUT_RDWR) */
#define MVX_HOT_SOCKETCALL 10   /* i386 socketcall: its sub-call decides (mvx_fast_set_socketcall) */
#define MVX_HOT_CLOSE 11        /* close(fd): made in every variant; Python learns it (mvx_fast_take_fd_events) */
#define MVX_HOT_SENDFILE 12     /* sendfile(out, in, &offset (a word), count) from a file of the variant's own */
#define MVX_HOT_SENDFILE64 13   /* the same with a 64-bit offset (i386 sendfile64) */
#define MVX_HOT_SETSOCKOPT 14   /* setsockopt(fd, IPPROTO_TCP, TCP_CORK|TCP_NODELAY, ...): local */
#define MVX_HOT_CLOCK 15        /* clock_gettime(clockid, tp) of a global clock: a timespec of two words */
#define MVX_HOT_CLOCK64 16      /* the same with a 64-bit timespec (i386 clock_gettime64) */
#define MVX_HOT_ACCEPT4 17      /* accept4 on an AF_INET socket (notified): performed by the leader's monitor */
#define MVX_HOT_EPOLL_CTL 18    /* epoll_ctl(epfd, ADD|DEL|MOD, fd, event): made in every variant */
#define MVX_SOCKETCALL_SUBS 21
#define MVX_FDEV_CLOSED 1  /* the variant closed fd through the C loop, which closed dup with it */
#define MVX_FDEV_GRABBED 2 /* the C loop took dup, a duplicate of the variant's fd */
#define MVX_FDEV_NEW 3     /* the leader's monitor accepted a connection: at fd, its own copy dup */
#define MVX_FDEV_PLACEHOLDER 4 /* a follower's placeholder at fd; dup: the other end, the monitor's */
#define MVX_FDEV_EPOLL_CTL 5 /* the variant's epoll_ctl(dup (the epoll fd), op, fd, {data}) */
struct mvx_fdev { /* what the C loop did to the variant's fd table (mvx_fast_take_fd_events) */
    int kind, fd, dup, op;
    unsigned long long data;
};
#define MVX_FD_EPOLL 3    /* an epoll fd whose registrations Python mirrored here */
#define MVX_FD_LEADERS 1  /* a socket of the leader's world (never the variant's own) */
#define MVX_FD_OWN 2      /* an fd of the variant's own world (Traits.world_fd) */
#define MVX_FD_SIGNALFD 4 /* a signalfd: ready for its reader's own signals; never in an epoll set C waits on */
struct mvx_fast *mvx_fast_new(struct mvx_tracee *t, int role);
void mvx_fast_free(struct mvx_fast *f);
void mvx_fast_configure(struct mvx_fast *f, struct mvx_link *link, struct mvx_inbox *inbox,
                        struct mvx_chan *reply, int check_timeout_ms, int ack_every);
void mvx_fast_set_outbox(struct mvx_fast *f, struct mvx_outbox *o);
void mvx_fast_set_batching(struct mvx_fast *f, int on);
void mvx_fast_set_epoll_bit(struct mvx_fast *f, int isa, int bit, const char *name);
void mvx_fast_set_epoll_layout(struct mvx_fast *f, int isa, int size, int data_off);
void mvx_fast_epoll_ctl(struct mvx_fast *f, int epfd, int fd, int add, uint64_t data);
void mvx_fast_epoll_close(struct mvx_fast *f, int fd);
void mvx_fast_epoll_clear(struct mvx_fast *f);
void mvx_fast_set_hot(struct mvx_fast *f, int isa, unsigned int audit, int nr, int hot);
void mvx_fast_set_socketcall(struct mvx_fast *f, int sub, int hot);
void mvx_fast_set_fd(struct mvx_fast *f, int fd, int ok, int dup);
void mvx_fast_forget_fds(struct mvx_fast *f);
void mvx_fast_set_placeholder(struct mvx_fast *f, int fd, int on);
void mvx_fast_set_dup(struct mvx_fast *f, int fd, int dup);
int mvx_fast_digest(const void *data, size_t n, char *out);
int mvx_fast_take_fd_events(struct mvx_fast *f, struct mvx_fdev *out, int cap);
void mvx_fast_set_state(struct mvx_fast *f, int enabled, uint64_t seq);
uint64_t mvx_fast_seq(struct mvx_fast *f);
unsigned long long mvx_fast_handled(struct mvx_fast *f);
void mvx_fast_set_own_link(struct mvx_fast *f, int own, int spin_us);
void mvx_fast_set_accept_fault(struct mvx_fast *f, int sig);
int mvx_fast_take_pending(struct mvx_fast *f, int *pid, long long *nr, unsigned long long args[6],
                          long long *ret, int *fd, int *cloexec, int *addrlen_in);
int mvx_fast_wait(struct mvx_fast *f, struct mvx_event *ev);
const char *mvx_fast_error(struct mvx_fast *f);
int mvx_fast_agent_attach(struct mvx_fast *f, int ring_fd, int status_fd, int publish, unsigned long long gate);
unsigned long mvx_agent_size(int status); /* MVX_AGENT_RING_SIZE, or (1) MVX_AGENT_STATUS_SIZE */
int mvx_fast_agent_present(struct mvx_fast *f);
unsigned long long mvx_fast_agent_answered(struct mvx_fast *f);
void mvx_fast_set_trace(struct mvx_fast *f, int fd);
void mvx_fast_trace_flush(struct mvx_fast *f);
long mvx_fast_frame_for(struct mvx_fast *f, int pid, unsigned int audit, long long nr,
                        const unsigned long long args[6], int check, uint64_t seq, long long ret,
                        const void *got, uint8_t *out, size_t cap);
