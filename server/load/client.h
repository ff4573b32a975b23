/* One load-generating thread: its own uv loop, its share of the
 * connections, its share of the schedule (open loop) and its own stats.
 *
 * Closed loop (rate == 0): every connection keeps `pipeline` requests in
 * flight; latency runs from the moment a request is written.
 *
 * Open loop (rate > 0): request k of this thread is due at
 *   start + (k + phase) / rate
 * fixed in advance. Due requests go to connections with room (fewer than
 * `pipeline` in flight), first come first served; when none has room they
 * wait, and their latency still runs from the time they were due (no
 * coordinated omission). On Linux the schedule is driven by a timerfd
 * (sub-millisecond), elsewhere by a uv timer.
 *
 * A response completes a request; an error fails every request in flight on
 * its connection (counted by kind), which is then closed and reopened (after
 * a backoff when connecting fails). A response carrying Connection: close
 * ends the connection cleanly: requests pipelined behind it are sent again
 * on the next connection (open loop: with their original due time).
 *
 * Transport: plain TCP, or TLS (one SSL per connection over memory buffers,
 * see tls.h): ciphertext read by libuv is handed to OpenSSL, plaintext goes
 * to the protocol; plaintext to send is encrypted into the connection's
 * output buffer, which libuv writes. Protocol: HTTP/1.1 (llhttp, requests
 * pipelined in order), or HTTP/2 (an nghttp2 client session fed with
 * nghttp2_session_mem_recv and drained with nghttp2_session_mem_send;
 * `pipeline` is then the number of concurrent streams). Both protocol
 * cores are sans-I/O; this file owns the sockets.
 *
 * WebSocket (ws): each connection sends the RFC 6455 opening handshake (a
 * fresh random key each time; the 101 and Sec-WebSocket-Accept are
 * checked), then its "requests" are masked messages, each answered by its
 * echo (server/ws/ parses the server's frames). `pipeline` messages are in
 * flight per connection; a message completes when its whole echo has
 * arrived, and an echo that differs (size, bytes, text flag) is an `echo`
 * error. Pings are answered; at the end each connection closes with 1000
 * and waits (bounded) for the server's close frame. */
#ifndef SLOAD_CLIENT_H
#define SLOAD_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hist.h"

struct ssl_ctx_st;
struct ssl_st;
struct ssl_session_st;

/* Latencies are recorded in microseconds, up to about 71 minutes. */
#define SLOAD_HIST_HIGHEST ((uint64_t)UINT32_MAX)

typedef enum {
    SLOAD_ERR_CONNECT,   /* connection attempts refused, failed or timed out */
    SLOAD_ERR_READ,      /* reset or closed with requests in flight */
    SLOAD_ERR_WRITE,     /* the request could not be written */
    SLOAD_ERR_TIMEOUT,   /* no complete response within the response timeout */
    SLOAD_ERR_PARSE,     /* malformed or unexpected response (HTTP/2: protocol error) */
    SLOAD_ERR_TLS,       /* TLS handshake failed (per attempt), or a TLS error later */
    SLOAD_ERR_ECHO,      /* WebSocket: an echo that is not the message sent */
    SLOAD_ERR_COUNT
} sload_error_kind;

const char *sload_error_name(sload_error_kind k);

/* Start line shared by the threads: each reports itself connected, then
 * waits for the common start time. */
typedef struct sload_gate sload_gate;
int sload_gate_new(sload_gate **out, unsigned parties);
void sload_gate_free(sload_gate *g);
/* Main thread: waits (at most timeout_ns) for every party; how many came. */
unsigned sload_gate_wait_ready(sload_gate *g, uint64_t timeout_ns);
void sload_gate_open(sload_gate *g, uint64_t start_ns);

