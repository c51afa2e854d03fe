/* bpe_train.c — the BPE trainer behind the bpe stage (tok_train in
 * tokenizer.h).
 *
 *  1. Word counting, multi-threaded: the texts are cut at line boundaries
 *     into chunks; each thread segments its chunks (forced terms, then
 *     pre-tokens, tok_segment) and counts pre-tokens in its own hash table
 *     whose keys point into the input (no copies).  Tables are then merged.
 *  2. Alphabet: character frequencies from the word table; the most
 *     frequent characters covering character_coverage of all occurrences
 *     are kept; words are split at the others (they encode to [UNK] or
 *     bytes, which never merge).
 *  3. Merges: pair counts over the unique words, an occurrence index pair
 *     -> words holding it, and a lazy max-heap keyed (count desc, a asc,
 *     b asc) so ties are deterministic.  A merge rewrites only the words in
 *     its occurrence list and updates the counts of the neighbouring pairs;
 *     nothing is rescanned.  Counts only fall except for pairs that contain
 *     the new token, which are pushed after the merge; a popped entry whose
 *     count is stale is pushed back with the true count.
 */
#include "tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- word table -------------------------------------------------------- */
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

/* Adds count to word s (inserting it, key pointer as given); returns its entry. */
static wentry *wt_add(wtable *t, const char *s, uint32_t len, uint64_t hv, uint64_t count)
{
    if ((t->n + 1) * 10 > t->cap * 7)
        wt_grow(t);
    uint32_t h = (uint32_t)(hv >> 32) | 1;
    size_t mask = t->cap - 1;
    for (size_t i = hv & mask;; i = (i + 1) & mask) {
        wentry *e = &t->e[i];
        if (!e->h) {
            *e = (wentry){s, len, h, count};
            t->n++;
            return e;
        }
        if (e->h == h && e->len == len && memcmp(e->s, s, len) == 0) {
            e->count += count;
            return e;
        }
    }
}

static void wt_grow(wtable *t)
{
    wentry *old = t->e;
    size_t oc = t->cap;
    t->cap = oc ? oc * 2 : 1 << 16;
    t->e = xcalloc(t->cap, sizeof *t->e);
    t->n = 0;
    for (size_t i = 0; i < oc; i++)
        if (old[i].h)
            wt_add(t, old[i].s, old[i].len, XXH3_64bits(old[i].s, old[i].len), old[i].count);
    free(old);
}

/* ---- multi-threaded counting --------------------------------------------- */
typedef struct chunk { const char *s; size_t n; } chunk;

