/* sluice_worker: the C worker library of sluice, on libuv.
 *
 * A worker connects to the gateway (Unix socket; or TCP/TLS, to one or
 * several gateways, for remote workers), exchanges HELLO, then serves the
 * streams the gateway opens: one stream per HTTP request. Everything runs on
 * the caller's uv loop, in its thread; no function here is thread-safe (use
 * uv_async to hand work back to the loop).
 *
 * Lifetimes, in one place:
 *  - sluice_req and every sluice_bytes/sluice_headers handed to a callback
 *    are views into the library's read buffer: valid only until the callback
 *    returns. Copy what you keep (sluice_req_copy does it in one allocation).
 *  - A sluice_stream is valid from on_request until on_stream_closed returns;
 *    on_stream_closed is always the last callback for a stream (every write
 *    callback of the stream has fired before it), so free per-stream state
 *    there. The library calls on_stream_closed exactly once per on_request.
 *  - Body buffers passed to sluice_stream_write are NOT copied (large ones are
 *    handed to the kernel with writev): keep them alive and unchanged until
 *    that write's callback has fired.
 *  - Header arrays passed to respond/end are copied (encoded) before the call
 *    returns.
 *
 * Errors are negative errno values (libuv's UV_E* are the same on Unix), or
 * SLUICE_PROTO_E_* (sluice_proto.h) for protocol errors; sluice_proto_strerror()
 * names both.
 *
 * Writes to a socket whose peer has gone raise SIGPIPE: a process using this
 * library should ignore it (sluice_worker_main does).
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <uv.h>

#include "sluice_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_WORKER_VERSION "0.1.0"
#define SLUICE_WORKER_LIB "sluice-c/" SLUICE_WORKER_VERSION

typedef struct sluice_worker sluice_worker;
typedef struct sluice_stream sluice_stream;

/* ---- configuration ----------------------------------------------------- */

/* Zero-initialise and set what you need; 0/NULL means the default. Strings
 * are copied by sluice_worker_new. */
typedef struct {
    /* Where the gateway listens: a Unix socket path ("unix:PATH" also works),
     * "tcp:HOST:PORT" ("tcp:[::1]:9000" for IPv6) or "tls:HOST:PORT", or a
     * comma-separated list of them (remote mode, below). NULL: $SLUICE_SOCKET. */
    const char *socket_path;
    uint32_t max_streams;          /* 0: $SLUICE_MAX_STREAMS, else 4096. Streams open at once (1 .. 65535) */
    uint32_t window;               /* 0: 32 KiB. Request-body window per stream */
    uint32_t max_frame;            /* 0: 1 MiB. Largest frame accepted (16 KiB .. 16 MiB-1) */
    const char *lib;               /* NULL: SLUICE_WORKER_LIB */
    const char *token;             /* NULL: $SLUICE_TOKEN if set (for TCP workers) */
    uint32_t handshake_timeout_ms; /* 0: 10000. Connect + HELLO exchange */
    uint32_t shutdown_timeout_ms;  /* 0: 30000. Grace of sluice_worker_shutdown */
    /* 0: 4 MiB. Bound on encoded response heads/trailers and small body
     * chunks waiting for the socket; beyond it respond/write fail with
     * -ENOBUFS (the gateway stopped reading). Body data passed zero-copy is
     * bounded by the gateway's windows instead. */
    size_t max_output;
    /* 0: the gateway's limit (the pool's ws_max_message, 1 MiB by
     * default), which it enforces before a byte of a larger message
     * arrives. Else the largest WebSocket message this worker takes: sent
     * to the gateway as LIMIT with each 101 (so the gateway refuses larger
     * ones with close 1009), and the bound of reassembly here. */
    size_t ws_max_message;
    /* Remote mode (several addresses, or any tcp:/tls: one; PROTOCOL.md
     * 10.6). NULL/0: the environment variable named, else the default. */
    uint32_t resolve_interval_ms; /* $SLUICE_RESOLVE_INTERVAL (seconds); 10 s */
    /* $SLUICE_PING_INTERVAL (seconds); 5 s. A PING on every link this often;
     * a link silent for three intervals is closed (and reopened), and
     * connect + TLS + HELLO are bounded by three intervals too. */
    uint32_t ping_interval_ms;
    const char *tls_ca;           /* $SLUICE_TLS_CA; NULL: the system trust store */
    const char *tls_cert;         /* $SLUICE_TLS_CERT: client certificate (PEM) */
    const char *tls_key;          /* $SLUICE_TLS_KEY: its key; both or neither */
    const char *tls_server_name;  /* $SLUICE_TLS_SERVER_NAME; NULL: each entry's HOST */
} sluice_worker_config;

