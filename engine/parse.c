/* parse.c — .graph text -> syntax tree (ast_file), with positions.
 *
 * The language (documented for users in README.md, "Graph language"):
 *
 *     # comment to end of line
 *     NAME = STAGE {
 *         key = value          # entries separated by newlines (or , ;)
 *     }
 *
 * values: integers (-12), floats (0.5, 1e-4), "strings" with escapes
 * (\" \\ \n \t \r \uXXXX), bare words (letters, digits, _ - . and any
 * non-ASCII letter; true/false are booleans), and lists [v, v, ...] of those
 * (may span lines, trailing comma allowed, never nested).  Whitespace and
 * newlines are otherwise insignificant.
 *
 * The parser accepts arbitrary bytes: invalid UTF-8, NUL and control bytes
 * are errors with their position; no input makes it crash or read out of
 * bounds (the fuzz target feeds it random bytes).  It knows nothing about
 * stages; graph.c gives entries their meaning.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum tok_kind {
    T_EOF, T_WORD, T_INT, T_FLOAT, T_STRING, T_EQ, T_LBRACE, T_RBRACE,
    T_LBRACK, T_RBRACK, T_COMMA, T_SEMI
} tok_kind;

typedef struct token {
    tok_kind kind;
    int line, col;
    char *text;             /* WORD/STRING (unescaped)/number literal */
    int64_t i;
    double f;
} token;

typedef struct lexer {
    const char *p, *end, *line_start;
    int line;
    const char *fname;      /* NULL: --set mode, errors use `what` */
    const char *what;
    flow_err *err;
    token tok;              /* current token (lookahead) */
} lexer;

