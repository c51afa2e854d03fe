/* safetensors.h — reading and writing safetensors files, the format of the
 * `weights` part of every model artifact and of `flow export --format hf`.
 *
 * The format (https://github.com/huggingface/safetensors):
 *   u64 little-endian N, then N bytes of UTF-8 JSON (padded with spaces to a
 *   multiple of 8), then the data buffer.  The JSON object maps each tensor
 *   name to {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [b, e]}
 *   (byte offsets into the data buffer, e - b = numel * dtype size), plus an
 *   optional "__metadata__" object of string -> string.  Tensors tile the
 *   buffer with no hole and no overlap; data is little-endian, row-major
 *   (PyTorch layout).
 *
 * This module depends on engine/base only, so any stage (quantize, prune),
 * command (export) or exporter (ONNX) can share it.  Writer: st_add
 * registers tensors (their data must stay valid until written), st_set_meta
 * adds metadata (quantization parameters: scheme, group size, which tensor
 * holds the scales of which ...), st_serialize writes.  The writer lays the
 * data out by element size, largest first (stable within a size), so every
 * tensor starts at a multiple of its element size and the reader can hand
 * out typed pointers; the header lists tensors in insertion order.
 * Reader: st_parse takes the whole file and validates everything (header
 * length, JSON, dtypes, shapes, offsets covering the buffer exactly,
 * duplicate names, metadata types) before returning.
 *
 * dtypes: F32, F16, BF16, I8, U8 (4-bit codes are packed two per U8 byte,
 * low nibble first: the shape says the packed byte count, the metadata says
 * how to unpack), I32 and I64 (indices, zero points).
 */
#ifndef FLOW_SAFETENSORS_H
#define FLOW_SAFETENSORS_H

#include "engine/base/base.h"

#include <stddef.h>
#include <stdint.h>

typedef enum st_dtype {
    ST_F32 = 0, ST_F16, ST_BF16, ST_I8, ST_U8, ST_I32, ST_I64, ST_NDTYPES
} st_dtype;

#define ST_MAXDIM 8

/* "F32", "F16", ... */
const char *st_dtype_name(st_dtype t);
/* Bytes per element. */
size_t st_dtype_size(st_dtype t);
/* Parses a dtype name; -1 when unknown. */
int st_dtype_parse(const char *name);

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;                   /* 0 (scalar) .. ST_MAXDIM */
    int64_t shape[ST_MAXDIM];
    uint64_t numel;
    uint64_t begin, end;        /* byte offsets into the data buffer */
    const void *data;           /* writer: the source; reader: into the file */
} st_tensor;

typedef struct st_file {
    int n, cap;
    st_tensor *t;
    int nmeta, meta_cap;
    char **meta_key, **meta_val;
    char *raw;                  /* reader: the whole file (owned) */
    size_t raw_len;
    const unsigned char *buffer;   /* reader: start of the data buffer */
} st_file;

void st_init(st_file *f);
void st_release(st_file *f);

/* ---- writer ---------------------------------------------------------- */
/* Registers a tensor; data (numel * size bytes) must stay valid until
 * serialized.  A duplicate name or a bad shape is a bug of the caller. */
void st_add(st_file *f, const char *name, st_dtype dt, int ndim, const int64_t *shape,
            const void *data);
/* Sets (or replaces) a metadata entry. */
void st_set_meta(st_file *f, const char *key, const char *value);
/* Header: u64 length + JSON + padding (assigns begin/end to every tensor). */
void st_header(st_file *f, flow_buf *out);
/* Header then data. */
void st_serialize(st_file *f, flow_buf *out);
/* The same, streamed through write(arg, bytes, n) (0 or a negative code,
 * which stops it): the header, then each tensor straight from its source,
 * so a model is never copied whole.  Returns 0 or write's code. */
int st_write_stream(st_file *f, int (*write)(void *arg, const void *p, size_t n), void *arg);

/* ---- reader ---------------------------------------------------------- */
/* Takes ownership of raw (malloc'd, len bytes) and validates the file;
 * what names it in messages ("input 'base': weights").  FLOW_E_CORRUPT with
 * the reason on any defect. */
int st_parse(st_file *f, char *raw, size_t len, const char *what, flow_err *err);
/* Tensor by name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
/* Metadata value, or NULL. */
const char *st_meta(const st_file *f, const char *key);
/* An F32 tensor whose shape is exactly shape[0..ndim): its data, or
 * FLOW_E_CORRUPT naming what is wrong (missing, dtype, shape). */
int st_get_f32(const st_file *f, const char *name, int ndim, const int64_t *shape,
               const float **out, const char *what, flow_err *err);

#endif
