/* reader.c — reading artifacts: manifests (store_get), hex-prefix
 * resolution, logs, whole parts (decompressed in parallel straight into
 * the caller's buffer) and streamed parts (the next chunk is decoded on the
 * pool while the caller consumes the current one).  Every chunk is checked
 * against its hash; a mismatch is FLOW_E_CORRUPT naming the artifact, the
 * part and the chunk.  Transactions are short (one per chunk) so a long
 * stream never pins old pages or blocks map growth. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

int store_get_keyed(flow_store *s, int db, const flow_hash *key, MDB_txn **txn,
                    MDB_val *v, const char *missing, const char *doing, flow_err *err)
{
    int rc = store_txn_read(s, txn, err);
    if (rc) return rc;
    MDB_val k = { 16, (void *)key->b };
    rc = mdb_get(*txn, s->dbi[db], &k, v);
    if (rc == 0) return 0;
    store_txn_end(s, *txn);
    *txn = NULL;
    if (rc == MDB_NOTFOUND) {
        char hex[33];
        flow_hash_hex(key, hex);
        return flow_fail(err, FLOW_E_NOTFOUND, missing, hex, s->dir);
    }
    return store_mdb_fail(s, err, rc, doing);
}

int store_load_manifest(flow_store *s, const flow_hash *key, manifest *m, int want_chunks,
                        flow_err *err)
{
    memset(m, 0, sizeof *m);
    MDB_txn *txn;
    MDB_val v;
    int rc = store_get_keyed(s, DB_ARTIFACTS, key, &txn, &v, "artifact %s is not in cache %s",
                             "reading an artifact manifest", err);
    if (rc) return rc;
    rc = manifest_parse(v.mv_data, v.mv_size, key, m, want_chunks, err);
    store_txn_end(s, txn);
    return rc;
}

int store_get(flow_store *s, const flow_hash *key, store_artifact **out, flow_err *err)
{
    *out = NULL;
    manifest m;
    int rc = store_load_manifest(s, key, &m, 0, err);
    if (rc) return rc;
    *out = m.art;
    return 0;
}

int store_get_summary(flow_store *s, const flow_hash *key, store_artifact **out, flow_err *err)
{
    *out = NULL;
    manifest m;
    int rc = store_load_manifest(s, key, &m, MANIFEST_SUMMARY, err);
    if (rc) return rc;
    *out = m.art;
    return 0;
}

int store_has(flow_store *s, const flow_hash *key)
{
    MDB_txn *txn;
    flow_err e;
    if (store_txn_read(s, &txn, &e)) return 0;
    MDB_val k = { 16, (void *)key->b }, v;
    int rc = mdb_get(txn, s->dbi[DB_ARTIFACTS], &k, &v);
    store_txn_end(s, txn);
    return rc == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int store_resolve(flow_store *s, const char *hex_prefix, flow_hash *out, flow_err *err)
{
    size_t n = strlen(hex_prefix);
    if (n < 6 || n > 32)
        return flow_fail(err, FLOW_E_USAGE, "'%s': give 6 to 32 hex digits of an artifact key",
                         hex_prefix);
    uint8_t nib[32];
    for (size_t i = 0; i < n; i++) {
        int v = hexval(hex_prefix[i]);
        if (v < 0)
            return flow_fail(err, FLOW_E_USAGE, "'%s' is not a hex key prefix (bad digit '%c')",
                             hex_prefix, hex_prefix[i]);
        nib[i] = (uint8_t)v;
    }
    flow_hash lo = {{0}};
    for (size_t i = 0; i < n; i++) lo.b[i / 2] |= (uint8_t)(i % 2 ? nib[i] : nib[i] << 4);
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_cursor *c;
    rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &c);
    if (rc) {
        store_txn_end(s, txn);
        return store_mdb_fail(s, err, rc, "resolving a key prefix");
    }
    MDB_val k = { 16, lo.b }, v;
    int found = 0;
    flow_hash cand[6];
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) continue;
        const uint8_t *kb = k.mv_data;
        int match = 1;
        for (size_t i = 0; i < n && match; i++)
            match = (i % 2 ? kb[i / 2] & 15 : kb[i / 2] >> 4) == nib[i];
        if (!match) break;
        if (found < 6) memcpy(cand[found].b, kb, 16);
        found++;
    }
    mdb_cursor_close(c);
    store_txn_end(s, txn);
    if (rc != 0 && rc != MDB_NOTFOUND) return store_mdb_fail(s, err, rc, "resolving a key prefix");
    if (found == 0)
        return flow_fail(err, FLOW_E_NOTFOUND, "no artifact in cache %s has a key starting with '%s'",
                         s->dir, hex_prefix);
    if (found > 1) {
        flow_buf b;
        buf_init(&b);
        for (int i = 0; i < found && i < 6; i++) {
            char hex[33];
            flow_hash_hex(&cand[i], hex);
            buf_printf(&b, "%s%s", i ? ", " : "", hex);
        }
        if (found > 6) buf_printf(&b, " and %d more", found - 6);
        int r = flow_fail(err, FLOW_E_AMBIGUOUS, "key prefix '%s' is ambiguous: it matches %d "
                          "artifacts (%s); give more digits", hex_prefix, found, b.data);
        buf_release(&b);
        return r;
    }
    *out = cand[0];
    return 0;
}

int store_get_log(flow_store *s, const flow_hash *key, char **log, size_t *len, flow_err *err)
{
    *log = NULL;
    *len = 0;
    MDB_txn *txn;
    MDB_val v;
    int rc = store_get_keyed(s, DB_LOGS, key, &txn, &v, "no log for artifact %s in cache %s",
                             "reading a log", err);
    if (rc) return rc;
    rc = store_log_decode(v.mv_data, v.mv_size, log, len);
    store_txn_end(s, txn);
    if (rc) {
        char hex[33];
        flow_hash_hex(key, hex);
        return flow_fail(err, FLOW_E_CORRUPT, "artifact %s: stored log is damaged", hex);
    }
    return 0;
}

/* ---- decoding chunks on the pool -------------------------------------------- */

