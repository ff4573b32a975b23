/* The loop owner's orchestration: graceful stop and reload. It calls the
 * pools, the router and the client listener; nothing below calls it (the
 * modules report through gw_notify_finished, core/loop.h). */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include "core/gateway.h"

/* Set up the stop timer and the "something finished" hook. */
void gw_control_init(gateway *gw);

/* Re-read the config file (if any) and replace every worker, each new one
 * ready before its predecessor drains (SIGHUP, POST /reload). */
int gw_reload(gateway *gw);

/* Graceful stop (SIGTERM): readiness fails at once; after shutdown_delay
 * (if any) stop accepting and finish in-flight requests. Called again: skip
 * the rest of the delay; during the graceful stop, exit at once. */
void gw_shutdown(gateway *gw);

#endif
