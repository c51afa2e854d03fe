/* tok_tool.c — drives the tokenizer library without the engine, for
 * tests/tokenizer_hf_test.py and tests/bench/bpe_bench.sh.
 *
 *   tok_tool train OUTDIR [--vocab N] [--coverage F] [--byte-fallback]
 *            [--max-chars N] [--min-freq N] [--threads N] [--terms FILE]... FILE...
 *       trains on the FILEs (one unit per line) and writes tokenizer.bin,
 *       tokenizer.json, vocab.txt, merges.txt into OUTDIR; prints stats.
 *   tok_tool encode TOKENIZER.BIN FILE [--threads N] [--max-len N] [--bench]
 *       prints every unit's ids ([CLS] ... [SEP]) one line per unit, or with
 *       --bench only the throughput.
 */
#include "stages/tokenizer/tokenizer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len)
{
    char *data;
    flow_err err = {0, {0}};
    if (file_read_all(path, &data, len, &err)) {
        fprintf(stderr, "tok_tool: %s\n", err.msg);
        exit(2);
    }
    return data;
}

static void spit(const char *dir, const char *name, flow_buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f)) {
        fprintf(stderr, "tok_tool: cannot write %s\n", path);
        exit(2);
    }
    buf_release(b);
}

static int cmd_train(int argc, char **argv)
{
    tok_train_opts o = {8000, 0.9995, 0, 16, 2, 1, NULL, NULL, 0, 0, 0, NULL};
    tok_terms terms;
    tok_terms_init(&terms);
    const char *outdir = argv[0];
    tok_text *texts = xcalloc(argc, sizeof *texts);
    char **term_files = xcalloc(argc, sizeof *term_files);
    int nt = 0, nterm_files = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc) o.vocab_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--coverage") && i + 1 < argc) o.character_coverage = atof(argv[++i]);
        else if (!strcmp(argv[i], "--byte-fallback")) o.byte_fallback = 1;
        else if (!strcmp(argv[i], "--max-chars") && i + 1 < argc) o.max_token_chars = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-freq") && i + 1 < argc) o.min_frequency = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--terms") && i + 1 < argc) term_files[nterm_files++] = argv[++i];
        else {
            texts[nt].s = slurp(argv[i], &texts[nt].n);
            nt++;
        }
    }
    flow_err err = {0};
    for (int i = 0; i < nterm_files; i++) {
        size_t n;
        char *d = slurp(term_files[i], &n);
        if (tok_terms_parse(&terms, d, n, term_files[i], o.max_token_chars, &err)) {
            fprintf(stderr, "tok_tool: %s\n", err.msg);
            return 1;
        }
        free(d);
    }
    double t0 = now_s();
    tok_tokenizer *t;
    tok_train_stats st;
    if (tok_train(texts, nt, &terms, &o, &t, &st, &err)) {
        fprintf(stderr, "tok_tool: %s\n", err.msg);
        return 1;
    }
    double dt = now_s() - t0;
    fprintf(stderr, "trained in %.3fs (count %.3fs, merge %.3fs): vocab %d, alphabet %d of %d, "
            "merges %d, forced %d (dup %d, too long %d), words %llu unique %llu\n",
            dt, st.seconds_count, st.seconds_merge, tok_vocab_size(t), st.alphabet,
            st.distinct_chars, st.merges, terms.n, terms.duplicates, terms.too_long,
            (unsigned long long)st.words, (unsigned long long)st.unique_words);
    printf("%.3f\n", dt);
    flow_buf b;
    buf_init(&b);
    tok_serialize(t, &b); spit(outdir, "tokenizer.bin", &b);
    tok_export_hf_json(t, &b); spit(outdir, "tokenizer.json", &b);
    tok_export_vocab_txt(t, &b); spit(outdir, "vocab.txt", &b);
    tok_export_merges_txt(t, &b); spit(outdir, "merges.txt", &b);
    tok_train_stats_release(&st);
    tok_free(t);
    for (int i = 0; i < nt; i++)
        free((char *)texts[i].s);
    free(texts);
    free(term_files);
    tok_terms_release(&terms);
    return 0;
}

static int cmd_encode(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int threads = 1, max_len = 1 << 30, bench = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-len") && i + 1 < argc) max_len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bench")) bench = 1;
    }
    size_t blen, tlen;
    char *bin = slurp(argv[0], &blen);
    char *text = slurp(argv[1], &tlen);
    tok_tokenizer *t;
    flow_err err = {0};
    if (tok_load(&t, bin, blen, &err)) {
        fprintf(stderr, "tok_tool: %s\n", err.msg);
        return 1;
    }
    double t0 = now_s();
    tok_batch b;
    tok_encode_lines(t, text, tlen, max_len, threads, &b);
    double dt = now_s() - t0;
    if (bench) {
        printf("%.3f %.2f %llu %llu\n", dt, tlen / 1e6 / dt, (unsigned long long)b.nseq,
               (unsigned long long)b.content_tokens);
    } else {
        for (uint64_t s = 0; s < b.nseq; s++) {
            for (uint64_t i = b.offsets[s]; i < b.offsets[s + 1]; i++)
                printf(i > b.offsets[s] ? " %u" : "%u", b.ids[i]);
            putchar('\n');
        }
    }
    fprintf(stderr, "encoded %.2f MB in %.3fs (%.2f MB/s, %d threads): %llu units, %llu tokens, "
            "%.3f chars/token, %llu unk chars\n", tlen / 1e6, dt, tlen / 1e6 / dt, threads,
            (unsigned long long)b.nseq, (unsigned long long)b.content_tokens,
            b.content_tokens ? (double)b.chars / b.content_tokens : 0.0,
            (unsigned long long)b.unk_chars);
    tok_batch_release(&b);
    tok_free(t);
    free(bin);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "train"))
        return cmd_train(argc - 2, argv + 2);
    if (argc >= 4 && !strcmp(argv[1], "encode"))
        return cmd_encode(argc - 2, argv + 2);
    fprintf(stderr, "usage: tok_tool train OUTDIR [options] FILE...\n"
                    "       tok_tool encode TOKENIZER.BIN FILE [--threads N] [--max-len N] [--bench]\n");
    return 2;
}