typedef struct count_job {
    const chunk *chunks; int nchunks;
    atomic_int next;
    const tok_matcher *m;
    int nforced;
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
    wt_add(&ct->words, s, (uint32_t)n, XXH3_64bits(s, n), 1);
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

/* ---- character table ---------------------------------------------------- */
typedef struct cent { uint32_t cp; uint64_t count; } cent;

static int cent_cmp(const void *x, const void *y)
{
    const cent *a = x, *b = y;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return a->cp < b->cp ? -1 : a->cp > b->cp;
}

/* ---- pairs ----------------------------------------------------------------- */
typedef struct pair {
    uint32_t a, b;
    int64_t count;
    uint32_t *occ;          /* word ids (may be stale) */
    uint32_t nocc, cap;     /* cap 0: occ points into the shared initial pool */
    uint32_t last_w;        /* last word appended (dedupe within a word) */
    uint8_t banned;         /* would exceed max_token_chars */
} pair;

typedef struct trainer {
    pair *pairs; size_t npairs, cappairs;
    uint64_t *pkey; uint32_t *pval; size_t pcap, pn;   /* (a,b)+1 -> pair id */
    uint32_t *touched; size_t ntouched, captouched;
} trainer;

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static void pmap_put(trainer *T, uint64_t k, uint32_t v)
{
    size_t mask = T->pcap - 1, i = mix64(k) & mask;
    while (T->pkey[i])
        i = (i + 1) & mask;
    T->pkey[i] = k;
    T->pval[i] = v;
    T->pn++;
}

/* Pair id of (a, b); creates it when create is set, else returns UINT32_MAX. */
static uint32_t pair_id(trainer *T, uint32_t a, uint32_t b, int create)
{
    uint64_t k = (((uint64_t)a << 32) | b) + 1;
    size_t mask = T->pcap - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
        if (T->pkey[i] == k)
            return T->pval[i];
        if (!T->pkey[i])
            break;
    }
    if (!create)
        return UINT32_MAX;
    if ((T->pn + 1) * 2 > T->pcap) {
        uint64_t *ok = T->pkey;
        uint32_t *ov = T->pval;
        size_t oc = T->pcap;
        T->pcap *= 2;
        T->pkey = xcalloc(T->pcap, sizeof *T->pkey);
        T->pval = xmalloc(T->pcap * sizeof *T->pval);
        T->pn = 0;
        for (size_t i = 0; i < oc; i++)
            if (ok[i])
                pmap_put(T, ok[i], ov[i]);
        free(ok);
        free(ov);
    }
    if (T->npairs == T->cappairs) {
        T->cappairs *= 2;
        T->pairs = xrealloc(T->pairs, T->cappairs * sizeof *T->pairs);
    }
    uint32_t id = (uint32_t)T->npairs++;
    T->pairs[id] = (pair){a, b, 0, NULL, 0, 0, UINT32_MAX, 0};
    pmap_put(T, k, id);
    return id;
}

/* ---- heap ---------------------------------------------------------------------- */
typedef struct hent { int64_t count; uint32_t a, b, pid; } hent;

static inline int hbefore(const hent *x, const hent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    if (x->a != y->a)
        return x->a < y->a;
    return x->b < y->b;
}

typedef struct heap { hent *e; size_t n, cap; } heap;

static void sift_down(heap *h, size_t i)
{
    hent x = h->e[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && hbefore(&h->e[c + 1], &h->e[c]))
            c++;
        if (!hbefore(&h->e[c], &x))
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    h->e[i] = x;
}

static void heap_push(heap *h, hent x)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->e = xrealloc(h->e, h->cap * sizeof *h->e);
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hbefore(&x, &h->e[p]))
            break;
        h->e[i] = h->e[p];
        i = p;
    }
    h->e[i] = x;
}

static hent heap_pop(heap *h)
{
    hent top = h->e[0];
    h->e[0] = h->e[--h->n];
    if (h->n)
        sift_down(h, 0);
    return top;
}

/* ---- merging ------------------------------------------------------------------- */
static inline void pair_dec(trainer *T, uint32_t x, uint32_t y, int64_t c)
{
    uint32_t id = pair_id(T, x, y, 0);
    if (id == UINT32_MAX)
        FLOW_BUG("bpe: decrementing a pair that was never counted");
    T->pairs[id].count -= c;
}

static inline void pair_inc(trainer *T, uint32_t x, uint32_t y, int64_t c, uint32_t w)
{
    uint32_t id = pair_id(T, x, y, 1);
    pair *p = &T->pairs[id];
    if (p->count == 0 && p->nocc == 0) {
        if (T->ntouched == T->captouched) {
            T->captouched = T->captouched ? T->captouched * 2 : 1024;
            T->touched = xrealloc(T->touched, T->captouched * sizeof *T->touched);
        }
        T->touched[T->ntouched++] = id;
    }
    p->count += c;
    if (p->last_w != w) {
        if (p->nocc == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 4;
            p->occ = xrealloc(p->occ, p->cap * sizeof *p->occ);
        }
        p->occ[p->nocc++] = w;
        p->last_w = w;
    }
}

void tok_train_stats_release(tok_train_stats *s)
{
    free(s->char_cp);
    free(s->char_count);
    s->char_cp = NULL;
    s->char_count = NULL;
}

