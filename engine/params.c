/* params.c — the parameter half of the stage API (flow_param_*).
 *
 * Values were type-checked and defaulted by graph.c, so a lookup can only
 * fail through a programming error in the stage (a name or type that its
 * own declaration does not have): that is a FLOW_BUG, never user input.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const graph_value *param(flow_ctx *c, const char *name, flow_ptype want, int also)
{
    const graph_node *nd = &c->g->nodes[c->node];
    const flow_stage *st = nd->stage;
    for (int k = 0; k < st->nparams; k++)
        if (strcmp(st->params[k].name, name) == 0) {
            const graph_value *v = &nd->params[k];
            if (v->type != want && (int)v->type != also)
                FLOW_BUG("stage '%s': parameter '%s' is declared with another type (%d, asked %d)",
                         st->name, name, (int)v->type, (int)want);
            return v;
        }
    FLOW_BUG("stage '%s' reads parameter '%s' that it does not declare", st->name, name);
}

int64_t flow_param_int(flow_ctx *c, const char *name) { return param(c, name, FLOW_P_INT, -1)->i; }

double flow_param_float(flow_ctx *c, const char *name)
{
    const graph_value *v = param(c, name, FLOW_P_FLOAT, FLOW_P_INT);
    return v->type == FLOW_P_INT ? (double)v->i : v->f;
}

int flow_param_bool(flow_ctx *c, const char *name) { return (int)param(c, name, FLOW_P_BOOL, -1)->i; }

const char *flow_param_str(flow_ctx *c, const char *name)
{
    return param(c, name, FLOW_P_STRING, FLOW_P_PATH)->s;
}

int flow_param_list_len(flow_ctx *c, const char *name)
{
    return param(c, name, FLOW_P_LIST, -1)->nitems;
}

static const graph_value *item(flow_ctx *c, const char *name, int i)
{
    const graph_value *v = param(c, name, FLOW_P_LIST, -1);
    if (i < 0 || i >= v->nitems)
        FLOW_BUG("parameter '%s': list index %d out of 0..%d", name, i, v->nitems - 1);
    return &v->items[i];
}

const char *flow_param_list_str(flow_ctx *c, const char *name, int i)
{
    const graph_value *v = item(c, name, i);
    if (v->type != FLOW_P_STRING && v->type != FLOW_P_PATH)
        FLOW_BUG("parameter '%s' is not a list of strings", name);
    return v->s;
}

int64_t flow_param_list_int(flow_ctx *c, const char *name, int i)
{
    const graph_value *v = item(c, name, i);
    if (v->type != FLOW_P_INT) FLOW_BUG("parameter '%s' is not a list of integers", name);
    return v->i;
}

double flow_param_list_float(flow_ctx *c, const char *name, int i)
{
    const graph_value *v = item(c, name, i);
    if (v->type == FLOW_P_INT) return (double)v->i;
    if (v->type != FLOW_P_FLOAT) FLOW_BUG("parameter '%s' is not a list of numbers", name);
    return v->f;
}

const char *flow_node_name(flow_ctx *c) { return c->g->nodes[c->node].name; }
const char *flow_graph_dir(flow_ctx *c) { return c->g->dir; }

const char *flow_temp_dir(flow_ctx *c)
{
    (void)c;
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}
