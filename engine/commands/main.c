/* main.c — the `flow` command: global flags, then dispatch through the
 * command table.  Each command lives in its own cmd_<name>.c beside this
 * file (declared in commands.h) and returns the exit code: 0 ok, 1 build
 * failure or damage found, 2 usage or graph error. */
#include "commands.h"
#include "kernels/kernels.h"

#include <string.h>
#include <unistd.h>

typedef struct command {
    const char *name;
    const char *usage;
    const char *help;
    int (*fn)(int argc, char **argv);
} command;

static const command commands[] = {
    { "build", "GRAPH [TARGET...] [--set NODE.PARAM=VALUE] [--cache DIR] [--json] [-j N]\n"
               "          [--gpus LIST|none] [--keep-going|--fail-fast] [-v]",
      "build the graph's nodes (all sinks, or the targets and what they need)", cmd_build },
    { "status", "GRAPH [--set ...] [--cache DIR] [--json]",
      "show which nodes are up to date or stale, and why", cmd_status },
    { "why", "GRAPH NODE [--set ...] [--cache DIR]",
      "explain what changed since the node's last build", cmd_why },
    { "dag", "GRAPH [--set ...] [--dot]", "print the graph's nodes and edges", cmd_dag },
    { "ls", "[--cache DIR] [--json]", "list the artifacts in the cache", cmd_ls },
    { "show", "HASH [--parts] [--json] [--cache DIR]", "print an artifact's parts (--parts: all of them) and metadata", cmd_show },
    { "cat", "HASH [PART] [-o FILE] [--cache DIR]", "write a part's bytes (no PART: list parts)", cmd_cat },
    { "log", "HASH [--cache DIR]", "print the log of the run that made an artifact", cmd_log },
    { "gc", "[GRAPH...] [--set N.P=V] [--keep-last N] [--cache DIR]",
      "delete artifacts that neither the graphs (current keys, --set variant, last N builds) "
      "nor a running build use; give the space back to the disk", cmd_gc },
    { "verify", "[--repair] [--cache DIR]", "re-read and check every stored chunk; exit 1 on damage; --repair removes what is damaged so the next build rebuilds it", cmd_verify },
    /* model commands: apply or export a model artifact */
    { "classify", "HASH [FILE...|-] [--all] [--cache DIR]",
      "predict labels of text lines (stdin) or files with a classifier artifact", cmd_classify },
    { "eval", "HASH DIR [--json] [--cache DIR]",
      "accuracy and macro-F1 of a classifier on a labelled folder DIR/<label>/*", cmd_eval },
    { "export", "HASH --format hf|onnx -o DIR [--opset N] [--external-data] [--cache DIR]",
      "write a bert model as a HuggingFace folder (config, safetensors, tokenizer), or a classifier as ONNX (model.onnx, tokenizer.json, config.json)", cmd_export },
    /* reports and metrics (read the cache, run nothing) */
    { "report", "[GRAPH] [--open [-o FILE]] [--set ...] [--cache DIR]",
      "print the last report's table (--open: write its HTML page to a file and print the path)", cmd_report },
    { "metrics", "GRAPH [--json] | diff HASH_A HASH_B [--json] | diff GRAPH [--json]",
      "every node's metrics from the cache; diff: changed metrics (old, new, delta) between two "
      "artifacts, or between the graph's last build and the one before", cmd_metrics },
    { "plan", "GRAPH [--set ...] [--gpu-mem 8GiB] [--gpus N] [--precision fp32|bf16|fp16]",
      "per training node: parameters and FLOPs per module, memory per device, and a batch/recomputation plan that fits --gpu-mem", cmd_plan },
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: flow [-C DIR] COMMAND [ARGS]\n\n"
               "Builds a .graph pipeline; each node's output is cached under a content hash.\n\n"
               "commands:\n");
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'flow COMMAND --help' shows a command's options.  GRAPH is a path or a name\n"
               "in ./graphs/.  HASH is any unique prefix of at least 6 hex digits.\n"
               "Exit codes: 0 ok, 1 build failure, 2 usage or graph error.\n");
}

int main(int argc, char **argv)
{
    /* a machine whose fp32 GEMM differs from the pinned one (kernels/cpu/blas.c)
     * keeps its bytes under keys of its own */
    if (!blas_kernels_pinned()) {
        char tag[96];
        snprintf(tag, sizeof tag, "openblas %s", blas_kernels());
        key_set_platform(tag);
    }
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--version")) {
            printf("flow 0.1 (fp32 GEMM: OpenBLAS %s kernels%s)\n", blas_kernels(),
                   blas_kernels_pinned() ? ", pinned: the same bytes on every x86-64 with AVX2 and FMA"
                                         : "; not the pinned ones, so node keys hold them");
            return 0;
        }
        if (!strcmp(argv[i], "-C")) {
            if (i + 1 >= argc) return cli_usage_error("-C needs a folder");
            if (chdir(argv[++i]) != 0) return cli_usage_error("-C %s: cannot enter the folder", argv[i]);
            continue;
        }
        return cli_usage_error("unknown option '%s' before the command; see 'flow --help'", argv[i]);
    }
    if (i >= argc) { usage(stderr); return 2; }
    if (!strcmp(argv[i], "help")) {
        if (i + 1 >= argc) { usage(stdout); return 0; }
        for (int k = 0; k < NCOMMANDS; k++)
            if (!strcmp(argv[i + 1], commands[k].name)) {
                printf("usage: flow %s %s\n\n%s\n", commands[k].name, commands[k].usage, commands[k].help);
                return 0;
            }
        return cli_usage_error("help: unknown command '%s'; see 'flow --help'", argv[i + 1]);
    }
    for (int k = 0; k < NCOMMANDS; k++)
        if (!strcmp(argv[i], commands[k].name)) {
            for (int j = i + 1; j < argc; j++)
                if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
                    printf("usage: flow %s %s\n\n%s\n", commands[k].name, commands[k].usage, commands[k].help);
                    return 0;
                }
            return commands[k].fn(argc - i, argv + i);
        }
    return cli_usage_error("unknown command '%s'; see 'flow --help' for the list", argv[i]);
}
