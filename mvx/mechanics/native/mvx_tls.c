/* Mutual TLS 1.3 for the two-node channel, in C, so that the fast path sends and receives frames
 * on a TLS channel as it does on a plain one (mvx_chan: the same locks and buffers).
 *
 * OpenSSL (libssl.so.3, the library Python's own ssl module loads) is looked up at run time, as
 * libxxhash is: no headers are needed to build, and without it a channel over the network cannot
 * start (one line). The SSL object runs over two memory BIOs: trio drives the handshake and the
 * hellos (mvx.runtime.tls: bytes fed in, bytes taken out), then the channel's C side seals and
 * opens frames with the same object. One lock orders every use of the object: the pump or the
 * monitor thread opening what came in, any thread sealing a frame. The bytes go to the socket
 * outside that lock, so a peer that stops reading cannot stall our reader. */

#include <dlfcn.h>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;
typedef struct x509_st X509;
typedef struct X509_name_st X509_NAME;
typedef struct x509_store_st X509_STORE;

#define TLS_CTRL_SET_MIN_PROTO_VERSION 123
#define TLS_1_3_VERSION 0x0304
#define TLS_VERIFY_PEER 0x01
#define TLS_VERIFY_FAIL_IF_NO_PEER_CERT 0x02
#define TLS_FILETYPE_PEM 1
#define TLS_ERROR_SSL 1
#define TLS_ERROR_WANT_READ 2
#define TLS_ERROR_WANT_WRITE 3
#define TLS_ERROR_SYSCALL 5
#define TLS_ERROR_ZERO_RETURN 6
#define TLS_BIO_CTRL_PENDING 10
#define TLS_BIO_SET_MEM_EOF_RETURN 130
#define TLS_NID_COMMON_NAME 13
#define TLS_V_FLAG_CRL_CHECK 0x4

static struct {
    const SSL_METHOD *(*TLS_method)(void);
    SSL_CTX *(*SSL_CTX_new)(const SSL_METHOD *);
    void (*SSL_CTX_free)(SSL_CTX *);
    long (*SSL_CTX_ctrl)(SSL_CTX *, int, long, void *);
    void (*SSL_CTX_set_verify)(SSL_CTX *, int, void *);
    int (*SSL_CTX_load_verify_locations)(SSL_CTX *, const char *, const char *);
    int (*SSL_CTX_use_certificate_chain_file)(SSL_CTX *, const char *);
    int (*SSL_CTX_use_PrivateKey_file)(SSL_CTX *, const char *, int);
    int (*SSL_CTX_check_private_key)(const SSL_CTX *);
    int (*SSL_CTX_set_num_tickets)(SSL_CTX *, size_t);
    SSL *(*SSL_new)(SSL_CTX *);
    void (*SSL_free)(SSL *);
    void (*SSL_set_bio)(SSL *, BIO *, BIO *);
    void (*SSL_set_accept_state)(SSL *);
    void (*SSL_set_connect_state)(SSL *);
    int (*SSL_do_handshake)(SSL *);
    int (*SSL_read)(SSL *, void *, int);
    int (*SSL_write)(SSL *, const void *, int);
    int (*SSL_get_error)(const SSL *, int);
    int (*SSL_shutdown)(SSL *);
    long (*SSL_get_verify_result)(const SSL *);
    X509 *(*SSL_get1_peer_certificate)(const SSL *);
    BIO *(*BIO_new)(const BIO_METHOD *);
    const BIO_METHOD *(*BIO_s_mem)(void);
    int (*BIO_read)(BIO *, void *, int);
    int (*BIO_write)(BIO *, const void *, int);
    long (*BIO_ctrl)(BIO *, int, long, void *);
    unsigned long (*ERR_get_error)(void);
    void (*ERR_clear_error)(void);
    const char *(*ERR_reason_error_string)(unsigned long);
    X509_NAME *(*X509_get_subject_name)(const X509 *);
    int (*X509_NAME_get_text_by_NID)(X509_NAME *, int, char *, int);
    void (*X509_free)(X509 *);
    const char *(*X509_verify_cert_error_string)(long);
    X509_STORE *(*SSL_CTX_get_cert_store)(const SSL_CTX *);
    int (*X509_STORE_load_file)(X509_STORE *, const char *);
    int (*X509_STORE_set_flags)(X509_STORE *, unsigned long);
} ossl;
static int ossl_ok = -1; /* -1: not looked up yet; 0: missing (ossl_missing says what) */
static char ossl_missing[96];
static pthread_once_t ossl_once = PTHREAD_ONCE_INIT;