typedef struct rjob {
    pool_job pj;
    flow_store *s;
    chunk_ref ref;
    char *dst;
    int rc;
    char why[256];
    flow_err err;
} rjob;

static void rjob_run(pool_job *pj, int worker)
{
    rjob *j = (rjob *)pj;
    flow_store *s = j->s;
    j->rc = chunk_fetch(s, &j->ref.h, j->ref.len, j->dst, s->dctx[worker], s->scratch[worker],
                        j->why, sizeof j->why, &j->err);
}

static int rjob_result(rjob *j, const char *keyhex, const char *part, uint32_t idx, flow_err *err)
{
    if (!j->rc) return 0;
    if (j->rc == FLOW_E_CORRUPT) {
        char ch[33];
        flow_hash_hex(&j->ref.h, ch);
        return flow_fail(err, FLOW_E_CORRUPT, "artifact %s part '%s' chunk %u (%s): %s; "
                         "run `flow verify --repair` (removes the damaged artifacts) and rebuild", keyhex, part, idx, ch, j->why);
    }
    if (err) *err = j->err;
    return j->rc;
}

static int no_part(const flow_hash *key, const char *part, flow_err *err)
{
    char hex[33];
    flow_hash_hex(key, hex);
    return flow_fail(err, FLOW_E_NOTFOUND, "artifact %s has no part '%s'", hex, part);
}

int store_read_chunks(flow_store *s, const chunk_ref *chunks, uint32_t n, char *buf,
                      const char *what, flow_err *err)
{
    rjob *jobs = xcalloc(n ? n : 1, sizeof *jobs);
    store_pool *pool = n ? store_get_pool(s) : NULL;
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        jobs[i].pj.fn = rjob_run;
        jobs[i].s = s;
        jobs[i].ref = chunks[i];
        jobs[i].dst = buf + off;
        off += chunks[i].len;
        pool_submit(pool, &jobs[i].pj);
    }
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        pool_wait(pool, &jobs[i].pj);
        if (rc || !jobs[i].rc) continue;
        if (jobs[i].rc == FLOW_E_CORRUPT) {
            char ch[33];
            flow_hash_hex(&jobs[i].ref.h, ch);
            rc = flow_fail(err, FLOW_E_CORRUPT, "%s chunk %u (%s): %s; run `flow verify "
                           "--repair` (removes the damaged artifacts) and rebuild", what, i, ch, jobs[i].why);
        } else {
            if (err) *err = jobs[i].err;
            rc = jobs[i].rc;
        }
    }
    free(jobs);
    return rc;
}

