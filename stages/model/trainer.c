/* trainer.c — shared training plumbing for pretrain and finetune (see
 * trainer.h): RNG, epoch order with length bucketing, padded batches and
 * the resumable checkpoint format. */
#include "trainer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bert_device tr_device(flow_ctx *c)
{
    bert_device d = { flow_gpu_count(c) > 0 ? flow_gpu_id(c, 0) : -1, flow_threads(c), BERT_FP32 };
    return d;
}

bert_device tr_train_device(flow_ctx *c)
{
    bert_device d = tr_device(c);
    d.precision = bert_precision_parse(flow_param_str(c, "precision"));   /* a choice: always parses */
    return d;
}

uint64_t tr_rng_next(uint64_t *s) { return splitmix64_next(s); }

uint64_t tr_seed(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t s = a * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    uint64_t x = tr_rng_next(&s) ^ b;
    s = x;
    x = tr_rng_next(&s) ^ c;
    s = x;
    return tr_rng_next(&s);
}

static const uint32_t *sort_len;
static int cmp_by_len(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (sort_len[x] != sort_len[y]) return sort_len[x] < sort_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

void tr_epoch_build(tr_epoch *e, const uint32_t *usable, size_t n, const uint32_t *len,
                    int batch, uint64_t seed, int shuffle)
{
    memset(e, 0, sizeof *e);
    e->nseq = n;
    e->seq = xmalloc((n ? n : 1) * sizeof *e->seq);
    memcpy(e->seq, usable, n * sizeof *e->seq);
    uint64_t s = seed;
    if (shuffle)
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(tr_rng_next(&s) % i);
            uint32_t t = e->seq[i - 1]; e->seq[i - 1] = e->seq[j]; e->seq[j] = t;
        }
    size_t chunk = shuffle ? (size_t)batch * 64 : (n ? n : 1);
    sort_len = len;   /* single-threaded use only */
    for (size_t i = 0; i < n; i += chunk)
        qsort(e->seq + i, n - i < chunk ? n - i : chunk, sizeof *e->seq, cmp_by_len);
    e->nbatches = (n + (size_t)batch - 1) / (size_t)batch;
    e->start = xmalloc((e->nbatches ? e->nbatches : 1) * sizeof *e->start);
    e->count = xmalloc((e->nbatches ? e->nbatches : 1) * sizeof *e->count);
    /* batches never straddle chunks' sort order much; cut consecutively */
    for (size_t k = 0; k < e->nbatches; k++) {
        e->start[k] = k * (size_t)batch;
        e->count[k] = n - e->start[k] < (size_t)batch ? n - e->start[k] : (size_t)batch;
    }
    if (shuffle)
        for (size_t i = e->nbatches; i > 1; i--) {
            size_t j = (size_t)(tr_rng_next(&s) % i);
            size_t t = e->start[i - 1]; e->start[i - 1] = e->start[j]; e->start[j] = t;
            t = e->count[i - 1]; e->count[i - 1] = e->count[j]; e->count[j] = t;
        }
}

void tr_epoch_release(tr_epoch *e)
{
    free(e->seq);
    free(e->start);
    free(e->count);
    memset(e, 0, sizeof *e);
}

void tr_batch_init(tr_batch *b, int maxB, int maxT)
{
    memset(b, 0, sizeof *b);
    b->maxB = maxB;
    b->maxT = maxT;
    size_t n = (size_t)maxB * (size_t)maxT;
    b->ids = xcalloc(n, sizeof *b->ids);
    b->mask = xcalloc(n, sizeof *b->mask);
    b->mlm = xcalloc(n, sizeof *b->mlm);
    b->labels = xcalloc((size_t)maxB, sizeof *b->labels);
}

