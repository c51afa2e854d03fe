/* svg.c — the small SVG writer of svg.h: axes with "nice" ticks, line
 * charts, a log-x scatter with its Pareto frontier, grouped bars and a
 * heat map.  Every number is printed with fixed decimals so a chart's
 * bytes depend only on its data. */
#include "svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const PALETTE[] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
};
#define NPALETTE (int)(sizeof PALETTE / sizeof PALETTE[0])

void svg_escape(flow_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': buf_adds(b, "&amp;"); break;
        case '<': buf_adds(b, "&lt;"); break;
        case '>': buf_adds(b, "&gt;"); break;
        case '"': buf_adds(b, "&quot;"); break;
        default: buf_addc(b, *s);
        }
    }
}

static void text(flow_buf *b, double x, double y, const char *anchor, int size, const char *extra,
                 const char *s)
{
    buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"%s\"%s%s>", x, y,
               size, anchor, extra ? " " : "", extra ? extra : "");
    svg_escape(b, s);
    buf_adds(b, "</text>\n");
}

static void open_svg(flow_buf *b, int w, int h, const char *title)
{
    buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n", w, h, w, h);
    buf_printf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", w, h);
    text(b, w / 2.0, 18, "middle", 14, "font-weight=\"bold\"", title);
}

/* A tick step of 1, 2 or 5 x 10^k giving about `want` intervals over span. */
static double nice_step(double span, int want)
{
    if (!(span > 0)) return 1;
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void fmt_tick(char *out, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-9) v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-4)) snprintf(out, cap, "%.2g", v);
    else snprintf(out, cap, "%.*f", dec, v);
}

/* The plot frame: the data rectangle (x0, y0) .. (x1, y1) in pixels. */
typedef struct frame {
    double x0, y0, x1, y1;      /* left, top, right, bottom */
    double lo_x, hi_x, lo_y, hi_y;
    int logx;
} frame;

static double px(const frame *f, double x)
{
    if (f->logx) x = log10(x);
    return f->x0 + (x - f->lo_x) / (f->hi_x - f->lo_x) * (f->x1 - f->x0);
}

static double py(const frame *f, double y)
{
    return f->y1 - (y - f->lo_y) / (f->hi_y - f->lo_y) * (f->y1 - f->y0);
}

/* Pads a degenerate range and rounds it out to whole ticks. */
static void fit_range(double *lo, double *hi, double *step)
{
    if (!(*hi > *lo)) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d;
        *hi += d;
    }
    *step = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / *step) * *step;
    *hi = ceil(*hi / *step) * *step;
}

static void axes(flow_buf *b, frame *f, double sx, double sy, const char *xlabel, const char *ylabel)
{
    buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444444\"/>\n", f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    char t[64];
    for (double v = f->lo_y; v <= f->hi_y + sy * 1e-6; v += sy) {
        double y = py(f, v);
        buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n",
                   f->x0, y, f->x1, y);
        fmt_tick(t, sizeof t, v, sy);
        text(b, f->x0 - 4, y + 4, "end", 10, NULL, t);
    }
    for (double v = f->lo_x; v <= f->hi_x + sx * 1e-6; v += sx) {
        double x = f->x0 + (v - f->lo_x) / (f->hi_x - f->lo_x) * (f->x1 - f->x0);
        buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n",
                   x, f->y0, x, f->y1);
        if (f->logx) {
            double real = pow(10, v);
            if (real >= 1e9) snprintf(t, sizeof t, "%.0fG", real / 1e9);
            else if (real >= 1e6) snprintf(t, sizeof t, "%.0fM", real / 1e6);
            else if (real >= 1e3) snprintf(t, sizeof t, "%.0fk", real / 1e3);
            else snprintf(t, sizeof t, "%.0f", real);
        } else {
            fmt_tick(t, sizeof t, v, sx);
        }
        text(b, x, f->y1 + 14, "middle", 10, NULL, t);
    }
    text(b, (f->x0 + f->x1) / 2, f->y1 + 30, "middle", 11, NULL, xlabel);
    char rot[96];
    snprintf(rot, sizeof rot, "transform=\"rotate(-90 %.1f %.1f)\"", 14.0, (f->y0 + f->y1) / 2);
    text(b, 14, (f->y0 + f->y1) / 2, "middle", 11, rot, ylabel);
}

static void legend(flow_buf *b, const frame *f, char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        double y = f->y0 + 8 + 14 * i;
        buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>\n",
                   f->x1 + 8, y - 8, PALETTE[i % NPALETTE]);
        text(b, f->x1 + 22, y + 1, "start", 10, NULL, names[i]);
    }
}

