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
/* (s1, s2) += (sum(x - k0), sum((x - k0)^2)) over one plane of s values:
 * the plane step of fc_bn_stats and fc_bn_fwd_fused, one code so both give
 * the same bits. */
static inline void FN(stats_plane)(const REAL *restrict p, double k0, int64_t s, double *ps1, double *ps2) {
    double s1 = 0, s2 = 0;
    /* simd reduction: vectorised (reassociated) partial sums */
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t k = 0; k < s; ++k) {
        const double d = (double)p[k] - k0;
        s1 += d;
        s2 += d * d;
    }
    *ps1 += s1;
    *ps2 += s2;
}

/* The mean and biased variance from the sums of x - k0 over count values. */
static inline void FN(stats_finish)(double s1, double s2, double k0, double count, REAL *mean, REAL *var) {
    const double m = s1 / count;
    const double v = s2 / count - m * m;
    *mean = (REAL)(k0 + m);
    /* rounding can make v slightly negative: clamp it, but let NaN through
     * (an exploding run must show NaN, as PyTorch does) */
    *var = (REAL)(v < 0 ? 0 : v);
}

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
            for (int64_t ch = 0; ch < c; ++ch)
                FN(stats_plane)(x + (img * c + ch) * s, shift[ch], s, &pb[2 * ch], &pb[2 * ch + 1]);
    }
    const double count = (double)(n * s);
    for (int64_t ch = 0; ch < c; ++ch) {
        double s1, s2;
        fc_bn_block_total(part, blocks, c, ch, &s1, &s2);
        FN(stats_finish)(s1, s2, shift[ch], count, &mean[ch], &var[ch]);
    }
    free(part);
    return FC_OK;
}

/* out = x * a[c] + b[c]: the forward normalisation folded into one scale
 * and shift per channel; with has_res, + res (a residual block's shortcut,
 * x's shape); with relu, max(that, 0) (BatchNorm [+ add] + ReLU in one
 * pass; NaN stays NaN, as np.maximum). */
/* One plane of fc_channel_affine (and of fc_bn_fwd_fused's apply). */
static inline void FN(affine_plane)(const REAL *restrict xp, const REAL *restrict rp, REAL *restrict op, REAL ak,
                                    REAL bk, int64_t s, int64_t relu, int64_t has_res) {
    if (has_res) {
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

int FN(fc_channel_affine)(const REAL *restrict x, const REAL *restrict a, const REAL *restrict b,
                          const REAL *restrict res, REAL *restrict out, int64_t n, int64_t c, int64_t s,
                          int64_t relu, int64_t has_res) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t p = 0; p < n * c; ++p)
        FN(affine_plane)(x + p * s, has_res ? res + p * s : NULL, out + p * s, a[p % c], b[p % c], s, relu, has_res);
    return FC_OK;
}

/* (a, b) += (sum(dy), sum(dy * (x - m))) over one plane of s values (dy
 * counted where mask > 0 with has_mask): the plane step of both backward
 * reductions below, one code so both give the same bits. */
static inline void FN(bwd_plane_sums)(const REAL *restrict g, const REAL *restrict xp, const REAL *restrict mk,
                                      double m, int64_t s, int64_t has_mask, double *pa, double *pb) {
    double a = 0, b = 0;
    if (has_mask) {
        /* the masked gradient in chunks on the stack, then the sums:
         * gcc vectorised neither a select nor a conditional load
         * widened to double inside the reduction (13x slower) */
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
    *pa += a;
    *pb += b;
}

/* The backward reductions' per-block sums, added in block order, rounded to REAL. */
static void FN(store_block_totals)(const double *part, int64_t blocks, int64_t c, REAL *sum_dy, REAL *sum_dy_xmu) {
    for (int64_t ch = 0; ch < c; ++ch) {
        double a, b;
        fc_bn_block_total(part, blocks, c, ch, &a, &b);
        sum_dy[ch] = (REAL)a;
        sum_dy_xmu[ch] = (REAL)b;
    }
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
                const int64_t at = (img * c + ch) * s;
                FN(bwd_plane_sums)(d_out + at, x + at, has_mask ? mask + at : NULL, mean[ch], s, has_mask,
                                   &pb[2 * ch], &pb[2 * ch + 1]);
            }
    }
    FN(store_block_totals)(part, blocks, c, sum_dy, sum_dy_xmu);
    free(part);
    return FC_OK;
}

