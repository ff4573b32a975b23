/* HTTP/1.1 client side: listener, connections, request parsing (llhttp),
 * response serialization, and the stream_* callbacks through which the
 * worker side drives an exchange.
 *
 * A connection runs one exchange at a time: pipelined requests wait in the
 * input buffer (bounded) until the response before them is complete, which
 * keeps responses in order and memory bounded. Request bodies are fed to
 * the parser only as far as the worker's credit allows, so a stalled worker
 * stops the reads from its client (TCP backpressure). Response bodies are
 * credited back to the worker only once the client socket took them. */
#include <errno.h>
#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"
#include "http_strict.h"
#include "loop.h"
#include "stream.h"

#define IN_SIZE (64 * 1024)
/* Raw bytes fed to the parser beyond the worker's credit: lets chunk
 * framing complete when the credit is exactly used up; at most this many
 * body bytes wait in `pending`. */
#define SLACK 64
#define TRAILER_BYTES 4096
#define MAX_TRAILERS 32
#define OUT_MAX (64u << 20)
/* Unsent response bytes beyond which the next pipelined request is not
 * started (nor, once IN_SIZE is buffered, more bytes read). */
#define PIPELINE_OUT_MAX (64 * 1024)
/* The kernel caps it at net.core.somaxconn; bursts of thousands of
 * connects should wait in it, not be dropped and retried a second later. */
#define LISTEN_BACKLOG 4096

enum { T_NONE, T_HEADER, T_KEEPALIVE, T_QUEUE, T_RESPONSE };
enum { P_NONE, P_HEADERS, P_CHUNK, P_MESSAGE };

typedef struct {
    uint32_t name_off, name_len, val_off, val_len;
} hoff;

struct conn {
    gateway *gw;
    conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_timer_t body_timer; /* client body idle (runs beside `timer`) */
    bool body_timer_on;
    int handles;
    int timer_kind;
    llhttp_t parser;
    flush_node flush;
    char remote[48];
    char local[48];
    uint16_t remote_port, local_port;

    /* input: either the gateway's shared buffer (during a read callback) or
     * this connection's own buffer holding unparsed bytes between reads */
    uint8_t *own_in;
    const uint8_t *ibase;
    size_t istart, iend;
    bool reading, eof;

    /* request head being parsed */
    sluice_buf head;
    hoff *hoffs;
    uint32_t nh, n_req_headers, n_trailers, max_headers;
    int hstate; /* 0: between headers, 1: in a name, 2: in a value */
    uint32_t url_off, url_len;
    bool msg_started, in_trailers;
    bool method_done, line_done; /* parsed so far: for the access log of a refusal */
    int pause;
    int error_status;
    head_scan hscan;  /* request head or trailer section being checked */
    chunk_scan cscan;
    bool chunk_line;  /* the next bytes are a chunk-size line (parsed here) */

    stream *cur;
    uint32_t requests;
    bool keepalive;
    bool parsing, reparse;
    bool held;      /* a pipelined request waits for unsent responses to drain */
    bool closing; /* close once output is flushed */
    bool closed;  /* handles are closing */

    const char *feed_base;  /* start of the bytes given to llhttp_execute */
    char prev_tail[8];      /* the last bytes of the previous feed */
    size_t prev_tail_len;

    uint8_t pending[SLACK];
    size_t pending_len;

    sluice_buf out, wbuf;
    uv_write_t wreq;
    bool writing;
    uint64_t out_credit, wbuf_credit; /* response body bytes inside out / wbuf */
    uint64_t unacked;                 /* written to the client, not yet credited */
    bool chunked_out;                 /* the response body goes out chunked */
    bool close_delimited;             /* HTTP/1.0 without a length: the close ends the body */
};

static llhttp_settings_t settings;
static void conn_parse(conn *c);
static void conn_close(conn *c);
static void exchange_fail(conn *c, int status, uint32_t cancel_reason);
static void exchange_maybe_finish(conn *c);
static void update_reading(conn *c);
static void set_timer(conn *c, int kind);

