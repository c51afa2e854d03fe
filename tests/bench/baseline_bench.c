/* baseline_bench.c — tunes the baseline's TF-IDF + linear classifier on
 * the legal corpus without the engine: cleans the laws/<dept>/ files with the
 * text library, splits by law (date and Civil Code book stripped; group
 * hash with a seed, 80/10/10), trains with the given settings and prints
 * dev/test accuracy and macro-F1 per epoch and the time taken.
 * usage: baseline_bench LAWS_DIR [loss=log|svm] [l2] [epochs] [hash_bits] [nmax] [seed] [balanced] */
#include "stages/model/classifier.h"
#include "stages/text/text.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef struct set { size_t n, cap; char **t; size_t *l; int *y; } set;
static void add(set *s, const char *t, size_t l, int y)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->t = realloc(s->t, s->cap * sizeof *s->t);
        s->l = realloc(s->l, s->cap * sizeof *s->l);
        s->y = realloc(s->y, s->cap * sizeof *s->y);
    }
    s->t[s->n] = malloc(l + 1);
    memcpy(s->t[s->n], t, l);
    s->t[s->n][l] = 0;
    s->l[s->n] = l;
    s->y[s->n++] = y;
}

static char *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long L = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)L + 1);
    *n = fread(b, 1, (size_t)L, f);
    fclose(f);
    return b;
}

typedef struct ev { const sp_mat *x; const int *y; int C; } ev;
static int on_epoch(void *arg, int epoch, const linear_model *m)
{
    ev *e = arg;
    int *p = malloc(e[0].x->nrows * sizeof *p), *q = malloc(e[1].x->nrows * sizeof *q);
    linear_predict(m, e[0].x, p);
    linear_predict(m, e[1].x, q);
    clf_metrics a, b;
    metrics_compute(&a, e[0].y, p, e[0].x->nrows, e[0].C);
    metrics_compute(&b, e[1].y, q, e[1].x->nrows, e[1].C);
    printf("  epoch %2d  dev acc %.4f f1 %.4f   test acc %.4f f1 %.4f\n", epoch, a.accuracy, a.macro_f1, b.accuracy, b.macro_f1);
    metrics_release(&a); metrics_release(&b);
    free(p); free(q);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "../shared/data/legal/laws";
    int loss = argc > 2 && strcmp(argv[2], "svm") == 0 ? LOSS_HINGE : LOSS_LOG;
    double l2 = argc > 3 ? atof(argv[3]) : 1e-5;
    int epochs = argc > 4 ? atoi(argv[4]) : 10;
    int hb = argc > 5 ? atoi(argv[5]) : 20;
    int nmax = argc > 6 ? atoi(argv[6]) : 3;
    uint64_t seed = argc > 7 ? strtoull(argv[7], 0, 10) : 1;
    int balanced = argc > 8 ? atoi(argv[8]) : 0;
    text_opts o;
    text_opts_default(&o);
    set S[3] = { 0 };
    const char *labels[16];
    int C = 0;
    double t0 = now();
    DIR *d = opendir(dir);
    struct dirent *de;
    char *names[16];
    while ((de = readdir(d))) if (de->d_name[0] != '.') names[C++] = strdup(de->d_name);
    closedir(d);
    for (int i = 0; i < C; i++) for (int j = i + 1; j < C; j++) if (strcmp(names[i], names[j]) > 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
    for (int k = 0; k < C; k++) {
        labels[k] = names[k];
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        DIR *dd = opendir(p);
        while ((de = readdir(dd))) {
            if (de->d_name[0] == '.') continue;
            char f[8192], g[1024];
            snprintf(f, sizeof f, "%s/%s", p, de->d_name);
            snprintf(g, sizeof g, "%s", de->d_name);
            char *cut = strchr(g, '('); if (cut) *cut = 0;
            cut = strchr(g, '-'); if (cut) *cut = 0;
            cut = strstr(g, ".md"); if (cut) *cut = 0;
            flow_hash h = flow_hash_bytes(g, strlen(g));
            uint64_t v; memcpy(&v, h.b, 8); v ^= seed * 0x9e3779b97f4a7c15ull; v = (v ^ (v >> 29)) * 0xbf58476d1ce4e5b9ull;
            int sp = (v >> 20) % 10 < 8 ? 0 : (v >> 20) % 10 == 8 ? 1 : 2;
            size_t n = 0;
            char *doc = slurp(f, &n);
            text_units u;
            text_units_init(&u);
            text_stats st; memset(&st, 0, sizeof st);
            flow_err e;
            if (text_clean_document(&o, doc, n, &u, &st, &e) == 0)
                for (int i = 0; i < u.n; i++) add(&S[sp], u.text.data + u.off[i], u.off[i + 1] - u.off[i], k);
            text_units_release(&u);
            free(doc);
        }
        closedir(dd);
    }
    printf("units train %zu dev %zu test %zu, %d classes (%.1fs to clean)\n", S[0].n, S[1].n, S[2].n, C, now() - t0);
    (void)labels;
    t0 = now();
    tfidf_config tc = { 1, nmax, hb, 1 };
    size_t D = (size_t)1 << hb;
    float *idf = malloc(D * sizeof *idf);
    sp_mat x[3];
    for (int s = 0; s < 3; s++) tfidf_counts(&tc, (const char *const *)S[s].t, S[s].l, S[s].n, &x[s]);
    tfidf_fit_idf(&tc, &x[0], 2, idf);
    for (int s = 0; s < 3; s++) tfidf_transform(&tc, idf, &x[s]);
    printf("features %.1fs, nnz %zu\n", now() - t0, x[0].nnz);
    float cw[16];
    if (balanced) {
        int cnt[16] = { 0 };
        for (size_t i = 0; i < S[0].n; i++) cnt[S[0].y[i]]++;
        for (int k = 0; k < C; k++) cw[k] = cnt[k] ? (float)S[0].n / (C * cnt[k]) : 0;
    }
    t0 = now();
    linear_model m;
    linear_init(&m, C, D);
    ev e[2] = { { &x[1], S[1].y, C }, { &x[2], S[2].y, C } };
    linear_opts lo = { .loss = loss, .l2 = l2, .epochs = epochs, .seed = 1, .class_weight = balanced ? cw : NULL, .on_epoch = on_epoch, .arg = e };
    linear_train(&m, &x[0], S[0].y, &lo);
    printf("train %.1fs\n", now() - t0);
    return 0;
}
