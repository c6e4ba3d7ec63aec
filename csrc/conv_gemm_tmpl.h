/* Convolution as implicit GEMM for one element type (instantiated for both
 * by conv_gemm.c through instantiate.h).
 *
 * The column matrix is never built whole: a task takes one image and a tile
 * of its output positions, builds that tile's columns (Cg*KH*KW rows x at
 * most a few hundred positions, sized to stay in L2) and hands it to a
 * single-threaded BLAS GEMM that writes straight into the NCHW output.  A
 * pointwise convolution (1x1, stride 1, no padding) reads x itself as its
 * columns.  Backward runs the same tiles: the weight gradient accumulates per
 * fixed block of images (blocks depend on N only, and are summed in block
 * order, so the result does not depend on the thread count), the input
 * gradient goes through a column tile and col2im into the image's own plane.
 */
#include <string.h>

/* Columns of positions [p0, p0 + len) of one image, channels of one group:
 * col[(ch*KH + i)*KW + j][q] = x_pad[ch, oy*sh + i*dh, ox*sw + j*dw] at
 * position p0 + q = oy*OW + ox.  ADD: col2im instead (x += col, in place). */
static void FN(fc_col_tile)(REAL *restrict xg, REAL *restrict col, int64_t cg, const fc_conv_geom *g,
                            const int64_t *ranges, int64_t p0, int64_t len, int add) {
    const int64_t h = g->h, w = g->w, kh = g->kh, kw = g->kw, ow = g->ow, sw = g->sw;
    for (int64_t ch = 0; ch < cg; ++ch) {
        REAL *plane = xg + ch * h * w;
        for (int64_t i = 0; i < kh; ++i) {
            const int64_t y_lo = ranges[2 * i], y_hi = ranges[2 * i + 1];
            for (int64_t j = 0; j < kw; ++j) {
                const int64_t x_lo = ranges[2 * (kh + j)], x_hi = ranges[2 * (kh + j) + 1];
                REAL *row = col + ((ch * kh + i) * kw + j) * len;
                for (int64_t q = 0, p = p0; q < len;) {
                    const int64_t oy = p / ow, ox0 = p - oy * ow;
                    const int64_t seg = ow - ox0 < len - q ? ow - ox0 : len - q, ox1 = ox0 + seg;
                    REAL *d = row + q - ox0;  /* d[ox]: this row segment's outputs */
                    const int64_t a = fc_clamp(x_lo, ox0, ox1), b = fc_clamp(x_hi, a, ox1);
                    const int inside = oy >= y_lo && oy < y_hi;
                    /* x index of output ox: base + ox*sw (valid for ox in [a, b)) */
                    const int64_t base = (oy * g->sh - g->ph + i * g->dh) * w + j * g->dw - g->pw;
                    if (add) {
                        if (inside)
                            for (int64_t ox = a; ox < b; ++ox) plane[base + ox * sw] += d[ox];
                    } else if (!inside) {
                        memset(d + ox0, 0, sizeof(REAL) * seg);
                    } else {
                        for (int64_t ox = ox0; ox < a; ++ox) d[ox] = 0;
                        if (sw == 1)
                            FN(fc_row_copy)(d + a, plane + base + a, b - a);
                        else
                            for (int64_t ox = a; ox < b; ++ox) d[ox] = plane[base + ox * sw];
                        for (int64_t ox = b; ox < ox1; ++ox) d[ox] = 0;
                    }
                    q += seg;
                    p += seg;
                }
            }
        }
    }
}

/* The columns of (image, group, positions [p0, p0 + len)) for a GEMM:
 * a pointwise convolution reads x itself (row stride P = H*W), any other
 * builds them in `col` (row stride len).  Sets *ld to the row stride. */
