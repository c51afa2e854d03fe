/* bpe_count.c — the streaming word counter of the BPE trainer
 * (tok_counter in tokenizer.h, layout in bpe_count.h).
 *
 * Each block of text is cut at line boundaries into chunks; each thread
 * segments its chunks (forced terms, then pre-tokens, tok_segment) and
 * counts pre-tokens in its own hash table whose keys point into the block
 * (no copies).  The thread tables are then merged into the counter's
 * table, whose keys and counts live in records copied into its arena, so
 * the block can go once counted.  The counts do not depend on the blocks
 * or the threads; the order of the records does, and the trainer never
 * lets it reach its output.  Past opts spill_bytes the table becomes a
 * sorted run on disk (bpe_spill.c); bpe_counter_finish gives the exact
 * counts of all words either way and keeps those of min_word_count. */
#include "stages/tokenizer/bpe_count.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- a thread's table: keys point into the block being counted ---------- */
/* Both tables (a thread's and the counter's) keep 32 hash bits per key,
 * its tag h, and find its home slot from h alone (bpe_home), so that a
 * table grows and a thread's words move into the counter's table without
 * hashing a key again or touching its bytes (in the counter's arena every
 * such touch is a cache miss).  h is the high half of the key's XXH3-64
 * with the low bit set (0 = an empty slot of a thread's table). */
static inline uint32_t bpe_tag(uint64_t hv) { return (uint32_t)(hv >> 32) | 1; }

static inline size_t bpe_home(uint32_t h, size_t mask)
{
    return (size_t)(((uint64_t)h * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* The counter's table finds a word's home by another function of the tag
 * (murmur3's finalizer), unrelated to bpe_home: a thread's table is
 * walked in slot order, i.e. sorted by bpe_home, and with the same
 * function in both its words would reach the counter's table sorted by
 * their homes there too: in a table smaller than the thread's, or one
 * half full already, they then pile up in one cluster that moves with
 * the walk, and every insertion probes through all of it (7 of 10 s of
 * bpe at 8x the legal corpus went there).  Through an unrelated function
 * the walk's words land at random slots, which the walk fetches ahead. */
static inline size_t bpe_home_counter(uint32_t h, size_t mask)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return (size_t)h & mask;
}

/* A table of cap zeroed entries of size sz, written (not calloc'ed): a
 * calloc'ed page is first mapped as the shared zero page by the probe's
 * read, and the write after it costs a second fault and a TLB flush of
 * every thread. */
static void *zeroed(size_t cap, size_t sz)
{
    void *p = xmalloc(cap * sz);
    memset(p, 0, cap * sz);
    return p;
}

typedef struct wentry {
    const char *s;
    uint32_t len, h;        /* h: the tag (bpe_tag), 0 = empty slot */
    uint64_t count;
} wentry;

struct bpe_wtable {
    wentry *e;
    size_t cap, n;
};
typedef struct bpe_wtable wtable;

static void wt_grow(wtable *t);

static void wt_add(wtable *t, const char *s, uint32_t len, uint32_t h)
{
    if ((t->n + 1) * 10 > t->cap * 7)
        wt_grow(t);
    size_t mask = t->cap - 1;
    for (size_t i = bpe_home(h, mask);; i = (i + 1) & mask) {
        wentry *e = &t->e[i];
        if (!e->h) {
            *e = (wentry){s, len, h, 1};
            t->n++;
            return;
        }
        if (e->h == h && e->len == len && memcmp(e->s, s, len) == 0) {
            e->count++;
            return;
        }
    }
}

static void wt_grow(wtable *t)
{
    wentry *old = t->e;
    size_t oc = t->cap;
    t->cap = oc ? oc * 2 : 1 << 14;
    t->e = zeroed(t->cap, sizeof *t->e);
    size_t mask = t->cap - 1;
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].h)
            continue;
        size_t q = bpe_home(old[i].h, mask);
        while (t->e[q].h)
            q = (q + 1) & mask;
        t->e[q] = old[i];
    }
    free(old);
}

/* ---- multi-threaded counting of one block -------------------------------- */
typedef struct chunk { const char *s; size_t n; } chunk;

typedef struct count_job {
    const chunk *chunks; int nchunks;
    atomic_int next;
    const tok_matcher *m;
} count_job;

/* Pre-tokens wait in a ring of PENDING between their hash and their
 * insertion, while their home slot is fetched: a thread's table of a
 * 64 MB block is larger than the caches, and each insertion would
 * otherwise wait for memory.  They are inserted in the order they came,
 * so the table is the same as without the ring. */
