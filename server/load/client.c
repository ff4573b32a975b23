/* One load-generating thread: see client.h. */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "request.h"
#include "tls.h"
#include "ws.h"

#ifdef __linux__
#include <sys/timerfd.h>
#define SLOAD_TIMERFD 1
#endif

#define READ_BUF_SIZE (64 * 1024)
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define DRAIN_GRACE_MS 1000
#define OUT_LIMIT (256 * 1024)        /* queued for the socket: stop producing more */
#define STAGE_SIZE (64 * 1024)        /* plaintext gathered for one SSL_write */
#define H2_WINDOW (16 * 1024 * 1024)  /* HTTP/2 stream and connection windows */
#define SESSION_POOL 64               /* --tls-resume: sessions kept per thread */
#define WS_RESPONSE_HEAD_MAX 8192     /* the server's answer to the WebSocket handshake */

const char *sload_error_name(sload_error_kind k)
{
    static const char *names[SLOAD_ERR_COUNT] = {"connect", "read", "write", "timeout", "parse", "tls", "echo"};
    return (unsigned)k < SLOAD_ERR_COUNT ? names[k] : "?";
}

/* ---- start gate ---------------------------------------------------------- */

struct sload_gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned parties, arrived;
    bool open;
    uint64_t start_ns;
};

int sload_gate_new(sload_gate **out, unsigned parties)
{
    sload_gate *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    g->parties = parties;
    *out = g;
    return 0;
}

void sload_gate_free(sload_gate *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cond);
    free(g);
}

static struct timespec deadline_after(uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec = (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    return ts;
}

unsigned sload_gate_wait_ready(sload_gate *g, uint64_t timeout_ns)
{
    struct timespec dl = deadline_after(timeout_ns);
    pthread_mutex_lock(&g->mu);
    while (g->arrived < g->parties)
        if (pthread_cond_timedwait(&g->cond, &g->mu, &dl) == ETIMEDOUT)
            break;
    unsigned n = g->arrived;
    pthread_mutex_unlock(&g->mu);
    return n;
}

void sload_gate_open(sload_gate *g, uint64_t start_ns)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    g->start_ns = start_ns;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

/* Party side: arrive, then wait (bounded) for the start time. */
static uint64_t gate_arrive(sload_gate *g, uint64_t timeout_ns)
{
    struct timespec dl = deadline_after(timeout_ns);
    pthread_mutex_lock(&g->mu);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        if (pthread_cond_timedwait(&g->cond, &g->mu, &dl) == ETIMEDOUT)
            break;
    uint64_t start = g->open ? g->start_ns : uv_hrtime();
    pthread_mutex_unlock(&g->mu);
    return start;
}

/* ---- connections ------------------------------------------------------- */

enum conn_state { CS_CLOSED, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING };
enum timer_mode { TM_NONE, TM_CONNECT, TM_RESPONSE, TM_BACKOFF, TM_WS_CLOSE };
enum phase { PH_CONNECT, PH_RUN, PH_DRAIN, PH_DONE };

typedef struct {
    uint64_t origin;   /* latency runs from here: due time (open loop) or send time */
    uint64_t sent;
    /* HTTP/2 */
    int32_t stream_id; /* 0: a free slot */
    int status;        /* final (>= 200) status received */
    size_t body_off;   /* request body bytes handed to nghttp2 */
    bool ended;        /* the response is complete (END_STREAM received) */
    bool local_rst;    /* reset by this side: the response broke the protocol */
} inflight;

typedef struct {
    const char *p;
    size_t len;
} seg;

typedef struct conn conn;
struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    llhttp_t parser;
    sload_client *cl;
    enum conn_state state;
    enum timer_mode tmode;
    bool first_done;         /* first connect attempt has an outcome */
    bool fresh;              /* no request sent on this connection yet */
    bool close_after;        /* no more requests: Connection: close (HTTP/1.1), GOAWAY (HTTP/2) */
    bool backoff;            /* reconnect after a delay */
    bool in_ready;
    bool h2_error;           /* HTTP/2: the session ended on a protocol error */
    conn *rnext, *rprev;
    uint64_t connect_start;
    unsigned backoff_ms;
    uint64_t answered;       /* responses on this connection */
    int status;              /* of the response being parsed (HTTP/1.1) */
    unsigned completions;    /* requests finished in the current read */
    inflight *q;             /* HTTP/1.1: ring of `pipeline` entries; HTTP/2: slots */
    unsigned qhead, qlen;
    unsigned *qfree;         /* HTTP/2: indexes of free slots (a stack) */
    unsigned nfree;
    /* TLS */
    SSL *ssl;
    sload_tls_io tio;        /* what the SSL's BIO reads and writes */
    seg *segs;               /* HTTP/1.1 over TLS: request bytes not yet encrypted */
    unsigned seg_head, seg_len;
    size_t seg_off;
    /* HTTP/2 */
    nghttp2_session *h2;
    /* WebSocket */
    bool ws_upgrading;       /* handshake sent, its answer not yet complete */
    bool ws_closing;         /* our close frame sent: waiting for the server's */
    bool ws_bad;             /* the echo being received is not the message */
    char ws_accept[29];      /* the Sec-WebSocket-Accept expected */
    char *ws_head;           /* the answer's head, gathered (WS_RESPONSE_HEAD_MAX) */
    size_t ws_head_len;
    ws_parser *wsp;
    size_t ws_rx;            /* bytes of the current echo so far */
    /* Bytes for the socket that do not live elsewhere (TLS records, HTTP/2
     * frames), and how many of those libuv still holds. */
    char *obuf;
    size_t olen, ocap;
    size_t wq_bytes;
};

typedef struct wreq {
    uv_write_t req;
    struct wreq *next;
    char *buf;               /* owned (a former output buffer), or NULL */
    size_t cap, len;
} wreq;

struct sload_client {
    sload_client_config cfg;
    uv_loop_t loop;
    bool loop_ready;
    uv_async_t stop_async;
    uv_timer_t end_timer;
#ifdef SLOAD_TIMERFD
    int tfd;
    uv_poll_t tpoll;
#else
    uv_timer_t sched_timer;
#endif
    llhttp_settings_t settings;
    conn *conns;
    unsigned nactive;        /* connections with an open handle */
    unsigned pending_first;  /* connections without a first connect outcome */
    char *rbuf;
    uv_buf_t *iov;
    wreq *wfree;
    /* TLS */
    char *pbuf;              /* plaintext out of SSL_read */
    char *stage;             /* plaintext gathered for one SSL_write */
    size_t stage_len;
    bool sni;                /* tls_host is a name, not an address */
    bool host_is_ip;
    SSL_SESSION *sessions[SESSION_POOL]; /* --tls-resume: sessions issued, newest last */
    unsigned nsessions;
    /* HTTP/2 */
    nghttp2_session_callbacks *h2cb;
    nghttp2_nv *nv;
    size_t nvlen;
    nghttp2_data_provider prd;
    /* WebSocket */
    uint8_t *ws_out;         /* one frame being built: head + masked message */
    char *ws_req;            /* the handshake with this connection's key */
    uint64_t ws_rng;         /* masking keys (xorshift, seeded from RAND_bytes) */
    enum phase phase;
    bool open_loop;
    uint64_t start_ns, measure_ns, end_ns, window_end_ns;
    /* open loop schedule */
    double interval_ns;
    uint64_t next_k, k_limit;
    uint64_t *requeue;
    size_t rq_head, rq_len, rq_cap;
    conn *ready_head, *ready_tail;
    bool sched_armed;
    unsigned inflight_total;
    uint64_t watchdog_seen;
    sload_stats st;
    _Atomic uint64_t live_completed, live_errors, live_backlog;
    atomic_bool live_warming;
    atomic_bool finished;        /* the loop has stopped: no more async sends */
};

static void conn_connect(conn *c);
static void conn_close(conn *c, bool backoff);
static void dispatch(sload_client *cl);
static void begin_drain(sload_client *cl);
static void maybe_finish(sload_client *cl);
static bool h2_pump(conn *c);

static inline bool in_window(const sload_client *cl, uint64_t t)
{
    return t >= cl->measure_ns && cl->phase != PH_CONNECT;
}