/* ---- handles: one parsed manifest for many reads ------------------------ */

struct store_handle {
    flow_store *s;
    manifest m;
    char keyhex[33];
};

int store_handle_open(flow_store *s, const flow_hash *key, store_handle **out, flow_err *err)
{
    *out = NULL;
    store_handle *h = xcalloc(1, sizeof *h);
    int rc = store_load_manifest(s, key, &h->m, 1, err);
    if (rc) {
        free(h);
        return rc;
    }
    h->s = s;
    flow_hash_hex(key, h->keyhex);
    *out = h;
    return 0;
}

const store_artifact *store_handle_artifact(const store_handle *h) { return h->m.art; }

void store_handle_free(store_handle *h)
{
    if (!h) return;
    manifest_release(&h->m);
    free(h);
}

static void bad_index(const store_handle *h, int part)
{
    if (part < 0 || part >= h->m.art->nparts)
        FLOW_BUG("artifact %s: part index %d of %d", h->keyhex, part, h->m.art->nparts);
}

int store_handle_read(store_handle *h, int part, char **data, size_t *len, flow_err *err)
{
    *data = NULL;
    *len = 0;
    bad_index(h, part);
    const store_part_info *pi = &h->m.art->parts[part];
    if (pi->size >= SIZE_MAX)
        return flow_fail(err, FLOW_E_NOMEM, "part '%s' is too large for memory", pi->name);
    char *buf = xmalloc((size_t)pi->size + 1);
    char what[4200];
    snprintf(what, sizeof what, "artifact %s part '%s'", h->keyhex, pi->name);
    int rc = store_read_chunks(h->s, h->m.chunks[part], h->m.nchunks[part], buf, what, err);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[pi->size] = 0;
    *data = buf;
    *len = (size_t)pi->size;
    return 0;
}

int store_read_part(flow_store *s, const flow_hash *key, const char *part,
                    char **data, size_t *len, flow_err *err)
{
    *data = NULL;
    *len = 0;
    store_handle *h;
    int rc = store_handle_open(s, key, &h, err);
    if (rc) return rc;
    int pi = store_part_find(h->m.art, part);
    rc = pi < 0 ? no_part(key, part, err) : store_handle_read(h, pi, data, len, err);
    store_handle_free(h);
    return rc;
}

/* ---- streaming reader ------------------------------------------------------ */

/* Chunks decoded ahead of the consumer: two, so both pool threads work
 * while the caller consumes a third buffer. */
#define RDEPTH 2
#define RSLOTS (RDEPTH + 1)

struct store_reader {
    flow_store *s;
    store_pool *pool;
    char keyhex[33];
    char *part;
    chunk_ref *chunks;
    uint32_t n;
    uint32_t next;              /* next chunk to consume */
    uint32_t submitted;         /* chunks handed to the pool so far */
    char *buf[RSLOTS];          /* chunk i decodes into buf[i % RSLOTS] */
    rjob jobs[RSLOTS];
    int cur;                    /* slot being consumed, -1 before the first */
    size_t blen, bpos;
    int failed;
};

static void top_up(store_reader *r)
{
    while (r->submitted < r->n && r->submitted < r->next + RDEPTH) {
        uint32_t i = r->submitted++;
        rjob *j = &r->jobs[i % RSLOTS];
        memset(j, 0, sizeof *j);
        j->pj.fn = rjob_run;
        j->s = r->s;
        j->ref = r->chunks[i];
        j->dst = r->buf[i % RSLOTS];
        pool_submit(r->pool, &j->pj);
    }
}

