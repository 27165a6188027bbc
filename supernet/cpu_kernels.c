/* CPU kernels for the ops where PyTorch's channels-last CPU path is slowest at the supernet's sizes
 * (C = 20..80 channels, 8x8..32x32 pixels): batch norm with batch statistics (a ReLU and drop-path's
 * per-sample factor optionally fused in), the weight gradient of a depthwise convolution, and 3x3 max and
 * average pooling at stride 1. Built and loaded by cpu_kernels.py; every tensor is float32, channels-last
 * (NHWC), contiguous, so a feature map is M = N*H*W rows of C channels.
 *
 * Threads: OpenMP, the runtime PyTorch itself loads (libgomp), so torch.set_num_threads applies here too.
 * Results are deterministic for a given thread count (static schedules, fixed reduction order).
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <omp.h>

/* Feature maps are processed in blocks of ROW_BLOCK rows, each one contiguous run of ROW_BLOCK * C floats;
 * per-channel values are tiled to the same length, so every inner loop is a long, fully vectorised loop
 * over contiguous memory (a loop over C = 20 channels per row would spend half its time in remainders). */
#define ROW_BLOCK 32
#define FOLD_BLOCKS 32 /* blocks summed in float before being added to the double accumulators */

/* Vectors of LANES floats (GCC/Clang vector extensions: the compiler maps them onto the CPU's SIMD registers) */
#define LANES 16
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
typedef float uvec __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));  /* unaligned access */
typedef int32_t ivec __attribute__((vector_size(LANES * sizeof(int32_t))));

/* Where the per-channel values repeat every few vectors (C = 20, 40, 80: a period of P = lcm(C, LANES) = 80
 * floats, V = 5 vectors, R = 4 rows), the batch-norm passes keep them, and the sums, in registers: the only
 * memory traffic left is the feature maps themselves. Wider periods take the row-block path. */
#define MAX_PERIOD_VECS 8
#define FOLD_PERIODS 64 /* periods summed in float registers before being added to the double sums */

static int64_t period_floats(int64_t C) {
    int64_t a = C, b = LANES;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return C / a * LANES;
}

static inline vec masked(vec v, vec gate) { return (vec)((ivec)v & (gate > (vec){0})); }  /* v where gate > 0 */

/* ROW_BLOCK copies of the C values v (zeros when v is NULL), appended to out. */
static void tile(const float* v, int64_t C, float* out) {
    for (int64_t r = 0; r < ROW_BLOCK; r++)
        for (int64_t c = 0; c < C; c++) out[r * C + c] = v ? v[c] : 0.f;
}

static int64_t block_len(int64_t blk, int64_t M, int64_t C) {
    int64_t r0 = blk * ROW_BLOCK, r1 = r0 + ROW_BLOCK < M ? r0 + ROW_BLOCK : M;
    return (r1 - r0) * C;
}

/* Add the per-position float sums f (ROW_BLOCK * C) into the per-channel double sums a, and clear f. */
static void fold(float* f, int64_t C, double* a) {
    for (int64_t r = 0; r < ROW_BLOCK; r++)
        for (int64_t c = 0; c < C; c++) { a[c] += f[r * C + c]; f[r * C + c] = 0.f; }
}

/* The per-sample factor rs (drop-path's mask; hw rows per sample) of the n / C rows of block blk, in *f
 * (1 when rs is NULL). Returns 0 when the block straddles two samples (never when hw is a multiple of
 * ROW_BLOCK): the caller then looks the factor up per row. */
static int block_factor(const float* rs, int64_t hw, int64_t blk, int64_t n, int64_t C, float* f) {
    int64_t r0 = blk * ROW_BLOCK, r1 = r0 + n / C - 1;
    *f = 1.f;
    if (!rs) return 1;
    if (r0 / hw != r1 / hw) return 0;
    *f = rs[r0 / hw];
    return 1;
}

/* channel_sums' period path for periods [per0, per1) of P floats (V vectors, R rows): adds the sums per
 * position of a period to d1, d2 (P doubles each). tps, tqs: the shifts tiled to a period. */
