/* The mvx protocol, version 3 (docs/PROTOCOL.md), in plain C: a decoder of frame bodies into a
 * value tree and message structs, and an encoder back to the canonical bytes. No dependency on
 * Python and no allocation: the decoder takes a caller's array of messages and a caller's arena
 * (a bump allocator over a caller's buffer); the encoder writes into a caller's buffer.
 *
 * Zero-copy: every string, byte string and big integer of a decoded tree points into the body it
 * was decoded from, so the body must outlive the tree. Encoding a decoded body gives the same bytes
 * (the canonical form): `mvx_encode_frame(decode(body)) == header + body`. */
#ifndef MVX_PROTOCOL_H
#define MVX_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define MVX_PROTOCOL_VERSION 4
#define MVX_MAX_FRAME 16777216u /* bytes of one frame's body */
#define MVX_MAX_DEPTH 32        /* nesting of values */

/* return codes (0 is success) */
#define MVX_E_PROTO (-1)   /* decode: bytes that are not a message (the error string says why) */
#define MVX_E_NOSPACE (-2) /* the caller's buffer, arena or message array is too small */
#define MVX_E_INVAL (-3)   /* encode: a struct that has no canonical encoding */
#define MVX_E_TOOBIG (-4)  /* encode: a body over MVX_MAX_FRAME */

/* value tags, as on the wire */
enum mvx_tag {
    MVX_T_NONE = 0, MVX_T_FALSE = 1, MVX_T_TRUE = 2, MVX_T_I64 = 3, MVX_T_U64 = 4, MVX_T_BIGINT = 5,
    MVX_T_STR = 6, MVX_T_BYTES = 7, MVX_T_LIST = 8, MVX_T_DICT = 9, MVX_T_TIME = 10, MVX_T_SOCKADDR = 11,
    MVX_T_FLAGS = 12, MVX_T_ADDR = 13, MVX_T_IOVEC = 14, MVX_T_SET = 15, MVX_T_TUPLE = 16,
};

/* message type codes, as on the wire */
enum mvx_msg_type {
    MVX_M_HELLO = 1, MVX_M_CALL_RECORD = 2, MVX_M_CHECK_REQUEST = 3, MVX_M_CHECKED = 4, MVX_M_ACK = 5,
    MVX_M_SIGNAL_BATCH = 6, MVX_M_END = 7, MVX_M_STOP_SESSION = 8, MVX_M_DIVERGENCE_REPORT = 9,
    MVX_M_FOLLOWER_STOPPED = 10, MVX_M_FOLLOWER_ENDED = 11, MVX_M_STARTED = 12,
};

/* n bytes at p (UTF-8 for a str; not NUL-terminated) */
struct mvx_str {
    const uint8_t *p;
    uint32_t n;
};

/* One value. What `n` and `v` hold depends on the tag:
 *   NONE, FALSE, TRUE    nothing
 *   I64                  v.i
 *   U64, ADDR            v.u
 *   BIGINT               v.raw, n bytes (two's complement, little-endian, canonical)
 *   STR, BYTES           v.raw, n bytes
 *   LIST, TUPLE, SET     v.c.items[0..n)
 *   DICT                 v.c.items[0..n), each item's `key` set
 *   TIME                 v.time.sec, v.time.nsec, usec (0/1)
 *   SOCKADDR             v.c.extra the family (one value), v.c.items[0..n) the fields, `key` set
 *   FLAGS                v.c.items[0..n) the names (STR values), v.c.extra the rest (an int value)
 *   IOVEC                v.c.items[0..n) the parts (BYTES values) */
struct mvx_value {
    uint8_t tag;
    uint8_t usec;
    uint8_t unhashable; /* set by the decoder: a list or dict is inside (it cannot be a set item) */
    uint32_t n;
    struct mvx_str key; /* an item of a DICT or a field of a SOCKADDR: its name */
    union {
        int64_t i;
        uint64_t u;
        const uint8_t *raw;
        struct {
            int64_t sec, nsec;
        } time;
        struct {
            struct mvx_value *items;
            struct mvx_value *extra;
        } c;
    } v;
};

struct mvx_opt_i64 {
    uint8_t present;
    int64_t v;
};

struct mvx_opt_str {
    uint8_t present;
    struct mvx_str s;
};

struct mvx_output {
    uint32_t index; /* canonical argument index, 0..255, strictly increasing in a record */
    struct mvx_value value;
};