/* d_x = dy * k_dy[c] + (x - mean[c]) * k_x[c] + k_0[c]: the closed-form
 * BatchNorm backward with its per-channel terms folded into coefficients.
 * (x - mean) is formed first: x * k_x - mean * k_x would cancel badly when
 * |mean| >> std. */
/* One plane of the apply below. */
static inline void FN(bwd_apply_plane)(const REAL *restrict g, const REAL *restrict xp, const REAL *restrict mk,
                                       REAL a, REAL b, REAL z, REAL m, REAL *restrict o, int64_t s,
                                       int64_t has_mask) {
    if (has_mask) {
        for (int64_t k = 0; k < s; ++k) {
            const REAL gv = g[k]; /* read unconditionally: a select vectorises */
            o[k] = (mk[k] > 0 ? gv : 0) * a + (xp[k] - m) * b + z;
        }
    } else {
        for (int64_t k = 0; k < s; ++k) o[k] = g[k] * a + (xp[k] - m) * b + z;
    }
}

int FN(fc_bn_bwd_apply)(const REAL *restrict d_out, const REAL *restrict x,
                        const REAL *restrict mean, const REAL *restrict mask, const REAL *restrict k_dy,
                        const REAL *restrict k_x, const REAL *restrict k_0, REAL *restrict d_x, int64_t n,
                        int64_t c, int64_t s, int64_t has_mask) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const int64_t ch = p % c;
        FN(bwd_apply_plane)(d_out + p * s, x + p * s, has_mask ? mask + p * s : NULL, k_dy[ch], k_x[ch], k_0[ch],
                            mean[ch], d_x + p * s, s, has_mask);
    }
    return FC_OK;
}

/* Channel ch's coefficients from its sums, as backends/_bn_terms.py
 * (backward_terms) computes them, in double and in the same order:
 * k_dy = gamma*inv_std; training: k_x = -gamma * (inv_std*inv_std*inv_std) * sum_dy_xmu / M,
 * k_0 = -k_dy * sum_dy / M (M = count); eval: both 0. */
static inline void FN(bwd_terms)(REAL gamma, REAL inv_std, REAL sum_dy, REAL sum_dy_xmu, double count,
                                 int64_t training, REAL *k_dy, REAL *k_x, REAL *k_0) {
    const double g = gamma, is = inv_std, kd = g * is;
    *k_dy = (REAL)kd;
    *k_x = (REAL)(training ? -g * (is * is * is) * (double)sum_dy_xmu / count : 0.0);
    *k_0 = (REAL)(training ? -kd * (double)sum_dy / count : 0.0);
}

/* Every channel's (k_dy, k_x, k_0) in a new array (k_dy[0..c), k_x, k_0; the
 * caller frees it), NULL when out of memory: the two-pass end of the one-call
 * backwards. */
static REAL *FN(all_bwd_terms)(const REAL *gamma, const REAL *inv_std, const REAL *sum_dy, const REAL *sum_dy_xmu,
                               double count, int64_t training, int64_t c) {
    REAL *k = malloc(sizeof(REAL) * 3 * c);
    if (k == NULL) return NULL;
    for (int64_t ch = 0; ch < c; ++ch)
        FN(bwd_terms)(gamma[ch], inv_std[ch], sum_dy[ch], sum_dy_xmu[ch], count, training, &k[ch], &k[c + ch],
                      &k[2 * c + ch]);
    return k;
}

/* The most bytes of dy, x and mask one channel may hold for the channel by
 * channel order to pay: the apply then re-reads them from L2 (1.26x at
 * 0.75 MB; 0.93x at 3 MB, where they no longer fit). */
#ifndef FC_BN_FUSED_BYTES
#define FC_BN_FUSED_BYTES (1 << 20)
#endif

