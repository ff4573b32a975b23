/* echo: streams the request body back as the response body.
 *
 * The response head (200, application/octet-stream, no Content-Length: the
 * gateway uses chunked encoding) goes out at once from on_request, and the
 * body follows as it arrives. For body_mode 2 (Expect: 100-continue, or a
 * Content-Length over the gateway's limit) the library puts the initial
 * CREDIT, granted from on_request, in front of that head, so the gateway
 * still answers 100 Continue (or 413) before it. Backpressure is end to
 * end: the stream reads in the library's manual credit mode, and a chunk of
 * request body is reported
 * consumed (which lets the gateway send more) only once its echo has been
 * handed to the socket, i.e. once the gateway granted response credit for
 * it. So at most one request window (32 KiB by default) per stream is held
 * here, however large the upload and however slow the client reads.
 *
 * `?limit=N` sends LIMIT N (the largest request body accepted for this
 * stream) before any credit is granted, so it can raise or lower the
 * gateway's --max-body. Requests with body_mode 2 (Expect: 100-continue, or
 * a Content-Length over the limit) get their initial window from on_request.
 *
 * A cancelled stream prints one line to stderr:
 *     echo[PID]: stream ID cancelled: REASON
 * with REASON a CANCEL reason name (client_closed, timeout, ...), or
 * link_closed when the link to the gateway was lost.
 *
 * Environment: SLUICE_SOCKET (set by the gateway), SLUICE_MAX_STREAMS
 * (streams served at once; default 4096).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "example_util.h"

#define BYTES(lit) {(const uint8_t *)(lit), sizeof(lit) - 1}

static const sluice_header echo_headers[] = {
    {BYTES("Content-Type"), BYTES("application/octet-stream")},
};

/* A copy of one request-body chunk, alive until its echo is written. */
typedef struct {
    size_t len;
    uint8_t data[];
} chunk;

/* body_mode 2 streams whose response head waits for the first body bytes
 * (the stream's udata; no per-stream allocation). */
static void on_request(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)ud;
    sluice_bytes v;
    uint64_t limit;
    /* LIMIT first: before any credit (so the gateway can still answer 413
     * when the body is over it). */
    if (query_param(req->target, "limit", &v) && parse_u64(v, &limit))
        sluice_stream_set_limit(s, limit > SLUICE_PROTO_MAX_ID ? SLUICE_PROTO_MAX_ID : limit);

    if (sluice_stream_respond(s, 200, echo_headers, 1, true) < 0) {
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        return;
    }
    if (req->body_mode == SLUICE_BODY_NONE) {
        sluice_stream_end(s, NULL, 0);
        return;
    }
    /* Grant the initial window now (body_mode 2: the gateway sends 100
     * Continue on it; the library sends this CREDIT ahead of the head above),
     * then switch to manual credit: on_write_done reports each chunk
     * consumed once its echo is written. */
    sluice_stream_read_start(s);
    sluice_stream_pause_reading(s);
}

static void on_write_done(sluice_stream *s, int status, void *ud)
{
    chunk *c = ud;
    if (status == 0)
        sluice_stream_consumed(s, c->len); /* -EPIPE/-EINVAL once closed/ended: fine */
    free(c);
}

static void on_body(sluice_stream *s, const uint8_t *data, size_t len, void *ud)
{
    (void)ud;
    /* data is a view into the library's read buffer: copy it. */
    chunk *c = malloc(sizeof *c + len);
    if (!c) {
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        return;
    }
    c->len = len;
    memcpy(c->data, data, len);
    int rc = sluice_stream_write(s, c->data, len, on_write_done, c);
    if (rc < 0) {
        free(c);
        if (rc != -EPIPE)
            sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
    }
}

static void on_end(sluice_stream *s, const sluice_headers *trailers, void *ud)
{
    (void)trailers;
    (void)ud;
    if (sluice_stream_end(s, NULL, 0) < 0)
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
}

static void on_cancel(sluice_stream *s, uint64_t reason, void *ud)
{
    (void)ud;
    const char *name =
        reason == SLUICE_WORKER_CANCEL_LINK ? "link_closed" : sluice_cancel_reason_name(reason);
    fprintf(stderr, "echo[%ld]: stream %" PRIu64 " cancelled: %s\n", (long)getpid(),
            sluice_stream_id(s), name);
    fflush(stderr);
}

int main(void)
{
    sluice_worker_callbacks cb = {
        .on_request = on_request,
        .on_body = on_body,
        .on_end = on_end,
        .on_cancel = on_cancel,
    };
    return example_main("echo", &cb);
}