static const char *const specials[TOK_NSPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* The streaming word counter: the word table owns its keys (copied into
 * an arena of 1 MiB blocks), so each block of text can go once counted. */
#define ARENA_BLOCK (1u << 20)
struct tok_counter {
    tok_matcher *m;
    int nforced, threads;
    wtable words;
    char **blocks;
    size_t nblocks, used;       /* bytes used in the last block */
    size_t arena_bytes;
    uint64_t key_bytes;         /* bytes of all distinct words */
    uint64_t *forced_counts;
    uint64_t npieces, bytes;
    double t0;
};

int tok_counter_new(const tok_terms *terms, const tok_train_opts *o, tok_counter **out,
                    flow_err *err)
{
    *out = NULL;
    int nforced = terms ? terms->n : 0;
    /* forced matcher: specials too, as in encoding (value = id) */
    tok_matcher *m = tok_matcher_new();
    for (int i = 0; i < TOK_NSPECIAL; i++)
        tok_matcher_add(m, specials[i], strlen(specials[i]), i);
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

static const char *arena_copy(tok_counter *k, const char *s, uint32_t len)
{
    if (!k->nblocks || k->used + len > ARENA_BLOCK) {
        size_t sz = len > ARENA_BLOCK ? len : ARENA_BLOCK;
        k->blocks = xrealloc(k->blocks, (k->nblocks + 1) * sizeof *k->blocks);
        k->blocks[k->nblocks++] = xmalloc(sz);
        k->arena_bytes += sz;
        k->used = 0;
    }
    char *d = k->blocks[k->nblocks - 1] + k->used;
    memcpy(d, s, len);
    k->used += len;
    k->key_bytes += len;
    return d;
}

static void arena_free(tok_counter *k)
{
    for (size_t i = 0; i < k->nblocks; i++)
        free(k->blocks[i]);
    free(k->blocks);
    k->blocks = NULL;
    k->nblocks = k->used = k->arena_bytes = 0;
}

void tok_counter_free(tok_counter *k)
{
    if (!k)
        return;
    if (k->m)
        tok_matcher_free(k->m);
    free(k->words.e);
    arena_free(k);
    free(k->forced_counts);
    free(k);
}

size_t tok_counter_memory(const tok_counter *k)
{
    return k->words.cap * sizeof(wentry) + k->arena_bytes;
}

uint64_t tok_counter_distinct(const tok_counter *k) { return k->words.n; }

/* The merge state per distinct word: its symbol record (4 bytes per
 * character, 12 of header) and a pair id per position (4), an occurrence
 * per pair it holds (4) and its share of the pair table (~48 per distinct
 * pair, at most one per position); characters <= bytes. */
size_t tok_counter_train_estimate(const tok_counter *k)
{
    return tok_counter_memory(k) + (size_t)(20 * k->key_bytes + 32 * k->words.n);
}

void tok_counter_add(tok_counter *k, const char *text, size_t n)
{
    if (n == 0)
        return;
    k->bytes += n;
    int threads = k->threads;
    /* chunks cut at line ends */
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
    if (threads > nchunks)
        threads = nchunks;
    count_job job = {chunks, nchunks, 0, k->m, k->nforced};
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
            wentry *e = &ct[i].words.e[q];
            if (!e->h)
                continue;
            size_t before = k->words.n;
            wentry *d = wt_add(&k->words, e->s, e->len, XXH3_64bits(e->s, e->len), e->count);
            if (k->words.n > before)
                d->s = arena_copy(k, e->s, e->len);
        }
        free(ct[i].words.e);
        k->npieces += ct[i].npieces;
        for (int j = 0; j < TOK_NSPECIAL + k->nforced; j++)
            k->forced_counts[j] += ct[i].forced_counts[j];
        free(ct[i].forced_counts);
    }
    free(ct);
}

