/* The in-process agent's shared memory (docs/DESIGN.md, "The in-process agent"): read by the agent
 * inside a follower's program (mvx_agent.c, built per ISA) and written by that follower's monitor
 * (mvx_fast.c). Fixed-width fields only: the same layout on x86_64, i386 and aarch64.
 *
 * Two memfds the variant gets at fixed fd numbers (every variant, so every fd table is the same):
 *   - the ring (MVX_AGENT_FD_RING): the leader's next read records, written by the monitor only;
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
#define MVX_AGENT_VERSION 2
#define MVX_AGENT_SLOTS 64
#define MVX_AGENT_DATA (256u << 10)

#define MVX_AGENT_READ 1  /* the leader's read(fd, _, count) of a socket of its world: its result and bytes */
#define MVX_AGENT_PREAD 2 /* pread64(fd, _, count, offset) of the follower's own file: made by its monitor
                           * on its duplicate of that file, the leader's result agreeing */

/* One read, as the follower's call would be answered: `ret`, and (ret > 0) that many bytes at
 * data[off]. */
struct mvx_agent_slot {
    uint32_t kind;
    int32_t fd;
    int32_t ret; /* >= 0, or -EAGAIN */
    uint32_t off;
    uint64_t count;
    int64_t offset; /* MVX_AGENT_PREAD's */
    uint32_t len, pad;
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
