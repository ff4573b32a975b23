/* sluice_worker: libuv glue around the sans-I/O codec (sluice_proto.h).
 *
 * Output path. Frames are appended to the *accumulating* batch: heads (and
 * small body chunks) are encoded into its sluice_buf, large body chunks are
 * referenced in place. At most one batch is in flight (one uv_write with one
 * uv_buf_t per segment); the other accumulates meanwhile, so everything
 * produced in one loop iteration leaves in a single writev, and the encoder
 * buffer is never reallocated under an in-flight write. Write callbacks and
 * stream releases ride on the batch that carries their last bytes and fire
 * when it completes, which is what keeps callers' buffers alive long enough
 * and keeps callbacks out of the caller's own stack frames.
 *
 * Stream lifetime. A stream is reference-counted: one reference while it is
 * open in the link, one per outstanding write, one taken by the batch holding
 * its closing frame (END/RESET), and temporary ones around callbacks. At zero
 * the app gets on_stream_closed and the stream is freed.
 *
 * Remote mode (PROTOCOL.md 10.6). The public worker then holds no link of
 * its own: it keeps a list of gateway addresses (struct raddr), each with at
 * most one link, which is a sluice_worker of the ordinary kind with `parent`
 * set (so everything above works per link unchanged). A link's end is
 * reported to the parent through `hook`; the parent reconnects, resolves,
 * and stops them all.
 */
#include "sluice_worker.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tls.h"

/* An async (libuv) worker must not cap concurrency below what peers allow:
 * 4096 streams; with a 32 KiB window the request-body credit a link can have
 * outstanding stays at 128 MiB (see README.md, "Concurrency and memory"). */
#define DEFAULT_MAX_STREAMS 4096u
#define DEFAULT_WINDOW (32u * 1024u)
#define DEFAULT_HANDSHAKE_MS 10000u
#define DEFAULT_SHUTDOWN_MS 30000u
#define DEFAULT_MAX_OUTPUT ((size_t)4 << 20)
/* Without ws_max_message of its own the library takes the gateway's limit
 * (the pool's ws_max_message, enforced before a byte of a larger message
 * arrives); this is only the backstop. */
#define WS_MAX_MESSAGE_LIMIT ((size_t)1 << 30)
/* Control frames (CREDIT, PONG, RESET, ERROR...) may exceed max_output by this
 * much, so backpressure on responses never blocks protocol housekeeping. */
#define CONTROL_RESERVE ((size_t)64 << 10)
#define READ_BUF_SIZE (64u * 1024u)
/* Body chunks up to this size are copied next to their frame head: cheaper
 * than one more iovec, and it keeps the segment count of a batch low. */
#define COPY_MAX 512u
/* Bound on flushing queued frames (final ENDs, ERROR) before closing. */
#define CLOSE_LINGER_MS 2000u
/* Keeps segment lengths within uv_buf_t's unsigned len. */
#define MAX_OUTPUT_LIMIT ((size_t)1 << 30)
/* lib and token together stay well inside a 16 KiB HELLO. */
#define HELLO_STR_MAX 4096u
/* After DRAIN the gateway cancels leftovers at timeout_ms; we give up a bit later. */
#define DRAIN_SLACK_MS 2000u
/* Remote mode (PROTOCOL.md 10.6): reconnect backoff and re-resolution. */
#define RETRY_MIN_MS 100u
#define RETRY_MAX_MS 2000u
#define DEFAULT_RESOLVE_MS 10000u
#define DEFAULT_PING_MS 5000u
/* Entries of a socket list (a bit each in raddr.entries). */
#define MAX_ENTRIES 64u
#define ALPN "sluice/1"

enum wstate {
    W_IDLE,       /* never connected, no handles */
    W_CONNECTING, /* resolving/connecting */
    W_HANDSHAKE,  /* HELLO sent, waiting for the gateway's */
    W_READY,
    W_CLOSING,    /* flushing queued frames, then shutdown + close */
    W_ABORTING,   /* handles closing */
    W_CLOSED,     /* handles closed; may connect again */
};

struct wreq {
    struct wreq *next;
    sluice_stream *s;
    const uint8_t *data;
    size_t len, off; /* off: bytes already framed */
    sluice_write_cb cb;
    void *ud;
    int status;      /* preset failure (cancel/link loss); 0: the batch's result */
    uint64_t seq;    /* batch carrying the last framed bytes (0: none) */
    int ws;          /* -1: BODY bytes; else a WebSocket message, its text bit */
    bool framed;     /* a message's first piece went out (an empty one too) */
};

struct seg {
    const uint8_t *ptr; /* caller's bytes, or NULL: heads[off .. off+len) */
    size_t off, len;
};

struct batch {
    uint64_t seq;
    sluice_buf heads;
    struct seg *segs;
    size_t nseg, capseg;
    uv_buf_t *bufs;
    size_t capbufs;
    struct wreq *done_head, *done_tail;
    sluice_stream *release; /* streams whose close reference this batch holds */
};

struct sluice_stream {
    sluice_worker *w;
    sluice_proto_stream *ps; /* NULL once closed */
    uint64_t id;
    void *udata;
    unsigned refs;
    uint32_t body_mode;
    bool visible;         /* the app saw on_request: it is owed on_stream_closed */
    bool reading;         /* auto credit */
    bool granted_initial; /* SLUICE_BODY_ON_CREDIT: initial window granted */
    bool req_ended;
    bool end_queued;      /* END encoded in end_frame, waiting behind writes */
    /* SLUICE_BODY_ON_CREDIT before the initial grant: the RESPONSE sits at
     * heads[head_mark] of the batch numbered head_seq (0: none), which has not
     * been written yet, so the first CREDIT (and a LIMIT) can still go in
     * front of it: the gateway then answers 100 Continue before the head. */
    uint64_t head_seq;
    size_t head_mark;
    uint64_t unacked;     /* consumed, not yet credited */
    uint64_t held;        /* delivered while paused, not yet reported consumed */
    size_t queued;        /* write bytes not yet framed */
    struct wreq *wq_head, *wq_tail;
    /* The frame that waits behind the queued writes and closes the stream:
     * END, or CLOSE (close_code) on a WebSocket. */
    uint32_t end_type;
    unsigned close_code;
    sluice_buf end_frame;
    /* WebSocket reassembly: a message that arrives in pieces. */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    bool in_msg, msg_text;
    /* Message bytes credited ahead (as pieces were copied): the next
     * consumption reported for them grants nothing twice. */
    uint64_t advance;
    /* Pieces of the message being reassembled not credited yet: while a
     * paused app still holds delivered messages, credit stops (the client
     * is slowed); once it holds none they are credited ahead. */
    uint64_t uncredited;
    /* The message on_message is delivering (for sluice_ws_take). */
    const uint8_t *cur_msg;
    size_t cur_len;
    sluice_stream *prev, *next; /* worker's list of live streams */
    sluice_stream *release_next;
};

struct sluice_worker {
    uv_loop_t *loop;
    sluice_worker_callbacks cb;
    void *udata;

    char *addr, *lib, *token;
    uint32_t max_streams, window, max_frame, handshake_ms, shutdown_ms;
    size_t max_output, ws_max_message;
    bool ws_limit; /* the app set ws_max_message: sent as LIMIT with each 101 */

    enum wstate state;
    int close_err;
    bool err_set;
    sluice_proto_link *link;
    sluice_proto_decoder *dec;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } conn;
    bool is_tcp;
    struct sockaddr_storage tcp_addr;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    uv_timer_t timer; /* handshake deadline, then close linger */
    uv_timer_t grace; /* drain / shutdown grace */
    uv_timer_t ping;  /* remote mode: liveness (10.6, 8) */
    uint32_t ping_ms; /* remote mode: PING interval (0: none) */
    uint64_t last_rx; /* uv_now() of the last frame received */
    uint64_t pings;
    uv_prepare_t prepare;
    uv_check_t check;
    int open_handles;
    bool flush_armed;
    bool writing;
    bool shutdown_started;
    bool output_blocked;
    struct batch out[2];
    int cur; /* index of the accumulating batch */
    uint64_t seq;
    uint8_t *rbuf;

    sluice_stream *streams;
    bool drained;       /* DRAIN received */
    bool shutting_down; /* sluice_worker_shutdown */
    bool grace_expired;
    uint64_t worker_id;
    char *pool;

    bool in_teardown, free_pending;
    bool silent; /* freed by the app while connected: no more callbacks */
    void (*close_cb)(sluice_worker *w);
    /* sluice_worker_main's hook, called after on_closed. */
    void (*hook)(sluice_worker *w, int err, void *hook_ud);
    void *hook_ud;

    /* Remote mode: the public worker has rm; each of its links has parent
     * (and ra, its address). */
    struct remote *rm;
    sluice_worker *parent;
    struct raddr *ra;
    bool ever_ready;      /* a link: its handshake completed */
    tls_ctx *tls_ctx;     /* a tls: link: the parent's context (not owned) */
    const char *tls_name; /* the name verified (the parent's string) */
    tls_session *tls;
    uint8_t *tbuf;        /* ciphertext of the batch in flight */
    size_t tcap;
    char why[TLS_ERR_LEN]; /* a link: why it failed, beyond close_err */
};

static void flush(sluice_worker *w);
static void link_fail(sluice_worker *w, int err);
static void close_graceful(sluice_worker *w, int err);
static void abort_link(sluice_worker *w, int err);
static void pump(sluice_stream *s);
static void on_prepare(uv_prepare_t *h);
static void on_check(uv_check_t *h);
static bool name_eq(sluice_bytes a, const char *b, size_t blen);
static bool over_capacity(const sluice_worker *w);
static void remote_link_ready(sluice_worker *l);
static int tls_send_out(sluice_worker *w);

/* The worker the app knows: a link's parent in remote mode. */
static sluice_worker *pub(sluice_worker *w) { return w->parent ? w->parent : w; }

/* ---- small helpers ------------------------------------------------------ */

