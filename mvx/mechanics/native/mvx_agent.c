/* The in-process agent: a follower's input calls answered inside its own program, without a trap.
 * LD_PRELOADed into every variant (libmvxagent.so, one build per ISA, found by bare name through
 * LD_LIBRARY_PATH). A follower's monitor publishes answers (mvx_agent.h); without the memfds the agent
 * answers nothing and every call goes to libc's.
 *
 * In the leader (x86_64 and i386), the agent makes the program's pread64 of its own files itself,
 * through the gate page its monitor wrote (the one place the leader's filter lets pread64 run
 * untrapped), and claims each: its monitor turns the claims into the leader's records at the next
 * stop. Which fds are its own files the monitor says (ring->own), before every stretch it lets run.
 *
 * read, pread64/pread, recv/recvfrom (no address), clock_gettime, accept4 that found nothing, and
 * epoll_wait/epoll_pwait (no mask) are answered here when the ring's next slot is the answer to the
 * same call (kind, fd, count, offset, flags): its bytes written where the kernel would write them, its
 * result returned. Anything else (another call's answer next, none yet, a call nested in a signal
 * handler) goes to libc's, which traps to the monitor as before: the monitor decides what the agent
 * does not. The constructor makes no synced call (only mmap): every variant's calls stay the same with
 * it or without it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mvx_agent.h"

/* (no <errno.h> or <sys/syscall.h>: a -m32 build without gcc-multilib has no <asm/...> headers) */
extern int *__errno_location(void);
#if defined(__x86_64__)
#define NR_READ 0
#define EPOLL_EVENT_SIZE 12 /* struct epoll_event is packed on x86 */
#elif defined(__i386__)
#define NR_READ 3
#define EPOLL_EVENT_SIZE 12
#elif defined(__aarch64__)
#define NR_READ 63
#define EPOLL_EVENT_SIZE 16
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* (exported: the program may find them, as any code in it could find the mappings; the monitor
 * trusts nothing the status page says beyond what it checks, tests/test_agent.py's liar included) */
const struct mvx_agent_ring *mvx_agent_ring;
struct mvx_agent_status *mvx_agent_status;
#define ring mvx_agent_ring
#define status mvx_agent_status
static uintptr_t gate; /* the leader's gate's `syscall; ret` for this ISA, mapped; 0: none */
static ssize_t (*libc_read)(int, void *, size_t);
static ssize_t (*libc_pread64)(int, void *, size_t, int64_t);
static ssize_t (*libc_pread)(int, void *, size_t, long);
static ssize_t (*libc_recvfrom)(int, void *, size_t, int, void *, void *);
static ssize_t (*libc_recv)(int, void *, size_t, int);
static int (*libc_clock_gettime)(int, void *);
static int (*libc_accept4)(int, void *, uint32_t *, int);
static int (*libc_epoll_wait)(int, void *, int, int);
static int (*libc_epoll_pwait)(int, void *, int, int, const void *);
#if defined(__i386__)
static int (*libc_clock_gettime64)(int, void *);
#endif

/* LD_PRELOAD as it was before mvx put this library first in it (unset when it had been unset):
 * the program's environment is the one it would have natively. (No syscall: environ is memory.) */
static void restore_preload(void) {
    const char *v = getenv("LD_PRELOAD");
    if (!v)
        return;
    const char *end = strchr(v, ':');
    size_t first = end ? (size_t)(end - v) : strlen(v);
    static const char me[] = "/libmvxagent.so";
    if (first < sizeof me - 1 || memcmp(v + first - (sizeof me - 1), me, sizeof me - 1))
        return;
    if (end && end[1])
        setenv("LD_PRELOAD", end + 1, 1);
    else
        unsetenv("LD_PRELOAD");
}

__attribute__((constructor)) static void agent_start(void) {
    restore_preload();
    libc_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    libc_pread64 = (ssize_t (*)(int, void *, size_t, int64_t))dlsym(RTLD_NEXT, "pread64");
    libc_pread = (ssize_t (*)(int, void *, size_t, long))dlsym(RTLD_NEXT, "pread");
    *(void **)&libc_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
    *(void **)&libc_recv = dlsym(RTLD_NEXT, "recv");
    *(void **)&libc_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    *(void **)&libc_accept4 = dlsym(RTLD_NEXT, "accept4");
    *(void **)&libc_epoll_wait = dlsym(RTLD_NEXT, "epoll_wait");
    *(void **)&libc_epoll_pwait = dlsym(RTLD_NEXT, "epoll_pwait");
#if defined(__i386__)
    *(void **)&libc_clock_gettime64 = dlsym(RTLD_NEXT, "__clock_gettime64");
#endif
    void *r = mmap(NULL, MVX_AGENT_RING_SIZE, PROT_READ, MAP_SHARED, MVX_AGENT_FD_RING, 0);
    void *s = mmap(NULL, MVX_AGENT_STATUS_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, MVX_AGENT_FD_STATUS, 0);
    const struct mvx_agent_ring *rr = r == MAP_FAILED ? NULL : r;
    int ours = rr && s != MAP_FAILED && rr->magic == MVX_AGENT_MAGIC && rr->version == MVX_AGENT_VERSION;
#if defined(__x86_64__) || defined(__i386__)
    if (ours && rr->role == MVX_AGENT_LEADER && rr->gate && rr->gate == (uintptr_t)rr->gate) {
        /* the gate, read-only and executable, where the leader's filter expects it */
        void *g = mmap((void *)(uintptr_t)rr->gate, 4096, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED_NOREPLACE,
                       MVX_AGENT_FD_RING, rr->gate_off);
        if (g == (void *)(uintptr_t)rr->gate)
#if defined(__x86_64__)
            gate = (uintptr_t)g + MVX_AGENT_GATE_X86_64;
#else
            gate = (uintptr_t)g + MVX_AGENT_GATE_I386;
#endif
        else if (g != MAP_FAILED)
            munmap(g, 4096); /* (a kernel without MAP_FIXED_NOREPLACE put it elsewhere: no gate) */
    }
#endif
    /* the mappings stay; the fds go, in every variant alike (two synced closes, the same everywhere),
     * so the program's fd table is the one it would have natively */
    close(MVX_AGENT_FD_RING);
    close(MVX_AGENT_FD_STATUS);
    if (!ours) { /* no memfds, or another build's: off */
        if (rr)
            munmap(r, MVX_AGENT_RING_SIZE);
        if (s != MAP_FAILED)
            munmap(s, MVX_AGENT_STATUS_SIZE);
        return;
    }
    ring = rr;
    status = s;
    __atomic_store_n(&status->magic, MVX_AGENT_MAGIC, __ATOMIC_RELEASE);
}

/* The next published slot, when it is this call's (kind, fd, count, offset, flags): its result, with
 * its `len` bytes copied to buf (at most cap); 1 answered (*ret set; errno for a negative result), 0
 * not (the caller calls libc's, which traps). */
static int answer(uint32_t kind, int fd, uint64_t count, int64_t offset, uint32_t flags, void *buf, size_t cap,
                  long *ret) {
    if (!ring || ring->role != MVX_AGENT_FOLLOWER || status->busy)
        return 0;
    /* busy first: a stop from here on (a signal) finds it set and changes nothing this call relies on */
    status->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    int done = 0;
    uint32_t c = status->consumed, p = __atomic_load_n(&ring->published, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&ring->enabled, __ATOMIC_ACQUIRE) && c < p && c < MVX_AGENT_SLOTS) {
        const struct mvx_agent_slot *s = &ring->slot[c];
        if (s->kind == kind && s->fd == fd && s->count == count && s->offset == offset && s->flags == flags &&
            s->len <= cap && s->off <= MVX_AGENT_DATA && s->len <= MVX_AGENT_DATA - s->off) {
            if (s->len)
                memcpy(buf, ring->data + s->off, s->len);
            __atomic_store_n(&status->consumed, c + 1, __ATOMIC_RELEASE);
            if (s->ret < 0) {
                *__errno_location() = -s->ret;
                *ret = -1;
            } else {
                *ret = s->ret;
            }
            done = 1;
        }
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    status->busy = 0;
    return done;
}

/* pread64 through the gate (the syscall instruction on the gate page): the kernel's result, -errno. */
static long gate_pread(int fd, void *buf, size_t count, int64_t offset) {
    long ret;
#if defined(__x86_64__)
    register long r10 __asm__("r10") = offset;
    /* (below the red zone: the call pushes its return address) */
    __asm__ volatile("sub $128, %%rsp\n\tcall *%[g]\n\tadd $128, %%rsp"
                     : "=a"(ret)
                     : "0"(17L), "D"((long)fd), "S"(buf), "d"(count), "r"(r10), [g] "r"(gate)
                     : "rcx", "r11", "memory", "cc");
#elif defined(__i386__)
    volatile uintptr_t g = gate;
    __asm__ volatile("call *%[g]"
                     : "=a"(ret)
                     : "0"(180L), "b"(fd), "c"(buf), "d"(count), "S"((uint32_t)offset),
                       "D"((uint32_t)((uint64_t)offset >> 32)), [g] "m"(g)
                     : "memory", "cc");
#else
    (void)fd, (void)buf, (void)count, (void)offset;
    ret = -38;
#endif
    return ret;
}

/* The leader's pread64 of a file of its own world, made here and claimed: 1 (*ret set), or 0 (not
 * one this agent makes: the caller calls libc's, which traps). */
static int leader_pread(int fd, void *buf, size_t count, int64_t offset, long *ret) {
    if (!gate || ring->role != MVX_AGENT_LEADER || status->busy)
        return 0;
    status->busy = 1; /* (a signal handler's pread traps) */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    int done = 0;
    uint32_t head = status->claimed, tail = __atomic_load_n(&ring->claims_tail, __ATOMIC_ACQUIRE);
    uint32_t gen = __atomic_load_n(&ring->own_gen, __ATOMIC_ACQUIRE);
    int allowed = !(gen & 1) && __atomic_load_n(&ring->enabled, __ATOMIC_ACQUIRE) && fd >= 0 && fd < MVX_AGENT_MAX_FD &&
                  (ring->own[fd / 8] & (1u << (fd % 8))) && count <= 0x7fffffffu && head - tail < MVX_AGENT_CLAIMS;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (allowed && __atomic_load_n(&ring->own_gen, __ATOMIC_RELAXED) == gen) { /* (own[] was not being rewritten) */
        long r = gate_pread(fd, buf, count, offset);
        struct mvx_agent_claim *c = &status->claim[head % MVX_AGENT_CLAIMS];
        c->fd = fd;
        c->ret = (int32_t)r;
        c->count = count;
        c->offset = offset;
        c->gen = gen;
        __atomic_store_n(&status->claimed, head + 1, __ATOMIC_RELEASE);
        if (r < 0) {
            *__errno_location() = (int)-r;
            *ret = -1;
        } else {
            *ret = r;
        }
        done = 1;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    status->busy = 0;
    return done;
}

static long enosys(void) {
    *__errno_location() = 38; /* ENOSYS */
    return -1;
}

ssize_t read(int fd, void *buf, size_t count) {
    long ret;
    if (answer(MVX_AGENT_READ, fd, count, 0, 0, buf, count, &ret))
        return ret;
    return libc_read ? libc_read(fd, buf, count) : syscall(NR_READ, fd, buf, count);
}

ssize_t pread64(int fd, void *buf, size_t count, int64_t offset) {
    long ret;
    if (ring && leader_pread(fd, buf, count, offset, &ret))
        return ret;
    if (answer(MVX_AGENT_PREAD, fd, count, offset, 0, buf, count, &ret))
        return ret;
    return libc_pread64 ? libc_pread64(fd, buf, count, offset) : enosys();
}

/* (off_t: 32 bits on i386, 64 elsewhere; a program may import either name) */
ssize_t pread(int fd, void *buf, size_t count, long offset) {
    long ret;
    if (ring && leader_pread(fd, buf, count, offset, &ret))
        return ret;
    if (answer(MVX_AGENT_PREAD, fd, count, offset, 0, buf, count, &ret))
        return ret;
    return libc_pread ? libc_pread(fd, buf, count, offset) : enosys();
}

ssize_t recvfrom(int fd, void *buf, size_t count, int flags, void *addr, void *addrlen) {
    long ret;
    if (!addr && !addrlen && answer(MVX_AGENT_RECV, fd, count, 0, (uint32_t)flags, buf, count, &ret))
        return ret;
    return libc_recvfrom ? libc_recvfrom(fd, buf, count, flags, addr, addrlen) : enosys();
}

ssize_t recv(int fd, void *buf, size_t count, int flags) {
    long ret;
    if (answer(MVX_AGENT_RECV, fd, count, 0, (uint32_t)flags, buf, count, &ret))
        return ret;
    return libc_recv ? libc_recv(fd, buf, count, flags) : enosys();
}

/* The leader's reading of the clock (`wide`: a 64-bit tv_sec, as the monitor writes it for
 * clock_gettime64 and for 64-bit ISAs: {int64 sec, int64 nsec}). */
static int clock_answer(int clock, void *tp, int wide) {
    int64_t v[2];
    long ret;
    if (!tp || !answer(MVX_AGENT_CLOCK, clock, 0, 0, 0, v, sizeof v, &ret))
        return 0;
    if (ret == 0 && wide) {
        memcpy(tp, v, sizeof v);
    } else if (ret == 0) {
        int32_t w[2] = {(int32_t)v[0], (int32_t)v[1]};
        memcpy(tp, w, sizeof w);
    }
    return 1;
}

int clock_gettime(int clock, void *tp) {
    if (clock_answer(clock, tp, sizeof(long) == 8))
        return 0;
    return libc_clock_gettime ? libc_clock_gettime(clock, tp) : (int)enosys();
}

#if defined(__i386__)
int __clock_gettime64(int clock, void *tp) {
    if (clock_answer(clock, tp, 1))
        return 0;
    return libc_clock_gettime64 ? libc_clock_gettime64(clock, tp) : (int)enosys();
}
#endif

/* Only an accept4 that found no connection: a connection is a new fd, which only the monitor makes. */
int accept4(int fd, void *addr, uint32_t *addrlen, int flags) {
    long ret;
    if (!(addr && !addrlen) &&
        answer(MVX_AGENT_ACCEPT, fd, 0, addrlen ? (int64_t)(int32_t)*addrlen : -1, (uint32_t)flags, NULL, 0, &ret))
        return (int)ret;
    return libc_accept4 ? libc_accept4(fd, addr, addrlen, flags) : (int)enosys();
}

int epoll_wait(int epfd, void *events, int maxevents, int timeout) {
    long ret;
    if (maxevents > 0 && answer(MVX_AGENT_EPOLL, epfd, (uint64_t)maxevents, timeout, 0, events,
                                (size_t)maxevents * EPOLL_EVENT_SIZE, &ret))
        return (int)ret;
    return libc_epoll_wait ? libc_epoll_wait(epfd, events, maxevents, timeout) : (int)enosys();
}

int epoll_pwait(int epfd, void *events, int maxevents, int timeout, const void *sigmask) {
    long ret;
    if (!sigmask && maxevents > 0 &&
        answer(MVX_AGENT_EPOLL, epfd, (uint64_t)maxevents, timeout, 0, events, (size_t)maxevents * EPOLL_EVENT_SIZE, &ret))
        return (int)ret;
    return libc_epoll_pwait ? libc_epoll_pwait(epfd, events, maxevents, timeout, sigmask) : (int)enosys();
}
