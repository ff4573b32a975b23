/* sluice_proto: the sans-I/O codec of the sluice worker protocol (v1).
 *
 * Bytes in, events out; frames in, bytes out. No sockets, no event loop, no
 * hidden allocation policy: the caller owns every buffer it passes in, and the
 * codec's own buffers (encoder output, decoder partial-frame buffer, stream
 * table) are bounded by limits the caller sets. See PROTOCOL.md for the spec.
 *
 * Errors are negative ints: -errno for system failures (-ENOMEM, -EINVAL),
 * or one of the SLUICE_PROTO_E_* codes below for protocol violations.
 */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_PROTO_VERSION 1

/* ---- limits (PROTOCOL.md section 9) ---------------------------------- */
#define SLUICE_PROTO_MIN_FRAME 16384u
#define SLUICE_PROTO_MAX_FRAME 16777215u
#define SLUICE_PROTO_DEFAULT_FRAME 1048576u
#define SLUICE_PROTO_HELLO_MAX 16384u
#define SLUICE_PROTO_MAX_WINDOW 0x7fffffffu
#define SLUICE_PROTO_MAX_STREAMS 65535u
#define SLUICE_PROTO_MAX_ID 0x1fffffffffffffull /* 2^53 - 1 */
#define SLUICE_PROTO_MAX_HEADERS 1024u
#define SLUICE_PROTO_MAX_DEPTH 8
/* Bytes in front of BODY data: 4 length + fixarray + type + uint64 id + bin32. */
#define SLUICE_PROTO_BODY_HEAD_MAX 20u
/* The most BODY data one frame may carry for a peer accepting `max_frame`. */
#define SLUICE_PROTO_BODY_MAX(max_frame) ((size_t)(max_frame) - (SLUICE_PROTO_BODY_HEAD_MAX - 4u))
/* Bytes in front of MESSAGE data: the BODY head plus the flags (a fixint). */
#define SLUICE_PROTO_MESSAGE_HEAD_MAX 21u
/* The most MESSAGE data one frame may carry for a peer accepting `max_frame`. */
#define SLUICE_PROTO_MESSAGE_MAX(max_frame) ((size_t)(max_frame) - (SLUICE_PROTO_MESSAGE_HEAD_MAX - 4u))
/* The most data a MESSAGE PING may carry (a WebSocket control frame's payload). */
#define SLUICE_PROTO_PING_MAX 125u

/* ---- frame types ------------------------------------------------------ */
typedef enum {
    SLUICE_FRAME_HELLO = 1,
    SLUICE_FRAME_REQUEST = 2,
    SLUICE_FRAME_RESPONSE = 3,
    SLUICE_FRAME_BODY = 4,
    SLUICE_FRAME_END = 5,
    SLUICE_FRAME_CREDIT = 6,
    SLUICE_FRAME_CANCEL = 7,
    SLUICE_FRAME_RESET = 8,
    SLUICE_FRAME_LIMIT = 9,
    SLUICE_FRAME_PING = 10,
    SLUICE_FRAME_PONG = 11,
    SLUICE_FRAME_DRAIN = 12,
    SLUICE_FRAME_RETIRE = 13,
    SLUICE_FRAME_ERROR = 14,
    SLUICE_FRAME_MESSAGE = 15, /* WebSocket streams only (PROTOCOL.md 3.14) */
    SLUICE_FRAME_CLOSE = 16,   /* WebSocket streams only (PROTOCOL.md 3.15) */
} sluice_frame_type;
#define SLUICE_FRAME_TYPE_MAX 16

const char *sluice_frame_type_name(int type); /* "HELLO", ...; "?" if unknown */