/* ---- requests ---------------------------------------------------------- */

/* The request head, as a view (see lifetimes above). Byte strings are not
 * NUL-terminated. Header names are lower-case (the gateway lowers them). */
typedef struct {
    sluice_bytes method;      /* "GET", ... */
    sluice_bytes target;      /* "/path?query" */
    uint32_t version;         /* HTTP version times ten: 10, 11, or 20 (HTTP/2) */
    sluice_headers headers;   /* in order, names may repeat */
    sluice_addr client;       /* host "" and port 0 when unknown */
    sluice_addr server;
    sluice_bytes scheme;      /* "http" or "https" */
    uint32_t body_mode;       /* SLUICE_BODY_NONE / _FOLLOWS / _ON_CREDIT / _WEBSOCKET */
} sluice_req;

/* Deep copy into a single malloc'ed block (free it with free()); NULL on ENOMEM. */
sluice_req *sluice_req_copy(const sluice_req *r);
/* First header named `name` (ASCII case-insensitive): true and *value set. */
bool sluice_headers_find(const sluice_headers *h, const char *name, sluice_bytes *value);

static inline sluice_bytes sluice_bytes_str(const char *s)
{
    sluice_bytes b = {(const uint8_t *)s, s ? strlen(s) : 0};
    return b;
}
static inline sluice_header sluice_header_str(const char *name, const char *value)
{
    sluice_header h = {sluice_bytes_str(name), sluice_bytes_str(value)};
    return h;
}

/* on_cancel reason when the link itself is lost or closed (not a wire value;
 * wire reasons are SLUICE_CANCEL_* from sluice_proto.h, unknown ones passed
 * through as received). */
#define SLUICE_WORKER_CANCEL_LINK 0

/* ---- callbacks --------------------------------------------------------- */

/* `ud` is the udata given to sluice_worker_new. Only on_request is required.
 * Callbacks may call any function of this library except sluice_worker_free. */
