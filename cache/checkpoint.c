/* checkpoint.c — checkpoints: a stage's intermediate state, keyed by the
 * node key, possibly large (model weights plus optimizer state).  The
 * bytes go into ordinary content-addressed chunks; the checkpoints table
 * holds only the chunk list, so gc sees those chunks as reachable and
 * identical chunks are shared with artifacts.  The record is dropped when
 * the node's artifact commits (writer.c) or by store_checkpoint_drop.
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

typedef struct ckpt_ctx { const flow_hash *key; flow_buf rec; } ckpt_ctx;

static int put_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    ckpt_ctx *c = arg;
    MDB_val k = { 16, (void *)c->key->b }, v = { c->rec.len, c->rec.data };
    return mdb_put(txn, s->dbi[DB_CHECKPOINTS], &k, &v, 0);
}

int store_checkpoint_put(flow_store *s, const flow_hash *key, const void *data,
                         size_t len, flow_err *err)
{
    chunk_ref *chunks = NULL;
    uint32_t n = 0;
    int rc = store_put_chunks(s, data, len, &chunks, &n, err);
    if (rc) return rc;
    ckpt_ctx c = { key, {0} };
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
    free(chunks);
    rc = store_write(s, "saving a checkpoint", put_fn, &c, 0, err);
    buf_release(&c.rec);
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
    MDB_val k = { 16, arg }, v;
    (void)v;
    int rc = mdb_del(txn, s->dbi[DB_CHECKPOINTS], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_checkpoint_drop(flow_store *s, const flow_hash *key, flow_err *err)
{
    return store_write(s, "dropping a checkpoint", drop_fn, (void *)key->b, 1, err);
}
