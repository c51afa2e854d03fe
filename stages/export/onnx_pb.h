/* onnx_pb.h — a protobuf wire-format writer, just what the ONNX exporter
 * needs (stages/export/onnx_graph.c).  Messages are appended to a flow_buf;
 * a nested message is written into its own buffer first and then appended
 * with its length (pb_msg), except the large tensor payloads, which the
 * graph writer streams straight to the file after a pb_len_prefix.
 *
 * Wire format (https://protobuf.dev/programming-guides/encoding/): every
 * field is a key varint (field_number << 3 | wire_type) and a value;
 *   wire 0 VARINT   int32/int64/enum/bool, base-128 little-endian groups of
 *                   7 bits, high bit = more; a negative int64 is its
 *                   two's-complement uint64 (10 bytes);
 *   wire 2 LEN      a varint byte count, then the bytes (strings, bytes,
 *                   nested messages, packed repeated scalars);
 *   wire 5 I32      4 little-endian bytes (float).
 * Repeated scalars are written one field per value (what proto2 parsers
 * expect for non-packed fields; proto parsers accept both forms). */
#ifndef FLOW_ONNX_PB_H
#define FLOW_ONNX_PB_H

#include "engine/base/base.h"

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

/* Bytes a varint of v takes (1..10). */
size_t pb_varint_len(uint64_t v);
void pb_varint(flow_buf *b, uint64_t v);
void pb_key(flow_buf *b, int field, int wire);
/* Varint field (int32, int64, enum); negative values as two's complement. */
void pb_int(flow_buf *b, int field, int64_t v);
void pb_float(flow_buf *b, int field, float v);
void pb_bytes(flow_buf *b, int field, const void *p, size_t n);
void pb_str(flow_buf *b, int field, const char *s);
/* A nested message: key, length of sub, sub's bytes. */
void pb_msg(flow_buf *b, int field, const flow_buf *sub);
/* Key and length of a LEN field whose n payload bytes the caller writes
 * itself afterwards (streamed tensor data). */
void pb_len_prefix(flow_buf *b, int field, uint64_t n);
/* Bytes pb_len_prefix writes for (field, n). */
size_t pb_len_prefix_size(int field, uint64_t n);

#endif