/* The whole training (or eval) backward: fc_bn_bwd_reduce, the
 * coefficients (bwd_terms), then fc_bn_bwd_apply.  Where a channel's data
 * fits in L2 (FC_BN_FUSED_BYTES), one channel at a time, so the apply
 * re-reads dy, x and mask from cache, not memory (three of the backward's
 * seven passes over the tensors); else as the two kernels.  Either way the
 * same bits as the two kernels with backends/_bn_terms.py's coefficients;
 * sum_dy and sum_dy_xmu are returned as by the reduce kernel. */
int FN(fc_bn_bwd_fused)(const REAL *restrict d_out, const REAL *restrict x, const REAL *restrict mean,
                        const REAL *restrict mask, const REAL *restrict gamma, const REAL *restrict inv_std,
                        REAL *restrict sum_dy, REAL *restrict sum_dy_xmu, REAL *restrict d_x, int64_t n, int64_t c,
                        int64_t s, int64_t has_mask, int64_t training) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
    const double count = (double)(n * s);
    if ((3 - !has_mask) * n * s * (int64_t)sizeof(REAL) > FC_BN_FUSED_BYTES) {
        int status = FN(fc_bn_bwd_reduce)(d_out, x, mean, mask, sum_dy, sum_dy_xmu, n, c, s, has_mask);
        REAL *k = status == FC_OK ? FN(all_bwd_terms)(gamma, inv_std, sum_dy, sum_dy_xmu, count, training, c) : NULL;
        if (k == NULL) return status != FC_OK ? status : FC_ERR_NOMEM;
        FN(fc_bn_bwd_apply)(d_out, x, mean, mask, k, k + c, k + 2 * c, d_x, n, c, s, has_mask);
        free(k);
        return FC_OK;
    }
    const int64_t block = fc_bn_block(n), blocks = (n + block - 1) / block;
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
        /* the reduce kernel's sums: per image block in image order, blocks in order */
        double a = 0, b = 0;
        for (int64_t bl = 0; bl < blocks; ++bl) {
            const int64_t end = (bl + 1) * block < n ? (bl + 1) * block : n;
            double pa = 0, pb = 0;
            for (int64_t img = bl * block; img < end; ++img) {
                const int64_t at = (img * c + ch) * s;
                FN(bwd_plane_sums)(d_out + at, x + at, has_mask ? mask + at : NULL, mean[ch], s, has_mask, &pa,
                                   &pb);
            }
            a += pa;
            b += pb;
        }
        sum_dy[ch] = (REAL)a;
        sum_dy_xmu[ch] = (REAL)b;
        REAL k_dy, k_x, k_0;
        FN(bwd_terms)(gamma[ch], inv_std[ch], sum_dy[ch], sum_dy_xmu[ch], count, training, &k_dy, &k_x, &k_0);
        for (int64_t img = 0; img < n; ++img) {
            const int64_t at = (img * c + ch) * s;
            FN(bwd_apply_plane)(d_out + at, x + at, has_mask ? mask + at : NULL, k_dy, k_x, k_0, mean[ch],
                                d_x + at, s, has_mask);
        }
    }
    return FC_OK;
}

/* Channel ch's scale and shift of the forward normalisation, as
 * backends/_bn_terms.py (forward_terms) computes them: inv_std =
 * 1 / sqrt(var + eps), scale = gamma * inv_std, shift = beta - mean * scale,
 * in double, rounded to REAL where NumPy rounds them. */
static inline void FN(fwd_terms)(REAL mean, REAL var, REAL gamma, REAL beta, double eps, REAL *scale,
                                 REAL *shift) {
    const REAL inv_std = (REAL)(1.0 / sqrt((double)var + eps));
    const REAL sc = (REAL)((double)gamma * (double)inv_std);
    /* rounded on its own, as NumPy's multiply: volatile keeps gcc from
     * contracting product and subtraction into one FMA */
    volatile double product = (double)mean * (double)sc;
    *scale = sc;
    *shift = (REAL)((double)beta - product);
}

