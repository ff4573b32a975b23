/* Worker pool: processes, the socket they connect to, balancing, queue. */
#include "pool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream.h"
#include "worker_link.h"

extern char **environ;

typedef enum { PROC_IDLE, PROC_STARTING, PROC_RUNNING, PROC_BACKOFF, PROC_STOPPED } proc_state;

struct worker_proc {
    pool *pool;
    uint32_t id;
    uv_process_t proc;
    uv_timer_t timer; /* startup timeout, restart backoff, kill escalation */
    bool proc_live;   /* uv_process_t handle open */
    int pid;
    proc_state state;
    uint64_t started_ms;
    uint64_t backoff_ms;
    uint32_t spawns;
    wlink *link;
};

typedef struct link_node {
    wlink *link;
    struct link_node *next;
} link_node;

struct pool {
    gateway *gw;
    char name[64];
    char dir[512];
    char sock[600];
    bool own_dir;
    uv_pipe_t server;
    bool listening;
    worker_proc *procs;
    uint32_t n_procs;
    link_node *links;
    uint32_t n_links;
    stream *q_head, *q_tail;
    uint32_t q_len;
    uint32_t rr;
    bool stopping;
    char **env;
};

static void spawn_worker(worker_proc *w);

const char *pool_name(const pool *p) { return p->name; }
uint32_t pool_queue_len(const pool *p) { return p->q_len; }

/* ---- queue ------------------------------------------------------------ */

static void q_push(pool *p, stream *s)
{
    s->qnext = NULL;
    s->qprev = p->q_tail;
    if (p->q_tail)
        p->q_tail->qnext = s;
    else
        p->q_head = s;
    p->q_tail = s;
    s->queued = true;
    s->queued_at = uv_now(p->gw->loop);
    p->q_len++;
}

static void q_remove(pool *p, stream *s)
{
    if (!s->queued)
        return;
    if (s->qprev)
        s->qprev->qnext = s->qnext;
    else
        p->q_head = s->qnext;
    if (s->qnext)
        s->qnext->qprev = s->qprev;
    else
        p->q_tail = s->qprev;
    s->qnext = s->qprev = NULL;
    s->queued = false;
    p->q_len--;
}

void pool_withdraw(pool *p, stream *s) { q_remove(p, s); }

/* ---- balancing -------------------------------------------------------- */

/* The ready link with the fewest open streams; ties rotate. */
static wlink *pick(pool *p)
{
    wlink *best = NULL;
    uint32_t best_n = UINT32_MAX;
    uint32_t start = p->n_links ? p->rr++ % p->n_links : 0;
    link_node *n = p->links;
    for (uint32_t i = 0; i < start && n; i++)
        n = n->next;
    for (uint32_t i = 0; i < p->n_links; i++) {
        if (!n)
            n = p->links;
        wlink *l = n->link;
        if (wlink_can_open(l)) {
            uint32_t open = wlink_open_streams(l);
            if (open < best_n) {
                best = l;
                best_n = open;
                if (open == 0)
                    break;
            }
        }
        n = n->next;
    }
    return best;
}

static int dispatch(pool *p, wlink *l, stream *s)
{
    int rc = wlink_open(l, s);
    if (rc < 0)
        return rc;
    stream_dispatched(s);
    (void)p;
    return 0;
}

int pool_submit(pool *p, stream *s)
{
    if (p->stopping)
        return -EBUSY;
    if (!p->q_head) {
        wlink *l = pick(p);
        if (l) {
            int rc = dispatch(p, l, s);
            if (rc != -EAGAIN)
                return rc;
        }
    }
    if (p->q_len >= p->gw->cfg->queue_size)
        return -EBUSY;
    q_push(p, s);
    return 1;
}