/* ---- small helpers ---------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:
        return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
               : status < 500 ? "Client Error" : "Server Error";
    }
}

static bool valid_name(sluice_bytes b)
{
    if (b.len == 0)
        return false;
    for (size_t i = 0; i < b.len; i++)
        if (!http_tchar[b.ptr[i]])
            return false;
    return true;
}

/* Field values from workers: no CR, LF, NUL or other controls but HTAB. */
static bool valid_value(sluice_bytes b)
{
    for (size_t i = 0; i < b.len; i++) {
        uint8_t ch = b.ptr[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static bool name_is(sluice_bytes b, const char *lower)
{
    size_t n = strlen(lower);
    if (b.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = b.ptr[i];
        if (ch >= 'A' && ch <= 'Z')
            ch += 32;
        if (ch != (uint8_t)lower[i])
            return false;
    }
    return true;
}

/* RFC 9110 7.6.1: the fixed hop-by-hop fields. TE is handled by the
 * caller (only "trailers" passes). */
static bool hop_by_hop(sluice_bytes n)
{
    return name_is(n, "connection") || name_is(n, "keep-alive") || name_is(n, "proxy-connection") ||
           name_is(n, "transfer-encoding") || name_is(n, "upgrade") || name_is(n, "te");
}

static bool ows(uint8_t ch) { return ch == ' ' || ch == '\t'; }

/* The next element of a comma-separated list (RFC 9110 5.6.1) from *pos,
 * whitespace trimmed; false at the end. */
static bool list_next(sluice_bytes list, size_t *pos, sluice_bytes *elem)
{
    size_t i = *pos;
    while (i < list.len && (ows(list.ptr[i]) || list.ptr[i] == ','))
        i++;
    if (i == list.len) {
        *pos = i;
        return false;
    }
    size_t start = i;
    while (i < list.len && list.ptr[i] != ',')
        i++;
    size_t end = i;
    while (end > start && ows(list.ptr[end - 1]))
        end--;
    *pos = i;
    *elem = (sluice_bytes){list.ptr + start, end - start};
    return true;
}

static bool bytes_caseeq(sluice_bytes a, sluice_bytes b)
{
    return a.len == b.len && !strncasecmp((const char *)a.ptr, (const char *)b.ptr, a.len);
}

/* TE is hop-by-hop; "trailers" alone tells the worker the client accepts
 * trailers (gRPC relies on it), so that one value is passed on. */
static bool te_trailers_only(sluice_bytes v)
{
    return v.len == 8 && !strncasecmp((const char *)v.ptr, "trailers", 8);
}

/* ---- output ----------------------------------------------------------- */

static void conn_flush(flush_node *n);

static void out_append(conn *c, const void *p, size_t n)
{
    if (c->closed)
        return;
    if (sluice_buf_append(&c->out, p, n) < 0) {
        slog(c->gw->log, LOG_ERROR, "%s: response buffer overflow; closing", c->remote);
        conn_close(c);
        return;
    }
    gw_defer_flush(c->gw, &c->flush);
}

static void out_str(conn *c, const char *s) { out_append(c, s, strlen(s)); }

/* Credit response-body bytes the client socket has taken. */
static void credit_written(conn *c, uint64_t n)
{
    stream *s = c->cur;
    if (!n || !s || !s->link)
        return;
    c->unacked += n;
    uint32_t half = stream_config(s)->window / 2;
    if (c->unacked >= half || c->unacked >= 1u << 30) {
        uint32_t k = (uint32_t)c->unacked;
        c->unacked = 0;
        stream_grant(s, k);
    }
}

/* Output drained: a pipelined request held back by PIPELINE_OUT_MAX may go. */
static void resume_pipeline(conn *c)
{
    if (!c->held || c->closed || c->closing || c->cur)
        return;
    c->held = false;
    set_timer(c, T_HEADER);
    conn_parse(c);
}

static void on_written(uv_write_t *req, int status)
{
    conn *c = req->data;
    c->writing = false;
    uint64_t credit = c->wbuf_credit;
    c->wbuf_credit = 0;
    sluice_buf_reset(&c->wbuf);
    if (c->wbuf.cap > 256 * 1024)
        sluice_buf_close(&c->wbuf);
    if (c->closed)
        return;
    if (status < 0) {
        c->closing = true;
        if (c->cur && !c->cur->resp_done)
            exchange_fail(c, 0, SLUICE_CANCEL_CLIENT_CLOSED);
        conn_close(c);
        return;
    }
    credit_written(c, credit);
    if (c->out.len)
        conn_flush(&c->flush);
    else if (c->closing)
        conn_close(c);
    resume_pipeline(c);
}

static void conn_flush(flush_node *n)
{
    conn *c = (conn *)((char *)n - offsetof(conn, flush));
    if (c->closed || c->writing)
        return;
    if (c->out.len == 0) {
        if (c->closing)
            conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w == (int)c->out.len) {
        uint64_t credit = c->out_credit;
        c->out_credit = 0;
        sluice_buf_reset(&c->out);
        credit_written(c, credit);
        if (c->closing && c->out.len == 0)
            conn_close(c);
        else
            resume_pipeline(c);
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        c->closing = true;
        if (c->cur && !c->cur->resp_done)
            exchange_fail(c, 0, SLUICE_CANCEL_CLIENT_CLOSED);
        conn_close(c);
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    sluice_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    sluice_buf_reset(&c->out);
    c->wbuf_credit = c->out_credit;
    c->out_credit = 0;
    b = uv_buf_init((char *)c->wbuf.data + done, (unsigned)(c->wbuf.len - done));
    c->writing = true;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        c->writing = false;
        conn_close(c);
    }
}

/* A response generated by the gateway itself. */
/* Queues a complete error response; returns its body length. */
static size_t write_error(conn *c, int status, bool close)
{
    const char *reason = reason_phrase(status);
    char head[512];
    size_t dlen;
    const char *date = gw_date_line(c->gw, &dlen);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: " SLUICE_SERVER_NAME "\r\n%.*s"
                     "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s%s\r\n%s\n",
                     status, reason, (int)dlen, date, strlen(reason) + 1,
                     status == 503 ? "Retry-After: 1\r\n" : "", close ? "Connection: close\r\n" : "",
                     reason);
    out_append(c, head, (size_t)n);
    return strlen(reason) + 1;
}

/* Access log line for a request refused before it became an exchange:
 * the method and target when the request line got that far. */
static void log_refused(conn *c, int status, size_t bytes)
{
    if (!sluice_log_access_enabled(c->gw->log))
        return;
    sluice_access a = {.remote = c->remote, .method = "-", .method_len = 1, .target = "-", .target_len = 1,
                       .http_minor = 1, .status = status, .bytes = bytes, .worker_id = -1};
    if (c->method_done) {
        const char *m = llhttp_method_name((llhttp_method_t)c->parser.method);
        a.method = m;
        a.method_len = strlen(m);
    }
    if (c->line_done) {
        a.target = (const char *)c->head.data + c->url_off;
        a.target_len = c->url_len;
        if (c->parser.http_major == 1 && c->parser.http_minor == 0)
            a.http_minor = 0;
    }
    sluice_log_access(c->gw->log, &a);
}

/* ---- timers ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void set_timer(conn *c, int kind)
{
    const sluice_config *cfg = c->gw->cfg;
    const sluice_pool_config *pc = c->cur && c->cur->pool ? stream_config(c->cur) : NULL;
    uint64_t ms = 0;
    switch (kind) {
    case T_HEADER: ms = cfg->header_timeout_ms; break;
    case T_KEEPALIVE: ms = cfg->keepalive_timeout_ms; break;
    case T_QUEUE: ms = pc ? pc->queue_timeout_ms : 1; break;
    case T_RESPONSE: ms = pc ? pc->response_timeout_ms : 1; break;
    default: break;
    }
    c->timer_kind = kind;
    if (kind == T_NONE || c->closed)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms ? ms : 1, 0);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    switch (c->timer_kind) {
    case T_KEEPALIVE:
        conn_close(c);
        break;
    case T_HEADER:
        if (c->msg_started) {
            log_refused(c, 408, write_error(c, 408, true));
            c->closing = true;
            gw_defer_flush(c->gw, &c->flush);
        } else {
            conn_close(c);
        }
        break;
    case T_QUEUE:
        if (c->cur)
            stream_withdraw(c->cur);
        exchange_fail(c, 504, 0);
        break;
    case T_RESPONSE:
        exchange_fail(c, 504, SLUICE_CANCEL_TIMEOUT);
        break;
    }
}

/* The client sent no body bytes for body_timeout while the gateway was
 * waiting for them: 408, or once the response started, abort it. */
static void on_body_timer(uv_timer_t *t)
{
    conn *c = t->data;
    c->body_timer_on = false;
    stream *s = c->cur;
    if (!s || s->req_complete || c->closed)
        return;
    slog(c->gw->log, LOG_INFO, "%s: no request body bytes for %llu ms; %s", c->remote,
         (unsigned long long)c->gw->cfg->body_timeout_ms, s->resp_started ? "aborting" : "408");
    c->keepalive = false;
    exchange_fail(c, s->resp_started ? 0 : 408, SLUICE_CANCEL_BODY_TIMEOUT);
}

/* Runs while an exchange waits for request body bytes from the client (not
 * while the worker holds the body back); any bytes read restart it. */
static void update_body_timer(conn *c, bool starved)
{
    stream *s = c->cur;
    bool want = starved && s && !s->req_complete && s->link && !c->closing && !c->closed &&
                c->gw->cfg->body_timeout_ms > 0;
    if (want && !c->body_timer_on) {
        uv_timer_start(&c->body_timer, on_body_timer, c->gw->cfg->body_timeout_ms, 0);
        c->body_timer_on = true;
    } else if (!want && c->body_timer_on) {
        uv_timer_stop(&c->body_timer);
        c->body_timer_on = false;
    }
}

/* ---- exchange --------------------------------------------------------- */

static void log_exchange(conn *c, stream *s)
{
    double ms = (double)(uv_hrtime() / 1000 - s->start_ms) / 1000.0;
    stream_record(s, ms / 1000.0);
    if (!sluice_log_access_enabled(c->gw->log))
        return;
    sluice_access a = {
        .remote = c->remote,
        .method = (const char *)s->req.method.ptr,
        .method_len = s->req.method.len,
        .target = (const char *)s->req.target.ptr,
        .target_len = s->req.target.len,
        .http_minor = s->req.version == 10 ? 0 : 1,
        .status = s->status,
        .bytes = s->resp_bytes,
        .duration_ms = ms,
        .worker_id = s->worker_id,
    };
    sluice_log_access(c->gw->log, &a);
}

static void reset_head(conn *c)
{
    sluice_buf_reset(&c->head);
    if (c->head.cap > 16 * 1024)
        sluice_buf_close(&c->head);
    c->nh = c->n_req_headers = c->n_trailers = 0;
    c->hstate = 0;
    c->url_len = 0;
    c->msg_started = c->in_trailers = false;
    c->method_done = c->line_done = false;
    c->pending_len = 0;
}

/* Stream finished on both sides: next request, or close. */
static void exchange_maybe_finish(conn *c)
{
    stream *s = c->cur;
    if (!s || !s->resp_done)
        return;
    if (!s->req_complete)
        c->keepalive = false; /* the rest of the upload was never read */
    if (!s->req_complete && !c->closing) {
        /* the worker answered early: finish writing, then close */
        c->closing = true;
    }
    stream_cancel(s, SLUICE_CANCEL_INTERNAL); /* no link after END; be safe */
    stream_withdraw(s);
    log_exchange(c, s);
    c->gw->requests_total++;
    c->cur = NULL;
    c->out_credit = c->wbuf_credit = 0;
    c->unacked = 0;
    stream_put(c->gw, s);
    reset_head(c);
    if (!c->keepalive)
        c->closing = true;
    if (c->closing) {
        set_timer(c, T_NONE);
        gw_defer_flush(c->gw, &c->flush);
        gw_notify_finished(c->gw);
        return;
    }
    set_timer(c, c->iend > c->istart ? T_HEADER : T_KEEPALIVE);
    conn_parse(c);
    gw_notify_finished(c->gw);
}

/* The exchange cannot complete normally. status 0: nothing to send. */
static void exchange_fail(conn *c, int status, uint32_t cancel_reason)
{
    stream *s = c->cur;
    if (!s)
        return;
    stream_cancel(s, cancel_reason ? cancel_reason : SLUICE_CANCEL_INTERNAL);
    stream_withdraw(s);
    if (s->resp_started || status == 0) {
        /* mid-response: the client must see the response is broken */
        s->status = s->status ? s->status : 499;
        s->resp_done = true;
        c->keepalive = false;
        log_exchange(c, s);
        c->cur = NULL;
        stream_put(c->gw, s);
        conn_close(c);
        return;
    }
    bool close = !s->req_complete || !c->keepalive;
    s->status = status;
    s->resp_bytes = write_error(c, status, close);
    s->resp_started = s->resp_done = true;
    if (close)
        c->keepalive = false;
    exchange_maybe_finish(c);
}

/* ---- stream_ops: the worker side's reports -------------------------- */

static void on_stream_unavailable(stream *s, int status)
{
    if (s->owner)
        exchange_fail(s->owner, status, 0);
}

static void on_stream_lost(stream *s)
{
    conn *c = s->owner;
    if (c)
        exchange_fail(c, 502, 0);
}

/* A worker that refuses a request (it is stopping, or full) has done
 * nothing with it: when no request body byte went to it either, the
 * request is placed again, on another worker or in the queue, so a worker
 * leaving mid-load fails no request. Bounded, then 503. */
#define MAX_REFUSALS 3

static void on_stream_reset(stream *s, uint64_t code)
{
    conn *c = s->owner;
    if (!c)
        return;
    bool refused = code == SLUICE_RESET_REFUSED || code == SLUICE_RESET_OVERLOADED;
    if (refused && !s->resp_started && s->body_sent == 0 && s->refusals < MAX_REFUSALS) {
        s->refusals++;
        s->end_sent = false; /* the next worker gets its own END */
        s->worker_id = -1;
        int rc = stream_submit(s);
        if (rc == 1) {
            set_timer(c, T_QUEUE);
            return;
        }
        if (rc == 0)
            return;
    }
    exchange_fail(c, refused ? 503 : 502, 0);
}

/* Forward pending body bytes and END as credit allows. */
static void forward_pending(conn *c)
{
    stream *s = c->cur;
    if (!s || !s->link)
        return;
    if (c->pending_len) {
        uint32_t win = stream_send_window(s);
        size_t n = c->pending_len < win ? c->pending_len : win;
        if (n) {
            if (stream_send_body(s, c->pending, n) < 0)
                return;
            s->body_sent += n;
            memmove(c->pending, c->pending + n, c->pending_len - n);
            c->pending_len -= n;
        }
    }
    if (s->req_complete && !s->end_sent && c->pending_len == 0 && s->link) {
        s->end_sent = true;
        size_t nt = c->n_trailers;
        stream_send_end(s, nt ? s->hdrs + c->n_req_headers : NULL, nt);
    }
}

static void on_stream_dispatched(stream *s)
{
    conn *c = s->owner;
    if (s->body_mode == SLUICE_BODY_NONE)
        s->end_sent = true;
    if (!c)
        return;
    if (!s->resp_started)
        set_timer(c, T_RESPONSE);
    forward_pending(c);
    conn_parse(c);
}

static void on_stream_credit(stream *s)
{
    conn *c = s->owner;
    if (!c)
        return;
    if (!s->credit_seen) {
        s->credit_seen = true;
        if (s->body_mode == SLUICE_BODY_ON_CREDIT && s->has_length &&
            s->content_length > s->body_limit) {
            exchange_fail(c, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
            return;
        }
        if (s->expect_continue && !s->continue_sent && !s->resp_started) {
            s->continue_sent = true;
            out_str(c, "HTTP/1.1 100 Continue\r\n\r\n");
        }
    }
    forward_pending(c);
    conn_parse(c);
}

static void on_stream_limit(stream *s, uint64_t max_body)
{
    uint64_t ceiling = stream_config(s)->max_body_ceiling;
    s->body_limit = max_body < ceiling ? max_body : ceiling;
    if (s->owner && !s->req_complete &&
        (s->body_received > s->body_limit ||
         (s->has_length && s->content_length > s->body_limit)))
        exchange_fail(s->owner, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
}

/* Build and queue the response head. Returns false when the worker's head
 * is unacceptable. */
static bool write_head(conn *c, stream *s, const sluice_response *r)
{
    /* validate first: nothing is written for a bad head */
    bool has_date = false, has_server = false;
    uint64_t cl = UINT64_MAX;
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (!valid_name(h->name) || !valid_value(h->value))
            return false;
        if (name_is(h->name, "content-length")) {
            uint64_t v = 0;
            if (h->value.len == 0 || h->value.len > 19)
                return false;
            for (size_t k = 0; k < h->value.len; k++) {
                if (h->value.ptr[k] < '0' || h->value.ptr[k] > '9')
                    return false;
                v = v * 10 + (h->value.ptr[k] - '0');
            }
            if (cl != UINT64_MAX && cl != v)
                return false;
            cl = v;
        } else if (name_is(h->name, "date")) {
            has_date = true;
        } else if (name_is(h->name, "server")) {
            has_server = true;
        }
    }
    int st = (int)r->status;
    s->status = st;
    bool head_req = s->req.method.len == 4 && !memcmp(s->req.method.ptr, "HEAD", 4);
    bool no_body_status = st == 204 || st == 304;
    s->resp_no_body = head_req || no_body_status;
    s->resp_cl = cl;

    char line[128];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", st, reason_phrase(st));
    out_append(c, line, (size_t)n);
    if (!has_server)
        out_str(c, "Server: " SLUICE_SERVER_NAME "\r\n");
    if (!has_date) {
        size_t dlen;
        const char *d = gw_date_line(c->gw, &dlen);
        out_append(c, d, dlen);
    }
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (hop_by_hop(h->name))
            continue;
        if (st == 204 && name_is(h->name, "content-length"))
            continue;
        out_append(c, h->name.ptr, h->name.len);
        out_append(c, ": ", 2);
        out_append(c, h->value.ptr, h->value.len);
        out_append(c, "\r\n", 2);
    }
    if (!s->resp_no_body && cl == UINT64_MAX) {
        if (r->body == SLUICE_BODY_NONE) {
            out_str(c, "Content-Length: 0\r\n");
            s->resp_cl = 0;
        } else if (s->req.version >= 11) {
            out_str(c, "Transfer-Encoding: chunked\r\n");
            c->chunked_out = true;
        } else {
            c->close_delimited = true; /* HTTP/1.0: the close ends the body */
            c->keepalive = false;
        }
    }
    /* An upload the worker will never read forces a close. */
    if (!s->req_complete && s->body_mode == SLUICE_BODY_ON_CREDIT && !s->credit_seen)
        c->keepalive = false;
    if (!c->keepalive)
        out_str(c, "Connection: close\r\n");
    else if (s->req.version == 10)
        out_str(c, "Connection: keep-alive\r\n");
    out_append(c, "\r\n", 2);
    return true;
}

static void finish_response(conn *c, stream *s)
{
    s->resp_done = true;
    if (c->close_delimited)
        c->closing = true;
    exchange_maybe_finish(c);
}

static void on_stream_response(stream *s, const sluice_response *r)
{
    conn *c = s->owner;
    if (!c)
        return;
    if (!write_head(c, s, r)) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent an invalid response head (stream %llu); 502",
             (long long)s->worker_id, (unsigned long long)s->sid);
        exchange_fail(c, 502, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    s->resp_started = true;
    set_timer(c, T_NONE);
    if (r->body == SLUICE_BODY_NONE)
        finish_response(c, s);
}

static void on_stream_body(stream *s, const uint8_t *data, size_t len)
{
    conn *c = s->owner;
    if (!c || !len)
        return;
    if (s->resp_no_body) { /* HEAD/204/304: discard, but keep the worker going */
        credit_written(c, len);
        return;
    }
    if (s->resp_cl != UINT64_MAX && s->resp_bytes + len > s->resp_cl) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent more than its Content-Length; aborting", (long long)s->worker_id);
        exchange_fail(c, 0, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    if (c->chunked_out) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        out_append(c, sz, (size_t)n);
        out_append(c, data, len);
        out_append(c, "\r\n", 2);
    } else {
        out_append(c, data, len);
    }
    s->resp_bytes += len;
    c->out_credit += len;
}

static void on_stream_end(stream *s, const sluice_headers *trailers)
{
    conn *c = s->owner;
    if (!c)
        return;
    if (s->resp_cl != UINT64_MAX && !s->resp_no_body && s->resp_bytes != s->resp_cl) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent %llu of %llu body bytes; aborting", (long long)s->worker_id,
             (unsigned long long)s->resp_bytes, (unsigned long long)s->resp_cl);
        exchange_fail(c, 0, 0);
        return;
    }
    if (c->chunked_out) {
        out_str(c, "0\r\n");
        for (size_t i = 0; i < trailers->count; i++) {
            const sluice_header *h = &trailers->items[i];
            if (!valid_name(h->name) || !valid_value(h->value) || hop_by_hop(h->name) ||
                name_is(h->name, "content-length"))
                continue;
            out_append(c, h->name.ptr, h->name.len);
            out_append(c, ": ", 2);
            out_append(c, h->value.ptr, h->value.len);
            out_append(c, "\r\n", 2);
        }
        out_append(c, "\r\n", 2);
    }
    finish_response(c, s);
}

