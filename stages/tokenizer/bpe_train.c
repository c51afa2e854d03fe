/* bpe_train.c — the BPE trainer behind the bpe stage (tok_train in
 * tokenizer.h), from the words counted by bpe_count.c.
 *
 *  0. The counter's exact counts (bpe_counter_finish: its spilled runs
 *     merged), the characters of all words, and the words counted at
 *     least min_word_count times (sentencepiece's input_sentence_size
 *     and word2vec/fastText's min_count bound their training the same
 *     way: rare items do not enter the model's statistics).
 *  1. Alphabet: character frequencies over ALL words, those below
 *     min_word_count too (so that every character seen is covered as
 *     with min_word_count = 1); the most frequent characters covering
 *     character_coverage of all occurrences are kept; words are split at
 *     the others (they encode to [UNK] or bytes, which never merge).
 *  2. Word records: the kept words of the counter's arena are turned
 *     into symbol records block by block, each block freed once
 *     converted.  Forced terms are counted apart and are always tokens.
 *  3. Merges: pair counts over the unique words, an occurrence index pair
 *     -> words holding it, and a lazy max-heap keyed (count desc, a asc,
 *     b asc) so ties are deterministic.  A merge rewrites only the words in
 *     its occurrence list and updates the counts of the neighbouring pairs;
 *     nothing is rescanned.  Counts only fall except for pairs that contain
 *     the new token, which are pushed after the merge; a popped entry whose
 *     count is stale is pushed back with the true count.
 *
 * The order of the words (the arena's, which depends on blocks and
 * threads) never reaches the output: counts are sums, the alphabet and
 * the heap order are total orders on values.
 *
 * Memory (opts memory_limit): what training holds grows with distinct
 * words; it is checked against the limit before each such structure is
 * built (exact sizes) and every 256 merges, and training stops with
 * FLOW_E_NOMEM naming what it needs (and a min_word_count that would
 * fit) instead of outgrowing the limit.  Only the counting spills to
 * disk; the merge state must fit.
 */
#include "stages/tokenizer/bpe_count.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
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
    size_t occ_bytes;       /* occurrence lists grown by merges (cap != 0) */
    uint32_t *pool;         /* the initial occurrence lists (mmap), pool_len */
    size_t pool_len;        /* entries; pool_dropped: bytes given back */
    size_t pool_dropped;
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
            uint32_t cap = p->cap ? p->cap * 2 : 4;
            T->occ_bytes += (size_t)(cap - p->cap) * sizeof *p->occ;
            p->cap = cap;
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
    for (int i = 0; i < ntexts && !rc; i++)
        rc = tok_counter_add(k, texts[i].s, texts[i].n, err);
    if (!rc)
        rc = tok_train_counted(k, terms, o, out, st, err);
    tok_counter_free(k);
    return rc;
}

/* ---- the memory limit -------------------------------------------------------- */

/* Records need as the peak so far; fails when it passes o->memory_limit
 * (0: no limit) with what is needed, for what, and what to do (a larger
 * budget, or a min_word_count whose kept words would fit). */
static int within_limit(const tok_train_opts *o, size_t need, const char *what,
                        const tok_counter *k, tok_train_stats *st, flow_err *err)
{
    if (need > st->memory_peak)
        st->memory_peak = need;
    if (!o->memory_limit || need <= o->memory_limit)
        return 0;
    char more[320];
    bpe_suggest_min_count(k, o->min_word_count, need, o->memory_limit, more, sizeof more);
    return flow_fail(err, FLOW_E_NOMEM, "training needs %zu MB for %s (%llu distinct words "
                     "kept), more than the memory budget of %zu MB; set memory_mb = %zu or more "
                     "on this node%s, or train on less text (the merge state grows with the "
                     "distinct pre-tokens kept)", (need >> 20) + 1, what, (unsigned long long)k->n,
                     o->memory_limit >> 20, (need >> 20) + (need >> 22) + 1, more);
}

/* The words of the counter's arena in its order; consume: each block is
 * freed once walked past. */
typedef struct word_iter { tok_counter *k; size_t b, off; int consume; } word_iter;

static int next_word(word_iter *it, const char **s, uint32_t *len, uint64_t *count)
{
    tok_counter *k = it->k;
    while (it->b < k->arena.nblocks) {
        if (it->off < k->arena.used[it->b]) {
            const char *r = k->arena.blocks[it->b] + it->off;
            *len = bpe_rec_len(r);
            *count = bpe_rec_count(r);
            *s = r + BPE_REC_HEAD;
            it->off += BPE_REC_HEAD + *len;
            return 1;
        }
        if (it->consume)
            bpe_counter_free_block(k, it->b);
        it->b++;
        it->off = 0;
    }
    return 0;
}

