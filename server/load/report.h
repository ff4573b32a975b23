/* The end-of-run report: text for people, JSON for machines. */
#ifndef SLOAD_REPORT_H
#define SLOAD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "client.h"

typedef struct {
    const char *url;
    const char *method;
    unsigned threads, connections, pipeline;
    double rate;                 /* 0: closed loop */
    uint64_t duration_ns;        /* 0: until the requests are done */
    uint64_t warmup_ns;
    uint64_t requests;           /* -n, 0 if not given */
    bool keepalive;
    bool h2, tls, tls_verify;    /* pipeline: streams per connection with h2 */
    uint64_t body_len;
    bool ws, ws_text;            /* WebSocket echo load: ws_size-byte messages */
    uint64_t ws_size;
    bool interrupted;
    const sload_stats *st;       /* merged over the threads */
} sload_report;

void sload_report_text(FILE *f, const sload_report *r);
void sload_report_json(FILE *f, const sload_report *r);

/* "812us", "12.34ms", "3.210s": microseconds for people. */
void sload_format_us(char *buf, size_t len, double us);

/* Errors of every kind, 4xx and 5xx responses included. */
uint64_t sload_report_errors(const sload_stats *st);

#endif
