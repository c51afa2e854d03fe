/* cmd_cat.c — `flow cat HASH [PART] [-o FILE]`: a part's raw bytes (each
 * chunk verified on read); without PART, the list of parts. */
#include "commands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cmd_cat(int argc, char **argv)
{
    cli_args a;
    flow_store *s = NULL;
    flow_hash key;
    flow_err err;
    int rc = cli_parse(argc, argv, "cache out", &a);
    if (!rc && a.npos > 2) rc = cli_usage_error("cat: usage: flow cat HASH [PART] [-o FILE]");
    if (!rc) rc = cli_open_artifact(&a, "cat", &s, &key);
    store_artifact *art = NULL;
    if (!rc && store_get(s, &key, &art, &err)) rc = cli_fail(&err);
    if (!rc && a.npos == 1) {
        for (int i = 0; i < art->nparts; i++)
            printf("%12llu  %s\n", (unsigned long long)art->parts[i].size, art->parts[i].name);
    } else if (!rc) {
        const char *part = a.pos[1];
        int found = 0;
        for (int i = 0; i < art->nparts; i++) found |= !strcmp(art->parts[i].name, part);
        if (!found) {
            fprintf(stderr, "flow: error: artifact %s has no part '%s'; its parts are:\n", a.pos[0], part);
            for (int i = 0; i < art->nparts && i < 20; i++) fprintf(stderr, "  %s\n", art->parts[i].name);
            if (art->nparts > 20) fprintf(stderr, "  ... (%d more: flow cat %s)\n", art->nparts - 20, a.pos[0]);
            rc = 2;
        }
        FILE *f = NULL;
        if (!rc) {
            f = a.out ? fopen(a.out, "wb") : stdout;
            if (!f) rc = cli_usage_error("cat: cannot write '%s': %s", a.out, strerror(errno));
        }
        store_reader *r = NULL;
        if (!rc && store_reader_open(s, &key, part, &r, &err)) rc = cli_fail(&err);
        if (!rc) {
            static char buf[1 << 16];
            long long n;
            while ((n = store_reader_read(r, buf, sizeof buf, &err)) > 0)
                if (fwrite(buf, 1, (size_t)n, f) != (size_t)n) {
                    rc = cli_usage_error("cat: write failed: %s", strerror(errno));
                    break;
                }
            if (n < 0) rc = cli_fail(&err);
        }
        store_reader_free(r);
        if (f && f != stdout && fclose(f) != 0 && !rc) rc = cli_usage_error("cat: cannot write '%s'", a.out);
        if (f == stdout) fflush(stdout);
    }
    store_artifact_free(art);
    if (s) store_close(s);
    cli_args_release(&a);
    return rc;
}
