/* WebSockets over HTTP/1.1 (RFC 6455), as the HTTP/1.1 front end sees
 * them. It checks the opening handshake (ws_h1_check), sends the request
 * to the pool like any other, and when the worker answers 101 asks
 * ws_accept_h1 for the response head. From then on the stream reports to a
 * WebSocket session (session.h, which HTTP/2's extended CONNECT uses too);
 * once the 101 is written the HTTP/1.1 connection hands its transport over
 * (ws_start) and forgets itself.
 *
 * Memory per WebSocket is the connection object, the session (its parser)
 * and whatever the windows allow: client bytes are read only as far as the
 * worker's credit goes (the rest waits in the kernel), worker messages are
 * credited back only once the client socket took them. */
#ifndef SLUICE_FRONT_WS_H
#define SLUICE_FRONT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gateway.h"
#include "exchange/stream.h"
#include "transport/transport.h"

typedef struct wsconn wsconn;

/* An HTTP/1.1 request that asks for a WebSocket: `upgrade` (the Upgrade
 * field named "websocket") and `conn_upgrade` (Connection has "upgrade").
 * Checks the handshake (RFC 6455 4.2.1) on the request's forwarded headers:
 * returns 0 (s->ws_offer and s->ws_key set), 400 (not GET, not HTTP/1.1, a
 * body, no or a bad key) or 426 (a version other than 13), or -1 when it is
 * not a WebSocket handshake at all (served as a plain request). */
int ws_h1_check(stream *s, bool upgrade, bool conn_upgrade, bool has_body);

/* The worker accepted stream s (RESPONSE 101) on an HTTP/1.1 connection:
 * checks the response (a subprotocol must be one the client offered),
 * appends the 101 head to `head`, and takes the stream over (s->ops,
 * s->owner). Worker messages that arrive before ws_start wait in the
 * connection's output. NULL when the response is unacceptable or memory
 * ran out: the caller answers 502 and cancels the stream. */
wsconn *ws_accept_h1(gateway *gw, stream *s, const sluice_response *r, const char *remote, sluice_buf *head);

/* The 101 is written: the transport is the WebSocket's from now on, with
 * `len` bytes the client sent after its handshake. The caller has removed
 * its own connection from the listener's list and no longer touches t. */
void ws_start(wsconn *w, transport *t, const uint8_t *data, size_t len);

/* The HTTP/1.1 connection ended before ws_start (the client left while
 * the 101 was being written): the worker gets CLOSE 1006, w is freed. */
void ws_abort(wsconn *w);

#endif