static void count_error(sload_client *cl, sload_error_kind k, uint64_t n)
{
    if (n == 0)
        return;
    cl->st.errors[k] += n;
    atomic_store_explicit(&cl->live_errors,
                          atomic_load_explicit(&cl->live_errors, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t ns_to_ms_ceil(uint64_t ns)
{
    return (ns + 999999u) / 1000000u;
}

/* ready list: open connections with room for another request (open loop) */
static void ready_push(conn *c)
{
    sload_client *cl = c->cl;
    if (c->in_ready || c->state != CS_OPEN || c->close_after || c->qlen >= cl->cfg.pipeline)
        return;
    c->in_ready = true;
    c->rnext = NULL;
    c->rprev = cl->ready_tail;
    if (cl->ready_tail)
        cl->ready_tail->rnext = c;
    else
        cl->ready_head = c;
    cl->ready_tail = c;
}

static void ready_remove(conn *c)
{
    sload_client *cl = c->cl;
    if (!c->in_ready)
        return;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        cl->ready_head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    else
        cl->ready_tail = c->rprev;
    c->in_ready = false;
    c->rnext = c->rprev = NULL;
}

/* ---- requests in flight ------------------------------------------------ */

static inline inflight *q_at(conn *c, unsigned i)
{
    return &c->q[(c->qhead + i) % c->cl->cfg.pipeline];
}

/* HTTP/2: every slot free. */
static void slots_reset(conn *c)
{
    unsigned n = c->cl->cfg.pipeline;
    for (unsigned i = 0; i < n; i++) {
        c->q[i].stream_id = 0;
        c->qfree[i] = n - 1 - i;
    }
    c->nfree = n;
}

static void q_clear(conn *c)
{
    c->cl->inflight_total -= c->qlen;
    c->qhead = c->qlen = 0;
    if (c->cl->cfg.h2)
        slots_reset(c);
}

/* The requests in flight on c, in no particular order: *it starts at 0. */
static inflight *inflight_next(conn *c, unsigned *it)
{
    if (!c->cl->cfg.h2)
        return *it < c->qlen ? q_at(c, (*it)++) : NULL;
    while (*it < c->cl->cfg.pipeline) {
        inflight *e = &c->q[(*it)++];
        if (e->stream_id)
            return e;
    }
    return NULL;
}

/* Fails every request in flight on c (at least `min` errors). */
static void fail_inflight(conn *c, sload_error_kind k, uint64_t min)
{
    sload_client *cl = c->cl;
    uint64_t n = 0;
    unsigned it = 0;
    for (inflight *e; (e = inflight_next(c, &it));)
        if (in_window(cl, e->origin))
            n++;
    if (n < min && in_window(cl, uv_hrtime()))
        n = min;
    count_error(cl, k, n);
    q_clear(c);
}

/* A request that was never processed is sent again (open loop: it keeps its
 * due time). */
static void requeue_origin(sload_client *cl, uint64_t origin)
{
    if (cl->open_loop) {
        if (cl->rq_len < cl->rq_cap) {
            cl->requeue[(cl->rq_head + cl->rq_len) % cl->rq_cap] = origin;
            cl->rq_len++;
        }
    } else if (cl->cfg.budget) {
        atomic_fetch_add(cl->cfg.budget, 1);
    }
    cl->st.resent++;
}

/* Requests sent after a response that closed the connection were never
 * processed: send them again. */
static void requeue_inflight(conn *c)
{
    unsigned it = 0;
    for (inflight *e; (e = inflight_next(c, &it));)
        requeue_origin(c->cl, e->origin);
    q_clear(c);
}

/* A response completed the request that started at origin. */
static void record_completion(conn *c, uint64_t origin, uint64_t sent, int status)
{
    sload_client *cl = c->cl;
    c->completions++;
    c->answered++;
    c->backoff_ms = 0;
    if (!in_window(cl, origin))
        return;
    uint64_t now = uv_hrtime();
    sload_hist_record(cl->st.latency, (now - origin + 500) / 1000);
    if (cl->open_loop) {
        sload_hist_record(cl->st.service, (now - sent + 500) / 1000);
        sload_hist_record(cl->st.lag, (sent - origin + 500) / 1000);
    }
    cl->st.completed++;
    if (now <= cl->end_ns)
        cl->st.completed_window++;
    unsigned cls = (unsigned)status / 100;
    cl->st.status[cls >= 2 && cls <= 5 ? cls : 0]++;
    atomic_store_explicit(&cl->live_completed, cl->st.completed, memory_order_relaxed);
}

/* ---- output ------------------------------------------------------------- */

static wreq *wreq_get(sload_client *cl)
{
    wreq *w = cl->wfree;
    if (w) {
        cl->wfree = w->next;
        return w;
    }
    w = malloc(sizeof *w);
    if (w) {
        w->buf = NULL;
        w->cap = w->len = 0;
    }
    return w;
}

static void wreq_put(sload_client *cl, wreq *w)
{
    w->len = 0;
    w->next = cl->wfree;
    cl->wfree = w;
}

/* A handshake (TLS or WebSocket) failed: one error of `kind`, the first
 * reason kept in `slot` for the report, and the connection closed. */
static void first_outcome(conn *c);

static void fail_handshake(conn *c, sload_error_kind kind, char *slot, size_t slot_len, const char *why)
{
    first_outcome(c);
    count_error(c->cl, kind, 1);
    if (!slot[0])
        snprintf(slot, slot_len, "%s", why);
    conn_close(c, true);
}

static void handshake_fail(conn *c, const char *why);

/* Writing failed: the requests in flight fail (or the handshake does). */
static void write_failed(conn *c)
{
    if (c->state == CS_HANDSHAKE) {
        handshake_fail(c, "cannot write to the connection");
        return;
    }
    c->cl->stage_len = 0;
    fail_inflight(c, SLOAD_ERR_WRITE, 1);
    conn_close(c, false);
}

static void conn_pump(conn *c);

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *c = req->handle->data;
    sload_client *cl = c->cl;
    c->wq_bytes -= w->len;
    wreq_put(cl, w);
    if (status < 0) {
        if (status != UV_ECANCELED && (c->state == CS_OPEN || c->state == CS_HANDSHAKE))
            write_failed(c);
        return;
    }
    if (c->state == CS_OPEN && c->wq_bytes == 0)
        conn_pump(c);
}

static bool obuf_append(conn *c, const void *p, size_t n)
{
    if (c->olen + n > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 16384;
        while (cap < c->olen + n)
            cap *= 2;
        char *b = realloc(c->obuf, cap);
        if (!b)
            return false;
        c->obuf = b;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
    return true;
}

/* The TLS BIO's output: ciphertext for the socket. */
static bool tls_out(void *arg, const char *p, size_t n)
{
    return obuf_append(arg, p, n);
}

/* Writes the output buffer: directly if the socket takes it, the rest
 * through a write request that takes the buffer over (no copy). False if
 * the connection failed. */
static bool sock_flush(conn *c)
{
    sload_client *cl = c->cl;
    if (c->olen == 0)
        return true;
    uint64_t now = uv_hrtime();
    if (in_window(cl, now) && cl->phase == PH_RUN)
        cl->st.bytes_written += c->olen;
    size_t off = 0;
    if (c->wq_bytes == 0) {
        uv_buf_t b = uv_buf_init(c->obuf, (unsigned)c->olen);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r == UV_EAGAIN || r == UV_ENOSYS)
            r = 0;
        if (r < 0) {
            write_failed(c);
            return false;
        }
        off = (size_t)r;
        if (off == c->olen) {
            c->olen = 0;
            return true;
        }
    }
    wreq *w = wreq_get(cl);
    if (!w) {
        write_failed(c);
        return false;
    }
    char *spare = w->buf;
    size_t spare_cap = w->cap;
    w->buf = c->obuf;
    w->cap = c->ocap;
    w->len = c->olen - off;
    c->obuf = spare;
    c->ocap = spare_cap;
    c->olen = 0;
    uv_buf_t b = uv_buf_init(w->buf + off, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        wreq_put(cl, w);
        write_failed(c);
        return false;
    }
    c->wq_bytes += w->len;
    return true;
}

static void tls_failed(conn *c, int ret)
{
    sload_client *cl = c->cl;
    char msg[sizeof cl->st.tls_error];
    sload_tls_error(c->ssl, ret, msg, sizeof msg);
    if (!cl->st.tls_error[0])
        snprintf(cl->st.tls_error, sizeof cl->st.tls_error, "%s", msg);
    cl->stage_len = 0;
    fail_inflight(c, SLOAD_ERR_TLS, 1);
    conn_close(c, false);
}

/* The staged plaintext becomes TLS records in the output buffer. */
static bool tls_encrypt(conn *c)
{
    sload_client *cl = c->cl;
    if (cl->stage_len == 0)
        return true;
    ERR_clear_error();
    int r = SSL_write(c->ssl, cl->stage, (int)cl->stage_len);
    cl->stage_len = 0;
    if (r <= 0) {
        tls_failed(c, r);
        return false;
    }
    return true;
}

/* Plaintext protocol bytes that do not live elsewhere. */
static bool out_plain(conn *c, const void *p, size_t n)
{
    sload_client *cl = c->cl;
    if (!c->ssl) {
        if (!obuf_append(c, p, n)) {
            write_failed(c);
            return false;
        }
        return true;
    }
    while (n) {
        size_t k = STAGE_SIZE - cl->stage_len;
        if (k > n)
            k = n;
        memcpy(cl->stage + cl->stage_len, p, k);
        cl->stage_len += k;
        p = (const char *)p + k;
        n -= k;
        if (cl->stage_len == STAGE_SIZE && !tls_encrypt(c))
            return false;
    }
    return true;
}

static bool out_finish(conn *c)
{
    if (c->ssl && !tls_encrypt(c))
        return false;
    return sock_flush(c);
}

/* HTTP/1.1 over TLS: encrypts queued request bytes while the socket keeps
 * up (large bodies go out in steps, as the socket drains). */
static bool h1_tls_pump(conn *c)
{
    sload_client *cl = c->cl;
    unsigned cap = 2 * cl->cfg.pipeline + 2;
    for (;;) {
        cl->stage_len = 0;
        while (c->seg_len && c->olen + c->wq_bytes < OUT_LIMIT) {
            seg *s = &c->segs[c->seg_head];
            size_t room = STAGE_SIZE - cl->stage_len, left = s->len - c->seg_off;
            size_t n = left < room ? left : room;
            memcpy(cl->stage + cl->stage_len, s->p + c->seg_off, n);
            cl->stage_len += n;
            c->seg_off += n;
            if (c->seg_off == s->len) {
                c->seg_head = (c->seg_head + 1) % cap;
                c->seg_len--;
                c->seg_off = 0;
            }
            if (cl->stage_len == STAGE_SIZE && !tls_encrypt(c))
                return false;
        }
        if (!out_finish(c))
            return false;
        /* All written at once: go on; else on_write calls again. */
        if (c->seg_len == 0 || c->wq_bytes > 0)
            return true;
    }
}

/* HTTP/2: whatever the session has to send, while the socket keeps up. */
static bool h2_pump(conn *c)
{
    for (;;) {
        bool full = false;
        c->cl->stage_len = 0;
        for (;;) {
            if (c->olen + c->wq_bytes >= OUT_LIMIT) {
                full = true;
                break;
            }
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->h2, &p);
            if (n < 0) {
                write_failed(c);
                return false;
            }
            if (n == 0)
                break;
            if (!out_plain(c, p, (size_t)n))
                return false;
        }
        if (!out_finish(c))
            return false;
        /* All written at once: go on; else on_write calls again. */
        if (!full || c->wq_bytes > 0)
            return true;
    }
}

static void after_input(conn *c);

/* More to send once the socket drained. */
static void conn_pump(conn *c)
{
    if (c->h2)
        after_input(c); /* sending may finish streams (resets) */
    else if (c->ssl && c->seg_len)
        h1_tls_pump(c);
}

static void on_timer(uv_timer_t *t);

static void timer_start(conn *c, enum timer_mode m, uint64_t ms)
{
    c->tmode = m;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* Latency origin of requests sent now in closed loop. */
static uint64_t closed_origin(conn *c, uint64_t now)
{
    sload_client *cl = c->cl;
    if (c->fresh && !cl->cfg.keepalive && c->connect_start >= cl->start_ns)
        return c->connect_start; /* each request pays for its connection */
    return now;
}

/* ---- WebSocket ------------------------------------------------------------ */

static void first_outcome(conn *c);

/* Masking keys: RFC 6455 wants them unpredictable to intermediaries; a
 * per-thread xorshift seeded from RAND_bytes is plenty for a load tool and
 * costs nothing per message. */
static uint64_t ws_rand(sload_client *cl)
{
    uint64_t x = cl->ws_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cl->ws_rng = x;
    return x;
}

/* One whole masked frame into the connection's output (not yet flushed). */
static bool ws_frame_out(conn *c, int op, const uint8_t *payload, size_t len)
{
    sload_client *cl = c->cl;
    uint64_t r = ws_rand(cl);
    uint8_t key[4];
    memcpy(key, &r, sizeof key);
    uint8_t *b = cl->ws_out; /* WS_HEAD_MAX + max(message, control payload) */
    size_t n = ws_frame_head(b, op, true, len, key);
    if (len)
        memcpy(b + n, payload, len);
    ws_mask(b + n, len, key, 0);
    return out_plain(c, b, n + len);
}

static void ws_handshake_fail(conn *c, const char *why)
{
    fail_handshake(c, SLOAD_ERR_PARSE, c->cl->st.ws_error, sizeof c->cl->st.ws_error, why);
}

/* TCP (and TLS) is up: the opening handshake, with a fresh key. The
 * connect timeout also bounds the handshake. */
static void ws_handshake_start(conn *c)
{
    sload_client *cl = c->cl;
    const sload_client_config *cfg = &cl->cfg;
    uint8_t nonce[16];
    char key[25];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        uint64_t a = ws_rand(cl), b = ws_rand(cl);
        memcpy(nonce, &a, 8);
        memcpy(nonce + 8, &b, 8);
    }
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce); /* 24 characters and a NUL */
    ws_accept_value(key, 24, c->ws_accept);
    c->ws_upgrading = true;
    c->ws_head_len = 0;
    if (!c->ws_head && !(c->ws_head = malloc(WS_RESPONSE_HEAD_MAX))) {
        ws_handshake_fail(c, "out of memory");
        return;
    }
    uint64_t now = uv_hrtime(), deadline = c->connect_start + cfg->connect_timeout_ns;
    timer_start(c, TM_CONNECT, deadline > now ? ns_to_ms_ceil(deadline - now) : 0);
    memcpy(cl->ws_req, cfg->head, cfg->head_len);
    memcpy(cl->ws_req + cfg->ws_key_off, key, 24);
    if (out_plain(c, cl->ws_req, cfg->head_len))
        out_finish(c);
}

