/* store_bench.c — throughput of the artifact store: put then get of N MiB
 * (default 1024) of float32 values like trained weights (normal(0, 0.02)),
 * as one FLOW_PART_F32 part.  Reports put, get (streamed and whole-part)
 * MB/s and the stored size.  store_bench.sh compares with `zstd -3` and
 * `zstd -d` on the same bytes (--dump writes them to a file).
 *
 *   bench_store_bench [--mib N] [--dir DIR] [--dump FILE] [--sync full|nometa|none]
 *   bench_store_bench --small N --dir DIR
 *       commit cost: N artifacts of 4 KiB, once per sync mode (full, nometa,
 *       none + one store_sync at the end); run it on a real disk.
 */
#include "cache/cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec * 1e-6;
}

static uint64_t st = 0x2545F4914F6CDD1Dull;
static double unif(void)
{
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return ((st >> 11) + 0.5) / 9007199254740992.0;
}

/* N small commits per sync mode: what fsync costs per artifact. */
static int small_commits(const char *dir, int n)
{
    static const char *names[] = { "full", "nometa", "none" };
    char buf[4096];
    for (int mode = 0; mode < 3; mode++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/small-%s", dir, names[mode]);
        flow_err err;
        flow_store *s;
        store_options o = {0};
        o.sync_mode = mode;
        if (store_open(&s, sub, &o, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        double t0 = now();
        for (int i = 0; i < n; i++) {
            for (size_t k = 0; k < sizeof buf; k++) buf[k] = (char)(i * 31 + k);
            flow_hash key = flow_hash_bytes(&i, sizeof i);
            store_writer *w;
            int rc = store_writer_new(s, &w, &err);
            if (!rc) rc = store_part_begin(w, "p", FLOW_PART_BYTES, &err);
            if (!rc) rc = store_part_write(w, buf, sizeof buf, &err);
            if (!rc) rc = store_writer_commit(w, &key, "{}", "log", 3, &err);
            store_writer_free(w);
            if (rc) { fprintf(stderr, "%s\n", err.msg); return 1; }
        }
        if (store_sync(s, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        double t = now() - t0;
        printf("small commits, sync %-6s: %d in %.3f s = %.2f ms/commit\n", names[mode], n, t, 1e3 * t / n);
        store_close(s);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int small = 0;
    size_t mib = 1024;
    const char *dir = NULL, *dump = NULL;
    int sync = STORE_SYNC_FULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc) dump = argv[++i];
        else if (!strcmp(argv[i], "--small") && i + 1 < argc) small = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sync") && i + 1 < argc) {
            const char *m = argv[++i];
            sync = !strcmp(m, "none") ? STORE_SYNC_NONE : !strcmp(m, "nometa") ? STORE_SYNC_NOMETA : STORE_SYNC_FULL;
        } else {
            fprintf(stderr, "usage: %s [--mib N] [--dir DIR] [--dump FILE] [--sync full|nometa|none]\n", argv[0]);
            return 2;
        }
    }
    if (small) {
        if (!dir) { fprintf(stderr, "--small needs --dir\n"); return 2; }
        return small_commits(dir, small);
    }
    char tmpl[] = "/dev/shm/flow-bench-XXXXXX";
    if (!dir) {
        if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 2; }
        dir = tmpl;
    }
    size_t n = mib << 20, nf = n / 4;
    float *f = malloc(n);
    if (!f) { perror("malloc"); return 2; }
    for (size_t i = 0; i + 1 < nf; i += 2) {       /* Box-Muller */
        double r = sqrt(-2.0 * log(unif())) * 0.02, t = 6.283185307179586 * unif();
        f[i] = (float)(r * cos(t));
        f[i + 1] = (float)(r * sin(t));
    }
    if (dump) {
        FILE *o = fopen(dump, "wb");
        if (!o || fwrite(f, 1, n, o) != n || fclose(o)) { perror(dump); return 2; }
    }
    flow_err err;
    flow_store *s;
    store_options o = {0};
    o.sync_mode = sync;
    if (store_open(&s, dir, &o, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    flow_hash key = flow_hash_bytes("bench", 5);

    double t0 = now(), c0 = cpu();
    store_writer *w;
    int rc = store_writer_new(s, &w, &err);
    if (!rc) rc = store_part_begin(w, "weights", FLOW_PART_F32, &err);
    for (size_t off = 0; !rc && off < n; off += 8u << 20) {
        size_t k = n - off < (8u << 20) ? n - off : (8u << 20);
        rc = store_part_write(w, (char *)f + off, k, &err);
    }
    if (!rc) rc = store_part_end(w, &err);
    if (!rc) rc = store_writer_commit(w, &key, "{}", "", 0, &err);
    store_writer_free(w);
    if (!rc && sync != STORE_SYNC_FULL) rc = store_sync(s, &err);
    double t_put = now() - t0, c_put = cpu() - c0;
    if (rc) { fprintf(stderr, "put: %s\n", err.msg); return 1; }

    t0 = now();
    c0 = cpu();
    store_reader *r;
    rc = store_reader_open(s, &key, "weights", &r, &err);
    char *buf = malloc(8u << 20);
    size_t got = 0;
    long long k;
    int same = 1;
    /* like `zstd -d > /dev/null`: consume, do not compare (read_part below
     * checks the bytes) except a cheap probe per buffer */
    while (!rc && (k = store_reader_read(r, buf, 8u << 20, &err)) > 0) {
        if (memcmp(buf, (char *)f + got, 64) != 0) same = 0;
        got += (size_t)k;
    }
    store_reader_free(r);
    double t_get = now() - t0, c_get = cpu() - c0;
    if (rc || got != n || !same) { fprintf(stderr, "get failed (%zu of %zu bytes, same %d): %s\n", got, n, same, err.msg); return 1; }

    t0 = now();
    char *whole;
    size_t len;
    rc = store_read_part(s, &key, "weights", &whole, &len, &err);
    double t_whole = now() - t0;
    if (rc || len != n || memcmp(whole, f, n) != 0) { fprintf(stderr, "read_part failed: %s\n", err.msg); return 1; }
    free(whole);

    store_artifact *a;
    if (store_get(s, &key, &a, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double mb = (double)n / 1e6;
    printf("store_bench: %zu MiB float32 normal(0,0.02), dir %s, sync %d\n", mib, dir, sync);
    printf("put        %8.1f MB/s  (%.2f s wall, %.2f s cpu)\n", mb / t_put, t_put, c_put);
    printf("get stream %8.1f MB/s  (%.2f s wall, %.2f s cpu)\n", mb / t_get, t_get, c_get);
    printf("get whole  %8.1f MB/s  (%.2f s, incl. compare)\n", mb / t_whole, t_whole);
    printf("put+get    %8.1f MB/s\n", mb / (t_put + t_get));
    printf("stored     %llu bytes (ratio %.4f)\n", (unsigned long long)a->stored_size,
           (double)a->stored_size / (double)n);
    printf("RESULT put_s=%.4f get_s=%.4f stored=%llu raw=%zu\n", t_put, t_get,
           (unsigned long long)a->stored_size, n);
    store_artifact_free(a);
    store_close(s);
    free(buf);
    free(f);
    if (dir == tmpl) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpl);
    }
    return 0;
}
