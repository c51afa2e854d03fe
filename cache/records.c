/* records.c — the small keyed records of the store: node history (the
 * recent keys built for a named node of a graph), the stat cache (file
 * content hashes keyed by path and validated by size, mtime and inode) and
 * build leases (which process is building a node key right now) and build
 * roots (the live set of a running build: a lease of the build process
 * that also lists the artifact keys the build makes or will read; gc keeps
 * them while the process lives).
 *
 * Every value starts with a u32 magic and a u32 version; a record that
 * fails to decode is treated as absent (history, stat cache) or as a stale
 * lease that may be taken over. */
#include "store_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HIST_MAGIC 0x49484C46u      /* "FLHI" */
#define STAT_MAGIC 0x54534C46u      /* "FLST" */
#define LEASE_MAGIC 0x534C4C46u     /* "FLLS" */
#define HIST_KEEP 20
#define MAX_TEXT_KEY 480            /* LMDB keys are at most 511 bytes */

/* Text keys longer than LMDB allows are replaced by '#' + hex hash. */
static void text_key(flow_buf *b, const char *a, const char *c)
{
    buf_adds(b, a);
    if (c) {
        buf_addc(b, 0);
        buf_adds(b, c);
    }
    if (b->len > MAX_TEXT_KEY) {
        flow_hash h = flow_hash_bytes(b->data, b->len);
        char hex[33];
        flow_hash_hex(&h, hex);
        b->len = 0;
        buf_addc(b, '#');
        buf_adds(b, hex);
    }
}

/* ---- history ------------------------------------------------------------- */

/* value: u32 magic, u32 version, u32 n, then n x (hash[16], u64 time):
 * version 2 times are unix milliseconds, version 1 (read only) seconds. */
typedef struct hist_entry { flow_hash key; int64_t t; } hist_entry;

static int hist_decode(const MDB_val *v, hist_entry *e, int max)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < 12 || get_u32(p) != HIST_MAGIC) return 0;
    uint32_t ver = get_u32(p + 4);
    if (ver != 1 && ver != 2) return 0;
    uint32_t n = get_u32(p + 8);
    if (v->mv_size != 12 + (size_t)n * 24) return 0;
    int k = 0;
    for (uint32_t i = 0; i < n && k < max; i++, k++) {
        memcpy(e[k].key.b, p + 12 + 24 * i, 16);
        e[k].t = (int64_t)get_u64(p + 12 + 24 * i + 16) * (ver == 1 ? 1000 : 1);
    }
    return k;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct hist_ctx { flow_buf *k; const flow_hash *key; int64_t t; } hist_ctx;

static int record_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    hist_ctx *c = arg;
    MDB_val k = { c->k->len, c->k->data }, v;
    hist_entry e[HIST_KEEP + 1];
    int n = 1;
    e[0].key = *c->key;
    e[0].t = c->t;
    int rc = mdb_get(txn, s->dbi[DB_HISTORY], &k, &v);
    if (rc == 0) {
        hist_entry old[HIST_KEEP];
        int m = hist_decode(&v, old, HIST_KEEP);
        for (int i = 0; i < m && n < HIST_KEEP; i++)
            if (!flow_hash_eq(&old[i].key, c->key)) e[n++] = old[i];
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    unsigned char buf[12 + 24 * HIST_KEEP];
    put_u32(buf, HIST_MAGIC);
    put_u32(buf + 4, 2);
    put_u32(buf + 8, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        memcpy(buf + 12 + 24 * i, e[i].key.b, 16);
        put_u64(buf + 12 + 24 * i + 16, (uint64_t)e[i].t);
    }
    v.mv_size = 12 + 24 * (size_t)n;
    v.mv_data = buf;
    return mdb_put(txn, s->dbi[DB_HISTORY], &k, &v, 0);
}

/* Both history writes of store_record_build_marked in one transaction:
 * the build mark (when asked for) before the node's entry. */
