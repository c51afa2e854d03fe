/* build.c — the scheduler behind `flow build`.
 *
 * Walks the graph from the targets.  A node is ready when all its deps are
 * done; its key is then computed from the deps' artifacts (key_for_node),
 * so a dep rebuilt to identical content gives the same key (early cutoff).
 * A key already in the store is `cached`; otherwise the node runs in a
 * forked worker (worker.c) that commits its own artifact.
 *
 * Order: ready nodes start by critical path — the longest chain of
 * estimated durations (last recorded duration of that node, else the mean
 * of its stage's known ones in this graph, else 1 s) from
 * the node to the end of the build — ties broken by topological position,
 * so the order is deterministic.  Resources: -j CPU slots (a node gets
 * exactly min(wanted, -j) and starts when that many are free: a node keeps
 * its thread count for its whole run, see threads_wanted) and whole GPUs
 * (a node wanting K starts when K are free and gets their ordinals).
 *
 * Failures (error, crash, signal, OOM kill) fail only that node: its
 * dependents are skipped, independent nodes keep running (unless
 * fail-fast).  Several builds may share a cache: a node is built under a
 * lease on its key; a node whose lease another live build holds waits until
 * the artifact appears (cached) or the lease frees (then builds it).
 *
 * Live set (store_roots_put): the keys of the nodes ready or running and
 * of the done nodes that an unfinished node still reads are registered as
 * temporary roots that every gc keeps.  The set is written before each
 * worker starts (and when it changes, and every LEASE_RENEW_S), not at each
 * cache lookup, so a null build writes nothing; the nodes found cached
 * since the last write are then looked up again: one that a gc deleted in
 * between goes back to ready and is built again.
 *
 * SIGINT/SIGTERM stop the workers (SIGTERM, then SIGKILL) and return
 * FLOW_E_INTERRUPTED; nothing partial is ever committed.
 */
#include "sched.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

enum { S_WAIT, S_READY, S_RUN, S_DONE, S_FAIL, S_SKIP };
enum { LEASE_TTL_S = 30, LEASE_RENEW_S = 10, TAIL_MAX = 16384 };

typedef struct bnode {
    int want;               /* in the closure of the targets */
    int state;
    int deps_left;
    double est, prio;
    int have_key;
    char hex[33];
    char *desc;             /* key description for the metadata */
    int gpus_wanted;        /* resolved: 0..ngpus_total */
    char *cpu_note;         /* why a GPU node runs on the CPU, said at start */
    int threads;            /* granted */
    int gpu[64]; int ngpu;  /* granted */
    int leased;
    int unverified;         /* found cached; not yet looked up again after
                             * the live set holding it was written */
    int said_waiting;       /* told the user another build holds the lease */
    pid_t pid;
    int msg_fd, out_fd, cmd_fd;
    int reuse;              /* its D message said the worker stays */
    flow_buf in;            /* unparsed message bytes */
    flow_buf err, metrics, report;
    flow_buf tail;          /* last TAIL_MAX bytes of stdout/stderr */
    int done_msg;
    double dur, cpu, run_s;
    long rss;
    double start, next_try, renew_at;
    double fraction;
    char status[256];
    const char *final;      /* "ran", "cached", "FAILED", "skipped" */
} bnode;

/* A worker that finished a quick node and waits for the next one. */
typedef struct idle_worker {
    pid_t pid;
    int msg_fd, out_fd, cmd_fd;
} idle_worker;

typedef struct sched {
    flow_graph *g;
    flow_store *s;
    const build_options *opt;
    bnode *b;
    flow_hash *keys;
    int jobs, free_slots;
    int ngpus_total;
    char gpu_source[600];   /* where ngpus_total comes from, for messages */
    int gpu_ids[64];
    int gpu_busy[64];
    prog *p;
    store_options worker_store_opt;
    idle_worker *idle; int nidle;   /* workers waiting for another node */
    build_result *res;
    int failed_any;
    int history_marked;         /* this build's mark is in the history (records.c) */
    double t0;
    flow_hash *roots; size_t nroots;   /* the live set last written */
    int roots_written, roots_warned;
    double roots_renew_at;
} sched;

static void reap_idle(sched *S, int all);

/* ---- signals: a self-pipe wakes the poll loop ---------------------------- */

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_stop;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGINT || sig == SIGTERM) sig_stop++;
    if (sig_pipe[1] >= 0) {
        char c = (char)sig;
        ssize_t r = write(sig_pipe[1], &c, 1);
        (void)r;
    }
    errno = saved;
}

/* ---- helpers -------------------------------------------------------------- */

static const char *node_name(const sched *S, int i) { return S->g->nodes[i].name; }

static void tail_add(bnode *n, const char *p, size_t len)
{
    buf_add(&n->tail, p, len);
    if (n->tail.len > 2 * TAIL_MAX) {
        memmove(n->tail.data, n->tail.data + n->tail.len - TAIL_MAX, TAIL_MAX);
        n->tail.len = TAIL_MAX;
        n->tail.data[n->tail.len] = 0;
    }
}

/* The last `lines` lines of the worker's output. */
static const char *tail_lines(bnode *n, int lines)
{
    if (!n->tail.len) return NULL;
    size_t end = n->tail.len;
    while (end > 0 && n->tail.data[end - 1] == '\n') end--;
    size_t i = end;
    int seen = 0;
    while (i > 0) {
        if (n->tail.data[i - 1] == '\n' && ++seen == lines) break;
        i--;
    }
    n->tail.data[end] = 0;
    return n->tail.data + i;
}

/* What artifact k's metadata recorded: its build duration (-1 if unknown)
 * and, when asked for, its metrics object as JSON text (for --json) and its
 * report (printed at the end of the build for cached nodes too, so a null
 * build of legal.graph still ends with its tables).  Strings: caller frees. */
static double recorded(sched *S, const flow_hash *k, char **metrics, char **report)
{
    flow_err e = {0};
    store_artifact *a = NULL;
    double d = -1;
    if (metrics) *metrics = NULL;
    if (report) *report = NULL;
    if (store_get_summary(S->s, k, &a, &e) != 0) return -1;
    const char *meta = a->meta_json;
    /* a JSON string value cannot contain the unescaped pattern, so the
     * first match is the top-level field */
    const char *p = meta ? strstr(meta, "\"duration_s\":") : NULL;
    if (p) {
        double v = strtod(p + 13, NULL);
        if (isfinite(v) && v >= 0) d = v;
    }
    /* parse the whole object only when something in it is wanted */
    int want_report = report && meta && strstr(meta, "\"report\":\"") != NULL;
    json_value *v = NULL;
    if ((metrics || want_report) && meta &&
        json_parse(meta, strlen(meta), NULL, &v, &e) == 0) {
        const json_value *m = json_get(v, "metrics");
        if (metrics && json_typeof(m) == JSON_OBJ) {
            flow_buf b;
            buf_init(&b);
            json_write(&b, m, 0);
            *metrics = buf_detach(&b, NULL);
        }
        const char *r = want_report ? json_str(json_get(v, "report"), NULL) : NULL;
        if (r && *r) *report = xstrdup(r);
        json_free(v);
    }
    store_artifact_free(a);
    return d;
}