#define PENDING 8
typedef struct pending { const char *s; uint32_t len, h; } pending;

/* one per thread; padded so that neighbours' counters (changed per piece)
 * never share a cache line */
typedef struct count_thread {
    count_job *job;
    wtable *words;          /* the counter's table of this thread, kept between blocks */
    uint64_t *forced_counts;
    uint64_t npieces;       /* pre-tokens seen; the last min(npieces, PENDING) wait */
    pending pend[PENDING];
    char pad[64];
} count_thread;

static int count_piece(void *arg, const char *s, size_t n, int forced)
{
    count_thread *ct = arg;
    if (forced >= 0) {
        ct->forced_counts[forced]++;
        return 0;
    }
    uint32_t h = bpe_tag(XXH3_64bits(s, n));
    wtable *t = ct->words;
    if (t->cap)
        __builtin_prefetch(&t->e[bpe_home(h, t->cap - 1)]);
    pending *p = &ct->pend[ct->npieces % PENDING];
    if (ct->npieces >= PENDING)
        wt_add(t, p->s, p->len, p->h);
    *p = (pending){s, (uint32_t)n, h};
    ct->npieces++;
    return 0;
}

/* Inserts the pre-tokens still waiting in the ring, oldest first. */
static void count_flush(count_thread *ct)
{
    uint64_t from = ct->npieces > PENDING ? ct->npieces - PENDING : 0;
    for (uint64_t i = from; i < ct->npieces; i++) {
        const pending *p = &ct->pend[i % PENDING];
        wt_add(ct->words, p->s, p->len, p->h);
    }
}

static void *count_main(void *arg)
{
    count_thread *ct = arg;
    count_job *job = ct->job;
    for (;;) {
        int c = atomic_fetch_add(&job->next, 1);
        if (c >= job->nchunks)
            break;
        const char *s = job->chunks[c].s, *end = s + job->chunks[c].n;
        while (s < end) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            const char *e = nl ? nl : end;
            if (e > s)
                tok_segment(job->m, s, (size_t)(e - s), count_piece, ct);
            s = e + 1;
        }
    }
    count_flush(ct);
    return NULL;
}

/* ---- the counter's table and arena ---------------------------------------- */
const char *const bpe_specials[TOK_NSPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int tok_counter_new(const tok_terms *terms, const tok_train_opts *o, tok_counter **out,
                    flow_err *err)
{
    *out = NULL;
    int nforced = terms ? terms->n : 0;
    /* forced matcher: specials too, as in encoding (value = id) */
    tok_matcher *m = tok_matcher_new();
    for (int i = 0; i < TOK_NSPECIAL; i++)
        tok_matcher_add(m, bpe_specials[i], strlen(bpe_specials[i]), i);
    for (int i = 0; i < nforced; i++)
        if (tok_matcher_add(m, terms->s[i], terms->len[i], TOK_NSPECIAL + i)) {
            tok_matcher_free(m);
            return flow_fail(err, FLOW_E_PARAM, "forced term '%s' is a special token name; "
                             "remove it from the term list", terms->s[i]);
        }
    tok_counter *k = xcalloc(1, sizeof *k);
    k->m = m;
    k->nforced = nforced;
    k->threads = o->threads > 0 ? o->threads : 1;
    if (k->threads > 64)
        k->threads = 64;
    k->forced_counts = xcalloc(TOK_NSPECIAL + nforced, sizeof *k->forced_counts);
    k->spill_bytes = o->spill_bytes;
    const char *dir = o->spill_dir;
    if (!dir || !*dir)
        dir = getenv("TMPDIR");
    k->spill_dir = xstrdup(dir && *dir ? dir : "/tmp");
    k->t0 = now_s();
    *out = k;
    return 0;
}

char *bpe_arena_record(bpe_arena *a, const char *s, uint32_t len, uint64_t count)
{
    size_t need = BPE_REC_HEAD + (size_t)len;
    if (!a->nblocks || a->used[a->nblocks - 1] + need > BPE_ARENA_BLOCK) {
        size_t sz = need > BPE_ARENA_BLOCK ? need : BPE_ARENA_BLOCK;
        a->blocks = xrealloc(a->blocks, (a->nblocks + 1) * sizeof *a->blocks);
        a->used = xrealloc(a->used, (a->nblocks + 1) * sizeof *a->used);
        a->blocks[a->nblocks] = xmalloc(sz);
        a->used[a->nblocks++] = 0;
        a->bytes += sz;
    }
    char *d = a->blocks[a->nblocks - 1] + a->used[a->nblocks - 1];
    memcpy(d, &len, 4);
    memcpy(d + 4, &count, 8);
    memcpy(d + BPE_REC_HEAD, s, len);
    a->used[a->nblocks - 1] += need;
    return d;
}

/* UTF-8 characters of s[0..len): all but continuation bytes */
static uint64_t utf8_chars(const char *s, uint32_t len)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* A new record in the counter's arena. */
static char *arena_record(tok_counter *k, const char *s, uint32_t len, uint64_t count)
{
    k->key_bytes += len;
    k->key_chars += utf8_chars(s, len);
    return bpe_arena_record(&k->arena, s, len, count);
}

static void table_grow(tok_counter *k)
{
    bpe_slot *old = k->slot;
    size_t oc = k->cap;
    k->cap = oc ? oc * 2 : 1 << 16;
    k->slot = zeroed(k->cap, sizeof *k->slot);
    size_t mask = k->cap - 1;
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].rec)
            continue;
        size_t q = bpe_home_counter(old[i].h, mask);
        while (k->slot[q].rec)
            q = (q + 1) & mask;
        k->slot[q] = old[i];
    }
    free(old);
}

