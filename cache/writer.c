/* writer.c — store_writer: turns streamed part bytes into stored chunks and
 * publishes the artifact manifest.
 *
 * Pipeline: the caller fills 2 MiB chunk buffers (jobs); a full buffer is
 * hashed in the caller thread and, unless that chunk is already stored
 * (dedup), handed to the pool which compresses it while the caller fills
 * the next one.  Compressed chunks are written in batches, each batch one
 * write transaction committed without the meta-page sync (txn.c: LMDB's
 * MDB_NOMETASYNC; its data pages are still synced unless the store was
 * opened with STORE_SYNC_NONE, i.e. MDB_NOSYNC); nothing is visible until
 * store_writer_commit writes the manifest (with the last chunks) in one
 * synced write transaction.  Several parts may be open at once, each with
 * its own filling buffer; a part's first full chunk is held back until
 * the part closes (store_part_patch may still rewrite a header in it).
 * At most PIPELINE chunks are in flight, so memory stays at about
 * (2 x open parts + PIPELINE + BATCH) x 4 MiB whatever the part sizes.
 * A byte chunk of at most STORE_INLINE_MAX bytes (a small file's part) is
 * compressed in the caller thread instead: compressing it costs less than
 * handing it to a pool thread and back (two futex wake-ups and context
 * switches, ~20% of a 500k-file source's CPU), and zstd gives the same
 * bytes in any context.
 *
 * Float parts: the first chunk(s) of a FLOW_PART_F32 part are compressed
 * both plain and 4-byte-shuffled; the smaller wins and fixes the codec for
 * the rest of the part. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PIPELINE 6              /* chunks compressing or waiting to be stored, at most */
/* Buffers: each open part holds its filling chunk and its held first chunk
 * (see store_part_patch), plus the pipeline. */
#define NJOBS (2 * STORE_MAX_OPEN_PARTS + PIPELINE + 2)
#define BATCH 4                 /* ready chunks per write transaction */
#define TOUCH_AGE 60            /* refresh a deduplicated chunk older than this (s) */
#define DROP_EVERY 1024         /* chunks looked up or stored between map drops */

enum { J_FREE, J_FILLING, J_INFLIGHT, J_READY };

typedef struct wjob {
    pool_job pj;                /* first: the pool hands us this pointer */
    flow_store *s;
    int state, part, mode, codec, replace;
    char *raw, *out, *out2;
    size_t len, vlen;
    int64_t created;
    flow_hash h;
} wjob;

typedef struct wpart {
    char *name;
    int kind;
    uint64_t size;
    chunk_ref *chunks;
    uint32_t n, cap;
    int open;
    int f32_mode;               /* CHUNK_* mode for this part */
    struct wjob *cur;           /* being filled */
    struct wjob *first;         /* its first chunk, full, held until the part ends
                                 * so that a header in it can still be patched */
} wpart;

struct store_writer {
    flow_store *s;
    store_pool *pool;
    wpart *parts;
    int nparts, capparts;
    int nopen;                  /* parts open now */
    int legacy;                 /* part of store_part_begin/write/end, -1 if none */
    wjob jobs[NJOBS];
    wjob *fifo[NJOBS];          /* in flight, submission order */
    int fhead, fcount;
    wjob *ready[NJOBS];
    int nready;
    hset seen;                  /* chunks already handled by this writer */
    int since_drop;             /* chunks looked up or stored since drop_map_pages */
    int failed;
    flow_err ferr;
    long long inlined;          /* chunks compressed in the caller thread */
    ZSTD_CCtx *cctx;            /* for them (created on first use) */
    /* checking a stored chunk before reusing it (dedup) */
    ZSTD_DCtx *dctx;
    char *vbuf, *vscratch;
};

static void job_run(pool_job *pj, int worker)
{
    wjob *j = (wjob *)pj;
    flow_store *s = j->s;
    j->vlen = chunk_encode(s->cctx[worker], j->raw, j->len, j->mode, j->created,
                           j->out, j->out2, s->scratch[worker], &j->codec);
}