static const stream_ops http1_stream_ops = {
    .dispatched = on_stream_dispatched,
    .response = on_stream_response,
    .body = on_stream_body,
    .end = on_stream_end,
    .credit = on_stream_credit,
    .limit = on_stream_limit,
    .reset = on_stream_reset,
    .lost = on_stream_lost,
    .unavailable = on_stream_unavailable,
};

/* ---- request parsing -------------------------------------------------- */

static int head_append(conn *c, const char *at, size_t len)
{
    uint32_t limit = c->gw->cfg->max_header_bytes;
    if (c->in_trailers) {
        if (c->head.len + len > c->head.cap) { /* trailers may not move the head */
            c->error_status = 431;
            return HPE_USER;
        }
    } else if (c->head.len + len > limit) {
        c->error_status = 431;
        return HPE_USER;
    }
    if (sluice_buf_append(&c->head, at, len) < 0) {
        c->error_status = 431;
        return HPE_USER;
    }
    return 0;
}

static conn *P(llhttp_t *p) { return p->data; }

static int cb_message_begin(llhttp_t *p)
{
    conn *c = P(p);
    reset_head(c);
    c->msg_started = true;
    if (c->timer_kind != T_HEADER)
        set_timer(c, T_HEADER);
    return 0;
}

static int cb_method_complete(llhttp_t *p)
{
    P(p)->method_done = true;
    return 0;
}

