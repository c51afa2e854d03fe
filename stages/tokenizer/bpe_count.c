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
 * lets it reach its output. */
#include "stages/tokenizer/bpe_count.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- a thread's table: keys point into the block being counted ---------- */
typedef struct wentry {
    const char *s;
    uint32_t len, h;        /* h: high hash bits, 0 = empty slot */
    uint64_t count;
} wentry;

typedef struct wtable {
    wentry *e;
    size_t cap, n;
} wtable;

static void wt_grow(wtable *t);

static void wt_add(wtable *t, const char *s, uint32_t len, uint64_t hv)
{
    if ((t->n + 1) * 10 > t->cap * 7)
        wt_grow(t);
    uint32_t h = (uint32_t)(hv >> 32) | 1;
    size_t mask = t->cap - 1;
    for (size_t i = hv & mask;; i = (i + 1) & mask) {
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
    t->e = xcalloc(t->cap, sizeof *t->e);
    size_t mask = t->cap - 1;
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].h)
            continue;
        size_t q = XXH3_64bits(old[i].s, old[i].len) & mask;
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

/* one per thread; padded so that neighbours' counters (changed per piece)
 * never share a cache line */
typedef struct count_thread {
    count_job *job;
    wtable words;
    uint64_t *forced_counts;
    uint64_t npieces;
    char pad[64];
} count_thread;

static int count_piece(void *arg, const char *s, size_t n, int forced)
{
    count_thread *ct = arg;
    if (forced >= 0) {
        ct->forced_counts[forced]++;
        return 0;
    }
    ct->npieces++;
    wt_add(&ct->words, s, (uint32_t)n, XXH3_64bits(s, n));
    return 0;
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
    k->t0 = now_s();
    *out = k;
    return 0;
}

/* A new record for key s[0..len) with count; returns it. */
static char *arena_record(tok_counter *k, const char *s, uint32_t len, uint64_t count)
{
    size_t need = BPE_REC_HEAD + (size_t)len;
    if (!k->nblocks || k->used[k->nblocks - 1] + need > BPE_ARENA_BLOCK) {
        size_t sz = need > BPE_ARENA_BLOCK ? need : BPE_ARENA_BLOCK;
        k->blocks = xrealloc(k->blocks, (k->nblocks + 1) * sizeof *k->blocks);
        k->used = xrealloc(k->used, (k->nblocks + 1) * sizeof *k->used);
        k->blocks[k->nblocks] = xmalloc(sz);
        k->used[k->nblocks++] = 0;
        k->arena_bytes += sz;
    }
    char *d = k->blocks[k->nblocks - 1] + k->used[k->nblocks - 1];
    memcpy(d, &len, 4);
    memcpy(d + 4, &count, 8);
    memcpy(d + BPE_REC_HEAD, s, len);
    k->used[k->nblocks - 1] += need;
    k->key_bytes += len;
    for (uint32_t i = 0; i < len; i++)      /* UTF-8: all but continuation bytes */
        k->key_chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return d;
}

static void table_grow(tok_counter *k)
{
    bpe_slot *old = k->slot;
    size_t oc = k->cap;
    k->cap = oc ? oc * 2 : 1 << 16;
    k->slot = xcalloc(k->cap, sizeof *k->slot);
    size_t mask = k->cap - 1;
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].rec)
            continue;
        size_t q = XXH3_64bits(old[i].rec + BPE_REC_HEAD, old[i].len) & mask;
        while (k->slot[q].rec)
            q = (q + 1) & mask;
        k->slot[q] = old[i];
    }
    free(old);
}

/* Adds count to word s[0..len), copying it into the arena when new. */
static void table_add(tok_counter *k, const char *s, uint32_t len, uint64_t count)
{
    if ((k->n + 1) * 10 > k->cap * 7)
        table_grow(k);
    uint64_t hv = XXH3_64bits(s, len);
    uint32_t h = (uint32_t)(hv >> 32) | 1;
    size_t mask = k->cap - 1;
    for (size_t i = hv & mask;; i = (i + 1) & mask) {
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

void bpe_counter_free_block(tok_counter *k, size_t i)
{
    if (!k->blocks[i])
        return;
    k->arena_bytes -= k->used[i] > BPE_ARENA_BLOCK ? k->used[i] : BPE_ARENA_BLOCK;
    free(k->blocks[i]);
    k->blocks[i] = NULL;
}

void bpe_counter_free_arena(tok_counter *k)
{
    for (size_t i = 0; i < k->nblocks; i++)
        bpe_counter_free_block(k, i);
    free(k->blocks);
    free(k->used);
    k->blocks = NULL;
    k->used = NULL;
    k->nblocks = k->arena_bytes = 0;
}

void tok_counter_free(tok_counter *k)
{
    if (!k)
        return;
    if (k->m)
        tok_matcher_free(k->m);
    bpe_counter_drop_table(k);
    bpe_counter_free_arena(k);
    free(k->forced_counts);
    free(k);
}

size_t tok_counter_memory(const tok_counter *k)
{
    return k->cap * sizeof(bpe_slot) + k->arena_bytes + k->nblocks * 2 * sizeof(size_t);
}

uint64_t tok_counter_distinct(const tok_counter *k) { return k->n; }

size_t tok_counter_train_estimate(const tok_counter *k)
{
    return (size_t)(8 * k->key_chars + 8 * k->n);
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

void tok_counter_add(tok_counter *k, const char *text, size_t n)
{
    if (n == 0)
        return;
    k->bytes += n;
    int nchunks, threads = k->threads;
    chunk *chunks = cut_chunks(text, n, threads, &nchunks);
    if (threads > nchunks)
        threads = nchunks;
    count_job job = {chunks, nchunks, 0, k->m};
    count_thread *ct = xcalloc(threads, sizeof *ct);
    pthread_t *tid = xmalloc(threads * sizeof *tid);
    for (int i = 0; i < threads; i++) {
        ct[i].job = &job;
        ct[i].forced_counts = xcalloc(TOK_NSPECIAL + k->nforced, sizeof(uint64_t));
        if (i > 0 && pthread_create(&tid[i], NULL, count_main, &ct[i]) != 0)
            FLOW_BUG("bpe: pthread_create failed");
    }
    count_main(&ct[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(tid[i], NULL);
    free(tid);
    free(chunks);
    /* merge into the counter's table, copying new keys out of the text */
    for (int i = 0; i < threads; i++) {
        for (size_t q = 0; q < ct[i].words.cap; q++) {
            const wentry *e = &ct[i].words.e[q];
            if (e->h)
                table_add(k, e->s, e->len, e->count);
        }
        free(ct[i].words.e);
        k->npieces += ct[i].npieces;
        for (int j = 0; j < TOK_NSPECIAL + k->nforced; j++)
            k->forced_counts[j] += ct[i].forced_counts[j];
        free(ct[i].forced_counts);
    }
    free(ct);
}
