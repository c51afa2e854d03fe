/* checkpoint.c — checkpoints: a stage's intermediate state, keyed by the
 * node key, possibly large (model weights plus optimizer state).  The
 * bytes go into ordinary content-addressed chunks; the checkpoints table
 * holds only the chunk list, so gc sees those chunks as reachable and
 * identical chunks are shared with artifacts.  The record is dropped when
 * the node's artifact commits (writer.c) or by store_checkpoint_drop.
 *
 * Space: a put that replaces a checkpoint, and the artifact commit that
 * drops it, delete the replaced checkpoint's chunks that nothing else
 * references (checkpoint_release), in the same write transaction.  So a
 * training node has at most two checkpoints' chunks at any time: the last
 * complete one, and the one being written.
 *
 * Record (little-endian): u32 "FLCK", u32 version 1, u64 size, i64 created,
 * u32 nchunks, nchunks x { hash[16], u32 raw_len }, 16-byte XXH3-128 of the
 * preceding bytes. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

#define CKPT_MAGIC 0x4B434C46u

int checkpoint_decode(const void *val, size_t vlen, uint64_t *size, chunk_ref **chunks,
                      uint32_t *n)
{
    const unsigned char *p = val;
    if (vlen < 44 || get_u32(p) != CKPT_MAGIC || get_u32(p + 4) != 1) return FLOW_E_CORRUPT;
    flow_hash sum = flow_hash_bytes(p, vlen - 16);
    if (memcmp(sum.b, p + vlen - 16, 16) != 0) return FLOW_E_CORRUPT;
    uint32_t nc = get_u32(p + 24);
    if (vlen != 44 + (size_t)nc * 20) return FLOW_E_CORRUPT;
    *size = get_u64(p + 8);
    chunk_ref *c = xmalloc((nc ? nc : 1) * sizeof *c);
    uint64_t total = 0;
    for (uint32_t i = 0; i < nc; i++) {
        memcpy(c[i].h.b, p + 28 + 20 * i, 16);
        c[i].len = get_u32(p + 28 + 20 * i + 16);
        if (c[i].len == 0 || c[i].len > STORE_CHUNK_SIZE) { free(c); return FLOW_E_CORRUPT; }
        total += c[i].len;
    }
    if (total != *size) { free(c); return FLOW_E_CORRUPT; }
    *chunks = c;
    *n = nc;
    return 0;
}

/* Removes from cand every chunk that an artifact, or a checkpoint other
 * than `self`, references. */
static int unmark_used(flow_store *s, MDB_txn *txn, const flow_hash *self, hset *cand)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &cur);
    if (rc) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && cand->n;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        manifest m;
        flow_err e;
        flow_hash key;
        if (k.mv_size != 16) continue;
        memcpy(key.b, k.mv_data, 16);
        if (manifest_parse(v.mv_data, v.mv_size, &key, &m, 1, &e) != 0) continue;
        for (int p = 0; p < m.art->nparts; p++)
            for (uint32_t i = 0; i < m.nchunks[p]; i++) hset_del(cand, &m.chunks[p][i].h);
        manifest_release(&m);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_CHECKPOINTS], &cur))) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && cand->n;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t size;
        chunk_ref *ch;
        uint32_t n;
        if (k.mv_size != 16 || memcmp(k.mv_data, self->b, 16) == 0) continue;
        if (checkpoint_decode(v.mv_data, v.mv_size, &size, &ch, &n) != 0) continue;
        for (uint32_t i = 0; i < n; i++) hset_del(cand, &ch[i].h);
        free(ch);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes candidate chunks, except those a writer refreshed after `made`
 * (another writer is reusing them) and those that compress to almost
 * nothing (gc takes them; their bytes are the common kind). */
static int delete_unused(flow_store *s, MDB_txn *txn, const hset *cand, int64_t made)
{
    for (size_t i = 0; i < cand->cap; i++) {
        if (!cand->used[i]) continue;
        MDB_val k = { 16, (void *)cand->keys[i].b }, v;
        int rc = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) return rc;
        if (v.mv_size < CHUNK_HDR) continue;
        const unsigned char *h = v.mv_data;
        if ((int64_t)get_u64(h + 8) > made || (v.mv_size - CHUNK_HDR) * 64 < get_u32(h + 4)) continue;
        rc = mdb_del(txn, s->dbi[DB_CHUNKS], &k, NULL);
        if (rc && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
}

int checkpoint_release(flow_store *s, MDB_txn *txn, const flow_hash *key, const MDB_val *old,
                       const chunk_ref *keep, uint32_t nkeep)
{
    uint64_t size;
    chunk_ref *ch;
    uint32_t n;
    if (checkpoint_decode(old->mv_data, old->mv_size, &size, &ch, &n) != 0) return 0;  /* gc's job */
    int64_t made = (int64_t)get_u64((const unsigned char *)old->mv_data + 16);
    hset cand;
    hset_init(&cand);
    for (uint32_t i = 0; i < n; i++) hset_put(&cand, &ch[i].h, NULL);
    free(ch);
    for (uint32_t i = 0; i < nkeep; i++) hset_del(&cand, &keep[i].h);
    int rc = cand.n ? unmark_used(s, txn, key, &cand) : 0;
    if (!rc && cand.n) rc = delete_unused(s, txn, &cand, made);
    hset_release(&cand);
    return rc;
}

typedef struct ckpt_ctx {
    const flow_hash *key;
    flow_buf rec;
    const chunk_ref *chunks;
    uint32_t n;
} ckpt_ctx;

/* Fails with FLOW_E_NOTFOUND when one of chunks[] is not stored (a gc or
 * a release took it after store_put_chunks found it there). */
static int chunks_present(flow_store *s, MDB_txn *txn, const chunk_ref *chunks, uint32_t n,
                          flow_err *err)
{
    for (uint32_t i = 0; i < n; i++) {
        MDB_val k = { 16, (void *)chunks[i].h.b }, v;
        int rc = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
        if (rc == MDB_NOTFOUND)
            return flow_fail(err, FLOW_E_NOTFOUND, "checkpoint chunk %u vanished before its "
                             "record was written", i);
        if (rc) return rc;
    }
    return 0;
}

static int put_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    ckpt_ctx *c = arg;
    int rc = chunks_present(s, txn, c->chunks, c->n, err);
    if (rc) return rc;
    MDB_val k = { 16, (void *)c->key->b }, v = { c->rec.len, c->rec.data }, old;
    rc = mdb_get(txn, s->dbi[DB_CHECKPOINTS], &k, &old);
    if (rc && rc != MDB_NOTFOUND) return rc;
    char *copy = NULL;      /* the old value: LMDB's pointer dies with the put */
    if (rc == 0) {
        copy = xmalloc(old.mv_size);
        memcpy(copy, old.mv_data, old.mv_size);
        old.mv_data = copy;
    }
    int had = rc == 0;
    rc = mdb_put(txn, s->dbi[DB_CHECKPOINTS], &k, &v, 0);
    if (!rc && had) rc = checkpoint_release(s, txn, c->key, &old, c->chunks, c->n);
    free(copy);
    return rc;
}

