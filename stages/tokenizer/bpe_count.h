/* bpe_count.h — the streaming word counter's layout, shared by its
 * counting side (bpe_count.c), its sorted runs on disk (bpe_spill.c) and
 * the trainer that consumes it (bpe_train.c).  Not part of the tokenizer
 * library's API (tokenizer.h).
 *
 * Memory per distinct word (pre-token) of L bytes: a 16-byte slot in the
 * table (at a load of 0.35 to 0.7) and a record of 12 + L bytes in the
 * arena; nothing per occurrence, nothing per byte of input beyond the
 * block being counted.  Past opts spill_bytes the table is written out
 * as a run sorted by tag and key bytes and cleared; bpe_counter_finish
 * merges the runs (summing the counts of equal keys), so the counts are
 * exact whatever the spill points. */
#ifndef FLOW_BPE_COUNT_H
#define FLOW_BPE_COUNT_H

#include "stages/tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

/* An arena record: u32 len, u64 count (unaligned: read with memcpy), then
 * len key bytes.  Records are packed in blocks of BPE_ARENA_BLOCK bytes in
 * insertion order; used[i] says how much of block i they fill. */
#define BPE_ARENA_BLOCK (1u << 20)
#define BPE_REC_HEAD 12

/* A slot of the counter's table: the record (NULL = empty), the key's
 * length and tag (32 hash bits, which also give its home slot: so that
 * most probes, and growing, never touch the arena). */
typedef struct bpe_slot {
    char *rec;
    uint32_t len, h;
} bpe_slot;

/* The arena: records in blocks of BPE_ARENA_BLOCK bytes (a longer record
 * gets a block of its own); bytes = what the blocks hold allocated. */
typedef struct bpe_arena {
    char **blocks; size_t *used; size_t nblocks;
    size_t bytes;
} bpe_arena;

/* A sorted run on disk: an unlinked temporary file (nothing is left
 * behind on any path, a killed process included) of records (u32 len,
 * u32 tag, u64 count, key) sorted by tag, then key bytes (memcmp, then
 * length), keys distinct. */
typedef struct bpe_run {
    FILE *f;
    int level;              /* 0: spilled; l + 1: merged from runs of level l */
    uint64_t nrec, bytes;
} bpe_run;

/* Every distinct word in buckets of its count: words[c], chars[c] for
 * count c (1 .. BPE_HIST-2), counts >= BPE_HIST-1 in the last bucket; to
 * suggest a min_word_count that fits. */
#define BPE_HIST 65
typedef struct bpe_hist {
    uint64_t words[BPE_HIST], chars[BPE_HIST];
} bpe_hist;

/* A character of the words and its count (all words, also those below
 * min_word_count: the alphabet covers every character seen). */
typedef struct bpe_char { uint32_t cp; uint64_t count; } bpe_char;

struct tok_counter {
    tok_matcher *m;
    int nforced, threads;
    bpe_slot *slot; size_t cap, n;      /* the table: n distinct words */
    bpe_arena arena;
    struct bpe_wtable *wt;              /* per thread, kept between blocks */
    uint64_t key_bytes, key_chars;      /* of the words in the table */
    uint64_t *forced_counts;            /* per matcher value */
    uint64_t npieces, bytes;            /* pre-tokens and bytes counted */
    double t0;
    /* spilling (opts spill_bytes, spill_dir) */
    size_t spill_bytes;
    char *spill_dir;
    bpe_run *runs; int nruns, capruns;
    int nspills;
    uint64_t spilled_bytes;             /* written to runs, all levels */
    /* filled by bpe_counter_finish */
    int finished;
    uint64_t distinct;                  /* distinct words before min_word_count */
    uint64_t dropped_words, dropped_occurrences;
    bpe_hist hist;
    bpe_char *chars; size_t nchars;     /* unsorted */
    uint64_t chars_total;               /* occurrences, invalid bytes too */
};

static inline uint64_t bpe_rec_count(const char *rec)
{
    uint64_t c;
    memcpy(&c, rec + 4, 8);
    return c;
}

static inline uint32_t bpe_rec_len(const char *rec)
{
    uint32_t n;
    memcpy(&n, rec, 4);
    return n;
}

extern const char *const bpe_specials[TOK_NSPECIAL];   /* "[PAD]" .. "[MASK]" */

/* Appends a record for key s[0..len) with count to a; returns it. */
char *bpe_arena_record(bpe_arena *a, const char *s, uint32_t len, uint64_t count);
/* Frees block i / every block. */
void bpe_arena_free_block(bpe_arena *a, size_t i);
void bpe_arena_release(bpe_arena *a);

/* Sorts v[0..n) (distinct keys, h = their tags) by tag, then key bytes
 * (memcmp, then length): the runs' order.  In place, reading records only
 * to order equal tags. */
void bpe_sort_slots(bpe_slot *v, size_t n);
/* Writes the table as a sorted run (its slots are reordered: only the
 * records stay valid, and the caller clears table and arena after it,
 * also on failure); merges runs of one level as they reach the fan-in.
 * FLOW_E_IO naming the folder and the reason (a full disk) on failure.
 * (bpe_spill.c uses no function of bpe_count.c: no import circle.) */
int bpe_spill_table(tok_counter *k, flow_err *err);
/* Every word of the runs once, in the runs' order (tag, then key bytes),
 * with its summed count; a non-zero return of fn stops the walk and is
 * returned. */
typedef int (*bpe_word_fn)(void *arg, const char *s, uint32_t len, uint64_t count);
int bpe_merge_runs(tok_counter *k, bpe_word_fn fn, void *arg, flow_err *err);
/* Closes (and so deletes) every run. */
void bpe_runs_release(tok_counter *k);

/* After the last add: exact counts of every distinct word (merging the
 * runs when the table spilled), the character counts of all of them, and
 * in the arena only the words counted at least o->min_word_count times
 * (the table is dropped; k->n, key_bytes, key_chars are of the kept
 * words).  Checks the kept words and what training from them needs
 * (tok_counter_train_estimate) against o->memory_limit, recording the
 * larger in st->memory_peak; FLOW_E_NOMEM naming the need and a
 * min_word_count that would fit. */
int bpe_counter_finish(tok_counter *k, const tok_train_opts *o, tok_train_stats *st,
                       flow_err *err);
/* ", or min_word_count = M (it keeps W of the D distinct words: about X
 * MB)" for the smallest M above the current one whose share of need fits
 * limit, from k's histogram (empty before bpe_counter_finish). */
void bpe_suggest_min_count(const tok_counter *k, int64_t min_word_count, size_t need,
                           size_t limit, char *out, size_t cap);

/* Frees the table (the records stay in the arena for a walk). */
void bpe_counter_drop_table(tok_counter *k);
/* Frees arena block i (a walk that consumes the arena). */
void bpe_counter_free_block(tok_counter *k, size_t i);
/* Frees every remaining arena block. */
void bpe_counter_free_arena(tok_counter *k);

#endif
