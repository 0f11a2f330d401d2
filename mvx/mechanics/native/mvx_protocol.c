/* The mvx protocol, version 3: decoder and encoder (see mvx_protocol.h, docs/PROTOCOL.md).
 * The error strings follow mvx/core/protocol.py word for word, so both report the same place. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mvx_protocol.h"

static const char *const MSG_NAMES[] = {
    NULL, "Hello", "CallRecord", "CheckRequest", "Checked", "Ack", "SignalBatch", "End", "StopSession",
    "DivergenceReport", "FollowerStopped", "FollowerEnded", "Started",
};

const char *mvx_msg_name(int type)
{
    return type >= 1 && type <= 12 ? MSG_NAMES[type] : NULL;
}

size_t mvx_decode_space(size_t len)
{
    /* values (one per body byte at most), outputs (5 bytes each at least), signals (8), the
     * transient key tables of dicts and sets (two u32 per entry of at least 1 byte) */
    return len * sizeof(struct mvx_value) + (len / 5 + 1) * sizeof(struct mvx_output) +
           (len / 8 + 1) * sizeof(struct mvx_sig) + len * 2 * sizeof(uint32_t) + 64;
}

size_t mvx_decode_max_msgs(size_t len)
{
    return len / 3 + 1;
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

int mvx_frame_length(const uint8_t hdr[4], uint32_t *len, char *err, size_t errlen)
{
    uint32_t n = ld32(hdr);
    *len = n;
    if (n > MVX_MAX_FRAME) {
        if (err && errlen)
            snprintf(err, errlen, "frame: %u bytes announced, over the %u-byte limit", n, MVX_MAX_FRAME);
        return MVX_E_PROTO;
    }
    return 0;
}

/* ---- shared helpers ------------------------------------------------------------------------- */

/* strict UTF-8 as Python's decoder: no overlongs, no surrogates, nothing over U+10FFFF */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return 0;
        if (n - i - 1 < k)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

/* byte order of two encodings (Python's bytes comparison) */
static int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t m = an < bn ? an : bn;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

/* Big integer canonical form (Python: raw == v.to_bytes((v.bit_length() + 8) // 8, signed)) and
 * range (only outside [-2^63, 2^64)). */
static int bigint_canonical(const uint8_t *raw, size_t n)
{
    if (n == 0)
        return 0; /* zero */
    int neg = raw[n - 1] & 0x80;
    uint8_t fill = neg ? 0xff : 0x00;
    /* m = |v| for v >= 0, |v| - 1 (the complement) for v < 0 */
    size_t top = n;
    while (top > 0 && (uint8_t)(raw[top - 1] ^ fill) == 0)
        top--;
    size_t bm = 0; /* bit length of m */
    if (top > 0) {
        uint8_t b = raw[top - 1] ^ fill;
        int bits = 0;
        while (b) {
            bits++;
            b >>= 1;
        }
        bm = (top - 1) * 8 + (size_t)bits;
    }
    size_t blen = bm; /* bit length of |v| */
    int pow2 = 0;
    if (neg) {
        /* |v| = m + 1: one more bit when m is all ones below bm (|v| a power of two) */
        pow2 = 1;
        for (size_t i = 0; i < bm && pow2; i++)
            if (!(((raw[i / 8] ^ fill) >> (i % 8)) & 1))
                pow2 = 0;
        if (pow2)
            blen = bm + 1;
    }
    if (!neg && blen <= 64)
        return 0;
    if (neg && (blen <= 63 || (blen == 64 && pow2)))
        return 0;
    return n == (blen + 8) / 8;
}

/* ---- decoding --------------------------------------------------------------------------------- */

#define STACK_MAX (MVX_MAX_DEPTH + 8)

struct place {
    const uint8_t *key; /* NULL: an index */
    uint32_t n;
};

struct rd {
    const uint8_t *d;
    size_t pos, end;
    struct mvx_arena *a;
    const char *field; /* "Message.field" or "frame" */
    struct place stack[STACK_MAX];
    int sp;
    char *err;
    size_t errlen;
};

/* Python's repr() of a str key: quotes, backslash escapes for ASCII controls and C1 controls
 * (other non-ASCII characters as they are; repr escapes a few more non-printable ones) */
static size_t repr_key(char *out, size_t cap, const uint8_t *s, uint32_t n)
{
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    size_t o = 0;
#define PUT(ch)                     \
    do {                            \
        if (o + 1 < cap)            \
            out[o] = (char)(ch);    \
        o++;                        \
    } while (0)
    PUT(q);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        const char *esc = NULL;
        char hex[8];
        if (c == '\\')
            esc = "\\\\";
        else if (c == (uint8_t)q)
            esc = q == '\'' ? "\\'" : "\\\"";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(hex, sizeof hex, "\\x%02x", c);
            esc = hex;
        } else if (c == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0xa0) {
            snprintf(hex, sizeof hex, "\\x%02x", s[i + 1]); /* U+0080..U+00A0 */
            esc = hex;
            i++;
        }
        if (esc)
            for (; *esc; esc++)
                PUT(*esc);
        else
            PUT(c);
    }
    PUT(q);
#undef PUT
    if (cap)
        out[o < cap ? o : cap - 1] = 0;
    return o;
}

