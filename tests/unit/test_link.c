/* Link state machine: handshake, stream lifecycle, credit, drain/retire. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

#define B(s) ((sluice_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static sluice_frame hello_worker(uint32_t max_streams, uint32_t window)
{
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    f.u.hello = (sluice_hello){.version = 1,
                               .has = SLUICE_HELLO_HAS_MAX_STREAMS | SLUICE_HELLO_HAS_WINDOW |
                                      SLUICE_HELLO_HAS_LIB,
                               .max_streams = max_streams, .window = window, .lib = B("test")};
    return f;
}

static sluice_frame hello_gateway(uint32_t window)
{
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    f.u.hello = (sluice_hello){.version = 1, .has = SLUICE_HELLO_HAS_WINDOW, .window = window};
    return f;
}

static sluice_frame request(uint64_t sid, uint32_t body)
{
    sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = sid};
    f.u.request = (sluice_request){.method = B("GET"), .target = B("/"), .version = 11,
                                   .scheme = B("http"), .body = body};
    return f;
}

static sluice_frame response(uint64_t sid, uint32_t body)
{
    sluice_frame f = {.type = SLUICE_FRAME_RESPONSE, .stream_id = sid};
    f.u.response = (sluice_response){.status = 200, .body = body};
    return f;
}

static sluice_frame body(uint64_t sid, size_t len)
{
    static uint8_t zeros[1 << 17];
    sluice_frame f = {.type = SLUICE_FRAME_BODY, .stream_id = sid};
    f.u.body = (sluice_bytes){zeros, len};
    return f;
}

static sluice_frame simple(uint32_t type, uint64_t sid, uint64_t v)
{
    sluice_frame f = {.type = type, .stream_id = sid};
    switch (type) {
    case SLUICE_FRAME_CREDIT: f.u.credit = v; break;
    case SLUICE_FRAME_LIMIT: f.u.max_body = v; break;
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
    case SLUICE_FRAME_ERROR: f.u.code.code = v; break;
    case SLUICE_FRAME_PING:
    case SLUICE_FRAME_PONG: f.u.opaque = v; break;
    case SLUICE_FRAME_DRAIN: f.u.timeout_ms = v; break;
    default: break;
    }
    return f;
}

/* A gateway link past the handshake with a worker (max_streams, window). */
static sluice_proto_link *gateway_ready(uint32_t max_streams, uint32_t wwin, uint32_t gwin)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = 64};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_GATEWAY, &cfg), 0);
    sluice_frame h = hello_worker(max_streams, wwin);
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), 0);
    cr_assert_eq(sluice_proto_link_state(l), SLUICE_LINK_HANDSHAKE);
    h = hello_gateway(gwin);
    cr_assert_eq(sluice_proto_link_send(l, &h, NULL), 0);
    cr_assert_eq(sluice_proto_link_state(l), SLUICE_LINK_READY);
    return l;
}

static sluice_proto_link *worker_ready(uint32_t max_streams, uint32_t wwin, uint32_t gwin)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = max_streams};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_WORKER, &cfg), 0);
    sluice_frame h = hello_worker(max_streams, wwin);
    cr_assert_eq(sluice_proto_link_send(l, &h, NULL), 0);
    h = hello_gateway(gwin);
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), 0);
    cr_assert_eq(sluice_proto_link_state(l), SLUICE_LINK_READY);
    return l;
}

Test(handshake, gateway_before_hello)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = 4};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_GATEWAY, &cfg), 0);
    sluice_frame h = hello_gateway(100);
    cr_assert_eq(sluice_proto_link_send(l, &h, NULL), -EPROTO, "gateway speaks second");
    sluice_frame p = simple(SLUICE_FRAME_PING, 0, 1);
    cr_assert_eq(sluice_proto_link_recv(l, &p, NULL), SLUICE_PROTO_E_UNEXPECTED_FRAME);
    cr_assert_eq(sluice_proto_link_state(l), SLUICE_LINK_FAILED);
    sluice_proto_link_free(l);
}

