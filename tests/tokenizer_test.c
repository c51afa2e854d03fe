/* tokenizer_test.c — the tokenizer library: character classes and
 * pre-tokenization, leftmost-longest forced terms, decode(encode(x)) == x,
 * agreement of the heap merge path with the direct path, and linear time
 * on a huge single line. */
#include "test.h"
#include "stages/tokenizer/tokenizer.h"

#include <time.h>

/* CPU time of this thread: the machine is shared, wall time is noisy */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 42;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

typedef struct pieces { char out[4096]; size_t len; } pieces;

/* Trains a tokenizer on s[0..n) (no forced terms); NULL after a failure,
 * which is counted and reported. */
static tok_tokenizer *train_text(const char *s, size_t n, tok_train_opts o, tok_train_stats *st)
{
    tok_text txt = {s, n};
    tok_tokenizer *t = NULL;
    flow_err err = {0};
    CHECK_OK(tok_train(&txt, 1, NULL, &o, &t, st, &err), err);
    return t;
}

static int collect(void *arg, const char *s, size_t n, int forced)
{
    pieces *p = arg;
    p->len += (size_t)snprintf(p->out + p->len, sizeof p->out - p->len, "%s%.*s%s",
                               p->len ? "|" : "", (int)n, s, forced >= 0 ? "*" : "");
    return 0;
}

static void test_classes_and_segments(void)
{
    CHECK(tok_char_class(' ') == TOK_C_WS && tok_char_class(0x3000) == TOK_C_WS);
    CHECK(tok_char_class(0x4E2D) == TOK_C_HAN && tok_char_class(0x3007) == TOK_C_HAN);
    CHECK(tok_char_class('a') == TOK_C_LETTER && tok_char_class(0xE9) == TOK_C_LETTER);
    CHECK(tok_char_class('7') == TOK_C_NUM && tok_char_class(0xFF13) == TOK_C_NUM);
    CHECK(tok_char_class(0xFF0C) == TOK_C_OTHER && tok_char_class('.') == TOK_C_OTHER);
    CHECK(tok_char_class(0x20000) == TOK_C_HAN);
    pieces p = {{0}, 0};
    const char *s = "第12条 abc，（一）x\xFF３４  中";
    tok_segment(NULL, s, strlen(s), collect, &p);
    CHECK_STREQ(p.out, "第|12|条| |abc|，|（|一|）|x|\xFF|３４|  |中");
    /* runs are cut every TOK_MAX_RUN characters */
    char longrun[3 * 600 + 1];
    for (int i = 0; i < 600; i++)
        memcpy(longrun + 3 * i, "法", 3);
    pieces q = {{0}, 0};
    tok_segment(NULL, longrun, 3 * 600, collect, &q);
    int bars = 0;
    for (size_t i = 0; i < q.len; i++)
        bars += q.out[i] == '|';
    CHECK(bars == 2);   /* 256 + 256 + 88 */
}

static void test_leftmost_longest(void)
{
    tok_matcher *m = tok_matcher_new();
    CHECK(tok_matcher_add(m, "ab", 2, 0) == 0);
    CHECK(tok_matcher_add(m, "abc", 3, 1) == 0);
    CHECK(tok_matcher_add(m, "bcd", 3, 2) == 0);
    CHECK(tok_matcher_add(m, "c", 1, 3) == 0);
    CHECK(tok_matcher_add(m, "abc", 3, 9) == 2);    /* duplicate keeps value 1 */
    pieces p = {{0}, 0};
    tok_segment(m, "abcd xbcd abab cc", 17, collect, &p);
    CHECK_STREQ(p.out, "abc*|d| |x|bcd*| |ab*|ab*| |c*|c*");
    size_t len;
    CHECK(tok_matcher_longest(m, "abcz", 4, &len) == 1 && len == 3);
    int vals[4];
    size_t lens[4];
    CHECK(tok_matcher_prefixes(m, "abcz", 4, vals, lens, 4) == 2);
    CHECK(vals[0] == 0 && lens[0] == 2 && vals[1] == 1);
    tok_matcher_free(m);

    /* in a trained tokenizer: 民法典 beats 民法; 典编 not a term */
    const char *text = "民法典编纂\n民法的规定\n民法典\n编纂民法典\n";
    tok_terms terms;
    tok_terms_init(&terms);
    flow_err err = {0};
    const char *tl = "民法\n民法典\n法典编\n";
    CHECK_OK(tok_terms_parse(&terms, tl, strlen(tl), "t", 16, &err), err);
    tok_text txt = {text, strlen(text)};
    tok_train_opts o = {40, 1.0, 0, 16, 1, 1, NULL, NULL, 0, 0, 0, NULL};
    tok_tokenizer *t;
    tok_train_stats st;
    CHECK_OK(tok_train(&txt, 1, &terms, &o, &t, &st, &err), err);
    if (t) {
        tok_out e;
        tok_out_init(&e);
        tok_encode(t, "民法典编", strlen("民法典编"), &e);
        CHECK(e.n == 2 && e.ids[0] == TOK_NSPECIAL + 1);
        e.n = 0;
        tok_encode(t, "[CLS]民法x", strlen("[CLS]民法x"), &e);
        CHECK(e.n == 3 && e.ids[0] == TOK_CLS && e.ids[1] == TOK_NSPECIAL);
        tok_out_release(&e);
        tok_free(t);
    }
    tok_train_stats_release(&st);
    tok_terms_release(&terms);
}

