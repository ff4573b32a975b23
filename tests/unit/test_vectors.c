/* Replays every language-neutral test vector (the NNN-name.json files in protocol/vectors, see
 * protocol/vectors/README.md) against the C codec.
 *
 * decode vectors: the input is fed whole, byte by byte, and split at
 * pseudo-random points (seeded from the vector name, so a failure is
 * reproducible); each decoded frame is compared field by field with the JSON,
 * the error name with sluice_proto_err_name() (sluice_proto_decoder_finish()
 * at end of input). Canonical vectors are re-encoded with
 * sluice_proto_encode() and compared byte for byte.
 *
 * session vectors: each step's bytes are decoded and passed to
 * sluice_proto_link_recv() / sluice_proto_link_send() on a link of the
 * vector's role; the outcome is compared with the step's "expect".
 *
 * Every failure message starts with the vector's file name. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

#ifndef SLUICE_VECTORS_DIR
#define SLUICE_VECTORS_DIR "protocol/vectors"
#endif

#define MIN_VECTORS 60
#define NAME_MAX_LEN 120

static const char *vectors_dir(void)
{
    const char *e = getenv("SLUICE_VECTORS_DIR");
    return e && *e ? e : SLUICE_VECTORS_DIR;
}

/* ---- vector files --------------------------------------------------- */

static bool is_vector_name(const char *n)
{
    size_t len = strlen(n);
    return len > 9 && len < NAME_MAX_LEN && n[0] >= '0' && n[0] <= '9' && n[1] >= '0' &&
           n[1] <= '9' && n[2] >= '0' && n[2] <= '9' && n[3] == '-' &&
           strcmp(n + len - 5, ".json") == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of vector file names; returns the count (names freed by caller). */
static size_t list_vectors(char ***out)
{
    DIR *d = opendir(vectors_dir());
    size_t n = 0, cap = 0;
    char **names = NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!is_vector_name(e->d_name))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                names = realloc(names, cap * sizeof *names);
            }
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    *out = names;
    return n;
}

/* ---- failure reporting ---------------------------------------------- */

static const char *g_vec = "?";  /* current vector file name */
static char g_ctx[160] = "";     /* current mode / step */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char m_[600];                                                                          \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                                  \
            cr_assert_fail("[%s] %s: %s", g_vec, g_ctx, m_);                                         \
        }                                                                                          \
    } while (0)

static void set_ctx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
    va_end(ap);
}

/* ---- allocation arena (freed at the end of each vector) -------------- */

static void **g_allocs;
static size_t g_nallocs, g_capallocs;

static void *arena(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    cr_assert_not_null(p);
    if (g_nallocs == g_capallocs) {
        g_capallocs = g_capallocs ? g_capallocs * 2 : 64;
        g_allocs = realloc(g_allocs, g_capallocs * sizeof *g_allocs);
        cr_assert_not_null(g_allocs);
    }
    g_allocs[g_nallocs++] = p;
    return p;
}

static void arena_free(void)
{
    for (size_t i = 0; i < g_nallocs; i++)
        free(g_allocs[i]);
    free(g_allocs);
    g_allocs = NULL;
    g_nallocs = g_capallocs = 0;
}

/* ---- JSON helpers ---------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len;
} blob;

static blob hex_blob(const json_t *j)
{
    CHECK(json_is_string(j), "\"hex\" is not a string");
    const char *s = json_string_value(j);
    size_t n = strlen(s);
    CHECK(n % 2 == 0, "odd hex length");
    blob b = {arena(n / 2), n / 2};
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        CHECK(sscanf(s + 2 * i, "%2x", &v) == 1, "bad hex at %zu", 2 * i);
        b.p[i] = (uint8_t)v;
    }
    return b;
}

/* A JSON byte string: every code point is one byte (latin-1 mapping). */
static blob latin1(const json_t *j, const char *what)
{
    CHECK(json_is_string(j), "%s is not a JSON string", what);
    const uint8_t *s = (const uint8_t *)json_string_value(j);
    size_t n = json_string_length(j);
    blob b = {arena(n), 0};
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            b.p[b.len++] = c;
            i++;
        } else {
            CHECK((c == 0xc2 || c == 0xc3) && i + 1 < n, "%s: code point above U+00FF", what);
            b.p[b.len++] = (uint8_t)(((c & 0x03) << 6) | (s[i + 1] & 0x3f));
            i += 2;
        }
    }
    return b;
}