static char *dup_str(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void set_err(sluice_worker *w, int err)
{
    /* The first error is the cause; later ones are consequences. */
    if (!w->err_set && err) {
        w->close_err = err;
        w->err_set = true;
    }
}

static struct batch *accum(sluice_worker *w) { return &w->out[w->cur]; }
static struct batch *inflight(sluice_worker *w) { return &w->out[w->cur ^ 1]; }

static uint32_t peer_max_frame(const sluice_worker *w)
{
    return w->link ? sluice_proto_link_peer_max_frame(w->link) : SLUICE_PROTO_DEFAULT_FRAME;
}

static size_t max_body_chunk(const sluice_worker *w)
{
    /* Payload overhead of BODY (or MESSAGE): the head minus the length prefix. */
    return SLUICE_PROTO_MESSAGE_MAX(peer_max_frame(w));
}

static void schedule_flush(sluice_worker *w)
{
    if (w->flush_armed || w->state < W_HANDSHAKE || w->state >= W_ABORTING)
        return;
    /* prepare runs before the loop blocks, check right after I/O callbacks:
     * whichever comes first sends what this iteration produced. */
    uv_prepare_start(&w->prepare, on_prepare);
    uv_check_start(&w->check, on_check);
    w->flush_armed = true;
}

/* ---- batches ------------------------------------------------------------ */

static int batch_reserve(struct batch *b, size_t extra)
{
    if (b->nseg + extra <= b->capseg)
        return 0;
    size_t cap = b->capseg ? b->capseg * 2 : 16;
    while (cap < b->nseg + extra)
        cap *= 2;
    struct seg *p = realloc(b->segs, cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    b->segs = p;
    b->capseg = cap;
    return 0;
}

/* Records heads[mark .. len) as the next segment (segments reserved). */
static void batch_add_heads(struct batch *b, size_t mark)
{
    size_t n = b->heads.len - mark;
    if (!n)
        return;
    if (b->nseg) {
        struct seg *last = &b->segs[b->nseg - 1];
        if (!last->ptr && last->off + last->len == mark) {
            last->len += n;
            return;
        }
    }
    b->segs[b->nseg++] = (struct seg){NULL, mark, n};
}

static void batch_add_ext(struct batch *b, const uint8_t *p, size_t n)
{
    b->segs[b->nseg++] = (struct seg){p, 0, n};
}

static void batch_push_done(struct batch *b, struct wreq *q)
{
    q->next = NULL;
    if (b->done_tail)
        b->done_tail->next = q;
    else
        b->done_head = q;
    b->done_tail = q;
}

static bool batch_idle(const struct batch *b)
{
    return !b->nseg && !b->done_head && !b->release;
}

static void stream_unref(sluice_stream *s);

/* Fires the batch's write callbacks and releases its streams. The batch is
 * emptied first: the callbacks may queue more output (into the other batch,
 * or into this one when it is the accumulating batch with nothing in it). */
static void batch_complete(sluice_worker *w, struct batch *b, int status)
{
    struct wreq *q = b->done_head;
    sluice_stream *rel = b->release;
    b->done_head = b->done_tail = NULL;
    b->release = NULL;
    b->nseg = 0;
    sluice_buf_reset(&b->heads);
    while (q) {
        struct wreq *next = q->next;
        sluice_stream *s = q->s;
        int st = q->status ? q->status : status;
        if (q->cb && !w->silent)
            q->cb(s, st, q->ud);
        free(q);
        stream_unref(s);
        q = next;
    }
    while (rel) {
        sluice_stream *next = rel->release_next;
        stream_unref(rel);
        rel = next;
    }
}

static void batch_free(struct batch *b)
{
    sluice_buf_close(&b->heads);
    free(b->segs);
    free(b->bufs);
    b->segs = NULL;
    b->bufs = NULL;
    b->nseg = b->capseg = b->capbufs = 0;
}

/* ---- streams ------------------------------------------------------------ */

static void stream_unref(sluice_stream *s)
{
    if (--s->refs)
        return;
    sluice_worker *w = s->w;
    if (s->visible && w->cb.on_stream_closed)
        w->cb.on_stream_closed(s, w->udata);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    sluice_buf_close(&s->end_frame);
    free(s->msg);
    free(s);
}

/* Moves queued writes onto a batch so their callbacks fire (with `status`)
 * only once no in-flight write still points into their buffers. */
static void fail_writes(sluice_stream *s, int status)
{
    sluice_worker *w = s->w;
    struct wreq *q = s->wq_head;
    s->wq_head = s->wq_tail = NULL;
    s->queued = 0;
    s->end_queued = false;
    while (q) {
        struct wreq *next = q->next;
        q->status = status;
        if (w->writing && q->seq == inflight(w)->seq)
            batch_push_done(inflight(w), q);
        else
            batch_push_done(accum(w), q);
        q = next;
    }
    schedule_flush(w);
}

/* The stream closed because of a frame we sent (END, RESPONSE without body,
 * RESET): its open reference passes to the batch carrying that frame, so
 * on_stream_closed comes once the frame is written. */
static void closed_by_us(sluice_worker *w, sluice_stream *s)
{
    s->ps = NULL;
    fail_writes(s, -ECANCELED);
    struct batch *b = accum(w);
    s->release_next = b->release;
    b->release = s;
}

/* ---- emitting frames ----------------------------------------------------- */

/* Encodes f into the accumulating batch, then applies it to the link (rolled
 * back if the link refuses). `app`: subject to max_output (responses), as
 * opposed to protocol housekeeping. */
static int emit(sluice_worker *w, const sluice_frame *f, bool app)
{
    if (w->state != W_READY && !(w->state == W_HANDSHAKE && f->type == SLUICE_FRAME_HELLO))
        return -EPIPE;
    struct batch *b = accum(w);
    int rc = batch_reserve(b, 1);
    if (rc < 0)
        return rc;
    size_t mark = b->heads.len;
    if (f->type == SLUICE_FRAME_HELLO)
        rc = sluice_proto_encode_hello(&b->heads, &f->u.hello);
    else
        rc = sluice_proto_encode(&b->heads, f, peer_max_frame(w));
    if (rc < 0)
        return rc;
    /* One frame of any size is admitted into an empty buffer, so a head near
     * max_frame never blocks forever. */
    if (app && mark > 0 && b->heads.len > w->max_output) {
        b->heads.len = mark;
        return -ENOBUFS;
    }
    sluice_link_event ev = {0};
    rc = sluice_proto_link_send(w->link, f, &ev);
    if (rc < 0) {
        b->heads.len = mark;
        return rc;
    }
    batch_add_heads(b, mark);
    if (ev.closed && ev.udata)
        closed_by_us(w, ev.udata);
    schedule_flush(w);
    return 0;
}

/* BODY (msg_flags < 0) or MESSAGE data, zero-copy above COPY_MAX. */
static int emit_body(sluice_worker *w, sluice_stream *s, const uint8_t *data, size_t n, int msg_flags)
{
    struct batch *b = accum(w);
    int rc = batch_reserve(b, 2);
    if (rc < 0)
        return rc;
    size_t mark = b->heads.len;
    bool copy = n <= COPY_MAX;
    if (msg_flags < 0)
        rc = copy ? sluice_proto_encode_body(&b->heads, s->id, data, n)
                  : sluice_proto_encode_body_head(&b->heads, s->id, n);
    else
        rc = copy ? sluice_proto_encode_message(&b->heads, s->id, (uint32_t)msg_flags, data, n)
                  : sluice_proto_encode_message_head(&b->heads, s->id, (uint32_t)msg_flags, n);
    if (rc < 0)
        return rc;
    if (mark > 0 && b->heads.len > w->max_output) {
        b->heads.len = mark;
        return -ENOBUFS;
    }
    sluice_frame f = {.type = SLUICE_FRAME_BODY, .stream_id = s->id};
    if (msg_flags >= 0) {
        f.type = SLUICE_FRAME_MESSAGE;
        f.u.message.flags = (uint32_t)msg_flags;
        f.u.message.data = (sluice_bytes){data, n};
    } else {
        f.u.body.ptr = data;
        f.u.body.len = n;
    }
    sluice_link_event ev = {0};
    rc = sluice_proto_link_send(w->link, &f, &ev);
    if (rc < 0) {
        b->heads.len = mark;
        return rc;
    }
    batch_add_heads(b, mark);
    if (!copy)
        batch_add_ext(b, data, n);
    schedule_flush(w);
    return 0;
}

/* The END (or CLOSE) that waited behind the stream's writes (encoded by
 * sluice_stream_end / sluice_ws_close). */
static int emit_queued_end(sluice_worker *w, sluice_stream *s)
{
    struct batch *b = accum(w);
    int rc = batch_reserve(b, 1);
    if (rc < 0)
        return rc;
    size_t mark = b->heads.len;
    rc = sluice_buf_append(&b->heads, s->end_frame.data, s->end_frame.len);
    if (rc < 0)
        return rc;
    if (mark > 0 && b->heads.len > w->max_output) {
        b->heads.len = mark;
        return -ENOBUFS;
    }
    /* The link only needs the state change (and a CLOSE's code); the rest
     * is already encoded. */
    sluice_frame f = {.type = s->end_type, .stream_id = s->id};
    f.u.close.code = s->close_code; /* END ignores it */
    sluice_link_event ev = {0};
    rc = sluice_proto_link_send(w->link, &f, &ev);
    if (rc < 0) {
        b->heads.len = mark;
        return rc;
    }
    batch_add_heads(b, mark);
    s->end_queued = false;
    sluice_buf_close(&s->end_frame);
    if (ev.closed && ev.udata)
        closed_by_us(w, ev.udata);
    schedule_flush(w);
    return 0;
}

/* Emits a control frame of stream s (the initial CREDIT, a LIMIT) in front
 * of its RESPONSE when that is still waiting in the accumulating batch (see
 * head_seq), otherwise at the end like emit(). The link sees the frames in
 * the order they were made; only the wire order changes, and no state of
 * the RESPONSE depends on them. */
static int emit_before_head(sluice_worker *w, sluice_stream *s, const sluice_frame *f)
{
    struct batch *b = accum(w);
    if (!s->head_seq || s->head_seq != b->seq || w->state != W_READY)
        return emit(w, f, false);
    size_t at = s->head_mark, end0 = b->heads.len;
    int rc = sluice_proto_encode(&b->heads, f, peer_max_frame(w));
    if (rc < 0)
        return rc;
    size_t n = b->heads.len - end0;
    uint8_t frame[64]; /* CREDIT and LIMIT encode to at most 24 bytes */
    if (n > sizeof frame) {
        b->heads.len = end0;
        return -EMSGSIZE;
    }
    sluice_link_event ev = {0};
    rc = sluice_proto_link_send(w->link, f, &ev);
    if (rc < 0) {
        b->heads.len = end0;
        return rc;
    }
    memcpy(frame, b->heads.data + end0, n);
    memmove(b->heads.data + at + n, b->heads.data + at, end0 - at);
    memcpy(b->heads.data + at, frame, n);
    /* The segment holding the head grows; the encoded bytes after it move. */
    for (size_t i = 0; i < b->nseg; i++) {
        struct seg *sg = &b->segs[i];
        if (sg->ptr)
            continue;
        if (sg->off > at)
            sg->off += n;
        else if (at < sg->off + sg->len)
            sg->len += n;
    }
    for (sluice_stream *o = w->streams; o; o = o->next)
        if (o->head_seq == b->seq && o->head_mark >= at)
            o->head_mark += n; /* s too: a later frame goes after this one */
    schedule_flush(w);
    return 0;
}

/* Frames as much of the stream's queued writes as its window allows. */
static void pump(sluice_stream *s)
{
    sluice_worker *w = s->w;
    while (s->ps && w->state == W_READY && s->wq_head) {
        struct wreq *q = s->wq_head;
        size_t left = q->len - q->off;
        /* An empty message is one empty MESSAGE (legal with no credit). */
        if (left || (q->ws >= 0 && !q->framed)) {
            size_t n = sluice_proto_stream_send_window(s->ps);
            if (!n && left)
                return;
            if (n > left)
                n = left;
            if (n > max_body_chunk(w))
                n = max_body_chunk(w);
            int flags = q->ws < 0 ? -1 : q->ws | (n < left ? SLUICE_MSG_MORE : 0);
            int rc = emit_body(w, s, q->data + q->off, n, flags);
            if (rc == -ENOBUFS) {
                w->output_blocked = true;
                return;
            }
            if (rc < 0) {
                link_fail(w, rc);
                return;
            }
            q->off += n;
            q->framed = true;
            s->queued -= n;
            q->seq = accum(w)->seq;
            if (q->off < q->len)
                continue;
        }
        s->wq_head = q->next;
        if (!s->wq_head)
            s->wq_tail = NULL;
        batch_push_done(accum(w), q);
        schedule_flush(w);
    }
    if (s->ps && w->state == W_READY && !s->wq_head && s->end_queued) {
        int rc = emit_queued_end(w, s);
        if (rc == -ENOBUFS)
            w->output_blocked = true;
        else if (rc < 0)
            link_fail(w, rc);
    }
}

static void pump_all(sluice_worker *w)
{
    for (sluice_stream *s = w->streams; s && w->state == W_READY; s = s->next)
        if (s->ps && (s->wq_head || s->end_queued))
            pump(s);
}

static void send_credit(sluice_stream *s, uint64_t n)
{
    sluice_frame f = {.type = SLUICE_FRAME_CREDIT, .stream_id = s->id};
    f.u.credit = n;
    int rc = emit(s->w, &f, false);
    if (rc < 0)
        link_fail(s->w, rc);
}

/* Batched grant: once half the window has been consumed. */
static void maybe_grant(sluice_stream *s)
{
    sluice_worker *w = s->w;
    if (!s->ps || s->req_ended || w->state != W_READY) {
        return;
    }
    uint64_t threshold = w->window / 2 ? w->window / 2 : 1;
    if (s->unacked >= threshold) {
        uint64_t n = s->unacked;
        s->unacked = 0;
        send_credit(s, n);
    }
}

/* n bytes were consumed; bytes credited ahead (a reassembled message's
 * pieces) are not credited again. */
static void count_consumed(sluice_stream *s, uint64_t n)
{
    uint64_t k = n < s->advance ? n : s->advance;
    s->advance -= k;
    s->unacked += n - k;
}

/* ---- flushing and closing ------------------------------------------------ */

static void maybe_finish_drain(sluice_worker *w)
{
    if (w->state != W_READY)
        return;
    /* A locally shutting-down worker still waits for DRAIN (RETIRE's rule:
     * until then REQUESTs may be in flight), bounded by its grace timer. */
    if (!(w->drained || w->grace_expired))
        return;
    if (sluice_proto_link_open_streams(w->link) == 0)
        close_graceful(w, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    sluice_worker *w = req->data;
    abort_link(w, 0);
}

static void on_write_done(uv_write_t *req, int status);

/* ---- TLS links ------------------------------------------------------------ */

struct raw_write {
    uv_write_t req;
    uint8_t data[];
};

static void on_raw_written(uv_write_t *req, int status)
{
    (void)status; /* a failure shows on the batch writes and reads too */
    free(req->data);
}

/* Writes out what the TLS session has to send outside a batch (handshake
 * flights, alerts, close_notify); libuv keeps the order of writes. */
static int tls_send_out(sluice_worker *w)
{
    size_t n = tls_session_pending_out(w->tls);
    if (!n)
        return 0;
    struct raw_write *r = malloc(sizeof *r + n);
    if (!r)
        return -ENOMEM;
    n = tls_session_pull(w->tls, r->data, n);
    r->req.data = r;
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)n);
    int rc = uv_write(&r->req, &w->conn.stream, &b, 1, on_raw_written);
    if (rc < 0)
        free(r);
    return rc;
}

static int tbuf_take(sluice_worker *w, size_t *len)
{
    size_t n = tls_session_pending_out(w->tls);
    if (*len + n > w->tcap) {
        size_t cap = w->tcap ? w->tcap : 16384;
        while (cap < *len + n)
            cap *= 2;
        uint8_t *p = realloc(w->tbuf, cap);
        if (!p)
            return -ENOMEM;
        w->tbuf = p;
        w->tcap = cap;
    }
    *len += tls_session_pull(w->tls, w->tbuf + *len, n);
    return 0;
}

/* Encrypts a batch into tbuf, and points bufs[0] at the ciphertext. */
static int tls_seal(sluice_worker *w, uv_buf_t *bufs, unsigned nbufs)
{
    size_t len = 0;
    int rc = tbuf_take(w, &len); /* whatever was waiting goes first */
    for (unsigned i = 0; i < nbufs && rc == 0; i++) {
        const char *p = bufs[i].base;
        size_t left = bufs[i].len;
        while (left && rc == 0) {
            ssize_t k = tls_session_write(w->tls, p, left);
            if (k > 0) {
                p += k;
                left -= (size_t)k;
            } else if (k != -EAGAIN || !tls_session_pending_out(w->tls)) {
                rc = k == -EAGAIN ? -EPROTO : (int)k;
                break;
            }
            rc = tbuf_take(w, &len);
        }
    }
    if (rc < 0)
        return rc;
    bufs[0] = uv_buf_init((char *)w->tbuf, (unsigned)len);
    return 0;
}

static void flush(sluice_worker *w)
{
    if (w->flush_armed) {
        uv_prepare_stop(&w->prepare);
        uv_check_stop(&w->check);
        w->flush_armed = false;
    }
    if (w->state < W_HANDSHAKE || w->state >= W_ABORTING)
        return;
    maybe_finish_drain(w);
    if (w->writing)
        return;
    struct batch *b = accum(w);
    /* Completions with nothing to write (zero-length writes, cancellations):
     * fire them here, outside any caller's stack frame. Bounded: a callback
     * that queues again only lands here on the next flush. */
    if (!b->nseg && (b->done_head || b->release)) {
        batch_complete(w, b, 0);
        if (w->state >= W_ABORTING)
            return;
        maybe_finish_drain(w);
    }
    if (!b->nseg) {
        if (!batch_idle(b)) {
            schedule_flush(w);
            return;
        }
        if (w->state == W_CLOSING && !w->shutdown_started) {
            w->shutdown_started = true;
            if (w->tls) { /* close_notify goes out ahead of the shutdown */
                (void)tls_session_close(w->tls);
                (void)tls_send_out(w);
            }
            w->shutdown_req.data = w;
            if (uv_shutdown(&w->shutdown_req, &w->conn.stream, on_shutdown) < 0)
                abort_link(w, 0);
        }
        return;
    }
    if (b->capbufs < b->nseg) {
        uv_buf_t *p = realloc(b->bufs, b->nseg * sizeof *p);
        if (!p) {
            abort_link(w, -ENOMEM);
            return;
        }
        b->bufs = p;
        b->capbufs = b->nseg;
    }
    for (size_t i = 0; i < b->nseg; i++) {
        const struct seg *sg = &b->segs[i];
        const uint8_t *p = sg->ptr ? sg->ptr : b->heads.data + sg->off;
        b->bufs[i] = uv_buf_init((char *)p, (unsigned)sg->len);
    }
    unsigned nbufs = (unsigned)b->nseg;
    if (w->tls) {
        int rc = tls_seal(w, b->bufs, nbufs);
        if (rc < 0) {
            batch_complete(w, b, rc);
            abort_link(w, rc);
            return;
        }
        nbufs = 1;
    }
    w->cur ^= 1;
    accum(w)->seq = ++w->seq;
    w->writing = true;
    w->write_req.data = w;
    int rc = uv_write(&w->write_req, &w->conn.stream, b->bufs, nbufs, on_write_done);
    if (rc < 0) {
        w->writing = false;
        batch_complete(w, b, rc);
        abort_link(w, rc);
    }
}

static void on_write_done(uv_write_t *req, int status)
{
    sluice_worker *w = req->data;
    w->writing = false;
    batch_complete(w, inflight(w), status);
    if (status < 0) {
        abort_link(w, status == UV_ECANCELED ? 0 : status);
        return;
    }
    if (w->state >= W_ABORTING)
        return;
    if (w->output_blocked) {
        w->output_blocked = false;
        pump_all(w);
    }
    flush(w);
}

static void on_prepare(uv_prepare_t *h) { flush(h->data); }
static void on_check(uv_check_t *h) { flush(h->data); }

/* The worker is closed (its one link, or every link in remote mode): tell
 * the application, the internal hook and close()'s caller, then free it if
 * sluice_worker_free was called meanwhile. */
static void report_closed(sluice_worker *w, int err)
{
    if (w->cb.on_closed)
        w->cb.on_closed(w, err, w->udata);
    if (w->hook)
        w->hook(w, err, w->hook_ud);
    void (*cb)(sluice_worker *) = w->close_cb;
    w->close_cb = NULL;
    if (cb)
        cb(w);
    w->in_teardown = false;
    if (w->free_pending)
        sluice_worker_free(w);
}

static void teardown(sluice_worker *w)
{
    w->in_teardown = true;
    /* Streams still open lose their link. */
    for (sluice_stream *s = w->streams, *next; s; s = next) {
        next = s->next;
        if (!s->ps)
            continue;
        s->ps = NULL;
        if (s->visible && w->cb.on_cancel)
            w->cb.on_cancel(s, SLUICE_WORKER_CANCEL_LINK, w->udata);
        fail_writes(s, -EPIPE);
        /* `next` stays valid: only s can be freed here (others hold a ref). */
        stream_unref(s);
    }
    /* The in-flight write already completed (uv_close cancels it before the
     * close callbacks); what was still accumulating never left. */
    batch_complete(w, &w->out[0], -EPIPE);
    batch_complete(w, &w->out[1], -EPIPE);
    batch_free(&w->out[0]);
    batch_free(&w->out[1]);
    sluice_proto_link_free(w->link);
    sluice_proto_decoder_free(w->dec);
    w->link = NULL;
    w->dec = NULL;
    tls_session_free(w->tls);
    w->tls = NULL;
    free(w->tbuf);
    w->tbuf = NULL;
    w->tcap = 0;
    w->state = W_CLOSED;
    int err = w->close_err;
    report_closed(w, err);
}

static void on_handle_closed(uv_handle_t *h)
{
    sluice_worker *w = h->data;
    if (--w->open_handles == 0)
        teardown(w);
}

static void abort_link(sluice_worker *w, int err)
{
    if (w->state == W_IDLE || w->state >= W_ABORTING)
        return;
    set_err(w, err);
    w->state = W_ABORTING;
    w->flush_armed = false;
    uv_handle_t *hs[] = {&w->conn.handle, (uv_handle_t *)&w->timer, (uv_handle_t *)&w->grace,
                         (uv_handle_t *)&w->prepare, (uv_handle_t *)&w->check,
                         (uv_handle_t *)&w->ping};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        uv_close(hs[i], on_handle_closed);
}

static void on_timer(uv_timer_t *t);
static void on_grace(uv_timer_t *t);

/* Stop reading, flush what is queued (bounded by CLOSE_LINGER_MS), shut the
 * write side down, then close. */
static void close_graceful(sluice_worker *w, int err)
{
    if (w->state >= W_CLOSING)
        return;
    if (w->state < W_HANDSHAKE) {
        abort_link(w, err);
        return;
    }
    set_err(w, err);
    w->state = W_CLOSING;
    uv_read_stop(&w->conn.stream);
    uv_timer_stop(&w->grace);
    uv_timer_start(&w->timer, on_timer, CLOSE_LINGER_MS, 0);
    schedule_flush(w);
}

/* A link error found here: tell the gateway with ERROR, then close. */
static void link_fail(sluice_worker *w, int err)
{
    if (w->state == W_IDLE || w->state >= W_CLOSING)
        return;
    if (w->state == W_CONNECTING) {
        abort_link(w, err);
        return;
    }
    if (w->link)
        sluice_proto_link_fail(w->link);
    /* ERROR bypasses the link (which refuses to send once FAILED). */
    struct batch *b = accum(w);
    if (batch_reserve(b, 1) == 0) {
        size_t mark = b->heads.len;
        if (sluice_proto_encode_error(&b->heads, err, sluice_proto_strerror(err)) == 0)
            batch_add_heads(b, mark);
    }
    close_graceful(w, err);
}

static void on_timer(uv_timer_t *t)
{
    sluice_worker *w = t->data;
    switch (w->state) {
    case W_CONNECTING:
        abort_link(w, SLUICE_PROTO_E_TIMEOUT);
        break;
    case W_HANDSHAKE:
        link_fail(w, SLUICE_PROTO_E_TIMEOUT);
        break;
    case W_CLOSING:
        abort_link(w, 0);
        break;
    default:
        break;
    }
}

/* Arms the grace timer unless an earlier deadline is already set. */
static void arm_grace(sluice_worker *w, uint64_t ms)
{
    if (uv_is_active((uv_handle_t *)&w->grace) && uv_timer_get_due_in(&w->grace) <= ms)
        return;
    uv_timer_start(&w->grace, on_grace, ms, 0);
}

static void on_grace(uv_timer_t *t)
{
    sluice_worker *w = t->data;
    if (w->state != W_READY)
        return;
    w->grace_expired = true;
    /* Whatever is still open is cancelled by the close (on_cancel LINK). */
    close_graceful(w, sluice_proto_link_open_streams(w->link) ? -ETIMEDOUT : 0);
}

/* ---- receiving ---------------------------------------------------------- */

/* Remote mode: a PING every interval; a link silent for three is dead (a
 * gateway host can vanish without a close). */
static void on_ping(uv_timer_t *t)
{
    sluice_worker *w = t->data;
    if (w->state != W_READY)
        return;
    if (uv_now(w->loop) - w->last_rx >= 3 * (uint64_t)w->ping_ms) {
        snprintf(w->why, sizeof w->why, "no frame for %llu ms", 3 * (unsigned long long)w->ping_ms);
        abort_link(w, SLUICE_PROTO_E_TIMEOUT);
        return;
    }
    sluice_frame p = {.type = SLUICE_FRAME_PING};
    p.u.opaque = ++w->pings;
    int rc = emit(w, &p, false);
    if (rc < 0)
        link_fail(w, rc);
}

static void on_gateway_hello(sluice_worker *w, const sluice_hello *h)
{
    w->state = W_READY;
    uv_timer_stop(&w->timer);
    sluice_proto_decoder_set_max_frame(w->dec, w->max_frame);
    /* Room for one largest head plus the response bound. */
    size_t cap = w->max_output + (size_t)peer_max_frame(w) + CONTROL_RESERVE;
    w->out[0].heads.max = w->out[1].heads.max = cap;
    w->worker_id = (h->has & SLUICE_HELLO_HAS_WORKER_ID) ? h->worker_id : 0;
    free(w->pool);
    w->pool = NULL;
    if ((h->has & SLUICE_HELLO_HAS_POOL) && h->pool.len) {
        w->pool = malloc(h->pool.len + 1);
        if (w->pool) {
            memcpy(w->pool, h->pool.ptr, h->pool.len);
            w->pool[h->pool.len] = '\0';
        }
    }
    if (w->parent) {
        w->ever_ready = true;
        if (w->ping_ms)
            uv_timer_start(&w->ping, on_ping, w->ping_ms, w->ping_ms);
        remote_link_ready(w);
    }
    if (w->cb.on_ready)
        w->cb.on_ready(pub(w), h, w->udata);
}

static int do_read_start(sluice_stream *s);

static void on_request_frame(sluice_worker *w, const sluice_frame *f, sluice_stream *s,
                             const sluice_link_event *ev)
{
    if (!s) {
        /* Shutting down, or out of memory: refuse, the gateway may retry. */
        sluice_frame r = {.type = SLUICE_FRAME_RESET, .stream_id = f->stream_id};
        r.u.code.code = w->shutting_down ? SLUICE_RESET_REFUSED : SLUICE_RESET_OVERLOADED;
        int rc = emit(w, &r, false);
        if (rc < 0)
            link_fail(w, rc);
        return;
    }
    const sluice_request *rq = &f->u.request;
    s->w = w;
    s->ps = ev->stream;
    s->id = f->stream_id;
    s->refs = 1;
    s->visible = true;
    s->reading = true;
    s->body_mode = rq->body;
    s->req_ended = rq->body == SLUICE_BODY_NONE;
    /* Modes 0 and 1: the window was granted by HELLO already. */
    s->granted_initial = rq->body != SLUICE_BODY_ON_CREDIT;
    sluice_buf_init(&s->end_frame, (size_t)peer_max_frame(w) + 4);
    sluice_proto_stream_set_udata(ev->stream, s);
    s->next = w->streams;
    if (w->streams)
        w->streams->prev = s;
    w->streams = s;

    sluice_req req = {
        .method = rq->method,
        .target = rq->target,
        .version = rq->version,
        .headers = rq->headers,
        .client = rq->client,
        .server = rq->server,
        .scheme = rq->scheme,
        .body_mode = rq->body,
    };
    s->refs++;
    if (rq->body == SLUICE_BODY_WEBSOCKET) /* only on a link that announced it */
        w->cb.on_websocket(s, &req, w->udata);
    else
        w->cb.on_request(s, &req, w->udata);
    /* Reading (the default) grants the initial window of a held body now --
     * in front of a RESPONSE sent from on_request, so the gateway can still
     * answer 100 Continue. Not if the response is already complete (or its
     * END queued): that handler answered without reading. */
    if (s->ps && s->reading && !s->granted_initial && !s->end_queued)
        do_read_start(s);
    stream_unref(s);
}

/* Our own CLOSE (1009 for a message too big): sent at once, ahead of any
 * queued message, which then fails with -ECANCELED. */
static void ws_close_now(sluice_worker *w, sluice_stream *s, unsigned code, const char *reason)
{
    sluice_frame c = {.type = SLUICE_FRAME_CLOSE, .stream_id = s->id};
    c.u.close.code = code;
    c.u.close.reason = sluice_bytes_str(reason);
    c.u.close.has_reason = true;
    int rc = emit(w, &c, false);
    if (rc < 0) {
        link_fail(w, rc);
        return;
    }
    if (w->cb.on_ws_close)
        w->cb.on_ws_close(s, code, (const uint8_t *)reason, strlen(reason), w->udata);
}

/* Credits `n` message bytes the app has consumed (or, paused, holds them). */
static void ws_consumed(sluice_stream *s, size_t n)
{
    if (!s->ps)
        return;
    if (s->reading)
        count_consumed(s, n);
    else
        s->held += n;
    maybe_grant(s);
}

/* Credit the pieces of the message in progress ahead of its delivery. */
static void credit_pieces(sluice_stream *s)
{
    if (!s->uncredited || (!s->reading && s->held))
        return;
    s->unacked += s->uncredited;
    s->advance += s->uncredited;
    s->uncredited = 0;
    maybe_grant(s);
}

static void deliver_message(sluice_worker *w, sluice_stream *s, const uint8_t *p, size_t n, bool text)
{
    s->cur_msg = p;
    s->cur_len = n;
    if (w->cb.on_message)
        w->cb.on_message(s, p, n, text, w->udata);
    s->cur_msg = NULL;
    ws_consumed(s, n);
}

static void on_message_frame(sluice_worker *w, sluice_stream *s, uint32_t flags, sluice_bytes d)
{
    if (flags == SLUICE_MSG_PONG) {
        s->refs++;
        if (w->cb.on_ws_pong)
            w->cb.on_ws_pong(s, d.ptr, d.len, w->udata);
        stream_unref(s);
        return;
    }
    bool text = flags & SLUICE_MSG_TEXT, more = flags & SLUICE_MSG_MORE;
    if (!s->in_msg && !more) {
        /* Whole in one piece: straight from the read buffer, no copy. */
        s->refs++;
        deliver_message(w, s, d.ptr, d.len, text);
        stream_unref(s);
        return;
    }
    if (d.len > w->ws_max_message - s->msg_len) {
        s->in_msg = false;
        s->msg_len = 0;
        s->uncredited = 0;
        s->refs++;
        ws_close_now(w, s, 1009, "message too big");
        stream_unref(s);
        return;
    }
    if (s->msg_len + d.len > s->msg_cap) {
        size_t cap = s->msg_cap ? s->msg_cap : 4096;
        while (cap < s->msg_len + d.len)
            cap *= 2;
        if (cap > w->ws_max_message)
            cap = w->ws_max_message;
        uint8_t *p = realloc(s->msg, cap);
        if (!p) {
            link_fail(w, SLUICE_PROTO_E_INTERNAL);
            return;
        }
        s->msg = p;
        s->msg_cap = cap;
    }
    if (d.len)
        memcpy(s->msg + s->msg_len, d.ptr, d.len);
    s->msg_len += d.len;
    if (!s->in_msg) {
        s->in_msg = true;
        s->msg_text = text;
    }
    /* Copied into our bounded buffer: credit it now, or a message larger
     * than the window could never complete -- unless the app, paused,
     * still holds messages: then nothing more is credited until it
     * reports them consumed (one message plus the window at most). */
    s->uncredited += d.len;
    credit_pieces(s);
    if (more)
        return;
    size_t n = s->msg_len;
    s->uncredited = 0; /* credited when the message is consumed */
    s->in_msg = false;
    s->msg_len = 0;
    s->refs++;
    deliver_message(w, s, s->msg, n, s->msg_text);
    /* Keep a modest buffer for the next message; drop a large one. */
    if (s->msg_cap > 65536) {
        free(s->msg);
        s->msg = NULL;
        s->msg_cap = 0;
    }
    stream_unref(s);
}

static void handle_frame(sluice_worker *w, const sluice_frame *f)
{
    w->last_rx = uv_now(w->loop);
    if (f->type == SLUICE_FRAME_ERROR) {
        /* The gateway gave up on the link: send nothing more. */
        sluice_link_event ev = {0};
        (void)sluice_proto_link_recv(w->link, f, &ev);
        abort_link(w, sluice_proto_err_from_code(f->u.code.code));
        return;
    }
    sluice_stream *fresh = NULL;
    if (f->type == SLUICE_FRAME_REQUEST && !w->shutting_down && !over_capacity(w))
        fresh = calloc(1, sizeof *fresh);
    sluice_link_event ev = {0};
    int rc = sluice_proto_link_recv(w->link, f, &ev);
    if (rc < 0) {
        free(fresh);
        link_fail(w, rc);
        return;
    }
    if (ev.ignored) {
        free(fresh);
        return;
    }
    sluice_stream *s = ev.udata;
    switch (f->type) {
    case SLUICE_FRAME_HELLO:
        on_gateway_hello(w, &f->u.hello);
        break;
    case SLUICE_FRAME_REQUEST:
        if (ev.opened)
            on_request_frame(w, f, fresh, &ev);
        else
            free(fresh);
        break;
    case SLUICE_FRAME_BODY:
        if (!s)
            break;
        s->refs++;
        if (f->u.body.len && w->cb.on_body)
            w->cb.on_body(s, f->u.body.ptr, f->u.body.len, w->udata);
        if (s->ps && !s->req_ended) {
            if (s->reading)
                s->unacked += f->u.body.len;
            else
                s->held += f->u.body.len;
            maybe_grant(s);
        }
        stream_unref(s);
        break;
    case SLUICE_FRAME_END:
        if (!s)
            break;
        s->req_ended = true;
        s->unacked = s->held = 0;
        s->refs++;
        if (w->cb.on_end)
            w->cb.on_end(s, &f->u.trailers, w->udata);
        stream_unref(s);
        break;
    case SLUICE_FRAME_CREDIT:
        if (s)
            pump(s);
        break;
    case SLUICE_FRAME_MESSAGE:
        if (s)
            on_message_frame(w, s, f->u.message.flags, f->u.message.data);
        break;
    case SLUICE_FRAME_CLOSE:
        if (!s || !ev.closed)
            break;
        s->ps = NULL;
        fail_writes(s, -ECANCELED);
        s->refs++;
        if (w->cb.on_ws_close)
            w->cb.on_ws_close(s, (unsigned)f->u.close.code, f->u.close.reason.ptr, f->u.close.reason.len,
                              w->udata);
        stream_unref(s); /* the open reference */
        stream_unref(s);
        break;
    case SLUICE_FRAME_CANCEL:
        if (!s || !ev.closed)
            break;
        s->ps = NULL;
        fail_writes(s, -ECANCELED);
        s->refs++;
        if (w->cb.on_cancel)
            w->cb.on_cancel(s, f->u.code.code, w->udata);
        stream_unref(s); /* the open reference */
        stream_unref(s);
        break;
    case SLUICE_FRAME_PING: {
        sluice_frame p = {.type = SLUICE_FRAME_PONG};
        p.u.opaque = f->u.opaque;
        rc = emit(w, &p, false);
        if (rc < 0)
            link_fail(w, rc);
        break;
    }
    case SLUICE_FRAME_DRAIN:
        w->drained = true;
        if (f->u.timeout_ms && f->u.timeout_ms < UINT64_MAX - DRAIN_SLACK_MS)
            arm_grace(w, f->u.timeout_ms + DRAIN_SLACK_MS);
        if (w->cb.on_drain)
            w->cb.on_drain(pub(w), f->u.timeout_ms, w->udata);
        break;
    default: /* PONG: only its arrival counts (last_rx); others were rejected by the link. */
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    sluice_worker *w = h->data;
    *buf = uv_buf_init((char *)w->rbuf, READ_BUF_SIZE);
}

static void on_eof(sluice_worker *w)
{
    int rc = sluice_proto_decoder_finish(w->dec);
    if (rc < 0)
        link_fail(w, rc);
    else
        abort_link(w, w->drained || w->shutting_down ? 0 : -ECONNRESET);
}

static void send_hello(sluice_worker *w);

/* A TLS session failed: log-worthy reason kept for the parent. */
static void tls_failed(sluice_worker *w)
{
    const char *why = NULL;
    tls_session_error(w->tls, &why);
    if (!why)
        why = "failed";
    snprintf(w->why, sizeof w->why, "%s%s", strncmp(why, "TLS", 3) ? "TLS " : "", why);
    (void)tls_send_out(w); /* an alert, best effort */
    abort_link(w, -EPROTO);
}

static void process(sluice_worker *w, const uint8_t *p, size_t left);

/* Ciphertext in: the handshake advances, then the plaintext is processed
 * in rbuf-sized pieces (the decoder keeps what a piece leaves incomplete). */
static void on_tls_read(sluice_worker *w, const uint8_t *data, size_t n)
{
    int rc = tls_session_feed(w->tls, data, n);
    if (rc < 0 || tls_send_out(w) < 0) {
        tls_failed(w);
        return;
    }
    if (w->state == W_CONNECTING) {
        if (!tls_session_handshake_done(w->tls))
            return;
        send_hello(w);
    }
    while (w->state == W_HANDSHAKE || w->state == W_READY) {
        ssize_t k = tls_session_read(w->tls, w->rbuf, READ_BUF_SIZE);
        if (k == -EAGAIN)
            break;
        if (k < 0) {
            tls_failed(w);
            return;
        }
        if (k == 0) { /* close_notify */
            on_eof(w);
            return;
        }
        process(w, w->rbuf, (size_t)k);
    }
    flush(w);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sluice_worker *w = st->data;
    if (nread == UV_EOF) {
        if (w->tls && w->state == W_CONNECTING)
            snprintf(w->why, sizeof w->why, "closed during the TLS handshake");
        on_eof(w);
        return;
    }
    if (nread < 0) {
        abort_link(w, (int)nread);
        return;
    }
    if (w->tls) {
        on_tls_read(w, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    process(w, (const uint8_t *)buf->base, (size_t)nread);
    flush(w);
}

static void process(sluice_worker *w, const uint8_t *p, size_t left)
{
    /* Frames are handled one by one; views into rbuf stay valid meanwhile,
     * and a callback that closes the link stops the loop. */
    while (left && (w->state == W_HANDSHAKE || w->state == W_READY)) {
        size_t used = 0;
        sluice_frame f;
        int rc = sluice_proto_decoder_feed(w->dec, p, left, &used, &f);
        p += used;
        left -= used;
        if (rc < 0) {
            link_fail(w, rc);
            break;
        }
        if (rc == 0)
            break;
        handle_frame(w, &f);
    }
}

/* ---- connecting ----------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    sluice_worker *w = req->data;
    if (w->state != W_CONNECTING)
        return;
    if (status < 0) {
        abort_link(w, status);
        return;
    }
    if (w->is_tcp)
        uv_tcp_nodelay(&w->conn.tcp, 1);
    if (w->tls_ctx) { /* TLS first; HELLO once its handshake is done */
        int rc = tls_session_new_client(&w->tls, w->tls_ctx, w->tls_name);
        if (rc == 0)
            rc = uv_read_start(&w->conn.stream, on_alloc, on_read);
        if (rc == 0)
            rc = tls_send_out(w);
        if (rc < 0)
            abort_link(w, rc);
        return;
    }
    int rc = uv_read_start(&w->conn.stream, on_alloc, on_read);
    if (rc < 0) {
        abort_link(w, rc);
        return;
    }
    send_hello(w);
}

static void send_hello(sluice_worker *w)
{
    w->state = W_HANDSHAKE;
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    sluice_hello *h = &f.u.hello;
    h->version = SLUICE_PROTO_VERSION;
    h->has = SLUICE_HELLO_HAS_PID | SLUICE_HELLO_HAS_LIB | SLUICE_HELLO_HAS_MAX_STREAMS |
             SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_MAX_FRAME;
    h->pid = (uint64_t)getpid();
    h->lib = sluice_bytes_str(w->lib);
    h->max_streams = w->max_streams;
    h->window = w->window;
    h->max_frame = w->max_frame;
    if (w->token) {
        h->has |= SLUICE_HELLO_HAS_TOKEN;
        h->token = sluice_bytes_str(w->token);
    }
    if (w->cb.on_websocket) { /* opting in is registering the handler */
        h->has |= SLUICE_HELLO_HAS_WEBSOCKET;
        h->websocket = true;
    }
    int rc = emit(w, &f, false);
    if (rc < 0) {
        abort_link(w, rc);
        return;
    }
    flush(w);
}

/* "tcp:HOST:PORT" / "tcp:[V6]:PORT" -> sockaddr. */
static int resolve_tcp(const char *spec, struct sockaddr_storage *out)
{
    char host[256];
    const char *port;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host)
            return -EINVAL;
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        host[end - spec - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host || colon == spec)
            return -EINVAL;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    char *end;
    long pn = strtol(port, &end, 10);
    if (!*port || *end || pn <= 0 || pn > 65535)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, (int)pn, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)pn, (struct sockaddr_in6 *)out) == 0)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uv_getaddrinfo_t req;
    /* Synchronous (no callback): a worker resolves its gateway once, at start. */
    int rc = uv_getaddrinfo(NULL, &req, NULL, host, port, &hints);
    if (rc < 0)
        return rc;
    if (!req.addrinfo) {
        return -EHOSTUNREACH;
    }
    memcpy(out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static int remote_start(sluice_worker *w);

int sluice_worker_connect(sluice_worker *w)
{
    if (w->rm)
        return remote_start(w);
    if (w->state != W_IDLE && w->state != W_CLOSED)
        return -EALREADY;
    const char *path = w->addr;
    bool tcp = strncmp(path, "tcp:", 4) == 0;
    if (tcp) {
        int rc = resolve_tcp(path + 4, &w->tcp_addr);
        if (rc < 0)
            return rc;
    } else {
        if (strncmp(path, "unix:", 5) == 0)
            path += 5;
        if (!*path)
            return -EINVAL;
        /* libuv would silently truncate a long path. */
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return -ENAMETOOLONG;
    }
    sluice_link_config lc = {.max_streams = w->max_streams};
    int rc = sluice_proto_link_new(&w->link, SLUICE_ROLE_WORKER, &lc);
    if (rc < 0)
        return rc;
    /* Until the gateway's HELLO arrives, only a HELLO-sized frame is legal. */
    rc = sluice_proto_decoder_new(&w->dec, SLUICE_PROTO_HELLO_MAX, SLUICE_PROTO_MAX_HEADERS);
    if (rc < 0) {
        sluice_proto_link_free(w->link);
        w->link = NULL;
        return rc;
    }
    for (int i = 0; i < 2; i++) {
        sluice_buf_init(&w->out[i].heads, w->max_output + SLUICE_PROTO_HELLO_MAX + CONTROL_RESERVE);
        w->out[i].seq = 0;
    }
    w->cur = 0;
    w->out[0].seq = ++w->seq;
    w->is_tcp = tcp;
    w->err_set = false;
    w->close_err = 0;
    w->writing = w->flush_armed = w->shutdown_started = w->output_blocked = false;
    w->drained = w->shutting_down = w->grace_expired = false;
    w->worker_id = 0;
    free(w->pool);
    w->pool = NULL;
    w->why[0] = '\0';

    /* From here on every error goes through abort_link -> on_closed. */
    if (tcp)
        uv_tcp_init(w->loop, &w->conn.tcp);
    else
        uv_pipe_init(w->loop, &w->conn.pipe, 0);
    uv_timer_init(w->loop, &w->timer);
    uv_timer_init(w->loop, &w->grace);
    uv_timer_init(w->loop, &w->ping);
    uv_prepare_init(w->loop, &w->prepare);
    uv_check_init(w->loop, &w->check);
    w->conn.handle.data = w->timer.data = w->grace.data = w->prepare.data = w->check.data = w;
    w->ping.data = w;
    /* The flush hooks must not keep the loop alive on their own. */
    uv_unref((uv_handle_t *)&w->prepare);
    uv_unref((uv_handle_t *)&w->check);
    w->open_handles = 6;
    w->state = W_CONNECTING;
    uv_timer_start(&w->timer, on_timer, w->handshake_ms, 0);
    w->connect_req.data = w;
    if (tcp) {
        rc = uv_tcp_connect(&w->connect_req, &w->conn.tcp, (const struct sockaddr *)&w->tcp_addr,
                            on_connect);
        if (rc < 0)
            abort_link(w, rc);
    } else {
        uv_pipe_connect(&w->connect_req, &w->conn.pipe, path, on_connect);
    }
    return 0;
}

/* ---- remote mode (PROTOCOL.md 10.6) ------------------------------------------ */

enum akind { A_UNIX, A_TCP, A_TLS };

/* One entry of the socket list. */
struct rentry {
    sluice_worker *w;
    unsigned idx;
    enum akind kind;
    char *host;            /* A_UNIX: the path; else HOST, without brackets */
    char port[8];
    bool name;             /* HOST is a name: resolved, again every interval */
    bool resolve_failed;   /* logged once per failing streak */
    uv_getaddrinfo_t *gai; /* a resolution in flight */
};

/* One gateway address: at most one link at a time. */
struct raddr {
    struct raddr *next;
    sluice_worker *w;
    char key[160];      /* "unix:PATH", "tcp:1.2.3.4:80", "tls:[::1]:443": also the log name */
    enum akind kind;
    const char *name;   /* A_TLS: the name the certificate is checked against */
    uint64_t entries;   /* bit i: entry i's last answer holds it; 0: vanished */
    sluice_worker *link;
    uv_timer_t timer;   /* reconnect backoff */
    uint32_t delay;
    bool failing;       /* a failed attempt was logged since it last attached */
};

struct remote {
    struct rentry *e;
    size_t ne;
    struct raddr *addrs;
    uv_timer_t resolve;
    uint32_t resolve_ms, ping_ms;
    int handles;   /* timers not closed yet */
    int resolving; /* uv_getaddrinfo requests in flight */
    bool running, stopping, finishing, auth;
    char *tls_ca, *tls_cert, *tls_key, *tls_name;
    tls_ctx *tls;
    uint64_t rng;
};

static sluice_worker_resolver resolver_hook;

void sluice_worker_set_resolver_for_tests(sluice_worker_resolver fn) { resolver_hook = fn; }

__attribute__((format(printf, 1, 2))) static void rlog(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sluice worker [pid %d]: %s\n", (int)getpid(), line);
}

/* Remote mode: several entries, or any tcp:/tls: one. */
static bool is_remote(const char *addr, const char **one, size_t *one_len)
{
    size_t n = 0;
    bool net = false;
    for (const char *p = addr; *p;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a < b) {
            n++;
            *one = a;
            *one_len = (size_t)(b - a);
            if (b - a >= 4 && (!strncmp(a, "tcp:", 4) || !strncmp(a, "tls:", 4)))
                net = true;
        }
        p = comma ? comma + 1 : end;
    }
    return n > 1 || net;
}

