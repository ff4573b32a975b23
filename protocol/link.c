/* Link state: handshake, stream table, per-stream state machine and credit
 * accounting (PROTOCOL.md sections 4-7), for either role. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

#define NIL (-1)

/* sluice_proto_stream_websocket() values. */
enum { WS_NONE = 0, WS_AWAITING = 1, WS_OPEN = 2 };

struct sluice_proto_stream {
    uint64_t id;
    void *udata;
    uint32_t send_win, recv_win;
    uint8_t req, resp, body_mode;
    uint8_t ws;              /* WS_NONE, WS_AWAITING, WS_OPEN */
    uint8_t recv_frag, send_frag; /* inside a message: 0 no, else 1 + its text bit */
    bool used;
    uint64_t limit, req_bytes, resp_bytes;
    int32_t chain;           /* next slot in the same hash bucket */
    int32_t prev, next;      /* open-stream list, for iteration */
};

/* A HELLO kept for the life of the link: its strings are copied (in full:
 * a token must not be compared shortened) into one allocation. */
typedef struct {
    sluice_hello h;
    uint8_t *blob;
} hello_copy;

struct sluice_proto_link {
    sluice_role role;
    sluice_link_state state;
    bool local_hello, peer_hello, retiring, drain;
    bool websocket; /* both HELLOs carried websocket: true */
    hello_copy local, peer;
    uint64_t highest; /* largest stream id opened on this link */
    uint32_t open, cap;
    sluice_proto_stream *slots;
    int32_t free_head;
    int32_t *buckets;
    uint32_t mask;
    int32_t head, tail; /* open list */
};

int sluice_proto_link_new(sluice_proto_link **out, sluice_role role, const sluice_link_config *cfg)
{
    if ((role != SLUICE_ROLE_GATEWAY && role != SLUICE_ROLE_WORKER) || !cfg ||
        cfg->max_streams < 1 || cfg->max_streams > SLUICE_PROTO_MAX_STREAMS)
        return -EINVAL;
    sluice_proto_link *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->role = role;
    l->cap = cfg->max_streams;
    uint32_t nb = 1;
    while (nb < l->cap)
        nb <<= 1;
    l->mask = nb - 1;
    l->slots = calloc(l->cap, sizeof *l->slots);
    l->buckets = malloc(nb * sizeof *l->buckets);
    if (!l->slots || !l->buckets) {
        sluice_proto_link_free(l);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nb; i++)
        l->buckets[i] = NIL;
    for (uint32_t i = 0; i < l->cap; i++)
        l->slots[i].chain = i + 1 < l->cap ? (int32_t)i + 1 : NIL;
    l->free_head = 0;
    l->head = l->tail = NIL;
    *out = l;
    return 0;
}

void sluice_proto_link_free(sluice_proto_link *l)
{
    if (!l)
        return;
    free(l->slots);
    free(l->buckets);
    free(l->local.blob);
    free(l->peer.blob);
    free(l);
}

/* ---- stream table ---------------------------------------------------- */

static sluice_proto_stream *find(const sluice_proto_link *l, uint64_t id)
{
    for (int32_t i = l->buckets[id & l->mask]; i != NIL; i = l->slots[i].chain)
        if (l->slots[i].id == id)
            return &l->slots[i];
    return NULL;
}

static sluice_proto_stream *open_stream(sluice_proto_link *l, uint64_t id)
{
    int32_t i = l->free_head;
    if (i == NIL)
        return NULL;
    sluice_proto_stream *s = &l->slots[i];
    l->free_head = s->chain;
    memset(s, 0, sizeof *s);
    s->id = id;
    s->used = true;
    s->limit = UINT64_MAX;
    s->chain = l->buckets[id & l->mask];
    l->buckets[id & l->mask] = i;
    s->prev = l->tail;
    s->next = NIL;
    if (l->tail != NIL)
        l->slots[l->tail].next = i;
    else
        l->head = i;
    l->tail = i;
    l->open++;
    if (id > l->highest)
        l->highest = id;
    return s;
}

