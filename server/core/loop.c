/* Per-loop services: end-of-iteration flush, Date cache, the "something
 * finished" notification. */
#include "core/loop.h"

#include <string.h>
#include <time.h>

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

static void on_check(uv_check_t *h) { gw_flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { gw_flush_all(h->data); }

void gw_loop_init(gateway *gw)
{
    uv_check_init(gw->loop, &gw->flush_check);
    gw->flush_check.data = gw;
    uv_check_start(&gw->flush_check, on_check);
    /* Timers run before the poll and check after it: flush in prepare too,
     * so output queued by a timer (a 504, a CANCEL) leaves before the loop
     * blocks. */
    uv_prepare_init(gw->loop, &gw->flush_prepare);
    gw->flush_prepare.data = gw;
    uv_prepare_start(&gw->flush_prepare, on_prepare);
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

void gw_notify_finished(gateway *gw)
{
    if (gw->on_finished)
        gw->on_finished(gw);
}
