/* store.c — the LMDB environment behind a cache folder: opening (the meta
 * record: magic, format version, hash algorithm; the tables), closing
 * (which flushes the stat cache, records.c), sync modes and whole-store
 * statistics.  Transactions and map growth are in txn.c, below this file
 * and everything else in cache/. */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)

static const char *const db_names[DB_COUNT] = {
    "meta", "chunks", "artifacts", "logs", "history", "statcache", "leases", "checkpoints",
};

static int mkdir_p(const char *dir, flow_err *err)
{
    char *p = xstrdup(dir);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0777) && errno != EEXIST) {
            int e = errno;
            flow_fail(err, FLOW_E_IO, "cannot create cache folder '%s': %s", p, strerror(e));
            free(p);
            return FLOW_E_IO;
        }
        *q = '/';
    }
    free(p);
    if (mkdir(dir, 0777) && errno != EEXIST)
        return flow_fail(err, FLOW_E_IO, "cannot create cache folder '%s': %s", dir, strerror(errno));
    return 0;
}

/* meta record: "FLOWSTOR" u32 version u32 chunk_size, hash algorithm name */
static int check_meta(flow_store *s, const MDB_val *v, flow_err *err)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < 16 || memcmp(p, STORE_MAGIC, 8) != 0)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s: not a flow cache (bad meta record); "
                         "delete the folder or choose another --cache", s->dir);
    uint32_t ver = get_u32(p + 8), chunk = get_u32(p + 12);
    if (ver < STORE_FORMAT_VERSION)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s has store format version %u, older than "
                         "version %u that this flow reads: delete the folder (it is only a "
                         "cache) and rebuild", s->dir, ver, STORE_FORMAT_VERSION);
    if (ver > STORE_FORMAT_VERSION)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s was written by a newer flow (store "
                         "format version %u; this flow reads version %u): upgrade flow or use "
                         "another --cache folder", s->dir, ver, STORE_FORMAT_VERSION);
    size_t alen = v->mv_size - 16;
    if (alen != strlen(STORE_HASH_ALGO) || memcmp(p + 16, STORE_HASH_ALGO, alen) != 0)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s uses hash algorithm '%.*s', this flow "
                         "uses '%s': use another --cache folder", s->dir, (int)alen,
                         (const char *)(p + 16), STORE_HASH_ALGO);
    if (chunk != STORE_CHUNK_SIZE)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s uses chunk size %u, this flow uses %u",
                         s->dir, chunk, STORE_CHUNK_SIZE);
    return 0;
}

static int init_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)arg;
    int rc = mdb_dbi_open(txn, db_names[DB_META], 0, &s->dbi[DB_META]);
    int fresh = rc == MDB_NOTFOUND;
    if (rc && !fresh) return rc;
    if (fresh) {
        rc = mdb_dbi_open(txn, db_names[DB_META], MDB_CREATE, &s->dbi[DB_META]);
        if (rc) return rc;
    }
    MDB_val k = { 6, "format" }, v;
    rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        unsigned char rec[16 + sizeof STORE_HASH_ALGO - 1];
        memcpy(rec, STORE_MAGIC, 8);
        put_u32(rec + 8, STORE_FORMAT_VERSION);
        put_u32(rec + 12, STORE_CHUNK_SIZE);
        memcpy(rec + 16, STORE_HASH_ALGO, sizeof STORE_HASH_ALGO - 1);
        v.mv_size = sizeof rec;
        v.mv_data = rec;
        rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
        if (rc) return rc;
    } else if (rc) {
        return rc;
    } else {
        int r = check_meta(s, &v, err);
        if (r) return r;
    }
    for (int i = 1; i < DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
        if (rc) return rc;
    }
    return 0;
}

static int init_readonly(flow_store *s, flow_err *err)
{
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    for (int i = 0; i < DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, db_names[i], 0, &s->dbi[i]);
        if (rc) {
            store_txn_end(s, txn);
            if (rc == MDB_NOTFOUND)
                return flow_fail(err, FLOW_E_NOTFOUND, "cache %s: not a flow cache (no '%s' "
                                 "table)", s->dir, db_names[i]);
            return store_mdb_fail(s, err, rc, "opening tables");
        }
        if (i == DB_META) {
            MDB_val k = { 6, "format" }, v;
            rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
            int r = rc == 0 ? check_meta(s, &v, err)
                            : flow_fail(err, FLOW_E_CORRUPT, "cache %s: meta record missing",
                                        s->dir);
            if (r) { store_txn_end(s, txn); return r; }
        }
    }
    /* commit (not abort) so the table handles stay open */
    rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&s->resize_lock);
    return rc ? store_mdb_fail(s, err, rc, "opening tables") : 0;
}