/* ---- errors: wire code N <-> C value -(1000 + N) ---------------------- */
typedef enum {
    SLUICE_PROTO_E_MALFORMED = -1001,
    SLUICE_PROTO_E_FRAME_SIZE = -1002,
    SLUICE_PROTO_E_UNKNOWN_TYPE = -1003,
    SLUICE_PROTO_E_FIELD_TYPE = -1004,
    SLUICE_PROTO_E_FIELD_VALUE = -1005,
    SLUICE_PROTO_E_TOO_MANY_HEADERS = -1006,
    SLUICE_PROTO_E_UNEXPECTED_FRAME = -1007,
    SLUICE_PROTO_E_STREAM_STATE = -1008,
    SLUICE_PROTO_E_FLOW_CONTROL = -1009,
    SLUICE_PROTO_E_TOO_MANY_STREAMS = -1010,
    SLUICE_PROTO_E_VERSION = -1011,
    SLUICE_PROTO_E_AUTH = -1012,
    SLUICE_PROTO_E_TRUNCATED = -1013,
    SLUICE_PROTO_E_INTERNAL = -1014,
    SLUICE_PROTO_E_TIMEOUT = -1015,
} sluice_proto_err;
#define SLUICE_PROTO_E_BASE 1000

/* "malformed", "frame_size", ... for protocol errors; strerror text for -errno. */
const char *sluice_proto_strerror(int err);
/* Short name as used in PROTOCOL.md and the vectors; NULL if not a protocol error. */
const char *sluice_proto_err_name(int err);
/* Wire code for an ERROR frame (1..15); 14 (internal) for anything else. */
uint32_t sluice_proto_err_code(int err);
/* C value for a wire code (may be outside the enum for unknown codes). */
int sluice_proto_err_from_code(uint64_t code);

/* CANCEL reasons and RESET codes (PROTOCOL.md 3.7, 3.8). */
typedef enum {
    SLUICE_CANCEL_CLIENT_CLOSED = 1,
    SLUICE_CANCEL_TIMEOUT = 2,
    SLUICE_CANCEL_SHUTDOWN = 3,
    SLUICE_CANCEL_BODY_TOO_LARGE = 4,
    SLUICE_CANCEL_BAD_BODY = 5,
    SLUICE_CANCEL_BODY_TIMEOUT = 6,
    SLUICE_CANCEL_INVALID_RESPONSE = 7,
    SLUICE_CANCEL_INTERNAL = 8,
} sluice_cancel_reason;
const char *sluice_cancel_reason_name(uint64_t reason); /* "client_closed"...; "internal" if unknown */

typedef enum {
    SLUICE_RESET_INTERNAL = 1,
    SLUICE_RESET_REFUSED = 2,
    SLUICE_RESET_OVERLOADED = 3,
} sluice_reset_code;
const char *sluice_reset_code_name(uint64_t code);

/* REQUEST/RESPONSE body modes. */
typedef enum {
    SLUICE_BODY_NONE = 0,
    SLUICE_BODY_FOLLOWS = 1,
    SLUICE_BODY_ON_CREDIT = 2, /* REQUEST only: window starts at 0 */
    SLUICE_BODY_WEBSOCKET = 3, /* REQUEST only: a WebSocket opening handshake (5.2) */
} sluice_body_mode;

/* MESSAGE flags (PROTOCOL.md 3.14): 0..3 are data (bit 0 text, bit 1 more);
 * PING is worker -> gateway only, PONG gateway -> worker only. */
enum {
    SLUICE_MSG_TEXT = 1,
    SLUICE_MSG_MORE = 2,
    SLUICE_MSG_PING = 4,
    SLUICE_MSG_PONG = 8,
};
/* A valid MESSAGE flags value: 0, 1, 2, 3, 4 or 8. */
static inline bool sluice_msg_flags_ok(uint64_t flags)
{
    return flags <= 4 || flags == SLUICE_MSG_PONG;
}

/* CLOSE codes: the range a CLOSE frame may carry. */
#define SLUICE_CLOSE_CODE_MIN 1000u
#define SLUICE_CLOSE_CODE_MAX 4999u

/* REQUEST `version`: the HTTP version times ten (PROTOCOL.md 3.2). */
typedef enum {
    SLUICE_HTTP_10 = 10,
    SLUICE_HTTP_11 = 11,
    SLUICE_HTTP_2 = 20,
} sluice_http_version;

