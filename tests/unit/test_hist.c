/* sluice-load's log-linear histogram (server/load/hist.c): percentiles
 * within 1% of the exact value (nearest rank in a sorted list) for uniform,
 * skewed and bimodal distributions; exact min and max; merge. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "hist.h"

#define HIGHEST ((uint64_t)UINT32_MAX)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static double unit(void)
{
    return ((double)(rng() >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static const double percentiles[] = {0,  1,  10, 25, 50, 75,   90,   95,    99,
                                     99.5, 99.9, 99.99, 99.999, 100, 33.3, 66.6};

/* Records vals into a fresh histogram and compares every percentile with
 * the exact nearest-rank value. */
static void check_against_exact(uint64_t *vals, size_t n, double max_rel)
{
    sload_hist *h;
    cr_assert_eq(sload_hist_new(&h, HIGHEST), 0);
    for (size_t i = 0; i < n; i++)
        sload_hist_record(h, vals[i]);
    qsort(vals, n, sizeof *vals, cmp_u64);
    cr_assert_eq(sload_hist_count(h), n);
    cr_assert_eq(sload_hist_min(h), vals[0]);
    cr_assert_eq(sload_hist_max(h), vals[n - 1]);
    for (size_t i = 0; i < sizeof percentiles / sizeof percentiles[0]; i++) {
        double p = percentiles[i];
        uint64_t rank = sload_hist_rank(n, p);
        uint64_t exact = vals[rank - 1];
        uint64_t got = sload_hist_percentile(h, p);
        double rel = exact ? fabs((double)got - (double)exact) / (double)exact : (double)got;
        cr_expect(rel <= max_rel, "p%g: got %llu, exact %llu (relative error %.5f)", p,
                  (unsigned long long)got, (unsigned long long)exact, rel);
    }
    sload_hist_free(h);
}

Test(hist, rank_is_nearest_rank)
{
    cr_expect_eq(sload_hist_rank(1000, 99.9), 999);  /* not 1000: 99.9/100 is inexact */
    cr_expect_eq(sload_hist_rank(1000, 50), 500);
    cr_expect_eq(sload_hist_rank(1000, 50.01), 501);
    cr_expect_eq(sload_hist_rank(1000, 0), 1);
    cr_expect_eq(sload_hist_rank(1000, 100), 1000);
    cr_expect_eq(sload_hist_rank(3, 99), 3);
    cr_expect_eq(sload_hist_rank(0, 50), 0);
}

Test(hist, empty)
{
    sload_hist *h;
    cr_assert_eq(sload_hist_new(&h, HIGHEST), 0);
    cr_expect_eq(sload_hist_count(h), 0);
    cr_expect_eq(sload_hist_min(h), 0);
    cr_expect_eq(sload_hist_max(h), 0);
    cr_expect_eq(sload_hist_percentile(h, 50), 0);
    cr_expect_eq(sload_hist_percentile(h, 100), 0);
    cr_expect_float_eq(sload_hist_mean(h), 0.0, 1e-12);
    sload_hist_free(h);
}

Test(hist, small_values_are_exact)
{
    uint64_t vals[1000];
    for (size_t i = 0; i < 1000; i++)
        vals[i] = rng() % 256;
    check_against_exact(vals, 1000, 0.0);
}

Test(hist, single_value_every_percentile)
{
    sload_hist *h;
    cr_assert_eq(sload_hist_new(&h, HIGHEST), 0);
    sload_hist_record_n(h, 123457, 10);
    for (size_t i = 0; i < sizeof percentiles / sizeof percentiles[0]; i++)
        cr_expect_eq(sload_hist_percentile(h, percentiles[i]), 123457); /* clamped to min/max */
    sload_hist_free(h);
}

Test(hist, uniform_wide_range)
{
    size_t n = 200000;
    uint64_t *vals = malloc(n * sizeof *vals);
    for (size_t i = 0; i < n; i++)
        vals[i] = 1 + rng() % 100000000u; /* 1us .. 100 s */
    check_against_exact(vals, n, 0.01);
    free(vals);
}

Test(hist, lognormal_skewed)
{
    size_t n = 200000;
    uint64_t *vals = malloc(n * sizeof *vals);
    for (size_t i = 0; i < n; i++) {
        /* Box-Muller; median e^7 ~ 1.1 ms, long right tail */
        double z = sqrt(-2 * log(unit())) * cos(2 * M_PI * unit());
        vals[i] = (uint64_t)exp(7 + 1.5 * z);
    }
    check_against_exact(vals, n, 0.01);
    free(vals);
}

Test(hist, pareto_heavy_tail)
{
    size_t n = 100000;
    uint64_t *vals = malloc(n * sizeof *vals);
    for (size_t i = 0; i < n; i++) {
        double v = 300.0 / pow(unit(), 1 / 1.1); /* alpha 1.1 */
        vals[i] = v > 3.6e9 ? 3600000000u : (uint64_t)v;
    }
    check_against_exact(vals, n, 0.01);
    free(vals);
}