static int fail_saved(store_writer *w, flow_err *err)
{
    if (err && err != &w->ferr) *err = w->ferr;
    return w->failed;
}

static int set_failed(store_writer *w, int rc, flow_err *err)
{
    if (!w->failed) {
        w->failed = rc;
        if (err) w->ferr = *err;
        else flow_fail(&w->ferr, rc, "cache write failed");
    }
    return rc;
}

int store_writer_new(flow_store *s, store_writer **out, flow_err *err)
{
    *out = NULL;
    if (s->readonly)
        return flow_fail(err, FLOW_E_USAGE, "cache %s was opened read-only; cannot write an artifact", s->dir);
    store_writer *w = xcalloc(1, sizeof *w);
    w->s = s;
    w->legacy = -1;
    w->pool = store_get_pool(s);
    for (int i = 0; i < NJOBS; i++) {
        w->jobs[i].s = s;
        w->jobs[i].pj.fn = job_run;
    }
    hset_init(&w->seen);
    *out = w;
    return 0;
}

/* ---- chunk batches ------------------------------------------------------ */

static int put_ready(flow_store *s, MDB_txn *txn, store_writer *w)
{
    for (int i = 0; i < w->nready; i++) {
        wjob *j = w->ready[i];
        MDB_val k = { 16, j->h.b }, v = { j->vlen, j->out };
        /* replace: the stored copy failed its check; store ours over it */
        int rc = mdb_put(txn, s->dbi[DB_CHUNKS], &k, &v, j->replace ? 0 : MDB_NOOVERWRITE);
        if (rc && rc != MDB_KEYEXIST) return rc;
    }
    return 0;
}

static int put_ready_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    return put_ready(s, txn, arg);
}

static void ready_done(store_writer *w)
{
    for (int i = 0; i < w->nready; i++) w->ready[i]->state = J_FREE;
    w->nready = 0;
}

/* Drops the pages of the store's map from this process's mapping
 * (MADV_DONTNEED; they stay in the page cache).  Every chunk looked up
 * for dedup and every put walks the chunk tree through the map, so an
 * artifact of many small parts (a source of 500k files) would otherwise
 * end with the whole tree in its RSS, ~0.4 KB a part.  The map is
 * read-only and shared: the next access faults the same bytes back. */
