/* HTTP/1.1 front end: the client listener, accepting and setting up a
 * connection, and the connection-wide operations of a graceful stop. */
#include "front/http1/http1.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/loop.h"
#include "front/http1/conn.h"
#include "front/http1/fields.h"

/* The kernel caps it at net.core.somaxconn; bursts of thousands of
 * connects should wait in it, not be dropped and retried a second later. */
#define LISTEN_BACKLOG 4096

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
    c->flush.fn = h1_flush;
    sluice_buf_init(&c->head, gw->cfg->max_header_bytes + TRAILER_BYTES);
    sluice_buf_init(&c->out, OUT_MAX);
    sluice_buf_init(&c->wbuf, OUT_MAX);
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    gw->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        h1_close(c);
        return;
    }
    if (gw->n_conns > gw->cfg->max_connections || gw->stopping) {
        if (!gw->accept_paused)
            slog(gw->log, LOG_WARN, "connection limit (%u) reached; refusing connections",
                 gw->cfg->max_connections);
        gw->accept_paused = true;
        h1_close(c);
        return;
    }
    gw->accept_paused = false;
    /* sized once: a reload that changes max_headers applies to new connections */
    c->max_headers = gw->cfg->max_headers;
    c->hoffs = malloc((c->max_headers + MAX_TRAILERS + 1) * sizeof *c->hoffs);
    if (!c->hoffs) {
        h1_close(c);
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
    llhttp_init(&c->parser, HTTP_REQUEST, &h1_parser_settings);
    c->parser.data = c;
    /* llhttp 8.1 refuses HTTP/1.2 (to be served as 1.1, RFC 9110 6.2) and
     * has no setter for this flag; head_scan checks the version instead */
    c->parser.lenient_flags |= LENIENT_VERSION;
    head_scan_start(&c->hscan, true);
    h1_set_timer(c, T_HEADER);
    h1_update_reading(c);
}

int http_listen(gateway *gw)
{
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
        h1_close(c);
    }
}
