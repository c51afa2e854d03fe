/* bpe_sort_test.c — the spill's sort of the word table (bpe_sort_slots in
 * stages/tokenizer/bpe_spill.c: in-place radix sort on the tag, insertion
 * sort below 32 slots, introsort among slots of one tag) against qsort
 * with the runs' order written out plainly (tag, then key bytes, then
 * length): random tags, tags from a few values (long runs of one tag,
 * so the introsort and the key comparison decide), tags that share their
 * high bytes, and every size around the insertion-sort cutoff. */
#include "test.h"
#include "stages/tokenizer/bpe_count.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* the order the runs are written in, without the sort's shortcuts */
static int ref_cmp(const void *x, const void *y)
{
    const bpe_slot *a = x, *b = y;
    if (a->h != b->h)
        return a->h < b->h ? -1 : 1;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->rec + BPE_REC_HEAD, b->rec + BPE_REC_HEAD, n);
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

enum { TAGS_RANDOM, TAGS_FEW, TAGS_LOW_BYTE, TAGS_ONE };

static uint32_t make_tag(int kind)
{
    switch (kind) {
    case TAGS_RANDOM: return rnd(0xFFFFFFFFu) | 1;
    case TAGS_FEW: return (rnd(4) << 24) | 1;           /* long runs of one tag */
    case TAGS_LOW_BYTE: return 0xAB120000u | (rnd(256) << 8) | (rnd(128) << 1) | 1;
    default: return 0x12345679u;
    }
}

/* n distinct keys (a serial number makes them distinct, random bytes in
 * front of it make them unordered), sorted both ways; 1 when the orders
 * agree slot for slot. */
static int sorts_alike(size_t n, int kind)
{
    bpe_arena a = {0};
    bpe_slot *v = malloc((n ? n : 1) * sizeof *v), *w = malloc((n ? n : 1) * sizeof *w);
    for (size_t i = 0; i < n; i++) {
        char key[64];
        int m = (int)rnd(6);
        for (int j = 0; j < m; j++)
            key[j] = (char)("ab\xe6\xb3\x95"[rnd(5)]);
        int len = m + snprintf(key + m, sizeof key - (size_t)m, "%zx", i * 7919 % (n * 8 + 1));
        if (rnd(3) == 0)
            len = m;            /* some keys are prefixes of others */
        key[len] = 0;
        /* a made-up key may repeat: keep the keys distinct, as the table's are */
        len += snprintf(key + len, sizeof key - (size_t)len, "#%zu", i);
        v[i] = (bpe_slot){bpe_arena_record(&a, key, (uint32_t)len, i), (uint32_t)len,
                          make_tag(kind)};
    }
    memcpy(w, v, n * sizeof *v);
    bpe_sort_slots(v, n);
    qsort(w, n, sizeof *w, ref_cmp);
    int same = 1;
    for (size_t i = 0; i < n && same; i++)
        same = v[i].rec == w[i].rec && v[i].h == w[i].h && v[i].len == w[i].len;
    free(v);
    free(w);
    bpe_arena_release(&a);
    return same;
}

int main(void)
{
    static const char *const names[] = {"random", "few", "low byte", "one"};
    for (int kind = TAGS_RANDOM; kind <= TAGS_ONE; kind++) {
        for (size_t n = 0; n <= 70; n++)
            CHECK_MSG(sorts_alike(n, kind), "%zu slots, %s tags", n, names[kind]);
        static const size_t big[] = {255, 256, 257, 1000, 4097, 30000, 200000};
        for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
            if (kind == TAGS_ONE && big[i] > 30000)
                continue;       /* one tag: introsort over records, the slow path */
            CHECK_MSG(sorts_alike(big[i], kind), "%zu slots, %s tags", big[i], names[kind]);
        }
    }
    return test_summary("bpe_sort_test");
}
