/* tokenizer.h — the BPE tokenizer library: forced-term matcher,
 * pre-tokenizer, trainer, encoder/decoder, and the tokenizer.bin /
 * tokenizer.json formats.  Used by the stages bpe, encode and coverage and
 * by the model stages (flow classify/eval/export encode raw text with it
 * and bundle tokenizer.bin in their artifacts).
 *
 * Segmentation (identical in training, encoding and the HF export):
 *  1. the specials "[PAD]" "[UNK]" "[CLS]" "[SEP]" "[MASK]" and the forced
 *     terms are matched leftmost-longest first; each occurrence is exactly
 *     one id and no merge ever crosses it;
 *  2. the text between matches is pre-tokenized into runs of one character
 *     class (tok_char_class: whitespace, Han, other letters+marks, numbers),
 *     each run cut every TOK_MAX_RUN characters; every other character
 *     (punctuation, symbols, invalid UTF-8 bytes) is a pre-token by itself.
 *     Whitespace is kept as tokens, so decode(encode(x)) == x whenever x has
 *     no character outside the vocabulary (and always with byte_fallback).
 *  3. BPE merges are applied inside each pre-token by rank (lowest rank
 *     first, leftmost first on ties: HuggingFace's order), O(n log n).
 *
 * Vocabulary layout: ids 0-4 specials (stages.h TOK_*), then the forced
 * terms (5 .. 5+nforced-1) in file order, then the alphabet (characters by
 * falling training frequency), then with byte_fallback the 256 tokens
 * "<0x00>".."<0xFF>", then one token per merge in rank order.
 *
 * Thread safety: a loaded tok_tokenizer is immutable; any number of threads
 * may encode with it concurrently, each with its own tok_out.
 */
#ifndef FLOW_TOKENIZER_H
#define FLOW_TOKENIZER_H

#include "stages/stages.h"

/* ---- character classes (tok_unicode.c, generated) ------------------- */
enum { TOK_C_OTHER = 0, TOK_C_WS = 1, TOK_C_HAN = 2, TOK_C_LETTER = 3, TOK_C_NUM = 4 };
#define TOK_MAX_RUN 256     /* characters per pre-token run at most */
int tok_char_class(uint32_t cp);

/* ---- forced-term matcher (a byte trie) ------------------------------- */
typedef struct tok_matcher tok_matcher;
tok_matcher *tok_matcher_new(void);
void tok_matcher_free(tok_matcher *m);
/* Adds term s[0..n) with value v >= 0.  Returns 0, or the existing value
 * + 1 if the term was already present (it keeps its first value). */
int tok_matcher_add(tok_matcher *m, const char *s, size_t n, int v);
/* Longest term that is a prefix of s[0..n): returns its value and sets
 * *len, or returns -1 when none is. */
int tok_matcher_longest(const tok_matcher *m, const char *s, size_t n, size_t *len);
/* Every term that is a prefix of s[0..n), shortest first: fills up to cap
 * (value, length) pairs, returns how many were found (may exceed cap). */
int tok_matcher_prefixes(const tok_matcher *m, const char *s, size_t n,
                         int *vals, size_t *lens, int cap);
int tok_matcher_count(const tok_matcher *m);

/* ---- segmentation ---------------------------------------------------- */
/* Called once per piece in text order: forced >= 0 is the matcher value of
 * a forced match, -1 a pre-token.  A non-zero return stops the walk and is
 * returned by tok_segment. */
typedef int (*tok_piece_fn)(void *arg, const char *s, size_t n, int forced);
/* Walks s[0..n): matches of m (may be NULL) and pre-tokens between them. */
int tok_segment(const tok_matcher *m, const char *s, size_t n, tok_piece_fn fn, void *arg);
/* One character at s (n > 0): returns its length and sets *cp, or for an
 * invalid byte returns 1 with *cp = 0xFFFFFFFF (class other). */
static inline int tok_next_char(const char *s, size_t n, uint32_t *cp)
{
    unsigned char c = (unsigned char)s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int k = utf8_decode((const unsigned char *)s, n, cp);
    if (k < 0) { *cp = 0xFFFFFFFFu; return 1; }
    return k;
}

