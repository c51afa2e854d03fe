/* tok_batch.c — encodes the units of a corpus text part (one per line) into
 * [CLS] ... [SEP] sequences in parallel: the text is cut at line ends into
 * chunks that threads take in turn; each chunk's ids land in its own buffer
 * and are concatenated in order, so the result does not depend on the
 * thread count.  Used by the encode stage and the benchmarks. */
#include "tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct bchunk {
    const char *s; size_t n;
    uint32_t *ids; uint64_t nids, capids;
    uint64_t *lens; uint64_t nseq, capseq;   /* sequence lengths */
    uint64_t content, truncated, unk, chars, unk_chars;
} bchunk;

typedef struct bjob {
    const tok_tokenizer *t;
    bchunk *chunks; int nchunks;
    atomic_int next;
    int max_len;
} bjob;

static void chunk_encode(bjob *job, bchunk *out, tok_out *o)
{
    /* work on a private copy: neighbouring chunks share cache lines */
    bchunk local = *out, *ch = &local;
    const char *s = ch->s, *end = s + ch->n;
    size_t keep_max = (size_t)job->max_len - 2;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        o->n = 0;
        tok_encode(job->t, s, (size_t)(e - s), o);
        size_t k = o->n < keep_max ? o->n : keep_max;
        ch->content += o->n;
        ch->truncated += o->n > keep_max;
        for (size_t i = 0; i < o->n; i++)
            ch->unk += o->ids[i] == TOK_UNK;
        if (ch->nids + k + 2 > ch->capids) {
            ch->capids = (ch->nids + k + 2) * 2;
            ch->ids = xrealloc(ch->ids, ch->capids * sizeof *ch->ids);
        }
        ch->ids[ch->nids++] = TOK_CLS;
        memcpy(ch->ids + ch->nids, o->ids, k * sizeof *o->ids);
        ch->nids += k;
        ch->ids[ch->nids++] = TOK_SEP;
        if (ch->nseq == ch->capseq) {
            ch->capseq = ch->capseq ? ch->capseq * 2 : 1024;
            ch->lens = xrealloc(ch->lens, ch->capseq * sizeof *ch->lens);
        }
        ch->lens[ch->nseq++] = k + 2;
        s = e + 1;
    }
    ch->chars = o->chars;
    ch->unk_chars = o->unk_chars;
    o->chars = o->unk_chars = 0;
    *out = local;
}

static void *bworker(void *arg)
{
    bjob *job = arg;
    tok_out o;
    tok_out_init(&o);
    for (;;) {
        int c = atomic_fetch_add(&job->next, 1);
        if (c >= job->nchunks)
            break;
        chunk_encode(job, &job->chunks[c], &o);
    }
    tok_out_release(&o);
    return NULL;
}

void tok_encode_lines(const tok_tokenizer *t, const char *text, size_t len, int max_len,
                      int threads, tok_batch *out)
{
    memset(out, 0, sizeof *out);
    if (max_len < 2)
        FLOW_BUG("tok_encode_lines: max_len %d < 2", max_len);
    if (threads < 1)
        threads = 1;
    size_t target = len / ((size_t)threads * 8) + 1;
    if (target < (1 << 16))
        target = 1 << 16;
    bjob job = {t, NULL, 0, 0, max_len};
    int cap = 0;
    for (size_t pos = 0; pos < len;) {
        size_t e = pos + target < len ? pos + target : len;
        if (e < len) {
            const char *nl = memchr(text + e, '\n', len - e);
            e = nl ? (size_t)(nl - text) + 1 : len;
        }
        if (job.nchunks == cap) {
            cap = cap ? cap * 2 : 64;
            job.chunks = xrealloc(job.chunks, cap * sizeof *job.chunks);
        }
        bchunk *ch = &job.chunks[job.nchunks++];
        memset(ch, 0, sizeof *ch);
        ch->s = text + pos;
        /* the unit terminator of the chunk's last line is not a unit */
        ch->n = e - pos;
        pos = e;
    }
    if (threads > job.nchunks)
        threads = job.nchunks ? job.nchunks : 1;
    pthread_t *tid = xmalloc(threads * sizeof *tid);
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid[i], NULL, bworker, &job) != 0)
            FLOW_BUG("tok_encode_lines: pthread_create failed");
    bworker(&job);
    for (int i = 1; i < threads; i++)
        pthread_join(tid[i], NULL);
    free(tid);
    for (int c = 0; c < job.nchunks; c++) {
        out->nids += job.chunks[c].nids;
        out->nseq += job.chunks[c].nseq;
    }
    out->ids = xmalloc((out->nids ? out->nids : 1) * sizeof *out->ids);
    out->offsets = xmalloc((out->nseq + 1) * sizeof *out->offsets);
    uint64_t ni = 0, ns = 0;
    out->offsets[0] = 0;
    for (int c = 0; c < job.nchunks; c++) {
        bchunk *ch = &job.chunks[c];
        memcpy(out->ids + ni, ch->ids, ch->nids * sizeof *ch->ids);
        for (uint64_t i = 0; i < ch->nseq; i++) {
            out->offsets[ns + 1] = out->offsets[ns] + ch->lens[i];
            ns++;
        }
        ni += ch->nids;
        out->content_tokens += ch->content;
        out->truncated += ch->truncated;
        out->unk_tokens += ch->unk;
        out->chars += ch->chars;
        out->unk_chars += ch->unk_chars;
        free(ch->ids);
        free(ch->lens);
    }
    free(job.chunks);
}

void tok_batch_release(tok_batch *b)
{
    free(b->ids);
    free(b->offsets);
    memset(b, 0, sizeof *b);
}

/* ---- ENCODED part writers --------------------------------------------------- */
void tok_write_header(flow_buf *out, const char magic[8], uint32_t aux, uint64_t count)
{
    uint32_t ver = 1;
    buf_add(out, magic, 8);
    buf_add(out, &ver, 4);
    buf_add(out, &aux, 4);
    buf_add(out, &count, 8);
}

int tok_ids_width(int vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

void tok_write_ids(flow_buf *out, const uint32_t *ids, uint64_t n, int width)
{
    tok_write_header(out, "FLOWIDS\0", (uint32_t)width, n);
    tok_write_ids_payload(out, ids, n, width);
}

void tok_write_ids_payload(flow_buf *out, const uint32_t *ids, uint64_t n, int width)
{
    if (width == 4) {
        buf_add(out, ids, n * 4);
        return;
    }
    uint16_t tmp[4096];
    for (uint64_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < 4096 && i < n; k++, i++) {
            if (ids[i] > 0xFFFF)
                FLOW_BUG("tok_write_ids: id %u does not fit width 2", ids[i]);
            tmp[k] = (uint16_t)ids[i];
        }
        buf_add(out, tmp, k * 2);
    }
}

void tok_write_offsets(flow_buf *out, const uint64_t *offsets, uint64_t nseq)
{
    tok_write_header(out, "FLOWOFF\0", 0, nseq + 1);
    buf_add(out, offsets, (nseq + 1) * 8);
}

void tok_write_i32(flow_buf *out, const char magic[8], const int32_t *v, uint64_t n)
{
    tok_write_header(out, magic, 0, n);
    buf_add(out, v, n * 4);
}