__attribute__((format(printf, 2, 3))) static int fail(struct rd *r, const char *fmt, ...)
{
    if (!r->err || !r->errlen)
        return MVX_E_PROTO;
    size_t o = (size_t)snprintf(r->err, r->errlen, "%s", r->field);
    for (int i = 0; i < r->sp && o < r->errlen; i++) {
        if (r->stack[i].key) {
            o += (size_t)snprintf(r->err + o, r->errlen - o, "[");
            if (o < r->errlen)
                o += repr_key(r->err + o, r->errlen - o, r->stack[i].key, r->stack[i].n);
            if (o < r->errlen)
                o += (size_t)snprintf(r->err + o, r->errlen - o, "]");
        } else
            o += (size_t)snprintf(r->err + o, r->errlen - o, "[%u]", r->stack[i].n);
    }
    if (o < r->errlen)
        o += (size_t)snprintf(r->err + o, r->errlen - o, ": ");
    if (o < r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + o, r->errlen - o, fmt, ap);
        va_end(ap);
    }
    return MVX_E_PROTO;
}

static int nospace(struct rd *r)
{
    if (r->err && r->errlen)
        snprintf(r->err, r->errlen, "%s: out of decode space (arena of %zu bytes)", r->field, r->a->cap);
    return MVX_E_NOSPACE;
}

static void *alloc(struct rd *r, size_t n, size_t size)
{
    struct mvx_arena *a = r->a;
    uintptr_t at = (uintptr_t)(a->base + a->used);
    size_t pad = (size_t)(-at & 7);
    if (n && size > (SIZE_MAX - pad) / n)
        return NULL;
    size_t need = pad + n * size;
    if (a->used > a->cap || need > a->cap - a->used)
        return NULL;
    void *p = a->base + a->used + pad;
    a->used += need;
    return p;
}

static int push(struct rd *r, const uint8_t *key, uint32_t n)
{
    if (r->sp >= STACK_MAX)
        return fail(r, "nested deeper than %d", MVX_MAX_DEPTH); /* unreachable: depth is checked */
    r->stack[r->sp].key = key;
    r->stack[r->sp].n = n;
    r->sp++;
    return 0;
}

static int need(struct rd *r, uint64_t n, const char *what)
{
    if (n > r->end - r->pos)
        return fail(r, "truncated %s (need %llu bytes, have %zu)", what, (unsigned long long)n,
                    r->end - r->pos);
    return 0;
}

static int rd_u8(struct rd *r, uint8_t *v)
{
    int e = need(r, 1, "u8");
    if (e)
        return e;
    *v = r->d[r->pos++];
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
    int e = need(r, 4, "u32");
    if (e)
        return e;
    *v = ld32(r->d + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
    int e = need(r, 8, what);
    if (e)
        return e;
    *v = ld64(r->d + r->pos);
    r->pos += 8;
    return 0;
}

static int rd_i64(struct rd *r, int64_t *v)
{
    uint64_t u;
    int e = rd_u64(r, &u, "i64");
    if (!e)
        memcpy(v, &u, 8);
    return e;
}

static int rd_flag(struct rd *r, uint8_t *v)
{
    int e = rd_u8(r, v);
    if (e)
        return e;
    if (*v > 1)
        return fail(r, "presence byte %u is not 0 or 1", *v);
    return 0;
}

static int rd_count(struct rd *r, uint32_t each, uint32_t *n)
{
    int e = rd_u32(r, n);
    if (e)
        return e;
    if ((uint64_t)*n * each > r->end - r->pos)
        return fail(r, "%u items announced, the frame has room for fewer", *n);
    return 0;
}

static int rd_blob(struct rd *r, struct mvx_str *s)
{
    uint32_t n;
    int e = rd_u32(r, &n);
    if (e || (e = need(r, n, "bytes")))
        return e;
    s->p = r->d + r->pos;
    s->n = n;
    r->pos += n;
    return 0;
}

static int rd_text(struct rd *r, struct mvx_str *s)
{
    int e = rd_blob(r, s);
    if (e)
        return e;
    if (!utf8_ok(s->p, s->n))
        return fail(r, "a string that is not UTF-8");
    return 0;
}

static int rd_opt_i64(struct rd *r, struct mvx_opt_i64 *v)
{
    int e = rd_flag(r, &v->present);
    v->v = 0;
    return e ? e : v->present ? rd_i64(r, &v->v) : 0;
}

static int rd_opt_str(struct rd *r, struct mvx_opt_str *v)
{
    int e = rd_flag(r, &v->present);
    v->s.p = NULL;
    v->s.n = 0;
    return e ? e : v->present ? rd_text(r, &v->s) : 0;
}

/* decimal of a two's complement little-endian integer (error messages only) */
static void bigint_decimal(const uint8_t *raw, size_t n, char *out, size_t cap)
{
    uint8_t mag[512];
    if (n > sizeof mag) {
        snprintf(out, cap, "of %zu bytes", n);
        return;
    }
    int neg = n && (raw[n - 1] & 0x80);
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        if (neg) {
            unsigned x = (unsigned)(uint8_t)~raw[i] + carry;
            mag[i] = (uint8_t)x;
            carry = x >> 8;
        } else
            mag[i] = raw[i];
    }
    char digits[1300];
    size_t nd = 0, len = n;
    do {
        while (len && mag[len - 1] == 0)
            len--;
        unsigned rem = 0;
        for (size_t i = len; i-- > 0;) {
            unsigned x = rem << 8 | mag[i];
            mag[i] = (uint8_t)(x / 10);
            rem = x % 10;
        }
        digits[nd++] = (char)('0' + rem);
        while (len && mag[len - 1] == 0)
            len--;
    } while (len);
    size_t o = 0;
    if (neg && o + 1 < cap)
        out[o++] = '-';
    while (nd && o + 1 < cap)
        out[o++] = digits[--nd];
    if (cap)
        out[o] = 0;
}