/* ---- forced-term lists ------------------------------------------------ */
/* A term list file: UTF-8, one term per line; a leading BOM is stripped,
 * lines are trimmed of ASCII whitespace, blank lines and lines starting
 * with '#' are skipped.  Duplicates (within and across files) are dropped
 * and counted.  Terms longer than max_chars characters cannot be one
 * token of a tokenizer capped at that length: they are skipped and counted
 * (too_long, first few names logged by the bpe stage), not an error, so an
 * automatically mined list with one long entry does not fail the build. */
typedef struct tok_terms {
    char **s; size_t *len; int n, cap;
    int duplicates, too_long;
    char too_long_example[256];
    tok_matcher *seen;
} tok_terms;
void tok_terms_init(tok_terms *t);
void tok_terms_release(tok_terms *t);
/* Parses one file's bytes (name for messages).  FLOW_E_INPUT on invalid
 * UTF-8 (message names file and line). */
int tok_terms_parse(tok_terms *t, const char *data, size_t len, const char *name,
                    int max_chars, flow_err *err);

/* ---- the tokenizer ----------------------------------------------------- */
typedef struct tok_tokenizer tok_tokenizer;

/* Loads tokenizer.bin bytes (validated: magic "FLOWTOK\0", version,
 * checksum, ids, merges).  FLOW_E_CORRUPT with a message on any defect. */
int tok_load(tok_tokenizer **out, const void *data, size_t len, flow_err *err);
/* Reads part "tokenizer.bin" of input binding (port, idx) and loads it
 * (tok_input.c); fails the node with a message on error. */
int tok_load_input(flow_ctx *c, const char *port, int idx, tok_tokenizer **out);
void tok_free(tok_tokenizer *t);
/* Parses every term list bound to port (tok_input.c): part `terms` of an
 * input that has one (a terms node), else every part but dot-parts; list
 * names in messages are "PORT[i]/PART".  Fails the node on a bad list. */
int tok_read_terms(flow_ctx *c, const char *port, tok_terms *terms, int max_chars);
/* Writes t as the parts PREFIXvocab.txt, merges.txt, tokenizer.json and
 * tokenizer.bin of the node's output (tok_input.c): the bpe stage with
 * prefix "", model stages with "tokenizer/".  Fails the node on error. */
int tok_write_parts(flow_ctx *c, const tok_tokenizer *t, const char *prefix);
/* tokenizer.bin bytes (appended to out). */
void tok_serialize(const tok_tokenizer *t, flow_buf *out);

int tok_vocab_size(const tok_tokenizer *t);
int tok_nforced(const tok_tokenizer *t);      /* forced ids 5 .. 5+n-1 */
int tok_nalphabet(const tok_tokenizer *t);
int tok_nmerges(const tok_tokenizer *t);
int tok_byte_fallback(const tok_tokenizer *t);
int tok_byte_base(const tok_tokenizer *t);    /* id of "<0x00>", -1 if none */
int tok_max_token_chars(const tok_tokenizer *t);
/* Token text (bytes, not NUL-terminated; byte tokens are "<0xHH>"). */
const char *tok_token(const tok_tokenizer *t, int id, size_t *len);
/* Id of token text s[0..n), -1 if absent. */
int tok_token_id(const tok_tokenizer *t, const char *s, size_t n);
/* Merge i (rank order): ids a + b -> result. */
void tok_merge(const tok_tokenizer *t, int i, int *a, int *b, int *result);
/* Id of the single character cp in the alphabet (or a forced/special
 * single-character token), -1 if absent. */
int tok_char_id(const tok_tokenizer *t, uint32_t cp);

/* Encoder output and per-thread scratch; reuse across calls. */
typedef struct tok_out {
    uint32_t *ids; size_t n, cap;
    uint32_t *starts;       /* byte offset of each token in the text, when
                             * want_starts was set (parallel to ids) */
    int want_starts;
    uint64_t chars;         /* characters encoded (cumulative) */
    uint64_t unk_chars;     /* of which outside the vocabulary ([UNK] or bytes) */
    /* scratch of the merge step */
    void *work; size_t work_cap;
} tok_out;
void tok_out_init(tok_out *o);
void tok_out_release(tok_out *o);
/* Appends the ids of s[0..n) to o (no [CLS]/[SEP]).  Linear in n: pieces
 * are bounded and merging is O(k log k) per piece of k characters. */
void tok_encode(const tok_tokenizer *t, const char *s, size_t n, tok_out *o);
/* Appends the text of ids[0..n) to out: token texts concatenated, byte
 * tokens as their raw byte; skip_special drops ids 0-4. */