static void drop_map_pages(store_writer *w)
{
    w->since_drop = 0;
    /* LMDB does not tell where it mapped the file (me_mapaddr is only
     * set for MDB_FIXEDMAP): find the shared mappings of its inode */
    mdb_filehandle_t fd;
    struct stat st;
    if (mdb_env_get_fd(w->s->env, &fd) != 0 || fstat(fd, &st) != 0) return;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return;
    char line[4400];
    pthread_rwlock_rdlock(&w->s->resize_lock);     /* the map stays where it is */
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, ino;
        unsigned long long off;
        char perms[8], dev[16];
        if (sscanf(line, "%lx-%lx %7s %llx %15s %lu", &lo, &hi, perms, &off, dev, &ino) == 6 &&
            ino == (unsigned long)st.st_ino && perms[3] == 's' && hi > lo)
            (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
    pthread_rwlock_unlock(&w->s->resize_lock);
    fclose(f);
}

static int flush_ready(store_writer *w, flow_err *err)
{
    if (!w->nready) return 0;
    int rc = store_write(w->s, "storing chunks", put_ready_fn, w, 1, err);
    if (rc) return set_failed(w, rc, err);
    w->since_drop += w->nready;
    ready_done(w);
    if (w->since_drop >= DROP_EVERY) drop_map_pages(w);
    return 0;
}

/* Moves the oldest in-flight job to the ready list (waiting if asked). */
static int collect_one(store_writer *w, int block)
{
    if (!w->fcount) return 0;
    wjob *j = w->fifo[w->fhead];
    if (block) pool_wait(w->pool, &j->pj);
    else if (!pool_is_done(w->pool, &j->pj)) return 0;
    w->fhead = (w->fhead + 1) % NJOBS;
    w->fcount--;
    wpart *p = &w->parts[j->part];
    if (j->mode == CHUNK_F32_TRY && p->open && p->f32_mode == CHUNK_F32_TRY)
        p->f32_mode = j->codec == CODEC_SHUF4_PLANES ? CHUNK_F32_SHUF : CHUNK_F32_PLAIN;
    j->state = J_READY;
    w->ready[w->nready++] = j;
    return 1;
}

static int get_job(store_writer *w, wjob **out, flow_err *err)
{
    for (;;) {
        while (collect_one(w, 0)) {}
        while (w->fcount >= PIPELINE) collect_one(w, 1);   /* bounds memory */
        if (w->nready >= BATCH) {
            int rc = flush_ready(w, err);
            if (rc) return rc;
        }
        for (int i = 0; i < NJOBS; i++) {
            wjob *j = &w->jobs[i];
            if (j->state != J_FREE) continue;
            if (!j->raw) {
                j->raw = xmalloc(STORE_CHUNK_SIZE);
                j->out = xmalloc(chunk_bound(STORE_CHUNK_SIZE));
            }
            j->state = J_FILLING;
            j->len = 0;
            *out = j;
            return 0;
        }
        if (w->fcount) collect_one(w, 1);
        else {
            int rc = flush_ready(w, err);
            if (rc) return rc;
        }
    }
}

/* Is chunk h stored, and intact?  Returns 1 (stored and it decodes to its
 * hash; *created gets its time), 0 (absent), 2 (stored but damaged: the
 * caller stores its own copy over it), or a negative code.  Checking costs
 * one decode, far less than the compression that dedup saves, and keeps a
 * damaged chunk from being referenced by new artifacts. */
static int chunk_stored(store_writer *w, const flow_hash *h, uint32_t len, int64_t *created,
                        flow_err *err)
{
    flow_store *s = w->s;
    if (!w->dctx) {
        w->dctx = ZSTD_createDCtx();
        if (!w->dctx) FLOW_BUG("out of memory creating a zstd context");
        w->vbuf = xmalloc(STORE_CHUNK_SIZE);
        w->vscratch = xmalloc(STORE_CHUNK_SIZE);
    }
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_val k = { 16, (void *)h->b }, v;
    rc = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
    int st = 0;
    if (rc == 0) {
        char why[256];
        st = chunk_decode(w->dctx, v.mv_data, v.mv_size, h, len, w->vbuf, w->vscratch,
                          why, sizeof why) == 0 ? 1 : 2;
        if (st == 1) *created = (int64_t)get_u64((const unsigned char *)v.mv_data + 8);
    }
    store_txn_end(s, txn);
    if (rc && rc != MDB_NOTFOUND) return store_mdb_fail(s, err, rc, "looking up a chunk");
    return st;
}

/* Refreshes the time of a stored chunk this writer reuses, so a gc (whose
 * grace protects young chunks) cannot delete it before our commit
 * references it.  Check and refresh happen in one write transaction:
 * *found = 0 if the chunk vanished meanwhile (then we store it again). */
typedef struct touch_ctx { const flow_hash *h; int found; } touch_ctx;

static int touch_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    touch_ctx *t = arg;
    MDB_val k = { 16, (void *)t->h->b }, v;
    t->found = 0;
    int rc = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (v.mv_size < CHUNK_HDR) return 0;     /* damaged: store it again */
    char *copy = xmalloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    put_u64((unsigned char *)copy + 8, (uint64_t)store_now());
    MDB_val nv = { v.mv_size, copy };
    rc = mdb_put(txn, s->dbi[DB_CHUNKS], &k, &nv, 0);
    free(copy);
    t->found = rc == 0;
    return rc;
}