int tok_train(const tok_text *texts, int ntexts, const tok_terms *terms,
              const tok_train_opts *o, tok_tokenizer **out, tok_train_stats *st,
              flow_err *err)
{
    *out = NULL;
    memset(st, 0, sizeof *st);
    tok_counter *k;
    int rc = tok_counter_new(terms, o, &k, err);
    if (rc)
        return rc;
    for (int i = 0; i < ntexts; i++)
        tok_counter_add(k, texts[i].s, texts[i].n);
    rc = tok_train_counted(k, terms, o, out, st, err);
    tok_counter_free(k);
    return rc;
}

/* ---- training from the counted words, step by step ----------------------- */

/* Grows the character hash table (cp -> count; cused marks a slot). */
static void ctab_grow(cent **ctab, uint8_t **cused, size_t *ccap)
{
    cent *ot = *ctab;
    uint8_t *ou = *cused;
    size_t oc = *ccap, cap = oc * 2;
    cent *t = xcalloc(cap, sizeof *t);
    uint8_t *u = xcalloc(cap, 1);
    for (size_t j = 0; j < oc; j++)
        if (ou[j]) {
            size_t q = mix64(ot[j].cp) & (cap - 1);
            while (u[q])
                q = (q + 1) & (cap - 1);
            t[q] = ot[j];
            u[q] = 1;
        }
    free(ot);
    free(ou);
    *ctab = t;
    *cused = u;
    *ccap = cap;
}

/* Character frequencies over the word table, most frequent first
 * (cent_cmp: count desc, code point asc); an invalid byte counts towards
 * chars_total but is no character.  Fills st's chars_total,
 * distinct_chars, char_cp and char_count; *nc = number of characters. */
static cent *char_frequencies(const wtable *words, tok_train_stats *st, size_t *nc)
{
    size_t ccap = 1 << 12, cn = 0;
    cent *ctab = xcalloc(ccap, sizeof *ctab);
    uint8_t *cused = xcalloc(ccap, 1);
    for (size_t w = 0; w < words->cap; w++) {
        const wentry *e = &words->e[w];
        if (!e->h)
            continue;
        for (uint32_t i = 0; i < e->len;) {
            uint32_t cp;
            i += (uint32_t)tok_next_char(e->s + i, e->len - i, &cp);
            if (cp == 0xFFFFFFFFu) {    /* invalid byte: never in the alphabet */
                st->chars_total += e->count;
                continue;
            }
            if ((cn + 1) * 2 > ccap)
                ctab_grow(&ctab, &cused, &ccap);
            size_t q = mix64(cp) & (ccap - 1);
            while (cused[q] && ctab[q].cp != cp)
                q = (q + 1) & (ccap - 1);
            if (!cused[q]) {
                cused[q] = 1;
                ctab[q].cp = cp;
                cn++;
            }
            ctab[q].count += e->count;
            st->chars_total += e->count;
        }
    }
    cent *chars = xmalloc((cn ? cn : 1) * sizeof *chars);
    size_t n = 0;
    for (size_t j = 0; j < ccap; j++)
        if (cused[j])
            chars[n++] = ctab[j];
    free(ctab);
    free(cused);
    qsort(chars, n, sizeof *chars, cent_cmp);
    st->distinct_chars = (int)n;
    st->char_cp = xmalloc((n ? n : 1) * sizeof *st->char_cp);
    st->char_count = xmalloc((n ? n : 1) * sizeof *st->char_count);
    for (size_t j = 0; j < n; j++) {
        st->char_cp[j] = chars[j].cp;
        st->char_count[j] = chars[j].count;
    }
    *nc = n;
    return chars;
}

/* The alphabet: the most frequent characters that cover
 * character_coverage of all occurrences (every one at coverage 1).
 * Returns their number; fills st's alphabet, chars_kept and
 * coverage_cut_count. */
static size_t alphabet_size(const cent *chars, size_t nc, const tok_train_opts *o,
                            tok_train_stats *st)
{
    size_t nalpha = 0;
    uint64_t cum = 0;
    double want = o->character_coverage * (double)st->chars_total;
    while (nalpha < nc && (o->character_coverage >= 1.0 || (double)cum < want)) {
        cum += chars[nalpha].count;
        nalpha++;
    }
    st->alphabet = (int)nalpha;
    st->chars_kept = cum;
    st->coverage_cut_count = nalpha ? (uint32_t)chars[nalpha - 1].count : 0;
    return nalpha;
}

