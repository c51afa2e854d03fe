/* dp_buckets_test.c — the host side of GPU data parallelism (kernels/dp.h),
 * everything of it that runs without a GPU:
 *   - the gradient bucket plan (dp_buckets.c) for random configs, plain and
 *     pruned, MLM and classifier: buckets tile [0, n) top down, none over
 *     the cap, inner cuts aligned; and the launch rule checked against an
 *     independent account of the backward, by tensor name: after stage s
 *     every launched bucket holds only tensors the backward has finished
 *     (heads at 1, layer l at 1 + L - l, embeddings (the tied word
 *     embeddings too) at L + 2), each bucket launched at the first stage
 *     that finishes all of its tensors, all of them at the end;
 *   - the global worker numbering (dp_global_worker): a bijection of
 *     local worker x process onto 0 .. W-1, global 0 on process 0;
 *   - the NCCL unique-id bootstrap's transport, dp_broadcast: rank 0's
 *     128 bytes (ncclUniqueId's size) reach 2 and 3 forked processes over
 *     the file and the TCP rendezvous, other ranks' buffers replaced;
 *   - dp_gpu_new's refusals on models it cannot serve (CPU models).
 * The NCCL all-reduce itself runs only on a GPU (bert_cuda_gpu_test). */
#include "test.h"
#include "kernels/dp.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 0x5eed;

/* The backward stage that finishes tensor t (see the top). */
static int finishing_stage(const bert_config *c, const char *name)
{
    int l;
    if (strncmp(name, "bert.embeddings.", 16) == 0) return c->layers + 2;
    if (sscanf(name, "bert.encoder.layer.%d.", &l) == 1) return 1 + c->layers - l;
    return 1;   /* cls.*, bert.pooler.*, classifier.*: the heads */
}

static void check_plan(const bert_config *c, size_t cap)
{
    dp_bucket_plan p;
    flow_err e = { 0 };
    CHECK_OK(dp_bucket_plan_init(c, cap, &p, &e), e);
    size_t n = bert_param_count(c);
    CHECK_MSG(p.n == n && p.nb >= 1, "plan of %zu floats, %d buckets (n %zu)", p.n, p.nb, n);
    if (p.nb < 1) return;
    int tiles = p.hi[0] == n && p.lo[p.nb - 1] == 0, capped = 1, aligned = 1;
    for (int b = 0; b < p.nb; b++) {
        tiles &= p.lo[b] < p.hi[b] && (b == 0 || p.hi[b] == p.lo[b - 1]);
        capped &= p.hi[b] - p.lo[b] <= cap && (b == p.nb - 1 || p.hi[b] - p.lo[b] > cap - DP_BUCKET_ALIGN);
        aligned &= p.lo[b] == 0 || p.lo[b] % DP_BUCKET_ALIGN == 0;
    }
    CHECK_MSG(tiles, "L %d cap %zu: the buckets tile [0, %zu) top down", c->layers, cap, n);
    CHECK_MSG(capped, "L %d cap %zu: every bucket within (cap - %d, cap], the last one shorter", c->layers,
              cap, DP_BUCKET_ALIGN);
    CHECK_MSG(aligned, "L %d cap %zu: inner cuts on multiples of %d floats", c->layers, cap, DP_BUCKET_ALIGN);
    /* the launch rule against the tensor names */
    bert_tensor *t = NULL;
    int nt = 0;
    CHECK_OK(bert_tensor_table(c, &t, &nt, &e), e);
    int *need = xcalloc((size_t)p.nb, sizeof *need);     /* the stage that finishes bucket b */
    for (int k = 0; k < nt; k++) {
        int st = finishing_stage(c, t[k].name);
        for (int b = 0; b < p.nb; b++)
            if (t[k].offset < p.hi[b] && t[k].offset + t[k].numel > p.lo[b] && st > need[b]) need[b] = st;
    }
    /* the boundaries themselves: ready[s] = the lowest float finished by stage
     * s, every float above it finished too */
    int bounds = p.nstages == c->layers + 3;
    for (int st = 0; bounds && st < p.nstages; st++) {
        size_t lowest = n;
        for (int k = 0; k < nt; k++)
            if (finishing_stage(c, t[k].name) <= st && t[k].offset < lowest) lowest = t[k].offset;
        for (int k = 0; k < nt; k++)
            if (t[k].offset >= lowest && finishing_stage(c, t[k].name) > st) lowest = (size_t)-1;
        bounds &= st == 0 ? p.ready[0] == n : p.ready[st] == lowest;
    }
    CHECK_MSG(bounds, "L %d: the stage boundaries are where the tensors say", c->layers);
    int early = 0, late = 0, prefix = 1;
    for (int s = 0; s <= c->layers + 2; s++) {
        int r = dp_buckets_ready(&p, s);
        for (int b = 0; b < p.nb; b++) {
            if (b < r && need[b] > s) early++;
            if (b >= r && need[b] <= s) late++;
        }
        prefix &= s == 0 || r >= dp_buckets_ready(&p, s - 1);
    }
    CHECK_MSG(early == 0, "L %d cap %zu: %d bucket launches before the backward finished their tensors",
              c->layers, cap, early);
    CHECK_MSG(late == 0, "L %d cap %zu: %d bucket launches later than the stage that finished them",
              c->layers, cap, late);
    CHECK_MSG(prefix && dp_buckets_ready(&p, c->layers + 2) == p.nb && dp_buckets_ready(&p, 0) == 0,
              "L %d cap %zu: launches grow stage by stage, none before the backward, all at its end",
              c->layers, cap);
    free(need);
    free(t);
    dp_bucket_plan_release(&p);
}

