/* Router: host and path prefix -> pool; the most specific route wins. */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include "core/gateway.h"

int router_new(router **out, gateway *gw);
void router_free(router *r);
/* The pool for a request; the default pool (pools[0]) when no route matches.
 * `host` is the Host header value (port allowed), `target` the request target. */
pool *router_pick(const router *r, const uint8_t *host, size_t host_len, const uint8_t *target,
                  size_t target_len);

#endif