int store_handle_reader(store_handle *h, int part, store_reader **out, flow_err *err)
{
    (void)err;
    *out = NULL;
    bad_index(h, part);
    store_reader *r = xcalloc(1, sizeof *r);
    r->s = h->s;
    memcpy(r->keyhex, h->keyhex, sizeof r->keyhex);
    r->part = xstrdup(h->m.art->parts[part].name);
    r->n = h->m.nchunks[part];
    r->chunks = xmalloc((r->n ? r->n : 1) * sizeof *r->chunks);
    if (r->n) memcpy(r->chunks, h->m.chunks[part], r->n * sizeof *r->chunks);
    r->cur = -1;
    if (r->n) {
        size_t bsz = 0;
        for (uint32_t i = 0; i < r->n; i++) if (r->chunks[i].len > bsz) bsz = r->chunks[i].len;
        int nb = r->n < RSLOTS ? (int)r->n : RSLOTS;
        for (int i = 0; i < nb; i++) r->buf[i] = xmalloc(bsz);
        r->pool = store_get_pool(h->s);
        top_up(r);
    }
    *out = r;
    return 0;
}

int store_reader_open(flow_store *s, const flow_hash *key, const char *part,
                      store_reader **out, flow_err *err)
{
    *out = NULL;
    store_handle *h;
    int rc = store_handle_open(s, key, &h, err);
    if (rc) return rc;
    int pi = store_part_find(h->m.art, part);
    rc = pi < 0 ? no_part(key, part, err) : store_handle_reader(h, pi, out, err);
    store_handle_free(h);
    return rc;
}

long long store_reader_read(store_reader *r, void *buf, size_t cap, flow_err *err)
{
    if (r->failed) return flow_fail(err, r->failed, "artifact %s part '%s': reading after an error",
                                    r->keyhex, r->part);
    char *d = buf;
    size_t total = 0;
    while (cap) {
        if (r->bpos == r->blen) {
            if (r->next >= r->n) break;       /* end of part */
            rjob *j = &r->jobs[r->next % RSLOTS];
            pool_wait(r->pool, &j->pj);
            int rc = rjob_result(j, r->keyhex, r->part, r->next, err);
            if (rc) {
                r->failed = rc;
                return rc;
            }
            r->cur = (int)(r->next % RSLOTS);
            r->blen = j->ref.len;
            r->bpos = 0;
            r->next++;
            top_up(r);
        }
        size_t k = r->blen - r->bpos;
        if (k > cap) k = cap;
        memcpy(d, r->buf[r->cur] + r->bpos, k);
        r->bpos += k;
        d += k;
        cap -= k;
        total += k;
    }
    return (long long)total;
}

void store_reader_free(store_reader *r)
{
    if (!r) return;
    for (uint32_t i = r->next; i < r->submitted; i++) pool_wait(r->pool, &r->jobs[i % RSLOTS].pj);
    for (int i = 0; i < RSLOTS; i++) free(r->buf[i]);
    free(r->chunks);
    free(r->part);
    free(r);
}

/* ---- iteration ------------------------------------------------------------- */

int store_foreach(flow_store *s, int (*cb)(const store_artifact *a, void *arg),
                  void *arg, flow_err *err)
{
    /* Collect the keys first so callbacks may use the store freely. */
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_cursor *c;
    rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &c);
    if (rc) {
        store_txn_end(s, txn);
        return store_mdb_fail(s, err, rc, "listing artifacts");
    }
    flow_hash *keys = NULL;
    size_t n = 0, cap = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            keys = xrealloc(keys, cap * sizeof *keys);
        }
        memcpy(keys[n++].b, k.mv_data, 16);
    }
    mdb_cursor_close(c);
    store_txn_end(s, txn);
    if (rc != MDB_NOTFOUND) {
        free(keys);
        return store_mdb_fail(s, err, rc, "listing artifacts");
    }
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        store_artifact *a;
        int r = store_get(s, &keys[i], &a, err);
        if (r == FLOW_E_NOTFOUND) continue;   /* removed meanwhile */
        if (r) { rc = r; break; }
        int stop = cb(a, arg);
        store_artifact_free(a);
        if (stop) break;
    }
    free(keys);
    return rc;
}
