/* terms_mine.c — domain-term mining and term-list parsing behind the
 * `terms` stage (terms.c); pure functions declared in text.h.
 *
 * Mining: the text is reduced to runs of Han characters (code points, 0 =
 * run break).  N-grams are counted by increasing length n = 1 .. max_len+1
 * in one hash table per length.  An n-gram at position i is counted only
 * when the (n-1)-gram at i or at i+1 is frequent (count >= min_freq), which
 * counts every frequent n-gram exactly (both its halves are frequent) and
 * every one-character extension of a frequent (n-1)-gram (needed for its
 * branching entropy) while skipping the long tail.  Per-position slot
 * arrays remember which entry the gram at i went to, so the rule and the
 * entropy bookkeeping need no extra hash lookups.
 *
 * For a candidate w of length m with frequency f:
 *   right entropy = ln f - (sum over right extensions w·x of c ln c) / f,
 *   where occurrences at the end of a run count as distinct neighbours;
 *   left entropy likewise; PMI = min over split points w = a·b of
 *   ln(f * N / (c(a) c(b))), N = number of Han characters.
 * Memory: ~20 bytes per Han character plus the tables (~12 bytes per
 * counted n-gram, at most the number of positions). */
#include "text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

void mine_opts_default(mine_opts *o)
{
    o->min_len = 2;
    o->max_len = 8;
    o->min_freq = 5;
    o->min_pmi = 1.0;
    o->min_entropy = 1.0;
}

/* ---- n-gram tables ------------------------------------------------- */

typedef struct gram {
    uint32_t pos;       /* start of the first occurrence in seq */
    uint32_t count;
    uint32_t h;         /* hash bits, to skip most memcmp calls */
} gram;

typedef struct gtable {
    int n;              /* n-gram length */
    gram *e;
    uint32_t *slot;     /* open addressing: index+1 into e, 0 = empty */
    size_t cap, used, ecap;
} gtable;

static void gt_init(gtable *t, int n, size_t expect)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->cap = 1024;
    while (t->cap < 2 * expect) t->cap *= 2;
    t->slot = xcalloc(t->cap, sizeof *t->slot);
}