struct mvx_sig {
    uint32_t signo;
    struct mvx_str info; /* 128 bytes of siginfo, or empty */
};

struct mvx_hello {
    uint32_t version;
    struct mvx_str role, arch, policy;
};

struct mvx_call_record {
    uint64_t seq;
    struct mvx_str cls;
    struct mvx_value view;
    struct mvx_opt_i64 ret;
    uint32_t noutputs;
    struct mvx_output *outputs;
    struct mvx_opt_str content;
    uint8_t has_clock;
    int64_t clock_sec, clock_nsec;
};

struct mvx_check_request {
    uint64_t seq;
    struct mvx_value view;
    struct mvx_opt_str content;
};

struct mvx_seq_msg { /* Checked, Ack */
    uint64_t seq;
};

struct mvx_signal_batch {
    uint64_t seq;
    struct mvx_str how;
    uint32_t nsigs;
    struct mvx_sig *sigs;
};

struct mvx_end {
    uint64_t seq;
    struct mvx_opt_i64 status, signal;
};

struct mvx_reason { /* StopSession, FollowerStopped */
    struct mvx_str reason;
};

struct mvx_divergence_report {
    struct mvx_str kind;
    uint64_t seq;
    struct mvx_str leader, follower, detail;
    struct mvx_str forensics; /* JSON: where the follower's variant was (mvx.mechanics.forensics); "" if unknown */
};

struct mvx_follower_ended {
    struct mvx_opt_i64 status, signal;
};

struct mvx_started {
    uint64_t pid;
};

struct mvx_msg {
    uint8_t type; /* enum mvx_msg_type */
    union {
        struct mvx_hello hello;
        struct mvx_call_record call_record;
        struct mvx_check_request check_request;
        struct mvx_seq_msg checked, ack;
        struct mvx_signal_batch signal_batch;
        struct mvx_end end;
        struct mvx_reason stop_session, follower_stopped;
        struct mvx_divergence_report divergence_report;
        struct mvx_follower_ended follower_ended;
        struct mvx_started started;
    } u;
};

/* A bump allocator over the caller's buffer: the decoder takes value arrays, outputs and signals
 * from it and never frees; reset `used` to 0 to reuse it for the next frame. */
struct mvx_arena {
    uint8_t *base;
    size_t cap;
    size_t used;
};

/* Arena bytes and messages that always suffice for a body of `len` bytes (every value, output or
 * signal takes at least one byte of the body; a message at least three). A smaller arena is fine
 * for a known traffic: running out is MVX_E_NOSPACE, never a crash. */
size_t mvx_decode_space(size_t len);
size_t mvx_decode_max_msgs(size_t len);

/* The name of a message type ("CallRecord") or NULL. */
const char *mvx_msg_name(int type);

/* The body length announced by a frame's 4 header bytes; MVX_E_PROTO (with the error string) when
 * it is over MVX_MAX_FRAME, to be rejected before the body is buffered. */
int mvx_frame_length(const uint8_t hdr[4], uint32_t *len, char *err, size_t errlen);

/* Decodes every message of a frame body into msgs[0..*nmsgs). Returns 0, MVX_E_PROTO with `err`
 * naming the message and field as the Python decoder does ("CallRecord.view[1]: truncated u64
 * (need 8 bytes, have 3)"), or MVX_E_NOSPACE when `cap` or the arena is too small. */
int mvx_decode_body(const uint8_t *body, size_t len, struct mvx_msg *msgs, size_t cap, size_t *nmsgs,
                    struct mvx_arena *arena, char *err, size_t errlen);

/* Encoders: the number of bytes written to out[0..cap), or MVX_E_NOSPACE, MVX_E_INVAL (a tree
 * with no canonical encoding: a u64 or big integer a narrower tag holds, names or set items not
 * sorted and distinct, an output index over 255 or out of order, a string not UTF-8, nesting over
 * 32, an unknown tag or type) or MVX_E_TOOBIG. */
long mvx_encode_value(uint8_t *out, size_t cap, const struct mvx_value *v);
long mvx_encode_msg(uint8_t *out, size_t cap, const struct mvx_msg *m);
/* One frame: the u32 little-endian length, then msgs[0..n) back to back (n >= 1). */
long mvx_encode_frame(uint8_t *out, size_t cap, const struct mvx_msg *msgs, size_t n);

#endif
