/* part_source.c — reading a model artifact's parts either from a running
 * stage's input (evaluate, finetune) or straight from the store (the
 * classify / eval / export commands), behind one small interface, so the
 * classifier loader does not care where the model lives. */
#include "classifier.h"

#include <stdlib.h>
#include <string.h>

static int ctx_read(void *arg, const char *part, char **data, size_t *len, flow_err *err)
{
    part_source *ps = arg;
    if (!flow_in_has(ps->ctx, ps->port, ps->idx, part))
        return flow_fail(err, FLOW_E_NOTFOUND, "%s: no part '%s'", ps->what, part);
    int rc = flow_in_read(ps->ctx, ps->port, ps->idx, part, data, len);
    if (rc) return flow_fail(err, rc, "%s: cannot read part '%s'", ps->what, part);
    return 0;
}

static int ctx_count(void *arg)
{
    part_source *ps = arg;
    return flow_in_nparts(ps->ctx, ps->port, ps->idx);
}

static const char *ctx_name(void *arg, int i)
{
    part_source *ps = arg;
    return flow_in_part_name(ps->ctx, ps->port, ps->idx, i);
}

void part_source_ctx(part_source *ps, flow_ctx *c, const char *port, int idx)
{
    memset(ps, 0, sizeof *ps);
    ps->read = ctx_read;
    ps->count = ctx_count;
    ps->name = ctx_name;
    ps->arg = ps;
    ps->ctx = c;
    ps->port = port;
    ps->idx = idx;
    snprintf(ps->what, sizeof ps->what, "input '%s' #%d", port, idx);
}

static int store_src_read(void *arg, const char *part, char **data, size_t *len, flow_err *err)
{
    part_source *ps = arg;
    char full[1024];
    snprintf(full, sizeof full, "%s%s", ps->prefix, part);
    int k = store_part_find(ps->art, full);
    if (k < 0) return flow_fail(err, FLOW_E_NOTFOUND, "%s: no part '%s'", ps->what, full);
    return store_handle_read(ps->h, k, data, len, err);
}

/* Parts under the prefix, in manifest order: one contiguous run, since the
 * parts are sorted by name. */
static int store_src_count(void *arg)
{
    part_source *ps = arg;
    return ps->hi - ps->lo;
}

static const char *store_src_name(void *arg, int k)
{
    part_source *ps = arg;
    if (k < 0 || k >= ps->hi - ps->lo) return NULL;
    return ps->art->parts[ps->lo + k].name + strlen(ps->prefix);
}

int part_source_store(part_source *ps, flow_store *s, const flow_hash *key,
                      const char *prefix, flow_err *err)
{
    memset(ps, 0, sizeof *ps);
    int rc = store_handle_open(s, key, &ps->h, err);
    if (rc) return rc;
    ps->art = store_handle_artifact(ps->h);
    ps->read = store_src_read;
    ps->count = store_src_count;
    ps->name = store_src_name;
    ps->arg = ps;
    ps->store = s;
    snprintf(ps->prefix, sizeof ps->prefix, "%s", prefix ? prefix : "");
    size_t pl = strlen(ps->prefix);
    int lo = 0, hi = ps->art->nparts;   /* first part >= prefix */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(ps->art->parts[mid].name, ps->prefix) < 0) lo = mid + 1;
        else hi = mid;
    }
    ps->lo = ps->hi = lo;
    while (ps->hi < ps->art->nparts && strncmp(ps->art->parts[ps->hi].name, ps->prefix, pl) == 0)
        ps->hi++;
    char hex[33];
    flow_hash_hex(key, hex);
    snprintf(ps->what, sizeof ps->what, "artifact %.12s", hex);
    return 0;
}

void part_source_release(part_source *ps)
{
    store_handle_free(ps->h);
    ps->h = NULL;
    ps->art = NULL;
}

int part_source_copy(part_source *ps, flow_ctx *out, const char *from_prefix,
                     const char *to_prefix, flow_err *err)
{
    int n = ps->count(ps->arg), copied = 0;
    size_t fl = strlen(from_prefix);
    for (int i = 0; i < n; i++) {
        const char *name = ps->name(ps->arg, i);
        if (!name || strncmp(name, from_prefix, fl) != 0) continue;
        char *data;
        size_t len;
        int rc = ps->read(ps->arg, name, &data, &len, err);
        if (rc) return rc;
        char dst[1024];
        snprintf(dst, sizeof dst, "%s%s", to_prefix, name + fl);
        rc = flow_out_write(out, dst, FLOW_PART_BYTES, data, len);
        free(data);
        if (rc) return flow_fail(err, rc, "cannot write part '%s'", dst);
        copied++;
    }
    return copied;
}

static int out_stream_write(void *arg, const void *p, size_t n)
{
    return flow_out_stream_write(arg, p, n);
}

/* Streams a safetensors file into an output part: the header, then each
 * tensor straight from its source buffer (no copy of the whole model). */
int st_write(st_file *w, flow_ctx *c, const char *part)
{
    flow_out_stream *s;
    int rc = flow_out_open(c, part, FLOW_PART_F32, &s);
    if (rc) return rc;
    rc = st_write_stream(w, out_stream_write, s);
    int rc2 = flow_out_stream_close(s);
    return rc ? rc : rc2;
}