/* Last recorded duration of node i in this graph, or -1 if none. */
static double estimate(sched *S, int i)
{
    flow_hash k;
    int nk = 0;
    flow_err e = {0};
    if (store_last_builds(S->s, S->g->id, node_name(S, i), &k, 1, &nk, &e) != 0 || nk < 1)
        return -1;
    return recorded(S, &k, NULL, NULL);
}

/* Estimates for every wanted node: its own last duration, else the mean
 * of the known ones of the same stage in this graph, else 1 s. */
static void estimate_all(sched *S)
{
    const flow_graph *g = S->g;
    for (int i = 0; i < g->n; i++)
        if (S->b[i].want) S->b[i].est = estimate(S, i);
    for (int i = 0; i < g->n; i++) {
        bnode *n = &S->b[i];
        if (!n->want || n->est >= 0) continue;
        double sum = 0;
        int cnt = 0;
        for (int j = 0; j < g->n; j++)
            if (S->b[j].want && S->b[j].est >= 0 && g->nodes[j].stage == g->nodes[i].stage) {
                sum += S->b[j].est;
                cnt++;
            }
        n->est = -2 - (cnt ? sum / cnt : 1.0);   /* marked: not from its own history */
    }
    for (int i = 0; i < g->n; i++)
        if (S->b[i].est <= -2) S->b[i].est = -2 - S->b[i].est;
}

static int resolve_targets(sched *S, flow_err *err)
{
    const build_options *o = S->opt;
    flow_graph *g = S->g;
    int *stack = xmalloc((size_t)g->n * sizeof *stack), sp = 0;
    if (o->ntargets > 0) {
        for (int t = 0; t < o->ntargets; t++) {
            int i = graph_find(g, o->targets[t]);
            if (i < 0) {
                free(stack);
                return flow_fail(err, FLOW_E_USAGE, "unknown target '%s': graph '%s' has no "
                                 "node of that name (see `flow ls`)", o->targets[t],
                                 g->path ? g->path : "");
            }
            if (!S->b[i].want) { S->b[i].want = 1; stack[sp++] = i; }
        }
    } else {
        for (int i = 0; i < g->n; i++)
            if (g->nodes[i].nusers == 0) { S->b[i].want = 1; stack[sp++] = i; }
    }
    while (sp > 0) {
        int i = stack[--sp];
        for (int d = 0; d < g->nodes[i].ndeps; d++) {
            int j = g->nodes[i].deps[d];
            if (!S->b[j].want) { S->b[j].want = 1; stack[sp++] = j; }
        }
    }
    free(stack);
    return 0;
}

/* GPUs node i asks for, after `gpus = all` and CPU fallback.  Fails (before
 * anything runs, exit 2) when the node asks for a GPU that this build cannot
 * give it: its stage has no GPU code, the binary has no CUDA backend, the
 * machine has no GPU, or it asks for more than exist; unless it says
 * `device = auto`, which runs it on the CPU with a note saying so. */
static int resolve_gpus(sched *S, int i, flow_err *err)
{
    const graph_node *n = &S->g->nodes[i];
    int want = n->gpus;
    int fallback = n->device_auto;   /* graph.c applies the stage default */
    int all = want < 0;
    S->b[i].gpus_wanted = 0;
    if (want == 0) return 0;
    char what[64];
    if (all) snprintf(what, sizeof what, "all GPUs (gpus = all)");
    else if (n->device_gpu && n->gpus == 1) snprintf(what, sizeof what, "a GPU (device = gpu)");
    else snprintf(what, sizeof what, "%d GPU%s (gpus = %d)", n->gpus, n->gpus == 1 ? "" : "s", n->gpus);
    char why[700];
    if (!n->stage->res.gpu_capable)
        snprintf(why, sizeof why, "stage '%s' has no GPU implementation in this binary",
                 n->stage->name);
    else if (all ? S->ngpus_total == 0 : want > S->ngpus_total)
        snprintf(why, sizeof why, "%d %s available: %s", S->ngpus_total,
                 S->ngpus_total == 1 ? "is" : "are", S->gpu_source);
    else if (all && n->stage->res.data_parallel)
        /* a training node's bytes depend on its GPU count, so its key holds it */
        return flow_fail(err, FLOW_E_GRAPH, "node '%s' asks for all GPUs (gpus = all), but a training "
                         "node's key holds its GPU count (NCCL's sum over K GPUs is not one GPU's): give "
                         "the count, e.g. gpus = %d; nothing was built", n->name, S->ngpus_total);
    else {
        S->b[i].gpus_wanted = all ? S->ngpus_total : want;
        char arch[32];      /* its key holds the GPU architecture: known before anything runs */
        if (n->stage->res.data_parallel && key_gpu_arch(n->name, arch, sizeof arch, err)) return FLOW_E_GRAPH;
        return 0;
    }
    if (fallback && n->stage->res.gpu_capable && n->stage->res.data_parallel)
        return flow_fail(err, FLOW_E_GRAPH, "node '%s' asks for %s but %s; nothing was built.  A "
                         "training node on a GPU has its own key (the CUDA backend's bytes differ from "
                         "the CPU's), so `device = auto` cannot fall back: use `device = cpu` to train on "
                         "the CPU", n->name, what, why);
    if (fallback) {
        /* said once per build, so a CPU run of a GPU node is never silent */
        char m[1000];
        snprintf(m, sizeof m, "note: node '%s' asks for %s but %s; it runs on the CPU "
                 "(device = auto)", n->name, what, why);
        S->b[i].cpu_note = xstrdup(m);
        S->b[i].gpus_wanted = 0;
        return 0;
    }
    /* a graph/machine mismatch, not a failed stage: exit 2 */
    char fewer[64] = "";
    if (n->stage->res.gpu_capable && S->ngpus_total > 0)
        snprintf(fewer, sizeof fewer, ", or ask for at most %d", S->ngpus_total);
    return flow_fail(err, FLOW_E_GRAPH, "node '%s' asks for %s but %s; nothing was built.  Set "
                     "`device = auto` on it to run it on the CPU (flow says so), or `device = cpu`%s",
                     n->name, what, why, fewer);
}

/* ---- finishing nodes ------------------------------------------------------ */

static void record(sched *S, int i)
{
    flow_err e = {0};
    if (store_record_build_marked(S->s, S->g->id, node_name(S, i), &S->keys[i], &S->history_marked, &e) != 0) {
        char m[1200];
        snprintf(m, sizeof m, "warning: node '%s': history not recorded: %s",
                 node_name(S, i), e.msg);
        prog_message(S->p, m);
    }
}

