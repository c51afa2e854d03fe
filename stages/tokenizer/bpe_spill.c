/* bpe_spill.c — the word counter's sorted runs on disk (bpe_count.h): the
 * table written out when it passes its share of the memory budget, and
 * the k-way merge that sums the counts of equal keys, so that counting
 * stays exact in bounded memory.
 *
 * A run is an unlinked temporary file in the counter's spill_dir (the bpe
 * stage passes flow_temp_dir: never the store), so nothing stays on disk
 * on any path, an error or a killed worker included.  Records are in the
 * arena format (u32 len, u64 count, key), sorted by key bytes (memcmp,
 * then length); a run's keys are distinct.  When BPE_FANIN runs of one
 * level exist they are merged into one run of the next level, so at most
 * BPE_FANIN - 1 runs per level stay open (descriptors and read buffers
 * bounded) and a record is rewritten once per level.  The merged counts
 * do not depend on where the spills fell: a sum is a sum.
 */
#include "stages/tokenizer/bpe_count.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define BPE_FANIN 16
#define RUN_BUF (1 << 18)       /* stdio buffer of an open run */
#define PREFETCH_AHEAD 16       /* slots */

static int key_cmp(const char *a, uint32_t la, const char *b, uint32_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c)
        return c;
    return la < lb ? -1 : la > lb;
}

/* While a table is sorted for a spill, a slot's len and h hold the first
 * 8 key bytes instead (big-endian, zero-padded: len the first 4), so that
 * most comparisons decide without touching the record, which lies
 * anywhere in the arena: with millions of words every such touch is a
 * cache miss.  Order: the prefix as an unsigned 64-bit number, then the
 * whole key (key_cmp); the two agree, because a shorter key's padding 0 is
 * below any byte that differs from it. */
static void slot_to_prefix(bpe_slot *v)
{
    const unsigned char *k = (const unsigned char *)v->rec + BPE_REC_HEAD;
    uint32_t len = v->len, w[2] = {0, 0};
    for (uint32_t i = 0; i < 8; i++)
        w[i / 4] |= (uint32_t)(i < len ? k[i] : 0) << (24 - 8 * (i % 4));
    v->len = w[0];
    v->h = w[1];
}

static inline int slot_less(const bpe_slot *a, const bpe_slot *b)
{
    if (a->len != b->len)
        return a->len < b->len;
    if (a->h != b->h)
        return a->h < b->h;
    return key_cmp(a->rec + BPE_REC_HEAD, bpe_rec_len(a->rec), b->rec + BPE_REC_HEAD,
                   bpe_rec_len(b->rec)) < 0;
}

/* ---- sorting the table in place (no buffer: qsort may allocate n more) -- */
static void sift(bpe_slot *v, size_t i, size_t n)
{
    bpe_slot x = v[i];
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && slot_less(&v[c], &v[c + 1]))
            c++;
        if (!slot_less(&x, &v[c]))
            break;
        v[i] = v[c];
    }
    v[i] = x;
}

static void heapsort_slots(bpe_slot *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift(v, i, n);
    while (n > 1) {
        bpe_slot t = v[0];
        v[0] = v[--n];
        v[n] = t;
        sift(v, 0, n);
    }
}

/* Introsort: quicksort on the median of three, heapsort past a depth
 * limit, insertion sort below 16 (keys are distinct). */
