/* distill.c — the `distill` stage: trains a student classifier on a
 * teacher's soft labels (knowledge distillation).
 *
 *   small = distill { teacher = finetune  train = encoded.train  dev = encoded.dev
 *                     layers = 1  unlabelled = [extra_enc]  temperature = 2  alpha = 0.7 }
 *
 * Loss per micro-batch (distill_loss.h):
 *   alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)
 *   + beta * MSE(hidden states, through a learned projection when widths differ)
 * Unlabelled sequences (`unlabelled`, e.g. the encoded extra/ text) are
 * mixed into every epoch with the train ones and learn from the soft
 * labels only (no CE term).
 *
 * Teachers: `teacher` is a list; its first entry is a bert-cls model that
 * runs on the student's ids (eval mode) and gives the hidden states.
 * More entries (any classifier kind, e.g. the TF-IDF baseline) make an
 * ensemble: their probabilities on the units' text (train_text /
 * unlabelled_text: the corpora that were encoded, one unit per sequence)
 * are computed once, and the soft labels are the teacher_weights-weighted
 * mean of every member's softened distribution (distill_mix_teachers).
 *
 * Student: the model bound to `student` (bert-cls or bert-mlm, e.g. a
 * pruned or trim-vocab'd model; its config is kept, a bert-mlm gets a
 * fresh classifier head), else the config given by hidden / layers /
 * heads / intermediate / model_max_len (0 = the teacher's value; for a
 * pruned teacher, layer 0's heads and FFN width).  Its init: `init =
 * teacher` copies the teacher's embeddings, pooler, classifier and, for
 * student layer l, teacher layer m(l) (the layer map of distill_loss.h,
 * every other layer for half the depth, like DistilBERT), wherever the
 * shapes agree (so hidden must equal the teacher's); every other tensor
 * is the seeded random init, as with `init = random`.  The log says how
 * many tensors were copied.  Teacher and student must share the
 * tokenizer (same tokenizer.bin bytes), or the node fails at start.
 * Pooling (kernels.h) is the student model's own, or the teacher's for a
 * student made from the parameters, unless `pooling = cls|mean` sets it;
 * the teacher always runs with its own, so the two may differ.
 *
 * Cost: the bert teacher runs in eval mode on every micro-batch when
 * beta > 0 (its hidden states are needed); with beta = 0 its logits are
 * computed once over all sequences at the start instead (one pass, then
 * a table of C floats per sequence).
 *
 * Training is the shared loop (trainer.h tr_train): AdamW, warmup/decay,
 * clipping, accumulation, best dev macro-F1 kept, checkpoints that also
 * hold the projection and its moments (tr_aux), so a killed build resumes
 * to the same bytes, for any thread count.
 *
 * Output: an ordinary bert-cls artifact (classifier.h) with the teacher's
 * tokenizer and cleaning settings, loss_curve.tsv and dev_curve.tsv. */
#include "distill_loss.h"
#include "stages/model/cls_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const flow_param_def distill_params[] = {
    { "temperature", FLOW_P_FLOAT, 0, "2.0", 0.05, 100, NULL, "softening temperature T of both distributions" },
    { "alpha", FLOW_P_FLOAT, 0, "0.5", 0, 1, NULL, "weight of the soft-target KL term (1 - alpha: labels' cross-entropy)" },
    { "beta", FLOW_P_FLOAT, 0, "0", 0, 1e6, NULL, "weight of the hidden-state MSE term (0 = off)" },
    { "teacher_weights", FLOW_P_LIST, FLOW_P_FLOAT, "[]", 0, 1e6, NULL, "ensemble weights, one per teacher (empty = equal)" },
    { "init", FLOW_P_STRING, 0, "teacher", 0, -1, "teacher|random", "student config: copy the teacher's tensors where shapes agree, or random" },
    { "hidden", FLOW_P_INT, 0, "0", 0, 4096, NULL, "student hidden size (0 = the teacher's)" },
    { "layers", FLOW_P_INT, 0, "0", 0, 48, NULL, "student layers (0 = the teacher's)" },
    { "heads", FLOW_P_INT, 0, "0", 0, 64, NULL, "student attention heads (0 = the teacher's)" },
    { "intermediate", FLOW_P_INT, 0, "0", 0, 16384, NULL, "student FFN width (0 = the teacher's)" },
    { "model_max_len", FLOW_P_INT, 0, "0", 0, 4096, NULL, "student position embeddings (0 = the teacher's)" },
    { "pooling", FLOW_P_STRING, 0, "model", 0, -1, "model|cls|mean",
      "student classifier input: model = the bound student's own (a bert-mlm's: cls), else the teacher's; "
      "cls = the [CLS] hidden state; mean = the mean over real positions ([CLS] and [SEP] included)" },
    { "unlabelled_max", FLOW_P_INT, 0, "0", 0, 1e12, NULL, "unlabelled sequences used at most, a seeded sample (0 = all)" },
    { "epochs", FLOW_P_INT, 0, "3", 1, 10000, NULL, "passes over train + unlabelled (when max_steps = 0)" },
    { "max_steps", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "optimizer steps; 0 = epochs decide" },
    { "batch", FLOW_P_INT, 0, "32", 1, 65536, NULL, "sequences per micro-batch" },
    { "grad_accum", FLOW_P_INT, 0, "1", 1, 1024, NULL, "micro-batches per optimizer step" },
    { "lr", FLOW_P_FLOAT, 0, "0.0005", 0, 10, NULL, "peak learning rate" },
    { "warmup_ratio", FLOW_P_FLOAT, 0, "0.1", 0, 1, NULL, "share of steps with linear warmup" },
    { "weight_decay", FLOW_P_FLOAT, 0, "0.01", 0, 10, NULL, "AdamW decoupled weight decay" },
    { "max_grad_norm", FLOW_P_FLOAT, 0, "1.0", 0, 1e6, NULL, "global-norm clipping (0 = off)" },
    { "dropout", FLOW_P_FLOAT, 0, "0.1", 0, 0.9, NULL, "student hidden and attention dropout" },
    { "class_weights", FLOW_P_STRING, 0, "none", 0, -1, "none|balanced", "class weights of the cross-entropy term" },
    { "max_len", FLOW_P_INT, 0, "0", 0, 4096, NULL, "cut sequences to this many ids (0 = the teacher's fine-tuning length)" },
    { "seed", FLOW_P_INT, 0, "1", 0, 1e15, NULL, "init, projection, order, sampling and dropout seed" },
    { "checkpoint_every", FLOW_P_INT, 0, "200", 0, 1e9, NULL, "steps between resumable checkpoints (0 = none)" },
    { "eval_every", FLOW_P_INT, 0, "0", 0, 1e9, NULL, "steps between dev evaluations besides each epoch end (0 = epochs only)" },
    { "profile", FLOW_P_BOOL, 0, "false", 0, -1, NULL, "print the kernels profiler table" },
};

