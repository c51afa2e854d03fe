/* sched.h — private to the scheduler: what build.c, worker.c and
 * progress.c share (not part of the engine's contract in internal.h).
 *
 *   build.c     decides what runs where and when (keys, cache hits,
 *               resources, leases, failures, Ctrl-C)
 *   worker.c    forks one worker per node; the child runs the stage and
 *               commits the artifact through its own flow_store; it talks
 *               back over two pipes: framed messages (progress, error,
 *               metrics, report, done) and raw stdout/stderr text
 *   progress.c  shows it: live terminal lines, plain lines or JSON events
 */
#ifndef FLOW_SCHED_H
#define FLOW_SCHED_H

#include "internal.h"

#include <sys/types.h>

/* ---- worker <-> scheduler messages ------------------------------------
 * A frame is [type u8][len u32 little-endian][len bytes], written with one
 * write() of at most WMSG_MAX bytes so frames never interleave or tear.
 * Longer payloads of types E, M, R are sent as several frames that the
 * reader appends. */
enum {
    WMSG_PROGRESS = 'P',    /* "%.6f <status text>" — replaces the previous */
    WMSG_ERROR = 'E',       /* failure message (node-prefixed) */
    WMSG_METRICS = 'M',     /* JSON object text of the metrics */
    WMSG_REPORT = 'R',      /* report text */
    WMSG_DONE = 'D',        /* "%.6f %.6f %ld %.6f %d": duration_s cpu_s
                             * peak_rss_kb run_s (inside the stage's run)
                             * reuse (1: the worker waits for another job);
                             * sent after the artifact was committed */
};
#define WMSG_MAX 4096
#define WMSG_HDR 5

/* What a worker needs for its first node; lives in the parent's memory,
 * which the child inherits through fork (later nodes come as jobs). */
typedef struct worker_spec {
    const flow_graph *g;
    int node;
    const char *store_dir;
    const store_options *store_opt;
    flow_hash key;
    const flow_hash *keys;      /* keys[j] valid for every dep j of node */
    const char *key_desc;       /* node_key_describe text */
    int threads;
    const int *gpu_ids; int ngpus;
    int verbose;
    const int *close_fds; int nclose;   /* parent fds the child must close */
} worker_spec;

/* Forks a worker that runs spec's node first.  On success *pid is the
 * child (leader of its own process group, so kill(-pid) reaches what it
 * spawns), *msg_fd and *out_fd are the non-blocking, close-on-exec read
 * ends of its message pipe and of its stdout/stderr, *cmd_fd the write end
 * of its job pipe.  After a quick, successful, CPU-only node the worker
 * says so (the reuse flag of its D message) and waits for another job on
 * cmd_fd (worker_send_job); closing cmd_fd makes it exit.  After anything
 * else it exits, so nothing heavy carries over between nodes. */
int worker_spawn(const worker_spec *spec, pid_t *pid, int *msg_fd, int *out_fd, int *cmd_fd,
                 flow_err *err);
/* Gives a waiting worker its next node; -1 if it is gone. */
int worker_send_job(int cmd_fd, const worker_spec *spec);

/* Sends one message (split into frames) on fd; used by the worker. */
void wmsg_send(int fd, int type, const void *data, size_t len);

/* Seconds since the epoch, with sub-microsecond resolution. */
double sched_now(void);

/* ---- display (progress.c) ---------------------------------------------- */
typedef enum { PROG_PLAIN, PROG_LIVE, PROG_JSON } prog_mode;

typedef struct prog_node {
    const char *name, *stage;
    char key[33];           /* hex; empty if not known */
    double start;           /* sched_now() when it started */
    double fraction;        /* <0 unknown */
    const char *status;     /* last status text, may be NULL */
    int threads;
    const int *gpus; int ngpus;
} prog_node;

typedef struct prog_finish {
    const char *name, *stage;
    const char *status;     /* "ran", "cached", "FAILED", "skipped" */
    const char *key;        /* hex or NULL */
    double duration_s, cpu_s;
    double run_s;           /* time in the stage's run function (ran only) */
    long peak_rss_kb;
    const char *metrics;    /* JSON object text or NULL */
    const char *error;      /* failure message or NULL */
    const char *log_tail;   /* failed node's last log lines or NULL */
    const char *reason;     /* skipped: why */
    double built_s;         /* cached: duration recorded in the artifact's
                             * metadata (its original build); <= 0 unknown */
} prog_finish;

typedef struct prog prog;
prog *prog_new(prog_mode mode, FILE *out, int total);
void prog_free(prog *p);
void prog_started(prog *p, const prog_node *n);
void prog_progress(prog *p, const prog_node *n);     /* n->fraction/status changed */
void prog_finished(prog *p, const prog_node *running_or_null, const prog_finish *f);
/* Live mode: redraws the running lines (call a few times a second);
 * running[] are the nodes currently running. */
void prog_tick(prog *p, const prog_node *const *running, int n);
void prog_message(prog *p, const char *text);   /* a free-form line (errors) */
void prog_summary(prog *p, const build_result *r, int interrupted);

#endif
