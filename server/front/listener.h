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
#include <stdio.h>

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
    /* The configuration was reloaded (may be NULL). HTTP/2: GOAWAY, so
     * the client opens a new connection with the new settings and
     * certificates once its streams finish. */
    void (*reloaded)(front_conn *c);
} front_conn_ops;

/* The head of every front end's connection object. */
struct front_conn {
    const front_conn_ops *ops;
    uv_tcp_t *tcp;              /* the client socket, in the front end's object */
    front_conn *prev, *next;    /* gw->conns */
};

typedef struct tls_ctx tls_ctx;

/* One listening socket (gw->listeners). */
struct listener {
    gateway *gw;
    uv_tcp_t tcp;
    bool listening;
    const front_end *fe;
    const char *scheme;  /* "http" or "https" */
    char addr[280];      /* "HOST:PORT" as configured */
    tls_ctx *tls;        /* NULL: plain TCP */
};

struct front_end {
    /* A client is connecting to `l`: allocate a connection and init its
     * TCP handle (c->tcp) on gw->loop (TLS when l->tls). NULL when out of
     * memory. */
    front_conn *(*open)(gateway *gw, const listener *l);
    /* The socket was accepted and the connection admitted: serve it. */
    void (*start)(front_conn *c);
};

/* Listen on every configured address (TLS contexts built from the
 * certificates); `fe` serves the connections. */
int listener_start(gateway *gw, const front_end *fe);
/* Reload every TLS listener's certificates from its files: new
 * connections use them, established ones keep their context; a failure
 * keeps the old certificates and logs an error. Returns the number of
 * failures. */
uint32_t listener_reload_tls(gateway *gw);
/* Load every TLS listener's certificates of `cfg` (--check-config): 0, or
 * -EINVAL after printing "FILE: listener ...: reason" lines to err. */
int listener_check_tls(const sluice_config *cfg, FILE *err);
/* Free the listeners (after their handles closed). */
void listener_free(gateway *gw);
void listener_stop_accepting(gateway *gw);
/* After a reload: tell every connection (front_conn_ops.reloaded). */
void listener_reloaded(gateway *gw);
/* Graceful stop: close idle connections, no keep-alive for busy ones. */
void listener_close_idle(gateway *gw);
/* Connections with an exchange in flight. */
uint32_t listener_active(gateway *gw);
/* Close every connection, cancelling exchanges (SLUICE_CANCEL_SHUTDOWN). */
void listener_close_all(gateway *gw);
/* A connection joins the loop's list (the listener adds those it
 * accepts; a front end taking a connection over adds its own). */
void listener_add(gateway *gw, front_conn *c);
/* From a front end: the connection's handles are closed and it is about
 * to be freed; forget it. */
void listener_remove(gateway *gw, front_conn *c);

#endif