static inline __attribute__((always_inline)) void period_sums(
        const float* restrict p, const float* restrict q, const float* restrict gate, const float* restrict rs,
        int64_t hw, int64_t R, int64_t P, const float* restrict tps, const float* restrict tqs, int64_t per0,
        int64_t per1, const int V, double* restrict d1, double* restrict d2) {
    vec sp[V], sq[V], a1[V], a2[V];
    for (int v = 0; v < V; v++) {
        sp[v] = *(const uvec*)(tps + v * LANES); sq[v] = *(const uvec*)(tqs + v * LANES);
        a1[v] = (vec){0}; a2[v] = (vec){0};
    }
    int pending = 0;
    for (int64_t per = per0; per < per1; per++) {
        const float* restrict pp = p + per * P;
        const float* restrict qq = q + per * P;
        float f = rs ? rs[per * R / hw] : 1.f;
        for (int v = 0; v < V; v++) {
            vec pv = *(const uvec*)(pp + v * LANES);
            if (gate) pv = masked(pv, *(const uvec*)(gate + per * P + v * LANES));
            vec d = pv * f - sp[v];
            a1[v] += d;
            a2[v] += d * (*(const uvec*)(qq + v * LANES) - sq[v]);
        }
        if (++pending == FOLD_PERIODS || per == per1 - 1) {
            for (int v = 0; v < V; v++)
                for (int l = 0; l < LANES; l++) { d1[v * LANES + l] += a1[v][l]; d2[v * LANES + l] += a2[v][l]; }
            for (int v = 0; v < V; v++) { a1[v] = (vec){0}; a2[v] = (vec){0}; }
            pending = 0;
        }
    }
}

/* channel_sums through period_sums where the period is short (and no period straddles two samples):
 * returns 0 when done, 1 on allocation failure, -1 when the caller must take the row-block path. */
static int channel_sums_by_period(const float* restrict p, const float* restrict ps, const float* restrict q,
                                  const float* restrict qs, const float* restrict gate, const float* restrict rs,
                                  int64_t hw, int64_t M, int64_t C, double* restrict s1, double* restrict s2) {
    int64_t P = period_floats(C), V = P / LANES, R = P / C;
    if (V > MAX_PERIOD_VECS || (rs && hw % R)) return -1;
    int nt = omp_get_max_threads();
    int64_t periods = M / R;
    double* d = calloc((size_t)nt * 2 * P, sizeof(double));
    float* tiles = malloc((size_t)2 * P * sizeof(float));
    if (!d || !tiles) { free(d); free(tiles); return 1; }
    for (int64_t k = 0; k < P; k++) { tiles[k] = ps ? ps[k % C] : 0.f; tiles[P + k] = qs ? qs[k % C] : 0.f; }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t per0 = periods * t / n, per1 = periods * (t + 1) / n;
        double* d1 = d + (size_t)t * 2 * P;
        double* d2 = d1 + P;
        switch (V) {  /* a constant V: the sums are registers */
            case 1: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 1, d1, d2); break;
            case 2: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 2, d1, d2); break;
            case 3: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 3, d1, d2); break;
            case 4: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 4, d1, d2); break;
            case 5: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 5, d1, d2); break;
            case 6: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 6, d1, d2); break;
            case 7: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 7, d1, d2); break;
            default: period_sums(p, q, gate, rs, hw, R, P, tiles, tiles + P, per0, per1, 8, d1, d2); break;
        }
    }
    for (int64_t r = periods * R; r < M; r++)  /* the rows after the last whole period */
        for (int64_t c = 0; c < C; c++) {
            int64_t e = r * C + c, k = (r - periods * R) * C + c;
            float pe = gate && !(gate[e] > 0.f) ? 0.f : p[e];
            float dd = pe * (rs ? rs[r / hw] : 1.f) - tiles[k];
            d[k] += dd;
            d[P + k] += dd * (q[e] - tiles[P + k]);
        }
    for (int64_t c = 0; c < C; c++) { s1[c] = 0; s2[c] = 0; }
    for (int t = 0; t < nt; t++)
        for (int64_t k = 0; k < P; k++) {
            s1[k % C] += d[(size_t)t * 2 * P + k];
            s2[k % C] += d[(size_t)t * 2 * P + P + k];
        }
    free(d); free(tiles);
    return 0;
}

/* Per-channel sums over all rows of s1 = p' - ps and s2 = (p' - ps) * (q - qs), in double (ps, qs: a value
 * per channel, NULL for 0), where p' = p, or 0 where a gate is given and not positive, times the row's
 * sample factor rs (hw rows per sample; rs NULL: 1). For the batch statistics p = q = x and ps = qs = the
 * first row: shifting by a sample keeps the one-pass variance accurate when the mean is large against the
 * spread. For the batch-norm backward p = grad, ps = NULL, q = x, qs = mean, the gate is the output of a
 * fused ReLU and rs the drop-path factors the output was multiplied by. Returns 0 on success. */
