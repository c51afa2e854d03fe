/* onnx_pb_test.c — the protobuf wire writer (stages/export/onnx_pb.c) on
 * known encodings from the protobuf documentation, and the ONNX graph
 * writer's file layout: ModelProto header fields, raw_data inline, external
 * data side file (offset alignment, stale side file removed).  The ONNX
 * semantics (onnx.checker, ONNX Runtime) are checked by onnx_export_test.py. */
#include "test.h"
#include "stages/export/onnx_pb.h"
#include "stages/export/onnx_graph.h"

#include <sys/stat.h>

static int bytes_are(const flow_buf *b, const unsigned char *want, size_t n)
{
    return b->len == n && memcmp(b->data, want, n) == 0;
}

static void test_varints(void)
{
    struct { uint64_t v; unsigned char enc[10]; size_t n; } cases[] = {
        { 0, { 0x00 }, 1 }, { 1, { 0x01 }, 1 }, { 127, { 0x7f }, 1 }, { 128, { 0x80, 0x01 }, 2 },
        { 300, { 0xac, 0x02 }, 2 }, { 16384, { 0x80, 0x80, 0x01 }, 3 },
        { UINT64_MAX, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        flow_buf b;
        buf_init(&b);
        pb_varint(&b, cases[i].v);
        CHECK_MSG(bytes_are(&b, cases[i].enc, cases[i].n), "varint %llu", (unsigned long long)cases[i].v);
        CHECK(pb_varint_len(cases[i].v) == cases[i].n);
        buf_release(&b);
    }
    flow_buf b;
    buf_init(&b);
    pb_int(&b, 1, 150);                 /* the documentation's example: 08 96 01 */
    static const unsigned char e150[] = { 0x08, 0x96, 0x01 };
    CHECK(bytes_are(&b, e150, 3));
    b.len = 0;
    pb_int(&b, 1, -1);                  /* int64 -1: ten bytes of two's complement */
    static const unsigned char em1[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    CHECK(bytes_are(&b, em1, sizeof em1));
    b.len = 0;
    pb_float(&b, 2, 1.0f);              /* wire type 5, little-endian IEEE */
    static const unsigned char ef[] = { 0x15, 0x00, 0x00, 0x80, 0x3f };
    CHECK(bytes_are(&b, ef, sizeof ef));
    b.len = 0;
    pb_str(&b, 2, "testing");           /* the documentation's string example */
    static const unsigned char es[] = { 0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g' };
    CHECK(bytes_are(&b, es, sizeof es));
    flow_buf sub;
    buf_init(&sub);
    pb_int(&sub, 1, 150);
    b.len = 0;
    pb_msg(&b, 3, &sub);                /* embedded message: 1a 03 08 96 01 */
    static const unsigned char em[] = { 0x1a, 0x03, 0x08, 0x96, 0x01 };
    CHECK(bytes_are(&b, em, sizeof em));
    b.len = 0;
    pb_len_prefix(&b, 9, 300);
    CHECK(b.len == pb_len_prefix_size(9, 300) && b.len == 3);
    buf_release(&sub);
    buf_release(&b);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *data = NULL;
    flow_err e = { 0 };
    if (file_read_all(path, &data, len, &e)) return NULL;
    return data;
}

static void test_graph_file(void)
{
    char *dir = test_tmpdir("onnxpb");
    static float big[512];              /* 2 KiB: goes to the side file */
    for (int i = 0; i < 512; i++) big[i] = (float)i;
    for (int external = 0; external <= 1; external++) {
        onnx_graph g;
        onnx_graph_init(&g, 17);
        const char *dims[1] = { "512" };
        onnx_input(&g, "x", ONNX_FLOAT, 1, dims);
        int64_t d[1] = { 512 };
        const char *w = onnx_initializer(&g, "w", ONNX_FLOAT, 1, d, big, sizeof big, NULL);
        const char *in[2] = { "x", w };
        onnx_node_named(&g, "Add", NULL, in, 2, "y", NULL);
        onnx_output(&g, "y", ONNX_FLOAT, 1, dims);
        CHECK(onnx_init_bytes(&g) == sizeof big);
        flow_err e = { 0 };
        int used = -1;
        CHECK_OK(onnx_graph_write(&g, dir, "m.onnx", external, &used, &e), e);
        CHECK(used == external);
        size_t n = 0, dn = 0;
        char *m = slurp(dir, "m.onnx", &n);
        char *side = slurp(dir, "m.onnx.data", &dn);
        CHECK(m && n > 16);
        /* ModelProto: ir_version 8 (opset 17) first, then producer_name "flow" */
        static const unsigned char head[] = { 0x08, 0x08, 0x12, 0x04, 'f', 'l', 'o', 'w' };
        CHECK(m && memcmp(m, head, sizeof head) == 0);
        int inline_data = 0;
        for (size_t i = 0; m && i + sizeof big <= n; i++)
            if (memcmp(m + i, big, sizeof big) == 0) inline_data = 1;
        if (external) {
            CHECK(!inline_data);
            CHECK(side && dn == sizeof big && memcmp(side, big, sizeof big) == 0);
            CHECK(m && memmem(m, n, "location", 8) && memmem(m, n, "m.onnx.data", 11));
        } else {
            CHECK(inline_data);
            CHECK(!side);               /* first round: no side file yet */
        }
        free(m);
        free(side);
        onnx_graph_release(&g);
    }
    /* a stale side file is removed by an inline write */
    onnx_graph g;
    onnx_graph_init(&g, 20);
    const char *dims[1] = { "4" };
    onnx_input(&g, "x", ONNX_FLOAT, 1, dims);
    const char *in[1] = { "x" };
    onnx_node_named(&g, "Relu", NULL, in, 1, "y", NULL);
    onnx_output(&g, "y", ONNX_FLOAT, 1, dims);
    flow_err e = { 0 };
    CHECK_OK(onnx_graph_write(&g, dir, "m.onnx", 0, NULL, &e), e);
    size_t n = 0, dn = 0;
    char *side = slurp(dir, "m.onnx.data", &dn);
    CHECK(!side);
    char *m = slurp(dir, "m.onnx", &n);
    static const unsigned char head9[] = { 0x08, 0x09 };       /* opset 20 -> IR 9 */
    CHECK(m && memcmp(m, head9, 2) == 0);
    free(m);
    free(side);
    onnx_graph_release(&g);
    /* an unwritable folder is an error naming the path */
    onnx_graph_init(&g, 17);
    CHECK(onnx_graph_write(&g, "/nonexistent-flow-dir", "m.onnx", 0, NULL, &e) == FLOW_E_IO);
    CHECK_CONTAINS(e.msg, "/nonexistent-flow-dir/m.onnx");
    onnx_graph_release(&g);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

int main(void)
{
    test_varints();
    test_graph_file();
    return test_summary("onnx_pb_test");
}