static int vocab_too_small(const tok_train_opts *o, int nforced, size_t nalpha, int base,
                           flow_err *err)
{
    if (o->byte_fallback)
        return flow_fail(err, FLOW_E_PARAM, "vocab_size %d is below specials %d + forced "
                         "terms %d + alphabet %zu + byte tokens 256 = %d; raise vocab_size "
                         "or lower character_coverage", o->vocab_size, TOK_NSPECIAL,
                         nforced, nalpha, base);
    return flow_fail(err, FLOW_E_PARAM, "vocab_size %d is below specials %d + forced "
                     "terms %d + alphabet %zu = %d; raise vocab_size or lower "
                     "character_coverage", o->vocab_size, TOK_NSPECIAL, nforced, nalpha, base);
}

/* The token table as it grows: text, byte length, characters per token
 * (merges stop at max_token_chars).  Room for cap tokens. */
typedef struct tokens {
    char **s;
    size_t *len;
    int *chars;
    int n;
} tokens;

static void tokens_init(tokens *t, int cap)
{
    t->s = xmalloc(cap * sizeof *t->s);
    t->len = xmalloc(cap * sizeof *t->len);
    t->chars = xmalloc(cap * sizeof *t->chars);
    t->n = 0;
}

/* Appends a token; takes s. */
static uint32_t tokens_add(tokens *t, char *s, size_t len, int chars)
{
    t->s[t->n] = s;
    t->len[t->n] = len;
    t->chars[t->n] = chars;
    return (uint32_t)t->n++;
}

static void tokens_release(tokens *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->s[i]);
    free(t->s);
    free(t->len);
    free(t->chars);
}

/* character -> symbol id: a small open-addressing map, key cp + 1 (0 = empty) */
typedef struct alpha_map {
    uint32_t *key, *val;
    size_t cap;
} alpha_map;

static void alpha_map_init(alpha_map *am, size_t nalpha)
{
    am->cap = 16;
    while (am->cap < nalpha * 2 + 2)
        am->cap *= 2;
    am->key = xcalloc(am->cap, sizeof *am->key);
    am->val = xmalloc(am->cap * sizeof *am->val);
}

static void alpha_map_put(alpha_map *am, uint32_t cp, uint32_t id)
{
    size_t q = mix64(cp) & (am->cap - 1);
    while (am->key[q])
        q = (q + 1) & (am->cap - 1);
    am->key[q] = cp + 1;
    am->val[q] = id;
}

/* The symbol id of character cp, or -1 when it is outside the alphabet. */
static int32_t alpha_map_get(const alpha_map *am, uint32_t cp)
{
    size_t q = mix64(cp) & (am->cap - 1);
    while (am->key[q] && am->key[q] != cp + 1)
        q = (q + 1) & (am->cap - 1);
    return am->key[q] ? (int32_t)am->val[q] : -1;
}

static void alpha_map_release(alpha_map *am)
{
    free(am->key);
    free(am->val);
}

/* The vocabulary before any merge, in id order: specials, forced terms,
 * the alphabet (each character mapped to its id in am), then the 256
 * byte tokens <0xNN> with byte_fallback.  Returns the id of byte 0, or -1
 * without byte_fallback. */
