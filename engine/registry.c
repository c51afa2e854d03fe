/* registry.c — the table of stage kinds.  stages/ registers its stages at
 * start-up (stages_register_all); the engine looks them up by name when it
 * resolves a graph.  The engine itself depends on no concrete stage. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

struct flow_registry {
    const flow_stage **stages;
    int n, cap;
};

flow_registry *registry_new(void) { return xcalloc(1, sizeof(flow_registry)); }

void registry_free(flow_registry *r)
{
    if (!r) return;
    free(r->stages);
    free(r);
}

void registry_add(flow_registry *r, const flow_stage *s)
{
    if (registry_find(r, s->name)) FLOW_BUG("stage '%s' registered twice", s->name);
    for (const char *w = s->not_in_key; w && *w;) {
        size_t n = strcspn(w, " ");
        int k = 0;
        while (k < s->nparams && !(strlen(s->params[k].name) == n && !strncmp(s->params[k].name, w, n))) k++;
        if (k == s->nparams) FLOW_BUG("stage '%s': not_in_key names '%.*s', which is no parameter", s->name, (int)n, w);
        w += n + strspn(w + n, " ");
    }
    for (const char *w = s->key_unless_default; w && *w;) {
        size_t n = strcspn(w, " ");
        int k = 0;
        while (k < s->nparams && !(strlen(s->params[k].name) == n && !strncmp(s->params[k].name, w, n))) k++;
        if (k == s->nparams) FLOW_BUG("stage '%s': key_unless_default names '%.*s', which is no parameter", s->name, (int)n, w);
        flow_ptype t = s->params[k].type;
        if ((t != FLOW_P_STRING && t != FLOW_P_INT && t != FLOW_P_BOOL) || !s->params[k].def)
            FLOW_BUG("stage '%s': key_unless_default '%s' must be a STRING, INT or BOOL parameter with a default",
                     s->name, s->params[k].name);
        w += n + strspn(w + n, " ");
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->stages = xrealloc(r->stages, (size_t)r->cap * sizeof *r->stages);
    }
    r->stages[r->n++] = s;
}

const flow_stage *registry_find(const flow_registry *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->stages[i]->name, name) == 0) return r->stages[i];
    return NULL;
}

int registry_count(const flow_registry *r) { return r->n; }
const flow_stage *registry_at(const flow_registry *r, int i) { return r->stages[i]; }