static int cb_version_complete(llhttp_t *p)
{
    P(p)->line_done = true;
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    if (c->url_len == 0)
        c->url_off = (uint32_t)c->head.len;
    if (c->url_len + len > c->gw->cfg->max_target) {
        c->error_status = 414;
        return HPE_USER;
    }
    c->url_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    if (c->hstate != 1) {
        uint32_t max = c->in_trailers ? c->n_req_headers + MAX_TRAILERS : c->max_headers;
        if (c->nh >= max) {
            c->error_status = c->in_trailers ? 400 : 431;
            return HPE_USER;
        }
        hoff *h = &c->hoffs[c->nh];
        h->name_off = (uint32_t)c->head.len;
        h->name_len = 0;
        h->val_off = h->val_len = 0;
        c->hstate = 1;
    }
    c->hoffs[c->nh].name_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int cb_header_field_complete(llhttp_t *p)
{
    conn *c = P(p);
    c->hoffs[c->nh].val_off = (uint32_t)c->head.len;
    c->hoffs[c->nh].val_len = 0;
    return 0;
}

/* llhttp 8 accepts obs-fold (a value continued on a line starting with
 * whitespace). A value span preceded, across whitespace, by a line feed is
 * such a continuation; the bytes before this feed are kept in prev_tail. */
static bool after_line_feed(conn *c, const char *at)
{
    const char *q = at;
    while (q > c->feed_base) {
        char ch = *--q;
        if (ch == '\n')
            return true;
        if (ch != ' ' && ch != '\t')
            return false;
    }
    for (size_t i = c->prev_tail_len; i > 0; i--) {
        char ch = c->prev_tail[i - 1];
        if (ch == '\n')
            return true;
        if (ch != ' ' && ch != '\t')
            return false;
    }
    return false;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    if (len && after_line_feed(c, at)) {
        c->error_status = 400; /* obs-fold: RFC 9112 5.2 */
        return HPE_USER;
    }
    if (c->hstate != 2) {
        c->hoffs[c->nh].val_off = (uint32_t)c->head.len;
        c->hstate = 2;
    }
    c->hoffs[c->nh].val_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int cb_header_value_complete(llhttp_t *p)
{
    conn *c = P(p);
    /* trim trailing whitespace (llhttp strips the leading) */
    hoff *h = &c->hoffs[c->nh];
    while (h->val_len && (c->head.data[h->val_off + h->val_len - 1] == ' ' ||
                          c->head.data[h->val_off + h->val_len - 1] == '\t'))
        h->val_len--;
    c->nh++;
    c->hstate = 0;
    return 0;
}

static void start_exchange(conn *c);

static int cb_headers_complete(llhttp_t *p)
{
    conn *c = P(p);
    c->n_req_headers = c->nh;
    start_exchange(c);
    if (c->error_status && !c->cur)
        return HPE_USER;
    /* A request with a body stops here: the body is fed only as the
     * worker's credit allows. One without goes on to message_complete. */
    c->pause = P_HEADERS;
    if (p->flags & F_CHUNKED) { /* always paused here: conn_parse reads the size lines */
        c->chunk_line = true;
        chunk_scan_start(&c->cscan);
    }
    if (!c->cur || c->closing || c->cur->body_mode != SLUICE_BODY_NONE)
        return HPE_PAUSED;
    return 0;
}

static int cb_chunk_header(llhttp_t *p)
{
    if (p->content_length == 0)
        P(p)->in_trailers = true;
    return 0;
}

/* After a chunk's data and CRLF: pause, the next size line is ours. */
static int cb_chunk_complete(llhttp_t *p)
{
    conn *c = P(p);
    if (c->in_trailers)
        return 0;
    c->chunk_line = true;
    chunk_scan_start(&c->cscan);
    c->pause = P_CHUNK;
    return HPE_PAUSED;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    stream *s = c->cur;
    if (!s)
        return 0;
    s->body_received += len;
    if (s->body_received > s->body_limit) {
        c->error_status = 413;
        return HPE_USER;
    }
    size_t sent = 0;
    if (s->link && c->pending_len == 0) {
        uint32_t win = stream_send_window(s);
        sent = len < win ? len : win;
        if (sent && stream_send_body(s, (const uint8_t *)at, sent) < 0)
            sent = 0;
        s->body_sent += sent;
    } else if (!s->link && s->end_sent) {
        return 0; /* the worker finished: the rest is dropped */
    }
    size_t rest = len - sent;
    if (rest) {
        if (rest > SLACK - c->pending_len) { /* cannot happen: feeds are bounded */
            c->error_status = 500;
            return HPE_USER;
        }
        memcpy(c->pending + c->pending_len, at + sent, rest);
        c->pending_len += rest;
    }
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    conn *c = P(p);
    c->pause = P_MESSAGE;
    return HPE_PAUSED;
}

static void init_settings(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = cb_message_begin;
    settings.on_url = cb_url;
    settings.on_method_complete = cb_method_complete;
    settings.on_version_complete = cb_version_complete;
    settings.on_header_field = cb_header_field;
    settings.on_header_field_complete = cb_header_field_complete;
    settings.on_header_value = cb_header_value;
    settings.on_header_value_complete = cb_header_value_complete;
    settings.on_headers_complete = cb_headers_complete;
    settings.on_chunk_header = cb_chunk_header;
    settings.on_chunk_complete = cb_chunk_complete;
    settings.on_body = cb_body;
    settings.on_message_complete = cb_message_complete;
}

/* Headers are complete: build the stream and hand it to the pool. */
/* Request-smuggling defences beyond llhttp's strict mode (RFC 9112 3.2,
 * 5.2, 6.1): exactly one valid Host on HTTP/1.1 (at most one on 1.0), a
 * valid http(s) authority in an absolute-form target, no obs-fold, and no
 * transfer coding but a lone "chunked" -- anything the gateway would have
 * to interpret differently from the worker or a proxy is refused. */
static bool head_acceptable(conn *c)
{
    uint8_t *hb = c->head.data;
    uint32_t hosts = 0;
    const uint8_t *auth;
    size_t auth_len;
    if (target_authority(hb + c->url_off, c->url_len, &auth, &auth_len) < 0)
        return false;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        sluice_bytes nb = {hb + h->name_off, h->name_len}, vb = {hb + h->val_off, h->val_len};
        if (nb.len == 0)
            return false; /* empty field name: RFC 9110 5.1 */
        if (memchr(vb.ptr, '\r', vb.len) || memchr(vb.ptr, '\n', vb.len))
            return false; /* obs-fold */
        if (name_is(nb, "host")) {
            if (!host_valid(vb.ptr, vb.len))
                return false; /* RFC 9110 7.2: it drives routing */
            hosts++;
        } else if (name_is(nb, "transfer-encoding") &&
                 !(vb.len == 7 && !strncasecmp((const char *)vb.ptr, "chunked", 7)))
            return false;
    }
    bool http11 = c->parser.http_major == 1 && c->parser.http_minor == 1;
    return http11 ? hosts == 1 : hosts <= 1;
}

/* Whether some token of the request's Connection headers satisfies
 * match(token, arg). */
static bool connection_token(conn *c, bool (*match)(sluice_bytes, sluice_bytes), sluice_bytes arg)
{
    uint8_t *hb = c->head.data;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        sluice_bytes nb = {hb + h->name_off, h->name_len}, t;
        if (!name_is(nb, "connection"))
            continue;
        size_t pos = 0;
        while (list_next((sluice_bytes){hb + h->val_off, h->val_len}, &pos, &t))
            if (match(t, arg))
                return true;
    }
    return false;
}

