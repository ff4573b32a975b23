/* The client listener and the loop's client connections, whatever their
 * protocol: accepting, --max-connections, and what a graceful stop does to
 * connections (stop accepting, close the idle ones, count the busy ones,
 * close them all).
 *
 * A front end plugs in with two tables: a front_end (how to make and start
 * a connection for an accepted socket) and, in each connection, a
 * front_conn_ops (what the listener may ask of it). The listener calls a
 * front end only through them. */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/gateway.h"

typedef struct front_conn_ops {
    /* An exchange is in flight (a graceful stop waits for it). */
    bool (*active)(const front_conn *c);
    /* Graceful stop: close the connection now if it is idle, else once its
     * exchange in flight is done (no keep-alive). */
    void (*close_idle)(front_conn *c);
    /* Close now; an exchange in flight is cancelled with `reason`
     * (SLUICE_CANCEL_*). */
    void (*close)(front_conn *c, uint32_t reason);
} front_conn_ops;

/* The head of every front end's connection object. */
struct front_conn {
    const front_conn_ops *ops;
    uv_tcp_t *tcp;              /* the client socket, in the front end's object */
    front_conn *prev, *next;    /* gw->conns */
};

struct front_end {
    const char *scheme; /* for the log line: "http" */
    /* A client is connecting: allocate a connection and init its TCP
     * handle (c->tcp) on gw->loop. NULL when out of memory. */
    front_conn *(*open)(gateway *gw);
    /* The socket was accepted and the connection admitted: serve it. */
    void (*start)(front_conn *c);
};

/* Listen on the configured address; `fe` serves the connections. */
int listener_start(gateway *gw, const front_end *fe);
void listener_stop_accepting(gateway *gw);
/* Graceful stop: close idle connections, no keep-alive for busy ones. */
void listener_close_idle(gateway *gw);
/* Connections with an exchange in flight. */
uint32_t listener_active(gateway *gw);
/* Close every connection, cancelling exchanges (SLUICE_CANCEL_SHUTDOWN). */
void listener_close_all(gateway *gw);
/* From a front end: the connection's handles are closed and it is about
 * to be freed; forget it. */
void listener_remove(gateway *gw, front_conn *c);

#endif