static const flow_input_def distill_inputs[] = {
    { "teacher", 0, 1, "bert-cls teacher (finetune), then optional ensemble members of any kind (baseline)" },
    { "student", 1, 0, "the student's starting model (bert-cls or bert-mlm, e.g. prune); unbound: a config from the parameters" },
    { "train", 0, 0, "encoded labelled corpus (encode.train)" },
    { "dev", 0, 0, "encoded labelled corpus for model selection (encode.dev)" },
    { "unlabelled", 1, 1, "encoded corpora trained on the soft labels only (encode of extra text)" },
    { "train_text", 1, 0, "ensemble only: the corpus encoded as train (split.train)" },
    { "unlabelled_text", 1, 1, "ensemble only: the corpora encoded as unlabelled, in the same order" },
    { "clean", 1, 0, "node whose clean.json records the cleaning settings (default: the teacher's)" },
};

static const flow_output_def distill_outputs[] = {
    { "model.json", "kind bert-cls, config, labels, training summary" },
    { "weights", "safetensors, HuggingFace tensor names" },
    { "tokenizer", "the teacher's tokenizer parts" },
    { "clean.json", "cleaning settings (when known)" },
    { "loss_curve.tsv", "step, loss, lr, grad_norm per optimizer step" },
    { "dev_curve.tsv", "step, dev accuracy, dev macro-F1 at each evaluation" },
};

static const flow_applies_def distill_applies[] = {
    { "hidden", "student", "unbound", "the student model fixes the architecture" },
    { "layers", "student", "unbound", "the student model fixes the architecture" },
    { "heads", "student", "unbound", "the student model fixes the architecture" },
    { "intermediate", "student", "unbound", "the student model fixes the architecture" },
    { "model_max_len", "student", "unbound", "the student model fixes the architecture" },
    { "init", "student", "unbound", "the student model is the init" },
    { "unlabelled_text", "unlabelled", "bound", "it is the text of the unlabelled inputs" },
    { "unlabelled_max", "unlabelled", "bound", "it samples the unlabelled inputs" },
    { "epochs", "max_steps", "0", "max_steps > 0 sets the length of training" },
};

#define WHAT_MAX 96

/* ---- the data: train and unlabelled sequences in one index space ------ */
typedef struct pool {
    int nviews;                 /* views[0] = train, then the unlabelled inputs */
    cls_data *views;
    size_t *base;               /* [nviews + 1] first global index of each view */
    uint32_t *len;              /* [total] */
    uint32_t *usable; size_t nusable, nunlab;
} pool;

static void pool_release(pool *p)
{
    for (int v = 0; v < p->nviews; v++) cls_data_release(&p->views[v]);
    free(p->views);
    free(p->base);
    free(p->len);
    free(p->usable);
    memset(p, 0, sizeof *p);
}