Test(handshake, version_and_required_keys)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = 4};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_GATEWAY, &cfg), 0);
    sluice_frame h = hello_worker(4, 100);
    h.u.hello.version = 2;
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), SLUICE_PROTO_E_VERSION);
    sluice_proto_link_free(l);

    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_GATEWAY, &cfg), 0);
    h = hello_worker(4, 100);
    h.u.hello.has &= ~SLUICE_HELLO_HAS_WINDOW;
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), SLUICE_PROTO_E_FIELD_TYPE);
    sluice_proto_link_free(l);
}

Test(handshake, second_hello_and_peer_settings)
{
    sluice_proto_link *l = gateway_ready(3, 1000, 2000);
    const sluice_hello *peer = sluice_proto_link_peer_hello(l);
    cr_assert_not_null(peer);
    cr_assert_eq(peer->window, 1000);
    cr_assert_eq(peer->lib.len, 4);
    cr_assert_eq(memcmp(peer->lib.ptr, "test", 4), 0);
    cr_assert_eq(sluice_proto_link_peer_max_frame(l), SLUICE_PROTO_DEFAULT_FRAME);
    cr_assert_eq(sluice_proto_link_max_streams(l), 3, "min of worker's 3 and gateway's 64");
    sluice_frame h = hello_worker(3, 1000);
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), SLUICE_PROTO_E_UNEXPECTED_FRAME);
    sluice_proto_link_free(l);
}

Test(handshake, worker_must_speak_first)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = 1};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_WORKER, &cfg), 0);
    sluice_frame h = hello_gateway(5);
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), SLUICE_PROTO_E_UNEXPECTED_FRAME);
    sluice_proto_link_free(l);
}

Test(handshake, error_frame_any_time)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = 1};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_WORKER, &cfg), 0);
    sluice_frame h = hello_worker(1, 10);
    cr_assert_eq(sluice_proto_link_send(l, &h, NULL), 0);
    sluice_frame e = simple(SLUICE_FRAME_ERROR, 0, 11);
    cr_assert_eq(sluice_proto_link_recv(l, &e, NULL), 0);
    cr_assert_eq(sluice_proto_link_state(l), SLUICE_LINK_FAILED);
    sluice_frame p = simple(SLUICE_FRAME_PONG, 0, 1);
    cr_assert_eq(sluice_proto_link_send(l, &p, NULL), -EPROTO);
    sluice_proto_link_free(l);
}

Test(stream, full_exchange_gateway_view)
{
    sluice_proto_link *l = gateway_ready(4, 100, 50);
    sluice_link_event ev;
    cr_assert_eq(sluice_proto_link_next_stream_id(l), 1);
    sluice_frame f = request(1, SLUICE_BODY_FOLLOWS);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    cr_assert(ev.opened);
    sluice_proto_stream_set_udata(ev.stream, (void *)0x1234);
    cr_assert_eq(sluice_proto_stream_send_window(ev.stream), 100);
    cr_assert_eq(sluice_proto_stream_recv_window(ev.stream), 50);
    f = body(1, 60);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = body(1, 41);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), -EPROTO, "over the send window");
    f = simple(SLUICE_FRAME_CREDIT, 1, 10);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert_eq(ev.udata, (void *)0x1234);
    cr_assert_eq(sluice_proto_stream_send_window(ev.stream), 50);
    f = body(1, 50);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = simple(SLUICE_FRAME_END, 1, 0);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    cr_assert_eq(sluice_proto_stream_request_side(ev.stream), SLUICE_SIDE_ENDED);
    cr_assert_eq(sluice_proto_stream_request_bytes(ev.stream), 110);
    /* CREDIT after our END crossed on the wire: ignored */
    f = simple(SLUICE_FRAME_CREDIT, 1, 10);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.ignored);
    f = response(1, SLUICE_BODY_FOLLOWS);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = body(1, 50);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert_eq(sluice_proto_stream_recv_window(ev.stream), 0);
    f = simple(SLUICE_FRAME_CREDIT, 1, 20);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = body(1, 21);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), SLUICE_PROTO_E_FLOW_CONTROL);
    cr_assert_eq(sluice_proto_link_state(l), SLUICE_LINK_FAILED);
    sluice_proto_link_free(l);
}