static void release_lease(sched *S, int i)
{
    if (!S->b[i].leased) return;
    flow_err e = {0};
    store_lease_release(S->s, &S->keys[i], &e);
    S->b[i].leased = 0;
}

static void mark_ready_users(sched *S, int i)
{
    const graph_node *n = &S->g->nodes[i];
    for (int u = 0; u < n->nusers; u++) {
        bnode *x = &S->b[n->users[u]];
        if (!x->want || x->state != S_WAIT) continue;
        if (--x->deps_left == 0) x->state = S_READY;
    }
}

static void skip_node(sched *S, int i, const char *reason)
{
    bnode *n = &S->b[i];
    n->state = S_SKIP;
    n->final = "skipped";
    S->res->skipped++;
    prog_finish f = {0};
    f.name = node_name(S, i);
    f.stage = S->g->nodes[i].stage->name;
    f.status = "skipped";
    f.reason = reason;
    prog_finished(S->p, NULL, &f);
}

/* Skips everything downstream of a failed node. */
static void skip_users(sched *S, int i)
{
    const graph_node *n = &S->g->nodes[i];
    for (int u = 0; u < n->nusers; u++) {
        int j = n->users[u];
        bnode *x = &S->b[j];
        if (!x->want || x->state == S_SKIP || x->state == S_FAIL || x->state == S_DONE ||
            x->state == S_RUN)
            continue;
        char why[300];
        snprintf(why, sizeof why, "upstream node '%s' failed", node_name(S, i));
        skip_node(S, j, why);
        skip_users(S, j);
    }
}

static void fail_node(sched *S, int i, const char *msg, const char *tail)
{
    bnode *n = &S->b[i];
    n->state = S_FAIL;
    n->final = "FAILED";
    S->res->failed++;
    S->failed_any = 1;
    prog_finish f = {0};
    f.name = node_name(S, i);
    f.stage = S->g->nodes[i].stage->name;
    f.status = "FAILED";
    f.key = n->have_key ? n->hex : NULL;
    f.duration_s = n->start > 0 ? sched_now() - n->start : 0;
    f.cpu_s = n->cpu;
    f.peak_rss_kb = n->rss;
    f.error = msg;
    f.log_tail = tail;
    prog_finished(S->p, NULL, &f);
    skip_users(S, i);
}

/* Marks node i done with status ("ran" or "cached"), counts and records it,
 * and fills the common fields of its finish event. */
static void mark_done(sched *S, int i, const char *status, int *counter, prog_finish *f)
{
    bnode *n = &S->b[i];
    n->state = S_DONE;
    n->final = status;
    (*counter)++;
    record(S, i);
    memset(f, 0, sizeof *f);
    f->name = node_name(S, i);
    f->stage = S->g->nodes[i].stage->name;
    f->status = status;
    f->key = n->hex;
}

static void cached_node(sched *S, int i)
{
    bnode *n = &S->b[i];
    prog_finish f;
    mark_done(S, i, "cached", &S->res->cached, &f);
    n->unverified = 1;
    char *metrics = NULL, *report = NULL;
    f.built_s = recorded(S, &S->keys[i], S->opt->json ? &metrics : NULL,
                         S->opt->json ? NULL : &report);
    f.metrics = metrics;
    prog_finished(S->p, NULL, &f);
    free(metrics);
    if (report) {
        buf_adds(&n->report, report);
        free(report);
    }
    mark_ready_users(S, i);
}

/* ---- the live set ---------------------------------------------------------- */

/* Does a wanted node that has not finished depend on node i? */
static int has_pending_user(const sched *S, int i)
{
    const graph_node *n = &S->g->nodes[i];
    for (int u = 0; u < n->nusers; u++) {
        const bnode *x = &S->b[n->users[u]];
        if (x->want && (x->state == S_WAIT || x->state == S_READY || x->state == S_RUN)) return 1;
    }
    return 0;
}

/* Keys of the nodes ready or running, and of the done nodes still read. */
static size_t live_set(const sched *S, flow_hash *out)
{
    size_t n = 0;
    for (int i = 0; i < S->g->n; i++) {
        const bnode *b = &S->b[i];
        if (!b->want || !b->have_key) continue;
        int live = b->state == S_READY || b->state == S_RUN ||
                   (b->state == S_DONE && has_pending_user(S, i));
        if (live) out[n++] = S->keys[i];
    }
    return n;
}

/* Node j was found cached, but a gc deleted it before the live set holding
 * it was written: build it again; its users wait for it again. */
static void undo_cached(sched *S, int j)
{
    bnode *n = &S->b[j];
    n->state = S_READY;
    n->final = NULL;
    n->report.len = 0;
    S->res->cached--;
    const graph_node *gn = &S->g->nodes[j];
    for (int u = 0; u < gn->nusers; u++) {
        bnode *x = &S->b[gn->users[u]];
        if (!x->want) continue;
        if (x->state == S_READY) { x->state = S_WAIT; x->deps_left = 1; }
        else if (x->state == S_WAIT) x->deps_left++;
    }
    char m[300];
    snprintf(m, sizeof m, "note: node '%s': its cached artifact %.12s was deleted by a "
             "concurrent gc; building it again", node_name(S, j), n->hex);
    prog_message(S->p, m);
}

/* Writes the live set when it changed or its renewal is due, then looks up
 * again the nodes found cached before it was written.  Returns how many of
 * them were gone (sent back to ready). */
static int sync_roots(sched *S)
{
    flow_hash *set = xmalloc(((size_t)S->g->n + 1) * sizeof *set);
    size_t n = live_set(S, set);
    double now = sched_now();
    int same = S->roots_written && n == S->nroots && (n == 0 || !memcmp(set, S->roots, n * sizeof *set));
    if (!same || now >= S->roots_renew_at) {
        flow_err e = {0};
        if (store_roots_put(S->s, set, n, LEASE_TTL_S, &e) != 0 && !S->roots_warned) {
            char m[1200];
            snprintf(m, sizeof m, "warning: the live set of this build is not registered "
                     "(a concurrent `flow gc` may delete what it uses): %s", e.msg);
            prog_message(S->p, m);
            S->roots_warned = 1;
        }
        free(S->roots);
        S->roots = set;
        S->nroots = n;
        S->roots_written = 1;
        S->roots_renew_at = now + LEASE_RENEW_S;
    } else {
        free(set);
    }
    int back = 0;
    for (int i = 0; i < S->g->n; i++) {
        bnode *b = &S->b[i];
        if (!b->unverified) continue;
        b->unverified = 0;
        if (b->state == S_DONE && !store_has(S->s, &S->keys[i])) {
            undo_cached(S, i);
            back++;
        }
    }
    return back;
}

/* ---- running -------------------------------------------------------------- */

