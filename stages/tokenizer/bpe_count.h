/* bpe_count.h — the streaming word counter's layout, shared by its
 * counting side (bpe_count.c) and the trainer that consumes it
 * (bpe_train.c).  Not part of the tokenizer library's API (tokenizer.h).
 *
 * Memory per distinct word (pre-token) of L bytes: a 16-byte slot in the
 * table (at a load of 0.35 to 0.7) and a record of 12 + L bytes in the
 * arena; nothing per occurrence, nothing per byte of input beyond the
 * block being counted. */
#ifndef FLOW_BPE_COUNT_H
#define FLOW_BPE_COUNT_H

#include "stages/tokenizer/tokenizer.h"

#include <string.h>

/* An arena record: u32 len, u64 count (unaligned: read with memcpy), then
 * len key bytes.  Records are packed in blocks of BPE_ARENA_BLOCK bytes in
 * insertion order; used[i] says how much of block i they fill. */
#define BPE_ARENA_BLOCK (1u << 20)
#define BPE_REC_HEAD 12

/* A slot of the counter's table: the record (NULL = empty), the key's
 * length and high hash bits (so that most probes never touch the arena). */
typedef struct bpe_slot {
    char *rec;
    uint32_t len, h;
} bpe_slot;

struct tok_counter {
    tok_matcher *m;
    int nforced, threads;
    bpe_slot *slot; size_t cap, n;      /* the table: n distinct words */
    char **blocks; size_t *used; size_t nblocks;
    size_t arena_bytes;
    uint64_t key_bytes, key_chars;      /* of all distinct words */
    uint64_t *forced_counts;            /* per matcher value */
    uint64_t npieces, bytes;            /* pre-tokens and bytes counted */
    double t0;
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

/* Frees the table (the records stay in the arena for a walk). */
void bpe_counter_drop_table(tok_counter *k);
/* Frees arena block i (a walk that consumes the arena). */
void bpe_counter_free_block(tok_counter *k, size_t i);
/* Frees every remaining arena block. */
void bpe_counter_free_arena(tok_counter *k);

#endif
