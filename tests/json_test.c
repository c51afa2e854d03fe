/* json_test.c — the JSON DOM reader/writer (engine/base/json.c): values, lookups,
 * escapes and surrogates, error offsets, the depth limit, round trips, and
 * random bytes that must never crash it (fixed seed). */
#include "engine/engine.h"
#include "test.h"

#include <stdint.h>

static json_value *parse(const char *s, flow_err *err)
{
    json_value *v = NULL;
    if (json_parse(s, strlen(s), "t.json", &v, err) != 0) return NULL;
    return v;
}

static void test_values(void)
{
    flow_err err;
    const char *text = "{\"node\":\"tok\",\"version\":3,\"params\":{\"vocab_size\":8000,\"rate\":1e-4,"
                       "\"on\":true,\"off\":false,\"none\":null,\"list\":[1,\"two\",[3]]},"
                       "\"metrics\":{\"split.train.units\":17,\"a\":{\"b\":2.5}},"
                       "\"s\":\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}";
    json_value *v = parse(text, &err);
    CHECK_MSG(v != NULL, "%s", err.msg);
    if (!v) return;
    CHECK(json_typeof(v) == JSON_OBJ && json_len(v) == 5);
    CHECK_STREQ(json_str(json_get(v, "node"), NULL), "tok");
    CHECK(json_num(json_get(v, "version"), 0) == 3);
    const json_value *p = json_get(v, "params");
    CHECK(json_num(json_get(p, "vocab_size"), 0) == 8000);
    CHECK(json_num(json_get(p, "rate"), 0) == 1e-4);
    CHECK(json_bool(json_get(p, "on"), 0) == 1 && json_bool(json_get(p, "off"), 1) == 0);
    CHECK(json_typeof(json_get(p, "none")) == JSON_NULL);
    const json_value *l = json_get(p, "list");
    CHECK(json_len(l) == 3 && json_num(json_at(l, 0), 0) == 1);
    CHECK_STREQ(json_str(json_at(l, 1), NULL), "two");
    CHECK(json_len(json_at(l, 2)) == 1 && json_at(l, 3) == NULL && json_at(l, -1) == NULL);
    CHECK(json_num(json_path(v, "metrics.split.train.units"), 0) == 17);
    CHECK(json_num(json_path(v, "metrics.a.b"), 0) == 2.5);
    CHECK(json_path(v, "metrics.a.c") == NULL && json_path(v, "nope.x") == NULL);
    CHECK_STREQ(json_str(json_get(v, "s"), NULL), "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    CHECK_STREQ(json_key_at(v, 0), "node");
    CHECK(json_key_at(l, 0) == NULL);
    /* fallbacks for absent and mistyped values */
    CHECK(json_num(json_get(v, "node"), -1) == -1);
    CHECK_STREQ(json_str(json_get(v, "version"), "d"), "d");
    CHECK(json_get(l, "x") == NULL && json_get(NULL, "x") == NULL && json_len(NULL) == 0);
    /* round trip: compact and pretty both parse back to the same text */
    flow_buf a, b;
    buf_init(&a);
    buf_init(&b);
    json_write(&a, v, 0);
    json_value *v2 = NULL;
    CHECK(json_parse(a.data, a.len, NULL, &v2, &err) == 0);
    json_write(&b, v2, 2);
    json_value *v3 = NULL;
    CHECK(json_parse(b.data, b.len, NULL, &v3, &err) == 0);
    flow_buf c;
    buf_init(&c);
    json_write(&c, v3, 0);
    CHECK_STREQ(c.data, a.data);
    CHECK_CONTAINS(b.data, "\n  \"node\": \"tok\"");
    buf_release(&a);
    buf_release(&b);
    buf_release(&c);
    json_free(v2);
    json_free(v3);
    json_free(v);
    json_free(NULL);
    /* scalars and whitespace at the top level */
    v = parse("  -0.5e2 \n", &err);
    CHECK(v && json_num(v, 0) == -50);
    json_free(v);
    v = parse("[]", &err);
    CHECK(v && json_len(v) == 0);
    json_free(v);
}

static void test_errors(void)
{
    struct { const char *text, *msg; } bad[] = {
        { "", "t.json: invalid JSON at offset 0: unexpected end of input" },
        { "{\"a\":1,}", "at offset 7: expected a string key" },
        { "[1 2]", "at offset 3: expected ',' or ']'" },
        { "{\"a\" 1}", "at offset 5: expected ':'" },
        { "\"abc", "unterminated string" },
        { "\"a\\x\"", "unknown escape" },
        { "\"\\ud800\"", "unpaired surrogate" },
        { "\"\\udc00\"", "unpaired surrogate" },
        { "\"\\u0000\"", "\\u0000 is not supported" },
        { "\"a\x01\"", "control character" },
        { "\"\xff\"", "invalid UTF-8" },
        { "1 2", "trailing characters" },
        { "tru", "unexpected character 't'" },
        { "-", "bad number" },
        { "1.2.3", "bad number" },
        { "nul", "unexpected character 'n'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        flow_err err = { 0, "" };
        json_value *v = parse(bad[i].text, &err);
        CHECK_MSG(v == NULL, "accepted '%s'", bad[i].text);
        CHECK_CONTAINS(err.msg, bad[i].msg);
        CHECK(err.code == FLOW_E_CORRUPT);
        json_free(v);
    }
    /* nesting: 256 levels are fine, 300 are refused without recursion trouble */
    char deep[1000];
    for (int n = 0; n < 2; n++) {
        int levels = n ? 300 : 256;
        memset(deep, '[', (size_t)levels);
        memset(deep + levels, ']', (size_t)levels);
        deep[2 * levels] = 0;
        flow_err err;
        json_value *v = parse(deep, &err);
        CHECK(n ? v == NULL : v != NULL);
        if (n) CHECK_CONTAINS(err.msg, "nested deeper than 256");
        json_free(v);
    }
}

static void test_fuzz(void)
{
    uint64_t seed = 99;
    const char *base = "{\"a\":[1,2.5,\"x\\n\",{\"b\":null}],\"c\":true}";
    size_t bl = strlen(base);
    char buf[128];
    int ok = 0;
    for (int it = 0; it < 20000; it++) {
        size_t len = bl;
        memcpy(buf, base, bl);
        for (int m = 0; m < 1 + it % 3; m++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            buf[(seed >> 20) % bl] = (char)(seed >> 56);
        }
        if (it % 5 == 0) len = (seed >> 8) % bl;
        json_value *v = NULL;
        flow_err err;
        int rc = json_parse(buf, len, NULL, &v, &err);
        CHECK(rc == 0 || rc == FLOW_E_CORRUPT);
        CHECK((rc == 0) == (v != NULL));
        ok += rc == 0;
        json_free(v);
        if (test_failures > 10) break;
    }
    CHECK(ok > 0);
}

int main(void)
{
    test_values();
    test_errors();
    test_fuzz();
    return test_summary("json_test");
}
