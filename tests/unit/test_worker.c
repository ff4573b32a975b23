/* The C worker library against an in-process fake gateway.
 *
 * The gateway side is a plain non-blocking socket driven by the codec: it
 * frames by hand (so frame lengths can be checked), decodes payloads with
 * sluice_proto_decode_payload and feeds every frame the worker sends into a
 * gateway-role sluice_proto_link, so each test also checks that the worker's
 * output is legal. The worker runs on a uv loop that the gateway helpers spin
 * (UV_RUN_NOWAIT) while they wait; every wait is bounded.
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

#define WAIT_MS 3000
#define QUIET_MS 150 /* "nothing arrives" windows */
#define B(s) ((sluice_bytes){(const uint8_t *)(s), sizeof(s) - 1})

/* ---- fixture -------------------------------------------------------------- */

typedef struct {
    uint32_t type;
    uint64_t sid;
    uint32_t frame_len;
    uint64_t num; /* status, credit, code, opaque, max_body, timeout */
    uint32_t body_mode;
    uint8_t *data; /* BODY data, ERROR/CANCEL message, RETIRE reason (copied) */
    size_t len;
    size_t nheaders;
    char h0name[64], h0value[64];
    sluice_hello hello;
    char lib[64], token[64];
} gframe;

#define LOG_MAX 256
static struct {
    bool loop_inited;
    uv_loop_t loop;
    char dir[64], path[128], addr[160];
    int lfd, gfd;
    sluice_proto_link *glink;
    bool check_link; /* feed worker frames into glink and require rc 0 */
    uint8_t in[4 << 20];
    size_t inlen;
    sluice_header scratch[SLUICE_PROTO_MAX_HEADERS];

    sluice_worker *w;
    sluice_worker_callbacks cbs;
    bool ready, closed;
    int closed_err;
    uint64_t gw_window_seen;
    sluice_stream *last;
    sluice_req *req;
    void (*app_request)(sluice_stream *s, const sluice_req *r);
    void (*app_end)(sluice_stream *s);
    void (*app_cancel)(sluice_stream *s);
    void (*app_websocket)(sluice_stream *s, const sluice_req *r);
    void (*app_message)(sluice_stream *s, const uint8_t *data, size_t len, bool text);
    bool ws; /* register on_websocket; the fake gateway answers websocket */
    uint8_t body[1 << 20];
    size_t body_len;
    int rc_in_cb;

    char log[LOG_MAX][96];
    int nlog;
} T;

static uint8_t pattern[1 << 20];

