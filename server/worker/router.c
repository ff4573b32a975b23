#include "worker/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker/pool.h"

typedef struct {
    char host[256];  /* lower-case; "" any, "*.x" suffix (stored as ".x") */
    int host_kind;   /* 0 any, 1 suffix, 2 exact */
    char path[1024];
    size_t path_len;
    pool *pool;
} route;

struct router {
    gateway *gw;
    route *routes;
    uint32_t n;
};

int router_new(router **out, gateway *gw)
{
    const sluice_config *cfg = gw->cfg;
    router *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->gw = gw;
    r->routes = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof *r->routes);
    if (!r->routes) {
        free(r);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < cfg->n_routes; i++) {
        const sluice_route_config *rc = &cfg->routes[i];
        route *x = &r->routes[r->n];
        const char *h = rc->host;
        if (!h[0] || !strcmp(h, "*")) {
            x->host_kind = 0;
        } else if (!strncmp(h, "*.", 2)) {
            x->host_kind = 1;
            snprintf(x->host, sizeof x->host, "%s", h + 1);
        } else {
            x->host_kind = 2;
            snprintf(x->host, sizeof x->host, "%s", h);
        }
        for (char *p = x->host; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p += 32;
        snprintf(x->path, sizeof x->path, "%s", rc->path[0] ? rc->path : "/");
        x->path_len = strlen(x->path);
        for (uint32_t k = 0; k < gw->n_pools; k++)
            if (!strcmp(pool_name(gw->pools[k]), rc->pool))
                x->pool = gw->pools[k];
        if (x->pool)
            r->n++;
    }
    *out = r;
    return 0;
}

void router_free(router *r)
{
    if (!r)
        return;
    free(r->routes);
    free(r);
}

static bool host_matches(const route *x, const char *host, size_t n)
{
    size_t hl = strlen(x->host);
    switch (x->host_kind) {
    case 0:
        return true;
    case 1: /* ".example.com" matches "a.example.com", not "example.com" */
        return n > hl && !strncasecmp(host + n - hl, x->host, hl);
    default:
        return n == hl && !strncasecmp(host, x->host, hl);
    }
}

pool *router_pick(const router *r, const uint8_t *host, size_t host_len, const uint8_t *target,
                  size_t target_len)
{
    if (r->n == 0)
        return r->gw->pools[0];
    /* host without its port; IPv6 literals keep their brackets */
    const char *h = (const char *)host;
    size_t hn = host_len;
    for (size_t i = hn; i > 0; i--) {
        if (h[i - 1] == ':') {
            hn = i - 1;
            break;
        }
        if (h[i - 1] == ']' || h[i - 1] < '0' || h[i - 1] > '9')
            break;
    }
    /* path: origin form up to '?', or the path of an absolute form */
    const char *t = (const char *)target;
    size_t tn = target_len;
    if (tn && t[0] != '/') {
        const char *scheme = memmem(t, tn, "://", 3);
        if (scheme) {
            const char *slash = memchr(scheme + 3, '/', tn - (size_t)(scheme + 3 - t));
            tn = slash ? tn - (size_t)(slash - t) : 1;
            t = slash ? slash : "/";
        }
    }
    const char *q = memchr(t, '?', tn);
    if (q)
        tn = (size_t)(q - t);
    const route *best = NULL;
    for (uint32_t i = 0; i < r->n; i++) {
        const route *x = &r->routes[i];
        if (!host_matches(x, h, hn))
            continue;
        if (tn < x->path_len || memcmp(t, x->path, x->path_len))
            continue;
        if (!best || x->host_kind > best->host_kind ||
            (x->host_kind == best->host_kind &&
             (x->path_len > best->path_len ||
              (x->host_kind == 1 && x->path_len == best->path_len && strlen(x->host) > strlen(best->host)))))
            best = x;
    }
    return best ? best->pool : r->gw->pools[0];
}