void tok_decode(const tok_tokenizer *t, const uint32_t *ids, size_t n,
                int skip_special, flow_buf *out);

/* ---- batch encoding (tok_batch.c) ------------------------------------------ */
/* The units of a corpus `text` part (one per line) encoded as sequences
 * [CLS] ids... [SEP] of at most max_len ids, in parallel over threads;
 * ids and offsets are exactly the payloads of the ENCODED parts (stages.h). */
typedef struct tok_batch {
    uint32_t *ids; uint64_t nids;
    uint64_t *offsets; uint64_t nseq;   /* nseq + 1 offsets */
    uint64_t content_tokens;    /* ids before truncation, without [CLS]/[SEP] */
    uint64_t truncated;         /* sequences cut to max_len */
    uint64_t unk_tokens;        /* [UNK] ids emitted (before truncation) */
    uint64_t chars, unk_chars;  /* characters; of which outside the vocabulary */
} tok_batch;
/* max_len >= 2.  A final line without '\n' is a unit too. */
void tok_encode_lines(const tok_tokenizer *t, const char *text, size_t len, int max_len,
                      int threads, tok_batch *out);
void tok_batch_release(tok_batch *b);
/* ENCODED part writers (formats in stages.h; little-endian).  Width of the
 * ids part: 2 when every id fits 16 bits (vocab <= 65536), else 4. */
int tok_ids_width(int vocab_size);
void tok_write_ids(flow_buf *out, const uint32_t *ids, uint64_t n, int width);
void tok_write_offsets(flow_buf *out, const uint64_t *offsets, uint64_t nseq);
/* labels ("FLOWLAB\0") and groups ("FLOWGRP\0"): n i32 values */
void tok_write_i32(flow_buf *out, const char magic[8], const int32_t *v, uint64_t n);
/* The pieces, for writers that stream: the 24-byte header (magic, u32
 * version 1, u32 aux = id width or 0, u64 count; the count at byte 16),
 * and the ids without a header. */
#define TOK_HEADER_BYTES 24
void tok_write_header(flow_buf *out, const char magic[8], uint32_t aux, uint64_t count);
void tok_write_ids_payload(flow_buf *out, const uint32_t *ids, uint64_t n, int width);

/* ---- training (bpe_train.c) -------------------------------------------------- */
typedef struct tok_train_opts {
    int vocab_size;             /* including specials, forced, alphabet */
    double character_coverage;  /* share of character occurrences kept */
    int byte_fallback;
    int max_token_chars;        /* longest merged token, in characters */
    int min_frequency;          /* a pair seen fewer times is never merged */
    int threads;
    /* called every 256 merges (may be NULL): merges done, merges wanted,
     * count of the pair just merged */
    void (*progress)(void *arg, int done, int total, int64_t count);
    void *progress_arg;
    /* bytes the word table and the merge state may hold, 0 = no limit:
     * training that would need more stops with FLOW_E_NOMEM saying how
     * much it needs (checked before each structure is built, and every
     * 256 merges); it never changes the result */
    size_t memory_limit;
    /* words (pre-tokens) counted fewer times than this are left out of
     * the merge state, after exact counting; their characters still count
     * for the alphabet.  0 or 1: every word (the default) */
    int64_t min_word_count;
    /* the counter's table and keys past this many bytes are written to a
     * sorted run in spill_dir (NULL: $TMPDIR or /tmp) and cleared, the
     * runs merged at the end: the same counts, so the same result; 0 =
     * never spill */
    size_t spill_bytes;
    const char *spill_dir;
} tok_train_opts;

typedef struct tok_train_stats {
    uint64_t chars_total;       /* character occurrences outside forced terms */
    uint64_t chars_kept;        /* of which in the alphabet */
    int distinct_chars, alphabet;
    uint32_t coverage_cut_count; /* frequency of the rarest kept character */
    uint64_t words, unique_words;
    uint64_t forced_occurrences;
    int merges;
    int stopped_min_frequency;  /* stopped early: best pair below min_frequency */
    /* per-character frequencies, sorted by falling count (codepoint on
     * ties): chars.tsv */
    uint32_t *char_cp; uint64_t *char_count;
    double seconds_count, seconds_merge;
    size_t memory_peak;         /* largest need checked against memory_limit:
                                 * the kept words and the merge state (the
                                 * counter's table spills: not in it) */
    uint64_t dropped_words;     /* distinct words below min_word_count */
    uint64_t dropped_occurrences; /* their occurrences */
    int spills;                 /* sorted runs the counter wrote */
    uint64_t spilled_bytes;     /* bytes written to runs (merges included) */
} tok_train_stats;
void tok_train_stats_release(tok_train_stats *s);

