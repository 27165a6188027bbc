/* CPU kernels for the two ops where PyTorch's channels-last CPU path is slowest at the supernet's sizes
 * (C = 20..80 channels, 8x8..32x32 pixels): batch norm with batch statistics, and the weight gradient of a
 * depthwise convolution. Built and loaded by cpu_kernels.py; every tensor is float32, channels-last
 * (NHWC), contiguous, so a feature map is M = N*H*W rows of C channels.
 *
 * Threads: OpenMP, the runtime PyTorch itself loads (libgomp), so torch.set_num_threads applies here too.
 * Results are deterministic for a given thread count (static schedules, fixed reduction order).
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <omp.h>

#define ROW_BLOCK 64 /* rows summed in float before being added to the double accumulators */

/* Per-channel sums over all rows of s1 = p - ps and s2 = (p - ps) * (q - qs), in double (ps, qs: a value
 * per channel). For the batch statistics p = q = x and ps = qs = the first row: shifting by a sample keeps
 * the one-pass variance accurate when the mean is large against the spread. For the batch-norm backward
 * p = grad, ps = 0, q = x, qs = mean. Returns 0 on success. */
static int channel_sums(const float* restrict p, const float* restrict ps, const float* restrict q,
                        const float* restrict qs, int64_t M, int64_t C, double* restrict s1, double* restrict s2) {
    int nt = omp_get_max_threads();
    double* acc = calloc((size_t)nt * 2 * C, sizeof(double));
    float* blk = malloc((size_t)nt * 2 * C * sizeof(float));
    if (!acc || !blk) { free(acc); free(blk); return 1; }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        double* restrict a1 = acc + (size_t)t * 2 * C;
        double* restrict a2 = a1 + C;
        float* restrict b1 = blk + (size_t)t * 2 * C;
        float* restrict b2 = b1 + C;
        #pragma omp for schedule(static)
        for (int64_t start = 0; start < M; start += ROW_BLOCK) {
            int64_t end = start + ROW_BLOCK < M ? start + ROW_BLOCK : M;
            for (int64_t c = 0; c < C; c++) { b1[c] = 0.f; b2[c] = 0.f; }
            for (int64_t r = start; r < end; r++) {
                const float* restrict pr = p + r * C;
                const float* restrict qr = q + r * C;
                #pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    float dp = pr[c] - ps[c];
                    b1[c] += dp;
                    b2[c] += dp * (qr[c] - qs[c]);
                }
            }
            for (int64_t c = 0; c < C; c++) { a1[c] += b1[c]; a2[c] += b2[c]; }
        }
    }
    for (int64_t c = 0; c < C; c++) {
        double x1 = 0, x2 = 0;
        for (int t = 0; t < nt; t++) { x1 += acc[(size_t)t * 2 * C + c]; x2 += acc[(size_t)t * 2 * C + C + c]; }
        s1[c] = x1; s2[c] = x2;
    }
    free(acc); free(blk);
    return 0;
}

/* out = a * p + d, or out = a * p + b * q + d when q is given (a, b, d per channel): the batch-norm
 * normalisation and its input gradient, each one pass. */
static void channel_affine(const float* restrict p, const float* restrict q, const float* restrict a,
                    const float* restrict b, const float* restrict d, int64_t M, int64_t C, float* restrict out) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++) {
        const float* restrict pr = p + r * C;
        float* restrict o = out + r * C;
        if (q) {
            const float* restrict qr = q + r * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) o[c] = a[c] * pr[c] + b[c] * qr[c] + d[c];
        } else {
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) o[c] = a[c] * pr[c] + d[c];
        }
    }
}

/* Batch norm with the batch's statistics: y = (x - mean) * invstd * w + b, invstd = 1 / sqrt(var + eps), var
 * biased. Also writes mean, var and invstd (for the running statistics and the backward pass). */
