/* The loop owner's orchestration: graceful stop and reload. */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/pool.h"
#include "worker/router.h"
#include "front/listener.h"

/* A graceful stop ends once no request is in flight, every pool has
 * stopped and every client connection is gone. */
static void check_shutdown(gateway *gw)
{
    if (!gw->stopping)
        return;
    bool stopped = true;
    for (uint32_t i = 0; i < gw->n_pools; i++) {
        if (listener_active(gw) == 0)
            pool_shutdown(gw->pools[i]); /* idempotent: drains links, stops workers */
        stopped = stopped && pool_stopped(gw->pools[i]);
    }
    if (gw->n_conns == 0 && stopped)
        uv_stop(gw->loop);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    gateway *gw = t->data;
    slog(gw->log, LOG_WARN, "graceful timeout: closing %u connections still busy", listener_active(gw));
    listener_close_all(gw);
    for (uint32_t i = 0; i < gw->n_pools; i++)
        pool_shutdown(gw->pools[i]);
    check_shutdown(gw);
}

/* The graceful stop proper: stop accepting, finish what is in flight. */
static void begin_stop(gateway *gw)
{
    gw->stopping = true;
    uint32_t active = listener_active(gw);
    slog(gw->log, LOG_INFO, "stopping: finishing %u in-flight request%s (up to %.1fs)", active,
         active == 1 ? "" : "s", gw->cfg->graceful_timeout_ms / 1000.0);
    listener_stop_accepting(gw);
    listener_close_idle(gw);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_timeout, gw->cfg->graceful_timeout_ms, 0);
    check_shutdown(gw);
}

static void on_shutdown_delay(uv_timer_t *t)
{
    gateway *gw = t->data;
    slog(gw->log, LOG_INFO, "shutdown delay over");
    begin_stop(gw);
}

void gw_shutdown(gateway *gw)
{
    if (gw->stopping) {
        slog(gw->log, LOG_WARN, "second stop signal: exiting now");
        listener_close_all(gw);
        for (uint32_t i = 0; i < gw->n_pools; i++)
            pool_shutdown(gw->pools[i]);
        uv_stop(gw->loop);
        return;
    }
    if (gw->stop_delayed) {
        uv_timer_stop(&gw->shutdown_timer);
        slog(gw->log, LOG_INFO, "second stop signal: skipping the rest of the shutdown delay");
        begin_stop(gw);
        return;
    }
    gw->stop_delayed = true; /* /readyz fails from now on */
    uint64_t delay = gw->cfg->shutdown_delay_ms;
    if (delay == 0) {
        begin_stop(gw);
        return;
    }
    /* Load balancers (a Kubernetes Service) take a while to notice the
     * failed readiness: until then requests keep coming, and are served. */
    slog(gw->log, LOG_INFO, "stopping in %.1fs (shutdown_delay): not ready any more, still serving meanwhile",
         delay / 1000.0);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_delay, delay, 0);
}

void gw_control_init(gateway *gw)
{
    uv_timer_init(gw->loop, &gw->shutdown_timer);
    gw->shutdown_timer.data = gw;
    gw->on_finished = check_shutdown;
}

int gw_reload(gateway *gw)
{
    if (gw->stopping || gw->stop_delayed)
        return -ECANCELED;
    const sluice_config *old = gw->cfg;
    /* certificates first: the listeners stay, their files are read again */
    listener_reload_tls(gw);
    if (!old->config_path[0]) {
        slog(gw->log, LOG_INFO, "reload: replacing workers");
        for (uint32_t i = 0; i < gw->n_pools; i++)
            pool_reload(gw->pools[i]);
        listener_reloaded(gw);
        return 0;
    }
    sluice_config *nc = malloc(sizeof *nc);
    if (!nc)
        return -ENOMEM;
    sluice_config_defaults(nc);
    char *msg = NULL;
    size_t msg_len = 0;
    FILE *err = open_memstream(&msg, &msg_len);
    /* the file again, then the command-line flags over it, as at startup */
    int rc = err ? sluice_config_parse(nc, gw->argc, gw->argv, err, err) : -ENOMEM;
    if (rc > 0)
        rc = -EINVAL;
    if (rc == 0 && nc->n_pools != gw->n_pools) {
        fprintf(err, "adding or removing pools needs a restart");
        rc = -EINVAL;
    }
    for (uint32_t i = 0; rc == 0 && i < gw->n_pools; i++)
        if (!sluice_config_pool(nc, pool_name(gw->pools[i]))) {
            fprintf(err, "pool '%s' is gone: adding or removing pools needs a restart", pool_name(gw->pools[i]));
            rc = -EINVAL;
        }
    if (err)
        fclose(err);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "reload of %s failed, keeping the running config: %s", old->config_path,
             msg ? msg : "");
        free(msg);
        sluice_config_free(nc);
        free(nc);
        return rc;
    }
    free(msg);
    /* the listeners stay as they are */
    memcpy(nc->listen_host, old->listen_host, sizeof nc->listen_host);
    nc->listen_port = old->listen_port;
    memcpy(nc->listens, old->listens, sizeof nc->listens);
    nc->n_listens = old->n_listens;
    nc->http2 = old->http2; /* part of the listeners (ALPN) */
    memcpy(nc->admin, old->admin, sizeof nc->admin);
    memcpy(nc->access_log, old->access_log, sizeof nc->access_log);
    memcpy(nc->error_log, old->error_log, sizeof nc->error_log);
    router *r = NULL;
    gw->cfg = nc;
    sluice_log_set_level(gw->log, nc->log_level);
    for (uint32_t i = 0; i < gw->n_pools; i++)
        pool_set_config(gw->pools[i], sluice_config_pool(nc, pool_name(gw->pools[i])));
    if (router_new(&r, gw) == 0) {
        router_free(gw->router);
        gw->router = r;
    }
    sluice_config_free((sluice_config *)old);
    free((sluice_config *)old);
    slog(gw->log, LOG_INFO, "reloaded %s: replacing workers", nc->config_path);
    for (uint32_t i = 0; i < gw->n_pools; i++)
        pool_reload(gw->pools[i]);
    listener_reloaded(gw);
    return 0;
}
