/* classifier.h — internal header of the training side of the stages
 * library: the classifier artifact format, its loader, evaluation metrics,
 * and the char n-gram TF-IDF + linear model used by `baseline`.  Used by
 * the stages baseline, pretrain, finetune, evaluate and by the commands
 * classify, eval and export.
 *
 * ---- classifier / model artifact (format "flow-model", version 2) ------
 * A model artifact is self-contained: everything needed to go from raw
 * text to label probabilities lives in its parts.
 *   model.json   {"format":"flow-model","version":2,
 *                 "kind":"tfidf-linear" | "bert-cls" | "bert-mlm",
 *                 "config":{...kind specific...},
 *                 "labels":["...", ...]          (classifiers only)
 *                 "training":{...summary: data sizes, dev scores...}}
 *   weights      FLOW_PART_F32, a safetensors file (below).
 *   clean.json   the cleaning settings of the corpus the model was
 *                trained on (copied from the clean node; applied to raw
 *                text before featurizing).  Absent: text is used as is.
 *   tokenizer/... (bert kinds) the tokenizer parts copied from the bpe node.
 *
 * The `weights` part is a safetensors file (safetensors.h): F32 tensors
 * under their HuggingFace names in PyTorch layout for bert kinds
 * ("bert.encoder.layer.0.attention.self.query.weight" [A_0, H]; the tied
 * MLM decoder aliases are not stored, export adds them); tfidf-linear uses
 * "idf" [D], "W" [C, D], "b" [C].  Metadata: "format": "pt" (and, for
 * quantized models, the scheme of their integer tensors).  Version 1
 * artifacts (FLOWWTS weights, one head count and FFN width for all layers)
 * are refused with a message to rebuild them.
 */
#ifndef FLOW_CLASSIFIER_H
#define FLOW_CLASSIFIER_H

#include "stages/stages.h"
#include "cache/cache.h"
#include "stages/model/safetensors.h"

#define FLOW_MODEL_FORMAT "flow-model"
#define FLOW_MODEL_VERSION 2

/* ---- where an artifact's parts come from ------------------------------ */
/* A model can be read from a stage input (flow_ctx) or straight from the
 * store (commands).  read returns FLOW_E_NOTFOUND when the part is absent;
 * *data is malloc'd and NUL-terminated (caller frees). */
typedef struct part_source {
    int (*read)(void *arg, const char *part, char **data, size_t *len, flow_err *err);
    /* Number of parts and their names (for copying tokenizer/ parts). */
    int (*count)(void *arg);
    const char *(*name)(void *arg, int i);
    void *arg;
    char what[192];     /* names the artifact in messages */
    /* storage for the two built-in sources */
    flow_ctx *ctx; const char *port; int idx;
    flow_store *store; store_handle *h; const store_artifact *art; char prefix[64];
    int lo, hi;         /* the parts under prefix: art->parts[lo..hi) (sorted by name) */
} part_source;

/* Source over input port/idx of a running stage. */
void part_source_ctx(part_source *ps, flow_ctx *c, const char *port, int idx);
/* Source over a stored artifact (prefix "" or "out/" selects an output).
 * Loads the manifest; release with part_source_release. */
int part_source_store(part_source *ps, flow_store *s, const flow_hash *key,
                      const char *prefix, flow_err *err);
void part_source_release(part_source *ps);
/* Copies every part whose name starts with from_prefix into the running
 * stage's output, renamed to to_prefix + rest.  Returns the number copied
 * (>= 0) or a negative code. */
int part_source_copy(part_source *ps, flow_ctx *out, const char *from_prefix,
                     const char *to_prefix, flow_err *err);

/* ---- weights ---------------------------------------------------------- */
/* Streams a safetensors file into an output part (FLOW_PART_F32). */
int st_write(st_file *f, flow_ctx *c, const char *part);

/* ---- metrics ---------------------------------------------------------- */
typedef struct clf_metrics {
    int ncls;
    int64_t n, correct;
    int64_t *confusion;         /* [gold * ncls + pred] */
    int64_t *support;           /* gold count per class */
    double *precision, *recall, *f1;
    double accuracy;
    double macro_f1;            /* mean F1 over classes that occur in gold
                                 * or in the predictions (as scikit-learn) */
} clf_metrics;

