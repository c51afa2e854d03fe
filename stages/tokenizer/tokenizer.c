/* tokenizer.c — the loaded tokenizer: building it from parts, the
 * tokenizer.bin format (write + validated read), encoding (segmentation
 * from tok_segment.c, then BPE merges per pre-token by rank) and decoding.
 *
 * tokenizer.bin, little-endian:
 *   "FLOWTOK\0"  u32 version (1)  u32 flags (bit 0: byte fallback)
 *   u32 nvocab  u32 nforced  u32 nalphabet  u32 byte_base (or 0xFFFFFFFF)
 *   u32 nmerges  u32 max_token_chars  u32 max_run (TOK_MAX_RUN)
 *   nvocab x (u32 length, bytes)
 *   nmerges x (u32 a, u32 b, u32 result)
 *   16 bytes XXH3-128 of everything before.
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define TOK_MAGIC "FLOWTOK\0"
#define TOK_VERSION 1u

static const char *const special_text[TOK_NSPECIAL] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
};

struct tok_tokenizer {
    int nvocab, nforced, nalpha, byte_base, max_token_chars, nmerges;
    char *pool;             /* all token texts */
    uint32_t *off, *len;    /* per id */
    uint32_t *merges;       /* 3 per merge: a, b, result */
    int32_t *bmp;           /* [65536] id of each BMP character, -1 */
    uint64_t *skey; int32_t *sval; size_t scap;   /* other characters */
    uint64_t *pkey;         /* merge table: key (a<<32|b)+1, 0 = empty */
    uint32_t *prank, *pres;
    size_t pcap;
    uint64_t *hkey; int32_t *hval; size_t hcap;   /* text hash -> id */
    tok_matcher *m;         /* specials and forced terms, value = id */
};

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static uint64_t text_hash(const char *s, size_t n)
{
    flow_hash h = flow_hash_bytes(s, n);
    uint64_t v;
    memcpy(&v, h.b, 8);
    return v | 1;   /* never 0 */
}

static size_t pow2_above(size_t n)
{
    size_t c = 16;
    while (c < n * 2)
        c *= 2;
    return c;
}

static int32_t char_lookup(const tok_tokenizer *t, uint32_t cp)
{
    if (cp <= 0xFFFF)
        return t->bmp[cp];
    if (cp > 0x10FFFF || !t->scap)
        return -1;
    uint64_t k = (uint64_t)cp + 1;
    for (size_t i = mix64(k) & (t->scap - 1);; i = (i + 1) & (t->scap - 1)) {
        if (t->skey[i] == k)
            return t->sval[i];
        if (!t->skey[i])
            return -1;
    }
}

/* Merge rank of (a, b), -1 if none; *res = resulting id. */
static inline int64_t pair_lookup(const tok_tokenizer *t, uint32_t a, uint32_t b, uint32_t *res)
{
    uint64_t k = (((uint64_t)a << 32) | b) + 1;
    size_t mask = t->pcap - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
        if (t->pkey[i] == k) {
            *res = t->pres[i];
            return t->prank[i];
        }
        if (!t->pkey[i])
            return -1;
    }
}

void tok_free(tok_tokenizer *t)
{
    if (!t)
        return;
    free(t->pool); free(t->off); free(t->len); free(t->merges); free(t->bmp);
    free(t->skey); free(t->sval); free(t->pkey); free(t->prank); free(t->pres);
    free(t->hkey); free(t->hval);
    tok_matcher_free(t->m);
    free(t);
}

int tok_vocab_size(const tok_tokenizer *t) { return t->nvocab; }
int tok_nforced(const tok_tokenizer *t) { return t->nforced; }
int tok_nalphabet(const tok_tokenizer *t) { return t->nalpha; }
int tok_nmerges(const tok_tokenizer *t) { return t->nmerges; }
int tok_byte_fallback(const tok_tokenizer *t) { return t->byte_base >= 0; }
int tok_byte_base(const tok_tokenizer *t) { return t->byte_base; }
int tok_max_token_chars(const tok_tokenizer *t) { return t->max_token_chars; }

