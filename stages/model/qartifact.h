/* qartifact.h — quantized BERT weights inside a model artifact's
 * safetensors `weights` part (format "flow-quant", version 1).
 *
 * Everything but the quantized encoder Linear weights stays F32 under its
 * HuggingFace name.  A quantized Linear weight NAME ("bert.encoder.layer.0.
 * attention.self.query.weight", PyTorch layout [N, K]) becomes:
 *   int8:  NAME            I8  [N, K]     codes in -127..127
 *          NAME_scale      F32 [N]        w = scale[n] * code
 *   uint4: NAME            U8  [N, K/2]   codes 0..15, two per byte (group j
 *                                         = bytes j*g/2.., byte i holds code
 *                                         i low and i + g/2 high)
 *          NAME_scale      F32 [N, K/g]
 *          NAME_zero       U8  [N, K/g]   asymmetric only (symmetric: 8)
 *                                         w = scale * (code - zero)
 *   nf4:   NAME            U8  [N, K/2]   as uint4
 *          NAME_scale      F32 [N, K/g]
 *          NAME_codebook   I8  [16]       w = scale * codebook[code]
 * Metadata "quantization" (a JSON object as text):
 *   {"format":"flow-quant","version":1,"scheme":"int8|uint4|nf4","bits":8,
 *    "group":64,"sym":true,"method":"rtn|gptq","act_order":false,
 *    "damp":0.01,"calibration_sequences":128,"policy":"encoder",
 *    "quantized":["NAME", ...]}
 * The reader refuses another format or version, unknown schemes, missing
 * tensors, wrong dtypes or shapes and out-of-range values (via
 * quant_weight_init_*) with FLOW_E_CORRUPT naming the tensor.
 */
#ifndef FLOW_QARTIFACT_H
#define FLOW_QARTIFACT_H

#include "kernels/kernels.h"
#include "kernels/quant/quant.h"
#include "stages/model/safetensors.h"

#define QART_FORMAT "flow-quant"
#define QART_VERSION 1

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
} qart_stored;

/* Rows [r0, r0 + N) of a prepared weight in stored form. */
int qart_export(const quant_weight *w, int r0, int N, int sym, qart_stored *out, flow_err *e);
void qart_stored_release(qart_stored *s);
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

#endif
