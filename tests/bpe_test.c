/* bpe_test.c — the BPE trainer (tok_train) and term lists: deterministic
 * merges and identical tokenizer bytes across runs and thread counts,
 * forced-term integrity on every occurrence, the vocab_size error with its
 * numbers, the coverage cut, byte fallback, tokenizer.bin validation. */
#include "test.h"
#include "stages/tokenizer/tokenizer.h"

/* Fixed-seed generator. */
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const words[] = {
    "合同", "当事人", "违约金", "不可抗力", "责任", "人民法院", "应当", "规定",
    "第十二条", "依照", "本法", "抵押权", "诉讼时效", "民事", "行为", "GDP", "2024",
    "abc", "ISO9001", "按份责任",
};
static const char *const puncts[] = {"，", "。", "；", " ", "、", "（一）"};

/* A corpus of n lines built from words and punctuation. */
static void make_corpus(flow_buf *b, int nlines)
{
    for (int l = 0; l < nlines; l++) {
        int k = 3 + (int)rnd(12);
        for (int i = 0; i < k; i++) {
            buf_adds(b, words[rnd(sizeof words / sizeof *words)]);
            if (rnd(3) == 0)
                buf_adds(b, puncts[rnd(sizeof puncts / sizeof *puncts)]);
        }
        buf_addc(b, '\n');
    }
}

static tok_train_opts opts(int vocab)
{
    tok_train_opts o = {.vocab_size = vocab, .character_coverage = 1.0, .max_token_chars = 16,
                        .min_frequency = 2, .threads = 1};
    return o;
}

static void test_terms_parse(void)
{
    tok_terms t;
    tok_terms_init(&t);
    flow_err err = {0};
    const char *f = "\xEF\xBB\xBF# comment\n违约金\n\n  不可抗力  \r\n违约金\n"
                    "一二三四五六七八九十一二三四五六七\n#x\n诉讼时效";
    CHECK_OK(tok_terms_parse(&t, f, strlen(f), "t.txt", 16, &err), err);
    CHECK(t.n == 3);
    if (t.n == 3) {
        CHECK_STREQ(t.s[0], "违约金");
        CHECK_STREQ(t.s[1], "不可抗力");
        CHECK_STREQ(t.s[2], "诉讼时效");
    }
    CHECK(t.duplicates == 1);
    CHECK(t.too_long == 1);
    CHECK_CONTAINS(t.too_long_example, "t.txt:6");
    const char *bad = "ok\n\xFF\xFEterm\n";
    CHECK(tok_terms_parse(&t, bad, strlen(bad), "bad.txt", 16, &err) == FLOW_E_INPUT);
    CHECK_CONTAINS(err.msg, "bad.txt:2");
    tok_terms_release(&t);
}

static void test_deterministic(void)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 3000);
    tok_text txt = {c.data, c.len};
    flow_buf first;
    buf_init(&first);
    for (int run = 0; run < 3; run++) {
        tok_train_opts o = opts(300);
        o.threads = run + 1;
        tok_tokenizer *t;
        tok_train_stats st;
        flow_err err = {0};
        CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, &st, &err), err);
        if (!t)
            return;
        CHECK(st.stopped_min_frequency ? tok_vocab_size(t) < 300 : tok_vocab_size(t) == 300);
        flow_buf b;
        buf_init(&b);
        tok_serialize(t, &b);
        tok_export_vocab_txt(t, &b);
        tok_export_merges_txt(t, &b);
        if (run == 0)
            buf_add(&first, b.data, b.len);
        else
            CHECK_MSG(b.len == first.len && memcmp(b.data, first.data, b.len) == 0,
                      "run %d with %d threads differs", run, o.threads);
        buf_release(&b);
        /* the first merge is the most frequent adjacent pair of the corpus */
        if (run == 0) {
            int a, bb, r;
            tok_merge(t, 0, &a, &bb, &r);
            size_t la, lb;
            const char *sa = tok_token(t, a, &la), *sb = tok_token(t, bb, &lb);
            char pairtxt[64];
            snprintf(pairtxt, sizeof pairtxt, "%.*s%.*s", (int)la, sa, (int)lb, sb);
            /* count occurrences of every pair candidate: the chosen one must be
             * at least as frequent as "民事" (a frequent word pair) */
            size_t n1 = 0, n2 = 0;
            for (const char *p = c.data; (p = strstr(p, pairtxt)); p++) n1++;
            for (const char *p = c.data; (p = strstr(p, "民事")); p++) n2++;
            CHECK_MSG(n1 >= n2, "first merge '%s' seen %zu times, '民事' %zu", pairtxt, n1, n2);
        }
        tok_train_stats_release(&st);
        tok_free(t);
    }
    buf_release(&first);
    buf_release(&c);
}

