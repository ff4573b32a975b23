/* Configuration: defaults, command line, config file (INI, parsed by
 * libinih; commands split by wordexp, both from the system's libraries). */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wordexp.h>

/* ---- defaults --------------------------------------------------------- */

void sluice_pool_defaults(sluice_pool_config *p, const char *name)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->min_workers = p->max_workers = 2;
    p->idle_timeout_ms = 60000;
    p->startup_timeout_ms = 10000;
    p->ping_interval_ms = 5000;
    p->graceful_timeout_ms = 30000;
    p->max_body = 100ull << 20;
    p->max_body_ceiling = UINT64_C(1) << 53;
    p->ws_max_message = 1u << 20;
    p->response_timeout_ms = 60000;
    p->queue_size = SLUICE_QUEUE_UNBOUNDED;
    p->queue_timeout_ms = 30000;
    p->window = 256 * 1024;
    p->max_frame = 1 << 20;
    p->socket_mode = 0600;
}

void sluice_config_defaults(sluice_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    c->tls_handshake_timeout_ms = 10000;
    c->http2 = SLUICE_HTTP2_ON;
    c->h2_max_streams = 100;
    c->send_timeout_ms = 60000;
    c->ws_ping_interval_ms = 30000;
    c->max_header_bytes = 32768;
    c->max_headers = 128;
    c->max_target = 8192;
    c->header_timeout_ms = 10000;
    c->keepalive_timeout_ms = 75000;
    c->body_timeout_ms = 60000;
    c->graceful_timeout_ms = 30000;
    c->max_connections = 10000;
    strcpy(c->access_log, "-");
    strcpy(c->error_log, "-");
    c->log_level = LOG_INFO;
}

static void free_strv(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

void sluice_config_free(sluice_config *c)
{
    for (uint32_t i = 0; i < c->n_pools; i++) {
        free_strv(c->pools[i].command);
        free_strv(c->pools[i].env);
    }
    free(c->pools);
    free(c->routes);
    c->pools = NULL;
    c->routes = NULL;
    c->n_pools = c->n_routes = 0;
}

const sluice_pool_config *sluice_config_pool(const sluice_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->n_pools; i++)
        if (!strcmp(c->pools[i].name, name))
            return &c->pools[i];
    return NULL;
}

static sluice_pool_config *add_pool(sluice_config *c, const char *name)
{
    sluice_pool_config *np = realloc(c->pools, (c->n_pools + 1) * sizeof *np);
    if (!np)
        return NULL;
    c->pools = np;
    sluice_pool_config *p = &c->pools[c->n_pools++];
    sluice_pool_defaults(p, name);
    return p;
}

/* ---- value parsers ---------------------------------------------------- */

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
        if (*end == 'b' || *end == 'B')
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
    double mult;
    if (!strcmp(end, "ms"))
        mult = 1.0;
    else if (!strcmp(end, "s") || !*end)
        mult = 1000.0;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mult = 60000.0;
    else if (!strcmp(end, "h"))
        mult = 3600000.0;
    else
        return -EINVAL;
    double ms = v * mult;
    if (ms > 1e15)
        return -EINVAL;
    *out_ms = (uint64_t)(ms + 0.5);
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

static int parse_listen(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') { /* [::1]:8080 */
        s++;
        hl -= 2;
    }
    if (hl >= cap || hl == 0)
        return -EINVAL;
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || v < 0 || v > 65535 || end == colon + 1)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    *port = (int)v;
    return 0;
}

int sluice_sockaddr(const char *host, int port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (port < 0 || port > 65535)
        return -EINVAL;
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return -EINVAL;
}

int sluice_listen_sockaddr(const char *hostport, struct sockaddr_storage *out)
{
    char host[256];
    int port;
    if (parse_listen(hostport, host, sizeof host, &port) < 0)
        return -EINVAL;
    return sluice_sockaddr(host, port, out);
}

bool sluice_address_is_loopback(const char *hostport)
{
    struct sockaddr_storage ss;
    if (sluice_listen_sockaddr(hostport, &ss) < 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap || n == 0)
        return -EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

static int parse_level(const char *s, int *out)
{
    if (!strcasecmp(s, "error")) *out = LOG_ERROR;
    else if (!strcasecmp(s, "warn")) *out = LOG_WARN;
    else if (!strcasecmp(s, "info")) *out = LOG_INFO;
    else if (!strcasecmp(s, "debug")) *out = LOG_DEBUG;
    else return -EINVAL;
    return 0;
}

/* Split a command line like a shell would, without running anything. */
static int split_command(const char *s, char ***out)
{
    wordexp_t we;
    int wrc = wordexp(s, &we, WRDE_NOCMD | WRDE_UNDEF);
    if (wrc != 0) {
        /* `we` holds something to free only after WRDE_NOSPACE */
        if (wrc == WRDE_NOSPACE)
            wordfree(&we);
        return -EINVAL;
    }
    if (we.we_wordc == 0) {
        wordfree(&we);
        return -EINVAL;
    }
    char **v = calloc(we.we_wordc + 1, sizeof *v);
    if (!v) {
        wordfree(&we);
        return -ENOMEM;
    }
    for (size_t i = 0; i < we.we_wordc; i++)
        if (!(v[i] = strdup(we.we_wordv[i]))) {
            free_strv(v);
            wordfree(&we);
            return -ENOMEM;
        }
    wordfree(&we);
    free_strv(*out);
    *out = v;
    return 0;
}

static int strv_from_argv(char **argv, char ***out)
{
    size_t n = 0;
    while (argv[n])
        n++;
    char **v = calloc(n + 1, sizeof *v);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup(argv[i]))) {
            free_strv(v);
            return -ENOMEM;
        }
    free_strv(*out);
    *out = v;
    return 0;
}