/* ---- Python's equality and hashing of set items: True == 1, False == 0, a TimeValue compares
 * without its usec flag, an IoVec by its joined bytes; a frozenset collapses equal items, so a
 * set holding two of them has no canonical encoding (the Python decoder rejects it too). */

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t mix_bytes(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int int_like(const struct mvx_value *v, int64_t *x)
{
    if (v->tag == MVX_T_FALSE || v->tag == MVX_T_TRUE)
        *x = v->tag == MVX_T_TRUE;
    else if (v->tag == MVX_T_I64)
        *x = v->v.i;
    else
        return 0;
    return 1;
}

static uint64_t py_hash(const struct mvx_value *v)
{
    int64_t x;
    uint64_t h;
    if (int_like(v, &x))
        return mix(3, (uint64_t)x);
    h = mix(0, v->tag);
    switch (v->tag) {
    case MVX_T_U64:
    case MVX_T_ADDR:
        return mix(h, v->v.u);
    case MVX_T_BIGINT:
    case MVX_T_STR:
    case MVX_T_BYTES:
        return mix_bytes(h, v->v.raw, v->n);
    case MVX_T_TIME:
        return mix(mix(h, (uint64_t)v->v.time.sec), (uint64_t)v->v.time.nsec);
    case MVX_T_IOVEC:
        h = 0xcbf29ce484222325ull;
        for (uint32_t i = 0; i < v->n; i++)
            h = mix_bytes(h, v->v.c.items[i].v.raw, v->v.c.items[i].n);
        return h;
    case MVX_T_TUPLE:
    case MVX_T_LIST:
        for (uint32_t i = 0; i < v->n; i++)
            h = mix(h, py_hash(&v->v.c.items[i]));
        return h;
    case MVX_T_SOCKADDR:
        h = mix(h, py_hash(v->v.c.extra));
        for (uint32_t i = 0; i < v->n; i++)
            h = mix(mix_bytes(h, v->v.c.items[i].key.p, v->v.c.items[i].key.n), py_hash(&v->v.c.items[i]));
        return h;
    case MVX_T_FLAGS:
        for (uint32_t i = 0; i < v->n; i++)
            h = mix(h, mix_bytes(0, v->v.c.items[i].v.raw, v->v.c.items[i].n));
        return mix(h, py_hash(v->v.c.extra));
    case MVX_T_SET: {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < v->n; i++)
            sum += py_hash(&v->v.c.items[i]);
        return mix(h, sum);
    }
    default:
        return h;
    }
}

static int iovec_equal(const struct mvx_value *a, const struct mvx_value *b)
{
    uint32_t ia = 0, ib = 0, oa = 0, ob = 0;
    for (;;) {
        while (ia < a->n && oa == a->v.c.items[ia].n) {
            ia++;
            oa = 0;
        }
        while (ib < b->n && ob == b->v.c.items[ib].n) {
            ib++;
            ob = 0;
        }
        if (ia == a->n || ib == b->n)
            return ia == a->n && ib == b->n;
        if (a->v.c.items[ia].v.raw[oa++] != b->v.c.items[ib].v.raw[ob++])
            return 0;
    }
}

static int py_equal(const struct mvx_value *a, const struct mvx_value *b)
{
    int64_t x, y;
    if (int_like(a, &x) || int_like(b, &y))
        return int_like(a, &x) && int_like(b, &y) && x == y;
    if (a->tag != b->tag)
        return 0;
    switch (a->tag) {
    case MVX_T_NONE:
        return 1;
    case MVX_T_U64:
    case MVX_T_ADDR:
        return a->v.u == b->v.u;
    case MVX_T_BIGINT:
    case MVX_T_STR:
    case MVX_T_BYTES:
        return a->n == b->n && (a->n == 0 || memcmp(a->v.raw, b->v.raw, a->n) == 0);
    case MVX_T_TIME:
        return a->v.time.sec == b->v.time.sec && a->v.time.nsec == b->v.time.nsec;
    case MVX_T_IOVEC:
        return iovec_equal(a, b);
    case MVX_T_TUPLE:
    case MVX_T_LIST:
        if (a->n != b->n)
            return 0;
        for (uint32_t i = 0; i < a->n; i++)
            if (!py_equal(&a->v.c.items[i], &b->v.c.items[i]))
                return 0;
        return 1;
    case MVX_T_SOCKADDR:
        if (a->n != b->n || !py_equal(a->v.c.extra, b->v.c.extra))
            return 0;
        for (uint32_t i = 0; i < a->n; i++) {
            const struct mvx_value *p = &a->v.c.items[i], *q = &b->v.c.items[i];
            if (bytes_cmp(p->key.p, p->key.n, q->key.p, q->key.n) || !py_equal(p, q))
                return 0;
        }
        return 1;
    case MVX_T_FLAGS:
        if (a->n != b->n || !py_equal(a->v.c.extra, b->v.c.extra))
            return 0;
        for (uint32_t i = 0; i < a->n; i++)
            if (!py_equal(&a->v.c.items[i], &b->v.c.items[i]))
                return 0;
        return 1;
    case MVX_T_SET: /* items of each are distinct already */
        if (a->n != b->n)
            return 0;
        for (uint32_t i = 0; i < a->n; i++) {
            uint32_t j = 0;
            while (j < b->n && !py_equal(&a->v.c.items[i], &b->v.c.items[j]))
                j++;
            if (j == b->n)
                return 0;
        }
        return 1;
    default:
        return 0;
    }
}

