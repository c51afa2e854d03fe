/* repair.c — store_repair (`flow verify --repair`): removes what a damaged
 * chunk makes unusable, so the next build rebuilds exactly those nodes.
 *
 * A damaged chunk stays "reachable" for gc as long as an artifact lists it,
 * and a build sees the artifact's key and reports the node cached, so every
 * dependent fails reading it.  Repair breaks that loop:
 *
 *   1. checks (outside any write transaction, each chunk through its own
 *      short read transaction) every stored chunk — referenced or not: a
 *      damaged unreferenced chunk could otherwise be reused by a writer's
 *      dedup — and every artifact's part/artifact content hashes;
 *   2. in ONE write transaction re-reads every manifest and checkpoint
 *      record and deletes each artifact (with its log) and checkpoint that
 *      is damaged itself, references a damaged chunk, or references a
 *      chunk that is missing; then deletes the damaged chunks.
 *
 * Step 2 decides from the records as they are inside the write transaction,
 * so an artifact committed by a concurrent build between the two steps
 * (deduplicated against a damaged chunk) is removed too; a build still
 * writing finds the chunk gone in its own commit transaction and fails
 * cleanly instead of publishing a reference to it (writer.c). */
#include "store_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct hlist { flow_hash *k; uint32_t *len; size_t n, cap; } hlist;

static void hl_add(hlist *l, const void *key, uint32_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->k = xrealloc(l->k, l->cap * sizeof *l->k);
        l->len = xrealloc(l->len, l->cap * sizeof *l->len);
    }
    memcpy(l->k[l->n].b, key, 16);
    l->len[l->n++] = len;
}

static void hl_release(hlist *l)
{
    free(l->k);
    free(l->len);
    memset(l, 0, sizeof *l);
}

typedef struct rctx {
    store_repair_report report;
    void *arg;
    hset bad_chunks;        /* damaged chunks (value unused) */
    hset bad_arts;          /* artifacts whose content hashes do not add up */
    hlist bad_list;         /* bad_chunks in order, for deletion */
    store_repair_stats st;
    int in_txn;             /* say() collects into removed (the write may rerun) */
    flow_buf removed;       /* NUL-separated removal lines, reported after commit */
} rctx;

static void say(rctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(rctx *c, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->in_txn) buf_add(&c->removed, msg, strlen(msg) + 1);
    else if (c->report) c->report(msg, c->arg);
}

/* Lists every key of table db (16-byte keys) with, for chunks, the raw
 * length in the value header (0 when the header is short). */
static int list_table(flow_store *s, int db, hlist *l, flow_err *err)
{
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) return rc;
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, s->dbi[db], &cur);
    if (!rc) {
        MDB_val k, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != 16) continue;
            uint32_t len = db == DB_CHUNKS && v.mv_size >= CHUNK_HDR
                           ? get_u32((const unsigned char *)v.mv_data + 4) : 0;
            hl_add(l, k.mv_data, len);
        }
        mdb_cursor_close(cur);
    }
    store_txn_end(s, txn);
    return rc == MDB_NOTFOUND ? 0 : store_mdb_fail(s, err, rc, "listing keys for repair");
}

/* Step 1a: decode and re-hash every stored chunk. */
static int check_chunks(flow_store *s, rctx *c, flow_err *err)
{
    hlist all = {0};
    int rc = list_table(s, DB_CHUNKS, &all, err);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    char *buf = xmalloc(STORE_CHUNK_SIZE), *scratch = xmalloc(STORE_CHUNK_SIZE);
    for (size_t i = 0; i < all.n && !rc; i++) {
        char why[256] = "", hex[33];
        uint32_t len = all.len[i];
        int r;
        if (len == 0 || len > STORE_CHUNK_SIZE) {
            r = FLOW_E_CORRUPT;
            snprintf(why, sizeof why, "header gives an impossible length %u", len);
        } else {
            r = chunk_fetch(s, &all.k[i], len, buf, dctx, scratch, why, sizeof why, err);
        }
        if (r == FLOW_E_CORRUPT && strstr(why, "missing")) continue;   /* removed meanwhile */
        if (r == FLOW_E_CORRUPT) {
            int added;
            hset_put(&c->bad_chunks, &all.k[i], &added);
            if (added) hl_add(&c->bad_list, all.k[i].b, len);
            flow_hash_hex(&all.k[i], hex);
            say(c, "chunk %s is damaged: %s", hex, why);
        } else if (r) {
            rc = r;
        }
    }
    ZSTD_freeDCtx(dctx);
    free(buf);
    free(scratch);
    hl_release(&all);
    return rc;
}

