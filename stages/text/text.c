/* text.c — cleaning and segmentation of Markdown legal documents (see
 * text.h for the rules).  Pure functions, thread-safe, no global state:
 * the clean stage runs text_clean_document on several documents at once,
 * and model stages call text_clean_unit on new input with the options read
 * back from a clean.json. */
#include "text.h"

#include <stdlib.h>
#include <string.h>

const char *const text_class_names[TC_NCLASS] = {
    "han", "latin", "digit", "punct", "space", "control", "invalid", "other",
};

void text_opts_default(text_opts *o)
{
    o->preset = TEXT_PRESET_LEGAL;
    o->invalid = TEXT_INVALID_REPLACE;
    o->strip_article_label = 1;
    o->min_chars = 5;
}

void text_stats_add(text_stats *into, const text_stats *s)
{
    for (int i = 0; i < TC_NCLASS; i++) {
        into->kept[i] += s->kept[i];
        into->dropped[i] += s->dropped[i];
    }
    into->invalid_sequences += s->invalid_sequences;
    into->normalised += s->normalised;
    into->structure_bytes += s->structure_bytes;
    into->articles += s->articles;
    into->items += s->items;
    into->paragraphs += s->paragraphs;
    into->short_units += s->short_units;
    into->short_chars += s->short_chars;
}

/* ---- units ------------------------------------------------------------ */

void text_units_init(text_units *u)
{
    buf_init(&u->text);
    u->off = NULL;
    u->n = u->cap = 0;
}

void text_units_release(text_units *u)
{
    buf_release(&u->text);
    free(u->off);
    text_units_init(u);
}

void text_units_clear(text_units *u)
{
    u->text.len = 0;
    u->n = 0;
}

/* Records that the unit started at `start` ends at the current text end. */
static void units_push(text_units *u, size_t start)
{
    if (u->n + 2 > u->cap) {
        u->cap = u->cap ? 2 * u->cap : 64;
        u->off = xrealloc(u->off, (size_t)u->cap * sizeof *u->off);
    }
    u->off[u->n] = start;
    u->off[u->n + 1] = u->text.len;
    u->n++;
}

/* ---- code points ---------------------------------------------------------- */

/* Unicode white space that becomes an ASCII space. */
static int is_space_cp(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == 0x3000 || cp == 0x00a0 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x202f || cp == 0x205f;
}

static int is_control_cp(uint32_t cp)
{
    return (cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp <= 0x9f) ||
           (cp >= 0x200b && cp <= 0x200f) || cp == 0x2060 || cp == 0xfeff;
}

/* Normalisation before classification: full-width ASCII letters/digits to
 * ASCII, spaces to ' '.  Sets *changed when it mapped something. */
static uint32_t normalise_cp(uint32_t cp, int *changed)
{
    if ((cp >= 0xff10 && cp <= 0xff19) || (cp >= 0xff21 && cp <= 0xff3a) ||
        (cp >= 0xff41 && cp <= 0xff5a)) {
        *changed = 1;
        return cp - 0xfee0;
    }
    if (cp != ' ' && is_space_cp(cp)) {
        *changed = 1;
        return ' ';
    }
    return cp;
}

static int is_han(uint32_t cp)
{
    return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || cp == 0x3007;
}

static int is_legal_punct(uint32_t cp)
{
    switch (cp) {
    case 0xff0c: case 0x3002: case 0x3001: case 0xff1b: case 0xff1a: case 0xff1f:
    case 0xff01: case 0x201c: case 0x201d: case 0x2018: case 0x2019: case 0xff08:
    case 0xff09: case 0x300a: case 0x300b: case 0x3008: case 0x3009: case 0x3010:
    case 0x3011: case 0x3014: case 0x3015: case 0x300c: case 0x300d: case 0x300e:
    case 0x300f: case 0x2014: case 0x2026: case 0x00b7: case 0xff05: case 0xff0e:
    case 0xff5e: case 0xff0d: case 0x00d7: case 0x00f7: case 0x2030: case 0x2103:
    case 0x00b0:
        return 1;
    }
    return 0;
}

