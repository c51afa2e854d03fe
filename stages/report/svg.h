/* svg.h — the project's small SVG writer: the four chart kinds the report
 * page draws (line charts, a scatter with its Pareto frontier, grouped
 * bars, a heat map), written as plain SVG 1.1 text into a flow_buf.
 *
 * Output is a pure function of the arguments: coordinates are printed
 * with a fixed number of decimals ("%.1f"), so the same data gives the
 * same bytes on every machine.  Text is XML-escaped.  No scripts, no
 * external references: the result can be inlined in a self-contained
 * HTML page.  Non-finite values are left out of a chart (a series point,
 * a bar) rather than drawn at a made-up place.
 */
#ifndef FLOW_SVG_H
#define FLOW_SVG_H

#include "engine/base/base.h"

/* One line of a line chart: n points (x[i], y[i]). */
typedef struct svg_series {
    const char *name;
    int n;
    const double *x, *y;
} svg_series;

/* Line chart, width x height pixels, linear axes fitted to the data. */
void svg_line_chart(flow_buf *b, int width, int height, const char *title, const char *xlabel,
                    const char *ylabel, const svg_series *s, int ns);

/* One point of a scatter. */
typedef struct svg_point {
    const char *label;
    double x, y;
    int mark;               /* 0 plain, 1 highlighted (teacher), 2 highlighted (final) */
} svg_point;

/* Scatter with a log10 x axis (x > 0) and the Pareto frontier (smallest
 * x for the largest y: no other point has x <= and y >= with one strict)
 * drawn as a step line through its points. */
void svg_pareto(flow_buf *b, int width, int height, const char *title, const char *xlabel,
                const char *ylabel, const svg_point *p, int np);

/* Grouped horizontal bars: one group per category (ncat rows), one bar per
 * series in each; values[s * ncat + k] in [0, vmax]. */
void svg_bars(flow_buf *b, int width, const char *title, char *const *categories, int ncat,
              char *const *series, int nseries, const double *values, double vmax);

/* Heat map of an n x n count matrix (rows gold, columns predicted), each
 * cell shaded by its share of the row and labelled with its count. */
void svg_heatmap(flow_buf *b, const char *title, char *const *labels, int n,
                 const int64_t *counts);

/* Appends s with &, <, >, " escaped. */
void svg_escape(flow_buf *b, const char *s);

#endif