static void free_resources(sched *S, bnode *n)
{
    S->free_slots += n->threads;
    n->threads = 0;
    for (int k = 0; k < n->ngpu; k++)
        for (int d = 0; d < S->ngpus_total; d++)
            if (S->gpu_ids[d] == n->gpu[k]) S->gpu_busy[d] = 0;
    n->ngpu = 0;
}

static void to_prog_node(const sched *S, int i, prog_node *pn)
{
    const bnode *n = &S->b[i];
    memset(pn, 0, sizeof *pn);
    pn->name = node_name(S, i);
    pn->stage = S->g->nodes[i].stage->name;
    memcpy(pn->key, n->hex, sizeof pn->key);
    pn->start = n->start;
    pn->fraction = n->fraction;
    pn->status = n->status[0] ? n->status : NULL;
    pn->threads = n->threads;
    pn->gpus = n->gpu;
    pn->ngpus = n->ngpu;
}

/* The CPU slots node i gets: its `threads` setting, else its stage's
 * default, 0 meaning all -j slots.  Always exactly this many, never what
 * happens to be free.  Not for the bytes (every stage gives the same bytes
 * for any thread count, tests/threads_legal_slow_test.sh) but for speed: a
 * node's thread count is fixed when it starts, so a long training node
 * started on the one slot that happened to be free would stay
 * single-threaded after the others free up; waiting for its slots costs at
 * most the rest of what is running. */
static int threads_wanted(const sched *S, int i)
{
    const graph_node *gn = &S->g->nodes[i];
    int want = gn->threads > 0 ? gn->threads : gn->stage->res.threads;
    if (want <= 0 || want > S->jobs) want = S->jobs;
    return want;
}

static int spawn(sched *S, int i)
{
    bnode *n = &S->b[i];
    n->threads = threads_wanted(S, i);
    S->free_slots -= n->threads;
    n->ngpu = 0;
    for (int d = 0; d < S->ngpus_total && n->ngpu < n->gpus_wanted; d++)
        if (!S->gpu_busy[d]) {
            S->gpu_busy[d] = 1;
            n->gpu[n->ngpu++] = S->gpu_ids[d];
        }
    worker_spec w = {0};
    w.g = S->g;
    w.node = i;
    w.store_dir = store_dir(S->s);
    w.store_opt = &S->worker_store_opt;
    w.key = S->keys[i];
    w.keys = S->keys;
    w.key_desc = n->desc;
    w.threads = n->threads;
    w.gpu_ids = n->gpu;
    w.ngpus = n->ngpu;
    w.verbose = S->opt->verbose;
    n->start = sched_now();
    n->done_msg = n->reuse = 0;
    n->in.len = 0;
    int rc = -1;
    /* a waiting worker saves a fork and a store open */
    while (S->nidle > 0 && rc != 0) {
        idle_worker iw = S->idle[--S->nidle];
        rc = worker_send_job(iw.cmd_fd, &w);
        if (rc == 0) {
            n->pid = iw.pid;
            n->msg_fd = iw.msg_fd;
            n->out_fd = iw.out_fd;
            n->cmd_fd = iw.cmd_fd;
        } else {    /* it died while waiting: reap it */
            kill(-iw.pid, SIGKILL);
            kill(iw.pid, SIGKILL);
            waitpid(iw.pid, NULL, 0);
            close(iw.msg_fd);
            close(iw.out_fd);
            close(iw.cmd_fd);
        }
    }
    flow_err e = {0};
    if (rc != 0) {
        /* fds a new worker must not keep: the signal pipe, other workers' pipes */
        int *cl = xmalloc((size_t)(3 * S->g->n + 3 * S->nidle + 2) * sizeof *cl), ncl = 0;
        cl[ncl++] = sig_pipe[0];
        cl[ncl++] = sig_pipe[1];
        for (int j = 0; j < S->g->n; j++)
            if (S->b[j].state == S_RUN) {
                cl[ncl++] = S->b[j].msg_fd;
                cl[ncl++] = S->b[j].out_fd;
                cl[ncl++] = S->b[j].cmd_fd;
            }
        for (int k = 0; k < S->nidle; k++) {
            cl[ncl++] = S->idle[k].msg_fd;
            cl[ncl++] = S->idle[k].out_fd;
            cl[ncl++] = S->idle[k].cmd_fd;
        }
        w.close_fds = cl;
        w.nclose = ncl;
        rc = worker_spawn(&w, &n->pid, &n->msg_fd, &n->out_fd, &n->cmd_fd, &e);
        free(cl);
    }
    if (rc) {
        free_resources(S, n);
        release_lease(S, i);
        fail_node(S, i, e.msg, NULL);
        return rc;
    }
    n->state = S_RUN;
    n->fraction = -1;
    n->status[0] = 0;
    n->renew_at = n->start + LEASE_RENEW_S;
    prog_node pn;
    to_prog_node(S, i, &pn);
    prog_started(S->p, &pn);
    return 0;
}

/* Parses complete frames from the worker's message buffer. */
static void parse_msgs(sched *S, int i)
{
    bnode *n = &S->b[i];
    size_t off = 0;
    while (n->in.len - off >= WMSG_HDR) {
        const unsigned char *h = (const unsigned char *)n->in.data + off;
        size_t len = h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16 | (size_t)h[4] << 24;
        if (len > WMSG_MAX) {   /* cannot happen with our writer */
            n->in.len = off;
            break;
        }
        if (n->in.len - off - WMSG_HDR < len) break;
        const char *p = (const char *)h + WMSG_HDR;
        switch (h[0]) {
        case WMSG_PROGRESS: {
            char tmp[600];
            size_t k = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
            memcpy(tmp, p, k);
            tmp[k] = 0;
            char *rest;
            n->fraction = strtod(tmp, &rest);
            while (*rest == ' ') rest++;
            snprintf(n->status, sizeof n->status, "%s", rest);
            prog_node pn;
            to_prog_node(S, i, &pn);
            prog_progress(S->p, &pn);
            break;
        }
        case WMSG_ERROR: buf_add(&n->err, p, len); break;
        case WMSG_METRICS: buf_add(&n->metrics, p, len); break;
        case WMSG_REPORT: buf_add(&n->report, p, len); break;
        case WMSG_DONE: {
            char tmp[128];
            size_t k = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
            memcpy(tmp, p, k);
            tmp[k] = 0;
            if (sscanf(tmp, "%lf %lf %ld %lf %d", &n->dur, &n->cpu, &n->rss, &n->run_s,
                       &n->reuse) == 5)
                n->done_msg = 1;
            break;
        }
        default: break;
        }
        off += WMSG_HDR + len;
    }
    if (off) {
        memmove(n->in.data, n->in.data + off, n->in.len - off);
        n->in.len -= off;
    }
}

