/* report_out.c — the text forms of a report (report.h): report.md and
 * report.json, which hold only figures that are functions of the node key,
 * timings.json (volatile), and the plain-text table the build prints at
 * its end (with the timings, labelled with host and date). */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rp_bytes(uint64_t n, char *out, size_t cap)
{
    if (n >= 1000000000ull) snprintf(out, cap, "%.2f GB", n / 1e9);
    else if (n >= 1000000ull) snprintf(out, cap, "%.2f MB", n / 1e6);
    else if (n >= 1000ull) snprintf(out, cap, "%.1f kB", n / 1e3);
    else snprintf(out, cap, "%llu B", (unsigned long long)n);
}

static void num(char *out, size_t cap, const char *fmt, double v)
{
    if (isfinite(v)) snprintf(out, cap, fmt, v);
    else snprintf(out, cap, "-");
}

static const char *status_name(rp_gate_status s)
{
    return s == GATE_PASS ? "pass" : s == GATE_FAIL ? "FAIL" : "skipped";
}

/* The cells of one row; timings only when with_timings. */
#define NCOLS 14
#define CELL 192
static const char *const HEAD[NCOLS] = {
    "model", "kind", "params", "bytes", "bits/w", "compression", "accuracy", "Δacc",
    "macro-F1", "ΔF1", "KL", "top-1 agree", "ms (b1)", "units/s (b32)",
};

static void cells(const rp_report *r, int i, char c[NCOLS][CELL])
{
    const rp_variant *v = &r->v[i];
    snprintf(c[0], CELL, "%s%s%s%s", v->name, v->is_teacher ? " (teacher)" : "",
             v->is_final ? " (final)" : "", i == r->best ? " (best)" : "");
    snprintf(c[1], CELL, "%s", v->kind);
    snprintf(c[2], CELL, "%llu", (unsigned long long)v->params);
    rp_bytes(v->bytes, c[3], CELL);
    num(c[4], CELL, "%.2f", v->bits_per_weight);
    num(c[5], CELL, "%.2fx", v->compression);
    num(c[6], CELL, "%.4f", v->m.accuracy);
    num(c[7], CELL, "%+.4f", v->acc_delta);
    num(c[8], CELL, "%.4f", v->m.macro_f1);
    num(c[9], CELL, "%+.4f", v->f1_delta);
    num(c[10], CELL, "%.4f", v->kl);
    num(c[11], CELL, "%.4f", v->agreement);
    num(c[12], CELL, "%.3g", v->latency_ms_b1);
    num(c[13], CELL, "%.0f", v->throughput_b32);
}

/* Display width: UTF-8 code points, East Asian wide ones count 2. */
static int width(const char *s)
{
    int w = 0;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k < 0) { k = 1; cp = '?'; }
        w += cp >= 0x1100 && ((cp >= 0x2E80 && cp <= 0xA4CF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
                              (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                              cp <= 0x115F || (cp >= 0x20000 && cp <= 0x3FFFD)) ? 2 : 1;
        i += (size_t)k;
    }
    return w;
}

static void pad(flow_buf *b, const char *s, int w, int right)
{
    int n = width(s);
    if (right) for (int i = n; i < w; i++) buf_addc(b, ' ');
    buf_adds(b, s);
    if (!right) for (int i = n; i < w; i++) buf_addc(b, ' ');
}

static void gates_text(const rp_report *r, flow_buf *b, const char *bullet)
{
    for (int g = 0; g < RP_NGATES; g++) {
        const rp_gate *x = &r->gates[g];
        buf_printf(b, "%s%s: %s — %s\n", bullet, x->name, status_name(x->status), x->detail);
    }
}

