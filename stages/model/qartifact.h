/* qartifact.h — quantized BERT weights inside a model artifact's
 * safetensors `weights` part (format "flow-quant", version 3; versions 1
 * and 2, which had fewer choices, are still read: see "Versions").
 *
 * Everything but the quantized tensors stays F32 under its HuggingFace
 * name.  A quantized Linear weight NAME ("bert.encoder.layer.0.
 * attention.self.query.weight", PyTorch layout [N, K]) becomes:
 *   int8:  NAME            I8  [N, K]     codes in -127..127
 *          NAME_scale      SC  [N]        w = scale[n] * code
 *   uint4: NAME            U8  [N, K/2]   codes 0..15, two per byte (group j
 *                                         = bytes j*g/2.., byte i holds code
 *                                         i low and i + g/2 high)
 *          NAME_scale      SC  [N, K/g]
 *          NAME_zero       U8  [N, K/g]   asymmetric only (symmetric: 8)
 *                                         w = scale * (code - zero)
 *   nf4:   NAME            U8  [N, K/2]   as uint4
 *          NAME_scale      SC  [N, K/g]
 *          NAME_codebook   I8  [16]       w = scale * codebook[code]
 * where SC, the scale dtype, is F32 or F16 ("scales" below; F16 scales are
 * the F32 ones rounded to nearest even, and the kernels then use exactly
 * the F16 values).
 *
 * Embeddings ("embeddings"): fp32, or the three embedding tables (word
 * [V, H], position [max_len, H], token type [type_vocab, H]; the QART_*_EMB
 * names) each quantized per row, round to nearest:
 *   int8:  stored as an int8 Linear (I8 [R, H], NAME_scale SC [R]);
 *   uint4: stored as a uint4 Linear with groups of "embedding_group" along
 *          H and zeros unless "embedding_sym" (U8 [R, H/2], NAME_scale SC
 *          [R, H/g], NAME_zero U8 [R, H/g]).
 * An embedding is a lookup, not a product, so the loader expands the rows
 * to fp32 (scale * code, or scale * (code - zero): one IEEE product each)
 * and the forward is that of those values.
 *
 * Metadata "quantization" (a JSON object as text):
 *   {"format":"flow-quant","version":3,"scheme":"int8|uint4|nf4","bits":8,
 *    "group":64,"sym":true,"method":"rtn|gptq","act_order":false,
 *    "damp":0.01,"calibration_sequences":128,"policy":"encoder|none",
 *    "scales":"f32|f16","embeddings":"fp32|int8|uint4",
 *    "embedding_group":64,"embedding_sym":false,
 *    "quantized":["NAME", ...]}
 * Versions: 1 had neither "scales" (f32) nor "embeddings" (fp32); in 2,
 * "embeddings":"int8" meant the word embeddings only (position and type
 * F32) and uint4 did not exist.
 * The reader refuses another format or version, unknown schemes, missing
 * tensors, wrong dtypes or shapes, out-of-range values (via
 * quant_weight_init_*, and for embeddings: codes of -128, zeros above 15,
 * scales negative or not finite), a query/key/value block quantized only
 * in part, a declared embedding stored F32, and I8 / U8 tensors the
 * metadata does not account for, with FLOW_E_CORRUPT naming the tensor.
 */
#ifndef FLOW_QARTIFACT_H
#define FLOW_QARTIFACT_H

#include "kernels/kernels.h"
#include "kernels/quant/quant.h"
#include "stages/model/safetensors.h"

#define QART_FORMAT "flow-quant"
#define QART_VERSION 3
#define QART_WORD_EMB "bert.embeddings.word_embeddings.weight"
#define QART_POS_EMB "bert.embeddings.position_embeddings.weight"
#define QART_TYPE_EMB "bert.embeddings.token_type_embeddings.weight"
#define QART_NEMB 3

/* The embedding tables quantized with "embeddings" int8 / uint4 (format 3):
 * QART_WORD_EMB, QART_POS_EMB, QART_TYPE_EMB. */
extern const char *const qart_emb_names[QART_NEMB];

/* HF name of the weight of Linear `which` of layer l; for BERT_LIN_QKV,
 * part 0, 1, 2 = query, key, value (rows [0,A), [A,2A), [2A,3A) of the
 * fused block). */
void qart_weight_name(int l, int which, int part, char *out, size_t cap);

/* Stored tensors of one quantized weight (owned buffers; qart_stored_release). */
typedef struct qart_stored {
    quant_kind kind;
    int N, K, group, sym;
    void *codes;                /* I8 [N, K] or U8 [N, K/2] */
    float *scale;               /* [N] or [N, G] */
    uint8_t *zero;              /* [N, G] (uint4 asym) or NULL */
    int8_t codebook[16];
    uint16_t *scale16;          /* F16 copy of scale (qart_stored_f16), or NULL */
} qart_stored;

/* Rows [r0, r0 + N) of a prepared weight in stored form. */
int qart_export(const quant_weight *w, int r0, int N, int sym, qart_stored *out, flow_err *e);
void qart_stored_release(qart_stored *s);
/* An embedding table W [R, H] quantized per row, round to nearest: kind
 * QUANT_KIND_INT8 (symmetric, one scale per row), or QUANT_KIND_UINT4 with
 * groups of `group` along H (dividing it; zeros unless sym). */
int qart_embed(const float *W, int R, int H, quant_kind kind, int group, int sym, qart_stored *out, flow_err *e);
/* Stores s's scales as F16 (rounded to nearest even): FLOW_E_PARAM naming
 * the tensor when a scale is out of the F16 range or loses more than 2^-10
 * of its value (subnormal), so that scales = f32 is needed. */
int qart_stored_f16(qart_stored *s, const char *name, flow_err *e);
/* Registers s under NAME (and NAME_scale, ...) in f; s must outlive f's
 * serialization. */
void qart_add(st_file *f, const char *name, const qart_stored *s);
/* Bytes of s as stored (codes, scales, zeros, code book). */
size_t qart_bytes(const qart_stored *s);

/* Reads the quantized Linears of a model with config cfg from f (metadata
 * "quantization" present) into a new bert_qmodel (*out).  *quantized gets
 * the table of which (layer, which) are quantized (BERT_MAX_LAYERS x
 * BERT_LIN_COUNT, may be NULL).  what names the artifact. */
int qart_load(const st_file *f, const bert_config *cfg, bert_qmodel **out,
              unsigned char *quantized, const char *what, flow_err *e);

/* 1 when tensor name is stored quantized in f (dtype I8/U8). */
int qart_is_quantized(const st_file *f, const char *name);

/* After qart_load: the embeddings of m from f that the metadata declares
 * quantized (expanded into m's fp32 parameters, validated), and a check
 * that every I8 / U8 tensor of m's table is one the metadata accounts for
 * (an encoder Linear weight, or a declared embedding), so that no tensor is
 * silently left unread. */
int qart_load_rest(const st_file *f, bert_model *m, const char *what, flow_err *e);

/* F16 <-> F32 (IEEE binary16, round to nearest even; inf/nan kept). */
uint16_t qart_f16_from_f32(float x);
float qart_f32_from_f16(uint16_t h);

#endif
