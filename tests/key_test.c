/* key_test.c — node keys: stable across runs and processes (golden value),
 * independent of parameter order, node names and reserved settings;
 * changing one parameter changes exactly that node's key and its
 * dependents'; inputs enter by content (early cutoff); key_extra and
 * ref_content behave as documented. */
#include "engine/internal.h"
#include "stages/stages.h"
#include "test.h"

#include <sys/wait.h>

/* key of x = k { alpha = 7  beta = hello  delta = [3]  eps = true } */
#define GOLDEN "41a7d8aee9366f0aacb8dcd759438f63"

static const flow_param_def k_params[] = {
    { .name = "alpha", .type = FLOW_P_INT, .def = "1", .min = 1, .max = 0 },
    { .name = "beta", .type = FLOW_P_STRING, .def = "\"b\"", .min = 1, .max = 0 },
    { .name = "gamma", .type = FLOW_P_FLOAT, .def = "0.5", .min = 1, .max = 0 },
    { .name = "delta", .type = FLOW_P_LIST, .elem = FLOW_P_INT, .def = "[1, 2]", .min = 1, .max = 0 },
    { .name = "eps", .type = FLOW_P_BOOL, .def = "false", .min = 1, .max = 0 },
    { .name = "path", .type = FLOW_P_PATH, .def = "\"f.txt\"", .min = 1, .max = 0 },
};
/* the same parameters declared in another order */
static const flow_param_def k_params_rev[] = {
    { .name = "path", .type = FLOW_P_PATH, .def = "\"f.txt\"", .min = 1, .max = 0 },
    { .name = "eps", .type = FLOW_P_BOOL, .def = "false", .min = 1, .max = 0 },
    { .name = "delta", .type = FLOW_P_LIST, .elem = FLOW_P_INT, .def = "[1, 2]", .min = 1, .max = 0 },
    { .name = "gamma", .type = FLOW_P_FLOAT, .def = "0.5", .min = 1, .max = 0 },
    { .name = "beta", .type = FLOW_P_STRING, .def = "\"b\"", .min = 1, .max = 0 },
    { .name = "alpha", .type = FLOW_P_INT, .def = "1", .min = 1, .max = 0 },
};
static const flow_input_def k_inputs[] = { { .name = "in", .many = 1, .optional = 1 } };
static int run_nothing(flow_ctx *c) { (void)c; return 0; }

/* key_extra: the content of the file named by `path` (through the stat cache) */
static int file_extra(flow_ctx *c, flow_hasher *h)
{
    flow_hash fh;
    int rc = flow_file_hash(c, flow_param_str(c, "path"), &fh);
    if (rc) return rc;
    flow_hasher_update(h, fh.b, 16);
    return 0;
}

static const flow_stage stage_k = {
    .name = "k", .version = 1, .params = k_params, .nparams = 6,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
};
static const flow_stage stage_k_rev = {
    .name = "k", .version = 1, .params = k_params_rev, .nparams = 6,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
};
static const flow_stage stage_k2 = {    /* version bump */
    .name = "k", .version = 2, .params = k_params, .nparams = 6,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
};
static const flow_stage stage_train = {     /* a training stage with GPU code */
    .name = "k", .version = 1, .params = k_params, .nparams = 6,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
    .res = { .gpu_capable = 1, .data_parallel = 1 },
};
static const flow_stage stage_f = {
    .name = "f", .version = 1, .params = k_params, .nparams = 6,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing, .key_extra = file_extra,
};

static char *dir;

static flow_graph *load(const flow_stage *k, const char *text, char *const *sets, int nsets)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/g.graph", dir);
    unlink(p);      /* no truncate: ext4 would flush it on close */
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    flow_registry *reg = registry_new();
    registry_add(reg, k);
    registry_add(reg, &stage_f);
    flow_graph *g = NULL;
    flow_err err;
    if (graph_load(&g, p, reg, sets, nsets, &err)) fprintf(stderr, "load: %s\n", err.msg);
    /* stage pointers are static; the registry may go */
    registry_free(reg);
    return g;
}

