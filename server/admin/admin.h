/* Admin listener: GET /status (JSON), GET /metrics (Prometheus text),
 * GET /healthz and /readyz (for orchestrators), POST /pools/NAME/scale?workers=N,
 * POST /reload (with the admin token, when one is set). Off unless configured. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "core/gateway.h"

/* Start the admin listener on gw->cfg->admin (its state: gw->admin). */
int admin_listen(gateway *gw);
/* Stop it; its memory is freed once the loop ran the close callback. */
void admin_close(gateway *gw);

/* May a request use a mutating endpoint (POST)? */
typedef enum {
    ADMIN_AUTH_OK,
    ADMIN_AUTH_MISSING,     /* a token is set, no Bearer credentials given: 401 */
    ADMIN_AUTH_WRONG,       /* a token is set, another one given: 403 */
    ADMIN_AUTH_NEEDS_TOKEN, /* no token set, and the admin address is not local: 403 */
} admin_auth;
/* `token`: the configured admin_token ("" or NULL: none); `local`: the admin
 * listener is a Unix socket or a loopback address (admin_address_is_local);
 * `authorization`: the request's Authorization value (NULL: none), `len`
 * bytes. The token is compared in constant time. */
admin_auth admin_authorize(const char *token, bool local, const char *authorization, size_t len);
/* "unix:PATH", or a numeric loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
bool admin_address_is_local(const char *address);

#endif
