/* wordcount.c — the `wordcount` stage: words, lines, bytes and characters
 * of its input parts.
 *
 *   wc = wordcount { input = all.out }
 *
 * Part `counts` (UTF-8 TSV): header "part\twords\tlines\tbytes\tchars",
 * one line per input part (named "BINDING:PART"), then a "total" line.
 * A word is a maximal run of bytes other than ASCII whitespace; lines count
 * '\n'; chars counts UTF-8 lead bytes.  Metrics: words, lines, bytes, chars.
 */
#include "stages/stages.h"

#include <string.h>

static const flow_input_def inputs[] = {
    { .name = "input", .many = 1, .help = "nodes (or node.output) to count" },
};

static const flow_output_def outputs[] = {
    { "counts", "TSV: part, words, lines, bytes, chars" },
};

typedef struct counts { unsigned long long words, lines, bytes, chars; } counts;

static int run(flow_ctx *c)
{
    flow_buf tsv;
    buf_init(&tsv);
    buf_adds(&tsv, "part\twords\tlines\tbytes\tchars\n");
    counts total = { 0, 0, 0, 0 };
    static unsigned char buf[1 << 16];
    int rc = 0;
    for (int i = 0; i < flow_in_count(c, "input") && !rc; i++)
        for (int p = 0; p < flow_in_nparts(c, "input", i) && !rc; p++) {
            const char *name = flow_in_part_name(c, "input", i, p);
            flow_in_stream *in;
            if ((rc = flow_in_open_at(c, "input", i, p, &in))) break;
            counts k = { 0, 0, 0, 0 };
            int inword = 0;
            long long n;
            while ((n = flow_in_stream_read(in, buf, sizeof buf)) > 0) {
                k.bytes += (unsigned long long)n;
                for (long long j = 0; j < n; j++) {
                    unsigned char ch = buf[j];
                    int space = ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
                    if (!space && !inword) k.words++;
                    inword = !space;
                    k.lines += ch == '\n';
                    k.chars += (ch & 0xC0) != 0x80;
                }
            }
            if (n < 0) rc = (int)n;
            flow_in_stream_close(in);
            buf_printf(&tsv, "%d:%s\t%llu\t%llu\t%llu\t%llu\n", i, name, k.words, k.lines, k.bytes, k.chars);
            total.words += k.words;
            total.lines += k.lines;
            total.bytes += k.bytes;
            total.chars += k.chars;
        }
    if (!rc) {
        buf_printf(&tsv, "total\t%llu\t%llu\t%llu\t%llu\n", total.words, total.lines, total.bytes, total.chars);
        rc = flow_out_write(c, "counts", FLOW_PART_BYTES, tsv.data, tsv.len);
    }
    if (!rc) {
        flow_metric(c, "words", (double)total.words);
        flow_metric(c, "lines", (double)total.lines);
        flow_metric(c, "bytes", (double)total.bytes);
        flow_metric(c, "chars", (double)total.chars);
    }
    buf_release(&tsv);
    return rc;
}

const flow_stage stage_wordcount = {
    .name = "wordcount",
    .version = 1,
    .help = "count words, lines, bytes and characters of its inputs",
    .inputs = inputs, .ninputs = 1,
    .outputs = outputs, .noutputs = 1,
    .res = { .threads = 1 },
    .run = run,
};
