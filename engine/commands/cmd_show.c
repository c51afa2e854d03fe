/* cmd_show.c — `flow show HASH` (an artifact's parts and metadata, pretty)
 * and `flow log HASH` (the stored log of the run that made it).  An
 * artifact may have 500k parts (a source of one file per document): show
 * lists the first SHOW_PARTS and says how many more, --parts lists all. */
#include "commands.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHOW_PARTS 20

int cmd_show(int argc, char **argv)
{
    cli_args a;
    flow_store *s = NULL;
    flow_hash key;
    int rc = cli_parse(argc, argv, "cache json parts", &a);
    if (!rc && a.npos > 1) rc = cli_usage_error("show: usage: flow show HASH [--parts] [--json]");
    if (!rc) rc = cli_open_artifact(&a, "show", &s, &key);
    store_artifact *art = NULL;
    flow_err err;
    if (!rc && store_get(s, &key, &art, &err)) rc = cli_fail(&err);
    if (!rc) {
        json_value *m = NULL;
        int bad = art->meta_json ? json_parse(art->meta_json, strlen(art->meta_json), "metadata", &m, &err) : 0;
        if (a.json) {
            printf("%s\n", art->meta_json ? art->meta_json : "null");
        } else {
            char hex[33], date[32], raw[16], st[16];
            flow_hash_hex(&art->key, hex);
            time_t t = (time_t)art->created;
            struct tm tm;
            localtime_r(&t, &tm);
            strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
            cli_human_size(art->raw_size, raw);
            cli_human_size(art->stored_size, st);
            printf("artifact %s\nnode     %s (stage %s, version %g)\ncreated  %s\nsize     %s raw, %s stored\n",
                   hex, json_str(json_get(m, "node"), "?"), json_str(json_get(m, "stage"), "?"),
                   json_num(json_get(m, "version"), 0), date, raw, st);
            printf("parts    %d\n", art->nparts);
            int shown = a.parts || art->nparts <= SHOW_PARTS + 1 ? art->nparts : SHOW_PARTS;
            for (int i = 0; i < shown; i++) {
                cli_human_size(art->parts[i].size, raw);
                cli_human_size(art->parts[i].stored, st);
                printf("  %8s %8s  %s\n", raw, st, art->parts[i].name);
            }
            if (shown < art->nparts)
                printf("  ... and %d more parts (flow show %.12s --parts lists them all)\n",
                       art->nparts - shown, hex);
            if (bad) {
                printf("metadata (unreadable: %s):\n%s\n", err.msg, art->meta_json);
            } else if (m) {
                const char *report = json_str(json_get(m, "report"), NULL);
                flow_buf b;
                buf_init(&b);
                json_write(&b, m, 2);
                printf("metadata:\n%s\n", b.data);
                buf_release(&b);
                if (report && *report) printf("report:\n%s%s", report,
                                              report[strlen(report) - 1] == '\n' ? "" : "\n");
            }
        }
        json_free(m);
    }
    store_artifact_free(art);
    if (s) store_close(s);
    cli_args_release(&a);
    return rc;
}

int cmd_log(int argc, char **argv)
{
    cli_args a;
    flow_store *s = NULL;
    flow_hash key;
    int rc = cli_parse(argc, argv, "cache", &a);
    if (!rc && a.npos > 1) rc = cli_usage_error("log: usage: flow log HASH");
    if (!rc) rc = cli_open_artifact(&a, "log", &s, &key);
    char *log = NULL;
    size_t len = 0;
    flow_err err;
    if (!rc && store_get_log(s, &key, &log, &len, &err)) rc = cli_fail(&err);
    if (!rc && len) fwrite(log, 1, len, stdout);
    free(log);
    if (s) store_close(s);
    cli_args_release(&a);
    return rc;
}
