/* Log-linear latency histogram (HdrHistogram-style).
 *
 * Values are unsigned integers (sluice-load records microseconds). Values
 * below 256 have a bucket each (exact); above, every power-of-two range
 * [2^e, 2^(e+1)) is split into 128 equal sub-buckets, so a bucket is at most
 * 1/128 of its lower bound wide. Percentiles report the bucket's midpoint
 * (clamped to the exact min and max), hence a relative error of at most
 * 1/256 (0.4%). Values above the highest trackable one are counted at that
 * value and reported by sload_hist_saturated().
 *
 * With highest = 2^32 - 1 (71 minutes in microseconds) a histogram is 3,328
 * buckets (26 KiB). Not thread-safe: one per thread, merged at the end. */
#ifndef SLOAD_HIST_H
#define SLOAD_HIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct sload_hist sload_hist;

/* highest: the largest value kept apart (at least 255). 0 or -ENOMEM. */
int sload_hist_new(sload_hist **out, uint64_t highest);
void sload_hist_free(sload_hist *h);
void sload_hist_reset(sload_hist *h);

void sload_hist_record(sload_hist *h, uint64_t v);
void sload_hist_record_n(sload_hist *h, uint64_t v, uint64_t n);
/* Adds src's counts to dst. -EINVAL if their highest values differ. */
int sload_hist_merge(sload_hist *dst, const sload_hist *src);

uint64_t sload_hist_count(const sload_hist *h);
uint64_t sload_hist_min(const sload_hist *h);        /* exact; 0 when empty */
uint64_t sload_hist_max(const sload_hist *h);        /* exact; 0 when empty */
uint64_t sload_hist_saturated(const sload_hist *h);  /* values clamped to highest */
double sload_hist_mean(const sload_hist *h);          /* exact (of clamped values) */
double sload_hist_stddev(const sload_hist *h);

/* The value at percentile p (0..100): the smallest recorded value v such
 * that at least p% of the values are <= v (nearest rank), within the
 * histogram's precision. p <= 0 gives the min, p >= 100 the max. */
uint64_t sload_hist_percentile(const sload_hist *h, double p);

/* Nearest rank (1-based) of percentile p among count values, as
 * sload_hist_percentile uses it: ceil(p/100 * count), at least 1. */
uint64_t sload_hist_rank(uint64_t count, double p);

/* Buckets, for export: [lo, hi] and how many values fell there. */
size_t sload_hist_buckets(const sload_hist *h);
uint64_t sload_hist_bucket(const sload_hist *h, size_t i, uint64_t *lo, uint64_t *hi);

#endif