static int lx_fail(lexer *lx, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int lx_fail(lexer *lx, int line, int col, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (lx->fname)
        return flow_fail(lx->err, FLOW_E_GRAPH, "%s:%d:%d: error: %s", lx->fname, line, col, msg);
    return flow_fail(lx->err, FLOW_E_GRAPH, "%s: error: %s (at column %d)", lx->what, msg, col);
}

static int is_word_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int is_word_char(unsigned char c)
{
    return is_word_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int col_of(const lexer *lx, const char *at) { return (int)(at - lx->line_start) + 1; }

static void tok_clear(token *t)
{
    free(t->text);
    memset(t, 0, sizeof *t);
}

/* Reads a "..." string starting at lx->p (on the quote). */
static int lex_string(lexer *lx, token *t)
{
    flow_buf b;
    buf_init(&b);
    const char *start = lx->p;
    lx->p++;
    for (;;) {
        if (lx->p >= lx->end || *lx->p == '\n') {
            buf_release(&b);
            return lx_fail(lx, t->line, t->col, "unterminated string; expected a closing '\"' "
                           "on the same line (write \\n for a newline)");
        }
        unsigned char c = (unsigned char)*lx->p;
        if (c == '"') { lx->p++; break; }
        if (c == '\\') {
            const char *esc = lx->p;
            if (lx->p + 1 >= lx->end) { lx->p = lx->end; continue; }  /* unterminated */
            char e = lx->p[1];
            lx->p += 2;
            switch (e) {
            case '"': buf_addc(&b, '"'); break;
            case '\\': buf_addc(&b, '\\'); break;
            case 'n': buf_addc(&b, '\n'); break;
            case 't': buf_addc(&b, '\t'); break;
            case 'r': buf_addc(&b, '\r'); break;
            case 'u': {
                uint32_t cp = 0;
                for (int k = 0; k < 4; k++) {
                    char h = lx->p < lx->end ? *lx->p : 0;
                    int v = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                          : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                    if (v < 0) {
                        buf_release(&b);
                        return lx_fail(lx, lx->line, col_of(lx, esc),
                                       "bad \\u escape; expected 4 hex digits as in \\u00e9");
                    }
                    cp = cp * 16 + (uint32_t)v;
                    lx->p++;
                }
                if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                    buf_release(&b);
                    return lx_fail(lx, lx->line, col_of(lx, esc),
                                   "\\u%04X is not allowed in a string (NUL or surrogate)", cp);
                }
                char out[4];
                buf_add(&b, out, (size_t)utf8_encode(cp, out));
                break;
            }
            default:
                buf_release(&b);
                return lx_fail(lx, lx->line, col_of(lx, esc),
                               "unknown escape '\\%c'; expected one of \\\" \\\\ \\n \\t \\r \\uXXXX",
                               (e >= 32 && e < 127) ? e : '?');
            }
            continue;
        }
        if (c < 32 && c != '\t') {
            buf_release(&b);
            return lx_fail(lx, lx->line, col_of(lx, lx->p),
                           "control character 0x%02x inside a string; use an escape", c);
        }
        buf_addc(&b, (char)c);
        lx->p++;
    }
    (void)start;
    t->kind = T_STRING;
    if (!b.data) buf_adds(&b, "");
    t->text = buf_detach(&b, NULL);
    return 0;
}

static int lex_number(lexer *lx, token *t)
{
    const char *s = lx->p;
    const char *q = s;
    int is_float = 0;
    if (*q == '+' || *q == '-') q++;
    while (q < lx->end && is_digit((unsigned char)*q)) q++;
    if (q < lx->end && *q == '.') {
        is_float = 1;
        q++;
        while (q < lx->end && is_digit((unsigned char)*q)) q++;
    }
    if (q < lx->end && (*q == 'e' || *q == 'E')) {
        const char *r = q + 1;
        if (r < lx->end && (*r == '+' || *r == '-')) r++;
        if (r < lx->end && is_digit((unsigned char)*r)) {
            is_float = 1;
            q = r;
            while (q < lx->end && is_digit((unsigned char)*q)) q++;
        }
    }
    const char *stop = q;
    while (stop < lx->end && is_word_char((unsigned char)*stop)) stop++;
    size_t n = (size_t)(stop - s);
    char *text = xmalloc(n + 1);
    memcpy(text, s, n);
    text[n] = 0;
    int digits = 0;
    for (const char *d = s; d < q; d++) digits += is_digit((unsigned char)*d);
    if (stop != q || digits == 0) {
        int rc = lx_fail(lx, t->line, t->col, "invalid number '%s'; expected an integer (42, -3) "
                         "or a float (0.5, 1e-4)", text);
        free(text);
        return rc;
    }
    errno = 0;
    if (is_float) {
        double f = strtod(text, NULL);
        if (errno == ERANGE || !isfinite(f)) {
            int rc = lx_fail(lx, t->line, t->col, "number '%s' is out of the range of a double", text);
            free(text);
            return rc;
        }
        t->kind = T_FLOAT;
        t->f = f;
    } else {
        long long v = strtoll(text, NULL, 10);
        if (errno == ERANGE) {
            int rc = lx_fail(lx, t->line, t->col, "integer '%s' does not fit in 64 bits", text);
            free(text);
            return rc;
        }
        t->kind = T_INT;
        t->i = v;
        t->f = (double)v;
    }
    t->text = text;
    lx->p = stop;
    return 0;
}

/* Advances to the next token (freeing the current one). */
static int lex_next(lexer *lx)
{
    token *t = &lx->tok;
    tok_clear(t);
    for (;;) {
        while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' || *lx->p == '\n')) {
            if (*lx->p == '\n') { lx->line++; lx->line_start = lx->p + 1; }
            lx->p++;
        }
        if (lx->p < lx->end && *lx->p == '#') {
            while (lx->p < lx->end && *lx->p != '\n') lx->p++;
            continue;
        }
        break;
    }
    t->line = lx->line;
    t->col = col_of(lx, lx->p);
    if (lx->p >= lx->end) { t->kind = T_EOF; return 0; }
    unsigned char c = (unsigned char)*lx->p;
    switch (c) {
    case '=': t->kind = T_EQ; lx->p++; return 0;
    case '{': t->kind = T_LBRACE; lx->p++; return 0;
    case '}': t->kind = T_RBRACE; lx->p++; return 0;
    case '[': t->kind = T_LBRACK; lx->p++; return 0;
    case ']': t->kind = T_RBRACK; lx->p++; return 0;
    case ',': t->kind = T_COMMA; lx->p++; return 0;
    case ';': t->kind = T_SEMI; lx->p++; return 0;
    case '"': return lex_string(lx, t);
    default: break;
    }
    const char *q = lx->p + ((c == '-' || c == '+') ? 1 : 0);
    if (q < lx->end && *q == '.') q++;
    if (q < lx->end && is_digit((unsigned char)*q))
        return lex_number(lx, t);
    if (is_word_start(c)) {
        const char *s = lx->p;
        while (lx->p < lx->end && is_word_char((unsigned char)*lx->p)) lx->p++;
        size_t n = (size_t)(lx->p - s);
        t->kind = T_WORD;
        t->text = xmalloc(n + 1);
        memcpy(t->text, s, n);
        t->text[n] = 0;
        return 0;
    }
    if (c == 0) return lx_fail(lx, t->line, t->col, "NUL byte in the graph file; is it a text file?");
    if (c < 32 || c == 127)
        return lx_fail(lx, t->line, t->col, "unexpected control character 0x%02x", c);
    return lx_fail(lx, t->line, t->col, "unexpected character '%c'", c);
}