/* Step 1b: artifacts whose part or artifact content hash does not match
 * their chunk lists (a damaged manifest that still parses). */
static int check_manifests(flow_store *s, rctx *c, flow_err *err)
{
    hlist arts = {0};
    int rc = list_table(s, DB_ARTIFACTS, &arts, err);
    for (size_t a = 0; a < arts.n && !rc; a++) {
        manifest m;
        flow_err e;
        int r = store_load_manifest(s, &arts.k[a], &m, 1, &e);
        if (r == FLOW_E_NOTFOUND || r == FLOW_E_CORRUPT) continue;  /* step 2 sees an unparsable one */
        if (r) { if (err) *err = e; rc = r; break; }
        manifest_part *mp = xcalloc(m.art->nparts ? (size_t)m.art->nparts : 1, sizeof *mp);
        int ok = 1;
        for (int p = 0; p < m.art->nparts; p++) {
            const store_part_info *pi = &m.art->parts[p];
            flow_hash pc = part_content_hash(pi->size, m.chunks[p], m.nchunks[p]);
            if (!flow_hash_eq(&pc, &pi->content)) ok = 0;
            mp[p].name = pi->name;
            mp[p].content = pi->content;
        }
        flow_hash ac = artifact_content_hash(mp, m.art->nparts);
        if (!flow_hash_eq(&ac, &m.art->content)) ok = 0;
        if (!ok) hset_put(&c->bad_arts, &arts.k[a], NULL);
        free(mp);
        manifest_release(&m);
    }
    hl_release(&arts);
    return rc;
}

/* Why a chunk list cannot be used (NULL when it can). */
static const char *chunk_list_problem(flow_store *s, MDB_txn *txn, rctx *c, const chunk_ref *ch,
                                      uint32_t n, uint32_t *idx, int *rc)
{
    *rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        *idx = i;
        if (hset_get(&c->bad_chunks, &ch[i].h)) return "damaged";
        MDB_val k = { 16, (void *)ch[i].h.b }, v;
        int r = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
        if (r == MDB_NOTFOUND) return "missing";
        if (r) { *rc = r; return NULL; }
        if (v.mv_size < CHUNK_HDR || get_u32((const unsigned char *)v.mv_data + 4) != ch[i].len)
            return "of the wrong length";
    }
    return NULL;
}

