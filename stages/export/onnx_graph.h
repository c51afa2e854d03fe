/* onnx_graph.h — an ONNX model under construction and its writer
 * (onnx_graph.c): nodes, initializers, graph inputs/outputs and metadata,
 * serialized as an ONNX ModelProto with the wire writer of onnx_pb.h.
 *
 * Messages and field numbers (onnx/onnx.proto of the ONNX repository):
 *   ModelProto          ir_version 1, producer_name 2, producer_version 3,
 *                       graph 7, opset_import 8, metadata_props 14
 *   OperatorSetIdProto  domain 1, version 2
 *   GraphProto          node 1, name 2, initializer 5, input 11, output 12
 *   NodeProto           input 1, output 2, name 3, op_type 4, attribute 5,
 *                       domain 7
 *   AttributeProto      name 1, f 2, i 3, s 4, ints 8, type 20
 *                       (FLOAT 1, INT 2, STRING 3, INTS 7)
 *   TensorProto         dims 1, data_type 2, name 8, raw_data 9,
 *                       external_data 13, data_location 14 (EXTERNAL 1)
 *   ValueInfoProto      name 1, type 2
 *   TypeProto           tensor_type 1 -> elem_type 1, shape 2
 *   TensorShapeProto    dim 1 -> dim_value 1 | dim_param 2
 *   StringStringEntry   key 1, value 2
 * Initializers are raw_data (little-endian).  A model whose protobuf would
 * pass 2 GB (the protobuf limit) keeps every initializer of 1 KiB or more
 * in a side file `<model>.data` instead (external data: location, offset,
 * length; offsets aligned to 4096), as onnx.save_model does.
 * Names: values are "<scope>/<Op>_<n>" with a graph-wide counter, so the
 * output is the same bytes for the same calls. */
#ifndef FLOW_ONNX_GRAPH_H
#define FLOW_ONNX_GRAPH_H

#include "engine/base/base.h"

/* TensorProto.DataType values. */
enum { ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT8 = 3, ONNX_INT32 = 6, ONNX_INT64 = 7,
       ONNX_BOOL = 9 };

#define ONNX_MAXDIM 4

typedef struct onnx_init {
    char *name;
    int dtype;
    int ndim;
    int64_t dims[ONNX_MAXDIM];
    const void *data;           /* nbytes, little-endian; valid until the write */
    size_t nbytes;
    void *owned;                /* freed with the graph (NULL: borrowed) */
} onnx_init;

typedef struct onnx_graph {
    int opset;                  /* version of the default domain "" */
    int ms_opset;               /* version of com.microsoft, 0 = not used */
    flow_buf nodes;             /* encoded GraphProto.node fields */
    int nnodes;
    onnx_init *inits;
    int ninits, cinits;
    flow_buf inputs, outputs;   /* encoded GraphProto.input / .output fields */
    flow_buf meta;              /* encoded ModelProto.metadata_props fields */
    char scope[160];            /* prefix of generated value names */
    int counter;
    char **strs;                /* generated names (owned) */
    int nstrs, cstrs;
} onnx_graph;

void onnx_graph_init(onnx_graph *g, int opset);
void onnx_graph_release(onnx_graph *g);
/* Prefix of the value names made from now on (e.g. "layer.3/attention"). */
void onnx_scope(onnx_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A string owned by the graph. */
const char *onnx_str(onnx_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Attributes, encoded into a buffer (one AttributeProto field each) that a
 * node takes. */
void onnx_attr_int(flow_buf *a, const char *name, int64_t v);
void onnx_attr_float(flow_buf *a, const char *name, float v);
void onnx_attr_ints(flow_buf *a, const char *name, const int64_t *v, int n);
void onnx_attr_str(flow_buf *a, const char *name, const char *s);

/* Adds a node of op (domain NULL or "" = default, else e.g. "com.microsoft")
 * on inputs in[nin] ("" for an omitted optional input).  Its nout outputs
 * get fresh names, stored in out[] when out is not NULL; returns the first.
 * attrs may be NULL. */
const char *onnx_node(onnx_graph *g, const char *op, const char *domain, const char *const *in,
                      int nin, int nout, const char **out, const flow_buf *attrs);
/* The same with one output named `name` (a graph output such as "logits"). */
const char *onnx_node_named(onnx_graph *g, const char *op, const char *domain,
                            const char *const *in, int nin, const char *name,
                            const flow_buf *attrs);
/* One output, no attributes: op(a) or op(a, b) (b NULL for one input). */
const char *onnx_op(onnx_graph *g, const char *op, const char *a, const char *b);

/* Adds an initializer; data must stay valid until onnx_graph_write (owned,
 * when not NULL, is freed by onnx_graph_release).  Returns its name. */
const char *onnx_initializer(onnx_graph *g, const char *name, int dtype, int ndim,
                             const int64_t *dims, const void *data, size_t nbytes, void *owned);
/* Small constants as initializers (copied): a float scalar, an int64 vector. */
const char *onnx_const_f32(onnx_graph *g, float v);
const char *onnx_const_i64(onnx_graph *g, const int64_t *v, int n);

/* Graph inputs / outputs: dims are numbers ("16") or symbolic names
 * ("batch") for dynamic axes. */
void onnx_input(onnx_graph *g, const char *name, int dtype, int ndim, const char *const *dims);
void onnx_output(onnx_graph *g, const char *name, int dtype, int ndim, const char *const *dims);
/* ModelProto.metadata_props entry. */
void onnx_meta(onnx_graph *g, const char *key, const char *value);

/* Bytes of the initializers (what decides on external data). */
uint64_t onnx_init_bytes(const onnx_graph *g);

/* Writes dir/file (and dir/file.data with external data): external = 1
 * always puts initializers of 1 KiB or more in the side file, 0 only when
 * the model would pass the 2 GB protobuf limit.  Through temporary files
 * renamed at the end; a stale side file of an earlier export is removed.
 * FLOW_E_IO naming the path. *used_external (may be NULL) says which. */
int onnx_graph_write(const onnx_graph *g, const char *dir, const char *file, int external,
                     int *used_external, flow_err *e);

/* Test hook: when the program defines it (a weak reference: `flow` does
 * not; the test binary flow_testhooks does, tests/hooks/onnx_inline_limit.c,
 * from FLOW_TEST_ONNX_INLINE_LIMIT) and it returns a nonzero byte count,
 * that count replaces the 2 GB limit, so the path a model above 2 GB takes
 * is tested on a small one. */
uint64_t flow_test_onnx_inline_limit(void) __attribute__((weak));

#endif
