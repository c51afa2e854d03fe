/* filehash.c — flow_file_hash: content hashes of source files through the
 * store's stat cache, so a null build does not re-read the corpus.
 *
 * A file is rehashed when its (size, mtime_ns, inode) changed.  Like git's
 * "racily clean" index entries, a file modified within the last 2 seconds
 * is hashed but not cached: a write in the same timestamp tick after the
 * hash could otherwise go unnoticed.
 *
 * flow_file_hash_many does the lookups (and the reads of misses) of a
 * whole file list on up to 4 threads: the stat cache is only read while
 * they run (each thread through its own store_stat_reader: one LMDB read
 * transaction per thread, MDB_NOTLS, not one per file) and written by the
 * caller's thread once they are done.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int hash_fd(int fd, const char *path, flow_hash *out, flow_err *err)
{
    flow_hasher *h = flow_hasher_new();
    static __thread char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            flow_hasher_free(h);
            return flow_fail(err, FLOW_E_IO, "cannot read '%s': %s", path, strerror(errno));
        }
        if (n == 0) break;
        flow_hasher_update(h, buf, (size_t)n);
    }
    *out = flow_hasher_digest(h);
    flow_hasher_free(h);
    return 0;
}

int flow_file_hash(flow_ctx *c, const char *path, flow_hash *out)
{
    flow_err tmp, *err = c ? &c->err : &tmp;
    struct stat st;
    if (stat(path, &st) != 0)
        return flow_fail(err, FLOW_E_IO, "cannot stat '%s': %s", path, strerror(errno));
    flow_file_stat fs = { (uint64_t)st.st_size,
                          (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, (uint64_t)st.st_ino };
    return flow_file_hash_stat(c, path, &fs, out);
}

int flow_file_hash_stat(flow_ctx *c, const char *path, const flow_file_stat *st, flow_hash *out)
{
    flow_err tmp, *err = c ? &c->err : &tmp;
    flow_store *s = c ? c->store : NULL;
    /* stat first, open only on a miss: a null build then costs one stat
     * and one LMDB lookup per file */
    if (s && store_stat_get(s, path, st->size, st->mtime_ns, st->inode, out) == 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return flow_fail(err, FLOW_E_IO, "cannot open '%s': %s", path, strerror(errno));
    int rc = hash_fd(fd, path, out, err);
    close(fd);
    if (rc) return rc;
    /* floor division: a negative mtime_ns (before 1970) still compares */
    int64_t mtime_s = st->mtime_ns / 1000000000 - (st->mtime_ns % 1000000000 < 0);
    if (s && mtime_s < (int64_t)time(NULL) - 2) {
        flow_err perr;
        /* a failed put only costs a rehash next time */
        (void)store_stat_put(s, path, st->size, st->mtime_ns, st->inode, out, &perr);
    }
    return 0;
}

int flow_file_threads(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 4 ? 4 : n;
}

/* Files below this count are hashed on the caller's thread only. */
#define HASH_PARALLEL 4096

typedef struct hash_job {
    flow_store *s;
    char *const *paths;
    const flow_file_stat *st;
    flow_hash *out;
    char *miss;             /* [i] = 1: hashed from the file, to be cached */
    int lo, hi;
    int bad;                /* first failing index, or -1 */
    flow_err err;
} hash_job;

static void *hash_range(void *arg)
{
    hash_job *j = arg;
    time_t now = time(NULL);
    /* one read transaction for the whole range */
    store_stat_reader *rd = j->s ? store_stat_reader_open(j->s) : NULL;
    for (int i = j->lo; i < j->hi; i++) {
        const flow_file_stat *st = &j->st[i];
        if (rd && store_stat_read(rd, j->paths[i], st->size, st->mtime_ns, st->inode, &j->out[i]) == 0)
            continue;
        int fd = open(j->paths[i], O_RDONLY | O_CLOEXEC);
        int rc = fd < 0 ? flow_fail(&j->err, FLOW_E_IO, "cannot open '%s': %s", j->paths[i], strerror(errno))
                        : hash_fd(fd, j->paths[i], &j->out[i], &j->err);
        if (fd >= 0) close(fd);
        if (rc) {
            j->bad = i;
            break;
        }
        int64_t mtime_s = st->mtime_ns / 1000000000 - (st->mtime_ns % 1000000000 < 0);
        j->miss[i] = mtime_s < (int64_t)now - 2;
    }
    store_stat_reader_close(rd);
    return NULL;
}

int flow_file_hash_many(flow_ctx *c, char *const *paths, const flow_file_stat *st, int n, flow_hash *out)
{
    flow_err tmp, *err = c ? &c->err : &tmp;
    flow_store *s = c ? c->store : NULL;
    int nt = n < HASH_PARALLEL ? 1 : flow_file_threads();
    char *miss = xcalloc((size_t)n + 1, 1);
    hash_job job[4];
    pthread_t th[4];
    int started[4] = {0};
    for (int t = 0; t < nt; t++) {
        job[t] = (hash_job){ s, paths, st, out, miss, (int)((long long)n * t / nt),
                             (int)((long long)n * (t + 1) / nt), -1, {0, {0}} };
        if (t > 0) started[t] = pthread_create(&th[t], NULL, hash_range, &job[t]) == 0;
    }
    hash_range(&job[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else hash_range(&job[t]);   /* no thread: this one does it */
    }
    int rc = 0;
    for (int t = 0; t < nt && !rc; t++)     /* ranges are in list order */
        if (job[t].bad >= 0) {
            *err = job[t].err;
            rc = err->code ? err->code : FLOW_E_IO;
        }
    for (int i = 0; i < n && !rc && s; i++)
        if (miss[i]) {
            flow_err perr;
            /* a failed put only costs a rehash next time */
            (void)store_stat_put(s, paths[i], st[i].size, st[i].mtime_ns, st[i].inode, &out[i], &perr);
        }
    free(miss);
    return rc;
}