static void echo_output(sched *S, int i, const char *p, size_t len)
{
    if (!S->opt->verbose || S->opt->json) return;
    /* prefix each line with the node name */
    const char *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[1200];
        snprintf(line, sizeof line, "%s| %.*s", node_name(S, i), (int)(k > 1000 ? 1000 : k), p);
        prog_message(S->p, line);
        p += k + (nl ? 1 : 0);
    }
}

/* Reads what is available on a worker's pipes. */
static void drain(sched *S, int i)
{
    bnode *n = &S->b[i];
    char buf[65536];
    for (;;) {
        ssize_t r = n->msg_fd >= 0 ? read(n->msg_fd, buf, sizeof buf) : 0;
        if (r > 0) { buf_add(&n->in, buf, (size_t)r); continue; }
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    parse_msgs(S, i);
    for (;;) {
        ssize_t r = n->out_fd >= 0 ? read(n->out_fd, buf, sizeof buf) : 0;
        if (r > 0) {
            tail_add(n, buf, (size_t)r);
            echo_output(S, i, buf, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        break;
    }
}

/* Node i's artifact is committed (its worker said D). */
static void complete(sched *S, int i)
{
    bnode *n = &S->b[i];
    free_resources(S, n);
    double wall = sched_now() - n->start;
    release_lease(S, i);
    prog_finish f;
    mark_done(S, i, "ran", &S->res->ran, &f);
    f.duration_s = wall;
    f.cpu_s = n->cpu;
    f.run_s = n->run_s;
    f.peak_rss_kb = n->rss;
    f.metrics = n->metrics.len ? n->metrics.data : NULL;
    prog_finished(S->p, NULL, &f);
    mark_ready_users(S, i);
}

static void close_pipes(bnode *n)
{
    close(n->msg_fd);
    close(n->out_fd);
    close(n->cmd_fd);
    n->msg_fd = n->out_fd = n->cmd_fd = -1;
    n->pid = 0;
}

/* Node i's worker committed its artifact (it said D) but the artifact is
 * not in the cache: another process deleted it after the commit. */
static void lost_artifact(sched *S, int i)
{
    bnode *n = &S->b[i];
    free_resources(S, n);
    release_lease(S, i);
    char msg[600];
    snprintf(msg, sizeof msg, "node '%s': its artifact %s was committed, then deleted from "
             "the cache by another process (a `flow verify --repair`, or a gc that does not "
             "honour running builds' live sets); build again", node_name(S, i), n->hex);
    fail_node(S, i, msg, NULL);
}

/* The worker of node i said D and waits for more: node i is done, the
 * worker joins the idle pool. */
static void complete_reused(sched *S, int i)
{
    bnode *n = &S->b[i];
    S->idle = xrealloc(S->idle, (size_t)(S->nidle + 1) * sizeof *S->idle);
    S->idle[S->nidle++] = (idle_worker){ n->pid, n->msg_fd, n->out_fd, n->cmd_fd };
    n->msg_fd = n->out_fd = n->cmd_fd = -1;
    n->pid = 0;
    if (store_has(S->s, &S->keys[i])) complete(S, i);
    else lost_artifact(S, i);
}

/* The worker of node i exited with wait status st. */
static void finish(sched *S, int i, int st, const struct rusage *ru)
{
    bnode *n = &S->b[i];
    drain(S, i);
    close_pipes(n);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && n->done_msg) {
        if (store_has(S->s, &S->keys[i])) complete(S, i);
        else lost_artifact(S, i);
        return;
    }
    free_resources(S, n);
    release_lease(S, i);
    n->cpu = ru->ru_utime.tv_sec + ru->ru_utime.tv_usec * 1e-6 + ru->ru_stime.tv_sec +
             ru->ru_stime.tv_usec * 1e-6;
    n->rss = ru->ru_maxrss;
    char msg[1600];
    if (n->err.len) {
        snprintf(msg, sizeof msg, "%s", n->err.data);
    } else if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        snprintf(msg, sizeof msg, "node '%s': worker killed by signal %d (%s)%s; peak RSS %ld MB",
                 node_name(S, i), sig, strsignal(sig),
                 sig == SIGKILL ? " — out of memory (OOM killer) or killed from outside"
                 : sig == SIGSEGV || sig == SIGBUS ? " — the stage crashed"
                 : sig == SIGABRT ? " — the stage aborted" : "",
                 n->rss / 1024);
    } else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        snprintf(msg, sizeof msg, "node '%s': worker exited with status %d without a message",
                 node_name(S, i), WEXITSTATUS(st));
    } else {
        snprintf(msg, sizeof msg, "node '%s': worker exited without storing its artifact",
                 node_name(S, i));
    }
    fail_node(S, i, msg, tail_lines(n, 20));
}

/* ---- the ready queue ---------------------------------------------------- */

static const sched *cmp_S;
static int *cmp_pos;

static int by_priority(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double pi = cmp_S->b[i].prio, pj = cmp_S->b[j].prio;
    if (pi > pj + 1e-9) return -1;
    if (pj > pi + 1e-9) return 1;
    return cmp_pos[i] - cmp_pos[j];
}

/* Computes node i's key; 1 if it is cached (done), 0 if it must run, -1 if
 * it failed. */
static int prepare(sched *S, int i)
{
    bnode *n = &S->b[i];
    if (!n->have_key) {
        flow_err e = {0};
        flow_buf desc;
        buf_init(&desc);
        int rc = key_for_node(S->g, S->s, i, S->keys, &S->keys[i], &desc, &e);
        /* an input found cached may have been deleted before the live set
         * held it: then that input is built again and node i waits */
        if (rc == FLOW_E_NOTFOUND && sync_roots(S) > 0) {
            buf_release(&desc);
            return -1;
        }
        if (rc) {
            buf_release(&desc);
            char msg[1200];
            if (strncmp(e.msg, "node '", 6) == 0) snprintf(msg, sizeof msg, "%s", e.msg);
            else snprintf(msg, sizeof msg, "node '%s': %s", node_name(S, i), e.msg);
            fail_node(S, i, msg, NULL);
            return -1;
        }
        n->desc = buf_detach(&desc, NULL);
        n->have_key = 1;
        flow_hash_hex(&S->keys[i], n->hex);
    }
    if (store_has(S->s, &S->keys[i])) {
        cached_node(S, i);
        return 1;
    }
    return 0;
}

/* Starts what can start.  Returns the earliest time a lease-blocked node
 * should be retried (0 if none). */
