/* tok_segment.c — how the tokenizer cuts text before BPE: the character
 * classes, the forced-term matcher (a byte trie with hashed transitions,
 * leftmost-longest), the pre-tokenizer, and term-list parsing.  Training
 * (bpe.c) and encoding (tokenizer.c) both go through tok_segment(), so a
 * forced term is one id in every occurrence and no merge crosses one. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* ---- character classes ------------------------------------------------ */
extern const uint32_t tok_unicode_ranges[][3];
extern const int tok_unicode_nranges;

/* The BMP classes as a direct table, filled before main() (a constructor,
 * so the per-character lookup needs no once-check). */
static uint8_t bmp_class[65536];

__attribute__((constructor)) static void bmp_init(void)
{
    for (int i = 0; i < tok_unicode_nranges; i++) {
        uint32_t a = tok_unicode_ranges[i][0], b = tok_unicode_ranges[i][1];
        if (a > 0xFFFF)
            break;
        if (b > 0xFFFF)
            b = 0xFFFF;
        for (uint32_t c = a; c <= b; c++)
            bmp_class[c] = (uint8_t)tok_unicode_ranges[i][2];
    }
}

int tok_char_class(uint32_t cp)
{
    if (cp <= 0xFFFF)
        return bmp_class[cp];
    if (cp > 0x10FFFF)
        return TOK_C_OTHER;
    int lo = 0, hi = tok_unicode_nranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < tok_unicode_ranges[mid][0])
            hi = mid - 1;
        else if (cp > tok_unicode_ranges[mid][1])
            lo = mid + 1;
        else
            return (int)tok_unicode_ranges[mid][2];
    }
    return TOK_C_OTHER;
}

/* ---- matcher ------------------------------------------------------------ */
/* Node 0 is the root.  Transitions (node, byte) -> child live in an open
 * addressing table keyed by node * 256 + byte; values are node ids. */
struct tok_matcher {
    int *value;             /* per node: term value or -1 */
    int nnodes, capnodes;
    uint64_t *tkey;         /* transition keys + 1 (0 = empty) */
    int *tval;
    size_t tcap, tn;
    uint8_t first[256];     /* bytes that start some term */
    uint64_t first_bmp[1024];   /* BMP code points that start some term (bits) */
    int nterms;
};

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    return x;
}

static int trans_get(const tok_matcher *m, int node, unsigned char b)
{
    uint64_t k = (uint64_t)node * 256 + b + 1;
    size_t mask = m->tcap - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
        if (m->tkey[i] == k)
            return m->tval[i];
        if (m->tkey[i] == 0)
            return -1;
    }
}

static void trans_put(tok_matcher *m, int node, unsigned char b, int child)
{
    if ((m->tn + 1) * 2 > m->tcap) {
        size_t oc = m->tcap;
        uint64_t *ok = m->tkey;
        int *ov = m->tval;
        m->tcap = oc ? oc * 2 : 64;
        m->tkey = xcalloc(m->tcap, sizeof *m->tkey);
        m->tval = xmalloc(m->tcap * sizeof *m->tval);
        m->tn = 0;
        for (size_t i = 0; i < oc; i++)
            if (ok[i]) {
                uint64_t k = ok[i] - 1;
                trans_put(m, (int)(k / 256), (unsigned char)(k % 256), ov[i]);
            }
        free(ok);
        free(ov);
    }
    uint64_t k = (uint64_t)node * 256 + b + 1;
    size_t mask = m->tcap - 1, i = mix64(k) & mask;
    while (m->tkey[i])
        i = (i + 1) & mask;
    m->tkey[i] = k;
    m->tval[i] = child;
    m->tn++;
}

tok_matcher *tok_matcher_new(void)
{
    tok_matcher *m = xcalloc(1, sizeof *m);
    m->capnodes = 16;
    m->value = xmalloc(m->capnodes * sizeof *m->value);
    m->value[0] = -1;
    m->nnodes = 1;
    return m;
}

void tok_matcher_free(tok_matcher *m)
{
    if (!m)
        return;
    free(m->value);
    free(m->tkey);
    free(m->tval);
    free(m);
}

int tok_matcher_count(const tok_matcher *m) { return m->nterms; }

int tok_matcher_add(tok_matcher *m, const char *s, size_t n, int v)
{
    if (n == 0 || v < 0)
        FLOW_BUG("tok_matcher_add: empty term or negative value");
    int node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int child = m->tcap ? trans_get(m, node, b) : -1;
        if (child < 0) {
            if (m->nnodes == m->capnodes) {
                m->capnodes *= 2;
                m->value = xrealloc(m->value, m->capnodes * sizeof *m->value);
            }
            child = m->nnodes++;
            m->value[child] = -1;
            trans_put(m, node, b, child);
        }
        node = child;
    }
    if (m->value[node] >= 0)
        return m->value[node] + 1;
    m->value[node] = v;
    m->first[(unsigned char)s[0]] = 1;
    uint32_t cp;
    int k = tok_next_char(s, n, &cp);
    (void)k;
    if (cp <= 0xFFFF)
        m->first_bmp[cp >> 6] |= 1ULL << (cp & 63);
    m->nterms++;
    return 0;
}

