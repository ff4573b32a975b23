/* blob: generates a response body of any size, with backpressure.
 *
 *     GET /?n=BYTES            200, Content-Length: BYTES
 *     GET /?n=BYTES&chunked=1  200, no Content-Length (chunked encoding)
 *
 * Byte i of the body is i % 251 (a prime, so chunk boundaries never line up
 * with the pattern and misplaced or repeated bytes are caught). The body is
 * sliced from one precomputed pattern buffer, so nothing is allocated per
 * chunk, and at most BLOB_INFLIGHT chunks are queued per stream: the next
 * one is written only when an earlier one's write callback reports it
 * handed to the socket, which happens only as the gateway grants response
 * credit, i.e. as the client reads. A missing or invalid n gets 400. The
 * request body, if any, is never read.
 *
 * Environment: SLUICE_SOCKET (set by the gateway), SLUICE_MAX_STREAMS
 * (streams served at once; default 4096).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_util.h"

#define BYTES(lit) {(const uint8_t *)(lit), sizeof(lit) - 1}

#define PRIME 251u
#define CHUNK ((size_t)64 * 1024)
/* A slice of CHUNK bytes may start at any phase 0..PRIME-1. */
#define PATTERN_LEN (((CHUNK + PRIME - 1) / PRIME + 1) * PRIME)
/* Chunks queued per stream: enough to keep the link busy between callbacks. */
#define BLOB_INFLIGHT 4u
/* Largest n accepted: 2^53 - 1, the protocol's integer range. */
#define BLOB_MAX SLUICE_PROTO_MAX_ID

static uint8_t pattern[PATTERN_LEN];

typedef struct {
    uint64_t total;  /* body length */
    uint64_t queued; /* bytes passed to sluice_stream_write */
    unsigned inflight;
    bool failed;
} blob;

static void on_write_done(sluice_stream *s, int status, void *ud);

/* Queues chunks up to BLOB_INFLIGHT; END goes after the last one. */
static void fill(sluice_stream *s, blob *b)
{
    while (!b->failed && b->inflight < BLOB_INFLIGHT && b->queued < b->total) {
        uint64_t left = b->total - b->queued;
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        const uint8_t *p = pattern + b->queued % PRIME;
        int rc = sluice_stream_write(s, p, n, on_write_done, b);
        if (rc < 0) {
            b->failed = true;
            if (rc != -EPIPE)
                sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
            return;
        }
        b->queued += n;
        b->inflight++;
        if (b->queued == b->total && sluice_stream_end(s, NULL, 0) < 0) {
            b->failed = true;
            sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        }
    }
}

static void on_write_done(sluice_stream *s, int status, void *ud)
{
    blob *b = ud;
    b->inflight--;
    if (status < 0)
        b->failed = true; /* cancelled or link lost: on_stream_closed follows */
    else
        fill(s, b);
}

static void bad_request(sluice_stream *s, const char *msg, size_t len)
{
    char cl[24];
    snprintf(cl, sizeof cl, "%zu", len);
    sluice_header h[] = {
        {BYTES("Content-Type"), BYTES("text/plain")},
        {BYTES("Content-Length"), {(const uint8_t *)cl, strlen(cl)}},
    };
    /* msg is a string literal: it outlives the write. */
    if (sluice_stream_respond(s, 400, h, 2, true) < 0 ||
        sluice_stream_write(s, msg, len, NULL, NULL) < 0 || sluice_stream_end(s, NULL, 0) < 0)
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
}

#define BAD_REQUEST(s, lit) bad_request((s), (lit), sizeof(lit) - 1)

static void on_request(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)ud;
    if (req->body_mode != SLUICE_BODY_NONE)
        sluice_stream_pause_reading(s); /* never read the request body */

    sluice_bytes v;
    uint64_t n;
    if (!query_param(req->target, "n", &v)) {
        BAD_REQUEST(s, "missing n: use /?n=BYTES\n");
        return;
    }
    if (!parse_u64(v, &n) || n > BLOB_MAX) {
        BAD_REQUEST(s, "invalid n: want a byte count, 0 .. 2^53-1\n");
        return;
    }
    bool chunked = query_param(req->target, "chunked", &v) && v.len == 1 && v.ptr[0] == '1';

    char cl[24];
    snprintf(cl, sizeof cl, "%" PRIu64, n);
    sluice_header h[] = {
        {BYTES("Content-Type"), BYTES("application/octet-stream")},
        {BYTES("Content-Length"), {(const uint8_t *)cl, strlen(cl)}},
    };
    size_t nh = chunked ? 1 : 2;
    bool head = req->method.len == 4 && memcmp(req->method.ptr, "HEAD", 4) == 0;
    if ((n == 0 && !chunked) || head) { /* no body to generate */
        if (sluice_stream_respond(s, 200, h, nh, false) < 0)
            sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        return;
    }
    blob *b = calloc(1, sizeof *b);
    if (!b) {
        sluice_stream_reset(s, SLUICE_RESET_OVERLOADED);
        return;
    }
    b->total = n;
    sluice_stream_set_udata(s, b);
    if (sluice_stream_respond(s, 200, h, nh, true) < 0) {
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL);
        return;
    }
    if (n == 0) {
        sluice_stream_end(s, NULL, 0);
        return;
    }
    fill(s, b);
}

static void on_stream_closed(sluice_stream *s, void *ud)
{
    (void)ud;
    free(sluice_stream_udata(s)); /* after every write callback */
}

int main(void)
{
    for (size_t i = 0; i < PATTERN_LEN; i++)
        pattern[i] = (uint8_t)(i % PRIME);

    sluice_worker_callbacks cb = {
        .on_request = on_request,
        .on_stream_closed = on_stream_closed,
    };
    return example_main("blob", &cb);
}