static void gt_free(gtable *t)
{
    free(t->e);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static uint64_t gram_hash(const uint32_t *seq, uint32_t pos, int n)
{
    return XXH3_64bits(seq + pos, (size_t)n * sizeof *seq);
}

static void gt_grow(gtable *t)
{
    size_t cap = t->cap * 2;
    uint32_t *slot = xcalloc(cap, sizeof *slot);
    for (size_t k = 0; k < t->used; k++) {
        /* slots are found from the stored 32 hash bits (cap <= 2^32) */
        size_t i = (size_t)t->e[k].h & (cap - 1);
        while (slot[i]) i = (i + 1) & (cap - 1);
        slot[i] = (uint32_t)k + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
}

/* Finds or inserts the n-gram at seq[pos]; returns its entry index. */
static uint32_t gt_add(gtable *t, const uint32_t *seq, uint32_t pos)
{
    if (2 * (t->used + 1) > t->cap) gt_grow(t);
    uint32_t h = (uint32_t)gram_hash(seq, pos, t->n);
    size_t i = (size_t)h & (t->cap - 1);
    while (t->slot[i]) {
        gram *g = &t->e[t->slot[i] - 1];
        if (g->h == h && memcmp(seq + g->pos, seq + pos, (size_t)t->n * sizeof *seq) == 0) {
            g->count++;
            return t->slot[i] - 1;
        }
        i = (i + 1) & (t->cap - 1);
    }
    if (t->used == t->ecap) {
        t->ecap = t->ecap ? 2 * t->ecap : 4096;
        t->e = xrealloc(t->e, t->ecap * sizeof *t->e);
    }
    t->e[t->used] = (gram){pos, 1, h};
    t->slot[i] = (uint32_t)++t->used;
    return (uint32_t)t->used - 1;
}

/* Count of the gram of length t->n at seq[pos] (0 if absent). */
static uint32_t gt_count(const gtable *t, const uint32_t *seq, uint32_t pos)
{
    uint32_t h = (uint32_t)gram_hash(seq, pos, t->n);
    size_t i = (size_t)h & (t->cap - 1);
    while (t->slot[i]) {
        const gram *g = &t->e[t->slot[i] - 1];
        if (g->h == h && memcmp(seq + g->pos, seq + pos, (size_t)t->n * sizeof *seq) == 0) return g->count;
        i = (i + 1) & (t->cap - 1);
    }
    return 0;
}

/* Keeps only entries with count >= min (for later PMI lookups). */
static void gt_prune(gtable *t, uint32_t min)
{
    size_t k = 0;
    for (size_t j = 0; j < t->used; j++)
        if (t->e[j].count >= min) t->e[k++] = t->e[j];
    t->used = k;
    size_t cap = 1024;
    while (cap < 2 * (k + 1)) cap *= 2;
    free(t->slot);
    t->slot = xcalloc(cap, sizeof *t->slot);
    t->cap = cap;
    for (size_t j = 0; j < k; j++) {
        size_t i = (size_t)t->e[j].h & (cap - 1);
        while (t->slot[i]) i = (i + 1) & (cap - 1);
        t->slot[i] = (uint32_t)j + 1;
    }
}

/* ---- mining -------------------------------------------------------- */

static int is_mine_han(uint32_t cp) { return cp >= 0x4e00 && cp <= 0x9fff; }

static int is_numeral_cp(uint32_t cp)
{
    static const uint32_t num[] = {0x96f6, 0x3007, 0x4e00, 0x4e8c, 0x4e24, 0x4e09, 0x56db, 0x4e94,
                                   0x516d, 0x4e03, 0x516b, 0x4e5d, 0x5341, 0x767e, 0x5343, 0x4e07};
    for (size_t i = 0; i < sizeof num / sizeof *num; i++)
        if (cp == num[i]) return 1;
    return 0;
}

/* Numeral runs and article references (第一百, 二十, 百二十条) are not terms. */
static int numeral_like(const uint32_t *w, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += is_numeral_cp(w[i]);
    if (2 * k > n) return 1;
    if (w[0] == 0x7b2c && n > 1 && is_numeral_cp(w[1])) return 1;     /* 第 + numeral */
    if (w[n - 1] == 0x7b2c) return 1;                                   /* ends in 第 */
    return 0;
}

/* Function characters a term neither starts nor ends with (的, 或, 和,
 * 依, 应, ...): n-grams bounded by them are clause fragments such as
 * 情节严重的 or 应当依法, not terms.  不, 所, 经, 者 are absent on purpose
 * (不可抗力, 所得税, 经营者, 消费者). */
static const char stop_chars[] = "的了和与及或在对由为是其并而以于等之被把将向从按依应可也都该本各且即但如若因则";

static int is_stop(uint32_t cp)
{
    const unsigned char *p = (const unsigned char *)stop_chars;
    size_t n = sizeof stop_chars - 1, i = 0;
    while (i < n) {
        uint32_t s;
        int k = utf8_decode(p + i, n - i, &s);
        if (k < 0) FLOW_BUG("stop_chars is not UTF-8");
        if (s == cp) return 1;
        i += (size_t)k;
    }
    return 0;
}

typedef struct ent_acc {
    double left, right;     /* sum of c ln c over extensions */
} ent_acc;

static int term_cmp(const void *a, const void *b)
{
    const mined_term *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    if (x->freq != y->freq) return x->freq < y->freq ? 1 : -1;
    return strcmp(x->text, y->text);
}

int terms_mine(const mine_opts *o, const char *text, size_t len, mined_term **out, int *nout,
               flow_err *err)
{
    *out = NULL;
    *nout = 0;
    if (o->min_len < 1 || o->max_len > 8 || o->min_len > o->max_len)
        return flow_fail(err, FLOW_E_PARAM, "term lengths %d..%d: need 1 <= min_len <= max_len <= 8",
                         o->min_len, o->max_len);
    /* 1. Han runs */
    uint32_t *seq = xmalloc((len + 2) * sizeof *seq);
    size_t ns = 0, nhan = 0, i = 0;
    while (i < len) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (k < 0) { k = 1; cp = 0; }
        i += (size_t)k;
        if (is_mine_han(cp)) seq[ns++] = cp, nhan++;
        else if (ns && seq[ns - 1] != 0) seq[ns++] = 0;
    }
    seq[ns++] = 0;
    if (ns > 0xfffffff0u) {
        free(seq);
        return flow_fail(err, FLOW_E_INPUT, "text of %zu characters is too large to mine (limit 4e9)", ns);
    }
    int L = o->max_len;
    uint32_t minf = (uint32_t)(o->min_freq > 1 ? o->min_freq : 1);
    gtable *T = xcalloc((size_t)L + 2, sizeof *T);       /* T[n], n = 1..L+1 */
    int32_t *slot_prev = xmalloc(ns * sizeof *slot_prev), *slot_cur = xmalloc(ns * sizeof *slot_cur);
    uint8_t *freq_prev = xcalloc(ns, 1);
    ent_acc *acc = NULL;
    mined_term *res = NULL;
    int nres = 0, rcap = 0;

    /* run length remaining from each position (0 at breaks) */
    uint8_t *runleft = xmalloc(ns);
    {
        uint32_t r = 0;
        for (size_t p = ns; p-- > 0;) {
            r = seq[p] ? r + 1 : 0;
            runleft[p] = (uint8_t)(r > 255 ? 255 : r);
        }
    }
    for (int n = 1; n <= L + 1; n++) {
        gt_init(&T[n], n, n == 1 ? 8192 : T[n - 1].used);
        for (size_t p = 0; p < ns; p++) {
            slot_cur[p] = -1;
            if (runleft[p] < n) continue;
            if (n > 1 && !freq_prev[p] && !freq_prev[p + 1]) continue;
            slot_cur[p] = (int32_t)gt_add(&T[n], seq, (uint32_t)p);
        }
        /* frequency flags of this length for the next pass */
        for (size_t p = 0; p < ns; p++)
            freq_prev[p] = slot_cur[p] >= 0 && T[n].e[slot_cur[p]].count >= minf;
        if (n >= 2) {
            /* branching statistics of the (n-1)-grams from the n-grams */
            gtable *P = &T[n - 1];
            acc = xcalloc(P->used ? P->used : 1, sizeof *acc);
            for (size_t k = 0; k < T[n].used; k++) {
                const gram *g = &T[n].e[k];
                double c = g->count, cl = c * log(c);
                int32_t a = slot_prev[g->pos], b = slot_prev[g->pos + 1];
                if (a >= 0) acc[a].right += cl;
                if (b >= 0) acc[b].left += cl;
            }
            int m = n - 1;
            if (m >= o->min_len && m <= o->max_len) {
                for (size_t k = 0; k < P->used; k++) {
                    const gram *g = &P->e[k];
                    if (g->count < minf) continue;
                    const uint32_t *w = seq + g->pos;
                    if (numeral_like(w, m) || is_stop(w[0]) || is_stop(w[m - 1])) continue;
                    double f = g->count;
                    double pmi = INFINITY;
                    for (int s = 1; s < m; s++) {
                        double ca = gt_count(&T[s], seq, g->pos), cb = gt_count(&T[m - s], seq, g->pos + (uint32_t)s);
                        if (ca <= 0 || cb <= 0) FLOW_BUG("sub-gram of a frequent %d-gram was not counted", m);
                        double v = log(f * (double)nhan / (ca * cb));
                        if (v < pmi) pmi = v;
                    }
                    if (m == 1) pmi = 0;
                    double re = log(f) - acc[k].right / f, le = log(f) - acc[k].left / f;
                    if (pmi < o->min_pmi || (le < re ? le : re) < o->min_entropy) continue;
                    if (nres == rcap) {
                        rcap = rcap ? 2 * rcap : 1024;
                        res = xrealloc(res, (size_t)rcap * sizeof *res);
                    }
                    mined_term *t = &res[nres++];
                    memset(t, 0, sizeof *t);
                    size_t tl = 0;
                    for (int q = 0; q < m; q++) tl += (size_t)utf8_encode(w[q], t->text + tl);
                    t->text[tl] = 0;
                    t->nchars = m;
                    t->freq = g->count;
                    t->pmi = pmi;
                    t->left_entropy = le;
                    t->right_entropy = re;
                    double h = le < re ? le : re;
                    t->score = m * log(f) * (pmi < 6 ? pmi : 6) * h;
                }
            }
            free(acc);
            acc = NULL;
            gt_prune(P, minf);
        }
        int32_t *t = slot_prev; slot_prev = slot_cur; slot_cur = t;
    }
    for (int n = 1; n <= L + 1; n++) gt_free(&T[n]);
    free(T);
    free(slot_prev);
    free(slot_cur);
    free(freq_prev);
    free(runleft);
    free(seq);
    if (nres) qsort(res, (size_t)nres, sizeof *res, term_cmp);
    *out = res;
    *nout = nres;
    return 0;
}

/* ---- term lists ---------------------------------------------------- */

void term_list_release(term_list *t)
{
    free(t->buf);
    free(t->term);
    memset(t, 0, sizeof *t);
}

/* Trims ASCII white space and U+3000 from both ends of s[0..*n). */
static char *trim(char *s, size_t *n)
{
    for (;;) {
        if (*n && (*s == ' ' || *s == '\t' || *s == '\r')) s++, (*n)--;
        else if (*n >= 3 && memcmp(s, "\xe3\x80\x80", 3) == 0) s += 3, *n -= 3;
        else break;
    }
    for (;;) {
        if (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r')) (*n)--;
        else if (*n >= 3 && memcmp(s + *n - 3, "\xe3\x80\x80", 3) == 0) *n -= 3;
        else break;
    }
    return s;
}

int term_list_parse(term_list *t, char *data, size_t len, int max_chars, flow_err *err)
{
    memset(t, 0, sizeof *t);
    t->buf = data;
    size_t p = 0;
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) p = 3;
    int cap = 0, line = 0;
    /* duplicate detection: open addressing over 64-bit hashes */
    size_t hcap = 64;
    while (hcap < len / 2 + 64) hcap *= 2;
    int32_t *hs = xmalloc(hcap * sizeof *hs);
    for (size_t k = 0; k < hcap; k++) hs[k] = -1;
    while (p < len) {
        char *l = data + p;
        char *nl = memchr(l, '\n', len - p);
        size_t n = nl ? (size_t)(nl - l) : len - p;
        p += n + 1;
        line++;
        if (nl) *nl = 0;
        char *s = trim(l, &n);
        s[n] = 0;
        if (n == 0) { t->blank++; continue; }
        if (s[0] == '#') { t->comments++; continue; }
        long bad = utf8_first_invalid((const unsigned char *)s, n);
        if (bad >= 0) {
            free(hs);
            term_list_release(t);
            return flow_fail(err, FLOW_E_INPUT, "line %d: invalid UTF-8 at byte %ld of the term", line, bad);
        }
        int chars = 0;
        for (size_t k = 0; k < n; k++) chars += ((unsigned char)s[k] & 0xc0) != 0x80;
        if (chars > max_chars) {
            if (!t->first_too_long) t->first_too_long = s;
            t->too_long++;
            continue;
        }
        uint64_t h = XXH3_64bits(s, n);
        size_t i = (size_t)h & (hcap - 1);
        int dup = 0;
        while (hs[i] >= 0) {
            if (strcmp(t->term[hs[i]], s) == 0) { dup = 1; break; }
            i = (i + 1) & (hcap - 1);
        }
        if (dup) { t->duplicates++; continue; }
        if (t->n == cap) {
            cap = cap ? 2 * cap : 64;
            t->term = xrealloc(t->term, (size_t)cap * sizeof *t->term);
        }
        hs[i] = t->n;
        t->term[t->n++] = s;
    }
    free(hs);
    return 0;
}
