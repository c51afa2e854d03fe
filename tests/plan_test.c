/* plan_test.c — the memory planner (kernels/plan.c):
 *  - module parameter counts against bert_tensor_table, tensor by tensor
 *    grouped by name, for two configs (reference MLM; odd-sized BOTH);
 *  - module FLOPs sum to bert_train_flops;
 *  - memory strictly grows with batch and with sequence length;
 *    recomputation keeps fewer activation bytes;
 *  - fitting: the request when it fits; else the largest divisor of
 *    batch*accum that fits (product kept), recomputation only when even
 *    micro-batch 1 does not fit without it; fits = 0 when nothing does;
 *  - strict size parsing. */
#include "kernels/plan.h"
#include "test.h"

#include <math.h>

/* Which module row a tensor-table name belongs to. */
static int module_of(const char *name, int layers, int mlm_row, int cls_row)
{
    if (!strncmp(name, "bert.embeddings.", 16)) return 0;
    if (!strncmp(name, "bert.encoder.layer.", 19)) {
        int l = atoi(name + 19);
        return l >= 0 && l < layers ? 1 + l : -1;
    }
    if (!strncmp(name, "cls.", 4)) return mlm_row;
    if (!strncmp(name, "bert.pooler.", 12) || !strncmp(name, "classifier.", 11)) return cls_row;
    return -1;
}

static void check_params(const plan_request *r)
{
    flow_err e;
    plan_module *m;
    int n;
    CHECK_OK(plan_modules(r, 4, &m, &n, &e), e);
    bert_tensor *t;
    int nt;
    CHECK_OK(bert_tensor_table(&r->cfg, &t, &nt, &e), e);
    int mlm_row = -1, cls_row = -1;
    for (int k = 0; k < n; k++) {
        if (!strcmp(m[k].name, "mlm_head")) mlm_row = k;
        if (!strcmp(m[k].name, "cls_head")) cls_row = k;
    }
    size_t *want = calloc(n > 0 ? (size_t)n : 1, sizeof *want);
    for (int k = 0; k < nt; k++) {
        int row = module_of(t[k].name, r->cfg.layers, mlm_row, cls_row);
        CHECK_MSG(row >= 0, "tensor %s has no module row", t[k].name);
        if (row >= 0) want[row] += t[k].numel;
    }
    size_t sum = 0;
    for (int k = 0; k < n; k++) {
        CHECK_MSG(m[k].params == want[k], "%s: planner %zu, tensor table %zu", m[k].name, m[k].params, want[k]);
        sum += m[k].params;
    }
    CHECK(sum == bert_param_count(&r->cfg));
    double f = 0;
    for (int k = 0; k < n; k++) f += m[k].flops;
    double ref = bert_train_flops(&r->cfg, 4, r->seq, r->head, (long)llround(4 * r->mlm_rows));
    CHECK_MSG(fabs(f - ref) <= 1e-9 * ref, "flops %g vs bert_train_flops %g", f, ref);
    free(want);
    free(t);
    free(m);
}

static plan_request ref_request(void)
{
    plan_request r;
    memset(&r, 0, sizeof r);
    bert_config_default(&r.cfg);     /* V 8000 H 768 L 6 nh 12 I 3072 max_len 512 MLM */
    r.head = BERT_HEAD_MLM;
    r.seq = 512;
    r.batch = 16;
    r.accum = 4;
    r.mlm_rows = 0.15 * 512;
    r.prec = PLAN_BF16;
    r.gpus = 3;
    return r;
}

static void test_params(void)
{
    plan_request r = ref_request();
    check_params(&r);
    /* odd sizes, both heads, classifier planned */
    r.cfg.vocab_size = 1237; r.cfg.hidden = 96; r.cfg.layers = 3;
    bert_config_uniform(&r.cfg, 3, 200, NULL);
    r.cfg.max_len = 77; r.cfg.type_vocab = 3; r.cfg.num_labels = 5;
    r.cfg.mode = BERT_MODE_BOTH;
    r.head = BERT_HEAD_CLASSIFY;
    r.seq = 60;
    check_params(&r);
    r.head = BERT_HEAD_MLM;
    r.mlm_rows = 9;
    check_params(&r);
}

