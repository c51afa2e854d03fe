/* bpe_spill_test.c — the BPE word counter with bounded memory and
 * min_word_count (stages/tokenizer/bpe_spill.c, bpe_count.c): a counter
 * that spills sorted runs (many, with cascaded merges) gives the same
 * tokenizer bytes as one that never spills, on 1 and 2 threads, and
 * leaves no file behind; min_word_count drops exactly the words counted
 * fewer times (a hand-made corpus) while the alphabet still covers their
 * characters; a write error while spilling (a file size limit standing in
 * for a full disk) is a clear error; a budget the kept words cannot fit
 * suggests a min_word_count. */
#include "test.h"
#include "stages/tokenizer/tokenizer.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Lines of Han runs between punctuation: frequent words from a small
 * set, and runs of random characters that are mostly distinct (so the
 * table holds many words, most of them counted once). */
static void make_corpus(flow_buf *b, int nlines, uint32_t nhan)
{
    static const char *const common[] = {"合同", "当事人", "违约金", "不可抗力", "人民法院",
                                         "应当", "规定", "依照", "本法", "民事", "2024", "abc"};
    for (int l = 0; l < nlines; l++) {
        int k = 2 + (int)rnd(6);
        for (int i = 0; i < k; i++) {
            if (rnd(3)) {
                buf_adds(b, common[rnd(sizeof common / sizeof *common)]);
            } else {
                int n = 2 + (int)rnd(5);
                for (int j = 0; j < n; j++) {
                    char u[4];
                    int m = utf8_encode(0x4E00 + rnd(nhan), u);
                    buf_add(b, u, (size_t)m);
                }
            }
            buf_adds(b, rnd(2) ? "，" : "。");
        }
        buf_addc(b, '\n');
    }
}

static tok_train_opts opts(int vocab)
{
    tok_train_opts o = {.vocab_size = vocab, .character_coverage = 1.0, .max_token_chars = 16,
                        .min_frequency = 1, .threads = 1};
    return o;
}

/* Trains from c in blocks of `block` bytes (cut at line ends); returns
 * the tokenizer (NULL and *rc on failure) and fills *st. */
static tok_tokenizer *train(const flow_buf *c, const tok_train_opts *o, size_t block, int *rc,
                            tok_train_stats *st, flow_err *err)
{
    tok_counter *k;
    memset(st, 0, sizeof *st);
    *rc = tok_counter_new(NULL, o, &k, err);
    if (*rc)
        return NULL;
    for (size_t at = 0; at < c->len && !*rc;) {
        size_t end = at + block < c->len ? at + block : c->len;
        while (end < c->len && c->data[end - 1] != '\n')
            end++;
        *rc = tok_counter_add(k, c->data + at, end - at, err);
        at = end;
    }
    tok_tokenizer *t = NULL;
    if (!*rc)
        *rc = tok_train_counted(k, NULL, o, &t, st, err);
    tok_counter_free(k);
    return t;
}

