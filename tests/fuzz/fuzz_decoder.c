/* libFuzzer target: arbitrary bytes into the incremental frame decoder.
 *
 * The first byte picks a split pattern so that partial-frame buffering is
 * exercised too. Every frame that decodes must re-encode, and the re-encoded
 * bytes must decode to a frame that re-encodes identically (canonical form
 * is a fixed point). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

static void check_fixed_point(const sluice_frame *f)
{
    sluice_buf a, b;
    sluice_buf_init(&a, 0);
    sluice_buf_init(&b, 0);
    if (sluice_proto_encode(&a, f, 0) != 0)
        abort(); /* anything the decoder accepts must be encodable */
    static sluice_header scratch[SLUICE_PROTO_MAX_HEADERS];
    sluice_frame g;
    if (sluice_proto_decode_payload(a.data + 4, a.len - 4, &g, scratch, SLUICE_PROTO_MAX_HEADERS) != 0)
        abort();
    if (sluice_proto_encode(&b, &g, 0) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
    sluice_buf_close(&a);
    sluice_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pattern = data[0];
    data++;
    size--;
    sluice_proto_decoder *d;
    if (sluice_proto_decoder_new(&d, SLUICE_PROTO_MIN_FRAME, 64) != 0)
        abort();
    size_t off = 0;
    while (off < size) {
        size_t chunk = size - off;
        if (pattern & 1)
            chunk = 1 + (pattern >> 1) % 17;
        if (chunk > size - off)
            chunk = size - off;
        /* copy the chunk so reads past it are caught by ASan */
        uint8_t *piece = malloc(chunk);
        memcpy(piece, data + off, chunk);
        size_t fed = 0;
        int rc = 0;
        while (fed < chunk) {
            sluice_frame f;
            size_t used = 0;
            rc = sluice_proto_decoder_feed(d, piece + fed, chunk - fed, &used, &f);
            if (used > chunk - fed)
                abort();
            fed += used;
            if (rc < 0)
                break;
            if (rc == 1)
                check_fixed_point(&f);
        }
        free(piece);
        if (rc < 0) {
            if (!sluice_proto_err_name(rc))
                abort(); /* decode errors are always protocol errors */
            break;
        }
        off += chunk;
    }
    (void)sluice_proto_decoder_finish(d);
    sluice_proto_decoder_free(d);
    return 0;
}
