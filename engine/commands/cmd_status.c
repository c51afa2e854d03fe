/* cmd_status.c — `flow status GRAPH [--set ...] [--json]`: each node up to
 * date or stale, with the first reason (a changed parameter or input, a
 * stage version, never built, or an upstream node that is stale). */
#include "commands.h"

#include <stdlib.h>
#include <string.h>

int cmd_status(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "set cache json", &a);
    if (!rc && a.npos != 1) rc = cli_usage_error("status: usage: flow status GRAPH [--set ...] [--json]");
    /* --json: errors are a JSON event on stdout too */
    cli_state st;
    memset(&st, 0, sizeof st);
    if (!rc) rc = cli_state_load(&st, &a, a.pos[0], a.json ? cli_fail_json : cli_fail);
    flow_graph *g = st.g;
    flow_store *s = st.s;
    flow_hash *keys = st.keys;
    char *known = st.known, *built = st.built, **desc = st.desc;
    if (!rc) {
        flow_buf out;
        buf_init(&out);
        int w = 4, nstale = 0;
        for (int i = 0; i < g->n; i++)
            if ((int)strlen(g->nodes[i].name) > w) w = (int)strlen(g->nodes[i].name);
        if (a.json) buf_addc(&out, '[');
        for (int t = 0; t < g->n; t++) {
            int i = g->topo[t];
            const graph_node *nd = &g->nodes[i];
            char hex[33] = "";
            flow_buf reason;
            buf_init(&reason);
            if (known[i]) flow_hash_hex(&keys[i], hex);
            if (!built[i]) {
                nstale++;
                if (desc[i] && desc[i][0] == '!') {
                    buf_printf(&reason, "error: %s", desc[i] + 1);
                } else if (!known[i]) {
                    for (int k = 0; k < nd->ndeps; k++)
                        if (!built[nd->deps[k]]) {
                            buf_printf(&reason, "upstream %s is stale", g->nodes[nd->deps[k]].name);
                            break;
                        }
                } else {
                    flow_hash last;
                    char **ch;
                    int nch, lb = cli_last_build(g, s, i, desc[i], &last, &ch, &nch);
                    if (lb == 0) buf_adds(&reason, "never built");
                    else if (lb == 2) buf_adds(&reason, "its last build is no longer in the cache");
                    else if (nch == 0) buf_adds(&reason, "key changed");
                    else buf_printf(&reason, "%s%s", ch[0], nch > 1 ? " (and more: flow why)" : "");
                    cli_free_strings(ch, nch);
                }
            }
            if (a.json) {
                buf_adds(&out, t ? ",\n{\"node\":" : "\n{\"node\":");
                buf_json_str(&out, nd->name, strlen(nd->name));
                buf_printf(&out, ",\"stage\":\"%s\",\"state\":\"%s\",\"key\":", nd->stage->name,
                           built[i] ? "fresh" : "stale");
                if (known[i]) buf_printf(&out, "\"%s\"", hex); else buf_adds(&out, "null");
                buf_adds(&out, ",\"reason\":");
                if (reason.len) buf_json_str(&out, reason.data, reason.len); else buf_adds(&out, "null");
                buf_addc(&out, '}');
            } else if (built[i]) {
                buf_printf(&out, "%-*s  up to date  %.12s\n", w, nd->name, hex);
            } else {
                buf_printf(&out, "%-*s  stale       %s\n", w, nd->name, reason.data);
            }
            buf_release(&reason);
        }
        if (a.json) buf_adds(&out, "\n]\n");
        else buf_printf(&out, "%d of %d nodes up to date\n", g->n - nstale, g->n);
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        buf_release(&out);
    }
    cli_state_release(&st);
    cli_args_release(&a);
    return rc;
}
