/* Micro-benchmark of the protocol codec (not a test: it prints figures).
 *
 *   1. encode + decode of a typical REQUEST frame (10 headers), frames/s;
 *   2. BODY framing of 64 KiB payloads (head encode + copy into an output
 *      buffer + decode) against a plain memcpy of the same payloads.
 *
 * Usage: bench_proto [seconds-per-case]   (default 1.0; best of several runs,
 * the two BODY variants interleaved so that machine noise hits both) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice_proto.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define B(s) {(const uint8_t *)(s), sizeof(s) - 1}

static const sluice_header hdrs[10] = {
    {B("host"), B("example.com")},
    {B("user-agent"), B("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0")},
    {B("accept"), B("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")},
    {B("accept-language"), B("en-US,en;q=0.5")},
    {B("accept-encoding"), B("gzip, deflate, br")},
    {B("cookie"), B("session=0123456789abcdef0123456789abcdef; theme=dark")},
    {B("cache-control"), B("no-cache")},
    {B("x-request-id"), B("4f9c2a7e-1b3d-4c5e-8f6a-0b1c2d3e4f50")},
    {B("referer"), B("https://example.com/previous/page")},
    {B("content-length"), B("0")},
};

static volatile uint64_t sink;
static size_t req_frame_len;

static double bench_request(double secs)
{
    sluice_request r = {
        .method = B("GET"),
        .target = B("/api/v1/items?page=2&sort=name"),
        .version = 11,
        .headers = {hdrs, 10},
        .client = {B("127.0.0.1"), 54321},
        .server = {B("127.0.0.1"), 8080},
        .scheme = B("http"),
        .body = SLUICE_BODY_NONE,
    };
    sluice_buf out;
    sluice_buf_init(&out, 1 << 20);
    sluice_proto_decoder *d;
    if (sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 128) < 0)
        abort();
    uint64_t n = 0, sid = 1;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            sluice_buf_reset(&out);
            if (sluice_proto_encode_request(&out, sid++, &r, 0) < 0)
                abort();
            sluice_frame f;
            size_t used;
            if (sluice_proto_decoder_feed(d, out.data, out.len, &used, &f) != 1)
                abort();
            sink += f.u.request.headers.count + f.stream_id;
        }
        n += 1000;
        t = now() - t0;
    } while (t < secs);
    req_frame_len = out.len;
    sluice_buf_close(&out);
    sluice_proto_decoder_free(d);
    return (double)n / t;
}

#define BODY_SIZE 65536
#define BATCH 64

/* Returns bytes per second. */
static double bench_body(double secs, bool framed)
{
    static uint8_t src[BATCH][BODY_SIZE];
    for (int i = 0; i < BATCH; i++)
        memset(src[i], i, BODY_SIZE);
    sluice_buf out;
    sluice_buf_init(&out, 0);
    sluice_buf_reserve(&out, BATCH * (BODY_SIZE + 32));
    sluice_proto_decoder *d;
    if (sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 16) < 0)
        abort();
    uint64_t bytes = 0;
    double t0 = now(), t;
    do {
        sluice_buf_reset(&out);
        for (int i = 0; i < BATCH; i++) {
            if (framed) {
                if (sluice_proto_encode_body(&out, 7, src[i], BODY_SIZE) < 0)
                    abort();
            } else {
                /* the same destinations the framed copy writes to (the
                 * payload sits after a 10-byte head), so alignment effects
                 * do not count as framing cost */
                memcpy(out.data + out.len + 10, src[i], BODY_SIZE);
                out.len += BODY_SIZE + 10;
            }
        }
        if (framed) {
            size_t off = 0;
            while (off < out.len) {
                sluice_frame f;
                size_t used;
                if (sluice_proto_decoder_feed(d, out.data + off, out.len - off, &used, &f) != 1)
                    abort();
                off += used;
                sink += f.u.body.len;
            }
        } else {
            sink += out.data[out.len - 1];
        }
        bytes += (uint64_t)BATCH * BODY_SIZE;
        t = now() - t0;
    } while (t < secs);
    sluice_buf_close(&out);
    sluice_proto_decoder_free(d);
    return (double)bytes / t;
}

/* Framing alone, without the payload copy: encode a BODY head for a 64 KiB
 * payload and decode a complete 64 KiB BODY frame (a view, no copy). Returns
 * nanoseconds per frame. */
static double bench_body_head(double secs)
{
    static uint8_t frame[BODY_SIZE + 32];
    sluice_buf tmp;
    sluice_buf_init(&tmp, 0);
    sluice_proto_encode_body(&tmp, 7, frame + 32, BODY_SIZE);
    memcpy(frame, tmp.data, tmp.len);
    size_t flen = tmp.len;
    sluice_buf_close(&tmp);
    sluice_buf out;
    sluice_buf_init(&out, 0);
    sluice_proto_decoder *d;
    if (sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 16) < 0)
        abort();
    uint64_t n = 0, sid = 1;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            sluice_buf_reset(&out);
            if (sluice_proto_encode_body_head(&out, (sid++ % 60000) + 1, BODY_SIZE) < 0)
                abort();
            sluice_frame f;
            size_t used;
            if (sluice_proto_decoder_feed(d, frame, flen, &used, &f) != 1)
                abort();
            sink += f.u.body.len + out.len;
        }
        n += 1000;
        t = now() - t0;
    } while (t < secs);
    sluice_buf_close(&out);
    sluice_proto_decoder_free(d);
    return 1e9 / ((double)n / t);
}

static double best(double (*fn)(double), double secs)
{
    double b = 0;
    for (int i = 0; i < 5; i++) {
        double v = fn(secs);
        if (v > b)
            b = v;
    }
    return b;
}

static double secs_g;
static double body_framed(double s) { return bench_body(s, true); }
static double body_plain(double s) { return bench_body(s, false); }

int main(int argc, char **argv)
{
    secs_g = argc > 1 ? atof(argv[1]) : 1.0;
    if (secs_g <= 0)
        secs_g = 1.0;
    printf("sluice protocol micro-benchmark (best of 5, %.1fs each)\n", secs_g);
    double rps = best(bench_request, secs_g / 5);
    printf("  REQUEST (10 headers, %zu bytes) encode+decode: %.2f M frames/s (target >= 2.00)\n",
           req_frame_len, rps / 1e6);
    /* interleaved rounds, best of each: a noisy neighbour hits both alike */
    double framed = 0, plain = 0;
    for (int i = 0; i < 7; i++) {
        double f = body_framed(secs_g / 7), p = body_plain(secs_g / 7);
        if (f > framed)
            framed = f;
        if (p > plain)
            plain = p;
    }
    double overhead = (plain / framed - 1.0) * 100.0;
    printf("  64 KiB BODY framing (encode+copy+decode): %.2f GB/s\n", framed / 1e9);
    printf("  plain memcpy of the same payloads to the same addresses: %.2f GB/s\n", plain / 1e9);
    printf("  BODY framing overhead vs memcpy: %.1f%% (target < 5%%)\n", overhead);
    double head_ns = 1e9;
    for (int i = 0; i < 5; i++) {
        double v = bench_body_head(secs_g / 5);
        if (v < head_ns)
            head_ns = v;
    }
    double copy_ns = 1e9 * BODY_SIZE / plain;
    printf("  zero-copy path: BODY head encode + frame decode %.1f ns per 64 KiB frame\n"
           "                  = %.2f%% of the %.0f ns memcpy of its payload\n",
           head_ns, 100.0 * head_ns / copy_ns, copy_ns);
    return 0;
}