static const char *tok_name(const token *t, char *buf, size_t n)
{
    switch (t->kind) {
    case T_EOF: return "end of file";
    case T_WORD: snprintf(buf, n, "'%.60s'", t->text); return buf;
    case T_INT: case T_FLOAT: snprintf(buf, n, "number %.40s", t->text); return buf;
    case T_STRING: snprintf(buf, n, "string \"%.40s\"", t->text); return buf;
    case T_EQ: return "'='";
    case T_LBRACE: return "'{'";
    case T_RBRACE: return "'}'";
    case T_LBRACK: return "'['";
    case T_RBRACK: return "']'";
    case T_COMMA: return "','";
    case T_SEMI: return "';'";
    }
    return "?";
}

static int unexpected(lexer *lx, const char *expected)
{
    char b[128];
    return lx_fail(lx, lx->tok.line, lx->tok.col, "unexpected %s; expected %s",
                   tok_name(&lx->tok, b, sizeof b), expected);
}

void ast_value_release(ast_value *v)
{
    if (!v) return;
    free(v->s);
    for (int i = 0; i < v->nitems; i++) ast_value_release(&v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
}

void ast_release(ast_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        ast_block *b = &f->blocks[i];
        free(b->name);
        free(b->stage);
        for (int j = 0; j < b->n; j++) {
            free(b->entries[j].key);
            ast_value_release(&b->entries[j].v);
        }
        free(b->entries);
    }
    free(f->blocks);
    memset(f, 0, sizeof *f);
}

/* Converts the current scalar token into v (taking its text). */
static int scalar(lexer *lx, ast_value *v)
{
    token *t = &lx->tok;
    memset(v, 0, sizeof *v);
    v->line = t->line;
    v->col = t->col;
    switch (t->kind) {
    case T_INT: v->kind = AST_INT; v->i = t->i; v->f = t->f; break;
    case T_FLOAT: v->kind = AST_FLOAT; v->f = t->f; break;
    case T_STRING: v->kind = AST_STRING; break;
    case T_WORD:
        if (strcmp(t->text, "true") == 0) { v->kind = AST_BOOL; v->i = 1; }
        else if (strcmp(t->text, "false") == 0) { v->kind = AST_BOOL; v->i = 0; }
        else v->kind = AST_WORD;
        break;
    default:
        return unexpected(lx, "a value: number, \"string\", word, true/false or [list]");
    }
    v->s = t->text;
    t->text = NULL;
    return lex_next(lx);
}

static int value(lexer *lx, ast_value *v)
{
    if (lx->tok.kind != T_LBRACK) return scalar(lx, v);
    memset(v, 0, sizeof *v);
    v->kind = AST_LIST;
    v->line = lx->tok.line;
    v->col = lx->tok.col;
    int cap = 0, rc = lex_next(lx);
    while (rc == 0 && lx->tok.kind != T_RBRACK) {
        if (lx->tok.kind == T_LBRACK) {
            rc = lx_fail(lx, lx->tok.line, lx->tok.col, "lists cannot be nested; expected a "
                         "number, \"string\" or word");
            break;
        }
        if (lx->tok.kind == T_EOF) {
            rc = lx_fail(lx, v->line, v->col, "list is never closed; expected ']'");
            break;
        }
        if (v->nitems == cap) {
            cap = cap ? 2 * cap : 4;
            v->items = xrealloc(v->items, (size_t)cap * sizeof *v->items);
        }
        rc = scalar(lx, &v->items[v->nitems]);
        if (rc) { ast_value_release(&v->items[v->nitems]); break; }
        v->nitems++;
        if (lx->tok.kind == T_COMMA) { rc = lex_next(lx); continue; }
        if (lx->tok.kind == T_EOF) { rc = lx_fail(lx, v->line, v->col, "list is never closed; expected ']'"); break; }
        if (lx->tok.kind != T_RBRACK) { rc = unexpected(lx, "',' or ']' in the list"); break; }
    }
    if (rc == 0) rc = lex_next(lx);     /* past ']' */
    if (rc) ast_value_release(v);
    return rc;
}

