/* cmd_classify.c — `flow classify HASH [FILE...|-] [--all]`: applies a
 * classifier artifact (any kind) to new text with the model's own
 * cleaning and tokenizer.  Without files (or with "-") every line of
 * standard input is one text; each FILE is one text.  Prints per text the
 * predicted label and its probability (tab-separated, the file name first
 * for files); --all adds every label's probability as a JSON object. */
#include "cmd_model.h"
#include "stages/text/text.h"

#include <stdlib.h>
#include <string.h>

/* A file's bytes, or all of standard input for "-". */
static int read_text(const char *path, char **data, size_t *len)
{
    flow_err err = { 0 };
    if (strcmp(path, "-") != 0) return file_read_all(path, data, len, &err) ? cli_fail(&err) : 0;
    flow_buf b;
    buf_init(&b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) buf_add(&b, buf, n);
    buf_addc(&b, 0);
    *len = b.len - 1;
    *data = buf_detach(&b, NULL);
    return 0;
}

static void print_one(const clf_model *m, const char *name, const float *p, int all)
{
    int C = clf_nlabels(m), best = 0;
    for (int k = 1; k < C; k++) if (p[k] > p[best]) best = k;
    if (name) printf("%s\t", name);
    printf("%s\t%.6f", clf_label(m, best), (double)p[best]);
    if (all) {
        flow_buf b;
        buf_init(&b);
        buf_addc(&b, '{');
        for (int k = 0; k < C; k++) {
            if (k) buf_addc(&b, ',');
            buf_json_str(&b, clf_label(m, k), strlen(clf_label(m, k)));
            buf_printf(&b, ":%.9g", (double)p[k]);
        }
        buf_addc(&b, '}');
        printf("\t%s", b.data);
        buf_release(&b);
    }
    putchar('\n');
}

int cmd_classify(int argc, char **argv)
{
    const char *unused;
    int all = cmd_take_flag(&argc, argv, "all", 0, &unused) == 1;
    cli_args a;
    int rc = cli_parse(argc, argv, "cache", &a);
    if (rc) return rc;
    cmd_model cm;
    if ((rc = cmd_model_open(&a, "classify", &cm))) { cli_args_release(&a); return rc; }
    clf_model *m = cm.model;
    if (clf_nlabels(m) < 1) {
        rc = cli_usage_error("classify: artifact %s is a %s model, not a classifier", a.pos[0], clf_kind(m));
        goto out;
    }
    flow_err err = { 0 };
    float *p = xmalloc((size_t)clf_nlabels(m) * sizeof *p);
    int stdin_lines = a.npos == 1 || (a.npos == 2 && strcmp(a.pos[1], "-") == 0);
    if (stdin_lines) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            const char *t = line;
            size_t l = (size_t)n;
            long bad = utf8_first_invalid((const unsigned char *)t, l);
            if (bad >= 0) {
                rc = cli_usage_error("classify: standard input line %ld: invalid UTF-8 at byte %ld; "
                                     "give UTF-8 text", lineno, bad);
                break;
            }
            if ((rc = clf_predict(m, &t, &l, 1, 1, p, &err))) { rc = cli_fail(&err); break; }
            print_one(m, NULL, p, all);
        }
        free(line);
    } else {
        for (int i = 1; i < a.npos && !rc; i++) {
            char *data;
            size_t l;
            if ((rc = read_text(a.pos[i], &data, &l))) break;
            const char *t = data;
            long bad = utf8_first_invalid((const unsigned char *)t, l);
            if (bad >= 0)
                rc = cli_usage_error("classify: '%s': invalid UTF-8 at byte %ld; give UTF-8 text",
                                     a.pos[i], bad);
            else if ((rc = clf_predict(m, &t, &l, 1, 1, p, &err))) rc = cli_fail(&err);
            else print_one(m, a.pos[i], p, all);
            free(data);
        }
    }
    free(p);
out:
    cmd_model_close(&cm);
    cli_args_release(&a);
    return rc;
}
