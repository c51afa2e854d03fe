/* finetune.c — the `finetune` stage: sequence classification (BERT +
 * pooler + linear head, as transformers' BertForSequenceClassification)
 * on an encoded labelled corpus, starting from a pretrained model artifact
 * (`base`, kind bert-mlm or bert-cls) or, with base unbound, from a random
 * initialisation of the architecture given by the parameters (ablation).
 *
 * pooling = mean feeds the pooler the mean of the final hidden states over
 * the real positions instead of the [CLS] one (kernels.h); the artifact's
 * config records it, so every consumer (classify, eval, evaluate, quantize,
 * prune, distill, trim/extend-vocab, ONNX export) applies the same head.
 *
 * Each epoch (and every eval_every steps) the model is scored on dev; the
 * weights with the best dev macro-F1 are the ones written.  Optional class
 * weights (balanced: n / (C * count)) for the cross-entropy.  AdamW with
 * linear warmup/decay, clipping, gradient accumulation as in pretrain;
 * resumable: the checkpoint also holds the best weights so far and the
 * curves, so an interrupted run ends with the same bytes.
 *
 * Output: a model artifact of kind "bert-cls" (classifier.h): model.json
 * (config, labels, training summary), weights, tokenizer/..., clean.json,
 * plus loss_curve.tsv and dev_curve.tsv ("step \t accuracy \t macro_f1"). */
#include "cls_objective.h"
#include "stages/tokenizer/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const flow_param_def finetune_params[] = {
    { "epochs", FLOW_P_INT, 0, "3", 1, 10000, NULL, "passes over train (when max_steps = 0)" },
    { "max_steps", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "optimizer steps; 0 = epochs decide" },
    { "batch", FLOW_P_INT, 0, "32", 1, 65536, NULL, "sequences per micro-batch" },
    { "grad_accum", FLOW_P_INT, 0, "1", 1, 1024, NULL, "micro-batches per optimizer step" },
    { "lr", FLOW_P_FLOAT, 0, "0.0001", 0, 10, NULL, "peak learning rate" },
    { "warmup_ratio", FLOW_P_FLOAT, 0, "0.1", 0, 1, NULL, "share of steps with linear warmup" },
    { "weight_decay", FLOW_P_FLOAT, 0, "0.01", 0, 10, NULL, "AdamW decoupled weight decay" },
    { "max_grad_norm", FLOW_P_FLOAT, 0, "1.0", 0, 1e6, NULL, "global-norm clipping (0 = off)" },
    { "dropout", FLOW_P_FLOAT, 0, "0.1", 0, 0.9, NULL, "hidden and attention dropout" },
    { "class_weights", FLOW_P_STRING, 0, "none", 0, -1, "none|balanced", "cross-entropy class weights" },
    { "max_len", FLOW_P_INT, 0, "0", 0, 4096, NULL, "cut sequences to this many ids (0 = the model's max_len)" },
    { "seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "head initialisation, order and dropout seed" },
    { "pooling", FLOW_P_STRING, 0, "cls", 0, -1, "cls|mean",
      "classifier input: the [CLS] hidden state (transformers), or the mean of the final hidden states "
      "over the real positions ([CLS] and [SEP] included); then the pooler dense + tanh either way" },
    { "checkpoint_every", FLOW_P_INT, 0, "200", 0, 1e9, NULL, "steps between resumable checkpoints (0 = none); not in the key" },
    { "eval_every", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "steps between dev evaluations besides each epoch end (0 = epochs only)" },
    /* architecture, used only when base is unbound */
    { "hidden", FLOW_P_INT, 0, "256", 8, 4096, NULL, "hidden size (random init only)" },
    { "layers", FLOW_P_INT, 0, "4", 1, 48, NULL, "layers (random init only)" },
    { "heads", FLOW_P_INT, 0, "4", 1, 64, NULL, "attention heads (random init only)" },
    { "intermediate", FLOW_P_INT, 0, "1024", 8, 16384, NULL, "FFN width (random init only)" },
    { "model_max_len", FLOW_P_INT, 0, "128", 8, 4096, NULL, "position embeddings (random init only)" },
    { "precision", FLOW_P_STRING, 0, "fp32", 0, -1, "fp32|bf16|fp16",
      "arithmetic of the Linear layers: fp32, or (on GPUs) bf16 / fp16 mixed precision (fp32 master "
      "weights and AdamW state; fp16 with dynamic loss scaling, skipped steps in train.skipped_steps); "
      "in the key when not fp32" },
    { "profile", FLOW_P_BOOL, 0, "false", 0, -1, NULL, "print the kernels profiler table; not in the key" },
};

static const flow_input_def finetune_inputs[] = {
    { "train", 0, 0, "encoded labelled corpus (encode.train)" },
    { "dev", 0, 0, "encoded labelled corpus for model selection (encode.dev)" },
    { "base", 1, 0, "pretrained model artifact (pretrain); unbound = random init" },
    { "tokenizer", 1, 0, "bpe node (needed when base is unbound)" },
    { "clean", 1, 0, "node whose clean.json records the cleaning settings (clean)" },
};

