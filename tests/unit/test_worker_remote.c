/* The C worker library in remote mode (PROTOCOL.md 10.6), against fake
 * gateways in this process: several TCP listeners (some wrapped in TLS with
 * server/tls and certificates made at run time), each framed by hand and
 * decoded with the codec. The worker runs on a uv loop that the helpers spin
 * while they wait; every wait is bounded.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "sluice_proto.h"
#include "sluice_worker.h"
#include "tls.h"
#include "tls_certs.h"

#define WAIT_MS 3000
#define QUIET_MS 300
#define MAX_GW 4

typedef struct {
    uint32_t type;
    uint64_t sid, num;
    uint32_t max_streams;
    char token[64];
} gframe;

typedef struct {
    int lfd, fd;
    uint16_t port;
    int accepts;
    tls_ctx *tctx; /* NULL: clear text */
    tls_session *ts;
    bool tls_failed;
    uint8_t in[1 << 18];
    size_t inlen;
} fgw;

static struct {
    uv_loop_t loop;
    bool loop_inited;
    fgw g[MAX_GW];
    int ng;
    sluice_worker *w;
    bool closed;
    int closed_err;
    int ready, requests;
    bool hold; /* keep streams open (answer with answer_held) */
    sluice_stream *held[8];
    int nheld;
    bool wrong_worker; /* a callback saw another sluice_worker than T.w */
    pid_t child;       /* a worker process, killed at the end if still there */
    char dir[64], ca[128], gw_pem[128], gw_key[128], ip_pem[128], ip_key[128], cl_pem[128],
        cl_key[128], other_ca[128];
} T;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void spin(void)
{
    uv_run(&T.loop, UV_RUN_NOWAIT);
    poll(NULL, 0, 1);
    uv_run(&T.loop, UV_RUN_NOWAIT);
}

static void run_for(int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end)
        spin();
}

static bool run_until(const bool *flag, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (!*flag && now_ms() < end)
        spin();
    return *flag;
}

/* ---- the worker's app ------------------------------------------------------- */

static void cb_ready(sluice_worker *w, const sluice_hello *h, void *ud)
{
    (void)h;
    (void)ud;
    T.wrong_worker |= w != T.w;
    T.ready++;
}

static void cb_request(sluice_stream *s, const sluice_req *r, void *ud)
{
    (void)r;
    (void)ud;
    T.requests++;
    T.wrong_worker |= sluice_stream_worker(s) != T.w;
    if (T.hold && T.nheld < 8) {
        T.held[T.nheld++] = s;
        return;
    }
    sluice_stream_respond(s, 200, NULL, 0, false);
}

static void cb_stream_closed(sluice_stream *s, void *ud)
{
    (void)ud;
    for (int i = 0; i < T.nheld; i++)
        if (T.held[i] == s)
            T.held[i] = NULL;
}

static void cb_closed(sluice_worker *w, int err, void *ud)
{
    (void)ud;
    T.wrong_worker |= w != T.w;
    T.closed = true;
    T.closed_err = err;
}

static void answer_held(void)
{
    for (int i = 0; i < T.nheld; i++)
        if (T.held[i])
            sluice_stream_respond(T.held[i], 200, NULL, 0, false);
}

/* ---- fake gateways -------------------------------------------------------------- */

static fgw *gw_new(const char *ip, uint16_t port, tls_ctx *tctx)
{
    signal(SIGPIPE, SIG_IGN);
    fgw *g = &T.g[T.ng++];
    memset(g, 0, sizeof *g);
    g->fd = -1;
    g->tctx = tctx;
    g->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(g->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    cr_assert_eq(bind(g->lfd, (struct sockaddr *)&sa, sizeof sa), 0, "bind %s:%u: %s", ip, port,
                 strerror(errno));
    socklen_t sl = sizeof sa;
    getsockname(g->lfd, (struct sockaddr *)&sa, &sl);
    g->port = ntohs(sa.sin_port);
    cr_assert_eq(listen(g->lfd, 8), 0);
    return g;
}

static void gw_drop(fgw *g)
{
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
    g->inlen = 0;
    tls_session_free(g->ts);
    g->ts = NULL;
    g->tls_failed = false;
}

/* Waits for the worker's next connection (the previous one is dropped). */
static bool gw_accept(fgw *g, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        int fd = accept4(g->lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd >= 0) {
            gw_drop(g);
            g->fd = fd;
            g->accepts++;
            if (g->tctx)
                cr_assert_eq(tls_session_new(&g->ts, g->tctx), 0);
            return true;
        }
        if (now_ms() >= end)
            return false;
        spin();
    }
}