/* Every occurrence of every forced term encodes to exactly its one id,
 * including inside longer runs and next to other terms. */
static void test_forced_integrity(void)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 2000);
    buf_adds(&c, "违约金违约金违约金\n不可抗力不可抗力的违约金abc违约金\n违约\n");
    tok_terms terms;
    tok_terms_init(&terms);
    flow_err err = {0};
    const char *tl = "违约金\n不可抗力\n按份责任\n违约\n";
    CHECK_OK(tok_terms_parse(&terms, tl, strlen(tl), "terms", 16, &err), err);
    tok_text txt = {c.data, c.len};
    tok_train_opts o = opts(400);
    o.threads = 2;
    tok_tokenizer *t;
    tok_train_stats st;
    CHECK_OK(tok_train(&txt, 1, &terms, &o, &t, &st, &err), err);
    if (!t)
        return;
    CHECK(tok_nforced(t) == 4);
    CHECK(tok_token_id(t, "违约金", strlen("违约金")) == TOK_NSPECIAL);
    CHECK(tok_token_id(t, "违约", strlen("违约")) == TOK_NSPECIAL + 3);
    tok_out o2;
    tok_out_init(&o2);
    o2.want_starts = 1;
    long occ = 0, intact = 0;
    for (const char *line = c.data; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = (size_t)(nl - line);
        o2.n = 0;
        tok_encode(t, line, n, &o2);
        for (int k = 0; k < terms.n; k++) {
            /* occurrences not inside a longer term occurrence ("违约" in "违约金") */
            for (const char *p = line; (p = memmem(p, n - (size_t)(p - line), terms.s[k], terms.len[k]));
                 p += terms.len[k]) {
                if (k == 3 && (size_t)(nl - p) >= strlen("违约金") && !memcmp(p, "违约金", strlen("违约金")))
                    continue;
                occ++;
                uint32_t start = (uint32_t)(p - line);
                for (size_t i = 0; i < o2.n; i++)
                    if (o2.starts[i] == start && o2.ids[i] == (uint32_t)(TOK_NSPECIAL + k)) {
                        intact++;
                        break;
                    }
            }
        }
        line = nl + 1;
    }
    CHECK(occ > 500);
    CHECK_MSG(intact == occ, "%ld of %ld forced occurrences intact", intact, occ);
    /* no merged token contains a forced term */
    for (int i = TOK_NSPECIAL + tok_nforced(t); i < tok_vocab_size(t); i++) {
        size_t n;
        const char *s = tok_token(t, i, &n);
        for (int k = 0; k < terms.n; k++)
            CHECK(!memmem(s, n, terms.s[k], terms.len[k]));
    }
    tok_out_release(&o2);
    tok_train_stats_release(&st);
    tok_free(t);
    tok_terms_release(&terms);
    buf_release(&c);
}

static void test_vocab_too_small(void)
{
    const char *text = "甲乙丙丁戊己庚辛壬癸\n甲乙丙丁\n";
    tok_text txt = {text, strlen(text)};
    tok_terms terms;
    tok_terms_init(&terms);
    flow_err err = {0};
    const char *tl = "合同\n责任\n规定\n";
    CHECK_OK(tok_terms_parse(&terms, tl, strlen(tl), "terms", 16, &err), err);
    tok_train_opts o = opts(12);
    tok_tokenizer *t = NULL;
    tok_train_stats st;
    CHECK(tok_train(&txt, 1, &terms, &o, &t, &st, &err) == FLOW_E_PARAM);
    CHECK(t == NULL);
    CHECK_CONTAINS(err.msg, "vocab_size 12 is below specials 5 + forced terms 3 + alphabet 10 = 18");
    tok_train_stats_release(&st);
    o.byte_fallback = 1;
    o.vocab_size = 100;
    CHECK(tok_train(&txt, 1, &terms, &o, &t, &st, &err) == FLOW_E_PARAM);
    CHECK_CONTAINS(err.msg, "+ byte tokens 256 = 274");
    tok_train_stats_release(&st);
    o.byte_fallback = 0;
    o.vocab_size = 18;  /* exactly enough: no merges */
    CHECK_OK(tok_train(&txt, 1, &terms, &o, &t, &st, &err), err);
    if (t) {
        CHECK(tok_vocab_size(t) == 18 && tok_nmerges(t) == 0);
        tok_free(t);
    }
    tok_train_stats_release(&st);
    tok_terms_release(&terms);
    /* a forced term that is a special token's text */
    tok_terms_init(&terms);
    CHECK_OK(tok_terms_parse(&terms, "合同\n[MASK]\n", strlen("合同\n[MASK]\n"), "terms", 16, &err), err);
    o.vocab_size = 100;
    CHECK(tok_train(&txt, 1, &terms, &o, &t, &st, &err) == FLOW_E_PARAM);
    CHECK_CONTAINS(err.msg, "'[MASK]' is a special token");
    tok_train_stats_release(&st);
    tok_terms_release(&terms);
}