Test(stream, end_closes_and_late_frames_ignored)
{
    sluice_proto_link *l = gateway_ready(4, 100, 50);
    sluice_link_event ev;
    sluice_frame f = request(1, SLUICE_BODY_FOLLOWS);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    sluice_proto_stream_set_udata(ev.stream, (void *)0x99);
    f = response(1, SLUICE_BODY_FOLLOWS);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = simple(SLUICE_FRAME_END, 1, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.closed, "response END closes the stream");
    cr_assert_eq(ev.udata, (void *)0x99);
    cr_assert_null(ev.stream);
    cr_assert_null(sluice_proto_link_stream(l, 1));
    cr_assert_eq(sluice_proto_link_open_streams(l), 0);
    /* late frames for closed id 1: ignored, even BODY beyond any window */
    f = body(1, 5000);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.ignored);
    /* frames for an unused id: stream_state */
    f = simple(SLUICE_FRAME_CREDIT, 2, 1);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), SLUICE_PROTO_E_STREAM_STATE);
    sluice_proto_link_free(l);
}

Test(stream, response_state_violations)
{
    struct {
        const char *what;
        int setup; /* 0: nothing, 1: RESPONSE body=1 received */
        sluice_frame f;
        int err;
    } cases[] = {
        {"BODY before RESPONSE", 0, body(1, 1), SLUICE_PROTO_E_STREAM_STATE},
        {"END before RESPONSE", 0, simple(SLUICE_FRAME_END, 1, 0), SLUICE_PROTO_E_STREAM_STATE},
        {"RESPONSE twice", 1, response(1, 1), SLUICE_PROTO_E_STREAM_STATE},
        {"REQUEST from worker", 0, request(2, 0), SLUICE_PROTO_E_UNEXPECTED_FRAME},
        {"CANCEL from worker", 0, simple(SLUICE_FRAME_CANCEL, 1, 1), SLUICE_PROTO_E_UNEXPECTED_FRAME},
        {"DRAIN from worker", 0, simple(SLUICE_FRAME_DRAIN, 0, 1), SLUICE_PROTO_E_UNEXPECTED_FRAME},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sluice_proto_link *l = gateway_ready(4, 100, 50);
        sluice_frame r = request(1, SLUICE_BODY_NONE);
        cr_assert_eq(sluice_proto_link_send(l, &r, NULL), 0);
        if (cases[i].setup) {
            r = response(1, 1);
            cr_assert_eq(sluice_proto_link_recv(l, &r, NULL), 0);
        }
        int rc = sluice_proto_link_recv(l, &cases[i].f, NULL);
        cr_expect_eq(rc, cases[i].err, "%s: got %s", cases[i].what, sluice_proto_strerror(rc));
        sluice_proto_link_free(l);
    }
}

Test(stream, worker_view_body_mode_on_credit)
{
    sluice_proto_link *l = worker_ready(2, 1000, 500);
    sluice_link_event ev;
    sluice_frame f = request(7, SLUICE_BODY_ON_CREDIT);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.opened);
    cr_assert_eq(sluice_proto_stream_recv_window(ev.stream), 0, "mode 2 starts at 0");
    cr_assert_eq(sluice_proto_stream_send_window(ev.stream), 500);
    f = body(7, 1);
    sluice_proto_link *l2 = worker_ready(2, 1000, 500);
    sluice_frame r = request(7, SLUICE_BODY_ON_CREDIT);
    cr_assert_eq(sluice_proto_link_recv(l2, &r, NULL), 0);
    cr_assert_eq(sluice_proto_link_recv(l2, &f, NULL), SLUICE_PROTO_E_FLOW_CONTROL);
    sluice_proto_link_free(l2);
    /* LIMIT then CREDIT, then the body flows */
    f = simple(SLUICE_FRAME_LIMIT, 7, 1 << 20);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    cr_assert_eq(sluice_proto_stream_limit(ev.stream), 1 << 20);
    f = simple(SLUICE_FRAME_CREDIT, 7, 1000);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = body(7, 1000);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = simple(SLUICE_FRAME_END, 7, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = simple(SLUICE_FRAME_END, 7, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), SLUICE_PROTO_E_STREAM_STATE, "END twice");
    sluice_proto_link_free(l);
}