static void logf_(const char *fmt, ...)
{
    if (T.nlog >= LOG_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(T.log[T.nlog++], sizeof T.log[0], fmt, ap);
    va_end(ap);
}

static int log_idx(const char *ev)
{
    for (int i = 0; i < T.nlog; i++)
        if (strcmp(T.log[i], ev) == 0)
            return i;
    return -1;
}

static int log_count_prefix(const char *prefix)
{
    int n = 0;
    for (int i = 0; i < T.nlog; i++)
        if (strncmp(T.log[i], prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

static void dump_log(void)
{
    for (int i = 0; i < T.nlog; i++)
        cr_log_info("log[%d] %s", i, T.log[i]);
}

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void spin(void)
{
    uv_run(&T.loop, UV_RUN_NOWAIT);
    struct pollfd p = {.fd = T.gfd > 0 ? T.gfd : T.lfd, .events = POLLIN};
    poll(&p, 1, 1);
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

/* ---- app callbacks ------------------------------------------------------------ */

static void cb_ready(sluice_worker *w, const sluice_hello *gw, void *ud)
{
    (void)w;
    cr_assert_eq(ud, &T);
    T.ready = true;
    T.gw_window_seen = gw->window;
    logf_("ready");
}

static void cb_request(sluice_stream *s, const sluice_req *r, void *ud)
{
    (void)ud;
    logf_("request:%llu", (unsigned long long)sluice_stream_id(s));
    T.last = s;
    free(T.req);
    T.req = sluice_req_copy(r);
    if (T.app_request)
        T.app_request(s, r);
}

static void cb_body(sluice_stream *s, const uint8_t *data, size_t len, void *ud)
{
    (void)ud;
    logf_("body:%llu:%zu", (unsigned long long)sluice_stream_id(s), len);
    cr_assert_leq(T.body_len + len, sizeof T.body);
    memcpy(T.body + T.body_len, data, len);
    T.body_len += len;
}

static void cb_end(sluice_stream *s, const sluice_headers *tr, void *ud)
{
    (void)ud;
    logf_("end:%llu:%zu", (unsigned long long)sluice_stream_id(s), tr->count);
    if (tr->count)
        logf_("trailer:%.*s=%.*s", (int)tr->items[0].name.len, (const char *)tr->items[0].name.ptr,
              (int)tr->items[0].value.len, (const char *)tr->items[0].value.ptr);
    if (T.app_end)
        T.app_end(s);
}

static void cb_cancel(sluice_stream *s, uint64_t reason, void *ud)
{
    (void)ud;
    logf_("cancel:%llu:%llu", (unsigned long long)sluice_stream_id(s), (unsigned long long)reason);
    if (T.app_cancel)
        T.app_cancel(s);
}

static void cb_stream_closed(sluice_stream *s, void *ud)
{
    (void)ud;
    logf_("closed:%llu", (unsigned long long)sluice_stream_id(s));
    if (T.last == s)
        T.last = NULL;
}

static void cb_drain(sluice_worker *w, uint64_t timeout_ms, void *ud)
{
    (void)w;
    (void)ud;
    logf_("drain:%llu", (unsigned long long)timeout_ms);
}

static void cb_closed(sluice_worker *w, int err, void *ud)
{
    (void)w;
    (void)ud;
    T.closed = true;
    T.closed_err = err;
    logf_("link_closed:%d", err);
}

static void cb_websocket(sluice_stream *s, const sluice_req *r, void *ud)
{
    (void)ud;
    logf_("websocket:%llu", (unsigned long long)sluice_stream_id(s));
    T.last = s;
    free(T.req);
    T.req = sluice_req_copy(r);
    if (T.app_websocket)
        T.app_websocket(s, r);
}

static void cb_message(sluice_stream *s, const uint8_t *data, size_t len, bool text, void *ud)
{
    (void)ud;
    logf_("msg:%llu:%zu:%d", (unsigned long long)sluice_stream_id(s), len, (int)text);
    cr_assert_leq(T.body_len + len, sizeof T.body);
    if (len)
        memcpy(T.body + T.body_len, data, len);
    T.body_len += len;
    if (T.app_message)
        T.app_message(s, data, len, text);
}

static void cb_ws_close(sluice_stream *s, unsigned code, const uint8_t *reason, size_t len, void *ud)
{
    (void)ud;
    logf_("ws_close:%llu:%u:%.*s", (unsigned long long)sluice_stream_id(s), code, (int)len,
          (const char *)reason);
}

static void cb_ws_pong(sluice_stream *s, const uint8_t *data, size_t len, void *ud)
{
    (void)ud;
    logf_("pong:%llu:%.*s", (unsigned long long)sluice_stream_id(s), (int)len, (const char *)data);
}

static void write_cb(sluice_stream *s, int status, void *ud)
{
    logf_("wcb:%llu:%s:%d", (unsigned long long)sluice_stream_id(s), (const char *)ud, status);
}

/* ---- gateway side -------------------------------------------------------------- */

static void gframe_clear(gframe *g)
{
    free(g->data);
    memset(g, 0, sizeof *g);
}

static void copy_cstr(char *dst, size_t cap, sluice_bytes b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n)
        memcpy(dst, b.ptr, n);
    dst[n] = 0;
}

static void copy_data(gframe *g, sluice_bytes b)
{
    g->data = malloc(b.len + 1);
    if (b.len)
        memcpy(g->data, b.ptr, b.len);
    g->data[b.len] = 0;
    g->len = b.len;
}

static void copy_headers(gframe *g, const sluice_headers *h)
{
    g->nheaders = h->count;
    if (h->count) {
        copy_cstr(g->h0name, sizeof g->h0name, h->items[0].name);
        copy_cstr(g->h0value, sizeof g->h0value, h->items[0].value);
    }
}

/* 1: a frame; 0: EOF; -1: nothing within ms. */
static int gw_recv(gframe *g, int ms)
{
    gframe_clear(g);
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        if (T.inlen >= 4) {
            uint32_t n;
            memcpy(&n, T.in, 4);
            n = ntohl(n);
            cr_assert(n >= 1 && n <= sizeof T.in - 4, "bad frame length %u", n);
            if (T.inlen >= 4 + (size_t)n) {
                sluice_frame f;
                int rc = sluice_proto_decode_payload(T.in + 4, n, &f, T.scratch,
                                                     SLUICE_PROTO_MAX_HEADERS);
                cr_assert_eq(rc, 0, "worker sent an undecodable frame: %s",
                             sluice_proto_strerror(rc));
                if (T.check_link) {
                    sluice_link_event ev;
                    rc = sluice_proto_link_recv(T.glink, &f, &ev);
                    cr_assert_eq(rc, 0, "worker frame %s illegal for the gateway: %s",
                                 sluice_frame_type_name((int)f.type), sluice_proto_strerror(rc));
                }
                g->type = f.type;
                g->sid = f.stream_id;
                g->frame_len = n;
                switch (f.type) {
                case SLUICE_FRAME_HELLO:
                    g->hello = f.u.hello;
                    copy_cstr(g->lib, sizeof g->lib, f.u.hello.lib);
                    copy_cstr(g->token, sizeof g->token, f.u.hello.token);
                    g->num = f.u.hello.version;
                    break;
                case SLUICE_FRAME_RESPONSE:
                    g->num = f.u.response.status;
                    g->body_mode = f.u.response.body;
                    copy_headers(g, &f.u.response.headers);
                    break;
                case SLUICE_FRAME_BODY:
                    copy_data(g, f.u.body);
                    break;
                case SLUICE_FRAME_END:
                    copy_headers(g, &f.u.trailers);
                    break;
                case SLUICE_FRAME_CREDIT:
                    g->num = f.u.credit;
                    break;
                case SLUICE_FRAME_RESET:
                case SLUICE_FRAME_ERROR:
                    g->num = f.u.code.code;
                    copy_data(g, f.u.code.message);
                    break;
                case SLUICE_FRAME_LIMIT:
                    g->num = f.u.max_body;
                    break;
                case SLUICE_FRAME_PONG:
                    g->num = f.u.opaque;
                    break;
                case SLUICE_FRAME_RETIRE:
                    copy_data(g, f.u.retire.reason);
                    break;
                case SLUICE_FRAME_MESSAGE:
                    g->num = f.u.message.flags;
                    copy_data(g, f.u.message.data);
                    break;
                case SLUICE_FRAME_CLOSE:
                    g->num = f.u.close.code;
                    copy_data(g, f.u.close.reason);
                    break;
                default:
                    break;
                }
                memmove(T.in, T.in + 4 + n, T.inlen - 4 - n);
                T.inlen -= 4 + n;
                return 1;
            }
        }
        ssize_t r = recv(T.gfd, T.in + T.inlen, sizeof T.in - T.inlen, MSG_DONTWAIT);
        if (r > 0) {
            T.inlen += (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return 0;
        if (now_ms() >= end)
            return -1;
        spin();
    }
}

static void gw_expect(gframe *g, uint32_t type)
{
    int rc = gw_recv(g, WAIT_MS);
    if (rc != 1)
        dump_log();
    cr_assert_eq(rc, 1, "expected %s, got %s", sluice_frame_type_name((int)type),
                 rc == 0 ? "EOF" : "timeout");
    cr_assert_eq(g->type, type, "expected %s, got %s", sluice_frame_type_name((int)type),
                 sluice_frame_type_name((int)g->type));
}

static void gw_expect_quiet(void)
{
    gframe g = {0};
    int rc = gw_recv(&g, QUIET_MS);
    cr_assert_eq(rc, -1, "expected silence, got %s",
                 rc == 0 ? "EOF" : sluice_frame_type_name((int)g.type));
    gframe_clear(&g);
}

static void gw_expect_eof(void)
{
    gframe g = {0};
    int rc = gw_recv(&g, WAIT_MS);
    cr_assert_eq(rc, 0, "expected EOF, got %s", rc < 0 ? "timeout" : sluice_frame_type_name((int)g.type));
}

static void gw_write(const uint8_t *p, size_t n)
{
    uint64_t end = now_ms() + WAIT_MS;
    while (n) {
        ssize_t r = send(T.gfd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        cr_assert(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "gateway send: %s",
                  strerror(errno));
        cr_assert_lt(now_ms(), end, "gateway send timed out");
        spin();
    }
}

/* Encodes f and sends it; `apply`: also through the gateway link (legal frames). */
static void gw_send_x(const sluice_frame *f, bool apply)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    int rc = f->type == SLUICE_FRAME_HELLO ? sluice_proto_encode_hello(&b, &f->u.hello)
                                           : sluice_proto_encode(&b, f, 0);
    cr_assert_eq(rc, 0, "encode %s: %s", sluice_frame_type_name((int)f->type),
                 sluice_proto_strerror(rc));
    if (apply) {
        sluice_link_event ev;
        rc = sluice_proto_link_send(T.glink, f, &ev);
        cr_assert_eq(rc, 0, "gateway link refused %s: %d", sluice_frame_type_name((int)f->type), rc);
    }
    gw_write(b.data, b.len);
    sluice_buf_close(&b);
}

static void gw_send(const sluice_frame *f) { gw_send_x(f, true); }

static void gw_request_v(uint64_t sid, uint32_t body_mode, uint32_t version)
{
    static const sluice_header hs[2] = {{B("host"), B("example.com")}, {B("x-test"), B("1")}};
    sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = sid};
    f.u.request.method = B("GET");
    f.u.request.target = B("/hello?x=1");
    f.u.request.version = version;
    f.u.request.headers.items = hs;
    f.u.request.headers.count = 2;
    f.u.request.client.host = B("127.0.0.1");
    f.u.request.client.port = 5555;
    f.u.request.server.host = B("127.0.0.1");
    f.u.request.server.port = 8080;
    f.u.request.scheme = B("http");
    f.u.request.body = body_mode;
    gw_send(&f);
}

static void gw_request(uint64_t sid, uint32_t body_mode) { gw_request_v(sid, body_mode, 11); }

static void gw_body(uint64_t sid, const void *data, size_t len)
{
    sluice_frame f = {.type = SLUICE_FRAME_BODY, .stream_id = sid};
    f.u.body.ptr = data;
    f.u.body.len = len;
    gw_send(&f);
}

static void gw_credit(uint64_t sid, uint64_t n)
{
    sluice_frame f = {.type = SLUICE_FRAME_CREDIT, .stream_id = sid};
    f.u.credit = n;
    gw_send(&f);
}

static void gw_listen(bool tcp)
{
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 + (i >> 8));
    T.check_link = true;
    if (!tcp) {
        strcpy(T.dir, "/tmp/sluice-wt-XXXXXX");
        cr_assert_not_null(mkdtemp(T.dir));
        snprintf(T.path, sizeof T.path, "%s/gw.sock", T.dir);
        T.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, T.path);
        cr_assert_eq(bind(T.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
        snprintf(T.addr, sizeof T.addr, "%s", T.path);
    } else {
        T.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cr_assert_eq(bind(T.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
        socklen_t sl = sizeof sa;
        getsockname(T.lfd, (struct sockaddr *)&sa, &sl);
        snprintf(T.addr, sizeof T.addr, "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
    }
    cr_assert_eq(listen(T.lfd, 8), 0);
    sluice_link_config lc = {.max_streams = SLUICE_PROTO_MAX_STREAMS};
    cr_assert_eq(sluice_proto_link_new(&T.glink, SLUICE_ROLE_GATEWAY, &lc), 0);
}

static void gw_accept(void)
{
    uint64_t end = now_ms() + WAIT_MS;
    for (;;) {
        T.gfd = accept4(T.lfd, NULL, NULL, SOCK_NONBLOCK);
        if (T.gfd >= 0)
            return;
        cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "accept: %s", strerror(errno));
        cr_assert_lt(now_ms(), end, "worker did not connect");
        spin();
    }
}

static void start_worker(sluice_worker_config *cfg)
{
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    cfg->socket_path = T.addr;
    T.cbs = (sluice_worker_callbacks){
        .on_ready = cb_ready,
        .on_request = cb_request,
        .on_body = cb_body,
        .on_end = cb_end,
        .on_cancel = cb_cancel,
        .on_stream_closed = cb_stream_closed,
        .on_drain = cb_drain,
        .on_closed = cb_closed,
    };
    if (T.ws) {
        T.cbs.on_websocket = cb_websocket;
        T.cbs.on_message = cb_message;
        T.cbs.on_ws_close = cb_ws_close;
        T.cbs.on_ws_pong = cb_ws_pong;
    }
    cr_assert_eq(sluice_worker_new(&T.w, &T.loop, cfg, &T.cbs, &T), 0);
    cr_assert_eq(sluice_worker_connect(T.w), 0);
    gw_accept();
}

/* Worker HELLO in, gateway HELLO out, wait for on_ready. */
static void gw_handshake(uint32_t window, uint32_t max_frame)
{
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_HELLO);
    bool worker_ws = (g.hello.has & SLUICE_HELLO_HAS_WEBSOCKET) && g.hello.websocket;
    cr_assert_eq(worker_ws, T.ws, "HELLO websocket iff on_websocket is registered");
    gframe_clear(&g);
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    if (worker_ws) {
        f.u.hello.has |= SLUICE_HELLO_HAS_WEBSOCKET;
        f.u.hello.websocket = true;
    }
    f.u.hello.version = 1;
    f.u.hello.has |= SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_WORKER_ID | SLUICE_HELLO_HAS_POOL |
                     SLUICE_HELLO_HAS_SERVER;
    f.u.hello.window = window;
    f.u.hello.worker_id = 42;
    f.u.hello.pool = B("web");
    f.u.hello.server = B("sluice/test");
    if (max_frame) {
        f.u.hello.has |= SLUICE_HELLO_HAS_MAX_FRAME;
        f.u.hello.max_frame = max_frame;
    }
    gw_send(&f);
    cr_assert(run_until(&T.ready, WAIT_MS), "on_ready not called");
}

static void setup(sluice_worker_config *cfg, uint32_t gw_window, uint32_t gw_max_frame)
{
    gw_listen(false);
    start_worker(cfg);
    gw_handshake(gw_window, gw_max_frame);
}

static void suite_fini(void)
{
    if (T.w) {
        if (!T.closed && sluice_worker_close(T.w, NULL) == 0)
            run_until(&T.closed, WAIT_MS);
        sluice_worker_free(T.w);
        T.w = NULL;
    }
    if (T.loop_inited) {
        for (int i = 0; i < 50 && uv_run(&T.loop, UV_RUN_NOWAIT); i++)
            ;
        int rc = uv_loop_close(&T.loop);
        cr_expect_eq(rc, 0, "uv loop still has handles: %s", uv_strerror(rc));
    }
    if (T.gfd > 0)
        close(T.gfd);
    if (T.lfd > 0)
        close(T.lfd);
    if (T.path[0])
        unlink(T.path);
    if (T.dir[0])
        rmdir(T.dir);
    sluice_proto_link_free(T.glink);
    free(T.req);
}

TestSuite(worker, .fini = suite_fini, .timeout = 30);

/* ---- tests ----------------------------------------------------------------------- */

Test(worker, handshake_fields)
{
    sluice_worker_config cfg = {.max_streams = 7, .window = 12345, .max_frame = 32768,
                                .lib = "test-lib/1.2", .token = "sekrit"};
    gw_listen(false);
    start_worker(&cfg);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_HELLO);
    cr_assert_eq(g.sid, 0);
    cr_assert_eq(g.num, 1, "version");
    cr_assert_leq(g.frame_len, SLUICE_PROTO_HELLO_MAX);
    uint32_t need = SLUICE_HELLO_HAS_PID | SLUICE_HELLO_HAS_LIB | SLUICE_HELLO_HAS_MAX_STREAMS |
                    SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_MAX_FRAME | SLUICE_HELLO_HAS_TOKEN;
    cr_assert_eq(g.hello.has & need, need, "has=%#x", g.hello.has);
    cr_assert_eq(g.hello.pid, (uint64_t)getpid());
    cr_assert_str_eq(g.lib, "test-lib/1.2");
    cr_assert_eq(g.hello.max_streams, 7);
    cr_assert_eq(g.hello.window, 12345);
    cr_assert_eq(g.hello.max_frame, 32768);
    cr_assert_str_eq(g.token, "sekrit");
    cr_assert_not(T.ready, "ready before the gateway's HELLO");
    cr_assert_not(sluice_worker_ready(T.w));
    gframe_clear(&g);

    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    f.u.hello.version = 1;
    f.u.hello.has = SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_WORKER_ID | SLUICE_HELLO_HAS_POOL;
    f.u.hello.window = 777;
    f.u.hello.worker_id = 42;
    f.u.hello.pool = B("web");
    gw_send(&f);
    cr_assert(run_until(&T.ready, WAIT_MS));
    cr_assert_eq(T.gw_window_seen, 777);
    cr_assert(sluice_worker_ready(T.w));
    cr_assert_eq(sluice_worker_id(T.w), 42);
    cr_assert_str_eq(sluice_worker_pool(T.w), "web");
    gw_expect_quiet(); /* nothing else before a request */
}

Test(worker, defaults_and_env)
{
    gw_listen(false);
    setenv("SLUICE_SOCKET", T.addr, 1);
    setenv("SLUICE_TOKEN", "from-env", 1);
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    sluice_worker_callbacks cbs = {.on_request = cb_request, .on_ready = cb_ready,
                                   .on_closed = cb_closed};
    cr_assert_eq(sluice_worker_new(&T.w, &T.loop, NULL, &cbs, &T), 0);
    cr_assert_eq(sluice_worker_connect(T.w), 0);
    cr_assert_eq(sluice_worker_connect(T.w), -EALREADY);
    gw_accept();
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_HELLO);
    cr_assert_eq(g.hello.max_streams, 4096);
    cr_assert_eq(g.hello.window, 32 * 1024);
    cr_assert_eq(g.hello.max_frame, 1048576);
    cr_assert_str_eq(g.lib, SLUICE_WORKER_LIB);
    cr_assert_str_eq(g.token, "from-env");
    gframe_clear(&g);

    /* Invalid configs are refused up front. */
    sluice_worker *w2 = NULL;
    sluice_worker_config bad = {.max_frame = 1000};
    cr_assert_eq(sluice_worker_new(&w2, &T.loop, &bad, &cbs, NULL), -EINVAL);
    unsetenv("SLUICE_SOCKET");
    cr_assert_eq(sluice_worker_new(&w2, &T.loop, NULL, &cbs, NULL), -EDESTADDRREQ);
    sluice_worker_callbacks none = {0};
    sluice_worker_config ok = {.socket_path = "/x"};
    cr_assert_eq(sluice_worker_new(&w2, &T.loop, &ok, &none, NULL), -EINVAL);
    cr_assert_null(w2);
}

static void app_hello(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    sluice_header h[] = {sluice_header_str("content-type", "text/plain")};
    cr_assert_eq(sluice_stream_respond(s, 200, h, 1, true), 0);
    cr_assert_eq(sluice_stream_write(s, "hello", 5, write_cb, "w1"), 0);
    cr_assert_eq(sluice_stream_end(s, NULL, 0), 0);
    /* Misuse after END is refused, not sent. */
    T.rc_in_cb = sluice_stream_write(s, "x", 1, write_cb, "late");
}

Test(worker, request_without_body_respond_write_end)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    T.app_request = app_hello;
    gw_request(1, SLUICE_BODY_NONE);

    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 1);
    cr_assert_eq(g.num, 200);
    cr_assert_eq(g.body_mode, 1);
    cr_assert_eq(g.nheaders, 1);
    cr_assert_str_eq(g.h0name, "content-type");
    cr_assert_str_eq(g.h0value, "text/plain");
    /* Coalesced: BODY and END arrived in the same read as RESPONSE. */
    cr_assert_gt(T.inlen, 0, "BODY/END were not written together with RESPONSE");
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_eq(g.len, 5);
    cr_assert_eq(memcmp(g.data, "hello", 5), 0);
    gw_expect(&g, SLUICE_FRAME_END);
    cr_assert_eq(g.sid, 1);
    cr_assert_eq(g.nheaders, 0);
    gframe_clear(&g);
    cr_assert_eq(T.rc_in_cb, -EPIPE, "write after END: %d", T.rc_in_cb);

    run_for(30);
    int wcb = log_idx("wcb:1:w1:0"), closed = log_idx("closed:1");
    dump_log();
    cr_assert_geq(wcb, 0, "write callback missing");
    cr_assert_gt(closed, wcb, "on_stream_closed must come after the write callback");
    cr_assert_eq(log_count_prefix("wcb:1:late"), 0);
    cr_assert_eq(sluice_worker_open_streams(T.w), 0);

    /* The request view was complete. */
    cr_assert_not_null(T.req);
    cr_assert_str_eq((const char *)T.req->method.ptr, "GET");
    cr_assert_str_eq((const char *)T.req->target.ptr, "/hello?x=1");
    cr_assert_eq(T.req->version, 11);
    cr_assert_eq(T.req->headers.count, 2);
    sluice_bytes v;
    cr_assert(sluice_headers_find(&T.req->headers, "X-Test", &v));
    cr_assert_eq(v.len, 1);
    cr_assert_eq(T.req->client.port, 5555);
    cr_assert_eq(T.req->server.port, 8080);
    cr_assert_str_eq((const char *)T.req->scheme.ptr, "http");
    cr_assert_eq(T.req->body_mode, SLUICE_BODY_NONE);
}

static void app_misuse(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_write(s, "x", 1, NULL, NULL), -EPROTO, "write before respond");
    cr_assert_eq(sluice_stream_end(s, NULL, 0), -EPROTO, "end before respond");
    cr_assert_eq(sluice_stream_respond(s, 99, NULL, 0, false), -EINVAL);
    sluice_header bad = {B(""), B("v")};
    cr_assert_lt(sluice_stream_respond(s, 200, &bad, 1, false), 0, "empty header name");
    cr_assert_eq(sluice_stream_respond(s, 204, NULL, 0, false), 0);
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, false), -EPIPE, "stream closed");
}

