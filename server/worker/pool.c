/* Worker pool: processes and their supervision, the socket workers connect
 * to, load balancing, the wait queue, scaling and recycling.
 *
 * Each worker slot is `wanted` or not. The supervisor keeps every wanted
 * slot running (respawn with exponential backoff), scales the number of
 * wanted slots between min and max workers, and retires a worker (requests
 * or memory budget spent, reload, scale-down) by DRAIN -- when the worker is
 * being replaced, only after the replacement has said HELLO, so capacity
 * never dips. */
#include "worker/pool.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/loop.h"
#include "exchange/stream.h"
#include "tls/tls.h"
#include "worker/link.h"

extern char **environ;

typedef enum { PROC_IDLE, PROC_STARTING, PROC_RUNNING, PROC_BACKOFF, PROC_STOPPING } proc_state;

static const char *const state_names[] = {"idle", "starting", "running", "backoff", "stopping"};

struct worker_proc {
    pool *pool;
    uint32_t id;
    uv_process_t proc;
    uv_timer_t timer; /* startup timeout, restart backoff, kill escalation */
    bool proc_live;   /* uv_process_t handle open */
    bool wanted;      /* the supervisor keeps this slot running */
    bool retiring;    /* drained or about to be: takes no new work */
    int pid;
    proc_state state;
    uint64_t started_ms;
    uint64_t last_active_ms;
    uint64_t backoff_ms;
    uint32_t quick_exits; /* consecutive exits soon after start */
    uint32_t failed_starts; /* consecutive runs that never said HELLO */
    uint64_t requests;
    uint64_t request_limit; /* max_requests +- jitter for this run; 0: none */
    uint64_t restarts;
    uint32_t gen;           /* the pool's config generation it was started with */
    worker_proc *replaces;  /* the worker this one takes over from */
    bool replaces_pending;  /* retiring, but serving until its successor is up */
    wlink *link;
};

/* Consecutive quick exits that make a crash loop (logged), and consecutive
 * runs that never became ready that make a pool "down" (503 at once). */
#define CRASH_LOOP_EXITS 5
#define DOWN_FAILED_STARTS 3

/* A listener for workers that attach by themselves (worker_listen). */
typedef struct worker_listener {
    pool *p;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
    } h;
    bool tls;
    bool live;
    char path[108]; /* unix: the socket file, removed at exit */
} worker_listener;

typedef struct link_node {
    wlink *link;
    struct link_node *next;
} link_node;

struct pool {
    gateway *gw;
    const sluice_pool_config *cfg;
    char name[64];
    char dir[512];
    char sock[600];
    bool own_dir;
    uv_pipe_t server;
    bool listening;
    worker_listener wl[SLUICE_MAX_WORKER_LISTEN];
    uint32_t n_wl;
    tls_ctx *worker_tls; /* the tls: listeners' context (tls_cert, client_ca) */
    uint32_t attached_seq;
    uv_timer_t tick; /* scaling and memory checks */
    bool tick_live;
    worker_proc **procs; /* slots; each allocated once (uv handles inside) */
    uint32_t n_procs;
    uint32_t target;     /* wanted workers */
    uint32_t min, max;   /* scaling bounds: the config's, until an operator scales outside them */
    uint32_t gen;        /* config generation: bumped by each reload */
    bool rolling;        /* a reload is replacing workers one by one */
    bool down;           /* every worker failing before HELLO: fail fast with 503 */
    char file[1024];     /* command[0], made absolute if it was relative */
    pool_stats stats;
    link_node *links;
    uint32_t n_links;
    stream *q_head, *q_tail;
    uint32_t q_len;
    uint32_t rr;
    bool stopping;
    char **env;
    char *own_env[2];
};

static void spawn_worker(worker_proc *w);
static void retire_worker(worker_proc *w, const char *why, bool replace);
static void roll(pool *p);
static void on_timer_linkless(uv_timer_t *t);
static void on_timer_drained(uv_timer_t *t);

/* What the pool's worker links report (worker/link.h). */
static void link_hello(void *owner, wlink *l, const sluice_hello *h, int peer_pid);
static void link_ready(void *owner, wlink *l);
static void link_capacity(void *owner, wlink *l);
static void link_retire(void *owner, wlink *l);
static void link_closed(void *owner, wlink *l);
static const sluice_pool_config *link_config(const void *owner) { return ((const pool *)owner)->cfg; }
static const wlink_owner_ops pool_link_ops = {
    .hello = link_hello,
    .ready = link_ready,
    .capacity = link_capacity,
    .retire = link_retire,
    .closed = link_closed,
    .config = link_config,
};

const char *pool_name(const pool *p) { return p->name; }
const sluice_pool_config *pool_config(const pool *p) { return p->cfg; }
uint32_t pool_queue_len(const pool *p) { return p->q_len; }
const pool_stats *pool_get_stats(const pool *p) { return &p->stats; }

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
    p->stats.queued_total++;
}

const double pool_latency_bounds[POOL_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,    1,     2.5,  5,     10,   30};

/* Counts `seconds` in cumulative histogram buckets (Prometheus "le"). */
static void count_in_buckets(uint64_t buckets[POOL_LAT_BUCKETS], double seconds)
{
    for (int i = 0; i < POOL_LAT_BUCKETS; i++)
        if (seconds <= pool_latency_bounds[i])
            buckets[i]++;
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
    double wait = (double)(uv_now(p->gw->loop) - s->queued_at) / 1000.0;
    p->stats.queue_wait_sum += wait;
    p->stats.qwait_count++;
    count_in_buckets(p->stats.qwait_buckets, wait);
}

void pool_withdraw(pool *p, stream *s) { q_remove(p, s); }

/* ---- stats ------------------------------------------------------------ */


void pool_record(pool *p, int status, double seconds, uint64_t bytes_in, uint64_t bytes_out)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    p->stats.requests[cls]++;
    p->stats.lat_count++;
    p->stats.lat_sum += seconds;
    count_in_buckets(p->stats.lat_buckets, seconds);
    p->stats.bytes_in += bytes_in;
    p->stats.bytes_out += bytes_out;
}

