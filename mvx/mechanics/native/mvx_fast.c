/* The data plane in C: the channel between monitors and the hot calls carried from trap to answer
 * without Python (docs/DESIGN.md, "The fast path").
 *
 * Included at the end of mvx_native.c (one compilation unit). Three parts:
 *   - mvx_chan: one plain stream socket to a peer monitor: whole frames sent under a lock (any
 *     thread), frames received by one pump thread;
 *   - mvx_link (leader) and mvx_inbox (follower): the state both the monitor thread and the pump
 *     share (acknowledged and checked sequence numbers; the queue of the leader's frames);
 *   - mvx_fast: the monitor's loop. `mvx_fast_wait` waits for the variant's next stop like
 *     `mvx_wait`, carries every hot call it can (the leader performs it and publishes the record, a
 *     follower checks the leader's record and answers) and returns the first stop it cannot to
 *     Python, untouched. Python keeps the tables it reads current (which fds are sockets of the
 *     leader's world, the monitor's duplicates) and decides everything else.
 *
 * The records and checks it makes are byte for byte those of mvx.core.sync (tests/test_fastpath.py
 * compares them), so the two paths interleave on one channel. */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <time.h>

#include <sys/mman.h>

#include "mvx_agent.h"
#include "mvx_protocol.h"
#include "mvx_protocol.c"

/* ---- time ------------------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void deadline_in(struct timespec *ts, int ms) {
    if (ms < 0)
        ms = 0;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void cond_init_monotonic(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

#include "mvx_tls.c"

/* ---- the channel ----------------------------------------------------------------------------- */

struct mvx_link;
static void link_wake(struct mvx_link *l);

struct mvx_chan {
    int fd;
    int send_timeout_ms;
    pthread_mutex_t send_lock;
    /* the received bytes are read by one thread at a time: the pump thread, or, on the leader, the
     * monitor thread while it owns the channel (mvx_fast_wait: it takes the acknowledgements and
     * checks itself, and the pump thread waits, parked) */
    pthread_mutex_t read_lock;
    volatile int owned;
    struct mvx_link *link; /* the leader's: its condition wakes a parked pump at a shutdown */
    volatile int closed; /* this side shut it down */
    int broken;          /* -errno of a failed send: every later send fails the same way */
    uint8_t *rbuf;       /* the pump's received bytes not yet a whole frame */
    size_t rlen, rcap;
    uint8_t *special;    /* the last frame the pump returned to its caller */
    size_t special_len;
    struct mvx_tls *tls; /* the two-node form: frames sealed and opened by this TLS connection */
    uint8_t *raw;        /* its received bytes before they are opened */
    int tls_end;         /* it saw the peer's end (close_notify, or the byte stream's end) */
    int tls_err;         /* -EPROTO/-ENOMEM its opening failed with: every later read fails alike
                          * (the bytes are gone from the socket: a read would wait for more) */
    char send_err[240];  /* why a send failed (-EPROTO), apart from err: readers write that one */
    char err[240];
};

struct mvx_chan *mvx_chan_new(int fd, int send_timeout_ms) {
    struct mvx_chan *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->send_timeout_ms = send_timeout_ms;
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->read_lock, NULL);
    return c;
}

void mvx_chan_free(struct mvx_chan *c) {
    if (!c)
        return;
    free(c->rbuf);
    free(c->special);
    free(c->raw);
    free(c);
}

/* All of data[0..len) on the socket (non-blocking or not), within the send timeout. */
static int chan_send_raw(struct mvx_chan *c, const uint8_t *p, size_t len) {
    int waited = 0;
    while (len) {
        if (c->closed)
            return -ESHUTDOWN;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {c->fd, POLLOUT, 0};
            poll(&pfd, 1, 200);
            waited += 200;
            if (waited >= c->send_timeout_ms)
                return -ETIMEDOUT;
            continue;
        }
        return n < 0 ? -errno : -EPIPE;
    }
    return 0;
}

/* As chan_send_raw, through the TLS connection if there is one (len 0: only what it has to send). */
static int chan_send_locked(struct mvx_chan *c, const uint8_t *p, size_t len) {
    if (!c->tls)
        return chan_send_raw(c, p, len);
    uint8_t *sealed;
    size_t n;
    int r = tls_seal(c->tls, p, len, &sealed, &n, c->send_err, sizeof c->send_err);
    if (!r && n)
        r = chan_send_raw(c, sealed, n);
    free(sealed);
    return r;
}

/* Whole frames, in order, from any thread: 0, or -errno (ETIMEDOUT: the peer stopped reading). */
int mvx_chan_send(struct mvx_chan *c, const void *data, size_t len) {
    pthread_mutex_lock(&c->send_lock);
    int r = c->broken;
    if (!r) {
        r = chan_send_locked(c, data, len);
        if (r < 0 && r != -ESHUTDOWN)
            c->broken = r;
    }
    pthread_mutex_unlock(&c->send_lock);
    return r;
}

void mvx_chan_shutdown(struct mvx_chan *c) {
    c->closed = 1;
    shutdown(c->fd, SHUT_RD);
    if (c->link)
        link_wake(c->link);
}

/* The pump's next whole frame body: 1 with *body and *blen set (valid until the next call), 0 at a
 * clean end of stream, -EPROTO (c->err) for bytes that are not frames, -errno. */
static int chan_frame_within(struct mvx_chan *c, const uint8_t **body, uint32_t *blen, size_t *consumed,
                             int wait_ms);
static void chan_drop(struct mvx_chan *c, size_t consumed);

#define CHAN_RAW 65536

/* What recv would give on a plain socket, through TLS: the opened bytes appended to rbuf (> 0), 0
 * at the end, -1 with errno EAGAIN when what came in opened nothing yet (a partial record),
 * -EPROTO (c->err), -ENOMEM, -1 with errno. */
static ssize_t chan_recv_tls(struct mvx_chan *c) {
    if (!c->raw && !(c->raw = malloc(CHAN_RAW)))
        return -ENOMEM;
    ssize_t got = recv(c->fd, c->raw, CHAN_RAW, MSG_DONTWAIT);
    if (got < 0)
        return -1;
    int end;
    ssize_t n = tls_open(c->tls, c->raw, (size_t)got, &c->rbuf, &c->rlen, &c->rcap, &end, c->err, sizeof c->err);
    if (n < 0)
        return c->tls_err = (int)n;
    if (n == 0 && !end) {
        errno = EAGAIN;
        return -1;
    }
    if (end)
        c->tls_end = 1;
    return n;
}

static int chan_next_frame(struct mvx_chan *c, const uint8_t **body, uint32_t *blen, size_t *consumed) {
    return chan_frame_within(c, body, blen, consumed, -1);
}

/* As chan_next_frame, but waiting at most `wait_ms` for bytes (-1: until a frame or the end):
 * 2 when no whole frame came in that time. */
static int chan_frame_within(struct mvx_chan *c, const uint8_t **body, uint32_t *blen, size_t *consumed,
                             int wait_ms) {
    for (;;) {
        chan_drop(c, *consumed);
        *consumed = 0;
        if (c->rlen >= 4) {
            uint32_t n;
            if (mvx_frame_length(c->rbuf, &n, c->err, sizeof c->err) < 0)
                return -EPROTO;
            if (c->rlen >= 4 + (size_t)n) {
                *body = c->rbuf + 4;
                *blen = n;
                *consumed = 4 + (size_t)n;
                return 1;
            }
            if (c->rcap < 4 + (size_t)n) {
                uint8_t *b = realloc(c->rbuf, 4 + (size_t)n);
                if (!b)
                    return -ENOMEM;
                c->rbuf = b;
                c->rcap = 4 + (size_t)n;
            }
        }
        if (c->rcap - c->rlen < 65536) {
            size_t cap = c->rcap ? c->rcap * 2 : 262144;
            uint8_t *b = realloc(c->rbuf, cap);
            if (!b)
                return -ENOMEM;
            c->rbuf = b;
            c->rcap = cap;
        }
        if (c->closed)
            return 0;
        if (c->tls_err) /* (c->err still says why) */
            return c->tls_err;
        if (c->tls_end) /* TLS saw the peer's end: no more bytes will come */
            goto ended;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, wait_ms < 0 ? 500 : wait_ms);
        if (pr < 0 && errno != EINTR)
            return -errno;
        if (pr <= 0) {
            if (wait_ms >= 0)
                return 2;
            continue;
        }
        if (wait_ms > 0)
            wait_ms = 0; /* what is there now, then back to the caller */
        ssize_t got = c->tls ? chan_recv_tls(c) : recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
        if (got == -EPROTO || got == -ENOMEM)
            return (int)got;
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return c->closed ? 0 : -errno;
        }
        if (got == 0) {
        ended:
            if (c->rlen) {
                snprintf(c->err, sizeof c->err, "truncated frame (peer closed mid-frame, %zu bytes in)", c->rlen);
                return -EPROTO;
            }
            return 0;
        }
        if (!c->tls) /* (TLS appended its opened bytes itself) */
            c->rlen += (size_t)got;
    }
}

static int keep_special(struct mvx_chan *c, const uint8_t *body, uint32_t n) {
    free(c->special);
    c->special = malloc(n ? n : 1);
    if (!c->special)
        return -ENOMEM;
    memcpy(c->special, body, n);
    c->special_len = n;
    return 0;
}

/* Drop the `consumed` bytes of the frames already taken from the receive buffer. */
static void chan_drop(struct mvx_chan *c, size_t consumed) {
    if (consumed) {
        memmove(c->rbuf, c->rbuf + consumed, c->rlen - consumed);
        c->rlen -= consumed;
    }
}

/* A pump stops at this frame: keep it for the caller (mvx_chan_special), drop what was taken;
 * 1, or -ENOMEM. */
static int chan_stop_at(struct mvx_chan *c, const uint8_t *body, uint32_t n, size_t consumed) {
    int r = keep_special(c, body, n);
    chan_drop(c, consumed);
    return r < 0 ? r : 1;
}

/* Bytes received before the channel came here (a partial frame): the pump starts with them. */
int mvx_chan_seed(struct mvx_chan *c, const void *data, size_t len) {
    uint8_t *b = realloc(c->rbuf, c->rlen + len + 262144);
    if (!b)
        return -ENOMEM;
    c->rbuf = b;
    c->rcap = c->rlen + len + 262144;
    memcpy(c->rbuf + c->rlen, data, len);
    c->rlen += len;
    return 0;
}

/* Frames on this channel go through `t` (its handshake done): what it opened already is taken now,
 * as the pump waits on the socket only. 0, -EPROTO (mvx_chan_error), -ENOMEM. */
int mvx_chan_set_tls(struct mvx_chan *c, struct mvx_tls *t) {
    pthread_mutex_lock(&c->read_lock);
    c->tls = t;
    int end;
    ssize_t n = tls_open(t, NULL, 0, &c->rbuf, &c->rlen, &c->rcap, &end, c->err, sizeof c->err);
    if (n == -ENOMEM)
        snprintf(c->err, sizeof c->err, "out of memory opening what TLS received");
    if (n < 0)
        c->tls_err = (int)n;
    c->tls_end = end;
    pthread_mutex_unlock(&c->read_lock);
    return n < 0 ? (int)n : 0;
}

uint8_t *mvx_chan_special(struct mvx_chan *c, size_t *len) {
    *len = c->special_len;
    return c->special;
}

const char *mvx_chan_send_error(struct mvx_chan *c) {
    return c->send_err;
}

const char *mvx_chan_error(struct mvx_chan *c) {
    return c->err;
}

/* ---- the leader's link: followers' acknowledgements and checks -------------------------------- */

#define MVX_MAX_FOLLOWERS 64

struct mvx_link {
    pthread_mutex_t m;
    pthread_cond_t cv;
    pthread_cond_t park; /* pump threads wait here while the monitor thread owns their channel */
    int n, window;
    uint8_t live[MVX_MAX_FOLLOWERS];
    uint64_t acked[MVX_MAX_FOLLOWERS], checked[MVX_MAX_FOLLOWERS];
    struct mvx_chan *chan[MVX_MAX_FOLLOWERS]; /* NULL: the C side cannot send there (TLS) */
    int lost[MVX_MAX_FOLLOWERS];              /* -errno of a failed send from C, not yet told */
    int failed;
    uint64_t published;                       /* the highest seq sent: no follower may claim more */
};

struct mvx_link *mvx_link_new(int n, int window) {
    if (n < 0 || n > MVX_MAX_FOLLOWERS)
        return NULL;
    struct mvx_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->m, NULL);
    cond_init_monotonic(&l->cv);
    cond_init_monotonic(&l->park);
    l->n = n;
    l->window = window;
    for (int i = 0; i < n; i++)
        l->live[i] = 1;
    return l;
}

void mvx_link_free(struct mvx_link *l) { free(l); }

void mvx_link_set_chan(struct mvx_link *l, int i, struct mvx_chan *c) {
    l->chan[i] = c;
    if (c)
        c->link = l;
}

static void link_wake(struct mvx_link *l) { /* the parked pumps */
    pthread_mutex_lock(&l->m);
    pthread_cond_broadcast(&l->park);
    pthread_mutex_unlock(&l->m);
}

int mvx_link_all_chans(struct mvx_link *l) {
    for (int i = 0; i < l->n; i++)
        if (!l->chan[i])
            return 0;
    return 1;
}

/* A sequence number a follower sends back must be one the leader sent: a higher one (or 0 for a
 * check) is a follower lying about what it checked, and fails the link (fail closed). */
void mvx_link_published(struct mvx_link *l, uint64_t seq) {
    pthread_mutex_lock(&l->m);
    if (seq > l->published)
        l->published = seq;
    pthread_mutex_unlock(&l->m);
}

/* 0, or -1 when the follower claims a record the leader never sent (the caller ends the channel:
 * a lying follower is a lost one). */
int mvx_link_on_ack(struct mvx_link *l, int i, uint64_t seq) {
    pthread_mutex_lock(&l->m);
    int bad = seq > l->published;
    if (!bad && seq > l->acked[i])
        l->acked[i] = seq;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->m);
    return bad ? -1 : 0;
}

int mvx_link_on_checked(struct mvx_link *l, int i, uint64_t seq) {
    pthread_mutex_lock(&l->m);
    int bad = seq == 0 || seq > l->published;
    if (!bad) {
        if (seq > l->checked[i])
            l->checked[i] = seq;
        if (seq - 1 > l->acked[i])
            l->acked[i] = seq - 1;
    }
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->m);
    return bad ? -1 : 0;
}

void mvx_link_detach(struct mvx_link *l, int i) {
    pthread_mutex_lock(&l->m);
    l->live[i] = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->m);
}

void mvx_link_fail(struct mvx_link *l) {
    pthread_mutex_lock(&l->m);
    l->failed = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->m);
}

int mvx_link_live(struct mvx_link *l, int i) { return __atomic_load_n(&l->live[i], __ATOMIC_ACQUIRE); }
uint64_t mvx_link_acked(struct mvx_link *l, int i) { return __atomic_load_n(&l->acked[i], __ATOMIC_ACQUIRE); }
uint64_t mvx_link_checked(struct mvx_link *l, int i) { return __atomic_load_n(&l->checked[i], __ATOMIC_ACQUIRE); }
int mvx_link_failed(struct mvx_link *l) { return __atomic_load_n(&l->failed, __ATOMIC_ACQUIRE); }

/* Follower i's failed send from C (-errno), once; 0 when none. */
int mvx_link_take_lost(struct mvx_link *l, int i) {
    int r = l->lost[i];
    l->lost[i] = 0;
    return r;
}

/* Wait until `seq` is within every live follower's window: 0, or -1 once the link failed. */
/* Under l->m: is `seq` within every live follower's window / checked by every live follower? */
static int link_in_window(struct mvx_link *l, uint64_t seq) {
    for (int i = 0; i < l->n; i++)
        if (l->live[i] && seq > l->acked[i] + (uint64_t)l->window)
            return 0;
    return 1;
}

static int link_all_checked(struct mvx_link *l, uint64_t seq) {
    for (int i = 0; i < l->n; i++)
        if (l->live[i] && l->checked[i] < seq)
            return 0;
    return 1;
}

int mvx_link_window_wait(struct mvx_link *l, uint64_t seq) {
    pthread_mutex_lock(&l->m);
    for (;;) {
        if (l->failed || link_in_window(l, seq))
            break;
        struct timespec ts;
        deadline_in(&ts, 500);
        pthread_cond_timedwait(&l->cv, &l->m, &ts);
    }
    int r = l->failed ? -1 : 0;
    pthread_mutex_unlock(&l->m);
    return r;
}

