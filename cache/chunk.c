/* chunk.c — how one chunk is stored: the value layout in the chunks table,
 * the codecs (zstd level 3, optionally after a 4-byte shuffle that groups
 * the bytes of float32 values by significance so the exponent bytes
 * compress), decoding with hash verification, and a hash set used by the
 * writer, gc and verify. */
#include "store_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Byte-plane transposition of n bytes seen as m = n/4 4-byte words:
 * out = [byte0 of every word][byte1 ...][byte2 ...][byte3 ...][n%4 tail].
 *
 * SSE2 path, 16 words (64 bytes in 4 registers) at a time: byte address
 * p = (word i: 4 bits, byte j: 2 bits) must move to q = (j, i), a rotation
 * of the 6-bit address by 4.  One round of unpacklo/hi_epi8 over the
 * register pairs (0,2), (1,3) is a perfect shuffle of the 64 bytes, i.e. a
 * rotation by 1; so shuffling takes 4 rounds and unshuffling 2. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline void perfect_shuffle(__m128i v[4])
{
    __m128i a = _mm_unpacklo_epi8(v[0], v[2]), b = _mm_unpackhi_epi8(v[0], v[2]);
    __m128i c = _mm_unpacklo_epi8(v[1], v[3]), d = _mm_unpackhi_epi8(v[1], v[3]);
    v[0] = a; v[1] = b; v[2] = c; v[3] = d;
}
#endif

void shuffle4(const unsigned char *in, unsigned char *out, size_t n)
{
    size_t m = n / 4, i = 0;
    unsigned char *o[4] = { out, out + m, out + 2 * m, out + 3 * m };
#if defined(__SSE2__)
    for (; i + 16 <= m; i += 16) {
        __m128i v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm_loadu_si128((const __m128i *)(in + 4 * i + 16 * k));
        for (int r = 0; r < 4; r++) perfect_shuffle(v);
        for (int j = 0; j < 4; j++) _mm_storeu_si128((__m128i *)(o[j] + i), v[j]);
    }
#endif
    for (; i < m; i++)
        for (int j = 0; j < 4; j++) o[j][i] = in[4 * i + j];
    memcpy(out + 4 * m, in + 4 * m, n - 4 * m);
}

/* Inverse of shuffle4, reading the four planes from anywhere. */
static void unshuffle4p(const unsigned char *const pl[4], const unsigned char *tail,
                        unsigned char *out, size_t n)
{
    size_t m = n / 4, i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= m; i += 16) {
        __m128i v[4];
        for (int j = 0; j < 4; j++) v[j] = _mm_loadu_si128((const __m128i *)(pl[j] + i));
        for (int r = 0; r < 2; r++) perfect_shuffle(v);
        for (int k = 0; k < 4; k++) _mm_storeu_si128((__m128i *)(out + 4 * i + 16 * k), v[k]);
    }
#endif
    for (; i < m; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = pl[j][i];
    memcpy(out + 4 * m, tail, n - 4 * m);
}

void unshuffle4(const unsigned char *in, unsigned char *out, size_t n)
{
    size_t m = n / 4;
    const unsigned char *pl[4] = { in, in + m, in + 2 * m, in + 3 * m };
    unshuffle4p(pl, in + 4 * m, out, n);
}

/* Order-0 entropy (bits per byte) of a sample of p[0..n): planes above
 * ~7.9 bits are noise (low mantissa bytes) that zstd cannot shrink, so
 * they are stored raw without spending time compressing them. */
static double sample_entropy(const unsigned char *p, size_t n)
{
    uint32_t h[256] = {0};
    size_t k = 0;
    for (size_t i = 0; i < n; i += 16, k++) h[p[i]]++;
    double e = 0;
    for (int i = 0; i < 256; i++)
        if (h[i]) {
            double q = (double)h[i] / (double)k;
            e -= q * log2(q);
        }
    return e;
}

size_t chunk_bound(size_t n) { return CHUNK_HDR + 64 + ZSTD_compressBound(n); }

static size_t zcompress(ZSTD_CCtx *cctx, char *dst, size_t cap, const void *src, size_t n,
                        int level)
{
    size_t z = ZSTD_compressCCtx(cctx, dst, cap, src, n, level);
    return ZSTD_isError(z) ? (size_t)-1 : z;
}

/* Shuffled planes: payload = 4 x u32 plane header (bit 31: stored raw,
 * low bits: stored length), the four planes, then the n%4 tail bytes.
 * Returns the payload length, or (size_t)-1 if it would not be smaller
 * than n. */
static size_t encode_planes(ZSTD_CCtx *cctx, const void *raw, size_t n, char *out,
                            size_t cap, char *scratch)
{
    size_t m = n / 4, at = 16;
    shuffle4(raw, (unsigned char *)scratch, n);
    for (int j = 0; j < 4; j++) {
        const char *pl = scratch + j * m;
        size_t z = (size_t)-1;
        if (m >= 64 && sample_entropy((const unsigned char *)pl, m) < 7.9 && at < cap)
            z = zcompress(cctx, out + at, cap - at, pl, m, STORE_ZSTD_PLANE_LEVEL);
        uint32_t hdr;
        if (z == (size_t)-1 || z >= m) {
            if (at + m > cap) return (size_t)-1;
            memcpy(out + at, pl, m);
            z = m;
            hdr = (uint32_t)m | 0x80000000u;
        } else {
            hdr = (uint32_t)z;
        }
        put_u32((unsigned char *)out + 4 * j, hdr);
        at += z;
    }
    if (at + (n - 4 * m) > cap) return (size_t)-1;
    memcpy(out + at, (const char *)raw + 4 * m, n - 4 * m);
    at += n - 4 * m;
    return at < n ? at : (size_t)-1;
}