static uint64_t juint(const json_t *obj, const char *key)
{
    const json_t *j = json_object_get(obj, key);
    CHECK(json_is_integer(j), "JSON field \"%s\" missing or not an integer", key);
    CHECK(json_integer_value(j) >= 0, "JSON field \"%s\" negative", key);
    return (uint64_t)json_integer_value(j);
}

static const char *jstr(const json_t *obj, const char *key)
{
    const json_t *j = json_object_get(obj, key);
    CHECK(json_is_string(j), "JSON field \"%s\" missing or not a string", key);
    return json_string_value(j);
}

static char *show(const uint8_t *p, size_t len)
{
    size_t n = len > 48 ? 48 : len;
    char *s = arena(n * 4 + 8);
    char *o = s;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            *o++ = (char)p[i];
        else
            o += sprintf(o, "\\x%02x", p[i]);
    }
    if (len > n)
        strcpy(o, "...");
    return s;
}

static void check_bytes(const json_t *j, sluice_bytes got, const char *what)
{
    blob want = latin1(j, what);
    CHECK(got.len == want.len && (want.len == 0 || memcmp(got.ptr, want.p, want.len) == 0),
          "%s: expected \"%s\" (%zu bytes), decoded \"%s\" (%zu bytes)", what, show(want.p, want.len),
          want.len, show(got.ptr, got.len), got.len);
}

static void check_uint(uint64_t want, uint64_t got, const char *what)
{
    CHECK(want == got, "%s: expected %llu, decoded %llu", what, (unsigned long long)want,
          (unsigned long long)got);
}

static void check_headers(const json_t *j, sluice_headers got, const char *what)
{
    CHECK(json_is_array(j), "%s: not a JSON array", what);
    size_t n = json_array_size(j);
    CHECK(got.count == n, "%s: expected %zu entries, decoded %zu", what, n, got.count);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(j, i);
        CHECK(json_is_array(e) && json_array_size(e) == 2, "%s[%zu]: not a pair", what, i);
        char w[64];
        snprintf(w, sizeof w, "%s[%zu] name", what, i);
        check_bytes(json_array_get(e, 0), got.items[i].name, w);
        snprintf(w, sizeof w, "%s[%zu] value", what, i);
        check_bytes(json_array_get(e, 1), got.items[i].value, w);
    }
}

static void check_addr(const json_t *j, sluice_addr got, const char *what)
{
    CHECK(json_is_array(j) && json_array_size(j) == 2, "%s: not a [host, port] pair", what);
    char w[64];
    snprintf(w, sizeof w, "%s host", what);
    check_bytes(json_array_get(j, 0), got.host, w);
    const json_t *port = json_array_get(j, 1);
    CHECK(json_is_integer(port), "%s port: not an integer", what);
    snprintf(w, sizeof w, "%s port", what);
    check_uint((uint64_t)json_integer_value(port), got.port, w);
}

static const struct {
    const char *key;
    uint32_t bit;
    int kind; /* 0 uint64, 1 uint32, 2 text, 3 bool */
    size_t off;
} hello_keys[] = {
    {"pid", SLUICE_HELLO_HAS_PID, 0, offsetof(sluice_hello, pid)},
    {"lib", SLUICE_HELLO_HAS_LIB, 2, offsetof(sluice_hello, lib)},
    {"max_streams", SLUICE_HELLO_HAS_MAX_STREAMS, 1, offsetof(sluice_hello, max_streams)},
    {"window", SLUICE_HELLO_HAS_WINDOW, 1, offsetof(sluice_hello, window)},
    {"max_frame", SLUICE_HELLO_HAS_MAX_FRAME, 1, offsetof(sluice_hello, max_frame)},
    {"token", SLUICE_HELLO_HAS_TOKEN, 2, offsetof(sluice_hello, token)},
    {"worker_id", SLUICE_HELLO_HAS_WORKER_ID, 0, offsetof(sluice_hello, worker_id)},
    {"pool", SLUICE_HELLO_HAS_POOL, 2, offsetof(sluice_hello, pool)},
    {"server", SLUICE_HELLO_HAS_SERVER, 2, offsetof(sluice_hello, server)},
    {"websocket", SLUICE_HELLO_HAS_WEBSOCKET, 3, offsetof(sluice_hello, websocket)},
};

