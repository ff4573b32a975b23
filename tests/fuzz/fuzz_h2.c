/* libFuzzer target: arbitrary HTTP/2 client frames through the gateway's
 * real input path, in process: listener -> the HTTP/1.1 front end's sniff
 * of the preface -> the HTTP/2 front end (nghttp2) -> streams submitted to
 * a pool -> one in-process worker (the C worker library).
 *
 * Input: one control byte, then the client's bytes after the connection
 * preface (which the target sends first: the fuzzer's bytes start with the
 * client's SETTINGS frame, as tests/fuzz/corpus/h2/ does). Control byte:
 *   bits 0-2       7: everything in one write; else writes of 16 << n
 *                  bytes, the loop run between them (frames straddle reads)
 *   bit 3          the client reads nothing (small socket buffers both
 *                  ends) until it half-closes: the gateway's writes stall;
 *   bits 4-7       how long the client keeps the connection open after its
 *                  last byte, reading all along, before it half-closes:
 *                  0-14 that many times 8 loop iterations (responses get
 *                  out), 15 some 30 ms (the gateway's deadlines, 10-20 ms
 *                  here, pass).
 *
 * The worker's answer depends on the request path, so the fuzzer reaches
 * the response side too (any mix of these letters):
 *   b  a 100 KiB body (more than any client window: flow control, credit)
 *   e  answer after the request body (read within credit) has ended
 *   t  response trailers        n  204, no body
 *   r  worker RESET REFUSED (retried, then 503)
 *   x  head and some body, then RESET (the response started: RST_STREAM)
 *   l  LIMIT 8 (a body over it: 413)
 *   p  the body is never read (no credit: the body deadline)
 *   s  no answer at all (the response deadline, or the client leaves)
 * Invariants: no sanitizer report; once the client is gone, no connection
 * left, no request left queued, no stream left open at the worker, and the
 * worker still has its link. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "core/gateway.h"
#include "front/h2/h2.h"
#include "front/http1/http1.h"
#include "front/listener.h"
#include "worker/pool.h"
#include "worker/router.h"
#include "sluice_worker.h"

void gw_flush_all(gateway *gw);

static gateway gw;
static sluice_config *cfg;
static sluice_worker *worker;
static bool worker_ready;
static int port;
static uv_check_t check;
static uv_prepare_t prepare;
static uint8_t big[100 * 1024];

static void on_check(uv_check_t *h) { gw_flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { gw_flush_all(h->data); }

#define B(lit) {(const uint8_t *)(lit), sizeof(lit) - 1}
static const sluice_header resp_headers[] = {{B("content-type"), B("text/plain")}};
static const sluice_header resp_trailers[] = {{B("x-checksum"), B("0")}, {B("grpc-status"), B("0")}};

static bool has(const sluice_bytes *target, char c)
{
    /* the letters count in the path only (not in the query) */
    for (size_t i = 1; i < target->len && target->ptr[i] != '?'; i++)
        if (target->ptr[i] == c)
            return true;
    return false;
}

/* The path's letters, kept per stream (the udata) until it ends. */
enum { F_BIG = 1, F_END = 2, F_TRAILERS = 4, F_204 = 8, F_SILENT = 16 };

static void answer(sluice_stream *s, unsigned flags)
{
    if (flags & F_SILENT)
        return;
    if (flags & F_204) {
        sluice_stream_respond(s, 204, NULL, 0, false);
        return;
    }
    if (sluice_stream_respond(s, 200, resp_headers, 1, true) < 0)
        return;
    if (flags & F_BIG)
        sluice_stream_write(s, big, sizeof big, NULL, NULL);
    else
        sluice_stream_write(s, "ok\n", 3, NULL, NULL);
    if (flags & F_TRAILERS)
        sluice_stream_end(s, resp_trailers, 2);
    else
        sluice_stream_end(s, NULL, 0);
}