static uint32_t rng_next(struct remote *rm)
{
    uint64_t x = rm->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rm->rng = x;
    return (uint32_t)(x >> 32);
}

static void key_of(char *out, size_t cap, enum akind kind, const struct sockaddr_storage *sa)
{
    char ip[INET6_ADDRSTRLEN] = "";
    const char *scheme = kind == A_TLS ? "tls" : "tcp";
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, cap, "%s:[%s]:%u", scheme, ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, cap, "%s:%s:%u", scheme, ip, ntohs(a->sin_port));
    }
}

static void set_port(struct sockaddr_storage *sa, const char *port)
{
    uint16_t p = htons((uint16_t)atoi(port));
    if (sa->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = p;
    else
        ((struct sockaddr_in *)sa)->sin_port = p;
}

static int parse_entry(struct rentry *e, const char *p, size_t n)
{
    char buf[512];
    if (n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (strncmp(buf, "tcp:", 4) && strncmp(buf, "tls:", 4)) {
        const char *path = strncmp(buf, "unix:", 5) ? buf : buf + 5;
        if (!*path)
            return -EINVAL;
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return -ENAMETOOLONG;
        e->kind = A_UNIX;
        e->host = dup_str(path);
        return e->host ? 0 : -ENOMEM;
    }
    e->kind = buf[1] == 'c' ? A_TCP : A_TLS;
    char *spec = buf + 4, *host, *port;
    struct sockaddr_storage sa;
    if (spec[0] == '[') {
        char *end = strchr(spec, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        *end = '\0';
        host = spec + 1;
        port = end + 2;
        if (uv_ip6_addr(host, 0, (struct sockaddr_in6 *)&sa) != 0)
            return -EINVAL;
    } else {
        char *colon = strrchr(spec, ':');
        if (!colon || colon == spec)
            return -EINVAL;
        *colon = '\0';
        host = spec;
        port = colon + 1;
        if (strchr(host, ':')) /* an IPv6 address needs its brackets */
            return -EINVAL;
    }
    char *end;
    long pn = strtol(port, &end, 10);
    if (!*port || *end || pn <= 0 || pn > 65535 || strlen(host) > 255)
        return -EINVAL;
    snprintf(e->port, sizeof e->port, "%ld", pn);
    e->name = uv_ip4_addr(host, 0, (struct sockaddr_in *)&sa) != 0 &&
              uv_ip6_addr(host, 0, (struct sockaddr_in6 *)&sa) != 0;
    e->host = dup_str(host);
    return e->host ? 0 : -ENOMEM;
}

static void free_entries(struct remote *rm)
{
    for (size_t i = 0; i < rm->ne; i++)
        free(rm->e[i].host);
    free(rm->e);
    rm->e = NULL;
    rm->ne = 0;
}

static int parse_entries(sluice_worker *w)
{
    struct remote *rm = w->rm;
    free_entries(rm);
    for (const char *p = w->addr; *p;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *a = p, *b = end;
        p = comma ? comma + 1 : end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a == b)
            continue;
        if (rm->ne == MAX_ENTRIES)
            return -E2BIG;
        struct rentry *ne = realloc(rm->e, (rm->ne + 1) * sizeof *ne);
        if (!ne)
            return -ENOMEM;
        rm->e = ne;
        struct rentry *e = &rm->e[rm->ne];
        memset(e, 0, sizeof *e);
        e->w = w;
        e->idx = (unsigned)rm->ne;
        int rc = parse_entry(e, a, (size_t)(b - a));
        if (rc < 0) {
            free(e->host);
            return rc;
        }
        rm->ne++;
    }
    return rm->ne ? 0 : -EDESTADDRREQ;
}

static void remote_handle_gone(sluice_worker *w);
static void remote_maybe_finish(sluice_worker *w);
static void link_open(struct raddr *ra);
static void on_retry(uv_timer_t *t);

/* The address `key` is in entry e's answer: a new raddr (to open), or NULL
 * when it was known already (or on ENOMEM, logged). */
static struct raddr *add_addr(sluice_worker *w, const struct rentry *e, const char *key)
{
    struct remote *rm = w->rm;
    uint64_t bit = (uint64_t)1 << e->idx;
    struct raddr **tail = &rm->addrs;
    for (struct raddr *ra = rm->addrs; ra; ra = ra->next) {
        if (!strcmp(ra->key, key)) {
            ra->entries |= bit;
            return NULL;
        }
        tail = &ra->next;
    }
    struct raddr *ra = calloc(1, sizeof *ra);
    if (!ra) {
        rlog("%s: out of memory", key);
        return NULL;
    }
    snprintf(ra->key, sizeof ra->key, "%s", key);
    ra->w = w;
    ra->kind = e->kind;
    ra->name = rm->tls_name ? rm->tls_name : e->host;
    ra->entries = bit;
    ra->delay = RETRY_MIN_MS;
    uv_timer_init(w->loop, &ra->timer);
    ra->timer.data = ra;
    rm->handles++;
    *tail = ra;
    return ra;
}

static void on_addr_closed(uv_handle_t *h)
{
    struct raddr *ra = h->data;
    sluice_worker *w = ra->w;
    free(ra);
    remote_handle_gone(w);
}

static void remove_addr(struct raddr *ra)
{
    struct remote *rm = ra->w->rm;
    for (struct raddr **pp = &rm->addrs; *pp; pp = &(*pp)->next) {
        if (*pp == ra) {
            *pp = ra->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&ra->timer, on_addr_closed);
}

static void schedule_retry(struct raddr *ra)
{
    struct remote *rm = ra->w->rm;
    if (rm->stopping)
        return;
    /* Uniform in [delay/2, delay], so workers started together spread out. */
    uint32_t d = ra->delay, wait = d / 2 + rng_next(rm) % (d - d / 2 + 1);
    ra->delay = d * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : d * 2;
    uv_timer_start(&ra->timer, on_retry, wait, 0);
}

static void on_retry(uv_timer_t *t)
{
    struct raddr *ra = t->data;
    if (ra->w->rm->stopping || ra->link)
        return;
    if (!ra->entries) {
        remove_addr(ra);
        return;
    }
    link_open(ra);
}

/* An entry's resolution: the addresses it no longer has lose its bit (a
 * vanished address with a live link keeps it until it closes), new ones
 * get a link. A failure keeps the last answer. */
static void resolved(struct rentry *e, int status, struct sockaddr_storage *sa, size_t n)
{
    sluice_worker *w = e->w;
    struct remote *rm = w->rm;
    if (status < 0 || !n) {
        if (!e->resolve_failed)
            rlog("cannot resolve %s: %s (keeping its last answer, retrying every %u ms)", e->host,
                 status < 0 ? uv_strerror(status) : "no address", rm->resolve_ms);
        e->resolve_failed = true;
        return;
    }
    if (e->resolve_failed)
        rlog("%s resolves again", e->host);
    e->resolve_failed = false;
    char(*keys)[160] = malloc(n * sizeof *keys);
    if (!keys)
        return;
    for (size_t i = 0; i < n; i++) {
        set_port(&sa[i], e->port);
        key_of(keys[i], sizeof keys[i], e->kind, &sa[i]);
    }
    uint64_t bit = (uint64_t)1 << e->idx;
    for (struct raddr *ra = rm->addrs, *next; ra; ra = next) {
        next = ra->next;
        if (!(ra->entries & bit))
            continue;
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = !strcmp(keys[i], ra->key);
        if (found)
            continue;
        ra->entries &= ~bit;
        if (ra->entries)
            continue;
        if (ra->link) {
            rlog("%s no longer resolves to %s: its link stays until it closes", e->host, ra->key);
        } else {
            uv_timer_stop(&ra->timer);
            remove_addr(ra);
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct raddr *ra = add_addr(w, e, keys[i]);
        if (ra)
            link_open(ra);
    }
    free(keys);
}

#define RESOLVE_MAX 64u

static void on_gai(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct rentry *e = g->data;
    sluice_worker *w = e->w;
    struct remote *rm = w->rm;
    e->gai = NULL;
    rm->resolving--;
    free(g);
    if (rm->stopping) {
        uv_freeaddrinfo(res);
        remote_maybe_finish(w);
        return;
    }
    struct sockaddr_storage sa[RESOLVE_MAX];
    size_t n = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai && n < RESOLVE_MAX; ai = ai->ai_next) {
        bool inet = ai->ai_family == AF_INET || ai->ai_family == AF_INET6;
        if (!inet || ai->ai_addrlen > sizeof sa[0])
            continue;
        memset(&sa[n], 0, sizeof sa[n]);
        memcpy(&sa[n], ai->ai_addr, ai->ai_addrlen);
        n++;
    }
    uv_freeaddrinfo(res);
    resolved(e, status, sa, n);
}

static void resolve_entry(struct rentry *e)
{
    sluice_worker *w = e->w;
    if (e->gai)
        return;
    if (resolver_hook) {
        struct sockaddr_storage sa[RESOLVE_MAX];
        memset(sa, 0, sizeof sa);
        int n = resolver_hook(e->host, sa, RESOLVE_MAX);
        resolved(e, n < 0 ? n : 0, sa, n < 0 ? 0 : (size_t)n);
        return;
    }
    uv_getaddrinfo_t *g = malloc(sizeof *g);
    if (!g)
        return;
    g->data = e;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(w->loop, g, on_gai, e->host, e->port, &hints);
    if (rc < 0) {
        free(g);
        resolved(e, rc, NULL, 0);
        return;
    }
    e->gai = g;
    w->rm->resolving++;
}

static void on_resolve_timer(uv_timer_t *t)
{
    sluice_worker *w = t->data;
    for (size_t i = 0; i < w->rm->ne; i++)
        if (w->rm->e[i].name)
            resolve_entry(&w->rm->e[i]);
}

static void link_closed(sluice_worker *l, int err, void *ud);

/* A link to ra: an ordinary worker, owned by the parent. */
static void link_open(struct raddr *ra)
{
    sluice_worker *w = ra->w;
    char conn[sizeof ra->key];
    if (ra->kind == A_UNIX)
        snprintf(conn, sizeof conn, "%s", ra->key);
    else
        snprintf(conn, sizeof conn, "tcp:%s", ra->key + 4);
    sluice_worker *l = calloc(1, sizeof *l);
    int rc = -ENOMEM;
    if (l) {
        l->addr = dup_str(conn);
        l->lib = dup_str(w->lib);
        l->token = dup_str(w->token);
        l->rbuf = malloc(READ_BUF_SIZE);
        if (l->addr && l->lib && (!w->token || l->token) && l->rbuf)
            rc = 0;
    }
    if (rc == 0) {
        l->loop = w->loop;
        l->cb = w->cb;
        l->cb.on_closed = NULL; /* the parent reports its own end */
        l->udata = w->udata;
        l->silent = w->silent;
        l->max_streams = w->max_streams;
        l->window = w->window;
        l->max_frame = w->max_frame;
        /* connect, TLS and HELLO: bounded by three ping intervals too */
        l->handshake_ms = w->handshake_ms;
        if (l->handshake_ms > 3 * w->rm->ping_ms)
            l->handshake_ms = 3 * w->rm->ping_ms;
        l->ping_ms = w->rm->ping_ms;
        l->shutdown_ms = w->shutdown_ms;
        l->max_output = w->max_output;
        l->ws_limit = w->ws_limit;
        l->ws_max_message = w->ws_max_message;
        l->state = W_IDLE;
        l->parent = w;
        l->ra = ra;
        l->hook = link_closed;
        l->hook_ud = ra;
        if (ra->kind == A_TLS) {
            l->tls_ctx = w->rm->tls;
            l->tls_name = ra->name;
        }
        rc = sluice_worker_connect(l);
    }
    if (rc < 0) {
        if (!ra->failing)
            rlog("cannot attach to %s: %s", ra->key, sluice_proto_strerror(rc));
        ra->failing = true;
        sluice_worker_free(l);
        schedule_retry(ra);
        return;
    }
    ra->link = l;
}

static void remote_link_ready(sluice_worker *l)
{
    struct raddr *ra = l->ra;
    ra->delay = RETRY_MIN_MS;
    ra->failing = false;
    rlog("attached to %s (worker id %llu)", ra->key, (unsigned long long)l->worker_id);
}

static void remote_stop(sluice_worker *w, uint32_t grace_ms);

/* A link ended (its hook, from its teardown): log, then reconnect unless
 * the worker is stopping or the address vanished. */
static void link_closed(sluice_worker *l, int err, void *ud)
{
    struct raddr *ra = ud;
    sluice_worker *w = ra->w;
    struct remote *rm = w->rm;
    const char *why = l->why[0] ? l->why : err ? sluice_proto_strerror(err) : "closed";
    ra->link = NULL;
    if (err == SLUICE_PROTO_E_AUTH) {
        rlog("%s refused the token (auth): stopping", ra->key);
        rm->auth = true;
        remote_stop(w, 0);
    } else if (l->ever_ready) {
        if (!rm->stopping)
            rlog("link to %s %s: %s", ra->key, err ? "lost" : "closed", err ? why : "drained");
        ra->failing = false;
    } else if (!ra->failing && !rm->stopping) {
        rlog("cannot attach to %s: %s", ra->key, why);
        ra->failing = true;
    }
    sluice_worker_free(l); /* once its teardown returns */
    if (rm->stopping)
        remote_maybe_finish(w);
    else if (!ra->entries)
        remove_addr(ra);
    else
        schedule_retry(ra);
}

/* Capacity is the worker's, over all its links (10.6, 4). */
static bool over_capacity(const sluice_worker *w)
{
    if (!w->parent)
        return false;
    uint32_t n = 0;
    for (struct raddr *ra = w->parent->rm->addrs; ra; ra = ra->next)
        if (ra->link && ra->link->link)
            n += sluice_proto_link_open_streams(ra->link->link);
    return n >= w->max_streams;
}

static void on_resolve_closed(uv_handle_t *h) { remote_handle_gone(h->data); }

static void remote_teardown(sluice_worker *w)
{
    struct remote *rm = w->rm;
    rm->running = rm->finishing = false;
    free_entries(rm);
    int err = rm->auth ? SLUICE_PROTO_E_AUTH : 0;
    w->in_teardown = true;
    report_closed(w, err);
}

static void remote_handle_gone(sluice_worker *w)
{
    struct remote *rm = w->rm;
    if (--rm->handles == 0 && rm->finishing)
        remote_teardown(w);
}

/* Stopping and nothing left (no link, no resolution in flight): close the
 * timers, then report. */
static void remote_maybe_finish(sluice_worker *w)
{
    struct remote *rm = w->rm;
    if (!rm->stopping || rm->finishing || rm->resolving)
        return;
    for (struct raddr *ra = rm->addrs; ra; ra = ra->next)
        if (ra->link)
            return;
    rm->finishing = true;
    uv_close((uv_handle_t *)&rm->resolve, on_resolve_closed);
    struct raddr *ra = rm->addrs;
    rm->addrs = NULL;
    while (ra) {
        struct raddr *next = ra->next;
        uv_close((uv_handle_t *)&ra->timer, on_addr_closed);
        ra = next;
    }
}

/* SIGTERM / shutdown / auth: no more connecting or resolving; links still
 * connecting are dropped, live ones RETIRE and close after their DRAIN. */
static void remote_stop(sluice_worker *w, uint32_t grace_ms)
{
    struct remote *rm = w->rm;
    if (rm->stopping)
        return;
    rm->stopping = true;
    uv_timer_stop(&rm->resolve);
    for (struct raddr *ra = rm->addrs; ra; ra = ra->next) {
        uv_timer_stop(&ra->timer);
        if (ra->link)
            (void)sluice_worker_shutdown(ra->link, grace_ms);
    }
    remote_maybe_finish(w);
}

/* Every link closed at once (a second signal, sluice_worker_close). */
static void remote_close(sluice_worker *w)
{
    struct remote *rm = w->rm;
    remote_stop(w, 0);
    for (struct raddr *ra = rm->addrs; ra; ra = ra->next)
        if (ra->link)
            (void)sluice_worker_close(ra->link, NULL);
}

static int remote_start(sluice_worker *w)
{
    struct remote *rm = w->rm;
    if (rm->running)
        return -EALREADY;
    int rc = parse_entries(w);
    if (rc < 0)
        return rc;
    bool tls = false;
    for (size_t i = 0; i < rm->ne; i++)
        tls |= rm->e[i].kind == A_TLS;
    if (tls && !rm->tls) {
        tls_client_config tc = {.ca_file = rm->tls_ca,
                                .cert_file = rm->tls_cert,
                                .key_file = rm->tls_key,
                                .alpn = ALPN};
        char err[TLS_ERR_LEN] = "";
        rc = tls_ctx_new_client(&rm->tls, &tc, err, sizeof err);
        if (rc < 0) {
            rlog("TLS configuration: %s", err);
            return rc;
        }
    }
    rm->running = true;
    rm->stopping = rm->finishing = rm->auth = false;
    rm->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)w;
    if (!rm->rng)
        rm->rng = 1;
    uv_timer_init(w->loop, &rm->resolve);
    rm->resolve.data = w;
    rm->handles = 1;
    bool names = false;
    for (size_t i = 0; i < rm->ne; i++) {
        struct rentry *e = &rm->e[i];
        if (e->name) {
            names = true;
            resolve_entry(e);
            continue;
        }
        char key[160];
        if (e->kind == A_UNIX) {
            snprintf(key, sizeof key, "unix:%s", e->host);
        } else {
            struct sockaddr_storage sa = {0};
            if (uv_ip4_addr(e->host, 0, (struct sockaddr_in *)&sa) != 0)
                uv_ip6_addr(e->host, 0, (struct sockaddr_in6 *)&sa);
            set_port(&sa, e->port);
            key_of(key, sizeof key, e->kind, &sa);
        }
        struct raddr *ra = add_addr(w, e, key);
        if (ra)
            link_open(ra);
    }
    if (names)
        uv_timer_start(&rm->resolve, on_resolve_timer, rm->resolve_ms, rm->resolve_ms);
    return 0;
}

static void remote_free(struct remote *rm)
{
    if (!rm)
        return;
    free_entries(rm);
    free(rm->tls_ca);
    free(rm->tls_cert);
    free(rm->tls_key);
    free(rm->tls_name);
    tls_ctx_free(rm->tls);
    free(rm);
}

/* A number of seconds from the environment (at least 1) as ms; `def` if unset. */
static int env_seconds(const char *name, uint32_t def, uint32_t *out)
{
    *out = def;
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long sec = strtoul(v, &end, 10);
    if (*end || sec > 86400) {
        rlog("invalid %s %s (seconds, at least 1)", name, v);
        return -EINVAL;
    }
    *out = sec < 1 ? 1000 : (uint32_t)sec * 1000;
    return 0;
}

static char *env_or(const char *v, const char *name)
{
    if (!v)
        v = getenv(name);
    return v && *v ? dup_str(v) : NULL;
}

/* Remote mode's settings: the config, else the environment (10.2). */
static int remote_config(struct remote **out, const sluice_worker_config *c)
{
    uint32_t resolve_ms = c->resolve_interval_ms, ping_ms = c->ping_interval_ms;
    if (!resolve_ms && env_seconds("SLUICE_RESOLVE_INTERVAL", DEFAULT_RESOLVE_MS, &resolve_ms) < 0)
        return -EINVAL;
    if (!ping_ms && env_seconds("SLUICE_PING_INTERVAL", DEFAULT_PING_MS, &ping_ms) < 0)
        return -EINVAL;
    if (ping_ms > UINT32_MAX / 3)
        return -EINVAL;
    struct remote *rm = calloc(1, sizeof *rm);
    if (!rm)
        return -ENOMEM;
    rm->resolve_ms = resolve_ms;
    rm->ping_ms = ping_ms;
    rm->tls_ca = env_or(c->tls_ca, "SLUICE_TLS_CA");
    rm->tls_cert = env_or(c->tls_cert, "SLUICE_TLS_CERT");
    rm->tls_key = env_or(c->tls_key, "SLUICE_TLS_KEY");
    rm->tls_name = env_or(c->tls_server_name, "SLUICE_TLS_SERVER_NAME");
    if (!rm->tls_cert != !rm->tls_key) {
        rlog("SLUICE_TLS_CERT and SLUICE_TLS_KEY (tls_cert, tls_key) go together");
        remote_free(rm);
        return -EINVAL;
    }
    *out = rm;
    return 0;
}

/* ---- worker API ------------------------------------------------------------ */

int sluice_worker_new(sluice_worker **out, uv_loop_t *loop, const sluice_worker_config *config,
                      const sluice_worker_callbacks *callbacks, void *udata)
{
    *out = NULL;
    sluice_worker_config c = {0};
    if (config)
        c = *config;
    if (!loop || !callbacks || !callbacks->on_request)
        return -EINVAL;
    if (!c.max_streams) { /* PROTOCOL.md 10.2: the operator's say, then ours */
        const char *e = getenv("SLUICE_MAX_STREAMS");
        if (e && *e) {
            char *endp;
            errno = 0;
            long v = strtol(e, &endp, 10);
            if (errno || *endp || v < 1 || v > SLUICE_PROTO_MAX_STREAMS) {
                fprintf(stderr, "sluice: invalid SLUICE_MAX_STREAMS=%s (want 1..%u)\n", e,
                        (unsigned)SLUICE_PROTO_MAX_STREAMS);
                return -EINVAL;
            }
            c.max_streams = (uint32_t)v;
        } else {
            c.max_streams = DEFAULT_MAX_STREAMS;
        }
    }
    if (!c.window)
        c.window = DEFAULT_WINDOW;
    if (!c.max_frame)
        c.max_frame = SLUICE_PROTO_DEFAULT_FRAME;
    if (!c.handshake_timeout_ms)
        c.handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
    if (!c.shutdown_timeout_ms)
        c.shutdown_timeout_ms = DEFAULT_SHUTDOWN_MS;
    if (!c.max_output)
        c.max_output = DEFAULT_MAX_OUTPUT;
    if (c.max_streams > SLUICE_PROTO_MAX_STREAMS || c.window > SLUICE_PROTO_MAX_WINDOW ||
        c.max_frame < SLUICE_PROTO_MIN_FRAME || c.max_frame > SLUICE_PROTO_MAX_FRAME ||
        c.max_output > MAX_OUTPUT_LIMIT || c.ws_max_message > WS_MAX_MESSAGE_LIMIT)
        return -EINVAL;
    const char *addr = c.socket_path ? c.socket_path : getenv("SLUICE_SOCKET");
    if (!addr || !*addr)
        return -EDESTADDRREQ;
    const char *one = NULL;
    size_t one_len = 0;
    bool remote = is_remote(addr, &one, &one_len);
    if (!remote && !one)
        return -EDESTADDRREQ; /* only commas and spaces */
    struct remote *rm = NULL;
    if (remote) {
        int rc = remote_config(&rm, &c);
        if (rc < 0)
            return rc;
    }
    const char *token = c.token ? c.token : getenv("SLUICE_TOKEN");
    if (token && !*token)
        token = NULL;
    const char *lib = c.lib ? c.lib : SLUICE_WORKER_LIB;
    /* HELLO must fit in SLUICE_PROTO_HELLO_MAX bytes. */
    if (strlen(lib) > HELLO_STR_MAX || (token && strlen(token) > HELLO_STR_MAX))
        return -EINVAL;

    sluice_worker *w = calloc(1, sizeof *w);
    if (!w) {
        remote_free(rm);
        return -ENOMEM;
    }
    w->loop = loop;
    w->cb = *callbacks;
    w->udata = udata;
    w->rm = rm;
    /* One Unix path, trimmed, keeps the one-link code path. */
    w->addr = remote ? dup_str(addr) : strndup(one, one_len);
    w->lib = dup_str(lib);
    w->token = dup_str(token);
    w->rbuf = malloc(READ_BUF_SIZE);
    if (!w->addr || !w->lib || (token && !w->token) || !w->rbuf) {
        free(w->addr);
        free(w->lib);
        free(w->token);
        free(w->rbuf);
        remote_free(rm);
        free(w);
        return -ENOMEM;
    }
    w->max_streams = c.max_streams;
    w->window = c.window;
    w->max_frame = c.max_frame;
    w->handshake_ms = c.handshake_timeout_ms;
    w->shutdown_ms = c.shutdown_timeout_ms;
    w->max_output = c.max_output;
    w->ws_limit = c.ws_max_message != 0;
    w->ws_max_message = c.ws_max_message ? c.ws_max_message : WS_MAX_MESSAGE_LIMIT;
    w->state = W_IDLE;
    *out = w;
    return 0;
}

void sluice_worker_free(sluice_worker *w)
{
    if (!w)
        return;
    if (w->in_teardown) {
        w->free_pending = true;
        return;
    }
    if (w->rm && w->rm->running) {
        /* Stop every link silently, free once all is closed. */
        memset(&w->cb, 0, sizeof w->cb);
        w->silent = true;
        w->hook = NULL;
        w->close_cb = NULL;
        w->free_pending = true;
        for (struct raddr *ra = w->rm->addrs; ra; ra = ra->next) {
            if (ra->link) {
                memset(&ra->link->cb, 0, sizeof ra->link->cb);
                ra->link->silent = true;
            }
        }
        remote_close(w);
        return;
    }
    if (w->state != W_IDLE && w->state != W_CLOSED) {
        /* Still connected: close silently, free once the handles are closed. */
        memset(&w->cb, 0, sizeof w->cb);
        w->silent = true;
        w->hook = NULL;
        w->close_cb = NULL;
        w->free_pending = true;
        abort_link(w, 0);
        return;
    }
    free(w->addr);
    free(w->lib);
    free(w->token);
    free(w->pool);
    free(w->rbuf);
    remote_free(w->rm);
    free(w);
}

int sluice_worker_close(sluice_worker *w, void (*cb)(sluice_worker *w))
{
    if (w->rm) {
        if (!w->rm->running || w->rm->finishing)
            return -ENOTCONN;
        w->close_cb = cb;
        remote_close(w);
        return 0;
    }
    if (w->state == W_IDLE || w->state == W_CLOSED)
        return -ENOTCONN;
    w->close_cb = cb;
    abort_link(w, 0);
    return 0;
}

int sluice_worker_shutdown(sluice_worker *w, uint32_t grace_ms)
{
    if (w->rm) {
        if (!w->rm->running)
            return -ENOTCONN;
        remote_stop(w, grace_ms);
        return 0;
    }
    switch (w->state) {
    case W_IDLE:
    case W_CLOSED:
        return -ENOTCONN;
    case W_CONNECTING:
    case W_HANDSHAKE:
        abort_link(w, 0);
        return 0;
    case W_READY:
        break;
    default:
        return 0; /* already closing */
    }
    if (w->shutting_down)
        return 0;
    w->shutting_down = true;
    if (!w->drained) {
        sluice_frame f = {.type = SLUICE_FRAME_RETIRE};
        f.u.retire.reason = sluice_bytes_str("shutdown");
        f.u.retire.has_reason = true;
        (void)emit(w, &f, false); /* refused if the app already retired: fine */
    }
    arm_grace(w, grace_ms ? grace_ms : w->shutdown_ms);
    schedule_flush(w);
    return 0;
}

int sluice_worker_retire(sluice_worker *w, const char *reason)
{
    if (w->rm) { /* every link up: each is drained, then opened again */
        int rc = -ENOTCONN;
        for (struct raddr *ra = w->rm->addrs; ra; ra = ra->next)
            if (ra->link && sluice_worker_retire(ra->link, reason) == 0)
                rc = 0;
        return rc;
    }
    if (w->state != W_READY)
        return -ENOTCONN;
    sluice_frame f = {.type = SLUICE_FRAME_RETIRE};
    if (reason) {
        f.u.retire.reason = sluice_bytes_str(reason);
        f.u.retire.has_reason = true;
    }
    return emit(w, &f, false);
}

uv_loop_t *sluice_worker_loop(const sluice_worker *w) { return w->loop; }
void *sluice_worker_udata(const sluice_worker *w) { return w->udata; }
/* Remote mode: the first link that is up, if any. */
static const sluice_worker *first_ready(const sluice_worker *w)
{
    if (!w->rm)
        return w;
    for (struct raddr *ra = w->rm->addrs; ra; ra = ra->next)
        if (ra->link && ra->link->state == W_READY)
            return ra->link;
    return NULL;
}

bool sluice_worker_ready(const sluice_worker *w)
{
    const sluice_worker *l = first_ready(w);
    return l && l->state == W_READY;
}

bool sluice_worker_draining(const sluice_worker *w)
{
    if (w->rm)
        return w->rm->stopping;
    return w->drained || w->shutting_down;
}

uint64_t sluice_worker_id(const sluice_worker *w)
{
    const sluice_worker *l = first_ready(w);
    return l ? l->worker_id : 0;
}

const char *sluice_worker_pool(const sluice_worker *w)
{
    const sluice_worker *l = first_ready(w);
    return l && l->pool ? l->pool : "";
}

uint32_t sluice_worker_open_streams(const sluice_worker *w)
{
    if (w->rm) {
        uint32_t n = 0;
        for (struct raddr *ra = w->rm->addrs; ra; ra = ra->next)
            if (ra->link)
                n += sluice_worker_open_streams(ra->link);
        return n;
    }
    return w->link && w->state == W_READY ? sluice_proto_link_open_streams(w->link) : 0;
}

/* ---- sluice_worker_main ------------------------------------------------------ */

struct main_ctx {
    sluice_worker *w;
    uv_signal_t sig[2];
    int signals;
    int err;
};

static void main_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    struct main_ctx *m = h->data;
    /* First signal: finish in-flight work; second: stop now. */
    if (m->signals++ == 0)
        sluice_worker_shutdown(m->w, 0);
    else
        sluice_worker_close(m->w, NULL);
}

static void main_closed(sluice_worker *w, int err, void *hook_ud)
{
    (void)w;
    struct main_ctx *m = hook_ud;
    m->err = err;
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&m->sig[i]))
            uv_close((uv_handle_t *)&m->sig[i], NULL);
}