static int channel_sums(const float* restrict p, const float* restrict ps, const float* restrict q,
                        const float* restrict qs, const float* restrict gate, const float* restrict rs,
                        int64_t hw, int64_t M, int64_t C, double* restrict s1, double* restrict s2) {
    int by_period = channel_sums_by_period(p, ps, q, qs, gate, rs, hw, M, C, s1, s2);
    if (by_period >= 0) return by_period;
    int nt = omp_get_max_threads();
    int64_t L = ROW_BLOCK * C, blocks = (M + ROW_BLOCK - 1) / ROW_BLOCK;
    double* acc = calloc((size_t)nt * 2 * C, sizeof(double));
    float* buf = calloc((size_t)(2 + 2 * nt) * L, sizeof(float));
    if (!acc || !buf) { free(acc); free(buf); return 1; }
    float* tps = buf;
    float* tqs = buf + L;
    tile(ps, C, tps);
    tile(qs, C, tqs);
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        double* a1 = acc + (size_t)t * 2 * C;
        double* a2 = a1 + C;
        float* restrict f1 = buf + (size_t)(2 + 2 * t) * L;
        float* restrict f2 = f1 + L;
        int pending = 0;
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; blk++) {
            const float* restrict pb = p + blk * L;
            const float* restrict qb = q + blk * L;
            const float* restrict gb = gate ? gate + blk * L : NULL;
            int64_t n = block_len(blk, M, C);
            float f;
            if (!block_factor(rs, hw, blk, n, C, &f)) {
                for (int64_t e = 0; e < n; e++) {
                    float d = (gb && !(gb[e] > 0.f) ? 0.f : pb[e]) * rs[(blk * ROW_BLOCK + e / C) / hw] - tps[e];
                    f1[e] += d;
                    f2[e] += d * (qb[e] - tqs[e]);
                }
            } else if (gb) {
                #pragma omp simd
                for (int64_t e = 0; e < n; e++) {
                    float d = (gb[e] > 0.f ? pb[e] : 0.f) * f - tps[e];
                    f1[e] += d;
                    f2[e] += d * (qb[e] - tqs[e]);
                }
            } else if (p == q && ps == qs && !rs) {  /* the batch statistics: s2 sums squares, fewer loads */
                #pragma omp simd
                for (int64_t e = 0; e < n; e++) {
                    float d = pb[e] - tps[e];
                    f1[e] += d;
                    f2[e] += d * d;
                }
            } else {
                #pragma omp simd
                for (int64_t e = 0; e < n; e++) {
                    float d = pb[e] * f - tps[e];
                    f1[e] += d;
                    f2[e] += d * (qb[e] - tqs[e]);
                }
            }
            if (++pending == FOLD_BLOCKS) { fold(f1, C, a1); fold(f2, C, a2); pending = 0; }
        }
        fold(f1, C, a1);
        fold(f2, C, a2);
    }
    for (int64_t c = 0; c < C; c++) {
        double x1 = 0, x2 = 0;
        for (int t = 0; t < nt; t++) { x1 += acc[(size_t)t * 2 * C + c]; x2 += acc[(size_t)t * 2 * C + C + c]; }
        s1[c] = x1; s2[c] = x2;
    }
    free(acc); free(buf);
    return 0;
}

/* channel_affine's period path for periods [per0, per1) (see period_sums); ta, tb, td: a, b, d tiled to a
 * period. */
static inline __attribute__((always_inline)) void period_affine(
        const float* restrict p, const float* restrict q, const float* restrict gate, const float* restrict rs,
        int64_t hw, int64_t R, int64_t P, const float* restrict ta, const float* restrict tb,
        const float* restrict td, int relu, int64_t per0, int64_t per1, const int V, float* restrict out) {
    vec a[V], b[V], d[V];
    for (int v = 0; v < V; v++) {
        a[v] = *(const uvec*)(ta + v * LANES); b[v] = *(const uvec*)(tb + v * LANES);
        d[v] = *(const uvec*)(td + v * LANES);
    }
    for (int64_t per = per0; per < per1; per++) {
        float f = rs ? rs[per * R / hw] : 1.f;
        for (int v = 0; v < V; v++) {
            int64_t e = per * P + v * LANES;
            vec pv = *(const uvec*)(p + e), o;
            if (q) {
                if (gate) pv = masked(pv, *(const uvec*)(gate + e));
                o = a[v] * f * pv + b[v] * *(const uvec*)(q + e) + d[v];
            } else {
                o = a[v] * pv + d[v];
                if (relu) o = masked(o, o);
                o *= f;
            }
            *(uvec*)(out + e) = o;
        }
    }
}