static const REAL *FN(fc_columns)(const REAL *xg, REAL *col, int64_t cg, const fc_conv_geom *g,
                                  const int64_t *ranges, int64_t p0, int64_t len, int64_t pointwise, int64_t *ld) {
    if (pointwise) {
        *ld = g->oh * g->ow;
        return xg + p0;
    }
    FN(fc_col_tile)((REAL *)xg, col, cg, g, ranges, p0, len, 0);  /* mode 0 only reads xg */
    *ld = len;
    return col;
}

int FN(fc_conv2d_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                      REAL *restrict out, const fc_conv_geom *g) {
    int status = fc_check_conv_geom(g);
    if (status != FC_OK) return status;
    const int64_t groups = g->groups, cg = g->c / groups, fg = g->f / groups;
    const int64_t kg = cg * g->kh * g->kw, P = g->oh * g->ow, pointwise = fc_conv_is_pointwise(g);
    const int64_t pt = pointwise ? P : fc_conv_tile_cols(kg, P, sizeof(REAL));
    const int64_t tiles = (P + pt - 1) / pt, items = g->n * tiles;
    int64_t *ranges = fc_window_ranges(g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw,
                                       g->oh, g->ow);
    if (ranges == NULL) return FC_ERR_NOMEM;
    int nomem = 0;
    const int blas_threads = fc_blas_threads_single();
#pragma omp parallel num_threads(fc_threads_for(g->n * g->f * P * kg))
    {
        REAL *col = pointwise ? NULL : fc_alloc_lines(sizeof(REAL) * kg * pt);
        if (!pointwise && col == NULL) {
#pragma omp atomic write
            nomem = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < items; ++t) {
            if (!pointwise && col == NULL) continue;
            const int64_t img = t / tiles, p0 = (t % tiles) * pt, len = P - p0 < pt ? P - p0 : pt;
            for (int64_t gi = 0; gi < groups; ++gi) {
                int64_t ldc;
                const REAL *cols = FN(fc_columns)(x + (img * g->c + gi * cg) * g->h * g->w, col, cg, g, ranges,
                                                  p0, len, pointwise, &ldc);
                REAL *o = out + (img * g->f + gi * fg) * P + p0;
                FN(fc_gemm)(0, 0, fg, len, kg, wt + gi * fg * kg, kg, cols, ldc, 0, o, P);
                if (b != NULL)
                    for (int64_t fi = 0; fi < fg; ++fi) {
                        const REAL bias = b[gi * fg + fi];
                        for (int64_t q = 0; q < len; ++q) o[fi * P + q] += bias;
                    }
            }
        }
        free(col);
    }
    fc_blas_threads_restore(blas_threads);
    free(ranges);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

int FN(fc_conv2d_bwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict d_out,
                      REAL *restrict d_x, REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *g) {
    int status = fc_check_conv_geom(g);
    if (status != FC_OK) return status;
    const int64_t groups = g->groups, cg = g->c / groups, fg = g->f / groups, hw = g->h * g->w;
    const int64_t kg = cg * g->kh * g->kw, P = g->oh * g->ow, pointwise = fc_conv_is_pointwise(g);
    const int64_t pt = pointwise ? P : fc_conv_tile_cols(kg, P, sizeof(REAL));
    const int64_t tiles = (P + pt - 1) / pt, wsize = g->f * kg;
    const int64_t blocks = fc_conv_grad_blocks(g->n, wsize * (int64_t)sizeof(REAL));
    int64_t *ranges = fc_window_ranges(g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw,
                                       g->oh, g->ow);
    /* block 0 accumulates in d_w itself; the others in partial sums */
    REAL *parts = blocks > 1 ? malloc(sizeof(REAL) * wsize * (blocks - 1)) : NULL;
    double *bias_parts = calloc((size_t)(blocks * g->f), sizeof(double));
    if (ranges == NULL || (blocks > 1 && parts == NULL) || bias_parts == NULL) {
        free(ranges), free(parts), free(bias_parts);
        return FC_ERR_NOMEM;
    }
    int nomem = 0;
    const int blas_threads = fc_blas_threads_single();
#pragma omp parallel num_threads(fc_threads_for(3 * g->n * g->f * P * kg))
    {
        REAL *col = pointwise ? NULL : fc_alloc_lines(sizeof(REAL) * kg * pt);
        REAL *d_col = (pointwise || d_x == NULL) ? NULL : fc_alloc_lines(sizeof(REAL) * kg * pt);
        const int ok = pointwise || (col != NULL && (d_x == NULL || d_col != NULL));
        if (!ok) {
#pragma omp atomic write
            nomem = 1;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (!ok) continue;
            REAL *dw = blk == 0 ? d_w : parts + (blk - 1) * wsize;
            double *db = bias_parts + blk * g->f;
            const int64_t first = blk * g->n / blocks, last = (blk + 1) * g->n / blocks;
            for (int64_t img = first; img < last; ++img) {
                if (d_x != NULL && !pointwise) memset(d_x + img * g->c * hw, 0, sizeof(REAL) * g->c * hw);
                for (int64_t tile = 0; tile < tiles; ++tile) {
                    const int64_t p0 = tile * pt, len = P - p0 < pt ? P - p0 : pt;
                    const REAL beta = (img == first && tile == 0) ? 0 : 1;
                    for (int64_t gi = 0; gi < groups; ++gi) {
                        const REAL *dy = d_out + (img * g->f + gi * fg) * P + p0;
                        const REAL *wg = wt + gi * fg * kg;
                        int64_t ldc;
                        const REAL *cols = FN(fc_columns)(x + (img * g->c + gi * cg) * hw, col, cg, g, ranges, p0,
                                                          len, pointwise, &ldc);
                        /* dW_g += dY_tile (fg x len) @ cols^T (len x kg) */
                        FN(fc_gemm)(0, 1, fg, kg, len, dy, P, cols, ldc, beta, dw + gi * fg * kg, kg);
                        if (d_x != NULL) {
                            REAL *dxg = d_x + (img * g->c + gi * cg) * hw;
                            if (pointwise) {  /* dX_g tile = W_g^T (cg x fg) @ dY_tile */
                                FN(fc_gemm)(1, 0, kg, len, fg, wg, kg, dy, P, 0, dxg + p0, P);
                            } else {
                                FN(fc_gemm)(1, 0, kg, len, fg, wg, kg, dy, P, 0, d_col, len);
                                FN(fc_col_tile)(dxg, d_col, cg, g, ranges, p0, len, 1);
                            }
                        }
                        if (d_b != NULL)
                            for (int64_t fi = 0; fi < fg; ++fi) {
                                double s = 0;
                                /* vector partial sums: a scalar double chain cost as much as
                                 * the whole weight-gradient GEMM on 1-channel inputs */
#pragma omp simd reduction(+ : s)
                                for (int64_t q = 0; q < len; ++q) s += dy[fi * P + q];
                                db[gi * fg + fi] += s;
                            }
                    }
                }
            }
        }
        free(col);
        free(d_col);
    }
    fc_blas_threads_restore(blas_threads);
    if (!nomem) {
        /* blocks summed in block order, whatever thread computed them */
#pragma omp parallel for num_threads(fc_threads_for(wsize * (blocks - 1))) schedule(static)
        for (int64_t e = 0; e < wsize; ++e) {
            REAL s = d_w[e];
            for (int64_t blk = 1; blk < blocks; ++blk) s += parts[(blk - 1) * wsize + e];
            d_w[e] = s;
        }
        if (d_b != NULL)
            for (int64_t fi = 0; fi < g->f; ++fi) {
                double s = 0;
                for (int64_t blk = 0; blk < blocks; ++blk) s += bias_parts[blk * g->f + fi];
                d_b[fi] = (REAL)s;
            }
    }
    free(ranges);
    free(parts);
    free(bias_parts);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}
