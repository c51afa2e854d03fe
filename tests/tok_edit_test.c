/* tok_edit_test.c — trimming and extending a trained tokenizer
 * (stages/tokenizer/tok_edit.c): text that uses only kept tokens encodes
 * to the same ids modulo the map, dropped tokens' text still encodes and
 * round-trips through the byte fallback, the result survives tokenizer.bin,
 * and an added term is one token while old text encodes as before. */
#include "stages/tokenizer/tokenizer.h"
#include "test.h"

static const char *words[] = { "合同", "当事人", "违约", "责任", "赔偿", "法院", "判决",
                               "contract", "party", "court", "2024", "第一条", "规定" };
#define NWORDS (int)(sizeof words / sizeof words[0])

/* Line i: a few words chosen by a fixed formula, so some words (the later
 * ones) appear only in lines past the "domain" half. */
static void make_corpus(flow_buf *c, int nlines)
{
    uint64_t st = 7;
    for (int i = 0; i < nlines; i++) {
        int span = i < nlines / 2 ? 8 : NWORDS;
        for (int w = 0; w < 6; w++) {
            buf_adds(c, words[splitmix64_next(&st) % (uint64_t)span]);
            if (w % 3 == 2) buf_addc(c, ' ');
        }
        buf_addc(c, '\n');
    }
}

static tok_tokenizer *train(const flow_buf *c, int byte_fallback)
{
    tok_train_opts o = { .vocab_size = 120, .character_coverage = 1.0,
                         .byte_fallback = byte_fallback, .max_token_chars = 16,
                         .min_frequency = 2, .threads = 1 };
    if (byte_fallback) o.vocab_size += 256;
    tok_text txt = { c->data, c->len };
    tok_tokenizer *t = NULL;
    tok_train_stats st = { 0 };
    flow_err err = { 0 };
    CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, &st, &err), err);
    tok_train_stats_release(&st);
    return t;
}

/* Encodes every line of text[0..n) with a and b; counts lines where b's
 * ids differ from map(a's ids). */
