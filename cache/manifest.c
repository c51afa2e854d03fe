/* manifest.c — the artifact manifest: the one record (in the artifacts
 * table, keyed by the node key) that makes an artifact exist.  It lists the
 * parts with their chunk hashes, sizes and content hashes, plus metadata.
 *
 * Layout (little-endian), version 1:
 *   u32 magic "FLAR", u32 version,
 *   key[16], content[16], i64 created, u64 raw_size, u64 stored_size,
 *   u32 nparts, u32 meta_len,
 *   per part (sorted by name):
 *     u16 name_len, name, u8 kind, u64 size, u64 stored, content[16],
 *     u32 nchunks, nchunks x { hash[16], u32 raw_len },
 *   meta_len bytes of metadata JSON,
 *   16-byte XXH3-128 of everything before it (detects a damaged manifest).
 */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

flow_hash part_content_hash(uint64_t size, const chunk_ref *chunks, uint32_t n)
{
    flow_hasher *h = flow_hasher_new();
    unsigned char b[8];
    put_u64(b, size);
    flow_hasher_update(h, b, 8);
    for (uint32_t i = 0; i < n; i++) flow_hasher_update(h, chunks[i].h.b, 16);
    flow_hash r = flow_hasher_digest(h);
    flow_hasher_free(h);
    return r;
}

flow_hash artifact_content_hash(const manifest_part *parts, int nparts)
{
    flow_hasher *h = flow_hasher_new();
    for (int i = 0; i < nparts; i++) {
        unsigned char b[4];
        size_t len = strlen(parts[i].name);
        put_u32(b, (uint32_t)len);
        flow_hasher_update(h, b, 4);
        flow_hasher_update(h, parts[i].name, len);
        flow_hasher_update(h, parts[i].content.b, 16);
    }
    flow_hash r = flow_hasher_digest(h);
    flow_hasher_free(h);
    return r;
}

int part_name_cmp(const void *a, const void *b)
{
    return strcmp(((const manifest_part *)a)->name, ((const manifest_part *)b)->name);
}

static void add_u16(flow_buf *b, uint16_t v) { unsigned char t[2]; put_u16(t, v); buf_add(b, t, 2); }
static void add_u32(flow_buf *b, uint32_t v) { unsigned char t[4]; put_u32(t, v); buf_add(b, t, 4); }
static void add_u64(flow_buf *b, uint64_t v) { unsigned char t[8]; put_u64(t, v); buf_add(b, t, 8); }

void manifest_encode(flow_buf *out, const flow_hash *key, const flow_hash *content,
                     int64_t created, const manifest_part *parts, int nparts,
                     const char *meta_json)
{
    uint64_t raw = 0, stored = 0;
    for (int i = 0; i < nparts; i++) raw += parts[i].size, stored += parts[i].stored;
    size_t mlen = meta_json ? strlen(meta_json) : 0;
    add_u32(out, MANIFEST_MAGIC);
    add_u32(out, MANIFEST_VERSION);
    buf_add(out, key->b, 16);
    buf_add(out, content->b, 16);
    add_u64(out, (uint64_t)created);
    add_u64(out, raw);
    add_u64(out, stored);
    add_u32(out, (uint32_t)nparts);
    add_u32(out, (uint32_t)mlen);
    for (int i = 0; i < nparts; i++) {
        const manifest_part *p = &parts[i];
        size_t nl = strlen(p->name);
        add_u16(out, (uint16_t)nl);
        buf_add(out, p->name, nl);
        buf_addc(out, (char)p->kind);
        add_u64(out, p->size);
        add_u64(out, p->stored);
        buf_add(out, p->content.b, 16);
        add_u32(out, p->nchunks);
        for (uint32_t c = 0; c < p->nchunks; c++) {
            buf_add(out, p->chunks[c].h.b, 16);
            add_u32(out, p->chunks[c].len);
        }
    }
    buf_add(out, meta_json ? meta_json : "", mlen);
    flow_hash sum = flow_hash_bytes(out->data, out->len);
    buf_add(out, sum.b, 16);
}

