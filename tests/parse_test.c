/* parse_test.c — the graph language: valid graphs resolve as written, every
 * error kind is reported at the exact file:line:col, --set overrides, and
 * random bytes / mutated graphs never crash the parser (fixed seed). */
#include "engine/internal.h"
#include "stages/stages.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>

/* A test stage with one parameter of every type and two kinds of ports. */
static const flow_param_def typed_params[] = {
    { .name = "count", .type = FLOW_P_INT, .def = "5", .min = 1, .max = 100 },
    { .name = "rate", .type = FLOW_P_FLOAT, .def = "0.5", .min = 0, .max = 1 },
    { .name = "mode", .type = FLOW_P_STRING, .def = "fast", .min = 1, .max = 0, .choices = "fast|slow|exact" },
    { .name = "title", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0 },
    { .name = "train", .type = FLOW_P_BOOL, .def = "false", .min = 1, .max = 0 },
    { .name = "data", .type = FLOW_P_PATH, .def = "\"data/x\"", .min = 1, .max = 0 },
    { .name = "sizes", .type = FLOW_P_LIST, .elem = FLOW_P_INT, .def = "[1, 2]", .min = 0, .max = 10 },
    { .name = "vocab_size", .type = FLOW_P_INT, .def = NULL, .min = 1, .max = 0 },
};
static const flow_input_def typed_inputs[] = {
    { .name = "text", .many = 1 },
    { .name = "terms", .optional = 1 },
};
static const flow_output_def typed_outputs[] = { { "out", NULL }, { "ranked", NULL } };
static int run_nothing(flow_ctx *c) { (void)c; return 0; }
static const flow_stage stage_typed = {
    .name = "typed", .version = 1,
    .params = typed_params, .nparams = 8,
    .inputs = typed_inputs, .ninputs = 2,
    .outputs = typed_outputs, .noutputs = 2,
    .res = { .gpus = 0 },
    .run = run_nothing,
};

static char *dir;
static flow_registry *reg;

static char *write_graph(const char *name, const char *text, size_t len)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    /* a new file rather than truncating the old one: ext4 flushes a
     * truncated-and-rewritten file on close (auto_da_alloc), 2 ms each */
    unlink(p);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
    return p;
}

/* Loads text; returns rc and leaves the message in err. */
static int load(const char *text, char *const *sets, int nsets, flow_graph **g, flow_err *err)
{
    char *p = write_graph("t.graph", text, strlen(text));
    int rc = graph_load(g, p, reg, sets, nsets, err);
    free(p);
    return rc;
}

/* Expects an error whose message starts with "<dir>/t.graph:LINE:COL: error:"
 * and contains needle. */
static void expect_error(const char *text, int line, int col, const char *needle)
{
    flow_graph *g = NULL;
    flow_err err = { 0, "" };
    int rc = load(text, NULL, 0, &g, &err);
    CHECK_MSG(rc == FLOW_E_GRAPH, "rc %d for:\n%s", rc, text);
    CHECK(g == NULL);
    char want[4200];
    snprintf(want, sizeof want, "%s/t.graph:%d:%d: error: ", dir, line, col);
    CHECK_MSG(strncmp(err.msg, want, strlen(want)) == 0, "got \"%s\", want prefix \"%s\"", err.msg, want);
    CHECK_CONTAINS(err.msg, needle);
    graph_free(g);
}

static const char *valid =
    "# a comment\n"
    "laws = source {\n"
    "    path = \"sub/laws\"    # relative to the graph file\n"
    "    labels = folders\n"
    "}\n"
    "mined = typed { text = laws  vocab_size = 10 }\n"
    "tok = typed {\n"
    "    text = [laws, mined.out,\n"
    "            mined.ranked,]\n"
    "    terms = mined.ranked\n"
    "    vocab_size = 8000\n"
    "    rate = 1e-4; count = 7, train = true\n"
    "    mode = slow\n"
    "    title = \"a \\\"q\\\" \\u00e9\\n\"\n"
    "    sizes = [3, 4, 5]\n"
    "    data = \"../elsewhere/./y\"\n"
    "    gpus = all\n"
    "    threads = 3\n"
    "}\n"
    "wc = wordcount { input = tok.out  device = cpu }\n";