/* Random mixed text; every character in the alphabet -> exact round trip,
 * and long pieces (heap path) agree with short pieces' direct path. */
static void test_round_trip(void)
{
    static const char *const alpha[] = {"中", "华", "人", "民", "共", "和", "国", "法", "a", "b",
                                        "c", "1", "2", " ", "，", "\t", "é", "\xF0\xA0\x80\x80"};
    int na = sizeof alpha / sizeof *alpha;
    flow_buf c;
    buf_init(&c);
    for (int l = 0; l < 2000; l++) {
        int k = 1 + (int)rnd(60);
        for (int i = 0; i < k; i++)
            buf_adds(&c, alpha[rnd((uint32_t)na)]);
        buf_addc(&c, '\n');
    }
    tok_train_opts o = {300, 1.0, 0, 8, 2, 2, NULL, NULL, 0, 0, 0, NULL};
    tok_train_stats st;
    tok_tokenizer *t = train_text(c.data, c.len, o, &st);
    if (!t)
        return;
    tok_out e;
    tok_out_init(&e);
    flow_buf d;
    buf_init(&d);
    int bad = 0;
    for (const char *line = c.data; *line;) {
        const char *nl = strchr(line, '\n');
        e.n = 0;
        d.len = 0;
        tok_encode(t, line, (size_t)(nl - line), &e);
        tok_decode(t, e.ids, e.n, 0, &d);
        bad += d.len != (size_t)(nl - line) || memcmp(d.data, line, d.len) != 0;
        line = nl + 1;
    }
    CHECK_MSG(bad == 0, "%d lines do not round-trip", bad);
    CHECK(e.unk_chars == 0);
    /* a long Han run (heap path) encodes like the same run split in short
     * pieces where merges cannot cross anyway: compare against a reference
     * O(n^2) merge loop over the tokenizer's own merge table */
    const char *han[] = {"中", "华", "人", "民", "共", "和", "国", "法"};
    flow_buf run;
    buf_init(&run);
    for (int i = 0; i < 200; i++)
        buf_adds(&run, han[rnd(8)]);
    e.n = 0;
    tok_encode(t, run.data, run.len, &e);
    uint32_t ref[200];
    size_t nref = 0;
    for (size_t i = 0; i < run.len; i += 3) {
        uint32_t cp;
        utf8_decode((const unsigned char *)run.data + i, 3, &cp);
        ref[nref++] = (uint32_t)tok_char_id(t, cp);
    }
    for (;;) {
        int best = -1;
        size_t bi = 0;
        uint32_t bres = 0;
        for (size_t i = 0; i + 1 < nref; i++)
            for (int r = 0; r < tok_nmerges(t) && (best < 0 || r < best); r++) {
                int a, b, res;
                tok_merge(t, r, &a, &b, &res);
                if ((uint32_t)a == ref[i] && (uint32_t)b == ref[i + 1]) {
                    best = r; bi = i; bres = (uint32_t)res;
                    break;
                }
            }
        if (best < 0)
            break;
        ref[bi] = bres;
        memmove(ref + bi + 1, ref + bi + 2, (nref - bi - 2) * sizeof *ref);
        nref--;
    }
    CHECK(e.n == nref && memcmp(e.ids, ref, nref * sizeof *ref) == 0);
    buf_release(&run);
    buf_release(&d);
    tok_out_release(&e);
    tok_train_stats_release(&st);
    tok_free(t);
    buf_release(&c);
}