/* View of global index g and its local index. */
static int pool_find(const pool *p, size_t g, size_t *local)
{
    int v = 0;
    while (v + 1 < p->nviews && g >= p->base[v + 1]) v++;
    *local = g - p->base[v];
    return v;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int pool_load(flow_ctx *c, int vocab, int C, uint64_t seed, pool *p)
{
    memset(p, 0, sizeof *p);
    int nu = flow_in_count(c, "unlabelled"), rc;
    p->nviews = 1 + nu;
    p->views = xcalloc((size_t)p->nviews, sizeof *p->views);
    p->base = xcalloc((size_t)p->nviews + 1, sizeof *p->base);
    if ((rc = cls_data_load(c, "train", 0, vocab, C, 1, &p->views[0]))) return rc;
    for (int v = 1; v < p->nviews; v++)
        if ((rc = cls_data_load(c, "unlabelled", v - 1, vocab, INT32_MAX, 0, &p->views[v]))) return rc;  /* labels unused */
    for (int v = 0; v < p->nviews; v++) p->base[v + 1] = p->base[v] + p->views[v].v.n;
    size_t total = p->base[p->nviews];
    if (total >= UINT32_MAX) return flow_ctx_fail(c, FLOW_E_INPUT, "%zu sequences: more than 2^32", total);
    p->len = xmalloc((total ? total : 1) * sizeof *p->len);
    p->usable = xmalloc((total ? total : 1) * sizeof *p->usable);
    for (int v = 0; v < p->nviews; v++) {
        const cls_data *d = &p->views[v];
        memcpy(p->len + p->base[v], d->len, d->v.n * sizeof *p->len);
        for (size_t i = 0; i < d->nusable; i++) p->usable[p->nusable++] = (uint32_t)(p->base[v] + d->usable[i]);
    }
    /* unlabelled_max: the first N of a seeded shuffle of the unlabelled ones, in index order */
    size_t ntr = p->views[0].nusable, nun = p->nusable - ntr;
    uint64_t cap = (uint64_t)flow_param_int(c, "unlabelled_max");
    if (cap > 0 && nun > cap) {
        uint32_t *u = p->usable + ntr;
        uint64_t s = tr_seed(seed, 0x5A3B1E, 0);
        for (size_t i = nun; i > 1; i--) {
            size_t j = (size_t)(tr_rng_next(&s) % i);
            uint32_t t = u[i - 1]; u[i - 1] = u[j]; u[j] = t;
        }
        nun = (size_t)cap;
        qsort(u, nun, sizeof *u, cmp_u32);
        p->nusable = ntr + nun;
    }
    p->nunlab = nun;
    if (ntr == 0) return flow_ctx_fail(c, FLOW_E_INPUT, "input 'train' has no labelled sequence");
    return 0;
}

/* ---- teachers ----------------------------------------------------------- */
typedef struct teachers {
    int K;                      /* members; 0 is the bert teacher */
    double *w;                  /* [K] normalised weights */
    bert_config cfg;            /* the bert teacher's */
    bert_model *m;
    int fine_tune_len;          /* its training max_len */
    float **logp;               /* [K]: members 1..K-1: log p [total, C] in train label order */
} teachers;

static void teachers_release(teachers *t)
{
    bert_model_free(t->m);
    for (int k = 0; k < t->K; k++) free(t->logp ? t->logp[k] : NULL);
    free(t->logp);
    free(t->w);
    memset(t, 0, sizeof *t);
}

/* The labels of model.json must be the train labels (same order). */
static int same_labels(flow_ctx *c, const json_value *mj, const char *what, char *const *labels, int C)
{
    const json_value *jl = json_get(mj, "labels");
    int ok = json_len(jl) == C;
    for (int i = 0; ok && i < C; i++) ok = strcmp(json_str(json_at(jl, i), ""), labels[i]) == 0;
    if (ok) return 0;
    return flow_ctx_fail(c, FLOW_E_INPUT, "%s has %d labels that are not the %d labels of input 'train' in the "
                         "same order (first: '%s'); it must classify the same split", what, json_len(jl), C,
                         C ? labels[0] : "");
}

static int tokenizer_bytes(flow_ctx *c, const char *port, char **data, size_t *len)
{
    if (!flow_in_has(c, port, 0, "tokenizer/tokenizer.bin"))
        return flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' has no tokenizer/tokenizer.bin: bind a bert model artifact", port);
    return flow_in_read(c, port, 0, "tokenizer/tokenizer.bin", data, len);
}

/* Student and teacher must tokenize alike (same tokenizer.bin bytes). */
static int check_tokenizers(flow_ctx *c)
{
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    int rc = tokenizer_bytes(c, "teacher", &a, &al);
    if (!rc) rc = tokenizer_bytes(c, "student", &b, &bl);
    if (!rc && (al != bl || memcmp(a, b, al) != 0))
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'student' (%s) has another tokenizer than input 'teacher' (%s); "
                           "distillation compares both on the same ids: give the student the teacher's tokenizer "
                           "(e.g. distill from the trimmed teacher)", flow_in_name(c, "student", 0),
                           flow_in_name(c, "teacher", 0));
    free(a);
    free(b);
    return rc;
}

/* log p of member k (a classifier of any kind) on the text of every
 * sequence of every view, columns in train label order. */
static int member_logp(flow_ctx *c, int k, const pool *p, char *const *labels, int C, float *out)
{
    part_source ps;
    part_source_ctx(&ps, c, "teacher", k);
    clf_model *cm = NULL;
    flow_err err = { 0 };
    int rc = clf_load(&ps, &cm, &err);
    if (rc) return flow_ctx_fail(c, rc, "input 'teacher' #%d: %s", k + 1, err.msg);
    int *col = xmalloc((size_t)C * sizeof *col);
    for (int j = 0; j < C && !rc; j++) {
        col[j] = -1;
        for (int i = 0; i < clf_nlabels(cm); i++) if (!strcmp(clf_label(cm, i), labels[j])) col[j] = i;
        if (col[j] < 0 || clf_nlabels(cm) != C)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'teacher' #%d (%s, %d labels) lacks label '%s' of input 'train' "
                               "(%d labels): an ensemble member must classify the same labels", k + 1,
                               clf_kind(cm), clf_nlabels(cm), labels[j], C);
    }
    for (int v = 0; v < p->nviews && !rc; v++) {
        const char *port = v == 0 ? "train_text" : "unlabelled_text";
        int idx = v == 0 ? 0 : v - 1;
        corpus_view cv;
        if ((rc = cview_read(c, port, idx, &cv))) break;
        if (cv.n != p->views[v].v.n) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "input '%s' #%d has %zu units but the encoded %s input #%d has %zu "
                               "sequences: bind the corpus that was encoded", port, idx + 1, cv.n,
                               v == 0 ? "train" : "unlabelled", idx + 1, p->views[v].v.n);
        } else {
            float *prob = xmalloc((cv.n ? cv.n : 1) * (size_t)C * sizeof *prob);
            if ((rc = clf_predict(cm, cv.text, cv.len, cv.n, 0, prob, &err)))
                rc = flow_ctx_fail(c, rc, "input 'teacher' #%d on %s: %s", k + 1, port, err.msg);
            for (size_t i = 0; i < cv.n && !rc; i++)
                for (int j = 0; j < C; j++) {
                    float q = prob[i * C + col[j]];
                    out[(p->base[v] + i) * C + j] = logf(q > 1e-30f ? q : 1e-30f);
                }
            free(prob);
        }
        cview_release(&cv);
    }
    free(col);
    clf_free(cm);
    return rc;
}