static void close_stream(sluice_proto_link *l, sluice_proto_stream *s)
{
    int32_t i = (int32_t)(s - l->slots);
    int32_t *pp = &l->buckets[s->id & l->mask];
    while (*pp != i)
        pp = &l->slots[*pp].chain;
    *pp = s->chain;
    if (s->prev != NIL)
        l->slots[s->prev].next = s->next;
    else
        l->head = s->next;
    if (s->next != NIL)
        l->slots[s->next].prev = s->prev;
    else
        l->tail = s->prev;
    s->used = false;
    s->udata = NULL;
    s->chain = l->free_head;
    l->free_head = i;
    l->open--;
}

/* ---- helpers ---------------------------------------------------------- */

static int store_hello(hello_copy *c, const sluice_hello *h)
{
    size_t total = h->lib.len + h->token.len + h->pool.len + h->server.len;
    uint8_t *blob = malloc(total ? total : 1);
    if (!blob)
        return -ENOMEM;
    free(c->blob);
    c->blob = blob;
    c->h = *h;
    sluice_bytes *strs[] = {&c->h.lib, &c->h.token, &c->h.pool, &c->h.server};
    for (size_t i = 0; i < 4; i++) {
        if (strs[i]->len)
            memcpy(blob, strs[i]->ptr, strs[i]->len);
        strs[i]->ptr = blob;
        blob += strs[i]->len;
    }
    if (!(c->h.has & SLUICE_HELLO_HAS_MAX_FRAME))
        c->h.max_frame = SLUICE_PROTO_DEFAULT_FRAME;
    return 0;
}

static const sluice_hello *worker_hello(const sluice_proto_link *l)
{
    return l->role == SLUICE_ROLE_WORKER ? &l->local.h : &l->peer.h;
}

static const sluice_hello *gateway_hello(const sluice_proto_link *l)
{
    return l->role == SLUICE_ROLE_GATEWAY ? &l->local.h : &l->peer.h;
}

uint32_t sluice_proto_link_max_streams(const sluice_proto_link *l)
{
    uint32_t m = l->cap;
    const sluice_hello *w = worker_hello(l), *g = gateway_hello(l);
    bool w_known = l->role == SLUICE_ROLE_WORKER ? l->local_hello : l->peer_hello;
    bool g_known = l->role == SLUICE_ROLE_GATEWAY ? l->local_hello : l->peer_hello;
    if (w_known && (w->has & SLUICE_HELLO_HAS_MAX_STREAMS) && w->max_streams < m)
        m = w->max_streams;
    if (g_known && (g->has & SLUICE_HELLO_HAS_MAX_STREAMS) && g->max_streams < m)
        m = g->max_streams;
    return m;
}

/* Which frame types each role may send. */
static bool may_send(sluice_role role, uint32_t type)
{
    switch (type) {
    case SLUICE_FRAME_REQUEST:
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_DRAIN:
        return role == SLUICE_ROLE_GATEWAY;
    case SLUICE_FRAME_RESPONSE:
    case SLUICE_FRAME_RESET:
    case SLUICE_FRAME_LIMIT:
    case SLUICE_FRAME_RETIRE:
        return role == SLUICE_ROLE_WORKER;
    default:
        return type >= 1 && type <= SLUICE_FRAME_TYPE_MAX;
    }
}

static sluice_role other(sluice_role r)
{
    return r == SLUICE_ROLE_GATEWAY ? SLUICE_ROLE_WORKER : SLUICE_ROLE_GATEWAY;
}

static bool ready(const sluice_proto_link *l)
{
    return l->state == SLUICE_LINK_READY || l->state == SLUICE_LINK_DRAINING;
}

static void init_windows(sluice_proto_link *l, sluice_proto_stream *s, uint32_t body_mode)
{
    uint32_t req = body_mode == SLUICE_BODY_ON_CREDIT ? 0 : worker_hello(l)->window;
    uint32_t resp = gateway_hello(l)->window;
    s->body_mode = (uint8_t)body_mode;
    /* A WebSocket stream has no request body, but its request side counts as
     * OPEN until the stream closes, so that CREDIT and LIMIT apply (5.2). */
    s->req = body_mode == SLUICE_BODY_NONE ? SLUICE_SIDE_ENDED : SLUICE_SIDE_OPEN;
    s->ws = body_mode == SLUICE_BODY_WEBSOCKET ? WS_AWAITING : WS_NONE;
    s->resp = SLUICE_RESP_WAITING;
    if (l->role == SLUICE_ROLE_GATEWAY) {
        s->send_win = req;
        s->recv_win = resp;
    } else {
        s->send_win = resp;
        s->recv_win = req;
    }
}