/* Wait until every live follower checked `seq`: 0, 1 after timeout_ms, -1 once the link failed. */
int mvx_link_checked_wait(struct mvx_link *l, uint64_t seq, int timeout_ms) {
    struct timespec end;
    deadline_in(&end, timeout_ms);
    pthread_mutex_lock(&l->m);
    int r = 0;
    for (;;) {
        if (l->failed) {
            r = -1;
            break;
        }
        if (link_all_checked(l, seq))
            break;
        if (pthread_cond_timedwait(&l->cv, &l->m, &end) == ETIMEDOUT) {
            r = !link_all_checked(l, seq) ? 1 : l->failed ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&l->m);
    return r;
}

/* The leader's pump for follower i: acknowledgements and checks are taken here; returns 1 with
 * any other frame kept (mvx_chan_special), 0 at the clean end, -EPROTO/-errno. */
int mvx_link_pump(struct mvx_link *l, int i, struct mvx_chan *c) {
    const uint8_t *body;
    uint32_t n;
    for (;;) {
        pthread_mutex_lock(&l->m);
        while (c->owned && !c->closed) { /* the monitor thread reads it now */
            struct timespec ts;
            deadline_in(&ts, 500);
            pthread_cond_timedwait(&l->park, &l->m, &ts);
        }
        pthread_mutex_unlock(&l->m);
        pthread_mutex_lock(&c->read_lock);
        if (c->owned && !c->closed) {
            pthread_mutex_unlock(&c->read_lock);
            continue;
        }
        size_t consumed = 0;
        int r = chan_frame_within(c, &body, &n, &consumed, 0);
        if (r == 2) { /* nothing whole yet: wait for bytes, unlocked (the monitor may take it over) */
            chan_drop(c, consumed);
            pthread_mutex_unlock(&c->read_lock);
            struct pollfd pfd = {c->fd, POLLIN, 0};
            poll(&pfd, 1, 500);
            continue;
        }
        if (r <= 0) {
            pthread_mutex_unlock(&c->read_lock);
            return r;
        }
        if (n == 9 && (body[0] == MVX_M_ACK || body[0] == MVX_M_CHECKED)) {
            uint64_t seq;
            memcpy(&seq, body + 1, 8);
            int bad = body[0] == MVX_M_ACK ? mvx_link_on_ack(l, i, seq) : mvx_link_on_checked(l, i, seq);
            chan_drop(c, consumed);
            pthread_mutex_unlock(&c->read_lock);
            if (bad) {
                snprintf(c->err, sizeof c->err, "%s %llu: the leader sent no such call",
                         body[0] == MVX_M_ACK ? "Ack" : "Checked", (unsigned long long)seq);
                return -EPROTO;
            }
            continue;
        }
        r = chan_stop_at(c, body, n, consumed);
        pthread_mutex_unlock(&c->read_lock);
        return r;
    }
}

/* ---- the leader's monitor thread reads its channels itself (while in mvx_fast_wait) ----------- */

/* Take (own 1) or give back (0) every channel for the monitor thread: taken, the pump threads park
 * and each Ack and Checked wakes the monitor thread alone, with no hand-off. */
static void link_own(struct mvx_link *l, int own) {
    for (int i = 0; i < l->n; i++)
        if (l->chan[i])
            l->chan[i]->owned = own && !l->chan[i]->closed;
    if (!own)
        link_wake(l);
}

/* The fds of the channels the monitor thread owns, for its polls: how many (at most `cap`). */
static int link_fds(struct mvx_link *l, struct pollfd *pfd, int cap) {
    int k = 0;
    for (int i = 0; i < l->n && k < cap; i++)
        if (l->chan[i] && l->chan[i]->owned)
            pfd[k++] = (struct pollfd){l->chan[i]->fd, POLLIN, 0};
    return k;
}

/* Take every Ack and Checked now in the owned channels. Any other frame, the end of a channel or
 * a bad sequence number is left where it is, and that channel to its pump thread (the session
 * handles it there, as before). Returns how many frames were taken. */
static int link_drain_only(struct mvx_link *l) {
    int took = 0;
    for (int i = 0; i < l->n; i++) {
        struct mvx_chan *c = l->chan[i];
        if (!c || !c->owned)
            continue;
        pthread_mutex_lock(&c->read_lock);
        const uint8_t *body;
        uint32_t n;
        size_t consumed = 0;
        int give_up = 0;
        for (;;) {
            int r = chan_frame_within(c, &body, &n, &consumed, 0);
            if (r == 2)
                break;
            if (r == 1 && n == 9 && (body[0] == MVX_M_ACK || body[0] == MVX_M_CHECKED)) {
                uint64_t seq;
                memcpy(&seq, body + 1, 8);
                if (seq <= __atomic_load_n(&l->published, __ATOMIC_ACQUIRE) && (body[0] == MVX_M_ACK || seq)) {
                    if (body[0] == MVX_M_ACK)
                        mvx_link_on_ack(l, i, seq);
                    else
                        mvx_link_on_checked(l, i, seq);
                    took++;
                    continue;
                }
            }
            if (r == 1)
                consumed = 0; /* not taken: the pump thread reads it again */
            give_up = 1;
            break;
        }
        chan_drop(c, consumed);
        if (give_up)
            c->owned = 0;
        pthread_mutex_unlock(&c->read_lock);
        if (give_up)
            link_wake(l);
    }
    return took;
}

/* ---- write-behind: outputs held by the leader's monitor until every follower checked them ------- */

/* One held output: `len` bytes for the monitor's own duplicate `fd` of the program's socket or
 * pipe (closed once the item left), or a shutdown (`how` >= 0). Released in order, each once every
 * live follower checked call `seq`; dropped, never sent, once the link failed. */
struct mvx_held {
    struct mvx_held *next;
    uint64_t seq;
    double since; /* when it was held (the session's watchdog: a follower that never checks it) */
    int fd, how;
    size_t len, off; /* off: sent so far */
    uint8_t data[];
};

struct mvx_outbox {
    struct mvx_link *link; /* its lock and condition guard the queue too */
    pthread_cond_t cv;     /* the sending thread's, while `direct`: woken only for work of its own
                            * (a stalled send, the end), not by every check the link's cv is for */
    struct mvx_held *head, *tail;
    size_t bytes, limit;
    int closed;
    int busy;    /* the head is being sent (by the sending thread or the monitor thread) */
    int direct;  /* the leader's monitor thread sends what its checks release (outbox_release_now)... */
    int stalled; /* ...and leaves the sending thread what would have blocked it */
    unsigned long long sent;
};

struct mvx_outbox *mvx_outbox_new(struct mvx_link *l, size_t limit) {
    struct mvx_outbox *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->link = l;
    o->limit = limit;
    cond_init_monotonic(&o->cv);
    return o;
}

static void outbox_drop_all(struct mvx_outbox *o) {
    while (o->head) {
        struct mvx_held *h = o->head;
        o->head = h->next;
        close(h->fd);
        free(h);
    }
    o->tail = NULL;
    o->bytes = 0;
}

void mvx_outbox_free(struct mvx_outbox *o) {
    if (!o)
        return;
    outbox_drop_all(o);
    free(o);
}

/* Queue an output (`fd` now belongs to the outbox); waits while over the limit. 0, or -1 when
 * the outbox is closed or the link failed (the fd is closed, nothing is queued). */
int mvx_outbox_hold(struct mvx_outbox *o, uint64_t seq, int fd, const void *data, size_t len, int how) {
    struct mvx_held *h = malloc(sizeof *h + (len ? len : 1));
    if (!h) {
        close(fd);
        return -1;
    }
    h->next = NULL;
    h->seq = seq;
    h->since = now_s();
    h->fd = fd;
    h->how = how;
    h->len = len;
    h->off = 0;
    if (len)
        memcpy(h->data, data, len);
    struct mvx_link *l = o->link;
    pthread_mutex_lock(&l->m);
    while (o->bytes + len > o->limit && o->head && !o->closed && !l->failed) {
        struct timespec ts;
        deadline_in(&ts, 500);
        pthread_cond_timedwait(&l->cv, &l->m, &ts);
    }
    if (o->closed || l->failed) {
        pthread_mutex_unlock(&l->m);
        close(fd);
        free(h);
        return -1;
    }
    if (o->tail)
        o->tail->next = h;
    else
        o->head = h;
    o->tail = h;
    o->bytes += len;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->m);
    return 0;
}

static int outbox_stopped(struct mvx_outbox *o) {
    return __atomic_load_n(&o->closed, __ATOMIC_ACQUIRE) || __atomic_load_n(&o->link->failed, __ATOMIC_ACQUIRE);
}

static int outbox_releasable(struct mvx_outbox *o) {
    if (!o->head)
        return 0;
    for (int i = 0; i < o->link->n; i++)
        if (o->link->live[i] && o->link->checked[i] < o->head->seq)
            return 0;
    return 1;
}

/* Send one released item; a peer that reset or closed ends it (natively the program's own write
 * would have failed there too). */
static void outbox_send(struct mvx_outbox *o, struct mvx_held *h) {
    if (h->how >= 0) {
        shutdown(h->fd, h->how);
        return;
    }
    size_t off = h->off;
    while (off < h->len && !outbox_stopped(o)) {
        ssize_t n = send(h->fd, h->data + off, h->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK) { /* a pipe, maybe blocking: write only what it takes now */
            struct pollfd pfd = {h->fd, POLLOUT, 0};
            if (poll(&pfd, 1, 200) <= 0)
                continue;
            if (pfd.revents & (POLLERR | POLLHUP))
                return;
            size_t chunk = h->len - off < 4096 ? h->len - off : 4096; /* PIPE_BUF: never blocks once POLLOUT */
            n = write(h->fd, h->data + off, chunk);
        }
        if (n > 0) {
            off += (size_t)n;
            __atomic_fetch_add(&o->sent, (unsigned long long)n, __ATOMIC_RELAXED);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd pfd = {h->fd, POLLOUT, 0};
            poll(&pfd, 1, 200);
            continue;
        }
        return;
    }
}

/* The sending thread's body: returns once the outbox is closed or the link failed. */
/* Take the sent head off the queue (under l->m). */
static void outbox_pop(struct mvx_outbox *o, struct mvx_held *h) {
    o->head = h->next;
    if (!o->head)
        o->tail = NULL;
    o->bytes -= h->len;
}

/* The sending thread's body: returns once the outbox is closed or the link failed. With `direct`,
 * it sends only what the monitor thread left it (a send that would have blocked). */
void mvx_outbox_run(struct mvx_outbox *o) {
    struct mvx_link *l = o->link;
    for (;;) {
        pthread_mutex_lock(&l->m);
        while (!outbox_stopped(o) && (o->busy || !outbox_releasable(o) || (o->direct && !o->stalled))) {
            struct timespec ts;
            deadline_in(&ts, 500);
            pthread_cond_timedwait(o->direct ? &o->cv : &l->cv, &l->m, &ts);
        }
        if (outbox_stopped(o)) {
            pthread_mutex_unlock(&l->m);
            return;
        }
        struct mvx_held *h = o->head;
        o->busy = 1;
        pthread_mutex_unlock(&l->m);
        outbox_send(o, h);
        pthread_mutex_lock(&l->m);
        outbox_pop(o, h);
        o->busy = 0;
        o->stalled = 0;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->m);
        close(h->fd);
        free(h);
    }
}

/* The leader's monitor thread sends what the checks it took released, in order, without ever
 * blocking: a send that would block is left to the sending thread (`stalled`), which then goes on
 * in order. The same bytes, one thread hop fewer per response. */
static void outbox_release_now(struct mvx_outbox *o) {
    struct mvx_link *l = o->link;
    for (;;) {
        pthread_mutex_lock(&l->m);
        if (o->busy || o->stalled || outbox_stopped(o) || !outbox_releasable(o)) {
            pthread_mutex_unlock(&l->m);
            return;
        }
        struct mvx_held *h = o->head;
        o->busy = 1;
        pthread_mutex_unlock(&l->m);
        int done = 1;
        if (h->how >= 0) {
            shutdown(h->fd, h->how);
        } else {
            while (h->off < h->len) {
                ssize_t n = send(h->fd, h->data + h->off, h->len - h->off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                    h->off += (size_t)n;
                    __atomic_fetch_add(&o->sent, (unsigned long long)n, __ATOMIC_RELAXED);
                    continue;
                }
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTSOCK))
                    done = 0; /* full, or a pipe: the sending thread waits for room */
                break;        /* (a peer that reset or closed: as outbox_send, it ends here) */
            }
        }
        pthread_mutex_lock(&l->m);
        o->busy = 0;
        if (done)
            outbox_pop(o, h);
        else
            o->stalled = 1;
        pthread_cond_broadcast(&l->cv);
        if (!done)
            pthread_cond_signal(&o->cv);
        pthread_mutex_unlock(&l->m);
        if (!done)
            return;
        close(h->fd);
        free(h);
    }
}

/* Wait until everything held has left: 1, or 0 on timeout or once the link failed. */
int mvx_outbox_drain(struct mvx_outbox *o, int timeout_ms) {
    struct timespec end;
    deadline_in(&end, timeout_ms);
    struct mvx_link *l = o->link;
    pthread_mutex_lock(&l->m);
    while (o->head && !outbox_stopped(o))
        if (pthread_cond_timedwait(&l->cv, &l->m, &end) == ETIMEDOUT)
            break;
    int r = !o->head;
    pthread_mutex_unlock(&l->m);
    return r;
}

/* Stop the sending thread; once it returned, mvx_outbox_drop drops whatever is still held. */
void mvx_outbox_close(struct mvx_outbox *o) {
    pthread_mutex_lock(&o->link->m);
    o->closed = 1;
    pthread_cond_broadcast(&o->link->cv);
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->link->m);
}

void mvx_outbox_drop(struct mvx_outbox *o) {
    pthread_mutex_lock(&o->link->m);
    outbox_drop_all(o);
    pthread_mutex_unlock(&o->link->m);
}

unsigned long long mvx_outbox_sent(struct mvx_outbox *o) { return __atomic_load_n(&o->sent, __ATOMIC_RELAXED); }

/* How long the oldest held item has waited for the followers' checks (0: none held), and its call. */
double mvx_outbox_oldest_wait(struct mvx_outbox *o, uint64_t *seq) {
    pthread_mutex_lock(&o->link->m);
    double w = o->head ? now_s() - o->head->since : 0.0;
    *seq = o->head ? o->head->seq : 0;
    pthread_mutex_unlock(&o->link->m);
    return w;
}
/* Bytes held now (mvx run --stats: read without the lock, a glimpse). */
unsigned long long mvx_outbox_held(struct mvx_outbox *o) { return __atomic_load_n(&o->bytes, __ATOMIC_RELAXED); }

/* link_drain_only, then (write-behind) what the checks released leaves at once. */
static int link_drain_release(struct mvx_link *l, struct mvx_outbox *o) {
    int took = link_drain_only(l);
    if (o && o->direct) /* (also what checks the pump took before this thread owned the channels) */
        outbox_release_now(o);
    return took;
}

/* ---- a follower's inbox: the leader's frames, in order ---------------------------------------- */

struct mvx_frame {
    struct mvx_frame *next;
    double since;
    uint32_t len;
    uint8_t body[];
};

struct mvx_inbox {
    pthread_mutex_t m;
    pthread_cond_t cv;
    struct mvx_frame *head, *tail;
    int closed;
    /* own: the monitor thread reads this channel itself (no pump thread; hybrid mode, where its wait
     * for the variant polls the channel too); `end` says how it ended (MVX_INBOX_END_*) */
    struct mvx_chan *own;
    int end, end_errno;
};

struct mvx_inbox *mvx_inbox_new(void) {
    struct mvx_inbox *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->m, NULL);
    cond_init_monotonic(&q->cv);
    return q;
}

void mvx_inbox_free(struct mvx_inbox *q) {
    if (!q)
        return;
    while (q->head) {
        struct mvx_frame *f = q->head;
        q->head = f->next;
        free(f);
    }
    free(q);
}

int mvx_inbox_put(struct mvx_inbox *q, const void *body, size_t len) {
    struct mvx_frame *f = malloc(sizeof *f + (len ? len : 1));
    if (!f)
        return -ENOMEM;
    f->next = NULL;
    f->since = now_s();
    f->len = (uint32_t)len;
    memcpy(f->body, body, len);
    pthread_mutex_lock(&q->m);
    if (q->tail)
        q->tail->next = f;
    else
        q->head = f;
    q->tail = f;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->m);
    return 0;
}

void mvx_inbox_close(struct mvx_inbox *q) {
    pthread_mutex_lock(&q->m);
    q->closed = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->m);
}

double mvx_inbox_oldest_wait(struct mvx_inbox *q) {
    pthread_mutex_lock(&q->m);
    double w = q->head ? now_s() - q->head->since : 0.0;
    pthread_mutex_unlock(&q->m);
    return w;
}

static int check_frame(struct mvx_chan *c, const uint8_t *body, uint32_t n);

void mvx_inbox_own(struct mvx_inbox *q, struct mvx_chan *c) { q->own = c; }

static int inbox_fill(struct mvx_inbox *q, int wait_ms);

/* Whole frames already in the own channel's buffer (what TLS opened when it was handed over) go
 * to the queue now, not when the socket next has bytes. */
void mvx_inbox_take_buffered(struct mvx_inbox *q) {
    if (q->own)
        inbox_fill(q, 0);
}

/* How an own channel ended: 0 (it did not), MVX_INBOX_END_STOP (a StopSession: mvx_chan_special),
 * MVX_INBOX_END_EOF (closed by the leader), MVX_INBOX_END_ERROR (*err: -errno; -EPROTO: c->err). */
int mvx_inbox_end(struct mvx_inbox *q, int *err) {
    *err = q->end_errno;
    return q->end;
}

/* The monitor thread reads its own channel: every whole frame there within `wait_ms` goes into the
 * queue. 1 when frames came, 0 when none, -1 once the channel ended (q->end). */
static int inbox_fill(struct mvx_inbox *q, int wait_ms) {
    struct mvx_chan *c = q->own;
    const uint8_t *body;
    uint32_t n;
    size_t consumed = 0;
    int got = 0;
    if (q->end)
        return -1;
    for (;;) {
        int r = chan_frame_within(c, &body, &n, &consumed, got ? 0 : wait_ms);
        if (r == 2)
            break;
        if (r == 1 && (r = check_frame(c, body, n)) == 0) {
            if (n >= 1 && body[0] == MVX_M_STOP_SESSION) {
                keep_special(c, body, n);
                q->end = MVX_INBOX_END_STOP;
            } else if (mvx_inbox_put(q, body, n) == 0) {
                got = 1;
                continue;
            } else {
                q->end = MVX_INBOX_END_ERROR;
                q->end_errno = -ENOMEM;
            }
        } else if (r == 0) {
            q->end = MVX_INBOX_END_EOF;
        } else {
            q->end = MVX_INBOX_END_ERROR;
            q->end_errno = r;
        }
        break;
    }
    chan_drop(c, consumed);
    if (q->end) {
        pthread_mutex_lock(&q->m);
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->m);
        return got ? 1 : -1;
    }
    return got;
}

/* Wait for the head frame (timeout_ms < 0: no limit): 0 with *f set (still queued), 1 on timeout,
 * -1 once closed (or, reading its own channel, once it ended). Only the monitor thread takes
 * frames, so the head stays until it pops it. */
static int inbox_peek_own(struct mvx_inbox *q, struct mvx_frame **f, int timeout_ms) {
    double until = timeout_ms < 0 ? 0 : now_s() + timeout_ms / 1000.0;
    for (;;) {
        pthread_mutex_lock(&q->m);
        int closed = q->closed;
        struct mvx_frame *h = q->head;
        pthread_mutex_unlock(&q->m);
        if (closed)
            return -1;
        if (h) {
            *f = h;
            return 0;
        }
        if (q->end)
            return -1;
        int slice = 100; /* how often a blocked wait looks whether the session closed the inbox */
        if (timeout_ms >= 0) {
            double left = until - now_s();
            if (left <= 0)
                return 1;
            if (left * 1000 < slice)
                slice = (int)(left * 1000) + 1;
        }
        inbox_fill(q, slice);
    }
}

static int inbox_peek(struct mvx_inbox *q, struct mvx_frame **f, int timeout_ms) {
    if (q->own)
        return inbox_peek_own(q, f, timeout_ms);
    struct timespec end;
    if (timeout_ms >= 0)
        deadline_in(&end, timeout_ms);
    pthread_mutex_lock(&q->m);
    int r = 0;
    while (!q->head && !q->closed) {
        if (timeout_ms < 0)
            pthread_cond_wait(&q->cv, &q->m);
        else if (pthread_cond_timedwait(&q->cv, &q->m, &end) == ETIMEDOUT)
            break;
    }
    if (q->closed)
        r = -1;
    else if (!q->head)
        r = 1;
    else
        *f = q->head;
    pthread_mutex_unlock(&q->m);
    return r;
}

static void inbox_pop(struct mvx_inbox *q) {
    pthread_mutex_lock(&q->m);
    struct mvx_frame *f = q->head;
    if (f) {
        q->head = f->next;
        if (!q->head)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->m);
    free(f);
}

/* The head frame's body copied out (Python's Inbox.get): 0 with *len set; 1 timeout; -1 closed;
 * -ENOSPC when cap is too small (*len is then the size needed, the frame stays). */
int mvx_inbox_take(struct mvx_inbox *q, void *out, size_t cap, size_t *len, int timeout_ms) {
    struct mvx_frame *f;
    int r = inbox_peek(q, &f, timeout_ms);
    if (r)
        return r;
    *len = f->len;
    if (f->len > cap)
        return -ENOSPC;
    memcpy(out, f->body, f->len);
    inbox_pop(q);
    return 0;
}

/* A follower's pump: the leader's frames into the inbox; returns 1 with a StopSession frame kept
 * (mvx_chan_special), 0 at the clean end, -EPROTO/-errno. */
/* A frame the leader sent must decode as exactly one message (the monitor takes it as one):
 * 0, or -EPROTO with c->err naming what is wrong (the same words as the Python decoder). */
static int check_frame(struct mvx_chan *c, const uint8_t *body, uint32_t n) {
    static __thread uint8_t arena_buf[1 << 20]; /* enough for every frame but a huge tree */
    struct mvx_arena arena = {arena_buf, sizeof arena_buf, 0};
    struct mvx_msg msgs[2];
    size_t nm = 0;
    int r = mvx_decode_body(body, n, msgs, 2, &nm, &arena, c->err, sizeof c->err);
    if (r == MVX_E_NOSPACE && nm < 2) { /* the arena ran out: once more with all it can need */
        size_t need = mvx_decode_space(n);
        if (need > (64u << 20)) {
            snprintf(c->err, sizeof c->err, "a frame of %u bytes with too many values", n);
            return -EPROTO;
        }
        uint8_t *big = malloc(need);
        if (!big)
            return -ENOMEM;
        struct mvx_arena a2 = {big, need, 0};
        nm = 0;
        r = mvx_decode_body(body, n, msgs, 2, &nm, &a2, c->err, sizeof c->err);
        free(big);
    }
    if (r == MVX_E_NOSPACE || (r == 0 && nm != 1)) {
        snprintf(c->err, sizeof c->err, "a frame of several messages where one is expected");
        return -EPROTO;
    }
    return r ? -EPROTO : 0;
}

