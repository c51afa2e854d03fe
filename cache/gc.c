/* gc.c — maintenance: garbage collection and verification.
 *
 * gc runs in one write transaction (so no commit can slip between reading
 * the roots, marking and sweeping): it reads the live builds' roots
 * (records.c), deletes the candidate artifacts (and logs) that neither
 * keep[] nor a root holds, marks every chunk referenced by a remaining
 * artifact or checkpoint, and deletes unmarked chunks older than grace_s —
 * younger ones may belong to a build that has stored chunks but not yet
 * committed its manifest.
 *
 * verify re-reads and re-hashes every chunk of every artifact and
 * checkpoint, plus the part and artifact content hashes, and reports every
 * damaged item. */
#include "store_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct keylist { flow_hash *k; size_t n, cap; } keylist;

static void kl_add(keylist *l, const void *b)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->k = xrealloc(l->k, l->cap * sizeof *l->k);
    }
    memcpy(l->k[l->n++].b, b, 16);
}

typedef struct gc_ctx {
    const flow_hash *keep, *cand;
    size_t nkeep, ncand;
    int grace_s;
    store_gc_stats st;
    hset keep_set, cand_set, roots, reach;
} gc_ctx;

static int del_all(MDB_txn *txn, MDB_dbi dbi, const keylist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        MDB_val k = { 16, l->k[i].b };
        int rc = mdb_del(txn, dbi, &k, NULL);
        if (rc && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
}

/* Is the artifact `key` kept: in keep[], a live build's root, or not a
 * candidate (committed after the caller listed them)? */
static int kept(gc_ctx *c, const flow_hash *key)
{
    if (hset_get(&c->keep_set, key) || hset_get(&c->roots, key)) return 1;
    if (c->cand && !hset_get(&c->cand_set, key)) {
        c->st.artifacts_recent++;
        return 1;
    }
    return 0;
}

/* 1. artifacts: drop the unkept, mark the chunks of the kept */
static int gc_artifacts(flow_store *s, MDB_txn *txn, gc_ctx *c)
{
    keylist dead = {0};
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &cur);
    if (rc) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) continue;
        flow_hash key;
        memcpy(key.b, k.mv_data, 16);
        if (!kept(c, &key)) {
            kl_add(&dead, key.b);
            c->st.artifacts_removed++;
            c->st.bytes_freed += v.mv_size;
            continue;
        }
        manifest m;
        flow_err e;
        if (manifest_parse(v.mv_data, v.mv_size, &key, &m, 1, &e) != 0) continue;  /* verify reports it */
        /* small parts share chunks: consecutive parts name the same one
         * (500k one-article parts, a few hundred chunks), so only a chunk
         * unlike the previous one is looked up */
        const flow_hash *last = NULL;
        for (int p = 0; p < m.art->nparts; p++)
            for (uint32_t i = 0; i < m.nchunks[p]; i++) {
                const flow_hash *h = &m.chunks[p][i].h;
                if (last && flow_hash_eq(last, h)) continue;
                hset_put(&c->reach, h, NULL);
                last = h;
            }
        manifest_release(&m);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) rc = del_all(txn, s->dbi[DB_ARTIFACTS], &dead);
    free(dead.k);
    return rc;
}

/* 2. logs whose artifact is gone */
static int gc_logs(flow_store *s, MDB_txn *txn, gc_ctx *c)
{
    keylist dead = {0};
    MDB_cursor *cur;
    MDB_val k, v, v2;
    int rc = mdb_cursor_open(txn, s->dbi[DB_LOGS], &cur);
    if (rc) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || mdb_get(txn, s->dbi[DB_ARTIFACTS], &k, &v2) == 0) continue;
        kl_add(&dead, k.mv_data);
        c->st.bytes_freed += v.mv_size;
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) rc = del_all(txn, s->dbi[DB_LOGS], &dead);
    free(dead.k);
    return rc;
}

/* 3. checkpoints keep their chunks; damaged records go */
static int gc_checkpoints(flow_store *s, MDB_txn *txn, gc_ctx *c)
{
    keylist dead = {0};
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_CHECKPOINTS], &cur);
    if (rc) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t size;
        chunk_ref *ch;
        uint32_t n;
        if (k.mv_size != 16) continue;
        if (checkpoint_decode(v.mv_data, v.mv_size, &size, &ch, &n) != 0) {
            kl_add(&dead, k.mv_data);
            c->st.bytes_freed += v.mv_size;
            continue;
        }
        for (uint32_t i = 0; i < n; i++) hset_put(&c->reach, &ch[i].h, NULL);
        free(ch);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) rc = del_all(txn, s->dbi[DB_CHECKPOINTS], &dead);
    free(dead.k);
    return rc;
}

/* 4. sweep chunks: keep those younger than the grace, and those written
 * since the oldest live lease was taken (a build in progress, however
 * long, whose chunks are not referenced yet; a writer refreshes an old
 * chunk it reuses), with a minute of margin */
