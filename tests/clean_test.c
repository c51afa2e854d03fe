/* clean_test.c — the cleaning/segmentation library (stages/text/text.c) and the
 * corpus reader (stages/text/corpus.c) on hand-made documents. */
#include "test.h"
#include "stages/text/text.h"
#include "stages/stages.h"

/* Cleans doc and returns its units joined by '|' (static buffer). */
static char joined[65536];
static text_stats st;
static int clean(const text_opts *o, const char *doc, size_t n, flow_err *err)
{
    text_units u;
    text_units_init(&u);
    memset(&st, 0, sizeof st);
    int rc = text_clean_document(o, doc, n, &u, &st, err);
    joined[0] = 0;
    size_t k = 0;
    for (int i = 0; i < u.n && !rc; i++) {
        size_t len = u.off[i + 1] - u.off[i];
        if (k + len + 2 >= sizeof joined) break;
        if (i) joined[k++] = '|';
        memcpy(joined + k, u.text.data + u.off[i], len);
        k += len;
        joined[k] = 0;
    }
    text_units_release(&u);
    return rc;
}

static const char *run(const text_opts *o, const char *doc)
{
    flow_err err = {0, {0}};
    int rc = clean(o, doc, strlen(doc), &err);
    CHECK_MSG(rc == 0, "clean failed: %s", err.msg);
    return joined;
}

static void test_structure(void)
{
    text_opts o;
    text_opts_default(&o);
    o.min_chars = 1;
    /* front matter, header before INFO END, comments, headings */
    const char *doc =
        "---\ntitle: x\ndate: 2020\n---\n"
        "# 中华人民共和国测试法\n\n2020年1月1日 通过\n\n<!-- INFO END -->\n\n"
        "## 第一章 总则\n\n"
        "第一条 为了测试，<!-- 注释 -->制定本法。\n\n"
        "第二条　本法所称测试：\n\n（一）单元测试；\n\n（二）集成\n测试。\n\n"
        "<!-- 多行\n注释 -->\n"
        "### 第二节 其他\n\n"
        "第三条之一 新增条文。\n\n第四条规定的不是条文开头\n";
    CHECK_STREQ(run(&o, doc),
                "为了测试，制定本法。|本法所称测试：（一）单元测试；（二）集成测试。|新增条文。第四条规定的不是条文开头");
    CHECK(st.articles == 3);
    CHECK(st.paragraphs == 0);
    CHECK(st.structure_bytes > 0);

    /* an unmarked chapter title is a heading, not part of the article */
    CHECK_STREQ(run(&o, "第一条 甲乙丙。\n\n第二章　罚则\n\n第二条 丁戊。\n"), "甲乙丙。|丁戊。");

    /* keep the article label */
    o.strip_article_label = 0;
    CHECK_STREQ(run(&o, "第一条 甲乙丙。\n\n第二条 丁戊。\n"), "第一条甲乙丙。|第二条丁戊。");
    o.strip_article_label = 1;

    /* paragraphs fallback; without INFO END the heading text is a unit */
    CHECK_STREQ(run(&o, "# 通知\n\n各地区：\n请遵照执行。\n\n附件略\n"), "通知|各地区：请遵照执行。|附件略");
    CHECK(st.paragraphs == 3 && st.articles == 0);

    /* amendment items 一、 become units with their following paragraphs */
    CHECK_STREQ(run(&o, "<!-- INFO END -->\n前言说明。\n\n一、将第一条修改为：\n\n“甲。”\n\n二、删去第二条。\n\n## 附\n\n三、施行。\n"),
                "前言说明。|一、将第一条修改为：“甲。”|二、删去第二条。|三、施行。");
    CHECK(st.items == 3 && st.paragraphs == 1);

    /* a preamble before the first article is its own unit; 一、 inside an
     * article joins it */
    CHECK_STREQ(run(&o, "序言正文。\n\n第一条 下列：\n\n一、甲；\n\n二、乙。\n\n第二条 完。\n"),
                "序言正文。|下列：一、甲；二、乙。|完。");

    /* tables: separator rows dropped, rows are paragraphs */
    CHECK_STREQ(run(&o, "| 甲 | 乙 |\n|---|:--|\n| 丙 | 丁 |\n\n***\n\n正文\n"), "甲乙|丙丁|正文");

    /* BOM and CR LF */
    CHECK_STREQ(run(&o, "\xef\xbb\xbf第一条 甲\r\n乙\r\n\r\n第二条 丙\r丁\n"), "甲乙|丙丁");
}

