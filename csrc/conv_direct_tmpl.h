/* Direct convolution for stride 1 and one group, for one element type
 * (included by conv_direct.c through instantiate.h with REAL and FN(name)).
 *
 * Why: with stride 1, the input an output row reads is a contiguous row of
 * the zero-padded image.  Lay the outputs out on the padded width (position
 * p = y*WP + x, x < WP; the WP - OW extra columns per row are computed and
 * dropped) and every tap (c, i, j) reads the padded image at a fixed offset
 * c*HP*WP + i*dh*WP + j*dw from p: the whole convolution is
 *     out[f, p] = sum over taps k of w[f, k] * xp[off[k] + p],
 * a GEMM whose right-hand matrix is the padded image itself, read at shifted
 * offsets -- nothing is unfolded (no im2col), nothing is packed.  A register
 * block of D_MR filters x D_NV vectors of positions stays in registers over
 * all taps: per tap, D_NV vector loads and D_MR broadcasts feed D_MR*D_NV
 * multiply-adds.  Position blocks are the outer loop, so one block's input
 * rows stay in L1 while every filter block reads them.
 *
 * The input gradient is the same computation: a stride-1 correlation of the
 * output gradient (padded by (K-1)*d - p) with the weights flipped and
 * transposed.  The weight gradient runs the same layout the other way:
 * d_w[f, k] = sum over p of dy[f, p] * xp[off[k] + p], register blocks of
 * D_GF filters x D_GT taps, each accumulator a vector of positions.  Per image
 * nothing is shared between threads: tasks are images (forward) or fixed
 * blocks of images (backward, summed in block order: the same bits at any
 * thread count).  For the weight gradient a block's images are laid side by
 * side along the positions, so small maps still give long runs.
 *
 * The extra positions (x >= OW, and between stacked images) are computed
 * with a zero output gradient; with non-finite inputs (inf) that adds
 * 0 * inf = NaN to taps whose exact gradient is finite -- where an inf input
 * already makes most of the exact weight gradient non-finite.
 */

/* The register tiles per instruction set, of vectors of FC_VBYTES
 * (common.h): a tile uses most of the registers -- 32 with AVX-512, 16 with
 * AVX2 or SSE.  Forward: D_MR filters x D_NV vectors of positions, D_NV
 * loads and D_MR broadcasts per tap (8 x 3 ran 25 % faster than 8 x 2).
 * Weight gradient: D_GF filters x D_GT taps. */
#if defined(__AVX512F__)
#define D_MR 8
#define D_NV 3
#define D_GF 4
#define D_GT 4
#else
#define D_MR 4
#define D_NV 3
#define D_GF 2
#define D_GT 4
#endif
#define DVEC ((int64_t)(FC_VBYTES / sizeof(REAL))) /* elements per vector */
#define D_PB (D_NV * DVEC)                         /* positions per register block */

typedef REAL FN(dvec) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(REAL)), may_alias));

static inline FN(dvec) FN(dload)(const REAL *p) { return *(const FN(dvec) *)p; }

/* Geometry of one stride-1 correlation as this file runs it. */
typedef struct {
    int64_t ci, fo, fr;     /* input planes, output planes, output planes rounded up to D_MR */
    int64_t kh, kw, dh, dw; /* kernel and dilation */
    int64_t hp, wp;         /* padded input plane */
    int64_t oh, ow;         /* output plane (oh = hp - (kh-1)*dh, ow <= wp - (kw-1)*dw) */
    int64_t len, lr;        /* positions oh*wp, rounded up to whole register blocks */
} FN(dgeom);

static FN(dgeom) FN(direct_geom)(int64_t ci, int64_t fo, int64_t kh, int64_t kw, int64_t dh, int64_t dw,
                                 int64_t hp, int64_t wp, int64_t ow, int64_t round_f) {
    FN(dgeom) d = {ci, fo, (fo + round_f - 1) / round_f * round_f, kh, kw, dh, dw, hp, wp,
                   hp - (kh - 1) * dh, ow, 0, 0};
    d.len = d.oh * d.wp;
    d.lr = (d.len + D_PB - 1) / D_PB * D_PB;
    return d;
}