static void test_valid(void)
{
    flow_graph *g = NULL;
    flow_err err = { 0, "" };
    CHECK_OK(load(valid, NULL, 0, &g, &err), err);
    if (!g) return;
    CHECK(g->n == 4);
    int tok = graph_find(g, "tok"), laws = graph_find(g, "laws"), mined = graph_find(g, "mined");
    CHECK(tok == 2 && laws == 0 && mined == 1 && graph_find(g, "nope") == -1);
    graph_node *t = &g->nodes[tok];
    CHECK(t->line == 7 && t->col == 1);
    CHECK(t->params[0].i == 7 && t->params[0].line == 12);
    CHECK(t->params[1].f == 1e-4);
    CHECK_STREQ(t->params[2].s, "slow");
    CHECK_STREQ(t->params[3].s, "a \"q\" \xc3\xa9\n");
    CHECK(t->params[4].i == 1);
    char want[4200];
    snprintf(want, sizeof want, "%s", dir);
    char *slash = strrchr(want, '/');
    snprintf(slash, sizeof want - (size_t)(slash - want), "/elsewhere/y");
    CHECK_STREQ(t->params[5].s, want);
    CHECK_STREQ(t->params[5].raw, "../elsewhere/y");
    CHECK(t->params[6].nitems == 3 && t->params[6].items[2].i == 5);
    CHECK(t->params[7].i == 8000);
    CHECK(t->inputs[0].nrefs == 3);
    CHECK(t->inputs[0].refs[0].node == laws && t->inputs[0].refs[0].output == NULL);
    CHECK(t->inputs[0].refs[1].node == mined);
    CHECK_STREQ(t->inputs[0].refs[1].output, "out");
    CHECK_STREQ(t->inputs[0].refs[2].output, "ranked");
    CHECK(t->inputs[0].refs[2].line == 9 && t->inputs[0].refs[2].col == 13);
    CHECK(t->inputs[1].nrefs == 1 && t->inputs[1].refs[0].node == mined);
    CHECK(t->ndeps == 2 && t->deps[0] == laws && t->deps[1] == mined);
    CHECK(g->nodes[laws].nusers == 2 && g->nodes[laws].users[0] == mined && g->nodes[laws].users[1] == tok);
    CHECK(t->gpus == -1 && t->threads == 3);
    CHECK(g->nodes[3].gpus == 0 && g->nodes[3].device_auto == 1);
    /* defaults applied on mined */
    graph_node *m = &g->nodes[mined];
    CHECK(m->params[0].i == 5 && m->params[0].line == 0);
    CHECK_STREQ(m->params[2].s, "fast");
    CHECK(m->params[6].nitems == 2);
    CHECK(m->inputs[1].nrefs == 0);
    /* source path resolved against the graph's folder */
    snprintf(want, sizeof want, "%s/sub/laws", dir);
    CHECK_STREQ(g->nodes[laws].params[0].s, want);
    CHECK_STREQ(g->nodes[laws].params[1].s, "folders");
    /* topological order: every dependency first, file order otherwise */
    CHECK(g->topo[0] == laws && g->topo[1] == mined && g->topo[2] == tok && g->topo[3] == 3);
    CHECK(strlen(g->id) == 32);
    graph_free(g);

    /* empty file and comments only: an error (it would build nothing) */
    CHECK(load("# nothing\n\n", NULL, 0, &g, &err) == FLOW_E_GRAPH);
    CHECK(g == NULL);
    CHECK_CONTAINS(err.msg, ":1:1: error: no nodes declared");
    CHECK(load("", NULL, 0, &g, &err) == FLOW_E_GRAPH);
    CHECK_CONTAINS(err.msg, "no nodes declared");
    /* a file saved with a BOM and CRLF line ends */
    CHECK_OK(load("\xEF\xBB\xBFx = source {\r\n path = \"a\"\r\n}\r\n", NULL, 0, &g, &err), err);
    graph_free(g);
    /* a node defined after its user, forward references are fine */
    CHECK_OK(load("w = wordcount { input = s }\ns = source { path = p }\n", NULL, 0, &g, &err), err);
    if (g) CHECK(g->topo[0] == 1 && g->topo[1] == 0);
    graph_free(g);
}

