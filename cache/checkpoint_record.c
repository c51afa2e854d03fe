/* checkpoint_record.c — the checkpoint record (format in checkpoint.c's
 * header: u32 "FLCK", u32 version 1, u64 size, i64 created, the chunk
 * list, a checksum), and releasing a replaced or dropped record's chunks
 * that nothing else references, inside the caller's write transaction.
 * Separate from checkpoint.c so that writer.c (which drops a node's
 * record when its artifact commits) and gc/repair (which read records)
 * depend on it without depending on the checkpoint API, which itself
 * writes and reads chunks through writer.c and reader.c. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

#define CKPT_MAGIC 0x4B434C46u

void checkpoint_encode(flow_buf *rec, uint64_t len, const chunk_ref *chunks, uint32_t n)
{
    unsigned char h[28];
    put_u32(h, CKPT_MAGIC);
    put_u32(h + 4, 1);
    put_u64(h + 8, len);
    put_u64(h + 16, (uint64_t)store_now());
    put_u32(h + 24, n);
    buf_add(rec, h, 28);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char l[4];
        put_u32(l, chunks[i].len);
        buf_add(rec, chunks[i].h.b, 16);
        buf_add(rec, l, 4);
    }
    flow_hash sum = flow_hash_bytes(rec->data, rec->len);
    buf_add(rec, sum.b, 16);
}

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
