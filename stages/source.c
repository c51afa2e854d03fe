/* source.c — the `source` stage: files from disk into the cache.
 *
 *   laws = source { path = "../../shared/data/legal/laws"  labels = folders }
 *
 * Reads a file, or a folder recursively (sorted bytewise, hidden files and
 * folders skipped, optional `include` globs); every file becomes a part
 * named by its path relative to the folder (a single file: its base name).
 *
 * labels = folders adds a part `.index` (UTF-8 TSV, one line per file):
 *     relpath \t label \t group
 * label = the first folder under the root; group = the file name without
 * extension and without a trailing "(YYYY-MM-DD)" date, cut before the
 * first `group_sep` (default "-"), so the versions of one law and the books
 * of the Civil Code (民法典-总则.md, 民法典-物权编.md, ...) share a group.
 * Files directly under the root have no label folder: that is an error
 * naming them (exclude them with an `include` glob containing '/').
 *
 * Its key covers every selected file's relative path and content hash
 * (key_extra, through the engine's stat cache), so editing, adding or
 * removing a file rebuilds it and nothing else does.
 */
#include "stages.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const flow_param_def params[] = {
    { .name = "path", .type = FLOW_P_PATH, .def = NULL, .min = 1, .max = 0,
      .help = "a file or a folder, relative to the graph file" },
    { .name = "labels", .type = FLOW_P_STRING, .def = "none", .min = 1, .max = 0,
      .choices = "none|folders", .help = "folders: label = first folder under path (adds .index)" },
    { .name = "include", .type = FLOW_P_LIST, .elem = FLOW_P_STRING, .def = "[]", .min = 1, .max = 0,
      .help = "glob patterns; without '/' matched against the file name, with '/' against the "
              "relative path; empty = every file" },
    { .name = "group_sep", .type = FLOW_P_STRING, .def = "\"-\"", .min = 1, .max = 0,
      .help = "files whose name starts with PREFIX<group_sep> share group PREFIX (\"\" = off)" },
};

typedef struct file_list {
    char **rel;     /* relative path (part name) */
    char **abs;
    int n, cap;
} file_list;

static void list_free(file_list *l)
{
    for (int i = 0; i < l->n; i++) { free(l->rel[i]); free(l->abs[i]); }
    free(l->rel);
    free(l->abs);
    memset(l, 0, sizeof *l);
}

static int included(flow_ctx *c, const char *rel)
{
    int n = flow_param_list_len(c, "include");
    if (n == 0) return 1;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (int i = 0; i < n; i++) {
        const char *pat = flow_param_list_str(c, "include", i);
        if (fnmatch(pat, strchr(pat, '/') ? rel : base, strchr(pat, '/') ? FNM_PATHNAME : 0) == 0)
            return 1;
    }
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a + 1, *(char *const *)b + 1);
}

static int walk(flow_ctx *c, const char *abs, const char *rel, file_list *out, int depth)
{
    if (depth > 64)
        return flow_ctx_fail(c, FLOW_E_INPUT, "folder '%s' is nested more than 64 levels deep "
                             "(a symlink loop?)", abs);
    DIR *d = opendir(abs);
    if (!d) return flow_ctx_fail(c, FLOW_E_IO, "cannot read folder '%s': %s", abs, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;     /* hidden, . and .. */
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            names = xrealloc(names, (size_t)cap * sizeof *names);
        }
        /* the entry type rides in front of the name, so the common case
         * needs no stat (a null build walks the whole corpus) */
        size_t nl = strlen(de->d_name);
        names[n] = xmalloc(nl + 2);
        names[n][0] = de->d_type == DT_REG ? 'f' : de->d_type == DT_DIR ? 'd' : '?';
        memcpy(names[n] + 1, de->d_name, nl + 1);
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_name);
    for (int i = 0; i < n; i++) {
        if (rc) { free(names[i]); continue; }
        const char *name = names[i] + 1;
        size_t al = strlen(abs) + strlen(name) + 2, rl = strlen(rel) + strlen(name) + 2;
        char *a = xmalloc(al), *r = xmalloc(rl);
        snprintf(a, al, "%s/%s", abs, name);
        snprintf(r, rl, "%s%s%s", rel, rel[0] ? "/" : "", name);
        char type = names[i][0];
        free(names[i]);
        struct stat st;
        if (type == '?') {      /* symlink or unknown: follow it */
            if (stat(a, &st) != 0)
                rc = flow_ctx_fail(c, FLOW_E_IO, "cannot stat '%s': %s", a, strerror(errno));
            else
                type = S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 'x';
        }
        if (rc) {
        } else if (type == 'd') {
            rc = walk(c, a, r, out, depth + 1);
        } else if (type == 'f' && included(c, r)) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->rel = xrealloc(out->rel, (size_t)out->cap * sizeof *out->rel);
                out->abs = xrealloc(out->abs, (size_t)out->cap * sizeof *out->abs);
            }
            out->rel[out->n] = r;
            out->abs[out->n++] = a;
            continue;
        }
        free(a);
        free(r);
    }
    free(names);
    return rc;
}