static void test_presets(void)
{
    text_opts o;
    text_opts_default(&o);
    o.min_chars = 1;
    const char *doc = "甲，Ａｂｃ　１２３ (注) （一）·“引”《法》x y 100%；\x01\x7f\xe2\x80\x8b丁 ⒈ α 䑩\n";
    /* legal: full-width letters/digits to ASCII; space kept only between
     * ASCII letters/digits; Chinese punctuation kept; controls removed */
    CHECK_STREQ(run(&o, doc), "甲，Abc 123(注)（一）·“引”《法》x y 100%；丁䑩");
    CHECK(st.dropped[TC_CONTROL] == 3);
    CHECK(st.normalised >= 7);
    CHECK(st.kept[TC_LATIN] == 5);
    CHECK(st.dropped[TC_OTHER] == 2);   /* ⒈ α */
    o.preset = TEXT_PRESET_STRICT;
    /* strict: exactly [\u4e00-\u9fa5a-zA-Z0-9()·] */
    CHECK_STREQ(run(&o, doc), "甲Abc123(注)一·引法xy100丁");
    CHECK(st.kept[TC_SPACE] == 0);
    CHECK(st.dropped[TC_HAN] == 1);     /* 䑩 U+4469 is outside U+4E00..9FA5 */

    /* every ASCII code point against the regex, one at a time */
    for (int ch = 0x20; ch < 0x7f; ch++) {
        char d[8] = {'x', (char)ch, 'x', '\n', 0};
        const char *r = run(&o, d);
        int keep = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   ch == '(' || ch == ')';
        if (ch == '#' || ch == '|' || ch == '<') continue;   /* structure characters */
        CHECK_MSG((strlen(r) == 3) == keep, "strict preset and 0x%02x: got '%s'", ch, r);
    }
    /* min_chars */
    o.preset = TEXT_PRESET_LEGAL;
    o.min_chars = 5;
    CHECK_STREQ(run(&o, "甲乙丙丁。\n\n甲乙\n\n（删去）\n"), "甲乙丙丁。");
    CHECK(st.short_units == 2 && st.short_chars == 6);
}

static void test_invalid(void)
{
    text_opts o;
    text_opts_default(&o);
    o.min_chars = 1;
    const char bad[] = "甲乙\xff\xfe丙\xe4\xb8\n\n丁\xc3\x28\n";
    flow_err err = {0, {0}};
    CHECK(clean(&o, bad, sizeof bad - 1, &err) == 0);
    CHECK_STREQ(joined, "甲乙丙|丁(");
    CHECK(st.invalid_sequences == 4);   /* ff, fe, truncated e4 b8, c3 */
    CHECK(st.dropped[TC_INVALID] == 4);
    o.invalid = TEXT_INVALID_REJECT;
    CHECK(clean(&o, bad, sizeof bad - 1, &err) == FLOW_E_INPUT);
    CHECK_CONTAINS(err.msg, "byte offset 6");
    /* binary */
    const char bin[] = "abc\0def";
    CHECK(clean(&o, bin, sizeof bin - 1, &err) == FLOW_E_INPUT);
    CHECK_CONTAINS(err.msg, "NUL byte at offset 3");
}