typedef struct mark_ctx { hist_ctx mark, node; int with_mark; } mark_ctx;

static int record_marked_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    mark_ctx *m = arg;
    int rc = m->with_mark ? record_fn(s, txn, &m->mark, err) : 0;
    return rc ? rc : record_fn(s, txn, &m->node, err);
}

int store_record_build(flow_store *s, const char *graph_id, const char *node,
                       const flow_hash *key, flow_err *err)
{
    return store_record_build_marked(s, graph_id, node, key, NULL, err);
}

int store_record_build_marked(flow_store *s, const char *graph_id, const char *node,
                              const flow_hash *key, int *marked, flow_err *err)
{
    flow_buf k;
    buf_init(&k);
    text_key(&k, graph_id, node);
    /* A null build re-records every node with the key it already has: skip
     * the write transaction (and its fsync) when the newest entry already
     * is this key — only its timestamp would change. */
    MDB_txn *rtxn;
    flow_err rerr;
    if (store_txn_read(s, &rtxn, &rerr) == 0) {
        MDB_val kk = { k.len, k.data }, v;
        hist_entry newest;
        int same = mdb_get(rtxn, s->dbi[DB_HISTORY], &kk, &v) == 0 && hist_decode(&v, &newest, 1) == 1 &&
                   flow_hash_eq(&newest.key, key);
        store_txn_end(s, rtxn);
        if (same) {
            buf_release(&k);
            return 0;
        }
    }
    mark_ctx c;
    memset(&c, 0, sizeof c);
    c.node.k = &k;
    c.node.key = key;
    c.node.t = now_ms();
    flow_buf mk;
    buf_init(&mk);
    flow_hash mark;
    if (marked && !*marked) {
        /* a key no build can repeat: graph, time, process */
        text_key(&mk, graph_id, STORE_BUILD_MARK);
        char id[128];
        int idn = snprintf(id, sizeof id, "%s/%lld/%ld", graph_id, (long long)c.node.t, (long)getpid());
        mark = flow_hash_bytes(id, (size_t)idn);
        c.mark.k = &mk;
        c.mark.key = &mark;
        c.mark.t = c.node.t;
        c.with_mark = 1;
    }
    int rc = store_write(s, "recording node history", record_marked_fn, &c, 1, err);
    if (rc == 0 && c.with_mark) *marked = 1;
    buf_release(&k);
    buf_release(&mk);
    return rc;
}

int store_last_builds(flow_store *s, const char *graph_id, const char *node,
                      flow_hash *keys, int max, int *n, flow_err *err)
{
    return store_node_history(s, graph_id, node, keys, NULL, max, n, err);
}

int store_node_history(flow_store *s, const char *graph_id, const char *node,
                       flow_hash *keys, int64_t *t_ms, int max, int *n, flow_err *err)
{
    *n = 0;
    flow_buf k;
    buf_init(&k);
    text_key(&k, graph_id, node);
    MDB_txn *txn;
    int rc = store_txn_read(s, &txn, err);
    if (rc) { buf_release(&k); return rc; }
    MDB_val kk = { k.len, k.data }, v;
    rc = mdb_get(txn, s->dbi[DB_HISTORY], &kk, &v);
    if (rc == 0) {
        hist_entry e[HIST_KEEP];
        int m = hist_decode(&v, e, HIST_KEEP);
        for (int i = 0; i < m && i < max; i++) {
            if (t_ms) t_ms[*n] = e[i].t;
            keys[(*n)++] = e[i].key;
        }
    }
    store_txn_end(s, txn);
    buf_release(&k);
    if (rc && rc != MDB_NOTFOUND) return store_mdb_fail(s, err, rc, "reading node history");
    return 0;
}

/* ---- stat cache ------------------------------------------------------------ */
/* value: u32 magic, u32 version 1, u64 size, i64 mtime_ns, u64 inode, hash[16] */