typedef struct rd { const unsigned char *p; size_t n, at; int bad; } rd;

static const unsigned char *take(rd *r, size_t n)
{
    if (r->bad || r->n - r->at < n) { r->bad = 1; return NULL; }
    const unsigned char *p = r->p + r->at;
    r->at += n;
    return p;
}
static uint64_t take_u64(rd *r) { const unsigned char *p = take(r, 8); return p ? get_u64(p) : 0; }
static uint32_t take_u32(rd *r) { const unsigned char *p = take(r, 4); return p ? get_u32(p) : 0; }
static uint16_t take_u16(rd *r) { const unsigned char *p = take(r, 2); return p ? get_u16(p) : 0; }

void manifest_release(manifest *m)
{
    free(m->chunk_pool);
    free(m->chunks);
    free(m->nchunks);
    store_artifact_free(m->art);
    memset(m, 0, sizeof *m);
}

/* Reads the parts.  Every name goes into one pool and every chunk list into
 * one array (a few allocations, not one per part: an artifact may have
 * 500k parts); part i's pointers are set once the pools stop moving.
 * Names must strictly increase (strcmp), which is what lets readers find a
 * part by binary search; a manifest that breaks it is malformed. */
static int parse_parts(rd *r, store_artifact *a, manifest *m, uint32_t np, int want_chunks)
{
    size_t *name_at = xmalloc((np ? np : 1) * sizeof *name_at);
    size_t *chunk_at = want_chunks ? xmalloc((np ? np : 1) * sizeof *chunk_at) : NULL;
    flow_buf names;
    buf_init(&names);
    chunk_ref *pool = NULL;
    size_t npool = 0, cappool = 0;
    int ok = 1;
    const char *prev = NULL;
    size_t prev_len = 0;
    for (uint32_t i = 0; i < np && ok; i++) {
        store_part_info *pi = &a->parts[i];
        uint16_t nl = take_u16(r);
        const unsigned char *nm = take(r, nl);
        if (!nm || nl == 0) { ok = 0; break; }
        if (prev) {
            size_t k = prev_len < nl ? prev_len : nl;
            int c = memcmp(prev, nm, k);
            if (c > 0 || (c == 0 && prev_len >= nl)) { ok = 0; break; }
        }
        prev = (const char *)nm;
        prev_len = nl;
        name_at[i] = names.len;
        buf_add(&names, nm, nl);
        buf_addc(&names, 0);
        const unsigned char *kind = take(r, 1);
        pi->kind = kind ? kind[0] : 0;
        pi->size = take_u64(r);
        pi->stored = take_u64(r);
        const unsigned char *p = take(r, 16);
        if (p) memcpy(pi->content.b, p, 16);
        uint32_t nc = take_u32(r);
        if (r->bad || nc > (r->n - r->at) / 20) { ok = 0; break; }
        const unsigned char *cl = take(r, (size_t)nc * 20);
        if (!cl) { ok = 0; break; }
        uint64_t total = 0;
        if (want_chunks) {
            if (npool + nc > cappool) {
                cappool = 2 * (npool + nc) + 16;
                pool = xrealloc(pool, cappool * sizeof *pool);
            }
            chunk_at[i] = npool;
            m->nchunks[i] = nc;
        }
        for (uint32_t c = 0; c < nc; c++) {
            uint32_t len = get_u32(cl + 20 * c + 16);
            if (len == 0 || len > STORE_CHUNK_SIZE) { ok = 0; break; }
            total += len;
            if (want_chunks) {
                memcpy(pool[npool].h.b, cl + 20 * c, 16);
                pool[npool++].len = len;
            }
        }
        if (total != pi->size) ok = 0;
        if (ok) a->nparts = (int)i + 1;
    }
    /* names of the parts read so far (also on failure: free needs them) */
    a->name_pool = names.data ? names.data : xstrdup("");
    for (int i = 0; i < a->nparts; i++) a->parts[i].name = a->name_pool + name_at[i];
    if (want_chunks) {
        m->chunk_pool = pool;
        for (int i = 0; i < a->nparts; i++) m->chunks[i] = pool + chunk_at[i];
    } else {
        free(pool);
    }
    free(name_at);
    free(chunk_at);
    return ok;
}

