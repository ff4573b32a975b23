/* sluice: the gateway binary. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "pool.h"

void gw_flush_all(gateway *gw);

static void on_check(uv_check_t *h) { gw_flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { gw_flush_all(h->data); }

static void on_signal(uv_signal_t *h, int signum)
{
    gateway *gw = h->data;
    slog(gw->log, LOG_INFO, "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    gw_shutdown(gw);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    sluice_config cfg;
    sluice_config_defaults(&cfg);
    int rc = sluice_config_parse(&cfg, argc, argv, stdout, stderr);
    if (rc != 0)
        return rc > 0 ? 0 : 2;

    signal(SIGPIPE, SIG_IGN);
    gateway gw;
    memset(&gw, 0, sizeof gw);
    gw.cfg = &cfg;
    gw.loop = uv_default_loop();
    rc = sluice_log_new(&gw.log, cfg.error_log, cfg.access_log, cfg.log_level);
    if (rc < 0) {
        fprintf(stderr, "sluice: opening logs: %s\n", strerror(-rc));
        return 1;
    }
    gw.shared_in_size = 64 * 1024;
    gw.shared_in = malloc(gw.shared_in_size);
    if (!gw.shared_in)
        return 1;

    uv_check_init(gw.loop, &gw.flush_check);
    gw.flush_check.data = &gw;
    uv_check_start(&gw.flush_check, on_check);
    /* Timers run before the poll and check after it: flush in prepare too,
     * so output queued by a timer (a 504, a CANCEL) leaves before the loop
     * blocks. */
    uv_prepare_init(gw.loop, &gw.flush_prepare);
    gw.flush_prepare.data = &gw;
    uv_prepare_start(&gw.flush_prepare, on_prepare);
    uv_timer_init(gw.loop, &gw.shutdown_timer);
    gw.shutdown_timer.data = &gw;
    uv_signal_init(gw.loop, &gw.sig_term);
    uv_signal_init(gw.loop, &gw.sig_int);
    gw.sig_term.data = gw.sig_int.data = &gw;
    uv_signal_start(&gw.sig_term, on_signal, SIGTERM);
    uv_signal_start(&gw.sig_int, on_signal, SIGINT);

    int exit_code = 0;
    rc = pool_new(&gw.pool, &gw);
    if (rc == 0)
        rc = pool_start(gw.pool);
    if (rc == 0)
        rc = http_listen(&gw);
    if (rc < 0) {
        exit_code = 1;
        if (gw.pool)
            pool_shutdown(gw.pool);
        /* let spawned workers be reaped before exiting */
        uv_timer_start(&gw.shutdown_timer, (uv_timer_cb)uv_stop, 3000, 0);
        gw.shutdown_timer.data = gw.loop;
        gw.stopping = true;
    }
    uv_run(gw.loop, UV_RUN_DEFAULT);

    /* clean shutdown: close every remaining handle, free everything */
    if (gw.pool)
        pool_free(gw.pool);
    uv_walk(gw.loop, close_walk, NULL);
    uv_run(gw.loop, UV_RUN_DEFAULT);
    if (gw.pool)
        pool_release(gw.pool);
    stream_free_all(&gw);
    free(gw.shared_in);
    slog(gw.log, LOG_INFO, "stopped after %llu requests", (unsigned long long)gw.requests_total);
    sluice_log_free(gw.log);
    uv_loop_close(gw.loop);
    return exit_code;
}