int bn_forward(const float* x, const float* w, const float* b, double eps, int64_t M, int64_t C,
               float* y, float* mean, float* var, float* invstd) {
    double* s = malloc((size_t)2 * C * sizeof(double));
    float* scale = malloc((size_t)2 * C * sizeof(float));
    if (!s || !scale || channel_sums(x, x, x, x, M, C, s, s + C)) { free(s); free(scale); return 1; }
    float* shift = scale + C;
    for (int64_t c = 0; c < C; c++) {
        double d = s[c] / M, v = s[C + c] / M - d * d;
        if (v < 0) v = 0;
        double m = x[c] + d, is = 1.0 / sqrt(v + eps);
        mean[c] = (float)m; var[c] = (float)v; invstd[c] = (float)is;
        scale[c] = (float)(w[c] * is);
        shift[c] = (float)(b[c] - m * w[c] * is);
    }
    channel_affine(x, NULL, scale, NULL, shift, M, C, y);
    free(s); free(scale);
    return 0;
}

/* Gradients of bn_forward: gx = w * invstd * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))),
 * gw = invstd * sum(g * (x - mean)), gb = sum(g). */
int bn_backward(const float* g, const float* x, const float* w, const float* mean, const float* invstd,
                int64_t M, int64_t C, float* gx, float* gw, float* gb) {
    double* s = malloc((size_t)2 * C * sizeof(double));
    float* coef = calloc((size_t)3 * C, sizeof(float));
    if (!s || !coef || channel_sums(g, coef, x, mean, M, C, s, s + C)) { free(s); free(coef); return 1; }
    float *a = coef, *bq = coef + C, *d = coef + 2 * C;  /* gx = a * g + bq * x + d */
    for (int64_t c = 0; c < C; c++) {
        double is = invstd[c], ac = w[c] * is, bc = -ac * is * is * s[C + c] / M;
        a[c] = (float)ac; bq[c] = (float)bc;
        d[c] = (float)(-ac * s[c] / M - bc * mean[c]);
        gw[c] = (float)(s[C + c] * is);
        gb[c] = (float)s[c];
    }
    channel_affine(g, x, a, bq, d, M, C, gx);
    free(s); free(coef);
    return 0;
}

/* Weight gradient of a depthwise K x K convolution with stride 1 and padding pad.
 * x: (N, H, W, C) input, g: (N, Ho, Wo, C) output gradient, gw: (K, K, C) result.
 * Each thread accumulates per (tap, output column, channel): for a tap and an output row the products
 * then form one contiguous multiply-add over Wo * C floats, which vectorises; the columns are summed at
 * the end. Returns 0 on success. */
int dw_weight_grad(const float* restrict x, const float* restrict g, int64_t N, int64_t H, int64_t W, int64_t C,
                   int64_t Ho, int64_t Wo, int64_t K, int64_t pad, float* restrict gw) {
    int nt = omp_get_max_threads();
    int64_t row = Wo * C, per_thread = K * K * row;
    float* acc = calloc((size_t)nt * per_thread, sizeof(float));
    if (!acc) return 1;
    #pragma omp parallel num_threads(nt)
    {
        float* restrict a = acc + (size_t)omp_get_thread_num() * per_thread;
        #pragma omp for schedule(static)
        for (int64_t nr = 0; nr < N * Ho; nr++) {
            int64_t n = nr / Ho, oh = nr % Ho;
            const float* restrict grow = g + nr * row;
            for (int64_t i = 0; i < K; i++) {
                int64_t ih = oh - pad + i;
                if (ih < 0 || ih >= H) continue;
                const float* restrict xrow = x + (n * H + ih) * W * C;
                for (int64_t j = 0; j < K; j++) {
                    /* output columns whose input column ow - pad + j lies inside the image */
                    int64_t lo = pad - j > 0 ? pad - j : 0;
                    int64_t hi = W + pad - j < Wo ? W + pad - j : Wo;
                    if (hi <= lo) continue;
                    const float* restrict xs = xrow + (lo - pad + j) * C;
                    const float* restrict gs = grow + lo * C;
                    float* restrict ap = a + (i * K + j) * row + lo * C;
                    for (int64_t e = 0; e < (hi - lo) * C; e++) ap[e] += xs[e] * gs[e];
                }
            }
        }
    }
    for (int64_t t = 0; t < K * K; t++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int th = 0; th < nt; th++)
                for (int64_t ow = 0; ow < Wo; ow++) s += acc[(size_t)th * per_thread + t * row + ow * C + c];
            gw[t * C + c] = (float)s;
        }
    free(acc);
    return 0;
}