static int gc_chunks(flow_store *s, MDB_txn *txn, gc_ctx *c)
{
    int64_t now = store_now(), oldest;
    int rc = store_oldest_live_lease(s, txn, &oldest);
    if (rc) return rc;
    int64_t cutoff = now - c->grace_s;
    if (oldest != INT64_MAX && oldest - 60 < cutoff) cutoff = oldest - 60;
    keylist dead = {0};
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_CHUNKS], &cur))) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) continue;
        flow_hash h;
        memcpy(h.b, k.mv_data, 16);
        if (hset_get(&c->reach, &h)) continue;
        int64_t created = v.mv_size >= CHUNK_HDR ? (int64_t)get_u64((const unsigned char *)v.mv_data + 8) : 0;
        if (created > cutoff) continue;
        kl_add(&dead, h.b);
        c->st.chunks_removed++;
        c->st.bytes_freed += v.mv_size;
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) rc = del_all(txn, s->dbi[DB_CHUNKS], &dead);
    free(dead.k);
    return rc;
}

static int gc_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    gc_ctx *c = arg;
    memset(&c->st, 0, sizeof c->st);
    hset_release(&c->roots);
    hset_release(&c->reach);
    hset_init(&c->roots);
    hset_init(&c->reach);
    /* the roots are read inside this transaction: a build registers its
     * live set before it reads or writes, so nothing it uses slips by */
    int rc = store_live_roots(s, txn, &c->roots, &c->st);
    if (!rc) rc = gc_artifacts(s, txn, c);
    if (!rc) rc = gc_logs(s, txn, c);
    if (!rc) rc = gc_checkpoints(s, txn, c);
    if (!rc) rc = gc_chunks(s, txn, c);
    return rc;
}

int store_gc(flow_store *s, const flow_hash *keep, size_t nkeep, const flow_hash *candidates,
             size_t ncand, int grace_s, store_gc_stats *st, flow_err *err)
{
    gc_ctx c;
    memset(&c, 0, sizeof c);
    c.keep = keep;
    c.nkeep = nkeep;
    c.cand = candidates;
    c.ncand = ncand;
    c.grace_s = grace_s;
    hset_init(&c.keep_set);
    hset_init(&c.cand_set);
    hset_init(&c.roots);
    hset_init(&c.reach);
    for (size_t i = 0; i < nkeep; i++) hset_put(&c.keep_set, &keep[i], NULL);
    for (size_t i = 0; candidates && i < ncand; i++) hset_put(&c.cand_set, &candidates[i], NULL);
    int rc = store_write(s, "collecting garbage", gc_fn, &c, 0, err);
    if (st) {
        memset(st, 0, sizeof *st);
        if (!rc) *st = c.st;
    }
    hset_release(&c.keep_set);
    hset_release(&c.cand_set);
    hset_release(&c.roots);
    hset_release(&c.reach);
    return rc;
}

static int collect_keys(flow_store *s, int db, keylist *l, flow_err *err);

int store_list_artifacts(flow_store *s, flow_hash **keys, size_t *n, flow_err *err)
{
    keylist l = {0};
    int rc = collect_keys(s, DB_ARTIFACTS, &l, err);
    if (rc) {
        free(l.k);
        l.k = NULL;
        l.n = 0;
    }
    *keys = l.k;
    *n = l.n;
    return rc;
}

/* ---- verify ----------------------------------------------------------------- */

typedef struct vctx {
    flow_store *s;
    void (*report)(const char *what, void *arg);
    void *arg;
    int bad;
    char first[1024];
    hset good;
    ZSTD_DCtx *dctx;
    char *buf, *scratch;
} vctx;

static void bad(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(vctx *v, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!v->bad++) snprintf(v->first, sizeof v->first, "%s", msg);
    if (v->report) v->report(msg, v->arg);
}

/* Checks one chunk; returns 0 when good. */
static int check_chunk(vctx *v, const chunk_ref *c, char *why, size_t wl, flow_err *err)
{
    if (hset_get(&v->good, &c->h)) return 0;
    int rc = chunk_fetch(v->s, &c->h, c->len, v->buf, v->dctx, v->scratch, why, wl, err);
    if (rc == 0) hset_put(&v->good, &c->h, NULL);
    return rc;
}

static int verify_artifact(vctx *v, const flow_hash *key, flow_err *err)
{
    char hex[33];
    flow_hash_hex(key, hex);
    manifest m;
    flow_err e;
    int rc = store_load_manifest(v->s, key, &m, 1, &e);
    if (rc == FLOW_E_NOTFOUND) return 0;      /* removed meanwhile */
    if (rc == FLOW_E_CORRUPT) { bad(v, "%s", e.msg); return 0; }
    if (rc) { if (err) *err = e; return rc; }
    manifest_part *mp = xcalloc(m.art->nparts ? (size_t)m.art->nparts : 1, sizeof *mp);
    for (int p = 0; p < m.art->nparts && !rc; p++) {
        const store_part_info *pi = &m.art->parts[p];
        for (uint32_t i = 0; i < m.nchunks[p]; i++) {
            char why[256], ch[33];
            rc = check_chunk(v, &m.chunks[p][i], why, sizeof why, err);
            if (rc == FLOW_E_CORRUPT) {
                flow_hash_hex(&m.chunks[p][i].h, ch);
                bad(v, "artifact %s part '%s' chunk %u (%s): %s", hex, pi->name, i, ch, why);
                rc = 0;
            } else if (rc) {
                break;
            }
        }
        flow_hash pc = part_content_hash(pi->size, m.chunks[p], m.nchunks[p]);
        if (!flow_hash_eq(&pc, &pi->content))
            bad(v, "artifact %s part '%s': content hash does not match its chunk list", hex, pi->name);
        mp[p].name = pi->name;
        mp[p].content = pi->content;
    }
    if (!rc) {
        flow_hash ac = artifact_content_hash(mp, m.art->nparts);
        if (!flow_hash_eq(&ac, &m.art->content))
            bad(v, "artifact %s: content hash does not match its parts", hex);
    }
    free(mp);
    manifest_release(&m);
    return rc;
}

