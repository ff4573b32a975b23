/* One load-generating thread: see client.h. */
#include "client.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#ifdef __linux__
#include <sys/timerfd.h>
#define SLOAD_TIMERFD 1
#endif

#define READ_BUF_SIZE (64 * 1024)
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define DRAIN_GRACE_MS 1000

const char *sload_error_name(sload_error_kind k)
{
    static const char *names[SLOAD_ERR_COUNT] = {"connect", "read", "write", "timeout", "parse"};
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

enum conn_state { CS_CLOSED, CS_CONNECTING, CS_OPEN, CS_CLOSING };
enum timer_mode { TM_NONE, TM_CONNECT, TM_RESPONSE, TM_BACKOFF };
enum phase { PH_CONNECT, PH_RUN, PH_DRAIN, PH_DONE };

typedef struct {
    uint64_t origin;   /* latency runs from here: due time (open loop) or send time */
    uint64_t sent;
} inflight;

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
    bool close_after;        /* the last response said Connection: close */
    bool backoff;            /* reconnect after a delay */
    bool in_ready;
    conn *rnext, *rprev;
    uint64_t connect_start;
    unsigned backoff_ms;
    uint64_t answered;       /* responses on this connection */
    int status;              /* of the response being parsed */
    unsigned completions;    /* in the current read */
    inflight *q;             /* ring of `pipeline` entries */
    unsigned qhead, qlen;
};