void pool_ws_count(pool *p, int open_delta, uint64_t msgs_in, uint64_t msgs_out, uint64_t bytes_in,
                   uint64_t bytes_out)
{
    if (open_delta > 0) { /* the 101 is a response: class 1xx (no duration: its life is not one) */
        p->stats.ws_open++;
        p->stats.ws_total++;
        p->stats.requests[1]++;
    } else if (open_delta < 0 && p->stats.ws_open) {
        p->stats.ws_open--;
    }
    p->stats.ws_msgs_in += msgs_in;
    p->stats.ws_msgs_out += msgs_out;
    p->stats.ws_bytes_in += bytes_in;
    p->stats.ws_bytes_out += bytes_out;
}

/* ---- balancing -------------------------------------------------------- */

/* The spawned worker behind a link (NULL for attached workers). O(1): it is
 * on the dispatch path. */
static worker_proc *link_proc(pool *p, wlink *l)
{
    (void)p;
    worker_proc *w = wlink_proc(l);
    return w && w->link == l ? w : NULL;
}

static bool link_usable(pool *p, wlink *l)
{
    if (!wlink_can_open(l))
        return false;
    worker_proc *w = link_proc(p, l);
    return !w || !w->retiring || w->replaces_pending;
}

/* The ready link with the fewest open streams; ties rotate. `avoid` (the
 * link that just refused the stream, or NULL) is taken only when no other
 * link can: a worker full with other gateways' streams answers RESET
 * overloaded, which this gateway cannot see coming. */
static wlink *pick(pool *p, const wlink *avoid)
{
    wlink *best = NULL;
    bool avoided = false;
    uint32_t best_n = UINT32_MAX;
    uint32_t start = p->n_links ? p->rr++ % p->n_links : 0;
    link_node *n = p->links;
    for (uint32_t i = 0; i < start && n; i++)
        n = n->next;
    for (uint32_t i = 0; i < p->n_links; i++) {
        if (!n)
            n = p->links;
        wlink *l = n->link;
        if (l == avoid && link_usable(p, l)) {
            avoided = true;
        } else if (link_usable(p, l)) {
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
    return best ? best : avoided ? (wlink *)avoid : NULL;
}

static int dispatch(pool *p, wlink *l, stream *s)
{
    int rc = wlink_open(l, s);
    if (rc < 0)
        return rc;
    worker_proc *w = link_proc(p, l);
    if (w) {
        w->requests++;
        w->last_active_ms = uv_now(p->gw->loop);
        if (w->request_limit && w->requests >= w->request_limit && !w->retiring)
            retire_worker(w, "max_requests reached", true);
    }
    stream_dispatched(s);
    return 0;
}

static uint32_t live_wanted(const pool *p, bool include_starting)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        const worker_proc *w = p->procs[i];
        if (w->wanted && !w->retiring &&
            (w->state == PROC_RUNNING || (include_starting && w->state != PROC_IDLE)))
            n++;
    }
    return n;
}

static worker_proc *free_slot(pool *p);
static void maybe_scale_up(pool *p)
{
    if (p->stopping || p->target >= p->max)
        return;
    /* one start at a time: scale as fast as workers come up, no faster */
    for (uint32_t i = 0; i < p->n_procs; i++)
        if (p->procs[i]->wanted && p->procs[i]->state == PROC_STARTING)
            return;
    worker_proc *w = free_slot(p);
    if (!w)
        return;
    p->target++;
    slog(p->gw->log, LOG_INFO, "pool %s: scaling up to %u workers (%u requests queued)", p->name, p->target,
         p->q_len);
    w->wanted = true;
    spawn_worker(w);
}

/* No worker can take requests and every wanted one keeps failing before it
 * is ready (exits before HELLO, or cannot be started): requests get 503 at
 * once rather than waiting queue_timeout for a worker that is not coming.
 * A pool still starting is not down, nor one whose workers do come up and
 * get killed later: a respawn is on its way for those. */
static bool every_worker_failing(const pool *p)
{
    if (p->n_links)
        return false;
    bool any = false;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        const worker_proc *w = p->procs[i];
        if (!w->wanted)
            continue;
        if (w->failed_starts < DOWN_FAILED_STARTS)
            return false;
        any = true;
    }
    return any;
}

/* Recompute p->down, logging each change once. */
static bool pool_is_down(pool *p)
{
    bool down = every_worker_failing(p);
    if (down != p->down) {
        p->down = down;
        if (down)
            slog(p->gw->log, LOG_ERROR, "pool %s: no worker stays up; answering 503 until one does", p->name);
        else
            slog(p->gw->log, LOG_INFO, "pool %s: a worker is up again", p->name);
    }
    return down;
}

static void fail_queue(pool *p, int status)
{
    while (p->q_head) {
        stream *s = p->q_head;
        q_remove(p, s);
        stream_on_unavailable(s, status);
    }
}

int pool_submit(pool *p, stream *s)
{
    if (p->stopping)
        return -EBUSY;
    if (!p->q_head) {
        wlink *l = pick(p, s->refusals ? s->refused_by : NULL);
        if (l) {
            int rc = dispatch(p, l, s);
            if (rc == 0)
                p->stats.qwait_none++; /* no wait: counted in every bucket */
            if (rc != -EAGAIN)
                return rc;
        }
    }
    if ((p->cfg->queue_size != SLUICE_QUEUE_UNBOUNDED && p->q_len >= p->cfg->queue_size) ||
        (p->down && pool_is_down(p)))
        return -EBUSY;
    q_push(p, s);
    maybe_scale_up(p);
    return 1;
}

static void link_capacity(void *owner, wlink *l)
{
    pool *p = owner;
    worker_proc *w = link_proc(p, l);
    if (w)
        w->last_active_ms = uv_now(p->gw->loop);
    while (p->q_head && link_usable(p, l)) {
        stream *s = p->q_head;
        q_remove(p, s);
        int rc = dispatch(p, l, s);
        if (rc < 0) /* the head is too large for this worker */
            stream_on_unavailable(s, rc == -EMSGSIZE ? 431 : 502);
    }
    if (w && w->retiring && wlink_open_streams(l) == 0)
        gw_notify_finished(p->gw);
}

/* ---- links ------------------------------------------------------------ */

static void on_connection(uv_stream_t *server, int status)
{
    pool *p = server->data;
    if (status < 0) {
        slog(p->gw->log, LOG_ERROR, "pool %s: accept: %s", p->name, uv_strerror(status));
        return;
    }
    int rc = wlink_accept(p->gw, server, NULL, p->name, &pool_link_ops, p);
    if (rc < 0)
        slog(p->gw->log, LOG_ERROR, "pool %s: accepting a worker: %s", p->name, uv_strerror(rc));
}