/* A token beyond the usual close, keep-alive and upgrade (hop-by-hop
 * fields or no field): only then are fields looked up in Connection. */
static bool names_a_field(sluice_bytes t, sluice_bytes unused)
{
    (void)unused;
    return !name_is(t, "close") && !name_is(t, "keep-alive") && !name_is(t, "upgrade");
}

static void start_exchange(conn *c)
{
    gateway *gw = c->gw;
    const sluice_config *cfg = gw->cfg;
    llhttp_t *p = &c->parser;
    if (!head_acceptable(c)) {
        c->error_status = 400;
        return;
    }
    stream *s = stream_get(gw, c->max_headers + MAX_TRAILERS);
    if (!s) {
        c->error_status = 503;
        return;
    }
    s->ops = &http1_stream_ops;
    s->owner = c;
    c->chunked_out = c->close_delimited = false;
    s->start_ms = uv_hrtime() / 1000;
    c->cur = s;
    c->requests++;
    /* room for trailers that must not move the head buffer later */
    sluice_buf_reserve(&c->head, TRAILER_BYTES);

    uint8_t *hb = c->head.data;
    const char *method = llhttp_method_name((llhttp_method_t)p->method);
    s->req.method = (sluice_bytes){(const uint8_t *)method, strlen(method)};
    s->req.target = (sluice_bytes){hb + c->url_off, c->url_len};
    s->req.version = p->http_major == 1 && p->http_minor == 0 ? 10 : 11;
    s->req.client = (sluice_addr){{(const uint8_t *)c->remote, strlen(c->remote)}, c->remote_port};
    s->req.server = (sluice_addr){{(const uint8_t *)c->local, strlen(c->local)}, c->local_port};
    s->req.scheme = (sluice_bytes){(const uint8_t *)"http", 4};

    bool expect_continue = false, expect_other = false;
    sluice_bytes host = {NULL, 0};
    const uint8_t *auth = NULL;
    size_t auth_len = 0;
    bool absolute = target_authority(s->req.target.ptr, s->req.target.len, &auth, &auth_len) == 1;
    bool conn_options = connection_token(c, names_a_field, (sluice_bytes){NULL, 0});
    size_t n = 0;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        uint8_t *name = hb + h->name_off;
        for (uint32_t k = 0; k < h->name_len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] += 32;
        sluice_bytes nb = {name, h->name_len}, vb = {hb + h->val_off, h->val_len};
        if (hop_by_hop(nb) && !(name_is(nb, "te") && te_trailers_only(vb)))
            continue;
        if (conn_options && !name_is(nb, "host") && connection_token(c, bytes_caseeq, nb))
            continue; /* RFC 9110 7.6.1: named in Connection, for this hop only */
        if (name_is(nb, "expect")) {
            if (vb.len == 12 && !strncasecmp((const char *)vb.ptr, "100-continue", 12))
                expect_continue = true;
            else
                expect_other = true;
            continue;
        }
        if (!host.ptr && name_is(nb, "host")) {
            host = vb;
            if (absolute) /* RFC 9112 3.2.2: the target's authority replaces Host */
                vb = (sluice_bytes){auth, auth_len};
        }
        s->hdrs[n].name = nb;
        s->hdrs[n].value = vb;
        n++;
    }
    s->req.headers = (sluice_headers){s->hdrs, n};
    if (absolute)
        host = (sluice_bytes){auth, auth_len};
    stream_route(s, host.ptr, host.len);

    bool chunked = p->flags & F_CHUNKED;
    bool has_cl = p->flags & F_CONTENT_LENGTH;
    if (has_cl && !chunked) {
        s->has_length = true;
        s->content_length = p->content_length;
    }
    bool has_body = chunked || (has_cl && p->content_length > 0);
    if (!has_body)
        s->body_mode = SLUICE_BODY_NONE;
    else if ((expect_continue && s->req.version == 11) ||
             (s->has_length && s->content_length > s->body_limit))
        s->body_mode = SLUICE_BODY_ON_CREDIT;
    else
        s->body_mode = SLUICE_BODY_FOLLOWS;
    s->expect_continue = expect_continue && s->req.version == 11;
    if (s->body_mode == SLUICE_BODY_NONE)
        s->req_complete = true; /* message_complete follows at once */
    c->keepalive = llhttp_should_keep_alive(p) && !gw->stopping &&
                   (cfg->max_requests_per_conn == 0 || c->requests < cfg->max_requests_per_conn);
    if (chunked && s->req.version == 10)
        c->keepalive = false; /* RFC 9112 6.1: faulty framing for 1.0; serve, then close */
    if (expect_other) {
        exchange_fail(c, 417, 0);
        return;
    }
    int rc = stream_submit(s);
    if (rc == 1)
        set_timer(c, T_QUEUE);
    else if (rc == -EBUSY)
        exchange_fail(c, 503, 0);
    else if (rc == -EMSGSIZE)
        exchange_fail(c, 431, 0);
    else if (rc < 0)
        exchange_fail(c, 502, 0);
}