static unsigned sync_flags(int mode)
{
    return mode == STORE_SYNC_NONE ? MDB_NOSYNC : mode == STORE_SYNC_NOMETA ? MDB_NOMETASYNC : 0;
}

int store_open(flow_store **out, const char *dir, const store_options *opt, flow_err *err)
{
    store_options def = {0};
    if (!opt) opt = &def;
    *out = NULL;
    if (!dir || !*dir) return flow_fail(err, FLOW_E_USAGE, "cache folder name is empty");
    if (opt->sync_mode < 0 || opt->sync_mode > STORE_SYNC_NONE)
        return flow_fail(err, FLOW_E_USAGE, "cache %s: unknown sync mode %d", dir, opt->sync_mode);
    if (!opt->readonly) {
        int r = mkdir_p(dir, err);
        if (r) return r;
    } else {
        struct stat st;
        if (stat(dir, &st) != 0)
            return flow_fail(err, FLOW_E_NOTFOUND, "cache %s does not exist: %s", dir, strerror(errno));
    }
    flow_store *s = xcalloc(1, sizeof *s);
    s->dir = xstrdup(dir);
    s->readonly = opt->readonly;
    s->sync_mode = opt->sync_mode;
    s->max_map_size = opt->max_map_size;
    s->pid = getpid();
    s->lock_fd = -1;
    pthread_rwlock_init(&s->resize_lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    size_t map = opt->initial_map_size ? opt->initial_map_size : DEFAULT_MAP_SIZE;
    if (s->max_map_size && map > s->max_map_size) map = s->max_map_size;
    int rc = mdb_env_create(&s->env);
    if (!rc) rc = mdb_env_set_maxdbs(s->env, DB_COUNT + 2);
    if (!rc) rc = mdb_env_set_maxreaders(s->env, 1022);
    if (!rc) rc = mdb_env_set_mapsize(s->env, map);
    if (rc) {
        int r = store_mdb_fail(s, err, rc, "creating the LMDB environment");
        store_close(s);
        return r;
    }
    unsigned flags = MDB_NOTLS | sync_flags(s->sync_mode) | (s->readonly ? MDB_RDONLY : 0);
    /* held until after mdb_env_close: a compaction never swaps the file
     * under an open handle */
    s->lock_fd = store_lock_shared(dir, s->readonly);
    rc = mdb_env_open(s->env, dir, flags, 0666);
    if (rc) {
        int r = rc == ENOENT && s->readonly
            ? flow_fail(err, FLOW_E_NOTFOUND, "cache %s: no cache there yet", dir)
            : rc == EACCES || rc == EROFS
            ? flow_fail(err, FLOW_E_IO, "cache %s: %s (use a writable --cache folder)", dir, strerror(rc))
            : store_mdb_fail(s, err, rc, "opening the LMDB environment");
        store_close(s);
        return r;
    }
    store_refresh_map_size(s);
    /* what was committed before this handle opened is its writers' to
     * flush; a new store's initializing commit below is this handle's */
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0) s->synced_txnid = info.me_last_txnid;
    /* clear reader slots of processes that died (kill -9) holding a read
     * transaction: they would keep old pages from being reused */
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    /* An existing store is validated in a read transaction (no commit, no
     * fsync: every worker process opens the store); only a new one needs
     * the write transaction that creates the meta record and tables. */
    flow_err tmp;
    int r = init_readonly(s, s->readonly ? err : &tmp);
    if (!s->readonly && r == FLOW_E_NOTFOUND)
        r = store_write(s, "initializing", init_fn, NULL, 0, err);
    else if (!s->readonly && r && err)
        *err = tmp;
    if (r) {
        store_close(s);
        return r;
    }
    *out = s;
    return 0;
}

store_pool *store_get_pool(flow_store *s)
{
    pthread_mutex_lock(&s->pool_lock);
    if (!s->pool) {
        for (int i = 0; i < STORE_THREADS; i++) {
            s->cctx[i] = ZSTD_createCCtx();
            s->dctx[i] = ZSTD_createDCtx();
            if (!s->cctx[i] || !s->dctx[i]) FLOW_BUG("out of memory creating zstd contexts");
            ZSTD_CCtx_setParameter(s->cctx[i], ZSTD_c_compressionLevel, STORE_ZSTD_LEVEL);
            s->scratch[i] = xmalloc(STORE_CHUNK_SIZE);
        }
        s->pool = pool_new(STORE_THREADS);
    }
    pthread_mutex_unlock(&s->pool_lock);
    return s->pool;
}