/* Chunk j of part pi is complete: hash it, record it as chunk idx of the
 * part, and compress it unless it is already stored. */
static int submit_job(store_writer *w, int pi, wjob *j, uint32_t idx, flow_err *err)
{
    wpart *p = &w->parts[pi];
    j->h = flow_hash_bytes(j->raw, j->len);
    p->chunks[idx].h = j->h;
    p->chunks[idx].len = (uint32_t)j->len;
    int added;
    hset_put(&w->seen, &j->h, &added);
    if (!added) { j->state = J_FREE; return 0; }
    int64_t created = 0;
    if (++w->since_drop >= DROP_EVERY) drop_map_pages(w);
    int st = chunk_stored(w, &j->h, (uint32_t)j->len, &created, err);
    if (st < 0) { j->state = J_FREE; return set_failed(w, st, err); }
    if (st == 1 && store_now() - created > TOUCH_AGE) {
        touch_ctx t = { &j->h, 0 };
        int rc = store_write(w->s, "refreshing a reused chunk", touch_fn, &t, 1, err);
        if (rc) { j->state = J_FREE; return set_failed(w, rc, err); }
        st = t.found ? 1 : 2;     /* vanished or damaged meanwhile: store ours */
    }
    if (st == 1) {
        j->state = J_FREE;
        return 0;
    }
    j->replace = st == 2;
    j->mode = p->kind == FLOW_PART_F32 ? p->f32_mode : CHUNK_BYTES;
    if (j->mode == CHUNK_F32_TRY && !j->out2) j->out2 = xmalloc(chunk_bound(STORE_CHUNK_SIZE));
    j->part = pi;
    j->created = store_now();
    if (j->mode == CHUNK_BYTES && j->len <= STORE_INLINE_MAX) {
        if (!w->cctx) {
            w->cctx = ZSTD_createCCtx();
            if (!w->cctx) FLOW_BUG("out of memory creating a zstd context");
        }
        /* CHUNK_BYTES uses no shuffle scratch */
        j->vlen = chunk_encode(w->cctx, j->raw, j->len, j->mode, j->created, j->out, NULL, NULL,
                               &j->codec);
        j->state = J_READY;
        w->ready[w->nready++] = j;
        w->inlined++;
        return 0;
    }
    j->state = J_INFLIGHT;
    w->fifo[(w->fhead + w->fcount) % NJOBS] = j;
    w->fcount++;
    pool_submit(w->pool, &j->pj);
    return 0;
}

/* The part's filling buffer is complete (or the part ends): appends it as
 * the next chunk.  The part's first full chunk is held back instead (its
 * slot reserved) until the part ends. */
static int submit_cur(store_writer *w, int pi, int ending, flow_err *err)
{
    wpart *p = &w->parts[pi];
    wjob *j = p->cur;
    p->cur = NULL;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->chunks = xrealloc(p->chunks, p->cap * sizeof *p->chunks);
    }
    uint32_t idx = p->n++;
    if (idx == 0 && !ending) {
        p->first = j;
        p->chunks[0].len = (uint32_t)j->len;
        return 0;
    }
    return submit_job(w, pi, j, idx, err);
}

/* ---- parts ---------------------------------------------------------------- */