void rp_write_table(const rp_report *r, flow_buf *b)
{
    int ncols = NCOLS, w[NCOLS];
    char (*c)[NCOLS][CELL] = xmalloc((size_t)(r->nv ? r->nv : 1) * sizeof *c);
    for (int k = 0; k < ncols; k++) w[k] = width(HEAD[k]);
    for (int i = 0; i < r->nv; i++) {
        cells(r, i, c[i]);
        for (int k = 0; k < ncols; k++) if (width(c[i][k]) > w[k]) w[k] = width(c[i][k]);
    }
    buf_printf(b, "report on %zu test units, %d classes (timings: %s, %s, %d thread%s)\n",
               r->units, r->nclasses, r->host, r->date, r->threads, r->threads == 1 ? "" : "s");
    for (int k = 0; k < ncols; k++) { pad(b, HEAD[k], w[k], k > 1); buf_adds(b, k + 1 < ncols ? "  " : "\n"); }
    for (int i = 0; i < r->nv; i++)
        for (int k = 0; k < ncols; k++) { pad(b, c[i][k], w[k], k > 1); buf_adds(b, k + 1 < ncols ? "  " : "\n"); }
    free(c);
    /* the mode and the outcome apart: "gates (fail)" read as a failure */
    buf_printf(b, "gates (gates = %s): %d of %d failed\n", r->warn ? "warn" : "fail", rp_gates_failed(r), RP_NGATES);
    gates_text(r, b, "  ");
}

void rp_write_md(const rp_report *r, flow_buf *b)
{
    const int ncols = NCOLS - 2;      /* no timings: this part is deterministic */
    buf_printf(b, "# Model report\n\n%zu labelled test units, %d classes.", r->units, r->nclasses);
    if (r->teacher >= 0) buf_printf(b, "  Teacher: `%s`.", r->v[r->teacher].name);
    buf_printf(b, "  Final: `%s`.  Best macro-F1: `%s`.\n\n", r->v[r->final].name, r->v[r->best].name);
    buf_adds(b, "|");
    for (int k = 0; k < ncols; k++) buf_printf(b, " %s |", HEAD[k]);
    buf_adds(b, "\n|");
    for (int k = 0; k < ncols; k++) buf_adds(b, k < 2 ? "---|" : "---:|");
    buf_addc(b, '\n');
    for (int i = 0; i < r->nv; i++) {
        char c[NCOLS][CELL];
        cells(r, i, c);
        buf_adds(b, "|");
        for (int k = 0; k < ncols; k++) {
            buf_addc(b, ' ');
            for (const char *p = c[k]; *p; p++) {      /* a | in a name would split the cell */
                if (*p == '|') buf_addc(b, '\\');
                buf_addc(b, *p);
            }
            buf_adds(b, " |");
        }
        buf_addc(b, '\n');
    }
    buf_adds(b, "\nCompression, Δ, KL (nats, KL(teacher ‖ model)) and agreement are against the "
                "teacher.  CPU latency and throughput are in report.html and timings.json "
                "(measured, not part of the key).\n\n");
    buf_printf(b, "## Gates (%s)\n\n", r->warn ? "gates = warn: reported, never failing" : "gates = fail");
    gates_text(r, b, "- ");
}

static void json_name(flow_buf *b, const char *k, const char *s)
{
    buf_printf(b, "\"%s\":", k);
    if (s) buf_json_str(b, s, strlen(s));
    else buf_adds(b, "null");
}

static void json_numk(flow_buf *b, const char *k, double v)
{
    buf_printf(b, ",\"%s\":", k);
    buf_json_num(b, v);
}

static void json_variant(flow_buf *b, const rp_report *r, const rp_variant *v)
{
    buf_addc(b, '{');
    json_name(b, "name", v->name);
    buf_addc(b, ',');
    json_name(b, "kind", v->kind);
    buf_printf(b, ",\"params\":%llu,\"bytes\":%llu", (unsigned long long)v->params,
               (unsigned long long)v->bytes);
    json_numk(b, "bits_per_weight", v->bits_per_weight);
    json_numk(b, "compression", v->compression);
    json_numk(b, "accuracy", v->m.accuracy);
    json_numk(b, "macro_f1", v->m.macro_f1);
    json_numk(b, "accuracy_delta", v->acc_delta);
    json_numk(b, "macro_f1_delta", v->f1_delta);
    json_numk(b, "kl", v->kl);
    json_numk(b, "agreement", v->agreement);
    buf_printf(b, ",\"n\":%lld,\"per_class\":[", (long long)v->m.n);
    for (int k = 0; k < r->nclasses; k++) {
        buf_adds(b, k ? ",{\"precision\":" : "{\"precision\":");
        buf_json_num(b, v->m.precision[k]);
        json_numk(b, "recall", v->m.recall[k]);
        json_numk(b, "f1", v->m.f1[k]);
        buf_printf(b, ",\"support\":%lld}", (long long)v->m.support[k]);
    }
    buf_adds(b, "],\"confusion\":[");
    for (int g = 0; g < r->nclasses; g++) {
        buf_adds(b, g ? ",[" : "[");
        for (int p = 0; p < r->nclasses; p++)
            buf_printf(b, p ? ",%lld" : "%lld", (long long)v->m.confusion[(size_t)g * r->nclasses + p]);
        buf_addc(b, ']');
    }
    buf_adds(b, "]}");
}