static void gw_raw_send(fgw *g, const uint8_t *p, size_t n)
{
    uint64_t end = now_ms() + WAIT_MS;
    while (n) {
        ssize_t r = send(g->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return; /* the worker went away: its problem */
        cr_assert_lt(now_ms(), end, "gateway send timed out");
        spin();
    }
}

static void gw_tls_out(fgw *g)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = tls_session_pull(g->ts, buf, sizeof buf)) > 0)
        gw_raw_send(g, buf, n);
}

/* One frame from the worker: 1, 0 at EOF (or a failed TLS handshake), -1 on timeout. */
static int gw_recv(fgw *g, gframe *out, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        if (g->inlen >= 4) {
            uint32_t n;
            memcpy(&n, g->in, 4);
            n = ntohl(n);
            cr_assert(n >= 1 && n <= sizeof g->in - 4, "bad frame length %u", n);
            if (g->inlen >= 4 + (size_t)n) {
                sluice_frame f;
                static sluice_header scratch[64];
                int rc = sluice_proto_decode_payload(g->in + 4, n, &f, scratch, 64);
                cr_assert_eq(rc, 0, "undecodable frame: %s", sluice_proto_strerror(rc));
                memset(out, 0, sizeof *out);
                out->type = f.type;
                out->sid = f.stream_id;
                if (f.type == SLUICE_FRAME_HELLO) {
                    out->max_streams = f.u.hello.max_streams;
                    size_t k = f.u.hello.token.len < 63 ? f.u.hello.token.len : 63;
                    if (k)
                        memcpy(out->token, f.u.hello.token.ptr, k);
                } else if (f.type == SLUICE_FRAME_RESPONSE) {
                    out->num = f.u.response.status;
                } else if (f.type == SLUICE_FRAME_PING) {
                    out->num = f.u.opaque;
                } else if (f.type == SLUICE_FRAME_RESET || f.type == SLUICE_FRAME_ERROR) {
                    out->num = f.u.code.code;
                }
                memmove(g->in, g->in + 4 + n, g->inlen - 4 - n);
                g->inlen -= 4 + n;
                return 1;
            }
        }
        uint8_t buf[65536];
        ssize_t r = recv(g->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) {
            if (!g->ts) {
                memcpy(g->in + g->inlen, buf, (size_t)r);
                g->inlen += (size_t)r;
                continue;
            }
            int rc = tls_session_feed(g->ts, buf, (size_t)r);
            gw_tls_out(g);
            if (rc < 0) {
                g->tls_failed = true;
                return 0;
            }
            ssize_t k;
            while ((k = tls_session_read(g->ts, g->in + g->inlen, sizeof g->in - g->inlen)) > 0)
                g->inlen += (size_t)k;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return 0;
        if (now_ms() >= end)
            return -1;
        spin();
    }
}

static void gw_send(fgw *g, const sluice_frame *f)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    int rc = f->type == SLUICE_FRAME_HELLO ? sluice_proto_encode_hello(&b, &f->u.hello)
                                           : sluice_proto_encode(&b, f, 0);
    cr_assert_eq(rc, 0);
    if (g->ts) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t k = tls_session_write(g->ts, b.data + off, b.len - off);
            cr_assert_gt(k, 0, "tls write %zd", k);
            off += (size_t)k;
            gw_tls_out(g);
        }
    } else {
        gw_raw_send(g, b.data, b.len);
    }
    sluice_buf_close(&b);
}

static void gw_expect(fgw *g, gframe *f, uint32_t type)
{
    int rc = gw_recv(g, f, WAIT_MS);
    cr_assert_eq(rc, 1, "gateway :%u expected %s, got %s", g->port, sluice_frame_type_name((int)type),
                 rc == 0 ? "EOF" : "timeout");
    cr_assert_eq(f->type, type, "expected %s, got %s", sluice_frame_type_name((int)type),
                 sluice_frame_type_name((int)f->type));
}