static void parse_error(conn *c, llhttp_errno_t err)
{
    int status = c->error_status ? c->error_status : 400;
    if (c->cur) {
        uint32_t reason = status == 413 ? SLUICE_CANCEL_BODY_TOO_LARGE : SLUICE_CANCEL_BAD_BODY;
        c->keepalive = false;
        exchange_fail(c, status, reason);
    } else {
        slog(c->gw->log, LOG_DEBUG, "%s: bad request (%s: %s) -> %d", c->remote, llhttp_errno_name(err),
             llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "", status);
        log_refused(c, status, write_error(c, status, true));
    }
    c->closing = true;
    c->istart = c->iend; /* nothing after a bad request is read as a request */
    set_timer(c, T_NONE);
    gw_defer_flush(c->gw, &c->flush);
}

/* The whole request was read: trailers, END, maybe the exchange is done. */
static void request_complete(conn *c)
{
    stream *s = c->cur;
    uint8_t *hb = c->head.data;
    uint32_t n = 0;
    for (uint32_t i = c->n_req_headers; i < c->nh; i++)
        if (c->hoffs[i].name_len == 0) { /* would not even encode: a bad request */
            c->keepalive = false;
            exchange_fail(c, 400, SLUICE_CANCEL_BAD_BODY);
            return;
        }
    for (uint32_t i = c->n_req_headers; i < c->nh && n < MAX_TRAILERS; i++) {
        hoff *h = &c->hoffs[i];
        uint8_t *name = hb + h->name_off;
        for (uint32_t k = 0; k < h->name_len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] += 32;
        sluice_bytes nb = {name, h->name_len};
        if (hop_by_hop(nb) || name_is(nb, "content-length"))
            continue;
        s->hdrs[c->n_req_headers + n].name = nb;
        s->hdrs[c->n_req_headers + n].value = (sluice_bytes){hb + h->val_off, h->val_len};
        n++;
    }
    c->n_trailers = n;
    s->req_complete = true;
    forward_pending(c);
    exchange_maybe_finish(c);
}