static int rewrite_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    ckpt_ctx *c = arg;
    MDB_val k = { 16, (void *)c->key->b }, v = { c->rec.len, c->rec.data };
    return mdb_put(txn, s->dbi[DB_CHECKPOINTS], &k, &v, 0);
}

/* One try: stores the chunks, then the record (which replaces the old one). */
static int put_once(flow_store *s, const flow_hash *key, const void *data, size_t len,
                    flow_err *err)
{
    chunk_ref *chunks = NULL;
    uint32_t n = 0;
    int rc = store_put_chunks(s, data, len, &chunks, &n, err);
    if (rc) return rc;
    ckpt_ctx c = { key, {0}, chunks, n };
    buf_init(&c.rec);
    unsigned char h[28];
    put_u32(h, CKPT_MAGIC);
    put_u32(h + 4, 1);
    put_u64(h + 8, len);
    put_u64(h + 16, (uint64_t)store_now());
    put_u32(h + 24, n);
    buf_add(&c.rec, h, 28);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char l[4];
        put_u32(l, chunks[i].len);
        buf_add(&c.rec, chunks[i].h.b, 16);
        buf_add(&c.rec, l, 4);
    }
    flow_hash sum = flow_hash_bytes(c.rec.data, c.rec.len);
    buf_add(&c.rec, sum.b, 16);
    rc = store_write(s, "saving a checkpoint", put_fn, &c, 0, err);
    /* LMDB reuses the pages a commit frees only from the second commit
     * after it: one more small commit lets the next checkpoint's chunks
     * take the released ones (else three checkpoints' worth of file) */
    if (!rc) rc = store_write(s, "saving a checkpoint", rewrite_fn, &c, 1, err);
    free(chunks);
    buf_release(&c.rec);
    return rc;
}

int store_checkpoint_put(flow_store *s, const flow_hash *key, const void *data,
                         size_t len, flow_err *err)
{
    /* the bytes are at hand: a chunk that vanished before the record was
     * written is simply stored again */
    int rc = FLOW_E_NOTFOUND;
    for (int tries = 0; tries < 3 && rc == FLOW_E_NOTFOUND; tries++)
        rc = put_once(s, key, data, len, err);
    return rc;
}

int store_checkpoint_get(flow_store *s, const flow_hash *key, char **data,
                         size_t *len, flow_err *err)
{
    *data = NULL;
    *len = 0;
    char hex[33];
    flow_hash_hex(key, hex);
    MDB_txn *txn;
    MDB_val v;
    int rc = store_get_keyed(s, DB_CHECKPOINTS, key, &txn, &v,
                             "no checkpoint for node key %s (cache %s)", "reading a checkpoint", err);
    if (rc) return rc;
    uint64_t size;
    chunk_ref *chunks;
    uint32_t n;
    rc = checkpoint_decode(v.mv_data, v.mv_size, &size, &chunks, &n);
    store_txn_end(s, txn);
    if (rc) return flow_fail(err, FLOW_E_CORRUPT, "checkpoint %s: record is damaged", hex);
    char *buf = xmalloc((size_t)size + 1);
    char what[64];
    snprintf(what, sizeof what, "checkpoint %s", hex);
    rc = store_read_chunks(s, chunks, n, buf, what, err);
    free(chunks);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[size] = 0;
    *data = buf;
    *len = (size_t)size;
    return 0;
}

int checkpoint_drop_in(flow_store *s, MDB_txn *txn, const flow_hash *key)
{
    MDB_val k = { 16, (void *)key->b }, v;
    int rc = mdb_get(txn, s->dbi[DB_CHECKPOINTS], &k, &v);
    if (rc) return rc == MDB_NOTFOUND ? 0 : rc;
    char *copy = xmalloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    MDB_val old = { v.mv_size, copy };
    rc = mdb_del(txn, s->dbi[DB_CHECKPOINTS], &k, NULL);
    if (!rc) rc = checkpoint_release(s, txn, key, &old, NULL, 0);
    free(copy);
    return rc;
}

static int drop_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    return checkpoint_drop_in(s, txn, arg);
}

int store_checkpoint_drop(flow_store *s, const flow_hash *key, flow_err *err)
{
    return store_write(s, "dropping a checkpoint", drop_fn, (void *)key, 1, err);
}