int sluice_worker_main(const sluice_worker_config *config, const sluice_worker_callbacks *callbacks,
                       void *udata)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        fprintf(stderr, "sluice worker: %s\n", uv_strerror(rc));
        return 1;
    }
    struct main_ctx m = {0};
    rc = sluice_worker_new(&m.w, &loop, config, callbacks, udata);
    if (rc < 0) {
        fprintf(stderr, "sluice worker: %s\n", sluice_proto_strerror(rc));
        uv_loop_close(&loop);
        return 1;
    }
    m.w->hook = main_closed;
    m.w->hook_ud = &m;
    const int signums[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &m.sig[i]);
        m.sig[i].data = &m;
        uv_signal_start(&m.sig[i], main_signal, signums[i]);
    }
    rc = sluice_worker_connect(m.w);
    if (rc < 0) {
        m.err = rc;
        for (int i = 0; i < 2; i++)
            uv_close((uv_handle_t *)&m.sig[i], NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    bool remote = m.w->rm != NULL;
    sluice_worker_free(m.w);
    uv_run(&loop, UV_RUN_DEFAULT); /* deferred frees, if any */
    uv_loop_close(&loop);
    if (m.err) {
        fprintf(stderr, "sluice worker: %s: %s\n", remote ? "stopped" : "link closed",
                sluice_proto_strerror(m.err));
        return 1;
    }
    /* remote mode: a second signal abandons links, which is a failure (10.6, 5) */
    if (remote && m.signals > 1) {
        fprintf(stderr, "sluice worker: stopped at once (second signal)\n");
        return 1;
    }
    return 0;
}

/* ---- stream API ------------------------------------------------------------- */

uint64_t sluice_stream_id(const sluice_stream *s) { return s->id; }
sluice_worker *sluice_stream_worker(const sluice_stream *s) { return pub(s->w); }
void *sluice_stream_udata(const sluice_stream *s) { return s->udata; }
void sluice_stream_set_udata(sluice_stream *s, void *udata) { s->udata = udata; }
bool sluice_stream_is_open(const sluice_stream *s) { return s->ps && s->w->state == W_READY; }
size_t sluice_stream_pending(const sluice_stream *s) { return s->queued; }

uint32_t sluice_stream_send_window(const sluice_stream *s)
{
    return sluice_stream_is_open(s) ? sluice_proto_stream_send_window(s->ps) : 0;
}

int sluice_stream_respond(sluice_stream *s, unsigned status, const sluice_header *headers,
                          size_t n_headers, bool has_body)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (sluice_proto_stream_response_side(s->ps) != SLUICE_RESP_WAITING)
        return -EPROTO;
    if (status < 200 || status > 599)
        return -EINVAL;
    sluice_frame f = {.type = SLUICE_FRAME_RESPONSE, .stream_id = s->id};
    f.u.response.status = status;
    f.u.response.headers.items = headers;
    f.u.response.headers.count = n_headers;
    f.u.response.body = has_body ? SLUICE_BODY_FOLLOWS : SLUICE_BODY_NONE;
    struct batch *b = accum(s->w);
    size_t mark = b->heads.len;
    int rc = emit(s->w, &f, true);
    if (rc == 0 && has_body && !s->granted_initial && !s->req_ended) {
        s->head_seq = b->seq;
        s->head_mark = mark;
    }
    return rc;
}