static int is_ascii_alnum(uint32_t cp)
{
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
}

int text_char_class(uint32_t cp)
{
    if (is_han(cp)) return TC_HAN;
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return TC_LATIN;
    if (cp >= '0' && cp <= '9') return TC_DIGIT;
    if (is_space_cp(cp)) return TC_SPACE;
    if (is_control_cp(cp)) return TC_CONTROL;
    if (cp == 0xfffd) return TC_INVALID;
    if ((cp > 0x20 && cp < 0x7f) || is_legal_punct(cp) ||
        (cp >= 0x3000 && cp <= 0x303f) || (cp >= 0xff01 && cp <= 0xff5e) ||
        (cp >= 0x2010 && cp <= 0x205e))
        return TC_PUNCT;
    return TC_OTHER;
}

/* Does the preset keep this (normalised, non-space) code point? */
static int keeps(int preset, uint32_t cp)
{
    if (preset == TEXT_PRESET_STRICT)
        return (cp >= 0x4e00 && cp <= 0x9fa5) || is_ascii_alnum(cp) ||
               cp == '(' || cp == ')' || cp == 0x00b7;
    if (is_han(cp) || is_ascii_alnum(cp) || is_legal_punct(cp)) return 1;
    switch (cp) {
    case '(': case ')': case '.': case ',': case '%': case '-': case '/': case ':': case ';':
        return 1;
    }
    return 0;
}

/* Decodes the next code point of s[*i..n).  Invalid input yields U+FFFD and
 * consumes the bad lead byte plus any continuation bytes after it (one
 * replaced sequence). */
static uint32_t next_cp(const unsigned char *s, size_t n, size_t *i, int *invalid)
{
    uint32_t cp;
    if (s[*i] < 0x80) return s[(*i)++];
    int k = utf8_decode(s + *i, n - *i, &cp);
    if (k > 0) { *i += (size_t)k; *invalid = 0; return cp; }
    (*i)++;
    while (*i < n && (s[*i] & 0xc0) == 0x80) (*i)++;
    *invalid = 1;
    return 0xfffd;
}

/* The character filter: appends the kept characters of s[0..n) to out,
 * applying the space rule across calls through *pending (spaces seen since
 * the last kept character) and *last (last kept code point, 0 at start).
 * Counts into st.  Returns the number of code points kept. */
typedef struct filter_state {
    int pending;
    uint32_t last;
    size_t kept;
} filter_state;

static void filter_run(const text_opts *o, const unsigned char *s, size_t n, flow_buf *out,
                       filter_state *fs, text_stats *st)
{
    size_t i = 0;
    while (i < n) {
        int invalid = 0, changed = 0;
        uint32_t cp = next_cp(s, n, &i, &invalid);
        if (invalid) {
            st->invalid_sequences++;
            st->dropped[TC_INVALID]++;
            continue;
        }
        if (cp == '\n' || cp == '\r') cp = ' ';     /* joined lines */
        else if (is_control_cp(cp)) { st->dropped[TC_CONTROL]++; continue; }
        cp = normalise_cp(cp, &changed);
        if (changed) st->normalised++;
        if (cp == ' ') {
            if (o->preset == TEXT_PRESET_LEGAL && fs->last && is_ascii_alnum(fs->last)) fs->pending++;
            else st->dropped[TC_SPACE]++;
            continue;
        }
        int cls = text_char_class(cp);
        if (!keeps(o->preset, cp)) {
            st->dropped[cls]++;
            continue;
        }
        if (fs->pending) {
            if (is_ascii_alnum(cp)) {
                buf_addc(out, ' ');
                st->kept[TC_SPACE]++;
                fs->kept++;
                fs->pending--;
            }
            st->dropped[TC_SPACE] += (uint64_t)fs->pending;
            fs->pending = 0;
        }
        char enc[4];
        buf_add(out, enc, (size_t)utf8_encode(cp, enc));
        st->kept[cls]++;
        fs->kept++;
        fs->last = cp;
    }
}

static void filter_finish(filter_state *fs, text_stats *st)
{
    st->dropped[TC_SPACE] += (uint64_t)fs->pending;
    fs->pending = 0;
}