/* An open-addressing table of item indexes (transient arena space): is there an earlier item equal
 * to this one? Keys of a dict by bytes, items of a set by Python's equality. */
struct seen {
    uint32_t *slot; /* index + 1, 0 empty */
    uint32_t mask;
};

static int seen_init(struct rd *r, struct seen *s, uint32_t n)
{
    uint32_t size = 8;
    while (size < 2 * (uint64_t)n)
        size *= 2;
    s->slot = alloc(r, size, sizeof(uint32_t));
    if (!s->slot)
        return nospace(r);
    memset(s->slot, 0, size * sizeof(uint32_t));
    s->mask = size - 1;
    return 0;
}

/* 1 when an equal item was there already, else adds item i */
static int seen_add(struct seen *s, const struct mvx_value *items, uint32_t i, uint64_t h, int by_key)
{
    for (uint32_t k = (uint32_t)h & s->mask;; k = (k + 1) & s->mask) {
        uint32_t j = s->slot[k];
        if (!j) {
            s->slot[k] = i + 1;
            return 0;
        }
        const struct mvx_value *a = &items[j - 1], *b = &items[i];
        if (by_key ? !bytes_cmp(a->key.p, a->key.n, b->key.p, b->key.n) : py_equal(a, b))
            return 1;
    }
}

static int rd_value(struct rd *r, struct mvx_value *v, int depth);

static int rd_items(struct rd *r, struct mvx_value *v, uint32_t each)
{
    int e = rd_count(r, each, &v->n);
    if (e)
        return e;
    v->v.c.extra = NULL;
    v->v.c.items = alloc(r, v->n, sizeof(struct mvx_value));
    return v->v.c.items ? 0 : nospace(r);
}