static flow_hash key0(const flow_stage *k, const char *text)
{
    flow_graph *g = load(k, text, NULL, 0);
    flow_hash h = { { 0 } };
    if (!g) { test_failures++; return h; }
    h = node_key(g, 0, NULL, NULL);
    graph_free(g);
    return h;
}

static int eq(flow_hash a, flow_hash b) { return flow_hash_eq(&a, &b); }

static void test_golden_and_processes(void)
{
    const char *text = "x = k { alpha = 7  beta = hello  delta = [3]  eps = true }\n";
    flow_hash h = key0(&stage_k, text);
    char hex[33];
    flow_hash_hex(&h, hex);
    /* The canonical encoding is a storage format: this value may only change
     * together with the encoding version in key.c (and a note in the log). */
    CHECK_STREQ(hex, GOLDEN);
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        flow_hash c = key0(&stage_k, text);
        char chex[33];
        flow_hash_hex(&c, chex);
        if (write(fd[1], chex, 32) != 32) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    char child[33] = "";
    CHECK(read(fd[0], child, 32) == 32);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    CHECK_STREQ(child, hex);
}

static void test_invariance(void)
{
    flow_hash base = key0(&stage_k, "x = k { alpha = 2  beta = s  gamma = 1 }\n");
    CHECK(eq(base, key0(&stage_k, "x = k { gamma = 1.0\n beta = \"s\"\n alpha = 2 }\n")));
    CHECK(eq(base, key0(&stage_k_rev, "x = k { alpha = 2  beta = s  gamma = 1 }\n")));
    CHECK(eq(base, key0(&stage_k, "renamed = k { alpha = 2  beta = s  gamma = 1  threads = 4  gpus = 2 }\n")));
    CHECK(eq(base, key0(&stage_k, "x = k { alpha = 2  beta = s  gamma = 1  delta = [1, 2]  eps = false }\n")));
    CHECK(eq(base, key0(&stage_k, "x = k { alpha = 2  beta = s  gamma = 1  path = \"./a/../f.txt\" }\n")));
    /* every parameter, and the stage version, matters */
    const char *variants[] = {
        "x = k { alpha = 3  beta = s  gamma = 1 }\n",
        "x = k { alpha = 2  beta = t  gamma = 1 }\n",
        "x = k { alpha = 2  beta = s  gamma = 1.0000001 }\n",
        "x = k { alpha = 2  beta = s  gamma = 1  delta = [2, 1] }\n",
        "x = k { alpha = 2  beta = s  gamma = 1  delta = [1, 2, 3] }\n",
        "x = k { alpha = 2  beta = s  gamma = 1  eps = true }\n",
        "x = k { alpha = 2  beta = s  gamma = 1  path = \"g.txt\" }\n",
    };
    flow_hash seen[8];
    for (int i = 0; i < 7; i++) {
        seen[i] = key0(&stage_k, variants[i]);
        CHECK_MSG(!eq(seen[i], base), "variant %d has the base key", i);
        for (int j = 0; j < i; j++) CHECK_MSG(!eq(seen[i], seen[j]), "variants %d and %d collide", i, j);
    }
    CHECK(!eq(base, key0(&stage_k2, "x = k { alpha = 2  beta = s  gamma = 1 }\n")));
    /* a training stage on a GPU: the device is in the key (the CUDA
     * backend's bytes are not the CPU's); threads and workers are not */
    flow_hash tcpu = key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  threads = 4 }\n");
    CHECK(eq(tcpu, base));
    CHECK(eq(tcpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  device = cpu }\n")));
    key_gpu_arch_set("sm_86");
    flow_hash tgpu = key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  gpus = 1 }\n");
    CHECK_MSG(!eq(tgpu, tcpu), "a training node on a GPU has the CPU's key");
    CHECK(eq(tgpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  device = gpu  workers = 2 }\n")));
    /* the GPU architecture and the GPU count (gpus x data-parallel
     * processes) are in it too; neither touches a CPU node's key */
    flow_hash t2 = key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  gpus = 2 }\n");
    CHECK_MSG(!eq(t2, tgpu), "gpus = 2 has the key of gpus = 1");
    setenv("FLOW_DP_WORLD", "2", 1);
    CHECK_MSG(eq(t2, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  gpus = 1 }\n")),
              "gpus = 1 in 2 data-parallel processes is not keyed as 2 GPUs");
    CHECK_MSG(eq(tcpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  threads = 4 }\n")),
              "the data-parallel world changed a CPU node's key");
    unsetenv("FLOW_DP_WORLD");
    key_gpu_arch_set("sm_90");
    flow_hash t90 = key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  gpus = 1 }\n");
    CHECK_MSG(!eq(t90, tgpu), "sm_90 has the key of sm_86");
    CHECK(eq(tcpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  threads = 4 }\n")));
    key_gpu_arch_set("sm_86");
    CHECK(eq(tgpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  gpus = 1 }\n")));
    /* a machine whose fp32 GEMM is not the pinned one: every key differs
     * (kernels/cpu/blas.c), and none once it is cleared */
    flow_hash k2 = key0(&stage_k2, "x = k { alpha = 2  beta = s  gamma = 1 }\n");
    key_set_platform("openblas NEOVERSEN1");
    CHECK_MSG(!eq(k2, key0(&stage_k2, "x = k { alpha = 2  beta = s  gamma = 1 }\n")),
              "a node's key does not hold the platform");
    CHECK_MSG(!eq(tcpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  threads = 4 }\n")),
              "a training node's key does not hold the platform");
    key_set_platform("openblas SKYLAKEX");
    flow_hash other = key0(&stage_k2, "x = k { alpha = 2  beta = s  gamma = 1 }\n");
    key_set_platform("openblas NEOVERSEN1");
    CHECK_MSG(!eq(other, key0(&stage_k2, "x = k { alpha = 2  beta = s  gamma = 1 }\n")),
              "two platforms share a key");
    key_set_platform(NULL);
    CHECK(eq(k2, key0(&stage_k2, "x = k { alpha = 2  beta = s  gamma = 1 }\n")));
    CHECK(eq(tcpu, key0(&stage_train, "x = k { alpha = 2  beta = s  gamma = 1  threads = 4 }\n")));
}

/* A parameter the stage lists in not_in_key changes neither the key nor
 * its description; the same stage without the list is keyed by it. */
static const flow_param_def nk_params[] = {
    { .name = "alpha", .type = FLOW_P_INT, .def = "1", .min = 1, .max = 0 },
    { .name = "every", .type = FLOW_P_INT, .def = "200", .min = 1, .max = 0 },
    { .name = "ever", .type = FLOW_P_INT, .def = "5", .min = 1, .max = 0 },
};
static const flow_stage stage_nk = {
    .name = "k", .version = 1, .params = nk_params, .nparams = 3,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing, .not_in_key = "every",
};
static const flow_stage stage_nk_keyed = {
    .name = "k", .version = 1, .params = nk_params, .nparams = 3,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
};

static void describe0(const flow_stage *k, const char *text, flow_buf *out)
{
    flow_graph *g = load(k, text, NULL, 0);
    if (!g) { test_failures++; return; }
    node_key_describe(g, 0, NULL, NULL, out);
    graph_free(g);
}

static void test_not_in_key(void)
{
    const char *a = "x = k { alpha = 2 }\n", *b = "x = k { alpha = 2  every = 7 }\n";
    flow_hash base = key0(&stage_nk, a);
    CHECK_MSG(eq(base, key0(&stage_nk, b)), "a not_in_key parameter changed the key");
    CHECK_MSG(!eq(key0(&stage_nk_keyed, a), key0(&stage_nk_keyed, b)), "a keyed parameter did not change the key");
    CHECK_MSG(!eq(base, key0(&stage_nk, "x = k { alpha = 3  every = 7 }\n")), "alpha stopped mattering");
    /* a name that is a prefix of a listed one stays in the key */
    CHECK_MSG(!eq(base, key0(&stage_nk, "x = k { alpha = 2  ever = 6 }\n")), "'ever' left the key with 'every'");
    flow_buf d1, d2;
    buf_init(&d1);
    buf_init(&d2);
    describe0(&stage_nk, a, &d1);
    describe0(&stage_nk, b, &d2);
    CHECK(d1.data && d2.data);
    if (d1.data && d2.data) {
        CHECK_STREQ(d1.data, d2.data);
        CHECK(strstr(d1.data, "param.every ") == NULL);
        CHECK_CONTAINS(d1.data, "param.alpha = 2\n");
        CHECK_CONTAINS(d1.data, "param.ever = 5\n");
    }
    buf_release(&d1);
    buf_release(&d2);
}

/* A parameter listed in key_unless_default: at its default (left out or
 * written) the key is the one of the stage without the parameter; any
 * other value is keyed, and described, like a plain parameter. */
static const flow_param_def ud_params[] = {
    { .name = "alpha", .type = FLOW_P_INT, .def = "1", .min = 1, .max = 0 },
    { .name = "mode", .type = FLOW_P_STRING, .def = "old", .min = 0, .max = -1, .choices = "old|new" },
    { .name = "level", .type = FLOW_P_INT, .def = "0", .min = 0, .max = 9 },
    { .name = "fast", .type = FLOW_P_BOOL, .def = "false", .min = 0, .max = -1 },
};
static const flow_stage stage_ud = {
    .name = "k", .version = 1, .params = ud_params, .nparams = 4,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing, .key_unless_default = "mode level fast",
};
static const flow_stage stage_ud_before = {     /* the stage before mode, level and fast existed */
    .name = "k", .version = 1, .params = ud_params, .nparams = 1,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
};
static const flow_stage stage_ud_keyed = {
    .name = "k", .version = 1, .params = ud_params, .nparams = 4,
    .inputs = k_inputs, .ninputs = 1, .run = run_nothing,
};

static void test_key_unless_default(void)
{
    const char *a = "x = k { alpha = 2 }\n";
    flow_hash before = key0(&stage_ud_before, a);
    CHECK_MSG(eq(before, key0(&stage_ud, a)), "parameters at their defaults changed the key");
    CHECK_MSG(eq(before, key0(&stage_ud, "x = k { alpha = 2  mode = old  level = 0  fast = false }\n")),
              "defaults written out changed the key");
    CHECK_MSG(!eq(before, key0(&stage_ud_keyed, a)), "the plain stage is not keyed by them");
    const char *other[] = { "x = k { alpha = 2  mode = new }\n", "x = k { alpha = 2  level = 3 }\n",
                            "x = k { alpha = 2  fast = true }\n" };
    for (int i = 0; i < 3; i++) {
        flow_hash k = key0(&stage_ud, other[i]);
        CHECK_MSG(!eq(before, k), "a value other than the default left the key: %s", other[i]);
        for (int j = 0; j < i; j++)
            CHECK_MSG(!eq(k, key0(&stage_ud, other[j])), "%s and %s share a key", other[i], other[j]);
    }
    flow_buf d1, d2;
    buf_init(&d1);
    buf_init(&d2);
    describe0(&stage_ud, a, &d1);
    describe0(&stage_ud, other[0], &d2);
    CHECK(d1.data && d2.data);
    if (d1.data && d2.data) {
        CHECK(strstr(d1.data, "param.mode") == NULL && strstr(d1.data, "param.level") == NULL);
        CHECK_CONTAINS(d2.data, "param.mode = \"new\"\n");
        CHECK(strstr(d2.data, "param.level") == NULL);
    }
    buf_release(&d1);
    buf_release(&d2);
}

/* Simulated builds into a real store: every node's artifact has one part
 * "out" whose bytes are its key (so a changed key changes its output) or,
 * for nodes listed in same_bytes, a constant (an output that does not
 * change: early cutoff). */
static void simulate(flow_graph *g, flow_store *s, flow_hash *keys, const char *same_bytes)
{
    for (int t = 0; t < g->n; t++) {
        int i = g->topo[t];
        flow_err err;
        flow_buf d;
        buf_init(&d);
        CHECK_OK(key_for_node(g, s, i, keys, &keys[i], &d, &err), err);
        CHECK_CONTAINS(d.data, "stage = k\n");
        buf_release(&d);
        if (store_has(s, &keys[i])) continue;
        store_writer *w;
        CHECK_OK(store_writer_new(s, &w, &err), err);
        char hex[33];
        flow_hash_hex(&keys[i], hex);
        const char *bytes = strstr(same_bytes, g->nodes[i].name) ? "constant" : hex;
        CHECK_OK(store_part_begin(w, "out", FLOW_PART_BYTES, &err), err);
        CHECK_OK(store_part_write(w, bytes, strlen(bytes), &err), err);
        CHECK_OK(store_part_end(w, &err), err);
        CHECK_OK(store_writer_commit(w, &keys[i], "{}", "", 0, &err), err);
        store_writer_free(w);
    }
}

static void test_propagation(void)
{
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    flow_store *s;
    flow_err err;
    CHECK_OK(store_open(&s, cache, NULL, &err), err);
    if (!s) return;
    const char *text =
        "s = k { alpha = 1 }\n"
        "a = k { in = s  alpha = 2 }\n"
        "b = k { in = [a, s]  alpha = 3 }\n"
        "c = k { in = s  alpha = 4 }\n"
        "d = k { alpha = 5 }\n";
    flow_graph *g = load(&stage_k, text, NULL, 0);
    if (!g) { store_close(s); return; }
    flow_hash base[5], now[5];
    simulate(g, s, base, "");
    graph_free(g);
    /* deterministic: a second pass gives the same keys */
    g = load(&stage_k, text, NULL, 0);
    simulate(g, s, now, "");
    for (int i = 0; i < 5; i++) CHECK(eq(base[i], now[i]));
    graph_free(g);
    /* each parameter of a: exactly a and b (its dependent) change */
    const char *sets[] = { "a.alpha=9", "a.beta=other", "a.gamma=0.25", "a.delta=[7]", "a.eps=true",
                           "a.path=\"x/y\"" };
    for (int k = 0; k < 6; k++) {
        char *set[] = { (char *)sets[k] };
        g = load(&stage_k, text, set, 1);
        simulate(g, s, now, "");
        CHECK_MSG(eq(now[0], base[0]) && eq(now[3], base[3]) && eq(now[4], base[4]), "%s", sets[k]);
        CHECK_MSG(!eq(now[1], base[1]) && !eq(now[2], base[2]), "%s", sets[k]);
        graph_free(g);
    }
    /* a parameter of s: everything downstream of s changes, d does not */
    char *set_s[] = { "s.alpha=8" };
    g = load(&stage_k, text, set_s, 1);
    simulate(g, s, now, "");
    for (int i = 0; i < 4; i++) CHECK(!eq(now[i], base[i]));
    CHECK(eq(now[4], base[4]));
    graph_free(g);
    /* early cutoff: s's key changes but its bytes do not -> a, b, c keep their
     * keys (a fresh store, so s's artifacts are written by this pass) */
    store_close(s);
    snprintf(cache, sizeof cache, "%s/cache-cut", dir);
    CHECK_OK(store_open(&s, cache, NULL, &err), err);
    flow_hash cut1[5], cut2[5];
    g = load(&stage_k, text, NULL, 0);
    simulate(g, s, cut1, "s");
    graph_free(g);
    g = load(&stage_k, text, set_s, 1);
    simulate(g, s, cut2, "s");
    CHECK(!eq(cut1[0], cut2[0]));
    for (int i = 1; i < 5; i++) CHECK_MSG(eq(cut1[i], cut2[i]), "node %d should be cut off", i);
    /* a missing upstream artifact is reported, naming the nodes */
    flow_hash fake[5];
    memcpy(fake, cut2, sizeof fake);
    memset(&fake[0], 0xab, sizeof fake[0]);
    CHECK(key_for_node(g, s, 1, fake, &now[1], NULL, &err) == FLOW_E_NOTFOUND);
    CHECK_CONTAINS(err.msg, "node 'a': upstream 's' has no artifact");
    graph_free(g);
    store_close(s);
}

static void test_extra_and_refs(void)
{
    char cache[4200], file[4200];
    snprintf(cache, sizeof cache, "%s/cache2", dir);
    snprintf(file, sizeof file, "%s/f.txt", dir);
    flow_store *s;
    flow_err err;
    CHECK_OK(store_open(&s, cache, NULL, &err), err);
    if (!s) return;
    FILE *f = fopen(file, "w");
    fputs("one", f);
    fclose(f);
    flow_graph *g = load(&stage_k, "x = f { }\n", NULL, 0);
    flow_hash k1, k2, k3;
    flow_buf d;
    buf_init(&d);
    CHECK_OK(key_for_node(g, s, 0, NULL, &k1, &d, &err), err);
    CHECK_CONTAINS(d.data, "extra = ");
    CHECK(!strstr(d.data, "extra = none"));
    buf_release(&d);
    CHECK_OK(key_for_node(g, s, 0, NULL, &k2, NULL, &err), err);
    CHECK(eq(k1, k2));
    f = fopen(file, "w");
    fputs("two", f);
    fclose(f);
    CHECK_OK(key_for_node(g, s, 0, NULL, &k3, NULL, &err), err);
    CHECK(!eq(k1, k3));
    remove(file);
    CHECK(key_for_node(g, s, 0, NULL, &k3, NULL, &err) == FLOW_E_IO);
    CHECK_CONTAINS(err.msg, "node 'x': ");
    CHECK_CONTAINS(err.msg, "f.txt");
    graph_free(g);

    /* ref_content: a named output is hashed over its own parts only */
    flow_hash ka, kb;
    memset(&ka, 1, sizeof ka);
    memset(&kb, 2, sizeof kb);
    const char *parts_a[] = { "out/x", "out/y", "other" }, *parts_b[] = { "out/x", "out/y", "else" };
    for (int v = 0; v < 2; v++) {
        store_writer *w;
        CHECK_OK(store_writer_new(s, &w, &err), err);
        for (int p = 0; p < 3; p++) {
            const char *name = v ? parts_b[p] : parts_a[p];
            CHECK_OK(store_part_begin(w, name, FLOW_PART_BYTES, &err), err);
            CHECK_OK(store_part_write(w, name, p == 2 ? strlen(name) : 3, &err), err);
            CHECK_OK(store_part_end(w, &err), err);
        }
        CHECK_OK(store_writer_commit(w, v ? &kb : &ka, "{}", "", 0, &err), err);
        store_writer_free(w);
    }
    store_artifact *a = NULL, *b = NULL;
    CHECK_OK(store_get(s, &ka, &a, &err), err);
    CHECK_OK(store_get(s, &kb, &b, &err), err);
    if (a && b) {
        flow_hash ra, rb, wa, wb, none;
        CHECK(ref_content(a, "out", &ra) == 0 && ref_content(b, "out", &rb) == 0);
        CHECK(eq(ra, rb));
        CHECK(ref_content(a, NULL, &wa) == 0 && ref_content(b, NULL, &wb) == 0);
        CHECK(!eq(wa, wb));
        CHECK(!eq(ra, wa));
        CHECK(ref_content(a, "ou", &none) == FLOW_E_NOTFOUND);
        CHECK(ref_content(a, "other", &none) == 0);
    }
    store_artifact_free(a);
    store_artifact_free(b);
    store_close(s);
}

int main(void)
{
    dir = test_tmpdir("key");
    test_golden_and_processes();
    test_invariance();
    test_not_in_key();
    test_key_unless_default();
    test_propagation();
    test_extra_and_refs();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return test_summary("key_test");
}