static bool token_in_list(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, tok, tl) == 0)
            return true;
    }
    return false;
}

/* Is the answer's head (status line and fields, CRLF CRLF included) a
 * valid 101 for our key? Else why not, in why[len]. */
static bool ws_answer_ok(conn *c, const char *h, size_t n, char *why, size_t len)
{
    if (n < 13 || memcmp(h, "HTTP/1.1 101", 12) != 0 || (h[12] != ' ' && h[12] != '\r')) {
        size_t l = 0;
        while (l < n && l < 60 && h[l] != '\r' && h[l] != '\n')
            l++;
        snprintf(why, len, "the handshake got '%.*s', not 101", (int)l, h);
        return false;
    }
    bool upgrade = false, connection = false, accept = false;
    const char *p = memchr(h, '\n', n) + 1, *end = h + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)(eol - p);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            break;
        const char *colon = memchr(p, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1, *ve = p + ll;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t vl = (size_t)(ve - v);
            if (nl == 7 && strncasecmp(p, "upgrade", 7) == 0)
                upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
            else if (nl == 10 && strncasecmp(p, "connection", 10) == 0)
                connection = connection || token_in_list(v, vl, "upgrade");
            else if (nl == 20 && strncasecmp(p, "sec-websocket-accept", 20) == 0)
                accept = vl == 28 && memcmp(v, c->ws_accept, 28) == 0;
            else if (nl == 24 && strncasecmp(p, "sec-websocket-extensions", 24) == 0 && vl > 0) {
                snprintf(why, len, "the server chose an extension we did not offer");
                return false;
            }
        }
        p = eol + 1;
    }
    if (!upgrade || !connection || !accept) {
        snprintf(why, len, "the 101 lacks %s", !upgrade ? "Upgrade: websocket" : !connection ? "Connection: upgrade"
                                                                                       : "the right Sec-WebSocket-Accept");
        return false;
    }
    return true;
}

/* The answer to the handshake, as it arrives. Returns the bytes of p it
 * took (the rest are frames), or -1 when the connection failed. */
static ssize_t ws_upgrade_input(conn *c, const char *p, size_t n)
{
    sload_client *cl = c->cl;
    size_t had = c->ws_head_len, take = WS_RESPONSE_HEAD_MAX - had;
    if (take > n)
        take = n;
    memcpy(c->ws_head + had, p, take);
    c->ws_head_len += take;
    size_t from = had > 3 ? had - 3 : 0;
    const char *end = memmem(c->ws_head + from, c->ws_head_len - from, "\r\n\r\n", 4);
    if (!end) {
        if (c->ws_head_len == WS_RESPONSE_HEAD_MAX) {
            ws_handshake_fail(c, "the handshake's answer has a head above 8 KiB");
            return -1;
        }
        return (ssize_t)n;
    }
    size_t head_len = (size_t)(end - c->ws_head) + 4;
    char why[sizeof cl->st.ws_error];
    if (!ws_answer_ok(c, c->ws_head, head_len, why, sizeof why)) {
        ws_handshake_fail(c, why);
        return -1;
    }
    if (ws_parser_new(&c->wsp, false, 0) < 0) {
        ws_handshake_fail(c, "out of memory");
        return -1;
    }
    c->ws_upgrading = false;
    free(c->ws_head); /* only needed for the handshake */
    c->ws_head = NULL;
    c->ws_rx = 0;
    c->ws_bad = false;
    uv_timer_stop(&c->timer);
    c->tmode = TM_NONE;
    if (in_window(cl, c->connect_start)) {
        sload_hist_record(cl->st.connect, (uv_hrtime() - c->connect_start + 500) / 1000);
        cl->st.connects_window++;
    }
    first_outcome(c);
    c->completions++; /* after_input: the connection is available */
    return (ssize_t)(head_len - had);
}

/* A whole echo arrived: it completes the oldest message in flight. */
static void ws_message_done(conn *c)
{
    sload_client *cl = c->cl;
    if (c->qlen == 0) {
        if (in_window(cl, uv_hrtime()))
            count_error(cl, SLOAD_ERR_ECHO, 1); /* a message nobody sent */
        return;
    }
    inflight e = *q_at(c, 0);
    c->qhead = (c->qhead + 1) % cl->cfg.pipeline;
    c->qlen--;
    cl->inflight_total--;
    if (!c->ws_bad) {
        record_completion(c, e.origin, e.sent, 0);
        return;
    }
    c->completions++;
    c->answered++;
    if (in_window(cl, e.origin))
        count_error(cl, SLOAD_ERR_ECHO, 1);
}

/* A piece of an echo: the same bytes as the message, at the same place. */
static void ws_echo_piece(conn *c, const ws_event *ev)
{
    const sload_client_config *cfg = &c->cl->cfg;
    if (ev->first) {
        c->ws_rx = 0;
        c->ws_bad = ev->text != cfg->ws_text;
    }
    if (!c->ws_bad) {
        if (ev->len > cfg->ws_msg_len - c->ws_rx || memcmp(ev->data, cfg->ws_msg + c->ws_rx, ev->len) != 0)
            c->ws_bad = true;
        else
            c->ws_rx += ev->len;
    }
    if (!ev->fin)
        return;
    if (c->ws_rx != cfg->ws_msg_len)
        c->ws_bad = true;
    ws_message_done(c);
}