/* ---- training from the counted words, step by step ----------------------- */

/* Character frequencies of all words (bpe_counter_finish counted them,
 * also in words below min_word_count), most frequent first (cent_cmp:
 * count desc, code point asc); an invalid byte counts towards
 * chars_total but is no character.  Fills st's chars_total,
 * distinct_chars, char_cp and char_count; *nc = number of characters. */
static cent *char_frequencies(const tok_counter *k, tok_train_stats *st, size_t *nc)
{
    size_t n = k->nchars;
    cent *chars = xmalloc((n ? n : 1) * sizeof *chars);
    for (size_t j = 0; j < n; j++)
        chars[j] = (cent){k->chars[j].cp, k->chars[j].count};
    qsort(chars, n, sizeof *chars, cent_cmp);
    st->chars_total = k->chars_total;
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
        tokens_add(t, xstrdup(bpe_specials[i]), strlen(bpe_specials[i]), 1);
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
 * word_pieces appends the records of one word at sym + *nsym (sym NULL:
 * only sizes them) and adds its pair positions to *npos. */
static void word_pieces(const char *s, uint32_t len, uint64_t count, const alpha_map *am,
                        uint32_t *sym, size_t *nsym, size_t *npos)
{
    size_t start = *nsym, n = start;
    for (uint32_t i = 0; i <= len;) {
        int32_t id = -1;
        uint32_t cp = 0;
        if (i < len) {
            i += (uint32_t)tok_next_char(s + i, len - i, &cp);
            if (cp != 0xFFFFFFFFu)
                id = alpha_map_get(am, cp);
        } else
            i++;    /* end of word: flush */
        if (n == start)
            n += 3;     /* header of a new record */
        if (id >= 0) {
            if (sym)
                sym[n] = (uint32_t)id;
            n++;
            continue;
        }
        if (n - start - 3 >= 2) {
            if (sym) {
                sym[start] = (uint32_t)(n - start - 3);
                memcpy(sym + start + 1, &count, 8);
            }
            *npos += n - start - 4;
        } else
            n = start;
        start = n;
    }
    *nsym = n;
}

/* The pool's exact length (*nsym) and pair positions (*npos). */
static void records_size(tok_counter *k, const alpha_map *am, size_t *nsym, size_t *npos)
{
    word_iter it = {k, 0, 0, 0};
    const char *s;
    uint32_t len;
    uint64_t count;
    *nsym = *npos = 0;
    while (next_word(&it, &s, &len, &count))
        word_pieces(s, len, count, am, NULL, nsym, npos);
}

/* The pool of nsym symbols (records_size), built while the counter's
 * arena is freed block by block: the words become symbols. */
static uint32_t *word_records(tok_counter *k, const alpha_map *am, size_t nsym)
{
    if (nsym > UINT32_MAX - 4)
        FLOW_BUG("bpe: %zu symbols exceed the 32-bit word index", nsym);
    /* + 4: a piece dropped at the end was written before it was dropped */
    uint32_t *sym = xmalloc((nsym + 4) * sizeof *sym);
    bpe_counter_drop_table(k);
    word_iter it = {k, 0, 0, 1};
    const char *s;
    uint32_t len;
    uint64_t count;
    size_t n = 0, npos = 0;
    while (next_word(&it, &s, &len, &count))
        word_pieces(s, len, count, am, sym, &n, &npos);
    if (n != nsym)
        FLOW_BUG("bpe: %zu symbols written, %zu sized", n, nsym);
    bpe_counter_free_arena(k);
    return sym;
}

/* Bytes of the pair table (pairs, their index) as it is now. */
static size_t pairs_bytes(const trainer *T)
{
    return T->cappairs * sizeof(pair) + T->pcap * (sizeof *T->pkey + sizeof *T->pval) +
           T->captouched * sizeof *T->touched + T->occ_bytes;
}

/* The initial pair counts over the word records and each pair's
 * occurrence list (word offsets, once per word), all lists in one CSR
 * pool (*pool; the caller frees it after the pairs).  Before the pool
 * and the heap are allocated, their exact size is checked against the
 * limit with the symbols and pairs already held. */
static int trainer_init(trainer *T, const uint32_t *sym, size_t nsym,
                        const tok_train_opts *o, const tok_counter *k, tok_train_stats *st,
                        flow_err *err)
{
    memset(T, 0, sizeof *T);
    T->cappairs = 1 << 16;
    T->pairs = xmalloc(T->cappairs * sizeof *T->pairs);
    T->pcap = 1 << 17;
    T->pkey = xcalloc(T->pcap, sizeof *T->pkey);
    T->pval = xmalloc(T->pcap * sizeof *T->pval);
    for (size_t w = 0; w < nsym; w += 3 + sym[w]) {
        const uint32_t *s = sym + w + 3;
        uint64_t cnt;
        memcpy(&cnt, sym + w + 1, 8);
        for (uint32_t i = 0; i + 1 < sym[w]; i++) {
            uint32_t id = pair_id(T, s[i], s[i + 1], 1);    /* may move T->pairs */
            pair *p = &T->pairs[id];
            p->count += (int64_t)cnt;
            if (p->last_w != (uint32_t)w) {
                p->last_w = (uint32_t)w;
                p->nocc++;
            }
        }
    }
    size_t npool = 0;
    for (size_t i = 0; i < T->npairs; i++)
        npool += T->pairs[i].nocc;
    size_t need = nsym * sizeof *sym + pairs_bytes(T) + npool * sizeof *T->pool +
                  T->npairs * sizeof(hent);
    int rc = within_limit(o, need, "the pair counts, occurrence lists and heap", k, st, err);
    if (rc)
        return rc;
    /* mapped by itself, so that the pages of a merged pair's list can be
     * given back (pool_drop) */
    uint32_t *pool = mmap(NULL, (npool + 1) * sizeof *pool, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pool == MAP_FAILED)
        return flow_fail(err, FLOW_E_NOMEM, "cannot map %zu MB for the pair occurrence lists",
                         (npool * sizeof *pool) >> 20);
    T->pool = pool;
    T->pool_len = npool;
    npool = 0;
    for (size_t i = 0; i < T->npairs; i++) {
        T->pairs[i].occ = pool + npool;
        npool += T->pairs[i].nocc;
        T->pairs[i].nocc = 0;
        T->pairs[i].last_w = UINT32_MAX;
    }
    /* the second walk finds each pair again (no per-position pair ids:
     * they would cost 4 bytes per symbol) */
    for (size_t w = 0; w < nsym; w += 3 + sym[w])
        for (uint32_t i = 0; i + 1 < sym[w]; i++) {
            const uint32_t *s = sym + w + 3;
            uint32_t id = pair_id(T, s[i], s[i + 1], 0);
            pair *p = &T->pairs[id];
            if (p->last_w != (uint32_t)w) {
                p->last_w = (uint32_t)w;
                p->occ[p->nocc++] = (uint32_t)w;
            }
        }
    return 0;
}

/* Gives back the whole pages of a merged pair's list in the initial pool:
 * nothing reads it again (its pair's list is detached). */
static void pool_drop(trainer *T, const uint32_t *occ, uint32_t nocc)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)occ + page - 1) & ~(page - 1);
    uintptr_t hi = (uintptr_t)(occ + nocc) & ~(page - 1);
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
        T->pool_dropped += hi - lo;
}

