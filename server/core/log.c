#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sluice_log {
    FILE *err, *acc;
    char err_path[512], acc_path[512];
    int level;
    bool err_std, acc_std;
};

static FILE *open_log(const char *path, bool *is_std)
{
    *is_std = !strcmp(path, "-");
    if (*is_std)
        return stderr;
    return fopen(path, "ae"); /* close-on-exec: workers must not inherit it */
}

int sluice_log_new(sluice_log **out, const char *error_path, const char *access_path, int level)
{
    sluice_log *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    snprintf(l->err_path, sizeof l->err_path, "%s", error_path);
    snprintf(l->acc_path, sizeof l->acc_path, "%s", access_path);
    l->level = level;
    l->err = open_log(error_path, &l->err_std);
    if (!l->err) {
        int e = -errno;
        free(l);
        return e;
    }
    if (strcmp(access_path, "off")) {
        l->acc = open_log(access_path, &l->acc_std);
        if (!l->acc) {
            int e = -errno;
            if (!l->err_std)
                fclose(l->err);
            free(l);
            return e;
        }
    }
    /* stderr is unbuffered by default: give it a buffer, flushed per loop turn */
    if (l->err_std || l->acc_std)
        setvbuf(stderr, NULL, _IOFBF, 1 << 16);
    *out = l;
    return 0;
}

void sluice_log_free(sluice_log *l)
{
    if (!l)
        return;
    sluice_log_flush(l);
    if (l->acc && !l->acc_std)
        fclose(l->acc);
    if (l->err && !l->err_std)
        fclose(l->err);
    free(l);
}

int sluice_log_reopen(sluice_log *l)
{
    sluice_log_flush(l);
    if (!l->err_std) {
        FILE *f = fopen(l->err_path, "ae");
        if (!f)
            return -errno;
        fclose(l->err);
        l->err = f;
    }
    if (l->acc && !l->acc_std) {
        FILE *f = fopen(l->acc_path, "ae");
        if (!f)
            return -errno;
        fclose(l->acc);
        l->acc = f;
    }
    return 0;
}

void sluice_log_flush(sluice_log *l)
{
    if (l->acc)
        fflush(l->acc);
    fflush(l->err);
}

int sluice_log_level(const sluice_log *l) { return l->level; }
void sluice_log_set_level(sluice_log *l, int level) { l->level = level; }
int sluice_log_access_enabled(const sluice_log *l) { return l->acc != NULL; }

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void slog(sluice_log *l, int level, const char *fmt, ...)
{
    if (!l || level > l->level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(l->err, "%s.%03ldZ [%s] ", when, ts.tv_nsec / 1000000, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(l->err, fmt, ap);
    va_end(ap);
    fputc('\n', l->err);
    if (level <= LOG_WARN)
        fflush(l->err);
}

/* Printable, bounded copy of a request field for the log line. */
static void put_field(FILE *f, const char *s, size_t n)
{
    if (n > 2048)
        n = 2048;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

void sluice_log_access(sluice_log *l, const sluice_access *a)
{
    if (!l->acc)
        return;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char when[40];
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S +0000", &tm);
    FILE *f = l->acc;
    fprintf(f, "%s - - [%s] \"", a->remote, when);
    put_field(f, a->method, a->method_len);
    fputc(' ', f);
    put_field(f, a->target, a->target_len);
    fprintf(f, " HTTP/%d.%d\" %d %llu %.3fms", a->version / 10, a->version % 10, a->status, (unsigned long long)a->bytes,
            a->duration_ms);
    if (a->worker_id >= 0)
        fprintf(f, " w%lld", (long long)a->worker_id);
    else
        fputs(" -", f);
    if (a->websocket)
        fprintf(f, " ws messages=%llu/%llu bytes=%llu/%llu close=%u", (unsigned long long)a->ws_msgs_in,
                (unsigned long long)a->ws_msgs_out, (unsigned long long)a->ws_bytes_in,
                (unsigned long long)a->ws_bytes_out, a->ws_close_code);
    fputc('\n', f);
}