/* Steps over the parts of a summary: bounds checked, nothing kept. */
static int skip_parts(rd *r, uint32_t np)
{
    for (uint32_t i = 0; i < np && !r->bad; i++) {
        uint16_t nl = take_u16(r);
        if (nl == 0 || !take(r, (size_t)nl + 1 + 8 + 8 + 16)) return 0;
        uint32_t nc = take_u32(r);
        if (r->bad || nc > (r->n - r->at) / 20 || !take(r, (size_t)nc * 20)) return 0;
    }
    return !r->bad;
}

int manifest_parse(const void *data, size_t n, const flow_hash *key, manifest *m,
                   int want_chunks, flow_err *err)
{
    char hex[33];
    flow_hash_hex(key, hex);
    memset(m, 0, sizeof *m);
    rd r = { data, n, 0, 0 };
    if (n < 8 + 16) return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: manifest is truncated (%zu bytes)", hex, n);
    uint32_t magic = take_u32(&r), ver = take_u32(&r);
    if (magic != MANIFEST_MAGIC)
        return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: manifest has a bad magic number", hex);
    if (ver != MANIFEST_VERSION)
        return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: manifest version %u is %s than "
                         "version %u that this flow reads; rebuild it", hex, ver,
                         ver < MANIFEST_VERSION ? "older" : "newer", MANIFEST_VERSION);
    flow_hash sum = flow_hash_bytes(data, n - 16);
    if (memcmp(sum.b, (const unsigned char *)data + n - 16, 16) != 0)
        return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: manifest fails its checksum", hex);
    r.n = n - 16;
    store_artifact *a = xcalloc(1, sizeof *a);
    m->art = a;
    const unsigned char *p = take(&r, 16);
    if (p) memcpy(a->key.b, p, 16);
    p = take(&r, 16);
    if (p) memcpy(a->content.b, p, 16);
    a->created = (int64_t)take_u64(&r);
    a->raw_size = take_u64(&r);
    a->stored_size = take_u64(&r);
    uint32_t np = take_u32(&r), mlen = take_u32(&r);
    if (r.bad || np > (r.n - r.at) / 39) goto bad;
    a->part_count = (int)np;
    if (want_chunks == MANIFEST_SUMMARY) {
        a->name_pool = xstrdup("");
        if (!skip_parts(&r, np)) goto bad;
    } else {
        a->parts = xcalloc(np ? np : 1, sizeof *a->parts);
        if (want_chunks) {
            m->chunks = xcalloc(np ? np : 1, sizeof *m->chunks);
            m->nchunks = xcalloc(np ? np : 1, sizeof *m->nchunks);
        }
        if (!parse_parts(&r, a, m, np, want_chunks)) goto bad;
    }
    p = take(&r, mlen);
    if (!p || r.at != r.n) goto bad;
    a->meta_json = xmalloc((size_t)mlen + 1);
    memcpy(a->meta_json, p, mlen);
    a->meta_json[mlen] = 0;
    if (!flow_hash_eq(&a->key, key)) {
        char h2[33];
        flow_hash_hex(&a->key, h2);
        manifest_release(m);
        return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: manifest names key %s", hex, h2);
    }
    return 0;
bad:
    manifest_release(m);
    return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: manifest is malformed; run "
                     "`flow verify --repair` (removes it) and rebuild", hex);
}

int store_part_find(const store_artifact *a, const char *name)
{
    int lo = 0, hi = a->nparts;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(a->parts[mid].name, name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

void store_artifact_free(store_artifact *a)
{
    if (!a) return;
    free(a->name_pool);
    free(a->parts);
    free(a->meta_json);
    free(a);
}