/* The selected files, in part order; errors for missing or empty input. */
static int collect(flow_ctx *c, file_list *out)
{
    const char *path = flow_param_str(c, "path");
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0)
        return flow_ctx_fail(c, FLOW_E_INPUT, "source path '%s' does not exist (%s); check `path` "
                             "(relative paths start at the graph file's folder)", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        const char *base = strrchr(path, '/');
        out->rel = xmalloc(sizeof *out->rel);
        out->abs = xmalloc(sizeof *out->abs);
        out->rel[0] = xstrdup(base ? base + 1 : path);
        out->abs[0] = xstrdup(path);
        out->n = out->cap = 1;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return flow_ctx_fail(c, FLOW_E_INPUT, "source path '%s' is neither a file nor a folder", path);
    /* resolve symlinks once, not in every one of the files' stats */
    char *real = realpath(path, NULL);
    int rc = walk(c, real ? real : path, "", out, 0);
    free(real);
    if (rc) { list_free(out); return rc; }
    if (out->n == 0) {
        list_free(out);
        return flow_ctx_fail(c, FLOW_E_INPUT, "source folder '%s' has no files%s; point `path` at "
                             "the corpus", path, flow_param_list_len(c, "include") ? " matching `include`" : "");
    }
    return 0;
}

int source_files(flow_ctx *c, char ***rel, char ***abs, int *n)
{
    file_list l;
    int rc = collect(c, &l);
    if (rc) return rc;
    *rel = l.rel;
    *abs = l.abs;
    *n = l.n;
    return 0;
}

static int key_extra(flow_ctx *c, flow_hasher *h)
{
    file_list l;
    int rc = collect(c, &l);
    if (rc) return rc;
    uint32_t n = (uint32_t)l.n;
    flow_hasher_update(h, &n, sizeof n);
    for (int i = 0; i < l.n && !rc; i++) {
        flow_hash fh;
        rc = flow_file_hash(c, l.abs[i], &fh);
        if (rc) break;
        flow_hasher_update(h, l.rel[i], strlen(l.rel[i]) + 1);
        flow_hasher_update(h, fh.b, 16);
    }
    list_free(&l);
    return rc;
}

/* Group of a file name: see the header comment. */
static void group_of(const char *rel, const char *sep, flow_buf *out)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    /* trailing "(YYYY-MM-DD)" */
    if (n >= 12 && base[n - 12] == '(' && base[n - 1] == ')') {
        const char *d = base + n - 11;
        int ok = 1;
        for (int i = 0; i < 10; i++)
            ok &= (i == 4 || i == 7) ? d[i] == '-' : (d[i] >= '0' && d[i] <= '9');
        if (ok) n -= 12;
    }
    if (sep[0]) {
        const char *s = strstr(base, sep);
        if (s && s > base && (size_t)(s - base) < n) n = (size_t)(s - base);
    }
    buf_add(out, base, n);
}

static int run(flow_ctx *c)
{
    file_list l;
    int rc = collect(c, &l);
    if (rc) return rc;
    int folders = strcmp(flow_param_str(c, "labels"), "folders") == 0;
    const char *sep = flow_param_str(c, "group_sep");
    flow_buf index, unlabelled;
    buf_init(&index);
    buf_init(&unlabelled);
    int nunlabelled = 0, nlabels = 0;
    char last_label[1024] = "";
    uint64_t bytes = 0;
    for (int i = 0; i < l.n && !rc; i++) {
        const char *rel = l.rel[i];
        if (utf8_first_invalid((const unsigned char *)rel, strlen(rel)) >= 0 || strpbrk(rel, "\t\n\r")) {
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "file name '%s' is not valid UTF-8 or contains a "
                               "tab/newline; rename it", l.abs[i]);
            break;
        }
        if (folders) {
            const char *slash = strchr(rel, '/');
            if (!slash) {
                if (nunlabelled++ < 5) buf_printf(&unlabelled, "%s'%s'", nunlabelled > 1 ? ", " : "", rel);
            } else {
                size_t ll = (size_t)(slash - rel);
                if (ll >= sizeof last_label || strncmp(last_label, rel, ll) != 0 || last_label[ll]) {
                    nlabels++;      /* sorted: a label's files are contiguous */
                    snprintf(last_label, sizeof last_label, "%.*s", (int)ll, rel);
                }
                buf_printf(&index, "%s\t%.*s\t", rel, (int)ll, rel);
                group_of(rel, sep, &index);
                buf_addc(&index, '\n');
            }
        }
        char *data = NULL;
        size_t len = 0;
        flow_err fe;
        if (file_read_all(l.abs[i], &data, &len, &fe)) {
            rc = flow_ctx_fail(c, FLOW_E_IO, "%s", fe.msg);
            break;
        }
        bytes += len;
        rc = flow_out_write(c, rel, FLOW_PART_BYTES, data, len);
        free(data);
    }
    if (!rc && folders && nunlabelled)
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "labels = folders, but %d file(s) lie directly in '%s' "
                           "without a label folder: %s%s; move them into a folder or select files "
                           "with include = [\"*/*\"]", nunlabelled, flow_param_str(c, "path"),
                           unlabelled.data, nunlabelled > 5 ? ", ..." : "");
    if (!rc && folders && nlabels == 0)
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "labels = folders, but '%s' has no labelled files "
                           "(expected PATH/LABEL/file)", flow_param_str(c, "path"));
    if (!rc && folders) rc = flow_out_write(c, ".index", FLOW_PART_BYTES, index.data ? index.data : "", index.len);
    if (!rc) {
        flow_metric(c, "files", l.n);
        flow_metric(c, "bytes", (double)bytes);
        if (folders) flow_metric(c, "labels", nlabels);
        flow_log(c, "read %d files, %llu bytes from %s", l.n, (unsigned long long)bytes,
                 flow_param_str(c, "path"));
    }
    buf_release(&index);
    buf_release(&unlabelled);
    list_free(&l);
    return rc;
}

const flow_stage stage_source = {
    .name = "source",
    .version = 1,
    .help = "read a file or a folder of files (one part per file)",
    .params = params, .nparams = sizeof params / sizeof params[0],
    .outputs = NULL, .noutputs = 0,     /* free-form: one part per file */
    .res = { .threads = 1 },
    .run = run,
    .key_extra = key_extra,
};