static int del_key(MDB_txn *txn, MDB_dbi dbi, const flow_hash *k)
{
    MDB_val kk = { 16, (void *)k->b };
    int rc = mdb_del(txn, dbi, &kk, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Step 2, inside one write transaction (re-runnable: store_write reruns it
 * after growing the map). */
static int repair_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    rctx *c = arg;
    (void)err;
    c->st.artifacts_removed = c->st.checkpoints_removed = c->st.chunks_removed = 0;
    c->removed.len = 0;     /* a rerun (map grown) starts over */
    hlist dead_arts = {0}, dead_ckpts = {0};
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &cur);
    for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) continue;
        flow_hash key;
        memcpy(key.b, k.mv_data, 16);
        char hex[33], why[200] = "";
        flow_hash_hex(&key, hex);
        manifest m;
        flow_err e;
        if (manifest_parse(v.mv_data, v.mv_size, &key, &m, 1, &e) != 0) {
            snprintf(why, sizeof why, "its manifest is damaged");
        } else {
            if (hset_get(&c->bad_arts, &key))
                snprintf(why, sizeof why, "its content hashes do not match its chunk lists");
            for (int p = 0; p < m.art->nparts && !why[0] && !rc; p++) {
                uint32_t idx;
                const char *pb = chunk_list_problem(s, txn, c, m.chunks[p], m.nchunks[p], &idx, &rc);
                if (pb) {
                    char ch[33];
                    flow_hash_hex(&m.chunks[p][idx].h, ch);
                    snprintf(why, sizeof why, "part '%.60s' chunk %u (%s) is %s", m.art->parts[p].name,
                             idx, ch, pb);
                }
            }
            manifest_release(&m);
            if (rc) break;
        }
        if (why[0]) {
            hl_add(&dead_arts, key.b, 0);
            say(c, "removed artifact %s: %s", hex, why);
        }
    }
    if (cur) mdb_cursor_close(cur);
    cur = NULL;
    if (rc != MDB_NOTFOUND) goto out;
    rc = 0;
    for (size_t i = 0; i < dead_arts.n && !rc; i++) {
        rc = del_key(txn, s->dbi[DB_ARTIFACTS], &dead_arts.k[i]);
        if (!rc) rc = del_key(txn, s->dbi[DB_LOGS], &dead_arts.k[i]);
        /* its checkpoint (if any) is checked below on its own */
    }
    if (rc) goto out;
    c->st.artifacts_removed = dead_arts.n;
    rc = mdb_cursor_open(txn, s->dbi[DB_CHECKPOINTS], &cur);
    for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16) continue;
        char hex[33], why[200] = "";
        flow_hash key;
        memcpy(key.b, k.mv_data, 16);
        flow_hash_hex(&key, hex);
        uint64_t size;
        chunk_ref *ch = NULL;
        uint32_t n = 0, idx;
        if (checkpoint_decode(v.mv_data, v.mv_size, &size, &ch, &n) != 0) {
            snprintf(why, sizeof why, "its record is damaged");
        } else {
            const char *pb = chunk_list_problem(s, txn, c, ch, n, &idx, &rc);
            if (pb) {
                char chx[33];
                flow_hash_hex(&ch[idx].h, chx);
                snprintf(why, sizeof why, "chunk %u (%s) is %s", idx, chx, pb);
            }
            free(ch);
            if (rc) break;
        }
        if (why[0]) {
            hl_add(&dead_ckpts, key.b, 0);
            say(c, "removed checkpoint %s: %s", hex, why);
        }
    }
    if (cur) mdb_cursor_close(cur);
    cur = NULL;
    if (rc != MDB_NOTFOUND) goto out;
    rc = 0;
    for (size_t i = 0; i < dead_ckpts.n && !rc; i++) rc = del_key(txn, s->dbi[DB_CHECKPOINTS], &dead_ckpts.k[i]);
    if (rc) goto out;
    c->st.checkpoints_removed = dead_ckpts.n;
    for (size_t i = 0; i < c->bad_list.n && !rc; i++) {
        MDB_val kk = { 16, c->bad_list.k[i].b };
        int r = mdb_del(txn, s->dbi[DB_CHUNKS], &kk, NULL);
        if (r == 0) {
            char hex[33];
            flow_hash_hex(&c->bad_list.k[i], hex);
            say(c, "removed damaged chunk %s", hex);
            c->st.chunks_removed++;
        } else if (r != MDB_NOTFOUND) {
            rc = r;
        }
    }
out:
    if (cur) mdb_cursor_close(cur);
    hl_release(&dead_arts);
    hl_release(&dead_ckpts);
    return rc;
}

int store_repair(flow_store *s, store_repair_report report, void *arg, store_repair_stats *st,
                 flow_err *err)
{
    if (st) memset(st, 0, sizeof *st);
    if (s->readonly)
        return flow_fail(err, FLOW_E_USAGE, "cache %s was opened read-only; cannot repair it", s->dir);
    rctx c;
    memset(&c, 0, sizeof c);
    buf_init(&c.removed);
    c.report = report;
    c.arg = arg;
    hset_init(&c.bad_chunks);
    hset_init(&c.bad_arts);
    int rc = check_chunks(s, &c, err);
    if (!rc) rc = check_manifests(s, &c, err);
    c.in_txn = 1;
    if (!rc) rc = store_write(s, "repairing the cache", repair_fn, &c, 0, err);
    if (!rc && st) *st = c.st;
    for (size_t off = 0; !rc && c.report && off < c.removed.len; off += strlen(c.removed.data + off) + 1)
        c.report(c.removed.data + off, c.arg);
    buf_release(&c.removed);
    hset_release(&c.bad_chunks);
    hset_release(&c.bad_arts);
    hl_release(&c.bad_list);
    return rc;
}
