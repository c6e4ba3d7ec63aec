/* The forward of a convolution with many taps followed by max pooling, as
 * im2row + one GEMM (NumPy's BLAS, in Python) + a pool over the GEMM's rows.
 * Included by conv_maxpool_tmpl.h after conv_pool_grad_tmpl.h (it uses
 * wide_geom and hwc_pad) with REAL and FN(name) defined.
 *
 * Why: im2row reads each image once into a padded (HP, WP, C) scratch and
 * copies every patch as FH runs of FW*C contiguous values (taps ordered
 * (i, j, ch)), only for the outputs the pool reads; the GEMM
 *     y (N*UH*UW, F) = rows (N*UH*UW, taps) @ w_perm (F, taps)^T
 * leaves each output position's F filters contiguous, so the pool compares
 * whole vectors of filters per window position, adds the bias first (so ties
 * and rounding are exactly those of pooling conv + bias), and writes only the
 * pooled (N, F, PH, PW) planes and their indices h*OW + w in the full
 * (OH, OW) convolution output, as max_pool2d of the convolution gives.
 */

/* rows (N*UH*UW, C*FH*FW) <- the patches of the outputs the pool reads. */
int FN(fc_im2row)(const REAL *restrict x, REAL *restrict rows, const fc_conv_geom *cg, int64_t uh,
                  int64_t uw) {
    if (cg == NULL) return FC_ERR_SIZE;
    FC_CONV_LOCALS(cg);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK || uh < 1 ||
        uw < 1 || uh > oh || uw > ow)
        return FC_ERR_SIZE;
    /* rows of exactly the taps: no bias lane (hwc_patch_rows writes one only when tp > taps) */
    const int64_t taps = c * fh * fw;
    const FN(wide_geom) g = {h + 2 * ph, w + 2 * pw, uh, uw, taps, taps, 0};
    int failed = 0;
#pragma omp parallel num_threads(fc_threads_for(n * uh * uw * taps))
    {
        REAL *xh = malloc(sizeof(REAL) * g.hp * g.wp * c);
        if (xh == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (xh == NULL) continue;
            FN(hwc_pad)(x + img * c * h * w, xh, c, h, w, ph, pw, g);
            FN(hwc_patch_rows)(xh, rows + img * uh * uw * taps, c, fh, fw, sh, sw, dh, dw, g);
        }
        free(xh);
    }
    return failed ? FC_ERR_NOMEM : FC_OK;
}

/* out, idx (N, F, PH, PW) <- max pool (kh x kw, stride psh x psw) of
 * y + bias, y (N, UH*UW, F) the GEMM's output rows; idx = oy*OW + ox.
 * Window positions are visited in row-major order and a later one wins
 * only if it beats the best so far (larger, or the first NaN), as max_pool2d. */
int FN(fc_rows_maxpool)(const REAL *restrict y, const REAL *restrict bias, REAL *restrict out,
                        int64_t *restrict idx, const fc_pool_geom *pg, int64_t uh, int64_t uw) {
    /* the pool reads the GEMM's (N, UH*UW, F) rows: the first (uh, uw) of each (oh, ow) plane */
    if (fc_check_pool_geom(pg) != FC_OK || pg->ph != 0 || pg->pw != 0 || pg->ceil_mode) return FC_ERR_SIZE;
    const int64_t n = pg->n, f = pg->c, oh = pg->h, ow = pg->w;
    FC_POOLED_LOCALS(pg);
    if (uh > oh || uw > ow || (poh - 1) * psh + kh > uh || (pow_ - 1) * psw + kw > uw) return FC_ERR_SIZE;
    const int64_t pooled = poh * pow_;
    int failed = 0;
#pragma omp parallel num_threads(fc_threads_for(n * uh * uw * f))
    {
        REAL *best = malloc(sizeof(REAL) * f);
        int64_t *at = malloc(sizeof(int64_t) * f);
        if (best == NULL || at == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (best == NULL || at == NULL) continue;
            const REAL *yi = y + img * uh * uw * f;
            for (int64_t py = 0; py < poh; ++py)
                for (int64_t px = 0; px < pow_; ++px) {
                    for (int64_t i = 0; i < kh; ++i)
                        for (int64_t j = 0; j < kw; ++j) {
                            const int64_t oy = py * psh + i, ox = px * psw + j;
                            const REAL *v = yi + (oy * uw + ox) * f;
                            const int64_t pos = oy * ow + ox;
                            if (i == 0 && j == 0) {
                                for (int64_t fi = 0; fi < f; ++fi) {
                                    best[fi] = v[fi] + bias[fi];
                                    at[fi] = pos;
                                }
                            } else {
                                for (int64_t fi = 0; fi < f; ++fi) {
                                    const REAL s = v[fi] + bias[fi];
                                    const int win = FN(beats_nb)(s, best[fi]);
                                    best[fi] = win ? s : best[fi];
                                    at[fi] = win ? pos : at[fi];
                                }
                            }
                        }
                    const int64_t o = img * f * pooled + py * pow_ + px;
                    for (int64_t fi = 0; fi < f; ++fi) {
                        out[o + fi * pooled] = best[fi];
                        idx[o + fi * pooled] = at[fi];
                    }
                }
        }
        free(best);
        free(at);
    }
    return failed ? FC_ERR_NOMEM : FC_OK;
}