Test(worker, http2_request_is_served_like_http1)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    T.app_request = app_hello;
    gw_request_v(1, SLUICE_BODY_NONE, SLUICE_HTTP_2);

    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 200);
    gframe_clear(&g);
    gw_expect(&g, SLUICE_FRAME_BODY);
    gframe_clear(&g);
    gw_expect(&g, SLUICE_FRAME_END);
    gframe_clear(&g);
    cr_assert_not_null(T.req);
    cr_assert_eq(T.req->version, 20, "the app sees the HTTP version as sent");
}

Test(worker, api_misuse_is_refused)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    T.app_request = app_misuse;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 204);
    cr_assert_eq(g.body_mode, 0);
    gframe_clear(&g);
    gw_expect_quiet();
    cr_assert_geq(log_idx("closed:1"), 0);
}

Test(worker, request_body_and_credit)
{
    sluice_worker_config cfg = {.window = 32768};
    setup(&cfg, 65536, 0);
    gw_request(1, SLUICE_BODY_FOLLOWS);
    gw_body(1, pattern, 20000);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.sid, 1);
    cr_assert_eq(g.num, 20000, "credit for the consumed chunk");
    /* Below half the window: batched, no CREDIT yet. */
    gw_body(1, pattern + 20000, 5000);
    gw_expect_quiet();
    cr_assert_eq(T.body_len, 25000);
    static const sluice_header tr[] = {{B("x-checksum"), B("abc")}};
    sluice_frame f = {.type = SLUICE_FRAME_END, .stream_id = 1};
    f.u.trailers.items = tr;
    f.u.trailers.count = 1;
    gw_send(&f);
    run_for(20);
    cr_assert_geq(log_idx("end:1:1"), 0);
    cr_assert_geq(log_idx("trailer:x-checksum=abc"), 0);
    cr_assert_eq(memcmp(T.body, pattern, 25000), 0, "body bytes differ");
    /* No credit after the request side ended. */
    gw_expect_quiet();
    gframe_clear(&g);
}

