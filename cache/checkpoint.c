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
 * preceding bytes.  The record and the release of its chunks are in
 * checkpoint_record.c (below writer.c, which drops a record at commit);
 * this file is the put/get/drop API on top of the chunk writer and reader. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

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
    checkpoint_encode(&c.rec, len, chunks, n);
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

static int drop_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    return checkpoint_drop_in(s, txn, arg);
}

int store_checkpoint_drop(flow_store *s, const flow_hash *key, flow_err *err)
{
    return store_write(s, "dropping a checkpoint", drop_fn, (void *)key, 1, err);
}
