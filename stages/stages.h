/* stages.h — the one public header of the stages library.
 *
 * One file per stage kind (stages/<name>.c defines `const flow_stage
 * stage_<name>`), registered in stages/registry_all.c.  This header also
 * documents the artifact formats that stages exchange, with the shared
 * readers and writers for them, so a consumer never re-parses by hand.
 *
 * ---- corpus (produced by clean and split; read by terms, bpe, encode,
 *      baseline) ---------------------------------------------------------
 * A corpus is a set of parts under one prefix (none, or "train/", "dev/",
 * "test/" inside a split artifact):
 *   text    UTF-8, one unit per line ('\n'-terminated; units never contain
 *           '\n' or '\r').
 *   units   UTF-8 TSV, one line per unit, aligned with text:
 *           label \t group \t doc   (label/group may be empty strings;
 *           doc is the source-relative path of the document).
 *   labels  the label names of the whole labelled set, one per line, in a
 *           fixed order shared by every split (ids = line numbers), so the
 *           same class has the same id in train, dev and test.
 *   corpus.json  {"format":"flow-corpus","version":1}: the format marker,
 *           checked by every reader (corpus_check): a corpus with a units
 *           part but no corpus.json (written before version 1) or with a
 *           version this flow does not know is refused with a message.
 *           text, units and labels stay plain lines so `flow cat` output
 *           can be piped to cut/wc.
 *
 * ---- tokenizer (produced by bpe) --------------------------------------
 *   vocab.txt       one token per line, id = line number (specials first).
 *   merges.txt      one merge "a b" per line, rank order.
 *                   (both: bytes < 0x21, 0x7F and '\\' written as \xHH)
 *   tokenizer.json  HuggingFace tokenizers export (gives the same ids).
 *   tokenizer.bin   the compact form stages load (tokenizer.h: tok_load,
 *                   tok_load_input; format in tokenizer.c).
 *   chars.tsv       training characters "HEX \t char \t count", most
 *                   frequent first (coverage's character baseline).
 *
 * ---- encoded corpus (produced by encode; read by pretrain, finetune) ---
 * Under the same prefixes as its input corpus:
 *   ids      header "FLOWIDS\0" u32 version=1 u32 width(2|4) u64 count,
 *            then count little-endian ids.
 *   offsets  header "FLOWOFF\0" u32 version=1 u32 0 u64 n+1, then n+1 u64:
 *            sequence i is ids[offsets[i] .. offsets[i+1]).
 *   labels   header "FLOWLAB\0" u32 version=1 u32 0 u64 n, then n i32
 *            (-1 for unlabelled units).
 *   groups   same header "FLOWGRP\0", n i32 group ids (index into the
 *            sorted group names of that corpus; -1 for no group).
 *   label_names  the corpus `labels` list (ids = line numbers).
 *   group_names  the sorted group names, one per line.
 * Every sequence is [CLS] ... [SEP], at most max_len ids.
 */
#ifndef FLOW_STAGES_H
#define FLOW_STAGES_H

#include "engine/engine.h"

/* Registers every built-in stage kind. */
void stages_register_all(flow_registry *r);

/* ---- corpus reader (stages/text/corpus.c) ----------------------------------
 * Reads and validates the parts text / units / labels under one prefix.
 * Unit i is text + unit_off[i], unit_len[i] bytes, NUL-terminated in place
 * (the '\n' replaced).  label/group/doc point into the units buffer.
 * label_id[i] indexes labels[] (-1 when the unit's label is empty). */
typedef struct flow_corpus {
    int n;                      /* units */
    char *text; size_t text_len;
    char *units; size_t units_len;
    char *labels_buf;
    size_t *unit_off, *unit_len;
    const char **label, **group, **doc;
    int *label_id;
    char **labels; int nlabels; /* label names, ids = order of the labels part */
} flow_corpus;

/* Takes ownership of the three malloc'd buffers (labels may be NULL = no
 * labels part) and parses them; on error frees them, fills err naming the
 * part and line ("units line 12: 2 fields, expected label \t group \t doc")
 * and returns FLOW_E_CORRUPT. */
int corpus_parse(flow_corpus *c, char *text, size_t text_len, char *units, size_t units_len,
                 char *labels, size_t labels_len, flow_err *err);
