/* A pool of worker processes: spawning and supervision, the Unix socket
 * workers connect to, load balancing and the wait queue. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include "gateway.h"

int pool_new(pool **out, gateway *gw);
/* pool_free closes what the pool owns; pool_release frees it once the loop
 * has run the close callbacks. */
void pool_free(pool *p);
void pool_release(pool *p);
/* Listen on the pool's socket and spawn its workers. */
int pool_start(pool *p);
const char *pool_name(const pool *p);

/* Send a stream to the least-loaded worker, or queue it. Returns 0 when it
 * was dispatched, 1 when queued, -EBUSY when the queue is full. */
int pool_submit(pool *p, stream *s);
/* Take a queued stream out of the queue (client went away). */
void pool_withdraw(pool *p, stream *s);

/* From worker_link.c. */
void pool_link_hello(pool *p, wlink *l, const sluice_hello *h, int peer_pid);
void pool_link_ready(pool *p, wlink *l);
void pool_link_capacity(pool *p, wlink *l);
void pool_link_retire(pool *p, wlink *l);
void pool_link_closed(pool *p, wlink *l);

/* Graceful stop: drain links, stop respawning, terminate processes. */
void pool_shutdown(pool *p);
bool pool_stopped(const pool *p);
uint32_t pool_queue_len(const pool *p);

#endif