static void on_remote_connection(uv_stream_t *server, int status)
{
    worker_listener *wl = server->data;
    pool *p = wl->p;
    if (status < 0) {
        slog(p->gw->log, LOG_ERROR, "pool %s: accept: %s", p->name, uv_strerror(status));
        return;
    }
    int rc = wlink_accept(p->gw, server, wl->tls ? p->worker_tls : NULL, p->name, &pool_link_ops, p);
    if (rc < 0)
        slog(p->gw->log, LOG_ERROR, "pool %s: accepting a worker: %s", p->name, uv_strerror(rc));
}

static void link_hello(void *owner, wlink *l, const sluice_hello *h, int peer_pid)
{
    pool *p = owner;
    int pid = peer_pid ? peer_pid : (int)h->pid;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = p->procs[i];
        if (w->pid == pid && w->proc_live && !w->link) {
            w->link = l;
            wlink_set_proc(l, w, w->id);
            w->state = PROC_RUNNING;
            w->failed_starts = 0;
            w->last_active_ms = uv_now(p->gw->loop);
            uv_timer_stop(&w->timer);
            return;
        }
    }
    /* a worker started outside sluice (or over TCP): it serves too */
    wlink_set_proc(l, NULL, 1000 + ++p->attached_seq);
    slog(p->gw->log, LOG_INFO, "pool %s: attached worker %u (pid %d)", p->name, 1000 + p->attached_seq, pid);
}

static void link_ready(void *owner, wlink *l)
{
    pool *p = owner;
    link_node *n = malloc(sizeof *n);
    if (!n) {
        wlink_close(l, -ENOMEM, "out of memory");
        return;
    }
    n->link = l;
    n->next = p->links;
    p->links = n;
    p->n_links++;
    if (p->down)
        pool_is_down(p);
    worker_proc *w = link_proc(p, l);
    if (p->stopping || (w && (!w->wanted || w->retiring))) {
        wlink_drain(l, p->cfg->graceful_timeout_ms);
        return;
    }
    if (w && w->replaces) {
        /* the replacement is up: now the old worker may go */
        worker_proc *old = w->replaces;
        w->replaces = NULL;
        old->replaces_pending = false;
        if (old->link)
            wlink_drain(old->link, p->cfg->graceful_timeout_ms);
        else if (old->proc_live)
            uv_process_kill(&old->proc, SIGTERM);
    }
    link_capacity(p, l);
    roll(p);
}

static void link_retire(void *owner, wlink *l)
{
    pool *p = owner;
    worker_proc *w = link_proc(p, l);
    if (w && !w->retiring) {
        retire_worker(w, "the worker asked to retire", true);
        return;
    }
    if (!w)
        wlink_drain(l, p->cfg->graceful_timeout_ms);
}

static void link_closed(void *owner, wlink *l)
{
    pool *p = owner;
    for (link_node **pp = &p->links; *pp; pp = &(*pp)->next) {
        if ((*pp)->link == l) {
            link_node *n = *pp;
            *pp = n->next;
            free(n);
            p->n_links--;
            break;
        }
    }
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = p->procs[i];
        if (w->link != l)
            continue;
        w->link = NULL;
        /* A process that lost its link (it broke the protocol) serves
         * nothing. Give it a moment to exit on its own (a crash closes the
         * link first), then stop it; its slot respawns as after a crash. */
        if (w->proc_live && w->wanted && !w->retiring && !p->stopping && w->state == PROC_RUNNING)
            uv_timer_start(&w->timer, on_timer_linkless, 1000, 0);
        /* A drained worker's link is closed (by it, or at DRAIN's timeout):
         * it has nothing left to do, so it must not linger either. */
        else if (w->proc_live && !w->wanted && !p->stopping && w->state == PROC_RUNNING)
            uv_timer_start(&w->timer, on_timer_drained, 2000, 0);
    }
    gw_notify_finished(p->gw);
}

/* ---- processes -------------------------------------------------------- */

static worker_proc *free_slot(pool *p)
{
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = p->procs[i];
        if (!w->wanted && !w->proc_live && w->state == PROC_IDLE)
            return w;
    }
    if (p->n_procs >= 65536)
        return NULL;
    worker_proc **np = realloc(p->procs, (p->n_procs + 1) * sizeof *np);
    if (!np)
        return NULL;
    p->procs = np;
    worker_proc *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->pool = p;
    w->id = p->n_procs + 1;
    uv_timer_init(p->gw->loop, &w->timer);
    w->timer.data = w;
    p->procs[p->n_procs++] = w;
    return w;
}

/* Stop taking work on `w` and let it go; with `replace`, start its
 * successor first and drain `w` only once the successor is ready. */
static void retire_worker(worker_proc *w, const char *why, bool replace)
{
    pool *p = w->pool;
    if (w->retiring)
        return;
    w->retiring = true;
    slog(p->gw->log, LOG_INFO, "pool %s: retiring worker %u (pid %d): %s", p->name, w->id, w->pid, why);
    if (replace && w->wanted && !p->stopping) {
        worker_proc *n = free_slot(p);
        if (n) {
            w->wanted = false;
            n->wanted = true;
            n->replaces = w;
            w->replaces_pending = true; /* keeps serving until then */
            spawn_worker(n);
            return;
        }
    }
    w->wanted = false;
    if (w->link)
        wlink_drain(w->link, p->cfg->graceful_timeout_ms);
    else if (w->proc_live)
        uv_process_kill(&w->proc, SIGTERM);
}

static void on_proc_closed(uv_handle_t *h)
{
    worker_proc *w = h->data;
    w->proc_live = false;
    if (!w->wanted && w->state == PROC_STOPPING)
        w->state = PROC_IDLE;
    roll(w->pool); /* a drained worker is gone: the reload may go on */
    gw_notify_finished(w->pool->gw);
}

