/* Latency percentile curve as a standalone SVG, HdrHistogram-style: x is the
 * percentile on a log scale of 1/(1-p) (0%, 90%, 99%, 99.9%, ...), y the
 * latency. Up to 4 series (e.g. corrected latency and service time). */
#ifndef SLOAD_SVG_H
#define SLOAD_SVG_H

#include <stdio.h>

#include "hist.h"

typedef struct {
    const char *label;
    const sload_hist *hist;     /* microseconds */
} sload_svg_series;

/* 0, or -errno when writing failed. */
int sload_svg_write(FILE *f, const char *title, const char *subtitle,
                    const sload_svg_series *series, int nseries);

#endif
