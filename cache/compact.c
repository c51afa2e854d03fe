/* compact.c — giving disk space back: the open lock every store handle
 * holds, and the compacting copy that replaces data.mdb.
 *
 * LMDB never shrinks its file: pages freed by gc are reused by later
 * writes but stay on disk.  store_compact copies the live pages into a new
 * file (mdb_env_copyfd2 with MDB_CP_COMPACT: free pages omitted, pages
 * renumbered), syncs it and renames it over data.mdb.  The rename is
 * atomic, so a kill at any moment leaves the old file or the complete new
 * one; a leftover data.mdb.compact is truncated by the next compaction.
 *
 * A process that has data.mdb mapped would go on using the old file after
 * the rename (and lose its writes), so compaction runs only when nobody
 * has the cache open:
 *   - every flow_store holds a shared flock on `open.lock` from before it
 *     opens LMDB until after it closes it (store.c), so new openers wait
 *     while compaction holds it exclusively;
 *   - compaction takes it exclusively without waiting (a running build or
 *     reader makes it skip, never wait or break), and also asks the kernel
 *     whether any process holds LMDB's own lock on lock.mdb (any LMDB
 *     user, flow or not);
 *   - the next opener after the swap is LMDB's first user, which resets
 *     lock.mdb (reader table, last transaction id) from the new file. */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static void lock_path(const char *dir, char *p, size_t cap) { snprintf(p, cap, "%s/open.lock", dir); }

int store_lock_shared(const char *dir, int readonly)
{
    char p[4200];
    lock_path(dir, p, sizeof p);
    int fd = open(p, (readonly ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC, 0666);
    if (fd < 0 && readonly) fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return -1;      /* read-only folder: nobody can compact it either */
    while (flock(fd, LOCK_SH) != 0 && errno == EINTR) {}
    return fd;
}

/* Does any process hold LMDB's shared lock on lock.mdb (it has the
 * environment open)?  Our own process holds none: the caller closed its
 * handles. */
static int lmdb_in_use(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    int busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);
    return busy;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Free pages seen by txn: the sum of the freelist records (each an ID
 * list whose first word is its length), as mdb_stat -f counts them. */
static int free_pages(MDB_txn *txn, uint64_t *pages)
{
    MDB_cursor *c;
    *pages = 0;
    int rc = mdb_cursor_open(txn, 0, &c);
    if (rc) return rc;
    MDB_val k, v;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0)
        if (v.mv_size >= sizeof(size_t)) *pages += *(const size_t *)v.mv_data;
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int free_bytes(MDB_env *env, uint64_t *out)
{
    MDB_txn *txn;
    MDB_stat st;
    uint64_t pages = 0;
    *out = 0;
    int rc = mdb_env_stat(env, &st);
    if (!rc) rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc) return rc;
    rc = free_pages(txn, &pages);
    mdb_txn_abort(txn);
    *out = pages * st.ms_psize;
    return rc;
}

int store_free_space(flow_store *s, uint64_t *free_b, uint64_t *file_b, flow_err *err)
{
    char data[4200];
    snprintf(data, sizeof data, "%s/data.mdb", s->dir);
    *file_b = file_size(data);
    *free_b = 0;
    MDB_txn *txn;
    MDB_stat st;
    uint64_t pages = 0;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    rc = mdb_env_stat(s->env, &st);
    if (!rc) rc = free_pages(txn, &pages);
    store_txn_end(s, txn);
    if (rc) return store_mdb_fail(s, err, rc, "reading the free page list");
    *free_b = pages * st.ms_psize;
    return 0;
}

/* Copies the live pages of env into tmp and syncs it. */
static int copy_compact(MDB_env *env, const char *tmp, flow_err *err)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return flow_fail(err, FLOW_E_IO, "cannot create %s: %s", tmp, strerror(errno));
    int rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT);
    if (rc == 0 && fsync(fd) != 0) rc = errno;
    close(fd);
    if (rc == 0) return 0;
    unlink(tmp);
    if (rc == ENOSPC || rc == EDQUOT)
        return flow_fail(err, FLOW_E_FULL, "compacting into %s: %s (nothing changed; free "
                         "disk space for a copy of the live data)", tmp, strerror(rc));
    return flow_fail(err, FLOW_E_IO, "compacting into %s: %s (nothing changed)", tmp,
                     mdb_strerror(rc));
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* With the exclusive lock held: measures, copies and swaps. */
static int compact_locked(const char *dir, int min_free_pct, store_compact_stats *st,
                          flow_err *err)
{
    char data[4200], tmp[4200];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    snprintf(tmp, sizeof tmp, "%s/data.mdb.compact", dir);
    unlink(tmp);        /* left by a compaction that was killed */
    st->file_before = st->file_after = file_size(data);
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (!rc) rc = mdb_env_set_maxdbs(env, DB_COUNT + 2);
    if (!rc) rc = mdb_env_set_mapsize(env, (size_t)st->file_before + (1u << 20));
    if (!rc) rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0666);
    if (!rc) rc = free_bytes(env, &st->free_bytes);
    if (rc) {
        mdb_env_close(env);
        return flow_fail(err, FLOW_E_IO, "cache %s: reading it for compaction: %s", dir,
                         mdb_strerror(rc));
    }
    if (st->free_bytes * 100 < (uint64_t)min_free_pct * st->file_before) {
        mdb_env_close(env);
        snprintf(st->why, sizeof st->why, "only %llu of %llu bytes are free pages (below %d%%)",
                 (unsigned long long)st->free_bytes, (unsigned long long)st->file_before,
                 min_free_pct);
        return 0;
    }
    int r = copy_compact(env, tmp, err);
    mdb_env_close(env);
    if (r) return r;
    if (rename(tmp, data) != 0) {
        int e = errno;
        unlink(tmp);
        return flow_fail(err, FLOW_E_IO, "cache %s: replacing data.mdb by its compacted copy: "
                         "%s (nothing changed)", dir, strerror(e));
    }
    sync_dir(dir);      /* the rename is atomic either way; this makes it durable */
    st->file_after = file_size(data);
    st->compacted = 1;
    return 0;
}

int store_compact(const char *dir, int min_free_pct, store_compact_stats *st, flow_err *err)
{
    memset(st, 0, sizeof *st);
    char p[4200];
    lock_path(dir, p, sizeof p);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return flow_fail(err, FLOW_E_IO, "cache %s: cannot open %s: %s", dir, p, strerror(errno));
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(st->why, sizeof st->why, "the cache is open in another flow process (a "
                 "build or reader); freed pages are reused by new writes");
    } else if (lmdb_in_use(dir)) {
        snprintf(st->why, sizeof st->why, "another process has the LMDB environment open");
    } else {
        rc = compact_locked(dir, min_free_pct, st, err);
    }
    if (!st->compacted) {
        char data[4200];
        snprintf(data, sizeof data, "%s/data.mdb", dir);
        st->file_before = st->file_after = file_size(data);
    }
    close(fd);      /* releases the lock: waiting openers go on */
    return rc;
}