static void check_hello(const json_t *jf, const sluice_hello *h)
{
    check_uint(juint(jf, "version"), h->version, "HELLO version");
    const json_t *s = json_object_get(jf, "settings");
    CHECK(json_is_object(s), "HELLO settings: not a JSON object");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof hello_keys / sizeof hello_keys[0]; i++)
            known |= strcmp(k, hello_keys[i].key) == 0;
        CHECK(known, "HELLO settings: unknown key \"%s\" in the vector", k);
    }
    for (size_t i = 0; i < sizeof hello_keys / sizeof hello_keys[0]; i++) {
        const json_t *j = json_object_get(s, hello_keys[i].key);
        bool has = (h->has & hello_keys[i].bit) != 0;
        CHECK(has == (j != NULL), "HELLO settings key \"%s\": expected %s, decoded %s",
              hello_keys[i].key, j ? "present" : "absent", has ? "present" : "absent");
        if (!j)
            continue;
        const char *base = (const char *)h + hello_keys[i].off;
        char w[64];
        snprintf(w, sizeof w, "HELLO %s", hello_keys[i].key);
        CHECK(hello_keys[i].kind == 2   ? json_is_string(j)
              : hello_keys[i].kind == 3 ? json_is_boolean(j)
                                        : json_is_integer(j),
              "%s: bad JSON type", w);
        switch (hello_keys[i].kind) {
        case 3:
            CHECK(json_is_true(j) == *(const bool *)base, "%s: expected %s, decoded %s", w,
                  json_is_true(j) ? "true" : "false", *(const bool *)base ? "true" : "false");
            break;
        case 0:
            check_uint((uint64_t)json_integer_value(j), *(const uint64_t *)base, w);
            break;
        case 1:
            check_uint((uint64_t)json_integer_value(j), *(const uint32_t *)base, w);
            break;
        default:
            check_bytes(j, *(const sluice_bytes *)base, w);
        }
    }
}

static const char *const frame_fields[][10] = {
    [SLUICE_FRAME_HELLO] = {"version", "settings"},
    [SLUICE_FRAME_REQUEST] = {"method", "target", "version", "headers", "client", "server", "scheme", "body"},
    [SLUICE_FRAME_RESPONSE] = {"status", "headers", "body"},
    [SLUICE_FRAME_BODY] = {"data"},
    [SLUICE_FRAME_END] = {"trailers"},
    [SLUICE_FRAME_CREDIT] = {"increment"},
    [SLUICE_FRAME_CANCEL] = {"reason", "message"},
    [SLUICE_FRAME_RESET] = {"code", "message"},
    [SLUICE_FRAME_LIMIT] = {"max_body"},
    [SLUICE_FRAME_PING] = {"opaque"},
    [SLUICE_FRAME_PONG] = {"opaque"},
    [SLUICE_FRAME_DRAIN] = {"timeout_ms"},
    [SLUICE_FRAME_RETIRE] = {"reason"},
    [SLUICE_FRAME_ERROR] = {"code", "message"},
    [SLUICE_FRAME_MESSAGE] = {"flags", "data"},
    [SLUICE_FRAME_CLOSE] = {"code", "reason"},
};

static void check_message(const json_t *jf, bool has, sluice_bytes msg, const char *what)
{
    const json_t *m = json_object_get(jf, what);
    CHECK(has == (m != NULL), "%s: expected %s, decoded %s", what, m ? "present" : "absent",
          has ? "present" : "absent");
    if (m)
        check_bytes(m, msg, what);
}