/* Bytes from the server (plaintext). True while the connection stays open. */
static bool ws_input(conn *c, char *p, size_t n)
{
    if (c->ws_upgrading) {
        ssize_t used = ws_upgrade_input(c, p, n);
        if (used < 0)
            return false;
        p += used;
        n -= (size_t)used;
    }
    while (n > 0 && c->state == CS_OPEN && !c->ws_upgrading) {
        ws_event ev;
        size_t used = 0;
        int r = ws_parser_feed(c->wsp, (uint8_t *)p, n, SIZE_MAX, &used, &ev);
        p += used;
        n -= used;
        if (r < 0) {
            /* the server broke RFC 6455 */
            fail_inflight(c, SLOAD_ERR_PARSE, 1);
            conn_close(c, false);
            return false;
        }
        if (r == 0)
            break;
        if (ev.type == WS_EV_DATA) {
            ws_echo_piece(c, &ev);
        } else if (ev.type == WS_EV_PING) {
            if (!ws_frame_out(c, WS_OP_PONG, ev.data, ev.len) || !out_finish(c))
                return false;
        } else if (ev.type == WS_EV_CLOSE) {
            if (c->ws_closing) {
                conn_close(c, false); /* the close handshake is complete */
                return false;
            }
            /* the server closed: answer with its code; what is in flight failed */
            uint8_t code[2] = {(uint8_t)(ev.code >> 8), (uint8_t)ev.code};
            c->ws_closing = true;
            if (ws_frame_out(c, WS_OP_CLOSE, code, ev.code == WS_CLOSE_NO_STATUS ? 0 : 2))
                out_finish(c);
            if (c->state == CS_OPEN) {
                fail_inflight(c, SLOAD_ERR_READ, 0);
                conn_close(c, c->answered == 0);
            }
            return false;
        }
    }
    return c->state == CS_OPEN;
}

/* The end: our close frame (1000), then the server's, bounded in time. */
static void ws_close_start(conn *c)
{
    sload_client *cl = c->cl;
    if (c->state != CS_OPEN || c->ws_upgrading || !c->wsp) {
        conn_close(c, false);
        return;
    }
    if (c->ws_closing)
        return;
    c->ws_closing = true;
    ready_remove(c);
    const uint8_t code[2] = {WS_CLOSE_NORMAL >> 8, WS_CLOSE_NORMAL & 0xff};
    if (!ws_frame_out(c, WS_OP_CLOSE, code, 2) || !out_finish(c))
        return;
    uint64_t wait = cl->cfg.response_timeout_ns < 2000000000u ? cl->cfg.response_timeout_ns : 2000000000u;
    timer_start(c, TM_WS_CLOSE, ns_to_ms_ceil(wait));
}

/* No more requests on c: close it (WebSocket: with the close handshake). */
static void conn_finish(conn *c)
{
    if (c->cl->cfg.ws)
        ws_close_start(c);
    else
        conn_close(c, false);
}

/* n messages on c (origins as for conn_send). */
static bool ws_send(conn *c, unsigned n, const uint64_t *origins)
{
    sload_client *cl = c->cl;
    const sload_client_config *cfg = &cl->cfg;
    uint64_t now = uv_hrtime();
    uint64_t corigin = closed_origin(c, now);
    c->fresh = false;
    for (unsigned i = 0; i < n; i++) {
        inflight *e = q_at(c, c->qlen);
        e->origin = origins ? origins[i] : corigin;
        e->sent = now;
        c->qlen++;
        cl->inflight_total++;
        if (in_window(cl, e->origin))
            cl->st.sent++;
        if (!ws_frame_out(c, cfg->ws_text ? WS_OP_TEXT : WS_OP_BINARY, cfg->ws_msg, cfg->ws_msg_len))
            return false;
    }
    if (!uv_is_active((uv_handle_t *)&c->timer))
        timer_start(c, TM_RESPONSE, ns_to_ms_ceil(cfg->response_timeout_ns));
    return out_finish(c);
}

/* HTTP/2: n new streams. */
static bool h2_send(conn *c, unsigned n, const uint64_t *origins)
{
    sload_client *cl = c->cl;
    uint64_t now = uv_hrtime();
    uint64_t corigin = closed_origin(c, now);
    c->fresh = false;
    for (unsigned i = 0; i < n; i++) {
        uint64_t origin = origins ? origins[i] : corigin;
        int32_t id = -1;
        inflight *e = NULL;
        if (c->nfree > 0) {
            e = &c->q[c->qfree[c->nfree - 1]];
            e->origin = origin;
            e->sent = now;
            e->status = 0;
            e->body_off = 0;
            e->ended = e->local_rst = false;
            id = nghttp2_submit_request(c->h2, NULL, cl->nv, cl->nvlen,
                                        cl->cfg.body_len ? &cl->prd : NULL, e);
        }
        if (id <= 0) {
            /* cannot happen short of memory: these requests fail */
            for (unsigned j = i; j < n; j++)
                if (in_window(cl, origins ? origins[j] : corigin))
                    count_error(cl, SLOAD_ERR_WRITE, 1);
            fail_inflight(c, SLOAD_ERR_WRITE, 0);
            conn_close(c, false);
            return false;
        }
        c->nfree--;
        e->stream_id = id;
        c->qlen++;
        cl->inflight_total++;
        if (in_window(cl, origin))
            cl->st.sent++;
    }
    if (!uv_is_active((uv_handle_t *)&c->timer))
        timer_start(c, TM_RESPONSE, ns_to_ms_ceil(cl->cfg.response_timeout_ns));
    return h2_pump(c);
}

/* Writes n requests on c. origins: their due times, or NULL for "now"
 * (closed loop). Returns false if the connection failed. */
static bool conn_send(conn *c, unsigned n, const uint64_t *origins)
{
    if (c->h2)
        return h2_send(c, n, origins);
    if (c->cl->cfg.ws)
        return ws_send(c, n, origins);
    sload_client *cl = c->cl;
    const sload_client_config *cfg = &cl->cfg;
    uint64_t now = uv_hrtime();
    uint64_t corigin = closed_origin(c, now);
    c->fresh = false;
    unsigned nb = 0;
    size_t total = 0;
    unsigned cap = 2 * cfg->pipeline + 2;
    for (unsigned i = 0; i < n; i++) {
        if (c->ssl) {
            if (c->seg_len + 2 > cap) {
                write_failed(c); /* the server answered before reading a body */
                return false;
            }
            c->segs[(c->seg_head + c->seg_len++) % cap] = (seg){cfg->head, cfg->head_len};
            if (cfg->body_len)
                c->segs[(c->seg_head + c->seg_len++) % cap] = (seg){cfg->body, cfg->body_len};
        } else {
            cl->iov[nb++] = uv_buf_init((char *)cfg->head, (unsigned)cfg->head_len);
            if (cfg->body_len)
                cl->iov[nb++] = uv_buf_init((char *)cfg->body, (unsigned)cfg->body_len);
            total += cfg->head_len + cfg->body_len;
        }
        inflight *e = q_at(c, c->qlen);
        e->origin = origins ? origins[i] : corigin;
        e->sent = now;
        c->qlen++;
        if (in_window(cl, e->origin))
            cl->st.sent++;
    }
    cl->inflight_total += n;
    if (!uv_is_active((uv_handle_t *)&c->timer))
        timer_start(c, TM_RESPONSE, ns_to_ms_ceil(cfg->response_timeout_ns));
    if (c->ssl)
        return h1_tls_pump(c);
    if (in_window(cl, now))
        cl->st.bytes_written += total;

    int r = uv_try_write((uv_stream_t *)&c->tcp, cl->iov, nb);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r < 0) {
        write_failed(c);
        return false;
    }
    if ((size_t)r == total)
        return true;
    /* The rest goes through a write request (the bytes are shared and live
     * as long as the client). */
    size_t skip = (size_t)r;
    unsigned first = 0;
    while (skip >= cl->iov[first].len) {
        skip -= cl->iov[first].len;
        first++;
    }
    cl->iov[first].base += skip;
    cl->iov[first].len -= skip;
    wreq *w = wreq_get(cl);
    if (!w || uv_write(&w->req, (uv_stream_t *)&c->tcp, cl->iov + first, nb - first, on_write) < 0) {
        if (w)
            wreq_put(cl, w);
        write_failed(c);
        return false;
    }
    return true;
}

/* Closed loop: top the connection up to `pipeline` requests in flight. */
static void conn_fill(conn *c)
{
    sload_client *cl = c->cl;
    if (cl->phase != PH_RUN || c->state != CS_OPEN || c->close_after)
        return;
    unsigned room = cl->cfg.pipeline - c->qlen;
    if (!cl->cfg.keepalive && !c->fresh)
        room = 0; /* one request per connection */
    else if (!cl->cfg.keepalive)
        room = c->qlen == 0 ? 1 : 0;
    unsigned n = 0;
    for (; n < room; n++) {
        if (cl->cfg.budget && atomic_fetch_sub(cl->cfg.budget, 1) <= 0) {
            atomic_fetch_add(cl->cfg.budget, 1);
            break;
        }
    }
    if (n > 0)
        conn_send(c, n, NULL);
}

static void conn_became_available(conn *c)
{
    sload_client *cl = c->cl;
    if (c->ws_upgrading || c->ws_closing)
        return;
    if (cl->phase == PH_DRAIN) {
        if (c->qlen == 0)
            conn_finish(c);
        return;
    }
    if (cl->phase != PH_RUN)
        return;
    if (!cl->cfg.keepalive && !c->fresh && c->qlen == 0) {
        /* One request per connection: the server kept it open anyway
         * (HTTP/2: always; this side closes). */
        conn_close(c, false);
        return;
    }
    if (cl->open_loop) {
        if (cl->cfg.keepalive || c->fresh)
            ready_push(c);
        dispatch(cl);
    } else {
        conn_fill(c);
        if (cl->cfg.budget && cl->inflight_total == 0 &&
            atomic_load(cl->cfg.budget) <= 0)
            begin_drain(cl);
    }
}

