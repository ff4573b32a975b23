/* Names for frame types, error codes, CANCEL reasons and RESET codes. */
#include <string.h>

#include "sluice_proto.h"

static const char *const frame_names[] = {
    [SLUICE_FRAME_HELLO] = "HELLO",   [SLUICE_FRAME_REQUEST] = "REQUEST",
    [SLUICE_FRAME_RESPONSE] = "RESPONSE", [SLUICE_FRAME_BODY] = "BODY",
    [SLUICE_FRAME_END] = "END",       [SLUICE_FRAME_CREDIT] = "CREDIT",
    [SLUICE_FRAME_CANCEL] = "CANCEL", [SLUICE_FRAME_RESET] = "RESET",
    [SLUICE_FRAME_LIMIT] = "LIMIT",   [SLUICE_FRAME_PING] = "PING",
    [SLUICE_FRAME_PONG] = "PONG",     [SLUICE_FRAME_DRAIN] = "DRAIN",
    [SLUICE_FRAME_RETIRE] = "RETIRE", [SLUICE_FRAME_ERROR] = "ERROR",
    [SLUICE_FRAME_MESSAGE] = "MESSAGE", [SLUICE_FRAME_CLOSE] = "CLOSE",
};

const char *sluice_frame_type_name(int type)
{
    if (type < 1 || type > SLUICE_FRAME_TYPE_MAX)
        return "?";
    return frame_names[type];
}

/* Index = wire code. */
static const char *const err_names[] = {
    NULL,           "malformed",      "frame_size",       "unknown_type",
    "field_type",   "field_value",    "too_many_headers", "unexpected_frame",
    "stream_state", "flow_control",   "too_many_streams", "version",
    "auth",         "truncated",      "internal",         "timeout",
};
#define N_ERR ((int)(sizeof err_names / sizeof err_names[0]))

const char *sluice_proto_err_name(int err)
{
    int code = -err - SLUICE_PROTO_E_BASE;
    if (code < 1 || code >= N_ERR)
        return NULL;
    return err_names[code];
}

const char *sluice_proto_strerror(int err)
{
    const char *n = sluice_proto_err_name(err);
    if (n)
        return n;
    if (err < 0 && err > -SLUICE_PROTO_E_BASE)
        return strerror(-err);
    return "unknown error";
}

uint32_t sluice_proto_err_code(int err)
{
    int code = -err - SLUICE_PROTO_E_BASE;
    if (code < 1 || code >= N_ERR)
        return (uint32_t)(-SLUICE_PROTO_E_INTERNAL - SLUICE_PROTO_E_BASE);
    return (uint32_t)code;
}

int sluice_proto_err_from_code(uint64_t code)
{
    if (code == 0 || code > 1000000)
        return SLUICE_PROTO_E_INTERNAL;
    return -(SLUICE_PROTO_E_BASE + (int)code);
}

static const char *const cancel_names[] = {
    NULL, "client_closed", "timeout", "shutdown", "body_too_large",
    "bad_body", "body_timeout", "invalid_response", "internal",
};

const char *sluice_cancel_reason_name(uint64_t reason)
{
    if (reason < 1 || reason >= sizeof cancel_names / sizeof cancel_names[0])
        return "internal";
    return cancel_names[reason];
}

static const char *const reset_names[] = {NULL, "internal", "refused", "overloaded"};

const char *sluice_reset_code_name(uint64_t code)
{
    if (code < 1 || code >= sizeof reset_names / sizeof reset_names[0])
        return "internal";
    return reset_names[code];
}