void tr_batch_release(tr_batch *b)
{
    free(b->ids);
    free(b->mask);
    free(b->mlm);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

int tr_batch_row(tr_batch *b, int r, const int32_t *ids, int len)
{
    int n = len < b->maxT ? len : b->maxT;
    int32_t *row = b->ids + (size_t)r * b->maxT;   /* rows laid out with stride maxT for now */
    memcpy(row, ids, (size_t)n * sizeof *row);
    if (n < len && n > 1) row[n - 1] = TOK_SEP;
    return n;
}

void tr_batch_finish(tr_batch *b, int B, const int *lens)
{
    int T = 1;
    for (int r = 0; r < B; r++) if (lens[r] > T) T = lens[r];
    /* compact rows from stride maxT to stride T (row 0 stays in place) */
    b->tokens = 0;
    for (int r = 0; r < B; r++) {
        int32_t *src = b->ids + (size_t)r * b->maxT, *dst = b->ids + (size_t)r * T;
        int32_t *msrc = b->mlm + (size_t)r * b->maxT, *mdst = b->mlm + (size_t)r * T;
        memmove(dst, src, (size_t)lens[r] * sizeof *dst);
        memmove(mdst, msrc, (size_t)lens[r] * sizeof *mdst);
        for (int t = lens[r]; t < T; t++) { dst[t] = TOK_PAD; mdst[t] = BERT_IGNORE_INDEX; }
        for (int t = 0; t < T; t++) b->mask[(size_t)r * T + t] = t < lens[r];
        b->tokens += lens[r];
    }
    b->B = B;
    b->T = T;
}

#define CKPT_MAGIC "FLOWCKPT"
#define CKPT_HEADER 64

int tr_ckpt_save(flow_ctx *c, int tag, long step, const bert_model *m, tr_moments_fn moments,
                 void *moments_arg, const void *extra, size_t extra_len)
{
    size_t np = m->nparams;
    size_t len = CKPT_HEADER + extra_len + 3 * np * sizeof(float);
    char *p = xmalloc(len);
    memset(p, 0, CKPT_HEADER);
    memcpy(p, CKPT_MAGIC, 8);
    uint32_t ver = 2, t = (uint32_t)tag;
    uint64_t st = (uint64_t)step, n = np, fc = m->fwd_counter, ds = m->dropout_seed, el = extra_len;
    int64_t at = m->adam_t;
    memcpy(p + 8, &ver, 4);
    memcpy(p + 12, &t, 4);
    memcpy(p + 16, &st, 8);
    memcpy(p + 24, &n, 8);
    memcpy(p + 32, &at, 8);
    memcpy(p + 40, &fc, 8);
    memcpy(p + 48, &ds, 8);
    memcpy(p + 56, &el, 8);
    char *q = p + CKPT_HEADER;
    if (extra_len) memcpy(q, extra, extra_len);
    q += extra_len;
    memcpy(q, m->params, np * sizeof(float)); q += np * sizeof(float);
    int rc = moments(moments_arg, q, q + np * sizeof(float));    /* (gathered under zero = 1) */
    if (rc) {
        free(p);
        return rc;
    }
    rc = flow_checkpoint_save(c, p, len);
    free(p);
    return rc;
}

int tr_ckpt_load(flow_ctx *c, int tag, long *step, bert_model *m, char **extra, size_t *extra_len)
{
    char *p;
    size_t len;
    int rc = flow_checkpoint_load(c, &p, &len);
    if (rc) return rc;
    uint32_t ver, t;
    uint64_t st, n, fc, ds, el;
    int64_t at;
    if (len < CKPT_HEADER || memcmp(p, CKPT_MAGIC, 8) != 0) goto bad;
    memcpy(&ver, p + 8, 4);
    memcpy(&t, p + 12, 4);
    memcpy(&st, p + 16, 8);
    memcpy(&n, p + 24, 8);
    memcpy(&at, p + 32, 8);
    memcpy(&fc, p + 40, 8);
    memcpy(&ds, p + 48, 8);
    memcpy(&el, p + 56, 8);
    if (ver != 2 || t != (uint32_t)tag || n != m->nparams || el > len ||
        len != CKPT_HEADER + el + 3 * n * sizeof(float))
        goto bad;
    const char *q = p + CKPT_HEADER;
    *extra = xmalloc(el + 1);
    memcpy(*extra, q, el);
    (*extra)[el] = 0;
    *extra_len = el;
    q += el;
    memcpy(m->params, q, n * sizeof(float)); q += n * sizeof(float);
    size_t lo = m->opt_lo, sh = m->opt_hi - m->opt_lo;     /* the optimizer shard's moments */
    memcpy(m->adam_m, q + lo * sizeof(float), sh * sizeof(float)); q += n * sizeof(float);
    memcpy(m->adam_v, q + lo * sizeof(float), sh * sizeof(float));
    m->adam_t = at;
    m->fwd_counter = fc;
    m->dropout_seed = ds;
    *step = (long)st;
    free(p);
    flow_err e = { 0 };
    if ((rc = bert_sync_to_device(m, &e))) return flow_ctx_fail(c, rc, "checkpoint: %s", e.msg);
    return 0;
bad:
    free(p);
    return flow_ctx_fail(c, FLOW_E_CORRUPT, "the checkpoint of this node (%zu bytes) is not a valid FLOWCKPT v2 for this model; "
                         "remove it with a rebuild after `flow gc`", len);
}

char *tr_profile_text(const bert_model *m)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) return xstrdup("(profile unavailable)\n");
    bert_profile_print(m, f);
    fclose(f);
    return s;
}

void tr_test_kill(const char *stage, long step)
{
    if (flow_test_step_hook) flow_test_step_hook(stage, step);
}