static void test_plans(void)
{
    flow_err e = { 0 };
    for (int it = 0; it < 40; it++) {
        bert_config c;
        bert_config_default(&c);
        c.vocab_size = 50 + (int)(splitmix64_next(&rng) % 300);
        c.hidden = 16 * (1 + (int)(splitmix64_next(&rng) % 4));
        c.layers = 1 + (int)(splitmix64_next(&rng) % 5);
        c.max_len = 8 + (int)(splitmix64_next(&rng) % 40);
        c.mode = 1 + (int)(splitmix64_next(&rng) % 3);
        c.num_labels = 2 + (int)(splitmix64_next(&rng) % 3);
        CHECK_OK(bert_config_uniform(&c, 2, 2 * c.hidden, &e), e);
        if (it % 3 == 0)    /* pruned: other widths per layer */
            for (int l = 0; l < c.layers; l++) {
                c.heads[l] = 1 + (int)(splitmix64_next(&rng) % 2);
                c.ffn[l] = 5 + (int)(splitmix64_next(&rng) % 60);
            }
        size_t n = bert_param_count(&c);
        size_t caps[3] = { DP_BUCKET_ALIGN, 64 + splitmix64_next(&rng) % 5000, n + 100 };
        for (int k = 0; k < 3; k++) check_plan(&c, caps[k]);
    }
    /* the reference shape with the default bucket */
    bert_config c;
    bert_config_default(&c);
    check_plan(&c, DP_BUCKET_FLOATS);
    dp_bucket_plan p;
    CHECK(dp_bucket_plan_init(&c, DP_BUCKET_ALIGN - 1, &p, &e) == FLOW_E_PARAM);
    CHECK_CONTAINS(e.msg, "at least 64");
    c.layers = 0;
    CHECK(dp_bucket_plan_init(&c, DP_BUCKET_FLOATS, &p, &e) == FLOW_E_PARAM);
}

