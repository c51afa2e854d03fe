/* encode_test.c — batch encoding into the ENCODED format (stages.h):
 * [CLS] ... [SEP] sequences, truncation to max_len, identical results for
 * any thread count, part headers, and id width 2 vs 4 (a vocabulary above
 * 65536 tokens). */
#include "test.h"
#include "stages/tokenizer/tokenizer.h"

static uint64_t rd64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static tok_tokenizer *train(const char *text, int vocab)
{
    tok_text txt = {text, strlen(text)};
    tok_train_opts o = {vocab, 1.0, 0, 16, 1, 1, NULL, NULL, 0, 0, 0, NULL};
    tok_tokenizer *t = NULL;
    tok_train_stats st;
    flow_err err = {0};
    CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, &st, &err), err);
    tok_train_stats_release(&st);
    return t;
}

static void test_sequences(void)
{
    flow_buf c;
    buf_init(&c);
    for (int i = 0; i < 3000; i++)
        buf_printf(&c, "第%d条 当事人应当按照约定全面履行自己的义务%s\n", i,
                   i % 7 == 0 ? "，并且遵循诚信原则，根据合同的性质、目的和交易习惯履行通知、协助、保密等义务" : "");
    buf_adds(&c, "\n最后一行没有换行");
    tok_tokenizer *t = train(c.data, 120);
    if (!t)
        return;
    tok_batch ref;
    tok_encode_lines(t, c.data, c.len, 12, 1, &ref);
    CHECK(ref.nseq == 3002);
    CHECK(ref.offsets[0] == 0 && ref.offsets[ref.nseq] == ref.nids);
    uint64_t trunc = 0;
    for (uint64_t s = 0; s < ref.nseq; s++) {
        uint64_t a = ref.offsets[s], b = ref.offsets[s + 1];
        CHECK(b - a >= 2 && b - a <= 12);
        CHECK(ref.ids[a] == TOK_CLS && ref.ids[b - 1] == TOK_SEP);
        trunc += b - a == 12;
    }
    CHECK(ref.truncated > 0 && ref.truncated <= trunc);
    CHECK(ref.offsets[3001] - ref.offsets[3000] == 2);     /* the empty line */
    /* the untruncated content of a unit matches tok_encode */
    tok_out o;
    tok_out_init(&o);
    const char *u = "第5条 当事人应当按照约定全面履行自己的义务";
    tok_encode(t, u, strlen(u), &o);
    tok_batch big;
    tok_encode_lines(t, u, strlen(u), 1000, 1, &big);
    CHECK(big.nseq == 1 && big.nids == o.n + 2 && !memcmp(big.ids + 1, o.ids, o.n * 4));
    CHECK(big.truncated == 0 && big.content_tokens == o.n);
    tok_batch_release(&big);
    tok_out_release(&o);
    /* any thread count gives the same bytes */
    for (int th = 2; th <= 4; th++) {
        tok_batch b;
        tok_encode_lines(t, c.data, c.len, 12, th, &b);
        CHECK(b.nids == ref.nids && b.nseq == ref.nseq);
        CHECK(!memcmp(b.ids, ref.ids, ref.nids * 4));
        CHECK(!memcmp(b.offsets, ref.offsets, (ref.nseq + 1) * 8));
        CHECK(b.truncated == ref.truncated && b.chars == ref.chars);
        tok_batch_release(&b);
    }
    /* parts */
    flow_buf p;
    buf_init(&p);
    CHECK(tok_ids_width(tok_vocab_size(t)) == 2);
    tok_write_ids(&p, ref.ids, ref.nids, 2);
    CHECK(p.len == 24 + 2 * ref.nids && !memcmp(p.data, "FLOWIDS\0", 8));
    CHECK(rd32(p.data + 8) == 1 && rd32(p.data + 12) == 2 && rd64(p.data + 16) == ref.nids);
    uint16_t x;
    memcpy(&x, p.data + 24 + 2 * 5, 2);
    CHECK(x == ref.ids[5]);
    p.len = 0;
    tok_write_offsets(&p, ref.offsets, ref.nseq);
    CHECK(p.len == 24 + 8 * (ref.nseq + 1) && !memcmp(p.data, "FLOWOFF\0", 8));
    CHECK(rd64(p.data + 16) == ref.nseq + 1 && rd64(p.data + 24 + 8 * ref.nseq) == ref.nids);
    p.len = 0;
    int32_t labs[3] = {-1, 0, 6};
    tok_write_i32(&p, "FLOWLAB\0", labs, 3);
    CHECK(p.len == 36 && !memcmp(p.data, "FLOWLAB\0", 8) && rd64(p.data + 16) == 3);
    CHECK((int32_t)rd32(p.data + 24) == -1 && rd32(p.data + 32) == 6);
    buf_release(&p);
    tok_batch_release(&ref);
    tok_free(t);
    buf_release(&c);
}

/* 70,000 distinct CJK characters (alphabet > 65536): ids need 4 bytes. */
static void test_wide_ids(void)
{
    flow_buf c;
    buf_init(&c);
    int n = 0;
    for (uint32_t cp = 0x20000; n < 70000; cp++, n++) {
        char u[4];
        buf_add(&c, u, (size_t)utf8_encode(cp, u));
        if (n % 50 == 49)
            buf_addc(&c, '\n');
    }
    buf_addc(&c, '\n');
    tok_tokenizer *t = train(c.data, 70000 + TOK_NSPECIAL);
    if (!t)
        return;
    CHECK(tok_vocab_size(t) == 70005);
    CHECK(tok_ids_width(tok_vocab_size(t)) == 4);
    tok_batch b;
    tok_encode_lines(t, c.data, c.len, 64, 2, &b);
    uint32_t maxid = 0;
    for (uint64_t i = 0; i < b.nids; i++)
        maxid = b.ids[i] > maxid ? b.ids[i] : maxid;
    CHECK(maxid > 65535);
    flow_buf p;
    buf_init(&p);
    tok_write_ids(&p, b.ids, b.nids, 4);
    CHECK(rd32(p.data + 12) == 4 && p.len == 24 + 4 * b.nids);
    int same = 1;
    for (uint64_t i = 0; i < b.nids; i++)
        same &= rd32(p.data + 24 + 4 * i) == b.ids[i];
    CHECK(same);
    buf_release(&p);
    tok_batch_release(&b);
    tok_free(t);
    buf_release(&c);
}

int main(void)
{
    test_sequences();
    test_wide_ids();
    return test_summary("encode_test");
}
