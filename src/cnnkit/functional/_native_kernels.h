/*
 * The convolution kernels, written once for a vector of VL floats and compiled twice:
 * for AVX-512 (_native_avx512.c, VL = 16, 32 vector registers) and for AVX2 with FMA
 * (_native_avx2.c, VL = 8, 16 registers). _native_conv.c picks one at run time.
 *
 * The register tiles differ with the register count (an accumulator tile that does not
 * fit spills to memory and runs at a third of the speed). The channels-last kernels
 * derive theirs from NREG by one rule (FWD_ROWS), and their cache blocks from the L1/L2
 * sizes passed at run time; the channel-first kernels of narrow layers keep the
 * per-set settings below (the rule applied to them measured no faster).
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("hidden")))

/* The first steps of a VLxVL transpose (rows r, one a vector): within every 128-bit
 * lane, each group of 4 rows becomes 4x4 transposed blocks in u. */
#define TRANSPOSE4X4                                                                       \
    __attribute__((target(ISA), always_inline)) static inline void transpose4x4(          \
        const vec r[VL], vec u[VL])                                                        \
    {                                                                                      \
        vec t[VL];                                                                         \
        for (int i = 0; i < VL / 2; i++) {                                                 \
            t[2 * i] = V_UNPACKLO(r[2 * i], r[2 * i + 1]);                                 \
            t[2 * i + 1] = V_UNPACKHI(r[2 * i], r[2 * i + 1]);                             \
        }                                                                                  \
        for (int i = 0; i < VL / 4; i++) {                                                 \
            u[4 * i + 0] = V_SHUFFLE(t[4 * i], t[4 * i + 2], 0x44);                        \
            u[4 * i + 1] = V_SHUFFLE(t[4 * i], t[4 * i + 2], 0xEE);                        \
            u[4 * i + 2] = V_SHUFFLE(t[4 * i + 1], t[4 * i + 3], 0x44);                    \
            u[4 * i + 3] = V_SHUFFLE(t[4 * i + 1], t[4 * i + 3], 0xEE);                    \
        }                                                                                  \
    }

#ifdef CNNKIT_AVX512

#define ISA "avx512f,fma"
#define VL 16
typedef __m512 vec;
typedef __mmask16 vmask;
#define FN(name) cnnkit_##name##_avx512
#define VLOADM(m, p) _mm512_maskz_loadu_ps((m), (p))
#define VSTOREM(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VZERO _mm512_setzero_ps
#define VADD _mm512_add_ps
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
typedef __mmask16 cmask; /* lanes selected by a comparison */
#define CMP_EQ(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ)
#define IS_NAN(a) _mm512_cmp_ps_mask((a), (a), _CMP_UNORD_Q)
#define C_AND(a, b) ((cmask)((a) & (b)))
#define C_OR(a, b) ((cmask)((a) | (b)))
#define C_ANDNOT(a, b) ((cmask)(~(a) & (b))) /* b and not a */
#define C_NONE ((cmask)0)
#define ADD_WHERE(acc, m, v) _mm512_mask_add_ps((acc), (m), (acc), (v))

/* the forward's register tile follows from NREG (FWD_ROWS below) */
#define NREG 32 /* vector registers */
/* channel-first forward: output rows per block for 8, 4, 2, 1 output channels */
#define NCHW_R8 3
#define NCHW_R4 6
#define NCHW_R2 6
#define NCHW_R1 6
/* channel-first weight gradient: taps per block for 4, 2, 1 output channels */
#define NW_RK4 6
#define NW_RK2 6
#define NW_RK1 6

/* the mask of the first k lanes (none for k <= 0) */
__attribute__((target(ISA), always_inline)) static inline vmask first(long k)
{
    return k >= 16 ? 0xFFFF : (k <= 0 ? 0 : (vmask)((1u << k) - 1));
}

