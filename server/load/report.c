/* The end-of-run report: see report.h. */
#include "report.h"

#include <inttypes.h>
#include <string.h>

#include "version.h"

static const double pcts[] = {50, 90, 99, 99.9};

void sload_format_us(char *buf, size_t len, double us)
{
    if (us < 1000)
        snprintf(buf, len, "%.0fus", us);
    else if (us < 10000)
        snprintf(buf, len, "%.3fms", us / 1e3);
    else if (us < 100000)
        snprintf(buf, len, "%.2fms", us / 1e3);
    else if (us < 1000000)
        snprintf(buf, len, "%.1fms", us / 1e3);
    else
        snprintf(buf, len, "%.3fs", us / 1e6);
}

static void format_count(char *buf, size_t len, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

static void format_bytes(char *buf, size_t len, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, len, i == 0 ? "%.0f%s" : "%.2f%s", b, u[i]);
}

uint64_t sload_report_errors(const sload_stats *st)
{
    uint64_t n = st->status[4] + st->status[5];
    for (int k = 0; k < SLOAD_ERR_COUNT; k++)
        n += st->errors[k];
    return n;
}

static double seconds(uint64_t ns)
{
    return (double)ns / 1e9;
}

static void hist_row(FILE *f, const char *label, const sload_hist *h)
{
    char v[32];
    fprintf(f, "  %-10s", label);
    if (sload_hist_count(h) == 0) {
        fprintf(f, "  (none)\n");
        return;
    }
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        sload_format_us(v, sizeof v, (double)sload_hist_percentile(h, pcts[i]));
        fprintf(f, " %10s", v);
    }
    sload_format_us(v, sizeof v, (double)sload_hist_max(h));
    fprintf(f, " %10s", v);
    sload_format_us(v, sizeof v, sload_hist_mean(h));
    fprintf(f, " %10s", v);
    sload_format_us(v, sizeof v, sload_hist_stddev(h));
    fprintf(f, " %10s\n", v);
}

