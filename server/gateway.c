/* Loop-owner services: end-of-iteration flush, Date cache,
 * graceful shutdown. */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

void gw_defer_flush(gateway *gw, flush_node *n)
{
    if (n->queued)
        return;
    n->queued = true;
    n->next = gw->flush_head;
    gw->flush_head = n;
}

/* uv_check: runs once per loop iteration, after I/O callbacks. Flushing
 * may queue more work (a write completing synchronously lets a connection
 * parse its next pipelined request), so drain until empty. */
void gw_flush_all(gateway *gw)
{
    for (int rounds = 0; gw->flush_head && rounds < 64; rounds++) {
        flush_node *n = gw->flush_head;
        gw->flush_head = NULL;
        while (n) {
            flush_node *next = n->next;
            n->queued = false;
            n->next = NULL;
            n->fn(n);
            n = next;
        }
    }
    sluice_log_flush(gw->log);
}

const char *gw_date_line(gateway *gw, size_t *len)
{
    time_t now = time(NULL);
    if (now != gw->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        gw->date_len = strftime(gw->date_line, sizeof gw->date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        gw->date_sec = now;
    }
    *len = gw->date_len;
    return gw->date_line;
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    gateway *gw = t->data;
    slog(gw->log, LOG_WARN, "graceful timeout: closing %u connections still busy", http_active_requests(gw));
    http_close_all(gw);
    pool_shutdown(gw->pool);
    gw_check_shutdown(gw);
}

void gw_shutdown(gateway *gw)
{
    if (gw->stopping) {
        slog(gw->log, LOG_WARN, "second stop signal: exiting now");
        http_close_all(gw);
        pool_shutdown(gw->pool);
        uv_stop(gw->loop);
        return;
    }
    gw->stopping = true;
    slog(gw->log, LOG_INFO, "stopping: finishing %u in-flight requests (up to %.1fs)", http_active_requests(gw),
         gw->cfg->graceful_timeout_ms / 1000.0);
    http_stop_accepting(gw);
    http_close_idle(gw);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_timeout, gw->cfg->graceful_timeout_ms, 0);
    gw_check_shutdown(gw);
}

void gw_check_shutdown(gateway *gw)
{
    if (!gw->stopping)
        return;
    if (http_active_requests(gw) == 0)
        pool_shutdown(gw->pool); /* idempotent: drains links, stops workers */
    if (gw->n_conns == 0 && pool_stopped(gw->pool))
        uv_stop(gw->loop);
}