static int initial_vocab(tokens *t, alpha_map *am, const tok_terms *terms, int nforced,
                         const cent *chars, size_t nalpha, int byte_fallback)
{
    for (int i = 0; i < TOK_NSPECIAL; i++)
        tokens_add(t, xstrdup(specials[i]), strlen(specials[i]), 1);
    for (int i = 0; i < nforced; i++)
        tokens_add(t, xstrdup(terms->s[i]), terms->len[i], 1);
    alpha_map_init(am, nalpha);
    for (size_t j = 0; j < nalpha; j++) {
        char u[4];
        int n = utf8_encode(chars[j].cp, u);
        char *c = xmalloc(n + 1);
        memcpy(c, u, n);
        c[n] = 0;
        alpha_map_put(am, chars[j].cp, tokens_add(t, c, (size_t)n, 1));
    }
    if (!byte_fallback)
        return -1;
    int byte_base = t->n;
    for (int b = 0; b < 256; b++) {
        char *c = xmalloc(8);
        snprintf(c, 8, "<0x%02X>", b);
        tokens_add(t, c, 6, 1);
    }
    return byte_base;
}

/* The training words, split at characters outside the alphabet (pieces
 * of fewer than 2 symbols are dropped: nothing to merge), as records in
 * one pool so that a merge touches one cache region per word:
 *   sym[w] = current length, sym[w+1..w+2] = count (u64),
 *   sym[w+3 ..] = symbols;  a word is named by its offset w.
 * *nsym = the pool's length. */
static uint32_t *word_records(const wtable *words, const alpha_map *am, size_t *nsym_out)
{
    size_t symcap = 1 << 20, nsym = 0;
    uint32_t *sym = xmalloc(symcap * sizeof *sym);
    for (size_t x = 0; x < words->cap; x++) {
        const wentry *e = &words->e[x];
        if (!e->h)
            continue;
        size_t start = nsym;
        for (uint32_t i = 0; i <= e->len;) {
            int32_t id = -1;
            uint32_t cp = 0;
            if (i < e->len) {
                i += (uint32_t)tok_next_char(e->s + i, e->len - i, &cp);
                if (cp != 0xFFFFFFFFu)
                    id = alpha_map_get(am, cp);
            } else
                i++;    /* end of word: flush */
            if (nsym + 4 > symcap) {
                symcap *= 2;
                sym = xrealloc(sym, symcap * sizeof *sym);
            }
            if (nsym == start)
                nsym += 3;      /* header of a new record */
            if (id >= 0) {
                sym[nsym++] = (uint32_t)id;
                continue;
            }
            if (nsym - start - 3 >= 2) {
                sym[start] = (uint32_t)(nsym - start - 3);
                memcpy(sym + start + 1, &e->count, 8);
            } else
                nsym = start;
            start = nsym;
        }
    }
    if (nsym > UINT32_MAX - 4)
        FLOW_BUG("bpe: %zu symbols exceed the 32-bit word index", nsym);
    *nsym_out = nsym;
    return sym;
}

/* The initial pair counts over the word records and each pair's
 * occurrence list (word offsets, once per word), all lists in one CSR
 * pool, which is returned (the caller frees it after the pairs). */
static uint32_t *trainer_init(trainer *T, const uint32_t *sym, size_t nsym)
{
    memset(T, 0, sizeof *T);
    T->cappairs = 1 << 16;
    T->pairs = xmalloc(T->cappairs * sizeof *T->pairs);
    T->pcap = 1 << 17;
    T->pkey = xcalloc(T->pcap, sizeof *T->pkey);
    T->pval = xmalloc(T->pcap * sizeof *T->pval);
    uint32_t *pos_pid = xmalloc((nsym ? nsym : 1) * sizeof *pos_pid);
    for (size_t w = 0; w < nsym; w += 3 + sym[w]) {
        const uint32_t *s = sym + w + 3;
        uint64_t cnt;
        memcpy(&cnt, sym + w + 1, 8);
        for (uint32_t i = 0; i + 1 < sym[w]; i++) {
            uint32_t id = pair_id(T, s[i], s[i + 1], 1);
            pair *p = &T->pairs[id];
            p->count += (int64_t)cnt;
            if (p->last_w != (uint32_t)w) {
                p->last_w = (uint32_t)w;
                p->nocc++;
            }
            pos_pid[w + 3 + i] = id;
        }
    }
    size_t npool = 0;
    for (size_t i = 0; i < T->npairs; i++)
        npool += T->pairs[i].nocc;
    uint32_t *pool = xmalloc((npool ? npool : 1) * sizeof *pool);
    npool = 0;
    for (size_t i = 0; i < T->npairs; i++) {
        T->pairs[i].occ = pool + npool;
        npool += T->pairs[i].nocc;
        T->pairs[i].nocc = 0;
        T->pairs[i].last_w = UINT32_MAX;
    }
    for (size_t w = 0; w < nsym; w += 3 + sym[w])
        for (uint32_t i = 0; i + 1 < sym[w]; i++) {
            pair *p = &T->pairs[pos_pid[w + 3 + i]];
            if (p->last_w != (uint32_t)w) {
                p->last_w = (uint32_t)w;
                p->occ[p->nocc++] = (uint32_t)w;
            }
        }
    free(pos_pid);
    return pool;
}

