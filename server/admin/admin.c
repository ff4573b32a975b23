/* Admin listener: a small HTTP/1.1 server (one request per connection) for
 * status, metrics, health and control. It is meant for operators, monitoring
 * and orchestrators on a private address or Unix socket, never for the
 * public. The reading endpoints are open; the mutating ones (POST) need the
 * admin token when one is set, and without one are served only on a
 * loopback address or a Unix socket. */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "worker/pool.h"

#define URL_MAX 2048
#define BODY_MAX 4096
#define HEAD_MAX (16 * 1024) /* header names and values, all together (431 beyond) */
#define HNAME_MAX 32         /* longer names are not ones we look at */
#define AUTH_MAX 1024        /* an Authorization value (431 beyond) */

typedef struct admin_conn {
    gateway *gw;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
    } h;
    uv_timer_t timer;
    int handles;
    llhttp_t parser;
    char url[URL_MAX];
    size_t url_len;
    size_t head_bytes;
    char hname[HNAME_MAX];   /* the header name being read */
    size_t hname_len;
    bool hname_long;
    bool in_auth;            /* reading an Authorization value */
    uint32_t n_auth;         /* Authorization headers seen */
    char auth[AUTH_MAX];
    size_t auth_len;
    int fail;                /* a limit exceeded while parsing: answer this status */
    bool done, closed;
    bool linger;             /* answered before the request ended: read on, drop it */
    bool head;               /* HEAD: the answer's head only */
    const char *extra;       /* one more response header line, "Name: value\r\n" */
    sluice_buf out;
    uv_write_t wreq;
    uv_shutdown_t sreq;
} admin_conn;

/* The admin listener of one loop (gw->admin). */
struct admin {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
    } server;
    bool live;
    bool local; /* a Unix socket or a loopback address: POST is open without a token */
    char unix_path[256];
    char rbuf[8192]; /* one read at a time, parsed at once */
};

/* ---- output helpers --------------------------------------------------- */