static double launch(sched *S, int *order, int *pos)
{
    double retry = 0;
    for (int again = 1; again;) {
        again = 0;
        int nr = 0;
        for (int i = 0; i < S->g->n; i++)
            if (S->b[i].want && S->b[i].state == S_READY) order[nr++] = i;
        cmp_S = S;
        cmp_pos = pos;
        qsort(order, (size_t)nr, sizeof *order, by_priority);
        retry = 0;
        int cpu_blocked = 0;
        for (int k = 0; k < nr; k++) {
            int i = order[k];
            bnode *n = &S->b[i];
            if (n->state != S_READY) continue;
            if (S->failed_any && !S->opt->keep_going) {
                skip_node(S, i, "an earlier node failed (--fail-fast)");
                continue;
            }
            int pr = prepare(S, i);
            if (pr != 0) { again = 1; continue; }   /* cached or failed: users may be ready */
            double now = sched_now();
            if (n->next_try > now) {
                if (!retry || n->next_try < retry) retry = n->next_try;
                continue;
            }
            /* strict priority for CPU slots: when the most critical ready
             * node waits for slots, nothing less critical takes them */
            if (cpu_blocked) continue;
            if (S->free_slots < threads_wanted(S, i)) {
                cpu_blocked = 1;
                continue;
            }
            int gfree = 0;
            for (int d = 0; d < S->ngpus_total; d++) gfree += !S->gpu_busy[d];
            if (gfree < n->gpus_wanted) continue;
            /* what the worker will read is a root before it starts */
            if (sync_roots(S) > 0) { again = 1; continue; }
            flow_err e = {0};
            int rc = store_lease_take(S->s, &S->keys[i], LEASE_TTL_S, &e);
            if (rc == FLOW_E_BUSY) {
                /* another build runs it: wait for its artifact or its lease */
                if (!n->said_waiting) {
                    char m[400];
                    snprintf(m, sizeof m, "waiting: another flow process is building node "
                             "'%s' (same key %.12s); using its result when it is done",
                             node_name(S, i), n->hex);
                    prog_message(S->p, m);
                    n->said_waiting = 1;
                }
                n->next_try = now + 0.2;
                if (!retry || n->next_try < retry) retry = n->next_try;
                continue;
            }
            if (rc) {
                char msg[1200];
                snprintf(msg, sizeof msg, "node '%s': cannot take the build lease: %s",
                         node_name(S, i), e.msg);
                fail_node(S, i, msg, NULL);
                again = 1;
                continue;
            }
            n->leased = 1;
            if (store_has(S->s, &S->keys[i])) {   /* finished while we waited */
                release_lease(S, i);
                cached_node(S, i);
                again = 1;
                continue;
            }
            spawn(S, i);
        }
    }
    return retry;
}

static int count_running(const sched *S)
{
    int r = 0;
    for (int i = 0; i < S->g->n; i++) r += S->b[i].state == S_RUN;
    return r;
}

static void renew_leases(sched *S)
{
    double now = sched_now();
    for (int i = 0; i < S->g->n; i++) {
        bnode *n = &S->b[i];
        if (n->state != S_RUN || !n->leased || now < n->renew_at) continue;
        flow_err e = {0};
        store_lease_renew(S->s, &S->keys[i], LEASE_TTL_S, &e);
        n->renew_at = now + LEASE_RENEW_S;
    }
}

/* Stops every running worker: SIGTERM to its process group, SIGKILL after
 * a grace period (or at once after a second Ctrl-C). */
static void stop_all(sched *S)
{
    for (int k = 0; k < S->nidle; k++) {
        kill(-S->idle[k].pid, SIGKILL);
        kill(S->idle[k].pid, SIGKILL);
    }
    reap_idle(S, 1);
    for (int i = 0; i < S->g->n; i++)
        if (S->b[i].state == S_RUN) {
            kill(-S->b[i].pid, SIGTERM);
            kill(S->b[i].pid, SIGTERM);
        }
    double deadline = sched_now() + 3.0;
    int stop0 = sig_stop;
    for (;;) {
        int left = 0;
        for (int i = 0; i < S->g->n; i++) {
            bnode *n = &S->b[i];
            if (n->state != S_RUN) continue;
            int st;
            struct rusage ru;
            pid_t r = wait4(n->pid, &st, WNOHANG, &ru);
            if (r == n->pid || (r < 0 && errno == ECHILD)) {
                drain(S, i);
                close_pipes(n);
                free_resources(S, n);
                release_lease(S, i);
                skip_node(S, i, "interrupted");
            } else {
                left++;
            }
        }
        if (!left) break;
        if (sched_now() > deadline || sig_stop != stop0) {
            for (int i = 0; i < S->g->n; i++)
                if (S->b[i].state == S_RUN) {
                    kill(-S->b[i].pid, SIGKILL);
                    kill(S->b[i].pid, SIGKILL);
                }
            deadline = sched_now() + 3600;
        }
        usleep(20000);
    }
}

/* Reaps idle workers that exited; with `all`, first asks every idle worker
 * to exit (closing its job pipe) and waits for them. */
static void reap_idle(sched *S, int all)
{
    if (all)
        for (int k = 0; k < S->nidle; k++) {
            close(S->idle[k].cmd_fd);
            S->idle[k].cmd_fd = -1;
        }
    double deadline = sched_now() + 2.0;
    for (int k = 0; k < S->nidle;) {
        idle_worker *w = &S->idle[k];
        pid_t r = waitpid(w->pid, NULL, WNOHANG);
        if (r == 0 && all) {
            if (sched_now() > deadline) {
                kill(-w->pid, SIGKILL);
                kill(w->pid, SIGKILL);
            }
            usleep(1000);
            continue;
        }
        if (r == 0) { k++; continue; }
        close(w->msg_fd);
        close(w->out_fd);
        if (w->cmd_fd >= 0) close(w->cmd_fd);
        S->idle[k] = S->idle[--S->nidle];
    }
}

/* The GPUs this build may hand out, and in gpu_source where that number
 * comes from.  --fake-gpus N (a test switch: sched_test.c and
 * engine_e2e_test.sh use it to check scheduling and the messages without a
 * GPU) pretends devices 0..N-1 exist.  Otherwise the CUDA module
 * (flow_cuda_load, base.h) counts them, loaded only when needed: --gpus
 * LIST names devices, or a wanted node of a stage with GPU code asks for
 * some (`need`); a CPU-only build never maps it.  --gpus LIST must name
 * devices CUDA reports: without the module or for a device that does not
 * exist, it is a usage error (exit 2) before anything runs. */
