/* gc_test.c — unit tests of what gc keeps and gives back (cache/gc.c,
 * records.c, checkpoint.c, compact.c): live builds' roots (kept while the
 * process lives, ignored and deleted once it is killed), artifacts
 * committed after the candidates were listed, checkpoint chunks released
 * when a newer checkpoint or the artifact replaces them (at most two
 * checkpoints' worth of file), the hash set's delete, and compaction:
 * smaller file, same data, skipped while another handle is open, safe
 * against a reader that keeps opening the cache and against kill -9. */
#include "cache/cache.h"
#include "cache/store_internal.h"     /* hset, for test_hset_del */
#include "tests/test.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void fill_random(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (char)(rnd() >> 24);
}

static flow_hash key_of(const char *s) { return flow_hash_bytes(s, strlen(s)); }

static int put1(flow_store *s, const flow_hash *key, const char *data, size_t len, flow_err *err)
{
    store_writer *w;
    int rc = store_writer_new(s, &w, err);
    if (rc) return rc;
    rc = store_part_begin(w, "p", FLOW_PART_BYTES, err);
    if (!rc) rc = store_part_write(w, data, len, err);
    if (!rc) rc = store_part_end(w, err);
    if (!rc) rc = store_writer_commit(w, key, "{}", "", 0, err);
    store_writer_free(w);
    return rc;
}

static flow_store *open_at(const char *dir)
{
    flow_store *s = NULL;
    flow_err err;
    store_options o;
    memset(&o, 0, sizeof o);
    o.initial_map_size = (size_t)1 << 28;
    CHECK_OK(store_open(&s, dir, &o, &err), err);
    return s;
}

static uint64_t file_bytes(const char *dir)
{
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t nchunks(flow_store *s)
{
    store_stats st;
    flow_err err;
    CHECK_OK(store_stats_get(s, &st, &err), err);
    return st.chunks;
}

/* ---- live builds' roots ------------------------------------------------- */

/* A child registers roots {a} and waits; gc keeps a and names the child;
 * after kill -9 the record is ignored, deleted, and a goes. */
static void test_roots(const char *root)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/roots", root);
    flow_store *s = open_at(dir);
    if (!s) return;
    flow_err err;
    char d[1000];
    fill_random(d, sizeof d);
    flow_hash a = key_of("a"), b = key_of("b"), mine = key_of("mine");
    CHECK_OK(put1(s, &a, d, 500, &err), err);
    CHECK_OK(put1(s, &b, d + 500, 500, &err), err);
    CHECK_OK(put1(s, &mine, d + 100, 500, &err), err);
    store_close(s);
    int up[2];
    if (pipe(up)) { perror("pipe"); exit(2); }
    pid_t pid = fork();
    if (pid == 0) {
        flow_store *cs = open_at(dir);
        if (!cs || store_roots_put(cs, &a, 1, 30, &err)) _exit(3);
        store_close(cs);
        if (write(up[1], "r", 1) != 1) _exit(4);
        pause();
        _exit(0);
    }
    char c;
    CHECK(read(up[0], &c, 1) == 1);
    s = open_at(dir);
    if (!s) return;
    /* this process's own roots count too */
    CHECK_OK(store_roots_put(s, &mine, 1, 30, &err), err);
    store_gc_stats st;
    CHECK_OK(store_gc(s, NULL, 0, NULL, 0, 0, &st, &err), err);
    CHECK(store_has(s, &a) && store_has(s, &mine) && !store_has(s, &b));
    CHECK_MSG(st.nbuilds == 2, "%d builds", st.nbuilds);
    int seen = 0;
    for (int i = 0; i < st.nbuilds && i < STORE_GC_MAX_BUILDS; i++)
        if (st.builds[i].pid == (int)pid && st.builds[i].artifacts == 1) seen = 1;
    CHECK(seen);
    CHECK(st.stale_records == 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK_OK(store_gc(s, NULL, 0, NULL, 0, 0, &st, &err), err);
    CHECK(!store_has(s, &a) && store_has(s, &mine));
    CHECK_MSG(st.stale_records == 1 && st.nbuilds == 1, "stale %llu builds %d",
              (unsigned long long)st.stale_records, st.nbuilds);
    store_stats ss;
    CHECK_OK(store_stats_get(s, &ss, &err), err);
    CHECK_MSG(ss.leases == 1, "%llu lease records left", (unsigned long long)ss.leases);
    CHECK_OK(store_roots_drop(s, &err), err);
    CHECK_OK(store_gc(s, NULL, 0, NULL, 0, 0, &st, &err), err);
    CHECK(!store_has(s, &mine) && st.nbuilds == 0);
    store_close(s);
    close(up[0]);
    close(up[1]);
}

/* An artifact committed after the candidates were listed is kept. */
static void test_candidates(const char *root)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cand", root);
    flow_store *s = open_at(dir);
    if (!s) return;
    flow_err err;
    char d[600];
    fill_random(d, sizeof d);
    flow_hash old = key_of("old"), late = key_of("late");
    CHECK_OK(put1(s, &old, d, 300, &err), err);
    flow_hash *cand = NULL;
    size_t n = 0;
    CHECK_OK(store_list_artifacts(s, &cand, &n, &err), err);
    CHECK(n == 1);
    CHECK_OK(put1(s, &late, d + 300, 300, &err), err);
    store_gc_stats st;
    CHECK_OK(store_gc(s, NULL, 0, cand, n, 0, &st, &err), err);
    CHECK(!store_has(s, &old) && store_has(s, &late));
    CHECK(st.artifacts_removed == 1 && st.artifacts_recent == 1);
    free(cand);
    store_close(s);
}