static void bprintf(sluice_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(sluice_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sluice_buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void on_closed(uv_handle_t *h)
{
    admin_conn *c = h->data;
    if (--c->handles > 0)
        return;
    sluice_buf_close(&c->out);
    free(c);
}

static void close_conn(admin_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    uv_close((uv_handle_t *)&c->h.stream, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

static void on_timeout(uv_timer_t *t) { close_conn(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status)
{
    admin_conn *c = req->data;
    if (status < 0)
        close_conn(c);
}

/* An answer to a request not read to its end (a limit, a parse error):
 * closing now, with unread bytes, would reset the connection and could
 * lose the answer on the client's side. So the write side is shut down
 * and the rest read and dropped until the client closes, for 2 s at most. */
static void on_written(uv_write_t *req, int status)
{
    admin_conn *c = req->data;
    if (!c->linger || status < 0 || c->closed) {
        close_conn(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, 2000, 0);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, &c->h.stream, on_shutdown) < 0)
        close_conn(c);
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void respond(admin_conn *c, int status, const char *ctype, sluice_buf *body)
{
    sluice_buf_reset(&c->out);
    bprintf(&c->out, "HTTP/1.1 %d %s\r\nServer: " SLUICE_SERVER_NAME "\r\nContent-Type: %s\r\n"
            "Content-Length: %zu\r\nCache-Control: no-store\r\n%sConnection: close\r\n\r\n",
            status, reason(status), ctype, body->len, c->extra ? c->extra : "");
    if (!c->head)
        sluice_buf_append(&c->out, body->data, body->len);
    uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_written) < 0)
        close_conn(c);
}

static void respond_text(admin_conn *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void respond_text(admin_conn *c, int status, const char *fmt, ...)
{
    sluice_buf body;
    sluice_buf_init(&body, BODY_MAX);
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sluice_buf_append(&body, tmp, n > 0 ? (size_t)n : 0);
    respond(c, status, "application/json", &body);
    sluice_buf_close(&body);
}

/* ---- readiness and authorization -------------------------------------- */

/* Why the gateway should get no traffic now, or NULL: it is stopping (or
 * within shutdown_delay), or a pool has no ready worker (`buf` then holds
 * the message). A pool that wants no worker now (min_workers = 0, or
 * scaled to 0) is not waiting for one: it starts one when a request comes,
 * which it would never get if it made the gateway unready. */
static const char *not_ready(const gateway *gw, char *buf, size_t cap)
{
    if (gw->stopping || gw->stop_delayed)
        return "stopping";
    for (uint32_t i = 0; i < gw->n_pools; i++)
        if (pool_ready_workers(gw->pools[i]) == 0 && pool_target(gw->pools[i]) > 0) {
            snprintf(buf, cap, "pool %s has no ready worker", pool_name(gw->pools[i]));
            return buf;
        }
    return NULL;
}

bool admin_address_is_local(const char *address)
{
    return !strncmp(address, "unix:", 5) || sluice_address_is_loopback(address);
}

/* Compare without leaking where the first difference is (the time depends
 * on the expected token's length only). */
static bool token_equal(const char *want, const char *got, size_t got_len)
{
    size_t n = strlen(want);
    unsigned diff = n != got_len;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(unsigned char)want[i] ^ (i < got_len ? (unsigned char)got[i] : 0u);
    return diff == 0;
}

admin_auth admin_authorize(const char *token, bool local, const char *authorization, size_t len)
{
    if (!token || !token[0])
        return local ? ADMIN_AUTH_OK : ADMIN_AUTH_NEEDS_TOKEN;
    if (!authorization)
        return ADMIN_AUTH_MISSING;
    /* credentials = "Bearer" 1*SP token (the scheme is case-insensitive) */
    if (len < 7 || strncasecmp(authorization, "Bearer", 6) || (authorization[6] != ' ' && authorization[6] != '\t'))
        return ADMIN_AUTH_MISSING;
    const char *t = authorization + 7;
    size_t n = len - 7;
    while (n && (*t == ' ' || *t == '\t')) {
        t++;
        n--;
    }
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    if (n == 0)
        return ADMIN_AUTH_MISSING;
    return token_equal(token, t, n) ? ADMIN_AUTH_OK : ADMIN_AUTH_WRONG;
}

/* May this connection use a mutating endpoint? If not, answers it. */
static bool authorized(admin_conn *c)
{
    gateway *gw = c->gw;
    switch (admin_authorize(gw->cfg->admin_token, gw->admin->local, c->n_auth ? c->auth : NULL, c->auth_len)) {
    case ADMIN_AUTH_OK:
        return true;
    case ADMIN_AUTH_MISSING:
        c->extra = "WWW-Authenticate: Bearer\r\n";
        respond_text(c, 401, "{\"error\":\"this endpoint needs Authorization: Bearer TOKEN (the admin_token)\"}\n");
        return false;
    case ADMIN_AUTH_WRONG:
        respond_text(c, 403, "{\"error\":\"wrong admin token\"}\n");
        return false;
    case ADMIN_AUTH_NEEDS_TOKEN:
    default:
        respond_text(c, 403, "{\"error\":\"set admin_token to use POST endpoints on a non-loopback admin address\"}\n");
        return false;
    }
}

/* ---- /status ---------------------------------------------------------- */

static void status_json(gateway *gw, sluice_buf *b)
{
    char why[128];
    bprintf(b, "{\"server\":\"%s\",\"pid\":%d,\"uptime_s\":%.1f,\"connections\":%u,\"requests\":%llu,"
               "\"stopping\":%s,\"ready\":%s,\"listeners\":[",
            SLUICE_SERVER_NAME, (int)getpid(), (double)(uv_now(gw->loop) - gw->started_ms) / 1000.0,
            gw->n_conns, (unsigned long long)gw->requests_total, gw->stopping ? "true" : "false",
            not_ready(gw, why, sizeof why) ? "false" : "true");
    /* the listeners are fixed at start (a reload keeps them) */
    for (uint32_t i = 0; i < gw->cfg->n_listens; i++) {
        const sluice_listen_config *l = &gw->cfg->listens[i];
        bool v6 = strchr(l->host, ':') != NULL;
        bprintf(b, "%s{\"address\":\"%s%s%s:%d\",\"scheme\":\"%s\",\"certificates\":%u}", i ? "," : "",
                v6 ? "[" : "", l->host, v6 ? "]" : "", l->port, l->n_certs ? "https" : "http", l->n_certs);
    }
    bprintf(b, "],\"pools\":[");
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        pool *p = gw->pools[i];
        const pool_stats *st = pool_get_stats(p);
        uint64_t total = 0, active, capacity;
        for (int k = 1; k <= 5; k++)
            total += st->requests[k];
        pool_streams(p, &active, &capacity);
        bprintf(b, "%s{\"name\":\"%s\",\"workers_target\":%u,\"min_workers\":%u,\"max_workers\":%u,"
                   "\"ready_workers\":%u,\"active_streams\":%llu,\"capacity_streams\":%llu,"
                   "\"queue_depth\":%u,\"requests\":%llu,\"restarts\":%llu,"
                   "\"websockets\":{\"open\":%llu,\"total\":%llu,\"messages_in\":%llu,\"messages_out\":%llu,"
                   "\"bytes_in\":%llu,\"bytes_out\":%llu},\"workers\":[",
                i ? "," : "", pool_name(p), pool_target(p), pool_min_workers(p), pool_max_workers(p),
                pool_ready_workers(p), (unsigned long long)active, (unsigned long long)capacity, pool_queue_len(p),
                (unsigned long long)total, (unsigned long long)st->restarts, (unsigned long long)st->ws_open,
                (unsigned long long)st->ws_total, (unsigned long long)st->ws_msgs_in,
                (unsigned long long)st->ws_msgs_out, (unsigned long long)st->ws_bytes_in,
                (unsigned long long)st->ws_bytes_out);
        bool first = true;
        for (uint32_t k = 0; k < pool_worker_count(p); k++) {
            pool_worker_view v;
            if (!pool_worker_info(p, k, &v) || (!strcmp(v.state, "idle") && !v.wanted))
                continue;
            bprintf(b, "%s{\"id\":%u,\"pid\":%d,\"state\":\"%s\",\"active_streams\":%u,\"requests\":%llu,"
                       "\"restarts\":%llu,\"uptime_s\":%.1f,\"rss_bytes\":%llu}",
                    first ? "" : ",", v.id, v.pid, v.state, v.active_streams, (unsigned long long)v.requests,
                    (unsigned long long)v.restarts, v.uptime_s, (unsigned long long)v.rss);
            first = false;
        }
        /* workers started outside sluice: served, not supervised */
        bprintf(b, "],\"attached\":[");
        pool_worker_view v;
        for (uint32_t k = 0; pool_attached_info(p, k, &v); k++)
            bprintf(b, "%s{\"id\":%u,\"pid\":%d,\"peer\":\"%s\",\"state\":\"%s\",\"active_streams\":%u,"
                       "\"requests\":%llu,\"uptime_s\":%.1f,\"rss_bytes\":%llu}",
                    k ? "," : "", v.id, v.pid, v.peer, v.state, v.active_streams, (unsigned long long)v.requests,
                    v.uptime_s, (unsigned long long)v.rss);
        bprintf(b, "]}");
    }
    bprintf(b, "]}\n");
}

/* ---- /metrics --------------------------------------------------------- */

/* One per-pool series of a uint64 pool_stats field. */
static void per_pool(sluice_buf *b, gateway *gw, const char *name, const char *type, const char *help,
                     size_t field)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        const pool_stats *st = pool_get_stats(gw->pools[i]);
        uint64_t v = *(const uint64_t *)((const char *)st + field);
        bprintf(b, "%s{pool=\"%s\"} %llu\n", name, pool_name(gw->pools[i]), (unsigned long long)v);
    }
}

/* One pool's series of a histogram: cumulative buckets (each plus `all`,
 * observations counted in every bucket), +Inf, sum and count. */
static void histogram(sluice_buf *b, const char *name, const char *pn, const uint64_t buckets[POOL_LAT_BUCKETS],
                      uint64_t all, uint64_t count, double sum)
{
    for (int k = 0; k < POOL_LAT_BUCKETS; k++)
        bprintf(b, "%s_bucket{pool=\"%s\",le=\"%g\"} %llu\n", name, pn, pool_latency_bounds[k],
                (unsigned long long)(buckets[k] + all));
    bprintf(b, "%s_bucket{pool=\"%s\",le=\"+Inf\"} %llu\n", name, pn, (unsigned long long)count);
    bprintf(b, "%s_sum{pool=\"%s\"} %.6f\n", name, pn, sum);
    bprintf(b, "%s_count{pool=\"%s\"} %llu\n", name, pn, (unsigned long long)count);
}

static void metrics_text(gateway *gw, sluice_buf *b)
{
    bprintf(b, "# HELP sluice_requests_total Requests answered, by pool and status class.\n"
               "# TYPE sluice_requests_total counter\n");
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        const pool_stats *st = pool_get_stats(gw->pools[i]);
        for (int k = 1; k <= 5; k++)
            bprintf(b, "sluice_requests_total{pool=\"%s\",class=\"%dxx\"} %llu\n", pool_name(gw->pools[i]), k,
                    (unsigned long long)st->requests[k]);
    }
    bprintf(b, "# HELP sluice_request_duration_seconds Time from request head to response end.\n"
               "# TYPE sluice_request_duration_seconds histogram\n");
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        const pool_stats *st = pool_get_stats(gw->pools[i]);
        histogram(b, "sluice_request_duration_seconds", pool_name(gw->pools[i]), st->lat_buckets, 0, st->lat_count,
                  st->lat_sum);
    }
    per_pool(b, gw, "sluice_received_bytes_total", "counter", "Request body bytes read from clients.",
             offsetof(pool_stats, bytes_in));
    per_pool(b, gw, "sluice_sent_bytes_total", "counter", "Response body bytes sent to clients.",
             offsetof(pool_stats, bytes_out));
    per_pool(b, gw, "sluice_websockets_open", "gauge", "Open WebSockets.", offsetof(pool_stats, ws_open));
    per_pool(b, gw, "sluice_websockets_total", "counter", "WebSockets accepted.", offsetof(pool_stats, ws_total));
    per_pool(b, gw, "sluice_websocket_messages_received_total", "counter", "WebSocket messages from clients.",
             offsetof(pool_stats, ws_msgs_in));
    per_pool(b, gw, "sluice_websocket_messages_sent_total", "counter", "WebSocket messages to clients.",
             offsetof(pool_stats, ws_msgs_out));
    per_pool(b, gw, "sluice_websocket_received_bytes_total", "counter",
             "WebSocket message payload bytes from clients.", offsetof(pool_stats, ws_bytes_in));
    per_pool(b, gw, "sluice_websocket_sent_bytes_total", "counter", "WebSocket message payload bytes to clients.",
             offsetof(pool_stats, ws_bytes_out));
    bprintf(b, "# HELP sluice_open_connections Open client connections.\n"
               "# TYPE sluice_open_connections gauge\nsluice_open_connections %u\n", gw->n_conns);
    bprintf(b, "# HELP sluice_workers Worker processes, by pool and state.\n# TYPE sluice_workers gauge\n");
    static const char *const states[] = {"starting", "running", "retiring", "backoff", "stopping"};
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        pool *p = gw->pools[i];
        uint32_t counts[5] = {0};
        for (uint32_t k = 0; k < pool_worker_count(p); k++) {
            pool_worker_view v;
            if (!pool_worker_info(p, k, &v))
                continue;
            for (int s = 0; s < 5; s++)
                if (!strcmp(v.state, states[s]))
                    counts[s]++;
        }
        for (int s = 0; s < 5; s++)
            bprintf(b, "sluice_workers{pool=\"%s\",state=\"%s\"} %u\n", pool_name(p), states[s], counts[s]);
        uint32_t attached = 0;
        for (pool_worker_view v; pool_attached_info(p, attached, &v);)
            attached++;
        bprintf(b, "sluice_workers{pool=\"%s\",state=\"attached\"} %u\n", pool_name(p), attached);
    }
    per_pool(b, gw, "sluice_worker_restarts_total", "counter", "Workers restarted after an unexpected exit.",
             offsetof(pool_stats, restarts));
    bprintf(b, "# HELP sluice_queue_depth Requests waiting for a worker.\n# TYPE sluice_queue_depth gauge\n");
    for (uint32_t i = 0; i < gw->n_pools; i++)
        bprintf(b, "sluice_queue_depth{pool=\"%s\"} %u\n", pool_name(gw->pools[i]), pool_queue_len(gw->pools[i]));
    per_pool(b, gw, "sluice_queued_requests_total", "counter", "Requests that had to wait for a worker.",
             offsetof(pool_stats, queued_total));
    bprintf(b, "# HELP sluice_queue_wait_seconds_total Time requests spent waiting for a worker.\n"
               "# TYPE sluice_queue_wait_seconds_total counter\n");
    for (uint32_t i = 0; i < gw->n_pools; i++)
        bprintf(b, "sluice_queue_wait_seconds_total{pool=\"%s\"} %.6f\n", pool_name(gw->pools[i]),
                pool_get_stats(gw->pools[i])->queue_wait_sum);
    /* for autoscalers: how long requests wait, and how busy the workers are */
    bprintf(b, "# HELP sluice_queue_wait_duration_seconds Time from a request's arrival at its pool to a worker taking it "
               "(0 when one was free at once).\n# TYPE sluice_queue_wait_duration_seconds histogram\n");
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        const pool_stats *st = pool_get_stats(gw->pools[i]);
        histogram(b, "sluice_queue_wait_duration_seconds", pool_name(gw->pools[i]), st->qwait_buckets,
                  st->qwait_none, st->qwait_count + st->qwait_none, st->queue_wait_sum);
    }
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"sluice_pool_active_streams", "Requests and WebSockets open on the pool's workers."},
        {"sluice_pool_capacity_streams", "Streams the pool's ready workers can have open at once "
                                         "(the sum of their max_streams)."},
        {"sluice_pool_busy_ratio", "Active streams over capacity (0 without capacity)."},
    };
    for (int g = 0; g < 3; g++) {
        bprintf(b, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help, gauges[g].name);
        for (uint32_t i = 0; i < gw->n_pools; i++) {
            uint64_t active, capacity; /* a walk of the pool's links: cheap next to the text */
            pool_streams(gw->pools[i], &active, &capacity);
            const char *pn = pool_name(gw->pools[i]);
            if (g < 2)
                bprintf(b, "%s{pool=\"%s\"} %llu\n", gauges[g].name, pn,
                        (unsigned long long)(g == 0 ? active : capacity));
            else
                bprintf(b, "%s{pool=\"%s\"} %.6g\n", gauges[g].name, pn,
                        capacity ? (double)active / (double)capacity : 0.0);
        }
    }
}

