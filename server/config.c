/* Command-line parsing for the one-pool gateway. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sluice_config_defaults(sluice_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    c->workers = 2;
    strcpy(c->pool_name, "default");
    c->max_header_bytes = 32768;
    c->max_headers = 128;
    c->max_target = 8192;
    c->max_body = 100ull << 20;
    c->max_body_ceiling = UINT64_C(1) << 53;
    c->header_timeout_ms = 10000;
    c->body_timeout_ms = 60000;
    c->keepalive_timeout_ms = 75000;
    c->response_timeout_ms = 60000;
    c->queue_timeout_ms = 30000;
    c->graceful_timeout_ms = 30000;
    c->startup_timeout_ms = 10000;
    c->queue_size = 1024;
    c->window = 256 * 1024;
    c->max_frame = 1 << 20;
    c->max_connections = 10000;
    strcpy(c->access_log, "-");
    strcpy(c->error_log, "-");
    c->log_level = LOG_INFO;
}

int sluice_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -EINVAL;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -EINVAL;
        }
        end++;
        if (*end == 'b' || *end == 'B' || *end == 'i')
            end++;
        if (*end)
            return -EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int sluice_parse_duration(const char *s, uint64_t *out_ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -EINVAL;
    double mult = 1000.0;
    if (!strcmp(end, "ms"))
        mult = 1.0;
    else if (!strcmp(end, "s") || !*end)
        mult = 1000.0;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mult = 60000.0;
    else
        return -EINVAL;
    double ms = v * mult;
    if (ms > 1e15)
        return -EINVAL;
    *out_ms = (uint64_t)(ms + 0.5);
    return 0;
}

static const char usage[] =
    "usage: sluice [OPTIONS] -- COMMAND [ARGS...]\n"
    "\n"
    "Serve HTTP on LISTEN and relay every request to a pool of worker processes\n"
    "running COMMAND, which connect back over the Unix socket named by $SLUICE_SOCKET.\n"
    "\n"
    "Pool:\n"
    "  -l, --listen HOST:PORT       address to serve HTTP on (default 127.0.0.1:8080)\n"
    "  -w, --workers N              worker processes to run (default 2)\n"
    "      --max-streams N          concurrent requests per worker (default: what the\n"
    "                               worker announces, e.g. 1 for a synchronous worker)\n"
    "      --socket-dir DIR         where the pool's Unix socket lives (default: a\n"
    "                               private directory under $TMPDIR)\n"
    "      --pool NAME              pool name passed to workers (default \"default\")\n"
    "      --queue-size N           requests waiting for a free worker before 503 (default 1024)\n"
    "      --queue-timeout DUR      longest wait for a free worker before 504 (default 30s)\n"
    "      --startup-timeout DUR    a worker must connect and say HELLO within (default 10s)\n"
    "      --window SIZE            response-body credit per stream (default 256k)\n"
    "\n"
    "Limits:\n"
    "      --max-header-bytes SIZE  request line and headers (default 32k; 431 beyond)\n"
    "      --max-headers N          header fields per request (default 128; 431 beyond)\n"
    "      --max-target SIZE        request target (default 8k; 414 beyond)\n"
    "      --max-body SIZE          request body (default 100m; 413 beyond; a worker may\n"
    "                               raise it per request with LIMIT)\n"
    "      --max-body-ceiling SIZE  the most a worker may raise it to (default: unlimited)\n"
    "      --max-connections N      open client connections (default 10000)\n"
    "      --max-requests-per-conn N  then Connection: close (default 0: unlimited)\n"
    "\n"
    "Timeouts (DUR: 500ms, 10s, 2m; a bare number is seconds):\n"
    "      --header-timeout DUR     to receive a request head (default 10s; 408)\n"
    "      --keepalive-timeout DUR  idle keep-alive connections (default 75s)\n"
    "      --response-timeout DUR   for the worker's response head (default 60s; 504)\n"
    "      --graceful-timeout DUR   to finish in-flight requests on SIGTERM (default 30s)\n"
    "\n"
    "Logs:\n"
    "      --access-log PATH        one line per request: PATH, - (stderr) or off (default -)\n"
    "      --error-log PATH         PATH or - (stderr, default)\n"
    "      --log-level LEVEL        error, warn, info or debug (default info)\n"
    "\n"
    "  -h, --help                   show this help\n"
    "  -V, --version                show the version\n"
    "\n"
    "Workers get SLUICE_SOCKET, SLUICE_POOL and SLUICE_WORKER_ID in their environment.\n"
    "Signals: SIGTERM/SIGINT finish in-flight requests, then exit.\n";

enum {
    OPT_MAX_STREAMS = 256, OPT_SOCKET_DIR, OPT_POOL, OPT_QUEUE_SIZE, OPT_QUEUE_TIMEOUT,
    OPT_STARTUP_TIMEOUT, OPT_WINDOW, OPT_MAX_HEADER_BYTES, OPT_MAX_HEADERS, OPT_MAX_TARGET,
    OPT_MAX_BODY, OPT_MAX_BODY_CEILING, OPT_MAX_CONNECTIONS, OPT_MAX_REQUESTS_PER_CONN,
    OPT_HEADER_TIMEOUT, OPT_BODY_TIMEOUT, OPT_KEEPALIVE_TIMEOUT, OPT_RESPONSE_TIMEOUT,
    OPT_GRACEFUL_TIMEOUT, OPT_ACCESS_LOG, OPT_ERROR_LOG, OPT_LOG_LEVEL,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, 'l'},
    {"workers", required_argument, NULL, 'w'},
    {"max-streams", required_argument, NULL, OPT_MAX_STREAMS},
    {"socket-dir", required_argument, NULL, OPT_SOCKET_DIR},
    {"pool", required_argument, NULL, OPT_POOL},
    {"queue-size", required_argument, NULL, OPT_QUEUE_SIZE},
    {"queue-timeout", required_argument, NULL, OPT_QUEUE_TIMEOUT},
    {"startup-timeout", required_argument, NULL, OPT_STARTUP_TIMEOUT},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"max-header-bytes", required_argument, NULL, OPT_MAX_HEADER_BYTES},
    {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
    {"max-target", required_argument, NULL, OPT_MAX_TARGET},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"max-body-ceiling", required_argument, NULL, OPT_MAX_BODY_CEILING},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-requests-per-conn", required_argument, NULL, OPT_MAX_REQUESTS_PER_CONN},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
    {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT},
    {"response-timeout", required_argument, NULL, OPT_RESPONSE_TIMEOUT},
    {"graceful-timeout", required_argument, NULL, OPT_GRACEFUL_TIMEOUT},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"error-log", required_argument, NULL, OPT_ERROR_LOG},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int parse_listen(sluice_config *c, const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') { /* [::1]:8080 */
        s++;
        hl -= 2;
    }
    if (hl >= sizeof c->listen_host)
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || end == colon + 1)
        return -EINVAL;
    memcpy(c->listen_host, s, hl);
    c->listen_host[hl] = 0;
    c->listen_port = (int)port;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap || n == 0)
        return -EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t v;
    if (sluice_parse_size(s, &v) < 0 || v < lo || v > hi)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

