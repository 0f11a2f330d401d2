/* `mvx trace` in the C loop: the hot calls it carries, rendered as mvx.isa.render renders them
 * (strace-like, one line each), into a buffer written to the trace's file when it fills and before
 * every line Python writes (tests/test_trace_cli.py compares the two). Included by mvx_fast.c. */
#include <stdarg.h>

static void tr_put(struct wbuf *w, const char *s) { wb_put(w, s, strlen(s)); }

static void tr_fmt(struct wbuf *w, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        wb_put(w, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* A quoted C-like string: \n \t \r \v \f \" \\, printable bytes as they are, others \xHH; `...`
 * after the quote when longer than 32 bytes (render.escape). */
static void tr_escape(struct wbuf *w, const uint8_t *p, size_t n) {
    char out[32 * 4 + 8];
    size_t k = 0;
    out[k++] = '"';
    for (size_t i = 0; i < n && i < 32; i++) {
        uint8_t b = p[i];
        const char *e = b == '\n' ? "\\n" : b == '\t' ? "\\t" : b == '\r' ? "\\r" : b == '\v' ? "\\v" : b == '\f' ? "\\f"
                        : b == '"' ? "\\\"" : b == '\\' ? "\\\\" : NULL;
        if (e) {
            out[k++] = e[0];
            out[k++] = e[1];
        } else if (b >= 0x20 && b < 0x7f) {
            out[k++] = (char)b;
        } else {
            k += (size_t)snprintf(out + k, 5, "\\x%02x", b);
        }
    }
    out[k++] = '"';
    wb_put(w, out, k);
    if (n > 32)
        tr_put(w, "...");
}

static void tr_addr(struct wbuf *w, unsigned long long a) {
    if (a)
        tr_fmt(w, "0x%llx", a);
    else
        tr_put(w, "NULL");
}

/* ` = ret`, or ` = -1 ENAME (its text)` */
static void tr_ret(struct wbuf *w, long long ret) {
    if (ret < 0 && ret > -4096) {
        const char *name = strerrorname_np((int)-ret);
        char num[16];
        if (!name) {
            snprintf(num, sizeof num, "E%lld", -ret);
            name = num;
        }
        tr_fmt(w, ") = -1 %s (%s)\n", name, strerror((int)-ret));
    } else {
        tr_fmt(w, ") = %lld\n", ret);
    }
}

/* Flag names in the order of their values, or "0" (render._flags) */
static void tr_bits(struct wbuf *w, uint32_t bits, const uint32_t *vals, const char *const *names, int n) {
    int any = 0;
    for (int i = 0; i < n; i++)
        if (bits & vals[i]) {
            if (any++)
                tr_put(w, "|");
            tr_put(w, names[i]);
            bits &= ~vals[i];
        }
    if (bits)
        tr_fmt(w, any ? "|0x%x" : "0x%x", bits);
    else if (!any)
        tr_put(w, "0");
}

static void tr_epoll_events(struct wbuf *w, struct mvx_fast *f, int isa, uint32_t events) {
    int any = 0;
    for (int b = 0; b < 32; b++)
        if ((events & (1u << b)) && f->epname[isa][b]) {
            if (any++)
                tr_put(w, "|");
            tr_put(w, f->epname[isa][b]);
            events &= ~(1u << b);
        }
    if (events)
        tr_fmt(w, any ? "|0x%x" : "0x%x", events);
    else if (!any)
        tr_put(w, "0");
}

static void tr_event(struct wbuf *w, struct mvx_fast *f, int isa, uint32_t events, uint64_t data) {
    tr_put(w, "{events=");
    tr_epoll_events(w, f, isa, events);
    tr_put(w, ", data=");
    tr_addr(w, data);
    tr_put(w, "}");
}

/* Does the trace render this hot call here (else Python does, before anything is made)? */
static int trace_renders(int hot) {
    return hot == MVX_HOT_READ || hot == MVX_HOT_RECVFROM || hot == MVX_HOT_WRITE || hot == MVX_HOT_WRITEV ||
           hot == MVX_HOT_PREAD || hot == MVX_HOT_SHUTDOWN || hot == MVX_HOT_EPOLL_WAIT || hot == MVX_HOT_EPOLL_PWAIT ||
           hot == MVX_HOT_ACCEPT4 || hot == MVX_HOT_CLOSE || hot == MVX_HOT_EPOLL_CTL || hot == MVX_HOT_SENDFILE ||
           hot == MVX_HOT_SENDFILE64 || hot == MVX_HOT_SETSOCKOPT;
}

static void trace_flush(struct mvx_fast *f) {
    struct wbuf *w = &f->trace;
    size_t at = 0;
    while (at < w->n) {
        ssize_t n = write(f->trace_fd, w->p + at, w->n - at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* (a trace file that cannot be written: the lines are lost, the program runs on) */
        at += (size_t)n;
    }
    w->n = 0;
    w->oom = 0;
}

/* The line of a hot call the loop made or let run: `got` the bytes it read (reads, epoll events in
 * the variant's layout). */
static void trace_line(struct mvx_fast *f, const struct hot_call *c, long long ret, const uint8_t *got) {
    static const uint32_t recv_vals[] = {MSG_TRUNC, MSG_DONTWAIT, MSG_NOSIGNAL};
    static const char *const recv_names[] = {"MSG_TRUNC", "MSG_DONTWAIT", "MSG_NOSIGNAL"};
    static const uint32_t sock_vals[] = {ACCEPT_NONBLOCK, ACCEPT_CLOEXEC};
    static const char *const sock_names[] = {"SOCK_NONBLOCK", "SOCK_CLOEXEC"};
    struct wbuf *w = &f->trace;
    tr_put(w, c->name);
    tr_put(w, "(");
    switch (c->hot) {
    case MVX_HOT_READ:
    case MVX_HOT_RECVFROM:
    case MVX_HOT_PREAD:
        tr_fmt(w, "%d, ", c->fd);
        if (ret >= 0)
            tr_escape(w, got, read_bytes(c, ret));
        else
            tr_addr(w, c->a[1]);
        tr_fmt(w, ", %llu", (unsigned long long)c->count);
        if (c->hot == MVX_HOT_PREAD)
            tr_fmt(w, ", %lld", (long long)c->offset);
        if (c->hot == MVX_HOT_RECVFROM) {
            tr_put(w, ", ");
            tr_bits(w, c->flags, recv_vals, recv_names, 3);
            tr_put(w, ", NULL, NULL");
        }
        break;
    case MVX_HOT_WRITE:
        tr_fmt(w, "%d, ", c->fd);
        tr_escape(w, c->out, c->outlen);
        tr_fmt(w, ", %llu", (unsigned long long)c->count);
        break;
    case MVX_HOT_WRITEV: {
        tr_fmt(w, "%d, [", c->fd);
        size_t at = 0;
        for (int i = 0; i < f->iovn; i++) {
            tr_put(w, i ? ", {iov_base=" : "{iov_base=");
            tr_escape(w, c->out + at, f->iov_len[i]);
            tr_fmt(w, ", iov_len=%zu}", f->iov_len[i]);
            at += f->iov_len[i];
        }
        tr_fmt(w, "], %llu", (unsigned long long)c->count);
        break;
    }
    case MVX_HOT_SHUTDOWN:
        tr_fmt(w, "%d, %s", c->fd, SHUT_NAMES[c->how]);
        break;
    case MVX_HOT_SENDFILE: /* (out_fd, in_fd, [offset => the offset it left], count) */
    case MVX_HOT_SENDFILE64:
        if (ret >= 0 && c->off_after != c->offset)
            tr_fmt(w, "%d, %d, [%lld => %lld], %llu", c->fd, c->in_fd, (long long)c->offset, (long long)c->off_after,
                   (unsigned long long)c->count);
        else
            tr_fmt(w, "%d, %d, [%lld], %llu", c->fd, c->in_fd, (long long)c->offset, (unsigned long long)c->count);
        break;
    case MVX_HOT_SETSOCKOPT:
        tr_fmt(w, "%d, %s, %s, ", c->fd, SOCKOPTS[c->sockopt].level_name, SOCKOPTS[c->sockopt].name);
        if (c->out)
            tr_escape(w, c->out, c->outlen);
        else
            tr_put(w, "NULL");
        tr_fmt(w, ", %llu", (unsigned long long)c->count);
        break;
    case MVX_HOT_CLOSE:
        tr_fmt(w, "%d", c->fd);
        break;
    case MVX_HOT_EPOLL_CTL:
        tr_fmt(w, "%d, %s, %d, ", c->fd, EPOLL_OPS[c->op], c->target);
        if (c->has_event)
            tr_event(w, f, c->isa, c->events, c->data);
        else
            tr_addr(w, c->a[3]);
        break;
    case MVX_HOT_EPOLL_WAIT:
    case MVX_HOT_EPOLL_PWAIT:
        tr_fmt(w, "%d, ", c->fd);
        if (ret >= 0) {
            int size = f->ep_size[c->isa], off = f->ep_data_off[c->isa];
            tr_put(w, "[");
            for (long long i = 0; i < ret; i++) {
                uint32_t events;
                uint64_t data;
                memcpy(&events, got + i * size, 4);
                memcpy(&data, got + i * size + off, 8);
                if (i)
                    tr_put(w, ", ");
                tr_event(w, f, c->isa, events, data);
            }
            tr_put(w, "]");
        } else {
            tr_addr(w, c->a[1]);
        }
        tr_fmt(w, ", %d, %d, NULL, 8", c->maxevents, c->timeout);
        break;
    case MVX_HOT_ACCEPT4:
        tr_fmt(w, "%d, ", c->fd);
        if (ret >= 0 && c->a[1]) {
            char text[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &c->peer.sin_addr, text, sizeof text);
            tr_fmt(w, "{sa_family=AF_INET, sin_port=htons(%u), sin_addr=inet_addr(\"%s\")}", ntohs(c->peer.sin_port), text);
        } else {
            tr_addr(w, c->a[1]);
        }
        tr_put(w, ", ");
        if (!c->a[2])
            tr_put(w, "NULL");
        else if (ret >= 0 && c->a[1] && c->room != (int)sizeof c->peer)
            tr_fmt(w, "[%d => %d]", c->room, (int)sizeof c->peer);
        else
            tr_fmt(w, "[%d]", c->room);
        tr_put(w, ", ");
        tr_bits(w, c->flags, sock_vals, sock_names, 2);
        break;
    }
    tr_ret(w, ret);
    if (w->n >= 64 * 1024)
        trace_flush(f);
}

/* A local call in the trace, stopped by the filter or ptrace (close, epoll_ctl): made in the
 * variant, its result read at the exit stop, then rendered. FAST_* */
static int trace_local(struct mvx_fast *f, struct mvx_event *ev, struct hot_call *c) {
    if (ev->kind == MVX_EV_NOTIFY || (c->hot == MVX_HOT_CLOSE && !close_ok(f, c)))
        return FAST_PYTHON;
    int r = run_to_exit(f, ev, c);
    if (r != 1)
        return r;
    long long ret = ev->ret;
    if (ret == -512 || ret == -513 || ret == -514 || ret == -516)
        return mvx_resume(f->t, MVX_RESUME_RUN) < 0 ? -1 : FAST_DONE; /* made again */
    if (c->hot == MVX_HOT_CLOSE)
        forget_closed(f, c->fd);
    else if (ret == 0)
        track_epoll_ctl(f, c);
    trace_line(f, c, ret, NULL);
    f->handled++;
    return mvx_resume(f->t, MVX_RESUME_RUN) < 0 ? -1 : FAST_DONE;
}

/* mvx trace: the lines go to fd (the trace's file; -1: not a trace) */
void mvx_fast_set_trace(struct mvx_fast *f, int fd) { f->trace_fd = fd; }
void mvx_fast_trace_flush(struct mvx_fast *f) {
    if (f->trace_fd >= 0)
        trace_flush(f);
}
