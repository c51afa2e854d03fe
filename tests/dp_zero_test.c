/* dp_zero_test.c — ZeRO-1 (kernels/dp.h, dp_zero.c): the optimizer step
 * sharded over K processes gives the bytes of the unsharded step.
 *   - a model of 5.1 gradient blocks (333k floats), K = 1, 2, 3, 4 forked
 *     processes meeting through a file rendezvous (TCP for K = 3): slices
 *     of 6, 3+2.1, 2+2+1.1 and 2+2+1.1+0 blocks (uneven, the last shorter,
 *     one empty); 4 steps of 7 micro-batch gradients each (values of mixed
 *     magnitude, so a change in the order of any addition shows), clipped
 *     in steps 0 and 2 (max_norm below the norm), not in 1 and 3;
 *   - every rank's params after each step, the norms, and the moments
 *     gathered at the end equal those of one process running the unsharded
 *     reducer + bert_clip_grad_norm + bert_adamw_step, bit for bit; each
 *     rank holds only its slice's moments;
 *   - bert_shard_optimizer keeps the moments both shards hold and refuses
 *     a shard that is not made of whole blocks.
 * Each process computes the reference itself after the fork (libgomp's
 * threads do not survive a fork, so the parent runs no OpenMP region). */
#include "test.h"
#include "kernels/dp.h"

#include <math.h>
#include <sys/wait.h>

enum { STEPS = 4, MICRO = 7 };

static void config(bert_config *c)
{
    bert_config_default(c);
    c->vocab_size = 4000;
    c->hidden = 64;
    c->layers = 2;
    c->max_len = 64;
    flow_err e = { 0 };
    if (bert_config_uniform(c, 2, 128, &e)) { fprintf(stderr, "%s\n", e.msg); exit(2); }
}

/* micro-batch k's gradient in step s */
static void fill(float *x, size_t n, int s, int k)
{
    uint64_t st = 0x5eedu + 104729u * (uint64_t)(s * 64 + k);
    for (size_t i = 0; i < n; i++) {
        double u = (double)(splitmix64_next(&st) >> 11) * 0x1.0p-53;
        x[i] = (float)((u - 0.5) * pow(10.0, (double)(i % 5) - 3));
    }
}

static float max_norm(int s) { return s % 2 == 0 ? 0.05f : 1e9f; }

/* One process of `world` (g NULL: alone), zero or not, STEPS steps; params
 * after step s into out + s * n, norms into norm[s]. */
static int train(dp_group *g, int zero, float *out, float *norm, bert_model **mo, dp_reducer *red,
                 flow_err *e)
{
    bert_config c;
    config(&c);
    bert_model *m;
    int rc = bert_model_new(&c, 1, 8, &bert_device_cpu, &m, e);
    if (rc) return rc;
    if ((rc = bert_init(m, 7, e))) return rc;
    size_t n = m->nparams;
    if ((rc = dp_reducer_init(red, g, n, zero ? BERT_GRAD_BLOCK : 1, e))) return rc;
    if (zero && (rc = dp_zero_shard(red, m, e))) return rc;
    int world = dp_world(g), rank = dp_rank(g);
    float *local = malloc(n * sizeof *local);
    int *present = malloc((size_t)world * sizeof *present);
    bert_adamw hp = { 0.9f, 0.999f, 1e-8f, 0.01f };
    for (int s = 0; s < STEPS && !rc; s++) {
        dp_reducer_begin(red);
        for (int r0 = 0; r0 < MICRO && !rc; r0 += world) {     /* micro-batch r0 + q on rank q */
            for (int q = 0; q < world; q++) present[q] = r0 + q < MICRO;
            if (present[rank]) fill(local, n, s, r0 + rank);
            const float *loc[1] = { local };
            rc = dp_reducer_add(red, loc, present, 1, e);
        }
        if (rc) break;
        float lr = 1e-3f * (float)(s + 1);
        if (zero) {
            rc = dp_reducer_end_shard(red, m->grads, e);
            if (!rc) rc = dp_zero_step(red, m, &hp, lr, max_norm(s), &norm[s], e);
        } else {
            rc = dp_reducer_end(red, m->grads, e);
            norm[s] = bert_clip_grad_norm(m, max_norm(s));
            bert_adamw_step(m, &hp, lr);
        }
        memcpy(out + (size_t)s * n, m->params, n * sizeof *out);
    }
    free(local);
    free(present);
    *mo = m;
    return rc;
}