static inline bool sluice_http_version_ok(uint64_t v)
{
    return v == SLUICE_HTTP_10 || v == SLUICE_HTTP_11 || v == SLUICE_HTTP_2;
}

/* ---- frames ----------------------------------------------------------- */

/* A byte string. In decoded frames it is a view into the decoder's input or
 * its internal buffer, valid until the next sluice_proto_decoder_* call. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} sluice_bytes;

typedef struct {
    sluice_bytes name, value;
} sluice_header;

typedef struct {
    const sluice_header *items;
    size_t count;
} sluice_headers;

typedef struct {
    sluice_bytes host; /* textual IP, or empty */
    uint32_t port;
} sluice_addr;

/* HELLO settings; `has` says which keys were present (SLUICE_HELLO_HAS_*). */
enum {
    SLUICE_HELLO_HAS_PID = 1u << 0,
    SLUICE_HELLO_HAS_LIB = 1u << 1,
    SLUICE_HELLO_HAS_MAX_STREAMS = 1u << 2,
    SLUICE_HELLO_HAS_WINDOW = 1u << 3,
    SLUICE_HELLO_HAS_MAX_FRAME = 1u << 4,
    SLUICE_HELLO_HAS_TOKEN = 1u << 5,
    SLUICE_HELLO_HAS_WORKER_ID = 1u << 6,
    SLUICE_HELLO_HAS_POOL = 1u << 7,
    SLUICE_HELLO_HAS_SERVER = 1u << 8,
    SLUICE_HELLO_HAS_WEBSOCKET = 1u << 9,
};
typedef struct {
    uint64_t version;
    uint32_t has;
    uint64_t pid;
    sluice_bytes lib;
    uint32_t max_streams;
    uint32_t window;
    uint32_t max_frame;
    sluice_bytes token;
    uint64_t worker_id;
    sluice_bytes pool;
    sluice_bytes server;
    bool websocket; /* the sender takes (worker) / may open (gateway) WebSocket streams */
} sluice_hello;

typedef struct {
    sluice_bytes method, target;
    uint32_t version; /* sluice_http_version: 10, 11, 20 */
    sluice_headers headers;
    sluice_addr client, server;
    sluice_bytes scheme;
    uint32_t body; /* sluice_body_mode (0..3) */
} sluice_request;

typedef struct {
    uint32_t status; /* 200..599, or 101 (accepts a WebSocket stream) */
    sluice_headers headers;
    uint32_t body; /* SLUICE_BODY_NONE or SLUICE_BODY_FOLLOWS */
} sluice_response;

/* One decoded frame. Only the member matching `type` is meaningful. */
typedef struct {
    uint32_t type; /* sluice_frame_type */
    uint64_t stream_id;
    union {
        sluice_hello hello;
        sluice_request request;
        sluice_response response;
        sluice_bytes body;          /* BODY */
        sluice_headers trailers;    /* END (count 0: none) */
        uint64_t credit;            /* CREDIT increment */
        struct {                    /* CANCEL, RESET, ERROR */
            uint64_t code;
            sluice_bytes message;   /* empty if absent */
            bool has_message;
        } code;
        uint64_t max_body;          /* LIMIT */
        uint64_t opaque;            /* PING, PONG */
        uint64_t timeout_ms;        /* DRAIN */
        struct {                    /* RETIRE */
            sluice_bytes reason;
            bool has_reason;
        } retire;
        struct {                    /* MESSAGE */
            uint32_t flags;         /* SLUICE_MSG_* */
            sluice_bytes data;
        } message;
        struct {                    /* CLOSE */
            uint64_t code;          /* 1000..4999 */
            sluice_bytes reason;    /* empty if absent */
            bool has_reason;
        } close;
    } u;
} sluice_frame;

/* ---- output buffer ---------------------------------------------------- */

/* A growable byte buffer with a hard upper bound. The encoder appends whole
 * frames; the caller writes data[0..len) out and then resets or consumes. */
