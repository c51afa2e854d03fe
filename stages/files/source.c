/* source.c — the `source` stage: files from disk into the cache.
 *
 *   laws = source { path = "../../shared/data/legal/laws"  labels = folders }
 *
 * Reads a file, or a folder recursively (sorted bytewise, hidden files and
 * folders skipped, optional `include` and `exclude` globs: glob.c); every
 * file becomes a part named by its path relative to the folder (a single
 * file: its base name).  The log and metrics say how many files the globs
 * selected and skipped; an include pattern that selects nothing is an
 * error naming it.
 *
 * Symlinks are followed.  A dangling one is skipped with a warning in the
 * node log (metric dangling_symlinks): a broken link is not a document,
 * and failing the whole corpus for it helps nobody; the log names it.  A
 * symlink loop (a folder that is its own ancestor, by device and inode)
 * fails the node, naming the folder and the ancestor.
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
 * removing a file rebuilds it and nothing else does.  The walk stats each
 * selected file relative to its open folder (fstatat, in parallel in
 * large folders) and the key looks the stats up with
 * flow_file_hash_many: a null build of 500k files is 500k stats and
 * stat-cache lookups on every CPU the process may use.
 */
#include "stages/stages.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const flow_param_def params[] = {
    { .name = "path", .type = FLOW_P_PATH, .def = NULL, .min = 1, .max = 0,
      .help = "a file or a folder, relative to the graph file" },
    { .name = "labels", .type = FLOW_P_STRING, .def = "none", .min = 1, .max = 0,
      .choices = "none|folders", .help = "folders: label = first folder under path (adds .index)" },
    { .name = "include", .type = FLOW_P_LIST, .elem = FLOW_P_STRING, .def = "[]", .min = 1, .max = 0,
      .help = "globs selecting files: without '/' matched against the file name (any depth), "
              "with '/' against the relative path; ** = zero or more folders; empty = every file; "
              "a pattern that matches nothing is an error" },
    { .name = "exclude", .type = FLOW_P_LIST, .elem = FLOW_P_STRING, .def = "[]", .min = 1, .max = 0,
      .help = "globs (same rules) of files to leave out; a trailing /** also skips the folder" },
    { .name = "group_sep", .type = FLOW_P_STRING, .def = "\"-\"", .min = 1, .max = 0,
      .help = "files whose name starts with PREFIX<group_sep> share group PREFIX (\"\" = off)" },
};

/* The selected files, and what the walk saw on the way (for the log and
 * the metrics). */
/* group_sep only shapes the groups of the .index part (labels = folders). */
static const flow_applies_def applies[] = {
    { .name = "group_sep", .on = "labels", .when = "folders", .why = "groups exist only in the .index of labelled sources" },
};

typedef struct file_list {
    char **rel;     /* relative path (part name) */
    char **abs;
    flow_file_stat *st;   /* taken by the walk (fstatat in the open folder) */
    int n, cap;
    long long seen, skipped;              /* files met; not selected by the globs */
    long long hidden, dangling, pruned;   /* hidden entries, dangling links, excluded folders */
    flow_buf dangling_names;              /* the first few dangling links, for the log */
    long long *inc_hits, *exc_hits;       /* files matched per pattern */
} file_list;

static void list_free(file_list *l)
{
    for (int i = 0; i < l->n; i++) { free(l->rel[i]); free(l->abs[i]); }
    free(l->rel);
    free(l->abs);
    free(l->st);
    free(l->inc_hits);
    free(l->exc_hits);
    buf_release(&l->dangling_names);
    memset(l, 0, sizeof *l);
}

/* A folder on the path being walked: symlink loops are found by meeting
 * the same (device, inode) again below itself. */
typedef struct open_folder {
    dev_t dev;
    ino_t ino;
    const char *rel;
} open_folder;

typedef struct walker {
    flow_ctx *c;
    path_glob *inc, *exc;
    int ninc, nexc;
    open_folder *stack;
    int depth, cap;
    file_list *out;
} walker;

static flow_file_stat file_stat_of(const struct stat *st)
{
    return (flow_file_stat){ (uint64_t)st->st_size,
                             (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                             (uint64_t)st->st_ino };
}

static void add_file(file_list *out, char *abs, char *rel, const flow_file_stat *st)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 64;
        out->rel = xrealloc(out->rel, (size_t)out->cap * sizeof *out->rel);
        out->abs = xrealloc(out->abs, (size_t)out->cap * sizeof *out->abs);
        out->st = xrealloc(out->st, (size_t)out->cap * sizeof *out->st);
    }
    out->rel[out->n] = rel;
    out->st[out->n] = *st;
    out->abs[out->n++] = abs;
}