static int rd_value(struct rd *r, struct mvx_value *v, int depth)
{
    int e;
    memset(&v->v, 0, sizeof v->v);
    v->key.p = NULL;
    v->key.n = 0;
    v->usec = 0;
    v->unhashable = 0;
    v->n = 0;
    if (depth > MVX_MAX_DEPTH)
        return fail(r, "nested deeper than %d", MVX_MAX_DEPTH);
    if (r->pos >= r->end)
        return fail(r, "truncated u8 (need 1 bytes, have 0)");
    uint8_t tag = r->d[r->pos++];
    v->tag = tag;
    switch (tag) {
    case MVX_T_NONE:
    case MVX_T_FALSE:
    case MVX_T_TRUE:
        return 0;
    case MVX_T_I64:
        return rd_i64(r, &v->v.i);
    case MVX_T_U64:
        if ((e = rd_u64(r, &v->v.u, "u64")))
            return e;
        if (v->v.u < (1ull << 63))
            return fail(r, "u64 tag for %llu, which is an i64 (not canonical)", (unsigned long long)v->v.u);
        return 0;
    case MVX_T_BIGINT: {
        struct mvx_str s;
        if ((e = rd_blob(r, &s)))
            return e;
        v->v.raw = s.p;
        v->n = s.n;
        if (!bigint_canonical(s.p, s.n)) {
            char dec[1300];
            bigint_decimal(s.p, s.n, dec, sizeof dec);
            return fail(r, "big integer %s not in its canonical form", dec);
        }
        return 0;
    }
    case MVX_T_STR:
    case MVX_T_BYTES: {
        struct mvx_str s;
        if ((e = tag == MVX_T_STR ? rd_text(r, &s) : rd_blob(r, &s)))
            return e;
        v->v.raw = s.p;
        v->n = s.n;
        return 0;
    }
    case MVX_T_LIST:
    case MVX_T_TUPLE:
        if ((e = rd_items(r, v, 1)))
            return e;
        for (uint32_t i = 0; i < v->n; i++) {
            if ((e = push(r, NULL, i)) || (e = rd_value(r, &v->v.c.items[i], depth + 1)))
                return e;
            r->sp--;
            v->unhashable |= v->v.c.items[i].unhashable;
        }
        if (tag == MVX_T_LIST)
            v->unhashable = 1;
        return 0;
    case MVX_T_DICT: {
        struct seen s = {0};
        if ((e = rd_items(r, v, 5)))
            return e;
        if (v->n > 8 && (e = seen_init(r, &s, v->n)))
            return e;
        v->unhashable = 1;
        for (uint32_t i = 0; i < v->n; i++) {
            struct mvx_value *it = &v->v.c.items[i];
            if ((e = rd_text(r, &it->key)))
                return e;
            int dup = 0;
            if (s.slot)
                dup = seen_add(&s, v->v.c.items, i, mix_bytes(0xcbf29ce484222325ull, it->key.p, it->key.n), 1);
            else
                for (uint32_t j = 0; j < i && !dup; j++)
                    dup = !bytes_cmp(v->v.c.items[j].key.p, v->v.c.items[j].key.n, it->key.p, it->key.n);
            if (dup) {
                char k[256];
                repr_key(k, sizeof k, it->key.p, it->key.n);
                return fail(r, "key %s twice", k);
            }
            struct mvx_str key = it->key;
            if ((e = push(r, key.p, key.n)) || (e = rd_value(r, it, depth + 1)))
                return e;
            it->key = key;
            r->sp--;
        }
        return 0;
    }
    case MVX_T_TIME:
        if ((e = need(r, 17, "time")))
            return e;
        v->v.time.sec = (int64_t)ld64(r->d + r->pos);
        v->v.time.nsec = (int64_t)ld64(r->d + r->pos + 8);
        v->usec = r->d[r->pos + 16];
        if (v->usec > 1)
            return fail(r, "presence byte %u is not 0 or 1", v->usec);
        r->pos += 17;
        return 0;
    case MVX_T_SOCKADDR: {
        struct mvx_value *family = alloc(r, 1, sizeof *family);
        if (!family)
            return nospace(r);
        if ((e = rd_value(r, family, depth + 1)) || (e = rd_items(r, v, 5)))
            return e;
        v->v.c.extra = family;
        v->unhashable = family->unhashable;
        for (uint32_t i = 0; i < v->n; i++) {
            struct mvx_value *it = &v->v.c.items[i];
            if ((e = rd_text(r, &it->key)))
                return e;
            struct mvx_str key = it->key;
            if ((e = push(r, key.p, key.n)) || (e = rd_value(r, it, depth + 1)))
                return e;
            it->key = key;
            r->sp--;
            v->unhashable |= it->unhashable;
        }
        return 0;
    }
    case MVX_T_FLAGS: {
        if ((e = rd_items(r, v, 4)))
            return e;
        for (uint32_t i = 0; i < v->n; i++) {
            struct mvx_value *it = &v->v.c.items[i];
            struct mvx_str s;
            memset(it, 0, sizeof *it);
            it->tag = MVX_T_STR;
            if ((e = rd_text(r, &s)))
                return e;
            it->v.raw = s.p;
            it->n = s.n;
        }
        struct mvx_value *rest = alloc(r, 1, sizeof *rest);
        if (!rest)
            return nospace(r);
        if ((e = rd_value(r, rest, depth + 1)))
            return e;
        v->v.c.extra = rest;
        int ok = rest->tag == MVX_T_I64 || rest->tag == MVX_T_U64 || rest->tag == MVX_T_BIGINT;
        for (uint32_t i = 1; i < v->n && ok; i++)
            ok = bytes_cmp(v->v.c.items[i - 1].v.raw, v->v.c.items[i - 1].n, v->v.c.items[i].v.raw,
                           v->v.c.items[i].n) < 0;
        if (!ok)
            return fail(r, "a flag set needs sorted distinct names and an integer rest");
        return 0;
    }
    case MVX_T_ADDR:
        return rd_u64(r, &v->v.u, "u64");
    case MVX_T_IOVEC:
        if ((e = rd_items(r, v, 4)))
            return e;
        for (uint32_t i = 0; i < v->n; i++) {
            struct mvx_value *it = &v->v.c.items[i];
            struct mvx_str s;
            memset(it, 0, sizeof *it);
            it->tag = MVX_T_BYTES;
            if ((e = rd_blob(r, &s)))
                return e;
            it->v.raw = s.p;
            it->n = s.n;
        }
        return 0;
    case MVX_T_SET: {
        if ((e = rd_items(r, v, 1)))
            return e;
        const uint8_t *last = NULL;
        size_t last_n = 0;
        int unhashable = 0;
        for (uint32_t i = 0; i < v->n; i++) {
            size_t start = r->pos;
            if ((e = rd_value(r, &v->v.c.items[i], depth + 1)))
                return e;
            if (last && bytes_cmp(r->d + start, r->pos - start, last, last_n) <= 0)
                return fail(r, "set items not in canonical order");
            last = r->d + start;
            last_n = r->pos - start;
            unhashable |= v->v.c.items[i].unhashable;
        }
        if (unhashable)
            return fail(r, "a set item that cannot be in a set");
        if (v->n > 1) {
            size_t mark = r->a->used;
            struct seen s;
            if ((e = seen_init(r, &s, v->n)))
                return e;
            for (uint32_t i = 0; i < v->n; i++)
                if (seen_add(&s, v->v.c.items, i, py_hash(&v->v.c.items[i]), 0))
                    return fail(r, "set items equal as values (not canonical)");
            r->a->used = mark; /* the table was the last thing taken */
        }
        return 0;
    }
    default:
        return fail(r, "unknown value tag 0x%02x", tag);
    }
}

static int rd_top_value(struct rd *r, struct mvx_value *v)
{
    memset(&v->key, 0, sizeof v->key);
    return rd_value(r, v, 0);
}

static int rd_outputs(struct rd *r, uint32_t *count, struct mvx_output **out)
{
    uint32_t n;
    int e = rd_count(r, 5, &n);
    if (e)
        return e;
    struct mvx_output *o = alloc(r, n, sizeof *o);
    if (!o)
        return nospace(r);
    *out = o;
    *count = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i;
        if ((e = rd_u32(r, &i)))
            return e;
        if (i > 255 || (k > 0 && i <= o[k - 1].index))
            return fail(r, "argument index %u out of range, repeated or out of order", i);
        o[k].index = i;
        memset(&o[k].value.key, 0, sizeof o[k].value.key);
        if ((e = push(r, NULL, i)) || (e = rd_value(r, &o[k].value, 1)))
            return e;
        r->sp--;
        *count = k + 1;
    }
    return 0;
}

static int rd_sigs(struct rd *r, uint32_t *count, struct mvx_sig **out)
{
    uint32_t n;
    int e = rd_count(r, 8, &n);
    if (e)
        return e;
    struct mvx_sig *s = alloc(r, n, sizeof *s);
    if (!s)
        return nospace(r);
    *out = s;
    for (uint32_t k = 0; k < n; k++)
        if ((e = rd_u32(r, &s[k].signo)) || (e = rd_blob(r, &s[k].info)))
            return e;
    *count = n;
    return 0;
}