static sluice_header sum_trailer[] = {{B("x-sum"), B("42")}};
static void app_big_write(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_write(s, pattern, 2500, write_cb, "big"), 0);
    /* END with trailers waits behind the queued bytes. */
    cr_assert_eq(sluice_stream_end(s, sum_trailer, 1), 0);
}

Test(worker, write_beyond_window_waits_for_credit)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 1000, 0);
    T.app_request = app_big_write;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_eq(g.len, 1000);
    cr_assert_eq(memcmp(g.data, pattern, 1000), 0);
    gw_expect_quiet();
    cr_assert_eq(log_count_prefix("wcb:"), 0, "write completed before all credit arrived");
    cr_assert_not_null(T.last);
    cr_assert_eq(sluice_stream_pending(T.last), 1500);
    cr_assert_eq(sluice_stream_send_window(T.last), 0);

    gw_credit(1, 1000);
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_eq(g.len, 1000);
    cr_assert_eq(memcmp(g.data, pattern + 1000, 1000), 0);
    gw_expect_quiet();
    cr_assert_eq(log_count_prefix("wcb:"), 0);

    gw_credit(1, 1000);
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_eq(g.len, 500);
    cr_assert_eq(memcmp(g.data, pattern + 2000, 500), 0);
    gw_expect(&g, SLUICE_FRAME_END);
    cr_assert_eq(g.nheaders, 1);
    cr_assert_str_eq(g.h0name, "x-sum");
    cr_assert_str_eq(g.h0value, "42");
    gframe_clear(&g);
    run_for(20);
    cr_assert_geq(log_idx("wcb:1:big:0"), 0);
    cr_assert_gt(log_idx("closed:1"), log_idx("wcb:1:big:0"));
}

static void app_40k(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_write(s, pattern, 40000, write_cb, "40k"), 0);
    cr_assert_eq(sluice_stream_write(s, pattern + 40000, 100, write_cb, "small"), 0);
    cr_assert_eq(sluice_stream_end(s, NULL, 0), 0);
}

Test(worker, body_split_within_peer_max_frame)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 1000000, 16384);
    T.app_request = app_40k;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    size_t total = 0;
    int frames = 0;
    static uint8_t got[40100];
    for (;;) {
        cr_assert_eq(gw_recv(&g, WAIT_MS), 1);
        if (g.type == SLUICE_FRAME_END)
            break;
        cr_assert_eq(g.type, SLUICE_FRAME_BODY);
        cr_assert_leq(g.frame_len, 16384, "BODY frame of %u bytes exceeds max_frame", g.frame_len);
        cr_assert_leq(total + g.len, sizeof got);
        memcpy(got + total, g.data, g.len);
        total += g.len;
        frames++;
    }
    gframe_clear(&g);
    cr_assert_eq(total, 40100);
    cr_assert_geq(frames, 3, "40000 bytes cannot fit in fewer than 3 frames of 16 KiB");
    cr_assert_eq(memcmp(got, pattern, 40100), 0);
    run_for(20);
    cr_assert_lt(log_idx("wcb:1:40k:0"), log_idx("wcb:1:small:0"), "write callbacks in order");
    cr_assert_geq(log_idx("wcb:1:40k:0"), 0);
}

static void app_pause(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_pause_reading(s), 0);
}

Test(worker, body_on_credit_grants_when_reading_starts)
{
    sluice_worker_config cfg = {.window = 65536};
    setup(&cfg, 65536, 0);
    T.app_request = app_pause;
    gw_request(1, SLUICE_BODY_ON_CREDIT);
    gw_expect_quiet(); /* paused in on_request: the gateway must hold the body */
    cr_assert_not_null(T.last);
    cr_assert_eq(sluice_stream_set_limit(T.last, 10u << 20), 0);
    cr_assert_eq(sluice_stream_read_start(T.last), 0);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_LIMIT);
    cr_assert_eq(g.num, 10u << 20);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.sid, 1);
    cr_assert_eq(g.num, 65536, "initial window granted on read_start");
    /* Only once. */
    cr_assert_eq(sluice_stream_read_start(T.last), 0);
    gw_expect_quiet();
    gw_body(1, pattern, 100);
    sluice_frame f = {.type = SLUICE_FRAME_END, .stream_id = 1};
    gw_send(&f);
    run_for(20);
    cr_assert_geq(log_idx("body:1:100"), 0);
    cr_assert_geq(log_idx("end:1:0"), 0);

    /* Without pausing, the grant follows the request callback at once. */
    T.app_request = NULL;
    gw_request(2, SLUICE_BODY_ON_CREDIT);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.sid, 2);
    cr_assert_eq(g.num, 65536);
    /* body=1 already has the HELLO window: nothing to grant. */
    gw_request(3, SLUICE_BODY_FOLLOWS);
    gw_expect_quiet();
    gframe_clear(&g);
}

/* A streaming echo's shape: the head goes out from on_request, and reading
 * starts when on_request returns (the default), or from read_start called
 * after respond in the same callback. */
static void app_head_first(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_write(s, "echo:", 5, NULL, NULL), 0);
}

static void app_paused_head_then_read(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_pause_reading(s), 0);
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_set_limit(s, 5000), 0); /* LIMIT stays before CREDIT */
    cr_assert_eq(sluice_stream_read_start(s), 0);
}

static void app_refuse(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    sluice_header h[] = {sluice_header_str("content-length", "3")};
    cr_assert_eq(sluice_stream_respond(s, 401, h, 1, true), 0);
    cr_assert_eq(sluice_stream_write(s, "no\n", 3, NULL, NULL), 0);
    cr_assert_eq(sluice_stream_end(s, NULL, 0), 0);
}

Test(worker, body_on_credit_first_credit_goes_ahead_of_the_head)
{
    sluice_worker_config cfg = {.window = 65536};
    setup(&cfg, 65536, 0);
    T.check_link = true; /* the reordered frames are legal for the gateway */
    gframe g = {0};

    /* Head and a body write from on_request, reading by default: the initial
     * CREDIT comes first, so the gateway can still answer 100 Continue. */
    T.app_request = app_head_first;
    gw_request(1, SLUICE_BODY_ON_CREDIT);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.sid, 1);
    cr_assert_eq(g.num, 65536);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 1);
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_eq(g.len, 5);

    /* Paused, then respond, LIMIT and read_start in one callback: LIMIT,
     * CREDIT, RESPONSE on the wire. */
    T.app_request = app_paused_head_then_read;
    gw_request(2, SLUICE_BODY_ON_CREDIT);
    gw_expect(&g, SLUICE_FRAME_LIMIT);
    cr_assert_eq(g.num, 5000);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.sid, 2);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 2);

    /* Answering without reading grants nothing: the upload is never sent. */
    T.app_request = app_refuse;
    gw_request(3, SLUICE_BODY_ON_CREDIT);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 401);
    gw_expect(&g, SLUICE_FRAME_BODY);
    gw_expect(&g, SLUICE_FRAME_END);
    gw_expect_quiet();

    /* The echo still works on stream 1. */
    gw_body(1, pattern, 100);
    run_for(20);
    cr_assert_geq(log_idx("body:1:100"), 0);
    gframe_clear(&g);
}

Test(worker, manual_credit)
{
    sluice_worker_config cfg = {.window = 32768};
    setup(&cfg, 65536, 0);
    T.app_request = app_pause;
    gw_request(1, SLUICE_BODY_FOLLOWS);
    gw_body(1, pattern, 20000);
    gw_expect_quiet(); /* paused: delivered, not credited */
    cr_assert_eq(T.body_len, 20000);
    cr_assert_eq(sluice_stream_consumed(T.last, 20001), -EINVAL);
    cr_assert_eq(sluice_stream_consumed(T.last, 10000), 0);
    gw_expect_quiet(); /* 10000 < half the window */
    cr_assert_eq(sluice_stream_consumed(T.last, 10000), 0);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.num, 20000);
    gframe_clear(&g);
}

static void app_two_writes(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_write(s, pattern, 2000, write_cb, "a"), 0);
    cr_assert_eq(sluice_stream_write(s, pattern + 2000, 50, write_cb, "b"), 0);
}

static void app_cancel_write(sluice_stream *s)
{
    T.rc_in_cb = sluice_stream_write(s, "x", 1, write_cb, "after");
}