static int detect_gpus(sched *S, int need, flow_err *err)
{
    const build_options *o = S->opt;
    int n = 0;
    if (o->fake_gpus > 0) {
        for (int d = 0; d < o->fake_gpus && d < 64; d++) S->gpu_ids[n++] = d;
        snprintf(S->gpu_source, sizeof S->gpu_source, "--fake-gpus %d (a test switch)", o->fake_gpus);
        return n;
    }
    if (o->gpus_given && o->ngpus == 0) {
        snprintf(S->gpu_source, sizeof S->gpu_source, "--gpus none");
        return 0;
    }
    if (!o->gpus_given && !need) {
        snprintf(S->gpu_source, sizeof S->gpu_source, "no node needs one");
        return 0;
    }
    flow_err le = {0};
    const flow_cuda_api *api = flow_cuda_load(&le);
    char why[256] = "";
    int count = api ? api->device_count(why, sizeof why) : 0;
    if (count < 0) count = 0;
    if (o->gpus_given) {
        char list[200] = "";
        for (int d = 0, len = 0; d < o->ngpus && len < 180; d++)
            len += snprintf(list + len, sizeof list - (size_t)len, "%s%d", d ? "," : "", o->gpu_ids[d]);
        if (!api)
            return flow_fail(err, FLOW_E_USAGE, "--gpus %s: %s; nothing was built.  Leave out --gpus "
                             "(or give --gpus none) to build on the CPU", list, le.msg);
        for (int d = 0; d < o->ngpus; d++)
            if (o->gpu_ids[d] >= count)
                return flow_fail(err, FLOW_E_USAGE, "--gpus %s: there is no GPU %d (CUDA reports "
                                 "%d device%s%s%s%s); nothing was built.  Give devices 0..%d, or --gpus none",
                                 list, o->gpu_ids[d], count, count == 1 ? "" : "s",
                                 count ? "" : " on this machine", why[0] ? ": " : "", why, count - 1);
        for (int d = 0; d < o->ngpus && d < 64; d++) S->gpu_ids[n++] = o->gpu_ids[d];
        snprintf(S->gpu_source, sizeof S->gpu_source, "--gpus %s", list);
    } else if (!api) {
        size_t len = strlen(le.msg) < sizeof S->gpu_source ? strlen(le.msg) : sizeof S->gpu_source - 1;
        memcpy(S->gpu_source, le.msg, len);     /* (cut at the buffer, not a warning) */
        S->gpu_source[len] = 0;
    } else {
        for (int d = 0; d < count && d < 64; d++) S->gpu_ids[n++] = d;
        if (count)
            snprintf(S->gpu_source, sizeof S->gpu_source, "CUDA reports %d device%s", count,
                     count == 1 ? "" : "s");
        else
            snprintf(S->gpu_source, sizeof S->gpu_source, "CUDA finds no GPU on this machine (%s)",
                     why[0] ? why : "no reason given");
    }
    return n;
}

/* 1 when a wanted node of a stage with GPU code asks for GPUs. */
static int gpus_needed(const sched *S)
{
    for (int i = 0; i < S->g->n; i++) {
        const graph_node *n = &S->g->nodes[i];
        if (S->b[i].want && n->gpus != 0 && n->stage->res.gpu_capable) return 1;
    }
    return 0;
}

static long ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* Critical path: a wanted node's priority is its own estimate plus the
 * longest chain of wanted nodes after it.  Sets deps_left and the first
 * state, and pos[i] = node i's place in topological order.  Returns the
 * number of wanted nodes. */
static int plan_priorities(sched *S, int *pos)
{
    const flow_graph *g = S->g;
    int total = 0;
    for (int k = 0; k < g->n; k++) pos[g->topo[k]] = k;
    for (int k = g->n - 1; k >= 0; k--) {
        int i = g->topo[k];
        bnode *n = &S->b[i];
        if (!n->want) continue;
        total++;
        double best = 0;
        for (int u = 0; u < g->nodes[i].nusers; u++) {
            const bnode *x = &S->b[g->nodes[i].users[u]];
            if (x->want && x->prio > best) best = x->prio;
        }
        n->prio = n->est + best;
        n->deps_left = g->nodes[i].ndeps;
        n->state = n->deps_left ? S_WAIT : S_READY;
    }
    return total;
}

/* The build's signal handling: SIGINT, SIGTERM and SIGCHLD wake the event
 * loop through sig_pipe; SIGPIPE is ignored, so that a worker that died
 * while idle does not kill us when we write to it. */
typedef struct saved_signals {
    struct sigaction intr, term, chld, pipe;
} saved_signals;

static int signals_install(saved_signals *old, flow_err *err)
{
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return flow_fail(err, FLOW_E_IO, "cannot create a pipe: %s", strerror(errno));
    sig_stop = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old->intr);
    sigaction(SIGTERM, &sa, &old->term);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, &old->chld);
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old->pipe);
    return 0;
}

static void signals_restore(const saved_signals *old)
{
    sigaction(SIGINT, &old->intr, NULL);
    sigaction(SIGTERM, &old->term, NULL);
    sigaction(SIGCHLD, &old->chld, NULL);
    sigaction(SIGPIPE, &old->pipe, NULL);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = sig_pipe[1] = -1;
}

/* The event loop's buffers: launch order, the poll set (the signal pipe,
 * then each running node's message and output pipes, with the node of
 * each) and the live display's rows. */
typedef struct loop_bufs {
    int *order;
    struct pollfd *pfd;
    int *pfd_node;
    const prog_node **live;
    prog_node *live_buf;
} loop_bufs;

/* Waits for worker output, exits, signals or the next timer (retry: when
 * a node held back for resources is tried again, 0 = none) and drains
 * what arrived.  -1 when poll failed (err set, the build is stopped). */
static int wait_and_drain(sched *S, loop_bufs *L, double retry, prog_mode mode, flow_err *err)
{
    int np = 0;
    L->pfd[np].fd = sig_pipe[0];
    L->pfd[np].events = POLLIN;
    L->pfd_node[np++] = -1;
    for (int i = 0; i < S->g->n; i++)
        if (S->b[i].state == S_RUN) {
            L->pfd[np].fd = S->b[i].msg_fd;
            L->pfd[np].events = POLLIN;
            L->pfd_node[np++] = i;
            L->pfd[np].fd = S->b[i].out_fd;
            L->pfd[np].events = POLLIN;
            L->pfd_node[np++] = i;
        }
    double now = sched_now();
    double wake = now + (mode == PROG_LIVE ? 0.25 : 1.0);
    if (retry && retry < wake) wake = retry;
    int timeout = (int)((wake - now) * 1000) + 1;
    if (timeout < 0) timeout = 0;
    int pr = poll(L->pfd, (nfds_t)np, timeout);
    if (pr < 0 && errno != EINTR) {
        flow_fail(err, FLOW_E_IO, "poll: %s", strerror(errno));
        sig_stop = 1;
        return -1;
    }
    if (pr > 0 && (L->pfd[0].revents & POLLIN)) {
        char tmp[64];
        while (read(sig_pipe[0], tmp, sizeof tmp) > 0) {}
    }
    for (int k = 1; pr > 0 && k < np; k++)
        if (L->pfd[k].revents & (POLLIN | POLLHUP)) drain(S, L->pfd_node[k]);
    return 0;
}

/* Finishes the running nodes whose worker exited, or reported a result
 * it stays alive after (a reused worker). */