Test(stream, worker_ids_and_limits)
{
    sluice_proto_link *l = worker_ready(2, 10, 10);
    sluice_frame f = request(5, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), 0);
    f = request(5, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), SLUICE_PROTO_E_STREAM_STATE, "id reused");
    sluice_proto_link_free(l);

    l = worker_ready(2, 10, 10);
    f = request(5, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), 0);
    f = request(3, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), SLUICE_PROTO_E_STREAM_STATE, "id decreasing");
    sluice_proto_link_free(l);

    l = worker_ready(2, 10, 10);
    for (uint64_t id = 1; id <= 2; id++) {
        f = request(id, 0);
        cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), 0);
    }
    f = request(3, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), SLUICE_PROTO_E_TOO_MANY_STREAMS);
    sluice_proto_link_free(l);

    /* a CANCEL frees the slot for the next REQUEST */
    l = worker_ready(1, 10, 10);
    sluice_link_event ev;
    f = request(1, 1);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), 0);
    f = simple(SLUICE_FRAME_CANCEL, 1, SLUICE_CANCEL_CLIENT_CLOSED);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.closed);
    f = request(2, 0);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), 0);
    /* the worker's late RESPONSE on 1 is the caller's mistake on send */
    f = response(1, 0);
    cr_assert_eq(sluice_proto_link_send(l, &f, NULL), -EPROTO);
    sluice_proto_link_free(l);
}

Test(stream, credit_overflow)
{
    sluice_proto_link *l = gateway_ready(4, SLUICE_PROTO_MAX_WINDOW, 10);
    sluice_frame f = request(1, 1);
    cr_assert_eq(sluice_proto_link_send(l, &f, NULL), 0);
    f = simple(SLUICE_FRAME_CREDIT, 1, 1);
    cr_assert_eq(sluice_proto_link_recv(l, &f, NULL), SLUICE_PROTO_E_FLOW_CONTROL);
    sluice_proto_link_free(l);
    /* sending side: our own grant beyond 2^31-1 is refused */
    l = gateway_ready(4, 10, SLUICE_PROTO_MAX_WINDOW);
    f = request(1, 1);
    cr_assert_eq(sluice_proto_link_send(l, &f, NULL), 0);
    f = simple(SLUICE_FRAME_CREDIT, 1, 1);
    cr_assert_eq(sluice_proto_link_send(l, &f, NULL), -EPROTO);
    sluice_proto_link_free(l);
}

Test(lifecycle, drain_and_retire)
{
    sluice_proto_link *g = gateway_ready(4, 10, 10);
    sluice_frame f = simple(SLUICE_FRAME_RETIRE, 0, 0);
    cr_assert_eq(sluice_proto_link_recv(g, &f, NULL), 0);
    cr_assert(sluice_proto_link_retiring(g));
    cr_assert_not(sluice_proto_link_can_open(g));
    f = request(1, 0);
    cr_assert_eq(sluice_proto_link_send(g, &f, NULL), -EPROTO, "no new stream after RETIRE");
    f = simple(SLUICE_FRAME_DRAIN, 0, 1000);
    cr_assert_eq(sluice_proto_link_send(g, &f, NULL), 0);
    cr_assert_eq(sluice_proto_link_state(g), SLUICE_LINK_DRAINING);
    cr_assert_eq(sluice_proto_link_send(g, &f, NULL), -EPROTO, "DRAIN once");
    sluice_proto_link_free(g);

    sluice_proto_link *w = worker_ready(4, 10, 10);
    f = request(1, 0);
    cr_assert_eq(sluice_proto_link_recv(w, &f, NULL), 0);
    f = simple(SLUICE_FRAME_DRAIN, 0, 1000);
    cr_assert_eq(sluice_proto_link_recv(w, &f, NULL), 0);
    /* in-flight stream still served */
    f = response(1, 0);
    cr_assert_eq(sluice_proto_link_send(w, &f, NULL), 0);
    f = request(2, 0);
    cr_assert_eq(sluice_proto_link_recv(w, &f, NULL), SLUICE_PROTO_E_UNEXPECTED_FRAME);
    sluice_proto_link_free(w);
}

