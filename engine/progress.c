/* progress.c — how `flow build` shows what it does.
 *
 * Three modes, chosen by build.c from the options:
 *   PROG_LIVE   a terminal: one finished line per node scrolls up; below
 *               it one live line per running node (elapsed, fraction,
 *               the stage's status text, ETA) and a footer done/total,
 *               redrawn in place a few times a second;
 *   PROG_PLAIN  not a terminal: plain timestamped lines, one per event,
 *               no control characters (progress at most every 10 s a node);
 *   PROG_JSON   newline-delimited JSON events on `out`, ending with a
 *               summary object; free-form messages go to stderr.
 * Failure messages and log tails go to stderr in the human modes.
 */
#include "sched.h"

#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

typedef struct last_print {
    const char *name;
    double t;
} last_print;

struct prog {
    prog_mode mode;
    FILE *out;
    int total, done;
    int live_lines;         /* lines of the live area currently on screen */
    double last_draw;
    last_print *lp; int nlp;
};

prog *prog_new(prog_mode mode, FILE *out, int total)
{
    prog *p = xcalloc(1, sizeof *p);
    p->mode = mode;
    p->out = out;
    p->total = total;
    return p;
}

void prog_free(prog *p)
{
    if (!p) return;
    free(p->lp);
    free(p);
}

static void stamp(char out[16])
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 16, "%H:%M:%S", &tm);
}

