/* Convolution with the output channels along the vector lanes (one group,
 * stride 1), for one element type; included at the end of
 * conv_direct_tmpl.h, whose padded layout (stack_geom, stack_planes) and
 * weight packing (direct_weights) it shares.
 *
 * Why: the direct kernel computes positions along the padded width and in
 * whole register blocks of positions, so on small maps a good part of its
 * multiply-adds land on padding: 7x7 outputs padded by 1 are 8x8 = 64
 * computed for 49 held, then rounded to blocks of 48.  oneDNN's blocked
 * kernels ran bn_cnn's 64 -> 128 convolution on 7x7 maps 1.6x faster
 * (1.47 vs 2.34 ms forward).  Here a register block is two vectors of
 * output channels x R rows x CW columns of output positions that exist:
 * per tap, two weight-vector loads and R*CW broadcast input pixels feed
 * 2*R*CW multiply-adds, and the tile (R, CW) is picked per map so that few
 * computed positions fall outside it (7x7: rows of 7; 8x8: rows of 4).
 *
 * With stride 1, the input gradient is the same kernel on the output
 * gradient padded by (K-1)*d - p with the flipped, transposed weights, and
 * a 3x3 weight gradient runs the same blocking the other way (filter
 * vectors x one channel's 9 taps, summed over a fixed block of images in
 * registers); other weight gradients, and strided backwards, are the
 * direct kernel's.  Each output element is one sum in a fixed order (taps;
 * images in fixed blocks added in order): the same bits at any thread
 * count.
 */

/* Tiles (R rows x CW columns of positions) per register width: 2*R*CW
 * accumulators, two weight vectors and a broadcast within the 32 (AVX-512)
 * or 16 (AVX2, SSE) vector registers.  A map takes the tile that computes
 * the fewest positions outside it, the larger on a tie (7x7: 1 x 7; 8x8 and
 * 16x16: 2 x 4; 14x14: 2 x 7; 10x10, such as the seed network's second
 * convolution cropped for its pool, and 5x5: 2 x 5). */
#if FC_VBYTES >= 64
#define O_TILES {{2, 7}, {3, 4}, {1, 7}, {2, 4}, {2, 5}}
#else
#define O_TILES {{1, 6}, {2, 3}, {1, 4}, {2, 2}, {1, 5}}
#endif
#define O_NTILES 5
#define O_OB (2 * DVEC) /* output channels per register block */
#if FC_VBYTES >= 64
#define O_WV 2
#else
#define O_WV 1
#endif
#define O_MAXP 14       /* most positions in a tile */

/* out[f0 .. f0 + O_OB) at positions (oy0 + r, ox0 + q), r < R, q < CW, that
 * lie inside the oh x ow planes <- bias + the sum over the taps k of
 * wb[k][f - f0] * xp[off[k] + (oy0 + r)*sy*wp + (ox0 + q)*SX]; wb: this
 * block's weights, O_OB per tap, read in order.  SX (the column stride) is
 * a constant, so every broadcast is at a fixed displacement. */
static inline __attribute__((always_inline)) void FN(ocvec_block)(
    const REAL *restrict xp, const int64_t *restrict off, int64_t taps, const REAL *restrict wb, int64_t rstride,
    REAL *restrict out, int64_t f0, int64_t f, int64_t oh, int64_t ow, int64_t oy0, int64_t ox0,
    const REAL *restrict bias, const int SX, const int R, const int CW) {
    FN(dvec) acc[2][O_MAXP] = {{{0}}};
    const REAL *xb = xp + oy0 * rstride + ox0 * SX;
    for (int64_t k = 0; k < taps; ++k) {
        const FN(dvec) w0 = FN(dload)(wb + k * O_OB), w1 = FN(dload)(wb + k * O_OB + DVEC);
        const REAL *xr = xb + off[k];
        for (int r = 0; r < R; ++r)
            for (int q = 0; q < CW; ++q) {
                const REAL v = xr[r * rstride + q * SX];
                acc[0][r * CW + q] += w0 * v;
                acc[1][r * CW + q] += w1 * v;
            }
    }
    const int64_t plane = oh * ow;
    for (int r = 0; r < R && oy0 + r < oh; ++r)
        for (int q = 0; q < CW && ox0 + q < ow; ++q) {
            REAL *dst = out + (oy0 + r) * ow + ox0 + q;
            for (int v = 0; v < 2; ++v) {
                REAL lanes[DVEC];
                memcpy(lanes, &acc[v][r * CW + q], sizeof lanes);
                for (int e = 0; e < DVEC && f0 + v * DVEC + e < f; ++e) {
                    const int64_t fi = f0 + v * DVEC + e;
                    dst[fi * plane] = lanes[e] + (bias != NULL ? bias[fi] : (REAL)0);
                }
            }
        }
}

