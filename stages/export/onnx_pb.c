/* onnx_pb.c — protobuf wire-format writer (format in onnx_pb.h). */
#include "onnx_pb.h"

#include <string.h>

size_t pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) { v >>= 7; n++; }
    return n;
}

void pb_varint(flow_buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (unsigned char)v;
    buf_add(b, tmp, n);
}

void pb_key(flow_buf *b, int field, int wire)
{
    pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

void pb_int(flow_buf *b, int field, int64_t v)
{
    pb_key(b, field, PB_VARINT);
    pb_varint(b, (uint64_t)v);
}

void pb_float(flow_buf *b, int field, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    unsigned char le[4] = { (unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                            (unsigned char)(u >> 24) };
    pb_key(b, field, PB_I32);
    buf_add(b, le, 4);
}

void pb_bytes(flow_buf *b, int field, const void *p, size_t n)
{
    pb_len_prefix(b, field, n);
    if (n) buf_add(b, p, n);
}

void pb_str(flow_buf *b, int field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

void pb_msg(flow_buf *b, int field, const flow_buf *sub)
{
    pb_bytes(b, field, sub->data, sub->len);
}

void pb_len_prefix(flow_buf *b, int field, uint64_t n)
{
    pb_key(b, field, PB_LEN);
    pb_varint(b, n);
}

size_t pb_len_prefix_size(int field, uint64_t n)
{
    return pb_varint_len(((uint64_t)field << 3) | PB_LEN) + pb_varint_len(n);
}
