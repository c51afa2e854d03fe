/* hf_export.c — writes a tokenizer in the HuggingFace `tokenizers` JSON
 * format (tokenizer.json) and as plain vocab.txt / merges.txt.
 *
 * Equivalence with tok_encode():
 *  - specials and forced terms are added_tokens (specials special=true,
 *    forced special=false, normalized=false); HF splits them out
 *    leftmost-longest before pre-tokenizing, as tok_segment() does;
 *  - the pre-tokenizer is one Split (behavior Isolated) whose Oniguruma
 *    pattern defines the same character classes and run limit as
 *    tok_segment.c (its table tok_unicode.c is generated from this very
 *    pattern by tests/tools/gen_tok_unicode.py);
 *  - the model is BPE with merges in rank order, unk [UNK], fuse_unk false,
 *    no subword prefix/suffix, byte_fallback as trained;
 *  - post-processing [CLS] $A [SEP]; decoder ByteFallback + Fuse, so
 *    decoding concatenates tokens as tok_decode() does.
 */
#include "tokenizer.h"

#include <string.h>

/* Must match tok_unicode.c (regenerate it when this changes). */
#define WS_CLASS "[\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
                 "\\x{202F}\\x{205F}\\x{3000}]"

static void pre_tokenizer_pattern(flow_buf *b)
{
    buf_printf(b, WS_CLASS "{1,%d}|\\p{Han}{1,%d}|[\\p{L}\\p{M}&&[^\\p{Han}]]{1,%d}"
               "|[\\p{N}&&[^\\p{Han}]]{1,%d}|.", TOK_MAX_RUN, TOK_MAX_RUN, TOK_MAX_RUN,
               TOK_MAX_RUN);
}

static void json_token(flow_buf *b, const tok_tokenizer *t, int id)
{
    size_t n;
    const char *s = tok_token(t, id, &n);
    buf_json_str(b, s, n);
}

void tok_export_hf_json(const tok_tokenizer *t, flow_buf *b)
{
    int nv = tok_vocab_size(t), nf = tok_nforced(t);
    buf_adds(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                "  \"added_tokens\": [");
    for (int i = 0; i < TOK_NSPECIAL + nf; i++) {
        buf_printf(b, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", i);
        json_token(b, t, i);
        buf_printf(b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                      "\"normalized\": false, \"special\": %s}",
                   i < TOK_NSPECIAL ? "true" : "false");
    }
    buf_adds(b, "\n  ],\n  \"normalizer\": null,\n"
                "  \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    flow_buf pat;
    buf_init(&pat);
    pre_tokenizer_pattern(&pat);
    buf_json_str(b, pat.data, pat.len);
    buf_release(&pat);
    buf_adds(b, "}, \"behavior\": \"Isolated\", \"invert\": false},\n");
    buf_printf(b,
        "  \"post_processor\": {\"type\": \"TemplateProcessing\",\n"
        "    \"single\": [{\"SpecialToken\": {\"id\": \"[CLS]\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
        "{\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 0}}],\n"
        "    \"pair\": [{\"SpecialToken\": {\"id\": \"[CLS]\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
        "{\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 0}}, "
        "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}, "
        "{\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 1}}],\n"
        "    \"special_tokens\": {\"[CLS]\": {\"id\": \"[CLS]\", \"ids\": [%d], \"tokens\": [\"[CLS]\"]}, "
        "\"[SEP]\": {\"id\": \"[SEP]\", \"ids\": [%d], \"tokens\": [\"[SEP]\"]}}},\n",
        TOK_CLS, TOK_SEP);
    buf_adds(b, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": "
                "[{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},\n");
    buf_printf(b, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"[UNK]\", "
                  "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
                  "\"fuse_unk\": false, \"byte_fallback\": %s, \"ignore_merges\": false,\n"
                  "    \"vocab\": {", tok_byte_fallback(t) ? "true" : "false");
    for (int i = 0; i < nv; i++) {
        buf_adds(b, i ? ",\n      " : "\n      ");
        json_token(b, t, i);
        buf_printf(b, ": %d", i);
    }
    buf_adds(b, "\n    },\n    \"merges\": [");
    for (int i = 0; i < tok_nmerges(t); i++) {
        int a, c, r;
        tok_merge(t, i, &a, &c, &r);
        buf_adds(b, i ? ",\n      [" : "\n      [");
        json_token(b, t, a);
        buf_adds(b, ", ");
        json_token(b, t, c);
        buf_addc(b, ']');
    }
    buf_adds(b, "\n    ]\n  }\n}\n");
}

/* Token text with bytes < 0x21, 0x7F and '\\' as \xHH. */
static void txt_token(flow_buf *b, const tok_tokenizer *t, int id)
{
    size_t n;
    const char *s = tok_token(t, id, &n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x7F || c == '\\')
            buf_printf(b, "\\x%02X", c);
        else
            buf_addc(b, (char)c);
    }
}

void tok_export_vocab_txt(const tok_tokenizer *t, flow_buf *b)
{
    for (int i = 0; i < tok_vocab_size(t); i++) {
        txt_token(b, t, i);
        buf_addc(b, '\n');
    }
}

void tok_export_merges_txt(const tok_tokenizer *t, flow_buf *b)
{
    for (int i = 0; i < tok_nmerges(t); i++) {
        int a, c, r;
        tok_merge(t, i, &a, &c, &r);
        txt_token(b, t, a);
        buf_addc(b, ' ');
        txt_token(b, t, c);
        buf_addc(b, '\n');
    }
}