/* Queues body bytes (ws < 0) or one WebSocket message (ws: its text bit). */
static int queue_write(sluice_stream *s, const void *data, size_t len, int ws, sluice_write_cb cb,
                       void *ud)
{
    if (len && !data)
        return -EINVAL;
    struct wreq *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->s = s;
    q->data = data;
    q->len = len;
    q->ws = ws;
    q->cb = cb;
    q->ud = ud;
    s->refs++;
    if (s->wq_tail)
        s->wq_tail->next = q;
    else
        s->wq_head = q;
    s->wq_tail = q;
    s->queued += len;
    pump(s);
    return 0;
}

int sluice_stream_write(sluice_stream *s, const void *data, size_t len, sluice_write_cb cb,
                        void *ud)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (s->end_queued || sluice_proto_stream_response_side(s->ps) != SLUICE_RESP_SENDING)
        return -EPROTO;
    return queue_write(s, data, len, -1, cb, ud);
}

int sluice_stream_end(sluice_stream *s, const sluice_header *trailers, size_t n_trailers)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (s->end_queued || sluice_proto_stream_response_side(s->ps) != SLUICE_RESP_SENDING)
        return -EPROTO;
    sluice_frame f = {.type = SLUICE_FRAME_END, .stream_id = s->id};
    f.u.trailers.items = trailers;
    f.u.trailers.count = n_trailers;
    if (!s->wq_head) {
        int rc = emit(s->w, &f, true);
        if (rc != -ENOBUFS)
            return rc;
        s->w->output_blocked = true; /* queue it below; sent when output drains */
    }
    /* Encode now (the caller's trailers need not outlive this call), send
     * after the queued writes. */
    sluice_buf_reset(&s->end_frame);
    int rc = sluice_proto_encode(&s->end_frame, &f, peer_max_frame(s->w));
    if (rc < 0)
        return rc;
    s->end_type = SLUICE_FRAME_END;
    s->end_queued = true;
    return 0;
}

