/* corpus_test.c — the corpus format (stages/text/corpus.c): the corpus.json
 * marker written by producers is accepted, unversioned / too old / too new
 * / foreign markers are refused with messages that say what to do, and
 * corpus_parse reads aligned text + units + labels. */
#include "test.h"
#include "stages/stages.h"

static int check_json(const char *js, flow_err *err)
{
    return corpus_format_check(js, strlen(js), "corpus.json", err);
}

int main(void)
{
    flow_err err = {0, {0}};
    flow_buf b;
    buf_init(&b);
    corpus_format_json(&b);
    CHECK_OK(corpus_format_check(b.data, b.len, "corpus.json", &err), err);
    CHECK_CONTAINS(b.data, "\"format\":\"flow-corpus\"");
    buf_release(&b);

    CHECK(check_json("{\"format\":\"flow-corpus\",\"version\":0}", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "version 0 is too old");
    CHECK_CONTAINS(err.msg, "rebuild");
    CHECK(check_json("{\"format\":\"flow-corpus\",\"version\":2}", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "version 2 is newer than this flow reads (1..1): update flow");
    CHECK(check_json("{\"format\":\"flow-corpus\",\"version\":1.5}", &err) == FLOW_E_CORRUPT);
    CHECK(check_json("{\"format\":\"flow-corpus\"}", &err) == FLOW_E_CORRUPT);
    CHECK(check_json("{\"format\":\"flow-clean\",\"version\":1}", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "\"flow-clean\", expected \"flow-corpus\"");
    CHECK(check_json("{\"version\":1}", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "missing");
    CHECK(check_json("{\"format\":", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "corpus.json");
    CHECK_OK(check_json(" {\"version\":1, \"format\":\"flow-corpus\", \"note\":[1]}\n", &err), err);

    /* corpus_parse: aligned parts, label ids from the labels part */
    flow_corpus c;
    char *text = xstrdup("一\n二\n"), *units = xstrdup("乙\tg\ta.md\n\t\tb.md\n"), *labels = xstrdup("甲\n乙\n");
    CHECK_OK(corpus_parse(&c, text, strlen(text), units, strlen(units), labels, strlen(labels), &err), err);
    CHECK(c.n == 2 && c.nlabels == 2 && c.label_id[0] == 1 && c.label_id[1] == -1);
    CHECK(strcmp(c.text + c.unit_off[1], "二") == 0 && strcmp(c.doc[1], "b.md") == 0);
    corpus_release(&c);
    text = xstrdup("一\n"), units = xstrdup("乙\tg\ta.md\n\t\tb.md\n");
    CHECK(corpus_parse(&c, text, strlen(text), units, strlen(units), NULL, 0, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "text has 1 lines, units has 2");
    return test_summary("corpus_test");
}