typedef struct tok_text { const char *s; size_t n; } tok_text;
/* Trains on texts (lines = units; '\n' separates, never part of a token).
 * terms: forced terms (already parsed).  FLOW_E_PARAM when vocab_size is
 * below specials + forced + alphabet (+256 bytes), naming all numbers;
 * FLOW_E_INPUT when there is no text. */
int tok_train(const tok_text *texts, int ntexts, const tok_terms *terms,
              const tok_train_opts *o, tok_tokenizer **out, tok_train_stats *st,
              flow_err *err);
/* The same in steps, for text streamed in blocks: a counter holds only the
 * word-count table (distinct pre-tokens with their counts, keys copied into
 * its own arena), so memory grows with distinct words, not with bytes.
 * add: whole lines (a block may end without '\n'); the text may be reused
 * once add returns; FLOW_E_IO when a spill cannot be written (a full
 * disk).  memory: the bytes the table and its keys hold.  train_counted: as tok_train from the counted words (the counter
 * is spent: free it after).  The result is the same as tok_train on the
 * concatenation, whatever the blocks. */
typedef struct tok_counter tok_counter;
int tok_counter_new(const tok_terms *terms, const tok_train_opts *o, tok_counter **out,
                    flow_err *err);
int tok_counter_add(tok_counter *k, const char *text, size_t n, flow_err *err);
size_t tok_counter_memory(const tok_counter *k);
/* About the memory training from this table will need (symbol records
 * and their pair occurrences, 8 bytes per character of the distinct
 * words and 8 per word), to stop early; the exact checks against
 * memory_limit come in tok_train_counted. */
size_t tok_counter_train_estimate(const tok_counter *k);
uint64_t tok_counter_distinct(const tok_counter *k);   /* in the table now */
int tok_train_counted(tok_counter *k, const tok_terms *terms, const tok_train_opts *o,
                      tok_tokenizer **out, tok_train_stats *st, flow_err *err);
void tok_counter_free(tok_counter *k);

/* Builds a tokenizer from its parts (used by the trainer and tok_load):
 * takes ownership of nothing; copies.  tokens[i] for every id; merges as
 * (a, b, result) triples. */
int tok_build(tok_tokenizer **out, int nvocab, const char *const *tokens,
              const size_t *toklens, int nforced, int nalphabet, int byte_base,
              int max_token_chars, int nmerges, const uint32_t *merges, flow_err *err);

/* ---- editing a trained tokenizer (tok_edit.c) ------------------------------ */
/* Trims to the ids flagged in want[0..vocab) plus what they need (specials,
 * byte tokens, the inputs of every kept merge: rules in tok_edit.c).  Fills
 * new_to_old[0..*nnew) (room for vocab ids) with each new id's old id.
 * Text whose old encoding uses only kept ids encodes to the mapped ids. */
int tok_trim(const tok_tokenizer *t, const uint8_t *want, tok_tokenizer **out,
             int *new_to_old, int *nnew, flow_err *err);
/* Adds terms as forced terms after the existing ones; terms that already
 * encode as one token are skipped (*skipped counts them).  new_to_old
 * (room for vocab + terms->n ids) gets each new id's old id, -1 for the
 * added terms.  FLOW_E_PARAM naming a term that is an unreachable merged
 * token. */
int tok_extend(const tok_tokenizer *t, const tok_terms *terms, tok_tokenizer **out,
               int *new_to_old, int *nnew, int *skipped, flow_err *err);

/* ---- exports (hf_export.c) ---------------------------------------------- */
/* tokenizer.json for HuggingFace tokenizers (BPE model, added tokens,
 * Split pre-tokenizer with the same classes, [CLS] $A [SEP] template,
 * ByteFallback+Fuse decoder). */
void tok_export_hf_json(const tok_tokenizer *t, flow_buf *out);
/* vocab.txt / merges.txt: one token (merge "a b") per line, bytes < 0x21,
 * 0x7F and '\\' written as \xHH so that spaces and tabs stay unambiguous. */
void tok_export_vocab_txt(const tok_tokenizer *t, flow_buf *out);
void tok_export_merges_txt(const tok_tokenizer *t, flow_buf *out);

#endif
