/* sched_test.c — the scheduler (engine/build.c, worker.c) on graphs built
 * by hand from test-only stages: GPU slots with fake devices, too many
 * GPUs, device=auto fallback, critical-path order (with and without
 * history), failure isolation (error, SIGSEGV, abort), fail-fast, caching,
 * leases between concurrent builds, checkpoints, JSON events and Ctrl-C.
 * Overlaps are asserted from the start/end times the workers record in
 * the artifact metadata. */
#include "engine/sched.h"
#include "test.h"

#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

/* ---- test stages ----------------------------------------------------------
 * All share the parameters ms (sleep), tag (varies the key), file (append
 * one line per run: counts runs) and the many-input port `in`. */
static const flow_param_def tparams[] = {
    { .name = "ms", .type = FLOW_P_INT, .def = "0", .min = 1, .max = 0 },
    { .name = "tag", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0 },
    { .name = "file", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0 },
};
static const flow_input_def tinputs[] = { { .name = "in", .optional = 1, .many = 1 } };

static void count_run(flow_ctx *c)
{
    const char *f = flow_param_str(c, "file");
    if (!*f) return;
    int fd = open(f, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0) return;
    char line[256];
    int n = snprintf(line, sizeof line, "%s %d\n", flow_node_name(c), (int)getpid());
    if (write(fd, line, (size_t)n) < 0) {}
    close(fd);
}

static int sleep_run(flow_ctx *c)
{
    count_run(c);
    int64_t ms = flow_param_int(c, "ms");
    for (int i = 0; i < 4; i++) {
        flow_progress(c, i / 4.0, "step %d/4", i);
        usleep((useconds_t)(ms * 250));
    }
    flow_log(c, "slept %lld ms with %d GPUs", (long long)ms, flow_gpu_count(c));
    flow_metric(c, "gpus", flow_gpu_count(c));
    flow_metric(c, "threads", flow_threads(c));
    flow_buf b;
    buf_init(&b);
    buf_printf(&b, "%s[", flow_param_str(c, "tag"));
    for (int i = 0; i < flow_gpu_count(c); i++) buf_printf(&b, "%d,", flow_gpu_id(c, i));
    buf_adds(&b, "]");
    for (int i = 0; i < flow_in_count(c, "in"); i++) {
        char *d;
        size_t n;
        int rc = flow_in_read(c, "in", i, "out", &d, &n);
        if (rc) { buf_release(&b); return rc; }
        buf_add(&b, d, n);
        free(d);
    }
    int rc = flow_out_write(c, "out", FLOW_PART_BYTES, b.data, b.len);
    buf_release(&b);
    if (!rc && strcmp(flow_param_str(c, "tag"), "report") == 0) flow_report(c, "a report line");
    return rc;
}

static int fail_run(flow_ctx *c)
{
    flow_log(c, "about to fail on purpose");
    flow_out_write(c, "out", FLOW_PART_BYTES, "partial", 7);
    return flow_ctx_fail(c, FLOW_E_STAGE, "failing on purpose (tag '%s')", flow_param_str(c, "tag"));
}

static int segv_run(flow_ctx *c)
{
    flow_log(c, "about to crash");
    flow_out_write(c, "out", FLOW_PART_BYTES, "partial", 7);
    volatile int *p = NULL;
    signal(SIGSEGV, SIG_DFL);   /* under ASan: a plain signal death, not a report */
    *p = 1;
    return 0;
}

static int abort_run(flow_ctx *c)
{
    flow_log(c, "about to abort");
    flow_out_write(c, "out", FLOW_PART_BYTES, "partial", 7);
    abort();
}

static int kill_run(flow_ctx *c)
{
    flow_log(c, "allocating a lot (pretend)");
    kill(getpid(), SIGKILL);    /* what the OOM killer does */
    return 0;
}