static void on_timer(uv_timer_t *t)
{
    worker_proc *w = t->data;
    pool *p = w->pool;
    if (w->state == PROC_BACKOFF && w->wanted && !p->stopping) {
        spawn_worker(w);
    } else if (w->state == PROC_STARTING && w->proc_live) {
        slog(p->gw->log, LOG_WARN, "pool %s: worker %u (pid %d) did not connect within %.1fs; killing it", p->name,
             w->id, w->pid, p->cfg->startup_timeout_ms / 1000.0);
        uv_process_kill(&w->proc, SIGKILL);
    } else if (w->state == PROC_STOPPING && w->proc_live) {
        slog(p->gw->log, LOG_WARN, "pool %s: worker %u (pid %d) did not stop in time; killing it", p->name, w->id,
             w->pid);
        uv_process_kill(&w->proc, SIGKILL);
    }
}

static void on_timer_linkless(uv_timer_t *t)
{
    worker_proc *w = t->data;
    pool *p = w->pool;
    if (w->link || !w->proc_live || w->state != PROC_RUNNING || p->stopping)
        return;
    slog(p->gw->log, LOG_WARN, "pool %s: worker %u (pid %d) link closed but the process lives on; stopping it",
         p->name, w->id, w->pid);
    uv_process_kill(&w->proc, SIGTERM);
    w->state = PROC_STOPPING; /* respawned on exit: the slot is still wanted */
    uv_timer_start(&w->timer, on_timer, 5000, 0);
}

static void on_timer_drained(uv_timer_t *t)
{
    worker_proc *w = t->data;
    pool *p = w->pool;
    if (w->link || !w->proc_live || w->wanted || w->state != PROC_RUNNING || p->stopping)
        return;
    slog(p->gw->log, LOG_WARN, "pool %s: worker %u (pid %d) was drained and its link closed, but it does not exit; "
         "stopping it", p->name, w->id, w->pid);
    uv_process_kill(&w->proc, SIGTERM);
    w->state = PROC_STOPPING; /* on_timer kills it if SIGTERM is not enough */
    uv_timer_start(&w->timer, on_timer, 5000, 0);
}

static void on_proc_exit(uv_process_t *proc, int64_t status, int sig)
{
    worker_proc *w = proc->data;
    pool *p = w->pool;
    uint64_t now = uv_now(p->gw->loop);
    uint64_t lived = now - w->started_ms;
    bool expected = p->stopping || !w->wanted || w->retiring;
    int level = expected && (sig == 0 || sig == SIGTERM) && status == 0 ? LOG_INFO : LOG_WARN;
    if (sig)
        slog(p->gw->log, level, "pool %s: worker %u (pid %d) killed by signal %d after %.1fs", p->name, w->id,
             w->pid, sig, lived / 1000.0);
    else
        slog(p->gw->log, level, "pool %s: worker %u (pid %d) exited with status %lld after %.1fs", p->name,
             w->id, w->pid, (long long)status, lived / 1000.0);
    uv_close((uv_handle_t *)&w->proc, on_proc_closed);
    w->pid = 0;
    if (w->state == PROC_STARTING)
        w->failed_starts++;
    bool was_retiring = w->retiring;
    w->retiring = false;
    /* A replacement that dies before taking over leaves the old one
     * serving -- unless the old one asked to go (RETIRE): its link opens no
     * more streams, so it is drained now and this slot, still wanted,
     * restarts with backoff like any crash. */
    if (w->replaces) {
        worker_proc *old = w->replaces;
        w->replaces = NULL;
        old->replaces_pending = false;
        if (old->link && wlink_retiring(old->link)) {
            wlink_drain(old->link, p->cfg->graceful_timeout_ms);
        } else {
            old->retiring = false;
            old->wanted = true;
            w->wanted = false;
        }
    }
    if (p->stopping || !w->wanted) {
        w->state = PROC_STOPPING; /* becomes IDLE once the handle closed */
        uv_timer_stop(&w->timer);
        return;
    }
    (void)was_retiring;
    w->restarts++;
    p->stats.restarts++;
    /* Respawn with exponential backoff. A worker that ran a while starts
     * over from the shortest delay; one that keeps dying young is a crash
     * loop, logged as such and retried at the longest delay. */
    if (lived > 10000) {
        w->backoff_ms = 0;
        w->quick_exits = 0;
    } else {
        w->quick_exits++;
    }
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 100;
    if (w->backoff_ms > 10000)
        w->backoff_ms = 10000;
    if (w->quick_exits == CRASH_LOOP_EXITS)
        slog(p->gw->log, LOG_ERROR,
             "pool %s: worker %u is crash-looping (%u exits within 10s of starting); backing off, up to %.0fs "
             "between restarts",
             p->name, w->id, w->quick_exits, 10.0);
    w->state = PROC_BACKOFF;
    if (pool_is_down(p))
        fail_queue(p, 503);
    if (w->backoff_ms > 100)
        slog(p->gw->log, LOG_WARN, "pool %s: worker %u restarting in %.1fs", p->name, w->id, w->backoff_ms / 1000.0);
    uv_timer_start(&w->timer, on_timer, w->backoff_ms, 0);
}