int mvx_inbox_pump(struct mvx_inbox *q, struct mvx_chan *c) {
    const uint8_t *body;
    uint32_t n;
    size_t consumed = 0;
    for (;;) {
        int r = chan_next_frame(c, &body, &n, &consumed);
        if (r <= 0)
            return r;
        if ((r = check_frame(c, body, n)) < 0)
            return r;
        if (n >= 1 && body[0] == MVX_M_STOP_SESSION)
            return chan_stop_at(c, body, n, consumed);
        if ((r = mvx_inbox_put(q, body, n)) < 0)
            return r;
    }
}

/* ---- records, as mvx.core.protocol writes them ------------------------------------------------ */

struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
};

static void wb_need(struct wbuf *w, size_t more) {
    if (w->oom || w->n + more <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->n + more)
        cap *= 2;
    uint8_t *p = realloc(w->p, cap);
    if (!p) {
        w->oom = 1;
        return;
    }
    w->p = p;
    w->cap = cap;
}

static void wb_put(struct wbuf *w, const void *d, size_t n) {
    wb_need(w, n);
    if (!w->oom) {
        memcpy(w->p + w->n, d, n);
        w->n += n;
    }
}

static void wb_u8(struct wbuf *w, uint8_t v) { wb_put(w, &v, 1); }
static void wb_u32(struct wbuf *w, uint32_t v) { wb_put(w, &v, 4); } /* little-endian hosts only */
static void wb_u64(struct wbuf *w, uint64_t v) { wb_put(w, &v, 8); }

static void wb_str(struct wbuf *w, const char *s) {
    size_t n = strlen(s);
    wb_u32(w, (uint32_t)n);
    wb_put(w, s, n);
}

/* an int value as Python's encoder writes it: I64 when it fits, else U64 */
static void wb_int(struct wbuf *w, int64_t v) {
    wb_u8(w, MVX_T_I64);
    wb_u64(w, (uint64_t)v);
}

static void wb_uint(struct wbuf *w, uint64_t v) {
    wb_u8(w, v < (1ull << 63) ? MVX_T_I64 : MVX_T_U64);
    wb_u64(w, v);
}

static void wb_none(struct wbuf *w) { wb_u8(w, MVX_T_NONE); }

static void wb_bytes(struct wbuf *w, const void *d, size_t n) {
    wb_u8(w, MVX_T_BYTES);
    wb_u32(w, (uint32_t)n);
    wb_put(w, d, n);
}

static void wb_no_flags(struct wbuf *w) { /* neutral(FlagSet()) = {"flags": [], "rest": 0} */
    wb_u8(w, MVX_T_DICT);
    wb_u32(w, 2);
    wb_str(w, "flags");
    wb_u8(w, MVX_T_LIST);
    wb_u32(w, 0);
    wb_str(w, "rest");
    wb_int(w, 0);
}

/* ---- the hot calls ----------------------------------------------------------------------------- */

/* MVX_HOT_* (mvx_native.h): read(fd, buf, count); recvfrom(fd, buf, len, 0, NULL, NULL);
 * write(fd, buf, count); sendto(fd, buf, len, 0, NULL, addrlen); writev(fd, iov, iovcnt) */
#define MVX_FAST_MAX_FD 65536
#define MVX_FAST_MAX_BUF (1u << 20) /* canonical.MAX_BUF: a bigger buffer goes the Python way */
#define MVX_FAST_FDEVS 256

struct mvx_fast {
    struct mvx_tracee *t;
    int role;
    struct mvx_link *link;   /* leader */
    struct mvx_inbox *inbox; /* follower */
    struct mvx_chan *reply;  /* follower: to the leader */
    struct mvx_outbox *outbox; /* leader, write-behind: checked outputs are held there */
    uint64_t seq;            /* the sync core's sequence number (Python copies it in and out) */
    int enabled;             /* 0: Python holds state this loop does not see; it only waits */
    int check_timeout_ms;
    int ack_every;
    unsigned int audit[MVX_NISA];
    uint8_t hot[MVX_NISA][MVX_MAX_NR];
    uint8_t socketcall[MVX_SOCKETCALL_SUBS]; /* i386 socketcall: sub-call number -> MVX_HOT_* */
    uint8_t fdok[MVX_FAST_MAX_FD]; /* MVX_FD_*: what the fd is, as Python's shadow says (0: ask it) */
    uint8_t placeholder[MVX_FAST_MAX_FD]; /* a follower's: the fd is an inert stand-in for the leader's */
    int dup[MVX_FAST_MAX_FD];      /* the monitor's duplicate of that fd (-1: none yet) */
    /* a performed call whose answer found it gone (a signal): its result for the restarted call */
    int pend;
    int pend_pid;
    long long pend_nr;
    unsigned long long pend_args[6];
    long long pend_ret;
    int pend_fd;           /* >= 0: the result is this connection, installed in the restarted call */
    int pend_cloexec;
    int pend_addrlen_in;   /* accept4: the *addrlen it gave, which the monitor's write replaced; -1 */
    int accept_fault_sig;  /* tests (MVX_FAULT_ACCEPT_SIGNAL): sent to the variant between its
                            * accept and the ADDFD, which then finds the call gone */
    unsigned long long handled; /* hot calls carried here */
    /* what this loop did to the fd table, in order, for Python's shadow (mvx_fast_take_fd_events):
     * (MVX_FDEV_*, mvx_native.h) */
    struct mvx_fdev fdev[MVX_FAST_FDEVS];
    int nfdev;
    /* epoll: this variant's registrations (Python's EpollRegistry, mirrored), each ISA's names of
     * the event bits and its epoll_event layout */
    struct epreg { int epfd, fd; uint64_t data; } *ep;
    int nep, capep;
    char *epname[MVX_NISA][32];
    int ep_size[MVX_NISA], ep_data_off[MVX_NISA];
    struct wbuf view, frame, batch;
    int batching; /* 1: frames wait for the next flush point (see flush); 0: each leaves at once */
    int owns_link; /* leader: its thread reads its channels itself while in mvx_fast_wait (link_own) */
    int spin_us;   /* owning them: how long a wait for the followers polls before it sleeps */
    uint8_t *data;
    size_t data_cap;
    /* the in-process agent (mvx_agent.h): the ring this monitor writes, the status page the agent
     * writes; a follower's: for each published slot the inbox frame and sequence number it is; a
     * leader's: the own-file fds its agent was last allowed to pread through the gate */
    struct mvx_agent_ring *ring;
    struct mvx_agent_status *agent;
    uint8_t own_given[8][MVX_AGENT_MAX_FD / 8]; /* by generation / 2 % 8: the last ones published */
    uint32_t own_gen, claims_tail;
    int claims_isa;
    int fds_changed; /* fdok[] or dup[] written since the leader's own-file set was last derived */
    struct mvx_frame *ring_frame[MVX_AGENT_SLOTS];
    uint64_t ring_seq[MVX_AGENT_SLOTS];
    uint32_t ring_n, ring_used;
    unsigned long long agent_answered; /* calls the agent answered or made */
    /* mvx trace (mvx_trace.c): its lines, and the file they go to (-1: not a trace); the iovec
     * lengths of the writev decoded last */
    struct wbuf trace;
    int trace_fd;
    int iovn;
    size_t iov_len[1024];
    char err[256];
};

struct mvx_fast *mvx_fast_new(struct mvx_tracee *t, int role) {
    struct mvx_fast *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->t = t;
    f->role = role;
    f->check_timeout_ms = 15000;
    f->ack_every = 16;
    f->pend_fd = -1;
    f->trace_fd = -1;
    f->claims_isa = -1;
    f->fds_changed = 1;
    for (int i = 0; i < MVX_FAST_MAX_FD; i++)
        f->dup[i] = -1;
    return f;
}

void mvx_fast_free(struct mvx_fast *f) {
    if (!f)
        return;
    if (f->pend && f->pend_fd >= 0)
        close(f->pend_fd);
    for (int i = 0; i < MVX_NISA; i++)
        for (int b = 0; b < 32; b++)
            free(f->epname[i][b]);
    free(f->ep);
    free(f->view.p);
    free(f->frame.p);
    free(f->batch.p);
    free(f->trace.p);
    free(f->data);
    if (f->ring)
        munmap(f->ring, MVX_AGENT_RING_SIZE);
    if (f->agent)
        munmap((void *)f->agent, MVX_AGENT_STATUS_SIZE);
    free(f);
}

void mvx_fast_configure(struct mvx_fast *f, struct mvx_link *link, struct mvx_inbox *inbox,
                        struct mvx_chan *reply, int check_timeout_ms, int ack_every) {
    f->link = link;
    f->inbox = inbox;
    f->reply = reply;
    f->check_timeout_ms = check_timeout_ms;
    f->ack_every = ack_every;
}

/* epoll, as Python's shadow sees it: the name of event bit `bit` on `isa` (NULL: none), the layout
of its epoll_event, and every registration (add: data for epfd/fd; del: gone). */
void mvx_fast_set_epoll_bit(struct mvx_fast *f, int isa, int bit, const char *name) {
    if (isa < 0 || isa >= MVX_NISA || bit < 0 || bit > 31)
        return;
    free(f->epname[isa][bit]);
    f->epname[isa][bit] = name ? strdup(name) : NULL;
}

void mvx_fast_set_epoll_layout(struct mvx_fast *f, int isa, int size, int data_off) {
    if (isa >= 0 && isa < MVX_NISA) {
        f->ep_size[isa] = size;
        f->ep_data_off[isa] = data_off;
    }
}

static struct epreg *ep_find_fd(struct mvx_fast *f, int epfd, int fd) {
    for (int i = 0; i < f->nep; i++)
        if (f->ep[i].epfd == epfd && f->ep[i].fd == fd)
            return &f->ep[i];
    return NULL;
}

static struct epreg *ep_find_data(struct mvx_fast *f, int epfd, uint64_t data) {
    for (int i = 0; i < f->nep; i++)
        if (f->ep[i].epfd == epfd && f->ep[i].data == data)
            return &f->ep[i];
    return NULL;
}

void mvx_fast_epoll_ctl(struct mvx_fast *f, int epfd, int fd, int add, uint64_t data) {
    struct epreg *r = ep_find_fd(f, epfd, fd);
    if (r && !add) {
        *r = f->ep[--f->nep];
        return;
    }
    if (!add)
        return;
    if (!r) {
        if (f->nep == f->capep) {
            int cap = f->capep ? 2 * f->capep : 64;
            struct epreg *p = realloc(f->ep, cap * sizeof *p);
            if (!p)
                return;
            f->ep = p;
            f->capep = cap;
        }
        r = &f->ep[f->nep++];
        r->epfd = epfd;
        r->fd = fd;
    }
    r->data = data;
}

/* `fd` closed: its registrations go, and those of the epoll it was */
void mvx_fast_epoll_close(struct mvx_fast *f, int fd) {
    for (int i = 0; i < f->nep;)
        if (f->ep[i].epfd == fd || f->ep[i].fd == fd)
            f->ep[i] = f->ep[--f->nep];
        else
            i++;
}

void mvx_fast_epoll_clear(struct mvx_fast *f) { f->nep = 0; }

void mvx_fast_set_outbox(struct mvx_fast *f, struct mvx_outbox *o) { f->outbox = o; }
void mvx_fast_set_batching(struct mvx_fast *f, int on) { f->batching = on; }

void mvx_fast_set_state(struct mvx_fast *f, int enabled, uint64_t seq) {
    f->enabled = enabled;
    f->seq = seq;
}

uint64_t mvx_fast_seq(struct mvx_fast *f) { return f->seq; }
unsigned long long mvx_fast_handled(struct mvx_fast *f) { return f->handled; }

/* The pending result of a performed call whose answer found it gone, handed to Python (1), or 0. */
int mvx_fast_take_pending(struct mvx_fast *f, int *pid, long long *nr, unsigned long long args[6],
                          long long *ret, int *fd, int *cloexec, int *addrlen_in) {
    if (!f->pend)
        return 0;
    f->pend = 0;
    *pid = f->pend_pid;
    *nr = f->pend_nr;
    memcpy(args, f->pend_args, sizeof f->pend_args);
    *ret = f->pend_ret;
    *fd = f->pend_fd; /* now Python's */
    *cloexec = f->pend_cloexec;
    *addrlen_in = f->pend_addrlen_in;
    f->pend_fd = -1;
    return 1;
}

void mvx_fast_set_accept_fault(struct mvx_fast *f, int sig) { f->accept_fault_sig = sig; }

void mvx_fast_set_own_link(struct mvx_fast *f, int own, int spin_us) {
    /* only where the loop polls (hybrid): at a ptrace stop it blocks in waitpid, and checks that
     * came meanwhile would wait unread for the variant's next stop (write-behind's held bytes with
     * them, while the program waits for an answer they are) */
    f->owns_link = own && f->link && f->role == MVX_ROLE_LEADER && f->t->notify_fd >= 0;
    f->spin_us = spin_us;
}

void mvx_fast_set_hot(struct mvx_fast *f, int isa, unsigned int audit, int nr, int hot) {
    if (isa >= 0 && isa < MVX_NISA && nr >= 0 && nr < MVX_MAX_NR) {
        f->audit[isa] = audit;
        f->hot[isa][nr] = (uint8_t)hot;
    }
}

void mvx_fast_set_socketcall(struct mvx_fast *f, int sub, int hot) {
    if (sub >= 0 && sub < MVX_SOCKETCALL_SUBS)
        f->socketcall[sub] = (uint8_t)hot;
}

void mvx_fast_set_fd(struct mvx_fast *f, int fd, int ok, int dup) {
    if (fd >= 0 && fd < MVX_FAST_MAX_FD) {
        f->fdok[fd] = (uint8_t)ok;
        f->dup[fd] = dup;
        f->fds_changed = 1;
        if (!ok)
            f->placeholder[fd] = 0;
    }
}

void mvx_fast_set_placeholder(struct mvx_fast *f, int fd, int on) {
    if (fd >= 0 && fd < MVX_FAST_MAX_FD)
        f->placeholder[fd] = (uint8_t)on;
}

void mvx_fast_set_dup(struct mvx_fast *f, int fd, int dup) {
    if (fd >= 0 && fd < MVX_FAST_MAX_FD) {
        f->dup[fd] = dup;
        f->fds_changed = 1;
    }
}