/* The weights and the bert teacher (member 0). */
static int teachers_load(flow_ctx *c, char *const *labels, int C, int batch, teachers *t)
{
    memset(t, 0, sizeof *t);
    t->K = flow_in_count(c, "teacher");
    int nw = flow_param_list_len(c, "teacher_weights"), rc;
    if (nw && nw != t->K)
        return flow_ctx_fail(c, FLOW_E_PARAM, "teacher_weights has %d entries for %d teachers", nw, t->K);
    t->w = xmalloc((size_t)t->K * sizeof *t->w);
    double sum = 0;
    for (int k = 0; k < t->K; k++) sum += t->w[k] = nw ? flow_param_list_float(c, "teacher_weights", k) : 1.0;
    if (!(sum > 0)) return flow_ctx_fail(c, FLOW_E_PARAM, "teacher_weights sum to 0: give some teacher a weight");
    for (int k = 0; k < t->K; k++) t->w[k] /= sum;
    if (t->K == 1 && (flow_in_count(c, "train_text") || flow_in_count(c, "unlabelled_text")))
        return flow_ctx_fail(c, FLOW_E_PARAM, "train_text / unlabelled_text are read only for an ensemble "
                             "(more than one teacher); unbind them");
    if (t->K > 1 && (flow_in_count(c, "train_text") != 1 ||
                     flow_in_count(c, "unlabelled_text") != flow_in_count(c, "unlabelled")))
        return flow_ctx_fail(c, FLOW_E_PARAM, "an ensemble of %d teachers scores the units' text: bind train_text "
                             "(the corpus encoded as train) and one unlabelled_text per unlabelled input (%d bound, "
                             "%d needed)", t->K, flow_in_count(c, "unlabelled_text"), flow_in_count(c, "unlabelled"));
    /* the bert teacher */
    st_file w;
    st_init(&w);
    json_value *mj = NULL;
    flow_err err = { 0 };
    rc = cls_artifact_config(c, "teacher", &t->cfg, &w, &mj);
    if (!rc && !(t->cfg.mode & BERT_MODE_CLASSIFY))
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'teacher' (%s) is a %s model without a classification head: "
                           "the first teacher must be a bert-cls model (finetune)", flow_in_name(c, "teacher", 0),
                           json_str(json_get(mj, "kind"), "?"));
    if (!rc) rc = same_labels(c, mj, "input 'teacher'", labels, C);
    if (!rc) {
        t->fine_tune_len = (int)json_num(json_get(json_get(mj, "training"), "max_len"), t->cfg.max_len);
        if (t->fine_tune_len < 2 || t->fine_tune_len > t->cfg.max_len) t->fine_tune_len = t->cfg.max_len;
        bert_device dev = tr_device(c);
        if ((rc = bert_model_new(&t->cfg, batch, t->cfg.max_len, &dev, &t->m, &err)))
            rc = flow_ctx_fail(c, rc, "teacher: %s", err.msg);
    }
    if (!rc) rc = cls_artifact_load(c, "teacher", t->m, &t->cfg, &w, NULL);
    json_free(mj);
    st_release(&w);
    return rc;
}

/* Members 1..K-1 on the text of every sequence of the pool. */
static int teachers_score(flow_ctx *c, const pool *p, char *const *labels, int C, teachers *t)
{
    int rc = 0;
    t->logp = xcalloc((size_t)t->K, sizeof *t->logp);
    size_t total = p->base[p->nviews];
    for (int k = 1; k < t->K && !rc; k++) {
        t->logp[k] = xmalloc((total ? total : 1) * (size_t)C * sizeof **t->logp);
        rc = member_logp(c, k, p, labels, C, t->logp[k]);
    }
    return rc;
}

/* ---- the student ----------------------------------------------------------- */
/* Student config from the parameters (0 = the teacher's value). */
static int student_config(flow_ctx *c, const bert_config *tc, bert_config *sc)
{
    *sc = *tc;
    int64_t h = flow_param_int(c, "hidden"), l = flow_param_int(c, "layers"), nh = flow_param_int(c, "heads"),
            ff = flow_param_int(c, "intermediate"), ml = flow_param_int(c, "model_max_len");
    sc->hidden = h ? (int)h : tc->hidden;
    sc->layers = l ? (int)l : tc->layers;
    sc->max_len = ml ? (int)ml : tc->max_len;
    flow_err err = { 0 };
    if (bert_config_uniform(sc, nh ? (int)nh : tc->heads[0], ff ? (int)ff : tc->ffn[0], &err))
        return flow_ctx_fail(c, FLOW_E_PARAM, "student config: %s", err.msg);
    return 0;
}

/* init = teacher: the teacher's tensors renamed so that student layer l
 * reads teacher layer m(l), copied where the shapes agree. */