/* ---- HTTP/1.1 parser callbacks ------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    conn *c = p->data;
    c->status = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    c->status = p->status_code;
    if (c->status == 101)
        return -1; /* no protocol switches here */
    if (c->status < 200 || c->status == 204 || c->status == 304 || c->cl->cfg.head_method)
        return 1;  /* no body, whatever the headers say */
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    sload_client *cl = c->cl;
    if (c->status >= 100 && c->status < 200)
        return 0; /* interim response: the real one follows */
    if (c->qlen == 0)
        return -1; /* a response nobody asked for */
    inflight e = *q_at(c, 0);
    c->qhead = (c->qhead + 1) % cl->cfg.pipeline;
    c->qlen--;
    cl->inflight_total--;
    record_completion(c, e.origin, e.sent, c->status);
    if (!llhttp_should_keep_alive(p)) {
        c->close_after = true;
        return HPE_PAUSED;
    }
    return 0;
}

/* ---- HTTP/2 session callbacks --------------------------------------------
 * They only update counts and flags: sending, closing and new requests
 * happen once nghttp2 has returned (after_input). */

static inflight *h2_slot(nghttp2_session *s, int32_t stream_id)
{
    inflight *e = nghttp2_session_get_stream_user_data(s, stream_id);
    return e && e->stream_id == stream_id ? e : NULL;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || namelen != 7 || memcmp(name, ":status", 7) != 0 || valuelen != 3)
        return 0;
    inflight *e = h2_slot(s, f->hd.stream_id);
    int st = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    if (e && st >= 200)
        e->status = st;
    return 0;
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn *c = ud;
    switch (f->hd.type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            inflight *e = h2_slot(s, f->hd.stream_id);
            if (e && e->status)
                e->ended = true;
        }
        break;
    case NGHTTP2_GOAWAY:
        /* No new streams here; streams above last_stream_id are closed by
         * nghttp2 as refused (sent again elsewhere). */
        c->close_after = true;
        ready_remove(c);
        break;
    default:
        break;
    }
    return 0;
}

static int h2_on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn *c = ud;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        inflight *e = h2_slot(s, f->hd.stream_id);
        if (e)
            e->local_rst = true;
    } else if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        c->h2_error = true;
    }
    return 0;
}

static void h2_release(conn *c, inflight *e)
{
    e->stream_id = 0;
    c->qfree[c->nfree++] = (unsigned)(e - c->q);
    c->qlen--;
    c->cl->inflight_total--;
}

static int h2_on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
    conn *c = ud;
    sload_client *cl = c->cl;
    inflight *e = h2_slot(s, stream_id);
    if (!e || c->state != CS_OPEN)
        return 0;
    uint64_t origin = e->origin, sent = e->sent;
    int status = e->status;
    bool ended = e->ended, local = e->local_rst;
    h2_release(c, e);
    if (ended) {
        record_completion(c, origin, sent, status);
        return 0;
    }
    c->completions++; /* a free slot */
    if (error_code == NGHTTP2_REFUSED_STREAM)
        requeue_origin(cl, origin); /* not processed: send it again */
    else if (in_window(cl, origin))
        count_error(cl, local || c->h2_error ? SLOAD_ERR_PARSE : SLOAD_ERR_READ, 1);
    return 0;
}

/* A request's HEADERS could not be sent (after a GOAWAY, say): again. */
static int h2_on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    (void)s;
    (void)lib_error;
    conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || c->state != CS_OPEN)
        return 0;
    for (unsigned i = 0; i < c->cl->cfg.pipeline; i++) {
        inflight *e = &c->q[i];
        if (e->stream_id == f->hd.stream_id) {
            uint64_t origin = e->origin;
            h2_release(c, e);
            c->completions++;
            requeue_origin(c->cl, origin);
            break;
        }
    }
    return 0;
}

static ssize_t h2_body_read(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
    (void)source;
    conn *c = ud;
    const sload_client_config *cfg = &c->cl->cfg;
    inflight *e = h2_slot(s, stream_id);
    if (!e)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = cfg->body_len - e->body_off;
    if (n > length)
        n = length;
    memcpy(buf, cfg->body + e->body_off, n);
    e->body_off += n;
    if (e->body_off == cfg->body_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int h2_start(conn *c)
{
    sload_client *cl = c->cl;
    if (nghttp2_session_client_new(&c->h2, cl->h2cb, c) != 0)
        return -ENOMEM;
    /* Generous windows: the client never throttles the server. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_WINDOW) != 0)
        return -ENOMEM;
    slots_reset(c);
    return 0;
}

/* ---- input -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    *buf = uv_buf_init(c->cl->rbuf, READ_BUF_SIZE);
}

/* After a read: a response said Connection: close, or the peer closed. */
static void conn_end_clean(conn *c)
{
    requeue_inflight(c);
    conn_close(c, false);
}

/* Protocol bytes (plaintext). True while the connection stays open. */
static bool conn_input(conn *c, const char *p, size_t n)
{
    if (c->cl->cfg.ws)
        return ws_input(c, (char *)p, n); /* our read buffer: unmasking needs no copy */
    if (c->h2) {
        ssize_t r = nghttp2_session_mem_recv(c->h2, (const uint8_t *)p, n);
        if (r < 0) {
            fail_inflight(c, SLOAD_ERR_PARSE, 1);
            conn_close(c, false);
            return false;
        }
        return c->state == CS_OPEN;
    }
    llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
    if (err == HPE_PAUSED && c->close_after) {
        conn_end_clean(c);
        return false;
    }
    if (err != HPE_OK) {
        fail_inflight(c, SLOAD_ERR_PARSE, 1);
        conn_close(c, false);
        return false;
    }
    return true;
}

/* Once the bytes read are consumed: new requests where some finished, and
 * (HTTP/2) whatever the session wants to send. */
static void after_input(conn *c)
{
    for (int round = 0; round < 8 && c->state == CS_OPEN; round++) {
        if (c->h2 && c->close_after && c->qlen == 0) {
            conn_end_clean(c); /* GOAWAY, and every stream answered */
            return;
        }
        if (c->completions) {
            c->completions = 0;
            conn_became_available(c);
            if (c->state != CS_OPEN)
                return;
        }
        /* HTTP/2: what the session has to send (SETTINGS ACK, WINDOW_UPDATE,
         * new streams); sending a RST_STREAM finishes a stream: again. */
        if (c->h2 && !h2_pump(c))
            return;
        if (c->completions == 0)
            break;
    }
    if (c->state != CS_OPEN)
        return;
    if (c->h2) {
        if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
            /* the session is over (GOAWAY sent or received) */
            if (c->qlen)
                fail_inflight(c, c->h2_error ? SLOAD_ERR_PARSE : SLOAD_ERR_READ, 1);
            conn_close(c, c->h2_error || c->answered == 0);
        }
    } else if (c->olen) {
        sock_flush(c);
    }
}

/* The peer closed (or reset) the connection, or sent a TLS close_notify. */
static void conn_eof(conn *c, ssize_t nread)
{
    sload_client *cl = c->cl;
    if (c->ws_closing) {
        conn_close(c, false); /* closed after (or instead of) its close frame */
        return;
    }
    if (c->ws_upgrading) {
        ws_handshake_fail(c, "the server closed the connection during the WebSocket handshake");
        return;
    }
    if (nread == UV_EOF && !c->h2 && !cl->cfg.ws) {
        /* A body delimited by the end of the connection ends here. */
        c->completions = 0;
        llhttp_errno_t err = llhttp_finish(&c->parser);
        /* HPE_INVALID_EOF_STATE: cut short mid-response, a read error below. */
        if (err != HPE_OK && err != HPE_PAUSED && err != HPE_INVALID_EOF_STATE) {
            fail_inflight(c, SLOAD_ERR_PARSE, 1);
            conn_close(c, false);
            return;
        }
        if (c->close_after) {
            conn_end_clean(c);
            return;
        }
    }
    /* Closed or reset with requests outstanding: they failed. Without
     * any, the server merely ended an idle keep-alive connection, unless it
     * closed a connection it had just accepted (at its connection limit,
     * say): a connect error, retried after a backoff, not in a tight loop. */
    if (c->fresh && c->qlen == 0 && uv_hrtime() - c->connect_start < 1000000000u) {
        count_error(cl, SLOAD_ERR_CONNECT, 1);
        conn_close(c, true);
        return;
    }
    fail_inflight(c, SLOAD_ERR_READ, 0);
    conn_close(c, c->answered == 0); /* never answered: back off */
}

static bool tls_handshake(conn *c);

/* Ciphertext is in c->tio: plaintext to the protocol. True while open. */
static bool tls_input(conn *c)
{
    sload_client *cl = c->cl;
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, cl->pbuf, READ_BUF_SIZE);
        if (r > 0) {
            if (!conn_input(c, cl->pbuf, (size_t)r))
                return false;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return true;
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_eof(c, UV_EOF);
            return false;
        }
        tls_failed(c, r);
        return false;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    sload_client *cl = c->cl;
    if (c->state != CS_OPEN && c->state != CS_HANDSHAKE)
        return;
    if (nread > 0) {
        if (cl->phase == PH_RUN && in_window(cl, uv_hrtime()))
            cl->st.bytes_read += (uint64_t)nread;
        c->completions = 0;
        if (!c->ssl) {
            if (conn_input(c, buf->base, (size_t)nread))
                after_input(c);
            return;
        }
        c->tio.in = buf->base;
        c->tio.in_len = (size_t)nread;
        bool open = c->state == CS_OPEN || tls_handshake(c);
        if (open && tls_input(c))
            after_input(c);
        c->tio.in_len = 0;
        return;
    }
    if (nread == 0)
        return;
    if (c->state == CS_HANDSHAKE) {
        handshake_fail(c, nread == UV_EOF ? "the server closed the connection during the handshake"
                                          : uv_strerror((int)nread));
        return;
    }
    conn_eof(c, nread);
}

/* ---- connection set-up ---------------------------------------------------- */

static void first_outcome(conn *c)
{
    if (!c->first_done) {
        c->first_done = true;
        c->cl->pending_first--;
    }
}

/* TCP connected (and TLS handshake done): ready for requests. */
static void conn_ready(conn *c)
{
    sload_client *cl = c->cl;
    uint64_t now = uv_hrtime();
    uv_timer_stop(&c->timer);
    c->tmode = TM_NONE;
    if (!cl->cfg.ws)
        first_outcome(c); /* WebSocket: once the handshake is done */
    c->state = CS_OPEN;
    c->fresh = true;
    c->close_after = false;
    c->h2_error = false;
    c->ws_closing = false;
    c->answered = 0;
    cl->st.connects++;
    if (cl->cfg.ws) {
        llhttp_init(&c->parser, HTTP_RESPONSE, &cl->settings); /* unused, but initialised */
        ws_handshake_start(c);
        return;
    }
    if (in_window(cl, c->connect_start)) {
        sload_hist_record(cl->st.connect, (now - c->connect_start + 500) / 1000);
        cl->st.connects_window++;
    }
    if (cl->cfg.h2) {
        if (h2_start(c) < 0) {
            count_error(cl, SLOAD_ERR_CONNECT, 1);
            conn_close(c, true);
            return;
        }
    } else {
        llhttp_init(&c->parser, HTTP_RESPONSE, &cl->settings);
        c->parser.data = c;
    }
    conn_became_available(c);
    if (c->state == CS_OPEN && c->h2)
        h2_pump(c); /* the preface and SETTINGS, requests or not */
}

static void handshake_fail(conn *c, const char *why)
{
    fail_handshake(c, SLOAD_ERR_TLS, c->cl->st.tls_error, sizeof c->cl->st.tls_error, why);
}

/* Advances the handshake with what c->tio holds. True once the connection
 * is open (application data may follow in c->tio). */
static bool tls_handshake(conn *c)
{
    sload_client *cl = c->cl;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ) {
            sock_flush(c);
            return false;
        }
        char msg[sizeof cl->st.tls_error];
        sload_tls_error(c->ssl, r, msg, sizeof msg);
        handshake_fail(c, msg);
        return false;
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (cl->cfg.h2 && !(alpn_len == 2 && memcmp(alpn, "h2", 2) == 0)) {
        handshake_fail(c, "the server did not choose h2 by ALPN");
        return false;
    }
    if (SSL_session_reused(c->ssl))
        cl->st.tls_resumed++;
    if (!cl->st.tls_info[0])
        snprintf(cl->st.tls_info, sizeof cl->st.tls_info, "%s %s%s%.*s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl), alpn_len ? ", ALPN " : "", (int)alpn_len, (const char *)alpn);
    if (!sock_flush(c)) /* the client's Finished */
        return false;
    conn_ready(c);
    return c->state == CS_OPEN;
}

static bool tls_start(conn *c)
{
    sload_client *cl = c->cl;
    c->ssl = SSL_new(cl->cfg.tls_ctx);
    c->tio = (sload_tls_io){.out = tls_out, .arg = c};
    BIO *b = c->ssl ? sload_tls_bio_new(&c->tio) : NULL;
    if (!b) {
        handshake_fail(c, "out of memory");
        return false;
    }
    BIO_up_ref(b);
    SSL_set0_rbio(c->ssl, b);
    SSL_set0_wbio(c->ssl, b);
    SSL_set_connect_state(c->ssl);
    SSL_set_app_data(c->ssl, c);
    const char *host = cl->cfg.tls_host;
    if (!cl->host_is_ip)
        SSL_set_tlsext_host_name(c->ssl, host);
    if (cl->cfg.tls_verify) {
        int ok = cl->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host)
                                : SSL_set1_host(c->ssl, host);
        if (ok != 1) {
            handshake_fail(c, "cannot set the name to verify");
            return false;
        }
    }
    if (cl->cfg.tls_resume) {
        /* The newest session still resumable. TLS 1.3 tickets are used
         * once (OpenSSL will not offer one again): taken off the pool. */
        while (cl->nsessions > 0) {
            SSL_SESSION *s = cl->sessions[cl->nsessions - 1];
            if (!SSL_SESSION_is_resumable(s)) {
                cl->nsessions--;
                SSL_SESSION_free(s);
                continue;
            }
            SSL_set_session(c->ssl, s); /* takes its own reference */
            if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
                cl->nsessions--;
                SSL_SESSION_free(s);
            }
            break;
        }
    }
    c->state = CS_HANDSHAKE;
    c->tio.in_len = 0;
    tls_handshake(c); /* ClientHello */
    return true;
}