static const flow_output_def finetune_outputs[] = {
    { "model.json", "kind bert-cls, config, labels, training summary" },
    { "weights", "safetensors, HuggingFace tensor names" },
    { "tokenizer", "the tokenizer parts" },
    { "clean.json", "cleaning settings (when known)" },
    { "loss_curve.tsv", "step, loss, lr, grad_norm per optimizer step" },
    { "dev_curve.tsv", "step, dev accuracy, dev macro-F1 at each evaluation" },
};

/* With base bound, the architecture and the tokenizer come from the base
 * model: setting them then would change the key but not the output. */
static const flow_applies_def finetune_applies[] = {
    { "hidden", "base", "unbound", "the base model fixes the architecture" },
    { "layers", "base", "unbound", "the base model fixes the architecture" },
    { "heads", "base", "unbound", "the base model fixes the architecture" },
    { "intermediate", "base", "unbound", "the base model fixes the architecture" },
    { "model_max_len", "base", "unbound", "the base model fixes the architecture" },
    { "tokenizer", "base", "unbound", "the base model's tokenizer is used" },
    { "epochs", "max_steps", "0", "max_steps > 0 sets the length of training" },
};

/* The base artifact's config and weights, or (base unbound) the config
 * of a random init from the parameters. */
static int base_config(flow_ctx *c, int has_base, bert_config *cfg, st_file *bw)
{
    flow_err err = { 0 };
    bert_config_default(cfg);
    if (!has_base) {
        tok_tokenizer *tok;
        int rc = tok_load_input(c, "tokenizer", 0, &tok);
        if (rc) return rc;
        cfg->vocab_size = tok_vocab_size(tok);
        tok_free(tok);
        cfg->hidden = (int)flow_param_int(c, "hidden");
        cfg->layers = (int)flow_param_int(c, "layers");
        cfg->max_len = (int)flow_param_int(c, "model_max_len");
        if (bert_config_uniform(cfg, (int)flow_param_int(c, "heads"), (int)flow_param_int(c, "intermediate"), &err))
            return flow_ctx_fail(c, FLOW_E_PARAM, "%s", err.msg);
        return 0;
    }
    return cls_artifact_config(c, "base", cfg, bw, NULL);
}

/* Train and dev data, class weights. */
static int ft_setup(flow_ctx *c, const bert_config *cfg, int T, cls_objective *f)
{
    int C = cfg->num_labels, rc;
    cls_data tr, dv;
    memset(&tr, 0, sizeof tr);
    memset(&dv, 0, sizeof dv);
    if ((rc = cls_data_load(c, "train", 0, cfg->vocab_size, C, 1, &tr)) ||
        (rc = cls_data_load(c, "dev", 0, cfg->vocab_size, C, 1, &dv))) {
        cls_data_release(&tr);
        cls_data_release(&dv);
        return rc;
    }
    return cls_objective_init(c, f, &tr, &dv, C, (int)flow_param_int(c, "batch"), T,
                              strcmp(flow_param_str(c, "class_weights"), "balanced") == 0);
}

/* Final dev score of the kept weights, metrics, report and the artifact. */
static int ft_finish(flow_ctx *c, bert_model *m, cls_objective *f, const tr_result *r, int has_base,
                     char *const *labels, int T)
{
    clf_metrics fin;
    int rc = cls_objective_dev(f, m, &fin);
    if (rc) return rc;
    const char *init = has_base ? "pretrained" : "random";
    flow_metric(c, "dev.accuracy", fin.accuracy);
    flow_metric(c, "dev.macro_f1", fin.macro_f1);
    flow_metric(c, "best_step", (double)r->best_step);
    flow_metric(c, "steps", (double)r->total);
    if (r->seconds > 0 && r->tokens_here > 0) flow_metric(c, "tok_per_s", r->tokens_here / r->seconds);
    flow_buf rep, training;
    buf_init(&rep);
    buf_init(&training);
    buf_printf(&rep, "finetune (%s init): %ld steps, best dev macro-F1 %.4f (accuracy %.4f) at step %ld\n",
               init, r->total, fin.macro_f1, fin.accuracy, r->best_step);
    if (flow_param_bool(c, "profile")) {
        char *pt = tr_profile_text(m);
        flow_log(c, "%s", pt);
        buf_adds(&rep, pt);
        free(pt);
    }
    flow_report(c, rep.data);
    buf_printf(&training, "{\"init\":\"%s\",\"steps\":%ld,\"best_step\":%ld,\"train_sequences\":%zu,\"dev_accuracy\":",
               init, r->total, r->best_step, f->tr.nusable);
    buf_json_num(&training, fin.accuracy);
    buf_adds(&training, ",\"dev_macro_f1\":");
    buf_json_num(&training, fin.macro_f1);
    buf_printf(&training, ",\"max_len\":%d}", T);
    metrics_release(&fin);
    rc = bert_artifact_write(c, m, "bert-cls", labels, m->cfg.num_labels, training.data);
    if (!rc) rc = artifact_copy_tokenizer(c, has_base ? "base" : "tokenizer");
    if (!rc) rc = artifact_copy_clean(c, flow_in_count(c, "clean") > 0 ? "clean" : (has_base ? "base" : "clean"));
    if (!rc) rc = flow_out_write(c, "loss_curve.tsv", FLOW_PART_BYTES, r->curve.data, r->curve.len);
    if (!rc) rc = flow_out_write(c, "dev_curve.tsv", FLOW_PART_BYTES, r->dev_curve.data, r->dev_curve.len);
    buf_release(&rep);
    buf_release(&training);
    return rc;
}

