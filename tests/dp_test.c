/* dp_test.c — the data-parallel reducer and process group (kernels/dp.h):
 *   - one process: rounds of local buffers (some absent) summed in global
 *     worker order equal a plain sequential fold of the same buffers, bit
 *     for bit, and a fold in another order does differ (so the check can
 *     fail); a step with nothing present gives zeros;
 *   - 3 forked processes x 2 local buffers through a file rendezvous and
 *     3 through a TCP one: every rank gets exactly the one-process sum
 *     (slices of unequal length: n is not a multiple of 3);
 *   - errors: a bad rendezvous string, a peer that never comes (timeout),
 *     a peer training another node (tag, on a TCP rendezvous). */
#include "test.h"
#include "kernels/dp.h"

#include <math.h>
#include <sys/wait.h>

enum { N = 200003, NLOCAL = 2, ROUNDS = 3, WORLD = 3 };

/* worker g's gradient in round r: values of mixed magnitude so that the
 * order of additions shows in the bits */
static void fill(float *x, int r, int g)
{
    uint64_t s = 0x1234u + 7919u * (uint64_t)(r * 64 + g);
    for (size_t i = 0; i < N; i++) {
        double u = (double)(splitmix64_next(&s) >> 11) * 0x1.0p-53;
        x[i] = (float)((u - 0.5) * pow(10.0, (double)(i % 7) - 3));
    }
}

static int absent(int r, int g) { return (r == 1 && g == 2) || (r == 2 && g >= 4); }

/* the reference: a sequential fold in micro-batch order (round, g) */
static void reference(float *out, int W, int reverse)
{
    float *x = malloc(N * sizeof *x);
    int started = 0;
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < W; k++) {
            int g = reverse ? W - 1 - k : k;
            if (absent(r, g)) continue;
            fill(x, r, g);
            for (size_t i = 0; i < N; i++) out[i] = started ? out[i] + x[i] : x[i];
            started = 1;
        }
    free(x);
}

/* rank `rank` of `world` (g NULL: one process with W = nlocal workers) */
static int run_rank(dp_group *g, int nlocal, float *out, flow_err *e)
{
    int world = dp_world(g), rank = dp_rank(g), W = nlocal * world;
    dp_reducer red;
    int rc = dp_reducer_init(&red, g, N, 1, e);
    if (rc) return rc;
    float *loc[8];
    for (int w = 0; w < nlocal; w++) loc[w] = malloc(N * sizeof(float));
    int *present = calloc((size_t)W, sizeof *present);
    dp_reducer_begin(&red);
    for (int r = 0; r < ROUNDS && !rc; r++) {
        for (int w = 0; w < nlocal; w++) {
            for (int q = 0; q < world; q++) present[w * world + q] = !absent(r, w * world + q);
            if (present[w * world + rank]) fill(loc[w], r, w * world + rank);
        }
        rc = dp_reducer_add(&red, (const float *const *)loc, present, nlocal, e);
    }
    if (!rc) rc = dp_reducer_end(&red, out, e);
    for (int w = 0; w < nlocal; w++) free(loc[w]);
    free(present);
    dp_reducer_release(&red);
    return rc;
}

/* forks world ranks meeting at rdv; each compares with ref; returns failures */
static int forked(const char *rdv, int world, const float *ref)
{
    pid_t pid[WORLD];
    for (int q = 0; q < world; q++) {
        pid[q] = fork();
        if (pid[q] == 0) {
            flow_err e = { 0 };
            dp_group *g = NULL;
            float *out = malloc(N * sizeof *out);
            int rc = dp_group_join(rdv, q, world, "0123456789abcdef0123456789abcdef", 60, &g, &e);
            if (!rc) rc = run_rank(g, NLOCAL, out, &e);
            if (rc) fprintf(stderr, "rank %d: %s\n", q, e.msg);
            int same = !rc && memcmp(out, ref, N * sizeof *out) == 0;
            dp_group_free(g);
            free(out);
            _exit(same ? 0 : 1);
        }
    }
    return test_wait_children(pid, world);
}

int main(void)
{
    flow_err e = { 0 };
    float *ref = malloc(N * sizeof *ref), *rev = malloc(N * sizeof *rev), *out = malloc(N * sizeof *out);
    int W = NLOCAL * WORLD;
    char *dir = test_tmpdir("dp");
    char rdv[4200];
    reference(ref, W, 0);
    reference(rev, W, 1);
    CHECK_MSG(memcmp(ref, rev, N * sizeof *ref) != 0, "the order of the fold shows in the bits");

    /* 3 processes x 2 local workers, file and TCP rendezvous (first: libgomp's
     * thread pool does not survive a fork, so the parent forks before any
     * OpenMP region, as flow's scheduler does) */
    snprintf(rdv, sizeof rdv, "file:%s/rdv", dir);
    CHECK_MSG(forked(rdv, WORLD, ref) == 0, "3 processes (file rendezvous) get the one-process sum");
    snprintf(rdv, sizeof rdv, "tcp:127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    CHECK_MSG(forked(rdv, WORLD, ref) == 0, "3 processes (tcp rendezvous) get the one-process sum");

    /* one process with all W workers local */
    CHECK_OK(run_rank(NULL, W, out, &e), e);
    CHECK_MSG(memcmp(out, ref, N * sizeof *out) == 0, "one process, %d local workers: the sequential fold", W);

    /* nothing present: zeros */
    dp_reducer red;
    CHECK_OK(dp_reducer_init(&red, NULL, N, 1, &e), e);
    dp_reducer_begin(&red);
    out[5] = 1;
    int none[2] = { 0, 0 };
    const float *bufs[2] = { ref, ref };
    CHECK_OK(dp_reducer_add(&red, bufs, none, 2, &e), e);
    CHECK_OK(dp_reducer_end(&red, out, &e), e);
    CHECK(out[5] == 0 && out[N - 1] == 0);
    dp_reducer_release(&red);

    /* errors */
    dp_group *g = NULL;
    CHECK(dp_group_join("udp:x", 0, 2, "t", 1, &g, &e) == FLOW_E_PARAM && !g);
    CHECK_CONTAINS(e.msg, "expected file:DIR or tcp:HOST:PORT");
    CHECK(dp_group_join("tcp:host", 0, 2, "t", 1, &g, &e) == FLOW_E_PARAM);
    CHECK(dp_group_join("file:/x", 2, 2, "t", 1, &g, &e) == FLOW_E_PARAM);
    snprintf(rdv, sizeof rdv, "file:%s/lonely", dir);
    CHECK(dp_group_join(rdv, 1, 2, "t", 0.3, &g, &e) == FLOW_E_IO && !g);
    CHECK_CONTAINS(e.msg, "waited 0 s for rank 0's rendezvous file");
    /* (a file rendezvous keeps nodes apart by folder; TCP meets on one port) */
    snprintf(rdv, sizeof rdv, "tcp:127.0.0.1:%d", 20001 + (int)(getpid() % 20000));
    pid_t p = fork();
    if (p == 0) {
        flow_err e2 = { 0 };
        dp_group *g2 = NULL;
        int rc = dp_group_join(rdv, 0, 2, "node-a", 5, &g2, &e2);
        dp_group_free(g2);
        _exit(rc ? 0 : 1);
    }
    CHECK(dp_group_join(rdv, 1, 2, "node-b", 5, &g, &e) != 0 && !g);
    CHECK_CONTAINS(e.msg, "trains node");
    int st;
    waitpid(p, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank 0 refuses a rank training another node");
    free(ref);
    free(rev);
    free(out);
    free(dir);
    return test_summary("dp_test");
}