static void trainer_release(trainer *T)
{
    for (size_t i = 0; i < T->npairs; i++)
        if (T->pairs[i].cap)
            free(T->pairs[i].occ);
    free(T->pairs);
    free(T->pkey);
    free(T->pval);
    free(T->touched);
}

/* A heap of every pair, heapified in place. */
static void heap_of_pairs(heap *H, const trainer *T)
{
    memset(H, 0, sizeof *H);
    H->cap = T->npairs ? T->npairs : 1;
    H->e = xmalloc(H->cap * sizeof *H->e);
    for (size_t i = 0; i < T->npairs; i++)
        H->e[H->n++] = (hent){T->pairs[i].count, T->pairs[i].a, T->pairs[i].b, (uint32_t)i};
    for (size_t i = H->n / 2; i-- > 0;)
        sift_down(H, i);
}

/* Rewrites (a, b) as nt in the words of occ[0..nocc) (stale entries just
 * do not match), moving the counts of the neighbouring pairs from (x, a)
 * and (b, y) to (x, nt) and (nt, y); the pairs whose count rose are
 * listed in T->touched. */
static void merge_in_words(trainer *T, uint32_t *sym, const uint32_t *occ, uint32_t nocc,
                           uint32_t a, uint32_t b, uint32_t nt)
{
    T->ntouched = 0;
    for (uint32_t oi = 0; oi < nocc; oi++) {
        uint32_t w = occ[oi];
        if (oi + 8 < nocc)     /* words are scattered: fetch ahead */
            __builtin_prefetch(sym + occ[oi + 8]);
        uint32_t *s = sym + w + 3;
        uint32_t n = sym[w], k = 0, i = 0;
        int64_t c;
        memcpy(&c, sym + w + 1, 8);
        while (i < n) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                if (k > 0) {
                    pair_dec(T, s[k - 1], a, c);
                    pair_inc(T, s[k - 1], nt, c, w);
                }
                if (i + 2 < n) {
                    pair_dec(T, b, s[i + 2], c);
                    pair_inc(T, nt, s[i + 2], c, w);
                }
                s[k++] = nt;
                i += 2;
            } else
                s[k++] = s[i++];
        }
        sym[w] = k;
    }
}

/* The merge loop: takes the best pair off the heap (stale entries are
 * pushed back with their true count, pairs over max_token_chars banned)
 * until want_merges merges or min_frequency; each merge appends its token
 * to t and (a, b, new id) to mg.  Returns the number of merges. */