static int finetune_run(flow_ctx *c)
{
    int has_base = flow_in_count(c, "base") > 0, C = 0, rc;
    if (!has_base && flow_in_count(c, "tokenizer") == 0)
        return flow_ctx_fail(c, FLOW_E_PARAM, "bind 'base' (a pretrained model) or, for a random init, 'tokenizer' (the bpe node)");
    char **labels = NULL;
    bert_config cfg, base_cfg;
    st_file bw;
    st_init(&bw);
    cls_objective f;
    memset(&f, 0, sizeof f);
    bert_model *m = NULL;
    tr_result res;
    memset(&res, 0, sizeof res);
    flow_err err = { 0 };
    if ((rc = cls_read_labels(c, "train", &labels, &C)) || (rc = base_config(c, has_base, &cfg, &bw))) goto out;
    base_cfg = cfg;
    cfg.mode = BERT_MODE_CLASSIFY;
    cfg.num_labels = C;
    cfg.hidden_dropout = cfg.attn_dropout = (float)flow_param_float(c, "dropout");
    cfg.pooling = strcmp(flow_param_str(c, "pooling"), "mean") == 0 ? BERT_POOL_MEAN : BERT_POOL_CLS;
    if (bert_config_validate(&cfg, &err)) { rc = flow_ctx_fail(c, FLOW_E_PARAM, "%s", err.msg); goto out; }
    int T = (int)flow_param_int(c, "max_len");
    if (T <= 0 || T > cfg.max_len) T = cfg.max_len;
    if ((rc = ft_setup(c, &cfg, T, &f))) goto out;
    bert_device dev = tr_train_device(c);
    if ((rc = bert_model_new(&cfg, f.batch, T, &dev, &m, &err)) || (rc = bert_init(m, (uint64_t)flow_param_int(c, "seed"), &err))) {
        rc = flow_ctx_fail(c, rc, "%s", err.msg);
        goto out;
    }
    if (has_base && (rc = cls_artifact_load(c, "base", m, &base_cfg, &bw, NULL))) goto out;
    if (flow_param_bool(c, "profile")) bert_profile_enable(m, 1);
    tr_options opt;
    tr_options_from_params(c, &opt);
    opt.eval_each_epoch = 1;
    opt.keep_best = 1;
    tr_objective obj = cls_objective_bind(&f, "finetune", TR_CKPT_FINETUNE);
    flow_log(c, "model: %zu parameters, %d classes, T %d; train %zu, dev %zu sequences, %s init",
             m->nparams, C, T, f.tr.nusable, f.dv.nusable, has_base ? "pretrained" : "random");
    if (!(rc = tr_train(c, m, &obj, &opt, &res))) rc = ft_finish(c, m, &f, &res, has_base, labels, T);
out:
    tr_result_release(&res);
    bert_model_free(m);
    cls_objective_release(&f);
    st_release(&bw);
    cls_labels_free(labels, C);
    return rc;
}

const flow_stage stage_finetune = {
    .name = "finetune",
    .version = 7,   /* 2: dropout masks and vectorised exp/GELU/LayerNorm/AdamW/grad norm (dd5cdd1, 15e390e, fb250cf);
                     * 3: GEMMs and LayerNorm grads cut into fixed blocks (same bytes for any thread count);
                     * 4: model.json config with per-layer heads and FFN widths;
                     * 5: weights in safetensors (model.json version 2);
                     * 6: a step's micro-batch gradients computed apart and summed in micro-batch
                     *    order (the data-parallel reducer: workers = K gives the same bytes), the
                     *    dropout counter of micro-batch k of a step is its start + k (changes bytes
                     *    with grad_accum > 1 only);
                     * 7: dev evaluation's attention by query chunks on attention_gemm.c (was sgemm) */
    .help = "sequence classification from a pretrained BERT (or random init), best dev macro-F1 kept",
    .params = finetune_params, .nparams = sizeof finetune_params / sizeof finetune_params[0],
    .inputs = finetune_inputs, .ninputs = sizeof finetune_inputs / sizeof finetune_inputs[0],
    .outputs = finetune_outputs, .noutputs = sizeof finetune_outputs / sizeof finetune_outputs[0],
    .applies = finetune_applies, .napplies = sizeof finetune_applies / sizeof finetune_applies[0],
    .not_in_key = "checkpoint_every profile",   /* same bytes (tests/train_e2e_test.sh) */
    .key_unless_default = "pooling precision",  /* cls, fp32 = what finetune did before they existed */
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 0, .gpu_capable = 1, .data_parallel = 1 },
    .run = finetune_run,
};
