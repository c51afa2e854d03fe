/* cli.c — helpers shared by the cmd_*.c commands: option values, exit
 * codes, finding the cache folder, loading graphs, current keys. */
#include "commands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("flow: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case 0: return 0;
    case FLOW_E_USAGE: case FLOW_E_GRAPH: return 2;
    case FLOW_E_INTERRUPTED: return 130;
    default: return 1;
    }
}

/* For "file:line:col: error: ..." prints the offending line and a caret
 * under the column, as compilers do. */
static void show_location(const char *msg)
{
    char path[1024];
    int line, col, n = 0;
    const char *e = strstr(msg, ": error: ");
    if (!e || (size_t)(e - msg) >= sizeof path) return;
    memcpy(path, msg, (size_t)(e - msg));
    path[e - msg] = 0;
    /* the path itself may contain ':'; line and col are the last two fields */
    char *c2 = strrchr(path, ':');
    if (!c2) return;
    *c2 = 0;
    char *c1 = strrchr(path, ':');
    if (!c1 || sscanf(c1 + 1, "%d", &line) != 1 || sscanf(c2 + 1, "%d%n", &col, &n) != 1 || line < 1 || col < 1)
        return;
    *c1 = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char buf[4096];
    int l = 0;
    while (fgets(buf, sizeof buf, f))
        if (++l == line) {
            buf[strcspn(buf, "\r\n")] = 0;
            size_t len = strlen(buf);
            fprintf(stderr, "    %s\n    ", buf);
            /* keep tabs so the caret lines up; CJK characters take two columns */
            for (size_t i = 0; i < (size_t)(col - 1) && i < len;) {
                uint32_t cp;
                int k = utf8_decode((const unsigned char *)buf + i, len - i, &cp);
                if (k < 1) { cp = '?'; k = 1; }
                int wide = (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
                           (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                           (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                           (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x20000 && cp <= 0x3FFFD);
                fputs(cp == '\t' ? "\t" : wide ? "  " : " ", stderr);
                i += (size_t)k;
            }
            fputs("^\n", stderr);
            break;
        }
    fclose(f);
}

int cli_fail(const flow_err *err)
{
    /* graph errors already start with "file:line:col: error:" */
    if (strstr(err->msg, ": error: ") || strncmp(err->msg, "--set ", 6) == 0) {
        fprintf(stderr, "%s\n", err->msg);
        if (strncmp(err->msg, "--set ", 6) != 0) show_location(err->msg);
    } else {
        fprintf(stderr, "flow: error: %s\n", err->msg);
    }
    return cli_exit_code(err->code ? err->code : FLOW_E_IO);
}

int cli_fail_json(const flow_err *err)
{
    const char *msg = err->msg, *e = strstr(msg, ": error: ");
    flow_buf b;
    buf_init(&b);
    buf_adds(&b, "{\"event\":\"error\",\"file\":");
    int line = 0, col = 0, n = 0;
    const char *c2 = NULL, *c1 = NULL;
    if (e && strncmp(msg, "--set ", 6) != 0) {
        /* "PATH:LINE:COL: error: ..."; the path itself may contain ':' */
        for (const char *p = msg; p < e; p++)
            if (*p == ':') { c1 = c2; c2 = p; }
        if (!c1 || sscanf(c1 + 1, "%d", &line) != 1 || sscanf(c2 + 1, "%d%n", &col, &n) != 1 ||
            c2 + 1 + n != e)
            c1 = NULL;
    }
    if (c1) {
        buf_json_str(&b, msg, (size_t)(c1 - msg));
        buf_printf(&b, ",\"line\":%d,\"col\":%d,\"message\":", line, col);
        buf_json_str(&b, e + 9, strlen(e + 9));
    } else if (e && strncmp(msg, "--set ", 6) == 0) {
        buf_adds(&b, "null,\"line\":null,\"col\":null,\"set\":");
        buf_json_str(&b, msg + 6, (size_t)(e - msg - 6));
        buf_adds(&b, ",\"message\":");
        buf_json_str(&b, e + 9, strlen(e + 9));
    } else {
        buf_adds(&b, "null,\"line\":null,\"col\":null,\"message\":");
        buf_json_str(&b, msg, strlen(msg));
    }
    buf_adds(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    buf_release(&b);
    return cli_exit_code(err->code ? err->code : FLOW_E_IO);
}

const char *cli_optval(int argc, char **argv, int *i, const char *opt, int *missing)
{
    size_t n = strlen(opt);
    const char *a = argv[*i];
    *missing = 0;
    if (strncmp(a, opt, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) {
        /* short options take glued values: -j4 */
        if (opt[1] != '-' && n == 2) return a + n;
        return NULL;
    }
    if (*i + 1 >= argc) { *missing = 1; return ""; }
    return argv[++*i];
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *cli_cache_dir(const char *opt_cache, const char *graph_path)
{
    if (opt_cache && *opt_cache) return xstrdup(opt_cache);
    const char *env = getenv("FLOW_CACHE");
    if (env && *env) return xstrdup(env);
    if (graph_path) {
        const char *slash = strrchr(graph_path, '/');
        size_t n = slash ? (size_t)(slash - graph_path) : 0;
        char *p = xmalloc(n + 8);
        if (slash) snprintf(p, n + 8, "%.*s/.flow", (int)n, graph_path);
        else snprintf(p, n + 8, ".flow");
        return p;
    }
    if (is_dir(".flow") || !is_dir("graphs/.flow")) return xstrdup(".flow");
    return xstrdup("graphs/.flow");
}

int cli_cache_exists(const char *dir) { return is_dir(dir); }

int cli_open_store(const char *dir, int must_exist, flow_store **s, flow_err *err)
{
    if (must_exist && !is_dir(dir))
        return flow_fail(err, FLOW_E_USAGE, "no cache at '%s'; build a graph first, or pass "
                         "--cache DIR (or set FLOW_CACHE)", dir);
    store_options opt;
    memset(&opt, 0, sizeof opt);
    return store_open(s, dir, &opt, err);
}

int cli_load_graph(const char *arg, char *const *sets, int nsets, flow_registry **reg,
                   flow_graph **g, flow_err *err)
{
    char *path;
    *g = NULL;
    *reg = NULL;
    int rc = graph_locate(arg, &path, err);
    if (rc) return rc;
    *reg = registry_new();
    stages_register_all(*reg);
    rc = graph_load(g, path, *reg, sets, nsets, err);
    free(path);
    if (rc) {
        registry_free(*reg);
        *reg = NULL;
    }
    return rc;
}

int cli_current_keys(const flow_graph *g, flow_store *s, flow_hash *keys, char *known,
                     char *built, char **desc, flow_err *err)
{
    for (int t = 0; t < g->n; t++) {
        int i = g->topo[t];
        const graph_node *nd = &g->nodes[i];
        known[i] = built[i] = 0;
        if (desc) desc[i] = NULL;
        int ok = 1;
        for (int k = 0; k < nd->ndeps; k++) ok &= built[nd->deps[k]];
        if (!ok) continue;
        flow_buf d;
        buf_init(&d);
        int rc = key_for_node(g, s, i, keys, &keys[i], desc ? &d : NULL, err);
        if (rc && desc) {
            /* status/why: report the node, keep going */
            buf_release(&d);
            buf_printf(&d, "!%s", err->msg);
            desc[i] = buf_detach(&d, NULL);
            continue;
        }
        if (rc) {
            buf_release(&d);
            return rc;
        }
        known[i] = 1;
        built[i] = s && store_has(s, &keys[i]);
        if (desc) desc[i] = buf_detach(&d, NULL);
    }
    return 0;
}

int cli_state_load(cli_state *st, const cli_args *a, const char *graph,
                   int (*fail)(const flow_err *))
{
    memset(st, 0, sizeof *st);
    flow_err err;
    if (cli_load_graph(graph, a->sets, a->nsets, &st->reg, &st->g, &err)) return fail(&err);
    st->dir = cli_cache_dir(a->cache, st->g->path);
    /* no cache yet: nothing was built; do not create one just to look */
    if (cli_cache_exists(st->dir) && cli_open_store(st->dir, 0, &st->s, &err)) return fail(&err);
    size_t n = (size_t)st->g->n + 1;
    st->keys = xcalloc(n, sizeof *st->keys);
    st->known = xcalloc(n, 1);
    st->built = xcalloc(n, 1);
    st->desc = xcalloc(n, sizeof *st->desc);
    if (cli_current_keys(st->g, st->s, st->keys, st->known, st->built, st->desc, &err))
        return fail(&err);
    return 0;
}

void cli_state_release(cli_state *st)
{
    if (st->desc && st->g)
        for (int i = 0; i < st->g->n; i++) free(st->desc[i]);
    free(st->desc);
    free(st->keys);
    free(st->known);
    free(st->built);
    if (st->s) store_close(st->s);
    graph_free(st->g);
    registry_free(st->reg);
    free(st->dir);
    memset(st, 0, sizeof *st);
}

json_value *cli_meta(flow_store *s, const flow_hash *key)
{
    store_artifact *a = NULL;
    flow_err err;
    if (store_get_summary(s, key, &a, &err) != 0) return NULL;
    json_value *v = NULL;
    if (a->meta_json) (void)json_parse(a->meta_json, strlen(a->meta_json), "metadata", &v, &err);
    store_artifact_free(a);
    return v;
}

static int allows(const char *allowed, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = allowed; (p = strstr(p, name)); p += n)
        if ((p == allowed || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return 1;
    return 0;
}

static int cli_parse_into(int argc, char **argv, const char *allowed, cli_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *v, *arg = argv[i];
        int miss;
        if (allows(allowed, "set") && (v = cli_optval(argc, argv, &i, "--set", &miss))) {
            if (miss) return cli_usage_error("--set needs NODE.PARAM=VALUE");
            a->sets[a->nsets++] = (char *)v;
        } else if (allows(allowed, "cache") && (v = cli_optval(argc, argv, &i, "--cache", &miss))) {
            if (miss) return cli_usage_error("--cache needs a folder");
            a->cache = v;
        } else if (allows(allowed, "out") && (v = cli_optval(argc, argv, &i, "-o", &miss))) {
            if (miss || !*v) return cli_usage_error("-o needs a file name");
            a->out = v;
        } else if (allows(allowed, "keep-last") && (v = cli_optval(argc, argv, &i, "--keep-last", &miss))) {
            char *end;
            a->keep_last = strtol(v, &end, 10);
            if (miss || *end || !*v || a->keep_last < 1)
                return cli_usage_error("--keep-last needs a count of builds >= 1");
        } else if (allows(allowed, "json") && !strcmp(arg, "--json")) {
            a->json = 1;
        } else if (allows(allowed, "dot") && !strcmp(arg, "--dot")) {
            a->dot = 1;
        } else if (allows(allowed, "repair") && !strcmp(arg, "--repair")) {
            a->repair = 1;
        } else if (allows(allowed, "parts") && !strcmp(arg, "--parts")) {
            a->parts = 1;
        } else if (arg[0] == '-' && arg[1]) {
            return cli_usage_error("%s: unknown option '%s'; see 'flow %s --help'", argv[0], arg, argv[0]);
        } else {
            a->pos[a->npos++] = argv[i];
        }
    }
    return 0;
}

/* On a usage error the arguments are released here, so a caller may simply
 * return the code (releasing them again is harmless). */
int cli_parse(int argc, char **argv, const char *allowed, cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->keep_last = -1;
    a->pos = xcalloc((size_t)argc + 1, sizeof *a->pos);
    a->sets = xcalloc((size_t)argc + 1, sizeof *a->sets);
    int rc = cli_parse_into(argc, argv, allowed, a);
    if (rc) cli_args_release(a);
    return rc;
}

void cli_args_release(cli_args *a)
{
    free(a->pos);
    free(a->sets);
    memset(a, 0, sizeof *a);
}

/* Splits "k = v  # comment" lines of a key description. */
typedef struct desc_line { char *key, *val, *note; } desc_line;

static int desc_split(const char *text, desc_line **out)
{
    int n = 0, cap = 0;
    *out = NULL;
    const char *p = text ? text : "";
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *line = xmalloc(len + 1);
        memcpy(line, p, len);
        line[len] = 0;
        p += len + (e != NULL);
        char *eq = strstr(line, " = ");
        if (!eq) { free(line); continue; }
        *eq = 0;
        char *val = eq + 3, *note = strstr(val, "  # ");
        if (note) { *note = 0; note += 4; }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, (size_t)cap * sizeof **out);
        }
        (*out)[n].key = line;
        (*out)[n].val = val;
        (*out)[n].note = note;
        n++;
    }
    return n;
}

static void describe_change(flow_buf *b, const char *key, const char *oldv, const char *newv,
                            const char *note)
{
    if (!strncmp(key, "param.", 6)) {
        if (!oldv) buf_printf(b, "parameter %s is new (= %s)", key + 6, newv);
        else if (!newv) buf_printf(b, "parameter %s was removed (was %s)", key + 6, oldv);
        else buf_printf(b, "parameter %s: %s -> %s", key + 6, oldv, newv);
    } else if (!strncmp(key, "input.", 6)) {
        const char *from = note && !strncmp(note, "from ", 5) ? note + 5 : NULL;
        if (!oldv) buf_printf(b, "input %s is new", key + 6);
        else if (!newv) buf_printf(b, "input %s was removed", key + 6);
        else if (!strcmp(newv, "?"))
            buf_printf(b, "input %s%s%s%s: upstream not built with its current inputs", key + 6,
                       from ? " (from " : "", from ? from : "", from ? ")" : "");
        else buf_printf(b, "input %s%s%s%s: content changed", key + 6, from ? " (from " : "",
                        from ? from : "", from ? ")" : "");
    } else if (!strcmp(key, "version")) {
        buf_printf(b, "stage version changed: %s -> %s", oldv ? oldv : "?", newv ? newv : "?");
    } else if (!strcmp(key, "stage")) {
        buf_printf(b, "stage changed: %s -> %s", oldv ? oldv : "?", newv ? newv : "?");
    } else if (!strcmp(key, "extra")) {
        buf_adds(b, "content read by the stage itself changed (files, script, input names: key_extra)");
    } else {
        buf_printf(b, "%s: %s -> %s", key, oldv ? oldv : "(none)", newv ? newv : "(none)");
    }
}

int cli_desc_diff(const char *oldd, const char *newd, char ***changes)
{
    desc_line *o, *n;
    int no = desc_split(oldd, &o), nn = desc_split(newd, &n), nc = 0;
    *changes = xcalloc((size_t)(no + nn + 1), sizeof **changes);
    for (int i = 0; i < nn; i++) {
        int j = 0;
        while (j < no && strcmp(o[j].key, n[i].key)) j++;
        if (j < no && !strcmp(o[j].val, n[i].val)) continue;
        flow_buf b;
        buf_init(&b);
        describe_change(&b, n[i].key, j < no ? o[j].val : NULL, n[i].val, n[i].note);
        (*changes)[nc++] = buf_detach(&b, NULL);
    }
    for (int j = 0; j < no; j++) {
        int i = 0;
        while (i < nn && strcmp(o[j].key, n[i].key)) i++;
        if (i < nn) continue;
        flow_buf b;
        buf_init(&b);
        describe_change(&b, o[j].key, o[j].val, NULL, o[j].note);
        (*changes)[nc++] = buf_detach(&b, NULL);
    }
    for (int i = 0; i < no; i++) free(o[i].key);
    for (int i = 0; i < nn; i++) free(n[i].key);
    free(o);
    free(n);
    return nc;
}

void cli_free_strings(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int cli_last_build(const flow_graph *g, flow_store *s, int node, const char *desc_now,
                   flow_hash *last, char ***changes, int *nchanges)
{
    int n = 0;
    flow_err err;
    *changes = NULL;
    *nchanges = 0;
    if (!s) return 0;
    if (store_last_builds(s, g->id, g->nodes[node].name, last, 1, &n, &err) != 0 || n == 0) return 0;
    json_value *meta = cli_meta(s, last);
    if (!meta) return 2;
    const char *old = json_str(json_get(meta, "key_desc"), NULL);
    if (!old) { json_free(meta); return 2; }
    *nchanges = cli_desc_diff(old, desc_now, changes);
    json_free(meta);
    return 1;
}

void cli_human_size(uint64_t n, char out[16])
{
    const char *u[] = { "B", "K", "M", "G", "T" };
    double v = (double)n;
    int k = 0;
    while (v >= 1024 && k < 4) { v /= 1024; k++; }
    if (k == 0) snprintf(out, 16, "%lluB", (unsigned long long)n);
    else snprintf(out, 16, v < 10 ? "%.1f%s" : "%.0f%s", v, u[k]);
}

int cli_open_cache(const cli_args *a, char **dir, flow_store **s)
{
    flow_err err;
    *s = NULL;
    *dir = cli_cache_dir(a->cache, NULL);
    return cli_open_store(*dir, 1, s, &err) ? cli_fail(&err) : 0;
}

/* Opens the cache named by the options and resolves a hash prefix. */
int cli_open_artifact(const cli_args *a, const char *cmd, flow_store **s, flow_hash *key)
{
    flow_err err;
    *s = NULL;
    if (a->npos < 1) return cli_usage_error("%s: which artifact? give a hash (at least 6 hex digits)", cmd);
    const char *h = a->pos[0];
    size_t n = strspn(h, "0123456789abcdefABCDEF");
    if (h[n] || n < 6 || n > 32)
        return cli_usage_error("%s: '%s' is not an artifact hash; give 6 to 32 hex digits "
                               "(see 'flow ls')", cmd, h);
    char *dir;
    int rc = cli_open_cache(a, &dir, s);
    free(dir);
    if (rc) return rc;
    if (store_resolve(*s, a->pos[0], key, &err)) {
        store_close(*s);
        *s = NULL;
        /* an unknown or ambiguous hash is a usage error (exit 2) */
        if (err.code == FLOW_E_NOTFOUND || err.code == FLOW_E_AMBIGUOUS) err.code = FLOW_E_USAGE;
        return cli_fail(&err);
    }
    return 0;
}