static void remember_tail(conn *c, const char *base, size_t used)
{
    if (!used)
        return;
    size_t t = used < sizeof c->prev_tail ? used : sizeof c->prev_tail;
    memcpy(c->prev_tail, base + used - t, t);
    c->prev_tail_len = t;
}

/* A chunk-size line is checked and consumed here; llhttp only gets the
 * size as "HEX\r\n" (it cannot parse every valid extension). Returns true
 * when the line was complete and parsing can go on. */
static bool feed_chunk_line(conn *c, const uint8_t *base, size_t avail)
{
    bool done;
    int status = 0;
    size_t n = chunk_scan_run(&c->cscan, base, avail, &done, &status);
    if (status) {
        c->error_status = status;
        parse_error(c, HPE_INVALID_CHUNK_SIZE);
        return false;
    }
    c->istart += n;
    if (!done)
        return false;
    c->chunk_line = false;
    /* A chunk that cannot fit under the body limit is refused now, not
     * after the client has sent up to the limit (or waited for credit). */
    stream *s = c->cur;
    if (s && c->cscan.size > s->body_limit - (s->body_received < s->body_limit ? s->body_received : s->body_limit)) {
        c->error_status = 413;
        parse_error(c, HPE_USER);
        return false;
    }
    char line[24];
    int len = snprintf(line, sizeof line, "%" PRIx64 "\r\n", c->cscan.size);
    c->pause = P_NONE;
    c->feed_base = line;
    llhttp_errno_t err = llhttp_execute(&c->parser, line, (size_t)len);
    remember_tail(c, line, (size_t)len);
    if (err != HPE_OK) {
        parse_error(c, err);
        return false;
    }
    if (c->cscan.size == 0)
        head_scan_start(&c->hscan, false); /* the trailer section follows */
    return true;
}

/* Feed the parser as far as the current exchange allows. */
static void conn_parse(conn *c)
{
    if (c->parsing) {
        c->reparse = true;
        return;
    }
    c->parsing = true;
    bool starved = false; /* stopped for want of client bytes */
    do {
        c->reparse = false;
        starved = false;
        while (!c->closing && !c->closed) {
            stream *s = c->cur;
            size_t avail = c->iend - c->istart;
            size_t feed = avail;
            if (s) {
                if (s->req_complete)
                    break; /* pipelined requests wait for this response */
                if (s->body_mode == SLUICE_BODY_ON_CREDIT && !s->credit_seen)
                    break;
                if (c->pending_len)
                    forward_pending(c);
                if (c->pending_len)
                    break;
                uint32_t win = s->link ? stream_send_window(s) : 0;
                if (!s->link && s->end_sent)
                    win = UINT32_MAX - SLACK; /* worker done: drain the body at will */
                size_t lim = (size_t)win + SLACK;
                if (feed > lim)
                    feed = lim;
            } else if (c->out.len + (c->writing ? c->wbuf.len : 0) > PIPELINE_OUT_MAX) {
                /* the client is not reading its responses: the next
                 * pipelined request waits until they drain (resume_pipeline);
                 * the wait is ours, not a slow head, so no header timer */
                c->held = true;
                if (c->timer_kind == T_HEADER)
                    set_timer(c, T_NONE);
                break;
            }
            if (avail == 0) {
                starved = true;
                break;
            }
            const uint8_t *ubase = c->ibase + c->istart;
            if (c->chunk_line) {
                if (!feed_chunk_line(c, ubase, avail)) {
                    starved = c->chunk_line;
                    break;
                }
                continue;
            }
            /* Strict checks run ahead of llhttp: it is fed only up to a
             * violation, so nothing after one reaches a worker. */
            int scan_status = 0;
            if (head_scan_active(&c->hscan)) {
                head_scan tmp = c->hscan;
                size_t ok = head_scan_run(&tmp, ubase, feed, &scan_status);
                if (scan_status)
                    feed = ok;
            }
            const char *base = (const char *)ubase;
            llhttp_errno_t err = HPE_OK;
            size_t used = 0;
            if (feed) {
                c->pause = P_NONE;
                c->feed_base = base;
                err = llhttp_execute(&c->parser, base, feed);
                used = feed;
                if (err != HPE_OK)
                    used = (size_t)(llhttp_get_error_pos(&c->parser) - base);
            }
            if (head_scan_active(&c->hscan)) {
                int ignored = 0;
                head_scan_run(&c->hscan, ubase, used, &ignored);
            }
            c->istart += used;
            remember_tail(c, base, used);
            if (err == HPE_PAUSED) {
                llhttp_resume(&c->parser);
                if (c->pause == P_MESSAGE) {
                    head_scan_start(&c->hscan, true); /* the next request */
                    if (c->cur)
                        request_complete(c);
                }
                continue;
            }
            if (err == HPE_PAUSED_UPGRADE) { /* Upgrade is not supported: plain request */
                llhttp_resume_after_upgrade(&c->parser);
                if (c->cur)
                    request_complete(c);
                continue;
            }
            /* the pre-scan found the method bytes to be a token: a method
             * llhttp does not know (or an RTSP one, refused at the version
             * with only this reason to tell), not a malformed one */
            const char *why = llhttp_get_error_reason(&c->parser);
            if ((err == HPE_INVALID_METHOD ||
                 (err == HPE_INVALID_CONSTANT && why && !strcmp(why, "Invalid method for HTTP/x.x request"))) &&
                !scan_status && !c->error_status)
                c->error_status = 501;
            if (err != HPE_OK) {
                parse_error(c, err);
                break;
            }
            if (scan_status) {
                c->error_status = scan_status;
                parse_error(c, HPE_USER);
                break;
            }
        }
    } while (c->reparse && !c->closed);
    c->parsing = false;
    if (!c->closed) {
        update_body_timer(c, starved);
        update_reading(c);
    }
}