static void test_errors(void)
{
    /* syntax */
    expect_error("a = source {\n  path \"x\"\n}\n", 2, 8, "expected '='");
    expect_error("a = source {\n  path = \"x\"\n", 1, 12, "never closed");
    expect_error("a = source {\n  path = \"x\n}\n", 2, 10, "unterminated string");
    expect_error("a = source {\n  path = \"a\\qb\"\n}\n", 2, 12, "unknown escape");
    expect_error("a = source {\n  path = [\"x\", [1]]\n}\n", 2, 16, "nested");
    expect_error("a = source {\n  path = 12abc\n}\n", 2, 10, "invalid number");
    expect_error("a = source {\n  path = 99999999999999999999\n}\n", 2, 10, "64 bits");
    expect_error("a = source { path = }\n", 1, 21, "expected a value");
    expect_error("= source {}\n", 1, 1, "expected a node definition");
    expect_error("a = {}\n", 1, 5, "expected a stage name");
    expect_error("a = source path = 1\n", 1, 12, "expected '{'");
    expect_error("a.b = source {}\n", 1, 1, "must not contain '.'");
    expect_error("a = source { path = \"x\" } @\n", 1, 27, "unexpected character '@'");
    expect_error("a = source { path = \"x\"\n  labels = [a, b\n}\n", 3, 1, "expected ',' or ']'");
    /* invalid UTF-8, NUL */
    expect_error("a = source {\n  path = \"ab\xff\"\n}\n", 2, 13, "invalid UTF-8");
    expect_error("a = source {\n  \xc3\x28 = 1\n}\n", 2, 3, "invalid UTF-8");
    {
        const char txt[] = "a = source {\n x\0 = 1 }\n";
        char *p = write_graph("t.graph", txt, sizeof txt - 1);
        flow_graph *g = NULL;
        flow_err err;
        CHECK(graph_load(&g, p, reg, NULL, 0, &err) == FLOW_E_GRAPH);
        CHECK_CONTAINS(err.msg, "t.graph:2:3: error: NUL byte");
        free(p);
    }
    /* meaning */
    expect_error("a = sorce { path = \"x\" }\n", 1, 5, "unknown stage 'sorce' (did you mean 'source'?); "
                 "known stages: ");
    expect_error("a = source { path = \"x\" }\nb = wordcount {\n  input = a\n  inptu = a\n}\n", 4, 3,
                 "no parameter or input 'inptu' (did you mean 'input'?)");
    expect_error("x = source { path = p }\n\n  t = typed { text = x }\n", 3, 3,
                 "missing required parameter 'vocab_size'");
    expect_error("t = typed { vocab_size = 3 }\n", 1, 1, "input 'text' is not bound");
    expect_error("x = source { path = p }\nt = typed { text = x\n vocab_size = \"big\" }\n", 3, 15,
                 "expects an integer, got a string 'big'");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  rate = yes }\n", 2, 46,
                 "expects a number");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  train = 1 }\n", 2, 47,
                 "expects true or false");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  title = 3 }\n", 2, 47,
                 "quote it");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  count = 0 }\n", 2, 47,
                 "count = 0 is out of range; expected 1..100");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  rate = 1.5 }\n", 2, 46,
                 "out of range");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  sizes = [1, 11] }\n", 2, 51,
                 "out of range");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  mode = slwo }\n", 2, 46,
                 "'slwo' is not a valid value for 'mode'; expected one of fast|slow|exact (did you mean 'slow'?)");
    expect_error("x = source { path = p }\nt = typed { text = x  vocab_size = 1  count = [1] }\n", 2, 47,
                 "not a list");
    expect_error("x = source { path = p }\nt = typed { text = [x, y]  vocab_size = 1 }\n", 2, 24,
                 "undefined node 'y'");
    expect_error("xy = source { path = p }\nt = typed { text = xz  vocab_size = 1 }\n", 2, 20,
                 "(did you mean 'xy'?)");
    expect_error("x = source { path = p }\nu = typed { text = x  vocab_size = 1 }\n"
                 "t = typed { text = u.outt  vocab_size = 1 }\n", 3, 20,
                 "'u' (stage typed) has no output 'outt'; its outputs are: out, ranked");
    expect_error("x = source { path = p }\nt = typed { text = x  terms = [x]  vocab_size = 1 }\n", 2, 31,
                 "takes one node, not a list");
    expect_error("x = source { path = p }\nt = typed { text = \"x\"  vocab_size = 1 }\n", 2, 20,
                 "expects a node reference");
    expect_error("x = source { path = p }\nt = typed { text = x.a.b  vocab_size = 1 }\n", 2, 20,
                 "not a valid reference");
    expect_error("x = source { path = p }\ny = source { path = q }\n\n  x = source { path = r }\n", 4, 3,
                 "duplicate node 'x'; first defined at ");
    expect_error("x = source { path = p  path = q }\n", 1, 24, "'path' is set twice");
    expect_error("x = source { path = p  gpus = many }\n", 1, 31, "expected a count");
    expect_error("x = source { path = p  device = tpu }\n", 1, 33, "auto|cpu|gpu");
    expect_error("x = source { path = p  threads = 0 }\n", 1, 34, "1..4096");
    expect_error("x = source { path = \"\" }\n", 1, 21, "empty path");
    /* cycles, with every node and its line */
    expect_error("a = wordcount { input = c }\nb = wordcount { input = a }\nc = wordcount { input = [b] }\n",
                 1, 1, "cycle: a (line 1) -> c (line 3) -> b (line 2) -> a (line 1)");
    expect_error("s = source { path = p }\n\na = concat { input = [s, a] }\n", 3, 1,
                 "cycle: a (line 3) -> a (line 3)");
}

