/* curves.c — reads the training curves of a node bound to the report's
 * `training` input: loss_curve.tsv ("step \t loss \t ..." per optimizer
 * step, pretrain and finetune) and dev_curve.tsv ("step \t v1 \t v2 ..."
 * at each dev evaluation; finetune writes accuracy and macro-F1).  A first
 * line whose first field is not a number is a header naming the columns;
 * without one, dev columns are named accuracy, macro_f1, then dev3, ... */
#include "report.h"

#include <stdlib.h>
#include <string.h>

/* Splits line [p, end) at tabs into at most max fields (NUL-terminated in
 * place); returns the count. */
static int split_tabs(char *p, char *end, char **f, int max)
{
    int n = 0;
    while (p <= end && n < max) {
        char *t = memchr(p, '\t', (size_t)(end - p));
        f[n++] = p;
        if (!t) { *end = 0; break; }
        *t = 0;
        p = t + 1;
    }
    return n;
}

static int parse_num(const char *s, double *v)
{
    char *e;
    *v = strtod(s, &e);
    return e != s && *e == 0;
}

#define MAXCOLS 16

/* Parses a TSV of numbers: rows[ncols][n], ncols = columns after the first
 * (step); names from a header line or NULL. */
static int read_tsv(flow_ctx *c, int idx, const char *part, const char *node, int *nrows,
                    double **step, double ***cols, int *ncols, char ***names)
{
    char *d;
    size_t len;
    *cols = NULL;
    *names = NULL;
    *ncols = *nrows = 0;
    *step = NULL;
    int rc = flow_in_read(c, "training", idx, part, &d, &len);
    if (rc) return flow_ctx_fail(c, rc, "input 'training' (%s): cannot read %s", node, part);
    int cap = 256, n = 0, width = -1;
    *step = xmalloc((size_t)cap * sizeof **step);
    double *vals = NULL;        /* row-major [n][width] until the end */
    int line = 0;
    char *p = d, *end = d + len;
    rc = 0;
    while (p < end && !rc) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line++;
        if (le > p && le[-1] == '\r') le--;
        if (le == p) { p = nl ? nl + 1 : end; continue; }
        char *f[MAXCOLS + 1] = { 0 };
        int nf = split_tabs(p, le, f, MAXCOLS + 1);
        double v;
        if (nf < 1 || !f[0]) { p = nl ? nl + 1 : end; continue; }
        if (line == 1 && !parse_num(f[0], &v)) {        /* header */
            *names = xcalloc(MAXCOLS, sizeof **names);
            for (int k = 1; k < nf && k <= MAXCOLS; k++) (*names)[k - 1] = xstrdup(f[k]);
            p = nl ? nl + 1 : end;
            continue;
        }
        if (width < 0) {
            width = nf - 1;
            if (width < 1 || width > MAXCOLS) {
                rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'training' (%s): %s line %d has %d "
                                   "fields; expected step and 1..%d values", node, part, line, nf, MAXCOLS);
                break;
            }
        }
        if (nf - 1 != width) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'training' (%s): %s line %d has %d fields, "
                               "line 1 had %d", node, part, line, nf, width + 1);
            break;
        }
        if (n == cap) {
            cap *= 2;
            *step = xrealloc(*step, (size_t)cap * sizeof **step);
        }
        vals = xrealloc(vals, (size_t)(n + 1) * (size_t)width * sizeof *vals);
        for (int k = 0; k < nf && !rc; k++) {
            if (!parse_num(f[k], k ? &vals[(size_t)n * width + k - 1] : &(*step)[n]))
                rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'training' (%s): %s line %d field %d "
                                   "is not a number: '%.40s'", node, part, line, k + 1, f[k]);
        }
        n++;
        p = nl ? nl + 1 : end;
    }
    free(d);
    if (width < 0) width = 0;
    *ncols = width;
    *nrows = rc ? 0 : n;
    *cols = xcalloc((size_t)(width ? width : 1), sizeof **cols);
    for (int k = 0; k < width; k++) {
        (*cols)[k] = xmalloc((size_t)(n ? n : 1) * sizeof ***cols);
        for (int i = 0; i < n && !rc; i++) (*cols)[k][i] = vals[(size_t)i * width + k];
    }
    free(vals);
    if (rc) { free(*step); *step = NULL; }
    return rc;
}

static void free_cols(double **cols, int ncols, char **names)
{
    for (int k = 0; k < ncols; k++) free(cols[k]);
    free(cols);
    if (names)
        for (int k = 0; k < MAXCOLS; k++) free(names[k]);
    free(names);
}

int rp_curve_read(flow_ctx *c, int idx, rp_curve *out)
{
    memset(out, 0, sizeof *out);
    /* the reference as written (in the key: report's flow_key_input_refs),
     * not the producer's name from its metadata */
    flow_in_ref(c, "training", idx, out->node, sizeof out->node);
    int has_loss = flow_in_has(c, "training", idx, "loss_curve.tsv");
    int has_dev = flow_in_has(c, "training", idx, "dev_curve.tsv");
    if (!has_loss && !has_dev)
        return flow_ctx_fail(c, FLOW_E_INPUT, "input 'training' (%s) has neither loss_curve.tsv "
                             "nor dev_curve.tsv: bind training nodes (pretrain, finetune, ...)",
                             out->node);
    int rc = 0;
    if (has_loss) {
        double **cols;
        char **names;
        int ncols;
        rc = read_tsv(c, idx, "loss_curve.tsv", out->node, &out->nloss, &out->step, &cols, &ncols, &names);
        if (!rc) {
            out->loss = cols[0];
            cols[0] = NULL;
        }
        free_cols(cols, ncols, names);
    }
    if (!rc && has_dev) {
        double **cols;
        char **names;
        int ncols;
        rc = read_tsv(c, idx, "dev_curve.tsv", out->node, &out->ndev, &out->dev_step, &cols,
                      &ncols, &names);
        if (!rc) {
            out->ndevcols = ncols;
            out->dev = xmalloc((size_t)(out->ndevcols ? out->ndevcols : 1) * (size_t)(out->ndev ? out->ndev : 1) * sizeof *out->dev);
            out->devcol = xcalloc((size_t)(out->ndevcols ? out->ndevcols : 1), sizeof *out->devcol);
            static const char *const defaults[] = { "accuracy", "macro_f1" };
            for (int k = 0; k < out->ndevcols; k++) {
                memcpy(out->dev + (size_t)k * out->ndev, cols[k], (size_t)out->ndev * sizeof *out->dev);
                char nm[32];
                if (k < 2) snprintf(nm, sizeof nm, "%s", defaults[k]);
                else snprintf(nm, sizeof nm, "dev%d", k + 1);
                out->devcol[k] = xstrdup(names && names[k] ? names[k] : nm);
            }
        }
        free_cols(cols, ncols, names);
    }
    return rc;
}

void rp_curve_release(rp_curve *cv)
{
    free(cv->step);
    free(cv->loss);
    free(cv->dev_step);
    free(cv->dev);
    for (int k = 0; k < cv->ndevcols; k++) free(cv->devcol[k]);
    free(cv->devcol);
    memset(cv, 0, sizeof *cv);
}