/* ---- labels ------------------------------------------------------------- */

/* Length of the white space code point at s (0 if none). */
static size_t ws_at(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    if (s[0] == ' ' || s[0] == '\t') return 1;
    if (s[0] < 0x80) return 0;
    uint32_t cp;
    int k = utf8_decode(s, n, &cp);
    return (k > 0 && is_space_cp(cp)) ? (size_t)k : 0;
}

static size_t skip_ws(const unsigned char *s, size_t n)
{
    size_t i = 0, k;
    while (i < n && (k = ws_at(s + i, n - i)) > 0) i += k;
    return i;
}

/* Chinese numeral (with_digits: also ASCII and full-width digits). */
static int is_numeral(uint32_t cp, int with_digits)
{
    static const uint32_t han[] = {0x96f6, 0x3007, 0x4e00, 0x4e8c, 0x4e24, 0x4e09, 0x56db,
                                   0x4e94, 0x516d, 0x4e03, 0x516b, 0x4e5d, 0x5341, 0x767e,
                                   0x5343, 0x4e07};  /* 零〇一二两三四五六七八九十百千万 */
    for (size_t i = 0; i < sizeof han / sizeof *han; i++)
        if (cp == han[i]) return 1;
    return with_digits && ((cp >= '0' && cp <= '9') || (cp >= 0xff10 && cp <= 0xff19));
}

/* Consumes a run of numerals at s; returns bytes (0 if none). */
static size_t numerals_at(const unsigned char *s, size_t n, int with_digits)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (k < 0 || !is_numeral(cp, with_digits)) break;
        i += (size_t)k;
    }
    return i;
}

static int cp_at(const unsigned char *s, size_t n, uint32_t want, size_t *len)
{
    uint32_t cp;
    int k = utf8_decode(s, n, &cp);
    if (k < 0 || cp != want) return 0;
    *len = (size_t)k;
    return 1;
}

/* Article label at the start of a paragraph: [ws] 第<num>条[之<num>] ws|end.
 * Returns the bytes it spans including the white space after it, 0 if
 * the paragraph does not start with one. */
static size_t article_label(const unsigned char *s, size_t n)
{
    size_t i = skip_ws(s, n), k, m;
    if (!cp_at(s + i, n - i, 0x7b2c, &k)) return 0;            /* 第 */
    i += k;
    if ((m = numerals_at(s + i, n - i, 1)) == 0) return 0;
    i += m;
    if (!cp_at(s + i, n - i, 0x6761, &k)) return 0;            /* 条 */
    i += k;
    if (i < n && cp_at(s + i, n - i, 0x4e4b, &k)) {             /* 之 */
        if ((m = numerals_at(s + i + k, n - i - k, 1)) == 0) return 0;
        i += k + m;
    }
    if (i == n) return i;
    size_t w = skip_ws(s + i, n - i);
    return w ? i + w : 0;
}

/* Unmarked structure heading: a short paragraph "第<num>编|章|节|分编 title"
 * written without '#' (a few documents do). */
static int chapter_heading(const unsigned char *s, size_t n)
{
    size_t i = skip_ws(s, n), k, m;
    if (n > 90 || !cp_at(s + i, n - i, 0x7b2c, &k)) return 0;   /* 第 */
    i += k;
    if ((m = numerals_at(s + i, n - i, 1)) == 0) return 0;
    i += m;
    if (cp_at(s + i, n - i, 0x5206, &k)) i += k;                /* 分 (分编) */
    if (!cp_at(s + i, n - i, 0x7f16, &k) && !cp_at(s + i, n - i, 0x7ae0, &k) &&
        !cp_at(s + i, n - i, 0x8282, &k))                          /* 编 章 节 */
        return 0;
    i += k;
    return i == n || skip_ws(s + i, n - i) > 0;
}

/* Item label: [ws] <chinese numerals>、 */
static int item_label(const unsigned char *s, size_t n)
{
    size_t i = skip_ws(s, n), m, k;
    if ((m = numerals_at(s + i, n - i, 0)) == 0 || m > 12) return 0;
    return cp_at(s + i + m, n - i - m, 0x3001, &k);
}