static void spawn_worker(worker_proc *w)
{
    pool *p = w->pool;
    gateway *gw = p->gw;
    char id_env[64];
    snprintf(id_env, sizeof id_env, "SLUICE_WORKER_ID=%u", w->id);
    size_t n = 0;
    while (p->env[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return;
    memcpy(env, p->env, n * sizeof *env);
    env[n] = id_env;

    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t opt = {
        .exit_cb = on_proc_exit,
        .file = p->file,
        .args = p->cfg->command,
        .env = env,
        .cwd = p->cfg->directory[0] ? p->cfg->directory : NULL,
        .stdio_count = 3,
        .stdio = stdio,
        /* Its own session and process group: a terminal's Ctrl-C (SIGINT to
         * the foreground group) reaches the gateway alone, which then drains
         * its workers in order instead of racing their deaths. */
        .flags = UV_PROCESS_DETACHED,
    };
    if (p->cfg->user[0] || p->cfg->group[0]) {
        /* run as another user: only possible when the gateway runs as root */
        if (p->cfg->user[0]) {
            struct passwd *pw = getpwnam(p->cfg->user);
            if (!pw) {
                slog(gw->log, LOG_ERROR, "pool %s: no such user '%s'", p->name, p->cfg->user);
                free(env);
                return;
            }
            opt.uid = pw->pw_uid;
            opt.gid = pw->pw_gid;
            opt.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        }
        if (p->cfg->group[0]) {
            struct group *gr = getgrnam(p->cfg->group);
            if (!gr) {
                slog(gw->log, LOG_ERROR, "pool %s: no such group '%s'", p->name, p->cfg->group);
                free(env);
                return;
            }
            opt.gid = gr->gr_gid;
            opt.flags |= UV_PROCESS_SETGID;
        }
    }
    w->proc.data = w;
    int rc = uv_spawn(gw->loop, &w->proc, &opt);
    free(env);
    w->started_ms = uv_now(gw->loop);
    w->gen = p->gen;
    w->requests = 0;
    w->retiring = false;
    w->request_limit = 0;
    if (p->cfg->max_requests) {
        uint64_t j = p->cfg->max_requests_jitter;
        uint64_t r = j ? (uint64_t)rand() % (2 * j + 1) : 0;
        w->request_limit = p->cfg->max_requests + r > j ? p->cfg->max_requests + r - j : 1;
    }
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "pool %s: cannot start worker %u (%s): %s", p->name, w->id, p->cfg->command[0],
             uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, NULL);
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 500;
        if (w->backoff_ms > 10000)
            w->backoff_ms = 10000;
        w->quick_exits++;
        w->failed_starts++;
        w->state = PROC_BACKOFF;
        if (pool_is_down(p))
            fail_queue(p, 503);
        uv_timer_start(&w->timer, on_timer, w->backoff_ms, 0);
        return;
    }
    w->proc_live = true;
    w->pid = w->proc.pid;
    w->state = PROC_STARTING;
    slog(gw->log, LOG_INFO, "pool %s: started worker %u (pid %d)", p->name, w->id, w->pid);
    uv_timer_start(&w->timer, on_timer, p->cfg->startup_timeout_ms, 0);
}

/* ---- scaling and memory ----------------------------------------------- */

static uint64_t proc_rss(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

uint64_t pool_worker_rss(int pid) { return proc_rss(pid); }

static void on_tick(uv_timer_t *t)
{
    pool *p = t->data;
    if (p->stopping)
        return;
    uint64_t now = uv_now(p->gw->loop);
    if (p->q_len)
        maybe_scale_up(p);
    roll(p); /* retries a reload step whose replacement failed to start */
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = p->procs[i];
        if (w->state != PROC_RUNNING || !w->wanted || w->retiring)
            continue;
        if (p->cfg->memory_limit) {
            uint64_t rss = proc_rss(w->pid);
            if (rss > p->cfg->memory_limit) {
                char why[96];
                snprintf(why, sizeof why, "RSS %.1f MiB above memory_limit", rss / 1048576.0);
                retire_worker(w, why, true);
                continue;
            }
        }
        /* scale down: a worker idle for idle_timeout, above min_workers */
        if (p->target > p->min && w->link && wlink_open_streams(w->link) == 0 && !p->q_len &&
            now - w->last_active_ms > p->cfg->idle_timeout_ms) {
            p->target--;
            slog(p->gw->log, LOG_INFO, "pool %s: scaling down to %u workers (worker %u idle)", p->name, p->target,
                 w->id);
            retire_worker(w, "idle", false);
        }
    }
}

/* Spawn or retire workers until `n` are wanted. */
static int resize(pool *p, uint32_t n)
{
    uint32_t live = live_wanted(p, true);
    p->target = n;
    while (live < n) {
        worker_proc *w = free_slot(p);
        if (!w)
            return -ENOMEM;
        w->wanted = true;
        spawn_worker(w);
        live++;
    }
    /* retire the newest wanted workers beyond n, idle ones first */
    for (int pass = 0; pass < 2 && live > n; pass++) {
        for (uint32_t i = p->n_procs; i-- > 0 && live > n;) {
            worker_proc *w = p->procs[i];
            if (!w->wanted || w->retiring || w->state == PROC_IDLE)
                continue;
            bool busy = w->link && wlink_open_streams(w->link) > 0;
            if (pass == 0 && busy)
                continue;
            if (w->state == PROC_BACKOFF) {
                uv_timer_stop(&w->timer);
                w->wanted = false;
                w->state = PROC_IDLE;
            } else {
                retire_worker(w, "scaled down", false);
            }
            live--;
        }
    }
    return 0;
}

int pool_scale(pool *p, uint32_t n)
{
    if (p->stopping)
        return -ECANCELED;
    /* The operator's word wins over the autoscaler's bounds until the next
     * reload (as in gunicorn, TTIN grows a fixed-size pool too). */
    if (n < p->min)
        p->min = n;
    if (n > p->max)
        p->max = n;
    int rc = resize(p, n);
    if (rc == 0)
        slog(p->gw->log, LOG_INFO, "pool %s: scaled to %u workers", p->name, n);
    return rc;
}

uint32_t pool_target(const pool *p) { return p->target; }
uint32_t pool_min_workers(const pool *p) { return p->min; }
uint32_t pool_max_workers(const pool *p) { return p->max; }

/* One step of a rolling reload: replace the next worker started with an
 * older config, but only when no replacement is starting and every drained
 * worker has exited, so a pool of N never runs more than N+1 processes. */
static void roll(pool *p)
{
    if (!p->rolling || p->stopping)
        return;
    uint32_t live = 0;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        const worker_proc *w = p->procs[i];
        if (w->wanted && w->state == PROC_STARTING)
            return;
        live += w->proc_live;
    }
    if (live > p->target)
        return;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = p->procs[i];
        if (w->wanted && !w->retiring && w->state == PROC_RUNNING && w->gen != p->gen) {
            retire_worker(w, "reload", true);
            return;
        }
    }
    p->rolling = false;
    slog(p->gw->log, LOG_INFO, "pool %s: reload complete, %u workers on the new config", p->name,
         live_wanted(p, false));
}

int pool_reload(pool *p)
{
    if (p->stopping)
        return -ECANCELED;
    /* Workers started from now on run the new config (generation); the
     * ones before it are replaced one at a time by roll(). A reload during
     * a reload just moves the goal: replacements still starting on the
     * older config are rolled over in turn once up. */
    p->gen++;
    p->rolling = true;
    p->min = p->cfg->min_workers;
    p->max = p->cfg->max_workers;
    uint32_t n = p->target < p->min ? p->min : p->target > p->max ? p->max : p->target;
    if (n != p->target)
        slog(p->gw->log, LOG_INFO, "pool %s: %u workers (min %u, max %u)", p->name, n, p->min, p->max);
    int rc = resize(p, n);
    uint32_t old = 0;
    for (uint32_t i = 0; i < p->n_procs; i++) {
        const worker_proc *w = p->procs[i];
        old += w->wanted && !w->retiring && w->state != PROC_IDLE && w->gen != p->gen;
    }
    slog(p->gw->log, LOG_INFO, "pool %s: reloading, replacing %u workers one by one", p->name, old);
    roll(p);
    return rc;
}