/* Positions computed for an oh x ow map with tiles of R rows x CW columns. */
static int64_t FN(ocvec_computed)(int64_t oh, int64_t ow, int64_t r, int64_t cw) {
    return (oh + r - 1) / r * r * ((ow + cw - 1) / cw * cw);
}

/* The tile loop of ocvec_image for one column stride SX (a constant). */
static inline __attribute__((always_inline)) void FN(ocvec_tiles)(
    const REAL *restrict xp, const int64_t *restrict off, int64_t taps, const REAL *restrict w, int64_t rstride,
    REAL *restrict out, int64_t f0, int64_t f, int64_t oh, int64_t ow, const REAL *restrict bias, int t,
    const int SX) {
    static const int tiles[O_NTILES][2] = O_TILES;
    for (int64_t oy = 0; oy < oh; oy += tiles[t][0])
        for (int64_t ox = 0; ox < ow; ox += tiles[t][1]) {
            /* the tile's sizes as constants: its loops unrolled, accumulators in registers */
            if (t == 0)
                FN(ocvec_block)(xp, off, taps, w, rstride, out, f0, f, oh, ow, oy, ox, bias, SX, tiles[0][0],
                                tiles[0][1]);
            else if (t == 1)
                FN(ocvec_block)(xp, off, taps, w, rstride, out, f0, f, oh, ow, oy, ox, bias, SX, tiles[1][0],
                                tiles[1][1]);
            else if (t == 2)
                FN(ocvec_block)(xp, off, taps, w, rstride, out, f0, f, oh, ow, oy, ox, bias, SX, tiles[2][0],
                                tiles[2][1]);
            else if (t == 3)
                FN(ocvec_block)(xp, off, taps, w, rstride, out, f0, f, oh, ow, oy, ox, bias, SX, tiles[3][0],
                                tiles[3][1]);
            else
                FN(ocvec_block)(xp, off, taps, w, rstride, out, f0, f, oh, ow, oy, ox, bias, SX, tiles[4][0],
                                tiles[4][1]);
        }
}

/* out (f planes of oh x ow) <- bias + the correlation, strides (sy, sx <= 2),
 * of the padded planes xp (row length wp) with wb (ocvec_pack's blocks),
 * taps at offsets off. */
static void FN(ocvec_image)(const REAL *restrict xp, const int64_t *restrict off, int64_t taps,
                            const REAL *restrict wb, int64_t wp, int64_t sy, int64_t sx, REAL *restrict out,
                            int64_t f, int64_t oh, int64_t ow, const REAL *restrict bias) {
    static const int tiles[O_NTILES][2] = O_TILES;
    int t = 0;
    for (int u = 1; u < O_NTILES; ++u)
        if (FN(ocvec_computed)(oh, ow, tiles[u][0], tiles[u][1]) < FN(ocvec_computed)(oh, ow, tiles[t][0], tiles[t][1]))
            t = u;
    for (int64_t f0 = 0; f0 < f; f0 += O_OB) {
        const REAL *w = wb + f0 * taps; /* block f0 / O_OB: taps x O_OB */
        if (sx == 1)
            FN(ocvec_tiles)(xp, off, taps, w, sy * wp, out, f0, f, oh, ow, bias, t, 1);
        else
            FN(ocvec_tiles)(xp, off, taps, w, sy * wp, out, f0, f, oh, ow, bias, t, 2);
    }
}

