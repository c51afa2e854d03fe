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
    /* class set: the model's labels, then folder labels it does not know */
    int C = clf_nlabels(m), ncls = C;
    char **classes = xmalloc((size_t)(C + nl + 1) * sizeof *classes);
    for (int k = 0; k < C; k++) classes[k] = xstrdup(clf_label(m, k));
    /* every unit of every file first, then one batched prediction */
    int *gold = NULL, *pred = NULL;
    size_t n = 0, cap = 0;
    flow_buf texts;             /* units, NUL-separated */
    buf_init(&texts);
    size_t *toff = NULL;
    flow_err err = { 0 };
    for (int li = 0; li < nl && !rc; li++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, labels[li]);
        struct stat st;
        if (stat(sub, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        int g = labels_find(classes, ncls, labels[li]);
        if (g < 0) { classes[ncls] = xstrdup(labels[li]); g = ncls++; }
        char **files;
        int nf;
        if (list_dir(sub, &files, &nf) != 0) { rc = cli_usage_error("eval: cannot read '%s'", sub); break; }
        for (int fi = 0; fi < nf && !rc; fi++) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", sub, files[fi]);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            char *doc;
            size_t dlen;
            if (file_read_all(path, &doc, &dlen, &err)) { rc = cli_fail(&err); break; }
            text_units u;
            text_units_init(&u);
            text_stats ts;
            memset(&ts, 0, sizeof ts);
            if (text_clean_document(opts, doc, dlen, &u, &ts, &err) != 0) {
                fprintf(stderr, "flow: warning: eval: skipping '%s': %s\n", path, err.msg);
            } else {
                for (int k = 0; k < u.n; k++) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 1024;
                        gold = xrealloc(gold, cap * sizeof *gold);
                        toff = xrealloc(toff, (cap + 1) * sizeof *toff);
                    }
                    gold[n] = g;
                    toff[n++] = texts.len;
                    buf_add(&texts, u.text.data + u.off[k], u.off[k + 1] - u.off[k]);
                    buf_addc(&texts, 0);
                }
            }
            text_units_release(&u);
            free(doc);
        }
        for (int fi = 0; fi < nf; fi++) free(files[fi]);
        free(files);
    }
    if (!rc && n > 0) {
        const char **tv = xmalloc(n * sizeof *tv);
        size_t *lv = xmalloc(n * sizeof *lv);
        for (size_t i = 0; i < n; i++) {
            tv[i] = texts.data + toff[i];
            lv[i] = strlen(tv[i]);
        }
        float *p = xmalloc(n * (size_t)C * sizeof *p);
        pred = xmalloc(n * sizeof *pred);
        if ((rc = clf_predict(m, tv, lv, n, 0, p, &err))) rc = cli_fail(&err);
        for (size_t i = 0; !rc && i < n; i++) {
            int best = 0;
            for (int j = 1; j < C; j++) if (p[i * (size_t)C + j] > p[i * (size_t)C + best]) best = j;
            pred[i] = best;
        }
        free(p);
        free((void *)tv);
        free(lv);
    }
    if (!rc && n == 0) rc = cli_usage_error("eval: no units found under '%s' (expected DIR/<label>/<files>)", dir);
    if (!rc) {
        clf_metrics mt;
        metrics_compute(&mt, gold, pred, n, ncls);
        if (a.json) {
            flow_buf b;
            buf_init(&b);
            buf_adds(&b, "{\"accuracy\":");
            buf_json_num(&b, mt.accuracy);
            buf_adds(&b, ",\"macro_f1\":");
            buf_json_num(&b, mt.macro_f1);
            buf_printf(&b, ",\"n\":%lld}", (long long)mt.n);
            printf("%s\n", b.data);
            buf_release(&b);
        } else {
            printf("accuracy %.4f  macro-F1 %.4f  n %lld\n", mt.accuracy, mt.macro_f1, (long long)mt.n);
        }
        metrics_release(&mt);
    }
    buf_release(&texts);
    free(toff);
    free(gold);
    free(pred);
    for (int k = 0; k < ncls; k++) free(classes[k]);
    free(classes);
out:
    for (int i = 0; i < nl; i++) free(labels[i]);
    free(labels);
    cmd_model_close(&cm);
    cli_args_release(&a);
    return rc;
}