/* First run: saves a checkpoint and fails; second: resumes from it. */
static int ckpt_run(flow_ctx *c)
{
    char *d;
    size_t n;
    int rc = flow_checkpoint_load(c, &d, &n);
    if (rc == FLOW_E_NOTFOUND) {
        if ((rc = flow_checkpoint_save(c, "step 7", 6))) return rc;
        return flow_ctx_fail(c, FLOW_E_STAGE, "stopping after the checkpoint");
    }
    if (rc) return rc;
    rc = flow_out_write(c, "out", FLOW_PART_BYTES, d, n);
    free(d);
    return rc;
}

#define TSTAGE(var, nm, fn, gp) \
    static const flow_stage var = { .name = nm, .version = 1, .params = tparams, .nparams = 3, \
        .inputs = tinputs, .ninputs = 1, .res = { .threads = 1, .gpus = gp, .gpu_capable = 1 }, .run = fn };
TSTAGE(st_sleep, "t_sleep", sleep_run, 0)
TSTAGE(st_fail, "t_fail", fail_run, 0)
TSTAGE(st_segv, "t_segv", segv_run, 0)
TSTAGE(st_abort, "t_abort", abort_run, 0)
TSTAGE(st_ckpt, "t_ckpt", ckpt_run, 0)
TSTAGE(st_kill, "t_kill", kill_run, 0)

/* ---- graphs by hand ------------------------------------------------------- */