Test(lifecycle, ping_pong_after_handshake_only)
{
    sluice_proto_link *w;
    sluice_link_config cfg = {.max_streams = 1};
    cr_assert_eq(sluice_proto_link_new(&w, SLUICE_ROLE_WORKER, &cfg), 0);
    sluice_frame p = simple(SLUICE_FRAME_PING, 0, 1);
    cr_assert_eq(sluice_proto_link_send(w, &p, NULL), -EPROTO);
    sluice_proto_link_free(w);
    w = worker_ready(1, 1, 1);
    cr_assert_eq(sluice_proto_link_recv(w, &p, NULL), 0);
    p = simple(SLUICE_FRAME_PONG, 0, 1);
    cr_assert_eq(sluice_proto_link_send(w, &p, NULL), 0);
    sluice_proto_link_free(w);
}

/* Many streams opened and closed in random order: the table stays exact. */
Test(table, random_open_close)
{
    sluice_proto_link *l;
    sluice_link_config cfg = {.max_streams = 1000};
    cr_assert_eq(sluice_proto_link_new(&l, SLUICE_ROLE_GATEWAY, &cfg), 0);
    sluice_frame h = hello_worker(1000, 10);
    cr_assert_eq(sluice_proto_link_recv(l, &h, NULL), 0);
    h = hello_gateway(10);
    cr_assert_eq(sluice_proto_link_send(l, &h, NULL), 0);
    static bool open_[200001];
    uint64_t next = 1;
    unsigned seed = 12345;
    uint32_t n_open = 0;
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        bool do_open = (seed >> 16) % 2 == 0 && sluice_proto_link_can_open(l);
        if (do_open || n_open == 0) {
            if (!sluice_proto_link_can_open(l))
                continue;
            sluice_frame f = request(next, 0);
            cr_assert_eq(sluice_proto_link_send(l, &f, NULL), 0);
            open_[next++] = true;
            n_open++;
        } else {
            /* close a random open stream among the last 2000 ids */
            uint64_t lo = next > 2000 ? next - 2000 : 1;
            uint64_t id = lo + (seed >> 8) % (next - lo);
            sluice_frame f = response(id, 0);
            sluice_link_event ev;
            int rc = sluice_proto_link_recv(l, &f, &ev);
            cr_assert_eq(rc, 0);
            cr_assert_eq(ev.ignored, !open_[id]);
            if (open_[id]) {
                cr_assert(ev.closed);
                open_[id] = false;
                n_open--;
            }
        }
        if (next > 200000)
            break;
    }
    cr_assert_eq(sluice_proto_link_open_streams(l), n_open);
    uint32_t seen = 0;
    for (sluice_proto_stream *s = sluice_proto_link_next_stream(l, NULL); s;
         s = sluice_proto_link_next_stream(l, s)) {
        cr_assert(open_[sluice_proto_stream_id(s)]);
        cr_assert_eq(sluice_proto_link_stream(l, sluice_proto_stream_id(s)), s);
        seen++;
    }
    cr_assert_eq(seen, n_open);
    sluice_proto_link_free(l);
}

/* ---- WebSocket streams (PROTOCOL.md 5.2) ------------------------------ */

static sluice_frame with_ws(sluice_frame h)
{
    h.u.hello.has |= SLUICE_HELLO_HAS_WEBSOCKET;
    h.u.hello.websocket = true;
    return h;
}

static sluice_frame message(uint64_t sid, uint32_t flags, size_t len)
{
    static uint8_t zeros[256];
    sluice_frame f = {.type = SLUICE_FRAME_MESSAGE, .stream_id = sid};
    f.u.message.flags = flags;
    f.u.message.data = (sluice_bytes){zeros, len};
    return f;
}