/* fc_bn_stats, then every channel's scale and shift (fwd_terms) in a new
 * array (scale[0..c), shift; the caller frees it): the two-pass start of the
 * one-call forwards.  NULL with *status set when that fails. */
static REAL *FN(stats_and_terms)(const REAL *x, const REAL *gamma, const REAL *beta, REAL *mean, REAL *var, int64_t n,
                                 int64_t c, int64_t s, double eps, int *status) {
    *status = FN(fc_bn_stats)(x, mean, var, n, c, s);
    if (*status != FC_OK) return NULL;
    REAL *ab = malloc(sizeof(REAL) * 2 * c);
    if (ab == NULL) {
        *status = FC_ERR_NOMEM;
        return NULL;
    }
    for (int64_t ch = 0; ch < c; ++ch) FN(fwd_terms)(mean[ch], var[ch], gamma[ch], beta[ch], eps, &ab[ch], &ab[c + ch]);
    return ab;
}

/* Channel ch's mean and biased variance with fc_bn_stats's sums (per image
 * block in image order, blocks in order: the same bits), its planes read one
 * after the other (the next one prefetched): the first step of the kernels
 * that then work on the channel while it is in L2. */
static inline void FN(channel_stats)(const REAL *restrict x, int64_t ch, int64_t n, int64_t c, int64_t s,
                                     REAL *mean, REAL *var) {
    const int64_t block = fc_bn_block(n), blocks = (n + block - 1) / block;
    const double k0 = x[ch * s];
    double s1 = 0, s2 = 0;
    for (int64_t bl = 0; bl < blocks; ++bl) {
        const int64_t end = (bl + 1) * block < n ? (bl + 1) * block : n;
        double p1 = 0, p2 = 0;
        for (int64_t img = bl * block; img < end; ++img) {
            if (img + 1 < n) fc_prefetch(x + ((img + 1) * c + ch) * s, s * (int64_t)sizeof(REAL));
            FN(stats_plane)(x + (img * c + ch) * s, k0, s, &p1, &p2);
        }
        s1 += p1;
        s2 += p2;
    }
    FN(stats_finish)(s1, s2, k0, (double)(n * s), mean, var);
}

/* The training forward: fc_bn_stats, the scale and shift (fwd_terms), then
 * fc_channel_affine.  Where a channel's x fits in L2 (FC_BN_FUSED_BYTES) and
 * its planes are not single values, one channel at a time, so the affine
 * re-reads x from cache, not memory (one of the forward's three passes over
 * the tensor; at 1 MB of x, 0.89x, as the output written beside it evicts it);
 * else as the two kernels.  Either way the same bits as
 * fc_bn_stats, forward_terms and fc_channel_affine. */
int FN(fc_bn_fwd_fused)(const REAL *restrict x, const REAL *restrict gamma, const REAL *restrict beta,
                        const REAL *restrict res, REAL *restrict mean, REAL *restrict var, REAL *restrict out,
                        int64_t n, int64_t c, int64_t s, double eps, int64_t relu, int64_t has_res) {
    if (n < 1 || c < 1 || s < 1) return FC_ERR_SIZE;
    if (s < 8 || 2 * n * s * (int64_t)sizeof(REAL) > FC_BN_FUSED_BYTES) { /* x and out */
        int status;
        REAL *ab = FN(stats_and_terms)(x, gamma, beta, mean, var, n, c, s, eps, &status);
        if (ab == NULL) return status;
        FN(fc_channel_affine)(x, ab, ab + c, res, out, n, c, s, relu, has_res);
        free(ab);
        return FC_OK;
    }
#pragma omp parallel for num_threads(fc_threads_for(n * c * s)) schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
        FN(channel_stats)(x, ch, n, c, s, &mean[ch], &var[ch]);
        REAL scale, shift;
        FN(fwd_terms)(mean[ch], var[ch], gamma[ch], beta[ch], eps, &scale, &shift);
        for (int64_t img = 0; img < n; ++img) {
            const int64_t at = (img * c + ch) * s;
            FN(affine_plane)(x + at, has_res ? res + at : NULL, out + at, scale, shift, s, relu, has_res);
        }
    }
    return FC_OK;
}