Test(worker, cancel_fails_pending_writes)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 1000, 0);
    T.app_request = app_two_writes;
    T.app_cancel = app_cancel_write;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_eq(g.len, 1000);
    sluice_frame f = {.type = SLUICE_FRAME_CANCEL, .stream_id = 1};
    f.u.code.code = SLUICE_CANCEL_CLIENT_CLOSED;
    gw_send(&f);
    run_for(30);
    dump_log();
    int c = log_idx("cancel:1:1");
    int a = log_idx("wcb:1:a:-125"), b = log_idx("wcb:1:b:-125");
    int cl = log_idx("closed:1");
    cr_assert_geq(c, 0, "on_cancel missing");
    cr_assert_gt(a, c, "write a: -ECANCELED after on_cancel");
    cr_assert_gt(b, a, "write b after write a");
    cr_assert_gt(cl, b, "on_stream_closed last");
    cr_assert_eq(T.rc_in_cb, -EPIPE);
    /* Nothing more on the stream; crossing CREDIT is ignored quietly. */
    f = (sluice_frame){.type = SLUICE_FRAME_CREDIT, .stream_id = 1};
    f.u.credit = 5000;
    gw_send_x(&f, false);
    gw_expect_quiet();
    cr_assert_not(T.closed);
    gframe_clear(&g);
}

static void app_reset(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_write(s, pattern, 3000, write_cb, "r"), 0);
    cr_assert_eq(sluice_stream_reset(s, SLUICE_RESET_INTERNAL), 0);
    cr_assert_not(sluice_stream_is_open(s));
}

Test(worker, reset_by_app)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 1000, 0);
    T.app_request = app_reset;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_expect(&g, SLUICE_FRAME_BODY);
    gw_expect(&g, SLUICE_FRAME_RESET);
    cr_assert_eq(g.num, SLUICE_RESET_INTERNAL);
    gframe_clear(&g);
    run_for(20);
    cr_assert_geq(log_idx("wcb:1:r:-125"), 0);
    cr_assert_gt(log_idx("closed:1"), log_idx("wcb:1:r:-125"));
    cr_assert_eq(log_count_prefix("cancel:"), 0, "no on_cancel for our own reset");
}

Test(worker, ping_pong)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    sluice_frame f = {.type = SLUICE_FRAME_PING};
    f.u.opaque = 0xdeadbeefcafeull;
    gw_send(&f);
    f.u.opaque = 7;
    gw_send(&f);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_PONG);
    cr_assert_eq(g.num, 0xdeadbeefcafeull);
    gw_expect(&g, SLUICE_FRAME_PONG);
    cr_assert_eq(g.num, 7);
    gframe_clear(&g);
}

Test(worker, drain_closes_after_inflight_stream)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    gw_request(1, SLUICE_BODY_NONE);
    run_for(10);
    cr_assert_not_null(T.last);
    sluice_frame f = {.type = SLUICE_FRAME_DRAIN};
    f.u.timeout_ms = 5000;
    gw_send(&f);
    gw_expect_quiet(); /* stream 1 still open: the link stays */
    cr_assert_geq(log_idx("drain:5000"), 0);
    cr_assert(sluice_worker_draining(T.w));
    cr_assert_not(T.closed);
    cr_assert_eq(sluice_stream_respond(T.last, 200, NULL, 0, true), 0);
    cr_assert_eq(sluice_stream_write(T.last, "bye", 3, write_cb, "bye"), 0);
    cr_assert_eq(sluice_stream_end(T.last, NULL, 0), 0);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_expect(&g, SLUICE_FRAME_BODY);
    gw_expect(&g, SLUICE_FRAME_END);
    gframe_clear(&g);
    gw_expect_eof();
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, 0);
    cr_assert_lt(log_idx("wcb:1:bye:0"), log_idx("link_closed:0"));
    cr_assert_lt(log_idx("closed:1"), log_idx("link_closed:0"));
}

Test(worker, drain_when_idle_closes_at_once)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    sluice_frame f = {.type = SLUICE_FRAME_DRAIN};
    gw_send(&f);
    gw_expect_eof();
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, 0);
}

static void expect_error_and_close(uint64_t code, int err)
{
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_ERROR);
    cr_assert_eq(g.num, code, "ERROR code %llu, want %llu", (unsigned long long)g.num,
                 (unsigned long long)code);
    gframe_clear(&g);
    gw_expect_eof();
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, err, "closed with %d (%s)", T.closed_err,
                 sluice_proto_strerror(T.closed_err));
}

Test(worker, malformed_frame_sends_error_and_closes)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    gw_request(1, SLUICE_BODY_NONE);
    static const uint8_t junk[] = {0, 0, 0, 3, 0xc1, 0xc1, 0xc1};
    gw_write(junk, sizeof junk);
    expect_error_and_close(1, SLUICE_PROTO_E_MALFORMED);
    /* The open stream was cancelled as the link went. */
    cr_assert_geq(log_idx("cancel:1:0"), 0);
    cr_assert_gt(log_idx("closed:1"), log_idx("cancel:1:0"));
}

Test(worker, oversized_frame_is_frame_size_error)
{
    sluice_worker_config cfg = {.max_frame = 16384};
    setup(&cfg, 65536, 0);
    static const uint8_t big[] = {0, 0, 0x50, 0}; /* 20480 > 16384 */
    gw_write(big, sizeof big);
    expect_error_and_close(2, SLUICE_PROTO_E_FRAME_SIZE);
}

Test(worker, max_streams_enforced)
{
    sluice_worker_config cfg = {.max_streams = 2};
    setup(&cfg, 65536, 0);
    gw_request(1, SLUICE_BODY_NONE);
    gw_request(2, SLUICE_BODY_NONE);
    run_for(10);
    cr_assert_eq(sluice_worker_open_streams(T.w), 2);
    /* The gateway link itself refuses a third; send it raw. */
    sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = 3};
    f.u.request.method = B("GET");
    f.u.request.target = B("/");
    f.u.request.version = 11;
    f.u.request.scheme = B("http");
    gw_send_x(&f, false);
    expect_error_and_close(10, SLUICE_PROTO_E_TOO_MANY_STREAMS);
    cr_assert_eq(log_count_prefix("request:"), 2);
    cr_assert_geq(log_idx("cancel:1:0"), 0);
    cr_assert_geq(log_idx("cancel:2:0"), 0);
    cr_assert_geq(log_idx("closed:1"), 0);
    cr_assert_geq(log_idx("closed:2"), 0);
}

Test(worker, handshake_timeout)
{
    sluice_worker_config cfg = {.handshake_timeout_ms = 100};
    gw_listen(false);
    start_worker(&cfg);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_HELLO);
    gframe_clear(&g);
    expect_error_and_close(15, SLUICE_PROTO_E_TIMEOUT);
    cr_assert_eq(log_count_prefix("ready"), 0);
}

Test(worker, connect_failure_reported)
{
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    sluice_worker_callbacks cbs = {.on_request = cb_request, .on_closed = cb_closed};
    sluice_worker_config cfg = {.socket_path = "/nonexistent/sluice.sock"};
    cr_assert_eq(sluice_worker_new(&T.w, &T.loop, &cfg, &cbs, &T), 0);
    cr_assert_eq(sluice_worker_connect(T.w), 0);
    uint64_t end = now_ms() + WAIT_MS;
    while (!T.closed && now_ms() < end)
        uv_run(&T.loop, UV_RUN_ONCE);
    cr_assert(T.closed);
    cr_assert_eq(T.closed_err, -ENOENT, "got %d", T.closed_err);
}

Test(worker, version_mismatch)
{
    sluice_worker_config cfg = {0};
    gw_listen(false);
    start_worker(&cfg);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_HELLO);
    gframe_clear(&g);
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    f.u.hello.version = 2;
    f.u.hello.has = SLUICE_HELLO_HAS_WINDOW;
    f.u.hello.window = 100;
    gw_send_x(&f, false);
    T.check_link = false;
    expect_error_and_close(11, SLUICE_PROTO_E_VERSION);
}

Test(worker, peer_error_closes_silently)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    sluice_frame f = {.type = SLUICE_FRAME_ERROR};
    f.u.code.code = 12; /* auth */
    f.u.code.message = B("bad token");
    f.u.code.has_message = true;
    gw_send_x(&f, false);
    gw_expect_eof(); /* no ERROR echoed back */
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, SLUICE_PROTO_E_AUTH);
}

Test(worker, eof_mid_frame_is_truncated)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    static const uint8_t part[] = {0, 0, 0, 10, 0x93};
    gw_write(part, sizeof part);
    shutdown(T.gfd, SHUT_WR);
    expect_error_and_close(13, SLUICE_PROTO_E_TRUNCATED);
}

Test(worker, gateway_gone_cancels_streams)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 10, 0);
    T.app_request = app_two_writes;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gframe_clear(&g);
    close(T.gfd);
    T.gfd = -1;
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, -ECONNRESET);
    cr_assert_geq(log_idx("cancel:1:0"), 0);
    cr_assert_geq(log_idx("wcb:1:a:-32"), 0, "pending write fails with -EPIPE");
    cr_assert_geq(log_idx("wcb:1:b:-32"), 0);
    cr_assert_lt(log_idx("closed:1"), log_idx("link_closed:-104"));
}