/* 1000 x 'a', 1000 x 'b', 5 x 'c', 1 x 'd': coverage 0.99 keeps a and b. */
static void test_coverage_cut_and_byte_fallback(void)
{
    flow_buf c;
    buf_init(&c);
    for (int i = 0; i < 500; i++)
        buf_adds(&c, "ab ab\n");
    buf_adds(&c, "c c c c c\nd\n");
    tok_text txt = {c.data, c.len};
    for (int bf = 0; bf < 2; bf++) {
        tok_train_opts o = opts(bf ? 300 : 20);
        o.character_coverage = 0.99;
        o.byte_fallback = bf;
        tok_tokenizer *t;
        tok_train_stats st;
        flow_err err = {0};
        CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, &st, &err), err);
        if (!t)
            continue;
        /* alphabet: a, b, and ' ' (2500 chars of 2506 = 99.76%) */
        CHECK_MSG(st.alphabet == 3, "alphabet %d", st.alphabet);
        CHECK(st.distinct_chars == 5);
        CHECK(tok_char_id(t, 'a') >= 0 && tok_char_id(t, 'c') < 0 && tok_char_id(t, 'd') < 0);
        tok_out e;
        tok_out_init(&e);
        tok_encode(t, "abcab", 5, &e);
        if (!bf) {
            CHECK(e.n == 3 && e.ids[1] == TOK_UNK);
        } else {
            CHECK(tok_byte_base(t) == TOK_NSPECIAL + 3);
            CHECK(e.n == 3 && e.ids[1] == (uint32_t)tok_byte_base(t) + 'c');
            /* a multi-byte character falls back to its UTF-8 bytes, and back */
            e.n = 0;
            const char *x = "ab\xE9\xBE\x98" "ab\xFF";
            tok_encode(t, x, strlen(x), &e);
            CHECK_MSG(e.n == 6, "%zu ids", e.n);   /* ab, 3 bytes, ab, 1 byte */
            flow_buf d;
            buf_init(&d);
            tok_decode(t, e.ids, e.n, 0, &d);
            CHECK(d.len == strlen(x) && memcmp(d.data, x, d.len) == 0);
            buf_release(&d);
        }
        CHECK(e.unk_chars >= 1);
        tok_out_release(&e);
        tok_train_stats_release(&st);
        tok_free(t);
    }
    buf_release(&c);
}

