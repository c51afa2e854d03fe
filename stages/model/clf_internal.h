/* clf_internal.h — the classifier object shared by classifier.c (loading,
 * tfidf-linear), clf_clean.c (cleaning raw text like the training corpus)
 * and clf_bert.c (bert kinds).  Internal to the stages library. */
#ifndef FLOW_CLF_INTERNAL_H
#define FLOW_CLF_INTERNAL_H

#include "classifier.h"


enum { CLF_TFIDF = 1, CLF_BERT = 2 };

struct clf_bert;

struct clf_model {
    int kind;
    char kind_name[32];
    char what[192];
    json_value *json;             /* model.json */
    int nlabels;
    char **labels;
    /* cleaning */
    char *clean_json; size_t clean_len;
    int has_clean;
    void *clean_opts;           /* text_opts, owned (clf_clean.c) */
    st_file w;                  /* the weights part */
    /* tfidf-linear: pointers into w */
    tfidf_config tc;
    const float *idf, *W, *b;
    /* bert kinds */
    struct clf_bert *bert;
};

/* Writes model.json text (format in classifier.h).  config_json and
 * training_json are JSON objects (NULL = {}); labels may be NULL. */
void model_json_write(flow_buf *out, const char *kind, const char *config_json,
                      char *const *labels, int nlabels, const char *training_json);

/* clf_clean.c: parses m->clean_json into the cleaning options. */
int clf_clean_setup(clf_model *m, flow_err *err);
void clf_clean_free(clf_model *m);

/* clf_bert.c */
int clf_bert_load(clf_model *m, part_source *src, flow_err *err);
int clf_bert_predict(clf_model *m, const char *const *text, const size_t *len, size_t n,
                     float *probs, flow_err *err);
void clf_bert_free(clf_model *m);

#endif
