/* The in-process agent: a follower's reads answered inside its own program, without a trap.
 * LD_PRELOADed into every variant (libmvxagent.so, one build per ISA, found by bare name through
 * LD_LIBRARY_PATH). Only a follower's monitor publishes records (mvx_agent.h): in the leader, or
 * without the memfds, it answers nothing and every read goes to libc's.
 *
 * read(fd, buf, count) is answered here when the ring's next record is the leader's read of the
 * same fd and count: its bytes, or its EAGAIN. Anything else (another call's record next, none
 * yet, a read nested in a signal handler) goes to libc's read, which traps to the monitor as
 * before: the monitor decides what the agent does not. The constructor makes no synced call
 * (only mmap): every variant's calls stay the same with it or without it. */
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
#elif defined(__i386__)
#define NR_READ 3
#elif defined(__aarch64__)
#define NR_READ 63
#endif

/* (exported: the program may find them, as any code in it could find the mappings; the monitor
 * trusts nothing the status page says beyond what it checks, tests/test_agent.py's liar included) */
const struct mvx_agent_ring *mvx_agent_ring;
struct mvx_agent_status *mvx_agent_status;
#define ring mvx_agent_ring
#define status mvx_agent_status
static ssize_t (*libc_read)(int, void *, size_t);
static ssize_t (*libc_pread64)(int, void *, size_t, int64_t);
static ssize_t (*libc_pread)(int, void *, size_t, long);

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
    void *r = mmap(NULL, MVX_AGENT_RING_SIZE, PROT_READ, MAP_SHARED, MVX_AGENT_FD_RING, 0);
    void *s = mmap(NULL, MVX_AGENT_STATUS_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, MVX_AGENT_FD_STATUS, 0);
    /* the mappings stay; the fds go, in every variant alike (two synced closes, the same everywhere),
     * so the program's fd table is the one it would have natively */
    close(MVX_AGENT_FD_RING);
    close(MVX_AGENT_FD_STATUS);
    if (r == MAP_FAILED) {
        if (s != MAP_FAILED)
            munmap(s, MVX_AGENT_STATUS_SIZE);
        return;
    }
    const struct mvx_agent_ring *rr = r;
    if (s == MAP_FAILED || rr->magic != MVX_AGENT_MAGIC || rr->version != MVX_AGENT_VERSION) {
        munmap(r, MVX_AGENT_RING_SIZE); /* the leader's, or another build's: off */
        if (s != MAP_FAILED)
            munmap(s, MVX_AGENT_STATUS_SIZE);
        return;
    }
    ring = rr;
    status = s;
    __atomic_store_n(&status->magic, MVX_AGENT_MAGIC, __ATOMIC_RELEASE);
}

/* The next published slot, when it is this call's (kind, fd, count, offset): its result, with its
 * bytes copied to buf; 1 answered (*ret set), 0 not (the caller calls libc's, which traps). */
static int answer(uint32_t kind, int fd, void *buf, size_t count, int64_t offset, ssize_t *ret) {
    if (!ring || !__atomic_load_n(&ring->enabled, __ATOMIC_ACQUIRE) || status->busy)
        return 0;
    status->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    int done = 0;
    uint32_t c = status->consumed, p = __atomic_load_n(&ring->published, __ATOMIC_ACQUIRE);
    if (c < p && c < MVX_AGENT_SLOTS) {
        const struct mvx_agent_slot *s = &ring->slot[c];
        if (s->kind == kind && s->fd == fd && s->count == (uint64_t)count && (kind != MVX_AGENT_PREAD || s->offset == offset) &&
            s->len <= count && s->off <= MVX_AGENT_DATA && s->len <= MVX_AGENT_DATA - s->off) {
            if (s->ret > 0)
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

ssize_t read(int fd, void *buf, size_t count) {
    ssize_t ret;
    if (answer(MVX_AGENT_READ, fd, buf, count, 0, &ret))
        return ret;
    return libc_read ? libc_read(fd, buf, count) : syscall(NR_READ, fd, buf, count);
}

ssize_t pread64(int fd, void *buf, size_t count, int64_t offset) {
    ssize_t ret;
    if (answer(MVX_AGENT_PREAD, fd, buf, count, offset, &ret))
        return ret;
    if (!libc_pread64) {
        *__errno_location() = 38; /* ENOSYS */
        return -1;
    }
    return libc_pread64(fd, buf, count, offset);
}

/* (off_t: 32 bits on i386, 64 elsewhere; a program may import either name) */
ssize_t pread(int fd, void *buf, size_t count, long offset) {
    ssize_t ret;
    if (answer(MVX_AGENT_PREAD, fd, buf, count, offset, &ret))
        return ret;
    if (!libc_pread) {
        *__errno_location() = 38; /* ENOSYS */
        return -1;
    }
    return libc_pread(fd, buf, count, offset);
}