static void test_monotone(void)
{
    plan_request r = ref_request();
    for (int rec = 0; rec <= 1; rec++) {
        plan_memory prev, m;
        plan_memory_estimate(&r, 1, rec, &prev);
        for (int B = 2; B <= 64; B++) {
            plan_memory_estimate(&r, B, rec, &m);
            CHECK_MSG(m.total > prev.total && m.acts > prev.acts, "rec %d: B %d total %llu <= B-1's", rec, B,
                      (unsigned long long)m.total);
            prev = m;
        }
        r.seq = 8;
        r.mlm_rows = 0.15 * 8;
        plan_memory_estimate(&r, 8, rec, &prev);
        for (int T = 16; T <= 512; T += 8) {
            r.seq = T;
            r.mlm_rows = 0.15 * T;
            plan_memory_estimate(&r, 8, rec, &m);
            CHECK_MSG(m.total > prev.total, "rec %d: T %d total not above T-8's", rec, T);
            prev = m;
        }
        r = ref_request();
    }
    CHECK(plan_activations(&r, 16, 1) < plan_activations(&r, 16, 0));
    /* states do not depend on the batch; fp32 has no master copy */
    plan_memory a, b;
    plan_memory_estimate(&r, 1, 0, &a);
    plan_memory_estimate(&r, 32, 0, &b);
    CHECK(a.params == b.params && a.moments == b.moments && a.master == 4 * bert_param_count(&r.cfg));
    r.prec = PLAN_FP32;
    plan_memory_estimate(&r, 1, 0, &a);
    CHECK(a.master == 0 && a.params == 4 * bert_param_count(&r.cfg) && a.moments == 8 * bert_param_count(&r.cfg));
    r.gpus = 1;
    plan_memory_estimate(&r, 1, 0, &a);
    CHECK(a.nccl == 0);
}

static uint64_t need(const plan_request *r, int B, int rec)
{
    plan_memory m;
    plan_memory_estimate(r, B, rec, &m);
    return (uint64_t)ceil(m.total / 0.9) + 1;   /* smallest gpu_mem that fits */
}

static void test_fit(void)
{
    flow_err e;
    plan_result res;
    plan_request r = ref_request();
    long total = (long)r.batch * r.accum;       /* 64 */
    r.gpu_mem = need(&r, 16, 0);
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(res.fits && !res.changed && res.micro_batch == 16 && res.accum == 4 && !res.recompute);
    /* just below the request: the largest divisor below 16 is 8 */
    r.gpu_mem = need(&r, 16, 0) - 2;
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(res.fits && res.changed && !res.recompute);
    CHECK(res.micro_batch == 8 && (long)res.micro_batch * res.accum == total);
    /* room for 5 sequences: 5 does not divide 64, so 4 x 16 */
    r.gpu_mem = need(&r, 5, 0);
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(res.fits && res.micro_batch == 4 && res.accum == 16 && !res.recompute);
    CHECK(res.mem.total <= 0.9 * r.gpu_mem);
    /* micro-batch 1 fits without recomputation: no recomputation */
    r.gpu_mem = need(&r, 1, 0);
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(res.fits && res.micro_batch == 1 && res.accum == 64 && !res.recompute);
    /* micro-batch 1 does not fit without it, 2 fits with it: 2 x 32 recomputed */
    uint64_t with2 = need(&r, 2, 1), without1 = need(&r, 1, 0);
    CHECK_MSG(with2 < without1, "recomputing 2 sequences (%llu) should take less than keeping 1 (%llu)",
              (unsigned long long)with2, (unsigned long long)without1);
    r.gpu_mem = with2;
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(res.fits && res.recompute && res.micro_batch == 2 && res.accum == 32);
    CHECK(res.recompute_saving == plan_activations(&r, 2, 0) - plan_activations(&r, 2, 1));
    CHECK(res.recompute_saving > 0);
    /* nothing fits */
    r.gpu_mem = need(&r, 1, 1) - 2;
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(!res.fits);
    /* gpu_mem 0: estimate only */
    r.gpu_mem = 0;
    CHECK_OK(plan_fit(&r, &res, &e), e);
    CHECK(!res.fits && !res.changed && res.micro_batch == 16);
    /* bad requests name the field */
    r.seq = 513;
    CHECK(plan_fit(&r, &res, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "sequence length 513");
    r = ref_request();
    r.head = BERT_HEAD_CLASSIFY;        /* the config is MLM only */
    CHECK(plan_fit(&r, &res, &e) == FLOW_E_PARAM);
}

static void test_bytes(void)
{
    flow_err e;
    uint64_t v;
    CHECK(plan_parse_bytes("8GiB", "--gpu-mem", &v, &e) == 0 && v == 8ull << 30);
    CHECK(plan_parse_bytes("8G", "--gpu-mem", &v, &e) == 0 && v == 8ull << 30);
    CHECK(plan_parse_bytes("8000MiB", "--gpu-mem", &v, &e) == 0 && v == 8000ull << 20);
    CHECK(plan_parse_bytes("1.5GiB", "--gpu-mem", &v, &e) == 0 && v == 3ull << 29);
    CHECK(plan_parse_bytes("8GB", "--gpu-mem", &v, &e) == 0 && v == 8000000000ull);
    const char *bad[] = { "8", "GiB", "8 GiB", "-1G", "8gib", "", "8.G", "8GiBs", "0G", "1e3G" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = plan_parse_bytes(bad[i], "--gpu-mem", &v, &e);
        CHECK_MSG(rc == FLOW_E_USAGE, "'%s' accepted", bad[i]);
        if (rc) CHECK_CONTAINS(e.msg, "--gpu-mem");
    }
}

int main(void)
{
    test_params();
    test_monotone();
    test_fit();
    test_bytes();
    return test_summary("plan_test");
}