typedef struct {
    /* The handshake completed; `gw` (a view) holds the gateway's settings. */
    void (*on_ready)(sluice_worker *w, const sluice_hello *gw, void *ud);
    /* A new stream. Respond now or later (from any loop callback). For
     * body_mode SLUICE_BODY_ON_CREDIT the gateway holds the body until the
     * worker grants credit: the library grants the initial window right after
     * this callback returns (placed ahead of a response head sent from it, so
     * the gateway can still answer 100 Continue; not at all if the response
     * is already complete) unless it called sluice_stream_pause_reading (then
     * sluice_stream_read_start grants it later; call sluice_stream_set_limit
     * first to raise the body limit, or respond without reading to refuse). */
    void (*on_request)(sluice_stream *s, const sluice_req *req, void *ud);
    /* Request body bytes (a view). In the default (reading) mode they count
     * as consumed when this returns and credit flows back automatically. */
    void (*on_body)(sluice_stream *s, const uint8_t *data, size_t len, void *ud);
    /* The request body is complete; trailers (a view, count 0 if none). */
    void (*on_end)(sluice_stream *s, const sluice_headers *trailers, void *ud);
    /* The gateway cancelled the stream (reason SLUICE_CANCEL_*) or the link
     * went away (SLUICE_WORKER_CANCEL_LINK). Nothing more can be sent on it;
     * pending writes fail with -ECANCELED (-EPIPE for a lost link), then
     * on_stream_closed follows. */
    void (*on_cancel)(sluice_stream *s, uint64_t reason, void *ud);
    /* Last callback of a stream: free its state here. `s` is freed after. */
    void (*on_stream_closed)(sluice_stream *s, void *ud);
    /* The gateway sent DRAIN: no new streams will come. The library closes
     * the link once the open streams have finished. */
    void (*on_drain)(sluice_worker *w, uint64_t timeout_ms, void *ud);
    /* The link is closed and every stream is gone. err: 0 for an orderly
     * close (drain, shutdown, sluice_worker_close); -ECONNRESET if the gateway
     * closed the connection unexpectedly; SLUICE_PROTO_E_* for a protocol
     * error (detected here, or reported by the gateway in an ERROR frame);
     * another -errno for a connect/socket failure. The worker may be connected
     * again or freed from here. */
    void (*on_closed)(sluice_worker *w, int err, void *ud);

    /* ---- WebSockets (PROTOCOL.md 5.2). Setting on_websocket opts in: the
     * HELLO announces `websocket`, and each WebSocket opening handshake
     * arrives here instead of on_request (body_mode SLUICE_BODY_WEBSOCKET;
     * the offered subprotocols are in the sec-websocket-protocol headers,
     * see sluice_ws_offered). Accept with sluice_ws_accept, or refuse with an
     * ordinary response (sluice_stream_respond, write, end). */
    void (*on_websocket)(sluice_stream *s, const sluice_req *req, void *ud);
    /* One whole message (a view, valid until the callback returns; text
     * messages are UTF-8, checked by the gateway). A message that arrives in
     * one piece is passed straight from the read buffer; one in several is
     * reassembled (up to ws_max_message). Credit: as for on_body, a message is
     * consumed when this returns (or, paused, when reported with
     * sluice_stream_consumed / read_start), so a slow app slows the client.
     * The pieces of a reassembled message are credited as they are copied:
     * the message must be complete before it can be delivered. */
    void (*on_message)(sluice_stream *s, const uint8_t *data, size_t len, bool text, void *ud);
    /* The WebSocket closed: the gateway's CLOSE (the client's code and
     * reason, or one the gateway chose), or the library's own CLOSE 1009
     * for a message above ws_max_message. Nothing more can be sent; pending
     * sends fail with -ECANCELED; on_stream_closed follows. */
    void (*on_ws_close)(sluice_stream *s, unsigned code, const uint8_t *reason, size_t reason_len,
                        void *ud);
    /* The client answered a sluice_ws_ping (data as it sent it). */
    void (*on_ws_pong)(sluice_stream *s, const uint8_t *data, size_t len, void *ud);
} sluice_worker_callbacks;

/* ---- worker ------------------------------------------------------------ */

/* Remote mode (PROTOCOL.md 10.6): when socket_path lists several addresses,
 * or any tcp:/tls: one, the worker keeps one link per gateway address (host
 * names resolved with uv_getaddrinfo, again every resolve interval) and
 * reopens each link that fails, closes or falls silent (it PINGs each
 * every ping interval), with backoff, until it is stopped.
 * The API stays the same: sluice_stream_worker() and the callbacks' `w` are
 * the worker itself; on_ready and on_drain come once per link;
 * sluice_worker_id/pool report the first ready link's; at most max_streams
 * streams are open over all links (a REQUEST beyond: RESET overloaded).
 * on_closed comes once, when the worker has stopped (shutdown: RETIRE on
 * every link, each closed after its DRAIN and its streams; close: at once):
 * err 0, or SLUICE_PROTO_E_AUTH when a gateway refused the token, which
 * stops the worker as shutdown does. Losing links never ends it. Progress is
 * logged to stderr. A single Unix path keeps the one-link behaviour below. */

/* Validates and copies the config (-EINVAL, e.g. for tls_cert without
 * tls_key; -EDESTADDRREQ if no socket path is given nor in $SLUICE_SOCKET).
 * Nothing is opened until connect. */
int sluice_worker_new(sluice_worker **out, uv_loop_t *loop, const sluice_worker_config *config,
                      const sluice_worker_callbacks *callbacks, void *udata);
/* Frees the worker. If it is still connected it is closed first without any
 * further callback (streams' state is then the caller's to free), and the
 * memory is released once the loop has run the handle close callbacks.
 * Prefer sluice_worker_close + free from its callback. Not from callbacks
 * other than on_closed and the close callback. */
void sluice_worker_free(sluice_worker *w);

