/* libFuzzer target: decoded frames from arbitrary bytes applied to a link's
 * state machine, alternating between received frames and (when legal) the
 * local side's own sends, in either role. Checks invariants the state
 * machine promises: window bounds and the open-stream count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

static void check_invariants(sluice_proto_link *l)
{
    uint32_t n = 0;
    for (sluice_proto_stream *s = sluice_proto_link_next_stream(l, NULL); s;
         s = sluice_proto_link_next_stream(l, s)) {
        if (sluice_proto_stream_send_window(s) > SLUICE_PROTO_MAX_WINDOW ||
            sluice_proto_stream_recv_window(s) > SLUICE_PROTO_MAX_WINDOW)
            abort();
        if (sluice_proto_link_stream(l, sluice_proto_stream_id(s)) != s)
            abort();
        n++;
    }
    if (n != sluice_proto_link_open_streams(l) || n > sluice_proto_link_max_streams(l))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    sluice_role role = data[0] & 1 ? SLUICE_ROLE_GATEWAY : SLUICE_ROLE_WORKER;
    bool ws = data[0] & 2; /* announce WebSockets (answered only if the peer did) */
    sluice_link_config cfg = {.max_streams = 1 + data[1] % 8};
    data += 2;
    size -= 2;
    sluice_proto_link *l;
    if (sluice_proto_link_new(&l, role, &cfg) != 0)
        abort();
    if (role == SLUICE_ROLE_WORKER) {
        sluice_frame h = {.type = SLUICE_FRAME_HELLO};
        h.u.hello = (sluice_hello){.version = 1, .has = SLUICE_HELLO_HAS_MAX_STREAMS | SLUICE_HELLO_HAS_WINDOW,
                                   .max_streams = cfg.max_streams, .window = 1000};
        if (ws) {
            h.u.hello.has |= SLUICE_HELLO_HAS_WEBSOCKET;
            h.u.hello.websocket = true;
        }
        if (sluice_proto_link_send(l, &h, NULL) != 0)
            abort();
    }
    sluice_proto_decoder *d;
    if (sluice_proto_decoder_new(&d, SLUICE_PROTO_MIN_FRAME, 64) != 0)
        abort();
    size_t off = 0;
    bool even = false;
    while (off < size) {
        sluice_frame f;
        size_t used;
        int rc = sluice_proto_decoder_feed(d, data + off, size - off, &used, &f);
        off += used;
        if (rc <= 0)
            break;
        sluice_link_event ev;
        /* Every other frame is tried as a local send, which must either be
         * refused without effect or be applied consistently. */
        even = !even;
        if (even && f.type != SLUICE_FRAME_HELLO)
            rc = sluice_proto_link_send(l, &f, &ev);
        else
            rc = sluice_proto_link_recv(l, &f, &ev);
        if (rc == 0 && ev.closed && ev.stream)
            abort();
        check_invariants(l);
        if (sluice_proto_link_state(l) == SLUICE_LINK_FAILED)
            break;
        /* Gateway handshake: answer the worker's HELLO. */
        if (role == SLUICE_ROLE_GATEWAY && sluice_proto_link_peer_hello(l) &&
            !sluice_proto_link_local_hello(l)) {
            sluice_frame h = {.type = SLUICE_FRAME_HELLO};
            h.u.hello = (sluice_hello){.version = 1, .has = SLUICE_HELLO_HAS_WINDOW, .window = 500};
            const sluice_hello *ph = sluice_proto_link_peer_hello(l);
            if (ws && (ph->has & SLUICE_HELLO_HAS_WEBSOCKET) && ph->websocket) {
                h.u.hello.has |= SLUICE_HELLO_HAS_WEBSOCKET;
                h.u.hello.websocket = true;
            }
            if (sluice_proto_link_send(l, &h, NULL) != 0)
                abort();
        }
    }
    sluice_proto_decoder_free(d);
    sluice_proto_link_free(l);
    return 0;
}