static void serialize(const tok_tokenizer *t, flow_buf *b)
{
    buf_init(b);
    tok_serialize(t, b);
    tok_export_vocab_txt(t, b);
    tok_export_merges_txt(t, b);
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* Spilling after every 4 KB block (hundreds of runs, merged in cascades
 * of 16) and a spill threshold in the middle give the same bytes and
 * statistics as no spill, on 1 and 2 threads, for min_word_count 1 and 3. */
static void test_spill_same_bytes(const char *dir)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 6000, 300);
    for (int64_t min = 1; min <= 3; min += 2) {
        tok_train_opts o = opts(600);
        o.min_word_count = min;
        tok_train_stats st0;
        flow_err err = {0};
        int rc;
        tok_tokenizer *t0 = train(&c, &o, c.len, &rc, &st0, &err);
        CHECK_OK(rc, err);
        CHECK(st0.spills == 0);
        if (!t0)
            break;
        flow_buf want;
        serialize(t0, &want);
        struct { size_t spill, block; int threads; } v[] = {
            {1, 4096, 1}, {1, 4096, 2}, {64 << 10, 16384, 2}, {1 << 20, 65536, 1},
        };
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
            tok_train_opts p = o;
            p.spill_bytes = v[i].spill;
            p.spill_dir = dir;
            p.threads = v[i].threads;
            tok_train_stats st;
            tok_tokenizer *t = train(&c, &p, v[i].block, &rc, &st, &err);
            CHECK_OK(rc, err);
            if (!t)
                continue;
            CHECK_MSG(st.spills > (v[i].spill == 1 ? 16 : 1), "case %zu: only %d spills", i,
                      st.spills);
            flow_buf got;
            serialize(t, &got);
            CHECK_MSG(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
                      "min_word_count %lld, spill %zu, block %zu, %d threads: other bytes",
                      (long long)min, v[i].spill, v[i].block, v[i].threads);
            CHECK(st.unique_words == st0.unique_words && st.words == st0.words);
            /* what training holds (train_memory_mb), not the counter's
             * table of all words: the same whether the table spilled */
            CHECK_MSG(st.memory_peak == st0.memory_peak, "case %zu: memory_peak %zu after "
                      "spilling, %zu without", i, st.memory_peak, st0.memory_peak);
            CHECK(st.dropped_words == st0.dropped_words &&
                  st.dropped_occurrences == st0.dropped_occurrences);
            CHECK(st.distinct_chars == st0.distinct_chars && st.chars_total == st0.chars_total);
            CHECK(st.distinct_chars == st0.distinct_chars &&
                  memcmp(st.char_count, st0.char_count, st.distinct_chars * sizeof *st.char_count) == 0);
            buf_release(&got);
            tok_train_stats_release(&st);
            tok_free(t);
            CHECK_MSG(dir_entries(dir) == 0, "spill files left in %s", dir);
        }
        if (min == 3)
            CHECK(st0.dropped_words > 0);
        buf_release(&want);
        tok_train_stats_release(&st0);
        tok_free(t0);
    }
    buf_release(&c);
}

/* A threshold that the counter crosses only now and then (its table
 * and arena are 2 MB as soon as they hold a word), so that the table
 * still holds words when counting ends: they join the runs too. */
static void test_spill_residual(const char *dir)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 60000, 3000);
    tok_train_opts o = opts(3400);
    o.min_word_count = 2;
    tok_train_stats st0;
    flow_err err = {0};
    int rc;
    tok_tokenizer *t0 = train(&c, &o, 65536, &rc, &st0, &err);
    CHECK_OK(rc, err);
    if (!t0)
        return;
    flow_buf want;
    serialize(t0, &want);
    for (int threads = 1; threads <= 2; threads++) {
        tok_train_opts p = o;
        p.spill_bytes = 5u << 19;
        p.spill_dir = dir;
        p.threads = threads;
        tok_train_stats st;
        tok_tokenizer *t = train(&c, &p, 65536, &rc, &st, &err);
        CHECK_OK(rc, err);
        if (!t)
            continue;
        CHECK_MSG(st.spills >= 2, "%d spills of %llu distinct words", st.spills,
                  (unsigned long long)st.unique_words);
        flow_buf got;
        serialize(t, &got);
        CHECK_MSG(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
                  "spills every 2.5 MB, %d threads: other bytes", threads);
        CHECK(st.unique_words == st0.unique_words && st.dropped_words == st0.dropped_words);
        buf_release(&got);
        tok_train_stats_release(&st);
        tok_free(t);
    }
    CHECK_MSG(dir_entries(dir) == 0, "spill files left in %s", dir);
    buf_release(&want);
    tok_train_stats_release(&st0);
    tok_free(t0);
    buf_release(&c);
}

/* A corpus whose word counts are known: 甲乙 x5, 丙丁 x1, 戊己 x2,
 * 庚辛壬 x1, "ab" x3 (pre-tokens between the commas). */