/* Fetches ahead what table_add of the thread table's slot q will read:
 * the counter's slot of the word MERGE_AHEAD slots on, and the word's
 * bytes in the block and its record of the word half as far on (when its
 * slot, fetched before, holds its tag). */
#define MERGE_AHEAD 16
/* always_inline: by itself it has no effect GCC sees, and GCC 12 drops
 * the call of such a function (its prefetches with it) */
static inline __attribute__((always_inline)) void merge_prefetch(const tok_counter *k, const wtable *w, size_t q)
{
    if (!k->cap)
        return;
    size_t mask = k->cap - 1;
    if (q + MERGE_AHEAD < w->cap && w->e[q + MERGE_AHEAD].h)
        __builtin_prefetch(&k->slot[bpe_home_counter(w->e[q + MERGE_AHEAD].h, mask)]);
    if (q + MERGE_AHEAD / 2 < w->cap && w->e[q + MERGE_AHEAD / 2].h) {
        const wentry *e = &w->e[q + MERGE_AHEAD / 2];
        __builtin_prefetch(e->s);   /* its bytes in the block: compared or copied */
        const bpe_slot *sl = &k->slot[bpe_home_counter(e->h, mask)];
        if (sl->rec && sl->h == e->h)
            __builtin_prefetch(sl->rec);
    }
}

/* Adds count to word s[0..len) of tag h, copying it into the arena when
 * new. */
static void table_add(tok_counter *k, const char *s, uint32_t len, uint32_t h, uint64_t count)
{
    if ((k->n + 1) * 10 > k->cap * 7)
        table_grow(k);
    size_t mask = k->cap - 1;
    for (size_t i = bpe_home_counter(h, mask);; i = (i + 1) & mask) {
        bpe_slot *e = &k->slot[i];
        if (!e->rec) {
            *e = (bpe_slot){arena_record(k, s, len, count), len, h};
            k->n++;
            return;
        }
        if (e->h == h && e->len == len && memcmp(e->rec + BPE_REC_HEAD, s, len) == 0) {
            uint64_t c = bpe_rec_count(e->rec) + count;
            memcpy(e->rec + 4, &c, 8);
            return;
        }
    }
}

void bpe_counter_drop_table(tok_counter *k)
{
    free(k->slot);
    k->slot = NULL;
    k->cap = 0;
}

void bpe_arena_free_block(bpe_arena *a, size_t i)
{
    if (!a->blocks[i])
        return;
    a->bytes -= a->used[i] > BPE_ARENA_BLOCK ? a->used[i] : BPE_ARENA_BLOCK;
    free(a->blocks[i]);
    a->blocks[i] = NULL;
}

void bpe_arena_release(bpe_arena *a)
{
    for (size_t i = 0; i < a->nblocks; i++)
        bpe_arena_free_block(a, i);
    free(a->blocks);
    free(a->used);
    memset(a, 0, sizeof *a);
}

void bpe_counter_free_block(tok_counter *k, size_t i) { bpe_arena_free_block(&k->arena, i); }