static void gw_expect_eof(fgw *g)
{
    gframe f;
    int rc = gw_recv(g, &f, WAIT_MS);
    cr_assert_eq(rc, 0, "expected EOF, got %s", rc < 0 ? "timeout" : sluice_frame_type_name((int)f.type));
}

/* Accept, worker HELLO in, gateway HELLO out, on_ready. */
static gframe gw_attach(fgw *g)
{
    cr_assert(gw_accept(g, WAIT_MS), "no connection on :%u", g->port);
    gframe h;
    gw_expect(g, &h, SLUICE_FRAME_HELLO);
    int before = T.ready;
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    f.u.hello.version = 1;
    f.u.hello.has = SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_WORKER_ID;
    f.u.hello.window = 65536;
    f.u.hello.worker_id = 1000u + g->port;
    gw_send(g, &f);
    uint64_t end = now_ms() + WAIT_MS;
    while (T.ready == before && now_ms() < end)
        spin();
    cr_assert_gt(T.ready, before, "on_ready not called for :%u", g->port);
    return h;
}

static void gw_request(fgw *g, uint64_t sid)
{
    sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = sid};
    f.u.request.method = sluice_bytes_str("GET");
    f.u.request.target = sluice_bytes_str("/");
    f.u.request.version = 11;
    f.u.request.scheme = sluice_bytes_str("http");
    f.u.request.body = SLUICE_BODY_NONE;
    gw_send(g, &f);
}

static void gw_drain(fgw *g)
{
    sluice_frame f = {.type = SLUICE_FRAME_DRAIN};
    f.u.timeout_ms = 5000;
    gw_send(g, &f);
}

static void gw_served(fgw *g, uint64_t sid)
{
    gw_request(g, sid);
    gframe r;
    gw_expect(g, &r, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(r.sid, sid);
    cr_assert_eq(r.num, 200);
}

/* ---- fixture ------------------------------------------------------------------ */

static void start(const char *addrs, sluice_worker_config *cfg)
{
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    cfg->socket_path = addrs;
    if (!cfg->handshake_timeout_ms)
        cfg->handshake_timeout_ms = 2000;
    static sluice_worker_callbacks cbs = {.on_ready = cb_ready,
                                          .on_request = cb_request,
                                          .on_stream_closed = cb_stream_closed,
                                          .on_closed = cb_closed};
    cr_assert_eq(sluice_worker_new(&T.w, &T.loop, cfg, &cbs, NULL), 0);
    cr_assert_eq(sluice_worker_connect(T.w), 0);
}

static char addrs_buf[512];

static const char *list(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(addrs_buf, sizeof addrs_buf, fmt, ap);
    va_end(ap);
    return addrs_buf;
}

static void fini(void)
{
    sluice_worker_set_resolver_for_tests(NULL);
    if (T.child > 0) {
        kill(T.child, SIGKILL);
        waitpid(T.child, NULL, 0);
    }
    if (T.w) {
        if (!T.closed && sluice_worker_close(T.w, NULL) == 0)
            run_until(&T.closed, WAIT_MS);
        sluice_worker_free(T.w);
        T.w = NULL;
    }
    for (int i = 0; i < T.ng; i++) {
        gw_drop(&T.g[i]);
        if (T.g[i].lfd > 0)
            close(T.g[i].lfd);
        tls_ctx_free(T.g[i].tctx);
    }
    if (T.loop_inited) {
        for (int i = 0; i < 50 && uv_run(&T.loop, UV_RUN_NOWAIT); i++)
            ;
        cr_expect_eq(uv_loop_close(&T.loop), 0, "uv loop still has handles");
    }
    const char *files[] = {T.ca, T.gw_pem, T.gw_key, T.ip_pem, T.ip_key, T.cl_pem, T.cl_key, T.other_ca};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i][0])
            unlink(files[i]);
    if (T.dir[0])
        rmdir(T.dir);
    cr_expect(!T.wrong_worker, "a callback saw an internal link instead of the worker");
}

TestSuite(remote, .fini = fini, .timeout = 30);

/* ---- several gateways ------------------------------------------------------------ */