void rp_write_json(const rp_report *r, flow_buf *b)
{
    buf_printf(b, "{\"format\":\"%s\",\"version\":%d,\"test\":{\"units\":%zu,\"classes\":[",
               REPORT_FORMAT, REPORT_VERSION, r->units);
    for (int k = 0; k < r->nclasses; k++) {
        if (k) buf_addc(b, ',');
        buf_json_str(b, r->classes[k], strlen(r->classes[k]));
    }
    buf_adds(b, "]},");
    json_name(b, "teacher", r->teacher >= 0 ? r->v[r->teacher].name : NULL);
    buf_addc(b, ',');
    json_name(b, "final", r->v[r->final].name);
    buf_addc(b, ',');
    json_name(b, "best", r->v[r->best].name);
    buf_adds(b, ",\"variants\":[");
    for (int i = 0; i < r->nv; i++) {
        if (i) buf_addc(b, ',');
        json_variant(b, r, &r->v[i]);
    }
    buf_printf(b, "],\"gates\":{\"mode\":\"%s\",\"results\":[", r->warn ? "warn" : "fail");
    for (int g = 0; g < RP_NGATES; g++) {
        const rp_gate *x = &r->gates[g];
        buf_adds(b, g ? ",{" : "{");
        json_name(b, "name", x->name);
        buf_printf(b, ",\"status\":\"%s\"", x->status == GATE_PASS ? "pass" : x->status == GATE_FAIL ? "fail" : "skipped");
        json_numk(b, "value", x->value);
        json_numk(b, "min", x->lo);
        json_numk(b, "max", x->hi);
        buf_adds(b, ",");
        json_name(b, "detail", x->detail);
        buf_addc(b, '}');
    }
    buf_adds(b, "]},\"curves\":[");
    for (int i = 0; i < r->nc; i++) {
        const rp_curve *cv = &r->c[i];
        buf_adds(b, i ? ",{" : "{");
        json_name(b, "node", cv->node);
        buf_printf(b, ",\"loss_steps\":%d", cv->nloss);
        json_numk(b, "final_loss", cv->nloss ? cv->loss[cv->nloss - 1] : NAN);
        buf_printf(b, ",\"dev_evaluations\":%d}", cv->ndev);
    }
    buf_adds(b, "],\"volatile_parts\":[");
    static const char *const vol[REPORT_NVOLATILE] = REPORT_VOLATILE_PARTS;
    for (int k = 0; k < REPORT_NVOLATILE; k++) buf_printf(b, "%s\"%s\"", k ? "," : "", vol[k]);
    buf_adds(b, "]}\n");
}

void rp_write_timings(const rp_report *r, flow_buf *b)
{
    buf_adds(b, "{");
    json_name(b, "host", r->host);
    buf_addc(b, ',');
    json_name(b, "date", r->date);
    buf_printf(b, ",\"threads\":%d,\"models\":[", r->threads);
    for (int i = 0; i < r->nv; i++) {
        buf_adds(b, i ? ",{" : "{");
        json_name(b, "name", r->v[i].name);
        json_numk(b, "latency_ms_b1", r->v[i].latency_ms_b1);
        json_numk(b, "throughput_b32", r->v[i].throughput_b32);
        buf_addc(b, '}');
    }
    buf_adds(b, "]}\n");
}