void bpe_counter_free_arena(tok_counter *k) { bpe_arena_release(&k->arena); }

/* Frees the thread tables (counting is over, or they are rebuilt). */
static void thread_tables_free(tok_counter *k)
{
    if (!k->wt)
        return;
    for (int i = 0; i < k->threads; i++)
        free(k->wt[i].e);
    free(k->wt);
    k->wt = NULL;
}

void tok_counter_free(tok_counter *k)
{
    if (!k)
        return;
    thread_tables_free(k);
    if (k->m)
        tok_matcher_free(k->m);
    bpe_counter_drop_table(k);
    bpe_counter_free_arena(k);
    bpe_runs_release(k);
    free(k->spill_dir);
    free(k->chars);
    free(k->forced_counts);
    free(k);
}

size_t tok_counter_memory(const tok_counter *k)
{
    return k->cap * sizeof(bpe_slot) + k->arena.bytes + k->arena.nblocks * 2 * sizeof(size_t);
}

uint64_t tok_counter_distinct(const tok_counter *k) { return k->n; }

size_t tok_counter_train_estimate(const tok_counter *k)
{
    return (size_t)(8 * k->key_chars + 8 * k->n);
}

/* The table as a sorted run (bpe_spill.c), then table and arena empty
 * (also after a failed spill): all their memory goes back, and the table
 * grows again from its first size. */
static int spill_and_clear(tok_counter *k, flow_err *err)
{
    int rc = bpe_spill_table(k, err);
    bpe_counter_drop_table(k);
    k->n = 0;
    k->key_bytes = k->key_chars = 0;
    bpe_arena_release(&k->arena);
    return rc;
}

/* Cuts text[0..n) at line ends into chunks of about n / (16 threads). */
static chunk *cut_chunks(const char *text, size_t n, int threads, int *nchunks_out)
{
    size_t target = n / ((size_t)threads * 16) + 1;
    if (target < (1 << 16))
        target = 1 << 16;
    chunk *chunks = NULL;
    int nchunks = 0, capchunks = 0;
    const char *s = text, *end = text + n;
    while (s < end) {
        const char *e = s + target < end ? s + target : end;
        if (e < end) {
            const char *nl = memchr(e, '\n', (size_t)(end - e));
            e = nl ? nl + 1 : end;
        }
        if (nchunks == capchunks) {
            capchunks = capchunks ? capchunks * 2 : 64;
            chunks = xrealloc(chunks, capchunks * sizeof *chunks);
        }
        chunks[nchunks++] = (chunk){s, (size_t)(e - s)};
        s = e;
    }
    *nchunks_out = nchunks;
    return chunks;
}