Test(remote, two_gateways_both_served)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL), *b = gw_new("127.0.0.1", 0, NULL);
    sluice_worker_config cfg = {.max_streams = 7, .token = "s3cret"};
    /* spaces and empty entries are ignored; a repeated address is one link */
    start(list(" tcp:127.0.0.1:%u ,, tcp:127.0.0.1:%u,tcp:127.0.0.1:%u ,", a->port, b->port, a->port),
          &cfg);
    gframe ha = gw_attach(a), hb = gw_attach(b);
    cr_assert_eq(ha.max_streams, 7);
    cr_assert_eq(hb.max_streams, 7);
    cr_assert_str_eq(ha.token, "s3cret");
    cr_assert_str_eq(hb.token, "s3cret");
    gw_served(a, 1);
    gw_served(b, 1);
    gw_served(b, 3);
    cr_assert_eq(T.requests, 3);
    cr_assert(sluice_worker_ready(T.w));
    cr_assert_eq(a->accepts, 1);
    cr_assert(!gw_accept(a, QUIET_MS), "a repeated address got a second link");
}

Test(remote, one_capacity_over_all_links)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL), *b = gw_new("127.0.0.1", 0, NULL);
    sluice_worker_config cfg = {.max_streams = 1};
    start(list("tcp:127.0.0.1:%u,tcp:127.0.0.1:%u", a->port, b->port), &cfg);
    gw_attach(a);
    gw_attach(b);
    T.hold = true;
    gw_request(a, 1);
    run_for(50);
    cr_assert_eq(T.requests, 1);
    gw_request(b, 1);
    gframe r;
    gw_expect(b, &r, SLUICE_FRAME_RESET);
    cr_assert_eq(r.num, SLUICE_RESET_OVERLOADED);
    cr_assert_eq(T.requests, 1, "no handler runs for a refused request");
    cr_assert_eq(sluice_worker_open_streams(T.w), 1);
    answer_held();
    gw_expect(a, &r, SLUICE_FRAME_RESPONSE);
    T.hold = false;
    gw_served(b, 3);
}

Test(remote, reconnects_after_close_without_drain_and_after_drain)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL), *b = gw_new("127.0.0.1", 0, NULL);
    sluice_worker_config cfg = {0};
    start(list("tcp:127.0.0.1:%u,tcp:127.0.0.1:%u", a->port, b->port), &cfg);
    gw_attach(a);
    gw_attach(b);
    /* a dies: the worker lives on, serves b, and comes back to a */
    gw_drop(a);
    gw_served(b, 1);
    uint64_t t0 = now_ms();
    gw_attach(a);
    cr_assert_lt(now_ms() - t0, 1000, "reattached after %llu ms", (unsigned long long)(now_ms() - t0));
    gw_served(a, 1);
    /* b drains (it is reloading): that link closes, and is opened again */
    gw_drain(b);
    gw_expect_eof(b);
    gw_attach(b);
    gw_served(b, 1);
    cr_assert(!T.closed, "losing links must not end the worker");
}

Test(remote, backoff_grows_and_is_capped)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL);
    sluice_worker_config cfg = {0};
    start(list("tcp:127.0.0.1:%u", a->port), &cfg);
    /* The gateway takes each connection and closes it before HELLO: each
     * attempt fails, the delay doubles (uniform in [d/2, d]) up to 2 s. */
    uint64_t t[7];
    for (int i = 0; i < 7; i++) {
        cr_assert(gw_accept(a, 4000), "attempt %d missing", i);
        t[i] = now_ms();
        gw_drop(a);
    }
    const unsigned d[] = {100, 200, 400, 800, 1600, 2000};
    for (int i = 0; i < 6; i++) {
        uint64_t gap = t[i + 1] - t[i];
        cr_assert(gap + 10 >= d[i] / 2 && gap <= d[i] + 200, "gap %d: %llu ms, want %u..%u", i,
                  (unsigned long long)gap, d[i] / 2, d[i]);
    }
    /* A completed handshake resets the delay. */
    gw_attach(a);
    gw_drop(a);
    uint64_t t0 = now_ms();
    gw_attach(a);
    cr_assert_lt(now_ms() - t0, 400);
}

