/* bpe_spill.c — the word counter's sorted runs on disk (bpe_count.h): the
 * table written out when it passes its share of the memory budget, and
 * the k-way merge that sums the counts of equal keys, so that counting
 * stays exact in bounded memory.
 *
 * A run is an unlinked temporary file in the counter's spill_dir (the bpe
 * stage passes flow_temp_dir: never the store), so nothing stays on disk
 * on any path, an error or a killed worker included.  Records are u32
 * len, u32 tag (the key's hash bits the table keeps), u64 count, then the
 * key, sorted by tag and then key bytes (memcmp, then length; slot_less);
 * a run's keys are distinct.  When BPE_FANIN runs of one
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
#define RUN_HEAD 16             /* a run's record: u32 len, u32 tag, u64 count, key */

static int key_cmp(const char *a, uint32_t la, const char *b, uint32_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c)
        return c;
    return la < lb ? -1 : la > lb;
}

/* The runs' order: by the tag (the slot's h: 32 bits of the key's hash),
 * then by key bytes (key_cmp) among equal tags.  Any total order on keys
 * merges the same (a sum is a sum, and the trainer's output does not
 * depend on the order of the words); this one sorts by a number kept in
 * the slot, so that sorting reads the records only for the rare equal
 * tags.  (In key-byte order most comparisons of Han words went to the
 * records, which lie anywhere in the arena: 8 key bytes are under 3 Han
 * characters, shared by most words.) */
static inline int slot_less(const bpe_slot *a, const bpe_slot *b)
{
    if (a->h != b->h)
        return a->h < b->h;
    return key_cmp(a->rec + BPE_REC_HEAD, a->len, b->rec + BPE_REC_HEAD, b->len) < 0;
}

/* ---- sorting the table in place (no buffer: the table is the budget) ---- */
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

