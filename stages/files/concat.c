/* concat.c — the `concat` stage: every part of every input, in order,
 * into one part `out`.
 *
 *   all = concat { input = [laws, extra]  separator = "\n" }
 *
 * Bindings are read in the order written, parts in their stored order.
 * Hidden parts (last path component starting with '.', e.g. source's
 * `.index`) are metadata, not text, and are skipped.  `separator` goes
 * between consecutive parts (not after the last), so with a single part it
 * changes nothing in the output: a handy early-cutoff test.
 */
#include "stages/stages.h"

#include <string.h>

static const flow_param_def params[] = {
    { .name = "separator", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0,
      .help = "bytes written between consecutive parts" },
};

static const flow_input_def inputs[] = {
    { .name = "input", .many = 1, .help = "nodes (or node.output) whose parts to join" },
};

static const flow_output_def outputs[] = {
    { "out", "the concatenation" },
};

static int hidden(const char *part)
{
    const char *base = strrchr(part, '/');
    return (base ? base[1] : part[0]) == '.';
}

static int run(flow_ctx *c)
{
    const char *sep = flow_param_str(c, "separator");
    size_t seplen = strlen(sep);
    flow_out_stream *out;
    int rc = flow_out_open(c, "out", FLOW_PART_BYTES, &out);
    if (rc) return rc;
    long parts = 0;
    unsigned long long bytes = 0;
    static char buf[1 << 16];
    for (int i = 0; i < flow_in_count(c, "input") && !rc; i++)
        for (int p = 0; p < flow_in_nparts(c, "input", i) && !rc; p++) {
            const char *name = flow_in_part_name(c, "input", i, p);
            if (hidden(name)) continue;
            if (parts++ && seplen) rc = flow_out_stream_write(out, sep, seplen);
            flow_in_stream *in;
            if (!rc) rc = flow_in_open_at(c, "input", i, p, &in);
            if (rc) break;
            long long n;
            while ((n = flow_in_stream_read(in, buf, sizeof buf)) > 0) {
                bytes += (unsigned long long)n;
                if ((rc = flow_out_stream_write(out, buf, (size_t)n))) break;
            }
            if (n < 0 && !rc) rc = (int)n;
            flow_in_stream_close(in);
        }
    int rc2 = flow_out_stream_close(out);
    if (!rc) rc = rc2;
    if (!rc) {
        flow_metric(c, "parts", (double)parts);
        flow_metric(c, "bytes", (double)bytes);
    }
    return rc;
}

const flow_stage stage_concat = {
    .name = "concat",
    .version = 1,
    .help = "concatenate the parts of its inputs into part `out`",
    .params = params, .nparams = 1,
    .inputs = inputs, .ninputs = 1,
    .outputs = outputs, .noutputs = 1,
    .res = { .threads = 1 },
    .run = run,
};