/* Starts connecting; the result arrives as on_ready or on_closed(err).
 * Returns 0, -EALREADY if connected/connecting, -EINVAL/-ENAMETOOLONG for a
 * bad address, or a resolution/allocation error. The whole of connect +
 * handshake is bounded by handshake_timeout_ms (error SLUICE_PROTO_E_TIMEOUT). */
int sluice_worker_connect(sluice_worker *w);

/* Abortive close: open streams get on_cancel(SLUICE_WORKER_CANCEL_LINK) and
 * on_stream_closed, then on_closed(0 or the first error), then cb (may be
 * NULL). Returns -ENOTCONN (cb not called) if not connected. */
int sluice_worker_close(sluice_worker *w, void (*cb)(sluice_worker *w));

/* Graceful local shutdown (what SIGTERM does in sluice_worker_main): sends
 * RETIRE, answers new REQUESTs with RESET refused (the gateway may retry them
 * elsewhere), and closes the link once the open streams have finished and the
 * gateway has answered with DRAIN -- or when grace_ms (0: the configured
 * shutdown_timeout_ms) runs out, cancelling what is left. Before the
 * handshake completed it simply closes. */
int sluice_worker_shutdown(sluice_worker *w, uint32_t grace_ms);

/* Sends RETIRE: asks the gateway to replace this worker. Keep serving; the
 * gateway answers with DRAIN (on_drain) when the replacement is ready. */
int sluice_worker_retire(sluice_worker *w, const char *reason);

uv_loop_t *sluice_worker_loop(const sluice_worker *w);
void *sluice_worker_udata(const sluice_worker *w);
bool sluice_worker_ready(const sluice_worker *w);    /* handshake done, link up */
bool sluice_worker_draining(const sluice_worker *w); /* DRAIN received or shutting down */
uint32_t sluice_worker_open_streams(const sluice_worker *w);
/* From the gateway's HELLO (0 / "" if absent or not yet known). */
uint64_t sluice_worker_id(const sluice_worker *w);
const char *sluice_worker_pool(const sluice_worker *w);

/* Convenience main: own loop, connect, SIGTERM/SIGINT -> sluice_worker_shutdown
 * (a second signal closes at once), SIGPIPE ignored, run until the link is
 * closed (remote mode: until the worker stopped). Returns a process exit
 * code: 0 after an orderly close, 1 otherwise (the error is printed to
 * stderr; in remote mode also after a second signal). */
int sluice_worker_main(const sluice_worker_config *config, const sluice_worker_callbacks *callbacks,
                       void *udata);

/* For tests only: resolve host names (remote mode) with fn instead of
 * uv_getaddrinfo, synchronously: fill up to cap addresses (the port is
 * set by the library), return their count or a negative error. NULL: the
 * real resolver. Process-wide. */
typedef int (*sluice_worker_resolver)(const char *host, struct sockaddr_storage *out, size_t cap);
void sluice_worker_set_resolver_for_tests(sluice_worker_resolver fn);

/* ---- streams ----------------------------------------------------------- */

uint64_t sluice_stream_id(const sluice_stream *s);
sluice_worker *sluice_stream_worker(const sluice_stream *s);
void *sluice_stream_udata(const sluice_stream *s);
void sluice_stream_set_udata(sluice_stream *s, void *udata);
/* False once the stream closed (END/RESET sent, CANCEL received, link lost). */
bool sluice_stream_is_open(const sluice_stream *s);

/* Sends the response head. has_body false completes (and closes) the stream.
 * -EPROTO if a response was already sent; -EMSGSIZE if the head does not fit
 * in the gateway's max_frame (nothing sent: send a smaller one or reset);
 * -ENOBUFS if the output bound is reached; -EPIPE if the stream is closed;
 * -EINVAL for a status outside 200..599 or an empty header name. */
int sluice_stream_respond(sluice_stream *s, unsigned status, const sluice_header *headers,
                          size_t n_headers, bool has_body);

typedef void (*sluice_write_cb)(sluice_stream *s, int status, void *ud);
/* Queues body bytes after a respond(has_body=true). Never blocks, never
 * copies large data: bytes go out as the gateway's window allows, in BODY
 * frames no larger than its max_frame. cb (may be NULL) fires once, from the
 * loop (never from inside this call), with 0 when all `len` bytes were handed
 * to the socket, or -ECANCELED (stream cancelled/reset) / -EPIPE (link lost)
 * / another error. `data` must stay valid until then. Callbacks fire in write
 * order. -EPROTO before respond or after end; -EPIPE if the stream is closed. */
