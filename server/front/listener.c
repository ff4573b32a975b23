/* The client listener and the loop's connection list (listener.h). */
#include "front/listener.h"

#include "sluice_proto.h"

/* The kernel caps it at net.core.somaxconn; bursts of thousands of
 * connects should wait in it, not be dropped and retried a second later. */
#define LISTEN_BACKLOG 4096

static void on_connection(uv_stream_t *server, int status)
{
    gateway *gw = server->data;
    if (status < 0) {
        slog(gw->log, LOG_ERROR, "accept: %s", uv_strerror(status));
        return;
    }
    front_conn *c = gw->front->open(gw);
    if (!c)
        return;
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    gw->n_conns++;
    if (uv_accept(server, (uv_stream_t *)c->tcp) < 0) {
        c->ops->close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    if (gw->n_conns > gw->cfg->max_connections || gw->stopping) {
        if (!gw->accept_paused)
            slog(gw->log, LOG_WARN, "connection limit (%u) reached; refusing connections",
                 gw->cfg->max_connections);
        gw->accept_paused = true;
        c->ops->close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    gw->accept_paused = false;
    gw->front->start(c);
}

int listener_start(gateway *gw, const front_end *fe)
{
    const sluice_config *cfg = gw->cfg;
    gw->front = fe;
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
    slog(gw->log, LOG_INFO, "listening on %s://%s:%d", fe->scheme, cfg->listen_host, cfg->listen_port);
    return 0;
}

void listener_stop_accepting(gateway *gw)
{
    if (gw->listening) {
        uv_close((uv_handle_t *)&gw->listener, NULL);
        gw->listening = false;
    }
}

void listener_close_idle(gateway *gw)
{
    for (front_conn *c = gw->conns, *next; c; c = next) {
        next = c->next;
        c->ops->close_idle(c);
    }
}

uint32_t listener_active(gateway *gw)
{
    uint32_t n = 0;
    for (front_conn *c = gw->conns; c; c = c->next)
        if (c->ops->active(c))
            n++;
    return n;
}

void listener_close_all(gateway *gw)
{
    for (front_conn *c = gw->conns, *next; c; c = next) {
        next = c->next;
        /* the worker learns why its stream ends: the gateway is leaving */
        c->ops->close(c, SLUICE_CANCEL_SHUTDOWN);
    }
}

void listener_remove(gateway *gw, front_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        gw->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gw->n_conns--;
}