/* ---- routing ---------------------------------------------------------- */

static bool query_u32(const char *q, const char *key, uint32_t *out)
{
    size_t kl = strlen(key);
    while (q && *q) {
        if (!strncmp(q, key, kl) && q[kl] == '=') {
            char *end;
            unsigned long v = strtoul(q + kl + 1, &end, 10);
            if (end == q + kl + 1 || (*end && *end != '&') || v > 4096)
                return false;
            *out = (uint32_t)v;
            return true;
        }
        q = strchr(q, '&');
        if (q)
            q++;
    }
    return false;
}

static void handle(admin_conn *c)
{
    gateway *gw = c->gw;
    const char *method = llhttp_method_name((llhttp_method_t)c->parser.method);
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool post = !strcmp(method, "POST");
    c->head = !strcmp(method, "HEAD");
    char *q = strchr(c->url, '?');
    if (q)
        *q++ = 0;
    const char *path = c->url;
    bool is_scale = !strncmp(path, "/pools/", 7) && strlen(path) > 13 && !strcmp(path + strlen(path) - 6, "/scale");
    bool is_get = !strcmp(path, "/status") || !strcmp(path, "/metrics") || !strcmp(path, "/healthz") ||
                  !strcmp(path, "/readyz");
    bool is_post = !strcmp(path, "/reload") || is_scale;
    if ((is_get && !get) || (is_post && !post)) {
        c->extra = is_get ? "Allow: GET, HEAD\r\n" : "Allow: POST\r\n";
        respond_text(c, 405, "{\"error\":\"use %s\"}\n", is_get ? "GET" : "POST");
        return;
    }
    if (is_post && !authorized(c))
        return;
    sluice_buf body;
    sluice_buf_init(&body, 16u << 20);
    if (!strcmp(path, "/healthz")) {
        respond_text(c, 200, "{\"ok\":true}\n");
    } else if (!strcmp(path, "/readyz")) {
        char buf[128];
        const char *why = not_ready(gw, buf, sizeof buf);
        if (why)
            respond_text(c, 503, "{\"ready\":false,\"reason\":\"%s\"}\n", why);
        else
            respond_text(c, 200, "{\"ready\":true}\n");
    } else if (!strcmp(path, "/status")) {
        status_json(gw, &body);
        respond(c, 200, "application/json", &body);
    } else if (!strcmp(path, "/metrics")) {
        metrics_text(gw, &body);
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", &body);
    } else if (!strcmp(path, "/reload")) {
        int rc = gw_reload(gw);
        if (rc < 0)
            respond_text(c, 409, "{\"error\":\"reload failed: %s (see the error log)\"}\n", strerror(-rc));
        else
            respond_text(c, 200, "{\"reloading\":true}\n");
    } else if (is_scale) {
        char name[64];
        size_t nl = strlen(path) - 13;
        pool *p = NULL;
        if (nl < sizeof name) {
            memcpy(name, path + 7, nl);
            name[nl] = 0;
            for (uint32_t i = 0; i < gw->n_pools; i++)
                if (!strcmp(pool_name(gw->pools[i]), name))
                    p = gw->pools[i];
        }
        uint32_t n;
        if (!p)
            respond_text(c, 404, "{\"error\":\"no such pool\"}\n");
        else if (!query_u32(q, "workers", &n))
            respond_text(c, 400, "{\"error\":\"give ?workers=N (0..4096)\"}\n");
        else if (gw->stop_delayed || pool_scale(p, n) < 0)
            respond_text(c, 409, "{\"error\":\"cannot scale now\"}\n");
        else
            respond_text(c, 200, "{\"pool\":\"%s\",\"workers\":%u}\n", pool_name(p), n);
    } else {
        respond_text(c, 404, "{\"error\":\"not found\",\"endpoints\":[\"GET /status\",\"GET /metrics\","
                             "\"GET /healthz\",\"GET /readyz\",\"POST /pools/NAME/scale?workers=N\","
                             "\"POST /reload\"]}\n");
    }
    sluice_buf_close(&body);
}

