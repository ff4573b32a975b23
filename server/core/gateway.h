/* The loop owner: everything the modules of the gateway share. */
#ifndef SLUICE_GATEWAY_H
#define SLUICE_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/log.h"
#include "sluice_proto.h"

typedef struct pool pool;
typedef struct front_conn front_conn;
typedef struct front_end front_end;
typedef struct listener listener;
typedef struct wlink wlink;
typedef struct stream stream;
typedef struct router router;
typedef struct admin admin;

/* A module's output waiting for the end-of-iteration flush (loop.h). */
typedef struct flush_node {
    struct flush_node *next;
    void (*fn)(struct flush_node *);
    bool queued;
} flush_node;

typedef struct gateway {
    uv_loop_t *loop;
    const sluice_config *cfg;
    int argc; /* the command line, parsed again on reload */
    char **argv;
    sluice_log *log;
    pool **pools;        /* pools[0]: the default pool */
    uint32_t n_pools;

    router *router;
    listener *listeners; /* front/listener.c: one per configured address */
    uint32_t n_listeners;
    uv_check_t flush_check;
    uv_prepare_t flush_prepare;
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1, sig_ttin, sig_ttou;
    uint64_t started_ms;
    uv_timer_t shutdown_timer;
    flush_node *flush_head;

    /* client connections, for shutdown and limits */
    front_conn *conns;
    uint32_t n_conns;
    bool accept_paused;
    bool stopping;
    bool stop_delayed; /* a stop signal came: within shutdown_delay, only /readyz fails */

    /* shared read buffer for connections without buffered input */
    uint8_t *shared_in;
    size_t shared_in_size;
    /* shared read buffer for TLS ciphertext (transport/transport.c), lazily */
    uint8_t *tls_in;

    stream *free_streams; /* recycled stream objects */
    uint32_t n_free_streams;

    /* cached "Date: ...\r\n" header line */
    char date_line[64];
    size_t date_len;
    time_t date_sec;

    uint64_t requests_total;
    admin *admin; /* admin listener, when configured */

    /* "something finished" (gw_notify_finished): set by gw_control_init */
    void (*on_finished)(struct gateway *gw);
} gateway;

#endif