int tok_matcher_longest(const tok_matcher *m, const char *s, size_t n, size_t *len)
{
    if (!n || !m->first[(unsigned char)s[0]])
        return -1;
    int node = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        node = trans_get(m, node, (unsigned char)s[i]);
        if (node < 0)
            break;
        if (m->value[node] >= 0) {
            best = m->value[node];
            *len = i + 1;
        }
    }
    return best;
}

int tok_matcher_prefixes(const tok_matcher *m, const char *s, size_t n,
                         int *vals, size_t *lens, int cap)
{
    if (!n || !m->first[(unsigned char)s[0]])
        return 0;
    int node = 0, found = 0;
    for (size_t i = 0; i < n; i++) {
        node = trans_get(m, node, (unsigned char)s[i]);
        if (node < 0)
            break;
        if (m->value[node] >= 0) {
            if (found < cap) {
                vals[found] = m->value[node];
                lens[found] = i + 1;
            }
            found++;
        }
    }
    return found;
}

/* ---- segmentation ------------------------------------------------------ */
/* Pre-tokenizes s[0..n) (a region free of forced terms). */
static int pretokenize(const char *s, size_t n, tok_piece_fn fn, void *arg)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = tok_next_char(s + i, n - i, &cp);
        int cls = tok_char_class(cp);
        size_t j = i + (size_t)k;
        if (cls != TOK_C_OTHER) {
            int run = 1;
            while (j < n && run < TOK_MAX_RUN) {
                uint32_t cp2;
                int k2 = tok_next_char(s + j, n - j, &cp2);
                if (tok_char_class(cp2) != cls)
                    break;
                j += (size_t)k2;
                run++;
            }
        }
        int rc = fn(arg, s + i, j - i, -1);
        if (rc)
            return rc;
        i = j;
    }
    return 0;
}

int tok_segment(const tok_matcher *m, const char *s, size_t n, tok_piece_fn fn, void *arg)
{
    if (!m || m->nterms == 0)
        return pretokenize(s, n, fn, arg);
    size_t start = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp = c;
        int clen = 1;
        if (c >= 0x80)
            clen = tok_next_char(s + i, n - i, &cp);
        /* cheap filter: only a character that starts some term (exact for
         * the BMP, by lead byte above it) can begin a match */
        int maybe = cp <= 0xFFFF ? (int)((m->first_bmp[cp >> 6] >> (cp & 63)) & 1) : m->first[c];
        if (maybe) {
            size_t len = 0;
            int v = tok_matcher_longest(m, s + i, n - i, &len);
            if (v >= 0) {
                int rc = i > start ? pretokenize(s + start, i - start, fn, arg) : 0;
                if (!rc)
                    rc = fn(arg, s + i, len, v);
                if (rc)
                    return rc;
                i += len;
                start = i;
                continue;
            }
        }
        /* advance one character; continuation bytes never start a term */
        i += (size_t)clen;
    }
    return i > start ? pretokenize(s + start, i - start, fn, arg) : 0;
}

/* ---- term lists ---------------------------------------------------------- */
void tok_terms_init(tok_terms *t)
{
    memset(t, 0, sizeof *t);
    t->seen = tok_matcher_new();
}

void tok_terms_release(tok_terms *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->s[i]);
    free(t->s);
    free(t->len);
    tok_matcher_free(t->seen);
    memset(t, 0, sizeof *t);
}

static int is_ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int tok_terms_parse(tok_terms *t, const char *data, size_t len, const char *name,
                    int max_chars, flow_err *err)
{
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    int line = 0;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - data) : len;
        size_t a = i, b = e;
        line++;
        i = e + 1;
        while (a < b && is_ascii_space(data[a]))
            a++;
        while (b > a && is_ascii_space(data[b - 1]))
            b--;
        if (a == b || data[a] == '#')
            continue;
        long bad = utf8_first_invalid((const unsigned char *)data + a, b - a);
        if (bad >= 0)
            return flow_fail(err, FLOW_E_INPUT,
                             "%s:%d: invalid UTF-8 at byte %ld of the term; "
                             "term lists must be UTF-8", name, line, bad + 1);
        int chars = 0;
        for (size_t k = a; k < b; k++)
            chars += ((unsigned char)data[k] & 0xC0) != 0x80;
        if (chars > max_chars) {
            if (!t->too_long)
                snprintf(t->too_long_example, sizeof t->too_long_example,
                         "%s:%d (%d characters)", name, line, chars);
            t->too_long++;
            continue;
        }
        if (tok_matcher_add(t->seen, data + a, b - a, t->n)) {
            t->duplicates++;
            continue;
        }
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 64;
            t->s = xrealloc(t->s, t->cap * sizeof *t->s);
            t->len = xrealloc(t->len, t->cap * sizeof *t->len);
        }
        t->s[t->n] = xmalloc(b - a + 1);
        memcpy(t->s[t->n], data + a, b - a);
        t->s[t->n][b - a] = 0;
        t->len[t->n] = b - a;
        t->n++;
    }
    return 0;
}