typedef struct {
    const struct sockaddr *addr;
    const char *head;            /* request line and headers (shared) */
    size_t head_len;
    const char *body;            /* shared; may be NULL */
    size_t body_len;
    struct ssl_ctx_st *tls_ctx;  /* non-NULL: TLS (shared SSL_CTX) */
    const char *tls_host;        /* server name: SNI (unless an IP literal), verification */
    bool tls_verify;             /* check tls_host against the certificate */
    bool tls_resume;             /* resume the last session (tls_ctx set up for it) */
    bool h2;                     /* HTTP/2 (prior knowledge over TCP; ALPN over TLS) */
    const void *h2_headers;      /* sload_h2_header[h2_nheaders] (request.h), shared */
    size_t h2_nheaders;
    bool head_method;            /* responses have no body */
    bool keepalive;              /* false: the request says Connection: close */
    bool ws;                     /* WebSocket: head is the opening handshake */
    size_t ws_key_off;           /* where in head the 24-character key goes */
    const uint8_t *ws_msg;       /* the message every connection sends (shared) */
    size_t ws_msg_len;
    bool ws_text;                /* text (else binary) messages */
    unsigned connections;        /* this thread's */
    unsigned pipeline;           /* requests in flight per connection, >= 1 (HTTP/2: streams) */
    double rate;                 /* this thread's requests/s; 0: closed loop */
    double phase;                /* open loop: offset in intervals, [0, 1) */
    uint64_t requests;           /* open loop: requests to schedule (0: until duration) */
    atomic_int_fast64_t *budget; /* closed loop -n: shared requests left; NULL: no limit */
    uint64_t duration_ns;        /* measured window; 0: until the requests are done */
    uint64_t warmup_ns;          /* load before the window, not recorded */
    uint64_t connect_timeout_ns;
    uint64_t response_timeout_ns;
    sload_gate *gate;
    void (*on_done)(void *arg);  /* called from the thread when it has finished */
    void *on_done_arg;
} sload_client_config;

typedef struct {
    uint64_t completed;          /* responses to requests sent in the window */
    uint64_t completed_window;   /* ... of which completed before it closed (req/s) */
    uint64_t status[6];          /* by class: [2] 2xx ... [5] 5xx, [0] other */
    uint64_t errors[SLOAD_ERR_COUNT];
    uint64_t sent;               /* requests written in the window */
    uint64_t resent;             /* sent again after a Connection: close */
    uint64_t connects;           /* connections opened (all phases) */
    uint64_t connects_window;    /* ... of which started in the window */
    uint64_t tls_resumed;        /* TLS connections that resumed a session (all phases) */
    char tls_info[96];           /* negotiated version, cipher, ALPN (first connection) */
    char tls_error[160];         /* why the first TLS failure failed */
    char ws_error[160];          /* why the first WebSocket handshake failed */
    uint64_t bytes_read;         /* in the window */
    uint64_t bytes_written;      /* in the window */
    uint64_t scheduled;          /* open loop: due within the window */
    uint64_t backlog_end;        /* open loop: due but not sent when the window closed */
    uint64_t backlog_oldest_ns;  /* ... how long the oldest of them had waited */
    uint64_t unfinished;         /* still in flight when the drain timed out */
    uint64_t window_ns;          /* length of the measured window */
    bool stalled;                /* -n: ended early, nothing moved for a whole timeout */
    sload_hist *latency;         /* us; open loop: from the due time */
    sload_hist *service;         /* us; open loop: from the actual send */
    sload_hist *lag;             /* us; open loop: due -> sent */
    sload_hist *connect;         /* us; connection set-up times */
} sload_stats;

typedef struct sload_client sload_client;

int sload_client_new(sload_client **out, const sload_client_config *cfg);
void sload_client_free(sload_client *c);
/* The thread body: connects, waits at the gate, runs, drains. 0 or -errno. */
int sload_client_run(sload_client *c);
/* From any thread: end the window now and drain. */
void sload_client_stop(sload_client *c);
/* Valid after sload_client_run returned. */
const sload_stats *sload_client_stats(const sload_client *c);

/* For sload_tls_options.on_session with --tls-resume: keeps the session for
 * the thread's next connections. */
int sload_client_on_tls_session(struct ssl_st *ssl, struct ssl_session_st *sess);

/* Live figures for the progress line (any thread, approximate). */
typedef struct {
    uint64_t completed;
    uint64_t errors;
    uint64_t backlog;
    bool warming;
} sload_live;
void sload_client_live(const sload_client *c, sload_live *out);

#endif
