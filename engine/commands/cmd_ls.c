/* cmd_ls.c — `flow ls [--json]`: every artifact in the cache, oldest first:
 * key, node, stage, raw and stored size, date, duration, CPU time, peak
 * memory (from the metadata the worker recorded). */
#include "commands.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct row {
    flow_hash key;
    int64_t created;
    uint64_t raw, stored;
    char *meta;
} row;

typedef struct rows { row *r; int n, cap; } rows;

static int collect(const store_artifact *a, void *arg)
{
    rows *rs = arg;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? 2 * rs->cap : 64;
        rs->r = xrealloc(rs->r, (size_t)rs->cap * sizeof *rs->r);
    }
    row *r = &rs->r[rs->n++];
    r->key = a->key;
    r->created = a->created;
    r->raw = a->raw_size;
    r->stored = a->stored_size;
    r->meta = a->meta_json ? xstrdup(a->meta_json) : NULL;
    return 0;
}

static int by_date(const void *x, const void *y)
{
    const row *a = x, *b = y;
    if (a->created != b->created) return a->created < b->created ? -1 : 1;
    return memcmp(a->key.b, b->key.b, 16);
}

int cmd_ls(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "cache json", &a);
    if (!rc && a.npos) rc = cli_usage_error("ls: usage: flow ls [--cache DIR] [--json]");
    flow_store *s = NULL;
    flow_err err;
    char *dir = NULL;
    rows rs = { NULL, 0, 0 };
    if (!rc) rc = cli_open_cache(&a, &dir, &s);
    if (!rc && store_foreach(s, collect, &rs, &err)) rc = cli_fail(&err);
    if (!rc) {
        if (rs.n) qsort(rs.r, (size_t)rs.n, sizeof *rs.r, by_date);
        flow_buf out;
        buf_init(&out);
        if (a.json) buf_addc(&out, '[');
        else buf_printf(&out, "%-12s  %-16s %-10s %7s %7s  %-16s %8s %8s %7s\n", "KEY", "NODE", "STAGE",
                        "RAW", "STORED", "DATE", "TIME", "CPU", "MEM");
        uint64_t traw = 0, tstored = 0;
        for (int i = 0; i < rs.n; i++) {
            row *r = &rs.r[i];
            json_value *m = NULL;
            if (r->meta) (void)json_parse(r->meta, strlen(r->meta), NULL, &m, &err);
            const char *node = json_str(json_get(m, "node"), "?");
            const char *stage = json_str(json_get(m, "stage"), "?");
            double dur = json_num(json_get(m, "duration_s"), -1);
            double cpu = json_num(json_get(m, "cpu_s"), -1);
            double rss = json_num(json_get(m, "peak_rss_kb"), -1);
            char hex[33], date[32];
            flow_hash_hex(&r->key, hex);
            time_t t = (time_t)r->created;
            struct tm tm;
            localtime_r(&t, &tm);
            strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
            traw += r->raw;
            tstored += r->stored;
            if (a.json) {
                buf_printf(&out, "%s\n{\"key\":\"%s\",\"node\":", i ? "," : "", hex);
                buf_json_str(&out, node, strlen(node));
                buf_adds(&out, ",\"stage\":");
                buf_json_str(&out, stage, strlen(stage));
                buf_printf(&out, ",\"raw_size\":%llu,\"stored_size\":%llu,\"created\":%lld,\"duration_s\":",
                           (unsigned long long)r->raw, (unsigned long long)r->stored, (long long)r->created);
                buf_json_num(&out, dur);
                buf_adds(&out, ",\"cpu_s\":");
                buf_json_num(&out, cpu);
                buf_adds(&out, ",\"peak_rss_kb\":");
                buf_json_num(&out, rss);
                buf_addc(&out, '}');
            } else {
                char raw[16], st[16], mem[16], d[16] = "-", c[16] = "-";
                cli_human_size(r->raw, raw);
                cli_human_size(r->stored, st);
                if (rss >= 0) cli_human_size((uint64_t)(rss * 1024), mem); else snprintf(mem, sizeof mem, "-");
                if (dur >= 0) snprintf(d, sizeof d, "%.2fs", dur);
                if (cpu >= 0) snprintf(c, sizeof c, "%.2fs", cpu);
                buf_printf(&out, "%.12s  %-16s %-10s %7s %7s  %-16s %8s %8s %7s\n", hex, node, stage, raw, st,
                           date, d, c, mem);
            }
            json_free(m);
        }
        if (a.json) buf_adds(&out, "\n]\n");
        else {
            char raw[16], st[16];
            cli_human_size(traw, raw);
            cli_human_size(tstored, st);
            buf_printf(&out, "%d artifacts, %s raw, %s stored (chunks shared between artifacts "
                       "are counted in each)\n", rs.n, raw, st);
        }
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        buf_release(&out);
    }
    for (int i = 0; i < rs.n; i++) free(rs.r[i].meta);
    free(rs.r);
    if (s) store_close(s);
    free(dir);
    cli_args_release(&a);
    return rc;
}