static int init_from_teacher(flow_ctx *c, bert_model *m, const teachers *t)
{
    bert_config src = t->cfg;
    const bert_config *sc = &m->cfg;
    if (sc->hidden != src.hidden)
        return flow_ctx_fail(c, FLOW_E_PARAM, "init = teacher needs the teacher's hidden size %d (hidden = %d); "
                             "set init = random for another width", src.hidden, sc->hidden);
    src.layers = sc->layers;
    src.mode = sc->mode;
    src.num_labels = sc->num_labels;
    for (int l = 0; l < sc->layers; l++) {
        int tl = distill_layer_map(l + 1, sc->layers, t->cfg.layers) - 1;
        src.heads[l] = t->cfg.heads[tl];
        src.ffn[l] = t->cfg.ffn[tl];
    }
    bert_tensor *tab = NULL;
    int nt, copied = 0, rc = 0;
    flow_err err = { 0 };
    if (bert_tensor_table(&src, &tab, &nt, &err)) return flow_ctx_fail(c, FLOW_E_PARAM, "init = teacher: %s", err.msg);
    size_t n = bert_param_count(&src);
    float *buf = xcalloc(n, sizeof *buf);
    for (int i = 0; i < nt; i++) {
        char name[96];
        int sl, off = 0;
        snprintf(name, sizeof name, "%s", tab[i].name);
        if (sscanf(tab[i].name, "bert.encoder.layer.%d.%n", &sl, &off) == 1 && off > 0)
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s",
                     distill_layer_map(sl + 1, sc->layers, t->cfg.layers) - 1, tab[i].name + off);
        const bert_tensor *tt = bert_find_tensor(t->m, name);
        if (!tt || tt->numel != tab[i].numel) FLOW_BUG("init = teacher: %s has no twin %s", tab[i].name, name);
        memcpy(buf + tab[i].offset, t->m->params + tt->offset, tt->numel * sizeof *buf);
    }
    if ((rc = bert_load_by_name(m, &src, buf, n, &copied, &err)))
        rc = flow_ctx_fail(c, rc, "init = teacher: %s", err.msg);
    else
        flow_log(c, "student init: %d of %d tensors copied from the teacher (student layer l <- teacher layer m(l)), "
                 "the rest random", copied, m->ntensors);
    free(buf);
    free(tab);
    return rc;
}

/* Creates and initialises the student (*init names how). */
static int student_make(flow_ctx *c, const teachers *t, int C, int batch, int T, char *const *labels,
                        bert_model **out, const char **init)
{
    int has_student = flow_in_count(c, "student") > 0, rc;
    bert_config cfg, src_cfg;
    st_file w;
    st_init(&w);
    json_value *mj = NULL;
    flow_err err = { 0 };
    if (has_student) {
        if ((rc = check_tokenizers(c)) || (rc = cls_artifact_config(c, "student", &src_cfg, &w, &mj))) goto out;
        if ((src_cfg.mode & BERT_MODE_CLASSIFY) && (rc = same_labels(c, mj, "input 'student'", labels, C))) goto out;
        cfg = src_cfg;
        *init = "student";
    } else {
        if ((rc = student_config(c, &t->cfg, &cfg))) goto out;
        *init = flow_param_str(c, "init");
    }
    cfg.mode = BERT_MODE_CLASSIFY;
    cfg.num_labels = C;
    cfg.hidden_dropout = cfg.attn_dropout = (float)flow_param_float(c, "dropout");
    const char *pooling = flow_param_str(c, "pooling");     /* "model": cfg's, inherited above */
    if (strcmp(pooling, "model")) cfg.pooling = strcmp(pooling, "mean") ? BERT_POOL_CLS : BERT_POOL_MEAN;
    if (cfg.vocab_size != t->cfg.vocab_size) {
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "the student has %d word embeddings, the teacher %d: they need one tokenizer",
                           cfg.vocab_size, t->cfg.vocab_size);
        goto out;
    }
    if (T > cfg.max_len) {
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "sequences of %d ids but the student has %d positions: lower max_len "
                           "or raise model_max_len", T, cfg.max_len);
        goto out;
    }
    bert_device dev = tr_device(c);
    if (bert_config_validate(&cfg, &err) || (rc = bert_model_new(&cfg, batch, T, &dev, out, &err)) ||
        (rc = bert_init(*out, (uint64_t)flow_param_int(c, "seed"), &err))) {
        rc = flow_ctx_fail(c, rc ? rc : FLOW_E_PARAM, "student: %s", err.msg);
        goto out;
    }
    if (has_student) rc = cls_artifact_load(c, "student", *out, &src_cfg, &w, NULL);
    else if (!strcmp(*init, "teacher")) rc = init_from_teacher(c, *out, t);
out:
    json_free(mj);
    st_release(&w);
    return rc;
}

/* ---- the distillation objective (tr_objective) ------------------------- */
typedef struct dst_objective {
    flow_ctx *c;
    pool p;
    cls_data dv;
    teachers t;
    distill_spec spec;
    tr_aux aux;
    uint8_t *decay;
    int batch, T, C;
    int *lens;                  /* [batch] */
    uint32_t *rows;             /* [batch] global index of each row of the batch */
    int32_t *labels;            /* [batch] its labels (-1: unlabelled) */
    float *cw;                  /* [C] or NULL */
    float *dlogits, *tlogits;   /* [batch * C] */
    float *tcache;              /* beta = 0: the bert teacher's logits [total, C], else NULL */
    float *blogits;             /* [batch * C] the batch's rows of tcache */
    float **dhidden;            /* [Ls + 1] of [batch * T * Hs] (beta > 0) */
    float **mix_in;             /* [K] member logits of the batch */
    tr_batch devb;
    double sum_kl, sum_ce, sum_mse;
    long nsum;
} dst_objective;

/* Rows seq[0..n) of the pool into b; their labels and indices into f. */
static void fill_rows(dst_objective *f, tr_batch *b, const uint32_t *seq, size_t n)
{
    for (size_t r = 0; r < n; r++) {
        size_t i;
        int v = pool_find(&f->p, seq[r], &i);
        const cls_data *d = &f->p.views[v];
        f->lens[r] = tr_batch_row(b, (int)r, d->v.ids + d->v.off[i], (int)d->len[i]);
        b->labels[r] = f->labels[r] = v == 0 ? cls_label(d, i) : -1;
        f->rows[r] = seq[r];
    }
    tr_batch_finish(b, (int)n, f->lens);
}

