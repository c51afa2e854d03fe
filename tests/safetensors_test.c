/* safetensors_test.c — the safetensors reader and writer
 * (stages/model/safetensors.h): round trip of every dtype with shapes and
 * metadata, the layout rules (element-size order, 8-byte header padding,
 * contiguous data), and that every defect of a file is refused with a
 * message naming it: bad header length, bad JSON, unknown dtype, size not
 * matching the shape, holes, overlaps, duplicates, truncation, a wrong
 * shape or dtype asked for.  tests/export_hf_test.py reads the files with
 * the Python safetensors package. */
#include "stages/model/safetensors.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Parses a copy of (p, n); returns the code, message in *err. */
static int parse_copy(const void *p, size_t n, st_file *f, flow_err *err)
{
    char *copy = malloc(n + 1);
    memcpy(copy, p, n);
    return st_parse(f, copy, n, "test", err);
}

/* A file with a hand-written header and data bytes. */
static int parse_raw(const char *header, size_t data_len, flow_err *err)
{
    flow_buf b;
    buf_init(&b);
    size_t hl = strlen(header);
    unsigned char le[8];
    for (int k = 0; k < 8; k++) le[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    buf_add(&b, le, 8);
    buf_add(&b, header, hl);
    for (size_t i = 0; i < data_len; i++) buf_addc(&b, (char)i);
    st_file f;
    int rc = parse_copy(b.data, b.len, &f, err);
    if (!rc) st_release(&f);
    buf_release(&b);
    return rc;
}

static void test_roundtrip(void)
{
    float w[6] = { 1, 2, 3, 4, 5, 6 };
    uint16_t h[3] = { 0x3c00, 0xc000, 0x7bff };
    int8_t q[5] = { -128, -1, 0, 1, 127 };
    uint8_t packed[2] = { 0x21, 0xf3 };
    int64_t z[1] = { -7 };
    st_file f;
    st_init(&f);
    int64_t s23[2] = { 2, 3 }, s3[1] = { 3 }, s5[1] = { 5 }, s2[1] = { 2 }, s1[1] = { 1 };
    st_add(&f, "q", ST_I8, 1, s5, q);          /* 1-byte first: the writer reorders the data */
    st_add(&f, "layer.weight", ST_F32, 2, s23, w);
    st_add(&f, "half", ST_F16, 1, s3, h);
    st_add(&f, "packed4", ST_U8, 1, s2, packed);
    st_add(&f, "zero", ST_I64, 1, s1, z);
    st_add(&f, "scalar", ST_F32, 0, NULL, w);
    st_set_meta(&f, "format", "pt");
    st_set_meta(&f, "quant", "int4 g64 sym");
    st_set_meta(&f, "quant", "int4 g32 asym");     /* replaced */
    flow_buf out;
    buf_init(&out);
    st_serialize(&f, &out);
    st_release(&f);
    uint64_t hl = 0;
    memcpy(&hl, out.data, 8);
    CHECK(hl % 8 == 0 && out.data[8] == '{');
    CHECK(out.len == 8 + hl + 8 + 24 + 4 + 6 + 5 + 2);
    flow_err err = { 0 };
    st_file r;
    CHECK_OK(parse_copy(out.data, out.len, &r, &err), err);
    CHECK(r.n == 6 && r.nmeta == 2);
    CHECK_STREQ(st_meta(&r, "quant"), "int4 g32 asym");
    CHECK(st_meta(&r, "nope") == NULL);
    const st_tensor *t = st_find(&r, "zero");
    CHECK(t && t->dtype == ST_I64 && t->begin == 0 && memcmp(t->data, z, 8) == 0);
    t = st_find(&r, "q");
    CHECK(t && t->dtype == ST_I8 && t->numel == 5 && memcmp(t->data, q, 5) == 0);
    t = st_find(&r, "half");
    CHECK(t && t->dtype == ST_F16 && memcmp(t->data, h, 6) == 0 && t->begin % 2 == 0);
    t = st_find(&r, "packed4");
    CHECK(t && t->dtype == ST_U8 && memcmp(t->data, packed, 2) == 0);
    t = st_find(&r, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1);
    const float *p;
    CHECK_OK(st_get_f32(&r, "layer.weight", 2, s23, &p, "test", &err), err);
    CHECK(memcmp(p, w, sizeof w) == 0);
    int64_t s32[2] = { 3, 2 };
    CHECK(st_get_f32(&r, "layer.weight", 2, s32, &p, "test", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "shape [2, 3], expected [3, 2]");
    CHECK(st_get_f32(&r, "q", 1, s5, &p, "test", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "is I8, expected F32");
    CHECK(st_get_f32(&r, "missing", 1, s5, &p, "test", &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "'missing' is missing");
    st_release(&r);

    /* truncated by one byte; an older FLOWWTS file */
    CHECK(parse_copy(out.data, out.len - 1, &r, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "truncated");
    char old[64] = "FLOWWTS";
    CHECK(parse_copy(old, sizeof old, &r, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "rebuild");
    buf_release(&out);
}

static void test_invalid(void)
{
    flow_err err = { 0 };
    CHECK_OK(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &err), err);
    CHECK(parse_raw("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "dtype F64");
    CHECK(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "spans 8 bytes, expected 12");
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "a hole");
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "overlapping");
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "appears twice");
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "truncated");
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, &err) == FLOW_E_CORRUPT);
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, &err) == FLOW_E_CORRUPT);
    CHECK(parse_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "data_offsets");
    CHECK(parse_raw("{\"__metadata__\":{\"k\":1}}", 0, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "metadata 'k' is not a string");
    CHECK(parse_raw("{\"a\":", 0, &err) == FLOW_E_CORRUPT);
    CHECK(parse_raw("[1]", 0, &err) == FLOW_E_CORRUPT);
    /* header length beyond the file */
    char bad[16] = { 100, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    st_file f;
    CHECK(parse_copy(bad, 10, &f, &err) == FLOW_E_CORRUPT);
    CHECK_CONTAINS(err.msg, "not a safetensors file");
    /* empty file: only metadata */
    CHECK_OK(parse_raw("{\"__metadata__\":{\"format\":\"pt\"}}", 0, &err), err);
}

int main(void)
{
    test_roundtrip();
    test_invalid();
    return test_summary("safetensors_test");
}