/* Compares a decoded frame with its JSON form. */
static void check_frame(const json_t *jf, const sluice_frame *f)
{
    CHECK(json_is_object(jf), "frame is not a JSON object");
    const char *type = jstr(jf, "type");
    CHECK(strcmp(type, sluice_frame_type_name((int)f->type)) == 0, "type: expected %s, decoded %s (%u)",
          type, sluice_frame_type_name((int)f->type), f->type);
    check_uint(juint(jf, "stream"), f->stream_id, "stream");
    /* no JSON keys beyond the type's fields */
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)jf, k, v)
    {
        bool ok = !strcmp(k, "type") || !strcmp(k, "stream");
        for (int i = 0; i < 10 && frame_fields[f->type][i]; i++)
            ok |= strcmp(k, frame_fields[f->type][i]) == 0;
        CHECK(ok, "%s: unexpected JSON key \"%s\" in the vector", type, k);
    }
    switch (f->type) {
    case SLUICE_FRAME_HELLO:
        check_hello(jf, &f->u.hello);
        break;
    case SLUICE_FRAME_REQUEST: {
        const sluice_request *r = &f->u.request;
        check_bytes(json_object_get(jf, "method"), r->method, "method");
        check_bytes(json_object_get(jf, "target"), r->target, "target");
        check_uint(juint(jf, "version"), r->version, "version");
        check_headers(json_object_get(jf, "headers"), r->headers, "headers");
        check_addr(json_object_get(jf, "client"), r->client, "client");
        check_addr(json_object_get(jf, "server"), r->server, "server");
        check_bytes(json_object_get(jf, "scheme"), r->scheme, "scheme");
        check_uint(juint(jf, "body"), r->body, "body");
        break;
    }
    case SLUICE_FRAME_RESPONSE:
        check_uint(juint(jf, "status"), f->u.response.status, "status");
        check_headers(json_object_get(jf, "headers"), f->u.response.headers, "headers");
        check_uint(juint(jf, "body"), f->u.response.body, "body");
        break;
    case SLUICE_FRAME_BODY:
        check_bytes(json_object_get(jf, "data"), f->u.body, "data");
        break;
    case SLUICE_FRAME_END: {
        const json_t *t = json_object_get(jf, "trailers");
        if (t)
            check_headers(t, f->u.trailers, "trailers");
        else
            CHECK(f->u.trailers.count == 0, "trailers: expected none, decoded %zu", f->u.trailers.count);
        break;
    }
    case SLUICE_FRAME_CREDIT:
        check_uint(juint(jf, "increment"), f->u.credit, "increment");
        break;
    case SLUICE_FRAME_CANCEL:
        check_uint(juint(jf, "reason"), f->u.code.code, "reason");
        check_message(jf, f->u.code.has_message, f->u.code.message, "message");
        break;
    case SLUICE_FRAME_RESET:
        check_uint(juint(jf, "code"), f->u.code.code, "code");
        check_message(jf, f->u.code.has_message, f->u.code.message, "message");
        break;
    case SLUICE_FRAME_ERROR:
        check_uint(juint(jf, "code"), f->u.code.code, "code");
        CHECK(json_object_get(jf, "message"), "ERROR without message in the vector");
        check_bytes(json_object_get(jf, "message"), f->u.code.message, "message");
        break;
    case SLUICE_FRAME_LIMIT:
        check_uint(juint(jf, "max_body"), f->u.max_body, "max_body");
        break;
    case SLUICE_FRAME_PING:
    case SLUICE_FRAME_PONG:
        check_uint(juint(jf, "opaque"), f->u.opaque, "opaque");
        break;
    case SLUICE_FRAME_DRAIN:
        check_uint(juint(jf, "timeout_ms"), f->u.timeout_ms, "timeout_ms");
        break;
    case SLUICE_FRAME_RETIRE:
        check_message(jf, f->u.retire.has_reason, f->u.retire.reason, "reason");
        break;
    case SLUICE_FRAME_MESSAGE:
        check_uint(juint(jf, "flags"), f->u.message.flags, "flags");
        check_bytes(json_object_get(jf, "data"), f->u.message.data, "data");
        break;
    case SLUICE_FRAME_CLOSE:
        check_uint(juint(jf, "code"), f->u.close.code, "code");
        check_message(jf, f->u.close.has_reason, f->u.close.reason, "reason");
        break;
    default:
        CHECK(0, "decoded an unknown frame type %u", f->type);
    }
}

static const char *err_str(int rc)
{
    const char *n = sluice_proto_err_name(rc);
    static char buf[64];
    if (n)
        return n;
    snprintf(buf, sizeof buf, "non-protocol error %d (%s)", rc, sluice_proto_strerror(rc));
    return buf;
}

