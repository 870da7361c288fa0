/*
 * cnnkit's one compiled kernel: the forward convolution on channels-last float32 data,
 * computed straight from the padded input with no im2col matrix (see _native.py).
 *
 *   out[n, y, x, o] = bias[o] + sum_{i, j, c} xp[n, y*sh + i*dh, x*sw + j*dw, c] * w[i, j, c, o]
 *
 * The NumPy path copies every window into an im2col matrix, then BLAS copies that matrix
 * again into its packed panels before multiplying. Here the register tile is RB output
 * positions of one output row times V*16 output channels (AVX-512, 16 floats a vector);
 * for each kernel tap and input channel it loads V vectors of weights, broadcasts the RB
 * input values and does RB*V fused multiply-adds, all accumulators in registers.
 *
 * Built by setup.py as an optional extension module; Python calls it through ctypes,
 * which releases the GIL for the whole call.
 */
#include <Python.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* One step of a register tile: acc[i][v] += s[i * ss] * vec[v] for i < ns, v < nv (ns
 * broadcast scalars times nv vectors). Inlined with constant ns and nv, the tile stays
 * in registers. */
__attribute__((target("avx512f,fma"), always_inline)) static inline void
rank1(__m512 *acc, int ns, int nv, const float *s, long ss, const __m512 *vec)
{
    for (int i = 0; i < ns; i++) {
        __m512 b = _mm512_set1_ps(s[i * ss]);
        for (int v = 0; v < nv; v++)
            acc[i * nv + v] = _mm512_fmadd_ps(b, vec[v], acc[i * nv + v]);
    }
}

/* the mask of the first k of 16 lanes (none for k <= 0) */
static inline __mmask16 first(long k)
{
    return k >= 16 ? 0xFFFF : (k <= 0 ? 0 : (__mmask16)((1u << k) - 1));
}

typedef struct {
    long wp;          /* padded input width */
    long c;           /* input channels (of one group) */
    long xs;          /* floats from one input pixel to the next (all channels) */
    long ws;          /* floats from one weight row (i, j, c) to the next */
    long os;          /* floats from one output pixel to the next (all channels) */
    long oc;          /* output channels computed here (of one group) */
    long kh, kw, sh, sw, dh, dw, oh, ow;
} geom;