/* Forward (q NULL): out = f * (a * p + d), then max(0, .) with relu. Backward (q given): out = a * f * p' +
 * b * q + d with p' = p where the gate is positive or there is no gate, else 0. a, b, d: per channel; f: the
 * row's sample factor rs (hw rows per sample; rs NULL: 1). The batch-norm normalisation and its input
 * gradient, each one pass. Returns 0 on success. */
static int channel_affine(const float* restrict p, const float* restrict q, const float* restrict gate,
                          const float* restrict rs, int64_t hw, const float* a, const float* b, const float* d,
                          int relu, int64_t M, int64_t C, float* restrict out) {
    int64_t P = period_floats(C), V = P / LANES, R = P / C;
    if (V <= MAX_PERIOD_VECS && !(rs && hw % R)) {
        float* tiles = malloc((size_t)3 * P * sizeof(float));
        if (!tiles) return 1;
        for (int64_t k = 0; k < P; k++) {
            tiles[k] = a[k % C]; tiles[P + k] = b ? b[k % C] : 0.f; tiles[2 * P + k] = d[k % C];
        }
        int64_t periods = M / R;
        #pragma omp parallel
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            int64_t per0 = periods * t / n, per1 = periods * (t + 1) / n;
            const float *ta = tiles, *tb = tiles + P, *td = tiles + 2 * P;
            switch (V) {  /* a constant V: the per-channel values are registers */
                case 1: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 1, out); break;
                case 2: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 2, out); break;
                case 3: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 3, out); break;
                case 4: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 4, out); break;
                case 5: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 5, out); break;
                case 6: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 6, out); break;
                case 7: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 7, out); break;
                default: period_affine(p, q, gate, rs, hw, R, P, ta, tb, td, relu, per0, per1, 8, out); break;
            }
        }
        for (int64_t e = periods * P; e < M * C; e++) {  /* the rows after the last whole period */
            int64_t k = e - periods * P;
            float f = rs ? rs[e / C / hw] : 1.f;
            if (q) {
                float pe = gate && !(gate[e] > 0.f) ? 0.f : p[e];
                out[e] = tiles[k] * f * pe + tiles[P + k] * q[e] + tiles[2 * P + k];
            } else {
                float v = tiles[k] * p[e] + tiles[2 * P + k];
                out[e] = f * (relu && !(v > 0.f) ? 0.f : v);
            }
        }
        free(tiles);
        return 0;
    }
    int64_t L = ROW_BLOCK * C, blocks = (M + ROW_BLOCK - 1) / ROW_BLOCK;
    float* buf = malloc((size_t)3 * L * sizeof(float));
    if (!buf) return 1;
    float* restrict ta = buf;
    float* restrict tb = buf + L;
    float* restrict td = buf + 2 * L;
    tile(a, C, ta);
    tile(b, C, tb);
    tile(d, C, td);
    #pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const float* restrict pb = p + blk * L;
        float* restrict ob = out + blk * L;
        int64_t n = block_len(blk, M, C);
        float f;
        if (!block_factor(rs, hw, blk, n, C, &f)) {
            for (int64_t e = 0; e < n; e++) {
                float fe = rs[(blk * ROW_BLOCK + e / C) / hw];
                if (q) {
                    float pe = gate && !(gate[blk * L + e] > 0.f) ? 0.f : pb[e];
                    ob[e] = ta[e] * fe * pe + tb[e] * q[blk * L + e] + td[e];
                } else {
                    float v = ta[e] * pb[e] + td[e];
                    ob[e] = fe * (relu && !(v > 0.f) ? 0.f : v);
                }
            }
        } else if (q && gate) {
            const float* restrict qb = q + blk * L;
            const float* restrict gb = gate + blk * L;
            #pragma omp simd
            for (int64_t e = 0; e < n; e++) ob[e] = ta[e] * f * (gb[e] > 0.f ? pb[e] : 0.f) + tb[e] * qb[e] + td[e];
        } else if (q) {
            const float* restrict qb = q + blk * L;
            #pragma omp simd
            for (int64_t e = 0; e < n; e++) ob[e] = ta[e] * f * pb[e] + tb[e] * qb[e] + td[e];
        } else if (relu) {
            #pragma omp simd
            for (int64_t e = 0; e < n; e++) {
                float v = ta[e] * pb[e] + td[e];
                ob[e] = v > 0.f ? f * v : 0.f;
            }
        } else {
            #pragma omp simd
            for (int64_t e = 0; e < n; e++) ob[e] = f * (ta[e] * pb[e] + td[e]);
        }
    }
    free(buf);
    return 0;
}

