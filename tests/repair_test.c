/* repair_test.c — store_repair (cache/repair.c): after damaging a chunk
 * shared by two artifacts and a checkpoint, deleting another artifact's
 * chunk and damaging an unreferenced chunk, repair removes exactly the
 * artifacts and checkpoint that reference them plus the damaged chunks;
 * untouched artifacts stay readable, verify passes afterwards, and
 * rewriting a removed artifact works again (the chunk is stored anew, not
 * deduplicated against the damaged one). */
#include "cache/cache.h"
#include "test.h"

#include <lmdb.h>

#define MiB (1u << 20)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static void fill_random(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        p[i] = (char)(rng >> 24);
    }
}

static flow_hash key_of(const char *name) { return flow_hash_bytes(name, strlen(name)); }

static void put(flow_store *s, const char *name, const char *data, size_t n)
{
    store_writer *w;
    flow_err err;
    flow_hash k = key_of(name);
    CHECK_OK(store_writer_new(s, &w, &err), err);
    CHECK_OK(store_part_begin(w, "p", FLOW_PART_BYTES, &err), err);
    CHECK_OK(store_part_write(w, data, n, &err), err);
    CHECK_OK(store_writer_commit(w, &k, "{}", "", 0, &err), err);
    store_writer_free(w);
}

static int same(flow_store *s, const char *name, const char *data, size_t n)
{
    char *got = NULL;
    size_t len = 0;
    flow_err err;
    flow_hash k = key_of(name);
    int ok = store_read_part(s, &k, "p", &got, &len, &err) == 0 && len == n && memcmp(got, data, n) == 0;
    free(got);
    return ok;
}

/* Damages (flip = 1: flips the last byte of) or deletes the stored chunk
 * whose raw bytes are data[0..n), going behind the store's back. */
static int tamper(const char *dir, const char *data, size_t n, int flip)
{
    flow_hash h = flow_hash_bytes(data, n);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)1 << 30);
    if (!rc) rc = mdb_env_open(env, dir, 0, 0644);
    if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "chunks", 0, &dbi);
    if (!rc) {
        MDB_val k = { 16, h.b }, v;
        rc = mdb_get(txn, dbi, &k, &v);
        if (!rc && flip) {
            char *copy = malloc(v.mv_size);
            memcpy(copy, v.mv_data, v.mv_size);
            copy[v.mv_size - 1] ^= 0x5a;
            MDB_val nv = { v.mv_size, copy };
            rc = mdb_put(txn, dbi, &k, &nv, 0);
            free(copy);
        } else if (!rc) {
            rc = mdb_del(txn, dbi, &k, NULL);
        }
        if (!rc) rc = mdb_txn_commit(txn);
        else mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return rc;
}

typedef struct lines { char text[8192]; int n; } lines;
static void collect(const char *what, void *arg)
{
    lines *l = arg;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof l->text - len, "%s\n", what);
    l->n++;
}

int main(void)
{
    char *dir = test_tmpdir("repair");
    flow_store *s;
    flow_err err;
    store_options opt;
    memset(&opt, 0, sizeof opt);
    CHECK_OK(store_open(&s, dir, &opt, &err), err);
    /* a: chunks a0 (2 MiB) and shared (1 MiB); c: the shared chunk alone;
     * b: chunk b0; d: chunk d0 (untouched); checkpoint k: the shared chunk;
     * artifact u was collected by a gc whose grace kept its young chunk u0,
     * now unreferenced (dropping a checkpoint deletes its chunks) */
    char *a = malloc(3 * MiB), *b = malloc(MiB), *d = malloc(MiB), *u = malloc(MiB);
    fill_random(a, 3 * MiB);
    fill_random(b, MiB);
    fill_random(d, MiB);
    fill_random(u, MiB);
    const char *shared = a + 2 * MiB;
    put(s, "a", a, 3 * MiB);
    put(s, "b", b, MiB);
    put(s, "c", shared, MiB);
    put(s, "d", d, MiB);
    put(s, "u", u, MiB);
    flow_hash kk = key_of("k"), live[4] = { key_of("a"), key_of("b"), key_of("c"), key_of("d") };
    CHECK_OK(store_checkpoint_put(s, &kk, shared, MiB, &err), err);
    store_gc_stats gs;
    CHECK_OK(store_gc(s, live, 4, NULL, 0, 3600, &gs, &err), err);
    CHECK(gs.artifacts_removed == 1 && gs.chunks_removed == 0);
    CHECK_OK(store_verify(s, NULL, NULL, &err), err);
    store_close(s);

    CHECK(tamper(dir, shared, MiB, 1) == 0);
    CHECK(tamper(dir, b, MiB, 0) == 0);
    CHECK(tamper(dir, u, MiB, 1) == 0);

    CHECK_OK(store_open(&s, dir, &opt, &err), err);
    CHECK(store_verify(s, NULL, NULL, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "flow verify --repair");
    flow_hash ka = key_of("a");
    char *got = NULL;
    size_t len;
    CHECK(store_read_part(s, &ka, "p", &got, &len, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "flow verify --repair");
    free(got);

    lines l;
    memset(&l, 0, sizeof l);
    store_repair_stats st;
    CHECK_OK(store_repair(s, collect, &l, &st, &err), err);
    CHECK_MSG(st.artifacts_removed == 3, "removed %llu artifacts", (unsigned long long)st.artifacts_removed);
    CHECK(st.checkpoints_removed == 1);
    CHECK(st.chunks_removed == 2);
    char hex[33];
    const char *gone[] = { "a", "b", "c" };
    for (int i = 0; i < 3; i++) {
        flow_hash k = key_of(gone[i]);
        flow_hash_hex(&k, hex);
        CHECK_CONTAINS(l.text, hex);
        CHECK(!store_has(s, &k));
    }
    flow_hash_hex(&kk, hex);
    CHECK_CONTAINS(l.text, hex);
    CHECK_CONTAINS(l.text, "is missing");
    CHECK_CONTAINS(l.text, "removed damaged chunk");
    char *ck = NULL;
    CHECK(store_checkpoint_get(s, &kk, &ck, &len, &err) != 0);
    free(ck);
    flow_hash kd = key_of("d");
    CHECK(store_has(s, &kd) && same(s, "d", d, MiB));
    CHECK_OK(store_verify(s, NULL, NULL, &err), err);

    /* the removed nodes can be written again and read back intact */
    put(s, "a", a, 3 * MiB);
    put(s, "b", b, MiB);
    CHECK(same(s, "a", a, 3 * MiB));
    CHECK(same(s, "b", b, MiB));
    CHECK_OK(store_verify(s, NULL, NULL, &err), err);
    /* nothing left to repair */
    memset(&l, 0, sizeof l);
    CHECK_OK(store_repair(s, collect, &l, &st, &err), err);
    CHECK(st.artifacts_removed == 0 && st.checkpoints_removed == 0 && st.chunks_removed == 0 && l.n == 0);
    store_close(s);

    free(a);
    free(b);
    free(d);
    free(u);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return test_summary("repair_test");
}