static void fill_event(sluice_link_event *ev, sluice_proto_stream *s)
{
    if (!ev)
        return;
    ev->stream = s;
    ev->udata = s ? s->udata : NULL;
}

static void ignored_event(sluice_link_event *ev)
{
    if (ev) {
        ev->stream = NULL;
        ev->udata = NULL;
        ev->ignored = true;
    }
}

static void closed_event(sluice_proto_link *l, sluice_link_event *ev, sluice_proto_stream *s)
{
    if (ev) {
        ev->udata = s->udata;
        ev->stream = NULL;
        ev->closed = true;
    }
    close_stream(l, s);
}

static bool hello_ws(const sluice_hello *h)
{
    return (h->has & SLUICE_HELLO_HAS_WEBSOCKET) && h->websocket;
}

/* Frames that exist only on links with WebSockets (PROTOCOL.md 5.2). */
static bool ws_only(const sluice_frame *f)
{
    return f->type == SLUICE_FRAME_MESSAGE || f->type == SLUICE_FRAME_CLOSE ||
           (f->type == SLUICE_FRAME_REQUEST && f->u.request.body == SLUICE_BODY_WEBSOCKET) ||
           (f->type == SLUICE_FRAME_RESPONSE && f->u.response.status == 101);
}

/* The data MESSAGE flags a sender of `role` may use, plus its control kind. */
static bool msg_flags_for(sluice_role sender, uint32_t flags)
{
    if (flags == SLUICE_MSG_PING)
        return sender == SLUICE_ROLE_WORKER;
    if (flags == SLUICE_MSG_PONG)
        return sender == SLUICE_ROLE_GATEWAY;
    return flags <= (SLUICE_MSG_TEXT | SLUICE_MSG_MORE);
}

/* A data MESSAGE continues the current message with the same text bit. */
static bool frag_ok(uint8_t frag, uint32_t flags)
{
    return frag == 0 || frag == 1 + (flags & SLUICE_MSG_TEXT);
}

static uint8_t frag_next(uint32_t flags)
{
    return (flags & SLUICE_MSG_MORE) ? (uint8_t)(1 + (flags & SLUICE_MSG_TEXT)) : 0;
}

/* The stream's WebSocket was accepted: MESSAGEs may flow, no HTTP body. */
static void ws_accept(sluice_proto_stream *s)
{
    s->ws = WS_OPEN;
    s->resp = SLUICE_RESP_ENDED;
}

/* ---- receiving -------------------------------------------------------- */

static int recv_hello(sluice_proto_link *l, const sluice_hello *h)
{
    if (l->peer_hello)
        return SLUICE_PROTO_E_UNEXPECTED_FRAME;
    if (l->role == SLUICE_ROLE_WORKER && !l->local_hello)
        return SLUICE_PROTO_E_UNEXPECTED_FRAME; /* the gateway speaks second */
    if (h->version != SLUICE_PROTO_VERSION)
        return SLUICE_PROTO_E_VERSION;
    uint32_t need = l->role == SLUICE_ROLE_GATEWAY
                        ? (SLUICE_HELLO_HAS_MAX_STREAMS | SLUICE_HELLO_HAS_WINDOW)
                        : SLUICE_HELLO_HAS_WINDOW;
    if ((h->has & need) != need)
        return SLUICE_PROTO_E_FIELD_TYPE;
    int rc = store_hello(&l->peer, h);
    if (rc < 0)
        return SLUICE_PROTO_E_INTERNAL;
    l->peer_hello = true;
    if (l->role == SLUICE_ROLE_WORKER) {
        /* A gateway answering websocket to a worker that did not announce
         * it is ignored: the feature needs both HELLOs. */
        l->websocket = hello_ws(&l->local.h) && hello_ws(h);
        l->state = SLUICE_LINK_READY;
    }
    return 0;
}

