/* terms_bench.c — times terms_mine on a text file (one unit per line) and
 * reports how many terms of a term list land in the top K.
 * Build: gcc -O2 -D_GNU_SOURCE -I. tests/bench/terms_bench.c stages/text/terms_mine.c engine/base/{buf,error,hash,json,rng,utf8}.c -lm
 * Usage: terms_bench TEXT TERMS.txt [K] */
#include "stages/text/text.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *path, size_t *n)
{
    char *b;
    flow_err err = {0, {0}};
    if (file_read_all(path, &b, n, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: terms_bench TEXT TERMS [K]\n"); return 2; }
    int K = argc > 3 ? atoi(argv[3]) : 200;
    size_t n, tn;
    char *text = slurp(argv[1], &n), *tl = slurp(argv[2], &tn);
    term_list t;
    flow_err err;
    if (term_list_parse(&t, tl, tn, 16, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    mine_opts o;
    mine_opts_default(&o);
    if (getenv("MIN_PMI")) o.min_pmi = atof(getenv("MIN_PMI"));
    if (getenv("MIN_ENT")) o.min_entropy = atof(getenv("MIN_ENT"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mined_term *m;
    int nm;
    if (terms_mine(&o, text, n, &m, &nm, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int hits = 0, all = 0;
    for (int j = 0; j < t.n; j++)
        for (int i = 0; i < nm; i++)
            if (strcmp(m[i].text, t.term[j]) == 0) { all++; hits += i < K; break; }
    printf("%zu bytes, %d candidates in %.2f s; %d/%d listed terms in top %d, %d among candidates\n", n, nm, s,
           hits, t.n, K, all);
    int show = getenv("SHOW") ? atoi(getenv("SHOW")) : 40;
    for (int i = 0; i < nm && i < show; i++)
        printf("%4d %s\t%.2f\t%lld\t%.2f\t%.2f\t%.2f\n", i + 1, m[i].text, m[i].score, (long long)m[i].freq, m[i].pmi,
               m[i].left_entropy, m[i].right_entropy);
    free(m);
    term_list_release(&t);
    free(text);
    return 0;
}