/* Elements of a padded-input buffer: the planes, then zero slack for the
 * reads of the last (rounded-up) position block. */
static int64_t FN(padded_size)(const FN(dgeom) *d) {
    return d->ci * d->hp * d->wp + (d->lr - d->len) + d->kw * d->dw + 2 * DVEC;
}

/* dst (planes of hp x wp, zero elsewhere, slack zeroed) <- src planes of
 * h x w placed at (top, left); negative offsets crop.  With `zeroed`, dst
 * already holds zeros everywhere this call does not write (the previous
 * call had the same geometry): only the interior is copied -- clearing the
 * whole buffer per image cost ~10 % of a convolution. */
static void FN(pad_planes)(const REAL *restrict src, REAL *restrict dst, int64_t planes, int64_t h, int64_t w,
                           int64_t top, int64_t left, const FN(dgeom) *d, int zeroed) {
    if (!zeroed) memset(dst, 0, sizeof(REAL) * FN(padded_size)(d));
    const int64_t x0 = left < 0 ? -left : 0, x1 = w < d->wp - left ? w : d->wp - left;
    if (x1 <= x0) return;
    for (int64_t c = 0; c < planes; ++c)
        for (int64_t y = 0; y < h; ++y) {
            const int64_t yd = y + top;
            if (yd < 0 || yd >= d->hp) continue;
            memcpy(dst + (c * d->hp + yd) * d->wp + left + x0, src + (c * h + y) * w + x0, sizeof(REAL) * (x1 - x0));
        }
}

/* One register block: buf (fr x D_PB) rows f0..f0+D_MR <- the correlation at
 * positions p0.. of the padded planes xp with wt ([ci*kh*kw][fr]). */
static inline __attribute__((always_inline)) void FN(direct_block)(
    const REAL *restrict xp, const REAL *restrict wt, REAL *restrict buf, int64_t p0, int64_t f0,
    int64_t ci, int64_t fr, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t hp, int64_t wp) {
    FN(dvec) acc[D_MR][D_NV];
    for (int m = 0; m < D_MR; ++m)
        for (int v = 0; v < D_NV; ++v) acc[m][v] = (FN(dvec)){0};
    const int64_t plane = hp * wp;
    for (int64_t c = 0; c < ci; ++c) {
        const REAL *xc = xp + c * plane + p0;
        const REAL *wc = wt + c * kh * kw * fr + f0;
        for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
                const REAL *xr = xc + i * dh * wp + j * dw;
                const REAL *w = wc + (i * kw + j) * fr;
                FN(dvec) xv[D_NV];
                for (int v = 0; v < D_NV; ++v) xv[v] = FN(dload)(xr + v * DVEC);
                for (int m = 0; m < D_MR; ++m) {
                    const REAL wv = w[m];
                    for (int v = 0; v < D_NV; ++v) acc[m][v] += wv * xv[v];
                }
            }
    }
    for (int m = 0; m < D_MR; ++m)
        for (int v = 0; v < D_NV; ++v) *(FN(dvec) *)(buf + (f0 + m) * D_PB + v * DVEC) = acc[m][v];
}

/* All filter blocks at position block p0, with the common kernels'
 * sizes as constants (unrolled taps: ~2x the generic loop's speed). */
static void FN(direct_position_block)(const REAL *restrict xp, const REAL *restrict wt, REAL *restrict buf,
                                      int64_t p0, const FN(dgeom) *d) {
    for (int64_t f0 = 0; f0 < d->fr; f0 += D_MR) {
        if (d->kh == 3 && d->kw == 3 && d->dh == 1 && d->dw == 1)
            FN(direct_block)(xp, wt, buf, p0, f0, d->ci, d->fr, 3, 3, 1, 1, d->hp, d->wp);
        else if (d->kh == 1 && d->kw == 1)
            FN(direct_block)(xp, wt, buf, p0, f0, d->ci, d->fr, 1, 1, 1, 1, d->hp, d->wp);
        else
            FN(direct_block)(xp, wt, buf, p0, f0, d->ci, d->fr, d->kh, d->kw, d->dh, d->dw, d->hp, d->wp);
    }
}