int store_part_open(store_writer *w, const char *name, int kind, int *part, flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    if (w->nopen >= STORE_MAX_OPEN_PARTS)
        return flow_fail(err, FLOW_E_USAGE, "cache: part '%s' would be the %dth open part "
                         "(at most %d at once)", name, w->nopen + 1, STORE_MAX_OPEN_PARTS);
    size_t nl = name ? strlen(name) : 0;
    if (nl == 0 || nl > 4000)
        return flow_fail(err, FLOW_E_USAGE, "cache: part name '%s' must have 1..4000 bytes",
                         name ? name : "(null)");
    if (kind != FLOW_PART_BYTES && kind != FLOW_PART_F32)
        return flow_fail(err, FLOW_E_USAGE, "cache: part '%s': unknown part kind %d", name, kind);
    if (w->nparts == w->capparts) {
        w->capparts = w->capparts ? 2 * w->capparts : 8;
        w->parts = xrealloc(w->parts, (size_t)w->capparts * sizeof *w->parts);
    }
    wpart *p = &w->parts[w->nparts];
    memset(p, 0, sizeof *p);
    p->name = xstrdup(name);
    p->kind = kind;
    p->open = 1;
    p->f32_mode = kind == FLOW_PART_F32 ? CHUNK_F32_TRY : CHUNK_BYTES;
    *part = w->nparts++;
    w->nopen++;
    return 0;
}

static wpart *open_part(store_writer *w, int part, const char *what)
{
    if (part < 0 || part >= w->nparts || !w->parts[part].open)
        FLOW_BUG("cache: %s on part %d, which is not open", what, part);
    return &w->parts[part];
}

int store_part_append(store_writer *w, int part, const void *data, size_t len, flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    wpart *p = open_part(w, part, "store_part_append");
    const char *d = data;
    p->size += len;
    while (len) {
        if (!p->cur) {
            int rc = get_job(w, &p->cur, err);
            if (rc) return rc;
        }
        wjob *j = p->cur;
        size_t n = STORE_CHUNK_SIZE - j->len;
        if (n > len) n = len;
        memcpy(j->raw + j->len, d, n);
        j->len += n;
        d += n;
        len -= n;
        if (j->len == STORE_CHUNK_SIZE) {
            int rc = submit_cur(w, part, 0, err);
            if (rc) return rc;
        }
    }
    return 0;
}

int store_part_patch(store_writer *w, int part, uint64_t offset, const void *data, size_t len,
                     flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    wpart *p = open_part(w, part, "store_part_patch");
    wjob *j = p->first ? p->first : p->n == 0 ? p->cur : NULL;
    if (!j || offset > j->len || len > j->len - offset)
        return flow_fail(err, FLOW_E_USAGE, "cache: part '%s': patch of %zu bytes at offset %llu "
                         "is outside its first %zu bytes written", p->name, len,
                         (unsigned long long)offset, j ? j->len : 0);
    memcpy(j->raw + offset, data, len);
    return 0;
}

int store_part_close(store_writer *w, int part, flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    wpart *p = open_part(w, part, "store_part_close");
    if (p->cur) {
        if (p->cur->len) {
            int rc = submit_cur(w, part, 1, err);
            if (rc) return rc;
        } else {
            p->cur->state = J_FREE;
            p->cur = NULL;
        }
    }
    if (p->first) {
        wjob *j = p->first;
        p->first = NULL;
        int rc = submit_job(w, part, j, 0, err);
        if (rc) return rc;
    }
    p->open = 0;
    w->nopen--;
    if (w->legacy == part) w->legacy = -1;
    return 0;
}

int store_part_begin(store_writer *w, const char *name, int kind, flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    if (w->legacy >= 0)
        return flow_fail(err, FLOW_E_USAGE, "cache: part '%s' begun while part '%s' is open",
                         name, w->parts[w->legacy].name);
    return store_part_open(w, name, kind, &w->legacy, err);
}

int store_part_write(store_writer *w, const void *data, size_t len, flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    if (w->legacy < 0) return flow_fail(err, FLOW_E_USAGE, "cache: store_part_write outside a part");
    return store_part_append(w, w->legacy, data, len, err);
}

int store_part_end(store_writer *w, flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    if (w->legacy < 0) return flow_fail(err, FLOW_E_USAGE, "cache: store_part_end without a part");
    return store_part_close(w, w->legacy, err);
}