int sload_client_on_tls_session(struct ssl_st *ssl, struct ssl_session_st *sess)
{
    conn *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    sload_client *cl = c->cl;
    if (cl->nsessions == SESSION_POOL) {
        SSL_SESSION_free(cl->sessions[0]);
        memmove(cl->sessions, cl->sessions + 1, (SESSION_POOL - 1) * sizeof cl->sessions[0]);
        cl->nsessions--;
    }
    cl->sessions[cl->nsessions++] = sess;
    return 1;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    sload_client *cl = c->cl;
    if (status == UV_ECANCELED || c->state != CS_CONNECTING)
        return;
    if (status < 0) {
        first_outcome(c);
        count_error(cl, SLOAD_ERR_CONNECT, 1);
        conn_close(c, true);
        return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0) {
        first_outcome(c);
        count_error(cl, SLOAD_ERR_READ, 1);
        conn_close(c, true);
        return;
    }
    if (cl->cfg.tls_ctx)
        tls_start(c); /* the connect timeout also bounds the handshake */
    else
        conn_ready(c);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    sload_client *cl = c->cl;
    switch (c->tmode) {
    case TM_CONNECT:
        if (c->state == CS_CONNECTING) {
            first_outcome(c);
            count_error(cl, SLOAD_ERR_CONNECT, 1);
            conn_close(c, true);
        } else if (c->state == CS_HANDSHAKE) {
            handshake_fail(c, "the handshake timed out");
        } else if (c->state == CS_OPEN && c->ws_upgrading) {
            ws_handshake_fail(c, "the WebSocket handshake timed out");
        }
        break;
    case TM_WS_CLOSE:
        if (c->state == CS_OPEN)
            conn_close(c, false); /* no close frame from the server in time */
        break;
    case TM_BACKOFF:
        if (c->state == CS_CLOSED && cl->phase <= PH_RUN)
            conn_connect(c);
        break;
    case TM_RESPONSE:
        if (c->state != CS_OPEN || c->qlen == 0)
            break;
        {
            uint64_t now = uv_hrtime();
            uint64_t oldest = UINT64_MAX;
            unsigned it = 0;
            for (inflight *e; (e = inflight_next(c, &it));)
                if (e->sent < oldest)
                    oldest = e->sent;
            uint64_t deadline = oldest + cl->cfg.response_timeout_ns;
            if (now >= deadline) {
                fail_inflight(c, SLOAD_ERR_TIMEOUT, 1);
                conn_close(c, false);
            } else {
                timer_start(c, TM_RESPONSE, ns_to_ms_ceil(deadline - now));
            }
        }
        break;
    case TM_NONE:
        break;
    }
}

/* Protocol and TLS state of a closed connection. */
static void conn_release(conn *c)
{
    if (c->ssl) {
        /* as if shut down properly: OpenSSL would otherwise mark the
         * session not resumable (--tls-resume) */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->h2) {
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
    }
    ws_parser_free(c->wsp);
    c->wsp = NULL;
    c->ws_upgrading = c->ws_closing = false;
    c->olen = 0;
    c->wq_bytes = 0;
    c->seg_head = c->seg_len = 0;
    c->seg_off = 0;
}

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    sload_client *cl = c->cl;
    conn_release(c);
    c->state = CS_CLOSED;
    cl->nactive--;
    if (cl->phase >= PH_DRAIN) {
        maybe_finish(cl);
        return;
    }
    if (c->backoff) {
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (c->backoff_ms > BACKOFF_MAX_MS)
            c->backoff_ms = BACKOFF_MAX_MS;
        timer_start(c, TM_BACKOFF, c->backoff_ms);
    } else {
        conn_connect(c);
    }
}

/* Closes c; its SSL and HTTP/2 session go once libuv has closed the handle
 * (this may run inside their calls). */
static void conn_close(conn *c, bool backoff)
{
    if (c->state == CS_CLOSED || c->state == CS_CLOSING)
        return;
    ready_remove(c);
    uv_timer_stop(&c->timer);
    c->tmode = TM_NONE;
    if (c->qlen)
        requeue_inflight(c); /* callers fail or requeue first; never leak counts */
    c->state = CS_CLOSING;
    c->backoff = backoff;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_connect(conn *c)
{
    sload_client *cl = c->cl;
    int r = uv_tcp_init(&cl->loop, &c->tcp);
    if (r < 0) {
        count_error(cl, SLOAD_ERR_CONNECT, 1);
        timer_start(c, TM_BACKOFF, BACKOFF_MAX_MS);
        return;
    }
    c->tcp.data = c;
    c->creq.data = c;
    c->state = CS_CONNECTING;
    c->qhead = c->qlen = 0;
    cl->nactive++;
    uv_tcp_nodelay(&c->tcp, 1);
    c->connect_start = uv_hrtime();
    r = uv_tcp_connect(&c->creq, &c->tcp, cl->cfg.addr, on_connect);
    if (r < 0) {
        first_outcome(c);
        count_error(cl, SLOAD_ERR_CONNECT, 1);
        conn_close(c, true);
        return;
    }
    timer_start(c, TM_CONNECT, ns_to_ms_ceil(cl->cfg.connect_timeout_ns));
}


/* ---- open-loop schedule -------------------------------------------------- */

static inline uint64_t due_time(const sload_client *cl, uint64_t k)
{
    return cl->start_ns + (uint64_t)(((double)k + cl->cfg.phase) * cl->interval_ns);
}

#ifndef SLOAD_TIMERFD
static void on_sched_timer(uv_timer_t *t);
#endif

static void sched_arm(sload_client *cl, uint64_t at_ns)
{
#ifdef SLOAD_TIMERFD
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at_ns / 1000000000u);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000u);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;
    timerfd_settime(cl->tfd, TFD_TIMER_ABSTIME, &its, NULL);