static void test_bin_validation(void)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 300);
    tok_text txt = {c.data, c.len};
    tok_train_opts o = opts(150);
    o.byte_fallback = 1;
    o.vocab_size = 500;
    tok_tokenizer *t, *u;
    tok_train_stats st;
    flow_err err = {0};
    CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, &st, &err), err);
    if (!t)
        return;
    flow_buf b, b2;
    buf_init(&b);
    buf_init(&b2);
    tok_serialize(t, &b);
    CHECK_OK(tok_load(&u, b.data, b.len, &err), err);
    if (u) {
        tok_serialize(u, &b2);
        CHECK(b.len == b2.len && !memcmp(b.data, b2.data, b.len));
        tok_free(u);
    }
    b.data[100] ^= 1;
    CHECK(tok_load(&u, b.data, b.len, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "checksum");
    b.data[100] ^= 1;
    b.data[8] = 9;
    CHECK(tok_load(&u, b.data, b.len, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "version 9 is too new");
    CHECK(tok_load(&u, "FLOWTOK", 7, &err) == FLOW_E_CORRUPT);
    buf_release(&b);
    buf_release(&b2);
    tok_train_stats_release(&st);
    tok_free(t);
    buf_release(&c);
}

/* tokenizer.bin of a training run with the given limit (NULL and *rc on
 * failure); *peak = the need it reported. */
static flow_buf *train_limited(const flow_buf *c, size_t limit, int threads, size_t block,
                               int *rc, size_t *peak, flow_err *err)
{
    tok_train_opts o = opts(400);
    o.threads = threads;
    o.memory_limit = limit;
    tok_counter *k;
    *rc = tok_counter_new(NULL, &o, &k, err);
    if (*rc)
        return NULL;
    /* blocks cut at line ends, as line_stream gives them */
    for (size_t at = 0; at < c->len;) {
        size_t end = at + block < c->len ? at + block : c->len;
        while (end < c->len && c->data[end - 1] != '\n')
            end++;
        CHECK(tok_counter_add(k, c->data + at, end - at, err) == 0);
        at = end;
    }
    tok_tokenizer *t = NULL;
    tok_train_stats st;
    *rc = tok_train_counted(k, NULL, &o, &t, &st, err);
    tok_counter_free(k);
    *peak = st.memory_peak;
    tok_train_stats_release(&st);
    if (*rc)
        return NULL;
    flow_buf *b = xmalloc(sizeof *b);
    buf_init(b);
    tok_serialize(t, b);
    tok_free(t);
    return b;
}

static void test_memory_limit(void)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 4000);
    int rc;
    size_t peak, peak2;
    flow_err err = {0};
    flow_buf *free_run = train_limited(&c, 0, 1, c.len, &rc, &peak, &err);
    CHECK_OK(rc, err);
    CHECK(peak > 0);
    /* the exact peak fits: same bytes, whatever the threads and blocks */
    flow_buf *fit = train_limited(&c, peak, 2, 4096, &rc, &peak2, &err);
    CHECK_OK(rc, err);
    CHECK(peak2 == peak);
    if (free_run && fit)
        CHECK_MSG(fit->len == free_run->len && memcmp(fit->data, free_run->data, fit->len) == 0,
                  "a limit that fits changed the tokenizer");
    /* a byte less: the clear error, naming the need and the budget */
    flow_buf *tight = train_limited(&c, peak - 1, 1, c.len, &rc, &peak2, &err);
    CHECK(tight == NULL && rc == FLOW_E_NOMEM);
    CHECK_CONTAINS(err.msg, "more than the memory budget of");
    CHECK_CONTAINS(err.msg, "set memory_mb =");
    /* a tiny limit stops before the word records are built */
    flow_buf *tiny = train_limited(&c, 1024, 1, c.len, &rc, &peak2, &err);
    CHECK(tiny == NULL && rc == FLOW_E_NOMEM);
    CHECK_CONTAINS(err.msg, "for the word records");
    CHECK_CONTAINS(err.msg, "distinct words");
    if (free_run) { buf_release(free_run); free(free_run); }
    if (fit) { buf_release(fit); free(fit); }
    buf_release(&c);
}

/* More distinct pairs than the pair table's first allocation (65536):
 * 400 Han characters in random order, so the table moves while the
 * initial counts are taken (a pointer into it kept across pair_id was a
 * use after free: ASan fails it). */
static void test_many_pairs(void)
{
    flow_buf c;
    buf_init(&c);
    for (int l = 0; l < 3000; l++) {
        for (int i = 0; i < 100; i++) {
            char u[4];
            int n = utf8_encode(0x4E00 + rnd(400), u);
            buf_add(&c, u, (size_t)n);
        }
        buf_addc(&c, '\n');
    }
    tok_text txt = {c.data, c.len};
    tok_train_opts o = opts(600);
    tok_tokenizer *t = NULL;
    tok_train_stats st;
    flow_err err = {0};
    CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, &st, &err), err);
    CHECK(st.alphabet == 400);
    CHECK(t && tok_vocab_size(t) == 600);
    tok_train_stats_release(&st);
    tok_free(t);
    buf_release(&c);
}

int main(void)
{
    test_terms_parse();
    test_deterministic();
    test_forced_integrity();
    test_vocab_too_small();
    test_coverage_cut_and_byte_fallback();
    test_bin_validation();
    test_memory_limit();
    test_many_pairs();
    return test_summary("bpe_test");
}
