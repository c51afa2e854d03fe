/* hash.c — XXH3-128 content hashes (one-shot and streaming) and their hex
 * form. */
#include "base.h"

#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- hashing ---- */

static flow_hash from_xxh128(XXH128_hash_t x)
{
    flow_hash h;
    for (int i = 0; i < 8; i++) {
        h.b[i] = (uint8_t)(x.high64 >> (56 - 8 * i));
        h.b[8 + i] = (uint8_t)(x.low64 >> (56 - 8 * i));
    }
    return h;
}

flow_hash flow_hash_bytes(const void *p, size_t n) { return from_xxh128(XXH3_128bits(p, n)); }

void flow_hash_hex(const flow_hash *h, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[h->b[i] >> 4];
        out[2 * i + 1] = hex[h->b[i] & 15];
    }
    out[32] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int flow_hash_parse(const char *hex, flow_hash *out)
{
    if (strlen(hex) != 32) return FLOW_E_USAGE;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return FLOW_E_USAGE;
        out->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int flow_hash_eq(const flow_hash *a, const flow_hash *b) { return memcmp(a->b, b->b, 16) == 0; }

int flow_hash_is_zero(const flow_hash *h)
{
    for (int i = 0; i < 16; i++) if (h->b[i]) return 0;
    return 1;
}

struct flow_hasher { XXH3_state_t *st; };

flow_hasher *flow_hasher_new(void)
{
    flow_hasher *h = xmalloc(sizeof *h);
    h->st = XXH3_createState();
    if (!h->st) FLOW_BUG("out of memory (XXH3 state)");
    XXH3_128bits_reset(h->st);
    return h;
}

void flow_hasher_update(flow_hasher *h, const void *p, size_t n) { XXH3_128bits_update(h->st, p, n); }
flow_hash flow_hasher_digest(flow_hasher *h) { return from_xxh128(XXH3_128bits_digest(h->st)); }

void flow_hasher_free(flow_hasher *h)
{
    if (!h) return;
    XXH3_freeState(h->st);
    free(h);
}