void svg_line_chart(flow_buf *b, int width, int height, const char *title, const char *xlabel,
                    const char *ylabel, const svg_series *s, int ns)
{
    frame f = { 56, 30, width - 150, height - 42, 0, 0, 0, 0, 0 };
    int any = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            if (!any) { f.lo_x = f.hi_x = x; f.lo_y = f.hi_y = y; any = 1; }
            if (x < f.lo_x) f.lo_x = x;
            if (x > f.hi_x) f.hi_x = x;
            if (y < f.lo_y) f.lo_y = y;
            if (y > f.hi_y) f.hi_y = y;
        }
    double sx, sy;
    fit_range(&f.lo_x, &f.hi_x, &sx);
    fit_range(&f.lo_y, &f.hi_y, &sy);
    open_svg(b, width, height, title);
    axes(b, &f, sx, sy, xlabel, ylabel);
    char **names = xcalloc((size_t)(ns ? ns : 1), sizeof *names);
    for (int k = 0; k < ns; k++) {
        names[k] = (char *)s[k].name;
        buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                   PALETTE[k % NPALETTE]);
        int first = 1;
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            buf_printf(b, "%s%.1f,%.1f", first ? "" : " ", px(&f, s[k].x[i]), py(&f, s[k].y[i]));
            first = 0;
        }
        buf_adds(b, "\"/>\n");
        if (s[k].n == 1)        /* a single point is no line: mark it */
            buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                       px(&f, s[k].x[0]), py(&f, s[k].y[0]), PALETTE[k % NPALETTE]);
    }
    legend(b, &f, names, ns);
    free(names);
    buf_adds(b, "</svg>\n");
}

void svg_pareto(flow_buf *b, int width, int height, const char *title, const char *xlabel,
                const char *ylabel, const svg_point *p, int np)
{
    frame f = { 56, 30, width - 150, height - 42, 0, 0, 0, 0, 1 };
    int any = 0;
    for (int i = 0; i < np; i++) {
        if (!(p[i].x > 0) || !isfinite(p[i].x) || !isfinite(p[i].y)) continue;
        double lx = log10(p[i].x);
        if (!any) { f.lo_x = f.hi_x = lx; f.lo_y = f.hi_y = p[i].y; any = 1; }
        if (lx < f.lo_x) f.lo_x = lx;
        if (lx > f.hi_x) f.hi_x = lx;
        if (p[i].y < f.lo_y) f.lo_y = p[i].y;
        if (p[i].y > f.hi_y) f.hi_y = p[i].y;
    }
    /* x: whole decades; y: nice ticks */
    f.lo_x = floor(f.lo_x);
    f.hi_x = ceil(f.hi_x);
    if (f.hi_x <= f.lo_x) f.hi_x = f.lo_x + 1;
    double sy;
    f.hi_y += 0.08 * (f.hi_y - f.lo_y);        /* room for the top point's label */
    fit_range(&f.lo_y, &f.hi_y, &sy);
    open_svg(b, width, height, title);
    axes(b, &f, 1, sy, xlabel, ylabel);
    /* frontier: sort the valid points by x (then y descending), keep each
     * one whose y beats every point left of it */
    int *ord = xmalloc((size_t)(np ? np : 1) * sizeof *ord), n = 0;
    for (int i = 0; i < np; i++)
        if (p[i].x > 0 && isfinite(p[i].x) && isfinite(p[i].y)) ord[n++] = i;
    for (int i = 1; i < n; i++)         /* insertion sort: a handful of points */
        for (int j = i; j > 0; j--) {
            const svg_point *a = &p[ord[j - 1]], *c = &p[ord[j]];
            if (a->x < c->x || (a->x == c->x && a->y >= c->y)) break;
            int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
        }
    buf_adds(b, "<polyline fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"1.5\" "
                "stroke-dasharray=\"4 3\" points=\"");
    double best = -INFINITY, lasty = 0;
    int first = 1;
    for (int i = 0; i < n; i++) {
        const svg_point *q = &p[ord[i]];
        if (!(q->y > best)) continue;
        if (!first) buf_printf(b, " %.1f,%.1f", px(&f, q->x), py(&f, lasty));   /* step */
        buf_printf(b, "%s%.1f,%.1f", first ? "" : " ", px(&f, q->x), py(&f, q->y));
        best = lasty = q->y;
        first = 0;
    }
    buf_adds(b, "\"/>\n");
    for (int i = 0; i < n; i++) {
        const svg_point *q = &p[ord[i]];
        const char *col = q->mark == 1 ? "#d62728" : q->mark == 2 ? "#1f77b4" : "#555555";
        double x = px(&f, q->x), y = py(&f, q->y);
        buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"/>\n", x, y,
                   q->mark ? 5 : 4, col);
        text(b, x + 7, y - 6, "start", 10, NULL, q->label);
    }
    free(ord);
    char *keys[] = { "teacher", "final", "Pareto frontier" };
    frame lf = f;
    buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#d62728\"/>\n", f.x1 + 13, f.y0 + 4);
    buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#1f77b4\"/>\n", f.x1 + 13, f.y0 + 18);
    buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#2ca02c\" "
               "stroke-dasharray=\"4 3\"/>\n", f.x1 + 6, f.y0 + 32, f.x1 + 20, f.y0 + 32);
    for (int i = 0; i < 3; i++) text(b, lf.x1 + 24, f.y0 + 8 + 14 * i, "start", 10, NULL, keys[i]);
    buf_adds(b, "</svg>\n");
}