/* gold/pred in [0, ncls); entries with gold < 0 are skipped. */
void metrics_compute(clf_metrics *m, const int *gold, const int *pred, size_t n, int ncls);
void metrics_release(clf_metrics *m);

/* ---- corpus reading -------------------------------------------------- */
typedef struct corpus_view {
    size_t n;
    char *text_buf;             /* owned */
    const char **text;          /* n units, NUL-terminated, into text_buf */
    size_t *len;
    int *label;                 /* n label ids, -1 when empty/unknown */
    int nlabels;
    char **labels;              /* label names (from `labels`) */
} corpus_view;

/* Reads text, units and labels of a corpus from a stage input.  A corpus
 * without `labels` or `units` gets label -1 everywhere. */
int cview_read(flow_ctx *c, const char *port, int idx, corpus_view *cv);
void cview_release(corpus_view *cv);
/* Index of name in labels, or -1. */
int labels_find(char *const *labels, int n, const char *name);

/* ---- encoded corpus (ids / offsets / labels, format in stages.h) ------ */
typedef struct enc_view {
    size_t n;                   /* sequences */
    uint64_t nids;
    int32_t *ids;               /* [nids] */
    uint64_t *off;              /* [n + 1]: sequence i is ids[off[i] .. off[i+1]) */
    int32_t *label;             /* [n], -1 = unlabelled; NULL when no labels part */
} enc_view;

/* Reads and validates ids + offsets (+ labels when present) of an input. */
int encv_read(flow_ctx *c, const char *port, int idx, enc_view *v);
/* The same from raw part bytes (labels may be NULL); what names the input. */
int encv_parse(enc_view *v, const char *ids, size_t ids_len, const char *off, size_t off_len,
               const char *lab, size_t lab_len, const char *what, flow_err *err);
void encv_release(enc_view *v);
/* Appends src's sequences to dst (dst's offsets continue; labels are kept
 * only when both views have them). */
void encv_append(enc_view *dst, const enc_view *src);

/* ---- char n-gram TF-IDF features -------------------------------------- */
typedef struct tfidf_config {
    int ngram_min, ngram_max;   /* in code points, 1..8 */
    int hash_bits;              /* dimension D = 2^hash_bits */
    int sublinear_tf;           /* tf -> 1 + ln(tf) */
} tfidf_config;

/* Sparse rows, CSR. */
typedef struct sp_mat {
    size_t nrows, nnz, cap;
    size_t *rowptr;             /* nrows + 1 */
    uint32_t *idx;
    float *val;
} sp_mat;

void sp_release(sp_mat *m);
/* Raw n-gram counts of each text (rows sorted by column). */
void tfidf_counts(const tfidf_config *cfg, const char *const *text, const size_t *len,
                  size_t n, sp_mat *out);
/* idf[j] = ln((1 + N) / (1 + df_j)) + 1, and 0 for df_j < min_df (the
 * bucket is dropped). */
void tfidf_fit_idf(const tfidf_config *cfg, const sp_mat *counts, int min_df, float *idf);
/* In place: counts -> tf transform * idf, L2-normalised rows. */
void tfidf_transform(const tfidf_config *cfg, const float *idf, sp_mat *m);

/* ---- linear classifier on sparse rows --------------------------------- */
typedef struct linear_model {
    int ncls;
    size_t dim;
    float *W;                   /* [ncls][dim] */
    float *b;                   /* [ncls] */
} linear_model;

enum { LOSS_LOG = 0, LOSS_HINGE = 1 };

typedef struct linear_opts {
    int loss;                   /* LOSS_LOG: multinomial logistic regression;
                                 * LOSS_HINGE: multiclass (Crammer-Singer) SVM */
    double l2;                  /* regularisation strength (per sample) */
    int epochs;
    uint64_t seed;
    const float *class_weight;  /* [ncls] or NULL */
    /* Called after each epoch with the current model; returns non-zero to
     * stop.  May be NULL. */
    int (*on_epoch)(void *arg, int epoch, const linear_model *m);
    void *arg;
} linear_opts;