static void sort_slots(bpe_slot *v, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            heapsort_slots(v, n);
            return;
        }
        bpe_slot *a = &v[0], *m = &v[n / 2], *z = &v[n - 1], t;
        if (slot_less(m, a)) { t = *m; *m = *a; *a = t; }
        if (slot_less(z, m)) { t = *z; *z = *m; *m = t; }
        if (slot_less(m, a)) { t = *m; *m = *a; *a = t; }
        bpe_slot pivot = *m;
        size_t i = 0, j = n - 1;
        for (;;) {
            while (slot_less(&v[i], &pivot))
                i++;
            while (slot_less(&pivot, &v[j]))
                j--;
            if (i >= j)
                break;
            t = v[i]; v[i] = v[j]; v[j] = t;
            i++;
            j--;
        }
        /* [0, j] <= pivot <= [j + 1, n): recurse on the smaller side */
        size_t left = j + 1;
        if (left < n - left) {
            sort_slots(v, left, depth);
            v += left;
            n -= left;
        } else {
            sort_slots(v + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        bpe_slot x = v[i];
        size_t j = i;
        for (; j > 0 && slot_less(&x, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* ---- run files ------------------------------------------------------------ */
static int io_fail(const tok_counter *k, flow_err *err, const char *what, int e)
{
    return flow_fail(err, FLOW_E_IO, "cannot %s a word-count spill file in %s: %s; free space "
                     "there or set TMPDIR to a folder with room (the runs so far hold %llu MB), "
                     "or raise memory_mb so that fewer words spill",
                     what, k->spill_dir, e ? strerror(e) : "file truncated",
                     (unsigned long long)(k->spilled_bytes >> 20));
}

static int run_open(tok_counter *k, bpe_run *r, flow_err *err)
{
    size_t n = strlen(k->spill_dir) + 32;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/flow-bpe-run-XXXXXX", k->spill_dir);
    int fd = mkstemp(path);
    int e = errno;
    if (fd >= 0)
        unlink(path);   /* gone from the folder now; the data lives while fd is open */
    free(path);
    if (fd < 0)
        return io_fail(k, err, "create", e);
    FILE *f = fdopen(fd, "w+b");
    if (!f) {
        e = errno;
        close(fd);
        return io_fail(k, err, "open", e);
    }
    setvbuf(f, NULL, _IOFBF, RUN_BUF);
    *r = (bpe_run){f, 0, 0, 0};
    return 0;
}

static int run_put(bpe_run *r, const char *s, uint32_t len, uint64_t count)
{
    char head[BPE_REC_HEAD];
    memcpy(head, &len, 4);
    memcpy(head + 4, &count, 8);
    if (fwrite(head, 1, BPE_REC_HEAD, r->f) != BPE_REC_HEAD ||
        (len && fwrite(s, 1, len, r->f) != len))
        return -1;
    r->nrec++;
    r->bytes += BPE_REC_HEAD + (uint64_t)len;
    return 0;
}

/* Flushes a written run and rewinds it for reading; -1 with errno. */
static int run_finish(bpe_run *r)
{
    if (fflush(r->f) != 0 || ferror(r->f))
        return -1;
    rewind(r->f);
    return 0;
}

static void run_close(bpe_run *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
}

void bpe_runs_release(tok_counter *k)
{
    for (int i = 0; i < k->nruns; i++)
        run_close(&k->runs[i]);
    free(k->runs);
    k->runs = NULL;
    k->nruns = k->capruns = 0;
}

/* ---- the k-way merge -------------------------------------------------------- */
typedef struct cursor {
    bpe_run *r;
    char *key; uint32_t len, cap;
    uint64_t count;
} cursor;

/* The next record of c's run: 1, 0 at its end, -1 on a read error or a
 * truncated record (errno 0). */
static int cursor_next(cursor *c)
{
    char head[BPE_REC_HEAD];
    size_t got = fread(head, 1, BPE_REC_HEAD, c->r->f);
    if (got == 0 && feof(c->r->f))
        return 0;
    errno = 0;
    if (got != BPE_REC_HEAD)
        return -1;
    memcpy(&c->len, head, 4);
    memcpy(&c->count, head + 4, 8);
    if (c->len > c->cap) {
        c->cap = c->len;
        c->key = xrealloc(c->key, c->cap);
    }
    if (c->len && fread(c->key, 1, c->len, c->r->f) != c->len)
        return -1;
    return 1;
}

static inline int cursor_less(const cursor *a, const cursor *b)
{
    return key_cmp(a->key, a->len, b->key, b->len) < 0;
}

static void heap_down(cursor *cu, int *h, int n, int i)
{
    int x = h[i];
    for (int c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && cursor_less(&cu[h[c + 1]], &cu[h[c]]))
            c++;
        if (!cursor_less(&cu[h[c]], &cu[x]))
            break;
        h[i] = h[c];
    }
    h[i] = x;
}

/* Every key of runs[0..n) once, in key order, with its summed count. */
static int merge_range(const tok_counter *k, bpe_run *runs, int n, bpe_word_fn fn, void *arg,
                       flow_err *err)
{
    cursor *cu = xcalloc((size_t)n, sizeof *cu);
    int *h = xmalloc((size_t)n * sizeof *h), hn = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        cu[i].r = &runs[i];
        int g = cursor_next(&cu[i]);
        if (g < 0)
            rc = io_fail(k, err, "read", errno);
        else if (g)
            h[hn++] = i;
    }
    for (int i = hn / 2; i-- > 0;)
        heap_down(cu, h, hn, i);
    char *key = NULL;
    uint32_t klen = 0, kcap = 0;
    uint64_t sum = 0;
    int have = 0;
    while (!rc && hn) {
        cursor *c = &cu[h[0]];
        if (have && key_cmp(c->key, c->len, key, klen) == 0)
            sum += c->count;
        else {
            if (have && (rc = fn(arg, key, klen, sum)) != 0)
                break;
            if (c->len > kcap) {
                kcap = c->len;
                key = xrealloc(key, kcap);
            }
            if (c->len)
                memcpy(key, c->key, c->len);
            klen = c->len;
            sum = c->count;
            have = 1;
        }
        int g = cursor_next(c);
        if (g < 0) {
            rc = io_fail(k, err, "read", errno);
            break;
        }
        if (!g)
            h[0] = h[--hn];
        if (hn)
            heap_down(cu, h, hn, 0);
    }
    if (!rc && have)
        rc = fn(arg, key, klen, sum);
    for (int i = 0; i < n; i++)
        free(cu[i].key);
    free(cu);
    free(h);
    free(key);
    return rc;
}

int bpe_merge_runs(tok_counter *k, bpe_word_fn fn, void *arg, flow_err *err)
{
    return merge_range(k, k->runs, k->nruns, fn, arg, err);
}

typedef struct run_sink { bpe_run *out; int e; } run_sink;

static int sink_word(void *arg, const char *s, uint32_t len, uint64_t count)
{
    run_sink *sk = arg;
    if (run_put(sk->out, s, len, count) != 0) {
        sk->e = errno;
        return FLOW_E_IO;
    }
    return 0;
}

/* Merges the last BPE_FANIN runs (one level) into one of the next level. */
static int cascade(tok_counter *k, flow_err *err)
{
    bpe_run *from = &k->runs[k->nruns - BPE_FANIN], out;
    int rc = run_open(k, &out, err);
    if (rc)
        return rc;
    out.level = from[0].level + 1;
    run_sink sk = {&out, 0};
    rc = merge_range(k, from, BPE_FANIN, sink_word, &sk, err);
    if (rc == FLOW_E_IO && sk.e)
        rc = io_fail(k, err, "write", sk.e);
    else if (!rc && run_finish(&out) != 0)
        rc = io_fail(k, err, "write", errno);
    if (rc) {
        run_close(&out);
        return rc;
    }
    for (int i = 0; i < BPE_FANIN; i++)
        run_close(&from[i]);
    k->nruns -= BPE_FANIN;
    k->runs[k->nruns++] = out;
    k->spilled_bytes += out.bytes;
    return 0;
}

int bpe_spill_table(tok_counter *k, flow_err *err)
{
    if (!k->n)
        return 0;
    /* each record lies anywhere in the arena: it is fetched a few slots
     * ahead of its use (PREFETCH_AHEAD), here and when the run is written */
    size_t n = 0;
    for (size_t i = 0; i < k->cap; i++) {
        if (i + PREFETCH_AHEAD < k->cap && k->slot[i + PREFETCH_AHEAD].rec)
            __builtin_prefetch(k->slot[i + PREFETCH_AHEAD].rec);
        if (k->slot[i].rec) {
            k->slot[n] = k->slot[i];
            slot_to_prefix(&k->slot[n++]);
        }
    }
    int depth = 2;
    for (size_t m = n; m > 1; m >>= 1)
        depth += 2;
    sort_slots(k->slot, n, depth);
    bpe_run r;
    int rc = run_open(k, &r, err);
    for (size_t i = 0; !rc && i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            __builtin_prefetch(k->slot[i + PREFETCH_AHEAD].rec);
        const char *rec = k->slot[i].rec;
        if (run_put(&r, rec + BPE_REC_HEAD, bpe_rec_len(rec), bpe_rec_count(rec)) != 0)
            rc = io_fail(k, err, "write", errno);
    }
    if (!rc && run_finish(&r) != 0)
        rc = io_fail(k, err, "write", errno);
    if (rc) {
        run_close(&r);
        return rc;
    }
    if (k->nruns == k->capruns) {
        k->capruns = k->capruns ? k->capruns * 2 : 16;
        k->runs = xrealloc(k->runs, (size_t)k->capruns * sizeof *k->runs);
    }
    k->runs[k->nruns++] = r;
    k->nspills++;
    k->spilled_bytes += r.bytes;
    while (!rc && k->nruns >= BPE_FANIN &&
           k->runs[k->nruns - BPE_FANIN].level == k->runs[k->nruns - 1].level)
        rc = cascade(k, err);
    return rc;
}
