/* parts_digest.c — lists every artifact of a cache with the hash of each
 * part's bytes, for tests that compare the outputs of two builds
 * (tests/threads_legal_slow_test.sh).
 *
 *   parts_digest CACHE
 *       one line per part: node \t key \t threads \t part \t size \t hash,
 *       sorted by node and part.  hash is XXH3-128 of the part's bytes as
 *       read back through store_read_part (computed here, not taken from the
 *       store's manifest); threads is what the node's run recorded.
 */
#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lines { char **s; size_t n, cap; flow_store *st; int rc; flow_err err; } lines;

static int add_artifact(const store_artifact *a, void *arg)
{
    lines *L = arg;
    json_value *m = NULL;
    flow_err e;
    if (!a->meta_json || json_parse(a->meta_json, strlen(a->meta_json), "metadata", &m, &e)) {
        fprintf(stderr, "parts_digest: an artifact has no readable metadata\n");
        L->rc = 1;
        return 1;
    }
    char key[33];
    flow_hash_hex(&a->key, key);
    const char *node = json_str(json_get(m, "node"), "?");
    int threads = (int)json_num(json_get(m, "threads"), -1);
    for (int i = 0; i < a->nparts; i++) {
        char *data = NULL;
        size_t len = 0;
        if (store_read_part(L->st, &a->key, a->parts[i].name, &data, &len, &L->err)) {
            L->rc = 1;
            json_free(m);
            return 1;
        }
        flow_hash h = flow_hash_bytes(data, len);
        free(data);
        char hex[33];
        flow_hash_hex(&h, hex);
        if (L->n == L->cap) {
            L->cap = L->cap ? 2 * L->cap : 256;
            L->s = xrealloc(L->s, L->cap * sizeof *L->s);
        }
        size_t need = strlen(node) + strlen(a->parts[i].name) + 128;
        L->s[L->n] = xmalloc(need);
        snprintf(L->s[L->n++], need, "%s\t%s\t%d\t%s\t%zu\t%s", node, key, threads,
                 a->parts[i].name, len, hex);
    }
    json_free(m);
    return 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: parts_digest CACHE\n");
        return 2;
    }
    lines L = {0};
    store_options opt = {0};
    if (store_open(&L.st, argv[1], &opt, &L.err)) {
        fprintf(stderr, "parts_digest: %s\n", L.err.msg);
        return 1;
    }
    flow_err e;
    if (store_foreach(L.st, add_artifact, &L, &e) && !L.rc) {
        fprintf(stderr, "parts_digest: %s\n", e.msg);
        L.rc = 1;
    } else if (L.rc && L.err.msg[0]) {
        fprintf(stderr, "parts_digest: %s\n", L.err.msg);
    }
    if (L.n)
        qsort(L.s, L.n, sizeof *L.s, cmp_str);
    for (size_t i = 0; i < L.n; i++) {
        if (!L.rc)
            puts(L.s[i]);
        free(L.s[i]);
    }
    free(L.s);
    store_close(L.st);
    return L.rc;
}