/* ---- status ----------------------------------------------------------- */

/* A link the pool gives new requests to (whether or not one is free). */
static bool link_serving(wlink *l)
{
    if (!wlink_serving(l))
        return false;
    const worker_proc *w = wlink_proc(l);
    return !w || w->link != l || !w->retiring || w->replaces_pending;
}

uint32_t pool_ready_workers(const pool *p)
{
    uint32_t n = 0;
    for (const link_node *k = p->links; k; k = k->next)
        n += link_serving(k->link);
    return n;
}

void pool_streams(const pool *p, uint64_t *active, uint64_t *capacity)
{
    uint64_t a = 0, c = 0;
    for (const link_node *k = p->links; k; k = k->next) {
        a += wlink_open_streams(k->link);
        if (link_serving(k->link))
            c += wlink_max_streams(k->link);
    }
    *active = a;
    *capacity = c;
}

uint32_t pool_worker_count(const pool *p) { return p->n_procs; }

bool pool_worker_info(const pool *p, uint32_t i, pool_worker_view *v)
{
    if (i >= p->n_procs)
        return false;
    const worker_proc *w = p->procs[i];
    memset(v, 0, sizeof *v);
    v->id = w->id;
    v->pid = w->pid;
    v->state = w->retiring && w->state == PROC_RUNNING ? "retiring" : state_names[w->state];
    v->wanted = w->wanted;
    v->active_streams = w->link ? wlink_open_streams(w->link) : 0;
    v->requests = w->requests;
    v->restarts = w->restarts;
    v->uptime_s = w->proc_live ? (double)(uv_now(p->gw->loop) - w->started_ms) / 1000.0 : 0;
    v->rss = w->proc_live && w->pid ? proc_rss(w->pid) : 0;
    return true;
}

bool pool_attached_info(const pool *p, uint32_t i, pool_worker_view *v)
{
    for (const link_node *n = p->links; n; n = n->next) {
        wlink *l = n->link;
        if (wlink_proc(l) || !wlink_ready(l) || i-- > 0)
            continue;
        memset(v, 0, sizeof *v);
        v->id = (uint32_t)wlink_worker_id(l);
        v->pid = wlink_pid(l);
        v->state = "running";
        v->wanted = true;
        v->active_streams = wlink_open_streams(l);
        v->requests = wlink_requests(l);
        v->uptime_s = (double)(uv_now(p->gw->loop) - wlink_connected_ms(l)) / 1000.0;
        v->peer = wlink_peer(l);
        /* a local peer's RSS is readable only for a Unix-socket worker */
        v->rss = !v->peer[0] && v->pid ? proc_rss(v->pid) : 0;
        return true;
    }
    return false;
}

/* ---- setup ------------------------------------------------------------ */

/* The workers' environment: ours, then the pool's `env` entries, then the
 * SLUICE_* variables (SLUICE_WORKER_ID is added per spawn). Entries are
 * borrowed from environ and the config, except the two built here. */
static int build_env(pool *p)
{
    size_t n = 0;
    while (environ[n])
        n++;
    free(p->env);
    free(p->own_env[0]);
    free(p->own_env[1]);
    p->env = calloc(n + p->cfg->n_env + 4, sizeof *p->env);
    if (!p->env)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(environ[i], "SLUICE_", 7))
            continue;
        /* a pool entry for the same variable replaces ours */
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
        bool overridden = false;
        for (uint32_t j = 0; j < p->cfg->n_env && !overridden; j++)
            overridden = !strncmp(p->cfg->env[j], environ[i], klen);
        if (!overridden)
            p->env[k++] = environ[i];
    }
    for (uint32_t j = 0; j < p->cfg->n_env; j++)
        p->env[k++] = p->cfg->env[j];
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
    p->own_env[0] = a;
    p->own_env[1] = b;
    return 0;
}

int pool_new(pool **out, gateway *gw, const sluice_pool_config *cfg)
{
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->gw = gw;
    p->cfg = cfg;
    snprintf(p->name, sizeof p->name, "%s", cfg->name);
    p->target = p->min = cfg->min_workers;
    p->max = cfg->max_workers;
    *out = p;
    return 0;
}

/* The TLS settings of the pool's tls: worker listeners. */
static void tls_files(const sluice_pool_config *cfg, tls_cert_files *f, tls_server_config *tc)
{
    *f = (tls_cert_files){.cert_file = cfg->tls_cert, .key_file = cfg->tls_key};
    *tc = (tls_server_config){.certs = f, .n_certs = 1, .alpn = "sluice/1",
                              .client_ca_file = cfg->client_ca[0] ? cfg->client_ca : NULL};
}

/* A relative command path ("bin/app", "./app") names a file from the
 * gateway's working directory, not from the pool's `directory` (which is
 * the worker's cwd): resolve it once, here. Bare names go through PATH. */
static void resolve_command(pool *p)
{
    if (!p->cfg->command || !p->cfg->command[0]) { /* workers = 0: attached workers only */
        p->file[0] = '\0';
        return;
    }
    const char *cmd = p->cfg->command[0];
    char cwd[512];
    if (cmd[0] != '/' && strchr(cmd, '/') && getcwd(cwd, sizeof cwd) &&
        (size_t)snprintf(p->file, sizeof p->file, "%s/%s", cwd, cmd) < sizeof p->file)
        return;
    snprintf(p->file, sizeof p->file, "%s", cmd);
}

void pool_set_config(pool *p, const sluice_pool_config *cfg)
{
    p->cfg = cfg;
    resolve_command(p);
    build_env(p);
    if (p->worker_tls && cfg->tls_cert[0]) {
        /* renewed certificate files take effect for the next worker links;
         * a failed reload keeps the running context */
        tls_cert_files f;
        tls_server_config tc;
        tls_files(cfg, &f, &tc);
        char msg[TLS_ERR_LEN];
        if (tls_ctx_reload(&p->worker_tls, &tc, msg, sizeof msg) < 0)
            slog(p->gw->log, LOG_ERROR, "pool %s: worker TLS not reloaded (keeping the running one): %s",
                 p->name, msg);
    }
}