#define FIELD(name, expr)                 \
    do {                                  \
        r->field = name;                  \
        if ((e = (expr)))                 \
            return e;                     \
    } while (0)

static int rd_message(struct rd *r, struct mvx_msg *m)
{
    int e;
    switch (m->type) {
    case MVX_M_HELLO: {
        struct mvx_hello *h = &m->u.hello;
        FIELD("Hello.version", rd_u32(r, &h->version));
        FIELD("Hello.role", rd_text(r, &h->role));
        FIELD("Hello.arch", rd_text(r, &h->arch));
        FIELD("Hello.policy", rd_text(r, &h->policy));
        return 0;
    }
    case MVX_M_CALL_RECORD: {
        struct mvx_call_record *c = &m->u.call_record;
        uint8_t has;
        FIELD("CallRecord.seq", rd_u64(r, &c->seq, "u64"));
        FIELD("CallRecord.cls", rd_text(r, &c->cls));
        FIELD("CallRecord.view", rd_top_value(r, &c->view));
        FIELD("CallRecord.ret", rd_opt_i64(r, &c->ret));
        FIELD("CallRecord.outputs", rd_outputs(r, &c->noutputs, &c->outputs));
        FIELD("CallRecord.content", rd_opt_str(r, &c->content));
        FIELD("CallRecord.clock", rd_flag(r, &has));
        c->has_clock = has;
        if (has) {
            FIELD("CallRecord.clock", rd_i64(r, &c->clock_sec));
            FIELD("CallRecord.clock", rd_i64(r, &c->clock_nsec));
        }
        return 0;
    }
    case MVX_M_CHECK_REQUEST: {
        struct mvx_check_request *c = &m->u.check_request;
        FIELD("CheckRequest.seq", rd_u64(r, &c->seq, "u64"));
        FIELD("CheckRequest.view", rd_top_value(r, &c->view));
        FIELD("CheckRequest.content", rd_opt_str(r, &c->content));
        return 0;
    }
    case MVX_M_CHECKED:
        FIELD("Checked.seq", rd_u64(r, &m->u.checked.seq, "u64"));
        return 0;
    case MVX_M_ACK:
        FIELD("Ack.seq", rd_u64(r, &m->u.ack.seq, "u64"));
        return 0;
    case MVX_M_SIGNAL_BATCH: {
        struct mvx_signal_batch *s = &m->u.signal_batch;
        FIELD("SignalBatch.seq", rd_u64(r, &s->seq, "u64"));
        FIELD("SignalBatch.how", rd_text(r, &s->how));
        FIELD("SignalBatch.sigs", rd_sigs(r, &s->nsigs, &s->sigs));
        return 0;
    }
    case MVX_M_END: {
        struct mvx_end *x = &m->u.end;
        FIELD("End.seq", rd_u64(r, &x->seq, "u64"));
        FIELD("End.status", rd_opt_i64(r, &x->status));
        FIELD("End.signal", rd_opt_i64(r, &x->signal));
        return 0;
    }
    case MVX_M_STOP_SESSION:
        FIELD("StopSession.reason", rd_text(r, &m->u.stop_session.reason));
        return 0;
    case MVX_M_DIVERGENCE_REPORT: {
        struct mvx_divergence_report *d = &m->u.divergence_report;
        FIELD("DivergenceReport.kind", rd_text(r, &d->kind));
        FIELD("DivergenceReport.seq", rd_u64(r, &d->seq, "u64"));
        FIELD("DivergenceReport.leader", rd_text(r, &d->leader));
        FIELD("DivergenceReport.follower", rd_text(r, &d->follower));
        FIELD("DivergenceReport.detail", rd_text(r, &d->detail));
        FIELD("DivergenceReport.forensics", rd_text(r, &d->forensics));
        return 0;
    }
    case MVX_M_FOLLOWER_STOPPED:
        FIELD("FollowerStopped.reason", rd_text(r, &m->u.follower_stopped.reason));
        return 0;
    case MVX_M_FOLLOWER_ENDED: {
        struct mvx_follower_ended *f = &m->u.follower_ended;
        FIELD("FollowerEnded.status", rd_opt_i64(r, &f->status));
        FIELD("FollowerEnded.signal", rd_opt_i64(r, &f->signal));
        return 0;
    }
    case MVX_M_STARTED:
        FIELD("Started.pid", rd_u64(r, &m->u.started.pid, "u64"));
        return 0;
    default:
        r->field = "frame";
        r->sp = 0;
        return fail(r, "unknown message type 0x%02x", m->type);
    }
}

