/* The client listeners and the loop's connection list (listener.h). */
#include "front/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice_proto.h"
#include "tls/tls.h"

/* The kernel caps it at net.core.somaxconn; bursts of thousands of
 * connects should wait in it, not be dropped and retried a second later. */
#define LISTEN_BACKLOG 4096

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    gateway *gw = l->gw;
    if (status < 0) {
        slog(gw->log, LOG_ERROR, "accept: %s", uv_strerror(status));
        return;
    }
    front_conn *c = l->fe->open(gw, l);
    if (!c)
        return;
    listener_add(gw, c);
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
    l->fe->start(c);
}

static int tls_config(const sluice_config *cfg, const sluice_listen_config *lc, tls_server_config *tc,
                      tls_cert_files *files)
{
    for (uint32_t i = 0; i < lc->n_certs; i++) {
        files[i].cert_file = lc->certs[i].cert;
        files[i].key_file = lc->certs[i].key;
    }
    *tc = (tls_server_config){.certs = files, .n_certs = lc->n_certs,
                              .alpn = cfg->http2 == SLUICE_HTTP2_ONLY ? "h2"
                                     : cfg->http2 ? "h2,http/1.1" : "http/1.1"};
    return 0;
}

static int listen_one(gateway *gw, listener *l, const sluice_listen_config *lc, const front_end *fe)
{
    l->gw = gw;
    l->fe = fe;
    snprintf(l->addr, sizeof l->addr, "%s:%d", lc->host, lc->port);
    if (lc->n_certs) {
        tls_cert_files files[SLUICE_MAX_LISTEN_CERTS];
        tls_server_config tc;
        tls_config(gw->cfg, lc, &tc, files);
        char err[TLS_ERR_LEN];
        int rc = tls_ctx_new_server(&l->tls, &tc, err, sizeof err);
        if (rc < 0) {
            slog(gw->log, LOG_ERROR, "listener %s: %s", l->addr, err);
            return rc;
        }
    }
    l->scheme = l->tls ? "https" : "http";
    struct sockaddr_storage ss;
    int rc = sluice_sockaddr(lc->host, lc->port, &ss);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "bad listen address %s: %s", lc->host, uv_strerror(rc));
        return rc;
    }
    uv_tcp_init(gw->loop, &l->tcp);
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "listen on %s:%d: %s", lc->host, lc->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, NULL);
        return rc;
    }
    l->listening = true;
    slog(gw->log, LOG_INFO, "listening on %s://%s:%d", l->scheme, lc->host, lc->port);
    return 0;
}

int listener_start(gateway *gw, const front_end *fe)
{
    const sluice_config *cfg = gw->cfg;
    gw->listeners = calloc(cfg->n_listens, sizeof *gw->listeners);
    if (!gw->listeners)
        return -ENOMEM;
    for (uint32_t i = 0; i < cfg->n_listens; i++) {
        gw->n_listeners++;
        int rc = listen_one(gw, &gw->listeners[i], &cfg->listens[i], fe);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void listener_stop_accepting(gateway *gw)
{
    for (uint32_t i = 0; i < gw->n_listeners; i++) {
        listener *l = &gw->listeners[i];
        if (l->listening) {
            uv_close((uv_handle_t *)&l->tcp, NULL);
            l->listening = false;
        }
    }
}

int listener_check_tls(const sluice_config *cfg, FILE *err)
{
    int rc = 0;
    for (uint32_t i = 0; i < cfg->n_listens; i++) {
        const sluice_listen_config *lc = &cfg->listens[i];
        if (!lc->n_certs)
            continue;
        tls_cert_files files[SLUICE_MAX_LISTEN_CERTS];
        tls_server_config tc;
        tls_config(cfg, lc, &tc, files);
        char msg[TLS_ERR_LEN];
        tls_ctx *ctx = NULL;
        if (tls_ctx_new_server(&ctx, &tc, msg, sizeof msg) < 0) {
            fprintf(err, "%s: listener %s%s%s:%d: %s\n", cfg->config_path[0] ? cfg->config_path : "sluice",
                    lc->name[0] ? lc->name : "", lc->name[0] ? " " : "", lc->host, lc->port, msg);
            rc = -EINVAL;
        }
        tls_ctx_free(ctx);
    }
    return rc;
}

uint32_t listener_reload_tls(gateway *gw)
{
    uint32_t failed = 0;
    for (uint32_t i = 0; i < gw->n_listeners && i < gw->cfg->n_listens; i++) {
        listener *l = &gw->listeners[i];
        if (!l->tls)
            continue;
        tls_cert_files files[SLUICE_MAX_LISTEN_CERTS];
        tls_server_config tc;
        tls_config(gw->cfg, &gw->cfg->listens[i], &tc, files);
        char err[TLS_ERR_LEN];
        if (tls_ctx_reload(&l->tls, &tc, err, sizeof err) < 0) {
            slog(gw->log, LOG_ERROR, "listener %s: certificate reload failed, keeping the old ones: %s",
                 l->addr, err);
            failed++;
        } else {
            slog(gw->log, LOG_INFO, "listener %s: certificates reloaded", l->addr);
        }
    }
    return failed;
}

void listener_free(gateway *gw)
{
    for (uint32_t i = 0; i < gw->n_listeners; i++)
        tls_ctx_free(gw->listeners[i].tls);
    free(gw->listeners);
    gw->listeners = NULL;
    gw->n_listeners = 0;
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

void listener_reloaded(gateway *gw)
{
    front_conn *c = gw->conns;
    while (c) {
        front_conn *next = c->next;
        if (c->ops->reloaded)
            c->ops->reloaded(c);
        c = next;
    }
}

void listener_add(gateway *gw, front_conn *c)
{
    c->prev = NULL;
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    gw->n_conns++;
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