static int collect_keys(flow_store *s, int db, keylist *l, flow_err *err)
{
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_cursor *c;
    rc = mdb_cursor_open(txn, s->dbi[db], &c);
    if (!rc) {
        MDB_val k, v;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
            if (k.mv_size == 16) kl_add(l, k.mv_data);
        mdb_cursor_close(c);
    }
    store_txn_end(s, txn);
    return rc == MDB_NOTFOUND ? 0 : store_mdb_fail(s, err, rc, "listing keys");
}

/* Reads key's checkpoint record into rec (empty when there is none). */
static int read_checkpoint(flow_store *s, const flow_hash *key, flow_buf *rec, flow_err *err)
{
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_val k = { 16, (void *)key->b }, val;
    rc = mdb_get(txn, s->dbi[DB_CHECKPOINTS], &k, &val);
    rec->len = 0;
    if (rc == 0) buf_add(rec, val.mv_data, val.mv_size);
    store_txn_end(s, txn);
    return rc && rc != MDB_NOTFOUND ? store_mdb_fail(s, err, rc, "reading a checkpoint") : 0;
}

/* A newer checkpoint replacing this one releases its chunks: a chunk gone
 * under a record that changed meanwhile is no damage. */
static int checkpoint_replaced(flow_store *s, const flow_hash *key, const flow_buf *rec)
{
    flow_buf now;
    flow_err e;
    buf_init(&now);
    int same = read_checkpoint(s, key, &now, &e) == 0 && now.len == rec->len &&
               memcmp(now.data, rec->data, rec->len) == 0;
    buf_release(&now);
    return !same;
}

static int verify_checkpoint(vctx *v, const flow_hash *key, flow_err *err)
{
    char hex[33];
    flow_hash_hex(key, hex);
    flow_buf rec;
    buf_init(&rec);
    int rc = read_checkpoint(v->s, key, &rec, err);
    uint64_t size;
    chunk_ref *ch = NULL;
    uint32_t n = 0;
    if (rc || rec.len == 0) { buf_release(&rec); return rc; }
    if (checkpoint_decode(rec.data, rec.len, &size, &ch, &n)) {
        bad(v, "checkpoint %s: record is damaged", hex);
        buf_release(&rec);
        return 0;
    }
    for (uint32_t i = 0; i < n && !rc; i++) {
        char why[256], chx[33];
        rc = check_chunk(v, &ch[i], why, sizeof why, err);
        if (rc == FLOW_E_CORRUPT) {
            rc = 0;
            if (checkpoint_replaced(v->s, key, &rec)) break;
            flow_hash_hex(&ch[i].h, chx);
            bad(v, "checkpoint %s chunk %u (%s): %s", hex, i, chx, why);
        }
    }
    free(ch);
    buf_release(&rec);
    return rc;
}

int store_verify(flow_store *s, void (*report)(const char *what, void *arg),
                 void *arg, flow_err *err)
{
    vctx v = { s, report, arg, 0, "", {0}, ZSTD_createDCtx(), xmalloc(STORE_CHUNK_SIZE),
               xmalloc(STORE_CHUNK_SIZE) };
    hset_init(&v.good);
    keylist arts = {0}, ckpts = {0};
    int rc = collect_keys(s, DB_ARTIFACTS, &arts, err);
    if (!rc) rc = collect_keys(s, DB_CHECKPOINTS, &ckpts, err);
    for (size_t i = 0; i < arts.n && !rc; i++) rc = verify_artifact(&v, &arts.k[i], err);
    for (size_t i = 0; i < ckpts.n && !rc; i++) rc = verify_checkpoint(&v, &ckpts.k[i], err);
    free(arts.k);
    free(ckpts.k);
    hset_release(&v.good);
    ZSTD_freeDCtx(v.dctx);
    free(v.buf);
    free(v.scratch);
    if (rc) return rc;
    if (v.bad)
        return flow_fail(err, FLOW_E_CORRUPT, "cache %s: %d damaged item%s (first: %s); "
                         "run `flow verify --repair` to remove them and what references them, then rebuild",
                         s->dir, v.bad, v.bad == 1 ? "" : "s", v.first);
    return 0;
}