int sluice_stream_reset(sluice_stream *s, unsigned code)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    sluice_frame f = {.type = SLUICE_FRAME_RESET, .stream_id = s->id};
    f.u.code.code = code;
    return emit(s->w, &f, false);
}

int sluice_stream_set_limit(sluice_stream *s, uint64_t max_body)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    sluice_frame f = {.type = SLUICE_FRAME_LIMIT, .stream_id = s->id};
    f.u.max_body = max_body;
    /* before the first CREDIT, so also before a head waiting for it */
    return emit_before_head(s->w, s, &f);
}

/* ---- WebSocket API ------------------------------------------------------------- */

static bool token_eq(const uint8_t *p, size_t n, const char *proto, size_t plen)
{
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n == plen && memcmp(p, proto, n) == 0;
}

bool sluice_ws_offered(const sluice_req *req, const char *proto)
{
    size_t plen = proto ? strlen(proto) : 0;
    if (!plen)
        return false;
    for (size_t i = 0; i < req->headers.count; i++) {
        const sluice_header *h = &req->headers.items[i];
        if (!name_eq(h->name, "sec-websocket-protocol", 22))
            continue;
        const uint8_t *p = h->value.ptr, *end = p + h->value.len;
        while (p <= end) {
            const uint8_t *comma = memchr(p, ',', (size_t)(end - p));
            const uint8_t *stop = comma ? comma : end;
            if (token_eq(p, (size_t)(stop - p), proto, plen))
                return true;
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    return false;
}

int sluice_ws_accept(sluice_stream *s, const char *subprotocol, const sluice_header *headers,
                     size_t n_headers)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (sluice_proto_stream_websocket(s->ps) != 1)
        return -EPROTO;
    if (n_headers > SLUICE_PROTO_MAX_HEADERS - 1 || (n_headers && !headers))
        return -EINVAL;
    sluice_header *hs = malloc((n_headers + 1) * sizeof *hs);
    if (!hs)
        return -ENOMEM;
    size_t n = 0;
    if (subprotocol && *subprotocol)
        hs[n++] = sluice_header_str("sec-websocket-protocol", subprotocol);
    for (size_t i = 0; i < n_headers; i++)
        hs[n++] = headers[i];
    /* A limit of the app's own is the gateway's too: a larger message is
     * refused there (close 1009 to the client) before any of it arrives. */
    int rc = 0;
    if (s->w->ws_limit) {
        sluice_frame l = {.type = SLUICE_FRAME_LIMIT, .stream_id = s->id};
        l.u.max_body = s->w->ws_max_message;
        rc = emit(s->w, &l, true);
        if (rc < 0) {
            free(hs);
            return rc;
        }
    }
    sluice_frame f = {.type = SLUICE_FRAME_RESPONSE, .stream_id = s->id};
    f.u.response.status = 101;
    f.u.response.headers.items = hs;
    f.u.response.headers.count = n;
    f.u.response.body = SLUICE_BODY_NONE;
    rc = emit(s->w, &f, true);
    free(hs);
    return rc;
}

uint8_t *sluice_ws_take(sluice_stream *s)
{
    if (!s->cur_msg)
        return NULL;
    uint8_t *p;
    if (s->cur_msg == s->msg && s->msg) { /* reassembled: hand the buffer over */
        p = s->msg;
        s->msg = NULL;
        s->msg_cap = 0;
    } else { /* a view into the read buffer: the one copy */
        p = malloc(s->cur_len ? s->cur_len : 1);
        if (p && s->cur_len)
            memcpy(p, s->cur_msg, s->cur_len);
    }
    if (p)
        s->cur_msg = NULL; /* once */
    return p;
}

static bool ws_open(const sluice_stream *s)
{
    return sluice_proto_stream_websocket(s->ps) == 2 && !s->end_queued;
}

int sluice_ws_send(sluice_stream *s, const void *data, size_t len, bool text, sluice_write_cb cb,
                   void *ud)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (!ws_open(s))
        return -EPROTO;
    return queue_write(s, data, len, text ? SLUICE_MSG_TEXT : 0, cb, ud);
}

