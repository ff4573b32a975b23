/* HTTP/2 front end as the listener sees it: taking a connection over (the
 * session, our SETTINGS and the bounds nghttp2 enforces for us), and the
 * connection operations of a graceful stop. */
#include "front/h2/h2.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/h2/conn.h"

static bool conn_active(const front_conn *fc)
{
    const h2conn *c = (const h2conn *)fc;
    return c->n_streams > 0 && !c->closed;
}

/* Graceful stop: GOAWAY; the streams in flight finish, then it closes. */
static void conn_close_idle(front_conn *fc) { h2_goaway((h2conn *)fc, NGHTTP2_NO_ERROR); }

/* Close now; WebSockets first get close 1001 (going away), as far as the
 * socket takes it at once. */
static void conn_close(front_conn *fc, uint32_t reason)
{
    h2conn *c = (h2conn *)fc;
    bool ws = false;
    for (h2s *x = c->streams; x; x = x->next)
        if (x->ws) {
            ws_session_going_away(x->ws);
            ws = true;
        }
    if (ws)
        h2_flush(&c->flush);
    h2_close(c, reason);
}

static const front_conn_ops h2_conn_ops = {
    .active = conn_active,
    .close_idle = conn_close_idle,
    .close = conn_close,
    .reloaded = conn_close_idle,
};

static int new_session(h2conn *c)
{
    const sluice_config *cfg = c->gw->cfg;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -ENOMEM;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return -ENOMEM;
    }
    h2_set_recv_callbacks(cb);
    h2_set_send_callbacks(cb);
    /* request-body windows open as the worker takes the bytes */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* SETTINGS and PING floods: more than 1000 ACKs queued (a client
     * that does not read, or one read full of them) end the connection */
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
#ifdef SLUICE_NGHTTP2_RESET_RATE
    /* rapid reset (CVE-2023-44487): a token bucket of streams the client
     * may reset, refilled 33 per second; a backstop: request.c keeps the
     * same bucket and stops the connection at once */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
#endif
#ifdef SLUICE_NGHTTP2_MAX_CONTINUATIONS
    /* CONTINUATION floods (CVE-2024-28182) */
    nghttp2_option_set_max_continuations(opt, 8);
#endif
    int rv = nghttp2_session_server_new2(&c->ng, cb, c, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0)
        return -ENOMEM;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->max_header_bytes},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* WebSockets (RFC 8441) */
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        nghttp2_session_del(c->ng);
        c->ng = NULL;
        return -ENOMEM;
    }
    return 0;
}

int h2_adopt(gateway *gw, transport *t, const char *scheme, const uint8_t *data, size_t len)
{
    h2conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->gw = gw;
    c->tr = t;
    c->scheme = scheme;
    if (new_session(c) < 0) {
        free(c);
        return -ENOMEM;
    }
    c->base.ops = &h2_conn_ops;
    c->base.tcp = &t->tcp;
    memcpy(c->remote, t->remote, sizeof c->remote);
    memcpy(c->local, t->local, sizeof c->local);
    c->remote_port = t->remote_port;
    c->local_port = t->local_port;
    c->flush.fn = h2_flush;
    sluice_buf_init(&c->out, H2_OUT_MAX);
    sluice_buf_init(&c->wbuf, H2_OUT_MAX);
    c->handles = 2; /* the timer, the transport */
    uv_timer_init(gw->loop, &c->timer);
    c->timer.data = c;
    c->reading = true; /* the previous owner was reading */
    c->idle_since = uv_now(gw->loop);
    c->reset_credit = H2_RESET_BURST * 1000ull;
    c->reset_mark = c->idle_since;
    listener_add(gw, &c->base);
    transport_adopt(t, &h2_transport_cb, c);
    h2_arm(c, gw->cfg->header_timeout_ms);
    if (gw->stopping)
        h2_goaway(c, NGHTTP2_NO_ERROR);
    h2_input(c, data, len);
    h2_want_flush(c);
    return 0;
}