static int dst_fill(void *self, tr_batch *b, const uint32_t *seq, size_t n, long epoch, bert_batch *bb)
{
    dst_objective *f = self;
    (void)epoch;
    fill_rows(f, b, seq, n);
    *bb = (bert_batch){ .B = b->B, .T = b->T, .ids = b->ids, .attn_mask = b->mask };
    return 1;
}

/* beta = 0: the teacher's logits never change, so it runs once over the
 * pool (eval mode, batches of the pool in length order) instead of once
 * per micro-batch; f->tcache [total, C]. */
static int teacher_cache(dst_objective *f)
{
    tr_epoch e;
    tr_epoch_build(&e, f->p.usable, f->p.nusable, f->p.len, f->batch, 0, 0);
    size_t total = f->p.base[f->p.nviews];
    f->tcache = xmalloc((total ? total : 1) * (size_t)f->C * sizeof *f->tcache);
    flow_err err = { 0 };
    int rc = 0;
    for (size_t q = 0; q < e.nbatches && !rc; q++) {
        fill_rows(f, &f->devb, e.seq + e.start[q], e.count[q]);
        bert_batch bb = { .B = f->devb.B, .T = f->devb.T, .ids = f->devb.ids, .attn_mask = f->devb.mask };
        bert_output o;
        if ((rc = bert_forward(f->t.m, &bb, BERT_HEAD_CLASSIFY, 0, &o, &err))) {
            rc = flow_ctx_fail(f->c, rc, "teacher: %s", err.msg);
            break;
        }
        for (int r = 0; r < bb.B; r++)
            memcpy(f->tcache + (size_t)f->rows[r] * f->C, o.logits + (size_t)r * f->C, (size_t)f->C * sizeof(float));
        flow_progress(f->c, -1, "teacher soft labels: %zu/%zu batches", q + 1, e.nbatches);
    }
    tr_epoch_release(&e);
    return rc;
}

/* The teachers' soft labels of the batch as logits (f->tlogits or the bert teacher's). */
static const float *soft_labels(dst_objective *f, const float *bert_logits, int B)
{
    if (f->t.K == 1) return bert_logits;
    int C = f->C;
    f->mix_in[0] = (float *)bert_logits;
    for (int k = 1; k < f->t.K; k++)
        for (int r = 0; r < B; r++)
            memcpy(f->mix_in[k] + (size_t)r * C, f->t.logp[k] + (size_t)f->rows[r] * C, (size_t)C * sizeof(float));
    distill_mix_teachers((const float *const *)f->mix_in, f->t.w, f->t.K, B, C, f->spec.temperature, f->tlogits);
    return f->tlogits;
}

static int dst_backward(void *self, bert_model *m, const bert_batch *bb, const bert_output *o, float scale,
                        double *loss, flow_err *e)
{
    dst_objective *f = self;
    const float *sh[BERT_MAX_LAYERS + 1] = { 0 }, *th[BERT_MAX_LAYERS + 1] = { 0 }, *tl = f->blogits;
    if (f->tcache) {
        for (int r = 0; r < bb->B; r++)
            memcpy(f->blogits + (size_t)r * f->C, f->tcache + (size_t)f->rows[r] * f->C, (size_t)f->C * sizeof(float));
    } else {
        bert_output to;
        int rc = bert_forward(f->t.m, bb, BERT_HEAD_CLASSIFY, 0, &to, e);
        if (rc) return rc;
        tl = to.logits;
        for (int l = 0; l <= f->spec.Lt; l++) th[l] = bert_hidden_states(f->t.m, l);
    }
    for (int l = 0; l <= f->spec.Ls; l++) sh[l] = bert_hidden_states(m, l);
    distill_batch db = { .B = bb->B, .T = bb->T, .s_logits = o->logits, .t_logits = soft_labels(f, tl, bb->B),
                         .labels = f->labels, .mask = bb->attn_mask, .s_hidden = sh, .t_hidden = th };
    distill_terms terms;
    *loss = distill_loss(&f->spec, &db, f->aux.params, scale, f->dlogits, f->dhidden, f->aux.grads, &terms);
    f->sum_kl += terms.kl;
    f->sum_ce += terms.ce;
    f->sum_mse += terms.mse;
    f->nsum++;
    return bert_backward_ext(m, f->dlogits, f->spec.beta > 0 ? (const float *const *)f->dhidden : NULL, e);
}

static int dst_evaluate(void *self, bert_model *m, double *score, flow_buf *curve, flow_buf *log)
{
    dst_objective *f = self;
    clf_metrics mt;
    int rc = cls_dev_score(f->c, m, &f->dv, f->batch, &f->devb, f->lens, &mt);
    if (rc) return rc;
    *score = mt.macro_f1;
    buf_printf(curve, "%.6f\t%.6f\n", mt.accuracy, mt.macro_f1);
    double n = f->nsum ? (double)f->nsum : 1.0;
    buf_printf(log, "accuracy %.4f macro-F1 %.4f  (train KL %.4f CE %.4f MSE %.4f)", mt.accuracy, mt.macro_f1,
               f->sum_kl / n, f->sum_ce / n, f->sum_mse / n);
    f->sum_kl = f->sum_ce = f->sum_mse = 0;
    f->nsum = 0;
    metrics_release(&mt);
    return 0;
}

