/* cpu_path.c — which integer code path runs: cpuid detection (including the
 * OS's saving of ymm/zmm state, via xgetbv), the FLOW_QUANT_PATH
 * environment switch and the test/benchmark override.
 *
 * Order of preference: AMX (INT8; 4-bit on AVX-512 VNNI), AVX-512 VNNI,
 * AVX-VNNI, AVX2, scalar.  A path that
 * is asked for but cannot run here is an error, never a silent fallback.
 */
#include "qgemm_internal.h"

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static const char *const path_names[QUANT_PATH_COUNT] = {
    "auto", "scalar", "avx2", "avxvnni", "avx512vnni", "amx",
};

const char *quant_path_name(quant_path p)
{
    return p >= 0 && p < QUANT_PATH_COUNT ? path_names[p] : "?";
}

int quant_path_parse(const char *name, quant_path *out, flow_err *e)
{
    for (int p = 0; p < QUANT_PATH_COUNT; p++)
        if (strcmp(name, path_names[p]) == 0) { *out = (quant_path)p; return 0; }
    return flow_fail(e, FLOW_E_PARAM,
                     "unknown quantized code path '%s'; expected one of: auto, scalar, avx2, avxvnni, avx512vnni, amx",
                     name);
}

typedef struct cpu_caps { int avx2, avxvnni, avx512vnni, amx; } cpu_caps;

static cpu_caps detect(void)
{
    cpu_caps c = { 0, 0, 0, 0 };
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
    int osxsave = (cx >> 27) & 1, avx = (cx >> 28) & 1;
    if (!osxsave || !avx) return c;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    int ymm_os = (lo & 0x6) == 0x6;             /* SSE + AVX state */
    int zmm_os = (lo & 0xe6) == 0xe6;           /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) < 7) return c;
    __cpuid_count(7, 0, a, b, cx, d);
    int has_avx2 = (b >> 5) & 1;
    int has_512 = ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);  /* F, BW, VL */
    int has_512vnni = (cx >> 11) & 1;
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    int has_avxvnni = (a1 >> 4) & 1;
    c.avx2 = ymm_os && has_avx2;
    c.avxvnni = c.avx2 && has_avxvnni;
    c.avx512vnni = c.avx2 && zmm_os && has_512 && has_512vnni;
    /* AMX: AMX-TILE and AMX-INT8 (leaf 7 EDX bits 24, 25), the OS saving
     * XTILECFG and XTILEDATA (XCR0 bits 17, 18), and Linux's per-process
     * grant of the tile data (arch_prctl ARCH_REQ_XCOMP_PERM) */
    int has_amx = ((d >> 24) & 1) && ((d >> 25) & 1) && (lo & 0x60000) == 0x60000;
#if defined(__linux__) && defined(__x86_64__)
    c.amx = c.avx512vnni && has_amx && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                                                18 /* XFEATURE_XTILEDATA */) == 0;
#else
    (void)has_amx;
#endif
#endif
    return c;
}

static cpu_caps caps;
static int caps_done;

static const cpu_caps *get_caps(void)
{
    if (!caps_done) { caps = detect(); caps_done = 1; }
    return &caps;
}

int quant_path_supported(quant_path p)
{
    const cpu_caps *c = get_caps();
    switch (p) {
    case QUANT_PATH_AUTO:
    case QUANT_PATH_SCALAR: return 1;
    case QUANT_PATH_AVX2: return c->avx2 && qgemm_avx2_kernels.int8_tile != NULL;
    case QUANT_PATH_AVXVNNI: return c->avxvnni && qgemm_have_avxvnni_build;
    case QUANT_PATH_AVX512VNNI: return c->avx512vnni && qgemm_have_avx512vnni_build;
    case QUANT_PATH_AMX: return c->amx && qgemm_have_amx_build && qgemm_have_avx512vnni_build;
    default: return 0;
    }
}

quant_path quant_path_best(void)
{
    for (int p = QUANT_PATH_COUNT - 1; p > QUANT_PATH_SCALAR; p--)
        if (quant_path_supported((quant_path)p)) return (quant_path)p;
    return QUANT_PATH_SCALAR;
}

/* The chosen path; 0 (AUTO) = not decided yet. */
static quant_path active;

int quant_path_force(quant_path p, flow_err *e)
{
    if (p < 0 || p >= QUANT_PATH_COUNT)
        return flow_fail(e, FLOW_E_PARAM, "quantized code path %d is out of range", (int)p);
    if (!quant_path_supported(p))
        return flow_fail(e, FLOW_E_PARAM,
                         "quantized code path '%s' cannot run here (this build or CPU lacks it; best here: %s)",
                         quant_path_name(p), quant_path_name(quant_path_best()));
    active = p == QUANT_PATH_AUTO ? quant_path_best() : p;
    return 0;
}

int quant_path_from_env(flow_err *e)
{
    const char *v = getenv("FLOW_QUANT_PATH");
    quant_path p = QUANT_PATH_AUTO;
    flow_err sub = { 0, "" };
    int rc = v && *v ? quant_path_parse(v, &p, &sub) : 0;
    if (!rc) rc = quant_path_force(p, &sub);
    if (rc) {
        active = QUANT_PATH_SCALAR;
        return flow_fail(e, rc, "FLOW_QUANT_PATH: %s", sub.msg);
    }
    return 0;
}

quant_path quant_path_active(void)
{
    if (active == QUANT_PATH_AUTO) quant_path_from_env(NULL);
    return active;
}