void pool_link_capacity(pool *p, wlink *l)
{
    while (p->q_head && wlink_can_open(l)) {
        stream *s = p->q_head;
        q_remove(p, s);
        int rc = dispatch(p, l, s);
        if (rc < 0) /* the head is too large for this worker */
            stream_on_unavailable(s, rc == -EMSGSIZE ? 431 : 502);
    }
}

/* ---- links ------------------------------------------------------------ */

static void on_connection(uv_stream_t *server, int status)
{
    pool *p = server->data;
    if (status < 0) {
        slog(p->gw->log, LOG_ERROR, "pool %s: accept: %s", p->name, uv_strerror(status));
        return;
    }
    int rc = wlink_accept(p, p->gw, server);
    if (rc < 0)
        slog(p->gw->log, LOG_ERROR, "pool %s: accepting a worker: %s", p->name, uv_strerror(rc));
}

void pool_link_hello(pool *p, wlink *l, const sluice_hello *h, int peer_pid)
{
    int pid = peer_pid ? peer_pid : (int)h->pid;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = &p->procs[i];
        if (w->pid == pid && w->proc_live && !w->link) {
            w->link = l;
            wlink_set_proc(l, w, w->id);
            w->state = PROC_RUNNING;
            uv_timer_stop(&w->timer);
            return;
        }
    }
    /* a worker started outside sluice: it still serves */
    (void)h;
}

void pool_link_ready(pool *p, wlink *l)
{
    link_node *n = malloc(sizeof *n);
    if (!n) {
        wlink_close(l, -ENOMEM, "out of memory");
        return;
    }
    n->link = l;
    n->next = p->links;
    p->links = n;
    p->n_links++;
    if (p->stopping) {
        wlink_drain(l, p->gw->cfg->graceful_timeout_ms);
        return;
    }
    pool_link_capacity(p, l);
}

void pool_link_retire(pool *p, wlink *l)
{
    /* Replacement happens when the process exits; answer with DRAIN. */
    wlink_drain(l, p->gw->cfg->graceful_timeout_ms);
}

void pool_link_closed(pool *p, wlink *l)
{
    for (link_node **pp = &p->links; *pp; pp = &(*pp)->next) {
        if ((*pp)->link == l) {
            link_node *n = *pp;
            *pp = n->next;
            free(n);
            p->n_links--;
            break;
        }
    }
    for (uint32_t i = 0; i < p->n_procs; i++)
        if (p->procs[i].link == l)
            p->procs[i].link = NULL;
    gw_check_shutdown(p->gw);
}

/* ---- processes -------------------------------------------------------- */

static void on_proc_closed(uv_handle_t *h)
{
    worker_proc *w = h->data;
    w->proc_live = false;
    gw_check_shutdown(w->pool->gw);
}

static void on_restart_timer(uv_timer_t *t)
{
    worker_proc *w = t->data;
    if (w->state == PROC_BACKOFF && !w->pool->stopping)
        spawn_worker(w);
    else if (w->state == PROC_STARTING && w->proc_live) {
        slog(w->pool->gw->log, LOG_WARN, "pool %s: worker %u (pid %d) did not connect within %llums; killing it",
             w->pool->name, w->id, w->pid, (unsigned long long)w->pool->gw->cfg->startup_timeout_ms);
        uv_process_kill(&w->proc, SIGKILL);
    } else if (w->state == PROC_STOPPED && w->proc_live) {
        slog(w->pool->gw->log, LOG_WARN, "pool %s: worker %u (pid %d) ignored SIGTERM; killing it",
             w->pool->name, w->id, w->pid);
        uv_process_kill(&w->proc, SIGKILL);
    }
}