/* VL x VL floats, one row a vector, transposed in registers */
#define V_UNPACKLO _mm512_unpacklo_ps
#define V_UNPACKHI _mm512_unpackhi_ps
#define V_SHUFFLE _mm512_shuffle_ps
TRANSPOSE4X4
__attribute__((target(ISA), always_inline)) static inline void transpose(vec r[VL])
{
    vec u[16], v[16];
    transpose4x4(r, u);
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

#else /* AVX2 and FMA */

#define ISA "avx2,fma"
#define VL 8
typedef __m256 vec;
typedef __m256i vmask;
#define FN(name) cnnkit_##name##_avx2
#define VLOADM(m, p) _mm256_maskload_ps((p), (m))
#define VSTOREM(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VZERO _mm256_setzero_ps
#define VADD _mm256_add_ps
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
typedef __m256 cmask; /* lanes selected by a comparison: all bits set */
#define CMP_EQ(a, b) _mm256_cmp_ps((a), (b), _CMP_EQ_OQ)
#define IS_NAN(a) _mm256_cmp_ps((a), (a), _CMP_UNORD_Q)
#define C_AND(a, b) _mm256_and_ps((a), (b))
#define C_OR(a, b) _mm256_or_ps((a), (b))
#define C_ANDNOT(a, b) _mm256_andnot_ps((a), (b)) /* b and not a */
#define C_NONE _mm256_setzero_ps()
#define ADD_WHERE(acc, m, v) _mm256_add_ps((acc), _mm256_and_ps((m), (v)))

#define NREG 16 /* vector registers */
#define NCHW_R8 1
#define NCHW_R4 3
#define NCHW_R2 4
#define NCHW_R1 6
#define NW_RK4 2
#define NW_RK2 3
#define NW_RK1 6

static const int lanes_[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* the mask of the first k lanes (none for k <= 0) */
__attribute__((target(ISA), always_inline)) static inline vmask first(long k)
{
    k = k < 0 ? 0 : (k > 8 ? 8 : k);
    return _mm256_loadu_si256((const __m256i *)(lanes_ + 8 - k));
}

/* VL x VL floats, one row a vector, transposed in registers */
#define V_UNPACKLO _mm256_unpacklo_ps
#define V_UNPACKHI _mm256_unpackhi_ps
#define V_SHUFFLE _mm256_shuffle_ps
TRANSPOSE4X4
__attribute__((target(ISA), always_inline)) static inline void transpose(vec r[VL])
{
    vec u[8];
    transpose4x4(r, u);
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

#endif

#define ISA_INLINE __attribute__((target(ISA), always_inline)) static inline
#define ISA_FN __attribute__((target(ISA)))

/* output channels per panel of the channels-last kernels */
#define VECS_(V, ...) (V)
#define VECS(...) VECS_(__VA_ARGS__)
/* weight gradient: vectors x input channels per register tile, by the forward's rule
 * (FWD_ROWS: the accumulators, V gradient vectors and one broadcast fill the registers):
 * the widest panel, then 2 and 1 vectors for the remaining channels */
#define DW_A FWD_VMAX, FWD_ROWS(FWD_VMAX)
#define DW_B 2, FWD_ROWS(2)
#define DW_C 1, FWD_ROWS(1)
#define DWIDTH_A (VECS(DW_A) * VL)
#define DWIDTH_B (VECS(DW_B) * VL)
#define DWIDTH_C (VECS(DW_C) * VL)

/* One step of a register tile: acc[i][v] += s[i * ss] * vv[v] for i < ns, v < nv (ns
 * broadcast scalars times nv vectors). Inlined with constant ns and nv, the tile stays
 * in registers. */
ISA_INLINE void rank1(vec *acc, int ns, int nv, const float *s, long ss, const vec *vv)
{
    for (int i = 0; i < ns; i++) {
        vec b = VSET1(s[i * ss]);
        for (int v = 0; v < nv; v++)
            acc[i * nv + v] = VFMA(b, vv[v], acc[i * nv + v]);
    }
}

/*
 * Channels-last forward convolution:
 *   out[b, y, x, o] = bias[o] + sum_{i, j, c} xp[b, y*sh + i*dh, x*sw + j*dw, c] * w[i, j, c, o]
 *
 * The weights are packed first, per panel of output channels: a panel of V vectors
 * (V*VL channels, zeros past the last one) is stored as [kh][kw][c][V*VL], so the inner
 * loop reads it front to back with whole-vector loads.
 *
 * Register tile (the rule, from the register count NREG): R output positions of one row
 * times V vectors of output channels take R*V accumulators, plus V weight vectors and
 * one broadcast input, so R = (NREG - V - 1) / V, at most FWD_MAX_ROWS. Per input
 * channel and tap, V loads and R broadcasts feed R*V multiply-adds. A panel has at most
 * FWD_VMAX vectors: the widest V <= 4 whose tile still has 4 rows (AVX-512: 4 x 6,
 * 3 x 9, 2 x 14; AVX2: 3 x 4, 2 x 6, 1 x 14). The output channels are split into the
 * fewest panels of at most FWD_VMAX vectors, of equal width but for the last.
 *
 * Cache blocks (the rule, from the cache sizes the caller passes): the input channels
 * go in blocks of cb, so that one panel's weights for a block (kh*kw*cb*V*VL floats)
 * fill at most L1 and are reused from cache by every output position (read in order,
 * so the prefetcher keeps them coming; half of L1 measured 10-15 % slower on a Xeon
 * (Cascade Lake) for 64-channel layers, the shorter blocks costing more); each
 * block sweeps a band of output rows whose partial sums (rows*ow*V*VL floats) fill at
 * most half of L2, and adds its sums to the band's output. A block also sums at most
 * SUM_BLOCK products in registers: the rounding error grows with the block length plus
 * the number of blocks instead of with all KH*KW*C products (a 512-channel 3x3 layer
 * sums 4,608 products per output).
 */
#define FWD_MAX_ROWS 14
#define FWD_ROWS(V) ((NREG - (V) - 1) / (V) < FWD_MAX_ROWS ? (NREG - (V) - 1) / (V) : FWD_MAX_ROWS)
#define FWD_VMAX (FWD_ROWS(4) >= 4 ? 4 : (FWD_ROWS(3) >= 4 ? 3 : 2))
#define SUM_BLOCK 128

typedef struct {
    long wp;     /* padded input width */
    long xs;     /* floats from one input pixel to the next (all channels) */
    long os;     /* floats from one output pixel to the next (all channels) */
    long c;      /* input channels of one group */
    long kh, kw, sh, sw, dh, dw, oh, ow;
} fgeom;

/* One register tile: R positions from (y, x0) times the V vectors of a panel, over
 * input channels c0 .. c0 + cn. init (the panel's padded bias) starts the sums on the
 * first channel block; later blocks add to what the output holds. */
#define FBLOCK(V, R)                                                                       \
    ISA_FN static void fblock_##V##_##R(const float *xp, const float *wpk,                 \
                                        const float *init, float *out, const fgeom *g,     \
                                        long y, long x0, long c0, long cn,                 \
                                        const vmask *mk)                                   \
    {                                                                                      \
        vec acc[R][V];                                                                     \
        for (int r = 0; r < R; r++)                                                        \
            for (int v = 0; v < V; v++)                                                    \
                acc[r][v] = VZERO();                                                       \
        const long step = g->sw * g->xs, pw_ = V * VL;                                     \
        const float *xb = xp + (y * g->sh * g->wp + x0 * g->sw) * g->xs + c0;              \
        for (long i = 0; i < g->kh; i++)                                                   \
            for (long j = 0; j < g->kw; j++) {                                             \
                const float *px = xb + (i * g->dh * g->wp + j * g->dw) * g->xs;            \
                const float *pw = wpk + ((i * g->kw + j) * g->c + c0) * pw_;               \
                for (long ci = 0; ci < cn; ci++, pw += pw_) {                              \
                    vec wv[V];                                                             \
                    for (int v = 0; v < V; v++)                                            \
                        wv[v] = VLOAD(pw + VL * v);                                        \
                    rank1(acc[0], R, V, px + ci, step, wv);                                \
                }                                                                          \
            }                                                                              \
        float *po = out + (y * g->ow + x0) * g->os;                                        \
        for (int r = 0; r < R; r++)                                                        \
            for (int v = 0; v < V; v++) {                                                  \
                float *q = po + r * g->os + VL * v;                                        \
                vec base = init ? VLOAD(init + VL * v) : VLOADM(mk[v], q);                 \
                VSTOREM(q, mk[v], VADD(base, acc[r][v]));                                  \
            }                                                                              \
    }

typedef void (*fblock_fn)(const float *, const float *, const float *, float *,
                          const fgeom *, long, long, long, long, const vmask *);

#define FBLOCKS(V)                                                                         \
    FBLOCK(V, 1) FBLOCK(V, 2) FBLOCK(V, 3) FBLOCK(V, 4) FBLOCK(V, 5) FBLOCK(V, 6)          \
    FBLOCK(V, 7) FBLOCK(V, 8) FBLOCK(V, 9) FBLOCK(V, 10) FBLOCK(V, 11) FBLOCK(V, 12)       \
    FBLOCK(V, 13) FBLOCK(V, 14)                                                            \
    static const fblock_fn fblocks_##V[FWD_MAX_ROWS + 1] = {                               \
        NULL, fblock_##V##_1, fblock_##V##_2, fblock_##V##_3, fblock_##V##_4,              \
        fblock_##V##_5, fblock_##V##_6, fblock_##V##_7, fblock_##V##_8, fblock_##V##_9,    \
        fblock_##V##_10, fblock_##V##_11, fblock_##V##_12, fblock_##V##_13,                \
        fblock_##V##_14};

FBLOCKS(1)
FBLOCKS(2)
FBLOCKS(3)
#if FWD_VMAX >= 4
FBLOCKS(4)
static const fblock_fn *const fblocks[5] = {NULL, fblocks_1, fblocks_2, fblocks_3, fblocks_4};
#else
static const fblock_fn *const fblocks[4] = {NULL, fblocks_1, fblocks_2, fblocks_3};
#endif

/* One image and one panel of V vectors: channel blocks of cb within bands of `band`
 * output rows; each row in ceil(ow / R) blocks of near-equal length (at most R). */
ISA_FN static void fwd_panel(const float *xp, const float *wpk, const float *pbias,
                             float *out, const fgeom *g, int V, long cb, long band,
                             const vmask *mk)
{
    const fblock_fn *tab = fblocks[V];
    const long rmax = FWD_ROWS(V), nb = (g->ow + rmax - 1) / rmax;
    for (long y0 = 0; y0 < g->oh; y0 += band) {
        long y1 = y0 + band < g->oh ? y0 + band : g->oh;
        for (long c0 = 0; c0 < g->c; c0 += cb) {
            long cn = g->c - c0 < cb ? g->c - c0 : cb;
            for (long y = y0; y < y1; y++)
                for (long k = 0, x0 = 0; k < nb; k++) {
                    long r = (g->ow - x0) / (nb - k);
                    tab[r](xp, wpk, c0 ? NULL : pbias, out, g, y, x0, c0, cn, mk);
                    x0 += r;
                }
        }
    }
}

/*
 * Weight gradient: dw[i, j, c, o] += sum over positions (b, y, x) of
 *   xp[b, y*sh + i*dh, x*sw + j*dw, c] * g[b, y, x, o]
 * The register tile is RC input channels times V*VL output channels, reduced over a
 * block of output positions (whole output rows, at least 64 positions): per position
 * V vectors of the output gradient, RC broadcast inputs, RC*V multiply-adds. The tile
 * is loaded from and added back to dw once per block.
 */
typedef struct {
    long wp, xs, os, ws, ow, sh, sw;
} dgeom;

#define DW_BLOCK(NAME, V, RC)                                                              \
    ISA_INLINE void NAME(         \
        const float *x, const float *g, float *dwt, const dgeom *d, long rows,             \
        const vmask *mk)                                                               \
    {                                                                                      \
        vec acc[RC][V];                                                                 \
        for (int r = 0; r < RC; r++)                                                       \
            for (int v = 0; v < V; v++)                                                    \
                acc[r][v] = VLOADM(mk[v], dwt + r * d->ws + VL * v);        \
        const long step = d->sw * d->xs;                                                   \
        for (long q = 0; q < rows; q++) {                                                  \
            const float *px = x + q * d->sh * d->wp * d->xs;                               \
            const float *pg = g + q * d->ow * d->os;                                       \
            for (long p = 0; p < d->ow; p++, px += step, pg += d->os) {                    \
                vec gv[V];                                                              \
                for (int v = 0; v < V; v++)                                                \
                    gv[v] = VLOADM(mk[v], pg + VL * v);                     \
                rank1(acc[0], RC, V, px, 1, gv);                                           \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < RC; r++)                                                       \
            for (int v = 0; v < V; v++)                                                    \
                VSTOREM(dwt + r * d->ws + VL * v, mk[v], acc[r][v]);         \
    }

/* the channels of one kernel tap for the V*VL output channels from o0: blocks of RC
 * channels, then of 4, then the remaining channels one at a time */
#define DW_PANEL(NAME, BIG, ONE, ...) DW_PANEL_(NAME, BIG, ONE, __VA_ARGS__)
#define DW_PANEL_(NAME, BIG, ONE, V, RC)                                                    \
    DW_BLOCK(BIG, V, RC)                                                                   \
    DW_BLOCK(NAME##_4, V, 4)                                                               \
    DW_BLOCK(ONE, V, 1)                                                                    \
    ISA_FN static void NAME(                               \
        const float *x, const float *g, float *dwt, const dgeom *d, long rows, long cg,    \
        long left)                                                                         \
    {                                                                                      \
        vmask mk[V];                                                                   \
        for (int v = 0; v < V; v++) {                                                      \
            long l = left - VL * v;                                                        \
            mk[v] = first(l);                                                              \
        }                                                                                  \
        long c0 = 0;                                                                       \
        for (; c0 + RC <= cg; c0 += RC)                                                    \
            BIG(x + c0, g, dwt + c0 * d->ws, d, rows, mk);                                 \
        for (; c0 + 4 <= cg; c0 += 4)                                                      \
            NAME##_4(x + c0, g, dwt + c0 * d->ws, d, rows, mk);                            \
        for (; c0 < cg; c0++)                                                              \
            ONE(x + c0, g, dwt + c0 * d->ws, d, rows, mk);                                 \
    }

DW_PANEL(dw_panel_a, dw_block_a, dw_single_a, DW_A)
DW_PANEL(dw_panel_b, dw_block_b, dw_single_b, DW_B)
DW_PANEL(dw_panel_c, dw_block_c, dw_single_c, DW_C)

/*
 * n images: xp (n, hp, wp, groups*cg), g (n, oh, ow, groups*ocg) -> adds into
 * dw (groups, kh, kw, cg, ocg), which the caller zeroes.
 */
EXPORT void FN(conv_dw_nhwc)(const float *xp, const float *g, float *dw, long n, long hp,
                             long wp, long groups, long cg, long ocg, long kh, long kw,
                             long sh, long sw, long dh, long dwd, long oh, long ow)
{
    dgeom d = {wp, groups * cg, groups * ocg, ocg, ow, sh, sw};
    long rows = ow >= 64 ? 1 : (64 + ow - 1) / ow; /* output rows per block */
    /* one group, no dilation along rows: the kw taps of a kernel row read kw*cg adjacent
     * input values (and fill kw*cg adjacent rows of dw), so they are one run of
     * "channels": few input channels (a first layer's 3) still fill the tiles */
    long runs = kw, run = cg;
    if (groups == 1 && dwd == 1) {
        runs = 1;
        run = kw * cg;
    }
    for (long b = 0; b < n; b++) {
        for (long y0 = 0; y0 < oh; y0 += rows) {
            long nr = oh - y0 < rows ? oh - y0 : rows;
            const float *gb = g + (b * oh + y0) * ow * d.os;
            for (long grp = 0; grp < groups; grp++) {
                for (long i = 0; i < kh; i++) {
                    for (long j = 0; j < runs; j++) {
                        const float *xb = xp + ((b * hp + y0 * sh + i * dh) * wp + j * dwd) * d.xs
                                          + grp * cg;
                        float *dwt = dw + ((grp * kh + i) * kw + j) * cg * ocg;
                        const float *gg = gb + grp * ocg;
                        long o0 = 0;
                        for (; ocg - o0 > DWIDTH_B; o0 += DWIDTH_A)
                            dw_panel_a(xb, gg + o0, dwt + o0, &d, nr, run, ocg - o0);
                        for (; ocg - o0 > DWIDTH_C; o0 += DWIDTH_B)
                            dw_panel_b(xb, gg + o0, dwt + o0, &d, nr, run, ocg - o0);
                        for (; o0 < ocg; o0 += DWIDTH_C)
                            dw_panel_c(xb, gg + o0, dwt + o0, &d, nr, run, ocg - o0);
                    }
                }
            }
        }
    }
}

/*
 * Channel-first (NCHW) forward convolution with stride 1, for layers with few output
 * channels (LeNet's 6 and 16), where the output channels do not fill a vector:
 *   out[n, o, y, x] = bias[o] + sum_{c, i, j} xp[n, c, y + i*dh, x + j*dw] * w[c, i, j, o]
 * The vector runs along an output row (VL columns, masked at the row's end), so an
 * input vector is VL adjacent values of one input row. The register tile is RO output
 * channels times R output rows: per kernel tap, R input vectors and RO broadcast
 * weights make RO*R multiply-adds.
 */
typedef struct {
    long wp, plane, cg, kh, kw, dh, dw, oh, ow, ocg;
} ngeom;

#define NCHW_BLOCK(NAME, RO, R)                                                            \
    ISA_INLINE void NAME(         \
        const float *x, const float *w, const float *bias, float *out, const ngeom *g,     \
        long y0, long x0, vmask m)                                                     \
    {                                                                                      \
        vec acc[RO][R];                                                                 \
        for (int o = 0; o < RO; o++) {                                                     \
            vec b = bias ? VSET1(bias[o]) : VZERO();               \
            for (int r = 0; r < R; r++)                                                    \
                acc[o][r] = b;                                                             \
        }                                                                                  \
        for (long c = 0; c < g->cg; c++) {                                                 \
            for (long i = 0; i < g->kh; i++) {                                             \
                const float *row = x + c * g->plane + (y0 + i * g->dh) * g->wp + x0;       \
                const float *pw = w + (c * g->kh + i) * g->kw * g->ocg;                    \
                for (long j = 0; j < g->kw; j++, pw += g->ocg) {                           \
                    vec xv[R];                                                          \
                    for (int r = 0; r < R; r++)                                            \
                        xv[r] = VLOADM(m, row + r * g->wp + j * g->dw);     \
                    rank1(acc[0], RO, R, pw, 1, xv);                                       \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int o = 0; o < RO; o++)                                                       \
            for (int r = 0; r < R; r++)                                                    \
                VSTOREM(out + o * g->oh * g->ow + (y0 + r) * g->ow + x0, m,  \
                                      acc[o][r]);                                          \
    }

/* RO output channels from o0, all rows and columns of one image */
#define NCHW_PANEL(...) NCHW_PANEL_(__VA_ARGS__)
#define NCHW_PANEL_(NAME, BIG, ONE, RO, R)                                                  \
    NCHW_BLOCK(BIG, RO, R)                                                                 \
    NCHW_BLOCK(ONE, RO, 1)                                                                 \
    ISA_FN static void NAME(                               \
        const float *x, const float *w, const float *bias, float *out, const ngeom *g)     \
    {                                                                                      \
        for (long x0 = 0; x0 < g->ow; x0 += VL) {                                          \
            long left = g->ow - x0;                                                        \
            vmask m = first(left);                                                     \
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

NCHW_PANEL(nchw_panel8, nchw_block8, nchw_single8, 8, NCHW_R8)
NCHW_PANEL(nchw_panel4, nchw_block4, nchw_single4, 4, NCHW_R4)
NCHW_PANEL(nchw_panel2, nchw_block2, nchw_single2, 2, NCHW_R2)
NCHW_PANEL(nchw_panel1, nchw_block1, nchw_single1, 1, NCHW_R1)

/*
 * n images of xp (n, groups*cg, hp, wp) -> out (n, groups*ocg, oh, ow), stride 1.
 * w: (groups, cg, kh, kw, ocg) contiguous; bias: groups*ocg floats or NULL.
 */
EXPORT void FN(conv_nchw)(const float *xp, const float *w, const float *bias, float *out,
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
 * per VL positions, RO gradient vectors and RK input vectors make RO*RK multiply-adds.
 * Per image the tile's vector sums are kept in acc (o, k, VL lanes), added up across
 * the lanes at the end.
 */
typedef struct {
    long wp, oh, ow, ktot;
    const long *off;
} wgeom;

#define NW_BLOCK(NAME, RO, RK)                                                             \
    ISA_INLINE void NAME(         \
        const float *x, const float *g, float *acc, const wgeom *d, long k0)               \
    {                                                                                      \
        vec a[RO][RK];                                                                  \
        for (int o = 0; o < RO; o++)                                                       \
            for (int k = 0; k < RK; k++)                                                   \
                a[o][k] = VLOAD(acc + (o * d->ktot + k0 + k) * VL);              \
        const float *xk[RK];                                                               \
        for (int k = 0; k < RK; k++)                                                       \
            xk[k] = x + d->off[k0 + k];                                                    \
        const long plane = d->oh * d->ow;                                                  \
        for (long y = 0; y < d->oh; y++) {                                                 \
            for (long x0 = 0; x0 < d->ow; x0 += VL) {                                      \
                long left = d->ow - x0;                                                    \
                vmask m = first(left);                                                 \
                vec gv[RO];                                                             \
                for (int o = 0; o < RO; o++)                                               \
                    gv[o] = VLOADM(m, g + o * plane + y * d->ow + x0);      \
                for (int k = 0; k < RK; k++) {                                             \
                    vec xv = VLOADM(m, xk[k] + y * d->wp + x0);          \
                    for (int o = 0; o < RO; o++)                                           \
                        a[o][k] = VFMA(gv[o], xv, a[o][k]);                     \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int o = 0; o < RO; o++)                                                       \
            for (int k = 0; k < RK; k++)                                                   \
                VSTORE(acc + (o * d->ktot + k0 + k) * VL, a[o][k]);              \
    }

/* RO output channels: the taps in blocks of RK, then one at a time */
#define NW_PANEL(...) NW_PANEL_(__VA_ARGS__)
#define NW_PANEL_(NAME, BIG, ONE, RO, RK)                                                  \
    NW_BLOCK(BIG, RO, RK)                                                                  \
    NW_BLOCK(ONE, RO, 1)                                                                   \
    ISA_FN static void NAME(                               \
        const float *x, const float *g, float *acc, const wgeom *d)                        \
    {                                                                                      \
        long k0 = 0;                                                                       \
        for (; k0 + RK <= d->ktot; k0 += RK)                                               \
            BIG(x, g, acc, d, k0);                                                         \
        for (; k0 < d->ktot; k0++)                                                         \
            ONE(x, g, acc, d, k0);                                                         \
    }

NW_PANEL(nw_panel4, nw_block4, nw_single4, 4, NW_RK4)
NW_PANEL(nw_panel2, nw_block2, nw_single2, 2, NW_RK2)
NW_PANEL(nw_panel1, nw_block1, nw_single1, 1, NW_RK1)

/*
 * n images: xp (n, groups*cg, hp, wp), g (n, groups*ocg, oh, ow) -> adds into
 * dw (groups*ocg, cg, kh, kw). Returns 0, or -1 when memory for the sums is short.
 */
EXPORT int FN(conv_dw_nchw)(const float *xp, const float *g, float *dw, long n, long hp,
                            long wp, long groups, long cg, long ocg, long kh, long kw,
                            long dh, long dwd, long oh, long ow)
{
    long ktot = cg * kh * kw;
    long *off = malloc(sizeof(long) * ktot);
    float *acc = calloc((size_t)(groups * ocg * ktot * VL), sizeof(float));
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
            float *ab = acc + grp * ocg * ktot * VL;
            long o0 = 0;
            for (; ocg - o0 >= 4; o0 += 4)
                nw_panel4(xb, gb + o0 * oh * ow, ab + o0 * ktot * VL, &d);
            for (; ocg - o0 >= 2; o0 += 2)
                nw_panel2(xb, gb + o0 * oh * ow, ab + o0 * ktot * VL, &d);
            for (; o0 < ocg; o0++)
                nw_panel1(xb, gb + o0 * oh * ow, ab + o0 * ktot * VL, &d);
        }
    }
    for (long q = 0; q < groups * ocg * ktot; q++) {
        float t = 0.0f;
        for (int l = 0; l < VL; l++)
            t += acc[q * VL + l];
        dw[q] += t;
    }
    free(off);
    free(acc);
    return 0;
}

/* One image: xp[top + y, left + x, c] = src[c, y, x] (strides sc, sy, sx in floats),
 * zero elsewhere. Channel-first sources (sx == 1) go through VLxVL transposes,
 * channels-last ones (sc == 1, sx == c) row by row. */
ISA_FN static void pad_image(const float *src, long sc, long sy, long sx, float *xp, long c,
                             long h, long w, long top, long left, long hp, long wp)
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
            for (long x0 = 0; x0 < w; x0 += VL) {
                long nx = w - x0 < VL ? w - x0 : VL;
                for (long c0 = 0; c0 < c; c0 += VL) {
                    long nc = c - c0 < VL ? c - c0 : VL;
                    vec r[VL];
                    for (long k = 0; k < VL; k++)
                        r[k] = k < nc ? VLOADM(first(nx), s + (c0 + k) * sc + x0) : VZERO();
                    transpose(r);
                    for (long q = 0; q < nx; q++)
                        VSTOREM(row + (x0 + q) * c + c0, first(nc), r[q]);
                }
            }
        } else {
            for (long x = 0; x < w; x++)
                for (long k = 0; k < c; k++)
                    row[x * c + k] = s[k * sc + x * sx];
        }
    }
}

/* The panels of the channels-last forward: output channels in vectors (nv per group),
 * split into np panels of V vectors (the last one possibly narrower). */
typedef struct {
    long k, nv, np, V, pw, gsize;
} fpanels;

ISA_INLINE fpanels panels_of(long cg, long ocg, long kh, long kw)
{
    fpanels p;
    p.k = kh * kw * cg;
    p.nv = (ocg + VL - 1) / VL;
    p.np = (p.nv + FWD_VMAX - 1) / FWD_VMAX;
    p.V = (p.nv + p.np - 1) / p.np;
    p.pw = p.V * VL;
    p.gsize = p.k * p.nv * VL; /* packed weights of one group */
    return p;
}

/* floats of the packed weights and biases for one convolution */
EXPORT ISA_FN long FN(conv_packed_floats)(long groups, long cg, long ocg, long kh, long kw)
{
    fpanels p = panels_of(cg, ocg, kh, kw);
    return groups * (p.gsize + p.nv * VL);
}

/*
 * Packs the weights for FN(conv_nhwc): per group, each panel as [kh][kw][c][width]
 * (zeros past the last output channel), then per group the nv*VL biases (zeros without
 * bias). w is (groups*ocg, cg, kh, kw) as PyTorch keeps it when oihw, else
 * (groups, kh*kw*cg, ocg). dst holds FN(conv_packed_floats) floats.
 */
EXPORT ISA_FN void FN(conv_pack)(const float *w, long oihw, const float *bias, long groups,
                                 long cg, long ocg, long kh, long kw, float *dst)
{
    fpanels pn = panels_of(cg, ocg, kh, kw);
    const long k = pn.k, taps = kh * kw;
    float *bpk = dst + groups * pn.gsize;
    for (long grp = 0; grp < groups; grp++)
        for (long p = 0; p < pn.np; p++) {
            const long o0 = p * pn.pw, width = (pn.nv * VL - o0 < pn.pw ? pn.nv * VL - o0 : pn.pw);
            float *d = dst + grp * pn.gsize + k * o0;
            if (oihw) {
                /* one input channel at a time: its taps of the panel's output channels
                 * lie on `width` source lines that stay in L1 for all taps; each
                 * (tap, channel) row of the panel is written in one run */
                const long have = ocg - o0 < width ? ocg - o0 : width;
                const float *so = w + (grp * ocg + o0) * cg * taps; /* [o][c][i][j] */
                for (long c = 0; c < cg; c++)
                    for (long t = 0; t < taps; t++) {
                        float *row = d + (t * cg + c) * width;
                        for (long o = 0; o < have; o++)
                            row[o] = so[(o * cg + c) * taps + t];
                        for (long o = have; o < width; o++)
                            row[o] = 0.0f;
                    }
            } else {
                const float *sw = w + grp * k * ocg;
                for (long q = 0; q < k; q++)
                    for (long o = 0; o < width; o++)
                        d[q * width + o] = o0 + o < ocg ? sw[q * ocg + o0 + o] : 0.0f;
            }
            for (long o = 0; o < width; o++)
                bpk[grp * pn.nv * VL + o0 + o] =
                    bias && o0 + o < ocg ? bias[grp * ocg + o0 + o] : 0.0f;
        }
}

/*
 * n images of xp (n, hp, wp, groups*cg) -> out (n, oh, ow, groups*ocg), with the weights
 * and biases packed by FN(conv_pack).
 * With src, each image is first padded into xp from src (n, c, h, w; strides s in floats,
 * padding top and left), one image at a time, so it is still in cache when convolved.
 * l1, l2: the data cache sizes in bytes (for the blocks).
 */
EXPORT ISA_FN void FN(conv_nhwc)(const float *src, long s0, long s1, long s2, long s3, long h,
                                 long w_, long top, long left, float *xp, const float *packed,
                                 float *out, long n, long hp, long wp, long groups, long cg,
                                 long ocg, long kh, long kw, long sh, long sw, long dh, long dw,
                                 long oh, long ow, long l1, long l2)
{
    fgeom g = {wp, groups * cg, groups * ocg, cg, kh, kw, sh, sw, dh, dw, oh, ow};
    fpanels pn = panels_of(cg, ocg, kh, kw);
    const long k = pn.k, nv = pn.nv, np = pn.np, V = pn.V, pw = pn.pw, gsize = pn.gsize;
    const float *wpk = packed, *bpk = packed + groups * gsize;
    /* the channel block and the row band of each panel width (see the rules above) */
    long cbs[FWD_VMAX + 1], bands[FWD_VMAX + 1];
    for (long v = 1; v <= FWD_VMAX; v++) {
        long cb = l1 / (sizeof(float) * kh * kw * v * VL);
        long most = SUM_BLOCK / (kh * kw);
        cb = cb < most ? cb : most;
        cb = cb < 1 ? 1 : (cb > cg ? cg : cb);
        long blocks = (cg + cb - 1) / cb;
        cbs[v] = (cg + blocks - 1) / blocks;
        long band = (l2 / 2) / (sizeof(float) * ow * v * VL);
        bands[v] = band < 1 ? 1 : band;
    }
    for (long b = 0; b < n; b++) {
        if (src)
            pad_image(src + b * s0, s1, s2, s3, xp + b * hp * wp * g.xs, g.xs, h, w_, top, left,
                      hp, wp);
        for (long grp = 0; grp < groups; grp++) {
            const float *xb = xp + b * hp * wp * g.xs + grp * cg;
            float *ob = out + b * oh * ow * g.os + grp * ocg;
            for (long p = 0; p < np; p++) {
                const long o0 = p * pw, vp = (nv - p * V < V ? nv - p * V : V);
                vmask mk[FWD_VMAX];
                for (long v = 0; v < vp; v++)
                    mk[v] = first(ocg - o0 - VL * v);
                fwd_panel(xb, wpk + grp * gsize + k * o0, bpk + grp * nv * VL + o0, ob + o0, &g,
                          (int)vp, cbs[vp], bands[vp], mk);
            }
        }
    }
}

/*
 * Max-pool backward on channels-last data: each window's gradient goes to its first tap
 * (row-major) equal to the window's maximum, or to its first NaN when the maximum is
 * NaN, as the NumPy path does. Vectors run across channels.
 * xp (n, hp, wp, c) the padded input, best and g (n, oh, ow, c) the forward's output and
 * its gradient; adds into dxp (n, hp, wp, c), which the caller zeroes.
 */
EXPORT ISA_FN void FN(maxpool_bwd_nhwc)(const float *xp, const float *best, const float *g, float *dxp,
                                 long n, long hp, long wp, long c, long oh, long ow, long kh,
                                 long kw, long sh, long sw, long dh, long dw)
{
    for (long b = 0; b < n; b++) {
        const float *xb = xp + b * hp * wp * c;
        float *db = dxp + b * hp * wp * c;
        for (long y = 0; y < oh; y++) {
            for (long x = 0; x < ow; x++) {
                const long o = ((b * oh + y) * ow + x) * c;
                for (long c0 = 0; c0 < c; c0 += VL) {
                    vmask lanes = first(c - c0);
                    vec m = VLOADM(lanes, best + o + c0);
                    vec gv = VLOADM(lanes, g + o + c0);
                    cmask nan_max = IS_NAN(m), found = C_NONE;
                    for (long i = 0; i < kh; i++) {
                        for (long j = 0; j < kw; j++) {
                            long at = ((y * sh + i * dh) * wp + x * sw + j * dw) * c + c0;
                            vec v = VLOADM(lanes, xb + at);
                            cmask hit = C_OR(CMP_EQ(v, m), C_AND(IS_NAN(v), nan_max));
                            hit = C_ANDNOT(found, hit);
                            found = C_OR(found, hit);
                            VSTOREM(db + at, lanes, ADD_WHERE(VLOADM(lanes, db + at), hit, gv));
                        }
                    }
                }
            }
        }
    }
}