typedef struct {
    uint8_t *data;
    size_t len, cap, max; /* max: growth beyond this fails with -ENOBUFS */
} sluice_buf;

void sluice_buf_init(sluice_buf *b, size_t max);
void sluice_buf_close(sluice_buf *b);
int sluice_buf_reserve(sluice_buf *b, size_t extra);
int sluice_buf_append(sluice_buf *b, const void *data, size_t len);
void sluice_buf_consume(sluice_buf *b, size_t n); /* drop n bytes from the front */
static inline void sluice_buf_reset(sluice_buf *b) { b->len = 0; }

/* ---- encoder: appends one complete frame to `out` --------------------- */
/* Each returns 0 or a negative error; on error `out` is left unchanged.
 * Fields are validated (ranges, non-empty names); -EINVAL for a value the
 * spec forbids, -EMSGSIZE if the frame exceeds `max_frame` (pass 0 for no
 * check), -ENOBUFS if `out` would exceed its bound. */
int sluice_proto_encode(sluice_buf *out, const sluice_frame *f, uint32_t max_frame);

int sluice_proto_encode_hello(sluice_buf *out, const sluice_hello *h);
int sluice_proto_encode_request(sluice_buf *out, uint64_t sid, const sluice_request *r,
                                uint32_t max_frame);
int sluice_proto_encode_response(sluice_buf *out, uint64_t sid, const sluice_response *r,
                                 uint32_t max_frame);
int sluice_proto_encode_body(sluice_buf *out, uint64_t sid, const void *data, size_t len);
/* Zero-copy BODY: appends only the frame head for `len` data bytes; the
 * caller sends the data itself right after these bytes (e.g. as a second
 * iovec). At most SLUICE_PROTO_BODY_HEAD_MAX bytes are appended. */
int sluice_proto_encode_body_head(sluice_buf *out, uint64_t sid, size_t len);
int sluice_proto_encode_end(sluice_buf *out, uint64_t sid, const sluice_header *trailers,
                            size_t n_trailers);
int sluice_proto_encode_credit(sluice_buf *out, uint64_t sid, uint64_t increment);
int sluice_proto_encode_cancel(sluice_buf *out, uint64_t sid, uint64_t reason, const char *message);
int sluice_proto_encode_reset(sluice_buf *out, uint64_t sid, uint64_t code, const char *message);
int sluice_proto_encode_limit(sluice_buf *out, uint64_t sid, uint64_t max_body);
int sluice_proto_encode_ping(sluice_buf *out, uint64_t opaque);
int sluice_proto_encode_pong(sluice_buf *out, uint64_t opaque);
int sluice_proto_encode_drain(sluice_buf *out, uint64_t timeout_ms);
int sluice_proto_encode_retire(sluice_buf *out, const char *reason);
int sluice_proto_encode_error(sluice_buf *out, int err, const char *message); /* err: SLUICE_PROTO_E_* */
/* MESSAGE: flags one of 0, 1, 2, 3, 4, 8 (-EINVAL otherwise). The PING
 * length and direction rules are the link's (sluice_proto_link_send). */
int sluice_proto_encode_message(sluice_buf *out, uint64_t sid, uint32_t flags, const void *data,
                                size_t len);
/* Zero-copy MESSAGE: appends only the frame head for `len` data bytes (at
 * most SLUICE_PROTO_MESSAGE_HEAD_MAX bytes); the caller sends the data. */
int sluice_proto_encode_message_head(sluice_buf *out, uint64_t sid, uint32_t flags, size_t len);
/* CLOSE: code 1000..4999; reason NULL or "" for none. */
int sluice_proto_encode_close(sluice_buf *out, uint64_t sid, uint64_t code, const char *reason);

/* ---- decoder: incremental, any split --------------------------------- */

typedef struct sluice_proto_decoder sluice_proto_decoder;

/* max_frame: largest frame length accepted (SLUICE_PROTO_MIN_FRAME ..
 * SLUICE_PROTO_MAX_FRAME); max_headers: largest header list accepted (1 ..
 * SLUICE_PROTO_MAX_HEADERS); the header array is allocated here, once. */