/* ---- input ------------------------------------------------------------ */

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    if (c->own_in) {
        if (c->istart > 0 && c->iend == IN_SIZE) {
            memmove(c->own_in, c->own_in + c->istart, c->iend - c->istart);
            c->iend -= c->istart;
            c->istart = 0;
        }
        buf->base = (char *)c->own_in + c->iend;
        buf->len = IN_SIZE - c->iend;
    } else {
        buf->base = (char *)c->gw->shared_in;
        buf->len = c->gw->shared_in_size;
    }
}

/* Keep unparsed bytes across reads in the connection's own buffer. */
static void keep_leftover(conn *c)
{
    size_t left = c->iend - c->istart;
    if (c->own_in) {
        if (left == 0) {
            free(c->own_in);
            c->own_in = NULL;
            c->ibase = NULL;
            c->istart = c->iend = 0;
        }
        return;
    }
    if (left == 0) {
        c->ibase = NULL;
        c->istart = c->iend = 0;
        return;
    }
    c->own_in = malloc(IN_SIZE);
    if (!c->own_in) {
        conn_close(c);
        return;
    }
    memcpy(c->own_in, c->ibase + c->istart, left);
    c->ibase = c->own_in;
    c->istart = 0;
    c->iend = left;
}

static void update_reading(conn *c)
{
    bool want = !c->closing && !c->closed && !c->eof &&
                !(c->own_in && c->iend - c->istart >= IN_SIZE);
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = h->data;
    if (nread == 0 || c->closed)
        return;
    if (nread < 0) {
        c->eof = true;
        if (c->cur && !c->cur->resp_done) {
            /* the client went away (or half-closed) mid-exchange */
            exchange_fail(c, 0, SLUICE_CANCEL_CLIENT_CLOSED);
            return;
        }
        c->closing = true;
        gw_defer_flush(c->gw, &c->flush);
        update_reading(c);
        return;
    }
    if (c->body_timer_on) { /* progress: conn_parse re-arms it if still waiting */
        uv_timer_stop(&c->body_timer);
        c->body_timer_on = false;
    }
    if (buf->base == (char *)c->gw->shared_in) {
        c->ibase = (const uint8_t *)buf->base;
        c->istart = 0;
        c->iend = (size_t)nread;
    } else {
        c->iend += (size_t)nread;
    }
    conn_parse(c);
    if (!c->closed)
        keep_leftover(c);
    if (!c->closed)
        update_reading(c);
}

/* ---- connection lifecycle ---------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles > 0)
        return;
    gateway *gw = c->gw;
    if (c->prev)
        c->prev->next = c->next;
    else
        gw->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gw->n_conns--;
    sluice_buf_close(&c->head);
    sluice_buf_close(&c->out);
    sluice_buf_close(&c->wbuf);
    free(c->hoffs);
    free(c->own_in);
    free(c);
    gw_notify_finished(gw);
}

static void conn_close(conn *c)
{
    if (c->closed)
        return;
    if (c->cur) {
        stream *s = c->cur;
        stream_cancel(s, SLUICE_CANCEL_CLIENT_CLOSED);
        stream_withdraw(s);
        c->cur = NULL;
        stream_put(c->gw, s);
    }
    c->closed = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->body_timer, on_conn_closed);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t cap, uint16_t *port)
{
    out[0] = 0;
    *port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, out, cap);
        *port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, out, cap);
        *port = ntohs(a->sin6_port);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    gateway *gw = server->data;
    if (status < 0) {
        slog(gw->log, LOG_ERROR, "accept: %s", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->gw = gw;
    uv_tcp_init(gw->loop, &c->tcp);
    c->tcp.data = c;
    c->handles = 3;
    uv_timer_init(gw->loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(gw->loop, &c->body_timer);
    c->body_timer.data = c;
    c->flush.fn = conn_flush;
    sluice_buf_init(&c->head, gw->cfg->max_header_bytes + TRAILER_BYTES);
    sluice_buf_init(&c->out, OUT_MAX);
    sluice_buf_init(&c->wbuf, OUT_MAX);
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    gw->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    if (gw->n_conns > gw->cfg->max_connections || gw->stopping) {
        if (!gw->accept_paused)
            slog(gw->log, LOG_WARN, "connection limit (%u) reached; refusing connections",
                 gw->cfg->max_connections);
        gw->accept_paused = true;
        conn_close(c);
        return;
    }
    gw->accept_paused = false;
    /* sized once: a reload that changes max_headers applies to new connections */
    c->max_headers = gw->cfg->max_headers;
    c->hoffs = malloc((c->max_headers + MAX_TRAILERS + 1) * sizeof *c->hoffs);
    if (!c->hoffs) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_text(&ss, c->remote, sizeof c->remote, &c->remote_port);
    len = sizeof ss;
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_text(&ss, c->local, sizeof c->local, &c->local_port);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    /* llhttp 8.1 refuses HTTP/1.2 (to be served as 1.1, RFC 9110 6.2) and
     * has no setter for this flag; head_scan checks the version instead */
    c->parser.lenient_flags |= LENIENT_VERSION;
    head_scan_start(&c->hscan, true);
    set_timer(c, T_HEADER);
    update_reading(c);
}

int http_listen(gateway *gw)
{
    init_settings();
    const sluice_config *cfg = gw->cfg;
    struct sockaddr_storage ss;
    int rc = sluice_sockaddr(cfg->listen_host, cfg->listen_port, &ss);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "bad listen address %s: %s", cfg->listen_host, uv_strerror(rc));
        return rc;
    }
    uv_tcp_init(gw->loop, &gw->listener);
    gw->listener.data = gw;
    rc = uv_tcp_bind(&gw->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&gw->listener, LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "listen on %s:%d: %s", cfg->listen_host, cfg->listen_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&gw->listener, NULL);
        return rc;
    }
    gw->listening = true;
    slog(gw->log, LOG_INFO, "listening on http://%s:%d", cfg->listen_host, cfg->listen_port);
    return 0;
}

void http_stop_accepting(gateway *gw)
{
    if (gw->listening) {
        uv_close((uv_handle_t *)&gw->listener, NULL);
        gw->listening = false;
    }
}

void http_close_idle(gateway *gw)
{
    for (conn *c = gw->conns, *next; c; c = next) {
        next = c->next;
        if (!c->cur && !c->closed) {
            c->closing = true;
            gw_defer_flush(gw, &c->flush);
        } else if (c->cur) {
            c->keepalive = false;
        }
    }
}

uint32_t http_active_requests(gateway *gw)
{
    uint32_t n = 0;
    for (conn *c = gw->conns; c; c = c->next)
        if (c->cur && !c->closed)
            n++;
    return n;
}

void http_close_all(gateway *gw)
{
    for (conn *c = gw->conns, *next; c; c = next) {
        next = c->next;
        /* the worker learns why its stream ends: the gateway is leaving */
        if (c->cur)
            stream_cancel(c->cur, SLUICE_CANCEL_SHUTDOWN);
        conn_close(c);
    }
}
