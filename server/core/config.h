/* Gateway configuration: defaults, the command line (one pool) and the
 * config file (any number of pools and routes). */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SLUICE_VERSION "0.1.0"
#define SLUICE_SERVER_NAME "sluice/" SLUICE_VERSION

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* queue_size default: no bound of its own. Each client connection has at
 * most one request waiting, so --max-connections bounds the queue. */
#define SLUICE_QUEUE_UNBOUNDED UINT32_MAX

/* http2: off, on (beside HTTP/1.1, the default), only (no HTTP/1.1: a
 * plain listener serves h2c with prior knowledge alone, TLS offers only
 * ALPN h2). */
enum { SLUICE_HTTP2_OFF = 0, SLUICE_HTTP2_ON = 1, SLUICE_HTTP2_ONLY = 2 };

/* One pool of workers running the same command. */
#define SLUICE_MAX_WORKER_LISTEN 8

typedef struct {
    char name[64];
    char **command;              /* argv, NULL-terminated (owned) */
    char directory[512];         /* working directory; "" : the gateway's */
    char **env;                  /* extra "KEY=VALUE" entries, NULL-terminated (owned) */
    uint32_t n_env;
    char user[64], group[64];    /* run workers as (gateway started as root) */
    uint32_t min_workers, max_workers;
    uint64_t idle_timeout_ms;    /* scale down workers idle this long */
    uint32_t max_streams;        /* per worker; 0: what the worker announces */
    uint64_t max_requests;       /* recycle a worker after this many; 0: never */
    uint64_t max_requests_jitter;
    uint64_t memory_limit;       /* recycle a worker above this RSS; 0: none */
    uint64_t startup_timeout_ms; /* spawn -> HELLO */
    uint64_t ping_interval_ms;   /* PING on TCP/TLS links; silent for 3 of them: dead. 0: off */
    uint64_t graceful_timeout_ms;
    uint64_t max_body;           /* 413 beyond (a worker may change it with LIMIT) */
    uint64_t max_body_ceiling;   /* LIMIT cannot raise beyond this */
    uint64_t ws_max_message;     /* largest WebSocket message from a client (1009 beyond) */
    uint64_t response_timeout_ms; /* REQUEST sent -> RESPONSE received */
    uint32_t queue_size;         /* SLUICE_QUEUE_UNBOUNDED: up to one per client connection */
    uint64_t queue_timeout_ms;
    uint32_t window;             /* response-body window per stream (gateway HELLO) */
    uint32_t max_frame;          /* largest frame accepted from workers */
    char socket_dir[512];        /* "" : a private directory under $TMPDIR */
    uint32_t socket_mode;        /* 0600, or 0660 with socket_group */
    char socket_group[64];
    /* Listeners for remote/attached workers: "tcp:HOST:PORT" (clear text,
     * token required), "tls:HOST:PORT", "unix:PATH". */
    char worker_listen[SLUICE_MAX_WORKER_LISTEN][280];
    uint32_t n_worker_listen;
    char tls_cert[512], tls_key[512]; /* the gateway's certificate on tls: listeners */
    char client_ca[512];         /* tls: require worker certificates chaining to it */
    char token[256];             /* required in HELLO on tcp: (and on tls: when set) */
} sluice_pool_config;

/* Host and path prefix -> pool; the most specific route wins. */
typedef struct {
    char name[64];
    char host[256];              /* "" or "*": any host; "*.example.com": suffix */
    char path[1024];             /* prefix; "" : "/" */
    char pool[64];
} sluice_route_config;

#define SLUICE_MAX_LISTENERS 16
#define SLUICE_MAX_LISTEN_CERTS 8

typedef struct {
    char cert[512], key[512];    /* PEM files */
} sluice_cert_config;

/* One client listener: plain, or TLS with certificates (certs[0] is the
 * default; the others are chosen by SNI). */
typedef struct {
    char name[64];               /* [listen:NAME]; "" from the command line */
    char host[256];
    int port;
    sluice_cert_config certs[SLUICE_MAX_LISTEN_CERTS];
    uint32_t n_certs;            /* 0: plain HTTP */
} sluice_listen_config;

