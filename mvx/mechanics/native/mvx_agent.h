/* The in-process agent's shared memory (docs/DESIGN.md, "The in-process agent"): read by the agent
 * inside a follower's program (mvx_agent.c, built per ISA) and written by that follower's monitor
 * (mvx_fast.c). Fixed-width fields only: the same layout on x86_64, i386 and aarch64.
 *
 * Two memfds the variant gets at fixed fd numbers (every variant, so every fd table is the same):
 *   - the ring (MVX_AGENT_FD_RING): the answers to the follower's next calls, from the leader's next
 *     records, written by the monitor only;
 *     sealed, so the variant can map it read-only and never write it;
 *   - the status page (MVX_AGENT_FD_STATUS): how many of them the agent took (a follower's), or the
 *     pread64 calls it made through the gate (a leader's claims); the variant's to write, so the
 *     monitor reads it as hostile input (a count within what it published, claims within range, or
 *     the run stops). */
#ifndef MVX_AGENT_H
#define MVX_AGENT_H

#include <stdint.h>

#define MVX_AGENT_FD_RING 1022
#define MVX_AGENT_FD_STATUS 1023
#define MVX_AGENT_MAGIC 0x4158564du /* "MVXA" */
#define MVX_AGENT_VERSION 4
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

#define MVX_AGENT_FOLLOWER 1 /* answers the follower's calls from the slots */
#define MVX_AGENT_LEADER 2   /* makes the leader's pread64 of its own files through the gate and claims them */
#define MVX_AGENT_MAX_FD 1024

struct mvx_agent_ring {
    uint32_t magic, version;
    uint32_t enabled;   /* 0: the agent answers nothing (every call traps, as without it) */
    uint32_t published; /* slots [0, published) are the next records, in order */
    uint32_t role;      /* MVX_AGENT_FOLLOWER or MVX_AGENT_LEADER */
    uint32_t gate_off;  /* the leader's: the gate page's offset in this file (MVX_AGENT_GATE_OFF) */
    uint64_t gate;      /* the leader's: where the agent maps it (its filter lets pread64 from there run) */
    uint8_t own[MVX_AGENT_MAX_FD / 8]; /* the leader's: fds that are files of its own world (bit fd) */
    uint32_t own_gen;     /* the leader's: own[]'s generation, a seqlock (odd while the monitor writes it) */
    uint32_t claims_tail; /* the leader's: claims its monitor took, ever (status->claimed is the head) */
    struct mvx_agent_slot slot[MVX_AGENT_SLOTS];
    uint8_t data[MVX_AGENT_DATA];
};

/* The gate page: `syscall; ret` for each ISA at its offset, nothing else. The leader's filter lets
 * pread64 made from this page run without a trap (pread64 only, harmless whoever makes it: it changes
 * nothing outside the caller's memory); the agent claims each one it made, and its monitor turns the
 * claims into the leader's records at the next stop. */
#define MVX_AGENT_GATE_OFF ((sizeof(struct mvx_agent_ring) + 4095) & ~(size_t)4095)
#define MVX_AGENT_GATE_X86_64 0  /* 0f 05 c3: syscall; ret */
#define MVX_AGENT_GATE_I386 16   /* cd 80 c3: int $0x80; ret */

/* One pread64 the leader's agent made: its arguments, its result (-errno) and the generation of the
 * own[] it found its fd in (its monitor may publish another while the leader runs: a signal can end a
 * notified call's wait, so the monitor's view of a stop can be one the program already left). */
struct mvx_agent_claim {
    int32_t fd;
    int32_t ret;
    uint64_t count;
    int64_t offset;
    uint32_t gen, pad;
};
#define MVX_AGENT_CLAIMS 96

struct mvx_agent_status {
    uint32_t magic;    /* the agent's constructor wrote MVX_AGENT_MAGIC: it is there */
    uint32_t consumed; /* a follower's: slots the agent answered calls from, in order */
    uint32_t busy;     /* the agent is answering one now (a signal handler's call traps instead) */
    uint32_t claimed;  /* a leader's: claims made, ever; claim[i % MVX_AGENT_CLAIMS] for i in [tail, claimed) */
    struct mvx_agent_claim claim[MVX_AGENT_CLAIMS];
};

#define MVX_AGENT_RING_SIZE (MVX_AGENT_GATE_OFF + 4096)
#define MVX_AGENT_STATUS_SIZE 4096

#endif