/* ---- checkpoints ---------------------------------------------------------- */

static void test_checkpoint_release(const char *root)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ckpt", root);
    flow_store *s = open_at(dir);
    if (!s) return;
    flow_err err;
    size_t n = 5u << 20;                 /* 3 chunks: 2 MiB, 2 MiB, 1 MiB */
    char *d = malloc(n), *z = calloc(1, 2u << 20);
    fill_random(d, n);
    flow_hash k = key_of("node"), other = key_of("other");
    /* "other" shares the first 2 MiB chunk of checkpoint 1 */
    CHECK_OK(put1(s, &other, d, 2u << 20, &err), err);
    CHECK_OK(store_checkpoint_put(s, &k, d, n, &err), err);
    CHECK(nchunks(s) == 3);
    uint64_t peak = 0;
    for (int i = 0; i < 8; i++) {
        fill_random(d + (2u << 20), n - (2u << 20));    /* chunks 2 and 3 change */
        CHECK_OK(store_checkpoint_put(s, &k, d, n, &err), err);
        CHECK_MSG(nchunks(s) == 3, "after put %d: %llu chunks", i, (unsigned long long)nchunks(s));
        if (file_bytes(dir) > peak) peak = file_bytes(dir);
    }
    /* the file holds the live checkpoint, the one before it and slack */
    CHECK_MSG(peak < 2 * n + (2u << 20), "file grew to %llu bytes for %zu-byte checkpoints",
              (unsigned long long)peak, n);
    char *got = NULL;
    size_t len = 0;
    CHECK_OK(store_checkpoint_get(s, &k, &got, &len, &err), err);
    CHECK(got && len == n && memcmp(got, d, n) == 0);
    free(got);
    /* a chunk of zeros (compresses to nothing) is left to gc */
    memcpy(d + (2u << 20), z, 2u << 20);
    CHECK_OK(store_checkpoint_put(s, &k, d, n, &err), err);
    fill_random(d + (2u << 20), 2u << 20);
    CHECK_OK(store_checkpoint_put(s, &k, d, n, &err), err);
    CHECK_MSG(nchunks(s) == 4, "%llu chunks (zeros kept)", (unsigned long long)nchunks(s));
    /* the artifact commit drops the checkpoint and its own chunks */
    CHECK_OK(put1(s, &k, "x", 1, &err), err);
    CHECK_MSG(nchunks(s) == 3, "%llu chunks after the commit (other, zeros, x)",
              (unsigned long long)nchunks(s));
    CHECK(store_checkpoint_get(s, &k, &got, &len, &err) == FLOW_E_NOTFOUND);
    CHECK(store_has(s, &other));
    CHECK_OK(store_verify(s, NULL, NULL, &err), err);
    free(d);
    free(z);
    store_close(s);
}