const char *tok_token(const tok_tokenizer *t, int id, size_t *len)
{
    if (id < 0 || id >= t->nvocab)
        FLOW_BUG("tok_token: id %d outside vocabulary of %d", id, t->nvocab);
    *len = t->len[id];
    return t->pool + t->off[id];
}

int tok_token_id(const tok_tokenizer *t, const char *s, size_t n)
{
    uint64_t k = text_hash(s, n);
    for (size_t i = mix64(k) & (t->hcap - 1);; i = (i + 1) & (t->hcap - 1)) {
        if (!t->hkey[i])
            return -1;
        if (t->hkey[i] == k) {
            int id = t->hval[i];
            if (t->len[id] == n && memcmp(t->pool + t->off[id], s, n) == 0)
                return id;
        }
    }
}

void tok_merge(const tok_tokenizer *t, int i, int *a, int *b, int *result)
{
    *a = (int)t->merges[3 * i];
    *b = (int)t->merges[3 * i + 1];
    *result = (int)t->merges[3 * i + 2];
}

int tok_char_id(const tok_tokenizer *t, uint32_t cp) { return char_lookup(t, cp); }

static int single_char(const char *s, size_t n, uint32_t *cp)
{
    return n > 0 && utf8_decode((const unsigned char *)s, n, cp) == (int)n;
}

static int bad(flow_err *err, const char *fmt, int a, int b)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    return flow_fail(err, FLOW_E_CORRUPT, "tokenizer: %s", msg);
}

/* tok_build in steps; each returns 0 or a FLOW_E_CORRUPT naming what is
 * wrong, and tok_build frees the half-built tokenizer. */

/* The token texts in one pool (off/len per id). */
static int build_pool(tok_tokenizer *t, const char *const *tokens, const size_t *toklens,
                      flow_err *err)
{
    int nvocab = t->nvocab;
    size_t total = 0;
    for (int i = 0; i < nvocab; i++)
        total += toklens[i];
    t->pool = xmalloc(total + 1);
    t->off = xmalloc(nvocab * sizeof *t->off);
    t->len = xmalloc(nvocab * sizeof *t->len);
    total = 0;
    for (int i = 0; i < nvocab; i++) {
        if (toklens[i] == 0 || toklens[i] > 0xFFFFFF)
            return bad(err, "token %d has length %d", i, (int)toklens[i]);
        memcpy(t->pool + total, tokens[i], toklens[i]);
        t->off[i] = (uint32_t)total;
        t->len[i] = (uint32_t)toklens[i];
        total += toklens[i];
    }
    return 0;
}

/* text -> id (every text once) */
static int build_text_index(tok_tokenizer *t, flow_err *err)
{
    t->hcap = pow2_above((size_t)t->nvocab);
    t->hkey = xcalloc(t->hcap, sizeof *t->hkey);
    t->hval = xmalloc(t->hcap * sizeof *t->hval);
    for (int i = 0; i < t->nvocab; i++) {
        int dup = tok_token_id(t, t->pool + t->off[i], t->len[i]);
        if (dup >= 0)
            return bad(err, "token %d repeats token %d", i, dup);
        uint64_t k = text_hash(t->pool + t->off[i], t->len[i]);
        size_t j = mix64(k) & (t->hcap - 1);
        while (t->hkey[j])
            j = (j + 1) & (t->hcap - 1);
        t->hkey[j] = k;
        t->hval[j] = i;
    }
    return 0;
}

/* Specials (checked against their texts) and forced terms (valid UTF-8)
 * into the matcher; characters (one each) into the lookup: a direct table
 * for the BMP, a hash for the supplementary planes. */