Test(remote, pings_and_closes_a_silent_link)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL);
    sluice_worker_config cfg = {.ping_interval_ms = 100};
    start(list("tcp:127.0.0.1:%u", a->port), &cfg);
    gw_attach(a);
    /* a gateway that answers keeps its link */
    int pings = 0;
    uint64_t end = now_ms() + 700;
    while (now_ms() < end) {
        gframe f;
        int rc = gw_recv(a, &f, 50);
        cr_assert_neq(rc, 0, "closed although the gateway answered");
        if (rc == 1 && f.type == SLUICE_FRAME_PING) {
            pings++;
            sluice_frame p = {.type = SLUICE_FRAME_PONG};
            p.u.opaque = f.num;
            gw_send(a, &p);
        }
    }
    cr_assert_geq(pings, 4);
    /* a silent one is closed after three intervals, then opened again */
    uint64_t t0 = now_ms();
    gframe f;
    int rc;
    while ((rc = gw_recv(a, &f, 1000)) == 1)
        cr_assert_eq(f.type, SLUICE_FRAME_PING);
    cr_assert_eq(rc, 0, "a silent link was not closed");
    uint64_t took = now_ms() - t0;
    cr_assert(took >= 200 && took <= 600, "closed after %llu ms", (unsigned long long)took);
    gw_attach(a);
    gw_served(a, 1);
}

Test(remote, shutdown_retires_every_link_and_ends_after_their_drains)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL), *b = gw_new("127.0.0.1", 0, NULL);
    fgw *mute = gw_new("127.0.0.1", 0, NULL); /* never answers HELLO */
    sluice_worker_config cfg = {.handshake_timeout_ms = 20000};
    start(list("tcp:127.0.0.1:%u,tcp:127.0.0.1:%u,tcp:127.0.0.1:%u", a->port, b->port, mute->port),
          &cfg);
    gw_attach(a);
    gw_attach(b);
    cr_assert(gw_accept(mute, WAIT_MS));
    gframe f;
    T.hold = true;
    gw_request(b, 1);
    run_for(50);
    cr_assert_eq(sluice_worker_shutdown(T.w, 5000), 0);
    cr_assert(sluice_worker_draining(T.w));
    gw_expect(a, &f, SLUICE_FRAME_RETIRE);
    gw_expect(b, &f, SLUICE_FRAME_RETIRE);
    gw_expect(mute, &f, SLUICE_FRAME_HELLO);
    gw_expect_eof(mute); /* dropped in its handshake */
    gw_drain(a);
    gw_expect_eof(a);
    gw_drain(b);
    run_for(100);
    cr_assert(!T.closed, "closed with a stream still open");
    answer_held();
    gw_expect(b, &f, SLUICE_FRAME_RESPONSE);
    gw_expect_eof(b);
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, 0);
    cr_assert(!gw_accept(a, QUIET_MS), "reconnected while stopping");
}

Test(remote, auth_error_stops_the_worker_with_failure)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL), *b = gw_new("127.0.0.1", 0, NULL);
    sluice_worker_config cfg = {.token = "wrong"};
    start(list("tcp:127.0.0.1:%u,tcp:127.0.0.1:%u", a->port, b->port), &cfg);
    gw_attach(b);
    cr_assert(gw_accept(a, WAIT_MS));
    gframe f;
    gw_expect(a, &f, SLUICE_FRAME_HELLO);
    sluice_frame e = {.type = SLUICE_FRAME_ERROR};
    e.u.code.code = 12;
    e.u.code.message = sluice_bytes_str("missing or wrong token");
    gw_send(a, &e);
    gw_drop(a);
    gw_expect(b, &f, SLUICE_FRAME_RETIRE); /* the others retire and drain */
    gw_drain(b);
    gw_expect_eof(b);
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, SLUICE_PROTO_E_AUTH);
    cr_assert(!gw_accept(a, QUIET_MS), "retried after auth");
}

