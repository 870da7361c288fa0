/*
 * cnnkit's compiled convolution kernels (see _native.py): float32 convolutions computed
 * straight from the padded input, with no im2col matrix.
 *
 *   forward:          out[n, y, x, o] = bias[o] + sum_{i, j, c} xp[n, y*sh + i*dh, x*sw + j*dw, c] * w[i, j, c, o]
 *   weight gradient:  dw[i, j, c, o] += sum_{n, y, x} xp[n, y*sh + i*dh, x*sw + j*dw, c] * g[n, y, x, o]
 *
 * each for channels-last data (vectors across output channels) and, for layers with few
 * output channels, channel-first data with stride 1 (vectors along output rows).
 *
 * The NumPy path copies every window into an im2col matrix, then BLAS copies that matrix
 * again into its packed panels before multiplying. Here a register tile of accumulators
 * (positions x output channels, say) is updated by one broadcast-times-vector step per
 * kernel tap and input channel, all in registers.
 *
 * The kernels are written once (_native_kernels.h) and compiled for AVX-512 and for
 * AVX2; this file picks the widest one the CPU runs. Built by setup.py as an optional
 * extension module; Python calls the functions below through ctypes, which releases the
 * GIL for the whole call.
 */
#include <Python.h>

#define DECLARE(isa)                                                                       \
    long cnnkit_conv_packed_floats_##isa(long, long, long, long, long);                    \
    void cnnkit_conv_pack_##isa(const float *, long, const float *, long, long, long, long, \
                                long, float *);                                            \
    void cnnkit_conv_nhwc_##isa(const float *, long, long, long, long, long, long, long,   \
                                long, float *, const float *, float *, long, long, long,    \
                                long, long, long, long, long, long, long, long, long, long, \
                                long, long, long);                                         \
    void cnnkit_conv_dw_nhwc_##isa(const float *, const float *, float *, long, long, long, \
                                   long, long, long, long, long, long, long, long, long,   \
                                   long, long);                                            \
    void cnnkit_conv_nchw_##isa(const float *, const float *, const float *, float *, long, \
                                long, long, long, long, long, long, long, long, long, long, \
                                long);                                                     \
    int cnnkit_conv_dw_nchw_##isa(const float *, const float *, float *, long, long, long,  \
                                  long, long, long, long, long, long, long, long, long);   \
    void cnnkit_maxpool_bwd_nhwc_##isa(const float *, const float *, const float *, float *, \
                                       long, long, long, long, long, long, long, long, long, \
                                       long, long, long);

DECLARE(avx512)
DECLARE(avx2)

/* 2: AVX-512, 1: AVX2, 0: none (the callers use NumPy) */
static int level = -1;

/* the widest kernel set this CPU runs: 2 (AVX-512F and FMA), 1 (AVX2 and FMA) or 0 */
int cnnkit_conv_supported(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma"))
        return 0;
    if (__builtin_cpu_supports("avx512f"))
        return 2;
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

/* use kernel set `want` (as cnnkit_conv_supported counts) or the widest below it that
 * runs here; returns the one chosen */
int cnnkit_conv_select(int want)
{
    int best = cnnkit_conv_supported();
    level = want < best ? want : best;
    return level;
}

#define DISPATCH(call)                                                                     \
    do {                                                                                   \
        if (level == 2)                                                                    \
            call##_avx512 ARGS;                                                            \
        else                                                                               \
            call##_avx2 ARGS;                                                              \
    } while (0)

long cnnkit_conv_packed_floats_f32(long groups, long cg, long ocg, long kh, long kw)
{
#define ARGS (groups, cg, ocg, kh, kw)
    return level == 2 ? cnnkit_conv_packed_floats_avx512 ARGS : cnnkit_conv_packed_floats_avx2 ARGS;
#undef ARGS
}

void cnnkit_conv_pack_f32(const float *w, long oihw, const float *bias, long groups, long cg,
                          long ocg, long kh, long kw, float *dst)
{
#define ARGS (w, oihw, bias, groups, cg, ocg, kh, kw, dst)
    DISPATCH(cnnkit_conv_pack);
#undef ARGS
}

void cnnkit_conv_nhwc_f32(const float *src, long s0, long s1, long s2, long s3, long h, long w_,
                          long top, long left, float *xp, const float *packed, float *out,
                          long n, long hp, long wp, long groups, long cg, long ocg, long kh,
                          long kw, long sh, long sw, long dh, long dw, long oh, long ow, long l1,
                          long l2)
{
#define ARGS                                                                               \
    (src, s0, s1, s2, s3, h, w_, top, left, xp, packed, out, n, hp, wp, groups, cg, ocg, kh, \
     kw, sh, sw, dh, dw, oh, ow, l1, l2)
    DISPATCH(cnnkit_conv_nhwc);
#undef ARGS
}

void cnnkit_conv_dw_nhwc_f32(const float *xp, const float *g, float *dw, long n, long hp,
                             long wp, long groups, long cg, long ocg, long kh, long kw,
                             long sh, long sw, long dh, long dwd, long oh, long ow)
{
#define ARGS (xp, g, dw, n, hp, wp, groups, cg, ocg, kh, kw, sh, sw, dh, dwd, oh, ow)
    DISPATCH(cnnkit_conv_dw_nhwc);
#undef ARGS
}

void cnnkit_conv_nchw_f32(const float *xp, const float *w, const float *bias, float *out,
                          long n, long hp, long wp, long groups, long cg, long ocg, long kh,
                          long kw, long dh, long dw, long oh, long ow)
{
#define ARGS (xp, w, bias, out, n, hp, wp, groups, cg, ocg, kh, kw, dh, dw, oh, ow)
    DISPATCH(cnnkit_conv_nchw);
#undef ARGS
}

int cnnkit_conv_dw_nchw_f32(const float *xp, const float *g, float *dw, long n, long hp,
                            long wp, long groups, long cg, long ocg, long kh, long kw,
                            long dh, long dwd, long oh, long ow)
{
#define ARGS (xp, g, dw, n, hp, wp, groups, cg, ocg, kh, kw, dh, dwd, oh, ow)
    return level == 2 ? cnnkit_conv_dw_nchw_avx512 ARGS : cnnkit_conv_dw_nchw_avx2 ARGS;
#undef ARGS
}

void cnnkit_maxpool_bwd_nhwc_f32(const float *xp, const float *best, const float *g,
                                 float *dxp, long n, long hp, long wp, long c, long oh, long ow,
                                 long kh, long kw, long sh, long sw, long dh, long dw)
{
#define ARGS (xp, best, g, dxp, n, hp, wp, c, oh, ow, kh, kw, sh, sw, dh, dw)
    DISPATCH(cnnkit_maxpool_bwd_nhwc);
#undef ARGS
}

/* an importable module, so that setuptools builds and installs the library; the
 * functions above are reached through ctypes */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_conv", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__native_conv(void) { return PyModule_Create(&module); }