int sluice_proto_decoder_new(sluice_proto_decoder **out, uint32_t max_frame, uint32_t max_headers);
void sluice_proto_decoder_free(sluice_proto_decoder *d);
/* Change the accepted frame length (e.g. after HELLO); takes effect for the next frame. */
void sluice_proto_decoder_set_max_frame(sluice_proto_decoder *d, uint32_t max_frame);

/* Feed input. Consumes bytes from data[0..len) and sets *consumed. Returns:
 *   1  a frame was decoded into *f (views valid until the next call on `d`;
 *      they point into `data` when the frame was contiguous in it, else into
 *      the decoder's own buffer); call again with the rest of the input;
 *   0  all input consumed, no complete frame yet;
 *  <0  a protocol error (the link must be closed; the decoder stays failed),
 *      or -ENOMEM (not sticky: the call may be repeated).
 * The partial-frame buffer is allocated only after the length prefix has
 * been checked against max_frame, and never exceeds it. */
int sluice_proto_decoder_feed(sluice_proto_decoder *d, const uint8_t *data, size_t len,
                              size_t *consumed, sluice_frame *f);
/* End of input: 0 if between frames, SLUICE_PROTO_E_TRUNCATED if inside one. */
int sluice_proto_decoder_finish(const sluice_proto_decoder *d);

/* Decode one complete payload (no length prefix). Views point into `payload`.
 * `headers` is scratch space for up to `max_headers` entries. */
int sluice_proto_decode_payload(const uint8_t *payload, size_t len, sluice_frame *f,
                                sluice_header *headers, uint32_t max_headers);

/* ---- link: handshake, stream table, state machine, credit ------------- */

typedef enum { SLUICE_ROLE_GATEWAY = 1, SLUICE_ROLE_WORKER = 2 } sluice_role;

typedef enum {
    SLUICE_LINK_HANDSHAKE = 0, /* HELLOs not yet exchanged */
    SLUICE_LINK_READY = 1,
    SLUICE_LINK_DRAINING = 2,  /* DRAIN sent (gateway) or received (worker) */
    SLUICE_LINK_FAILED = 3,    /* a link error happened; nothing more may be sent */
} sluice_link_state;

typedef enum { SLUICE_SIDE_OPEN = 0, SLUICE_SIDE_ENDED = 1 } sluice_req_side;
typedef enum {
    SLUICE_RESP_WAITING = 0,
    SLUICE_RESP_SENDING = 1,
    SLUICE_RESP_ENDED = 2,
} sluice_resp_side;

typedef struct sluice_proto_link sluice_proto_link;
typedef struct sluice_proto_stream sluice_proto_stream;

/* Local limits of this side. */
typedef struct {
    uint32_t max_streams;  /* table capacity: worker's own max_streams, or the
                            * gateway's cap (the effective value is the min of
                            * both once HELLOs are exchanged) */
} sluice_link_config;

int sluice_proto_link_new(sluice_proto_link **out, sluice_role role, const sluice_link_config *cfg);
void sluice_proto_link_free(sluice_proto_link *l);

/* What happened to a stream as a result of a frame. */
typedef struct {
    sluice_proto_stream *stream; /* NULL for link frames and ignored frames */
    void *udata;                 /* the stream's user pointer (before any close) */
    bool ignored;                /* frame for a closed stream: drop it */
    bool opened;                 /* REQUEST: the stream was created */
    bool closed;                 /* the stream closed: `stream` is no longer valid */
} sluice_link_event;

/* A frame received from the peer: checks legality for `role`, the link
 * state, the stream state and credit, and applies it. Returns 0 (see *ev) or
 * a negative SLUICE_PROTO_E_* error, after which the link is FAILED (an ERROR
 * frame may still be sent). A received ERROR frame returns 0 and also leaves
 * the link FAILED: check f->type. */
int sluice_proto_link_recv(sluice_proto_link *l, const sluice_frame *f, sluice_link_event *ev);

