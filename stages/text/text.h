/* text.h — the text-cleaning and segmentation library behind the `clean`
 * stage, shared with every stage that must clean text the same way later
 * (`flow classify` / `flow eval` apply a model's recorded clean.json to new
 * input with text_opts_from_json + text_clean_unit).
 *
 * Pipeline for one document (text_clean_document):
 *   1. bytes: NUL byte anywhere -> binary file (caller decides: skip/reject);
 *      invalid UTF-8 -> U+FFFD (invalid = replace) or an error naming the
 *      byte offset (invalid = reject); UTF-8 BOM dropped; CR LF / CR -> LF.
 *   2. structure (Markdown, per ../shared/data/legal/README.md):
 *      - YAML front matter (first line "---" up to the next "---"/"...")
 *        is dropped;
 *      - when the document has a line "<!-- INFO END -->", everything before
 *        it (the "# title", "# sub-title" and the promulgation/amendment date
 *        lines) is metadata, not body text, and is dropped;
 *      - every other <!-- ... --> comment is removed (may span lines; an
 *        unterminated one runs to the end of the document);
 *      - heading lines ("#".."######" + space) are blocks of their own, as
 *        are short unmarked "第<num>编|章|节|分编 title" paragraphs;
 *        table separator rows (|---|) and horizontal rules are dropped;
 *      - paragraphs are runs of non-blank lines (lines joined by a space,
 *        which the space rule below then removes between Han characters).
 *   3. segmentation into units:
 *      - ARTICLES when some paragraph starts with an article label
 *        `第<numeral>条` (optionally `之<numeral>`) followed by white space
 *        (numerals: 零〇一二两三四五六七八九十百千万 and digits).  An article
 *        is its label paragraph plus every following paragraph (clauses,
 *        `（一）` items, `一、` items, `⒈` sub-items) up to the next article
 *        label or heading.  Headings (编/章/节 titles) are dropped.
 *        Paragraphs outside any article (a preamble) are units of their own.
 *      - else ITEMS when at least two paragraphs start with `<numeral>、`
 *        (amendment laws: `一、将刑法第...`): the same rule with `一、` as
 *        the label (the label is kept: it is ordinary text).
 *      - else PARAGRAPHS: every paragraph and every heading text is a unit.
 *      With article_label = strip (default) the `第...条` label and the
 *      white space after it are removed from the unit: article numbers
 *      say nothing about the content and would leak law length.
 *   4. characters, per code point (classes counted in text_stats):
 *      control characters (C0 but tab, DEL, C1, zero-width U+200B..U+200F,
 *      U+2060, U+FEFF) are removed; full-width ASCII letters and digits
 *      (U+FF10..FF19, U+FF21..FF3A, U+FF41..FF5A) become ASCII; U+3000
 *      and the other Unicode spaces (U+00A0, U+2000..U+200A, U+202F,
 *      U+205F) become a space.  Then the preset decides what survives:
 *        strict  exactly U+4E00..U+9FA5, ASCII letters and digits, '(',
 *                ')' and U+00B7 '·' — the regex [^\u4e00-\u9fa5a-zA-Z0-9\(\)\·]
 *                applied after the normalisation above; spaces removed.
 *        legal   Han (U+3400..U+4DBF, U+4E00..U+9FFF, U+3007 〇), ASCII
 *                letters and digits, the ASCII punctuation ( ) . , % - / : ;
 *                and the Chinese punctuation TEXT_LEGAL_PUNCT below.  Runs
 *                of spaces collapse to one space, kept only between two
 *                ASCII letters/digits ("ISO 9001"), dropped elsewhere.
 *      Units are trimmed; units with fewer than min_chars code points are
 *      dropped (counted).
 * Everything is single pass over the bytes, no regex library.
 */
#ifndef FLOW_STAGES_TEXT_H
#define FLOW_STAGES_TEXT_H

#include "engine/engine.h"

/* Version of the cleaning rules, recorded in clean.json and used as the
 * clean stage's version: bump it whenever any rule above changes. */
#define TEXT_CLEAN_VERSION 2

/* The Chinese punctuation the legal preset keeps (UTF-8, no separators). */
#define TEXT_LEGAL_PUNCT "，。、；：？！“”‘’（）《》〈〉【】〔〕「」『』—…·％．～－×÷‰℃°"

enum { TEXT_PRESET_LEGAL = 0, TEXT_PRESET_STRICT = 1 };
enum { TEXT_INVALID_REPLACE = 0, TEXT_INVALID_REJECT = 1 };

typedef struct text_opts {
    int preset;             /* TEXT_PRESET_* */
    int invalid;            /* TEXT_INVALID_* */
    int strip_article_label;/* 1 = drop "第X条" from article units */
    int min_chars;          /* units shorter than this (code points) dropped */
} text_opts;

/* Defaults: legal, replace, strip, min_chars 5. */
void text_opts_default(text_opts *o);
/* clean.json (flat JSON object, see text_opts_to_json) -> opts.  Unknown
 * keys are ignored; a wrong "format"/"version" or an unknown preset is an
 * error (FLOW_E_CORRUPT) naming the value. */
int text_opts_from_json(const char *json, size_t len, text_opts *o, flow_err *err);
/* Writes {"format":"flow-clean","version":1,"preset":...,...} with the rules
 * spelled out (kept punctuation, normalisation, segmentation). */
void text_opts_to_json(const text_opts *o, flow_buf *out);