static void dst_release(dst_objective *f)
{
    pool_release(&f->p);
    cls_data_release(&f->dv);
    teachers_release(&f->t);
    free(f->aux.params); free(f->aux.grads); free(f->aux.adam_m); free(f->aux.adam_v);
    free(f->decay);
    free(f->lens); free(f->rows); free(f->labels); free(f->cw);
    free(f->dlogits); free(f->tlogits); free(f->tcache); free(f->blogits);
    for (int l = 0; f->dhidden && l <= f->spec.Ls; l++) free(f->dhidden[l]);
    free(f->dhidden);
    for (int k = 1; f->mix_in && k < f->t.K; k++) free(f->mix_in[k]);
    free(f->mix_in);
    tr_batch_release(&f->devb);
}

/* Buffers, class weights, the loss spec and the projection, once teacher
 * and student exist. */
static void dst_setup(flow_ctx *c, dst_objective *f, const bert_model *s, int K)
{
    int B = f->batch, C = f->C, Hs = s->cfg.hidden;
    f->spec = (distill_spec){ .temperature = (float)flow_param_float(c, "temperature"),
                              .alpha = (float)flow_param_float(c, "alpha"), .beta = (float)flow_param_float(c, "beta"),
                              .C = C, .Ls = s->cfg.layers, .Lt = f->t.cfg.layers, .Hs = Hs, .Ht = f->t.cfg.hidden };
    f->lens = xmalloc((size_t)B * sizeof *f->lens);
    f->rows = xmalloc((size_t)B * sizeof *f->rows);
    f->labels = xmalloc((size_t)B * sizeof *f->labels);
    f->dlogits = xmalloc((size_t)B * C * sizeof *f->dlogits);
    f->tlogits = xmalloc((size_t)B * C * sizeof *f->tlogits);
    f->blogits = xmalloc((size_t)B * C * sizeof *f->blogits);
    tr_batch_init(&f->devb, B, f->T);
    if (strcmp(flow_param_str(c, "class_weights"), "balanced") == 0) {
        const cls_data *tr = &f->p.views[0];
        f->cw = xcalloc((size_t)C, sizeof *f->cw);
        for (size_t i = 0; i < tr->nusable; i++) f->cw[tr->v.label[tr->usable[i]]] += 1;
        for (int k = 0; k < C; k++)
            f->cw[k] = f->cw[k] > 0 ? (float)((double)tr->nusable / ((double)C * f->cw[k])) : 0.0f;
        f->spec.class_weights = f->cw;
    }
    if (f->spec.beta > 0) {
        f->dhidden = xcalloc((size_t)f->spec.Ls + 1, sizeof *f->dhidden);
        for (int l = 1; l <= f->spec.Ls; l++) f->dhidden[l] = xmalloc((size_t)B * f->T * Hs * sizeof(float));
        size_t n = distill_proj_count(&f->spec);
        f->aux = (tr_aux){ .n = n, .params = xcalloc(n + 1, sizeof(float)), .grads = xcalloc(n + 1, sizeof(float)),
                           .adam_m = xcalloc(n + 1, sizeof(float)), .adam_v = xcalloc(n + 1, sizeof(float)) };
        f->decay = xcalloc(n + 1, 1);
        distill_proj_init(&f->spec, f->aux.params, f->decay, (uint64_t)flow_param_int(c, "seed"));
        f->aux.decay = f->decay;
    }
    f->mix_in = xcalloc((size_t)K, sizeof *f->mix_in);
    for (int k = 1; k < K; k++) f->mix_in[k] = xmalloc((size_t)B * C * sizeof(float));
}

/* Final dev score, metrics, report, the artifact. */
static int dst_finish(flow_ctx *c, bert_model *m, dst_objective *f, const tr_result *r, const char *init,
                      char *const *labels)
{
    clf_metrics fin;
    int rc = cls_dev_score(c, m, &f->dv, f->batch, &f->devb, f->lens, &fin);
    if (rc) return rc;
    flow_metric(c, "dev.accuracy", fin.accuracy);
    flow_metric(c, "dev.macro_f1", fin.macro_f1);
    flow_metric(c, "best_step", (double)r->best_step);
    flow_metric(c, "steps", (double)r->total);
    flow_metric(c, "parameters", (double)m->nparams);
    flow_metric(c, "teacher_parameters", (double)f->t.m->nparams);
    flow_metric(c, "unlabelled_sequences", (double)f->p.nunlab);
    if (r->seconds > 0 && r->tokens_here > 0) flow_metric(c, "tok_per_s", r->tokens_here / r->seconds);
    flow_buf rep, tj;
    buf_init(&rep);
    buf_init(&tj);
    buf_printf(&rep, "distill (%s init, %d teacher%s, %zu parameters = %.3fx the teacher's): %ld steps on %zu labelled "
               "+ %zu unlabelled sequences, best dev macro-F1 %.4f (accuracy %.4f) at step %ld\n", init, f->t.K,
               f->t.K > 1 ? "s" : "", m->nparams, (double)m->nparams / (double)f->t.m->nparams, r->total,
               f->p.views[0].nusable, f->p.nunlab, fin.macro_f1, fin.accuracy, r->best_step);
    if (flow_param_bool(c, "profile")) {
        char *pt = tr_profile_text(m);
        flow_log(c, "%s", pt);
        buf_adds(&rep, pt);
        free(pt);
    }
    flow_report(c, rep.data);
    buf_printf(&tj, "{\"distilled\":true,\"init\":\"%s\",\"teachers\":%d,\"temperature\":", init, f->t.K);
    buf_json_num(&tj, f->spec.temperature);
    buf_adds(&tj, ",\"alpha\":");
    buf_json_num(&tj, f->spec.alpha);
    buf_adds(&tj, ",\"beta\":");
    buf_json_num(&tj, f->spec.beta);
    buf_printf(&tj, ",\"steps\":%ld,\"best_step\":%ld,\"train_sequences\":%zu,\"unlabelled_sequences\":%zu,"
               "\"dev_accuracy\":", r->total, r->best_step, f->p.views[0].nusable, f->p.nunlab);
    buf_json_num(&tj, fin.accuracy);
    buf_adds(&tj, ",\"dev_macro_f1\":");
    buf_json_num(&tj, fin.macro_f1);
    buf_printf(&tj, ",\"max_len\":%d}", f->T);
    metrics_release(&fin);
    rc = bert_artifact_write(c, m, "bert-cls", labels, f->C, tj.data);
    if (!rc) rc = artifact_copy_tokenizer(c, "teacher");
    if (!rc) rc = artifact_copy_clean(c, flow_in_count(c, "clean") > 0 ? "clean" : "teacher");
    if (!rc) rc = flow_out_write(c, "loss_curve.tsv", FLOW_PART_BYTES, r->curve.data, r->curve.len);
    if (!rc) rc = flow_out_write(c, "dev_curve.tsv", FLOW_PART_BYTES, r->dev_curve.data, r->dev_curve.len);
    buf_release(&rep);
    buf_release(&tj);
    return rc;
}