static int drain(store_writer *w)
{
    while (w->fcount) collect_one(w, 1);
    return 0;
}

/* ---- commit ------------------------------------------------------------- */

typedef struct commit_ctx {
    store_writer *w;
    const flow_hash *key;
    manifest_part *mp;
    int nparts;
    flow_hash content;
    const char *meta;
    const char *log;             /* encoded log value */
    size_t loglen;
    int64_t created;
} commit_ctx;

static int commit_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    commit_ctx *c = arg;
    int rc = put_ready(s, txn, c->w);
    if (rc) return rc;
    char hex[33];
    flow_hash_hex(c->key, hex);
    for (int i = 0; i < c->nparts; i++) {
        manifest_part *p = &c->mp[i];
        p->stored = 0;
        for (uint32_t k = 0; k < p->nchunks; k++) {
            MDB_val kk = { 16, (void *)p->chunks[k].h.b }, v;
            rc = mdb_get(txn, s->dbi[DB_CHUNKS], &kk, &v);
            if (rc == MDB_NOTFOUND) {
                char ch[33];
                flow_hash_hex(&p->chunks[k].h, ch);
                return flow_fail(err, FLOW_E_NOTFOUND, "artifact %s: chunk %u (%s) of part '%s' "
                                 "vanished before the commit (a concurrent `flow gc` with a "
                                 "short grace?); rebuild the node", hex, k, ch, p->name);
            }
            if (rc) return rc;
            p->stored += v.mv_size - CHUNK_HDR;
        }
    }
    flow_buf m;
    buf_init(&m);
    manifest_encode(&m, c->key, &c->content, c->created, c->mp, c->nparts, c->meta);
    MDB_val k = { 16, (void *)c->key->b }, v = { m.len, m.data };
    rc = mdb_put(txn, s->dbi[DB_ARTIFACTS], &k, &v, 0);
    buf_release(&m);
    if (rc) return rc;
    v.mv_size = c->loglen;
    v.mv_data = (void *)c->log;
    rc = mdb_put(txn, s->dbi[DB_LOGS], &k, &v, 0);
    if (rc) return rc;
    /* the node's checkpoint is no longer needed: its record and chunks go */
    return checkpoint_drop_in(s, txn, c->key);
}

/* Log value: u32 "FLLG", u32 version 1, u8 codec (0 raw, 1 zstd), u64 raw
 * length, payload. */
#define LOG_MAGIC 0x474C4C46u
static char *encode_log(const char *log, size_t len, size_t *out_len)
{
    size_t cap = 17 + ZSTD_compressBound(len);
    char *v = xmalloc(cap);
    unsigned char *h = (unsigned char *)v;
    put_u32(h, LOG_MAGIC);
    put_u32(h + 4, 1);
    put_u64(h + 9, len);
    size_t z = len > 256 ? ZSTD_compress(v + 17, cap - 17, log, len, STORE_ZSTD_LEVEL) : (size_t)-1;
    if (len <= 256 || ZSTD_isError(z) || z >= len) {
        h[8] = 0;
        if (len) memcpy(v + 17, log, len);
        z = len;
    } else {
        h[8] = 1;
    }
    *out_len = 17 + z;
    return v;
}

int store_log_decode(const void *val, size_t vlen, char **log, size_t *len)
{
    const unsigned char *h = val;
    if (vlen < 17 || get_u32(h) != LOG_MAGIC || get_u32(h + 4) != 1) return FLOW_E_CORRUPT;
    uint64_t n = get_u64(h + 9);
    if (n > ((uint64_t)1 << 40)) return FLOW_E_CORRUPT;
    char *out = xmalloc((size_t)n + 1);
    if (h[8] == 0) {
        if (vlen - 17 != n) { free(out); return FLOW_E_CORRUPT; }
        memcpy(out, h + 17, (size_t)n);
    } else {
        size_t r = ZSTD_decompress(out, (size_t)n, h + 17, vlen - 17);
        if (ZSTD_isError(r) || r != n) { free(out); return FLOW_E_CORRUPT; }
    }
    out[n] = 0;
    *log = out;
    *len = (size_t)n;
    return 0;
}