static sluice_frame ws_close(uint64_t sid, uint64_t code)
{
    sluice_frame f = {.type = SLUICE_FRAME_CLOSE, .stream_id = sid};
    f.u.close.code = code;
    return f;
}

static sluice_frame accept101(uint64_t sid)
{
    sluice_frame f = response(sid, 0);
    f.u.response.status = 101;
    return f;
}

Test(websocket, negotiation_needs_both_hellos)
{
    sluice_link_config cfg = {.max_streams = 8};
    /* gateway: may answer websocket only to a worker that announced it */
    sluice_proto_link *g;
    cr_assert_eq(sluice_proto_link_new(&g, SLUICE_ROLE_GATEWAY, &cfg), 0);
    sluice_frame h = hello_worker(8, 100);
    cr_assert_eq(sluice_proto_link_recv(g, &h, NULL), 0);
    h = with_ws(hello_gateway(100));
    cr_assert_eq(sluice_proto_link_send(g, &h, NULL), -EPROTO);
    cr_assert_eq(sluice_proto_link_state(g), SLUICE_LINK_HANDSHAKE, "a refused HELLO changes nothing");
    h = hello_gateway(100);
    cr_assert_eq(sluice_proto_link_send(g, &h, NULL), 0);
    cr_assert(!sluice_proto_link_websocket(g));
    sluice_frame r = request(1, SLUICE_BODY_WEBSOCKET);
    cr_assert_eq(sluice_proto_link_send(g, &r, NULL), -EPROTO);
    sluice_proto_link_free(g);

    cr_assert_eq(sluice_proto_link_new(&g, SLUICE_ROLE_GATEWAY, &cfg), 0);
    h = with_ws(hello_worker(8, 100));
    cr_assert_eq(sluice_proto_link_recv(g, &h, NULL), 0);
    cr_assert(!sluice_proto_link_websocket(g), "not before the gateway's own HELLO");
    h = with_ws(hello_gateway(100));
    cr_assert_eq(sluice_proto_link_send(g, &h, NULL), 0);
    cr_assert(sluice_proto_link_websocket(g));
    cr_assert(sluice_proto_link_local_hello(g)->websocket);
    sluice_proto_link_free(g);

    /* worker: the gateway's websocket alone does not turn it on */
    sluice_proto_link *w;
    cr_assert_eq(sluice_proto_link_new(&w, SLUICE_ROLE_WORKER, &cfg), 0);
    h = hello_worker(8, 100);
    cr_assert_eq(sluice_proto_link_send(w, &h, NULL), 0);
    h = with_ws(hello_gateway(100));
    cr_assert_eq(sluice_proto_link_recv(w, &h, NULL), 0);
    cr_assert(!sluice_proto_link_websocket(w));
    r = request(1, SLUICE_BODY_WEBSOCKET);
    cr_assert_eq(sluice_proto_link_recv(w, &r, NULL), SLUICE_PROTO_E_UNEXPECTED_FRAME);
    sluice_proto_link_free(w);
}

static sluice_proto_link *ws_pair_ready(sluice_role role, uint32_t wwin, uint32_t gwin)
{
    sluice_link_config cfg = {.max_streams = 8};
    sluice_proto_link *l;
    cr_assert_eq(sluice_proto_link_new(&l, role, &cfg), 0);
    sluice_frame wh = with_ws(hello_worker(8, wwin)), gh = with_ws(hello_gateway(gwin));
    if (role == SLUICE_ROLE_GATEWAY) {
        cr_assert_eq(sluice_proto_link_recv(l, &wh, NULL), 0);
        cr_assert_eq(sluice_proto_link_send(l, &gh, NULL), 0);
    } else {
        cr_assert_eq(sluice_proto_link_send(l, &wh, NULL), 0);
        cr_assert_eq(sluice_proto_link_recv(l, &gh, NULL), 0);
    }
    cr_assert(sluice_proto_link_websocket(l));
    return l;
}