/* ---- structure -------------------------------------------------------- */

typedef struct block {
    size_t start, len;      /* in the joined-paragraph buffer */
    int heading;
} block;

typedef struct doc_scan {
    flow_buf body;          /* comment-free body, LF line ends */
    flow_buf para;          /* joined blocks */
    block *b; int nb, cap;
} doc_scan;

static void add_block(doc_scan *d, size_t start, int heading)
{
    if (d->para.len == start) return;   /* empty */
    if (d->nb == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->b = xrealloc(d->b, (size_t)d->cap * sizeof *d->b);
    }
    d->b[d->nb++] = (block){start, d->para.len - start, heading};
}

/* Is line s[0..n) exactly `want` apart from trailing white space? */
static int line_is(const char *s, size_t n, const char *want)
{
    size_t w = strlen(want);
    if (n < w || memcmp(s, want, w) != 0) return 0;
    for (size_t i = w; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static size_t line_end(const char *s, size_t n, size_t i)
{
    const char *nl = memchr(s + i, '\n', n - i);
    return nl ? (size_t)(nl - s) : n;
}

/* Offset where the body starts: after front matter and the INFO END header. */
static size_t body_start(const char *s, size_t n)
{
    size_t p = 0;
    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) p = 3;
    size_t e = line_end(s, n, p);
    if (line_is(s + p, e - p, "---")) {
        size_t i = e < n ? e + 1 : n;
        while (i < n) {
            size_t le = line_end(s, n, i);
            if (line_is(s + i, le - i, "---") || line_is(s + i, le - i, "...")) {
                p = le < n ? le + 1 : n;
                break;
            }
            i = le < n ? le + 1 : n;
        }
    }
    static const char marker[] = "<!-- INFO END -->";
    const char *m = memmem(s + p, n - p, marker, sizeof marker - 1);
    if (m) {
        size_t i = (size_t)(m - s) + sizeof marker - 1;
        size_t le = line_end(s, n, i);
        p = le < n ? le + 1 : n;
    }
    return p;
}

/* Copies s[p..n) into d->body without <!-- --> comments, CR LF -> LF. */
static void strip_comments(const char *s, size_t p, size_t n, doc_scan *d, text_stats *st)
{
    size_t i = p;
    while (i < n) {
        if (s[i] == '<' && n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
            const char *e = memmem(s + i + 4, n - i - 4, "-->", 3);
            size_t end = e ? (size_t)(e - s) + 3 : n;
            st->structure_bytes += end - i;
            i = end;
            continue;
        }
        if (s[i] == '\r') {
            buf_addc(&d->body, '\n');
            i += (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
            continue;
        }
        /* copy up to the next '<' or '\r' in one go */
        size_t j = i + 1;
        while (j < n && s[j] != '<' && s[j] != '\r') j++;
        buf_add(&d->body, s + i, j - i);
        i = j;
    }
}

/* Heading: up to 3 spaces, 1..6 '#', then space or end.  Returns the
 * offset of the heading text, or 0 if the line is not a heading. */
static size_t heading_text(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 3 && s[i] == ' ') i++;
    size_t h = 0;
    while (i < n && s[i] == '#') i++, h++;
    if (h == 0 || h > 6) return 0;
    if (i < n && s[i] != ' ' && s[i] != '\t') return 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    return i ? i : 1;
}

/* Table separator row (|---|:--|) or horizontal rule (---, ***, ___). */
static int is_rule(const char *s, size_t n)
{
    int pipes = 0, marks = 0;
    char rule = 0;
    int only_rule = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t') continue;
        if (c == '|') pipes++;
        else if (c == '-' || c == ':') marks++;
        else only_rule = 0;
        if (c == '-' || c == '*' || c == '_') {
            if (!rule) rule = c;
        }
    }
    if (only_rule && pipes && marks) return 1;
    /* horizontal rule: 3+ of one of - * _ and nothing else */
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' || s[i] == '\t') continue;
        if (s[i] != rule) return 0;
        cnt++;
    }
    return rule && cnt >= 3;
}

