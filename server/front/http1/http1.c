/* HTTP/1.1 front end as the listener sees it: a new connection's setup, and
 * the connection operations of a graceful stop. */
#include "front/http1/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/http1/conn.h"

static bool conn_active(const front_conn *fc)
{
    const conn *c = (const conn *)fc;
    return c->cur && !c->closed;
}

static void conn_close_idle(front_conn *fc)
{
    conn *c = (conn *)fc;
    if (!c->cur && !c->closed) {
        c->closing = true;
        gw_defer_flush(c->gw, &c->flush);
    } else if (c->cur) {
        c->keepalive = false;
    }
}

static void conn_close(front_conn *fc, uint32_t reason)
{
    conn *c = (conn *)fc;
    if (c->cur)
        stream_cancel(c->cur, reason);
    h1_close(c);
}

static const front_conn_ops h1_conn_ops = {
    .active = conn_active,
    .close_idle = conn_close_idle,
    .close = conn_close,
};

static front_conn *conn_open(gateway *gw, const listener *l)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->tr = transport_new(gw, l->tls, &h1_transport_cb, c);
    if (!c->tr) {
        free(c);
        return NULL;
    }
    c->base.ops = &h1_conn_ops;
    c->base.tcp = &c->tr->tcp;
    c->gw = gw;
    c->scheme = l->scheme;
    c->handles = 3;
    uv_timer_init(gw->loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(gw->loop, &c->body_timer);
    c->body_timer.data = c;
    c->flush.fn = h1_flush;
    sluice_buf_init(&c->head, gw->cfg->max_header_bytes + TRAILER_BYTES);
    sluice_buf_init(&c->out, OUT_MAX);
    sluice_buf_init(&c->wbuf, OUT_MAX);
    return &c->base;
}

static void conn_start(front_conn *fc)
{
    conn *c = (conn *)fc;
    gateway *gw = c->gw;
    /* sized once: a reload that changes max_headers applies to new connections */
    c->max_headers = gw->cfg->max_headers;
    c->sniff = gw->cfg->http2;
    c->hoffs = malloc((c->max_headers + MAX_TRAILERS + 1) * sizeof *c->hoffs);
    if (!c->hoffs) {
        h1_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tr->tcp, 1);
    if (transport_start(c->tr) < 0) {
        h1_close(c);
        return;
    }
    memcpy(c->remote, c->tr->remote, sizeof c->remote);
    memcpy(c->local, c->tr->local, sizeof c->local);
    c->remote_port = c->tr->remote_port;
    c->local_port = c->tr->local_port;
    llhttp_init(&c->parser, HTTP_REQUEST, &h1_parser_settings);
    c->parser.data = c;
    /* llhttp 8.1 refuses HTTP/1.2 (to be served as 1.1, RFC 9110 6.2) and
     * has no setter for this flag; head_scan checks the version instead */
    c->parser.lenient_flags |= LENIENT_VERSION;
    head_scan_start(&c->hscan, true);
    h1_set_timer(c, T_HEADER);
    h1_update_reading(c);
}

const front_end http1_front_end = {
    .open = conn_open,
    .start = conn_start,
};