/* ---- decode vectors ------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Feeds `in` split at cuts[0..ncuts) (ascending offsets inside the input),
 * checks the frames and the error; with `reencode`, encodes each frame and
 * returns the concatenation in *enc. */
static void decode_run(const json_t *v, blob in, const size_t *cuts, size_t ncuts, sluice_buf *enc)
{
    uint32_t max_frame = SLUICE_PROTO_DEFAULT_FRAME;
    const json_t *mf = json_object_get(v, "max_frame");
    if (mf)
        max_frame = (uint32_t)juint(v, "max_frame");
    const json_t *frames = json_object_get(v, "frames");
    CHECK(json_is_array(frames), "\"frames\" is not an array");
    const json_t *jerr = json_object_get(v, "error");
    const char *want_err = json_is_string(jerr) ? json_string_value(jerr) : NULL;

    sluice_proto_decoder *d = NULL;
    int rc = sluice_proto_decoder_new(&d, max_frame, SLUICE_PROTO_MAX_HEADERS);
    CHECK(rc == 0, "decoder_new(%u) failed: %d", max_frame, rc);
    size_t nframes = 0, start = 0;
    const char *got_err = NULL;
    for (size_t c = 0; c <= ncuts && !got_err; c++) {
        size_t stop = c < ncuts ? cuts[c] : in.len;
        size_t off = start;
        while (off < stop) {
            size_t consumed = 0;
            sluice_frame f;
            memset(&f, 0xa5, sizeof f);
            rc = sluice_proto_decoder_feed(d, in.p + off, stop - off, &consumed, &f);
            CHECK(consumed <= stop - off, "feed consumed %zu of %zu bytes", consumed, stop - off);
            off += consumed;
            if (rc < 0) {
                got_err = err_str(rc);
                break;
            }
            if (rc == 0) {
                CHECK(off == stop, "feed returned 0 with %zu of %zu bytes unconsumed", stop - off,
                      stop - start);
                break;
            }
            CHECK(rc == 1, "feed returned %d", rc);
            CHECK(nframes < json_array_size(frames),
                  "decoded a frame beyond the %zu expected (type %s, stream %llu)",
                  json_array_size(frames), sluice_frame_type_name((int)f.type),
                  (unsigned long long)f.stream_id);
            char save[sizeof g_ctx];
            strcpy(save, g_ctx);
            set_ctx("%s, frame %zu", save, nframes);
            check_frame(json_array_get(frames, nframes), &f);
            if (enc) {
                rc = sluice_proto_encode(enc, &f, 0);
                CHECK(rc == 0, "re-encoding failed: %d (%s)", rc, sluice_proto_strerror(rc));
            }
            strcpy(g_ctx, save);
            nframes++;
        }
        start = stop;
    }
    if (!got_err) {
        rc = sluice_proto_decoder_finish(d);
        if (rc < 0)
            got_err = err_str(rc);
    }
    sluice_proto_decoder_free(d);
    CHECK(nframes == json_array_size(frames), "decoded %zu frames, expected %zu (error: %s)", nframes,
          json_array_size(frames), got_err ? got_err : "none");
    if (want_err)
        CHECK(got_err && strcmp(got_err, want_err) == 0, "expected error %s, got %s", want_err,
              got_err ? got_err : "no error");
    else
        CHECK(!got_err, "expected no error, got %s", got_err);
}

