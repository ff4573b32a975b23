/* Log-linear histogram: see hist.h. */
#include "hist.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUB_BITS 7u
#define SUB_COUNT (1u << SUB_BITS)   /* linear sub-buckets per power of two */
#define EXACT (2u * SUB_COUNT)        /* values below this have a bucket each */

struct sload_hist {
    uint64_t highest;
    size_t nbuckets;
    uint64_t count;
    uint64_t min, max;
    uint64_t saturated;
    double sum, sumsq;
    uint64_t *counts;
};

static size_t bucket_index(uint64_t v)
{
    if (v < EXACT)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);   /* >= SUB_BITS + 1 */
    unsigned shift = e - SUB_BITS;
    return EXACT + (size_t)(e - SUB_BITS - 1) * SUB_COUNT + (size_t)((v >> shift) - SUB_COUNT);
}

static void bucket_range(size_t i, uint64_t *lo, uint64_t *hi)
{
    if (i < EXACT) {
        *lo = *hi = i;
        return;
    }
    size_t j = i - EXACT;
    unsigned shift = (unsigned)(j / SUB_COUNT) + 1;
    uint64_t sub = SUB_COUNT + j % SUB_COUNT;
    *lo = sub << shift;
    *hi = *lo + ((uint64_t)1 << shift) - 1;
}

int sload_hist_new(sload_hist **out, uint64_t highest)
{
    *out = NULL;
    if (highest < EXACT - 1)
        highest = EXACT - 1;
    if (highest > (UINT64_MAX >> 1))
        highest = UINT64_MAX >> 1;
    sload_hist *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->highest = highest;
    h->nbuckets = bucket_index(highest) + 1;
    h->counts = calloc(h->nbuckets, sizeof *h->counts);
    if (!h->counts) {
        free(h);
        return -ENOMEM;
    }
    sload_hist_reset(h);
    *out = h;
    return 0;
}

void sload_hist_free(sload_hist *h)
{
    if (!h)
        return;
    free(h->counts);
    free(h);
}

void sload_hist_reset(sload_hist *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof *h->counts);
    h->count = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->saturated = 0;
    h->sum = h->sumsq = 0;
}

void sload_hist_record_n(sload_hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    if (v > h->highest) {
        v = h->highest;
        h->saturated += n;
    }
    h->counts[bucket_index(v)] += n;
    h->count += n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    double d = (double)v;
    h->sum += d * (double)n;
    h->sumsq += d * d * (double)n;
}

void sload_hist_record(sload_hist *h, uint64_t v)
{
    sload_hist_record_n(h, v, 1);
}

int sload_hist_merge(sload_hist *dst, const sload_hist *src)
{
    if (dst->highest != src->highest)
        return -EINVAL;
    if (src->count == 0)
        return 0;
    for (size_t i = 0; i < src->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->saturated += src->saturated;
    dst->sum += src->sum;
    dst->sumsq += src->sumsq;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t sload_hist_count(const sload_hist *h) { return h->count; }
uint64_t sload_hist_min(const sload_hist *h) { return h->count ? h->min : 0; }
uint64_t sload_hist_max(const sload_hist *h) { return h->max; }
uint64_t sload_hist_saturated(const sload_hist *h) { return h->saturated; }

double sload_hist_mean(const sload_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}

double sload_hist_stddev(const sload_hist *h)
{
    if (h->count < 2)
        return 0.0;
    double mean = h->sum / (double)h->count;
    double var = h->sumsq / (double)h->count - mean * mean;
    return var > 0 ? sqrt(var) : 0.0;
}

uint64_t sload_hist_rank(uint64_t count, double p)
{
    if (count == 0)
        return 0;
    if (!(p > 0))
        return 1;
    if (p >= 100)
        return count;
    double r = p / 100.0 * (double)count;
    /* p/100 is inexact in binary (99.9/100*1000 = 999.0000000000001):
     * forgive a relative error far below one rank. */
    double fl = floor(r);
    uint64_t rank = (uint64_t)fl;
    if (r - fl > r * 1e-12)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > count)
        rank = count;
    return rank;
}

uint64_t sload_hist_percentile(const sload_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (!(p > 0))
        return h->min;
    if (p >= 100)
        return h->max;
    uint64_t rank = sload_hist_rank(h->count, p);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            uint64_t lo, hi;
            bucket_range(i, &lo, &hi);
            uint64_t v = lo + (hi - lo) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

size_t sload_hist_buckets(const sload_hist *h) { return h->nbuckets; }

uint64_t sload_hist_bucket(const sload_hist *h, size_t i, uint64_t *lo, uint64_t *hi)
{
    if (i >= h->nbuckets) {
        *lo = *hi = 0;
        return 0;
    }
    bucket_range(i, lo, hi);
    return h->counts[i];
}