/* The variables the gateway sets for its workers (PROTOCOL.md 10.2): a
 * pool entry must not shadow them. */
static bool gateway_env(const char *kv)
{
    static const char *const own[] = {"SLUICE_SOCKET=", "SLUICE_POOL=", "SLUICE_WORKER_ID="};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (!strncmp(kv, own[i], strlen(own[i])))
            return true;
    return false;
}

static int add_env(sluice_pool_config *p, const char *kv)
{
    if (!strchr(kv, '=') || kv[0] == '=' || gateway_env(kv))
        return -EINVAL;
    char **nv = realloc(p->env, (p->n_env + 2) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    p->env = nv;
    if (!(nv[p->n_env] = strdup(kv)))
        return -ENOMEM;
    nv[++p->n_env] = NULL;
    return 0;
}

/* ---- keys shared by the command line and the file --------------------- */

/* An admin token goes in "Authorization: Bearer TOKEN": visible ASCII
 * (no spaces or controls), 1..255 bytes. */
static bool valid_token(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* A [server] key. 1: unknown key; 0: set; <0: bad value. */
static int set_server(sluice_config *c, const char *k, const char *v)
{
    uint64_t x;
    if (!strcmp(k, "listen"))
        return parse_listen(v, c->listen_host, sizeof c->listen_host, &c->listen_port);
    if (!strcmp(k, "admin"))
        return copy_str(c->admin, sizeof c->admin, v);
    if (!strcmp(k, "admin_token"))
        return valid_token(v) ? copy_str(c->admin_token, sizeof c->admin_token, v) : -EINVAL;
    if (!strcmp(k, "tls_handshake_timeout"))
        return sluice_parse_duration(v, &c->tls_handshake_timeout_ms) < 0 ? -EINVAL : 0;
    if (!strcmp(k, "http2")) {
        if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
            c->http2 = SLUICE_HTTP2_ON;
        else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
            c->http2 = SLUICE_HTTP2_OFF;
        else if (!strcmp(v, "only"))
            c->http2 = SLUICE_HTTP2_ONLY;
        else
            return -EINVAL;
        return 0;
    }
    if (!strcmp(k, "h2_max_streams"))
        return parse_u32(v, 1, 1u << 20, &c->h2_max_streams);
    if (!strcmp(k, "send_timeout"))
        return sluice_parse_duration(v, &c->send_timeout_ms);
    if (!strcmp(k, "ws_ping_interval"))
        return sluice_parse_duration(v, &c->ws_ping_interval_ms);
    if (!strcmp(k, "max_header_bytes"))
        return parse_u32(v, 256, 1 << 20, &c->max_header_bytes);
    if (!strcmp(k, "max_headers"))
        return parse_u32(v, 1, 1024, &c->max_headers);
    if (!strcmp(k, "max_target"))
        return parse_u32(v, 16, 1 << 20, &c->max_target);
    if (!strcmp(k, "max_connections"))
        return parse_u32(v, 1, 10000000, &c->max_connections);
    if (!strcmp(k, "max_requests_per_conn"))
        return parse_u32(v, 0, UINT32_MAX, &c->max_requests_per_conn);
    if (!strcmp(k, "header_timeout"))
        return sluice_parse_duration(v, &c->header_timeout_ms);
    if (!strcmp(k, "keepalive_timeout"))
        return sluice_parse_duration(v, &c->keepalive_timeout_ms);
    if (!strcmp(k, "body_timeout"))
        return sluice_parse_duration(v, &c->body_timeout_ms);
    if (!strcmp(k, "graceful_timeout"))
        return sluice_parse_duration(v, &c->graceful_timeout_ms);
    if (!strcmp(k, "shutdown_delay"))
        return sluice_parse_duration(v, &c->shutdown_delay_ms);
    if (!strcmp(k, "access_log"))
        return copy_str(c->access_log, sizeof c->access_log, v);
    if (!strcmp(k, "error_log"))
        return copy_str(c->error_log, sizeof c->error_log, v);
    if (!strcmp(k, "log_level"))
        return parse_level(v, &c->log_level);
    (void)x;
    return 1;
}

/* A [pool:NAME] key. */
static int set_pool(sluice_pool_config *p, const char *k, const char *v)
{
    uint64_t x;
    int rc;
    if (!strcmp(k, "command"))
        return split_command(v, &p->command);
    if (!strcmp(k, "directory"))
        return copy_str(p->directory, sizeof p->directory, v);
    if (!strcmp(k, "env"))
        return add_env(p, v);
    if (!strcmp(k, "user"))
        return copy_str(p->user, sizeof p->user, v);
    if (!strcmp(k, "group"))
        return copy_str(p->group, sizeof p->group, v);
    if (!strcmp(k, "workers")) {
        rc = parse_u32(v, 0, 4096, &p->min_workers);
        p->max_workers = p->min_workers;
        return rc;
    }
    if (!strcmp(k, "min_workers"))
        return parse_u32(v, 0, 4096, &p->min_workers);
    if (!strcmp(k, "max_workers"))
        return parse_u32(v, 0, 4096, &p->max_workers);
    if (!strcmp(k, "idle_timeout"))
        return sluice_parse_duration(v, &p->idle_timeout_ms);
    if (!strcmp(k, "max_streams"))
        return parse_u32(v, 1, 65535, &p->max_streams);
    if (!strcmp(k, "max_requests"))
        return sluice_parse_size(v, &p->max_requests);
    if (!strcmp(k, "max_requests_jitter"))
        return sluice_parse_size(v, &p->max_requests_jitter);
    if (!strcmp(k, "memory_limit"))
        return sluice_parse_size(v, &p->memory_limit);
    if (!strcmp(k, "startup_timeout"))
        return sluice_parse_duration(v, &p->startup_timeout_ms);
    if (!strcmp(k, "ping_interval"))
        return sluice_parse_duration(v, &p->ping_interval_ms);
    if (!strcmp(k, "graceful_timeout"))
        return sluice_parse_duration(v, &p->graceful_timeout_ms);
    if (!strcmp(k, "max_body"))
        return sluice_parse_size(v, &p->max_body);
    if (!strcmp(k, "max_body_ceiling"))
        return sluice_parse_size(v, &p->max_body_ceiling);
    if (!strcmp(k, "ws_max_message"))
        return sluice_parse_size(v, &p->ws_max_message);
    if (!strcmp(k, "response_timeout"))
        return sluice_parse_duration(v, &p->response_timeout_ms);
    if (!strcmp(k, "queue_size")) {
        if (!strcmp(v, "unbounded")) {
            p->queue_size = SLUICE_QUEUE_UNBOUNDED;
            return 0;
        }
        return parse_u32(v, 0, 10000000, &p->queue_size);
    }
    if (!strcmp(k, "queue_timeout"))
        return sluice_parse_duration(v, &p->queue_timeout_ms);
    if (!strcmp(k, "window"))
        return parse_u32(v, 1024, 0x7fffffff, &p->window);
    if (!strcmp(k, "max_frame"))
        return parse_u32(v, 16384, 16777215, &p->max_frame);
    if (!strcmp(k, "socket_dir"))
        return strlen(v) < 90 ? copy_str(p->socket_dir, sizeof p->socket_dir, v) : -EINVAL;
    if (!strcmp(k, "socket_mode")) {
        char *end;
        unsigned long m = strtoul(v, &end, 8);
        if (*end || (m != 0600 && m != 0660))
            return -EINVAL;
        p->socket_mode = (uint32_t)m;
        return 0;
    }
    if (!strcmp(k, "socket_group"))
        return copy_str(p->socket_group, sizeof p->socket_group, v);
    if (!strcmp(k, "tcp_listen") || !strcmp(k, "worker_listen")) {
        /* tcp_listen = HOST:PORT is the older spelling of tcp:HOST:PORT */
        char h[256];
        int port;
        const char *scheme = "tcp:", *rest = v;
        if (!strcmp(k, "worker_listen")) {
            if (!strncmp(v, "tcp:", 4) || !strncmp(v, "tls:", 4) || !strncmp(v, "unix:", 5)) {
                scheme = !strncmp(v, "unix:", 5) ? "unix:" : (v[1] == 'l' ? "tls:" : "tcp:");
                rest = v + strlen(scheme);
            }
        }
        if (!strcmp(scheme, "unix:")) {
            if (!rest[0] || strlen(rest) >= 108)
                return -EINVAL;
        } else {
            struct sockaddr_storage ss; /* an IP address and a port, as bound */
            if (parse_listen(rest, h, sizeof h, &port) < 0 || sluice_listen_sockaddr(rest, &ss) < 0)
                return -EINVAL;
        }
        if (p->n_worker_listen == SLUICE_MAX_WORKER_LISTEN)
            return -EINVAL;
        char *dst = p->worker_listen[p->n_worker_listen];
        if ((size_t)snprintf(dst, sizeof p->worker_listen[0], "%s%s", scheme, rest) >= sizeof p->worker_listen[0])
            return -EINVAL;
        p->n_worker_listen++;
        return 0;
    }
    if (!strcmp(k, "tls_cert"))
        return copy_str(p->tls_cert, sizeof p->tls_cert, v);
    if (!strcmp(k, "tls_key"))
        return copy_str(p->tls_key, sizeof p->tls_key, v);
    if (!strcmp(k, "client_ca"))
        return copy_str(p->client_ca, sizeof p->client_ca, v);
    if (!strcmp(k, "token"))
        return copy_str(p->token, sizeof p->token, v);
    (void)x;
    return 1;
}

static int set_route(sluice_route_config *r, const char *k, const char *v)
{
    if (!strcmp(k, "host"))
        return strlen(v) < sizeof r->host ? (strcpy(r->host, v), 0) : -EINVAL;
    if (!strcmp(k, "path"))
        return v[0] == '/' && strlen(v) < sizeof r->path ? (strcpy(r->path, v), 0) : -EINVAL;
    if (!strcmp(k, "pool"))
        return copy_str(r->pool, sizeof r->pool, v);
    return 1;
}

/* ---- config file ------------------------------------------------------ */

typedef struct {
    sluice_config *c;
    char msg[512];
    char section[128];
    sluice_pool_config *pool;
    sluice_route_config *route;
    sluice_listen_config *listen;
} load_ctx;

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) >= 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* A [listen:NAME] key: address, then tls_cert / tls_key in pairs. */
static int set_listen(sluice_listen_config *l, const char *k, const char *v)
{
    if (!strcmp(k, "address"))
        return parse_listen(v, l->host, sizeof l->host, &l->port) < 0 ? -EINVAL : 0;
    if (!strcmp(k, "tls_cert")) {
        if (l->n_certs >= SLUICE_MAX_LISTEN_CERTS || (l->n_certs && !l->certs[l->n_certs - 1].key[0]))
            return -EINVAL;
        return copy_str(l->certs[l->n_certs++].cert, sizeof l->certs[0].cert, v);
    }
    if (!strcmp(k, "tls_key")) {
        if (!l->n_certs || l->certs[l->n_certs - 1].key[0])
            return -EINVAL;
        return copy_str(l->certs[l->n_certs - 1].key, sizeof l->certs[0].key, v);
    }
    return 1;
}

/* Section headers: [server], [pool:NAME] / [pool NAME], [route:NAME]. */
static int enter_section(load_ctx *x, const char *section)
{
    snprintf(x->section, sizeof x->section, "%s", section);
    x->pool = NULL;
    x->route = NULL;
    x->listen = NULL;
    if (!strcmp(section, "server"))
        return 1;
    const char *name = NULL;
    bool is_pool = false, is_listen = false;
    if (!strncmp(section, "pool:", 5) || !strncmp(section, "pool ", 5)) {
        name = section + 5;
        is_pool = true;
    } else if (!strncmp(section, "listen:", 7) || !strncmp(section, "listen ", 7)) {
        name = section + 7;
        is_listen = true;
    } else if (!strncmp(section, "route:", 6) || !strncmp(section, "route ", 6)) {
        name = section + 6;
    } else {
        snprintf(x->msg, sizeof x->msg, "unknown section [%s] (expected [server], [listen:NAME], [pool:NAME] or [route:NAME])",
                 section);
        return 0;
    }
    while (*name == ' ')
        name++;
    if (!valid_name(name)) {
        snprintf(x->msg, sizeof x->msg, "bad name in [%s]: use letters, digits, '-', '_', '.'", section);
        return 0;
    }
    sluice_config *c = x->c;
    /* A section named again continues it (as INI files usually behave). */
    if (is_listen) {
        for (uint32_t i = 0; i < c->n_listens; i++)
            if (!strcmp(c->listens[i].name, name)) {
                x->listen = &c->listens[i];
                return 1;
            }
        if (c->n_listens >= SLUICE_MAX_LISTENERS) {
            snprintf(x->msg, sizeof x->msg, "too many listeners (at most %d)", SLUICE_MAX_LISTENERS);
            return 0;
        }
        x->listen = &c->listens[c->n_listens++];
        memset(x->listen, 0, sizeof *x->listen);
        snprintf(x->listen->name, sizeof x->listen->name, "%s", name);
        return 1;
    }
    if (is_pool) {
        x->pool = (sluice_pool_config *)sluice_config_pool(c, name);
        if (!x->pool)
            x->pool = add_pool(c, name);
        return x->pool ? 1 : 0;
    }
    for (uint32_t i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i].name, name)) {
            x->route = &c->routes[i];
            return 1;
        }
    sluice_route_config *nr = realloc(c->routes, (c->n_routes + 1) * sizeof *nr);
    if (!nr)
        return 0;
    c->routes = nr;
    x->route = &c->routes[c->n_routes++];
    memset(x->route, 0, sizeof *x->route);
    snprintf(x->route->name, sizeof x->route->name, "%s", name);
    return 1;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *x = user;
    if (strcmp(section, x->section) && !enter_section(x, section))
        return 0;
    if (!*section) {
        snprintf(x->msg, sizeof x->msg, "'%s' is outside any section", name);
        return 0;
    }
    int rc;
    if (x->listen)
        rc = set_listen(x->listen, name, value);
    else if (x->pool)
        rc = set_pool(x->pool, name, value);
    else if (x->route)
        rc = set_route(x->route, name, value);
    else
        rc = set_server(x->c, name, value);
    if (rc == 1) {
        snprintf(x->msg, sizeof x->msg, "unknown key '%s' in [%s]", name, section);
        return 0;
    }
    if (rc < 0 && !strcmp(name, "admin_token")) { /* a secret: not echoed */
        snprintf(x->msg, sizeof x->msg, "invalid value for 'admin_token': use 1 to 255 visible ASCII "
                 "characters, no spaces");
        return 0;
    }
    if (rc < 0) {
        snprintf(x->msg, sizeof x->msg, "invalid value for '%s': '%s'", name, value);
        return 0;
    }
    return 1;
}