static void replay_decode(const json_t *v)
{
    blob in = hex_blob(json_object_get(v, "hex"));
    const json_t *jc = json_object_get(v, "canonical");
    bool canonical = json_is_true(jc);
    CHECK(!canonical || json_is_null(json_object_get(v, "error")), "canonical vector with an error");

    /* whole input at once (+ re-encoding) */
    set_ctx("whole input");
    sluice_buf enc;
    sluice_buf_init(&enc, 0);
    decode_run(v, in, NULL, 0, canonical ? &enc : NULL);
    if (canonical) {
        set_ctx("re-encoding (canonical)");
        size_t diff = 0;
        while (diff < enc.len && diff < in.len && enc.data[diff] == in.p[diff])
            diff++;
        CHECK(enc.len == in.len && diff == in.len,
              "encoder output differs from the vector: %zu vs %zu bytes, first difference at offset %zu "
              "(expected %02x, encoded %02x)",
              enc.len, in.len, diff, diff < in.len ? in.p[diff] : 0, diff < enc.len ? enc.data[diff] : 0);
    }
    sluice_buf_close(&enc);

    /* byte by byte */
    if (in.len > 1) {
        set_ctx("byte by byte");
        size_t *cuts = arena(in.len * sizeof *cuts);
        for (size_t i = 1; i < in.len; i++)
            cuts[i - 1] = i;
        decode_run(v, in, cuts, in.len - 1, NULL);
    }

    /* random split points */
    for (int run = 0; run < 8 && in.len > 2; run++) {
        size_t n = 1 + rng() % 4, cuts[4];
        for (size_t i = 0; i < n; i++)
            cuts[i] = 1 + rng() % (in.len - 1);
        /* sort, dedupe */
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (m == 0 || cuts[m - 1] != cuts[i])
                cuts[m++] = cuts[i];
        char desc[100] = "";
        for (size_t i = 0; i < m; i++)
            snprintf(desc + strlen(desc), sizeof desc - strlen(desc), "%s%zu", i ? "," : "", cuts[i]);
        set_ctx("split at %s", desc);
        decode_run(v, in, cuts, m, NULL);
    }
}

/* ---- session vectors -------------------------------------------------- */

static void replay_session(const json_t *v)
{
    const char *role = jstr(v, "role");
    sluice_role r;
    if (strcmp(role, "gateway") == 0)
        r = SLUICE_ROLE_GATEWAY;
    else {
        CHECK(strcmp(role, "worker") == 0, "bad role \"%s\"", role);
        r = SLUICE_ROLE_WORKER;
    }
    sluice_link_config cfg = {.max_streams = SLUICE_PROTO_MAX_STREAMS};
    if (json_object_get(v, "max_streams"))
        cfg.max_streams = (uint32_t)juint(v, "max_streams");
    sluice_proto_link *l = NULL;
    set_ctx("link_new");
    int rc = sluice_proto_link_new(&l, r, &cfg);
    CHECK(rc == 0 && l, "link_new failed: %d", rc);

    const json_t *steps = json_object_get(v, "steps");
    CHECK(json_is_array(steps) && json_array_size(steps) > 0, "\"steps\" missing or empty");
    /* Decoders stay alive until the end: decoded views (e.g. HELLO strings
     * the link may keep) point into their input. */
    size_t nsteps = json_array_size(steps);
    sluice_proto_decoder **decs = arena(nsteps * sizeof *decs);
    for (size_t i = 0; i < nsteps; i++) {
        const json_t *st = json_array_get(steps, i);
        const json_t *jf = json_object_get(st, "recv");
        bool is_recv = jf != NULL;
        if (!jf)
            jf = json_object_get(st, "send");
        CHECK(jf, "step %zu: neither recv nor send", i);
        const char *expect = jstr(st, "expect");
        set_ctx("step %zu (%s %s stream %lld, expect %s)", i, is_recv ? "recv" : "send",
                jstr(jf, "type"), (long long)json_integer_value(json_object_get(jf, "stream")), expect);
        blob in = hex_blob(json_object_get(st, "hex"));

        rc = sluice_proto_decoder_new(&decs[i], SLUICE_PROTO_MAX_FRAME, SLUICE_PROTO_MAX_HEADERS);
        CHECK(rc == 0, "decoder_new failed");
        size_t consumed = 0;
        sluice_frame f;
        rc = sluice_proto_decoder_feed(decs[i], in.p, in.len, &consumed, &f);
        if (rc < 0) {
            CHECK(is_recv, "the bytes of a send step do not decode: %s", err_str(rc));
            CHECK(strcmp(expect, err_str(rc)) == 0, "decoding: expected %s, got %s", expect, err_str(rc));
            CHECK(i == nsteps - 1, "steps after a link error");
            break;
        }
        CHECK(rc == 1 && consumed == in.len, "the step's bytes are not exactly one frame (rc %d, %zu of %zu "
              "bytes)", rc, consumed, in.len);
        check_frame(jf, &f);

        sluice_link_event ev;
        memset(&ev, 0, sizeof ev);
        if (is_recv) {
            rc = sluice_proto_link_recv(l, &f, &ev);
            if (strcmp(expect, "ok") == 0)
                CHECK(rc == 0 && !ev.ignored, "link_recv: expected ok, got %s",
                      rc < 0 ? err_str(rc) : "ignored");
            else if (strcmp(expect, "ignored") == 0)
                CHECK(rc == 0 && ev.ignored, "link_recv: expected ignored, got %s",
                      rc < 0 ? err_str(rc) : "ok (not ignored)");
            else {
                CHECK(rc < 0, "link_recv: expected %s, got %s", expect, ev.ignored ? "ignored" : "ok");
                CHECK(strcmp(expect, err_str(rc)) == 0, "link_recv: expected %s, got %s", expect, err_str(rc));
                CHECK(sluice_proto_link_state(l) == SLUICE_LINK_FAILED, "link not FAILED after %s", expect);
                CHECK(i == nsteps - 1, "steps after a link error");
            }
        } else {
            rc = sluice_proto_link_send(l, &f, &ev);
            if (strcmp(expect, "ok") == 0)
                CHECK(rc == 0 && !ev.ignored, "link_send: expected ok, got %s",
                      rc < 0 ? err_str(rc) : "ignored");
            else {
                CHECK(strcmp(expect, "rejected") == 0, "bad expect \"%s\" for a send step", expect);
                CHECK(rc < 0, "link_send: expected rejected, got ok");
                CHECK(sluice_proto_link_state(l) != SLUICE_LINK_FAILED,
                      "link FAILED after a rejected send (%s)", err_str(rc));
            }
        }
        /* The link keeps the HELLO settings: they must survive intact. */
        if (f.type == SLUICE_FRAME_HELLO && strcmp(expect, "ok") == 0) {
            const sluice_hello *h =
                is_recv ? sluice_proto_link_peer_hello(l) : sluice_proto_link_local_hello(l);
            CHECK(h, "the link does not report the %s HELLO", is_recv ? "peer's" : "local");
            char save[sizeof g_ctx];
            strcpy(save, g_ctx);
            set_ctx("%s, settings stored by the link", save);
            check_hello(jf, h);
        }
    }
    sluice_proto_link_free(l);
    for (size_t i = 0; i < nsteps; i++)
        sluice_proto_decoder_free(decs[i]);
}