int sluice_ws_ping(sluice_stream *s, const void *data, size_t len)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (!ws_open(s))
        return -EPROTO;
    if (len > SLUICE_PROTO_PING_MAX || (len && !data))
        return -EINVAL;
    sluice_frame f = {.type = SLUICE_FRAME_MESSAGE, .stream_id = s->id};
    f.u.message.flags = SLUICE_MSG_PING;
    f.u.message.data = (sluice_bytes){data, len};
    return emit(s->w, &f, false);
}

int sluice_ws_close(sluice_stream *s, unsigned code, const char *reason)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (!ws_open(s))
        return -EPROTO;
    if (code < SLUICE_CLOSE_CODE_MIN || code > SLUICE_CLOSE_CODE_MAX)
        return -EINVAL;
    sluice_frame f = {.type = SLUICE_FRAME_CLOSE, .stream_id = s->id};
    f.u.close.code = code;
    f.u.close.reason = sluice_bytes_str(reason);
    f.u.close.has_reason = true;
    if (!s->wq_head) {
        int rc = emit(s->w, &f, true);
        if (rc != -ENOBUFS)
            return rc;
        s->w->output_blocked = true;
    }
    /* After the queued messages, as sluice_stream_end does. */
    sluice_buf_reset(&s->end_frame);
    int rc = sluice_proto_encode(&s->end_frame, &f, peer_max_frame(s->w));
    if (rc < 0)
        return rc;
    s->end_type = SLUICE_FRAME_CLOSE;
    s->close_code = code;
    s->end_queued = true;
    return 0;
}