Test(worker, local_shutdown_retires_and_refuses)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    gw_request(1, SLUICE_BODY_NONE);
    run_for(10);
    cr_assert_not_null(T.last);
    cr_assert_eq(sluice_worker_shutdown(T.w, 5000), 0);
    /* REQUEST 2 crosses RETIRE on the wire (the gateway has not read it yet). */
    gw_request(2, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RETIRE);
    cr_assert_str_eq((const char *)g.data, "shutdown");
    gw_expect(&g, SLUICE_FRAME_RESET);
    cr_assert_eq(g.sid, 2);
    cr_assert_eq(g.num, SLUICE_RESET_REFUSED);
    cr_assert_eq(log_idx("request:2"), -1, "a refused request never reaches the app");
    sluice_frame f = {.type = SLUICE_FRAME_DRAIN};
    f.u.timeout_ms = 5000;
    gw_send(&f);
    gw_expect_quiet(); /* stream 1 is still open */
    cr_assert_eq(sluice_stream_respond(T.last, 200, NULL, 0, false), 0);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gframe_clear(&g);
    gw_expect_eof();
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, 0);
}

Test(worker, shutdown_grace_expires)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    gw_request(1, SLUICE_BODY_NONE);
    run_for(10);
    cr_assert_eq(sluice_worker_shutdown(T.w, 100), 0);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RETIRE);
    gframe_clear(&g);
    gw_expect_eof();
    cr_assert(run_until(&T.closed, WAIT_MS));
    cr_assert_eq(T.closed_err, -ETIMEDOUT);
    cr_assert_geq(log_idx("cancel:1:0"), 0);
}

Test(worker, retire_frame)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0);
    cr_assert_eq(sluice_worker_retire(T.w, "budget"), 0);
    /* A REQUEST crossing RETIRE is still served. */
    T.app_request = app_hello;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RETIRE);
    cr_assert_str_eq((const char *)g.data, "budget");
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 1);
    gframe_clear(&g);
}

static void close_cb(sluice_worker *w)
{
    (void)w;
    logf_("close_cb");
}

Test(worker, close_cancels_streams_then_calls_back)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 10, 0);
    T.app_request = app_two_writes;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gframe_clear(&g);
    cr_assert_eq(sluice_worker_close(T.w, close_cb), 0);
    cr_assert(run_until(&T.closed, WAIT_MS));
    dump_log();
    cr_assert_eq(T.closed_err, 0);
    int c = log_idx("cancel:1:0"), cl = log_idx("closed:1"), lc = log_idx("link_closed:0"),
        cb = log_idx("close_cb");
    cr_assert(c >= 0 && c < cl && cl < lc && lc < cb, "order %d %d %d %d", c, cl, lc, cb);
    cr_assert_eq(sluice_worker_close(T.w, NULL), -ENOTCONN);
}

Test(worker, tcp_transport)
{
    gw_listen(true);
    sluice_worker_config cfg = {0};
    start_worker(&cfg);
    gw_handshake(65536, 0);
    T.app_request = app_hello;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_expect(&g, SLUICE_FRAME_BODY);
    gw_expect(&g, SLUICE_FRAME_END);
    gframe_clear(&g);
}

Test(worker, bad_addresses)
{
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    sluice_worker_callbacks cbs = {.on_request = cb_request};
    const char *bad[] = {"tcp:127.0.0.1", "tcp:127.0.0.1:0", "tcp:[::1:80", "tcp:host:99999",
                         "unix:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sluice_worker *w;
        sluice_worker_config cfg = {.socket_path = bad[i]};
        cr_assert_eq(sluice_worker_new(&w, &T.loop, &cfg, &cbs, NULL), 0);
        cr_assert_lt(sluice_worker_connect(w), 0, "%s accepted", bad[i]);
        sluice_worker_free(w);
    }
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    sluice_worker *w;
    sluice_worker_config cfg = {.socket_path = longp};
    cr_assert_eq(sluice_worker_new(&w, &T.loop, &cfg, &cbs, NULL), 0);
    cr_assert_eq(sluice_worker_connect(w), -ENAMETOOLONG);
    sluice_worker_free(w);
}

Test(worker, req_copy_and_header_lookup)
{
    static const sluice_header hs[] = {{B("content-type"), B("text/html")},
                                       {B("x-a"), B("1")},
                                       {B("X-A"), B("2")}};
    sluice_req r = {.method = B("POST"), .target = B("/up"), .version = 10,
                    .headers = {hs, 3}, .client = {B("::1"), 1}, .scheme = B("https"),
                    .body_mode = 1};
    sluice_req *c = sluice_req_copy(&r);
    cr_assert_not_null(c);
    cr_assert_neq(c->method.ptr, r.method.ptr, "copy, not a view");
    cr_assert_str_eq((const char *)c->method.ptr, "POST");
    cr_assert_str_eq((const char *)c->client.host.ptr, "::1");
    cr_assert_eq(c->headers.count, 3);
    sluice_bytes v;
    cr_assert(sluice_headers_find(&c->headers, "Content-Type", &v));
    cr_assert_eq(v.len, 9);
    cr_assert(sluice_headers_find(&c->headers, "x-a", &v));
    cr_assert_eq(v.ptr[0], '1', "first match wins");
    cr_assert_not(sluice_headers_find(&c->headers, "x-b", NULL));
    free(c);
}

/* ---- sluice_worker_main in a child process --------------------------------------- */

static void child_request(sluice_stream *s, const sluice_req *r, void *ud)
{
    (void)s;
    (void)r;
    (void)ud;
}

static void child_end(sluice_stream *s, const sluice_headers *tr, void *ud)
{
    (void)tr;
    (void)ud;
    sluice_stream_respond(s, 201, NULL, 0, false);
}

Test(worker, main_sigterm_drains_then_exits_zero)
{
    gw_listen(false);
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.loop_inited = true;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(T.lfd);
        sluice_worker_callbacks cbs = {.on_request = child_request, .on_end = child_end};
        sluice_worker_config cfg = {.socket_path = T.addr};
        _exit(sluice_worker_main(&cfg, &cbs, NULL));
    }
    gw_accept();
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_HELLO);
    cr_assert_eq(g.hello.pid, (uint64_t)pid);
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    f.u.hello.version = 1;
    f.u.hello.has = SLUICE_HELLO_HAS_WINDOW;
    f.u.hello.window = 65536;
    gw_send(&f);
    gw_request(1, SLUICE_BODY_FOLLOWS);
    /* A PING round trip proves the child is past its handshake. */
    f = (sluice_frame){.type = SLUICE_FRAME_PING};
    f.u.opaque = 1;
    gw_send(&f);
    gw_expect(&g, SLUICE_FRAME_PONG);
    kill(pid, SIGTERM);
    gw_expect(&g, SLUICE_FRAME_RETIRE);
    f = (sluice_frame){.type = SLUICE_FRAME_END, .stream_id = 1};
    gw_send(&f);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 201);
    gframe_clear(&g);
    f = (sluice_frame){.type = SLUICE_FRAME_DRAIN};
    f.u.timeout_ms = 5000;
    gw_send(&f);
    gw_expect_eof();
    int status = 0;
    uint64_t end = now_ms() + WAIT_MS;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < end)
        usleep(1000);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert_fail("child did not exit");
    }
    cr_assert(WIFEXITED(status), "child status %#x", status);
    cr_assert_eq(WEXITSTATUS(status), 0);
}

/* ---- output bound and multiplexing ------------------------------------------------ */

static sluice_header big_hdr[1];
static char big_val[600];
static void app_big_head(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    int rc = sluice_stream_respond(s, 200, big_hdr, 1, false);
    logf_("respond:%llu:%d", (unsigned long long)sluice_stream_id(s), rc);
}

Test(worker, output_bound_returns_enobufs)
{
    memset(big_val, 'v', sizeof big_val - 1);
    big_hdr[0] = sluice_header_str("x-big", big_val);
    sluice_worker_config cfg = {.max_output = 1024};
    setup(&cfg, 65536, 0);
    T.app_request = app_big_head;
    /* Both REQUESTs in one write: handled in one read, before any flush. */
    sluice_buf b;
    sluice_buf_init(&b, 0);
    for (uint64_t sid = 1; sid <= 2; sid++) {
        sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = sid};
        f.u.request.method = B("GET");
        f.u.request.target = B("/");
        f.u.request.version = 11;
        f.u.request.scheme = B("http");
        cr_assert_eq(sluice_proto_encode(&b, &f, 0), 0);
        sluice_link_event ev;
        cr_assert_eq(sluice_proto_link_send(T.glink, &f, &ev), 0);
    }
    gw_write(b.data, b.len);
    sluice_buf_close(&b);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 1);
    cr_assert_geq(log_idx("respond:1:0"), 0);
    cr_assert_geq(log_idx("respond:2:-105"), 0, "second head beyond max_output: -ENOBUFS");
    gw_expect_quiet();
    /* Once the output drained, the same response goes through. */
    cr_assert_not_null(T.last);
    cr_assert_eq(sluice_stream_respond(T.last, 200, big_hdr, 1, false), 0);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 2);
    gframe_clear(&g);
}

#define NS 8
static const size_t chunk_len[] = {100, 7000, 20000, 0, 300};
#define NCHUNK (sizeof chunk_len / sizeof chunk_len[0])

static size_t stream_total(uint64_t sid)
{
    size_t t = 0;
    for (size_t k = 0; k < NCHUNK; k++)
        t += chunk_len[k] + (k == 2 ? sid * 1000 : 0);
    return t;
}

