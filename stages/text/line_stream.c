/* line_stream.c — an input part read as lines or as blocks of whole lines,
 * with memory bounded by the block size (plus the longest line), for the
 * stages that stream a corpus (encode, bpe).  API in stages.h. */
#include "stages/stages.h"

#include <stdlib.h>
#include <string.h>

int line_stream_open(flow_ctx *c, const char *port, int idx, const char *part, line_stream *ls)
{
    memset(ls, 0, sizeof *ls);
    return flow_in_open(c, port, idx, part, &ls->in);
}

void line_stream_close(line_stream *ls)
{
    flow_in_stream_close(ls->in);
    free(ls->buf);
    memset(ls, 0, sizeof *ls);
}

/* Reads until the buffer holds at least want bytes past pos (or the end). */
static int ls_fill(line_stream *ls, size_t want)
{
    if (ls->pos) {
        memmove(ls->buf, ls->buf + ls->pos, ls->len - ls->pos);
        ls->len -= ls->pos;
        ls->pos = 0;
    }
    while (!ls->eof && ls->len < want) {
        if (ls->cap < want + (1u << 16)) {
            ls->cap = want + (1u << 16);
            ls->buf = xrealloc(ls->buf, ls->cap + 1);
        }
        long long n = flow_in_stream_read(ls->in, ls->buf + ls->len, ls->cap - ls->len);
        if (n < 0) return (int)n;
        if (n == 0) ls->eof = 1;
        ls->len += (size_t)n;
    }
    return 0;
}

/* The next block of whole lines, about want bytes (at least one whole
 * line, or what is left at the end); *n = 0 at the end. */
int line_stream_block(line_stream *ls, size_t want, char **block, size_t *n)
{
    int rc = ls_fill(ls, want);
    size_t end = 0;
    while (!rc) {
        size_t avail = ls->len - ls->pos, look = avail < want ? avail : want;
        const char *p = ls->buf + ls->pos;
        const char *nl = look ? memrchr(p, '\n', look) : NULL;
        if (!nl && look < avail) nl = memchr(p + look, '\n', avail - look);
        if (nl || ls->eof) {
            end = nl ? (size_t)(nl - p) + 1 : avail;
            break;
        }
        rc = ls_fill(ls, 2 * avail + 1);    /* a line longer than want */
    }
    if (rc) return rc;
    *block = ls->buf + ls->pos;
    *n = end;
    ls->pos += end;
    return 0;
}

/* The next line (NUL-terminated in place, without its '\n'); *got = 0 at
 * the end. */
int line_stream_line(line_stream *ls, char **line, int *got)
{
    *got = 0;
    const char *nl = NULL;
    for (;;) {
        size_t avail = ls->len - ls->pos;
        nl = avail ? memchr(ls->buf + ls->pos, '\n', avail) : NULL;
        if (nl || ls->eof) break;
        int rc = ls_fill(ls, avail ? 2 * avail : 1u << 16);
        if (rc) return rc;
    }
    if (ls->pos == ls->len) return 0;
    char *s = ls->buf + ls->pos;
    size_t n = nl ? (size_t)(nl - s) : ls->len - ls->pos;
    s[n] = 0;   /* the '\n', or the spare byte past the end */
    ls->pos += n + (nl != NULL);
    ls->line_len = n;
    ls->newline = nl != NULL;
    *line = s;
    *got = 1;
    return 0;
}