/* ---- hset_del (internal; checkpoint release uses it) --------------------- */
/* Random inserts and deletes, with colliding slots: every member is still
 * found and no removed one is. */
static void test_hset_del(void)
{
    hset h;
    hset_init(&h);
    enum { N = 3000 };
    flow_hash *k = malloc(N * sizeof *k);
    char *in = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        char b[16];
        snprintf(b, sizeof b, "%d", i);
        k[i] = key_of(b);
        /* a few share their slot bits, so probes collide */
        if (i % 7 == 0 && i > 0) memcpy(k[i].b + 8, k[i - 7].b + 8, 4);
        hset_put(&h, &k[i], NULL);
        in[i] = 1;
    }
    int bad = 0;
    for (int round = 0; round < 4 * N; round++) {
        int i = (int)(rnd() % N);
        if (in[i]) hset_del(&h, &k[i]);
        else hset_put(&h, &k[i], NULL);
        in[i] ^= 1;
    }
    size_t count = 0;
    for (int i = 0; i < N; i++) {
        count += in[i];
        if ((hset_get(&h, &k[i]) != NULL) != in[i]) bad++;
    }
    CHECK_MSG(bad == 0, "%d lookups wrong after deletes", bad);
    CHECK(h.n == count);
    hset_release(&h);
    free(k);
    free(in);
}

/* ---- compaction ------------------------------------------------------------ */

/* Stores n artifacts of size each (random bytes from seed), keys "c<i>". */
static void fill_store(flow_store *s, int n, size_t size, uint64_t seed)
{
    flow_err err;
    char *d = malloc(size);
    for (int i = 0; i < n; i++) {
        rng_state = seed + (uint64_t)i;
        fill_random(d, size);
        char name[32];
        snprintf(name, sizeof name, "c%d", i);
        flow_hash k = key_of(name);
        CHECK_OK(put1(s, &k, d, size, &err), err);
    }
    free(d);
}

/* Artifact "c<i>" holds the bytes fill_store wrote. */
static int check_art(flow_store *s, int i, size_t size, uint64_t seed)
{
    char name[32];
    snprintf(name, sizeof name, "c%d", i);
    flow_hash k = key_of(name);
    char *got = NULL, *want = malloc(size);
    size_t len = 0;
    flow_err err;
    rng_state = seed + (uint64_t)i;
    fill_random(want, size);
    int ok = store_read_part(s, &k, "p", &got, &len, &err) == 0 && len == size &&
             memcmp(got, want, size) == 0;
    free(got);
    free(want);
    return ok;
}

/* Keeps only c0 and c1 (of 8): most of the file is then free pages. */
static void collect_most(flow_store *s)
{
    flow_hash keep[2] = { key_of("c0"), key_of("c1") };
    flow_err err;
    store_gc_stats st;
    CHECK_OK(store_gc(s, keep, 2, NULL, 0, 0, &st, &err), err);
}

static void test_compact(const char *root)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/compact", root);
    size_t size = 3u << 20;
    flow_store *s = open_at(dir);
    if (!s) return;
    fill_store(s, 8, size, 100);
    collect_most(s);
    flow_err err;
    store_compact_stats cs;
    /* an open handle (ours) makes it skip */
    CHECK_OK(store_compact(dir, 10, &cs, &err), err);
    CHECK(!cs.compacted);
    CHECK_CONTAINS(cs.why, "open");
    uint64_t free_b, file_b;
    CHECK_OK(store_free_space(s, &free_b, &file_b, &err), err);
    CHECK_MSG(free_b * 2 > file_b, "free %llu of %llu", (unsigned long long)free_b,
              (unsigned long long)file_b);
    store_close(s);
    CHECK_OK(store_compact(dir, 10, &cs, &err), err);
    CHECK(cs.compacted);
    CHECK_MSG(cs.file_after * 3 < cs.file_before && cs.file_after == file_bytes(dir) &&
              cs.file_after > 2 * size, "%llu -> %llu", (unsigned long long)cs.file_before,
              (unsigned long long)cs.file_after);
    s = open_at(dir);
    if (!s) return;
    CHECK(check_art(s, 0, size, 100) && check_art(s, 1, size, 100));
    CHECK_OK(store_verify(s, NULL, NULL, &err), err);
    /* and it keeps working: writes, gc */
    fill_store(s, 3, size, 500);
    CHECK(check_art(s, 2, size, 500));
    store_close(s);
    /* not worth it: too little free */
    CHECK_OK(store_compact(dir, 90, &cs, &err), err);
    CHECK(!cs.compacted);
    CHECK_CONTAINS(cs.why, "free pages");
}