void store_close(flow_store *s)
{
    if (!s) return;
    int same = s->pid == getpid();
    if (same && s->env && s->dbi[DB_STATCACHE]) {
        flow_err e;
        store_stat_flush(s, &e);     /* a failure only costs rehashing */
    }
    store_stat_release(s);   /* a parent's entries (after fork) are dropped */
    if (s->pool && same) pool_free(s->pool);   /* threads do not survive fork */
    for (int i = 0; i < STORE_THREADS; i++) {
        ZSTD_freeCCtx(s->cctx[i]);
        ZSTD_freeDCtx(s->dctx[i]);
        free(s->scratch[i]);
    }
    if (s->env) {
        MDB_envinfo info;                /* as store_sync: nothing committed since, no fdatasync */
        if (same && !s->readonly && s->sync_mode != STORE_SYNC_FULL &&
            !(mdb_env_info(s->env, &info) == 0 && info.me_last_txnid == s->synced_txnid))
            mdb_env_sync(s->env, 1);
        mdb_env_close(s->env);
    }
    /* close, never LOCK_UN: after fork the lock is shared with the parent */
    if (s->lock_fd >= 0) close(s->lock_fd);
    pthread_rwlock_destroy(&s->resize_lock);
    pthread_mutex_destroy(&s->pool_lock);
    free(s->dir);
    free(s);
}

const char *store_dir(const flow_store *s) { return s->dir; }

/* A sync when no transaction was committed since the last one (or since
 * the open) has nothing to flush: skipped, so that a null build does not
 * wait for the disk (an fdatasync of an unchanged file took 0.4-37 ms on
 * the shared VM).  Commits of other processes sharing the data file (the
 * build's workers) move the transaction id too, so they are flushed. */
int store_sync(flow_store *s, flow_err *err)
{
    if (s->readonly) return 0;
    int rc = store_stat_flush(s, err);
    if (rc) return rc;
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0 && info.me_last_txnid == s->synced_txnid) return 0;
    rc = mdb_env_sync(s->env, 1);
    if (rc) return store_mdb_fail(s, err, rc, "syncing to disk");
    s->syncs++;
    s->synced_txnid = info.me_last_txnid;
    return 0;
}

int store_sync_count(const flow_store *s) { return s->syncs; }

int store_set_sync_mode(flow_store *s, int mode, flow_err *err)
{
    if (mode < 0 || mode > STORE_SYNC_NONE)
        return flow_fail(err, FLOW_E_USAGE, "cache %s: unknown sync mode %d", s->dir, mode);
    int rc = mdb_env_set_flags(s->env, MDB_NOSYNC | MDB_NOMETASYNC, 0);
    if (!rc && sync_flags(mode)) rc = mdb_env_set_flags(s->env, sync_flags(mode), 1);
    if (rc) return store_mdb_fail(s, err, rc, "changing the sync mode");
    if (s->sync_mode != STORE_SYNC_FULL && mode == STORE_SYNC_FULL) {
        int r = store_sync(s, err);
        if (r) return r;
    }
    s->sync_mode = mode;
    return 0;
}

static uint64_t count_entries(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
}

int store_leases_count(flow_store *s, uint64_t *n, flow_err *err)
{
    MDB_txn *txn;
    *n = 0;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    *n = count_entries(txn, s->dbi[DB_LEASES]);
    store_txn_end(s, txn);
    return 0;
}

int store_stats_get(flow_store *s, store_stats *st, flow_err *err)
{
    memset(st, 0, sizeof *st);
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    st->artifacts = count_entries(txn, s->dbi[DB_ARTIFACTS]);
    st->checkpoints = count_entries(txn, s->dbi[DB_CHECKPOINTS]);
    st->leases = count_entries(txn, s->dbi[DB_LEASES]);
    st->logs = count_entries(txn, s->dbi[DB_LOGS]);
    MDB_cursor *c;
    rc = mdb_cursor_open(txn, s->dbi[DB_CHUNKS], &c);
    if (rc) {
        store_txn_end(s, txn);
        return store_mdb_fail(s, err, rc, "reading chunk statistics");
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        st->chunks++;
        if (v.mv_size >= CHUNK_HDR) {
            st->chunk_bytes += v.mv_size - CHUNK_HDR;
            st->chunk_raw_bytes += get_u32((const unsigned char *)v.mv_data + 4);
        }
    }
    mdb_cursor_close(c);
    MDB_envinfo info;
    MDB_stat est;
    if (mdb_env_info(s->env, &info) == 0 && mdb_env_stat(s->env, &est) == 0) {
        st->map_size = info.me_mapsize;
        st->file_size = (uint64_t)(info.me_last_pgno + 1) * est.ms_psize;
    }
    store_txn_end(s, txn);
    return rc == MDB_NOTFOUND ? 0 : store_mdb_fail(s, err, rc, "reading chunk statistics");
}
