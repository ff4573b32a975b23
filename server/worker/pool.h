/* A pool of worker processes: spawning and supervision, the Unix socket
 * workers connect to, load balancing and the wait queue. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdio.h>

#include "core/gateway.h"

int pool_new(pool **out, gateway *gw, const sluice_pool_config *cfg);
/* pool_free closes what the pool owns; pool_release frees it once the loop
 * has run the close callbacks. */
void pool_free(pool *p);
void pool_release(pool *p);
/* Listen on the pool's socket (and its worker_listen addresses) and spawn
 * its workers. */
int pool_start(pool *p);
/* --check-config: the pools' worker TLS files load (errors printed to err). */
int pool_check_tls(const sluice_config *c, FILE *err);
const char *pool_name(const pool *p);
const sluice_pool_config *pool_config(const pool *p);

/* Send a stream to the least-loaded worker, or queue it. Returns 0 when it
 * was dispatched, 1 when queued, -EBUSY when the queue is full. */
int pool_submit(pool *p, stream *s);
/* Take a queued stream out of the queue (client went away). */
void pool_withdraw(pool *p, stream *s);

/* Counters for the admin API. */
#define POOL_LAT_BUCKETS 14
extern const double pool_latency_bounds[POOL_LAT_BUCKETS];
typedef struct {
    uint64_t requests[6]; /* by status class: [1] 1xx .. [5] 5xx */
    uint64_t lat_buckets[POOL_LAT_BUCKETS]; /* cumulative (Prometheus "le") */
    uint64_t lat_count;
    double lat_sum;
    uint64_t bytes_in, bytes_out;
    uint64_t restarts;
    uint64_t queued_total;
    double queue_wait_sum;
    /* time to a worker: requests that waited in the queue (by
     * pool_latency_bounds, cumulative), and those dispatched at once (a
     * wait of 0, in every bucket) */
    uint64_t qwait_buckets[POOL_LAT_BUCKETS];
    uint64_t qwait_count;
    uint64_t qwait_none;
    /* WebSockets: open now, accepted in all, messages and payload bytes
     * from clients (in) and to them (out) */
    uint64_t ws_open, ws_total, ws_msgs_in, ws_msgs_out, ws_bytes_in, ws_bytes_out;
} pool_stats;

void pool_record(pool *p, int status, double seconds, uint64_t bytes_in, uint64_t bytes_out);
/* WebSocket counters: open_delta +1 when one opens, -1 when it closes. */
void pool_ws_count(pool *p, int open_delta, uint64_t msgs_in, uint64_t msgs_out, uint64_t bytes_in,
                   uint64_t bytes_out);
const pool_stats *pool_get_stats(const pool *p);

typedef struct {
    uint32_t id;
    int pid;
    const char *state;
    bool wanted;
    uint32_t active_streams;
    uint64_t requests, restarts;
    double uptime_s;
    uint64_t rss;
    const char *peer; /* attached over TCP: its address */
} pool_worker_view;
uint32_t pool_worker_count(const pool *p);
/* Workers started outside sluice (Unix socket or TCP): the i-th ready one. */
bool pool_attached_info(const pool *p, uint32_t i, pool_worker_view *v);
bool pool_worker_info(const pool *p, uint32_t i, pool_worker_view *v);
uint64_t pool_worker_rss(int pid);

/* Set the number of workers (admin API, SIGTTIN/SIGTTOU). */
int pool_scale(pool *p, uint32_t n);
uint32_t pool_target(const pool *p);
/* Current scaling bounds (an explicit scale outside them widens them). */
uint32_t pool_min_workers(const pool *p);
uint32_t pool_max_workers(const pool *p);
/* Replace every worker, one new worker ready before each old one drains. */
int pool_reload(pool *p);
/* Switch to a new config (reload); takes effect for workers started next. */
void pool_set_config(pool *p, const sluice_pool_config *cfg);

/* Graceful stop: drain links, stop respawning, terminate processes. */
void pool_shutdown(pool *p);
bool pool_stopped(const pool *p);
uint32_t pool_queue_len(const pool *p);

/* Workers taking new requests now: ready (HELLO done), neither draining
 * nor retiring. A pool with none cannot serve (readiness). */
uint32_t pool_ready_workers(const pool *p);
/* Streams open on the pool's worker links, and how many its ready workers
 * could have open at once (the sum of their max_streams). */
void pool_streams(const pool *p, uint64_t *active, uint64_t *capacity);

#endif