static struct mvx_fdev *fd_event(struct mvx_fast *f, int kind, int fd, int dup) {
    struct mvx_fdev *e = &f->fdev[f->nfdev++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->fd = fd;
    e->dup = dup;
    return e;
}

int mvx_fast_take_fd_events(struct mvx_fast *f, struct mvx_fdev *out, int cap) {
    int n = f->nfdev < cap ? f->nfdev : cap;
    memcpy(out, f->fdev, sizeof f->fdev[0] * (size_t)n);
    memmove(f->fdev, f->fdev + n, sizeof f->fdev[0] * (size_t)(f->nfdev - n));
    f->nfdev -= n;
    return n;
}

void mvx_fast_forget_fds(struct mvx_fast *f) {
    memset(f->fdok, 0, sizeof f->fdok);
    f->fds_changed = 1;
    memset(f->placeholder, 0, sizeof f->placeholder);
    for (int i = 0; i < MVX_FAST_MAX_FD; i++)
        f->dup[i] = -1;
}

/* The decoded hot call: what mvx.isa.canonical would make of it, for these few calls. */
struct hot_call {
    int hot, isa, word;
    const char *name;
    int fd;
    unsigned long long a[6];
    uint64_t count;     /* bytes asked for (in) or given (out) */
    int64_t offset;     /* pread64 */
    int maxevents, timeout; /* epoll */
    int how;                /* shutdown */
    int sockopt;            /* setsockopt: its SOCKOPTS entry */
    int clock, ts_size;     /* clock_gettime: the clock id; its timespec's size in the variant */
    int64_t sec, nsec;      /* clock_gettime: the reading */
    int room;               /* accept4: the room its address buffer has (*addrlen); -1: no addrlen */
    int op, target;         /* epoll_ctl: EPOLL_CTL_*, the fd it registers */
    uint32_t events;        /* epoll_ctl: the event's bits (has_event: an event was given) */
    int has_event;
    uint64_t data;          /* epoll_ctl: the event's data word, masked to the variant's pointer size */
    struct sockaddr_in peer; /* accept4: the peer's address (AF_INET only) */
    uint32_t flags;         /* recvfrom: MSG_* (RECV_FLAGS only) */
    /* sendfile(out_fd = fd, in_fd, &offset, count): the file bytes it sends are `out` */
    int in_fd, off_size;
    unsigned long long off_ptr;
    int64_t off_after;      /* the offset the call left (its out-data) */
    char content[48];       /* mvx.core.sync.content_digest of the file bytes ("": none) */
    const uint8_t *out; /* out-calls: the bytes (f->data) */
    size_t outlen;
};

static int isa_of(struct mvx_fast *f, unsigned int audit) {
    for (int i = 0; i < MVX_NISA; i++)
        if (f->audit[i] == audit && audit)
            return i;
    return -1;
}

static int data_room(struct mvx_fast *f, size_t n) {
    if (f->data_cap >= n)
        return 0;
    uint8_t *p = realloc(f->data, n ? n : 1);
    if (!p)
        return -1;
    f->data = p;
    f->data_cap = n;
    return 0;
}

static const char *HOT_NAMES[] = {NULL, "read", "recvfrom", "write", "sendto", "writev", "pread64",
                                  "epoll_pwait", "epoll_pwait", "shutdown", "socketcall", "close",
                                  "sendfile", "sendfile", "setsockopt", "clock_gettime", "clock_gettime",
                                  "accept4", "epoll_ctl"};
/* clocks this loop reads for the program (global ones: the same in the monitor's process and in
 * every variant's), by id, named as mvx.isa.canonical names them */
static const char *CLOCK_NAMES[] = {[0] = "CLOCK_REALTIME", [1] = "CLOCK_MONOTONIC", [4] = "CLOCK_MONOTONIC_RAW",
                                    [5] = "CLOCK_REALTIME_COARSE", [6] = "CLOCK_MONOTONIC_COARSE",
                                    [7] = "CLOCK_BOOTTIME"};
static const char *SHUT_NAMES[] = {"SHUT_RD", "SHUT_WR", "SHUT_RDWR"};
static const char *EPOLL_OPS[] = {NULL, "EPOLL_CTL_ADD", "EPOLL_CTL_DEL", "EPOLL_CTL_MOD"};
/* recvfrom flags this loop carries, with their names in sorted order (mvx.core.sync.neutral); the
 * same values on every ISA Linux runs mvx on. Any other bit: Python. */
static const struct { uint32_t bit; const char *name; } RECV_FLAGS[] = {
    {MSG_DONTWAIT, "MSG_DONTWAIT"}, {MSG_NOSIGNAL, "MSG_NOSIGNAL"}, {MSG_TRUNC, "MSG_TRUNC"}};
#define RECV_FLAGS_ALL (MSG_DONTWAIT | MSG_NOSIGNAL | MSG_TRUNC)
/* i386 socketcall(call, args): how many 32-bit arguments each carried sub-call has at `args`
 * (mvx.isa.syscalls.SOCKETCALL_SUBCALLS); send and recv are sendto and recvfrom without an address */
static const uint8_t SOCKETCALL_NARGS[MVX_SOCKETCALL_SUBS] = {[9] = 4, [10] = 4, [11] = 6, [12] = 6, [13] = 2,
                                                             [14] = 5, [18] = 4};
/* accept4's flags (the same values on every ISA mvx runs), names sorted as mvx.core.sync.neutral sorts them */
#define ACCEPT_CLOEXEC 0x80000
#define ACCEPT_NONBLOCK 0x800
/* setsockopt options this loop carries (the same numbers on every ISA), named as mvx.isa.canonical
 * names them; any other: Python */
static const struct { int level, optname; const char *level_name, *name; } SOCKOPTS[] = {
    {6, 1, "IPPROTO_TCP", "TCP_NODELAY"}, {6, 3, "IPPROTO_TCP", "TCP_CORK"}};
#define MVX_SOCKOPT_MAX 64 /* optval bytes */
#define MVX_MAX_EVENTS 65536
static int is_epoll(int hot);

/* XXH3-128 from the system's libxxhash (the library lighttpd itself links), looked up at run time:
 * without it sendfile goes the Python way (mvx.core.sync.content_digest, the same digest). */
typedef struct { uint64_t low64, high64; } xxh128_t;
static xxh128_t (*xxh3_128)(const void *, size_t);
static pthread_once_t xxh_once = PTHREAD_ONCE_INIT;
static void xxh_load(void) {
    void *h = dlopen("libxxhash.so.0", RTLD_NOW | RTLD_LOCAL);
    if (h)
        *(void **)&xxh3_128 = dlsym(h, "XXH3_128bits");
}

static int content_digest(char out[48], const void *data, size_t n) {
    pthread_once(&xxh_once, xxh_load);
    if (!xxh3_128)
        return -1;
    xxh128_t d = xxh3_128(data, n);
    snprintf(out, 48, "xxh3-128:%016llx%016llx", (unsigned long long)d.high64, (unsigned long long)d.low64);
    return 0;
}

int mvx_fast_digest(const void *data, size_t n, char *out) { return content_digest(out, data, n); }

/* The duplicate held for the variant's `fd` is of another file now (the fd was reused behind this
 * loop's back): forgotten here, number and all, so this loop never closes it (Python's FdCache holds
 * the same number and closes it when it finds it stale; it takes a fresh one). */
static void stale_dup(struct mvx_fast *f, int fd) {
    f->fdok[fd] = 0;
    f->dup[fd] = -1;
    f->fds_changed = 1;
}

/* The monitor's duplicate of the variant's `fd`, taken now if Python had none (Python adopts it:
 * mvx_fast_take_fd_events); checked with kcmp. -1: none to be had. */
static int dup_of(struct mvx_fast *f, int fd) {
    int mine = f->dup[fd];
    if (mine >= 0) {
        if (mvx_same_file(f->t->pid, fd, mine) == 1)
            return mine;
        stale_dup(f, fd);
        return -1;
    }
    if (f->nfdev >= MVX_FAST_FDEVS || (mine = mvx_pidfd_getfd(f->t->pid, fd)) < 0)
        return -1;
    f->dup[fd] = mine;
    f->fds_changed = 1;
    fd_event(f, MVX_FDEV_GRABBED, fd, mine);
    return mine;
}

#define MVX_FAST_MAX_FILE (16u << 20) /* sendfile counts up to this: bigger ones go the Python way */

/* sendfile's file bytes: read through the duplicate of in_fd at the call's offset (the bytes the
 * call is about to send), and their digest. 1, or 0 (Python reports what it can). */
static int decode_sendfile(struct mvx_fast *f, struct hot_call *c) {
    c->in_fd = (int)(int32_t)c->a[1];
    c->off_ptr = c->a[2];
    c->count = c->a[3];
    c->off_size = c->hot == MVX_HOT_SENDFILE64 ? 8 : c->word;
    if (c->in_fd < 0 || c->in_fd >= MVX_FAST_MAX_FD || f->fdok[c->in_fd] != MVX_FD_OWN || !c->off_ptr ||
        c->count > MVX_FAST_MAX_FILE)
        return 0; /* the file's own position, a file not the variant's own, a huge count: Python */
    uint64_t raw = 0;
    if (mvx_read_mem(f->t->pid, c->off_ptr, &raw, (size_t)c->off_size) != c->off_size)
        return 0;
    c->offset = c->off_size == 4 ? (int64_t)(int32_t)raw : (int64_t)raw;
    if (f->trace_fd >= 0)
        return 1; /* mvx trace: nothing compared, so no bytes read */
    int mine = c->offset < 0 ? -1 : dup_of(f, c->in_fd);
    if (mine < 0 || data_room(f, c->count) < 0)
        return 0;
    ssize_t n = pread(mine, f->data, c->count, c->offset);
    if (n < 0 || content_digest(c->content, f->data, (size_t)n) < 0)
        return 0;
    c->out = f->data;
    c->outlen = (size_t)n;
    return 1;
}

/* Decode the stop's call; 1 when it is a hot call this loop carries, 0 when Python must. Out-calls
 * read their bytes from the variant here (once: what is checked is what is sent). */
static int decode_hot(struct mvx_fast *f, const struct mvx_event *ev, struct hot_call *c) {
    int isa = isa_of(f, ev->arch);
    if (isa < 0 || ev->nr < 0 || ev->nr >= MVX_MAX_NR || ev->pid != f->t->pid)
        return 0;
    int hot = f->hot[isa][ev->nr];
    if (!hot)
        return 0;
    memset(c, 0, sizeof *c);
    c->isa = isa;
    c->word = isa == MVX_ISA_I386 ? 4 : 8;
    memcpy(c->a, ev->args, sizeof c->a);
    if (c->word == 4)
        for (int i = 0; i < 6; i++)
            c->a[i] &= 0xffffffffull;
    if (hot == MVX_HOT_SOCKETCALL) { /* the sub-call's arguments are in the variant's memory */
        unsigned long long sub = c->a[0];
        if (sub >= MVX_SOCKETCALL_SUBS || !f->socketcall[sub] || !SOCKETCALL_NARGS[sub])
            return 0;
        uint32_t args[6] = {0};
        size_t n = 4ul * SOCKETCALL_NARGS[sub];
        if (mvx_read_mem(f->t->pid, c->a[1], args, n) != (long)n)
            return 0; /* unreadable: Python reports what it can */
        for (int i = 0; i < 6; i++)
            c->a[i] = args[i];
        hot = f->socketcall[sub];
    }
    c->hot = hot;
    c->name = HOT_NAMES[hot];
    if (hot == MVX_HOT_CLOCK || hot == MVX_HOT_CLOCK64) { /* clock_gettime(clockid, tp) */
        c->fd = -1;
        c->clock = (int)(int32_t)c->a[0];
        c->ts_size = hot == MVX_HOT_CLOCK64 ? 16 : 2 * c->word;
        return c->clock >= 0 && c->clock < (int)(sizeof CLOCK_NAMES / sizeof CLOCK_NAMES[0]) &&
               CLOCK_NAMES[c->clock] && c->a[1];
    }
    c->fd = (int)(int32_t)c->a[0];
    if (c->fd < 0 || c->fd >= MVX_FAST_MAX_FD)
        return 0;
    int want = hot == MVX_HOT_PREAD ? MVX_FD_OWN : is_epoll(hot) || hot == MVX_HOT_EPOLL_CTL ? MVX_FD_EPOLL
                                                                                                 : MVX_FD_LEADERS;
    if (hot != MVX_HOT_CLOSE && f->fdok[c->fd] != want)
        return 0;
    switch (hot) {
    case MVX_HOT_SENDFILE:
    case MVX_HOT_SENDFILE64:
        return decode_sendfile(f, c);
    case MVX_HOT_EPOLL_CTL: { /* (epfd, op, fd, event): made in every variant */
        c->op = (int)(int32_t)c->a[1];
        c->target = (int)(int32_t)c->a[2];
        if (c->op < 1 || c->op > 3 || c->target < 0 || c->target >= MVX_FAST_MAX_FD || f->ep_size[isa] <= 0 ||
            f->nfdev >= MVX_FAST_FDEVS || (c->op != 2 && !c->a[3]) || f->fdok[c->target] == MVX_FD_SIGNALFD)
            return 0; /* another op, an fd out of range, no event to add, a signalfd: Python */
        if (c->a[3]) {
            uint8_t raw[16];
            int size = f->ep_size[isa];
            if (size > (int)sizeof raw || mvx_read_mem(f->t->pid, c->a[3], raw, (size_t)size) != size)
                return 0;
            c->has_event = 1;
            memcpy(&c->events, raw, 4);
            memcpy(&c->data, raw + f->ep_data_off[isa], 8); /* 64 bits on every ISA */
        }
        return 1;
    }
    case MVX_HOT_ACCEPT4: { /* (fd, addr, addrlen, flags) */
        if (f->nfdev >= MVX_FAST_FDEVS)
            return 0;
        c->flags = (uint32_t)c->a[3];
        c->room = -1;
        if ((c->a[3] >> 32) || (c->flags & ~(uint32_t)(ACCEPT_CLOEXEC | ACCEPT_NONBLOCK)) || (c->a[1] && !c->a[2]))
            return 0; /* other flags; an address without its length (the kernel faults): Python */
        if (c->a[2]) {
            int32_t room;
            if (mvx_read_mem(f->t->pid, c->a[2], &room, 4) != 4 || room < 0)
                return 0; /* unreadable, or a negative length (EINVAL): Python */
            c->room = room;
        }
        return 1;
    }
    case MVX_HOT_SETSOCKOPT: { /* (fd, level, optname, optval, optlen): optval's bytes compared */
        int level = (int)(int32_t)c->a[1], name = (int)(int32_t)c->a[2];
        c->count = (uint32_t)c->a[4];
        c->sockopt = -1;
        for (int i = 0; i < (int)(sizeof SOCKOPTS / sizeof SOCKOPTS[0]); i++)
            if (SOCKOPTS[i].level == level && SOCKOPTS[i].optname == name)
                c->sockopt = i;
        if (c->sockopt < 0 || c->count > MVX_SOCKOPT_MAX || (c->a[4] >> 32) || data_room(f, c->count) < 0)
            return 0;
        if (c->a[3] && c->count && mvx_read_mem(f->t->pid, c->a[3], f->data, c->count) != (long)c->count)
            return 0; /* unreadable: Python shows what it can */
        c->out = c->a[3] ? f->data : NULL;
        c->outlen = c->count;
        return 1;
    }
    case MVX_HOT_CLOSE: /* an fd Python described (never the dynamic loader's own, which Python
                         * passes over as noise): close is local; Python learns of it (take_fd_events) */
        return f->fdok[c->fd] != 0 && f->nfdev < MVX_FAST_FDEVS;
    case MVX_HOT_SHUTDOWN:
        c->how = (int)(int32_t)c->a[1];
        return c->how >= 0 && c->how <= 2; /* another value: Python shows it as a number */
    case MVX_HOT_EPOLL_PWAIT:
        if (c->a[4] != 0)
            return 0; /* a signal mask: only the variant can apply it */
        /* fallthrough */
    case MVX_HOT_EPOLL_WAIT:
        c->maxevents = (int)(int32_t)c->a[2];
        c->timeout = (int)(int32_t)c->a[3];
        return c->maxevents > 0 && c->maxevents <= MVX_MAX_EVENTS && f->ep_size[isa] > 0;
    case MVX_HOT_PREAD:
        c->count = c->a[2];
        c->offset = c->word == 4 ? (int64_t)(c->a[3] | (c->a[4] << 32)) : (int64_t)c->a[3];
        return c->count <= MVX_FAST_MAX_BUF && f->dup[c->fd] >= 0;
    case MVX_HOT_READ:
        c->count = c->a[2];
        return c->count <= MVX_FAST_MAX_BUF;
    case MVX_HOT_RECVFROM:
        c->count = c->a[2];
        c->flags = (uint32_t)c->a[3];
        return c->count <= MVX_FAST_MAX_BUF && !(c->flags & ~RECV_FLAGS_ALL) && (c->a[3] >> 32) == 0 &&
               c->a[4] == 0 && c->a[5] == 0;
    case MVX_HOT_WRITE:
    case MVX_HOT_SENDTO:
        c->count = c->a[2];
        if (c->count > MVX_FAST_MAX_BUF || (hot == MVX_HOT_SENDTO && ((uint32_t)c->a[3] != 0 || c->a[4] != 0)))
            return 0;
        if (data_room(f, c->count) < 0)
            return 0;
        if (c->count && mvx_read_mem(f->t->pid, c->a[1], f->data, c->count) != (long)c->count)
            return 0;
        c->out = f->data;
        c->outlen = c->count;
        return 1;
    case MVX_HOT_WRITEV: {
        int cnt = (int)(int32_t)c->a[2];
        if (cnt < 0 || cnt > 1024)
            return 0;
        c->count = (uint64_t)cnt;
        unsigned long long iov[2 * 1024];
        uint32_t iov32[2 * 1024];
        size_t total = 0;
        if (cnt) {
            if (c->word == 8) {
                if (mvx_read_mem(f->t->pid, c->a[1], iov, 16ul * cnt) != 16l * cnt)
                    return 0;
            } else {
                if (mvx_read_mem(f->t->pid, c->a[1], iov32, 8ul * cnt) != 8l * cnt)
                    return 0;
                for (int i = 0; i < 2 * cnt; i++)
                    iov[i] = iov32[i];
            }
        }
        for (int i = 0; i < cnt; i++) {
            if (iov[2 * i + 1] > MVX_FAST_MAX_BUF)
                return 0;
            total += iov[2 * i + 1];
        }
        if (total > MVX_FAST_MAX_BUF || data_room(f, total) < 0)
            return 0;
        size_t at = 0;
        for (int i = 0; i < cnt; i++) {
            size_t n = iov[2 * i + 1];
            if (n && mvx_read_mem(f->t->pid, iov[2 * i], f->data + at, n) != (long)n)
                return 0;
            at += n;
            f->iov_len[i] = n;
        }
        f->iovn = cnt;
        c->out = f->data;
        c->outlen = total;
        return 1;
    }
    }
    return 0;
}

static void wb_recv_flags(struct wbuf *w, uint32_t flags) { /* {"flags": [names], "rest": 0} */
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof RECV_FLAGS / sizeof RECV_FLAGS[0]; i++)
        n += !!(flags & RECV_FLAGS[i].bit);
    wb_u8(w, MVX_T_DICT);
    wb_u32(w, 2);
    wb_str(w, "flags");
    wb_u8(w, MVX_T_LIST);
    wb_u32(w, n);
    for (size_t i = 0; i < sizeof RECV_FLAGS / sizeof RECV_FLAGS[0]; i++)
        if (flags & RECV_FLAGS[i].bit) {
            wb_u8(w, MVX_T_STR);
            wb_str(w, RECV_FLAGS[i].name);
        }
    wb_str(w, "rest");
    wb_int(w, 0);
}

static void wb_epoll_events(struct wbuf *w, struct mvx_fast *f, int isa, uint32_t events, int neutral);

/* mvx.core.sync.view(call), encoded */
static void put_view(struct wbuf *w, struct mvx_fast *f, const struct hot_call *c) {
    wb_u8(w, MVX_T_LIST);
    wb_u32(w, 2);
    wb_u8(w, MVX_T_STR);
    wb_str(w, c->name);
    wb_u8(w, MVX_T_LIST);
    switch (c->hot) {
    case MVX_HOT_READ: /* [fd, None, count] */
        wb_u32(w, 3);
        wb_int(w, c->fd);
        wb_none(w);
        wb_uint(w, c->count);
        break;
    case MVX_HOT_RECVFROM: /* [fd, None, len, flags, None, None] */
        wb_u32(w, 6);
        wb_int(w, c->fd);
        wb_none(w);
        wb_uint(w, c->count);
        wb_recv_flags(w, c->flags);
        wb_none(w);
        wb_none(w);
        break;
    case MVX_HOT_WRITE: /* [fd, bytes, count] */
        wb_u32(w, 3);
        wb_int(w, c->fd);
        wb_bytes(w, c->out, c->outlen);
        wb_uint(w, c->count);
        break;
    case MVX_HOT_SENDTO: /* [fd, bytes, len, flags, None, addrlen] */
        wb_u32(w, 6);
        wb_int(w, c->fd);
        wb_bytes(w, c->out, c->outlen);
        wb_uint(w, c->count);
        wb_no_flags(w);
        wb_none(w);
        wb_uint(w, c->word == 4 ? (uint32_t)c->a[5] : c->a[5]);
        break;
    case MVX_HOT_SENDFILE: /* [out_fd, in_fd, offset, count] */
    case MVX_HOT_SENDFILE64:
        wb_u32(w, 4);
        wb_int(w, c->fd);
        wb_int(w, c->in_fd);
        wb_int(w, c->offset);
        wb_uint(w, c->count);
        break;
    case MVX_HOT_SETSOCKOPT: /* [fd, level, optname, optval's bytes or None, optlen] */
        wb_u32(w, 5);
        wb_int(w, c->fd);
        wb_u8(w, MVX_T_STR);
        wb_str(w, SOCKOPTS[c->sockopt].level_name);
        wb_u8(w, MVX_T_STR);
        wb_str(w, SOCKOPTS[c->sockopt].name);
        if (c->out)
            wb_bytes(w, c->out, c->outlen);
        else
            wb_none(w);
        wb_uint(w, c->count);
        break;
    case MVX_HOT_EPOLL_CTL: /* [epfd, op, fd, {"events": flags} or None] (the data word is not compared) */
        wb_u32(w, 4);
        wb_int(w, c->fd);
        wb_u8(w, MVX_T_STR);
        wb_str(w, EPOLL_OPS[c->op]);
        wb_int(w, c->target);
        if (c->has_event) {
            wb_u8(w, MVX_T_DICT);
            wb_u32(w, 1);
            wb_str(w, "events");
            wb_epoll_events(w, f, c->isa, c->events, 1);
        } else {
            wb_none(w);
        }
        break;
    case MVX_HOT_ACCEPT4: /* [fd, None, *addrlen or None, flags] */
        wb_u32(w, 4);
        wb_int(w, c->fd);
        wb_none(w);
        if (c->a[2])
            wb_int(w, c->room);
        else
            wb_none(w);
        wb_u8(w, MVX_T_DICT);
        wb_u32(w, 2);
        wb_str(w, "flags");
        wb_u8(w, MVX_T_LIST);
        wb_u32(w, !!(c->flags & ACCEPT_CLOEXEC) + !!(c->flags & ACCEPT_NONBLOCK));
        if (c->flags & ACCEPT_CLOEXEC) {
            wb_u8(w, MVX_T_STR);
            wb_str(w, "SOCK_CLOEXEC");
        }
        if (c->flags & ACCEPT_NONBLOCK) {
            wb_u8(w, MVX_T_STR);
            wb_str(w, "SOCK_NONBLOCK");
        }
        wb_str(w, "rest");
        wb_int(w, 0);
        break;
    case MVX_HOT_CLOCK: /* [clock name] */
    case MVX_HOT_CLOCK64:
        wb_u32(w, 1);
        wb_u8(w, MVX_T_STR);
        wb_str(w, CLOCK_NAMES[c->clock]);
        break;
    case MVX_HOT_CLOSE: /* [fd] */
        wb_u32(w, 1);
        wb_int(w, c->fd);
        break;
    case MVX_HOT_SHUTDOWN: /* [fd, "SHUT_WR"] */
        wb_u32(w, 2);
        wb_int(w, c->fd);
        wb_u8(w, MVX_T_STR);
        wb_str(w, SHUT_NAMES[c->how]);
        break;
    case MVX_HOT_EPOLL_WAIT: /* [epfd, None, maxevents, timeout, None, None] */
    case MVX_HOT_EPOLL_PWAIT:
        wb_u32(w, 6);
        wb_int(w, c->fd);
        wb_none(w);
        wb_int(w, c->maxevents);
        wb_int(w, c->timeout);
        wb_none(w);
        wb_none(w);
        break;
    case MVX_HOT_PREAD: /* [fd, None, count, offset] */
        wb_u32(w, 4);
        wb_int(w, c->fd);
        wb_none(w);
        wb_uint(w, c->count);
        wb_int(w, c->offset);
        break;
    case MVX_HOT_WRITEV: /* [fd, the bytes of every iovec, iovcnt] */
        wb_u32(w, 3);
        wb_int(w, c->fd);
        wb_bytes(w, c->out, c->outlen);
        wb_int(w, (int32_t)c->count);
        break;
    }
}