static int recv_stream_frame(sluice_proto_link *l, const sluice_frame *f, sluice_link_event *ev)
{
    uint64_t id = f->stream_id;
    if (f->type == SLUICE_FRAME_REQUEST) { /* worker side */
        if (l->state == SLUICE_LINK_DRAINING)
            return SLUICE_PROTO_E_UNEXPECTED_FRAME;
        if (id <= l->highest)
            return SLUICE_PROTO_E_STREAM_STATE;
        if (l->open >= sluice_proto_link_max_streams(l))
            return SLUICE_PROTO_E_TOO_MANY_STREAMS;
        sluice_proto_stream *s = open_stream(l, id);
        if (!s)
            return SLUICE_PROTO_E_TOO_MANY_STREAMS;
        init_windows(l, s, f->u.request.body);
        fill_event(ev, s);
        if (ev)
            ev->opened = true;
        return 0;
    }
    sluice_proto_stream *s = find(l, id);
    if (!s) {
        if (id <= l->highest) { /* closed: a late frame, crossed on the wire */
            if (ev)
                ev->ignored = true;
            return 0;
        }
        return SLUICE_PROTO_E_STREAM_STATE;
    }
    fill_event(ev, s);
    bool gw = l->role == SLUICE_ROLE_GATEWAY;
    switch (f->type) {
    case SLUICE_FRAME_RESPONSE:
        if (s->resp != SLUICE_RESP_WAITING)
            return SLUICE_PROTO_E_STREAM_STATE;
        if (f->u.response.status == 101) {
            if (s->ws != WS_AWAITING || f->u.response.body != SLUICE_BODY_NONE)
                return SLUICE_PROTO_E_STREAM_STATE;
            ws_accept(s);
            return 0;
        }
        s->ws = WS_NONE; /* a refusal is an ordinary response */
        if (f->u.response.body == SLUICE_BODY_NONE) {
            s->resp = SLUICE_RESP_ENDED;
            closed_event(l, ev, s);
        } else {
            s->resp = SLUICE_RESP_SENDING;
        }
        return 0;
    case SLUICE_FRAME_BODY: {
        if (gw ? s->resp != SLUICE_RESP_SENDING
               : s->req != SLUICE_SIDE_OPEN || s->body_mode == SLUICE_BODY_WEBSOCKET)
            return SLUICE_PROTO_E_STREAM_STATE;
        if (f->u.body.len > s->recv_win)
            return SLUICE_PROTO_E_FLOW_CONTROL;
        s->recv_win -= (uint32_t)f->u.body.len;
        if (gw)
            s->resp_bytes += f->u.body.len;
        else
            s->req_bytes += f->u.body.len;
        return 0;
    }
    case SLUICE_FRAME_END:
        if (gw) {
            if (s->resp != SLUICE_RESP_SENDING)
                return SLUICE_PROTO_E_STREAM_STATE;
            s->resp = SLUICE_RESP_ENDED;
            closed_event(l, ev, s);
        } else {
            if (s->req != SLUICE_SIDE_OPEN || s->body_mode == SLUICE_BODY_WEBSOCKET)
                return SLUICE_PROTO_E_STREAM_STATE;
            s->req = SLUICE_SIDE_ENDED;
        }
        return 0;
    case SLUICE_FRAME_MESSAGE: {
        uint32_t fl = f->u.message.flags;
        size_t n = f->u.message.data.len;
        if (s->ws != WS_OPEN)
            return SLUICE_PROTO_E_STREAM_STATE;
        if (fl == SLUICE_MSG_PING || fl == SLUICE_MSG_PONG)
            return 0; /* control: no credit, not part of a message */
        if (!frag_ok(s->recv_frag, fl))
            return SLUICE_PROTO_E_STREAM_STATE;
        if (n > s->recv_win)
            return SLUICE_PROTO_E_FLOW_CONTROL;
        s->recv_win -= (uint32_t)n;
        s->recv_frag = frag_next(fl);
        if (gw)
            s->resp_bytes += n;
        else
            s->req_bytes += n;
        return 0;
    }
    case SLUICE_FRAME_CLOSE:
        if (s->ws != WS_OPEN)
            return SLUICE_PROTO_E_STREAM_STATE;
        closed_event(l, ev, s);
        return 0;
    case SLUICE_FRAME_CREDIT:
        if (gw && s->req == SLUICE_SIDE_ENDED) {
            ignored_event(ev);
            return 0;
        }
        if (f->u.credit > SLUICE_PROTO_MAX_WINDOW - s->send_win)
            return SLUICE_PROTO_E_FLOW_CONTROL;
        s->send_win += (uint32_t)f->u.credit;
        return 0;
    case SLUICE_FRAME_LIMIT:
        if (s->req == SLUICE_SIDE_ENDED) {
            ignored_event(ev);
            return 0;
        }
        s->limit = f->u.max_body;
        return 0;
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
        closed_event(l, ev, s);
        return 0;
    default:
        return SLUICE_PROTO_E_UNEXPECTED_FRAME;
    }
}