/* out (fo planes of oh x ow) <- bias + correlation of the padded planes xp
 * with wt; buf: scratch of fr x D_PB. */
static void FN(direct_image)(const REAL *restrict xp, const REAL *restrict wt, const REAL *restrict bias,
                             REAL *restrict out, REAL *restrict buf, const FN(dgeom) *d) {
    const int64_t oplane = d->oh * d->ow;
    for (int64_t p0 = 0; p0 < d->len; p0 += D_PB) {
        FN(direct_position_block)(xp, wt, buf, p0, d);
        /* keep the block's positions that are outputs (x < ow), add the bias */
        const int64_t end = p0 + D_PB < d->len ? p0 + D_PB : d->len;
        for (int64_t p = p0; p < end;) {
            const int64_t y = p / d->wp, x = p % d->wp;
            const int64_t run_end = p - x + d->wp < end ? p - x + d->wp : end; /* the rest of this row */
            if (x < d->ow) {
                const int64_t n = (run_end < p - x + d->ow ? run_end : p - x + d->ow) - p;
                for (int64_t f = 0; f < d->fo; ++f) {
                    const REAL *src = buf + f * D_PB + (p - p0);
                    REAL *dst = out + f * oplane + y * d->ow + x;
                    const REAL b = bias != NULL ? bias[f] : 0;
                    for (int64_t q = 0; q < n; ++q) dst[q] = src[q] + b;
                }
            }
            p = run_end;
        }
    }
}

/* wt_out ([taps][fr], zero past fo) <- the weights (fo, ci, kh, kw) as the
 * kernel reads them; flip: the input gradient's weights, w[f, c] with the
 * kernel reversed, indexed [(f*kh + i)*kw + j][c]. */
static void FN(direct_weights)(const REAL *restrict w, REAL *restrict wt_out, int64_t f, int64_t c, int64_t kh,
                               int64_t kw, int64_t fr, int flip) {
    const int64_t taps = kh * kw;
    if (!flip) {
        memset(wt_out, 0, sizeof(REAL) * c * taps * fr);
        for (int64_t fi = 0; fi < f; ++fi)
            for (int64_t k = 0; k < c * taps; ++k) wt_out[k * fr + fi] = w[fi * c * taps + k];
        return;
    }
    /* input gradient: output planes are c (fr rounded from c), taps run over f */
    memset(wt_out, 0, sizeof(REAL) * f * taps * fr);
    for (int64_t fi = 0; fi < f; ++fi)
        for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t t = 0; t < taps; ++t)
                wt_out[(fi * taps + t) * fr + ci] = w[(fi * c + ci) * taps + (taps - 1 - t)];
}

int FN(fc_conv2d_direct_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                             REAL *restrict out, const fc_conv_geom *g) {
    if (!fc_direct_applies(g)) return FC_ERR_SIZE;
    FC_CONV_LOCALS(g);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK) return FC_ERR_SIZE;
    const FN(dgeom) d = FN(direct_geom)(c, f, fh, fw, dh, dw, h + 2 * ph, w + 2 * pw, ow, D_MR);
    REAL *wd = malloc(sizeof(REAL) * c * fh * fw * d.fr);
    if (wd == NULL) return FC_ERR_NOMEM;
    FN(direct_weights)(wt, wd, f, c, fh, fw, d.fr, 0);
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(2 * n * f * d.len * c * fh * fw))
    {
        REAL *xp = fc_alloc_lines(sizeof(REAL) * FN(padded_size)(&d));
        REAL *buf = fc_alloc_lines(sizeof(REAL) * d.fr * D_PB);
        if (xp == NULL || buf == NULL) {
#pragma omp atomic write
            nomem = 1;
        }
        int zeroed = 0;
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (xp == NULL || buf == NULL) continue;
            FN(pad_planes)(x + img * c * h * w, xp, c, h, w, ph, pw, &d, zeroed);
            zeroed = 1;
            FN(direct_image)(xp, wd, b, out + img * f * oh * ow, buf, &d);
        }
        free(xp);
        free(buf);
    }
    free(wd);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