static int is_epoll(int hot) { return hot == MVX_HOT_EPOLL_WAIT || hot == MVX_HOT_EPOLL_PWAIT; }
/* a checked output: the bytes (or the end of them) that leave the machine */
static int is_sendfile(int hot) { return hot == MVX_HOT_SENDFILE || hot == MVX_HOT_SENDFILE64; }
static int is_clock(int hot) { return hot == MVX_HOT_CLOCK || hot == MVX_HOT_CLOCK64; }

/* A timespec of the variant's ISA: two words (i386: 32-bit), or two 64-bit ones (timespec64). */
static void ts_decode(struct hot_call *c, const uint8_t *raw) {
    if (c->ts_size == 8) {
        int32_t v[2];
        memcpy(v, raw, 8);
        c->sec = v[0];
        c->nsec = v[1];
    } else {
        memcpy(&c->sec, raw, 8);
        memcpy(&c->nsec, raw + 8, 8);
    }
}

static void ts_encode(const struct hot_call *c, int64_t sec, int64_t nsec, uint8_t *raw) {
    if (c->ts_size == 8) {
        int32_t v[2] = {(int32_t)sec, (int32_t)nsec};
        memcpy(raw, v, 8);
    } else {
        memcpy(raw, &sec, 8);
        memcpy(raw + 8, &nsec, 8);
    }
}
static int is_output(int hot) {
    return hot == MVX_HOT_WRITE || hot == MVX_HOT_SENDTO || hot == MVX_HOT_WRITEV || hot == MVX_HOT_SHUTDOWN ||
           is_sendfile(hot);
}

/* The content an opt-str of the protocol carries, as this call's digest ("": none)? */
static int same_content(const struct hot_call *c, const struct mvx_opt_str *theirs) {
    size_t n = strlen(c->content);
    return theirs->present == (n > 0) && (!n || (theirs->s.n == n && !memcmp(theirs->s.p, c->content, n)));
}

static void wb_content(struct wbuf *w, const struct hot_call *c) {
    if (c->content[0]) {
        wb_u8(w, 1);
        wb_str(w, c->content);
    } else {
        wb_u8(w, 0);
    }
}
static int is_read(int hot) { return hot == MVX_HOT_READ || hot == MVX_HOT_RECVFROM || hot == MVX_HOT_PREAD; }

