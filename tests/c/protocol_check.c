/* Test driver of the C protocol codec (mvx/mechanics/native/mvx_protocol.c), used by
 * tests/test_cprotocol.py. Reads frames (u32 length + body) from files or stdin: one frame per line
 * in hex (the default), or back to back in binary (-b). For each frame prints one line:
 *   ok <number of messages> <Type,Type,...>      decoded, and re-encoded byte for byte
 *   error <message>                             not a frame (the decoder's error string)
 *   mismatch <what>                             decoded, but the re-encoding differs (a bug)
 * With -v an "ok" line goes on with a tab and a dump of each message (tab-separated) in a plain
 * text form that tests/test_cprotocol.py renders from the Python decoder's messages too.
 * With -t it encodes messages built by hand, and trees that have no canonical encoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvx_protocol.h"

static int verbose;

static void q(const uint8_t *p, uint32_t n)
{
    putchar('"');
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            putchar(p[i]);
        else
            printf("\\x%02x", p[i]);
    }
    putchar('"');
}

static void qs(const struct mvx_str *s)
{
    q(s->p, s->n);
}

static void dump(const struct mvx_value *v)
{
    uint32_t i;
    switch (v->tag) {
    case MVX_T_NONE: printf("N"); break;
    case MVX_T_FALSE: printf("F"); break;
    case MVX_T_TRUE: printf("T"); break;
    case MVX_T_I64: printf("i%lld", (long long)v->v.i); break;
    case MVX_T_U64: printf("u%llu", (unsigned long long)v->v.u); break;
    case MVX_T_BIGINT:
        printf("big");
        for (i = 0; i < v->n; i++)
            printf("%02x", v->v.raw[i]);
        break;
    case MVX_T_STR: q(v->v.raw, v->n); break;
    case MVX_T_BYTES: putchar('b'); q(v->v.raw, v->n); break;
    case MVX_T_LIST:
    case MVX_T_TUPLE:
    case MVX_T_SET:
        printf(v->tag == MVX_T_LIST ? "[" : v->tag == MVX_T_TUPLE ? "(" : "set(");
        for (i = 0; i < v->n; i++) {
            if (i)
                putchar(',');
            dump(&v->v.c.items[i]);
        }
        printf(v->tag == MVX_T_LIST ? "]" : ")");
        break;
    case MVX_T_DICT:
        putchar('{');
        for (i = 0; i < v->n; i++) {
            if (i)
                putchar(',');
            qs(&v->v.c.items[i].key);
            putchar(':');
            dump(&v->v.c.items[i]);
        }
        putchar('}');
        break;
    case MVX_T_TIME:
        printf("time(%lld,%lld,%d)", (long long)v->v.time.sec, (long long)v->v.time.nsec, v->usec);
        break;
    case MVX_T_SOCKADDR:
        printf("sock(");
        dump(v->v.c.extra);
        putchar(';');
        for (i = 0; i < v->n; i++) {
            if (i)
                putchar(',');
            qs(&v->v.c.items[i].key);
            putchar('=');
            dump(&v->v.c.items[i]);
        }
        putchar(')');
        break;
    case MVX_T_FLAGS:
        printf("flags(");
        for (i = 0; i < v->n; i++) {
            dump(&v->v.c.items[i]);
            putchar(',');
        }
        putchar(';');
        dump(v->v.c.extra);
        putchar(')');
        break;
    case MVX_T_ADDR: printf("@%llu", (unsigned long long)v->v.u); break;
    case MVX_T_IOVEC:
        printf("iov(");
        for (i = 0; i < v->n; i++) {
            if (i)
                putchar(',');
            putchar('b');
            q(v->v.c.items[i].v.raw, v->v.c.items[i].n);
        }
        putchar(')');
        break;
    default: printf("?%d", v->tag);
    }
}

static void opt_i64(const char *name, const struct mvx_opt_i64 *o)
{
    if (o->present)
        printf(" %s=%lld", name, (long long)o->v);
    else
        printf(" %s=-", name);
}

static void opt_str(const char *name, const struct mvx_opt_str *o)
{
    printf(" %s=", name);
    if (o->present)
        qs(&o->s);
    else
        putchar('-');
}

static void field_str(const char *name, const struct mvx_str *s)
{
    printf(" %s=", name);
    qs(s);
}

static void dump_msg(const struct mvx_msg *m)
{
    printf("%s", mvx_msg_name(m->type));
    switch (m->type) {
    case MVX_M_HELLO:
        printf(" version=%u", m->u.hello.version);
        field_str("role", &m->u.hello.role);
        field_str("arch", &m->u.hello.arch);
        field_str("policy", &m->u.hello.policy);
        break;
    case MVX_M_CALL_RECORD: {
        const struct mvx_call_record *c = &m->u.call_record;
        printf(" seq=%llu", (unsigned long long)c->seq);
        field_str("cls", &c->cls);
        printf(" view=");
        dump(&c->view);
        opt_i64("ret", &c->ret);
        printf(" outputs={");
        for (uint32_t k = 0; k < c->noutputs; k++) {
            printf(k ? ",%u:" : "%u:", c->outputs[k].index);
            dump(&c->outputs[k].value);
        }
        printf("}");
        opt_str("content", &c->content);
        if (c->has_clock)
            printf(" clock=%lld,%lld", (long long)c->clock_sec, (long long)c->clock_nsec);
        else
            printf(" clock=-");
        break;
    }
    case MVX_M_CHECK_REQUEST:
        printf(" seq=%llu view=", (unsigned long long)m->u.check_request.seq);
        dump(&m->u.check_request.view);
        opt_str("content", &m->u.check_request.content);
        break;
    case MVX_M_CHECKED: printf(" seq=%llu", (unsigned long long)m->u.checked.seq); break;
    case MVX_M_ACK: printf(" seq=%llu", (unsigned long long)m->u.ack.seq); break;
    case MVX_M_SIGNAL_BATCH: {
        const struct mvx_signal_batch *s = &m->u.signal_batch;
        printf(" seq=%llu", (unsigned long long)s->seq);
        field_str("how", &s->how);
        printf(" sigs=[");
        for (uint32_t k = 0; k < s->nsigs; k++) {
            printf(k ? ",%u:b" : "%u:b", s->sigs[k].signo);
            qs(&s->sigs[k].info);
        }
        printf("]");
        break;
    }
    case MVX_M_END:
        printf(" seq=%llu", (unsigned long long)m->u.end.seq);
        opt_i64("status", &m->u.end.status);
        opt_i64("signal", &m->u.end.signal);
        break;
    case MVX_M_STOP_SESSION: field_str("reason", &m->u.stop_session.reason); break;
    case MVX_M_DIVERGENCE_REPORT: {
        const struct mvx_divergence_report *d = &m->u.divergence_report;
        field_str("kind", &d->kind);
        printf(" seq=%llu", (unsigned long long)d->seq);
        field_str("leader", &d->leader);
        field_str("follower", &d->follower);
        field_str("detail", &d->detail);
        field_str("forensics", &d->forensics);
        break;
    }
    case MVX_M_FOLLOWER_STOPPED: field_str("reason", &m->u.follower_stopped.reason); break;
    case MVX_M_FOLLOWER_ENDED:
        opt_i64("status", &m->u.follower_ended.status);
        opt_i64("signal", &m->u.follower_ended.signal);
        break;
    case MVX_M_STARTED: printf(" pid=%llu", (unsigned long long)m->u.started.pid); break;
    }
}

/* one whole frame: header + body */
static void check(const uint8_t *frame, size_t n)
{
    char err[4096];
    uint32_t len;
    if (n < 4) {
        printf("error frame: truncated header (%zu bytes)\n", n);
        return;
    }
    if (mvx_frame_length(frame, &len, err, sizeof err)) {
        printf("error %s\n", err);
        return;
    }
    if (len != n - 4) {
        printf("error frame: %u bytes announced, %zu there\n", len, n - 4);
        return;
    }
    size_t cap = mvx_decode_max_msgs(len);
    struct mvx_msg *msgs = malloc(cap * sizeof *msgs);
    struct mvx_arena arena = {malloc(mvx_decode_space(len)), mvx_decode_space(len), 0};
    uint8_t *out = malloc(n + 1);
    size_t nmsgs;
    if (!msgs || !arena.base || !out) {
        printf("mismatch out of memory\n");
        exit(2);
    }
    int rc = mvx_decode_body(frame + 4, len, msgs, cap, &nmsgs, &arena, err, sizeof err);
    if (rc) {
        printf(rc == MVX_E_PROTO ? "error %s\n" : "mismatch no space: %s\n", err);
    } else {
        long w = mvx_encode_frame(out, n, msgs, nmsgs);
        int same = w >= 0 && (size_t)w == n && !memcmp(out, frame, n);
        long short_w = mvx_encode_frame(out, n - 1, msgs, nmsgs); /* one byte short */
        if (w < 0)
            printf("mismatch encode error %ld\n", w);
        else if (!same)
            printf("mismatch re-encoded %ld bytes, not the %zu read\n", w, n);
        else if (short_w != MVX_E_NOSPACE)
            printf("mismatch a buffer one byte short gave %ld\n", short_w);
        else {
            printf("ok %zu ", nmsgs);
            for (size_t i = 0; i < nmsgs; i++)
                printf(i ? ",%s" : "%s", mvx_msg_name(msgs[i].type));
            if (verbose)
                for (size_t i = 0; i < nmsgs; i++) {
                    putchar('\t');
                    dump_msg(&msgs[i]);
                }
            putchar('\n');
        }
    }
    free(msgs);
    free(arena.base);
    free(out);
}

