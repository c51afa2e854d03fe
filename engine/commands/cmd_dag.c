/* cmd_dag.c — `flow dag GRAPH [--dot]`: the resolved graph, in build
 * order, with each node's inputs (or Graphviz text with --dot). */
#include "commands.h"

#include <string.h>

static void ref_text(const flow_graph *g, const graph_ref *r, flow_buf *b)
{
    buf_adds(b, g->nodes[r->node].name);
    if (r->output) buf_printf(b, ".%s", r->output);
}

int cmd_dag(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, "set dot", &a);
    if (!rc && a.npos != 1) rc = cli_usage_error("dag: usage: flow dag GRAPH [--dot]");
    flow_registry *reg = NULL;
    flow_graph *g = NULL;
    flow_err err;
    if (!rc && cli_load_graph(a.pos[0], a.sets, a.nsets, &reg, &g, &err)) rc = cli_fail(&err);
    if (!rc) {
        flow_buf b;
        buf_init(&b);
        if (a.dot) {
            buf_adds(&b, "digraph flow {\n  rankdir=LR;\n  node [shape=box];\n");
            for (int t = 0; t < g->n; t++) {
                const graph_node *nd = &g->nodes[g->topo[t]];
                buf_adds(&b, "  ");
                buf_json_str(&b, nd->name, strlen(nd->name));
                buf_printf(&b, " [label=\"%s\\n(%s)\"];\n", nd->name, nd->stage->name);
            }
            for (int t = 0; t < g->n; t++) {
                const graph_node *nd = &g->nodes[g->topo[t]];
                for (int p = 0; p < nd->stage->ninputs; p++)
                    for (int k = 0; k < nd->inputs[p].nrefs; k++) {
                        const graph_ref *r = &nd->inputs[p].refs[k];
                        const char *from = g->nodes[r->node].name;
                        buf_adds(&b, "  ");
                        buf_json_str(&b, from, strlen(from));
                        buf_adds(&b, " -> ");
                        buf_json_str(&b, nd->name, strlen(nd->name));
                        buf_printf(&b, " [label=\"%s%s%s\"];\n", nd->stage->inputs[p].name,
                                   r->output ? " <- ." : "", r->output ? r->output : "");
                    }
            }
            buf_adds(&b, "}\n");
        } else {
            int w = 4;
            for (int i = 0; i < g->n; i++)
                if ((int)strlen(g->nodes[i].name) > w) w = (int)strlen(g->nodes[i].name);
            for (int t = 0; t < g->n; t++) {
                const graph_node *nd = &g->nodes[g->topo[t]];
                buf_printf(&b, "%-*s  %-12s line %d", w, nd->name, nd->stage->name, nd->line);
                int first = 1;
                for (int p = 0; p < nd->stage->ninputs; p++) {
                    int nr = nd->inputs[p].nrefs;
                    if (!nr) continue;
                    buf_adds(&b, first ? "  <- " : ", ");
                    first = 0;
                    buf_printf(&b, "%s=%s", nd->stage->inputs[p].name, nr > 1 ? "[" : "");
                    for (int k = 0; k < nr; k++) {
                        if (k) buf_adds(&b, ", ");
                        ref_text(g, &nd->inputs[p].refs[k], &b);
                    }
                    if (nr > 1) buf_addc(&b, ']');
                }
                buf_addc(&b, '\n');
            }
        }
        fwrite(b.data ? b.data : "", 1, b.len, stdout);
        buf_release(&b);
    }
    graph_free(g);
    registry_free(reg);
    cli_args_release(&a);
    return rc;
}