/* dst <- src ([taps][fr], fr a multiple of O_OB) as fr / O_OB blocks of
 * taps x O_OB: a register block's weights one after the other. */
static void FN(ocvec_pack)(const REAL *restrict src, int64_t taps, int64_t fr, REAL *restrict dst) {
    for (int64_t f0 = 0; f0 < fr; f0 += O_OB)
        for (int64_t k = 0; k < taps; ++k) memcpy(dst + f0 * taps + k * O_OB, src + k * fr + f0, sizeof(REAL) * O_OB);
}

/* Over n images: out (n x fo x oh x ow) <- bias + the correlation, strides
 * (sy, sx) <= 2, of src (n x ci x h x w, padded by (ph, pw), 0 <= p <=
 * (k-1)*d) with the packed weights wd ([ci*kh*kw][fr]).  The forward, and
 * the stride-1 input gradient (src = d_out, the flipped weights, padding
 * (k-1)*d - p). */
static int FN(ocvec_run)(const REAL *restrict src, int64_t n, int64_t ci, int64_t h, int64_t w, int64_t ph,
                         int64_t pw, int64_t kh, int64_t kw, int64_t sy, int64_t sx, int64_t dh, int64_t dw,
                         int64_t oh, int64_t ow, const REAL *restrict wd, int64_t fr, int64_t fo,
                         const REAL *restrict bias, REAL *restrict out) {
    /* the padded planes as the stride-1 layout has them (a stride only changes which pixels are read) */
    const FN(dgeom) d = FN(stack_geom)(ci, fo, kh, kw, dh, dw, h, w, ph, pw, 1, O_OB);
    const int64_t taps = ci * kh * kw;
    /* tiles (<= 3 rows, <= 7 columns) read past the map's last rows and columns: zero slack */
    const int64_t size = FN(padded_size)(&d), slack = (3 * sy + 1) * d.wp + O_MAXP * sx + DVEC;
    int64_t *off = malloc(sizeof(int64_t) * taps);
    REAL *wb = malloc(sizeof(REAL) * taps * fr);
    if (off == NULL || wb == NULL) {
        free(off), free(wb);
        return FC_ERR_NOMEM;
    }
    FN(ocvec_pack)(wd, taps, fr, wb);
    for (int64_t ch = 0; ch < ci; ++ch)
        for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) off[(ch * kh + i) * kw + j] = (ch * d.hp + i * dh) * d.wp + j * dw;
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(2 * n * fo * oh * ow * taps))
    {
        REAL *xp = fc_alloc_lines(sizeof(REAL) * (size + slack));
        int zeroed = 0; /* xp's padding already cleared (this thread's previous image) */
        if (xp == NULL) {
#pragma omp atomic write
            nomem = 1;
        } else {
            memset(xp + size, 0, sizeof(REAL) * slack);
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (xp == NULL) continue;
            FN(stack_planes)(src + img * ci * h * w, xp, ci, h, w, ph, pw, 1, &d, zeroed);
            zeroed = 1;
            FN(ocvec_image)(xp, off, taps, wb, d.wp, sy, sx, out + img * fo * oh * ow, fo, oh, ow, bias);
        }
        free(xp);
    }
    free(off);
    free(wb);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

/* The geometries this path runs: one group, strides 1 or 2, padding within
 * the kernel's reach (the shared-padding layout of stack_geom). */
static int FN(ocvec_applies)(const fc_conv_geom *g) {
    return g != NULL && g->groups == 1 && g->sh >= 1 && g->sh <= 2 && g->sw >= 1 && g->sw <= 2 && g->ph >= 0 &&
           g->pw >= 0 && g->ph <= (g->kh - 1) * g->dh && g->pw <= (g->kw - 1) * g->dw;
}

