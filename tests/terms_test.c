/* terms_test.c — term mining (stages/text/terms_mine.c) finds terms planted in
 * seeded random Han text and rejects the fragments it should reject; the
 * user term-list parser handles BOM, comments, blanks, duplicates, white
 * space and over-long terms. */
#include "test.h"
#include "stages/text/text.h"

static unsigned rng = 12345;
static unsigned rnd(unsigned n)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) % n;
}

static void add_cp(flow_buf *b, uint32_t cp)
{
    char e[4];
    buf_add(b, e, (size_t)utf8_encode(cp, e));
}

static int rank_of(const mined_term *m, int n, const char *t)
{
    for (int i = 0; i < n; i++)
        if (strcmp(m[i].text, t) == 0) return i;
    return -1;
}

static void test_mining(void)
{
    /* background: 120k random characters from 600 Han code points (no
     * stop or numeral characters among them: U+5A00..U+5C57) */
    const char *planted[] = {"行政复议", "不可抗力", "土地承包经营权", "仲裁"};
    const char *fragment = "情节严重的";   /* ends in a function character */
    const char *fixed = "固定前缀";        /* always followed by 甲: right entropy 0 */
    flow_buf b;
    buf_init(&b);
    for (int line = 0; line < 2000; line++) {
        int len = 40 + (int)rnd(40);
        for (int i = 0; i < len; i++) {
            add_cp(&b, 0x5a00 + rnd(600));
            int r = (int)rnd(1000);
            if (r < 4) buf_adds(&b, planted[r]);
            else if (r == 4) buf_adds(&b, fragment);
            else if (r == 5) buf_adds(&b, fixed), buf_adds(&b, "甲");
            else if (r == 6) buf_adds(&b, "第一百二十");
            else if (r == 7) buf_addc(&b, ',');   /* breaks runs */
        }
        buf_addc(&b, '\n');
    }
    mine_opts o;
    mine_opts_default(&o);
    mined_term *m;
    int n;
    flow_err err = {0, {0}};
    CHECK_OK(terms_mine(&o, b.data, b.len, &m, &n, &err), err);
    for (int i = 0; i < 4; i++) {
        int r = rank_of(m, n, planted[i]);
        CHECK_MSG(r >= 0 && r < 10, "planted term %s ranked %d of %d", planted[i], r, n);
        if (r >= 0) {
            CHECK(m[r].freq >= 60 && m[r].freq <= 200);
            CHECK(m[r].left_entropy > 3 && m[r].right_entropy > 3);
            CHECK(m[r].pmi > 5);
        }
    }
    CHECK(rank_of(m, n, fragment) < 0);
    CHECK(rank_of(m, n, fixed) < 0);              /* right entropy 0 */
    CHECK(rank_of(m, n, "固定前缀甲") >= 0);      /* the whole string is the unit */
    CHECK(rank_of(m, n, "第一百") < 0 && rank_of(m, n, "一百二十") < 0);
    CHECK(rank_of(m, n, "承包经营") < 0);         /* inside the longer term only */
    /* sub-strings of a planted term have low branching entropy */
    for (int i = 0; i < n; i++) CHECK(m[i].nchars >= 2 && m[i].nchars <= 8);
    /* sorted by score */
    for (int i = 1; i < n; i++) CHECK(m[i - 1].score >= m[i].score);
    free(m);
    /* deterministic */
    mined_term *m2;
    int n2;
    CHECK_OK(terms_mine(&o, b.data, b.len, &m2, &n2, &err), err);
    CHECK(n2 == n);
    free(m2);
    /* bad options */
    o.max_len = 9;
    CHECK(terms_mine(&o, b.data, b.len, &m2, &n2, &err) == FLOW_E_PARAM);
    buf_release(&b);
    /* no Han text: no candidates, no crash */
    mine_opts_default(&o);
    CHECK_OK(terms_mine(&o, "abc\n123\n", 8, &m2, &n2, &err), err);
    CHECK(n2 == 0);
    free(m2);
}

static void test_term_list(void)
{
    const char *src = "\xef\xbb\xbf# comment line\n"
                      "不可抗力\n"
                      "\n"
                      "  违约金 \r\n"
                      "\xe3\x80\x80善意取得\xe3\x80\x80\n"
                      "不可抗力\n"
                      "   \n"
                      "#另一条注释\n"
                      "全国人民代表大会常务委员会\n"
                      "违约金";
    term_list t;
    flow_err err = {0, {0}};
    CHECK_OK(term_list_parse(&t, xstrdup(src), strlen(src), 12, &err), err);
    CHECK(t.n == 3);
    if (t.n == 3) {
        CHECK_STREQ(t.term[0], "不可抗力");
        CHECK_STREQ(t.term[1], "违约金");
        CHECK_STREQ(t.term[2], "善意取得");
    }
    CHECK(t.duplicates == 2);
    CHECK(t.too_long == 1);
    CHECK_STREQ(t.first_too_long, "全国人民代表大会常务委员会");
    CHECK(t.comments == 2);
    CHECK(t.blank == 2);
    term_list_release(&t);
    /* with a larger max_chars the long term stays */
    CHECK_OK(term_list_parse(&t, xstrdup(src), strlen(src), 16, &err), err);
    CHECK(t.n == 4 && t.too_long == 0);
    term_list_release(&t);
    /* invalid UTF-8 names the line */
    const char *bad = "甲乙\n丙\xff\n";
    CHECK(term_list_parse(&t, xstrdup(bad), strlen(bad), 16, &err) == FLOW_E_INPUT);
    CHECK_CONTAINS(err.msg, "line 2");
}

int main(void)
{
    test_mining();
    test_term_list();
    return test_summary("terms_test");
}
