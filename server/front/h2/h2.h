/* The HTTP/2 front end (RFC 9113, framing, HPACK and stream states by
 * libnghttp2). Each HTTP/2 stream is one stream of the stream interface
 * (exchange/stream.h), hence one protocol stream to a worker.
 *
 * A connection reaches it from the HTTP/1.1 front end, which reads first:
 * a client that opens with the HTTP/2 connection preface (h2c with prior
 * knowledge, on a plain listener) or whose TLS handshake chose ALPN "h2"
 * is handed over, transport and the bytes read so far. */
#ifndef SLUICE_H2_H
#define SLUICE_H2_H

#include <stddef.h>
#include <stdint.h>

#include "core/gateway.h"
#include "transport/transport.h"

/* The 24 octets every HTTP/2 client connection starts with. */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* Take the connection over: t reports to the HTTP/2 front end from now on,
 * `data` (len bytes, the preface first) is processed at once; `scheme` is
 * the listener's ("http", "https"; static). The caller has removed its own
 * connection from the listener's list and no longer touches t. Returns 0,
 * or a negative errno (then t was closed). */
int h2_adopt(gateway *gw, transport *t, const char *scheme, const uint8_t *data, size_t len);

#endif
