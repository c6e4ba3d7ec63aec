/* BatchNorm building blocks for one element type (included by batchnorm.c).
 * x is viewed as (N, C, S) with S = H*W (or 1 for (N, C) input).
 *
 * Reductions accumulate in double, over fixed blocks of images (no atomics,
 * the same order at any thread count).  The elementwise kernels run one
 * (n, c) plane per task. */

/* The reductions read x in memory order: one task per fixed block of
 * images (fc_bn_block), which sums every channel of its images into its own
 * partial sums; the blocks' sums are then added in block order.  (One task
 * per channel, as before, read N planes of H*W values scattered C*H*W apart:
 * the prefetcher restarted at every plane, 3x slower on (128, 64, 32, 32).)
 * Fixed blocks keep the result independent of the thread count. */

/* mean[c] and biased var[c] over N and S, in one pass.  The sums are taken
 * of x - K with K = the channel's first element, which keeps E[x^2]-E[x]^2
 * from cancelling when |mean| >> std. */
int FN(fc_bn_stats)(const REAL *restrict x, REAL *restrict mean, REAL *restrict var,
                    int64_t n, int64_t c, int64_t s) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
    const int64_t block = fc_bn_block(n), blocks = (n + block - 1) / block;
    double *part = malloc(sizeof(double) * 2 * c * (blocks + 1)); /* per block: (s1, s2) per channel */
    if (part == NULL) return FC_ERR_NOMEM;
    double *shift = part + 2 * c * blocks;
    for (int64_t ch = 0; ch < c; ++ch) shift[ch] = x[ch * s];
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        double *pb = part + 2 * c * b;
        const int64_t end = fc_bn_block_begin(pb, c, b, block, n);
        for (int64_t img = b * block; img < end; ++img)
            for (int64_t ch = 0; ch < c; ++ch) {
                const REAL *p = x + (img * c + ch) * s;
                const double k0 = shift[ch];
                double s1 = 0, s2 = 0;
                /* simd reduction: vectorised (reassociated) partial sums */
#pragma omp simd reduction(+ : s1, s2)
                for (int64_t k = 0; k < s; ++k) {
                    const double d = (double)p[k] - k0;
                    s1 += d;
                    s2 += d * d;
                }
                pb[2 * ch] += s1;
                pb[2 * ch + 1] += s2;
            }
    }
    const double count = (double)(n * s);
    for (int64_t ch = 0; ch < c; ++ch) {
        double s1, s2;
        fc_bn_block_total(part, blocks, c, ch, &s1, &s2);
        const double m = s1 / count;
        double v = s2 / count - m * m;
        mean[ch] = (REAL)(shift[ch] + m);
        /* rounding can make v slightly negative: clamp it, but let NaN through
         * (an exploding run must show NaN, as PyTorch does) */
        var[ch] = (REAL)(v < 0 ? 0 : v);
    }
    free(part);
    return FC_OK;
}

/* out = x * a[c] + b[c]: the forward normalisation folded into one scale
 * and shift per channel; with has_res, + res (a residual block's shortcut,
 * x's shape); with relu, max(that, 0) (BatchNorm [+ add] + ReLU in one
 * pass; NaN stays NaN, as np.maximum). */
int FN(fc_channel_affine)(const REAL *restrict x, const REAL *restrict a, const REAL *restrict b,
                          const REAL *restrict res, REAL *restrict out, int64_t n, int64_t c, int64_t s,
                          int64_t relu, int64_t has_res) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const REAL ak = a[p % c], bk = b[p % c];
        const REAL *xp = x + p * s;
        REAL *op = out + p * s;
        if (has_res) {
            const REAL *rp = res + p * s;
            for (int64_t k = 0; k < s; ++k) {
                const REAL v = xp[k] * ak + bk + rp[k];
                op[k] = relu && v < 0 ? 0 : v;
            }
        } else if (relu) {
            for (int64_t k = 0; k < s; ++k) {
                const REAL v = xp[k] * ak + bk;
                op[k] = v < 0 ? 0 : v;
            }
        } else {
            for (int64_t k = 0; k < s; ++k) op[k] = xp[k] * ak + bk;
        }
    }
    return FC_OK;
}