static void on_proc_exit(uv_process_t *proc, int64_t status, int sig)
{
    worker_proc *w = proc->data;
    pool *p = w->pool;
    uint64_t now = uv_now(p->gw->loop);
    uint64_t lived = now - w->started_ms;
    if (sig)
        slog(p->gw->log, p->stopping ? LOG_INFO : LOG_WARN, "pool %s: worker %u (pid %d) killed by signal %d after %.1fs",
             p->name, w->id, w->pid, sig, lived / 1000.0);
    else
        slog(p->gw->log, p->stopping || status == 0 ? LOG_INFO : LOG_WARN,
             "pool %s: worker %u (pid %d) exited with status %lld after %.1fs", p->name, w->id, w->pid,
             (long long)status, lived / 1000.0);
    uv_close((uv_handle_t *)&w->proc, on_proc_closed);
    w->pid = 0;
    if (p->stopping) {
        w->state = PROC_STOPPED;
        uv_timer_stop(&w->timer);
        return;
    }
    /* Respawn with exponential backoff; a worker that ran a while starts
     * over from the shortest delay. */
    if (lived > 10000)
        w->backoff_ms = 0;
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 100;
    if (w->backoff_ms > 10000)
        w->backoff_ms = 10000;
    w->state = PROC_BACKOFF;
    if (w->backoff_ms > 100)
        slog(p->gw->log, LOG_WARN, "pool %s: worker %u restarting in %.1fs", p->name, w->id,
             w->backoff_ms / 1000.0);
    uv_timer_start(&w->timer, on_restart_timer, w->backoff_ms, 0);
}

static void spawn_worker(worker_proc *w)
{
    pool *p = w->pool;
    gateway *gw = p->gw;
    char id_env[64];
    snprintf(id_env, sizeof id_env, "SLUICE_WORKER_ID=%u", w->id);
    /* env: ours, minus SLUICE_WORKER_ID, plus this worker's id */
    size_t n = 0;
    while (p->env[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(p->env[i], "SLUICE_WORKER_ID=", 17))
            env[k++] = p->env[i];
    env[k++] = id_env;
    env[k] = NULL;

    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t opt = {
        .exit_cb = on_proc_exit,
        .file = gw->cfg->command[0],
        .args = gw->cfg->command,
        .env = env,
        .stdio_count = 3,
        .stdio = stdio,
    };
    w->proc.data = w;
    int rc = uv_spawn(gw->loop, &w->proc, &opt);
    free(env);
    w->spawns++;
    w->started_ms = uv_now(gw->loop);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "pool %s: cannot start worker %u (%s): %s", p->name, w->id,
             gw->cfg->command[0], uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, NULL);
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 500;
        if (w->backoff_ms > 10000)
            w->backoff_ms = 10000;
        w->state = PROC_BACKOFF;
        uv_timer_start(&w->timer, on_restart_timer, w->backoff_ms, 0);
        return;
    }
    w->proc_live = true;
    w->pid = w->proc.pid;
    w->state = PROC_STARTING;
    slog(gw->log, LOG_INFO, "pool %s: started worker %u (pid %d)", p->name, w->id, w->pid);
    uv_timer_start(&w->timer, on_restart_timer, gw->cfg->startup_timeout_ms, 0);
}

/* ---- setup ------------------------------------------------------------ */

static int build_env(pool *p)
{
    size_t n = 0;
    while (environ[n])
        n++;
    p->env = calloc(n + 4, sizeof *p->env);
    if (!p->env)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SLUICE_SOCKET=", 14) && strncmp(environ[i], "SLUICE_POOL=", 12))
            p->env[k++] = environ[i];
    char *a = malloc(strlen(p->sock) + 16), *b = malloc(strlen(p->name) + 16);
    if (!a || !b) {
        free(a);
        free(b);
        return -ENOMEM;
    }
    sprintf(a, "SLUICE_SOCKET=%s", p->sock);
    sprintf(b, "SLUICE_POOL=%s", p->name);
    p->env[k++] = a;
    p->env[k++] = b;
    p->env[k] = NULL;
    return 0;
}