/* ---- parsing ---------------------------------------------------------- */

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    admin_conn *c = p->data;
    if (c->url_len + len >= URL_MAX)
        return HPE_USER;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

/* Headers: only Authorization is kept; the rest is counted and dropped. */
static int count_head(admin_conn *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > HEAD_MAX) {
        c->fail = 431;
        return HPE_USER;
    }
    return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    admin_conn *c = p->data;
    if (count_head(c, len))
        return HPE_USER;
    if (c->hname_len + len > sizeof c->hname)
        c->hname_long = true;
    else {
        memcpy(c->hname + c->hname_len, at, len);
        c->hname_len += len;
    }
    return 0;
}

static int cb_header_field_complete(llhttp_t *p)
{
    admin_conn *c = p->data;
    c->in_auth = !c->hname_long && c->hname_len == 13 && !strncasecmp(c->hname, "authorization", 13);
    c->hname_len = 0;
    c->hname_long = false;
    if (c->in_auth && ++c->n_auth > 1) { /* which one would count? */
        c->fail = 400;
        return HPE_USER;
    }
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    admin_conn *c = p->data;
    if (count_head(c, len))
        return HPE_USER;
    if (!c->in_auth)
        return 0;
    if (c->auth_len + len >= sizeof c->auth) {
        c->fail = 431;
        return HPE_USER;
    }
    memcpy(c->auth + c->auth_len, at, len);
    c->auth_len += len;
    c->auth[c->auth_len] = 0;
    return 0;
}