int mvx_decode_body(const uint8_t *body, size_t len, struct mvx_msg *msgs, size_t cap, size_t *nmsgs,
                    struct mvx_arena *arena, char *err, size_t errlen)
{
    struct rd r;
    r.d = body;
    r.pos = 0;
    r.end = len;
    r.a = arena;
    r.field = "frame";
    r.sp = 0;
    r.err = err;
    r.errlen = errlen;
    *nmsgs = 0;
    if (err && errlen)
        err[0] = 0;
    if (len == 0) {
        if (err && errlen)
            snprintf(err, errlen, "frame: empty (a frame holds at least one message)");
        return MVX_E_PROTO;
    }
    if (len > MVX_MAX_FRAME) {
        if (err && errlen)
            snprintf(err, errlen, "frame: %zu bytes announced, over the %u-byte limit", len, MVX_MAX_FRAME);
        return MVX_E_PROTO;
    }
    while (r.pos < len) {
        if (*nmsgs >= cap) {
            if (err && errlen)
                snprintf(err, errlen, "frame: more than %zu messages", cap);
            return MVX_E_NOSPACE;
        }
        struct mvx_msg *m = &msgs[*nmsgs];
        memset(m, 0, sizeof *m);
        r.field = "frame";
        m->type = r.d[r.pos++];
        int e = rd_message(&r, m);
        if (e)
            return e;
        (*nmsgs)++;
    }
    return 0;
}

/* ---- encoding --------------------------------------------------------------------------------- */

struct wr {
    uint8_t *p;
    size_t cap, pos;
    int err;
};

static void put(struct wr *w, const void *src, size_t n)
{
    if (w->err)
        return;
    if (n > w->cap - w->pos) {
        w->err = MVX_E_NOSPACE;
        return;
    }
    if (n)
        memcpy(w->p + w->pos, src, n);
    w->pos += n;
}

static void put_u8(struct wr *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(w, b, 4);
}