/* One units line (NUL-terminated, without its '\n'), split in place into
 * label, group and doc, with the label's id in c->labels (-1 when empty):
 * what corpus_parse does per line, for readers that stream the units
 * (encode).  FLOW_E_CORRUPT naming line lineno. */
int corpus_unit_parse(const flow_corpus *c, char *line, size_t lineno, const char **label,
                      const char **group, const char **doc, int *label_id, flow_err *err);
/* Reads prefix+"text", prefix+"units", prefix+"labels" (prefix "" or
 * "train/"...) of input port[idx] and parses them; on failure fails the
 * node through flow_ctx_fail and returns its code. */
int corpus_read(flow_ctx *ctx, const char *port, int idx, const char *prefix, flow_corpus *c);
void corpus_release(flow_corpus *c);

/* Version of the corpus format (the corpus.json part). */
#define CORPUS_FORMAT_VERSION 1
/* Appends the corpus.json of this format version (pure). */
void corpus_format_json(flow_buf *b);
/* Validates a corpus.json: format "flow-corpus", 1 <= version <=
 * CORPUS_FORMAT_VERSION; errors name `what` and say to rebuild (too old)
 * or to update flow (too new).  Pure. */
int corpus_format_check(const char *json, size_t len, const char *what, flow_err *err);
/* Checks prefix+"corpus.json" of input port[idx]: fails the node when it
 * is invalid, or absent while prefix+"units" exists (an unversioned
 * corpus); returns 0 for a valid corpus or for plain text without units
 * (so text-only consumers such as bpe also accept any `text` part).
 * corpus_read calls it. */
int corpus_check(flow_ctx *ctx, const char *port, int idx, const char *prefix);

/* ---- an input part as lines, streamed (stages/text/line_stream.c) ------
 * block: the next whole lines, about want bytes (at least one line; a
 * final line without '\n' counts), *n = 0 at the end; line: the next
 * line, NUL-terminated in place without its '\n', *got = 0 at the end
 * (line_len: its length, which counts NUL bytes inside it; newline: 0 for
 * a final line without '\n').
 * Pointers stay valid until the next call.  Errors are the stage API's. */
typedef struct line_stream {
    flow_in_stream *in;
    char *buf;
    size_t len, pos, cap;
    int eof;
    size_t line_len;    /* of the last line from line_stream_line */
    int newline;        /* 1 if that line ended with '\n' */
} line_stream;
int line_stream_open(flow_ctx *c, const char *port, int idx, const char *part, line_stream *ls);
int line_stream_block(line_stream *ls, size_t want, char **block, size_t *n);
int line_stream_line(line_stream *ls, char **line, int *got);
void line_stream_close(line_stream *ls);
/* Writes prefix+"corpus.json" (producers: clean, split). */
int corpus_write_format(flow_ctx *ctx, const char *prefix);

/* The files a `source` node reads, exactly as its run and key see them:
 * part names (relative paths) and absolute paths, n entries, malloc'd
 * (free each string and both arrays).  For `flow why`, which names the
 * files that changed. */
int source_files(flow_ctx *c, char ***rel, char ***abs, int *n);

/* Path globs of `source` include/exclude (files/glob.c; rules there and in the
 * README).  compile: 0, or -1 with why filled (the caller names the
 * pattern).  match: 1 if the relative file path rel matches.
 * covers_folder: 1 if every file under folder rel matches (a pattern
 * ending in `/` + `**`), so the walk need not enter it. */
typedef struct path_glob {
    char *buf;          /* the normalised pattern, then its segments */
    char **seg; int nseg;
    int base_only;      /* no '/': matched against the base name */
} path_glob;
int glob_compile(path_glob *g, const char *pattern, char *why, size_t whylen);
int glob_match(const path_glob *g, const char *rel);
int glob_covers_folder(const path_glob *g, const char *rel);
void glob_release(path_glob *g);

/* Special token ids shared by tokenizer, encoder and model. */
enum { TOK_PAD = 0, TOK_UNK = 1, TOK_CLS = 2, TOK_SEP = 3, TOK_MASK = 4, TOK_NSPECIAL = 5 };

#endif