/* Rank `rank` of `world`: trains sharded and (alone) unsharded, compares. */
static int rank_main(const char *rdv, int rank, int world)
{
    flow_err e = { 0 };
    dp_group *g = NULL;
    if (world > 1 && dp_group_join(rdv, rank, world, "00000000000000000000000000000000", 60, &g, &e)) {
        fprintf(stderr, "rank %d/%d: %s\n", rank, world, e.msg);
        return 1;
    }
    bert_model *zm = NULL, *rm = NULL;
    dp_reducer zr, rr;
    float zn[STEPS], rn[STEPS];
    bert_config c;
    config(&c);
    size_t n = bert_param_count(&c);
    float *zp = malloc(STEPS * n * sizeof *zp), *rp = malloc(STEPS * n * sizeof *rp);
    int bad = 0;
    if (train(g, 1, zp, zn, &zm, &zr, &e) || train(NULL, 0, rp, rn, &rm, &rr, &e)) {
        fprintf(stderr, "rank %d/%d: %s\n", rank, world, e.msg);
        return 1;
    }
    for (int s = 0; s < STEPS; s++) {
        if (memcmp(zp + s * n, rp + s * n, n * sizeof *zp) != 0) {
            size_t i = 0;
            while (zp[s * n + i] == rp[s * n + i]) i++;
            fprintf(stderr, "rank %d/%d: step %d: param %zu is %.9g, unsharded %.9g\n", rank, world, s, i,
                    (double)zp[s * n + i], (double)rp[s * n + i]);
            bad = 1;
        }
        if (memcmp(&zn[s], &rn[s], sizeof zn[s]) != 0) {
            fprintf(stderr, "rank %d/%d: step %d: norm %.9g, unsharded %.9g\n", rank, world, s,
                    (double)zn[s], (double)rn[s]);
            bad = 1;
        }
    }
    if (rn[0] <= max_norm(0) || rn[1] >= max_norm(1)) {
        fprintf(stderr, "the test clips step 0 (norm %g) and not step 1 (%g)\n", (double)rn[0], (double)rn[1]);
        bad = 1;
    }
    size_t lo = dp_slice_lo(&zr, rank), hi = dp_slice_hi(&zr, rank);
    if (zm->opt_lo != lo || zm->opt_hi != hi || hi - lo > (n / BERT_GRAD_BLOCK / world + 1) * BERT_GRAD_BLOCK) {
        fprintf(stderr, "rank %d/%d: optimizer shard [%zu, %zu) of %zu\n", rank, world, zm->opt_lo, zm->opt_hi, n);
        bad = 1;
    }
    float *mm = malloc(2 * n * sizeof *mm);
    if (dp_zero_gather_moments(&zr, zm, mm, mm + n, &e)) {
        fprintf(stderr, "rank %d/%d: %s\n", rank, world, e.msg);
        bad = 1;
    } else if (memcmp(mm, rm->adam_m, n * sizeof *mm) || memcmp(mm + n, rm->adam_v, n * sizeof *mm)) {
        fprintf(stderr, "rank %d/%d: the gathered moments differ from the unsharded ones\n", rank, world);
        bad = 1;
    }
    if (!bad && rank == 0)
        printf("K = %d: slices of %zu floats (%zu blocks), the last [%zu, %zu): same bytes\n", world,
               zr.slice, zr.slice / BERT_GRAD_BLOCK, dp_slice_lo(&zr, world - 1), dp_slice_hi(&zr, world - 1));
    free(mm);
    free(zp);
    free(rp);
    bert_model_free(zm);
    bert_model_free(rm);
    dp_reducer_release(&zr);
    dp_reducer_release(&rr);
    dp_group_free(g);
    return bad;
}

static int forked(const char *rdv, int world)
{
    pid_t pid[8];
    for (int q = 0; q < world; q++) {
        pid[q] = fork();
        if (pid[q] == 0) {
            int bad = rank_main(rdv, q, world);
            fflush(stdout);
            _exit(bad);
        }
    }
    return test_wait_children(pid, world);
}

/* bert_shard_optimizer on its own */
static int shard_checks(void)
{
    bert_config c;
    config(&c);
    bert_model *m;
    flow_err e = { 0 };
    if (bert_model_new(&c, 1, 8, &bert_device_cpu, &m, &e)) return 1;
    int bad = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        m->adam_m[i] = (float)i;
        m->adam_v[i] = (float)(2 * i);
    }
    size_t B = BERT_GRAD_BLOCK;
    bad |= bert_shard_optimizer(m, B, 3 * B, &e) != 0;
    bad |= m->adam_m[0] != (float)B || m->adam_v[2 * B - 1] != (float)(2 * (3 * B - 1));
    bad |= bert_shard_optimizer(m, 2 * B, m->nparams, &e) != 0;    /* keeps [2B, 3B), zeros the rest */
    bad |= m->adam_m[0] != (float)(2 * B) || m->adam_m[B] != 0 || m->opt_hi != m->nparams;
    bad |= bert_shard_optimizer(m, 1, 2 * B, &e) != FLOW_E_PARAM || !strstr(e.msg, "multiples of 65536");
    bad |= bert_shard_optimizer(m, 0, B + 1, &e) != FLOW_E_PARAM;
    bad |= bert_shard_optimizer(m, 2 * B, B, &e) != FLOW_E_PARAM;
    bad |= bert_shard_optimizer(m, m->nparams, m->nparams, &e) != 0;    /* empty: anywhere */
    bad |= bert_shard_optimizer(m, 0, 0, &e) != 0 || m->opt_hi != 0;
    bert_model_free(m);
    return bad;
}

int main(void)
{
    char *dir = test_tmpdir("zero");
    char rdv[4200];
    bert_config c;
    config(&c);
    size_t n = bert_param_count(&c);
    CHECK_MSG(n > 5 * BERT_GRAD_BLOCK && n < 6 * BERT_GRAD_BLOCK, "the model has 5.x blocks (%zu floats)", n);
    for (int world = 1; world <= 4; world++) {
        if (world == 3)
            snprintf(rdv, sizeof rdv, "tcp:127.0.0.1:%d", 10000 + (int)(getpid() % 5000));   /* apart from dp_test's */
        else
            snprintf(rdv, sizeof rdv, "file:%s/rdv%d", dir, world);
        CHECK_MSG(forked(rdv, world) == 0, "K = %d processes, zero: the unsharded bytes", world);
    }
    pid_t p = fork();
    if (p == 0) _exit(shard_checks());
    int st;
    waitpid(p, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "bert_shard_optimizer keeps moments, refuses bad shards");
    free(dir);
    return test_summary("dp_zero_test");
}
