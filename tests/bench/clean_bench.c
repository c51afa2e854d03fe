/* clean_bench.c — runs the cleaning library over a folder tree (e.g. the
 * shared legal corpus) without the engine, printing units and timings.
 * Build: gcc -O2 -D_GNU_SOURCE -I. tests/bench/clean_bench.c stages/text/text.c engine/base/{buf,error,hash,json,rng,utf8}.c -lm
 * Usage: clean_bench DIR... [> units.txt] */
#include "stages/text/text.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static text_opts opts;
static text_stats total;
static long docs, units;
static int print_units;

static void walk(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) { perror(dir); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) { walk(path); continue; }
        char *buf;
        size_t n;
        flow_err rerr = {0, {0}};
        if (file_read_all(path, &buf, &n, &rerr)) { fprintf(stderr, "%s\n", rerr.msg); continue; }
        text_units u;
        text_units_init(&u);
        flow_err err;
        if (text_clean_document(&opts, buf, n, &u, &total, &err)) fprintf(stderr, "%s: %s\n", path, err.msg);
        docs++;
        units += u.n;
        if (print_units)
            for (int i = 0; i < u.n; i++)
                printf("%s\t%.*s\n", path, (int)(u.off[i + 1] - u.off[i]), u.text.data + u.off[i]);
        text_units_release(&u);
        free(buf);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    text_opts_default(&opts);
    print_units = getenv("PRINT") != NULL;
    if (getenv("STRICT")) opts.preset = TEXT_PRESET_STRICT;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 1; i < argc; i++) walk(argv[i]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "%ld documents, %ld units (%llu articles, %llu items, %llu paragraphs, %llu short) in %.3f s\n",
            docs, units, (unsigned long long)total.articles, (unsigned long long)total.items,
            (unsigned long long)total.paragraphs, (unsigned long long)total.short_units, s);
    for (int k = 0; k < TC_NCLASS; k++)
        fprintf(stderr, "  %-8s kept %10llu dropped %8llu\n", text_class_names[k],
                (unsigned long long)total.kept[k], (unsigned long long)total.dropped[k]);
    return 0;
}