/* include (any pattern, or none given) and no exclude; counts per pattern */
static int selected(walker *w, const char *rel)
{
    int in = w->ninc == 0;
    for (int i = 0; i < w->ninc; i++)
        if (glob_match(&w->inc[i], rel)) w->out->inc_hits[i]++, in = 1;
    if (!in) return 0;
    int ex = 0;
    for (int i = 0; i < w->nexc; i++)
        if (glob_match(&w->exc[i], rel)) w->out->exc_hits[i]++, ex = 1;
    return !ex;
}

static int excluded_folder(walker *w, const char *rel)
{
    for (int i = 0; i < w->nexc; i++)
        if (glob_covers_folder(&w->exc[i], rel)) return 1;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a + 1, *(char *const *)b + 1);
}

/* The names in an open folder, sorted, each prefixed by its type: 'f'
 * file, 'd' folder, '?' anything else (a symlink: stat decides). */
static void read_names(walker *w, DIR *d, char ***out, int *count)
{
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') {     /* hidden, . and .. */
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) w->out->hidden++;
            continue;
        }
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
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_name);
    *out = names;
    *count = n;
}

/* Enters folder abs (relative path rel): fails on a symlink loop, naming
 * the folder and the ancestor it leads back to. */
static int push_folder(walker *w, DIR *d, const char *abs, const char *rel)
{
    struct stat st;
    if (fstat(dirfd(d), &st) != 0)
        return flow_ctx_fail(w->c, FLOW_E_IO, "cannot stat folder '%s': %s", abs, strerror(errno));
    for (int i = 0; i < w->depth; i++)
        if (w->stack[i].dev == st.st_dev && w->stack[i].ino == st.st_ino) {
            const char *anc = w->stack[i].rel;
            return flow_ctx_fail(w->c, FLOW_E_INPUT, "symlink loop: folder '%s' is %s%s%s again "
                                 "(same device and inode), so the walk would never end; remove "
                                 "the link or add exclude = [\"%s/**\"]", rel,
                                 anc[0] ? "'" : "the source folder", anc, anc[0] ? "'" : "", rel);
        }
    if (w->depth == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->stack = xrealloc(w->stack, (size_t)w->cap * sizeof *w->stack);
    }
    w->stack[w->depth++] = (open_folder){ st.st_dev, st.st_ino, rel };
    return 0;
}

/* The type of entry name (path a, relative r) in the open folder dfd that
 * readdir could not tell: follows a symlink; a dangling one is 'x'
 * (skipped, and listed in the log).  st: the followed stat. */
static int entry_type(walker *w, int dfd, const char *name, const char *a, const char *r, char *type,
                      struct stat *st)
{
    if (fstatat(dfd, name, st, 0) == 0) {
        *type = S_ISDIR(st->st_mode) ? 'd' : S_ISREG(st->st_mode) ? 'f' : 'x';
        return 0;
    }
    if (errno == ENOENT && fstatat(dfd, name, st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st->st_mode)) {
        if (w->out->dangling++ < 10)
            buf_printf(&w->out->dangling_names, "%s'%s'", w->out->dangling > 1 ? ", " : "", r);
        *type = 'x';
        return 0;
    }
    return flow_ctx_fail(w->c, FLOW_E_IO, "cannot stat '%s': %s", a, strerror(errno));
}

/* One entry of a folder being walked: its paths, and for a selected
 * file its stat, taken before the files are listed (in parallel when the
 * folder is large: a null build of a 500k-file corpus is mostly stats). */
typedef struct entry {
    char *a, *r;            /* absolute and relative path (owned until listed) */
    const char *name;       /* in the folder */
    char type;              /* 'f', 'd', '?' (see read_names) */
    char sel;               /* a file the globs select */
    int err;                /* errno of its fstatat, 0 = st is valid */
    flow_file_stat st;
} entry;

typedef struct stat_job {
    int dfd;
    entry *e;
    int lo, hi;
} stat_job;

static void *stat_range(void *arg)
{
    stat_job *j = arg;
    for (int i = j->lo; i < j->hi; i++) {
        struct stat st;
        if (!j->e[i].sel) continue;
        if (fstatat(j->dfd, j->e[i].name, &st, 0) == 0) j->e[i].st = file_stat_of(&st);
        else j->e[i].err = errno;
    }
    return NULL;
}

/* fstatat of every selected file of the open folder dfd: on up to 4
 * threads (flow_file_threads) when there are at least STAT_PARALLEL of
 * them (each entry is written by one thread; the results do not depend on
 * the split). */