/* Batch norm with the batch's statistics: y = (x - mean) * invstd * w + b, invstd = 1 / sqrt(var + eps), var
 * biased, followed by a ReLU when relu is set, and multiplied by the sample's factor rs (hw rows per
 * sample; rs NULL: none), drop-path's mask. Also writes mean, var and invstd (for the running statistics
 * and the backward pass). */
int bn_forward(const float* x, const float* w, const float* b, double eps, int relu, const float* rs, int64_t hw,
               int64_t M, int64_t C, float* y, float* mean, float* var, float* invstd) {
    double* s = malloc((size_t)2 * C * sizeof(double));
    float* scale = malloc((size_t)2 * C * sizeof(float));
    if (!s || !scale || channel_sums(x, x, x, x, NULL, NULL, 1, M, C, s, s + C)) { free(s); free(scale); return 1; }
    float* shift = scale + C;
    for (int64_t c = 0; c < C; c++) {
        double d = s[c] / M, v = s[C + c] / M - d * d;
        if (v < 0) v = 0;
        double m = x[c] + d, is = 1.0 / sqrt(v + eps);
        mean[c] = (float)m; var[c] = (float)v; invstd[c] = (float)is;
        scale[c] = (float)(w[c] * is);
        shift[c] = (float)(b[c] - m * w[c] * is);
    }
    int fail = channel_affine(x, NULL, NULL, rs, hw, scale, NULL, shift, relu, M, C, y);
    free(s); free(scale);
    return fail;
}

/* Gradients of bn_forward: with g' = g * rs (the sample factors the output was multiplied by) and, with a
 * fused ReLU, g' = 0 where its output y is not positive (y = NULL: no ReLU):
 * gx = w * invstd * (g' - mean(g') - (x - mean) * invstd^2 * mean(g' * (x - mean))),
 * gw = invstd * sum(g' * (x - mean)), gb = sum(g'). */
int bn_backward(const float* g, const float* x, const float* y, const float* rs, int64_t hw, const float* w,
                const float* mean, const float* invstd, int64_t M, int64_t C, float* gx, float* gw, float* gb) {
    double* s = malloc((size_t)2 * C * sizeof(double));
    float* coef = calloc((size_t)3 * C, sizeof(float));
    if (!s || !coef || channel_sums(g, NULL, x, mean, y, rs, hw, M, C, s, s + C)) { free(s); free(coef); return 1; }
    float *a = coef, *bq = coef + C, *d = coef + 2 * C;  /* gx = a * g' + bq * x + d */
    for (int64_t c = 0; c < C; c++) {
        double is = invstd[c], ac = w[c] * is, bc = -ac * is * is * s[C + c] / M;
        a[c] = (float)ac; bq[c] = (float)bc;
        d[c] = (float)(-ac * s[c] / M - bc * mean[c]);
        gw[c] = (float)(s[C + c] * is);
        gb[c] = (float)s[c];
    }
    int fail = channel_affine(g, x, y, rs, hw, a, bq, d, 0, M, C, gx);
    free(s); free(coef);
    return fail;
}

/* Weight gradient of a depthwise K x K convolution (K = 3, 5 or 7) with stride 1 and padding pad.
 * x: (N, H, W, C) input, g: (N, Ho, Wo, C) output gradient, gw: (K, K, C) result.
 * Each thread accumulates per (tap, output column, channel): A[i*K+j][ow*C + c], over a strip of images at a
 * time, copied into zero-padded rows (the convolution's padding becomes zero rows and columns, and every row
 * a whole number of vectors) that stay in the core's cache. For one vector of a row and one tap row i,
 * the K sums stay in registers while the strip's rows stream past (strip_taps); the columns and the
 * threads are summed at the end. Returns 0 on success, 2 for another K. */
#define STRIP_ROWS 32  /* output rows per strip: several images when they are small */

/* A[i*K+j][q] += the sum over the strip's output rows r (B images of Ho rows) of
 * xp[image of r, row oh + i][q + j*C] * gp[r][q]; xp: Hp padded rows of Lx floats per image, gp: rows of Lg. */