static void on_request(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)ud;
    const sluice_bytes *t = &req->target;
    unsigned flags = (has(t, 'b') ? F_BIG : 0) | (has(t, 'e') ? F_END : 0) | (has(t, 't') ? F_TRAILERS : 0) |
                     (has(t, 'n') ? F_204 : 0) | (has(t, 's') ? F_SILENT : 0);
    if (has(t, 'r')) {
        sluice_stream_reset(s, SLUICE_RESET_REFUSED);
        return;
    }
    if (has(t, 'x')) {
        if (sluice_stream_respond(s, 200, resp_headers, 1, true) == 0)
            sluice_stream_write(s, big, 1000, NULL, NULL);
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        return;
    }
    if (has(t, 'l'))
        sluice_stream_set_limit(s, 8);
    if (has(t, 'p'))
        sluice_stream_pause_reading(s);
    if ((flags & F_END) && req->body_mode != SLUICE_BODY_NONE) {
        sluice_stream_set_udata(s, (void *)(uintptr_t)(flags | 0x100));
        return;
    }
    answer(s, flags);
}

static void on_end(sluice_stream *s, const sluice_headers *trailers, void *ud)
{
    (void)trailers;
    (void)ud;
    uintptr_t f = (uintptr_t)sluice_stream_udata(s);
    if (f & 0x100)
        answer(s, (unsigned)f & 0xff);
}

static void on_ready(sluice_worker *w, const sluice_hello *h, void *ud)
{
    (void)w;
    (void)h;
    (void)ud;
    worker_ready = true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i % 251);
    static char dir[] = "/tmp/sluice-fuzz-h2-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    cfg = calloc(1, sizeof *cfg);
    sluice_config_defaults(cfg);
    strcpy(cfg->access_log, "off");
    cfg->log_level = LOG_ERROR;
    /* every deadline short: an input that lingers sees them pass, and
     * none waits long (the fuzzer's speed) */
    cfg->header_timeout_ms = 10;
    cfg->keepalive_timeout_ms = 20;
    cfg->body_timeout_ms = 10;
    cfg->send_timeout_ms = 10;
    cfg->h2_max_streams = 16;
    cfg->max_headers = 32;
    cfg->max_header_bytes = 8192;
    cfg->max_target = 1024;
    cfg->n_pools = 1;
    cfg->pools = calloc(1, sizeof *cfg->pools);
    sluice_pool_defaults(&cfg->pools[0], "fuzz");
    cfg->pools[0].min_workers = 0;
    cfg->pools[0].max_workers = 0; /* only the in-process worker */
    cfg->pools[0].response_timeout_ms = 15;
    cfg->pools[0].queue_timeout_ms = 15;
    cfg->pools[0].max_body = 16384;
    cfg->pools[0].window = 32768;
    snprintf(cfg->pools[0].socket_dir, sizeof cfg->pools[0].socket_dir, "%s", dir);
    static char *cmd[] = {"/bin/false", NULL};
    cfg->pools[0].command = cmd;

    gw.cfg = cfg;
    gw.loop = uv_default_loop();
    if (sluice_log_new(&gw.log, "/dev/null", "off", LOG_ERROR) < 0)
        abort();
    gw.shared_in_size = 64 * 1024;
    gw.shared_in = malloc(gw.shared_in_size);
    uv_check_init(gw.loop, &check);
    check.data = &gw;
    uv_check_start(&check, on_check);
    uv_prepare_init(gw.loop, &prepare);
    prepare.data = &gw;
    uv_prepare_start(&prepare, on_prepare);
    uv_timer_init(gw.loop, &gw.shutdown_timer);
    gw.pools = calloc(1, sizeof *gw.pools);
    gw.n_pools = 1;
    if (pool_new(&gw.pools[0], &gw, &cfg->pools[0]) < 0 || router_new(&gw.router, &gw) < 0 ||
        pool_start(gw.pools[0]) < 0)
        abort();
    strcpy(cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 0;
    cfg->n_listens = 1; /* one plain listener (h2c by preface) on an ephemeral port */
    strcpy(cfg->listens[0].host, "127.0.0.1");
    cfg->listens[0].port = 0;
    if (listener_start(&gw, &http1_front_end) < 0)
        abort();
    struct sockaddr_in sa;
    int len = sizeof sa;
    uv_tcp_getsockname(&gw.listeners[0].tcp, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);

    char sock[600];
    snprintf(sock, sizeof sock, "%s/fuzz.sock", dir);
    sluice_worker_config wc = {.socket_path = sock, .max_streams = 8, .window = 4096};
    sluice_worker_callbacks cb = {.on_request = on_request, .on_end = on_end, .on_ready = on_ready};
    if (sluice_worker_new(&worker, gw.loop, &wc, &cb, NULL) < 0 || sluice_worker_connect(worker) < 0)
        abort();
    for (int i = 0; i < 2000 && !worker_ready; i++)
        uv_run(gw.loop, UV_RUN_NOWAIT);
    if (!worker_ready)
        abort();
    return 0;
}

