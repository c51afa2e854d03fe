/* cmd_plan.c — `flow plan GRAPH [--set ...] [--gpu-mem 8GiB] [--gpus N]
 * [--precision fp32|bf16|fp16]`: for each training node (pretrain,
 * finetune) of the resolved graph, its parameter and FLOP table per module
 * and its memory plan per device (kernels/plan.h), without running
 * anything.  Architecture and batch come from the node's parameters; the
 * vocabulary from the bpe node it reads; a finetune's label count from the
 * labelled source folder upstream (counted now). */
#include "commands.h"
#include "kernels/plan.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const graph_value *param(const graph_node *nd, const char *name)
{
    for (int i = 0; i < nd->stage->nparams; i++)
        if (!strcmp(nd->stage->params[i].name, name)) return &nd->params[i];
    return NULL;
}
static int64_t pint(const graph_node *nd, const char *name) { return param(nd, name)->i; }

/* The node bound to input port (first ref), or -1. */
static int input_node(const graph_node *nd, const char *port)
{
    for (int p = 0; p < nd->stage->ninputs; p++)
        if (!strcmp(nd->stage->inputs[p].name, port) && nd->inputs[p].nrefs)
            return nd->inputs[p].refs[0].node;
    return -1;
}

static int vocab_of(const flow_graph *g, const graph_node *nd, int *V, flow_err *e)
{
    int t = input_node(nd, "tokenizer");
    if (t < 0 || strcmp(g->nodes[t].stage->name, "bpe"))
        return flow_fail(e, FLOW_E_GRAPH, "node '%s': its tokenizer input is not a bpe node, so the vocabulary size is unknown before a build",
                         nd->name);
    *V = (int)pint(&g->nodes[t], "vocab_size");
    return 0;
}

/* Label folders of the first labelled source upstream of node i (depth
 * first), or 0 if there is none. */
static int label_count(const flow_graph *g, int i, char *seen)
{
    if (seen[i]) return 0;
    seen[i] = 1;
    const graph_node *nd = &g->nodes[i];
    if (!strcmp(nd->stage->name, "source")) {
        const graph_value *l = param(nd, "labels"), *p = param(nd, "path");
        if (!l || !p || !l->s || strcmp(l->s, "folders") || !p->s) return 0;
        DIR *d = opendir(p->s);
        if (!d) return 0;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char path[4096];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", p->s, de->d_name);
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) n++;
        }
        closedir(d);
        return n;
    }
    for (int k = 0; k < nd->ndeps; k++) {
        int n = label_count(g, nd->deps[k], seen);
        if (n) return n;
    }
    return 0;
}

/* Fills r from a pretrain or finetune node; *note gets a remark or "". */
static int request_of(const flow_graph *g, int i, plan_request *r, char *note, size_t nn, flow_err *e)
{
    const graph_node *nd = &g->nodes[i];
    memset(r, 0, sizeof *r);
    note[0] = 0;
    bert_config_default(&r->cfg);
    const graph_node *arch = nd;
    int rc;
    if (!strcmp(nd->stage->name, "finetune")) {
        int b = input_node(nd, "base");
        if (b >= 0 && strcmp(g->nodes[b].stage->name, "pretrain"))
            return flow_fail(e, FLOW_E_GRAPH, "node '%s': base '%s' is not a pretrain node, so its architecture is unknown before a build",
                             nd->name, g->nodes[b].name);
        if (b >= 0) arch = &g->nodes[b];
    }
    if ((rc = vocab_of(g, arch, &r->cfg.vocab_size, e))) return rc;
    r->cfg.hidden = (int)pint(arch, "hidden");
    r->cfg.layers = (int)pint(arch, "layers");
    flow_err shape = { 0 };
    if (bert_config_uniform(&r->cfg, (int)pint(arch, "heads"), (int)pint(arch, "intermediate"), &shape))
        return flow_fail(e, FLOW_E_GRAPH, "node '%s': %s", nd->name, shape.msg);
    r->cfg.max_len = (int)pint(arch, arch == nd && param(nd, "model_max_len") ? "model_max_len" : "max_len");
    r->cfg.hidden_dropout = r->cfg.attn_dropout = (float)param(nd, "dropout")->f;
    r->batch = (int)pint(nd, "batch");
    r->accum = (int)pint(nd, "grad_accum");
    if (!strcmp(nd->stage->name, "pretrain")) {
        r->cfg.mode = BERT_MODE_MLM;
        r->head = BERT_HEAD_MLM;
        r->seq = r->cfg.max_len;
        /* upper bound: every id is a real token */
        r->mlm_rows = param(nd, "mask_prob")->f * r->seq;
    } else {
        r->cfg.mode = BERT_MODE_CLASSIFY;
        r->head = BERT_HEAD_CLASSIFY;
        int T = (int)pint(nd, "max_len");
        r->seq = T > 0 && T <= r->cfg.max_len ? T : r->cfg.max_len;
        char *seen = xcalloc((size_t)g->n, 1);
        int C = label_count(g, i, seen);
        free(seen);
        if (C < 1) {
            C = 2;
            snprintf(note, nn, "no labelled source folder upstream: the classifier is planned with 2 labels");
        }
        r->cfg.num_labels = C;
    }
    return bert_config_validate(&r->cfg, e);
}