/* Puts are buffered in the flow_store and written STAT_BATCH at a time (and
 * at store_sync / store_close): hashing a 1,400-file corpus would otherwise
 * cost 1,400 commits with an fsync each.  Losing buffered entries (a
 * killed process) only costs a rehash. */
#define STAT_BATCH 512

typedef struct stat_pending {
    char *key;
    size_t klen;
    unsigned char v[48];
} stat_pending;

static int stat_match(const unsigned char *p, uint64_t size, int64_t mtime_ns, uint64_t inode)
{
    return get_u32(p) == STAT_MAGIC && get_u32(p + 4) == 1 && get_u64(p + 8) == size &&
           (int64_t)get_u64(p + 16) == mtime_ns && get_u64(p + 24) == inode;
}

/* The pending entries are indexed by an open-addressing table of
 * STAT_SLOTS (> 2 x STAT_BATCH) slots, so a lookup costs one hash, not a
 * scan of up to STAT_BATCH entries: hashing a 500k-file corpus looks every
 * file up twice (get, then put). */
#define STAT_SLOTS 2048

static size_t pending_slot(flow_store *s, const flow_buf *k)
{
    if (!s->stat_slot) s->stat_slot = xcalloc(STAT_SLOTS, sizeof *s->stat_slot);
    flow_hash h = flow_hash_bytes(k->data, k->len);
    size_t i = get_u32(h.b) & (STAT_SLOTS - 1);
    stat_pending *sp = s->stat_pending;
    for (;; i = (i + 1) & (STAT_SLOTS - 1)) {
        uint32_t e = s->stat_slot[i];
        if (!e) return i;
        if (sp[e - 1].klen == k->len && memcmp(sp[e - 1].key, k->data, k->len) == 0) return i;
    }
}

static stat_pending *pending_find(flow_store *s, const flow_buf *k)
{
    if (!s->nstat) return NULL;
    uint32_t e = s->stat_slot[pending_slot(s, k)];
    return e ? &((stat_pending *)s->stat_pending)[e - 1] : NULL;
}

/* One lookup: the pending puts first (this process's, not yet written),
 * then txn (NULL: a read transaction of its own).  k: scratch. */
static int stat_lookup(flow_store *s, MDB_txn *txn, flow_buf *k, const char *path, uint64_t size,
                       int64_t mtime_ns, uint64_t inode, flow_hash *out)
{
    k->len = 0;
    text_key(k, path, NULL);
    stat_pending *p = pending_find(s, k);
    if (p) {
        int hit = stat_match(p->v, size, mtime_ns, inode);
        if (hit) memcpy(out->b, p->v + 32, 16);
        return hit ? 0 : FLOW_E_NOTFOUND;
    }
    MDB_txn *own = NULL;
    flow_err e;
    if (!txn && store_txn_read(s, &own, &e)) return FLOW_E_NOTFOUND;
    MDB_val kk = { k->len, k->data }, v;
    int rc = mdb_get(txn ? txn : own, s->dbi[DB_STATCACHE], &kk, &v);
    int hit = 0;
    if (rc == 0 && v.mv_size == 48 && stat_match(v.mv_data, size, mtime_ns, inode)) {
        memcpy(out->b, (const unsigned char *)v.mv_data + 32, 16);
        hit = 1;
    }
    if (own) store_txn_end(s, own);
    return hit ? 0 : FLOW_E_NOTFOUND;
}

int store_stat_get(flow_store *s, const char *path, uint64_t size, int64_t mtime_ns,
                   uint64_t inode, flow_hash *out)
{
    flow_buf k;
    buf_init(&k);
    int rc = stat_lookup(s, NULL, &k, path, size, mtime_ns, inode, out);
    buf_release(&k);
    return rc;
}

struct store_stat_reader {
    flow_store *s;
    MDB_txn *txn;           /* NULL: could not begin one; each lookup tries its own */
    flow_buf k;
};