static void ossl_load(void) {
    static const char *const libs[][2] = {{"libssl.so.3", "libcrypto.so.3"}, {"libssl.so", "libcrypto.so"}};
    void *ssl = NULL, *crypto = NULL;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0] && !ssl; i++) {
        ssl = dlopen(libs[i][0], RTLD_NOW | RTLD_LOCAL);
        crypto = ssl ? dlopen(libs[i][1], RTLD_NOW | RTLD_LOCAL) : NULL;
        if (ssl && !crypto) {
            dlclose(ssl);
            ssl = NULL;
        }
    }
    if (!ssl) {
        snprintf(ossl_missing, sizeof ossl_missing, "OpenSSL 3 (libssl.so.3) is not installed");
        ossl_ok = 0;
        return;
    }
#define SYM(lib, name)                                                                             \
    if (!(*(void **)&ossl.name = dlsym(lib, #name))) {                                             \
        snprintf(ossl_missing, sizeof ossl_missing, "OpenSSL has no %s (OpenSSL 3 is needed)", #name); \
        ossl_ok = 0;                                                                               \
        return;                                                                                    \
    }
    SYM(ssl, TLS_method) SYM(ssl, SSL_CTX_new) SYM(ssl, SSL_CTX_free) SYM(ssl, SSL_CTX_ctrl)
    SYM(ssl, SSL_CTX_set_verify) SYM(ssl, SSL_CTX_load_verify_locations)
    SYM(ssl, SSL_CTX_use_certificate_chain_file) SYM(ssl, SSL_CTX_use_PrivateKey_file)
    SYM(ssl, SSL_CTX_check_private_key) SYM(ssl, SSL_CTX_set_num_tickets) SYM(ssl, SSL_new)
    SYM(ssl, SSL_free) SYM(ssl, SSL_set_bio) SYM(ssl, SSL_set_accept_state) SYM(ssl, SSL_set_connect_state)
    SYM(ssl, SSL_do_handshake) SYM(ssl, SSL_read) SYM(ssl, SSL_write) SYM(ssl, SSL_get_error)
    SYM(ssl, SSL_shutdown) SYM(ssl, SSL_get_verify_result) SYM(ssl, SSL_get1_peer_certificate)
    SYM(crypto, BIO_new) SYM(crypto, BIO_s_mem) SYM(crypto, BIO_read) SYM(crypto, BIO_write)
    SYM(crypto, BIO_ctrl) SYM(crypto, ERR_get_error) SYM(crypto, ERR_clear_error)
    SYM(crypto, ERR_reason_error_string) SYM(crypto, X509_get_subject_name)
    SYM(crypto, X509_NAME_get_text_by_NID) SYM(crypto, X509_free) SYM(crypto, X509_verify_cert_error_string)
    SYM(ssl, SSL_CTX_get_cert_store) SYM(crypto, X509_STORE_load_file) SYM(crypto, X509_STORE_set_flags)
#undef SYM
    ossl_ok = 1;
}

static int ossl_ready(char *err, size_t errlen) {
    pthread_once(&ossl_once, ossl_load);
    if (!ossl_ok && err)
        snprintf(err, errlen, "%s", ossl_missing);
    return ossl_ok;
}

/* 1 when OpenSSL can be used (`mvx doctor`), else 0 with why in err. */
int mvx_tls_available(char *err, size_t errlen) { return ossl_ready(err, errlen); }

/* The reason of OpenSSL's last error on this thread ("certificate verify failed"), and the queue
 * emptied; `otherwise` when it has none. */
static void ossl_reason(char *out, size_t cap, const char *otherwise) {
    unsigned long e, last = 0;
    while ((e = ossl.ERR_get_error()))
        last = e;
    const char *why = last ? ossl.ERR_reason_error_string(last) : NULL;
    snprintf(out, cap, "%s", why ? why : otherwise);
}

/* ---- a node's keys: the context every connection of the node is made from ---- */

struct mvx_tls_ctx {
    SSL_CTX *ctx;
    int server;
};

struct mvx_tls_ctx *mvx_tls_ctx_new(const char *ca, const char *cert, const char *key, const char *crl,
                                    int server, char *err, size_t errlen) {
    if (!ossl_ready(err, errlen))
        return NULL;
    ossl.ERR_clear_error();
    SSL_CTX *ctx = ossl.SSL_CTX_new(ossl.TLS_method());
    if (!ctx) {
        ossl_reason(err, errlen, "out of memory");
        return NULL;
    }
    const char *step = NULL;
    if (ossl.SSL_CTX_ctrl(ctx, TLS_CTRL_SET_MIN_PROTO_VERSION, TLS_1_3_VERSION, NULL) != 1)
        step = "TLS 1.3";
    else if (ossl.SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        step = ca;
    else if (ossl.SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        step = cert;
    else if (ossl.SSL_CTX_use_PrivateKey_file(ctx, key, TLS_FILETYPE_PEM) != 1)
        step = key;
    else if (ossl.SSL_CTX_check_private_key(ctx) != 1)
        step = key;
    else if (crl && *crl) { /* revoked certificates: every peer's is checked against the CA's list */
        X509_STORE *store = ossl.SSL_CTX_get_cert_store(ctx);
        if (ossl.X509_STORE_load_file(store, crl) != 1 || ossl.X509_STORE_set_flags(store, TLS_V_FLAG_CRL_CHECK) != 1)
            step = crl;
    }
    if (step) {
        char why[120];
        ossl_reason(why, sizeof why, "cannot be loaded");
        snprintf(err, errlen, "%s: %s", step, why);
        ossl.SSL_CTX_free(ctx);
        return NULL;
    }
    /* the peer must show a certificate of our CA; its role (CN) is checked after the handshake */
    ossl.SSL_CTX_set_verify(ctx, TLS_VERIFY_PEER | TLS_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    ossl.SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: nothing sent after the handshake */
    struct mvx_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        ossl.SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->ctx = ctx;
    c->server = server;
    return c;
}

void mvx_tls_ctx_free(struct mvx_tls_ctx *c) {
    if (!c)
        return;
    ossl.SSL_CTX_free(c->ctx); /* each connection holds its own reference */
    free(c);
}

/* ---- one connection ---- */

struct mvx_tls {
    pthread_mutex_t lock;
    SSL *ssl;
    BIO *in, *out; /* owned by ssl */
    int eof;       /* the peer's end of the byte stream was fed */
    char err[200];
};

struct mvx_tls *mvx_tls_new(struct mvx_tls_ctx *c) {
    struct mvx_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    ossl.ERR_clear_error();
    t->ssl = ossl.SSL_new(c->ctx);
    t->in = ossl.BIO_new(ossl.BIO_s_mem());
    t->out = ossl.BIO_new(ossl.BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        /* (a BIO not yet given to the SSL object is leaked on this out-of-memory path) */
        if (t->ssl)
            ossl.SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    ossl.BIO_ctrl(t->in, TLS_BIO_SET_MEM_EOF_RETURN, -1, NULL); /* empty: "retry", not the end */
    ossl.SSL_set_bio(t->ssl, t->in, t->out);
    if (c->server)
        ossl.SSL_set_accept_state(t->ssl);
    else
        ossl.SSL_set_connect_state(t->ssl);
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void mvx_tls_free(struct mvx_tls *t) {
    if (!t)
        return;
    ossl.SSL_free(t->ssl);
    free(t);
}

const char *mvx_tls_error(struct mvx_tls *t) { return t->err; }

/* Why an SSL call failed, in t->err: -EPROTO. */
static int tls_failed(struct mvx_tls *t, int ret, int handshake) {
    int e = ossl.SSL_get_error(t->ssl, ret);
    long verify = ossl.SSL_get_verify_result(t->ssl);
    char why[120];
    ossl_reason(why, sizeof why, "");
    if (verify != 0)
        snprintf(t->err, sizeof t->err, "peer certificate not trusted (%s)", ossl.X509_verify_cert_error_string(verify));
    else if (t->eof && (e == TLS_ERROR_SYSCALL || strstr(why, "eof")))
        snprintf(t->err, sizeof t->err, "%s", handshake ? "peer closed the connection (it may not trust our certificate)"
                                                          : "connection closed abruptly (no close_notify)");
    else
        snprintf(t->err, sizeof t->err, "%s", why[0] ? why : "protocol error");
    return -EPROTO;
}

/* Bytes from the peer (len 0: the peer's end of the stream). 0, or -ENOMEM. */
static int tls_feed_locked(struct mvx_tls *t, const void *data, size_t len) {
    if (!len) {
        t->eof = 1;
        ossl.BIO_ctrl(t->in, TLS_BIO_SET_MEM_EOF_RETURN, 0, NULL);
        return 0;
    }
    return ossl.BIO_write(t->in, data, (int)len) == (int)len ? 0 : -ENOMEM;
}

int mvx_tls_feed(struct mvx_tls *t, const void *data, size_t len) {
    pthread_mutex_lock(&t->lock);
    int r = tls_feed_locked(t, data, len);
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* 1: done; 0: it needs the peer's next bytes (after ours, mvx_tls_take, are sent); -EPROTO. */
int mvx_tls_handshake(struct mvx_tls *t) {
    pthread_mutex_lock(&t->lock);
    ossl.ERR_clear_error();
    int r = ossl.SSL_do_handshake(t->ssl);
    if (r != 1)
        r = ossl.SSL_get_error(t->ssl, r) == TLS_ERROR_WANT_READ && !t->eof ? 0 : tls_failed(t, r, 1);
    pthread_mutex_unlock(&t->lock);
    return r;
}

size_t mvx_tls_pending(struct mvx_tls *t) {
    pthread_mutex_lock(&t->lock);
    long n = ossl.BIO_ctrl(t->out, TLS_BIO_CTRL_PENDING, 0, NULL);
    pthread_mutex_unlock(&t->lock);
    return n > 0 ? (size_t)n : 0;
}

/* Up to `cap` bytes for the peer; how many. */
size_t mvx_tls_take(struct mvx_tls *t, void *buf, size_t cap) {
    pthread_mutex_lock(&t->lock);
    int n = cap ? ossl.BIO_read(t->out, buf, cap > INT32_MAX ? INT32_MAX : (int)cap) : 0;
    pthread_mutex_unlock(&t->lock);
    return n > 0 ? (size_t)n : 0;
}

static int tls_write_locked(struct mvx_tls *t, const void *data, size_t len) {
    ossl.ERR_clear_error();
    while (len) {
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int r = ossl.SSL_write(t->ssl, data, chunk);
        if (r <= 0)
            return tls_failed(t, r, 0);
        data = (const uint8_t *)data + r;
        len -= (size_t)r;
    }
    return 0;
}

/* Seal `len` bytes (they wait in the object for mvx_tls_take): 0 or -EPROTO. */
int mvx_tls_write(struct mvx_tls *t, const void *data, size_t len) {
    pthread_mutex_lock(&t->lock);
    int r = tls_write_locked(t, data, len);
    pthread_mutex_unlock(&t->lock);
    return r;
}

static int tls_read_locked(struct mvx_tls *t, void *buf, size_t cap) {
    ossl.ERR_clear_error();
    int r = ossl.SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (r > 0)
        return r;
    int e = ossl.SSL_get_error(t->ssl, r);
    if (e == TLS_ERROR_ZERO_RETURN)
        return 0;
    if (e == TLS_ERROR_WANT_READ && !t->eof)
        return -EAGAIN;
    if (t->eof && (e == TLS_ERROR_SYSCALL || e == TLS_ERROR_WANT_READ || e == TLS_ERROR_SSL)) {
        char why[120];
        ossl_reason(why, sizeof why, "");
        if (e != TLS_ERROR_SSL || strstr(why, "eof"))
            return 0; /* the byte stream ended without close_notify: the frames above say if one was cut */
        snprintf(t->err, sizeof t->err, "%s", why[0] ? why : "protocol error");
        return -EPROTO;
    }
    return tls_failed(t, r, 0);
}

/* Opened bytes: n > 0, 0 at the peer's end, -EAGAIN (it needs more bytes), -EPROTO. */
int mvx_tls_read(struct mvx_tls *t, void *buf, size_t cap) {
    pthread_mutex_lock(&t->lock);
    int r = tls_read_locked(t, buf, cap);
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* A close_notify for the peer (taken with mvx_tls_take). */
void mvx_tls_close_notify(struct mvx_tls *t) {
    pthread_mutex_lock(&t->lock);
    ossl.ERR_clear_error();
    ossl.SSL_shutdown(t->ssl);
    ossl.ERR_clear_error();
    pthread_mutex_unlock(&t->lock);
}

/* The peer certificate's common name into out: its length, or -1 (none). */
int mvx_tls_peer_cn(struct mvx_tls *t, char *out, size_t cap) {
    pthread_mutex_lock(&t->lock);
    X509 *cert = ossl.SSL_get1_peer_certificate(t->ssl);
    int n = -1;
    if (cert) {
        X509_NAME *name = ossl.X509_get_subject_name(cert);
        n = name ? ossl.X509_NAME_get_text_by_NID(name, TLS_NID_COMMON_NAME, out, (int)cap) : -1;
        ossl.X509_free(cert);
    }
    ossl.ERR_clear_error();
    pthread_mutex_unlock(&t->lock);
    return n < 0 ? -1 : n;
}

/* ---- for the channel (mvx_fast.c) ---- */

/* "TLS: why" into err, under the lock (another thread may be writing t->err). */
static void tls_why_locked(struct mvx_tls *t, char *err, size_t errlen) {
    snprintf(err, errlen, "TLS: %s", t->err);
}

/* Seal `len` bytes and take all that is to go out: a malloc'd buffer (*out, *outlen). 0, -EPROTO
 * (why in err), -ENOMEM. */
static int tls_seal(struct mvx_tls *t, const void *data, size_t len, uint8_t **out, size_t *outlen, char *err,
                    size_t errlen) {
    pthread_mutex_lock(&t->lock);
    int r = len ? tls_write_locked(t, data, len) : 0;
    if (r == -EPROTO)
        tls_why_locked(t, err, errlen);
    long n = r ? 0 : ossl.BIO_ctrl(t->out, TLS_BIO_CTRL_PENDING, 0, NULL);
    *out = NULL;
    *outlen = 0;
    if (n > 0) {
        *out = malloc((size_t)n);
        if (!*out)
            r = -ENOMEM;
        else
            *outlen = (size_t)ossl.BIO_read(t->out, *out, (int)n);
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* Feed `len` received bytes (0: the end; data NULL: none) and open all that is whole into buf (grown with realloc):
 * the bytes appended (>= 0), 0 with *end set at the peer's end, -EPROTO (why in err), -ENOMEM. Nothing opened
 * is left in the object, so a poll of the socket is the only wait. */
static ssize_t tls_open(struct mvx_tls *t, const void *data, size_t len, uint8_t **buf, size_t *blen,
                        size_t *bcap, int *end, char *err, size_t errlen) {
    pthread_mutex_lock(&t->lock);
    ssize_t total = data ? tls_feed_locked(t, data, len) : 0;
    *end = 0;
    while (total >= 0) {
        if (*bcap - *blen < 16384) {
            size_t cap = *bcap ? *bcap * 2 : 262144;
            uint8_t *b = realloc(*buf, cap);
            if (!b) {
                total = -ENOMEM;
                break;
            }
            *buf = b;
            *bcap = cap;
        }
        int r = tls_read_locked(t, *buf + *blen, *bcap - *blen);
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            total = r;
            break;
        }
        if (r == 0) {
            *end = 1;
            break;
        }
        *blen += (size_t)r;
        total += r;
    }
    if (total == -EPROTO)
        tls_why_locked(t, err, errlen);
    pthread_mutex_unlock(&t->lock);
    return total;
}