#define STAT_PARALLEL 4096
static void stat_selected(int dfd, entry *e, int n, int nsel)
{
    int nt = nsel < STAT_PARALLEL ? 1 : flow_file_threads();
    stat_job job[4];
    pthread_t th[4];
    int started[4] = {0};
    for (int t = 0; t < nt; t++) {
        job[t] = (stat_job){ dfd, e, (int)((long long)n * t / nt), (int)((long long)n * (t + 1) / nt) };
        if (t > 0) started[t] = pthread_create(&th[t], NULL, stat_range, &job[t]) == 0;
    }
    stat_range(&job[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else stat_range(&job[t]);   /* no thread: this one does it */
    }
}

/* "dir" + "/" + name, malloc'd (dir "" gives name) */
static char *join(const char *dir, size_t dl, const char *name, size_t nl)
{
    char *p = xmalloc(dl + nl + 2);
    memcpy(p, dir, dl);
    if (dl) p[dl++] = '/';
    memcpy(p + dl, name, nl + 1);
    return p;
}

/* Walks folder abs (relative path rel): its files in name order, each
 * folder's where its name sorts. */
static int walk(walker *w, const char *abs, const char *rel)
{
    DIR *d = opendir(abs);
    if (!d) return flow_ctx_fail(w->c, FLOW_E_IO, "cannot read folder '%s': %s", abs, strerror(errno));
    char **names = NULL;
    int n = 0;
    int rc = push_folder(w, d, abs, rel);
    if (rc) {
        closedir(d);
        return rc;
    }
    read_names(w, d, &names, &n);
    /* the folder stays open: its files are stat'ed relative to it */
    int dfd = dirfd(d), nsel = 0;
    size_t al = strlen(abs), rl = strlen(rel);
    entry *e = xcalloc((size_t)n + 1, sizeof *e);
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i] + 1);
        e[i] = (entry){ join(abs, al, names[i] + 1, nl), join(rel, rl, names[i] + 1, nl), names[i] + 1,
                        names[i][0], 0, 0, {0} };
        if (e[i].type == 'f') {
            w->out->seen++;
            if ((e[i].sel = (char)selected(w, e[i].r))) nsel++;
            else w->out->skipped++;
        }
    }
    stat_selected(dfd, e, n, nsel);
    for (int i = 0; i < n && !rc; i++) {
        entry *x = &e[i];
        if (x->type == '?') {   /* a symlink: stat decides, and its stat is the file's */
            struct stat st;
            if ((rc = entry_type(w, dfd, x->name, x->a, x->r, &x->type, &st))) break;
            x->st = file_stat_of(&st);
            if (x->type == 'f') {
                w->out->seen++;
                if (!(x->sel = (char)selected(w, x->r))) w->out->skipped++;
            }
        } else if (x->type == 'f' && x->sel && x->err) {
            rc = flow_ctx_fail(w->c, FLOW_E_IO, "cannot stat '%s': %s", x->a, strerror(x->err));
            break;
        }
        if (x->type == 'd') {
            if (excluded_folder(w, x->r)) w->out->pruned++;
            else rc = walk(w, x->a, x->r);
        } else if (x->type == 'f' && x->sel) {
            add_file(w->out, x->a, x->r, &x->st);
            x->a = x->r = NULL;     /* the list owns them */
        }
    }
    for (int i = 0; i < n; i++) {
        free(e[i].a);
        free(e[i].r);
        free(names[i]);
    }
    closedir(d);
    free(e);
    free(names);
    w->depth--;
    return rc;
}

/* Compiles the include or exclude list; errors name the pattern. */
static int compile_list(flow_ctx *c, const char *param, path_glob **out, int *count)
{
    int n = flow_param_list_len(c, param);
    path_glob *g = xcalloc((size_t)n + 1, sizeof *g);
    for (int i = 0; i < n; i++) {
        char why[256];
        const char *pat = flow_param_list_str(c, param, i);
        if (glob_compile(&g[i], pat, why, sizeof why) != 0) {
            for (int k = 0; k < i; k++) glob_release(&g[k]);
            free(g);
            return flow_ctx_fail(c, FLOW_E_PARAM, "%s pattern '%s' is invalid: %s", param, pat, why);
        }
    }
    *out = g;
    *count = n;
    return 0;
}