int store_writer_commit(store_writer *w, const flow_hash *key,
                        const char *meta_json, const char *log, size_t log_len,
                        flow_err *err)
{
    if (w->failed) return fail_saved(w, err);
    for (int i = 0; i < w->nparts; i++)
        if (w->parts[i].open) {
            int rc = store_part_close(w, i, err);
            if (rc) return rc;
        }
    drain(w);
    char hex[33];
    flow_hash_hex(key, hex);
    manifest_part *mp = xcalloc(w->nparts ? (size_t)w->nparts : 1, sizeof *mp);
    for (int i = 0; i < w->nparts; i++) {
        wpart *p = &w->parts[i];
        mp[i].name = p->name;
        mp[i].kind = p->kind;
        mp[i].size = p->size;
        mp[i].chunks = p->chunks;
        mp[i].nchunks = p->n;
        mp[i].content = part_content_hash(p->size, p->chunks, p->n);
    }
    qsort(mp, (size_t)w->nparts, sizeof *mp, part_name_cmp);
    for (int i = 1; i < w->nparts; i++)
        if (strcmp(mp[i - 1].name, mp[i].name) == 0) {
            int rc = flow_fail(err, FLOW_E_USAGE, "artifact %s: part '%s' written twice", hex, mp[i].name);
            free(mp);
            return set_failed(w, rc, err);
        }
    commit_ctx c = { w, key, mp, w->nparts, artifact_content_hash(mp, w->nparts),
                     meta_json ? meta_json : "{}", NULL, 0, store_now() };
    char *lv = encode_log(log ? log : "", log ? log_len : 0, &c.loglen);
    c.log = lv;
    char what[80];
    snprintf(what, sizeof what, "committing artifact %s", hex);
    int rc = store_write(w->s, what, commit_fn, &c, 0, err);
    free(lv);
    free(mp);
    if (rc) return set_failed(w, rc, err);
    ready_done(w);
    /* a second commit would publish nothing new; forbid it */
    flow_fail(&w->ferr, FLOW_E_USAGE, "artifact %s: writer already committed", hex);
    w->failed = FLOW_E_USAGE;
    return 0;
}

long long store_writer_inlined(const store_writer *w) { return w->inlined; }

void store_writer_free(store_writer *w)
{
    if (!w) return;
    drain(w);
    for (int i = 0; i < NJOBS; i++) {
        free(w->jobs[i].raw);
        free(w->jobs[i].out);
        free(w->jobs[i].out2);
    }
    for (int i = 0; i < w->nparts; i++) {
        free(w->parts[i].name);
        free(w->parts[i].chunks);
    }
    free(w->parts);
    hset_release(&w->seen);
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeDCtx(w->dctx);
    free(w->vbuf);
    free(w->vscratch);
    free(w);
}

int store_put_chunks(flow_store *s, const void *data, size_t len, chunk_ref **chunks,
                     uint32_t *nchunks, flow_err *err)
{
    store_writer *w;
    int rc = store_writer_new(s, &w, err);
    if (rc) return rc;
    /* checkpoints are mostly float32 state; F32 tries both codecs on the
     * first chunk(s) and keeps plain zstd when shuffling does not help */
    rc = store_part_begin(w, "blob", FLOW_PART_F32, err);
    if (!rc) rc = store_part_write(w, data, len, err);
    if (!rc) rc = store_part_end(w, err);
    if (!rc) {
        drain(w);
        rc = flush_ready(w, err);
    }
    if (!rc) {
        wpart *p = &w->parts[0];
        *nchunks = p->n;
        *chunks = p->chunks;
        p->chunks = NULL;
    }
    store_writer_free(w);
    return rc;
}