int sluice_proto_link_recv(sluice_proto_link *l, const sluice_frame *f, sluice_link_event *ev)
{
    if (ev)
        memset(ev, 0, sizeof *ev);
    int rc;
    if (l->state == SLUICE_LINK_FAILED)
        return SLUICE_PROTO_E_UNEXPECTED_FRAME;
    if (!may_send(other(l->role), f->type)) {
        rc = SLUICE_PROTO_E_UNEXPECTED_FRAME;
        goto fail;
    }
    switch (f->type) {
    case SLUICE_FRAME_ERROR:
        l->state = SLUICE_LINK_FAILED;
        return 0;
    case SLUICE_FRAME_HELLO:
        rc = recv_hello(l, &f->u.hello);
        break;
    default:
        /* Nothing but HELLO and ERROR before the handshake is complete;
         * the WebSocket frames only where both HELLOs announced them. */
        if (!ready(l) || (!l->websocket && ws_only(f))) {
            rc = SLUICE_PROTO_E_UNEXPECTED_FRAME;
            break;
        }
        /* MESSAGE flags by direction and the PING size are field checks
         * (PROTOCOL.md 3.14), made before the stream's state. */
        if (f->type == SLUICE_FRAME_MESSAGE &&
            (!msg_flags_for(other(l->role), f->u.message.flags) ||
             (f->u.message.flags == SLUICE_MSG_PING &&
              f->u.message.data.len > SLUICE_PROTO_PING_MAX))) {
            rc = SLUICE_PROTO_E_FIELD_VALUE;
            break;
        }
        switch (f->type) {
        case SLUICE_FRAME_PING:
        case SLUICE_FRAME_PONG:
            rc = 0;
            break;
        case SLUICE_FRAME_DRAIN:
            rc = l->drain ? SLUICE_PROTO_E_UNEXPECTED_FRAME : 0;
            if (!rc) {
                l->drain = true;
                l->state = SLUICE_LINK_DRAINING;
            }
            break;
        case SLUICE_FRAME_RETIRE:
            l->retiring = true;
            rc = 0;
            break;
        default:
            rc = recv_stream_frame(l, f, ev);
        }
    }
    if (rc == 0)
        return 0;
fail:
    l->state = SLUICE_LINK_FAILED;
    return rc;
}

/* ---- sending ---------------------------------------------------------- */