int pool_new(pool **out, gateway *gw)
{
    const sluice_config *cfg = gw->cfg;
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->gw = gw;
    snprintf(p->name, sizeof p->name, "%s", cfg->pool_name);
    p->n_procs = cfg->workers;
    p->procs = calloc(p->n_procs, sizeof *p->procs);
    if (!p->procs) {
        free(p);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = &p->procs[i];
        w->pool = p;
        w->id = i + 1;
        uv_timer_init(gw->loop, &w->timer);
        w->timer.data = w;
    }
    *out = p;
    return 0;
}

int pool_start(pool *p)
{
    gateway *gw = p->gw;
    const sluice_config *cfg = gw->cfg;
    if (cfg->socket_dir[0]) {
        snprintf(p->dir, sizeof p->dir, "%s", cfg->socket_dir);
        if (mkdir(p->dir, 0700) < 0 && errno != EEXIST) {
            int e = -errno;
            slog(gw->log, LOG_ERROR, "socket directory %s: %s", p->dir, strerror(errno));
            return e;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(p->dir, sizeof p->dir, "%s/sluice.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(p->dir)) {
            int e = -errno;
            slog(gw->log, LOG_ERROR, "creating a socket directory: %s", strerror(errno));
            return e;
        }
        p->own_dir = true;
    }
    snprintf(p->sock, sizeof p->sock, "%s/%s.sock", p->dir, p->name);
    if (strlen(p->sock) >= 108) {
        slog(gw->log, LOG_ERROR, "socket path too long: %s", p->sock);
        return -ENAMETOOLONG;
    }
    unlink(p->sock);
    uv_pipe_init(gw->loop, &p->server, 0);
    p->server.data = p;
    /* only the gateway's user may connect */
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(&p->server, p->sock);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->server, 256, on_connection);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "listening on %s: %s", p->sock, uv_strerror(rc));
        return rc;
    }
    p->listening = true;
    rc = build_env(p);
    if (rc < 0)
        return rc;
    slog(gw->log, LOG_INFO, "pool %s: socket %s, %u workers: %s", p->name, p->sock, p->n_procs,
         cfg->command[0]);
    for (uint32_t i = 0; i < p->n_procs; i++)
        spawn_worker(&p->procs[i]);
    return 0;
}

void pool_shutdown(pool *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    while (p->q_head) {
        stream *s = p->q_head;
        q_remove(p, s);
        stream_on_unavailable(s, 503);
    }
    for (link_node *n = p->links; n; n = n->next)
        wlink_drain(n->link, p->gw->cfg->graceful_timeout_ms);
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = &p->procs[i];
        if (w->state == PROC_BACKOFF)
            uv_timer_stop(&w->timer);
        if (w->proc_live) {
            uv_process_kill(&w->proc, SIGTERM);
            w->state = PROC_STOPPED;
            uv_timer_start(&w->timer, on_restart_timer, 5000, 0);
        } else {
            w->state = PROC_STOPPED;
        }
    }
    if (p->listening) {
        uv_close((uv_handle_t *)&p->server, NULL);
        p->listening = false;
    }
}

bool pool_stopped(const pool *p)
{
    if (!p->stopping)
        return false;
    for (uint32_t i = 0; i < p->n_procs; i++)
        if (p->procs[i].proc_live)
            return false;
    return p->n_links == 0;
}

void pool_free(pool *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->n_procs; i++)
        uv_close((uv_handle_t *)&p->procs[i].timer, NULL);
    if (p->sock[0])
        unlink(p->sock);
    if (p->own_dir)
        rmdir(p->dir);
    while (p->links) {
        link_node *n = p->links;
        p->links = n->next;
        free(n);
    }
    if (p->env) {
        for (size_t i = 0; p->env[i]; i++)
            if (!strncmp(p->env[i], "SLUICE_SOCKET=", 14) || !strncmp(p->env[i], "SLUICE_POOL=", 12))
                free(p->env[i]);
        free(p->env);
    }
    /* procs are freed by the caller after the loop closed their timers */
}

void pool_release(pool *p)
{
    free(p->procs);
    free(p);
}