static void fmt_dur(double s, char *out, size_t cap)
{
    if (s < 0) s = 0;
    if (s < 10) snprintf(out, cap, "%.2fs", s);
    else if (s < 60) snprintf(out, cap, "%.1fs", s);
    else if (s < 3600) snprintf(out, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* Replaces control characters so plain output stays plain. */
static void clean(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

static void erase_live(prog *p)
{
    if (p->mode != PROG_LIVE || !p->live_lines) return;
    for (int i = 0; i < p->live_lines; i++) fputs("\033[1A\033[2K", p->out);
    fputs("\r", p->out);
    p->live_lines = 0;
    p->last_draw = 0;   /* redraw at the next tick */
}

static void json_kv_str(flow_buf *b, const char *k, const char *v)
{
    buf_printf(b, ",\"%s\":", k);
    if (v) buf_json_str(b, v, strlen(v));
    else buf_adds(b, "null");
}

static void json_emit(prog *p, flow_buf *b)
{
    buf_adds(b, "}\n");
    fwrite(b->data, 1, b->len, p->out);
    fflush(p->out);
    buf_release(b);
}

static void json_head(flow_buf *b, const char *event, const char *node)
{
    buf_init(b);
    buf_printf(b, "{\"event\":\"%s\",\"time\":%.3f", event, sched_now());
    json_kv_str(b, "node", node);
}

static void json_gpus(flow_buf *b, const int *g, int n)
{
    buf_adds(b, ",\"gpus\":[");
    for (int i = 0; i < n; i++) buf_printf(b, i ? ",%d" : "%d", g[i]);
    buf_addc(b, ']');
}

void prog_started(prog *p, const prog_node *n)
{
    if (p->mode == PROG_JSON) {
        flow_buf b;
        json_head(&b, "started", n->name);
        json_kv_str(&b, "stage", n->stage);
        json_kv_str(&b, "key", n->key[0] ? n->key : NULL);
        buf_printf(&b, ",\"threads\":%d", n->threads);
        json_gpus(&b, n->gpus, n->ngpus);
        json_emit(p, &b);
    } else if (p->mode == PROG_PLAIN) {
        char ts[16], gp[64] = "";
        stamp(ts);
        if (n->ngpus) snprintf(gp, sizeof gp, ", %d GPU%s", n->ngpus, n->ngpus > 1 ? "s" : "");
        fprintf(p->out, "%s started %s (%s, %d thread%s%s)\n", ts, n->name, n->stage,
                n->threads, n->threads == 1 ? "" : "s", gp);
        fflush(p->out);
    }
}

static double eta_of(const prog_node *n, double now)
{
    if (n->fraction <= 0.001 || n->fraction > 1) return -1;
    double el = now - n->start;
    return el * (1 - n->fraction) / n->fraction;
}

void prog_progress(prog *p, const prog_node *n)
{
    double now = sched_now();
    if (p->mode == PROG_JSON) {
        flow_buf b;
        json_head(&b, "progress", n->name);
        buf_adds(&b, ",\"fraction\":");
        if (n->fraction >= 0) buf_json_num(&b, n->fraction);
        else buf_adds(&b, "null");
        json_kv_str(&b, "status", n->status);
        buf_printf(&b, ",\"elapsed_s\":%.3f,\"eta_s\":", now - n->start);
        double eta = eta_of(n, now);
        if (eta >= 0) buf_json_num(&b, eta);
        else buf_adds(&b, "null");
        json_emit(p, &b);
    } else if (p->mode == PROG_PLAIN) {
        int k;
        for (k = 0; k < p->nlp && p->lp[k].name != n->name; k++) {}
        if (k == p->nlp) {
            p->lp = xrealloc(p->lp, (size_t)(p->nlp + 1) * sizeof *p->lp);
            p->lp[p->nlp++] = (last_print){n->name, 0};
        }
        if (now - p->lp[k].t < 10 && n->fraction < 1) return;
        p->lp[k].t = now;
        char ts[16], line[700], pct[16] = "", eta[32] = "";
        stamp(ts);
        if (n->fraction >= 0) snprintf(pct, sizeof pct, " %3.0f%%", 100 * n->fraction);
        double e = eta_of(n, now);
        if (e >= 0) {
            char d[16];
            fmt_dur(e, d, sizeof d);
            snprintf(eta, sizeof eta, "  ETA %s", d);
        }
        snprintf(line, sizeof line, "%s progress %s%s  %s%s", ts, n->name, pct,
                 n->status ? n->status : "", eta);
        clean(line);
        fprintf(p->out, "%s\n", line);
        fflush(p->out);
    }
    /* live: drawn by prog_tick */
}

void prog_finished(prog *p, const prog_node *running, const prog_finish *f)
{
    (void)running;
    p->done++;
    if (p->mode == PROG_JSON) {
        flow_buf b;
        json_head(&b, "finished", f->name);
        json_kv_str(&b, "stage", f->stage);
        const char *st = strcmp(f->status, "FAILED") == 0 ? "failed" : f->status;
        json_kv_str(&b, "status", st);
        json_kv_str(&b, "key", f->key);
        buf_adds(&b, ",\"duration_s\":");
        buf_json_num(&b, f->duration_s);
        buf_adds(&b, ",\"run_s\":");
        buf_json_num(&b, f->run_s);
        buf_adds(&b, ",\"cpu_s\":");
        buf_json_num(&b, f->cpu_s);
        buf_printf(&b, ",\"peak_rss_kb\":%ld,\"metrics\":%s", f->peak_rss_kb,
                   f->metrics ? f->metrics : "{}");
        if (f->error) json_kv_str(&b, "error", f->error);
        if (f->log_tail) json_kv_str(&b, "log_tail", f->log_tail);
        if (f->reason) json_kv_str(&b, "reason", f->reason);
        if (f->built_s > 0) {
            buf_adds(&b, ",\"built_s\":");
            buf_json_num(&b, f->built_s);
        }
        json_emit(p, &b);
        return;
    }
    erase_live(p);
    char ts[16] = "", key[16] = "", dur[16] = "", line[800];
    if (p->mode == PROG_PLAIN) stamp(ts);
    if (f->key) snprintf(key, sizeof key, "%.12s", f->key);
    char col[48] = "";      /* duration column: this run's, or a cached node's original build */
    if (strcmp(f->status, "ran") == 0 || strcmp(f->status, "FAILED") == 0) {
        fmt_dur(f->duration_s, dur, sizeof dur);
        snprintf(col, sizeof col, "%s", dur);
    } else if (f->built_s > 0) {
        fmt_dur(f->built_s, dur, sizeof dur);
        snprintf(col, sizeof col, "(built in %s)", dur);
    }
    snprintf(line, sizeof line, "%s%s%-7s %-24s %-12s %8s%s%s", ts, ts[0] ? " " : "",
             f->status, f->name, key, col, f->reason ? "  " : "", f->reason ? f->reason : "");
    clean(line);
    /* trailing blanks of the fixed-width columns */
    size_t l = strlen(line);
    while (l > 0 && line[l - 1] == ' ') line[--l] = 0;
    fprintf(p->out, "%s\n", line);
    fflush(p->out);
    if (f->error || f->log_tail) {
        if (f->error) fprintf(stderr, "error: %s\n", f->error);
        if (f->log_tail && *f->log_tail) {
            fprintf(stderr, "  last lines of its log:\n");
            const char *s = f->log_tail;
            while (*s) {
                const char *nl = strchr(s, '\n');
                int k = nl ? (int)(nl - s) : (int)strlen(s);
                fprintf(stderr, "  | %.*s\n", k, s);
                s += k + (nl ? 1 : 0);
            }
        }
        fflush(stderr);
    }
}

static int term_width(prog *p)
{
    struct winsize ws;
    if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
    return 100;
}

/* Cuts s to at most w display columns (counting UTF-8 code points). */
static void fit(char *s, int w)
{
    int cols = 0;
    for (char *q = s; *q; q++) {
        if (((unsigned char)*q & 0xc0) == 0x80) continue;
        if (cols++ == w) {
            *q = 0;
            return;
        }
    }
}

void prog_tick(prog *p, const prog_node *const *running, int n)
{
    if (p->mode != PROG_LIVE) return;
    double now = sched_now();
    if (p->last_draw && now - p->last_draw < 0.1) return;
    erase_live(p);
    p->last_draw = now;
    int w = term_width(p) - 1;
    int shown = n > 20 ? 20 : n;
    for (int i = 0; i < shown; i++) {
        const prog_node *x = running[i];
        char el[16], pct[16] = "", eta[32] = "", line[1024];
        fmt_dur(now - x->start, el, sizeof el);
        if (x->fraction >= 0) snprintf(pct, sizeof pct, "%3.0f%%", 100 * x->fraction);
        double e = eta_of(x, now);
        if (e >= 0) {
            char d[16];
            fmt_dur(e, d, sizeof d);
            snprintf(eta, sizeof eta, "  ETA %s", d);
        }
        snprintf(line, sizeof line, "  %-16s %7s %4s  %s%s", x->name, el, pct,
                 x->status ? x->status : "", eta);
        clean(line);
        fit(line, w);
        fprintf(p->out, "\033[2K%s\n", line);
    }
    if (n > shown) fprintf(p->out, "\033[2K  ... and %d more\n", n - shown);
    fprintf(p->out, "\033[2K[%d/%d] %d running\n", p->done, p->total, n);
    p->live_lines = shown + (n > shown) + 1;
    fflush(p->out);
}

void prog_message(prog *p, const char *text)
{
    if (p->mode == PROG_JSON) {
        fprintf(stderr, "%s\n", text);
        return;
    }
    erase_live(p);
    fprintf(p->out, "%s\n", text);
    fflush(p->out);
}

void prog_summary(prog *p, const build_result *r, int interrupted)
{
    if (p->mode == PROG_JSON) {
        flow_buf b;
        buf_init(&b);
        buf_printf(&b, "{\"event\":\"summary\",\"ran\":%d,\"cached\":%d,\"failed\":%d,"
                   "\"skipped\":%d,\"seconds\":", r->ran, r->cached, r->failed, r->skipped);
        buf_json_num(&b, r->seconds);
        buf_printf(&b, ",\"interrupted\":%s", interrupted ? "true" : "false");
        json_emit(p, &b);
        return;
    }
    erase_live(p);
    char d[16];
    fmt_dur(r->seconds, d, sizeof d);
    fprintf(p->out, "flow: %d ran, %d cached, %d failed, %d skipped in %s%s\n", r->ran,
            r->cached, r->failed, r->skipped, d, interrupted ? " (interrupted)" : "");
    fflush(p->out);
}