static int blank_line(const char *s, size_t n)
{
    return skip_ws((const unsigned char *)s, n) == n;
}

/* Splits the body into heading and paragraph blocks. */
static void scan_blocks(doc_scan *d, text_stats *st)
{
    const char *s = d->body.data;
    size_t n = d->body.len, i = 0;
    size_t pstart = d->para.len;
    int in_para = 0;
    while (i < n) {
        size_t le = line_end(s, n, i);
        const char *l = s + i;
        size_t ln = le - i;
        size_t next = le < n ? le + 1 : n;
        size_t h;
        if (blank_line(l, ln)) {
            if (in_para) add_block(d, pstart, 0), in_para = 0;
        } else if ((h = heading_text(l, ln)) > 0) {
            if (in_para) add_block(d, pstart, 0), in_para = 0;
            size_t e = ln;
            while (e > h && (l[e - 1] == '#' || l[e - 1] == ' ' || l[e - 1] == '\t')) e--;
            size_t start = d->para.len;
            buf_add(&d->para, l + h, e > h ? e - h : 0);
            add_block(d, start, 1);
        } else if (is_rule(l, ln)) {
            if (in_para) add_block(d, pstart, 0), in_para = 0;
            st->structure_bytes += ln;
        } else if (l[skip_ws((const unsigned char *)l, ln)] == '|') {
            /* a table row is a paragraph of its own */
            if (in_para) add_block(d, pstart, 0), in_para = 0;
            size_t start = d->para.len;
            buf_add(&d->para, l, ln);
            add_block(d, start, 0);
        } else {
            if (!in_para) { pstart = d->para.len; in_para = 1; }
            else buf_addc(&d->para, ' ');
            buf_add(&d->para, l, ln);
        }
        i = next;
    }
    if (in_para) add_block(d, pstart, 0);
}

/* ---- units ------------------------------------------------------------ */

/* Filters blocks b[from..to) (joined by spaces) into one unit; skip = bytes
 * of the first block to leave out (a stripped label). */
static void emit_unit(const text_opts *o, doc_scan *d, int from, int to, size_t skip,
                      text_units *out, text_stats *st, uint64_t *kind_count)
{
    size_t start = out->text.len;
    text_stats local;
    memset(&local, 0, sizeof local);
    filter_state fs = {0, 0, 0};
    for (int k = from; k < to; k++) {
        const unsigned char *p = (const unsigned char *)d->para.data + d->b[k].start;
        size_t len = d->b[k].len;
        if (k == from) p += skip, len -= skip;
        if (k > from) filter_run(o, (const unsigned char *)" ", 1, &out->text, &fs, &local);
        filter_run(o, p, len, &out->text, &fs, &local);
    }
    filter_finish(&fs, &local);
    /* trailing space cannot occur (spaces are emitted only before a kept char) */
    if (fs.kept < (size_t)(o->min_chars > 0 ? o->min_chars : 0) || fs.kept == 0) {
        out->text.len = start;
        if (out->text.data) out->text.data[start] = 0;
        /* the kept code points of a short unit count as short_chars, not
         * as kept and not as dropped by the filter */
        for (int c = 0; c < TC_NCLASS; c++) local.kept[c] = 0;
        local.short_chars += fs.kept;
        local.short_units++;
        text_stats_add(st, &local);
        return;
    }
    text_stats_add(st, &local);
    (*kind_count)++;
    units_push(out, start);
}

static int check_bytes(const text_opts *o, const char *s, size_t n, flow_err *err)
{
    const char *z = memchr(s, 0, n);
    if (z) return flow_fail(err, FLOW_E_INPUT, "binary file (NUL byte at offset %zu)", (size_t)(z - s));
    if (o->invalid == TEXT_INVALID_REJECT) {
        long bad = utf8_first_invalid((const unsigned char *)s, n);
        if (bad >= 0)
            return flow_fail(err, FLOW_E_INPUT,
                             "invalid UTF-8 at byte offset %ld (use invalid_utf8 = replace to "
                             "replace bad sequences with U+FFFD)", bad);
    }
    return 0;
}