static void trainer_release(trainer *T)
{
    if (T->pool)
        munmap(T->pool, (T->pool_len + 1) * sizeof *T->pool);
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
 * to t and (a, b, new id) to mg; *nmerges_out = the number of merges.
 * fixed: the bytes of the symbols and the initial pool; every 256 merges
 * they, the pairs and the heap are checked against the limit (new pairs
 * and their occurrence lists grow). */
static int merge_loop(trainer *T, heap *H, uint32_t *sym, tokens *t, uint32_t *mg,
                      int want_merges, const tok_train_opts *o, tok_train_stats *st,
                      size_t fixed, const tok_counter *k, int *nmerges_out, flow_err *err)
{
    int nmerges = 0, rc = 0;
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
        uint32_t *occ = p->occ, nocc = p->nocc, ocap = p->cap;
        p->occ = NULL;
        p->nocc = p->cap = 0;
        p->count = 0;
        merge_in_words(T, sym, occ, nocc, a, b, nt);
        if (ocap) {     /* owned, not in the initial pool */
            free(occ);
            T->occ_bytes -= (size_t)ocap * sizeof *occ;
        } else
            pool_drop(T, occ, nocc);
        T->pairs[top.pid].count = 0;
        for (size_t i = 0; i < T->ntouched; i++) {
            pair *q = &T->pairs[T->touched[i]];
            if (q->count > 0)
                heap_push(H, (hent){q->count, q->a, q->b, T->touched[i]});
        }
        if ((nmerges & 255) == 0) {
            if (o->progress)
                o->progress(o->progress_arg, nmerges, want_merges, top.count);
            size_t need = fixed - T->pool_dropped + pairs_bytes(T) + H->cap * sizeof *H->e;
            char what[96];
            snprintf(what, sizeof what, "the merge state after %d of %d merges (it grows "
                     "with them)", nmerges, want_merges);
            if ((rc = within_limit(o, need, what, k, st, err)) != 0)
                break;
        }
    }
    *nmerges_out = nmerges;
    return rc;
}