static void test_numbering(void)
{
    for (int world = 1; world <= 4; world++)
        for (int nlocal = 1; nlocal <= 4; nlocal++) {
            int W = world * nlocal, seen[16] = { 0 }, ok = 1;
            for (int rank = 0; rank < world; rank++)
                for (int w = 0; w < nlocal; w++) {
                    int g = dp_global_worker(w, rank, world);
                    ok &= g >= 0 && g < W && !seen[g];
                    if (g >= 0 && g < W) seen[g] = 1;
                }
            CHECK_MSG(ok && dp_global_worker(0, 0, world) == 0,
                      "%d workers x %d processes: global workers 0..%d once each, process 0's worker 0 first",
                      nlocal, world, W - 1);
        }
}

/* forks world ranks at rdv; rank 0 broadcasts its 128 random bytes, every
 * rank checks it got them (the others start from other bytes); returns the
 * ranks that failed */
static int broadcast_forked(const char *rdv, int world)
{
    unsigned char id[128];
    for (int i = 0; i < 128; i++) id[i] = (unsigned char)splitmix64_next(&rng);
    pid_t pid[4];
    for (int q = 0; q < world; q++) {
        pid[q] = fork();
        if (pid[q] == 0) {
            flow_err e = { 0 };
            dp_group *g = NULL;
            unsigned char buf[128];
            for (int i = 0; i < 128; i++) buf[i] = q == 0 ? id[i] : (unsigned char)(id[i] ^ (1 + q));
            int rc = dp_group_join(rdv, q, world, "0123456789abcdef0123456789abcdef", 60, &g, &e);
            if (!rc) rc = dp_broadcast(g, 0, buf, sizeof buf, &e);
            if (rc) fprintf(stderr, "rank %d: %s\n", q, e.msg);
            dp_group_free(g);
            _exit(!rc && memcmp(buf, id, sizeof id) == 0 ? 0 : 1);
        }
    }
    return test_wait_children(pid, world);
}

static void test_broadcast(void)
{
    char *dir = test_tmpdir("dpb");
    char rdv[4200];
    for (int world = 2; world <= 3; world++) {
        snprintf(rdv, sizeof rdv, "file:%s/rdv%d", dir, world);
        CHECK_MSG(broadcast_forked(rdv, world) == 0, "%d processes (file rendezvous): every rank holds rank "
                  "0's unique id", world);
        snprintf(rdv, sizeof rdv, "tcp:127.0.0.1:%d", 21000 + world + (int)(getpid() % 18000));
        CHECK_MSG(broadcast_forked(rdv, world) == 0, "%d processes (tcp rendezvous): every rank holds rank "
                  "0's unique id", world);
    }
    flow_err e = { 0 };
    unsigned char b[4] = { 1, 2, 3, 4 };
    CHECK_OK(dp_broadcast(NULL, 0, b, sizeof b, &e), e);
    CHECK(b[0] == 1 && b[3] == 4);
    CHECK(dp_broadcast(NULL, 1, b, sizeof b, &e) == FLOW_E_PARAM);
    free(dir);
}

static void test_refusals(void)
{
    bert_config c;
    bert_config_default(&c);
    c.vocab_size = 60;
    c.hidden = 16;
    c.layers = 1;
    c.max_len = 8;
    flow_err e = { 0 };
    CHECK_OK(bert_config_uniform(&c, 2, 32, &e), e);
    bert_model *m = NULL;
    CHECK_OK(bert_model_new(&c, 2, 8, &bert_device_cpu, &m, &e), e);
    if (!m) return;
    dp_gpu *d = NULL;
    bert_model *rep[1] = { m };
    CHECK(dp_gpu_new(rep, 1, NULL, DP_BUCKET_FLOATS, &d, &e) == FLOW_E_PARAM && !d);
    CHECK_CONTAINS(e.msg, "runs on the CPU");
    CHECK(dp_gpu_new(rep, 0, NULL, DP_BUCKET_FLOATS, &d, &e) == FLOW_E_PARAM && !d);
    bert_model_free(m);
}

int main(void)
{
    test_broadcast();   /* first: forks before any OpenMP region (dp_test says why) */
    test_plans();
    test_numbering();
    test_refusals();
    return test_summary("dp_buckets_test");
}