Test(remote, main_exits_1_after_auth_0_after_sigterm_1_after_a_second_signal)
{
    cr_assert_eq(uv_loop_init(&T.loop), 0); /* spun by the helpers, empty */
    T.loop_inited = true;
    fgw *a = gw_new("127.0.0.1", 0, NULL);
    const char *addr = list("tcp:127.0.0.1:%u, tcp:127.0.0.1:%u", a->port, a->port);
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        T.child = pid;
        if (pid == 0) {
            sluice_worker_callbacks cbs = {.on_request = cb_request};
            sluice_worker_config cfg = {.socket_path = addr};
            _exit(sluice_worker_main(&cfg, &cbs, NULL));
        }
        cr_assert(gw_accept(a, WAIT_MS));
        gframe f;
        gw_expect(a, &f, SLUICE_FRAME_HELLO);
        if (round == 0) {
            sluice_frame e = {.type = SLUICE_FRAME_ERROR};
            e.u.code.code = 12;
            e.u.code.message = sluice_bytes_str("missing or wrong token");
            gw_send(a, &e);
            gw_drop(a);
        } else {
            sluice_frame h = {.type = SLUICE_FRAME_HELLO};
            h.u.hello.version = 1;
            h.u.hello.has = SLUICE_HELLO_HAS_WINDOW;
            h.u.hello.window = 65536;
            gw_send(a, &h);
            sluice_frame p = {.type = SLUICE_FRAME_PING};
            p.u.opaque = 9;
            gw_send(a, &p);
            gw_expect(a, &f, SLUICE_FRAME_PONG);
            kill(pid, SIGTERM);
            gw_expect(a, &f, SLUICE_FRAME_RETIRE);
            if (round == 1)
                gw_drain(a);
            else
                kill(pid, SIGINT); /* stop now: no DRAIN awaited */
            gw_expect_eof(a);
        }
        int status = 0;
        uint64_t end = now_ms() + WAIT_MS;
        pid_t r;
        while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < end)
            usleep(1000);
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_assert_fail("worker did not exit (round %d)", round);
        }
        T.child = 0;
        cr_assert(WIFEXITED(status));
        cr_assert_eq(WEXITSTATUS(status), round == 1 ? 0 : 1, "round %d", round);
    }
}

/* ---- resolution ------------------------------------------------------------------ */

static int n_answer;

static int fake_resolver(const char *host, struct sockaddr_storage *out, size_t cap)
{
    if (strcmp(host, "gw.test"))
        return UV_EAI_NONAME;
    if (n_answer < 0)
        return UV_EAI_AGAIN;
    const char *ips[] = {"127.0.0.1", "127.0.0.2", "127.0.0.1"}; /* a duplicate too */
    int n = 0;
    for (int i = 0; i < n_answer && (size_t)n < cap; i++)
        uv_ip4_addr(ips[i], 0, (struct sockaddr_in *)&out[n++]);
    return n;
}

Test(remote, host_name_gets_a_link_per_address_and_is_resolved_again)
{
    fgw *a = gw_new("127.0.0.1", 0, NULL);
    fgw *b = gw_new("127.0.0.2", a->port, NULL);
    sluice_worker_set_resolver_for_tests(fake_resolver);
    n_answer = 1;
    sluice_worker_config cfg = {.resolve_interval_ms = 100};
    start(list("tcp:gw.test:%u", a->port), &cfg);
    gw_attach(a);
    cr_assert(!gw_accept(b, QUIET_MS));
    n_answer = 3; /* .1, .2 and .1 again: one new link */
    gw_attach(b);
    gw_served(a, 1);
    gw_served(b, 1);
    cr_assert(!gw_accept(a, QUIET_MS), "duplicate address got a link");
    n_answer = -1; /* a failed resolution keeps the last answer */
    run_for(300);
    gw_served(b, 3);
    /* .2 vanishes: its live link stays until it closes, then is not reopened */
    n_answer = 1;
    run_for(300);
    gw_served(b, 5);
    gw_drop(b);
    cr_assert(!gw_accept(b, 800), "a vanished address was reconnected");
    gw_served(a, 3);
}

Test(remote, bad_lists_are_refused)
{
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    sluice_worker_callbacks cbs = {.on_request = cb_request};
    const char *bad[] = {"tcp:127.0.0.1:80,tls:host", "/a,tcp:[::1:80", "/a,tcp:::1:80", "/a,unix:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sluice_worker *w;
        sluice_worker_config cfg = {.socket_path = bad[i]};
        cr_assert_eq(sluice_worker_new(&w, &T.loop, &cfg, &cbs, NULL), 0);
        cr_assert_lt(sluice_worker_connect(w), 0, "%s accepted", bad[i]);
        sluice_worker_free(w);
    }
    sluice_worker *w;
    sluice_worker_config cfg = {.socket_path = "tls:a:1", .tls_cert = "/c.pem"};
    cr_assert_eq(sluice_worker_new(&w, &T.loop, &cfg, &cbs, NULL), -EINVAL, "cert without key");
    cfg = (sluice_worker_config){.socket_path = " , "};
    cr_assert_eq(sluice_worker_new(&w, &T.loop, &cfg, &cbs, NULL), -EDESTADDRREQ);
}