/* Workers that run as another user (user=, group=) must reach the socket:
 * a directory we created is handed to that user (or opened to the socket
 * group, traverse only), and the socket to the user. Nobody else gets in. */
static int open_socket_to_workers(pool *p, bool created_dir)
{
    const sluice_pool_config *cfg = p->cfg;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    if (cfg->user[0]) {
        struct passwd *pw = getpwnam(cfg->user);
        if (!pw) {
            slog(p->gw->log, LOG_ERROR, "pool %s: no such user '%s'", p->name, cfg->user);
            return -EINVAL;
        }
        uid = pw->pw_uid;
    }
    if (cfg->socket_group[0]) {
        struct group *gr = getgrnam(cfg->socket_group);
        if (gr)
            gid = gr->gr_gid;
    }
    if (uid == (uid_t)-1 && gid == (gid_t)-1)
        return 0;
    if (created_dir && (chown(p->dir, uid, gid) < 0 || chmod(p->dir, gid != (gid_t)-1 ? 0710 : 0700) < 0)) {
        int e = errno;
        slog(p->gw->log, LOG_ERROR, "pool %s: socket directory %s: %s", p->name, p->dir, strerror(e));
        return -e;
    }
    if (uid != (uid_t)-1 && chown(p->sock, uid, (gid_t)-1) < 0) {
        int e = errno;
        slog(p->gw->log, LOG_ERROR, "pool %s: socket %s for user '%s': %s", p->name, p->sock, cfg->user, strerror(e));
        return -e;
    }
    return 0;
}

/* argv as one line for the log, arguments with spaces or quotes in single
 * quotes (shell style), cut with "..." past `cap`. */
static void command_text(char **argv, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (!argv || !argv[0]) {
        snprintf(out, cap, "(no command: attached workers only)");
        return;
    }
    for (size_t i = 0; argv[i]; i++) {
        const char *a = argv[i];
        bool quote = !*a || strpbrk(a, " \t\"'\\$") != NULL;
        int w = snprintf(out + n, cap - n, quote ? "%s'%s'" : "%s%s", i ? " " : "", a);
        if (w < 0 || (size_t)w >= cap - n) {
            if (cap > 4)
                memcpy(out + cap - 4, "...", 4);
            return;
        }
        n += (size_t)w;
    }
}

int pool_check_tls(const sluice_config *c, FILE *err)
{
    int rc = 0;
    for (uint32_t i = 0; i < c->n_pools; i++) {
        const sluice_pool_config *cfg = &c->pools[i];
        if (!cfg->tls_cert[0])
            continue;
        tls_cert_files f;
        tls_server_config tc;
        tls_files(cfg, &f, &tc);
        tls_ctx *ctx = NULL;
        char msg[TLS_ERR_LEN];
        if (tls_ctx_new_server(&ctx, &tc, msg, sizeof msg) < 0) {
            fprintf(err, "%s: pool '%s': worker TLS: %s\n", c->config_path[0] ? c->config_path : "sluice",
                    cfg->name, msg);
            rc = -EINVAL;
        }
        tls_ctx_free(ctx);
    }
    return rc;
}

/* The worker_listen addresses: TCP (clear, with the token), TLS, and extra
 * Unix sockets for workers that attach by themselves. */
static int open_worker_listeners(pool *p)
{
    gateway *gw = p->gw;
    const sluice_pool_config *cfg = p->cfg;
    if (cfg->tls_cert[0]) {
        tls_cert_files f;
        tls_server_config tc;
        tls_files(cfg, &f, &tc);
        char msg[TLS_ERR_LEN];
        int rc = tls_ctx_new_server(&p->worker_tls, &tc, msg, sizeof msg);
        if (rc < 0) {
            slog(gw->log, LOG_ERROR, "pool %s: worker TLS: %s", p->name, msg);
            return rc;
        }
    }
    for (uint32_t i = 0; i < cfg->n_worker_listen; i++) {
        const char *a = cfg->worker_listen[i];
        worker_listener *wl = &p->wl[p->n_wl];
        wl->p = p;
        int rc;
        if (!strncmp(a, "unix:", 5)) {
            snprintf(wl->path, sizeof wl->path, "%s", a + 5);
            unlink(wl->path);
            uv_pipe_init(gw->loop, &wl->h.pipe, 0);
            wl->h.stream.data = wl;
            p->n_wl++;
            wl->live = true;
            mode_t old = umask(cfg->socket_mode == 0660 ? 0117 : 0177);
            rc = uv_pipe_bind(&wl->h.pipe, wl->path);
            umask(old);
            if (rc == 0 && cfg->socket_group[0]) {
                struct group *gr = getgrnam(cfg->socket_group);
                if (!gr || chown(wl->path, (uid_t)-1, gr->gr_gid) < 0)
                    rc = gr ? -errno : -ENOENT;
            }
        } else {
            struct sockaddr_storage ss;
            wl->tls = !strncmp(a, "tls:", 4);
            uv_tcp_init(gw->loop, &wl->h.tcp);
            wl->h.stream.data = wl;
            p->n_wl++;
            wl->live = true;
            rc = sluice_listen_sockaddr(a + 4, &ss);
            if (rc == 0)
                rc = uv_tcp_bind(&wl->h.tcp, (struct sockaddr *)&ss, 0);
        }
        if (rc == 0)
            rc = uv_listen(&wl->h.stream, 256, on_remote_connection);
        if (rc < 0) {
            slog(gw->log, LOG_ERROR, "pool %s: worker listener %s: %s", p->name, a, uv_strerror(rc));
            return rc;
        }
        if (!strncmp(a, "tcp:", 4) && !sluice_address_is_loopback(a + 4))
            slog(gw->log, LOG_WARN, "pool %s: workers attach over clear-text TCP on %s: the token and every "
                 "request cross the network unencrypted; use tls:%s on a network you do not trust", p->name,
                 a + 4, a + 4);
        slog(gw->log, LOG_INFO, "pool %s: accepting workers on %s (%s)", p->name, a,
             !strncmp(a, "unix:", 5) ? "socket permissions"
             : !wl->tls              ? "token required"
             : cfg->client_ca[0] && cfg->token[0] ? "client certificate and token required"
             : cfg->client_ca[0]     ? "client certificate required"
                                     : "token required");
    }
    return 0;
}

