/* Latency percentile curve as SVG: see svg.h. */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "report.h"

#define W 860.0
#define H 500.0
#define ML 80.0   /* margins */
#define MR 45.0   /* room for the last x label, "99.99999%", centred on the edge */
#define MT 64.0
#define MB 60.0
#define POINTS 400

static const char *colors[] = {"#1f6fd1", "#d1561f", "#2a9d3a", "#8e44ad"};

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A "nice" step (1, 2 or 5 x 10^k) giving about n ticks up to max. */
static double nice_step(double max, int n)
{
    double raw = max / n;
    double mag = pow(10, floor(log10(raw)));
    double r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
}

int sload_svg_write(FILE *f, const char *title, const char *subtitle,
                    const sload_svg_series *series, int nseries)
{
    uint64_t count = 0, ymax_v = 0;
    for (int s = 0; s < nseries; s++) {
        if (sload_hist_count(series[s].hist) > count)
            count = sload_hist_count(series[s].hist);
        if (sload_hist_max(series[s].hist) > ymax_v)
            ymax_v = sload_hist_max(series[s].hist);
    }
    /* x: log10(1/(1-p)); the last point (the max) sits at 1-p = 1/count. */
    double xmax = count > 1 ? ceil(log10((double)count)) : 1;
    if (xmax < 2)
        xmax = 2;
    if (xmax > 7)
        xmax = 7;
    double ystep = nice_step(ymax_v > 0 ? (double)ymax_v : 1000.0, 6);
    double ymax = ceil((ymax_v > 0 ? (double)ymax_v : 1000.0) / ystep) * ystep;
    double pw = W - ML - MR, ph = H - MT - MB;
#define PX(x) (ML + (x) / xmax * pw)
#define PY(y) (MT + ph - (y) / ymax * ph)

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", ML);
    xml_text(f, title);
    fprintf(f, "</text>\n<text x=\"%.0f\" y=\"44\" fill=\"#555\">", ML);
    xml_text(f, subtitle ? subtitle : "");
    fprintf(f, "</text>\n");

    /* grid and axes */
    fprintf(f, "<g stroke=\"#ddd\" stroke-width=\"1\">\n");
    for (int i = 0; i <= (int)xmax; i++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(i), MT, PX(i), MT + ph);
    for (double y = 0; y <= ymax + ystep / 2; y += ystep)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", ML, PY(y), ML + pw, PY(y));
    fprintf(f, "</g>\n<g text-anchor=\"middle\" fill=\"#333\">\n");
    for (int i = 0; i <= (int)xmax; i++) {
        char lab[32];
        if (i == 0)
            snprintf(lab, sizeof lab, "0%%");
        else if (i == 1)
            snprintf(lab, sizeof lab, "90%%");
        else
            snprintf(lab, sizeof lab, "%.*f%%", i - 2, 100.0 - pow(10, 2 - i));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", PX(i), MT + ph + 18, lab);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">percentile</text>\n", ML + pw / 2, H - 14);
    fprintf(f, "</g>\n<g text-anchor=\"end\" fill=\"#333\">\n");
    double unit = ymax >= 2e6 ? 1e6 : ymax >= 2e3 ? 1e3 : 1;
    const char *uname = unit == 1e6 ? "s" : unit == 1e3 ? "ms" : "us";
    for (double y = 0; y <= ymax + ystep / 2; y += ystep) {
        char lab[32];
        snprintf(lab, sizeof lab, "%g%s", round(y / unit * 1e6) / 1e6, uname);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", ML - 6, PY(y) + 4, lab);
    }
    fprintf(f, "</g>\n<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\" "
               "fill=\"#333\">latency</text>\n",
            MT + ph / 2);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
            ML, MT, pw, ph);

    /* series */
    for (int s = 0; s < nseries; s++) {
        const sload_hist *h = series[s].hist;
        uint64_t n = sload_hist_count(h);
        if (n == 0)
            continue;
        double xend = n > 1 ? log10((double)n) : 0;
        if (xend > xmax)
            xend = xmax;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s % 4]);
        for (int i = 0; i <= POINTS; i++) {
            double x = xend * i / POINTS;
            double p = 100.0 * (1.0 - pow(10, -x));
            double v = i == POINTS && xend == log10((double)n) ? (double)sload_hist_max(h)
                                                             : (double)sload_hist_percentile(h, p);
            fprintf(f, "%.1f,%.1f ", PX(x), PY(v));
        }
        fprintf(f, "\"/>\n");
        /* legend */
        double ly = MT + 16 + 18 * s;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                ML + 12, ly - 4, ML + 36, ly - 4, colors[s % 4]);
        char p50[32], p99[32], mx[32];
        sload_format_us(p50, sizeof p50, (double)sload_hist_percentile(h, 50));
        sload_format_us(p99, sizeof p99, (double)sload_hist_percentile(h, 99));
        sload_format_us(mx, sizeof mx, (double)sload_hist_max(h));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", ML + 42, ly);
        xml_text(f, series[s].label);
        fprintf(f, " (p50 %s, p99 %s, max %s)</text>\n", p50, p99, mx);
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    if (ferror(f))
        return -EIO;
    return 0;
}
