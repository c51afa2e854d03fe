/* rng_test.c — splitmix64_next (engine/base/rng.c), the seeded generator of
 * split assignment: the reference stream, so seeded splits stay the same
 * on every platform and release. */
#include "test.h"
#include "engine/engine.h"

int main(void)
{
    /* reference values of splitmix64 (Vigna's splitmix64.c, seed 0) */
    uint64_t s = 0;
    CHECK(splitmix64_next(&s) == 0xe220a8397b1dcdafull);
    CHECK(splitmix64_next(&s) == 0x6e789e6aa1b965f4ull);
    CHECK(splitmix64_next(&s) == 0x06c45d188009454full);
    /* the state is the whole generator: equal states, equal streams */
    uint64_t a = 42, b = 42;
    for (int i = 0; i < 1000; i++) CHECK(splitmix64_next(&a) == splitmix64_next(&b));
    return test_summary("rng_test");
}
