/* filehash.c — flow_file_hash: content hashes of source files through the
 * store's stat cache, so a null build does not re-read the corpus.
 *
 * A file is rehashed when its (size, mtime_ns, inode) changed.  Like git's
 * "racily clean" index entries, a file modified within the last 2 seconds
 * is hashed but not cached: a write in the same timestamp tick after the
 * hash could otherwise go unnoticed.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
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