static void stress_wcb(sluice_stream *s, int status, void *ud)
{
    logf_("swcb:%llu:%d:%d", (unsigned long long)sluice_stream_id(s), (int)(intptr_t)ud, status);
}

static void app_stress(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    uint64_t sid = sluice_stream_id(s);
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, true), 0);
    size_t off = 0;
    for (size_t k = 0; k < NCHUNK; k++) {
        size_t n = chunk_len[k] + (k == 2 ? sid * 1000 : 0);
        cr_assert_eq(sluice_stream_write(s, pattern + off, n, stress_wcb, (void *)(intptr_t)k), 0);
        off += n;
    }
    cr_assert_eq(sluice_stream_end(s, NULL, 0), 0);
}

Test(worker, multiplexed_streams_under_credit_pressure)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 4096, 16384);
    T.app_request = app_stress;
    for (uint64_t sid = 1; sid <= NS; sid++)
        gw_request(sid, SLUICE_BODY_NONE);

    static uint8_t got[NS + 1][64 * 1024];
    size_t gotn[NS + 1] = {0}, owed[NS + 1] = {0};
    bool ended[NS + 1] = {0}, cancelled = false;
    uint32_t rnd = 12345;
    int done = 0;
    uint64_t end = now_ms() + 10000;
    gframe g = {0};
    while (done < NS - 1 || !cancelled) {
        cr_assert_lt(now_ms(), end, "stalled: done %d", done);
        int rc = gw_recv(&g, WAIT_MS);
        cr_assert_eq(rc, 1, "stalled waiting for frames (done %d)", done);
        uint64_t sid = g.sid;
        if (g.type == SLUICE_FRAME_RESPONSE)
            continue;
        cr_assert(sid >= 1 && sid <= NS);
        if (g.type == SLUICE_FRAME_END) {
            cr_assert_neq(sid, 5, "cancelled stream must not END");
            cr_assert_eq(gotn[sid], stream_total(sid), "stream %llu short", (unsigned long long)sid);
            ended[sid] = true;
            done++;
            continue;
        }
        cr_assert_eq(g.type, SLUICE_FRAME_BODY, "unexpected %s", sluice_frame_type_name((int)g.type));
        cr_assert_leq(g.frame_len, 16384);
        cr_assert_leq(gotn[sid] + g.len, sizeof got[0]);
        memcpy(got[sid] + gotn[sid], g.data, g.len);
        gotn[sid] += g.len;
        owed[sid] += g.len;
        sluice_proto_stream *st = sluice_proto_link_stream(T.glink, sid);
        if (sid == 5 && !cancelled && gotn[5] >= 10000) {
            sluice_frame f = {.type = SLUICE_FRAME_CANCEL, .stream_id = 5};
            f.u.code.code = SLUICE_CANCEL_TIMEOUT;
            gw_send(&f);
            cancelled = true;
            continue;
        }
        rnd = rnd * 1103515245u + 12345u;
        size_t thr = 1 + (rnd >> 16) % 4096;
        if (st && (owed[sid] >= thr || sluice_proto_stream_recv_window(st) == 0)) {
            gw_credit(sid, owed[sid]);
            owed[sid] = 0;
        }
    }
    gframe_clear(&g);
    run_for(50);
    for (uint64_t sid = 1; sid <= NS; sid++) {
        cr_assert_eq(memcmp(got[sid], pattern, gotn[sid]), 0, "stream %llu bytes differ",
                     (unsigned long long)sid);
        char ev[64];
        snprintf(ev, sizeof ev, "closed:%llu", (unsigned long long)sid);
        int closed = log_idx(ev);
        cr_assert_geq(closed, 0, "stream %llu never closed", (unsigned long long)sid);
        /* Write callbacks: each exactly once, in order, all before closed. */
        int last = -1;
        bool failed = false;
        for (size_t k = 0; k < NCHUNK; k++) {
            int at = -1, status = 1;
            char pre[64];
            int pl = snprintf(pre, sizeof pre, "swcb:%llu:%zu:", (unsigned long long)sid, k);
            for (int i = 0; i < T.nlog; i++)
                if (strncmp(T.log[i], pre, (size_t)pl) == 0) {
                    cr_assert_eq(at, -1, "callback %s fired twice", pre);
                    at = i;
                    status = atoi(T.log[i] + pl);
                }
            cr_assert_gt(at, last, "callback %s missing or out of order", pre);
            cr_assert_lt(at, closed, "callback %s after on_stream_closed", pre);
            last = at;
            if (sid != 5)
                cr_assert_eq(status, 0, "%s status %d", pre, status);
            else if (status)
                failed = true;
            else
                cr_assert_not(failed, "a write succeeded after an earlier one was cancelled");
            if (sid == 5 && status)
                cr_assert_eq(status, -ECANCELED);
        }
        if (sid == 5)
            cr_assert(failed, "stream 5 writes should have been cancelled");
        else
            cr_assert(ended[sid], "stream %llu did not END", (unsigned long long)sid);
    }
    cr_assert_geq(log_idx("cancel:5:2"), 0);
    cr_assert_eq(log_count_prefix("closed:"), NS);
    cr_assert_not(T.closed);
}

/* ---- WebSockets -------------------------------------------------------------------- */

static void gw_ws_request(uint64_t sid)
{
    static const sluice_header hs[3] = {{B("host"), B("example.com")},
                                        {B("sec-websocket-protocol"), B("chat, superchat")},
                                        {B("sec-websocket-protocol"), B(" v2.echo ")}};
    sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = sid};
    f.u.request.method = B("GET");
    f.u.request.target = B("/ws");
    f.u.request.version = 11;
    f.u.request.headers.items = hs;
    f.u.request.headers.count = 3;
    f.u.request.client.host = B("127.0.0.1");
    f.u.request.server.host = B("127.0.0.1");
    f.u.request.scheme = B("http");
    f.u.request.body = SLUICE_BODY_WEBSOCKET;
    gw_send(&f);
}

static void gw_message(uint64_t sid, uint32_t flags, const void *data, size_t len)
{
    sluice_frame f = {.type = SLUICE_FRAME_MESSAGE, .stream_id = sid};
    f.u.message.flags = flags;
    f.u.message.data.ptr = data;
    f.u.message.data.len = len;
    gw_send(&f);
}

static void ws_setup(sluice_worker_config *cfg, uint32_t gw_window)
{
    T.ws = true;
    setup(cfg, gw_window, 0);
}

static void app_ws_accept(sluice_stream *s, const sluice_req *r)
{
    cr_assert_eq(r->body_mode, SLUICE_BODY_WEBSOCKET);
    cr_assert(sluice_ws_offered(r, "superchat"));
    cr_assert(sluice_ws_offered(r, "v2.echo"), "tokens are trimmed, every field is searched");
    cr_assert(!sluice_ws_offered(r, "super"));
    cr_assert(!sluice_ws_offered(r, ""));
    /* nothing but the answer before the answer */
    cr_assert_eq(sluice_ws_send(s, "x", 1, false, NULL, NULL), -EPROTO);
    cr_assert_eq(sluice_ws_close(s, 1000, NULL), -EPROTO);
    static const sluice_header extra[] = {{B("set-cookie"), B("s=1")}};
    cr_assert_eq(sluice_ws_accept(s, "superchat", extra, 1), 0);
    cr_assert_eq(sluice_ws_accept(s, NULL, NULL, 0), -EPROTO, "accepted once");
    cr_assert_eq(sluice_stream_write(s, "x", 1, NULL, NULL), -EPROTO, "no HTTP body after 101");
    cr_assert_eq(sluice_stream_respond(s, 200, NULL, 0, false), -EPROTO);
    cr_assert_eq(sluice_ws_close(s, 999, NULL), -EINVAL);
    cr_assert_eq(sluice_ws_ping(s, pattern, 126), -EINVAL);
}

/* Echoes each message through sluice_ws_take (as examples/c/ws_echo.c). */
static void free_cb(sluice_stream *s, int status, void *ud)
{
    logf_("sent:%llu:%d", (unsigned long long)sluice_stream_id(s), status);
    free(ud);
}

static void app_echo(sluice_stream *s, const uint8_t *data, size_t len, bool text)
{
    uint8_t *p = sluice_ws_take(s);
    cr_assert_not_null(p);
    cr_assert_null(sluice_ws_take(s), "taken once");
    cr_assert(len == 0 || memcmp(p, data, len) == 0);
    cr_assert_eq(sluice_ws_send(s, p, len, text, free_cb, p), 0);
}