int FN(fc_conv2d_ocvec_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                            REAL *restrict out, const fc_conv_geom *g) {
    if (!FN(ocvec_applies)(g)) return FC_ERR_SIZE;
    FC_CONV_LOCALS(g);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK) return FC_ERR_SIZE;
    const int64_t fr = (f + O_OB - 1) / O_OB * O_OB;
    REAL *wd = malloc(sizeof(REAL) * c * fh * fw * fr);
    if (wd == NULL) return FC_ERR_NOMEM;
    FN(direct_weights)(wt, wd, f, c, fh, fw, fr, 0);
    const int status = FN(ocvec_run)(x, n, c, h, w, ph, pw, fh, fw, sh, sw, dh, dw, oh, ow, wd, fr, f, b, out);
    free(wd);
    return status;
}

/* part[fi*9c + ch*9 + i*3 + j] += the sum over the images b < bc of the
 * block and their oh x ow positions of dyt_b[p][fi] * xp_b[ch plane +
 * (oy + i)*wp + ox + j] (xp_b, dyt_b: image b's padded planes and its
 * output gradient transposed to positions x fr): the weight gradient of a
 * 3x3 convolution, stride 1, as register blocks of two vectors of filters x
 * one channel's 9 taps -- per position two loads and 9 broadcasts feed 18
 * multiply-adds, only at positions that exist; the block's sum leaves the
 * registers once. */
static void FN(ocvec_wgrad_block)(const REAL *restrict xps, int64_t xstride, int64_t plane, int64_t wp,
                                  const REAL *restrict dyts, int64_t fr, int64_t bc, int64_t oh, int64_t ow,
                                  int64_t c, int64_t f, double *restrict part) {
    const int64_t taps = c * 9, ystride = oh * ow * fr;
    for (int64_t f0 = 0; f0 < f; f0 += O_WV * DVEC)
        for (int64_t ch = 0; ch < c; ++ch) {
            FN(dvec) acc[O_WV][9] = {{{0}}};
            for (int64_t b = 0; b < bc; ++b) {
                const REAL *xc = xps + b * xstride + ch * plane, *dy = dyts + b * ystride + f0;
                for (int64_t oy = 0; oy < oh; ++oy)
                    for (int64_t ox = 0; ox < ow; ++ox) {
                        const REAL *g = dy + (oy * ow + ox) * fr, *xr = xc + oy * wp + ox;
                        FN(dvec) gv[O_WV];
                        for (int v = 0; v < O_WV; ++v) gv[v] = FN(dload)(g + v * DVEC);
                        for (int i = 0; i < 3; ++i)
                            for (int j = 0; j < 3; ++j) {
                                const REAL xv = xr[i * wp + j];
                                for (int v = 0; v < O_WV; ++v) acc[v][i * 3 + j] += gv[v] * xv;
                            }
                    }
            }
            for (int v = 0; v < O_WV; ++v)
                for (int t = 0; t < 9; ++t) {
                    REAL lanes[DVEC];
                    memcpy(lanes, &acc[v][t], sizeof lanes);
                    for (int e = 0; e < DVEC && f0 + v * DVEC + e < f; ++e)
                        part[(f0 + v * DVEC + e) * taps + ch * 9 + t] += lanes[e];
                }
        }
}

/* d_w, d_b (if asked) of a 3x3 convolution, stride 1, no dilation: per
 * fixed block of images (FC_GRAD_BLOCKS, from n alone) the block's sums
 * (ocvec_wgrad_block) added in double, the blocks summed in order
 * (sum_blocks): the same bits at any thread count. */