Test(remote, one_unix_path_keeps_the_single_link_behaviour)
{
    /* "PATH," is one Unix path: no remote mode, the end of the link ends it. */
    strcpy(T.dir, "/tmp/sluice-rm-XXXXXX");
    cr_assert_not_null(mkdtemp(T.dir));
    char path[128];
    snprintf(path, sizeof path, "%s/gw.sock", T.dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    fgw *g = &T.g[T.ng++];
    memset(g, 0, sizeof *g);
    g->lfd = lfd;
    g->fd = -1;
    sluice_worker_config cfg = {0};
    start(list(" %s ,", path), &cfg);
    gw_attach(g);
    gw_served(g, 1);
    gw_drop(g);
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, -ECONNRESET);
    cr_assert(!gw_accept(g, QUIET_MS));
    unlink(path);
}

/* ---- TLS -------------------------------------------------------------------------- */

static void certs(void)
{
    strcpy(T.dir, "/tmp/sluice-rmtls-XXXXXX");
    cr_assert_not_null(mkdtemp(T.dir));
    snprintf(T.ca, sizeof T.ca, "%s/ca.pem", T.dir);
    snprintf(T.other_ca, sizeof T.other_ca, "%s/other.pem", T.dir);
    snprintf(T.gw_pem, sizeof T.gw_pem, "%s/gw.pem", T.dir);
    snprintf(T.gw_key, sizeof T.gw_key, "%s/gw.key", T.dir);
    snprintf(T.ip_pem, sizeof T.ip_pem, "%s/ip.pem", T.dir);
    snprintf(T.ip_key, sizeof T.ip_key, "%s/ip.key", T.dir);
    snprintf(T.cl_pem, sizeof T.cl_pem, "%s/cl.pem", T.dir);
    snprintf(T.cl_key, sizeof T.cl_key, "%s/cl.key", T.dir);
    tc_pair ca = tc_make("sluice test CA", NULL, NULL), other = tc_make("other CA", NULL, NULL);
    tc_pair gw = tc_make("gw.example", "DNS:gw.example", &ca);
    tc_pair ip = tc_make("gateway by address", "IP:127.0.0.1", &ca);
    tc_pair cl = tc_make("worker", "DNS:worker.example", &ca);
    FILE *f = fopen(T.ca, "w");
    cr_assert(f && PEM_write_X509(f, ca.cert) && fclose(f) == 0);
    f = fopen(T.other_ca, "w");
    cr_assert(f && PEM_write_X509(f, other.cert) && fclose(f) == 0);
    tc_write(&gw, &ca, T.gw_pem, T.gw_key);
    tc_write(&ip, &ca, T.ip_pem, T.ip_key);
    tc_write(&cl, &ca, T.cl_pem, T.cl_key);
    tc_free(&ca);
    tc_free(&other);
    tc_free(&gw);
    tc_free(&ip);
    tc_free(&cl);
}

static tls_ctx *server_ctx(const char *pem, const char *key, const char *client_ca)
{
    tls_cert_files cf = {pem, key};
    tls_server_config sc = {.certs = &cf, .n_certs = 1, .alpn = "sluice/1", .client_ca_file = client_ca};
    tls_ctx *c = NULL;
    char err[TLS_ERR_LEN];
    cr_assert_eq(tls_ctx_new_server(&c, &sc, err, sizeof err), 0, "%s", err);
    return c;
}