static void insertion_sort(bpe_slot *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        bpe_slot x = v[i];
        size_t j = i;
        for (; j > 0 && slot_less(&x, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Introsort: quicksort on the median of three, heapsort past a depth
 * limit, insertion sort below 16 (keys are distinct).  Only for slots of
 * one tag (radix_sort has used all its bits): as many equal tags as that
 * takes would need a made-up input, but they must still sort fast. */
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
    insertion_sort(v, n);
}

#define RADIX_SMALL 32      /* below: insertion sort */

/* In-place MSD radix sort (American flag sort) on the tag's byte at
 * shift, then the next lower byte in each bucket: two sequential passes
 * over the slots per level (count, then permute by cycles), no buffer,
 * no record read.  Slots of one tag (all 4 bytes used) go to sort_slots. */
static void radix_sort(bpe_slot *v, size_t n, int shift)
{
    if (n <= RADIX_SMALL) {
        insertion_sort(v, n);
        return;
    }
    if (shift < 0) {
        int depth = 2;
        for (size_t m = n; m > 1; m >>= 1)
            depth += 2;
        sort_slots(v, n, depth);
        return;
    }
    size_t count[256] = {0}, next[256], end[256];
    for (size_t i = 0; i < n; i++)
        count[(v[i].h >> shift) & 255]++;
    size_t at = 0;
    for (int b = 0; b < 256; b++) {
        next[b] = at;
        at += count[b];
        end[b] = at;
    }
    /* each slot goes to the next free place of its bucket; the slot found
     * there moves on to its own bucket, until the cycle comes back */
    for (int b = 0; b < 256; b++)
        while (next[b] < end[b]) {
            bpe_slot x = v[next[b]];
            unsigned d = (x.h >> shift) & 255;
            while (d != (unsigned)b) {
                bpe_slot t = v[next[d]];
                v[next[d]++] = x;
                x = t;
                d = (x.h >> shift) & 255;
            }
            v[next[b]++] = x;
        }
    for (int b = 0; b < 256; b++)
        if (count[b] > 1)
            radix_sort(v + end[b] - count[b], count[b], shift - 8);
}

void bpe_sort_slots(bpe_slot *v, size_t n)
{
    radix_sort(v, n, 24);
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

static int run_put(bpe_run *r, const char *s, uint32_t len, uint32_t tag, uint64_t count)
{
    char head[RUN_HEAD];
    memcpy(head, &len, 4);
    memcpy(head + 4, &tag, 4);
    memcpy(head + 8, &count, 8);
    if (fwrite(head, 1, RUN_HEAD, r->f) != RUN_HEAD ||
        (len && fwrite(s, 1, len, r->f) != len))
        return -1;
    r->nrec++;
    r->bytes += RUN_HEAD + (uint64_t)len;
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
    uint32_t tag;
    uint64_t count;
} cursor;

/* The next record of c's run: 1, 0 at its end, -1 on a read error or a
 * truncated record (errno 0). */
static int cursor_next(cursor *c)
{
    char head[RUN_HEAD];
    size_t got = fread(head, 1, RUN_HEAD, c->r->f);
    if (got == 0 && feof(c->r->f))
        return 0;
    errno = 0;
    if (got != RUN_HEAD)
        return -1;
    memcpy(&c->len, head, 4);
    memcpy(&c->tag, head + 4, 4);
    memcpy(&c->count, head + 8, 8);
    if (c->len > c->cap) {
        c->cap = c->len;
        c->key = xrealloc(c->key, c->cap);
    }
    if (c->len && fread(c->key, 1, c->len, c->r->f) != c->len)
        return -1;
    return 1;
}

/* slot_less's order */
static inline int cursor_less(const cursor *a, const cursor *b)
{
    if (a->tag != b->tag)
        return a->tag < b->tag;
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

/* A word of a merge with its tag (the runs' order needs it again when
 * the merge writes a run). */
typedef int (*tagged_fn)(void *arg, const char *s, uint32_t len, uint32_t tag, uint64_t count);

/* Every key of runs[0..n) once, in the runs' order, with its summed count. */
static int merge_range(const tok_counter *k, bpe_run *runs, int n, tagged_fn fn, void *arg,
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
    uint32_t klen = 0, kcap = 0, ktag = 0;
    uint64_t sum = 0;
    int have = 0;
    while (!rc && hn) {
        cursor *c = &cu[h[0]];
        if (have && c->tag == ktag && key_cmp(c->key, c->len, key, klen) == 0)
            sum += c->count;
        else {
            if (have && (rc = fn(arg, key, klen, ktag, sum)) != 0)
                break;
            if (c->len > kcap) {
                kcap = c->len;
                key = xrealloc(key, kcap);
            }
            if (c->len)
                memcpy(key, c->key, c->len);
            klen = c->len;
            ktag = c->tag;
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
        rc = fn(arg, key, klen, ktag, sum);
    for (int i = 0; i < n; i++)
        free(cu[i].key);
    free(cu);
    free(h);
    free(key);
    return rc;
}

typedef struct untagged { bpe_word_fn fn; void *arg; } untagged;

static int untagged_word(void *arg, const char *s, uint32_t len, uint32_t tag, uint64_t count)
{
    (void)tag;
    untagged *u = arg;
    return u->fn(u->arg, s, len, count);
}

int bpe_merge_runs(tok_counter *k, bpe_word_fn fn, void *arg, flow_err *err)
{
    untagged u = {fn, arg};
    return merge_range(k, k->runs, k->nruns, untagged_word, &u, err);
}

typedef struct run_sink { bpe_run *out; int e; } run_sink;

static int sink_word(void *arg, const char *s, uint32_t len, uint32_t tag, uint64_t count)
{
    run_sink *sk = arg;
    if (run_put(sk->out, s, len, tag, count) != 0) {
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
    size_t n = 0;
    for (size_t i = 0; i < k->cap; i++)
        if (k->slot[i].rec)
            k->slot[n++] = k->slot[i];
    bpe_sort_slots(k->slot, n);
    bpe_run r;
    int rc = run_open(k, &r, err);
    /* each record lies anywhere in the arena: it is fetched a few slots
     * ahead of its use (PREFETCH_AHEAD) */
    for (size_t i = 0; !rc && i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            __builtin_prefetch(k->slot[i + PREFETCH_AHEAD].rec);
        const bpe_slot *e = &k->slot[i];
        if (run_put(&r, e->rec + BPE_REC_HEAD, e->len, e->h, bpe_rec_count(e->rec)) != 0)
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
