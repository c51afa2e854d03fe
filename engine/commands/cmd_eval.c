/* cmd_eval.c — `flow eval HASH DIR [--json]`: scores a classifier artifact
 * on a labelled folder tree DIR/<label>/<files>, cleaned and segmented into
 * units exactly as the clean stage does (text_clean_document with the
 * model's recorded clean.json; the library defaults when the model has
 * none).  Prints accuracy and macro-F1 over the units (JSON with --json:
 * {"accuracy","macro_f1","n"}).  Labels unknown to the model count as
 * errors. */
#include "cmd_model.h"
#include "stages/text/text.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of a folder (no dot files); caller frees. */
static int list_dir(const char *path, char ***out, int *n)
{
    DIR *d = opendir(path);
    if (!d) return -1;
    int cap = 0;
    *n = 0;
    *out = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (*n == cap) { cap = cap ? 2 * cap : 64; *out = xrealloc(*out, (size_t)cap * sizeof **out); }
        (*out)[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return 0;
}

/* Every unit of every file under DIR/<label>/, with its gold class: the
 * model's labels first, then folder labels it does not know. */
typedef struct eval_units {
    char **classes;
    int ncls;
    int *gold;
    size_t *toff;           /* unit k = texts.data + toff[k], NUL-terminated */
    flow_buf texts;
    size_t n, cap;
} eval_units;

static void eval_units_release(eval_units *U)
{
    buf_release(&U->texts);
    free(U->toff);
    free(U->gold);
    for (int k = 0; k < U->ncls; k++) free(U->classes[k]);
    free(U->classes);
}

/* Cleans one file into units of class g (a file that fails to clean is
 * skipped with a warning, as the clean stage would report it). */
static int add_file_units(eval_units *U, const text_opts *opts, const char *path, int g,
                          flow_err *err)
{
    char *doc;
    size_t dlen;
    if (file_read_all(path, &doc, &dlen, err)) return cli_fail(err);
    text_units u;
    text_units_init(&u);
    text_stats ts;
    memset(&ts, 0, sizeof ts);
    if (text_clean_document(opts, doc, dlen, &u, &ts, err) != 0) {
        fprintf(stderr, "flow: warning: eval: skipping '%s': %s\n", path, err->msg);
    } else {
        for (int k = 0; k < u.n; k++) {
            if (U->n == U->cap) {
                U->cap = U->cap ? 2 * U->cap : 1024;
                U->gold = xrealloc(U->gold, U->cap * sizeof *U->gold);
                U->toff = xrealloc(U->toff, (U->cap + 1) * sizeof *U->toff);
            }
            U->gold[U->n] = g;
            U->toff[U->n++] = U->texts.len;
            buf_add(&U->texts, u.text.data + u.off[k], u.off[k + 1] - u.off[k]);
            buf_addc(&U->texts, 0);
        }
    }
    text_units_release(&u);
    free(doc);
    return 0;
}

/* The units of every regular file in every label folder, in name order. */
static int collect_units(eval_units *U, const text_opts *opts, const char *dir, char **labels,
                         int nl, flow_err *err)
{
    int rc = 0;
    for (int li = 0; li < nl && !rc; li++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, labels[li]);
        struct stat st;
        if (stat(sub, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        int g = labels_find(U->classes, U->ncls, labels[li]);
        if (g < 0) { U->classes[U->ncls] = xstrdup(labels[li]); g = U->ncls++; }
        char **files;
        int nf;
        if (list_dir(sub, &files, &nf) != 0) { rc = cli_usage_error("eval: cannot read '%s'", sub); break; }
        for (int fi = 0; fi < nf && !rc; fi++) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", sub, files[fi]);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            rc = add_file_units(U, opts, path, g, err);
        }
        for (int fi = 0; fi < nf; fi++) free(files[fi]);
        free(files);
    }
    return rc;
}

/* One batched prediction over the units: pred[i] = the most probable of
 * the model's C labels (first on ties). */
static int predict_units(clf_model *m, const eval_units *U, int C, int *pred, flow_err *err)
{
    size_t n = U->n;
    const char **tv = xmalloc(n * sizeof *tv);
    size_t *lv = xmalloc(n * sizeof *lv);
    for (size_t i = 0; i < n; i++) {
        tv[i] = U->texts.data + U->toff[i];
        lv[i] = strlen(tv[i]);
    }
    float *p = xmalloc(n * (size_t)C * sizeof *p);
    int rc = 0;
    if ((rc = clf_predict(m, tv, lv, n, 0, p, err))) rc = cli_fail(err);
    for (size_t i = 0; !rc && i < n; i++) {
        int best = 0;
        for (int j = 1; j < C; j++) if (p[i * (size_t)C + j] > p[i * (size_t)C + best]) best = j;
        pred[i] = best;
    }
    free(p);
    free((void *)tv);
    free(lv);
    return rc;
}

static void print_metrics(const clf_metrics *mt, int json)
{
    if (json) {
        flow_buf b;
        buf_init(&b);
        buf_adds(&b, "{\"accuracy\":");
        buf_json_num(&b, mt->accuracy);
        buf_adds(&b, ",\"macro_f1\":");
        buf_json_num(&b, mt->macro_f1);
        buf_printf(&b, ",\"n\":%lld}", (long long)mt->n);
        printf("%s\n", b.data);
        buf_release(&b);
    } else {
        printf("accuracy %.4f  macro-F1 %.4f  n %lld\n", mt->accuracy, mt->macro_f1, (long long)mt->n);
    }
}

int cmd_eval(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "cache json", &a);
    if (rc) return rc;
    if (a.npos != 2) { cli_args_release(&a); return cli_usage_error("eval: usage: flow eval HASH DIR [--json]"); }
    cmd_model cm;
    if ((rc = cmd_model_open(&a, "eval", &cm))) { cli_args_release(&a); return rc; }
    clf_model *m = cm.model;
    const char *dir = a.pos[1];
    char **labels = NULL;
    int nl = 0;
    if (clf_nlabels(m) < 1) {
        rc = cli_usage_error("eval: artifact %s is a %s model, not a classifier", a.pos[0], clf_kind(m));
        goto out;
    }
    if (list_dir(dir, &labels, &nl) != 0) {
        rc = cli_usage_error("eval: cannot read the folder '%s': %s", dir, strerror(errno));
        goto out;
    }
    text_opts defaults;
    text_opts_default(&defaults);
    const text_opts *opts = m->has_clean ? m->clean_opts : &defaults;
    int C = clf_nlabels(m);
    eval_units U = { .ncls = C };
    U.classes = xmalloc((size_t)(C + nl + 1) * sizeof *U.classes);
    for (int k = 0; k < C; k++) U.classes[k] = xstrdup(clf_label(m, k));
    buf_init(&U.texts);
    flow_err err = { 0 };
    rc = collect_units(&U, opts, dir, labels, nl, &err);
    int *pred = NULL;
    if (!rc && U.n > 0) {
        pred = xmalloc(U.n * sizeof *pred);
        rc = predict_units(m, &U, C, pred, &err);
    }
    if (!rc && U.n == 0) rc = cli_usage_error("eval: no units found under '%s' (expected DIR/<label>/<files>)", dir);
    if (!rc) {
        clf_metrics mt;
        metrics_compute(&mt, U.gold, pred, U.n, U.ncls);
        print_metrics(&mt, a.json);
        metrics_release(&mt);
    }
    free(pred);
    eval_units_release(&U);
out:
    for (int i = 0; i < nl; i++) free(labels[i]);
    free(labels);
    cmd_model_close(&cm);
    cli_args_release(&a);
    return rc;
}