static void test_sets(void)
{
    const char *text = "x = source { path = p }\nt = typed { text = x  vocab_size = 1 }\n";
    flow_graph *g = NULL;
    flow_err err;
    char *ok[] = { "t.vocab_size=8000", "t.mode=exact", "t.sizes=[7, 8]", "t.title=\"hi there\"", "t.threads=2" };
    CHECK_OK(load(text, ok, 5, &g, &err), err);
    if (g) {
        graph_node *t = &g->nodes[1];
        CHECK(t->params[7].i == 8000);
        CHECK_STREQ(t->params[2].s, "exact");
        CHECK(t->params[6].nitems == 2 && t->params[6].items[1].i == 8);
        CHECK_STREQ(t->params[3].s, "hi there");
        CHECK(t->threads == 2);
    }
    graph_free(g);
    struct { const char *set, *msg; } bad[] = {
        { "t.vocab_size=big", "--set t.vocab_size: error: node 't': parameter 'vocab_size' expects an integer" },
        { "t.count=1000", "--set t.count: error: node 't': count = 1000 is out of range" },
        { "t.vocab_sise=3", "--set t.vocab_sise: error: node 't': stage 'typed' has no parameter or input "
                            "'vocab_sise' (did you mean 'vocab_size'?)" },
        { "u.count=3", "--set u.count: error: no node 'u'" },
        { "t.count", "--set t.count: error: expected NODE.PARAM=VALUE" },
        { "t.count=", "--set t.count: error: empty value" },
        { "t.count=[1", "--set t.count: error: list is never closed" },
        { "t.count=1 2", "--set t.count: error: unexpected number 2" },
        { "t.text=nope", "--set t.text: error: node 't': input 'text' refers to undefined node 'nope'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *s[] = { (char *)bad[i].set };
        g = NULL;
        int rc = load(text, s, 1, &g, &err);
        CHECK_MSG(rc == FLOW_E_GRAPH && g == NULL, "--set %s: rc %d", bad[i].set, rc);
        CHECK_MSG(strncmp(err.msg, bad[i].msg, strlen(bad[i].msg)) == 0, "got \"%s\", want \"%s\"",
                  err.msg, bad[i].msg);
        graph_free(g);
    }
}

/* Parameters and inputs a stage uses only in some configurations
 * (flow_applies_def): set while ignored is an error at the place it was
 * set; where they apply, or left unset, the graph loads. */
static void test_applies(void)
{
    const char *head = "s = source { path = p  labels = folders }\n"
                       "tok = bpe { text = [s] }\n"
                       "pt = pretrain { train = s  tokenizer = tok }\n";
    char text[2048];
    const char *arch[] = { "hidden = 64", "layers = 2", "heads = 2", "intermediate = 64",
                           "model_max_len = 64", "tokenizer = tok" };
    for (int i = 0; i < 6; i++) {
        snprintf(text, sizeof text, "%sft = finetune { train = s  dev = s  base = pt  %s }\n", head, arch[i]);
        char name[64];
        snprintf(name, sizeof name, "'%.*s' is used only when input 'base' is unbound",
                 (int)strcspn(arch[i], " "), arch[i]);
        expect_error(text, 4, 48, name);
        /* random init: the architecture applies */
        snprintf(text, sizeof text, "%sft = finetune { train = s  dev = s  tokenizer = tok  %s }\n",
                 head, strncmp(arch[i], "tokenizer", 9) == 0 ? "" : arch[i]);
        flow_graph *g = NULL;
        flow_err err;
        CHECK_OK(load(text, NULL, 0, &g, &err), err);
        graph_free(g);
    }
    snprintf(text, sizeof text, "%sft = finetune { train = s  dev = s  base = pt  max_steps = 5  epochs = 2 }\n", head);
    expect_error(text, 4, 63, "parameter 'epochs' is used only when max_steps = 0 (max_steps > 0 sets");
    expect_error("s = source { path = p  labels = folders }\ntok = bpe { text = [s] }\n"
                 "pt = pretrain { train = s  tokenizer = tok  terms = s }\n",
                 3, 45, "input 'terms' is used only when whole_term = true");
    expect_error("s = source { path = p  group_sep = \"_\" }\n", 1, 24,
                 "parameter 'group_sep' is used only when labels = folders");
    /* where they apply, they are accepted */
    flow_graph *g = NULL;
    flow_err err;
    CHECK_OK(load("s = source { path = p  labels = folders  group_sep = \"_\" }\n"
                  "tok = bpe { text = [s] }\n"
                  "pt = pretrain { train = s  tokenizer = tok  terms = s  whole_term = true  epochs = 2 }\n"
                  "ft = finetune { train = s  dev = s  base = pt  max_steps = 3 }\n", NULL, 0, &g, &err), err);
    graph_free(g);
    /* --set names the override */
    g = NULL;
    char *set[] = { "ft.hidden=128" };
    snprintf(text, sizeof text, "%sft = finetune { train = s  dev = s  base = pt }\n", head);
    CHECK(load(text, set, 1, &g, &err) == FLOW_E_GRAPH && g == NULL);
    CHECK_CONTAINS(err.msg, "--set ft.hidden: error: node 'ft': parameter 'hidden' is used only when input 'base' is unbound");
    graph_free(g);
}

/* Random bytes and single-byte mutations of a valid graph: must return 0 or
 * FLOW_E_GRAPH and never crash (run under ASan in CI). */
static void test_fuzz(void)
{
    uint64_t seed = 12345;
    size_t vlen = strlen(valid);
    char *buf = malloc(vlen + 64);
    int ok = 0, errs = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len;
        if (it % 3 == 0) {
            len = (seed >> 33) % 200;
            for (size_t i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = (char)(seed >> 56);
            }
        } else {
            memcpy(buf, valid, vlen);
            len = vlen;
            for (int m = 0; m < 1 + it % 4; m++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t pos = (seed >> 20) % vlen;
                const char alphabet[] = "{}[]=,;\"#\\.\n x0-e\xff\xc3";
                buf[pos] = alphabet[(seed >> 40) % (sizeof alphabet - 1)];
            }
        }
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        char *p = write_graph("f.graph", buf, len);
        flow_graph *g = NULL;
        flow_err err;
        int rc = graph_load(&g, p, reg, NULL, 0, &err);
        CHECK_MSG(rc == 0 || rc == FLOW_E_GRAPH, "fuzz iteration %d: rc %d", it, rc);
        CHECK_MSG(rc != 0 || g != NULL, "fuzz %d", it);
        if (rc == 0) ok++; else { errs++; CHECK_CONTAINS(err.msg, "error: "); }
        graph_free(g);
        free(p);
        if (test_failures > 20) break;
    }
    printf("fuzz: %d parsed, %d rejected\n", ok, errs);
    CHECK(ok > 0 && errs > 0);
    free(buf);
}