size_t chunk_encode(ZSTD_CCtx *cctx, const void *raw, size_t n, int mode, int64_t created,
                    char *out, char *out2, char *scratch, int *codec)
{
    size_t cap = chunk_bound(n) - CHUNK_HDR;
    size_t z;
    int c;
    if (mode == CHUNK_F32_SHUF) {
        z = encode_planes(cctx, raw, n, out + CHUNK_HDR, cap, scratch);
        c = CODEC_SHUF4_PLANES;
    } else {
        z = zcompress(cctx, out + CHUNK_HDR, cap, raw, n, STORE_ZSTD_LEVEL);
        c = CODEC_ZSTD;
        if (mode == CHUNK_F32_TRY) {
            size_t z2 = encode_planes(cctx, raw, n, out2 + CHUNK_HDR, cap, scratch);
            if (z2 != (size_t)-1 && (z == (size_t)-1 || z2 < z)) {
                memcpy(out + CHUNK_HDR, out2 + CHUNK_HDR, z2);
                z = z2;
                c = CODEC_SHUF4_PLANES;
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

static int decode_planes(ZSTD_DCtx *dctx, const char *payload, size_t plen, uint32_t n,
                         char *dst, char *scratch, char *why, size_t whylen)
{
    size_t m = n / 4, at = 16;
    const unsigned char *pl[4];
    if (plen < 16) goto bad;
    for (int j = 0; j < 4; j++) {
        uint32_t hdr = get_u32((const unsigned char *)payload + 4 * j), len = hdr & 0x7fffffffu;
        if (len > plen - at) goto bad;
        if (hdr & 0x80000000u) {
            if (len != m) goto bad;
            pl[j] = (const unsigned char *)payload + at;   /* straight from the map */
        } else {
            size_t r = ZSTD_decompressDCtx(dctx, scratch + j * m, m, payload + at, len);
            if (ZSTD_isError(r) || r != m) {
                snprintf(why, whylen, "zstd cannot decode byte plane %d (%s)", j,
                         ZSTD_isError(r) ? ZSTD_getErrorName(r) : "wrong length");
                return FLOW_E_CORRUPT;
            }
            pl[j] = (const unsigned char *)scratch + j * m;
        }
        at += len;
    }
    if (plen - at != n - 4 * m) goto bad;
    unshuffle4p(pl, (const unsigned char *)payload + at, (unsigned char *)dst, n);
    return 0;
bad:
    snprintf(why, whylen, "shuffled chunk layout is damaged");
    return FLOW_E_CORRUPT;
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
    } else if (codec == CODEC_ZSTD) {
        size_t r = ZSTD_decompressDCtx(dctx, dst, rawlen, payload, plen);
        if (ZSTD_isError(r) || r != rawlen) {
            snprintf(why, whylen, "zstd cannot decode it (%s)",
                     ZSTD_isError(r) ? ZSTD_getErrorName(r) : "wrong length");
            return FLOW_E_CORRUPT;
        }
    } else if (codec == CODEC_SHUF4_PLANES) {
        int rc = decode_planes(dctx, payload, plen, rawlen, dst, scratch, why, whylen);
        if (rc) return rc;
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

/* Drops the pages of a chunk just read from the process's mapping of the
 * data file (MADV_DONTNEED on the whole pages inside [p, p+n)): they stay
 * in the page cache, but no longer count in this process's resident set.
 * A stage that reads a 1.3 GB corpus once would otherwise end with the
 * whole compressed corpus in its RSS, which would bury the memory the
 * stage itself uses (the map is read-only and shared: the next access
 * faults the same bytes back in). */
static void unmap_read_pages(const void *p, size_t n)
{
    static long page;
    if (!page) page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
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
    unmap_read_pages(v.mv_data, v.mv_size);
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

/* Linear probing: the entries after the hole that probed past it move
 * back into it, so every lookup still finds its entry. */
void hset_del(hset *s, const flow_hash *h)
{
    if (!s->cap) return;
    size_t mask = s->cap - 1, i = slot_of(h, s->cap);
    for (;; i = (i + 1) & mask) {
        if (!s->used[i]) return;
        if (flow_hash_eq(&s->keys[i], h)) break;
    }
    s->used[i] = 0;
    s->n--;
    for (size_t j = (i + 1) & mask; s->used[j]; j = (j + 1) & mask) {
        size_t home = slot_of(&s->keys[j], s->cap);
        /* j stays unless its home lies cyclically outside (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        s->keys[i] = s->keys[j];
        s->vals[i] = s->vals[j];
        s->used[i] = 1;
        s->used[j] = 0;
        i = j;
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
