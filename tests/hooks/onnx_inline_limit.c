/* onnx_inline_limit.c — the FLOW_TEST_ONNX_INLINE_LIMIT test hook, linked
 * only into the flow_testhooks binary (CMakeLists.txt), never into `flow`.
 *
 * With FLOW_TEST_ONNX_INLINE_LIMIT=BYTES in the environment, `flow export
 * --format onnx` treats a model whose protobuf would pass BYTES as one
 * that would pass protobuf's 2 GB limit (stages/export/onnx_graph.c): its
 * initializers go to model.onnx.data without --external-data.  Used by
 * tests/onnx_export_test.py to run the above-2-GB path on a small model. */
#include "stages/export/onnx_graph.h"

#include <stdlib.h>

uint64_t flow_test_onnx_inline_limit(void)
{
    const char *v = getenv("FLOW_TEST_ONNX_INLINE_LIMIT");
    return v ? strtoull(v, NULL, 10) : 0;
}
