/*
 * BatchNorm kernels, float32 data with per-channel statistics in double.
 *
 * Layouts: channel-first x[n][c][hw] (nhwc = 0) and channels-last x[n][hw][c] (nhwc = 1),
 * each for the images of one worker's share. Sums are taken in float over short blocks
 * (BLK values per lane) and added to double accumulators after each block, so the rounding
 * error stays that of a BLK-term float sum plus a double sum, whatever the batch size. The
 * statistics are of x - shift (shift: one value of the channel), which keeps the one-pass
 * variance E[d^2] - E[d]^2 free of cancellation when the mean is large against the spread.
 *
 * Plain C: the compiler vectorises the inner loops (independent lanes, no reassociation).
 */
#include <stddef.h>

#define LANES 16
#define BLK 32 /* values per lane summed in float before the double accumulators */

/* The two per-channel sums both passes need: s1[c] += sum of g', s2[c] += sum of
 * g' * (x - center[c]), where g' is g, or x - center[c] when g is NULL (then s1, s2 are
 * the shifted sum and sum of squares: the batch statistics), and is zeroed where y <= 0
 * when y is given (BatchNorm fused with ReLU). fa, fb: c floats of scratch. */
static inline float gprime(const float *g, const float *x, const float *y, long i, float m)
{
    float gv = g ? g[i] : x[i] - m;
    return (y && !(y[i] > 0.0f)) ? 0.0f : gv;
}

void cnnkit_bn_sums_f32(const float *g, const float *x, const float *y, long n, long c, long hw,
                        int nhwc, const float *center, double *s1, double *s2, float *fa,
                        float *fb)
{
    if (!nhwc) {
        for (long i = 0; i < n * c; i++) { /* one image's channel: hw contiguous values */
            const long ch = i % c, off = i * hw;
            const float m = center[ch];
            const float *gs = g ? g + off : NULL, *xs = x + off, *ys = y ? y + off : NULL;
            long p = 0;
            while (p < hw) {
                float a[LANES] = {0}, b[LANES] = {0};
                long end = p + (long)LANES * BLK;
                if (end > hw)
                    end = hw;
                for (; p + LANES <= end; p += LANES)
                    for (int k = 0; k < LANES; k++) {
                        float gv = gprime(gs, xs, ys, p + k, m);
                        a[k] += gv;
                        b[k] += gv * (xs[p + k] - m);
                    }
                for (; p < end; p++) {
                    float gv = gprime(gs, xs, ys, p, m);
                    a[0] += gv;
                    b[0] += gv * (xs[p] - m);
                }
                double sa = 0, sb = 0;
                for (int k = 0; k < LANES; k++) {
                    sa += a[k];
                    sb += b[k];
                }
                s1[ch] += sa;
                s2[ch] += sb;
            }
        }
        return;
    }
    /* channels-last: per-channel float partials over BLK rows, then into the doubles */
    long rows = n * hw;
    for (long r0 = 0; r0 < rows; r0 += BLK) {
        long r1 = r0 + BLK < rows ? r0 + BLK : rows;
        for (long ch = 0; ch < c; ch++)
            fa[ch] = fb[ch] = 0.0f;
        for (long r = r0; r < r1; r++) {
            const long off = r * c;
            const float *gs = g ? g + off : NULL, *xs = x + off, *ys = y ? y + off : NULL;
            for (long ch = 0; ch < c; ch++) {
                float gv = gprime(gs, xs, ys, ch, center[ch]);
                fa[ch] += gv;
                fb[ch] += gv * (xs[ch] - center[ch]);
            }
        }
        for (long ch = 0; ch < c; ch++) {
            s1[ch] += fa[ch];
            s2[ch] += fb[ch];
        }
    }
}

/* y = (x - m[c]) * a[c] + b[c], then max(y, 0) if relu. Centring first keeps the float32
 * rounding that of the normalised value: x * a + (b - m * a) would round x * a, as large as
 * the mean times the inverse spread, and cancel it against the shift afterwards. */
void cnnkit_bn_apply_f32(const float *x, float *y, long n, long c, long hw, int nhwc,
                         const float *m, const float *a, const float *b, int relu)
{
    if (!nhwc) {
        for (long i = 0; i < n * c; i++) {
            const float mv = m[i % c], av = a[i % c], bv = b[i % c];
            const float *xs = x + i * hw;
            float *ys = y + i * hw;
            if (relu)
                for (long p = 0; p < hw; p++) {
                    float v = (xs[p] - mv) * av + bv;
                    ys[p] = v > 0.0f ? v : 0.0f;
                }
            else
                for (long p = 0; p < hw; p++)
                    ys[p] = (xs[p] - mv) * av + bv;
        }
        return;
    }
    for (long r = 0; r < n * hw; r++) {
        const float *xs = x + r * c;
        float *ys = y + r * c;
        if (relu)
            for (long ch = 0; ch < c; ch++) {
                float v = (xs[ch] - m[ch]) * a[ch] + b[ch];
                ys[ch] = v > 0.0f ? v : 0.0f;
            }
        else
            for (long ch = 0; ch < c; ch++)
                ys[ch] = (xs[ch] - m[ch]) * a[ch] + b[ch];
    }
}

/* dx = a[c] * g' + b[c] * (x - mean[c]) + d[c] (g' as in the reduction) */
void cnnkit_bn_bwd_apply_f32(const float *g, const float *x, const float *y, float *dx, long n,
                             long c, long hw, int nhwc, const float *mean, const float *a,
                             const float *b, const float *d)
{
    if (!nhwc) {
        for (long i = 0; i < n * c; i++) {
            const long ch = i % c;
            const float av = a[ch], bv = b[ch], dv = d[ch], m = mean[ch];
            const float *gs = g + i * hw, *xs = x + i * hw, *ys = y ? y + i * hw : NULL;
            float *ds = dx + i * hw;
            for (long p = 0; p < hw; p++) {
                float gv = gs[p];
                if (ys)
                    gv = ys[p] > 0.0f ? gv : 0.0f;
                ds[p] = av * gv + bv * (xs[p] - m) + dv;
            }
        }
        return;
    }
    for (long r = 0; r < n * hw; r++) {
        const float *gs = g + r * c, *xs = x + r * c, *ys = y ? y + r * c : NULL;
        float *ds = dx + r * c;
        for (long ch = 0; ch < c; ch++) {
            float gv = gs[ch];
            if (ys)
                gv = ys[ch] > 0.0f ? gv : 0.0f;
            ds[ch] = a[ch] * gv + b[ch] * (xs[ch] - mean[ch]) + d[ch];
        }
    }
}