int tok_counter_add(tok_counter *k, const char *text, size_t n, flow_err *err)
{
    if (n == 0)
        return 0;
    if (k->finished)
        FLOW_BUG("bpe: tok_counter_add after the counts were finished");
    k->bytes += n;
    int nchunks, threads = k->threads;
    chunk *chunks = cut_chunks(text, n, threads, &nchunks);
    if (threads > nchunks)
        threads = nchunks;
    count_job job = {chunks, nchunks, 0, k->m};
    count_thread *ct = xcalloc(threads, sizeof *ct);
    pthread_t *tid = xmalloc(threads * sizeof *tid);
    if (!k->wt)
        k->wt = xcalloc(k->threads, sizeof *k->wt);
    for (int i = 0; i < threads; i++) {
        ct[i].job = &job;
        ct[i].words = &k->wt[i];
        ct[i].forced_counts = xcalloc(TOK_NSPECIAL + k->nforced, sizeof(uint64_t));
        if (i > 0 && pthread_create(&tid[i], NULL, count_main, &ct[i]) != 0)
            FLOW_BUG("bpe: pthread_create failed");
    }
    count_main(&ct[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(tid[i], NULL);
    free(tid);
    free(chunks);
    /* merge into the counter's table, copying new keys out of the text;
     * the thread tables are emptied on the way and kept for the next block
     * (so their pages are not faulted in again) */
    for (int i = 0; i < threads; i++) {
        wtable *w = &k->wt[i];
        for (size_t q = 0; q < w->cap; q++) {
            wentry *e = &w->e[q];
            merge_prefetch(k, w, q);
            if (e->h) {
                table_add(k, e->s, e->len, e->h, e->count);
                e->h = 0;
            }
        }
        w->n = 0;
        k->npieces += ct[i].npieces;
        for (int j = 0; j < TOK_NSPECIAL + k->nforced; j++)
            k->forced_counts[j] += ct[i].forced_counts[j];
        free(ct[i].forced_counts);
    }
    free(ct);
    /* past its share of the budget the table goes to disk as a sorted run */
    if (k->spill_bytes && tok_counter_memory(k) > k->spill_bytes)
        return spill_and_clear(k, err);
    return 0;
}

/* ---- finishing: exact counts, the characters of all words, the kept ones ---- */

/* What training from words of these sizes needs, about (as
 * tok_counter_train_estimate), or their arena records if more. */
static size_t kept_need(uint64_t words, uint64_t bytes, uint64_t chars)
{
    uint64_t train = 8 * chars + 8 * words, records = BPE_REC_HEAD * words + bytes;
    return (size_t)(train > records ? train : records);
}

typedef struct finisher {
    tok_counter *k;
    int64_t min;            /* min_word_count */
    size_t limit;           /* memory_limit, 0 = none */
    bpe_arena kept;
    uint64_t nkept, kept_bytes, kept_chars;
    bpe_char *ctab; uint8_t *cused; size_t ccap, cn;
    int over;               /* the kept words passed the limit: measure only */
} finisher;

static void char_add(finisher *f, uint32_t cp, uint64_t count)
{
    if ((f->cn + 1) * 2 > f->ccap) {
        bpe_char *ot = f->ctab;
        uint8_t *ou = f->cused;
        size_t oc = f->ccap;
        f->ccap = oc ? oc * 2 : 1 << 12;
        f->ctab = xcalloc(f->ccap, sizeof *f->ctab);
        f->cused = xcalloc(f->ccap, 1);
        for (size_t j = 0; j < oc; j++)
            if (ou[j]) {
                size_t q = bpe_home(ot[j].cp, f->ccap - 1);
                while (f->cused[q])
                    q = (q + 1) & (f->ccap - 1);
                f->ctab[q] = ot[j];
                f->cused[q] = 1;
            }
        free(ot);
        free(ou);
    }
    size_t q = bpe_home(cp, f->ccap - 1);
    while (f->cused[q] && f->ctab[q].cp != cp)
        q = (q + 1) & (f->ccap - 1);
    if (!f->cused[q]) {
        f->cused[q] = 1;
        f->ctab[q] = (bpe_char){cp, 0};
        f->cn++;
    }
    f->ctab[q].count += count;
}

/* One distinct word with its exact count (bpe_word_fn). */
static int finish_word(void *arg, const char *s, uint32_t len, uint64_t count)
{
    finisher *f = arg;
    tok_counter *k = f->k;
    for (uint32_t i = 0; i < len;) {
        uint32_t cp;
        i += (uint32_t)tok_next_char(s + i, len - i, &cp);
        k->chars_total += count;
        if (cp != 0xFFFFFFFFu)      /* an invalid byte is never in the alphabet */
            char_add(f, cp, count);
    }
    uint64_t nch = utf8_chars(s, len);
    int b = count < BPE_HIST - 1 ? (int)count : BPE_HIST - 1;
    k->hist.words[b]++;
    k->hist.chars[b] += nch;
    k->distinct++;
    if ((int64_t)count < f->min) {
        k->dropped_words++;
        k->dropped_occurrences += count;
        return 0;
    }
    f->nkept++;
    f->kept_bytes += len;
    f->kept_chars += nch;
    if (f->over)
        return 0;
    bpe_arena_record(&f->kept, s, len, count);
    if (f->limit && kept_need(f->nkept, f->kept_bytes, f->kept_chars) > f->limit) {
        f->over = 1;        /* keep counting, to say how much it needs */
        bpe_arena_release(&f->kept);
    }
    return 0;
}

/* The words of the table's arena, each block freed once walked. */
static void walk_arena(tok_counter *k, finisher *f)
{
    for (size_t b = 0; b < k->arena.nblocks; b++) {
        for (size_t off = 0; off < k->arena.used[b];) {
            const char *r = k->arena.blocks[b] + off;
            uint32_t len = bpe_rec_len(r);
            finish_word(f, r + BPE_REC_HEAD, len, bpe_rec_count(r));
            off += BPE_REC_HEAD + len;
        }
        bpe_arena_free_block(&k->arena, b);
    }
    bpe_arena_release(&k->arena);
}

/* Sum of the histogram's words and characters with count >= m. */
static void hist_from(const bpe_hist *h, int64_t m, uint64_t *words, uint64_t *chars)
{
    *words = *chars = 0;
    for (int b = m < 1 ? 1 : (m < BPE_HIST - 1 ? (int)m : BPE_HIST - 1); b < BPE_HIST; b++) {
        *words += h->words[b];
        *chars += h->chars[b];
    }
}

void bpe_suggest_min_count(const tok_counter *k, int64_t min_word_count, size_t need,
                           size_t limit, char *out, size_t cap)
{
    out[0] = 0;
    if (!k->finished || !k->distinct || min_word_count >= BPE_HIST - 2)
        return;
    uint64_t w0, c0;
    hist_from(&k->hist, min_word_count, &w0, &c0);
    double base = 8.0 * (double)(w0 + c0);
    if (base <= 0)
        return;
    /* the part of need that grows with the kept words scales with their
     * estimate; the trainer's first tables (pairs, their index: about 4 MB)
     * do not */
    double fixed = (double)(need < (4u << 20) ? need : (4u << 20)), grows = (double)need - fixed;
    int64_t m = min_word_count < 1 ? 1 : min_word_count;
    while (++m < BPE_HIST - 1) {
        uint64_t w, c;
        hist_from(&k->hist, m, &w, &c);
        double est = fixed + grows * 8.0 * (double)(w + c) / base;
        if (est <= (double)limit) {
            snprintf(out, cap, ", or set min_word_count = %lld (it keeps the %llu of the %llu "
                     "distinct words counted at least that often: about %.0f MB)",
                     (long long)m, (unsigned long long)w, (unsigned long long)k->distinct,
                     est / 1048576.0 + 1);
            return;
        }
    }
    uint64_t w, c;
    hist_from(&k->hist, BPE_HIST - 1, &w, &c);
    snprintf(out, cap, " (min_word_count = %d would still keep %llu of the %llu distinct "
             "words: about %.0f MB)", BPE_HIST - 1, (unsigned long long)w,
             (unsigned long long)k->distinct,
             (fixed + grows * 8.0 * (double)(w + c) / base) / 1048576.0 + 1);
}

int bpe_counter_finish(tok_counter *k, const tok_train_opts *o, tok_train_stats *st,
                       flow_err *err)
{
    if (k->finished)
        FLOW_BUG("bpe: the counts were finished twice");
    k->finished = 1;
    thread_tables_free(k);
    finisher f = {.k = k, .min = o->min_word_count, .limit = o->memory_limit};
    int rc = 0;
    if (k->nruns) {     /* the rest of the table joins the runs, then one merge */
        rc = spill_and_clear(k, err);
        if (!rc)
            rc = bpe_merge_runs(k, finish_word, &f, err);
        bpe_runs_release(k);
    } else {
        bpe_counter_drop_table(k);
        walk_arena(k, &f);
    }
    bpe_counter_free_arena(k);
    k->arena = f.kept;
    k->n = f.nkept;
    k->key_bytes = f.kept_bytes;
    k->key_chars = f.kept_chars;
    k->chars = xmalloc((f.cn ? f.cn : 1) * sizeof *k->chars);
    for (size_t j = 0; j < f.ccap; j++)
        if (f.cused[j])
            k->chars[k->nchars++] = f.ctab[j];
    free(f.ctab);
    free(f.cused);
    if (rc)
        return rc;
    size_t need = kept_need(f.nkept, f.kept_bytes, f.kept_chars);
    if (need > st->memory_peak)
        st->memory_peak = need;
    if (!f.over)
        return 0;
    char more[320];
    bpe_suggest_min_count(k, o->min_word_count, need, o->memory_limit, more, sizeof more);
    return flow_fail(err, FLOW_E_NOMEM, "the %llu words kept for training (of %llu distinct "
                     "words; min_word_count = %lld) need about %zu MB for the word records and "
                     "the merge state, more than the memory budget of %zu MB; set memory_mb = "
                     "%zu or more on this node%s, or train on less text (the word table and the "
                     "merge state grow with distinct pre-tokens: every run of Han characters "
                     "between punctuation is one)", (unsigned long long)f.nkept,
                     (unsigned long long)k->distinct, (long long)(o->min_word_count > 1 ? o->min_word_count : 1),
                     (need >> 20) + 1, o->memory_limit >> 20, (need >> 20) + (need >> 22) + 1, more);
}