int text_clean_document(const text_opts *o, const char *s, size_t n,
                        text_units *out, text_stats *st, flow_err *err)
{
    int rc = check_bytes(o, s, n, err);
    if (rc) return rc;
    doc_scan d;
    memset(&d, 0, sizeof d);
    buf_init(&d.body);
    buf_init(&d.para);
    size_t p = body_start(s, n);
    st->structure_bytes += p;
    strip_comments(s, p, n, &d, st);
    scan_blocks(&d, st);

    /* choose the segmentation */
    size_t *label = xcalloc((size_t)d.nb + 1, sizeof *label);
    int narticles = 0, nitems = 0;
    for (int k = 0; k < d.nb; k++) {
        if (d.b[k].heading) continue;
        const unsigned char *bp = (const unsigned char *)d.para.data + d.b[k].start;
        if (chapter_heading(bp, d.b[k].len)) d.b[k].heading = 1;
        else if ((label[k] = article_label(bp, d.b[k].len)) > 0) narticles++;
        else if (item_label(bp, d.b[k].len)) nitems++;
    }
    int mode = narticles > 0 ? 1 : nitems >= 2 ? 2 : 0;   /* 1 articles, 2 items, 0 paragraphs */
    for (int k = 0; k < d.nb;) {
        if (mode == 0) {
            emit_unit(o, &d, k, k + 1, 0, out, st, &st->paragraphs);
            k++;
            continue;
        }
        if (d.b[k].heading) { st->structure_bytes += d.b[k].len; k++; continue; }
        const unsigned char *bp = (const unsigned char *)d.para.data + d.b[k].start;
        int starts = mode == 1 ? label[k] > 0 : item_label(bp, d.b[k].len);
        if (!starts) {   /* paragraph outside any article */
            emit_unit(o, &d, k, k + 1, 0, out, st, &st->paragraphs);
            k++;
            continue;
        }
        int e = k + 1;
        while (e < d.nb && !d.b[e].heading) {
            const unsigned char *ep = (const unsigned char *)d.para.data + d.b[e].start;
            if (mode == 1 ? label[e] > 0 : item_label(ep, d.b[e].len)) break;
            e++;
        }
        size_t skip = (mode == 1 && o->strip_article_label) ? label[k] : 0;
        emit_unit(o, &d, k, e, skip, out, st, mode == 1 ? &st->articles : &st->items);
        k = e;
    }
    free(label);
    free(d.b);
    buf_release(&d.body);
    buf_release(&d.para);
    return 0;
}

int text_clean_unit(const text_opts *o, const char *s, size_t n, flow_buf *out,
                    text_stats *st, flow_err *err)
{
    int rc = check_bytes(o, s, n, err);
    if (rc) return rc;
    text_stats dummy;
    if (!st) memset(&dummy, 0, sizeof dummy), st = &dummy;
    size_t skip = 0;
    if (o->strip_article_label) skip = article_label((const unsigned char *)s, n);
    if (skip == 0 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) skip = 3;
    filter_state fs = {0, 0, 0};
    filter_run(o, (const unsigned char *)s + skip, n - skip, out, &fs, st);
    filter_finish(&fs, st);
    if (!out->data) buf_reserve(out, 0), out->data[0] = 0;
    return 0;
}

/* ---- clean.json ------------------------------------------------------- */