void svg_bars(flow_buf *b, int width, const char *title, char *const *categories, int ncat,
              char *const *series, int nseries, const double *values, double vmax)
{
    const double bar = 9, gap = 8, left = 170;
    double group = bar * nseries + gap;
    int height = (int)(40 + group * ncat + 36);
    frame f = { left, 30, width - 150, height - 36, 0, vmax > 0 ? vmax : 1, 0, 1, 0 };
    open_svg(b, width, height, title);
    double sx = nice_step(f.hi_x, 5);
    char t[64];
    for (double v = 0; v <= f.hi_x + sx * 1e-6; v += sx) {
        double x = px(&f, v);
        buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n",
                   x, f.y0, x, f.y1);
        fmt_tick(t, sizeof t, v, sx);
        text(b, x, f.y1 + 14, "middle", 10, NULL, t);
    }
    for (int k = 0; k < ncat; k++) {
        double gy = f.y0 + gap / 2 + group * k;
        text(b, left - 6, gy + bar * nseries / 2 + 4, "end", 11, NULL, categories[k]);
        for (int s = 0; s < nseries; s++) {
            double v = values[(size_t)s * ncat + k];
            if (!isfinite(v)) continue;
            if (v < 0) v = 0;
            buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                       "<title>", f.x0, gy + bar * s, px(&f, v) - f.x0, bar - 1, PALETTE[s % NPALETTE]);
            svg_escape(b, series[s]);
            buf_printf(b, ": %.4f</title></rect>\n", v);
        }
    }
    buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>\n",
               f.x0, f.y0, f.x0, f.y1);
    legend(b, &f, series, nseries);
    buf_adds(b, "</svg>\n");
}

void svg_heatmap(flow_buf *b, const char *title, char *const *labels, int n, const int64_t *counts)
{
    const double cell = n > 12 ? 28 : 40, left = 170, top = 40;
    int width = (int)(left + cell * n + 40), height = (int)(top + cell * n + 110);
    open_svg(b, width, height, title);
    char t[64];
    for (int g = 0; g < n; g++) {
        int64_t row = 0;
        for (int p = 0; p < n; p++) row += counts[(size_t)g * n + p];
        text(b, left - 6, top + cell * g + cell / 2 + 4, "end", 11, NULL, labels[g]);
        for (int p = 0; p < n; p++) {
            int64_t c = counts[(size_t)g * n + p];
            double share = row ? (double)c / (double)row : 0;
            /* white -> dark blue by the share of the gold row */
            int r = (int)lround(255 - share * (255 - 8)), gg = (int)lround(255 - share * (255 - 48)),
                bl = (int)lround(255 - share * (255 - 107));
            buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#%02x%02x%02x\" stroke=\"#cccccc\"/>\n",
                       left + cell * p, top + cell * g, cell, cell, r, gg, bl);
            snprintf(t, sizeof t, "%lld", (long long)c);
            text(b, left + cell * p + cell / 2, top + cell * g + cell / 2 + 4, "middle", 10,
                 share > 0.5 ? "fill=\"#ffffff\"" : NULL, t);
        }
    }
    for (int p = 0; p < n; p++) {
        double x = left + cell * p + cell / 2, y = top + cell * n + 6;
        char rot[96];
        snprintf(rot, sizeof rot, "transform=\"rotate(-60 %.1f %.1f)\"", x, y);
        text(b, x, y, "end", 11, rot, labels[p]);
    }
    text(b, left + cell * n / 2, height - 8, "middle", 11, NULL, "predicted (rows: gold)");
    buf_adds(b, "</svg>\n");
}
