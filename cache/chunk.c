/* chunk.c — how one chunk is stored: the value layout in the chunks table,
 * the codecs (zstd level 3, optionally after a 4-byte shuffle that groups
 * the bytes of float32 values by significance so the exponent bytes
 * compress), decoding with hash verification, and a hash set used by the
 * writer, gc and verify. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

/* Byte-plane transposition of n bytes seen as n/4 4-byte words:
 * out = [byte0 of every word][byte1 ...][byte2 ...][byte3 ...][tail]. */
void shuffle4(const unsigned char *in, unsigned char *out, size_t n)
{
    size_t m = n / 4;
    unsigned char *o0 = out, *o1 = out + m, *o2 = out + 2 * m, *o3 = out + 3 * m;
    for (size_t i = 0; i < m; i++) {
        o0[i] = in[4 * i];
        o1[i] = in[4 * i + 1];
        o2[i] = in[4 * i + 2];
        o3[i] = in[4 * i + 3];
    }
    memcpy(out + 4 * m, in + 4 * m, n - 4 * m);
}

void unshuffle4(const unsigned char *in, unsigned char *out, size_t n)
{
    size_t m = n / 4;
    const unsigned char *i0 = in, *i1 = in + m, *i2 = in + 2 * m, *i3 = in + 3 * m;
    for (size_t i = 0; i < m; i++) {
        out[4 * i] = i0[i];
        out[4 * i + 1] = i1[i];
        out[4 * i + 2] = i2[i];
        out[4 * i + 3] = i3[i];
    }
    memcpy(out + 4 * m, in + 4 * m, n - 4 * m);
}

size_t chunk_bound(size_t n) { return CHUNK_HDR + ZSTD_compressBound(n); }

static size_t zcompress(ZSTD_CCtx *cctx, char *dst, size_t cap, const void *src, size_t n)
{
    size_t z = ZSTD_compressCCtx(cctx, dst, cap, src, n, STORE_ZSTD_LEVEL);
    return ZSTD_isError(z) ? (size_t)-1 : z;
}

size_t chunk_encode(ZSTD_CCtx *cctx, const void *raw, size_t n, int mode, int64_t created,
                    char *out, char *out2, char *scratch, int *codec)
{
    size_t cap = ZSTD_compressBound(n);
    size_t z;
    int c;
    if (mode == CHUNK_F32_SHUF) {
        shuffle4(raw, (unsigned char *)scratch, n);
        z = zcompress(cctx, out + CHUNK_HDR, cap, scratch, n);
        c = CODEC_SHUF4_ZSTD;
    } else {
        z = zcompress(cctx, out + CHUNK_HDR, cap, raw, n);
        c = CODEC_ZSTD;
        if (mode == CHUNK_F32_TRY) {
            shuffle4(raw, (unsigned char *)scratch, n);
            size_t z2 = zcompress(cctx, out2 + CHUNK_HDR, cap, scratch, n);
            if (z2 < z) {
                memcpy(out + CHUNK_HDR, out2 + CHUNK_HDR, z2);
                z = z2;
                c = CODEC_SHUF4_ZSTD;
            }
        }
    }
    if (z == (size_t)-1 || z >= n) {      /* incompressible (or empty): raw */
        memcpy(out + CHUNK_HDR, raw, n);
        z = n;
        c = CODEC_RAW;
    }
    unsigned char *h = (unsigned char *)out;
    h[0] = (unsigned char)c;
    h[1] = CHUNK_VERSION;
    put_u16(h + 2, 0);
    put_u32(h + 4, (uint32_t)n);
    put_u64(h + 8, (uint64_t)created);
    *codec = c;
    return CHUNK_HDR + z;
}