static void put_u64(struct wr *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

static void put_bytes(struct wr *w, const struct mvx_str *s)
{
    put_u32(w, s->n);
    put(w, s->p, s->n);
}

static void put_str(struct wr *w, const struct mvx_str *s)
{
    if (!w->err && !utf8_ok(s->p, s->n))
        w->err = MVX_E_INVAL;
    put_bytes(w, s);
}

static void put_opt_i64(struct wr *w, const struct mvx_opt_i64 *v)
{
    if (v->present > 1)
        w->err = w->err ? w->err : MVX_E_INVAL;
    put_u8(w, v->present ? 1 : 0);
    if (v->present)
        put_u64(w, (uint64_t)v->v);
}

static void put_opt_str(struct wr *w, const struct mvx_opt_str *v)
{
    put_u8(w, v->present ? 1 : 0);
    if (v->present)
        put_str(w, &v->s);
}

static void inval(struct wr *w)
{
    if (!w->err)
        w->err = MVX_E_INVAL;
}

static void put_value(struct wr *w, const struct mvx_value *v, int depth)
{
    if (w->err)
        return;
    if (depth > MVX_MAX_DEPTH) {
        inval(w);
        return;
    }
    put_u8(w, v->tag);
    switch (v->tag) {
    case MVX_T_NONE:
    case MVX_T_FALSE:
    case MVX_T_TRUE:
        return;
    case MVX_T_I64:
        put_u64(w, (uint64_t)v->v.i);
        return;
    case MVX_T_U64:
        if (v->v.u < (1ull << 63))
            inval(w);
        put_u64(w, v->v.u);
        return;
    case MVX_T_ADDR:
        put_u64(w, v->v.u);
        return;
    case MVX_T_BIGINT:
        if (!bigint_canonical(v->v.raw, v->n))
            inval(w);
        put_u32(w, v->n);
        put(w, v->v.raw, v->n);
        return;
    case MVX_T_STR:
    case MVX_T_BYTES: {
        struct mvx_str s = {v->v.raw, v->n};
        if (v->tag == MVX_T_STR)
            put_str(w, &s);
        else
            put_bytes(w, &s);
        return;
    }
    case MVX_T_LIST:
    case MVX_T_TUPLE:
        put_u32(w, v->n);
        for (uint32_t i = 0; i < v->n; i++)
            put_value(w, &v->v.c.items[i], depth + 1);
        return;
    case MVX_T_DICT:
        put_u32(w, v->n);
        for (uint32_t i = 0; i < v->n; i++) {
            const struct mvx_value *it = &v->v.c.items[i];
            for (uint32_t j = 0; j < i; j++) /* distinct keys (quadratic: the encoder is for small dicts) */
                if (!bytes_cmp(v->v.c.items[j].key.p, v->v.c.items[j].key.n, it->key.p, it->key.n))
                    inval(w);
            put_str(w, &it->key);
            put_value(w, it, depth + 1);
        }
        return;
    case MVX_T_TIME:
        if (v->usec > 1)
            inval(w);
        put_u64(w, (uint64_t)v->v.time.sec);
        put_u64(w, (uint64_t)v->v.time.nsec);
        put_u8(w, v->usec);
        return;
    case MVX_T_SOCKADDR:
        if (!v->v.c.extra) {
            inval(w);
            return;
        }
        put_value(w, v->v.c.extra, depth + 1);
        put_u32(w, v->n);
        for (uint32_t i = 0; i < v->n; i++) {
            put_str(w, &v->v.c.items[i].key);
            put_value(w, &v->v.c.items[i], depth + 1);
        }
        return;
    case MVX_T_FLAGS: {
        const struct mvx_value *rest = v->v.c.extra;
        if (!rest || (rest->tag != MVX_T_I64 && rest->tag != MVX_T_U64 && rest->tag != MVX_T_BIGINT)) {
            inval(w);
            return;
        }
        put_u32(w, v->n);
        for (uint32_t i = 0; i < v->n; i++) {
            const struct mvx_value *it = &v->v.c.items[i];
            struct mvx_str s = {it->v.raw, it->n};
            if (it->tag != MVX_T_STR ||
                (i > 0 && bytes_cmp(v->v.c.items[i - 1].v.raw, v->v.c.items[i - 1].n, s.p, s.n) >= 0))
                inval(w);
            put_str(w, &s);
        }
        put_value(w, rest, depth + 1);
        return;
    }
    case MVX_T_IOVEC:
        put_u32(w, v->n);
        for (uint32_t i = 0; i < v->n; i++) {
            struct mvx_str s = {v->v.c.items[i].v.raw, v->v.c.items[i].n};
            put_bytes(w, &s);
        }
        return;
    case MVX_T_SET: {
        /* sorted by their encoded bytes, distinct: compared where they were just written */
        size_t last = 0, last_n = 0;
        put_u32(w, v->n);
        for (uint32_t i = 0; i < v->n; i++) {
            size_t start = w->pos;
            put_value(w, &v->v.c.items[i], depth + 1);
            if (w->err)
                return;
            if (i > 0 && bytes_cmp(w->p + start, w->pos - start, w->p + last, last_n) <= 0)
                inval(w);
            last = start;
            last_n = w->pos - start;
        }
        return;
    }
    default:
        inval(w);
        return;
    }
}

static void put_message(struct wr *w, const struct mvx_msg *m)
{
    put_u8(w, m->type);
    switch (m->type) {
    case MVX_M_HELLO:
        put_u32(w, m->u.hello.version);
        put_str(w, &m->u.hello.role);
        put_str(w, &m->u.hello.arch);
        put_str(w, &m->u.hello.policy);
        return;
    case MVX_M_CALL_RECORD: {
        const struct mvx_call_record *c = &m->u.call_record;
        put_u64(w, c->seq);
        put_str(w, &c->cls);
        put_value(w, &c->view, 0);
        put_opt_i64(w, &c->ret);
        put_u32(w, c->noutputs);
        for (uint32_t k = 0; k < c->noutputs; k++) {
            if (c->outputs[k].index > 255 || (k > 0 && c->outputs[k].index <= c->outputs[k - 1].index))
                inval(w);
            put_u32(w, c->outputs[k].index);
            put_value(w, &c->outputs[k].value, 1);
        }
        put_opt_str(w, &c->content);
        put_u8(w, c->has_clock ? 1 : 0);
        if (c->has_clock) {
            put_u64(w, (uint64_t)c->clock_sec);
            put_u64(w, (uint64_t)c->clock_nsec);
        }
        return;
    }
    case MVX_M_CHECK_REQUEST:
        put_u64(w, m->u.check_request.seq);
        put_value(w, &m->u.check_request.view, 0);
        put_opt_str(w, &m->u.check_request.content);
        return;
    case MVX_M_CHECKED:
        put_u64(w, m->u.checked.seq);
        return;
    case MVX_M_ACK:
        put_u64(w, m->u.ack.seq);
        return;
    case MVX_M_SIGNAL_BATCH: {
        const struct mvx_signal_batch *s = &m->u.signal_batch;
        put_u64(w, s->seq);
        put_str(w, &s->how);
        put_u32(w, s->nsigs);
        for (uint32_t k = 0; k < s->nsigs; k++) {
            put_u32(w, s->sigs[k].signo);
            put_bytes(w, &s->sigs[k].info);
        }
        return;
    }
    case MVX_M_END:
        put_u64(w, m->u.end.seq);
        put_opt_i64(w, &m->u.end.status);
        put_opt_i64(w, &m->u.end.signal);
        return;
    case MVX_M_STOP_SESSION:
        put_str(w, &m->u.stop_session.reason);
        return;
    case MVX_M_DIVERGENCE_REPORT: {
        const struct mvx_divergence_report *d = &m->u.divergence_report;
        put_str(w, &d->kind);
        put_u64(w, d->seq);
        put_str(w, &d->leader);
        put_str(w, &d->follower);
        put_str(w, &d->detail);
        put_str(w, &d->forensics);
        return;
    }
    case MVX_M_FOLLOWER_STOPPED:
        put_str(w, &m->u.follower_stopped.reason);
        return;
    case MVX_M_FOLLOWER_ENDED:
        put_opt_i64(w, &m->u.follower_ended.status);
        put_opt_i64(w, &m->u.follower_ended.signal);
        return;
    case MVX_M_STARTED:
        put_u64(w, m->u.started.pid);
        return;
    default:
        inval(w);
    }
}

long mvx_encode_value(uint8_t *out, size_t cap, const struct mvx_value *v)
{
    struct wr w = {out, cap, 0, 0};
    put_value(&w, v, 0);
    return w.err ? w.err : (long)w.pos;
}

long mvx_encode_msg(uint8_t *out, size_t cap, const struct mvx_msg *m)
{
    struct wr w = {out, cap, 0, 0};
    put_message(&w, m);
    return w.err ? w.err : (long)w.pos;
}

long mvx_encode_frame(uint8_t *out, size_t cap, const struct mvx_msg *msgs, size_t n)
{
    struct wr w = {out, cap, 0, 0};
    if (n == 0)
        return MVX_E_INVAL;
    put_u32(&w, 0);
    for (size_t i = 0; i < n && !w.err; i++)
        put_message(&w, &msgs[i]);
    if (w.err)
        return w.err;
    size_t body = w.pos - 4;
    if (body > MVX_MAX_FRAME)
        return MVX_E_TOOBIG;
    uint8_t b[4] = {(uint8_t)body, (uint8_t)(body >> 8), (uint8_t)(body >> 16), (uint8_t)(body >> 24)};
    memcpy(out, b, 4);
    return (long)w.pos;
}