static int connect_client(bool small_rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rcvbuf = 4096;
    if (small_rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* hundreds of thousands of loopback connections: retry when ephemeral
     * ports run out rather than calling that a finding */
    int tries = 0;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if ((errno != EADDRNOTAVAIL && errno != EAGAIN && errno != EINTR) || ++tries > 1000) {
            perror("fuzz_h2: connect");
            abort();
        }
        close(fd);
        usleep(1000);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (small_rcvbuf)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    /* close with RST: no TIME_WAIT left behind per input */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* One loop iteration, then what the gateway sent is read (and dropped)
 * unless the client does not read; returns false once the gateway closed
 * the connection. */
static bool step(int fd, int wait_ms, bool reading)
{
    static char buf[65536];
    uv_run(gw.loop, UV_RUN_NOWAIT);
    if (!reading) {
        if (wait_ms)
            usleep((useconds_t)wait_ms * 1000);
        return true;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) > 0) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    uint8_t ctl = data[0];
    size_t piece = (ctl & 7) == 7 ? 16384 + H2_PREFACE_LEN : (size_t)16 << (ctl & 7);
    bool reading = !(ctl & 8);
    int linger = ctl >> 4 == 15 ? 30 : (ctl >> 4) * 8;
    int linger_wait = ctl >> 4 == 15 ? 1 : 0; /* ms per iteration */
    static uint8_t msg[H2_PREFACE_LEN + 16384];
    memcpy(msg, H2_PREFACE, H2_PREFACE_LEN);
    memcpy(msg + H2_PREFACE_LEN, data + 1, size - 1);
    size_t total = H2_PREFACE_LEN + size - 1;

    int fd = connect_client(!reading);
    if (!reading) {
        /* loopback send buffers grow to megabytes: make the gateway's side
         * small (no autotuning) so that its writes do stall */
        for (int i = 0; i < 100 && gw.n_conns == 0; i++)
            uv_run(gw.loop, UV_RUN_NOWAIT);
        for (front_conn *c = gw.conns; c; c = c->next) {
            uv_os_fd_t sfd;
            int sndbuf = 4096;
            if (uv_fileno((uv_handle_t *)c->tcp, &sfd) == 0)
                setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        }
    }
    size_t sent = 0;
    bool open = true;
    /* bounded: every wait in the gateway has a timeout well below this */
    for (int i = 0; i < 20000 && open && sent < total; i++) {
        size_t want = total - sent < piece ? total - sent : piece;
        ssize_t n = send(fd, msg + sent, want, 0);
        if (n > 0)
            sent += (size_t)n;
        else if (n < 0 && errno != EAGAIN)
            break; /* the gateway closed on us: fine */
        open = step(fd, 0, reading);
    }
    /* the client stays a while, reading: responses, deadlines */
    for (int i = 0; i < linger && open; i++)
        open = step(fd, i < 16 ? 0 : linger_wait, reading);
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 20000 && open; i++)
        open = step(fd, i < 100 ? 0 : 1, true);
    close(fd);

    /* the gateway must let go of the connection once the client is gone,
     * and every stream with it (bounded in time, generously: the gateway's
     * own timeouts are <= 20 ms) */
    for (int i = 0; i < 10000 && (gw.n_conns > 0 || pool_queue_len(gw.pools[0]) > 0 ||
                                  sluice_worker_open_streams(worker) > 0);
         i++) {
        uv_run(gw.loop, UV_RUN_NOWAIT);
        if (i > 100)
            usleep(1000);
    }
    /* a client must never cost the worker its link (neighbours would suffer) */
    if (!sluice_worker_ready(worker)) {
        fprintf(stderr, "fuzz_h2: the worker lost its link\n");
        abort();
    }
    if (gw.n_conns != 0) {
        fprintf(stderr, "fuzz_h2: %u connections left open\n", gw.n_conns);
        abort();
    }
    if (pool_queue_len(gw.pools[0]) != 0) {
        fprintf(stderr, "fuzz_h2: %u requests left queued\n", pool_queue_len(gw.pools[0]));
        abort();
    }
    if (sluice_worker_open_streams(worker) != 0) {
        fprintf(stderr, "fuzz_h2: %u streams left open at the worker\n", sluice_worker_open_streams(worker));
        abort();
    }
    return 0;
}