static int cb_header_value_complete(llhttp_t *p)
{
    admin_conn *c = p->data;
    c->in_auth = false;
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    admin_conn *c = p->data;
    c->done = true;
    return HPE_PAUSED;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    admin_conn *c = h->data;
    buf->base = c->gw->admin->rbuf;
    buf->len = sizeof c->gw->admin->rbuf;
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    admin_conn *c = h->data;
    if (c->closed || nread == 0)
        return;
    if (nread < 0) {
        close_conn(c);
        return;
    }
    if (c->done || c->linger)
        return;
    llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
    if (c->done) {
        uv_read_stop(h);
        handle(c);
    } else if (err != HPE_OK) {
        c->linger = true;
        if (c->fail == 431)
            respond_text(c, 431, "{\"error\":\"request header fields too large\"}\n");
        else
            respond_text(c, 400, "{\"error\":\"bad request\"}\n");
    }
}

static const llhttp_settings_t settings = {
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_field_complete = cb_header_field_complete,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_message_complete = cb_message_complete,
};

static void on_connection(uv_stream_t *srv, int status)
{
    gateway *gw = srv->data;
    if (status < 0)
        return;
    admin_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->gw = gw;
    sluice_buf_init(&c->out, 32u << 20);
    if (srv->type == UV_TCP)
        uv_tcp_init(gw->loop, &c->h.tcp);
    else
        uv_pipe_init(gw->loop, &c->h.pipe, 0);
    c->h.stream.data = c;
    uv_timer_init(gw->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    if (uv_accept(srv, &c->h.stream) < 0) {
        close_conn(c);
        return;
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_timer_start(&c->timer, on_timeout, 10000, 0);
    uv_read_start(&c->h.stream, alloc_cb, on_read);
}

int admin_listen(gateway *gw)
{
    admin *ad = calloc(1, sizeof *ad);
    if (!ad)
        return -ENOMEM;
    gw->admin = ad;
    const char *a = gw->cfg->admin;
    int rc;
    if (!strncmp(a, "unix:", 5)) {
        snprintf(ad->unix_path, sizeof ad->unix_path, "%s", a + 5);
        unlink(ad->unix_path);
        uv_pipe_init(gw->loop, &ad->server.pipe, 0);
        ad->server.pipe.data = gw;
        mode_t old = umask(0177);
        rc = uv_pipe_bind(&ad->server.pipe, ad->unix_path);
        umask(old);
    } else {
        struct sockaddr_storage ss;
        rc = sluice_listen_sockaddr(a, &ss);
        uv_tcp_init(gw->loop, &ad->server.tcp);
        ad->server.tcp.data = gw;
        if (rc == 0)
            rc = uv_tcp_bind(&ad->server.tcp, (struct sockaddr *)&ss, 0);
    }
    ad->live = true;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ad->server, 64, on_connection);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "admin listener on %s: %s", a, uv_strerror(rc));
        return rc;
    }
    ad->local = admin_address_is_local(a);
    slog(gw->log, LOG_INFO, "admin listening on %s%s", a, gw->cfg->admin_token[0] ? " (POST needs the admin token)" : "");
    if (!ad->local && !gw->cfg->admin_token[0])
        slog(gw->log, LOG_WARN, "admin listener on %s is not a loopback address and no admin_token is set: "
             "POST /reload and /pools/NAME/scale are refused there (403); set admin_token, or use a "
             "loopback address or a Unix socket", a);
    return 0;
}

static void on_server_closed(uv_handle_t *h)
{
    free((admin *)h); /* the server handle is the struct's first member */
}

void admin_close(gateway *gw)
{
    admin *ad = gw->admin;
    if (!ad)
        return;
    gw->admin = NULL;
    if (ad->live && !uv_is_closing(&ad->server.handle))
        uv_close(&ad->server.handle, on_server_closed);
    if (ad->unix_path[0])
        unlink(ad->unix_path);
    if (!ad->live)
        free(ad);
}