/* Character classes used for metrics. */
enum { TC_HAN, TC_LATIN, TC_DIGIT, TC_PUNCT, TC_SPACE, TC_CONTROL, TC_INVALID,
       TC_OTHER, TC_NCLASS };
extern const char *const text_class_names[TC_NCLASS];

typedef struct text_stats {
    uint64_t kept[TC_NCLASS];       /* code points written to kept units */
    uint64_t dropped[TC_NCLASS];    /* code points removed by the filter
                                     * (space: also the line and paragraph
                                     * joins, which are spaces until then) */
    uint64_t invalid_sequences;     /* invalid UTF-8 sequences replaced */
    uint64_t normalised;            /* full-width / space code points mapped */
    uint64_t structure_bytes;       /* front matter, header, comments, rules */
    uint64_t articles, items, paragraphs;   /* units by segmentation kind */
    uint64_t short_units, short_chars;      /* dropped by min_chars */
} text_stats;

void text_stats_add(text_stats *into, const text_stats *s);

/* Units of one document: unit i is text.data[off[i] .. off[i+1]-1) without
 * a newline; off has n+1 entries. */
typedef struct text_units {
    flow_buf text;
    size_t *off;
    int n, cap;
} text_units;

void text_units_init(text_units *u);
void text_units_release(text_units *u);
void text_units_clear(text_units *u);

/* Cleans and segments one document (bytes as read from the file) and
 * appends its units to out.  Returns 0, FLOW_E_INPUT for a binary file
 * ("binary file (NUL byte at offset N)") or, with invalid = reject, invalid
 * UTF-8 ("invalid UTF-8 at byte offset N"); the caller prefixes the file. */
int text_clean_document(const text_opts *o, const char *doc, size_t n,
                        text_units *out, text_stats *st, flow_err *err);

/* Cleans one piece of text as a single unit (new input at classify time):
 * lines joined, article label stripped when configured, characters
 * normalised and filtered as above; min_chars is not applied.  Appends to
 * out (no newline).  Errors as text_clean_document. */
int text_clean_unit(const text_opts *o, const char *s, size_t n, flow_buf *out,
                    text_stats *st, flow_err *err);

/* Classification of one code point (after normalisation), for tests and for
 * stages that count characters the same way. */
int text_char_class(uint32_t cp);

/* ---- split (split.c) ------------------------------------------------- */

/* Assigns ngroups groups to nsplits splits.  counts[g * ncols + l] = units
 * of group g with label column l.  Groups are taken in a seeded random
 * order; each goes to the split where it best fills the per-label deficit
 * (target = ratio * label total): the split maximising
 * sum_l |d_sl| - |d_sl - c_gl| (d = target - current), ties broken by the
 * largest relative deficit, then the lower split.  Afterwards every split
 * gets at least one group, and every label with >= nsplits groups at least
 * one group in every split, by moving the smallest suitable group from the
 * split richest in it.  32 such passes run from orders drawn from the
 * seed; the one closest to the targets (sum over labels and splits of
 * |units - target| / label size) wins.  assign[g] receives the split.
 * FLOW_E_PARAM when ngroups < nsplits. */
int split_assign(int ngroups, int ncols, const int *counts, int nsplits, const double *ratios,
                 uint64_t seed, int *assign, flow_err *err);

/* ---- terms (terms.c) ------------------------------------------------- */

/* A parsed user term list: UTF-8 BOM stripped, '#' comment and blank lines
 * skipped, surrounding white space (ASCII and U+3000) trimmed, duplicates
 * removed, terms longer than max_chars code points dropped.  Terms point
 * into buf. */
typedef struct term_list {
    char *buf;
    char **term; int n;
    int duplicates, too_long, comments, blank;
    char *first_too_long;       /* for the message; NULL if none */
} term_list;

/* Takes ownership of data (malloc'd, NUL at [len]). FLOW_E_INPUT for
 * invalid UTF-8 (message names the line). */
int term_list_parse(term_list *t, char *data, size_t len, int max_chars, flow_err *err);
void term_list_release(term_list *t);

/* One mined term. */
typedef struct mined_term {
    char text[8 * 4 + 1];       /* 2..8 Han characters, UTF-8 */
    int nchars;
    int64_t freq;
    double pmi;                 /* min over split points of log p(w)/(p(a)p(b)) */
    double left_entropy, right_entropy;
    double score;
} mined_term;

typedef struct mine_opts {
    int min_len, max_len;       /* 2..8 */
    int min_freq;               /* candidates occur at least this often */
    double min_pmi;             /* natural log */
    double min_entropy;         /* min(left, right) branching entropy, nats */
} mine_opts;

void mine_opts_default(mine_opts *o);
/* Mines Han n-grams from text (lines of cleaned units; non-Han characters
 * break runs).  Hashed n-gram counting by increasing length; an n-gram is
 * counted only when its (n-1)-prefix or -suffix is frequent, so memory
 * stays proportional to the frequent n-grams' occurrences.  Candidates
 * pass min_freq, min_pmi and min_entropy, are not numeral runs (第一百,
 * 二十), neither start nor end with a function character (的, 或, 应...),
 * and are ranked by score = length * ln(freq) * min(pmi, 6) *
 * min(left, right entropy): longer cohesive, freely used strings first
 * (measured on the legal laws: 5 of terms.txt in the top 200 against 3
 * without the length factor; the rest of terms.txt is too rare there).
 * *out is malloc'd, best first. */
int terms_mine(const mine_opts *o, const char *text, size_t len, mined_term **out, int *nout,
               flow_err *err);

#endif