static int FN(ocvec_weight_grad)(const REAL *restrict x, const REAL *restrict d_out, REAL *restrict d_w,
                                 REAL *restrict d_b, const fc_conv_geom *g) {
    FC_CONV_LOCALS(g);
    const FN(dgeom) d = FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, 1, O_OB);
    const int64_t taps = c * 9, ohw = oh * ow, fr = (f + O_OB - 1) / O_OB * O_OB;
    const int64_t xstride = (FN(padded_size)(&d) + 3 * d.wp + DVEC + 15) / 16 * 16; /* + tile slack */
    const int64_t blocks = n < FC_GRAD_BLOCKS ? n : FC_GRAD_BLOCKS, per_block = (n + blocks - 1) / blocks;
    double *parts = calloc((size_t)(blocks * (f * taps + f)), sizeof(double));
    if (parts == NULL) return FC_ERR_NOMEM;
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(2 * n * f * ohw * taps))
    {
        REAL *xps = fc_alloc_lines(sizeof(REAL) * xstride * per_block);
        REAL *dyts = fc_alloc_lines(sizeof(REAL) * ohw * fr * per_block);
        if (xps == NULL || dyts == NULL) {
#pragma omp atomic write
            nomem = 1;
        } else {
            memset(xps, 0, sizeof(REAL) * xstride * per_block); /* padding and slack stay zero */
            memset(dyts, 0, sizeof(REAL) * ohw * fr * per_block); /* the filters past f stay zero */
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (xps == NULL || dyts == NULL) continue;
            double *part = parts + blk * (f * taps + f);
            const int64_t first = blk * n / blocks, bc = (blk + 1) * n / blocks - first;
            for (int64_t b = 0; b < bc; ++b) {
                const REAL *dy = d_out + (first + b) * f * ohw;
                REAL *dyt = dyts + b * ohw * fr;
                FN(stack_planes)(x + (first + b) * c * h * w, xps + b * xstride, c, h, w, ph, pw, 1, &d, 1);
                for (int64_t fi = 0; fi < f; ++fi) {
                    double sum = 0;
                    for (int64_t p = 0; p < ohw; ++p) {
                        dyt[p * fr + fi] = dy[fi * ohw + p];
                        sum += dy[fi * ohw + p];
                    }
                    part[f * taps + fi] += sum;
                }
            }
            FN(ocvec_wgrad_block)(xps, xstride, d.hp * d.wp, d.wp, dyts, fr, bc, oh, ow, c, f, part);
        }
        free(xps);
        free(dyts);
    }
    if (!nomem) FN(sum_blocks)(parts, blocks, f * taps, f, d_w, d_b);
    free(parts);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

/* Stride 1: the weight (and bias) gradient of 3x3 kernels without dilation
 * from ocvec_weight_grad, of others from the direct kernel; the input
 * gradient from this path's correlation.  Strided: the direct kernel's
 * backward. */
int FN(fc_conv2d_ocvec_bwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict d_out,
                            REAL *restrict d_x, REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *g) {
    if (!FN(ocvec_applies)(g)) return FC_ERR_SIZE;
    FC_CONV_LOCALS(g);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK) return FC_ERR_SIZE;
    const int strided = sh != 1 || sw != 1, own_wgrad = !strided && fh == 3 && fw == 3 && dh == 1 && dw == 1;
    int status = own_wgrad ? FN(ocvec_weight_grad)(x, d_out, d_w, d_b, g)
                           : FN(fc_conv2d_direct_bwd)(x, wt, d_out, strided ? d_x : NULL, d_w, d_b, g);
    if (status != FC_OK || d_x == NULL || strided) return status;
    const int64_t fr = (c + O_OB - 1) / O_OB * O_OB;
    REAL *wflip = malloc(sizeof(REAL) * f * fh * fw * fr);
    if (wflip == NULL) return FC_ERR_NOMEM;
    FN(direct_weights)(wt, wflip, f, c, fh, fw, fr, 1);
    status = FN(ocvec_run)(d_out, n, f, oh, ow, (fh - 1) * dh - ph, (fw - 1) * dw - pw, fh, fw, 1, 1, dh, dw, h, w,
                           wflip, fr, c, NULL, d_x);
    free(wflip);
    return status;
}

#undef O_TILES
#undef O_NTILES
#undef O_OB
#undef O_MAXP
#undef O_WV