Test(websocket, worker_stream_states_bytes_and_close)
{
    sluice_proto_link *l = ws_pair_ready(SLUICE_ROLE_WORKER, 100, 50);
    sluice_link_event ev;
    sluice_frame f = request(1, SLUICE_BODY_WEBSOCKET);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.opened);
    sluice_proto_stream *s = ev.stream;
    sluice_proto_stream_set_udata(s, &f);
    cr_assert_eq(sluice_proto_stream_websocket(s), 1);
    cr_assert_eq(sluice_proto_stream_body_mode(s), SLUICE_BODY_WEBSOCKET);
    cr_assert_eq(sluice_proto_stream_request_side(s), SLUICE_SIDE_OPEN);
    f = accept101(1);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    cr_assert(!ev.closed, "a 101 does not close the stream");
    cr_assert_eq(sluice_proto_stream_websocket(s), 2);
    cr_assert_eq(sluice_proto_stream_response_side(s), SLUICE_RESP_ENDED);
    cr_assert_eq(sluice_proto_link_open_streams(l), 1);
    /* data counts against the windows and in the byte counters; PING/PONG do not */
    f = message(1, SLUICE_MSG_TEXT | SLUICE_MSG_MORE, 60);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = message(1, SLUICE_MSG_PONG, 200);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = message(1, SLUICE_MSG_TEXT, 40);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert_eq(ev.stream, s);
    cr_assert_eq(sluice_proto_stream_recv_window(s), 0);
    cr_assert_eq(sluice_proto_stream_request_bytes(s), 100);
    f = message(1, 0, 50);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = message(1, SLUICE_MSG_PING, 125);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = message(1, SLUICE_MSG_PING, 126);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), -EPROTO);
    f = message(1, SLUICE_MSG_PONG, 1);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), -EPROTO);
    cr_assert_eq(sluice_proto_stream_response_bytes(s), 50);
    cr_assert_eq(sluice_proto_stream_send_window(s), 0);
    f = ws_close(1, 999);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), -EPROTO, "a code out of range is a caller error");
    /* CLOSE from the gateway closes the stream */
    f = ws_close(1, 1000);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.closed);
    cr_assert_null(ev.stream);
    cr_assert_eq(ev.udata, &f);
    cr_assert_eq(sluice_proto_link_open_streams(l), 0);
    f = message(1, 0, 1);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert(ev.ignored);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), -EPROTO);
    cr_assert_neq(sluice_proto_link_state(l), SLUICE_LINK_FAILED);
    sluice_proto_link_free(l);
}

Test(websocket, gateway_refusal_and_send_close)
{
    sluice_proto_link *l = ws_pair_ready(SLUICE_ROLE_GATEWAY, 16, 8);
    sluice_link_event ev;
    sluice_frame f = request(1, SLUICE_BODY_WEBSOCKET);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    sluice_proto_stream *s = ev.stream;
    f = response(1, 1); /* 200 with a body: a refusal */
    f.u.response.status = 403;
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert_eq(sluice_proto_stream_websocket(s), 0, "a refused stream is an ordinary stream");
    f = message(1, 0, 1);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), SLUICE_PROTO_E_STREAM_STATE);
    sluice_proto_link_free(l);

    l = ws_pair_ready(SLUICE_ROLE_GATEWAY, 16, 8);
    f = request(1, SLUICE_BODY_WEBSOCKET);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    s = ev.stream;
    f = accept101(1);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    f = message(1, SLUICE_MSG_TEXT, 16);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = message(1, SLUICE_MSG_PONG, 3);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    f = message(1, 0, 8);
    cr_assert_eq(sluice_proto_link_recv(l, &f, &ev), 0);
    cr_assert_eq(sluice_proto_stream_request_bytes(s), 16);
    cr_assert_eq(sluice_proto_stream_response_bytes(s), 8);
    f = ws_close(1, 1001);
    cr_assert_eq(sluice_proto_link_send(l, &f, &ev), 0);
    cr_assert(ev.closed);
    cr_assert_eq(sluice_proto_link_open_streams(l), 0);
    cr_assert(sluice_proto_link_can_open(l));
    sluice_proto_link_free(l);
}