static int count_mismatches(const tok_tokenizer *a, const tok_tokenizer *b, const int *old_to_new,
                            const char *text, size_t n)
{
    tok_out oa, ob;
    tok_out_init(&oa); tok_out_init(&ob);
    int bad = 0;
    for (const char *p = text; p < text + n;) {
        const char *nl = memchr(p, '\n', (size_t)(text + n - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(text + n - p);
        oa.n = ob.n = 0;
        tok_encode(a, p, len, &oa);
        tok_encode(b, p, len, &ob);
        int same = oa.n == ob.n;
        for (size_t i = 0; same && i < oa.n; i++) same = old_to_new[oa.ids[i]] == (int)ob.ids[i];
        bad += !same;
        p += len + 1;
    }
    tok_out_release(&oa); tok_out_release(&ob);
    return bad;
}

static void test_trim(int byte_fallback)
{
    flow_buf c; buf_init(&c);
    make_corpus(&c, 400);
    tok_tokenizer *t = train(&c, byte_fallback);
    if (!t) { buf_release(&c); return; }
    int n = tok_vocab_size(t);
    /* the domain: the first half of the lines */
    const char *half = c.data;
    size_t hlen = 0;
    for (int lines = 0; lines < 200; hlen++) lines += c.data[hlen] == '\n';
    uint8_t *want = calloc((size_t)n, 1);
    tok_out o; tok_out_init(&o);
    tok_encode(t, half, hlen, &o);
    for (size_t i = 0; i < o.n; i++) want[o.ids[i]] = 1;
    int *new_to_old = malloc((size_t)n * sizeof *new_to_old), nnew = 0;
    tok_tokenizer *tt = NULL;
    flow_err err = { 0 };
    CHECK_OK(tok_trim(t, want, &tt, new_to_old, &nnew, &err), err);
    if (!tt) goto done;
    CHECK_MSG(nnew < n, "trimming kept all %d tokens", n);
    CHECK(tok_vocab_size(tt) == nnew);
    int *old_to_new = malloc((size_t)n * sizeof *old_to_new);
    for (int i = 0; i < n; i++) old_to_new[i] = -1;
    for (int i = 0; i < nnew; i++) old_to_new[new_to_old[i]] = i;
    for (int i = 0; i < n; i++)
        if (want[i]) CHECK_MSG(old_to_new[i] >= 0, "wanted id %d dropped", i);
    CHECK_MSG(count_mismatches(t, tt, old_to_new, half, hlen) == 0, "domain text encodes differently");
    /* Tokenizer.bin round trip gives the same tokenizer. */
    flow_buf bin; buf_init(&bin);
    tok_serialize(tt, &bin);
    tok_tokenizer *back = NULL;
    CHECK_OK(tok_load(&back, bin.data, bin.len, &err), err);
    if (back) {
        int *id = malloc((size_t)nnew * sizeof *id);
        for (int i = 0; i < nnew; i++) id[i] = i;
        CHECK(count_mismatches(tt, back, id, c.data, c.len) == 0);
        free(id);
        tok_free(back);
    }
    buf_release(&bin);
    /* The rest of the corpus uses dropped tokens: it still encodes, and with
     * byte fallback decodes to the same text. */
    tok_out e; tok_out_init(&e);
    flow_buf d; buf_init(&d);
    tok_encode(tt, c.data + hlen, c.len - hlen, &e);
    tok_decode(tt, e.ids, e.n, 0, &d);
    if (byte_fallback)
        CHECK(d.len == c.len - hlen && memcmp(d.data, c.data + hlen, d.len) == 0);
    else
        CHECK(e.unk_chars > 0 || count_mismatches(t, tt, old_to_new, c.data + hlen, c.len - hlen) == 0);
    buf_release(&d); tok_out_release(&e);
    free(old_to_new);
    tok_free(tt);
done:
    tok_out_release(&o);
    free(want); free(new_to_old);
    tok_free(t);
    buf_release(&c);
}

static void test_extend(void)
{
    flow_buf c; buf_init(&c);
    make_corpus(&c, 400);
    tok_tokenizer *t = train(&c, 0);
    if (!t) { buf_release(&c); return; }
    int n = tok_vocab_size(t);
    tok_terms terms; tok_terms_init(&terms);
    flow_err err = { 0 };
    const char *list = "违约责任赔偿\n合\n";   /* one new term, one single token already */
    CHECK_OK(tok_terms_parse(&terms, list, strlen(list), "list", 16, &err), err);
    int *new_to_old = malloc((size_t)(n + terms.n) * sizeof *new_to_old), nnew = 0, skipped = 0;
    tok_tokenizer *te = NULL;
    CHECK_OK(tok_extend(t, &terms, &te, new_to_old, &nnew, &skipped, &err), err);
    if (te) {
        CHECK(skipped == 1 && nnew == n + 1 && tok_nforced(te) == tok_nforced(t) + 1);
        tok_out o; tok_out_init(&o);
        tok_encode(te, "违约责任赔偿", strlen("违约责任赔偿"), &o);
        CHECK(o.n == 1 && new_to_old[o.ids[0]] == -1);
        tok_out_release(&o);
        int *old_to_new = malloc((size_t)n * sizeof *old_to_new);
        for (int i = 0; i < nnew; i++)
            if (new_to_old[i] >= 0) old_to_new[new_to_old[i]] = i;
        const char *old = "合同当事人 法院判决 contract court\n第一条规定\n";
        CHECK(count_mismatches(t, te, old_to_new, old, strlen(old)) == 0);
        free(old_to_new);
        tok_free(te);
    }
    /* a term that is a merged token the merges never produce from its own
     * text cannot exist in this small vocabulary; a term that encodes to one
     * token is skipped, covered above */
    free(new_to_old);
    tok_terms_release(&terms);
    tok_free(t);
    buf_release(&c);
}

int main(void)
{
    test_trim(0);
    test_trim(1);
    test_extend();
    return test_summary("tok_edit_test");
}