static uint8_t *slurp(FILE *f, size_t *n)
{
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (!buf) {
        fprintf(stderr, "protocol_check: out of memory\n");
        exit(2);
    }
    *n = len;
    return buf;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void run(FILE *f, int binary)
{
    size_t n;
    uint8_t *data = slurp(f, &n);
    if (binary) {
        size_t pos = 0;
        while (pos < n) {
            uint32_t len;
            char err[256];
            if (n - pos < 4 || (!mvx_frame_length(data + pos, &len, err, sizeof err) && n - pos - 4 < len)) {
                printf("error frame: truncated frame\n");
                break;
            }
            if (mvx_frame_length(data + pos, &len, err, sizeof err)) {
                printf("error %s\n", err);
                break;
            }
            check(data + pos, 4 + (size_t)len);
            pos += 4 + (size_t)len;
        }
    } else {
        size_t start = 0;
        while (start < n) {
            size_t end = start;
            while (end < n && data[end] != '\n')
                end++;
            size_t k = 0, bad = 0;
            for (size_t i = start; i + 1 < end + 1 && i < end; i += 2) {
                int hi = hexval(data[i]), lo = i + 1 < end ? hexval(data[i + 1]) : -1;
                if (hi < 0 || lo < 0) {
                    bad = 1;
                    break;
                }
                data[start + k++] = (uint8_t)(hi << 4 | lo); /* in place: the line is read ahead */
            }
            if (bad)
                printf("error input: a line that is not hex\n");
            else if (end > start)
                check(data + start, k);
            start = end + 1;
        }
    }
    free(data);
    fflush(stdout);
}

/* -t: messages built by hand (not decoded), encoded; and trees with no canonical encoding */
#define S(lit) ((struct mvx_str){(const uint8_t *)(lit), sizeof(lit) - 1})

static void hexline(const char *what, const uint8_t *p, long n)
{
    printf("%s ", what);
    if (n < 0)
        printf("%ld", n);
    for (long i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('\n');
}

static void self_test(void)
{
    uint8_t out[512];
    struct mvx_value args[3], view[2], out1, bad[4], inner[2];
    memset(args, 0, sizeof args);
    memset(view, 0, sizeof view);
    memset(&out1, 0, sizeof out1);
    args[0].tag = MVX_T_I64, args[0].v.i = 5;
    args[1].tag = MVX_T_NONE;
    args[2].tag = MVX_T_I64, args[2].v.i = 4096;
    view[0].tag = MVX_T_STR, view[0].v.raw = (const uint8_t *)"read", view[0].n = 4;
    view[1].tag = MVX_T_LIST, view[1].n = 3, view[1].v.c.items = args;
    struct mvx_output outputs[1] = {{1, {0}}};
    outputs[0].value.tag = MVX_T_BYTES, outputs[0].value.v.raw = (const uint8_t *)"GET", outputs[0].value.n = 3;
    struct mvx_msg m[3];
    memset(m, 0, sizeof m);
    m[0].type = MVX_M_ACK, m[0].u.ack.seq = 0x0102;
    m[1].type = MVX_M_CALL_RECORD;
    struct mvx_call_record *c = &m[1].u.call_record;
    c->seq = 5, c->cls = S("replicated");
    c->view.tag = MVX_T_LIST, c->view.n = 2, c->view.v.c.items = view;
    c->ret.present = 1, c->ret.v = 13;
    c->noutputs = 1, c->outputs = outputs;
    c->has_clock = 1, c->clock_sec = 5, c->clock_nsec = 6;
    m[2].type = MVX_M_FOLLOWER_ENDED, m[2].u.follower_ended.status.present = 1;
    long n = mvx_encode_frame(out, sizeof out, m, 3);
    hexline("frame", out, n);
    hexline("nospace", out, mvx_encode_frame(out, (size_t)n - 1, m, 3));
    hexline("empty", out, mvx_encode_frame(out, sizeof out, m, 0));

    /* each of these has no canonical encoding: MVX_E_INVAL */
    memset(bad, 0, sizeof bad);
    memset(inner, 0, sizeof inner);
    bad[0].tag = MVX_T_U64, bad[0].v.u = 7;
    hexline("u64-small", out, mvx_encode_value(out, sizeof out, &bad[0]));
    bad[0].tag = MVX_T_BIGINT, bad[0].v.raw = (const uint8_t *)"\x05\x00", bad[0].n = 2;
    hexline("bigint-small", out, mvx_encode_value(out, sizeof out, &bad[0]));
    inner[0].tag = inner[1].tag = MVX_T_STR;
    inner[0].v.raw = (const uint8_t *)"b", inner[1].v.raw = (const uint8_t *)"a";
    inner[0].n = inner[1].n = 1;
    bad[1].tag = MVX_T_I64;
    bad[0].tag = MVX_T_FLAGS, bad[0].n = 2, bad[0].v.c.items = inner, bad[0].v.c.extra = &bad[1];
    hexline("flags-unsorted", out, mvx_encode_value(out, sizeof out, &bad[0]));
    bad[0].tag = MVX_T_SET;
    hexline("set-unsorted", out, mvx_encode_value(out, sizeof out, &bad[0]));
    inner[0].v.raw = (const uint8_t *)"a";
    hexline("set-repeated", out, mvx_encode_value(out, sizeof out, &bad[0]));
    inner[0].v.raw = (const uint8_t *)"\xff";
    hexline("str-not-utf8", out, mvx_encode_value(out, sizeof out, &inner[0]));
    struct mvx_value deep[34];
    memset(deep, 0, sizeof deep);
    for (int i = 0; i < 33; i++)
        deep[i].tag = MVX_T_LIST, deep[i].n = 1, deep[i].v.c.items = &deep[i + 1];
    hexline("deep-33", out, mvx_encode_value(out, sizeof out, &deep[0]));
    hexline("deep-32", out, mvx_encode_value(out, sizeof out, &deep[1]));
    outputs[0].index = 256;
    hexline("output-256", out, mvx_encode_msg(out, sizeof out, &m[1]));
    m[0].type = 13;
    hexline("type-13", out, mvx_encode_msg(out, sizeof out, &m[0]));
}

int main(int argc, char **argv)
{
    int binary = 0, files = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-b"))
            binary = 1;
        else if (!strcmp(argv[i], "-t")) {
            self_test();
            return 0;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1])
            continue;
        FILE *f = strcmp(argv[i], "-") ? fopen(argv[i], "rb") : stdin;
        if (!f) {
            perror(argv[i]);
            return 2;
        }
        run(f, binary);
        if (f != stdin)
            fclose(f);
        files++;
    }
    if (!files)
        run(stdin, binary);
    return 0;
}