static void test_unit_and_json(void)
{
    text_opts o, back;
    text_opts_default(&o);
    o.preset = TEXT_PRESET_STRICT;
    o.min_chars = 9;
    flow_buf js;
    buf_init(&js);
    text_opts_to_json(&o, &js);
    flow_err err = {0, {0}};
    CHECK_OK(text_opts_from_json(js.data, js.len, &back, &err), err);
    CHECK(back.preset == TEXT_PRESET_STRICT && back.min_chars == 9 && back.strip_article_label == 1 &&
          back.invalid == TEXT_INVALID_REPLACE);
    const char *future = "{\"format\":\"flow-clean\",\"version\":99,\"preset\":\"legal\"}";
    CHECK(text_opts_from_json(future, strlen(future), &back, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "version 99");
    const char *other = "{\"format\":\"x\",\"version\":1}";
    CHECK(text_opts_from_json(other, strlen(other), &back, &err) == FLOW_E_CORRUPT);
    buf_release(&js);

    /* a real JSON reader: keys > 63 and values > 255 bytes, nested members
     * of a later version and \u escapes are read, not truncated or refused */
    flow_buf big;
    buf_init(&big);
    buf_adds(&big, "{\"format\":\"flow-clean\",\"version\":1,\"");
    for (int i = 0; i < 100; i++) buf_addc(&big, 'k');
    buf_adds(&big, "\":\"");
    for (int i = 0; i < 1000; i++) buf_adds(&big, i % 2 ? "x" : "\u4e2d");
    buf_adds(&big, "\",\"later\":{\"a\":[1,2]},\"preset\":\"\\u0073trict\",\"min_chars\":7,"
                   "\"article_label\":\"keep\"}");
    CHECK_OK(text_opts_from_json(big.data, big.len, &back, &err), err);
    CHECK(back.preset == TEXT_PRESET_STRICT && back.min_chars == 7 && back.strip_article_label == 0);
    big.len = 0;
    buf_adds(&big, "{\"format\":\"flow-clean\",\"version\":1,\"preset\":\"");
    for (int i = 0; i < 300; i++) buf_addc(&big, 'l');
    buf_adds(&big, "\"}");
    CHECK(text_opts_from_json(big.data, big.len, &back, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "unknown preset");
    CHECK(strlen(err.msg) > 300 || strstr(err.msg, "llllllllll") != NULL);
    const char *bad = "{\"format\":\"flow-clean\",\"version\":1,";
    CHECK(text_opts_from_json(bad, strlen(bad), &back, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "clean.json");
    buf_release(&big);

    flow_buf out;
    buf_init(&out);
    text_opts_default(&o);
    const char *q = "第十二条　当事人 应当\n遵循诚信原则。";
    CHECK_OK(text_clean_unit(&o, q, strlen(q), &out, NULL, &err), err);
    CHECK_STREQ(out.data, "当事人应当遵循诚信原则。");
    buf_release(&out);
}

static void test_corpus(void)
{
    flow_err err = {0, {0}};
    flow_corpus c;
    char *t = xstrdup("甲\n乙\n丙\n"), *u = xstrdup("b\tg1\td1\n\tg2\td2\na\tg1\td1\n"), *l = xstrdup("a\nb\n");
    CHECK_OK(corpus_parse(&c, t, strlen(t), u, strlen(u), l, strlen(l), &err), err);
    CHECK(c.n == 3 && c.nlabels == 2);
    CHECK(c.label_id[0] == 1 && c.label_id[1] == -1 && c.label_id[2] == 0);
    CHECK_STREQ(c.text + c.unit_off[1], "乙");
    CHECK_STREQ(c.group[1], "g2");
    CHECK_STREQ(c.doc[2], "d1");
    corpus_release(&c);
    /* mismatched line counts */
    t = xstrdup("甲\n乙\n"), u = xstrdup("a\tg\td\n");
    CHECK(corpus_parse(&c, t, strlen(t), u, strlen(u), NULL, 0, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "text has 2 lines, units has 1");
    /* unknown label */
    t = xstrdup("甲\n"), u = xstrdup("z\tg\td\n"), l = xstrdup("a\n");
    CHECK(corpus_parse(&c, t, strlen(t), u, strlen(u), l, strlen(l), &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "label 'z'");
    /* wrong field count */
    t = xstrdup("甲\n"), u = xstrdup("a\tg\n");
    CHECK(corpus_parse(&c, t, strlen(t), u, strlen(u), NULL, 0, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "units line 1");
}

int main(void)
{
    test_structure();
    test_presets();
    test_invalid();
    test_unit_and_json();
    test_corpus();
    return test_summary("clean_test");
}