static int block(lexer *lx, ast_block *b)
{
    int rc;
    memset(b, 0, sizeof *b);
    if (lx->tok.kind != T_WORD)
        return unexpected(lx, "a node definition: NAME = STAGE { key = value ... }");
    if (strchr(lx->tok.text, '.'))
        return lx_fail(lx, lx->tok.line, lx->tok.col, "node name '%s' must not contain '.' "
                       "(NAME.OUTPUT refers to an output)", lx->tok.text);
    b->name = lx->tok.text; lx->tok.text = NULL;
    b->line = lx->tok.line; b->col = lx->tok.col;
    if ((rc = lex_next(lx))) return rc;
    if (lx->tok.kind != T_EQ) return unexpected(lx, "'=' after the node name, as in NAME = STAGE { ... }");
    if ((rc = lex_next(lx))) return rc;
    if (lx->tok.kind != T_WORD || strchr(lx->tok.text, '.'))
        return unexpected(lx, "a stage name after '=', as in NAME = STAGE { ... }");
    b->stage = lx->tok.text; lx->tok.text = NULL;
    b->sline = lx->tok.line; b->scol = lx->tok.col;
    if ((rc = lex_next(lx))) return rc;
    if (lx->tok.kind != T_LBRACE) return unexpected(lx, "'{' after the stage name");
    int open_line = lx->tok.line, open_col = lx->tok.col;
    if ((rc = lex_next(lx))) return rc;
    int cap = 0;
    for (;;) {
        if (lx->tok.kind == T_RBRACE) return lex_next(lx);
        if (lx->tok.kind == T_COMMA || lx->tok.kind == T_SEMI) {
            if ((rc = lex_next(lx))) return rc;
            continue;
        }
        if (lx->tok.kind == T_EOF)
            return lx_fail(lx, open_line, open_col, "'{' of node '%s' is never closed; expected '}'",
                           b->name);
        if (lx->tok.kind != T_WORD) return unexpected(lx, "a parameter name or '}'");
        if (strchr(lx->tok.text, '.'))
            return lx_fail(lx, lx->tok.line, lx->tok.col, "parameter name '%s' must not contain '.'",
                           lx->tok.text);
        if (b->n == cap) {
            cap = cap ? 2 * cap : 8;
            b->entries = xrealloc(b->entries, (size_t)cap * sizeof *b->entries);
        }
        ast_entry *e = &b->entries[b->n];
        memset(e, 0, sizeof *e);
        e->key = lx->tok.text; lx->tok.text = NULL;
        e->line = lx->tok.line; e->col = lx->tok.col;
        b->n++;                         /* owned by b from here on */
        if ((rc = lex_next(lx))) return rc;
        if (lx->tok.kind != T_EQ) {
            char tb[128];
            return lx_fail(lx, lx->tok.line, lx->tok.col, "unexpected %s after '%s'; expected '=' "
                           "as in %s = VALUE", tok_name(&lx->tok, tb, sizeof tb), e->key, e->key);
        }
        if ((rc = lex_next(lx))) return rc;
        if (lx->tok.kind == T_RBRACE || lx->tok.kind == T_EOF)
            return unexpected(lx, "a value after '='");
        if ((rc = value(lx, &e->v))) return rc;
    }
}

/* Position of byte offset off: line and column (bytes, from 1). */
static void position(const char *text, size_t off, int *line, int *col)
{
    int l = 1;
    size_t ls = 0;
    for (size_t i = 0; i < off; i++)
        if (text[i] == '\n') { l++; ls = i + 1; }
    *line = l;
    *col = (int)(off - ls) + 1;
}

int ast_parse(const char *text, size_t len, const char *fname, ast_file *out, flow_err *err)
{
    memset(out, 0, sizeof *out);
    long bad = utf8_first_invalid((const unsigned char *)text, len);
    if (bad >= 0) {
        int line, col;
        position(text, (size_t)bad, &line, &col);
        return flow_fail(err, FLOW_E_GRAPH, "%s:%d:%d: error: invalid UTF-8 (byte 0x%02x); "
                         "expected the graph file to be saved as UTF-8", fname, line, col,
                         (unsigned char)text[bad]);
    }
    lexer lx = { .p = text, .end = text + len, .line_start = text, .line = 1,
                 .fname = fname, .err = err };
    /* skip a UTF-8 byte order mark */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) lx.p += 3;
    int rc = lex_next(&lx), cap = 0;
    while (rc == 0 && lx.tok.kind != T_EOF) {
        if (out->n == cap) {
            cap = cap ? 2 * cap : 16;
            out->blocks = xrealloc(out->blocks, (size_t)cap * sizeof *out->blocks);
        }
        rc = block(&lx, &out->blocks[out->n]);
        out->n++;           /* partially filled blocks are released below */
    }
    tok_clear(&lx.tok);
    if (rc) ast_release(out);
    return rc;
}

int ast_parse_value(const char *text, const char *what, ast_value *out, flow_err *err)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(text);
    if (utf8_first_invalid((const unsigned char *)text, len) >= 0)
        return flow_fail(err, FLOW_E_USAGE, "%s: error: the value is not valid UTF-8", what);
    lexer lx = { .p = text, .end = text + len, .line_start = text, .line = 1,
                 .what = what, .err = err };
    int rc = lex_next(&lx);
    if (rc == 0 && lx.tok.kind == T_EOF)
        rc = flow_fail(err, FLOW_E_GRAPH, "%s: error: empty value; expected a number, \"string\", "
                       "word, true/false or [list]", what);
    if (rc == 0) {
        rc = value(&lx, out);
        if (rc) ast_value_release(out);
    }
    if (rc == 0 && lx.tok.kind != T_EOF) {
        rc = unexpected(&lx, "the end of the value");
        ast_value_release(out);
    }
    tok_clear(&lx.tok);
    return rc;
}