void linear_init(linear_model *m, int ncls, size_t dim);
void linear_release(linear_model *m);
void linear_copy(linear_model *dst, const linear_model *src);
/* SGD with the averaging-free "optimal" schedule of Bottou
 * (eta_t = 1 / (l2 * (t0 + t))); deterministic for a seed. */
void linear_train(linear_model *m, const sp_mat *x, const int *y, const linear_opts *o);
/* scores [ncls] for row r of x. */
void linear_scores(const linear_model *m, const sp_mat *x, size_t r, float *scores);
/* argmax prediction for every row. */
void linear_predict(const linear_model *m, const sp_mat *x, int *pred);
/* softmax in place */
void softmax_inplace(float *v, int n);

/* ---- BERT model artifacts (model_out.c) -------------------------------- */
struct bert_config;
struct bert_model;

/* model.json's format and version: FLOW_E_CORRUPT with "rebuild the
 * model" for an artifact of another version. */
int model_json_check(const json_value *j, const char *what, flow_err *err);
/* The config object of model.json for bert kinds:
 *   {"vocab_size", "hidden", "layers", "head_size", "layer_heads": [per
 *    layer], "layer_ffn": [per layer], "max_len", "type_vocab",
 *    "num_labels", "hidden_dropout", "attn_dropout", "mode",
 *    "pooling": "mean"}
 * "pooling" is written only for a mean-pooled classifier (kernels.h: the
 * mean of the final hidden states over the real positions, [CLS] and
 * [SEP] included); absent means "cls", so older artifacts read as before
 * and a [CLS] model's bytes are what they were before the field existed. */
void bert_config_json(const struct bert_config *c, flow_buf *out);
/* Parses it back (validated with bert_config_validate); a "pooling" other
 * than "cls" or "mean" is FLOW_E_CORRUPT naming it. */
int bert_config_parse(const json_value *cfg, struct bert_config *out, const char *what,
                      flow_err *err);
/* Writes weights (every tensor of the model's table, HF names) and
 * model.json of a bert model artifact.  labels: class names (bert-cls) or
 * NULL (bert-mlm). */
int bert_artifact_write(flow_ctx *c, const struct bert_model *m, const char *kind,
                        char *const *labels, int nlabels, const char *training_json);
/* Copies the tokenizer into the artifact as tokenizer/...: from a bpe node
 * bound to port (parts vocab.txt, tokenizer.bin, ...) or, when the port is
 * bound to a model artifact, its tokenizer/ parts.  Then clean.json, from
 * clean_port (clean node or a model artifact) when bound and present.
 * Returns 0 or the stage failure. */
int artifact_copy_tokenizer(flow_ctx *c, const char *port);
int artifact_copy_clean(flow_ctx *c, const char *port);

/* ---- classifiers: raw text -> label probabilities ---------------------- */
typedef struct clf_model clf_model;

/* Loads any model kind from a source.  Returns 0, or FLOW_E_CORRUPT /
 * FLOW_E_INPUT with a message naming the artifact. */
int clf_load(part_source *src, clf_model **out, flow_err *err);
void clf_free(clf_model *m);
const char *clf_kind(const clf_model *m);
int clf_nlabels(const clf_model *m);
const char *clf_label(const clf_model *m, int i);
/* Weights the model computes with (tfidf-linear: idf + W + b; bert: the
 * tensor table), counted as logical values whatever their stored width
 * (clf_size.c). */
uint64_t clf_param_count(const clf_model *m);
/* Applies the model's cleaning to raw text; returns a malloc'd string
 * (copy of the input when the model has no cleaning settings). */
char *clf_clean(const clf_model *m, const char *text, size_t len, size_t *outlen);
/* Label probabilities for n texts: probs is [n][nlabels].  raw = 1 applies
 * the model's cleaning first (text from outside); 0 for corpus units that
 * were cleaned already.  threads: 0 = default. */
int clf_predict(clf_model *m, const char *const *text, const size_t *len, size_t n,
                int raw, float *probs, flow_err *err);

#endif