typedef struct {
    char listen_host[256];       /* the first listener */
    int listen_port;
    sluice_listen_config listens[SLUICE_MAX_LISTENERS]; /* every listener */
    uint32_t n_listens;
    uint64_t tls_handshake_timeout_ms;
    int http2;                   /* SLUICE_HTTP2_*: h2c by preface on plain listeners, ALPN h2 on TLS */
    uint32_t h2_max_streams;     /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint64_t send_timeout_ms;    /* HTTP/2: a response the client takes nothing of */
    uint64_t ws_ping_interval_ms; /* WebSocket keepalive ping after this idle; 0: none */
    char admin[280];             /* "HOST:PORT", "unix:PATH" or "" (off) */
    char admin_token[256];       /* Bearer token for the admin POST endpoints; "" : none (never logged) */
    uint32_t max_header_bytes;   /* 431 beyond */
    uint32_t max_headers;        /* 431 beyond */
    uint32_t max_target;         /* 414 beyond */
    uint64_t header_timeout_ms;  /* request head must arrive in this time */
    uint64_t keepalive_timeout_ms;
    uint64_t body_timeout_ms;    /* longest gap in a request body upload; 0: none */
    uint64_t graceful_timeout_ms;
    uint64_t shutdown_delay_ms;  /* on SIGTERM: fail /readyz, keep serving this long, then stop */
    uint32_t max_connections;
    uint32_t max_requests_per_conn; /* 0: unlimited */
    char access_log[512];        /* "-": stderr, "off": none */
    char error_log[512];         /* "-": stderr */
    int log_level;
    char config_path[512];       /* "" : from the command line */

    sluice_pool_config *pools;   /* pools[0] is the default pool */
    uint32_t n_pools;
    sluice_route_config *routes;
    uint32_t n_routes;
} sluice_config;

void sluice_config_defaults(sluice_config *c);
void sluice_pool_defaults(sluice_pool_config *p, const char *name);
void sluice_config_free(sluice_config *c);

/* Parse the command line into `c` (defaults first). With --config the file
 * is loaded too (flags given on the command line still apply to its
 * [server] section). Returns 0 to run, 1 when the process should exit 0
 * (--help, --version, printed to `out`), 2 for a --check-config file that
 * parsed and validated (see sluice_config_print_ok), or a
 * negative error after printing a message to `err`. */
int sluice_config_parse(sluice_config *c, int argc, char **argv, FILE *out, FILE *err);
/* --check-config: sluice_config_parse returned 2 (valid so far; the caller
 * checks what core/ cannot, the TLS certificates, then prints this). */
void sluice_config_print_ok(const sluice_config *c, FILE *out);

/* Load a config file into `c` (which holds defaults). Errors are printed as
 * "FILE:LINE: message" to `err`. */
int sluice_config_load(sluice_config *c, const char *path, FILE *err);

/* Cross-checks after parsing (a pool per route, commands present, ...). */
int sluice_config_validate(const sluice_config *c, FILE *err);

const sluice_pool_config *sluice_config_pool(const sluice_config *c, const char *name);

struct sockaddr_storage;
/* A numeric IPv4/IPv6 host and port -> socket address; -EINVAL if not numeric. */
int sluice_sockaddr(const char *host, int port, struct sockaddr_storage *out);
/* "HOST:PORT" or "[V6]:PORT" (as accepted for listen addresses) -> socket address. */
int sluice_listen_sockaddr(const char *hostport, struct sockaddr_storage *out);
/* A numeric loopback HOST:PORT (127.0.0.0/8, ::1, ::ffff:127.x). */
bool sluice_address_is_loopback(const char *hostport);

/* "64k", "10m", "1g", "123" -> bytes; -EINVAL on error. */
int sluice_parse_size(const char *s, uint64_t *out);
/* "500ms", "10s", "2m", "30" (seconds) -> milliseconds. */
int sluice_parse_duration(const char *s, uint64_t *out_ms);

#endif
