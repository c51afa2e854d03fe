/* vmath_body.h — exp and the normal CDF on GCC vector types, one body for
 * every vector width.  bert_ops.c includes it once per width with
 *   VM_F   the float vector type (v8f, v16f)
 *   VM_I   the int32 vector of the same lane count (v8i, v16i)
 *   VM_S   the suffix of the generated names (empty for 8 lanes, 16)
 * and gets VM_S-suffixed vsel, vexp and vphi.  The operations are the same
 * IEEE operations lane by lane at every width (no FMA: the wide callers are
 * compiled with fp-contract off, and the 8-lane ones have no FMA target),
 * so each lane's result does not depend on the width: kernels_test compares
 * the widths bit for bit.  Not a header of its own: only bert_ops.c includes
 * it.
 */
#define VM_CAT2(a, b) a##b
#define VM_CAT(a, b) VM_CAT2(a, b)
#define VM(f) VM_CAT(f, VM_S)
#define VM_C(x) ((VM_F){ 0 } + (x))     /* x in every lane */
#define VM_AI static inline __attribute__((always_inline))

VM_AI VM_F VM(vsel)(VM_I m, VM_F a, VM_F b)    /* m ? a : b, lane-wise */
{
    return (VM_F)(((VM_I)a & m) | ((VM_I)b & ~m));
}

/* Cephes expf: range reduction by ln2 and a degree-6 polynomial
 * (relative error ~1e-7); inputs clamped to [-87, 88]. */
VM_AI VM_F VM(vexp)(VM_F x)
{
    x = VM(vsel)(x < VM_C(-87.0f), VM_C(-87.0f), x);
    x = VM(vsel)(x > VM_C(88.0f), VM_C(88.0f), x);
    VM_F t = x * VM_C(1.44269504088896341f);
    VM_F r = (t + VM_C(12582912.0f)) - VM_C(12582912.0f);       /* round to nearest */
    VM_F f = x - r * VM_C(0.693145751953125f) - r * VM_C(1.428606765330187045e-06f);
    VM_F p = VM_C(1.9875691500E-4f);
    p = p * f + VM_C(1.3981999507E-3f);
    p = p * f + VM_C(8.3334519073E-3f);
    p = p * f + VM_C(4.1665795894E-2f);
    p = p * f + VM_C(1.6666665459E-1f);
    p = p * f + VM_C(5.0000001201E-1f);
    p = p * f * f + f + VM_C(1.0f);
    VM_I n = __builtin_convertvector(r, VM_I);
    return p * (VM_F)((n + 127) << 23);
}

/* Phi(x) = 0.5 erfc(-x/sqrt2), erfc(|z|) by Abramowitz-Stegun 7.1.26
 * (absolute error 1.5e-7), computed as erfc so the left tail keeps its
 * relative accuracy. */
VM_AI VM_F VM(vphi)(VM_F x)
{
    VM_F z = x * VM_C(0.70710678118654752f);
    VM_I neg = z < VM_C(0.0f);
    VM_F a = VM(vsel)(neg, -z, z);
    VM_F t = VM_C(1.0f) / (VM_C(1.0f) + VM_C(0.3275911f) * a);
    VM_F p = VM_C(1.061405429f);
    p = p * t - VM_C(1.453152027f);
    p = p * t + VM_C(1.421413741f);
    p = p * t - VM_C(0.284496736f);
    p = p * t + VM_C(0.254829592f);
    VM_F q = VM_C(0.5f) * p * t * VM(vexp)(-a * a);   /* 0.5 erfc(a) */
    return VM(vsel)(neg, q, VM_C(1.0f) - q);
}

#undef VM_AI
#undef VM_C
#undef VM
#undef VM_CAT
#undef VM_CAT2