/* Steps 1-2: the alphabet and the word records (the counter's table and
 * arena become symbols); *nsym_out = the pool's length.  Sized exactly
 * and checked against the limit before the pool is allocated. */
static int alphabet_and_records(tok_counter *k, const tok_terms *terms, const tok_train_opts *o,
                                tokens *t, int *nalpha_out, int *byte_base, uint32_t **sym_out,
                                size_t *nsym_out, size_t *npos_out, tok_train_stats *st,
                                flow_err *err)
{
    *sym_out = NULL;
    size_t nc;
    cent *chars = char_frequencies(k, st, &nc);
    size_t nalpha = alphabet_size(chars, nc, o, st);
    int base = TOK_NSPECIAL + k->nforced + (int)nalpha + (o->byte_fallback ? 256 : 0);
    if (o->vocab_size < base) {
        free(chars);
        return vocab_too_small(o, k->nforced, nalpha, base, err);
    }
    tokens_init(t, o->vocab_size);
    alpha_map am;
    *byte_base = initial_vocab(t, &am, terms, k->nforced, chars, nalpha, o->byte_fallback);
    *nalpha_out = (int)nalpha;
    free(chars);
    size_t nsym, npos;
    records_size(k, &am, &nsym, &npos);
    /* the table goes, the arena is freed while the pool fills (the peak is
     * at most both), then the pair occurrences follow the pool (at most one
     * per position); the table and arena were checked while counting */
    size_t pool = nsym * sizeof(uint32_t), arena = k->arena.bytes;
    size_t need = pool + (arena > npos * 4 ? arena : npos * 4);
    int rc = within_limit(o, need, "the word records and their pair occurrences", k, st, err);
    if (!rc) {
        *sym_out = word_records(k, &am, nsym);
        *nsym_out = nsym;
        *npos_out = npos;
    }
    alpha_map_release(&am);
    return rc;
}

int tok_train_counted(tok_counter *k, const tok_terms *terms, const tok_train_opts *o,
                      tok_tokenizer **out, tok_train_stats *st, flow_err *err)
{
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (k->bytes == 0)
        return flow_fail(err, FLOW_E_INPUT, "no training text (all text inputs are empty)");
    int nforced = k->nforced;
    st->words = k->npieces;
    for (int j = 0; j < TOK_NSPECIAL + nforced; j++)
        st->forced_occurrences += k->forced_counts[j];
    /* memory_peak: what training holds (the kept words, then the merge
     * state), not the counter's table of all words, which spills */
    int rc = bpe_counter_finish(k, o, st, err);
    st->unique_words = k->distinct;
    st->dropped_words = k->dropped_words;
    st->dropped_occurrences = k->dropped_occurrences;
    st->spills = k->nspills;
    st->spilled_bytes = k->spilled_bytes;
    if (rc)
        return rc;

    tokens t = {0};
    int nalpha = 0, byte_base = -1;
    uint32_t *sym = NULL;
    size_t nsym = 0, npos = 0;
    rc = alphabet_and_records(k, terms, o, &t, &nalpha, &byte_base, &sym, &nsym, &npos,
                                  st, err);
    st->seconds_count = now_s() - k->t0;
    trainer T;
    memset(&T, 0, sizeof T);
    if (!rc)
        rc = trainer_init(&T, sym, nsym, o, k, st, err);
    int nmerges = 0;
    uint32_t *mg = NULL;
    if (!rc) {
        heap H;
        heap_of_pairs(&H, &T);
        int want_merges = o->vocab_size - t.n;
        mg = xmalloc((size_t)(want_merges ? want_merges : 1) * 3 * sizeof *mg);
        double t1 = now_s();
        size_t fixed = nsym * sizeof *sym + T.pool_len * sizeof *T.pool;
        rc = merge_loop(&T, &H, sym, &t, mg, want_merges, o, st, fixed, k, &nmerges, err);
        st->merges = nmerges;
        st->seconds_merge = now_s() - t1;
        free(H.e);
    }
    trainer_release(&T);
    free(sym);
    if (!rc)
        rc = tok_build(out, t.n, (const char *const *)t.s, t.len, nforced, nalpha,
                       byte_base, o->max_token_chars, nmerges, mg, err);
    if (t.s)
        tokens_release(&t);
    free(mg);
    return rc;
}