/* sums[m*D_GT + t] <- the sum of the lanes of acc[m][t] (in a fixed order).
 * A transpose-reduce where the lanes are 16 or 8: each level adds the two
 * halves of every block of lanes of two vectors, so D_LANES accumulators
 * become one vector of their D_LANES sums (in bit-reversed order of the
 * inputs, hence the input order) -- 15 adds and 30 shuffles for 16, where
 * summing lane by lane took 240 scalar adds and a quarter of the weight
 * gradient's time. */
#if FC_REAL_IS_FLOAT
#define D_LANES (FC_VBYTES / 4)
typedef int32_t FN(lane_mask) __attribute__((vector_size(FC_VBYTES)));
#else
#define D_LANES (FC_VBYTES / 8)
typedef int64_t FN(lane_mask) __attribute__((vector_size(FC_VBYTES)));
#endif
#if (D_LANES == 16 || D_LANES == 8) && (D_GF * D_GT) % D_LANES == 0
static inline void FN(lane_sums)(FN(dvec) acc[D_GF][D_GT], REAL *restrict sums) {
#if D_LANES == 16
    static const int order[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
    const FN(lane_mask) masks[4][2] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}, {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}, {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}, {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}, {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}}};
    enum { levels = 4 };
#else
    static const int order[8] = {0, 4, 2, 6, 1, 5, 3, 7};
    const FN(lane_mask) masks[3][2] = {{{0, 1, 2, 3, 8, 9, 10, 11}, {4, 5, 6, 7, 12, 13, 14, 15}},
                                       {{0, 1, 8, 9, 4, 5, 12, 13}, {2, 3, 10, 11, 6, 7, 14, 15}},
                                       {{0, 8, 2, 10, 4, 12, 6, 14}, {1, 9, 3, 11, 5, 13, 7, 15}}};
    enum { levels = 3 };
#endif
    for (int g = 0; g < D_GF * D_GT; g += D_LANES) {
        FN(dvec) v[D_LANES];
        for (int j = 0; j < D_LANES; ++j) v[j] = acc[(g + order[j]) / D_GT][(g + order[j]) % D_GT];
        int count = D_LANES;
        for (int l = 0; l < levels; ++l, count /= 2)
            for (int k = 0; k < count / 2; ++k)
                v[k] = __builtin_shuffle(v[2 * k], v[2 * k + 1], masks[l][0]) +
                       __builtin_shuffle(v[2 * k], v[2 * k + 1], masks[l][1]);
        memcpy(sums + g, &v[0], sizeof(v[0]));
    }
}
#else
static inline void FN(lane_sums)(FN(dvec) acc[D_GF][D_GT], REAL *restrict sums) {
    for (int m = 0; m < D_GF; ++m)
        for (int t = 0; t < D_GT; ++t) {
            REAL s = 0;
            for (int64_t e = 0; e < DVEC; ++e) s += acc[m][t][e];
            sums[m * D_GT + t] = s;
        }
}
#endif
#undef D_LANES

/* part[f*taps_all + k] += sum over positions of dyf[f] * xp[off[k] + .] for
 * every filter and tap (dyf: fr rows of lr, zero at non-output positions). */