Test(hist, bimodal_with_rare_stalls)
{
    size_t n = 100000;
    uint64_t *vals = malloc(n * sizeof *vals);
    for (size_t i = 0; i < n; i++)
        vals[i] = i % 100 == 0 ? 4000000 + rng() % 2000000   /* 1%: 4-6 s */
                               : 900 + rng() % 300;          /* 99%: ~1 ms */
    check_against_exact(vals, n, 0.01);
    free(vals);
}

Test(hist, powers_of_two_edges)
{
    /* values at and around every bucket-range boundary */
    uint64_t vals[3 * 30];
    size_t n = 0;
    for (int e = 2; e < 32; e++) {
        vals[n++] = ((uint64_t)1 << e) - 1;
        vals[n++] = (uint64_t)1 << e;
        vals[n++] = ((uint64_t)1 << e) + 1;
    }
    cr_assert_eq(n, sizeof vals / sizeof vals[0]);
    check_against_exact(vals, n, 0.01);
}

Test(hist, merge_equals_single)
{
    sload_hist *a, *b, *all;
    cr_assert_eq(sload_hist_new(&a, HIGHEST), 0);
    cr_assert_eq(sload_hist_new(&b, HIGHEST), 0);
    cr_assert_eq(sload_hist_new(&all, HIGHEST), 0);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = 50 + rng() % 5000000;
        sload_hist_record(i % 3 ? a : b, v);
        sload_hist_record(all, v);
    }
    sload_hist_record(b, 7);          /* min on one side */
    sload_hist_record(all, 7);
    sload_hist_record(a, 90000000);   /* max on the other */
    sload_hist_record(all, 90000000);
    cr_assert_eq(sload_hist_merge(a, b), 0);
    cr_expect_eq(sload_hist_count(a), sload_hist_count(all));
    cr_expect_eq(sload_hist_min(a), 7);
    cr_expect_eq(sload_hist_max(a), 90000000);
    for (size_t i = 0; i < sizeof percentiles / sizeof percentiles[0]; i++)
        cr_expect_eq(sload_hist_percentile(a, percentiles[i]), sload_hist_percentile(all, percentiles[i]),
                     "p%g differs after merge", percentiles[i]);
    cr_expect_float_eq(sload_hist_mean(a), sload_hist_mean(all), 1e-6 * sload_hist_mean(all));
    /* merging an empty histogram changes nothing */
    sload_hist_reset(b);
    cr_assert_eq(sload_hist_merge(a, b), 0);
    cr_expect_eq(sload_hist_min(a), 7);
    cr_expect_eq(sload_hist_count(a), sload_hist_count(all));
    sload_hist_free(a);
    sload_hist_free(b);
    sload_hist_free(all);
}

Test(hist, merge_rejects_other_layout)
{
    sload_hist *a, *b;
    cr_assert_eq(sload_hist_new(&a, HIGHEST), 0);
    cr_assert_eq(sload_hist_new(&b, 1000000), 0);
    cr_expect_eq(sload_hist_merge(a, b), -EINVAL);
    sload_hist_free(a);
    sload_hist_free(b);
}

Test(hist, saturates_above_highest)
{
    sload_hist *h;
    cr_assert_eq(sload_hist_new(&h, 1000000), 0);
    sload_hist_record(h, 10);
    sload_hist_record(h, 5000000000ull);
    cr_expect_eq(sload_hist_count(h), 2);
    cr_expect_eq(sload_hist_saturated(h), 1);
    cr_expect_eq(sload_hist_max(h), 1000000);
    cr_expect_eq(sload_hist_percentile(h, 100), 1000000);
    sload_hist_free(h);
}

Test(hist, mean_and_stddev)
{
    sload_hist *h;
    cr_assert_eq(sload_hist_new(&h, HIGHEST), 0);
    sload_hist_record_n(h, 1000, 3);
    sload_hist_record(h, 5000);
    cr_expect_float_eq(sload_hist_mean(h), 2000.0, 1e-9);
    cr_expect_float_eq(sload_hist_stddev(h), sqrt(3000000.0), 1e-6);
    sload_hist_free(h);
}

Test(hist, buckets_cover_the_range)
{
    sload_hist *h;
    cr_assert_eq(sload_hist_new(&h, HIGHEST), 0);
    size_t n = sload_hist_buckets(h);
    uint64_t prev_hi = 0, lo, hi;
    for (size_t i = 0; i < n; i++) {
        sload_hist_bucket(h, i, &lo, &hi);
        if (i > 0)
            cr_assert_eq(lo, prev_hi + 1, "gap before bucket %zu", i);
        cr_assert((double)(hi - lo + 1) <= (double)lo / 128.0 + 1.0, "bucket %zu too wide", i);
        prev_hi = hi;
    }
    cr_expect_geq(prev_hi, HIGHEST);
    cr_expect_leq(n, 3400);
    sload_hist_free(h);
}