typedef struct wreq {
    uv_write_t req;
    struct wreq *next;
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

static inline inflight *q_at(conn *c, unsigned i)
{
    return &c->q[(c->qhead + i) % c->cl->cfg.pipeline];
}

static void q_clear(conn *c)
{
    c->cl->inflight_total -= c->qlen;
    c->qhead = c->qlen = 0;
}

/* Fails every request in flight on c (at least `min` errors). */
static void fail_inflight(conn *c, sload_error_kind k, uint64_t min)
{
    sload_client *cl = c->cl;
    uint64_t n = 0;
    for (unsigned i = 0; i < c->qlen; i++)
        if (in_window(cl, q_at(c, i)->origin))
            n++;
    if (n < min && in_window(cl, uv_hrtime()))
        n = min;
    count_error(cl, k, n);
    q_clear(c);
}

/* Requests sent after a response that closed the connection were never
 * processed: send them again (open loop: keep their due time). */
static void requeue_inflight(conn *c)
{
    sload_client *cl = c->cl;
    for (unsigned i = 0; i < c->qlen; i++) {
        inflight *e = q_at(c, i);
        if (cl->open_loop) {
            if (cl->rq_len < cl->rq_cap) {
                cl->requeue[(cl->rq_head + cl->rq_len) % cl->rq_cap] = e->origin;
                cl->rq_len++;
            }
        } else if (cl->cfg.budget) {
            atomic_fetch_add(cl->cfg.budget, 1);
        }
        cl->st.resent++;
    }
    q_clear(c);
}

static wreq *wreq_get(sload_client *cl)
{
    wreq *w = cl->wfree;
    if (w) {
        cl->wfree = w->next;
        return w;
    }
    return malloc(sizeof *w);
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *c = req->handle->data;
    sload_client *cl = c->cl;
    w->next = cl->wfree;
    cl->wfree = w;
    if (status < 0 && status != UV_ECANCELED && c->state == CS_OPEN) {
        fail_inflight(c, SLOAD_ERR_WRITE, 1);
        conn_close(c, false);
    }
}

static void on_timer(uv_timer_t *t);

static void timer_start(conn *c, enum timer_mode m, uint64_t ms)
{
    c->tmode = m;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* Writes n requests on c. origins: their due times, or NULL for "now"
 * (closed loop). Returns false if the connection failed. */
static bool conn_send(conn *c, unsigned n, const uint64_t *origins)
{
    sload_client *cl = c->cl;
    const sload_client_config *cfg = &cl->cfg;
    uint64_t now = uv_hrtime();
    uint64_t closed_origin = now;
    if (c->fresh && !cfg->keepalive && c->connect_start >= cl->start_ns)
        closed_origin = c->connect_start; /* each request pays for its connection */
    c->fresh = false;
    unsigned nb = 0;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        cl->iov[nb++] = uv_buf_init((char *)cfg->head, (unsigned)cfg->head_len);
        if (cfg->body_len)
            cl->iov[nb++] = uv_buf_init((char *)cfg->body, (unsigned)cfg->body_len);
        total += cfg->head_len + cfg->body_len;
        inflight *e = q_at(c, c->qlen);
        e->origin = origins ? origins[i] : closed_origin;
        e->sent = now;
        c->qlen++;
        if (in_window(cl, e->origin))
            cl->st.sent++;
    }
    cl->inflight_total += n;
    if (in_window(cl, now))
        cl->st.bytes_written += total;
    if (!uv_is_active((uv_handle_t *)&c->timer))
        timer_start(c, TM_RESPONSE, ns_to_ms_ceil(cfg->response_timeout_ns));

    int r = uv_try_write((uv_stream_t *)&c->tcp, cl->iov, nb);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r < 0) {
        fail_inflight(c, SLOAD_ERR_WRITE, 1);
        conn_close(c, false);
        return false;
    }
    if ((size_t)r == total)
        return true;
    /* The rest goes through a write request. */
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
        if (w) {
            w->next = cl->wfree;
            cl->wfree = w;
        }
        fail_inflight(c, SLOAD_ERR_WRITE, 1);
        conn_close(c, false);
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
    if (cl->phase == PH_DRAIN) {
        if (c->qlen == 0)
            conn_close(c, false);
        return;
    }
    if (cl->phase != PH_RUN)
        return;
    if (!cl->cfg.keepalive && !c->fresh && c->qlen == 0) {
        /* One request per connection: the server kept it open anyway. */
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

/* ---- parser callbacks ---------------------------------------------------- */

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
    c->completions++;
    c->answered++;
    c->backoff_ms = 0;
    uint64_t now = uv_hrtime();
    if (in_window(cl, e.origin)) {
        sload_hist_record(cl->st.latency, (now - e.origin + 500) / 1000);
        if (cl->open_loop) {
            sload_hist_record(cl->st.service, (now - e.sent + 500) / 1000);
            sload_hist_record(cl->st.lag, (e.sent - e.origin + 500) / 1000);
        }
        cl->st.completed++;
        if (now <= cl->end_ns)
            cl->st.completed_window++;
        unsigned cls = (unsigned)c->status / 100;
        cl->st.status[cls >= 2 && cls <= 5 ? cls : 0]++;
        atomic_store_explicit(&cl->live_completed, cl->st.completed, memory_order_relaxed);
    }
    if (!llhttp_should_keep_alive(p)) {
        c->close_after = true;
        return HPE_PAUSED;
    }
    return 0;
}

/* ---- I/O callbacks ------------------------------------------------------- */

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

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    sload_client *cl = c->cl;
    if (c->state != CS_OPEN)
        return;
    if (nread > 0) {
        if (in_window(cl, uv_hrtime()) && cl->phase == PH_RUN)
            cl->st.bytes_read += (uint64_t)nread;
        c->completions = 0;
        llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
        if (err == HPE_PAUSED && c->close_after) {
            conn_end_clean(c);
            return;
        }
        if (err != HPE_OK) {
            fail_inflight(c, SLOAD_ERR_PARSE, 1);
            conn_close(c, false);
            return;
        }
        if (c->completions > 0)
            conn_became_available(c);
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
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

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    sload_client *cl = c->cl;
    if (status == UV_ECANCELED || c->state != CS_CONNECTING)
        return;
    if (!c->first_done) {
        c->first_done = true;
        cl->pending_first--;
    }
    if (status < 0) {
        count_error(cl, SLOAD_ERR_CONNECT, 1);
        conn_close(c, true);
        return;
    }
    uint64_t now = uv_hrtime();
    uv_timer_stop(&c->timer);
    c->tmode = TM_NONE;
    c->state = CS_OPEN;
    c->fresh = true;
    c->close_after = false;
    c->answered = 0;
    cl->st.connects++;
    if (in_window(cl, c->connect_start))
        sload_hist_record(cl->st.connect, (now - c->connect_start + 500) / 1000);
    llhttp_init(&c->parser, HTTP_RESPONSE, &cl->settings);
    c->parser.data = c;
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0) {
        count_error(cl, SLOAD_ERR_READ, 1);
        conn_close(c, true);
        return;
    }
    conn_became_available(c);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    sload_client *cl = c->cl;
    switch (c->tmode) {
    case TM_CONNECT:
        if (c->state == CS_CONNECTING) {
            if (!c->first_done) {
                c->first_done = true;
                cl->pending_first--;
            }
            count_error(cl, SLOAD_ERR_CONNECT, 1);
            conn_close(c, true);
        }
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
            uint64_t deadline = q_at(c, 0)->sent + cl->cfg.response_timeout_ns;
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

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    sload_client *cl = c->cl;
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

static void conn_close(conn *c, bool backoff)
{
    if (c->state == CS_CLOSED || c->state == CS_CLOSING)
        return;
    sload_client *cl = c->cl;
    ready_remove(c);
    uv_timer_stop(&c->timer);
    c->tmode = TM_NONE;
    if (c->qlen)
        requeue_inflight(c); /* callers fail or requeue first; never leak counts */
    c->state = CS_CLOSING;
    c->backoff = backoff;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    (void)cl;
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
        if (!c->first_done) {
            c->first_done = true;
            cl->pending_first--;
        }
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
            conn_close(c, false);
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
            progress += k == SLOAD_ERR_CONNECT ? 0 : cl->st.errors[k];
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
        cl->conns[i].cl = cl;
        cl->conns[i].q = calloc(cfg->pipeline, sizeof(inflight));
        if (!cl->conns[i].q)
            goto fail;
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
        free(w);
    }
    if (cl->conns)
        for (unsigned i = 0; i < cl->cfg.connections; i++)
            free(cl->conns[i].q);
    free(cl->conns);
    free(cl->rbuf);
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