Test(worker, websocket_announced_accepted_and_echoed)
{
    sluice_worker_config cfg = {.window = 1000};
    ws_setup(&cfg, 65536);
    T.app_websocket = app_ws_accept;
    T.app_message = app_echo;
    gw_ws_request(1);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 101);
    cr_assert_eq(g.body_mode, SLUICE_BODY_NONE);
    cr_assert_eq(g.nheaders, 2);
    cr_assert_str_eq(g.h0name, "sec-websocket-protocol");
    cr_assert_str_eq(g.h0value, "superchat");
    cr_assert_geq(log_idx("websocket:1"), 0);
    cr_assert_lt(log_idx("request:1"), 0, "a WebSocket does not reach on_request");

    gw_message(1, SLUICE_MSG_TEXT, "hello", 5);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, SLUICE_MSG_TEXT);
    cr_assert_eq(g.len, 5);
    cr_assert_str_eq((char *)g.data, "hello");
    /* a binary message in three pieces comes back whole, as one piece */
    gw_message(1, SLUICE_MSG_MORE, pattern, 100);
    gw_message(1, SLUICE_MSG_MORE, pattern + 100, 0);
    gw_message(1, 0, pattern + 100, 50);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, 0);
    cr_assert_eq(g.len, 150);
    cr_assert_eq(memcmp(g.data, pattern, 150), 0);
    /* an empty text message */
    gw_message(1, SLUICE_MSG_TEXT, "", 0);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, SLUICE_MSG_TEXT);
    cr_assert_eq(g.len, 0);
    run_for(20);
    cr_assert_geq(log_idx("msg:1:5:1"), 0);
    cr_assert_geq(log_idx("msg:1:150:0"), 0);
    cr_assert_geq(log_idx("msg:1:0:1"), 0);
    cr_assert_eq(log_count_prefix("sent:1:0"), 3);
    /* the gateway closes: the stream ends, no frame goes back */
    sluice_frame f = {.type = SLUICE_FRAME_CLOSE, .stream_id = 1};
    f.u.close.code = 1001;
    f.u.close.reason = B("going away");
    f.u.close.has_reason = true;
    gw_send(&f);
    run_for(30);
    cr_assert_geq(log_idx("ws_close:1:1001:going away"), 0);
    cr_assert_gt(log_idx("closed:1"), log_idx("ws_close:1:1001:going away"));
    gw_expect_quiet();
    gframe_clear(&g);
}

static void app_ws_plain(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_ws_accept(s, NULL, NULL, 0), 0);
}

static void app_ws_hold(sluice_stream *s, const sluice_req *r)
{
    app_ws_plain(s, r);
    cr_assert_eq(sluice_stream_pause_reading(s), 0);
}

Test(worker, websocket_credit_reassembly_and_slow_app)
{
    sluice_worker_config cfg = {.window = 1000};
    ws_setup(&cfg, 65536);
    T.app_websocket = app_ws_hold;
    gw_ws_request(1);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    /* paused: a whole message is held until the app reports it consumed */
    gw_message(1, 0, pattern, 700);
    gw_expect_quiet();
    cr_assert_geq(log_idx("msg:1:700:0"), 0);
    cr_assert_not_null(T.last);
    cr_assert_eq(sluice_stream_consumed(T.last, 701), -EINVAL);
    cr_assert_eq(sluice_stream_consumed(T.last, 700), 0);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.num, 700);
    /* a message larger than the window: its pieces are credited as copied,
     * and consuming it afterwards grants nothing twice */
    gw_message(1, SLUICE_MSG_MORE, pattern, 1000);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.num, 1000);
    gw_message(1, SLUICE_MSG_MORE, pattern + 1000, 1000);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.num, 1000);
    gw_message(1, 0, pattern + 2000, 300);
    gw_expect_quiet(); /* 300 < half the window: batched */
    cr_assert_geq(log_idx("msg:1:2300:0"), 0);
    cr_assert_eq(memcmp(T.body + 700, pattern, 2300), 0);
    cr_assert_eq(sluice_stream_consumed(T.last, 2300), 0);
    gw_expect_quiet();
    /* back to reading: the next whole message is credited as it returns */
    cr_assert_eq(sluice_stream_read_start(T.last), 0);
    gw_message(1, SLUICE_MSG_TEXT, pattern, 200);
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.num, 500, "the 300 batched plus 200");
    gframe_clear(&g);
}

static void app_ws_send_big(sluice_stream *s, const sluice_req *r)
{
    app_ws_plain(s, r);
    cr_assert_eq(sluice_ws_send(s, pattern, 2500, false, write_cb, "big"), 0);
    cr_assert_eq(sluice_ws_send(s, "", 0, true, write_cb, "empty"), 0);
    cr_assert_eq(sluice_ws_ping(s, "abc", 3), 0, "a ping needs no credit");
    cr_assert_eq(sluice_ws_close(s, 1000, "bye"), 0);
    cr_assert_eq(sluice_ws_send(s, "x", 1, false, NULL, NULL), -EPROTO, "closing");
}

Test(worker, websocket_send_within_credit_then_close)
{
    sluice_worker_config cfg = {0};
    ws_setup(&cfg, 1000);
    T.app_websocket = app_ws_send_big;
    gw_ws_request(1);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, SLUICE_MSG_MORE);
    cr_assert_eq(g.len, 1000);
    cr_assert_eq(memcmp(g.data, pattern, 1000), 0);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, SLUICE_MSG_PING);
    cr_assert_str_eq((char *)g.data, "abc");
    gw_expect_quiet();
    cr_assert_eq(sluice_stream_pending(T.last), 1500);
    /* the client answers the ping */
    gw_message(1, SLUICE_MSG_PONG, "abc", 3);
    run_for(20);
    cr_assert_geq(log_idx("pong:1:abc"), 0);
    gw_credit(1, 1000);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, SLUICE_MSG_MORE);
    cr_assert_eq(memcmp(g.data, pattern + 1000, 1000), 0);
    gw_credit(1, 1000);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, 0, "the last piece: more clear");
    cr_assert_eq(g.len, 500);
    gw_expect(&g, SLUICE_FRAME_MESSAGE);
    cr_assert_eq(g.num, SLUICE_MSG_TEXT);
    cr_assert_eq(g.len, 0);
    gw_expect(&g, SLUICE_FRAME_CLOSE);
    cr_assert_eq(g.num, 1000);
    cr_assert_str_eq((char *)g.data, "bye");
    run_for(20);
    cr_assert_geq(log_idx("wcb:1:big:0"), 0);
    cr_assert_geq(log_idx("wcb:1:empty:0"), 0);
    cr_assert_gt(log_idx("closed:1"), log_idx("wcb:1:empty:0"));
    /* frames in flight for the closed stream are ignored */
    gw_send_x(&(sluice_frame){.type = SLUICE_FRAME_MESSAGE, .stream_id = 1}, false);
    gw_expect_quiet();
    gframe_clear(&g);
}

Test(worker, websocket_message_too_big_closes_1009)
{
    sluice_worker_config cfg = {.window = 1000, .ws_max_message = 100};
    ws_setup(&cfg, 65536);
    T.app_websocket = app_ws_plain;
    gw_ws_request(1);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_LIMIT); /* the library's reassembly limit, before its 101 */
    cr_assert_eq(g.num, 100);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    gw_message(1, 0, pattern, 500); /* whole, in one piece: not bounded */
    gw_expect(&g, SLUICE_FRAME_CREDIT);
    cr_assert_eq(g.num, 500);
    gw_message(1, SLUICE_MSG_MORE, pattern, 60);
    gw_message(1, SLUICE_MSG_MORE, pattern, 60);
    gw_expect(&g, SLUICE_FRAME_CLOSE);
    cr_assert_eq(g.num, 1009);
    run_for(20);
    cr_assert_geq(log_idx("ws_close:1:1009:message too big"), 0);
    cr_assert_geq(log_idx("closed:1"), 0);
    cr_assert_lt(log_idx("msg:1:120:0"), 0);
    gframe_clear(&g);
}

static void app_ws_refuse(sluice_stream *s, const sluice_req *r)
{
    (void)r;
    cr_assert_eq(sluice_stream_respond(s, 403, NULL, 0, true), 0);
    cr_assert_eq(sluice_ws_send(s, "x", 1, false, NULL, NULL), -EPROTO);
    cr_assert_eq(sluice_stream_write(s, "no", 2, NULL, NULL), 0);
    cr_assert_eq(sluice_stream_end(s, NULL, 0), 0);
}

Test(worker, websocket_refused_with_an_ordinary_response)
{
    sluice_worker_config cfg = {0};
    ws_setup(&cfg, 65536);
    T.app_websocket = app_ws_refuse;
    gw_ws_request(1);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 403);
    gw_expect(&g, SLUICE_FRAME_BODY);
    cr_assert_str_eq((char *)g.data, "no");
    gw_expect(&g, SLUICE_FRAME_END);
    run_for(20);
    cr_assert_geq(log_idx("closed:1"), 0);
    /* and plain requests still reach on_request */
    T.app_request = app_hello;
    gw_request(2, SLUICE_BODY_NONE);
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.sid, 2);
    gframe_clear(&g);
}

static void app_plain_not_ws(sluice_stream *s, const sluice_req *r)
{
    cr_assert_eq(sluice_ws_accept(s, NULL, NULL, 0), -EPROTO, "not a WebSocket stream");
    cr_assert_eq(sluice_ws_send(s, "x", 1, true, NULL, NULL), -EPROTO);
    cr_assert_eq(sluice_ws_ping(s, "x", 1), -EPROTO);
    cr_assert_null(sluice_ws_take(s), "outside on_message");
    app_hello(s, r);
}

Test(worker, websocket_not_announced_without_handler)
{
    sluice_worker_config cfg = {0};
    setup(&cfg, 65536, 0); /* gw_handshake checks that HELLO has no websocket */
    T.app_request = app_plain_not_ws;
    gw_request(1, SLUICE_BODY_NONE);
    gframe g = {0};
    gw_expect(&g, SLUICE_FRAME_RESPONSE);
    cr_assert_eq(g.num, 200);
    gframe_clear(&g);
}
