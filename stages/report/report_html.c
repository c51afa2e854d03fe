/* report_html.c — report.html: one self-contained page (inline CSS and
 * SVG from svg.c; no script, no font, no image, no link to anything) with
 * the table (timings labelled with host, date and threads), the gates,
 * and the plots: loss and dev curves of every training node, accuracy
 * against bytes with the Pareto frontier, per-class F1 bars, and the
 * confusion heat maps of the best and the final model. */
#include "report.h"
#include "svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 400          /* a loss curve is averaged down to this many points */

static void esc(flow_buf *b, const char *s) { svg_escape(b, s); }

static void cell(flow_buf *b, const char *fmt, double v)
{
    if (isfinite(v)) { buf_adds(b, "<td>"); buf_printf(b, fmt, v); buf_adds(b, "</td>"); }
    else buf_adds(b, "<td>-</td>");
}

static void table(const rp_report *r, flow_buf *b)
{
    buf_adds(b, "<table>\n<tr><th>model</th><th>kind</th><th>params</th><th>bytes</th>"
                "<th>bits/weight</th><th>compression</th><th>accuracy</th><th>&Delta;acc</th>"
                "<th>macro-F1</th><th>&Delta;F1</th><th>KL</th><th>top-1 agree</th>"
                "<th class=\"vol\">ms (batch 1)</th><th class=\"vol\">units/s (batch 32)</th></tr>\n");
    for (int i = 0; i < r->nv; i++) {
        const rp_variant *v = &r->v[i];
        char by[32];
        rp_bytes(v->bytes, by, sizeof by);
        buf_adds(b, "<tr><td class=\"name\">");
        esc(b, v->name);
        if (v->is_teacher) buf_adds(b, " <span class=\"tag t\">teacher</span>");
        if (v->is_final) buf_adds(b, " <span class=\"tag f\">final</span>");
        if (i == r->best) buf_adds(b, " <span class=\"tag b\">best</span>");
        buf_adds(b, "</td><td>");
        esc(b, v->kind);
        buf_printf(b, "</td><td>%llu</td><td>%s</td>", (unsigned long long)v->params, by);
        cell(b, "%.2f", v->bits_per_weight);
        cell(b, "%.2fx", v->compression);
        cell(b, "%.4f", v->m.accuracy);
        cell(b, "%+.4f", v->acc_delta);
        cell(b, "%.4f", v->m.macro_f1);
        cell(b, "%+.4f", v->f1_delta);
        cell(b, "%.4f", v->kl);
        cell(b, "%.4f", v->agreement);
        cell(b, "%.3g", v->latency_ms_b1);
        cell(b, "%.0f", v->throughput_b32);
        buf_adds(b, "</tr>\n");
    }
    buf_adds(b, "</table>\n");
    buf_adds(b, "<p class=\"note\">Compression, &Delta;, KL (nats, KL(teacher &#8214; model)) and "
                "top-1 agreement are against the teacher.  Timings (shaded columns) were measured ");
    buf_adds(b, "on host <b>");
    esc(b, r->host);
    buf_printf(b, "</b> at <b>%s</b> with %d thread%s; they are not a function of the node key "
               "and vary between runs.</p>\n", r->date, r->threads, r->threads == 1 ? "" : "s");
}

static void gates(const rp_report *r, flow_buf *b)
{
    buf_printf(b, "<h2>Gates <small>(gates = %s)</small></h2>\n<ul class=\"gates\">\n", r->warn ? "warn" : "fail");
    for (int g = 0; g < RP_NGATES; g++) {
        const rp_gate *x = &r->gates[g];
        const char *cls = x->status == GATE_PASS ? "pass" : x->status == GATE_FAIL ? "fail" : "skip";
        buf_printf(b, "<li class=\"%s\"><b>%s</b> %s: ", cls, x->name,
                   x->status == GATE_PASS ? "pass" : x->status == GATE_FAIL ? "FAIL" : "skipped");
        esc(b, x->detail);
        buf_adds(b, "</li>\n");
    }
    buf_adds(b, "</ul>\n");
}

/* Bucket means of (x, y) down to at most MAX_POINTS points. */
static int downsample(const double *x, const double *y, int n, double *ox, double *oy)
{
    if (n <= MAX_POINTS) {
        memcpy(ox, x, (size_t)n * sizeof *ox);
        memcpy(oy, y, (size_t)n * sizeof *oy);
        return n;
    }
    int per = (n + MAX_POINTS - 1) / MAX_POINTS, m = 0;
    for (int s = 0; s < n; s += per, m++) {
        int e = s + per < n ? s + per : n;
        double sx = 0, sy = 0;
        for (int i = s; i < e; i++) { sx += x[i]; sy += y[i]; }
        ox[m] = sx / (e - s);
        oy[m] = sy / (e - s);
    }
    return m;
}

