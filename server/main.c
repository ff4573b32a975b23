/* sluice: the gateway binary. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/config.h"
#include "core/gateway.h"
#include "core/log.h"
#include "core/loop.h"
#include "admin/admin.h"
#include "control.h"
#include "front/http1/http1.h"
#include "front/listener.h"
#include "worker/pool.h"
#include "worker/router.h"
#include "exchange/stream.h"

static void on_signal(uv_signal_t *h, int signum)
{
    gateway *gw = h->data;
    switch (signum) {
    case SIGHUP:
        slog(gw->log, LOG_INFO, "received SIGHUP: reloading");
        gw_reload(gw);
        break;
    case SIGUSR1:
        if (sluice_log_reopen(gw->log) < 0)
            slog(gw->log, LOG_ERROR, "SIGUSR1: cannot reopen the log files");
        else
            slog(gw->log, LOG_INFO, "received SIGUSR1: log files reopened");
        break;
    case SIGTTIN:
    case SIGTTOU:
        if (gw->n_pools && !gw->stopping && !gw->stop_delayed) {
            uint32_t n = pool_target(gw->pools[0]);
            n = signum == SIGTTIN ? n + 1 : (n > 0 ? n - 1 : 0);
            slog(gw->log, LOG_INFO, "received %s: pool %s to %u workers", signum == SIGTTIN ? "SIGTTIN" : "SIGTTOU",
                 pool_name(gw->pools[0]), n);
            pool_scale(gw->pools[0], n);
        }
        break;
    default:
        slog(gw->log, LOG_INFO, "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        gw_shutdown(gw);
    }
}

static void on_startup_failed(uv_timer_t *t)
{
    gateway *gw = t->data;
    uv_stop(gw->loop);
}

/* --max-connections needs as many descriptors (plus worker links, logs,
 * listeners): raise the soft open-file limit toward it, within the hard
 * limit, as servers do (a 1024 soft default would refuse connections long
 * before the configured bound). */
static void raise_fd_limit(gateway *gw)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = (rlim_t)gw->cfg->max_connections + 1024;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        slog(gw->log, LOG_INFO, "open-file limit %llu (hard limit) holds fewer than --max-connections %u "
             "client connections; raise it with ulimit -n", (unsigned long long)rl.rlim_cur, gw->cfg->max_connections);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    /* heap-allocated: a reload replaces it */
    sluice_config *cfgp = malloc(sizeof *cfgp);
    if (!cfgp)
        return 1;
    int rc = sluice_config_parse(cfgp, argc, argv, stdout, stderr);
    if (rc == 2) { /* --check-config: the certificates must load too */
        rc = (listener_check_tls(cfgp, stderr) | pool_check_tls(cfgp, stderr)) == 0 ? 1 : -EINVAL;
        if (rc == 1)
            sluice_config_print_ok(cfgp, stdout);
    }
    if (rc != 0) {
        sluice_config_free(cfgp);
        free(cfgp);
        return rc > 0 ? 0 : 2;
    }
    const sluice_config *cfg_now = cfgp;

    signal(SIGPIPE, SIG_IGN);
    gateway gw;
    memset(&gw, 0, sizeof gw);
    gw.cfg = cfg_now;
    gw.argc = argc;
    gw.argv = argv;
    gw.loop = uv_default_loop();
    gw.started_ms = uv_now(gw.loop);
    rc = sluice_log_new(&gw.log, cfg_now->error_log, cfg_now->access_log, cfg_now->log_level);
    if (rc < 0) {
        fprintf(stderr, "sluice: opening logs: %s\n", strerror(-rc));
        return 1;
    }
    raise_fd_limit(&gw);
    gw.shared_in_size = 64 * 1024;
    gw.shared_in = malloc(gw.shared_in_size);
    if (!gw.shared_in)
        return 1;

    gw_loop_init(&gw);
    gw_control_init(&gw);
    struct {
        uv_signal_t *h;
        int sig;
    } sigs[] = {{&gw.sig_term, SIGTERM}, {&gw.sig_int, SIGINT},   {&gw.sig_hup, SIGHUP},
                {&gw.sig_usr1, SIGUSR1}, {&gw.sig_ttin, SIGTTIN}, {&gw.sig_ttou, SIGTTOU}};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        uv_signal_init(gw.loop, sigs[i].h);
        sigs[i].h->data = &gw;
        uv_signal_start(sigs[i].h, on_signal, sigs[i].sig);
    }

    int exit_code = 0;
    gw.pools = calloc(cfg_now->n_pools, sizeof *gw.pools);
    rc = gw.pools ? 0 : -ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < cfg_now->n_pools; i++) {
        rc = pool_new(&gw.pools[i], &gw, &cfg_now->pools[i]);
        if (rc == 0)
            gw.n_pools++;
    }
    if (rc == 0)
        rc = router_new(&gw.router, &gw);
    for (uint32_t i = 0; rc == 0 && i < gw.n_pools; i++)
        rc = pool_start(gw.pools[i]);
    if (rc == 0)
        rc = listener_start(&gw, &http1_front_end);
    if (rc == 0 && cfg_now->admin[0])
        rc = admin_listen(&gw);
    if (rc < 0) {
        exit_code = 1;
        for (uint32_t i = 0; i < gw.n_pools; i++)
            pool_shutdown(gw.pools[i]);
        /* let spawned workers be reaped before exiting */
        uv_timer_start(&gw.shutdown_timer, on_startup_failed, 3000, 0);
        gw.stopping = true;
    }
    uv_run(gw.loop, UV_RUN_DEFAULT);

    /* We are leaving: a late stop signal must not kill the cleanup. Closing
     * the signal handles below makes libuv restore the default (fatal)
     * disposition, overriding any SIG_IGN set here, so block the signals
     * instead: one arriving now stays pending until we have exited. */
    sigset_t late;
    sigemptyset(&late);
    sigaddset(&late, SIGTERM);
    sigaddset(&late, SIGINT);
    sigaddset(&late, SIGHUP);
    sigprocmask(SIG_BLOCK, &late, NULL);
    /* clean shutdown: close every remaining handle, free everything */
    for (uint32_t i = 0; i < gw.n_pools; i++)
        pool_free(gw.pools[i]);
    admin_close(&gw);
    uv_walk(gw.loop, close_walk, NULL);
    uv_run(gw.loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < gw.n_pools; i++)
        pool_release(gw.pools[i]);
    free(gw.pools);
    router_free(gw.router);
    stream_free_all(&gw);
    free(gw.shared_in);
    free(gw.tls_in);
    listener_free(&gw);
    slog(gw.log, LOG_INFO, "stopped after %llu requests", (unsigned long long)gw.requests_total);
    sluice_log_free(gw.log);
    uv_loop_close(gw.loop);
    sluice_config_free((sluice_config *)gw.cfg);
    free((sluice_config *)gw.cfg);
    return exit_code;
}