store_stat_reader *store_stat_reader_open(flow_store *s)
{
    store_stat_reader *r = xcalloc(1, sizeof *r);
    r->s = s;
    buf_init(&r->k);
    flow_err e;
    if (store_txn_read(s, &r->txn, &e)) r->txn = NULL;
    return r;
}

int store_stat_read(store_stat_reader *r, const char *path, uint64_t size, int64_t mtime_ns,
                    uint64_t inode, flow_hash *out)
{
    return stat_lookup(r->s, r->txn, &r->k, path, size, mtime_ns, inode, out);
}

void store_stat_reader_close(store_stat_reader *r)
{
    if (!r) return;
    if (r->txn) store_txn_end(r->s, r->txn);
    buf_release(&r->k);
    free(r);
}

static int stat_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    (void)arg;
    for (size_t i = 0; i < s->nstat; i++) {
        stat_pending *p = &((stat_pending *)s->stat_pending)[i];
        MDB_val k = { p->klen, p->key }, v = { 48, p->v };
        int rc = mdb_put(txn, s->dbi[DB_STATCACHE], &k, &v, 0);
        if (rc) return rc;
    }
    return 0;
}

static void drop_pending(flow_store *s)
{
    stat_pending *sp = s->stat_pending;
    for (size_t i = 0; i < s->nstat; i++) free(sp[i].key);
    if (s->nstat) memset(s->stat_slot, 0, STAT_SLOTS * sizeof *s->stat_slot);
    s->nstat = 0;
}

int store_stat_flush(flow_store *s, flow_err *err)
{
    if (!s->nstat) return 0;
    int rc = s->readonly ? 0 : store_write(s, "updating the stat cache", stat_fn, NULL, 1, err);
    drop_pending(s);
    return rc;
}

void store_stat_release(flow_store *s)
{
    drop_pending(s);
    free(s->stat_pending);
    free(s->stat_slot);
    s->stat_pending = NULL;
    s->stat_slot = NULL;
    s->capstat = 0;
}

int store_stat_put(flow_store *s, const char *path, uint64_t size, int64_t mtime_ns,
                   uint64_t inode, const flow_hash *h, flow_err *err)
{
    if (s->readonly)
        return flow_fail(err, FLOW_E_USAGE, "cache %s was opened read-only", s->dir);
    flow_buf k;
    buf_init(&k);
    text_key(&k, path, NULL);
    size_t slot = pending_slot(s, &k);
    stat_pending *p = s->stat_slot[slot] ? &((stat_pending *)s->stat_pending)[s->stat_slot[slot] - 1] : NULL;
    if (!p) {
        if (s->nstat == s->capstat) {
            s->capstat = s->capstat ? 2 * s->capstat : 64;
            s->stat_pending = xrealloc(s->stat_pending, s->capstat * sizeof *p);
        }
        p = &((stat_pending *)s->stat_pending)[s->nstat++];
        s->stat_slot[slot] = (uint32_t)s->nstat;
        p->klen = k.len;
        p->key = buf_detach(&k, NULL);
    } else {
        buf_release(&k);
    }
    put_u32(p->v, STAT_MAGIC);
    put_u32(p->v + 4, 1);
    put_u64(p->v + 8, size);
    put_u64(p->v + 16, (uint64_t)mtime_ns);
    put_u64(p->v + 24, inode);
    memcpy(p->v + 32, h->b, 16);
    return s->nstat >= STAT_BATCH ? store_stat_flush(s, err) : 0;
}

/* ---- leases ------------------------------------------------------------------ */
/* value (version 2): u32 magic, u32 version, i32 pid, u64 start time
 * (clock ticks since boot, /proc/<pid>/stat field 22), i64 expiry (unix s,
 * 0 = none), i64 taken (unix s, when this owner took it), u16 host length,
 * host.  Version 1 (no taken time) is still read.  Version 3 (build roots,
 * under a ROOT_PREFIX key instead of a 16-byte node key) appends u32 n and
 * n 16-byte artifact keys. */