#else
    uint64_t now = uv_hrtime();
    uv_timer_start(&cl->sched_timer, on_sched_timer, at_ns > now ? ns_to_ms_ceil(at_ns - now) : 0, 0);
#endif
    cl->sched_armed = true;
}

static void dispatch(sload_client *cl)
{
    if (cl->phase != PH_RUN || !cl->open_loop)
        return;
    uint64_t now = uv_hrtime();
    uint64_t batch[64];
    for (;;) {
        conn *c = cl->ready_head;
        if (!c)
            break;
        unsigned room = cl->cfg.pipeline - c->qlen;
        if (!cl->cfg.keepalive)
            room = c->fresh && c->qlen == 0 ? 1 : 0;
        if (room > 64)
            room = 64;
        unsigned n = 0;
        while (n < room) {
            if (cl->rq_len) {
                batch[n++] = cl->requeue[cl->rq_head];
                cl->rq_head = (cl->rq_head + 1) % cl->rq_cap;
                cl->rq_len--;
            } else if (cl->next_k < cl->k_limit && due_time(cl, cl->next_k) <= now) {
                batch[n++] = due_time(cl, cl->next_k);
                cl->next_k++;
            } else {
                break;
            }
        }
        if (n == 0)
            break;
        ready_remove(c);
        if (conn_send(c, n, batch))
            ready_push(c); /* back at the tail if it has room left */
    }
    /* Due but unsent. */
    uint64_t backlog = cl->rq_len;
    if (cl->next_k < cl->k_limit && due_time(cl, cl->next_k) <= now) {
        uint64_t due_to = (uint64_t)(((double)(now - cl->start_ns)) / cl->interval_ns - cl->cfg.phase) + 1;
        if (due_to > cl->k_limit)
            due_to = cl->k_limit;
        if (due_to > cl->next_k)
            backlog += due_to - cl->next_k;
    }
    atomic_store_explicit(&cl->live_backlog, backlog, memory_order_relaxed);
    if (cl->next_k < cl->k_limit) {
        uint64_t t = due_time(cl, cl->next_k);
        if (t > now)
            sched_arm(cl, t);
        /* else: due requests wait for a connection; a completion or a new
         * connection calls dispatch again. */
    } else if (cl->rq_len == 0 && cl->inflight_total == 0 &&
               (cl->cfg.duration_ns == 0 || cl->k_limit == cl->cfg.requests)) {
        begin_drain(cl); /* -n: every scheduled request is done (-d: the window runs on) */
    }
}

#ifdef SLOAD_TIMERFD
static void on_sched(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    sload_client *cl = p->data;
    uint64_t expirations;
    ssize_t r = read(cl->tfd, &expirations, sizeof expirations);
    (void)r;
    cl->sched_armed = false;
    dispatch(cl);
}
#else
static void on_sched_timer(uv_timer_t *t)
{
    sload_client *cl = t->data;
    cl->sched_armed = false;
    dispatch(cl);
}
#endif

/* ---- phases -------------------------------------------------------------- */

static void on_end_timer(uv_timer_t *t);

static void begin_drain(sload_client *cl)
{
    if (cl->phase >= PH_DRAIN)
        return;
    uint64_t now = uv_hrtime();
    bool was_running = cl->phase == PH_RUN;
    cl->window_end_ns = now < cl->end_ns ? now : cl->end_ns;
    if (!was_running)
        cl->window_end_ns = cl->measure_ns = now;
    cl->phase = PH_DRAIN;
    atomic_store(&cl->live_warming, false);
    if (cl->open_loop && was_running) {
        /* How much of the schedule fell in the window, and was left unsent. */
        uint64_t end = cl->window_end_ns;
        uint64_t first = 0, last = 0;
        if (cl->measure_ns > cl->start_ns)
            first = (uint64_t)ceil(((double)(cl->measure_ns - cl->start_ns)) / cl->interval_ns - cl->cfg.phase);
        if (end > cl->start_ns)
            last = (uint64_t)ceil(((double)(end - cl->start_ns)) / cl->interval_ns - cl->cfg.phase);
        if (last > cl->k_limit)
            last = cl->k_limit;
        cl->st.scheduled = last > first ? last - first : 0;
        cl->st.backlog_end = cl->rq_len + (last > cl->next_k ? last - cl->next_k : 0);
        if (cl->st.backlog_end) {
            uint64_t oldest = cl->rq_len ? cl->requeue[cl->rq_head] : due_time(cl, cl->next_k);
            cl->st.backlog_oldest_ns = end > oldest ? end - oldest : 0;
        }
#ifdef SLOAD_TIMERFD
        struct itimerspec its = {0};
        timerfd_settime(cl->tfd, 0, &its, NULL);
#else
        uv_timer_stop(&cl->sched_timer);
#endif
    }
    cl->ready_head = cl->ready_tail = NULL;
    for (unsigned i = 0; i < cl->cfg.connections; i++) {
        conn *c = &cl->conns[i];
        c->in_ready = false;
        if (c->state == CS_CLOSED) {
            uv_timer_stop(&c->timer);
        } else if (c->qlen == 0) {
            conn_finish(c);
        }
    }
    /* In-flight requests have their own response timeouts; this bounds the
     * whole drain in case of anything unforeseen. */
    uv_timer_start(&cl->end_timer, on_end_timer,
                   ns_to_ms_ceil(cl->cfg.response_timeout_ns) + DRAIN_GRACE_MS, 0);
    maybe_finish(cl);
}

static void on_end_timer(uv_timer_t *t)
{
    sload_client *cl = t->data;
    if (cl->phase == PH_RUN && cl->cfg.duration_ns == 0) {
        /* watchdog */
        uint64_t progress = cl->st.completed + cl->st.sent;
        for (int k = 0; k < SLOAD_ERR_COUNT; k++)
            progress += k == SLOAD_ERR_CONNECT || k == SLOAD_ERR_TLS ? 0 : cl->st.errors[k];
        if (progress == cl->watchdog_seen && cl->inflight_total == 0) {
            cl->st.stalled = true;
            begin_drain(cl);
        }
        cl->watchdog_seen = progress;
        return;
    }
    if (cl->phase == PH_RUN) {
        uint64_t now = uv_hrtime();
        if (now < cl->end_ns) { /* uv timers run on a millisecond clock: early */
            uv_timer_start(&cl->end_timer, on_end_timer, ns_to_ms_ceil(cl->end_ns - now), 0);
            return;
        }
        begin_drain(cl);
        return;
    }
    if (cl->phase == PH_DRAIN) {
        for (unsigned i = 0; i < cl->cfg.connections; i++) {
            conn *c = &cl->conns[i];
            cl->st.unfinished += c->qlen;
            q_clear(c);
            conn_close(c, false);
        }
    }
}

static void noop_close(uv_handle_t *h)
{
    (void)h;
}

static void maybe_finish(sload_client *cl)
{
    if (cl->phase != PH_DRAIN || cl->nactive > 0)
        return;
    cl->phase = PH_DONE;
    uv_close((uv_handle_t *)&cl->end_timer, noop_close);
    uv_close((uv_handle_t *)&cl->stop_async, noop_close);
#ifdef SLOAD_TIMERFD
    uv_close((uv_handle_t *)&cl->tpoll, noop_close);
#else
    uv_close((uv_handle_t *)&cl->sched_timer, noop_close);
#endif
    for (unsigned i = 0; i < cl->cfg.connections; i++)
        uv_close((uv_handle_t *)&cl->conns[i].timer, noop_close);
}

static void on_stop(uv_async_t *a)
{
    sload_client *cl = a->data;
    if (cl->phase == PH_RUN || cl->phase == PH_CONNECT)
        begin_drain(cl);
}

/* ---- object -------------------------------------------------------------- */

