/* ws_echo: a WebSocket echo worker. Every message comes back with the same
 * type (text or binary); a plain HTTP request gets 426 and a short text.
 *
 * It is what the conformance suite and the benchmarks run against, so it
 * copies nothing the library does not: sluice_ws_take hands over the
 * reassembled message (or the one copy of a message that arrived in one
 * piece), and that buffer is sent back as it is and freed once written.
 *
 * Backpressure is end to end: the stream reads in the library's manual
 * credit mode, and a message is reported consumed (which lets the gateway
 * send more) only once its echo has been handed to the socket, i.e. once
 * the gateway granted credit for it because the client read it. So a client
 * that sends without reading is slowed down, and what this worker holds
 * per WebSocket stays within the window plus one message.
 *
 * `?protocol=NAME` (in the handshake's target) accepts subprotocol NAME if
 * the client offered it; a client that offered subprotocols none of which
 * is asked for still gets the WebSocket, without one. A client's close is
 * answered by the gateway; the worker just lets the stream go.
 *
 * Environment: SLUICE_SOCKET (set by the gateway), SLUICE_MAX_STREAMS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_util.h"

#define BYTES(lit) {(const uint8_t *)(lit), sizeof(lit) - 1}

static const sluice_header text_headers[] = {
    {BYTES("content-type"), BYTES("text/plain")},
    {BYTES("content-length"), BYTES("27")},
};

static void on_request(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)req;
    (void)ud;
    static const char body[] = "a WebSocket endpoint only\n\n";
    if (sluice_stream_respond(s, 426, text_headers, 2, true) < 0 ||
        sluice_stream_write(s, body, sizeof body - 1, NULL, NULL) < 0 ||
        sluice_stream_end(s, NULL, 0) < 0)
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
}

static void on_websocket(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)ud;
    char proto[64] = "";
    sluice_bytes v;
    if (query_param(req->target, "protocol", &v) && v.len < sizeof proto) {
        memcpy(proto, v.ptr, v.len);
        proto[v.len] = '\0';
        if (!sluice_ws_offered(req, proto))
            proto[0] = '\0';
    }
    if (sluice_ws_accept(s, proto[0] ? proto : NULL, NULL, 0) < 0) {
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        return;
    }
    /* Manual credit: on_sent reports each message consumed once echoed. */
    sluice_stream_pause_reading(s);
}

typedef struct {
    uint8_t *buf;
    size_t len;
} echo;

static void on_sent(sluice_stream *s, int status, void *ud)
{
    echo *e = ud;
    if (status == 0)
        sluice_stream_consumed(s, e->len); /* -EPIPE once closed: fine */
    free(e->buf);
    free(e);
}

static void on_message(sluice_stream *s, const uint8_t *data, size_t len, bool text, void *ud)
{
    (void)data;
    (void)ud;
    echo *e = malloc(sizeof *e);
    uint8_t *buf = e ? sluice_ws_take(s) : NULL;
    if (!buf) {
        free(e);
        sluice_ws_close(s, 1011, "out of memory");
        return;
    }
    e->buf = buf;
    e->len = len;
    if (sluice_ws_send(s, buf, len, text, on_sent, e) < 0) {
        free(buf);
        free(e);
    }
}

int main(void)
{
    sluice_worker_callbacks cb = {
        .on_request = on_request,
        .on_websocket = on_websocket,
        .on_message = on_message,
    };
    return example_main("ws_echo", &cb);
}