void text_opts_to_json(const text_opts *o, flow_buf *b)
{
    buf_printf(b, "{\"format\":\"flow-clean\",\"version\":%d,", TEXT_CLEAN_VERSION);
    buf_printf(b, "\"preset\":\"%s\",", o->preset == TEXT_PRESET_STRICT ? "strict" : "legal");
    buf_printf(b, "\"invalid_utf8\":\"%s\",", o->invalid == TEXT_INVALID_REJECT ? "reject" : "replace");
    buf_printf(b, "\"article_label\":\"%s\",", o->strip_article_label ? "strip" : "keep");
    buf_printf(b, "\"min_chars\":%d,", o->min_chars);
    buf_adds(b, "\"normalise\":\"full-width ASCII letters and digits (U+FF10-FF19, U+FF21-FF3A, "
                "U+FF41-FF5A) to ASCII; U+3000, U+00A0, U+2000-200A, U+202F, U+205F and tab to "
                "space; control characters (C0 but tab, DEL, C1, U+200B-200F, U+2060, U+FEFF) "
                "removed; invalid UTF-8 replaced by U+FFFD (then dropped) or rejected\",");
    if (o->preset == TEXT_PRESET_STRICT)
        buf_adds(b, "\"keep\":\"U+4E00-9FA5, ASCII letters and digits, ( ) U+00B7; no spaces\",");
    else
        buf_adds(b, "\"keep\":\"Han U+3400-4DBF U+4E00-9FFF U+3007, ASCII letters and digits, "
                    "ASCII ( ) . , % - / : ; and " TEXT_LEGAL_PUNCT "; one space kept only "
                    "between two ASCII letters/digits\",");
    buf_adds(b, "\"structure\":\"front matter, text before <!-- INFO END -->, comments, "
                "horizontal rules and table separator rows removed\",");
    buf_adds(b, "\"segmentation\":\"articles (paragraph starting 第<num>条[之<num>] + white "
                "space, with all following paragraphs up to the next article or heading; "
                "headings dropped), else items (>= 2 paragraphs starting <num>、), else "
                "paragraphs and headings\"}");
}

/* Reads the object above with the engine's JSON reader (engine/base/json.c):
 * keys and values of any length, escapes decoded; unknown members (later
 * versions' descriptions) are ignored. */
int text_opts_from_json(const char *json, size_t len, text_opts *o, flow_err *err)
{
    text_opts_default(o);
    json_value *root = NULL;
    int rc = json_parse(json, len, "clean.json", &root, err);
    if (rc) return rc;
    const char *v;
    if (json_typeof(root) != JSON_OBJ) {
        rc = flow_fail(err, FLOW_E_CORRUPT, "clean.json: expected a JSON object");
        goto out;
    }
    v = json_str(json_get(root, "format"), NULL);
    if (!v) {
        rc = flow_fail(err, FLOW_E_CORRUPT, "clean.json: no \"format\":\"flow-clean\"");
        goto out;
    }
    if (strcmp(v, "flow-clean") != 0) {
        rc = flow_fail(err, FLOW_E_CORRUPT, "clean.json: format \"%s\" is not flow-clean", v);
        goto out;
    }
    double version = json_num(json_get(root, "version"), -1);
    if (!(version >= 1 && version <= TEXT_CLEAN_VERSION) || version != (double)(long)version) {
        rc = flow_fail(err, FLOW_E_CORRUPT, "clean.json: version %g not supported (this flow reads 1..%d)%s",
                       version, TEXT_CLEAN_VERSION, version > TEXT_CLEAN_VERSION ? "; rebuild flow" : "");
        goto out;
    }
    if ((v = json_str(json_get(root, "preset"), NULL)) != NULL) {
        if (strcmp(v, "legal") == 0) o->preset = TEXT_PRESET_LEGAL;
        else if (strcmp(v, "strict") == 0) o->preset = TEXT_PRESET_STRICT;
        else {
            rc = flow_fail(err, FLOW_E_CORRUPT, "clean.json: unknown preset \"%s\"", v);
            goto out;
        }
    }
    if ((v = json_str(json_get(root, "invalid_utf8"), NULL)) != NULL)
        o->invalid = strcmp(v, "reject") == 0 ? TEXT_INVALID_REJECT : TEXT_INVALID_REPLACE;
    if ((v = json_str(json_get(root, "article_label"), NULL)) != NULL)
        o->strip_article_label = strcmp(v, "keep") != 0;
    const json_value *mc = json_get(root, "min_chars");
    if (mc) {
        double m = json_num(mc, -1);
        if (json_typeof(mc) != JSON_NUM || !(m >= 0 && m <= 1e9)) {
            rc = flow_fail(err, FLOW_E_CORRUPT, "clean.json: min_chars must be a number 0..1e9");
            goto out;
        }
        o->min_chars = (int)m;
    }
out:
    json_free(root);
    return rc;
}