void sload_report_text(FILE *f, const sload_report *r)
{
    const sload_stats *st = r->st;
    char a[48], b[48], c[48], d[48];
    double win = seconds(st->window_ns);

    if (r->ws)
        fprintf(f, "sluice-load %s: WebSocket %s\n", SLOAD_VERSION, r->url);
    else
        fprintf(f, "sluice-load %s: %s %s\n", SLOAD_VERSION, r->method, r->url);
    fprintf(f, "  %s", r->ws ? (r->tls ? "WebSocket (RFC 6455) over TLS" : "WebSocket (RFC 6455)") :
                       r->h2 ? (r->tls ? "HTTP/2 over TLS" : "HTTP/2 (h2c, prior knowledge)") :
                              (r->tls ? "HTTP/1.1 over TLS" : "HTTP/1.1"));
    if (r->tls)
        fprintf(f, " (%s; certificate %s)", st->tls_info[0] ? st->tls_info : "no handshake completed",
                r->tls_verify ? "verified" : "not verified");
    if (r->h2)
        fprintf(f, ", %u stream%s per connection", r->pipeline, r->pipeline == 1 ? "" : "s");
    if (r->ws)
        fprintf(f, ", %" PRIu64 "-byte %s messages echoed", r->ws_size, r->ws_text ? "text" : "binary");
    fprintf(f, "\n");
    if (r->rate > 0 && r->ws)
        fprintf(f, "  open loop at %.0f msg/s (fixed schedule; latency counted from each message's due time)\n",
                r->rate);
    else if (r->rate > 0)
        fprintf(f, "  open loop at %.0f req/s (fixed schedule; latency counted from each request's due time)\n",
                r->rate);
    else if (r->ws)
        fprintf(f, "  closed loop, %u message%s in flight per connection\n", r->pipeline, r->pipeline == 1 ? "" : "s");
    else if (r->h2)
        fprintf(f, "  closed loop\n");
    else
        fprintf(f, "  closed loop, pipeline %u\n", r->pipeline);
    fprintf(f, "  %u connection%s, %u thread%s%s", r->connections, r->connections == 1 ? "" : "s",
            r->threads, r->threads == 1 ? "" : "s", r->keepalive ? "" : ", no keep-alive");
    if (r->duration_ns)
        fprintf(f, ", %.3gs", seconds(r->duration_ns));
    if (r->requests)
        fprintf(f, ", %" PRIu64 " requests", r->requests);
    if (r->warmup_ns)
        fprintf(f, " after %.3gs warm-up", seconds(r->warmup_ns));
    if (r->body_len)
        fprintf(f, ", %" PRIu64 "-byte body", r->body_len);
    fprintf(f, "%s%s\n\n", r->interrupted ? " (interrupted)" : "",
            r->st->stalled ? " (stopped: no progress for a whole timeout)" : "");

    format_count(a, sizeof a, st->completed);
    if (r->ws)
        fprintf(f, "  messages   %s echoed in %.2fs: %.1f msg/s\n", a, win,
                win > 0 ? (double)st->completed_window / win : 0.0);
    else
        fprintf(f, "  requests   %s completed in %.2fs: %.1f req/s\n", a, win,
                win > 0 ? (double)st->completed_window / win : 0.0);
    format_bytes(a, sizeof a, win > 0 ? (double)st->bytes_read / win : 0);
    format_bytes(b, sizeof b, win > 0 ? (double)st->bytes_written / win : 0);
    format_bytes(c, sizeof c, (double)st->bytes_read);
    format_bytes(d, sizeof d, (double)st->bytes_written);
    fprintf(f, "  transfer   %s/s read, %s/s written (%s, %s)\n", a, b, c, d);
    if (r->rate > 0) {
        format_count(a, sizeof a, st->scheduled);
        format_count(b, sizeof b, st->sent);
        format_count(c, sizeof c, st->backlog_end);
        fprintf(f, "  schedule   %s due in the window, %s sent, %s still waiting to be sent at the end\n", a, b, c);
        if (st->backlog_end) {
            sload_format_us(d, sizeof d, (double)st->backlog_oldest_ns / 1e3);
            fprintf(f, "             not sent on time (the target did not keep up, or -c x -p is too small for\n"
                       "             this rate and latency); the oldest unsent request had waited %s, and the\n"
                       "             latencies below cover only the requests that were answered\n", d);
        }
    }
    if (!r->ws) { /* WebSocket: no statuses after the 101 */
        fprintf(f, "  status    ");
        const char *cls[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
        bool any = false;
        for (int i = 2; i <= 6; i++) {
            int k = i == 6 ? 0 : i;
            if (st->status[k]) {
                format_count(a, sizeof a, st->status[k]);
                fprintf(f, " %s %s", cls[k], a);
                any = true;
            }
        }
        fprintf(f, "%s\n", any ? "" : " (no responses)");
    }
    uint64_t nerr = sload_report_errors(st);
    fprintf(f, "  errors    ");
    if (nerr == 0) {
        fprintf(f, " none\n");
    } else {
        for (int k = 0; k < SLOAD_ERR_COUNT; k++)
            if (st->errors[k]) {
                format_count(a, sizeof a, st->errors[k]);
                fprintf(f, " %s %s", sload_error_name((sload_error_kind)k), a);
            }
        if (st->status[4]) {
            format_count(a, sizeof a, st->status[4]);
            fprintf(f, " 4xx %s", a);
        }
        if (st->status[5]) {
            format_count(a, sizeof a, st->status[5]);
            fprintf(f, " 5xx %s", a);
        }
        fprintf(f, "\n");
    }
    if (st->errors[SLOAD_ERR_TLS] && st->tls_error[0])
        fprintf(f, "  tls        first failure: %s\n", st->tls_error);
    if (st->ws_error[0])
        fprintf(f, "  websocket  first failed handshake: %s\n", st->ws_error);
    if (r->tls || !r->keepalive) {
        format_count(a, sizeof a, st->connects_window);
        fprintf(f, "  connects   %s in the window: %.1f/s", a, win > 0 ? (double)st->connects_window / win : 0.0);
        if (r->tls)
            fprintf(f, ", each a TLS handshake (%" PRIu64 " resumed, in all)", st->tls_resumed);
        fprintf(f, "\n");
    }
    if (st->resent)
        fprintf(f, "  resent     %" PRIu64 " %s\n", st->resent,
                r->h2 ? "(not processed by the server: refused streams, or above a GOAWAY's last stream)"
                      : "(pipelined behind a response that closed the connection)");
    if (st->unfinished)
        fprintf(f, "  unfinished %" PRIu64 " (still in flight when the drain ended)\n", st->unfinished);

    fprintf(f, "\n  %-10s %10s %10s %10s %10s %10s %10s %10s\n", "latency", "p50", "p90", "p99",
            "p99.9", "max", "mean", "stdev");
    hist_row(f, r->rate > 0 ? "response" : "response", st->latency);
    if (r->rate > 0) {
        hist_row(f, "service", st->service);
        hist_row(f, "send lag", st->lag);
    }
    if (sload_hist_count(st->connect) && (!r->keepalive || sload_hist_count(st->connect) > r->connections))
        hist_row(f, "connect", st->connect);
    if (r->rate > 0)
        fprintf(f, "\n  response: from each request's due time (corrected for coordinated omission);\n"
                   "  service: from its actual send (not corrected); send lag: due -> sent.\n");
    if (sload_hist_saturated(st->latency))
        fprintf(f, "  (%" PRIu64 " latencies above the histogram's range were clamped)\n",
                sload_hist_saturated(st->latency));
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_hist(FILE *f, const char *name, const sload_hist *h, bool comma)
{
    static const struct {
        const char *key;
        double p;
    } ps[] = {{"p50", 50}, {"p75", 75}, {"p90", 90}, {"p99", 99}, {"p99_9", 99.9}, {"p99_99", 99.99}};
    fprintf(f, "  \"%s\": {\"count\": %" PRIu64, name, sload_hist_count(h));
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        fprintf(f, ", \"%s\": %" PRIu64, ps[i].key, sload_hist_percentile(h, ps[i].p));
    fprintf(f, ", \"min\": %" PRIu64 ", \"max\": %" PRIu64 ", \"mean\": %.1f, \"stdev\": %.1f}%s\n",
            sload_hist_min(h), sload_hist_max(h), sload_hist_mean(h), sload_hist_stddev(h),
            comma ? "," : "");
}

void sload_report_json(FILE *f, const sload_report *r)
{
    const sload_stats *st = r->st;
    double win = seconds(st->window_ns);
    fprintf(f, "{\n  \"tool\": \"sluice-load\", \"version\": \"%s\",\n  \"url\": ", SLOAD_VERSION);
    json_str(f, r->url);
    fprintf(f, ", \"method\": ");
    json_str(f, r->method);
    fprintf(f, ",\n  \"mode\": \"%s\", \"rate\": %.3f, \"connections\": %u, \"threads\": %u, "
               "\"pipeline\": %u, \"streams\": %u, \"keepalive\": %s,\n",
            r->rate > 0 ? "open" : "closed", r->rate, r->connections, r->threads, r->h2 ? 1 : r->pipeline,
            r->h2 ? r->pipeline : 0, r->keepalive ? "true" : "false");
    fprintf(f, "  \"protocol\": \"%s\", \"tls\": %s, \"tls_verify\": %s, \"tls_info\": ",
            r->ws ? "websocket" : r->h2 ? "h2" : "http/1.1", r->tls ? "true" : "false",
            r->tls_verify ? "true" : "false");
    json_str(f, st->tls_info);
    fprintf(f, ", \"tls_error\": ");
    json_str(f, st->tls_error);
    fprintf(f, ", \"tls_resumed\": %" PRIu64 ",\n", st->tls_resumed);
    if (r->ws) {
        /* requests_per_s below is then messages echoed per second */
        fprintf(f, "  \"ws\": {\"message_bytes\": %" PRIu64 ", \"text\": %s, \"messages_per_s\": %.3f, \"error\": ",
                r->ws_size, r->ws_text ? "true" : "false", win > 0 ? (double)st->completed_window / win : 0.0);
        json_str(f, st->ws_error);
        fprintf(f, "},\n");
    }
    fprintf(f, "  \"duration_s\": %.6f, \"warmup_s\": %.6f, \"requests_limit\": %" PRIu64
               ", \"body_bytes\": %" PRIu64 ", \"interrupted\": %s, \"stalled\": %s,\n",
            seconds(r->duration_ns), seconds(r->warmup_ns), r->requests, r->body_len,
            r->interrupted ? "true" : "false", st->stalled ? "true" : "false");
    fprintf(f, "  \"window_s\": %.6f, \"completed\": %" PRIu64 ", \"completed_in_window\": %" PRIu64
               ", \"requests_per_s\": %.3f,\n",
            win, st->completed, st->completed_window, win > 0 ? (double)st->completed_window / win : 0.0);
    fprintf(f, "  \"sent\": %" PRIu64 ", \"resent\": %" PRIu64 ", \"unfinished\": %" PRIu64
               ", \"connects\": %" PRIu64 ", \"connects_in_window\": %" PRIu64 ", \"connects_per_s\": %.3f,\n",
            st->sent, st->resent, st->unfinished, st->connects, st->connects_window,
            win > 0 ? (double)st->connects_window / win : 0.0);
    fprintf(f, "  \"bytes_read\": %" PRIu64 ", \"bytes_written\": %" PRIu64
               ", \"read_bytes_per_s\": %.1f, \"written_bytes_per_s\": %.1f,\n",
            st->bytes_read, st->bytes_written, win > 0 ? (double)st->bytes_read / win : 0.0,
            win > 0 ? (double)st->bytes_written / win : 0.0);
    if (r->rate > 0)
        fprintf(f, "  \"schedule\": {\"due\": %" PRIu64 ", \"backlog_at_end\": %" PRIu64
                   ", \"backlog_oldest_us\": %" PRIu64 "},\n",
                st->scheduled, st->backlog_end, st->backlog_oldest_ns / 1000);
    fprintf(f, "  \"status\": {\"2xx\": %" PRIu64 ", \"3xx\": %" PRIu64 ", \"4xx\": %" PRIu64
               ", \"5xx\": %" PRIu64 ", \"other\": %" PRIu64 "},\n",
            st->status[2], st->status[3], st->status[4], st->status[5], st->status[0]);
    fprintf(f, "  \"errors\": {");
    for (int k = 0; k < SLOAD_ERR_COUNT; k++)
        fprintf(f, "\"%s\": %" PRIu64 ", ", sload_error_name((sload_error_kind)k), st->errors[k]);
    fprintf(f, "\"status_4xx\": %" PRIu64 ", \"status_5xx\": %" PRIu64 ", \"total\": %" PRIu64 "},\n",
            st->status[4], st->status[5], sload_report_errors(st));
    fprintf(f, "  \"latency_unit\": \"us\",\n");
    json_hist(f, "latency", st->latency, true);
    if (r->rate > 0) {
        json_hist(f, "service", st->service, true);
        json_hist(f, "send_lag", st->lag, true);
    }
    json_hist(f, "connect", st->connect, false);
    fprintf(f, "}\n");
}