static int build_char_index(tok_tokenizer *t, flow_err *err)
{
    int nforced = t->nforced, nalphabet = t->nalpha;
    t->m = tok_matcher_new();
    t->bmp = xmalloc(65536 * sizeof *t->bmp);
    memset(t->bmp, 0xFF, 65536 * sizeof *t->bmp);
    int nchar_ids = TOK_NSPECIAL + nforced + nalphabet;
    size_t nsupp = 0;
    for (int i = 0; i < nchar_ids; i++) {
        const char *s = t->pool + t->off[i];
        uint32_t cp;
        if (i < TOK_NSPECIAL && (t->len[i] != strlen(special_text[i]) ||
                                 memcmp(s, special_text[i], t->len[i])))
            return bad(err, "id %d is not the special token expected there (%d)", i, i);
        if (i < TOK_NSPECIAL + nforced) {
            if (utf8_first_invalid((const unsigned char *)s, t->len[i]) >= 0)
                return bad(err, "forced term %d (of %d) is not valid UTF-8", i, nforced);
            tok_matcher_add(t->m, s, t->len[i], i);
        } else if (!single_char(s, t->len[i], &cp)) {
            return bad(err, "alphabet token %d (of %d) is not one character", i, nalphabet);
        }
        if (i >= TOK_NSPECIAL && single_char(s, t->len[i], &cp) && cp > 0xFFFF)
            nsupp++;
    }
    if (nsupp) {
        t->scap = pow2_above(nsupp);
        t->skey = xcalloc(t->scap, sizeof *t->skey);
        t->sval = xmalloc(t->scap * sizeof *t->sval);
    }
    for (int i = TOK_NSPECIAL; i < nchar_ids; i++) {
        uint32_t cp;
        if (!single_char(t->pool + t->off[i], t->len[i], &cp))
            continue;
        if (cp <= 0xFFFF)
            t->bmp[cp] = i;
        else {
            uint64_t k = (uint64_t)cp + 1;
            size_t j = mix64(k) & (t->scap - 1);
            while (t->skey[j])
                j = (j + 1) & (t->scap - 1);
            t->skey[j] = k;
            t->sval[j] = i;
        }
    }
    return 0;
}

static int check_byte_tokens(const tok_tokenizer *t, flow_err *err)
{
    int byte_base = t->byte_base;
    if (byte_base >= 0)
        for (int b = 0; b < 256; b++) {
            char want[8];
            snprintf(want, sizeof want, "<0x%02X>", b);
            if (t->len[byte_base + b] != 6 || memcmp(t->pool + t->off[byte_base + b], want, 6))
                return bad(err, "byte token %d is not <0x%02X>", byte_base + b, b);
        }
    return 0;
}

/* The merges in rank order: merge i makes token first_merged + i from
 * two earlier non-forced tokens whose texts it concatenates; each pair
 * once.  Indexed pair -> (rank, result). */
static int build_merges(tok_tokenizer *t, const uint32_t *merges, flow_err *err)
{
    int nmerges = t->nmerges, nforced = t->nforced;
    t->merges = xmalloc((size_t)(nmerges ? nmerges : 1) * 3 * sizeof *t->merges);
    t->pcap = pow2_above((size_t)nmerges);
    t->pkey = xcalloc(t->pcap, sizeof *t->pkey);
    t->prank = xmalloc(t->pcap * sizeof *t->prank);
    t->pres = xmalloc(t->pcap * sizeof *t->pres);
    int first_merged = t->nvocab - nmerges;
    for (int i = 0; i < nmerges; i++) {
        uint32_t a = merges[3 * i], b = merges[3 * i + 1], r = merges[3 * i + 2];
        if (r != (uint32_t)(first_merged + i) || a >= r || b >= r ||
            (int)a < TOK_NSPECIAL + nforced || (int)b < TOK_NSPECIAL + nforced ||
            t->len[a] + t->len[b] != t->len[r] ||
            memcmp(t->pool + t->off[a], t->pool + t->off[r], t->len[a]) ||
            memcmp(t->pool + t->off[b], t->pool + t->off[r] + t->len[a], t->len[b]))
            return bad(err, "merge %d (result id %d) is inconsistent", i, (int)r);
        uint32_t dummy;
        if (pair_lookup(t, a, b, &dummy) >= 0)
            return bad(err, "merge %d (result id %d) repeats an earlier pair", i, (int)r);
        memcpy(t->merges + 3 * i, merges + 3 * i, 3 * sizeof *merges);
        uint64_t k = (((uint64_t)a << 32) | b) + 1;
        size_t j = mix64(k) & (t->pcap - 1);
        while (t->pkey[j])
            j = (j + 1) & (t->pcap - 1);
        t->pkey[j] = k;
        t->prank[j] = (uint32_t)i;
        t->pres[j] = r;
    }
    return 0;
}

