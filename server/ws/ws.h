/* ws: RFC 6455 WebSocket framing, sans-I/O.
 *
 * Bytes in, events out; no sockets, no event loop. The gateway's WebSocket
 * front end feeds client bytes to a server-side parser and writes frames it
 * builds with the encoders below; sluice-load uses a client-side parser.
 * Nothing here allocates after ws_parser_new, and the parser never holds a
 * data payload: data frames are handed out piece by piece, unmasked in place
 * in the caller's buffer, so memory per connection is the parser alone
 * (control frames, at most 125 bytes, are gathered in it).
 *
 * Errors are negative ints: -WS_E_* below carry the close code to send
 * (-1002 protocol error, -1007 invalid UTF-8, -1009 message too big), or
 * -errno (-ENOMEM, -EINVAL) for caller mistakes.
 */
#ifndef SLUICE_WS_H
#define SLUICE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Close codes (RFC 6455 section 7.4.1). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,   /* never on the wire: a close frame without a code */
    WS_CLOSE_ABNORMAL = 1006,    /* never on the wire: the connection was lost */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

/* Parser failures: the negated close code the peer must get. */
enum {
    WS_E_PROTOCOL = -WS_CLOSE_PROTOCOL,
    WS_E_UTF8 = -WS_CLOSE_INVALID_DATA,
    WS_E_TOO_BIG = -WS_CLOSE_TOO_BIG,
};

/* Opcodes (RFC 6455 section 5.2). */
enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

#define WS_CONTROL_MAX 125u    /* largest control frame payload */
#define WS_HEAD_MAX 14u        /* largest frame head: 2 + 8 length + 4 mask */
#define WS_REASON_MAX 123u     /* largest close reason */

typedef enum {
    WS_EV_DATA = 1,  /* a piece of a text or binary message */
    WS_EV_PING,      /* a whole ping; data/len is its payload */
    WS_EV_PONG,      /* a whole pong */
    WS_EV_CLOSE,     /* a close frame: code (1005 if it had none), reason */
} ws_event_type;

typedef struct {
    ws_event_type type;
    /* WS_EV_DATA: */
    bool text;       /* the message is text (validated UTF-8 as it goes) */
    bool first;      /* first piece of its message */
    bool fin;        /* last piece of its message (len may be 0) */
    /* WS_EV_DATA, PING, PONG: the unmasked payload, a view into the fed
     * buffer (DATA) or into the parser (control frames), valid until the
     * next ws_parser_* call. CLOSE: the reason. */
    const uint8_t *data;
    size_t len;
    uint16_t code;   /* WS_EV_CLOSE */
} ws_event;

typedef struct ws_parser ws_parser;

/* server: true parses a client's frames (masked, as RFC 6455 requires of
 * clients; an unmasked frame is a protocol error); false parses a server's
 * (unmasked; a masked one is an error). max_message: largest message in
 * bytes, summed over its fragments (0: no limit); a larger one fails with
 * WS_E_TOO_BIG as soon as its declared lengths pass the limit. */
int ws_parser_new(ws_parser **out, bool server, uint64_t max_message);
void ws_parser_free(ws_parser *p);
/* Change the message limit (LIMIT from the worker); applies to the message
 * in progress too. */
void ws_parser_set_max_message(ws_parser *p, uint64_t max_message);

/* Feed bytes. Consumes from data[0..len), sets *consumed, and returns:
 *   1  an event in *ev; call again with the rest;
 *   0  all input consumed (or `max_data` reached) and no event yet;
 *  <0  WS_E_*: the connection must be closed with that code; the parser
 *      stays failed.
 * Data payloads are unmasked in place in `data` (which is why it is not
 * const). max_data caps the data payload bytes handed out by this call
 * (the receiver's window); when it is 0 the parser stops in front of the
 * next data payload byte, still handling control frames and frame heads up
 * to there, and returns 0 with the rest unconsumed. A message's end
 * (fin) is reported even with max_data 0 when no payload byte is left.
 * Empty messages give one DATA event (first and fin, len 0); an empty frame
 * that does not end its message gives none. After a CLOSE event the parser
 * takes everything fed (consumed = len) and returns 0: nothing may follow
 * a close frame. */
int ws_parser_feed(ws_parser *p, uint8_t *data, size_t len, size_t max_data,
                   size_t *consumed, ws_event *ev);

/* Is the parser inside a data message (first piece given, fin not yet)? */
bool ws_parser_in_message(const ws_parser *p);

/* ---- encoding ---------------------------------------------------------- */

/* Write a frame head for `len` payload bytes into out[WS_HEAD_MAX]; returns
 * its length. mask: NULL for a server's frame, else the 4-byte key a client
 * uses (the caller then masks the payload with ws_mask). */
size_t ws_frame_head(uint8_t *out, int opcode, bool fin, uint64_t len, const uint8_t *mask);
/* XOR data with the 4-byte key, starting at key offset `offset`; returns
 * the offset for the next call. */
size_t ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* A whole close frame (server side, unmasked) into out[2 + 2 + WS_REASON_MAX]:
 * code 1005 gives an empty payload; any other code a close frame must not
 * carry (ws_close_code_sendable) is sent as 1011; reason is cut to
 * WS_REASON_MAX bytes at a UTF-8 character boundary. Returns the frame's
 * length. */
size_t ws_close_frame(uint8_t *out, uint16_t code, const uint8_t *reason, size_t reason_len);

/* May a close frame carry this code (1000..1003, 1007..1014, 3000..4999)? */
bool ws_close_code_sendable(uint32_t code);

/* ---- UTF-8 (RFC 3629), streaming --------------------------------------- */

/* State 0 is "between characters". Returns the new state, or -1 on an
 * invalid sequence (overlong forms, surrogates, above U+10FFFF included).
 * A message is valid when the state after its last byte is 0. */
int ws_utf8_step(int state, const uint8_t *data, size_t len);

/* ---- handshake --------------------------------------------------------- */

/* Is `key` a valid Sec-WebSocket-Key (base64 of 16 bytes: 22 characters of
 * the base64 alphabet and "==")? The unused low bits of the 22nd character
 * are not checked, as most servers do not. */
bool ws_key_valid(const char *key, size_t len);
/* Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)), 28 characters
 * and a NUL into out[29]. */
void ws_accept_value(const char *key, size_t len, char out[29]);

#endif
