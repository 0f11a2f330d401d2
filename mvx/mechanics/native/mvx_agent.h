/* The in-process agent's shared memory (docs/DESIGN.md, "The in-process agent"): read by the agent
 * inside a follower's program (mvx_agent.c, built per ISA) and written by that follower's monitor
 * (mvx_fast.c). Fixed-width fields only: the same layout on x86_64, i386 and aarch64.
 *
 * Two memfds the variant gets at fixed fd numbers (every variant, so every fd table is the same):
 *   - the ring (MVX_AGENT_FD_RING): the answers to the follower's next calls, from the leader's next
 *     records, written by the monitor only;
 *     sealed, so the variant can map it read-only and never write it;
 *   - the status page (MVX_AGENT_FD_STATUS): how many of them the agent took; the variant's to
 *     write, so the monitor reads it as hostile input (a count within what it published, or the
 *     run stops). */
#ifndef MVX_AGENT_H
#define MVX_AGENT_H

#include <stdint.h>

#define MVX_AGENT_FD_RING 1022
#define MVX_AGENT_FD_STATUS 1023
#define MVX_AGENT_MAGIC 0x4158564du /* "MVXA" */
#define MVX_AGENT_VERSION 3
#define MVX_AGENT_SLOTS 64
#define MVX_AGENT_DATA (256u << 10)

/* The calls the agent answers, each matched on (kind, fd, count, offset, flags) as the slot says. */
#define MVX_AGENT_READ 1  /* the leader's read(fd, _, count) of a socket of its world: its result and bytes */
#define MVX_AGENT_PREAD 2 /* pread64(fd, _, count, offset) of the follower's own file: made by its monitor
                           * on its duplicate of that file, the leader's result agreeing */
#define MVX_AGENT_RECV 3  /* the leader's recvfrom(fd, _, count, flags, NULL, NULL) of a socket of its world */
#define MVX_AGENT_CLOCK 4 /* clock_gettime(fd = the clock's id, _): the leader's reading, data = {int64 sec,
                           * int64 nsec}, which the agent writes in the program's own timespec */
#define MVX_AGENT_ACCEPT 5 /* accept4(fd, _, addrlen, flags) that found no connection in the leader
                            * (ret < 0, nothing written); offset = *addrlen, or -1 for a NULL addrlen */
#define MVX_AGENT_EPOLL 6  /* epoll_wait/epoll_pwait(fd, _, count = maxevents, offset = timeout, no mask):
                            * the leader's events, data = in the follower's own layout and data words */

/* One call, as the follower's would be answered: `ret`, and `len` bytes at data[off] for its
 * out-argument. */
struct mvx_agent_slot {
    uint32_t kind;
    int32_t fd;
    int32_t ret; /* >= 0, or -errno */
    uint32_t off;
    uint64_t count;
    int64_t offset;
    uint32_t len;
    uint32_t flags; /* MVX_AGENT_RECV's MSG_* and MVX_AGENT_ACCEPT's SOCK_* bits (the same on every ISA) */
};

struct mvx_agent_ring {
    uint32_t magic, version;
    uint32_t enabled;   /* 0: the agent answers nothing (every read traps, as without it) */
    uint32_t published; /* slots [0, published) are the next records, in order */
    struct mvx_agent_slot slot[MVX_AGENT_SLOTS];
    uint8_t data[MVX_AGENT_DATA];
};

struct mvx_agent_status {
    uint32_t magic;    /* the agent's constructor wrote MVX_AGENT_MAGIC: it is there */
    uint32_t consumed; /* slots the agent answered reads from, in order */
    uint32_t busy;     /* the agent is answering one now (a signal handler's read traps instead) */
    uint32_t pad;
};

#define MVX_AGENT_RING_SIZE ((sizeof(struct mvx_agent_ring) + 4095) & ~(size_t)4095)
#define MVX_AGENT_STATUS_SIZE 4096

#endif