int tok_build(tok_tokenizer **out, int nvocab, const char *const *tokens,
              const size_t *toklens, int nforced, int nalphabet, int byte_base,
              int max_token_chars, int nmerges, const uint32_t *merges, flow_err *err)
{
    *out = NULL;
    if (nvocab < TOK_NSPECIAL || nforced < 0 || nalphabet < 0 || nmerges < 0 ||
        TOK_NSPECIAL + nforced + nalphabet + (byte_base >= 0 ? 256 : 0) + nmerges != nvocab)
        return bad(err, "inconsistent section sizes (vocabulary %d, merges %d)", nvocab, nmerges);
    if (byte_base >= 0 && byte_base != TOK_NSPECIAL + nforced + nalphabet)
        return bad(err, "byte tokens at id %d, expected after the alphabet (%d)",
                   byte_base, TOK_NSPECIAL + nforced + nalphabet);
    tok_tokenizer *t = xcalloc(1, sizeof *t);
    t->nvocab = nvocab; t->nforced = nforced; t->nalpha = nalphabet;
    t->byte_base = byte_base; t->max_token_chars = max_token_chars; t->nmerges = nmerges;
    int rc = build_pool(t, tokens, toklens, err);
    if (!rc) rc = build_text_index(t, err);
    if (!rc) rc = build_char_index(t, err);
    if (!rc) rc = check_byte_tokens(t, err);
    if (!rc) rc = build_merges(t, merges, err);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---- tokenizer.bin ---------------------------------------------------------- */
static void put32(flow_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                          (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    buf_add(b, x, 4);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void tok_serialize(const tok_tokenizer *t, flow_buf *out)
{
    size_t start = out->len;
    buf_add(out, TOK_MAGIC, 8);
    put32(out, TOK_VERSION);
    put32(out, t->byte_base >= 0 ? 1u : 0u);
    put32(out, (uint32_t)t->nvocab);
    put32(out, (uint32_t)t->nforced);
    put32(out, (uint32_t)t->nalpha);
    put32(out, t->byte_base >= 0 ? (uint32_t)t->byte_base : 0xFFFFFFFFu);
    put32(out, (uint32_t)t->nmerges);
    put32(out, (uint32_t)t->max_token_chars);
    put32(out, TOK_MAX_RUN);
    for (int i = 0; i < t->nvocab; i++) {
        put32(out, t->len[i]);
        buf_add(out, t->pool + t->off[i], t->len[i]);
    }
    for (int i = 0; i < 3 * t->nmerges; i++)
        put32(out, t->merges[i]);
    flow_hash h = flow_hash_bytes(out->data + start, out->len - start);
    buf_add(out, h.b, 16);
}

int tok_load(tok_tokenizer **out, const void *data, size_t len, flow_err *err)
{
    const unsigned char *p = data;
    *out = NULL;
    if (len < 8 + 4 * 9 + 16 || memcmp(p, TOK_MAGIC, 8))
        return flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: not a flow tokenizer "
                         "(bad magic or %zu bytes too short)", len);
    uint32_t ver = get32(p + 8);
    if (ver != TOK_VERSION)
        return flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: version %u is too %s "
                         "(this flow reads version %u); rebuild the bpe node",
                         ver, ver < TOK_VERSION ? "old" : "new", TOK_VERSION);
    flow_hash h = flow_hash_bytes(p, len - 16);
    if (memcmp(h.b, p + len - 16, 16))
        return flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: checksum mismatch "
                         "(truncated or damaged file of %zu bytes)", len);
    uint32_t flags = get32(p + 12), nvocab = get32(p + 16), nforced = get32(p + 20),
             nalpha = get32(p + 24), bbase = get32(p + 28), nmerges = get32(p + 32),
             maxchars = get32(p + 36), maxrun = get32(p + 40);
    if (maxrun != TOK_MAX_RUN)
        return flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: pre-token run limit %u "
                         "differs from this flow's %d", maxrun, TOK_MAX_RUN);
    if (((flags & 1) != 0) != (bbase != 0xFFFFFFFFu) || nvocab > (1u << 30) || nmerges > nvocab)
        return flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: inconsistent header");
    size_t pos = 44, end = len - 16;
    const char **toks = xmalloc((nvocab ? nvocab : 1) * sizeof *toks);
    size_t *lens = xmalloc((nvocab ? nvocab : 1) * sizeof *lens);
    int rc = 0;
    for (uint32_t i = 0; i < nvocab && !rc; i++) {
        if (end - pos < 4 || (lens[i] = get32(p + pos)) > end - pos - 4)
            rc = flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: token %u runs past the end", i);
        else {
            toks[i] = (const char *)p + pos + 4;
            pos += 4 + lens[i];
        }
    }
    uint32_t *merges = NULL;
    if (!rc && (end - pos) / 12 != nmerges)
        rc = flow_fail(err, FLOW_E_CORRUPT, "tokenizer.bin: merge section holds %zu bytes, "
                       "expected %u merges", end - pos, nmerges);
    if (!rc) {
        merges = xmalloc((nmerges ? nmerges : 1) * 12);
        for (uint32_t i = 0; i < 3 * nmerges; i++)
            merges[i] = get32(p + pos + 4 * i);
        rc = tok_build(out, (int)nvocab, toks, lens, (int)nforced, (int)nalpha,
                       bbase == 0xFFFFFFFFu ? -1 : (int)bbase, (int)maxchars,
                       (int)nmerges, merges, err);
    }
    free(toks);
    free(lens);
    free(merges);
    return rc;
}