static void mib(flow_buf *b, const char *what, uint64_t v)
{
    buf_printf(b, "    %-10s %10.1f MiB\n", what, (double)v / 1048576.0);
}

static void print_memory(flow_buf *b, const plan_memory *m)
{
    mib(b, "params", m->params);
    mib(b, "grads", m->grads);
    mib(b, "master", m->master);
    mib(b, "moments", m->moments);
    mib(b, "acts", m->acts);
    mib(b, "workspace", m->workspace);
    mib(b, "nccl", m->nccl);
    mib(b, "total", m->total);
}

static int plan_node(const flow_graph *g, int i, const plan_request *base, flow_buf *b, int *nofit, flow_err *e)
{
    const graph_node *nd = &g->nodes[i];
    plan_request r;
    char note[160];
    char msg[sizeof e->msg];
    int rc = request_of(g, i, &r, note, sizeof note, e);
    if (rc == FLOW_E_PARAM) {   /* the config's message: name the node, a graph error (exit 2) */
        snprintf(msg, sizeof msg, "%s", e->msg);
        return flow_fail(e, FLOW_E_GRAPH, "node '%s' (line %d): %s", nd->name, nd->line, msg);
    }
    if (rc) return rc;
    r.prec = base->prec;
    r.gpu_mem = base->gpu_mem;
    r.gpus = base->gpus ? base->gpus : nd->gpus > 0 ? nd->gpus : 1;
    plan_result res;
    if ((rc = plan_fit(&r, &res, e))) {
        snprintf(msg, sizeof msg, "%s", e->msg);
        return flow_fail(e, FLOW_E_GRAPH, "node '%s' (line %d): %s", nd->name, nd->line, msg);
    }
    plan_module *mods;
    int nm;
    if ((rc = plan_modules(&r, res.micro_batch, &mods, &nm, e))) return rc;
    const bert_config *c = &r.cfg;
    buf_printf(b, "node '%s' (%s, line %d): %s head, V %d H %d L %d heads %d I %d, seq %d, %s, %d GPU%s\n",
               nd->name, nd->stage->name, nd->line, r.head == BERT_HEAD_MLM ? "MLM" : "classifier",
               c->vocab_size, c->hidden, c->layers, c->heads[0], c->ffn[0], r.seq,
               plan_precision_name(r.prec), r.gpus, r.gpus > 1 ? "s" : "");
    if (note[0]) buf_printf(b, "  note: %s\n", note);
    buf_printf(b, "  %-12s %14s %16s   (micro-batch %d; MLM rows = mask_prob x seq)\n", "module", "params",
               "train GFLOP", res.micro_batch);
    size_t ptot = 0;
    double ftot = 0;
    for (int k = 0; k < nm; k++) {
        buf_printf(b, "  %-12s %14zu %16.2f\n", mods[k].name, mods[k].params, mods[k].flops / 1e9);
        ptot += mods[k].params;
        ftot += mods[k].flops;
    }
    buf_printf(b, "  %-12s %14zu %16.2f   (per optimizer step per device: %.1f GFLOP)\n", "total", ptot,
               ftot / 1e9, ftot * res.accum / 1e9);
    free(mods);
    long global = (long)r.batch * r.accum * r.gpus;
    buf_printf(b, "  requested: micro-batch %d x accum %d per device, global batch %ld\n", r.batch, r.accum, global);
    print_memory(b, &res.requested);
    if (!r.gpu_mem) {
        buf_printf(b, "  plan: no --gpu-mem given: not fitted\n\n");
        return 0;
    }
    double usable = 0.9 * (double)r.gpu_mem / 1048576.0;
    if (!res.fits) {
        *nofit = 1;
        buf_printf(b, "  plan: DOES NOT FIT %.1f MiB usable (90%% of --gpu-mem): even micro-batch 1 with "
                      "recomputation needs %.1f MiB; use more memory per GPU or a smaller model/seq\n\n",
                   usable, (double)res.mem.total / 1048576.0);
        return 0;
    }
    if (!res.changed) {
        buf_printf(b, "  plan: fits %.1f MiB usable (90%% of --gpu-mem) as requested: micro-batch %d x accum %d, "
                      "recomputation off (it would save %.1f MiB)\n\n",
                   usable, res.micro_batch, res.accum, (double)res.recompute_saving / 1048576.0);
        return 0;
    }
    buf_printf(b, "  plan: requested batch needs %.1f MiB > %.1f MiB usable (90%% of --gpu-mem); chose micro-batch %d x "
                  "accum %d (global batch %ld kept), recomputation %s",
               (double)res.requested.total / 1048576.0, usable, res.micro_batch, res.accum,
               (long)res.micro_batch * res.accum * r.gpus, res.recompute ? "ON" : "off");
    if (res.recompute) buf_printf(b, " (saves %.1f MiB of activations)", (double)res.recompute_saving / 1048576.0);
    buf_adds(b, "\n");
    print_memory(b, &res.mem);
    buf_adds(b, "\n");
    return 0;
}