/* The bytes a read that returned `ret` wrote: never past the buffer (MSG_TRUNC returns more). */
static size_t read_bytes(const struct hot_call *c, long long ret) {
    return ret <= 0 ? 0 : (uint64_t)ret < c->count ? (size_t)ret : (size_t)c->count;
}
/* the class a hot call is carried as: reads of the variant's own files run in every variant */
static const char *class_of(int hot) {
    return hot == MVX_HOT_PREAD || hot == MVX_HOT_CLOSE || hot == MVX_HOT_SETSOCKOPT || hot == MVX_HOT_EPOLL_CTL
               ? "local"
           : is_read(hot) || is_epoll(hot) || is_clock(hot) || hot == MVX_HOT_ACCEPT4 ? "replicated"
           : "checked_output";
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* an epoll event word as the Python decoder writes it: FlagSet(names of its bits, sorted; rest) */
static void wb_epoll_events(struct wbuf *w, struct mvx_fast *f, int isa, uint32_t events, int neutral) {
    const char *names[32];
    int n = 0;
    uint32_t rest = 0;
    for (int b = 0; b < 32; b++) {
        if (!(events & (1u << b)))
            continue;
        if (f->epname[isa][b])
            names[n++] = f->epname[isa][b];
        else
            rest |= 1u << b;
    }
    qsort(names, n, sizeof names[0], cmp_name);
    if (neutral) { /* mvx.core.sync.neutral: {"flags": [names], "rest": bits} */
        wb_u8(w, MVX_T_DICT);
        wb_u32(w, 2);
        wb_str(w, "flags");
        wb_u8(w, MVX_T_LIST);
        wb_u32(w, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            wb_u8(w, MVX_T_STR);
            wb_str(w, names[i]);
        }
        wb_str(w, "rest");
        wb_int(w, rest);
        return;
    }
    wb_u8(w, MVX_T_FLAGS);
    wb_u32(w, (uint32_t)n);
    for (int i = 0; i < n; i++)
        wb_str(w, names[i]);
    wb_int(w, rest);
}

/* The leader's epoll events (raw, its layout) as [[events, fd], ...] through its registrations:
 * 0, or -1 (f->err) for data it never registered. */
static int wb_epoll_output(struct wbuf *w, struct mvx_fast *f, const struct hot_call *c, const uint8_t *raw, int n) {
    int size = f->ep_size[c->isa], off = f->ep_data_off[c->isa];
    wb_u8(w, MVX_T_LIST);
    wb_u32(w, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        uint32_t events;
        uint64_t data;
        memcpy(&events, raw + (size_t)i * size, 4);
        memcpy(&data, raw + (size_t)i * size + off, 8); /* 64 bits on every ISA, as the decoder has it */
        struct epreg *r = ep_find_data(f, c->fd, data);
        if (!r) {
            snprintf(f->err, sizeof f->err, "epoll %d returned data %#llx that was never registered", c->fd,
                     (unsigned long long)data);
            return -1;
        }
        wb_u8(w, MVX_T_LIST);
        wb_u32(w, 2);
        wb_epoll_events(w, f, c->isa, events, 0);
        wb_int(w, r->fd);
    }
    return 0;
}

/* A CheckRequest frame (u32 length, then the body) in f->frame. */
static void make_check(struct mvx_fast *f, const struct hot_call *c, uint64_t seq) {
    struct wbuf *w = &f->frame;
    w->n = 0;
    w->oom = 0;
    wb_u32(w, 0);
    wb_u8(w, MVX_M_CHECK_REQUEST);
    wb_u64(w, seq);
    put_view(w, f, c);
    wb_content(w, c);
    if (!w->oom) {
        uint32_t n = (uint32_t)(w->n - 4);
        memcpy(w->p, &n, 4);
    }
}

/* A CallRecord frame in f->frame: the leader's call returned `ret` (reads: `got` the bytes). */
static void trace_line(struct mvx_fast *f, const struct hot_call *c, long long ret, const uint8_t *got);

static void make_record(struct mvx_fast *f, const struct hot_call *c, uint64_t seq, long long ret,
                        const uint8_t *got) {
    struct wbuf *w = &f->frame;
    w->n = 0;
    w->oom = 0;
    if (f->trace_fd >= 0) { /* mvx trace: a line, not a record */
        trace_line(f, c, ret, got);
        return;
    }
    wb_u32(w, 0);
    wb_u8(w, MVX_M_CALL_RECORD);
    wb_u64(w, seq);
    wb_str(w, class_of(c->hot));
    put_view(w, f, c);
    if (c->hot == MVX_HOT_CLOSE || c->hot == MVX_HOT_EPOLL_CTL) { /* run in the variant: its result is not learned */
        wb_u8(w, 0);
        wb_u32(w, 0);
    } else {
        wb_u8(w, 1);
        wb_u64(w, (uint64_t)ret);
        if (is_epoll(c->hot) && ret >= 0) {
            wb_u32(w, 1);
            wb_u32(w, 1);
            if (wb_epoll_output(w, f, c, got, (int)ret) < 0)
                w->oom = 1; /* no record: the caller fails closed */
        } else if (is_read(c->hot) && c->hot != MVX_HOT_PREAD && ret >= 0) { /* the bytes read; recvfrom's address and its length: none */
            wb_u32(w, c->hot == MVX_HOT_READ ? 1 : 3);
            wb_u32(w, 1);
            wb_bytes(w, got, read_bytes(c, ret));
            if (c->hot == MVX_HOT_RECVFROM) {
                wb_u32(w, 4);
                wb_none(w);
                wb_u32(w, 5);
                wb_none(w);
            }
        } else if (is_sendfile(c->hot) && ret >= 0) { /* the offset it left */
            wb_u32(w, 1);
            wb_u32(w, 2);
            wb_int(w, c->off_after);
        } else if (c->hot == MVX_HOT_ACCEPT4 && ret >= 0) { /* {1: the peer's address, 2: its length} */
            wb_u32(w, 2);
            wb_u32(w, 1);
            if (c->a[1]) {
                char text[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &c->peer.sin_addr, text, sizeof text);
                wb_u8(w, MVX_T_SOCKADDR);
                wb_u8(w, MVX_T_STR);
                wb_str(w, "AF_INET");
                wb_u32(w, 2);
                wb_str(w, "sin_port");
                wb_int(w, ntohs(c->peer.sin_port));
                wb_str(w, "sin_addr");
                wb_u8(w, MVX_T_STR);
                wb_str(w, text);
            } else {
                wb_none(w);
            }
            wb_u32(w, 2);
            if (c->a[2])
                wb_int(w, (int64_t)sizeof c->peer);
            else
                wb_none(w);
        } else if (is_clock(c->hot) && ret >= 0) { /* the reading: {1: TimeValue} */
            wb_u32(w, 1);
            wb_u32(w, 1);
            wb_u8(w, MVX_T_TIME);
            wb_u64(w, (uint64_t)c->sec);
            wb_u64(w, (uint64_t)c->nsec);
            wb_u8(w, 0);
        } else {
            wb_u32(w, 0);
        }
    }
    wb_content(w, c);
    if (is_clock(c->hot) && ret >= 0) { /* the clock reading followers return (mvx.core.outputs) */
        wb_u8(w, 1);
        wb_u64(w, (uint64_t)c->sec);
        wb_u64(w, (uint64_t)c->nsec);
    } else {
        wb_u8(w, 0);
    }
    if (!w->oom) {
        uint32_t n = (uint32_t)(w->n - 4);
        memcpy(w->p, &n, 4);
    }
}

/* For tests: the record (check=0) or check request (check=1) this loop would send for a call
 * of process `pid` (the test's own memory), as a whole frame; its length, or -1 when the call is
 * not one this loop carries. */
long mvx_fast_frame_for(struct mvx_fast *f, int pid, unsigned int audit, long long nr,
                        const unsigned long long args[6], int check, uint64_t seq, long long ret,
                        const void *got, uint8_t *out, size_t cap) {
    struct mvx_event ev;
    memset(&ev, 0, sizeof ev);
    ev.pid = pid;
    ev.arch = audit;
    ev.nr = nr;
    memcpy(ev.args, args, sizeof ev.args);
    int saved = f->t->pid;
    f->t->pid = pid;
    struct hot_call c;
    int ok = decode_hot(f, &ev, &c);
    f->t->pid = saved;
    if (!ok)
        return -1;
    if (is_sendfile(c.hot)) /* the offset at the call's exit, as the leader reads it there */
        mvx_read_mem(pid, c.off_ptr, &c.off_after, (size_t)c.off_size);
    uint8_t ts[16];
    if (is_clock(c.hot) && mvx_read_mem(pid, c.a[1], ts, (size_t)c.ts_size) == c.ts_size)
        ts_decode(&c, ts); /* the time it wrote there */
    if (c.hot == MVX_HOT_ACCEPT4 && c.a[1]) /* the peer's address it wrote there */
        mvx_read_mem(pid, c.a[1], &c.peer, sizeof c.peer);
    if (check)
        make_check(f, &c, seq);
    else
        make_record(f, &c, seq, ret, got);
    if (f->frame.oom || f->frame.n > cap)
        return -1;
    memcpy(out, f->frame.p, f->frame.n);
    return (long)f->frame.n;
}

/* Send f->frame to every live follower: 0, or -1 once the link failed (the caller returns). A
 * failed send marks that follower lost; Python tells the session (mvx_link_take_lost). */
/* The leader's frames go out in batches: one write per wake-up of the leader's monitor, not one per
 * record, so a follower that waits is woken once per batch. `flush` sends what is pending; it runs
 * before the monitor can block (waiting for its variant with nothing ready, for a check, for room
 * in the window or the outbox, in an epoll wait) and before the loop returns to Python, whose own
 * sends must come after. A failed send marks that follower lost; Python tells the session
 * (mvx_link_take_lost). */
static void flush(struct mvx_fast *f) {
    struct mvx_link *l = f->link;
    if (!l || !f->batch.n)
        return;
    for (int i = 0; i < l->n; i++) {
        if (!l->live[i] || !l->chan[i] || l->chan[i]->broken)
            continue;
        int r = mvx_chan_send(l->chan[i], f->batch.p, f->batch.n);
        if (r < 0)
            l->lost[i] = r;
    }
    f->batch.n = 0;
}

enum { UNTIL_CHECKED, UNTIL_WINDOW, UNTIL_ROOM };

/* Is the leader's wait over: every live follower checked `arg` (UNTIL_CHECKED), acknowledged
 * enough for `arg` to be within the window (UNTIL_WINDOW), or the outbox has room for `arg` more
 * bytes (UNTIL_ROOM)? Under l->m. */
static int link_met(struct mvx_fast *f, int until, uint64_t arg) {
    struct mvx_link *l = f->link;
    if (until == UNTIL_ROOM) {
        struct mvx_outbox *o = f->outbox;
        return !(o->bytes + arg > o->limit && o->head) || o->closed;
    }
    return until == UNTIL_CHECKED ? link_all_checked(l, arg) : link_in_window(l, arg);
}

/* The leader's monitor thread waits for its followers, reading the channels it owns itself
 * (link_drain; a channel left to its pump thread updates the link there): 0 once met, 1 after
 * timeout_ms (< 0: none), -1 once the link failed. With f->spin_us it polls that long first: a
 * sleeping thread costs a wake-up from the other CPU, a polling one only a recv. */
static int link_wait(struct mvx_fast *f, int until, uint64_t arg, int timeout_ms) {
    struct mvx_link *l = f->link;
    double start = now_s(), end = start + timeout_ms / 1000.0;
    for (;;) {
        link_drain_release(l, f->outbox);
        pthread_mutex_lock(&l->m);
        int failed = l->failed, met = link_met(f, until, arg);
        pthread_mutex_unlock(&l->m);
        if (failed)
            return -1;
        if (met)
            return 0;
        struct pollfd pfd[MVX_MAX_FOLLOWERS];
        int k = link_fds(l, pfd, MVX_MAX_FOLLOWERS);
        int slice = k == l->n ? 100 : 5; /* a channel its pump reads: look at the link often */
        double now = now_s();
        if (timeout_ms >= 0) {
            if (now >= end)
                return 1;
            if ((end - now) * 1000 < slice)
                slice = (int)((end - now) * 1000) + 1;
        }
        if (k && f->spin_us && now - start < f->spin_us / 1e6)
            slice = 0;
        if (k) {
            poll(pfd, k, slice);
        } else {
            struct timespec ts;
            deadline_in(&ts, slice);
            pthread_mutex_lock(&l->m);
            if (!link_met(f, until, arg) && !l->failed)
                pthread_cond_timedwait(&l->cv, &l->m, &ts);
            pthread_mutex_unlock(&l->m);
        }
    }
}

static int window_open(struct mvx_link *l, uint64_t seq) {
    pthread_mutex_lock(&l->m);
    int open = link_in_window(l, seq);
    pthread_mutex_unlock(&l->m);
    return open;
}

/* Queue f->frame for every live follower: 0, or -1 once the link failed (the caller returns). */
static int publish(struct mvx_fast *f, uint64_t seq) {
    struct mvx_link *l = f->link;
    if (f->frame.oom)
        return -1;
    if (!l)
        return 0; /* mvx trace: no followers */
    if (!window_open(l, seq)) {
        flush(f);
        if ((f->owns_link ? link_wait(f, UNTIL_WINDOW, seq, -1) : mvx_link_window_wait(l, seq)) < 0)
            return -1;
    }
    if (l->failed)
        return -1;
    wb_put(&f->batch, f->frame.p, f->frame.n);
    if (f->batch.oom)
        return -1;
    mvx_link_published(l, seq);
    if (!f->batching || f->batch.n >= (256u << 10))
        flush(f);
    return 0;
}

/* Is a stop of the variant already waiting (then the monitor does not block: no flush yet)? */
static int stop_ready(struct mvx_tracee *t) {
    if (t->notify_fd < 0)
        return 0;
    struct pollfd pfd[2] = {{t->notify_fd, POLLIN, 0}, {t->sigchld_fd, POLLIN, 0}};
    return poll(pfd, 2, 0) > 0;
}

/* ---- the leader's hot calls ------------------------------------------------------------------- */

#define FAST_DONE 0     /* carried: wait for the next stop */
#define FAST_PYTHON 1   /* not this loop's: return the stop to Python untouched */
#define FAST_RETURN 2   /* return `ev` (filled here) to Python */

static int lost_any(struct mvx_link *l) {
    for (int i = 0; l && i < l->n; i++)
        if (l->lost[i])
            return 1;
    return 0;
}

/* Perform the leader's call on the monitor's duplicate: the result (-errno on error); reads put
 * their bytes in f->data. -EAGAIN from a blocking duplicate is not possible: those go to Python. */
static long long leader_perform(struct mvx_fast *f, struct hot_call *c, int mine) {
    ssize_t n;
    if (is_read(c->hot)) {
        if (data_room(f, c->count) < 0)
            return -ENOMEM;
        if (c->flags & MSG_TRUNC)
            memset(f->data, 0, c->count); /* a stream socket discards: nothing is written */
        n = c->hot == MVX_HOT_READ ? read(mine, f->data, c->count)
            : c->hot == MVX_HOT_PREAD ? pread(mine, f->data, c->count, c->offset)
            : recv(mine, f->data, c->count, (int)c->flags);
    } else if (c->hot == MVX_HOT_SHUTDOWN) {
        n = shutdown(mine, c->how);
    } else if (c->hot == MVX_HOT_SENDTO) {
        n = send(mine, c->out, c->outlen, MSG_NOSIGNAL);
    } else {
        n = write(mine, c->out, c->outlen);
    }
    return n < 0 ? -errno : n;
}

/* After an answer: the call went away (a signal) and is made again; it gets `ret` then. */
static void keep_pending(struct mvx_fast *f, const struct mvx_event *ev, long long ret) {
    f->pend = 1;
    f->pend_pid = ev->pid;
    f->pend_nr = ev->nr;
    memcpy(f->pend_args, ev->args, sizeof f->pend_args);
    f->pend_ret = ret;
    f->pend_fd = -1;
    f->pend_addrlen_in = -1;
}

/* The leader's call `c` returned `ret` (no out-data to record): its record goes to every follower.
 * FAST_DONE, FAST_RETURN (Python tells the session which follower is lost), or -2. */
static int leader_recorded(struct mvx_fast *f, struct mvx_event *ev, const struct hot_call *c, long long ret) {
    f->seq++;
    make_record(f, c, f->seq, ret, NULL);
    if (publish(f, f->seq) < 0) {
        snprintf(f->err, sizeof f->err, "the session failed");
        return -2;
    }
    f->handled++;
    if (lost_any(f->link)) {
        ev->kind = MVX_EV_FAST_NOTE;
        return FAST_RETURN;
    }
    return FAST_DONE;
}

/* Write-behind (mvx.runtime.outbox): the followers check the output while the program runs on;
 * its bytes leave through the monitor's own duplicate of the socket once every follower agreed.
 * The program sees its call done, with every byte taken. */
static int leader_hold(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c) {
    struct mvx_tracee *t = f->t;
    int mine = f->dup[c->fd];
    if (mine < 0 || mvx_same_file(t->pid, c->fd, mine) != 1) {
        stale_dup(f, c->fd);
        return FAST_PYTHON;
    }
    int held = fcntl(mine, F_DUPFD_CLOEXEC, 0);
    if (held < 0)
        return FAST_PYTHON;
    make_check(f, c, f->seq + 1);
    if (publish(f, f->seq + 1) < 0) {
        close(held);
        snprintf(f->err, sizeof f->err, "the session failed");
        return -2;
    }
    flush(f);
    int how = c->hot == MVX_HOT_SHUTDOWN ? c->how : -1; /* a shutdown is held in order too */
    if (f->owns_link && link_wait(f, UNTIL_ROOM, c->outlen, -1) < 0) { /* (checks come in meanwhile) */
        close(held);
        snprintf(f->err, sizeof f->err, "the session failed");
        return -2;
    }
    if (mvx_outbox_hold(f->outbox, f->seq + 1, held, c->out, c->outlen, how) < 0) { /* it closed `held` */
        snprintf(f->err, sizeof f->err, "the session failed");
        return -2;
    }
    long long ret = (long long)c->outlen;
    if (is_sendfile(c->hot)) { /* what sendfile does to its offset, done for it */
        c->off_after = c->offset + ret;
        if (mvx_write_mem(t->pid, c->off_ptr, &c->off_after, (size_t)c->off_size) != c->off_size) {
            snprintf(f->err, sizeof f->err, "write sendfile's offset: %s", strerror(errno));
            return -1;
        }
    }
    if (ev->kind == MVX_EV_NOTIFY) {
        int r = mvx_notif_respond(t->notify_fd, ev->notif_id, ret, 0, 0);
        if (r == -ENOENT)
            keep_pending(f, ev, ret);
        else if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
    } else {
        int r = mvx_skip(t, ev->arch, ret, MVX_RESUME_RUN);
        if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
    }
    return leader_recorded(f, ev, c, ret);
}

/* The leader's notified epoll wait, performed on the monitor's duplicate of the epoll fd (its
 * events carry the variant's own data words): waits for readiness in slices while the call is
 * live. Returns the result, or -ECANCELED when the call went away (a signal), with the raw events
 * in f->data. */
static long long leader_epoll_wait(struct mvx_fast *f, const struct mvx_event *ev, struct hot_call *c, int mine) {
    struct mvx_tracee *t = f->t;
    int size = f->ep_size[c->isa];
    if (data_room(f, (size_t)c->maxevents * size) < 0)
        return -ENOMEM;
    if (c->timeout != 0 && mvx_wait_ready(mine, POLLIN, t->pid, 0) != 1) {
        flush(f); /* about to block: the followers get what is pending */
        if (f->owns_link && f->outbox)
            outbox_release_now(f->outbox);
        double start = now_s();
        for (;;) {
            int waited = (int)((now_s() - start) * 1000);
            int slice = c->timeout < 0 ? 50 : (c->timeout - waited < 50 ? c->timeout - waited : 50);
            struct pollfd pfd[1 + MVX_MAX_FOLLOWERS] = {{mine, POLLIN, 0}};
            int k = f->owns_link ? link_fds(f->link, pfd + 1, MVX_MAX_FOLLOWERS) : 0;
            int r = poll(pfd, 1 + k, slice > 0 ? slice : 0);
            if (r < 0 && errno != EINTR)
                return -errno;
            if (r > 0 && pfd[0].revents)
                break;
            if (r > 0) /* the followers' checks and acknowledgements, taken while the program waits */
                link_drain_release(f->link, f->outbox);
            if (!mvx_notif_id_valid(t->notify_fd, ev->notif_id))
                return -ECANCELED;
            if (c->timeout > 0 && (now_s() - start) * 1000 >= c->timeout)
                return 0;
        }
    }
    int n = epoll_wait(mine, (struct epoll_event *)f->data, c->maxevents, 0);
    return n < 0 ? -errno : n;
}

/* ---- close: run in every variant ---------------------------------------------------------------- */

/* May this loop carry the variant's close(fd)? Its duplicate here, if any, must be of that very
 * file (checked while the fd is still open): it is closed with it. */
static int close_ok(struct mvx_fast *f, const struct hot_call *c) {
    int mine = f->dup[c->fd];
    return mine < 0 || mvx_same_file(f->t->pid, c->fd, mine) == 1;
}

/* Let the variant make its own call (close, epoll_ctl): 1 made, 0 the call went away (a signal: it
 * is made again), -1. */
static int let_run(struct mvx_fast *f, struct mvx_event *ev, const struct hot_call *c) {
    int r = ev->kind == MVX_EV_NOTIFY ? mvx_notif_respond(f->t->notify_fd, ev->notif_id, 0, 0, 1)
                                      : mvx_resume(f->t, MVX_RESUME_RUN);
    if (r == -ENOENT && ev->kind == MVX_EV_NOTIFY)
        return 0;
    if (r < 0) {
        snprintf(f->err, sizeof f->err, "let %s run: %s", c->name, strerror(-r));
        return -1;
    }
    return 1;
}

/* After the variant's close: the monitor's duplicate goes too (so the file's last reference is
 * gone when the program's is: a socket's FIN is not held back), and Python's shadow learns it. */
static void forget_closed(struct mvx_fast *f, int fd) {
    int mine = f->dup[fd];
    if (mine >= 0)
        close(mine);
    f->fdok[fd] = 0;
    f->dup[fd] = -1;
    f->fds_changed = 1;
    f->placeholder[fd] = 0;
    mvx_fast_epoll_close(f, fd);
    fd_event(f, MVX_FDEV_CLOSED, fd, mine);
}

/* The variant's epoll_ctl, made in every variant (epoll keys its interest list by file and fd
 * number): this loop's mirror of the registrations and Python's EpollRegistry follow it. */
static void track_epoll_ctl(struct mvx_fast *f, const struct hot_call *c) {
    mvx_fast_epoll_ctl(f, c->fd, c->target, c->op != 2 && c->has_event, c->data);
    struct mvx_fdev *e = fd_event(f, MVX_FDEV_EPOLL_CTL, c->target, c->fd);
    e->op = c->op;
    e->data = c->has_event && c->op != 2 ? c->data : 0;
}

/* Close and epoll_ctl: made in the variant, then the shadows follow. */
static int leader_local(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c) {
    if (c->hot == MVX_HOT_CLOSE && !close_ok(f, c))
        return FAST_PYTHON;
    int r = let_run(f, ev, c);
    if (r <= 0)
        return r < 0 ? -1 : FAST_DONE; /* gone: no record; it is made again or not */
    if (c->hot == MVX_HOT_CLOSE)
        forget_closed(f, c->fd);
    else
        track_epoll_ctl(f, c);
    return leader_recorded(f, ev, c, 0); /* no result learned: the record has none */
}

/* ---- accept4: the leader's monitor accepts; followers get a placeholder ---------------------------- */

/* The leader's notified accept4, performed on the monitor's duplicate of the listening socket (an
 * AF_INET one that does not block): the connection goes into the variant by ADDFD, at the lowest
 * free fd as accept4 would put it, and the monitor keeps its own copy as its duplicate. */
static int leader_accept(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c, int mine) {
    struct mvx_tracee *t = f->t;
    int domain = 0;
    socklen_t dl = sizeof domain;
    if (getsockopt(mine, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0 || domain != AF_INET)
        return FAST_PYTHON; /* another address family: Python decodes its addresses */
    socklen_t len = sizeof c->peer;
    memset(&c->peer, 0, sizeof c->peer);
    int newfd = accept4(mine, (struct sockaddr *)&c->peer, &len,
                        SOCK_CLOEXEC | ((c->flags & ACCEPT_NONBLOCK) ? SOCK_NONBLOCK : 0));
    long long ret = newfd < 0 ? -errno : 0;
    if (newfd >= 0 && c->a[1]) { /* the peer's address as the kernel writes it: at most the room given */
        int32_t full = (int32_t)sizeof c->peer;
        size_t n = c->room < 0 ? 0 : (size_t)c->room < sizeof c->peer ? (size_t)c->room : sizeof c->peer;
        if ((n && mvx_write_mem(t->pid, c->a[1], &c->peer, n) != (long)n) || mvx_write_mem(t->pid, c->a[2], &full, 4) != 4) {
            close(newfd);
            newfd = -1;
            ret = -EFAULT;
        }
    }
    if (newfd < 0) {
        int r = mvx_notif_respond(t->notify_fd, ev->notif_id, 0, (int)ret, 0);
        if (r == -ENOENT)
            return FAST_DONE; /* a signal took the call away: nothing was accepted; no record */
        if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
    } else {
        if (f->accept_fault_sig) {
            kill(t->pid, f->accept_fault_sig);
            for (int i = 0; i < 2000 && mvx_notif_id_valid(t->notify_fd, ev->notif_id); i++)
                usleep(100);
        }
        int r = mvx_notif_addfd(t->notify_fd, ev->notif_id, newfd, 0, 0, 1, !!(c->flags & ACCEPT_CLOEXEC));
        if (r == -ENOENT || r == -EINPROGRESS) {
            /* a signal took the call away after the connection was accepted for it: the restarted
             * call gets it (Python: Monitor.answer_again installs it and publishes the record then,
             * with the number it got); no record before */
            keep_pending(f, ev, 0);
            f->pend_fd = newfd;
            f->pend_cloexec = !!(c->flags & ACCEPT_CLOEXEC);
            f->pend_addrlen_in = c->a[1] ? c->room : -1;
            return FAST_DONE;
        }
        if (r < 0) {
            close(newfd);
            snprintf(f->err, sizeof f->err, "install the socket %s accepted: %s", c->name, strerror(-r));
            return -1;
        }
        ret = r;
        if (r < MVX_FAST_MAX_FD) { /* a socket of the leader's world, with its duplicate here */
            f->fdok[r] = MVX_FD_LEADERS;
            f->dup[r] = newfd;
            f->fds_changed = 1;
            f->placeholder[r] = 0;
        }
        fd_event(f, MVX_FDEV_NEW, r, newfd);
    }
    return leader_recorded(f, ev, c, ret);
}

/* A ptrace or filter stop's call made in the variant, to its exit stop (ev: that stop, its result in
 * ev->ret): 1, FAST_RETURN (the variant ended), or -1 (f->err). */
static int run_to_exit(struct mvx_fast *f, struct mvx_event *ev, const struct hot_call *c) {
    int r = mvx_resume(f->t, MVX_RESUME_TO_EXIT);
    if (r < 0) {
        snprintf(f->err, sizeof f->err, "resume %s: %s", c->name, strerror(-r));
        return -1;
    }
    r = mvx_wait(f->t, ev);
    if (r < 0) {
        snprintf(f->err, sizeof f->err, "lost the variant %d: %s", f->t->pid, strerror(-r));
        return -1;
    }
    if (ev->kind == MVX_EV_EXITED || ev->kind == MVX_EV_KILLED)
        return FAST_RETURN;
    if (ev->kind != MVX_EV_EXIT) {
        snprintf(f->err, sizeof f->err, "unexpected stop %d at the exit of %s", ev->kind, c->name);
        return -1;
    }
    return 1;
}

#include "mvx_trace.c"

static int leader_call(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c) {
    struct mvx_tracee *t = f->t;
    int notified = ev->kind == MVX_EV_NOTIFY;
    if (f->trace_fd >= 0 && !trace_renders(c->hot))
        return FAST_PYTHON; /* mvx trace: Python renders it */
    if (f->trace_fd >= 0 && (c->hot == MVX_HOT_CLOSE || c->hot == MVX_HOT_EPOLL_CTL))
        return trace_local(f, ev, c);
    if (c->hot == MVX_HOT_CLOSE || c->hot == MVX_HOT_EPOLL_CTL)
        return leader_local(f, ev, c);
    if (notified && (is_sendfile(c->hot) || c->hot == MVX_HOT_SETSOCKOPT || is_clock(c->hot)))
        return FAST_PYTHON; /* these run in the variant (RET_TRACE): not expected here */
    if (!notified && c->hot == MVX_HOT_ACCEPT4)
        return FAST_PYTHON; /* made in the variant (ptrace): Python decodes the address it wrote */
    int mine = -1;
    if (notified) {
        mine = f->dup[c->fd];
        if (mine < 0 || mvx_same_file(t->pid, c->fd, mine) != 1) {
            stale_dup(f, c->fd); /* Python takes a fresh duplicate */
            return FAST_PYTHON;
        }
        if (is_epoll(c->hot) && f->ep_size[c->isa] != (int)sizeof(struct epoll_event))
            return FAST_PYTHON; /* the variant's event layout is not the monitor's */
        int fl = fcntl(mine, F_GETFL);
        if (c->hot != MVX_HOT_PREAD && !is_epoll(c->hot) && (fl < 0 || !(fl & O_NONBLOCK)))
            return FAST_PYTHON; /* a blocking socket: Python waits in slices */
        if (c->hot == MVX_HOT_ACCEPT4)
            return leader_accept(f, ev, c, mine);
    }
    if (is_output(c->hot) && f->outbox) /* write-behind: answered at once, the bytes held */
        return leader_hold(f, ev, c);
    if (is_output(c->hot) && f->trace_fd < 0) { /* checked output: every follower checks it first (lockstep) */
        make_check(f, c, f->seq + 1);
        if (publish(f, f->seq + 1) < 0)
            return FAST_PYTHON;
        flush(f);
        if (lost_any(f->link))
            return FAST_PYTHON; /* Python tells the session first; its own check then follows */
        int r = f->owns_link ? link_wait(f, UNTIL_CHECKED, f->seq + 1, f->check_timeout_ms)
                             : mvx_link_checked_wait(f->link, f->seq + 1, f->check_timeout_ms);
        if (r < 0)
            return FAST_PYTHON; /* the session failed: Python's own check raises why */
        if (r > 0) {
            ev->kind = MVX_EV_CHECK_LATE; /* Python reports the timeout divergence */
            return FAST_RETURN;
        }
    }
    long long ret;
    if (notified) {
        if (is_epoll(c->hot)) {
            ret = leader_epoll_wait(f, ev, c, mine);
            if (ret == -ECANCELED)
                return FAST_DONE; /* the call went away: no record; it is made again or not */
            size_t n = ret > 0 ? (size_t)ret * f->ep_size[c->isa] : 0;
            if (n && mvx_write_mem(t->pid, c->a[1], f->data, n) != (long)n)
                ret = -EFAULT;
        } else {
            ret = leader_perform(f, c, mine);
            size_t n = read_bytes(c, ret);
            if (is_read(c->hot) && n && mvx_write_mem(t->pid, c->a[1], f->data, n) != (long)n)
                ret = -EFAULT;
        }
        int r = mvx_notif_respond(t->notify_fd, ev->notif_id, ret < 0 ? 0 : ret, ret < 0 ? (int)ret : 0, 0);
        if (r == -ENOENT) /* a signal took the call away: the restarted one gets this result */
            keep_pending(f, ev, ret);
        else if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
    } else { /* a ptrace stop: the call runs in the variant; its result at the exit stop */
        flush(f); /* the call may block as long as the program's call does */
        int r = run_to_exit(f, ev, c);
        if (r != 1)
            return r;
        ret = ev->ret;
        size_t got = ret <= 0 ? 0 : is_epoll(c->hot) ? (size_t)ret * f->ep_size[c->isa] : read_bytes(c, ret);
        if ((is_read(c->hot) || is_epoll(c->hot)) && got &&
            (data_room(f, got) < 0 || mvx_read_mem(t->pid, c->a[1], f->data, got) != (long)got)) {
            snprintf(f->err, sizeof f->err, "read the bytes %s returned: %s", c->name, strerror(errno));
            return -1;
        }
        if (is_clock(c->hot) && ret >= 0) { /* the reading it wrote */
            uint8_t raw[16];
            if (mvx_read_mem(t->pid, c->a[1], raw, (size_t)c->ts_size) != c->ts_size) {
                snprintf(f->err, sizeof f->err, "read the time %s returned: %s", c->name, strerror(errno));
                return -1;
            }
            ts_decode(c, raw);
        }
        if (is_sendfile(c->hot) && ret >= 0) { /* the offset it left: its out-data */
            int64_t off = 0;
            if (mvx_read_mem(t->pid, c->off_ptr, &off, (size_t)c->off_size) != c->off_size) {
                snprintf(f->err, sizeof f->err, "read sendfile's offset: %s", strerror(errno));
                return -1;
            }
            c->off_after = c->off_size == 4 ? (int64_t)(int32_t)off : off;
        }
        if (ret == -512 || ret == -513 || ret == -514 || ret == -516) { /* RESTARTING: made again */
            r = mvx_resume(t, MVX_RESUME_RUN);
            return r < 0 ? -1 : FAST_DONE;
        }
        if ((r = mvx_resume(t, MVX_RESUME_RUN)) < 0) {
            snprintf(f->err, sizeof f->err, "resume %s: %s", c->name, strerror(-r));
            return -1;
        }
    }
    f->seq++;
    f->err[0] = 0;
    make_record(f, c, f->seq, ret, f->data);
    if (f->frame.oom && f->err[0])
        return -1; /* an event of data never registered: no record can be made (fail closed) */
    if (publish(f, f->seq) < 0) {
        snprintf(f->err, sizeof f->err, "the session failed");
        return -2;
    }
    f->handled++;
    if (notified && ret == -EPIPE && is_output(c->hot)) {
        ev->kind = MVX_EV_PIPE_BROKEN; /* the monitor's write took the SIGPIPE the program's would */
        return FAST_RETURN;
    }
    if (lost_any(f->link)) {
        ev->kind = MVX_EV_FAST_NOTE; /* Python tells the session which follower is lost */
        return FAST_RETURN;
    }
    return FAST_DONE;
}

/* ---- a follower's hot calls ------------------------------------------------------------------- */

/* The head frame as one message of `type` (decoded into msg, pointing into the frame): 1, or 0. */
static int head_is(struct mvx_fast *f, struct mvx_frame *fr, int type, struct mvx_msg *msg) {
    if (fr->len < 1 || fr->body[0] != type)
        return 0;
    static __thread uint8_t arena_buf[1 << 16];
    struct mvx_arena arena = {arena_buf, sizeof arena_buf, 0};
    size_t n = 0;
    char err[160];
    if (mvx_decode_body(fr->body, fr->len, msg, 1, &n, &arena, err, sizeof err) != 0 || n != 1)
        return 0;
    return 1;
}

/* Does my call's view equal the one in the leader's message? */
static int same_view(struct mvx_fast *f, const struct hot_call *c, const struct mvx_value *theirs) {
    struct wbuf *mine = &f->view;
    mine->n = 0;
    mine->oom = 0;
    put_view(mine, f, c);
    if (mine->oom)
        return 0;
    wb_need(&f->frame, mine->n + 64);
    if (f->frame.oom)
        return 0;
    long n = mvx_encode_value(f->frame.p, f->frame.cap, theirs);
    return n == (long)mine->n && !memcmp(f->frame.p, mine->p, mine->n);
}

static int send_seq(struct mvx_fast *f, int type, uint64_t seq) {
    uint8_t fr[13];
    uint32_t n = 9;
    memcpy(fr, &n, 4);
    fr[4] = (uint8_t)type;
    memcpy(fr + 5, &seq, 8);
    return mvx_chan_send(f->reply, fr, sizeof fr);
}

static int follower_done(struct mvx_fast *f, uint64_t seq);

/* A follower's accept4, answered from the leader's record: where the leader got a connection, an
 * inert AF_UNIX socket (one end of a socketpair; the monitor keeps the other) at the same fd number,
 * and the leader's peer address written in this variant's buffer. */
static int follower_accept(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c,
                           const struct mvx_call_record *rec) {
    struct mvx_tracee *t = f->t;
    long long ret = rec->ret.v;
    if (ev->kind != MVX_EV_NOTIFY)
        return FAST_PYTHON; /* a ptrace stop: Python rewrites the call into a placeholder's socket() */
    if (ret < 0) {
        if (rec->noutputs)
            return FAST_PYTHON;
        int r = mvx_notif_respond(t->notify_fd, ev->notif_id, 0, (int)ret, 0);
        if (r == -ENOENT)
            return FAST_DONE;
        if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
        return follower_done(f, rec->seq);
    }
    if (ret >= MVX_FAST_MAX_FD || rec->noutputs != 2 || rec->outputs[0].index != 1 || rec->outputs[1].index != 2 ||
        f->nfdev >= MVX_FAST_FDEVS)
        return FAST_PYTHON;
    const struct mvx_value *addr = &rec->outputs[0].value, *alen = &rec->outputs[1].value;
    if (c->a[1]) { /* the leader's AF_INET peer, as the kernel would write it here */
        struct sockaddr_in sin = {.sin_family = AF_INET};
        if (addr->tag != MVX_T_SOCKADDR || addr->n != 2 || !addr->v.c.extra || addr->v.c.extra->tag != MVX_T_STR ||
            addr->v.c.extra->n != 7 || memcmp(addr->v.c.extra->v.raw, "AF_INET", 7) || alen->tag != MVX_T_I64 ||
            alen->v.i != (int64_t)sizeof sin)
            return FAST_PYTHON;
        const struct mvx_value *port = &addr->v.c.items[0], *host = &addr->v.c.items[1];
        char text[INET_ADDRSTRLEN];
        if (port->key.n != 8 || memcmp(port->key.p, "sin_port", 8) || port->tag != MVX_T_I64 ||
            host->key.n != 8 || memcmp(host->key.p, "sin_addr", 8) || host->tag != MVX_T_STR ||
            host->n >= sizeof text)
            return FAST_PYTHON;
        memcpy(text, host->v.raw, host->n);
        text[host->n] = 0;
        if (inet_pton(AF_INET, text, &sin.sin_addr) != 1)
            return FAST_PYTHON;
        sin.sin_port = htons((uint16_t)port->v.i);
        int32_t full = (int32_t)sizeof sin;
        size_t n = c->room < 0 ? 0 : (size_t)c->room < sizeof sin ? (size_t)c->room : sizeof sin;
        if ((n && mvx_write_mem(t->pid, c->a[1], &sin, n) != (long)n) || mvx_write_mem(t->pid, c->a[2], &full, 4) != 4)
            return FAST_PYTHON;
    } else if (addr->tag != MVX_T_NONE || alen->tag != MVX_T_NONE) {
        return FAST_PYTHON;
    }
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        return FAST_PYTHON;
    if (c->flags & ACCEPT_NONBLOCK)
        fcntl(pair[0], F_SETFL, O_NONBLOCK);
    fcntl(pair[1], F_SETFL, O_NONBLOCK);
    int r = mvx_notif_addfd(t->notify_fd, ev->notif_id, pair[0], (int)ret, 1, 1, !!(c->flags & ACCEPT_CLOEXEC));
    close(pair[0]);
    if (r < 0) {
        close(pair[1]);
        if (r == -ENOENT || r == -EINPROGRESS)
            return FAST_DONE; /* a signal took the call away: the record waits for the restarted one */
        snprintf(f->err, sizeof f->err, "install a placeholder at fd %lld: %s", ret, strerror(-r));
        return -1;
    }
    f->fdok[ret] = MVX_FD_LEADERS;
    f->dup[ret] = -1;
    f->fds_changed = 1;
    f->placeholder[ret] = 1;
    fd_event(f, MVX_FDEV_PLACEHOLDER, (int)ret, pair[1]);
    return follower_done(f, rec->seq);
}

/* The head record was followed: consumed, and acknowledged every ack_every records. */
static int follower_done(struct mvx_fast *f, uint64_t seq) {
    inbox_pop(f->inbox);
    f->seq = seq;
    f->handled++;
    if (f->ack_every && seq % (uint64_t)f->ack_every == 0)
        send_seq(f, MVX_M_ACK, seq); /* a failure shows at the next reply Python makes */
    return FAST_DONE;
}

/* ---- a follower's in-process agent (mvx_agent.h, mvx_agent.c) ---------------------------------- */

/* The memfds a follower's program gets at MVX_AGENT_FD_RING and MVX_AGENT_FD_STATUS, mapped here
 * writable (the ring before it is sealed: this mapping is the only writable one there will be).
 * publish: this monitor publishes the leader's reads there (a follower's); 0 leaves the ring
 * without its magic, so an agent loaded there stays off (the leader's). 0, or -errno. */
int mvx_fast_agent_attach(struct mvx_fast *f, int ring_fd, int status_fd, int publish, unsigned long long gate) {
    if (ftruncate(ring_fd, MVX_AGENT_RING_SIZE) < 0 || ftruncate(status_fd, MVX_AGENT_STATUS_SIZE) < 0)
        return -errno;
    void *r = mmap(NULL, MVX_AGENT_RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
    if (r == MAP_FAILED)
        return -errno;
    void *st = mmap(NULL, MVX_AGENT_STATUS_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, status_fd, 0);
    if (st == MAP_FAILED) {
        int e = errno;
        munmap(r, MVX_AGENT_RING_SIZE);
        return -e;
    }
    int role = !publish ? 0 : f->role == MVX_ROLE_FOLLOWER ? MVX_AGENT_FOLLOWER
                            : f->role == MVX_ROLE_LEADER && gate && gate < 0xfffff000ull && !(gate & 4095) ? MVX_AGENT_LEADER
                                                                                                            : 0;
    struct mvx_agent_ring *ring = r;
    if (role == MVX_AGENT_LEADER) { /* the gate page: `syscall; ret` per ISA, nothing else */
        static const uint8_t x86_64[] = {0x0f, 0x05, 0xc3}, i386[] = {0xcd, 0x80, 0xc3};
        uint8_t *page = (uint8_t *)r + MVX_AGENT_GATE_OFF;
        memset(page, 0xcc, 4096); /* int3 */
        memcpy(page + MVX_AGENT_GATE_X86_64, x86_64, sizeof x86_64);
        memcpy(page + MVX_AGENT_GATE_I386, i386, sizeof i386);
        ring->gate = gate;
        ring->gate_off = (uint32_t)MVX_AGENT_GATE_OFF;
    }
    /* no writable mapping, write() or change of size after this one, by the variant or anyone */
    if (fcntl(ring_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int e = errno;
        munmap(r, MVX_AGENT_RING_SIZE);
        munmap(st, MVX_AGENT_STATUS_SIZE);
        return -e;
    }
    if (!role) { /* zeroed pages without the magic: the agent stays off */
        munmap(r, MVX_AGENT_RING_SIZE);
        munmap(st, MVX_AGENT_STATUS_SIZE);
        return 0;
    }
    f->ring = ring;
    f->agent = st;
    f->ring->role = (uint32_t)role;
    f->ring->version = MVX_AGENT_VERSION;
    __atomic_store_n(&f->ring->magic, MVX_AGENT_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

unsigned long long mvx_fast_agent_answered(struct mvx_fast *f) { return f->agent_answered; }
unsigned long mvx_agent_size(int status) { return status ? MVX_AGENT_STATUS_SIZE : MVX_AGENT_RING_SIZE; }
int mvx_fast_agent_present(struct mvx_fast *f) {
    return f->agent && __atomic_load_n(&f->agent->magic, __ATOMIC_ACQUIRE) == MVX_AGENT_MAGIC;
}

/* At every stop of the variant (it runs no agent code then): the reads the agent answered since the
 * last are followed as if this loop had answered them (their frames popped in order, acknowledged),
 * and whatever it did not take is taken back. 0, or -1 (f->err: the agent claims what it was not
 * given; fail closed). */
static int agent_reconcile(struct mvx_fast *f) {
    if (!f->ring)
        return 0;
    __atomic_store_n(&f->ring->enabled, 0, __ATOMIC_RELEASE);
    if (__atomic_load_n(&f->agent->busy, __ATOMIC_ACQUIRE))
        return 0; /* stopped inside the agent (a signal of its own): the answer in flight finishes first;
                   * followed at the next stop that finds it done */
    uint32_t took = __atomic_load_n(&f->agent->consumed, __ATOMIC_ACQUIRE);
    if (took > f->ring_n) {
        snprintf(f->err, sizeof f->err, "the follower's agent claims %u answers of the %u it was given", took, f->ring_n);
        return -1;
    }
    for (uint32_t i = 0; i < took; i++) {
        struct mvx_frame *head = NULL;
        pthread_mutex_lock(&f->inbox->m);
        head = f->inbox->head;
        pthread_mutex_unlock(&f->inbox->m);
        if (head != f->ring_frame[i]) {
            snprintf(f->err, sizeof f->err, "the follower's agent took an answer out of the leader's order");
            return -1;
        }
        follower_done(f, f->ring_seq[i]);
        f->agent_answered++;
    }
    f->ring_n = f->ring_used = 0;
    __atomic_store_n(&f->ring->published, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&f->agent->consumed, 0, __ATOMIC_RELEASE);
    return 0;
}

static long epoll_events_out(struct mvx_fast *f, int isa, int epfd, const struct mvx_call_record *rec, long long ret,
                             uint8_t *out);

/* Hot calls that leave the leader's fd table as it is: after a stop at one of them the agent may
 * pread the fds this monitor knows as own files (ring->own); after any other, not until the next. */
static int keeps_fds(int hot) {
    return hot && hot != MVX_HOT_CLOSE && hot != MVX_HOT_ACCEPT4 && hot != MVX_HOT_SOCKETCALL;
}

/* At every stop of the leader: the pread64 calls its agent made through the gate since the last
 * become the leader's records, in order, before the stop's own call; then the fds it may pread until
 * the next stop (none after a call that may change the fd table, or one Python handles). A notified
 * call's stop may be one the program already left (a signal ended its wait), so the agent may run
 * meanwhile: the claims are a ring with counters that only grow, and each claim names the generation
 * of the fds it was allowed (own[] is a seqlock; the last 8 generations are kept). 0, or -1 (f->err:
 * a claim it was not allowed to make, or out of range; fail closed). */
static int leader_claims(struct mvx_fast *f, const struct mvx_event *ev) {
    __atomic_store_n(&f->ring->enabled, 0, __ATOMIC_RELEASE);
    uint32_t head = __atomic_load_n(&f->agent->claimed, __ATOMIC_ACQUIRE);
    if (head - f->claims_tail > MVX_AGENT_CLAIMS) {
        snprintf(f->err, sizeof f->err, "the leader's agent claims %u calls (at most %u)", head - f->claims_tail,
                 MVX_AGENT_CLAIMS);
        return -1;
    }
    int stop_isa = isa_of(f, ev->arch);
    if (stop_isa >= 0) /* (a signal's stop names no ISA: the claims were made by the program of the last that did) */
        f->claims_isa = stop_isa;
    int isa = f->claims_isa;
    for (uint32_t i = f->claims_tail; i != head; i++) {
        struct mvx_agent_claim cl;
        memcpy(&cl, (const void *)&f->agent->claim[i % MVX_AGENT_CLAIMS], sizeof cl); /* (hostile input: read once) */
        const uint8_t *own = f->own_given[(cl.gen / 2) % 8];
        if (cl.fd < 0 || cl.fd >= MVX_AGENT_MAX_FD || (cl.gen & 1) || f->own_gen - cl.gen >= 16 ||
            !(own[cl.fd / 8] & (1u << (cl.fd % 8))) || cl.count > 0x7fffffffu || cl.ret < -4095 ||
            (cl.ret > 0 && (uint64_t)cl.ret > cl.count) || isa < 0) {
            snprintf(f->err, sizeof f->err, "the leader's agent claims pread64(%d, _, %llu, %lld) = %d, which it was not "
                     "allowed to make", cl.fd, (unsigned long long)cl.count, (long long)cl.offset, cl.ret);
            return -1;
        }
        struct hot_call c;
        memset(&c, 0, sizeof c);
        c.hot = MVX_HOT_PREAD;
        c.name = HOT_NAMES[c.hot];
        c.isa = isa;
        c.word = isa == MVX_ISA_I386 ? 4 : 8;
        c.fd = cl.fd;
        c.count = cl.count;
        c.offset = cl.offset;
        f->seq++;
        make_record(f, &c, f->seq, cl.ret, NULL);
        if (publish(f, f->seq) < 0) {
            snprintf(f->err, sizeof f->err, "the session failed");
            return -1;
        }
        f->handled++;
        f->agent_answered++;
    }
    f->claims_tail = head;
    __atomic_store_n(&f->ring->claims_tail, head, __ATOMIC_RELEASE);
    int hot = stop_isa >= 0 && ev->nr >= 0 && ev->nr < MVX_MAX_NR ? f->hot[stop_isa][ev->nr] : 0;
    if (!f->enabled || !keeps_fds(hot) || (ev->kind != MVX_EV_NOTIFY && ev->kind != MVX_EV_SECCOMP && ev->kind != MVX_EV_ENTRY))
        return 0;
    if (!f->fds_changed) { /* the own-file set published last still holds */
        __atomic_store_n(&f->ring->enabled, 1, __ATOMIC_RELEASE);
        return 0;
    }
    f->fds_changed = 0;
    uint8_t now[MVX_AGENT_MAX_FD / 8] = {0};
    for (int fd = 0; fd < MVX_AGENT_MAX_FD && fd < MVX_FAST_MAX_FD; fd++)
        if (f->fdok[fd] == MVX_FD_OWN && f->dup[fd] >= 0)
            now[fd / 8] |= (uint8_t)(1u << (fd % 8));
    if (memcmp(now, f->own_given[(f->own_gen / 2) % 8], sizeof now)) { /* a new generation (seqlock) */
        uint32_t next = f->own_gen + 2;
        memcpy(f->own_given[(next / 2) % 8], now, sizeof now);
        __atomic_store_n(&f->ring->own_gen, f->own_gen + 1, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        memcpy(f->ring->own, now, sizeof now);
        __atomic_store_n(&f->ring->own_gen, next, __ATOMIC_RELEASE);
        f->own_gen = next;
    }
    __atomic_store_n(&f->ring->enabled, 1, __ATOMIC_RELEASE);
    return 0;
}

/* The hot call of this follower's ISA whose view is the record's, among the flag combinations
 * `nflags` of `bits` (each tried: the view is matched byte for byte, as at a trap). 1 (c->flags set),
 * or 0. */
static int agent_view_flags(struct mvx_fast *f, struct hot_call *c, const struct mvx_value *view,
                            const uint32_t *bits, int nflags) {
    for (uint32_t m = 0; m < (1u << nflags); m++) {
        c->flags = 0;
        for (int i = 0; i < nflags; i++)
            if (m & (1u << i))
                c->flags |= bits[i];
        if (same_view(f, c, view))
            return 1;
    }
    return 0;
}

/* Is this frame's record a call the agent may answer, as this loop would answer the follower's same
 * call at a trap? Its answer in `slot` (bytes at f->ring->data + f->ring_used): 1, else 0.
 *   - the leader's read(fd, _, count) or recvfrom(fd, _, count, flags, NULL, NULL) of a socket of its
 *     world (a placeholder here): its result and bytes;
 *   - pread64(fd, _, count, offset) of a file of its own world: made here now on this monitor's
 *     duplicate of the follower's own file (what the trapped call would do), its result agreeing;
 *   - clock_gettime(clock): the leader's reading;
 *   - accept4(fd, _, addrlen, flags) of a socket of its world that found no connection (no fd made);
 *   - epoll_wait(epfd, _, maxevents, timeout): the leader's events through this follower's
 *     registrations, in its layout (every epoll_ctl traps: they stay what they are now until the
 *     agent answers). */
static int agent_slot_for(struct mvx_fast *f, int isa, struct mvx_frame *fr, struct mvx_agent_slot *slot,
                          uint64_t *seq) {
    struct mvx_msg msg;
    if (!head_is(f, fr, MVX_M_CALL_RECORD, &msg))
        return 0;
    const struct mvx_call_record *rec = &msg.u.call_record;
    const struct mvx_value *v = &rec->view;
    if (rec->content.present || !rec->ret.present || v->tag != MVX_T_LIST || v->n != 2 ||
        v->v.c.items[0].tag != MVX_T_STR || v->v.c.items[1].tag != MVX_T_LIST || rec->ret.v < -4095 ||
        rec->ret.v > INT32_MAX)
        return 0;
    const struct mvx_value *name = &v->v.c.items[0], *a = &v->v.c.items[1];
    int64_t ret = rec->ret.v;
    struct hot_call c;
    memset(&c, 0, sizeof c);
    c.isa = isa;
    c.word = isa == MVX_ISA_I386 ? 4 : 8;
    for (int h = 1; h < (int)(sizeof HOT_NAMES / sizeof HOT_NAMES[0]); h++)
        if (HOT_NAMES[h] && strlen(HOT_NAMES[h]) == name->n && !memcmp(HOT_NAMES[h], name->v.raw, name->n)) {
            c.hot = h;
            break;
        }
    if (is_epoll(c.hot)) /* (one name, one view, for either call: the answer is the same) */
        c.hot = MVX_HOT_EPOLL_PWAIT;
    else if (is_clock(c.hot))
        c.hot = MVX_HOT_CLOCK;
    c.name = HOT_NAMES[c.hot];
    if (!c.hot || a->n < 1 || (c.hot != MVX_HOT_CLOCK && a->v.c.items[0].tag != MVX_T_I64))
        return 0;
    int64_t fd = c.hot == MVX_HOT_CLOCK ? -1 : a->v.c.items[0].v.i;
    if (c.hot != MVX_HOT_CLOCK && (fd < 0 || fd >= MVX_FAST_MAX_FD))
        return 0;
    c.fd = (int)fd;
    const char *cls = class_of(c.hot);
    if (rec->cls.n != strlen(cls) || memcmp(rec->cls.p, cls, rec->cls.n))
        return 0;
    uint8_t *out = f->ring->data + f->ring_used;
    size_t room = MVX_AGENT_DATA - f->ring_used, len = 0;
    memset(slot, 0, sizeof *slot);
    switch (c.hot) {
    case MVX_HOT_READ:
    case MVX_HOT_RECVFROM: {
        if (a->n < 3 || a->v.c.items[2].tag != MVX_T_I64 || a->v.c.items[2].v.i < 0 || rec->has_clock)
            return 0;
        c.count = (uint64_t)a->v.c.items[2].v.i;
        static const uint32_t recv_bits[] = {MSG_DONTWAIT, MSG_NOSIGNAL, MSG_TRUNC};
        if (c.hot == MVX_HOT_READ ? !same_view(f, &c, v) : !agent_view_flags(f, &c, v, recv_bits, 3))
            return 0;
        if (!f->placeholder[fd] || f->fdok[fd] != MVX_FD_LEADERS || c.count > MVX_FAST_MAX_BUF || ret > (int64_t)c.count)
            return 0;
        if (ret >= 0) { /* its bytes, as a trap would write them */
            const struct mvx_value *bytes = NULL;
            for (uint32_t i = 0; i < rec->noutputs; i++) {
                const struct mvx_output *o = &rec->outputs[i];
                if (o->value.tag == MVX_T_NONE)
                    continue;
                if (o->index != 1 || o->value.tag != MVX_T_BYTES || bytes)
                    return 0;
                bytes = &o->value;
            }
            if (!bytes || bytes->n != read_bytes(&c, ret) || bytes->n > room)
                return 0;
            len = bytes->n;
            memcpy(out, bytes->v.raw, len);
        } else if (ret != -EAGAIN || rec->noutputs) {
            return 0;
        }
        slot->kind = c.hot == MVX_HOT_READ ? MVX_AGENT_READ : MVX_AGENT_RECV;
        slot->count = c.count;
        slot->flags = c.flags;
        break;
    }
    case MVX_HOT_PREAD: {
        if (a->n != 4 || a->v.c.items[2].tag != MVX_T_I64 || a->v.c.items[3].tag != MVX_T_I64 || rec->noutputs ||
            rec->has_clock)
            return 0;
        int64_t count = a->v.c.items[2].v.i, offset = a->v.c.items[3].v.i;
        int mine = f->dup[fd];
        if (count < 0 || count > (int64_t)MVX_FAST_MAX_BUF || (uint64_t)count > room || ret > count ||
            a->v.c.items[1].tag != MVX_T_NONE || f->fdok[fd] != MVX_FD_OWN || mine < 0 ||
            mvx_same_file(f->t->pid, (int)fd, mine) != 1)
            return 0;
        ssize_t n = pread(mine, out, (size_t)count, offset);
        if ((n < 0 ? -errno : n) != ret || ret < 0)
            return 0; /* (the trapped call finds it out and says so) */
        len = (size_t)n;
        slot->kind = MVX_AGENT_PREAD;
        slot->count = (uint64_t)count;
        slot->offset = offset;
        break;
    }
    case MVX_HOT_CLOCK: { /* [clock name] */
        if (a->n != 1 || a->v.c.items[0].tag != MVX_T_STR || ret != 0 || !rec->has_clock || rec->noutputs || room < 16)
            return 0;
        for (c.clock = 0; c.clock < (int)(sizeof CLOCK_NAMES / sizeof CLOCK_NAMES[0]); c.clock++)
            if (CLOCK_NAMES[c.clock] && same_view(f, &c, v))
                break;
        if (c.clock >= (int)(sizeof CLOCK_NAMES / sizeof CLOCK_NAMES[0]))
            return 0;
        int64_t ts[2] = {rec->clock_sec, rec->clock_nsec};
        memcpy(out, ts, sizeof ts);
        len = sizeof ts;
        slot->kind = MVX_AGENT_CLOCK;
        fd = c.clock;
        break;
    }
    case MVX_HOT_ACCEPT4: { /* [fd, None, *addrlen or None, flags]: only one that found nothing */
        if (a->n != 4 || ret >= 0 || rec->noutputs || rec->has_clock || f->fdok[fd] != MVX_FD_LEADERS)
            return 0;
        const struct mvx_value *alen = &a->v.c.items[2];
        if (alen->tag == MVX_T_I64) {
            if (alen->v.i < 0 || alen->v.i > INT32_MAX)
                return 0;
            c.a[2] = 1; /* (put_view: an addrlen given) */
            c.room = (int)alen->v.i;
        } else if (alen->tag != MVX_T_NONE) {
            return 0;
        }
        static const uint32_t accept_bits[] = {ACCEPT_CLOEXEC, ACCEPT_NONBLOCK};
        if (!agent_view_flags(f, &c, v, accept_bits, 2))
            return 0;
        slot->kind = MVX_AGENT_ACCEPT;
        slot->offset = c.a[2] ? c.room : -1;
        slot->flags = c.flags;
        break;
    }
    case MVX_HOT_EPOLL_PWAIT: { /* [epfd, None, maxevents, timeout, None, None] */
        if (a->n != 6 || a->v.c.items[2].tag != MVX_T_I64 || a->v.c.items[3].tag != MVX_T_I64 || ret < 0 ||
            rec->has_clock || f->fdok[fd] != MVX_FD_EPOLL || f->ep_size[isa] <= 0)
            return 0;
        int64_t maxevents = a->v.c.items[2].v.i, timeout = a->v.c.items[3].v.i;
        if (maxevents <= 0 || maxevents > MVX_MAX_EVENTS || timeout < INT32_MIN || timeout > INT32_MAX || ret > maxevents ||
            (uint64_t)ret * (uint64_t)f->ep_size[isa] > room)
            return 0;
        c.maxevents = (int)maxevents;
        c.timeout = (int)timeout;
        if (!same_view(f, &c, v))
            return 0;
        long n = epoll_events_out(f, isa, c.fd, rec, ret, out);
        if (n < 0)
            return 0;
        len = (size_t)n;
        slot->kind = MVX_AGENT_EPOLL;
        slot->count = (uint64_t)maxevents;
        slot->offset = timeout;
        break;
    }
    default:
        return 0;
    }
    slot->fd = (int32_t)fd;
    slot->ret = (int32_t)ret;
    slot->off = f->ring_used;
    slot->len = (uint32_t)len;
    *seq = rec->seq;
    return 1;
}

/* Just before the variant is let go from a call whose record is `current`: the reads that follow
 * it in the inbox, as far as they go uninterrupted, for the agent to answer in order. */
static void agent_publish_after(struct mvx_fast *f, int isa, struct mvx_frame *current) {
    if (!f->ring || !f->enabled || !mvx_fast_agent_present(f) || __atomic_load_n(&f->agent->busy, __ATOMIC_ACQUIRE))
        return;
    if (f->inbox->own && !f->inbox->end)
        inbox_fill(f->inbox, 0); /* what the leader sent meanwhile, not yet taken off the channel */
    for (struct mvx_frame *fr = current; f->ring_n < MVX_AGENT_SLOTS;) {
        pthread_mutex_lock(&f->inbox->m);
        fr = fr->next;
        pthread_mutex_unlock(&f->inbox->m);
        struct mvx_agent_slot slot;
        uint64_t seq;
        if (!fr || !agent_slot_for(f, isa, fr, &slot, &seq))
            break;
        f->ring_used += slot.len;
        f->ring->slot[f->ring_n] = slot;
        f->ring_frame[f->ring_n] = fr;
        f->ring_seq[f->ring_n] = seq;
        f->ring_n++;
    }
    if (f->ring_n) {
        __atomic_store_n(&f->ring->published, f->ring_n, __ATOMIC_RELEASE);
        __atomic_store_n(&f->ring->enabled, 1, __ATOMIC_RELEASE);
    }
}

/* The leader's `ret` epoll events (its record's output), as this variant's epoll_wait would get them
 * in its ISA's layout with its own data words (its registrations on epfd): their bytes at out (room for
 * ret events of this ISA), or -1 (a case Python decides: an fd never registered here, say). */
static long epoll_events_out(struct mvx_fast *f, int isa, int epfd, const struct mvx_call_record *rec, long long ret,
                             uint8_t *out) {
    if (rec->noutputs != 1 || rec->outputs[0].index != 1 || rec->outputs[0].value.tag != MVX_T_LIST ||
        rec->outputs[0].value.n != (uint64_t)ret)
        return -1;
    int size = f->ep_size[isa], off = f->ep_data_off[isa];
    if (size <= 0)
        return -1;
    memset(out, 0, (size_t)ret * size);
    for (long long i = 0; i < ret; i++) {
        const struct mvx_value *item = &rec->outputs[0].value.v.c.items[i];
        if (item->tag != MVX_T_LIST || item->n != 2)
            return -1;
        const struct mvx_value *ev_ = &item->v.c.items[0], *fdv = &item->v.c.items[1];
        if (ev_->tag != MVX_T_FLAGS || fdv->tag != MVX_T_I64 || !ev_->v.c.extra || ev_->v.c.extra->tag != MVX_T_I64)
            return -1;
        uint64_t bits = (uint64_t)ev_->v.c.extra->v.i;
        for (uint32_t k = 0; k < ev_->n; k++) {
            const struct mvx_value *nm = &ev_->v.c.items[k];
            int b;
            for (b = 0; b < 32; b++)
                if (f->epname[isa][b] && strlen(f->epname[isa][b]) == nm->n && !memcmp(f->epname[isa][b], nm->v.raw, nm->n))
                    break;
            if (b == 32)
                return -1;
            bits |= 1ull << b;
        }
        if (bits > 0xffffffffull || fdv->v.i < 0 || fdv->v.i >= MVX_FAST_MAX_FD)
            return -1;
        struct epreg *r = ep_find_fd(f, epfd, (int)fdv->v.i);
        if (!r)
            return -1; /* Python reports the fd this variant never registered */
        uint32_t events = (uint32_t)bits;
        memcpy(out + i * size, &events, 4);
        memcpy(out + i * size + off, &r->data, 8);
    }
    return (long)(ret * size);
}

static int follower_call(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c) {
    struct mvx_tracee *t = f->t;
    struct mvx_frame *fr;
    struct mvx_msg msg;
    int r = inbox_peek(f->inbox, &fr, -1);
    if (r)
        return FAST_PYTHON; /* closed: Python's next_record raises Stopped */
    if (is_output(c->hot)) {
        /* the leader's check first (again when the leader's call was interrupted and re-made) */
        while (head_is(f, fr, MVX_M_CHECK_REQUEST, &msg)) {
            if (!same_content(c, &msg.u.check_request.content) || !same_view(f, c, &msg.u.check_request.view))
                return FAST_PYTHON; /* Python reports the divergence */
            if ((r = send_seq(f, MVX_M_CHECKED, msg.u.check_request.seq)) < 0)
                return FAST_PYTHON; /* Python's reply reports the lost leader */
            inbox_pop(f->inbox);
            if (inbox_peek(f->inbox, &fr, -1))
                return FAST_PYTHON;
        }
    }
    if (!head_is(f, fr, MVX_M_CALL_RECORD, &msg))
        return FAST_PYTHON;
    struct mvx_call_record *rec = &msg.u.call_record;
    const char *cls = class_of(c->hot);
    if (rec->cls.n != strlen(cls) || memcmp(rec->cls.p, cls, rec->cls.n) || !same_content(c, &rec->content) ||
        rec->has_clock != (is_clock(c->hot) && rec->ret.present && rec->ret.v >= 0) ||
        rec->ret.present != (c->hot != MVX_HOT_CLOSE && c->hot != MVX_HOT_EPOLL_CTL) || !same_view(f, c, &rec->view))
        return FAST_PYTHON; /* Python decides: another call, a divergence, a case this loop lacks */
    if (c->hot == MVX_HOT_ACCEPT4) /* a placeholder where the leader got its connection */
        return follower_accept(f, ev, c, rec);
    if (c->hot == MVX_HOT_SETSOCKOPT) { /* on a placeholder: the leader's result; never run there */
        if (rec->noutputs || !f->placeholder[c->fd])
            return FAST_PYTHON;
    }
    if (c->hot == MVX_HOT_CLOSE || c->hot == MVX_HOT_EPOLL_CTL) { /* made here too (a placeholder's
                                                                    * other end: Python drops it) */
        if (rec->noutputs || (c->hot == MVX_HOT_CLOSE && !close_ok(f, c)))
            return FAST_PYTHON;
        if ((r = let_run(f, ev, c)) <= 0)
            return r < 0 ? -1 : FAST_DONE; /* gone: the record waits for the restarted call */
        if (c->hot == MVX_HOT_CLOSE)
            forget_closed(f, c->fd);
        else
            track_epoll_ctl(f, c);
        return follower_done(f, rec->seq);
    }
    long long ret = rec->ret.v;
    if (c->hot == MVX_HOT_PREAD) { /* run here, on this variant's own copy: the results must agree */
        int mine = f->dup[c->fd];
        if (mine < 0 || mvx_same_file(t->pid, c->fd, mine) != 1 || data_room(f, c->count) < 0) {
            stale_dup(f, c->fd);
            return FAST_PYTHON;
        }
        ssize_t n = pread(mine, f->data, c->count, c->offset);
        if ((n < 0 ? -errno : n) != ret)
            return FAST_PYTHON; /* Python runs it again (pread changes nothing) and reports */
        if (n > 0 && mvx_write_mem(t->pid, c->a[1], f->data, (unsigned long)n) != (long)n)
            return FAST_PYTHON;
    }
    if (is_epoll(c->hot) && ret >= 0) { /* the leader's events, through this variant's registrations */
        if (ret > c->maxevents || data_room(f, (size_t)ret * f->ep_size[c->isa]) < 0)
            return FAST_PYTHON;
        long n = epoll_events_out(f, c->isa, c->fd, rec, ret, f->data);
        if (n < 0 || (n && mvx_write_mem(t->pid, c->a[1], f->data, (size_t)n) != n))
            return FAST_PYTHON;
    } else if (is_clock(c->hot)) { /* the leader's reading, in this variant's timespec */
        if (rec->has_clock) {
            uint8_t raw[16];
            ts_encode(c, rec->clock_sec, rec->clock_nsec, raw);
            if (mvx_write_mem(t->pid, c->a[1], raw, (size_t)c->ts_size) != c->ts_size)
                return FAST_PYTHON;
            ret = 0;
        }
    } else if (is_sendfile(c->hot)) { /* the offset the leader's call left, in this variant's size */
        if (rec->noutputs != (ret >= 0) || (ret >= 0 && (rec->outputs[0].index != 2 ||
                                                         rec->outputs[0].value.tag != MVX_T_I64)))
            return FAST_PYTHON;
        if (ret >= 0) {
            int64_t off = rec->outputs[0].value.v.i;
            if (mvx_write_mem(t->pid, c->off_ptr, &off, (size_t)c->off_size) != c->off_size)
                return FAST_PYTHON;
        }
    } else for (uint32_t i = 0; i < rec->noutputs; i++) {
        const struct mvx_output *o = &rec->outputs[i];
        if (o->value.tag == MVX_T_NONE)
            continue;
        if (o->index != 1 || o->value.tag != MVX_T_BYTES || !is_read(c->hot) || o->value.n > c->count ||
            ret < 0 || read_bytes(c, ret) != o->value.n)
            return FAST_PYTHON;
        if (o->value.n && mvx_write_mem(t->pid, c->a[1], o->value.v.raw, o->value.n) != (long)o->value.n)
            return FAST_PYTHON;
    }
    if (is_read(c->hot) && c->hot != MVX_HOT_PREAD && ret >= 0 && !rec->noutputs)
        return FAST_PYTHON;
    agent_publish_after(f, c->isa, fr);
    if (ev->kind == MVX_EV_NOTIFY) {
        r = mvx_notif_respond(t->notify_fd, ev->notif_id, ret < 0 ? 0 : ret, ret < 0 ? (int)ret : 0, 0);
        if (r == -ENOENT) { /* a signal took the call away: the record waits for the restarted one */
            if (f->ring) /* and the reads after it wait with it (a handler's read traps) */
                __atomic_store_n(&f->ring->enabled, 0, __ATOMIC_RELEASE);
            return FAST_DONE;
        }
        if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
    } else {
        r = mvx_skip(t, ev->arch, ret, MVX_RESUME_RUN);
        if (r < 0) {
            snprintf(f->err, sizeof f->err, "answer %s: %s", c->name, strerror(-r));
            return -1;
        }
    }
    return follower_done(f, rec->seq);
}

/* ---- the loop ---------------------------------------------------------------------------------- */

/* Like mvx_wait, carrying every hot call it can. Returns 0 with `ev` the first stop for Python,
 * or -errno (the variant is lost), or -EPROTO with mvx_fast_error() saying why. */
static int fast_wait(struct mvx_fast *f, struct mvx_event *ev);

/* Write-behind while the monitor thread owns its channels: it sends what its checks release
 * (1), or the sending thread sends all again (0). */
static void outbox_direct(struct mvx_outbox *o, int direct) {
    if (!o)
        return;
    pthread_mutex_lock(&o->link->m);
    o->direct = direct;
    pthread_cond_broadcast(&o->link->cv);
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->link->m);
}

int mvx_fast_wait(struct mvx_fast *f, struct mvx_event *ev) {
    if (f->owns_link) {
        link_own(f->link, 1);
        outbox_direct(f->outbox, 1);
    }
    int r = fast_wait(f, ev);
    flush(f); /* Python's own sends come after these (a follower lost here is told by the pump's end) */
    if (f->owns_link) {
        link_drain_release(f->link, f->outbox); /* what came meanwhile is taken before the pumps read on */
        outbox_direct(f->outbox, 0);
        link_own(f->link, 0);
    }
    return r;
}

static int fast_wait(struct mvx_fast *f, struct mvx_event *ev) {
    for (;;) {
        if (f->nfdev >= MVX_FAST_FDEVS / 2) { /* Python's shadow catches up (Monitor.wait) */
            memset(ev, 0, sizeof *ev);
            ev->kind = MVX_EV_FAST_NOTE;
            return 0;
        }
        if (f->batch.n && !stop_ready(f->t))
            flush(f); /* the monitor is about to block */
        struct mvx_inbox *q = f->inbox;
        int r;
        if (f->owns_link) {
            if (f->outbox)
                outbox_release_now(f->outbox); /* before this thread may sleep */
            struct pollfd pfd[MVX_MAX_FOLLOWERS];
            int fds[MVX_MAX_FOLLOWERS];
            int k = link_fds(f->link, pfd, MVX_MAX_FOLLOWERS);
            for (int i = 0; i < k; i++)
                fds[i] = pfd[i].fd;
            r = mvx_wait_fds(f->t, ev, fds, k);
            if (r < 0)
                return r;
            if (f->t->extra_ready) /* the followers' checks: taken now, even with a call waiting */
                link_drain_release(f->link, f->outbox);
            if (ev->kind == MVX_EV_READABLE)
                continue;
        } else {
            r = mvx_wait_fd(f->t, ev, q && q->own && !q->end ? q->own->fd : -1);
        }
        if (r < 0)
            return r;
        if (ev->kind == MVX_EV_READABLE) { /* the leader's frames, read by this thread */
            if (q->end || inbox_fill(q, 0) < 0) {
                ev->kind = MVX_EV_CHANNEL_END;
                return 0;
            }
            continue;
        }
        if (f->ring && (f->ring->role == MVX_AGENT_LEADER ? leader_claims(f, ev) : agent_reconcile(f)) < 0) {
            /* the variant is stopped: what its agent did since the last stop is followed */
            ev->kind = MVX_EV_AGENT_LIED; /* (the stop's call as it was: a divergence, Python reports it) */
            return 0;
        }
        if (!f->enabled || (ev->kind != MVX_EV_NOTIFY && ev->kind != MVX_EV_SECCOMP && ev->kind != MVX_EV_ENTRY))
            return 0;
        if (f->pend) {
            if (ev->kind != MVX_EV_NOTIFY || ev->pid != f->pend_pid || ev->nr != f->pend_nr ||
                memcmp(ev->args, f->pend_args, sizeof f->pend_args) || f->pend_fd >= 0)
                return 0; /* Python takes the pending result over (Monitor.unanswered) */
            long long ret = f->pend_ret;
            r = mvx_notif_respond(f->t->notify_fd, ev->notif_id, ret < 0 ? 0 : ret, ret < 0 ? (int)ret : 0, 0);
            if (r == -ENOENT)
                continue;
            f->pend = 0;
            if (r < 0) {
                snprintf(f->err, sizeof f->err, "answer: %s", strerror(-r));
                return -EPROTO;
            }
            continue;
        }
        struct hot_call c;
        if (!decode_hot(f, ev, &c))
            return 0;
        int how = f->role == MVX_ROLE_LEADER ? leader_call(f, ev, &c) : follower_call(f, ev, &c);
        if (how == FAST_DONE)
            continue;
        if (how == FAST_PYTHON || how == FAST_RETURN)
            return 0;
        return -EPROTO;
    }
}

const char *mvx_fast_error(struct mvx_fast *f) { return f->err; }