/* A frame about to be sent: same checks from the sending side (returns
 * -EPROTO for a caller mistake such as BODY beyond the window, leaving the
 * state unchanged), then applies it. ERROR may be sent in any state. */
int sluice_proto_link_send(sluice_proto_link *l, const sluice_frame *f, sluice_link_event *ev);

sluice_link_state sluice_proto_link_state(const sluice_proto_link *l);
sluice_role sluice_proto_link_role(const sluice_proto_link *l);
/* Settings from the two HELLOs (valid once the respective HELLO went through). */
const sluice_hello *sluice_proto_link_local_hello(const sluice_proto_link *l);
const sluice_hello *sluice_proto_link_peer_hello(const sluice_proto_link *l);
/* Max frame length the peer accepts (SLUICE_PROTO_HELLO_MAX until its HELLO arrived). */
uint32_t sluice_proto_link_peer_max_frame(const sluice_proto_link *l);
uint32_t sluice_proto_link_open_streams(const sluice_proto_link *l);
/* Effective concurrent stream limit (min of both HELLOs and local config). */
uint32_t sluice_proto_link_max_streams(const sluice_proto_link *l);
/* Gateway: the id the next REQUEST must use. */
uint64_t sluice_proto_link_next_stream_id(const sluice_proto_link *l);
/* Gateway: may a new stream be opened now (ready, not draining, not retiring, room)? */
bool sluice_proto_link_can_open(const sluice_proto_link *l);
/* Gateway: the worker sent RETIRE. */
bool sluice_proto_link_retiring(const sluice_proto_link *l);
/* Mark FAILED (after the caller decided to close the link). */
void sluice_proto_link_fail(sluice_proto_link *l);

sluice_proto_stream *sluice_proto_link_stream(const sluice_proto_link *l, uint64_t sid);
/* Iterate over open streams: pass NULL to start; returns NULL at the end. To
 * close streams while iterating, fetch the next one before closing the current. */
sluice_proto_stream *sluice_proto_link_next_stream(const sluice_proto_link *l,
                                                   const sluice_proto_stream *after);

uint64_t sluice_proto_stream_id(const sluice_proto_stream *s);
void *sluice_proto_stream_udata(const sluice_proto_stream *s);
void sluice_proto_stream_set_udata(sluice_proto_stream *s, void *udata);
/* WebSocket state of a stream: 0 not a WebSocket stream (or refused), 1 a
 * WebSocket stream awaiting the worker's decision, 2 accepted (101 went
 * through: MESSAGE both ways until CLOSE, CANCEL or RESET). After the 101
 * the response side reads SLUICE_RESP_ENDED (its HTTP response is complete)
 * although the stream stays open. */
int sluice_proto_stream_websocket(const sluice_proto_stream *s);
/* Did both HELLOs carry `websocket: true` (PROTOCOL.md 5.2)? */
bool sluice_proto_link_websocket(const sluice_proto_link *l);
/* Body (or message) bytes this side may still send on the stream. */
uint32_t sluice_proto_stream_send_window(const sluice_proto_stream *s);
/* Body bytes the peer may still send to us on the stream. */
uint32_t sluice_proto_stream_recv_window(const sluice_proto_stream *s);
sluice_req_side sluice_proto_stream_request_side(const sluice_proto_stream *s);
sluice_resp_side sluice_proto_stream_response_side(const sluice_proto_stream *s);
/* REQUEST body mode of the stream. */
uint32_t sluice_proto_stream_body_mode(const sluice_proto_stream *s);
/* Last LIMIT received/sent for the stream, or UINT64_MAX if none. */
uint64_t sluice_proto_stream_limit(const sluice_proto_stream *s);
/* Request / response body bytes carried so far; on a WebSocket stream the
 * message data bytes gateway -> worker / worker -> gateway (PING and PONG
 * data not counted). */
uint64_t sluice_proto_stream_request_bytes(const sluice_proto_stream *s);
uint64_t sluice_proto_stream_response_bytes(const sluice_proto_stream *s);

#ifdef __cplusplus
}
#endif
#endif
