/* Per-loop services every module may call; they call nothing above them
 * (only the function pointers the loop owner set).
 *
 * - End-of-iteration flush: output produced during one loop iteration is
 *   written once, after all I/O callbacks of that iteration ran (a
 *   uv_check handle, and a uv_prepare one for output queued by timers):
 *   many frames for one worker link, or a response head and body for one
 *   client, become one write. Modules embed a flush_node and queue it when
 *   they have output.
 * - The cached Date header line.
 * - "Something finished": modules report that an exchange, a connection, a
 *   worker link or a worker process is done, which may unblock a graceful
 *   stop; the loop owner decides what to do (gw->on_finished). */
#ifndef SLUICE_LOOP_H
#define SLUICE_LOOP_H

#include <stddef.h>

#include "core/gateway.h"

/* Start the flush handles on gw->loop. */
void gw_loop_init(gateway *gw);
/* Queue n->fn to run at the end of this loop iteration (once). */
void gw_defer_flush(gateway *gw, flush_node *n);
/* Run the queued flushes, then flush the logs (the handles call this). */
void gw_flush_all(gateway *gw);
/* The Date header line ("Date: <IMF-fixdate>\r\n"), refreshed once a second. */
const char *gw_date_line(gateway *gw, size_t *len);
/* Something that may unblock a graceful stop finished: calls
 * gw->on_finished, when set. */
void gw_notify_finished(gateway *gw);

#endif