static void close_worker_listeners(pool *p)
{
    for (uint32_t i = 0; i < p->n_wl; i++) {
        worker_listener *wl = &p->wl[i];
        if (!wl->live)
            continue;
        uv_close((uv_handle_t *)&wl->h.stream, NULL);
        wl->live = false;
    }
}

int pool_start(pool *p)
{
    gateway *gw = p->gw;
    const sluice_pool_config *cfg = p->cfg;
    bool created = false;
    if (cfg->socket_dir[0]) {
        snprintf(p->dir, sizeof p->dir, "%s", cfg->socket_dir);
        created = mkdir(p->dir, 0700) == 0;
        if (!created && errno != EEXIST) {
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
        created = true;
    }
    /* workers may run in another directory: give them an absolute path */
    char abs[PATH_MAX];
    size_t abs_len;
    if (p->dir[0] != '/' && realpath(p->dir, abs) && (abs_len = strlen(abs)) < sizeof p->dir)
        memcpy(p->dir, abs, abs_len + 1);
    snprintf(p->sock, sizeof p->sock, "%s/%s.sock", p->dir, p->name);
    if (strlen(p->sock) >= 108) {
        slog(gw->log, LOG_ERROR, "socket path too long: %s", p->sock);
        return -ENAMETOOLONG;
    }
    /* SLUICE_SOCKET is a comma-separated list to the libraries (PROTOCOL.md
     * 10.2): a path with a comma, or spaces at an end, cannot be handed on */
    size_t sl = strlen(p->sock);
    if (strchr(p->sock, ',') || p->sock[0] == ' ' || p->sock[sl - 1] == ' ') {
        slog(gw->log, LOG_ERROR, "pool %s: socket path %s has a comma or a space at an end, which workers "
             "would read as a list of addresses: set socket_dir (or TMPDIR) to another directory", p->name,
             p->sock);
        return -EINVAL;
    }
    unlink(p->sock);
    uv_pipe_init(gw->loop, &p->server, 0);
    p->server.data = p;
    /* only the gateway's user may connect (or its group, when configured) */
    mode_t old = umask(cfg->socket_mode == 0660 ? 0117 : 0177);
    int rc = uv_pipe_bind(&p->server, p->sock);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->server, 256, on_connection);
    if (rc < 0) {
        slog(gw->log, LOG_ERROR, "listening on %s: %s", p->sock, uv_strerror(rc));
        uv_close((uv_handle_t *)&p->server, NULL);
        return rc;
    }
    p->listening = true;
    if (cfg->socket_group[0]) {
        struct group *gr = getgrnam(cfg->socket_group);
        if (!gr || chown(p->sock, (uid_t)-1, gr->gr_gid) < 0) {
            slog(gw->log, LOG_ERROR, "pool %s: socket group '%s': %s", p->name, cfg->socket_group,
                 gr ? strerror(errno) : "no such group");
            return -EINVAL;
        }
    }
    rc = open_socket_to_workers(p, created);
    if (rc < 0)
        return rc;
    rc = open_worker_listeners(p);
    if (rc < 0)
        return rc;
    rc = build_env(p);
    if (rc < 0)
        return rc;
    resolve_command(p);
    uv_timer_init(gw->loop, &p->tick);
    p->tick.data = p;
    p->tick_live = true;
    uv_timer_start(&p->tick, on_tick, 1000, 1000);
    char cmd[1024];
    command_text(cfg->command, cmd, sizeof cmd);
    slog(gw->log, LOG_INFO, "pool %s: socket %s, %u workers (min %u, max %u): %s", p->name, p->sock, p->target,
         cfg->min_workers, cfg->max_workers, cmd);
    for (uint32_t i = 0; i < p->target; i++) {
        worker_proc *w = free_slot(p);
        if (!w)
            return -ENOMEM;
        w->wanted = true;
        spawn_worker(w);
    }
    return 0;
}

void pool_shutdown(pool *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    fail_queue(p, 503);
    for (link_node *n = p->links; n; n = n->next)
        wlink_drain(n->link, p->cfg->graceful_timeout_ms);
    for (uint32_t i = 0; i < p->n_procs; i++) {
        worker_proc *w = p->procs[i];
        uv_timer_stop(&w->timer);
        if (w->proc_live) {
            uv_process_kill(&w->proc, SIGTERM);
            w->state = PROC_STOPPING;
            uv_timer_start(&w->timer, on_timer, p->cfg->graceful_timeout_ms + 5000, 0);
        } else {
            w->state = PROC_IDLE;
        }
    }
    if (p->tick_live)
        uv_timer_stop(&p->tick);
    if (p->listening) {
        uv_close((uv_handle_t *)&p->server, NULL);
        p->listening = false;
    }
    close_worker_listeners(p);
}

bool pool_stopped(const pool *p)
{
    if (!p->stopping)
        return false;
    for (uint32_t i = 0; i < p->n_procs; i++)
        if (p->procs[i]->proc_live)
            return false;
    return p->n_links == 0;
}

void pool_free(pool *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->n_procs; i++)
        uv_close((uv_handle_t *)&p->procs[i]->timer, NULL);
    if (p->tick_live)
        uv_close((uv_handle_t *)&p->tick, NULL);
    if (p->sock[0])
        unlink(p->sock);
    close_worker_listeners(p);
    for (uint32_t i = 0; i < p->n_wl; i++)
        if (p->wl[i].path[0])
            unlink(p->wl[i].path);
    tls_ctx_free(p->worker_tls);
    p->worker_tls = NULL;
    if (p->own_dir)
        rmdir(p->dir);
    /* Links still open (an immediate exit on a second stop signal): close
     * them properly, so their handles' close callbacks free them. Each
     * close takes its node off the list (link_closed). */
    for (link_node *n = p->links, *next; n; n = next) {
        next = n->next;
        wlink_close(n->link, 0, "gateway exiting");
    }
    free(p->own_env[0]);
    free(p->own_env[1]);
    free(p->env);
    p->env = NULL;
    p->own_env[0] = p->own_env[1] = NULL;
}

void pool_release(pool *p)
{
    for (uint32_t i = 0; i < p->n_procs; i++)
        free(p->procs[i]);
    free(p->procs);
    free(p);
}
