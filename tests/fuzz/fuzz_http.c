/* libFuzzer target: arbitrary client bytes through the gateway's HTTP input
 * path, in process. The gateway (front/http1, front/ws, pool, link) runs
 * on a libuv loop with one in-process worker (the C worker library,
 * answering every request with a small body and reading every request
 * body, accepting every WebSocket and echoing its messages), so an input
 * that opens with a WebSocket handshake drives the RFC 6455 exchange. Each
 * input is written by a loopback TCP client, which then half-closes; the
 * loop runs until the gateway has closed the connection or a bound is hit.
 * Invariants: no sanitizer report, and no connection or stream left behind
 * once the client is gone. */
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

static void on_check(uv_check_t *h) { gw_flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { gw_flush_all(h->data); }

static const sluice_header resp_headers[] = {
    {{(const uint8_t *)"content-type", 12}, {(const uint8_t *)"text/plain", 10}},
};

static void on_request(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)req;
    (void)ud;
    sluice_stream_respond(s, 200, resp_headers, 1, true);
    sluice_stream_write(s, "ok\n", 3, NULL, NULL);
    sluice_stream_end(s, NULL, 0);
}

static void on_websocket(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)req;
    (void)ud;
    if (sluice_ws_accept(s, NULL, NULL, 0) < 0)
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
}

static void on_echoed(sluice_stream *s, int status, void *ud)
{
    (void)s;
    (void)status;
    free(ud);
}

static void on_message(sluice_stream *s, const uint8_t *data, size_t len, bool text, void *ud)
{
    (void)data;
    (void)ud;
    uint8_t *buf = sluice_ws_take(s);
    if (buf && sluice_ws_send(s, buf, len, text, on_echoed, buf) < 0)
        free(buf);
    if (len == 3 && !memcmp(data, "bye", 3)) /* the worker closes too */
        sluice_ws_close(s, 4000, "bye");
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
    static char dir[] = "/tmp/sluice-fuzz-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    cfg = calloc(1, sizeof *cfg);
    sluice_config_defaults(cfg);
    strcpy(cfg->access_log, "off");
    cfg->log_level = LOG_ERROR;
    cfg->header_timeout_ms = 200;
    cfg->n_pools = 1;
    cfg->pools = calloc(1, sizeof *cfg->pools);
    sluice_pool_defaults(&cfg->pools[0], "fuzz");
    cfg->pools[0].min_workers = 0;
    cfg->pools[0].max_workers = 0; /* only the in-process worker */
    cfg->pools[0].response_timeout_ms = 500;
    cfg->pools[0].queue_timeout_ms = 500;
    cfg->pools[0].max_body = 4096;
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
    cfg->n_listens = 1; /* one plain listener on an ephemeral port */
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
    sluice_worker_config wc = {.socket_path = sock, .max_streams = 8, .window = 1024};
    sluice_worker_callbacks cb = {.on_request = on_request, .on_ready = on_ready, .on_websocket = on_websocket,
                                  .on_message = on_message};
    if (sluice_worker_new(&worker, gw.loop, &wc, &cb, NULL) < 0 || sluice_worker_connect(worker) < 0)
        abort();
    for (int i = 0; i < 2000 && !worker_ready; i++)
        uv_run(gw.loop, UV_RUN_NOWAIT);
    if (!worker_ready)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* hundreds of thousands of loopback connections: retry when ephemeral
     * ports run out rather than calling that a finding */
    int tries = 0;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if ((errno != EADDRNOTAVAIL && errno != EAGAIN && errno != EINTR) || ++tries > 1000) {
            perror("fuzz_http: connect");
            abort();
        }
        close(fd);
        usleep(1000);
        fd = socket(AF_INET, SOCK_STREAM, 0);
    }
    /* close with RST: no TIME_WAIT left behind per input */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t sent = 0;
    bool eof = false;
    char buf[65536];
    /* bounded: every wait in the gateway has a timeout well below this */
    for (int i = 0; i < 20000 && !eof; i++) {
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, 0);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                sent = size; /* the gateway closed on us: fine */
            if (sent == size)
                shutdown(fd, SHUT_WR);
        }
        uv_run(gw.loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, i < 100 ? 0 : 1) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                eof = true;
        }
    }
    close(fd);
    /* the gateway must let go of the connection once the client is gone */
    /* bounded in time, generously: the gateway's own timeouts are <= 500 ms */
    for (int i = 0; i < 10000 && gw.n_conns > 0; i++) {
        uv_run(gw.loop, UV_RUN_NOWAIT);
        if (i > 100)
            usleep(1000);
    }
    /* a client must never cost the worker its link (neighbours would suffer) */
    if (!sluice_worker_ready(worker)) {
        fprintf(stderr, "fuzz_http: the worker lost its link\n");
        abort();
    }
    if (gw.n_conns != 0) {
        fprintf(stderr, "fuzz_http: %u connections left open\n", gw.n_conns);
        abort();
    }
    return 0;
}