/* ---- encoding ------------------------------------------------------------------ */
void tok_out_init(tok_out *o) { memset(o, 0, sizeof *o); }

void tok_out_release(tok_out *o)
{
    free(o->ids);
    free(o->starts);
    free(o->work);
    memset(o, 0, sizeof *o);
}

static void out_reserve(tok_out *o, size_t extra)
{
    if (o->n + extra <= o->cap)
        return;
    size_t c = o->cap ? o->cap : 256;
    while (c < o->n + extra)
        c *= 2;
    o->ids = xrealloc(o->ids, c * sizeof *o->ids);
    if (o->want_starts)
        o->starts = xrealloc(o->starts, c * sizeof *o->starts);
    o->cap = c;
}

/* Scratch of one piece: k symbols (at most 4 per character byte... one
 * per byte with byte fallback). */
typedef struct sym { uint32_t id, start; int32_t prev, next; } sym;
typedef struct hent { uint32_t rank; int32_t pos; } hent;

typedef struct enc_state {
    const tok_tokenizer *t;
    tok_out *o;
    const char *base;       /* text start, for offsets */
} enc_state;

static void *work_get(tok_out *o, size_t bytes)
{
    if (o->work_cap < bytes) {
        free(o->work);
        o->work_cap = bytes * 2;
        o->work = xmalloc(o->work_cap);
    }
    return o->work;
}