static void curves(const rp_report *r, flow_buf *b)
{
    buf_adds(b, "<h2>Training curves</h2>\n");
    if (r->nc == 0) {
        buf_adds(b, "<p class=\"note\">No training node is bound to the report's `training` input.</p>\n");
        return;
    }
    for (int i = 0; i < r->nc; i++) {
        const rp_curve *cv = &r->c[i];
        char title[256];
        buf_adds(b, "<div class=\"plot\">\n");
        if (cv->nloss > 0) {
            double *x = xmalloc((size_t)cv->nloss * sizeof *x), *y = xmalloc((size_t)cv->nloss * sizeof *y);
            int m = downsample(cv->step, cv->loss, cv->nloss, x, y);
            svg_series s = { "train loss", m, x, y };
            snprintf(title, sizeof title, "%s: training loss (%d steps%s)", cv->node, cv->nloss,
                     m < cv->nloss ? ", averaged" : "");
            svg_line_chart(b, 620, 300, title, "step", "loss", &s, 1);
            free(x);
            free(y);
        }
        if (cv->ndev > 0 && cv->ndevcols > 0) {
            svg_series *s = xmalloc((size_t)cv->ndevcols * sizeof *s);
            for (int k = 0; k < cv->ndevcols; k++) {
                s[k].name = cv->devcol[k];
                s[k].n = cv->ndev;
                s[k].x = cv->dev_step;
                s[k].y = cv->dev + (size_t)k * cv->ndev;
            }
            snprintf(title, sizeof title, "%s: dev scores (%d evaluations)", cv->node, cv->ndev);
            svg_line_chart(b, 620, 300, title, "step", "dev", s, cv->ndevcols);
            free(s);
        }
        buf_adds(b, "</div>\n");
    }
}

static void pareto(const rp_report *r, flow_buf *b)
{
    svg_point *p = xmalloc((size_t)r->nv * sizeof *p);
    for (int i = 0; i < r->nv; i++) {
        p[i].label = r->v[i].name;
        p[i].x = (double)r->v[i].bytes;
        p[i].y = r->v[i].m.accuracy;
        p[i].mark = r->v[i].is_teacher ? 1 : r->v[i].is_final ? 2 : 0;
    }
    buf_adds(b, "<h2>Accuracy against size</h2>\n<div class=\"plot\">\n");
    svg_pareto(b, 720, 380, "test accuracy vs bytes (Pareto frontier dashed)", "bytes (log scale)",
               "accuracy", p, r->nv);
    buf_adds(b, "</div>\n");
    free(p);
}

static void f1_bars(const rp_report *r, flow_buf *b)
{
    double *v = xmalloc((size_t)r->nv * (size_t)r->nclasses * sizeof *v);
    char **names = xmalloc((size_t)r->nv * sizeof *names);
    for (int i = 0; i < r->nv; i++) {
        names[i] = (char *)r->v[i].name;
        for (int k = 0; k < r->nclasses; k++) v[(size_t)i * r->nclasses + k] = r->v[i].m.f1[k];
    }
    buf_adds(b, "<h2>Per-class F1</h2>\n<div class=\"plot\">\n");
    svg_bars(b, 760, "F1 per class on the test split", r->classes, r->nclasses, names, r->nv, v, 1.0);
    buf_adds(b, "</div>\n");
    free(v);
    free(names);
}

static void heatmaps(const rp_report *r, flow_buf *b)
{
    buf_adds(b, "<h2>Confusion matrices</h2>\n<div class=\"plot\">\n");
    int which[2] = { r->best, r->final }, n = r->best == r->final ? 1 : 2;
    for (int k = 0; k < n; k++) {
        const rp_variant *v = &r->v[which[k]];
        char title[256];
        snprintf(title, sizeof title, "%s (%s%s)", v->name,
                 n == 1 ? "best and final" : k == 0 ? "best macro-F1" : "final",
                 v->is_teacher ? ", teacher" : "");
        svg_heatmap(b, title, r->classes, r->nclasses, v->m.confusion);
    }
    buf_adds(b, "</div>\n");
}

static const char STYLE[] =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}"
    "table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "td.name,th:first-child,td:nth-child(2){text-align:left}"
    "th{background:#f0f0f0}th.vol,td:nth-child(13),td:nth-child(14){background:#fff8e0}"
    ".tag{font-size:10px;padding:1px 4px;border-radius:3px;color:#fff}"
    ".t{background:#d62728}.f{background:#1f77b4}.b{background:#2ca02c}"
    ".note{font-size:12px;color:#555}.gates li{margin:4px 0}"
    ".pass{color:#1a7f37}.fail{color:#c00}.skip{color:#777}"
    ".plot svg{margin:6px 12px 6px 0;border:1px solid #eee}";

void rp_write_html(const rp_report *r, flow_buf *b)
{
    buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<title>flow report</title>\n<style>");
    buf_adds(b, STYLE);
    buf_adds(b, "</style>\n</head>\n<body>\n<h1>Model report</h1>\n");
    buf_printf(b, "<p>%zu labelled test units, %d classes.", r->units, r->nclasses);
    if (r->teacher >= 0) { buf_adds(b, "  Teacher: <b>"); esc(b, r->v[r->teacher].name); buf_adds(b, "</b>."); }
    buf_adds(b, "  Final: <b>");
    esc(b, r->v[r->final].name);
    buf_adds(b, "</b>.  Best macro-F1: <b>");
    esc(b, r->v[r->best].name);
    buf_adds(b, "</b>.</p>\n");
    table(r, b);
    gates(r, b);
    curves(r, b);
    pareto(r, b);
    f1_bars(r, b);
    heatmaps(r, b);
    buf_adds(b, "</body>\n</html>\n");
}