int chunk_decode(ZSTD_DCtx *dctx, const void *val, size_t vlen, const flow_hash *h,
                 uint32_t expect_len, char *dst, char *scratch, char *why, size_t whylen)
{
    const unsigned char *p = val;
    if (vlen < CHUNK_HDR) {
        snprintf(why, whylen, "stored value of %zu bytes is shorter than its header", vlen);
        return FLOW_E_CORRUPT;
    }
    int codec = p[0];
    uint32_t rawlen = get_u32(p + 4);
    if (p[1] != CHUNK_VERSION) {
        snprintf(why, whylen, "unknown chunk format version %d", p[1]);
        return FLOW_E_CORRUPT;
    }
    if (rawlen != expect_len || rawlen > STORE_CHUNK_SIZE) {
        snprintf(why, whylen, "chunk holds %u bytes, expected %u", rawlen, expect_len);
        return FLOW_E_CORRUPT;
    }
    const char *payload = (const char *)p + CHUNK_HDR;
    size_t plen = vlen - CHUNK_HDR;
    if (codec == CODEC_RAW) {
        if (plen != rawlen) {
            snprintf(why, whylen, "raw chunk has %zu bytes, expected %u", plen, rawlen);
            return FLOW_E_CORRUPT;
        }
        memcpy(dst, payload, rawlen);
    } else if (codec == CODEC_ZSTD || codec == CODEC_SHUF4_ZSTD) {
        char *to = codec == CODEC_ZSTD ? dst : scratch;
        size_t r = ZSTD_decompressDCtx(dctx, to, rawlen, payload, plen);
        if (ZSTD_isError(r) || r != rawlen) {
            snprintf(why, whylen, "zstd cannot decode it (%s)",
                     ZSTD_isError(r) ? ZSTD_getErrorName(r) : "wrong length");
            return FLOW_E_CORRUPT;
        }
        if (codec == CODEC_SHUF4_ZSTD)
            unshuffle4((const unsigned char *)scratch, (unsigned char *)dst, rawlen);
    } else {
        snprintf(why, whylen, "unknown codec %d", codec);
        return FLOW_E_CORRUPT;
    }
    flow_hash got = flow_hash_bytes(dst, rawlen);
    if (!flow_hash_eq(&got, h)) {
        char hex[33];
        flow_hash_hex(&got, hex);
        snprintf(why, whylen, "content hash mismatch (bytes hash to %s)", hex);
        return FLOW_E_CORRUPT;
    }
    return 0;
}

int chunk_fetch(flow_store *s, const flow_hash *h, uint32_t expect_len, char *dst,
                ZSTD_DCtx *dctx, char *scratch, char *why, size_t whylen, flow_err *err)
{
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_val k = { 16, (void *)h->b }, v;
    rc = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
    if (rc == MDB_NOTFOUND) {
        store_txn_end(s, txn);
        snprintf(why, whylen, "chunk is missing from the store");
        return FLOW_E_CORRUPT;
    }
    if (rc) {
        store_txn_end(s, txn);
        return store_mdb_fail(s, err, rc, "reading a chunk");
    }
    rc = chunk_decode(dctx, v.mv_data, v.mv_size, h, expect_len, dst, scratch, why, whylen);
    store_txn_end(s, txn);
    return rc;
}

/* ---- hash set ---------------------------------------------------------- */

void hset_init(hset *s) { memset(s, 0, sizeof *s); }

void hset_release(hset *s)
{
    free(s->keys);
    free(s->vals);
    free(s->used);
    hset_init(s);
}

static size_t slot_of(const flow_hash *h, size_t cap)
{
    uint64_t x;
    memcpy(&x, h->b + 8, 8);
    return (size_t)(x & (cap - 1));
}

uint64_t *hset_get(const hset *s, const flow_hash *h)
{
    if (!s->cap) return NULL;
    for (size_t i = slot_of(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i]) return NULL;
        if (flow_hash_eq(&s->keys[i], h)) return &s->vals[i];
    }
}

uint64_t *hset_put(hset *s, const flow_hash *h, int *added)
{
    if ((s->n + 1) * 2 > s->cap) {
        hset old = *s;
        s->cap = old.cap ? old.cap * 2 : 64;
        s->keys = xmalloc(s->cap * sizeof *s->keys);
        s->vals = xmalloc(s->cap * sizeof *s->vals);
        s->used = xcalloc(s->cap, 1);
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.used[i]) continue;
            int a;
            *hset_put(s, &old.keys[i], &a) = old.vals[i];
        }
        free(old.keys);
        free(old.vals);
        free(old.used);
    }
    for (size_t i = slot_of(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i]) {
            s->used[i] = 1;
            s->keys[i] = *h;
            s->vals[i] = 0;
            s->n++;
            if (added) *added = 1;
            return &s->vals[i];
        }
        if (flow_hash_eq(&s->keys[i], h)) {
            if (added) *added = 0;
            return &s->vals[i];
        }
    }
}