static void FN(direct_weight_grad)(const REAL *restrict xp, const REAL *restrict dyf, const int64_t *restrict off,
                                   double *restrict part, int64_t f, int64_t fr, int64_t taps, int64_t lr) {
    const int64_t tr = (taps + D_GT - 1) / D_GT * D_GT;
    for (int64_t f0 = 0; f0 < fr; f0 += D_GF) {
        for (int64_t k0 = 0; k0 < tr; k0 += D_GT) {
            FN(dvec) acc[D_GF][D_GT];
            for (int m = 0; m < D_GF; ++m)
                for (int t = 0; t < D_GT; ++t) acc[m][t] = (FN(dvec)){0};
            const REAL *xs[D_GT];
            for (int t = 0; t < D_GT; ++t) xs[t] = xp + off[k0 + t];
            for (int64_t p = 0; p < lr; p += DVEC) {
                FN(dvec) dv[D_GF], xv[D_GT];
                for (int m = 0; m < D_GF; ++m) dv[m] = FN(dload)(dyf + (f0 + m) * lr + p);
                for (int t = 0; t < D_GT; ++t) xv[t] = FN(dload)(xs[t] + p);
                for (int m = 0; m < D_GF; ++m)
                    for (int t = 0; t < D_GT; ++t) acc[m][t] += dv[m] * xv[t];
            }
            REAL sums[D_GF * D_GT];
            FN(lane_sums)(acc, sums);
            for (int m = 0; m < D_GF; ++m) {
                if (f0 + m >= f) break;
                for (int t = 0; t < D_GT && k0 + t < taps; ++t) part[(f0 + m) * taps + k0 + t] += sums[m * D_GT + t];
            }
        }
    }
}