/* ---- criterion glue -------------------------------------------------- */

struct vparam {
    char name[NAME_MAX_LEN];
};

static void free_params(struct criterion_test_params *crp)
{
    cr_free(crp->params);
}

ParameterizedTestParameters(vectors, replay)
{
    char **names;
    size_t n = list_vectors(&names);
    size_t alloc = n ? n : 1;
    struct vparam *p = cr_malloc(alloc * sizeof *p);
    memset(p, 0, alloc * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        snprintf(p[i].name, sizeof p[i].name, "%s", names[i]);
        free(names[i]);
    }
    free(names);
    return cr_make_param_array(struct vparam, p, alloc, free_params);
}

ParameterizedTest(struct vparam *p, vectors, replay)
{
    cr_assert(p->name[0], "no vector files in %s", vectors_dir());
    g_vec = p->name;
    set_ctx("loading");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", vectors_dir(), p->name);
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    CHECK(v, "cannot load the file: %s (line %d)", jerr.text, jerr.line);
    CHECK(json_is_object(v), "not a JSON object");
    /* seed the split points from the name: failures are reproducible */
    rng_state = 1469598103934665603ull;
    for (const char *c = p->name; *c; c++)
        rng_state = (rng_state ^ (uint8_t)*c) * 1099511628211ull;
    rng_state |= 1;

    const char *kind = jstr(v, "kind");
    if (strcmp(kind, "decode") == 0)
        replay_decode(v);
    else {
        CHECK(strcmp(kind, "session") == 0, "unknown kind \"%s\"", kind);
        replay_session(v);
    }
    json_decref(v);
    arena_free();
}

Test(vectors, count)
{
    char **names;
    size_t n = list_vectors(&names);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    cr_assert(n >= MIN_VECTORS, "only %zu vector files in %s (at least %d expected)", n, vectors_dir(),
              MIN_VECTORS);
}