static int send_stream_frame(sluice_proto_link *l, const sluice_frame *f, sluice_link_event *ev)
{
    uint64_t id = f->stream_id;
    bool gw = l->role == SLUICE_ROLE_GATEWAY;
    if (f->type == SLUICE_FRAME_REQUEST) {
        if (!sluice_proto_link_can_open(l) || id <= l->highest || id > SLUICE_PROTO_MAX_ID ||
            f->u.request.body > SLUICE_BODY_WEBSOCKET)
            return -EPROTO;
        sluice_proto_stream *s = open_stream(l, id);
        if (!s)
            return -EPROTO;
        init_windows(l, s, f->u.request.body);
        fill_event(ev, s);
        if (ev)
            ev->opened = true;
        return 0;
    }
    sluice_proto_stream *s = find(l, id);
    if (!s)
        return -EPROTO;
    switch (f->type) {
    case SLUICE_FRAME_RESPONSE:
        if (s->resp != SLUICE_RESP_WAITING || f->u.response.body > SLUICE_BODY_FOLLOWS)
            return -EPROTO;
        fill_event(ev, s);
        if (f->u.response.status == 101) {
            if (s->ws != WS_AWAITING || f->u.response.body != SLUICE_BODY_NONE)
                return -EPROTO;
            ws_accept(s);
            return 0;
        }
        s->ws = WS_NONE;
        if (f->u.response.body == SLUICE_BODY_NONE) {
            s->resp = SLUICE_RESP_ENDED;
            closed_event(l, ev, s);
        } else {
            s->resp = SLUICE_RESP_SENDING;
        }
        return 0;
    case SLUICE_FRAME_BODY:
        if ((gw ? s->req != SLUICE_SIDE_OPEN || s->body_mode == SLUICE_BODY_WEBSOCKET
                : s->resp != SLUICE_RESP_SENDING) ||
            f->u.body.len > s->send_win)
            return -EPROTO;
        s->send_win -= (uint32_t)f->u.body.len;
        if (gw)
            s->req_bytes += f->u.body.len;
        else
            s->resp_bytes += f->u.body.len;
        fill_event(ev, s);
        return 0;
    case SLUICE_FRAME_END:
        fill_event(ev, s);
        if (gw) {
            if (s->req != SLUICE_SIDE_OPEN || s->body_mode == SLUICE_BODY_WEBSOCKET)
                return -EPROTO;
            s->req = SLUICE_SIDE_ENDED;
        } else {
            if (s->resp != SLUICE_RESP_SENDING)
                return -EPROTO;
            s->resp = SLUICE_RESP_ENDED;
            closed_event(l, ev, s);
        }
        return 0;
    case SLUICE_FRAME_MESSAGE: {
        uint32_t fl = f->u.message.flags;
        size_t n = f->u.message.data.len;
        if (s->ws != WS_OPEN || !msg_flags_for(l->role, fl))
            return -EPROTO;
        fill_event(ev, s);
        if (fl == SLUICE_MSG_PING || fl == SLUICE_MSG_PONG)
            return fl == SLUICE_MSG_PING && n > SLUICE_PROTO_PING_MAX ? -EPROTO : 0;
        if (!frag_ok(s->send_frag, fl) || n > s->send_win)
            return -EPROTO;
        s->send_win -= (uint32_t)n;
        s->send_frag = frag_next(fl);
        if (gw)
            s->req_bytes += n;
        else
            s->resp_bytes += n;
        return 0;
    }
    case SLUICE_FRAME_CLOSE:
        if (s->ws != WS_OPEN || f->u.close.code < SLUICE_CLOSE_CODE_MIN ||
            f->u.close.code > SLUICE_CLOSE_CODE_MAX)
            return -EPROTO;
        fill_event(ev, s);
        closed_event(l, ev, s);
        return 0;
    case SLUICE_FRAME_CREDIT:
        if (f->u.credit < 1 || f->u.credit > SLUICE_PROTO_MAX_WINDOW - s->recv_win)
            return -EPROTO;
        s->recv_win += (uint32_t)f->u.credit;
        fill_event(ev, s);
        return 0;
    case SLUICE_FRAME_LIMIT:
        s->limit = f->u.max_body;
        fill_event(ev, s);
        return 0;
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
        fill_event(ev, s);
        closed_event(l, ev, s);
        return 0;
    default:
        return -EPROTO;
    }
}

int sluice_proto_link_send(sluice_proto_link *l, const sluice_frame *f, sluice_link_event *ev)
{
    if (ev)
        memset(ev, 0, sizeof *ev);
    if (f->type == SLUICE_FRAME_ERROR) { /* allowed in any state, even after a failure */
        l->state = SLUICE_LINK_FAILED;
        return 0;
    }
    if (l->state == SLUICE_LINK_FAILED || !may_send(l->role, f->type))
        return -EPROTO;
    switch (f->type) {
    case SLUICE_FRAME_ERROR:
        l->state = SLUICE_LINK_FAILED;
        return 0;
    case SLUICE_FRAME_HELLO:
        if (l->local_hello || (l->role == SLUICE_ROLE_GATEWAY && !l->peer_hello))
            return -EPROTO;
        if (!(f->u.hello.has & SLUICE_HELLO_HAS_WINDOW) ||
            (l->role == SLUICE_ROLE_WORKER && !(f->u.hello.has & SLUICE_HELLO_HAS_MAX_STREAMS)))
            return -EINVAL;
        /* The gateway answers websocket only to a worker that announced it. */
        if (l->role == SLUICE_ROLE_GATEWAY && hello_ws(&f->u.hello) && !hello_ws(&l->peer.h))
            return -EPROTO;
        int rc = store_hello(&l->local, &f->u.hello);
        if (rc < 0)
            return rc;
        l->local_hello = true;
        if (l->role == SLUICE_ROLE_GATEWAY) {
            l->websocket = hello_ws(&l->peer.h) && hello_ws(&l->local.h);
            l->state = SLUICE_LINK_READY;
        }
        return 0;
    default:
        break;
    }
    if (!ready(l) || (!l->websocket && ws_only(f)))
        return -EPROTO;
    switch (f->type) {
    case SLUICE_FRAME_PING:
    case SLUICE_FRAME_PONG:
        return 0;
    case SLUICE_FRAME_DRAIN:
        if (l->drain)
            return -EPROTO;
        l->drain = true;
        l->state = SLUICE_LINK_DRAINING;
        return 0;
    case SLUICE_FRAME_RETIRE:
        l->retiring = true;
        return 0;
    default:
        return send_stream_frame(l, f, ev);
    }
}