int FN(fc_conv2d_direct_bwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict d_out,
                             REAL *restrict d_x, REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *g) {
    if (!fc_direct_applies(g)) return FC_ERR_SIZE;
    FC_CONV_LOCALS(g);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK) return FC_ERR_SIZE;
    const int64_t taps = c * fh * fw, hw = h * w, ohw = oh * ow;
    /* input gradient: dy padded by (k-1)*d - p, correlated with the flipped weights */
    const int64_t qh = (fh - 1) * dh - ph, qw = (fw - 1) * dw - pw;
    const FN(dgeom) dx_g = FN(direct_geom)(f, c, fh, fw, dh, dw, oh + 2 * qh, ow + 2 * qw, w, D_MR);
    const int64_t blocks = n < FC_GRAD_BLOCKS ? n : FC_GRAD_BLOCKS; /* from n alone (common.h) */
    /* weight gradient: x padded as in forward, dy on the same padded width;
     * `stack` images side by side along the positions (plane after plane
     * per channel), so small maps still give long runs of positions */
    const int64_t hp = h + 2 * ph, wp = w + 2 * pw, plane = hp * wp, fr = (f + D_GF - 1) / D_GF * D_GF;
    const int64_t stack = fc_clamp((1024 + plane - 1) / plane, 1, (n + blocks - 1) / blocks);
    const int64_t lr_max = (stack * plane + DVEC - 1) / DVEC * DVEC;
    const int64_t xs_size = c * stack * plane + lr_max + fw * dw + 2 * DVEC;
    double *parts = calloc((size_t)(blocks * (f * taps + f)), sizeof(double));
    REAL *wflip = d_x != NULL ? malloc(sizeof(REAL) * f * fh * fw * dx_g.fr) : NULL;
    if (parts == NULL || (d_x != NULL && wflip == NULL)) {
        free(parts), free(wflip);
        return FC_ERR_NOMEM;
    }
    if (d_x != NULL) FN(direct_weights)(wt, wflip, f, c, fh, fw, dx_g.fr, 1);
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(4 * n * f * oh * wp * taps))
    {
        REAL *xs = fc_alloc_lines(sizeof(REAL) * xs_size);
        REAL *dyf = fc_alloc_lines(sizeof(REAL) * (fr * lr_max + DVEC));
        int64_t *off = malloc(sizeof(int64_t) * (taps + D_GT));
        REAL *dyp = d_x != NULL ? fc_alloc_lines(sizeof(REAL) * FN(padded_size)(&dx_g)) : NULL;
        REAL *buf = d_x != NULL ? fc_alloc_lines(sizeof(REAL) * dx_g.fr * D_PB) : NULL;
        const int ok = xs != NULL && dyf != NULL && off != NULL && (d_x == NULL || (dyp != NULL && buf != NULL));
        if (!ok) {
#pragma omp atomic write
            nomem = 1;
        }
        int64_t zeroed_bc = 0; /* the stack size xs and dyf were cleared for */
        int dx_zeroed = 0;
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (!ok) continue;
            double *part = parts + blk * (f * taps + f);
            const int64_t first = blk * n / blocks, last = (blk + 1) * n / blocks;
            for (int64_t img0 = first; img0 < last; img0 += stack) {
                const int64_t bc = last - img0 < stack ? last - img0 : stack;
                const int64_t lr = (bc * plane + DVEC - 1) / DVEC * DVEC;
                /* xs: plane (ch * bc + b) = image img0 + b, channel ch, padded;
                 * the zeros around the copied rows stay while bc does */
                if (bc != zeroed_bc) {
                    memset(xs, 0, sizeof(REAL) * xs_size);
                    memset(dyf, 0, sizeof(REAL) * fr * lr);
                    zeroed_bc = bc;
                }
                for (int64_t b = 0; b < bc; ++b) {
                    const REAL *xi = x + (img0 + b) * c * hw, *dy = d_out + (img0 + b) * f * ohw;
                    for (int64_t ch = 0; ch < c; ++ch)
                        for (int64_t y = 0; y < h; ++y)
                            memcpy(xs + ((ch * bc + b) * hp + y + ph) * wp + pw, xi + (ch * h + y) * w,
                                   sizeof(REAL) * w);
                    for (int64_t fi = 0; fi < f; ++fi)
                        for (int64_t y = 0; y < oh; ++y)
                            memcpy(dyf + fi * lr + b * plane + y * wp, dy + (fi * oh + y) * ow, sizeof(REAL) * ow);
                }
                /* the bias gradient: each padded row's sum, in vectors (a scalar
                 * double sum here took a fifth of the weight gradient's time) */
                for (int64_t fi = 0; fi < f && d_b != NULL; ++fi) {
                    FN(dvec) acc = {0};
                    for (int64_t p = 0; p < lr; p += DVEC) acc += FN(dload)(dyf + fi * lr + p);
                    double sum = 0;
                    for (int64_t e = 0; e < DVEC; ++e) sum += acc[e];
                    part[f * taps + fi] += sum;
                }
                for (int64_t ch = 0; ch < c; ++ch)
                    for (int64_t i = 0; i < fh; ++i)
                        for (int64_t j = 0; j < fw; ++j)
                            off[(ch * fh + i) * fw + j] = (ch * bc * hp + i * dh) * wp + j * dw;
                for (int64_t k = taps; k < taps + D_GT; ++k) off[k] = 0; /* the last tap block's spare lanes */
                FN(direct_weight_grad)(xs, dyf, off, part, f, fr, taps, lr);
                if (d_x != NULL)
                    for (int64_t b = 0; b < bc; ++b) {
                        FN(pad_planes)(d_out + (img0 + b) * f * ohw, dyp, f, oh, ow, qh, qw, &dx_g, dx_zeroed);
                        dx_zeroed = 1;
                        FN(direct_image)(dyp, wflip, NULL, d_x + (img0 + b) * c * hw, buf, &dx_g);
                    }
            }
        }
        free(xs);
        free(dyf);
        free(off);
        free(dyp);
        free(buf);
    }
    if (!nomem) {
        for (int64_t e = 0; e < f * taps + f; ++e) {
            double s = 0;
            for (int64_t blk = 0; blk < blocks; ++blk) s += parts[blk * (f * taps + f) + e];
            if (e < f * taps) d_w[e] = (REAL)s;
            else if (d_b != NULL) d_b[e - f * taps] = (REAL)s;
        }
    }
    free(parts);
    free(wflip);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

#undef D_PB
#undef D_MR
#undef D_NV
#undef D_GF
#undef D_GT
#undef DVEC