static flow_graph *gnew(const char *id)
{
    flow_graph *g = xcalloc(1, sizeof *g);
    g->path = xstrdup("/nonexistent/test.graph");
    g->dir = xstrdup("/nonexistent");
    g->id = xstrdup(id);
    return g;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Adds a node after its deps (so insertion order is a topological order). */
static int add(flow_graph *g, const char *name, const flow_stage *st, int ms, const char *tag,
               const char *file, int gpus, int ndeps, ...)
{
    g->nodes = xrealloc(g->nodes, (size_t)(g->n + 1) * sizeof *g->nodes);
    graph_node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->name = xstrdup(name);
    n->stage = st;
    n->gpus = gpus;
    n->params = xcalloc(3, sizeof *n->params);
    n->params[0].type = FLOW_P_INT;
    n->params[0].i = ms;
    n->params[1].type = FLOW_P_STRING;
    n->params[1].s = xstrdup(tag);
    n->params[2].type = FLOW_P_STRING;
    n->params[2].s = xstrdup(file ? file : "");
    n->inputs = xcalloc(1, sizeof *n->inputs);
    n->inputs[0].refs = xcalloc((size_t)ndeps + 1, sizeof *n->inputs[0].refs);
    n->inputs[0].nrefs = ndeps;
    n->deps = xcalloc((size_t)ndeps + 1, sizeof *n->deps);
    va_list ap;
    va_start(ap, ndeps);
    for (int i = 0; i < ndeps; i++) {
        int d = va_arg(ap, int);
        n->inputs[0].refs[i].node = d;
        n->deps[i] = d;
    }
    va_end(ap);
    n->ndeps = ndeps;
    qsort(n->deps, (size_t)ndeps, sizeof *n->deps, cmp_int);
    for (int i = 0; i < ndeps; i++) {
        graph_node *d = &g->nodes[n->deps[i]];
        d->users = xrealloc(d->users, (size_t)(d->nusers + 1) * sizeof *d->users);
        d->users[d->nusers++] = g->n;
    }
    g->topo = xrealloc(g->topo, (size_t)(g->n + 1) * sizeof *g->topo);
    g->topo[g->n] = g->n;
    return g->n++;
}

static void gfree(flow_graph *g)
{
    for (int i = 0; i < g->n; i++) {
        graph_node *n = &g->nodes[i];
        free(n->name);
        free(n->params[1].s);
        free(n->params[2].s);
        free(n->params);
        free(n->inputs[0].refs);
        free(n->inputs);
        free(n->deps);
        free(n->users);
    }
    free(g->nodes);
    free(g->topo);
    free(g->path);
    free(g->dir);
    free(g->id);
    free(g);
}

/* ---- helpers ------------------------------------------------------------- */

static char *cache_dir;

static int build(flow_graph *g, int jobs, int fake_gpus, int keep_going, build_result *r,
                 flow_err *e)
{
    flow_store *s;
    flow_err oe = {0};
    if (store_open(&s, cache_dir, NULL, &oe)) {
        fprintf(stderr, "store_open: %s\n", oe.msg);
        exit(2);
    }
    build_options o = {0};
    o.jobs = jobs;
    o.fake_gpus = fake_gpus;
    o.gpus_given = 1;       /* no GPUs unless faked */
    o.keep_going = keep_going;
    memset(e, 0, sizeof *e);
    int rc = build_run(g, s, &o, r, e);
    store_close(s);
    return rc;
}

typedef struct nodeinfo {
    int built;
    double start, end;
    char meta[4096];
} nodeinfo;

static double meta_num(const char *meta, const char *field)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", field);
    const char *p = strstr(meta, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The last artifact recorded for node `name` of graph g. */
static nodeinfo info(flow_graph *g, const char *name)
{
    nodeinfo ni = {0};
    flow_store *s;
    flow_err e = {0};
    if (store_open(&s, cache_dir, NULL, &e)) return ni;
    flow_hash k;
    int n = 0;
    store_artifact *a = NULL;
    if (store_last_builds(s, g->id, name, &k, 1, &n, &e) == 0 && n == 1 &&
        store_get(s, &k, &a, &e) == 0) {
        ni.built = 1;
        snprintf(ni.meta, sizeof ni.meta, "%s", a->meta_json);
        ni.start = meta_num(a->meta_json, "start");
        ni.end = meta_num(a->meta_json, "end");
        store_artifact_free(a);
    }
    store_close(s);
    return ni;
}

static int overlap(nodeinfo a, nodeinfo b)
{
    return a.built && b.built && (a.start > b.start ? a.start : b.start) <
                                 (a.end < b.end ? a.end : b.end);
}

static int count_artifacts_cb(const store_artifact *a, void *arg)
{
    (void)a;
    (*(int *)arg)++;
    return 0;
}

static int count_artifacts(void)
{
    flow_store *s;
    flow_err e = {0};
    int n = 0;
    if (store_open(&s, cache_dir, NULL, &e)) return -1;
    store_foreach(s, count_artifacts_cb, &n, &e);
    store_close(s);
    return n;
}

static int count_lines(const char *path, const char *prefix)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (!prefix || (strncmp(line, prefix, strlen(prefix)) == 0 && line[strlen(prefix)] == ' '))
            n++;
    fclose(f);
    return n;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    remove(path);
    return 0;
}

/* Removes the previous test's cache folder, makes a new one. */
static void fresh_cache(const char *tag)
{
    if (cache_dir) nftw(cache_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(cache_dir);
    cache_dir = tag ? test_tmpdir(tag) : NULL;
}

/* ---- the tests ------------------------------------------------------------ */

static void test_gpus(void)
{
    fresh_cache("sched-gpu");
    flow_graph *g = gnew("g-gpus");
    add(g, "one_a", &st_sleep, 400, "a", NULL, 1, 0);
    add(g, "one_b", &st_sleep, 400, "b", NULL, 1, 0);
    add(g, "one_c", &st_sleep, 400, "c", NULL, 1, 0);
    add(g, "three", &st_sleep, 300, "t", NULL, 3, 0);
    build_result r;
    flow_err e;
    CHECK_OK(build(g, 4, 3, 1, &r, &e), e);
    CHECK(r.ran == 4);
    nodeinfo a = info(g, "one_a"), b = info(g, "one_b"), c = info(g, "one_c"),
             t = info(g, "three");
    CHECK(a.built && b.built && c.built && t.built);
    CHECK_MSG(overlap(a, b) && overlap(b, c) && overlap(a, c),
              "1-GPU nodes should run side by side: a %.3f-%.3f b %.3f-%.3f c %.3f-%.3f",
              a.start, a.end, b.start, b.end, c.start, c.end);
    CHECK_MSG(!overlap(t, a) && !overlap(t, b) && !overlap(t, c),
              "the 3-GPU node must wait for all three devices");
    CHECK_CONTAINS(t.meta, "\"gpus\":[0,1,2]");
    /* the three 1-GPU nodes got distinct devices */
    int seen = 0;
    const char *m[3] = {a.meta, b.meta, c.meta};
    for (int i = 0; i < 3; i++) {
        const char *p = strstr(m[i], "\"gpus\":[");
        if (p) seen |= 1 << atoi(p + 8);
    }
    CHECK_MSG(seen == 7, "devices seen mask %d", seen);

    /* a second build: everything cached */
    CHECK_OK(build(g, 4, 3, 1, &r, &e), e);
    CHECK(r.ran == 0 && r.cached == 4);
    gfree(g);

    /* too many GPUs: error before anything runs */
    g = gnew("g-toomany");
    add(g, "fine", &st_sleep, 0, "fine", NULL, 0, 0);
    add(g, "greedy", &st_sleep, 0, "greedy", NULL, 4, 0);
    int before = count_artifacts();
    int rc = build(g, 2, 3, 1, &r, &e);
    CHECK(rc == FLOW_E_GRAPH);
    CHECK_CONTAINS(e.msg, "node 'greedy' asks for 4 GPUs (gpus = 4) but 3 are available: --fake-gpus 3 (a test switch)");
    CHECK(r.ran == 0 && count_artifacts() == before);
    /* gpus = all with no devices at all */
    g->nodes[1].gpus = -1;
    rc = build(g, 2, 0, 1, &r, &e);
    CHECK(rc == FLOW_E_GRAPH);
    CHECK_CONTAINS(e.msg, "asks for all GPUs (gpus = all) but 0 are available");
    /* device = auto: runs on the CPU instead */
    g->nodes[1].gpus = 4;
    g->nodes[1].device_auto = 1;
    CHECK_OK(build(g, 2, 3, 1, &r, &e), e);
    CHECK(r.ran == 2);
    CHECK_CONTAINS(info(g, "greedy").meta, "\"gpus\":[]");
    gfree(g);
}

static void test_critical_path(void)
{
    fresh_cache("sched-cp");
    /* without history every node counts 1 s: the chain x1->x2->x3 (3 s)
     * goes before the single y (1 s) although y comes first in topo order */
    flow_graph *g = gnew("g-cp");
    int y = add(g, "y", &st_sleep, 50, "y", NULL, 0, 0);
    int x1 = add(g, "x1", &st_sleep, 50, "x1", NULL, 0, 0);
    int x2 = add(g, "x2", &st_sleep, 50, "x2", NULL, 0, 1, x1);
    add(g, "x3", &st_sleep, 50, "x3", NULL, 0, 1, x2);
    (void)y;
    build_result r;
    flow_err e;
    CHECK_OK(build(g, 1, 0, 1, &r, &e), e);
    nodeinfo iy = info(g, "y"), ix1 = info(g, "x1");
    CHECK_MSG(ix1.start < iy.start, "x1 (critical path) should start before y: %.3f vs %.3f",
              ix1.start, iy.start);
    gfree(g);

    /* with history: `slow` took longer last time, so it goes first now even
     * though `fast` comes first in topo order */
    g = gnew("g-hist");
    add(g, "fast", &st_sleep, 10, "f1", NULL, 0, 0);
    add(g, "slow", &st_sleep, 400, "s1", NULL, 0, 0);
    CHECK_OK(build(g, 1, 0, 1, &r, &e), e);
    nodeinfo f = info(g, "fast"), s = info(g, "slow");
    CHECK(f.start < s.start);     /* no history yet: topo order */
    free(g->nodes[0].params[1].s);
    g->nodes[0].params[1].s = xstrdup("f2");
    free(g->nodes[1].params[1].s);
    g->nodes[1].params[1].s = xstrdup("s2");
    CHECK_OK(build(g, 1, 0, 1, &r, &e), e);
    CHECK(r.ran == 2);
    f = info(g, "fast");
    s = info(g, "slow");
    CHECK_MSG(s.start < f.start, "slow (longer history) should start first: %.3f vs %.3f",
              s.start, f.start);
    gfree(g);
}

static void test_fail_isolation(void)
{
    fresh_cache("sched-fail");
    flow_graph *g = gnew("g-fail");
    int f = add(g, "f", &st_fail, 0, "f", NULL, 0, 0);
    int sg = add(g, "sg", &st_segv, 0, "s", NULL, 0, 0);
    int ab = add(g, "ab", &st_abort, 0, "a", NULL, 0, 0);
    add(g, "after_f", &st_sleep, 0, "d1", NULL, 0, 1, f);
    int d2 = add(g, "after_sg", &st_sleep, 0, "d2", NULL, 0, 1, sg);
    add(g, "after_after", &st_sleep, 0, "d3", NULL, 0, 2, d2, ab);
    int ok1 = add(g, "ok1", &st_sleep, 300, "ok1", NULL, 0, 0);
    add(g, "ok2", &st_sleep, 100, "ok2", NULL, 0, 1, ok1);
    build_result r;
    flow_err e;
    int rc = build(g, 2, 0, 1, &r, &e);
    CHECK(rc == FLOW_E_STAGE);
    CHECK_MSG(r.failed == 3 && r.skipped == 3 && r.ran == 2,
              "failed %d skipped %d ran %d", r.failed, r.skipped, r.ran);
    CHECK(info(g, "ok1").built && info(g, "ok2").built);
    CHECK(!info(g, "f").built && !info(g, "sg").built && !info(g, "ab").built);
    CHECK(!info(g, "after_f").built && !info(g, "after_after").built);
    CHECK_MSG(count_artifacts() == 2, "only ok1 and ok2 are stored, found %d", count_artifacts());

    /* a SIGKILL (as from the OOM killer) is reported as such */
    fresh_cache("sched-oom");
    flow_graph *g2 = gnew("g-oom");
    add(g2, "oom", &st_kill, 0, "k", NULL, 0, 0);
    add(g2, "fine", &st_sleep, 0, "fine", NULL, 0, 0);
    fflush(stdout);
    int saved = dup(2);
    char errf[4200];
    snprintf(errf, sizeof errf, "%s/stderr.txt", cache_dir);
    int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    rc = build(g2, 2, 0, 1, &r, &e);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CHECK(rc == FLOW_E_STAGE && r.failed == 1 && r.ran == 1);
    FILE *ef = fopen(errf, "r");
    char text[8192] = "";
    size_t tl = ef ? fread(text, 1, sizeof text - 1, ef) : 0;
    text[tl] = 0;
    if (ef) fclose(ef);
    CHECK_CONTAINS(text, "node 'oom': worker killed by signal 9");
    CHECK_CONTAINS(text, "out of memory");
    CHECK_CONTAINS(text, "allocating a lot (pretend)");
    gfree(g2);

    /* fail-fast with one slot: the failing node goes first (longer chain),
     * nothing else is launched */
    fresh_cache("sched-ff");
    rc = build(g, 1, 0, 0, &r, &e);
    CHECK(rc == FLOW_E_STAGE);
    CHECK_MSG(r.failed == 1 && r.ran + r.failed + r.skipped == g->n,
              "fail-fast: failed %d ran %d skipped %d", r.failed, r.ran, r.skipped);
    gfree(g);

    /* checkpoints survive a failure and are dropped on commit */
    fresh_cache("sched-ckpt");
    g = gnew("g-ckpt");
    add(g, "ck", &st_ckpt, 0, "ck", NULL, 0, 0);
    rc = build(g, 1, 0, 1, &r, &e);
    CHECK(rc == FLOW_E_STAGE && r.failed == 1);
    CHECK_OK(build(g, 1, 0, 1, &r, &e), e);
    CHECK(r.ran == 1);
    flow_store *s;
    if (store_open(&s, cache_dir, NULL, &e) == 0) {
        flow_hash k;
        int n = 0;
        char *d = NULL;
        size_t len = 0;
        CHECK(store_last_builds(s, g->id, "ck", &k, 1, &n, &e) == 0 && n == 1);
        CHECK(store_read_part(s, &k, "out", &d, &len, &e) == 0 && len == 6 &&
              memcmp(d, "step 7", 6) == 0);
        free(d);
        d = NULL;
        CHECK(store_checkpoint_get(s, &k, &d, &len, &e) == FLOW_E_NOTFOUND);
        free(d);
        store_close(s);
    }
    gfree(g);
}

/* Quick nodes share a worker (no fork per node); a crash in a reused
 * worker still fails only that node; slow nodes get a fresh worker. */
static void test_reuse(void)
{
    fresh_cache("sched-reuse");
    char runs[4200];
    snprintf(runs, sizeof runs, "%s/runs.txt", cache_dir);
    flow_graph *g = gnew("g-reuse");
    int q1 = add(g, "q1", &st_sleep, 0, "q1", runs, 0, 0);
    int q2 = add(g, "q2", &st_sleep, 0, "q2", runs, 0, 1, q1);
    int q3 = add(g, "q3", &st_sleep, 0, "q3", runs, 0, 1, q2);
    int q4 = add(g, "q4", &st_sleep, 0, "q4", runs, 0, 1, q3);
    int crash = add(g, "crash", &st_segv, 0, "c", NULL, 0, 1, q4);
    add(g, "after", &st_sleep, 0, "after", runs, 0, 1, crash);
    int slow = add(g, "slow", &st_sleep, 1200, "slow", runs, 0, 1, q4);
    add(g, "post", &st_sleep, 0, "post", runs, 0, 1, slow);
    build_result r;
    flow_err e;
    int rc = build(g, 1, 0, 1, &r, &e);
    CHECK(rc == FLOW_E_STAGE);
    CHECK_MSG(r.ran == 6 && r.failed == 1 && r.skipped == 1, "ran %d failed %d skipped %d",
              r.ran, r.failed, r.skipped);
    /* pids per node from the run log */
    FILE *f = fopen(runs, "r");
    char name[64];
    int pid, pids[16] = {0}, n = 0;
    char names[16][64];
    while (f && n < 16 && fscanf(f, "%63s %d", name, &pid) == 2) {
        snprintf(names[n], sizeof names[n], "%s", name);
        pids[n++] = pid;
    }
    if (f) fclose(f);
    CHECK(n == 6);
    /* q1..q4 ran in order on one worker */
    CHECK_MSG(n >= 4 && pids[0] == pids[1] && pids[1] == pids[2] && pids[2] == pids[3],
              "quick nodes should share a worker: %d %d %d %d", pids[0], pids[1], pids[2], pids[3]);
    /* the node after the slow one (>1 s) runs in a fresh worker */
    int ps = -1, pp = -1;
    for (int i = 0; i < n; i++) {
        if (!strcmp(names[i], "slow")) ps = pids[i];
        if (!strcmp(names[i], "post")) pp = pids[i];
    }
    CHECK_MSG(ps > 0 && pp > 0 && ps != pp, "a worker is not reused after a slow node");
    CHECK(info(g, "q4").built && !info(g, "crash").built && !info(g, "after").built);
    gfree(g);
}

/* Two builds of one graph at once: every node is built exactly once. */
static void test_leases(void)
{
    fresh_cache("sched-lease");
    char runs[4200];
    snprintf(runs, sizeof runs, "%s/runs.txt", cache_dir);
    flow_graph *g = gnew("g-lease");
    int a = add(g, "a", &st_sleep, 300, "a", runs, 0, 0);
    int b = add(g, "b", &st_sleep, 300, "b", runs, 0, 0);
    add(g, "c", &st_sleep, 200, "c", runs, 0, 2, a, b);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            build_result r;
            flow_err e;
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 1);
            int rc = build(g, 2, 0, 1, &r, &e);
            _exit(rc == 0 && r.failed == 0 ? 0 : 1);
        }
    }
    for (int k = 0; k < 3; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_MSG(count_lines(runs, "a") == 1 && count_lines(runs, "b") == 1 &&
              count_lines(runs, "c") == 1, "runs: a %d b %d c %d", count_lines(runs, "a"),
              count_lines(runs, "b"), count_lines(runs, "c"));
    gfree(g);
}