static inline __attribute__((always_inline)) void strip_taps(const float* restrict xp, const float* restrict gp,
        int64_t B, int64_t Hp, int64_t Ho, int64_t C, int64_t Lx, int64_t Lg, const int K, float* restrict A) {
    for (int64_t q = 0; q < Lg; q += LANES)
        for (int i = 0; i < K; i++) {
            vec acc[K];
            for (int j = 0; j < K; j++) acc[j] = *(const uvec*)(A + (i * K + j) * Lg + q);
            for (int64_t b = 0; b < B; b++)
                for (int64_t oh = 0; oh < Ho; oh++) {
                    vec gv = *(const uvec*)(gp + (b * Ho + oh) * Lg + q);
                    const float* xr = xp + (b * Hp + oh + i) * Lx + q;
                    for (int j = 0; j < K; j++) acc[j] += *(const uvec*)(xr + j * C) * gv;
                }
            for (int j = 0; j < K; j++) *(uvec*)(A + (i * K + j) * Lg + q) = acc[j];
        }
}

int dw_weight_grad(const float* restrict x, const float* restrict g, int64_t N, int64_t H, int64_t W, int64_t C,
                   int64_t Ho, int64_t Wo, int64_t K, int64_t pad, float* restrict gw) {
    if (K != 3 && K != 5 && K != 7) return 2;
    int nt = omp_get_max_threads();
    int64_t Lg = (Wo * C + LANES - 1) / LANES * LANES;  /* output row, padded to whole vectors */
    int64_t Lx = Lg + (K - 1) * C;                       /* input row with its padding columns */
    if (Lx < (W + pad) * C) Lx = (W + pad) * C;
    int64_t Hp = Ho + K - 1;                             /* input rows with the padding rows */
    if (Hp < H + pad) Hp = H + pad;
    int64_t B = Ho >= STRIP_ROWS ? 1 : STRIP_ROWS / Ho;  /* images per strip */
    if (B > N) B = N;
    int64_t strips = (N + B - 1) / B;
    size_t per_thread = (size_t)K * K * Lg + (size_t)B * Hp * Lx + (size_t)B * Ho * Lg;
    float* buf = calloc((size_t)nt * per_thread, sizeof(float));
    if (!buf) return 1;
    #pragma omp parallel num_threads(nt)
    {
        float* A = buf + (size_t)omp_get_thread_num() * per_thread;
        float* xp = A + (size_t)K * K * Lg;
        float* gp = xp + (size_t)B * Hp * Lx;
        #pragma omp for schedule(static)
        for (int64_t s = 0; s < strips; s++) {
            int64_t n0 = s * B, nb = n0 + B <= N ? B : N - n0;
            for (int64_t b = 0; b < nb; b++) {  /* the padding rows and columns and the row tails stay zero */
                for (int64_t h = 0; h < H; h++)
                    memcpy(xp + (b * Hp + pad + h) * Lx + pad * C, x + ((n0 + b) * H + h) * W * C,
                           (size_t)W * C * sizeof(float));
                for (int64_t h = 0; h < Ho; h++)
                    memcpy(gp + (b * Ho + h) * Lg, g + ((n0 + b) * Ho + h) * Wo * C, (size_t)Wo * C * sizeof(float));
            }
            switch (K) {  /* a constant K: the sums of a tap row are registers */
                case 3: strip_taps(xp, gp, nb, Hp, Ho, C, Lx, Lg, 3, A); break;
                case 5: strip_taps(xp, gp, nb, Hp, Ho, C, Lx, Lg, 5, A); break;
                default: strip_taps(xp, gp, nb, Hp, Ho, C, Lx, Lg, 7, A); break;
            }
        }
    }
    for (int64_t t = 0; t < K * K; t++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int th = 0; th < nt; th++)
                for (int64_t ow = 0; ow < Wo; ow++) s += buf[(size_t)th * per_thread + t * Lg + ow * C + c];
            gw[t * C + c] = (float)s;
        }
    free(buf);
    return 0;
}

/* 3x3 pooling at stride 1 with padding 1 over x: (N, H, W, C), output of the same size. Output (oh, ow)
 * reads the input pixels (oh - 1 + i, ow - 1 + j), taps t = 3 i + j, that lie inside the image. For a tap
 * and an output row, those pixels and outputs are contiguous runs of a row: the inner loops below run over
 * such runs, [lo, hi) in columns. */
typedef struct { int64_t out, in, len; } Run;

/* Tap column j: the outputs [lo, hi) of a row whose input column ow - 1 + j lies inside the image, as
 * offsets into the output row (out) and the input row (in) and a length, in floats. */
static Run tap_run(int64_t j, int64_t W, int64_t C) {
    int64_t lo = 1 - j > 0 ? 1 - j : 0, hi = W + 1 - j < W ? W + 1 - j : W;
    Run r = {lo * C, (lo - 1 + j) * C, (hi - lo) * C};
    return r;
}

