/* onnx_export.h — `flow export HASH --format onnx`: a sequence classifier
 * artifact (kind bert-cls) as an ONNX Runtime / TensorRT deployment folder:
 *   model.onnx    inputs input_ids, attention_mask, token_type_ids (int64
 *                 [batch, sequence], both axes dynamic), output logits
 *                 (float [batch, num_labels]); standard ONNX operators of
 *                 the chosen opset (onnx_bert.c documents the graph)
 *   model.onnx.data  the initializers, only with --external-data or when the
 *                 model would pass protobuf's 2 GB limit
 *   tokenizer.json  the tokenizer (HuggingFace tokenizers' format)
 *   clean.json    the text cleaning flow applies to raw text before
 *                 tokenizing (the training corpus' settings), when the
 *                 model has one
 *   config.json   {"format":"flow-onnx","version":1, kind, precision (fp32,
 *                 int8, uint4-gG; the encoder Linears' format),
 *                 quantization (the artifact's "quantization" metadata,
 *                 stages/model/qartifact.h, or null),
 *                 opset, labels, id2label, max_length (ids per sequence flow
 *                 uses, [CLS] and [SEP] included), max_position_embeddings
 *                 (the longest sequence the model accepts), input and output
 *                 names, special token ids, source artifact, pooling
 *                 ("cls" or "mean": the head the graph computes; informative),
 *                 cleaning: "clean.json" or null}
 * Files in this folder: onnx_pb.c (protobuf wire writer), onnx_graph.c (a
 * graph under construction and its ModelProto writer), onnx_linear.c (a
 * Linear layer per weight format), onnx_bert.c (the BERT classifier graph),
 * onnx_export.c (the folder).  Uses stages/model (the loaded classifier)
 * and kernels/ (the tensor table by HF names). */
#ifndef FLOW_ONNX_EXPORT_H
#define FLOW_ONNX_EXPORT_H

#include "stages/model/classifier.h"

#define ONNX_OPSET_MIN 17       /* LayerNormalization */
#define ONNX_OPSET_GELU 20      /* Gelu */
#define ONNX_OPSET_MAX 21
#define ONNX_OPSET_DEFAULT 17

typedef struct onnx_export_opts {
    int opset;                  /* 0 = ONNX_OPSET_DEFAULT */
    int external;               /* 1: initializers in model.onnx.data */
    const char *source;         /* artifact hash, recorded in config.json */
} onnx_export_opts;

typedef struct onnx_export_info {
    int opset;
    char precision[48];         /* "fp32", "int8", "uint4-g64", "int8+uint4-g64" */
    int nodes, initializers;
    uint64_t weight_bytes;
    int external;               /* model.onnx.data written */
} onnx_export_info;

struct bert_qmodel;

/* Writes the folder dir (which must exist) for classifier m: a quantize
 * artifact's encoder Linears (m->bert->qmodel, as loaded) in their own
 * int8 / 4-bit codes, scales and zeros, never requantized; the rest fp32.
 * FLOW_E_PARAM for a model, a format or an opset that cannot be exported
 * (message says what and what to do), FLOW_E_IO naming the file. */
int onnx_export(clf_model *m, const char *dir, const onnx_export_opts *o, onnx_export_info *info,
                flow_err *e);

struct bert_model;
/* Only dir/model.onnx (and its .data), for a bare classifier model (mode
 * with CLASSIFY) with q's quantized Linears: benchmarks of models that are
 * not artifacts (tests/bench/quant_model_bench.c).  Checks the opset like
 * onnx_export. */
int onnx_export_model(const struct bert_model *m, const struct bert_qmodel *q, const char *dir,
                      const onnx_export_opts *o, onnx_export_info *info, flow_err *e);

#endif