/* --json: started / progress / finished events and the summary. */
static void test_json(void)
{
    fresh_cache("sched-json");
    flow_graph *g = gnew("g-json");
    int a = add(g, "a", &st_sleep, 400, "report", NULL, 0, 0);
    add(g, "bad", &st_fail, 0, "x", NULL, 0, 1, a);
    char out[4200];
    snprintf(out, sizeof out, "%s/events.json", cache_dir);
    fflush(stdout);
    int saved = dup(1), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    close(fd);
    flow_store *s;
    flow_err e = {0};
    build_result r;
    int rc = -1;
    if (store_open(&s, cache_dir, NULL, &e) == 0) {
        build_options o = {0};
        o.jobs = 2;
        o.gpus_given = 1;
        o.keep_going = 1;
        o.json = 1;
        rc = build_run(g, s, &o, &r, &e);
        store_close(s);
    }
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(rc == FLOW_E_STAGE);
    FILE *f = fopen(out, "r");
    char line[8192];
    int started = 0, progress = 0, finished = 0, summary = 0, bad = 0, lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        CHECK(line[0] == '{' && line[strlen(line) - 2] == '}');
        started += strstr(line, "\"event\":\"started\"") != NULL;
        progress += strstr(line, "\"event\":\"progress\"") != NULL;
        if (strstr(line, "\"event\":\"finished\"") && strstr(line, "\"node\":\"a\"")) {
            finished++;
            CHECK_CONTAINS(line, "\"status\":\"ran\"");
            CHECK_CONTAINS(line, "\"metrics\":{\"gpus\":0,\"threads\":1");
            CHECK_CONTAINS(line, "\"peak_rss_kb\":");
        }
        if (strstr(line, "\"event\":\"finished\"") && strstr(line, "\"node\":\"bad\"")) {
            bad++;
            CHECK_CONTAINS(line, "\"status\":\"failed\"");
            CHECK_CONTAINS(line, "node 'bad': failing on purpose");
            CHECK_CONTAINS(line, "about to fail on purpose");
        }
        if (strstr(line, "\"event\":\"summary\"")) {
            summary++;
            CHECK_CONTAINS(line, "\"ran\":1,\"cached\":0,\"failed\":1,\"skipped\":0");
        }
    }
    if (f) fclose(f);
    CHECK(started == 2 && progress >= 2 && finished == 1 && bad == 1 && summary == 1);
    CHECK(lines == started + progress + finished + bad + summary);
    gfree(g);
}

/* SIGINT stops running workers: nothing stored, FLOW_E_INTERRUPTED. */
static void test_interrupt(void)
{
    fresh_cache("sched-int");
    flow_graph *g = gnew("g-int");
    add(g, "long", &st_sleep, 20000, "long", NULL, 0, 0);
    pid_t kid = fork();
    if (kid == 0) {
        build_result r;
        flow_err e;
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        int rc = build(g, 1, 0, 1, &r, &e);
        _exit(rc == FLOW_E_INTERRUPTED ? 42 : 1);
    }
    usleep(800000);
    kill(kid, SIGINT);
    double t0 = sched_now();
    int st;
    waitpid(kid, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 42, "status %d", st);
    CHECK(sched_now() - t0 < 5);
    CHECK(count_artifacts() == 0);
    gfree(g);
}

int main(void)
{
    /* the worker's stdout/stderr go to pipes; keep ours unbuffered-ish */
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_gpus();
    test_critical_path();
    test_fail_isolation();
    test_reuse();
    test_leases();
    test_json();
    test_interrupt();
    fresh_cache(NULL);
    return test_summary("sched_test");
}