/* Max pooling: y = the window's maximum (a NaN wins, as in PyTorch), times sample n's factor rs[n] when rs
 * is given (drop-path's mask), and, when arg is given, the winning tap (the first one on ties, as in
 * PyTorch) for the backward pass. */
void max_pool3(const float* restrict x, int64_t N, int64_t H, int64_t W, int64_t C, const float* restrict rs,
               float* restrict y, int32_t* restrict arg) {
    int64_t row = W * C;
    #pragma omp parallel for schedule(static)
    for (int64_t nr = 0; nr < N * H; nr++) {
        int64_t n = nr / H, oh = nr % H;
        float* restrict yo = y + nr * row;
        int32_t* restrict ao = arg ? arg + nr * row : NULL;
        for (int64_t e = 0; e < row; e++) yo[e] = -INFINITY;
        if (ao)  /* PyTorch's index for an all -inf window: its first pixel inside the image */
            for (int64_t ow = 0; ow < W; ow++)
                for (int64_t c = 0; c < C; c++) ao[ow * C + c] = 3 * (oh == 0) + (ow == 0);
        for (int64_t i = 0; i < 3; i++) {
            int64_t ih = oh - 1 + i;
            if (ih < 0 || ih >= H) continue;
            for (int64_t j = 0; j < 3; j++) {
                Run r = tap_run(j, W, C);
                const float* restrict xs = x + (n * H + ih) * row + r.in;
                float* restrict ys = yo + r.out;
                if (ao) {
                    int32_t t = (int32_t)(3 * i + j);
                    int32_t* restrict as = ao + r.out;
                    #pragma omp simd
                    for (int64_t e = 0; e < r.len; e++) {
                        float v = xs[e];
                        int take = v > ys[e] || v != v;
                        ys[e] = take ? v : ys[e];
                        as[e] = take ? t : as[e];
                    }
                } else {
                    #pragma omp simd
                    for (int64_t e = 0; e < r.len; e++) {
                        float v = xs[e];
                        ys[e] = v > ys[e] || v != v ? v : ys[e];
                    }
                }
            }
        }
        if (rs) {
            float f = rs[n];
            #pragma omp simd
            for (int64_t e = 0; e < row; e++) yo[e] *= f;
        }
    }
}

/* Input gradient of max_pool3: each input pixel gathers the gradient of the outputs whose winning tap it is,
 * times its sample's factor rs[n] (rs NULL: 1). */
void max_pool3_backward(const float* restrict g, const int32_t* restrict arg, int64_t N, int64_t H, int64_t W,
                        int64_t C, const float* restrict rs, float* restrict gx) {
    int64_t row = W * C;
    #pragma omp parallel for schedule(static)
    for (int64_t nr = 0; nr < N * H; nr++) {
        int64_t n = nr / H, ih = nr % H;
        float* restrict gi = gx + nr * row;
        for (int64_t e = 0; e < row; e++) gi[e] = 0.f;
        for (int64_t i = 0; i < 3; i++) {
            int64_t oh = ih + 1 - i;  /* the output row that reads input row ih through tap row i */
            if (oh < 0 || oh >= H) continue;
            for (int64_t j = 0; j < 3; j++) {
                Run r = tap_run(j, W, C);
                int32_t t = (int32_t)(3 * i + j);
                const float* restrict gs = g + (n * H + oh) * row + r.out;
                const int32_t* restrict as = arg + (n * H + oh) * row + r.out;
                float* restrict gis = gi + r.in;
                #pragma omp simd
                for (int64_t e = 0; e < r.len; e++) gis[e] += as[e] == t ? gs[e] : 0.f;
            }
        }
        if (rs) {
            float f = rs[n];
            #pragma omp simd
            for (int64_t e = 0; e < row; e++) gi[e] *= f;
        }
    }
}

/* f / (number of window pixels inside the image) of every output in row oh, per channel. */
static void inverse_counts(int64_t oh, int64_t H, int64_t W, int64_t C, float f, float* out) {
    int64_t rows = 3 - (oh == 0) - (oh == H - 1);
    for (int64_t ow = 0; ow < W; ow++) {
        int64_t cols = 3 - (ow == 0) - (ow == W - 1);
        for (int64_t c = 0; c < C; c++) out[ow * C + c] = f / (float)(rows * cols);
    }
}