/* RB output positions from (y, x0) times V*16 output channels from o0 */
#define BLOCK(NAME, V, RB)                                                                 \
    __attribute__((target("avx512f,fma"), always_inline)) static inline void NAME(         \
        const float *xp, const float *w, const float *bias, float *out, const geom *g,     \
        long y, long x0, long o0, const __mmask16 *mk)                                     \
    {                                                                                      \
        __m512 acc[RB][V];                                                                 \
        for (int v = 0; v < V; v++) {                                                      \
            __m512 b = bias ? _mm512_maskz_loadu_ps(mk[v], bias + o0 + 16 * v)             \
                            : _mm512_setzero_ps();                                         \
            for (int r = 0; r < RB; r++)                                                   \
                acc[r][v] = b;                                                             \
        }                                                                                  \
        const long c = g->c, ws = g->ws, step = g->sw * g->xs;                             \
        for (long i = 0; i < g->kh; i++) {                                                 \
            const float *row = xp + ((y * g->sh + i * g->dh) * g->wp + x0 * g->sw) * g->xs; \
            for (long j = 0; j < g->kw; j++) {                                             \
                const float *px = row + j * g->dw * g->xs;                                 \
                const float *pw = w + (i * g->kw + j) * c * ws + o0;                       \
                for (long ci = 0; ci < c; ci++) {                                          \
                    __m512 wv[V];                                                          \
                    for (int v = 0; v < V; v++)                                            \
                        wv[v] = _mm512_maskz_loadu_ps(mk[v], pw + ci * ws + 16 * v);       \
                    rank1(acc[0], RB, V, px + ci, step, wv);                               \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        float *po = out + (y * g->ow + x0) * g->os + o0;                                   \
        for (int r = 0; r < RB; r++)                                                       \
            for (int v = 0; v < V; v++)                                                    \
                _mm512_mask_storeu_ps(po + r * g->os + 16 * v, mk[v], acc[r][v]);          \
    }

/* blocks of RB positions along output row y; a row whose width is not a multiple of RB
 * ends with a block that overlaps the previous one (it rewrites a few outputs with the
 * same values) */
#define ROW(BLK, RB)                                                                       \
    do {                                                                                   \
        long x0 = 0;                                                                       \
        for (; x0 + RB <= g->ow; x0 += RB)                                                 \
            BLK(xp, w, bias, out, g, y, x0, o0, mk);                                       \
        if (x0 < g->ow)                                                                    \
            BLK(xp, w, bias, out, g, y, g->ow - RB, o0, mk);                               \
    } while (0)

/* All output positions of one image for the V*16 channels from o0, in blocks of the
 * largest of R1 > R2 > R3 positions that fits in a row (one at a time below R3) */
#define PANEL(NAME, V, R1, R2, R3)                                                         \
    BLOCK(NAME##_a, V, R1)                                                                 \
    BLOCK(NAME##_b, V, R2)                                                                 \
    BLOCK(NAME##_c, V, R3)                                                                 \
    BLOCK(NAME##_1, V, 1)                                                                  \
    __attribute__((target("avx512f,fma"))) static void NAME(                               \
        const float *xp, const float *w, const float *bias, float *out, const geom *g,     \
        long o0)                                                                           \
    {                                                                                      \
        __mmask16 mk[V];                                                                   \
        for (int v = 0; v < V; v++) {                                                      \
            long left = g->oc - o0 - 16 * v;                                               \
            mk[v] = first(left);                                                           \
        }                                                                                  \
        for (long y = 0; y < g->oh; y++) {                                                 \
            if (g->ow >= R1)                                                               \
                ROW(NAME##_a, R1);                                                         \
            else if (g->ow >= R2)                                                          \
                ROW(NAME##_b, R2);                                                         \
            else if (g->ow >= R3)                                                          \
                ROW(NAME##_c, R3);                                                         \
            else                                                                           \
                ROW(NAME##_1, 1);                                                          \
        }                                                                                  \
    }

/* tile sizes measured on Zen 5 (AVX-512), one core, 3x3 kernels: 8x64, 16x32 and 16x16
 * positions x channels reach 206-263 GFLOP/s for 32 and 64 channels (about the peak of
 * OpenBLAS's sgemm there) and 151 for 16 channels; more accumulators spill registers */
PANEL(panel64, 4, 8, 4, 2)
PANEL(panel32, 2, 16, 8, 4)
PANEL(panel16, 1, 16, 8, 4)

/*
 * Weight gradient: dw[i, j, c, o] += sum over positions (b, y, x) of
 *   xp[b, y*sh + i*dh, x*sw + j*dw, c] * g[b, y, x, o]
 * The register tile is RC input channels times V*16 output channels, reduced over a
 * block of output positions (whole output rows, at least 64 positions): per position
 * V vectors of the output gradient, RC broadcast inputs, RC*V multiply-adds. The tile
 * is loaded from and added back to dw once per block.
 */
typedef struct {
    long wp, xs, os, ws, ow, sh, sw;
} dgeom;

#define DW_BLOCK(NAME, V, RC)                                                              \
    __attribute__((target("avx512f,fma"), always_inline)) static inline void NAME(         \
        const float *x, const float *g, float *dwt, const dgeom *d, long rows,             \
        const __mmask16 *mk)                                                               \
    {                                                                                      \
        __m512 acc[RC][V];                                                                 \
        for (int r = 0; r < RC; r++)                                                       \
            for (int v = 0; v < V; v++)                                                    \
                acc[r][v] = _mm512_maskz_loadu_ps(mk[v], dwt + r * d->ws + 16 * v);        \
        const long step = d->sw * d->xs;                                                   \
        for (long q = 0; q < rows; q++) {                                                  \
            const float *px = x + q * d->sh * d->wp * d->xs;                               \
            const float *pg = g + q * d->ow * d->os;                                       \
            for (long p = 0; p < d->ow; p++, px += step, pg += d->os) {                    \
                __m512 gv[V];                                                              \
                for (int v = 0; v < V; v++)                                                \
                    gv[v] = _mm512_maskz_loadu_ps(mk[v], pg + 16 * v);                     \
                rank1(acc[0], RC, V, px, 1, gv);                                           \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < RC; r++)                                                       \
            for (int v = 0; v < V; v++)                                                    \
                _mm512_mask_storeu_ps(dwt + r * d->ws + 16 * v, mk[v], acc[r][v]);         \
    }

/* the channels of one kernel tap for the V*16 output channels from o0: blocks of RC
 * channels, then the remaining channels one at a time */
#define DW_PANEL(NAME, BIG, ONE, V, RC)                                                    \
    DW_BLOCK(BIG, V, RC)                                                                   \
    DW_BLOCK(ONE, V, 1)                                                                    \
    __attribute__((target("avx512f,fma"))) static void NAME(                               \
        const float *x, const float *g, float *dwt, const dgeom *d, long rows, long cg,    \
        long left)                                                                         \
    {                                                                                      \
        __mmask16 mk[V];                                                                   \
        for (int v = 0; v < V; v++) {                                                      \
            long l = left - 16 * v;                                                        \
            mk[v] = first(l);                                                              \
        }                                                                                  \
        long c0 = 0;                                                                       \
        for (; c0 + RC <= cg; c0 += RC)                                                    \
            BIG(x + c0, g, dwt + c0 * d->ws, d, rows, mk);                                 \
        for (; c0 < cg; c0++)                                                              \
            ONE(x + c0, g, dwt + c0 * d->ws, d, rows, mk);                                 \
    }

DW_PANEL(dw_panel64, dw_block64, dw_single64, 4, 8)
DW_PANEL(dw_panel32, dw_block32, dw_single32, 2, 16)
DW_PANEL(dw_panel16, dw_block16, dw_single16, 1, 32)

/*
 * n images: xp (n, hp, wp, groups*cg), g (n, oh, ow, groups*ocg) -> adds into
 * dw (groups, kh, kw, cg, ocg), which the caller zeroes.
 */
void cnnkit_conv_dw_nhwc_f32(const float *xp, const float *g, float *dw, long n, long hp,
                             long wp, long groups, long cg, long ocg, long kh, long kw,
                             long sh, long sw, long dh, long dwd, long oh, long ow)
{
    dgeom d = {wp, groups * cg, groups * ocg, ocg, ow, sh, sw};
    long rows = ow >= 64 ? 1 : (64 + ow - 1) / ow; /* output rows per block */
    for (long b = 0; b < n; b++) {
        for (long y0 = 0; y0 < oh; y0 += rows) {
            long nr = oh - y0 < rows ? oh - y0 : rows;
            const float *gb = g + (b * oh + y0) * ow * d.os;
            for (long grp = 0; grp < groups; grp++) {
                for (long i = 0; i < kh; i++) {
                    for (long j = 0; j < kw; j++) {
                        const float *xb = xp + ((b * hp + y0 * sh + i * dh) * wp + j * dwd) * d.xs
                                          + grp * cg;
                        float *dwt = dw + ((grp * kh + i) * kw + j) * cg * ocg;
                        const float *gg = gb + grp * ocg;
                        long o0 = 0;
                        for (; ocg - o0 > 32; o0 += 64)
                            dw_panel64(xb, gg + o0, dwt + o0, &d, nr, cg, ocg - o0);
                        for (; ocg - o0 > 16; o0 += 32)
                            dw_panel32(xb, gg + o0, dwt + o0, &d, nr, cg, ocg - o0);
                        for (; o0 < ocg; o0 += 16)
                            dw_panel16(xb, gg + o0, dwt + o0, &d, nr, cg, ocg - o0);
                    }
                }
            }
        }
    }
}

/*
 * Channel-first (NCHW) forward convolution with stride 1, for layers with few output
 * channels (LeNet's 6 and 16), where 16 output channels do not fill a vector:
 *   out[n, o, y, x] = bias[o] + sum_{c, i, j} xp[n, c, y + i*dh, x + j*dw] * w[c, i, j, o]
 * The vector runs along an output row (16 columns, masked at the row's end), so an
 * input vector is 16 adjacent values of one input row. The register tile is RO output
 * channels times R output rows: per kernel tap, R input vectors and RO broadcast
 * weights make RO*R multiply-adds.
 */
typedef struct {
    long wp, plane, cg, kh, kw, dh, dw, oh, ow, ocg;
} ngeom;

#define NCHW_BLOCK(NAME, RO, R)                                                            \
    __attribute__((target("avx512f,fma"), always_inline)) static inline void NAME(         \
        const float *x, const float *w, const float *bias, float *out, const ngeom *g,     \
        long y0, long x0, __mmask16 m)                                                     \
    {                                                                                      \
        __m512 acc[RO][R];                                                                 \
        for (int o = 0; o < RO; o++) {                                                     \
            __m512 b = bias ? _mm512_set1_ps(bias[o]) : _mm512_setzero_ps();               \
            for (int r = 0; r < R; r++)                                                    \
                acc[o][r] = b;                                                             \
        }                                                                                  \
        for (long c = 0; c < g->cg; c++) {                                                 \
            for (long i = 0; i < g->kh; i++) {                                             \
                const float *row = x + c * g->plane + (y0 + i * g->dh) * g->wp + x0;       \
                const float *pw = w + (c * g->kh + i) * g->kw * g->ocg;                    \
                for (long j = 0; j < g->kw; j++, pw += g->ocg) {                           \
                    __m512 xv[R];                                                          \
                    for (int r = 0; r < R; r++)                                            \
                        xv[r] = _mm512_maskz_loadu_ps(m, row + r * g->wp + j * g->dw);     \
                    rank1(acc[0], RO, R, pw, 1, xv);                                       \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int o = 0; o < RO; o++)                                                       \
            for (int r = 0; r < R; r++)                                                    \
                _mm512_mask_storeu_ps(out + o * g->oh * g->ow + (y0 + r) * g->ow + x0, m,  \
                                      acc[o][r]);                                          \
    }

/* RO output channels from o0, all rows and columns of one image */
#define NCHW_PANEL(NAME, BIG, ONE, RO, R)                                                  \
    NCHW_BLOCK(BIG, RO, R)                                                                 \
    NCHW_BLOCK(ONE, RO, 1)                                                                 \
    __attribute__((target("avx512f,fma"))) static void NAME(                               \
        const float *x, const float *w, const float *bias, float *out, const ngeom *g)     \
    {                                                                                      \
        for (long x0 = 0; x0 < g->ow; x0 += 16) {                                          \
            long left = g->ow - x0;                                                        \
            __mmask16 m = first(left);                                                     \
            long y0 = 0;                                                                   \
            for (; y0 + R <= g->oh; y0 += R)                                               \
                BIG(x, w, bias, out, g, y0, x0, m);                                        \
            if (y0 < g->oh && g->oh >= R)                                                  \
                BIG(x, w, bias, out, g, g->oh - R, x0, m);                                 \
            else                                                                           \
                for (; y0 < g->oh; y0++)                                                   \
                    ONE(x, w, bias, out, g, y0, x0, m);                                    \
        }                                                                                  \
    }

NCHW_PANEL(nchw_panel8, nchw_block8, nchw_single8, 8, 3)
NCHW_PANEL(nchw_panel4, nchw_block4, nchw_single4, 4, 6)
NCHW_PANEL(nchw_panel2, nchw_block2, nchw_single2, 2, 6)
NCHW_PANEL(nchw_panel1, nchw_block1, nchw_single1, 1, 6)

/*
 * n images of xp (n, groups*cg, hp, wp) -> out (n, groups*ocg, oh, ow), stride 1.
 * w: (groups, cg, kh, kw, ocg) contiguous; bias: groups*ocg floats or NULL.
 */
void cnnkit_conv_nchw_f32(const float *xp, const float *w, const float *bias, float *out,
                          long n, long hp, long wp, long groups, long cg, long ocg, long kh,
                          long kw, long dh, long dw, long oh, long ow)
{
    ngeom g = {wp, hp * wp, cg, kh, kw, dh, dw, oh, ow, ocg};
    for (long b = 0; b < n; b++) {
        for (long grp = 0; grp < groups; grp++) {
            const float *xb = xp + (b * groups + grp) * cg * g.plane;
            const float *wg = w + grp * cg * kh * kw * ocg;
            float *ob = out + (b * groups + grp) * ocg * oh * ow;
            long o0 = 0;
            for (; ocg - o0 >= 8; o0 += 8)
                nchw_panel8(xb, wg + o0, bias ? bias + grp * ocg + o0 : NULL, ob + o0 * oh * ow, &g);
            for (; ocg - o0 >= 4; o0 += 4)
                nchw_panel4(xb, wg + o0, bias ? bias + grp * ocg + o0 : NULL, ob + o0 * oh * ow, &g);
            for (; ocg - o0 >= 2; o0 += 2)
                nchw_panel2(xb, wg + o0, bias ? bias + grp * ocg + o0 : NULL, ob + o0 * oh * ow, &g);
            for (; o0 < ocg; o0++)
                nchw_panel1(xb, wg + o0, bias ? bias + grp * ocg + o0 : NULL, ob + o0 * oh * ow, &g);
        }
    }
}

/*
 * Channel-first weight gradient with stride 1 (narrow layers):
 *   dw[o, c, i, j] += sum over (n, y, x) of g[n, o, y, x] * xp[n, c, y + i*dh, x + j*dw]
 * Vectors run along output rows as in the forward. The register tile is RO output
 * channels times RK kernel taps (k = (c, i, j), each at its own offset in the image):
 * per 16 positions, RO gradient vectors and RK input vectors make RO*RK multiply-adds.
 * Per image the tile's vector sums are kept in acc (o, k, 16 lanes), added up across
 * the lanes at the end.
 */
typedef struct {
    long wp, oh, ow, ktot;
    const long *off;
} wgeom;

#define NW_BLOCK(NAME, RO, RK)                                                             \
    __attribute__((target("avx512f,fma"), always_inline)) static inline void NAME(         \
        const float *x, const float *g, float *acc, const wgeom *d, long k0)               \
    {                                                                                      \
        __m512 a[RO][RK];                                                                  \
        for (int o = 0; o < RO; o++)                                                       \
            for (int k = 0; k < RK; k++)                                                   \
                a[o][k] = _mm512_loadu_ps(acc + (o * d->ktot + k0 + k) * 16);              \
        const float *xk[RK];                                                               \
        for (int k = 0; k < RK; k++)                                                       \
            xk[k] = x + d->off[k0 + k];                                                    \
        const long plane = d->oh * d->ow;                                                  \
        for (long y = 0; y < d->oh; y++) {                                                 \
            for (long x0 = 0; x0 < d->ow; x0 += 16) {                                      \
                long left = d->ow - x0;                                                    \
                __mmask16 m = first(left);                                                 \
                __m512 gv[RO];                                                             \
                for (int o = 0; o < RO; o++)                                               \
                    gv[o] = _mm512_maskz_loadu_ps(m, g + o * plane + y * d->ow + x0);      \
                for (int k = 0; k < RK; k++) {                                             \
                    __m512 xv = _mm512_maskz_loadu_ps(m, xk[k] + y * d->wp + x0);          \
                    for (int o = 0; o < RO; o++)                                           \
                        a[o][k] = _mm512_fmadd_ps(gv[o], xv, a[o][k]);                     \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int o = 0; o < RO; o++)                                                       \
            for (int k = 0; k < RK; k++)                                                   \
                _mm512_storeu_ps(acc + (o * d->ktot + k0 + k) * 16, a[o][k]);              \
    }

/* RO output channels: the taps in blocks of 6, then one at a time */
#define NW_PANEL(NAME, BIG, ONE, RO)                                                       \
    NW_BLOCK(BIG, RO, 6)                                                                   \
    NW_BLOCK(ONE, RO, 1)                                                                   \
    __attribute__((target("avx512f,fma"))) static void NAME(                               \
        const float *x, const float *g, float *acc, const wgeom *d)                        \
    {                                                                                      \
        long k0 = 0;                                                                       \
        for (; k0 + 6 <= d->ktot; k0 += 6)                                                 \
            BIG(x, g, acc, d, k0);                                                         \
        for (; k0 < d->ktot; k0++)                                                         \
            ONE(x, g, acc, d, k0);                                                         \
    }

NW_PANEL(nw_panel4, nw_block4, nw_single4, 4)
NW_PANEL(nw_panel2, nw_block2, nw_single2, 2)
NW_PANEL(nw_panel1, nw_block1, nw_single1, 1)

/*
 * n images: xp (n, groups*cg, hp, wp), g (n, groups*ocg, oh, ow) -> adds into
 * dw (groups*ocg, cg, kh, kw). Returns 0, or -1 when memory for the sums is short.
 */
int cnnkit_conv_dw_nchw_f32(const float *xp, const float *g, float *dw, long n, long hp,
                            long wp, long groups, long cg, long ocg, long kh, long kw,
                            long dh, long dwd, long oh, long ow)
{
    long ktot = cg * kh * kw;
    long *off = malloc(sizeof(long) * ktot);
    float *acc = calloc((size_t)(groups * ocg * ktot * 16), sizeof(float));
    if (!off || !acc) {
        free(off);
        free(acc);
        return -1;
    }
    for (long c = 0, k = 0; c < cg; c++)
        for (long i = 0; i < kh; i++)
            for (long j = 0; j < kw; j++, k++)
                off[k] = (c * hp + i * dh) * wp + j * dwd;
    wgeom d = {wp, oh, ow, ktot, off};
    for (long b = 0; b < n; b++) {
        for (long grp = 0; grp < groups; grp++) {
            const float *xb = xp + (b * groups + grp) * cg * hp * wp;
            const float *gb = g + (b * groups + grp) * ocg * oh * ow;
            float *ab = acc + grp * ocg * ktot * 16;
            long o0 = 0;
            for (; ocg - o0 >= 4; o0 += 4)
                nw_panel4(xb, gb + o0 * oh * ow, ab + o0 * ktot * 16, &d);
            for (; ocg - o0 >= 2; o0 += 2)
                nw_panel2(xb, gb + o0 * oh * ow, ab + o0 * ktot * 16, &d);
            for (; o0 < ocg; o0++)
                nw_panel1(xb, gb + o0 * oh * ow, ab + o0 * ktot * 16, &d);
        }
    }
    for (long q = 0; q < groups * ocg * ktot; q++) {
        float t = 0.0f;
        for (int l = 0; l < 16; l++)
            t += acc[q * 16 + l];
        dw[q] += t;
    }
    free(off);
    free(acc);
    return 0;
}

/* 1 when this CPU runs the kernel (AVX-512F and FMA), else 0 */
int cnnkit_conv_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}

/*
 * n images of xp (n, hp, wp, groups*cg) -> out (n, oh, ow, groups*ocg).
 * w: (groups, kh, kw, cg, ocg) contiguous; bias: groups*ocg floats or NULL.
 */
/* 16x16 floats, one row a vector, transposed in registers */
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16], v[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) {
            v[8 * i + k] = _mm512_shuffle_f32x4(u[8 * i + k], u[8 * i + 4 + k], 0x88);
            v[8 * i + 4 + k] = _mm512_shuffle_f32x4(u[8 * i + k], u[8 * i + 4 + k], 0xDD);
        }
    for (int k = 0; k < 8; k++) {
        r[k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0xDD);
    }
}

/* One image: xp[top + y, left + x, c] = src[c, y, x] (strides sc, sy, sx in floats),
 * zero elsewhere. Channel-first sources (sx == 1) go through 16x16 transposes,
 * channels-last ones (sc == 1, sx == c) row by row. */
__attribute__((target("avx512f"))) static void pad_image(const float *src, long sc, long sy,
                                                         long sx, float *xp, long c, long h,
                                                         long w, long top, long left, long hp,
                                                         long wp)
{
    long right = wp - left - w;
    memset(xp, 0, sizeof(float) * top * wp * c);
    memset(xp + (top + h) * wp * c, 0, sizeof(float) * (hp - top - h) * wp * c);
    for (long y = 0; y < h; y++) {
        float *row = xp + (top + y) * wp * c;
        memset(row, 0, sizeof(float) * left * c);
        memset(row + (left + w) * c, 0, sizeof(float) * right * c);
        row += left * c;
        const float *s = src + y * sy;
        if (sc == 1 && sx == c) {
            memcpy(row, s, sizeof(float) * w * c);
        } else if (sx == 1) {
            for (long x0 = 0; x0 < w; x0 += 16) {
                long nx = w - x0 < 16 ? w - x0 : 16;
                for (long c0 = 0; c0 < c; c0 += 16) {
                    long nc = c - c0 < 16 ? c - c0 : 16;
                    __m512 r[16];
                    for (long k = 0; k < 16; k++)
                        r[k] = k < nc ? _mm512_maskz_loadu_ps(first(nx), s + (c0 + k) * sc + x0)
                                      : _mm512_setzero_ps();
                    transpose16(r);
                    for (long q = 0; q < nx; q++)
                        _mm512_mask_storeu_ps(row + (x0 + q) * c + c0, first(nc), r[q]);
                }
            }
        } else {
            for (long x = 0; x < w; x++)
                for (long k = 0; k < c; k++)
                    row[x * c + k] = s[k * sc + x * sx];
        }
    }
}

/*
 * n images of xp (n, hp, wp, groups*cg) -> out (n, oh, ow, groups*ocg).
 * w: (groups, kh, kw, cg, ocg) contiguous; bias: groups*ocg floats or NULL.
 * With src, each image is first padded into xp from src (n, c, h, w; strides s in floats,
 * padding top and left), one image at a time, so it is still in cache when convolved.
 */
void cnnkit_conv_nhwc_f32(const float *src, long s0, long s1, long s2, long s3, long h, long w_,
                          long top, long left, float *xp, const float *w, const float *bias,
                          float *out, long n, long hp, long wp, long groups, long cg, long ocg,
                          long kh, long kw, long sh, long sw, long dh, long dw, long oh, long ow)
{
    geom g = {wp, cg, groups * cg, ocg, groups * ocg, ocg, kh, kw, sh, sw, dh, dw, oh, ow};
    for (long b = 0; b < n; b++) {
        if (src)
            pad_image(src + b * s0, s1, s2, s3, xp + b * hp * wp * g.xs, g.xs, h, w_, top, left,
                      hp, wp);
        for (long grp = 0; grp < groups; grp++) {
            const float *xb = xp + b * hp * wp * g.xs + grp * cg;
            const float *wg = w + grp * kh * kw * cg * ocg;
            const float *bg = bias ? bias + grp * ocg : NULL;
            float *ob = out + b * oh * ow * g.os + grp * ocg;
            long o0 = 0;
            for (; ocg - o0 > 32; o0 += 64)
                panel64(xb, wg, bg, ob, &g, o0);
            for (; ocg - o0 > 16; o0 += 32)
                panel32(xb, wg, bg, ob, &g, o0);
            for (; o0 < ocg; o0 += 16)
                panel16(xb, wg, bg, ob, &g, o0);
        }
    }
}

/* an importable module, so that setuptools builds and installs the library; the
 * functions above are reached through ctypes */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_conv", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__native_conv(void) { return PyModule_Create(&module); }
