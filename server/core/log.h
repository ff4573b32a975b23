/* Error log (levels) and access log (one line per request). Both are
 * buffered and flushed once per loop iteration, so logging costs no syscall
 * per request. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdint.h>

#include "core/config.h"

typedef struct sluice_log sluice_log;

int sluice_log_new(sluice_log **out, const char *error_path, const char *access_path, int level);
void sluice_log_free(sluice_log *l);
/* Reopen files (after rotation). */
int sluice_log_reopen(sluice_log *l);
void sluice_log_flush(sluice_log *l);
int sluice_log_level(const sluice_log *l);
void sluice_log_set_level(sluice_log *l, int level); /* reload */

void slog(sluice_log *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef struct {
    const char *remote;          /* textual address */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int version;                 /* HTTP version times ten: 10, 11, 20 */
    int status;
    uint64_t bytes;              /* response body bytes sent */
    double duration_ms;
    int64_t worker_id;           /* -1: no worker */
    /* a WebSocket (status 101), logged when it closes: messages and
     * payload bytes from the client (in) and to it (out), close code */
    bool websocket;
    uint64_t ws_msgs_in, ws_msgs_out, ws_bytes_in, ws_bytes_out;
    unsigned ws_close_code;
} sluice_access;

void sluice_log_access(sluice_log *l, const sluice_access *a);
int sluice_log_access_enabled(const sluice_log *l);

#endif