typedef struct lease {
    int pid;
    uint64_t start;
    int64_t expiry, taken;
    char host[256];
    const unsigned char *keys;      /* version 3: points into the value */
    uint32_t nkeys;
} lease;

static uint64_t proc_start_time(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');   /* the command name may contain spaces */
    if (!p) return 0;
    p++;
    /* fields after ')': 3 state ... 22 starttime -> skip 19 fields */
    for (int i = 0; i < 19 && p; i++) {
        p = strchr(p + 1, ' ');
    }
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void lease_self(lease *l, int ttl_s)
{
    memset(l, 0, sizeof *l);
    l->pid = (int)getpid();
    l->start = proc_start_time(l->pid);
    l->expiry = ttl_s > 0 ? store_now() + ttl_s : 0;
    l->taken = store_now();
    if (gethostname(l->host, sizeof l->host - 1) != 0) strcpy(l->host, "?");
}

static int lease_decode(const MDB_val *v, lease *l)
{
    const unsigned char *p = v->mv_data;
    memset(l, 0, sizeof *l);
    if (v->mv_size < 30 || get_u32(p) != LEASE_MAGIC) return -1;
    uint32_t ver = get_u32(p + 4);
    size_t at;
    if (ver == 1) {
        at = 28;
    } else if ((ver == 2 || ver == 3) && v->mv_size >= 38) {
        l->taken = (int64_t)get_u64(p + 28);
        at = 36;
    } else {
        return -1;
    }
    l->pid = (int)get_u32(p + 8);
    l->start = get_u64(p + 12);
    l->expiry = (int64_t)get_u64(p + 20);
    uint16_t hl = get_u16(p + at);
    size_t end = at + 2 + (size_t)hl;
    if (hl >= sizeof l->host || v->mv_size < end) return -1;
    memcpy(l->host, p + at + 2, hl);
    if (ver == 3) {
        if (v->mv_size < end + 4) return -1;
        l->nkeys = get_u32(p + end);
        l->keys = p + end + 4;
        end += 4 + (size_t)l->nkeys * 16;
    }
    return v->mv_size == end ? 0 : -1;
}

static size_t lease_encode(const lease *l, unsigned char *p)
{
    size_t hl = strlen(l->host);
    put_u32(p, LEASE_MAGIC);
    put_u32(p + 4, l->keys ? 3 : 2);
    put_u32(p + 8, (uint32_t)l->pid);
    put_u64(p + 12, l->start);
    put_u64(p + 20, (uint64_t)l->expiry);
    put_u64(p + 28, (uint64_t)l->taken);
    put_u16(p + 36, (uint16_t)hl);
    memcpy(p + 38, l->host, hl);
    if (!l->keys) return 38 + hl;
    put_u32(p + 38 + hl, l->nkeys);
    memcpy(p + 42 + hl, l->keys, (size_t)l->nkeys * 16);
    return 42 + hl + (size_t)l->nkeys * 16;
}

static int same_owner(const lease *a, const lease *b)
{
    return a->pid == b->pid && a->start == b->start && strcmp(a->host, b->host) == 0;
}

/* Is the owner of `l`, a process on this host, gone (or its pid reused)? */
static int owner_dead(const lease *l)
{
    if (kill(l->pid, 0) != 0 && errno == ESRCH) return 1;
    uint64_t st = proc_start_time(l->pid);
    return st && l->start && st != l->start;            /* the pid was reused */
}

/* May `me` take over lease `l`? */
static int lease_stale(const lease *l, const lease *me)
{
    if (l->expiry && store_now() >= l->expiry) return 1;
    if (strcmp(l->host, me->host) != 0) return 0;      /* cannot see other hosts' processes */
    return owner_dead(l);
}

/* Is a build-roots record dead?  On this host only its process decides
 * (a stopped build, ^Z, keeps its inputs); another host's record lives
 * until it expires without renewal. */
static int roots_stale(const lease *l, const lease *me)
{
    if (strcmp(l->host, me->host) == 0) return owner_dead(l);
    return l->expiry && store_now() >= l->expiry;
}

enum { L_TAKE, L_RENEW, L_RELEASE };
typedef struct lease_ctx { const flow_hash *key; int ttl, op; lease me; } lease_ctx;

static int lease_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    lease_ctx *c = arg;
    MDB_val k = { 16, (void *)c->key->b }, v;
    int rc = mdb_get(txn, s->dbi[DB_LEASES], &k, &v);
    if (rc && rc != MDB_NOTFOUND) return rc;
    lease cur;
    int held = rc == 0 && lease_decode(&v, &cur) == 0;
    int mine = held && same_owner(&cur, &c->me);
    if (c->op == L_RELEASE) {
        if (!mine) return 0;   /* not ours (any more): leave it */
        return mdb_del(txn, s->dbi[DB_LEASES], &k, NULL);
    }
    if (held && !mine && !lease_stale(&cur, &c->me)) {
        char hex[33];
        flow_hash_hex(c->key, hex);
        if (cur.expiry)
            return flow_fail(err, FLOW_E_BUSY, "node key %s is being built by pid %d on host "
                             "%s (lease expires in %lld s)", hex, cur.pid, cur.host,
                             (long long)(cur.expiry - store_now()));
        return flow_fail(err, FLOW_E_BUSY, "node key %s is being built by pid %d on host %s",
                         hex, cur.pid, cur.host);
    }
    unsigned char buf[320];
    lease me = c->me;
    if (mine) me.taken = cur.taken;     /* renewing keeps the original time */
    v.mv_size = lease_encode(&me, buf);
    v.mv_data = buf;
    return mdb_put(txn, s->dbi[DB_LEASES], &k, &v, 0);
}