static void reap_finished(sched *S)
{
    for (int i = 0; i < S->g->n; i++) {
        bnode *n = &S->b[i];
        if (n->state != S_RUN) continue;
        if (n->done_msg && n->reuse) {
            complete_reused(S, i);
            if (n->state != S_RUN) continue;
        }
        int st;
        struct rusage ru;
        pid_t r = wait4(n->pid, &st, WNOHANG, &ru);
        if (r == n->pid) finish(S, i, st, &ru);
    }
}

static void show_live(sched *S, loop_bufs *L)
{
    int nl = 0;
    for (int i = 0; i < S->g->n; i++)
        if (S->b[i].state == S_RUN) {
            to_prog_node(S, i, &L->live_buf[nl]);
            L->live[nl] = &L->live_buf[nl];
            nl++;
        }
    prog_tick(S->p, L->live, nl);
}

/* Launches what is ready, waits, reaps, renews the leases and the live
 * roots, until nothing runs or waits, or a signal stops the build.
 * Returns 1 when interrupted. */
static int event_loop(sched *S, int *pos, prog_mode mode, flow_err *err)
{
    int n = S->g->n;
    loop_bufs L = {
        xmalloc((size_t)n * sizeof *L.order),
        xmalloc((size_t)(2 * n + 1) * sizeof *L.pfd),
        xmalloc((size_t)(2 * n + 1) * sizeof *L.pfd_node),
        xmalloc((size_t)n * sizeof *L.live + 1),
        xmalloc((size_t)n * sizeof *L.live_buf + 1),
    };
    int interrupted = 0;
    for (;;) {
        if (sig_stop) {
            interrupted = 1;
            stop_all(S);
            break;
        }
        double retry = launch(S, L.order, pos);
        int running = count_running(S);
        if (running == 0 && retry == 0) break;
        if (wait_and_drain(S, &L, retry, mode, err) < 0) continue;
        reap_finished(S);
        reap_idle(S, 0);
        renew_leases(S);
        sync_roots(S);
        if (mode == PROG_LIVE) show_live(S, &L);
    }
    free(L.live);
    free(L.live_buf);
    free(L.pfd);
    free(L.pfd_node);
    free(L.order);
    return interrupted;
}

/* After the loop: idle workers asked to exit and reaped, the live roots
 * dropped, whatever never started (fail-fast, interrupt) skipped, the
 * reports of the nodes that ran or were cached printed in graph order
 * (not with --json), and the summary. */
static void wind_down(sched *S, int interrupted)
{
    const flow_graph *g = S->g;
    reap_idle(S, 1);
    if (S->roots_written) {
        flow_err e = {0};
        store_roots_drop(S->s, &e);     /* a failure leaves a record gc drops when we are gone */
    }
    free(S->roots);
    for (int k = 0; k < g->n; k++) {
        int i = g->topo[k];
        bnode *n = &S->b[i];
        if (n->want && (n->state == S_WAIT || n->state == S_READY))
            skip_node(S, i, interrupted ? "interrupted" : "an earlier node failed (--fail-fast)");
    }
    S->res->seconds = sched_now() - S->t0;
    if (!S->opt->json)
        for (int k = 0; k < g->n; k++) {
            bnode *n = &S->b[g->topo[k]];
            if (!n->report.len) continue;
            char head[300];
            snprintf(head, sizeof head, "\n== %s ==", node_name(S, g->topo[k]));
            prog_message(S->p, head);
            prog_message(S->p, n->report.data);
        }
    prog_summary(S->p, S->res, interrupted);
}

static void sched_release(sched *S)
{
    for (int i = 0; i < S->g->n; i++) {
        bnode *n = &S->b[i];
        free(n->desc);
        buf_release(&n->in);
        buf_release(&n->err);
        buf_release(&n->metrics);
        buf_release(&n->report);
        buf_release(&n->tail);
    }
    free(S->b);
    free(S->keys);
    free(S->idle);
}

int build_run(flow_graph *g, flow_store *s, const build_options *opt,
              build_result *res, flow_err *err)
{
    memset(res, 0, sizeof *res);
    sched S = {0};
    S.g = g;
    S.s = s;
    S.opt = opt;
    S.res = res;
    S.t0 = sched_now();
    S.jobs = opt->jobs > 0 ? opt->jobs : (int)ncpus();
    S.free_slots = S.jobs;
    /* cheap commits: no fsync per artifact, lease or history record (a
     * killed process still never corrupts the store); one sync at the end */
    S.worker_store_opt.sync_mode = STORE_SYNC_NONE;
    flow_err serr = {0};
    store_set_sync_mode(s, STORE_SYNC_NONE, &serr);
    S.b = xcalloc((size_t)g->n + 1, sizeof *S.b);
    S.keys = xcalloc((size_t)g->n + 1, sizeof *S.keys);
    for (int i = 0; i < g->n; i++) S.b[i].msg_fd = S.b[i].out_fd = S.b[i].cmd_fd = -1;
    int rc = resolve_targets(&S, err);
    if (rc == 0 && (S.ngpus_total = detect_gpus(&S, gpus_needed(&S), err)) < 0) rc = S.ngpus_total;
    for (int i = 0; rc == 0 && i < g->n; i++)
        if (S.b[i].want) rc = resolve_gpus(&S, i, err);
    if (rc) {
        for (int i = 0; i < g->n; i++) free(S.b[i].cpu_note);
        free(S.b);
        free(S.keys);
        return rc;
    }
    estimate_all(&S);
    int *pos = xmalloc((size_t)g->n * sizeof *pos);
    int total = plan_priorities(&S, pos);
    prog_mode mode = opt->json ? PROG_JSON : opt->live ? PROG_LIVE : PROG_PLAIN;
    S.p = prog_new(mode, stdout, total);
    for (int i = 0; i < g->n; i++)
        if (S.b[i].cpu_note) {
            prog_message(S.p, S.b[i].cpu_note);
            free(S.b[i].cpu_note);
            S.b[i].cpu_note = NULL;
        }
    saved_signals old;
    if ((rc = signals_install(&old, err))) {
        prog_free(S.p);
        free(pos);
        free(S.b);
        free(S.keys);
        return rc;
    }
    int interrupted = event_loop(&S, pos, mode, err);
    wind_down(&S, interrupted);
    signals_restore(&old);
    prog_free(S.p);
    /* back to full durability; this flushes what the build (and its
     * workers, which share the data file) committed */
    int sync_rc = store_set_sync_mode(s, STORE_SYNC_FULL, &serr);
    free(pos);
    sched_release(&S);
    if (interrupted)
        return flow_fail(err, FLOW_E_INTERRUPTED, "interrupted: running nodes were stopped "
                         "and nothing partial was stored; run the build again to resume");
    if (res->failed)
        return flow_fail(err, FLOW_E_STAGE, "%d node%s failed", res->failed,
                         res->failed == 1 ? "" : "s");
    if (sync_rc)
        return flow_fail(err, sync_rc, "syncing the cache to disk: %s", serr.msg);
    return 0;
}