static int walk_root(flow_ctx *c, const char *root, file_list *out)
{
    walker w = { .c = c, .out = out };
    int rc = compile_list(c, "include", &w.inc, &w.ninc);
    if (rc) return rc;
    if ((rc = compile_list(c, "exclude", &w.exc, &w.nexc))) goto done;
    out->inc_hits = xcalloc((size_t)w.ninc + 1, sizeof *out->inc_hits);
    out->exc_hits = xcalloc((size_t)w.nexc + 1, sizeof *out->exc_hits);
    rc = walk(&w, root, "");
    for (int i = 0; i < w.ninc && !rc; i++)
        if (out->inc_hits[i] == 0)
            rc = flow_ctx_fail(c, FLOW_E_INPUT, "include pattern '%s' matches no file under '%s' "
                               "(%lld files seen; a pattern without '/' matches file names at any "
                               "depth, `**` any number of folders); fix or remove it",
                               flow_param_list_str(c, "include", i), flow_param_str(c, "path"),
                               out->seen);
done:
    for (int i = 0; i < w.ninc; i++) glob_release(&w.inc[i]);
    for (int i = 0; i < w.nexc; i++) glob_release(&w.exc[i]);
    free(w.inc);
    free(w.exc);
    free(w.stack);
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
        out->st = xmalloc(sizeof *out->st);
        out->rel[0] = xstrdup(base ? base + 1 : path);
        out->abs[0] = xstrdup(path);
        out->st[0] = file_stat_of(&st);
        out->n = out->cap = 1;
        out->seen = 1;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return flow_ctx_fail(c, FLOW_E_INPUT, "source path '%s' is neither a file nor a folder", path);
    /* resolve symlinks once, not in every one of the files' stats */
    char *real = realpath(path, NULL);
    int rc = walk_root(c, real ? real : path, out);
    free(real);
    if (rc) { list_free(out); return rc; }
    if (out->n == 0) {
        int filtered = flow_param_list_len(c, "include") || flow_param_list_len(c, "exclude");
        rc = flow_ctx_fail(c, FLOW_E_INPUT, "source folder '%s' has no files%s (%lld seen, %lld "
                           "skipped by the globs); point `path` at the corpus", path,
                           filtered ? " selected by `include`/`exclude`" : "", out->seen, out->skipped);
        list_free(out);
        return rc;
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
    l.rel = l.abs = NULL;
    l.n = 0;
    list_free(&l);
    return 0;
}

static int key_extra(flow_ctx *c, flow_hasher *h)
{
    file_list l;
    int rc = collect(c, &l);
    if (rc) return rc;
    uint32_t n = (uint32_t)l.n;
    flow_hasher_update(h, &n, sizeof n);
    flow_hash *fh = xmalloc(((size_t)l.n + 1) * sizeof *fh);
    rc = flow_file_hash_many(c, l.abs, l.st, l.n, fh);
    for (int i = 0; i < l.n && !rc; i++) {
        flow_hasher_update(h, l.rel[i], strlen(l.rel[i]) + 1);
        flow_hasher_update(h, fh[i].b, 16);
    }
    free(fh);
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

/* What the walk selected and skipped, per pattern, for the node log. */
static void log_selection(flow_ctx *c, const file_list *l)
{
    flow_log(c, "%lld files seen: %d matched, %lld skipped by include/exclude, %lld hidden "
             "entries skipped, %lld folders excluded", l->seen, l->n, l->skipped, l->hidden,
             l->pruned);
    for (int i = 0; l->inc_hits && i < flow_param_list_len(c, "include"); i++)
        flow_log(c, "include '%s': %lld files", flow_param_list_str(c, "include", i), l->inc_hits[i]);
    for (int i = 0; l->exc_hits && i < flow_param_list_len(c, "exclude"); i++)
        flow_log(c, "exclude '%s': %lld files%s", flow_param_list_str(c, "exclude", i),
                 l->exc_hits[i], l->exc_hits[i] ? "" : " (warning: it excludes no file)");
    if (l->dangling)
        flow_log(c, "warning: skipped %lld dangling symlink(s): %s%s", l->dangling,
                 l->dangling_names.data, l->dangling > 10 ? ", ..." : "");
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
        /* the writer keeps its own copy of the name: nothing of a written
         * file need stay (500k files: ~75 MB of paths) */
        free(l.rel[i]);
        free(l.abs[i]);
        l.rel[i] = l.abs[i] = NULL;
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
        flow_metric(c, "files_matched", l.n);
        flow_metric(c, "files_skipped", (double)l.skipped);
        flow_metric(c, "hidden_skipped", (double)l.hidden);
        flow_metric(c, "folders_excluded", (double)l.pruned);
        flow_metric(c, "dangling_symlinks", (double)l.dangling);
        if (folders) flow_metric(c, "labels", nlabels);
        log_selection(c, &l);
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
    /* 2: `**` matches zero or more folders (was fnmatch's `*`), exclude */
    .version = 2,
    .help = "read a file or a folder of files (one part per file)",
    .params = params, .nparams = sizeof params / sizeof params[0],
    .outputs = NULL, .noutputs = 0,     /* free-form: one part per file */
    .applies = applies, .napplies = 1,
    .res = { .threads = 1 },
    .run = run,
    .key_extra = key_extra,
};