/* sum_dy[c] = sum(dy), sum_dy_xmu[c] = sum(dy * (x - mean[c])), one pass
 * in memory order (as fc_bn_stats). */
int FN(fc_bn_bwd_reduce)(const REAL *restrict d_out, const REAL *restrict x,
                         const REAL *restrict mean, const REAL *restrict mask, REAL *restrict sum_dy,
                         REAL *restrict sum_dy_xmu, int64_t n, int64_t c, int64_t s, int64_t has_mask) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
    const int64_t block = fc_bn_block(n), blocks = (n + block - 1) / block;
    double *part = malloc(sizeof(double) * 2 * c * blocks); /* per block: (a, b) per channel */
    if (part == NULL) return FC_ERR_NOMEM;
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t bl = 0; bl < blocks; ++bl) {
        double *pb = part + 2 * c * bl;
        const int64_t end = fc_bn_block_begin(pb, c, bl, block, n);
        for (int64_t img = bl * block; img < end; ++img)
            for (int64_t ch = 0; ch < c; ++ch) {
                const REAL *g = d_out + (img * c + ch) * s;
                const REAL *xp = x + (img * c + ch) * s;
                const double m = mean[ch];
                double a = 0, b = 0;
                if (has_mask) {
                    /* the masked gradient in chunks on the stack, then the sums:
                     * gcc vectorised neither a select nor a conditional load
                     * widened to double inside the reduction (13x slower) */
                    const REAL *mk = mask + (img * c + ch) * s;
                    REAL gm[256];
                    for (int64_t k0 = 0; k0 < s; k0 += 256) {
                        const int64_t len = s - k0 < 256 ? s - k0 : 256;
                        for (int64_t k = 0; k < len; ++k) {
                            const REAL gv = g[k0 + k];
                            gm[k] = mk[k0 + k] > 0 ? gv : (REAL)0;
                        }
#pragma omp simd reduction(+ : a, b)
                        for (int64_t k = 0; k < len; ++k) {
                            a += gm[k];
                            b += (double)gm[k] * ((double)xp[k0 + k] - m);
                        }
                    }
                } else {
#pragma omp simd reduction(+ : a, b)
                    for (int64_t k = 0; k < s; ++k) {
                        a += g[k];
                        b += (double)g[k] * ((double)xp[k] - m);
                    }
                }
                pb[2 * ch] += a;
                pb[2 * ch + 1] += b;
            }
    }
    for (int64_t ch = 0; ch < c; ++ch) {
        double a, b;
        fc_bn_block_total(part, blocks, c, ch, &a, &b);
        sum_dy[ch] = (REAL)a;
        sum_dy_xmu[ch] = (REAL)b;
    }
    free(part);
    return FC_OK;
}

/* d_x = dy * k_dy[c] + (x - mean[c]) * k_x[c] + k_0[c]: the closed-form
 * BatchNorm backward with its per-channel terms folded into coefficients.
 * (x - mean) is formed first: x * k_x - mean * k_x would cancel badly when
 * |mean| >> std. */
int FN(fc_bn_bwd_apply)(const REAL *restrict d_out, const REAL *restrict x,
                        const REAL *restrict mean, const REAL *restrict mask, const REAL *restrict k_dy,
                        const REAL *restrict k_x, const REAL *restrict k_0, REAL *restrict d_x, int64_t n,
                        int64_t c, int64_t s, int64_t has_mask) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const int64_t ch = p % c;
        const REAL a = k_dy[ch], b = k_x[ch], z = k_0[ch], m = mean[ch];
        const REAL *g = d_out + p * s, *xp = x + p * s;
        REAL *o = d_x + p * s;
        if (has_mask) {
            const REAL *mk = mask + p * s;
            for (int64_t k = 0; k < s; ++k) {
                const REAL gv = g[k]; /* read unconditionally: a select vectorises */
                o[k] = (mk[k] > 0 ? gv : 0) * a + (xp[k] - m) * b + z;
            }
        } else {
            for (int64_t k = 0; k < s; ++k) o[k] = g[k] * a + (xp[k] - m) * b + z;
        }
    }
    return FC_OK;
}