static int lease_op(flow_store *s, const flow_hash *key, int ttl_s, int op, flow_err *err)
{
    lease_ctx c = { key, ttl_s, op, {0} };
    lease_self(&c.me, ttl_s);
    /* leases are meaningless after a reboot */
    return store_write(s, op == L_RELEASE ? "releasing a lease" : "taking a lease", lease_fn,
                       &c, 1, err);
}

int store_lease_take(flow_store *s, const flow_hash *key, int ttl_s, flow_err *err)
{
    return lease_op(s, key, ttl_s, L_TAKE, err);
}

int store_lease_renew(flow_store *s, const flow_hash *key, int ttl_s, flow_err *err)
{
    return lease_op(s, key, ttl_s, L_RENEW, err);
}

int store_lease_release(flow_store *s, const flow_hash *key, flow_err *err)
{
    return lease_op(s, key, 0, L_RELEASE, err);
}

int store_oldest_live_lease(flow_store *s, MDB_txn *txn, int64_t *oldest)
{
    *oldest = INT64_MAX;
    lease me;
    lease_self(&me, 0);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dbi[DB_LEASES], &c);
    if (rc) return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        lease l;
        if (k.mv_size != 16 || lease_decode(&v, &l) != 0) continue;     /* roots: not a node */
        if (!same_owner(&l, &me) && lease_stale(&l, &me)) continue;
        if (l.taken < *oldest) *oldest = l.taken;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- build roots ------------------------------------------------------------ */
/* Key: ROOT_PREFIX host '/' pid '/' start time, so each process has one. */
#define ROOT_PREFIX "roots/"

static void roots_key(const lease *me, char *k, size_t cap)
{
    snprintf(k, cap, ROOT_PREFIX "%s/%d/%llu", me->host, me->pid, (unsigned long long)me->start);
}

typedef struct roots_ctx { const flow_hash *keys; size_t n; int drop; lease me; } roots_ctx;