static void hand_corpus(flow_buf *b)
{
    buf_init(b);
    buf_adds(b, "甲乙，丙丁，戊己，ab\n甲乙，甲乙，庚辛壬\n甲乙，戊己，ab，ab\n甲乙\n");
}

static void test_min_word_count(const char *dir)
{
    flow_buf c;
    hand_corpus(&c);
    /* distinct words: 甲乙 丙丁 戊己 庚辛壬 ab "，" (x8) and per count */
    struct { int64_t min; uint64_t dropped, dropped_occ; int has_bingding, has_wuji; } v[] = {
        {1, 0, 0, 1, 1}, {2, 2, 2, 0, 1}, {3, 3, 4, 0, 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        for (int spill = 0; spill < 2; spill++) {
            tok_train_opts o = opts(200);
            o.min_word_count = v[i].min;
            o.spill_bytes = spill;      /* 1: a run after every add */
            o.spill_dir = dir;
            tok_train_stats st;
            flow_err err = {0};
            int rc;
            tok_tokenizer *t = train(&c, &o, spill ? 8 : c.len, &rc, &st, &err);
            CHECK_OK(rc, err);
            if (!t)
                continue;
            CHECK(st.unique_words == 6);
            CHECK_MSG(st.dropped_words == v[i].dropped && st.dropped_occurrences == v[i].dropped_occ,
                      "min %lld: dropped %llu words / %llu occurrences, want %llu / %llu",
                      (long long)v[i].min, (unsigned long long)st.dropped_words,
                      (unsigned long long)st.dropped_occurrences,
                      (unsigned long long)v[i].dropped, (unsigned long long)v[i].dropped_occ);
            /* merges come only from kept words */
            CHECK((tok_token_id(t, "丙丁", strlen("丙丁")) >= 0) == v[i].has_bingding);
            CHECK((tok_token_id(t, "戊己", strlen("戊己")) >= 0) == v[i].has_wuji);
            CHECK(tok_token_id(t, "甲乙", strlen("甲乙")) >= 0);
            /* the alphabet: every character, those of dropped words too */
            CHECK(st.alphabet == 12 && st.distinct_chars == 12);
            const char *text = "丙丁庚辛壬，ab甲乙";
            tok_out out;
            tok_out_init(&out);
            tok_encode(t, text, strlen(text), &out);
            CHECK_MSG(out.unk_chars == 0, "min %lld: %llu characters unknown", (long long)v[i].min,
                      (unsigned long long)out.unk_chars);
            flow_buf d;
            buf_init(&d);
            tok_decode(t, out.ids, out.n, 0, &d);
            CHECK(d.len == strlen(text) && memcmp(d.data, text, d.len) == 0);
            buf_release(&d);
            tok_out_release(&out);
            tok_train_stats_release(&st);
            tok_free(t);
        }
    }
    buf_release(&c);
}

/* A budget the kept words cannot fit: the error names the need and
 * suggests the min_word_count that would fit; with it, training fits. */
static void test_suggestion(void)
{
    flow_buf c;
    buf_init(&c);
    make_corpus(&c, 20000, 300);
    tok_train_opts o = opts(600);
    tok_train_stats st;
    flow_err err = {0};
    int rc;
    tok_tokenizer *t = train(&c, &o, c.len, &rc, &st, &err);
    CHECK_OK(rc, err);
    size_t all = st.memory_peak;
    tok_train_stats_release(&st);
    tok_free(t);
    o.min_word_count = 2;
    t = train(&c, &o, c.len, &rc, &st, &err);
    CHECK_OK(rc, err);
    size_t kept = st.memory_peak;
    CHECK_MSG(kept < all, "min_word_count 2 needs %zu bytes, all words %zu", kept, all);
    tok_train_stats_release(&st);
    tok_free(t);
    o.min_word_count = 1;
    o.memory_limit = (kept + all) / 2;
    t = train(&c, &o, c.len, &rc, &st, &err);
    CHECK(t == NULL && rc == FLOW_E_NOMEM);
    CHECK_CONTAINS(err.msg, "more than the memory budget of");
    CHECK_CONTAINS(err.msg, "set memory_mb =");
    CHECK_CONTAINS(err.msg, "or set min_word_count = ");
    tok_train_stats_release(&st);
    buf_release(&c);
}

/* train_memory_mb (st.memory_peak) is what training holds: with 300k
 * distinct words counted once and min_word_count = 2 the counter's table
 * of all of them (~15 MB) is far above the kept words' merge state, and
 * must not count, spilled or not. */
static void test_memory_peak_kept(const char *dir)
{
    flow_buf c;
    buf_init(&c);
    for (int l = 0; l < 30000; l++) {
        for (int i = 0; i < 10; i++) {
            if (i % 2)
                buf_adds(&c, i % 4 == 1 ? "合同" : "当事人");
            else
                for (int j = 0; j < 8; j++) {
                    char u[4];
                    int m = utf8_encode(0x4E00 + rnd(20), u);
                    buf_add(&c, u, (size_t)m);
                }
            buf_adds(&c, "，");
        }
        buf_addc(&c, '\n');
    }
    tok_train_opts o = opts(300);
    o.min_word_count = 2;
    tok_train_stats st0, st1;
    flow_err err = {0};
    int rc;
    tok_tokenizer *t0 = train(&c, &o, c.len, &rc, &st0, &err);
    CHECK_OK(rc, err);
    o.spill_bytes = 1 << 20;
    o.spill_dir = dir;
    tok_tokenizer *t1 = train(&c, &o, 1 << 18, &rc, &st1, &err);
    CHECK_OK(rc, err);
    CHECK(st0.spills == 0 && st1.spills > 4);
    CHECK_MSG(st0.unique_words > 140000, "only %llu distinct words", (unsigned long long)st0.unique_words);
    CHECK_MSG(st1.memory_peak == st0.memory_peak && st0.memory_peak < (8u << 20),
              "memory_peak %zu after spilling, %zu without (%llu distinct words)",
              st1.memory_peak, st0.memory_peak, (unsigned long long)st0.unique_words);
    tok_train_stats_release(&st0);
    tok_train_stats_release(&st1);
    tok_free(t0);
    tok_free(t1);
    buf_release(&c);
}

/* A run that cannot be written (RLIMIT_FSIZE: EFBIG, as ENOSPC would be)
 * fails with FLOW_E_IO naming the folder and the reason; in a child so
 * that the limit stays there. */
static void test_write_error(const char *dir)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {16 << 10, 16 << 10};
        setrlimit(RLIMIT_FSIZE, &rl);
        flow_buf c;
        buf_init(&c);
        make_corpus(&c, 6000, 300);
        tok_train_opts o = opts(600);
        o.spill_bytes = 1;
        o.spill_dir = dir;
        tok_train_stats st;
        flow_err err = {0};
        int rc;
        tok_tokenizer *t = train(&c, &o, 1 << 20, &rc, &st, &err);
        int ok = t == NULL && rc == FLOW_E_IO && strstr(err.msg, "spill file in ") &&
                 strstr(err.msg, dir) && strstr(err.msg, "File too large");
        if (!ok)
            fprintf(stderr, "write error: rc %d, message: %s\n", rc, err.msg);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "no clear write error (status %d)",
              status);
    CHECK_MSG(dir_entries(dir) == 0, "spill files left in %s after the write error", dir);
}

int main(void)
{
    char dir[] = "/tmp/flow-bpe-spill-test-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_spill_same_bytes(dir);
    test_spill_residual(dir);
    test_min_word_count(dir);
    test_suggestion();
    test_memory_peak_kept(dir);
    test_write_error(dir);
    rmdir(dir);
    return test_summary("bpe_spill_test");
}