/* Encoding a single huge line takes time proportional to its length. */
static void test_linear_time(void)
{
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__)
    size_t big = 50u << 20;
    double limit = 10.0;
#else
    size_t big = 8u << 20;     /* unoptimized / sanitized builds: smaller, looser */
    double limit = 60.0;
#endif
    const char *seed = "中华人民共和国民法典第一编总则第一章基本规定第一条为了保护民事主体的合法权益"
                       "调整民事关系维护社会和经济秩序适应中国特色社会主义发展要求弘扬社会主义核心价值观";
    tok_train_stats st;
    tok_train_opts o = {200, 1.0, 0, 16, 1, 1, NULL, NULL, 0, 0, 0, NULL};
    tok_tokenizer *t = train_text(seed, strlen(seed), o, &st);
    if (!t)
        return;
    /* one line of Han characters without any break (random characters of
     * the seed, so no two pieces repeat), then one of letters */
    char *s = malloc(big + 8);
    size_t n = 0, sl = strlen(seed);
    while (n + 3 <= big) {
        memcpy(s + n, seed + 3 * rnd((uint32_t)(sl / 3)), 3);
        n += 3;
    }
    double times[2];
    size_t sizes[2] = {n / 4, n};
    for (int r = 0; r < 2; r++) {
        tok_out e;
        tok_out_init(&e);
        double t0 = now_s();
        tok_encode(t, s, sizes[r] - sizes[r] % 3, &e);
        times[r] = now_s() - t0;
        CHECK(e.n > 0 && e.unk_chars == 0);
        tok_out_release(&e);
    }
    printf("encode %.1f MB single line: %.2fs CPU (quarter: %.2fs)\n", n / 1e6, times[1], times[0]);
    CHECK_MSG(times[1] < limit, "%.1f MB took %.2fs", n / 1e6, times[1]);
    CHECK_MSG(times[1] < 4 * times[0] * 2.0 + 0.2, "not linear: %.2fs vs %.2fs for a quarter",
              times[1], times[0]);
    memset(s, 'a', n);
    tok_out e;
    tok_out_init(&e);
    double t0 = now_s();
    tok_encode(t, s, n, &e);
    double dt = now_s() - t0;
    CHECK_MSG(dt < limit, "letters: %.2fs", dt);
    tok_out_release(&e);
    free(s);
    tok_train_stats_release(&st);
    tok_free(t);
}

/* Long runs of one letter: the heap path at its largest (merges of every
 * size class pile up), checked against the round trip. */
static void test_repetitive_runs(void)
{
    flow_buf c;
    buf_init(&c);
    for (int l = 1; l < 300; l++) {
        for (int i = 0; i < l; i++)
            buf_addc(&c, i % 17 == 16 ? 'b' : 'a');
        buf_addc(&c, '\n');
    }
    tok_train_opts o = {60, 1.0, 0, 64, 1, 2, NULL, NULL, 0, 0, 0, NULL};
    tok_train_stats st;
    tok_tokenizer *t = train_text(c.data, c.len, o, &st);
    if (!t)
        return;
    CHECK(tok_nmerges(t) > 10);
    tok_out e;
    tok_out_init(&e);
    flow_buf d;
    buf_init(&d);
    for (const char *line = c.data; *line;) {
        const char *nl = strchr(line, '\n');
        e.n = 0;
        d.len = 0;
        tok_encode(t, line, (size_t)(nl - line), &e);
        tok_decode(t, e.ids, e.n, 0, &d);
        CHECK(d.len == (size_t)(nl - line) && !memcmp(d.data, line, d.len));
        line = nl + 1;
    }
    buf_release(&d);
    tok_out_release(&e);
    tok_train_stats_release(&st);
    tok_free(t);
    buf_release(&c);
}

int main(void)
{
    test_repetitive_runs();
    test_classes_and_segments();
    test_leftmost_longest();
    test_round_trip();
    test_linear_time();
    return test_summary("tokenizer_test");
}