/* A reader keeps opening the cache and checking c0 while the parent
 * refills, collects and compacts: every read is right, and compactions
 * happen between its opens (its open waits while one runs). */
static void test_compact_reader(const char *root)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/reader", root);
    size_t size = 2u << 20;
    flow_store *s = open_at(dir);
    if (!s) return;
    fill_store(s, 2, size, 7);
    store_close(s);
    pid_t pid = fork();
    if (pid == 0) {
        for (;;) {
            flow_store *cs = open_at(dir);
            if (!cs || !check_art(cs, 0, size, 7)) _exit(1);
            store_close(cs);
            usleep(10000);
        }
    }
    int done = 0;
    flow_err err;
    for (int round = 0; round < 30 && done < 3; round++) {
        s = open_at(dir);
        if (!s) break;
        fill_store(s, 8, size, 7);      /* c0, c1 rewritten (same bytes), c2..c7 */
        collect_most(s);
        store_close(s);
        /* Compaction never waits for the reader: on a loaded machine its
         * open can span most of the time, so try for a window a few times. */
        store_compact_stats cs = { 0 };
        for (int tries = 0; tries < 50 && !cs.compacted; tries++) {
            CHECK_OK(store_compact(dir, 10, &cs, &err), err);
            if (!cs.compacted) usleep(3000);
        }
        done += cs.compacted;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            CHECK_MSG(0, "the reader failed (status %d)", st);
            pid = 0;
            break;
        }
    }
    CHECK_MSG(done >= 1, "no compaction ran between the reader's opens");
    if (pid) {
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st));         /* it was still reading correctly */
    }
}

/* kill -9 of a compaction at random moments: the cache always opens,
 * verifies and holds the same data. */
static void test_compact_kill9(const char *root)
{
    char dir[4200], tmp[4300];
    snprintf(dir, sizeof dir, "%s/kill", root);
    snprintf(tmp, sizeof tmp, "%s/data.mdb.compact", dir);
    size_t size = 4u << 20;
    int mid_copy = 0, compacted = 0;
    flow_err err;
    double took = 0;        /* an undisturbed compaction's time: kills are spread over it */
    for (int round = 0; round < 13; round++) {
        flow_store *s = open_at(dir);
        if (!s) return;
        fill_store(s, 8, size, 900);
        collect_most(s);
        store_close(s);
        pid_t pid = fork();
        if (pid == 0) {
            store_compact_stats cs;
            _exit(store_compact(dir, 10, &cs, &err) ? 1 : 0);
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int st;
        if (round > 0) {
            double at = took * (round - 0.5) / 12;
            struct timespec ts = { (time_t)at, (long)((at - (double)(time_t)at) * 1e9) };
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
        }
        waitpid(pid, &st, 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (round == 0) took = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (WIFSIGNALED(st) && access(tmp, F_OK) == 0) mid_copy++;
        if (WIFEXITED(st)) compacted++;
        s = open_at(dir);
        if (!s) return;
        CHECK_OK(store_verify(s, NULL, NULL, &err), err);
        CHECK(check_art(s, 0, size, 900) && check_art(s, 1, size, 900));
        store_close(s);
    }
    printf("kill -9 during compaction (%.0f ms undisturbed): %d of 12 killed while copying, "
           "%d finished\n", took * 1e3, mid_copy, compacted - 1);
    CHECK_MSG(mid_copy >= 1, "no kill landed during the copy");
    /* the leftover copy is removed by the next compaction */
    store_compact_stats cs;
    CHECK_OK(store_compact(dir, 0, &cs, &err), err);
    CHECK(access(tmp, F_OK) != 0);
}

int main(void)
{
    char *root = test_tmpdir("gc");
    test_roots(root);
    test_candidates(root);
    test_checkpoint_release(root);
    test_hset_del();
    test_compact(root);
    test_compact_reader(root);
    test_compact_kill9(root);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    free(root);
    return test_summary("gc_test");
}
