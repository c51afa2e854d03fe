/* report.h — the `report` stage (stages/report/): every model variant of
 * a graph side by side on the test split, the seed's gates, and a page of
 * plots.  Internal header shared by
 *   report.c       the stage: loads and scores the models, gates, timings
 *   report_out.c   report.md and report.json (the deterministic parts)
 *   report_html.c  report.html (tables + SVG plots, with the timings)
 *   curves.c       loss_curve.tsv / dev_curve.tsv of the training nodes
 *   svg.c          the SVG writer (svg.h)
 *
 * ---- outputs ------------------------------------------------------------
 *   report.md     the table and the gates (Markdown).  Deterministic.
 *   report.json   {"format":"flow-report","version":1, "test":{...},
 *                 "teacher", "final", "best", "variants":[...],
 *                 "gates":{"mode","results":[...]}, "curves":[...],
 *                 "volatile_parts":[...]}.  Deterministic.
 *   report.html   a self-contained page (inline CSS and SVG, no script,
 *                 no external reference).  VOLATILE: it shows the timings,
 *                 labelled with host, date and threads.
 *   timings.json  {"host","date","threads","models":[{"name",
 *                 "latency_ms_b1","throughput_b32"}]}.  VOLATILE.
 * The volatile parts are listed in REPORT_VOLATILE_PARTS and in
 * report.json's "volatile_parts"; determinism tests skip exactly those.
 * Timings are also metrics ("<model>.latency_ms_b1", "<model>.
 * throughput_b32"); the other metrics (accuracy, macro-F1, KL, ...) are
 * functions of the key like the deterministic parts.
 */
#ifndef FLOW_REPORT_H
#define FLOW_REPORT_H

#include "stages/model/classifier.h"

#define REPORT_FORMAT "flow-report"
#define REPORT_VERSION 1
/* Parts whose bytes are not a function of the node key (timings). */
#define REPORT_VOLATILE_PARTS { "report.html", "timings.json" }
#define REPORT_NVOLATILE 2

/* One model variant (a row of the table). */
typedef struct rp_variant {
    char name[128];             /* producing node */
    char kind[32];              /* model kind (tfidf-linear, bert-cls, ...) */
    int is_teacher, is_final;
    uint64_t params, bytes;     /* logical weights; bytes of part `weights` */
    double bits_per_weight;     /* 8 * bytes / params */
    double compression;         /* teacher bytes / bytes (NAN: no teacher) */
    clf_metrics m;              /* on the test split, class ids of rp_report */
    double acc_delta, f1_delta; /* minus the teacher's (NAN: no teacher) */
    double kl;                  /* mean KL(teacher || variant), nats (NAN: n/a) */
    double agreement;           /* share of units with the teacher's top-1 */
    /* volatile */
    double latency_ms_b1;       /* median over the timing units (NAN: off) */
    double throughput_b32;      /* units per second at batch 32 */
} rp_variant;

/* A training node's curves (curves.c). */
typedef struct rp_curve {
    char node[128];
    int nloss;                  /* loss_curve.tsv rows */
    double *step, *loss;
    int ndev, ndevcols;         /* dev_curve.tsv rows, value columns */
    double *dev_step;           /* [ndev] */
    double *dev;                /* [ndevcols][ndev] */
    char **devcol;              /* column names */
} rp_curve;

typedef enum { GATE_PASS, GATE_FAIL, GATE_SKIPPED } rp_gate_status;

typedef struct rp_gate {
    const char *name;           /* "coverage", "size", "accuracy_drop" */
    rp_gate_status status;
    double value, lo, hi;       /* the measured value and its bounds (NAN: none) */
    char detail[512];           /* what was measured, and by how much it misses */
} rp_gate;

#define RP_NGATES 3

typedef struct rp_report {
    int nclasses;
    char **classes;             /* test labels, then model labels it lacks */
    size_t units;               /* labelled test units */
    int nv;
    rp_variant *v;
    int teacher, final, best;   /* indices into v (teacher -1: none) */
    int nc;
    rp_curve *c;
    rp_gate gates[RP_NGATES];
    int warn;                   /* gates = warn */
    /* volatile */
    char host[256], date[64];
    int threads;
} rp_report;

/* Gates of r that failed. */
static inline int rp_gates_failed(const rp_report *r)
{
    int n = 0;
    for (int g = 0; g < RP_NGATES; g++) n += r->gates[g].status == GATE_FAIL;
    return n;
}

/* curves.c: reads loss_curve.tsv (step, loss, ...) and dev_curve.tsv
 * (step, value columns; an optional header line names them) of input
 * `training` idx.  A node with neither part fails the report node. */
int rp_curve_read(flow_ctx *c, int idx, rp_curve *out);
void rp_curve_release(rp_curve *cv);

/* report_out.c */
void rp_write_md(const rp_report *r, flow_buf *b);
void rp_write_json(const rp_report *r, flow_buf *b);
void rp_write_timings(const rp_report *r, flow_buf *b);
/* The table as plain text (the build's closing table, `flow report`). */
void rp_write_table(const rp_report *r, flow_buf *b);
/* "1.5 MB" style. */
void rp_bytes(uint64_t n, char *out, size_t cap);

/* report_html.c */
void rp_write_html(const rp_report *r, flow_buf *b);

#endif
