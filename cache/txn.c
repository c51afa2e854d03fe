/* txn.c — transactions on the store's LMDB environment: read
 * transactions, write transactions that grow the map on demand
 * (store_write), and turning LMDB and errno codes into flow errors that say
 * what to do.  The ground floor of cache/: it calls nothing else in the
 * folder, so every other file (store.c's open and close included) may use
 * it.
 *
 * Map growth: the map starts at initial_map_size.  A write transaction
 * that hits MDB_MAP_FULL is aborted, the map doubled with
 * mdb_env_set_mapsize and the transaction rerun.  When another process
 * grew the map, mdb_txn_begin answers MDB_MAP_RESIZED and we adopt the new
 * size with mdb_env_set_mapsize(env, 0).  mdb_env_set_mapsize needs no
 * live transaction in this process, hence resize_lock. */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

int64_t store_now(void) { return (int64_t)time(NULL); }

int store_mdb_fail(flow_store *s, flow_err *err, int rc, const char *what)
{
    const char *dir = s ? s->dir : "?";
    if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EFBIG || rc == EDQUOT)
        return flow_fail(err, FLOW_E_FULL, "cache %s: %s: %s (disk or map full; free disk "
                         "space or run `flow gc`; the cache is left intact)", dir, what,
                         rc == MDB_MAP_FULL ? "map full and cannot grow" : strerror(rc));
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s: %s: %s (the LMDB file is damaged; "
                         "delete the cache folder and rebuild)", dir, what, mdb_strerror(rc));
    if (rc == ENOMEM)
        return flow_fail(err, FLOW_E_NOMEM, "cache %s: %s: out of memory", dir, what);
    return flow_fail(err, FLOW_E_IO, "cache %s: %s: %s", dir, what, mdb_strerror(rc));
}

/* LMDB reports a short write (the usual face of a full disk) as EIO.
 * Tell a full disk or file-size limit apart from a real I/O error. */
static int commit_fail(flow_store *s, flow_err *err, int rc, const char *what)
{
    if (rc == EIO) {
        char path[4200];
        snprintf(path, sizeof path, "%s/data.mdb", s->dir);
        struct stat st;
        struct rlimit rl;
        if (stat(path, &st) == 0 && getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            (uint64_t)st.st_size + (64u << 20) > (uint64_t)rl.rlim_cur)
            return flow_fail(err, FLOW_E_FULL, "cache %s: %s: the file size limit (ulimit -f, %llu "
                             "bytes) was reached; the cache is left intact", s->dir, what,
                             (unsigned long long)rl.rlim_cur);
        struct statvfs vfs;
        if (statvfs(s->dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (64u << 20))
            return flow_fail(err, FLOW_E_FULL, "cache %s: %s: the disk is full (%llu bytes free); "
                             "free space or run `flow gc`; the cache is left intact", s->dir, what,
                             (unsigned long long)vfs.f_bavail * vfs.f_frsize);
    }
    return store_mdb_fail(s, err, rc, what);
}

void store_refresh_map_size(flow_store *s)
{
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0) s->map_size = info.me_mapsize;
}

/* Adopts a map size set by another process (MDB_MAP_RESIZED). */
static int adopt_map(flow_store *s, flow_err *err)
{
    pthread_rwlock_wrlock(&s->resize_lock);
    int rc = mdb_env_set_mapsize(s->env, 0);
    if (rc == 0) store_refresh_map_size(s);
    pthread_rwlock_unlock(&s->resize_lock);
    return rc ? store_mdb_fail(s, err, rc, "adopting the map size grown by another process") : 0;
}

/* Doubles the map (up to max_map_size). */
static int grow_map(flow_store *s, size_t seen, flow_err *err)
{
    int rc = 0;
    pthread_rwlock_wrlock(&s->resize_lock);
    store_refresh_map_size(s);
    if (s->map_size <= seen) {   /* nobody grew it meanwhile */
        size_t want = s->map_size * 2;
        if (s->max_map_size && want > s->max_map_size) want = s->max_map_size;
        if (want <= s->map_size) {
            pthread_rwlock_unlock(&s->resize_lock);
            return flow_fail(err, FLOW_E_FULL, "cache %s: map full at %zu bytes and the "
                             "limit is %zu bytes (max_map_size); run `flow gc` or raise the "
                             "limit; the cache is left intact", s->dir, s->map_size,
                             s->max_map_size);
        }
        rc = mdb_env_set_mapsize(s->env, want);
        store_refresh_map_size(s);
    }
    pthread_rwlock_unlock(&s->resize_lock);
    if (rc) {
        char what[160];
        snprintf(what, sizeof what, "growing the map beyond %zu bytes", seen);
        return store_mdb_fail(s, err, rc == ENOMEM ? MDB_MAP_FULL : rc, what);
    }
    return 0;
}

int store_txn_read(flow_store *s, MDB_txn **txn, flow_err *err)
{
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&s->resize_lock);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == 0) return 0;
        pthread_rwlock_unlock(&s->resize_lock);
        if (rc == MDB_MAP_RESIZED && tries < 100) {
            int r = adopt_map(s, err);
            if (r) return r;
            continue;
        }
        return store_mdb_fail(s, err, rc, "starting a read transaction");
    }
}

void store_txn_end(flow_store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize_lock);
}

int store_write(flow_store *s, const char *what, store_write_fn fn, void *arg,
                int nosync, flow_err *err)
{
    if (s->readonly)
        return flow_fail(err, FLOW_E_USAGE, "cache %s: %s: the cache was opened read-only",
                         s->dir, what);
    for (int tries = 0;; tries++) {
        if (tries > 200)
            return flow_fail(err, FLOW_E_FULL, "cache %s: %s: gave up after %d map resizes",
                             s->dir, what, tries);
        pthread_rwlock_rdlock(&s->resize_lock);
        size_t seen = s->map_size;
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc) {
            pthread_rwlock_unlock(&s->resize_lock);
            if (rc == MDB_MAP_RESIZED) {
                int r = adopt_map(s, err);
                if (r) return r;
                continue;
            }
            return store_mdb_fail(s, err, rc, what);
        }
        rc = fn(s, txn, arg, err);
        if (rc == 0) {
            /* Chunk batches and small records skip the meta-page fsync
             * (MDB_NOMETASYNC: a power loss may undo them, never corrupt);
             * the next synced commit makes them durable. */
            int flip = nosync && s->sync_mode == STORE_SYNC_FULL;
            if (flip) mdb_env_set_flags(s->env, MDB_NOMETASYNC, 1);
            rc = mdb_txn_commit(txn);
            if (flip) mdb_env_set_flags(s->env, MDB_NOMETASYNC, 0);
            pthread_rwlock_unlock(&s->resize_lock);
            if (rc == 0) return 0;
            if (rc != MDB_MAP_FULL && rc != MDB_MAP_RESIZED) return commit_fail(s, err, rc, what);
        } else {
            mdb_txn_abort(txn);
            pthread_rwlock_unlock(&s->resize_lock);
            if (rc < 0 && rc <= FLOW_E_USAGE && rc >= FLOW_E_BUSY - 100) return rc;  /* FLOW_E_* */
        }
        if (rc == MDB_MAP_FULL) {
            int r = grow_map(s, seen, err);
            if (r) {
                /* name what we were doing */
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
                return flow_fail(err, r, "%s (while %s)", msg, what);
            }
            continue;
        }
        if (rc == MDB_MAP_RESIZED) {
            int r = adopt_map(s, err);
            if (r) return r;
            continue;
        }
        return store_mdb_fail(s, err, rc, what);
    }
}