int sluice_config_parse(sluice_config *c, int argc, char **argv, FILE *out, FILE *err)
{
    int opt, idx;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+l:w:hV", long_opts, &idx)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'l': rc = parse_listen(c, optarg); break;
        case 'w': rc = parse_u32(optarg, 1, 4096, &c->workers); break;
        case OPT_MAX_STREAMS: rc = parse_u32(optarg, 1, 65535, &c->max_streams); break;
        case OPT_SOCKET_DIR: rc = copy_str(c->socket_dir, 100, optarg); break;
        case OPT_POOL: rc = copy_str(c->pool_name, sizeof c->pool_name, optarg); break;
        case OPT_QUEUE_SIZE: rc = parse_u32(optarg, 0, 10000000, &c->queue_size); break;
        case OPT_QUEUE_TIMEOUT: rc = sluice_parse_duration(optarg, &c->queue_timeout_ms); break;
        case OPT_STARTUP_TIMEOUT: rc = sluice_parse_duration(optarg, &c->startup_timeout_ms); break;
        case OPT_WINDOW: rc = parse_u32(optarg, 1024, 0x7fffffff, &c->window); break;
        case OPT_MAX_HEADER_BYTES: rc = parse_u32(optarg, 256, 1 << 20, &c->max_header_bytes); break;
        case OPT_MAX_HEADERS: rc = parse_u32(optarg, 1, 1024, &c->max_headers); break;
        case OPT_MAX_TARGET: rc = parse_u32(optarg, 16, 1 << 20, &c->max_target); break;
        case OPT_MAX_BODY: rc = sluice_parse_size(optarg, &c->max_body); break;
        case OPT_MAX_BODY_CEILING: rc = sluice_parse_size(optarg, &c->max_body_ceiling); break;
        case OPT_MAX_CONNECTIONS: rc = parse_u32(optarg, 1, 10000000, &c->max_connections); break;
        case OPT_MAX_REQUESTS_PER_CONN:
            rc = parse_u32(optarg, 0, UINT32_MAX, &c->max_requests_per_conn);
            break;
        case OPT_HEADER_TIMEOUT: rc = sluice_parse_duration(optarg, &c->header_timeout_ms); break;
        case OPT_BODY_TIMEOUT: rc = sluice_parse_duration(optarg, &c->body_timeout_ms); break;
        case OPT_KEEPALIVE_TIMEOUT: rc = sluice_parse_duration(optarg, &c->keepalive_timeout_ms); break;
        case OPT_RESPONSE_TIMEOUT: rc = sluice_parse_duration(optarg, &c->response_timeout_ms); break;
        case OPT_GRACEFUL_TIMEOUT: rc = sluice_parse_duration(optarg, &c->graceful_timeout_ms); break;
        case OPT_ACCESS_LOG: rc = copy_str(c->access_log, sizeof c->access_log, optarg); break;
        case OPT_ERROR_LOG: rc = copy_str(c->error_log, sizeof c->error_log, optarg); break;
        case OPT_LOG_LEVEL:
            if (!strcasecmp(optarg, "error")) c->log_level = LOG_ERROR;
            else if (!strcasecmp(optarg, "warn")) c->log_level = LOG_WARN;
            else if (!strcasecmp(optarg, "info")) c->log_level = LOG_INFO;
            else if (!strcasecmp(optarg, "debug")) c->log_level = LOG_DEBUG;
            else rc = -EINVAL;
            break;
        case 'h':
            fputs(usage, out);
            return 1;
        case 'V':
            fprintf(out, "sluice %s\n", SLUICE_VERSION);
            return 1;
        case ':':
            fprintf(err, "sluice: option %s needs a value\n", argv[optind - 1]);
            return -EINVAL;
        default:
            fprintf(err, "sluice: unknown option %s (see sluice --help)\n", argv[optind - 1]);
            return -EINVAL;
        }
        if (rc < 0) {
            const char *name = opt == 'l' ? "listen" : opt == 'w' ? "workers" : long_opts[idx].name;
            fprintf(err, "sluice: invalid value for --%s: '%s'\n", name, optarg);
            return -EINVAL;
        }
    }
    if (optind >= argc) {
        fprintf(err, "sluice: no worker command given (usage: sluice [OPTIONS] -- COMMAND [ARGS...])\n");
        return -EINVAL;
    }
    c->command = &argv[optind];
    return 0;
}
