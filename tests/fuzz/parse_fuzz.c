/* parse_fuzz.c — libFuzzer target for the graph language: the parser
 * (ast_parse, ast_parse_value) and graph resolution (graph_load: types,
 * defaults, ranges, references, cycles, --set overrides) on arbitrary
 * bytes.  Any crash, sanitizer report, leak or hang is a bug; errors are
 * expected and must come back as FLOW_E_GRAPH with a message.
 *
 * Build and run (tests/fuzz_test.sh does this for ~20 s):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
 *       -I. tests/fuzz/parse_fuzz.c engine/parse.c engine/graph.c \
 *       engine/registry.c engine/base/{buf,error,hash,json,rng,utf8}.c -o parse_fuzz
 *   ./parse_fuzz -dict=tests/fuzz/graph.dict corpus/ tests/fuzz/seeds/
 * The input's last line, when it starts with "@set ", is also applied as
 * a --set override ("@set NODE.PARAM=VALUE").
 */
#include "engine/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Stages with every parameter type, input shape and resource setting. */
static const flow_param_def src_params[] = {
    { .name = "path", .type = FLOW_P_PATH, .def = NULL, .min = 1, .max = 0 },
    { .name = "n", .type = FLOW_P_INT, .def = "3", .min = 0, .max = 100 },
    { .name = "f", .type = FLOW_P_FLOAT, .def = "0.5", .min = 0, .max = 1 },
    { .name = "s", .type = FLOW_P_STRING, .def = "a", .min = 1, .max = 0, .choices = "a|b|c" },
    { .name = "free", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0 },
    { .name = "b", .type = FLOW_P_BOOL, .def = "false", .min = 1, .max = 0 },
    { .name = "li", .type = FLOW_P_LIST, .elem = FLOW_P_INT, .def = "[1, 2]", .min = -5, .max = 5 },
    { .name = "ls", .type = FLOW_P_LIST, .elem = FLOW_P_STRING, .def = "[]", .min = 1, .max = 0 },
    { .name = "lf", .type = FLOW_P_LIST, .elem = FLOW_P_FLOAT, .def = "[0.1]", .min = 1, .max = 0 },
};
static const flow_output_def src_outputs[] = { { "out", "" }, { "aux", "" } };
static int no_run(flow_ctx *c) { (void)c; return 0; }
static const flow_stage st_src = {
    .name = "src", .version = 1, .params = src_params, .nparams = 9,
    .outputs = src_outputs, .noutputs = 2, .run = no_run,
};
static const flow_param_def op_params[] = {
    { .name = "x", .type = FLOW_P_INT, .def = "1", .min = 1, .max = 0 },
};
static const flow_input_def op_inputs[] = {
    { .name = "in", .many = 1 },
    { .name = "one" , .optional = 1 },
    { .name = "more", .optional = 1, .many = 1 },
};
static const flow_stage st_op = {
    .name = "op", .version = 2, .params = op_params, .nparams = 1,
    .inputs = op_inputs, .ninputs = 3, .res = { .threads = 2, .gpus = 1, .cpu_fallback = 1 },
    .run = no_run,
};

static flow_registry *reg;
static char path[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reg) {
        reg = registry_new();
        registry_add(reg, &st_src);
        registry_add(reg, &st_op);
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/flow-fuzz-%d.graph", tmp && *tmp ? tmp : "/tmp",
                 (int)getpid());
    }
    flow_err err = {0};
    ast_file f;
    memset(&f, 0, sizeof f);
    if (ast_parse((const char *)data, size, "fuzz.graph", &f, &err) == 0) ast_release(&f);
    else if (!err.msg[0]) __builtin_trap();     /* an error must say what */

    /* one value, as --set would parse it */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    ast_value v;
    memset(&v, 0, sizeof v);
    if (ast_parse_value(text, "--set fuzz", &v, &err) == 0) ast_value_release(&v);

    /* the whole resolution, through a file as the CLI does it */
    char *set = NULL;
    char *last = strrchr(text, '\n');
    if (last && strncmp(last + 1, "@set ", 5) == 0) set = last + 6;
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(data, 1, size, fp);
        fclose(fp);
        flow_graph *g = NULL;
        char *sets[1] = { set };
        int rc = graph_load(&g, path, reg, sets, set ? 1 : 0, &err);
        if (rc == 0) {
            /* a resolved graph is consistent: a topological order of all */
            for (int k = 0; k < g->n; k++)
                if (g->topo[k] < 0 || g->topo[k] >= g->n) __builtin_trap();
            graph_free(g);
        } else if (!err.msg[0]) {
            __builtin_trap();
        }
    }
    free(text);
    return 0;
}
