/* BatchNorm building blocks for one element type (included by batchnorm.c).
 * x is viewed as (N, C, S) with S = H*W (or 1 for (N, C) input).
 *
 * Reductions run one channel per task (deterministic: no atomics, the same
 * order at any thread count) and accumulate in double.  The elementwise
 * kernels run one (n, c) plane per task. */

/* mean[c] and biased var[c] over N and S, in one pass.  The sums are taken
 * of x - K with K = the channel's first element, which keeps E[x^2]-E[x]^2
 * from cancelling when |mean| >> std. */
int FN(fc_bn_stats)(const REAL *restrict x, REAL *restrict mean, REAL *restrict var,
                    int64_t n, int64_t c, int64_t s) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
    const double count = (double)(n * s);
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
        const double shift = x[ch * s];
        double s1 = 0, s2 = 0;
        for (int64_t img = 0; img < n; ++img) {
            const REAL *p = x + (img * c + ch) * s;
            /* simd reduction: vectorised (reassociated) partial sums */
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t k = 0; k < s; ++k) {
                const double d = (double)p[k] - shift;
                s1 += d;
                s2 += d * d;
            }
        }
        const double m = s1 / count;
        double v = s2 / count - m * m;
        mean[ch] = (REAL)(shift + m);
        var[ch] = (REAL)(v > 0 ? v : 0);
    }
    return FC_OK;
}

/* out = x * a[c] + b[c]: the forward normalisation folded into one scale
 * and shift per channel. */
int FN(fc_channel_affine)(const REAL *restrict x, const REAL *restrict a, const REAL *restrict b,
                          REAL *restrict out, int64_t n, int64_t c, int64_t s) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const REAL ak = a[p % c], bk = b[p % c];
        const REAL *xp = x + p * s;
        REAL *op = out + p * s;
        for (int64_t k = 0; k < s; ++k) op[k] = xp[k] * ak + bk;
    }
    return FC_OK;
}

/* sum_dy[c] = sum(dy), sum_dy_xmu[c] = sum(dy * (x - mean[c])), one pass. */
int FN(fc_bn_bwd_reduce)(const REAL *restrict d_out, const REAL *restrict x,
                         const REAL *restrict mean, REAL *restrict sum_dy,
                         REAL *restrict sum_dy_xmu, int64_t n, int64_t c, int64_t s) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
        const double m = mean[ch];
        double a = 0, b = 0;
        for (int64_t img = 0; img < n; ++img) {
            const REAL *g = d_out + (img * c + ch) * s;
            const REAL *xp = x + (img * c + ch) * s;
#pragma omp simd reduction(+ : a, b)
            for (int64_t k = 0; k < s; ++k) {
                a += g[k];
                b += (double)g[k] * ((double)xp[k] - m);
            }
        }
        sum_dy[ch] = (REAL)a;
        sum_dy_xmu[ch] = (REAL)b;
    }
    return FC_OK;
}

/* d_x = dy * k_dy[c] + (x - mean[c]) * k_x[c] + k_0[c]: the closed-form
 * BatchNorm backward with its per-channel terms folded into coefficients.
 * (x - mean) is formed first: x * k_x - mean * k_x would cancel badly when
 * |mean| >> std. */
int FN(fc_bn_bwd_apply)(const REAL *restrict d_out, const REAL *restrict x,
                        const REAL *restrict mean, const REAL *restrict k_dy,
                        const REAL *restrict k_x,
                        const REAL *restrict k_0, REAL *restrict d_x, int64_t n, int64_t c,
                        int64_t s) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const int64_t ch = p % c;
        const REAL a = k_dy[ch], b = k_x[ch], z = k_0[ch], m = mean[ch];
        const REAL *g = d_out + p * s, *xp = x + p * s;
        REAL *o = d_x + p * s;
        for (int64_t k = 0; k < s; ++k) o[k] = g[k] * a + (xp[k] - m) * b + z;
    }
    return FC_OK;
}