static int roots_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    roots_ctx *c = arg;
    char kb[400];
    roots_key(&c->me, kb, sizeof kb);
    MDB_val k = { strlen(kb), kb }, v;
    if (c->drop) {
        int rc = mdb_del(txn, s->dbi[DB_LEASES], &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    lease me = c->me, cur;
    int rc = mdb_get(txn, s->dbi[DB_LEASES], &k, &v);
    if (rc == 0 && lease_decode(&v, &cur) == 0) me.taken = cur.taken;   /* keep the first time */
    else if (rc && rc != MDB_NOTFOUND) return rc;
    me.keys = (const unsigned char *)c->keys;
    me.nkeys = (uint32_t)c->n;
    unsigned char *buf = xmalloc(42 + sizeof me.host + c->n * 16);
    v.mv_size = lease_encode(&me, buf);
    v.mv_data = buf;
    rc = mdb_put(txn, s->dbi[DB_LEASES], &k, &v, 0);
    free(buf);
    return rc;
}

int store_roots_put(flow_store *s, const flow_hash *keys, size_t n, int ttl_s, flow_err *err)
{
    if (n > UINT32_MAX / 16) return flow_fail(err, FLOW_E_USAGE, "cache %s: %zu roots", s->dir, n);
    roots_ctx c = { keys, n, 0, {0} };
    lease_self(&c.me, ttl_s);
    return store_write(s, "registering a build's live artifacts", roots_fn, &c, 1, err);
}

int store_roots_drop(flow_store *s, flow_err *err)
{
    roots_ctx c = { NULL, 0, 1, {0} };
    lease_self(&c.me, 0);
    return store_write(s, "dropping a build's live artifacts", roots_fn, &c, 1, err);
}

/* Adds one live record's keys to roots and notes its owner in st. */
static void roots_add(MDB_txn *txn, flow_store *s, const lease *l, hset *roots, store_gc_stats *st)
{
    uint64_t present = 0;
    for (uint32_t i = 0; i < l->nkeys; i++) {
        flow_hash h;
        memcpy(h.b, l->keys + 16 * i, 16);
        int added;
        hset_put(roots, &h, &added);
        MDB_val k = { 16, h.b }, v;
        if (mdb_get(txn, s->dbi[DB_ARTIFACTS], &k, &v) == 0) present++;
    }
    if (st->nbuilds < STORE_GC_MAX_BUILDS) {
        store_gc_build *b = &st->builds[st->nbuilds];
        b->pid = l->pid;
        snprintf(b->host, sizeof b->host, "%.63s", l->host);
        b->artifacts = present;
    }
    st->nbuilds++;
}

int store_live_roots(flow_store *s, MDB_txn *txn, hset *roots, store_gc_stats *st)
{
    lease me;
    lease_self(&me, 0);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dbi[DB_LEASES], &c);
    if (rc) return rc;
    flow_buf dead;          /* u16 length + key, for each record to delete */
    buf_init(&dead);
    MDB_val k, v;
    size_t pl = strlen(ROOT_PREFIX);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        int is_root = k.mv_size > pl && memcmp(k.mv_data, ROOT_PREFIX, pl) == 0;
        lease l;
        /* a record this flow cannot read (a newer version?) is left alone */
        if (lease_decode(&v, &l) != 0 || (is_root ? l.keys == NULL : k.mv_size != 16)) continue;
        int stale = is_root ? roots_stale(&l, &me) : lease_stale(&l, &me);
        if (!stale && is_root) roots_add(txn, s, &l, roots, st);
        if (!stale || k.mv_size > 511) continue;
        unsigned char len[2];
        put_u16(len, (uint16_t)k.mv_size);
        buf_add(&dead, len, 2);
        buf_add(&dead, k.mv_data, k.mv_size);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) rc = 0;
    for (size_t at = 0; rc == 0 && at < dead.len;) {
        MDB_val dk = { get_u16((unsigned char *)dead.data + at), dead.data + at + 2 };
        rc = mdb_del(txn, s->dbi[DB_LEASES], &dk, NULL);
        if (rc == MDB_NOTFOUND) rc = 0;
        at += 2 + dk.mv_size;
        st->stale_records++;
    }
    buf_release(&dead);
    return rc;
}