static inline int hless(hent a, hent b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void hpush(hent *h, size_t *n, hent e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(e, h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static hent hpop(hent *h, size_t *n)
{
    hent top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && hless(h[c + 1], h[c]))
            c++;
        if (!hless(h[c], last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

/* Applies merges to s[0..k): lowest rank first, leftmost on ties. */
static size_t merge_symbols(const tok_tokenizer *t, sym *s, size_t k, hent *heap)
{
    if (k < 2)
        return k;
    if (k <= 8) {
        /* small pieces: direct scan is faster than a heap, same order */
        for (;;) {
            int64_t best = -1;
            size_t bi = 0;
            uint32_t bres = 0;
            for (size_t i = 0; i + 1 < k; i++) {
                uint32_t res;
                int64_t r = pair_lookup(t, s[i].id, s[i + 1].id, &res);
                if (r >= 0 && (best < 0 || r < best)) {
                    best = r;
                    bi = i;
                    bres = res;
                }
            }
            if (best < 0)
                return k;
            s[bi].id = bres;
            memmove(s + bi + 1, s + bi + 2, (k - bi - 2) * sizeof *s);
            k--;
        }
    }
    size_t hn = 0;
    for (size_t i = 0; i < k; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < k; i++) {
        uint32_t res;
        int64_t r = pair_lookup(t, s[i].id, s[i + 1].id, &res);
        if (r >= 0)
            hpush(heap, &hn, (hent){(uint32_t)r, (int32_t)i});
    }
    while (hn) {
        hent e = hpop(heap, &hn);
        sym *a = &s[e.pos];
        if (a->id == UINT32_MAX || a->next < 0)
            continue;
        uint32_t res;
        int64_t r = pair_lookup(t, a->id, s[a->next].id, &res);
        if (r != (int64_t)e.rank)
            continue;
        sym *b = &s[a->next];
        a->id = res;
        b->id = UINT32_MAX;
        a->next = b->next;
        if (b->next >= 0)
            s[b->next].prev = e.pos;
        if (a->prev >= 0) {
            r = pair_lookup(t, s[a->prev].id, a->id, &res);
            if (r >= 0)
                hpush(heap, &hn, (hent){(uint32_t)r, a->prev});
        }
        if (a->next >= 0) {
            r = pair_lookup(t, a->id, s[a->next].id, &res);
            if (r >= 0)
                hpush(heap, &hn, (hent){(uint32_t)r, e.pos});
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = s[i].next)
        s[m++] = s[i];  /* i >= m always, and s[i].next is read before overwrite */
    return m;
}

static int encode_piece(void *arg, const char *p, size_t n, int forced)
{
    enc_state *st = arg;
    const tok_tokenizer *t = st->t;
    tok_out *o = st->o;
    uint32_t start = (uint32_t)(p - st->base);
    if (forced >= 0) {
        out_reserve(o, 1);
        if (o->want_starts)
            o->starts[o->n] = start;
        o->ids[o->n++] = (uint32_t)forced;
        for (size_t i = 0; i < n; i++)
            o->chars += ((unsigned char)p[i] & 0xC0) != 0x80;
        return 0;
    }
    /* at most one symbol per byte; the heap holds at most the k-1 initial
     * pairs plus two per merge (k-1 merges): < 3k entries */
    size_t need = n * sizeof(sym) + (3 * n + 3) * sizeof(hent);
    sym *s = work_get(o, need);
    hent *heap = (hent *)(s + n);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = tok_next_char(p + i, n - i, &cp);
        int32_t id = cp == 0xFFFFFFFFu ? -1 : char_lookup(t, cp);
        o->chars++;
        if (id >= 0)
            s[k++] = (sym){(uint32_t)id, start + (uint32_t)i, 0, 0};
        else {
            o->unk_chars++;
            if (t->byte_base >= 0)
                for (int b = 0; b < len; b++)
                    s[k++] = (sym){(uint32_t)t->byte_base + (unsigned char)p[i + b],
                                   start + (uint32_t)i, 0, 0};
            else
                s[k++] = (sym){TOK_UNK, start + (uint32_t)i, 0, 0};
        }
        i += (size_t)len;
    }
    k = merge_symbols(t, s, k, heap);
    out_reserve(o, k);
    for (size_t i = 0; i < k; i++) {
        if (o->want_starts)
            o->starts[o->n] = s[i].start;
        o->ids[o->n++] = s[i].id;
    }
    return 0;
}

void tok_encode(const tok_tokenizer *t, const char *s, size_t n, tok_out *o)
{
    enc_state st = {t, o, s};
    if (o->want_starts && !o->starts && o->cap)
        o->starts = xmalloc(o->cap * sizeof *o->starts);
    tok_segment(t->m, s, n, encode_piece, &st);
}

void tok_decode(const tok_tokenizer *t, const uint32_t *ids, size_t n,
                int skip_special, flow_buf *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (id >= (uint32_t)t->nvocab)
            FLOW_BUG("tok_decode: id %u outside vocabulary of %d", id, t->nvocab);
        if (id < TOK_NSPECIAL && skip_special)
            continue;
        if (t->byte_base >= 0 && id >= (uint32_t)t->byte_base && id < (uint32_t)t->byte_base + 256)
            buf_addc(out, (char)(id - (uint32_t)t->byte_base));
        else
            buf_add(out, t->pool + t->off[id], t->len[id]);
    }
}