static int do_read_start(sluice_stream *s)
{
    s->reading = true;
    if (!s->granted_initial) {
        s->granted_initial = true;
        if (!s->req_ended) {
            sluice_frame f = {.type = SLUICE_FRAME_CREDIT, .stream_id = s->id};
            f.u.credit = s->w->window;
            int rc = emit_before_head(s->w, s, &f);
            if (rc < 0) {
                s->granted_initial = false;
                return rc;
            }
        }
    }
    count_consumed(s, s->held);
    s->held = 0;
    maybe_grant(s);
    credit_pieces(s);
    return 0;
}

int sluice_stream_read_start(sluice_stream *s)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    return do_read_start(s);
}

int sluice_stream_pause_reading(sluice_stream *s)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    s->reading = false;
    return 0;
}

int sluice_stream_consumed(sluice_stream *s, size_t n)
{
    if (!sluice_stream_is_open(s))
        return -EPIPE;
    if (n > s->held)
        return -EINVAL;
    s->held -= n;
    count_consumed(s, n);
    maybe_grant(s);
    credit_pieces(s);
    return 0;
}

/* ---- request helpers ---------------------------------------------------------- */

static bool name_eq(sluice_bytes a, const char *b, size_t blen)
{
    if (a.len != blen)
        return false;
    for (size_t i = 0; i < blen; i++)
        if (tolower(a.ptr[i]) != tolower((unsigned char)b[i]))
            return false;
    return true;
}

bool sluice_headers_find(const sluice_headers *h, const char *name, sluice_bytes *value)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->count; i++) {
        if (name_eq(h->items[i].name, name, n)) {
            if (value)
                *value = h->items[i].value;
            return true;
        }
    }
    return false;
}

/* Copies b's bytes to *pp (NUL-terminated, so they also work as C strings). */
static sluice_bytes copy_bytes(uint8_t **pp, sluice_bytes b)
{
    sluice_bytes r = {*pp, b.len};
    if (b.len)
        memcpy(*pp, b.ptr, b.len);
    (*pp)[b.len] = '\0';
    *pp += b.len + 1;
    return r;
}

sluice_req *sluice_req_copy(const sluice_req *r)
{
    size_t n = sizeof(sluice_req) + r->headers.count * sizeof(sluice_header);
    size_t bytes = r->method.len + r->target.len + r->scheme.len + r->client.host.len +
                   r->server.host.len + 5;
    for (size_t i = 0; i < r->headers.count; i++)
        bytes += r->headers.items[i].name.len + r->headers.items[i].value.len + 2;
    sluice_req *c = malloc(n + bytes);
    if (!c)
        return NULL;
    *c = *r;
    sluice_header *hs = (sluice_header *)(c + 1);
    uint8_t *p = (uint8_t *)(hs + r->headers.count);
    c->method = copy_bytes(&p, r->method);
    c->target = copy_bytes(&p, r->target);
    c->scheme = copy_bytes(&p, r->scheme);
    c->client.host = copy_bytes(&p, r->client.host);
    c->server.host = copy_bytes(&p, r->server.host);
    for (size_t i = 0; i < r->headers.count; i++) {
        hs[i].name = copy_bytes(&p, r->headers.items[i].name);
        hs[i].value = copy_bytes(&p, r->headers.items[i].value);
    }
    c->headers.items = r->headers.count ? hs : NULL;
    return c;
}