static int merge_loop(trainer *T, heap *H, uint32_t *sym, tokens *t, uint32_t *mg,
                      int want_merges, const tok_train_opts *o, tok_train_stats *st)
{
    int nmerges = 0;
    while (nmerges < want_merges && H->n) {
        hent top = heap_pop(H);
        pair *p = &T->pairs[top.pid];
        if (p->banned)
            continue;
        if (p->count != top.count) {
            if (p->count > 0)
                heap_push(H, (hent){p->count, p->a, p->b, top.pid});
            continue;
        }
        if (top.count < o->min_frequency || top.count <= 0) {
            st->stopped_min_frequency = top.count > 0;
            break;
        }
        uint32_t a = p->a, b = p->b;
        if (t->chars[a] + t->chars[b] > o->max_token_chars) {
            p->banned = 1;
            continue;
        }
        size_t len = t->len[a] + t->len[b];
        char *text = xmalloc(len + 1);
        memcpy(text, t->s[a], t->len[a]);
        memcpy(text + t->len[a], t->s[b], t->len[b]);
        text[len] = 0;
        uint32_t nt = tokens_add(t, text, len, t->chars[a] + t->chars[b]);
        mg[3 * nmerges] = a;
        mg[3 * nmerges + 1] = b;
        mg[3 * nmerges + 2] = nt;
        nmerges++;
        /* detach the occurrence list: pair_inc may grow T->pairs */
        uint32_t *occ = p->occ, nocc = p->nocc;
        int owned = p->cap != 0;
        p->occ = NULL;
        p->nocc = p->cap = 0;
        p->count = 0;
        merge_in_words(T, sym, occ, nocc, a, b, nt);
        if (owned)
            free(occ);
        T->pairs[top.pid].count = 0;
        for (size_t i = 0; i < T->ntouched; i++) {
            pair *q = &T->pairs[T->touched[i]];
            if (q->count > 0)
                heap_push(H, (hent){q->count, q->a, q->b, T->touched[i]});
        }
        if (o->progress && (nmerges & 255) == 0)
            o->progress(o->progress_arg, nmerges, want_merges, top.count);
    }
    return nmerges;
}

int tok_train_counted(tok_counter *k, const tok_terms *terms, const tok_train_opts *o,
                      tok_tokenizer **out, tok_train_stats *st, flow_err *err)
{
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (k->bytes == 0)
        return flow_fail(err, FLOW_E_INPUT, "no training text (all text inputs are empty)");
    int nforced = k->nforced;
    tok_matcher *m = k->m;
    k->m = NULL;
    wtable words = k->words;
    memset(&k->words, 0, sizeof k->words);
    st->words = k->npieces;
    for (int j = 0; j < TOK_NSPECIAL + nforced; j++)
        st->forced_occurrences += k->forced_counts[j];
    st->unique_words = words.n;

    size_t nc;
    cent *chars = char_frequencies(&words, st, &nc);
    size_t nalpha = alphabet_size(chars, nc, o, st);
    int base = TOK_NSPECIAL + nforced + (int)nalpha + (o->byte_fallback ? 256 : 0);
    if (o->vocab_size < base) {
        free(chars);
        free(words.e);
        arena_free(k);
        tok_matcher_free(m);
        return vocab_too_small(o, nforced, nalpha, base, err);
    }
    tokens t;
    tokens_init(&t, o->vocab_size);
    alpha_map am;
    int byte_base = initial_vocab(&t, &am, terms, nforced, chars, nalpha, o->byte_fallback);
    free(chars);
    size_t nsym;
    uint32_t *sym = word_records(&words, &am, &nsym);
    free(words.e);
    arena_free(k);      /* the words are symbols now */
    alpha_map_release(&am);
    st->seconds_count = now_s() - k->t0;

    trainer T;
    uint32_t *pool = trainer_init(&T, sym, nsym);
    heap H;
    heap_of_pairs(&H, &T);
    int want_merges = o->vocab_size - t.n;
    uint32_t *mg = xmalloc((size_t)(want_merges ? want_merges : 1) * 3 * sizeof *mg);
    double t1 = now_s();
    int nmerges = merge_loop(&T, &H, sym, &t, mg, want_merges, o, st);
    st->merges = nmerges;
    st->seconds_merge = now_s() - t1;
    trainer_release(&T);
    free(pool);
    free(H.e);
    free(sym);
    tok_matcher_free(m);

    int rc = tok_build(out, t.n, (const char *const *)t.s, t.len, nforced, (int)nalpha,
                       byte_base, o->max_token_chars, nmerges, mg, err);
    tokens_release(&t);
    free(mg);
    return rc;
}
