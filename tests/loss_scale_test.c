/* loss_scale_test.c — fp16 dynamic loss scaling's checkpoint record
 * (stages/model/trainer.h tr_scaler_pack / tr_scaler_unpack, train_dp.c),
 * the part of "a resumed fp16 run goes on with the same scale" that runs
 * without a GPU (fp16 training itself needs one: train_gpu_test.sh kills
 * and resumes an fp16 pretrain there).  Checks: every reachable state
 * (scales 1 .. 2^30, good 0 .. 1999, skipped 0 .. step) comes back
 * exactly; the record is 24 bytes with its tag first; a wrong tag, a scale
 * that is not a power of two >= 1 (0.5, 3, 0, -2, inf, NaN), good outside
 * [0, 2000) and skipped outside [0, step] are refused, leaving the state
 * as it was. */
#include "test.h"
#include "stages/model/trainer.h"

#include <math.h>
#include <string.h>

static int roundtrip(tr_scaler in, long step)
{
    unsigned char rec[TR_SCALER_BYTES];
    tr_scaler_pack(&in, rec);
    tr_scaler out = { 7.0f, 5, 5 };
    if (tr_scaler_unpack(&out, rec, step)) return 0;
    return memcmp(&out.scale, &in.scale, sizeof in.scale) == 0 && out.good == in.good && out.skipped == in.skipped;
}

/* the record of `in` with the 4 bytes at off replaced by v, refused? */
static int refused_with(tr_scaler in, long step, size_t off, const void *v, size_t len)
{
    unsigned char rec[TR_SCALER_BYTES];
    tr_scaler_pack(&in, rec);
    memcpy(rec + off, v, len);
    tr_scaler out = { 8.0f, 3, 2 };
    int rc = tr_scaler_unpack(&out, rec, step);
    return rc == -1 && out.scale == 8.0f && out.good == 3 && out.skipped == 2;
}

int main(void)
{
    int ok = 1;
    for (int e = 0; e <= 30; e++)
        for (long good = 0; good < 2000; good += 333)
            ok &= roundtrip((tr_scaler){ ldexpf(1.0f, e), good, e * 3L }, 100);
    CHECK_MSG(ok, "every scale 2^0 .. 2^30 with good 0 .. 1998 comes back exactly");
    CHECK(roundtrip((tr_scaler){ 65536.0f, 1999, 40 }, 40));
    CHECK(roundtrip((tr_scaler){ 1.0f, 0, 0 }, 0));
    unsigned char rec[TR_SCALER_BYTES];
    tr_scaler_pack(&(tr_scaler){ 65536.0f, 12, 3 }, rec);
    CHECK(memcmp(rec, "fp16ls01", 8) == 0);
    tr_scaler base = { 65536.0f, 12, 3 };
    float bad[6] = { 0.5f, 3.0f, 0.0f, -2.0f, INFINITY, NAN };
    for (int i = 0; i < 6; i++)
        CHECK_MSG(refused_with(base, 40, 8, &bad[i], 4), "scale %g refused, the state kept", (double)bad[i]);
    int32_t g[2] = { -1, 2000 };
    for (int i = 0; i < 2; i++) CHECK_MSG(refused_with(base, 40, 12, &g[i], 4), "good %d refused", (int)g[i]);
    int64_t sk[2] = { -1, 41 };
    for (int i = 0; i < 2; i++)
        CHECK_MSG(refused_with(base, 40, 16, &sk[i], 8), "skipped %lld at step 40 refused", (long long)sk[i]);
    CHECK_MSG(refused_with(base, 40, 0, "fp16ls02", 8), "another tag refused");
    CHECK_MSG(!refused_with(base, 40, 16, &(int64_t){ 40 }, 8), "skipped = step accepted");
    return test_summary("loss_scale_test");
}
