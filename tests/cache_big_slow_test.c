/* cache_big_slow_test.c — a part larger than 2 GiB (4 GiB would not fit
 * 32-bit lengths anywhere) streamed into the store and streamed back:
 * mostly zeros with pseudo-random 1 MiB blocks, written and read in odd
 * piece sizes, verified by hashing both streams.  Also checks that the
 * zero chunks are stored once and the stored size stays small. */
#include "cache/cache.h"
#include "test.h"

#define PIECE (1u << 20)
static const uint64_t TOTAL = (2ull << 30) + (3u << 20) + 123;

/* piece p of the stream: zeros, or random bytes seeded by p */
static void make_piece(uint64_t p, char *buf)
{
    if (p % 37 != 5) { memset(buf, 0, PIECE); return; }
    uint64_t x = 0x9e3779b97f4a7c15ull * (p + 1);
    for (size_t i = 0; i < PIECE; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
}

int main(void)
{
    char *root = test_tmpdir("cachebig");
    flow_err err;
    flow_store *s;
    store_options o = {0};
    o.initial_map_size = 16u << 20;       /* grows as needed */
    CHECK_OK(store_open(&s, root, &o, &err), err);
    if (!s) return test_summary("cache_big_slow_test");
    flow_hash key = flow_hash_bytes("big", 3);
    char *piece = malloc(PIECE);
    flow_hasher *hw = flow_hasher_new();
    store_writer *w;
    CHECK_OK(store_writer_new(s, &w, &err), err);
    CHECK_OK(store_part_begin(w, "big", FLOW_PART_BYTES, &err), err);
    /* write in pieces of varying size that straddle chunk boundaries */
    uint64_t at = 0, p = 0;
    size_t cut = 0;
    make_piece(0, piece);
    while (at < TOTAL) {
        size_t left = PIECE - cut;
        size_t n = (size_t)((at + 333333) / 7 % 400000) + 1;
        if (n > left) n = left;
        if (n > TOTAL - at) n = (size_t)(TOTAL - at);
        flow_hasher_update(hw, piece + cut, n);
        if (store_part_write(w, piece + cut, n, &err)) { CHECK_OK(-1, err); break; }
        at += n;
        cut += n;
        if (cut == PIECE) { cut = 0; make_piece(++p, piece); }
    }
    CHECK_OK(store_part_end(w, &err), err);
    CHECK_OK(store_writer_commit(w, &key, "{}", "", 0, &err), err);
    store_writer_free(w);
    flow_hash want = flow_hasher_digest(hw);
    flow_hasher_free(hw);

    store_artifact *a = NULL;
    CHECK_OK(store_get(s, &key, &a, &err), err);
    if (a) {
        CHECK(a->nparts == 1 && a->parts[0].size == TOTAL);
        /* ~56 random MiB stored raw, the zeros once */
        CHECK_MSG(a->parts[0].stored < TOTAL / 4, "stored %llu", (unsigned long long)a->parts[0].stored);
    }
    store_stats st;
    CHECK_OK(store_stats_get(s, &st, &err), err);
    CHECK_MSG(st.chunks < 120, "chunks %llu", (unsigned long long)st.chunks);
    CHECK_MSG(st.file_size < (300u << 20), "file %llu", (unsigned long long)st.file_size);

    store_reader *r = NULL;
    CHECK_OK(store_reader_open(s, &key, "big", &r, &err), err);
    if (r) {
        flow_hasher *hr = flow_hasher_new();
        size_t cap = 3000017;
        char *buf = malloc(cap);
        uint64_t got = 0;
        long long k;
        while ((k = store_reader_read(r, buf, cap, &err)) > 0) {
            flow_hasher_update(hr, buf, (size_t)k);
            got += (uint64_t)k;
        }
        CHECK_MSG(k == 0, "read: %s", err.msg);
        CHECK(got == TOTAL);
        flow_hash h = flow_hasher_digest(hr);
        CHECK(flow_hash_eq(&h, &want));
        flow_hasher_free(hr);
        free(buf);
        store_reader_free(r);
    }
    CHECK_OK(store_verify(s, NULL, NULL, &err), err);
    store_artifact_free(a);
    store_close(s);
    free(piece);
    if (!test_failures) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    free(root);
    return test_summary("cache_big_slow_test");
}
