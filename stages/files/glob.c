// glob.c — path globs for `source`'s include and exclude lists, with the
// rules gitignore, Bazel and DVC users expect (README "source globs"):
//
//   - A pattern without '/' is matched against the file's base name, so
//     `*.md` selects Markdown files at every depth.
//   - A pattern with '/' is matched against the whole path relative to
//     `path`, one folder level per '/': `laws/*.md` is laws/a.md only.
//     A leading '/' just anchors (`/README.md` is the top-level one).
//   - `*` matches any run of characters except '/', `?` one character
//     except '/', `[...]` a class (fnmatch, within one path segment).
//   - `**` as a whole segment matches zero or more folders: `**/*.md` is
//     every .md file including top-level ones, `a/**/b.md` is a/b.md,
//     a/x/b.md, a/x/y/b.md; a trailing `/**` matches everything inside
//     the folder (one or more levels).  `**` inside a segment (`a**b`) is
//     an ordinary `*`, as in gitignore.
//   - A trailing '/' means "everything in that folder": `drafts/` is
//     `**/drafts/**` (any depth, since `drafts` has no other '/'),
//     `a/tmp/` is `a/tmp/**`.
// Empty, `.` and `..` segments are errors.
// (Line comments here: the patterns contain the C comment delimiters.)
#include "stages/stages.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#define GLOB_MAX_SEGS 256

void glob_release(path_glob *g)
{
    if (!g) return;
    free(g->buf);
    free(g->seg);
    memset(g, 0, sizeof *g);
}

int glob_compile(path_glob *g, const char *pattern, char *why, size_t whylen)
{
    memset(g, 0, sizeof *g);
    size_t n = strlen(pattern);
    if (n == 0) return snprintf(why, whylen, "the pattern is empty"), -1;
    const char *p = pattern;
    if (*p == '/') p++, n--;            /* leading '/': anchored */
    int folder = n > 0 && p[n - 1] == '/';
    if (folder) n--;
    if (n == 0) return snprintf(why, whylen, "the pattern names no file or folder"), -1;
    int has_slash = memchr(p, '/', n) != NULL || pattern[0] == '/';
    flow_buf b;
    buf_init(&b);
    if (folder && !has_slash) buf_adds(&b, "**/");
    buf_add(&b, p, n);
    if (folder) buf_adds(&b, "/**");
    g->base_only = !has_slash && !folder;
    g->buf = buf_detach(&b, NULL);
    if (g->base_only) return 0;
    g->seg = xmalloc(GLOB_MAX_SEGS * sizeof *g->seg);
    for (char *s = g->buf;;) {
        char *slash = strchr(s, '/');
        if (slash) *slash = 0;
        if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            snprintf(why, whylen, "it has an %s path segment (patterns are relative to "
                     "`path`, without '.', '..' or '//')", *s ? "'.' or '..'" : "empty");
            glob_release(g);
            return -1;
        }
        if (g->nseg == GLOB_MAX_SEGS) {
            snprintf(why, whylen, "it has more than %d path segments", GLOB_MAX_SEGS);
            glob_release(g);
            return -1;
        }
        g->seg[g->nseg++] = s;
        if (!slash) break;
        s = slash + 1;
    }
    return 0;
}

/* Does pattern segments ps[0..np) match path segments ss[0..ns)? */
static int match_segs(char *const *ps, int np, char *const *ss, int ns)
{
    while (np > 0) {
        if (strcmp(ps[0], "**") == 0) {
            while (np > 1 && strcmp(ps[1], "**") == 0) ps++, np--;   /* a / ** / ** run */
            if (np == 1) return ns >= 1;     /* trailing: everything inside */
            for (int k = 0; k <= ns; k++)
                if (match_segs(ps + 1, np - 1, ss + k, ns - k)) return 1;
            return 0;
        }
        if (ns == 0 || fnmatch(ps[0], ss[0], 0) != 0) return 0;
        ps++, np--, ss++, ns--;
    }
    return ns == 0;
}

/* Splits rel (copied into tmp) into segments; returns their count or -1. */
static int split_path(const char *rel, char *tmp, size_t cap, char **ss)
{
    size_t n = strlen(rel);
    if (n >= cap) return -1;
    memcpy(tmp, rel, n + 1);
    int ns = 0;
    for (char *s = tmp;;) {
        if (ns == GLOB_MAX_SEGS) return -1;
        ss[ns++] = s;
        char *slash = strchr(s, '/');
        if (!slash) break;
        *slash = 0;
        s = slash + 1;
    }
    return ns;
}

int glob_match(const path_glob *g, const char *rel)
{
    if (g->base_only) {
        const char *base = strrchr(rel, '/');
        return fnmatch(g->buf, base ? base + 1 : rel, 0) == 0;
    }
    char tmp[4096], *ss[GLOB_MAX_SEGS];
    int ns = split_path(rel, tmp, sizeof tmp, ss);
    return ns > 0 && match_segs(g->seg, g->nseg, ss, ns);
}

int glob_covers_folder(const path_glob *g, const char *rel)
{
    if (g->base_only || strcmp(g->seg[g->nseg - 1], "**") != 0) return 0;
    if (g->nseg == 1) return 1;
    char tmp[4096], *ss[GLOB_MAX_SEGS];
    int ns = split_path(rel, tmp, sizeof tmp, ss);
    return ns > 0 && match_segs(g->seg, g->nseg - 1, ss, ns);
}