int cmd_plan(int argc, char **argv)
{
    plan_request base;
    memset(&base, 0, sizeof base);
    base.prec = PLAN_BF16;
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0, rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *v;
        int miss;
        flow_err err;
        if (i && (v = cli_optval(argc, argv, &i, "--gpu-mem", &miss))) {
            if (miss) rc = cli_usage_error("--gpu-mem needs a size such as 8GiB");
            else if (plan_parse_bytes(v, "--gpu-mem", &base.gpu_mem, &err)) rc = cli_usage_error("%s", err.msg);
        } else if (i && (v = cli_optval(argc, argv, &i, "--gpus", &miss))) {
            char *end;
            long n = miss ? 0 : strtol(v, &end, 10);
            if (miss || !*v || *end || n < 1 || n > 4096)
                rc = cli_usage_error("--gpus: '%s' is not a GPU count (a whole number 1..4096)", v);
            base.gpus = (int)n;
        } else if (i && (v = cli_optval(argc, argv, &i, "--precision", &miss))) {
            if (miss || plan_precision_parse(v, &base.prec))
                rc = cli_usage_error("--precision: '%s' is not fp32, bf16 or fp16", v);
        } else {
            rest[nrest++] = argv[i];
        }
    }
    cli_args a;
    memset(&a, 0, sizeof a);
    int parsed = 0;
    if (!rc) { rc = cli_parse(nrest, rest, "set", &a); parsed = 1; }
    if (!rc && a.npos != 1)
        rc = cli_usage_error("plan: usage: flow plan GRAPH [--set ...] [--gpu-mem 8GiB] [--gpus N] [--precision fp32|bf16|fp16]");
    flow_registry *reg = NULL;
    flow_graph *g = NULL;
    flow_err err;
    if (!rc && cli_load_graph(a.pos[0], a.sets, a.nsets, &reg, &g, &err)) rc = cli_fail(&err);
    if (!rc) {
        flow_buf b;
        buf_init(&b);
        int any = 0, nofit = 0;
        for (int t = 0; t < g->n && !rc; t++) {
            const graph_node *nd = &g->nodes[g->topo[t]];
            if (strcmp(nd->stage->name, "pretrain") && strcmp(nd->stage->name, "finetune")) continue;
            any = 1;
            if (plan_node(g, g->topo[t], &base, &b, &nofit, &err)) rc = cli_fail(&err);
        }
        if (!rc && !any) buf_adds(&b, "no training node (pretrain, finetune) in this graph\n");
        if (!rc) buf_adds(&b, "estimate only: not yet checked against a measured GPU peak\n");
        if (!rc) fwrite(b.data ? b.data : "", 1, b.len, stdout);
        if (!rc && nofit) rc = 1;
        buf_release(&b);
    }
    graph_free(g);
    registry_free(reg);
    if (parsed) cli_args_release(&a);
    free(rest);
    return rc;
}