/* Average pooling over the window's pixels inside the image (padding not counted, as the spaces say), times
 * sample n's factor rs[n] when rs is given (drop-path's mask). Returns 0 on success. */
int avg_pool3(const float* restrict x, int64_t N, int64_t H, int64_t W, int64_t C, const float* restrict rs,
              float* restrict y) {
    int64_t row = W * C;
    int nt = omp_get_max_threads();
    float* inv = malloc((size_t)nt * row * sizeof(float));
    if (!inv) return 1;
    #pragma omp parallel num_threads(nt)
    {
        float* restrict iv = inv + (size_t)omp_get_thread_num() * row;
        #pragma omp for schedule(static)
        for (int64_t nr = 0; nr < N * H; nr++) {
            int64_t n = nr / H, oh = nr % H;
            float* restrict yo = y + nr * row;
            for (int64_t e = 0; e < row; e++) yo[e] = 0.f;
            for (int64_t i = 0; i < 3; i++) {
                int64_t ih = oh - 1 + i;
                if (ih < 0 || ih >= H) continue;
                for (int64_t j = 0; j < 3; j++) {
                    Run r = tap_run(j, W, C);
                    const float* restrict xs = x + (n * H + ih) * row + r.in;
                    float* restrict ys = yo + r.out;
                    #pragma omp simd
                    for (int64_t e = 0; e < r.len; e++) ys[e] += xs[e];
                }
            }
            inverse_counts(oh, H, W, C, rs ? rs[n] : 1.f, iv);
            #pragma omp simd
            for (int64_t e = 0; e < row; e++) yo[e] *= iv[e];
        }
    }
    free(inv);
    return 0;
}

/* Input gradient of avg_pool3: each input pixel gathers grad * rs[n] / count of every output whose window
 * holds it (rs NULL: 1). Returns 0 on success. */
int avg_pool3_backward(const float* restrict g, int64_t N, int64_t H, int64_t W, int64_t C, const float* restrict rs,
                       float* restrict gx) {
    int64_t row = W * C;
    int nt = omp_get_max_threads();
    float* buf = malloc((size_t)nt * 2 * row * sizeof(float));
    if (!buf) return 1;
    #pragma omp parallel num_threads(nt)
    {
        float* restrict iv = buf + (size_t)omp_get_thread_num() * 2 * row;
        float* restrict scaled = iv + row;
        #pragma omp for schedule(static)
        for (int64_t nr = 0; nr < N * H; nr++) {
            int64_t n = nr / H, ih = nr % H;
            float* restrict gi = gx + nr * row;
            for (int64_t e = 0; e < row; e++) gi[e] = 0.f;
            for (int64_t i = 0; i < 3; i++) {
                int64_t oh = ih + 1 - i;
                if (oh < 0 || oh >= H) continue;
                const float* restrict go = g + (n * H + oh) * row;
                inverse_counts(oh, H, W, C, rs ? rs[n] : 1.f, iv);
                #pragma omp simd
                for (int64_t e = 0; e < row; e++) scaled[e] = go[e] * iv[e];
                for (int64_t j = 0; j < 3; j++) {
                    Run r = tap_run(j, W, C);
                    const float* restrict ss = scaled + r.out;
                    float* restrict gis = gi + r.in;
                    #pragma omp simd
                    for (int64_t e = 0; e < r.len; e++) gis[e] += ss[e];
                }
            }
        }
    }
    free(buf);
    return 0;
}

/* out (M rows of K * C) = max(0, the concatenation of the K pieces (M rows of C each)) along the row: a cell's
 * output as the next cells read it, one pass instead of a concatenation and a ReLU. NaN passes, as in
 * PyTorch's ReLU. */
void relu_cat(const float* const* pieces, int64_t K, int64_t M, int64_t C, float* restrict out) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++)
        for (int64_t k = 0; k < K; k++) {
            const float* restrict p = pieces[k] + r * C;
            float* restrict o = out + (r * K + k) * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) o[c] = p[c] < 0.f ? 0.f : p[c];
        }
}

/* Gradients of relu_cat, one contiguous map per piece: grads[k] = g where out > 0 (or NaN), else 0. */
void relu_cat_backward(const float* restrict g, const float* restrict out, int64_t K, int64_t M, int64_t C,
                       float* const* grads) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++)
        for (int64_t k = 0; k < K; k++) {
            const float* restrict gs = g + (r * K + k) * C;
            const float* restrict os = out + (r * K + k) * C;
            float* restrict d = grads[k] + r * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) d[c] = os[c] <= 0.f ? 0.f : gs[c];
        }
}
