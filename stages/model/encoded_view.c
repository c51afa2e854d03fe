/* encoded_view.c — reads an encoded corpus (format in stages.h: ids,
 * offsets, labels with "FLOWIDS"/"FLOWOFF"/"FLOWLAB" headers) into memory
 * for pretrain and finetune, validating every header, count and range. */
#include "classifier.h"

#include <stdlib.h>
#include <string.h>

void encv_release(enc_view *v)
{
    free(v->ids);
    free(v->off);
    free(v->label);
    memset(v, 0, sizeof *v);
}

/* Checks "MAGIC\0" u32 version=1 u32 aux u64 count; returns the payload. */
static int header(const char *p, size_t len, const char *magic, const char *part, const char *what,
                  uint32_t *aux, uint64_t *count, flow_err *err)
{
    if (len < 24 || memcmp(p, magic, 8) != 0)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: part '%s' is not an encoded %s part (bad header)", what, part, part);
    uint32_t ver;
    memcpy(&ver, p + 8, 4);
    memcpy(aux, p + 12, 4);
    memcpy(count, p + 16, 8);
    if (ver != 1)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: part '%s' has format version %u, this flow reads version 1; rebuild the encode node",
                         what, part, ver);
    return 0;
}

int encv_parse(enc_view *v, const char *ids, size_t ids_len, const char *off, size_t off_len,
               const char *lab, size_t lab_len, const char *what, flow_err *err)
{
    memset(v, 0, sizeof *v);
    uint32_t width, aux;
    uint64_t nids, noff, nlab;
    int rc;
    if ((rc = header(ids, ids_len, "FLOWIDS", "ids", what, &width, &nids, err))) return rc;
    if (width != 2 && width != 4)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: part 'ids' has id width %u (expected 2 or 4)", what, width);
    if ((ids_len - 24) / width < nids)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: part 'ids' is truncated (%llu ids announced, %zu bytes)",
                         what, (unsigned long long)nids, ids_len);
    if ((rc = header(off, off_len, "FLOWOFF", "offsets", what, &aux, &noff, err))) return rc;
    if (noff < 1 || (off_len - 24) / 8 < noff)
        return flow_fail(err, FLOW_E_CORRUPT, "%s: part 'offsets' is truncated or empty", what);
    v->n = (size_t)(noff - 1);
    v->nids = nids;
    v->ids = xmalloc((size_t)(nids ? nids : 1) * sizeof *v->ids);
    for (uint64_t i = 0; i < nids; i++) {
        if (width == 2) { uint16_t x; memcpy(&x, ids + 24 + 2 * i, 2); v->ids[i] = x; }
        else { uint32_t x; memcpy(&x, ids + 24 + 4 * i, 4); v->ids[i] = (int32_t)x; }
    }
    v->off = xmalloc((size_t)noff * sizeof *v->off);
    memcpy(v->off, off + 24, (size_t)noff * 8);
    if (v->off[0] != 0 || v->off[v->n] != nids) goto bad_off;
    for (size_t i = 0; i < v->n; i++) if (v->off[i + 1] < v->off[i]) goto bad_off;
    if (lab) {
        if ((rc = header(lab, lab_len, "FLOWLAB", "labels", what, &aux, &nlab, err))) { encv_release(v); return rc; }
        if (nlab != v->n || (lab_len - 24) / 4 < nlab) {
            encv_release(v);
            return flow_fail(err, FLOW_E_CORRUPT, "%s: part 'labels' has %llu entries for %zu sequences",
                             what, (unsigned long long)nlab, v->n);
        }
        v->label = xmalloc((v->n ? v->n : 1) * sizeof *v->label);
        memcpy(v->label, lab + 24, v->n * 4);
    }
    return 0;
bad_off:
    encv_release(v);
    return flow_fail(err, FLOW_E_CORRUPT, "%s: part 'offsets' is not a monotone list from 0 to the id count", what);
}

/* Appends src's sequences to dst (offsets shifted; labels kept only when
 * both have them, else dropped: pretrain ignores labels). */
void encv_append(enc_view *dst, const enc_view *src)
{
    dst->ids = xrealloc(dst->ids, (size_t)(dst->nids + src->nids + 1) * sizeof *dst->ids);
    memcpy(dst->ids + dst->nids, src->ids, (size_t)src->nids * sizeof *dst->ids);
    dst->off = xrealloc(dst->off, (dst->n + src->n + 1) * sizeof *dst->off);
    for (size_t i = 1; i <= src->n; i++) dst->off[dst->n + i] = dst->nids + src->off[i];
    if (dst->label && src->label) {
        dst->label = xrealloc(dst->label, (dst->n + src->n + 1) * sizeof *dst->label);
        memcpy(dst->label + dst->n, src->label, src->n * sizeof *dst->label);
    } else {
        free(dst->label);
        dst->label = NULL;
    }
    dst->n += src->n;
    dst->nids += src->nids;
}

int encv_read(flow_ctx *c, const char *port, int idx, enc_view *v)
{
    char *ids = NULL, *off = NULL, *lab = NULL;
    size_t il, ol, ll = 0;
    int rc;
    memset(v, 0, sizeof *v);
    if ((rc = flow_in_read(c, port, idx, "ids", &ids, &il)) ||
        (rc = flow_in_read(c, port, idx, "offsets", &off, &ol))) {
        free(ids);
        return flow_ctx_fail(c, rc, "input '%s': cannot read the encoded parts ids/offsets (bind it to an encode output such as encode.train)", port);
    }
    if (flow_in_has(c, port, idx, "labels") && (rc = flow_in_read(c, port, idx, "labels", &lab, &ll))) {
        free(ids);
        free(off);
        return flow_ctx_fail(c, rc, "input '%s': cannot read part 'labels'", port);
    }
    char what[128];
    snprintf(what, sizeof what, "input '%s'", port);
    flow_err err = { 0 };
    rc = encv_parse(v, ids, il, off, ol, lab, ll, what, &err);
    free(ids);
    free(off);
    free(lab);
    if (rc) return flow_ctx_fail(c, rc, "%s", err.msg);
    return 0;
}