int sload_client_new(sload_client **out, const sload_client_config *cfg)
{
    *out = NULL;
    if (cfg->connections == 0 || cfg->pipeline == 0)
        return -EINVAL;
    sload_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return -ENOMEM;
    cl->cfg = *cfg;
    cl->open_loop = cfg->rate > 0;
#ifdef SLOAD_TIMERFD
    cl->tfd = -1;
#endif
    int r = -ENOMEM;
    cl->conns = calloc(cfg->connections, sizeof *cl->conns);
    cl->rbuf = malloc(READ_BUF_SIZE);
    cl->iov = calloc((size_t)cfg->pipeline * 2 + 2, sizeof *cl->iov);
    if (!cl->conns || !cl->rbuf || !cl->iov)
        goto fail;
    for (unsigned i = 0; i < cfg->connections; i++) {
        conn *c = &cl->conns[i];
        c->cl = cl;
        c->q = calloc(cfg->pipeline, sizeof(inflight));
        if (!c->q)
            goto fail;
        if (cfg->h2 && !(c->qfree = calloc(cfg->pipeline, sizeof *c->qfree)))
            goto fail;
        if (cfg->tls_ctx && !cfg->h2 && !(c->segs = calloc(2 * (size_t)cfg->pipeline + 2, sizeof *c->segs)))
            goto fail;
    }
    if (cfg->tls_ctx) {
        unsigned char addr[16];
        cl->host_is_ip = inet_pton(AF_INET, cfg->tls_host, addr) == 1 || inet_pton(AF_INET6, cfg->tls_host, addr) == 1;
        cl->pbuf = malloc(READ_BUF_SIZE);
        cl->stage = malloc(STAGE_SIZE);
        if (!cl->pbuf || !cl->stage)
            goto fail;
    }
    if (cfg->h2) {
        const sload_h2_header *hs = cfg->h2_headers;
        cl->nv = calloc(cfg->h2_nheaders, sizeof *cl->nv);
        if (!cl->nv || nghttp2_session_callbacks_new(&cl->h2cb) != 0)
            goto fail;
        for (size_t i = 0; i < cfg->h2_nheaders; i++)
            cl->nv[i] = (nghttp2_nv){(uint8_t *)hs[i].name, (uint8_t *)hs[i].value, hs[i].name_len, hs[i].value_len,
                                     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
        cl->nvlen = cfg->h2_nheaders;
        nghttp2_session_callbacks_set_on_header_callback(cl->h2cb, h2_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cl->h2cb, h2_on_frame_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cl->h2cb, h2_on_frame_send);
        nghttp2_session_callbacks_set_on_frame_not_send_callback(cl->h2cb, h2_on_frame_not_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cl->h2cb, h2_on_stream_close);
        cl->prd.read_callback = h2_body_read;
    }
    if (cfg->ws) {
        size_t most = cfg->ws_msg_len > WS_CONTROL_MAX ? cfg->ws_msg_len : WS_CONTROL_MAX;
        cl->ws_out = malloc(WS_HEAD_MAX + most);
        cl->ws_req = malloc(cfg->head_len);
        if (!cl->ws_out || !cl->ws_req || cfg->ws_key_off + 24 > cfg->head_len)
            goto fail;
        if (RAND_bytes((unsigned char *)&cl->ws_rng, sizeof cl->ws_rng) != 1 || cl->ws_rng == 0)
            cl->ws_rng = uv_hrtime() | 1;
    }
    if (cl->open_loop) {
        cl->rq_cap = (size_t)cfg->connections * cfg->pipeline;
        cl->requeue = calloc(cl->rq_cap, sizeof *cl->requeue);
        if (!cl->requeue)
            goto fail;
    }
    if ((r = sload_hist_new(&cl->st.latency, SLOAD_HIST_HIGHEST)) < 0 ||
        (r = sload_hist_new(&cl->st.service, SLOAD_HIST_HIGHEST)) < 0 ||
        (r = sload_hist_new(&cl->st.lag, SLOAD_HIST_HIGHEST)) < 0 ||
        (r = sload_hist_new(&cl->st.connect, SLOAD_HIST_HIGHEST)) < 0)
        goto fail;
    llhttp_settings_init(&cl->settings);
    cl->settings.on_message_begin = on_message_begin;
    cl->settings.on_headers_complete = on_headers_complete;
    cl->settings.on_message_complete = on_message_complete;

    if ((r = uv_loop_init(&cl->loop)) < 0)
        goto fail;
    cl->loop_ready = true;
    if ((r = uv_async_init(&cl->loop, &cl->stop_async, on_stop)) < 0)
        goto fail;
    cl->stop_async.data = cl;
    uv_timer_init(&cl->loop, &cl->end_timer);
    cl->end_timer.data = cl;
#ifdef SLOAD_TIMERFD
    cl->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (cl->tfd < 0) {
        r = -errno;
        goto fail;
    }
    if ((r = uv_poll_init(&cl->loop, &cl->tpoll, cl->tfd)) < 0)
        goto fail;
    cl->tpoll.data = cl;
#else
    uv_timer_init(&cl->loop, &cl->sched_timer);
    cl->sched_timer.data = cl;
#endif
    for (unsigned i = 0; i < cfg->connections; i++) {
        uv_timer_init(&cl->loop, &cl->conns[i].timer);
        cl->conns[i].timer.data = &cl->conns[i];
    }
    atomic_init(&cl->live_completed, 0);
    atomic_init(&cl->live_errors, 0);
    atomic_init(&cl->live_backlog, 0);
    atomic_init(&cl->live_warming, true);
    atomic_init(&cl->finished, false);
    cl->phase = PH_CONNECT;
    cl->end_ns = UINT64_MAX;
    *out = cl;
    return 0;
fail:
    if (r == 0)
        r = -ENOMEM;
    sload_client_free(cl);
    return r;
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, noop_close);
}

void sload_client_free(sload_client *cl)
{
    if (!cl)
        return;
    if (cl->loop_ready) {
        /* Normally every handle is closed by now; after a failed start, close
         * whatever is open, then the loop. */
        uv_walk(&cl->loop, close_any, NULL);
        uv_run(&cl->loop, UV_RUN_DEFAULT);
        uv_loop_close(&cl->loop);
    }
#ifdef SLOAD_TIMERFD
    if (cl->tfd >= 0)
        close(cl->tfd);
#endif
    while (cl->wfree) {
        wreq *w = cl->wfree;
        cl->wfree = w->next;
        free(w->buf);
        free(w);
    }
    if (cl->conns)
        for (unsigned i = 0; i < cl->cfg.connections; i++) {
            conn *c = &cl->conns[i];
            conn_release(c);
            free(c->q);
            free(c->qfree);
            free(c->segs);
            free(c->obuf);
            free(c->ws_head);
        }
    free(cl->conns);
    free(cl->rbuf);
    free(cl->pbuf);
    free(cl->stage);
    free(cl->ws_out);
    free(cl->ws_req);
    free(cl->nv);
    if (cl->h2cb)
        nghttp2_session_callbacks_del(cl->h2cb);
    for (unsigned i = 0; i < cl->nsessions; i++)
        SSL_SESSION_free(cl->sessions[i]);
    free(cl->iov);
    free(cl->requeue);
    sload_hist_free(cl->st.latency);
    sload_hist_free(cl->st.service);
    sload_hist_free(cl->st.lag);
    sload_hist_free(cl->st.connect);
    free(cl);
}

int sload_client_run(sload_client *cl)
{
    const sload_client_config *cfg = &cl->cfg;
    cl->pending_first = cfg->connections;
    for (unsigned i = 0; i < cfg->connections; i++)
        conn_connect(&cl->conns[i]);
    /* Connect first (bounded by the connect timeout), so that the window
     * does not start with connections still being set up. */
    while (cl->pending_first > 0 && cl->phase == PH_CONNECT)
        uv_run(&cl->loop, UV_RUN_ONCE);

    uint64_t start = gate_arrive(cfg->gate, cfg->connect_timeout_ns + 10ull * 1000000000u);
    if (cl->phase == PH_CONNECT) {
        cl->start_ns = start;
        cl->measure_ns = start + cfg->warmup_ns;
        cl->end_ns = cfg->duration_ns ? cl->measure_ns + cfg->duration_ns : UINT64_MAX;
        cl->phase = PH_RUN;
        atomic_store(&cl->live_warming, cfg->warmup_ns > 0);
        if (cl->open_loop) {
            cl->interval_ns = 1e9 / cfg->rate;
            cl->k_limit = UINT64_MAX;
            if (cfg->requests)
                cl->k_limit = cfg->requests;
            if (cfg->duration_ns) {
                /* due strictly before the end of the window */
                double span = (double)(cl->end_ns - cl->start_ns) / cl->interval_ns - cfg->phase;
                uint64_t n = span > 0 ? (uint64_t)ceil(span) : 0;
                if (n < cl->k_limit)
                    cl->k_limit = n;
            }
#ifdef SLOAD_TIMERFD
            uv_poll_start(&cl->tpoll, UV_READABLE, on_sched);
#endif
        }
        if (cfg->duration_ns) {
            uint64_t now = uv_hrtime();
            uint64_t end = cl->end_ns > now ? cl->end_ns - now : 0;
            uv_timer_start(&cl->end_timer, on_end_timer, ns_to_ms_ceil(end), 0);
        } else {
            /* -n without -d: give up when nothing moves for a whole timeout. */
            uint64_t period = cfg->response_timeout_ns > cfg->connect_timeout_ns ? cfg->response_timeout_ns
                                                                                  : cfg->connect_timeout_ns;
            uv_timer_start(&cl->end_timer, on_end_timer, ns_to_ms_ceil(period), ns_to_ms_ceil(period));
        }
        for (unsigned i = 0; i < cfg->connections; i++)
            if (cl->conns[i].state == CS_OPEN)
                conn_became_available(&cl->conns[i]);
        if (cl->open_loop)
            dispatch(cl);
        else if (cfg->budget && cl->inflight_total == 0 && atomic_load(cfg->budget) <= 0)
            begin_drain(cl);
    }
    uv_run(&cl->loop, UV_RUN_DEFAULT);
    atomic_store(&cl->finished, true);
    if (cl->window_end_ns > cl->measure_ns)
        cl->st.window_ns = cl->window_end_ns - cl->measure_ns;
    if (cfg->on_done)
        cfg->on_done(cfg->on_done_arg);
    return 0;
}

void sload_client_stop(sload_client *cl)
{
    if (!atomic_load(&cl->finished))
        uv_async_send(&cl->stop_async);
}

const sload_stats *sload_client_stats(const sload_client *cl)
{
    return &cl->st;
}

void sload_client_live(const sload_client *cl, sload_live *out)
{
    out->completed = atomic_load_explicit(&cl->live_completed, memory_order_relaxed);
    out->errors = atomic_load_explicit(&cl->live_errors, memory_order_relaxed);
    out->backlog = atomic_load_explicit(&cl->live_backlog, memory_order_relaxed);
    out->warming = atomic_load_explicit(&cl->live_warming, memory_order_relaxed);
}