/* ---- queries ---------------------------------------------------------- */

sluice_link_state sluice_proto_link_state(const sluice_proto_link *l) { return l->state; }
sluice_role sluice_proto_link_role(const sluice_proto_link *l) { return l->role; }

const sluice_hello *sluice_proto_link_local_hello(const sluice_proto_link *l)
{
    return l->local_hello ? &l->local.h : NULL;
}

const sluice_hello *sluice_proto_link_peer_hello(const sluice_proto_link *l)
{
    return l->peer_hello ? &l->peer.h : NULL;
}

uint32_t sluice_proto_link_peer_max_frame(const sluice_proto_link *l)
{
    return l->peer_hello ? l->peer.h.max_frame : SLUICE_PROTO_HELLO_MAX;
}

uint32_t sluice_proto_link_open_streams(const sluice_proto_link *l) { return l->open; }

uint64_t sluice_proto_link_next_stream_id(const sluice_proto_link *l) { return l->highest + 1; }

bool sluice_proto_link_can_open(const sluice_proto_link *l)
{
    return l->role == SLUICE_ROLE_GATEWAY && l->state == SLUICE_LINK_READY && !l->retiring &&
           l->open < sluice_proto_link_max_streams(l) && l->highest < SLUICE_PROTO_MAX_ID;
}

bool sluice_proto_link_retiring(const sluice_proto_link *l) { return l->retiring; }

void sluice_proto_link_fail(sluice_proto_link *l) { l->state = SLUICE_LINK_FAILED; }

sluice_proto_stream *sluice_proto_link_stream(const sluice_proto_link *l, uint64_t sid)
{
    return find(l, sid);
}

sluice_proto_stream *sluice_proto_link_next_stream(const sluice_proto_link *l,
                                                   const sluice_proto_stream *after)
{
    int32_t i = after ? after->next : l->head;
    return i == NIL ? NULL : &l->slots[i];
}

uint64_t sluice_proto_stream_id(const sluice_proto_stream *s) { return s->id; }
void *sluice_proto_stream_udata(const sluice_proto_stream *s) { return s->udata; }
void sluice_proto_stream_set_udata(sluice_proto_stream *s, void *udata) { s->udata = udata; }
uint32_t sluice_proto_stream_send_window(const sluice_proto_stream *s) { return s->send_win; }
uint32_t sluice_proto_stream_recv_window(const sluice_proto_stream *s) { return s->recv_win; }
sluice_req_side sluice_proto_stream_request_side(const sluice_proto_stream *s) { return s->req; }
sluice_resp_side sluice_proto_stream_response_side(const sluice_proto_stream *s) { return s->resp; }
uint32_t sluice_proto_stream_body_mode(const sluice_proto_stream *s) { return s->body_mode; }
uint64_t sluice_proto_stream_limit(const sluice_proto_stream *s) { return s->limit; }
uint64_t sluice_proto_stream_request_bytes(const sluice_proto_stream *s) { return s->req_bytes; }
uint64_t sluice_proto_stream_response_bytes(const sluice_proto_stream *s) { return s->resp_bytes; }
int sluice_proto_stream_websocket(const sluice_proto_stream *s) { return s->ws; }
bool sluice_proto_link_websocket(const sluice_proto_link *l) { return l->websocket; }