int sluice_stream_write(sluice_stream *s, const void *data, size_t len, sluice_write_cb cb,
                        void *ud);
/* Completes the response (trailers optional, copied now), after the queued
 * writes. The stream closes once END is sent. */
int sluice_stream_end(sluice_stream *s, const sluice_header *trailers, size_t n_trailers);
/* Abandons the stream (SLUICE_RESET_*): RESET is sent at once, queued writes
 * fail with -ECANCELED. */
int sluice_stream_reset(sluice_stream *s, unsigned code);
/* Sends LIMIT: the largest request body the gateway accepts for this stream. */
int sluice_stream_set_limit(sluice_stream *s, uint64_t max_body);
/* Body bytes queued by sluice_stream_write and not yet framed (waiting for
 * the gateway's credit): watch it for backpressure. */
size_t sluice_stream_pending(const sluice_stream *s);
/* Response body bytes the gateway currently allows. */
uint32_t sluice_stream_send_window(const sluice_stream *s);

/* Request-body credit. Reading (the default): a chunk is consumed when
 * on_body returns, and CREDIT is granted in batches (once half the window is
 * consumed). Paused: on_body still delivers what the gateway already had
 * credit for, but nothing is granted until the app reports consumption with
 * sluice_stream_consumed (manual backpressure) or resumes reading.
 * read_start also grants the initial window of a SLUICE_BODY_ON_CREDIT
 * request (once). All return -EPIPE on a closed stream; consumed returns
 * -EINVAL if n exceeds the bytes delivered and not yet reported. */
int sluice_stream_read_start(sluice_stream *s);
int sluice_stream_pause_reading(sluice_stream *s);
int sluice_stream_consumed(sluice_stream *s, size_t n);

/* ---- WebSocket streams ---------------------------------------------------- */

/* Did the client offer subprotocol `proto` (exact match, in any of its
 * sec-websocket-protocol fields)? */
bool sluice_ws_offered(const sluice_req *req, const char *proto);
/* Accepts a WebSocket stream (RESPONSE 101): `subprotocol` (NULL: none) must
 * be one the client offered; extra headers (set-cookie...) are copied. Then
 * on_message / sluice_ws_send until a close. -EPROTO if the stream is not a
 * WebSocket awaiting its answer; -EPIPE if it is closed. */
int sluice_ws_accept(sluice_stream *s, const char *subprotocol, const sluice_header *headers,
                     size_t n_headers);
/* From on_message only: the message's bytes as a malloc'ed buffer the app
 * now owns (free() it), e.g. to send it on without another copy. A
 * reassembled message's own buffer is handed over; one that arrived in one
 * piece is copied once. NULL outside on_message, on a second call, or on
 * ENOMEM. The message still counts as consumed as described at on_message. */
uint8_t *sluice_ws_take(sluice_stream *s);
/* Sends one whole message, like sluice_stream_write: not copied (keep `data`
 * until cb), never blocks, framed in pieces as the gateway's credit and
 * max_frame allow, cb (may be NULL) once all of it went to the socket (or
 * -ECANCELED / -EPIPE). Messages leave in order; sluice_stream_pending()
 * counts the bytes waiting for credit. -EPROTO unless accepted and open. */
int sluice_ws_send(sluice_stream *s, const void *data, size_t len, bool text, sluice_write_cb cb,
                   void *ud);
/* Asks the gateway to ping the client with `data` (at most 125 bytes, copied;
 * -EINVAL beyond); the answer comes to on_ws_pong. Needs no credit. */
int sluice_ws_ping(sluice_stream *s, const void *data, size_t len);
/* Closes the WebSocket (code 1000..4999, reason NULL or UTF-8, the gateway
 * passes at most 123 bytes) after the messages already queued; the stream
 * closes once the CLOSE is sent. -EINVAL for a code out of range. */
int sluice_ws_close(sluice_stream *s, unsigned code, const char *reason);

#ifdef __cplusplus
}
#endif
#endif
