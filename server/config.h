/* Gateway configuration: defaults and the command line (one pool). */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SLUICE_VERSION "0.1.0"
#define SLUICE_SERVER_NAME "sluice/" SLUICE_VERSION

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

typedef struct {
    char listen_host[256];
    int listen_port;
    uint32_t workers;
    uint32_t max_streams;        /* per worker; 0: what the worker announces */
    char socket_dir[512];        /* "" : a private directory under $TMPDIR */
    char pool_name[64];
    uint32_t max_header_bytes;   /* 431 beyond */
    uint32_t max_headers;        /* 431 beyond */
    uint32_t max_target;         /* 414 beyond */
    uint64_t max_body;           /* 413 beyond (a worker may change it with LIMIT) */
    uint64_t max_body_ceiling;   /* LIMIT cannot raise beyond this */
    uint64_t header_timeout_ms;  /* request head must arrive in this time */
    uint64_t body_timeout_ms;    /* idle time allowed while reading a request body */
    uint64_t keepalive_timeout_ms;
    uint64_t response_timeout_ms; /* REQUEST sent -> RESPONSE received */
    uint64_t queue_timeout_ms;
    uint64_t graceful_timeout_ms;
    uint64_t startup_timeout_ms; /* spawn -> HELLO */
    uint32_t queue_size;
    uint32_t window;             /* response-body window per stream (gateway HELLO) */
    uint32_t max_frame;          /* largest frame accepted from workers */
    uint32_t max_connections;
    uint32_t max_requests_per_conn; /* 0: unlimited */
    char access_log[512];        /* "-": stderr, "off": none */
    char error_log[512];         /* "-": stderr */
    int log_level;
    char **command;              /* worker command line (NULL-terminated), points into argv */
} sluice_config;

void sluice_config_defaults(sluice_config *c);

/* Parse the command line. Returns 0 to run, 1 when the process should exit 0
 * (--help, --version printed to `out`), or -EINVAL after printing a message
 * to `err`. */
int sluice_config_parse(sluice_config *c, int argc, char **argv, FILE *out, FILE *err);

/* "64k", "10m", "1g", "123" -> bytes; -EINVAL on error. */
int sluice_parse_size(const char *s, uint64_t *out);
/* "500ms", "10s", "2m", "30" (seconds) -> milliseconds. */
int sluice_parse_duration(const char *s, uint64_t *out_ms);

#endif