static int distill_run(flow_ctx *c)
{
    char **labels = NULL;
    int C = 0, rc;
    dst_objective f;
    memset(&f, 0, sizeof f);
    f.c = c;
    f.batch = (int)flow_param_int(c, "batch");
    bert_model *m = NULL;
    tr_result res;
    memset(&res, 0, sizeof res);
    const char *init = "";
    uint64_t seed = (uint64_t)flow_param_int(c, "seed");
    if ((rc = cls_read_labels(c, "train", &labels, &C))) goto out;
    f.C = C;
    /* the teacher first: its vocabulary is what every input is checked against */
    if ((rc = teachers_load(c, labels, C, f.batch, &f.t))) goto out;
    int V = f.t.cfg.vocab_size;
    if ((rc = pool_load(c, V, C, seed, &f.p)) || (rc = cls_data_load(c, "dev", 0, V, C, 1, &f.dv))) goto out;
    if (f.dv.nusable == 0) { rc = flow_ctx_fail(c, FLOW_E_INPUT, "input 'dev' has no labelled sequence"); goto out; }
    if ((rc = teachers_score(c, &f.p, labels, C, &f.t))) goto out;
    int T = (int)flow_param_int(c, "max_len");
    f.T = T > 0 ? T : f.t.fine_tune_len;
    if (f.T > f.t.cfg.max_len) {
        rc = flow_ctx_fail(c, FLOW_E_PARAM, "max_len %d is above the teacher's %d positions", f.T, f.t.cfg.max_len);
        goto out;
    }
    if ((rc = student_make(c, &f.t, C, f.batch, f.T, labels, &m, &init))) goto out;
    dst_setup(c, &f, m, f.t.K);
    if (f.spec.beta == 0 && (rc = teacher_cache(&f))) goto out;
    if (flow_param_bool(c, "profile")) bert_profile_enable(m, 1);
    tr_options opt;
    tr_options_from_params(c, &opt);
    opt.eval_each_epoch = 1;
    opt.keep_best = 1;
    tr_objective obj = {
        .stage = "distill", .ckpt_tag = TR_CKPT_DISTILL, .head = BERT_HEAD_CLASSIFY,
        .usable = f.p.usable, .nusable = f.p.nusable, .len = f.p.len, .order_tag = 0xD157,
        .fill = dst_fill, .backward = dst_backward, .evaluate = dst_evaluate, .self = &f,
        .aux = f.aux.n ? &f.aux : NULL,
    };
    flow_log(c, "student: %zu parameters (H %d L %d heads %d FFN %d, %s init), teacher %zu (H %d L %d), %d teacher%s; "
             "T %d; train %zu + unlabelled %zu sequences, dev %zu; temperature %g alpha %g beta %g%s",
             m->nparams, m->cfg.hidden, m->cfg.layers, m->cfg.heads[0], m->cfg.ffn[0], init, f.t.m->nparams,
             f.t.cfg.hidden, f.t.cfg.layers, f.t.K, f.t.K > 1 ? "s" : "", f.T, f.p.views[0].nusable, f.p.nunlab,
             f.dv.nusable, (double)f.spec.temperature, (double)f.spec.alpha, (double)f.spec.beta,
             f.aux.n ? " (with a hidden-state projection)" : "");
    if (!(rc = tr_train(c, m, &obj, &opt, &res))) rc = dst_finish(c, m, &f, &res, init, labels);
out:
    tr_result_release(&res);
    bert_model_free(m);
    dst_release(&f);
    cls_labels_free(labels, C);
    return rc;
}

const flow_stage stage_distill = {
    .name = "distill",
    .version = 3,   /* 3: the teachers' logits and dev evaluation with attention by query chunks on
                     * kernels/cpu/attention_gemm.c (was sgemm);
                     * 2: with beta = 0 the teacher's logits are computed once over the pool, in length order */
    .help = "knowledge distillation of a bert classifier (soft targets, labels, hidden states; unlabelled text; ensembles)",
    .params = distill_params, .nparams = sizeof distill_params / sizeof distill_params[0],
    .inputs = distill_inputs, .ninputs = sizeof distill_inputs / sizeof distill_inputs[0],
    .outputs = distill_outputs, .noutputs = sizeof distill_outputs / sizeof distill_outputs[0],
    .applies = distill_applies, .napplies = sizeof distill_applies / sizeof distill_applies[0],
    .res = { .threads = 0, .gpus = 0, .cpu_fallback = 0 },
    .run = distill_run,
    .not_in_key = "checkpoint_every profile",   /* same bytes (tests/distill_e2e_test.sh) */
    .key_unless_default = "pooling",            /* model = what distill did before pooling existed */
};