int sluice_config_load(sluice_config *c, const char *path, FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "sluice: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    load_ctx x = {.c = c};
    x.section[0] = 0;
    int line = ini_parse_file(f, ini_cb, &x);
    fclose(f);
    if (line != 0) {
        if (line < 0)
            fprintf(err, "sluice: %s: cannot read\n", path);
        else
            fprintf(err, "%s:%d: %s\n", path, line, x.msg[0] ? x.msg : "syntax error");
        return -EINVAL;
    }
    snprintf(c->config_path, sizeof c->config_path, "%s", path);
    return 0;
}

int sluice_config_validate(const sluice_config *c, FILE *err)
{
    const char *where = c->config_path[0] ? c->config_path : "sluice";
    if (c->n_pools == 0) {
        fprintf(err, "%s: no pool defined (add a [pool:NAME] section with a command)\n", where);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < c->n_pools; i++) {
        const sluice_pool_config *p = &c->pools[i];
        /* workers = 0: a pool served only by workers that attach by
         * themselves (worker_listen); it needs no command */
        if ((!p->command || !p->command[0]) && p->max_workers > 0) {
            fprintf(err, "%s: pool '%s' has no command (set one, or workers = 0 for a pool of attached "
                         "workers only)\n", where, p->name);
            return -EINVAL;
        }
        if (p->max_workers < p->min_workers) {
            fprintf(err, "%s: pool '%s': max_workers (%u) must be at least min_workers (%u)\n", where,
                    p->name, p->max_workers, p->min_workers);
            return -EINVAL;
        }
        if (p->socket_mode == 0660 && !p->socket_group[0]) {
            fprintf(err, "%s: pool '%s': socket_mode 0660 needs socket_group\n", where, p->name);
            return -EINVAL;
        }
        bool tls = false;
        for (uint32_t j = 0; j < p->n_worker_listen; j++) {
            const char *a = p->worker_listen[j];
            if (!strncmp(a, "tcp:", 4) && !p->token[0]) {
                fprintf(err, "%s: pool '%s': worker_listen %s (clear-text TCP) needs a token\n", where, p->name, a);
                return -EINVAL;
            }
            if (!strncmp(a, "tls:", 4)) {
                tls = true;
                if (!p->token[0] && !p->client_ca[0]) {
                    fprintf(err, "%s: pool '%s': worker_listen %s needs a token, a client_ca, or both\n", where,
                            p->name, a);
                    return -EINVAL;
                }
            }
        }
        if (tls && (!p->tls_cert[0] || !p->tls_key[0])) {
            fprintf(err, "%s: pool '%s': a tls: worker_listen needs tls_cert and tls_key\n", where, p->name);
            return -EINVAL;
        }
        if (!tls && (p->tls_cert[0] || p->tls_key[0] || p->client_ca[0])) {
            fprintf(err, "%s: pool '%s': tls_cert, tls_key and client_ca apply to a tls: worker_listen, and "
                         "there is none\n", where, p->name);
            return -EINVAL;
        }
    }
    for (uint32_t i = 0; i < c->n_routes; i++) {
        const sluice_route_config *r = &c->routes[i];
        if (!r->pool[0] || !sluice_config_pool(c, r->pool)) {
            fprintf(err, "%s: route '%s' names %s pool '%s'\n", where, r->name, r->pool[0] ? "unknown" : "no",
                    r->pool);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- command line ----------------------------------------------------- */

static const char usage[] =
    "usage: sluice [OPTIONS] -- COMMAND [ARGS...]\n"
    "       sluice --config FILE [OPTIONS]\n"
    "       sluice --check-config FILE\n"
    "\n"
    "Serve HTTP on LISTEN and relay every request to a pool of worker processes\n"
    "running COMMAND, which connect back over the Unix socket named by $SLUICE_SOCKET.\n"
    "A config file (INI) defines several pools and routes; see docs/configuration.md.\n"
    "\n"
    "Server:\n"
    "  -c, --config FILE            load pools, routes and settings from FILE\n"
    "      --check-config FILE      check FILE and exit (0: valid)\n"
    "  -l, --listen HOST:PORT       address to serve HTTP on (default 127.0.0.1:8080);\n"
    "                               may be repeated, one listener each\n"
    "      --tls-cert FILE          serve HTTPS on the --listen given before: certificate\n"
    "      --tls-key FILE           (PEM, with its chain) and its key; repeat the pair for\n"
    "                               more certificates chosen by SNI (the first is the default)\n"
    "      --tls-handshake-timeout DUR  to complete a TLS handshake (default 10s)\n"
    "      --http2 on|off|only      HTTP/2: h2c (prior knowledge) on plain listeners,\n"
    "                               ALPN h2 on TLS ones (default on, beside HTTP/1.1;\n"
    "                               only: no HTTP/1.1, e.g. for gRPC)\n"
    "      --h2-max-streams N       concurrent streams per HTTP/2 connection (default 100)\n"
    "      --admin HOST:PORT        admin listener: /status, /metrics, /healthz, /readyz,\n"
    "                               scale, reload (default off); unix:PATH for a Unix socket\n"
    "      --admin-token TOKEN      require \"Authorization: Bearer TOKEN\" for the admin\n"
    "                               POST endpoints (default: $SLUICE_ADMIN_TOKEN; without\n"
    "                               one they are open on loopback and Unix sockets only)\n"
    "\n"
    "Pool (command-line mode):\n"
    "  -w, --workers N              worker processes to run (default 2)\n"
    "      --min-workers N          scale between min and max workers\n"
    "      --max-workers N\n"
    "      --max-streams N          concurrent requests per worker (default: what the\n"
    "                               worker announces, e.g. 1 for a synchronous worker)\n"
    "      --max-requests N         recycle a worker after N requests (default 0: never)\n"
    "      --socket-dir DIR         where the pool's Unix socket lives (default: a\n"
    "                               private directory under $TMPDIR)\n"
    "      --pool NAME              pool name passed to workers (default \"default\")\n"
    "      --worker-listen ADDR     also take workers that attach by themselves, on\n"
    "                               tcp:HOST:PORT (clear text, needs a token),\n"
    "                               tls:HOST:PORT or unix:PATH; repeatable\n"
    "      --worker-token TOKEN     the token attaching workers send (or\n"
    "                               $SLUICE_WORKER_TOKEN)\n"
    "      --worker-tls-cert FILE   the certificate (and key) of tls: worker listeners\n"
    "      --worker-tls-key FILE\n"
    "      --worker-client-ca FILE  tls: require worker certificates signed by these CAs\n"
    "      --queue-size N           requests waiting for a free worker before 503\n"
    "                               (default unbounded: at most one per client connection)\n"
    "      --queue-timeout DUR      longest wait for a free worker before 504 (default 30s)\n"
    "      --startup-timeout DUR    a worker must connect and say HELLO within (default 10s)\n"
    "      --window SIZE            response-body credit per stream (default 256k)\n"
    "      --max-body SIZE          request body (default 100m; 413 beyond; a worker may\n"
    "                               raise it per request with LIMIT)\n"
    "      --max-body-ceiling SIZE  the most a worker may raise it to (default: unlimited)\n"
    "      --response-timeout DUR   for the worker's response head (default 60s; 504)\n"
    "      --ws-max-message SIZE    largest WebSocket message from a client (default 1m;\n"
    "                               close 1009 beyond; a worker may change it with LIMIT)\n"
    "\n"
    "Limits:\n"
    "      --max-header-bytes SIZE  request line and headers (default 32k; 431 beyond)\n"
    "      --max-headers N          header fields per request (default 128; 431 beyond)\n"
    "      --max-target SIZE        request target (default 8k; 414 beyond)\n"
    "      --max-connections N      open client connections (default 10000)\n"
    "      --max-requests-per-conn N  then Connection: close (default 0: unlimited)\n"
    "\n"
    "Timeouts (DUR: 500ms, 10s, 2m, 1h; a bare number is seconds):\n"
    "      --header-timeout DUR     to receive a request head (default 10s; 408)\n"
    "      --keepalive-timeout DUR  idle keep-alive connections (default 75s)\n"
    "      --body-timeout DUR       longest pause in a request body upload (default 60s;\n"
    "                               408, or the response is aborted once started)\n"
    "      --send-timeout DUR       HTTP/2: a response stream the client takes no bytes\n"
    "                               of (its window stays shut) is reset (default 60s)\n"
    "      --ws-ping-interval DUR   ping a WebSocket client idle this long; close it if\n"
    "                               no answer within as long again (default 30s; 0: off)\n"
    "      --graceful-timeout DUR   to finish in-flight requests on SIGTERM (default 30s)\n"
    "      --shutdown-delay DUR     on SIGTERM, first only fail /readyz and keep serving\n"
    "                               this long, then stop (default 0; for load balancers)\n"
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
    "Signals: SIGTERM/SIGINT finish in-flight requests, then exit (a second one during\n"
    "--shutdown-delay skips the rest of it, one during the graceful stop exits at once);\n"
    "SIGHUP reloads; SIGUSR1 reopens log files; SIGTTIN/SIGTTOU add/remove a worker\n"
    "of the first pool.\n";

enum {
    OPT_MAX_STREAMS = 256, OPT_SOCKET_DIR, OPT_POOL, OPT_QUEUE_SIZE, OPT_QUEUE_TIMEOUT,
    OPT_STARTUP_TIMEOUT, OPT_WINDOW, OPT_MAX_HEADER_BYTES, OPT_MAX_HEADERS, OPT_MAX_TARGET,
    OPT_MAX_BODY, OPT_MAX_BODY_CEILING, OPT_MAX_CONNECTIONS, OPT_MAX_REQUESTS_PER_CONN,
    OPT_HEADER_TIMEOUT, OPT_KEEPALIVE_TIMEOUT, OPT_RESPONSE_TIMEOUT, OPT_BODY_TIMEOUT,
    OPT_GRACEFUL_TIMEOUT, OPT_ACCESS_LOG, OPT_ERROR_LOG, OPT_LOG_LEVEL, OPT_ADMIN,
    OPT_CHECK_CONFIG, OPT_MIN_WORKERS, OPT_MAX_WORKERS, OPT_MAX_REQUESTS,
    OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_HANDSHAKE_TIMEOUT, OPT_HTTP2, OPT_H2_MAX_STREAMS,
    OPT_SEND_TIMEOUT, OPT_WS_PING_INTERVAL, OPT_WS_MAX_MESSAGE, OPT_ADMIN_TOKEN, OPT_SHUTDOWN_DELAY,
    OPT_WORKER_LISTEN, OPT_WORKER_TOKEN, OPT_WORKER_TLS_CERT, OPT_WORKER_TLS_KEY, OPT_WORKER_CLIENT_CA,
};

/* Flags that shape the command-line pool (not allowed with --config). */
static const int pool_opts[] = {
    'w', OPT_MAX_STREAMS, OPT_SOCKET_DIR, OPT_POOL, OPT_QUEUE_SIZE, OPT_QUEUE_TIMEOUT,
    OPT_STARTUP_TIMEOUT, OPT_WINDOW, OPT_MAX_BODY, OPT_MAX_BODY_CEILING, OPT_RESPONSE_TIMEOUT,
    OPT_MIN_WORKERS, OPT_MAX_WORKERS, OPT_MAX_REQUESTS, OPT_WS_MAX_MESSAGE,
    OPT_WORKER_LISTEN, OPT_WORKER_TOKEN, OPT_WORKER_TLS_CERT, OPT_WORKER_TLS_KEY, OPT_WORKER_CLIENT_CA,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
    {"listen", required_argument, NULL, 'l'},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-handshake-timeout", required_argument, NULL, OPT_TLS_HANDSHAKE_TIMEOUT},
    {"http2", required_argument, NULL, OPT_HTTP2},
    {"h2-max-streams", required_argument, NULL, OPT_H2_MAX_STREAMS},
    {"send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT},
    {"ws-ping-interval", required_argument, NULL, OPT_WS_PING_INTERVAL},
    {"ws-max-message", required_argument, NULL, OPT_WS_MAX_MESSAGE},
    {"workers", required_argument, NULL, 'w'},
    {"min-workers", required_argument, NULL, OPT_MIN_WORKERS},
    {"max-workers", required_argument, NULL, OPT_MAX_WORKERS},
    {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
    {"max-streams", required_argument, NULL, OPT_MAX_STREAMS},
    {"socket-dir", required_argument, NULL, OPT_SOCKET_DIR},
    {"worker-listen", required_argument, NULL, OPT_WORKER_LISTEN},
    {"worker-token", required_argument, NULL, OPT_WORKER_TOKEN},
    {"worker-tls-cert", required_argument, NULL, OPT_WORKER_TLS_CERT},
    {"worker-tls-key", required_argument, NULL, OPT_WORKER_TLS_KEY},
    {"worker-client-ca", required_argument, NULL, OPT_WORKER_CLIENT_CA},
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
    {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT},
    {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
    {"response-timeout", required_argument, NULL, OPT_RESPONSE_TIMEOUT},
    {"graceful-timeout", required_argument, NULL, OPT_GRACEFUL_TIMEOUT},
    {"shutdown-delay", required_argument, NULL, OPT_SHUTDOWN_DELAY},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"error-log", required_argument, NULL, OPT_ERROR_LOG},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(int opt, int idx)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == opt)
            return o->name;
    (void)idx;
    return "?";
}

static bool is_pool_opt(int opt)
{
    for (size_t i = 0; i < sizeof pool_opts / sizeof pool_opts[0]; i++)
        if (pool_opts[i] == opt)
            return true;
    return false;
}

/* Apply one option. */
static int apply(sluice_config *c, sluice_pool_config *p, int opt, const char *v)
{
    switch (opt) {
    case 'l': {
        if (c->n_listens >= SLUICE_MAX_LISTENERS)
            return -EINVAL;
        sluice_listen_config *l = &c->listens[c->n_listens];
        memset(l, 0, sizeof *l);
        if (parse_listen(v, l->host, sizeof l->host, &l->port) < 0)
            return -EINVAL;
        c->n_listens++;
        for (uint32_t i = 0; i + 1 < c->n_listens; i++)
            if (!c->listens[i].name[0])
                return 0;
        return set_server(c, "listen", v); /* the first --listen replaces [server] listen */
    }
    case OPT_TLS_CERT: {
        sluice_listen_config *l = c->n_listens ? &c->listens[c->n_listens - 1] : NULL;
        if (!l || l->name[0] || l->n_certs >= SLUICE_MAX_LISTEN_CERTS ||
            (l->n_certs && !l->certs[l->n_certs - 1].key[0]))
            return -EINVAL;
        return copy_str(l->certs[l->n_certs++].cert, sizeof l->certs[0].cert, v);
    }
    case OPT_TLS_KEY: {
        sluice_listen_config *l = c->n_listens ? &c->listens[c->n_listens - 1] : NULL;
        if (!l || l->name[0] || !l->n_certs || l->certs[l->n_certs - 1].key[0])
            return -EINVAL;
        return copy_str(l->certs[l->n_certs - 1].key, sizeof l->certs[0].key, v);
    }
    case OPT_TLS_HANDSHAKE_TIMEOUT: return set_server(c, "tls_handshake_timeout", v);
    case OPT_HTTP2: return set_server(c, "http2", v);
    case OPT_H2_MAX_STREAMS: return set_server(c, "h2_max_streams", v);
    case OPT_SEND_TIMEOUT: return set_server(c, "send_timeout", v);
    case OPT_WS_PING_INTERVAL: return set_server(c, "ws_ping_interval", v);
    case OPT_WS_MAX_MESSAGE: return set_pool(p, "ws_max_message", v);
    case OPT_ADMIN: return set_server(c, "admin", v);
    case OPT_ADMIN_TOKEN: return set_server(c, "admin_token", v);
    case OPT_SHUTDOWN_DELAY: return set_server(c, "shutdown_delay", v);
    case 'w':
        return set_pool(p, "workers", v);
    case OPT_MIN_WORKERS: return set_pool(p, "min_workers", v);
    case OPT_MAX_WORKERS: return set_pool(p, "max_workers", v);
    case OPT_MAX_REQUESTS: return set_pool(p, "max_requests", v);
    case OPT_WORKER_LISTEN: return set_pool(p, "worker_listen", v);
    case OPT_WORKER_TOKEN: return set_pool(p, "token", v);
    case OPT_WORKER_TLS_CERT: return set_pool(p, "tls_cert", v);
    case OPT_WORKER_TLS_KEY: return set_pool(p, "tls_key", v);
    case OPT_WORKER_CLIENT_CA: return set_pool(p, "client_ca", v);
    case OPT_MAX_STREAMS: return set_pool(p, "max_streams", v);
    case OPT_SOCKET_DIR: return set_pool(p, "socket_dir", v);
    case OPT_POOL: return valid_name(v) ? (snprintf(p->name, sizeof p->name, "%s", v), 0) : -EINVAL;
    case OPT_QUEUE_SIZE: return set_pool(p, "queue_size", v);
    case OPT_QUEUE_TIMEOUT: return set_pool(p, "queue_timeout", v);
    case OPT_STARTUP_TIMEOUT: return set_pool(p, "startup_timeout", v);
    case OPT_WINDOW: return set_pool(p, "window", v);
    case OPT_MAX_BODY: return set_pool(p, "max_body", v);
    case OPT_MAX_BODY_CEILING: return set_pool(p, "max_body_ceiling", v);
    case OPT_RESPONSE_TIMEOUT: return set_pool(p, "response_timeout", v);
    case OPT_MAX_HEADER_BYTES: return set_server(c, "max_header_bytes", v);
    case OPT_MAX_HEADERS: return set_server(c, "max_headers", v);
    case OPT_MAX_TARGET: return set_server(c, "max_target", v);
    case OPT_MAX_CONNECTIONS: return set_server(c, "max_connections", v);
    case OPT_MAX_REQUESTS_PER_CONN: return set_server(c, "max_requests_per_conn", v);
    case OPT_HEADER_TIMEOUT: return set_server(c, "header_timeout", v);
    case OPT_KEEPALIVE_TIMEOUT: return set_server(c, "keepalive_timeout", v);
    case OPT_BODY_TIMEOUT: return set_server(c, "body_timeout", v);
    case OPT_GRACEFUL_TIMEOUT:
        if (set_server(c, "graceful_timeout", v))
            return -EINVAL;
        p->graceful_timeout_ms = c->graceful_timeout_ms;
        return 0;
    case OPT_ACCESS_LOG: return set_server(c, "access_log", v);
    case OPT_ERROR_LOG: return set_server(c, "error_log", v);
    case OPT_LOG_LEVEL: return set_server(c, "log_level", v);
    default: return -EINVAL;
    }
}

int sluice_config_parse(sluice_config *c, int argc, char **argv, FILE *out, FILE *err)
{
    sluice_config_defaults(c);
    int opt, idx = 0;
    const char *config = NULL, *check = NULL, *pool_flag = NULL;
    /* pass 1: --config / --check-config / --help / --version, and errors */
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+c:l:w:hV", long_opts, &idx)) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case OPT_CHECK_CONFIG: check = optarg; break;
        case 'h': fputs(usage, out); return 1;
        case 'V': fprintf(out, "sluice %s\n", SLUICE_VERSION); return 1;
        case ':':
            fprintf(err, "sluice: option %s needs a value\n", argv[optind - 1]);
            return -EINVAL;
        case '?':
            fprintf(err, "sluice: unknown option %s (see sluice --help)\n", argv[optind - 1]);
            return -EINVAL;
        default:
            if (is_pool_opt(opt) && !pool_flag)
                pool_flag = opt_name(opt, idx);
            break;
        }
    }
    if (pool_flag && (config || check)) { /* whichever came first */
        fprintf(err, "sluice: --%s cannot be combined with a config file: set it in the pool's section\n",
                pool_flag);
        return -EINVAL;
    }
    int first_arg = optind;
    const char *file = check ? check : config;
    if (file) {
        if (first_arg < argc) {
            fprintf(err, "sluice: with a config file, the worker command goes in the pool's 'command'\n");
            return -EINVAL;
        }
        int rc = sluice_config_load(c, file, err);
        if (rc < 0)
            return rc;
    } else if (first_arg >= argc) {
        fprintf(err, "sluice: no worker command given (usage: sluice [OPTIONS] -- COMMAND [ARGS...])\n");
        return -EINVAL;
    } else {
        sluice_pool_config *p = add_pool(c, "default");
        if (!p || strv_from_argv(&argv[first_arg], &p->command) < 0)
            return -ENOMEM;
    }
    /* pass 2: apply flags (pool flags to the command-line pool) */
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+c:l:w:hV", long_opts, &idx)) != -1) {
        if (opt == 'c' || opt == OPT_CHECK_CONFIG)
            continue;
        if (is_pool_opt(opt) && file)
            continue; /* rejected in pass 1 */
        sluice_pool_config *p = c->n_pools ? &c->pools[0] : NULL;
        if (!p && is_pool_opt(opt))
            continue;
        int arc = apply(c, p, opt, optarg);
        if (arc != 0 && (opt == OPT_TLS_CERT || opt == OPT_TLS_KEY)) {
            fprintf(err, "sluice: --%s %s: --tls-cert and --tls-key come in pairs (certificate first) "
                         "after the --listen they apply to\n", opt_name(opt, idx), optarg);
            return -EINVAL;
        } else if (arc != 0 && opt == OPT_ADMIN_TOKEN) { /* a secret: not echoed */
            fprintf(err, "sluice: invalid value for --admin-token: use 1 to 255 visible ASCII characters, "
                         "no spaces\n");
            return -EINVAL;
        } else if (arc != 0) {
            fprintf(err, "sluice: invalid value for --%s: '%s'\n", opt_name(opt, idx), optarg);
            return -EINVAL;
        }
    }
    bool cli_listen = false;
    for (uint32_t i = 0; i < c->n_listens; i++) {
        const sluice_listen_config *l = &c->listens[i];
        cli_listen |= !l->name[0];
        if (l->n_certs && !l->certs[l->n_certs - 1].key[0]) {
            if (l->name[0])
                fprintf(err, "%s: [listen:%s]: tls_cert %s needs a tls_key after it\n", c->config_path,
                        l->name, l->certs[l->n_certs - 1].cert);
            else
                fprintf(err, "sluice: --tls-cert %s needs a --tls-key after it\n", l->certs[l->n_certs - 1].cert);
            return -EINVAL;
        }
        if (l->name[0] && !l->host[0]) {
            fprintf(err, "%s: [listen:%s] needs an address\n", c->config_path, l->name);
            return -EINVAL;
        }
    }
    if (!cli_listen) { /* the [server] listen, or the default, first */
        if (c->n_listens >= SLUICE_MAX_LISTENERS) {
            fprintf(err, "sluice: too many listeners (at most %d)\n", SLUICE_MAX_LISTENERS);
            return -EINVAL;
        }
        memmove(&c->listens[1], &c->listens[0], c->n_listens * sizeof c->listens[0]);
        sluice_listen_config *l = &c->listens[0];
        c->n_listens++;
        memset(l, 0, sizeof *l);
        memcpy(l->host, c->listen_host, sizeof l->host);
        l->port = c->listen_port;
    }
    if (!c->admin_token[0]) { /* neither the file nor --admin-token: the environment's */
        const char *env = getenv("SLUICE_ADMIN_TOKEN");
        if (env && *env && set_server(c, "admin_token", env) != 0) {
            fprintf(err, "sluice: invalid SLUICE_ADMIN_TOKEN: use 1 to 255 visible ASCII characters, "
                         "no spaces\n");
            return -EINVAL;
        }
    }
    if (!file && !c->pools[0].token[0]) { /* no --worker-token: the environment's */
        const char *env = getenv("SLUICE_WORKER_TOKEN");
        if (env && *env && set_pool(&c->pools[0], "token", env) != 0) {
            fprintf(err, "sluice: invalid SLUICE_WORKER_TOKEN\n");
            return -EINVAL;
        }
    }
    if (!file) {
        /* --graceful-timeout given on the command line applies to the pool too */
        c->pools[0].graceful_timeout_ms = c->graceful_timeout_ms;
    }
    int rc = sluice_config_validate(c, err);
    if (rc < 0)
        return rc;
    if (check)
        return 2; /* the caller checks the certificates, then sluice_config_print_ok */
    return 0;
}

void sluice_config_print_ok(const sluice_config *c, FILE *out)
{
    fprintf(out, "%s: ok (%u pool%s, %u route%s)\n", c->config_path, c->n_pools, c->n_pools == 1 ? "" : "s",
            c->n_routes, c->n_routes == 1 ? "" : "s");
}