static void test_locate(void)
{
    char *p = NULL;
    flow_err err;
    char *old = getcwd(NULL, 0);
    CHECK(chdir(dir) == 0);
    CHECK(mkdir("graphs", 0755) == 0);
    FILE *f = fopen("graphs/demo.graph", "w");
    fputs("# empty\n", f);
    fclose(f);
    CHECK_OK(graph_locate("demo", &p, &err), err);
    CHECK_STREQ(p, "graphs/demo.graph");
    free(p);
    CHECK_OK(graph_locate("demo.graph", &p, &err), err);
    CHECK_STREQ(p, "graphs/demo.graph");
    free(p);
    CHECK(graph_locate("missing", &p, &err) == FLOW_E_USAGE);
    CHECK_CONTAINS(err.msg, "graph 'missing' not found");
    CHECK(graph_locate("no/such.graph", &p, &err) == FLOW_E_USAGE);
    CHECK(chdir(old) == 0);
    free(old);
}

int main(void)
{
    dir = test_tmpdir("parse");
    reg = registry_new();
    stages_register_all(reg);
    registry_add(reg, &stage_typed);
    test_valid();
    test_errors();
    test_sets();
    test_applies();
    test_fuzz();
    test_locate();
    registry_free(reg);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return test_summary("parse_test");
}