Test(remote, tls_verified_with_alpn_and_sni)
{
    certs();
    /* by address: checked against the certificate's IP addresses, no SNI */
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.ip_pem, T.ip_key, NULL));
    sluice_worker_config cfg = {.tls_ca = T.ca, .token = "tok"};
    start(list("tls:127.0.0.1:%u", a->port), &cfg);
    gframe h = gw_attach(a);
    cr_assert_str_eq(h.token, "tok");
    cr_assert_str_eq(tls_session_alpn(a->ts), "sluice/1");
    cr_assert_null(tls_session_sni(a->ts), "no SNI for an address");
    gw_served(a, 1);
    gw_served(a, 3);
    /* and again after the gateway went away */
    gw_drop(a);
    gw_attach(a);
    gw_served(a, 1);
}

static int resolve_localhost(const char *host, struct sockaddr_storage *out, size_t cap)
{
    (void)cap;
    if (strcmp(host, "gw.example"))
        return UV_EAI_NONAME;
    uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&out[0]);
    return 1;
}

Test(remote, tls_name_entry_sends_sni_and_verifies_the_name)
{
    certs();
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.gw_pem, T.gw_key, NULL));
    sluice_worker_set_resolver_for_tests(resolve_localhost);
    sluice_worker_config cfg = {.tls_ca = T.ca};
    start(list("tls:gw.example:%u", a->port), &cfg);
    gw_attach(a);
    cr_assert_str_eq(tls_session_sni(a->ts), "gw.example");
    gw_served(a, 1);
}

Test(remote, tls_server_name_override)
{
    certs();
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.gw_pem, T.gw_key, NULL));
    sluice_worker_config cfg = {.tls_ca = T.ca, .tls_server_name = "gw.example"};
    start(list("tls:127.0.0.1:%u", a->port), &cfg);
    gw_attach(a);
    cr_assert_str_eq(tls_session_sni(a->ts), "gw.example");
    gw_served(a, 1);
}

Test(remote, tls_wrong_name_or_ca_is_not_attached_and_retried)
{
    certs();
    /* gw.pem names gw.example only: connecting by address fails verification */
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.gw_pem, T.gw_key, NULL));
    fgw *b = gw_new("127.0.0.1", 0, server_ctx(T.ip_pem, T.ip_key, NULL));
    sluice_worker_config cfg = {.tls_ca = T.other_ca};
    start(list("tls:127.0.0.1:%u,tls:127.0.0.1:%u", a->port, b->port), &cfg);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2; i++) {
            fgw *g = i ? b : a;
            cr_assert(gw_accept(g, WAIT_MS), "no (re)try on :%u", g->port);
            gframe f;
            cr_assert_eq(gw_recv(g, &f, WAIT_MS), 0, "expected a failed handshake");
        }
    }
    cr_assert_eq(T.ready, 0);
    cr_assert(!T.closed, "a TLS failure must not end the worker");
}

Test(remote, tls_name_mismatch_is_not_attached)
{
    certs();
    /* the right CA, but gw.pem names gw.example only, not 127.0.0.1 */
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.gw_pem, T.gw_key, NULL));
    sluice_worker_config cfg = {.tls_ca = T.ca};
    start(list("tls:127.0.0.1:%u", a->port), &cfg);
    for (int i = 0; i < 2; i++) {
        cr_assert(gw_accept(a, WAIT_MS));
        gframe f;
        cr_assert_eq(gw_recv(a, &f, WAIT_MS), 0, "expected a failed handshake");
    }
    cr_assert_eq(T.ready, 0);
}

Test(remote, tls_client_certificate_presented)
{
    certs();
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.ip_pem, T.ip_key, T.ca));
    sluice_worker_config cfg = {.tls_ca = T.ca, .tls_cert = T.cl_pem, .tls_key = T.cl_key};
    start(list("tls:127.0.0.1:%u", a->port), &cfg);
    gw_attach(a);
    gw_served(a, 1);
}

Test(remote, tls_without_the_required_client_certificate_fails)
{
    certs();
    fgw *a = gw_new("127.0.0.1", 0, server_ctx(T.ip_pem, T.ip_key, T.ca));
    sluice_worker_config cfg = {.tls_ca = T.ca};
    start(list("tls:127.0.0.1:%u", a->port), &cfg);
    for (int i = 0; i < 2; i++) {
        cr_assert(gw_accept(a, WAIT_MS));
        gframe f;
        cr_assert_neq(gw_recv(a, &f, WAIT_MS), 1, "attached without a client certificate");
    }
    cr_assert_eq(T.ready, 0);
}
